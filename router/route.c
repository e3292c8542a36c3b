// SPDX-License-Identifier: MIT
/*
 * The connect decision, in one place: where may a pod's connect to an overlay (or in-pod
 * loopback) destination go? route_decide() is pure -- it reads the tables and returns a
 * decision; the rest of this file is the mechanics that consume it: the kernel's route and
 * verdict maps (governor.c), the shim's ROUTE_REP, and asking the owning node (resolve.c) when
 * the answer is on another host. Local listeners enter the route map as they appear, so a
 * connect to a pod of this host never asks at all.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>

#include <linux/types.h>

#include "govern_abi.h"
#include "log.h"
#include "router.h"

#define LOOPBACK_ANY htonl(0x7f000000) /* route key of a listener on every loopback address */

static bool route_is_loopback(uint32_t ip)
{
	return (ip & htonl(0xff000000)) == htonl(0x7f000000);
}

static void route_host(struct route_decision *d, const struct listener *l)
{
	d->rd_action = ROUTE_HOST;
	d->rd_host_ip = l->l_host_ip;
	d->rd_host_port = l->l_host_port;
}

void route_decide(const struct pod *p, uint32_t dst_ip, uint16_t dst_port,
		  const struct resolve_result *remote, struct route_decision *d)
{
	const struct cluster_node *node;
	const struct listener *l;

	memset(d, 0, sizeof(*d));
	d->rd_action = ROUTE_FALLBACK;

	/*
	 * 127.0.0.x inside the pod (a sidecar): served by the same pod's listener if the kernel
	 * would let it (bound to any address, or to that loopback address). Policy is between
	 * pods: it does not apply here.
	 */
	if (route_is_loopback(dst_ip)) {
		d->rd_scope = p->p_ip;
		l = listener_find(p->p_ip, dst_port);
		if (l && (!l->l_bound_ip || l->l_bound_ip == dst_ip))
			route_host(d, l);
		return;
	}
	if (!cidr_contains(&router.r_cluster->cl_overlay, dst_ip))
		return; /* not ours to route: the pod's own network carries it */
	/* Policy first: a denied connect is refused whether or not anything listens. */
	if (!policy_allows_conn(p->p_ip, dst_ip, dst_port)) {
		d->rd_action = ROUTE_DENY;
		return;
	}
	node = cluster_owner(router.r_cluster, dst_ip);
	if (!node)
		return;
	if (node == router.r_self) {
		l = listener_find(dst_ip, dst_port);
		/* A loopback-only listener is private to its pod. */
		if (l && !route_is_loopback(l->l_bound_ip))
			route_host(d, l);
		return;
	}
	d->rd_ttl_ms = RESOLVE_TTL_NEGATIVE_MS;
	if (!remote) {
		d->rd_action = ROUTE_ASK;
		d->rd_node = node;
	} else if (remote->status == SLIM_RESOLVE_FOUND) {
		d->rd_action = ROUTE_HOST;
		d->rd_host_ip = remote->host_ip;
		d->rd_host_port = remote->host_port;
		d->rd_ttl_ms = RESOLVE_TTL_FOUND_MS;
	} else if (remote->status == SLIM_RESOLVE_DENIED) {
		d->rd_action = ROUTE_DENY;
	}
}

static void route_reply(struct client *c, uint32_t id, uint32_t action, int error)
{
	struct slim_route_rep rep = {
		.hdr = {.type = SLIM_MSG_ROUTE_REP, .len = sizeof(rep), .id = id},
		.action = action,
		.error = error,
	};

	if (action == SLIM_ACT_FALLBACK)
		router.r_nfallback++;
	client_reply(c, &rep, sizeof(rep), -1, false);
}

/* Puts the decision in the kernel's maps and answers the shim. */
static void route_apply(struct client *c, uint32_t pod_ip, const struct slim_route_req *req,
			const struct route_decision *d)
{
	bool overlay = !route_is_loopback(req->dst_ip) &&
		       cidr_contains(&router.r_cluster->cl_overlay, req->dst_ip);

	/* While a policy is in force the kernel wants this pod's verdict as well. */
	if (overlay && policy_current())
		governor_verdict_put(pod_ip, req->dst_ip, req->dst_port, d->rd_action != ROUTE_DENY);
	switch (d->rd_action) {
	case ROUTE_HOST:
		governor_route_put(req->dst_ip, req->dst_port, d->rd_scope, d->rd_host_ip,
				   d->rd_host_port, 0, d->rd_ttl_ms);
		router.r_nconnect++;
		route_reply(c, req->hdr.id, SLIM_ACT_ROUTE, 0);
		break;
	case ROUTE_DENY:
		route_reply(c, req->hdr.id, SLIM_ACT_ERROR, ECONNREFUSED);
		break;
	default:
		/* Remembered briefly, so a server without slim costs one question a second. */
		if (overlay)
			governor_route_put(req->dst_ip, req->dst_port, d->rd_scope, 0, 0,
					   SLIM_ROUTE_FALLBACK, RESOLVE_TTL_NEGATIVE_MS);
		route_reply(c, req->hdr.id, SLIM_ACT_FALLBACK, 0);
		break;
	}
}

