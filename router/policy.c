// SPDX-License-Identifier: MIT
/*
 * Network policy: the policy document (parsed whole and validated before it replaces the one in
 * force), and its compiled form — per local pod and direction, a hash of allowed peer prefixes
 * with their ports — so the check at connection setup costs a few hash probes, not a scan of
 * every rule. docs/policy.md describes the format and the semantics.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>

#include "log.h"
#include "router.h"

#define POLICY_FILE_MAX	 (64 << 20)
#define POLICY_PATH_MAX	 160
#define POLICY_LABEL_MAX 253

/* matchLabels: every key must be present with that value; none at all selects every pod. */
struct policy_selector {
	size_t ps_n;
	const char **ps_keys; /* borrowed from the document's JSON, which the policy keeps */
	const char **ps_vals;
};

struct policy_port {
	uint8_t pp_proto; /* IPPROTO_TCP / IPPROTO_UDP, 0 = any */
	uint16_t pp_lo, pp_hi;
};

struct policy_peer {
	bool pe_is_cidr;
	struct cidr pe_cidr;
	struct policy_selector pe_pods;
};

struct policy_rule {
	bool pr_any_peer; /* no from/to: every peer */
	size_t pr_npeers;
	struct policy_peer *pr_peers;
	size_t pr_nports; /* 0: every port */
	struct policy_port *pr_ports;
};

struct policy_item {
	struct hnode pi_by_name; /* only while the document is parsed: the duplicate check */
	const char *pi_name;
	struct policy_selector pi_pods;
	bool pi_types[POLICY_NDIRS];
	size_t pi_nrules[POLICY_NDIRS];
	struct policy_rule *pi_rules[POLICY_NDIRS];
};

struct policy_doc {
	char *pd_origin;
	json_t *pd_json;
	size_t pd_nitems;
	struct policy_item *pd_items;
	size_t pd_nrules;
};

/* ---- the compiled form ---- */

/* Allowed ports towards one peer prefix, for one local pod and direction. */
struct policy_entry {
	struct hnode pn_node;
	uint32_t pn_local;
	uint32_t pn_net;
	uint8_t pn_dir, pn_len;
	bool pn_all_ports;
	size_t pn_nports, pn_cap;
	struct policy_port *pn_ports;
};

/* A local pod some policy selects. */
struct policy_state {
	struct hnode st_node;
	uint32_t st_ip;
	bool st_isolated[POLICY_NDIRS];
	uint64_t st_lens[POLICY_NDIRS]; /* bit n: some entry has prefix length n */
};

static struct policy_doc *policy_cur;
static struct htab policy_entries, policy_states;
static bool policy_tables_ready;
static uint64_t policy_compiled_gen; /* directory generation compiled against, 0: never */
static uint64_t policy_nchecks, policy_ndenied;

/* ---- parsing ---- */

bool policy_label_valid(const char *s, bool value)
{
	size_t n = strlen(s);

	if ((!value && n == 0) || n > POLICY_LABEL_MAX)
		return false;
	for (const char *c = s; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || *c == '-' || *c == '_' || *c == '.' ||
		      (!value && *c == '/')))
			return false;
	return true;
}

/* {"matchLabels": {k: v, ...}} */
static int policy_parse_selector(const struct confjson_ctx *x, json_t *o, const char *path,
				 struct policy_selector *s)
{
	static const char *const keys[] = {"matchLabels", NULL};
	char p[POLICY_PATH_MAX], q[POLICY_PATH_MAX + 64];
	const char *key;
	json_t *ml, *v;
	size_t i = 0;
	int ret;

	if ((ret = confjson_want(x, o, JSON_OBJECT, path, "an object")) ||
	    (ret = confjson_check_keys(x, o, path, keys)))
		return ret;
	ml = json_object_get(o, "matchLabels");
	if (!ml)
		return 0;
	confjson_path(p, sizeof(p), "%s.matchLabels", path);
	if ((ret = confjson_want(x, ml, JSON_OBJECT, p, "an object")))
		return ret;
	s->ps_n = json_object_size(ml);
	s->ps_keys = calloc(s->ps_n + 1, sizeof(*s->ps_keys));
	s->ps_vals = calloc(s->ps_n + 1, sizeof(*s->ps_vals));
	if (!s->ps_keys || !s->ps_vals)
		return -ENOMEM;
	json_object_foreach(ml, key, v) {
		confjson_path(q, sizeof(q), "%s.%s", p, key);
		if (!policy_label_valid(key, false))
			return confjson_error(x, p, "bad label key \"%s\"",
					    key);
		if ((ret = confjson_want(x, v, JSON_STRING, q, "a string")))
			return ret;
		if (!policy_label_valid(json_string_value(v), true))
			return confjson_error(x, q,
					    "bad label value \"%s\"", json_string_value(v));
		s->ps_keys[i] = key;
		s->ps_vals[i] = json_string_value(v);
		i++;
	}
	return 0;
}

