// SPDX-License-Identifier: MIT
/*
 * setup_latency: measures how long TCP connection setup takes, one connection at a time, as an
 * event-loop app sees it (the bench's setup_* figures).
 *
 *   setup_latency server ADDR PORT
 *	Listens on ADDR:PORT; on every accepted connection writes one byte and closes it, until
 *	killed.
 *   setup_latency client ADDR PORT N [MAX_SECONDS]
 *	N connections to ADDR:PORT one after the other. Each: a non-blocking connect(), poll for
 *	POLLOUT and check SO_ERROR (established), poll for POLLIN and read the server's byte,
 *	close. Prints one line of JSON:
 *	  {"connections": N, "ok": K, "failures": F,
 *	   "connect_p50_us": .., "connect_p99_us": .., "connect_max_us": ..,
 *	   "first_byte_p50_us": .., "first_byte_p99_us": .., "first_byte_max_us": ..,
 *	   "seconds": S, "first_error": "..." | null}
 *	connect_*: from the connect() call to established; first_byte_*: from the connect() call
 *	to the server's byte read. Percentiles (nearest rank) are over the K connections that got
 *	their byte; a failed connection (refused, reset, SO_ERROR, 2 s without progress, EOF before
 *	the byte) counts in F only. Stops early after MAX_SECONDS (default 60), so "connections"
 *	is the number attempted.
 * With SETUP_LATENCY_SLOW_US=N in the environment, each connection whose socket() and connect()
 * took N us or more, or whose byte came N us or more after it was established, is reported on
 * stderr ("slow: ...", with the wall-clock time).
 * Exit status 0 when at least one connection succeeded, 1 otherwise or on a usage error.
 *
 * Only libc calls (socket, connect, poll, getsockopt, read, close), so under LD_PRELOAD=libslim.so
 * the shim's connect path is what is timed. IPv4 only, like the lab.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Per phase: long enough for a SYN retransmit (1 s) to show up as a slow sample, not a failure. */
#define PHASE_TIMEOUT_MS 2000

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int parse_addr(const char *ip, const char *port, struct sockaddr_in *sin)
{
	char *end;
	long p = strtol(port, &end, 10);

	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	if (*end != '\0' || p <= 0 || p > 65535 || inet_pton(AF_INET, ip, &sin->sin_addr) != 1)
		return -1;
	sin->sin_port = htons((uint16_t)p);
	return 0;
}

static int serve(const struct sockaddr_in *sin)
{
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	/* A client that gave up has reset its end: writing must not kill the server. */
	signal(SIGPIPE, SIG_IGN);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (const struct sockaddr *)sin, sizeof(*sin)) < 0 || listen(fd, 4096) < 0) {
		fprintf(stderr, "setup_latency: listen: %s\n", strerror(errno));
		return 1;
	}
	for (;;) {
		int c = accept(fd, NULL, NULL);

		if (c < 0) {
			/* Transient: an aborted handshake or a full fd table must not end the server. */
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE ||
			    errno == EPROTO || errno == ENOBUFS || errno == ENOMEM)
				continue;
			fprintf(stderr, "setup_latency: accept: %s\n", strerror(errno));
			return 1;
		}
		if (write(c, "x", 1) != 1)
			fprintf(stderr, "setup_latency: write: %s\n", strerror(errno));
		close(c);
	}
}

/* SETUP_LATENCY_SLOW_US: report each connection whose socket() and connect() took longer. */
static uint64_t slow_ns;

/* wait_for FD EVENTS: 0 when FD became ready for EVENTS, -1 with errno (ETIMEDOUT) when not. */
static int wait_for(int fd, short events)
{
	struct pollfd pfd = {.fd = fd, .events = events};
	int n;

	do
		n = poll(&pfd, 1, PHASE_TIMEOUT_MS);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		errno = ETIMEDOUT;
	return n > 0 ? 0 : -1;
}

/*
 * One connection. Returns 0 and the two durations, or -1 with a static description in *what and
 * errno set.
 */
