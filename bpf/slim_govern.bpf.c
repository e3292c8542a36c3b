// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * Governed host sockets: programs on the router's cgroup that govern every socket the router
 * made, in whatever process and namespace it ends up. cgroup hooks run on the cgroup of the
 * socket (its creator's), not the caller's, so a pod holding one of the router's sockets connects,
 * binds, names and configures it under these rules: it connects only where the router's route
 * map says (rewritten from the overlay address to the host listener), every name the kernel
 * reports is an overlay one, and its identity travels in a TCP option the pod cannot write.
 */
/*
 * The UAPI headers, not vmlinux.h: these programs touch only their contexts (stable UAPI), so
 * with no CO-RE relocation libbpf need not parse the kernel's BTF to load them — most of a new
 * router's start-up CPU, which an upgrade spends on cores the apps are using.
 */
#include <stdbool.h>
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "govern_abi.h"

/* Not in linux/bpf.h, and the libc headers are not for the BPF target. */
#define AF_INET		    2
#define EPERM		    1
#define ECONNREFUSED	    111
#define SOCK_STREAM	    1
#define SOL_SOCKET	    1
#define SOL_TCP		    6
#define SO_REUSEADDR	    2
#define SO_SNDBUF	    7
#define SO_RCVBUF	    8
#define SO_KEEPALIVE	    9
#define SO_OOBINLINE	    10
#define SO_LINGER	    13
#define SO_REUSEPORT	    15
#define SO_RCVLOWAT	    18
#define SO_SNDLOWAT	    19
#define SO_RCVTIMEO	    20
#define SO_SNDTIMEO	    21
#define SO_TIMESTAMP	    29
#define SO_TIMESTAMPNS	    35
#define SO_ZEROCOPY	    60
#define SO_BINDTOIFINDEX    62
#define TCP_NODELAY	    1
#define TCP_MAXSEG	    2
#define TCP_CORK	    3
#define TCP_KEEPIDLE	    4
#define TCP_KEEPINTVL	    5
#define TCP_KEEPCNT	    6
#define TCP_SYNCNT	    7
#define TCP_LINGER2	    8
#define TCP_DEFER_ACCEPT    9
#define TCP_WINDOW_CLAMP    10
#define TCP_QUICKACK	    12
#define TCP_CONGESTION	    13
#define TCP_THIN_LINEAR_TIMEOUTS 16
#define TCP_USER_TIMEOUT    18
#define TCP_SAVE_SYN	    27
#define TCP_NOTSENT_LOWAT   25
#define TCP_INQ		    36
#define IP_TOS		    1
#define IP_TTL		    2
#define IP_MTU_DISCOVER	    10
#define IP_RECVERR	    11
#define IP_RECVTOS	    13
#define TCPHDR_SYN	    0x02
#define TCPHDR_ACK	    0x10
#define LOOPBACK_IFINDEX    1

/* Set by the loader: this host's fabric address and the router's process (network order). */
const volatile __u32 host_ip = 0;
const volatile __u32 router_tgid = 0;
const volatile __u32 overlay_net = 0;
const volatile __u32 overlay_mask = 0;

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct slim_sk);
} slim_sk_map SEC(".maps");

/* LRU: an evicted route or verdict only costs one question to the router. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SLIM_GOVERN_MAX_ROUTES);
	__type(key, struct slim_route_key);
	__type(value, struct slim_route);
} slim_routes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SLIM_GOVERN_MAX_VERDICTS);
	__type(key, struct slim_verdict_key);
	__type(value, __u32);
} slim_verdicts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLIM_GOVERN_MAX_NODES);
	__type(key, __u32);
	__type(value, struct slim_node);
} slim_nodes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct slim_settings);
} slim_settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct slim_pool_pending);
} slim_pool_pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLIM_GOVERN_MAX_SERVICES);
	__type(key, struct slim_svc_key);
	__type(value, struct slim_svc);
} slim_services SEC(".maps");

/* Maglev tables of every service, back to back (struct slim_svc says where each starts). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, SLIM_MAGLEV_SLOTS);
	__type(key, __u32);
	__type(value, struct slim_maglev_slot);
} slim_maglev SEC(".maps");

/*
 * When a governed socket's first connect() began (CLOCK_MONOTONIC ns), kept apart from slim_sk
 * so that struct stays what routers of older builds pinned: an upgrade reuses their maps.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} slim_connect_start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} slim_events SEC(".maps");

struct slim_govern_stats stats = {};
struct slim_setup_hist setup_hist[SLIM_SETUP_PATHS] = {};
static const __u64 setup_bounds_ns[SLIM_SETUP_BOUNDS] = SLIM_SETUP_BOUNDS_NS;

#define COUNT(field) __sync_fetch_and_add(&stats.field, 1)

static __always_inline struct slim_sk *sk_state(void *sk)
{
	if (!sk)
		return 0;
	return bpf_sk_storage_get(&slim_sk_map, sk, 0, 0);
}

/* The router sees its sockets as they are: it must know the host addresses it made. */
static __always_inline bool caller_is_router(void)
{
	return (__u32)(bpf_get_current_pid_tgid() >> 32) == router_tgid;
}

