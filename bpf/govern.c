// SPDX-License-Identifier: MIT
/*
 * The governance loader: opens the slim_govern skeleton, sets this host's addresses, loads it,
 * attaches each program to the router's cgroup (bpf_links, so they go with the router), and
 * wraps the maps the router fills.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "govern.h"
#include "slim_govern.skel.h"

#define GOVERN_MAX_LINKS 12

struct govern {
	struct slim_govern_bpf *g_skel;
	bool g_reused;
	struct bpf_link *g_links[GOVERN_MAX_LINKS];
	unsigned g_nlinks;
	struct ring_buffer *g_ring;
	govern_event_fn g_fn;
	void *g_arg;
	int g_cgroup_fd;
	char g_pin_dir[PATH_MAX]; /* "" when nothing is pinned */
	struct slim_maglev_slot *g_maglev; /* slim_maglev, mapped (NULL until govern_maglev) */
};

static int govern_errno(int err)
{
	if (err < 0)
		return err;
	return errno ? -errno : -EINVAL;
}

static int govern_ring_cb(void *ctx, void *data, size_t len)
{
	struct govern *g = ctx;

	if (g->g_fn && len >= sizeof(struct slim_event))
		g->g_fn(data, g->g_arg);
	return 0;
}

/* Pins every map of ours (not the object's own .rodata/.bss) under dir: libbpf takes a pinned
 * map that is there and fits, else makes one and pins it. */
static int govern_pin_maps(struct govern *g, const char *dir)
{
	struct bpf_map *map;
	char path[PATH_MAX];
	struct stat st;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	bpf_object__for_each_map(map, g->g_skel->obj) {
		const char *name = bpf_map__name(map);

		if (strchr(name, '.'))
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
			return -ENAMETOOLONG;
		if (stat(path, &st) == 0)
			g->g_reused = true;
		if (bpf_map__set_pin_path(map, path))
			return govern_errno(0);
	}
	return 0;
}

/*
 * The link of prog to the cgroup, pinned under dir: the one pinned there by an earlier router,
 * with its program replaced atomically (no moment without governance), when it is attached to
 * this very cgroup; else a new one, pinned.
 */
static int govern_link_pinned(struct bpf_program *prog, int cgroup_fd, const char *dir,
			      struct bpf_link **out)
{
	char path[PATH_MAX];
	struct bpf_link *l;
	struct stat st;

	if (snprintf(path, sizeof(path), "%s/link_%s", dir, bpf_program__name(prog)) >=
	    (int)sizeof(path))
		return -ENAMETOOLONG;
	l = bpf_link__open(path);
	if (l) {
		struct bpf_link_info info = {0};
		uint32_t len = sizeof(info);

		if (fstat(cgroup_fd, &st) == 0 &&
		    bpf_obj_get_info_by_fd(bpf_link__fd(l), &info, &len) == 0 &&
		    info.type == BPF_LINK_TYPE_CGROUP && info.cgroup.cgroup_id == st.st_ino &&
		    bpf_link__update_program(l, prog) == 0) {
			*out = l;
			return 0;
		}
		/* Of a cgroup that is gone, or not replaceable: start afresh. */
		bpf_link__unpin(l);
		bpf_link__destroy(l);
	}
	l = bpf_program__attach_cgroup(prog, cgroup_fd);
	if (!l)
		return govern_errno(0);
	if (bpf_link__pin(l, path)) {
		int err = govern_errno(0);

		bpf_link__destroy(l);
		return err;
	}
	*out = l;
	return 0;
}

int govern_attach(struct govern *g)
{
	struct bpf_program *prog;
	int err = 0;

	if (g->g_nlinks)
		return -EALREADY;
	bpf_object__for_each_program(prog, g->g_skel->obj) {
		struct bpf_link *l = NULL;

		if (g->g_nlinks == GOVERN_MAX_LINKS) {
			err = -E2BIG;
			break;
		}
		if (g->g_pin_dir[0])
			err = govern_link_pinned(prog, g->g_cgroup_fd, g->g_pin_dir, &l);
		else if (!(l = bpf_program__attach_cgroup(prog, g->g_cgroup_fd)))
			err = govern_errno(0);
		if (err < 0)
			break;
		g->g_links[g->g_nlinks++] = l;
	}
	if (err < 0)
		while (g->g_nlinks)
			bpf_link__destroy(g->g_links[--g->g_nlinks]);
	return err;
}

