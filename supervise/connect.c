// SPDX-License-Identifier: MIT
/*
 * connect(): the supervisor reads the app's address once and acts on that copy only (a CONTINUE
 * after checking it would let the app change it in between). To an overlay address, a Service or
 * an in-pod loopback address, on an unconnected, unbound TCP/IPv4 pod socket: a governed host
 * socket from the pool, connected here and put under the app's number with ADDFD (SETFD). To
 * anything else: the supervisor connects its copy of the app's own socket (the same open file,
 * so the same effect as the app's call) and answers with what the kernel said.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <linux/types.h>

#include "govern_abi.h"
#include "proto.h"
#include "supervise.h"

/* How often a waiting connect checks that the app still waits and has no signal to take. */
#define CONNECT_SLICE_MS 10

static bool connect_virtualized(uint32_t ip)
{
	return cidr_contains(&sup_config.sc_overlay, ip) ||
	       cidr_contains(&sup_config.sc_services, ip) ||
	       (ip & htonl(0xff000000)) == htonl(0x7f000000);
}

/* The app's socket is one slim may replace: TCP/IPv4, in the pod, not connected, not bound. */
static bool connect_replaceable(int s, const struct sock_info *si)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	if (si->si_domain != AF_INET || si->si_type != SOCK_STREAM || si->si_protocol != IPPROTO_TCP ||
	    !si->si_pod)
		return false;
	if (getpeername(s, (struct sockaddr *)&sin, &len) == 0 || errno != ENOTCONN)
		return false;
	len = sizeof(sin);
	return getsockname(s, (struct sockaddr *)&sin, &len) == 0 && sin.sin_port == 0;
}

static int connect_ask_route(const struct sockaddr_in *dst, int g, int *error)
{
	struct slim_route_req req = {.hdr.type = SLIM_MSG_ROUTE_REQ};
	struct slim_route_rep rep;
	unsigned nfds;
	int fd;

	req.dst_ip = dst->sin_addr.s_addr;
	req.dst_port = dst->sin_port;
	if (link_call(&req, sizeof(req), cidr_contains(&sup_config.sc_services, req.dst_ip) ? g : -1,
		      SLIM_MSG_ROUTE_REP, &rep, sizeof(rep), &fd, 1, &nfds) < 0)
		return SLIM_ACT_FALLBACK;
	if (nfds)
		close(fd);
	*error = rep.error;
	if (rep.action == SLIM_ACT_ERROR && rep.error <= 0)
		return SLIM_ACT_FALLBACK;
	return (int)rep.action;
}

/*
 * The connect the app asked for, on our copy of its socket: what the kernel answers is the
 * answer. A blocking socket blocks this worker (others serve meanwhile). A host socket slim
 * already gave the app (connected, then connect(AF_UNSPEC)) is still governed: the kernel
 * routes it, or says the router must be asked, or refuses a destination no route leads to —
 * which the app sees as ECONNREFUSED, never as slim's internal errnos.
 */
static void connect_wait(struct sup_call *c, int g, const void *addr, socklen_t len);

/*
 * connect() on our copy without blocking this worker in the kernel, where the app's signals
 * could not reach it: a blocking TCP socket is made non-blocking for the call (the app's thread
 * waits in its connect meanwhile; the flag is its own again at once). 1 = started, wait for it.
 */
static int connect_start(int s, const struct sock_info *si, const void *addr, socklen_t len)
{
	int fl, rc;

	if (si->si_nonblock || si->si_type != SOCK_STREAM || (fl = fcntl(s, F_GETFL)) < 0)
		return connect(s, addr, len) < 0 ? -errno : 0;
	fcntl(s, F_SETFL, fl | O_NONBLOCK);
	rc = connect(s, addr, len) < 0 ? -errno : 0;
	fcntl(s, F_SETFL, fl);
	return rc == -EINPROGRESS ? 1 : rc;
}

