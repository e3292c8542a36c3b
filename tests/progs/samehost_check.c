// SPDX-License-Identifier: MIT
/*
 * samehost_check: the data-path cases of the same-host fast path, run by an ordinary TCP client
 * and server (shimmed or not), so the same assertions hold with the sockmap redirect and without.
 *
 *   samehost_check server PORT
 *	Threaded TCP server on 0.0.0.0:PORT. Every connection first sends one command line (read
 *	byte by byte, so nothing after it is consumed); verdicts the client cannot see are printed
 *	as "server ok CASE ..." or "server not ok CASE: why".
 *   samehost_check client [--seed S] HOST PORT CASE[,CASE...]|all
 *	Prints "ok CASE[ # note]" or "not ok CASE: why" per case; exits 1 if any failed. Cases:
 *	stream (1 B .. 16 MB echoed, random write and read splits both ways, the server's trailer
 *	written after the client's SHUT_WR), halfclose (the server shuts down first), shutwr_send
 *	(a send after SHUT_WR fails with EPIPE and nothing reaches the peer after EOF), unread and
 *	unread_peer (one end closes with unread data: the other must learn within 5 s that bytes
 *	were lost, ECONNRESET, and its writes must start failing), unread_full (the same after the
 *	client queued all it could: its direction has gone the TCP way), unread_dup, unread_passed
 *	and unread_fork (a close with unread data while a dup, a copy passed with SCM_RIGHTS or a
 *	child still holds the connection: no reset, the holder reads every byte), reset_blocked (a
 *	read blocked with a receive timeout when the peer resets: ECONNRESET at once), ready_poll, ready_lt, ready_et (ping-pong of random-size
 *	messages, every wait with poll / level / edge-triggered epoll, on both ends), wfill and
 *	rfill (one end writes until EAGAIN and must get an edge-triggered EPOLLOUT once the other
 *	drains).
 *   samehost_check churn HOST PORT N
 *	N short connections one after the other (connect, 32 bytes each way, close); prints
 *	"churn N connections S seconds F failed" and exits 1 if any failed.
 *
 * Every wait has a deadline: a missed wakeup is reported as "not ok CASE: ... no readiness" and
 * a watchdog ends a run that still hangs ("not ok: hung", exit 2), so a scenario never hangs.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* Something that must happen gets WAIT_MS; FILL_WAIT_MS covers the peer's quiet period too. */
#define WAIT_MS	     5000
#define FILL_WAIT_MS 15000
/* The draining end of a fill case reads once the queued bytes stopped growing for QUIET_MS. */
#define QUIET_MS     300
#define CHUNK	     (256 * 1024)
/*
 * A fill that never sees EAGAIN after this many bytes has no backpressure: TCP over loopback
 * stops a sender at its send buffer plus the receiver's (a few MiB), the fast path at most
 * about twice that (docs/design.md).
 */
#define FILL_CAP     (16ull << 20)
#define TRAILER_LEN  22 /* "fill %016llu\n" */
#define WATCHDOG_S   90

static __thread char why[512];
static __thread char note[256];
static __thread uint64_t rng_state;

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	return -1;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t mix64(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ULL;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Byte p of stream SEED: byte p % 8 of mix64(SEED * K + p / 8); both ends compute any offset. */
static uint8_t pat_byte(uint64_t seed, uint64_t off)
{
	return (uint8_t)(mix64(seed * 0x100000001b3ULL + off / 8) >> (8 * (off % 8)));
}

static void pat_fill(uint64_t seed, uint64_t off, uint8_t *buf, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		buf[i] = pat_byte(seed, off + i);
}

static int pat_check(uint64_t seed, uint64_t off, const uint8_t *buf, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (buf[i] != pat_byte(seed, off + i))
			return fail("wrong byte at offset %" PRIu64 " of stream %" PRIu64, off + i,
				    seed);
	return 0;
}

static uint64_t rng_next(void)
{
	rng_state = mix64(rng_state);
	return rng_state;
}

/* A random I/O size in 1..max: one in eight tiny (1..16 bytes), so 1-byte splits do happen. */
static size_t rng_size(size_t max)
{
	size_t n = rng_next() % 8 == 0 ? 1 + rng_next() % 16 : 1 + rng_next() % max;

	return n < max ? n : max;
}

static int set_nonblock(int fd, int on)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -1;
	return fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

/* wait_fd: poll FD for EVENTS up to MS; 1 ready, 0 timed out. */
static int wait_fd(int fd, short events, int ms)
{
	struct pollfd p = {.fd = fd, .events = events};
	uint64_t end = now_ms() + (uint64_t)ms;
	int r;

	for (;;) {
		uint64_t t = now_ms();

		r = poll(&p, 1, t >= end ? 0 : (int)(end - t));
		if (r >= 0 || errno != EINTR)
			return r > 0;
	}
}

/* write_all: LEN bytes on a blocking or non-blocking fd, each wait at most WAIT_MS. */
static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t w = send(fd, p, len, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			if (!wait_fd(fd, POLLOUT, WAIT_MS))
				return fail("no POLLOUT within %d ms", WAIT_MS);
			continue;
		}
		if (w < 0)
			return fail("write: %s", strerror(errno));
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* read_line: one '\n'-terminated line, byte by byte, so the bytes after it stay queued. */
static int read_line(int fd, char *buf, size_t len)
{
	size_t n = 0;

	while (n + 1 < len) {
		ssize_t r = read(fd, buf + n, 1);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN) {
			if (!wait_fd(fd, POLLIN, WAIT_MS))
				return fail("no line within %d ms", WAIT_MS);
			continue;
		}
		if (r <= 0)
			return fail("line: %s", r ? strerror(errno) : "EOF");
		if (buf[n] == '\n') {
			buf[n] = 0;
			return 0;
		}
		n++;
	}
	return fail("line too long");
}

/* ---- readiness: one waiter per end, poll or epoll level- or edge-triggered ---------------- */

enum wait_mode { W_POLL, W_LT, W_ET };

struct waiter {
	int w_fd, w_ep;
	enum wait_mode w_mode;
};

