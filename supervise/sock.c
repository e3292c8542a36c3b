// SPDX-License-Identifier: MIT
/* What a copy of an app's socket is: family, type, whose network namespace, blocking or not. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "supervise.h"

static struct stat sock_own_ns; /* the supervisor's (the pod's) network namespace */
static pthread_once_t sock_once = PTHREAD_ONCE_INIT;

static void sock_init(void)
{
	if (stat("/proc/self/ns/net", &sock_own_ns) < 0)
		sock_own_ns.st_ino = 0;
}

static int sock_opt(int fd, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);

	if (getsockopt(fd, SOL_SOCKET, name, &v, &len) < 0)
		return -errno;
	return v;
}

int sock_info(int fd, struct sock_info *si)
{
	struct stat st;
	int ns, fl;

	pthread_once(&sock_once, sock_init);
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISSOCK(st.st_mode))
		return -ENOTSOCK;
	si->si_ino = st.st_ino;
	si->si_domain = sock_opt(fd, SO_DOMAIN);
	si->si_type = sock_opt(fd, SO_TYPE);
	si->si_protocol = sock_opt(fd, SO_PROTOCOL);
	fl = fcntl(fd, F_GETFL);
	si->si_nonblock = fl >= 0 && (fl & O_NONBLOCK);
	si->si_pod = false;
	ns = ioctl(fd, SIOCGSKNS);
	if (ns >= 0) {
		si->si_pod = fstat(ns, &st) == 0 && st.st_dev == sock_own_ns.st_dev &&
			     st.st_ino == sock_own_ns.st_ino;
		close(ns);
	}
	return 0;
}
