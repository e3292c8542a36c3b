// SPDX-License-Identifier: MIT
/*
 * router/metrics.c alone: --metrics argument checks, and a real scrape over loopback served by
 * the router's event loop (event.c), with the counters it reads stubbed to known values.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <linux/types.h>

#include "govern_abi.h"
#include "router.h"
#include "sockmap.h"
#include "test.h"

/* ---- what metrics.c reads, with values a scrape must show ---- */

struct router router;

int governor_stats(struct slim_govern_stats *s, unsigned *routes)
{
	memset(s, 0, sizeof(*s));
	s->gs_connect_ok = 7;
	s->gs_connect_fallback = 3;
	s->gs_accept_ok = 5;
	*routes = 2;
	return 0;
}
/* Same host: 2 connects within 50 us, 1 within 1 ms; across hosts: 1 over 5 s. */
int governor_setup_hist(int path, struct slim_setup_hist *h)
{
	memset(h, 0, sizeof(*h));
	if (path == SLIM_SETUP_SAMEHOST) {
		h->sh_bucket[0] = 2;
		h->sh_bucket[4] = 1;
		h->sh_sum_ns = 1500000;
	} else {
		h->sh_bucket[SLIM_SETUP_BOUNDS] = 1;
		h->sh_sum_ns = 6000000000ull;
	}
	return 0;
}
void pod_foreach(void (*fn)(const struct pod *p, void *arg), void *arg)
{
	static struct pod pods[2] = {{.p_name = "web-1", .p_ns_ino = 1},
				     {.p_name = "odd\"name\\", .p_ns_ino = 2}};

	fn(&pods[0], arg);
	fn(&pods[1], arg);
}
unsigned client_count_netns(dev_t dev, ino_t ino)
{
	return ino == 1 ? 3 : 0;
}
bool governor_enabled(void)
{
	return true;
}
int conn_walk(uint32_t states, conn_fn fn, void *arg)
{
	struct conn co = {.co_out = true};

	fn(&co, arg);
	return 1;
}
int fastpath_stats(struct sockmap_stats *st, unsigned *entries)
{
	return -ENOTCONN;
}
bool fastpath_contains(const struct tuple4 *host)
{
	return false;
}
uint64_t pool_handed_count(void)
{
	return 11;
}
uint64_t pool_refused_count(void)
{
	return 0;
}
const struct dir_pod *directory_iter(size_t *bucket, const struct dir_pod *prev)
{
	static const struct dir_pod pods[2] = {{.dp_local = true}, {.dp_local = false}};

	if (!prev)
		return &pods[0];
	return prev == &pods[0] ? &pods[1] : NULL;
}
size_t listener_count(void)
{
	return 4;
}
bool store_enabled(void)
{
	return true;
}
bool store_connected(void)
{
	return true;
}
int64_t store_revision(void)
{
	return 42;
}
const struct policy_doc *policy_current(void)
{
	return NULL;
}
size_t policy_doc_rules(const struct policy_doc *d)
{
	return 0;
}
uint64_t enforce_revoked_count(void)
{
	return 13;
}
size_t service_count(void)
{
	return 2;
}
uint64_t service_revoked_count(void)
{
	return 5;
}
size_t client_count(void)
{
	return 6;
}
uint64_t client_refused_count(void)
{
	return 0;
}
unsigned peer_connected_count(bool dialed)
{
	return dialed ? 1 : 0;
}
uint64_t peer_refused_count(void)
{
	return 0;
}
uint64_t peer_timed_out_count(void)
{
	return 0;
}
size_t resolve_cache_count(void)
{
	return 0;
}
size_t resolve_inflight_count(void)
{
	return 0;
}

