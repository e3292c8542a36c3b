// SPDX-License-Identifier: MIT
/*
 * listen() and accept(). The app's listen happens (done here, on our copy of its socket: the
 * same file), so its pod listener keeps serving overlay clients. Slim clients would arrive on a
 * host listener, which the app does not know of, so one is asked for (LISTEN_REQ, the app's
 * listener as proof, as the shim asks) only once the app can be woken for it, at an accept:
 * when its listener is in epoll instances, the supervisor rings the doorbell — the host listener
 * goes into them with the same events and data, so the app's event loop wakes and calls accept;
 * when the app blocks in accept (a blocking listener with nothing pending), the worker waits on
 * both. A listener only polled with poll/select is never woken by a host listener: it stays on
 * the overlay. accept/accept4 on such a listener are trapped: a host connection is handed over
 * with ADDFD (SEND: the descriptor is the call's answer), the peer's overlay name written to the
 * app's buffer; with none queued the app's own accept runs (CONTINUE: nothing was read from the
 * app, so nothing to race).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "proto.h"
#include "msg.h"
#include "sockname.h"
#include "supervise.h"

#define LISTEN_MAX        256
#define LISTEN_STASH      8
#define LISTEN_SLICE_MS   10 /* how often a blocking accept looks for a signal to take */

/* A pod listener of the app, and the host listener of ours that goes with it. close() is not
 * trapped: the sweep notices a listener the app closed (its inode no longer listens) and lets
 * go of the host side, so slim clients are refused as overlay ones are, never left waiting. */
enum listen_state {
	LISTEN_PENDING, /* no host listener yet: the app has not shown how it waits */
	LISTEN_ASKING,  /* a worker is asking the router */
	LISTEN_READY,   /* le_host_fd serves slim clients */
	LISTEN_OVERLAY, /* the router said no: overlay only */
};

struct listen_entry {
	unsigned long le_ino; /* the app's listening socket */
	int le_host_fd;
	int le_backlog;
	int le_domain;
	enum listen_state le_state;
	/* The doorbell's registrations, kept to re-arm them when they are EPOLLONESHOT. */
	struct epoll_reg le_regs[EPOLL_MAX_REGS];
	int le_nregs;
	bool le_oneshot;
	unsigned le_turn; /* every 8th accept looks at the pod side first (no starving it) */
	int le_stash[LISTEN_STASH]; /* accepted, but the app's call went away before the handover */
	int le_nstash;
};

static struct listen_entry listen_table[LISTEN_MAX];
static int listen_n;
static pthread_mutex_t listen_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t listen_settled = PTHREAD_COND_INITIALIZER; /* an ASKING entry is not */

#define LISTEN_SWEEP_S 1

static struct listen_entry *listen_find(unsigned long ino)
{
	for (int i = 0; i < listen_n; i++) {
		if (listen_table[i].le_ino == ino)
			return &listen_table[i];
	}
	return NULL;
}

/* A free entry (ino 0: swept), or a new one; NULL when the table is full. Under listen_lock. */
static struct listen_entry *listen_slot(void)
{
	struct listen_entry *e = listen_find(0);

	if (!e && listen_n < LISTEN_MAX)
		e = &listen_table[listen_n++];
	return e;
}

/*
 * The IPv4 address IPv4 clients reach a listener on: its own (AF_INET), the mapped one of a
 * ::ffff:a.b.c.d socket, 0.0.0.0 for a dual-stack :: socket. -1: no IPv4 client reaches it.
 */
static int listen_ipv4(int s, int domain, struct sockaddr_in *out)
{
	struct sockaddr_in6 sa;
	socklen_t len = sizeof(sa);

	if (getsockname(s, (struct sockaddr *)&sa, &len) < 0 || sa.sin6_family != domain)
		return -1;
	if (domain == AF_INET6)
		return slim_sockname_ipv4_of_v6(s, &sa, out);
	memcpy(out, &sa, sizeof(*out));
	return 0;
}

/* Asks the router for the host side of listener s. The host listener, or -errno. */
static int listen_ask_router(int s, int domain, int backlog)
{
	struct slim_listen_req req = {.hdr.type = SLIM_MSG_LISTEN_REQ};
	struct slim_listen_rep rep;
	struct sockaddr_in sin;
	unsigned nfds;
	int n, host_fd, err;

	if (listen_ipv4(s, domain, &sin) < 0)
		return -EAFNOSUPPORT;
	n = options_changed(s, domain, req.opts, SLIM_MAX_SOCKOPTS);
	if (n < 0)
		return n;
	req.nopts = (uint16_t)n;
	req.bound_ip = sin.sin_addr.s_addr;
	req.port = sin.sin_port;
	req.backlog = backlog;
	err = link_call(&req, slim_listen_req_len(req.nopts), s, SLIM_MSG_LISTEN_REP, &rep,
			sizeof(rep), &host_fd, 1, &nfds);
	if (err < 0)
		return err;
	if (rep.action != SLIM_ACT_FD || !nfds) {
		if (nfds)
			close(host_fd);
		return -EPERM;
	}
	sup_log("listen: port %u also on host %s:%u", ntohs(sin.sin_port),
		inet_ntoa(*(struct in_addr *)&rep.host_ip), ntohs(rep.host_port));
	return host_fd;
}

