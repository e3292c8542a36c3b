// SPDX-License-Identifier: MIT
/*
 * A static program for tests/integration/runtime_go.sh: LD_PRELOAD cannot reach it, so only the
 * supervisor (slim-supervise) can give it slim. Built with -static (tests/Makefile).
 *   sup_static server PORT N [linger]  blocking listen/accept, N connections: reads a line,
 *                                      answers "echo:LINE peer:IP" (the peer accept reported);
 *                                      with linger, then closes the listener and sleeps 60 s
 *   sup_static client IP PORT MSG      blocking connect; prints the answer and "name:IP" from
 *                                      getpeername
 *   sup_static epoll IP PORT MSG       non-blocking socket put in an epoll set before connect;
 *                                      the connect must be reported by that set with the data
 *                                      given, and EPOLL_CTL_DEL of it must succeed afterwards
 *   sup_static race IP PORT SECRETPORT N   an attacker: a thread flips the address being
 *                                      connected between IP:PORT and 127.0.0.1:SECRETPORT (a
 *                                      service on the host's loopback) while connects run (at
 *                                      most N, until 20 reached IP:PORT); prints how many
 *                                      connections reached the secret
 *   sup_static unspec IP PORT SECRETPORT   connects to IP:PORT, then connect(AF_UNSPEC) and
 *                                      127.0.0.1:SECRETPORT on the same socket; prints what
 *                                      came back
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static struct sockaddr_in addr_of(const char *ip, const char *port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};

	if (inet_pton(AF_INET, ip, &sin.sin_addr) != 1) {
		fprintf(stderr, "bad address %s\n", ip);
		exit(2);
	}
	return sin;
}

static int serve(int port, int n, bool linger)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);

	signal(SIGPIPE, SIG_IGN); /* a client that resets (the attacks) must not end the server */

	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(l, 64) < 0) {
		perror("listen");
		return 1;
	}
	printf("listening %d\n", port);
	fflush(stdout);
	for (int i = 0; i < n; i++) {
		struct sockaddr_in peer;
		socklen_t len = sizeof(peer);
		char buf[256], out[400];
		int c = accept(l, (struct sockaddr *)&peer, &len);
		ssize_t got;

		if (c < 0) {
			perror("accept");
			return 1;
		}
		got = read(c, buf, sizeof(buf) - 1);
		buf[got > 0 ? got : 0] = 0;
		buf[strcspn(buf, "\n")] = 0;
		snprintf(out, sizeof(out), "echo:%s peer:%s\n", buf, inet_ntoa(peer.sin_addr));
		if (write(c, out, strlen(out)) < 0)
			perror("write");
		close(c);
	}
	if (linger) {
		close(l);
		printf("closed\n");
		sleep(60);
	}
	return 0;
}

/* Sends msg, prints the answer and the peer's name (read at once: after the server closed,
 * the kernel may no longer name it). */
static int talk(int s, const char *msg)
{
	char buf[512], name[INET_ADDRSTRLEN] = "?";
	struct sockaddr_in peer;
	socklen_t len = sizeof(peer);
	ssize_t n;

	if (getpeername(s, (struct sockaddr *)&peer, &len) == 0)
		inet_ntop(AF_INET, &peer.sin_addr, name, sizeof(name));
	if (write(s, msg, strlen(msg)) < 0 || write(s, "\n", 1) < 0) {
		perror("write");
		return 1;
	}
	n = read(s, buf, sizeof(buf) - 1);
	if (n <= 0) {
		perror("read");
		return 1;
	}
	buf[n] = 0;
	buf[strcspn(buf, "\n")] = 0;
	printf("%s name:%s\n", buf, name);
	return 0;
}

