// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * The same-host fast path, kernel side: a sockops program puts the router's established host
 * sockets between this host's own fabric address into a sockhash, and an sk_msg program moves
 * each send straight into the peer socket's receive queue, skipping TCP/IP.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>
#include "sockmap_key.h"

#define AF_INET 2

/*
 * Only sockets whose both ends are this address are accelerated (network order; set by the
 * loader before load). The router's host sockets between two pods of this host both use the
 * fabric address, so every other socket in the cgroup (fabric links to other routers, a socket
 * to some other local address) keeps going the TCP way.
 */
const volatile __u32 host_ip = 0;
/*
 * Off only in the test that shows the overtaking hazard the flow rules also prevent
 * (SOCKMAP_F_NO_ORDER): every send to a mapped peer is then redirected, whatever went before.
 */
const volatile bool keep_order = true;

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, SLIM_SOCKMAP_MAX_ENTRIES);
	__type(key, struct slim_sock_key);
	/* 8 bytes, so user space can look an entry up (the kernel answers with its cookie). */
	__type(value, __u64);
} slim_socks SEC(".maps");

/*
 * The same sockets by key, as kernel addresses of their struct tcp_sock, for the sk_msg program
 * to read its peer's receive-side state (flow control, below). An sk_msg program may look a
 * socket up in the sockhash but may not release the reference that takes, so it reads the peer
 * through bpf_probe_read_kernel instead: a stale address (the peer just closed) gives stale
 * numbers, never a fault, and then the redirect itself fails because the peer left the sockhash
 * first. Entries go when their socket reaches TCP_CLOSE; LRU in case one is missed.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SLIM_SOCKMAP_MAX_ENTRIES);
	__type(key, struct slim_sock_key);
	__type(value, __u64);
} slim_peers SEC(".maps");

/*
 * What the stream verdict passed on, per socket cookie (see slim_stream_verdict). Entries go with
 * slim_peers' at TCP_CLOSE; LRU in case one is missed.
 */
struct slim_rx {
	__u32 rx_next;	/* the sequence number after the last byte passed on */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SLIM_SOCKMAP_MAX_ENTRIES);
	__type(key, __u64);
	__type(value, struct slim_rx);
} slim_rx_seq SEC(".maps");

/* Read by the loader (sockmap_stats); updated with atomic adds because every CPU writes them. */
__u64 stat_added = 0;
__u64 stat_add_failed = 0;
__u64 stat_skipped = 0;

/* The counters of every send, a cache line per CPU (sockmap_key.h). */
struct slim_send_stats stat_sends[SLIM_STAT_CPUS];

static __always_inline struct slim_send_stats *send_stats(void)
{
	return &stat_sends[bpf_get_smp_processor_id() & (SLIM_STAT_CPUS - 1)];
}

/*
 * The remote port of sock_ops and sk_msg contexts is network order but, on older kernels, sits in
 * the upper 16 bits of the 32-bit field. A port of an established socket is never 0, so whichever
 * half is non-zero holds it.
 */
static __always_inline __u16 ctx_remote_port(__u32 port)
{
	return port >> 16 ? port >> 16 : port;
}

static __always_inline void sock_key(struct bpf_sock_ops *skops, struct slim_sock_key *key)
{
	key->sk_local_ip = skops->local_ip4;
	key->sk_remote_ip = skops->remote_ip4;
	key->sk_local_port = bpf_htons((__u16)skops->local_port);
	key->sk_remote_port = ctx_remote_port(skops->remote_port);
}

