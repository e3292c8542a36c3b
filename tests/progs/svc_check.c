// SPDX-License-Identifier: MIT
/*
 * svc_check: a plain TCP server and clients for the Service (ClusterIP) scenarios, run with or
 * without the shim (it knows nothing of slim). The server names the backend in its first line,
 * so a client through a VIP learns which backend it reached and as whom the backend saw it.
 *
 *   svc_check serve PORT
 *	listens on 0.0.0.0:PORT and prints "listening"; every connection first gets the line
 *	"LOCAL_IP:PORT PEER_IP:PORT" (getsockname, getpeername), then an echo of what it sends.
 *	Runs until SIGTERM or SIGINT (exit 0).
 *   svc_check spread IP PORT N
 *	N connections one after the other; prints {"connects":N,"errors":E,"peer_mismatch":M,
 *	"error_names":{...},"backends":{"IP":count,...},"client_seen_as":["IP",...]} where a peer
 *	mismatch is a getpeername other than IP:PORT. Exit 0 if E and M are 0, else 1.
 *   svc_check hold IP PORT K SECONDS
 *	opens K connections, reads their lines, prints "READY" to stderr, then for SECONDS sends
 *	a byte on each every 20 ms and reads the echoes. Prints {"conns":[{"backend":"IP",
 *	"failed":false,"sent":S,"echoed":E},{... "failed":true,"errno":"ECONNRESET","at_ms":T,
 *	"since_mark_ms":T2}],...} on SIGUSR1 (and goes on) and at the end (or SIGTERM/SIGINT),
 *	one object per line. at_ms counts from READY; SIGUSR2 sets the mark later failures are
 *	also timed from. Exit 0, or 1 if the connections could not be set up.
 *   svc_check once IP PORT
 *	one connection: prints the server's line (exit 0) or the errno name (exit 1), and
 *	"connect_ms=T" on stderr.
 *
 * Every client wait has a deadline (LINE_WAIT_MS), so a scenario never hangs on a lost line.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define SERVE_MAX_CONNS 4096
#define SERVE_BUF	1024
#define LINE_MAX_LEN	128
#define LINE_WAIT_MS	5000
#define HOLD_TICK_MS	20
#define TALLY_MAX	1024
#define E_EOF		0x10000 /* not an errno: the peer closed */

static volatile sig_atomic_t got_stop, got_report, got_mark;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		got_report = 1;
	else if (sig == SIGUSR2)
		got_mark = 1;
	else
		got_stop = 1;
}

/*
 * The signals are blocked except inside ppoll, so one that arrives between checking the flags
 * and waiting still ends the wait. No SA_RESTART: the wait returns EINTR.
 */
static void signals_setup(sigset_t *waitmask)
{
	struct sigaction sa = {.sa_handler = on_signal};
	static const int sigs[] = {SIGTERM, SIGINT, SIGUSR1, SIGUSR2};
	sigset_t block;

	sigemptyset(&block);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		sigaction(sigs[i], &sa, NULL);
		sigaddset(&block, sigs[i]);
	}
	sigprocmask(SIG_BLOCK, &block, waitmask);
	signal(SIGPIPE, SIG_IGN);
}

static double mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static const char *errname(int e)
{
	if (e == E_EOF)
		return "EOF";
	return strerrorname_np(e) ? strerrorname_np(e) : "EUNKNOWN";
}

static void addr_str(const struct sockaddr_in *sin, char *buf, size_t len)
{
	char ip[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
	snprintf(buf, len, "%s:%u", ip, ntohs(sin->sin_port));
}

static unsigned long parse_num(const char *s, unsigned long min, unsigned long max,
			       const char *what)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max) {
		fprintf(stderr, "svc_check: bad %s '%s' (%lu..%lu)\n", what, s, min, max);
		exit(1);
	}
	return v;
}

