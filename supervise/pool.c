// SPDX-License-Identifier: MIT
/*
 * Governed host sockets, made by the router in its cgroup ahead of need (POOL_REQ) and kept
 * here for every process the supervisor serves: the router counts them against the pod, whose
 * processes these are. When half a batch is left, a thread of the pool's own asks for the next
 * batch, so connects do not wait for the router; one that finds the pool empty all the same asks
 * on its own thread's router connection. The lock is held only to take or store descriptors.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>

#include "msg.h"
#include "supervise.h"

#define POOL_MAX (2 * SLIM_POOL_BATCH)
#define POOL_LOW (SLIM_POOL_BATCH / 2) /* ask ahead when fewer are left */

static int pool_fd[POOL_MAX];
static int pool_n;
static bool pool_wanted; /* the refill thread is asked for a batch */
/* The router said no (not a pod, rate) or was not there: connects do not ask again before. */
static time_t pool_refused_until;
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cond = PTHREAD_COND_INITIALIZER;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

/* Asks the router for a batch and keeps it. 0, or -errno (no router, not a pod). */
static int pool_refill(void)
{
	struct slim_pool_req req = {.hdr.type = SLIM_MSG_POOL_REQ, .count = SLIM_POOL_BATCH};
	struct slim_pool_rep rep;
	int fds[SLIM_MSG_MAX_FDS];
	unsigned nfds;
	int err = link_call(&req, sizeof(req), -1, SLIM_MSG_POOL_REP, &rep, sizeof(rep), fds,
			    SLIM_MSG_MAX_FDS, &nfds);

	if (err == 0 && (rep.action != SLIM_ACT_FD || !nfds)) {
		while (nfds > 0)
			close(fds[--nfds]);
		err = -EPERM;
	}
	if (err < 0) {
		pthread_mutex_lock(&pool_lock);
		pool_refused_until = time(NULL) + 1;
		pthread_mutex_unlock(&pool_lock);
		return err;
	}
	pthread_mutex_lock(&pool_lock);
	for (unsigned i = 0; i < nfds; i++) {
		if (pool_n < POOL_MAX)
			pool_fd[pool_n++] = fds[i];
		else
			close(fds[i]);
	}
	pthread_mutex_unlock(&pool_lock);
	return 0;
}

static void *pool_refill_main(void *unused)
{
	for (;;) {
		pthread_mutex_lock(&pool_lock);
		while (!pool_wanted)
			pthread_cond_wait(&pool_cond, &pool_lock);
		pthread_mutex_unlock(&pool_lock);
		pool_refill(); /* failed: connects take the overlay for a second (refused_until) */
		pthread_mutex_lock(&pool_lock);
		pool_wanted = false;
		pthread_mutex_unlock(&pool_lock);
	}
	return NULL;
}

static void pool_start(void)
{
	worker_detach(pool_refill_main, NULL);
}

int pool_take(void)
{
	int fd = -1;
	bool refused;

	pthread_once(&pool_once, pool_start);
	for (int attempt = 0; attempt < 2; attempt++) {
		pthread_mutex_lock(&pool_lock);
		if (pool_n > 0)
			fd = pool_fd[--pool_n];
		refused = pool_refused_until && time(NULL) < pool_refused_until;
		if (pool_n < POOL_LOW && !pool_wanted && !refused) {
			pool_wanted = true;
			pthread_cond_signal(&pool_cond);
		}
		pthread_mutex_unlock(&pool_lock);
		if (fd >= 0 || refused || pool_refill() < 0)
			break;
	}
	return fd;
}

void pool_put(int fd)
{
	pthread_mutex_lock(&pool_lock);
	if (pool_n < POOL_MAX) {
		pool_fd[pool_n++] = fd;
		fd = -1;
	}
	pthread_mutex_unlock(&pool_lock);
	if (fd >= 0)
		close(fd);
}
