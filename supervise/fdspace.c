// SPDX-License-Identifier: MIT
/*
 * The supervisor's descriptor numbers. The kernel keys an epoll registration by (file, number),
 * the number being the registrant's: to put a new socket into the app's epoll instance so that
 * the app's own later EPOLL_CTL_DEL or _MOD on its number finds it, the supervisor must hold the
 * socket under that same number while it registers it. So the low numbers are filled with
 * placeholders (the supervisor's own descriptors are always made above them, by any thread),
 * and borrowing a number is dup2 over its placeholder, the registration, and dup2 back.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>
#include <sys/resource.h>

#include "supervise.h"

#define FDSPACE_MAX 1024

static int fdspace_null = -1;
static int fdspace_top; /* the placeholders' bound: numbers below it are placeholders or ours */
/* Numbers below FDSPACE_MAX that hold a placeholder (not a descriptor we inherited). */
static bool fdspace_placeholder[FDSPACE_MAX];
static pthread_mutex_t fdspace_lock = PTHREAD_MUTEX_INITIALIZER;

void fdspace_init(void)
{
	struct rlimit rl;
	int want = FDSPACE_MAX, fd;

	/* Room for the placeholders and for the sockets the supervisor holds. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)want * 4)
		want = (int)(rl.rlim_cur / 4);
	fdspace_null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (fdspace_null < 0)
		return;
	fdspace_top = want;
	fd = fcntl(fdspace_null, F_DUPFD_CLOEXEC, want);
	if (fd >= 0) {
		close(fdspace_null);
		fdspace_null = fd;
	}
	for (int n = 3; n < want; n++) {
		if (fcntl(n, F_GETFD) >= 0)
			continue; /* ours already (the seccomp listener, stdio) */
		if (dup3(fdspace_null, n, O_CLOEXEC) < 0)
			return;
		fdspace_placeholder[n] = true;
	}
}

int fdspace_borrow(int appfd, int src, int (*fn)(int fd, void *arg), void *arg)
{
	int rc;

	if (appfd < 0 || appfd >= FDSPACE_MAX || !fdspace_placeholder[appfd])
		return -EBADF;
	pthread_mutex_lock(&fdspace_lock);
	if (dup3(src, appfd, O_CLOEXEC) < 0) {
		rc = -errno;
	} else {
		rc = fn(appfd, arg);
		dup3(fdspace_null, appfd, O_CLOEXEC);
	}
	pthread_mutex_unlock(&fdspace_lock);
	return rc;
}

void fdspace_give_back(int fd)
{
	if (fd < 3 || fd >= fdspace_top || fdspace_null < 0) {
		close(fd);
		return;
	}
	pthread_mutex_lock(&fdspace_lock);
	if (dup3(fdspace_null, fd, O_CLOEXEC) >= 0)
		fdspace_placeholder[fd] = true;
	else
		close(fd);
	pthread_mutex_unlock(&fdspace_lock);
}

int fdspace_retire(int fd)
{
	return dup3(fdspace_null, fd, O_CLOEXEC) < 0 ? -errno : 0;
}
