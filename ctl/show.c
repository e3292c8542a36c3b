// SPDX-License-Identifier: MIT
/* slimctl's output: the router's JSON answers as fixed-width columns. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"

/* A string member, or "-" when absent (an older or newer router may omit fields). */
static const char *show_str(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "-";
}

static long long show_int(json_t *o, const char *key)
{
	return (long long)json_integer_value(json_object_get(o, key));
}

static void show_labels(json_t *labels, char *buf, size_t len)
{
	const char *key;
	size_t off = 0;
	json_t *v;

	buf[0] = '\0';
	json_object_foreach(labels, key, v) {
		int n = snprintf(buf + off, len - off, "%s%s=%s", off ? "," : "", key,
				 json_string_value(v) ? json_string_value(v) : "");

		if (n < 0 || (size_t)n >= len - off)
			break;
		off += (size_t)n;
	}
	if (!off)
		snprintf(buf, len, "-");
}

void ctl_show_pod_added(json_t *rep)
{
	json_t *p = json_object_get(rep, "pod");

	printf("pod %s added: ip %s netns %s\n", show_str(p, "name"), show_str(p, "ip"),
	       show_str(p, "netns"));
}

void ctl_show_pod_deleted(json_t *rep)
{
	json_t *p = json_object_get(rep, "pod");

	printf("pod %s deleted (ip %s)\n", show_str(p, "name"), show_str(p, "ip"));
}

void ctl_show_pods(json_t *rep)
{
	json_t *pods = json_object_get(rep, "pods"), *p;
	char labels[512];
	size_t i;

	printf("%-16s %-15s %-9s %-36s %s\n", "NAME", "IP", "LISTENERS", "NETNS", "LABELS");
	json_array_foreach(pods, i, p) {
		show_labels(json_object_get(p, "labels"), labels, sizeof(labels));
		printf("%-16s %-15s %-9lld %-36s %s\n", show_str(p, "name"), show_str(p, "ip"),
		       show_int(p, "listeners"), show_str(p, "netns"), labels);
	}
}

void ctl_show_conns(json_t *rep)
{
	json_t *conns = json_object_get(rep, "conns"), *c;
	size_t i;

	printf("%-21s %-21s %-21s %-21s %-16s %-4s %s\n", "OVERLAY-SRC", "OVERLAY-DST", "HOST-SRC",
	       "HOST-DST", "POD", "DIR", "PATH");
	json_array_foreach(conns, i, c)
		printf("%-21s %-21s %-21s %-21s %-16s %-4s %s\n", show_str(c, "overlay_src"),
		       show_str(c, "overlay_dst"), show_str(c, "host_src"), show_str(c, "host_dst"),
		       show_str(c, "pod"), show_str(c, "dir"),
		       json_is_true(json_object_get(c, "accelerated")) ? "sockmap" : "tcp");
}

void ctl_show_listeners(json_t *rep)
{
	json_t *ls = json_object_get(rep, "listeners"), *l;
	size_t i;

	printf("%-16s %-21s %-21s %s\n", "POD", "OVERLAY", "HOST", "SOCKETS");
	json_array_foreach(ls, i, l)
		printf("%-16s %-21s %-21s %lld\n", show_str(l, "pod"), show_str(l, "overlay"),
		       show_str(l, "host"), show_int(l, "sockets"));
}

