/* SPDX-License-Identifier: MIT */
/*
 * The cgroup v2 directory whose sockets the fast path may accelerate: finding the v2 mount,
 * moving this process into a directory of its own, and out again.
 */
#ifndef SLIM_CGROUP_H
#define SLIM_CGROUP_H

#include <stddef.h>

/* Writes the cgroup v2 mount point (e.g. /sys/fs/cgroup/unified) to buf; 0 or -errno. */
int cgroup_v2_mount(char *buf, size_t len);

/*
 * Creates the directory path (an existing one is reused) and moves the whole calling process
 * (every thread) into it. Sockets the process creates from then on belong to it.
 */
int cgroup_enter(const char *path);

/*
 * Moves the calling process to the parent directory of path and removes path. -EBUSY when other
 * processes are still in it (the directory stays).
 */
int cgroup_leave(const char *path);

#endif
