/* SPDX-License-Identifier: MIT */
/*
 * The wire protocols: shim <-> router and slimctl <-> router over the router's UNIX control
 * socket, router <-> router over TCP on the fabric. Shared by every program so both ends of a
 * message are compiled from one definition.
 *
 * Control socket: AF_UNIX SOCK_SEQPACKET. One message per sendmsg/recvmsg, so framing is the
 * kernel's and a descriptor passed with SCM_RIGHTS belongs to exactly one message. Every message
 * starts with struct slim_msg_hdr; hdr.len is the whole message and must equal the bytes received.
 * A reply carries the request's id. A malformed message closes that one client.
 *
 * Fabric protocol: TCP, the same header framing a byte stream (hdr.len delimits messages).
 *
 * All integers in the header and in the binary payloads are in host byte order on the control
 * socket (both ends share a kernel) and in network byte order on the fabric. IPv4 addresses and
 * ports are always kept in network byte order (as in struct sockaddr_in).
 */
#ifndef SLIM_PROTO_H
#define SLIM_PROTO_H

#include <stdint.h>

#define SLIM_PROTO_VERSION 2

/* Largest message either side accepts; ctl replies larger than this are split (SLIM_MSGF_MORE). */
#define SLIM_MSG_MAX 65536

/* Default control socket; slimrouterd --socket and SLIM_ROUTER_SOCKET override it. */
#define SLIM_DEFAULT_SOCKET "/run/slim/router.sock"
/* Default TCP port of the router-to-router protocol on the fabric. */
#define SLIM_DEFAULT_PEER_PORT 7471

enum slim_msg_type {
	/* shim -> router, reply SLIM_MSG_LISTEN_REP (+ host listener fd when action is FD) */
	SLIM_MSG_LISTEN_REQ = 3,
	SLIM_MSG_LISTEN_REP = 4,
	/* shim -> router, reply SLIM_MSG_POOL_REP with up to SLIM_POOL_BATCH governed host
	 * sockets attached: the sockets the shim connects itself (docs/design.md) */
	SLIM_MSG_POOL_REQ = 8,
	SLIM_MSG_POOL_REP = 9,
	/* shim -> router, reply SLIM_MSG_ROUTE_REP: a governed connect found no route (or no
	 * verdict) in the kernel's maps; the router decides and fills them */
	SLIM_MSG_ROUTE_REQ = 10,
	SLIM_MSG_ROUTE_REP = 11,
	/* slimctl -> router: JSON request; reply SLIM_MSG_CTL_REP with a JSON payload */
	SLIM_MSG_CTL_REQ = 16,
	SLIM_MSG_CTL_REP = 17,
	/* router -> router on the fabric */
	SLIM_MSG_RESOLVE_REQ = 32,
	SLIM_MSG_RESOLVE_REP = 33,
	/* router -> router, one-way: forget any cached resolution of (pod_ip, port) */
	SLIM_MSG_INVALIDATE = 34,
	/* router -> router, one-way, on connections it opened: its pods, for policy selectors */
	SLIM_MSG_POD_SYNC = 35,
	/* router <-> router, first on every connection when the cluster has a secret: the
	 * acceptor's challenge, the dialer's response, the acceptor's proof (slim_auth_*) */
	SLIM_MSG_AUTH_CHALLENGE = 36,
	SLIM_MSG_AUTH_RESPONSE = 37,
	SLIM_MSG_AUTH_OK = 38,
};

/* hdr.flags */
#define SLIM_MSGF_MORE 0x0001 /* CTL_REQ/CTL_REP: more fragments of this message follow */

struct slim_msg_hdr {
	uint16_t type;
	uint16_t flags;
	uint32_t len; /* whole message, header included */
	uint32_t id;  /* chosen by the requester, echoed in the reply */
	uint32_t reserved; /* must be 0 */
};

/*
 * Socket options an app set before connect/listen, replayed by the router on the host socket
 * before it connects or listens (so SO_RCVBUF shapes window scaling, SO_REUSEPORT groups
 * listeners). Only options in the sockopt whitelist (sockopt.h) are accepted.
 */
#define SLIM_MAX_SOCKOPTS 32
#define SLIM_SOCKOPT_MAXLEN 16