static int waiter_init(struct waiter *w, int fd, enum wait_mode mode)
{
	struct epoll_event ev = {.events = 0, .data.u64 = 0x5eed};

	w->w_fd = fd;
	w->w_mode = mode;
	w->w_ep = -1;
	if (mode == W_POLL)
		return 0;
	w->w_ep = epoll_create1(EPOLL_CLOEXEC);
	if (w->w_ep < 0)
		return fail("epoll_create1: %s", strerror(errno));
	/* Edge-triggered: registered once for both directions, as an event loop does. */
	if (mode == W_ET)
		ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
	if (epoll_ctl(w->w_ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		return fail("epoll_ctl ADD: %s", strerror(errno));
	return 0;
}

static void waiter_close(struct waiter *w)
{
	if (w->w_ep >= 0)
		close(w->w_ep);
	w->w_ep = -1;
}

/*
 * waiter_wait: wait until the fd is ready for WANT (POLLIN or POLLOUT) or has an error or hang-up.
 * Called only after the operation returned EAGAIN, which is what edge-triggered use requires.
 */
static int waiter_wait(struct waiter *w, short want, int ms)
{
	uint32_t ewant = (want == POLLIN ? EPOLLIN : EPOLLOUT) | EPOLLERR | EPOLLHUP;
	uint64_t end = now_ms() + (uint64_t)ms;
	struct epoll_event ev;

	if (w->w_mode == W_POLL)
		return wait_fd(w->w_fd, want, ms) ? 0 : -ETIMEDOUT;
	if (w->w_mode == W_LT) {
		ev.events = ewant;
		ev.data.u64 = 0x5eed;
		if (epoll_ctl(w->w_ep, EPOLL_CTL_MOD, w->w_fd, &ev) < 0)
			return -errno;
	}
	for (;;) {
		uint64_t t = now_ms();
		int r;

		if (t >= end)
			return -ETIMEDOUT;
		r = epoll_wait(w->w_ep, &ev, 1, (int)(end - t));
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r == 1 && ev.data.u64 != 0x5eed)
			return -EBADMSG;
		if (r == 1 && (ev.events & ewant))
			return 0;
	}
}

static const char *wait_name(enum wait_mode m)
{
	return m == W_POLL ? "poll" : m == W_LT ? "epoll LT" : "epoll ET";
}

/* ready_send / ready_recv: LEN bytes of stream SEED from offset OFF in random splits. */
static int ready_send(struct waiter *w, uint64_t seed, uint64_t off, size_t len)
{
	static __thread uint8_t buf[CHUNK];
	size_t done = 0;

	while (done < len) {
		size_t n = rng_size(len - done < CHUNK ? len - done : CHUNK);
		ssize_t r;

		pat_fill(seed, off + done, buf, n);
		r = send(w->w_fd, buf, n, MSG_NOSIGNAL);
		if (r < 0 && errno == EAGAIN) {
			if (waiter_wait(w, POLLOUT, WAIT_MS))
				return fail("%s: no POLLOUT within %d ms after EAGAIN "
					    "(sent %zu of %zu)", wait_name(w->w_mode), WAIT_MS,
					    done, len);
			continue;
		}
		if (r < 0 && errno != EINTR)
			return fail("send: %s", strerror(errno));
		if (r > 0)
			done += (size_t)r;
	}
	return 0;
}

static int ready_recv(struct waiter *w, uint64_t seed, uint64_t off, size_t len)
{
	static __thread uint8_t buf[CHUNK];
	size_t done = 0;

	while (done < len) {
		size_t n = rng_size(len - done < CHUNK ? len - done : CHUNK);
		ssize_t r = read(w->w_fd, buf, n);

		if (r < 0 && errno == EAGAIN) {
			if (waiter_wait(w, POLLIN, WAIT_MS))
				return fail("%s: no POLLIN within %d ms (got %zu of %zu bytes)",
					    wait_name(w->w_mode), WAIT_MS, done, len);
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return fail("read after %zu of %zu bytes: %s", done, len,
				    r ? strerror(errno) : "EOF");
		if (pat_check(seed, off + done, buf, (size_t)r))
			return -1;
		done += (size_t)r;
	}
	return 0;
}

/* ready_len: the size of message ROUND, the same on both ends (1 B .. 200 kB, often small). */
static size_t ready_len(uint64_t seed, int round)
{
	uint64_t r = mix64(seed ^ (uint64_t)round * 0x51ed27ULL);

	return r % 4 == 0 ? 1 + (r >> 8) % 16 : 1 + (r >> 8) % 200000;
}

/* ready_run: ROUNDS ping-pongs; the client sends stream SEED, the server answers SEED + 1. */
static int ready_run(int fd, enum wait_mode mode, int rounds, uint64_t seed, int client)
{
	uint64_t off = 0;
	struct waiter w;
	int i, err = 0;

	if (set_nonblock(fd, 1) || waiter_init(&w, fd, mode))
		return fail("set up %s: %s", wait_name(mode), why[0] ? why : strerror(errno));
	for (i = 0; i < rounds && !err; i++) {
		size_t len = ready_len(seed, i);

		if (client)
			err = ready_send(&w, seed, off, len) ?: ready_recv(&w, seed + 1, off, len);
		else
			err = ready_recv(&w, seed, off, len) ?: ready_send(&w, seed + 1, off, len);
		off += len;
	}
	waiter_close(&w);
	if (err)
		return fail("round %d of %d: %.400s", i, rounds, why);
	snprintf(note, sizeof(note), "%d rounds, %" PRIu64 " bytes each way", rounds, off);
	return 0;
}

/* ---- fill: one end writes until EAGAIN, the other drains once quiet --------------------- */

/*
 * fill_send: writes stream SEED until EAGAIN, then waits for an edge-triggered EPOLLOUT (the
 * peer drains once the queue stopped growing), then sends the trailer with the count and
 * shuts down its sending side.
 */
static int fill_send(int fd, uint64_t seed, uint64_t *filled, uint64_t *waited_ms)
{
	static __thread uint8_t buf[65536];
	struct epoll_event ev = {.events = EPOLLOUT | EPOLLET, .data.u64 = 1};
	char trailer[TRAILER_LEN + 1];
	uint64_t off = 0, t0;
	int ep, r, err = 0;

	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0 || set_nonblock(fd, 1) || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		return fail("epoll set-up: %s", strerror(errno));
	/* The registration itself reports the socket writable once: consume that edge. */
	epoll_wait(ep, &ev, 1, 0);
	for (;;) {
		ssize_t w;

		pat_fill(seed, off, buf, sizeof(buf));
		w = send(fd, buf, sizeof(buf), MSG_NOSIGNAL);
		if (w < 0 && errno == EAGAIN)
			break;
		if (w < 0 && errno != EINTR) {
			err = fail("send at %" PRIu64 ": %s", off, strerror(errno));
			goto out;
		}
		if (w > 0)
			off += (uint64_t)w;
		if (off > FILL_CAP) {
			err = fail("no EAGAIN after %" PRIu64 " bytes: no backpressure", off);
			goto out;
		}
	}
	*filled = off;
	t0 = now_ms();
	do
		r = epoll_wait(ep, &ev, 1, FILL_WAIT_MS);
	while (r < 0 && errno == EINTR);
	if (r != 1 || !(ev.events & EPOLLOUT)) {
		err = fail("filled %" PRIu64 " bytes to EAGAIN, then no edge-triggered EPOLLOUT "
			   "within %d ms while the peer drained", off, FILL_WAIT_MS);
		goto out;
	}
	*waited_ms = now_ms() - t0;
	snprintf(trailer, sizeof(trailer), "fill %016" PRIu64 "\n", off);
	if (write_all(fd, trailer, TRAILER_LEN)) {
		err = -1;
		goto out;
	}
	shutdown(fd, SHUT_WR);
out:
	close(ep);
	return err;
}

/* fill_queued: bytes queued for reading (FIONREAD), -1 on error. */
static long fill_queued(int fd)
{
	int n;

	return ioctl(fd, FIONREAD, &n) < 0 ? -1 : n;
}

/*
 * fill_drain: the other end. Leaves the bytes queued until their count stopped growing for
 * QUIET_MS (so the writer does hit EAGAIN), then reads everything there is; repeats to EOF.
 * Checks the stream and that the trailer counts exactly the bytes before it.
 */
static int fill_drain(int fd, uint64_t seed, uint64_t *total)
{
	static __thread uint8_t buf[TRAILER_LEN + 65536];
	uint64_t off = 0, last_change = now_ms(), last_progress = now_ms(), count;
	size_t hold = 0;
	long q, prev = -1;
	char trailer[TRAILER_LEN + 1];

	if (set_nonblock(fd, 1))
		return fail("O_NONBLOCK: %s", strerror(errno));
	for (;;) {
		if (now_ms() - last_progress > FILL_WAIT_MS)
			return fail("no data for %d ms (at %" PRIu64 ")", FILL_WAIT_MS, off);
		q = fill_queued(fd);
		if (q < 0)
			return fail("FIONREAD: %s", strerror(errno));
		if (q != prev) {
			prev = q;
			last_change = now_ms();
		}
		/* A sampling interval, not a readiness wait: quiet is measured, not assumed. */
		if (now_ms() - last_change < QUIET_MS) {
			poll(NULL, 0, 20);
			continue;
		}
		/* Quiet (or nothing at all, the EOF case): read until EAGAIN or EOF. */
		for (;;) {
			ssize_t r = read(fd, buf + hold, sizeof(buf) - hold);

			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0 && errno == EAGAIN)
				break;
			if (r < 0)
				return fail("read at %" PRIu64 ": %s", off, strerror(errno));
			if (r == 0)
				goto eof;
			last_progress = now_ms();
			hold += (size_t)r;
			/* The last TRAILER_LEN bytes may be the trailer: check what is before. */
			if (hold > TRAILER_LEN) {
				if (pat_check(seed, off, buf, hold - TRAILER_LEN))
					return -1;
				off += hold - TRAILER_LEN;
				memmove(buf, buf + hold - TRAILER_LEN, TRAILER_LEN);
				hold = TRAILER_LEN;
			}
		}
		prev = -1;
	}
eof:
	memcpy(trailer, buf, hold);
	trailer[hold] = 0;
	if (hold != TRAILER_LEN || sscanf(trailer, "fill %" SCNu64, &count) != 1)
		return fail("no trailer at EOF after %" PRIu64 " bytes (the writer failed)", off);
	if (count != off)
		return fail("trailer counts %" PRIu64 " bytes, %" PRIu64 " arrived", count, off);
	*total = off;
	return 0;
}

/* ---- server ------------------------------------------------------------------------------- */

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void server_verdict(int err, const char *what)
{
	pthread_mutex_lock(&out_lock);
	if (err)
		printf("server not ok %s: %s\n", what, why);
	else
		printf("server ok %s%s%s\n", what, note[0] ? " # " : "", note);
	pthread_mutex_unlock(&out_lock);
}

static int server_echo(int fd)
{
	static __thread uint8_t buf[65536];

	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r ? fail("echo read: %s", strerror(errno)) : 0;
		if (write_all(fd, buf, (size_t)r))
			return -1;
	}
}

