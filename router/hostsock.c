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
 * Same host, fast path on: a plain connect (no Fast Open: bytes that crossed before both ends are
 * in the sockhash would be overtaken by redirected ones), a short wait for the handshake, then
 * the preamble, redirected in order. Returns 0 when it replied, or -EINPROGRESS / -errno when the
 * caller should use the ordinary path instead.
 */
static int hostsock_connect_fastpath(struct client *c, uint32_t pod_ip, const char *pod_name,
				     const struct slim_connect_req *req,
				     const struct connect_target *t)
{
	struct sockaddr_in dst = {
		.sin_family = AF_INET, .sin_addr.s_addr = t->host_ip, .sin_port = t->host_port};
	struct sockaddr_in src;
	socklen_t alen = sizeof(src);
	struct slim_preamble pre;
	uint8_t prebuf[SLIM_PREAMBLE_LEN];
	struct slim_connect_rep rep = {0};
	struct tuple4 host, overlay;
	const char *what;
	uint64_t cookie = 0;
	ssize_t n;
	int fd, ret;

	fd = hostsock_new_socket(req, &what);
	if (fd < 0)
		return fd;
	qos_mark_socket(fd, pod_ip);
	if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 && errno != EINPROGRESS) {
		ret = -errno;
		goto out;
	}
	ret = fastpath_connect_local(fd);
	if (ret < 0)
		goto out;
	if (getsockname(fd, (struct sockaddr *)&src, &alen) < 0) {
		ret = -errno;
		goto out;
	}
	pre.src_ip = pod_ip;
	pre.src_port = req->bound_port ? req->bound_port : src.sin_port;
	pre.dst_ip = req->dst_ip;
	pre.dst_port = req->dst_port;
	slim_preamble_encode(&pre, prebuf);
	n = send(fd, prebuf, sizeof(prebuf), MSG_NOSIGNAL | MSG_DONTWAIT);
	/*
	 * EPIPE/ECONNRESET: the server side already closed this very connection (an acceptor that
	 * closes without reading). That is the app's connection and its fate: hand it over, the
	 * app reads EOF or gets EPIPE exactly as it would have with a plain socket.
	 */
	if (n != SLIM_PREAMBLE_LEN && !(n < 0 && (errno == EPIPE || errno == ECONNRESET))) {
		char a[ADDR_STRLEN];

		/* The connection is established and may be half-written: it cannot be retried. */
		log_warnx("%s: preamble for %s: %s: falling back", __func__,
			  addr_str(a, sizeof(a), req->dst_ip, req->dst_port),
			  n < 0 ? strerror(errno) : "short write");
		ret = 0;
		router_reply_fallback(c, SLIM_MSG_CONNECT_REP, req->hdr.id);
		goto out;
	}
	alen = sizeof(cookie);
	getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &alen);
	rep.hdr.type = SLIM_MSG_CONNECT_REP;
	rep.hdr.len = sizeof(rep);
	rep.hdr.id = req->hdr.id;
	rep.action = SLIM_ACT_FD;
	rep.local_ip = pod_ip;
	rep.local_port = pre.src_port;
	rep.host_ip = t->host_ip;
	rep.host_port = t->host_port;
	router.r_nconnect++;
	client_reply(c, &rep, sizeof(rep), fd, false);
	host = (struct tuple4){src.sin_addr.s_addr, t->host_ip, src.sin_port, t->host_port};
	overlay = (struct tuple4){pod_ip, req->dst_ip, pre.src_port, req->dst_port};
	if (conn_add(&host, &overlay, cookie, pod_name, true) < 0)
		log_warnx("%s: out of memory", __func__);
	ret = 0;
out:
	close(fd);
	return ret;
}

