// SPDX-License-Identifier: MIT
/*
 * slim-cni: the CNI plugin (spec 1.0.0, and 1.1.0's STATUS and GC) that attaches a container to
 * a slim host: a veth from the container's network namespace to the host bridge, an address
 * from the delegated IPAM plugin, MTU and default route as slimlab's pods have them, and the
 * pod's registration with the host's router, so the container gets slim as a lab pod does.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "cni.h"

#define CNI_STDIN_MAX (1 << 20)
/* How long ADD waits for the container's end of the veth to carry traffic. */
#define CNI_CARRIER_WAIT_MS 1000

static const char *cni_out_version = "1.0.0";

static void cni_print(json_t *doc)
{
	char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

	if (text) {
		puts(text);
		free(text);
	}
	fflush(stdout);
}

/* The spec's error document on stdout; the exit status says it is one. */
static int cni_print_error(const struct cni_err *e)
{
	json_t *doc = json_pack("{s:s, s:i, s:s}", "cniVersion", cni_out_version, "code",
				e->ce_code, "msg", e->ce_msg);

	if (e->ce_details[0])
		json_object_set_new(doc, "details", json_string(e->ce_details));
	cni_print(doc);
	json_decref(doc);
	return 1;
}

static char *cni_read_stdin(size_t *len, struct cni_err *e)
{
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);

	while (buf) {
		ssize_t r;

		if (n + 1 == cap) {
			char *grown = cap < CNI_STDIN_MAX ? realloc(buf, cap * 2) : NULL;

			if (!grown) {
				free(buf);
				cni_fail(e, CNI_ERR_DECODE, "network config larger than %d bytes",
					 CNI_STDIN_MAX);
				return NULL;
			}
			buf = grown;
			cap *= 2;
		}
		r = read(0, buf + n, cap - n - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			cni_fail(e, CNI_ERR_IO, "reading the network config: %s", strerror(errno));
			free(buf);
			return NULL;
		}
		if (r == 0) {
			buf[n] = '\0';
			*len = n;
			return buf;
		}
		n += (size_t)r;
	}
	cni_fail(e, CNI_ERR_IO, "out of memory");
	return NULL;
}

static void cni_fmt_mac(const uint8_t mac[6], char out[18])
{
	snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4],
		 mac[5]);
}

