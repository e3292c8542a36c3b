// SPDX-License-Identifier: MIT
/* The cluster description: parsing and validating the JSON file, and node lookups. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "router.h"

#define CLUSTER_DEFAULT_SERVICES "10.96.0.0/16" /* as kubeadm's default */

/* Fills err with "ORIGIN: PATH: problem" and returns -EINVAL. */
static int __attribute__((format(printf, 5, 6)))
cluster_error(char *err, size_t errlen, const char *origin, const char *path, const char *fmt, ...)
{
	va_list ap;
	int ret;

	va_start(ap, fmt);
	ret = confjson_verror(err, errlen, origin, path, fmt, ap);
	va_end(ap);
	return ret;
}

/* Every key of obj must be one of allowed (NULL-terminated). */
static int cluster_check_keys(const json_t *obj, const char *const *allowed, const char *origin,
			      const char *path, char *err, size_t errlen)
{
	const char *key = confjson_unknown_key(obj, allowed);
	char p[128];

	if (!key)
		return 0;
	snprintf(p, sizeof(p), "%s%s%s", path, *path ? "." : "", key);
	return cluster_error(err, errlen, origin, p, "unknown key");
}

/* A required string member. */
static int cluster_get_string(const json_t *obj, const char *key, const char *origin,
			      const char *path, const char **out, char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, key);
	char p[128];

	snprintf(p, sizeof(p), "%s%s%s", path, *path ? "." : "", key);
	if (!v)
		return cluster_error(err, errlen, origin, p, "missing");
	if (!json_is_string(v))
		return cluster_error(err, errlen, origin, p,
				     "wrong type: expected a string, got %s", confjson_type_name(v));
	*out = json_string_value(v);
	return 0;
}

static bool cluster_name_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= NAME_MAX_LEN)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.'))
			return false;
	return true;
}

static uint64_t cluster_cidr_hash(uint32_t net, uint8_t len)
{
	return htab_hash_u64((uint64_t)net << 8 | len);
}

static bool cluster_overlaps(const struct cidr *a, const struct cidr *b)
{
	uint32_t m = a->len < b->len ? a->mask : b->mask;

	return (a->net & m) == (b->net & m);
}

static int cluster_parse_node(const json_t *jn, size_t i, const struct cluster *c,
			      const char *origin, char *err, size_t errlen)
{
	static const char *const keys[] = {"name", "fabric_ip", "pod_cidr", NULL};
	struct cluster_node *n = &c->cl_nodes[i];
	const char *name, *ip, *cidr;
	char path[64], p[96];
	struct in_addr a;
	int ret;

	snprintf(path, sizeof(path), "nodes[%zu]", i);
	if (!json_is_object(jn))
		return cluster_error(err, errlen, origin, path,
				     "wrong type: expected an object, got %s",
				     confjson_type_name(jn));
	ret = cluster_check_keys(jn, keys, origin, path, err, errlen);
	if (!ret)
		ret = cluster_get_string(jn, "name", origin, path, &name, err, errlen);
	if (!ret)
		ret = cluster_get_string(jn, "fabric_ip", origin, path, &ip, err, errlen);
	if (!ret)
		ret = cluster_get_string(jn, "pod_cidr", origin, path, &cidr, err, errlen);
	if (ret)
		return ret;

	snprintf(p, sizeof(p), "%s.name", path);
	if (!cluster_name_valid(name))
		return cluster_error(err, errlen, origin, p,
				     "bad name \"%s\" (1-%d of A-Z a-z 0-9 . _ -)", name,
				     NAME_MAX_LEN - 1);
	snprintf(n->cn_name, sizeof(n->cn_name), "%s", name);

	snprintf(p, sizeof(p), "%s.fabric_ip", path);
	if (inet_pton(AF_INET, ip, &a) != 1 || a.s_addr == 0 || a.s_addr == INADDR_BROADCAST)
		return cluster_error(err, errlen, origin, p, "bad IPv4 address \"%s\"", ip);
	n->cn_fabric_ip = a.s_addr;
	if (cidr_contains(&c->cl_overlay, a.s_addr))
		return cluster_error(err, errlen, origin, p, "%s is inside overlay_cidr", ip);

	snprintf(p, sizeof(p), "%s.pod_cidr", path);
	if (cidr_parse(cidr, &n->cn_pod_cidr) < 0 || !strchr(cidr, '/'))
		return cluster_error(err, errlen, origin, p, "bad CIDR \"%s\"", cidr);
	if (n->cn_pod_cidr.len < c->cl_overlay.len ||
	    !cidr_contains(&c->cl_overlay, n->cn_pod_cidr.net))
		return cluster_error(err, errlen, origin, p, "%s is outside overlay_cidr", cidr);

	for (size_t j = 0; j < i; j++) {
		const struct cluster_node *o = &c->cl_nodes[j];

		if (!strcmp(o->cn_name, n->cn_name)) {
			snprintf(p, sizeof(p), "%s.name", path);
			return cluster_error(err, errlen, origin, p,
					     "duplicate name \"%s\" (also nodes[%zu])", name, j);
		}
		if (o->cn_fabric_ip == n->cn_fabric_ip) {
			snprintf(p, sizeof(p), "%s.fabric_ip", path);
			return cluster_error(err, errlen, origin, p,
					     "duplicate IP %s (also nodes[%zu])", ip, j);
		}
		if (cluster_overlaps(&o->cn_pod_cidr, &n->cn_pod_cidr))
			return cluster_error(err, errlen, origin, p,
					     "%s overlaps nodes[%zu].pod_cidr", cidr, j);
	}
	return 0;
}