SEC("sockops")
int slim_sockops(struct bpf_sock_ops *skops)
{
	struct slim_sock_key key = {};
	struct tcp_sock *tp = NULL;
	struct bpf_sock *ssk;
	__u64 addr;
	long err;

	if (skops->op == BPF_SOCK_OPS_STATE_CB) {
		if (skops->args[1] == BPF_TCP_CLOSE) {
			__u64 cookie = bpf_get_socket_cookie(skops);

			sock_key(skops, &key);
			bpf_map_delete_elem(&slim_peers, &key);
			bpf_map_delete_elem(&slim_rx_seq, &cookie);
		}
		return 1;
	}
	if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB &&
	    skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	if (skops->family != AF_INET || !host_ip)
		return 1;
	if (skops->local_ip4 != host_ip || skops->remote_ip4 != host_ip)
		return 1;

	/*
	 * Only a connection on which no byte has crossed yet: bytes already queued the TCP way
	 * (TCP Fast Open data in the SYN) would be overtaken by redirected ones, because a mapped
	 * socket's reader takes its ingress queue first. At the client the SYN-ACK has acked just
	 * the SYN and nothing else is in flight; at the server nothing was received.
	 */
	if (skops->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB &&
	    (skops->bytes_acked > 1 || skops->snd_nxt != skops->snd_una || skops->bytes_received)) {
		__sync_fetch_and_add(&stat_skipped, 1);
		return 1;
	}
	if (skops->op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB && skops->bytes_received) {
		__sync_fetch_and_add(&stat_skipped, 1);
		return 1;
	}

	sock_key(skops, &key);
	/* The address first: once in the sockhash, the peer's sends look for it. */
	ssk = skops->sk;
	if (ssk)
		tp = bpf_skc_to_tcp_sock(ssk);
	if (!tp) {
		__sync_fetch_and_add(&stat_add_failed, 1);
		return 1;
	}
	addr = (__u64)tp;
	bpf_map_update_elem(&slim_peers, &key, &addr, BPF_ANY);
	err = bpf_sock_hash_update(skops, &slim_socks, &key, BPF_ANY);
	if (err) {
		bpf_map_delete_elem(&slim_peers, &key);
		__sync_fetch_and_add(&stat_add_failed, 1);
		return 1;
	}
	__sync_fetch_and_add(&stat_added, 1);
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
	return 1;
}

/*
 * Flow control. A redirected send is charged to the peer's receive memory (sk_rmem_alloc, until
 * its reader copies it out) but never checked against its receive buffer, and the sender never
 * waits: left alone, a peer that does not read lets its sender queue up to the host's tcp_mem.
 * A verdict program cannot make a sender wait, but TCP can: so each direction is either
 * redirected or, while the peer is behind, sent the plain TCP way on the same socket pair, where
 * the window, the send buffer, EAGAIN, blocking, SO_SNDTIMEO, signals and POLLOUT are TCP's own.
 *
 * Redirect -> TCP keeps the order: the peer's reader takes its psock queue, where the
 * redirected bytes are, before the bytes TCP delivers after them (the stream verdict program
 * appends those to the same queue, in arrival order). TCP -> redirect is safe only once no TCP
 * byte of this direction is left anywhere: all acknowledged by the peer (snd_una == write_seq:
 * the peer's TCP has queued them) and the peer has nothing left to read at all (its
 * sk_rmem_alloc, which counts both its unread skbs and its unread redirected bytes, is 0). Both
 * only ever move towards "drained" while this socket is locked (we are inside its sendmsg), so
 * a true reading stays true until our redirect is queued.
 *
 * A socket starts in TCP mode and switches to redirect at its first send that finds the pipe
 * drained -- normally the very first one. So a direction whose first bytes went the TCP way
 * (the peer not in the sockhash yet) is redirected only once those bytes have been read.
 */
struct slim_flow {
	__u32 sf_redirect; /* 1: sends are redirected; 0: they go the TCP way */
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct slim_flow);
} slim_flows SEC(".maps");

#define SOCK_RCVBUF_LOCK 2

/*
 * The receive buffer the bound counts for a peer that did not set SO_RCVBUF (the loader sets
 * net.ipv4.tcp_rmem[1]). The kernel's own value is no guide there: with more queued than it
 * holds, TCP's receive path (tcp_clamp_window) raises sk_rcvbuf to what is queued, so a bound
 * taken from it would grow with every stall.
 */
const volatile __u32 rcvbuf_default = 131072;

__u64 stat_to_tcp = 0;
__u64 stat_to_redirect = 0;

/* What the flow decision reads of the peer, through its address (see slim_peers). */
struct peer_state {
	int ps_unread;	/* sk_rmem_alloc: its unread skbs and unread redirected bytes */
	int ps_rcvbuf;
	__u8 ps_userlocks;
};

static __always_inline int peer_read(__u64 addr, struct peer_state *ps)
{
	struct tcp_sock *peer = (struct tcp_sock *)addr;

	if (BPF_CORE_READ_INTO(&ps->ps_unread, peer,
			       inet_conn.icsk_inet.sk.sk_backlog.rmem_alloc.counter) ||
	    BPF_CORE_READ_INTO(&ps->ps_rcvbuf, peer, inet_conn.icsk_inet.sk.sk_rcvbuf) ||
	    BPF_CORE_READ_INTO(&ps->ps_userlocks, peer, inet_conn.icsk_inet.sk.sk_userlocks))
		return -1;
	return 0;
}

