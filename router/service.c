// SPDX-License-Identifier: MIT
/*
 * Services (ClusterIP): a virtual IP and ports in front of a set of backend pods, chosen at
 * connect time. The document names the backends by a label selector (pods anywhere in the
 * cluster, from the pod directory) or lists them; each service gets a Maglev table (maglev.c) of
 * its backends, which the kernel reads in the connect program (bpf/slim_govern.bpf.c): a
 * shimmed app's connect to VIP:port becomes a connect to one backend, with no router on the way
 * and nothing per packet, and the cost per connect does not grow with the number of services.
 * Everything else (apps without the shim, fallback) goes through the same services as nftables
 * rules (svcnft.c).
 *
 * When a backend stops being one (pod gone, labels changed, service edited), the connections
 * this host's pods made to it through the VIP are destroyed (both ends see a reset) and new
 * connects no longer pick it; the tables change as little as Maglev allows, so adding a backend
 * moves about 1/N of the ClientIP-affinity clients and touches no connection.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <linux/types.h>

#include "govern_abi.h"
#include "log.h"
#include "router.h"

#define SERVICE_PATH_MAX   160
#define SERVICE_NAME_MAX   63 /* a DNS label, as Kubernetes */
#define SERVICE_TIMEOUT_MAX 86400
#define SERVICE_HALF	   (SLIM_MAGLEV_SLOTS / 2)
/* A ClientIP service's table has room for this many backends from the start (4001 slots). */
#define SERVICE_AFFINITY_BACKENDS 40

struct service_doc {
	struct service *sd_svcs;
	size_t sd_n;
	struct htab sd_by_ip, sd_by_name;
	char *sd_text; /* the document as it came, for the state file (state.c) */
	size_t sd_len;
};

void (*service_changed_hook)(void);

static struct service_doc *service_cur;
static uint64_t service_settled_ms; /* no resets before (service_restore) */
static unsigned service_half; /* the half of the kernel's array in use */
static uint64_t service_nrevoked;

/* ---- parsing: touches nothing but the document (it runs off the loop) ---- */

struct service_ctx {
	struct confjson_ctx sx_doc;
	const struct cidr *range, *overlay;
};

/* An integer in [lo, hi] at o.key (absent: *out unchanged). */
static int service_int(const struct service_ctx *x, json_t *o, const char *key, const char *path,
		       long lo, long hi, long *out)
{
	json_t *v = json_object_get(o, key);
	char p[SERVICE_PATH_MAX + 32];
	int ret;

	if (!v)
		return 0;
	confjson_path(p, sizeof(p), "%s.%s", path, key);
	if ((ret = confjson_want(&x->sx_doc, v, JSON_INTEGER, p, "an integer")))
		return ret;
	if (json_integer_value(v) < lo || json_integer_value(v) > hi)
		return confjson_error(&x->sx_doc, p, "%lld is out of range (%ld-%ld)",
				     (long long)json_integer_value(v), lo, hi);
	*out = (long)json_integer_value(v);
	return 0;
}

static int service_ip(const struct service_ctx *x, json_t *v, const char *path,
		      const struct cidr *inside, const char *inside_name, uint32_t *out)
{
	struct in_addr a;
	int ret;

	if ((ret = confjson_want(&x->sx_doc, v, JSON_STRING, path, "a string")))
		return ret;
	if (inet_pton(AF_INET, json_string_value(v), &a) != 1)
		return confjson_error(&x->sx_doc, path, "\"%s\" is not an IPv4 address",
				     json_string_value(v));
	if (!cidr_contains(inside, a.s_addr))
		return confjson_error(&x->sx_doc, path, "%s is outside %s", json_string_value(v),
				     inside_name);
	*out = a.s_addr;
	return 0;
}

static bool service_name_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > SERVICE_NAME_MAX || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-'))
			return false;
	return true;
}

static int service_parse_ports(const struct service_ctx *x, json_t *ports, const char *path,
			       struct service *sv)
{
	static const char *const keys[] = {"port", "targetPort", "protocol", "name", NULL};
	char p[SERVICE_PATH_MAX + 32];
	size_t i;
	json_t *e;
	int ret;

