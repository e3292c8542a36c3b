// SPDX-License-Identifier: MIT
/*
 * What a restarted router must know again and only the router knew: the pods registered with
 * it and the host listeners it made for them. Kept in a file of its own (--state), rewritten
 * whole (and renamed into place) on every change, read back at start-up; and the Service
 * document in force, as it came, in FILE.services (rewritten only when a new one is applied:
 * it may be megabytes). Everything else comes
 * back without it: connections and routes are in the kernel (the governance maps are pinned),
 * other nodes re-announce their pods, and shims ask again.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "log.h"
#include "router.h"

static char *state_path;
static bool state_loading; /* no saves while the file itself is being replayed */

static json_t *state_ip(uint32_t ip)
{
	char a[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &ip, a, sizeof(a));
	return json_string(a);
}

void state_save(void)
{
	json_t *doc, *pods, *listeners;
	char tmp[4096];
	int ret;

	if (!state_path || state_loading)
		return;
	pods = json_array();
	listeners = json_array();
	pod_foreach(state_add_pod_json, pods);
	listener_foreach(state_add_listener_json, listeners);
	doc = json_pack("{s:i, s:o, s:o}", "version", 1, "pods", pods, "listeners", listeners);
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", state_path) >= (int)sizeof(tmp)) {
		json_decref(doc);
		return;
	}
	ret = doc ? json_dump_file(doc, tmp, JSON_COMPACT) : -1;
	json_decref(doc);
	if (ret < 0 || rename(tmp, state_path) < 0)
		log_warn("%s: %s", __func__, state_path);
}

int state_replace_file(const char *path, const char *text, size_t len)
{
	char tmp[4096];
	size_t off = 0;
	int fd, ret = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	while (off < len && !ret) {
		ssize_t n = write(fd, text + off, len - off);

		if (n > 0)
			off += (size_t)n;
		else if (n < 0 && errno != EINTR)
			ret = -errno;
		else if (n == 0)
			ret = -EIO;
	}
	if (close(fd) < 0 && !ret)
		ret = -errno;
	if (!ret && rename(tmp, path) < 0)
		ret = -errno;
	if (ret)
		unlink(tmp);
	return ret;
}

static int state_services_path(char *buf, size_t len)
{
	return snprintf(buf, len, "%s.services", state_path) >= (int)len ? -ENAMETOOLONG : 0;
}

void state_save_services(const char *text, size_t len)
{
	char path[4096];
	int ret;

	if (!state_path || state_loading)
		return;
	ret = state_services_path(path, sizeof(path));
	if (!ret)
		ret = state_replace_file(path, text, len);
	if (ret)
		log_warnx("%s: %s.services: %s", __func__, state_path, strerror(-ret));
}

/* The Service document a router before us had in force, if any. */
static void state_load_services(void)
{
	char path[4096], err[512];
	struct service_doc *d;
	char *text = NULL;
	size_t len = 0;
	FILE *f;
	int ret;

	if (state_services_path(path, sizeof(path)) || !(f = fopen(path, "re")))
		return;
	{
		char buf[65536];
		size_t n;
		FILE *m = open_memstream(&text, &len);

		while (m && (n = fread(buf, 1, sizeof(buf), f)) > 0)
			fwrite(buf, 1, n, m);
		if (m)
			fclose(m);
	}
	fclose(f);
	if (!text)
		return;
	ret = service_parse(text, len, path, &router.r_cluster->cl_services,
			    &router.r_cluster->cl_overlay, &d, err, sizeof(err));
	free(text);
	if (ret < 0) {
		log_warnx("state: %s: services not taken back", err[0] ? err : strerror(-ret));
		return;
	}
	service_restore(d);
	log_info("state %s: %zu services again", path, service_count());
}

void state_add_pod_json(const struct pod *p, void *arg)
{
	json_array_append_new(arg, json_pack("{s:s, s:o, s:s, s:O}", "name", p->p_name, "ip",
					     state_ip(p->p_ip), "netns", p->p_netns, "labels",
					     p->p_labels));
}

