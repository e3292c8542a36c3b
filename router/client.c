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
	int om_fds[SLIM_MSG_MAX_FDS]; /* our duplicates of the descriptors to pass */
	unsigned om_nfds;
	size_t om_len;
	uint8_t om_buf[];
};

/* How many control connections one network namespace holds (CLIENT_MAX_PER_NETNS). */
struct client_netns {
	struct hnode cn_node;
	struct ns_id cn_ns;
	unsigned cn_n;
};

static TAILQ_HEAD(, client) client_list = TAILQ_HEAD_INITIALIZER(client_list);
static size_t client_n;
static uint64_t client_nrefused;
/* The most requests one client ever had waiting, and replies queued: the per-client caps at
 * work (status shows them, so a test can check the caps held without sampling). */
static unsigned client_pending_hwm, client_queued_hwm;
static struct htab client_by_netns;
static int client_listen_fd = -1;
static struct client *client_busy; /* the client whose requests are being handled right now */
static bool client_busy_closed;
static struct ns_id client_admin_ns[CLIENT_NS_N]; /* the host administrator's namespaces */
static bool client_admin_known;
static bool client_paused; /* an upgrade is handing us over: requests wait in the sockets */

static void client_event(struct event_loop *loop, int fd, uint32_t events, void *arg);

static void client_update_mask(struct client *c)
{
	uint32_t mask = 0;

	if (c->cs_reading && !client_paused)
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

static void client_outmsg_free(struct outmsg *om)
{
	while (om->om_nfds)
		close(om->om_fds[--om->om_nfds]);
	free(om);
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
		client_outmsg_free(om);
	}
	c->cs_noutq = 0;
	client_req_reset(c);
	if (c->cs_netns && --c->cs_netns->cn_n == 0) {
		htab_remove(&client_by_netns, &c->cs_netns->cn_node);
		free(c->cs_netns);
	}
	c->cs_netns = NULL;
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
		int ret = slim_msg_send_fds(c->cs_fd, om->om_buf, om->om_len, om->om_fds,
					    om->om_nfds);

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
		client_outmsg_free(om);
	}
	client_update_mask(c);
	return 0;
}

