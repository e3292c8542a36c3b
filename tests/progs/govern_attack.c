// SPDX-License-Identifier: MIT
/* govern_attack: a hostile pod process that misuses the host sockets the shim gives it. */

/*
 *   govern_attack attack --server IP:PORT --listen PORT --fabric IP --bind-port PORT
 *                        --target IP:PORT [--target IP:PORT ...] [--hold]
 *	Run shimmed, in a pod, as an unprivileged user. Makes the shim hand it host sockets through
 *	the two legitimate libc calls (a connect to the slim server at --server, a listen on
 *	0.0.0.0:--listen), finds every AF_INET TCP socket of the process that lives in another
 *	network namespace than the pod (the connected one, hidden host listeners, pre-made pool
 *	sockets) and tries every misuse on each with raw syscalls: names that show a fabric address
 *	(--fabric's /24), socket options that escape the router's governance, connects to each
 *	--target after connect(AF_UNSPEC), binds (0.0.0.0:--bind-port, --fabric:0, 0.0.0.0:0), and
 *	listen. One line per attempt:
 *	    BLOCKED <what> <errno or what it showed>
 *	    ALLOWED <what> <detail>
 *	    LISTENING <what> host=IP:PORT    listen() succeeded: the caller must show the port is
 *	                                     unreachable from the fabric (the program cannot)
 *	lines starting with "# " are notes, and the last line is
 *	    DONE blocked=N allowed=N listening=N pool=N
 *	With --hold it then keeps its sockets until stdin reaches EOF, so the caller can probe the
 *	LISTENING ports. Exit 0 when every attempt was BLOCKED, 1 when one was ALLOWED, 2 when it
 *	could not set the attack up (no host socket from the shim: nothing was tested), 3 when
 *	nothing was ALLOWED but listen() succeeded (blocked only if the caller finds those ports
 *	unreachable).
 *   govern_attack serve IP PORT
 *	Listens on IP:PORT, prints "listening", then "accepted peer=IP:PORT" for every connection
 *	(the peer accept() reports: the overlay one when shimmed) and keeps it open.
 *   govern_attack probe IP PORT
 *	One connect with a 1 s deadline: prints "connected local=IP:PORT" (exit 0) or
 *	"failed errno=NAME" (exit 1).
 *   govern_attack forge IP PORT SRC_IP SRC_PORT DST_IP DST_PORT
 *	Connects to a host listener as a plain process and writes a hand-made 20-byte preamble that
 *	claims the connection comes from SRC and goes to DST; prints "sent" (exit 0) or
 *	"failed errno=NAME" (exit 1).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif
#ifndef TCP_FASTOPEN_CONNECT
#define TCP_FASTOPEN_CONNECT 30
#endif

#define ATTACK_MAX_FD	   4096
#define ATTACK_MAX_TARGETS 8
#define ATTACK_MAX_VICTIMS 256
/* Long enough for a handshake between lab hosts, short enough to keep the scenario quick. */
#define ATTACK_CONNECT_MS 1000

/*
 * The shim interposes libc's socket calls and syscall() itself, so every attack goes to the
 * kernel through this wrapper: what the kernel allows here is what any pod process can do,
 * whatever the shim would have done with the call. Returns -errno like the kernel.
 */
static long raw_syscall(long nr, long a1, long a2, long a3, long a4, long a5, long a6)
{
#if defined(__x86_64__)
	register long r10 __asm__("r10") = a4;
	register long r8 __asm__("r8") = a5;
	register long r9 __asm__("r9") = a6;
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
#elif defined(__aarch64__)
	register long x8 __asm__("x8") = nr;
	register long x0 __asm__("x0") = a1;
	register long x1 __asm__("x1") = a2;
	register long x2 __asm__("x2") = a3;
	register long x3 __asm__("x3") = a4;
	register long x4 __asm__("x4") = a5;
	register long x5 __asm__("x5") = a6;

	__asm__ volatile("svc 0"
			 : "+r"(x0)
			 : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
			 : "memory");
	return x0;
#else
#error "govern_attack needs a raw syscall wrapper for this architecture"
#endif
}

static int raw_socket(int domain, int type)
{
	return (int)raw_syscall(SYS_socket, domain, type, 0, 0, 0, 0);
}

static int raw_close(int fd)
{
	return (int)raw_syscall(SYS_close, fd, 0, 0, 0, 0, 0);
}

