// SPDX-License-Identifier: MIT
/*
 * Unit tests for the overlay path's Services (router/svcnft.c): the nftables text for a few
 * services, and, as root, that the kernel takes it (10,000 services in well under the time a
 * chain-per-service table needs) and that svcnft_apply/svcnft_remove install, replace and
 * remove the table. Those run in a network namespace of the test's own (each test is a child
 * process, so it unshares one that goes away with it). The service table is a stub here: a
 * fixed array served through service_foreach/service_count.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>

#include "log.h"
#include "router.h"
#include "test.h"

struct router router;

static struct service *test_svcs;
static size_t test_nsvcs;

void service_foreach(void (*fn)(const struct service *s, void *arg), void *arg)
{
	for (size_t i = 0; i < test_nsvcs; i++)
		fn(&test_svcs[i], arg);
}

size_t service_count(void)
{
	return test_nsvcs;
}

static struct cluster test_cluster;
static struct cluster_node test_self;

static void setup_cluster(void)
{
	cidr_parse("10.244.0.0/16", &test_cluster.cl_overlay);
	cidr_parse("10.96.0.0/16", &test_cluster.cl_services);
	cidr_parse("10.244.1.0/24", &test_self.cn_pod_cidr);
	router.r_cluster = &test_cluster;
	router.r_self = &test_self;
}

static void add_port(struct service *s, uint16_t port, uint16_t target)
{
	s->sv_ports[s->sv_nports].sp_port = htons(port);
	s->sv_ports[s->sv_nports].sp_target = htons(target);
	s->sv_nports++;
}

/* backends: a NULL-terminated list, ascending as service.c keeps them. */
static void set_service(struct service *s, const char *name, const char *vip, bool affinity,
			const char *const *backends)
{
	unsigned n = 0;

	memset(s, 0, sizeof(*s));
	snprintf(s->sv_name, sizeof(s->sv_name), "%s", name);
	s->sv_ip = inet_addr(vip);
	s->sv_affinity = affinity;
	while (backends && backends[n])
		n++;
	s->sv_backends = calloc(n ? n : 1, sizeof(uint32_t));
	for (unsigned i = 0; i < n; i++)
		s->sv_backends[i] = inet_addr(backends[i]);
	s->sv_nbackends = n;
}

/*
 * web: two ports (the second given twice, as a careless document might), two backends;
 * sticky: ClientIP affinity, three backends; empty: no backend (refused).
 */
static void setup_services(void)
{
	static struct service svcs[3];
	static const char *const web[] = {"10.244.1.2", "10.244.2.2", NULL};
	static const char *const sticky[] = {"10.244.1.3", "10.244.1.4", "10.244.2.3", NULL};

	set_service(&svcs[0], "web", "10.96.0.10", false, web);
	add_port(&svcs[0], 80, 8080);
	add_port(&svcs[0], 443, 8443);
	add_port(&svcs[0], 443, 9443);
	set_service(&svcs[1], "sticky", "10.96.0.11", true, sticky);
	add_port(&svcs[1], 6379, 6379);
	set_service(&svcs[2], "empty", "10.96.0.12", false, NULL);
	add_port(&svcs[2], 80, 80);
	test_svcs = svcs;
	test_nsvcs = 3;
}