/* server_stream: reads in random splits, checks, echoes in random splits; trailer after EOF. */
static int server_stream(int fd, uint64_t size, uint64_t seed)
{
	static __thread uint8_t buf[CHUNK];
	char line[128];
	uint64_t off = 0;
	int bad = 0;

	for (;;) {
		ssize_t r = read(fd, buf, rng_size(CHUNK));
		size_t done = 0;

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return fail("read at %" PRIu64 ": %s", off, strerror(errno));
		if (r == 0)
			break;
		if (!bad && (off + (uint64_t)r > size || pat_check(seed, off, buf, (size_t)r)))
			bad = 1;
		while (done < (size_t)r) {
			size_t n = rng_size((size_t)r - done);

			if (write_all(fd, buf + done, n))
				return -1;
			done += n;
		}
		off += (uint64_t)r;
	}
	/* Written after the client's SHUT_WR: the half-closed direction must still carry it. */
	snprintf(line, sizeof(line), "end %" PRIu64 " %s\n", off,
		 !bad && off == size ? "ok" : "bad");
	if (write_all(fd, line, strlen(line)))
		return -1;
	if (bad || off != size)
		return fail("stream %" PRIu64 ": got %" PRIu64 " bytes%s%s", size, off,
			    bad ? ", " : "", bad ? why : "");
	return 0;
}

