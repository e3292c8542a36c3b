// SPDX-License-Identifier: MIT
/* Unit tests for the policy document (parsing, validation errors) and its compiled lookups
 * (router/policy.c over router/directory.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "router.h"
#include "test.h"

/* Documents are written with ' for " so they stay readable; parse() swaps them back. */
static int parse(const char *doc, struct policy_doc **d, char *err, size_t len)
{
	size_t n = strlen(doc);
	char *text = malloc(n + 1);
	int ret;

	for (size_t i = 0; i <= n; i++)
		text[i] = doc[i] == '\'' ? '"' : doc[i];
	err[0] = '\0';
	ret = policy_parse(text, n, "p.json", d, err, len);
	free(text);
	return ret;
}

static void expect_error(const char *doc, const char *want)
{
	struct policy_doc *d = (void *)1;
	char err[512];

	ASSERT_EQ(parse(doc, &d, err, sizeof(err)), -EINVAL, want);
	ASSERT_STREQ(err, want, "error text");
	ASSERT_TRUE(d == NULL, "no document on error");
}

static json_t *labels(const char *app)
{
	return json_pack("{s:s}", "app", app);
}

/* h1 (this router): web 10.244.1.2, db 10.244.1.3, other 10.244.1.4; h2: web2 10.244.2.2. */
static void setup_pods(void)
{
	json_t *l;

	directory_free();
	policy_free();
	directory_init();
	directory_put("h1", true, inet_addr("10.244.1.2"), "web", l = labels("web"));
	json_decref(l);
	directory_put("h1", true, inet_addr("10.244.1.3"), "db", l = labels("db"));
	json_decref(l);
	directory_put("h1", true, inet_addr("10.244.1.4"), "other", l = labels("other"));
	json_decref(l);
	directory_put("h2", false, inet_addr("10.244.2.2"), "web2", l = labels("web"));
	json_decref(l);
}

static bool install(const char *doc)
{
	struct policy_doc *d;
	char err[512];

	if (!ASSERT_OK(parse(doc, &d, err, sizeof(err)), err))
		return false;
	policy_install(d);
	return true;
}

static bool conn_ok(const char *src, const char *dst, int port)
{
	return policy_allows_conn(inet_addr(src), inet_addr(dst), htons((uint16_t)port));
}

#define DB_INGRESS                                                                                 \
	"{'policies':[{'name':'db','podSelector':{'matchLabels':{'app':'db'}},"                    \
	"'ingress':[{'from':[{'podSelector':{'matchLabels':{'app':'web'}}}],"                      \
	"'ports':[{'port':5432}]}]}]}"

TEST(no_policy_allows_everything)
{
	setup_pods();
	ASSERT_TRUE(conn_ok("10.244.1.4", "10.244.1.3", 5432), "unselected");
	ASSERT_TRUE(conn_ok("10.244.2.2", "10.244.1.3", 1), "remote");
}

TEST(ingress_by_labels_and_port)
{
	setup_pods();
	if (!install(DB_INGRESS))
		return;
	ASSERT_TRUE(conn_ok("10.244.1.2", "10.244.1.3", 5432), "web -> db:5432 (local)");
	ASSERT_TRUE(conn_ok("10.244.2.2", "10.244.1.3", 5432), "web2 -> db:5432 (remote client)");
	ASSERT_TRUE(!conn_ok("10.244.1.2", "10.244.1.3", 5433), "web -> db:5433");
	ASSERT_TRUE(!conn_ok("10.244.1.4", "10.244.1.3", 5432), "other -> db");
	ASSERT_TRUE(!conn_ok("10.244.9.9", "10.244.1.3", 5432), "unknown client -> db");
	/* Unselected pods stay open in both directions. */
	ASSERT_TRUE(conn_ok("10.244.1.3", "10.244.1.4", 80), "db -> other (no egress policy)");
	ASSERT_TRUE(conn_ok("10.244.1.4", "10.244.1.2", 80), "other -> web");
	policy_free();
}

