// SPDX-License-Identifier: MIT
/*
 * Host sockets: creating the connected socket for a CONNECT_REQ (TFO-deferred connect plus the
 * preamble, or the same-host fast path) and the host listener for a LISTEN_REQ, and handing them
 * over. The router keeps no descriptor: its reference to a connection is the conn entry.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "log.h"
#include "preamble.h"
#include "router.h"

#ifndef TCP_FASTOPEN_CONNECT
#define TCP_FASTOPEN_CONNECT 30
#endif
#ifndef TCP_FASTOPEN_NO_COOKIE
#define TCP_FASTOPEN_NO_COOKIE 34
#endif

static int hostsock_setopt(int fd, int level, int name, int val)
{
	return setsockopt(fd, level, name, &val, sizeof(val)) < 0 ? -errno : 0;
}

/* Replays the app's options (already checked against the whitelist by slim_msg_check). */
static int hostsock_apply_opts(int fd, const struct slim_sockopt *opts, unsigned nopts)
{
	for (unsigned i = 0; i < nopts; i++)
		if (setsockopt(fd, opts[i].level, opts[i].name, opts[i].val, opts[i].len) < 0)
			return -errno;
	return 0;
}

/* A non-blocking host socket with the app's options, bound to our fabric address (port chosen
 * at connect). fd, or -errno with *what naming the failed step. */
static int hostsock_new_socket(const struct slim_connect_req *req, const char **what)
{
	struct sockaddr_in src = {.sin_family = AF_INET, .sin_addr.s_addr = router.r_fabric_ip};
	int fd, ret;

	*what = "socket";
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	*what = "app options";
	if ((ret = hostsock_apply_opts(fd, req->opts, req->nopts)) < 0)
		goto fail;
	*what = "bind";
	if ((ret = hostsock_setopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)) < 0)
		goto fail;
	if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
		ret = -errno;
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return ret;
}

/*
 * The common end of every connect: the overlay source port (the app's bound one, else the host
 * socket's), the preamble, the reply with the socket attached, and the conn entry. The router
 * keeps no descriptor: its reference to a connection is the conn entry (host 4-tuple + cookie).
 * Returns 0 when it replied, or -errno with *what naming the step (the caller falls back).
 */
static int hostsock_hand_over(struct client *c, int fd, uint32_t pod_ip, const char *pod_name,
			      const struct slim_connect_req *req, const struct connect_target *t,
			      const char **what)
{
	struct slim_connect_rep rep = {
		.hdr = {.type = SLIM_MSG_CONNECT_REP, .len = sizeof(rep), .id = req->hdr.id},
		.action = SLIM_ACT_FD,
		.flags = t->cached ? SLIM_REPF_CACHED : 0,
		.local_ip = pod_ip,
		.host_ip = t->host_ip,
		.host_port = t->host_port,
	};
	uint8_t prebuf[SLIM_PREAMBLE_LEN];
	struct slim_preamble pre;
	struct tuple4 host, overlay;
	struct sockaddr_in src;
	socklen_t alen = sizeof(src);
	uint64_t cookie = 0;
	ssize_t n;

	*what = "getsockname";
	if (getsockname(fd, (struct sockaddr *)&src, &alen) < 0)
		return -errno;
	pre.src_ip = pod_ip;
	pre.src_port = req->bound_port ? req->bound_port : src.sin_port;
	pre.dst_ip = req->dst_ip;
	pre.dst_port = req->dst_port;
	slim_preamble_encode(&pre, prebuf);
	*what = "preamble";
	n = send(fd, prebuf, sizeof(prebuf), MSG_NOSIGNAL | MSG_DONTWAIT);
	/*
	 * EPIPE/ECONNRESET: the server side already closed this very connection (an acceptor that
	 * closes without reading). That is the app's connection and its fate: hand it over, the
	 * app reads EOF or gets EPIPE exactly as it would have with a plain socket.
	 */
	if (n != SLIM_PREAMBLE_LEN && !(n < 0 && (errno == EPIPE || errno == ECONNRESET)))
		return n < 0 ? -errno : -EIO;
	alen = sizeof(cookie);
	getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &alen);
	rep.local_port = pre.src_port;
	router.r_nconnect++;
	client_reply(c, &rep, sizeof(rep), fd, false);
	/*
	 * No watch on the connect: a refused route is corrected by its owner (INVALIDATE when the
	 * listener goes) and, for a blocking connect, by the shim's retry; the conn entry goes with
	 * the next sweep once the app closes a socket that never connected.
	 */
	host = (struct tuple4){src.sin_addr.s_addr, t->host_ip, src.sin_port, t->host_port};
	overlay = (struct tuple4){pod_ip, req->dst_ip, pre.src_port, req->dst_port};
	if (conn_add(&host, &overlay, cookie, pod_name, true) < 0)
		log_warnx("%s: out of memory", __func__);
	return 0;
}

