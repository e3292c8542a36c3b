// SPDX-License-Identifier: MIT
/*
 * listen() and accept(): a pod listener gets a companion host listener from the router, and
 * accept serves both behind the app's one fd (docs/design.md, "accept multiplexing").
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include "msg.h"
#include "shim.h"
#include "sockname.h"

/*
 * The IPv4 address a listener takes clients on: its own for AF_INET; for AF_INET6, the mapped
 * address of a ::ffff:a.b.c.d socket, or 0.0.0.0 for a dual-stack :: socket (IPV6_V6ONLY off).
 * -1 for a listener no IPv4 client can reach: not virtualized.
 */
static int listener_ipv4_address(int fd, const struct fd_entry *e, struct sockaddr_in *out)
{
	struct sockaddr_in6 sin6;
	socklen_t len = sizeof(sin6);

	if (REAL(getsockname)(fd, (struct sockaddr *)&sin6, &len) < 0)
		return -1;
	if (e->v6)
		return slim_sockname_ipv4_of_v6(fd, &sin6, out);
	if (sin6.sin6_family != AF_INET)
		return -1;
	memcpy(out, &sin6, sizeof(*out));
	return 0;
}

int listener_after_listen(int fd, int backlog)
{
	struct fd_entry *e = fdtab_get(fd);
	struct slim_listen_req req = {.hdr.type = SLIM_MSG_LISTEN_REQ};
	struct slim_listen_rep rep;
	struct sockaddr_in sin;
	struct shim_listener *l;
	struct fd_entry *h;
	int host_fd;

	/*
	 * Loopback listeners too: a sidecar's peer in the same pod reaches it over host sockets on
	 * the same-host fast path; the router never offers them to other pods.
	 */
	if (listener_ipv4_address(fd, e, &sin) < 0) {
		e->kind = FD_PLAIN;
		return 0;
	}
	garbage_collect();
	req.bound_ip = sin.sin_addr.s_addr;
	req.port = sin.sin_port;
	req.backlog = backlog;
	if (e->opts) {
		req.nopts = e->opts->n;
		memcpy(req.opts, e->opts->opt, e->opts->n * sizeof(req.opts[0]));
	}
	/* The listener itself goes with the request: the router's proof that it is ours. */
	if (router_call_fd(&req, slim_listen_req_len(req.nopts), fd, SLIM_MSG_LISTEN_REP, &rep,
			   sizeof(rep), &host_fd) < 0 ||
	    rep.action != SLIM_ACT_FD || host_fd < 0) {
		if (host_fd >= 0)
			REAL(close)(host_fd);
		e->kind = FD_PLAIN;
		return 0;
	}
	l = garbage_alloc(sizeof(*l));
	h = fdtab_slot(host_fd);
	if (!l || !h) {
		garbage_defer(l);
		REAL(close)(host_fd);
		e->kind = FD_PLAIN;
		return 0;
	}
	atomic_init(&l->refs, 1);
	atomic_init(&l->host_fd, host_fd);
	l->ip = sin.sin_addr.s_addr;
	l->port = sin.sin_port;
	l->v6 = e->v6;
	h->kind = FD_HIDDEN;
	h->listener = l;
	e->kind = FD_LISTENER;
	e->listener = l;
	fdtab_listener_added();
	if (e->regs) {
		/* The app put this socket in epoll sets before listen(): add the host side too. */
		for (unsigned i = 0; i < e->regs->n; i++) {
			struct epoll_event ev = e->regs->reg[i].ev;

			REAL(epoll_ctl)(e->regs->reg[i].epfd, EPOLL_CTL_ADD, host_fd, &ev);
		}
		garbage_defer(e->regs);
		e->regs = NULL;
	}
	shim_log("listen: fd %d port %u also on host %s:%u (fd %d)", fd, ntohs(sin.sin_port),
		 inet_ntoa(*(struct in_addr *)&rep.host_ip), ntohs(rep.host_port), host_fd);
	return 0;
}

