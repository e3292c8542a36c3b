// SPDX-License-Identifier: MIT
/*
 * Readiness: poll/ppoll/select/pselect fold a listener's hidden host listener into the app's fd;
 * epoll_ctl registers both under the app's epoll_data (so epoll_wait needs no interposition), and
 * remembers where a not-yet-connected socket was registered, to re-register it after connect
 * swaps the file under its number. poll/ppoll also connect again a governed connect refused on a
 * route that may be stale, before the app sees the error bits (readiness_heal).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shim.h"

#define POLL_STACK 64

static int readiness_poll_again(struct pollfd *fds, nfds_t nfds, const struct timespec *tmo,
				const sigset_t *mask, int timeout_ms, bool use_ppoll,
				const struct timespec *start);

/*
 * Polls fds plus one extra entry per listener asking for POLLIN, then folds the extra entries'
 * readiness back. Returns what poll would have returned for the app's array. A listener whose
 * router is asked again has its wake fd polled instead of a host listener: when it fires the
 * shim does its step here and, if nothing of the app's is ready, polls again for the time left.
 */
static int readiness_poll_expanded(struct pollfd *fds, nfds_t nfds, const struct timespec *tmo,
				   const sigset_t *mask, int timeout_ms, bool use_ppoll)
{
	struct pollfd stack[POLL_STACK], *all = stack;
	nfds_t *owner, owner_stack[POLL_STACK], extra = 0;
	struct timespec start;
	bool woke = false;
	int rc;

	for (nfds_t i = 0; i < nfds; i++) {
		struct fd_entry *e = fdtab_get(fds[i].fd);

		if (e && e->kind == FD_LISTENER && (fds[i].events & POLLIN) &&
		    listener_side_fd(e->listener) >= 0)
			extra++;
	}
	if (!extra)
		return use_ppoll ? REAL(ppoll)(fds, nfds, tmo, mask) : REAL(poll)(fds, nfds, timeout_ms);
	owner = owner_stack;
	if (nfds + extra > POLL_STACK) {
		all = malloc((nfds + extra) * (sizeof(*all) + sizeof(*owner)));
		if (!all) /* no memory: the pod side still works */
			return use_ppoll ? REAL(ppoll)(fds, nfds, tmo, mask)
					 : REAL(poll)(fds, nfds, timeout_ms);
		owner = (nfds_t *)(all + nfds + extra);
	}
	memcpy(all, fds, nfds * sizeof(*fds));
	extra = 0;
	for (nfds_t i = 0; i < nfds; i++) {
		struct fd_entry *e = fdtab_get(fds[i].fd);
		int host_fd;

		if (!e || e->kind != FD_LISTENER || !(fds[i].events & POLLIN))
			continue;
		host_fd = listener_side_fd(e->listener);
		if (host_fd < 0)
			continue;
		all[nfds + extra] = (struct pollfd){.fd = host_fd, .events = POLLIN};
		owner[extra++] = i;
	}
	clock_gettime(CLOCK_MONOTONIC, &start);
	rc = use_ppoll ? REAL(ppoll)(all, nfds + extra, tmo, mask)
		       : REAL(poll)(all, nfds + extra, timeout_ms);
	if (rc > 0) {
		for (nfds_t i = 0; i < nfds; i++)
			fds[i].revents = all[i].revents;
		for (nfds_t x = 0; x < extra; x++) {
			struct fd_entry *e = fdtab_get(fds[owner[x]].fd);

			if (!(all[nfds + x].revents & (POLLIN | POLLERR | POLLHUP)))
				continue;
			/* A wake fd: the shim's own business, not a connection for the app. */
			if (e && e->kind == FD_LISTENER &&
			    all[nfds + x].fd != atomic_load(&e->listener->host_fd)) {
				listener_retry_step(fds[owner[x]].fd, e);
				woke = true;
			} else if (all[nfds + x].revents & POLLIN) {
				fds[owner[x]].revents |= POLLIN;
			}
		}
		rc = 0;
		for (nfds_t i = 0; i < nfds; i++)
			rc += fds[i].revents != 0;
	}
	if (all != stack)
		free(all);
	if (rc == 0 && woke)
		return readiness_poll_again(fds, nfds, tmo, mask, timeout_ms, use_ppoll, &start);
	return rc;
}