TEST(egress_by_cidr)
{
	setup_pods();
	if (!install("{'policies':[{'name':'e','podSelector':{'matchLabels':{'app':'web'}},"
		     "'policyTypes':['Egress'],'egress':[{'to':[{'ipBlock':{'cidr':'10.244.2.0/"
		     "24'}}]},{'to':[{'ipBlock':{'cidr':'10.244.1.3/32'}}],'ports':[{'port':"
		     "5000,'endPort':5010}]}]}]}"))
		return;
	ASSERT_TRUE(conn_ok("10.244.1.2", "10.244.2.7", 1234), "web -> h2 /24 any port");
	ASSERT_TRUE(conn_ok("10.244.1.2", "10.244.1.3", 5005), "web -> db in range");
	ASSERT_TRUE(!conn_ok("10.244.1.2", "10.244.1.3", 5011), "web -> db out of range");
	ASSERT_TRUE(!conn_ok("10.244.1.2", "10.244.1.4", 80), "web -> other");
	/* Ingress is not isolated by an Egress-only policy. */
	ASSERT_TRUE(conn_ok("10.244.1.4", "10.244.1.2", 80), "other -> web");
	ASSERT_TRUE(policy_allows(inet_addr("10.244.1.2"), POLICY_EGRESS, inet_addr("10.244.2.1"),
				  htons(53), IPPROTO_UDP),
		    "udp any port in the /24");
	ASSERT_TRUE(!policy_allows(inet_addr("10.244.1.2"), POLICY_EGRESS, inet_addr("10.244.1.3"),
				   htons(5005), IPPROTO_UDP),
		    "the port range is TCP");
	policy_free();
}

TEST(deny_all_and_empty_rule)
{
	setup_pods();
	if (!install("{'policies':[{'name':'deny','podSelector':{},'policyTypes':['Ingress']}]}"))
		return;
	ASSERT_TRUE(!conn_ok("10.244.1.2", "10.244.1.3", 1), "deny all ingress");
	ASSERT_TRUE(!conn_ok("10.244.1.2", "10.244.2.2", 1), "remote server: judged here too");
	ASSERT_TRUE(conn_ok("10.244.1.2", "10.244.3.9", 1), "unknown server: its router decides");
	if (!install("{'policies':[{'name':'deny','podSelector':{},'policyTypes':['Ingress']},"
		     "{'name':'open','podSelector':{'matchLabels':{'app':'db'}},'ingress':[{}]}]}"))
		return;
	ASSERT_TRUE(conn_ok("10.244.1.2", "10.244.1.3", 1), "an empty rule allows every peer");
	ASSERT_TRUE(!conn_ok("10.244.1.3", "10.244.1.2", 1), "still deny for web");
	policy_free();
}

TEST(recompiles_when_pods_change)
{
	json_t *l;

	setup_pods();
	if (!install(DB_INGRESS))
		return;
	ASSERT_TRUE(!conn_ok("10.244.2.3", "10.244.1.3", 5432), "unknown remote pod");
	directory_put("h2", false, inet_addr("10.244.2.3"), "web3", l = labels("web"));
	json_decref(l);
	ASSERT_TRUE(conn_ok("10.244.2.3", "10.244.1.3", 5432), "announced remote web pod");
	directory_drop_node("h2");
	ASSERT_TRUE(!conn_ok("10.244.2.3", "10.244.1.3", 5432), "node forgotten");
	ASSERT_EQ(directory_put("h2", false, inet_addr("10.244.1.3"), "x", NULL), -EEXIST,
		  "a remote node cannot claim a local pod");
	policy_free();
}