void listener_mirror_sockopt(struct fd_entry *e, int level, int name, const void *val,
			     socklen_t len)
{
	int host_fd = atomic_load(&e->listener->host_fd);

	/* Accepted host sockets inherit these from the host listener, as pod ones do from theirs. */
	if (host_fd >= 0)
		REAL(setsockopt)(host_fd, level, name, val, len);
}

/*
 * Accepts from the host listener: a connection, -1/EAGAIN when none is pending, or an error.
 * The kernel let in only connections with a valid identity and already names the peer by its
 * overlay address (accept's address included), so there is nothing to read and nothing to wait
 * for: a non-blocking accept never blocks here.
 */
static int listener_accept_host(struct fd_entry *e, struct sockaddr *addr, socklen_t *len,
				int flags)
{
	struct shim_listener *l = e->listener;
	struct sockaddr_in peer;
	socklen_t plen = sizeof(peer);
	struct fd_entry *n;
	int host_fd = atomic_load(&l->host_fd), fd;

	if (host_fd < 0) {
		errno = EAGAIN;
		return -1;
	}
	if (!l->v6) {
		fd = REAL(accept4)(host_fd, addr, len, flags);
		if (fd >= 0)
			fdtab_release(fd);
		return fd;
	}
	fd = REAL(accept4)(host_fd, (struct sockaddr *)&peer, &plen, flags);
	if (fd < 0)
		return -1;
	/* A dual-stack listener's app expects its IPv4 peers as ::ffff:a.b.c.d. */
	fdtab_release(fd);
	n = fdtab_slot(fd);
	if (n) {
		n->kind = FD_SLIM_ACCEPTED;
		n->v6 = 1;
	}
	sockaddr_out(&peer, addr, len, true);
	return fd;
}

static int listener_accept_pod(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	int nfd = REAL(accept4)(fd, addr, len, flags);

	if (nfd >= 0)
		fdtab_release(nfd);
	return nfd;
}

/* The wait a blocking accept would do: SO_RCVTIMEO of the app's listener, or forever. */
static int listener_timeout_ms(int fd)
{
	struct timeval tv;
	socklen_t len = sizeof(tv);

	if (getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, &len) < 0 || (!tv.tv_sec && !tv.tv_usec))
		return -1;
	return (int)(tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000);
}

int listener_accept(int fd, struct fd_entry *e, struct sockaddr *addr, socklen_t *len, int flags)
{
	struct shim_listener *l = e->listener;
	int fl, rc, timeout_ms = -2;

	for (;;) {
		/*
		 * The host side first, as it carries the slim clients; every 8th call the pod side
		 * goes first, so a stream of host connections cannot starve it.
		 */
		bool host_first = (atomic_fetch_add(&l->turn, 1) & 7) != 0;

		if (host_first) {
			rc = listener_accept_host(e, addr, len, flags);
			if (rc >= 0 || errno != EAGAIN)
				return rc;
		}
		fl = REAL(fcntl)(fd, F_GETFL);
		if (fl < 0)
			return -1;
		if (fl & O_NONBLOCK) {
			rc = listener_accept_pod(fd, addr, len, flags);
			if (rc >= 0 || errno != EAGAIN || host_first)
				return rc;
			return listener_accept_host(e, addr, len, flags);
		}
		if (!host_first) {
			rc = listener_accept_host(e, addr, len, flags);
			if (rc >= 0 || errno != EAGAIN)
				return rc;
		}
		/* Blocking listener and nothing on the host side: wait on both. */
		int host_fd = atomic_load(&l->host_fd);
		struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = host_fd, .events = POLLIN}};

		if (timeout_ms == -2)
			timeout_ms = listener_timeout_ms(fd);
		rc = REAL(poll)(p, host_fd >= 0 ? 2 : 1, timeout_ms);
		if (rc == 0) {
			errno = EAGAIN; /* SO_RCVTIMEO expired, as the kernel reports it */
			return -1;
		}
		if (rc < 0) {
			if (errno == EINTR && signal_restarts())
				continue;
			return -1;
		}
		if (p[0].revents & (POLLIN | POLLERR | POLLHUP | POLLNVAL))
			return listener_accept_pod(fd, addr, len, flags);
		/* else the host side has one: loop */
	}
}
