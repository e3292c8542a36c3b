// SPDX-License-Identifier: MIT
/*
 * The app's epoll instances. The kernel keys an epoll registration by (file, descriptor
 * number): when the supervisor puts a governed socket under the app's number, the app's
 * registration of the old socket goes with the old file. So the supervisor makes the app's epoll
 * instances itself (epoll_create is trapped: one call per process for Go) and remembers their
 * numbers; before a swap it reads the app's registrations of the old socket from
 * /proc/TID/fdinfo/EPFD (the target's inode tells the socket from others at that number) and
 * after it adds the new socket with the same events and data, under the app's number.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/syscall.h>

#include "supervise.h"

#define EPOLL_KNOWN_MAX 64

/* Numbers the app's epoll instances were given, in any process the supervisor serves. A number
 * may since hold something else: every use checks what is there. */
static int epoll_known[EPOLL_KNOWN_MAX];
static int epoll_nknown;
static pthread_mutex_t epoll_lock = PTHREAD_MUTEX_INITIALIZER;

/* Under epoll_lock. */
static void epoll_remember(int fd)
{
	for (int i = 0; i < epoll_nknown; i++) {
		if (epoll_known[i] == fd)
			return;
	}
	if (epoll_nknown < EPOLL_KNOWN_MAX) {
		epoll_known[epoll_nknown++] = fd;
		return;
	}
	/* The oldest goes: its registrations are then not restored. */
	memmove(epoll_known, epoll_known + 1, (EPOLL_KNOWN_MAX - 1) * sizeof(int));
	epoll_known[EPOLL_KNOWN_MAX - 1] = fd;
}

void epoll_trap_create(struct sup_call *c)
{
	bool create1 = c->sn.data.nr == __NR_epoll_create1;
	int flags = create1 ? (int)c->sn.data.args[0] : 0;
	int ep, appfd;

	if ((create1 && (flags & ~EPOLL_CLOEXEC)) || (!create1 && (int)c->sn.data.args[0] <= 0)) {
		call_reply(c, 0, -EINVAL);
		return;
	}
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0) {
		call_reply(c, 0, -errno);
		return;
	}
	/*
	 * SEND answers the call as the descriptor is installed, so the app may use the instance at
	 * once — register its listener and accept, which another worker serves: the lock makes that
	 * worker's epoll_find wait until the number is known.
	 */
	pthread_mutex_lock(&epoll_lock);
	appfd = call_addfd(c, ep, -1, flags & EPOLL_CLOEXEC, true);
	if (appfd >= 0)
		epoll_remember(appfd);
	pthread_mutex_unlock(&epoll_lock);
	close(ep);
	if (appfd >= 0)
		sup_log("pid %u: epoll instance at fd %d", c->sn.pid, appfd);
}

/* Parses the registrations in one epoll fdinfo for (appfd, ino). */
static int epoll_parse(FILE *f, int epfd, int appfd, unsigned long ino, struct epoll_reg *regs,
		       int n, int max)
{
	char line[256];

	while (n < max && fgets(line, sizeof(line), f)) {
		int tfd;
		unsigned events;
		unsigned long long data;
		unsigned long tino;
		const char *p;

		if (sscanf(line, "tfd: %d events: %x data: %llx", &tfd, &events, &data) != 3 ||
		    tfd != appfd)
			continue;
		p = strstr(line, "ino:");
		if (!p || sscanf(p, "ino:%lx", &tino) != 1 || tino != ino)
			continue;
		regs[n++] = (struct epoll_reg){.er_epfd = epfd, .er_events = events, .er_data = data};
	}
	return n;
}

int epoll_find(struct sup_call *c, int appfd, unsigned long ino, struct epoll_reg *regs, int max)
{
	int known[EPOLL_KNOWN_MAX], nknown, n = 0;

	pthread_mutex_lock(&epoll_lock);
	nknown = epoll_nknown;
	memcpy(known, epoll_known, nknown * sizeof(int));
	pthread_mutex_unlock(&epoll_lock);
	for (int i = 0; i < nknown && n < max; i++) {
		char path[64];
		FILE *f;

		snprintf(path, sizeof(path), "/proc/%u/fdinfo/%d", c->sn.pid, known[i]);
		f = fopen(path, "re");
		if (!f)
			continue;
		n = epoll_parse(f, known[i], appfd, ino, regs, n, max);
		fclose(f);
	}
	return n;
}

struct epoll_add_arg {
	int ea_ep;
	struct epoll_event ea_ev;
};

static int epoll_add_one(int fd, void *arg)
{
	struct epoll_add_arg *a = arg;

	return epoll_ctl(a->ea_ep, EPOLL_CTL_ADD, fd, &a->ea_ev) < 0 ? -errno : 0;
}

int epoll_add(struct sup_call *c, int fd, int appfd, const struct epoll_reg *regs, int n,
	      bool borrow)
{
	int added = 0;

	for (int i = 0; i < n; i++) {
		struct epoll_add_arg a = {.ea_ev = {.events = regs[i].er_events,
						    .data.u64 = regs[i].er_data}};
		int rc;

		a.ea_ep = call_getfd(c, regs[i].er_epfd);
		if (a.ea_ep < 0)
			continue;
		rc = borrow ? fdspace_borrow(appfd, fd, epoll_add_one, &a) : -EBADF;
		if (rc == -EBADF) /* not a number we can borrow: under our own (DEL by the app fails) */
			rc = epoll_add_one(fd, &a);
		if (rc == 0)
			added++;
		else
			sup_log("fd %d: epoll %d: add failed (%s)", appfd, regs[i].er_epfd,
				strerror(-rc));
		close(a.ea_ep);
	}
	return added;
}
