// SPDX-License-Identifier: MIT
/*
 * The cluster store (--store etcd:URL): this node and its pods registered in etcd under a lease
 * that the router keeps alive, the pods of every other node and the policy and service
 * documents listed and then watched from the listing's revision, applied as they change. The
 * layout (docs/store.md), PREFIX "/slim/" by default, values JSON:
 *
 *   PREFIX nodes/NAME  {"fabric_ip": "198.18.0.2", "pod_cidr": "10.244.2.0/24"}   (lease)
 *   PREFIX pods/IP     {"node": "h2", "name": "p1", "labels": {"k": "v"}}         (lease)
 *   PREFIX policy      the policy document (docs/policy.md)
 *   PREFIX services    the service document (docs/services.md)
 *
 * A node that dies stops renewing its lease; etcd then deletes its keys and every router's
 * watch removes its pods. While etcd cannot be reached, everything known stays in force; the
 * router retries with a bounded backoff, and on reconnecting lists afresh and reconciles.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "log.h"
#include "router.h"

#define STORE_CALL_MS	    3000  /* a unary call that takes longer counts as an outage */
#define STORE_LIST_MS	    10000 /* a whole listing may be large */
#define STORE_BACKOFF_MIN_MS 100
/* Bounded well below a lease's TTL: after an outage every router is back before the leases
 * etcd renewed at its restart run out, so no node's pods disappear for a blip. */
#define STORE_BACKOFF_MAX_MS 1000
#define STORE_TXN_OPS	     64 /* etcd allows 128 operations per transaction by default */

enum store_state {
	STORE_OFF = 0,
	STORE_GRANTING,	   /* taking a lease (or checking the one we had) */
	STORE_REGISTERING, /* this node and its pods under the lease */
	STORE_LISTING,	   /* reading everything, to reconcile */
	STORE_WATCHING,	   /* watch requested, not yet confirmed */
	STORE_SYNCED,	   /* watching: changes arrive as they happen */
	STORE_BACKOFF,	   /* waiting to try again */
};

static const char *const store_state_names[] = {"off",	    "granting", "registering", "listing",
						"watching", "synced",	"backoff"};

static struct {
	enum store_state st_state;
	char *st_url;
	char st_prefix[STORE_PREFIX_MAX + 1];
	unsigned st_ttl;
	/* Bumped at every reset: an answer to a request of an older round is ignored. */
	uintptr_t st_gen;
	int64_t st_lease; /* 0: none */
	int64_t st_revision;
	struct etcd_req *st_watch;
	long long st_keepalive_timer, st_retry_timer;
	unsigned st_backoff_ms;
	unsigned st_pending; /* registration transactions not yet answered */
	char *st_doc[2];     /* the last policy / service document applied from the store */
	json_t *st_nodes;    /* name -> value, the nodes registered in the store */
	uint64_t st_errors, st_syncs;
	unsigned st_streak; /* failed tries since the last sync */
	char st_error[256];
} store = {.st_keepalive_timer = -1, .st_retry_timer = -1};

/* ---- pure: URLs, keys and the gateway's answers ---- */

int store_parse_url(const char *arg, char *url, size_t urllen, char *err, size_t errlen)
{
	const char *rest;

	if (strncmp(arg, "etcd:", 5)) {
		snprintf(err, errlen, "expected etcd:http://HOST:PORT (the only store there is)");
		return -EINVAL;
	}
	rest = arg + 5;
	if (strncmp(rest, "http://", 7) && strncmp(rest, "https://", 8)) {
		snprintf(err, errlen, "expected an http:// or https:// URL after etcd:");
		return -EINVAL;
	}
	if (strlen(rest) >= urllen || strlen(rest) < 9) {
		snprintf(err, errlen, "URL too long or empty");
		return -EINVAL;
	}
	for (const char *c = rest; *c; c++) {
		if ((unsigned char)*c <= ' ' || *c == 0x7f || *c == '?' || *c == '#') {
			snprintf(err, errlen, "unexpected character in the URL");
			return -EINVAL;
		}
	}
	snprintf(url, urllen, "%s", rest);
	return 0;
}

bool store_prefix_valid(const char *prefix)
{
	size_t n = strlen(prefix);

	if (n < 1 || n > STORE_PREFIX_MAX || prefix[0] != '/' || prefix[n - 1] != '/')
		return false;
	for (const char *c = prefix; *c; c++)
		if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f)
			return false;
	return true;
}

/* A name as the pod and node tables take it: 1-63 printable characters, no '/'. */
static bool store_name_valid(const char *s, size_t n)
{
	if (n == 0 || n >= NAME_MAX_LEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f || s[i] == '/')
			return false;
	return true;
}