static int policy_parse_peer(const struct confjson_ctx *x, json_t *o, const char *path,
			     struct policy_peer *pe)
{
	static const char *const keys[] = {"podSelector", "ipBlock", NULL};
	static const char *const ipkeys[] = {"cidr", NULL};
	char p[POLICY_PATH_MAX];
	json_t *ps, *ib, *c;
	int ret;

	if ((ret = confjson_want(x, o, JSON_OBJECT, path, "an object")))
		return ret;
	if (json_object_get(o, "namespaceSelector"))
		return confjson_error(x, path,
				    "namespaceSelector is not supported (slim has no namespaces)");
	if ((ret = confjson_check_keys(x, o, path, keys)))
		return ret;
	ps = json_object_get(o, "podSelector");
	ib = json_object_get(o, "ipBlock");
	if (!ps == !ib)
		return confjson_error(x, path,
				    "a peer needs exactly one of podSelector or ipBlock");
	if (ps) {
		confjson_path(p, sizeof(p), "%s.podSelector", path);
		return policy_parse_selector(x, ps, p, &pe->pe_pods);
	}
	confjson_path(p, sizeof(p), "%s.ipBlock", path);
	if ((ret = confjson_want(x, ib, JSON_OBJECT, p, "an object")))
		return ret;
	if (json_object_get(ib, "except"))
		return confjson_error(x, p,
				    "except is not supported: list the allowed blocks instead");
	if ((ret = confjson_check_keys(x, ib, p, ipkeys)))
		return ret;
	c = json_object_get(ib, "cidr");
	confjson_path(p, sizeof(p), "%s.ipBlock.cidr", path);
	if ((ret = confjson_want(x, c, JSON_STRING, p, "a string")))
		return ret;
	if (cidr_parse(json_string_value(c), &pe->pe_cidr) < 0 ||
	    !strchr(json_string_value(c), '/'))
		return confjson_error(x, p,
				    "bad CIDR \"%s\" (a.b.c.d/len, no host bits)",
				    json_string_value(c));
	pe->pe_is_cidr = true;
	return 0;
}

static int policy_parse_port(const struct confjson_ctx *x, json_t *o, const char *path,
			     struct policy_port *pp)
{
	static const char *const keys[] = {"protocol", "port", "endPort", NULL};
	char p[POLICY_PATH_MAX];
	json_t *proto, *port, *end;
	json_int_t lo, hi;
	int ret;

	if ((ret = confjson_want(x, o, JSON_OBJECT, path, "an object")) ||
	    (ret = confjson_check_keys(x, o, path, keys)))
		return ret;
	proto = json_object_get(o, "protocol");
	pp->pp_proto = IPPROTO_TCP;
	if (proto) {
		const char *s;

		confjson_path(p, sizeof(p), "%s.protocol", path);
		if ((ret = confjson_want(x, proto, JSON_STRING, p, "a string")))
			return ret;
		s = json_string_value(proto);
		if (!strcmp(s, "TCP"))
			pp->pp_proto = IPPROTO_TCP;
		else if (!strcmp(s, "UDP"))
			pp->pp_proto = IPPROTO_UDP;
		else
			return confjson_error(x, p,
					    "unknown protocol \"%s\" (TCP or UDP)", s);
	}
	port = json_object_get(o, "port");
	end = json_object_get(o, "endPort");
	pp->pp_lo = 0;
	pp->pp_hi = 65535;
	if (!port) {
		if (end)
			return confjson_error(x, path,
					    "endPort needs port");
		return 0;
	}
	confjson_path(p, sizeof(p), "%s.port", path);
	if (json_is_string(port))
		return confjson_error(x, p,
				    "named ports are not supported: give a number");
	if ((ret = confjson_want(x, port, JSON_INTEGER, p, "an integer")))
		return ret;
	lo = json_integer_value(port);
	if (lo < 1 || lo > 65535)
		return confjson_error(x, p, "port %lld out of 1-65535",
				    (long long)lo);
	hi = lo;
	if (end) {
		confjson_path(p, sizeof(p), "%s.endPort", path);
		if ((ret = confjson_want(x, end, JSON_INTEGER, p, "an integer")))
			return ret;
		hi = json_integer_value(end);
		if (hi < lo || hi > 65535)
			return confjson_error(x, p,
					    "endPort %lld must be from port (%lld) to 65535",
					    (long long)hi, (long long)lo);
	}
	pp->pp_lo = (uint16_t)lo;
	pp->pp_hi = (uint16_t)hi;
	return 0;
}

