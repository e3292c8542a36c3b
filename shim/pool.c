// SPDX-License-Identifier: MIT
/*
 * The process's pool of governed host sockets: pre-made by the router (its cgroup, so the kernel
 * governs them wherever they go), taken by connect() without asking anyone, and refilled ahead of
 * need over a connection of the pool's own, whose reply any thread may collect.
 *
 * The pool is an array of slots, each an atomic descriptor (0 empty): taking is an exchange,
 * returning a compare-and-swap, so connect() never waits on another thread while the pool has
 * sockets. Only the refill takes a lock: with trylock ahead of need (a thread that finds it busy
 * leaves the refill to the thread holding it), with a bounded wait when the pool is empty.
 */
#include <errno.h>
#include <sched.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/un.h>

#include "msg.h"
#include "shim.h"

#define POOL_SLOTS    (2 * SLIM_POOL_BATCH)
#define POOL_FIRST    4 /* a short-lived process (curl) costs the router a few sockets only */
/* The router makes a batch in well under a millisecond; one that takes this long is stuck
 * (SIGSTOP, overload): the connect takes the overlay, and the pool asks again a while later. */
#define POOL_WAIT_MS  500
#define POOL_RETRY_NS (1000 * 1000000LL)

/* Each slot holds fd + 1, so the zero-initialized array is empty even before pool_init runs
 * (another library's constructor may connect before ours). */
static atomic_int pool_slot[POOL_SLOTS];
static atomic_int pool_count;
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
/* Under pool_lock: */
static int pool_link = -1;
static pid_t pool_link_pid;
static pid_t pool_pid; /* ours: set at load and in a forked child, so no getpid() per connect */
static bool pool_inflight;
static bool pool_link_lost; /* the app took the number: never read, write or close it */
static uint32_t pool_next_id;
static long long pool_retry_after;
static long long pool_refused_until; /* the router said no (not a pod, or rate): not before */
/* The next batch: it doubles with every refill up to SLIM_POOL_BATCH, so a process that
 * connects a lot soon has a full pool, one that connects once made a few sockets only. Refill
 * when half of the next batch is left: with batches of 32 that is 16 connects of headroom for
 * the router's answer, and at most 48 sockets held. */
static atomic_uint pool_batch = POOL_FIRST;

static long long pool_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void pool_link_close(void)
{
	if (pool_link >= 0 && !pool_link_lost)
		REAL(close)(pool_link);
	pool_link = -1;
	pool_link_lost = false;
	pool_inflight = false;
}

void pool_private_lost(int fd)
{
	/* The app closed or dup2()ed over our connection's number: it is not ours any more. */
	if (fd == pool_link)
		pool_link_lost = true;
}

static int pool_link_open(void)
{
	int fd;

	if (pool_link >= 0 && pool_link_pid == pool_pid)
		return 0;
	pool_link_close();
	if (pool_retry_after && pool_now_ns() < pool_retry_after)
		return -ECONNREFUSED;
	fd = router_socket_connect();
	if (fd < 0) {
		pool_retry_after = pool_now_ns() + POOL_RETRY_NS;
		return fd;
	}
	pool_link = fd;
	pool_link_pid = pool_pid;
	fdtab_set_private(pool_link);
	pool_retry_after = 0;
	return 0;
}

/* The fd number no longer holds a pool socket of ours (taken, or dropped). */
static void pool_untrack(int fd)
{
	struct fd_entry *e = fdtab_get(fd);

	if (e && e->kind == FD_POOL)
		e->kind = FD_UNKNOWN;
}

/* Puts fd in an empty slot. false when the pool is full. */
static bool pool_store(int fd)
{
	for (int i = 0; i < POOL_SLOTS; i++) {
		int empty = 0;

		if (atomic_compare_exchange_strong(&pool_slot[i], &empty, fd + 1)) {
			struct fd_entry *e = fdtab_slot(fd);

			if (e)
				e->kind = FD_POOL;
			atomic_fetch_add(&pool_count, 1);
			return true;
		}
	}
	return false;
}

/*
 * Where the shim's own descriptors live (pool sockets, router connections): near the top of the
 * descriptor range, below a bound, so the app's own descriptors keep the low numbers it expects
 * (ae-style loops size their tables by the connections they plan, select() needs numbers under
 * FD_SETSIZE, a dup2() to a number it computed does not land on ours) and the kernel's fd table
 * does not grow for us beyond a few pages.
 */
int shim_fd_base(void)
{
	static atomic_int base;
	int b = atomic_load(&base);

	if (!b) {
		struct rlimit rl;
		rlim_t top = 4096;

		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < top)
			top = rl.rlim_cur;
		b = (int)top - POOL_SLOTS - 16;
		if (b < 64)
			b = 64;
		atomic_store(&base, b);
	}
	return b;
}