static void parse_target(const char *ip, const char *port, struct sockaddr_in *sin)
{
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)parse_num(port, 1, 65535, "port"));
	if (inet_pton(AF_INET, ip, &sin->sin_addr) != 1) {
		fprintf(stderr, "svc_check: bad IPv4 address '%s'\n", ip);
		exit(1);
	}
}

/*
 * A blocking connect; returns the connected fd, or -errno. A connect interrupted by a signal
 * goes on in the background: wait for it and take its result from SO_ERROR.
 */
static int tcp_connect(const struct sockaddr_in *to)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), err = 0;
	socklen_t len = sizeof(err);
	struct pollfd pfd;

	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)to, sizeof(*to)) == 0)
		return fd;
	if (errno == EINTR) {
		pfd = (struct pollfd){.fd = fd, .events = POLLOUT};
		while (poll(&pfd, 1, -1) < 0 && errno == EINTR)
			;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (!err)
			return fd;
	} else {
		err = errno;
	}
	close(fd);
	return -err;
}

/*
 * Reads the server's line (without its newline) byte by byte, so no echo is consumed. Returns
 * 0, or what went wrong: an errno, ETIMEDOUT after LINE_WAIT_MS, or E_EOF.
 */
static int read_line(int fd, char *buf, size_t size)
{
	double deadline = mono_ms() + LINE_WAIT_MS;
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	size_t len = 0;

	for (;;) {
		int left = (int)(deadline - mono_ms()), rc;
		ssize_t n;

		if (left <= 0)
			return ETIMEDOUT;
		rc = poll(&pfd, 1, left);
		if (rc < 0 && errno != EINTR)
			return errno;
		if (rc <= 0)
			continue;
		n = read(fd, &buf[len], 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		if (n == 0)
			return E_EOF;
		if (buf[len] == '\n' || len + 2 >= size) {
			buf[buf[len] == '\n' ? len : len + 1] = '\0';
			return 0;
		}
		len++;
	}
}

/* The IP of field 0 or 1 of a server line ("IP:PORT IP:PORT"). */
static void line_ip(const char *line, int field, char *ip, size_t size)
{
	const char *p = line;

	if (field && (p = strchr(line, ' ')))
		p++;
	snprintf(ip, size, "%.*s", p ? (int)strcspn(p, ": ") : 0, p ? p : "");
}

struct tally {
	char t_key[32];
	unsigned t_count;
};

static void tally_add(struct tally *t, unsigned *len, const char *key)
{
	unsigned i;

	for (i = 0; i < *len && strcmp(t[i].t_key, key); i++)
		;
	if (i == *len) {
		if (*len == TALLY_MAX)
			return;
		snprintf(t[i].t_key, sizeof(t[i].t_key), "%s", key);
		(*len)++;
	}
	t[i].t_count++;
}

/* ---- serve ---- */

struct conn {
	size_t c_len; /* output not yet written: the line, or an echo the peer is slow to take */
	char c_buf[SERVE_BUF];
};

static struct conn conns[SERVE_MAX_CONNS];
static struct pollfd pfds[SERVE_MAX_CONNS + 1]; /* [0]: the listener; [i + 1]: conns[i] */

static void serve_close(unsigned i)
{
	close(pfds[i + 1].fd);
	pfds[i + 1].fd = -1;
	conns[i].c_len = 0;
}

/* Writes what is queued; -1 if the connection is gone. */
static int serve_flush(unsigned i)
{
	struct conn *c = &conns[i];

	while (c->c_len) {
		ssize_t n = write(pfds[i + 1].fd, c->c_buf, c->c_len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? 0 : -1;
		memmove(c->c_buf, c->c_buf + n, c->c_len - (size_t)n);
		c->c_len -= (size_t)n;
	}
	return 0;
}

static void serve_accept(int lfd, unsigned *nfds)
{
	struct sockaddr_in local, peer;
	socklen_t llen = sizeof(local), plen = sizeof(peer);
	char l[32], p[32];
	unsigned i;
	int fd;

	for (i = 0; i < SERVE_MAX_CONNS && pfds[i + 1].fd >= 0; i++)
		;
	if (i == SERVE_MAX_CONNS) {
		pfds[0].events = 0; /* full: accept again once one closes */
		return;
	}
	fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno == EMFILE || errno == ENFILE)
			pfds[0].events = 0; /* else poll would spin on the pending connection */
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			fprintf(stderr, "svc_check: accept: %s\n", strerror(errno));
		return;
	}
	pfds[i + 1] = (struct pollfd){.fd = fd};
	if (i + 2 > *nfds)
		*nfds = i + 2;
	if (getsockname(fd, (struct sockaddr *)&local, &llen) < 0 ||
	    getpeername(fd, (struct sockaddr *)&peer, &plen) < 0) {
		serve_close(i);
		return;
	}
	addr_str(&local, l, sizeof(l));
	addr_str(&peer, p, sizeof(p));
	conns[i].c_len = (size_t)snprintf(conns[i].c_buf, SERVE_BUF, "%s %s\n", l, p);
	if (serve_flush(i) < 0)
		serve_close(i);
}

