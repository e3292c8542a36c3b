/* SPDX-License-Identifier: MIT */
/*
 * The sockhash key shared by the BPF programs (slim_sockmap.bpf.c) and their loader (sockmap.c):
 * one established TCP/IPv4 socket named by its 4-tuple as seen from that socket.
 */
#ifndef SLIM_SOCKMAP_KEY_H
#define SLIM_SOCKMAP_KEY_H

/*
 * Addresses and ports in network byte order, as in struct sockaddr_in. The peer of a socket has
 * the same key with local and remote swapped, which is how the sk_msg program finds it.
 * Kept free of padding so the kernel hashes exactly these 12 bytes.
 */
struct slim_sock_key {
	__u32 sk_local_ip;
	__u32 sk_remote_ip;
	__u16 sk_local_port;
	__u16 sk_remote_port;
};

/* Upper bound on accelerated connections per host (two sockets each). */
#define SLIM_SOCKMAP_MAX_ENTRIES 65536
/*
 * The sk_msg program's counters, one cache line per CPU: a shared line moved between the two
 * CPUs of a same-host ping-pong at every message. Still atomic adds: past SLIM_STAT_CPUS (a
 * power of two) CPUs share slots. The loader sums them (sockmap_stats).
 */
#define SLIM_STAT_CPUS 64
struct slim_send_stats {
	__u64 ss_redirected;
	__u64 ss_redirected_bytes;
	__u64 ss_passed;      /* sent the TCP way: no peer in the map */
	__u64 ss_flow_passed; /* sent the TCP way by the flow control */
	__u64 ss_pad[4];
};

#endif
