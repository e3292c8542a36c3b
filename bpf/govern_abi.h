/* SPDX-License-Identifier: MIT */
/*
 * What the governance programs (slim_govern.bpf.c) and the router (bpf/govern.c, router/) share:
 * the per-socket state, the route, verdict and node maps, the identity TCP option and the errnos
 * connect() reports on a governed socket. Addresses and ports in network byte order.
 */
#ifndef SLIM_GOVERN_ABI_H
#define SLIM_GOVERN_ABI_H

/*
 * Per-socket state (BPF_MAP_TYPE_SK_STORAGE, cloned into accepted children) of every socket the
 * router hands to a pod. A socket of the router's cgroup without it is the router's own.
 */
struct slim_sk {
	__u32 ss_pod_ip;     /* owning pod */
	__u32 ss_flags;      /* SLIM_SK_* */
	__u32 ss_local_ip;   /* overlay address this end shows (0: the pod's) */
	__u32 ss_peer_ip;    /* overlay address of the other end, once connected or accepted */
	__u16 ss_local_port; /* overlay port this end shows (0: the host port) */
	__u16 ss_peer_port;
	__u32 ss_svc_ip;     /* the Service VIP the app connected to (getpeername shows it), or 0 */
	__u16 ss_svc_port;
	__u16 ss_pad;
};

#define SLIM_SK_HANDED	  0x01 /* a pod holds it: connect/bind/setsockopt are governed */
#define SLIM_SK_LISTENER  0x02 /* a host listener the router made for a pod listener */
#define SLIM_SK_ACCEPTED  0x04 /* accepted from a host listener; its peer came from the SYN */
#define SLIM_SK_LOOPBACK  0x08 /* an in-pod (sidecar) connection: both ends show loopback */
#define SLIM_SK_IDENT	  0x10 /* the identity option still goes out on this socket */
#define SLIM_SK_CONFINED  0x20 /* a pod made a pool socket listen: bound to lo, destroyed */
#define SLIM_SK_ANONYMOUS 0x40 /* accepted without an identity (cannot happen unless forged) */
#define SLIM_SK_SVC_PICKED 0x80 /* a Service connect missed: the next one keeps the pick */

/* Route map: an overlay destination -> the host listener serving it. */
struct slim_route_key {
	__u32 rk_ip;
	__u32 rk_scope; /* 0: every pod; a pod IP: that pod only (loopback destinations) */
	__u16 rk_port;
	__u16 rk_pad;
};

struct slim_route {
	__u32 rt_host_ip;
	__u16 rt_host_port;
	__u16 rt_flags;	     /* SLIM_ROUTE_* */
	__u64 rt_expires_ns; /* CLOCK_MONOTONIC; 0: until removed */
};

#define SLIM_ROUTE_FALLBACK 0x1 /* no slim listener there: the overlay carries it */

/* Verdict map, consulted only while a policy is in force: may pod src reach dst:port? */
struct slim_verdict_key {
	__u32 vk_src;
	__u32 vk_dst;
	__u16 vk_port;
	__u16 vk_pad;
};

#define SLIM_VERDICT_ALLOW 1
#define SLIM_VERDICT_DENY  2

/*
 * Services (ClusterIP): (VIP, port) -> the service's Maglev table, a range of the one array
 * slim_maglev (pod IPs of the backends, slot by slot). The router writes a new layout into the
 * half of the array not in use, then points the entries at it: a connect sees one table whole.
 */
struct slim_svc_key {
	__u32 sk_ip;
	__u16 sk_port;
	__u16 sk_pad;
};

struct slim_svc {
	__u32 sv_base;	      /* first slot in slim_maglev */
	__u32 sv_size;	      /* slots (a prime); 0: no backends: connects are refused */
	__u16 sv_target_port; /* the backends' port */
	__u16 sv_flags;	      /* SLIM_SVC_* */
	__u32 sv_pad;
};

#define SLIM_SVC_AFFINITY   0x1	      /* sessionAffinity ClientIP: the slot follows the client pod */
#define SLIM_MAGLEV_SLOTS   (1u << 23) /* two halves of 4 Mi slots (64 MiB) */

/* One slot of slim_maglev. An array's elements are 8-byte aligned, also in the mapping the router
 * writes through: the padding is spelled out so both sides agree on the stride. */
struct slim_maglev_slot {
	__u32 ms_ip; /* the backend pod */
	__u32 ms_pad;
};

/*
 * The slot hash (murmur3's finalizer over two words) of a client pod, for ClientIP affinity (the
 * kernel picks a random slot otherwise). The router computes the same (maglev.c).
 */