	if ((ret = confjson_want(&x->sx_doc, ports, JSON_ARRAY, path, "an array")))
		return ret;
	if (json_array_size(ports) == 0 || json_array_size(ports) > SERVICE_MAX_PORTS)
		return confjson_error(&x->sx_doc, path, "%zu ports (1-%d)", json_array_size(ports),
				     SERVICE_MAX_PORTS);
	json_array_foreach(ports, i, e) {
		long port = 0, target = 0;
		json_t *proto;

		confjson_path(p, sizeof(p), "%s[%zu]", path, i);
		if ((ret = confjson_want(&x->sx_doc, e, JSON_OBJECT, p, "an object")) ||
		    (ret = confjson_check_keys(&x->sx_doc, e, p, keys)))
			return ret;
		if (!json_object_get(e, "port"))
			return confjson_error(&x->sx_doc, p, "missing \"port\"");
		if ((ret = service_int(x, e, "port", p, 1, 65535, &port)))
			return ret;
		target = port;
		if ((ret = service_int(x, e, "targetPort", p, 1, 65535, &target)))
			return ret;
		proto = json_object_get(e, "protocol");
		if (proto && (!json_is_string(proto) || strcmp(json_string_value(proto), "TCP"))) {
			confjson_path(p, sizeof(p), "%s[%zu].protocol", path, i);
			return confjson_error(&x->sx_doc, p, "only \"TCP\" is supported");
		}
		if (json_object_get(e, "name") && !json_is_string(json_object_get(e, "name"))) {
			confjson_path(p, sizeof(p), "%s[%zu].name", path, i);
			return confjson_error(&x->sx_doc, p, "wrong type: expected a string");
		}
		for (unsigned k = 0; k < sv->sv_nports; k++)
			if (sv->sv_ports[k].sp_port == htons((uint16_t)port))
				return confjson_error(&x->sx_doc, p, "port %ld is listed twice", port);
		sv->sv_ports[sv->sv_nports++] = (struct service_port){htons((uint16_t)port),
								      htons((uint16_t)target)};
	}
	return 0;
}

static int service_ip_cmp(const void *a, const void *b)
{
	uint32_t x = ntohl(*(const uint32_t *)a), y = ntohl(*(const uint32_t *)b);

	return x < y ? -1 : x > y;
}

/* Either a selector (labels a backend has, all of them) or endpoints (pod IPs). */
static int service_parse_backends(const struct service_ctx *x, json_t *o, const char *path,
				  struct service *sv)
{
	json_t *sel = json_object_get(o, "selector"), *eps = json_object_get(o, "endpoints"), *v;
	char p[SERVICE_PATH_MAX + 300];
	const char *key;
	size_t i;
	int ret;

	if (!sel == !eps)
		return confjson_error(&x->sx_doc, path, "a service needs exactly one of selector or endpoints");
	if (sel) {
		confjson_path(p, sizeof(p), "%s.selector", path);
		if ((ret = confjson_want(&x->sx_doc, sel, JSON_OBJECT, p, "an object")))
			return ret;
		if (json_object_size(sel) == 0)
			return confjson_error(&x->sx_doc, p, "empty: it would select every pod");
		json_object_foreach(sel, key, v) {
			if (!policy_label_valid(key, false))
				return confjson_error(&x->sx_doc, p, "bad label key \"%s\"", key);
			confjson_path(p, sizeof(p), "%s.selector.%s", path, key);
			if ((ret = confjson_want(&x->sx_doc, v, JSON_STRING, p, "a string")))
				return ret;
			if (!policy_label_valid(json_string_value(v), true))
				return confjson_error(&x->sx_doc, p, "bad label value \"%s\"",
						     json_string_value(v));
			confjson_path(p, sizeof(p), "%s.selector", path);
		}
		sv->sv_selector = json_incref(sel);
		return 0;
	}
	confjson_path(p, sizeof(p), "%s.endpoints", path);
	if ((ret = confjson_want(&x->sx_doc, eps, JSON_ARRAY, p, "an array")))
		return ret;
	if (json_array_size(eps) > SERVICE_MAX_BACKENDS)
		return confjson_error(&x->sx_doc, p, "%zu endpoints (at most %d)", json_array_size(eps),
				     SERVICE_MAX_BACKENDS);
	sv->sv_endpoints = calloc(json_array_size(eps) + 1, sizeof(uint32_t));
	if (!sv->sv_endpoints)
		return -ENOMEM;
	json_array_foreach(eps, i, v) {
		confjson_path(p, sizeof(p), "%s.endpoints[%zu]", path, i);
		if ((ret = service_ip(x, v, p, x->overlay, "overlay_cidr",
				      &sv->sv_endpoints[sv->sv_nendpoints])))
			return ret;
		for (unsigned k = 0; k < sv->sv_nendpoints; k++)
			if (sv->sv_endpoints[k] == sv->sv_endpoints[sv->sv_nendpoints])
				return confjson_error(&x->sx_doc, p, "%s is listed twice",
						     json_string_value(v));
		sv->sv_nendpoints++;
	}
	qsort(sv->sv_endpoints, sv->sv_nendpoints, sizeof(uint32_t), service_ip_cmp);
	return 0;
}

/* sessionAffinity "None" | "ClientIP", sessionAffinityConfig.clientIP.timeoutSeconds. */
static int service_parse_affinity(const struct service_ctx *x, json_t *o, const char *path,
				  struct service *sv)
{
	static const char *const cfgkeys[] = {"clientIP", NULL}, *const ipkeys[] = {
		"timeoutSeconds", NULL};
	json_t *aff = json_object_get(o, "sessionAffinity");
	json_t *cfg = json_object_get(o, "sessionAffinityConfig"), *cip;
	char p[SERVICE_PATH_MAX + 48];
	long timeout = SERVICE_AFFINITY_TIMEOUT_DEFAULT;
	int ret;