static int raw_connect(int fd, const void *sa, socklen_t len)
{
	return (int)raw_syscall(SYS_connect, fd, (long)sa, len, 0, 0, 0);
}

static int raw_bind(int fd, const struct sockaddr_in *sin)
{
	return (int)raw_syscall(SYS_bind, fd, (long)sin, sizeof(*sin), 0, 0, 0);
}

static int raw_listen(int fd, int backlog)
{
	return (int)raw_syscall(SYS_listen, fd, backlog, 0, 0, 0, 0);
}

static int raw_name(long nr, int fd, struct sockaddr_in *sin)
{
	socklen_t len = sizeof(*sin);

	memset(sin, 0, sizeof(*sin));
	return (int)raw_syscall(nr, fd, (long)sin, (long)&len, 0, 0, 0);
}

static int raw_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	return (int)raw_syscall(SYS_setsockopt, fd, level, name, (long)val, len, 0);
}

static int raw_getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	return (int)raw_syscall(SYS_getsockopt, fd, level, name, (long)val, (long)len, 0);
}

static int raw_getsockopt_int(int fd, int level, int name, int *val)
{
	socklen_t len = sizeof(*val);

	*val = 0;
	return raw_getsockopt(fd, level, name, val, &len);
}

static long raw_sendto(int fd, const void *buf, size_t n, int flags)
{
	return raw_syscall(SYS_sendto, fd, (long)buf, (long)n, flags, 0, 0);
}

static int raw_fcntl(int fd, int cmd, long arg)
{
	return (int)raw_syscall(SYS_fcntl, fd, cmd, arg, 0, 0, 0);
}

/* ppoll, not poll: the shim interposes poll() and would fold its hidden listeners in. */
static int raw_poll1(int fd, short events, int ms)
{
	struct pollfd p = {.fd = fd, .events = events};
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	int r = (int)raw_syscall(SYS_ppoll, (long)&p, 1, (long)&ts, 0, 8, 0);

	return r < 0 ? r : (r ? p.revents : 0);
}

static const char *errname(int e)
{
	const char *n = strerrorname_np(e);

	return n ? n : "?";
}

static int parse_port(const char *s, uint16_t *port)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 1 || v > 65535)
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

static int parse_ip(const char *s, struct sockaddr_in *sin)
{
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	return inet_pton(AF_INET, s, &sin->sin_addr) == 1 ? 0 : -EINVAL;
}

/* IP:PORT into sin. */
static int parse_endpoint(const char *s, struct sockaddr_in *sin)
{
	char ip[INET_ADDRSTRLEN];
	const char *colon = strrchr(s, ':');

	if (!colon || (size_t)(colon - s) >= sizeof(ip))
		return -EINVAL;
	memcpy(ip, s, (size_t)(colon - s));
	ip[colon - s] = '\0';
	if (parse_ip(ip, sin) < 0 || parse_port(colon + 1, &sin->sin_port) < 0)
		return -EINVAL;
	sin->sin_port = htons(sin->sin_port);
	return 0;
}

