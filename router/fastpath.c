// SPDX-License-Identifier: MIT
/*
 * The same-host fast path, router side: the sockmap programs (bpf/sockmap.c) attached to the
 * router's cgroup (governor.c owns it), so only sockets the router created are ever eligible.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "router.h"
#include "sockmap.h"

static struct sockmap *fastpath_map;
static char fastpath_why_off[160] = "not started";

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

	return fastpath_map && sockmap_contains(fastpath_map, &local, &remote);
}

int fastpath_stats(struct sockmap_stats *st, unsigned *entries)
{
	int n;

	if (!fastpath_map)
		return -ENOTCONN;
	sockmap_stats(fastpath_map, st);
	n = sockmap_entries(fastpath_map);
	*entries = n < 0 ? 0 : (unsigned)n;
	return 0;
}

json_t *fastpath_status_json(void)
{
	struct sockmap_stats st;

	if (!fastpath_map)
		return json_pack("{s:b, s:s}", "enabled", 0, "reason", fastpath_why_off);
	sockmap_stats(fastpath_map, &st);
	return json_pack("{s:b, s:i, s:I, s:I, s:I, s:I}", "enabled", 1, "entries",
			 sockmap_entries(fastpath_map), "added",
			 (json_int_t)st.sms_added, "skipped", (json_int_t)st.sms_skipped,
			 "redirected", (json_int_t)st.sms_redirected, "passed",
			 (json_int_t)st.sms_passed);
}
