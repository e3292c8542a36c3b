// SPDX-License-Identifier: MIT
/*
 * A stand-in for the shim in router tests: run inside a pod netns, it speaks the shim's protocol
 * to the router itself and checks what the router and the kernel promised.
 *
 *   router_client SOCK listen POD_IP PORT [ACCEPTS]
 *	LISTEN_REQ for POD_IP:PORT; checks the fd listens and that the kernel names it by its
 *	overlay address (0.0.0.0:PORT); prints "listen fd host=IP:PORT" (the reply's host address),
 *	then accepts ACCEPTS connections (default 1): prints "accepted src=... dst=..." as the
 *	kernel names them (accept's address and getsockname), echoes until the client closes.
 *   router_client SOCK claim PORT PROOF_PORT
 *	A forged LISTEN_REQ: a host listener for PORT, with a listener on PROOF_PORT (0: none) as
 *	its proof. Prints "claim fallback" (refused, as it must be) or "claim fd".
 *   router_client SOCK connect IP PORT [MSG [HOLD_MS]]
 *	POOL_REQ for one governed socket, connect() on it to IP:PORT; on a miss ROUTE_REQ and
 *	connect again. Prints "connect fallback", "connect refused" or "connect local=... routed=0|1"
 *	(routed: the router had to be asked), then waits for the connect, sends MSG (default
 *	"ping"), prints "echo MSG" when it comes back, and keeps the connection open HOLD_MS
 *	(default 0) before closing.
 *   router_client SOCK forge-vip VIP PORT
 *	Forged ROUTE_REQs for a Service VIP, as a hostile pod would send them: without a socket,
 *	with a pool socket the kernel never routed, with a plain socket, with a pipe. The router
 *	must believe none of them (FALLBACK, never a route); prints "forge ok".
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
#include "../../common/sockopt.c"

#define SLIM_ERRNO_MISS	    126 /* bpf/govern_abi.h */
#define SLIM_ERRNO_FALLBACK 66

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

/* A listening pod socket on 0.0.0.0:port (in the pod's namespace, where we run). */
static int pod_listener(int port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(fd, 16) < 0)
		die("pod listener on port %d: %s", port, strerror(errno));
	return fd;
}

static int do_listen(int rfd, const char *pod_ip, int port, int accepts)
{
	struct slim_listen_req req = {0};
	struct slim_listen_rep rep;
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	char a[32], b[32];
	int lfd, on = 0;
	uint32_t ip = inet_addr(pod_ip);

	req.hdr.type = SLIM_MSG_LISTEN_REQ;
	req.hdr.len = (uint32_t)slim_listen_req_len(0);
	req.hdr.id = 7;
	req.port = htons((uint16_t)port);
	req.backlog = 128;
	/* As the shim does: the pod listener goes with the request, proof that the port is ours. */
	if (slim_msg_send(rfd, &req, req.hdr.len, pod_listener(port)) < 0)
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
	if (sin.sin_addr.s_addr != INADDR_ANY || sin.sin_port != htons((uint16_t)port))
		die("the kernel names the listener %s, not its overlay 0.0.0.0:%d",
		    ep(a, sin.sin_addr.s_addr, sin.sin_port), port);
	/* The router made it non-blocking; like the shim, give the app back a blocking fd. */
	fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) & ~O_NONBLOCK);
	printf("listen fd host=%s\n", ep(a, rep.host_ip, rep.host_port));
	fflush(stdout);

	for (int i = 0; i < accepts; i++) {
		struct sockaddr_in peer, me;
		socklen_t plen = sizeof(peer), mlen = sizeof(me);
		uint8_t buf[512];
		ssize_t n;
		int s;

		/* The test decides when clients come: no deadline on the accept itself. */
		s = accept4(lfd, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);
		if (s < 0)
			die("accept: %s", strerror(errno));
		getsockname(s, (struct sockaddr *)&me, &mlen);
		if (me.sin_addr.s_addr != ip || me.sin_port != htons((uint16_t)port))
			die("accepted for %s, this listener is %s:%d",
			    ep(a, me.sin_addr.s_addr, me.sin_port), pod_ip, port);
		printf("accepted src=%s dst=%s\n", ep(a, peer.sin_addr.s_addr, peer.sin_port),
		       ep(b, me.sin_addr.s_addr, me.sin_port));
		fflush(stdout);

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

/* One governed socket from the router's pool. */
static int pool_socket(int rfd)
{
	struct slim_pool_req req = {.hdr = {.type = SLIM_MSG_POOL_REQ, .len = sizeof(req), .id = 8},
				    .count = 1};
	struct slim_pool_rep rep;
	int fd;

	if (slim_msg_send(rfd, &req, sizeof(req), -1) < 0)
		die("send POOL_REQ");
	fd = recv_reply(rfd, &rep, sizeof(rep), SLIM_MSG_POOL_REP, 8);
	if (rep.action != SLIM_ACT_FD || fd < 0)
		return -1;
	return fd;
}

/* ROUTE_REQ for dst, with pass (-1: none) attached: the router's action. */
static uint32_t ask_route_fd(int rfd, const struct sockaddr_in *dst, int pass)
{
	struct slim_route_req req = {.hdr = {.type = SLIM_MSG_ROUTE_REQ, .len = sizeof(req), .id = 9},
				     .dst_ip = dst->sin_addr.s_addr,
				     .dst_port = dst->sin_port};
	struct slim_route_rep rep;
	int fd;

	if (slim_msg_send(rfd, &req, sizeof(req), pass) < 0)
		die("send ROUTE_REQ");
	fd = recv_reply(rfd, &rep, sizeof(rep), SLIM_MSG_ROUTE_REP, 9);
	if (fd >= 0)
		die("a ROUTE_REP with a descriptor");
	return rep.action;
}

/* ROUTE_REQ for dst: the router's action. */
static uint32_t ask_route(int rfd, const struct sockaddr_in *dst)
{
	return ask_route_fd(rfd, dst, -1);
}

static int do_forge_vip(int rfd, const char *vip, int port)
{
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = inet_addr(vip),
				 .sin_port = htons((uint16_t)port)};
	int pipefd[2], plain = socket(AF_INET, SOCK_STREAM, 0), pool = pool_socket(rfd);
	const char *what[] = {"no socket", "an unrouted pool socket", "a plain socket", "a pipe"};
	int fds[4], bad = 0;

	if (pipe(pipefd) < 0 || plain < 0 || pool < 0)
		die("forge-vip: setup: %s", strerror(errno));
	fds[0] = -1, fds[1] = pool, fds[2] = plain, fds[3] = pipefd[0];
	for (int i = 0; i < 4; i++) {
		uint32_t action = ask_route_fd(rfd, &to, fds[i]);

		if (action == SLIM_ACT_ROUTE) {
			printf("forge: a route for a VIP with %s\n", what[i]);
			bad = 1;
		}
	}
	if (!bad)
		printf("forge ok\n");
	return bad;
}

