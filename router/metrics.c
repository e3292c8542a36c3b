// SPDX-License-Identifier: MIT
/*
 * The Prometheus endpoint (--metrics ADDR:PORT): GET /metrics in the text exposition format
 * 0.0.4, served by libmicrohttpd from the router's own event loop, so the counters are read by
 * the thread that owns them and nothing here locks.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <linux/types.h>
#include <microhttpd.h>

#include "govern_abi.h"
#include "log.h"
#include "router.h"
#include "sockmap.h"

/*
 * A scrape costs a few microseconds of the loop, but whoever reaches the port may open
 * connections and keep them idle: a handful in all, fewer per address (so one address cannot
 * take every slot from the scraper), each dropped after a few idle seconds.
 */
#define METRICS_CONN_LIMIT     8
#define METRICS_CONN_PER_IP    4
#define METRICS_CONN_TIMEOUT_S 5
#define METRICS_CONN_MEMORY    (32 * 1024)
#define METRICS_BACKLOG	       16
/* The connection walk is a sock_diag dump: at most one a second, whoever asks how often. */
#define METRICS_CONN_WALK_MIN_MS 1000

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

static struct MHD_Daemon *metrics_daemon;
static int metrics_epfd = -1;
static long long metrics_timer; /* 0: none armed */

/* ---- the exposition text: a growable buffer and one writer per family ---- */

struct metrics_buf {
	char *mb_buf;
	size_t mb_len, mb_cap;
	bool mb_failed; /* out of memory: the scrape answers 500 */
};

static void metrics_printf(struct metrics_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void metrics_printf(struct metrics_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->mb_failed)
		return;
	for (;;) {
		size_t room = b->mb_cap - b->mb_len;
		char *nb;

		va_start(ap, fmt);
		n = vsnprintf(b->mb_buf ? b->mb_buf + b->mb_len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->mb_failed = true;
			return;
		}
		if ((size_t)n < room) {
			b->mb_len += (size_t)n;
			return;
		}
		nb = realloc(b->mb_buf, b->mb_cap * 2 + (size_t)n + 1);
		if (!nb) {
			b->mb_failed = true;
			return;
		}
		b->mb_buf = nb;
		b->mb_cap = b->mb_cap * 2 + (size_t)n + 1;
	}
}