static void serve_input(unsigned i)
{
	struct conn *c = &conns[i];
	ssize_t n = read(pfds[i + 1].fd, c->c_buf, SERVE_BUF);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		serve_close(i); /* EOF, ECONNRESET and the like */
		return;
	}
	c->c_len = (size_t)n;
	if (serve_flush(i) < 0)
		serve_close(i);
}

static int serve(const char *port_arg)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	unsigned nfds = 1;
	sigset_t waitmask;
	int lfd, one = 1;

	sin.sin_port = htons((uint16_t)parse_num(port_arg, 1, 65535, "port"));
	signals_setup(&waitmask);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(lfd, 4096) < 0) {
		fprintf(stderr, "svc_check: listen on port %s: %s\n", port_arg, strerror(errno));
		return 1;
	}
	printf("listening\n");
	fflush(stdout);
	pfds[0] = (struct pollfd){.fd = lfd, .events = POLLIN};
	for (unsigned i = 0; i < SERVE_MAX_CONNS; i++)
		pfds[i + 1].fd = -1;
	while (!got_stop) {
		if (ppoll(pfds, nfds, NULL, &waitmask) < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "svc_check: ppoll: %s\n", strerror(errno));
			return 1;
		}
		for (unsigned i = 0; i + 1 < nfds; i++) {
			if (pfds[i + 1].fd < 0 || !pfds[i + 1].revents)
				continue;
			/* POLLERR and POLLHUP too: the read or write reports the error or EOF. */
			if (conns[i].c_len) {
				if (serve_flush(i) < 0)
					serve_close(i);
			} else {
				serve_input(i);
			}
			if (pfds[i + 1].fd < 0)
				pfds[0].events = POLLIN;
		}
		if (pfds[0].revents & POLLIN)
			serve_accept(lfd, &nfds);
		/* While output is queued, wait to write it and read nothing more. */
		for (unsigned i = 0; i + 1 < nfds; i++)
			if (pfds[i + 1].fd >= 0)
				pfds[i + 1].events = conns[i].c_len ? POLLOUT : POLLIN;
	}
	return 0;
}

/* ---- clients ---- */

static void print_tally(const char *name, const struct tally *t, unsigned len, bool counts)
{
	printf(",\"%s\":%c", name, counts ? '{' : '[');
	for (unsigned i = 0; i < len; i++) {
		printf("%s\"%s\"", i ? "," : "", t[i].t_key);
		if (counts)
			printf(":%u", t[i].t_count);
	}
	printf("%c", counts ? '}' : ']');
}