/*
 * How many unread bytes the peer may hold before this direction goes the TCP way: what a
 * loopback TCP connection holds, the peer's receive buffer plus this socket's send buffer.
 * TCP mode then adds at most one more send buffer, on this socket.
 */
static __always_inline long flow_bound(struct tcp_sock *self, struct peer_state *ps)
{
	long rcv = ps->ps_rcvbuf;

	if (!(ps->ps_userlocks & SOCK_RCVBUF_LOCK) && rcv > rcvbuf_default)
		rcv = rcvbuf_default;
	return rcv + self->inet_conn.icsk_inet.sk.sk_sndbuf;
}

/* Host-wide TCP memory pressure: then nothing more is put on the receive side by us. */
static __always_inline bool tcp_pressure(struct tcp_sock *self)
{
	unsigned long *flag = self->inet_conn.icsk_inet.sk.__sk_common.skc_prot->memory_pressure;
	unsigned long v = 0;

	if (flag && bpf_probe_read_kernel(&v, sizeof(v), flag))
		return false;
	return v != 0;
}

/*
 * Whether this send may be redirected to the peer at addr, given the direction's mode fl.
 * Called with this socket locked (its sendmsg), so one send at a time decides.
 */
static __always_inline bool flow_may_redirect(struct slim_flow *fl, struct bpf_sock *sk,
					      __u64 addr)
{
	struct tcp_sock *self = bpf_skc_to_tcp_sock(sk);
	struct peer_state ps;

	if (!self || peer_read(addr, &ps))
		return false;
	if (fl->sf_redirect)
		return ps.ps_unread <= flow_bound(self, &ps) && !tcp_pressure(self);
	return !ps.ps_unread && self->snd_una == self->write_seq && !tcp_pressure(self);
}

/* Records the mode of this send's direction; counts the switches. */
static __always_inline void flow_set(struct slim_flow *fl, bool redirect)
{
	if (!fl || fl->sf_redirect == redirect)
		return;
	fl->sf_redirect = redirect;
	__sync_fetch_and_add(redirect ? &stat_to_redirect : &stat_to_tcp, 1);
}

static __always_inline void count_redirect(const struct sk_msg_md *msg)
{
	struct slim_send_stats *st = send_stats();

	__sync_fetch_and_add(&st->ss_redirected, 1);
	__sync_fetch_and_add(&st->ss_redirected_bytes, msg->size);
}

SEC("sk_msg")
int slim_msg_redirect(struct sk_msg_md *msg)
{
	struct slim_sock_key peer = {};
	struct bpf_sock *sk = msg->sk;
	struct slim_flow *fl;
	bool redirect = false;
	__u64 *addr;

	/*
	 * The kernel's sockmap send path checks sk_err but not SEND_SHUTDOWN: a send after
	 * shutdown(SHUT_WR) would be redirected behind the FIN the peer already read, and lost.
	 * Only a socket that may still send redirects; the TCP path then fails it with EPIPE.
	 */
	if (!sk || (sk->state != BPF_TCP_ESTABLISHED && sk->state != BPF_TCP_CLOSE_WAIT)) {
		__sync_fetch_and_add(&send_stats()->ss_passed, 1);
		return SK_PASS;
	}
	peer.sk_local_ip = msg->remote_ip4;
	peer.sk_remote_ip = msg->local_ip4;
	peer.sk_local_port = ctx_remote_port(msg->remote_port);
	peer.sk_remote_port = bpf_htons((__u16)msg->local_port);

	/*
	 * A peer that is not (or no longer) in the map gets the bytes the normal TCP way, and the
	 * direction stays in TCP mode until they are read. Without its state a socket cannot
	 * remember a switch, and only the TCP way keeps the order. Dropping is never right here.
	 */
	if (!keep_order) {
		if (bpf_msg_redirect_hash(msg, &slim_socks, &peer, BPF_F_INGRESS) == SK_PASS)
			count_redirect(msg);
		return SK_PASS;
	}
	fl = bpf_sk_storage_get(&slim_flows, sk, NULL, BPF_SK_STORAGE_GET_F_CREATE);
	addr = bpf_map_lookup_elem(&slim_peers, &peer);
	if (addr && fl)
		redirect = flow_may_redirect(fl, sk, *addr);
	/*
	 * The peer may leave the map between the look-up and the redirect; the helper then sets
	 * no redirect and SK_PASS sends the message the TCP way.
	 */
	if (redirect && bpf_msg_redirect_hash(msg, &slim_socks, &peer, BPF_F_INGRESS) == SK_PASS) {
		flow_set(fl, true);
		count_redirect(msg);
		return SK_PASS;
	}
	flow_set(fl, false);
	if (addr)
		__sync_fetch_and_add(&send_stats()->ss_flow_passed, 1);
	else
		__sync_fetch_and_add(&send_stats()->ss_passed, 1);
	return SK_PASS;
}

