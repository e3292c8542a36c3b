// SPDX-License-Identifier: MIT
/*
 * Governed host sockets, made by the router in its cgroup ahead of need (POOL_REQ) and kept
 * here for every process the supervisor serves: the router counts them against the pod, whose
 * processes these are. A connect that finds the pool empty asks for a batch on its own thread's
 * router connection; the lock is held only to take or store descriptors.
 */
#include <errno.h>
#include <pthread.h>
#include <unistd.h>

#include "msg.h"
#include "supervise.h"

#define POOL_MAX (2 * SLIM_POOL_BATCH)

static int pool_fd[POOL_MAX];
static int pool_n;
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;

/* Asks the router for a batch and keeps it. 0, or -errno (no router, not a pod). */
static int pool_refill(void)
{
	struct slim_pool_req req = {.hdr.type = SLIM_MSG_POOL_REQ, .count = SLIM_POOL_BATCH};
	struct slim_pool_rep rep;
	int fds[SLIM_MSG_MAX_FDS];
	unsigned nfds;
	int err = link_call(&req, sizeof(req), -1, SLIM_MSG_POOL_REP, &rep, sizeof(rep), fds,
			    SLIM_MSG_MAX_FDS, &nfds);

	if (err < 0)
		return err;
	if (rep.action != SLIM_ACT_FD || !nfds) {
		while (nfds > 0)
			close(fds[--nfds]);
		return -EPERM;
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

int pool_take(void)
{
	int fd = -1;

	for (int attempt = 0; attempt < 2; attempt++) {
		pthread_mutex_lock(&pool_lock);
		if (pool_n > 0)
			fd = pool_fd[--pool_n];
		pthread_mutex_unlock(&pool_lock);
		if (fd >= 0 || pool_refill() < 0)
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
