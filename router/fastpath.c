// SPDX-License-Identifier: MIT
/*
 * The same-host fast path, router side: the router's own cgroup v2 directory (so only sockets
 * the router creates are ever eligible), the sockmap programs attached to it (bpf/sockmap.c),
 * and the same-host connect sequence that keeps every byte in order (docs/design.md).
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "cgroup.h"
#include "log.h"
#include "router.h"
#include "sockmap.h"

/* How long the router waits for a same-host handshake before giving up on acceleration. */
#define FASTPATH_HANDSHAKE_MS 2

static struct sockmap *fastpath_map;
static char fastpath_cgroup[PATH_MAX];
static char fastpath_parent[PATH_MAX]; /* "slim/": removed with the last router using it */
static char fastpath_root[PATH_MAX];
static char fastpath_why_off[160] = "not started";

/*
 * The cgroup v2 hierarchy. Under `ip netns exec` /sys is a fresh sysfs without it; then mount it
 * ourselves, in a mount namespace of our own so nothing leaks to the host.
 */
static int fastpath_cgroup_root(char *buf, size_t len)
{
	static const char mnt[] = "/sys/fs/cgroup";

	if (cgroup_v2_mount(buf, len) == 0)
		return 0;
	if (unshare(CLONE_NEWNS) < 0)
		return -errno;
	/* Slave: netns bind mounts made later on the host still reach us (pod add). */
	if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
		return -errno;
	if (mount("cgroup2", mnt, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		return -errno;
	if (strlen(mnt) >= len)
		return -ENAMETOOLONG;
	strcpy(buf, mnt);
	return 0;
}

int fastpath_start(const char *cgroup_name)
{
	char root[PATH_MAX], parent[PATH_MAX];
	const char *step;
	int ret;

	step = "cgroup v2";
	ret = fastpath_cgroup_root(root, sizeof(root));
	if (ret < 0)
		goto off;
	step = "cgroup directory";
	if (snprintf(fastpath_cgroup, sizeof(fastpath_cgroup), "%s/%s", root, cgroup_name) >=
	    (int)sizeof(fastpath_cgroup)) {
		ret = -ENAMETOOLONG;
		goto off;
	}
	/* The name may have one level of parent ("slim/NAME"): create it, shared by routers. */
	snprintf(parent, sizeof(parent), "%s", fastpath_cgroup);
	*strrchr(parent, '/') = '\0';
	if (strcmp(parent, root)) {
		if (mkdir(parent, 0755) < 0 && errno != EEXIST) {
			ret = -errno;
			goto off;
		}
		snprintf(fastpath_parent, sizeof(fastpath_parent), "%s", parent);
		snprintf(fastpath_root, sizeof(fastpath_root), "%s", root);
	}
	ret = cgroup_enter(fastpath_cgroup);
	if (ret < 0)
		goto off;
	step = "BPF programs";
	ret = sockmap_open(fastpath_cgroup, router.r_fabric_ip, 0, &fastpath_map);
	if (ret < 0) {
		cgroup_leave(fastpath_cgroup);
		goto off;
	}
	log_info("same-host fast path on: sockmap programs attached to %s", fastpath_cgroup);
	return 0;
off:
	snprintf(fastpath_why_off, sizeof(fastpath_why_off), "%s: %s", step, strerror(-ret));
	fastpath_cgroup[0] = '\0';
	log_warnx("same-host fast path off (%s); connections work without it", fastpath_why_off);
	return ret;
}

void fastpath_disable(const char *why)
{
	snprintf(fastpath_why_off, sizeof(fastpath_why_off), "%s", why);
}

void fastpath_stop(void)
{
	if (!fastpath_map)
		return;
	/* Live accelerated connections keep their programs until they close (see sockmap.h). */
	sockmap_close(fastpath_map);
	fastpath_map = NULL;
	cgroup_leave(fastpath_cgroup);
	/* Fails (EBUSY) while another router still has its directory there, as it should. */
	if (fastpath_parent[0] && cgroup_enter(fastpath_root) == 0)
		rmdir(fastpath_parent);
}

bool fastpath_enabled(void)
{
	return fastpath_map != NULL;
}

/*
 * fd is a non-blocking host socket connecting to a listener of this host (no Fast Open: the
 * preamble must travel the same way as the bytes after it). Waits briefly for the handshake,
 * which on one host normally finished inside connect(). Returns 1 when the connection is
 * established and both ends are in the sockhash (send the preamble now: it is redirected, in
 * order), 0 when it is established but stays plain TCP, -EINPROGRESS when it is not established
 * yet (the caller starts over with the ordinary Fast Open path), or another -errno.
 */
int fastpath_connect_local(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	int ret;

	if (poll(&p, 1, FASTPATH_HANDSHAKE_MS) < 0)
		return -errno;
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		return -errno;
	if (ti.tcpi_state == TCP_SYN_SENT)
		return -EINPROGRESS;
	if (ti.tcpi_state != TCP_ESTABLISHED)
		return -ECONNREFUSED;
	ret = sockmap_client_established(fastpath_map, fd);
	return ret < 0 ? 0 : ret;
}

bool fastpath_contains(const struct tuple4 *host)
{
	struct sockaddr_in local = {.sin_family = AF_INET,
				    .sin_addr.s_addr = host->src_ip,
				    .sin_port = host->src_port};
	struct sockaddr_in remote = {.sin_family = AF_INET,
				     .sin_addr.s_addr = host->dst_ip,
				     .sin_port = host->dst_port};

	return fastpath_map && sockmap_contains(fastpath_map, &local, &remote);
}

json_t *fastpath_status_json(void)
{
	struct sockmap_stats st;

	if (!fastpath_map)
		return json_pack("{s:b, s:s}", "enabled", 0, "reason", fastpath_why_off);
	sockmap_stats(fastpath_map, &st);
	return json_pack("{s:b, s:s, s:i, s:I, s:I, s:I, s:I}", "enabled", 1, "cgroup",
			 fastpath_cgroup, "entries", sockmap_entries(fastpath_map), "added",
			 (json_int_t)st.sms_added, "skipped", (json_int_t)st.sms_skipped,
			 "redirected", (json_int_t)st.sms_redirected, "passed",
			 (json_int_t)st.sms_passed);
}