static int do_connect(int rfd, const char *dst, int port, const char *msg, int hold_ms)
{
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = inet_addr(dst),
				 .sin_port = htons((uint16_t)port)};
	struct sockaddr_in me;
	socklen_t mlen = sizeof(me);
	struct pollfd p;
	char a[32], buf[512];
	int fd, err = 0, routed = 0;
	socklen_t len = sizeof(err);
	size_t got = 0, want = strlen(msg);

	fd = pool_socket(rfd);
	if (fd < 0) {
		printf("connect fallback\n");
		return 0;
	}
	while (connect(fd, (struct sockaddr *)&to, sizeof(to)) < 0 && errno != EINPROGRESS) {
		uint32_t action;

		if (errno == ECONNREFUSED) {
			printf("connect refused\n");
			return 0;
		}
		if (errno == SLIM_ERRNO_FALLBACK) {
			printf("connect fallback\n");
			return 0;
		}
		if (errno != SLIM_ERRNO_MISS || routed)
			die("connect: %s", strerror(errno));
		routed = 1;
		action = ask_route(rfd, &to);
		if (action == SLIM_ACT_FALLBACK) {
			printf("connect fallback\n");
			return 0;
		}
		if (action == SLIM_ACT_ERROR) {
			printf("connect refused\n");
			return 0;
		}
		if (action != SLIM_ACT_ROUTE)
			die("route: action %u", action);
	}
	getsockname(fd, (struct sockaddr *)&me, &mlen);
	printf("connect local=%s routed=%d\n", ep(a, me.sin_addr.s_addr, me.sin_port), routed);
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

static int do_claim(int rfd, int port, int proof_port)
{
	struct slim_listen_req req = {0};
	struct slim_listen_rep rep;
	int lfd;

	req.hdr.type = SLIM_MSG_LISTEN_REQ;
	req.hdr.len = (uint32_t)slim_listen_req_len(0);
	req.hdr.id = 11;
	req.port = htons((uint16_t)port);
	req.backlog = 16;
	if (slim_msg_send(rfd, &req, req.hdr.len, proof_port ? pod_listener(proof_port) : -1) < 0)
		die("send LISTEN_REQ");
	lfd = recv_reply(rfd, &rep, sizeof(rep), SLIM_MSG_LISTEN_REP, 11);
	printf("claim %s\n", rep.action == SLIM_ACT_FD && lfd >= 0 ? "fd" : "fallback");
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
	if (argc == 5 && !strcmp(argv[2], "claim")) {
		rfd = router_open(argv[1]);
		return do_claim(rfd, atoi(argv[3]), atoi(argv[4]));
	}
	if (argc >= 5 && !strcmp(argv[2], "connect")) {
		rfd = router_open(argv[1]);
		return do_connect(rfd, argv[3], atoi(argv[4]), argc > 5 ? argv[5] : "ping",
				  argc > 6 ? atoi(argv[6]) : 0);
	}
	if (argc == 5 && !strcmp(argv[2], "forge-vip")) {
		rfd = router_open(argv[1]);
		return do_forge_vip(rfd, argv[3], atoi(argv[4]));
	}
	fprintf(stderr, "usage: router_client SOCK listen POD_IP PORT [ACCEPTS]\n"
			"       router_client SOCK connect IP PORT [MSG [HOLD_MS]]\n");
	return 2;
}
