// SPDX-License-Identifier: MIT
/*
 * Running the system tools the router programs the kernel with (nft, tc): fork, exec, feed a
 * script on stdin, wait. Used only on control paths (policy apply, pod set), never per connect.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>

#include "router.h"

int spawn_feed(const char *const argv[], int netns_fd, const char *text, size_t len)
{
	int pfd[2], status;
	size_t off = 0;
	pid_t pid;

	if (access(argv[0], X_OK) < 0)
		return -errno;
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return -errno;
	}
	if (pid == 0) {
		dup2(pfd[0], 0);
		if (netns_fd >= 0 && setns(netns_fd, CLONE_NEWNET) < 0)
			_exit(126);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(pfd[0]);
	while (off < len) {
		ssize_t n = write(pfd[1], text + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	close(pfd[1]);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

const char *spawn_find(const char *name)
{
	static const char *const dirs[] = {"/usr/sbin", "/sbin", "/usr/bin", "/bin", NULL};
	static char path[64];

	for (const char *const *d = dirs; *d; d++) {
		snprintf(path, sizeof(path), "%s/%s", *d, name);
		if (access(path, X_OK) == 0)
			return path;
	}
	return NULL;
}
