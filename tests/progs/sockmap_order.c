// SPDX-License-Identifier: MIT
/*
 * Checks the ordering of the same-host connection setup the router must follow: connect the
 * client host socket, wait until it is established, write the 20-byte preamble, then app bytes.
 * The server end (accepted from a listener in the same cgroup) must read the preamble first and
 * then exactly the app's byte stream, on every one of N connections. Every other connection is
 * server-first: the server answers the preamble alone before the client sends app bytes.
 *
 *   sockmap_order --cgroup DIR --host-ip A [-n N] [--defer-accept] [--no-verdict] [--tfo]
 *                 [--no-settle] [--no-order] [--no-load] [--port P]
 * --tfo sends the preamble in the SYN (TCP_FASTOPEN_CONNECT) as the cross-host path does;
 * --no-settle skips sockmap_client_established; --no-order turns off the sk_msg program's own
 * ordering rule (a direction whose peer was unmapped stays on TCP): both together show the
 * hazard they prevent;
 * --no-load runs without the fast path (a baseline that must always pass).
 * Prints one summary line; exit 0 when every connection was in order.
 */
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <fcntl.h>

#include "preamble.h"
#include "sockmap_prog.h"

#define APP_BYTES_MAX (256 << 10)

static uint32_t host_ip;
static int n_conns = 1000, port;
static int opt_defer, opt_tfo, opt_no_settle, opt_no_load;
static unsigned int open_flags;

struct order_result {
	int or_ok;
	int or_bad_preamble;
	int or_bad_stream;
	int or_server_mapped;
};

static size_t app_len(int i)
{
	return 1 + (size_t)(i * 7919) % APP_BYTES_MAX;
}

static void expected_preamble(int i, struct slim_preamble *p)
{
	p->src_ip = htonl(0x0af40002);
	p->dst_ip = htonl(0x0af40103);
	p->src_port = htons((uint16_t)(1 + i));
	p->dst_port = htons((uint16_t)(i >> 16) + 80);
}

/* The listener, on --port when given (so a firewall rule in the test can name it). */
static int order_listener(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = host_ip};
	int fd, one = 1, defer = 5;

	if (!port)
		return tcp_listener(host_ip, opt_defer ? 5 : 0);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (opt_defer)
		setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer, sizeof(defer));
	a.sin_port = htons(port);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 1024))
		die("listen on port %d: %s", port, strerror(errno));
	set_timeouts(fd, 10);
	return fd;
}

static int read_full(int fd, uint8_t *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, buf + got, n - got);

		if (r <= 0)
			return r < 0 ? -errno : -ENODATA;
		got += r;
	}
	return 0;
}

static void *order_server(void *arg)
{
	int listener = *(int *)arg;
	static struct order_result res;
	static uint8_t buf[APP_BYTES_MAX + 1], want[APP_BYTES_MAX];
	uint8_t pre[SLIM_PREAMBLE_LEN];

	for (int k = 0; k < n_conns; k++) {
		struct slim_preamble p;
		struct stream_gen g;
		int s, i, err;
		size_t n;
		ssize_t r;

		s = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
		if (s < 0)
			die("accept %d: %s", k, strerror(errno));
		set_timeouts(s, 10);
		err = read_full(s, pre, sizeof(pre));
		if (err)
			die("connection %d: preamble read: %s", k, strerror(-err));
		if (slim_preamble_decode(pre, sizeof(pre), &p)) {
			/* App bytes overtook the preamble: the hazard this program looks for. */
			res.or_bad_preamble++;
			close(s);
			continue;
		}
		i = ntohs(p.src_port) - 1 + ((ntohs(p.dst_port) - 80) << 16);
		if (!prog_sm || sockmap_contains_fd(prog_sm, s))
			res.or_server_mapped++;
		/* Odd connections are server-first: the client has sent only the preamble. */
		if (i % 2 && write(s, "S", 1) != 1)
			die("connection %d: server greeting: %s", i, strerror(errno));
		n = app_len(i);
		err = read_full(s, buf, n);
		if (err)
			die("connection %d: app bytes: %s", i, strerror(-err));
		r = read(s, buf + n, 1);
		g.sg_state = 0x1234567ull + i;
		gen_fill(&g, want, n);
		if (r != 0 || memcmp(buf, want, n))
			res.or_bad_stream++;
		else
			res.or_ok++;
		close(s);
	}
	return &res;
}

static void wait_established(int c, int i)
{
	struct pollfd p = {.fd = c, .events = POLLOUT};
	socklen_t len = sizeof(int);
	int err = 0;

	if (poll(&p, 1, 5000) != 1)
		die("connection %d: not established within 5 s", i);
	if (getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &len) || err)
		die("connection %d: connect: %s", i, strerror(err));
}

/*
 * 0, or -errno when the server reset the connection (it does so after a wrong preamble, which
 * the summary counts on its side).
 */
