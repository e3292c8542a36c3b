/* SPDX-License-Identifier: MIT */
/*
 * Governed host sockets, user side: loads slim_govern.bpf.c, attaches its programs to the
 * router's cgroup v2 directory, and gives the router its maps (socket state, routes, verdicts,
 * nodes, settings), its event ring and its counters. See govern_abi.h for the shared layouts.
 *
 * Link with build/lib/libslimbpf.a -lbpf -lelf -lz. Needs root (CAP_BPF, CAP_NET_ADMIN).
 */
#ifndef SLIM_GOVERN_H
#define SLIM_GOVERN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <linux/types.h>

#include "govern_abi.h"

struct govern;

struct govern_config {
	const char *gc_cgroup;	 /* cgroup v2 directory of the router (and of its sockets) */
	uint32_t gc_host_ip;	 /* this host's fabric address */
	uint32_t gc_overlay_net; /* the overlay range */
	uint32_t gc_overlay_mask;
	pid_t gc_router_tgid; /* the router itself sets any option on its sockets */
	/*
	 * A bpffs directory to pin the maps and links in (NULL: nothing pinned). Pinned, they
	 * outlive the router: the sockets it handed out stay governed while it is down, and the
	 * router that starts next takes the same maps (socket states, routes) and replaces the
	 * programs of the same links.
	 */
	const char *gc_pin_dir;
	/*
	 * Load without attaching: a router taking over a running one (upgrade) loads its programs
	 * while the old one still serves, and attaches them (govern_attach: with pinned links, one
	 * atomic program replacement each) only once the old one has stopped.
	 */
	bool gc_defer_attach;
};

typedef void (*govern_event_fn)(const struct slim_event *ev, void *arg);

/* open, configure, load, attach every program. 0 and *out, or -errno with nothing left. */
int govern_open(const struct govern_config *cfg, struct govern **out);
/* Attaches the programs of a govern_open with gc_defer_attach. 0 or -errno (none attached). */
int govern_attach(struct govern *g);
/* Puts our programs back into our links (pinned links another router's programs replaced:
 * an upgrade that failed after the new router attached). 0 or -errno. */
int govern_relink(struct govern *g);
/* Closes our handles. Unpinned, everything is detached (sockets already handed out keep their
 * state until they close); pinned, the programs stay attached and the maps stay. */
void govern_close(struct govern *g);
/* Whether govern_open took maps pinned by an earlier router (so state survived). */
bool govern_reused(struct govern *g);

/* The socket state map, for sock_diag dumps that report it (its fd and id). */
int govern_sk_map_fd(struct govern *g);
uint32_t govern_sk_map_id(struct govern *g);

/* Gives socket fd its state: from now on the rules apply to it wherever it goes. */
int govern_sock_set(struct govern *g, int fd, const struct slim_sk *st);
int govern_sock_get(struct govern *g, int fd, struct slim_sk *st);

int govern_route_put(struct govern *g, const struct slim_route_key *k, const struct slim_route *r);
int govern_route_get(struct govern *g, const struct slim_route_key *k, struct slim_route *r);
int govern_route_del(struct govern *g, const struct slim_route_key *k);
void govern_routes_flush(struct govern *g);
/* Deletes the routes drop() picks; returns how many, or -errno. */
int govern_routes_drop(struct govern *g,
		       bool (*drop)(const struct slim_route_key *k, const struct slim_route *r,
				    void *arg),
		       void *arg);
int govern_verdict_put(struct govern *g, const struct slim_verdict_key *k, uint32_t verdict);
void govern_verdicts_flush(struct govern *g);
int govern_node_put(struct govern *g, uint32_t fabric_ip, uint32_t pod_net, uint32_t pod_mask);
void govern_nodes_flush(struct govern *g);
int govern_set_policy_active(struct govern *g, bool on);
/* Services: (VIP, port) entries, and the Maglev array mapped into our memory (NULL: failed). */
int govern_service_put(struct govern *g, const struct slim_svc_key *k, const struct slim_svc *v);
int govern_service_del(struct govern *g, const struct slim_svc_key *k);
void govern_services_flush(struct govern *g);
struct slim_maglev_slot *govern_maglev(struct govern *g);
/* Entries in the route map (walks it). */
/* Names the pool batch the calling thread is about to make (NULL: the batch is over), and reads
 * the entry back (pp_made: how many sockets got their state). */
int govern_pool_pending_set(struct govern *g, const struct slim_pool_pending *pp);
int govern_pool_pending_get(struct govern *g, struct slim_pool_pending *pp);
int govern_route_count(struct govern *g);

/* The event ring: its fd for epoll, and a drain that calls fn for each event. */
int govern_events_fd(struct govern *g);
int govern_events_drain(struct govern *g, govern_event_fn fn, void *arg);

void govern_stats(struct govern *g, struct slim_govern_stats *st);
/* The setup latency histogram of one path (counts per bucket, not cumulative). */
void govern_setup_hist(struct govern *g, enum slim_setup_path path, struct slim_setup_hist *h);

#endif
