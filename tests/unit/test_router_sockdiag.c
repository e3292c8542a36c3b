// SPDX-License-Identifier: MIT
/*
 * Unit tests for the router's sock_diag use (router/sockdiag.c): dumps, listener lookups and
 * SOCK_DESTROY, on real sockets in a private network namespace (each test runs in its own
 * process, so unshare() only affects that test).
 */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "router.h"
#include "test.h"

/* A fresh netns with lo up, and the sock_diag socket opened inside it. */
static bool private_netns(void)
{
	struct ifreq ifr = {0};
	int fd;

	if (geteuid() != 0)
		SKIP("needs root (a network namespace of its own)");
	if (!ASSERT_OK(unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)"))
		return false;
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	strcpy(ifr.ifr_name, "lo");
	ifr.ifr_flags = IFF_UP | IFF_LOOPBACK | IFF_RUNNING;
	ASSERT_OK(ioctl(fd, SIOCSIFFLAGS, &ifr), "lo up");
	close(fd);
	return ASSERT_OK(sockdiag_init(), "sockdiag_init");
}

struct pair {
	int lfd, cfd, sfd;
	struct tuple4 client; /* src = the client's end */
};

static bool make_pair(struct pair *p)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);

	p->lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (!ASSERT_OK(bind(p->lfd, (struct sockaddr *)&sin, sizeof(sin)), "bind") ||
	    !ASSERT_OK(listen(p->lfd, 8), "listen"))
		return false;
	getsockname(p->lfd, (struct sockaddr *)&sin, &len);
	p->cfd = socket(AF_INET, SOCK_STREAM, 0);
	if (!ASSERT_OK(connect(p->cfd, (struct sockaddr *)&sin, sizeof(sin)), "connect"))
		return false;
	p->sfd = accept(p->lfd, NULL, NULL);
	p->client.dst_ip = sin.sin_addr.s_addr;
	p->client.dst_port = sin.sin_port;
	len = sizeof(sin);
	getsockname(p->cfd, (struct sockaddr *)&sin, &len);
	p->client.src_ip = sin.sin_addr.s_addr;
	p->client.src_port = sin.sin_port;
	return ASSERT_TRUE(p->sfd >= 0, "accept");
}

struct seen {
	struct tuple4 want;
	int matches;
	uint32_t inode;
	uint8_t state;
};

static void count_match(const struct sockdiag_sock *s, void *arg)
{
	struct seen *w = arg;

	if (!memcmp(&s->sd_tuple, &w->want, sizeof(w->want))) {
		w->matches++;
		w->inode = s->sd_inode;
		w->state = s->sd_state;
	}
}

TEST(dump_finds_connection)
{
	struct pair p;
	struct seen w = {0};

	if (!private_netns() || !make_pair(&p))
		return;
	w.want = p.client;
	ASSERT_OK(sockdiag_dump(1u << TCP_ESTABLISHED, count_match, &w), "dump");
	ASSERT_EQ(w.matches, 1, "client socket in the dump");
	ASSERT_EQ(w.state, TCP_ESTABLISHED, "state");
	ASSERT_TRUE(w.inode != 0, "held by a process");
}

TEST(listener_exists_follows_close)
{
	struct pair p;
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	if (!private_netns() || !make_pair(&p))
		return;
	getsockname(p.lfd, (struct sockaddr *)&sin, &len);
	ASSERT_EQ(sockdiag_listener_exists(sin.sin_addr.s_addr, sin.sin_port), 1, "listening");
	ASSERT_EQ(sockdiag_listener_exists(sin.sin_addr.s_addr, htons(1)), 0, "other port");
	close(p.lfd);
	ASSERT_EQ(sockdiag_listener_exists(sin.sin_addr.s_addr, sin.sin_port), 0, "closed");
}

TEST(destroy_resets_both_ends)
{
	struct pair p;
	struct pollfd pf;
	char c;

	if (!private_netns() || !make_pair(&p))
		return;
	if (!ASSERT_OK(sockdiag_destroy(&p.client), "SOCK_DESTROY"))
		return;
	/* The app's socket reports the abort; the peer gets an RST. */
	ASSERT_EQ(recv(p.cfd, &c, 1, MSG_DONTWAIT), -1, "client recv fails");
	ASSERT_EQ(errno, ECONNABORTED, "client sees ECONNABORTED");
	pf.fd = p.sfd;
	pf.events = POLLIN;
	ASSERT_EQ(poll(&pf, 1, 2000), 1, "server wakes up");
	ASSERT_EQ(recv(p.sfd, &c, 1, MSG_DONTWAIT), -1, "server recv fails");
	ASSERT_EQ(errno, ECONNRESET, "server sees the reset");
	ASSERT_EQ(sockdiag_destroy(&p.client), -ENOENT, "second destroy: no such socket");
}
