// SPDX-License-Identifier: MIT
/*
 * Worker threads: each receives one notification and handles it to its end, answer included.
 * Most answers take microseconds; a blocking connect or accept waits in its worker as the app's
 * thread waits in the kernel. So that such a wait never holds up the other calls, a worker that
 * takes a notification while no other worker is idle starts one more (up to WORKER_MAX).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>

#include "supervise.h"

#define WORKER_MAX 1024

static atomic_int worker_idle, worker_count;

static void worker_dispatch(struct sup_call *c)
{
	switch (c->sn.data.nr) {
	case __NR_connect:
		connect_trap(c);
		break;
	case __NR_listen:
		listen_trap(c);
		break;
	case __NR_accept:
		listen_trap_accept(c, false);
		break;
	case __NR_accept4:
		listen_trap_accept(c, true);
		break;
	case __NR_epoll_create:
	case __NR_epoll_create1:
		epoll_trap_create(c);
		break;
	default:
		call_continue(c); /* not ours: the filter changed under us? let it run */
	}
}

static void worker_spawn(int notify_fd);

static void *worker_main(void *arg)
{
	int notify_fd = (int)(intptr_t)arg;

	for (;;) {
		struct sup_call c = {.notify_fd = notify_fd, .pidfd = -1};

		memset(&c.sn, 0, sizeof(c.sn));
		if (ioctl(notify_fd, SECCOMP_IOCTL_NOTIF_RECV, &c.sn) < 0) {
			if (errno == EINTR || errno == ENOENT)
				continue; /* ENOENT: the caller went away before we read it */
			break;    /* the app and all its children are gone */
		}
		if (atomic_fetch_sub(&worker_idle, 1) == 1)
			worker_spawn(notify_fd);
		worker_dispatch(&c);
		if (c.pidfd >= 0)
			close(c.pidfd);
		atomic_fetch_add(&worker_idle, 1);
	}
	atomic_fetch_sub(&worker_idle, 1);
	return NULL;
}

int worker_detach(void *(*fn)(void *), void *arg)
{
	pthread_attr_t attr;
	pthread_t t;
	int err;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	err = pthread_create(&t, &attr, fn, arg);
	pthread_attr_destroy(&attr);
	return -err;
}

static void worker_spawn(int notify_fd)
{
	if (atomic_fetch_add(&worker_count, 1) >= WORKER_MAX) {
		atomic_fetch_sub(&worker_count, 1);
		return;
	}
	atomic_fetch_add(&worker_idle, 1);
	if (worker_detach(worker_main, (void *)(intptr_t)notify_fd) < 0) {
		atomic_fetch_sub(&worker_idle, 1);
		atomic_fetch_sub(&worker_count, 1);
	}
}

void worker_start(int notify_fd)
{
	worker_spawn(notify_fd);
	worker_spawn(notify_fd);
}