	confjson_path(p, sizeof(p), "%s.sessionAffinity", path);
	if (aff && (!json_is_string(aff) || (strcmp(json_string_value(aff), "None") &&
					     strcmp(json_string_value(aff), "ClientIP"))))
		return confjson_error(&x->sx_doc, p, "expected \"None\" or \"ClientIP\"");
	sv->sv_affinity = aff && !strcmp(json_string_value(aff), "ClientIP");
	if (cfg) {
		confjson_path(p, sizeof(p), "%s.sessionAffinityConfig", path);
		if ((ret = confjson_want(&x->sx_doc, cfg, JSON_OBJECT, p, "an object")) ||
		    (ret = confjson_check_keys(&x->sx_doc, cfg, p, cfgkeys)))
			return ret;
		if ((cip = json_object_get(cfg, "clientIP"))) {
			confjson_path(p, sizeof(p), "%s.sessionAffinityConfig.clientIP", path);
			if ((ret = confjson_want(&x->sx_doc, cip, JSON_OBJECT, p, "an object")) ||
			    (ret = confjson_check_keys(&x->sx_doc, cip, p, ipkeys)) ||
			    (ret = service_int(x, cip, "timeoutSeconds", p, 1, SERVICE_TIMEOUT_MAX,
					       &timeout)))
				return ret;
		}
	}
	sv->sv_affinity_timeout = (unsigned)timeout;
	return 0;
}

static const struct service *service_doc_find_ip(const struct service_doc *d, uint32_t ip)
{
	for (struct hnode *h = htab_first(&d->sd_by_ip, htab_hash_u64(ip)); h; h = htab_next(h)) {
		const struct service *sv = container_of(h, struct service, sv_by_ip);

		if (sv->sv_ip == ip)
			return sv;
	}
	return NULL;
}

static const struct service *service_doc_find_name(const struct service_doc *d, const char *name)
{
	for (struct hnode *h = htab_first(&d->sd_by_name, htab_hash_str(name)); h; h = htab_next(h)) {
		const struct service *sv = container_of(h, struct service, sv_by_name);

		if (!strcmp(sv->sv_name, name))
			return sv;
	}
	return NULL;
}

static int service_parse_one(const struct service_ctx *x, struct service_doc *d, json_t *o,
			     size_t i)
{
	static const char *const keys[] = {"name",	    "ip",	      "ports",
					   "selector",	    "endpoints",      "sessionAffinity",
					   "sessionAffinityConfig", NULL};
	struct service *sv = &d->sd_svcs[i];
	char path[SERVICE_PATH_MAX], p[SERVICE_PATH_MAX + 16];
	json_t *name;
	int ret;

	confjson_path(path, sizeof(path), "services[%zu]", i);
	if ((ret = confjson_want(&x->sx_doc, o, JSON_OBJECT, path, "an object")) ||
	    (ret = confjson_check_keys(&x->sx_doc, o, path, keys)))
		return ret;
	name = json_object_get(o, "name");
	confjson_path(p, sizeof(p), "%s.name", path);
	if ((ret = confjson_want(&x->sx_doc, name, JSON_STRING, p, "a string")))
		return ret;
	if (!service_name_valid(json_string_value(name)))
		return confjson_error(&x->sx_doc, p, "\"%s\" is not a DNS label ([a-z0-9-], 1-%d)",
				     json_string_value(name), SERVICE_NAME_MAX);
	if (service_doc_find_name(d, json_string_value(name)))
		return confjson_error(&x->sx_doc, p, "a service named \"%s\" comes earlier",
				     json_string_value(name));
	snprintf(sv->sv_name, sizeof(sv->sv_name), "%s", json_string_value(name));
	confjson_path(p, sizeof(p), "%s.ip", path);
	if ((ret = service_ip(x, json_object_get(o, "ip"), p, x->range, "service_cidr",
			      &sv->sv_ip)))
		return ret;
	if (service_doc_find_ip(d, sv->sv_ip))
		return confjson_error(&x->sx_doc, p, "%s is the IP of service \"%s\"",
				     json_string_value(json_object_get(o, "ip")),
				     service_doc_find_ip(d, sv->sv_ip)->sv_name);
	confjson_path(p, sizeof(p), "%s.ports", path);
	if ((ret = service_parse_ports(x, json_object_get(o, "ports"), p, sv)) ||
	    (ret = service_parse_backends(x, o, path, sv)) ||
	    (ret = service_parse_affinity(x, o, path, sv)))
		return ret;
	htab_insert(&d->sd_by_ip, &sv->sv_by_ip, htab_hash_u64(sv->sv_ip));
	htab_insert(&d->sd_by_name, &sv->sv_by_name, htab_hash_str(sv->sv_name));
	d->sd_n++;
	return 0;
}

