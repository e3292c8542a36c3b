// SPDX-License-Identifier: MIT
/*
 * Unit tests of the sockmap loader's contract (bpf/sockmap.c, bpf/cgroup.c): bad arguments and
 * a missing cgroup fail with -errno and leave nothing behind; open/close works and leaves no
 * BPF program or link attached to the cgroup; the cgroup helpers move this process in and out.
 * Tests that need root and cgroup v2 are skipped (SKIP, never PASS) without them.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "test.h"
#include "cgroup.h"
#include "sockmap.h"

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	while (d && readdir(d))
		n++;
	if (d)
		closedir(d);
	return n;
}

/* The cgroup v2 mount point; skips the test without root or cgroup v2. */
static void need_cgroup_v2(char *mnt, size_t len)
{
	if (geteuid() != 0)
		SKIP("needs root");
	if (cgroup_v2_mount(mnt, len))
		SKIP("needs a cgroup v2 mount");
}

/* How many programs of type are attached to the cgroup at dir (libbpf; -errno on failure). */
static int cgroup_prog_count(const char *dir, enum bpf_attach_type type)
{
	__u32 count = 0, flags = 0;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), ret;

	if (fd < 0)
		return -errno;
	ret = bpf_prog_query(fd, type, 0, &flags, NULL, &count);
	close(fd);
	return ret < 0 ? ret : (int)count;
}

TEST(sockmap_open_rejects_bad_arguments)
{
	struct sockmap *sm = (struct sockmap *)1;
	uint32_t ip = inet_addr("198.18.0.1");

	ASSERT_EQ(sockmap_open(NULL, ip, 0, &sm), -EINVAL, "no cgroup path");
	ASSERT_TRUE(sm == NULL, "out cleared on failure");
	ASSERT_EQ(sockmap_open("/sys/fs/cgroup", 0, 0, &sm), -EINVAL, "host_ip 0");
	ASSERT_EQ(sockmap_open("/sys/fs/cgroup", ip, 0x100, &sm), -EINVAL, "unknown flag");
}

TEST(sockmap_open_missing_cgroup_leaves_nothing)
{
	struct sockmap *sm = NULL;
	int before = count_fds();

	ASSERT_EQ(sockmap_open("/nonexistent/slim-cgroup", inet_addr("198.18.0.1"), 0, &sm),
		  -ENOENT, "missing cgroup directory");
	ASSERT_TRUE(sm == NULL, "no sockmap");
	ASSERT_EQ(count_fds(), before, "file descriptors after a failed open");
}

TEST(sockmap_open_close_roundtrip)
{
	char mnt[PATH_MAX], dir[PATH_MAX + 64];
	struct sockmap *sm = NULL;
	int before, err;

	need_cgroup_v2(mnt, sizeof(mnt));
	snprintf(dir, sizeof(dir), "%s/slim-unit-sockmap-%d", mnt, (int)getpid());
	if (!ASSERT_OK(cgroup_enter(dir), "cgroup_enter"))
		return;
	before = count_fds();
	err = sockmap_open(dir, inet_addr("127.0.0.1"), 0, &sm);
	if (ASSERT_OK(err, "sockmap_open")) {
		ASSERT_EQ(sockmap_entries(sm), 0, "empty sockhash");
		ASSERT_TRUE(count_fds() > before, "open holds descriptors");
		/* The query can see an attachment: the check after close means something. */
		ASSERT_EQ(cgroup_prog_count(dir, BPF_CGROUP_SOCK_OPS), 1, "sock_ops attached");
		sockmap_close(sm);
	}
	ASSERT_EQ(count_fds(), before, "descriptors after close");
	/* The cgroup must be left with no sockops program attached (asked of the kernel). */
	ASSERT_EQ(cgroup_prog_count(dir, BPF_CGROUP_SOCK_OPS), 0, "sock_ops programs left");
	ASSERT_OK(cgroup_leave(dir), "cgroup_leave");
	ASSERT_TRUE(access(dir, F_OK) != 0, "cgroup directory removed");
}

TEST(cgroup_enter_moves_this_process)
{
	char mnt[PATH_MAX], dir[PATH_MAX + 64], line[PATH_MAX + 64], want[PATH_MAX + 64];
	bool found = false;
	FILE *f;

	need_cgroup_v2(mnt, sizeof(mnt));
	snprintf(dir, sizeof(dir), "%s/slim-unit-cgroup-%d", mnt, (int)getpid());
	if (!ASSERT_OK(cgroup_enter(dir), "cgroup_enter"))
		return;
	snprintf(want, sizeof(want), "0::/slim-unit-cgroup-%d\n", (int)getpid());
	f = fopen("/proc/self/cgroup", "r");
	while (f && fgets(line, sizeof(line), f))
		found |= !strcmp(line, want);
	if (f)
		fclose(f);
	ASSERT_TRUE(found, "/proc/self/cgroup names the new directory");
	ASSERT_OK(cgroup_leave(dir), "cgroup_leave");
	ASSERT_TRUE(access(dir, F_OK) != 0, "cgroup directory removed");
}