/* The HELP and TYPE lines: written once per family, by that family's writer. */
static void metrics_family(struct metrics_buf *b, const char *name, const char *type,
			   const char *help)
{
	metrics_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One sample; labels is "" or the inside of the braces, values already escaped. */
static void metrics_sample(struct metrics_buf *b, const char *name, const char *labels,
			   uint64_t value)
{
	if (labels[0])
		metrics_printf(b, "%s{%s} %llu\n", name, labels, (unsigned long long)value);
	else
		metrics_printf(b, "%s %llu\n", name, (unsigned long long)value);
}

static void metrics_write_connects(struct metrics_buf *b, const struct slim_govern_stats *gs)
{
	/* The kernel's count of connect() calls by what its governance program did with them:
	 * the one place every connect of a shimmed app passes, whoever answered it. */
	metrics_family(b, "slim_connects_total", "counter",
		       "connect() calls of shimmed apps by outcome, as the kernel counted them "
		       "(slim: sent to a host listener; fallback: told to take the overlay; "
		       "denied: refused by policy; miss: no route yet, the router is asked; "
		       "refused: not an overlay destination of a route).");
	metrics_sample(b, "slim_connects_total", "outcome=\"slim\"", gs->gs_connect_ok);
	metrics_sample(b, "slim_connects_total", "outcome=\"fallback\"", gs->gs_connect_fallback);
	metrics_sample(b, "slim_connects_total", "outcome=\"denied\"", gs->gs_connect_denied);
	metrics_sample(b, "slim_connects_total", "outcome=\"miss\"", gs->gs_connect_miss);
	metrics_sample(b, "slim_connects_total", "outcome=\"refused\"", gs->gs_connect_refused);
}

static void metrics_write_accepts(struct metrics_buf *b, const struct slim_govern_stats *gs)
{
	metrics_family(b, "slim_accepts_total", "counter",
		       "Connections accepted on host listeners, by whether they carried a valid "
		       "identity (anonymous ones are destroyed).");
	metrics_sample(b, "slim_accepts_total", "identity=\"valid\"", gs->gs_accept_ok);
	metrics_sample(b, "slim_accepts_total", "identity=\"none\"", gs->gs_accept_anon);
}

static void metrics_write_governance(struct metrics_buf *b, const struct slim_govern_stats *gs,
				     unsigned routes)
{
	metrics_family(b, "slim_governance_denials_total", "counter",
		       "Operations on governed sockets the kernel refused, by operation.");
	metrics_sample(b, "slim_governance_denials_total", "op=\"bind\"", gs->gs_bind_denied);
	metrics_sample(b, "slim_governance_denials_total", "op=\"setsockopt\"",
		       gs->gs_sockopt_denied);
	metrics_sample(b, "slim_governance_denials_total", "op=\"listen\"", gs->gs_listen_confined);
	metrics_family(b, "slim_syns_dropped_total", "counter",
		       "SYNs to a host listener dropped for lack of a valid identity.");
	metrics_sample(b, "slim_syns_dropped_total", "", gs->gs_syn_dropped);
	metrics_family(b, "slim_governance_events_lost_total", "counter",
		       "Kernel events lost because the ring buffer was full.");
	metrics_sample(b, "slim_governance_events_lost_total", "", gs->gs_events_lost);
	metrics_family(b, "slim_kernel_routes", "gauge",
		       "Entries in the kernel's route map (slim and fallback routes).");
	metrics_sample(b, "slim_kernel_routes", "", routes);
}

static void metrics_write_services(struct metrics_buf *b, const struct slim_govern_stats *gs)
{
	metrics_family(b, "slim_services", "gauge", "Services (ClusterIP) in force.");
	metrics_sample(b, "slim_services", "", service_count());
	metrics_family(b, "slim_service_connects_total", "counter",
		       "connect() calls of shimmed apps to a Service VIP, as the kernel counted them "
		       "(backend: one was picked; no_backend: refused, the service has none).");
	metrics_sample(b, "slim_service_connects_total", "outcome=\"backend\"",
		       gs->gs_connect_service);
	metrics_sample(b, "slim_service_connects_total", "outcome=\"no_backend\"",
		       gs->gs_connect_no_backend);
	metrics_family(b, "slim_service_resets_total", "counter",
		       "Connections through a VIP reset because their backend left the service.");
	metrics_sample(b, "slim_service_resets_total", "", service_revoked_count());
}

/* Prometheus wants the bound as a float: the shortest text that reads back the same. */
static void metrics_write_setup_path(struct metrics_buf *b, const char *path,
				     const struct slim_setup_hist *h)
{
	static const unsigned long long bounds_ns[SLIM_SETUP_BOUNDS] = SLIM_SETUP_BOUNDS_NS;
	uint64_t cumulative = 0;
	char labels[64];

	for (int i = 0; i <= SLIM_SETUP_BOUNDS; i++) {
		cumulative += h->sh_bucket[i];
		if (i < SLIM_SETUP_BOUNDS)
			snprintf(labels, sizeof(labels), "path=\"%s\",le=\"%g\"", path,
				 (double)bounds_ns[i] / 1e9);
		else
			snprintf(labels, sizeof(labels), "path=\"%s\",le=\"+Inf\"", path);
		metrics_sample(b, "slim_connect_setup_seconds_bucket", labels, cumulative);
	}
	snprintf(labels, sizeof(labels), "path=\"%s\"", path);
	metrics_printf(b, "slim_connect_setup_seconds_sum{%s} %.9f\n", labels,
		       (double)h->sh_sum_ns / 1e9);
	metrics_sample(b, "slim_connect_setup_seconds_count", labels, cumulative);
}

static void metrics_write_setup(struct metrics_buf *b)
{
	static const char *const names[SLIM_SETUP_PATHS] = {
		[SLIM_SETUP_SAMEHOST] = "samehost",
		[SLIM_SETUP_CROSSHOST] = "crosshost",
	};
	struct slim_setup_hist h;

	metrics_family(b, "slim_connect_setup_seconds", "histogram",
		       "Setup time of slim connects, from the app's first connect() (a route miss "
		       "and the router's answer included) to the end of the handshake, by path "
		       "(samehost: to a listener of this host; crosshost: to another node).");
	for (int p = 0; p < SLIM_SETUP_PATHS; p++)
		if (governor_setup_hist(p, &h) == 0)
			metrics_write_setup_path(b, names[p], &h);
}

static void metrics_write_governor(struct metrics_buf *b)
{
	struct slim_govern_stats gs;
	unsigned routes = 0;
	bool on = governor_stats(&gs, &routes) == 0;

	metrics_family(b, "slim_governance_enabled", "gauge",
		       "1 when the governance programs are attached (else every connection takes "
		       "the overlay).");
	metrics_sample(b, "slim_governance_enabled", "", on);
	/* Without the programs there are no kernel counters: better absent than zeros. */
	if (!on)
		return;
	metrics_write_connects(b, &gs);
	metrics_write_setup(b);
	metrics_write_accepts(b, &gs);
	metrics_write_governance(b, &gs, routes);
	metrics_write_services(b, &gs);
}

static void metrics_write_router_answers(struct metrics_buf *b)
{
	metrics_family(b, "slim_route_answers_total", "counter",
		       "Shim requests the router answered, by answer (route: a host listener for "
		       "a ROUTE_REQ; fallback: take the overlay, for a ROUTE_REQ or LISTEN_REQ).");
	metrics_sample(b, "slim_route_answers_total", "answer=\"route\"", router.r_nconnect);
	metrics_sample(b, "slim_route_answers_total", "answer=\"fallback\"", router.r_nfallback);
}

static void metrics_write_fastpath(struct metrics_buf *b)
{
	struct sockmap_stats st;
	unsigned entries = 0;
	bool on = fastpath_stats(&st, &entries) == 0;

	metrics_family(b, "slim_fastpath_enabled", "gauge",
		       "1 when the same-host fast path (sockmap redirect) is on.");
	metrics_sample(b, "slim_fastpath_enabled", "", on);
	if (!on)
		return;
	metrics_family(b, "slim_fastpath_sockets", "gauge", "Sockets in the fast path's sockhash.");
	metrics_sample(b, "slim_fastpath_sockets", "", entries);
	metrics_family(b, "slim_fastpath_sockets_total", "counter",
		       "Eligible sockets by what the fast path did with them (added to the "
		       "sockhash, refused by the kernel, skipped: bytes had crossed).");
	metrics_sample(b, "slim_fastpath_sockets_total", "outcome=\"added\"", st.sms_added);
	metrics_sample(b, "slim_fastpath_sockets_total", "outcome=\"failed\"", st.sms_add_failed);
	metrics_sample(b, "slim_fastpath_sockets_total", "outcome=\"skipped\"", st.sms_skipped);
	metrics_family(b, "slim_fastpath_sends_total", "counter",
		       "Sends from mapped sockets, by path (redirect: straight to the peer "
		       "socket; tcp: through the TCP stack).");
	metrics_sample(b, "slim_fastpath_sends_total", "path=\"redirect\"", st.sms_redirected);
	metrics_sample(b, "slim_fastpath_sends_total", "path=\"tcp\"",
		       st.sms_passed + st.sms_flow_passed);
	metrics_family(b, "slim_fastpath_redirected_bytes_total", "counter",
		       "Bytes the fast path redirected straight to the peer socket.");
	metrics_sample(b, "slim_fastpath_redirected_bytes_total", "", st.sms_redirected_bytes);
	metrics_family(b, "slim_fastpath_repeated_segments_total", "counter",
		       "Segments arriving the TCP way at a mapped socket that repeated bytes already "
		       "passed on, by what the stream verdict did (cut: the head removed; uncut: "
		       "the reader got those bytes twice).");
	metrics_sample(b, "slim_fastpath_repeated_segments_total", "outcome=\"cut\"",
		       st.sms_rx_trimmed - st.sms_rx_trim_failed);
	metrics_sample(b, "slim_fastpath_repeated_segments_total", "outcome=\"uncut\"",
		       st.sms_rx_trim_failed);
}

static void metrics_write_pool(struct metrics_buf *b)
{
	metrics_family(b, "slim_pool_sockets_total", "counter",
		       "Pre-made governed sockets asked for by shims, by outcome (handed out, or "
		       "held back by the per-pod rate limit).");
	metrics_sample(b, "slim_pool_sockets_total", "outcome=\"handed\"", pool_handed_count());
	metrics_sample(b, "slim_pool_sockets_total", "outcome=\"limited\"", pool_refused_count());
}

static void metrics_write_pods(struct metrics_buf *b)
{
	const struct dir_pod *d = NULL;
	size_t bucket = 0, local = 0, remote = 0;

	while ((d = directory_iter(&bucket, d))) {
		if (d->dp_local)
			local++;
		else
			remote++;
	}
	metrics_family(b, "slim_pods", "gauge",
		       "Pods in the directory, by scope (local: registered here; remote: announced "
		       "by other routers).");
	metrics_sample(b, "slim_pods", "scope=\"local\"", local);
	metrics_sample(b, "slim_pods", "scope=\"remote\"", remote);
	metrics_family(b, "slim_listeners", "gauge", "Host listeners of this node's pods.");
	metrics_sample(b, "slim_listeners", "", listener_count());
}

static void metrics_write_policy(struct metrics_buf *b)
{
	const struct policy_doc *pd = policy_current();

	metrics_family(b, "slim_policy_rules", "gauge",
		       "Rules of the network policy in force (0: no policy).");
	metrics_sample(b, "slim_policy_rules", "", pd ? policy_doc_rules(pd) : 0);
	metrics_family(b, "slim_revocations_total", "counter",
		       "Established connections destroyed because a policy applied later forbids "
		       "them.");
	metrics_sample(b, "slim_revocations_total", "", enforce_revoked_count());
}

static void metrics_write_clients(struct metrics_buf *b)
{
	metrics_family(b, "slim_router_clients", "gauge",
		       "Control-socket connections (one per shimmed thread, plus slimctl).");
	metrics_sample(b, "slim_router_clients", "", client_count());
	metrics_family(b, "slim_router_clients_refused_total", "counter",
		       "Control-socket connections closed at once by the resource caps.");
	metrics_sample(b, "slim_router_clients_refused_total", "", client_refused_count());
}

/* A label value as the exposition format wants it: backslash, quote and newline escaped. */
static void metrics_label_escape(char *out, size_t outlen, const char *in)
{
	size_t n = 0;

	for (; *in && n + 3 < outlen; in++) {
		if (*in == '\\' || *in == '"') {
			out[n++] = '\\';
			out[n++] = *in;
		} else if (*in == '\n') {
			out[n++] = '\\';
			out[n++] = 'n';
		} else {
			out[n++] = *in;
		}
	}
	out[n] = 0;
}

static void metrics_write_pod_clients_one(const struct pod *p, void *arg)
{
	char name[2 * NAME_MAX_LEN + 1], labels[2 * NAME_MAX_LEN + 16];

	metrics_label_escape(name, sizeof(name), p->p_name);
	snprintf(labels, sizeof(labels), "pod=\"%s\"", name);
	metrics_sample(arg, "slim_pod_router_clients", labels,
		       client_count_netns(p->p_ns_dev, p->p_ns_ino));
}

static void metrics_write_pod_clients(struct metrics_buf *b)
{
	metrics_family(b, "slim_pod_router_clients", "gauge",
		       "Control-socket connections from each pod of this node (its share of the "
		       "caps: one per shimmed thread that asked the router something).");
	pod_foreach(metrics_write_pod_clients_one, b);
}

static void metrics_write_peers(struct metrics_buf *b)
{
	metrics_family(b, "slim_peer_connections", "gauge",
		       "Fabric connections to other routers, by direction (out: we dialed).");
	metrics_sample(b, "slim_peer_connections", "direction=\"out\"", peer_connected_count(true));
	metrics_sample(b, "slim_peer_connections", "direction=\"in\"", peer_connected_count(false));
	metrics_family(b, "slim_peer_connections_closed_total", "counter",
		       "Incoming fabric connections closed by the caps (refused) or for an overdue "
		       "message (timeout).");
	metrics_sample(b, "slim_peer_connections_closed_total", "reason=\"refused\"",
		       peer_refused_count());
	metrics_sample(b, "slim_peer_connections_closed_total", "reason=\"timeout\"",
		       peer_timed_out_count());
}

static void metrics_write_resolve(struct metrics_buf *b)
{
	metrics_family(b, "slim_resolve_cache_entries", "gauge",
		       "Cached answers of other routers about their listeners.");
	metrics_sample(b, "slim_resolve_cache_entries", "", resolve_cache_count());
	metrics_family(b, "slim_resolve_inflight", "gauge",
		       "Resolutions waiting on another router's answer.");
	metrics_sample(b, "slim_resolve_inflight", "", resolve_inflight_count());
}

/* Established slim connections by direction and path, from one sock_diag dump. */
struct metrics_conns {
	uint64_t mc_when_ms; /* 0: never walked */
	bool mc_ok;
	unsigned mc_n[2][3]; /* [out][path] */
};

enum { METRICS_PATH_HOST, METRICS_PATH_FASTPATH, METRICS_PATH_LOOPBACK };

static void metrics_count_conn(const struct conn *co, void *arg)
{
	struct metrics_conns *mc = arg;
	int path = METRICS_PATH_HOST;

	if (co->co_loopback)
		path = METRICS_PATH_LOOPBACK;
	else if (fastpath_contains(&co->co_host))
		path = METRICS_PATH_FASTPATH;
	mc->mc_n[co->co_out][path]++;
}

static void metrics_write_conns(struct metrics_buf *b)
{
	static const char *const paths[] = {"host", "fastpath", "loopback"};
	static struct metrics_conns mc;
	uint64_t now = event_now_ms();

	/* The dump is the one part of a scrape whose cost grows with the node: reuse a walk
	 * younger than a second, so scraping in a loop cannot make the loop dump in a loop. */
	if (!mc.mc_when_ms || now - mc.mc_when_ms >= METRICS_CONN_WALK_MIN_MS) {
		memset(mc.mc_n, 0, sizeof(mc.mc_n));
		mc.mc_ok = governor_enabled() &&
			   conn_walk(1u << TCP_ESTABLISHED, metrics_count_conn, &mc) >= 0;
		mc.mc_when_ms = now;
	}
	if (!mc.mc_ok)
		return;
	metrics_family(b, "slim_connections", "gauge",
		       "Established slim connections of this node's pods, by direction (out: the "
		       "pod is the client) and path (host: host sockets; fastpath: sockmap "
		       "redirect; loopback: inside one pod).");
	for (int out = 1; out >= 0; out--)
		for (size_t p = 0; p < sizeof(paths) / sizeof(paths[0]); p++) {
			char labels[64];

			snprintf(labels, sizeof(labels), "direction=\"%s\",path=\"%s\"",
				 out ? "out" : "in", paths[p]);
			metrics_sample(b, "slim_connections", labels, mc.mc_n[out][p]);
		}
}

static void metrics_write_process(struct metrics_buf *b)
{
	char labels[128];

	metrics_family(b, "slim_router_start_time_seconds", "gauge",
		       "When the router started, in seconds since the Unix epoch.");
	metrics_sample(b, "slim_router_start_time_seconds", "", (uint64_t)router.r_started);
	/* Every label value here is a number we print: nothing to escape. */
	snprintf(labels, sizeof(labels), "proto_version=\"%u\",microhttpd=\"%s\"",
		 (unsigned)SLIM_PROTO_VERSION, MHD_get_version());
	metrics_family(b, "slim_build_info", "gauge",
		       "Always 1; the labels say what this router was built with.");
	metrics_sample(b, "slim_build_info", labels, 1);
}

/* The cluster store's sync state, only when the router runs with one (--store). */
static void metrics_write_store(struct metrics_buf *b)
{
	int64_t rev = store_revision();

	if (!store_enabled())
		return;
	metrics_family(b, "slim_store_connected", "gauge",
		       "1 while the cluster store is connected and watched, 0 while it is "
		       "unreachable (the last known state stays in force).");
	metrics_sample(b, "slim_store_connected", "", store_connected());
	metrics_family(b, "slim_store_revision", "gauge",
		       "The newest revision of the cluster store this router has applied.");
	metrics_sample(b, "slim_store_revision", "", rev > 0 ? (uint64_t)rev : 0);
}

static void metrics_render(struct metrics_buf *b)
{
	metrics_write_process(b);
	metrics_write_governor(b);
	metrics_write_router_answers(b);
	metrics_write_conns(b);
	metrics_write_fastpath(b);
	metrics_write_pool(b);
	metrics_write_pods(b);
	metrics_write_policy(b);
	metrics_write_clients(b);
	metrics_write_pod_clients(b);
	metrics_write_peers(b);
	metrics_write_resolve(b);
	metrics_write_store(b);
}

/* ---- HTTP, by libmicrohttpd ---- */

static enum MHD_Result metrics_reply(struct MHD_Connection *conn, unsigned status, const char *type,
				     char *body, size_t len)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	/* body is malloc'd: the response owns it from here, free()d once sent. */
	r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result metrics_reply_text(struct MHD_Connection *conn, unsigned status,
					  const char *text)
{
	char *body = strdup(text);

	if (!body)
		return MHD_NO;
	return metrics_reply(conn, status, "text/plain; charset=utf-8", body, strlen(body));
}

static enum MHD_Result metrics_answer(void *cls, struct MHD_Connection *conn, const char *url,
				      const char *method, const char *version,
				      const char *upload_data, size_t *upload_data_size,
				      void **req_cls)
{
	struct metrics_buf b = {0};

	/* Answered on the first call, before any body: a request with one gets its error and
	 * the connection is closed, nothing of it is read. */
	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
		return metrics_reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
					  "method not allowed\n");
	if (strcmp(url, "/metrics"))
		return metrics_reply_text(conn, MHD_HTTP_NOT_FOUND, "not found\n");
	metrics_render(&b);
	if (b.mb_failed) {
		free(b.mb_buf);
		return metrics_reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
	}
	return metrics_reply(conn, MHD_HTTP_OK, METRICS_CONTENT_TYPE, b.mb_buf, b.mb_len);
}

