/* SPDX-License-Identifier: MIT */
/*
 * What the sockmap test programs (sockmap_test.c, sockmap_order.c) share: joining a test cgroup
 * and loading the fast path there, making connected TCP pairs, and a reproducible byte stream.
 */
#ifndef SLIM_SOCKMAP_PROG_H
#define SLIM_SOCKMAP_PROG_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>

#include "cgroup.h"
#include "sockmap.h"

static struct sockmap *prog_sm;
static char prog_cgroup[4096];

static inline void __attribute__((format(printf, 1, 2), noreturn)) die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "FAIL: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

/* Runs at exit, so a failing check still detaches everything and removes the cgroup. */
static inline void prog_teardown(void)
{
	int err;

	sockmap_close(prog_sm);
	prog_sm = NULL;
	if (prog_cgroup[0]) {
		err = cgroup_leave(prog_cgroup);
		if (err)
			fprintf(stderr, "cgroup_leave %s: %s\n", prog_cgroup, strerror(-err));
		prog_cgroup[0] = '\0';
	}
}

/* Joins cgroup dir (created if missing) and loads the fast path there for host_ip. */
static inline void prog_setup(const char *dir, uint32_t host_ip, unsigned int flags)
{
	int err;

	if (strlen(dir) >= sizeof(prog_cgroup))
		die("cgroup path too long");
	err = cgroup_enter(dir);
	if (err)
		die("cgroup_enter %s: %s", dir, strerror(-err));
	strcpy(prog_cgroup, dir);
	atexit(prog_teardown);
	err = sockmap_open(dir, host_ip, flags, &prog_sm);
	if (err)
		die("sockmap_open %s: %s", dir, strerror(-err));
}

static inline void set_timeouts(int fd, int seconds)
{
	struct timeval tv = {.tv_sec = seconds};

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static inline int tcp_listener(uint32_t ip, int defer_accept)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = ip};
	int fd, one = 1;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (defer_accept)
		setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer_accept, sizeof(defer_accept));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 1024))
		die("bind/listen %s: %s", inet_ntoa(a.sin_addr), strerror(errno));
	set_timeouts(fd, 10);
	return fd;
}

static inline struct sockaddr_in sock_name(int fd)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);

	if (getsockname(fd, (struct sockaddr *)&a, &len))
		die("getsockname: %s", strerror(errno));
	return a;
}

/* Connects client (a fresh socket when client < 0) to listener and accepts the other end. */
static inline void tcp_pair_from(int listener, int client, int *c, int *s)
{
	struct sockaddr_in a = sock_name(listener);

	if (client < 0)
		client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (client < 0)
		die("socket: %s", strerror(errno));
	set_timeouts(client, 10);
	if (connect(client, (struct sockaddr *)&a, sizeof(a)))
		die("connect %s:%d: %s", inet_ntoa(a.sin_addr), ntohs(a.sin_port), strerror(errno));
	*s = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
	if (*s < 0)
		die("accept: %s", strerror(errno));
	set_timeouts(*s, 10);
	*c = client;
}

/* A reproducible byte stream: both ends generate it from the same seed, one byte at a time. */
struct stream_gen {
	uint64_t sg_state;
};

static inline uint64_t gen_next64(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

static inline void gen_fill(struct stream_gen *g, uint8_t *buf, size_t n)
{
	for (size_t i = 0; i < n; i++)
		buf[i] = (uint8_t)(gen_next64(&g->sg_state) >> 32);
}

#endif