static const char want_text[] =
	"table ip slim_svc {\n"
	"\tmap service_ips {\n"
	"\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n"
	"\t\telements = {\n"
	"\t\t\t10.96.0.10 . tcp . 80 : goto pick-2,\n"
	"\t\t\t10.96.0.10 . tcp . 443 : goto pick-2,\n"
	"\t\t\t10.96.0.11 . tcp . 6379 : goto pick-3-by-client,\n"
	"\t\t\t10.96.0.12 . tcp . 80 : goto refuse\n"
	"\t\t}\n"
	"\t}\n"
	"\tmap backends {\n"
	"\t\ttypeof ip daddr . tcp dport . numgen random mod 1 : ip daddr . tcp dport\n"
	"\t\telements = {\n"
	"\t\t\t10.96.0.10 . 80 . 0 : 10.244.1.2 . 8080,\n"
	"\t\t\t10.96.0.10 . 80 . 1 : 10.244.2.2 . 8080,\n"
	"\t\t\t10.96.0.10 . 443 . 0 : 10.244.1.2 . 8443,\n"
	"\t\t\t10.96.0.10 . 443 . 1 : 10.244.2.2 . 8443,\n"
	"\t\t\t10.96.0.11 . 6379 . 0 : 10.244.1.3 . 6379,\n"
	"\t\t\t10.96.0.11 . 6379 . 1 : 10.244.1.4 . 6379,\n"
	"\t\t\t10.96.0.11 . 6379 . 2 : 10.244.2.3 . 6379\n"
	"\t\t}\n"
	"\t}\n"
	"\tchain prerouting {\n"
	"\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
	"\t\tip daddr . meta l4proto . th dport vmap @service_ips\n"
	"\t\tip daddr 10.96.0.0/16 goto refuse\n"
	"\t}\n"
	"\tchain output {\n"
	"\t\ttype nat hook output priority -100; policy accept;\n"
	"\t\tip daddr . meta l4proto . th dport vmap @service_ips\n"
	"\t\tip daddr 10.96.0.0/16 goto refuse\n"
	"\t}\n"
	"\tchain postrouting {\n"
	"\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
	"\t\tct status dnat ip saddr 10.244.1.0/24 ip daddr 10.244.1.0/24 snat ip to ct original "
	"ip daddr\n"
	"\t}\n"
	"\tchain untracked_in {\n"
	"\t\ttype filter hook prerouting priority raw; policy accept;\n"
	"\t\tip saddr != 10.244.0.0/16 fib daddr type local notrack\n"
	"\t}\n"
	"\tchain untracked_out {\n"
	"\t\ttype filter hook output priority raw; policy accept;\n"
	"\t\tip daddr != 10.96.0.0/16 ip daddr != 10.244.0.0/16 notrack\n"
	"\t}\n"
	"\tchain pick-2 {\n"
	"\t\tdnat ip to ip daddr . tcp dport . numgen random mod 2 map @backends\n"
	"\t}\n"
	"\tchain pick-3-by-client {\n"
	"\t\tdnat ip to ip daddr . tcp dport . jhash ip saddr mod 3 seed 0x736c696d map "
	"@backends\n"
	"\t}\n"
	"\tchain refuse {\n"
	"\t\tmeta l4proto tcp reject with tcp reset\n"
	"\t\treject\n"
	"\t}\n"
	"}\n";

/* svcnft_write's text in a malloc'd string (*ports: its return value). */
static char *write_text(const struct cluster_node *self, int *ports)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	*ports = -ENOMEM;
	if (!f)
		return NULL;
	*ports = svcnft_write(f, &test_cluster, self, test_svcs, test_nsvcs);
	fclose(f);
	return text;
}

TEST(text)
{
	char *text;
	int ports;

	setup_cluster();
	setup_services();
	text = write_text(&test_self, &ports);
	ASSERT_EQ(ports, 4, "service ports (a port given twice counts once)");
	ASSERT_STREQ(text, want_text, "ruleset");
	free(text);
}

TEST(text_without_self_has_no_hairpin_rule)
{
	char *text;
	int ports;

	setup_cluster();
	setup_services();
	text = write_text(NULL, &ports);
	ASSERT_EQ(ports, 4, "service ports");
	ASSERT_TRUE(text && !strstr(text, "postrouting"), "no postrouting chain");
	ASSERT_TRUE(text && strstr(text, "chain prerouting"), "the rest is there");
	free(text);
}

