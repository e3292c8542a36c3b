// SPDX-License-Identifier: MIT
/*
 * The last close of a socket with bytes unread resets its connection, as TCP does.
 *
 * tcp_close sends RST instead of FIN when the receive queue still holds bytes, so the peer
 * learns that data was lost (ECONNRESET). On the same-host fast path the unread bytes sit in
 * the psock's queue, which tcp_close does not count: the peer would read a clean EOF. The
 * kernel's check cannot be reached from BPF (sock_map_close has already taken the psock when
 * tcp_close looks), so the shim makes it: at close, FIONREAD (which counts the psock's queue on
 * a mapped socket) > 0 means unread bytes, and SO_LINGER {1, 0} makes tcp_close reset.
 *
 * Only the last close may do that: a socket another number or another process still holds
 * must go on. The kernel does not say how many references a file has, so the shim resets only
 * a socket it can vouch for: made by this process (socket() or accept()), never given a second
 * number (dup*, F_DUPFD), never passed (SCM_RIGHTS), and no fork since it was made; if it is
 * inherited across exec (no FD_CLOEXEC), no child spawned since either. Anything else closes
 * with a FIN, as before (docs/design.md "Close with unread bytes").
 */
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "shim.h"

/* Bumped before every fork and spawn: a socket made before a bump may be held elsewhere. */
static atomic_uint reset_forks, reset_spawns;

static void reset_before_fork(void)
{
	atomic_fetch_add_explicit(&reset_forks, 1, memory_order_relaxed);
}

void reset_init(void)
{
	pthread_atfork(reset_before_fork, NULL, NULL);
}

void reset_track(struct fd_entry *e)
{
	e->sole = 1;
	e->forks = atomic_load_explicit(&reset_forks, memory_order_relaxed);
	e->spawns = atomic_load_explicit(&reset_spawns, memory_order_relaxed);
}

void reset_on_close(int fd, const struct fd_entry *e)
{
	static const struct linger abort_on_close = {.l_onoff = 1, .l_linger = 0};
	int unread = 0, fdfl;

	if (!e->sole || (e->kind != FD_SLIM_CONN && e->kind != FD_SLIM_ACCEPTED) ||
	    e->forks != atomic_load_explicit(&reset_forks, memory_order_relaxed))
		return;
	/* One ioctl per close of a slim connection; the rest only when bytes are unread. */
	if (ioctl(fd, FIONREAD, &unread) < 0 || unread <= 0)
		return;
	if (e->spawns != atomic_load_explicit(&reset_spawns, memory_order_relaxed)) {
		fdfl = REAL(fcntl)(fd, F_GETFD);
		if (fdfl < 0 || !(fdfl & FD_CLOEXEC))
			return;
	}
	REAL(setsockopt)(fd, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof(abort_on_close));
}

void reset_passed(int fd)
{
	struct fd_entry *e = fdtab_get(fd);

	if (e)
		e->sole = 0;
}

/*
 * A spawned child inherits every descriptor without FD_CLOEXEC. glibc's system() and popen()
 * spawn through an internal posix_spawn that the shim cannot see, so they are counted here too.
 */
static void reset_spawning(void)
{
	atomic_fetch_add_explicit(&reset_spawns, 1, memory_order_relaxed);
}

SHIM_EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
			    const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	reset_spawning();
	return REAL(posix_spawn)(pid, path, fa, attr, argv, envp);
}

SHIM_EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
			     const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	reset_spawning();
	return REAL(posix_spawnp)(pid, file, fa, attr, argv, envp);
}

SHIM_EXPORT int system(const char *command)
{
	reset_spawning();
	return REAL(system)(command);
}

SHIM_EXPORT FILE *popen(const char *command, const char *type)
{
	reset_spawning();
	return REAL(popen)(command, type);
}
