// SPDX-License-Identifier: MIT
/*
 * Remote resolution of (pod IP, port) to a host listener: the cache of answers from other
 * routers, and the requests in flight with the client requests waiting on each.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "msg.h"
#include "router.h"

struct resolve_entry {
	struct hnode re_node;
	uint32_t re_ip;
	uint16_t re_port;
	struct resolve_result re_res;
	uint64_t re_expires;
};

/* A client CONNECT_REQ waiting for an answer. */
struct pending {
	TAILQ_ENTRY(pending) pd_entry;	      /* in its inflight */
	TAILQ_ENTRY(pending) pd_client_entry; /* in its client */
	struct client *pd_client;	      /* NULL once the client went away */
	uint32_t pd_pod_ip;
	struct slim_route_req pd_req;
};

/* One RESOLVE_REQ sent to a peer; every client request for the same key shares it. */
struct inflight {
	struct hnode if_by_key, if_by_id;
	TAILQ_ENTRY(inflight) if_entry; /* oldest first, so the oldest expires first */
	uint32_t if_id;
	uint32_t if_src; /* the client pod: the owner's ingress answer is for it alone */
	uint32_t if_ip;
	uint16_t if_port;
	char if_node[NAME_MAX_LEN];
	uint64_t if_deadline;
	TAILQ_HEAD(, pending) if_waiters;
};

/*
 * A node that let a resolution time out (stopped, overloaded, cut off) is not asked again for a
 * while: connects to its pods fall back at once instead of each waiting a full timeout.
 */
#define RESOLVE_STALL_MS 5000

struct stalled {
	char st_node[NAME_MAX_LEN];
	uint64_t st_until;
	TAILQ_ENTRY(stalled) st_entry;
};

static TAILQ_HEAD(, stalled) stalled_list = TAILQ_HEAD_INITIALIZER(stalled_list);

static struct stalled *resolve_stalled_find(const char *node)
{
	struct stalled *st;

	TAILQ_FOREACH(st, &stalled_list, st_entry)
		if (!strcmp(st->st_node, node))
			return st;
	return NULL;
}

static void resolve_stalled_set(const char *node, bool stalled)
{
	struct stalled *st = resolve_stalled_find(node);

	if (!stalled) {
		if (st) {
			TAILQ_REMOVE(&stalled_list, st, st_entry);
			free(st);
		}
		return;
	}
	if (!st) {
		st = calloc(1, sizeof(*st));
		if (!st)
			return;
		snprintf(st->st_node, sizeof(st->st_node), "%s", node);
		TAILQ_INSERT_TAIL(&stalled_list, st, st_entry);
	}
	st->st_until = event_now_ms() + RESOLVE_STALL_MS;
}

bool resolve_node_stalled(const char *node)
{
	struct stalled *st = resolve_stalled_find(node);

	return st && st->st_until > event_now_ms();
}

static struct htab resolve_cache;
static struct htab inflight_by_key, inflight_by_id;
static TAILQ_HEAD(, inflight) inflight_list = TAILQ_HEAD_INITIALIZER(inflight_list);
static uint32_t inflight_next_id;
static long long inflight_timer = -1;

static uint64_t resolve_key_hash(uint32_t ip, uint16_t port)
{
	return htab_hash_u64((uint64_t)ip << 16 | port);
}

int resolve_init(void)
{
	if (htab_init(&resolve_cache, 256) || htab_init(&inflight_by_key, 64) ||
	    htab_init(&inflight_by_id, 64))
		return -ENOMEM;
	return 0;
}

static struct resolve_entry *resolve_cache_find(uint32_t ip, uint16_t port)
{
	for (struct hnode *h = htab_first(&resolve_cache, resolve_key_hash(ip, port)); h;
	     h = htab_next(h)) {
		struct resolve_entry *e = container_of(h, struct resolve_entry, re_node);

		if (e->re_ip == ip && e->re_port == port)
			return e;
	}
	return NULL;
}

void resolve_cache_drop(uint32_t ip, uint16_t port)
{
	struct resolve_entry *e = resolve_cache_find(ip, port);

	if (e) {
		htab_remove(&resolve_cache, &e->re_node);
		free(e);
	}
}

void resolve_cache_flush(void)
{
	struct hnode *h;
	size_t b;

	while ((b = 0, h = htab_iter(&resolve_cache, &b, NULL))) {
		struct resolve_entry *e = container_of(h, struct resolve_entry, re_node);

		/* The kernel's copy of the answer goes with it. */
		governor_route_del(e->re_ip, e->re_port, 0);
		htab_remove(&resolve_cache, h);
		free(e);
	}
}

