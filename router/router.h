/* SPDX-License-Identifier: MIT */
/*
 * slimrouterd's internal interfaces, one section per file. The router is one thread driving
 * one epoll loop; every table below is owned by that thread, so nothing here locks.
 */
#ifndef SLIM_ROUTER_H
#define SLIM_ROUTER_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <sys/epoll.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <jansson.h>

#include "cidr.h"
#include "htab.h"
#include "proto.h"

#define NAME_MAX_LEN 64 /* pod and node names, NUL included */

/* Fairness limits per control-socket client (see client.c). */
#define CLIENT_BATCH	   16 /* messages handled per client per loop iteration */
#define CLIENT_MAX_PENDING 64 /* requests waiting on a remote resolution */
#define CLIENT_MAX_QUEUED  64 /* replies queued while the client's socket is full */
/* Resource caps on control connections (see client.c): per network namespace (a pod, whose
 * every shimmed thread holds one), and in all, of which the last CLIENT_ADMIN_RESERVE are only
 * for the host administrator. Beyond them a connection is closed at once: the shim falls back. */
#define CLIENT_MAX_PER_NETNS 512
#define CLIENT_MAX	     16384
#define CLIENT_ADMIN_RESERVE 64

#define RESOLVE_TIMEOUT_MS	1000
#define RESOLVE_TTL_FOUND_MS	30000
#define RESOLVE_TTL_NEGATIVE_MS 1000
#define RESOLVE_CACHE_MAX	65536
#define CONN_GC_INTERVAL_MS	2000

/* A TCP 4-tuple in network order, always from this host's point of view (src is local). */
struct tuple4 {
	uint32_t src_ip;
	uint32_t dst_ip;
	uint16_t src_port;
	uint16_t dst_port;
};

/* addr.c: "a.b.c.d:port" of a network-order address and port (buf: ADDR_STRLEN bytes). */
const char *addr_str(char *buf, size_t len, uint32_t ip, uint16_t port);
#define ADDR_STRLEN 24

/* ---- event.c: the epoll loop (redis ae.c style) ---- */

#define EVENT_READ	 EPOLLIN
#define EVENT_WRITE	 EPOLLOUT
#define EVENT_TIMER_STOP (-1)

struct event_loop;
/* events is the epoll mask that fired (EPOLLERR/EPOLLHUP may come without being asked). */
typedef void (*event_fn)(struct event_loop *loop, int fd, uint32_t events, void *arg);
/* Returns the delay in ms until the next run, or EVENT_TIMER_STOP to delete the timer. */
typedef long (*timer_fn)(struct event_loop *loop, void *arg);

struct event_loop *event_loop_new(void);
void event_loop_free(struct event_loop *loop);
/* Registers fd (or changes its callback and mask). 0 or -errno. */
int event_add(struct event_loop *loop, int fd, uint32_t mask, event_fn fn, void *arg);
/* Changes the mask of a registered fd; a no-op when unchanged. 0 or -errno. */
int event_set_mask(struct event_loop *loop, int fd, uint32_t mask);
/* Unregisters fd. Always call it before close(): an epoll registration belongs to the open
 * file, which may outlive our descriptor (a socket we handed to an app). */
void event_del(struct event_loop *loop, int fd);
long long event_timer_add(struct event_loop *loop, long ms, timer_fn fn, void *arg);
void event_timer_del(struct event_loop *loop, long long id);
/* Runs until event_loop_stop(). */
void event_loop_run(struct event_loop *loop);
void event_loop_stop(struct event_loop *loop);
/* Monotonic milliseconds. */
uint64_t event_now_ms(void);

/* ---- confjson.c: checks shared by the cluster and policy documents ---- */

/* Fills err with "ORIGIN: PATH: problem" ("ORIGIN: problem" for an empty path); -EINVAL. */
int confjson_verror(char *err, size_t errlen, const char *origin, const char *path,
		    const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));
/* "an object", "a string", ...: for "expected X, got Y" messages. */
const char *confjson_type_name(const json_t *v);
/* The first key of obj not in allowed (NULL-terminated), or NULL. */
const char *confjson_unknown_key(const json_t *obj, const char *const *allowed);