static __always_inline bool is_loopback(__u32 ip)
{
	return (bpf_ntohl(ip) >> 24) == 127;
}

static __always_inline bool policy_active(void)
{
	__u32 zero = 0;
	struct slim_settings *s = bpf_map_lookup_elem(&slim_settings, &zero);

	return s && s->st_policy_active;
}

static __always_inline void emit(__u32 type, const struct slim_sk *ss, __u64 cookie,
				 const struct bpf_sock_ops *skops, __u32 src_ip, __u16 src_port,
				 __u32 dst_ip, __u16 dst_port)
{
	struct slim_event *ev = bpf_ringbuf_reserve(&slim_events, sizeof(*ev), 0);

	if (!ev) {
		COUNT(gs_events_lost);
		return;
	}
	ev->ev_type = type;
	ev->ev_flags = ss->ss_flags;
	ev->ev_cookie = cookie;
	ev->ev_pod_ip = ss->ss_pod_ip;
	ev->ev_host_local_ip = skops->local_ip4;
	ev->ev_host_remote_ip = skops->remote_ip4;
	ev->ev_host_local_port = bpf_htons((__u16)skops->local_port);
	/* Network order; older kernels put it in the upper half of the field. */
	ev->ev_host_remote_port = skops->remote_port >> 16 ? skops->remote_port >> 16
							    : (__u16)skops->remote_port;
	ev->ev_ovl_src_ip = src_ip;
	ev->ev_ovl_dst_ip = dst_ip;
	ev->ev_ovl_src_port = src_port;
	ev->ev_ovl_dst_port = dst_port;
	/*
	 * A connection is news the router can take in batches (it drains the ring on a short
	 * timer): waking it for each would cost a context switch per connect. What needs acting
	 * on at once, or a ring filling up, wakes it.
	 */
	bpf_ringbuf_submit(ev, type != SLIM_EV_CONN || (ss->ss_flags & SLIM_SK_ANONYMOUS) ||
					       bpf_ringbuf_query(&slim_events, BPF_RB_AVAIL_DATA) >
						       (1 << 18)
				       ? BPF_RB_FORCE_WAKEUP
				       : BPF_RB_NO_WAKEUP);
}

/* ---- connect: only where the router's route map says, rewritten to the host listener ---- */

static __always_inline int connect_fail(int err)
{
	bpf_set_retval(-err);
	return 0;
}

/*
 * A Service VIP: the backend is picked here, at connect time, from the service's Maglev table --
 * by the client pod's hash (ClientIP affinity) or at random -- and the connect goes on as one to
 * that backend: its route, and the policy verdict for it (as Kubernetes judges a connection
 * after DNAT). The socket remembers the VIP for getpeername, and the pick: when the kernel has
 * to ask the router first (a miss), the router routes that backend and the shim's second connect
 * keeps it. 0, or an errno.
 */