static int one_conn(const struct sockaddr_in *sin, uint64_t *connect_ns, uint64_t *byte_ns,
		    const char **what)
{
	int fd, err = 0, rc = -1;
	socklen_t len = sizeof(err);
	uint64_t t0, ts = now_ns();
	char b;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*what = "socket";
		return -1;
	}
	t0 = now_ns();
	/* A non-blocking connect may still complete at once (the shim may finish it in the call). */
	if (connect(fd, (const struct sockaddr *)sin, sizeof(*sin)) < 0) {
		if (errno != EINPROGRESS) {
			*what = "connect";
			goto out;
		}
		if (wait_for(fd, POLLOUT) < 0) {
			*what = "poll POLLOUT";
			goto out;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
			if (err != 0)
				errno = err;
			*what = "SO_ERROR";
			goto out;
		}
	}
	*connect_ns = now_ns() - t0;
	if (slow_ns && now_ns() - ts >= slow_ns) {
		struct timespec wall;

		clock_gettime(CLOCK_REALTIME, &wall);
		fprintf(stderr, "slow: socket %.1f us, connect %.1f us, done at %ld.%06ld\n",
			(double)(t0 - ts) / 1000.0, (double)*connect_ns / 1000.0, (long)wall.tv_sec,
			wall.tv_nsec / 1000);
	}
	for (;;) {
		ssize_t n;

		if (wait_for(fd, POLLIN) < 0) {
			*what = "poll POLLIN";
			goto out;
		}
		n = read(fd, &b, 1);
		if (n == 1)
			break;
		if (n == 0) {
			errno = ECONNRESET;
			*what = "EOF before the byte";
			goto out;
		}
		/* A readiness report without data (spurious wakeup) is not an error: poll again. */
		if (errno != EAGAIN && errno != EINTR) {
			*what = "read";
			goto out;
		}
	}
	*byte_ns = now_ns() - t0;
	if (slow_ns && *byte_ns - *connect_ns >= slow_ns) {
		struct timespec wall;

		clock_gettime(CLOCK_REALTIME, &wall);
		fprintf(stderr, "slow: established to byte %.1f us, done at %ld.%06ld\n",
			(double)(*byte_ns - *connect_ns) / 1000.0, (long)wall.tv_sec,
			wall.tv_nsec / 1000);
	}
	rc = 0;
out:
	err = errno;
	close(fd);
	errno = err;
	return rc;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of n sorted values, in microseconds. */
static double pct_us(const uint64_t *v, long n, double p)
{
	long rank = (long)((p / 100.0) * (double)n + 0.999999);

	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return (double)v[rank - 1] / 1000.0;
}

static void print_pct(const char *name, uint64_t *v, long n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_u64);
	if (n == 0)
		printf(", \"%s_p50_us\": null, \"%s_p99_us\": null, \"%s_max_us\": null", name,
		       name, name);
	else
		printf(", \"%s_p50_us\": %.1f, \"%s_p99_us\": %.1f, \"%s_max_us\": %.1f", name,
		       pct_us(v, n, 50), name, pct_us(v, n, 99), name, (double)v[n - 1] / 1000.0);
}

static int client(const struct sockaddr_in *sin, long n, double max_s)
{
	uint64_t *conn_ns = calloc((size_t)n, sizeof(*conn_ns));
	uint64_t *byte_ns = calloc((size_t)n, sizeof(*byte_ns));
	uint64_t start = now_ns(), deadline = start + (uint64_t)(max_s * 1e9);
	long i, ok = 0, failures = 0;
	char first_error[160] = "";

	if (!conn_ns || !byte_ns) {
		fprintf(stderr, "setup_latency: out of memory\n");
		return 1;
	}
	for (i = 0; i < n && now_ns() < deadline; i++) {
		const char *what = "";

		if (one_conn(sin, &conn_ns[ok], &byte_ns[ok], &what) == 0) {
			ok++;
			continue;
		}
		if (failures++ == 0)
			snprintf(first_error, sizeof(first_error), "%s: %s", what, strerror(errno));
	}
	printf("{\"connections\": %ld, \"ok\": %ld, \"failures\": %ld", i, ok, failures);
	print_pct("connect", conn_ns, ok);
	print_pct("first_byte", byte_ns, ok);
	printf(", \"seconds\": %.3f, \"first_error\": ", (double)(now_ns() - start) / 1e9);
	/* strerror texts and our own labels contain no quotes or backslashes. */
	if (failures)
		printf("\"%s\"}\n", first_error);
	else
		printf("null}\n");
	free(conn_ns);
	free(byte_ns);
	return ok > 0 ? 0 : 1;
}

static int usage(void)
{
	fprintf(stderr, "usage: setup_latency server ADDR PORT\n"
			"       setup_latency client ADDR PORT N [MAX_SECONDS]\n");
	return 1;
}

int main(int argc, char **argv)
{
	struct sockaddr_in sin;

	if (argc < 4 || parse_addr(argv[2], argv[3], &sin) < 0)
		return usage();
	if (getenv("SETUP_LATENCY_SLOW_US"))
		slow_ns = strtoull(getenv("SETUP_LATENCY_SLOW_US"), NULL, 10) * 1000;
	if (strcmp(argv[1], "server") == 0 && argc == 4)
		return serve(&sin);
	if (strcmp(argv[1], "client") == 0 && (argc == 5 || argc == 6)) {
		long n = strtol(argv[4], NULL, 10);
		double max_s = argc == 6 ? strtod(argv[5], NULL) : 60.0;

		if (n <= 0 || max_s <= 0)
			return usage();
		return client(&sin, n, max_s);
	}
	return usage();
}