static int write_all(int fd, const uint8_t *buf, size_t n, int i)
{
	while (n) {
		ssize_t w = write(fd, buf, n);

		if (w < 0 && errno == EAGAIN) {
			struct pollfd p = {.fd = fd, .events = POLLOUT};

			if (poll(&p, 1, 5000) != 1)
				die("connection %d: not writable within 5 s", i);
			continue;
		}
		if (w < 0 && (errno == EPIPE || errno == ECONNRESET))
			return -errno;
		if (w <= 0)
			die("connection %d: write: %s", i, strerror(errno));
		buf += w;
		n -= w;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"cgroup", required_argument, NULL, 'c'},
		{"host-ip", required_argument, NULL, 'h'},
		{"defer-accept", no_argument, &opt_defer, 1},
		{"no-verdict", no_argument, NULL, 'v'},
		{"tfo", no_argument, &opt_tfo, 1},
		{"no-settle", no_argument, &opt_no_settle, 1},
		{"no-order", no_argument, NULL, 'o'},
		{"no-load", no_argument, &opt_no_load, 1},
		{"port", required_argument, NULL, 'p'},
		{},
	};
	static uint8_t app[APP_BYTES_MAX];
	int listener, peer_unmapped = 0, client_unmapped = 0, detached = 0, o, one = 1;
	struct order_result *res;
	struct sockaddr_in dst;
	const char *cg = NULL;
	struct in_addr a;
	pthread_t t;

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	while ((o = getopt_long(argc, argv, "n:", opts, NULL)) != -1) {
		if (o == 'c')
			cg = optarg;
		else if (o == 'h' && inet_aton(optarg, &a))
			host_ip = a.s_addr;
		else if (o == 'n')
			n_conns = atoi(optarg);
		else if (o == 'p')
			port = atoi(optarg);
		else if (o == 'v')
			open_flags |= SOCKMAP_F_NO_VERDICT;
		else if (o == 'o')
			open_flags |= SOCKMAP_F_NO_ORDER;
		else if (o != 0)
			die("usage: %s --cgroup DIR --host-ip A [-n N] [options]", argv[0]);
	}
	if (!cg || !host_ip || n_conns <= 0)
		die("usage: %s --cgroup DIR --host-ip A [-n N] [options]", argv[0]);

	if (opt_no_load) {
		int err = cgroup_enter(cg);

		if (err)
			die("cgroup_enter: %s", strerror(-err));
		strcpy(prog_cgroup, cg);
		atexit(prog_teardown);
	} else {
		prog_setup(cg, host_ip, open_flags);
	}
	listener = order_listener();
	if (opt_tfo) {
		int qlen = 128;

		setsockopt(listener, IPPROTO_TCP, TCP_FASTOPEN, &qlen, sizeof(qlen));
	}
	dst = sock_name(listener);
	pthread_create(&t, NULL, order_server, &listener);

	for (int i = 0; i < n_conns; i++) {
		uint8_t pre[SLIM_PREAMBLE_LEN];
		struct slim_preamble p;
		struct stream_gen g = {0x1234567ull + i};
		int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		size_t n = app_len(i);

		expected_preamble(i, &p);
		slim_preamble_encode(&p, pre);
		gen_fill(&g, app, n);
		if (opt_tfo) {
			setsockopt(c, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &one, sizeof(one));
			setsockopt(c, IPPROTO_TCP, TCP_FASTOPEN_NO_COOKIE, &one, sizeof(one));
		}
		if (connect(c, (struct sockaddr *)&dst, sizeof(dst)) && errno != EINPROGRESS)
			die("connection %d: connect: %s", i, strerror(errno));
		if (opt_tfo) {
			/* The preamble rides in the SYN; app bytes only after establishment. */
			if (write_all(c, pre, sizeof(pre), i))
				die("connection %d: preamble write: %s", i, strerror(errno));
			wait_established(c, i);
		} else {
			wait_established(c, i);
		}
		if (prog_sm && !sockmap_contains_fd(prog_sm, c))
			client_unmapped++;
		if (prog_sm && !sockmap_peer_mapped(prog_sm, c))
			peer_unmapped++;
		/* What the router does between establishment and the preamble. */
		if (prog_sm && !opt_no_settle) {
			int err = sockmap_client_established(prog_sm, c);

			if (err < 0)
				die("connection %d: sockmap_client_established: %s", i,
				    strerror(-err));
			if (err == 0)
				detached++;
		}
		if (!opt_tfo && write_all(c, pre, sizeof(pre), i))
			die("connection %d: preamble write: %s", i, strerror(errno));
		if (i % 2) {
			struct pollfd pf = {.fd = c, .events = POLLIN};
			char greet;

			if (poll(&pf, 1, 5000) != 1 || read(c, &greet, 1) != 1 || greet != 'S')
				die("connection %d: no server greeting within 5 s after the "
				    "preamble",
				    i);
		}
		/* A few writes, the first immediately after the preamble (or the greeting). */
		for (size_t off = 0; off < n;) {
			size_t chunk = off ? n - off : (n < 100 ? n : 100);

			if (write_all(c, app + off, chunk, i))
				break;
			off += chunk;
		}
		close(c);
	}
	pthread_join(t, (void **)&res);
	printf("order: %d connections%s%s%s%s%s%s: %d preamble first + exact stream, %d app bytes "
	       "before the preamble, %d stream corrupt; at client establishment: client unmapped "
	       "%d, server child unmapped %d; left to TCP by sockmap_client_established %d; server "
	       "child mapped when read %d\n",
	       n_conns, opt_no_load ? " (no fast path)" : "", opt_defer ? " defer-accept" : "",
	       open_flags & SOCKMAP_F_NO_VERDICT ? " no-verdict" : "",
	       open_flags & SOCKMAP_F_NO_ORDER ? " no-order" : "", opt_tfo ? " tfo" : "",
	       opt_no_settle ? " no-settle" : "", res->or_ok, res->or_bad_preamble,
	       res->or_bad_stream, client_unmapped, peer_unmapped, detached, res->or_server_mapped);
	if (prog_sm && sockmap_entries(prog_sm) != 0)
		die("%d sockhash entries left", sockmap_entries(prog_sm));
	return res->or_ok == n_conns ? 0 : 1;
}