static __always_inline int connect_service(struct bpf_sock_addr *ctx, struct slim_sk *ss,
					   __u32 *dst, __u16 *port)
{
	struct slim_svc_key sk = {.sk_ip = *dst, .sk_port = *port};
	struct slim_svc *svc = bpf_map_lookup_elem(&slim_services, &sk);
	bool again = (ss->ss_flags & SLIM_SK_SVC_PICKED) && ss->ss_svc_ip == *dst &&
		     ss->ss_svc_port == *port;
	struct slim_maglev_slot *backend;
	__u32 slot, ip;

	ss->ss_flags &= ~SLIM_SK_SVC_PICKED;
	ss->ss_svc_ip = 0;
	ss->ss_svc_port = 0;
	if (!svc)
		return 0;
	if (!svc->sv_size) {
		COUNT(gs_connect_no_backend);
		return ECONNREFUSED; /* a service without backends, as kube-proxy's reject */
	}
	if (again) {
		ip = ss->ss_peer_ip;
	} else {
		slot = svc->sv_flags & SLIM_SVC_AFFINITY ? slim_hash32(ss->ss_pod_ip, 0)
							 : bpf_get_prandom_u32();
		slot = svc->sv_base + slot % svc->sv_size;
		backend = bpf_map_lookup_elem(&slim_maglev, &slot);
		if (!backend || !backend->ms_ip)
			return SLIM_ERRNO_MISS;
		ip = backend->ms_ip;
	}
	ss->ss_svc_ip = *dst;
	ss->ss_svc_port = *port;
	/* Where it went, for the router should the route be missing (service.c reads it). */
	ss->ss_peer_ip = ip;
	ss->ss_peer_port = svc->sv_target_port;
	*dst = ip;
	*port = svc->sv_target_port;
	COUNT(gs_connect_service);
	return 0;
}