static void connect_self(struct sup_call *c, int s, const struct sock_info *si, const void *addr,
			 socklen_t len)
{
	int rc = connect_start(s, si, addr, len), error = 0;

	if (!si->si_pod && rc == -SLIM_ERRNO_MISS && len >= sizeof(struct sockaddr_in) &&
	    ((const struct sockaddr *)addr)->sa_family == AF_INET) {
		int action = connect_ask_route(addr, s, &error);

		if (action == SLIM_ACT_ROUTE)
			rc = connect_start(s, si, addr, len);
		else if (action == SLIM_ACT_ERROR)
			rc = -error;
	}
	if (!si->si_pod && (rc == -SLIM_ERRNO_MISS || rc == -SLIM_ERRNO_FALLBACK))
		rc = -ECONNREFUSED;
	if (rc == 1)
		connect_wait(c, s, addr, len);
	else
		call_reply(c, 0, rc);
}

/*
 * Connects governed socket g to dst: the kernel's connect program routes it, or says the router
 * must be asked (a miss: ask once, connect again), or that the overlay carries it, or that policy
 * refuses. 0 (connected or in progress), 1 (take the overlay; *unused: g is as it came from the
 * pool, refused by the connect program before anything happened), or -errno for the app.
 */
static int connect_governed(int g, const struct sockaddr_in *dst, bool *unused)
{
	int error = 0, action;

	*unused = false;
	for (int attempt = 0;; attempt++) {
		if (connect(g, (const struct sockaddr *)dst, sizeof(*dst)) == 0 || errno == EINPROGRESS)
			return 0;
		if (errno == SLIM_ERRNO_MISS && attempt == 0) {
			action = connect_ask_route(dst, g, &error);
			if (action == SLIM_ACT_ROUTE)
				continue;
			*unused = action != SLIM_ACT_ERROR;
			return action == SLIM_ACT_ERROR ? -error : 1;
		}
		if (errno == ECONNREFUSED)
			return -ECONNREFUSED; /* the pod's verdict in the kernel: policy refuses */
		*unused = errno == SLIM_ERRNO_FALLBACK || errno == SLIM_ERRNO_MISS;
		return 1;
	}
}

/*
 * A blocking app's connect: wait here for socket g, as the kernel would. Once connected, one more
 * connect() (it returns 0 at once) moves the socket to the state the kernel's own wait leaves it
 * in, so the app's next connect says EISCONN, not 0 once more.
 */