static int policy_parse_rule(const struct confjson_ctx *x, json_t *o, const char *path,
			     enum policy_dir dir, struct policy_rule *r)
{
	static const char *const in_keys[] = {"from", "ports", NULL};
	static const char *const out_keys[] = {"to", "ports", NULL};
	const char *peers_key = dir == POLICY_INGRESS ? "from" : "to";
	char p[POLICY_PATH_MAX];
	json_t *peers, *ports, *v;
	size_t i;
	int ret;

	if ((ret = confjson_want(x, o, JSON_OBJECT, path, "an object")) ||
	    (ret = confjson_check_keys(x, o, path, dir == POLICY_INGRESS ? in_keys : out_keys)))
		return ret;
	peers = json_object_get(o, peers_key);
	if (!peers || json_array_size(peers) == 0) {
		/* As in Kubernetes: no (or an empty) peer list matches every peer. */
		r->pr_any_peer = true;
	}
	if (peers) {
		confjson_path(p, sizeof(p), "%s.%s", path, peers_key);
		if ((ret = confjson_want(x, peers, JSON_ARRAY, p, "an array")))
			return ret;
		r->pr_npeers = json_array_size(peers);
		r->pr_peers = calloc(r->pr_npeers + 1, sizeof(*r->pr_peers));
		if (!r->pr_peers)
			return -ENOMEM;
		json_array_foreach(peers, i, v) {
			confjson_path(p, sizeof(p), "%s.%s[%zu]", path, peers_key, i);
			if ((ret = policy_parse_peer(x, v, p, &r->pr_peers[i])))
				return ret;
		}
	}
	ports = json_object_get(o, "ports");
	if (ports) {
		confjson_path(p, sizeof(p), "%s.ports", path);
		if ((ret = confjson_want(x, ports, JSON_ARRAY, p, "an array")))
			return ret;
		r->pr_nports = json_array_size(ports);
		r->pr_ports = calloc(r->pr_nports + 1, sizeof(*r->pr_ports));
		if (!r->pr_ports)
			return -ENOMEM;
		json_array_foreach(ports, i, v) {
			confjson_path(p, sizeof(p), "%s.ports[%zu]", path, i);
			if ((ret = policy_parse_port(x, v, p, &r->pr_ports[i])))
				return ret;
		}
	}
	return 0;
}

static int policy_parse_item(const struct confjson_ctx *x, json_t *o, const char *path,
			     struct policy_item *it)
{
	static const char *const keys[] = {"name",    "podSelector", "policyTypes",
					   "ingress", "egress",	     NULL};
	static const char *const dir_keys[POLICY_NDIRS] = {"ingress", "egress"};
	static const char *const dir_types[POLICY_NDIRS] = {"Ingress", "Egress"};
	char p[POLICY_PATH_MAX];
	json_t *name, *types, *v;
	size_t i;
	int ret;

	if ((ret = confjson_want(x, o, JSON_OBJECT, path, "an object")) ||
	    (ret = confjson_check_keys(x, o, path, keys)))
		return ret;
	name = json_object_get(o, "name");
	confjson_path(p, sizeof(p), "%s.name", path);
	if ((ret = confjson_want(x, name, JSON_STRING, p, "a string")))
		return ret;
	if (!policy_label_valid(json_string_value(name), false) ||
	    strlen(json_string_value(name)) >= NAME_MAX_LEN)
		return confjson_error(x, p,
				    "bad name \"%s\" (1-%d of A-Z a-z 0-9 . _ - /)",
				    json_string_value(name), NAME_MAX_LEN - 1);
	it->pi_name = json_string_value(name);
	confjson_path(p, sizeof(p), "%s.podSelector", path);
	if (!json_object_get(o, "podSelector"))
		return confjson_error(x, p,
				    "missing (use {} to select every pod)");
	if ((ret = policy_parse_selector(x, json_object_get(o, "podSelector"), p, &it->pi_pods)))
		return ret;