/* server_halfclose: sends 300 kB, shuts down its side, then the client's 100 kB must arrive. */
static int server_halfclose(int fd, uint64_t seed)
{
	static __thread uint8_t buf[65536];
	uint64_t off = 0;

	for (off = 0; off < 300000; off += sizeof(buf) / 2) {
		size_t n = 300000 - off < sizeof(buf) / 2 ? 300000 - off : sizeof(buf) / 2;

		pat_fill(seed, off, buf, n);
		if (write_all(fd, buf, n))
			return -1;
	}
	if (shutdown(fd, SHUT_WR) < 0)
		return fail("shutdown: %s", strerror(errno));
	for (off = 0;;) {
		ssize_t r;

		if (!wait_fd(fd, POLLIN, WAIT_MS))
			return fail("no data from the client after our EOF (%" PRIu64 " bytes)",
				    off);
		r = read(fd, buf, rng_size(sizeof(buf)));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return fail("read: %s", strerror(errno));
		if (r == 0)
			break;
		if (pat_check(seed + 1, off, buf, (size_t)r))
			return -1;
		off += (uint64_t)r;
	}
	if (off != 100000)
		return fail("got %" PRIu64 " of 100000 bytes after the half-close", off);
	return 0;
}

/*
 * unread_learn: the peer closed with bytes we sent still unread by it. We must learn within
 * WAIT_MS that bytes were lost -- a reset, ECONNRESET, as TCP gives, not a clean EOF -- and our
 * writes must start failing within WAIT_MS.
 */
static int unread_learn(int fd)
{
	static __thread uint8_t buf[65536];
	const char *read_gives;
	uint64_t end;
	ssize_t r;
	char ch;

	if (!wait_fd(fd, POLLIN, WAIT_MS))
		return fail("peer closed with unread data: no readiness within %d ms", WAIT_MS);
	r = read(fd, &ch, 1);
	if (r > 0)
		return fail("data from a peer that only closed");
	read_gives = r == 0 ? "EOF" : strerror(errno);
	if (r == 0 || errno != ECONNRESET)
		return fail("read after the peer's close with unread data: %s, not %s", read_gives,
			    strerror(ECONNRESET));
	if (set_nonblock(fd, 1))
		return fail("O_NONBLOCK: %s", strerror(errno));
	end = now_ms() + WAIT_MS;
	for (;;) {
		if (send(fd, buf, sizeof(buf), MSG_NOSIGNAL) < 0 && errno != EAGAIN &&
		    errno != EINTR)
			break;
		if (now_ms() > end)
			return fail("writes to a closed peer kept succeeding for %d ms", WAIT_MS);
		poll(NULL, 0, 1);
	}
	snprintf(note, sizeof(note), "read gives %s, writes fail with %s", read_gives,
		 strerror(errno));
	return 0;
}

/* server_shutwr: reads to EOF, says how much, then reports whatever still arrives in 500 ms. */
static int server_shutwr(int fd)
{
	uint8_t buf[4096];
	uint64_t got = 0;
	ssize_t late = 0;
	char line[64];

	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return fail("read: %s", strerror(errno));
		if (r == 0)
			break;
		got += (uint64_t)r;
	}
	snprintf(line, sizeof(line), "eof %" PRIu64 "\n", got);
	if (write_all(fd, line, strlen(line)))
		return -1;
	/* A negative wait: nothing may come after EOF. */
	if (wait_fd(fd, POLLIN, 500)) {
		late = read(fd, buf, sizeof(buf));
		if (late < 0)
			late = 0;
	}
	snprintf(line, sizeof(line), "late %zd\n", late);
	if (write_all(fd, line, strlen(line)))
		return -1;
	if (late > 0)
		return fail("%zd bytes arrived after EOF", late);
	return 0;
}

static int server_unread(int fd)
{
	/* The client's payload follows the command line: close once it is there, unread. */
	if (!wait_fd(fd, POLLIN, WAIT_MS))
		return fail("no payload from the client");
	close(fd);
	return 0;
}

/* server_unread_full: as server_unread, but only after a second, when the client's writes have
 * filled everything the connection can hold (EAGAIN). */
static int server_unread_full(int fd)
{
	if (!wait_fd(fd, POLLIN, WAIT_MS))
		return fail("no payload from the client");
	poll(NULL, 0, 1000);
	close(fd);
	return 0;
}

/* server_reset_blocked: the client's extra bytes stay unread; once it waits in read(), close:
 * a reset reaches a reader that is blocked (with a receive timeout). */
static int server_reset_blocked(int fd)
{
	if (!wait_fd(fd, POLLIN, WAIT_MS))
		return fail("no payload from the client");
	poll(NULL, 0, 300);
	close(fd);
	return 0;
}

static int server_unread_peer(int fd)
{
	uint8_t buf[20000];

	pat_fill(7, 0, buf, sizeof(buf));
	if (write_all(fd, buf, sizeof(buf)))
		return -1;
	return unread_learn(fd);
}

/* server_unread_held: writes 20000 bytes, then reads to the client's end: an EOF, never a reset
 * (the client closes with those bytes unread while another number or process still holds the
 * connection, and that one reads them: not the last close, so no reset). */
static int server_unread_held(int fd)
{
	uint8_t buf[20000];
	ssize_t r;

	pat_fill(11, 0, buf, sizeof(buf));
	if (write_all(fd, buf, sizeof(buf)))
		return -1;
	while ((r = read(fd, buf, sizeof(buf))) > 0 || (r < 0 && errno == EINTR))
		;
	if (r < 0)
		return fail("the connection ended with %s: a close that was not the last reset it",
			    strerror(errno));
	return 0;
}

