// SPDX-License-Identifier: MIT
/*
 * Host listeners: the host-side listener for a pod's LISTEN_REQ, governed from birth (its
 * connections carry the client's identity, checked by the kernel before accept() returns), and
 * handed over. The router keeps no descriptor: it closes with the app's last reference.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <linux/sockios.h>

#include <linux/types.h>

#include "govern_abi.h"
#include "log.h"
#include "router.h"


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

/*
 * The proof a LISTEN_REQ carries: the app's own pod listener (passed with the request). It must
 * be a listening TCP socket of the caller's pod, bound to the port (and address) a host listener
 * is asked for. Another process of the pod cannot listen on a port a server holds (the kernel
 * refuses the bind, or SO_REUSEPORT across users), so it cannot take that port's slim clients.
 */
static bool hostsock_listener_proven(int fd, const struct pod *p,
				     const struct slim_listen_req *req)
{
	struct sockaddr_in6 sa;
	socklen_t len = sizeof(sa);
	int on = 0, proto = 0, ns;
	socklen_t olen = sizeof(int);
	struct stat st;

	if (fd < 0)
		return false;
	ns = ioctl(fd, SIOCGSKNS);
	if (ns < 0)
		return false;
	if (fstat(ns, &st) < 0 || st.st_dev != p->p_ns_dev || st.st_ino != p->p_ns_ino) {
		close(ns);
		return false;
	}
	close(ns);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &olen) < 0 || !on)
		return false;
	olen = sizeof(int);
	if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &olen) < 0 || proto != IPPROTO_TCP)
		return false;
	if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		return false;
	if (sa.sin6_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&sa;

		return sin->sin_port == req->port && sin->sin_addr.s_addr == req->bound_ip;
	}
	return sa.sin6_family == AF_INET6 && sa.sin6_port == req->port;
}

/*
 * The host listener's backlog: at least this much, whatever the app asked (the kernel caps it
 * at net.core.somaxconn). POSIX makes the backlog a hint, and the app's own listener keeps the
 * app's; but a host listener with a small one (Python's http.server asks for 5) turns a burst
 * of clients into listen-queue overflows: SYNs dropped, SYN cookies, ACKs dropped while the
 * queue is full, each client then waiting on its own exponential retransmission backoff — 200
 * connects at once left 4–75 of them stuck for over 30 s here (the overlay's listener, backlog
 * 5, loses some the same way). With room for the burst every one completes in ~0.1 s, and the
 * app still takes them at its own pace with accept().
 */
#define HOSTSOCK_BACKLOG_MIN 4096

void hostsock_listen(struct client *c, struct pod *p, const struct slim_listen_req *req)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = router.r_fabric_ip};
	struct listener *l = listener_find(p->p_ip, req->port);
	struct slim_listen_rep rep = {0};
	struct slim_sk st = {.ss_pod_ip = p->p_ip, .ss_flags = SLIM_SK_HANDED | SLIM_SK_LISTENER};
	struct pollfd pf = {.fd = c->cs_fd, .events = POLLOUT};
	socklen_t alen = sizeof(sin);
	uint64_t cookie = 0;
	const char *what;
	bool bound = false;
	bool proven = hostsock_listener_proven(c->cs_req_fd, p, req);
	int fd, ret;
	char a[ADDR_STRLEN];

	/*
	 * Done with the app's listener before answering: once the shim has the answer, nothing of
	 * ours holds that socket open (a close and a new bind to its port right after must work).
	 */
	if (c->cs_req_fd >= 0)
		close(c->cs_req_fd);
	c->cs_req_fd = -1;
	/* Bound to any address, the pod's, or a loopback one (reachable from its own pod only). */
	if ((req->bound_ip && req->bound_ip != p->p_ip &&
	     (req->bound_ip & htonl(0xff000000)) != htonl(0x7f000000)) ||
	    !req->port || !governor_enabled()) {
		router_reply_fallback(c, SLIM_MSG_LISTEN_REP, req->hdr.id);
		return;
	}
	/*
	 * An asker that hung up (a shim waits 2 s for a stopped router, then asks again later on a
	 * new connection) would drop the reply, host listener and all, and the entry made here
	 * would stand in for the one its next request makes. One poll, never a wait.
	 */
	if (poll(&pf, 1, 0) == 1 && (pf.revents & POLLHUP)) {
		router_reply_fallback(c, SLIM_MSG_LISTEN_REP, req->hdr.id);
		return;
	}
	if (!proven) {
		static struct log_ratelimit rl;

		log_ratelimited(&rl, LOG_LVL_WARN,
				"%s: pid %d of pod %s asks for port %u without listening there",
				__func__, (int)c->cs_pid, p->p_name, ntohs(req->port));
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
	    (ret = hostsock_apply_opts(fd, req->opts, req->nopts)) < 0)
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
	/*
	 * Governed from before listen(): the kernel saves each SYN for its identity, lets in only
	 * SYNs with a valid one, and names every accepted connection by its overlay addresses.
	 */
	what = "governance";
	st.ss_local_ip = req->bound_ip;
	st.ss_local_port = req->port;
	if ((ret = governor_sock_set(fd, &st)) < 0)
		goto fallback;
	what = "listen";
	if (listen(fd, req->backlog > HOSTSOCK_BACKLOG_MIN ? req->backlog : HOSTSOCK_BACKLOG_MIN) < 0)
		goto fallback_errno;
	what = "getsockname";
	if (getsockname(fd, (struct sockaddr *)&sin, &alen) < 0)
		goto fallback_errno;
	alen = sizeof(cookie);
	getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &alen);
	what = "listener table";
	if ((ret = listener_add(p, req->port, req->bound_ip, sin.sin_addr.s_addr, sin.sin_port,
				cookie, &l)) < 0)
		goto fallback;

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
