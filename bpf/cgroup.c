// SPDX-License-Identifier: MIT
/*
 * The fast path's cgroup v2 directory: locates the v2 hierarchy and moves this process in and
 * out, so only sockets the router itself creates are eligible for the sockops program.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "cgroup.h"

int cgroup_v2_mount(char *buf, size_t len)
{
	char line[4096], mnt[PATH_MAX], fstype[64];
	int err = -ENOENT;
	FILE *f;

	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -errno;
	/* "id parent maj:min root mountpoint options [optional...] - fstype source superopts" */
	while (fgets(line, sizeof(line), f)) {
		const char *sep = strstr(line, " - ");

		if (!sep || sscanf(sep, " - %63s", fstype) != 1 || strcmp(fstype, "cgroup2"))
			continue;
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1)
			continue;
		if (strlen(mnt) >= len) {
			err = -ENAMETOOLONG;
			break;
		}
		strcpy(buf, mnt);
		err = 0;
		break;
	}
	fclose(f);
	return err;
}

/* Writing 0 to cgroup.procs moves the writer's whole thread group. */
static int cgroup_move_self(const char *dir)
{
	char path[PATH_MAX];
	int fd, err = 0;

	if (snprintf(path, sizeof(path), "%s/cgroup.procs", dir) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, "0", 1) != 1)
		err = -errno;
	close(fd);
	return err;
}

int cgroup_enter(const char *path)
{
	if (mkdir(path, 0755) && errno != EEXIST)
		return -errno;
	return cgroup_move_self(path);
}

int cgroup_leave(const char *path)
{
	char parent[PATH_MAX], *slash;
	int err;

	if (strlen(path) >= sizeof(parent))
		return -ENAMETOOLONG;
	strcpy(parent, path);
	slash = strrchr(parent, '/');
	if (!slash || slash == parent)
		return -EINVAL;
	*slash = '\0';
	err = cgroup_move_self(parent);
	if (err)
		return err;
	if (rmdir(path))
		return -errno;
	return 0;
}