/* The first connect() of a socket starts its setup clock; the retry after a miss does not. */
static __always_inline void setup_begin(struct bpf_sock *sk)
{
	__u64 *start;

	if (!sk)
		return;
	start = bpf_sk_storage_get(&slim_connect_start, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (start && !*start)
		*start = bpf_ktime_get_ns();
}

/* The handshake ended: count the setup into its path's histogram. */
static __always_inline void setup_end(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;
	__u64 *start;
	__u32 path, b;
	__u64 ns;

	if (!sk)
		return;
	start = bpf_sk_storage_get(&slim_connect_start, sk, 0, 0);
	if (!start || !*start)
		return;
	ns = bpf_ktime_get_ns() - *start;
	bpf_sk_storage_delete(&slim_connect_start, sk);
	path = skops->remote_ip4 == host_ip || is_loopback(skops->remote_ip4)
		       ? SLIM_SETUP_SAMEHOST : SLIM_SETUP_CROSSHOST;
	for (b = 0; b < SLIM_SETUP_BOUNDS; b++)
		if (ns <= setup_bounds_ns[b])
			break;
	if (path >= SLIM_SETUP_PATHS || b > SLIM_SETUP_BOUNDS)
		return; /* for the verifier */
	__sync_fetch_and_add(&setup_hist[path].sh_bucket[b], 1);
	__sync_fetch_and_add(&setup_hist[path].sh_sum_ns, ns);
}

SEC("cgroup/connect4")
int slim_connect4(struct bpf_sock_addr *ctx)
{
	struct slim_sk *ss = sk_state(ctx->sk);
	struct slim_route_key key = {};
	struct slim_verdict_key vk = {};
	struct slim_route *rt;
	__u32 *verdict = 0;
	__u32 dst = ctx->user_ip4;
	__u16 port = (__u16)ctx->user_port;
	bool loop = is_loopback(dst);

	if (!ss || !(ss->ss_flags & SLIM_SK_HANDED))
		return 1; /* the router's own socket */
	if (ss->ss_flags & (SLIM_SK_LISTENER | SLIM_SK_CONFINED))
		return connect_fail(EPERM);
	setup_begin(ctx->sk);

	if (!loop) {
		int ret = connect_service(ctx, ss, &dst, &port);

		if (ret)
			return connect_fail(ret);
	} else {
		ss->ss_svc_ip = 0;
		ss->ss_svc_port = 0;
	}

	/* In-pod loopback routes belong to one pod; the rest to every pod of the host. */
	key.rk_ip = dst;
	key.rk_port = port;
	key.rk_scope = loop ? ss->ss_pod_ip : 0;
	rt = bpf_map_lookup_elem(&slim_routes, &key);
	if (!rt && loop) {
		key.rk_ip = bpf_htonl(0x7f000000); /* a listener on every loopback address */
		rt = bpf_map_lookup_elem(&slim_routes, &key);
	}
	if (!loop && policy_active()) {
		vk.vk_src = ss->ss_pod_ip;
		vk.vk_dst = dst;
		vk.vk_port = port;
		verdict = bpf_map_lookup_elem(&slim_verdicts, &vk);
		if (verdict && *verdict == SLIM_VERDICT_DENY) {
			COUNT(gs_connect_denied);
			return connect_fail(ECONNREFUSED);
		}
		if (!verdict)
			rt = 0;
	}
	if (!rt || (rt->rt_expires_ns && rt->rt_expires_ns < bpf_ktime_get_ns())) {
		/* Anything the router never routed (a host address, 127.0.0.1 of the host, a
		 * fabric port) ends here too: the router answers those with a fallback. */
		COUNT(gs_connect_miss);
		if (ss->ss_svc_ip)
			ss->ss_flags |= SLIM_SK_SVC_PICKED;
		return connect_fail(SLIM_ERRNO_MISS);
	}
	if (rt->rt_flags & SLIM_ROUTE_FALLBACK) {
		COUNT(gs_connect_fallback);
		return connect_fail(SLIM_ERRNO_FALLBACK);
	}
	ss->ss_peer_ip = dst;
	ss->ss_peer_port = port;
	if (loop) {
		ss->ss_flags |= SLIM_SK_LOOPBACK;
		ss->ss_local_ip = bpf_htonl(0x7f000001);
	} else {
		ss->ss_flags &= ~SLIM_SK_LOOPBACK;
		ss->ss_local_ip = ss->ss_pod_ip;
	}
	ss->ss_flags |= SLIM_SK_IDENT;
	/*
	 * A pool socket is made unbound (slim_sock_create): its source is this host's fabric
	 * address, bound now with port 0, which picks the port at connect as
	 * IP_BIND_ADDRESS_NO_PORT does (4-tuple sharing, no port exhaustion under churn).
	 */
	if (!ctx->sk->src_ip4) {
		struct sockaddr_in src = {.sin_family = AF_INET, .sin_addr.s_addr = host_ip};

		bpf_bind(ctx, (struct sockaddr *)&src, sizeof(src));
	}
	ctx->user_ip4 = rt->rt_host_ip;
	ctx->user_port = rt->rt_host_port;
	COUNT(gs_connect_ok);
	return 1;
}

/*
 * Pool sockets get their state as they are born: the router names the batch it is making
 * (slim_pool_pending) and then only calls socket(), so a batch of 32 costs it 32 syscalls
 * and three map operations instead of 192 calls. That matters beyond the router's own CPU: a
 * batch runs unpreempted for its whole length (the scheduler protects a running task's slice
 * from a woken one), and a woken app on that CPU waited for all of it -- the first-byte p99 of
 * serial connects was the batch's length, ~15 us per socket (tests/progs/setup_latency,
 * SETUP_LATENCY_SLOW_US). Only the loop thread named in the entry, only TCP/IPv4.
 */
SEC("cgroup/sock_create")
int slim_sock_create(struct bpf_sock *sk)
{
	struct slim_pool_pending *pp;
	struct slim_sk *ss;
	__u32 zero = 0;

	pp = bpf_map_lookup_elem(&slim_pool_pending, &zero);
	if (!pp || !pp->pp_pid_tgid || pp->pp_pid_tgid != bpf_get_current_pid_tgid())
		return 1;
	if (sk->family != AF_INET || sk->type != SOCK_STREAM)
		return 1;
	ss = bpf_sk_storage_get(&slim_sk_map, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!ss)
		return 1; /* the router sees pp_made fall short and checks each socket */
	__builtin_memset(ss, 0, sizeof(*ss));
	ss->ss_pod_ip = pp->pp_pod_ip;
	ss->ss_flags = SLIM_SK_HANDED;
	if (pp->pp_mark) {
		sk->mark = pp->pp_mark;
		sk->priority = pp->pp_priority;
	}
	pp->pp_made++;
	COUNT(gs_pool_made);
	return 1;
}

/* The router binds its sockets before a pod gets them; a pod never binds one. */
SEC("cgroup/bind4")
int slim_bind4(struct bpf_sock_addr *ctx)
{
	struct slim_sk *ss = sk_state(ctx->sk);

	if (!ss || !(ss->ss_flags & SLIM_SK_HANDED))
		return 1;
	COUNT(gs_bind_denied);
	return 0;
}

/* ---- names: the kernel itself reports overlay addresses, on both ends, accept() included ---- */

SEC("cgroup/getsockname4")
int slim_getsockname4(struct bpf_sock_addr *ctx)
{
	struct slim_sk *ss = sk_state(ctx->sk);

	if (!ss || caller_is_router())
		return 1;
	if (ss->ss_flags & SLIM_SK_LISTENER)
		ctx->user_ip4 = ss->ss_local_ip; /* what the app's listener is bound to */
	else
		ctx->user_ip4 = ss->ss_local_ip ? ss->ss_local_ip : ss->ss_pod_ip;
	if (ss->ss_local_port)
		ctx->user_port = ss->ss_local_port;
	return 1;
}

SEC("cgroup/getpeername4")
int slim_getpeername4(struct bpf_sock_addr *ctx)
{
	struct slim_sk *ss = sk_state(ctx->sk);

	if (!ss || caller_is_router())
		return 1;
	/* Never a fabric address, even for a peer we could not name; a Service's VIP, as the
	 * app connected to it. */
	if (ss->ss_svc_ip) {
		ctx->user_ip4 = ss->ss_svc_ip;
		ctx->user_port = ss->ss_svc_port;
		return 1;
	}
	ctx->user_ip4 = ss->ss_peer_ip;
	ctx->user_port = ss->ss_peer_port;
	return 1;
}

/* ---- socket options: what the shim would replay, nothing that reaches the host's QoS ---- */

enum { SOCKOPT_INT, SOCKOPT_LINGER, SOCKOPT_TIMEVAL, SOCKOPT_NAME };
#include "sockopt_list.h"

static __always_inline bool sockopt_allowed(int level, int name)
{
#define SOCKOPT_CASE(l, n, size)                                                                  \
	if (level == (l) && name == (n))                                                          \
		return true;
	SLIM_SOCKOPTS_REPLAYED(SOCKOPT_CASE)
	SLIM_SOCKOPTS_RUNTIME(SOCKOPT_CASE)
#undef SOCKOPT_CASE
	return false;
}

SEC("cgroup/setsockopt")
int slim_setsockopt(struct bpf_sockopt *ctx)
{
	struct slim_sk *ss;

	/* Leave the option buffer alone: the kernel uses the caller's. */
	if (caller_is_router())
		return 1;
	ss = sk_state(ctx->sk);
	if (!ss || !(ss->ss_flags & SLIM_SK_HANDED))
		return 1;
	if (sockopt_allowed(ctx->level, ctx->optname))
		return 1;
	COUNT(gs_sockopt_denied);
	return 0; /* EPERM */
}

/* ---- identity: written by the client's host, read by the server's before accept() ---- */

/* A node of the cluster may speak for its own pods only; the same node also for loopback. */
static __always_inline bool ident_valid(const struct slim_sk *listener, __u32 saddr,
					const struct slim_opt *o, bool loop)
{
	struct slim_node *n;

	if (o->so_dst_port != listener->ss_local_port)
		return false;
	if (loop)
		return saddr == host_ip && o->so_src_ip == listener->ss_pod_ip &&
		       is_loopback(o->so_dst_ip);
	n = bpf_map_lookup_elem(&slim_nodes, &saddr);
	if (!n || (o->so_src_ip & n->nd_pod_mask) != n->nd_pod_net)
		return false;
	/* A stale route must never deliver another pod's connection to this app. */
	if (listener->ss_local_ip ? o->so_dst_ip != listener->ss_local_ip
				  : o->so_dst_ip != listener->ss_pod_ip)
		return false;
	return true;
}

static __always_inline void ident_build(struct slim_opt *o, const struct slim_sk *ss,
					__u32 local_port)
{
	bool loop = ss->ss_flags & SLIM_SK_LOOPBACK;

	o->so_kind = SLIM_OPT_KIND;
	o->so_len = SLIM_OPT_LEN;
	o->so_exid = bpf_htons(loop ? SLIM_OPT_EXID_LOOP : SLIM_OPT_EXID);
	o->so_src_ip = ss->ss_pod_ip;
	o->so_src_port = ss->ss_local_port ? ss->ss_local_port : bpf_htons((__u16)local_port);
	o->so_dst_ip = ss->ss_peer_ip;
	o->so_dst_port = ss->ss_peer_port;
}

/* Finds our option in the SYN the listener saved, else in the packet at hand (SYN cookies:
 * the ACK that completes the handshake carries it too). Returns the exid found, or 0. */
static __always_inline __u16 ident_load(struct bpf_sock_ops *skops, struct slim_opt *o)
{
	__u16 exids[2] = {SLIM_OPT_EXID, SLIM_OPT_EXID_LOOP};
	__u64 where[2] = {BPF_LOAD_HDR_OPT_TCP_SYN, 0};

	for (int w = 0; w < 2; w++)
		for (int e = 0; e < 2; e++) {
			__builtin_memset(o, 0, sizeof(*o));
			o->so_kind = SLIM_OPT_KIND;
			o->so_len = 4;
			o->so_exid = bpf_htons(exids[e]);
			if (bpf_load_hdr_opt(skops, o, sizeof(*o), where[w]) == SLIM_OPT_LEN)
				return exids[e];
		}
	return 0;
}

static __always_inline void sockops_accepted(struct bpf_sock_ops *skops, struct slim_sk *ss)
{
	struct slim_opt o;
	__u16 exid = ident_load(skops, &o);
	bool loop = exid == SLIM_OPT_EXID_LOOP;
	__u64 cookie = bpf_get_socket_cookie(skops);

	ss->ss_flags = (ss->ss_flags & ~SLIM_SK_LISTENER) | SLIM_SK_HANDED | SLIM_SK_ACCEPTED;
	if (!exid || !ident_valid(ss, skops->remote_ip4, &o, loop)) {
		/* The gate let no such SYN in; only a forged SYN-cookie ACK gets here. */
		ss->ss_flags |= SLIM_SK_ANONYMOUS;
		ss->ss_peer_ip = 0;
		ss->ss_peer_port = 0;
		COUNT(gs_accept_anon);
		emit(SLIM_EV_CONN, ss, cookie, skops, 0, 0, 0, 0);
		return;
	}
	if (loop) {
		ss->ss_flags |= SLIM_SK_LOOPBACK;
		ss->ss_peer_ip = bpf_htonl(0x7f000001);
	} else {
		ss->ss_peer_ip = o.so_src_ip;
	}
	ss->ss_peer_port = o.so_src_port;
	ss->ss_local_ip = o.so_dst_ip;
	COUNT(gs_accept_ok);
	emit(SLIM_EV_CONN, ss, cookie, skops, ss->ss_peer_ip, o.so_src_port, o.so_dst_ip,
	     o.so_dst_port);
}

SEC("sockops")
int slim_govern_sockops(struct bpf_sock_ops *skops)
{
	struct slim_sk *ss;
	struct slim_opt o;
	int one = 1, lo = LOOPBACK_IFINDEX;

	if (skops->family != AF_INET)
		return 1;
	ss = sk_state(skops->sk);
	if (!ss)
		return 1;

	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		if (ss->ss_flags & SLIM_SK_IDENT)
			bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags |
								 BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG |
								 BPF_SOCK_OPS_STATE_CB_FLAG);
		break;
	case BPF_SOCK_OPS_HDR_OPT_LEN_CB:
		if (ss->ss_flags & SLIM_SK_IDENT)
			bpf_reserve_hdr_opt(skops, SLIM_OPT_LEN, 0);
		break;
	case BPF_SOCK_OPS_WRITE_HDR_OPT_CB:
		if (!(ss->ss_flags & SLIM_SK_IDENT))
			break;
		ident_build(&o, ss, skops->local_port);
		if (bpf_store_hdr_opt(skops, &o, sizeof(o), 0) == 0)
			COUNT(gs_ident_written);
		/*
		 * Until the server has certainly made the connection (it acked data or sent
		 * some): the SYN, the ACK that ends the handshake and the first data segments.
		 */
		if (skops->bytes_acked > 1 || skops->bytes_received > 0) {
			ss->ss_flags &= ~SLIM_SK_IDENT;
			bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags &
								 ~BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG);
		}
		break;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		setup_end(skops);
		break;
	case BPF_SOCK_OPS_TCP_LISTEN_CB:
		if (ss->ss_flags & SLIM_SK_LISTENER) {
			bpf_setsockopt(skops, SOL_TCP, TCP_SAVE_SYN, &one, sizeof(one));
		} else if (ss->ss_flags & SLIM_SK_HANDED) {
			/* listen() on a pool socket (autobind skips bind4): reachable from
			 * nowhere, and the router destroys it. */
			bpf_setsockopt(skops, SOL_SOCKET, SO_BINDTOIFINDEX, &lo, sizeof(lo));
			ss->ss_flags |= SLIM_SK_CONFINED;
			COUNT(gs_listen_confined);
			emit(SLIM_EV_CONFINED, ss, bpf_get_socket_cookie(skops), skops, 0, 0, 0, 0);
		}
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		if (ss->ss_flags & SLIM_SK_LISTENER)
			sockops_accepted(skops, ss);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		/* A refused connect: the route that sent it there may be stale. */
		if (skops->args[0] == BPF_TCP_SYN_SENT && skops->args[1] == BPF_TCP_CLOSE &&
		    (ss->ss_flags & SLIM_SK_HANDED))
			emit(SLIM_EV_REFUSED, ss, bpf_get_socket_cookie(skops), skops,
			     ss->ss_pod_ip, 0, ss->ss_peer_ip, ss->ss_peer_port);
		break;
	}
	return 1;
}