TEST(bad_documents_name_file_path_and_problem)
{
	expect_error("{'policies':[{'name':'a','podSelector':{},'ingress':[{'from':[{'ipBlock':{"
		     "'cidr':'10.244.1.1/24'}}]}]}]}",
		     "p.json: policies[0].ingress[0].from[0].ipBlock.cidr: bad CIDR "
		     "\"10.244.1.1/24\" (a.b.c.d/len, no host bits)");
	expect_error("{'policies':[{'name':'a','podSelector':{},'ingress':[{'ports':[{'port':"
		     "70000}]}]}]}",
		     "p.json: policies[0].ingress[0].ports[0].port: port 70000 out of 1-65535");
	expect_error("{'policies':[{'name':'a','podSelector':{}},{'name':'a','podSelector':{}}]}",
		     "p.json: policies[1].name: duplicate name \"a\" (also policies[0])");
	expect_error("{'policies':[{'name':'a'}]}",
		     "p.json: policies[0].podSelector: missing (use {} to select every pod)");
	expect_error("{'policies':[{'name':'a','podSelector':{},'egres':[]}]}",
		     "p.json: policies[0]: unknown key \"egres\"");
	expect_error("{'policies':[{'name':'a','podSelector':{},'policyTypes':['Ingress'],"
		     "'egress':[]}]}",
		     "p.json: policies[0].egress: rules given but policyTypes lacks \"Egress\"");
	expect_error("{'policies':[{'name':'a','podSelector':{'matchLabels':{'app':3}}}]}",
		     "p.json: policies[0].podSelector.matchLabels.app: wrong type: expected a "
		     "string, got an integer");
	expect_error("{'policies':[{'name':'a','podSelector':{},'ingress':[{'from':[{}]}]}]}",
		     "p.json: policies[0].ingress[0].from[0]: a peer needs exactly one of "
		     "podSelector or ipBlock");
	expect_error("{'policies':{}}",
		     "p.json: policies: wrong type: expected an array, got an object");
	expect_error("[]", "p.json: (top level): wrong type: expected an object, got an array");
	expect_error("{'policies':[}", "p.json: line 1 column 14: unexpected token near '}'");
}

/* The compiled lookup does not scan rules: 10,000 non-matching CIDR rules cost (almost) nothing. */
TEST(lookup_is_not_a_scan)
{
	size_t cap = 10000 * 80 + 512, off = 0;
	char *doc = malloc(cap), err[512];
	struct policy_doc *d;
	struct timespec a, b;
	double ns_big, ns_small;
	int n = 0;

	setup_pods();
	off += (size_t)snprintf(
		doc + off, cap - off,
		"{\"policies\":[{\"name\":\"big\",\"podSelector\":{},\"ingress\":[");
	for (int i = 0; i < 10000; i++)
		off += (size_t)snprintf(
			doc + off, cap - off,
			"%s{\"from\":[{\"ipBlock\":{\"cidr\":\"172.%d.%d.0/24\"}}]}", i ? "," : "",
			16 + i / 256 % 16, i % 256);
	off += (size_t)snprintf(doc + off, cap - off,
				",{\"from\":[{\"ipBlock\":{\"cidr\":\"10.244.0.0/16\"}}]}]}]}");
	if (!ASSERT_OK(policy_parse(doc, off, "big.json", &d, err, sizeof(err)), err))
		goto out;
	ASSERT_EQ(policy_doc_rules(d), 10001, "rules");
	policy_install(d);
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < 100000; i++)
		n += conn_ok("10.244.2.2", "10.244.1.3", 80);
	clock_gettime(CLOCK_MONOTONIC, &b);
	ns_big = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / 100000;
	ASSERT_EQ(n, 100000, "allowed by the last rule");
	ASSERT_TRUE(!conn_ok("172.16.0.1", "10.244.1.3", 80) == false, "first rule");
	ASSERT_TRUE(!conn_ok("192.168.0.1", "10.244.1.3", 80), "no rule");
	if (!install("{'policies':[{'name':'s','podSelector':{},'ingress':[{'from':[{'ipBlock':{"
		     "'cidr':'10.244.0.0/16'}}]}]}]}"))
		goto out;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < 100000; i++)
		n += conn_ok("10.244.2.2", "10.244.1.3", 80);
	clock_gettime(CLOCK_MONOTONIC, &b);
	ns_small = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / 100000;
	printf("  lookup: %.0f ns with 10,001 rules, %.0f ns with 1\n", ns_big, ns_small);
	/* A scan of 10,000 rules would be ~1000x slower; allow plenty for a noisy machine. */
	ASSERT_TRUE(ns_big < ns_small * 10 + 200, "lookup cost independent of rule count");
out:
	policy_free();
	free(doc);
}

/* The document of many_policies: n policies, each with its own name, selector and rules; the
 * last one is named like policies[dup] when dup >= 0. */
