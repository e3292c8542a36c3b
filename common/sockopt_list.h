/* SPDX-License-Identifier: MIT */
/*
 * The one list of socket options a pod may set on a host socket: the shim replays them from the
 * pod socket onto the host socket (sockopt.c), and the governance program (bpf/slim_govern.bpf.c)
 * refuses every other option on a socket a pod holds. Included by user space (with the libc
 * constants) and by the BPF program (which defines the same constants itself).
 *
 * X(level, name, size): size is SOCKOPT_INT, SOCKOPT_LINGER, SOCKOPT_TIMEVAL or SOCKOPT_NAME
 * (a string up to SLIM_SOCKOPT_MAXLEN).
 */
#ifndef SLIM_SOCKOPT_LIST_H
#define SLIM_SOCKOPT_LIST_H

/* Replayed from the pod socket at connect or listen, and allowed on the host socket later. */
#define SLIM_SOCKOPTS_REPLAYED(X)                                                                 \
	X(SOL_SOCKET, SO_RCVBUF, SOCKOPT_INT)                                                     \
	X(SOL_SOCKET, SO_SNDBUF, SOCKOPT_INT)                                                     \
	X(SOL_SOCKET, SO_KEEPALIVE, SOCKOPT_INT)                                                  \
	X(SOL_SOCKET, SO_REUSEADDR, SOCKOPT_INT)                                                  \
	X(SOL_SOCKET, SO_REUSEPORT, SOCKOPT_INT)                                                  \
	X(SOL_SOCKET, SO_OOBINLINE, SOCKOPT_INT)                                                  \
	X(SOL_SOCKET, SO_RCVLOWAT, SOCKOPT_INT)                                                   \
	X(SOL_SOCKET, SO_LINGER, SOCKOPT_LINGER)                                                  \
	X(SOL_SOCKET, SO_RCVTIMEO, SOCKOPT_TIMEVAL)                                               \
	X(SOL_SOCKET, SO_SNDTIMEO, SOCKOPT_TIMEVAL)                                               \
	X(IPPROTO_TCP, TCP_NODELAY, SOCKOPT_INT)                                                  \
	X(IPPROTO_TCP, TCP_KEEPIDLE, SOCKOPT_INT)                                                 \
	X(IPPROTO_TCP, TCP_KEEPINTVL, SOCKOPT_INT)                                                \
	X(IPPROTO_TCP, TCP_KEEPCNT, SOCKOPT_INT)                                                  \
	X(IPPROTO_TCP, TCP_USER_TIMEOUT, SOCKOPT_INT)                                             \
	X(IPPROTO_TCP, TCP_MAXSEG, SOCKOPT_INT)                                                   \
	X(IPPROTO_TCP, TCP_CORK, SOCKOPT_INT)                                                     \
	X(IPPROTO_TCP, TCP_QUICKACK, SOCKOPT_INT)                                                 \
	X(IPPROTO_TCP, TCP_NOTSENT_LOWAT, SOCKOPT_INT)                                            \
	X(IPPROTO_TCP, TCP_DEFER_ACCEPT, SOCKOPT_INT)                                             \
	X(IPPROTO_TCP, TCP_CONGESTION, SOCKOPT_NAME)                                              \
	X(IPPROTO_IP, IP_TTL, SOCKOPT_INT)                                                        \
	X(IPPROTO_IP, IP_TOS, SOCKOPT_INT)

/*
 * Allowed on a host socket but never replayed (they describe the connection's life, not its
 * set-up): what ordinary apps set on established connections.
 */
#define SLIM_SOCKOPTS_RUNTIME(X)                                                                  \
	X(SOL_SOCKET, SO_SNDLOWAT, SOCKOPT_INT)                                                   \
	X(SOL_SOCKET, SO_TIMESTAMP, SOCKOPT_INT)                                                  \
	X(SOL_SOCKET, SO_TIMESTAMPNS, SOCKOPT_INT)                                                \
	X(SOL_SOCKET, SO_ZEROCOPY, SOCKOPT_INT)                                                   \
	X(IPPROTO_TCP, TCP_WINDOW_CLAMP, SOCKOPT_INT)                                             \
	X(IPPROTO_TCP, TCP_LINGER2, SOCKOPT_INT)                                                  \
	X(IPPROTO_TCP, TCP_SYNCNT, SOCKOPT_INT)                                                   \
	X(IPPROTO_TCP, TCP_INQ, SOCKOPT_INT)                                                      \
	X(IPPROTO_TCP, TCP_THIN_LINEAR_TIMEOUTS, SOCKOPT_INT)                                     \
	X(IPPROTO_IP, IP_RECVERR, SOCKOPT_INT)                                                    \
	X(IPPROTO_IP, IP_MTU_DISCOVER, SOCKOPT_INT)                                               \
	X(IPPROTO_IP, IP_RECVTOS, SOCKOPT_INT)

#endif