/*
 * Same host, fast path on: a plain connect (no Fast Open: bytes that crossed before both ends are
 * in the sockhash would be overtaken by redirected ones), a short wait for the handshake, then
 * the preamble, redirected in order. Returns 0 when it replied, or -EINPROGRESS / -errno when the
 * caller should use the ordinary path instead (nothing was sent to the app).
 */
static int hostsock_connect_fastpath(struct client *c, int fd, uint32_t pod_ip,
				     const char *pod_name, const struct slim_connect_req *req,
				     const struct connect_target *t, const char **what)
{
	struct sockaddr_in dst = {
		.sin_family = AF_INET, .sin_addr.s_addr = t->host_ip, .sin_port = t->host_port};
	int ret;

	*what = "connect";
	if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 && errno != EINPROGRESS)
		return -errno;
	*what = "handshake";
	ret = fastpath_connect_local(fd);
	if (ret < 0)
		return ret;
	/* Established already: a refusal was handled here, so the shim has nothing to retry. */
	struct connect_target done = *t;

	done.cached = false;
	return hostsock_hand_over(c, fd, pod_ip, pod_name, req, &done, what);
}

/* Across hosts (or without the fast path): the deferred Fast Open connect. */
static int hostsock_connect_fastopen(struct client *c, int fd, uint32_t pod_ip,
				     const char *pod_name, const struct slim_connect_req *req,
				     const struct connect_target *t, const char **what)
{
	struct sockaddr_in dst = {
		.sin_family = AF_INET, .sin_addr.s_addr = t->host_ip, .sin_port = t->host_port};
	int ret;

	/*
	 * Deferred connect: the kernel picks the source port (sharing it across destinations)
	 * but sends no SYN until our first send, so the preamble rides in the SYN.
	 */
	*what = "fastopen options";
	if ((ret = hostsock_setopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1)) < 0 ||
	    (ret = hostsock_setopt(fd, IPPROTO_TCP, TCP_FASTOPEN_NO_COOKIE, 1)) < 0)
		return ret;
	*what = "connect";
	if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) < 0)
		return -errno;
	return hostsock_hand_over(c, fd, pod_ip, pod_name, req, t, what);
}

/* A socket for one connect attempt, marked for the pod's QoS class. fd or -errno. */
static int hostsock_connect_socket(const struct slim_connect_req *req, uint32_t pod_ip,
				   const char **what)
{
	int fd = hostsock_new_socket(req, what);

	if (fd >= 0)
		qos_mark_socket(fd, pod_ip);
	return fd;
}

void hostsock_connect(struct client *c, uint32_t pod_ip, const char *pod_name,
		      const struct slim_connect_req *req, const struct connect_target *t)
{
	const char *what;
	char a[ADDR_STRLEN];
	int fd, ret;

	if (t->local && fastpath_enabled()) {
		fd = hostsock_connect_socket(req, pod_ip, &what);
		ret = fd < 0 ? fd : hostsock_connect_fastpath(c, fd, pod_ip, pod_name, req, t, &what);
		if (fd >= 0)
			close(fd);
		if (ret == 0)
			return;
		/*
		 * Refused on this host: the listener entry may outlive the app's listener (handed to
		 * another process over exec or SCM_RIGHTS, then closed here). If the kernel has no
		 * such listener any more, the pod listener may still serve: fall back. Otherwise
		 * (not established in time, or refused by a live listener) try the ordinary path.
		 */
		if (ret == -ECONNREFUSED) {
			struct listener *l = listener_find(req->dst_ip, req->dst_port);

			if (!l || (l->l_host_port == t->host_port && !listener_check_alive(l))) {
				router_reply_fallback(c, SLIM_MSG_CONNECT_REP, req->hdr.id);
				return;
			}
		}
	}
	fd = hostsock_connect_socket(req, pod_ip, &what);
	ret = fd < 0 ? fd : hostsock_connect_fastopen(c, fd, pod_ip, pod_name, req, t, &what);
	if (fd >= 0)
		close(fd);
	if (ret == 0)
		return;
	log_warnx("%s: %s for %s: %s: falling back", __func__, what,
		  addr_str(a, sizeof(a), req->dst_ip, req->dst_port), strerror(-ret));
	router_reply_fallback(c, SLIM_MSG_CONNECT_REP, req->hdr.id);
}

