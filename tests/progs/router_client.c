// SPDX-License-Identifier: MIT
/*
 * A stand-in for the shim in router tests: run inside a pod netns, it sends LISTEN_REQ /
 * CONNECT_REQ to the router itself, takes the fd and checks what the router promised.
 *
 *   router_client SOCK listen POD_IP PORT [ACCEPTS]
 *	LISTEN_REQ for POD_IP:PORT; checks the fd listens on the address in the reply; prints
 *	"listen fd host=IP:PORT", then accepts ACCEPTS connections (default 1): reads and checks
 *	the preamble (its dst must be POD_IP:PORT), prints "accepted src=... dst=... host=...",
 *	sends the ACCEPTED notice, echoes one line, and waits for the client to close.
 *   router_client SOCK connect IP PORT [MSG [HOLD_MS]]
 *	CONNECT_REQ; prints "connect fallback" or "connect fd local=... host=... cached=0|1",
 *	then waits for the connect, sends MSG (default "ping"), prints "echo MSG" when it comes
 *	back, and keeps the connection open HOLD_MS (default 0) before closing.
 * Every wait has a deadline; exit status 0 when everything checked out, 1 otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

/* The tests Makefile links progs with nothing but libc: compile the codecs we need in. */
#include "../../common/msg.c"
#include "../../common/preamble.c"
#include "../../common/sockopt.c"

#define DEADLINE_MS 5000

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stdout, "error: ");
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	exit(1);
}

static const char *ep(char *buf, uint32_t ip, uint16_t port)
{
	char a[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &ip, a, sizeof(a));
	sprintf(buf, "%s:%u", a, ntohs(port));
	return buf;
}

static int router_open(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		die("connect %s: %s", path, strerror(errno));
	return fd;
}

/* Waits for events on fd; dies after the deadline. */
static short wait_fd(int fd, short events)
{
	struct pollfd p = {.fd = fd, .events = events};
	int n = poll(&p, 1, DEADLINE_MS);

	if (n <= 0)
		die("timed out waiting on fd %d", fd);
	return p.revents;
}

static int recv_reply(int rfd, void *buf, size_t cap, uint16_t type, uint32_t id)
{
	int fd;
	ssize_t n;

	wait_fd(rfd, POLLIN);
	n = slim_msg_recv(rfd, buf, cap, &fd, 0);
	if (n <= 0)
		die("no reply from the router (%zd)", n);
	if (slim_msg_check_reply(buf, (size_t)n, type, id) < 0)
		die("malformed reply");
	return fd;
}

static int do_listen(int rfd, const char *pod_ip, int port, int accepts)
{
	struct slim_listen_req req = {0};
	struct slim_listen_rep rep;
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	char a[32], b[32], c[32];
	int lfd, on = 0;
	uint32_t ip = inet_addr(pod_ip);

	req.hdr.type = SLIM_MSG_LISTEN_REQ;
	req.hdr.len = (uint32_t)slim_listen_req_len(0);
	req.hdr.id = 7;
	req.port = htons((uint16_t)port);
	req.backlog = 128;
	if (slim_msg_send(rfd, &req, req.hdr.len, -1) < 0)
		die("send LISTEN_REQ");
	lfd = recv_reply(rfd, &rep, sizeof(rep), SLIM_MSG_LISTEN_REP, 7);
	if (rep.action == SLIM_ACT_FALLBACK) {
		printf("listen fallback\n");
		fflush(stdout);
		return lfd < 0 ? 0 : 1;
	}
	if (rep.action != SLIM_ACT_FD || lfd < 0)
		die("listen: action %u fd %d", rep.action, lfd);
	len = sizeof(on);
	if (getsockopt(lfd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) < 0 || !on)
		die("the listener fd does not listen");
	len = sizeof(sin);
	getsockname(lfd, (struct sockaddr *)&sin, &len);
	if (sin.sin_addr.s_addr != rep.host_ip || sin.sin_port != rep.host_port)
		die("listener bound to %s, reply says %s", ep(a, sin.sin_addr.s_addr, sin.sin_port),
		    ep(b, rep.host_ip, rep.host_port));
	/* The router made it non-blocking; like the shim, give the app back a blocking fd. */
	fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) & ~O_NONBLOCK);
	printf("listen fd host=%s\n", ep(a, rep.host_ip, rep.host_port));
	fflush(stdout);

	for (int i = 0; i < accepts; i++) {
		struct sockaddr_in peer;
		socklen_t plen = sizeof(peer);
		struct slim_preamble pre;
		struct slim_accepted acc = {0};
		uint8_t buf[512];
		size_t got = 0;
		ssize_t n;
		int s;

		/* The test decides when clients come: no deadline on the accept itself. */
		s = accept4(lfd, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);
		if (s < 0)
			die("accept: %s", strerror(errno));
		/* TCP_DEFER_ACCEPT: the preamble is already here. */
		while (got < SLIM_PREAMBLE_LEN) {
			wait_fd(s, POLLIN);
			n = recv(s, buf + got, SLIM_PREAMBLE_LEN - got, 0);
			if (n <= 0)
				die("preamble: connection closed after %zu bytes", got);
			got += (size_t)n;
		}
		if (slim_preamble_decode(buf, SLIM_PREAMBLE_LEN, &pre) < 0)
			die("bad preamble");
		if (pre.dst_ip != ip || pre.dst_port != htons((uint16_t)port))
			die("preamble for %s, this listener is %s:%d",
			    ep(a, pre.dst_ip, pre.dst_port), pod_ip, port);
		printf("accepted src=%s dst=%s host=%s\n", ep(a, pre.src_ip, pre.src_port),
		       ep(b, pre.dst_ip, pre.dst_port), ep(c, peer.sin_addr.s_addr, peer.sin_port));
		fflush(stdout);

		acc.hdr.type = SLIM_MSG_ACCEPTED;
		acc.hdr.len = sizeof(acc);
		acc.hdr.id = 100 + (uint32_t)i;
		acc.overlay_src_ip = pre.src_ip;
		acc.overlay_src_port = pre.src_port;
		acc.overlay_dst_ip = pre.dst_ip;
		acc.overlay_dst_port = pre.dst_port;
		acc.host_src_ip = peer.sin_addr.s_addr;
		acc.host_src_port = peer.sin_port;
		acc.host_dst_ip = rep.host_ip;
		acc.host_dst_port = rep.host_port;
		if (slim_msg_send(rfd, &acc, sizeof(acc), -1) < 0)
			die("send ACCEPTED");

		/* Echo until the client closes. */
		for (;;) {
			wait_fd(s, POLLIN);
			n = recv(s, buf, sizeof(buf), 0);
			if (n <= 0)
				break;
			if (send(s, buf, (size_t)n, MSG_NOSIGNAL) != n)
				break;
		}
		close(s);
	}
	close(lfd);
	return 0;
}

