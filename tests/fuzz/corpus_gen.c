// SPDX-License-Identifier: MIT
/*
 * Writes the seed corpora tests/fuzz/corpus/<target>/: a few valid messages of every kind each
 * fuzz target decodes, built from proto.h itself so the seeds follow any layout change.
 * Usage: corpus_gen DIR (DIR/<target>/ must exist). Run by `make -C tests fuzz-corpus`.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "msg.h"
#include "preamble.h"

static const char *corpus_dir;

static int corpus_write(const char *target, const char *name, const void *buf, size_t n)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s/%s", corpus_dir, target, name);
	f = fopen(path, "wb");
	if (!f || fwrite(buf, 1, n, f) != n || fclose(f) != 0) {
		fprintf(stderr, "%s: %s: %s\n", __func__, path, strerror(errno));
		return -1;
	}
	return 0;
}

static void corpus_opt(struct slim_sockopt *o, int level, int name, int val)
{
	o->level = level;
	o->name = name;
	o->len = sizeof(int);
	memcpy(o->val, &val, sizeof(int));
}

static int corpus_requests(void)
{
	struct slim_pool_req pr;
	struct slim_route_req rr;
	struct slim_listen_req l;
	struct {
		struct slim_msg_hdr hdr;
		char json[16];
	} ctl;
	int err = 0;

	memset(&pr, 0, sizeof(pr));
	pr.hdr.type = SLIM_MSG_POOL_REQ;
	pr.hdr.id = 1;
	pr.hdr.len = sizeof(pr);
	pr.count = SLIM_POOL_BATCH;
	err |= corpus_write("fuzz_msg_request", "pool", &pr, sizeof(pr));

	memset(&rr, 0, sizeof(rr));
	rr.hdr.type = SLIM_MSG_ROUTE_REQ;
	rr.hdr.id = 4;
	rr.hdr.len = sizeof(rr);
	rr.dst_ip = htonl(0x0af40202);
	rr.dst_port = htons(80);
	rr.flags = SLIM_ROUTEF_RETRY;
	err |= corpus_write("fuzz_msg_request", "route", &rr, sizeof(rr));

	memset(&l, 0, sizeof(l));
	l.hdr.type = SLIM_MSG_LISTEN_REQ;
	l.hdr.id = 2;
	l.port = htons(6379);
	l.backlog = 511;
	corpus_opt(&l.opts[0], SOL_SOCKET, SO_REUSEADDR, 1);
	l.nopts = 1;
	l.hdr.len = slim_listen_req_len(1);
	err |= corpus_write("fuzz_msg_request", "listen1", &l, l.hdr.len);

	memset(&ctl, 0, sizeof(ctl));
	ctl.hdr.type = SLIM_MSG_CTL_REQ;
	ctl.hdr.id = 3;
	memcpy(ctl.json, "{\"cmd\":\"conns\"}", 15);
	ctl.hdr.len = sizeof(ctl.hdr) + 15;
	err |= corpus_write("fuzz_msg_request", "ctl", &ctl, ctl.hdr.len);
	return err;
}

/*
 * Reply seeds carry the 6-byte prefix fuzz_msg_reply reads: type selector (the index in its
 * fuzz_reply_types[]), pad, expected id.
 */
static int corpus_reply(const char *name, uint8_t selector, const void *msg, size_t n)
{
	uint8_t buf[256];
	const struct slim_msg_hdr *h = msg;

	buf[0] = selector;
	buf[1] = 0;
	memcpy(buf + 2, &h->id, sizeof(h->id));
	memcpy(buf + 6, msg, n);
	return corpus_write("fuzz_msg_reply", name, buf, n + 6);
}