int govern_relink(struct govern *g)
{
	struct bpf_program *prog;
	unsigned i = 0;
	int err = 0;

	bpf_object__for_each_program(prog, g->g_skel->obj) {
		if (i == g->g_nlinks)
			break;
		if (bpf_link__update_program(g->g_links[i++], prog) && !err)
			err = govern_errno(0);
	}
	return err;
}

bool govern_reused(struct govern *g)
{
	return g->g_reused;
}

int govern_open(const struct govern_config *cfg, struct govern **out)
{
	struct govern *g;
	int err;

	*out = NULL;
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->g_cgroup_fd = open(cfg->gc_cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (g->g_cgroup_fd < 0) {
		err = -errno;
		goto free_g;
	}
	g->g_skel = slim_govern_bpf__open();
	if (!g->g_skel) {
		err = govern_errno(0);
		goto close_cgroup;
	}
	g->g_skel->rodata->host_ip = cfg->gc_host_ip;
	g->g_skel->rodata->router_tgid = (__u32)cfg->gc_router_tgid;
	g->g_skel->rodata->overlay_net = cfg->gc_overlay_net;
	g->g_skel->rodata->overlay_mask = cfg->gc_overlay_mask;
	if (cfg->gc_pin_dir && (err = govern_pin_maps(g, cfg->gc_pin_dir)) < 0)
		goto destroy;
	err = slim_govern_bpf__load(g->g_skel);
	if (err) {
		err = govern_errno(err);
		goto destroy;
	}
	if (cfg->gc_pin_dir)
		snprintf(g->g_pin_dir, sizeof(g->g_pin_dir), "%s", cfg->gc_pin_dir);
	if (!cfg->gc_defer_attach && (err = govern_attach(g)) < 0)
		goto detach;
	g->g_ring = ring_buffer__new(bpf_map__fd(g->g_skel->maps.slim_events), govern_ring_cb, g,
				     NULL);
	if (!g->g_ring) {
		err = govern_errno(0);
		goto detach;
	}
	*out = g;
	return 0;

detach:
	while (g->g_nlinks)
		bpf_link__destroy(g->g_links[--g->g_nlinks]);
destroy:
	slim_govern_bpf__destroy(g->g_skel);
close_cgroup:
	close(g->g_cgroup_fd);
free_g:
	free(g);
	return err;
}

void govern_close(struct govern *g)
{
	if (!g)
		return;
	ring_buffer__free(g->g_ring);
	if (g->g_maglev)
		munmap(g->g_maglev, (size_t)SLIM_MAGLEV_SLOTS * sizeof(*g->g_maglev));
	while (g->g_nlinks)
		bpf_link__destroy(g->g_links[--g->g_nlinks]);
	slim_govern_bpf__destroy(g->g_skel);
	close(g->g_cgroup_fd);
	free(g);
}

static int govern_ret(int ret)
{
	return ret < 0 ? -errno : 0;
}

int govern_sk_map_fd(struct govern *g)
{
	return bpf_map__fd(g->g_skel->maps.slim_sk_map);
}

uint32_t govern_sk_map_id(struct govern *g)
{
	struct bpf_map_info info = {0};
	uint32_t len = sizeof(info);

	if (bpf_obj_get_info_by_fd(govern_sk_map_fd(g), &info, &len))
		return 0;
	return info.id;
}

int govern_sock_set(struct govern *g, int fd, const struct slim_sk *st)
{
	return govern_ret(
		bpf_map_update_elem(bpf_map__fd(g->g_skel->maps.slim_sk_map), &fd, st, BPF_ANY));
}

int govern_sock_get(struct govern *g, int fd, struct slim_sk *st)
{
	return govern_ret(bpf_map_lookup_elem(bpf_map__fd(g->g_skel->maps.slim_sk_map), &fd, st));
}

int govern_route_put(struct govern *g, const struct slim_route_key *k, const struct slim_route *r)
{
	return govern_ret(
		bpf_map_update_elem(bpf_map__fd(g->g_skel->maps.slim_routes), k, r, BPF_ANY));
}

int govern_route_get(struct govern *g, const struct slim_route_key *k, struct slim_route *r)
{
	return govern_ret(bpf_map_lookup_elem(bpf_map__fd(g->g_skel->maps.slim_routes), k, r));
}

int govern_route_del(struct govern *g, const struct slim_route_key *k)
{
	int ret = govern_ret(bpf_map_delete_elem(bpf_map__fd(g->g_skel->maps.slim_routes), k));

	return ret == -ENOENT ? 0 : ret;
}

/* Deletes every key of a hash map. A delete during the walk restarts it from the first key on
 * this kernel, so always ask for the first key again. */
static void govern_map_flush(int fd, size_t key_size)
{
	uint8_t key[64];

	if (key_size > sizeof(key))
		return;
	while (bpf_map_get_next_key(fd, NULL, key) == 0)
		if (bpf_map_delete_elem(fd, key) < 0 && errno != ENOENT)
			break;
}

static int govern_map_count(int fd, size_t key_size)
{
	uint8_t key[64], next[64];
	void *prev = NULL;
	int n = 0;

	if (key_size > sizeof(key))
		return -EINVAL;
	while (bpf_map_get_next_key(fd, prev, next) == 0) {
		n++;
		memcpy(key, next, key_size);
		prev = key;
	}
	return n;
}

void govern_routes_flush(struct govern *g)
{
	govern_map_flush(bpf_map__fd(g->g_skel->maps.slim_routes), sizeof(struct slim_route_key));
}

int govern_routes_drop(struct govern *g,
		       bool (*drop)(const struct slim_route_key *k, const struct slim_route *r,
				    void *arg),
		       void *arg)
{
	int fd = bpf_map__fd(g->g_skel->maps.slim_routes);
	struct slim_route_key key, next, *doomed = NULL;
	size_t n = 0, cap = 0;
	struct slim_route r;
	void *prev = NULL;
	int ret = 0;

	/* The walk first, then the deletes: a delete during a walk restarts it on this kernel. */
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		if (bpf_map_lookup_elem(fd, &next, &r) == 0 && drop(&next, &r, arg)) {
			if (n == cap) {
				size_t ncap = cap ? 2 * cap : 64;
				struct slim_route_key *d = realloc(doomed, ncap * sizeof(*d));

				if (!d) {
					ret = -ENOMEM;
					break;
				}
				doomed = d;
				cap = ncap;
			}
			doomed[n++] = next;
		}
		key = next;
		prev = &key;
	}
	for (size_t i = 0; i < n; i++)
		bpf_map_delete_elem(fd, &doomed[i]);
	free(doomed);
	return ret < 0 ? ret : (int)n;
}