void hostsock_connect(struct client *c, uint32_t pod_ip, const char *pod_name,
		      const struct slim_connect_req *req, const struct connect_target *t)
{
	struct sockaddr_in src;
	struct sockaddr_in dst = {
		.sin_family = AF_INET, .sin_addr.s_addr = t->host_ip, .sin_port = t->host_port};
	struct slim_preamble pre;
	uint8_t prebuf[SLIM_PREAMBLE_LEN];
	struct slim_connect_rep rep = {0};
	struct tuple4 host, overlay;
	socklen_t alen = sizeof(src);
	uint64_t cookie = 0;
	const char *what;
	ssize_t n;
	int fd, ret;

	if (t->local && fastpath_enabled()) {
		ret = hostsock_connect_fastpath(c, pod_ip, pod_name, req, t);
		if (ret == 0)
			return;
		/*
		 * Refused on this host: the listener entry may outlive the app's listener (handed to
		 * another process over exec or SCM_RIGHTS, then closed here). If the kernel has no
		 * such listener any more, the pod listener may still serve: fall back.
		 */
		if (ret == -ECONNREFUSED) {
			struct listener *l = listener_find(req->dst_ip, req->dst_port);

			if (!l || (l->l_host_port == t->host_port && !listener_check_alive(l))) {
				router_reply_fallback(c, SLIM_MSG_CONNECT_REP, req->hdr.id);
				return;
			}
		}
	}
	fd = hostsock_new_socket(req, &what);
	if (fd < 0) {
		ret = fd;
		goto fallback;
	}
	qos_mark_socket(fd, pod_ip);
	/*
	 * Deferred connect: the kernel picks the source port (sharing it across destinations)
	 * but sends no SYN until our first send, so the preamble rides in the SYN.
	 */
	what = "fastopen options";
	if ((ret = hostsock_setopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1)) < 0 ||
	    (ret = hostsock_setopt(fd, IPPROTO_TCP, TCP_FASTOPEN_NO_COOKIE, 1)) < 0)
		goto fallback;
	what = "connect";
	if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) < 0)
		goto fallback_errno;
	what = "getsockname";
	if (getsockname(fd, (struct sockaddr *)&src, &alen) < 0)
		goto fallback_errno;

	pre.src_ip = pod_ip;
	pre.src_port = req->bound_port ? req->bound_port : src.sin_port;
	pre.dst_ip = req->dst_ip;
	pre.dst_port = req->dst_port;
	slim_preamble_encode(&pre, prebuf);
	what = "preamble";
	n = send(fd, prebuf, sizeof(prebuf), MSG_NOSIGNAL | MSG_DONTWAIT);
	/*
	 * EPIPE/ECONNRESET: the server side already closed this very connection (an acceptor that
	 * closes without reading). That is the app's connection and its fate: hand it over, the
	 * app reads EOF or gets EPIPE exactly as it would have with a plain socket.
	 */
	if (n != SLIM_PREAMBLE_LEN && !(n < 0 && (errno == EPIPE || errno == ECONNRESET))) {
		ret = n < 0 ? -errno : -EIO;
		goto fallback;
	}
	alen = sizeof(cookie);
	getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &alen);

	rep.hdr.type = SLIM_MSG_CONNECT_REP;
	rep.hdr.len = sizeof(rep);
	rep.hdr.id = req->hdr.id;
	rep.action = SLIM_ACT_FD;
	rep.flags = t->cached ? SLIM_REPF_CACHED : 0;
	rep.local_ip = pod_ip;
	rep.local_port = pre.src_port;
	rep.host_ip = t->host_ip;
	rep.host_port = t->host_port;
	router.r_nconnect++;

	/*
	 * No watch on the connect: a refused route is corrected by its owner (INVALIDATE when the
	 * listener goes) and, for a blocking connect, by the shim's retry; the conn entry goes with
	 * the next sweep once the app closes a socket that never connected.
	 */
	client_reply(c, &rep, sizeof(rep), fd, false);
	host = (struct tuple4){src.sin_addr.s_addr, t->host_ip, src.sin_port, t->host_port};
	overlay = (struct tuple4){pod_ip, req->dst_ip, pre.src_port, req->dst_port};
	if (conn_add(&host, &overlay, cookie, pod_name, true) < 0)
		log_warnx("%s: out of memory", __func__);
	close(fd);
	return;

fallback_errno:
	ret = -errno;
fallback : {
	char a[ADDR_STRLEN];

	log_warnx("%s: %s for %s: %s: falling back", __func__, what,
		  addr_str(a, sizeof(a), req->dst_ip, req->dst_port), strerror(-ret));
}
	if (fd >= 0)
		close(fd);
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
