// SPDX-License-Identifier: MIT
/*
 * connect() on an overlay destination: ask the router for a connected host socket and put it
 * under the app's fd number (see docs/design.md, "Connection setup (client side)").
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "msg.h"
#include "shim.h"

static void sin_set(struct sockaddr_in *sin, uint32_t ip, uint16_t port)
{
	*sin = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = ip, .sin_port = port};
}

/*
 * Puts host_fd under fd: same number, the app's O_NONBLOCK and FD_CLOEXEC, and the same epoll
 * memberships. The pod socket that was there is closed by dup3 (its epoll registrations are
 * removed first, since another reference to it could keep them alive).
 */
static int connect_swap(int fd, int host_fd, struct fd_entry *e)
{
	int fl = REAL(fcntl)(fd, F_GETFL);
	int fdfl = REAL(fcntl)(fd, F_GETFD);

	if (fl < 0 || fdfl < 0)
		return -errno;
	if (e->regs)
		readiness_epoll_unregister(fd, e->regs);
	if (REAL(dup3)(host_fd, fd, (fdfl & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0) {
		int err = -errno;

		if (e->regs)
			readiness_epoll_reregister(fd, e->regs);
		return err;
	}
	REAL(close)(host_fd);
	/* The router made the socket non-blocking; the app decides. */
	if (!(fl & O_NONBLOCK)) {
		int hfl = REAL(fcntl)(fd, F_GETFL);

		if (hfl >= 0)
			REAL(fcntl)(fd, F_SETFL, hfl & ~O_NONBLOCK);
	}
	if (e->regs)
		readiness_epoll_reregister(fd, e->regs);
	return 0;
}

/* One request to the router; on success the host socket is under fd. 1 = fallback. */
static int connect_request(int fd, struct fd_entry *e, const struct sockaddr_in *dst,
			   uint16_t flags)
{
	struct slim_connect_req req = {.hdr.type = SLIM_MSG_CONNECT_REQ};
	struct slim_connect_rep rep;
	int host_fd, err;

	req.dst_ip = dst->sin_addr.s_addr;
	req.dst_port = dst->sin_port;
	req.flags = flags;
	req.bound_ip = e->bound.sin_addr.s_addr;
	req.bound_port = e->bound.sin_port;
	if (e->opts) {
		req.nopts = e->opts->n;
		memcpy(req.opts, e->opts->opt, e->opts->n * sizeof(req.opts[0]));
	}
	err = router_call(&req, slim_connect_req_len(req.nopts), SLIM_MSG_CONNECT_REP, &rep,
			  sizeof(rep), &host_fd);
	if (err < 0)
		return 1;
	if (rep.action == SLIM_ACT_ERROR && rep.error > 0) {
		if (host_fd >= 0)
			REAL(close)(host_fd);
		return -rep.error;
	}
	if (rep.action != SLIM_ACT_FD || host_fd < 0) {
		if (host_fd >= 0)
			REAL(close)(host_fd);
		return 1;
	}
	err = connect_swap(fd, host_fd, e);
	if (err < 0) {
		REAL(close)(host_fd);
		shim_log("connect: fd %d swap failed (%s): plain connect", fd, strerror(-err));
		return 1;
	}
	e->kind = FD_SLIM_CONN;
	e->state = CONN_CONNECTING;
	e->cached = !!(rep.flags & SLIM_REPF_CACHED);
	sin_set(&e->local, rep.local_ip, rep.local_port);
	e->peer = *dst;
	sin_set(&e->host_dst, rep.host_ip, rep.host_port);
	/* The pod socket is gone: its epoll memberships and options now live on the host socket. */
	garbage_defer(e->regs);
	e->regs = NULL;
	shim_log("connect: fd %d -> %s:%u via host socket", fd, inet_ntoa(dst->sin_addr),
		 ntohs(dst->sin_port));
	return 0;
}

/*
 * The kernel finishes what the router started: a connect() on the host socket with the host
 * address gives exactly Linux's answers (EALREADY while in progress, 0 once, then EISCONN, or the
 * error), waits for a blocking socket honouring SO_SNDTIMEO, and restarts or fails with EINTR
 * as the app's signal handlers ask.
 */
static int connect_kernel(int fd, struct fd_entry *e)
{
	int rc = REAL(connect)(fd, (struct sockaddr *)&e->host_dst, sizeof(e->host_dst));
	int err = errno;

	if (rc == 0 || err == EISCONN)
		e->state = CONN_CONNECTED;
	else if (err != EALREADY && err != EINPROGRESS && err != EINTR && err != EAGAIN)
		e->state = CONN_FAILED;
	errno = err;
	return rc;
}

static bool fd_is_nonblocking(int fd)
{
	int fl = REAL(fcntl)(fd, F_GETFL);

	return fl >= 0 && (fl & O_NONBLOCK);
}

/*
 * A failed host socket is under fd and the next attempt goes over the overlay: it needs a pod
 * socket again (the process runs in the pod's namespace, so a new socket is one).
 */
static int connect_restore_pod_socket(int fd)
{
	int fl = REAL(fcntl)(fd, F_GETFL), fdfl = REAL(fcntl)(fd, F_GETFD);
	int s = REAL(socket)(AF_INET, SOCK_STREAM | (fl & O_NONBLOCK ? SOCK_NONBLOCK : 0), 0);
	int rc;

	if (s < 0)
		return -1;
	rc = REAL(dup3)(s, fd, (fdfl & FD_CLOEXEC) ? O_CLOEXEC : 0);
	REAL(close)(s);
	return rc < 0 ? -1 : 0;
}

static int connect_plain(int fd, struct fd_entry *e, const struct sockaddr_in *dst)
{
	bool was_host_socket = e->kind == FD_SLIM_CONN;

	e->kind = FD_PLAIN;
	if (was_host_socket && connect_restore_pod_socket(fd) < 0)
		return -1;
	return REAL(connect)(fd, (const struct sockaddr *)dst, sizeof(*dst));
}

int connect_slim(int fd, const struct sockaddr_in *dst)
{
	struct fd_entry *e = fdtab_get(fd);
	int rc;

	if (e->kind == FD_SLIM_CONN && e->state != CONN_FAILED)
		return connect_kernel(fd, e);
	garbage_collect();
	rc = connect_request(fd, e, dst, 0);
	if (rc > 0)
		return connect_plain(fd, e, dst);
	if (rc < 0) {
		errno = -rc;
		return -1;
	}
	if (fd_is_nonblocking(fd)) {
		errno = EINPROGRESS;
		return -1;
	}
	rc = connect_kernel(fd, e);
	/*
	 * The router started the connect, so the kernel sees this as a second call and says
	 * EALREADY when SO_SNDTIMEO runs out; for the app it is the first, which says EINPROGRESS.
	 */
	if (rc < 0 && errno == EALREADY) {
		errno = EINPROGRESS;
		return rc;
	}
	if (rc < 0 && errno == ECONNREFUSED && e->cached) {
		/* The router's cached route may be stale (the server moved): ask once more. */
		shim_log("connect: fd %d refused on a cached route, retrying", fd);
		rc = connect_request(fd, e, dst, SLIM_CONNF_RETRY);
		if (rc > 0)
			return connect_plain(fd, e, dst);
		if (rc < 0) {
			errno = -rc;
			return -1;
		}
		rc = connect_kernel(fd, e);
	}
	return rc;
}
