// SPDX-License-Identifier: MIT
/*
 * This thread's connection to the router. One SOCK_SEQPACKET connection per thread, opened on
 * first use: threads never share a connection, so request/reply needs no lock and no demultiplexer.
 * A fork()ed child drops the inherited connection and opens its own (the router identifies
 * callers by their process). Every wait is bounded: a slow or dead router means fallback.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/un.h>

#include "msg.h"
#include "shim.h"

/* Longer than the router's own 1 s bound on a remote resolution. */
#define ROUTER_REPLY_TIMEOUT_MS 2000
/* After a failed attempt to reach the router, this thread does not retry for a while. */
#define ROUTER_RETRY_NS (1000 * 1000000LL)

static __thread int link_fd = -1;
static __thread pid_t link_pid;
static __thread uint32_t link_next_id;
static __thread long long link_retry_after;
/* Set while this thread talks to the router: a signal handler calling connect() meanwhile must
 * not interleave its own request on the same connection, so it takes the plain path. */
static __thread bool link_busy;
static pthread_key_t link_key;

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void link_close(void)
{
	if (link_fd >= 0)
		REAL(close)(link_fd);
	link_fd = -1;
}

static void link_thread_exit(void *unused)
{
	link_close();
}

static void link_after_fork_child(void)
{
	/* The inherited connection is the parent's identity and its reply stream: drop it. */
	link_close();
	link_retry_after = 0;
}

void router_link_init(void)
{
	pthread_key_create(&link_key, link_thread_exit);
	pthread_atfork(NULL, NULL, link_after_fork_child);
}

int router_socket_connect(void)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd = REAL(socket)(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	memcpy(sun.sun_path, shim_config.router_path, sizeof(shim_config.router_path));
	if (REAL(connect)(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int err = -errno;

		REAL(close)(fd);
		return err;
	}
	/* High, out of the way of the app's own numbers (see shim_fd_base). */
	return shim_fd_relocate(fd);
}

static int link_open(void)
{
	int fd;

	if (link_fd >= 0 && link_pid == getpid())
		return 0;
	if (link_fd >= 0)
		link_close(); /* a child created without fork() handlers (clone, vfork) */
	if (link_retry_after && now_ns() < link_retry_after)
		return -ECONNREFUSED;
	fd = router_socket_connect();
	if (fd < 0) {
		link_retry_after = now_ns() + ROUTER_RETRY_NS;
		shim_log("router %s unreachable (%s): plain sockets", shim_config.router_path,
			 strerror(-fd));
		return fd;
	}
	link_fd = fd;
	link_pid = getpid();
	link_retry_after = 0;
	pthread_setspecific(link_key, (void *)1); /* arms link_thread_exit for this thread */
	return 0;
}

static int link_wait_reply(uint16_t type, uint32_t id, void *rep, size_t rep_len, int *fd_out)
{
	long long deadline = now_ns() + ROUTER_REPLY_TIMEOUT_MS * 1000000LL;
	char buf[256];

	for (;;) {
		struct pollfd p = {.fd = link_fd, .events = POLLIN};
		long long left = deadline - now_ns();
		ssize_t n;
		int fd, rc;

		if (left <= 0)
			return -ETIMEDOUT;
		rc = REAL(poll)(&p, 1, (int)(left / 1000000) + 1);
		if (rc < 0 && errno == EINTR)
			continue; /* the app's handler ran; our deadline still holds */
		if (rc <= 0)
			return rc < 0 ? -errno : -ETIMEDOUT;
		n = slim_msg_recv(link_fd, buf, sizeof(buf), &fd, MSG_DONTWAIT);
		if (n == -EAGAIN)
			continue;
		if (n <= 0)
			return n < 0 ? (int)n : -ECONNRESET;
		if (slim_msg_check_reply(buf, n, type, id) == 0 && (size_t)n == rep_len) {
			memcpy(rep, buf, rep_len);
			*fd_out = fd;
			return 0;
		}
		/* A late reply to a request we gave up on: discard it and its descriptor. */
		if (fd >= 0)
			REAL(close)(fd);
		if (((struct slim_msg_hdr *)buf)->id == id)
			return -EBADMSG;
	}
}

int router_call(void *req, size_t len, uint16_t rep_type, void *rep, size_t rep_len, int *fd_out)
{
	return router_call_fd(req, len, -1, rep_type, rep, rep_len, fd_out);
}

int router_call_fd(void *req, size_t len, int pass_fd, uint16_t rep_type, void *rep,
		   size_t rep_len, int *fd_out)
{
	struct slim_msg_hdr *h = req;
	int err;

	*fd_out = -1;
	if (link_busy)
		return -EBUSY;
	link_busy = true;
	err = link_open();
	if (err < 0)
		goto out;
	h->id = ++link_next_id;
	h->len = (uint32_t)len;
	h->reserved = 0;
	err = slim_msg_send(link_fd, req, len, pass_fd);
	if (err == 0)
		err = link_wait_reply(rep_type, h->id, rep, rep_len, fd_out);
	if (err < 0) {
		shim_log("router call failed (%s): plain sockets", strerror(-err));
		link_close();
		link_retry_after = now_ns() + ROUTER_RETRY_NS;
	}
out:
	link_busy = false;
	return err;
}