TEST(no_services_no_text)
{
	char *text;
	int ports;

	setup_cluster();
	test_svcs = NULL;
	test_nsvcs = 0;
	text = write_text(&test_self, &ports);
	ASSERT_EQ(ports, 0, "no service ports");
	ASSERT_STREQ(text, "", "nothing written");
	free(text);
}

TEST(only_empty_services)
{
	static const char *const none[] = {NULL};
	struct service s;
	char *text;
	int ports;

	setup_cluster();
	set_service(&s, "empty", "10.96.0.12", false, none);
	add_port(&s, 80, 80);
	test_svcs = &s;
	test_nsvcs = 1;
	text = write_text(&test_self, &ports);
	ASSERT_EQ(ports, 1, "one service port");
	/* nft refuses "elements = { }": the backends map is declared without elements. */
	ASSERT_TRUE(text && strstr(text, "\tmap backends {\n\t\ttypeof ip daddr . tcp dport . "
					 "numgen random mod 1 : ip daddr . tcp dport\n\t}\n"),
		    "empty backends map");
	free(text);
}

/* ---- as root: the kernel's view ---- */

/* Root, nft, and a network namespace of this test's own: or SKIP. */
static void private_netns(void)
{
	if (geteuid() != 0)
		SKIP("needs root");
	if (!spawn_find("nft"))
		SKIP("nft not installed");
	if (unshare(CLONE_NEWNET) < 0)
		SKIP("unshare(CLONE_NEWNET): %s", strerror(errno));
}

static int nft_load(const char *text)
{
	const char *argv[] = {spawn_find("nft"), "-f", "-", NULL};

	return spawn_feed(argv, -1, text, strlen(text));
}

