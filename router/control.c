// SPDX-License-Identifier: MIT
/* slimctl's commands: JSON requests in CTL_REQ, JSON answers in (fragmented) CTL_REP. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>

#include "log.h"
#include "router.h"

#define CONTROL_ERR_MAX 256

/* Sends doc as one or more CTL_REP fragments (SLIM_MSGF_MORE on all but the last). */
static void control_send(struct client *c, uint32_t id, json_t *doc)
{
	const size_t chunk = SLIM_MSG_MAX - sizeof(struct slim_msg_hdr);
	char *text = json_dumps(doc, JSON_COMPACT);
	size_t len, off = 0;
	uint8_t *buf;

	if (!text)
		text = strdup("{\"ok\":false,\"error\":\"out of memory\"}");
	buf = text ? malloc(SLIM_MSG_MAX) : NULL;
	if (!buf) {
		free(text);
		client_close(c);
		return;
	}
	len = strlen(text);
	do {
		size_t n = len - off < chunk ? len - off : chunk;
		struct slim_msg_hdr h = {
			.type = SLIM_MSG_CTL_REP,
			.flags = off + n < len ? SLIM_MSGF_MORE : 0,
			.len = (uint32_t)(sizeof(h) + n),
			.id = id,
		};

		memcpy(buf, &h, sizeof(h));
		memcpy(buf + sizeof(h), text + off, n);
		/* slimctl reads as we write; large listings may queue more than a shim may. */
		if (client_reply(c, buf, sizeof(h) + n, -1, true) < 0)
			break;
		off += n;
	} while (off < len);
	free(buf);
	free(text);
}

