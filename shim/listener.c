// SPDX-License-Identifier: MIT
/*
 * listen() and accept(): a pod listener gets a companion host listener from the router, and
 * accept serves both behind the app's one fd (docs/design.md, "accept multiplexing"). When the
 * router cannot be asked at listen() (down, stopped), it is asked again later, without ever
 * making the app wait (docs/design.md, "A listen while the router is away").
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/inotify.h>
#include <sys/timerfd.h>
#include <sys/un.h>

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

/* At most one attempt a second from the app's own accept calls (the safety net). */
#define LISTEN_RETRY_SPACING_NS (1000 * 1000000LL)
/* A socket file that appeared may not listen yet (bind, then listen): a few quick attempts. */
#define LISTEN_RETRY_QUICK	8
#define LISTEN_RETRY_QUICK_MS	20
/* How long closing a listener waits for the router to be done with a request in flight. */
#define LISTEN_RETRY_CLOSE_WAIT_MS 50

/*
 * A LISTEN_REQ that could not be answered at listen() (the router was down or stopped), asked
 * again later on a connection of its own, never waited for. The wake fd (an epoll instance of the
 * shim's) sits beside the app's listener in its polls and epoll sets, as the host listener will,
 * and holds what can make progress: the attempt's connection while its answer is due (a stopped
 * router answers the moment it runs again: the request waits in its socket), and an inotify watch
 * on the router socket's directory (a dead router's successor creates its socket there: ask
 * then, and a few times more in quick succession from a timer if its socket does not listen
 * yet). When it turns readable, listener_retry_step() moves on (inside poll, or in the accept
 * the app's epoll wakeup leads to): asks, or takes the answer. An app is woken only when the
 * router came back (a few times around its start-up at most: the watch sees the directory's
 * other files too), never while it is away. The app's accept calls try too, at most once a
 * second.
 */
struct shim_listen_retry {
	atomic_flag lr_busy;	   /* one thread steps at a time; others leave it be */
	int lr_watch_fd;	   /* inotify on the router socket's directory, -1 */
	int lr_req_fd;		   /* the attempt's connection to the router, -1 */
	int lr_timer_fd;	   /* the quick attempts after the socket appeared, -1 */
	unsigned lr_quick;	   /* quick attempts left */
	long long lr_next_ns;	   /* no attempt from accept before this */
	size_t lr_len;
	struct slim_listen_req lr_req;
};

static long long listener_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Closes the retry's descriptors (signal-safe: close only). */
static void listener_retry_close(struct shim_listen_retry *r)
{
	if (r->lr_req_fd >= 0)
		REAL(close)(r->lr_req_fd);
	if (r->lr_watch_fd >= 0)
		REAL(close)(r->lr_watch_fd);
	if (r->lr_timer_fd >= 0)
		REAL(close)(r->lr_timer_fd);
	r->lr_req_fd = r->lr_watch_fd = r->lr_timer_fd = -1;
}

/* Nothing more to ask: the host listener is there, or the router said no. */
static void listener_retry_end(struct fd_entry *e, struct shim_listener *l)
{
	int wake_fd = atomic_exchange(&l->wake_fd, -1);

	if (wake_fd < 0)
		return;
	if (e->regs)
		readiness_epoll_unregister(wake_fd, e->regs);
	listener_retry_close(l->retry);
	REAL(close)(wake_fd);
}

/* The host listener for l: hidden, and in every epoll set the app put its listener in. */
static int listener_install(struct fd_entry *e, struct shim_listener *l, int host_fd)
{
	struct fd_entry *h = fdtab_slot(host_fd);

	if (!h) {
		REAL(close)(host_fd);
		return -1;
	}
	h->kind = FD_HIDDEN;
	h->listener = l;
	atomic_store(&l->host_fd, host_fd);
	if (e->regs)
		readiness_epoll_reregister(host_fd, e->regs);
	return 0;
}

