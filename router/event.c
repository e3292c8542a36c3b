// SPDX-License-Identifier: MIT
/* The router's event loop: epoll for descriptors, a short list of timers, nothing else. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "router.h"

#define EVENT_BATCH 256

struct event_file {
	event_fn ef_fn;
	void *ef_arg;
	uint32_t ef_mask; /* 0: not registered */
};

struct event_timer {
	long long et_id;
	uint64_t et_when;
	timer_fn et_fn;
	void *et_arg;
	bool et_deleted;
	TAILQ_ENTRY(event_timer) et_entry;
};

struct event_loop {
	int el_epfd;
	struct event_file *el_files; /* indexed by fd */
	size_t el_nfiles;
	TAILQ_HEAD(, event_timer) el_timers;
	long long el_next_timer_id;
	bool el_stop;
};

uint64_t event_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct event_loop *event_loop_new(void)
{
	struct event_loop *loop = calloc(1, sizeof(*loop));

	if (!loop)
		return NULL;
	loop->el_epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->el_epfd < 0) {
		free(loop);
		return NULL;
	}
	TAILQ_INIT(&loop->el_timers);
	return loop;
}

void event_loop_free(struct event_loop *loop)
{
	struct event_timer *t;

	if (!loop)
		return;
	while ((t = TAILQ_FIRST(&loop->el_timers))) {
		TAILQ_REMOVE(&loop->el_timers, t, et_entry);
		free(t);
	}
	close(loop->el_epfd);
	free(loop->el_files);
	free(loop);
}

static int event_grow(struct event_loop *loop, int fd)
{
	size_t n = loop->el_nfiles ? loop->el_nfiles : 64;
	struct event_file *f;

	while (n <= (size_t)fd)
		n *= 2;
	f = realloc(loop->el_files, n * sizeof(*f));
	if (!f)
		return -ENOMEM;
	memset(f + loop->el_nfiles, 0, (n - loop->el_nfiles) * sizeof(*f));
	loop->el_files = f;
	loop->el_nfiles = n;
	return 0;
}

int event_add(struct event_loop *loop, int fd, uint32_t mask, event_fn fn, void *arg)
{
	struct epoll_event ev = {.events = mask, .data.fd = fd};
	struct event_file *f;
	int op;

	if (fd < 0)
		return -EBADF;
	if ((size_t)fd >= loop->el_nfiles && event_grow(loop, fd) < 0)
		return -ENOMEM;
	f = &loop->el_files[fd];
	op = f->ef_fn ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	if (epoll_ctl(loop->el_epfd, op, fd, &ev) < 0)
		return -errno;
	f->ef_fn = fn;
	f->ef_arg = arg;
	f->ef_mask = mask;
	return 0;
}

int event_set_mask(struct event_loop *loop, int fd, uint32_t mask)
{
	struct epoll_event ev = {.events = mask, .data.fd = fd};
	struct event_file *f;

	if (fd < 0 || (size_t)fd >= loop->el_nfiles || !loop->el_files[fd].ef_fn)
		return -ENOENT;
	f = &loop->el_files[fd];
	if (f->ef_mask == mask)
		return 0;
	if (epoll_ctl(loop->el_epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
		return -errno;
	f->ef_mask = mask;
	return 0;
}

void event_del(struct event_loop *loop, int fd)
{
	if (fd < 0 || (size_t)fd >= loop->el_nfiles || !loop->el_files[fd].ef_fn)
		return;
	epoll_ctl(loop->el_epfd, EPOLL_CTL_DEL, fd, NULL);
	memset(&loop->el_files[fd], 0, sizeof(loop->el_files[fd]));
}

long long event_timer_add(struct event_loop *loop, long ms, timer_fn fn, void *arg)
{
	struct event_timer *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->et_id = ++loop->el_next_timer_id;
	t->et_when = event_now_ms() + (uint64_t)ms;
	t->et_fn = fn;
	t->et_arg = arg;
	TAILQ_INSERT_TAIL(&loop->el_timers, t, et_entry);
	return t->et_id;
}

void event_timer_del(struct event_loop *loop, long long id)
{
	struct event_timer *t;

	/* Only marked here: the timer pass may be walking the list right now. */
	TAILQ_FOREACH(t, &loop->el_timers, et_entry)
		if (t->et_id == id)
			t->et_deleted = true;
}

void event_loop_stop(struct event_loop *loop)
{
	loop->el_stop = true;
}

/* Milliseconds until the earliest timer, -1 when there is none. */
static int event_next_timeout(struct event_loop *loop)
{
	uint64_t now = event_now_ms(), first = UINT64_MAX;
	struct event_timer *t;

	TAILQ_FOREACH(t, &loop->el_timers, et_entry)
		if (!t->et_deleted && t->et_when < first)
			first = t->et_when;
	if (first == UINT64_MAX)
		return -1;
	return first <= now ? 0 : (int)(first - now);
}

static void event_run_timers(struct event_loop *loop)
{
	uint64_t now = event_now_ms();
	struct event_timer *t, *next;

	for (t = TAILQ_FIRST(&loop->el_timers); t; t = next) {
		next = TAILQ_NEXT(t, et_entry);
		if (!t->et_deleted && t->et_when <= now) {
			long again = t->et_fn(loop, t->et_arg);

			if (again == EVENT_TIMER_STOP)
				t->et_deleted = true;
			else
				t->et_when = event_now_ms() + (uint64_t)again;
		}
	}
	for (t = TAILQ_FIRST(&loop->el_timers); t; t = next) {
		next = TAILQ_NEXT(t, et_entry);
		if (t->et_deleted) {
			TAILQ_REMOVE(&loop->el_timers, t, et_entry);
			free(t);
		}
	}
}

void event_loop_run(struct event_loop *loop)
{
	struct epoll_event evs[EVENT_BATCH];

	loop->el_stop = false;
	while (!loop->el_stop) {
		int n = epoll_wait(loop->el_epfd, evs, EVENT_BATCH, event_next_timeout(loop));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_warn("%s: epoll_wait", __func__);
			break;
		}
		for (int i = 0; i < n && !loop->el_stop; i++) {
			int fd = evs[i].data.fd;
			struct event_file *f;

			/*
			 * A handler earlier in this batch may have closed fd (and another may
			 * have reused the number): events only go to a current registration,
			 * and handlers tolerate a spurious wakeup.
			 */
			if ((size_t)fd >= loop->el_nfiles)
				continue;
			f = &loop->el_files[fd];
			if (!f->ef_fn)
				continue;
			f->ef_fn(loop, fd, evs[i].events, f->ef_arg);
		}
		event_run_timers(loop);
	}
}
