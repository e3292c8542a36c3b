// SPDX-License-Identifier: MIT
/*
 * Enforcing a policy change on what already exists: cached resolutions, live slim connections
 * (the kernel's record of them, revoked with SOCK_DESTROY, no kernel module), and the nftables
 * filter of the overlay path.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <netinet/tcp.h>

#include "log.h"
#include "router.h"

struct enforce_walk {
	struct enforce_report *ew_report;
	struct conn *ew_doomed;
	size_t ew_n, ew_cap;
	bool ew_nomem;
};

static uint64_t enforce_now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* One of our connections, as the kernel reports it now: judge it. */
static void enforce_judge(const struct conn *co, void *arg)
{
	struct enforce_walk *w = arg;

	if (co->co_loopback)
		return; /* policy is between pods, not inside one */
	w->ew_report->er_checked++;
	if (policy_allows_conn(co->co_overlay.src_ip, co->co_overlay.dst_ip,
			       co->co_overlay.dst_port))
		return;
	if (w->ew_n == w->ew_cap) {
		size_t cap = w->ew_cap ? w->ew_cap * 2 : 64;
		struct conn *v = realloc(w->ew_doomed, cap * sizeof(*v));

		if (!v) {
			w->ew_nomem = true;
			return;
		}
		w->ew_doomed = v;
		w->ew_cap = cap;
	}
	w->ew_doomed[w->ew_n++] = *co;
}

static uint64_t enforce_revoked_total; /* since the router started, for the metrics */

uint64_t enforce_revoked_count(void)
{
	return enforce_revoked_total;
}

static void enforce_revoke(struct enforce_report *r)
{
	uint32_t states = (1u << TCP_ESTABLISHED) | (1u << TCP_SYN_SENT) | (1u << TCP_SYN_RECV) |
			  (1u << TCP_FIN_WAIT1) | (1u << TCP_FIN_WAIT2) | (1u << TCP_CLOSE_WAIT);
	struct enforce_walk w = {.ew_report = r};
	int ret;

	ret = conn_walk(states, enforce_judge, &w);
	if (ret < 0 || w.ew_nomem)
		log_warnx("%s: %s: some connections may not have been judged", __func__,
			  ret < 0 ? strerror(-ret) : "out of memory");
	for (size_t i = 0; i < w.ew_n; i++) {
		const struct conn *co = &w.ew_doomed[i];
		/* Exactly the socket the kernel reported (4-tuple and cookie), never another. */
		struct sockdiag_sock s = {.sd_tuple = co->co_host, .sd_cookie = co->co_cookie};
		char a[ADDR_STRLEN], b[ADDR_STRLEN];

		ret = sockdiag_destroy_sock(&s);
		if (ret == -ENOENT || ret == -ESTALE)
			continue; /* closed meanwhile */
		if (ret < 0) {
			r->er_failed++;
			log_warnx("%s: SOCK_DESTROY: %s", __func__, strerror(-ret));
			continue;
		}
		r->er_revoked++;
		enforce_revoked_total++;
		log_info("revoked %s -> %s (pod %s, %s)",
			 addr_str(a, sizeof(a), co->co_overlay.src_ip, co->co_overlay.src_port),
			 addr_str(b, sizeof(b), co->co_overlay.dst_ip, co->co_overlay.dst_port),
			 co->co_pod, co->co_out ? "out" : "in");
	}
	free(w.ew_doomed);
}

void enforce_policy(struct enforce_report *r, spawn_done_fn done, void *arg)
{
	uint64_t start = enforce_now_usec();

	memset(r, 0, sizeof(*r));
	/* A cached answer or verdict may predate the policy: every connect decides afresh. */
	resolve_cache_flush();
	governor_policy_changed();
	enforce_revoke(r);
	r->er_usec = enforce_now_usec() - start;
	nft_apply(done, arg);
}

void enforce_accepted(const struct tuple4 *overlay)
{
	struct enforce_report r = {0};

	/* Set up before a policy change and accepted after it: the sweep at apply time could
	 * not see it yet, so judge it now (the whole sweep: rare, only on a denial). */
	if (!policy_current() ||
	    policy_allows_conn(overlay->src_ip, overlay->dst_ip, overlay->dst_port))
		return;
	enforce_revoke(&r);
}
