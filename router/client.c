// SPDX-License-Identifier: MIT
/*
 * Control-socket clients: the listening socket, identifying each caller by the kernel
 * (SO_PEERCRED -> /proc/<pid>/ns), deciding who is the host's administrator, reading requests
 * fairly and queueing replies.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>

#include "log.h"
#include "msg.h"
#include "router.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77 /* Linux 6.5; older headers lack it */
#endif

/* A reply the client's socket had no room for. */
struct outmsg {
	STAILQ_ENTRY(outmsg) om_entry;
	int om_fd; /* our duplicate of the descriptor to pass, or -1 */
	size_t om_len;
	uint8_t om_buf[];
};

static TAILQ_HEAD(, client) client_list = TAILQ_HEAD_INITIALIZER(client_list);
static size_t client_n;
static int client_listen_fd = -1;
static int client_spare_fd = -1;   /* kept free for accept() at EMFILE */
static struct client *client_busy; /* the client whose requests are being handled right now */
static bool client_busy_closed;
static struct ns_id client_admin_ns[CLIENT_NS_N]; /* the host administrator's namespaces */
static bool client_admin_known;

static void client_event(struct event_loop *loop, int fd, uint32_t events, void *arg);

static void client_update_mask(struct client *c)
{
	uint32_t mask = 0;

	if (c->cs_reading)
		mask |= EVENT_READ;
	if (!STAILQ_EMPTY(&c->cs_outq))
		mask |= EVENT_WRITE;
	event_set_mask(router.r_loop, c->cs_fd, mask);
}

static void client_free(struct client *c)
{
	free(c->cs_req);
	free(c);
}

static void client_req_reset(struct client *c)
{
	free(c->cs_req);
	c->cs_req = NULL;
	c->cs_reqlen = c->cs_reqcap = 0;
	c->cs_req_open = c->cs_req_discard = false;
	if (c->cs_req_fd >= 0)
		close(c->cs_req_fd);
	c->cs_req_fd = -1;
}

void client_close(struct client *c)
{
	struct outmsg *om;

	if (c->cs_closing)
		return;
	c->cs_closing = true;
	event_del(router.r_loop, c->cs_fd);
	close(c->cs_fd);
	c->cs_fd = -1;
	resolve_client_gone(c);
	router_client_gone(c);
	control_client_gone(c);
	while ((om = STAILQ_FIRST(&c->cs_outq))) {
		STAILQ_REMOVE_HEAD(&c->cs_outq, om_entry);
		if (om->om_fd >= 0)
			close(om->om_fd);
		free(om);
	}
	c->cs_noutq = 0;
	client_req_reset(c);
	TAILQ_REMOVE(&client_list, c, cs_entry);
	client_n--;
	/* The request loop still holds c: it frees it when it unwinds. */
	if (c == client_busy)
		client_busy_closed = true;
	else
		client_free(c);
}

/* Sends queued replies while the socket takes them. 0, or -errno when c was closed. */
static int client_flush(struct client *c)
{
	struct outmsg *om;

	while ((om = STAILQ_FIRST(&c->cs_outq))) {
		/* The socket is non-blocking, so this never waits. */
		int ret = slim_msg_send(c->cs_fd, om->om_buf, om->om_len, om->om_fd);

		if (ret == -EAGAIN)
			break;
		if (ret < 0) {
			log_debug("%s: client pid %d: %s", __func__, (int)c->cs_pid,
				  strerror(-ret));
			client_close(c);
			return -EPIPE;
		}
		STAILQ_REMOVE_HEAD(&c->cs_outq, om_entry);
		c->cs_noutq--;
		if (om->om_fd >= 0)
			close(om->om_fd);
		free(om);
	}
	client_update_mask(c);
	return 0;
}