/* "a.b.c.d/len" into network-order address and prefix length. */
static int cni_parse_cidr(const char *s, uint32_t *addr, unsigned *len)
{
	char buf[INET_ADDRSTRLEN + 4], *slash, *end;
	long l;

	if (!s || strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	slash = strchr(buf, '/');
	if (!slash)
		return -EINVAL;
	*slash = '\0';
	l = strtol(slash + 1, &end, 10);
	if (*end || end == slash + 1 || l < 0 || l > 32 || inet_pton(AF_INET, buf, addr) != 1)
		return -EINVAL;
	*len = (unsigned)l;
	return 0;
}

static int cni_parse_ip(const char *s, uint32_t *addr)
{
	return s && inet_pton(AF_INET, s, addr) == 1 ? 0 : -EINVAL;
}

static const char *cni_ntoa(uint32_t a, char out[INET_ADDRSTRLEN])
{
	return inet_ntop(AF_INET, &a, out, INET_ADDRSTRLEN);
}

/* What ADD did so far, so that a failure undoes exactly that. */
struct cni_add {
	char ca_host[IF_NAMESIZE];
	bool ca_veth, ca_ipam;
};

static void cni_add_undo(const struct cni_conf *conf, const struct cni_add *a, const char *text,
			 size_t len)
{
	struct cni_err ignored;

	if (a->ca_ipam)
		ipam_exec(conf, "DEL", text, len, NULL, &ignored);
	if (a->ca_veth)
		link_del(a->ca_host);
}

/* The container side: addresses, link up, default route (and IPAM's routes) via gw. */
static int cni_add_container(const struct cni_env *env, int netns_fd, json_t *ips, json_t *routes,
			     uint32_t gw, struct cni_link *peer, struct cni_err *e)
{
	char a[INET_ADDRSTRLEN];
	int saved, ret;
	json_t *ip, *r;
	size_t i;

	if ((ret = link_netns_enter(netns_fd, &saved)))
		return cni_fail(e, CNI_ERR_IO, "entering %s: %s", env->ce_netns, strerror(-ret));
	if ((ret = link_get(env->ce_ifname, peer))) {
		cni_fail(e, CNI_ERR_IO, "%s in %s: %s", env->ce_ifname, env->ce_netns,
			 strerror(-ret));
		goto out;
	}
	json_array_foreach(ips, i, ip) {
		uint32_t addr;
		unsigned plen;

		cni_parse_cidr(json_string_value(json_object_get(ip, "address")), &addr, &plen);
		if ((ret = link_addr_add(peer->cl_index, addr, plen))) {
			cni_fail(e, CNI_ERR_IO, "adding %s/%u to %s: %s", cni_ntoa(addr, a), plen,
				 env->ce_ifname, strerror(-ret));
			goto out;
		}
	}
	if ((ret = link_set_up(peer->cl_index))) {
		cni_fail(e, CNI_ERR_IO, "setting %s up: %s", env->ce_ifname, strerror(-ret));
		goto out;
	}
	if ((ret = link_route_add(peer->cl_index, 0, 0, gw))) {
		cni_fail(e, CNI_ERR_IO, "default route via %s: %s", cni_ntoa(gw, a),
			 strerror(-ret));
		goto out;
	}
	json_array_foreach(routes, i, r) {
		uint32_t dst, rgw = gw;
		unsigned plen;

		/* The default route is set above (IPv6 routes were refused earlier). */
		if (cni_parse_cidr(json_string_value(json_object_get(r, "dst")), &dst, &plen) ||
		    plen == 0)
			continue;
		if (json_object_get(r, "gw"))
			cni_parse_ip(json_string_value(json_object_get(r, "gw")), &rgw);
		if ((ret = link_route_add(peer->cl_index, dst, plen, rgw)) && ret != -EEXIST) {
			cni_fail(e, CNI_ERR_IO, "route %s/%u: %s", cni_ntoa(dst, a), plen,
				 strerror(-ret));
			goto out;
		}
	}
	/* A veth drops what it is given until its carrier change has been applied. */
	link_wait_running(peer->cl_index, CNI_CARRIER_WAIT_MS);
	ret = 0;
out:
	if (link_netns_leave(saved) < 0) /* never go on in the container's namespace */
		exit(cni_print_error(
			e->ce_code ? e
				   : &(struct cni_err){
					     CNI_ERR_IO,
					     "cannot return to the host network namespace", ""}));
	return ret ? -1 : 0;
}

/* IPAM's ips must be IPv4 CIDRs (slim is IPv4-only); the first one is the pod's address. */
static int cni_check_ipam_result(json_t *res, json_t **ips, json_t **routes, struct cni_err *e)
{
	json_t *ip, *r;
	size_t i;

	*ips = json_object_get(res, "ips");
	*routes = json_object_get(res, "routes");
	if (!json_is_array(*ips) || !json_array_size(*ips))
		return cni_fail(e, CNI_ERR_DECODE, "IPAM returned no ips");
	if (*routes && !json_is_array(*routes))
		return cni_fail(e, CNI_ERR_DECODE, "IPAM returned malformed routes");
	json_array_foreach(*ips, i, ip) {
		const char *s = json_string_value(json_object_get(ip, "address"));
		json_t *gw = json_object_get(ip, "gateway");
		uint32_t a;
		unsigned l;

		if (cni_parse_cidr(s, &a, &l) || (gw && cni_parse_ip(json_string_value(gw), &a)))
			return cni_fail(e, CNI_ERR_CONFIG,
					"IPAM returned %s: slim supports IPv4 addresses only",
					s ? s : "an address that is no string");
	}
	json_array_foreach(*routes, i, r) {
		uint32_t a;
		unsigned l;

		if (cni_parse_cidr(json_string_value(json_object_get(r, "dst")), &a, &l))
			return cni_fail(
				e, CNI_ERR_CONFIG,
				"IPAM returned a route that is not IPv4: slim supports IPv4 only");
	}
	return 0;
}

static json_t *cni_result(const struct cni_conf *conf, const struct cni_env *env,
			  const struct cni_link *bridge, const struct cni_link *host,
			  const char *host_name, const struct cni_link *peer, json_t *ips,
			  json_t *routes, json_t *dns, uint32_t gw)
{
	char mb[18], mh[18], mp[18], g[INET_ADDRSTRLEN];
	json_t *doc, *rips = json_array(), *rroutes = json_array(), *ip, *r;
	bool v040 = !strcmp(conf->cc_version, "0.4.0");
	size_t i;

	cni_fmt_mac(bridge->cl_mac, mb);
	cni_fmt_mac(host->cl_mac, mh);
	cni_fmt_mac(peer->cl_mac, mp);
	cni_ntoa(gw, g);
	json_array_foreach(ips, i, ip) {
		json_t *o = json_pack("{s:O, s:i}", "address", json_object_get(ip, "address"),
				      "interface", 2);

		json_object_set_new(o, "gateway", json_string(g));
		if (v040)
			json_object_set_new(o, "version", json_string("4"));
		json_array_append_new(rips, o);
	}
	json_array_append_new(rroutes, json_pack("{s:s, s:s}", "dst", "0.0.0.0/0", "gw", g));
	json_array_foreach(routes, i, r) {
		uint32_t dst;
		unsigned plen;

		if (!cni_parse_cidr(json_string_value(json_object_get(r, "dst")), &dst, &plen) &&
		    plen)
			json_array_append(rroutes, r);
	}
	doc = json_pack("{s:s, s:[{s:s, s:s}, {s:s, s:s}, {s:s, s:s, s:s}], s:o, s:o, s:O}",
			"cniVersion", conf->cc_version, "interfaces", "name", conf->cc_bridge,
			"mac", mb, "name", host_name, "mac", mh, "name", env->ce_ifname, "mac", mp,
			"sandbox", env->ce_netns, "ips", rips, "routes", rroutes, "dns", dns);
	/* 1.1.0 added the interface's MTU to the result. */
	if (doc && !strcmp(conf->cc_version, "1.1.0"))
		json_object_set_new(json_array_get(json_object_get(doc, "interfaces"), 2), "mtu",
				    json_integer(peer->cl_mtu));
	return doc;
}

static int cmd_add(const struct cni_conf *conf, const struct cni_env *env, const char *text,
		   size_t len, struct cni_err *e)
{
	struct cni_link bridge, host, peer;
	struct cni_add a = {0};
	json_t *res = NULL, *ips, *routes, *dns, *labels = NULL, *doc;
	char ip[INET_ADDRSTRLEN + 4], attachment[512];
	int netns_fd, ret = -1;
	uint32_t gw = 0, addr;
	unsigned plen;

	netns_fd = open(env->ce_netns, O_RDONLY | O_CLOEXEC);
	if (netns_fd < 0)
		return cni_fail(e, CNI_ERR_NO_CONTAINER, "network namespace %s: %s", env->ce_netns,
				strerror(errno));
	if ((ret = link_get(conf->cc_bridge, &bridge))) {
		cni_fail(e, CNI_ERR_CONFIG, "bridge %s: %s", conf->cc_bridge, strerror(-ret));
		goto out;
	}
	cni_host_ifname(env->ce_containerid, env->ce_ifname, a.ca_host);
	ret = link_veth_add(a.ca_host, env->ce_ifname, netns_fd, conf->cc_mtu);
	if (ret) {
		cni_fail(e, CNI_ERR_IO, "creating veth %s (%s in the container): %s%s", a.ca_host,
			 env->ce_ifname, strerror(-ret),
			 ret == -EEXIST ? " (is the container attached already?)" : "");
		goto fail;
	}
	a.ca_veth = true;
	/* The bridge is read again once it has the port: an empty bridge has no MAC yet. */
	if ((ret = link_get(a.ca_host, &host)) ||
	    (ret = link_set_master_up(host.cl_index, bridge.cl_index)) ||
	    (ret = link_get(conf->cc_bridge, &bridge))) {
		cni_fail(e, CNI_ERR_IO, "attaching %s to %s: %s", a.ca_host, conf->cc_bridge,
			 strerror(-ret));
		goto fail;
	}

	/* A delegate that failed half-way may hold an address: its DEL is part of the undo. */
	a.ca_ipam = true;
	if (ipam_exec(conf, "ADD", text, len, &res, e))
		goto fail;
	if (cni_check_ipam_result(res, &ips, &routes, e))
		goto fail;
	/* The default route goes via the bridge's own address, as in slimlab's pods; IPAM's
	 * gateway only when the bridge has none. */
	gw = bridge.cl_addr;
	if (!gw &&
	    cni_parse_ip(json_string_value(json_object_get(json_array_get(ips, 0), "gateway")),
			 &gw)) {
		cni_fail(e, CNI_ERR_CONFIG,
			 "bridge %s has no IPv4 address and IPAM gave no gateway: no default route",
			 conf->cc_bridge);
		goto fail;
	}
	if (cni_add_container(env, netns_fd, ips, routes, gw, &peer, e))
		goto fail;

	cni_parse_cidr(json_string_value(json_object_get(json_array_get(ips, 0), "address")), &addr,
		       &plen);
	cni_ntoa(addr, ip);
	labels = json_deep_copy(conf->cc_labels);
	json_object_update(labels, env->ce_labels);
	podreg_attachment_name(conf->cc_name, env->ce_containerid, env->ce_ifname, attachment,
			       sizeof(attachment));
	json_object_set_new(labels, CNI_LABEL_ATTACHMENT, json_string(attachment));
	if (podreg_add(conf->cc_router_socket, env->ce_netns, ip, env->ce_podname, labels, e))
		goto fail;

	dns = json_object_get(res, "dns");
	if (!json_is_object(dns) || !json_object_size(dns))
		dns = conf->cc_dns;
	dns = dns ? json_incref(dns) : json_object();
	doc = cni_result(conf, env, &bridge, &host, a.ca_host, &peer, ips, routes, dns, gw);
	json_decref(dns);
	cni_print(doc);
	json_decref(doc);
	ret = 0;
	goto out;
fail:
	cni_add_undo(conf, &a, text, len);
	ret = -1;
out:
	json_decref(labels);
	json_decref(res);
	close(netns_fd);
	return ret;
}

/* DEL: every step is tried; what is already gone is success. The first real failure is
 * reported (the runtime retries DEL), after all steps ran. */
static int cmd_del(const struct cni_conf *conf, const struct cni_env *env, const char *text,
		   size_t len, struct cni_err *e)
{
	char host[IF_NAMESIZE], attachment[512];
	struct cni_err step = {0};
	int ret;

	podreg_attachment_name(conf->cc_name, env->ce_containerid, env->ce_ifname, attachment,
			       sizeof(attachment));
	/* A router that cannot be reached holds no pods: its table lives in its memory. */
	if (podreg_del(conf->cc_router_socket, attachment, &step) &&
	    step.ce_code != CNI_ERR_TRY_AGAIN)
		*e = step;
	memset(&step, 0, sizeof(step));
	if (conf->cc_ipam_type[0] && ipam_exec(conf, "DEL", text, len, NULL, &step) && !e->ce_code)
		*e = step;
	cni_host_ifname(env->ce_containerid, env->ce_ifname, host);
	ret = link_del(host);
	if (ret && ret != -ENODEV && !e->ce_code)
		cni_fail(e, CNI_ERR_IO, "deleting %s: %s", host, strerror(-ret));
	return e->ce_code ? -1 : 0;
}

/* CHECK: the attachment prevResult describes is all there, as ADD made it. */
static int cmd_check(const struct cni_conf *conf, const struct cni_env *env, const char *text,
		     size_t len, struct cni_err *e)
{
	char host_name[IF_NAMESIZE], attachment[512], ipbuf[INET_ADDRSTRLEN];
	json_t *ips = json_object_get(conf->cc_prev, "ips"), *ip;
	struct cni_link bridge, host, peer;
	int netns_fd, saved, ret;
	uint32_t addr, gw;
	unsigned plen;
	size_t i;

	if (!conf->cc_prev)
		return cni_fail(e, CNI_ERR_CONFIG, "CHECK needs prevResult");
	if (!json_is_array(ips) || !json_array_size(ips))
		return cni_fail(e, CNI_ERR_CONFIG, "prevResult has no ips");
	netns_fd = open(env->ce_netns, O_RDONLY | O_CLOEXEC);
	if (netns_fd < 0)
		return cni_fail(e, CNI_ERR_NO_CONTAINER, "network namespace %s: %s", env->ce_netns,
				strerror(errno));
	cni_host_ifname(env->ce_containerid, env->ce_ifname, host_name);
	if ((ret = link_get(conf->cc_bridge, &bridge)) || (ret = link_get(host_name, &host)) ||
	    host.cl_master != bridge.cl_index) {
		close(netns_fd);
		return cni_fail(e, CNI_ERR_CHECK, "veth %s is %s bridge %s", host_name,
				ret ? "missing, or so is" : "not a port of", conf->cc_bridge);
	}
	gw = bridge.cl_addr;
	ret = link_netns_enter(netns_fd, &saved);
	close(netns_fd);
	if (ret)
		return cni_fail(e, CNI_ERR_IO, "entering %s: %s", env->ce_netns, strerror(-ret));
	if ((ret = link_get(env->ce_ifname, &peer))) {
		cni_fail(e, CNI_ERR_CHECK, "%s in %s: %s", env->ce_ifname, env->ce_netns,
			 strerror(-ret));
		goto out;
	}
	ret = -1;
	if (peer.cl_mtu != conf->cc_mtu) {
		cni_fail(e, CNI_ERR_CHECK, "%s has MTU %u, not %u", env->ce_ifname, peer.cl_mtu,
			 conf->cc_mtu);
		goto out;
	}
	json_array_foreach(ips, i, ip) {
		const char *s = json_string_value(json_object_get(ip, "address"));

		if (cni_parse_cidr(s, &addr, &plen)) {
			cni_fail(e, CNI_ERR_CONFIG, "prevResult: bad address %s", s ? s : "");
			goto out;
		}
		if (link_addr_has(peer.cl_index, addr, plen) != 1) {
			cni_fail(e, CNI_ERR_CHECK, "%s lacks %s", env->ce_ifname, s);
			goto out;
		}
	}
	if (link_route_has(0, 0, gw) != 1) {
		cni_fail(e, CNI_ERR_CHECK, "no default route via %s in %s", cni_ntoa(gw, ipbuf),
			 env->ce_netns);
		goto out;
	}
	ret = 0;
out:
	if (link_netns_leave(saved) < 0)
		exit(cni_print_error(&(struct cni_err){
			CNI_ERR_IO, "cannot return to the host network namespace", ""}));
	if (ret)
		return -1;
	cni_parse_cidr(json_string_value(json_object_get(json_array_get(ips, 0), "address")), &addr,
		       &plen);
	podreg_attachment_name(conf->cc_name, env->ce_containerid, env->ce_ifname, attachment,
			       sizeof(attachment));
	if (podreg_check(conf->cc_router_socket, attachment, cni_ntoa(addr, ipbuf), e))
		return -1;
	return ipam_exec(conf, "CHECK", text, len, NULL, e);
}

struct cni_gc {
	const struct cni_conf *g_conf;
	const char *g_text;
	size_t g_len;
	int g_failed;
};

/* GC found a registration whose attachment the runtime no longer has: release the rest. The
 * IPAM plugin is asked to DEL that attachment (host-local releases by container id and
 * interface; Debian 12's does not know GC yet). */
static void cni_gc_stale(const char *containerid, const char *ifname, void *arg)
{
	struct cni_gc *g = arg;
	char host[IF_NAMESIZE];
	struct cni_err e = {0};
	int ret;

	fprintf(stderr, "slim-cni: GC: releasing %s/%s\n", containerid, ifname);
	setenv("CNI_CONTAINERID", containerid, 1);
	setenv("CNI_IFNAME", ifname, 1);
	if (g->g_conf->cc_ipam_type[0] &&
	    ipam_exec(g->g_conf, "DEL", g->g_text, g->g_len, NULL, &e)) {
		fprintf(stderr, "slim-cni: GC: %s\n", e.ce_msg);
		g->g_failed++;
	}
	cni_host_ifname(containerid, ifname, host);
	ret = link_del(host);
	if (ret && ret != -ENODEV) {
		fprintf(stderr, "slim-cni: GC: deleting %s: %s\n", host, strerror(-ret));
		g->g_failed++;
	}
}

/* GC: the router's registrations of attachments the runtime no longer lists are released with
 * their veth and address; then the IPAM delegate collects its own, when it knows GC (1.1.0). */
static int cmd_gc(const struct cni_conf *conf, const char *text, size_t len, struct cni_err *e)
{
	struct cni_gc g = {.g_conf = conf, .g_text = text, .g_len = len};
	json_t *keep = conf->cc_valid ? conf->cc_valid : json_array();
	struct cni_err step = {0};
	int gc;

	/* A router that cannot be reached has no registrations to collect. */
	if (podreg_gc(conf->cc_router_socket, conf->cc_name, keep, cni_gc_stale, &g, &step) &&
	    step.ce_code != CNI_ERR_TRY_AGAIN) {
		*e = step;
		g.g_failed++;
	}
	if (!conf->cc_valid)
		json_decref(keep);
	if (conf->cc_ipam_type[0]) {
		memset(&step, 0, sizeof(step));
		gc = ipam_supports(conf, "1.1.0", &step);
		if (gc > 0 && ipam_exec(conf, "GC", text, len, NULL, &step))
			gc = -1;
		if (gc < 0) {
			fprintf(stderr, "slim-cni: GC: %s\n", step.ce_msg);
			if (!e->ce_code)
				*e = step;
			g.g_failed++;
		}
	}
	if (g.g_failed && !e->ce_code)
		cni_fail(e, CNI_ERR_IO, "GC: %d release(s) failed (see stderr)", g.g_failed);
	return g.g_failed ? -1 : 0;
}

static int cmd_status(const struct cni_conf *conf, struct cni_err *e)
{
	struct cni_link bridge;
	int ret;

	if ((ret = link_get(conf->cc_bridge, &bridge)))
		return cni_fail(e, CNI_ERR_UNAVAILABLE, "bridge %s: %s", conf->cc_bridge,
				strerror(-ret));
	if (podreg_status(conf->cc_router_socket, e)) {
		e->ce_code = CNI_ERR_UNAVAILABLE;
		return -1;
	}
	return 0;
}

/* VERSION: the config on stdin carries only cniVersion; answer in that version. */
static int cmd_version(const char *text, size_t len)
{
	json_t *in = json_loadb(text, len, 0, NULL), *doc, *vs = json_array();
	const char *v = json_string_value(json_object_get(in, "cniVersion"));

	for (const char *const *s = cni_versions; *s; s++)
		json_array_append_new(vs, json_string(*s));
	doc = json_pack("{s:s, s:o}", "cniVersion", v && cni_version_supported(v) ? v : "1.1.0",
			"supportedVersions", vs);
	cni_print(doc);
	json_decref(doc);
	json_decref(in);
	return 0;
}

int main(void)
{
	struct cni_err e = {0};
	struct cni_conf conf = {0};
	struct cni_env env = {0};
	char *text = NULL;
	const char *cmd;
	size_t len = 0;
	int ret = -1;

	cmd = getenv("CNI_COMMAND");
	text = cni_read_stdin(&len, &e);
	if (!text)
		goto out;
	if (cmd && !strcmp(cmd, "VERSION")) {
		ret = cmd_version(text, len);
		goto out;
	}
	if (cni_env_load(&env, &e))
		goto out;
	if (cni_conf_parse(text, len, strcmp(cmd, "STATUS") && strcmp(cmd, "GC"), &conf, &e))
		goto out;
	cni_out_version = conf.cc_version;
	if (!strcmp(cmd, "ADD"))
		ret = cmd_add(&conf, &env, text, len, &e);
	else if (!strcmp(cmd, "DEL"))
		ret = cmd_del(&conf, &env, text, len, &e);
	else if (!strcmp(cmd, "CHECK"))
		ret = cmd_check(&conf, &env, text, len, &e);
	else if (!strcmp(cmd, "GC") || !strcmp(cmd, "STATUS")) {
		if (strcmp(conf.cc_version, "1.1.0"))
			cni_fail(&e, CNI_ERR_VERSION,
				 "%s needs cniVersion 1.1.0, the config has %s", cmd,
				 conf.cc_version);
		else
			ret = !strcmp(cmd, "GC") ? cmd_gc(&conf, text, len, &e)
						 : cmd_status(&conf, &e);
	} else
		cni_fail(&e, CNI_ERR_ENV, "unknown CNI_COMMAND %s", cmd);
out:
	if (ret && !e.ce_code)
		cni_fail(&e, CNI_ERR_IO, "failed");
	if (ret)
		cni_print_error(&e);
	/* The error's version string may point into conf: print before freeing. */
	cni_conf_free(&conf);
	cni_env_free(&env);
	free(text);
	return ret ? 1 : 0;
}