struct slim_sockopt {
	int32_t level;
	int32_t name;
	uint32_t len;
	uint8_t val[SLIM_SOCKOPT_MAXLEN];
};

enum slim_action {
	SLIM_ACT_FD = 1,       /* LISTEN_REP: a host listener is attached; POOL_REP: sockets are */
	SLIM_ACT_FALLBACK = 2, /* not for slim (no slim listener, unknown pod, ...): plain syscall */
	SLIM_ACT_ERROR = 3,    /* fail the call with rep.error (e.g. ECONNREFUSED by policy) */
	SLIM_ACT_ROUTE = 4,    /* ROUTE_REP: the route is in the kernel's maps: connect again */
};

/* Sockets per POOL_REP (SCM_RIGHTS carries at most 253 descriptors per message). */
#define SLIM_POOL_BATCH 32

struct slim_pool_req {
	struct slim_msg_hdr hdr;
	uint32_t count; /* 1..SLIM_POOL_BATCH */
};

struct slim_pool_rep {
	struct slim_msg_hdr hdr;
	uint32_t action; /* SLIM_ACT_FD (count sockets attached) or SLIM_ACT_FALLBACK */
	uint32_t count;
};

/* ROUTE_REQ.flags */
#define SLIM_ROUTEF_RETRY 0x0001 /* a connect on the route was refused: resolve afresh */

struct slim_route_req {
	struct slim_msg_hdr hdr;
	uint32_t dst_ip; /* overlay (or in-pod loopback) destination */
	uint16_t dst_port;
	uint16_t flags;
};

struct slim_route_rep {
	struct slim_msg_hdr hdr;
	uint32_t action; /* SLIM_ACT_ROUTE, SLIM_ACT_FALLBACK or SLIM_ACT_ERROR */
	int32_t error;	 /* errno for SLIM_ACT_ERROR */
};

struct slim_listen_req {
	struct slim_msg_hdr hdr;
	uint32_t bound_ip; /* 0.0.0.0 or the pod's overlay IP */
	uint16_t port;     /* overlay port the app listens on */
	uint16_t nopts;
	int32_t backlog;
	struct slim_sockopt opts[SLIM_MAX_SOCKOPTS];
};

struct slim_listen_rep {
	struct slim_msg_hdr hdr;
	uint32_t action; /* SLIM_ACT_FD or SLIM_ACT_FALLBACK or SLIM_ACT_ERROR */
	int32_t error;
	uint32_t host_ip; /* where the host listener listens (fabric address) */
	uint16_t host_port;
	uint16_t pad;
};

/*
 * CTL_REQ / CTL_REP: hdr followed by UTF-8 JSON text (not NUL-terminated). A request may carry a
 * document after its JSON, separated by one NUL byte (policy apply sends the policy itself, never
 * a path for the router to open). Either may be split into fragments of one message each, same
 * id, SLIM_MSGF_MORE on all but the last. A request's fragments add up to at most
 * SLIM_CTL_REQ_MAX bytes of payload; the router buffers them only for the host administrator.
 * A request may pass one descriptor, on its first fragment (pod add: the pod's netns).
 */
#define SLIM_CTL_DOC_MAX (16 << 20) /* largest document slimctl sends */
#define SLIM_CTL_REQ_MAX (SLIM_CTL_DOC_MAX + SLIM_MSG_MAX)

/* Fabric: RESOLVE_REQ asks the router owning pod_ip where (pod_ip, port) listens on its host. */
struct slim_resolve_req {
	struct slim_msg_hdr hdr;
	uint32_t pod_ip;
	uint16_t port;
	uint16_t pad;
	uint32_t src_ip; /* the client pod, so the owner can check its ingress policy */
};

enum slim_resolve_status {
	SLIM_RESOLVE_FOUND = 1,       /* host_ip:host_port is the host listener */
	SLIM_RESOLVE_NO_LISTENER = 2, /* the pod exists but no slim listener on that port */
	SLIM_RESOLVE_NO_POD = 3,      /* no registered pod with that IP on that host */
	SLIM_RESOLVE_DENIED = 4,      /* the owner's ingress policy refuses src_ip on that port */
};

struct slim_resolve_rep {
	struct slim_msg_hdr hdr;
	uint32_t status; /* enum slim_resolve_status */
	uint32_t host_ip;
	uint16_t host_port;
	uint16_t pad;
};