static inline __u32 slim_hash32(__u32 a, __u32 b)
{
	__u32 h = a * 0xcc9e2d51u ^ (b + 0x9e3779b9u);

	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

/* Node map: a cluster node's fabric address -> the pod range its pods come from. */
struct slim_node {
	__u32 nd_pod_net;
	__u32 nd_pod_mask;
};

/* Settings the router changes at run time (one-entry array). */
struct slim_settings {
	__u32 st_policy_active; /* verdicts are required for every governed connect */
	__u32 st_pad;
};

/*
 * The pool batch the router is making (slim_pool_pending[0]). While pp_pid_tgid is the router's
 * loop thread, each TCP/IPv4 socket that thread creates gets its state (pod, HANDED) and the
 * pod's QoS mark and priority from cgroup/sock_create, and pp_made counts them: a pool socket
 * costs the router one socket() instead of six calls (the source address is bound at connect).
 */
struct slim_pool_pending {
	__u64 pp_pid_tgid; /* 0: no batch */
	__u32 pp_pod_ip;
	__u32 pp_mark;	   /* 0: leave mark and priority alone */
	__u32 pp_priority;
	__u32 pp_made;	   /* sockets that got their state (set by the program) */
};

/*
 * The identity option in the SYN and in the packets up to the first data segment: an
 * experimental TCP option (kind 254, RFC 6994 ExID) written by the client host's sock_ops from
 * the socket state the router set, read by the server host before accept() returns.
 */
#define SLIM_OPT_KIND	    254
#define SLIM_OPT_LEN	    16
#define SLIM_OPT_EXID	    0x534c /* "SL": pod to pod */
#define SLIM_OPT_EXID_LOOP  0x534d /* "SM": in-pod loopback (sidecar) */

struct slim_opt {
	__u8 so_kind;
	__u8 so_len;
	__u16 so_exid;	   /* network order */
	__u32 so_src_ip;   /* the client pod */
	__u32 so_dst_ip;   /* the overlay destination it connected to */
	__u16 so_src_port; /* the client's overlay port */
	__u16 so_dst_port;
};

/*
 * What connect() reports on a governed socket when the kernel cannot decide alone. Neither is
 * an errno a TCP connect to an IPv4 address otherwise returns at once, so the shim can tell.
 */
#define SLIM_ERRNO_MISS	    126 /* ENOKEY: no route (or verdict) yet: ask the router, retry */
#define SLIM_ERRNO_FALLBACK 66	/* EREMOTE: no slim listener there: connect over the overlay */

/* Events to the router (ring buffer). */
enum slim_event_type {
	SLIM_EV_CONN = 1,     /* a governed connection was accepted (the server's end) */
	SLIM_EV_CONFINED = 2, /* a pod made a pool socket listen: destroy it */
	SLIM_EV_REFUSED = 3,  /* a governed connect was refused: the route may be stale */
};

struct slim_event {
	__u32 ev_type;
	__u32 ev_flags; /* SLIM_SK_* of the socket */
	__u64 ev_cookie;
	__u32 ev_pod_ip;
	__u32 ev_host_local_ip, ev_host_remote_ip;
	__u16 ev_host_local_port, ev_host_remote_port;
	__u32 ev_ovl_src_ip, ev_ovl_dst_ip; /* overlay 4-tuple, src = the client */
	__u16 ev_ovl_src_port, ev_ovl_dst_port;
};

/* Counters (the programs' .bss), read by the router for status and tests. */
struct slim_govern_stats {
	__u64 gs_connect_ok;	   /* connects sent to a host listener */
	__u64 gs_connect_miss;	   /* no route or verdict yet */
	__u64 gs_connect_fallback; /* routed to the overlay */
	__u64 gs_connect_denied;   /* refused by a verdict */
	__u64 gs_connect_refused;  /* not an overlay destination of a route: refused */
	__u64 gs_bind_denied;
	__u64 gs_sockopt_denied;
	__u64 gs_listen_confined;
	__u64 gs_accept_ok;	 /* accepted connections with a valid identity */
	__u64 gs_accept_anon;	 /* accepted without an identity (destroyed) */
	__u64 gs_syn_dropped;	 /* SYNs to a host listener without a valid identity */
	__u64 gs_ident_written;	 /* identity options written */
	__u64 gs_events_lost;	 /* ring buffer full */
	__u64 gs_connect_service;    /* connects to a Service VIP sent to a backend */
	__u64 gs_connect_no_backend; /* connects to a Service without backends: refused */
	__u64 gs_pool_made;	     /* pool sockets given their state at creation */
};

/*
 * Setup latency of slim connects, from the app's first connect() on a governed socket (a route
 * miss and the router's answer included) to the handshake's end, as a Prometheus histogram: the
 * programs count each connect into the first bucket whose bound it does not exceed (the last
 * bucket is +Inf); the router makes the counts cumulative. One histogram per path.
 */
enum slim_setup_path {
	SLIM_SETUP_SAMEHOST = 0, /* to a host listener of this host (or an in-pod loopback one) */
	SLIM_SETUP_CROSSHOST = 1,
	SLIM_SETUP_PATHS = 2,
};

#define SLIM_SETUP_BOUNDS 16
/* Upper bounds in nanoseconds: 50 us .. 5 s, the values of the "le" labels. */
#define SLIM_SETUP_BOUNDS_NS                                                                     \
	{ 50000ull, 100000ull, 250000ull, 500000ull, 1000000ull, 2500000ull, 5000000ull,          \
	  10000000ull, 25000000ull, 50000000ull, 100000000ull, 250000000ull, 500000000ull,       \
	  1000000000ull, 2500000000ull, 5000000000ull }

struct slim_setup_hist {
	__u64 sh_bucket[SLIM_SETUP_BOUNDS + 1]; /* not cumulative; [SLIM_SETUP_BOUNDS]: +Inf */
	__u64 sh_sum_ns;
};

#define SLIM_GOVERN_MAX_ROUTES	 65536
#define SLIM_GOVERN_MAX_VERDICTS 65536
#define SLIM_GOVERN_MAX_NODES	 1024
#define SLIM_GOVERN_MAX_SERVICES 65536 /* (VIP, port) pairs */
#define SLIM_GOVERN_MAX_PODS	 4096

#endif