/* `nft list ...` of this netns into a malloc'd string; NULL when nft fails (no such table). */
static char *nft_list(const char *what)
{
	char cmd[128], *out = NULL;
	size_t len = 0;
	FILE *p, *o;
	int c;

	snprintf(cmd, sizeof(cmd), "nft list %s 2>/dev/null", what);
	p = popen(cmd, "r");
	o = open_memstream(&out, &len);
	while (p && o && (c = fgetc(p)) != EOF)
		fputc(c, o);
	if (o)
		fclose(o);
	if (!p || pclose(p) != 0) {
		free(out);
		return NULL;
	}
	return out;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

TEST(kernel_takes_the_text)
{
	char *text, *listed;
	int ports;

	setup_cluster();
	setup_services();
	private_netns();
	text = write_text(&test_self, &ports);
	ASSERT_OK(nft_load(text), "nft -f");
	listed = nft_list("map ip slim_svc backends");
	ASSERT_TRUE(listed && strstr(listed, "10.96.0.11 . 6379 . 2 : 10.244.2.3 . 6379"),
		    "backends map as written");
	free(listed);
	free(text);
}

/*
 * 10,000 services of 3 backends load at once. A chain per service port and per endpoint
 * (kube-proxy's shape) took 25 to 60 s here, anonymous maps per service 7 s; this shape takes
 * about half a second, so 5 s is a regression, not a slow machine.
 */
TEST(ten_thousand_services_load_fast)
{
	enum { N = 10000, B = 3 };
	char *text = NULL;
	size_t len = 0;
	double t0, dt;
	FILE *f;
	int ports;

	setup_cluster();
	private_netns();
	test_svcs = calloc(N, sizeof(*test_svcs));
	test_nsvcs = N;
	for (unsigned i = 0; i < N; i++) {
		struct service *s = &test_svcs[i];

		snprintf(s->sv_name, sizeof(s->sv_name), "svc%u", i);
		s->sv_ip = htonl(0x0a600000 + 1 + i); /* 10.96.0.1 on */
		add_port(s, 80, 8080);
		s->sv_affinity = i % 10 == 0;
		s->sv_backends = calloc(B, sizeof(uint32_t));
		for (unsigned b = 0; b < B; b++) /* 10.244.<1..200>.<2..251>, ascending */
			s->sv_backends[b] =
				htonl(0x0af40000 + ((i % 200 + 1 + b) << 8) + 2 + i % 250);
		s->sv_nbackends = B;
	}
	t0 = now_s();
	f = open_memstream(&text, &len);
	ports = svcnft_write(f, &test_cluster, &test_self, test_svcs, test_nsvcs);
	fclose(f);
	/* The text is written on the router's loop: its time is time the loop serves nobody. */
	printf("  %u services x %u backends: the text (%zu bytes) written in %.1f ms\n", N, B, len,
	       (now_s() - t0) * 1e3);
	ASSERT_EQ(ports, N, "service ports");
	t0 = now_s();
	ASSERT_OK(nft_load(text), "nft -f");
	dt = now_s() - t0;
	printf("  %u services x %u backends (%zu bytes): nft -f took %.2f s\n", N, B, len, dt);
	ASSERT_TRUE(dt < 5.0, "loads in under 5 s");
	free(text);
}

/* ---- svcnft_apply/svcnft_remove through the router's event loop and spawn worker ---- */

struct wait_list {
	const char *wl_what;   /* nft list argument */
	const char *wl_expect; /* a substring, or NULL: the listing must fail (no table) */
	uint64_t wl_deadline;
	bool wl_ok;
};

static bool listing_matches(struct wait_list *w)
{
	char *out = nft_list(w->wl_what);
	bool ok = w->wl_expect ? out && strstr(out, w->wl_expect) : !out;

	free(out);
	return ok;
}

static long wait_tick(struct event_loop *loop, void *arg)
{
	struct wait_list *w = arg;

	w->wl_ok = listing_matches(w);
	if (w->wl_ok || event_now_ms() > w->wl_deadline) {
		event_loop_stop(loop);
		return EVENT_TIMER_STOP;
	}
	return 20;
}

/* Runs the loop (so the spawn worker's results come in) until the listing matches, 10 s at
 * most, polling. */
static bool wait_listing(const char *what, const char *expect)
{
	struct wait_list w = {what, expect, event_now_ms() + 10000, false};

	event_timer_add(router.r_loop, 20, wait_tick, &w);
	event_loop_run(router.r_loop);
	return w.wl_ok;
}

TEST(apply_replaces_and_removes)
{
	static const char *const one[] = {"10.244.1.9", NULL};
	struct service *moved;

	setup_cluster();
	setup_services();
	private_netns();
	router.r_loop = event_loop_new();
	if (!ASSERT_TRUE(router.r_loop != NULL, "event loop"))
		return;

	svcnft_apply();
	/* A burst: the second and third applies come while the first runs; the table ends up
	 * as the last one asked for. */
	moved = &test_svcs[1];
	set_service(moved, "sticky", "10.96.0.21", false, one);
	add_port(moved, 6379, 6380);
	svcnft_apply();
	svcnft_apply();
	ASSERT_TRUE(wait_listing("map ip slim_svc backends", "10.96.0.21 . 6379 . 0 : 10.244.1.9 . "
							     "6380"),
		    "table replaced with the latest services");
	ASSERT_TRUE(wait_listing("map ip slim_svc service_ips", "10.96.0.21 . tcp . 6379 : goto "
								"pick-1"),
		    "latest VIP in service_ips");

	test_nsvcs = 0;
	svcnft_apply();
	ASSERT_TRUE(wait_listing("table ip slim_svc", NULL), "no services: table removed");

	setup_services();
	svcnft_apply();
	ASSERT_TRUE(wait_listing("table ip slim_svc", "pick-3-by-client"), "installed again");
	/* Shutdown: the worker is stopped first, then the table removed synchronously. */
	spawn_stop();
	svcnft_remove();
	ASSERT_TRUE(listing_matches(&(struct wait_list){"table ip slim_svc", NULL, 0, false}),
		    "removed at shutdown");
}
