// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * The same-host fast path, kernel side: a sockops program puts the router's established host
 * sockets between this host's own fabric address into a sockhash, and an sk_msg program moves
 * each send straight into the peer socket's receive queue, skipping TCP/IP.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "sockmap_key.h"

#define AF_INET 2

/*
 * Only sockets whose both ends are this address are accelerated (network order; set by the
 * loader before load). The router's host sockets between two pods of this host both use the
 * fabric address, so every other socket in the cgroup (fabric links to other routers, a socket
 * to some other local address) keeps going the TCP way.
 */
const volatile __u32 host_ip = 0;
/* Off only in the test that shows the overtaking hazard this rule prevents (SOCKMAP_F_NO_ORDER). */
const volatile bool keep_order = true;

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, SLIM_SOCKMAP_MAX_ENTRIES);
	__type(key, struct slim_sock_key);
	/* 8 bytes, so user space can look an entry up (the kernel answers with its cookie). */
	__type(value, __u64);
} slim_socks SEC(".maps");

/*
 * Per sending socket: its direction went the TCP way once, so it stays there. The app connects
 * the socket itself and may send before the server's end is in the sockhash; those bytes go the
 * TCP way, and a later redirected send would overtake them (a mapped socket's reader takes its
 * ingress queue first). Redirect -> TCP keeps order; TCP -> redirect would not.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u32);
} slim_tcp_only SEC(".maps");

/* Read by the loader (sockmap_stats); updated with atomic adds because every CPU writes them. */
__u64 stat_added = 0;
__u64 stat_add_failed = 0;
__u64 stat_skipped = 0;
__u64 stat_redirected = 0;
__u64 stat_passed = 0;

/*
 * The remote port of sock_ops and sk_msg contexts is network order but, on older kernels, sits in
 * the upper 16 bits of the 32-bit field. A port of an established socket is never 0, so whichever
 * half is non-zero holds it.
 */
static __always_inline __u16 ctx_remote_port(__u32 port)
{
	return port >> 16 ? port >> 16 : port;
}

SEC("sockops")
int slim_sockops(struct bpf_sock_ops *skops)
{
	struct slim_sock_key key = {};
	long err;

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

	key.sk_local_ip = skops->local_ip4;
	key.sk_remote_ip = skops->remote_ip4;
	key.sk_local_port = bpf_htons((__u16)skops->local_port);
	key.sk_remote_port = ctx_remote_port(skops->remote_port);

	err = bpf_sock_hash_update(skops, &slim_socks, &key, BPF_ANY);
	if (err)
		__sync_fetch_and_add(&stat_add_failed, 1);
	else
		__sync_fetch_and_add(&stat_added, 1);
	return 1;
}

SEC("sk_msg")
int slim_msg_redirect(struct sk_msg_md *msg)
{
	struct slim_sock_key peer = {};
	struct bpf_sock *sk = msg->sk;
	__u32 *tcp_only;

	/*
	 * The kernel's sockmap send path checks sk_err but not SEND_SHUTDOWN: a send after
	 * shutdown(SHUT_WR) would be redirected behind the FIN the peer already read, and lost.
	 * Only a socket that may still send redirects; the TCP path then fails it with EPIPE.
	 */
	if (!sk || (sk->state != BPF_TCP_ESTABLISHED && sk->state != BPF_TCP_CLOSE_WAIT)) {
		__sync_fetch_and_add(&stat_passed, 1);
		return SK_PASS;
	}
	tcp_only = keep_order ? bpf_sk_storage_get(&slim_tcp_only, sk, 0,
						   BPF_SK_STORAGE_GET_F_CREATE)
			      : 0;
	if (tcp_only && *tcp_only) {
		__sync_fetch_and_add(&stat_passed, 1);
		return SK_PASS;
	}
	peer.sk_local_ip = msg->remote_ip4;
	peer.sk_remote_ip = msg->local_ip4;
	peer.sk_local_port = ctx_remote_port(msg->remote_port);
	peer.sk_remote_port = bpf_htons((__u16)msg->local_port);

	/*
	 * A peer that is not (or no longer) in the map gets the bytes the normal TCP way: the
	 * helper then answers SK_DROP without having set a redirect, and returning SK_PASS
	 * regardless sends the message on this socket. Dropping is never right here.
	 */
	if (bpf_msg_redirect_hash(msg, &slim_socks, &peer, BPF_F_INGRESS) == SK_PASS) {
		__sync_fetch_and_add(&stat_redirected, 1);
	} else {
		if (tcp_only)
			*tcp_only = 1;
		__sync_fetch_and_add(&stat_passed, 1);
	}
	return SK_PASS;
}

/*
 * Bytes that still arrive the TCP way on a mapped socket (from a peer that is not in the map) are
 * passed to the socket's own ingress queue, in arrival order with the redirected ones. Having a
 * stream verdict attached also keeps the kernel on the receive path that 6.18.14+ gets right:
 * without one, a mapped socket receiving the TCP way is readable but reports FIONREAD 0 here
 * (tests/integration/sockmap_fastpath.sh shows it), which stalls apps that size reads by it.
 */
SEC("sk_skb/stream_verdict")
int slim_stream_verdict(struct __sk_buff *skb)
{
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
