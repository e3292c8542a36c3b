// SPDX-License-Identifier: MIT
/* The whitelist of socket options replayed from a pod socket onto its host socket. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "proto.h"
#include "sockopt.h"

bool slim_sockopt_allowed(int level, int name, size_t len)
{
	if (len == 0 || len > SLIM_SOCKOPT_MAXLEN)
		return false;
	if (level == SOL_SOCKET) {
		switch (name) {
		case SO_RCVBUF:
		case SO_SNDBUF:
		case SO_KEEPALIVE:
		case SO_REUSEADDR:
		case SO_REUSEPORT:
		case SO_OOBINLINE:
		case SO_RCVLOWAT:
			return len == sizeof(int);
		case SO_LINGER:
			return len == sizeof(struct linger);
		case SO_RCVTIMEO:
		case SO_SNDTIMEO:
			/* SO_SNDTIMEO bounds a blocking connect, which the kernel waits for on the host
			 * socket: it must be there before the shim's connect. */
			return len == sizeof(struct timeval);
		}
		return false;
	}
	if (level == IPPROTO_TCP) {
		switch (name) {
		case TCP_NODELAY:
		case TCP_KEEPIDLE:
		case TCP_KEEPINTVL:
		case TCP_KEEPCNT:
		case TCP_USER_TIMEOUT:
		case TCP_MAXSEG:
		case TCP_CORK:
		case TCP_QUICKACK:
		case TCP_NOTSENT_LOWAT:
		case TCP_DEFER_ACCEPT:
			return len == sizeof(int);
		case TCP_CONGESTION:
			return len <= SLIM_SOCKOPT_MAXLEN; /* TCP_CA_NAME_MAX */
		}
		return false;
	}
	/*
	 * IP_TOS: the app's DSCP/ECN, as it would mark its own packets on the overlay. Priority on
	 * the fabric (SO_PRIORITY, SO_MARK) stays the router's to give.
	 */
	if (level == IPPROTO_IP && (name == IP_TTL || name == IP_TOS))
		return len == sizeof(int);
	return false;
}