/* Where a document came from and where its error goes. */
struct confjson_ctx {
	const char *origin;
	char *err;
	size_t errlen;
};
/* "ORIGIN: PATH: problem" ("(top level)" for an empty path); returns -EINVAL. */
int confjson_error(const struct confjson_ctx *x, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* A JSON path for messages; one too long for buf is cut, never overrun. */
void confjson_path(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* 0 when v is of type t, else "wrong type: expected WHAT, got ..." (-EINVAL). */
int confjson_want(const struct confjson_ctx *x, json_t *v, json_type t, const char *path,
		  const char *what);
/* 0, or "unknown key" for the first key of o not in allowed (-EINVAL). */
int confjson_check_keys(const struct confjson_ctx *x, json_t *o, const char *path,
			const char *const *allowed);
/* Parses text (duplicate keys refused), or NULL with "ORIGIN: line L column C: ..." in err. */
json_t *confjson_load(const struct confjson_ctx *x, const char *text, size_t len);

/* ---- cluster.c: the cluster file ---- */

struct cluster_node {
	struct hnode cn_by_cidr;
	char cn_name[NAME_MAX_LEN];
	uint32_t cn_fabric_ip;
	struct cidr cn_pod_cidr;
};

struct cluster {
	char *cl_origin; /* the file it came from, or "(built-in)" */
	struct cidr cl_overlay;
	struct cidr cl_services; /* ClusterIP range (service_cidr; default 10.96.0.0/16) */
	uint16_t cl_peer_port; /* host order */
	char *cl_secret_file;  /* the routers' shared secret (auth.c), or NULL: no authentication */
	size_t cl_nnodes;
	struct cluster_node *cl_nodes;
	struct htab cl_by_cidr; /* (net, len) of each pod_cidr -> node */
	uint8_t cl_lens[33];	/* distinct pod_cidr lengths, longest first */
	unsigned cl_nlens;
};

/*
 * Parses and validates a cluster description. On error fills err with
 * "ORIGIN: JSON.PATH: problem" and returns -EINVAL (or -ENOMEM).
 */
int cluster_parse(const char *text, size_t len, const char *origin, struct cluster **out, char *err,
		  size_t errlen);
/* Reads path and parses it; errors as cluster_parse(), -errno if the file cannot be read. */
int cluster_load(const char *path, struct cluster **out, char *err, size_t errlen);
/* The lab's two-host plan, used when no cluster file exists. */
int cluster_default(struct cluster **out);
void cluster_free(struct cluster *c);
/* The node whose pod_cidr holds ip (network order), or NULL. */
const struct cluster_node *cluster_owner(const struct cluster *c, uint32_t ip);
const struct cluster_node *cluster_node_by_name(const struct cluster *c, const char *name);
const struct cluster_node *cluster_node_by_ip(const struct cluster *c, uint32_t fabric_ip);

/* ---- pod.c: the pod registry ---- */

struct listener;

struct pod {
	struct hnode p_by_ip, p_by_name, p_by_ns;
	uint32_t p_ip;
	char p_name[NAME_MAX_LEN];
	dev_t p_ns_dev;
	ino_t p_ns_ino;
	char *p_netns;	 /* the name the administrator gave, for listings */
	int p_netns_fd;	 /* the namespace itself (tc runs in it) */
	json_t *p_labels;
	time_t p_added;
	TAILQ_HEAD(, listener) p_listeners;
	unsigned p_nlisteners;
	bool p_recheck; /* a listener recheck is scheduled (router_client_gone) */
};

int pod_table_init(void);
void pod_table_free(void);
struct pod *pod_find_ip(uint32_t ip);
struct pod *pod_find_name(const char *name);
struct pod *pod_find_ns(dev_t dev, ino_t ino);
/* Some registered pod whose IP is outside c, or NULL (used to validate a reload). */
struct pod *pod_find_outside(const struct cidr *c);
/* Validates and registers a pod (netns_fd must be a network namespace, which the caller
 * opened: the router never opens a path a caller names; netns is its name, for listings; ip
 * inside this node's pod_cidr, nothing duplicated). netns_fd and labels are borrowed (the pod
 * keeps a duplicate, a reference). 0 or -errno with a message in err. */
int pod_add(const char *netns, int netns_fd, uint32_t ip, const char *name, json_t *labels,
	    struct pod **out, char *err, size_t errlen);
/* Unregisters the pod and drops its listener entries. */
void pod_del(struct pod *p);
size_t pod_count(void);
json_t *pod_json(const struct pod *p);
json_t *pod_list_json(void);
void pod_foreach(void (*fn)(const struct pod *p, void *arg), void *arg);

/* ---- listener.c: (pod IP, port) -> host listener ---- */

struct listener {
	struct hnode l_by_key, l_by_hport;
	TAILQ_ENTRY(listener) l_pod_entry;
	struct pod *l_pod;
	uint32_t l_ip; /* overlay (pod) address and port */
	uint16_t l_port;
	uint32_t l_host_ip; /* host listener address and port */
	uint16_t l_host_port;
	uint64_t l_cookie;   /* SO_COOKIE of the newest host listener behind this entry */
	unsigned l_nsockets; /* how many app listeners share it (SO_REUSEPORT) */
	uint32_t l_bound_ip; /* what the app bound: 0 (any), the pod IP, or a loopback address */
	bool l_marked;	     /* seen in the current sock_diag sweep */
};

int listener_table_init(void);
void listener_table_free(void);
/* Called whenever an entry appears, and when it goes away or is replaced (router.c sets them to
 * fill the kernel's route map and tell other nodes; hooks, so the table stays testable alone). */
extern void (*listener_added_hook)(const struct listener *l);
extern void (*listener_removed_hook)(const struct listener *l);
struct listener *listener_find(uint32_t ip, uint16_t port);
/* Records (pod ip, port) -> (host ip, host port), replacing an older entry for the key and any
 * stale entry that still names the same host port. 0 or -ENOMEM. */
int listener_add(struct pod *p, uint16_t port, uint32_t bound_ip, uint32_t host_ip,
		 uint16_t host_port, uint64_t cookie, struct listener **out);
void listener_del(struct listener *l);
void listener_drop_pod(struct pod *p);
/* Asks the kernel whether the host listener still exists; drops the entry when it does not.
 * Returns true when the entry is alive (or the kernel could not tell). */
bool listener_check_alive(struct listener *l);
/* Drops every entry whose host listener is gone (one sock_diag dump). */
void listener_gc(void);
size_t listener_count(void);
json_t *listener_list_json(void);
void listener_foreach(void (*fn)(const struct listener *l, void *arg), void *arg);

/* ---- resolve.c: remote resolution (cache and requests in flight) ---- */

struct client;

struct resolve_result {
	uint32_t status; /* enum slim_resolve_status */
	uint32_t host_ip;
	uint16_t host_port;
};

int resolve_init(void);
void resolve_free(void);
/* Whether node let a resolution time out lately (then its pods' connects fall back at once). */
bool resolve_node_stalled(const char *node);
/* The cached answer of the owner of (ip, port), if fresh. */
bool resolve_cache_get(uint32_t ip, uint16_t port, struct resolve_result *res);
/*
 * Asks the remote node that owns req's destination, for client c's ROUTE_REQ: queues the
 * request (copied) and returns 0; the answer comes later through route_resolved(). -errno when
 * it cannot even be queued.
 */
int resolve_lookup(struct client *c, const struct pod *p, const struct slim_route_req *req,
		   const struct cluster_node *node);
/* Drops the cached resolution for (ip, port) (a refused connect, or SLIM_CONNF_RETRY). */
void resolve_cache_drop(uint32_t ip, uint16_t port);
void resolve_cache_flush(void);
/* Drops expired entries; when that is not enough to stay bounded, drops everything. */
void resolve_cache_expire(void);
size_t resolve_cache_count(void);
size_t resolve_inflight_count(void);
/* A RESOLVE_REP arrived from node_name's router. */
void resolve_on_reply(const char *node_name, uint32_t id, const struct resolve_result *res);
/* The fabric connection to node_name failed: everything waiting on it falls back. */
void resolve_on_peer_down(const char *node_name);
/* Client c is going away: forget its waiting requests. */
void resolve_client_gone(struct client *c);

/* ---- peer.c: router <-> router on the fabric ---- */

int peer_listen(uint32_t ip, uint16_t port);
void peer_close_all(void);
/* Sends RESOLVE_REQ{id, ip, port} to node's router, connecting lazily. 0 or -errno. */
int peer_send_resolve(const struct cluster_node *node, uint32_t id, uint32_t src_ip, uint32_t ip,
		      uint16_t port);
/* Tells every node that asked us to forget its cached resolution of (ip, port). */
void peer_broadcast_invalidate(uint32_t ip, uint16_t port);
/* The cluster changed: close connections to nodes that left or moved. */
void peer_cluster_changed(void);
json_t *peer_list_json(void);
/* Fabric connections with the handshake done: those we dialed (dialed) or those we accepted. */
unsigned peer_connected_count(bool dialed);
/* Incoming fabric connections refused or closed by the caps, and closed for an overdue message. */
uint64_t peer_refused_count(void);
uint64_t peer_timed_out_count(void);

/* ---- auth.c: the fabric's shared secret and challenge-response ---- */

enum auth_role { AUTH_DIALER = 0, AUTH_ACCEPTOR = 1 };

/* Reads the secret (a file of ours, mode 0600, 32-1024 bytes) and uses it from now on. 0, or
 * -errno with err filled (the old secret stays). */
int auth_load(const char *path, char *err, size_t errlen);
/* No secret: fabric connections are not authenticated. */
void auth_clear(void);
bool auth_enabled(void);
/* A fresh random nonce. 0 or -EIO. */
int auth_nonce(uint8_t nonce[SLIM_AUTH_NONCE]);
/* role's proof of the secret for a connection: over the acceptor's challenge, the dialer's
 * nonce and both fabric addresses (network order). 0 or -errno. */
int auth_prove(enum auth_role role, const uint8_t challenge[SLIM_AUTH_NONCE],
	       const uint8_t nonce[SLIM_AUTH_NONCE], uint32_t dialer_ip, uint32_t acceptor_ip,
	       uint8_t mac[SLIM_AUTH_MAC]);
/* Whether mac is role's proof (constant-time comparison). */
bool auth_check(enum auth_role role, const uint8_t challenge[SLIM_AUTH_NONCE],
		const uint8_t nonce[SLIM_AUTH_NONCE], uint32_t dialer_ip, uint32_t acceptor_ip,
		const uint8_t mac[SLIM_AUTH_MAC]);

/* ---- conn.c: live slim connections, as the kernel records them ---- */

struct conn {
	struct tuple4 co_host;	  /* host 4-tuple, src = this host's end */
	struct tuple4 co_overlay; /* overlay 4-tuple, src = the client */
	uint64_t co_cookie;	  /* SO_COOKIE */
	uint32_t co_pod_ip;	  /* this host's pod (the socket's owner) */
	char co_pod[NAME_MAX_LEN];
	bool co_out;	  /* this host's pod is the client */
	bool co_loopback; /* in-pod (sidecar): both ends are the pod's own */
	uint8_t co_state; /* TCP_ESTABLISHED, ... */
	uint32_t co_svc_ip; /* the Service VIP the client connected to (co_out only), or 0 */
	uint16_t co_svc_port;
};

typedef void (*conn_fn)(const struct conn *co, void *arg);
/* Calls fn for every slim connection of this host in the given states (bit 1 << TCP_*; 0: every
 * state an app's socket can be in). The count, or -errno. */
int conn_walk(uint32_t states, conn_fn fn, void *arg);
/* Established slim connections. */
size_t conn_count(void);
json_t *conn_list_json(void);
/* Whether a connection is on the same-host fast path (set by router.c; NULL: never). */
extern bool (*conn_accelerated_hook)(const struct tuple4 *host);

/* ---- sockdiag.c: NETLINK_SOCK_DIAG via libmnl ---- */

struct sockdiag_sock {
	struct tuple4 sd_tuple; /* src = the socket's local end */
	uint64_t sd_cookie;
	uint32_t sd_inode; /* 0 for sockets no process holds (orphans, TIME_WAIT) */
	uint8_t sd_state;  /* TCP_ESTABLISHED, ... */
	const void *sd_storage; /* sockdiag_dump_storage: the socket's value, or NULL */
};

typedef void (*sockdiag_fn)(const struct sockdiag_sock *s, void *arg);

int sockdiag_init(void);
void sockdiag_close(void);
/* Dumps the TCP/IPv4 sockets of this netns in the given states (bit 1 << TCP_*). 0 or -errno. */
int sockdiag_dump(uint32_t states, sockdiag_fn fn, void *arg);
/* The same, each socket with its value in the SK_STORAGE map map_fd (id map_id, values of
 * value_size bytes) when it has one: the kernel's own record of the governed sockets. */
int sockdiag_dump_storage(uint32_t states, int map_fd, uint32_t map_id, size_t value_size,
			  sockdiag_fn fn, void *arg);
/* 1 when a TCP listener is bound to ip:port in this netns, 0 when none, -errno on failure. */
int sockdiag_listener_exists(uint32_t ip, uint16_t port);
/* Destroys (SOCK_DESTROY) the TCP socket with this 4-tuple: both the app and the peer see the
 * connection reset. 0 or -errno (-ENOENT when there is no such socket). */
int sockdiag_destroy(const struct tuple4 *t);

/* ---- accept.c: accepting when descriptors run out ---- */

struct sockaddr;
/* The spare descriptor accept_conn() gives up at EMFILE. 0 or -errno. */
int accept_init(void);
void accept_free(void);
/* accept4() on listener lfd (registered for EVENT_READ); at EMFILE/ENFILE sheds one pending
 * connection, pauses the listener briefly and logs (rate-limited). The fd or -errno. */
int accept_conn(int lfd, struct sockaddr *sa, socklen_t *salen, int flags);

/* ---- client.c: control-socket clients ---- */

struct pending;
struct outmsg;

/* A namespace as the kernel names it: the (device, inode) of its nsfs file. */
struct ns_id {
	dev_t ni_dev;
	ino_t ni_ino;
};

/* The namespaces that make a caller the host's administrator (client_is_host_admin). */
enum client_ns { CLIENT_NS_USER, CLIENT_NS_MNT, CLIENT_NS_NET, CLIENT_NS_PID, CLIENT_NS_IPC,
		 CLIENT_NS_N };

struct client {
	int cs_fd;
	pid_t cs_pid;
	uid_t cs_uid;
	dev_t cs_ns_dev; /* the caller's network namespace, from /proc/<pid>/ns/net */
	ino_t cs_ns_ino;
	struct ns_id cs_ns[CLIENT_NS_N]; /* all of them, read once when it connected */
	unsigned cs_npending;
	TAILQ_HEAD(, pending) cs_pending;
	STAILQ_HEAD(, outmsg) cs_outq;
	unsigned cs_noutq;
	bool cs_reading; /* EPOLLIN is armed */
	bool cs_closing;
	/* A control request arriving in fragments (SLIM_MSGF_MORE): buffered for the host
	 * administrator only, anyone else's fragments are dropped until the refusal. */
	uint8_t *cs_req; /* header, then the payload so far */
	size_t cs_reqlen, cs_reqcap;
	uint32_t cs_req_id;
	bool cs_req_open, cs_req_discard;
	int cs_req_fd; /* the descriptor the request passed (pod add's netns), or -1 */
	struct client_netns *cs_netns; /* its namespace's connection count */
	TAILQ_ENTRY(client) cs_entry;
};

/*
 * Records the host administrator's namespaces from nsdir (a /proc/PID/ns directory, read now:
 * call it before the router makes namespaces of its own). 0 or -errno.
 */
int client_admin_init(const char *nsdir);
/*
 * Whether c may use the control commands: root, in exactly the namespaces (user, mount, net, pid,
 * ipc) client_admin_init() recorded, and not in a registered pod's network namespace.
 */
bool client_is_host_admin(const struct client *c);
/* Creates the control socket at path (refusing when a router already answers there). */
int client_listen(const char *path);
void client_close_all(void);
/*
 * Sends one reply (fd attached when >= 0; the caller keeps its fd). When the socket is full the
 * reply is queued with a duplicate of fd; when more than CLIENT_MAX_QUEUED are queued (and
 * !unlimited) the client is closed. Returns 0, or -EPIPE when the client was closed.
 */
int client_reply(struct client *c, const void *msg, size_t len, int fd, bool unlimited);
/* As client_reply with nfds descriptors attached (POOL_REP). */
int client_reply_fds(struct client *c, const void *msg, size_t len, const int *fds,
		     unsigned nfds);
/* Closes the client now (queued replies and their fds are dropped). */
void client_close(struct client *c);
/* A request of c's that waited on a resolution has been answered (or dropped). */
void client_pending_done(struct client *c);
size_t client_count(void);
/* Control connections from network namespace (dev, ino): a pod's share of the caps. */
unsigned client_count_netns(dev_t dev, ino_t ino);
/* Connections closed at once because of the caps above. */
uint64_t client_refused_count(void);
/* The most requests any one client had waiting (CLIENT_MAX_PENDING) and replies queued
 * (CLIENT_MAX_QUEUED) at once, since start. */
unsigned client_pending_max(void);
unsigned client_queued_max(void);

/* ---- hostsock.c: host listeners ---- */

/* Creates the host listener for req and hands it over; replies FD or FALLBACK. */
void hostsock_listen(struct client *c, struct pod *p, const struct slim_listen_req *req);

/* ---- pool.c: pre-made governed sockets for the shims ---- */

/* Answers a POOL_REQ (p NULL: the caller is in no pod) with a batch of governed sockets. */
void pool_handout(struct client *c, const struct pod *p, const struct slim_pool_req *req);
void pool_pod_gone(uint32_t ip);
json_t *pool_status_json(void);
/* Sockets handed to shims, and sockets asked for that the per-pod rate limit held back. */
uint64_t pool_handed_count(void);
uint64_t pool_refused_count(void);

/* ---- route.c: the connect decision and its mechanics ---- */

enum route_action {
	ROUTE_FALLBACK = 0, /* no slim listener there (or not an overlay address): the overlay */
	ROUTE_HOST,	    /* rd_host_ip:rd_host_port is the host listener */
	ROUTE_DENY,	    /* policy refuses it */
	ROUTE_ASK,	    /* the owning node rd_node must be asked */
};

struct route_decision {
	enum route_action rd_action;
	uint32_t rd_host_ip;
	uint16_t rd_host_port;
	uint32_t rd_scope; /* route map scope: 0, or the pod (in-pod loopback) */
	unsigned rd_ttl_ms; /* how long the kernel may keep it (0: until removed) */
	const struct cluster_node *rd_node;
};

/*
 * Pure: what a connect of pod p to dst_ip:dst_port (network order) gets, from the tables as
 * they are; remote is the owning node's answer when known (NULL: not asked yet).
 */
void route_decide(const struct pod *p, uint32_t dst_ip, uint16_t dst_port,
		  const struct resolve_result *remote, struct route_decision *d);
/* A ROUTE_REQ from pod p: decide, fill the kernel's maps, answer (maybe after asking). */
void route_request(struct client *c, struct pod *p, const struct slim_route_req *req);
/* The owner answered (res NULL: it did not, in time) a ROUTE_REQ that waited. */
void route_resolved(struct client *c, uint32_t pod_ip, const struct slim_route_req *req,
		    const struct resolve_result *res);
/* What we know of dst:port may be stale: drop it (the route map and the resolution cache). */
void route_forget(uint32_t dst_ip, uint16_t dst_port, uint32_t pod_ip);
void route_listener_added(const struct listener *l);
void route_listener_removed(const struct listener *l);

/* ---- governor.c: the router's cgroup, the governance programs and their maps ---- */

struct slim_sk;
struct slim_govern_stats;
struct slim_pool_pending;

/* Moves the router into cgroup v2 directory cgroup_name (relative to the v2 root), attaches the
 * governance programs there (pinned in pin_dir when not NULL) and, with sockmap, the fast path.
 * 0, or -errno (then no slim). */
int governor_start(const char *cgroup_name, bool sockmap, const char *pin_dir, bool takeover);
/* takeover: governor_start only loaded the programs (the running router's stay attached and its
 * maps untouched); this attaches ours in their place and starts the fast path. 0 or -errno. */
int governor_commit(void);
/* Our programs back into the pinned links (an upgrade that failed after the new router
 * attached its own). 0 or -errno. */
int governor_relink(void);

void governor_stop(void);
bool governor_enabled(void);
/* Gives socket fd its state in the kernel (bpf/govern_abi.h): governed from now on. */
int governor_sock_set(int fd, const struct slim_sk *st);
void governor_route_put(uint32_t ip, uint16_t port, uint32_t scope, uint32_t host_ip,
			uint16_t host_port, uint16_t flags, unsigned ttl_ms);
void governor_route_del(uint32_t ip, uint16_t port, uint32_t scope);
/* Drops the kernel's routes to the pods of node (what its router told us). */
void governor_routes_drop_node(const struct cluster_node *node);
/* The kernel's state of socket fd (-ENOENT: not a governed socket). 0 or -errno. */
int governor_sock_get(int fd, struct slim_sk *st);
/* A pool batch: names it (the calling thread creates the sockets next), then ends it and
 * reads back how many got their state (pp->pp_made). */
int governor_pool_pending(const struct slim_pool_pending *pp);
int governor_pool_pending_end(struct slim_pool_pending *pp);
struct slim_svc;
struct slim_maglev_slot;
/* A service port's entry in the kernel (0 or -errno), and its removal. */
int governor_service_put(uint32_t vip, uint16_t port, const struct slim_svc *v);
void governor_service_del(uint32_t vip, uint16_t port);
/* The kernel's Maglev array (SLIM_MAGLEV_SLOTS slots), mapped; NULL when governance is off. */
struct slim_maglev_slot *governor_maglev(void);
void governor_verdict_put(uint32_t src, uint32_t dst, uint16_t port, bool allow);
/* The policy changed: verdicts go, and whether the kernel asks for them follows the policy. */
void governor_policy_changed(void);
/* The cluster changed: the nodes whose SYNs may carry identities, and their pod ranges. */
void governor_cluster_changed(void);
json_t *governor_status_json(void);
/* The kernel's counters and the size of its route map; -ENOTCONN when governance is off. */
int governor_stats(struct slim_govern_stats *s, unsigned *routes);
struct slim_setup_hist;
/* The kernel's setup latency histogram of path (enum slim_setup_path); -ENOTCONN when off. */
int governor_setup_hist(int path, struct slim_setup_hist *h);
/* Takes in every event the kernel queued (connections made since the last drain). */
void governor_drain(void);
/* A sock_diag dump of this netns's TCP sockets in states, each with its governance state. */
int governor_dump(uint32_t states, sockdiag_fn fn, void *arg);

/* ---- state.c: what a restarted router takes back (pods, host listeners) ---- */

/* Reads the state file (if any) into the tables and keeps it up to date from now on. */
int state_open(const char *path);
void state_close(void);
/* Rewrites the state file (after a pod or listener change; nothing without --state). */
void state_save(void);
void state_add_pod_json(const struct pod *p, void *arg);
void state_add_listener_json(const struct listener *l, void *arg);
/* Replaces path with len bytes of text, whole or not at all (a temporary file renamed into
 * place; a symlink at the temporary name is refused). 0 or -errno. */
int state_replace_file(const char *path, const char *text, size_t len);
/* Keeps the Service document in force next to the state file (FILE.services), as it came. */
void state_save_services(const char *text, size_t len);

/* ---- fastpath.c: same-host sockmap acceleration ---- */

/* Attaches the sockmap programs to the router's cgroup (governor.c made it). 0 or -errno (the
 * router then runs without acceleration). */
int fastpath_start(const char *cgroup_path);
/* Records why the fast path is off (e.g. --no-sockmap), for status. */
void fastpath_disable(const char *why);
void fastpath_stop(void);
bool fastpath_enabled(void);
/* Whether the connection with this host 4-tuple (src = this end) is accelerated. */
bool fastpath_contains(const struct tuple4 *host);
json_t *fastpath_status_json(void);
struct sockmap_stats;
/* The sockmap programs' counters and how many sockets are mapped; -ENOTCONN when off. */
int fastpath_stats(struct sockmap_stats *st, unsigned *entries);

/* ---- control.c: slimctl's JSON commands ---- */

/* Handles one CTL_REQ payload (JSON, then optionally a NUL and a document) and replies,
 * fragmented when large; policy.apply replies later, once its document is in force. */
void control_handle(struct client *c, uint32_t id, const char *json, size_t len);
/* c is going away: work it asked for completes, unanswered. */
void control_client_gone(struct client *c);
/* Waits for the policy worker and drops queued work (shutdown). */
void control_stop(void);
/* A document the cluster store holds ("policy.apply" or "service.apply"): parsed off the loop
 * and put in force like slimctl's, nobody answered; origin names it in logs. 0 or -errno. */
int control_apply_stored(const char *cmd, const char *origin, const char *text, size_t len);

/* ---- maglev.c: Maglev consistent hashing (Eisenbud et al., NSDI'16) ---- */

/* The table size for n backends: the smallest prime >= MAGLEV_SCALE * n (and >= MAGLEV_MIN). */
#define MAGLEV_SCALE 100
#define MAGLEV_MIN   101
#define MAGLEV_MAX   65521 /* the largest table: a prime, so up to 655 backends per service */
uint32_t maglev_table_size(unsigned nbackends);
/* Fills table[0..m) with indexes into backends[0..n) (n >= 1, m from maglev_table_size): each
 * backend gets m/n slots give or take one, and a change of one backend moves about 1/n of them. */
void maglev_build(const uint32_t *backends, unsigned n, uint32_t m, uint16_t *table);
/* The hash the kernel uses to pick a slot (bpf/govern_abi.h: slim_hash32), for tests. */
uint32_t maglev_slot(uint32_t key_a, uint32_t key_b, uint32_t m);

/* ---- service.c: Services (ClusterIP): the document, their backends, the kernel's tables ---- */

#define SERVICE_MAX_PORTS    16
#define SERVICE_MAX_BACKENDS 512
#define SERVICE_AFFINITY_TIMEOUT_DEFAULT 10800 /* seconds, as Kubernetes */

struct service_port {
	uint16_t sp_port;   /* network order */
	uint16_t sp_target; /* network order (targetPort; the port when not given) */
};

struct service {
	struct hnode sv_by_ip, sv_by_name;
	char sv_name[NAME_MAX_LEN];
	uint32_t sv_ip; /* the virtual IP, inside the cluster's service_cidr */
	unsigned sv_nports;
	struct service_port sv_ports[SERVICE_MAX_PORTS];
	json_t *sv_selector; /* labels a backend pod must all have, or NULL: sv_endpoints */
	uint32_t *sv_endpoints;
	unsigned sv_nendpoints;
	bool sv_affinity; /* sessionAffinity: ClientIP */
	unsigned sv_affinity_timeout;
	/* Computed from the pod directory (service_refresh): */
	uint32_t *sv_backends; /* pod IPs, ascending */
	unsigned sv_nbackends;
	uint32_t sv_table_size; /* Maglev table of sv_table_size slots, 0 without backends */
	uint32_t sv_last_size;	/* the last non-zero sv_table_size (sizes change rarely) */
	uint16_t *sv_table;	/* slot -> index in sv_backends */
	uint32_t sv_base;	/* where the table starts in the kernel's array */
};

struct service_doc;

/* Parses and validates a whole service document (VIPs inside range). On error fills err with
 * "ORIGIN: JSON.PATH: problem" and returns -EINVAL (or -ENOMEM). Touches nothing else: safe off
 * the loop. */
int service_parse(const char *text, size_t len, const char *origin, const struct cidr *range,
		  const struct cidr *overlay, struct service_doc **out, char *err, size_t errlen);
void service_doc_free(struct service_doc *d);
size_t service_doc_count(const struct service_doc *d);
/* Called once a document is in force: the connections reset, or -errno when it was dropped. */
typedef void (*service_done_fn)(int revoked, void *arg);
/* Makes d (owned from now on) the services in force: backends, the kernel's tables, the overlay
 * path's rules; connections to a backend that is no longer one are reset. The work is done on
 * the loop in slices of a few ms; done (may be NULL) is called at the end. */
void service_install(struct service_doc *d, service_done_fn done, void *arg);
/* The same at start-up (the state file's document): done at once, before anything is served. */
void service_restore(struct service_doc *d);
/* Whether ip is inside the cluster's service range. */
bool service_range_contains(uint32_t ip);
/* The service at vip:port (network order), with that port's target in *target; or NULL. */
const struct service *service_find(uint32_t vip, uint16_t port, uint16_t *target);
bool service_has_backend(const struct service *s, uint32_t ip);
void service_foreach(void (*fn)(const struct service *s, void *arg), void *arg);
size_t service_count(void);
/* Called when the services in force or their backends changed (router.c: the nftables path). */
extern void (*service_changed_hook)(void);
/* The pod directory changed (pods, labels): recompute the backends (coalesced with a job that
 * is running). */
void service_refresh(void);
/* A ROUTE_REQ of pod p for a VIP that the kernel could not finish (fd: the socket). */
void service_route_request(struct client *c, struct pod *p, const struct slim_route_req *req,
			   int fd);
json_t *service_list_json(void);
/* Connections reset because their backend left, since start. */
uint64_t service_revoked_count(void);
void service_free(void);

/* ---- svcnft.c: the overlay path's Services, as nftables rules (kube-proxy's nftables mode) ---- */

/* Replaces table ip slim_svc_0 / slim_svc_1 with the current services (removes it when there are
 * none), off the loop (spawn_async_steps). */
void svcnft_apply(void);
/* Removes our table (shutdown). */
void svcnft_remove(void);
/* The raw-priority chains that keep conntrack to pod and Service traffic (the policy filter's
 * table, nft.c, has them too). */
void nft_write_untracked(FILE *f, const struct cluster *c);
/* A reload of the table as a run of transactions (svcnft.c says why): the services, copies of
 * the ranges and of this host, and where svcnft_step is. */
struct svcnft_run {
	const struct service *sr_svcs;
	size_t sr_nsvcs;
	struct cluster sr_cluster; /* the ranges only (its pointers are not followed) */
	struct cluster_node sr_self;
	bool sr_has_self;
	int sr_gen;	  /* the generation being built */
	bool sr_guessed;  /* which one is in force is not known: the other may be tried */
	bool sr_swapped;  /* the new generation is in force */
	bool sr_removal;  /* no services: the run removes our tables */
	int sr_phase;	  /* svcnft.c's enum svcnft_phase */
	size_t sr_cursor; /* the next service whose elements go in */
	size_t sr_chunk;  /* elements per transaction, about */
};
/* A run for svcs[0..n) (c: the service and overlay ranges; self: this host, whose pod range gets
 * the hairpin rule, or NULL), gen the generation in force (-1: not known). */
void svcnft_run_init(struct svcnft_run *r, const struct service *svcs, size_t n,
		     const struct cluster *c, const struct cluster_node *self, int gen);
/* Writes the run's next transaction (prev: how the last one went) to f: a spawn_step_fn. */
int svcnft_step(FILE *f, struct svcnft_run *r, int prev);

/* ---- metrics.c: the Prometheus endpoint (--metrics ADDR:PORT) ---- */

struct sockaddr_in;
/* Parses "a.b.c.d:port". 0, or -EINVAL with err saying what is wrong. */
int metrics_parse_addr(const char *arg, struct sockaddr_in *sa, char *err, size_t errlen);
/* Listens on sa and serves GET /metrics from the router's loop (no thread). 0 or -errno. */
int metrics_start(const struct sockaddr_in *sa);
void metrics_stop(void);

/* ---- etcd.c: etcd's v3 JSON gateway over HTTP (libcurl multi on the loop) ---- */

struct etcd_req;
/* A unary call's answer, on the loop: ret 0 and the body (borrowed), or -errno with msg (and
 * the body when the server answered with an error document). */
typedef void (*etcd_reply_fn)(int ret, json_t *reply, const char *msg, void *arg);
/* A stream's message (obj borrowed, ret 0), or its end (obj NULL, ret -errno, msg): -EPIPE when
 * the server ended it, -EBADMSG when a message was not JSON. */
typedef void (*etcd_stream_fn)(int ret, json_t *obj, const char *msg, void *arg);

/* base_url: "http://host:port". 0 or -errno. */
int etcd_init(struct event_loop *loop, const char *base_url);
void etcd_free(void);
/* POSTs body (JSON) to path ("/v3/kv/range"); fn is called once, later, on the loop, unless
 * the request is closed first. NULL when it cannot even start. */
struct etcd_req *etcd_call(const char *path, json_t *body, long timeout_ms, etcd_reply_fn fn,
			   void *arg);
/* The same for a streaming call (/v3/watch): fn per message, then once at its end. */
struct etcd_req *etcd_stream(const char *path, json_t *body, etcd_stream_fn fn, void *arg);
/* Ends a request without calling its function again (safe from inside it). */
void etcd_close(struct etcd_req *rq);
size_t etcd_inflight(void);
/* Base64 as the gateway writes bytes fields (NUL-terminated copies). NULL or -errno. */
char *etcd_b64_encode(const void *data, size_t len);
int etcd_b64_decode(const char *s, size_t slen, char **out, size_t *outlen);
/* An int64 field: a decimal string (or a number, or absent: 0). 0 or -EINVAL. */
int etcd_int64(const json_t *v, int64_t *out);

/* A byte stream cut into lines (the gateway's framing of stream messages). */
struct etcd_linebuf {
	char *lb_buf;
	size_t lb_len, lb_cap, lb_off; /* lb_off: where the next line starts */
};
/* Appends data; -EMSGSIZE when more than max bytes would wait, -ENOMEM. */
int etcd_linebuf_append(struct etcd_linebuf *lb, const char *data, size_t len, size_t max);
/* The next complete non-blank line (not NUL-terminated, len set), or NULL; with final, an
 * unterminated rest counts as a line. */
const char *etcd_linebuf_next(struct etcd_linebuf *lb, size_t *len, bool final);
void etcd_linebuf_free(struct etcd_linebuf *lb);

/* ---- store.c: the cluster store (etcd): nodes and pods under leases, policy, services ---- */

#define STORE_TTL_DEFAULT 10 /* seconds a dead node's pods stay in the store */
#define STORE_TTL_MIN	  2
#define STORE_TTL_MAX	  3600
#define STORE_PREFIX_DEFAULT "/slim/"
#define STORE_PREFIX_MAX     64

enum store_key_kind {
	STORE_KEY_OTHER = 0, /* under the prefix, not ours: ignored */
	STORE_KEY_NODE,	     /* PREFIX nodes/NAME */
	STORE_KEY_POD,	     /* PREFIX pods/IP */
	STORE_KEY_POLICY,    /* PREFIX policy */
	STORE_KEY_SERVICES,  /* PREFIX services */
};

/* One key of the store, decoded and checked (what a range lists or a watch event carries). */
struct store_kv {
	enum store_key_kind sk_kind;
	bool sk_delete;
	int64_t sk_mod_revision;
	char sk_node[NAME_MAX_LEN]; /* NODE: from the key; POD: the owner, from the value */
	uint32_t sk_ip;		    /* POD (network order) */
	char sk_name[NAME_MAX_LEN]; /* POD */
	json_t *sk_labels;	    /* POD put (a reference) */
	uint32_t sk_fabric_ip;	    /* NODE put */
	struct cidr sk_pod_cidr;    /* NODE put */
	char *sk_value;		    /* the raw value (NUL-terminated), documents */
	size_t sk_len;
};

/* One response of the store decoded: a range (kvs) or a watch message (events). */
struct store_batch {
	int64_t sb_revision;	     /* header.revision */
	bool sb_created, sb_canceled; /* watch only */
	int64_t sb_compact_revision; /* watch canceled because its start was compacted */
	size_t sb_n, sb_bad;	     /* decoded kvs; entries ignored as malformed */
	struct store_kv *sb_kvs;
};

/* "etcd:http://host:port" -> the base URL. 0 or -EINVAL with err filled. */
int store_parse_url(const char *arg, char *url, size_t urllen, char *err, size_t errlen);
/* A key prefix: starts and ends with '/', printable, at most STORE_PREFIX_MAX bytes. */
bool store_prefix_valid(const char *prefix);
/* Pure: classifies key (len bytes) under prefix into kv (kind, node name or pod IP); -EINVAL
 * for a key of ours that is malformed. */
int store_key_parse(const char *prefix, const char *key, size_t len, struct store_kv *kv);
/* Pure: one kv object of the gateway (base64 key and value) under prefix. 0, -EINVAL with err
 * filled (the entry is ignored), or -EBADMSG (the response itself is malformed). */
int store_kv_decode(const char *prefix, json_t *kv, bool deleted, struct store_kv *out, char *err,
		    size_t errlen);
void store_kv_clear(struct store_kv *kv);
/* Pure: a range response or a watch message. 0, or -EBADMSG (with err) when malformed or an
 * error from the server: the stream is closed and the store read afresh. */
int store_batch_decode(const char *prefix, json_t *msg, bool watch, struct store_batch *b,
		       char *err, size_t errlen);
void store_batch_clear(struct store_batch *b);
/* Applies a pod or node key of another node to the directory (put or delete). */
void store_apply_pod(const struct store_kv *kv);

/* Starts the store client: registers this node under a lease of ttl seconds, lists and
 * watches prefix. 0 or -errno. */
int store_start(const char *url, const char *prefix, unsigned ttl);
void store_stop(void);
bool store_enabled(void);
/* Connected and watching. */
bool store_connected(void);
int64_t store_revision(void);
json_t *store_status_json(void);
/* A local pod was added, relabelled (added) or removed: its key follows. */
void store_pod_changed(const struct pod *p, bool added);
/* Writes a validated document (kind STORE_KEY_POLICY or STORE_KEY_SERVICES); done(0 or -errno,
 * revision, message, arg) on the loop. 0, or -errno when it cannot be sent at all. */
typedef void (*store_put_fn)(int ret, int64_t revision, const char *msg, void *arg);
int store_put_document(enum store_key_kind kind, const char *text, size_t len, store_put_fn done,
		       void *arg);

/* ---- upgrade.c: handing the running router over to a new binary (slimctl upgrade) ---- */

#define UPGRADE_FORMAT 1 /* the state's format (docs/design.md, "Upgrade") */

/* Descriptors that travel with the state; the state names each by its index. */
struct upgrade_fds {
	int *uf_fds;
	size_t uf_n, uf_cap;
};
/* Adds fd (still ours: the old router keeps serving on it until GO). Its index, or -1. */
int upgrade_fd_put(struct upgrade_fds *f, int fd);
/* The received descriptor the state names at idx, ours from now on (each only once), or -1. */
int upgrade_fd_take(struct upgrade_fds *f, const json_t *idx);
/* Takes the descriptor at idx and gives it to use (which owns it when it returns 0; else it is
 * closed). 0, -EBADF when the state names none there, or use's -errno. */
int upgrade_fd_use(struct upgrade_fds *f, const json_t *idx, int (*use)(int fd));
/* Old side: starts binary (NULL: our own) to take over, for client c's request id. NULL: the
 * answer comes later (from the new router, or from here when it fails); else an error document
 * to answer now. */
json_t *upgrade_begin(struct client *c, uint32_t id, const char *binary);
bool upgrade_in_progress(void);
void upgrade_client_gone(struct client *c);
/* New side, at start-up with --takeover FD: reads the offer (the cgroup to use; the host
 * administrator's namespaces). Exits, the old router serving on, when it cannot take over. */
int upgrade_takeover_offer(int sock, const char **cgroup);
/* Then, with the programs loaded (governor_start takeover): takes everything over and answers
 * the upgrade's requester. Exits when it cannot (before GO: the old router serves on). */
void upgrade_takeover(const char *state_file);

/* Module parts of the state (each its own file's): export, and adopt on the new side. */
json_t *client_export(struct upgrade_fds *f, const struct client *mark, int *mark_index);
int client_adopt(json_t *doc, struct upgrade_fds *f, int mark_index, struct client **mark);
json_t *client_admin_export(void);
int client_admin_adopt(const json_t *a);
/* Stops (or resumes) reading requests: they wait in the sockets during a handover. */
void client_pause(bool paused);
/* No request waiting on a resolution, no reply queued; close_stuck: clients whose replies are
 * queued (they do not read) are closed. */
bool client_settled(bool close_stuck);
json_t *peer_export(struct upgrade_fds *f);
int peer_adopt(json_t *doc, struct upgrade_fds *f);
json_t *fastpath_export(struct upgrade_fds *f);
void fastpath_adopt(json_t *maps, struct upgrade_fds *f);
json_t *qos_export(void);
void qos_adopt(json_t *o);
json_t *service_export(void);
/* The document in force and the half of the kernel's array it is in: recomputed into the
 * other half in slices, then the entries move. 0 or -errno with err. */
int service_adopt(json_t *o, char *err, size_t errlen);
bool service_idle(void);
bool control_idle(void);
bool spawn_idle(void);
/* The state file, without reading it (the state came from the router before). */
int state_adopt(const char *path);
void state_load_listener(json_t *o);
/* Answers a control request (doc borrowed). */
void control_answer(struct client *c, uint32_t id, json_t *doc);
/* The metrics listening socket (-1: none), and serving on one handed over (taken, also when
 * it fails). */
int metrics_listen_fd(void);
int metrics_start_fd(int lfd);

/* ---- router.c: the daemon ---- */

struct router {
	struct event_loop *r_loop;
	struct cluster *r_cluster;
	const struct cluster_node *r_self; /* points into r_cluster */
	char r_node_name[NAME_MAX_LEN];
	uint32_t r_fabric_ip;
	uint16_t r_peer_port; /* host order */
	char *r_socket_path;
	char *r_cluster_path; /* NULL: built-in default */
	char *r_cgroup_name;  /* ours, under the cgroup v2 root (--cgroup) */
	char *r_exe;	      /* our binary's path, as started (an upgrade's default) */
	char **r_argv;	      /* our arguments, as started (an upgrade starts the new binary so) */
	char *r_bpf_dir;      /* --bpf-dir, or NULL */
	dev_t r_ns_dev;	      /* the router's own network namespace */
	ino_t r_ns_ino;
	time_t r_started;
	bool r_debug; /* --log-level debug: skip formatting per-connection lines otherwise */
	/* counters for status */
	uint64_t r_nconnect, r_nfallback, r_nlisten;
};

extern struct router router;

/* Handles one checked request from a control-socket client. */
void router_dispatch(struct client *c, const void *msg, size_t len);
/* Answers a RESOLVE_REQ from a peer: FOUND / NO_LISTENER / NO_POD. */
void router_resolve_listener(uint32_t ip, uint16_t port, struct resolve_result *res);
/* A control-socket client went away: recheck its pod's listeners shortly (see router.c). */
void router_client_gone(struct client *c);
/* Replies FALLBACK to a LISTEN_REQ. */
void router_reply_fallback(struct client *c, uint16_t type, uint32_t id);

/* ---- directory.c: every pod of the cluster we know of (ours and announced), by IP ---- */

struct dir_pod {
	struct hnode dp_node;
	uint32_t dp_ip;
	char dp_nodename[NAME_MAX_LEN];
	char dp_name[NAME_MAX_LEN];
	json_t *dp_labels;
	bool dp_local; /* registered on this router */
};

int directory_init(void);
void directory_free(void);
const struct dir_pod *directory_find(uint32_t ip);
/* Adds or replaces the pod at ip (labels: a reference is taken). A remote announcement never
 * replaces a local pod (-EEXIST). 0 or -errno. */
int directory_put(const char *node, bool local, uint32_t ip, const char *name, json_t *labels);
void directory_del(uint32_t ip);
/* Forgets every remote pod node announced (it re-announced from scratch). */
void directory_drop_node(const char *node);
/* Iteration: start with *bucket = 0 and prev = NULL; NULL at the end. */
const struct dir_pod *directory_iter(size_t *bucket, const struct dir_pod *prev);
/* Called after every put/del (router.c: services follow their pods). */
extern void (*directory_changed_hook)(void);
/* Changes on every put/del, so compiled policy knows when it is stale. */
uint64_t directory_generation(void);
size_t directory_count(void);
json_t *directory_json(void);

/* ---- policy.c: network policy, parsed, validated and compiled for per-connect lookups ---- */

enum policy_dir { POLICY_INGRESS = 0, POLICY_EGRESS = 1, POLICY_NDIRS = 2 };

struct policy_doc;

/* Parses and validates a whole policy document. On error fills err with
 * "ORIGIN: JSON.PATH: problem" and returns -EINVAL (or -ENOMEM). */
int policy_parse(const char *text, size_t len, const char *origin, struct policy_doc **out,
		 char *err, size_t errlen);
/* Reads path and parses it; -errno (with err filled) when it cannot be read. */
int policy_load(const char *path, struct policy_doc **out, char *err, size_t errlen);
void policy_doc_free(struct policy_doc *d);
size_t policy_doc_rules(const struct policy_doc *d);
size_t policy_doc_count(const struct policy_doc *d);
/* Makes d (owned from now on) the policy in force and compiles it. */
void policy_install(struct policy_doc *d);
const struct policy_doc *policy_current(void);
/* Whether local pod local_ip may talk to peer_ip:port (network order) in direction dir. */
bool policy_allows(uint32_t local_ip, enum policy_dir dir, uint32_t peer_ip, uint16_t port,
		   uint8_t proto);
/* A TCP connection src -> dst:port: egress of src and ingress of dst, for every pod the
 * directory knows (local or remote). */
bool policy_allows_conn(uint32_t src_ip, uint32_t dst_ip, uint16_t dst_port);

/* One compiled allowance: local pod pa_local may talk (pa_dir) to pa_net/pa_len on ports
 * pa_lo..pa_hi of pa_proto (0: any), or on every port. Ports in host order. */
struct policy_allowance {
	uint32_t pa_local;
	enum policy_dir pa_dir;
	uint32_t pa_net;
	uint8_t pa_len;
	bool pa_all_ports;
	uint8_t pa_proto;
	uint16_t pa_lo, pa_hi;
};
typedef void (*policy_allow_fn)(const struct policy_allowance *a, void *arg);
void policy_foreach_allowance(policy_allow_fn fn, void *arg);
void policy_foreach_isolated(void (*fn)(uint32_t ip, enum policy_dir dir, void *arg), void *arg);
json_t *policy_json(void);
void policy_free(void);
/* A label key (value false) or value as Kubernetes allows them. */
bool policy_label_valid(const char *s, bool value);
/* ---- podsync.c: announcing our pods to other routers, learning theirs ---- */

void podsync_build(struct slim_pod_sync *m, enum slim_pod_sync_op op, const struct dir_pod *d);
/* A POD_SYNC from node's router (fabric byte order). 0, or -EBADMSG when malformed. */
int podsync_receive(const char *node, const struct slim_pod_sync *m);
/* A local pod was registered (added) or removed: directory and every other router. */
void podsync_pod_changed(const struct pod *p, bool added);
/* peer.c hooks: dial node unless a connection we opened exists; queue msg on every connection
 * we opened (closing those that cannot take it, so they re-sync on reconnect). */
void peer_ensure(const struct cluster_node *node);
/* Dials every node we have no connection to (so our pods are announced again). */
void peer_reconnect_all(void);
void peer_broadcast(const void *msg, size_t len);

/* sockdiag.c hook: destroys exactly the socket s (4-tuple and cookie, as a dump reported it):
 * -ESTALE or -ENOENT when it is gone, never another socket on the same port. */
int sockdiag_destroy_sock(const struct sockdiag_sock *s);

/* ---- enforce.c: making live state obey a newly installed policy ---- */

/* spawn.c: a run of a system tool off the loop is done (ret as spawn_feed's). */
typedef void (*spawn_done_fn)(int ret, void *arg);

struct enforce_report {
	unsigned er_checked; /* live connections judged */
	unsigned er_revoked; /* destroyed because the policy now forbids them */
	unsigned er_failed;  /* could not be destroyed (already gone, ...) */
	int er_nft;	     /* nftables result: 0 or -errno */
	uint64_t er_usec;
};

/* Flushes cached resolutions and destroys live connections the policy forbids (SOCK_DESTROY:
 * both ends see a reset) before returning; reprograms the overlay filter off the loop and calls
 * done(nft result, arg) on the loop once it is in force (done may be NULL). */
void enforce_policy(struct enforce_report *r, spawn_done_fn done, void *arg);
/* router.c hook: the server app accepted the connection overlay (src = the client): revokes it
 * when the policy in force forbids it (it raced with a policy change). */
void enforce_accepted(const struct tuple4 *overlay);
/* Connections destroyed because a policy forbade them, since this router started. */
uint64_t enforce_revoked_count(void);

/* ---- spawn.c: running nft and tc ---- */

/* Runs argv (argv[0] a full path) with text on its stdin, in network namespace netns_fd (-1:
 * ours), and waits. 0, -EIO when it exited non-zero, -errno when it could not run. */
int spawn_feed(const char *const argv[], int netns_fd, const char *text, size_t len);
/* The same, the tool's stderr discarded when quiet. */
int spawn_feed_quiet(const char *const argv[], int netns_fd, const char *text, size_t len,
		     bool quiet);
/* The full path of a system tool (static buffer), or NULL. */
const char *spawn_find(const char *name);
/* The same off the loop: runs argv with text (owned once queued) on its stdin in a worker thread,
 * in netns_fd (-1: ours; dup'ed, the caller keeps its own), runs queued one at a time and in
 * order; done(ret, arg) is called on the loop. 0 or -errno (text not taken). */
int spawn_async(const char *const argv[], int netns_fd, char *text, size_t len,
		spawn_done_fn done, void *arg);
/* What a step function answers: run what it wrote (quietly: the tool's stderr discarded, for a
 * run that may fail by design); 0 when the job is done, -errno to end it with that error. */
#define SPAWN_STEP_RUN	     1
#define SPAWN_STEP_RUN_QUIET 2
/* Writes the stdin of a job's run number step into f, in the worker thread; prev is how the run
 * before went (spawn_feed's result; 0 for the first). */
typedef int (*spawn_step_fn)(FILE *f, unsigned step, int prev, void *warg);
/* As spawn_async, but runs argv once per step that step(f, ...) writes, in the worker thread,
 * off the loop, one after the other, until it says done; done(its answer, arg) on the loop;
 * warg (owned from now on) is freed with wfree after done. 0 or -errno (warg not taken). */
int spawn_async_steps(const char *const argv[], spawn_step_fn step, void *warg,
		      void (*wfree)(void *warg), spawn_done_fn done, void *arg);
/* Waits for the run in progress and drops the queued ones (shutdown). */
void spawn_stop(void);

/* ---- nft.c: the overlay path's filter, compiled from the same policy ---- */

/* Replaces table inet slim with the compiled policy of this host's pods (removes it when no
 * local pod is isolated), off the loop (spawn_async); done(0 or -errno, arg) once in force. */
void nft_apply(spawn_done_fn done, void *arg);
/* Pods changed: nft_apply() shortly (coalescing bursts). */
void nft_schedule(void);
/* Removes our table (shutdown). */
void nft_remove(void);


/* ---- qos.c: per-pod rate limits and priorities (marks, HTB) ---- */

#define QOS_PRIO_KEEP (-2) /* qos_pod_set: leave the priority as it is (-1 clears it) */

/* Tags a host socket created for pod_ip with the pod's class (SO_PRIORITY 1:class, SO_MARK). */
/* The SO_MARK and SO_PRIORITY a socket of the pod carries (false: none). */
bool qos_socket_marks(uint32_t pod_ip, uint32_t *mark, uint32_t *prio);
void qos_mark_socket(int fd, uint32_t pod_ip);
/* A pod.set is done: ret 0 (in force) or -errno with err saying what failed (the pod's previous
 * settings are back in force then, or err says they could not be restored). */
typedef void (*qos_done_fn)(int ret, const char *err, void *arg);
/* rate: "100mbit"-style, "none", or NULL (unchanged); prio 0-6, -1 (none) or QOS_PRIO_KEEP.
 * Checks the arguments, then reprograms tc off the loop, after the requests queued before it
 * (the last one asked for is the one in force), and calls done on the loop. 0 when queued (done
 * follows), or -errno with err filled (done is not called). */
int qos_pod_set(const struct pod *p, const char *rate, int prio, qos_done_fn done, void *arg,
		char *err, size_t errlen);
/* No pod.set or class rebuild waiting or running (an upgrade hands over only then). */
bool qos_idle(void);
json_t *qos_pod_json(uint32_t ip);
void qos_pod_gone(uint32_t ip);
void qos_free(void);


#endif