void ctl_show_status(json_t *rep)
{
	json_t *nodes = json_object_get(rep, "nodes"), *peers = json_object_get(rep, "peers");
	json_t *counters = json_object_get(rep, "counters"), *n;
	size_t i;

	printf("%-12s %s\n", "node:", show_str(rep, "node"));
	printf("%-12s %s:%lld\n", "fabric:", show_str(rep, "fabric_ip"),
	       show_int(rep, "peer_port"));
	printf("%-12s %s\n", "cluster:", show_str(rep, "cluster"));
	printf("%-12s %lld\n", "pods:", show_int(rep, "pods"));
	printf("%-12s %lld\n", "listeners:", show_int(rep, "listeners"));
	printf("%-12s %lld\n", "conns:", show_int(rep, "conns"));
	printf("%-12s %lld\n", "clients:", show_int(rep, "clients"));
	printf("%-12s %lld cached, %lld in flight\n", "resolution:", show_int(rep, "cache"),
	       show_int(rep, "resolving"));
	printf("%-12s %lld connect, %lld fallback, %lld listen\n",
	       "handled:", show_int(counters, "connect"), show_int(counters, "fallback"),
	       show_int(counters, "listen"));
	printf("%-12s %lld s\n", "uptime:", show_int(rep, "uptime"));
	{
		json_t *fp = json_object_get(rep, "fastpath");

		if (json_is_true(json_object_get(fp, "enabled")))
			printf("%-12s on (%s): %lld sockets mapped, %lld sends redirected, %lld "
			       "repeated segments cut (%lld not)\n",
			       "fastpath:", show_str(fp, "cgroup"), show_int(fp, "entries"),
			       show_int(fp, "redirected"), show_int(fp, "repeats_cut"),
			       show_int(fp, "repeats_uncut"));
		else
			printf("%-12s off (%s)\n", "fastpath:", show_str(fp, "reason"));
	}
	{
		json_t *st = json_object_get(rep, "store");

		if (st)
			printf("%-12s %s %s%s, revision %lld, %zu nodes%s%s\n", "store:",
			       show_str(st, "state"), show_str(st, "url"), show_str(st, "prefix"),
			       show_int(st, "revision"), json_object_size(json_object_get(st, "nodes")),
			       *show_str(st, "last_error") ? "; last error: " : "",
			       show_str(st, "last_error"));
	}
	printf("\n%-16s %-15s %-18s %s\n", "NODE", "FABRIC-IP", "POD-CIDR", "");
	json_array_foreach(nodes, i, n)
		printf("%-16s %-15s %-18s %s\n", show_str(n, "name"), show_str(n, "fabric_ip"),
		       show_str(n, "pod_cidr"),
		       json_is_true(json_object_get(n, "self")) ? "(self)" : "");
	if (json_array_size(peers)) {
		printf("\n%-16s %-21s %-4s %s\n", "PEER", "ADDRESS", "DIR", "STATE");
		json_array_foreach(peers, i, n)
			printf("%-16s %-21s %-4s %s\n", show_str(n, "node"), show_str(n, "addr"),
			       show_str(n, "dir"),
			       json_is_true(json_object_get(n, "connected")) ? "connected"
									     : "connecting");
	}
}

/* With a cluster store the router stored the document; every router applies it from there. */
static bool show_stored(json_t *rep, const char *what)
{
	if (!json_is_true(json_object_get(rep, "stored")))
		return false;
	printf("stored %s in the cluster store at revision %lld: %lld %s; every router applies it\n",
	       show_str(rep, "origin"), show_int(rep, "revision"), show_int(rep, what), what);
	return true;
}

void ctl_show_policy_applied(json_t *rep)
{
	if (show_stored(rep, "policies"))
		return;
	printf("applied %s: %lld policies, %lld rules; revoked %lld of %lld connections; "
	       "overlay filter %s; %lld us\n",
	       show_str(rep, "origin"), show_int(rep, "policies"), show_int(rep, "rules"),
	       show_int(rep, "revoked"), show_int(rep, "checked"),
	       json_is_true(json_object_get(rep, "overlay_filter")) ? "ok" : "FAILED",
	       show_int(rep, "usec"));
}

void ctl_show_policy(json_t *rep)
{
	json_t *p = json_object_get(rep, "policy");
	json_t *items = json_object_get(json_object_get(p, "document"), "policies");
	json_t *it;
	size_t i;

	printf("policy %s: %lld policies, %lld rules, %lld selected pods, %lld compiled entries; "
	       "%lld checks, %lld denied\n",
	       json_is_string(json_object_get(p, "origin")) ? show_str(p, "origin") : "(none)",
	       show_int(p, "policies"), show_int(p, "rules"), show_int(p, "selected_pods"),
	       show_int(p, "entries"), show_int(p, "checks"), show_int(p, "denied"));
	json_array_foreach(items, i, it) {
		char sel[256];

		show_labels(json_object_get(json_object_get(it, "podSelector"), "matchLabels"), sel,
			    sizeof(sel));
		printf("  %-24s pods %-28s ingress %zu rules, egress %zu rules\n",
		       show_str(it, "name"), strcmp(sel, "-") ? sel : "(all)",
		       json_array_size(json_object_get(it, "ingress")),
		       json_array_size(json_object_get(it, "egress")));
	}
}