static void connect_wait(struct sup_call *c, int g, const void *addr, socklen_t addrlen)
{
	struct timeval tv = {0};
	socklen_t len = sizeof(tv);
	long long left_ms = -1;
	int err = 0;

	if (getsockopt(g, SOL_SOCKET, SO_SNDTIMEO, &tv, &len) == 0 && (tv.tv_sec || tv.tv_usec))
		left_ms = tv.tv_sec * 1000LL + (tv.tv_usec + 999) / 1000;
	for (;;) {
		struct pollfd p = {.fd = g, .events = POLLOUT};
		int slice = left_ms >= 0 && left_ms < CONNECT_SLICE_MS ? (int)left_ms
								       : CONNECT_SLICE_MS;
		int rc = poll(&p, 1, slice);

		if (rc > 0) {
			len = sizeof(err);
			if (getsockopt(g, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
				err = errno;
			if (!err && connect(g, addr, addrlen) < 0 && errno != EISCONN)
				err = errno;
			call_reply(c, 0, -err);
			return;
		}
		if (left_ms >= 0 && (left_ms -= slice) <= 0) {
			call_reply(c, 0, -EINPROGRESS); /* SO_SNDTIMEO ran out */
			return;
		}
		if (!call_valid(c))
			return; /* interrupted: a restarted connect finds it in progress */
		if (call_signal_pending(c)) {
			/* A restarted connect finds it in progress and waits again, as the kernel's. */
			call_reply(c, 0, -CALL_ERESTARTSYS);
			return;
		}
	}
}

/* Puts governed socket g under the app's number. 0, or -errno (nothing changed then). */
static int connect_swap(struct sup_call *c, int appfd, int s, const struct sock_info *si, int g)
{
	struct epoll_reg regs[EPOLL_MAX_REGS];
	int flags = call_fd_flags(c, appfd);
	int nregs, rc;

	if (flags < 0)
		return flags;
	nregs = epoll_find(c, appfd, si->si_ino, regs, EPOLL_MAX_REGS);
	if (!si->si_nonblock) {
		int fl = fcntl(g, F_GETFL);

		if (fl < 0 || fcntl(g, F_SETFL, fl & ~O_NONBLOCK) < 0)
			return -errno;
	}
	rc = call_addfd(c, g, appfd, flags & O_CLOEXEC, false);
	if (rc < 0)
		return rc;
	/* The pod socket's last reference (unless the app dup'ed it): its epoll entries go too. */
	close(s);
	if (nregs > 0)
		epoll_add(c, g, appfd, regs, nregs, true);
	return 0;
}

void connect_trap(struct sup_call *c)
{
	int appfd = (int)c->sn.data.args[0];
	socklen_t len = (socklen_t)c->sn.data.args[2];
	struct sockaddr_storage ss = {0};
	struct sockaddr_in dst;
	struct sock_info si;
	struct slim_sockopt opts[SLIM_MAX_SOCKOPTS];
	int s, g, rc, nopts;
	bool unused;

	if (len < sizeof(sa_family_t) || len > sizeof(ss)) {
		call_continue(c); /* nothing read: the kernel says EINVAL */
		return;
	}
	rc = call_read(c, c->sn.data.args[1], &ss, len);
	if (rc == -ENOENT)
		return;
	if (rc < 0 || (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)) {
		/* Nothing the supervisor decides on: an AF_UNIX connect must stay the app's own
		 * (paths resolve in its root and cwd, its credentials name the peer). */
		call_continue(c);
		return;
	}
	s = call_getfd(c, appfd);
	if (s < 0) {
		if (s != -ENOENT)
			call_reply(c, 0, s == -EBADF ? -EBADF : -ENOTSOCK);
		return;
	}
	if (sock_info(s, &si) < 0) {
		call_reply(c, 0, -ENOTSOCK);
		close(s);
		return;
	}
	memcpy(&dst, &ss, sizeof(dst));
	if (ss.ss_family != AF_INET || len < sizeof(dst) || !connect_virtualized(dst.sin_addr.s_addr) ||
	    !connect_replaceable(s, &si))
		goto self;
	nopts = options_changed(s, AF_INET, opts, SLIM_MAX_SOCKOPTS);
	if (nopts < 0 || (g = pool_take()) < 0)
		goto self;
	if (options_apply(g, opts, (unsigned)nopts) < 0) {
		close(g);
		goto self;
	}
	rc = connect_governed(g, &dst, &unused);
	if (rc > 0) {
		if (unused && !nopts)
			pool_put(g); /* back, unless it carries the app's options */
		else
			close(g);
		sup_log("connect: pid %u fd %d -> %s:%u: overlay", c->sn.pid, appfd,
			inet_ntoa(dst.sin_addr), ntohs(dst.sin_port));
		goto self;
	}
	if (rc < 0) {
		close(g);
		call_reply(c, 0, rc);
		close(s);
		return;
	}
	rc = connect_swap(c, appfd, s, &si, g);
	if (rc < 0) {
		close(g);
		if (rc == -ENOENT) {
			close(s);
			return;
		}
		goto self; /* the app's socket is untouched; its own connect is still to come */
	}
	sup_log("connect: pid %u fd %d -> %s:%u via a governed host socket", c->sn.pid, appfd,
		inet_ntoa(dst.sin_addr), ntohs(dst.sin_port));
	if (si.si_nonblock)
		call_reply(c, 0, -EINPROGRESS);
	else
		connect_wait(c, g, &dst, sizeof(dst));
	close(g);
	return;
self:
	connect_self(c, s, &si, &ss, len);
	close(s);
}