/*
 * INVALIDATE: the owning router's listener for (pod_ip, port) went away or was replaced (the app
 * listened again, on a new host port). Sent on every fabric connection other routers opened to
 * it, so no cache keeps a dead route for its whole TTL.
 */
struct slim_invalidate {
	struct slim_msg_hdr hdr;
	uint32_t pod_ip;
	uint16_t port;
	uint16_t pad;
};

/*
 * POD_SYNC: a router announces its own pods to every other router (RESET first when the
 * connection is new, then ADD per pod, ADD/DEL on each change), so each router can match policy
 * pod selectors against remote pods. labels is the pod's labels as compact JSON, NUL-terminated;
 * a pod whose labels do not fit is announced with "{}" (selectors then never match it).
 */
#define SLIM_POD_NAME_MAX   64
#define SLIM_POD_LABELS_MAX 448

enum slim_pod_sync_op {
	SLIM_POD_SYNC_RESET = 1, /* forget every pod this router announced before */
	SLIM_POD_SYNC_ADD = 2,	 /* add or replace the pod at pod_ip */
	SLIM_POD_SYNC_DEL = 3,	 /* the pod at pod_ip is gone */
};

struct slim_pod_sync {
	struct slim_msg_hdr hdr;
	uint32_t op; /* enum slim_pod_sync_op */
	uint32_t pod_ip;
	char name[SLIM_POD_NAME_MAX];
	char labels[SLIM_POD_LABELS_MAX];
};

/*
 * Fabric authentication (when the cluster has a secret_file). The acceptor speaks first:
 * AUTH_CHALLENGE with a fresh nonce; the dialer answers AUTH_RESPONSE with its own nonce and
 * HMAC-SHA256(secret, "slim fabric v1 dialer\0" || challenge || nonce || dialer fabric IP ||
 * acceptor fabric IP); the acceptor checks it and sends AUTH_OK with the same HMAC under the label
 * "slim fabric v1 acceptor\0". Neither side acts on (or sends) anything else before that; any
 * other message, or a wrong MAC, closes the connection.
 */
#define SLIM_AUTH_NONCE 32
#define SLIM_AUTH_MAC	32

struct slim_auth_challenge {
	struct slim_msg_hdr hdr;
	uint8_t nonce[SLIM_AUTH_NONCE];
};

struct slim_auth_response {
	struct slim_msg_hdr hdr;
	uint8_t nonce[SLIM_AUTH_NONCE];
	uint8_t mac[SLIM_AUTH_MAC];
};

struct slim_auth_ok {
	struct slim_msg_hdr hdr;
	uint8_t mac[SLIM_AUTH_MAC];
};

/*
 * Returns the exact size of a fixed-layout message type (0 for variable-length ones: CTL_*),
 * so both the router and the fuzzers check sizes from one table.
 */
static inline uint32_t slim_msg_fixed_len(uint16_t type)
{
	switch (type) {
	case SLIM_MSG_POOL_REQ:
		return sizeof(struct slim_pool_req);
	case SLIM_MSG_POOL_REP:
		return sizeof(struct slim_pool_rep);
	case SLIM_MSG_ROUTE_REQ:
		return sizeof(struct slim_route_req);
	case SLIM_MSG_ROUTE_REP:
		return sizeof(struct slim_route_rep);
	case SLIM_MSG_LISTEN_REP:
		return sizeof(struct slim_listen_rep);
	case SLIM_MSG_RESOLVE_REQ:
		return sizeof(struct slim_resolve_req);
	case SLIM_MSG_RESOLVE_REP:
		return sizeof(struct slim_resolve_rep);
	case SLIM_MSG_INVALIDATE:
		return sizeof(struct slim_invalidate);
	case SLIM_MSG_POD_SYNC:
		return sizeof(struct slim_pod_sync);
	case SLIM_MSG_AUTH_CHALLENGE:
		return sizeof(struct slim_auth_challenge);
	case SLIM_MSG_AUTH_RESPONSE:
		return sizeof(struct slim_auth_response);
	case SLIM_MSG_AUTH_OK:
		return sizeof(struct slim_auth_ok);
	default:
		return 0;
	}
}

#endif /* SLIM_PROTO_H */