/* Nothing for the app yet, only the shim's own wake-up: wait the rest of the app's timeout. */
static int readiness_poll_again(struct pollfd *fds, nfds_t nfds, const struct timespec *tmo,
				const sigset_t *mask, int timeout_ms, bool use_ppoll,
				const struct timespec *start)
{
	struct timespec now, left;
	long long spent, rest;

	clock_gettime(CLOCK_MONOTONIC, &now);
	spent = (now.tv_sec - start->tv_sec) * 1000000000LL + (now.tv_nsec - start->tv_nsec);
	if (use_ppoll) {
		if (!tmo)
			return readiness_poll_expanded(fds, nfds, NULL, mask, 0, true);
		rest = tmo->tv_sec * 1000000000LL + tmo->tv_nsec - spent;
		left = (struct timespec){.tv_sec = rest > 0 ? rest / 1000000000LL : 0,
					 .tv_nsec = rest > 0 ? rest % 1000000000LL : 0};
		return readiness_poll_expanded(fds, nfds, &left, mask, 0, true);
	}
	if (timeout_ms < 0)
		return readiness_poll_expanded(fds, nfds, NULL, NULL, -1, false);
	rest = timeout_ms - spent / 1000000;
	return readiness_poll_expanded(fds, nfds, NULL, NULL, rest > 0 ? (int)rest : 0, false);
}

/*
 * A governed non-blocking connect the kernel reports ended in an error (POLLERR/POLLHUP) may
 * have been refused on a stale route: connect_heal connects it again, and the app, which would
 * have taken the error bits for the answer (curl does), sees nothing of it yet. Returns the
 * number of the app's entries still ready.
 */
static int readiness_heal(struct pollfd *fds, nfds_t nfds, int rc)
{
	for (nfds_t i = 0; i < nfds; i++) {
		struct fd_entry *e;

		if (!(fds[i].revents & (POLLERR | POLLHUP)) || !(e = fdtab_get(fds[i].fd)) ||
		    e->kind != FD_SLIM_CONN || e->state != CONN_CONNECTING)
			continue;
		if (connect_heal(fds[i].fd, e)) {
			fds[i].revents = 0;
			rc--;
		}
	}
	return rc;
}

/* poll and ppoll: listeners folded in (readiness_poll_expanded), refused connects healed. */
static int readiness_poll(struct pollfd *fds, nfds_t nfds, const struct timespec *tmo,
			  const sigset_t *mask, int timeout_ms, bool use_ppoll)
{
	bool heal = atomic_load_explicit(&connect_governed_made, memory_order_relaxed);
	struct timespec start;
	int rc;

	if (heal)
		clock_gettime(CLOCK_MONOTONIC, &start);
	if (!fdtab_has_listeners())
		rc = use_ppoll ? REAL(ppoll)(fds, nfds, tmo, mask) : REAL(poll)(fds, nfds, timeout_ms);
	else
		rc = readiness_poll_expanded(fds, nfds, tmo, mask, timeout_ms, use_ppoll);
	if (rc <= 0 || !heal)
		return rc;
	rc = readiness_heal(fds, nfds, rc);
	if (rc == 0)
		return readiness_poll_again(fds, nfds, tmo, mask, timeout_ms, use_ppoll, &start);
	return rc;
}

SHIM_EXPORT int poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
	return readiness_poll(fds, nfds, NULL, NULL, timeout, false);
}

SHIM_EXPORT int ppoll(struct pollfd *fds, nfds_t nfds, const struct timespec *tmo,
		      const sigset_t *mask)
{
	return readiness_poll(fds, nfds, tmo, mask, 0, true);
}

/* _FORTIFY_SOURCE builds call these; the size check stays libc's. */
int __poll_chk(struct pollfd *fds, nfds_t nfds, int timeout, size_t fdslen);
int __ppoll_chk(struct pollfd *fds, nfds_t nfds, const struct timespec *tmo, const sigset_t *mask,
		size_t fdslen);

SHIM_EXPORT int __poll_chk(struct pollfd *fds, nfds_t nfds, int timeout, size_t fdslen)
{
	if (fdslen / sizeof(*fds) < nfds)
		return REAL(__poll_chk)(fds, nfds, timeout, fdslen);
	return readiness_poll(fds, nfds, NULL, NULL, timeout, false);
}