	types = json_object_get(o, "policyTypes");
	if (types) {
		confjson_path(p, sizeof(p), "%s.policyTypes", path);
		if ((ret = confjson_want(x, types, JSON_ARRAY, p, "an array")))
			return ret;
		json_array_foreach(types, i, v) {
			const char *s = json_string_value(v);

			confjson_path(p, sizeof(p), "%s.policyTypes[%zu]", path, i);
			if (s && !strcmp(s, "Ingress"))
				it->pi_types[POLICY_INGRESS] = true;
			else if (s && !strcmp(s, "Egress"))
				it->pi_types[POLICY_EGRESS] = true;
			else
				return confjson_error(x, p,
						    "expected \"Ingress\" or \"Egress\"");
		}
	} else {
		/* Kubernetes' default: Ingress always, Egress when there are egress rules. */
		it->pi_types[POLICY_INGRESS] = true;
		it->pi_types[POLICY_EGRESS] = json_object_get(o, "egress") != NULL;
	}
	for (int d = 0; d < POLICY_NDIRS; d++) {
		json_t *rules = json_object_get(o, dir_keys[d]);

		if (!rules)
			continue;
		confjson_path(p, sizeof(p), "%s.%s", path, dir_keys[d]);
		if ((ret = confjson_want(x, rules, JSON_ARRAY, p, "an array")))
			return ret;
		if (!it->pi_types[d])
			return confjson_error(x, p,
					    "rules given but policyTypes lacks \"%s\"",
					    dir_types[d]);
		it->pi_nrules[d] = json_array_size(rules);
		it->pi_rules[d] = calloc(it->pi_nrules[d] + 1, sizeof(*it->pi_rules[d]));
		if (!it->pi_rules[d])
			return -ENOMEM;
		json_array_foreach(rules, i, v) {
			confjson_path(p, sizeof(p), "%s.%s[%zu]", path, dir_keys[d], i);
			if ((ret = policy_parse_rule(x, v, p, (enum policy_dir)d,
						     &it->pi_rules[d][i])))
				return ret;
		}
	}
	return 0;
}

static void policy_selector_free(struct policy_selector *s)
{
	free(s->ps_keys);
	free(s->ps_vals);
}

void policy_doc_free(struct policy_doc *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->pd_nitems; i++) {
		struct policy_item *it = &d->pd_items[i];

		policy_selector_free(&it->pi_pods);
		for (int dir = 0; dir < POLICY_NDIRS; dir++) {
			for (size_t r = 0; r < it->pi_nrules[dir]; r++) {
				struct policy_rule *ru = &it->pi_rules[dir][r];

				for (size_t k = 0; k < ru->pr_npeers; k++)
					policy_selector_free(&ru->pr_peers[k].pe_pods);
				free(ru->pr_peers);
				free(ru->pr_ports);
			}
			free(it->pi_rules[dir]);
		}
	}
	free(d->pd_items);
	json_decref(d->pd_json);
	free(d->pd_origin);
	free(d);
}

static struct policy_item *policy_item_find(const struct htab *names, const char *name)
{
	for (struct hnode *h = htab_first(names, htab_hash_str(name)); h; h = htab_next(h)) {
		struct policy_item *it = container_of(h, struct policy_item, pi_by_name);

		if (!strcmp(it->pi_name, name))
			return it;
	}
	return NULL;
}

int policy_parse(const char *text, size_t len, const char *origin, struct policy_doc **out,
		 char *err, size_t errlen)
{
	static const char *const keys[] = {"policies", NULL};
	struct confjson_ctx x = {.origin = origin, .err = err, .errlen = errlen};
	struct htab names = {0};
	struct policy_doc *d;
	json_t *root, *items, *v;
	size_t i;
	int ret;

	*out = NULL;
	root = confjson_load(&x, text, len);
	if (!root)
		return -EINVAL;
	d = calloc(1, sizeof(*d));
	if (!d) {
		json_decref(root);
		return -ENOMEM;
	}
	d->pd_json = root;
	d->pd_origin = strdup(origin);
	if (!d->pd_origin) {
		ret = -ENOMEM;
		goto fail;
	}
	if ((ret = confjson_want(&x, root, JSON_OBJECT, "", "an object")) ||
	    (ret = confjson_check_keys(&x, root, "", keys)))
		goto fail;
	items = json_object_get(root, "policies");
	if ((ret = confjson_want(&x, items, JSON_ARRAY, "policies", "an array")))
		goto fail;
	d->pd_nitems = json_array_size(items);
	d->pd_items = calloc(d->pd_nitems + 1, sizeof(*d->pd_items));
	if (!d->pd_items) {
		ret = -ENOMEM;
		goto fail;
	}
	/* Names seen so far, hashed: a document of n policies is checked in O(n), not O(n^2). */
	if (htab_init(&names, d->pd_nitems)) {
		ret = -ENOMEM;
		goto fail;
	}
	json_array_foreach(items, i, v) {
		struct policy_item *it = &d->pd_items[i];
		char p[POLICY_PATH_MAX];
		struct policy_item *other;

		confjson_path(p, sizeof(p), "policies[%zu]", i);
		if ((ret = policy_parse_item(&x, v, p, it)))
			goto fail;
		other = policy_item_find(&names, it->pi_name);
		if (other) {
			confjson_path(p, sizeof(p), "policies[%zu].name", i);
			ret = confjson_error(&x, p,
					   "duplicate name \"%s\" (also policies[%td])",
					   it->pi_name, other - d->pd_items);
			goto fail;
		}
		htab_insert(&names, &it->pi_by_name, htab_hash_str(it->pi_name));
		d->pd_nrules += it->pi_nrules[POLICY_INGRESS] + it->pi_nrules[POLICY_EGRESS];
	}
	htab_free(&names);
	*out = d;
	return 0;
fail:
	if (ret == -ENOMEM)
		snprintf(err, errlen, "%s: out of memory", origin);
	htab_free(&names);
	policy_doc_free(d);
	return ret;
}