static char *many_policies_doc(int n, int dup, size_t *len)
{
	size_t cap = (size_t)n * 320 + 64, off = 0;
	char *doc = malloc(cap);

	if (!doc)
		return NULL;
	off += (size_t)snprintf(doc + off, cap - off, "{\"policies\":[");
	for (int i = 0; i < n; i++)
		off += (size_t)snprintf(
			doc + off, cap - off,
			"%s{\"name\":\"policy-%d\",\"podSelector\":{\"matchLabels\":{\"app\":\"a%d\"}},"
			"\"ingress\":[{\"from\":[{\"podSelector\":{\"matchLabels\":{\"app\":\"b%d\"}}},"
			"{\"ipBlock\":{\"cidr\":\"10.%d.%d.0/24\"}}],\"ports\":[{\"port\":%d}]}]}",
			i ? "," : "", i == n - 1 && dup >= 0 ? dup : i, i, i, i / 256 % 256, i % 256,
			1 + i % 65535);
	off += (size_t)snprintf(doc + off, cap - off, "]}");
	*len = off;
	return doc;
}

static double ms_since(const struct timespec *a)
{
	struct timespec b;

	clock_gettime(CLOCK_MONOTONIC, &b);
	return (double)(b.tv_sec - a->tv_sec) * 1e3 + (double)(b.tv_nsec - a->tv_nsec) / 1e6;
}

/* 50,000 policies validate and compile; a duplicate name among them is still found, naming
 * both. No timing assertion (machines differ): the time is printed. */
TEST(many_policies)
{
	struct policy_doc *d = NULL;
	struct timespec t0;
	double parse_ms, install_ms;
	char err[512];
	size_t len;
	char *doc;

	setup_pods();
	doc = many_policies_doc(50000, -1, &len);
	if (!ASSERT_TRUE(doc != NULL, "document"))
		return;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (!ASSERT_OK(policy_parse(doc, len, "many.json", &d, err, sizeof(err)), err))
		goto out;
	parse_ms = ms_since(&t0);
	ASSERT_EQ(policy_doc_count(d), 50000, "policies");
	ASSERT_EQ(policy_doc_rules(d), 50000, "rules");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	policy_install(d);
	ASSERT_TRUE(conn_ok("10.244.1.3", "10.244.1.2", 80), "web is selected by none of them");
	install_ms = ms_since(&t0);
	printf("  50,000 policies: parse and validate %.0f ms, compile %.0f ms (%zu bytes)\n",
	       parse_ms, install_ms, len);
	/* 2,000 more pods: a<i> is selected by policy-<i>, which lets b<i> in on port i + 1. */
	for (int i = 0; i < 1000; i++) {
		char ip[32], name[32];
		json_t *l;

		snprintf(ip, sizeof(ip), "10.250.%d.%d", i / 256, i % 256);
		snprintf(name, sizeof(name), "a%d", i);
		directory_put("h2", false, inet_addr(ip), name, l = labels(name));
		json_decref(l);
		snprintf(ip, sizeof(ip), "10.251.%d.%d", i / 256, i % 256);
		snprintf(name, sizeof(name), "b%d", i);
		directory_put("h2", false, inet_addr(ip), name, l = labels(name));
		json_decref(l);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ASSERT_TRUE(conn_ok("10.251.2.255", "10.250.2.255", 768), "b767 -> a767:768");
	printf("  recompiled for 2,004 pods in %.0f ms\n", ms_since(&t0));
	ASSERT_TRUE(!conn_ok("10.251.2.255", "10.250.2.255", 769), "b767 -> a767:769");
	ASSERT_TRUE(!conn_ok("10.251.2.254", "10.250.2.255", 768), "b766 -> a767:768");
	ASSERT_TRUE(conn_ok("10.2.255.1", "10.250.2.255", 768), "10.2.255.0/24 -> a767:768");
	ASSERT_TRUE(conn_ok("10.250.2.254", "10.251.2.255", 1), "a766 is isolated for ingress only");
	free(doc);
	doc = many_policies_doc(50000, 49998, &len);
	if (!ASSERT_TRUE(doc != NULL, "document"))
		goto out;
	ASSERT_EQ(policy_parse(doc, len, "dup.json", &d, err, sizeof(err)), -EINVAL, "duplicate");
	ASSERT_STREQ(err,
		     "dup.json: policies[49999].name: duplicate name \"policy-49998\" (also "
		     "policies[49998])",
		     "duplicate named");
out:
	policy_free();
	free(doc);
}