int client_reply(struct client *c, const void *msg, size_t len, int fd, bool unlimited)
{
	struct outmsg *om;
	int ret;

	if (c->cs_closing)
		return -EPIPE;
	/* In order: never overtake replies already waiting. */
	if (STAILQ_EMPTY(&c->cs_outq)) {
		/* The socket is non-blocking (accept4), so this is a MSG_DONTWAIT send. */
		ret = slim_msg_send(c->cs_fd, msg, len, fd);
		if (ret == 0)
			return 0;
		if (ret != -EAGAIN) {
			log_debug("%s: client pid %d: %s", __func__, (int)c->cs_pid,
				  strerror(-ret));
			client_close(c);
			return -EPIPE;
		}
	}
	if (!unlimited && c->cs_noutq >= CLIENT_MAX_QUEUED) {
		log_warnx("%s: client pid %d does not read its replies (%u queued): closing it",
			  __func__, (int)c->cs_pid, c->cs_noutq);
		client_close(c);
		return -EPIPE;
	}
	om = malloc(sizeof(*om) + len);
	if (!om) {
		client_close(c);
		return -EPIPE;
	}
	om->om_len = len;
	memcpy(om->om_buf, msg, len);
	om->om_fd = -1;
	if (fd >= 0 && (om->om_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
		log_warn("%s: dup", __func__);
		free(om);
		client_close(c);
		return -EPIPE;
	}
	STAILQ_INSERT_TAIL(&c->cs_outq, om, om_entry);
	c->cs_noutq++;
	client_update_mask(c);
	return 0;
}

void client_pending_done(struct client *c)
{
	if (c->cs_npending)
		c->cs_npending--;
	/* Resume reading once it has room again (paused at CLIENT_MAX_PENDING). */
	if (!c->cs_closing && !c->cs_reading && c->cs_npending < CLIENT_MAX_PENDING) {
		c->cs_reading = true;
		client_update_mask(c);
	}
}

/* Hands a whole control request to the router, the descriptor it passed (if any) with it. */
static void client_req_dispatch(struct client *c, const void *msg, size_t len, int fd)
{
	c->cs_req_fd = fd;
	router_dispatch(c, msg, len);
	/* Whatever control.c did not take (or client_close did not close already). */
	if (c->cs_req_fd >= 0)
		close(c->cs_req_fd);
	c->cs_req_fd = -1;
}

/*
 * One CTL_REQ message: a whole request, or a fragment of one (SLIM_MSGF_MORE on all but the last).
 * Only the host administrator's fragments are buffered (up to SLIM_CTL_REQ_MAX); anyone else's
 * are dropped unread and their last one is dispatched alone, to be refused. Returns false when c
 * was closed.
 */
static bool client_req_fragment(struct client *c, const uint8_t *buf, size_t n, int fd)
{
	const struct slim_msg_hdr *h = (const void *)buf;
	bool more = h->flags & SLIM_MSGF_MORE;
	size_t body = n - sizeof(*h);
	uint8_t *req;
	size_t len;

	if (c->cs_req_open && h->id != c->cs_req_id) {
		log_warnx("%s: client pid %d: fragment of request %u inside request %u: closing it",
			  __func__, (int)c->cs_pid, h->id, c->cs_req_id);
		if (fd >= 0)
			close(fd);
		client_close(c);
		return false;
	}
	if (!c->cs_req_open) {
		if (!more) {
			client_req_dispatch(c, buf, n, fd); /* the common case: no copy */
			return true;
		}
		c->cs_req_open = true;
		c->cs_req_id = h->id;
		c->cs_req_discard = !client_is_host_admin(c);
		if (c->cs_req_discard && fd >= 0)
			close(fd);
		else
			c->cs_req_fd = fd;
		fd = -1;
	} else if (fd >= 0) {
		close(fd); /* only the first fragment may pass one */
	}
	if (c->cs_req_discard) {
		if (!more) {
			client_req_reset(c);
			client_req_dispatch(c, buf, n, -1); /* refused, unread */
		}
		return true;
	}
	if (c->cs_reqlen == 0)
		c->cs_reqlen = sizeof(*h);
	if (c->cs_reqlen - sizeof(*h) + body > SLIM_CTL_REQ_MAX) {
		log_warnx("%s: client pid %d: control request larger than %d bytes: closing it",
			  __func__, (int)c->cs_pid, SLIM_CTL_REQ_MAX);
		client_close(c);
		return false;
	}
	if (c->cs_reqlen + body > c->cs_reqcap) {
		size_t cap = c->cs_reqcap ? c->cs_reqcap : SLIM_MSG_MAX;
		uint8_t *b;

		while (cap < c->cs_reqlen + body)
			cap *= 2;
		b = realloc(c->cs_req, cap);
		if (!b) {
			log_warnx("%s: client pid %d: out of memory: closing it", __func__,
				  (int)c->cs_pid);
			client_close(c);
			return false;
		}
		c->cs_req = b;
		c->cs_reqcap = cap;
	}
	memcpy(c->cs_req + c->cs_reqlen, buf + sizeof(*h), body);
	c->cs_reqlen += body;
	if (more)
		return true;
	/* The last fragment: dispatch the whole request as one message. */
	req = c->cs_req;
	len = c->cs_reqlen;
	fd = c->cs_req_fd;
	c->cs_req = NULL;
	c->cs_req_fd = -1;
	client_req_reset(c);
	memcpy(req, h, sizeof(*h));
	((struct slim_msg_hdr *)(void *)req)->flags = 0;
	((struct slim_msg_hdr *)(void *)req)->len = (uint32_t)len;
	client_req_dispatch(c, req, len, fd);
	free(req);
	return true;
}

/* Handles up to CLIENT_BATCH messages, so one busy client cannot starve the others. */
static void client_read(struct client *c)
{
	/* Aligned for the message structs it is read as. */
	static union {
		struct slim_connect_req req;
		uint8_t bytes[SLIM_MSG_MAX];
	} msg;
	uint8_t *buf = msg.bytes;

	client_busy = c;
	client_busy_closed = false;
	for (int i = 0; i < CLIENT_BATCH && !client_busy_closed; i++) {
		ssize_t n;
		int fd;

		if (c->cs_npending >= CLIENT_MAX_PENDING) {
			/* Stop reading until resolutions drain; level-triggered epoll would spin.
			 */
			c->cs_reading = false;
			client_update_mask(c);
			break;
		}
		n = slim_msg_recv(c->cs_fd, buf, sizeof(msg.bytes), &fd, MSG_DONTWAIT);
		if (n == -EAGAIN)
			break;
		/* Only a control request may pass a descriptor (pod add's netns). */
		if (fd >= 0 && (n <= 0 || slim_msg_check_request(buf, (size_t)n) < 0 ||
				((struct slim_msg_hdr *)(void *)buf)->type != SLIM_MSG_CTL_REQ)) {
			close(fd);
			fd = -1;
		}
		if (n == 0) {
			client_close(c);
			break;
		}
		if (n < 0 && n != -EMSGSIZE) {
			log_debug("%s: client pid %d: %s", __func__, (int)c->cs_pid,
				  strerror((int)-n));
			client_close(c);
			break;
		}
		if (n < 0 || slim_msg_check_request(buf, (size_t)n) < 0) {
			log_warnx("%s: client pid %d: malformed message (%s): closing it", __func__,
				  (int)c->cs_pid,
				  n < 0 ? "larger than SLIM_MSG_MAX" : "bad header or size");
			client_close(c);
			break;
		}
		if (((struct slim_msg_hdr *)(void *)buf)->type == SLIM_MSG_CTL_REQ) {
			if (!client_req_fragment(c, buf, (size_t)n, fd))
				break;
			continue;
		}
		router_dispatch(c, buf, (size_t)n);
	}
	client_busy = NULL;
	if (client_busy_closed)
		client_free(c);
}

static void client_event(struct event_loop *loop, int fd, uint32_t events, void *arg)
{
	struct client *c = arg;

	if ((events & EPOLLOUT) && client_flush(c) < 0)
		return;
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
		if (c->cs_reading)
			client_read(c);
		else if (events & (EPOLLERR | EPOLLHUP))
			client_close(c);
	}
}