/* Moves a descriptor of the shim's up to its range (it was made at the lowest free number). */
int shim_fd_relocate(int fd)
{
	int hi = REAL(fcntl)(fd, F_DUPFD_CLOEXEC, shim_fd_base());

	if (hi < 0)
		return fd;
	REAL(close)(fd);
	return hi;
}

/* Odd while a batch sits at low numbers (pool_collect); each window adds 2. */
static atomic_uint fd_window;
static __thread bool fd_window_mine;

unsigned fd_window_gen(void)
{
	return atomic_load(&fd_window);
}

int shim_fd_lowest(int fd, unsigned gen_before)
{
	int low, fdfl;

	if (fd < 0 || fd_window_mine ||
	    (!(gen_before & 1) && atomic_load(&fd_window) == gen_before))
		return fd; /* no batch came in while the app's descriptor was made */
	/* The batch is moved up in microseconds, unless its thread is preempted (a loaded host:
	 * milliseconds) or stopped (SIGSTOP): 50 ms at most, then the number is merely not the
	 * lowest. */
	if (atomic_load(&fd_window) & 1) {
		long long until = pool_now_ns() + 50 * 1000000LL;

		while ((atomic_load(&fd_window) & 1) && pool_now_ns() < until)
			sched_yield();
	}
	fdfl = REAL(fcntl)(fd, F_GETFD);
	if (fdfl < 0)
		return fd;
	low = REAL(fcntl)(fd, (fdfl & FD_CLOEXEC) ? F_DUPFD_CLOEXEC : F_DUPFD, 0);
	if (low < 0)
		return fd;
	if (low > fd) {
		REAL(close)(low);
		return fd;
	}
	REAL(close)(fd);
	return low;
}

/* The app ran out of descriptors: give it back the ones the pool holds. Returns how many. */
int pool_drain(void)
{
	int n = 0;

	for (int i = 0; i < POOL_SLOTS; i++) {
		int fd = atomic_exchange(&pool_slot[i], 0) - 1;

		if (fd >= 0) {
			atomic_fetch_sub(&pool_count, 1);
			pool_untrack(fd);
			REAL(close)(fd);
			n++;
		}
	}
	return n;
}

static void pool_window_close(void)
{
	fd_window_mine = false;
	atomic_fetch_add(&fd_window, 1); /* even again */
}

/* Collects the router's answer to the refill in flight: 0, -EAGAIN (not yet), or -errno. */
static int pool_collect(int wait_ms)
{
	uint8_t buf[256];
	struct slim_pool_rep rep;
	int fds[SLIM_POOL_BATCH];
	unsigned nfds;
	ssize_t n;

	if (wait_ms) {
		struct pollfd p = {.fd = pool_link, .events = POLLIN};

		if (REAL(poll)(&p, 1, wait_ms) <= 0)
			return -ETIMEDOUT;
	}
	atomic_fetch_add(&fd_window, 1); /* odd: a batch may take low numbers */
	fd_window_mine = true;
	n = slim_msg_recv_fds(pool_link, buf, sizeof(buf), fds, SLIM_POOL_BATCH, &nfds,
			      MSG_DONTWAIT);
	if (n == -EAGAIN) {
		pool_window_close();
		return -EAGAIN;
	}
	pool_inflight = false;
	if (n <= 0 || slim_msg_check_reply(buf, (size_t)n, SLIM_MSG_POOL_REP, pool_next_id) < 0) {
		while (nfds)
			REAL(close)(fds[--nfds]);
		pool_window_close();
		return n < 0 ? (int)n : -EBADMSG;
	}
	memcpy(&rep, buf, sizeof(rep));
	/* Not a registered pod, no governance, or asking too fast: ask again later, not now. */
	if (rep.action != SLIM_ACT_FD || !nfds)
		pool_refused_until = pool_now_ns() + POOL_RETRY_NS;
	for (unsigned i = 0; i < nfds; i++) {
		int fd = shim_fd_relocate(fds[i]);

		if (!pool_store(fd))
			REAL(close)(fd);
	}
	pool_window_close();
	return 0;
}

/* Asks for a batch (does not wait for it). */
static int pool_request(void)
{
	struct slim_pool_req req = {
		.hdr = {.type = SLIM_MSG_POOL_REQ, .len = sizeof(req), .id = ++pool_next_id},
		.count = atomic_load(&pool_batch),
	};
	int err = pool_link_open();

	if (err < 0)
		return err;
	err = slim_msg_send(pool_link, &req, sizeof(req), -1);
	if (err < 0) {
		pool_link_close();
		return err;
	}
	pool_inflight = true;
	if (req.count < SLIM_POOL_BATCH)
		atomic_store(&pool_batch, req.count * 2);
	return 0;
}