static bool hostsock_wants_reuseport(const struct slim_listen_req *req)
{
	for (unsigned i = 0; i < req->nopts; i++) {
		const struct slim_sockopt *o = &req->opts[i];
		int v;

		if (o->level == SOL_SOCKET && o->name == SO_REUSEPORT && o->len == sizeof(int)) {
			memcpy(&v, o->val, sizeof(v));
			return v != 0;
		}
	}
	return false;
}

void hostsock_listen(struct client *c, struct pod *p, const struct slim_listen_req *req)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = router.r_fabric_ip};
	struct listener *l = listener_find(p->p_ip, req->port);
	struct slim_listen_rep rep = {0};
	socklen_t alen = sizeof(sin);
	uint64_t cookie = 0;
	const char *what;
	bool bound = false;
	int fd, ret;
	char a[ADDR_STRLEN];

	/* Bound to any address, the pod's, or a loopback one (reachable from its own pod only). */
	if ((req->bound_ip && req->bound_ip != p->p_ip &&
	     (req->bound_ip & htonl(0xff000000)) != htonl(0x7f000000)) ||
	    !req->port) {
		router_reply_fallback(c, SLIM_MSG_LISTEN_REP, req->hdr.id);
		return;
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		what = "socket";
		goto fallback_errno;
	}
	/* Accepted connections inherit the mark: the pod's replies are its egress too. */
	qos_mark_socket(fd, p->p_ip);
	what = "options";
	if ((ret = hostsock_setopt(fd, SOL_SOCKET, SO_REUSEADDR, 1)) < 0 ||
	    (ret = hostsock_apply_opts(fd, req->opts, req->nopts)) < 0 ||
	    /*
	     * No TCP_DEFER_ACCEPT: a same-host child must be established (and so in the
	     * sockhash) before the preamble is sent. Across hosts the preamble rides in the
	     * SYN (Fast Open), and the shim waits a bounded time for a straggler.
	     */
	    (ret = hostsock_setopt(fd, IPPROTO_TCP, TCP_FASTOPEN,
				   req->backlog > 128 ? req->backlog : 128)) < 0 ||
	    (ret = hostsock_setopt(fd, IPPROTO_TCP, TCP_FASTOPEN_NO_COOKIE, 1)) < 0)
		goto fallback;
	/* Several app listeners with SO_REUSEPORT share one host port, as they share the pod's. */
	if (l && hostsock_wants_reuseport(req)) {
		sin.sin_port = l->l_host_port;
		bound = bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
		sin.sin_port = 0;
	}
	what = "bind";
	if (!bound && bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
		goto fallback_errno;
	what = "listen";
	if (listen(fd, req->backlog > 0 ? req->backlog : 128) < 0)
		goto fallback_errno;
	what = "getsockname";
	if (getsockname(fd, (struct sockaddr *)&sin, &alen) < 0)
		goto fallback_errno;
	alen = sizeof(cookie);
	getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &alen);
	what = "listener table";
	if ((ret = listener_add(p, req->port, sin.sin_addr.s_addr, sin.sin_port, cookie, &l)) < 0)
		goto fallback;
	l->l_bound_ip = req->bound_ip;

	rep.hdr.type = SLIM_MSG_LISTEN_REP;
	rep.hdr.len = sizeof(rep);
	rep.hdr.id = req->hdr.id;
	rep.action = SLIM_ACT_FD;
	rep.host_ip = sin.sin_addr.s_addr;
	rep.host_port = sin.sin_port;
	router.r_nlisten++;
	client_reply(c, &rep, sizeof(rep), fd, false);
	/* Never keep it: the host listener must close with the app's last reference. */
	close(fd);
	return;

fallback_errno:
	ret = -errno;
fallback:
	log_warnx("%s: %s for %s: %s: falling back", __func__, what,
		  addr_str(a, sizeof(a), p->p_ip, req->port), strerror(-ret));
	if (fd >= 0)
		close(fd);
	router_reply_fallback(c, SLIM_MSG_LISTEN_REP, req->hdr.id);
}
