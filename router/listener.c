// SPDX-License-Identifier: MIT
/* The listener table: which host listener serves each (pod IP, port) on this node. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/tcp.h>

#include "log.h"
#include "router.h"

static struct htab listener_by_key;   /* (pod ip, port) */
static struct htab listener_by_hport; /* host port */

static uint64_t listener_key_hash(uint32_t ip, uint16_t port)
{
	return htab_hash_u64((uint64_t)ip << 16 | port);
}

static uint64_t listener_hport_hash(uint16_t port)
{
	return htab_hash_u64(0x10000ull | port);
}

int listener_table_init(void)
{
	if (htab_init(&listener_by_key, 256) || htab_init(&listener_by_hport, 256))
		return -ENOMEM;
	return 0;
}

void listener_table_free(void)
{
	struct hnode *h;
	size_t b;

	while ((b = 0, h = htab_iter(&listener_by_key, &b, NULL)))
		listener_del(container_of(h, struct listener, l_by_key));
	htab_free(&listener_by_key);
	htab_free(&listener_by_hport);
}

struct listener *listener_find(uint32_t ip, uint16_t port)
{
	for (struct hnode *h = htab_first(&listener_by_key, listener_key_hash(ip, port)); h;
	     h = htab_next(h)) {
		struct listener *l = container_of(h, struct listener, l_by_key);

		if (l->l_ip == ip && l->l_port == port)
			return l;
	}
	return NULL;
}

static struct listener *listener_find_hport(uint16_t host_port)
{
	for (struct hnode *h = htab_first(&listener_by_hport, listener_hport_hash(host_port)); h;
	     h = htab_next(h)) {
		struct listener *l = container_of(h, struct listener, l_by_hport);

		if (l->l_host_port == host_port)
			return l;
	}
	return NULL;
}

int listener_add(struct pod *p, uint16_t port, uint32_t bound_ip, uint32_t host_ip,
		 uint16_t host_port, uint64_t cookie, struct listener **out)
{
	struct listener *l = listener_find(p->p_ip, port), *stale;
	char ov[ADDR_STRLEN], ho[ADDR_STRLEN];

	if (l && l->l_host_ip == host_ip && l->l_host_port == host_port) {
		/* Another app listener joined the SO_REUSEPORT group behind this entry. */
		l->l_cookie = cookie;
		l->l_nsockets++;
		if (out)
			*out = l;
		return 0;
	}
	/*
	 * The kernel handed us host_port, so whatever entry still names it (for any pod) is
	 * stale: its listener closed and the port was reused.
	 */
	while ((stale = listener_find_hport(host_port)))
		listener_del(stale);
	if (l)
		listener_del(l);

	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->l_pod = p;
	l->l_ip = p->p_ip;
	l->l_port = port;
	l->l_host_ip = host_ip;
	l->l_host_port = host_port;
	l->l_cookie = cookie;
	l->l_nsockets = 1;
	l->l_bound_ip = bound_ip;
	htab_insert(&listener_by_key, &l->l_by_key, listener_key_hash(l->l_ip, port));
	htab_insert(&listener_by_hport, &l->l_by_hport, listener_hport_hash(host_port));
	TAILQ_INSERT_TAIL(&p->p_listeners, l, l_pod_entry);
	p->p_nlisteners++;
	log_info("listener %s (pod %s) -> %s", addr_str(ov, sizeof(ov), l->l_ip, port), p->p_name,
		 addr_str(ho, sizeof(ho), host_ip, host_port));
	if (listener_added_hook)
		listener_added_hook(l);
	if (out)
		*out = l;
	return 0;
}

void (*listener_added_hook)(const struct listener *l);
void (*listener_removed_hook)(const struct listener *l);

void listener_del(struct listener *l)
{
	char ov[ADDR_STRLEN];

	if (listener_removed_hook)
		listener_removed_hook(l);
	log_debug("listener %s (pod %s) removed", addr_str(ov, sizeof(ov), l->l_ip, l->l_port),
		  l->l_pod->p_name);
	htab_remove(&listener_by_key, &l->l_by_key);
	htab_remove(&listener_by_hport, &l->l_by_hport);
	TAILQ_REMOVE(&l->l_pod->p_listeners, l, l_pod_entry);
	l->l_pod->p_nlisteners--;
	free(l);
}

void listener_drop_pod(struct pod *p)
{
	struct listener *l;

	while ((l = TAILQ_FIRST(&p->p_listeners)))
		listener_del(l);
}

bool listener_check_alive(struct listener *l)
{
	int ret = sockdiag_listener_exists(l->l_host_ip, l->l_host_port);

	if (ret == 0) {
		listener_del(l);
		return false;
	}
	return true;
}

static void listener_mark_seen(const struct sockdiag_sock *s, void *arg)
{
	struct listener *l = listener_find_hport(s->sd_tuple.src_port);

	if (l && (l->l_host_ip == s->sd_tuple.src_ip || !s->sd_tuple.src_ip))
		l->l_marked = true;
}

void listener_gc(void)
{
	struct hnode *h = NULL, *next;
	size_t b = 0;

	if (listener_by_key.ht_count == 0)
		return;
	if (sockdiag_dump(1u << TCP_LISTEN, listener_mark_seen, NULL) < 0)
		return;
	for (h = htab_iter(&listener_by_key, &b, NULL); h; h = next) {
		struct listener *l = container_of(h, struct listener, l_by_key);

		next = htab_iter(&listener_by_key, &b, h);
		if (l->l_marked)
			l->l_marked = false;
		else
			listener_del(l);
	}
}

size_t listener_count(void)
{
	return listener_by_key.ht_count;
}

json_t *listener_list_json(void)
{
	json_t *a = json_array();
	struct hnode *h = NULL;
	size_t b = 0;

	while ((h = htab_iter(&listener_by_key, &b, h))) {
		struct listener *l = container_of(h, struct listener, l_by_key);
		char ov[ADDR_STRLEN], ho[ADDR_STRLEN];

		json_array_append_new(
			a, json_pack("{s:s, s:s, s:s, s:I}", "pod", l->l_pod->p_name, "overlay",
				     addr_str(ov, sizeof(ov), l->l_ip, l->l_port), "host",
				     addr_str(ho, sizeof(ho), l->l_host_ip, l->l_host_port),
				     "sockets", (json_int_t)l->l_nsockets));
	}
	return a;
}

void listener_foreach(void (*fn)(const struct listener *l, void *arg), void *arg)
{
	struct hnode *h = NULL;
	size_t b = 0;

	while ((h = htab_iter(&listener_by_key, &b, h)))
		fn(container_of(h, struct listener, l_by_key), arg);
}
