// SPDX-License-Identifier: MIT
/*
 * The fabric protocol between routers: one persistent TCP connection to each node we ask
 * (opened lazily, requests pipelined and matched by id), and the connections other nodes open
 * to ask us. With a cluster secret every connection starts with a challenge-response (auth.c)
 * and nothing else is read or sent before it succeeds. Buffers are bounded both ways; a
 * malformed message closes that connection only.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "log.h"
#include "msg.h"
#include "router.h"

#define PEER_IN_MAX  4096 /* a few whole messages; they are 24-28 bytes, POD_SYNC 536 */
#define PEER_OUT_MAX (256 << 10)
#define PEER_MSG_MAX 1024 /* larger than any fabric message: a longer length is malformed */
/*
 * Bounds on what a host on the fabric can hold. A message must arrive whole within
 * PEER_MSG_TIMEOUT_MS of its first byte, and a new incoming connection must bring its first
 * one as soon (a router always starts with POD_SYNC); idle connections between messages are
 * fine. A node may have PEER_PENDING_PER_NODE incoming connections that have not sent a whole
 * message yet (a newer one closes its oldest: a restarted router must get in), and there are at
 * most PEER_INCOMING_MAX incoming connections in all.
 */
#define PEER_MSG_TIMEOUT_MS   5000
#define PEER_SWEEP_MS	      500
#define PEER_PENDING_PER_NODE 8
#define PEER_INCOMING_MAX     1024

/* Where a connection is in the challenge-response (auth.c, proto.h); AUTHED without a secret. */
enum peer_auth {
	PEER_AUTHED,
	PEER_WAIT_CHALLENGE, /* dialer */
	PEER_WAIT_OK,	     /* dialer, response sent */
	PEER_WAIT_RESPONSE,  /* acceptor, challenge sent */
};

struct peer {
	int pe_fd;
	bool pe_dialed;		   /* we connected (we send requests); else they did (we answer) */
	bool pe_connected;	   /* the TCP handshake finished */
	bool pe_heard;		   /* a whole message came */
	uint64_t pe_waiting_since; /* ms: a message (or the first one) is due since; 0: none */
	enum peer_auth pe_auth;
	uint8_t pe_challenge[SLIM_AUTH_NONCE]; /* the acceptor's nonce */
	uint8_t pe_nonce[SLIM_AUTH_NONCE];     /* the dialer's */
	char pe_node[NAME_MAX_LEN];
	uint32_t pe_ip;
	uint16_t pe_port; /* network order */
	uint8_t pe_in[PEER_IN_MAX];
	size_t pe_inlen;
	uint8_t *pe_out;
	size_t pe_outlen, pe_outcap;
	TAILQ_ENTRY(peer) pe_entry;
};

static TAILQ_HEAD(, peer) peer_list = TAILQ_HEAD_INITIALIZER(peer_list);
static int peer_listen_fd = -1;
static unsigned peer_nincoming;
static uint64_t peer_nrefused, peer_ntimed_out;

static void peer_event(struct event_loop *loop, int fd, uint32_t events, void *arg);

static void peer_close(struct peer *pe, const char *why)
{
	/* Anyone on the fabric can make incoming connections close: their lines are limited. */
	static struct log_ratelimit rl;
	char a[ADDR_STRLEN];

	if (pe->pe_dialed)
		log_warnx("peer %s (%s, outgoing): closed: %s", pe->pe_node,
			  addr_str(a, sizeof(a), pe->pe_ip, pe->pe_port), why);
	else
		log_ratelimited(&rl, LOG_LVL_INFO, "peer %s (%s, incoming): closed: %s",
				pe->pe_node, addr_str(a, sizeof(a), pe->pe_ip, pe->pe_port), why);
	if (!pe->pe_dialed)
		peer_nincoming--;
	TAILQ_REMOVE(&peer_list, pe, pe_entry);
	event_del(router.r_loop, pe->pe_fd);
	close(pe->pe_fd);
	if (pe->pe_dialed)
		resolve_on_peer_down(pe->pe_node);
	free(pe->pe_out);
	free(pe);
}

static void peer_update_mask(struct peer *pe)
{
	uint32_t mask = EVENT_READ;

	/* Queued messages wait for the authentication: nothing goes out before it. */
	if (!pe->pe_connected || (pe->pe_outlen && pe->pe_auth == PEER_AUTHED))
		mask |= EVENT_WRITE;
	event_set_mask(router.r_loop, pe->pe_fd, mask);
}

