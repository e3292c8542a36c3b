// SPDX-License-Identifier: MIT
/*
 * The live slim connections of this host, as the kernel records them. Every socket the router
 * made carries its owner and overlay addresses in the governance map (bpf/govern_abi.h), filled
 * by the router and the kernel, never by a shim; one sock_diag dump asking for that map lists
 * them all, with nothing of our own to keep in step. A restarted router sees exactly what the
 * one before it saw.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <linux/types.h>

#include "govern_abi.h"
#include "log.h"
#include "router.h"

struct conn_walk {
	conn_fn cw_fn;
	void *cw_arg;
	size_t cw_count;
};

static void conn_from_sock(const struct sockdiag_sock *s, void *arg)
{
	const struct slim_sk *st = s->sd_storage;
	struct conn_walk *w = arg;
	const struct pod *p;
	struct conn co;

	/* Ours, handed to a pod, connected (or accepted), and still held by a process. */
	if (!st || !s->sd_inode || !(st->ss_flags & SLIM_SK_HANDED) ||
	    (st->ss_flags & (SLIM_SK_LISTENER | SLIM_SK_CONFINED)) ||
	    (!st->ss_peer_ip && !st->ss_peer_port) || s->sd_state == TCP_CLOSE)
		return;
	memset(&co, 0, sizeof(co));
	co.co_host = s->sd_tuple;
	co.co_cookie = s->sd_cookie;
	co.co_pod_ip = st->ss_pod_ip;
	co.co_out = !(st->ss_flags & SLIM_SK_ACCEPTED);
	co.co_loopback = st->ss_flags & SLIM_SK_LOOPBACK;
	co.co_state = s->sd_state;
	co.co_svc_ip = st->ss_svc_ip;
	co.co_svc_port = st->ss_svc_port;
	if (co.co_out) {
		co.co_overlay.src_ip = st->ss_local_ip ? st->ss_local_ip : st->ss_pod_ip;
		co.co_overlay.src_port = st->ss_local_port ? st->ss_local_port : s->sd_tuple.src_port;
		co.co_overlay.dst_ip = st->ss_peer_ip;
		co.co_overlay.dst_port = st->ss_peer_port;
	} else {
		co.co_overlay.src_ip = st->ss_peer_ip;
		co.co_overlay.src_port = st->ss_peer_port;
		co.co_overlay.dst_ip = st->ss_local_ip;
		co.co_overlay.dst_port = st->ss_local_port;
	}
	p = pod_find_ip(st->ss_pod_ip);
	snprintf(co.co_pod, sizeof(co.co_pod), "%s", p ? p->p_name : "?");
	w->cw_count++;
	if (w->cw_fn)
		w->cw_fn(&co, w->cw_arg);
}

int conn_walk(uint32_t states, conn_fn fn, void *arg)
{
	struct conn_walk w = {.cw_fn = fn, .cw_arg = arg};
	int ret;

	/* Every state a socket an app still holds can be in; TIME_WAIT and LISTEN are never ours. */
	if (!states)
		states = (1u << TCP_ESTABLISHED) | (1u << TCP_SYN_SENT) | (1u << TCP_SYN_RECV) |
			 (1u << TCP_FIN_WAIT1) | (1u << TCP_FIN_WAIT2) | (1u << TCP_CLOSE) |
			 (1u << TCP_CLOSE_WAIT) | (1u << TCP_LAST_ACK) | (1u << TCP_CLOSING);
	ret = governor_dump(states, conn_from_sock, &w);
	return ret < 0 ? ret : (int)w.cw_count;
}

size_t conn_count(void)
{
	int n = conn_walk(1u << TCP_ESTABLISHED, NULL, NULL);

	return n < 0 ? 0 : (size_t)n;
}

bool (*conn_accelerated_hook)(const struct tuple4 *host);

static void conn_json(const struct conn *co, void *arg)
{
	char os[ADDR_STRLEN], od[ADDR_STRLEN], hs[ADDR_STRLEN], hd[ADDR_STRLEN], cookie[24];

	snprintf(cookie, sizeof(cookie), "%llu", (unsigned long long)co->co_cookie);
	json_array_append_new(
		arg,
		json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:b}", "overlay_src",
			  addr_str(os, sizeof(os), co->co_overlay.src_ip, co->co_overlay.src_port),
			  "overlay_dst",
			  addr_str(od, sizeof(od), co->co_overlay.dst_ip, co->co_overlay.dst_port),
			  "host_src", addr_str(hs, sizeof(hs), co->co_host.src_ip, co->co_host.src_port),
			  "host_dst", addr_str(hd, sizeof(hd), co->co_host.dst_ip, co->co_host.dst_port),
			  "pod", co->co_pod, "dir", co->co_out ? "out" : "in", "cookie", cookie,
			  "accelerated", conn_accelerated_hook && conn_accelerated_hook(&co->co_host)));
}

json_t *conn_list_json(void)
{
	json_t *a = json_array();

	conn_walk(0, conn_json, a);
	return a;
}
