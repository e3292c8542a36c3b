// SPDX-License-Identifier: MIT
/*
 * Load for router tests, run inside a pod netns (it speaks the shim's protocol itself):
 *
 *   router_load SOCK bench POD_IP PORT N
 *	Gets a host listener for POD_IP:PORT (a thread accepts and closes), then does N
 *	ROUTE_REQs to it one after the other. Prints
 *	"bench N fd F fallback B avg_us A p50_us P p99_us Q max_us M" (fd: answers "route").
 *   router_load SOCK serve POD_IP PORT
 *	Gets a host listener for POD_IP:PORT, prints "serving host=IP:PORT" and accepts and
 *	closes connections until killed.
 *   router_load SOCK flood IP PORT N
 *	Sends up to N ROUTE_REQs without ever reading a reply. Prints
 *	"flood sent S closed 0|1": closed 1 when the router closed the connection (within 5 s).
 *   router_load SOCK burst IP PORT N
 *	Sends N ROUTE_REQs to distinct ports PORT.. of IP without waiting, then reads all the
 *	replies. Prints "burst N fd F fallback B ms T" (fd: answers "route").
 *   router_load SOCK garbage KIND
 *	Sends one malformed LISTEN_REQ (KIND: short, len, type, reserved, nopts, sockopt, big) and
 *	prints "garbage KIND closed 0|1" (1: the router closed this connection within 5 s).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
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

static int router_open(const char *path, int flags)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | flags, 0);

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		printf("error: connect %s: %s\n", path, strerror(errno));
		exit(1);
	}
	return fd;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void route_req(struct slim_route_req *req, uint32_t id, const char *ip, int port)
{
	memset(req, 0, sizeof(*req));
	req->hdr.type = SLIM_MSG_ROUTE_REQ;
	req->hdr.len = sizeof(*req);
	req->hdr.id = id;
	req->dst_ip = inet_addr(ip);
	req->dst_port = htons((uint16_t)port);
}

/* Waits up to 5 s for the router to hang up on fd. */
static int router_closed(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLRDHUP};
	uint64_t end = now_ns() + 5000000000ull;

	while (now_ns() < end) {
		if (poll(&p, 1, 100) > 0 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR)))
			return 1;
	}
	return 0;
}