static int spread(const struct sockaddr_in *to, unsigned n)
{
	static struct tally backends[TALLY_MAX], errors[TALLY_MAX], seen[TALLY_MAX];
	unsigned nbackends = 0, nerrors = 0, nseen = 0, errs = 0, mismatch = 0;
	char line[LINE_MAX_LEN], ip[32];

	signal(SIGPIPE, SIG_IGN);
	for (unsigned i = 0; i < n; i++) {
		struct sockaddr_in peer;
		socklen_t plen = sizeof(peer);
		int fd = tcp_connect(to), err;

		if (fd < 0) {
			errs++;
			tally_add(errors, &nerrors, errname(-fd));
			continue;
		}
		/* The app must see the address it connected to, not the backend's. */
		if (getpeername(fd, (struct sockaddr *)&peer, &plen) < 0 ||
		    peer.sin_addr.s_addr != to->sin_addr.s_addr || peer.sin_port != to->sin_port)
			mismatch++;
		err = read_line(fd, line, sizeof(line));
		close(fd);
		if (err) {
			errs++;
			tally_add(errors, &nerrors, errname(err));
			continue;
		}
		line_ip(line, 0, ip, sizeof(ip));
		tally_add(backends, &nbackends, ip);
		line_ip(line, 1, ip, sizeof(ip));
		tally_add(seen, &nseen, ip);
	}
	printf("{\"connects\":%u,\"errors\":%u,\"peer_mismatch\":%u", n, errs, mismatch);
	print_tally("error_names", errors, nerrors, true);
	print_tally("backends", backends, nbackends, true);
	print_tally("client_seen_as", seen, nseen, false);
	printf("}\n");
	return errs || mismatch;
}

struct held {
	int h_fd; /* -1 once failed */
	char h_backend[32];
	int h_err;
	double h_at_ms, h_since_mark_ms; /* h_since_mark_ms < 0: failed before any mark */
	unsigned long h_sent, h_echoed;
};

static void hold_fail(struct held *h, int err, double now, double start, double mark)
{
	close(h->h_fd);
	h->h_fd = -1;
	h->h_err = err;
	h->h_at_ms = now - start;
	h->h_since_mark_ms = mark >= 0 && now >= mark ? now - mark : -1;
}

static void hold_report(const struct held *h, unsigned k, double now, double start, double mark)
{
	unsigned failed = 0;

	printf("{\"conns\":[");
	for (unsigned i = 0; i < k; i++, h++) {
		printf("%s{\"backend\":\"%s\",\"failed\":%s,\"sent\":%lu,\"echoed\":%lu",
		       i ? "," : "", h->h_backend, h->h_fd < 0 ? "true" : "false", h->h_sent,
		       h->h_echoed);
		if (h->h_fd < 0) {
			failed++;
			printf(",\"errno\":\"%s\",\"at_ms\":%.0f", errname(h->h_err), h->h_at_ms);
			if (h->h_since_mark_ms >= 0)
				printf(",\"since_mark_ms\":%.0f", h->h_since_mark_ms);
		}
		printf("}");
	}
	printf("],\"failed\":%u,\"elapsed_ms\":%.0f", failed, now - start);
	if (mark >= 0)
		printf(",\"mark_ms\":%.0f", mark - start);
	printf("}\n");
	fflush(stdout);
}