static int corpus_replies(void)
{
	struct slim_pool_rep p;
	struct slim_route_rep r;
	struct slim_listen_rep l;
	struct {
		struct slim_msg_hdr hdr;
		char json[11];
	} ctl;
	int err = 0;

	memset(&p, 0, sizeof(p));
	p.hdr.type = SLIM_MSG_POOL_REP;
	p.hdr.len = sizeof(p);
	p.hdr.id = 7;
	p.action = SLIM_ACT_FD;
	p.count = 4;
	err |= corpus_reply("pool_rep", 0, &p, sizeof(p));

	memset(&l, 0, sizeof(l));
	l.hdr.type = SLIM_MSG_LISTEN_REP;
	l.hdr.len = sizeof(l);
	l.hdr.id = 8;
	l.action = SLIM_ACT_FALLBACK;
	err |= corpus_reply("listen_rep", 1, &l, sizeof(l));

	memset(&r, 0, sizeof(r));
	r.hdr.type = SLIM_MSG_ROUTE_REP;
	r.hdr.len = sizeof(r);
	r.hdr.id = 10;
	r.action = SLIM_ACT_ROUTE;
	err |= corpus_reply("route_rep", 2, &r, sizeof(r));

	memset(&ctl, 0, sizeof(ctl));
	ctl.hdr.type = SLIM_MSG_CTL_REP;
	ctl.hdr.id = 9;
	memcpy(ctl.json, "{\"ok\":true}", 11);
	ctl.hdr.len = sizeof(ctl);
	err |= corpus_reply("ctl_rep", 3, &ctl, sizeof(ctl));
	return err;
}

static int corpus_fabric(void)
{
	struct slim_resolve_req q;
	struct slim_resolve_rep r;
	struct slim_invalidate inv;
	struct slim_pod_sync ps;
	int err = 0;

	memset(&q, 0, sizeof(q));
	q.hdr.type = htons(SLIM_MSG_RESOLVE_REQ);
	q.hdr.len = htonl(sizeof(q));
	q.hdr.id = htonl(1);
	q.pod_ip = htonl(0x0af40202);
	q.port = htons(80);
	err |= corpus_write("fuzz_msg_fabric", "resolve_req", &q, sizeof(q));

	memset(&r, 0, sizeof(r));
	r.hdr.type = htons(SLIM_MSG_RESOLVE_REP);
	r.hdr.len = htonl(sizeof(r));
	r.hdr.id = htonl(1);
	r.status = htonl(SLIM_RESOLVE_FOUND);
	r.host_ip = htonl(0xc6120002);
	r.host_port = htons(45000);
	err |= corpus_write("fuzz_msg_fabric", "resolve_rep", &r, sizeof(r));

	memset(&inv, 0, sizeof(inv));
	inv.hdr.type = htons(SLIM_MSG_INVALIDATE);
	inv.hdr.len = htonl(sizeof(inv));
	inv.pod_ip = htonl(0x0af40202);
	inv.port = htons(80);
	err |= corpus_write("fuzz_msg_fabric", "invalidate", &inv, sizeof(inv));

	memset(&ps, 0, sizeof(ps));
	ps.hdr.type = htons(SLIM_MSG_POD_SYNC);
	ps.hdr.len = htonl(sizeof(ps));
	ps.op = htonl(SLIM_POD_SYNC_ADD);
	ps.pod_ip = htonl(0x0af40202);
	snprintf(ps.name, sizeof(ps.name), "p1");
	snprintf(ps.labels, sizeof(ps.labels), "{\"pod\":\"h2-p1\"}");
	err |= corpus_write("fuzz_msg_fabric", "pod_sync", &ps, sizeof(ps));
	return err;
}

static int corpus_preamble(void)
{
	struct slim_preamble p = {htonl(0x0af40102), htonl(0x0af40202), htons(40000), htons(80)};
	uint8_t buf[SLIM_PREAMBLE_LEN];

	slim_preamble_encode(&p, buf);
	return corpus_write("fuzz_preamble", "valid", buf, sizeof(buf));
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: corpus_gen DIR\n");
		return 2;
	}
	corpus_dir = argv[1];
	if (corpus_requests() || corpus_replies() || corpus_fabric() || corpus_preamble())
		return 1;
	return 0;
}
