// SPDX-License-Identifier: MIT
/* Unit tests for the supervisor's reading of the options an app set (supervise/options.c). */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "proto.h"
#include "supervise.h"
#include "test.h"

static int opt_int(int fd, int level, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);

	getsockopt(fd, level, name, &v, &len);
	return v;
}

TEST(fresh_socket_has_no_changed_options)
{
	struct slim_sockopt o[SLIM_MAX_SOCKOPTS];
	int s = socket(AF_INET, SOCK_STREAM, 0);

	ASSERT_EQ(options_changed(s, AF_INET, o, SLIM_MAX_SOCKOPTS), 0, "changed on a fresh socket");
	close(s);
}

TEST(changed_options_are_found_and_replayed)
{
	struct slim_sockopt o[SLIM_MAX_SOCKOPTS];
	int s = socket(AF_INET, SOCK_STREAM, 0), t = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1, buf = 40000, tos = 0x10, n;

	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(s, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
	setsockopt(s, IPPROTO_IP, IP_TOS, &tos, sizeof(tos));
	n = options_changed(s, AF_INET, o, SLIM_MAX_SOCKOPTS);
	if (!ASSERT_EQ(n, 3, "changed options"))
		goto out;
	ASSERT_EQ(options_changed(s, AF_INET, o, 2), -E2BIG, "more than asked for");
	n = options_changed(s, AF_INET, o, SLIM_MAX_SOCKOPTS);
	ASSERT_OK(options_apply(t, o, (unsigned)n), "apply");
	ASSERT_EQ(opt_int(t, IPPROTO_TCP, TCP_NODELAY), 1, "TCP_NODELAY replayed");
	/* The kernel doubles what is asked: the replay must ask for 40000, not the 80000 read. */
	ASSERT_EQ(opt_int(t, SOL_SOCKET, SO_RCVBUF), opt_int(s, SOL_SOCKET, SO_RCVBUF), "SO_RCVBUF");
	ASSERT_EQ(opt_int(t, IPPROTO_IP, IP_TOS), tos, "IP_TOS replayed");
out:
	close(s);
	close(t);
}