/* What libmicrohttpd has to say (a client's bad request, a limit reached): anyone who reaches
 * the port can make it talk, so it is rate-limited. */
static void metrics_mhd_log(void *cls, const char *fmt, va_list ap)
{
	static struct log_ratelimit rl;
	char msg[256];
	size_t n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n && msg[n - 1] == '\n')
		msg[--n] = '\0';
	log_ratelimited(&rl, LOG_LVL_WARN, "metrics: %s", msg);
}

static long metrics_timeout(struct event_loop *loop, void *arg);

/* libmicrohttpd's own deadlines (idle connections to close) become one router timer. */
static void metrics_schedule(void)
{
	MHD_UNSIGNED_LONG_LONG ms;

	if (metrics_timer > 0)
		event_timer_del(router.r_loop, metrics_timer);
	metrics_timer = 0;
	if (MHD_get_timeout(metrics_daemon, &ms) != MHD_YES)
		return;
	metrics_timer = event_timer_add(router.r_loop, ms > LONG_MAX ? LONG_MAX : (long)ms,
					metrics_timeout, NULL);
	if (metrics_timer < 0)
		metrics_timer = 0;
}

static long metrics_timeout(struct event_loop *loop, void *arg)
{
	metrics_timer = 0; /* this one ends here; metrics_schedule() arms the next */
	MHD_run(metrics_daemon);
	metrics_schedule();
	return EVENT_TIMER_STOP;
}

