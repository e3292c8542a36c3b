// SPDX-License-Identifier: MIT
/*
 * The same-host fast path, router side: the sockmap programs (bpf/sockmap.c) attached to the
 * router's cgroup (governor.c owns it), so only sockets the router created are ever eligible.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "router.h"
#include "sockmap.h"

static struct sockmap *fastpath_map;
static char fastpath_why_off[160] = "not started";
/*
 * The sockhashes of the routers before us (upgrades): their connections stay accelerated in
 * them (each holds its map's programs) until they close, so they are still asked whether a
 * connection is on the fast path; one is let go once empty.
 */
#define FASTPATH_INHERITED_MAX 16
static int fastpath_inherited[FASTPATH_INHERITED_MAX];
static unsigned fastpath_ninherited;

/* Lets go of the inherited sockhashes that no connection uses any more. */
static void fastpath_inherited_prune(void)
{
	unsigned k = 0;

	for (unsigned i = 0; i < fastpath_ninherited; i++) {
		if (sockmap_map_entries(fastpath_inherited[i]) > 0)
			fastpath_inherited[k++] = fastpath_inherited[i];
		else
			close(fastpath_inherited[i]);
	}
	fastpath_ninherited = k;
}

static unsigned fastpath_inherited_entries(void)
{
	unsigned n = 0;

	for (unsigned i = 0; i < fastpath_ninherited; i++) {
		int e = sockmap_map_entries(fastpath_inherited[i]);

		n += e > 0 ? (unsigned)e : 0;
	}
	return n;
}

json_t *fastpath_export(struct upgrade_fds *f)
{
	json_t *maps = json_array();

	fastpath_inherited_prune();
	if (fastpath_map)
		json_array_append_new(maps, json_integer(upgrade_fd_put(f, sockmap_fd(fastpath_map))));
	for (unsigned i = 0; i < fastpath_ninherited; i++)
		json_array_append_new(maps, json_integer(upgrade_fd_put(f, fastpath_inherited[i])));
	return maps;
}

void fastpath_adopt(json_t *maps, struct upgrade_fds *f)
{
	json_t *v;
	size_t i;

	json_array_foreach(maps, i, v) {
		int fd = upgrade_fd_take(f, v);

		if (fd < 0)
			continue;
		if (fastpath_ninherited == FASTPATH_INHERITED_MAX)
			fastpath_inherited_prune();
		if (fastpath_ninherited == FASTPATH_INHERITED_MAX) {
			close(fd);
			continue;
		}
		fastpath_inherited[fastpath_ninherited++] = fd;
	}
	fastpath_inherited_prune();
}

int fastpath_start(const char *cgroup_path)
{
	int ret = sockmap_open(cgroup_path, router.r_fabric_ip, 0, &fastpath_map);

	if (ret < 0) {
		snprintf(fastpath_why_off, sizeof(fastpath_why_off), "BPF programs: %s",
			 strerror(-ret));
		log_warnx("same-host fast path off (%s); connections work without it",
			  fastpath_why_off);
		return ret;
	}
	log_info("same-host fast path on: sockmap programs attached to %s", cgroup_path);
	return 0;
}

void fastpath_disable(const char *why)
{
	snprintf(fastpath_why_off, sizeof(fastpath_why_off), "%s", why);
}

void fastpath_stop(void)
{
	/* Live accelerated connections keep their programs until they close (see sockmap.h). */
	sockmap_close(fastpath_map);
	fastpath_map = NULL;
	while (fastpath_ninherited)
		close(fastpath_inherited[--fastpath_ninherited]);
}

bool fastpath_enabled(void)
{
	return fastpath_map != NULL;
}

bool fastpath_contains(const struct tuple4 *host)
{
	struct sockaddr_in local = {.sin_family = AF_INET,
				    .sin_addr.s_addr = host->src_ip,
				    .sin_port = host->src_port};
	struct sockaddr_in remote = {.sin_family = AF_INET,
				     .sin_addr.s_addr = host->dst_ip,
				     .sin_port = host->dst_port};

	if (fastpath_map && sockmap_contains(fastpath_map, &local, &remote))
		return true;
	for (unsigned i = 0; i < fastpath_ninherited; i++)
		if (sockmap_map_contains(fastpath_inherited[i], &local, &remote))
			return true;
	return false;
}

int fastpath_stats(struct sockmap_stats *st, unsigned *entries)
{
	int n;

	if (!fastpath_map)
		return -ENOTCONN;
	sockmap_stats(fastpath_map, st);
	n = sockmap_entries(fastpath_map);
	*entries = (n < 0 ? 0 : (unsigned)n) + fastpath_inherited_entries();
	return 0;
}

json_t *fastpath_status_json(void)
{
	struct sockmap_stats st;

	if (!fastpath_map)
		return json_pack("{s:b, s:s}", "enabled", 0, "reason", fastpath_why_off);
	sockmap_stats(fastpath_map, &st);
	return json_pack("{s:b, s:i, s:I, s:I, s:I, s:I, s:I, s:I}", "enabled", 1, "entries",
			 sockmap_entries(fastpath_map) + (int)fastpath_inherited_entries(), "added",
			 (json_int_t)st.sms_added, "skipped", (json_int_t)st.sms_skipped,
			 "redirected", (json_int_t)st.sms_redirected, "passed",
			 (json_int_t)st.sms_passed, "repeats_cut",
			 (json_int_t)(st.sms_rx_trimmed - st.sms_rx_trim_failed), "repeats_uncut",
			 (json_int_t)st.sms_rx_trim_failed);
}