/* The names of enum client_ns's entries under /proc/PID/ns/. */
static const char *const client_ns_names[CLIENT_NS_N] = {"user", "mnt", "net", "pid", "ipc"};

/* Reads dir/<name> for every namespace of enum client_ns. 0 or -errno. */
static int client_read_ns(const char *dir, struct ns_id ns[CLIENT_NS_N])
{
	char path[PATH_MAX];
	struct stat st;

	for (int i = 0; i < CLIENT_NS_N; i++) {
		if (snprintf(path, sizeof(path), "%s/%s", dir, client_ns_names[i]) >=
		    (int)sizeof(path))
			return -ENAMETOOLONG;
		if (stat(path, &st) < 0)
			return -errno;
		ns[i].ni_dev = st.st_dev;
		ns[i].ni_ino = st.st_ino;
	}
	return 0;
}

int client_admin_init(const char *nsdir)
{
	int ret = client_read_ns(nsdir, client_admin_ns);

	client_admin_known = ret == 0;
	return ret;
}

bool client_is_host_admin(const struct client *c)
{
	if (c->cs_uid != 0 || !client_admin_known)
		return false;
	for (int i = 0; i < CLIENT_NS_N; i++)
		if (c->cs_ns[i].ni_dev != client_admin_ns[i].ni_dev ||
		    c->cs_ns[i].ni_ino != client_admin_ns[i].ni_ino)
			return false;
	/* Never a pod's process, even should the administrator's netns be registered as one. */
	return !pod_find_ns(c->cs_ns_dev, c->cs_ns_ino);
}

