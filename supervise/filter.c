// SPDX-License-Identifier: MIT
/*
 * The seccomp filter a supervised app runs under. Only the calls that make or name a connection
 * go to the supervisor: connect, listen, accept and accept4, and epoll_create/epoll_create1 (so
 * the supervisor knows the app's epoll instances, rare calls). Everything else — close, fcntl,
 * read, write, epoll_ctl, getpeername — runs untouched: a notified call costs 18-20 us here.
 * Another architecture, or an x32 call, is allowed: the app then simply is not supervised for it.
 */
#include <errno.h>
#include <stddef.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <linux/audit.h>
#include <linux/filter.h>

#include "supervise.h"

#ifndef __X32_SYSCALL_BIT
#define __X32_SYSCALL_BIT 0x40000000
#endif

#define NOTIFY(nr)                                                                                \
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1),                                          \
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF)

int filter_install(void)
{
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, __X32_SYSCALL_BIT, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		NOTIFY(__NR_connect),
		NOTIFY(__NR_listen),
		NOTIFY(__NR_accept),
		NOTIFY(__NR_accept4),
		NOTIFY(__NR_epoll_create),
		NOTIFY(__NR_epoll_create1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof(code) / sizeof(code[0]), .filter = code};
	long fd;

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	/*
	 * Once a worker has received a call, the app's thread waits for the answer killably: a
	 * signal with a handler waits until the answer (the worker watches for one during long
	 * waits and answers ERESTARTSYS, docs/design.md), so a call is never withdrawn half done.
	 * Before Linux 5.19 the flag is refused: the wait is then interruptible.
	 */
	fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
		     SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, &prog);
	if (fd < 0 && errno == EINVAL)
		fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER,
			     &prog);
	return fd < 0 ? -errno : (int)fd;
}