void route_request(struct client *c, struct pod *p, const struct slim_route_req *req)
{
	struct resolve_result cached;
	struct route_decision d;
	struct listener *l;
	int ret;

	if (!governor_enabled()) {
		route_reply(c, req->hdr.id, SLIM_ACT_FALLBACK, 0);
		return;
	}
	/* A Service VIP: the kernel picked a backend, which is what gets routed. */
	if (service_range_contains(req->dst_ip)) {
		service_route_request(c, p, req, c->cs_req_fd);
		return;
	}
	/*
	 * A retry follows a refused connect: what we know may be stale (the listener closed, or
	 * was handed to another process and closed there). Ask the kernel and the owner afresh.
	 */
	if (req->flags & SLIM_ROUTEF_RETRY) {
		uint32_t owner = route_is_loopback(req->dst_ip) ? p->p_ip : req->dst_ip;

		route_forget(req->dst_ip, req->dst_port, p->p_ip);
		if ((l = listener_find(owner, req->dst_port)))
			listener_check_alive(l);
	}
	route_decide(p, req->dst_ip, req->dst_port,
		     resolve_cache_get(req->dst_ip, req->dst_port, &cached) ? &cached : NULL, &d);
	if (d.rd_action != ROUTE_ASK) {
		route_apply(c, p->p_ip, req, &d);
		return;
	}
	/* A node that just let us wait in vain: the overlay carries it, without waiting again. */
	if (resolve_node_stalled(d.rd_node->cn_name)) {
		route_resolved(c, p->p_ip, req, NULL);
		return;
	}
	ret = resolve_lookup(c, p, req, d.rd_node);
	if (ret < 0)
		route_reply(c, req->hdr.id, SLIM_ACT_FALLBACK, 0);
}

void route_resolved(struct client *c, uint32_t pod_ip, const struct slim_route_req *req,
		    const struct resolve_result *res)
{
	struct resolve_result none = {.status = SLIM_RESOLVE_NO_LISTENER};
	struct pod *p = pod_find_ip(pod_ip);
	struct route_decision d;

	if (!p) {
		route_reply(c, req->hdr.id, SLIM_ACT_FALLBACK, 0);
		return;
	}
	/* No answer in time: the overlay carries it (and we ask again in a second). */
	route_decide(p, req->dst_ip, req->dst_port, res ? res : &none, &d);
	route_apply(c, pod_ip, req, &d);
}

void route_forget(uint32_t dst_ip, uint16_t dst_port, uint32_t pod_ip)
{
	if (route_is_loopback(dst_ip)) {
		governor_route_del(dst_ip, dst_port, pod_ip);
		return;
	}
	resolve_cache_drop(dst_ip, dst_port);
	governor_route_del(dst_ip, dst_port, 0);
}

/* The route keys of a listener: its overlay address for every pod, loopback for its own. */
static void route_listener_keys(const struct listener *l, bool add)
{
	struct {
		uint32_t ip, scope;
	} keys[2];
	unsigned n = 0;

	if (route_is_loopback(l->l_bound_ip)) {
		keys[n++] = (typeof(keys[0])){l->l_bound_ip, l->l_ip};
	} else {
		keys[n++] = (typeof(keys[0])){l->l_ip, 0};
		if (!l->l_bound_ip)
			keys[n++] = (typeof(keys[0])){LOOPBACK_ANY, l->l_ip};
	}
	for (unsigned i = 0; i < n; i++) {
		if (add)
			governor_route_put(keys[i].ip, l->l_port, keys[i].scope, l->l_host_ip,
					   l->l_host_port, 0, 0);
		else
			governor_route_del(keys[i].ip, l->l_port, keys[i].scope);
	}
}

void route_listener_added(const struct listener *l)
{
	route_listener_keys(l, true);
	/* Other nodes may remember "no listener there" for a second: not any more. */
	peer_broadcast_invalidate(l->l_ip, l->l_port);
}

void route_listener_removed(const struct listener *l)
{
	route_listener_keys(l, false);
	peer_broadcast_invalidate(l->l_ip, l->l_port);
}