static json_t *control_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static json_t *control_error(const char *fmt, ...)
{
	char msg[CONTROL_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return json_pack("{s:b, s:s}", "ok", 0, "error", msg);
}

static json_t *control_ok(json_t *extra)
{
	json_t *doc = json_pack("{s:b}", "ok", 1);

	if (extra) {
		json_object_update(doc, extra);
		json_decref(extra);
	}
	return doc;
}

/* Every key of req must be "cmd" or one of allowed. NULL when fine, else an error document. */
static json_t *control_check_keys(json_t *req, const char *const *allowed)
{
	const char *key;
	json_t *v;

	json_object_foreach(req, key, v) {
		bool ok = !strcmp(key, "cmd");

		for (const char *const *a = allowed; *a && !ok; a++)
			ok = !strcmp(key, *a);
		if (!ok)
			return control_error("unknown argument \"%s\"", key);
	}
	return NULL;
}

/* An optional string argument: NULL when absent; *bad set when present but not a string. */
static const char *control_str(json_t *req, const char *key, bool *bad)
{
	json_t *v = json_object_get(req, key);

	if (!v)
		return NULL;
	if (!json_is_string(v)) {
		*bad = true;
		return NULL;
	}
	return json_string_value(v);
}

static json_t *control_pod_add(json_t *req)
{
	static const char *const keys[] = {"netns", "ip", "name", "labels", NULL};
	const char *netns, *ip, *name, *key;
	char err[CONTROL_ERR_MAX];
	json_t *labels, *v, *doc;
	struct in_addr a;
	struct pod *p;
	bool bad = false;

	if ((doc = control_check_keys(req, keys)))
		return doc;
	netns = control_str(req, "netns", &bad);
	ip = control_str(req, "ip", &bad);
	name = control_str(req, "name", &bad);
	if (bad)
		return control_error("netns, ip and name must be strings");
	if (!netns || !ip)
		return control_error("pod.add needs netns and ip");
	if (inet_pton(AF_INET, ip, &a) != 1)
		return control_error("bad IPv4 address \"%s\"", ip);
	labels = json_object_get(req, "labels");
	if (labels) {
		if (!json_is_object(labels))
			return control_error("labels must be an object");
		json_object_foreach(labels, key, v)
			if (!json_is_string(v) || !*key)
				return control_error("label \"%s\" must have a string value", key);
	}
	if (pod_add(netns, a.s_addr, name, labels, &p, err, sizeof(err)) < 0)
		return control_error("%s", err);
	log_info("pod %s added: ip %s netns %s", p->p_name, ip, netns);
	podsync_pod_changed(p, true);
	return control_ok(json_pack("{s:o}", "pod", pod_json(p)));
}

static json_t *control_pod_del(json_t *req)
{
	static const char *const keys[] = {"name", "ip", NULL};
	const char *name, *ip;
	struct pod *p = NULL;
	bool bad = false;
	struct in_addr a;
	json_t *doc;

	if ((doc = control_check_keys(req, keys)))
		return doc;
	name = control_str(req, "name", &bad);
	ip = control_str(req, "ip", &bad);
	if (bad || (!name == !ip))
		return control_error("pod.del needs exactly one of name or ip (strings)");
	if (name) {
		p = pod_find_name(name);
		if (!p)
			return control_error("no pod named %s", name);
	} else {
		if (inet_pton(AF_INET, ip, &a) != 1)
			return control_error("bad IPv4 address \"%s\"", ip);
		p = pod_find_ip(a.s_addr);
		if (!p)
			return control_error("no pod with ip %s", ip);
	}
	doc = control_ok(json_pack("{s:o}", "pod", pod_json(p)));
	log_info("pod %s deleted (%u listener entries dropped)", p->p_name, p->p_nlisteners);
	podsync_pod_changed(p, false);
	qos_pod_gone(p->p_ip);
	pool_pod_gone(p->p_ip);
	pod_del(p);
	return doc;
}

/* pod.set {"name": N, "egress_rate": "100mbit"|"none", "priority": 0-6|null}: shaping applies
 * to the pod's existing slim connections too (their sockets carry its mark already). */
static json_t *control_pod_set(json_t *req)
{
	static const char *const keys[] = {"name", "egress_rate", "priority", NULL};
	char err[CONTROL_ERR_MAX];
	const char *name, *rate;
	int prio = QOS_PRIO_KEEP;
	bool bad = false;
	json_t *doc, *pv;
	struct pod *p;

	if ((doc = control_check_keys(req, keys)))
		return doc;
	name = control_str(req, "name", &bad);
	rate = control_str(req, "egress_rate", &bad);
	if (bad || !name)
		return control_error("pod.set needs \"name\" (and egress_rate as a string)");
	pv = json_object_get(req, "priority");
	if (pv && json_is_null(pv))
		prio = -1;
	else if (pv && json_is_integer(pv) && json_integer_value(pv) >= 0 &&
		 json_integer_value(pv) <= 6)
		prio = (int)json_integer_value(pv);
	else if (pv)
		return control_error("priority must be 0-6 or null");
	if (!rate && prio == QOS_PRIO_KEEP)
		return control_error("pod.set: nothing to set (egress_rate, priority)");
	p = pod_find_name(name);
	if (!p)
		return control_error("no pod named %s", name);
	if (qos_pod_set(p, rate, prio, err, sizeof(err)) < 0)
		return control_error("pod %s: %s", name, err);
	log_info("pod %s: egress rate %s, priority %d", name, rate ? rate : "(unchanged)", prio);
	return control_ok(json_pack("{s:s, s:o}", "name", name, "qos", qos_pod_json(p->p_ip)));
}

/* policy.apply {"path": FILE}: parse and validate FILE whole, then swap it in and enforce it
 * (revocations and the overlay filter) before answering, so the caller knows it is in force. */
static json_t *control_policy_apply(json_t *req)
{
	static const char *const keys[] = {"path", NULL};
	char err[CONTROL_ERR_MAX * 2];
	struct enforce_report r;
	struct policy_doc *d;
	const char *path;
	bool bad = false;
	json_t *doc;

	if ((doc = control_check_keys(req, keys)))
		return doc;
	path = control_str(req, "path", &bad);
	if (bad || !path || path[0] != '/')
		return control_error("policy.apply needs \"path\": an absolute file name");
	if (policy_load(path, &d, err, sizeof(err)) < 0) {
		log_warnx("policy apply refused, keeping the current policy: %s", err);
		return control_error("%s", err);
	}
	policy_install(d);
	enforce_policy(&r);
	log_info("policy %s applied: %zu policies, %zu rules; %u of %u connections revoked "
		 "in %llu us",
		 path, policy_doc_count(d), policy_doc_rules(d), r.er_revoked, r.er_checked,
		 (unsigned long long)r.er_usec);
	return control_ok(json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:b, s:I}", "origin", path,
				    "policies", (json_int_t)policy_doc_count(d), "rules",
				    (json_int_t)policy_doc_rules(d), "checked",
				    (json_int_t)r.er_checked, "revoked", (json_int_t)r.er_revoked,
				    "failed", (json_int_t)r.er_failed, "overlay_filter",
				    r.er_nft == 0, "usec", (json_int_t)r.er_usec));
}