static int client_queue(struct client *c, const void *msg, size_t len, const int *fds,
			unsigned nfds, bool unlimited)
{
	struct outmsg *om;
	int ret;

	if (c->cs_closing)
		return -EPIPE;
	/* In order: never overtake replies already waiting. */
	if (STAILQ_EMPTY(&c->cs_outq)) {
		/* The socket is non-blocking (accept4), so this is a MSG_DONTWAIT send. */
		ret = slim_msg_send_fds(c->cs_fd, msg, len, fds, nfds);
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
		static struct log_ratelimit rl;

		log_ratelimited(
			&rl, LOG_LVL_WARN,
			"%s: client pid %d does not read its replies (%u queued): closing it",
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
	for (om->om_nfds = 0; om->om_nfds < nfds; om->om_nfds++) {
		int dup = fcntl(fds[om->om_nfds], F_DUPFD_CLOEXEC, 0);

		if (dup < 0) {
			log_warn("%s: dup", __func__);
			client_outmsg_free(om);
			client_close(c);
			return -EPIPE;
		}
		om->om_fds[om->om_nfds] = dup;
	}
	STAILQ_INSERT_TAIL(&c->cs_outq, om, om_entry);
	c->cs_noutq++;
	if (!unlimited && c->cs_noutq > client_queued_hwm)
		client_queued_hwm = c->cs_noutq;
	client_update_mask(c);
	return 0;
}

int client_reply_fds(struct client *c, const void *msg, size_t len, const int *fds,
		     unsigned nfds)
{
	return client_queue(c, msg, len, fds, nfds, false);
}

int client_reply(struct client *c, const void *msg, size_t len, int fd, bool unlimited)
{
	return client_queue(c, msg, len, &fd, fd >= 0 ? 1 : 0, unlimited);
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
		static struct log_ratelimit rl;

		log_ratelimited(&rl, LOG_LVL_WARN,
				"%s: client pid %d: fragment of request %u inside request %u: "
				"closing it",
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
		struct slim_listen_req req;
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
		/* Only a control request (pod add's netns), a listen request (the app's own
		 * listener, as proof) and a route request (the socket whose connect to a Service
		 * the kernel could not finish) may pass a descriptor. */
		if (fd >= 0 && (n <= 0 || slim_msg_check_request(buf, (size_t)n) < 0 ||
				(((struct slim_msg_hdr *)(void *)buf)->type != SLIM_MSG_CTL_REQ &&
				 ((struct slim_msg_hdr *)(void *)buf)->type != SLIM_MSG_LISTEN_REQ &&
				 ((struct slim_msg_hdr *)(void *)buf)->type != SLIM_MSG_ROUTE_REQ))) {
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
			static struct log_ratelimit rl;

			log_ratelimited(&rl, LOG_LVL_WARN,
					"%s: client pid %d: malformed message (%s): closing it",
					__func__, (int)c->cs_pid,
					n < 0 ? "larger than SLIM_MSG_MAX" : "bad header or size");
			client_close(c);
			break;
		}
		if (((struct slim_msg_hdr *)(void *)buf)->type == SLIM_MSG_CTL_REQ) {
			if (!client_req_fragment(c, buf, (size_t)n, fd))
				break;
			continue;
		}
		client_req_dispatch(c, buf, (size_t)n, fd);
		if (!client_busy_closed && c->cs_npending > client_pending_hwm)
			client_pending_hwm = c->cs_npending;
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
	if (client_paused) {
		/* Not reading; but a hangup is reported whatever the mask (it would spin). */
		if (events & (EPOLLERR | EPOLLHUP))
			client_close(c);
		return;
	}
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

json_t *client_admin_export(void)
{
	json_t *a = json_array();

	for (int i = 0; client_admin_known && i < CLIENT_NS_N; i++)
		json_array_append_new(a, json_pack("[I, I]", (json_int_t)client_admin_ns[i].ni_dev,
						   (json_int_t)client_admin_ns[i].ni_ino));
	return a;
}

int client_admin_adopt(const json_t *a)
{
	if (json_array_size(a) != CLIENT_NS_N)
		return -EINVAL;
	for (int i = 0; i < CLIENT_NS_N; i++) {
		json_t *e = json_array_get(a, (size_t)i);

		if (!json_is_integer(json_array_get(e, 0)) || !json_is_integer(json_array_get(e, 1)))
			return -EINVAL;
		client_admin_ns[i].ni_dev = (dev_t)json_integer_value(json_array_get(e, 0));
		client_admin_ns[i].ni_ino = (ino_t)json_integer_value(json_array_get(e, 1));
	}
	client_admin_known = true;
	return 0;
}

bool client_is_host_admin(const struct client *c)
{
	if (c->cs_uid != 0 || !client_admin_known)
		return false;
	for (int i = 0; i < CLIENT_NS_N; i++) {
		/*
		 * The host's own network namespace (the router's) is the administrator's too: a
		 * CNI plugin runs there, in the runtime's other namespaces, and so does root
		 * entering a lab host with nsenter --net.
		 */
		if (i == CLIENT_NS_NET && c->cs_ns[i].ni_dev == router.r_ns_dev &&
		    c->cs_ns[i].ni_ino == router.r_ns_ino)
			continue;
		if (c->cs_ns[i].ni_dev != client_admin_ns[i].ni_dev ||
		    c->cs_ns[i].ni_ino != client_admin_ns[i].ni_ino)
			return false;
	}
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

static struct client_netns *client_netns_find(const struct ns_id *ns)
{
	uint64_t k[2] = {(uint64_t)ns->ni_dev, (uint64_t)ns->ni_ino};

	for (struct hnode *h = htab_first(&client_by_netns, htab_hash_bytes(k, sizeof(k))); h;
	     h = htab_next(h)) {
		struct client_netns *cn = container_of(h, struct client_netns, cn_node);

		if (cn->cn_ns.ni_dev == ns->ni_dev && cn->cn_ns.ni_ino == ns->ni_ino)
			return cn;
	}
	return NULL;
}

/*
 * Whether c may stay, by the caps on connections; if so it is counted against its namespace.
 * The administrator is never refused for its namespace's count and may use the reserve: a pod
 * holding connections open must not lock out `slimctl`.
 */
static bool client_admit(struct client *c)
{
	const struct ns_id *ns = &c->cs_ns[CLIENT_NS_NET];
	struct client_netns *cn = client_netns_find(ns);
	bool admin = client_is_host_admin(c);
	static struct log_ratelimit rl;
	const char *why = NULL;

	if (client_n >= CLIENT_MAX)
		why = "all";
	else if (!admin && client_n >= CLIENT_MAX - CLIENT_ADMIN_RESERVE)
		why = "all but the administrator's reserve of";
	else if (!admin && cn && cn->cn_n >= CLIENT_MAX_PER_NETNS)
		why = "its network namespace's share of";
	if (why) {
		client_nrefused++;
		log_ratelimited(&rl, LOG_LVL_WARN,
				"%s: client pid %d uid %d refused: it would exceed %s the control "
				"connections (%zu open, %u from its netns)",
				__func__, (int)c->cs_pid, (int)c->cs_uid, why, client_n,
				cn ? cn->cn_n : 0);
		return false;
	}
	if (!cn) {
		uint64_t k[2] = {(uint64_t)ns->ni_dev, (uint64_t)ns->ni_ino};

		cn = calloc(1, sizeof(*cn));
		if (!cn)
			return false;
		cn->cn_ns = *ns;
		htab_insert(&client_by_netns, &cn->cn_node, htab_hash_bytes(k, sizeof(k)));
	}
	cn->cn_n++;
	c->cs_netns = cn;
	return true;
}

static void client_accept(struct event_loop *loop, int lfd, uint32_t events, void *arg)
{
	for (int i = 0; i < 64; i++) {
		struct client *c;
		int fd, ret;

		/* At EMFILE this sheds a connection and pauses us (accept.c). */
		fd = accept_conn(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
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
			static struct log_ratelimit rl;

			log_ratelimited(&rl, LOG_LVL_WARN, "%s: cannot identify the caller: %s",
					__func__, strerror(-ret));
			close(fd);
			free(c);
			continue;
		}
		if (!client_admit(c)) {
			close(fd);
			free(c);
			continue;
		}
		c->cs_reading = true;
		if (event_add(router.r_loop, fd, EVENT_READ, client_event, c) < 0) {
			if (--c->cs_netns->cn_n == 0) {
				htab_remove(&client_by_netns, &c->cs_netns->cn_node);
				free(c->cs_netns);
			}
			close(fd);
			free(c);
			continue;
		}
		TAILQ_INSERT_TAIL(&client_list, c, cs_entry);
		client_n++;
		if (router.r_debug)
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

/* The listening socket's part of client_listen, for a socket of ours or one handed over. */
static int client_listen_fd_use(int fd)
{
	int ret;

	if (htab_init(&client_by_netns, 64) < 0)
		return -ENOMEM;
	ret = event_add(router.r_loop, fd, EVENT_READ, client_accept, NULL);
	if (ret < 0) {
		htab_free(&client_by_netns);
		return ret;
	}
	client_listen_fd = fd;
	return 0;
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
	ret = client_listen_fd_use(fd);
	if (ret < 0)
		close(fd);
	return ret;
}

void client_pause(bool paused)
{
	struct client *c, *next;

	client_paused = paused;
	if (client_listen_fd >= 0)
		event_set_mask(router.r_loop, client_listen_fd, paused ? 0 : EVENT_READ);
	for (c = TAILQ_FIRST(&client_list); c; c = next) {
		next = TAILQ_NEXT(c, cs_entry);
		client_update_mask(c);
	}
}

bool client_settled(bool close_stuck)
{
	struct client *c, *next;
	bool settled = true;

	for (c = TAILQ_FIRST(&client_list); c; c = next) {
		next = TAILQ_NEXT(c, cs_entry);
		if (!c->cs_npending && STAILQ_EMPTY(&c->cs_outq))
			continue;
		if (close_stuck && !c->cs_npending) {
			log_warnx("upgrade: client pid %d does not read its replies: closing it",
				  (int)c->cs_pid);
			client_close(c);
			continue;
		}
		settled = false;
	}
	return settled;
}

json_t *client_export(struct upgrade_fds *f, const struct client *mark, int *mark_index)
{
	json_t *list = json_array();
	struct client *c;
	int i = 0;

	*mark_index = -1;
	if (!list)
		return NULL;
	TAILQ_FOREACH(c, &client_list, cs_entry) {
		json_t *o, *ns = json_array();

		for (int k = 0; k < CLIENT_NS_N; k++)
			json_array_append_new(ns, json_pack("[I, I]", (json_int_t)c->cs_ns[k].ni_dev,
							    (json_int_t)c->cs_ns[k].ni_ino));
		o = json_pack("{s:i, s:i, s:i, s:o, s:b}", "fd", upgrade_fd_put(f, c->cs_fd), "pid",
			      (int)c->cs_pid, "uid", (int)c->cs_uid, "ns", ns, "reading",
			      c->cs_reading);
		if (o && c->cs_req_open) {
			char *b64 = etcd_b64_encode(c->cs_req, c->cs_reqlen);

			json_object_set_new(o, "request",
					    json_pack("{s:I, s:s?, s:b, s:i}", "id",
						      (json_int_t)c->cs_req_id, "data", b64,
						      "discard", c->cs_req_discard, "fd",
						      c->cs_req_fd >= 0 ? upgrade_fd_put(f, c->cs_req_fd)
									: -1));
			free(b64);
		}
		if (!o || json_array_append_new(list, o) < 0) {
			json_decref(list);
			return NULL;
		}
		if (c == mark)
			*mark_index = i;
		i++;
	}
	return json_pack("{s:i, s:o}", "listener", upgrade_fd_put(f, client_listen_fd), "clients",
			 list);
}

/* One client of a router before us, exactly as it was (it never noticed). */
static int client_adopt_one(json_t *o, struct upgrade_fds *f, struct client **out)
{
	json_t *ns = json_object_get(o, "ns"), *req = json_object_get(o, "request");
	int fd = upgrade_fd_take(f, json_object_get(o, "fd"));
	struct client *c;

	if (fd < 0 || json_array_size(ns) != CLIENT_NS_N || !(c = calloc(1, sizeof(*c)))) {
		if (fd >= 0)
			close(fd);
		return fd < 0 ? -EINVAL : -ENOMEM;
	}
	c->cs_fd = fd;
	c->cs_req_fd = -1;
	TAILQ_INIT(&c->cs_pending);
	STAILQ_INIT(&c->cs_outq);
	c->cs_pid = (pid_t)json_integer_value(json_object_get(o, "pid"));
	c->cs_uid = (uid_t)json_integer_value(json_object_get(o, "uid"));
	for (int k = 0; k < CLIENT_NS_N; k++) {
		c->cs_ns[k].ni_dev = (dev_t)json_integer_value(json_array_get(json_array_get(ns, k), 0));
		c->cs_ns[k].ni_ino = (ino_t)json_integer_value(json_array_get(json_array_get(ns, k), 1));
	}
	c->cs_ns_dev = c->cs_ns[CLIENT_NS_NET].ni_dev;
	c->cs_ns_ino = c->cs_ns[CLIENT_NS_NET].ni_ino;
	c->cs_reading = json_is_true(json_object_get(o, "reading"));
	if (req) {
		const char *data = json_string_value(json_object_get(req, "data"));
		char *buf = NULL;
		size_t len = 0;

		if (data && etcd_b64_decode(data, strlen(data), &buf, &len) == 0) {
			c->cs_req = (uint8_t *)buf;
			c->cs_reqlen = c->cs_reqcap = len;
			c->cs_req_open = true;
			c->cs_req_id = (uint32_t)json_integer_value(json_object_get(req, "id"));
			c->cs_req_discard = json_is_true(json_object_get(req, "discard"));
			c->cs_req_fd = upgrade_fd_take(f, json_object_get(req, "fd"));
		}
	}
	if (!client_admit(c) ||
	    event_add(router.r_loop, fd, c->cs_reading ? EVENT_READ : 0, client_event, c) < 0) {
		if (c->cs_netns && --c->cs_netns->cn_n == 0) {
			htab_remove(&client_by_netns, &c->cs_netns->cn_node);
			free(c->cs_netns);
		}
		client_req_reset(c);
		close(fd);
		free(c);
		return -ENOMEM;
	}
	TAILQ_INSERT_TAIL(&client_list, c, cs_entry);
	client_n++;
	*out = c;
	return 0;
}

int client_adopt(json_t *doc, struct upgrade_fds *f, int mark_index, struct client **mark)
{
	int ret = upgrade_fd_use(f, json_object_get(doc, "listener"), client_listen_fd_use);
	json_t *o;
	size_t i;

	*mark = NULL;
	if (ret < 0)
		return ret;
	json_array_foreach(json_object_get(doc, "clients"), i, o) {
		struct client *c = NULL;

		/* One that cannot be taken is closed: its shim reconnects (or falls back). */
		if (client_adopt_one(o, f, &c) < 0)
			continue;
		if ((int)i == mark_index)
			*mark = c;
	}
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
	htab_free(&client_by_netns); /* empty: every client is closed */
}

size_t client_count(void)
{
	return client_n;
}

unsigned client_count_netns(dev_t dev, ino_t ino)
{
	const struct ns_id ns = {.ni_dev = dev, .ni_ino = ino};
	const struct client_netns *cn = client_netns_find(&ns);

	return cn ? cn->cn_n : 0;
}

uint64_t client_refused_count(void)
{
	return client_nrefused;
}

unsigned client_pending_max(void)
{
	return client_pending_hwm;
}

unsigned client_queued_max(void)
{
	return client_queued_hwm;
}
