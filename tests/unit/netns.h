/* SPDX-License-Identifier: MIT */
/* A network namespace file for unit tests that register pods (included by the tests only). */
#ifndef SLIM_TEST_NETNS_H
#define SLIM_TEST_NETNS_H

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/wait.h>

/*
 * A child unshares a network namespace and we keep its /proc/<pid>/ns/net open, addressed as
 * /proc/self/fd/N in path (so it outlives the child). Returns the descriptor, or -1.
 */
static inline int make_netns(char *path, size_t len)
{
	int p[2], fd;
	pid_t pid;
	char c;

	if (pipe(p) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		if (unshare(CLONE_NEWNET) < 0 || write(p[1], "x", 1) != 1)
			_exit(1);
		pause(); /* until killed, once the parent holds the namespace */
		_exit(0);
	}
	if (read(p[0], &c, 1) != 1)
		return -1;
	close(p[0]);
	close(p[1]);
	snprintf(path, len, "/proc/%d/ns/net", (int)pid);
	fd = open(path, O_RDONLY);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	snprintf(path, len, "/proc/self/fd/%d", fd);
	return fd;
}

#endif
