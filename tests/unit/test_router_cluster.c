// SPDX-License-Identifier: MIT
/* Unit tests for cluster file parsing and validation (router/cluster.c). */
#include <errno.h>
#include <string.h>
#include <arpa/inet.h>

#include "router.h"
#include "test.h"

/* Documents are written with ' for " so they stay readable; parse() swaps them back. */
#define OVERLAY "'overlay_cidr':'10.244.0.0/16'"
#define H1	"{'name':'h1','fabric_ip':'198.18.0.1','pod_cidr':'10.244.1.0/24'}"
#define H2	"{'name':'h2','fabric_ip':'198.18.0.2','pod_cidr':'10.244.2.0/24'}"

static int parse(const char *doc, struct cluster **c, char *err, size_t len)
{
	char text[1024];
	size_t n = strlen(doc);

	for (size_t i = 0; i <= n && i < sizeof(text); i++)
		text[i] = doc[i] == '\'' ? '"' : doc[i];
	*c = NULL;
	err[0] = '\0';
	return cluster_parse(text, n, "c.json", c, err, len);
}

/* The error must name the file, the JSON path and the problem. */
static void expect_error(const char *doc, const char *want)
{
	struct cluster *c;
	char err[256];

	ASSERT_EQ(parse(doc, &c, err, sizeof(err)), -EINVAL, want);
	ASSERT_STREQ(err, want, "error text");
	ASSERT_TRUE(c == NULL, "no cluster on error");
}

TEST(parses_lab_plan)
{
	struct cluster *c;
	char err[256];

	if (!ASSERT_OK(parse("{" OVERLAY ",'peer_port':7000,'nodes':[" H1 "," H2 "]}", &c, err,
			     sizeof(err)),
		       err))
		return;
	ASSERT_EQ(c->cl_nnodes, 2, "nodes");
	ASSERT_EQ(c->cl_peer_port, 7000, "peer_port");
	ASSERT_STREQ(c->cl_nodes[1].cn_name, "h2", "name");
	ASSERT_EQ(c->cl_nodes[1].cn_fabric_ip, inet_addr("198.18.0.2"), "fabric ip");
	ASSERT_TRUE(cluster_owner(c, inet_addr("10.244.2.7")) == &c->cl_nodes[1], "owner h2");
	ASSERT_TRUE(cluster_owner(c, inet_addr("10.244.1.255")) == &c->cl_nodes[0], "owner h1");
	ASSERT_TRUE(cluster_owner(c, inet_addr("10.244.3.1")) == NULL, "no owner");
	ASSERT_TRUE(cluster_owner(c, inet_addr("192.168.1.1")) == NULL, "outside overlay");
	ASSERT_TRUE(cluster_node_by_name(c, "h1") == &c->cl_nodes[0], "by name");
	ASSERT_TRUE(cluster_node_by_ip(c, inet_addr("198.18.0.2")) == &c->cl_nodes[1], "by ip");
	cluster_free(c);
}

TEST(owner_with_mixed_prefix_lengths)
{
	struct cluster *c;
	char err[256];

	if (!ASSERT_OK(
		    parse("{" OVERLAY ",'nodes':["
			  "{'name':'a','fabric_ip':'198.18.0.1','pod_cidr':'10.244.0.0/20'},"
			  "{'name':'b','fabric_ip':'198.18.0.2','pod_cidr':'10.244.16.0/24'},"
			  "{'name':'c','fabric_ip':'198.18.0.3','pod_cidr':'10.244.17.128/25'}]}",
			  &c, err, sizeof(err)),
		    err))
		return;
	ASSERT_EQ(c->cl_peer_port, SLIM_DEFAULT_PEER_PORT, "default peer_port");
	ASSERT_TRUE(cluster_owner(c, inet_addr("10.244.15.9")) == &c->cl_nodes[0], "/20");
	ASSERT_TRUE(cluster_owner(c, inet_addr("10.244.16.9")) == &c->cl_nodes[1], "/24");
	ASSERT_TRUE(cluster_owner(c, inet_addr("10.244.17.200")) == &c->cl_nodes[2], "/25");
	ASSERT_TRUE(cluster_owner(c, inet_addr("10.244.17.100")) == NULL, "gap");
	cluster_free(c);
}

TEST(default_is_the_lab)
{
	struct cluster *c = NULL;

	if (!ASSERT_OK(cluster_default(&c), "default"))
		return;
	ASSERT_EQ(c->cl_nnodes, 2, "two hosts");
	ASSERT_EQ(c->cl_peer_port, 7471, "port");
	ASSERT_TRUE(cluster_owner(c, inet_addr("10.244.2.3")) == &c->cl_nodes[1], "h2 owns .2");
	cluster_free(c);
}