static void metrics_readable(struct event_loop *loop, int fd, uint32_t events, void *arg)
{
	MHD_run(metrics_daemon);
	metrics_schedule();
}

int metrics_parse_addr(const char *arg, struct sockaddr_in *sa, char *err, size_t errlen)
{
	const char *colon = strrchr(arg, ':');
	char ip[INET_ADDRSTRLEN];
	unsigned long port;
	char *end;

	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	if (!colon || colon == arg || (size_t)(colon - arg) >= sizeof(ip)) {
		snprintf(err, errlen, "expected ADDR:PORT (an IPv4 address and a port)");
		return -EINVAL;
	}
	memcpy(ip, arg, (size_t)(colon - arg));
	ip[colon - arg] = '\0';
	if (inet_pton(AF_INET, ip, &sa->sin_addr) != 1) {
		snprintf(err, errlen, "\"%s\" is not an IPv4 address", ip);
		return -EINVAL;
	}
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (!colon[1] || *end || errno || colon[1] < '0' || colon[1] > '9' || port < 1 ||
	    port > 65535) {
		snprintf(err, errlen, "\"%s\" is not a port (1-65535)", colon + 1);
		return -EINVAL;
	}
	sa->sin_port = htons((uint16_t)port);
	return 0;
}

/* Our own listening socket, so a bind failure says exactly why (libmicrohttpd would only say
 * that it could not start). */