int store_key_parse(const char *prefix, const char *key, size_t len, struct store_kv *kv)
{
	size_t plen = strlen(prefix);
	const char *rest = key + plen;
	size_t rlen;

	kv->sk_kind = STORE_KEY_OTHER;
	if (len < plen || memcmp(key, prefix, plen))
		return 0;
	rlen = len - plen;
	if (rlen == 6 && !memcmp(rest, "policy", 6)) {
		kv->sk_kind = STORE_KEY_POLICY;
	} else if (rlen == 8 && !memcmp(rest, "services", 8)) {
		kv->sk_kind = STORE_KEY_SERVICES;
	} else if (rlen > 6 && !memcmp(rest, "nodes/", 6)) {
		if (!store_name_valid(rest + 6, rlen - 6))
			return -EINVAL;
		memcpy(kv->sk_node, rest + 6, rlen - 6);
		kv->sk_node[rlen - 6] = '\0';
		kv->sk_kind = STORE_KEY_NODE;
	} else if (rlen > 5 && !memcmp(rest, "pods/", 5)) {
		char ip[INET_ADDRSTRLEN];
		struct in_addr a;

		if (rlen - 5 >= sizeof(ip))
			return -EINVAL;
		memcpy(ip, rest + 5, rlen - 5);
		ip[rlen - 5] = '\0';
		if (inet_pton(AF_INET, ip, &a) != 1)
			return -EINVAL;
		kv->sk_ip = a.s_addr;
		kv->sk_kind = STORE_KEY_POD;
	}
	return 0;
}

void store_kv_clear(struct store_kv *kv)
{
	json_decref(kv->sk_labels);
	free(kv->sk_value);
	memset(kv, 0, sizeof(*kv));
}