static const char *endpoint_str(char *buf, size_t len, const struct sockaddr_in *sin)
{
	char ip[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
	snprintf(buf, len, "%s:%u", ip, ntohs(sin->sin_port));
	return buf;
}

/* ---- the attack ------------------------------------------------------------------------------ */

struct attack_opts {
	struct sockaddr_in ao_server;
	uint16_t ao_listen_port;
	struct sockaddr_in ao_fabric;
	uint16_t ao_bind_port;
	struct sockaddr_in ao_targets[ATTACK_MAX_TARGETS];
	int ao_ntargets;
	bool ao_hold;
};

/* A host socket found in the process, and what it was when found. */
struct victim {
	int v_fd;
	const char *v_role; /* "connected", "listener" or "pool" */
};

static int attack_blocked, attack_allowed, attack_listening;

static void attack_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void attack_note(const char *fmt, ...)
{
	va_list ap;

	fputs("# ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/* One line per attempt; allowed says whether the kernel let the misuse through. */
static void attack_report(bool allowed, const char *what, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void attack_report(bool allowed, const char *what, const char *fmt, ...)
{
	va_list ap;

	printf("%s %s ", allowed ? "ALLOWED" : "BLOCKED", what);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	if (allowed)
		attack_allowed++;
	else
		attack_blocked++;
}

static uint64_t netns_cookie(int fd)
{
	uint64_t cookie = 0;
	socklen_t len = sizeof(cookie);

	if (raw_getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) < 0)
		return 0;
	return cookie;
}

static int tcp_state(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (raw_getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		return -1;
	return ti.tcpi_state;
}

static bool is_fabric(const struct attack_opts *o, const struct sockaddr_in *sin)
{
	return (ntohl(sin->sin_addr.s_addr) & 0xffffff00u) ==
	       (ntohl(o->ao_fabric.sin_addr.s_addr) & 0xffffff00u);
}

/* getsockname/getpeername must never reveal the fabric: the node's address is not the pod's. */
static void attack_names(const struct attack_opts *o, const struct victim *v)
{
	static const struct {
		long nr;
		const char *name;
	} calls[] = {{SYS_getsockname, "getsockname"}, {SYS_getpeername, "getpeername"}};
	char what[96], a[32];

	for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
		struct sockaddr_in sin;
		int r = raw_name(calls[i].nr, v->v_fd, &sin);

		snprintf(what, sizeof(what), "%s fd=%d (%s)", calls[i].name, v->v_fd, v->v_role);
		if (r < 0)
			attack_report(false, what, "errno=%s", errname(-r));
		else
			attack_report(is_fabric(o, &sin), what, "shows %s",
				      endpoint_str(a, sizeof(a), &sin));
	}
}

/*
 * Options the router sets or forbids: each would let a pod escape its QoS class (SO_PRIORITY,
 * SO_MARK), pick the node's interface or impersonate addresses (SO_BINDTODEVICE, IP_TRANSPARENT,
 * IP_FREEBIND), rewrite TCP state (TCP_REPAIR) or change how the kernel connects a socket the
 * router prepared (TCP_FASTOPEN_CONNECT). SO_BINDTODEVICE is tried by attack_bindtodevice, after
 * the connects: pinned to eth0 the socket could no longer reach 127.0.0.1, and that refusal
 * would not be the governance's.
 */
static void attack_sockopts(const struct victim *v)
{
	struct {
		int level, name, val;
		const char *what;
	} opts[] = {
		{SOL_SOCKET, SO_PRIORITY, 0, "SO_PRIORITY=0"},
		{SOL_SOCKET, SO_PRIORITY, 6, "SO_PRIORITY=6"},
		{SOL_SOCKET, SO_MARK, 1, "SO_MARK=1"},
		{IPPROTO_IP, IP_TRANSPARENT, 1, "IP_TRANSPARENT=1"},
		{IPPROTO_TCP, TCP_REPAIR, 1, "TCP_REPAIR=1"},
		{IPPROTO_IP, IP_FREEBIND, 1, "IP_FREEBIND=1"},
		{IPPROTO_TCP, TCP_FASTOPEN_CONNECT, -1, "TCP_FASTOPEN_CONNECT"},
	};
	char what[96];

	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		int before = 0, after = 0, val = opts[i].val, r;

		raw_getsockopt_int(v->v_fd, opts[i].level, opts[i].name, &before);
		/* val -1: flip the flag, whatever the router chose; the change is the attack. */
		if (opts[i].val < 0)
			val = !before;
		snprintf(what, sizeof(what), "setsockopt %s%s fd=%d (%s)", opts[i].what,
			 opts[i].val < 0 ? (val ? "=1" : "=0") : "", v->v_fd, v->v_role);
		r = raw_setsockopt(v->v_fd, opts[i].level, opts[i].name, &val, sizeof(val));
		if (r < 0) {
			attack_report(false, what, "errno=%s", errname(-r));
			continue;
		}
		raw_getsockopt_int(v->v_fd, opts[i].level, opts[i].name, &after);
		attack_report(true, what, "value %#x -> %#x", before, after);
	}
}

static void attack_bindtodevice(const struct victim *v)
{
	static const char dev[IFNAMSIZ] = "eth0";
	char what[96];
	int r;

	snprintf(what, sizeof(what), "setsockopt SO_BINDTODEVICE=eth0 fd=%d (%s)", v->v_fd,
		 v->v_role);
	r = raw_setsockopt(v->v_fd, SOL_SOCKET, SO_BINDTODEVICE, dev, sizeof(dev));
	if (r < 0)
		attack_report(false, what, "errno=%s", errname(-r));
	else
		attack_report(true, what, "bound to the node's eth0");
}

/*
 * connect(AF_UNSPEC) takes any TCP socket back to CLOSE (a listener too). No cgroup hook sees it,
 * so it is not itself an attempt: what must fail is everything done with the socket afterwards.
 */
static void attack_disconnect(const struct victim *v)
{
	struct sockaddr sa = {.sa_family = AF_UNSPEC};
	int state = tcp_state(v->v_fd), r;

	if (state == TCP_CLOSE)
		return;
	r = raw_connect(v->v_fd, &sa, sizeof(sa));
	attack_note("fd=%d (%s): connect(AF_UNSPEC) from TCP state %d: %s", v->v_fd, v->v_role,
		    state, r < 0 ? errname(-r) : "ok");
}

/*
 * Whether a connect the kernel accepted reaches its target. The router sets
 * TCP_FASTOPEN_CONNECT, so connect() may have sent nothing yet: the probe's send makes the SYN
 * leave (and gives the peer router a malformed message it logs). Its bytes are a probe, not a
 * protocol: 16 of them fill a control header whose length field is nonsense.
 */
static void attack_probe(int fd, char *detail, size_t len)
{
	static const char probe[16] = "govern-attack!\r\n";
	bool sent = false;
	long n;
	int ev, state;

	n = raw_sendto(fd, probe, sizeof(probe), MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n > 0)
		sent = true;
	ev = raw_poll1(fd, POLLOUT, ATTACK_CONNECT_MS);
	state = tcp_state(fd);
	if (state == TCP_ESTABLISHED && !sent)
		raw_sendto(fd, probe, sizeof(probe), MSG_DONTWAIT | MSG_NOSIGNAL);
	if (state == TCP_ESTABLISHED || state == TCP_CLOSE_WAIT) {
		snprintf(detail, len, "established");
	} else {
		int err = 0;

		raw_getsockopt_int(fd, SOL_SOCKET, SO_ERROR, &err);
		snprintf(detail, len, "not established (state %d, poll %#x, so_error %s)", state,
			 ev < 0 ? 0 : ev, err ? errname(err) : "0");
	}
}

static void attack_connects(const struct attack_opts *o, const struct victim *v)
{
	char what[128], t[32], local[32], detail[96];

	for (int i = 0; i < o->ao_ntargets; i++) {
		struct sockaddr_in me;
		int r;

		attack_disconnect(v);
		snprintf(what, sizeof(what), "connect fd=%d (%s) to %s", v->v_fd, v->v_role,
			 endpoint_str(t, sizeof(t), &o->ao_targets[i]));
		r = raw_connect(v->v_fd, &o->ao_targets[i], sizeof(o->ao_targets[i]));
		if (r < 0 && r != -EINPROGRESS) {
			attack_report(false, what, "errno=%s", errname(-r));
			continue;
		}
		/* The kernel took the connect: the socket speaks as the node, wherever it got. */
		attack_probe(v->v_fd, detail, sizeof(detail));
		raw_name(SYS_getsockname, v->v_fd, &me);
		attack_report(true, what, "from local=%s %s",
			      endpoint_str(local, sizeof(local), &me), detail);
	}
}

/* The router binds the sockets it makes; a pod that binds one picks a node address or port. */
static void attack_binds(const struct attack_opts *o, const struct victim *v)
{
	struct sockaddr_in addrs[3] = {
		{.sin_family = AF_INET, .sin_port = htons(o->ao_bind_port)},
		{.sin_family = AF_INET, .sin_addr = o->ao_fabric.sin_addr},
		{.sin_family = AF_INET},
	};
	char what[128], a[32];

	attack_disconnect(v);
	for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
		int r = raw_bind(v->v_fd, &addrs[i]);

		snprintf(what, sizeof(what), "bind fd=%d (%s) to %s", v->v_fd, v->v_role,
			 endpoint_str(a, sizeof(a), &addrs[i]));
		if (r < 0) {
			attack_report(false, what, "errno=%s", errname(-r));
		} else {
			struct sockaddr_in me;

			raw_name(SYS_getsockname, v->v_fd, &me);
			attack_report(true, what, "bound %s", endpoint_str(a, sizeof(a), &me));
		}
	}
}

/*
 * A host socket that listens would take connections from the whole fabric. Governance may refuse
 * listen() or let it succeed and confine the listener (bound to lo, destroyed by the router):
 * only a connection attempt from another node tells the two apart, so a successful listen is
 * reported as LISTENING for the caller to probe.
 */
static void attack_listen(const struct victim *v)
{
	struct sockaddr_in me;
	char what[96], a[32];
	int r;

	attack_disconnect(v);
	snprintf(what, sizeof(what), "listen fd=%d (%s)", v->v_fd, v->v_role);
	r = raw_listen(v->v_fd, 8);
	if (r < 0) {
		attack_report(false, what, "errno=%s", errname(-r));
		return;
	}
	r = raw_name(SYS_getsockname, v->v_fd, &me);
	printf("LISTENING %s host=%s\n", what, r < 0 ? "?" : endpoint_str(a, sizeof(a), &me));
	attack_listening++;
}

/*
 * The legitimate part: the calls an app makes and the shim turns into host sockets. These go
 * through libc on purpose (socket and bind too, so the shim knows the sockets it then serves).
 */
static int attack_setup(const struct attack_opts *o, int *listen_fd, int *conn_fd)
{
	struct sockaddr_in any = {.sin_family = AF_INET, .sin_port = htons(o->ao_listen_port)};
	char a[32];
	int one = 1;

	*listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	if (*listen_fd < 0 ||
	    setsockopt(*listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(*listen_fd, (struct sockaddr *)&any, sizeof(any)) < 0 ||
	    listen(*listen_fd, 8) < 0) {
		printf("SETUP listen on 0.0.0.0:%u: %s\n", o->ao_listen_port, errname(errno));
		return -1;
	}
	*conn_fd = socket(AF_INET, SOCK_STREAM, 0);
	if (*conn_fd < 0 ||
	    connect(*conn_fd, (const struct sockaddr *)&o->ao_server, sizeof(o->ao_server)) < 0) {
		printf("SETUP connect to %s: %s\n", endpoint_str(a, sizeof(a), &o->ao_server),
		       errname(errno));
		return -1;
	}
	attack_note("pod listener fd=%d on 0.0.0.0:%u, connected fd=%d to %s", *listen_fd,
		    o->ao_listen_port, *conn_fd, endpoint_str(a, sizeof(a), &o->ao_server));
	return 0;
}

/*
 * Every AF_INET TCP socket of the process outside the pod's network namespace is a host socket
 * the shim holds for us or gave us; the pod's own sockets are the app's business.
 */
static int attack_scan(int conn_fd, uint64_t pod_ns, struct victim *vs, int *npool)
{
	int n = 0;

	*npool = 0;
	for (int fd = 0; fd <= ATTACK_MAX_FD && n < ATTACK_MAX_VICTIMS; fd++) {
		int domain, type, state;
		uint64_t ns;

		if (raw_getsockopt_int(fd, SOL_SOCKET, SO_DOMAIN, &domain) < 0 ||
		    domain != AF_INET || raw_getsockopt_int(fd, SOL_SOCKET, SO_TYPE, &type) < 0 ||
		    type != SOCK_STREAM)
			continue;
		ns = netns_cookie(fd);
		state = tcp_state(fd);
		if (ns == pod_ns) {
			attack_note("fd=%d: pod socket (TCP state %d), the app's own: not attacked",
				    fd, state);
			continue;
		}
		vs[n].v_fd = fd;
		if (fd == conn_fd)
			vs[n].v_role = "connected";
		else if (state == TCP_LISTEN)
			vs[n].v_role = "listener";
		else
			vs[n].v_role = "pool";
		if (!strcmp(vs[n].v_role, "pool"))
			(*npool)++;
		attack_note("fd=%d: host socket (netns cookie %llu, TCP state %d): %s", fd,
			    (unsigned long long)ns, state, vs[n].v_role);
		n++;
	}
	return n;
}

static int attack_run(const struct attack_opts *o)
{
	static struct victim vs[ATTACK_MAX_VICTIMS];
	int listen_fd, conn_fd, nv, npool, probe, i;
	bool connected_found = false;
	uint64_t pod_ns;
	char c;

	/* The pod's namespace, from a socket the shim never sees. */
	probe = raw_socket(AF_INET, SOCK_STREAM);
	pod_ns = probe < 0 ? 0 : netns_cookie(probe);
	if (probe >= 0)
		raw_close(probe);
	if (!pod_ns) {
		printf("SETUP no SO_NETNS_COOKIE: cannot tell host sockets from pod ones\n");
		return 2;
	}
	if (attack_setup(o, &listen_fd, &conn_fd) < 0)
		return 2;
	nv = attack_scan(conn_fd, pod_ns, vs, &npool);
	for (i = 0; i < nv; i++)
		connected_found |= vs[i].v_fd == conn_fd;
	/* Over the overlay nothing slim made would be attacked: the run would prove nothing. */
	if (!connected_found) {
		printf("SETUP connected fd=%d is a pod socket: the shim fell back to the overlay\n",
		       conn_fd);
		return 2;
	}
	if (!npool)
		attack_note("no pre-made pool sockets found");
	/* Non-blocking, so that no connect below can hang; raw, so the shim does not see it. */
	for (i = 0; i < nv; i++)
		raw_fcntl(vs[i].v_fd, F_SETFL, raw_fcntl(vs[i].v_fd, F_GETFL, 0) | O_NONBLOCK);

	for (i = 0; i < nv; i++)
		attack_names(o, &vs[i]);
	for (i = 0; i < nv; i++)
		attack_sockopts(&vs[i]);
	for (i = 0; i < nv; i++)
		attack_connects(o, &vs[i]);
	for (i = 0; i < nv; i++)
		attack_bindtodevice(&vs[i]);
	for (i = 0; i < nv; i++)
		attack_binds(o, &vs[i]);
	for (i = 0; i < nv; i++)
		attack_listen(&vs[i]);
	printf("DONE blocked=%d allowed=%d listening=%d pool=%d\n", attack_blocked, attack_allowed,
	       attack_listening, npool);
	fflush(stdout);
	/* Keep the listeners open while the caller probes them; a new deadline for that. */
	alarm(120);
	if (o->ao_hold)
		while (read(STDIN_FILENO, &c, 1) > 0)
			;
	return attack_allowed ? 1 : attack_listening ? 3 : 0;
}

static int attack_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"server", required_argument, NULL, 's'},
		{"listen", required_argument, NULL, 'l'},
		{"fabric", required_argument, NULL, 'f'},
		{"bind-port", required_argument, NULL, 'b'},
		{"target", required_argument, NULL, 't'},
		{"hold", no_argument, NULL, 'H'},
		{NULL, 0, NULL, 0},
	};
	struct attack_opts o = {0};
	bool have_server = false, have_fabric = false;
	int opt;

	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 's':
			if (parse_endpoint(optarg, &o.ao_server) < 0)
				return -EINVAL;
			have_server = true;
			break;
		case 'l':
			if (parse_port(optarg, &o.ao_listen_port) < 0)
				return -EINVAL;
			break;
		case 'f':
			if (parse_ip(optarg, &o.ao_fabric) < 0)
				return -EINVAL;
			have_fabric = true;
			break;
		case 'b':
			if (parse_port(optarg, &o.ao_bind_port) < 0)
				return -EINVAL;
			break;
		case 't':
			if (o.ao_ntargets == ATTACK_MAX_TARGETS ||
			    parse_endpoint(optarg, &o.ao_targets[o.ao_ntargets]) < 0)
				return -EINVAL;
			o.ao_ntargets++;
			break;
		case 'H':
			o.ao_hold = true;
			break;
		default:
			return -EINVAL;
		}
	}
	if (optind != argc || !have_server || !have_fabric || !o.ao_listen_port ||
	    !o.ao_bind_port || !o.ao_ntargets)
		return -EINVAL;
	return attack_run(&o);
}

