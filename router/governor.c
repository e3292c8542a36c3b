// SPDX-License-Identifier: MIT
/*
 * The router's side of governed host sockets: its own cgroup v2 directory (the sockets it
 * creates belong to it, and the BPF programs attached there govern them wherever they go), the
 * governance programs (bpf/govern.c) and the same-host fast path on top, the kernel's route and
 * verdict maps the router fills, and the events the kernel sends back (connections made,
 * refused, pool sockets misused).
 */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "cgroup.h"
#include "govern.h"
#include "log.h"
#include "router.h"

static struct govern *governor;
static char governor_cgroup[PATH_MAX];
static char governor_parent[PATH_MAX]; /* "slim/": removed with the last router using it */
static char governor_root[PATH_MAX];
static char governor_why_off[160] = "not started";
static uint64_t governor_naccepted, governor_ndestroyed;

/*
 * The cgroup v2 hierarchy. Under `ip netns exec` /sys is a fresh sysfs without it; then mount it
 * ourselves, in a mount namespace of our own so nothing leaks to the host.
 */
static int governor_cgroup_root(char *buf, size_t len)
{
	static const char mnt[] = "/sys/fs/cgroup";

	if (cgroup_v2_mount(buf, len) == 0)
		return 0;
	if (unshare(CLONE_NEWNS) < 0)
		return -errno;
	/* Slave: netns bind mounts made later on the host still reach us (pod add). */
	if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
		return -errno;
	if (mount("cgroup2", mnt, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		return -errno;
	if (strlen(mnt) >= len)
		return -ENAMETOOLONG;
	strcpy(buf, mnt);
	return 0;
}

static uint64_t governor_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* What a pod can trigger is logged at most a few times a second, so it cannot flood the log. */
static bool governor_may_log(void)
{
	static uint64_t window, count;
	uint64_t now = governor_now_ns() / 1000000000ull;

	if (now != window) {
		window = now;
		count = 0;
	}
	return ++count <= 5;
}

/* Destroys the socket with this host 4-tuple (src = its own end). */
static void governor_destroy(uint32_t lip, uint16_t lport, uint32_t rip, uint16_t rport,
			     const char *why)
{
	struct tuple4 t = {.src_ip = lip, .dst_ip = rip, .src_port = lport, .dst_port = rport};
	char a[ADDR_STRLEN];
	int ret = sockdiag_destroy(&t);

	governor_ndestroyed++;
	if (governor_may_log())
		log_warnx("destroyed %s (%s): %s", addr_str(a, sizeof(a), lip, lport), why,
			  ret < 0 ? strerror(-ret) : "ok");
}

static void governor_event(const struct slim_event *ev, void *arg)
{
	struct tuple4 host = {ev->ev_host_local_ip, ev->ev_host_remote_ip, ev->ev_host_local_port,
			      ev->ev_host_remote_port};
	struct tuple4 overlay = {ev->ev_ovl_src_ip, ev->ev_ovl_dst_ip, ev->ev_ovl_src_port,
				 ev->ev_ovl_dst_port};

	switch (ev->ev_type) {
	case SLIM_EV_CONN:
		/* An accepted connection (the kernel keeps its record; see conn.c). */
		if (ev->ev_flags & SLIM_SK_ANONYMOUS) {
			governor_destroy(host.src_ip, host.src_port, host.dst_ip, host.dst_port,
					 "accepted without an identity");
			break;
		}
		governor_naccepted++;
		/* Accepted after a policy change the client's router had not seen yet. */
		if (!(ev->ev_flags & SLIM_SK_LOOPBACK))
			enforce_accepted(&overlay);
		break;
	case SLIM_EV_CONFINED:
		governor_destroy(host.src_ip, host.src_port, 0, 0, "a pod made a pool socket listen");
		break;
	case SLIM_EV_REFUSED:
		/* The route that sent it there may be stale: the next connect resolves afresh. */
		route_forget(ev->ev_ovl_dst_ip, ev->ev_ovl_dst_port, ev->ev_pod_ip);
		break;
	}
}

static void governor_readable(struct event_loop *loop, int fd, uint32_t events, void *arg)
{
	govern_events_drain(governor, governor_event, NULL);
}

/* Connections arrive without a wakeup each (see slim_govern.bpf.c): take them in batches. */
#define GOVERNOR_DRAIN_MS 50

static long governor_drain_timer(struct event_loop *loop, void *arg)
{
	if (!governor)
		return EVENT_TIMER_STOP;
	govern_events_drain(governor, governor_event, NULL);
	return GOVERNOR_DRAIN_MS;
}

void governor_drain(void)
{
	if (governor)
		govern_events_drain(governor, governor_event, NULL);
}

int governor_dump(uint32_t states, sockdiag_fn fn, void *arg)
{
	if (!governor)
		return 0;
	return sockdiag_dump_storage(states, govern_sk_map_fd(governor), govern_sk_map_id(governor),
				     sizeof(struct slim_sk), fn, arg);
}

int governor_start(const char *cgroup_name, bool sockmap, const char *pin_dir, bool takeover)
{
	struct govern_config cfg = {
		.gc_host_ip = router.r_fabric_ip,
		.gc_overlay_net = router.r_cluster->cl_overlay.net,
		.gc_overlay_mask = router.r_cluster->cl_overlay.mask,
		.gc_router_tgid = getpid(),
	};
	char root[PATH_MAX], parent[PATH_MAX];
	const char *step;
	int ret;

	step = "cgroup v2";
	ret = governor_cgroup_root(root, sizeof(root));
	if (ret < 0)
		goto off;
	step = "cgroup directory";
	if (snprintf(governor_cgroup, sizeof(governor_cgroup), "%s/%s", root, cgroup_name) >=
	    (int)sizeof(governor_cgroup)) {
		ret = -ENAMETOOLONG;
		goto off;
	}
	/* The name may have one level of parent ("slim/NAME"): create it, shared by routers. */
	snprintf(parent, sizeof(parent), "%s", governor_cgroup);
	*strrchr(parent, '/') = '\0';
	if (strcmp(parent, root)) {
		if (mkdir(parent, 0755) < 0 && errno != EEXIST) {
			ret = -errno;
			goto off;
		}
		snprintf(governor_parent, sizeof(governor_parent), "%s", parent);
		snprintf(governor_root, sizeof(governor_root), "%s", root);
	}
	ret = cgroup_enter(governor_cgroup);
	if (ret < 0)
		goto off;
	step = "BPF programs";
	cfg.gc_cgroup = governor_cgroup;
	cfg.gc_pin_dir = pin_dir;
	cfg.gc_defer_attach = takeover;
	ret = govern_open(&cfg, &governor);
	if (ret < 0)
		goto leave;
	ret = event_add(router.r_loop, govern_events_fd(governor), EVENT_READ, governor_readable,
			NULL);
	if (ret < 0)
		goto close;
	event_timer_add(router.r_loop, GOVERNOR_DRAIN_MS, governor_drain_timer, NULL);
	if (takeover) {
		/* The running router's maps stay as they are: it serves from them until it stops,
		 * and hands over the state they were made from (upgrade.c). The fast path may
		 * start now (loading it takes tens of ms): while both are attached, a new socket
		 * joins the running router's map, whose programs keep serving it after it exits. */
		log_info("governance loaded, to be attached to %s when the running router stops",
			 governor_cgroup);
		if (sockmap)
			fastpath_start(governor_cgroup);
		return 0;
	}
	governor_cluster_changed();
	governor_policy_changed();
	/* After a crash the services come back from the state file (state.c): none until then. */
	govern_services_flush(governor);
	log_info("governed host sockets on: programs attached to %s", governor_cgroup);
	if (pin_dir)
		log_info("governance pinned in %s%s", pin_dir,
			 govern_reused(governor) ? ": state taken over from the router before" : "");
	if (sockmap)
		fastpath_start(governor_cgroup);
	return 0;
close:
	govern_close(governor);
	governor = NULL;
leave:
	cgroup_leave(governor_cgroup);
off:
	snprintf(governor_why_off, sizeof(governor_why_off), "%s: %s", step, strerror(-ret));
	governor_cgroup[0] = '\0';
	log_warnx("governed host sockets off (%s): every connection takes the overlay",
		  governor_why_off);
	return ret;
}

int governor_commit(void)
{
	const struct cluster *cl = router.r_cluster;
	int ret;

	if (!governor)
		return -ENOTCONN;
	ret = govern_attach(governor);
	if (ret < 0)
		return ret;
	/* Overwritten, not flushed: the running router's entries serve until the last moment. */
	for (size_t i = 0; i < cl->cl_nnodes; i++)
		govern_node_put(governor, cl->cl_nodes[i].cn_fabric_ip,
				cl->cl_nodes[i].cn_pod_cidr.net, cl->cl_nodes[i].cn_pod_cidr.mask);
	govern_set_policy_active(governor, policy_current() != NULL);
	log_info("governed host sockets on: programs attached to %s (taken over)",
		 governor_cgroup);
	return 0;
}

int governor_relink(void)
{
	return governor ? govern_relink(governor) : 0;
}

void governor_stop(void)
{
	if (!governor)
		return;
	fastpath_stop();
	event_del(router.r_loop, govern_events_fd(governor));
	/* Sockets already handed out keep their state and programs until they close. */
	govern_close(governor);
	governor = NULL;
	cgroup_leave(governor_cgroup);
	/* Fails (EBUSY) while another router still has its directory there, as it should. */
	if (governor_parent[0] && cgroup_enter(governor_root) == 0)
		rmdir(governor_parent);
}

bool governor_enabled(void)
{
	return governor != NULL;
}

int governor_sock_set(int fd, const struct slim_sk *st)
{
	return governor ? govern_sock_set(governor, fd, st) : -ENOTCONN;
}

void governor_route_put(uint32_t ip, uint16_t port, uint32_t scope, uint32_t host_ip,
			uint16_t host_port, uint16_t flags, unsigned ttl_ms)
{
	struct slim_route_key k = {.rk_ip = ip, .rk_scope = scope, .rk_port = port};
	struct slim_route r = {
		.rt_host_ip = host_ip,
		.rt_host_port = host_port,
		.rt_flags = flags,
		.rt_expires_ns = ttl_ms ? governor_now_ns() + ttl_ms * 1000000ull : 0,
	};
	int ret;

	if (!governor)
		return;
	ret = govern_route_put(governor, &k, &r);
	if (ret < 0 && governor_may_log())
		log_warnx("%s: %s", __func__, strerror(-ret));
}

int governor_sock_get(int fd, struct slim_sk *st)
{
	return governor ? govern_sock_get(governor, fd, st) : -ENOTCONN;
}

int governor_pool_pending(const struct slim_pool_pending *pp)
{
	return governor ? govern_pool_pending_set(governor, pp) : -ENOTCONN;
}

int governor_pool_pending_end(struct slim_pool_pending *pp)
{
	int ret;

	if (!governor)
		return -ENOTCONN;
	ret = govern_pool_pending_get(governor, pp);
	/* Whatever the read gave: no socket of ours may be taken for a pod's after this. */
	if (govern_pool_pending_set(governor, NULL) < 0 && ret == 0)
		ret = -EIO;
	return ret;
}

int governor_service_put(uint32_t vip, uint16_t port, const struct slim_svc *v)
{
	struct slim_svc_key k = {.sk_ip = vip, .sk_port = port};

	return governor ? govern_service_put(governor, &k, v) : 0;
}

void governor_service_del(uint32_t vip, uint16_t port)
{
	struct slim_svc_key k = {.sk_ip = vip, .sk_port = port};

	if (governor)
		govern_service_del(governor, &k);
}

struct slim_maglev_slot *governor_maglev(void)
{
	return governor ? govern_maglev(governor) : NULL;
}

static bool governor_route_of_node(const struct slim_route_key *k, const struct slim_route *r,
				   void *arg)
{
	/* Loopback routes (scoped to a pod) lead to this node's own listeners. */
	return !k->rk_scope && cluster_owner(router.r_cluster, k->rk_ip) == arg;
}

void governor_routes_drop_node(const struct cluster_node *node)
{
	if (governor && node)
		govern_routes_drop(governor, governor_route_of_node, (void *)node);
}

void governor_route_del(uint32_t ip, uint16_t port, uint32_t scope)
{
	struct slim_route_key k = {.rk_ip = ip, .rk_scope = scope, .rk_port = port};

	if (governor)
		govern_route_del(governor, &k);
}

void governor_verdict_put(uint32_t src, uint32_t dst, uint16_t port, bool allow)
{
	struct slim_verdict_key k = {.vk_src = src, .vk_dst = dst, .vk_port = port};

	if (governor)
		govern_verdict_put(governor, &k, allow ? SLIM_VERDICT_ALLOW : SLIM_VERDICT_DENY);
}

void governor_policy_changed(void)
{
	if (!governor)
		return;
	/* Every verdict may have changed: connects ask again, once per pod and destination. */
	govern_verdicts_flush(governor);
	govern_set_policy_active(governor, policy_current() != NULL);
}

void governor_cluster_changed(void)
{
	const struct cluster *cl = router.r_cluster;

	if (!governor)
		return;
	govern_nodes_flush(governor);
	for (size_t i = 0; i < cl->cl_nnodes; i++)
		govern_node_put(governor, cl->cl_nodes[i].cn_fabric_ip,
				cl->cl_nodes[i].cn_pod_cidr.net, cl->cl_nodes[i].cn_pod_cidr.mask);
}

int governor_stats(struct slim_govern_stats *s, unsigned *routes)
{
	int n;

	if (!governor)
		return -ENOTCONN;
	govern_stats(governor, s);
	n = govern_route_count(governor);
	*routes = n < 0 ? 0 : (unsigned)n;
	return 0;
}

int governor_setup_hist(int path, struct slim_setup_hist *h)
{
	if (!governor)
		return -ENOTCONN;
	if (path < 0 || path >= SLIM_SETUP_PATHS)
		return -EINVAL;
	govern_setup_hist(governor, (enum slim_setup_path)path, h);
	return 0;
}

json_t *governor_status_json(void)
{
	struct slim_govern_stats s;

	if (!governor)
		return json_pack("{s:b, s:s}", "enabled", 0, "reason", governor_why_off);
	govern_stats(governor, &s);
	return json_pack("{s:b, s:s, s:i, s:I, s:I, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
			 "s:I, s:I, s:I, s:I, s:I, s:I, s:I}, s:I}",
			 "enabled", 1, "cgroup", governor_cgroup, "routes",
			 govern_route_count(governor), "accepts_seen", (json_int_t)governor_naccepted,
			 "destroyed", (json_int_t)governor_ndestroyed, "kernel", "connect_ok",
			 (json_int_t)s.gs_connect_ok, "connect_miss", (json_int_t)s.gs_connect_miss,
			 "connect_fallback", (json_int_t)s.gs_connect_fallback, "connect_denied",
			 (json_int_t)s.gs_connect_denied, "bind_denied", (json_int_t)s.gs_bind_denied,
			 "sockopt_denied", (json_int_t)s.gs_sockopt_denied, "listen_confined",
			 (json_int_t)s.gs_listen_confined, "accept_ok", (json_int_t)s.gs_accept_ok,
			 "accept_anon", (json_int_t)s.gs_accept_anon, "syn_dropped",
			 (json_int_t)s.gs_syn_dropped, "ident_written",
			 (json_int_t)s.gs_ident_written, "events_lost",
			 (json_int_t)s.gs_events_lost, "connect_service",
			 (json_int_t)s.gs_connect_service, "connect_no_backend",
			 (json_int_t)s.gs_connect_no_backend, "pool_made",
			 (json_int_t)s.gs_pool_made, "services_reset",
			 (json_int_t)service_revoked_count());
}
