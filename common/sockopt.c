// SPDX-License-Identifier: MIT
/* The whitelist of socket options replayed from a pod socket onto its host socket. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "proto.h"
#include "sockopt.h"
#include "sockopt_list.h"

enum { SOCKOPT_INT, SOCKOPT_LINGER, SOCKOPT_TIMEVAL, SOCKOPT_NAME };

static bool sockopt_size_ok(int size, size_t len)
{
	switch (size) {
	case SOCKOPT_INT:
		return len == sizeof(int);
	case SOCKOPT_LINGER:
		return len == sizeof(struct linger);
	case SOCKOPT_TIMEVAL:
		return len == sizeof(struct timeval);
	default:
		return len <= SLIM_SOCKOPT_MAXLEN; /* TCP_CA_NAME_MAX */
	}
}

/*
 * SO_SNDTIMEO is on the list because it bounds a blocking connect, which the kernel waits for on
 * the host socket; IP_TOS because it is the app's DSCP/ECN, as it would mark its own packets on
 * the overlay. Priority on the fabric (SO_PRIORITY, SO_MARK) stays the router's to give.
 */
bool slim_sockopt_allowed(int level, int name, size_t len)
{
	if (len == 0 || len > SLIM_SOCKOPT_MAXLEN)
		return false;
#define SOCKOPT_CASE(l, n, size)                                                                  \
	if (level == (l) && name == (n))                                                          \
		return sockopt_size_ok(size, len);
	SLIM_SOCKOPTS_REPLAYED(SOCKOPT_CASE)
#undef SOCKOPT_CASE
	return false;
}