static int cluster_index(struct cluster *c)
{
	int ret = htab_init(&c->cl_by_cidr, c->cl_nnodes);

	if (ret < 0)
		return ret;
	for (size_t i = 0; i < c->cl_nnodes; i++) {
		struct cluster_node *n = &c->cl_nodes[i];
		uint8_t len = n->cn_pod_cidr.len;
		unsigned k;

		htab_insert(&c->cl_by_cidr, &n->cn_by_cidr,
			    cluster_cidr_hash(n->cn_pod_cidr.net, len));
		for (k = 0; k < c->cl_nlens && c->cl_lens[k] != len; k++)
			;
		if (k == c->cl_nlens) {
			/* Keep the lengths sorted longest first. */
			k = c->cl_nlens++;
			while (k > 0 && c->cl_lens[k - 1] < len) {
				c->cl_lens[k] = c->cl_lens[k - 1];
				k--;
			}
			c->cl_lens[k] = len;
		}
	}
	return 0;
}

static int cluster_from_json(const json_t *root, const char *origin, struct cluster **out,
			     char *err, size_t errlen)
{
	static const char *const keys[] = {"overlay_cidr", "service_cidr", "peer_port", "nodes",
					   "secret_file", NULL};
	struct cluster *c;
	const char *overlay, *services = CLUSTER_DEFAULT_SERVICES, *secret = NULL;
	json_t *port, *nodes;
	int ret;

	if (!json_is_object(root))
		return cluster_error(err, errlen, origin, "",
				     "the top level must be an object, got %s",
				     confjson_type_name(root));
	ret = cluster_check_keys(root, keys, origin, "", err, errlen);
	if (!ret)
		ret = cluster_get_string(root, "overlay_cidr", origin, "", &overlay, err, errlen);
	if (ret)
		return ret;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->cl_origin = strdup(origin);
	if (!c->cl_origin) {
		ret = -ENOMEM;
		goto fail;
	}
	if (cidr_parse(overlay, &c->cl_overlay) < 0 || !strchr(overlay, '/')) {
		ret = cluster_error(err, errlen, origin, "overlay_cidr", "bad CIDR \"%s\"",
				    overlay);
		goto fail;
	}

	/* ClusterIPs (service.c): their own range, disjoint from every pod address. */
	if (json_object_get(root, "service_cidr")) {
		ret = cluster_get_string(root, "service_cidr", origin, "", &services, err, errlen);
		if (ret)
			goto fail;
	}
	if (cidr_parse(services, &c->cl_services) < 0 || !strchr(services, '/')) {
		ret = cluster_error(err, errlen, origin, "service_cidr", "bad CIDR \"%s\"",
				    services);
		goto fail;
	}
	if (cidr_contains(&c->cl_overlay, c->cl_services.net) ||
	    cidr_contains(&c->cl_services, c->cl_overlay.net)) {
		ret = cluster_error(err, errlen, origin, "service_cidr",
				    "%s overlaps overlay_cidr %s", services, overlay);
		goto fail;
	}

	c->cl_peer_port = SLIM_DEFAULT_PEER_PORT;
	port = json_object_get(root, "peer_port");
	if (port) {
		if (!json_is_integer(port)) {
			ret = cluster_error(err, errlen, origin, "peer_port",
					    "wrong type: expected an integer, got %s",
					    confjson_type_name(port));
			goto fail;
		}
		if (json_integer_value(port) < 1 || json_integer_value(port) > 65535) {
			ret = cluster_error(err, errlen, origin, "peer_port",
					    "%lld is not a port (1-65535)",
					    (long long)json_integer_value(port));
			goto fail;
		}
		c->cl_peer_port = (uint16_t)json_integer_value(port);
	}

	/* The file the routers' shared secret is in (auth.c reads it); the secret is not here, so
	 * the cluster description can be shown and copied around. */
	if (json_object_get(root, "secret_file")) {
		ret = cluster_get_string(root, "secret_file", origin, "", &secret, err, errlen);
		if (ret)
			goto fail;
		if (secret[0] != '/') {
			ret = cluster_error(err, errlen, origin, "secret_file",
					    "\"%s\" is not an absolute path", secret);
			goto fail;
		}
		c->cl_secret_file = strdup(secret);
		if (!c->cl_secret_file) {
			ret = -ENOMEM;
			goto fail;
		}
	}

	nodes = json_object_get(root, "nodes");
	if (!nodes) {
		ret = cluster_error(err, errlen, origin, "nodes", "missing");
		goto fail;
	}
	if (!json_is_array(nodes)) {
		ret = cluster_error(err, errlen, origin, "nodes",
				    "wrong type: expected an array, got %s",
				    confjson_type_name(nodes));
		goto fail;
	}
	if (json_array_size(nodes) == 0) {
		ret = cluster_error(err, errlen, origin, "nodes", "empty (at least one node)");
		goto fail;
	}
	c->cl_nnodes = json_array_size(nodes);
	c->cl_nodes = calloc(c->cl_nnodes, sizeof(*c->cl_nodes));
	if (!c->cl_nodes) {
		ret = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < c->cl_nnodes; i++) {
		ret = cluster_parse_node(json_array_get(nodes, i), i, c, origin, err, errlen);
		if (ret)
			goto fail;
	}
	ret = cluster_index(c);
	if (ret)
		goto fail;
	*out = c;
	return 0;
fail:
	if (ret == -ENOMEM)
		snprintf(err, errlen, "%s: out of memory", origin);
	cluster_free(c);
	return ret;
}