int service_parse(const char *text, size_t len, const char *origin, const struct cidr *range,
		  const struct cidr *overlay, struct service_doc **out, char *err, size_t errlen)
{
	static const char *const keys[] = {"services", NULL};
	struct service_ctx x = {{origin, err, errlen}, range, overlay};
	struct service_doc *d;
	json_t *root, *list, *o;
	size_t i;
	int ret;

	*out = NULL;
	root = confjson_load(&x.sx_doc, text, len);
	if (!root)
		return -EINVAL;
	d = calloc(1, sizeof(*d));
	if (!d) {
		json_decref(root);
		return -ENOMEM;
	}
	if ((ret = confjson_want(&x.sx_doc, root, JSON_OBJECT, "", "an object")) ||
	    (ret = confjson_check_keys(&x.sx_doc, root, "", keys)))
		goto out;
	list = json_object_get(root, "services");
	if ((ret = confjson_want(&x.sx_doc, list, JSON_ARRAY, "services", "an array")))
		goto out;
	d->sd_svcs = calloc(json_array_size(list) + 1, sizeof(*d->sd_svcs));
	if (!d->sd_svcs || htab_init(&d->sd_by_ip, json_array_size(list)) ||
	    htab_init(&d->sd_by_name, json_array_size(list))) {
		ret = -ENOMEM;
		goto out;
	}
	json_array_foreach(list, i, o) {
		if ((ret = service_parse_one(&x, d, o, i))) {
			d->sd_n = i + 1; /* so the half-parsed one is freed too */
			goto out;
		}
	}
out:
	json_decref(root);
	if (ret) {
		service_doc_free(d);
		return ret;
	}
	d->sd_text = malloc(len + 1);
	if (!d->sd_text) {
		service_doc_free(d);
		return -ENOMEM;
	}
	memcpy(d->sd_text, text, len);
	d->sd_text[len] = '\0';
	d->sd_len = len;
	*out = d;
	return 0;
}

static void service_computed_free(struct service *sv)
{
	free(sv->sv_backends);
	free(sv->sv_table);
	sv->sv_backends = NULL;
	sv->sv_table = NULL;
	sv->sv_nbackends = 0;
	sv->sv_table_size = 0;
}

void service_doc_free(struct service_doc *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->sd_n; i++) {
		json_decref(d->sd_svcs[i].sv_selector);
		free(d->sd_svcs[i].sv_endpoints);
		service_computed_free(&d->sd_svcs[i]);
	}
	free(d->sd_svcs);
	free(d->sd_text);
	htab_free(&d->sd_by_ip);
	htab_free(&d->sd_by_name);
	free(d);
}

size_t service_doc_count(const struct service_doc *d)
{
	return d ? d->sd_n : 0;
}

/* ---- lookups ---- */

bool service_range_contains(uint32_t ip)
{
	return router.r_cluster && cidr_contains(&router.r_cluster->cl_services, ip);
}

/* The service of d at vip:port, with that port's target in *target (may be NULL); or NULL. */
static const struct service *service_doc_port(const struct service_doc *d, uint32_t vip,
					      uint16_t port, uint16_t *target)
{
	const struct service *sv = d ? service_doc_find_ip(d, vip) : NULL;

	for (unsigned i = 0; sv && i < sv->sv_nports; i++)
		if (sv->sv_ports[i].sp_port == port) {
			if (target)
				*target = sv->sv_ports[i].sp_target;
			return sv;
		}
	return NULL;
}

const struct service *service_find(uint32_t vip, uint16_t port, uint16_t *target)
{
	return service_doc_port(service_cur, vip, port, target);
}

bool service_has_backend(const struct service *sv, uint32_t ip)
{
	return sv->sv_nbackends &&
	       bsearch(&ip, sv->sv_backends, sv->sv_nbackends, sizeof(uint32_t), service_ip_cmp);
}

void service_foreach(void (*fn)(const struct service *s, void *arg), void *arg)
{
	for (size_t i = 0; service_cur && i < service_cur->sd_n; i++)
		fn(&service_cur->sd_svcs[i], arg);
}

size_t service_count(void)
{
	return service_doc_count(service_cur);
}

/* ---- backends and the kernel's tables ---- */

static bool service_selects(const struct service *sv, const json_t *labels)
{
	const char *key;
	json_t *v;

	json_object_foreach(sv->sv_selector, key, v) {
		json_t *have = json_object_get(labels, key);

		if (!have || !json_is_string(have) ||
		    strcmp(json_string_value(have), json_string_value(v)))
			return false;
	}
	return true;
}

/* The backends as they are now: the listed endpoints, or the pods the selector matches. */
static int service_backends(const struct service *sv, uint32_t **out, unsigned *n)
{
	const struct dir_pod *dp = NULL;
	size_t bucket = 0, cap = 16;
	uint32_t *b;

	*n = 0;
	if (!sv->sv_selector) {
		b = malloc((sv->sv_nendpoints + 1) * sizeof(*b));
		if (!b)
			return -ENOMEM;
		memcpy(b, sv->sv_endpoints, sv->sv_nendpoints * sizeof(*b));
		*n = sv->sv_nendpoints;
		*out = b;
		return 0;
	}
	b = malloc(cap * sizeof(*b));
	if (!b)
		return -ENOMEM;
	while ((dp = directory_iter(&bucket, dp))) {
		if (!service_selects(sv, dp->dp_labels))
			continue;
		if (*n == SERVICE_MAX_BACKENDS)
			break; /* more pods than one table takes: the rest serve other services */
		if (*n == cap) {
			uint32_t *nb = realloc(b, 2 * cap * sizeof(*b));

			if (!nb) {
				free(b);
				return -ENOMEM;
			}
			b = nb;
			cap *= 2;
		}
		b[(*n)++] = dp->dp_ip;
	}
	qsort(b, *n, sizeof(*b), service_ip_cmp);
	*out = b;
	return 0;
}