void listen_trap(struct sup_call *c)
{
	int appfd = (int)c->sn.data.args[0], backlog = (int)c->sn.data.args[1];
	struct sockaddr_in sin;
	struct sock_info si;
	int s = call_getfd(c, appfd), rc;

	if (s < 0) {
		if (s != -ENOENT)
			call_reply(c, 0, s == -EBADF ? -EBADF : -ENOTSOCK);
		return;
	}
	rc = listen(s, backlog) < 0 ? -errno : 0;
	if (rc == 0 && sock_info(s, &si) == 0 && si.si_pod && si.si_type == SOCK_STREAM &&
	    si.si_protocol == IPPROTO_TCP && (si.si_domain == AF_INET || si.si_domain == AF_INET6) &&
	    listen_ipv4(s, si.si_domain, &sin) == 0) {
		struct listen_entry *e;

		pthread_mutex_lock(&listen_lock);
		if (!listen_find(si.si_ino) && (e = listen_slot()))
			*e = (struct listen_entry){
				.le_ino = si.si_ino, .le_host_fd = -1, .le_backlog = backlog,
				.le_domain = si.si_domain, .le_state = LISTEN_PENDING};
		pthread_mutex_unlock(&listen_lock);
	}
	call_reply(c, 0, rc);
	close(s);
}

/* Writes the peer's name to the app's (addr, addrlen) with the kernel's truncation. 0/-errno. */
static int listen_write_peer(struct sup_call *c, int child, bool v6)
{
	uint64_t uaddr = c->sn.data.args[1], ulen = c->sn.data.args[2];
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
	socklen_t len = sizeof(sin);
	const void *name = &sin;
	int cap, actual = sizeof(sin), rc;

	if (!uaddr)
		return 0;
	if (getpeername(child, (struct sockaddr *)&sin, &len) < 0) /* unnamed: as the kernel does */
		memset(&sin, 0, sizeof(sin)), sin.sin_family = AF_INET;
	if (v6) {
		sin6.sin6_port = sin.sin_port;
		sin6.sin6_addr.s6_addr[10] = sin6.sin6_addr.s6_addr[11] = 0xff;
		memcpy(&sin6.sin6_addr.s6_addr[12], &sin.sin_addr, 4);
		name = &sin6;
		actual = sizeof(sin6);
	}
	if ((rc = call_read(c, ulen, &cap, sizeof(cap))) < 0)
		return rc;
	if (cap < 0)
		return -EINVAL;
	if ((rc = call_write(c, uaddr, name, (size_t)(cap < actual ? cap : actual))) < 0)
		return rc;
	return call_write(c, ulen, &actual, sizeof(actual));
}