TEST(errors_name_file_field_and_problem)
{
	expect_error("{" OVERLAY "}", "c.json: nodes: missing");
	expect_error("{'nodes':[]}", "c.json: overlay_cidr: missing");
	expect_error("{" OVERLAY ",'nodes':{}}",
		     "c.json: nodes: wrong type: expected an array, got an object");
	expect_error("{" OVERLAY ",'nodes':[]}", "c.json: nodes: empty (at least one node)");
	expect_error("{'overlay_cidr':'10.244.0.0/33','nodes':[]}",
		     "c.json: overlay_cidr: bad CIDR \"10.244.0.0/33\"");
	expect_error("{" OVERLAY ",'peer_port':70000,'nodes':[]}",
		     "c.json: peer_port: 70000 is not a port (1-65535)");
	expect_error("{" OVERLAY ",'peer_port':'x','nodes':[]}",
		     "c.json: peer_port: wrong type: expected an integer, got a string");
	expect_error("{" OVERLAY ",'extra':1,'nodes':[]}", "c.json: extra: unknown key");
	expect_error("{" OVERLAY ",'secret_file':'cluster.key','nodes':[]}",
		     "c.json: secret_file: \"cluster.key\" is not an absolute path");
	expect_error("{" OVERLAY ",'secret_file':7,'nodes':[]}",
		     "c.json: secret_file: wrong type: expected a string, got an integer");
	expect_error("{" OVERLAY ",'nodes':[{'name':'h1','fabric_ip':'198.18.0.1'}]}",
		     "c.json: nodes[0].pod_cidr: missing");
	expect_error("{" OVERLAY ",'nodes':[{'name':1,'fabric_ip':'198.18.0.1',"
		     "'pod_cidr':'10.244.1.0/24'}]}",
		     "c.json: nodes[0].name: wrong type: expected a string, got an integer");
	expect_error("{" OVERLAY ",'nodes':[" H1 ",{'name':'h2','fabric_ip':'198.18.0.2',"
		     "'pod_cidr':'10.244.2.0/24','zone':'a'}]}",
		     "c.json: nodes[1].zone: unknown key");
	expect_error("{" OVERLAY ",'nodes':[{'name':'h1','fabric_ip':'198.18.0.1',"
		     "'pod_cidr':'10.244.1.1/24'}]}",
		     "c.json: nodes[0].pod_cidr: bad CIDR \"10.244.1.1/24\"");
	expect_error("{" OVERLAY ",'nodes':[{'name':'h1','fabric_ip':'198.18.0.1',"
		     "'pod_cidr':'10.245.1.0/24'}]}",
		     "c.json: nodes[0].pod_cidr: 10.245.1.0/24 is outside overlay_cidr");
	expect_error("{" OVERLAY ",'nodes':[{'name':'h1','fabric_ip':'198.18.0.1',"
		     "'pod_cidr':'10.0.0.0/8'}]}",
		     "c.json: nodes[0].pod_cidr: 10.0.0.0/8 is outside overlay_cidr");
	expect_error("{" OVERLAY ",'nodes':[{'name':'h1','fabric_ip':'198.18.0.x',"
		     "'pod_cidr':'10.244.1.0/24'}]}",
		     "c.json: nodes[0].fabric_ip: bad IPv4 address \"198.18.0.x\"");
	expect_error("{" OVERLAY ",'nodes':[{'name':'h1','fabric_ip':'10.244.9.1',"
		     "'pod_cidr':'10.244.1.0/24'}]}",
		     "c.json: nodes[0].fabric_ip: 10.244.9.1 is inside overlay_cidr");
	expect_error("{" OVERLAY ",'nodes':[" H1 ",{'name':'h1','fabric_ip':'198.18.0.2',"
		     "'pod_cidr':'10.244.2.0/24'}]}",
		     "c.json: nodes[1].name: duplicate name \"h1\" (also nodes[0])");
	expect_error("{" OVERLAY ",'nodes':[" H1 ",{'name':'h2','fabric_ip':'198.18.0.1',"
		     "'pod_cidr':'10.244.2.0/24'}]}",
		     "c.json: nodes[1].fabric_ip: duplicate IP 198.18.0.1 (also nodes[0])");
	expect_error("{" OVERLAY ",'nodes':[{'name':'h1','fabric_ip':'198.18.0.1',"
		     "'pod_cidr':'10.244.0.0/23'},{'name':'h2','fabric_ip':'198.18.0.2',"
		     "'pod_cidr':'10.244.1.0/24'}]}",
		     "c.json: nodes[1].pod_cidr: 10.244.1.0/24 overlaps nodes[0].pod_cidr");
	expect_error("[1]", "c.json: the top level must be an object, got an array");
	expect_error("{" OVERLAY ",'nodes':[],'nodes':[]}",
		     "c.json:1:50: duplicate object key near '\"nodes\"'");
}