void resolve_cache_expire(void)
{
	uint64_t now = event_now_ms();
	struct hnode *h, *next;
	size_t b = 0;

	for (h = htab_iter(&resolve_cache, &b, NULL); h; h = next) {
		struct resolve_entry *e = container_of(h, struct resolve_entry, re_node);

		next = htab_iter(&resolve_cache, &b, h);
		if (e->re_expires <= now) {
			htab_remove(&resolve_cache, h);
			free(e);
		}
	}
	if (resolve_cache.ht_count >= RESOLVE_CACHE_MAX)
		resolve_cache_flush();
}

static void resolve_cache_put(uint32_t ip, uint16_t port, const struct resolve_result *res)
{
	uint64_t now = event_now_ms();
	struct resolve_entry *e = resolve_cache_find(ip, port);

	if (!e) {
		if (resolve_cache.ht_count >= RESOLVE_CACHE_MAX)
			resolve_cache_expire();
		e = calloc(1, sizeof(*e));
		if (!e)
			return; /* a cache is optional */
		e->re_ip = ip;
		e->re_port = port;
		htab_insert(&resolve_cache, &e->re_node, resolve_key_hash(ip, port));
	}
	e->re_res = *res;
	e->re_expires = now + (res->status == SLIM_RESOLVE_FOUND ? RESOLVE_TTL_FOUND_MS
								 : RESOLVE_TTL_NEGATIVE_MS);
}

size_t resolve_cache_count(void)
{
	return resolve_cache.ht_count;
}

size_t resolve_inflight_count(void)
{
	return inflight_by_id.ht_count;
}

static struct inflight *resolve_inflight_find_key(uint32_t src, uint32_t ip, uint16_t port)
{
	for (struct hnode *h = htab_first(&inflight_by_key, resolve_key_hash(ip, port)); h;
	     h = htab_next(h)) {
		struct inflight *f = container_of(h, struct inflight, if_by_key);

		if (f->if_ip == ip && f->if_port == port && f->if_src == src)
			return f;
	}
	return NULL;
}

static struct inflight *resolve_inflight_find_id(uint32_t id)
{
	for (struct hnode *h = htab_first(&inflight_by_id, htab_hash_u64(id)); h;
	     h = htab_next(h)) {
		struct inflight *f = container_of(h, struct inflight, if_by_id);

		if (f->if_id == id)
			return f;
	}
	return NULL;
}

/* Answers every waiter of f (res NULL: fall back) and frees f. */
static void resolve_inflight_finish(struct inflight *f, const struct resolve_result *res)
{
	struct pending *pd;

	htab_remove(&inflight_by_key, &f->if_by_key);
	htab_remove(&inflight_by_id, &f->if_by_id);
	TAILQ_REMOVE(&inflight_list, f, if_entry);
	while ((pd = TAILQ_FIRST(&f->if_waiters))) {
		struct client *c = pd->pd_client;

		TAILQ_REMOVE(&f->if_waiters, pd, pd_entry);
		if (c) {
			TAILQ_REMOVE(&c->cs_pending, pd, pd_client_entry);
			client_pending_done(c);
			/* Last use of c here: the reply may close it. */
			route_resolved(c, pd->pd_pod_ip, &pd->pd_req, res);
		}
		free(pd);
	}
	free(f);
}

static long resolve_expire(struct event_loop *loop, void *arg)
{
	uint64_t now = event_now_ms();
	struct inflight *f;

	while ((f = TAILQ_FIRST(&inflight_list)) && f->if_deadline <= now) {
		char a[ADDR_STRLEN];

		log_warnx("%s: %s on node %s: no answer in %d ms, falling back (for %d ms)",
			  __func__, addr_str(a, sizeof(a), f->if_ip, f->if_port), f->if_node,
			  RESOLVE_TIMEOUT_MS, RESOLVE_STALL_MS);
		resolve_stalled_set(f->if_node, true);
		resolve_inflight_finish(f, NULL);
	}
	f = TAILQ_FIRST(&inflight_list);
	if (!f) {
		inflight_timer = -1;
		return EVENT_TIMER_STOP;
	}
	return (long)(f->if_deadline - now);
}

bool resolve_cache_get(uint32_t ip, uint16_t port, struct resolve_result *res)
{
	struct resolve_entry *e = resolve_cache_find(ip, port);

	if (!e)
		return false;
	if (e->re_expires <= event_now_ms()) {
		htab_remove(&resolve_cache, &e->re_node);
		free(e);
		return false;
	}
	*res = e->re_res;
	return true;
}