/* Writes what the socket takes. 0, or -errno when the connection is broken. */
static int peer_flush(struct peer *pe)
{
	size_t off = 0;

	if (pe->pe_auth != PEER_AUTHED) {
		peer_update_mask(pe);
		return 0;
	}

	while (off < pe->pe_outlen) {
		ssize_t n = send(pe->pe_fd, pe->pe_out + off, pe->pe_outlen - off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			return -errno;
		}
		off += (size_t)n;
	}
	memmove(pe->pe_out, pe->pe_out + off, pe->pe_outlen - off);
	pe->pe_outlen -= off;
	peer_update_mask(pe);
	return 0;
}

/* Appends a message (already in network order) and writes when connected. */
static int peer_queue(struct peer *pe, const void *msg, size_t len)
{
	if (pe->pe_outlen + len > PEER_OUT_MAX)
		return -ENOBUFS;
	if (pe->pe_outlen + len > pe->pe_outcap) {
		size_t cap = pe->pe_outcap ? pe->pe_outcap * 2 : 4096;
		uint8_t *b;

		while (cap < pe->pe_outlen + len)
			cap *= 2;
		b = realloc(pe->pe_out, cap);
		if (!b)
			return -ENOMEM;
		pe->pe_out = b;
		pe->pe_outcap = cap;
	}
	memcpy(pe->pe_out + pe->pe_outlen, msg, len);
	pe->pe_outlen += len;
	if (!pe->pe_connected)
		return 0;
	return peer_flush(pe);
}

static void peer_handle_request(struct peer *pe, const struct slim_resolve_req *req)
{
	struct slim_resolve_rep rep = {0};
	struct resolve_result res;
	char a[ADDR_STRLEN];
	int ret;

	router_resolve_listener(req->pod_ip, req->port, &res);
	/* The owner's word on ingress: the client's router checked too, but its view may lag. */
	if (res.status != SLIM_RESOLVE_NO_POD &&
	    !policy_allows_conn(req->src_ip, req->pod_ip, req->port)) {
		memset(&res, 0, sizeof(res));
		res.status = SLIM_RESOLVE_DENIED;
	}
	if (router.r_debug)
		log_debug("peer %s asks %s: status %u", pe->pe_node,
			  addr_str(a, sizeof(a), req->pod_ip, req->port), res.status);
	rep.hdr.type = htons(SLIM_MSG_RESOLVE_REP);
	rep.hdr.len = htonl(sizeof(rep));
	rep.hdr.id = req->hdr.id; /* echoed as it came, in network order */
	rep.status = htonl(res.status);
	rep.host_ip = res.host_ip;
	rep.host_port = res.host_port;
	ret = peer_queue(pe, &rep, sizeof(rep));
	if (ret < 0)
		peer_close(pe, ret == -ENOBUFS ? "peer does not read its answers" : strerror(-ret));
}

/* Sends a handshake message at once: it is the first thing on the socket, so it fits. */
static int peer_send_now(struct peer *pe, const void *msg, size_t len)
{
	ssize_t n = send(pe->pe_fd, msg, len, MSG_NOSIGNAL | MSG_DONTWAIT);

	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EIO;
}

/* The acceptor speaks first (peer_new); these are the next steps. Returns false when pe was
 * closed. */
