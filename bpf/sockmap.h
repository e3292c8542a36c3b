/* SPDX-License-Identifier: MIT */
/*
 * The same-host fast path, user side: loads the sockmap programs (slim_sockmap.bpf.c), attaches
 * them to one cgroup v2 and to their sockhash, and answers questions about the sockhash.
 *
 * Link with build/lib/libslimbpf.a -lbpf -lelf -lz. Needs root (CAP_BPF, CAP_NET_ADMIN).
 *
 * Only sockets created by processes in that cgroup (or its descendants), and children accepted
 * from listeners created there, whose local and remote IPv4 address are both host_ip, are
 * accelerated; everything else is left to TCP. Nothing is pinned: every kernel object belongs to
 * the struct sockmap and goes away with sockmap_close (or with the process).
 */
#ifndef SLIM_SOCKMAP_H
#define SLIM_SOCKMAP_H

#include <stdbool.h>
#include <stdint.h>
#include <netinet/in.h>

struct sockmap;

/* sockmap_open flags */
/*
 * Do not attach the stream verdict program. Only for experiments: without it, on 6.18.14+ a
 * mapped socket receiving the TCP way (its peer not mapped) is readable but reports FIONREAD 0.
 */
#define SOCKMAP_F_NO_VERDICT 0x1
/*
 * Do not keep a direction on TCP once a send found its peer unmapped. Only for the test that
 * shows the overtaking hazard: without it, bytes sent before the peer is mapped can be overtaken.
 */
#define SOCKMAP_F_NO_ORDER 0x2
/*
 * Let the stream verdict pass segments that repeat bytes already passed on as they are. Only for
 * the test that shows the kernel trap the verdict works around (slim_sockmap.bpf.c).
 */
#define SOCKMAP_F_NO_TRIM 0x4

struct sockmap_stats {
	uint64_t sms_added;	 /* sockets put into the sockhash */
	uint64_t sms_add_failed; /* eligible sockets the kernel refused to map */
	uint64_t sms_skipped;	 /* eligible sockets left to TCP: bytes had crossed (Fast Open) */
	uint64_t sms_redirected; /* sends redirected to the peer */
	uint64_t sms_redirected_bytes; /* and their bytes */
	uint64_t sms_passed;	 /* sends from a mapped socket with an unmapped peer (TCP) */
	/* Flow control (docs/design.md, "Same-host fast path"): */
	uint64_t sms_flow_passed; /* sends to a mapped peer that went the TCP way */
	uint64_t sms_to_tcp;	  /* directions switched from redirect to TCP (peer behind) */
	uint64_t sms_to_redirect; /* directions switched to redirect (pipe drained) */
	/* Segments arriving the TCP way that repeated bytes already passed on (a kernel trap): */
	uint64_t sms_rx_trimmed;	 /* cut to their new bytes */
	uint64_t sms_rx_trimmed_bytes;	 /* the bytes cut */
	uint64_t sms_rx_trim_failed;	 /* could not be cut: the reader got bytes twice */
};

/*
 * Loads and attaches everything: the sk_msg and stream verdict programs to the sockhash first,
 * then the sockops program to the cgroup directory cgroup_path (a bpf_link), so no socket can
 * enter the map before its programs are in place. host_ip is in network byte order. Returns 0
 * and *out, or -errno with nothing left behind.
 */
int sockmap_open(const char *cgroup_path, uint32_t host_ip, unsigned int flags,
		 struct sockmap **out);

/*
 * Detaches the cgroup link and the map programs and closes every descriptor: no new socket is
 * mapped from now on. Connections already mapped keep being redirected, without losing a byte,
 * until they close: each holds the programs, which hold the map, and the kernel frees both when
 * the last of them closes. So a router restart never breaks a live connection.
 */
void sockmap_close(struct sockmap *sm);

/* Number of sockets in the sockhash, or -errno. */
int sockmap_entries(struct sockmap *sm);

/* Whether the socket with this local and remote address is in the sockhash. */
bool sockmap_contains(struct sockmap *sm, const struct sockaddr_in *local,
		      const struct sockaddr_in *remote);

/* Whether the connected socket fd is in the sockhash (looked up by its own 4-tuple). */
bool sockmap_contains_fd(struct sockmap *sm, int fd);
/* The sockhash itself (its fd stays ours), and the two queries above on any sockhash of this
 * layout: a router that took over keeps its predecessor's, whose connections live on in it. */
int sockmap_fd(struct sockmap *sm);
int sockmap_map_entries(int map_fd);
bool sockmap_map_contains(int map_fd, const struct sockaddr_in *local,
			  const struct sockaddr_in *remote);

/* Whether the peer of the connected socket fd (its 4-tuple reversed) is in the sockhash. */
bool sockmap_peer_mapped(struct sockmap *sm, int fd);

/*
 * Call on a client host socket as soon as it is established and before its first byte (the
 * preamble). Returns 1 when both the client and the server's accepted child are in the sockhash,
 * so every byte from now on is redirected in order. Otherwise it makes sure the client is not in
 * the sockhash, so the whole connection stays plain TCP in both directions, and returns 0;
 * -errno on failure (treat as 0: the connection works either way, but may not be in order if the
 * client is still mapped -- only a failing bpf syscall gets here).
 *
 * Why: the child is mapped when it becomes established on the server side, which normally
 * happens before the client's connect completes, but not always (a dropped final ACK, an accept
 * queue overflow, TCP_DEFER_ACCEPT). A preamble sent the TCP way while later app bytes are
 * redirected would be overtaken by them at the server. Removing the client is safe only before
 * the server side can send (its app gets the socket after the preamble): a socket removed from
 * the sockhash loses bytes already redirected into it.
 */
int sockmap_client_established(struct sockmap *sm, int fd);

/* Counters since sockmap_open. */
void sockmap_stats(struct sockmap *sm, struct sockmap_stats *st);

#endif
