// SPDX-License-Identifier: MIT
/*
 * Accepting connections when descriptors run out: one spare descriptor for the whole router,
 * given up to accept and shed the pending connection at EMFILE, and a pause of the listener, so
 * neither the loop spins on a listener that stays readable nor the log floods.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "log.h"
#include "router.h"

#define ACCEPT_PAUSE_MS 100 /* how long a listener rests after running out of descriptors */
#define ACCEPT_SHED_MAX 256 /* pending connections closed at once (at most a backlog's worth) */

static int accept_spare_fd = -1;

int accept_init(void)
{
	accept_spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return accept_spare_fd < 0 ? -errno : 0;
}

void accept_free(void)
{
	if (accept_spare_fd >= 0)
		close(accept_spare_fd);
	accept_spare_fd = -1;
}

static long accept_resume(struct event_loop *loop, void *arg)
{
	event_set_mask(loop, (int)(intptr_t)arg, EVENT_READ);
	return EVENT_TIMER_STOP;
}

int accept_conn(int lfd, struct sockaddr *sa, socklen_t *salen, int flags)
{
	static struct log_ratelimit rl;
	int fd = accept4(lfd, sa, salen, flags), err;

	if (fd >= 0)
		return fd;
	err = errno;
	if (err != EMFILE && err != ENFILE)
		return -err;
	/*
	 * Pending connections keep the listener readable: take them with the spare descriptor and
	 * close them (their peers see the connection end and fall back or retry, rather than wait
	 * in connect() on a full backlog), take the spare back, and let the listener rest:
	 * descriptors come back as connections close.
	 */
	log_ratelimited(&rl, LOG_LVL_WARN,
			"%s: out of descriptors (%s): shedding pending connections, pausing the "
			"listener for %d ms",
			__func__, strerror(err), ACCEPT_PAUSE_MS);
	if (accept_spare_fd >= 0) {
		close(accept_spare_fd);
		for (int i = 0; i < ACCEPT_SHED_MAX; i++) {
			fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			if (fd < 0)
				break;
			close(fd);
		}
		accept_spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
	if (event_set_mask(router.r_loop, lfd, 0) == 0)
		event_timer_add(router.r_loop, ACCEPT_PAUSE_MS, accept_resume,
				(void *)(intptr_t)lfd);
	return -err;
}