/*
 * The gate: a SYN reaches one of our host listeners only with a valid identity from a cluster
 * node. cgroup ingress runs for packets of the listener's own cgroup (ours) with skb->sk the
 * listener, before the kernel makes a request socket or a SYN cookie.
 */
struct ipv4_hdr {
	__u8 ihl_version;
	__u8 tos;
	__u16 tot_len;
	__u16 id;
	__u16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__u32 saddr;
	__u32 daddr;
};

static __always_inline int gate_find_opt(struct __sk_buff *skb, __u32 off, __u32 end,
					 struct slim_opt *o)
{
	__u8 kl[2];

	for (int i = 0; i < 20 && off + 2 <= end; i++) {
		if (bpf_skb_load_bytes(skb, off, kl, 1))
			return -1;
		if (kl[0] == 0)
			return -1; /* end of options */
		if (kl[0] == 1) {
			off++;
			continue;
		}
		if (bpf_skb_load_bytes(skb, off, kl, 2) || kl[1] < 2)
			return -1;
		if (kl[0] == SLIM_OPT_KIND && kl[1] == SLIM_OPT_LEN && off + SLIM_OPT_LEN <= end) {
			if (bpf_skb_load_bytes(skb, off, o, sizeof(*o)))
				return -1;
			if (o->so_exid == bpf_htons(SLIM_OPT_EXID) ||
			    o->so_exid == bpf_htons(SLIM_OPT_EXID_LOOP))
				return 0;
		}
		off += kl[1];
	}
	return -1;
}