int govern_pool_pending_set(struct govern *g, const struct slim_pool_pending *pp)
{
	static const struct slim_pool_pending none;
	uint32_t zero = 0;

	return govern_ret(bpf_map_update_elem(bpf_map__fd(g->g_skel->maps.slim_pool_pending),
					      &zero, pp ? pp : &none, BPF_ANY));
}

int govern_pool_pending_get(struct govern *g, struct slim_pool_pending *pp)
{
	uint32_t zero = 0;

	return govern_ret(
		bpf_map_lookup_elem(bpf_map__fd(g->g_skel->maps.slim_pool_pending), &zero, pp));
}

int govern_route_count(struct govern *g)
{
	return govern_map_count(bpf_map__fd(g->g_skel->maps.slim_routes),
				sizeof(struct slim_route_key));
}

int govern_verdict_put(struct govern *g, const struct slim_verdict_key *k, uint32_t verdict)
{
	return govern_ret(bpf_map_update_elem(bpf_map__fd(g->g_skel->maps.slim_verdicts), k,
					      &verdict, BPF_ANY));
}

void govern_verdicts_flush(struct govern *g)
{
	govern_map_flush(bpf_map__fd(g->g_skel->maps.slim_verdicts),
			 sizeof(struct slim_verdict_key));
}

