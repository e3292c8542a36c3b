// SPDX-License-Identifier: MIT
/* The table of live slim connections on this host, keyed by host 4-tuple. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/tcp.h>

#include "log.h"
#include "router.h"

static struct htab conn_by_tuple;
static uint64_t conn_sweep;

static uint64_t conn_hash(const struct tuple4 *t)
{
	uint64_t a = (uint64_t)t->src_ip << 32 | t->dst_ip;
	uint64_t b = (uint64_t)t->src_port << 16 | t->dst_port;

	return htab_hash_u64(a ^ htab_hash_u64(b));
}

static bool tuple_eq(const struct tuple4 *a, const struct tuple4 *b)
{
	return a->src_ip == b->src_ip && a->dst_ip == b->dst_ip && a->src_port == b->src_port &&
	       a->dst_port == b->dst_port;
}

int conn_table_init(void)
{
	return htab_init(&conn_by_tuple, 1024);
}

static void conn_del(struct conn *co)
{
	htab_remove(&conn_by_tuple, &co->co_node);
	free(co);
}

void conn_table_free(void)
{
	struct hnode *h;
	size_t b;

	while ((b = 0, h = htab_iter(&conn_by_tuple, &b, NULL)))
		conn_del(container_of(h, struct conn, co_node));
	htab_free(&conn_by_tuple);
}

struct conn *conn_find(const struct tuple4 *host)
{
	for (struct hnode *h = htab_first(&conn_by_tuple, conn_hash(host)); h; h = htab_next(h)) {
		struct conn *co = container_of(h, struct conn, co_node);

		if (tuple_eq(&co->co_host, host))
			return co;
	}
	return NULL;
}

int conn_add(const struct tuple4 *host, const struct tuple4 *overlay, uint64_t cookie,
	     const char *pod, bool out)
{
	struct conn *co = conn_find(host);

	/* The same 4-tuple again means the old socket is gone and the tuple was reused. */
	if (!co) {
		co = calloc(1, sizeof(*co));
		if (!co)
			return -ENOMEM;
		co->co_host = *host;
		htab_insert(&conn_by_tuple, &co->co_node, conn_hash(host));
	}
	co->co_overlay = *overlay;
	co->co_cookie = cookie;
	snprintf(co->co_pod, sizeof(co->co_pod), "%s", pod);
	co->co_out = out;
	co->co_seen = conn_sweep;
	co->co_since = time(NULL);
	return 0;
}

static void conn_mark_seen(const struct sockdiag_sock *s, void *arg)
{
	struct conn *co;

	/* A socket no process holds (inode 0) is closing on its own: the app is done with it. */
	if (!s->sd_inode)
		return;
	co = conn_find(&s->sd_tuple);
	if (co && (!co->co_cookie || co->co_cookie == s->sd_cookie))
		co->co_seen = *(uint64_t *)arg;
}

void conn_gc(void)
{
	/* Every state a socket an app still holds can be in; TIME_WAIT and LISTEN are never ours.
	 */
	uint32_t states = (1u << TCP_ESTABLISHED) | (1u << TCP_SYN_SENT) | (1u << TCP_SYN_RECV) |
			  (1u << TCP_FIN_WAIT1) | (1u << TCP_FIN_WAIT2) | (1u << TCP_CLOSE) |
			  (1u << TCP_CLOSE_WAIT) | (1u << TCP_LAST_ACK) | (1u << TCP_CLOSING);
	struct hnode *h, *next;
	uint64_t sweep;
	size_t b = 0;

	if (conn_by_tuple.ht_count == 0)
		return;
	sweep = ++conn_sweep;
	if (sockdiag_dump(states, conn_mark_seen, &sweep) < 0)
		return;
	for (h = htab_iter(&conn_by_tuple, &b, NULL); h; h = next) {
		struct conn *co = container_of(h, struct conn, co_node);

		next = htab_iter(&conn_by_tuple, &b, h);
		if (co->co_seen != sweep)
			conn_del(co);
	}
}

size_t conn_count(void)
{
	return conn_by_tuple.ht_count;
}

bool (*conn_accelerated_hook)(const struct tuple4 *host);

json_t *conn_list_json(void)
{
	json_t *a = json_array();
	struct hnode *h = NULL;
	size_t b = 0;

	while ((h = htab_iter(&conn_by_tuple, &b, h))) {
		struct conn *co = container_of(h, struct conn, co_node);
		char os[ADDR_STRLEN], od[ADDR_STRLEN], hs[ADDR_STRLEN], hd[ADDR_STRLEN];
		char cookie[24];

		snprintf(cookie, sizeof(cookie), "%llu", (unsigned long long)co->co_cookie);
		json_array_append_new(
			a,
			json_pack(
				"{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I}", "overlay_src",
				addr_str(os, sizeof(os), co->co_overlay.src_ip,
					 co->co_overlay.src_port),
				"overlay_dst",
				addr_str(od, sizeof(od), co->co_overlay.dst_ip,
					 co->co_overlay.dst_port),
				"host_src",
				addr_str(hs, sizeof(hs), co->co_host.src_ip, co->co_host.src_port),
				"host_dst",
				addr_str(hd, sizeof(hd), co->co_host.dst_ip, co->co_host.dst_port),
				"pod", co->co_pod, "dir", co->co_out ? "out" : "in", "cookie",
				cookie, "since", (json_int_t)co->co_since));
		json_object_set_new(json_array_get(a, json_array_size(a) - 1), "accelerated",
				    json_boolean(conn_accelerated_hook &&
						 conn_accelerated_hook(&co->co_host)));
	}
	return a;
}