int cluster_parse(const char *text, size_t len, const char *origin, struct cluster **out, char *err,
		  size_t errlen)
{
	json_error_t jerr;
	json_t *root;
	int ret;

	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		snprintf(err, errlen, "%s:%d:%d: %s", origin, jerr.line, jerr.column, jerr.text);
		return -EINVAL;
	}
	ret = cluster_from_json(root, origin, out, err, errlen);
	json_decref(root);
	return ret;
}

int cluster_load(const char *path, struct cluster **out, char *err, size_t errlen)
{
	/* A cluster file is small; anything bigger than this is not one. */
	enum { CLUSTER_FILE_MAX = 4 << 20 };
	char *buf = NULL;
	size_t n = 0;
	FILE *f;
	int ret;

	f = fopen(path, "re");
	if (!f) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return ret;
	}
	buf = malloc(CLUSTER_FILE_MAX + 1);
	if (!buf) {
		fclose(f);
		snprintf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	n = fread(buf, 1, CLUSTER_FILE_MAX + 1, f);
	if (ferror(f)) {
		ret = -EIO;
		snprintf(err, errlen, "%s: read error", path);
	} else if (n > CLUSTER_FILE_MAX) {
		ret = -EFBIG;
		snprintf(err, errlen, "%s: larger than %d bytes", path, CLUSTER_FILE_MAX);
	} else {
		ret = cluster_parse(buf, n, path, out, err, errlen);
	}
	fclose(f);
	free(buf);
	return ret;
}

int cluster_default(struct cluster **out)
{
	static const char lab[] =
		"{\"overlay_cidr\":\"10.244.0.0/16\",\"peer_port\":7471,\"nodes\":["
		"{\"name\":\"h1\",\"fabric_ip\":\"198.18.0.1\",\"pod_cidr\":\"10.244.1.0/24\"},"
		"{\"name\":\"h2\",\"fabric_ip\":\"198.18.0.2\",\"pod_cidr\":\"10.244.2.0/24\"}]}";
	char err[256];

	return cluster_parse(lab, sizeof(lab) - 1, "(built-in)", out, err, sizeof(err));
}

void cluster_free(struct cluster *c)
{
	if (!c)
		return;
	if (c->cl_by_cidr.ht_buckets)
		htab_free(&c->cl_by_cidr);
	free(c->cl_nodes);
	free(c->cl_origin);
	free(c->cl_secret_file);
	free(c);
}

const struct cluster_node *cluster_owner(const struct cluster *c, uint32_t ip)
{
	for (unsigned k = 0; k < c->cl_nlens; k++) {
		uint8_t len = c->cl_lens[k];
		uint32_t mask = len ? htonl(~0u << (32 - len)) : 0;
		uint32_t net = ip & mask;

		for (struct hnode *h = htab_first(&c->cl_by_cidr, cluster_cidr_hash(net, len)); h;
		     h = htab_next(h)) {
			const struct cluster_node *n =
				container_of(h, struct cluster_node, cn_by_cidr);

			if (n->cn_pod_cidr.net == net && n->cn_pod_cidr.len == len)
				return n;
		}
	}
	return NULL;
}

const struct cluster_node *cluster_node_by_name(const struct cluster *c, const char *name)
{
	/* Nodes are few and these lookups are rare (start, reload, peer connect). */
	for (size_t i = 0; i < c->cl_nnodes; i++)
		if (!strcmp(c->cl_nodes[i].cn_name, name))
			return &c->cl_nodes[i];
	return NULL;
}

const struct cluster_node *cluster_node_by_ip(const struct cluster *c, uint32_t fabric_ip)
{
	for (size_t i = 0; i < c->cl_nnodes; i++)
		if (c->cl_nodes[i].cn_fabric_ip == fabric_ip)
			return &c->cl_nodes[i];
	return NULL;
}
