// SPDX-License-Identifier: MIT
/*
 * One notified syscall: reading and writing the caller's memory, taking copies of its
 * descriptors, installing ours in its table, and the answer. Every read of the caller's memory
 * is followed by an ID_VALID check: the thread that asked may be gone and its pid reused.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include "supervise.h"

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL /* Linux 6.9: a pidfd for a thread, not only a group leader */
#endif

bool call_valid(struct sup_call *c)
{
	return ioctl(c->notify_fd, SECCOMP_IOCTL_NOTIF_ID_VALID, &c->sn.id) == 0;
}

int call_reply(struct sup_call *c, long long val, int err)
{
	struct seccomp_notif_resp r = {.id = c->sn.id, .val = err ? 0 : val, .error = err};

	return ioctl(c->notify_fd, SECCOMP_IOCTL_NOTIF_SEND, &r) < 0 ? -errno : 0;
}

int call_continue(struct sup_call *c)
{
	struct seccomp_notif_resp r = {.id = c->sn.id, .flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE};

	return ioctl(c->notify_fd, SECCOMP_IOCTL_NOTIF_SEND, &r) < 0 ? -errno : 0;
}

int call_read(struct sup_call *c, uint64_t addr, void *buf, size_t len)
{
	struct iovec local = {.iov_base = buf, .iov_len = len};
	struct iovec remote = {.iov_base = (void *)(uintptr_t)addr, .iov_len = len};
	ssize_t n = process_vm_readv((pid_t)c->sn.pid, &local, 1, &remote, 1, 0);

	if (n < 0)
		return -errno;
	if ((size_t)n != len)
		return -EFAULT;
	return call_valid(c) ? 0 : -ENOENT;
}

int call_write(struct sup_call *c, uint64_t addr, const void *buf, size_t len)
{
	struct iovec local = {.iov_base = (void *)buf, .iov_len = len};
	struct iovec remote = {.iov_base = (void *)(uintptr_t)addr, .iov_len = len};
	ssize_t n = process_vm_writev((pid_t)c->sn.pid, &local, 1, &remote, 1, 0);

	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EFAULT;
}

static int call_pidfd(struct sup_call *c)
{
	long fd;

	if (c->pidfd >= 0)
		return c->pidfd;
	fd = syscall(SYS_pidfd_open, (pid_t)c->sn.pid, PIDFD_THREAD);
	if (fd < 0)
		return -errno;
	c->pidfd = (int)fd;
	/* The pid named the thread that asked when the notification was made: still it? */
	return call_valid(c) ? c->pidfd : -ENOENT;
}

int call_getfd(struct sup_call *c, int fd)
{
	int pidfd = call_pidfd(c);
	long copy;

	if (pidfd < 0)
		return pidfd;
	copy = syscall(SYS_pidfd_getfd, pidfd, fd, 0);
	return copy < 0 ? -errno : (int)copy;
}

int call_addfd(struct sup_call *c, int srcfd, int newfd, bool cloexec, bool send)
{
	struct seccomp_notif_addfd a = {
		.id = c->sn.id,
		.srcfd = (uint32_t)srcfd,
		.newfd = newfd >= 0 ? (uint32_t)newfd : 0,
		.newfd_flags = cloexec ? O_CLOEXEC : 0,
	};
	int rc;

	if (newfd >= 0)
		a.flags |= SECCOMP_ADDFD_FLAG_SETFD;
	if (send)
		a.flags |= SECCOMP_ADDFD_FLAG_SEND;
	rc = ioctl(c->notify_fd, SECCOMP_IOCTL_NOTIF_ADDFD, &a);
	return rc < 0 ? -errno : rc;
}

int call_fd_flags(struct sup_call *c, int fd)
{
	char path[64], buf[256], *p;
	ssize_t n;
	int f;

	snprintf(path, sizeof(path), "/proc/%u/fdinfo/%d", c->sn.pid, fd);
	f = open(path, O_RDONLY | O_CLOEXEC);
	if (f < 0)
		return -errno;
	n = read(f, buf, sizeof(buf) - 1);
	close(f);
	if (n <= 0)
		return -EIO;
	buf[n] = 0;
	p = strstr(buf, "flags:");
	if (!p)
		return -EIO;
	return (int)strtol(p + 6, NULL, 8);
}

/* One "Name:\thex" mask line of /proc/TID/status. */
static unsigned long long call_status_mask(const char *status, const char *name)
{
	const char *p = strstr(status, name);

	return p ? strtoull(p + strlen(name), NULL, 16) : 0;
}

bool call_signal_pending(struct sup_call *c)
{
	char path[64], buf[2048];
	unsigned long long pending, blocked;
	ssize_t n;
	int f;

	snprintf(path, sizeof(path), "/proc/%u/status", c->sn.pid);
	f = open(path, O_RDONLY | O_CLOEXEC);
	if (f < 0)
		return false;
	n = read(f, buf, sizeof(buf) - 1);
	close(f);
	if (n <= 0)
		return false;
	buf[n] = 0;
	pending = call_status_mask(buf, "\nSigPnd:") | call_status_mask(buf, "\nShdPnd:");
	blocked = call_status_mask(buf, "\nSigBlk:");
	return (pending & ~blocked) != 0;
}