static int client(const char *ip, const char *port, const char *msg)
{
	struct sockaddr_in sin = addr_of(ip, port);
	int s = socket(AF_INET, SOCK_STREAM, 0);

	if (connect(s, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		perror("connect");
		return 1;
	}
	return talk(s, msg);
}

static int epoll_client(const char *ip, const char *port, const char *msg)
{
	struct sockaddr_in sin = addr_of(ip, port);
	/* The socket first: it takes the lowest number (3), the one the supervisor's own start-up
	 * used; a registration under a number the supervisor cannot borrow is lost in the swap. */
	int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = 0x5eed0000cafeULL}, got;
	int n;

	if (epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev) < 0) {
		perror("epoll_ctl add");
		return 1;
	}
	if (connect(s, (struct sockaddr *)&sin, sizeof(sin)) == 0 || errno != EINPROGRESS) {
		perror("connect (expected EINPROGRESS)");
		return 1;
	}
	n = epoll_wait(ep, &got, 1, 5000);
	if (n != 1 || got.data.u64 != ev.data.u64) {
		fprintf(stderr, "epoll_wait: %d events, data %llx\n", n,
			(unsigned long long)got.data.u64);
		return 1;
	}
	if (epoll_ctl(ep, EPOLL_CTL_DEL, s, NULL) < 0) {
		perror("epoll_ctl del");
		return 1;
	}
	printf("epoll ok ");
	fcntl(s, F_SETFL, fcntl(s, F_GETFL) & ~O_NONBLOCK);
	return talk(s, msg);
}

static struct sockaddr_in race_addr; /* the attacker's sockaddr, flipped by race_flip */
static struct sockaddr_in race_a, race_b;
static volatile int race_stop;

static void *race_flip(void *unused)
{
	for (unsigned i = 0; !race_stop; i++) {
		race_addr = (i & 1) ? race_b : race_a;
		for (volatile int spin = 0; spin < (int)(i % 2000); spin++)
			;
	}
	return NULL;
}

/* A connection got to the secret when its first bytes are the secret's banner. */
static int race_secret(int s)
{
	char buf[16] = {0};
	struct timeval tv = {.tv_sec = 1};

	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (write(s, "probe\n", 6) < 0)
		return 0;
	return read(s, buf, sizeof(buf) - 1) > 0 && !strncmp(buf, "SECRET", 6);
}

static int race(const char *ip, const char *port, const char *secret, int n)
{
	pthread_t t;
	int secrets = 0, slim = 0, failed = 0;

	race_a = addr_of(ip, port);
	race_b = addr_of("127.0.0.1", secret);
	race_addr = race_a;
	pthread_create(&t, NULL, race_flip, NULL);
	/* Until 20 connects reached the server (the race then surely went both ways), at most n. */
	for (int i = 0; i < n && slim < 20; i++) {
		int s = socket(AF_INET, SOCK_STREAM, 0);

		if (connect(s, (struct sockaddr *)&race_addr, sizeof(race_addr)) < 0)
			failed++;
		else if (race_secret(s))
			secrets++;
		else
			slim++;
		close(s);
	}
	race_stop = 1;
	pthread_join(t, NULL);
	printf("race: secret %d other %d failed %d\n", secrets, slim, failed);
	return 0;
}

static int unspec(const char *ip, const char *port, const char *secret)
{
	struct sockaddr_in sin = addr_of(ip, port), sec = addr_of("127.0.0.1", secret);
	struct sockaddr un = {.sa_family = AF_UNSPEC};
	int s = socket(AF_INET, SOCK_STREAM, 0), rc;

	if (connect(s, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		perror("connect");
		return 1;
	}
	connect(s, &un, sizeof(un));
	rc = connect(s, (struct sockaddr *)&sec, sizeof(sec));
	printf("unspec: %s\n", rc == 0 ? (race_secret(s) ? "secret" : "connected, no secret")
					: strerror(errno));
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if ((argc == 4 || argc == 5) && !strcmp(argv[1], "server"))
		return serve(atoi(argv[2]), atoi(argv[3]), argc == 5 && !strcmp(argv[4], "linger"));
	if (argc == 5 && !strcmp(argv[1], "client"))
		return client(argv[2], argv[3], argv[4]);
	if (argc == 5 && !strcmp(argv[1], "epoll"))
		return epoll_client(argv[2], argv[3], argv[4]);
	if (argc == 6 && !strcmp(argv[1], "race"))
		return race(argv[2], argv[3], argv[4], atoi(argv[5]));
	if (argc == 5 && !strcmp(argv[1], "unspec"))
		return unspec(argv[2], argv[3], argv[4]);
	fprintf(stderr, "usage: see the comment at the top of sup_static.c\n");
	return 2;
}