/* Whether every backend in old[] is still in sv's (nothing to revoke). */
static bool service_kept_all(const struct service *sv, const uint32_t *old, unsigned nold)
{
	for (unsigned i = 0; i < nold; i++)
		if (!service_has_backend(sv, old[i]))
			return false;
	return true;
}

/*
 * The table size for n backends. Maglev moves about 1/n of the slots when a backend comes or
 * goes only if the size stays the same, so a table keeps its size while it still has 100 slots
 * per backend; and a ClientIP service, whose clients are the keys that must not move, starts
 * with room for SERVICE_AFFINITY_BACKENDS backends.
 */
static uint32_t service_table_size(const struct service *sv, unsigned n)
{
	uint32_t m = maglev_table_size(sv->sv_affinity && n < SERVICE_AFFINITY_BACKENDS
					       ? SERVICE_AFFINITY_BACKENDS
					       : n);

	if (sv->sv_last_size >= m)
		return sv->sv_last_size;
	return m;
}

/* Recomputes sv's backends and table; true when a backend it had is gone. */
static bool service_compute(struct service *sv)
{
	uint32_t *old = sv->sv_backends, *b;
	unsigned nold = sv->sv_nbackends, n;
	bool lost;

	if (service_backends(sv, &b, &n) < 0) {
		log_warnx("service %s: out of memory: its backends are unchanged", sv->sv_name);
		return false;
	}
	if (n == nold && (n == 0 || (!memcmp(b, old, n * sizeof(*b)) && sv->sv_table))) {
		free(b);
		return false;
	}
	sv->sv_backends = b;
	sv->sv_nbackends = n;
	free(sv->sv_table);
	sv->sv_table = NULL;
	sv->sv_table_size = 0;
	if (n) {
		uint32_t m = service_table_size(sv, n);

		sv->sv_table = malloc(m * sizeof(*sv->sv_table));
		if (sv->sv_table) {
			maglev_build(b, n, m, sv->sv_table);
			sv->sv_table_size = m;
			sv->sv_last_size = m;
		} else {
			log_warnx("service %s: out of memory for its table", sv->sv_name);
		}
	}
	lost = !service_kept_all(sv, old, nold);
	free(old);
	return lost;
}

/*
 * Putting services in force is a job done in slices of at most SERVICE_SLICE_US on the loop, so
 * 10,000 services never hold up the connects of other pods: compute every service's backends
 * and table and write the tables into the half of the kernel's array not in use (the entries
 * still point into the other half), then point the entries at the new tables, drop the entries
 * of services that went, and only then make the document current and reset the connections
 * whose backend left. A connect reads either the old table of a service or the new one, each
 * whole. A new document waits for the job in progress; a directory change during a job runs
 * one more job when it ends.
 */
#define SERVICE_SLICE_US 2000

enum service_phase { SERVICE_TABLES, SERVICE_ENTRIES, SERVICE_DROPS, SERVICE_DONE };

struct service_job {
	struct service_doc *sj_doc; /* what goes in force (service_cur itself for a refresh) */
	struct service_doc *sj_old; /* what it replaces; NULL for a refresh */
	enum service_phase sj_phase;
	size_t sj_i;	  /* the next service of the phase */
	uint32_t sj_half; /* where the tables go */
	uint32_t sj_off;  /* slots used there */
	bool sj_revoke;	  /* some connection may have lost its backend */
	bool sj_changed;  /* a table changed: the entries and nftables need doing */
	bool sj_new;	  /* a new document (not a recompute of the current one) */
	uint64_t sj_start_us;
	service_done_fn sj_done;
	void *sj_arg;
};

static struct service_job *service_job;
static long long service_job_timer = -1;
static bool service_refresh_wanted; /* the directory changed during the job */
static struct service_doc *service_queued;
static service_done_fn service_queued_done;
static void *service_queued_arg;

static uint64_t service_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* A connection a pod of ours made through a VIP whose backend no longer serves it: reset. */
static void service_revoke_conn(const struct conn *co, void *arg)
{
	unsigned *n = arg;
	const struct service *sv;
	uint16_t target;

	if (!co->co_out || !co->co_svc_ip)
		return;
	sv = service_find(co->co_svc_ip, co->co_svc_port, &target);
	if (sv && target == co->co_overlay.dst_port && service_has_backend(sv, co->co_overlay.dst_ip))
		return;
	if (sockdiag_destroy(&co->co_host) == 0)
		(*n)++;
}

