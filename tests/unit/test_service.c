// SPDX-License-Identifier: MIT
/*
 * service.c: the document (every error names file, JSON path and problem; nothing else changes),
 * backends from the pod directory, the kernel's tables as written, and which connections a change
 * resets. The kernel, the connection dump and nftables are stubs that record what they were told.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <linux/types.h>

#include "govern_abi.h"
#include "router.h"
#include "test.h"

struct router router;
static struct cluster test_cluster;
static struct cidr test_services, test_overlay;

/* ---- stubs: the kernel's maps, connections, nftables ---- */

static struct slim_maglev_slot *test_maglev;
static struct {
	uint32_t vip;
	uint16_t port;
	struct slim_svc v;
} test_kernel[64];
static unsigned test_nkernel, test_nft_runs, test_ndestroyed;
static struct conn test_conns[8];
static unsigned test_nconns;

struct slim_maglev_slot *governor_maglev(void)
{
	if (!test_maglev)
		test_maglev = calloc(SLIM_MAGLEV_SLOTS, sizeof(*test_maglev));
	return test_maglev;
}

int governor_service_put(uint32_t vip, uint16_t port, const struct slim_svc *v)
{
	for (unsigned i = 0; i < test_nkernel; i++)
		if (test_kernel[i].vip == vip && test_kernel[i].port == port) {
			test_kernel[i].v = *v;
			return 0;
		}
	if (test_nkernel == 64)
		return -ENOSPC;
	test_kernel[test_nkernel].vip = vip;
	test_kernel[test_nkernel].port = port;
	test_kernel[test_nkernel++].v = *v;
	return 0;
}

void governor_service_del(uint32_t vip, uint16_t port)
{
	for (unsigned i = 0; i < test_nkernel; i++)
		if (test_kernel[i].vip == vip && test_kernel[i].port == port) {
			test_kernel[i] = test_kernel[--test_nkernel];
			return;
		}
}

int governor_sock_get(int fd, struct slim_sk *st)
{
	return -ENOENT;
}

static void test_services_changed(void)
{
	test_nft_runs++;
}

int conn_walk(uint32_t states, conn_fn fn, void *arg)
{
	for (unsigned i = 0; i < test_nconns; i++)
		fn(&test_conns[i], arg);
	return (int)test_nconns;
}

int sockdiag_destroy(const struct tuple4 *t)
{
	test_ndestroyed++;
	return 0;
}

void route_request(struct client *c, struct pod *p, const struct slim_route_req *req)
{
}

int client_reply(struct client *c, const void *msg, size_t len, int fd, bool unlimited)
{
	return 0;
}

static unsigned test_state_saves;

void state_save_services(const char *text, size_t len)
{
	test_state_saves++;
}

/* ---- helpers ---- */

static uint32_t ip(const char *s)
{
	struct in_addr a;

	inet_pton(AF_INET, s, &a);
	return a.s_addr;
}

/* Single quotes for double, so documents fit in C strings. */
static char *dq(const char *s)
{
	char *d = strdup(s);

	for (char *c = d; *c; c++)
		if (*c == '\'')
			*c = '"';
	return d;
}

static void setup(void)
{
	cidr_parse("10.96.0.0/16", &test_services);
	cidr_parse("10.244.0.0/16", &test_overlay);
	test_cluster.cl_services = test_services;
	test_cluster.cl_overlay = test_overlay;
	router.r_cluster = &test_cluster;
	service_changed_hook = test_services_changed;
	if (directory_generation() == 0 || directory_count() == 0)
		directory_init();
}

static int parse(const char *doc, struct service_doc **d, char *err, size_t errlen)
{
	char *text = dq(doc);
	int ret = service_parse(text, strlen(text), "s.json", &test_services, &test_overlay, d, err,
				errlen);

	free(text);
	return ret;
}

static void expect_error(const char *doc, const char *want)
{
	struct service_doc *d = NULL;
	char err[512] = "";
	int ret = parse(doc, &d, err, sizeof(err));

	ASSERT_EQ(ret, -EINVAL, doc);
	ASSERT_TRUE(d == NULL, "no document on error");
	if (strcmp(err, want)) {
		fprintf(stderr, "  want: %s\n  got:  %s\n", want, err);
		test_failed = 1;
	}
}

static void install(const char *doc)
{
	struct service_doc *d = NULL;
	char err[512] = "";

	if (!ASSERT_EQ(parse(doc, &d, err, sizeof(err)), 0, err))
		return;
	service_install(d, NULL, NULL);
}

/* ---- tests ---- */