/* The router answered the attempt on r->lr_req_fd (or hung up): take it. */
static void listener_retry_answer(int fd, struct fd_entry *e, struct shim_listener *l)
{
	struct shim_listen_retry *r = l->retry;
	struct slim_listen_rep rep;
	int host_fd = -1;
	ssize_t n = slim_msg_recv(r->lr_req_fd, &rep, sizeof(rep), &host_fd, MSG_DONTWAIT);

	if (n == -EAGAIN || n == -EINTR)
		return;
	REAL(close)(r->lr_req_fd); /* leaves the wake fd's set with it */
	r->lr_req_fd = -1;
	if (n == (ssize_t)sizeof(rep) &&
	    slim_msg_check_reply(&rep, (size_t)n, SLIM_MSG_LISTEN_REP, r->lr_req.hdr.id) == 0) {
		/* The wake fd leaves the app's sets before the host listener joins them. */
		listener_retry_end(e, l);
		if (rep.action == SLIM_ACT_FD && host_fd >= 0) {
			if (listener_install(e, l, host_fd) == 0)
				shim_log("listen: fd %d port %u also on host %s:%u (fd %d), asked again",
					 fd, ntohs(l->port),
					 inet_ntoa(*(struct in_addr *)&rep.host_ip),
					 ntohs(rep.host_port), host_fd);
			return;
		}
		/* The router is there and says no, as it could have at listen(): the pod only. */
		if (host_fd >= 0)
			REAL(close)(host_fd);
		return;
	}
	/* It went away before answering: its successor's socket (the watch) or accept asks. */
	if (host_fd >= 0)
		REAL(close)(host_fd);
}

/* An attempt: a connection of our own (non-blocking: a full backlog is a failure, not a wait),
 * the request with the app's listener as its proof, the answer awaited through the wake fd. */