/* ---- the scenario's helpers (plain libc: they are shimmed only on purpose) ------------------ */

static int serve(const char *ip, const char *port)
{
	static int conns[1024];
	struct sockaddr_in sin;
	size_t next = 0;
	int lfd, one = 1;

	if (parse_ip(ip, &sin) < 0 || parse_port(port, &sin.sin_port) < 0)
		return -EINVAL;
	sin.sin_port = htons(sin.sin_port);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(lfd, 64) < 0) {
		printf("failed errno=%s\n", errname(errno));
		return 1;
	}
	printf("listening\n");
	for (;;) {
		struct sockaddr_in peer;
		socklen_t len = sizeof(peer);
		char a[32];
		int fd = accept(lfd, (struct sockaddr *)&peer, &len);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			printf("accept failed errno=%s\n", errname(errno));
			return 1;
		}
		printf("accepted peer=%s\n", endpoint_str(a, sizeof(a), &peer));
		/* Kept open, so a client sees a live peer; the oldest goes when the table fills. */
		if (conns[next % 1024] > 0)
			close(conns[next % 1024]);
		conns[next++ % 1024] = fd;
	}
}

/* A connect with a deadline: 0 and the connected fd in *out, or -errno. */
static int connect_timed(const struct sockaddr_in *dst, int ms, int *out)
{
	struct pollfd p;
	socklen_t len = sizeof(int);
	int fd, err = 0;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)dst, sizeof(*dst)) < 0 && errno != EINPROGRESS) {
		err = errno;
		goto fail;
	}
	p = (struct pollfd){.fd = fd, .events = POLLOUT};
	if (poll(&p, 1, ms) <= 0) {
		err = ETIMEDOUT;
		goto fail;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err)
		goto fail;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	*out = fd;
	return 0;