TEST(bad_documents_name_file_path_and_problem)
{
	setup();
	expect_error("{'services':[{'name':'web','ip':'10.97.0.1','ports':[{'port':80}],"
		     "'endpoints':[]}]}",
		     "s.json: services[0].ip: 10.97.0.1 is outside service_cidr");
	expect_error("{'services':[{'name':'web','ip':'10.96.0.1','ports':[{'port':80}]}]}",
		     "s.json: services[0]: a service needs exactly one of selector or endpoints");
	expect_error("{'services':[{'name':'web','ip':'10.96.0.1','ports':[{'port':0}],"
		     "'endpoints':[]}]}",
		     "s.json: services[0].ports[0].port: 0 is out of range (1-65535)");
	expect_error("{'services':[{'name':'web','ip':'10.96.0.1','ports':[{'port':80,"
		     "'protocol':'UDP'}],'endpoints':[]}]}",
		     "s.json: services[0].ports[0].protocol: only \"TCP\" is supported");
	expect_error("{'services':[{'name':'a','ip':'10.96.0.1','ports':[{'port':80}],"
		     "'endpoints':[]},{'name':'a','ip':'10.96.0.2','ports':[{'port':80}],"
		     "'endpoints':[]}]}",
		     "s.json: services[1].name: a service named \"a\" comes earlier");
	expect_error("{'services':[{'name':'a','ip':'10.96.0.1','ports':[{'port':80}],"
		     "'endpoints':[]},{'name':'b','ip':'10.96.0.1','ports':[{'port':80}],"
		     "'endpoints':[]}]}",
		     "s.json: services[1].ip: 10.96.0.1 is the IP of service \"a\"");
	expect_error("{'services':[{'name':'web','ip':'10.96.0.1','ports':[{'port':80}],"
		     "'endpoints':['10.245.0.1']}]}",
		     "s.json: services[0].endpoints[0]: 10.245.0.1 is outside overlay_cidr");
	expect_error("{'services':[{'name':'web','ip':'10.96.0.1','ports':[{'port':80}],"
		     "'selector':{'app':3}}]}",
		     "s.json: services[0].selector.app: wrong type: expected a string, got an "
		     "integer");
	expect_error("{'services':[{'name':'web','ip':'10.96.0.1','ports':[{'port':80}],"
		     "'selector':{}}]}",
		     "s.json: services[0].selector: empty: it would select every pod");
	expect_error("{'services':[{'name':'web','ip':'10.96.0.1','ports':[{'port':80}],"
		     "'endpoints':[],'sessionAffinity':'Sticky'}]}",
		     "s.json: services[0].sessionAffinity: expected \"None\" or \"ClientIP\"");
	expect_error("{'services':[{'name':'Web','ip':'10.96.0.1','ports':[{'port':80}],"
		     "'endpoints':[]}]}",
		     "s.json: services[0].name: \"Web\" is not a DNS label ([a-z0-9-], 1-63)");
	expect_error("{'services':[{'name':'web','ip':'10.96.0.1','ports':[{'port':80},"
		     "{'port':80}],'endpoints':[]}]}",
		     "s.json: services[0].ports[1]: port 80 is listed twice");
	expect_error("{'services':[{'name':'web','ip':'10.96.0.1','port':80,'endpoints':[]}]}",
		     "s.json: services[0]: unknown key \"port\"");
	expect_error("{'services':{}}",
		     "s.json: services: wrong type: expected an array, got an object");
	expect_error("{'services':[}", "s.json: line 1 column 14: unexpected token near '}'");
}

TEST(endpoints_become_the_kernel_table)
{
	const struct service *sv;
	uint16_t target = 0;
	unsigned counts[3] = {0};

	setup();
	install("{'services':[{'name':'db','ip':'10.96.0.11','ports':[{'port':5432,"
		"'targetPort':6432}],'endpoints':['10.244.2.2','10.244.1.3','10.244.1.9'],"
		"'sessionAffinity':'ClientIP'}]}");
	sv = service_find(ip("10.96.0.11"), htons(5432), &target);
	if (!ASSERT_TRUE(sv != NULL, "service found by VIP and port"))
		return;
	ASSERT_EQ(ntohs(target), 6432, "targetPort");
	ASSERT_TRUE(service_find(ip("10.96.0.11"), htons(80), NULL) == NULL, "other port: none");
	ASSERT_EQ(sv->sv_nbackends, 3, "backends");
	ASSERT_EQ(ntohl(sv->sv_backends[0]), ntohl(ip("10.244.1.3")), "backends sorted");
	ASSERT_TRUE(sv->sv_table_size >= 300, "table >= 100x backends");
	ASSERT_EQ(test_nkernel, 1, "one kernel entry");
	ASSERT_EQ(test_kernel[0].v.sv_size, sv->sv_table_size, "kernel size");
	ASSERT_EQ(ntohs(test_kernel[0].v.sv_target_port), 6432, "kernel target port");
	ASSERT_EQ(test_kernel[0].v.sv_flags, SLIM_SVC_AFFINITY, "affinity flag");
	/* The slots the kernel reads are the backends' IPs, spread as Maglev spreads them. */
	for (uint32_t s = 0; s < sv->sv_table_size; s++) {
		uint32_t b = test_maglev[test_kernel[0].v.sv_base + s].ms_ip;

		for (unsigned k = 0; k < 3; k++)
			counts[k] += b == sv->sv_backends[k];
	}
	ASSERT_EQ(counts[0] + counts[1] + counts[2], sv->sv_table_size, "every slot a backend");
	for (unsigned k = 0; k < 3; k++)
		ASSERT_TRUE(counts[k] * 3 + 3 >= sv->sv_table_size &&
				    counts[k] * 3 <= sv->sv_table_size + 3,
			    "each backend a third of the slots");
}