static void *bench_acceptor(void *arg)
{
	int lfd = *(int *)arg;

	for (;;) {
		int s = accept(lfd, NULL, NULL);

		if (s >= 0)
			close(s);
		else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			return NULL;
		else {
			struct pollfd p = {.fd = lfd, .events = POLLIN};

			poll(&p, 1, 100);
		}
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* A listening pod socket on 0.0.0.0:port (in the pod's namespace, where we run). */
static int pod_listener(int port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(fd, 16) < 0) {
		printf("error: pod listener on port %d: %s\n", port, strerror(errno));
		exit(1);
	}
	return fd;
}

/* LISTEN_REQ for the caller's pod; returns the host listener fd and fills *rep. */
static int host_listener(int rfd, int port, struct slim_listen_rep *rep)
{
	struct slim_listen_req lreq = {0};
	int lfd;

	lreq.hdr.type = SLIM_MSG_LISTEN_REQ;
	lreq.hdr.len = (uint32_t)slim_listen_req_len(0);
	lreq.hdr.id = 1;
	lreq.port = htons((uint16_t)port);
	lreq.backlog = 4096;
	/* As the shim does: the pod listener goes with the request, proof that the port is ours. */
	if (slim_msg_send(rfd, &lreq, lreq.hdr.len, pod_listener(port)) < 0 ||
	    slim_msg_recv(rfd, rep, sizeof(*rep), &lfd, 0) != sizeof(*rep) ||
	    rep->action != SLIM_ACT_FD || lfd < 0) {
		printf("error: no host listener\n");
		exit(1);
	}
	return lfd;
}

static int do_serve(const char *path, int port)
{
	int rfd = router_open(path, 0);
	struct slim_listen_rep rep;
	struct in_addr a = {.s_addr = 0};
	int lfd = host_listener(rfd, port, &rep);

	a.s_addr = rep.host_ip;
	printf("serving host=%s:%u\n", inet_ntoa(a), ntohs(rep.host_port));
	bench_acceptor(&lfd);
	return 1;
}

static int do_bench(const char *path, const char *ip, int port, int n)
{
	struct slim_listen_rep lrep;
	struct slim_route_req req;
	struct slim_route_rep rep;
	uint64_t *lat = calloc((size_t)n, sizeof(*lat)), total = 0;
	int rfd = router_open(path, 0), lfd, fd, nfd = 0, nfb = 0;
	pthread_t t;

	lfd = host_listener(rfd, port, &lrep);
	pthread_create(&t, NULL, bench_acceptor, &lfd);
	for (int i = 0; i < n; i++) {
		uint64_t t0 = now_ns();
		ssize_t got;

		route_req(&req, (uint32_t)i + 10, ip, port);
		if (slim_msg_send(rfd, &req, req.hdr.len, -1) < 0) {
			printf("error: send\n");
			return 1;
		}
		got = slim_msg_recv(rfd, &rep, sizeof(rep), &fd, 0);
		lat[i] = now_ns() - t0;
		total += lat[i];
		if (got != sizeof(rep) ||
		    slim_msg_check_reply(&rep, sizeof(rep), SLIM_MSG_ROUTE_REP,
					 (uint32_t)i + 10) < 0 || fd >= 0) {
			printf("error: bad reply %zd\n", got);
			return 1;
		}
		if (rep.action == SLIM_ACT_ROUTE)
			nfd++;
		else
			nfb++;
	}
	qsort(lat, (size_t)n, sizeof(*lat), cmp_u64);
	printf("bench %d fd %d fallback %d avg_us %.1f p50_us %.1f p99_us %.1f max_us %.1f\n", n,
	       nfd, nfb, total / 1000.0 / n, lat[n / 2] / 1000.0,
	       lat[(size_t)n * 99 / 100] / 1000.0, lat[n - 1] / 1000.0);
	return 0;
}

static int do_flood(const char *path, const char *ip, int port, int n)
{
	int rfd = router_open(path, SOCK_NONBLOCK), sent = 0;
	struct slim_route_req req;

	for (; sent < n; sent++) {
		route_req(&req, (uint32_t)sent + 1, ip, port);
		for (;;) {
			ssize_t r = send(rfd, &req, req.hdr.len, MSG_NOSIGNAL);
			struct pollfd p = {.fd = rfd, .events = POLLOUT};

			if (r == (ssize_t)req.hdr.len)
				break;
			if (errno != EAGAIN)
				goto out; /* EPIPE / ECONNRESET: the router hung up */
			/* Full: wait a little for the router to take more, or to close us. */
			if (poll(&p, 1, 1000) <= 0 || (p.revents & (POLLHUP | POLLERR)))
				goto out;
		}
	}
out:
	printf("flood sent %d closed %d\n", sent, router_closed(rfd));
	return 0;
}

static int do_burst(const char *path, const char *ip, int port, int n)
{
	int rfd = router_open(path, 0), nfd = 0, nfb = 0, got = 0;
	struct slim_route_req req;
	struct slim_route_rep rep;
	uint64_t t0 = now_ns();
	int sent = 0;

	/* Interleave: the router stops reading us at its pending limit until answers drain. */
	while (got < n) {
		struct pollfd p = {.fd = rfd, .events = POLLIN | (sent < n ? POLLOUT : 0)};

		if (poll(&p, 1, 5000) <= 0) {
			printf("error: stalled after %d sent %d answered\n", sent, got);
			return 1;
		}
		if ((p.revents & POLLOUT) && sent < n) {
			route_req(&req, (uint32_t)sent + 1, ip, port + sent);
			if (send(rfd, &req, req.hdr.len, MSG_NOSIGNAL | MSG_DONTWAIT) ==
			    (ssize_t)req.hdr.len)
				sent++;
		}
		if (p.revents & POLLIN) {
			int fd;

			if (slim_msg_recv(rfd, &rep, sizeof(rep), &fd, MSG_DONTWAIT) !=
			    sizeof(rep)) {
				printf("error: bad reply\n");
				return 1;
			}
			got++;
			if (fd >= 0)
				close(fd);
			if (rep.action == SLIM_ACT_ROUTE)
				nfd++;
			else
				nfb++;
		}
		if (p.revents & (POLLHUP | POLLERR)) {
			printf("error: router closed us after %d answers\n", got);
			return 1;
		}
	}
	printf("burst %d fd %d fallback %d ms %llu\n", n, nfd, nfb,
	       (unsigned long long)((now_ns() - t0) / 1000000));
	return 0;
}

static int do_garbage(const char *path, const char *kind)
{
	struct slim_listen_req req = {0};
	size_t len = slim_listen_req_len(1);
	int rfd = router_open(path, 0);

	req.hdr.type = SLIM_MSG_LISTEN_REQ;
	req.hdr.id = 1;
	req.port = htons(80);
	req.nopts = 1;
	req.hdr.len = (uint32_t)len;
	req.opts[0].level = SOL_SOCKET;
	req.opts[0].name = SO_KEEPALIVE;
	req.opts[0].len = sizeof(int);
	if (!strcmp(kind, "short")) {
		len = 6;
	} else if (!strcmp(kind, "len")) {
		req.hdr.len = (uint32_t)len + 4;
	} else if (!strcmp(kind, "type")) {
		req.hdr.type = 999;
	} else if (!strcmp(kind, "reserved")) {
		req.hdr.reserved = 1;
	} else if (!strcmp(kind, "nopts")) {
		req.nopts = 40;
	} else if (!strcmp(kind, "big")) {
		static uint8_t big[70000];

		/* Larger than any message the router takes: it must not read a truncated one. */
		memcpy(big, &req, sizeof(req));
		if (send(rfd, big, sizeof(big), MSG_NOSIGNAL) < 0) {
			printf("error: send: %s\n", strerror(errno));
			return 1;
		}
		printf("garbage %s closed %d\n", kind, router_closed(rfd));
		return 0;
	} else if (!strcmp(kind, "sockopt")) {
		req.opts[0].name = SO_MARK; /* never replayable on a host socket */
	} else {
		printf("error: unknown kind %s\n", kind);
		return 2;
	}
	if (send(rfd, &req, len, MSG_NOSIGNAL) < 0) {
		printf("error: send: %s\n", strerror(errno));
		return 1;
	}
	printf("garbage %s closed %d\n", kind, router_closed(rfd));
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 6 && !strcmp(argv[2], "bench"))
		return do_bench(argv[1], argv[3], atoi(argv[4]), atoi(argv[5]));
	if (argc == 5 && !strcmp(argv[2], "serve"))
		return do_serve(argv[1], atoi(argv[4]));
	if (argc == 6 && !strcmp(argv[2], "flood"))
		return do_flood(argv[1], argv[3], atoi(argv[4]), atoi(argv[5]));
	if (argc == 6 && !strcmp(argv[2], "burst"))
		return do_burst(argv[1], argv[3], atoi(argv[4]), atoi(argv[5]));
	if (argc == 4 && !strcmp(argv[2], "garbage"))
		return do_garbage(argv[1], argv[3]);
	fprintf(stderr,
		"usage: router_load SOCK bench POD_IP PORT N | serve POD_IP PORT | flood IP PORT N "
		"|\n"
		"       burst IP PORT N | garbage short|len|type|reserved|nopts|sockopt|big\n");
	return 2;
}