fail:
	close(fd);
	return -err;
}

static int probe(const char *ip, const char *port)
{
	struct sockaddr_in dst, me;
	socklen_t len = sizeof(me);
	char a[32];
	int fd, r;

	if (parse_ip(ip, &dst) < 0 || parse_port(port, &dst.sin_port) < 0)
		return -EINVAL;
	dst.sin_port = htons(dst.sin_port);
	r = connect_timed(&dst, ATTACK_CONNECT_MS, &fd);
	if (r < 0) {
		printf("failed errno=%s\n", errname(-r));
		return 1;
	}
	getsockname(fd, (struct sockaddr *)&me, &len);
	printf("connected local=%s\n", endpoint_str(a, sizeof(a), &me));
	close(fd);
	return 0;
}

/*
 * The preamble as common/preamble.c writes it, by hand, as an attacker would: magic "SLM1",
 * version 1, flags 0, length 20, then source IP, destination IP, source port, destination port,
 * all big-endian.
 */
static int forge(char **argv)
{
	struct sockaddr_in dst, src, odst;
	uint8_t buf[20] = {'S', 'L', 'M', '1', 1, 0, 0, 20};
	int fd, r;

	if (parse_ip(argv[0], &dst) < 0 || parse_port(argv[1], &dst.sin_port) < 0 ||
	    parse_ip(argv[2], &src) < 0 || parse_port(argv[3], &src.sin_port) < 0 ||
	    parse_ip(argv[4], &odst) < 0 || parse_port(argv[5], &odst.sin_port) < 0)
		return -EINVAL;
	dst.sin_port = htons(dst.sin_port);
	memcpy(buf + 8, &src.sin_addr, 4);
	memcpy(buf + 12, &odst.sin_addr, 4);
	buf[16] = (uint8_t)(src.sin_port >> 8);
	buf[17] = (uint8_t)src.sin_port;
	buf[18] = (uint8_t)(odst.sin_port >> 8);
	buf[19] = (uint8_t)odst.sin_port;
	r = connect_timed(&dst, ATTACK_CONNECT_MS, &fd);
	if (r < 0) {
		printf("failed errno=%s\n", errname(-r));
		return 1;
	}
	if (send(fd, buf, sizeof(buf), MSG_NOSIGNAL) != (ssize_t)sizeof(buf)) {
		printf("failed errno=%s\n", errname(errno));
		close(fd);
		return 1;
	}
	printf("sent\n");
	close(fd);
	return 0;
}

static int usage(void)
{
	fprintf(stderr, "usage: govern_attack attack --server IP:PORT --listen PORT --fabric IP "
			"--bind-port PORT --target IP:PORT... [--hold]\n"
			"       govern_attack serve IP PORT\n"
			"       govern_attack probe IP PORT\n"
			"       govern_attack forge IP PORT SRC_IP SRC_PORT DST_IP DST_PORT\n");
	return 2;
}

int main(int argc, char **argv)
{
	int r = -EINVAL;

	setvbuf(stdout, NULL, _IOLBF, 0);
	/* Every mode but serve ends by itself; the deadline keeps a stuck one from hanging. */
	if (argc >= 2 && strcmp(argv[1], "serve"))
		alarm(60);
	if (argc >= 2 && !strcmp(argv[1], "attack"))
		r = attack_main(argc - 1, argv + 1);
	else if (argc == 4 && !strcmp(argv[1], "serve"))
		r = serve(argv[2], argv[3]);
	else if (argc == 4 && !strcmp(argv[1], "probe"))
		r = probe(argv[2], argv[3]);
	else if (argc == 8 && !strcmp(argv[1], "forge"))
		r = forge(argv + 2);
	return r == -EINVAL ? usage() : r;
}