static bool peer_handle_auth(struct peer *pe, uint16_t type, const uint8_t *buf)
{
	/* The dialer's fabric address is pe_ip on an accepted connection, ours on a dialed one. */
	uint32_t dialer = pe->pe_dialed ? router.r_fabric_ip : pe->pe_ip;
	uint32_t acceptor = pe->pe_dialed ? pe->pe_ip : router.r_fabric_ip;

	if (pe->pe_auth == PEER_WAIT_CHALLENGE && type == SLIM_MSG_AUTH_CHALLENGE) {
		const struct slim_auth_challenge *ch = (const void *)buf;
		struct slim_auth_response rep = {
			.hdr = {.type = htons(SLIM_MSG_AUTH_RESPONSE), .len = htonl(sizeof(rep))},
		};

		memcpy(pe->pe_challenge, ch->nonce, SLIM_AUTH_NONCE);
		if (auth_nonce(pe->pe_nonce) < 0 ||
		    auth_prove(AUTH_DIALER, pe->pe_challenge, pe->pe_nonce, dialer, acceptor,
			       rep.mac) < 0) {
			peer_close(pe, "cannot compute our proof");
			return false;
		}
		memcpy(rep.nonce, pe->pe_nonce, SLIM_AUTH_NONCE);
		if (peer_send_now(pe, &rep, sizeof(rep)) < 0) {
			peer_close(pe, "cannot send our proof");
			return false;
		}
		pe->pe_auth = PEER_WAIT_OK;
		return true;
	}
	if (pe->pe_auth == PEER_WAIT_RESPONSE && type == SLIM_MSG_AUTH_RESPONSE) {
		const struct slim_auth_response *r = (const void *)buf;
		struct slim_auth_ok ok = {
			.hdr = {.type = htons(SLIM_MSG_AUTH_OK), .len = htonl(sizeof(ok))},
		};

		memcpy(pe->pe_nonce, r->nonce, SLIM_AUTH_NONCE);
		if (!auth_check(AUTH_DIALER, pe->pe_challenge, pe->pe_nonce, dialer, acceptor,
				r->mac)) {
			peer_close(pe, "authentication failed (wrong secret)");
			return false;
		}
		if (auth_prove(AUTH_ACCEPTOR, pe->pe_challenge, pe->pe_nonce, dialer, acceptor,
			       ok.mac) < 0 ||
		    peer_send_now(pe, &ok, sizeof(ok)) < 0) {
			peer_close(pe, "cannot send our proof");
			return false;
		}
		pe->pe_auth = PEER_AUTHED;
		log_info("peer %s: authenticated (incoming)", pe->pe_node);
		return true;
	}
	if (pe->pe_auth == PEER_WAIT_OK && type == SLIM_MSG_AUTH_OK) {
		const struct slim_auth_ok *ok = (const void *)buf;

		if (!auth_check(AUTH_ACCEPTOR, pe->pe_challenge, pe->pe_nonce, dialer, acceptor,
				ok->mac)) {
			peer_close(pe, "authentication failed (wrong secret)");
			return false;
		}
		pe->pe_auth = PEER_AUTHED;
		log_info("peer %s: authenticated (outgoing)", pe->pe_node);
		/* What waited for this goes now (pod announcements, requests). */
		if (peer_flush(pe) < 0) {
			peer_close(pe, "send failed");
			return false;
		}
		return true;
	}
	peer_close(pe, "not authenticated");
	return false;
}

/* Returns false when pe was closed. */
static bool peer_handle_message(struct peer *pe, const uint8_t *raw, size_t len)
{
	/* Messages sit at any offset of the stream buffer: work on an aligned copy. */
	union {
		struct slim_msg_hdr h;
		struct slim_resolve_rep rep;
		struct slim_pod_sync ps;
		uint8_t bytes[PEER_MSG_MAX];
	} m;
	const uint8_t *buf = m.bytes;
	uint16_t type;

	memcpy(m.bytes, raw, len);
	type = ntohs(m.h.type);
	if (slim_msg_check_fabric(buf, len) < 0) {
		peer_close(pe, "malformed message");
		return false;
	}
	/* Before the challenge-response, nothing but its messages is even looked at. */
	if (pe->pe_auth != PEER_AUTHED)
		return peer_handle_auth(pe, type, buf);
	if (type == SLIM_MSG_RESOLVE_REQ && !pe->pe_dialed) {
		struct slim_resolve_req req;

		memcpy(&req, buf, sizeof(req));
		peer_handle_request(pe, &req);
		/* peer_handle_request may have closed pe: check it is still listed. */
		struct peer *p;

		TAILQ_FOREACH(p, &peer_list, pe_entry)
			if (p == pe)
				return true;
		return false;
	}
	if (type == SLIM_MSG_RESOLVE_REP && pe->pe_dialed) {
		struct slim_resolve_rep rep;
		struct resolve_result res;
		uint32_t status;

		memcpy(&rep, buf, sizeof(rep));
		status = ntohl(rep.status);
		if (status < SLIM_RESOLVE_FOUND || status > SLIM_RESOLVE_DENIED ||
		    (status == SLIM_RESOLVE_FOUND && (!rep.host_ip || !rep.host_port))) {
			peer_close(pe, "malformed answer");
			return false;
		}
		res.status = status;
		res.host_ip = rep.host_ip;
		res.host_port = rep.host_port;
		resolve_on_reply(pe->pe_node, ntohl(rep.hdr.id), &res);
		return true;
	}
	if (type == SLIM_MSG_POD_SYNC && !pe->pe_dialed) {
		struct slim_pod_sync ps;

		memcpy(&ps, buf, sizeof(ps));
		if (podsync_receive(pe->pe_node, &ps) == -EBADMSG) {
			peer_close(pe, "malformed pod announcement");
			return false;
		}
		return true;
	}
	if (type == SLIM_MSG_INVALIDATE && pe->pe_dialed) {
		struct slim_invalidate inv;

		memcpy(&inv, buf, sizeof(inv));
		route_forget(inv.pod_ip, inv.port, 0);
		return true;
	}
	peer_close(pe, "unexpected message type");
	return false;
}