static void *server_conn(void *arg)
{
	int fd = (int)(intptr_t)arg, err, rounds;
	char line[256], mode[16], what[300];
	struct timeval tv = {.tv_sec = 30};
	uint64_t a, b;

	rng_state = mix64((uint64_t)fd ^ (uint64_t)now_ms());
	why[0] = note[0] = 0;
	/* Blocking calls give up eventually: a stuck client never pins a thread forever. */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (read_line(fd, line, sizeof(line))) {
		server_verdict(-1, "command");
		close(fd);
		return NULL;
	}
	snprintf(what, sizeof(what), "%s", line);
	if (!strcmp(line, "echo")) {
		/* Churn and hold: no verdict line per connection (there are thousands). */
		if (server_echo(fd))
			server_verdict(-1, what);
		close(fd);
		return NULL;
	}
	if (sscanf(line, "stream %" SCNu64 " %" SCNu64, &a, &b) == 2) {
		err = server_stream(fd, a, b);
	} else if (sscanf(line, "halfclose %" SCNu64, &a) == 1) {
		err = server_halfclose(fd, a);
	} else if (!strcmp(line, "unread")) {
		err = server_unread(fd);
		fd = -1; /* closed by server_unread: that close is the case */
	} else if (!strcmp(line, "reset_blocked")) {
		err = server_reset_blocked(fd);
		fd = -1;
	} else if (!strcmp(line, "unread_full")) {
		err = server_unread_full(fd);
		fd = -1;
	} else if (!strcmp(line, "shutwr")) {
		err = server_shutwr(fd);
	} else if (!strcmp(line, "unread_peer")) {
		err = server_unread_peer(fd);
	} else if (!strcmp(line, "unread_held")) {
		err = server_unread_held(fd);
	} else if (sscanf(line, "ready %15s %d %" SCNu64, mode, &rounds, &a) == 3) {
		err = ready_run(fd, !strcmp(mode, "poll") ? W_POLL
				    : !strcmp(mode, "lt") ? W_LT : W_ET, rounds, a, 0);
	} else if (sscanf(line, "wfill %" SCNu64, &a) == 1) {
		err = fill_send(fd, a, &a, &b);
	} else if (sscanf(line, "rfill %" SCNu64, &a) == 1) {
		char reply[64];

		err = fill_drain(fd, a, &b);
		/* The verdict travels back over the direction the client did not shut down. */
		snprintf(reply, sizeof(reply), err ? "bad\n" : "ok %" PRIu64 "\n", b);
		write_all(fd, reply, strlen(reply));
	} else {
		err = fail("unknown command");
	}
	server_verdict(err, what);
	if (fd >= 0)
		close(fd);
	return NULL;
}

static int server_main(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	pthread_attr_t attr;
	int lfd, one = 1;

	signal(SIGPIPE, SIG_IGN);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 1024) < 0) {
		fprintf(stderr, "samehost_check: listen on %d: %s\n", port, strerror(errno));
		return 1;
	}
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	printf("listening %d\n", port);
	for (;;) {
		pthread_t t;
		int fd = accept(lfd, NULL, NULL);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			fprintf(stderr, "samehost_check: accept: %s\n", strerror(errno));
			return 1;
		}
		if (pthread_create(&t, &attr, server_conn, (void *)(intptr_t)fd))
			server_conn((void *)(intptr_t)fd);
	}
}

/* ---- client ------------------------------------------------------------------------------- */

static struct sockaddr_in server_addr;

static int client_open(const char *cmd)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	char line[256];

	if (fd < 0)
		return fail("socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&server_addr, sizeof(server_addr)) < 0) {
		fail("connect: %s", strerror(errno));
		close(fd);
		return -1;
	}
	snprintf(line, sizeof(line), "%s\n", cmd);
	if (write_all(fd, line, strlen(line))) {
		close(fd);
		return -1;
	}
	return fd;
}

/* client_stream_one: SIZE bytes echoed back; then our SHUT_WR, the server's trailer, EOF. */
static int client_stream_one(uint64_t size, uint64_t seed)
{
	static uint8_t buf[CHUNK];
	uint64_t sent = 0, got = 0, last = now_ms();
	char cmd[96], trailer[64], want[64];
	size_t tlen = 0;
	int fd, eof = 0, err = 0;

	snprintf(cmd, sizeof(cmd), "stream %" PRIu64 " %" PRIu64, size, seed);
	fd = client_open(cmd);
	if (fd < 0)
		return -1;
	set_nonblock(fd, 1);
	while (!eof) {
		struct pollfd p = {.fd = fd, .events = POLLIN | (sent < size ? POLLOUT : 0)};
		int r = poll(&p, 1, 200);

		if (r < 0 && errno != EINTR) {
			err = fail("poll: %s", strerror(errno));
			break;
		}
		if (now_ms() - last > WAIT_MS) {
			err = fail("no progress for %d ms: sent %" PRIu64 ", got back %" PRIu64
				   " of %" PRIu64, WAIT_MS, sent, got, size);
			break;
		}
		if (r <= 0)
			continue;
		if ((p.revents & POLLOUT) && sent < size) {
			size_t n = rng_size(size - sent < CHUNK ? size - sent : CHUNK);
			ssize_t w;

			pat_fill(seed, sent, buf, n);
			w = send(fd, buf, n, MSG_NOSIGNAL);
			if (w < 0 && errno != EAGAIN && errno != EINTR) {
				err = fail("send at %" PRIu64 ": %s", sent, strerror(errno));
				break;
			}
			if (w > 0) {
				sent += (uint64_t)w;
				last = now_ms();
				if (sent == size && shutdown(fd, SHUT_WR) < 0) {
					err = fail("shutdown: %s", strerror(errno));
					break;
				}
			}
		}
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = read(fd, buf, rng_size(CHUNK));
			size_t echo;

			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (n < 0) {
				err = fail("read at %" PRIu64 ": %s", got, strerror(errno));
				break;
			}
			if (n == 0) {
				eof = 1;
				break;
			}
			last = now_ms();
			/* The first SIZE bytes back are the echo, the rest is the trailer. */
			echo = 0;
			if (got < size)
				echo = size - got < (uint64_t)n ? (size_t)(size - got) : (size_t)n;
			if (echo && pat_check(seed, got, buf, echo)) {
				err = fail("echo: %.400s", why);
				break;
			}
			got += echo;
			if ((size_t)n > echo) {
				if (tlen + (size_t)n - echo >= sizeof(trailer)) {
					err = fail("too much after the echo");
					break;
				}
				memcpy(trailer + tlen, buf + echo, (size_t)n - echo);
				tlen += (size_t)n - echo;
			}
		}
	}
	close(fd);
	if (err)
		return err;
	trailer[tlen] = 0;
	snprintf(want, sizeof(want), "end %" PRIu64 " ok\n", size);
	if (got != size || strcmp(trailer, want))
		return fail("%" PRIu64 " bytes: got back %" PRIu64
			    ", then \"%.*s\" (want \"%.*s\")", size, got,
			    (int)strcspn(trailer, "\n"), trailer, (int)strcspn(want, "\n"), want);
	return 0;
}