static int hold(const struct sockaddr_in *to, unsigned k, unsigned seconds)
{
	struct held *held = calloc(k, sizeof(*held));
	struct pollfd *pfd = calloc(k, sizeof(*pfd));
	double start, end, next_tick, now, mark = -1;
	char line[LINE_MAX_LEN], buf[256];
	sigset_t waitmask;

	if (!held || !pfd) {
		fprintf(stderr, "svc_check: hold: out of memory\n");
		return 1;
	}
	signals_setup(&waitmask);
	for (unsigned i = 0; i < k; i++) {
		int err;

		held[i].h_fd = tcp_connect(to);
		err = held[i].h_fd < 0 ? -held[i].h_fd
				       : read_line(held[i].h_fd, line, sizeof(line));
		if (err) {
			fprintf(stderr, "svc_check: hold: connection %u: %s\n", i, errname(err));
			return 1;
		}
		line_ip(line, 0, held[i].h_backend, sizeof(held[i].h_backend));
	}
	fprintf(stderr, "READY\n");
	start = next_tick = now = mono_ms();
	end = start + seconds * 1e3;
	while (!got_stop && now < end) {
		struct timespec ts;
		double wait;
		unsigned n = 0;

		if (now >= next_tick) {
			for (unsigned i = 0; i < k; i++) {
				ssize_t w;

				if (held[i].h_fd < 0)
					continue;
				do
					w = send(held[i].h_fd, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
				while (w < 0 && errno == EINTR);
				if (w == 1)
					held[i].h_sent++;
				else if (errno != EAGAIN)
					hold_fail(&held[i], errno, now, start, mark);
			}
			/* A late tick is not made up for: the next one is a full tick away. */
			next_tick = next_tick + HOLD_TICK_MS > now ? next_tick + HOLD_TICK_MS
								   : now + HOLD_TICK_MS;
		}
		for (unsigned i = 0; i < k; i++)
			if (held[i].h_fd >= 0)
				pfd[n++] = (struct pollfd){.fd = held[i].h_fd, .events = POLLIN};
		wait = (next_tick < end ? next_tick : end) - now;
		ts.tv_sec = (time_t)(wait / 1e3);
		ts.tv_nsec = (long)((wait - ts.tv_sec * 1e3) * 1e6);
		if (ppoll(pfd, n, &ts, &waitmask) < 0 && errno != EINTR) {
			fprintf(stderr, "svc_check: ppoll: %s\n", strerror(errno));
			return 1;
		}
		now = mono_ms();
		for (unsigned i = 0, j = 0; i < k; i++) {
			ssize_t r;

			if (held[i].h_fd < 0 || !(pfd[j++].revents))
				continue;
			r = recv(held[i].h_fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (r > 0)
				held[i].h_echoed += (unsigned long)r;
			else if (r == 0)
				hold_fail(&held[i], E_EOF, now, start, mark);
			else if (errno != EAGAIN && errno != EINTR)
				hold_fail(&held[i], errno, now, start, mark);
		}
		if (got_mark) {
			got_mark = 0;
			mark = now;
		}
		if (got_report) {
			got_report = 0;
			hold_report(held, k, now, start, mark);
		}
	}
	hold_report(held, k, mono_ms(), start, mark);
	return 0;
}

static int once(const struct sockaddr_in *to)
{
	char line[LINE_MAX_LEN];
	double t0 = mono_ms();
	int fd = tcp_connect(to), err;

	fprintf(stderr, "connect_ms=%.3f\n", mono_ms() - t0);
	if (fd < 0) {
		printf("%s\n", errname(-fd));
		return 1;
	}
	err = read_line(fd, line, sizeof(line));
	close(fd);
	printf("%s\n", err ? errname(err) : line);
	return !!err;
}

int main(int argc, char **argv)
{
	struct sockaddr_in to;

	if (argc == 3 && !strcmp(argv[1], "serve"))
		return serve(argv[2]);
	if (argc >= 4)
		parse_target(argv[2], argv[3], &to);
	if (argc == 5 && !strcmp(argv[1], "spread"))
		return spread(&to, (unsigned)parse_num(argv[4], 1, 10000000, "N"));
	if (argc == 6 && !strcmp(argv[1], "hold"))
		return hold(&to, (unsigned)parse_num(argv[4], 1, 60000, "K"),
			    (unsigned)parse_num(argv[5], 0, 86400, "SECONDS"));
	if (argc == 4 && !strcmp(argv[1], "once"))
		return once(&to);
	fprintf(stderr, "usage: svc_check serve PORT | spread IP PORT N | hold IP PORT K SECONDS |"
			" once IP PORT\n");
	return 1;
}