TEST(parse_addr)
{
	static const char *const bad[] = {"1.2.3.4",	 "x:80",   "1.2.3.4:0",	   "1.2.3.4:65536",
					  "1.2.3.4:",	 ":80",	   "1.2.3.4:80x",  "1.2.3.4:-1",
					  "1.2.3.4: 80", "::1:80", "1.2.3.400:80", ""};
	struct sockaddr_in sa;
	char err[128];

	ASSERT_EQ(metrics_parse_addr("198.18.0.1:9464", &sa, err, sizeof(err)), 0, "good");
	ASSERT_EQ(sa.sin_addr.s_addr, inet_addr("198.18.0.1"), "address");
	ASSERT_EQ(ntohs(sa.sin_port), 9464, "port");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (!ASSERT_EQ(metrics_parse_addr(bad[i], &sa, err, sizeof(err)), -EINVAL, bad[i]))
			continue;
		ASSERT_TRUE(err[0] != '\0', "an error message");
	}
}

/* One HTTP exchange driven by the router's loop, the server in the same thread. */
struct exchange {
	int ex_fd;
	const char *ex_req;
	char ex_buf[16384];
	size_t ex_len;
};

static void exchange_io(struct event_loop *loop, int fd, uint32_t events, void *arg)
{
	struct exchange *ex = arg;
	ssize_t n;

	if (events & EVENT_WRITE) {
		send(fd, ex->ex_req, strlen(ex->ex_req), 0);
		event_set_mask(loop, fd, EVENT_READ);
		return;
	}
	n = read(fd, ex->ex_buf + ex->ex_len, sizeof(ex->ex_buf) - 1 - ex->ex_len);
	if (n > 0) {
		ex->ex_len += (size_t)n;
		return;
	}
	if (n < 0 && errno == EAGAIN)
		return;
	ex->ex_buf[ex->ex_len] = '\0';
	event_del(loop, fd);
	event_loop_stop(loop);
}

static long exchange_deadline(struct event_loop *loop, void *arg)
{
	event_loop_stop(loop);
	return EVENT_TIMER_STOP;
}

static void exchange(const struct sockaddr_in *sa, const char *req, struct exchange *ex)
{
	long long t;

	memset(ex, 0, sizeof(*ex));
	ex->ex_req = req;
	ex->ex_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	connect(ex->ex_fd, (const struct sockaddr *)sa, sizeof(*sa));
	event_add(router.r_loop, ex->ex_fd, EVENT_WRITE, exchange_io, ex);
	t = event_timer_add(router.r_loop, 5000, exchange_deadline, NULL);
	event_loop_run(router.r_loop);
	event_timer_del(router.r_loop, t);
	event_del(router.r_loop, ex->ex_fd);
	close(ex->ex_fd);
}