static void listener_retry_ask(int fd, struct shim_listener *l)
{
	struct shim_listen_retry *r = l->retry;
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct epoll_event ev = {.events = EPOLLIN};
	int s = REAL(socket)(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	r->lr_next_ns = listener_now_ns() + LISTEN_RETRY_SPACING_NS;
	memcpy(sun.sun_path, shim_config.router_path, sizeof(shim_config.router_path));
	if (s >= 0)
		s = shim_fd_relocate(s);
	r->lr_req.hdr.id++;
	if (s < 0 || REAL(connect)(s, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    slim_msg_send(s, &r->lr_req, r->lr_len, fd) < 0 ||
	    REAL(epoll_ctl)(atomic_load(&l->wake_fd), EPOLL_CTL_ADD, s, &ev) < 0) {
		if (s >= 0)
			REAL(close)(s);
		if (r->lr_quick && r->lr_timer_fd >= 0) {
			struct itimerspec it = {
				.it_value.tv_nsec = LISTEN_RETRY_QUICK_MS * 1000000L *
						    (LISTEN_RETRY_QUICK + 1 - r->lr_quick)};

			r->lr_quick--;
			timerfd_settime(r->lr_timer_fd, 0, &it, NULL);
		}
		return;
	}
	r->lr_quick = 0;
	r->lr_req_fd = s;
}

/* Drains the watch's events; true when one names the router's socket. */
static bool listener_retry_watched(struct shim_listen_retry *r)
{
	const char *name = strrchr(shim_config.router_path, '/');
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool seen = false;
	ssize_t n;

	name = name ? name + 1 : shim_config.router_path;
	while ((n = REAL(read)(r->lr_watch_fd, buf, sizeof(buf))) > 0)
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;

			if (ev->len && !strcmp(ev->name, name))
				seen = true;
			p += sizeof(*ev) + ev->len;
		}
	return seen;
}

void listener_retry_step(int fd, struct fd_entry *e)
{
	struct shim_listener *l = e->listener;
	struct shim_listen_retry *r = l->retry;
	uint64_t ticks;
	bool ask;

	if (!r || atomic_load(&l->wake_fd) < 0 || atomic_flag_test_and_set(&r->lr_busy))
		return;
	if (atomic_load(&l->wake_fd) < 0)
		goto out;
	if (r->lr_req_fd >= 0)
		listener_retry_answer(fd, e, l);
	if (atomic_load(&l->wake_fd) < 0)
		goto out;
	ask = r->lr_watch_fd >= 0 && listener_retry_watched(r);
	if (ask)
		r->lr_quick = LISTEN_RETRY_QUICK;
	if (r->lr_timer_fd >= 0 &&
	    REAL(read)(r->lr_timer_fd, &ticks, sizeof(ticks)) == (ssize_t)sizeof(ticks))
		ask = true;
	if (r->lr_req_fd < 0 && (ask || listener_now_ns() >= r->lr_next_ns))
		listener_retry_ask(fd, l);
out:
	atomic_flag_clear(&r->lr_busy);
}

/* listen() could not ask the router: ask again now (a stopped router answers when it runs) and
 * whenever it may be back. 0, or -1 (then the pod only). */
static int listener_retry_start(int fd, struct fd_entry *e, struct shim_listener *l,
				const struct slim_listen_req *req, size_t len)
{
	struct epoll_event ev = {.events = EPOLLIN};
	struct shim_listen_retry *r = garbage_alloc(sizeof(*r));
	char dir[sizeof(shim_config.router_path)], *slash;
	int wake_fd;

	if (!r)
		return -1;
	atomic_flag_clear(&r->lr_busy);
	r->lr_req_fd = -1;
	r->lr_timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	memcpy(&r->lr_req, req, len);
	r->lr_req.hdr.len = (uint32_t)len;
	r->lr_len = len;
	memcpy(dir, shim_config.router_path, sizeof(dir));
	slash = strrchr(dir, '/');
	if (slash)
		*(slash == dir ? slash + 1 : slash) = '\0';
	r->lr_watch_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	wake_fd = REAL(epoll_create1)(EPOLL_CLOEXEC);
	if (r->lr_watch_fd >= 0)
		r->lr_watch_fd = shim_fd_relocate(r->lr_watch_fd);
	if (wake_fd >= 0)
		wake_fd = shim_fd_relocate(wake_fd);
	/* No watch (no such directory yet, no inotify): accept's attempts remain. */
	if (r->lr_watch_fd >= 0 &&
	    (!slash || inotify_add_watch(r->lr_watch_fd, dir, IN_CREATE | IN_MOVED_TO) < 0 ||
	     REAL(epoll_ctl)(wake_fd, EPOLL_CTL_ADD, r->lr_watch_fd, &ev) < 0)) {
		REAL(close)(r->lr_watch_fd);
		r->lr_watch_fd = -1;
	}
	if (r->lr_timer_fd >= 0)
		r->lr_timer_fd = shim_fd_relocate(r->lr_timer_fd);
	if (r->lr_timer_fd >= 0 && wake_fd >= 0 &&
	    REAL(epoll_ctl)(wake_fd, EPOLL_CTL_ADD, r->lr_timer_fd, &ev) < 0) {
		REAL(close)(r->lr_timer_fd);
		r->lr_timer_fd = -1;
	}
	if (wake_fd < 0) {
		listener_retry_close(r);
		garbage_defer(r);
		return -1;
	}
	l->retry = r;
	atomic_store(&l->wake_fd, wake_fd);
	listener_retry_ask(fd, l);
	if (e->regs)
		readiness_epoll_reregister(wake_fd, e->regs);
	return 0;
}

int listener_side_fd(struct shim_listener *l)
{
	int host_fd = atomic_load(&l->host_fd);

	return host_fd >= 0 ? host_fd : atomic_load(&l->wake_fd);
}

bool listener_retrying(struct shim_listener *l)
{
	return atomic_load(&l->wake_fd) >= 0;
}

void listener_retry_free(struct shim_listener *l)
{
	int wake_fd = atomic_exchange(&l->wake_fd, -1);

	if (wake_fd >= 0)
		REAL(close)(wake_fd);
	if (l->retry && l->retry->lr_req_fd >= 0) {
		/*
		 * The request in flight carries the app's listener: until the router has read it,
		 * the socket stays open (a new bind to its port fails, clients still land on it). A
		 * running router answers within a few ms; a stopped one costs this close that bound.
		 */
		struct pollfd p = {.fd = l->retry->lr_req_fd, .events = POLLIN};

		REAL(poll)(&p, 1, LISTEN_RETRY_CLOSE_WAIT_MS);
	}
	if (l->retry) {
		/* Maybe in a signal handler (close): no free() here. */
		listener_retry_close(l->retry);
		garbage_defer(l->retry);
		l->retry = NULL;
	}
}

/* A shim_listener for e's listener fd, with host_fd (or -1: none yet). */
static struct shim_listener *listener_new(struct fd_entry *e, const struct sockaddr_in *sin,
					  int host_fd)
{
	struct shim_listener *l = garbage_alloc(sizeof(*l));

	if (!l)
		return NULL;
	atomic_init(&l->refs, 1);
	atomic_init(&l->host_fd, host_fd);
	atomic_init(&l->wake_fd, -1);
	l->ip = sin->sin_addr.s_addr;
	l->port = sin->sin_port;
	l->v6 = e->v6;
	e->kind = FD_LISTENER;
	e->listener = l;
	fdtab_listener_added();
	return l;
}

int listener_after_listen(int fd, int backlog)
{
	struct fd_entry *e = fdtab_get(fd);
	struct slim_listen_req req = {.hdr.type = SLIM_MSG_LISTEN_REQ};
	struct slim_listen_rep rep;
	struct sockaddr_in sin;
	struct shim_listener *l;
	struct fd_entry *h;
	int host_fd, ret;

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
	ret = router_call_fd(&req, slim_listen_req_len(req.nopts), fd, SLIM_MSG_LISTEN_REP, &rep,
			     sizeof(rep), &host_fd);
	if (ret < 0) {
		/* The router could not be asked (down, stopped, busy): ask again later. */
		if (!(l = listener_new(e, &sin, -1)))
			e->kind = FD_PLAIN;
		else if (listener_retry_start(fd, e, l, &req, slim_listen_req_len(req.nopts)) == 0)
			shim_log("listen: fd %d port %u: router not answering (%s), asking again later",
				 fd, ntohs(sin.sin_port), strerror(-ret));
		return 0;
	}
	if (rep.action != SLIM_ACT_FD || host_fd < 0) {
		if (host_fd >= 0)
			REAL(close)(host_fd);
		e->kind = FD_PLAIN;
		return 0;
	}
	h = fdtab_slot(host_fd);
	if (!h || !(l = listener_new(e, &sin, host_fd))) {
		REAL(close)(host_fd);
		e->kind = FD_PLAIN;
		return 0;
	}
	h->kind = FD_HIDDEN;
	h->listener = l;
	if (e->regs) {
		/* The app put this socket in epoll sets before listen(): add the host side too. */
		readiness_epoll_reregister(host_fd, e->regs);
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
	fd = l->v6 ? REAL(accept4)(host_fd, (struct sockaddr *)&peer, &plen, flags)
		   : REAL(accept4)(host_fd, addr, len, flags);
	if (fd < 0)
		return -1;
	fdtab_release(fd);
	n = fdtab_slot(fd);
	if (n) {
		n->kind = FD_SLIM_ACCEPTED;
		n->v6 = l->v6;
		reset_track(n);
	}
	/* A dual-stack listener's app expects its IPv4 peers as ::ffff:a.b.c.d. */
	if (l->v6)
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
		if (atomic_load(&l->wake_fd) >= 0)
			listener_retry_step(fd, e);
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
		/* Blocking listener and nothing on the host side: wait on both (or on the pod
		 * side and the wake fd while the router is asked again). */
		int host_fd = listener_side_fd(l);
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