/*
 * After a read: a message that started and is not whole yet is due within PEER_MSG_TIMEOUT_MS
 * of when it started (or of the last whole one, when data kept coming), never of the last byte,
 * so a trickle cannot hold a connection forever.
 */
static void peer_note_progress(struct peer *pe, bool whole)
{
	if (whole)
		pe->pe_heard = true;
	/* During the challenge-response the next step is always due. */
	if (pe->pe_inlen == 0 && pe->pe_heard && pe->pe_auth == PEER_AUTHED)
		pe->pe_waiting_since = 0;
	else if (whole || !pe->pe_waiting_since)
		pe->pe_waiting_since = event_now_ms();
}

static void peer_read(struct peer *pe)
{
	/* A bounded number of reads per wakeup, so one busy peer cannot starve the loop. */
	for (int round = 0; round < 16; round++) {
		ssize_t n = recv(pe->pe_fd, pe->pe_in + pe->pe_inlen,
				 sizeof(pe->pe_in) - pe->pe_inlen, MSG_DONTWAIT);
		size_t off = 0;

		if (n == 0) {
			peer_close(pe, "connection closed by peer");
			return;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				peer_close(pe, strerror(errno));
			return;
		}
		pe->pe_inlen += (size_t)n;
		while (pe->pe_inlen - off >= sizeof(struct slim_msg_hdr)) {
			uint32_t len;

			memcpy(&len, pe->pe_in + off + offsetof(struct slim_msg_hdr, len),
			       sizeof(len));
			len = ntohl(len);
			if (len < sizeof(struct slim_msg_hdr) || len > PEER_MSG_MAX) {
				peer_close(pe, "malformed message length");
				return;
			}
			if (pe->pe_inlen - off < len)
				break;
			if (!peer_handle_message(pe, pe->pe_in + off, len))
				return;
			off += len;
		}
		memmove(pe->pe_in, pe->pe_in + off, pe->pe_inlen - off);
		pe->pe_inlen -= off;
		peer_note_progress(pe, off > 0);
	}
}

static void peer_event(struct event_loop *loop, int fd, uint32_t events, void *arg)
{
	struct peer *pe = arg;

	if (!pe->pe_connected && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
		int err = 0;
		socklen_t len = sizeof(err);

		getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err) {
			peer_close(pe, strerror(err));
			return;
		}
		if (!(events & EPOLLOUT))
			return;
		pe->pe_connected = true;
		log_info("peer %s: connected", pe->pe_node);
	}
	if (events & EPOLLOUT) {
		int ret = peer_flush(pe);

		if (ret < 0) {
			peer_close(pe, strerror(-ret));
			return;
		}
	}
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
		peer_read(pe);
}

static struct peer *peer_new(int fd, bool dialed, const char *node, uint32_t ip, uint16_t port)
{
	struct peer *pe = calloc(1, sizeof(*pe));
	int one = 1;