static json_t *control_status(void)
{
	const struct cluster *cl = router.r_cluster;
	json_t *nodes = json_array();
	char ip[INET_ADDRSTRLEN], net[INET_ADDRSTRLEN], cidr[INET_ADDRSTRLEN + 4];

	for (size_t i = 0; i < cl->cl_nnodes; i++) {
		const struct cluster_node *n = &cl->cl_nodes[i];

		inet_ntop(AF_INET, &n->cn_fabric_ip, ip, sizeof(ip));
		inet_ntop(AF_INET, &n->cn_pod_cidr.net, net, sizeof(net));
		snprintf(cidr, sizeof(cidr), "%s/%u", net, n->cn_pod_cidr.len);
		json_array_append_new(nodes, json_pack("{s:s, s:s, s:s, s:b}", "name", n->cn_name,
						       "fabric_ip", ip, "pod_cidr", cidr, "self",
						       n == router.r_self));
	}
	inet_ntop(AF_INET, &router.r_fabric_ip, ip, sizeof(ip));
	return control_ok(json_pack(
		"{s:s, s:s, s:i, s:s, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:I, s:{s:I, s:I, "
		"s:I}, s:o, s:o, s:o}",
		"node", router.r_node_name, "fabric_ip", ip, "peer_port", router.r_peer_port,
		"cluster", cl->cl_origin, "nodes", nodes, "pods", (json_int_t)pod_count(),
		"listeners", (json_int_t)listener_count(), "conns", (json_int_t)conn_count(),
		"clients", (json_int_t)client_count(), "cache", (json_int_t)resolve_cache_count(),
		"resolving", (json_int_t)resolve_inflight_count(), "peers", peer_list_json(),
		"uptime", (json_int_t)(time(NULL) - router.r_started), "counters", "connect",
		(json_int_t)router.r_nconnect, "fallback", (json_int_t)router.r_nfallback, "listen",
		(json_int_t)router.r_nlisten, "fastpath", fastpath_status_json(), "governance",
		governor_status_json(), "pool", pool_status_json()));
}

void control_handle(struct client *c, uint32_t id, const char *text, size_t len)
{
	static const char *const none[] = {NULL};
	json_error_t jerr;
	json_t *req, *doc;
	const char *cmd;

	req = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!req || !json_is_object(req)) {
		doc = control_error("bad request: %s", req ? "not an object" : jerr.text);
		goto out;
	}
	cmd = json_string_value(json_object_get(req, "cmd"));
	if (!cmd)
		doc = control_error("bad request: no \"cmd\" string");
	else if (!strcmp(cmd, "pod.add"))
		doc = control_pod_add(req);
	else if (!strcmp(cmd, "pod.del"))
		doc = control_pod_del(req);
	else if (!strcmp(cmd, "pod.set"))
		doc = control_pod_set(req);
	else if (!strcmp(cmd, "policy.apply"))
		doc = control_policy_apply(req);
	else if ((doc = control_check_keys(req, none)))
		; /* the remaining commands take no arguments */
	else if (!strcmp(cmd, "pod.list"))
		doc = control_ok(json_pack("{s:o}", "pods", pod_list_json()));
	else if (!strcmp(cmd, "conns")) {
		governor_drain(); /* everything the kernel reported */
		conn_gc();	  /* list only what still exists */
		doc = control_ok(json_pack("{s:o}", "conns", conn_list_json()));
	} else if (!strcmp(cmd, "listeners")) {
		listener_gc();
		doc = control_ok(json_pack("{s:o}", "listeners", listener_list_json()));
	} else if (!strcmp(cmd, "policy.show"))
		doc = control_ok(json_pack("{s:o}", "policy", policy_json()));
	else if (!strcmp(cmd, "directory"))
		doc = control_ok(json_pack("{s:o}", "pods", directory_json()));
	else if (!strcmp(cmd, "status"))
		doc = control_status();
	else
		doc = control_error("unknown command \"%s\"", cmd);
out:
	json_decref(req);
	if (!doc)
		doc = control_error("out of memory");
	control_send(c, id, doc);
	json_decref(doc);
}