static unsigned count(const char *hay, const char *needle)
{
	unsigned n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

TEST(scrape)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	struct exchange ex;
	int probe;

	/* A free loopback port. */
	probe = socket(AF_INET, SOCK_STREAM, 0);
	bind(probe, (struct sockaddr *)&sa, sizeof(sa));
	getsockname(probe, (struct sockaddr *)&sa, &len);
	close(probe);
	router.r_loop = event_loop_new();
	router.r_started = 1700000000;
	router.r_nconnect = 9;
	if (!ASSERT_EQ(metrics_start(&sa), 0, "metrics_start"))
		goto out;
	ASSERT_EQ(metrics_start(&sa), -EADDRINUSE, "a second listener on the same port");

	exchange(&sa, "GET /metrics HTTP/1.0\r\n\r\n", &ex);
	ASSERT_TRUE(!strncmp(ex.ex_buf, "HTTP/1.0 200", 12) ||
			    !strncmp(ex.ex_buf, "HTTP/1.1 200", 12),
		    "status 200");
	ASSERT_TRUE(strstr(ex.ex_buf, "text/plain; version=0.0.4") != NULL, "content type");
	ASSERT_TRUE(strstr(ex.ex_buf, "\nslim_connects_total{outcome=\"slim\"} 7\n") != NULL,
		    "slim connects");
	ASSERT_TRUE(strstr(ex.ex_buf, "\nslim_connects_total{outcome=\"fallback\"} 3\n") != NULL,
		    "fallback connects");
	/* The histogram: cumulative buckets, +Inf = count, sum in seconds; clients per pod. */
	static const char *const lines[][2] = {
		{"slim_connect_setup_seconds_bucket{path=\"samehost\",le=\"5e-05\"} 2", "first bucket"},
		{"slim_connect_setup_seconds_bucket{path=\"samehost\",le=\"0.0005\"} 2",
		 "buckets below the second count"},
		{"slim_connect_setup_seconds_bucket{path=\"samehost\",le=\"0.001\"} 3", "cumulative"},
		{"slim_connect_setup_seconds_count{path=\"samehost\"} 3", "count"},
		{"slim_connect_setup_seconds_sum{path=\"samehost\"} 0.001500000", "sum in seconds"},
		{"slim_connect_setup_seconds_bucket{path=\"crosshost\",le=\"5\"} 0", "nothing under 5 s"},
		{"slim_connect_setup_seconds_bucket{path=\"crosshost\",le=\"+Inf\"} 1", "+Inf"},
		{"slim_pod_router_clients{pod=\"web-1\"} 3", "clients of a pod"},
		{"slim_revocations_total 13", "revocations"},
		{"slim_pod_router_clients{pod=\"odd\\\"name\\\\\"} 0", "a pod name escaped"},
	};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		char want[160];

		snprintf(want, sizeof(want), "\n%s\n", lines[i][0]);
		ASSERT_TRUE(strstr(ex.ex_buf, want) != NULL, lines[i][1]);
	}
	ASSERT_EQ(count(ex.ex_buf, "slim_connect_setup_seconds_bucket{"), 2 * (SLIM_SETUP_BOUNDS + 1),
		  "every bucket of both paths");
	ASSERT_TRUE(strstr(ex.ex_buf, "\nslim_route_answers_total{answer=\"route\"} 9\n") != NULL,
		    "route answers");
	ASSERT_TRUE(strstr(ex.ex_buf, "\nslim_pods{scope=\"local\"} 1\n") != NULL, "local pods");
	ASSERT_TRUE(strstr(ex.ex_buf, "\nslim_connections{direction=\"out\",path=\"host\"} 1\n") !=
			    NULL,
		    "connections");
	ASSERT_TRUE(strstr(ex.ex_buf, "\nslim_router_start_time_seconds 1700000000\n") != NULL,
		    "start time");
	ASSERT_TRUE(strstr(ex.ex_buf, "\nslim_fastpath_enabled 0\n") != NULL, "fast path off");
	ASSERT_TRUE(strstr(ex.ex_buf, "\nslim_store_connected 1\n") != NULL, "store connected");
	ASSERT_TRUE(strstr(ex.ex_buf, "\nslim_store_revision 42\n") != NULL, "store revision");
	ASSERT_EQ(count(ex.ex_buf, "slim_fastpath_sockets"), 0, "no fast path counters when off");
	/* Every family once: as many TYPE lines as HELP lines, and no TYPE line twice. */
	ASSERT_EQ(count(ex.ex_buf, "# TYPE slim_connects_total "), 1, "one TYPE per family");
	ASSERT_EQ(count(ex.ex_buf, "# TYPE slim_pods "), 1, "one TYPE per family");
	ASSERT_EQ(count(ex.ex_buf, "# TYPE "), count(ex.ex_buf, "# HELP "), "HELP and TYPE paired");

	exchange(&sa, "GET /other HTTP/1.0\r\n\r\n", &ex);
	ASSERT_TRUE(strstr(ex.ex_buf, " 404 ") != NULL, "404 for another path");
	exchange(&sa, "DELETE /metrics HTTP/1.0\r\n\r\n", &ex);
	ASSERT_TRUE(strstr(ex.ex_buf, " 405 ") != NULL, "405 for another method");
	ASSERT_TRUE(strstr(ex.ex_buf, "Allow: GET, HEAD") != NULL, "Allow header");
	exchange(&sa, "\x01\x02 nonsense\r\n\r\n", &ex);
	ASSERT_TRUE(!strncmp(ex.ex_buf, "HTTP/1.", 7) && ex.ex_buf[9] >= '4',
		    "an HTTP error for garbage");
	metrics_stop();
out:
	event_loop_free(router.r_loop);
	router.r_loop = NULL;
}