static int do_connect(int rfd, const char *dst, int port, const char *msg, int hold_ms)
{
	struct slim_connect_req req = {0};
	struct slim_connect_rep rep;
	struct pollfd p;
	char a[32], b[32], buf[512];
	int fd, err = 0;
	socklen_t len = sizeof(err);
	size_t got = 0, want = strlen(msg);

	req.hdr.type = SLIM_MSG_CONNECT_REQ;
	req.hdr.len = (uint32_t)slim_connect_req_len(0);
	req.hdr.id = 9;
	req.dst_ip = inet_addr(dst);
	req.dst_port = htons((uint16_t)port);
	if (slim_msg_send(rfd, &req, req.hdr.len, -1) < 0)
		die("send CONNECT_REQ");
	fd = recv_reply(rfd, &rep, sizeof(rep), SLIM_MSG_CONNECT_REP, 9);
	if (rep.action == SLIM_ACT_FALLBACK) {
		printf("connect fallback\n");
		return fd < 0 ? 0 : 1;
	}
	if (rep.action != SLIM_ACT_FD || fd < 0)
		die("connect: action %u fd %d", rep.action, fd);
	printf("connect fd local=%s host=%s cached=%d\n", ep(a, rep.local_ip, rep.local_port),
	       ep(b, rep.host_ip, rep.host_port), !!(rep.flags & SLIM_REPF_CACHED));
	fflush(stdout);

	p.fd = fd;
	p.events = POLLOUT;
	if (poll(&p, 1, DEADLINE_MS) <= 0)
		die("connect did not complete");
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
	if (err)
		die("connect: %s", strerror(err));
	if (send(fd, msg, want, MSG_NOSIGNAL) != (ssize_t)want)
		die("send: %s", strerror(errno));
	while (got < want) {
		ssize_t n;

		wait_fd(fd, POLLIN);
		n = recv(fd, buf + got, sizeof(buf) - got, 0);
		if (n <= 0)
			die("echo: closed after %zu bytes", got);
		got += (size_t)n;
	}
	if (got != want || memcmp(buf, msg, want))
		die("echo mismatch");
	printf("echo %s\n", msg);
	fflush(stdout);
	if (hold_ms > 0)
		usleep((useconds_t)hold_ms * 1000);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	int rfd;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 5 && !strcmp(argv[2], "listen")) {
		rfd = router_open(argv[1]);
		return do_listen(rfd, argv[3], atoi(argv[4]), argc > 5 ? atoi(argv[5]) : 1);
	}
	if (argc >= 5 && !strcmp(argv[2], "connect")) {
		rfd = router_open(argv[1]);
		return do_connect(rfd, argv[3], atoi(argv[4]), argc > 5 ? argv[5] : "ping",
				  argc > 6 ? atoi(argv[6]) : 0);
	}
	fprintf(stderr, "usage: router_client SOCK listen POD_IP PORT [ACCEPTS]\n"
			"       router_client SOCK connect IP PORT [MSG [HOLD_MS]]\n");
	return 2;
}