void ctl_show_upgraded(json_t *rep)
{
	printf("upgraded: pid %lld took over from pid %lld (%lld pods, %lld clients; requests "
	       "waited %.1f ms)\n",
	       (long long)json_integer_value(json_object_get(rep, "pid")),
	       (long long)json_integer_value(json_object_get(rep, "old_pid")),
	       (long long)json_integer_value(json_object_get(rep, "pods")),
	       (long long)json_integer_value(json_object_get(rep, "clients")),
	       (double)json_integer_value(json_object_get(rep, "paused_us")) / 1000.0);
}

void ctl_show_directory(json_t *rep)
{
	json_t *pods = json_object_get(rep, "pods"), *p;
	size_t i;

	printf("%-16s %-16s %-10s %-6s %s\n", "IP", "NAME", "NODE", "LOCAL", "LABELS");
	json_array_foreach(pods, i, p) {
		char labels[512];

		show_labels(json_object_get(p, "labels"), labels, sizeof(labels));
		printf("%-16s %-16s %-10s %-6s %s\n", show_str(p, "ip"), show_str(p, "name"),
		       show_str(p, "node"),
		       json_is_true(json_object_get(p, "local")) ? "yes" : "no", labels);
	}
}

void ctl_show_pod_set(json_t *rep)
{
	json_t *q = json_object_get(rep, "qos");
	json_t *prio = json_object_get(q, "priority");
	char p[24] = "none";

	if (json_is_integer(prio))
		snprintf(p, sizeof(p), "%lld", (long long)json_integer_value(prio));
	printf("pod %s: egress rate %s, priority %s\n", show_str(rep, "name"),
	       json_is_string(json_object_get(q, "egress_rate")) ? show_str(q, "egress_rate")
								 : "unlimited",
	       p);
}

void ctl_show_pod_labeled(json_t *rep)
{
	json_t *p = json_object_get(rep, "pod");
	char labels[512];

	show_labels(json_object_get(p, "labels"), labels, sizeof(labels));
	printf("pod %s: labels %s\n", show_str(p, "name"), labels);
}

void ctl_show_services_applied(json_t *rep)
{
	if (show_stored(rep, "services"))
		return;
	printf("applied %s: %lld services; reset %lld connections; in force %lld ms after the "
	       "request\n",
	       show_str(rep, "origin"), show_int(rep, "services"), show_int(rep, "revoked"),
	       show_int(rep, "total_ms"));
}

void ctl_show_services(json_t *rep)
{
	json_t *list = json_object_get(rep, "services"), *sv, *v;
	size_t i, k;

	printf("%-20s %-15s %-16s %-9s %-8s %s\n", "NAME", "IP", "PORTS", "AFFINITY", "SLOTS",
	       "BACKENDS");
	json_array_foreach(list, i, sv) {
		char ports[128] = "", backends[512] = "";
		size_t off = 0;

		json_array_foreach(json_object_get(sv, "ports"), k, v) {
			int n = snprintf(ports + off, sizeof(ports) - off, "%s%lld->%lld",
					 off ? "," : "", show_int(v, "port"),
					 show_int(v, "targetPort"));

			if (n < 0 || (size_t)n >= sizeof(ports) - off)
				break;
			off += (size_t)n;
		}
		off = 0;
		json_array_foreach(json_object_get(sv, "backends"), k, v) {
			int n = snprintf(backends + off, sizeof(backends) - off, "%s%s",
					 off ? "," : "", json_string_value(v));

			if (n < 0 || (size_t)n >= sizeof(backends) - off)
				break;
			off += (size_t)n;
		}
		printf("%-20s %-15s %-16s %-9s %-8lld %s\n", show_str(sv, "name"), show_str(sv, "ip"),
		       ports, show_str(sv, "sessionAffinity"), show_int(sv, "table_size"),
		       off ? backends : "(none)");
	}
}