/*
 * Bytes that still arrive the TCP way on a mapped socket (from a peer that is not in the map, or
 * from a mapped peer whose direction is in TCP mode) are passed to the socket's own ingress queue,
 * in arrival order with the redirected ones. Having a stream verdict attached also keeps the
 * kernel on the receive path that 6.18.14+ gets right: without one, a mapped socket receiving the
 * TCP way is readable but reports FIONREAD 0 here (tests/integration/sockmap_fastpath.sh shows
 * it), which stalls apps that size reads by it.
 *
 * But that path hands each skb of the receive queue over whole (tcp_read_skb), and TCP queues a
 * segment that only partly repeats what it already has whole too ("partial packet": seq <
 * rcv_nxt < end_seq; its own readers skip the old head by sequence number). A retransmission
 * that the sender cut differently from the original -- seen here when the flow rules switch a
 * direction to TCP at a peer whose window the redirected bytes just used up, so segments are
 * dropped and resent -- would then deliver its old head a second time: 65,483 duplicated bytes
 * in one CI run of samehost_flow. So the verdict remembers, per socket, the sequence number
 * after the last byte it passed on and cuts any older head off (bpf_skb_adjust_room pulls at
 * most 4095 bytes a call). The state is in slim_rx_seq, by socket cookie: a stream verdict
 * program may not use socket storage.
 */
__u64 stat_rx_trimmed = 0;	/* segments that repeated bytes already passed on */
__u64 stat_rx_trimmed_bytes = 0;
__u64 stat_rx_trim_failed = 0;	/* and could not be cut: the repeat reaches the reader */

#define RX_PULL_MAX 4095
#define RX_TRIM_CALLS 64	/* 64 x 4095: more than any segment of a 64 KiB-MTU link */

/* Off only in the test that shows the repeats reaching the reader (SOCKMAP_F_NO_TRIM). */
const volatile bool trim_repeats = true;

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

/* Cuts the first n bytes off skb; false if the kernel could not (out of memory). */
static __always_inline bool rx_trim_head(struct __sk_buff *skb, __u32 n)
{
	for (int i = 0; i < RX_TRIM_CALLS && n; i++) {
		__u32 cut = n > RX_PULL_MAX ? RX_PULL_MAX : n;

		if (bpf_skb_adjust_room(skb, -(__s32)cut, 0, 0))
			return false;
		n -= cut;
	}
	return !n;
}

SEC("sk_skb/stream_verdict")
int slim_stream_verdict(struct __sk_buff *skb)
{
	struct sk_buff *kskb = bpf_cast_to_kern_ctx(skb);
	__u32 seq = 0, len = skb->len, old;
	struct slim_rx fresh = {}, *rx;
	__u64 cookie;

	if (!len)
		return SK_PASS;
	/* TCP_SKB_CB(skb)->seq: struct tcp_skb_cb starts the control buffer. */
	if (bpf_probe_read_kernel(&seq, sizeof(seq), kskb->cb))
		return SK_PASS;
	cookie = bpf_get_socket_cookie(skb);
	rx = bpf_map_lookup_elem(&slim_rx_seq, &cookie);
	if (!rx) {
		/* The first segment: nothing passed on before it. */
		fresh.rx_next = seq + len;
		bpf_map_update_elem(&slim_rx_seq, &cookie, &fresh, BPF_ANY);
		return SK_PASS;
	}
	/* Runs for one socket at a time: its receive path holds the socket. */
	old = rx->rx_next - seq;
	if ((__s32)old > 0 && old < len) {
		__sync_fetch_and_add(&stat_rx_trimmed, 1);
		__sync_fetch_and_add(&stat_rx_trimmed_bytes, old);
		if (!trim_repeats || !rx_trim_head(skb, old))
			__sync_fetch_and_add(&stat_rx_trim_failed, 1);
	}
	if ((__s32)(seq + len - rx->rx_next) > 0)
		rx->rx_next = seq + len;
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