int govern_node_put(struct govern *g, uint32_t fabric_ip, uint32_t pod_net, uint32_t pod_mask)
{
	struct slim_node n = {.nd_pod_net = pod_net, .nd_pod_mask = pod_mask};

	return govern_ret(
		bpf_map_update_elem(bpf_map__fd(g->g_skel->maps.slim_nodes), &fabric_ip, &n, BPF_ANY));
}

void govern_nodes_flush(struct govern *g)
{
	govern_map_flush(bpf_map__fd(g->g_skel->maps.slim_nodes), sizeof(uint32_t));
}

int govern_set_policy_active(struct govern *g, bool on)
{
	struct slim_settings s = {.st_policy_active = on};
	uint32_t zero = 0;

	return govern_ret(bpf_map_update_elem(bpf_map__fd(g->g_skel->maps.slim_settings), &zero,
					      &s, BPF_ANY));
}

int govern_service_put(struct govern *g, const struct slim_svc_key *k, const struct slim_svc *v)
{
	return govern_ret(
		bpf_map_update_elem(bpf_map__fd(g->g_skel->maps.slim_services), k, v, BPF_ANY));
}

int govern_service_del(struct govern *g, const struct slim_svc_key *k)
{
	int ret = govern_ret(bpf_map_delete_elem(bpf_map__fd(g->g_skel->maps.slim_services), k));

	return ret == -ENOENT ? 0 : ret;
}

void govern_services_flush(struct govern *g)
{
	govern_map_flush(bpf_map__fd(g->g_skel->maps.slim_services), sizeof(struct slim_svc_key));
}

struct slim_maglev_slot *govern_maglev(struct govern *g)
{
	void *p;

	if (g->g_maglev)
		return g->g_maglev;
	/* A write through the mapping is a store the programs see: no syscall per slot. */
	p = mmap(NULL, (size_t)SLIM_MAGLEV_SLOTS * sizeof(*g->g_maglev), PROT_READ | PROT_WRITE,
		 MAP_SHARED, bpf_map__fd(g->g_skel->maps.slim_maglev), 0);
	if (p == MAP_FAILED)
		return NULL;
	g->g_maglev = p;
	return p;
}

int govern_events_fd(struct govern *g)
{
	return ring_buffer__epoll_fd(g->g_ring);
}

int govern_events_drain(struct govern *g, govern_event_fn fn, void *arg)
{
	int ret;

	g->g_fn = fn;
	g->g_arg = arg;
	ret = ring_buffer__consume(g->g_ring);
	g->g_fn = NULL;
	return ret < 0 ? ret : 0;
}

void govern_stats(struct govern *g, struct slim_govern_stats *st)
{
	const struct slim_govern_stats *s = &g->g_skel->bss->stats;

	/* Each field is written with atomic adds by every CPU: read them one by one. */
#define GOVERN_LOAD(f) st->f = __atomic_load_n(&s->f, __ATOMIC_RELAXED)
	GOVERN_LOAD(gs_connect_ok);
	GOVERN_LOAD(gs_connect_miss);
	GOVERN_LOAD(gs_connect_fallback);
	GOVERN_LOAD(gs_connect_denied);
	GOVERN_LOAD(gs_connect_refused);
	GOVERN_LOAD(gs_bind_denied);
	GOVERN_LOAD(gs_sockopt_denied);
	GOVERN_LOAD(gs_listen_confined);
	GOVERN_LOAD(gs_accept_ok);
	GOVERN_LOAD(gs_accept_anon);
	GOVERN_LOAD(gs_syn_dropped);
	GOVERN_LOAD(gs_ident_written);
	GOVERN_LOAD(gs_events_lost);
	GOVERN_LOAD(gs_connect_service);
	GOVERN_LOAD(gs_connect_no_backend);
	GOVERN_LOAD(gs_pool_made);
#undef GOVERN_LOAD
}

void govern_setup_hist(struct govern *g, enum slim_setup_path path, struct slim_setup_hist *h)
{
	const struct slim_setup_hist *s = &g->g_skel->bss->setup_hist[path];

	for (int i = 0; i <= SLIM_SETUP_BOUNDS; i++)
		h->sh_bucket[i] = __atomic_load_n(&s->sh_bucket[i], __ATOMIC_RELAXED);
	h->sh_sum_ns = __atomic_load_n(&s->sh_sum_ns, __ATOMIC_RELAXED);
}