static int case_stream(uint64_t seed)
{
	static const uint64_t sizes[] = {1, 2, 3, 100, 1448, 4096, 65535, 65536, 65537,
					 1 << 20, 16 << 20};
	size_t i;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		if (client_stream_one(sizes[i], seed + i))
			return -1;
	snprintf(note, sizeof(note), "%zu sizes 1 B .. 16 MiB echoed intact", i);
	return 0;
}

static int case_halfclose(uint64_t seed)
{
	static uint8_t buf[65536];
	uint64_t off = 0;
	char cmd[64];
	int fd, err = 0;

	snprintf(cmd, sizeof(cmd), "halfclose %" PRIu64, seed);
	fd = client_open(cmd);
	if (fd < 0)
		return -1;
	for (;;) {
		ssize_t r;

		if (!wait_fd(fd, POLLIN, WAIT_MS)) {
			err = fail("no data or EOF within %d ms (%" PRIu64 " bytes)", WAIT_MS, off);
			goto out;
		}
		r = read(fd, buf, rng_size(sizeof(buf)));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			err = fail("read: %s", strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		if (pat_check(seed, off, buf, (size_t)r)) {
			err = -1;
			goto out;
		}
		off += (uint64_t)r;
	}
	if (off != 300000) {
		err = fail("EOF after %" PRIu64 " of 300000 bytes", off);
		goto out;
	}
	/* The server shut down its side; ours still carries data to it (it checks and reports). */
	for (off = 0; off < 100000;) {
		size_t n = rng_size(100000 - off < sizeof(buf) ? 100000 - off : sizeof(buf));

		pat_fill(seed + 1, off, buf, n);
		if (write_all(fd, buf, n)) {
			err = -1;
			goto out;
		}
		off += n;
	}
	shutdown(fd, SHUT_WR);
	snprintf(note, sizeof(note),
		 "300000 bytes then EOF; 100000 bytes back after it (server checks)");
out:
	close(fd);
	return err;
}

static int case_shutwr_send(void)
{
	char buf[1000], line[64];
	const char *res;
	int fd, r, send_errno, err = 0;

	fd = client_open("shutwr");
	if (fd < 0)
		return -1;
	memset(buf, 'q', sizeof(buf));
	if (write_all(fd, buf, sizeof(buf)) || shutdown(fd, SHUT_WR) < 0 ||
	    read_line(fd, line, sizeof(line))) {
		err = why[0] ? -1 : fail("shutdown: %s", strerror(errno));
		goto out;
	}
	if (strcmp(line, "eof 1000")) {
		err = fail("server said \"%s\" (want \"eof 1000\")", line);
		goto out;
	}
	r = send(fd, "x", 1, MSG_NOSIGNAL);
	send_errno = r < 0 ? errno : 0;
	res = r < 0 ? strerror(send_errno) : "sent";
	if (read_line(fd, line, sizeof(line))) {
		err = -1;
		goto out;
	}
	if (send_errno != EPIPE || strcmp(line, "late 0"))
		err = fail("send after SHUT_WR: %s (want EPIPE); server: \"%s\" (want \"late 0\")",
			   res, line);
out:
	close(fd);
	return err;
}

static int case_unread(void)
{
	uint8_t buf[20000];
	int fd, err;

	fd = client_open("unread");
	if (fd < 0)
		return -1;
	pat_fill(3, 0, buf, sizeof(buf));
	err = write_all(fd, buf, sizeof(buf)) ?: unread_learn(fd);
	close(fd);
	return err;
}

/* unread_full: the server closes with everything the client could queue unread (its window used
 * up: on the fast path, that direction has gone the TCP way): the client must still learn at
 * once, by a reset, and its writes must fail. */
static int case_unread_full(void)
{
	static uint8_t buf[65536];
	uint64_t queued = 0, end = now_ms() + 800;
	int fd = client_open("unread_full"), err;

	if (fd < 0)
		return -1;
	if (set_nonblock(fd, 1)) {
		close(fd);
		return fail("O_NONBLOCK: %s", strerror(errno));
	}
	pat_fill(5, 0, buf, sizeof(buf));
	while (now_ms() < end) {
		ssize_t w = send(fd, buf, sizeof(buf), MSG_NOSIGNAL);

		if (w > 0)
			queued += (uint64_t)w;
		else if (errno == EAGAIN)
			break;
		else {
			close(fd);
			return fail("send before the server's close: %s", strerror(errno));
		}
	}
	if (now_ms() >= end) {
		close(fd);
		return fail("%" PRIu64 " bytes queued in 800 ms and no EAGAIN", queued);
	}
	if (set_nonblock(fd, 0)) {
		close(fd);
		return fail("O_NONBLOCK: %s", strerror(errno));
	}
	err = unread_learn(fd);
	if (!err) {
		char learnt[sizeof(note)];

		snprintf(learnt, sizeof(learnt), "%s", note);
		snprintf(note, sizeof(note), "%" PRIu64 " bytes queued to EAGAIN, then %.200s", queued,
			 learnt);
	}
	close(fd);
	return err;
}

static int case_unread_peer(void)
{
	int fd = client_open("unread_peer");

	if (fd < 0)
		return -1;
	/* Close once the server's bytes are here, without reading them: the server judges. */
	if (!wait_fd(fd, POLLIN, WAIT_MS)) {
		close(fd);
		return fail("no data from the server within %d ms", WAIT_MS);
	}
	close(fd);
	snprintf(note, sizeof(note), "closed with unread data (the server reports what it saw)");
	return 0;
}

/*
 * reset_blocked: a blocking read with a receive timeout (10 s) is waiting when the server closes
 * with our bytes unread: it must end at once with ECONNRESET, as TCP's does -- not EAGAIN, which
 * the app would take for its timeout.
 */
static int case_reset_blocked(void)
{
	struct timeval tv = {.tv_sec = 10};
	int fd = client_open("reset_blocked");
	uint64_t t0;
	ssize_t r;
	char ch;

	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    write_all(fd, "unread bytes", 12)) {
		close(fd);
		return fail("setup: %s", strerror(errno));
	}
	t0 = now_ms();
	r = read(fd, &ch, 1);
	close(fd);
	if (r >= 0)
		return fail("read gave %s", r ? "data" : "EOF");
	if (errno != ECONNRESET)
		return fail("read gave %s after %" PRIu64 " ms, not %s", strerror(errno),
			    now_ms() - t0, strerror(ECONNRESET));
	snprintf(note, sizeof(note), "read gives %s after %" PRIu64 " ms", strerror(errno),
		 now_ms() - t0);
	return 0;
}