static unsigned service_revoke(void)
{
	unsigned n = 0;
	int ret = conn_walk(0, service_revoke_conn, &n);

	if (ret < 0)
		log_warnx("services: cannot list connections (%s): connections to removed "
			  "backends stay",
			  strerror(-ret));
	if (n)
		log_info("services: reset %u connections to backends that left", n);
	service_nrevoked += n;
	return n;
}

/* Whether every port of osv is in d, with the same target. */
static bool service_ports_kept(const struct service *osv, const struct service_doc *d)
{
	for (unsigned k = 0; k < osv->sv_nports; k++) {
		uint16_t target;

		if (!service_doc_port(d, osv->sv_ip, osv->sv_ports[k].sp_port, &target) ||
		    target != osv->sv_ports[k].sp_target)
			return false;
	}
	return true;
}

/* One slice of the job; true when it is done. */
static bool service_job_slice(struct service_job *j)
{
	struct slim_maglev_slot *maglev = governor_maglev();
	uint64_t end = service_now_us() + SERVICE_SLICE_US;
	unsigned n = 0;

	while (j->sj_phase != SERVICE_DONE) {
		/* The clock is read every 64 steps: a step is a few microseconds at most. */
		if (++n % 64 == 0 && service_now_us() >= end)
			return false;
		switch (j->sj_phase) {
		case SERVICE_TABLES:
			if (j->sj_i == j->sj_doc->sd_n) {
				/* A refresh that changed nothing leaves the kernel as it is. */
				j->sj_phase = j->sj_changed ? SERVICE_ENTRIES : SERVICE_DONE;
				j->sj_i = 0;
				break;
			}
			{
				struct service *sv = &j->sj_doc->sd_svcs[j->sj_i++];
				const uint32_t *had = sv->sv_backends;
				unsigned nhad = sv->sv_nbackends;

				j->sj_revoke |= service_compute(sv);
				j->sj_changed |= sv->sv_backends != had || sv->sv_nbackends != nhad;
				if (!maglev)
					break;
				if (sv->sv_table_size && j->sj_off + sv->sv_table_size > SERVICE_HALF) {
					static struct log_ratelimit rl;

					log_ratelimited(&rl, LOG_LVL_WARN,
							"service %s: the kernel's tables are full (%u "
							"slots): its connects go over the overlay",
							sv->sv_name, SERVICE_HALF);
					sv->sv_base = UINT32_MAX; /* no entry (SERVICE_ENTRIES) */
					break;
				}
				sv->sv_base = j->sj_half * SERVICE_HALF + j->sj_off;
				for (uint32_t s = 0; s < sv->sv_table_size; s++)
					maglev[sv->sv_base + s].ms_ip = sv->sv_backends[sv->sv_table[s]];
				j->sj_off += sv->sv_table_size;
			}
			break;
		case SERVICE_ENTRIES:
			if (j->sj_i == j->sj_doc->sd_n || !maglev) {
				j->sj_phase = SERVICE_DROPS;
				j->sj_i = 0;
				break;
			}
			{
				const struct service *sv = &j->sj_doc->sd_svcs[j->sj_i++];
				struct slim_svc v = {.sv_base = sv->sv_base,
						     .sv_size = sv->sv_table_size,
						     .sv_flags = sv->sv_affinity ? SLIM_SVC_AFFINITY : 0};

				for (unsigned k = 0; k < sv->sv_nports; k++) {
					if (sv->sv_base == UINT32_MAX) {
						governor_service_del(sv->sv_ip, sv->sv_ports[k].sp_port);
						continue;
					}
					v.sv_target_port = sv->sv_ports[k].sp_target;
					governor_service_put(sv->sv_ip, sv->sv_ports[k].sp_port, &v);
				}
			}
			break;
		case SERVICE_DROPS:
			if (!j->sj_old || j->sj_i == j->sj_old->sd_n) {
				j->sj_phase = SERVICE_DONE;
				break;
			}
			{
				const struct service *osv = &j->sj_old->sd_svcs[j->sj_i++];
				const struct service *nsv = service_doc_find_ip(j->sj_doc, osv->sv_ip);

				if (!service_ports_kept(osv, j->sj_doc) ||
				    (nsv && !service_kept_all(nsv, osv->sv_backends,
							      osv->sv_nbackends)))
					j->sj_revoke = true;
				for (unsigned k = 0; k < osv->sv_nports; k++)
					if (!service_doc_port(j->sj_doc, osv->sv_ip,
							      osv->sv_ports[k].sp_port, NULL))
						governor_service_del(osv->sv_ip,
								     osv->sv_ports[k].sp_port);
			}
			break;
		case SERVICE_DONE:
			break;
		}
	}
	return true;
}

static void service_job_start(struct service_doc *d, service_done_fn done, void *arg, bool now);