void state_add_listener_json(const struct listener *l, void *arg)
{
	char cookie[24];

	snprintf(cookie, sizeof(cookie), "%llu", (unsigned long long)l->l_cookie);
	json_array_append_new(arg, json_pack("{s:o, s:i, s:o, s:o, s:i, s:s, s:i}", "ip",
					     state_ip(l->l_ip), "port", ntohs(l->l_port), "bound",
					     state_ip(l->l_bound_ip), "host_ip",
					     state_ip(l->l_host_ip), "host_port",
					     ntohs(l->l_host_port), "cookie", cookie, "sockets",
					     (int)l->l_nsockets));
}

static bool state_ip_of(json_t *o, const char *key, uint32_t *ip)
{
	const char *s = json_string_value(json_object_get(o, key));
	struct in_addr a;

	if (!s || inet_pton(AF_INET, s, &a) != 1)
		return false;
	*ip = a.s_addr;
	return true;
}

static void state_load_pod(json_t *o)
{
	const char *name = json_string_value(json_object_get(o, "name"));
	const char *netns = json_string_value(json_object_get(o, "netns"));
	json_t *labels = json_object_get(o, "labels");
	char err[256];
	struct pod *p;
	uint32_t ip;
	int fd;

	if (!name || !netns || !state_ip_of(o, "ip", &ip) || (labels && !json_is_object(labels)))
		return;
	/* A path the router wrote itself, of a namespace it was given before: not a caller's. */
	fd = open(netns, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		log_info("state: pod %s: %s is gone: not registered again", name, netns);
		return;
	}
	if (pod_add(netns, fd, ip, name, labels, &p, err, sizeof(err)) < 0)
		log_warnx("state: pod %s: %s", name, err);
	else
		podsync_pod_changed(p, true);
	close(fd);
}

void state_load_listener(json_t *o)
{
	json_t *port = json_object_get(o, "port"), *hport = json_object_get(o, "host_port");
	const char *cookie = json_string_value(json_object_get(o, "cookie"));
	json_t *sockets = json_object_get(o, "sockets");
	uint32_t ip, bound, host_ip;
	struct listener *l = NULL;
	struct pod *p;

	if (!state_ip_of(o, "ip", &ip) || !state_ip_of(o, "bound", &bound) ||
	    !state_ip_of(o, "host_ip", &host_ip) || !json_is_integer(port) ||
	    !json_is_integer(hport) || !(p = pod_find_ip(ip)))
		return;
	listener_add(p, htons((uint16_t)json_integer_value(port)), bound, host_ip,
		     htons((uint16_t)json_integer_value(hport)),
		     cookie ? strtoull(cookie, NULL, 10) : 0, &l);
	if (l && json_integer_value(sockets) > 0)
		l->l_nsockets = (unsigned)json_integer_value(sockets);
}

int state_open(const char *path)
{
	json_error_t jerr;
	json_t *doc, *v;
	size_t i;

	state_path = strdup(path);
	if (!state_path)
		return -ENOMEM;
	doc = json_load_file(path, 0, &jerr);
	if (!doc) {
		if (access(path, F_OK) == 0)
			log_warnx("state %s: %s (line %d): starting empty", path, jerr.text,
				  jerr.line);
		return 0;
	}
	state_loading = true;
	json_array_foreach(json_object_get(doc, "pods"), i, v)
		state_load_pod(v);
	json_array_foreach(json_object_get(doc, "listeners"), i, v)
		state_load_listener(v);
	state_load_services();
	state_loading = false;
	json_decref(doc);
	/* Host listeners that closed while we were down go, and other nodes are told. */
	listener_gc();
	log_info("state %s: %zu pods, %zu listeners again", path, pod_count(), listener_count());
	state_save();
	return 0;
}

int state_adopt(const char *path)
{
	state_path = strdup(path);
	return state_path ? 0 : -ENOMEM;
}

void state_close(void)
{
	free(state_path);
	state_path = NULL;
}