/* Reads the server's 20000 bytes of unread_held from fd, exact. */
static int unread_held_read(int fd)
{
	uint8_t buf[20000];
	size_t got = 0;

	while (got < sizeof(buf)) {
		ssize_t r = read(fd, buf + got, sizeof(buf) - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return fail("after %zu of %zu bytes: %s", got, sizeof(buf),
				    r ? strerror(errno) : "EOF");
		got += (size_t)r;
	}
	return pat_check(11, 0, buf, sizeof(buf)) ? fail("wrong bytes") : 0;
}

/* The unread_held connection once the server's bytes are here (unread), or -1. */
static int unread_held_open(void)
{
	int fd = client_open("unread_held");

	if (fd >= 0 && !wait_fd(fd, POLLIN, WAIT_MS)) {
		close(fd);
		return fail("no data from the server within %d ms", WAIT_MS);
	}
	return fd;
}

static int dup_of(int fd)
{
	return dup(fd);
}

/* Passes fd over a socketpair to ourselves (SCM_RIGHTS): the descriptor received, or -1. */
static int pass_to_self(int fd)
{
	union {
		struct cmsghdr c;
		char buf[CMSG_SPACE(sizeof(int))];
	} u = {0};
	struct iovec iov = {.iov_base = "x", .iov_len = 1};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			   .msg_controllen = sizeof(u.buf)};
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	int sp[2], got = -1;
	char byte;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
		return -1;
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	if (sendmsg(sp[0], &m, 0) == 1) {
		iov.iov_base = &byte;
		m.msg_controllen = sizeof(u.buf);
		if (recvmsg(sp[1], &m, 0) == 1 && (c = CMSG_FIRSTHDR(&m)) &&
		    c->cmsg_type == SCM_RIGHTS)
			memcpy(&got, CMSG_DATA(c), sizeof(int));
	}
	close(sp[0]);
	close(sp[1]);
	return got;
}

/*
 * unread_dup, unread_passed, unread_fork: close one reference with the server's bytes unread
 * while another (a dup, a copy passed with SCM_RIGHTS, or a child process) still holds the
 * connection: that must not reset it -- the other reads every byte and the server sees a clean
 * end. Here the other reference is copy(fd), in this process.
 */
static int unread_held_by_copy(int (*copy)(int fd), const char *what)
{
	int fd = unread_held_open(), d, err;

	if (fd < 0)
		return -1;
	d = copy(fd);
	close(fd);
	if (d < 0)
		return fail("%s: %s", what, strerror(errno));
	err = unread_held_read(d);
	close(d);
	if (!err)
		snprintf(note, sizeof(note), "closed with unread data, the %s read it all", what);
	return err;
}

static int case_unread_dup(void)
{
	return unread_held_by_copy(dup_of, "dup");
}

static int case_unread_passed(void)
{
	return unread_held_by_copy(pass_to_self, "copy passed with SCM_RIGHTS");
}

static int case_unread_fork(void)
{
	int fd = unread_held_open(), status;
	pid_t pid;

	if (fd < 0)
		return -1;
	pid = fork();
	if (pid < 0) {
		close(fd);
		return fail("fork: %s", strerror(errno));
	}
	if (pid == 0) {
		/* The child reads once the parent has closed its reference with the bytes unread. */
		poll(NULL, 0, 100);
		if (unread_held_read(fd)) {
			printf("  child: %s\n", why);
			fflush(stdout);
			_exit(1);
		}
		close(fd);
		_exit(0);
	}
	close(fd);
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
		return fail("the child that held the connection could not read it all");
	snprintf(note, sizeof(note), "the parent closed with unread data, the child read it all");
	return 0;
}

static int case_ready(enum wait_mode mode, uint64_t seed)
{
	static const char *names[] = {"poll", "lt", "et"};
	char cmd[96];
	int fd, err;

	snprintf(cmd, sizeof(cmd), "ready %s %d %" PRIu64, names[mode], 200, seed);
	fd = client_open(cmd);
	if (fd < 0)
		return -1;
	err = ready_run(fd, mode, 200, seed, 1);
	close(fd);
	return err;
}

static int case_wfill(uint64_t seed)
{
	uint64_t total = 0;
	char cmd[64];
	int fd, err;

	snprintf(cmd, sizeof(cmd), "wfill %" PRIu64, seed);
	fd = client_open(cmd);
	if (fd < 0)
		return -1;
	err = fill_drain(fd, seed, &total);
	close(fd);
	if (!err)
		snprintf(note, sizeof(note),
			 "server filled %" PRIu64 " bytes to EAGAIN, got EPOLLOUT", total);
	return err;
}