SHIM_EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t nfds, const struct timespec *tmo,
			    const sigset_t *mask, size_t fdslen)
{
	if (fdslen / sizeof(*fds) < nfds)
		return REAL(__ppoll_chk)(fds, nfds, tmo, mask, fdslen);
	return readiness_poll(fds, nfds, tmo, mask, 0, true);
}

static bool readiness_set_has_listener(int nfds, fd_set *readfds)
{
	if (!readfds || !fdtab_has_listeners())
		return false;
	for (int fd = 0; fd < nfds && fd < FD_SETSIZE; fd++) {
		struct fd_entry *e;

		if (FD_ISSET(fd, readfds) && (e = fdtab_get(fd)) && e->kind == FD_LISTENER)
			return true;
	}
	return false;
}

/*
 * select/pselect with a listener among the read fds, done with ppoll (the hidden host listener
 * may sit above FD_SETSIZE). Returns select's result and updates the sets like select does.
 */
static int readiness_select_via_poll(int nfds, fd_set *r, fd_set *w, fd_set *x,
				     const struct timespec *tmo, const sigset_t *mask)
{
	struct pollfd stack[POLL_STACK], *p = stack;
	int n = 0, rc;

	for (int fd = 0; fd < nfds && fd < FD_SETSIZE; fd++)
		n += (r && FD_ISSET(fd, r)) || (w && FD_ISSET(fd, w)) || (x && FD_ISSET(fd, x));
	if (n > POLL_STACK && !(p = malloc(n * sizeof(*p)))) {
		errno = ENOMEM;
		return -1;
	}
	n = 0;
	for (int fd = 0; fd < nfds && fd < FD_SETSIZE; fd++) {
		short ev = 0;

		ev |= (r && FD_ISSET(fd, r)) ? POLLIN : 0;
		ev |= (w && FD_ISSET(fd, w)) ? POLLOUT : 0;
		ev |= (x && FD_ISSET(fd, x)) ? POLLPRI : 0;
		if (ev)
			p[n++] = (struct pollfd){.fd = fd, .events = ev};
	}
	rc = readiness_poll_expanded(p, n, tmo, mask, 0, true);
	if (rc >= 0) {
		rc = 0;
		if (r)
			FD_ZERO(r);
		if (w)
			FD_ZERO(w);
		if (x)
			FD_ZERO(x);
		for (int i = 0; i < n; i++) {
			short re = p[i].revents;

			if (re & POLLNVAL) {
				errno = EBADF;
				rc = -1;
				break;
			}
			/* select's mapping of poll events, as the kernel does it */
			if (r && (p[i].events & POLLIN) && (re & (POLLIN | POLLHUP | POLLERR))) {
				FD_SET(p[i].fd, r);
				rc++;
			}
			if (w && (p[i].events & POLLOUT) && (re & (POLLOUT | POLLERR))) {
				FD_SET(p[i].fd, w);
				rc++;
			}
			if (x && (p[i].events & POLLPRI) && (re & POLLPRI)) {
				FD_SET(p[i].fd, x);
				rc++;
			}
		}
	}
	if (p != stack)
		free(p);
	return rc;
}

static long long ts_ns(const struct timespec *t)
{
	return t->tv_sec * 1000000000LL + t->tv_nsec;
}

SHIM_EXPORT int select(int nfds, fd_set *r, fd_set *w, fd_set *x, struct timeval *tv)
{
	struct timespec tmo, start, end;
	int rc;

	if (!readiness_set_has_listener(nfds, r))
		return REAL(select)(nfds, r, w, x, tv);
	if (tv && (tv->tv_sec < 0 || tv->tv_usec < 0 || tv->tv_usec >= 1000000)) {
		errno = EINVAL;
		return -1;
	}
	if (tv)
		tmo = (struct timespec){.tv_sec = tv->tv_sec, .tv_nsec = tv->tv_usec * 1000};
	clock_gettime(CLOCK_MONOTONIC, &start);
	rc = readiness_select_via_poll(nfds, r, w, x, tv ? &tmo : NULL, NULL);
	if (tv) {
		/* Linux select() leaves the time not slept in *tv. */
		clock_gettime(CLOCK_MONOTONIC, &end);
		long long left = ts_ns(&tmo) - (ts_ns(&end) - ts_ns(&start));

		if (left < 0)
			left = 0;
		tv->tv_sec = left / 1000000000LL;
		tv->tv_usec = (left % 1000000000LL) / 1000;
	}
	return rc;
}