SEC("cgroup_skb/ingress")
int slim_ident_gate(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	struct ipv4_hdr ip;
	struct slim_opt o;
	struct slim_sk *ss;
	__u8 th[14];
	__u32 ihl, doff, found;

	if (!sk || skb->family != AF_INET)
		return 1;
	sk = bpf_sk_fullsock(sk);
	if (!sk || sk->state != BPF_TCP_LISTEN)
		return 1;
	ss = sk_state(sk);
	if (!ss)
		return 1; /* the router's own listener (the fabric port) */
	if (!(ss->ss_flags & SLIM_SK_LISTENER))
		return 0; /* a pool socket a pod made listen: nothing gets in */
	if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) || ip.protocol != IPPROTO_TCP)
		return 1;
	ihl = (ip.ihl_version & 0xf) * 4;
	if (ihl < 20 || ihl > 60 || bpf_skb_load_bytes(skb, ihl, th, sizeof(th)))
		return 0;
	doff = (th[12] >> 4) * 4;
	found = gate_find_opt(skb, ihl + 20, ihl + doff, &o) == 0;
	/* A SYN needs an identity; a later packet that carries one must carry a valid one. */
	if (!found && !((th[13] & TCPHDR_SYN) && !(th[13] & TCPHDR_ACK)))
		return 1;
	if (found && ident_valid(ss, ip.saddr, &o, o.so_exid == bpf_htons(SLIM_OPT_EXID_LOOP)))
		return 1;
	COUNT(gs_syn_dropped);
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