/*
 * The caller's namespaces, as the kernel sees them (not as the caller claims). SO_PEERCRED names
 * the process that connected; should it have exited before we read /proc, its pid may already
 * be another process's. The pidfd (Linux >= 6.5) pins the process: when it is still alive
 * after the reads, they were of the right process.
 */
static int client_identify(struct client *c)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	int pidfd = -1, ret;
	char dir[32];

	if (getsockopt(c->cs_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return -errno;
	if (cred.pid <= 0)
		return -ESRCH;
	len = sizeof(pidfd);
	if (getsockopt(c->cs_fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) < 0)
		pidfd = -1;
	snprintf(dir, sizeof(dir), "/proc/%d/ns", (int)cred.pid);
	ret = client_read_ns(dir, c->cs_ns);
	if (ret == 0 && pidfd >= 0 && syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) < 0)
		ret = -ESRCH;
	if (pidfd >= 0)
		close(pidfd);
	if (ret < 0)
		return ret;
	c->cs_pid = cred.pid;
	c->cs_uid = cred.uid;
	c->cs_ns_dev = c->cs_ns[CLIENT_NS_NET].ni_dev;
	c->cs_ns_ino = c->cs_ns[CLIENT_NS_NET].ni_ino;
	return 0;
}

static void client_accept(struct event_loop *loop, int lfd, uint32_t events, void *arg)
{
	for (int i = 0; i < 64; i++) {
		struct client *c;
		int fd, ret;

		fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
			/*
			 * Out of descriptors: the pending connection would keep the listener
			 * readable and the loop spinning. Use the spare descriptor to accept and
			 * drop it (the caller falls back), then take the spare back.
			 */
			log_warn("%s: accept", __func__);
			if (client_spare_fd >= 0) {
				close(client_spare_fd);
				fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
				if (fd >= 0)
					close(fd);
				client_spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
			}
			return;
		}
		if (fd < 0)
			return;
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->cs_fd = fd;
		c->cs_req_fd = -1;
		TAILQ_INIT(&c->cs_pending);
		STAILQ_INIT(&c->cs_outq);
		ret = client_identify(c);
		if (ret < 0) {
			log_warnx("%s: cannot identify the caller: %s", __func__, strerror(-ret));
			close(fd);
			free(c);
			continue;
		}
		c->cs_reading = true;
		if (event_add(router.r_loop, fd, EVENT_READ, client_event, c) < 0) {
			close(fd);
			free(c);
			continue;
		}
		TAILQ_INSERT_TAIL(&client_list, c, cs_entry);
		client_n++;
		log_debug("client pid %d uid %d connected", (int)c->cs_pid, (int)c->cs_uid);
	}
}

/* True when a router already answers on path. */
static bool client_socket_alive(const struct sockaddr_un *sun)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	bool alive;

	if (fd < 0)
		return false;
	alive = connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0;
	close(fd);
	return alive;
}

int client_listen(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char dir[sizeof(sun.sun_path)];
	char *slash;
	int fd, ret;

	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	strcpy(sun.sun_path, path);
	/* Create the parent directories (like mkdir -p). */
	strcpy(dir, path);
	for (slash = strchr(dir + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return -errno;
		*slash = '/';
	}
	if (client_socket_alive(&sun))
		return -EADDRINUSE;
	/* Nobody answers: a stale file from a router that died. */
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;

	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    chmod(path, 0666) < 0 || /* pods connect; authorization is by peer identity */
	    listen(fd, 512) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	ret = event_add(router.r_loop, fd, EVENT_READ, client_accept, NULL);
	if (ret < 0) {
		close(fd);
		return ret;
	}
	client_listen_fd = fd;
	client_spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return 0;
}

void client_close_all(void)
{
	struct client *c;

	while ((c = TAILQ_FIRST(&client_list)))
		client_close(c);
	if (client_listen_fd >= 0) {
		event_del(router.r_loop, client_listen_fd);
		close(client_listen_fd);
		client_listen_fd = -1;
	}
	if (client_spare_fd >= 0) {
		close(client_spare_fd);
		client_spare_fd = -1;
	}
}

size_t client_count(void)
{
	return client_n;
}