SHIM_EXPORT int pselect(int nfds, fd_set *r, fd_set *w, fd_set *x, const struct timespec *tmo,
			const sigset_t *mask)
{
	if (!readiness_set_has_listener(nfds, r))
		return REAL(pselect)(nfds, r, w, x, tmo, mask);
	return readiness_select_via_poll(nfds, r, w, x, tmo, mask);
}

static void readiness_track_epoll(int epfd)
{
	struct fd_entry *e;

	if (epfd < 0 || !(e = fdtab_slot(epfd)))
		return;
	fdtab_release(epfd);
	e->kind = FD_EPOLL;
}

SHIM_EXPORT int epoll_create(int size)
{
	int epfd = REAL(epoll_create)(size);

	readiness_track_epoll(epfd);
	return epfd;
}

SHIM_EXPORT int epoll_create1(int flags)
{
	int epfd = REAL(epoll_create1)(flags);

	readiness_track_epoll(epfd);
	return epfd;
}

/* Records (or forgets) the registration of a not-yet-connected socket in epfd. */
static void readiness_record(struct fd_entry *e, int epfd, int op, const struct epoll_event *ev)
{
	struct fd_entry *ep = fdtab_get(epfd);
	struct shim_regs *regs = e->regs;
	unsigned i;

	if (!ep || ep->kind != FD_EPOLL)
		return; /* an epoll fd created before the shim loaded: cannot guard its reuse */
	if (!regs && op == EPOLL_CTL_ADD) {
		garbage_collect();
		regs = e->regs = garbage_alloc(sizeof(*regs));
		if (!regs)
			return;
	}
	if (!regs)
		return;
	for (i = 0; i < regs->n; i++)
		if (regs->reg[i].epfd == epfd)
			break;
	if (op == EPOLL_CTL_DEL) {
		if (i < regs->n)
			regs->reg[i] = regs->reg[--regs->n];
		return;
	}
	if (i == regs->n) {
		if (regs->n == SHIM_MAX_EPOLL_REGS) {
			/* A membership the swap could not restore: keep this socket in the pod (a
			 * listener's host listener will miss that set). */
			if (e->kind == FD_TCP)
				e->kind = FD_PLAIN;
			return;
		}
		regs->n++;
	}
	regs->reg[i] = (struct shim_epoll_reg){.epfd = epfd, .epgen = ep->epgen, .ev = *ev};
}

SHIM_EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	int rc = REAL(epoll_ctl)(epfd, op, fd, ev);
	struct fd_entry *e;

	if (rc < 0 || !(e = fdtab_get(fd)))
		return rc;
	if (e->kind == FD_LISTENER) {
		int host_fd = listener_side_fd(e->listener);
		int saved = errno;

		/* Same data, so the app sees its listener whichever side has a connection. */
		if (host_fd >= 0)
			REAL(epoll_ctl)(epfd, op, host_fd, ev);
		/* The host listener, when it comes, joins the same sets. */
		if (listener_retrying(e->listener))
			readiness_record(e, epfd, op, ev);
		errno = saved;
	} else if (e->kind == FD_TCP) {
		readiness_record(e, epfd, op, ev);
	}
	return rc;
}

static bool readiness_reg_valid(const struct shim_epoll_reg *r)
{
	struct fd_entry *ep = fdtab_get(r->epfd);

	/* The epoll fd may have been closed and its number reused since. */
	return ep && ep->kind == FD_EPOLL && ep->epgen == r->epgen;
}

void readiness_epoll_unregister(int fd, const struct shim_regs *regs)
{
	for (unsigned i = 0; i < regs->n; i++)
		if (readiness_reg_valid(&regs->reg[i]))
			REAL(epoll_ctl)(regs->reg[i].epfd, EPOLL_CTL_DEL, fd, NULL);
}

void readiness_epoll_reregister(int fd, const struct shim_regs *regs)
{
	for (unsigned i = 0; i < regs->n; i++) {
		struct epoll_event ev = regs->reg[i].ev;

		if (readiness_reg_valid(&regs->reg[i]))
			REAL(epoll_ctl)(regs->reg[i].epfd, EPOLL_CTL_ADD, fd, &ev);
	}
}