static int metrics_listen(const struct sockaddr_in *sa)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1, ret;

	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0 ||
	    listen(fd, METRICS_BACKLOG) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	return fd;
}

int metrics_start(const struct sockaddr_in *sa)
{
	int lfd = metrics_listen(sa);

	return lfd < 0 ? lfd : metrics_start_fd(lfd);
}

int metrics_listen_fd(void)
{
	const union MHD_DaemonInfo *info;

	if (!metrics_daemon)
		return -1;
	info = MHD_get_daemon_info(metrics_daemon, MHD_DAEMON_INFO_LISTEN_FD);
	return info ? (int)info->listen_fd : -1;
}

int metrics_start_fd(int lfd)
{
	const union MHD_DaemonInfo *info;
	int ret;

	/* MHD_USE_EPOLL without MHD_USE_INTERNAL_POLLING_THREAD: no thread of its own, its epoll
	 * descriptor sits in our loop and MHD_run() does the work when it is readable. */
	metrics_daemon = MHD_start_daemon(
		MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, metrics_answer, NULL,
		MHD_OPTION_EXTERNAL_LOGGER, metrics_mhd_log, NULL, /* first: it logs the others */
		MHD_OPTION_LISTEN_SOCKET, (MHD_socket)lfd, MHD_OPTION_CONNECTION_LIMIT,
		(unsigned)METRICS_CONN_LIMIT, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
		(unsigned)METRICS_CONN_PER_IP, MHD_OPTION_CONNECTION_TIMEOUT,
		(unsigned)METRICS_CONN_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
		(size_t)METRICS_CONN_MEMORY, MHD_OPTION_END);
	if (!metrics_daemon) {
		/* Some libmicrohttpd versions close it on failure, some not: a second close of a
		 * number nothing has reused since (one thread) only fails with EBADF. */
		close(lfd);
		return -EIO;
	}
	info = MHD_get_daemon_info(metrics_daemon, MHD_DAEMON_INFO_EPOLL_FD);
	if (!info || info->epoll_fd < 0) {
		ret = -EIO;
		goto stop;
	}
	metrics_epfd = info->epoll_fd;
	ret = event_add(router.r_loop, metrics_epfd, EVENT_READ, metrics_readable, NULL);
	if (ret < 0)
		goto stop;
	metrics_schedule();
	return 0;
stop:
	MHD_stop_daemon(metrics_daemon); /* closes lfd too */
	metrics_daemon = NULL;
	metrics_epfd = -1;
	return ret;
}

void metrics_stop(void)
{
	if (!metrics_daemon)
		return;
	if (metrics_timer > 0)
		event_timer_del(router.r_loop, metrics_timer);
	metrics_timer = 0;
	event_del(router.r_loop, metrics_epfd);
	MHD_stop_daemon(metrics_daemon);
	metrics_daemon = NULL;
	metrics_epfd = -1;
}