/* A host connection for the app: a stashed one, or a new one. fd, or -errno (-EAGAIN: none). */
static int listen_take(struct listen_entry *e, int flags)
{
	int child = -1;

	pthread_mutex_lock(&listen_lock);
	if (e->le_nstash > 0)
		child = e->le_stash[--e->le_nstash];
	pthread_mutex_unlock(&listen_lock);
	if (child >= 0) {
		int fl = fcntl(child, F_GETFL);

		fcntl(child, F_SETFL, (flags & SOCK_NONBLOCK) ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
		return child;
	}
	child = accept4(e->le_host_fd, NULL, NULL, (flags & SOCK_NONBLOCK) | SOCK_CLOEXEC);
	return child < 0 ? -errno : child;
}

static void listen_stash(struct listen_entry *e, int child)
{
	pthread_mutex_lock(&listen_lock);
	if (e->le_nstash < LISTEN_STASH) {
		e->le_stash[e->le_nstash++] = child;
		child = -1;
	}
	pthread_mutex_unlock(&listen_lock);
	if (child >= 0)
		close(child);
}

/*
 * At an accept on a listener without a host side: get one if the app can be woken for it — its
 * listener is in epoll instances (the doorbell then rings there), or it blocks in accept (a
 * blocking listener with nothing pending: a select()-then-accept server always has something
 * pending when it calls accept).
 */
static void listen_prepare(struct sup_call *c, struct listen_entry *e, int s,
			   const struct sock_info *si, int appfd)
{
	struct epoll_reg regs[EPOLL_MAX_REGS];
	struct pollfd p = {.fd = s, .events = POLLIN};
	int n, host_fd;

	pthread_mutex_lock(&listen_lock);
	if (e->le_state != LISTEN_PENDING) {
		pthread_mutex_unlock(&listen_lock);
		return;
	}
	e->le_state = LISTEN_ASKING;
	pthread_mutex_unlock(&listen_lock);
	n = epoll_find(c, appfd, e->le_ino, regs, EPOLL_MAX_REGS);
	if (n == 0 && (si->si_nonblock || poll(&p, 1, 0) != 0)) {
		pthread_mutex_lock(&listen_lock);
		e->le_state = LISTEN_PENDING;
		pthread_cond_broadcast(&listen_settled);
		pthread_mutex_unlock(&listen_lock);
		return;
	}
	host_fd = listen_ask_router(s, e->le_domain, e->le_backlog);
	if (host_fd >= 0 && n > 0) {
		for (int i = 0; i < n; i++) {
			/* A oneshot registration that just fired reads as disarmed (no event bits):
			 * the doorbell is armed anyway, and again at every accept (listen_rearm). */
			if (regs[i].er_events & EPOLLONESHOT) {
				regs[i].er_events |= EPOLLIN;
				e->le_oneshot = true;
			}
		}
		memcpy(e->le_regs, regs, n * sizeof(regs[0]));
		e->le_nregs = n;
		n = epoll_add(c, host_fd, appfd, regs, n, false);
		sup_log("accept: pid %u fd %d: host listener in %d epoll instance(s)", c->sn.pid,
			appfd, n);
	}
	pthread_mutex_lock(&listen_lock);
	e->le_host_fd = host_fd;
	e->le_state = host_fd >= 0 ? LISTEN_READY : LISTEN_OVERLAY;
	pthread_cond_broadcast(&listen_settled);
	pthread_mutex_unlock(&listen_lock);
}

/*
 * The app re-arms an EPOLLONESHOT listener (EPOLL_CTL_MOD) after it handled an event; that call
 * is not trapped, so the doorbell is re-armed at each accept, which comes right before.
 */
static void listen_rearm(struct sup_call *c, struct listen_entry *e)
{
	for (int i = 0; i < e->le_nregs; i++) {
		struct epoll_event ev = {.events = e->le_regs[i].er_events,
					 .data.u64 = e->le_regs[i].er_data};
		int ep = call_getfd(c, e->le_regs[i].er_epfd);

		if (ep < 0)
			continue;
		epoll_ctl(ep, EPOLL_CTL_MOD, e->le_host_fd, &ev);
		close(ep);
	}
}

/* Blocking listener, nothing queued anywhere: wait for either side (SO_RCVTIMEO honoured).
 * 1: the host side has one; 0: the pod side has one or the call went away; -EAGAIN: timeout. */
static int listen_wait(struct sup_call *c, int s, int host_fd)
{
	struct timeval tv = {0};
	socklen_t len = sizeof(tv);
	long long left_ms = -1;

	if (getsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, &len) == 0 && (tv.tv_sec || tv.tv_usec))
		left_ms = tv.tv_sec * 1000LL + (tv.tv_usec + 999) / 1000;
	for (;;) {
		struct pollfd p[2] = {{.fd = s, .events = POLLIN}, {.fd = host_fd, .events = POLLIN}};
		int slice = left_ms >= 0 && left_ms < LISTEN_SLICE_MS ? (int)left_ms
								      : LISTEN_SLICE_MS;

		if (poll(p, 2, slice) > 0)
			return (p[1].revents & POLLIN) ? 1 : 0;
		if (left_ms >= 0 && (left_ms -= slice) <= 0)
			return -EAGAIN;
		if (!call_valid(c))
			return 0;
		if (call_signal_pending(c))
			return -CALL_ERESTARTSYS;
	}
}