/* The job is done: the document is current, the overlay path follows, connections are reset. */
static void service_job_finish(struct service_job *j)
{
	struct service_doc *old = j->sj_old;
	unsigned revoked = 0;

	if (j->sj_changed)
		service_half = j->sj_half;
	service_cur = j->sj_doc;
	if ((old || j->sj_changed) && service_changed_hook)
		service_changed_hook();
	/* A new document (not a recompute): what a restarted router takes back. */
	if (j->sj_new)
		state_save_services(j->sj_doc->sd_text, j->sj_doc->sd_len);
	/* Right after a restart the other nodes' pods are still being announced again: a backend
	 * not heard of yet is not one that left. */
	if (j->sj_revoke && event_now_ms() >= service_settled_ms)
		revoked = service_revoke();
	if (old)
		log_info("services: %zu in force (%llu ms on the loop in slices)",
			 service_doc_count(j->sj_doc),
			 (unsigned long long)(service_now_us() - j->sj_start_us) / 1000);
	service_doc_free(old);
	if (j->sj_done)
		j->sj_done(revoked, j->sj_arg);
	free(j);
}

static long service_job_timer_fn(struct event_loop *loop, void *arg)
{
	struct service_job *j = service_job;

	if (!j || !service_job_slice(j))
		return 0; /* the loop serves everything else, then the next slice */
	service_job = NULL;
	service_job_timer = -1;
	service_job_finish(j);
	/* What waited for this job: a new document first (it recomputes everything anyway). */
	if (service_queued) {
		struct service_doc *d = service_queued;

		service_queued = NULL;
		service_refresh_wanted = false;
		service_job_start(d, service_queued_done, service_queued_arg, false);
	} else if (service_refresh_wanted) {
		service_refresh_wanted = false;
		service_job_start(NULL, NULL, NULL, false);
	}
	return EVENT_TIMER_STOP;
}

/* d NULL: recompute the current document (the directory changed). now: the whole job at once
 * (start-up, before anything is served; or no loop: unit tests, fuzzing). */
static void service_job_start(struct service_doc *d, service_done_fn done, void *arg, bool now)
{
	struct service_job *j = calloc(1, sizeof(*j));

	if (!j) {
		log_warnx("services: out of memory: %s", d ? "document refused" : "not recomputed");
		service_doc_free(d);
		if (done)
			done(-ENOMEM, arg);
		return;
	}
	j->sj_doc = d ? d : service_cur;
	j->sj_old = d ? service_cur : NULL;
	j->sj_half = service_half ^ 1;
	j->sj_done = done;
	j->sj_arg = arg;
	j->sj_changed = d != NULL;
	j->sj_new = d != NULL;
	j->sj_start_us = service_now_us();
	/* The same service in the new document keeps its table size (service_table_size). */
	for (size_t i = 0; d && service_cur && i < d->sd_n; i++) {
		const struct service *osv = service_doc_find_ip(service_cur, d->sd_svcs[i].sv_ip);

		if (osv && osv->sv_affinity == d->sd_svcs[i].sv_affinity)
			d->sd_svcs[i].sv_last_size = osv->sv_last_size;
	}
	service_job = j;
	if (now || !router.r_loop) {
		while (!service_job_slice(j))
			;
		service_job = NULL;
		service_job_finish(j);
		return;
	}
	service_job_timer = event_timer_add(router.r_loop, 0, service_job_timer_fn, NULL);
}

void service_install(struct service_doc *d, service_done_fn done, void *arg)
{
	if (service_job) {
		/* Applies are one at a time (control.c); should one still be queued, it loses. */
		if (service_queued) {
			service_doc_free(service_queued);
			if (service_queued_done)
				service_queued_done(-ECANCELED, service_queued_arg);
		}
		service_queued = d;
		service_queued_done = done;
		service_queued_arg = arg;
		return;
	}
	service_job_start(d, done, arg, false);
}

/* How long after a restart connections are not reset for a backend nobody announced yet. */
#define SERVICE_SETTLE_MS 10000

void service_restore(struct service_doc *d)
{
	service_settled_ms = event_now_ms() + SERVICE_SETTLE_MS;
	if (service_job || service_cur) {
		service_install(d, NULL, NULL);
		return;
	}
	service_job_start(d, NULL, NULL, true);
}

bool service_idle(void)
{
	return !service_job && !service_queued;
}

json_t *service_export(void)
{
	if (!service_cur)
		return json_null();
	return json_pack("{s:s%, s:i}", "text", service_cur->sd_text, service_cur->sd_len, "half",
			 (int)service_half);
}

int service_adopt(json_t *o, char *err, size_t errlen)
{
	const char *text = json_string_value(json_object_get(o, "text"));
	json_t *half = json_object_get(o, "half");
	struct service_doc *d;
	int ret;

	if (json_is_null(o) || !o)
		return 0;
	if (!text || !json_is_integer(half) || json_integer_value(half) < 0 ||
	    json_integer_value(half) > 1) {
		snprintf(err, errlen, "services: expected {\"text\", \"half\": 0|1}");
		return -EINVAL;
	}
	ret = service_parse(text, json_string_length(json_object_get(o, "text")), "(upgrade)",
			    &router.r_cluster->cl_services, &router.r_cluster->cl_overlay, &d, err,
			    errlen);
	if (ret < 0)
		return ret;
	/* The kernel serves from the half the router before us wrote: ours is the other one, and
	 * the entries move over in slices on the loop, as for any new document. */
	service_half = (unsigned)json_integer_value(half);
	service_settled_ms = event_now_ms() + SERVICE_SETTLE_MS;
	service_job_start(d, NULL, NULL, false);
	return 0;
}

