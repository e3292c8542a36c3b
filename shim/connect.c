// SPDX-License-Identifier: MIT
/*
 * connect() on an overlay destination: connect a governed host socket from the pool in this
 * process and put it under the app's fd number (docs/design.md, "Connection setup").
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/types.h>

#include "govern_abi.h"
#include "msg.h"
#include "shim.h"

/*
 * Puts host_fd under fd: same number, the app's O_NONBLOCK and FD_CLOEXEC, and the same epoll
 * memberships. The pod socket that was there is closed by dup3 (its epoll registrations are
 * removed first, since another reference to it could keep them alive).
 */
static int connect_swap(int fd, int host_fd, struct fd_entry *e, bool *nonblocking)
{
	int fl = REAL(fcntl)(fd, F_GETFL);
	int fdfl = REAL(fcntl)(fd, F_GETFD);

	if (fl < 0 || fdfl < 0)
		return -errno;
	*nonblocking = fl & O_NONBLOCK;
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

/* Asks the router to route dst (it fills the kernel's maps). For a Service VIP the socket s goes
 * along: the kernel wrote the backend it picked into its state. An enum slim_action, with *error
 * set for SLIM_ACT_ERROR; SLIM_ACT_FALLBACK when the router cannot be asked. */
static int connect_ask_route(const struct sockaddr_in *dst, uint16_t flags, int s, int *error)
{
	struct slim_route_req req = {.hdr.type = SLIM_MSG_ROUTE_REQ};
	struct slim_route_rep rep;
	int unused_fd;

	req.dst_ip = dst->sin_addr.s_addr;
	req.dst_port = dst->sin_port;
	req.flags = flags;
	if (router_call_fd(&req, sizeof(req), config_is_service(req.dst_ip) ? s : -1,
			   SLIM_MSG_ROUTE_REP, &rep, sizeof(rep), &unused_fd) < 0)
		return SLIM_ACT_FALLBACK;
	if (unused_fd >= 0)
		REAL(close)(unused_fd);
	*error = rep.error;
	if (rep.action == SLIM_ACT_ERROR && rep.error <= 0)
		return SLIM_ACT_FALLBACK;
	return (int)rep.action;
}

/* Replays the options the app set on its pod socket. 0 or -errno. */
static int connect_replay_opts(int s, const struct fd_entry *e)
{
	if (!e->opts)
		return 0;
	for (unsigned i = 0; i < e->opts->n; i++) {
		const struct slim_sockopt *o = &e->opts->opt[i];

		if (REAL(setsockopt)(s, o->level, o->name, o->val, o->len) < 0)
			return -errno;
	}
	return 0;
}

/* A pool socket we did not use goes back, unless it carries the app's options. */
static void connect_return(int s, const struct fd_entry *e)
{
	if (e->opts && e->opts->n)
		REAL(close)(s);
	else
		pool_put(s);
}

/*
 * Connects a governed host socket from the pool to dst, in this process: the kernel's connect
 * program rewrites the overlay address to the host listener, or tells us it needs the router
 * (a miss: ask once, then connect again), or that the overlay carries it, or that policy
 * refuses it. On success the host socket is under fd. 0, 1 = fallback, or -errno for the app.
 */
static int connect_governed(int fd, struct fd_entry *e, const struct sockaddr_in *dst,
			    uint16_t flags, bool *nonblocking)
{
	int s = pool_take(), err, action, error = 0;

	if (s < 0) {
		shim_log("connect: fd %d: no governed socket to be had: plain connect", fd);
		return 1;
	}
	if ((err = connect_replay_opts(s, e)) < 0) {
		shim_log("connect: fd %d: option replay failed (%s): plain connect", fd,
			 strerror(-err));
		REAL(close)(s);
		return 1;
	}
	for (int attempt = 0;; attempt++) {
		if (REAL(connect)(s, (const struct sockaddr *)dst, sizeof(*dst)) == 0 ||
		    errno == EINPROGRESS)
			break;
		err = errno;
		if (err == SLIM_ERRNO_MISS && attempt == 0) {
			action = connect_ask_route(dst, flags, s, &error);
			if (action == SLIM_ACT_ROUTE)
				continue;
			shim_log("connect: fd %d: the router says %s", fd,
				 action == SLIM_ACT_ERROR ? strerror(error) : "fallback");
			connect_return(s, e);
			return action == SLIM_ACT_ERROR ? -error : 1;
		}
		if (err == ECONNREFUSED) {
			/* The kernel holds this pod's verdict: policy refuses it. */
			connect_return(s, e);
			return -ECONNREFUSED;
		}
		shim_log("connect: fd %d: %s: plain connect", fd, strerror(err));
		if (err == SLIM_ERRNO_FALLBACK || err == SLIM_ERRNO_MISS)
			connect_return(s, e);
		else
			REAL(close)(s);
		return 1;
	}
	err = connect_swap(fd, s, e, nonblocking);
	if (err < 0) {
		REAL(close)(s);
		shim_log("connect: fd %d swap failed (%s): plain connect", fd, strerror(-err));
		return 1;
	}
	e->kind = FD_SLIM_CONN;
	e->state = CONN_CONNECTING;
	e->error = 0;
	e->peer = *dst;
	atomic_store_explicit(&connect_governed_made, true, memory_order_relaxed);
	/* The pod socket is gone: its epoll memberships and options now live on the host socket. */
	garbage_defer(e->regs);
	e->regs = NULL;
	shim_log("connect: fd %d -> %s:%u via a governed host socket", fd, inet_ntoa(dst->sin_addr),
		 ntohs(dst->sin_port));
	return 0;
}

/*
 * The kernel finishes what the shim started: a connect() on the host socket gives exactly
 * Linux's answers (EALREADY while in progress, 0 once, then EISCONN, or the error), waits for a
 * blocking socket honouring SO_SNDTIMEO, and restarts or fails with EINTR as the app's signal
 * handlers ask. After a failure the same call connects afresh, routed again by the kernel.
 */
static int connect_kernel(int fd, struct fd_entry *e)
{
	int rc = REAL(connect)(fd, (struct sockaddr *)&e->peer, sizeof(e->peer));
	int err = errno;

	if (rc == 0 || err == EISCONN)
		e->state = CONN_CONNECTED;
	else if (err != EALREADY && err != EINPROGRESS && err != EINTR && err != EAGAIN)
		e->state = CONN_FAILED;
	errno = err;
	return rc;
}

/* How long SO_ERROR waits for a connect it started again: a handshake, with room to spare. */
#define CONNECT_AGAIN_WAIT_MS 500

/*
 * A non-blocking connect on a governed socket was refused, and the app has not been told yet.
 * The route may have been stale -- the server moved and no word of it reached this node -- so,
 * as for a blocking connect, ask the router once more and connect the same socket again (its
 * epoll memberships stay). 0: connected at once; -EINPROGRESS: going; else the refusal stands
 * (a refusal by policy, a route to the overlay, no router). Once per connect.
 */
static int connect_again(int fd, struct fd_entry *e)
{
	int error = 0;

	e->state = CONN_FAILED;
	shim_log("connect: fd %d refused, resolving again", fd);
	if (connect_ask_route(&e->peer, SLIM_ROUTEF_RETRY, fd, &error) != SLIM_ACT_ROUTE)
		return -ECONNREFUSED;
	/*
	 * The kernel still counts the socket as connecting: the first connect() reports how that
	 * ended -- the error, or ECONNABORTED once SO_ERROR took it -- and resets it; the next
	 * one starts afresh.
	 */
	for (int i = 0; i < 2; i++) {
		if (REAL(connect)(fd, (struct sockaddr *)&e->peer, sizeof(e->peer)) == 0) {
			e->state = CONN_CONNECTED;
			return 0;
		}
		if (errno != ECONNABORTED && errno != ECONNREFUSED)
			break;
	}
	if (errno != EINPROGRESS)
		return -ECONNREFUSED;
	e->state = CONN_RECONNECTING;
	return -EINPROGRESS;
}

atomic_bool connect_governed_made;

/*
 * poll saw the connect end with an error (readiness_heal): a refusal is connected again at once
 * (connect_again); any other error, taken from the kernel by SO_ERROR here, is kept for the
 * app's own SO_ERROR (the getsockopt interposer).
 */
bool connect_heal(int fd, struct fd_entry *e)
{
	int err = 0, ret;
	socklen_t len = sizeof(err);

	if (REAL(getsockopt)(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || !err)
		return false;
	if (err != ECONNREFUSED) {
		e->error = (uint8_t)err; /* taken from the kernel: getsockopt gives it to the app */
		e->state = CONN_FAILED;
		return false;
	}
	ret = connect_again(fd, e);
	if (ret == 0 || ret == -EINPROGRESS)
		return true;
	e->error = ECONNREFUSED;
	return false;
}

/*
 * The app asks SO_ERROR why its non-blocking connect ended (after poll or epoll said so) and
 * the kernel says ECONNREFUSED: connect again (connect_again) and let SO_ERROR report how that
 * went, after at most CONNECT_AGAIN_WAIT_MS (a handshake takes well under a millisecond; still
 * going then, the refusal stands and the app closes the socket).
 */
int connect_refused_again(int fd, struct fd_entry *e)
{
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	int ret = connect_again(fd, e), err = 0;
	socklen_t len = sizeof(err);

	if (ret != -EINPROGRESS)
		return -ret;
	if (REAL(poll)(&p, 1, CONNECT_AGAIN_WAIT_MS) <= 0 ||
	    REAL(getsockopt)(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = ECONNREFUSED;
	e->state = err ? CONN_FAILED : CONN_CONNECTED;
	return err;
}

/*
 * A failed host socket is under fd and the next attempt goes over the overlay: it needs a pod
 * socket again (the process runs in the pod's namespace, so a new socket is one).
 */
static int connect_restore_pod_socket(int fd, int family)
{
	int fl = REAL(fcntl)(fd, F_GETFL), fdfl = REAL(fcntl)(fd, F_GETFD);
	int s = REAL(socket)(family, SOCK_STREAM | (fl & O_NONBLOCK ? SOCK_NONBLOCK : 0), 0);
	int rc;

	if (s < 0)
		return -1;
	rc = REAL(dup3)(s, fd, (fdfl & FD_CLOEXEC) ? O_CLOEXEC : 0);
	REAL(close)(s);
	return rc < 0 ? -1 : 0;
}

/* Over the overlay, with the app's own address (an IPv6 socket's v4-mapped one included). */
static int connect_plain(int fd, struct fd_entry *e, const struct sockaddr *addr,
			 socklen_t len)
{
	bool was_host_socket = e->kind == FD_SLIM_CONN;

	e->kind = FD_PLAIN;
	if (was_host_socket && connect_restore_pod_socket(fd, e->v6 ? AF_INET6 : AF_INET) < 0)
		return -1;
	return REAL(connect)(fd, addr, len);
}

int connect_slim(int fd, const struct sockaddr_in *dst, const struct sockaddr *addr,
		 socklen_t len)
{
	struct fd_entry *e = fdtab_get(fd);
	bool nonblocking = false;
	int rc, error = 0;

	if (e->kind == FD_SLIM_CONN && e->state != CONN_FAILED) {
		bool first = e->state == CONN_CONNECTING;

		rc = connect_kernel(fd, e);
		/*
		 * An app that asks connect() again how its non-blocking connect went: a refusal is
		 * connected again (connect_again) and the answer is "still going", EALREADY.
		 */
		if (rc < 0 && errno == ECONNREFUSED && first) {
			rc = connect_again(fd, e);
			if (rc == -EINPROGRESS)
				rc = -EALREADY;
			errno = -rc;
			return rc ? -1 : 0;
		}
		return rc;
	}
	garbage_collect();
	rc = connect_governed(fd, e, dst, 0, &nonblocking);
	if (rc > 0)
		return connect_plain(fd, e, addr, len);
	if (rc < 0) {
		errno = -rc;
		return -1;
	}
	if (nonblocking) {
		errno = EINPROGRESS;
		return -1;
	}
	rc = connect_kernel(fd, e);
	/*
	 * The shim started the connect, so the kernel sees this as a second call and says
	 * EALREADY when SO_SNDTIMEO runs out; for the app it is the first, which says EINPROGRESS.
	 */
	if (rc < 0 && errno == EALREADY) {
		errno = EINPROGRESS;
		return rc;
	}
	if (rc < 0 && errno == ECONNREFUSED) {
		/* The route may be stale (the server moved): ask once more and connect again. */
		shim_log("connect: fd %d refused, resolving again", fd);
		switch (connect_ask_route(dst, SLIM_ROUTEF_RETRY, fd, &error)) {
		case SLIM_ACT_ROUTE:
			e->state = CONN_CONNECTING;
			rc = connect_kernel(fd, e);
			if (rc < 0 && errno == EALREADY)
				errno = EINPROGRESS;
			break;
		case SLIM_ACT_ERROR:
			errno = error;
			return -1;
		default:
			return connect_plain(fd, e, addr, len);
		}
	}
	return rc;
}