TEST(selector_follows_the_directory_and_removal_resets)
{
	const struct service *sv;
	json_t *web = json_pack("{s:s}", "app", "web"), *other = json_pack("{s:s}", "app", "db");

	setup();
	directory_put("h1", true, ip("10.244.1.2"), "p1", web);
	directory_put("h2", false, ip("10.244.2.2"), "p1", web);
	directory_put("h2", false, ip("10.244.2.3"), "p2", other);
	install("{'services':[{'name':'web','ip':'10.96.0.10','ports':[{'port':80,"
		"'targetPort':8080}],'selector':{'app':'web'}}]}");
	sv = service_find(ip("10.96.0.10"), htons(80), NULL);
	if (!ASSERT_TRUE(sv != NULL, "web found"))
		return;
	ASSERT_EQ(sv->sv_nbackends, 2, "two pods selected, across nodes");
	ASSERT_TRUE(service_has_backend(sv, ip("10.244.2.2")), "remote pod selected");
	ASSERT_TRUE(!service_has_backend(sv, ip("10.244.2.3")), "other label not selected");

	/* A live connection to each backend through the VIP, one to a pod directly. */
	test_nconns = 3;
	for (unsigned i = 0; i < 3; i++) {
		memset(&test_conns[i], 0, sizeof(test_conns[i]));
		test_conns[i].co_out = true;
		test_conns[i].co_overlay.dst_port = htons(8080);
	}
	test_conns[0].co_svc_ip = ip("10.96.0.10");
	test_conns[0].co_svc_port = htons(80);
	test_conns[0].co_overlay.dst_ip = ip("10.244.1.2");
	test_conns[1].co_svc_ip = ip("10.96.0.10");
	test_conns[1].co_svc_port = htons(80);
	test_conns[1].co_overlay.dst_ip = ip("10.244.2.2");
	test_conns[2].co_overlay.dst_ip = ip("10.244.2.2");

	/* The same document again: nothing moves, nothing is reset. */
	test_ndestroyed = 0;
	install("{'services':[{'name':'web','ip':'10.96.0.10','ports':[{'port':80,"
		"'targetPort':8080}],'selector':{'app':'web'}}]}");
	ASSERT_EQ(test_ndestroyed, 0, "re-applying resets nothing");

	/* Edited to the endpoints of one backend: the other's VIP connection (only) is reset. */
	install("{'services':[{'name':'web','ip':'10.96.0.10','ports':[{'port':80,"
		"'targetPort':8080}],'endpoints':['10.244.1.2']}]}");
	ASSERT_EQ(test_ndestroyed, 1, "one connection reset");

	/* The service goes: its remaining VIP connection is reset, the direct one never. */
	test_ndestroyed = 0;
	install("{'services':[]}");
	ASSERT_EQ(test_ndestroyed, 2, "both VIP connections reset, the direct one kept");
	ASSERT_EQ(test_nkernel, 0, "kernel entries removed");
	test_nconns = 0;
	json_decref(web);
	json_decref(other);
}

TEST(no_backends_is_a_refusing_entry)
{
	setup();
	install("{'services':[{'name':'empty','ip':'10.96.0.20','ports':[{'port':80}],"
		"'selector':{'app':'nothing-has-this'}}]}");
	ASSERT_EQ(test_nkernel, 1, "an entry for the VIP");
	ASSERT_EQ(test_kernel[0].v.sv_size, 0, "size 0: the kernel refuses at once");
	install("{'services':[]}");
}