int resolve_lookup(struct client *c, const struct pod *p, const struct slim_route_req *req,
		   const struct cluster_node *node)
{
	uint32_t ip = req->dst_ip;
	uint16_t port = req->dst_port;
	struct inflight *f;
	struct pending *pd;
	int ret;

	pd = malloc(sizeof(*pd));
	if (!pd)
		return -ENOMEM;
	pd->pd_client = c;
	pd->pd_pod_ip = p->p_ip;
	pd->pd_req = *req;

	f = resolve_inflight_find_key(p->p_ip, ip, port);
	if (!f) {
		f = calloc(1, sizeof(*f));
		if (!f) {
			free(pd);
			return -ENOMEM;
		}
		f->if_id = ++inflight_next_id;
		f->if_ip = ip;
		f->if_port = port;
		snprintf(f->if_node, sizeof(f->if_node), "%s", node->cn_name);
		f->if_deadline = event_now_ms() + RESOLVE_TIMEOUT_MS;
		TAILQ_INIT(&f->if_waiters);
		f->if_src = p->p_ip;
		ret = peer_send_resolve(node, f->if_id, p->p_ip, ip, port);
		if (ret < 0) {
			free(f);
			free(pd);
			return ret;
		}
		htab_insert(&inflight_by_key, &f->if_by_key, resolve_key_hash(ip, port));
		htab_insert(&inflight_by_id, &f->if_by_id, htab_hash_u64(f->if_id));
		TAILQ_INSERT_TAIL(&inflight_list, f, if_entry);
		if (inflight_timer < 0)
			inflight_timer = event_timer_add(router.r_loop, RESOLVE_TIMEOUT_MS,
							 resolve_expire, NULL);
	}
	TAILQ_INSERT_TAIL(&f->if_waiters, pd, pd_entry);
	TAILQ_INSERT_TAIL(&c->cs_pending, pd, pd_client_entry);
	c->cs_npending++;
	return 0;
}

void resolve_on_reply(const char *node_name, uint32_t id, const struct resolve_result *res)
{
	struct inflight *f = resolve_inflight_find_id(id);

	/* A late answer to a request that already timed out: only the cache can use it. */
	if (!f || strcmp(f->if_node, node_name)) {
		log_debug("%s: answer from %s to unknown request %u", __func__, node_name, id);
		return;
	}
	resolve_stalled_set(node_name, false); /* it answers again */
	/* A refusal by policy is for that client pod only: never cache it for the others. */
	if (res->status != SLIM_RESOLVE_DENIED)
		resolve_cache_put(f->if_ip, f->if_port, res);
	resolve_inflight_finish(f, res);
}

/*
 * Our connection to a node's router closed: it stopped, crashed or restarted, and a router that
 * comes back (and the servers that come back with it) may listen on other host ports. What it
 * told us -- the cache and the kernel's routes, positive and negative -- is stale: a connect on
 * a stale route would be refused (a non-blocking one reaches the app before anyone can
 * re-resolve), and a remembered "no listener" would send the next connection over the overlay.
 * Forgetting costs one RESOLVE per destination. A router that is only upgraded keeps its
 * connections (they move to the new process), so nothing is dropped then.
 */
static void resolve_cache_drop_node(const struct cluster_node *node)
{
	struct hnode *h, *next;
	size_t b = 0;

	for (h = htab_iter(&resolve_cache, &b, NULL); h; h = next) {
		struct resolve_entry *e = container_of(h, struct resolve_entry, re_node);

		next = htab_iter(&resolve_cache, &b, h);
		if (cluster_owner(router.r_cluster, e->re_ip) == node) {
			htab_remove(&resolve_cache, h);
			free(e);
		}
	}
}

void resolve_on_peer_down(const char *node_name)
{
	const struct cluster_node *node = cluster_node_by_name(router.r_cluster, node_name);
	struct inflight *f, *next;

	for (f = TAILQ_FIRST(&inflight_list); f; f = next) {
		next = TAILQ_NEXT(f, if_entry);
		if (!strcmp(f->if_node, node_name))
			resolve_inflight_finish(f, NULL);
	}
	if (node) {
		resolve_cache_drop_node(node);
		governor_routes_drop_node(node);
	}
}

void resolve_client_gone(struct client *c)
{
	struct pending *pd;

	/* The inflight keeps the pending (and frees it on its answer); it just has no one to tell.
	 */
	while ((pd = TAILQ_FIRST(&c->cs_pending))) {
		TAILQ_REMOVE(&c->cs_pending, pd, pd_client_entry);
		pd->pd_client = NULL;
	}
	c->cs_npending = 0;
}

void resolve_free(void)
{
	struct inflight *f;
	struct stalled *st;

	while ((f = TAILQ_FIRST(&inflight_list)))
		resolve_inflight_finish(f, NULL);
	while ((st = TAILQ_FIRST(&stalled_list))) {
		TAILQ_REMOVE(&stalled_list, st, st_entry);
		free(st);
	}
	resolve_cache_flush();
	htab_free(&resolve_cache);
	htab_free(&inflight_by_key);
	htab_free(&inflight_by_id);
}