	if (!pe)
		return NULL;
	pe->pe_fd = fd;
	pe->pe_dialed = dialed;
	pe->pe_connected = !dialed;
	snprintf(pe->pe_node, sizeof(pe->pe_node), "%s", node);
	pe->pe_ip = ip;
	pe->pe_port = port;
	pe->pe_auth = !auth_enabled() ? PEER_AUTHED
		      : dialed	      ? PEER_WAIT_CHALLENGE
				      : PEER_WAIT_RESPONSE;
	/* An incoming connection owes us its first message; a dialed one, with a secret, the
	 * acceptor's challenge. */
	pe->pe_waiting_since = dialed && pe->pe_auth == PEER_AUTHED ? 0 : event_now_ms();
	if (pe->pe_auth == PEER_WAIT_RESPONSE) {
		struct slim_auth_challenge ch = {
			.hdr = {.type = htons(SLIM_MSG_AUTH_CHALLENGE), .len = htonl(sizeof(ch))},
		};

		/* We speak first: a fresh nonce the dialer must prove the secret over. */
		if (auth_nonce(pe->pe_challenge) < 0) {
			free(pe);
			return NULL;
		}
		memcpy(ch.nonce, pe->pe_challenge, SLIM_AUTH_NONCE);
		if (send(fd, &ch, sizeof(ch), MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)sizeof(ch)) {
			free(pe);
			return NULL;
		}
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (event_add(router.r_loop, fd, EVENT_READ | (dialed ? EVENT_WRITE : 0), peer_event, pe) <
	    0) {
		free(pe);
		return NULL;
	}
	TAILQ_INSERT_TAIL(&peer_list, pe, pe_entry);
	if (!dialed)
		peer_nincoming++;
	return pe;
}

/* Closes connections whose message is overdue. */
static long peer_sweep(struct event_loop *loop, void *arg)
{
	uint64_t now = event_now_ms();
	struct peer *pe, *next;

	for (pe = TAILQ_FIRST(&peer_list); pe; pe = next) {
		next = TAILQ_NEXT(pe, pe_entry);
		if (pe->pe_waiting_since && now - pe->pe_waiting_since >= PEER_MSG_TIMEOUT_MS) {
			peer_ntimed_out++;
			peer_close(pe, pe->pe_auth != PEER_AUTHED ? "not authenticated within 5 s"
				       : pe->pe_heard || pe->pe_inlen ? "incomplete message for 5 s"
								      : "nothing sent for 5 s");
		}
	}
	return PEER_SWEEP_MS;
}

/* Makes room for one more incoming connection from node n: false when it must be refused. */
static bool peer_admit(const struct cluster_node *n)
{
	struct peer *pe, *oldest = NULL;
	unsigned pending = 0;

	if (peer_nincoming >= PEER_INCOMING_MAX)
		return false;
	TAILQ_FOREACH(pe, &peer_list, pe_entry) {
		if (pe->pe_dialed || (pe->pe_heard && pe->pe_auth == PEER_AUTHED) ||
		    strcmp(pe->pe_node, n->cn_name))
			continue;
		if (!oldest)
			oldest = pe; /* the list is in connection order */
		pending++;
	}
	if (pending >= PEER_PENDING_PER_NODE) {
		peer_nrefused++;
		peer_close(oldest, "a newer connection from the same node");
	}
	return true;
}

static void peer_accept(struct event_loop *loop, int fd, uint32_t events, void *arg)
{
	static struct log_ratelimit rl;

	for (int i = 0; i < 16; i++) {
		struct sockaddr_in sin;
		socklen_t len = sizeof(sin);
		const struct cluster_node *n;
		char a[ADDR_STRLEN];
		int s;

		/* At EMFILE this sheds a connection and pauses us (accept.c). */
		s = accept_conn(fd, (struct sockaddr *)&sin, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (s == -ECONNABORTED || s == -EINTR)
			continue;
		if (s < 0) {
			if (s != -EAGAIN && s != -EMFILE && s != -ENFILE)
				log_ratelimited(&rl, LOG_LVL_WARN, "%s: accept: %s", __func__,
						strerror(-s));
			return;
		}
		n = cluster_node_by_ip(router.r_cluster, sin.sin_addr.s_addr);
		if (!n || n == router.r_self) {
			peer_nrefused++;
			log_ratelimited(&rl, LOG_LVL_WARN,
					"%s: refusing %s: not another node's fabric_ip", __func__,
					addr_str(a, sizeof(a), sin.sin_addr.s_addr, sin.sin_port));
			close(s);
			continue;
		}
		if (!peer_admit(n)) {
			peer_nrefused++;
			log_ratelimited(&rl, LOG_LVL_WARN,
					"%s: refusing %s: %d incoming fabric connections already",
					__func__,
					addr_str(a, sizeof(a), sin.sin_addr.s_addr, sin.sin_port),
					PEER_INCOMING_MAX);
			close(s);
			continue;
		}
		if (!peer_new(s, false, n->cn_name, sin.sin_addr.s_addr, sin.sin_port)) {
			log_warnx("%s: out of memory", __func__);
			close(s);
		}
	}
}

/* The listening socket's part of peer_listen, for a socket of ours or one handed over. */
static int peer_listen_fd_use(int fd)
{
	int ret = event_add(router.r_loop, fd, EVENT_READ, peer_accept, NULL);

	if (ret < 0)
		return ret;
	peer_listen_fd = fd;
	event_timer_add(router.r_loop, PEER_SWEEP_MS, peer_sweep, NULL);
	return 0;
}

int peer_listen(uint32_t ip, uint16_t port)
{
	struct sockaddr_in sin = {
		.sin_family = AF_INET, .sin_addr.s_addr = ip, .sin_port = htons(port)};
	int fd, one = 1, ret;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(fd, 128) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	ret = peer_listen_fd_use(fd);
	if (ret < 0)
		close(fd);
	return ret;
}

static char *peer_hex(const uint8_t *b, size_t n)
{
	char *s = malloc(2 * n + 1);

	for (size_t i = 0; s && i < n; i++)
		snprintf(s + 2 * i, 3, "%02x", b[i]);
	if (s)
		s[2 * n] = '\0';
	return s;
}

/* Decodes hex into b (at most max bytes); the length, or -EINVAL. */
static ssize_t peer_unhex(const char *s, uint8_t *b, size_t max)
{
	size_t n = s ? strlen(s) : 0;

	if (!s || n % 2 || n / 2 > max)
		return -EINVAL;
	for (size_t i = 0; i < n / 2; i++) {
		unsigned v;

		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			return -EINVAL;
		b[i] = (uint8_t)v;
	}
	return (ssize_t)(n / 2);
}

json_t *peer_export(struct upgrade_fds *f)
{
	uint64_t now = event_now_ms();
	json_t *list = json_array();
	struct peer *pe;

	TAILQ_FOREACH(pe, &peer_list, pe_entry) {
		char *in = peer_hex(pe->pe_in, pe->pe_inlen);
		char *out = peer_hex(pe->pe_out, pe->pe_outlen);
		char *ch = peer_hex(pe->pe_challenge, sizeof(pe->pe_challenge));
		char *nonce = peer_hex(pe->pe_nonce, sizeof(pe->pe_nonce));

		json_array_append_new(
			list, json_pack("{s:i, s:b, s:b, s:b, s:I, s:i, s:s?, s:s?, s:s, s:I, s:i, "
					"s:s?, s:s?}",
					"fd", upgrade_fd_put(f, pe->pe_fd), "dialed", pe->pe_dialed,
					"connected", pe->pe_connected, "heard", pe->pe_heard,
					"waiting_ms",
					(json_int_t)(pe->pe_waiting_since
							     ? now - pe->pe_waiting_since + 1
							     : 0),
					"auth", (int)pe->pe_auth, "challenge", ch, "nonce", nonce,
					"node", pe->pe_node, "ip", (json_int_t)pe->pe_ip, "port",
					(int)pe->pe_port, "in", in, "out", out));
		free(in);
		free(out);
		free(ch);
		free(nonce);
	}
	return json_pack("{s:i, s:o}", "listener", upgrade_fd_put(f, peer_listen_fd), "peers",
			 list);
}

/* One fabric connection of a router before us, mid-message or not: the other router never
 * noticed. */
static int peer_adopt_one(json_t *o, struct upgrade_fds *f)
{
	const char *node = json_string_value(json_object_get(o, "node"));
	const char *out = json_string_value(json_object_get(o, "out"));
	int fd = upgrade_fd_take(f, json_object_get(o, "fd"));
	int auth = (int)json_integer_value(json_object_get(o, "auth"));
	uint64_t waiting = (uint64_t)json_integer_value(json_object_get(o, "waiting_ms"));
	struct peer *pe = NULL;
	ssize_t n;

	if (fd < 0 || !node || auth < PEER_AUTHED || auth > PEER_WAIT_RESPONSE ||
	    !(pe = calloc(1, sizeof(*pe))))
		goto bad;
	pe->pe_fd = fd;
	pe->pe_dialed = json_is_true(json_object_get(o, "dialed"));
	pe->pe_connected = json_is_true(json_object_get(o, "connected"));
	pe->pe_heard = json_is_true(json_object_get(o, "heard"));
	pe->pe_auth = (enum peer_auth)auth;
	snprintf(pe->pe_node, sizeof(pe->pe_node), "%s", node);
	pe->pe_ip = (uint32_t)json_integer_value(json_object_get(o, "ip"));
	pe->pe_port = (uint16_t)json_integer_value(json_object_get(o, "port"));
	pe->pe_waiting_since = waiting ? event_now_ms() - (waiting - 1) : 0;
	if (peer_unhex(json_string_value(json_object_get(o, "challenge")), pe->pe_challenge,
		       sizeof(pe->pe_challenge)) < 0 ||
	    peer_unhex(json_string_value(json_object_get(o, "nonce")), pe->pe_nonce,
		       sizeof(pe->pe_nonce)) < 0 ||
	    (n = peer_unhex(json_string_value(json_object_get(o, "in")), pe->pe_in,
			    sizeof(pe->pe_in))) < 0)
		goto bad;
	pe->pe_inlen = (size_t)n;
	if (out && *out) {
		pe->pe_outcap = strlen(out) / 2;
		pe->pe_out = malloc(pe->pe_outcap);
		if (!pe->pe_out || (n = peer_unhex(out, pe->pe_out, pe->pe_outcap)) < 0)
			goto bad;
		pe->pe_outlen = (size_t)n;
	}
	if (event_add(router.r_loop, fd, EVENT_READ, peer_event, pe) < 0)
		goto bad;
	TAILQ_INSERT_TAIL(&peer_list, pe, pe_entry);
	if (!pe->pe_dialed)
		peer_nincoming++;
	peer_update_mask(pe);
	return 0;
bad:
	if (pe)
		free(pe->pe_out);
	free(pe);
	if (fd >= 0)
		close(fd);
	return -EINVAL;
}

int peer_adopt(json_t *doc, struct upgrade_fds *f)
{
	int ret = upgrade_fd_use(f, json_object_get(doc, "listener"), peer_listen_fd_use);
	json_t *o;
	size_t i;

	if (ret < 0)
		return ret;
	/* One that cannot be taken is closed: the other router dials again and re-announces. */
	json_array_foreach(json_object_get(doc, "peers"), i, o)
		peer_adopt_one(o, f);
	return 0;
}

uint64_t peer_refused_count(void)
{
	return peer_nrefused;
}

uint64_t peer_timed_out_count(void)
{
	return peer_ntimed_out;
}

/* A new connection we opened: the other router learns our pods from scratch (queued until the
 * handshake completes). */
static void peer_sync_pods(struct peer *pe)
{
	const struct dir_pod *d = NULL;
	struct slim_pod_sync m;
	size_t b = 0;
	int ret;

	podsync_build(&m, SLIM_POD_SYNC_RESET, NULL);
	ret = peer_queue(pe, &m, sizeof(m));
	while (!ret && (d = directory_iter(&b, d))) {
		if (!d->dp_local)
			continue;
		podsync_build(&m, SLIM_POD_SYNC_ADD, d);
		ret = peer_queue(pe, &m, sizeof(m));
	}
	if (ret < 0)
		log_warnx("%s: %s: %s", __func__, pe->pe_node, strerror(-ret));
}

static struct peer *peer_dial(const struct cluster_node *node)
{
	struct sockaddr_in src = {.sin_family = AF_INET, .sin_addr.s_addr = router.r_fabric_ip};
	struct sockaddr_in dst = {.sin_family = AF_INET,
				  .sin_addr.s_addr = node->cn_fabric_ip,
				  .sin_port = htons(router.r_peer_port)};
	struct peer *pe;
	int fd, one = 1;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	/* From our fabric address: the other router accepts only cluster nodes' addresses. */
	setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0 ||
	    (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 && errno != EINPROGRESS)) {
		/* A node that is down is dialed every sweep: say so a few times, not forever. */
		static struct log_ratelimit rl;

		log_ratelimited(&rl, LOG_LVL_WARN, "%s: %s: %s", __func__, node->cn_name,
				strerror(errno));
		close(fd);
		return NULL;
	}
	pe = peer_new(fd, true, node->cn_name, dst.sin_addr.s_addr, dst.sin_port);
	if (!pe)
		close(fd);
	else
		peer_sync_pods(pe);
	return pe;
}

int peer_send_resolve(const struct cluster_node *node, uint32_t id, uint32_t src_ip, uint32_t ip,
		      uint16_t port)
{
	struct slim_resolve_req req = {0};
	struct peer *pe;
	int ret;

	TAILQ_FOREACH(pe, &peer_list, pe_entry)
		if (pe->pe_dialed && !strcmp(pe->pe_node, node->cn_name))
			break;
	if (!pe && !(pe = peer_dial(node)))
		return -ECONNREFUSED;
	req.hdr.type = htons(SLIM_MSG_RESOLVE_REQ);
	req.hdr.len = htonl(sizeof(req));
	req.hdr.id = htonl(id);
	req.pod_ip = ip;
	req.port = port;
	req.src_ip = src_ip;
	ret = peer_queue(pe, &req, sizeof(req));
	if (ret == -ENOBUFS)
		return ret; /* this request falls back; the connection itself is fine */
	if (ret < 0) {
		/* Nothing of this request is waiting yet, so closing fails only the others. */
		peer_close(pe, strerror(-ret));
		return ret;
	}
	return 0;
}

void peer_broadcast_invalidate(uint32_t ip, uint16_t port)
{
	struct slim_invalidate inv = {
		.hdr = {.type = htons(SLIM_MSG_INVALIDATE), .len = htonl(sizeof(inv))},
		.pod_ip = ip,
		.port = port,
	};
	struct peer *pe, *next;

	/* Nodes that asked us opened these connections; only they can hold our answers. */
	for (pe = TAILQ_FIRST(&peer_list); pe; pe = next) {
		int ret;

		next = TAILQ_NEXT(pe, pe_entry);
		if (pe->pe_dialed || !pe->pe_connected || pe->pe_auth != PEER_AUTHED)
			continue;
		ret = peer_queue(pe, &inv, sizeof(inv));
		if (ret < 0)
			peer_close(pe, ret == -ENOBUFS ? "peer does not read" : strerror(-ret));
	}
}

void peer_cluster_changed(void)
{
	struct peer *pe, *next;

	for (pe = TAILQ_FIRST(&peer_list); pe; pe = next) {
		const struct cluster_node *n = cluster_node_by_name(router.r_cluster, pe->pe_node);

		next = TAILQ_NEXT(pe, pe_entry);
		if (!n || n == router.r_self || n->cn_fabric_ip != pe->pe_ip)
			peer_close(pe, "node left the cluster or moved");
	}
}

void peer_close_all(void)
{
	struct peer *pe;

	while ((pe = TAILQ_FIRST(&peer_list)))
		peer_close(pe, "shutting down");
	if (peer_listen_fd >= 0) {
		event_del(router.r_loop, peer_listen_fd);
		close(peer_listen_fd);
		peer_listen_fd = -1;
	}
}

unsigned peer_connected_count(bool dialed)
{
	struct peer *pe;
	unsigned n = 0;

	TAILQ_FOREACH(pe, &peer_list, pe_entry)
		n += pe->pe_connected && pe->pe_dialed == dialed;
	return n;
}

json_t *peer_list_json(void)
{
	json_t *a = json_array();
	struct peer *pe;

	TAILQ_FOREACH(pe, &peer_list, pe_entry) {
		char addr[ADDR_STRLEN];

		json_array_append_new(
			a, json_pack("{s:s, s:s, s:s, s:b, s:b, s:I}", "node", pe->pe_node, "addr",
				     addr_str(addr, sizeof(addr), pe->pe_ip, pe->pe_port), "dir",
				     pe->pe_dialed ? "out" : "in", "connected", pe->pe_connected,
				     "authenticated", auth_enabled() && pe->pe_auth == PEER_AUTHED,
				     "queued", (json_int_t)pe->pe_outlen));
	}
	return a;
}

/*
 * Our pods must be announced to every other node, also after a connection broke (the other
 * router restarted, the fabric hiccuped): called from the periodic sweep, it dials every node
 * we have no connection to, which announces our pods from scratch.
 */
void peer_reconnect_all(void)
{
	const struct cluster *cl = router.r_cluster;

	if (!pod_count())
		return;
	for (size_t i = 0; i < cl->cl_nnodes; i++)
		if (&cl->cl_nodes[i] != router.r_self)
			peer_ensure(&cl->cl_nodes[i]);
}

void peer_ensure(const struct cluster_node *node)
{
	struct peer *pe;

	TAILQ_FOREACH(pe, &peer_list, pe_entry)
		if (pe->pe_dialed && !strcmp(pe->pe_node, node->cn_name))
			return;
	peer_dial(node);
}

void peer_broadcast(const void *msg, size_t len)
{
	struct peer *pe, *next;

	for (pe = TAILQ_FIRST(&peer_list); pe; pe = next) {
		int ret;

		next = TAILQ_NEXT(pe, pe_entry);
		if (!pe->pe_dialed)
			continue;
		ret = peer_queue(pe, msg, len);
		/* A peer that cannot take it must re-learn everything: reconnect from scratch. */
		if (ret < 0)
			peer_close(pe, strerror(-ret));
	}
}