void listen_trap_accept(struct sup_call *c, bool accept4)
{
	int appfd = (int)c->sn.data.args[0];
	int flags = accept4 ? (int)c->sn.data.args[3] : 0;
	struct listen_entry *e;
	struct sock_info si;
	int s, child, rc;

	if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) {
		call_continue(c); /* the kernel's EINVAL */
		return;
	}
	s = call_getfd(c, appfd);
	if (s < 0) {
		if (s != -ENOENT)
			call_continue(c);
		return;
	}
	pthread_mutex_lock(&listen_lock);
	e = sock_info(s, &si) == 0 ? listen_find(si.si_ino) : NULL;
	pthread_mutex_unlock(&listen_lock);
	if (!e || e->le_state == LISTEN_OVERLAY) {
		close(s);
		call_continue(c);
		return;
	}
	if (__atomic_load_n(&e->le_state, __ATOMIC_ACQUIRE) == LISTEN_PENDING)
		listen_prepare(c, e, s, &si, appfd);
	/* Another thread's accept is asking the router (threads blocked in accept together). */
	pthread_mutex_lock(&listen_lock);
	while (e->le_state == LISTEN_ASKING)
		pthread_cond_wait(&listen_settled, &listen_lock);
	pthread_mutex_unlock(&listen_lock);
	if (__atomic_load_n(&e->le_state, __ATOMIC_ACQUIRE) != LISTEN_READY) {
		close(s);
		call_continue(c);
		return;
	}
	if ((__atomic_fetch_add(&e->le_turn, 1, __ATOMIC_RELAXED) & 7) == 7) {
		struct pollfd p = {.fd = s, .events = POLLIN};

		if (poll(&p, 1, 0) > 0) {
			close(s);
			call_continue(c); /* an overlay client waits: the app's own accept takes it */
			return;
		}
	}
	if (e->le_oneshot)
		listen_rearm(c, e);
	for (;;) {
		child = listen_take(e, flags);
		if (child >= 0) {
			rc = listen_write_peer(c, child, e->le_domain == AF_INET6);
			if (rc == 0)
				rc = call_addfd(c, child, -1, flags & SOCK_CLOEXEC, true);
			if (rc >= 0)
				close(child);
			else if (rc == -ENOENT)
				listen_stash(e, child); /* the app's call went away: for the next one */
			else {
				listen_stash(e, child);
				call_reply(c, 0, rc);
			}
			break;
		}
		if (child != -EAGAIN || si.si_nonblock) {
			call_continue(c); /* the pod side, by the app's own accept */
			break;
		}
		rc = listen_wait(c, s, e->le_host_fd);
		if (rc < 0) {
			call_reply(c, 0, rc); /* SO_RCVTIMEO ran out, or a signal to take */
			break;
		}
		if (rc == 0) {
			call_continue(c); /* (does nothing if the call went away) */
			break;
		}
	}
	close(s);
}

/* Adds the inodes of the listening sockets in /proc/self/net/FILE (the pod's namespace). */
static int listen_sweep_read(const char *file, unsigned long *inos, int n, int max)
{
	char line[512];
	FILE *f = fopen(file, "re");

	if (!f)
		return -1;
	while (n < max && fgets(line, sizeof(line), f)) {
		unsigned st;
		unsigned long ino;

		/* sl local rem st tx:rx tr:tm retrnsmt uid timeout inode */
		if (sscanf(line, "%*s %*s %*s %x %*s %*s %*s %*s %*s %lu", &st, &ino) == 2 &&
		    st == 0x0a)
			inos[n++] = ino;
	}
	fclose(f);
	return n;
}

static bool listen_sweep_has(const unsigned long *inos, int n, unsigned long ino)
{
	for (int i = 0; i < n; i++) {
		if (inos[i] == ino)
			return true;
	}
	return false;
}

static void *listen_sweep(void *unused)
{
	static unsigned long known[LISTEN_MAX], inos[4096];

	for (;;) {
		int nknown = 0, n;

		sleep(LISTEN_SWEEP_S);
		/* Entries made before the listing below: each listened when it was made. */
		pthread_mutex_lock(&listen_lock);
		for (int i = 0; i < listen_n; i++)
			known[nknown++] = listen_table[i].le_ino;
		pthread_mutex_unlock(&listen_lock);
		n = listen_sweep_read("/proc/self/net/tcp", inos, 0, 4096);
		n = n < 0 ? -1 : listen_sweep_read("/proc/self/net/tcp6", inos, n, 4096);
		if (n < 0 || n == 4096)
			continue; /* cannot tell: keep everything */
		for (int i = 0; i < nknown; i++) {
			struct listen_entry *e;

			if (!known[i] || listen_sweep_has(inos, n, known[i]))
				continue;
			pthread_mutex_lock(&listen_lock);
			e = listen_find(known[i]);
			if (e) {
				if (e->le_host_fd >= 0)
					fdspace_retire(e->le_host_fd);
				while (e->le_nstash > 0)
					close(e->le_stash[--e->le_nstash]);
				e->le_ino = 0;
				e->le_state = LISTEN_OVERLAY;
				sup_log("listener inode %lu closed: host side let go", known[i]);
			}
			pthread_mutex_unlock(&listen_lock);
		}
	}
	return NULL;
}

void listen_sweep_start(void)
{
	worker_detach(listen_sweep, NULL);
}