/*
 * Keeps the pool ahead of need: asks for a batch when it runs low, and collects an answer that
 * has arrived. With wait (the pool is empty), waits for the answer, and for a thread already
 * refilling; never when this thread itself is refilling (a signal handler's connect).
 * Returns false when waiting for more is pointless (refused, timed out, no router).
 */
static bool pool_refill(bool wait)
{
	static __thread bool refilling;
	int err = 0;

	if (refilling || (pool_refused_until && pool_now_ns() < pool_refused_until))
		return false;
	if (wait) {
		struct timespec until;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += POOL_WAIT_MS / 1000;
		until.tv_nsec += (POOL_WAIT_MS % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		if (pthread_mutex_timedlock(&pool_lock, &until) != 0)
			return false;
	} else if (pthread_mutex_trylock(&pool_lock) != 0) {
		return true;
	}
	refilling = true;
	if (pool_link >= 0 && (pool_link_pid != pool_pid || pool_link_lost))
		pool_link_close(); /* the app took it */
	if (pool_inflight && (err = pool_collect(0)) == -EAGAIN)
		err = 0; /* not there yet */
	/* Another thread may have refilled while we waited for the lock. */
	if (wait && atomic_load(&pool_count) > 0)
		wait = false;
	if (!pool_inflight && atomic_load(&pool_count) <= (int)atomic_load(&pool_batch) / 2)
		err = pool_request();
	if (wait && pool_inflight && err >= 0) {
		err = pool_collect(POOL_WAIT_MS);
		if (err == -ETIMEDOUT) {
			pool_link_close(); /* a late answer must not be mistaken for the next one */
			pool_retry_after = pool_now_ns() + POOL_RETRY_NS;
		}
	}
	if (err < 0 && err != -EAGAIN)
		shim_log("pool refill: %s", strerror(-err));
	refilling = false;
	pthread_mutex_unlock(&pool_lock);
	return err >= 0 || err == -EAGAIN;
}

/*
 * A burst of threads (200 connecting at once) shares each batch that arrives: a thread whose
 * batch the others emptied waits for the next one, as long as batches keep coming, rather than
 * leaving slim after its second look (at most one refill's wait, POOL_WAIT_MS, in all).
 */
#define POOL_TAKE_ROUNDS 16

int pool_take(void)
{
	static atomic_uint hint;
	long long deadline = 0;

	for (int round = 0; round < POOL_TAKE_ROUNDS; round++) {
		unsigned start = atomic_fetch_add(&hint, 1);

		for (int i = 0; i < POOL_SLOTS; i++) {
			int fd = atomic_exchange(&pool_slot[(start + i) % POOL_SLOTS], 0) - 1;

			if (fd < 0)
				continue;
			atomic_fetch_sub(&pool_count, 1);
			pool_untrack(fd);
			/* Ask early, and take an answer as soon as it is there. */
			if (pool_inflight || atomic_load(&pool_count) <= (int)atomic_load(&pool_batch) / 2)
				pool_refill(false);
			return fd;
		}
		/* Never more than one refill's wait in all: then the overlay. */
		if (!deadline)
			deadline = pool_now_ns() + POOL_WAIT_MS * 1000000LL;
		else if (pool_now_ns() > deadline)
			break;
		if (!pool_refill(true))
			break;
	}
	return -1;
}

void pool_put(int fd)
{
	if (!pool_store(fd))
		REAL(close)(fd);
}

void pool_forget(int fd)
{
	for (int i = 0; i < POOL_SLOTS; i++) {
		int expected = fd + 1;

		if (atomic_compare_exchange_strong(&pool_slot[i], &expected, 0)) {
			atomic_fetch_sub(&pool_count, 1);
			return;
		}
	}
}

/*
 * A forked child shares the parent's pool sockets: two processes must never connect one socket,
 * so the child drops its copies (and its copy of the pool connection) and starts afresh.
 */
static void pool_after_fork_child(void)
{
	pool_pid = getpid();
	pool_drain();
	atomic_store(&pool_count, 0);
	atomic_store(&pool_batch, POOL_FIRST);
	pthread_mutex_init(&pool_lock, NULL);
	if (pool_link >= 0)
		REAL(close)(pool_link);
	pool_link = -1;
	pool_inflight = false;
	pool_retry_after = 0;
}

void pool_init(void)
{
	pool_pid = getpid();
	pthread_atfork(NULL, NULL, pool_after_fork_child);
}