void service_refresh(void)
{
	if (!service_cur)
		return;
	if (service_job) {
		service_refresh_wanted = true;
		return;
	}
	service_job_start(NULL, NULL, NULL, false);
}

/* ---- the connect path ---- */

static void service_reply(struct client *c, uint32_t id, uint32_t action, int error)
{
	struct slim_route_rep rep = {
		.hdr = {.type = SLIM_MSG_ROUTE_REP, .len = sizeof(rep), .id = id},
		.action = action,
		.error = error,
	};

	client_reply(c, &rep, sizeof(rep), -1, false);
}

/*
 * The kernel picked a backend but had no route (or verdict) for it: it wrote its pick into the
 * socket's state, which the shim passed along with the request. Route that backend as any pod
 * destination; the shim connects again and the kernel keeps the pick (SLIM_SK_SVC_PICKED). Only
 * the kernel's record is believed, and only for the asking pod's own governed socket.
 */
void service_route_request(struct client *c, struct pod *p, const struct slim_route_req *req,
			   int fd)
{
	struct slim_route_req sub = *req;
	const struct service *sv;
	struct slim_sk st;
	uint16_t target;
	int ret;

	sv = service_find(req->dst_ip, req->dst_port, &target);
	if (!sv) {
		/* Not a service we know: whatever the pod's network does with it. */
		service_reply(c, req->hdr.id, SLIM_ACT_FALLBACK, 0);
		return;
	}
	if (!sv->sv_nbackends) {
		service_reply(c, req->hdr.id, SLIM_ACT_ERROR, ECONNREFUSED);
		return;
	}
	ret = fd < 0 ? -EBADF : governor_sock_get(fd, &st);
	if (ret < 0 || !(st.ss_flags & SLIM_SK_HANDED) || st.ss_pod_ip != p->p_ip ||
	    st.ss_svc_ip != req->dst_ip || st.ss_svc_port != req->dst_port ||
	    !service_has_backend(sv, st.ss_peer_ip)) {
		static struct log_ratelimit rl;

		/* No pick to go by (or the table changed under it): the overlay's rules decide. */
		log_ratelimited(&rl, LOG_LVL_WARN,
				"pod %s: connect to service %s: %s: over the overlay", p->p_name,
				sv->sv_name,
				ret < 0			       ? strerror(-ret)
				: st.ss_svc_ip != req->dst_ip ? "not the socket the kernel routed"
							       : "its backend left meanwhile");
		service_reply(c, req->hdr.id, SLIM_ACT_FALLBACK, 0);
		return;
	}
	sub.dst_ip = st.ss_peer_ip;
	sub.dst_port = target;
	route_request(c, p, &sub);
}

/* ---- listing ---- */

json_t *service_list_json(void)
{
	json_t *list = json_array();
	char a[INET_ADDRSTRLEN];

	for (size_t i = 0; list && service_cur && i < service_cur->sd_n; i++) {
		const struct service *sv = &service_cur->sd_svcs[i];
		json_t *ports = json_array(), *backends = json_array();

		for (unsigned k = 0; k < sv->sv_nports; k++)
			json_array_append_new(
				ports, json_pack("{s:i, s:i}", "port", ntohs(sv->sv_ports[k].sp_port),
						 "targetPort", ntohs(sv->sv_ports[k].sp_target)));
		for (unsigned k = 0; k < sv->sv_nbackends; k++)
			json_array_append_new(backends,
					      json_string(inet_ntop(AF_INET, &sv->sv_backends[k], a,
								    sizeof(a))));
		json_array_append_new(
			list, json_pack("{s:s, s:s, s:o, s:O?, s:o, s:s, s:i, s:i}", "name",
					sv->sv_name, "ip", inet_ntop(AF_INET, &sv->sv_ip, a, sizeof(a)),
					"ports", ports, "selector", sv->sv_selector, "backends",
					backends, "sessionAffinity",
					sv->sv_affinity ? "ClientIP" : "None", "timeoutSeconds",
					(int)sv->sv_affinity_timeout, "table_size",
					(int)sv->sv_table_size));
	}
	return list;
}

uint64_t service_revoked_count(void)
{
	return service_nrevoked;
}

void service_free(void)
{
	/* Shutting down: work in progress is dropped, no one is answered (control_stop). */
	if (service_job) {
		if (service_job->sj_old)
			service_doc_free(service_job->sj_doc);
		free(service_job);
		service_job = NULL;
	}
	if (service_job_timer >= 0 && router.r_loop)
		event_timer_del(router.r_loop, service_job_timer);
	service_job_timer = -1;
	service_doc_free(service_queued);
	service_queued = NULL;
	service_doc_free(service_cur);
	service_cur = NULL;
}