static int store_verr(char *err, size_t errlen, int ret, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int store_verr(char *err, size_t errlen, int ret, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return ret;
}

/* A pod's value: its node (which must own the address), name and labels. */
static int store_pod_value(struct store_kv *kv, json_t *v, char *err, size_t errlen)
{
	static const char *const keys[] = {"node", "name", "labels", NULL};
	json_t *node = json_object_get(v, "node"), *name = json_object_get(v, "name");
	json_t *labels = json_object_get(v, "labels"), *lv;
	const struct cluster_node *owner;
	const char *k;

	if (confjson_unknown_key(v, keys))
		return store_verr(err, errlen, -EINVAL, "unknown key \"%s\"",
				  confjson_unknown_key(v, keys));
	if (!json_is_string(node) || !json_is_string(name) ||
	    !store_name_valid(json_string_value(node), json_string_length(node)) ||
	    !store_name_valid(json_string_value(name), json_string_length(name)))
		return store_verr(err, errlen, -EINVAL, "node and name must be names");
	if (labels && !json_is_object(labels))
		return store_verr(err, errlen, -EINVAL, "labels must be an object");
	json_object_foreach(labels, k, lv)
		if (!json_is_string(lv) || !*k)
			return store_verr(err, errlen, -EINVAL, "label \"%s\" is not a string", k);
	snprintf(kv->sk_node, sizeof(kv->sk_node), "%s", json_string_value(node));
	snprintf(kv->sk_name, sizeof(kv->sk_name), "%s", json_string_value(name));
	/* A node speaks only for addresses in its own pod_cidr (as over the fabric). */
	owner = router.r_cluster ? cluster_owner(router.r_cluster, kv->sk_ip) : NULL;
	if (!owner || strcmp(owner->cn_name, kv->sk_node))
		return store_verr(err, errlen, -EINVAL, "node %s does not own this address",
				  kv->sk_node);
	kv->sk_labels = labels ? json_incref(labels) : json_object();
	return kv->sk_labels ? 0 : -ENOMEM;
}

static int store_node_value(struct store_kv *kv, json_t *v, char *err, size_t errlen)
{
	static const char *const keys[] = {"fabric_ip", "pod_cidr", NULL};
	const char *ip = json_string_value(json_object_get(v, "fabric_ip"));
	const char *cidr = json_string_value(json_object_get(v, "pod_cidr"));
	struct in_addr a;

	if (confjson_unknown_key(v, keys))
		return store_verr(err, errlen, -EINVAL, "unknown key \"%s\"",
				  confjson_unknown_key(v, keys));
	if (!ip || inet_pton(AF_INET, ip, &a) != 1)
		return store_verr(err, errlen, -EINVAL, "fabric_ip must be an IPv4 address");
	if (!cidr || cidr_parse(cidr, &kv->sk_pod_cidr) < 0)
		return store_verr(err, errlen, -EINVAL, "pod_cidr must be a CIDR");
	kv->sk_fabric_ip = a.s_addr;
	return 0;
}

int store_kv_decode(const char *prefix, json_t *kvj, bool deleted, struct store_kv *out,
		    char *err, size_t errlen)
{
	json_t *key = json_object_get(kvj, "key"), *value = json_object_get(kvj, "value");
	size_t klen = 0, vlen = 0;
	char *k = NULL, *v = NULL;
	json_error_t jerr;
	json_t *doc;
	int ret;

	memset(out, 0, sizeof(*out));
	out->sk_delete = deleted;
	if (!json_is_object(kvj) || !json_is_string(key) || (value && !json_is_string(value)) ||
	    etcd_int64(json_object_get(kvj, "mod_revision"), &out->sk_mod_revision) < 0)
		return store_verr(err, errlen, -EBADMSG, "malformed kv");
	if (etcd_b64_decode(json_string_value(key), json_string_length(key), &k, &klen) < 0 ||
	    (value && etcd_b64_decode(json_string_value(value), json_string_length(value), &v,
				      &vlen) < 0)) {
		free(k);
		return store_verr(err, errlen, -EBADMSG, "malformed base64 in a kv");
	}
	ret = store_key_parse(prefix, k, klen, out);
	if (ret < 0) {
		store_verr(err, errlen, ret, "malformed key \"%.*s\"", (int)(klen > 100 ? 100 : klen),
			   k);
		goto out;
	}
	if (deleted || out->sk_kind == STORE_KEY_OTHER)
		goto out;
	if (out->sk_kind == STORE_KEY_POLICY || out->sk_kind == STORE_KEY_SERVICES) {
		/* Checked when it is applied, like a document from slimctl. */
		out->sk_value = v ? v : strdup("");
		out->sk_len = v ? vlen : 0;
		v = NULL;
		ret = out->sk_value ? 0 : -ENOMEM;
		goto out;
	}
	doc = json_loadb(v ? v : "", vlen, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(doc)) {
		ret = store_verr(err, errlen, -EINVAL, "%.*s: value is not a JSON object",
				 (int)(klen > 100 ? 100 : klen), k);
	} else {
		char why[160] = "";

		ret = out->sk_kind == STORE_KEY_POD ? store_pod_value(out, doc, why, sizeof(why))
						    : store_node_value(out, doc, why, sizeof(why));
		if (ret < 0)
			store_verr(err, errlen, ret, "%.*s: %s", (int)(klen > 100 ? 100 : klen), k,
				   why);
	}
	json_decref(doc);
out:
	free(k);
	free(v);
	if (ret < 0) {
		json_decref(out->sk_labels);
		free(out->sk_value);
		out->sk_labels = NULL;
		out->sk_value = NULL;
	}
	return ret;
}

void store_batch_clear(struct store_batch *b)
{
	for (size_t i = 0; i < b->sb_n; i++)
		store_kv_clear(&b->sb_kvs[i]);
	free(b->sb_kvs);
	memset(b, 0, sizeof(*b));
}

int store_batch_decode(const char *prefix, json_t *msg, bool watch, struct store_batch *b,
		       char *err, size_t errlen)
{
	json_t *body = msg, *items, *it, *header;
	size_t i;
	int ret;

	memset(b, 0, sizeof(*b));
	if (watch) {
		json_t *e = json_object_get(msg, "error");

		/* A stream reports its failure in a message of its own. */
		if (e) {
			const char *m = json_string_value(json_object_get(e, "message"));

			return store_verr(err, errlen, -EBADMSG, "watch error: %s",
					  m ? m : "(no message)");
		}
		body = json_object_get(msg, "result");
		if (!json_is_object(body))
			return store_verr(err, errlen, -EBADMSG, "watch message without result");
		b->sb_created = json_is_true(json_object_get(body, "created"));
		b->sb_canceled = json_is_true(json_object_get(body, "canceled"));
		if (etcd_int64(json_object_get(body, "compact_revision"),
			       &b->sb_compact_revision) < 0)
			return store_verr(err, errlen, -EBADMSG, "malformed compact_revision");
	}
	header = json_object_get(body, "header");
	if (!json_is_object(header) ||
	    etcd_int64(json_object_get(header, "revision"), &b->sb_revision) < 0 ||
	    b->sb_revision < 0)
		return store_verr(err, errlen, -EBADMSG, "malformed header");
	items = json_object_get(body, watch ? "events" : "kvs");
	if (!items)
		return 0;
	if (!json_is_array(items))
		return store_verr(err, errlen, -EBADMSG, "%s is not an array",
				  watch ? "events" : "kvs");
	b->sb_kvs = calloc(json_array_size(items) ? json_array_size(items) : 1,
			   sizeof(*b->sb_kvs));
	if (!b->sb_kvs)
		return -ENOMEM;
	json_array_foreach(items, i, it) {
		bool deleted = false;
		json_t *kvj = it;
		char why[256];

		if (watch) {
			const char *type = json_string_value(json_object_get(it, "type"));

			/* PUT is the zero value of the enum: the gateway leaves it out. */
			if (!json_is_object(it) ||
			    (json_object_get(it, "type") && !type))
				goto bad;
			if (type && !strcmp(type, "DELETE"))
				deleted = true;
			else if (type && strcmp(type, "PUT"))
				goto bad;
			kvj = json_object_get(it, "kv");
		}
		ret = store_kv_decode(prefix, kvj, deleted, &b->sb_kvs[b->sb_n], why, sizeof(why));
		if (ret == -EBADMSG || ret == -ENOMEM) {
			store_batch_clear(b);
			return store_verr(err, errlen, ret == -ENOMEM ? -ENOMEM : -EBADMSG, "%s",
					  why);
		}
		if (ret < 0) {
			static struct log_ratelimit rl;

			/* Somebody else's bad entry: skipped (listing again would not help). */
			log_ratelimited(&rl, LOG_LVL_WARN, "store: ignoring %s", why);
			b->sb_bad++;
			continue;
		}
		b->sb_n++;
	}
	return 0;
bad:
	store_batch_clear(b);
	return store_verr(err, errlen, -EBADMSG, "malformed watch event");
}

/* ---- applying what the store holds ---- */

static void store_node_put(const struct store_kv *kv)
{
	char ip[INET_ADDRSTRLEN], net[INET_ADDRSTRLEN], cidr[INET_ADDRSTRLEN + 4];

	if (!store.st_nodes)
		return;
	inet_ntop(AF_INET, &kv->sk_fabric_ip, ip, sizeof(ip));
	inet_ntop(AF_INET, &kv->sk_pod_cidr.net, net, sizeof(net));
	snprintf(cidr, sizeof(cidr), "%s/%u", net, kv->sk_pod_cidr.len);
	json_object_set_new(store.st_nodes, kv->sk_node,
			    json_pack("{s:s, s:s}", "fabric_ip", ip, "pod_cidr", cidr));
}

void store_apply_pod(const struct store_kv *kv)
{
	const struct dir_pod *d;

	if (kv->sk_kind == STORE_KEY_NODE) {
		if (!kv->sk_delete) {
			store_node_put(kv);
			return;
		}
		if (store.st_nodes)
			json_object_del(store.st_nodes, kv->sk_node);
		/* Its pods went with the same lease; this only makes sure. */
		if (strcmp(kv->sk_node, router.r_node_name)) {
			directory_drop_node(kv->sk_node);
			nft_schedule();
		}
		return;
	}
	if (kv->sk_kind != STORE_KEY_POD)
		return;
	d = directory_find(kv->sk_ip);
	if (kv->sk_delete) {
		/* Our own pods are the pod table's: a deleted key of ours is put back at the
		 * next registration, never taken out of the directory. */
		if (d && !d->dp_local) {
			directory_del(kv->sk_ip);
			nft_schedule();
		}
		return;
	}
	if (!strcmp(kv->sk_node, router.r_node_name))
		return;
	if (d && !d->dp_local && !strcmp(d->dp_nodename, kv->sk_node) &&
	    !strcmp(d->dp_name, kv->sk_name) && json_equal(d->dp_labels, kv->sk_labels))
		return; /* unchanged (a listing after a reconnect) */
	if (directory_put(kv->sk_node, false, kv->sk_ip, kv->sk_name, kv->sk_labels) == 0)
		nft_schedule();
}

/* A document key changed (text NULL: deleted): applied when it differs from what we applied. */
static void store_apply_doc(enum store_key_kind kind, const char *text, size_t len,
			    int64_t revision)
{
	static const char *const empty[] = {"{\"policies\":[]}", "{\"services\":[]}"};
	int i = kind == STORE_KEY_POLICY ? 0 : 1;
	const char *cmd = i == 0 ? "policy.apply" : "service.apply";
	char origin[STORE_PREFIX_MAX + 64];
	char *copy;
	int ret;

	if (!text) {
		if (!store.st_doc[i])
			return; /* nothing of the store's is in force */
		free(store.st_doc[i]);
		store.st_doc[i] = NULL;
		text = empty[i];
		len = strlen(text);
	} else {
		if (store.st_doc[i] && strlen(store.st_doc[i]) == len &&
		    !memcmp(store.st_doc[i], text, len))
			return;
		copy = strndup(text, len);
		if (!copy)
			return;
		free(store.st_doc[i]);
		store.st_doc[i] = copy;
	}
	snprintf(origin, sizeof(origin), "etcd %s%s@%lld", store.st_prefix,
		 i == 0 ? "policy" : "services", (long long)revision);
	ret = control_apply_stored(cmd, origin, text, len);
	if (ret < 0)
		log_warnx("store: %s: cannot apply: %s", origin, strerror(-ret));
}

static void store_apply(const struct store_kv *kv, int64_t revision)
{
	switch (kv->sk_kind) {
	case STORE_KEY_NODE:
	case STORE_KEY_POD:
		store_apply_pod(kv);
		break;
	case STORE_KEY_POLICY:
	case STORE_KEY_SERVICES:
		store_apply_doc(kv->sk_kind, kv->sk_delete ? NULL : kv->sk_value, kv->sk_len,
				revision);
		break;
	default:
		break;
	}
}

/* ---- the connection: lease, registration, listing, watch ---- */

static void store_connect(void);
static void store_reset(const char *why, bool backoff);

static void *store_arg(void)
{
	return (void *)store.st_gen;
}

static bool store_stale(void *arg)
{
	return (uintptr_t)arg != store.st_gen || store.st_state == STORE_OFF;
}

static json_t *store_b64(const char *s, size_t len)
{
	char *b = etcd_b64_encode(s, len);
	json_t *j = b ? json_string(b) : NULL;

	free(b);
	return j;
}

static json_t *store_key(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static json_t *store_key(const char *fmt, ...)
{
	char key[STORE_PREFIX_MAX + 128];
	size_t plen = strlen(store.st_prefix);
	va_list ap;

	memcpy(key, store.st_prefix, plen);
	va_start(ap, fmt);
	vsnprintf(key + plen, sizeof(key) - plen, fmt, ap);
	va_end(ap);
	return store_b64(key, strlen(key));
}

static json_t *store_lease_json(void)
{
	char id[24];

	snprintf(id, sizeof(id), "%lld", (long long)store.st_lease);
	return json_string(id);
}

/* {"request_put": {...}} for a pod of ours. */
static json_t *store_pod_put(const struct pod *p)
{
	char ip[INET_ADDRSTRLEN];
	json_t *value = json_pack("{s:s, s:s, s:O}", "node", router.r_node_name, "name", p->p_name,
				  "labels", p->p_labels ? p->p_labels : json_object());
	char *text = value ? json_dumps(value, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_t *op;

	inet_ntop(AF_INET, &p->p_ip, ip, sizeof(ip));
	op = text ? json_pack("{s:{s:o, s:o, s:o}}", "request_put", "key", store_key("pods/%s", ip),
			      "value", store_b64(text, strlen(text)), "lease", store_lease_json())
		  : NULL;
	free(text);
	json_decref(value);
	return op;
}

static json_t *store_node_put_op(void)
{
	const struct cluster_node *self = router.r_self;
	char ip[INET_ADDRSTRLEN], net[INET_ADDRSTRLEN], value[128];

	inet_ntop(AF_INET, &router.r_fabric_ip, ip, sizeof(ip));
	inet_ntop(AF_INET, &self->cn_pod_cidr.net, net, sizeof(net));
	snprintf(value, sizeof(value), "{\"fabric_ip\":\"%s\",\"pod_cidr\":\"%s/%u\"}", ip, net,
		 self->cn_pod_cidr.len);
	return json_pack("{s:{s:o, s:o, s:o}}", "request_put", "key",
			 store_key("nodes/%s", router.r_node_name), "value",
			 store_b64(value, strlen(value)), "lease", store_lease_json());
}

static void store_watch_event(int ret, json_t *obj, const char *msg, void *arg)
{
	struct store_batch b;
	char err[256];

	if (store_stale(arg))
		return;
	if (ret < 0) {
		store.st_watch = NULL; /* freed by etcd.c after this */
		store_reset(msg, true);
		return;
	}
	ret = store_batch_decode(store.st_prefix, obj, true, &b, err, sizeof(err));
	if (ret < 0) {
		/* A malformed answer: close this stream, read everything afresh. */
		etcd_close(store.st_watch);
		store.st_watch = NULL;
		store_reset(err, true);
		return;
	}
	if (b.sb_canceled) {
		etcd_close(store.st_watch);
		store.st_watch = NULL;
		if (b.sb_compact_revision) {
			/* We were behind a compaction: a listing is the only way back. */
			log_info("store: revision %lld compacted (at %lld): listing again",
				 (long long)store.st_revision + 1,
				 (long long)b.sb_compact_revision);
			store_reset(NULL, false);
		} else {
			store_reset("watch canceled by the server", true);
		}
		store_batch_clear(&b);
		return;
	}
	if (b.sb_created && store.st_state == STORE_WATCHING) {
		store.st_state = STORE_SYNCED;
		store.st_backoff_ms = 0;
		store.st_syncs++;
		store.st_streak = 0;
		store.st_error[0] = '\0';
		log_info("store: synced with %s at revision %lld (lease %llx, ttl %u s)",
			 store.st_url, (long long)store.st_revision,
			 (unsigned long long)store.st_lease, store.st_ttl);
	}
	for (size_t i = 0; i < b.sb_n; i++) {
		store_apply(&b.sb_kvs[i], b.sb_kvs[i].sk_mod_revision);
		if (b.sb_kvs[i].sk_mod_revision > store.st_revision)
			store.st_revision = b.sb_kvs[i].sk_mod_revision;
	}
	store_batch_clear(&b);
}

static void store_watch(void)
{
	size_t plen = strlen(store.st_prefix);
	char end[STORE_PREFIX_MAX + 1];
	char rev[24];
	json_t *body;

	/* The range of every key under the prefix: the prefix with its last byte plus one. */
	memcpy(end, store.st_prefix, plen + 1);
	end[plen - 1]++;
	snprintf(rev, sizeof(rev), "%lld", (long long)store.st_revision + 1);
	body = json_pack("{s:{s:o, s:o, s:s}}", "create_request", "key",
			 store_b64(store.st_prefix, plen), "range_end", store_b64(end, plen),
			 "start_revision", rev);
	store.st_state = STORE_WATCHING;
	store.st_watch = body ? etcd_stream("/v3/watch", body, store_watch_event, store_arg())
			      : NULL;
	json_decref(body);
	if (!store.st_watch)
		store_reset("cannot start the watch", true);
}

struct store_ip_set {
	uint32_t *is_ips;
	size_t is_n;
};

static int store_ip_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static void store_delete_key(json_t *key);

/* A fresh listing: the directory, the node list and the documents become what it says. */
static void store_reconcile(const struct store_batch *b)
{
	struct store_ip_set listed = {calloc(b->sb_n ? b->sb_n : 1, sizeof(uint32_t)), 0};
	bool seen_doc[2] = {false, false};
	const struct dir_pod *d = NULL;
	uint32_t *gone = NULL;
	size_t ngone = 0, bucket = 0;

	json_object_clear(store.st_nodes);
	for (size_t i = 0; i < b->sb_n; i++) {
		const struct store_kv *kv = &b->sb_kvs[i];
		char ip[INET_ADDRSTRLEN];

		if (kv->sk_kind == STORE_KEY_POLICY || kv->sk_kind == STORE_KEY_SERVICES)
			seen_doc[kv->sk_kind == STORE_KEY_SERVICES] = true;
		if (kv->sk_kind == STORE_KEY_POD && !strcmp(kv->sk_node, router.r_node_name) &&
		    !pod_find_ip(kv->sk_ip)) {
			/* Ours but no longer registered (removed during an outage). */
			inet_ntop(AF_INET, &kv->sk_ip, ip, sizeof(ip));
			store_delete_key(store_key("pods/%s", ip));
			continue;
		}
		if (kv->sk_kind == STORE_KEY_POD && listed.is_ips)
			listed.is_ips[listed.is_n++] = kv->sk_ip;
		store_apply(kv, kv->sk_mod_revision);
	}
	if (!seen_doc[0])
		store_apply_doc(STORE_KEY_POLICY, NULL, 0, b->sb_revision);
	if (!seen_doc[1])
		store_apply_doc(STORE_KEY_SERVICES, NULL, 0, b->sb_revision);
	if (!listed.is_ips)
		return; /* out of memory: keep what we have rather than guess */
	qsort(listed.is_ips, listed.is_n, sizeof(uint32_t), store_ip_cmp);
	/* Pods of other nodes the store no longer has (their node died while we were away). */
	while ((d = directory_iter(&bucket, d))) {
		uint32_t *g;

		if (d->dp_local ||
		    bsearch(&d->dp_ip, listed.is_ips, listed.is_n, sizeof(uint32_t), store_ip_cmp))
			continue;
		g = realloc(gone, (ngone + 1) * sizeof(*gone));
		if (!g)
			break;
		gone = g;
		gone[ngone++] = d->dp_ip;
	}
	for (size_t i = 0; i < ngone; i++)
		directory_del(gone[i]);
	if (ngone)
		nft_schedule();
	free(gone);
	free(listed.is_ips);
}

static void store_on_list(int ret, json_t *reply, const char *msg, void *arg)
{
	struct store_batch b;
	char err[256];

	if (store_stale(arg))
		return;
	if (ret < 0) {
		store_reset(msg, true);
		return;
	}
	ret = store_batch_decode(store.st_prefix, reply, false, &b, err, sizeof(err));
	if (ret < 0) {
		store_reset(err, true);
		return;
	}
	store.st_revision = b.sb_revision;
	store_reconcile(&b);
	store_batch_clear(&b);
	store_watch();
}

static void store_list(void)
{
	size_t plen = strlen(store.st_prefix);
	char end[STORE_PREFIX_MAX + 1];
	json_t *body;

	memcpy(end, store.st_prefix, plen + 1);
	end[plen - 1]++;
	store.st_state = STORE_LISTING;
	body = json_pack("{s:o, s:o}", "key", store_b64(store.st_prefix, plen), "range_end",
			 store_b64(end, plen));
	if (!body || !etcd_call("/v3/kv/range", body, STORE_LIST_MS, store_on_list, store_arg()))
		store_reset("cannot start the listing", true);
	json_decref(body);
}

static void store_on_registered(int ret, json_t *reply, const char *msg, void *arg)
{
	if (store_stale(arg) || store.st_state != STORE_REGISTERING)
		return;
	if (ret < 0) {
		store_reset(msg, true);
		return;
	}
	if (--store.st_pending == 0)
		store_list();
}

static int store_txn(json_t *ops, etcd_reply_fn fn)
{
	json_t *body = json_pack("{s:O}", "success", ops);
	struct etcd_req *rq;

	rq = body ? etcd_call("/v3/kv/txn", body, STORE_CALL_MS, fn, store_arg()) : NULL;
	json_decref(body);
	return rq ? 0 : -ENOMEM;
}

struct store_register {
	json_t *sr_ops;
	int sr_ret;
};

static void store_register_pod(const struct pod *p, void *arg)
{
	struct store_register *sr = arg;

	if (sr->sr_ret < 0)
		return;
	if (json_array_append_new(sr->sr_ops, store_pod_put(p)) < 0) {
		sr->sr_ret = -ENOMEM;
		return;
	}
	if (json_array_size(sr->sr_ops) == STORE_TXN_OPS) {
		sr->sr_ret = store_txn(sr->sr_ops, store_on_registered);
		store.st_pending++;
		json_array_clear(sr->sr_ops);
	}
}

/* This node and its pods under the lease (again, after a reconnect: the same keys). */
static void store_register(void)
{
	struct store_register sr = {json_array(), 0};

	store.st_state = STORE_REGISTERING;
	store.st_pending = 0;
	if (!sr.sr_ops || json_array_append_new(sr.sr_ops, store_node_put_op()) < 0) {
		json_decref(sr.sr_ops);
		store_reset("out of memory", true);
		return;
	}
	pod_foreach(store_register_pod, &sr);
	if (sr.sr_ret == 0 && json_array_size(sr.sr_ops)) {
		sr.sr_ret = store_txn(sr.sr_ops, store_on_registered);
		store.st_pending++;
	}
	json_decref(sr.sr_ops);
	if (sr.sr_ret < 0)
		store_reset("cannot start the registration", true);
}

static void store_on_grant(int ret, json_t *reply, const char *msg, void *arg)
{
	int64_t id = 0, ttl = 0;

	if (store_stale(arg))
		return;
	if (ret < 0) {
		store_reset(msg, true);
		return;
	}
	if (etcd_int64(json_object_get(reply, "ID"), &id) < 0 || id == 0 ||
	    etcd_int64(json_object_get(reply, "TTL"), &ttl) < 0 || ttl <= 0) {
		store_reset("malformed lease grant", true);
		return;
	}
	store.st_lease = id;
	store_register();
}

static void store_grant(void)
{
	json_t *body = json_pack("{s:I}", "TTL", (json_int_t)store.st_ttl);

	store.st_state = STORE_GRANTING;
	if (!body || !etcd_call("/v3/lease/grant", body, STORE_CALL_MS, store_on_grant, store_arg()))
		store_reset("cannot ask for a lease", true);
	json_decref(body);
}

/* The answer to a keepalive: the lease lives (TTL > 0), or it expired (none). */
static void store_on_keepalive(int ret, json_t *reply, const char *msg, void *arg)
{
	int64_t ttl = 0;

	if (store_stale(arg))
		return;
	if (ret < 0) {
		store_reset(msg, true);
		return;
	}
	if (etcd_int64(json_object_get(json_object_get(reply, "result"), "TTL"), &ttl) < 0) {
		store_reset("malformed keepalive answer", true);
		return;
	}
	if (ttl > 0) {
		if (store.st_state == STORE_GRANTING)
			store_register(); /* the lease we had survived the outage */
		return;
	}
	/* Expired (we were away longer than its TTL): our keys are gone, register again. */
	log_warnx("store: lease %llx expired: registering again",
		  (unsigned long long)store.st_lease);
	store.st_lease = 0;
	if (store.st_state == STORE_GRANTING) {
		store_grant();
	} else {
		etcd_close(store.st_watch);
		store.st_watch = NULL;
		store_reset(NULL, false);
	}
}

static void store_keepalive_send(void)
{
	char id[24];
	json_t *body;

	snprintf(id, sizeof(id), "%lld", (long long)store.st_lease);
	body = json_pack("{s:s}", "ID", id);
	if (!body || !etcd_call("/v3/lease/keepalive", body, STORE_CALL_MS, store_on_keepalive,
				store_arg()))
		store_reset("cannot send a keepalive", true);
	json_decref(body);
}

/* Every third of the TTL, so two lost keepalives in a row still keep the lease. */
static long store_keepalive(struct event_loop *loop, void *arg)
{
	long period = (long)store.st_ttl * 1000 / 3;

	if (store.st_lease && store.st_state >= STORE_REGISTERING &&
	    store.st_state <= STORE_SYNCED)
		store_keepalive_send();
	return period;
}

static void store_connect(void)
{
	store.st_gen++;
	if (store.st_lease) {
		/* Keep the lease we had when it is still alive: no key of ours blinks out. */
		store.st_state = STORE_GRANTING;
		store_keepalive_send();
	} else {
		store_grant();
	}
}

static long store_retry(struct event_loop *loop, void *arg)
{
	store.st_retry_timer = -1;
	if (store.st_state == STORE_BACKOFF)
		store_connect();
	return EVENT_TIMER_STOP;
}

/*
 * Something failed (why) or the round must start over: everything known stays in force; the
 * watch is closed and the answers of this round ignored. With backoff, the next try waits (100
 * ms, doubling, at most STORE_BACKOFF_MAX_MS); without, it starts now.
 */
static void store_reset(const char *why, bool backoff)
{
	bool was_synced = store.st_state == STORE_SYNCED;

	if (store.st_state == STORE_OFF)
		return;
	store.st_gen++;
	if (store.st_watch) {
		etcd_close(store.st_watch);
		store.st_watch = NULL;
	}
	if (why) {
		store.st_errors++;
		snprintf(store.st_error, sizeof(store.st_error), "%s", why);
		/* An outage retries every second: say so when it starts, then every 30 tries. */
		if (was_synced)
			log_warnx("store: %s: lost (%s); keeping the last known state, retrying",
				  store.st_url, why);
		else if (store.st_streak++ % 30 == 0)
			log_warnx("store: %s: %s (%s); retrying (%u tries so far)", store.st_url,
				  why, store_state_names[store.st_state], store.st_streak);
	}
	if (!backoff) {
		store_connect();
		return;
	}
	store.st_state = STORE_BACKOFF;
	store.st_backoff_ms = store.st_backoff_ms ? store.st_backoff_ms * 2 : STORE_BACKOFF_MIN_MS;
	if (store.st_backoff_ms > STORE_BACKOFF_MAX_MS)
		store.st_backoff_ms = STORE_BACKOFF_MAX_MS;
	if (store.st_retry_timer < 0)
		store.st_retry_timer =
			event_timer_add(router.r_loop, store.st_backoff_ms, store_retry, NULL);
}

/* ---- local changes and documents ---- */

static void store_on_write(int ret, json_t *reply, const char *msg, void *arg)
{
	static struct log_ratelimit rl;

	if (store_stale(arg) || ret == 0)
		return;
	/* Not fatal by itself: the next listing reconciles our keys. */
	log_ratelimited(&rl, LOG_LVL_WARN, "store: write: %s", msg);
	if (ret != -ENOENT)
		store_reset(msg, true);
}

static void store_delete_key(json_t *key)
{
	json_t *body = key ? json_pack("{s:o}", "key", key) : NULL;

	if (body)
		etcd_call("/v3/kv/deleterange", body, STORE_CALL_MS, store_on_write, store_arg());
	json_decref(body);
}

void store_pod_changed(const struct pod *p, bool added)
{
	char ip[INET_ADDRSTRLEN];
	json_t *op;

	/* Without a lease the registration to come writes every pod as it is then. */
	if (store.st_state == STORE_OFF || !store.st_lease || store.st_state == STORE_GRANTING ||
	    store.st_state == STORE_BACKOFF)
		return;
	if (!added) {
		inet_ntop(AF_INET, &p->p_ip, ip, sizeof(ip));
		store_delete_key(store_key("pods/%s", ip));
		return;
	}
	op = store_pod_put(p);
	if (op) {
		json_t *body = json_incref(json_object_get(op, "request_put"));

		etcd_call("/v3/kv/put", body, STORE_CALL_MS, store_on_write, store_arg());
		json_decref(body);
	}
	json_decref(op);
}

struct store_put {
	store_put_fn sp_done;
	void *sp_arg;
};

static void store_on_put_document(int ret, json_t *reply, const char *msg, void *arg)
{
	struct store_put *sp = arg;
	int64_t rev = 0;

	if (ret == 0 && etcd_int64(json_object_get(json_object_get(reply, "header"), "revision"),
				   &rev) < 0)
		ret = -EBADMSG, msg = "malformed answer";
	sp->sp_done(ret, rev, msg, sp->sp_arg);
	free(sp);
}

int store_put_document(enum store_key_kind kind, const char *text, size_t len, store_put_fn done,
		       void *arg)
{
	struct store_put *sp;
	json_t *body;

	if (store.st_state == STORE_OFF)
		return -ENOTCONN;
	sp = malloc(sizeof(*sp));
	if (!sp)
		return -ENOMEM;
	sp->sp_done = done;
	sp->sp_arg = arg;
	body = json_pack("{s:o, s:o}", "key",
			 store_key("%s", kind == STORE_KEY_POLICY ? "policy" : "services"), "value",
			 store_b64(text, len));
	if (!body || !etcd_call("/v3/kv/put", body, STORE_CALL_MS, store_on_put_document, sp)) {
		json_decref(body);
		free(sp);
		return -ENOMEM;
	}
	json_decref(body);
	return 0;
}

/* ---- life cycle and status ---- */

int store_start(const char *url, const char *prefix, unsigned ttl)
{
	int ret;

	if (!store_prefix_valid(prefix) || ttl < STORE_TTL_MIN || ttl > STORE_TTL_MAX)
		return -EINVAL;
	ret = etcd_init(router.r_loop, url);
	if (ret < 0)
		return ret;
	store.st_url = strdup(url);
	store.st_nodes = json_object();
	if (!store.st_url || !store.st_nodes) {
		store_stop();
		return -ENOMEM;
	}
	snprintf(store.st_prefix, sizeof(store.st_prefix), "%s", prefix);
	store.st_ttl = ttl;
	store.st_state = STORE_BACKOFF;
	store.st_keepalive_timer =
		event_timer_add(router.r_loop, (long)ttl * 1000 / 3, store_keepalive, NULL);
	store_connect();
	return 0;
}

void store_stop(void)
{
	/* The lease is left to expire rather than revoked: a router that restarts (with its
	 * state file) is back before other routers drop its pods, and shutdown never waits on
	 * the network. */
	if (store.st_keepalive_timer >= 0)
		event_timer_del(router.r_loop, store.st_keepalive_timer);
	if (store.st_retry_timer >= 0)
		event_timer_del(router.r_loop, store.st_retry_timer);
	etcd_free();
	free(store.st_url);
	free(store.st_doc[0]);
	free(store.st_doc[1]);
	json_decref(store.st_nodes);
	memset(&store, 0, sizeof(store));
	store.st_keepalive_timer = store.st_retry_timer = -1;
}

bool store_enabled(void)
{
	return store.st_state != STORE_OFF;
}

bool store_connected(void)
{
	return store.st_state == STORE_SYNCED;
}

int64_t store_revision(void)
{
	return store.st_revision;
}

json_t *store_status_json(void)
{
	char lease[24];

	if (store.st_state == STORE_OFF)
		return json_pack("{s:s}", "state", "off");
	snprintf(lease, sizeof(lease), "%llx", (unsigned long long)store.st_lease);
	return json_pack("{s:s, s:s, s:s, s:b, s:I, s:s, s:i, s:O, s:I, s:I, s:s}", "url",
			 store.st_url, "prefix", store.st_prefix, "state",
			 store_state_names[store.st_state], "connected", store_connected(),
			 "revision", (json_int_t)store.st_revision, "lease", lease, "ttl",
			 (int)store.st_ttl, "nodes", store.st_nodes, "syncs",
			 (json_int_t)store.st_syncs, "errors", (json_int_t)store.st_errors,
			 "last_error", store.st_error);
}