/* 10,000 services with 3 endpoints each: parsed and installed (tables included) quickly. */
TEST(ten_thousand_services)
{
	size_t cap = 10000 * 160 + 64, off = 0;
	char *doc = malloc(cap), err[512] = "";
	struct service_doc *d = NULL;
	struct timespec t0, t1, t2;

	setup();
	off += (size_t)snprintf(doc + off, cap - off, "{\"services\":[");
	for (int i = 0; i < 10000; i++)
		off += (size_t)snprintf(doc + off, cap - off,
					"%s{\"name\":\"s%d\",\"ip\":\"10.96.%d.%d\",\"ports\":[{\"port\":"
					"80}],\"endpoints\":[\"10.244.1.%d\",\"10.244.2.%d\",\"10.244."
					"3.%d\"]}",
					i ? "," : "", i, i / 250, i % 250 + 1, i % 200 + 2, i % 200 + 2,
					i % 200 + 2);
	snprintf(doc + off, cap - off, "]}");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (!ASSERT_EQ(service_parse(doc, strlen(doc), "big.json", &test_services, &test_overlay,
				     &d, err, sizeof(err)),
		       0, err)) {
		free(doc);
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ASSERT_EQ(service_doc_count(d), 10000, "all parsed");
	/* The kernel stub holds 64 entries: count what service_program wrote instead. */
	test_nkernel = 0;
	service_install(d, NULL, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t2);
	ASSERT_EQ(service_count(), 10000, "all installed");
	ASSERT_TRUE(service_find(ip("10.96.39.250"), htons(80), NULL) != NULL, "the last one");
	printf("  10,000 services: parse %.0f ms, install %.0f ms\n",
	       (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6,
	       (t2.tv_sec - t1.tv_sec) * 1e3 + (t2.tv_nsec - t1.tv_nsec) / 1e6);
	install("{'services':[]}");
	free(doc);
}

/* The backend a ClientIP client pod lands on, as the kernel computes it. */
static uint32_t affinity_backend(const struct service *sv, uint32_t client)
{
	return sv->sv_backends[sv->sv_table[maglev_slot(client, 0, sv->sv_table_size)]];
}

/* Adding a backend to a ClientIP service moves about 1/N of its clients, removing one moves only
 * that backend's clients: the table keeps its size across documents. */
TEST(affinity_moves_few_clients)
{
	static uint32_t before[4000];
	const struct service *sv;
	unsigned moved = 0, lost = 0, had_removed = 0;

	setup();
	install("{'services':[{'name':'db','ip':'10.96.0.11','ports':[{'port':5432}],"
		"'endpoints':['10.244.1.2','10.244.1.3','10.244.2.2'],'sessionAffinity':'ClientIP'}]}");
	sv = service_find(ip("10.96.0.11"), htons(5432), NULL);
	if (!ASSERT_TRUE(sv != NULL, "db"))
		return;
	for (uint32_t i = 0; i < 4000; i++)
		before[i] = affinity_backend(sv, htonl(0x0af40000 + i));
	install("{'services':[{'name':'db','ip':'10.96.0.11','ports':[{'port':5432}],"
		"'endpoints':['10.244.1.2','10.244.1.3','10.244.2.2','10.244.2.3'],"
		"'sessionAffinity':'ClientIP'}]}");
	sv = service_find(ip("10.96.0.11"), htons(5432), NULL);
	for (uint32_t i = 0; i < 4000; i++)
		moved += affinity_backend(sv, htonl(0x0af40000 + i)) != before[i];
	printf("  adding a 4th backend moved %u of 4000 clients\n", moved);
	ASSERT_TRUE(moved <= 4000 / 4 + 4000 * 6 / 100, "at most about 1/4 of the clients move");
	ASSERT_TRUE(moved >= 4000 / 4 - 4000 * 6 / 100, "and the new backend gets its share");

	for (uint32_t i = 0; i < 4000; i++)
		before[i] = affinity_backend(sv, htonl(0x0af40000 + i));
	install("{'services':[{'name':'db','ip':'10.96.0.11','ports':[{'port':5432}],"
		"'endpoints':['10.244.1.2','10.244.2.2','10.244.2.3'],'sessionAffinity':'ClientIP'}]}");
	sv = service_find(ip("10.96.0.11"), htons(5432), NULL);
	for (uint32_t i = 0; i < 4000; i++) {
		uint32_t now = affinity_backend(sv, htonl(0x0af40000 + i));

		had_removed += before[i] == ip("10.244.1.3");
		lost += before[i] != ip("10.244.1.3") && now != before[i];
	}
	printf("  removing one moved %u clients of the %u that stayed on other backends\n", lost,
	       4000 - had_removed);
	ASSERT_TRUE(lost <= 4000 * 3 / 100, "clients of the other backends stay (within 3%)");
	install("{'services':[]}");
}