static int case_rfill(uint64_t seed)
{
	uint64_t filled = 0, waited = 0, got;
	char cmd[64], reply[64];
	int fd, err;

	snprintf(cmd, sizeof(cmd), "rfill %" PRIu64, seed);
	fd = client_open(cmd);
	if (fd < 0)
		return -1;
	err = fill_send(fd, seed, &filled, &waited);
	if (!err) {
		set_nonblock(fd, 1);
		err = read_line(fd, reply, sizeof(reply));
	}
	close(fd);
	if (err)
		return err;
	if (sscanf(reply, "ok %" SCNu64, &got) != 1 || got != filled)
		return fail("filled %" PRIu64 " bytes, server says \"%s\"", filled, reply);
	snprintf(note, sizeof(note), "filled %" PRIu64 " bytes to EAGAIN, EPOLLOUT after %" PRIu64
		 " ms", filled, waited);
	return 0;
}

static const char *const all_cases[] = {
	"stream", "halfclose", "shutwr_send", "unread", "unread_peer", "unread_full", "unread_dup",
	"unread_passed", "unread_fork", "reset_blocked",
	"ready_poll", "ready_lt", "ready_et", "wfill", "rfill",
};

static int client_case(const char *name, uint64_t seed)
{
	if (!strcmp(name, "stream"))
		return case_stream(seed);
	if (!strcmp(name, "halfclose"))
		return case_halfclose(seed);
	if (!strcmp(name, "shutwr_send"))
		return case_shutwr_send();
	if (!strcmp(name, "unread"))
		return case_unread();
	if (!strcmp(name, "unread_peer"))
		return case_unread_peer();
	if (!strcmp(name, "unread_full"))
		return case_unread_full();
	if (!strcmp(name, "unread_dup"))
		return case_unread_dup();
	if (!strcmp(name, "reset_blocked"))
		return case_reset_blocked();
	if (!strcmp(name, "unread_passed"))
		return case_unread_passed();
	if (!strcmp(name, "unread_fork"))
		return case_unread_fork();
	if (!strcmp(name, "ready_poll"))
		return case_ready(W_POLL, seed);
	if (!strcmp(name, "ready_lt"))
		return case_ready(W_LT, seed);
	if (!strcmp(name, "ready_et"))
		return case_ready(W_ET, seed);
	if (!strcmp(name, "wfill"))
		return case_wfill(seed);
	if (!strcmp(name, "rfill"))
		return case_rfill(seed);
	return fail("unknown case");
}

static void watchdog(int sig)
{
	static const char msg[] = "not ok: hung (watchdog)\n";

	(void)sig;
	if (write(STDOUT_FILENO, msg, sizeof(msg) - 1) < 0)
		_exit(3);
	_exit(2);
}

static int parse_addr(const char *host, const char *port)
{
	server_addr.sin_family = AF_INET;
	server_addr.sin_port = htons((uint16_t)atoi(port));
	return inet_pton(AF_INET, host, &server_addr.sin_addr) == 1 ? 0 : -1;
}

static int client_main(uint64_t seed, char *list)
{
	int failed = 0;
	char *c, *save = NULL;

	if (!strcmp(list, "all")) {
		size_t i;

		for (i = 0; i < sizeof(all_cases) / sizeof(all_cases[0]); i++) {
			char one[32];

			snprintf(one, sizeof(one), "%s", all_cases[i]);
			failed |= client_main(seed + i * 1000, one);
		}
		return failed;
	}
	for (c = strtok_r(list, ",", &save); c; c = strtok_r(NULL, ",", &save)) {
		why[0] = note[0] = 0;
		rng_state = mix64(seed);
		if (client_case(c, seed)) {
			printf("not ok %s: %s\n", c, why);
			failed = 1;
		} else {
			printf("ok %s%s%s\n", c, note[0] ? " # " : "", note);
		}
	}
	return failed;
}

static int churn_main(long n)
{
	uint8_t out[32], in[32];
	long i, failed = 0;
	uint64_t t0 = now_ms();
	char first[600] = "";

	for (i = 0; i < n; i++) {
		int fd = client_open("echo");
		ssize_t got = 0;

		if (fd >= 0) {
			pat_fill((uint64_t)i, 0, out, sizeof(out));
			if (!write_all(fd, out, sizeof(out))) {
				while (got < (ssize_t)sizeof(in) && wait_fd(fd, POLLIN, WAIT_MS)) {
					ssize_t r = read(fd, in + got, sizeof(in) - (size_t)got);

					if (r <= 0)
						break;
					got += r;
				}
				if (got != sizeof(in) || memcmp(in, out, sizeof(in)))
					fail("connection %ld: echoed %zd of %zu bytes%s", i, got,
					     sizeof(in), got == sizeof(in) ? " (wrong)" : "");
				else
					why[0] = 0;
			}
			close(fd);
		}
		if (fd < 0 || why[0]) {
			if (!failed++)
				snprintf(first, sizeof(first), "connection %ld: %s", i, why);
			why[0] = 0;
		}
	}
	printf("churn %ld connections %.3f seconds %ld failed%s%s\n", n, (now_ms() - t0) / 1000.0,
	       failed, failed ? ": first: " : "", first);
	return failed ? 1 : 0;
}

static int usage(void)
{
	fprintf(stderr, "usage: samehost_check server PORT\n"
			"       samehost_check client [--seed S] HOST PORT CASE[,CASE...]|all\n"
			"       samehost_check churn HOST PORT N\n");
	return 2;
}

int main(int argc, char **argv)
{
	uint64_t seed = mix64((uint64_t)time(NULL) ^ (uint64_t)getpid());

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && !strcmp(argv[1], "server"))
		return server_main(atoi(argv[2]));
	signal(SIGPIPE, SIG_IGN);
	signal(SIGALRM, watchdog);
	alarm(WATCHDOG_S);
	if (argc == 5 && !strcmp(argv[1], "churn")) {
		if (parse_addr(argv[2], argv[3]))
			return usage();
		return churn_main(atol(argv[4]));
	}
	if (argc >= 2 && !strcmp(argv[1], "client")) {
		argc--;
		argv++;
		if (argc >= 3 && !strcmp(argv[1], "--seed")) {
			seed = strtoull(argv[2], NULL, 0);
			argc -= 2;
			argv += 2;
		}
		if (argc != 4 || parse_addr(argv[1], argv[2]))
			return usage();
		printf("# seed %" PRIu64 "\n", seed);
		return client_main(seed, argv[3]);
	}
	return usage();
}