int policy_load(const char *path, struct policy_doc **out, char *err, size_t errlen)
{
	struct stat st;
	char *buf;
	ssize_t n;
	size_t off = 0;
	int fd, ret;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return ret;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > POLICY_FILE_MAX) {
		snprintf(err, errlen, "%s: not a regular file of at most %d bytes", path,
			 POLICY_FILE_MAX);
		close(fd);
		return -EINVAL;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		snprintf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	while (off < (size_t)st.st_size && (n = read(fd, buf + off, (size_t)st.st_size - off)) > 0)
		off += (size_t)n;
	close(fd);
	ret = policy_parse(buf, off, path, out, err, errlen);
	free(buf);
	return ret;
}

size_t policy_doc_rules(const struct policy_doc *d)
{
	return d ? d->pd_nrules : 0;
}

size_t policy_doc_count(const struct policy_doc *d)
{
	return d ? d->pd_nitems : 0;
}

/* ---- compiling ---- */

static bool policy_selects(const struct policy_selector *s, const json_t *labels)
{
	for (size_t i = 0; i < s->ps_n; i++) {
		const char *v = json_string_value(json_object_get(labels, s->ps_keys[i]));

		if (!v || strcmp(v, s->ps_vals[i]))
			return false;
	}
	return true;
}

static uint64_t policy_entry_hash(uint32_t local, enum policy_dir dir, uint32_t net, uint8_t len)
{
	return htab_hash_u64(((uint64_t)local << 32 | net) ^
			     htab_hash_u64((uint64_t)dir << 8 | len));
}

static struct policy_entry *policy_entry_find(uint32_t local, enum policy_dir dir, uint32_t net,
					      uint8_t len)
{
	for (struct hnode *h = htab_first(&policy_entries, policy_entry_hash(local, dir, net, len));
	     h; h = htab_next(h)) {
		struct policy_entry *e = container_of(h, struct policy_entry, pn_node);

		if (e->pn_local == local && e->pn_net == net && e->pn_dir == dir &&
		    e->pn_len == len)
			return e;
	}
	return NULL;
}

static struct policy_state *policy_state_find(uint32_t ip)
{
	for (struct hnode *h = htab_first(&policy_states, htab_hash_u64(ip)); h; h = htab_next(h)) {
		struct policy_state *st = container_of(h, struct policy_state, st_node);

		if (st->st_ip == ip)
			return st;
	}
	return NULL;
}

static void policy_compiled_clear(void)
{
	struct hnode *h;
	size_t b;

	while ((b = 0, h = htab_iter(&policy_entries, &b, NULL))) {
		struct policy_entry *e = container_of(h, struct policy_entry, pn_node);

		htab_remove(&policy_entries, h);
		free(e->pn_ports);
		free(e);
	}
	while ((b = 0, h = htab_iter(&policy_states, &b, NULL))) {
		htab_remove(&policy_states, h);
		free(container_of(h, struct policy_state, st_node));
	}
}

static int policy_allow(struct policy_state *st, enum policy_dir dir, uint32_t net, uint8_t len,
			const struct policy_rule *r)
{
	struct policy_entry *e = policy_entry_find(st->st_ip, dir, net, len);

	if (!e) {
		e = calloc(1, sizeof(*e));
		if (!e)
			return -ENOMEM;
		e->pn_local = st->st_ip;
		e->pn_dir = (uint8_t)dir;
		e->pn_net = net;
		e->pn_len = len;
		htab_insert(&policy_entries, &e->pn_node,
			    policy_entry_hash(st->st_ip, dir, net, len));
		st->st_lens[dir] |= 1ull << len;
	}
	if (e->pn_all_ports)
		return 0;
	if (r->pr_nports == 0) {
		e->pn_all_ports = true;
		free(e->pn_ports);
		e->pn_ports = NULL;
		e->pn_nports = e->pn_cap = 0;
		return 0;
	}
	if (e->pn_nports + r->pr_nports > e->pn_cap) {
		size_t cap = (e->pn_nports + r->pr_nports) * 2;
		struct policy_port *p = realloc(e->pn_ports, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		e->pn_ports = p;
		e->pn_cap = cap;
	}
	memcpy(e->pn_ports + e->pn_nports, r->pr_ports, r->pr_nports * sizeof(*r->pr_ports));
	e->pn_nports += r->pr_nports;
	return 0;
}

/*
 * The directory's pods by label, built for one compile: a selector's candidates are the pods
 * carrying its first label (checked against the others), so compiling costs what the selectors
 * match, not (policies + rules) x pods.
 */
struct policy_label {
	struct hnode pl_node;
	const char *pl_key, *pl_val; /* borrowed from the directory's labels */
	size_t pl_n, pl_cap;
	const struct dir_pod **pl_pods;
};

struct policy_index {
	struct htab px_labels;
	size_t px_nall;
	const struct dir_pod **px_all; /* every pod: the candidates of an empty selector */
};

static uint64_t policy_label_hash(const char *key, const char *val)
{
	return htab_hash_u64(htab_hash_str(key) ^ (htab_hash_str(val) * 0x9e3779b97f4a7c15ull));
}

static struct policy_label *policy_label_find(const struct policy_index *ix, const char *key,
					      const char *val)
{
	for (struct hnode *h = htab_first(&ix->px_labels, policy_label_hash(key, val)); h;
	     h = htab_next(h)) {
		struct policy_label *l = container_of(h, struct policy_label, pl_node);

		if (!strcmp(l->pl_key, key) && !strcmp(l->pl_val, val))
			return l;
	}
	return NULL;
}

static void policy_index_free(struct policy_index *ix)
{
	struct hnode *h;
	size_t b;

	while ((b = 0, h = htab_iter(&ix->px_labels, &b, NULL))) {
		struct policy_label *l = container_of(h, struct policy_label, pl_node);

		htab_remove(&ix->px_labels, h);
		free(l->pl_pods);
		free(l);
	}
	htab_free(&ix->px_labels);
	free(ix->px_all);
	ix->px_all = NULL;
}

static int policy_index_add(struct policy_index *ix, const char *key, const char *val,
			    const struct dir_pod *d)
{
	struct policy_label *l = policy_label_find(ix, key, val);

	if (!l) {
		l = calloc(1, sizeof(*l));
		if (!l)
			return -ENOMEM;
		l->pl_key = key;
		l->pl_val = val;
		htab_insert(&ix->px_labels, &l->pl_node, policy_label_hash(key, val));
	}
	if (l->pl_n == l->pl_cap) {
		size_t cap = l->pl_cap ? l->pl_cap * 2 : 4;
		const struct dir_pod **v = realloc(l->pl_pods, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		l->pl_pods = v;
		l->pl_cap = cap;
	}
	l->pl_pods[l->pl_n++] = d;
	return 0;
}

static int policy_index_build(struct policy_index *ix)
{
	const struct dir_pod *d = NULL;
	size_t b = 0, n = directory_count();

	memset(ix, 0, sizeof(*ix));
	if (htab_init(&ix->px_labels, n * 2) ||
	    !(ix->px_all = calloc(n ? n : 1, sizeof(*ix->px_all))))
		goto nomem;
	while ((d = directory_iter(&b, d)) && ix->px_nall < n) {
		const char *key;
		json_t *v;

		ix->px_all[ix->px_nall++] = d;
		json_object_foreach(d->dp_labels, key, v)
			if (json_is_string(v) && policy_index_add(ix, key, json_string_value(v), d))
				goto nomem;
	}
	return 0;
nomem:
	policy_index_free(ix);
	return -ENOMEM;
}

/* The pods that may match s (each still to be checked with policy_selects). */
static const struct dir_pod *const *policy_candidates(const struct policy_index *ix,
						      const struct policy_selector *s, size_t *n)
{
	const struct policy_label *l;

	if (s->ps_n == 0) {
		*n = ix->px_nall;
		return ix->px_all;
	}
	l = policy_label_find(ix, s->ps_keys[0], s->ps_vals[0]);
	*n = l ? l->pl_n : 0;
	return l ? l->pl_pods : NULL;
}

static int policy_compile_rule(const struct policy_index *ix, struct policy_state *st,
			       enum policy_dir dir, const struct policy_rule *r)
{
	int ret = 0;

	if (r->pr_any_peer)
		return policy_allow(st, dir, 0, 0, r);
	for (size_t k = 0; k < r->pr_npeers && !ret; k++) {
		const struct policy_peer *pe = &r->pr_peers[k];
		const struct dir_pod *const *pods;
		size_t n;

		if (pe->pe_is_cidr) {
			ret = policy_allow(st, dir, pe->pe_cidr.net, pe->pe_cidr.len, r);
			continue;
		}
		/* A pod selector is every pod of the cluster that matches it now. */
		pods = policy_candidates(ix, &pe->pe_pods, &n);
		for (size_t i = 0; i < n && !ret; i++)
			if (policy_selects(&pe->pe_pods, pods[i]->dp_labels))
				ret = policy_allow(st, dir, pods[i]->dp_ip, 32, r);
	}
	return ret;
}

/* The compiled state of pod ip, created on first use. */
static struct policy_state *policy_state_get(uint32_t ip)
{
	struct policy_state *st = policy_state_find(ip);

	if (st)
		return st;
	st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	st->st_ip = ip;
	htab_insert(&policy_states, &st->st_node, htab_hash_u64(ip));
	return st;
}

/*
 * Rebuilds the compiled form for every pod of the directory (remote ones too: a client's router
 * checks the server's ingress itself, so a cached resolution is never reused by a pod the
 * server would refuse). Costs O(policies + rules + what the selectors match), through a label
 * index of the directory.
 */
static int policy_compile(void)
{
	struct policy_index ix;
	int ret = 0;

	if (!policy_tables_ready) {
		if (htab_init(&policy_entries, 1024) || htab_init(&policy_states, 64))
			return -ENOMEM;
		policy_tables_ready = true;
	}
	policy_compiled_clear();
	policy_compiled_gen = directory_generation();
	if (!policy_cur)
		return 0;
	ret = policy_index_build(&ix);
	for (size_t i = 0; i < policy_cur->pd_nitems && !ret; i++) {
		const struct policy_item *it = &policy_cur->pd_items[i];
		const struct dir_pod *const *pods;
		size_t n;

		pods = policy_candidates(&ix, &it->pi_pods, &n);
		for (size_t k = 0; k < n && !ret; k++) {
			struct policy_state *st;

			if (!policy_selects(&it->pi_pods, pods[k]->dp_labels))
				continue;
			st = policy_state_get(pods[k]->dp_ip);
			if (!st) {
				ret = -ENOMEM;
				break;
			}
			for (int dir = 0; dir < POLICY_NDIRS && !ret; dir++) {
				if (!it->pi_types[dir])
					continue;
				st->st_isolated[dir] = true;
				for (size_t r = 0; r < it->pi_nrules[dir] && !ret; r++)
					ret = policy_compile_rule(&ix, st, (enum policy_dir)dir,
								  &it->pi_rules[dir][r]);
			}
		}
	}
	policy_index_free(&ix); /* a failed build left it empty */
	if (ret < 0) {
		/* Never enforce half a policy: fail closed for every selected pod. */
		log_warnx("%s: out of memory compiling %s: denying selected pods", __func__,
			  policy_cur->pd_origin);
		policy_compiled_gen = 0;
	}
	return ret;
}

static void policy_ensure_compiled(void)
{
	if (policy_compiled_gen != directory_generation())
		policy_compile();
}

void policy_install(struct policy_doc *d)
{
	policy_doc_free(policy_cur);
	policy_cur = d;
	policy_compiled_gen = 0;
	policy_ensure_compiled();
}

const struct policy_doc *policy_current(void)
{
	return policy_cur;
}

static bool policy_ports_match(const struct policy_entry *e, uint16_t port, uint8_t proto)
{
	if (e->pn_all_ports)
		return true;
	for (size_t i = 0; i < e->pn_nports; i++) {
		const struct policy_port *p = &e->pn_ports[i];

		if ((!p->pp_proto || p->pp_proto == proto) && port >= p->pp_lo && port <= p->pp_hi)
			return true;
	}
	return false;
}

bool policy_allows(uint32_t local_ip, enum policy_dir dir, uint32_t peer_ip, uint16_t port,
		   uint8_t proto)
{
	struct policy_state *st;
	uint16_t hport = ntohs(port);
	uint64_t lens;

	if (!policy_cur)
		return true;
	policy_ensure_compiled();
	if (policy_compiled_gen == 0) {
		/* The compile failed: deny what a policy selects (we cannot tell which). */
		return false;
	}
	st = policy_state_find(local_ip);
	if (!st || !st->st_isolated[dir])
		return true;
	lens = st->st_lens[dir];
	while (lens) {
		uint8_t len = (uint8_t)(63 - __builtin_clzll(lens));
		uint32_t mask = len ? htonl(~0u << (32 - len)) : 0;
		struct policy_entry *e = policy_entry_find(local_ip, dir, peer_ip & mask, len);

		if (e && policy_ports_match(e, hport, proto))
			return true;
		lens &= ~(1ull << len);
	}
	return false;
}

bool policy_allows_conn(uint32_t src_ip, uint32_t dst_ip, uint16_t dst_port)
{
	const struct dir_pod *s = directory_find(src_ip), *d = directory_find(dst_ip);
	bool ok = true;

	policy_nchecks++;
	/*
	 * Every router judges with the same policy and directory: the client's egress and the
	 * server's ingress. A pod no router announced is unknown here; its own router (or the
	 * nftables rules on its host, for the overlay) decides for it.
	 */
	if (s)
		ok = policy_allows(src_ip, POLICY_EGRESS, dst_ip, dst_port, IPPROTO_TCP);
	if (ok && d)
		ok = policy_allows(dst_ip, POLICY_INGRESS, src_ip, dst_port, IPPROTO_TCP);
	if (!ok)
		policy_ndenied++;
	return ok;
}

/* Calls fn for every compiled allowance (nft.c builds its rule set from them). */
void policy_foreach_allowance(policy_allow_fn fn, void *arg)
{
	struct hnode *h = NULL;
	size_t b = 0;

	if (!policy_cur)
		return;
	policy_ensure_compiled();
	if (!policy_tables_ready)
		return;
	while ((h = htab_iter(&policy_entries, &b, h))) {
		const struct policy_entry *e = container_of(h, struct policy_entry, pn_node);
		struct policy_allowance a = {
			.pa_local = e->pn_local,
			.pa_dir = (enum policy_dir)e->pn_dir,
			.pa_net = e->pn_net,
			.pa_len = e->pn_len,
			.pa_all_ports = e->pn_all_ports,
		};

		for (size_t i = 0; i < (e->pn_all_ports ? 1 : e->pn_nports); i++) {
			if (!e->pn_all_ports) {
				a.pa_proto = e->pn_ports[i].pp_proto;
				a.pa_lo = e->pn_ports[i].pp_lo;
				a.pa_hi = e->pn_ports[i].pp_hi;
			}
			fn(&a, arg);
		}
	}
}

/* Calls fn(ip, dir) for every local pod isolated in dir. */
void policy_foreach_isolated(void (*fn)(uint32_t ip, enum policy_dir dir, void *arg), void *arg)
{
	struct hnode *h = NULL;
	size_t b = 0;

	if (!policy_cur)
		return;
	policy_ensure_compiled();
	if (!policy_tables_ready)
		return;
	while ((h = htab_iter(&policy_states, &b, h))) {
		const struct policy_state *st = container_of(h, struct policy_state, st_node);

		for (int dir = 0; dir < POLICY_NDIRS; dir++)
			if (st->st_isolated[dir])
				fn(st->st_ip, (enum policy_dir)dir, arg);
	}
}

json_t *policy_json(void)
{
	json_t *doc;

	policy_ensure_compiled();
	doc = json_pack("{s:s?, s:I, s:I, s:I, s:I, s:I, s:I}", "origin",
			policy_cur ? policy_cur->pd_origin : NULL, "policies",
			(json_int_t)policy_doc_count(policy_cur), "rules",
			(json_int_t)policy_doc_rules(policy_cur), "selected_pods",
			(json_int_t)(policy_tables_ready ? policy_states.ht_count : 0), "entries",
			(json_int_t)(policy_tables_ready ? policy_entries.ht_count : 0), "checks",
			(json_int_t)policy_nchecks, "denied", (json_int_t)policy_ndenied);
	if (doc)
		json_object_set_new(doc, "document",
				    policy_cur ? json_incref(policy_cur->pd_json)
					       : json_pack("{s:[]}", "policies"));
	return doc;
}

void policy_free(void)
{
	policy_doc_free(policy_cur);
	policy_cur = NULL;
	if (policy_tables_ready) {
		policy_compiled_clear();
		htab_free(&policy_entries);
		htab_free(&policy_states);
		policy_tables_ready = false;
	}
	policy_compiled_gen = 0;
}
