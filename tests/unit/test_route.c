// SPDX-License-Identifier: MIT
/*
 * Unit tests for the connect decision (router/route.c route_decide): local listeners, in-pod
 * loopback, remote answers, policy, and destinations that are not slim's. The decision is pure,
 * so the mechanics it feeds (the kernel's maps, replies, the fabric) are stubs here.
 */
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "log.h"
#include "router.h"
#include "netns.h"
#include "test.h"

struct router router;
static struct cluster *test_cluster;

/* The mechanics route.c feeds; route_decide never reaches them. */
void governor_route_put(uint32_t ip, uint16_t port, uint32_t scope, uint32_t host_ip,
			uint16_t host_port, uint16_t flags, unsigned ttl_ms)
{
}
void governor_route_del(uint32_t ip, uint16_t port, uint32_t scope)
{
}
void governor_verdict_put(uint32_t src, uint32_t dst, uint16_t port, bool allow)
{
}
bool governor_enabled(void)
{
	return true;
}
bool service_range_contains(uint32_t ip)
{
	return false;
}
void service_route_request(struct client *c, struct pod *p, const struct slim_route_req *req,
			   int fd)
{
}
int client_reply(struct client *c, const void *msg, size_t len, int fd, bool unlimited)
{
	return 0;
}
bool resolve_node_stalled(const char *node)
{
	return false;
}
bool resolve_cache_get(uint32_t ip, uint16_t port, struct resolve_result *res)
{
	return false;
}
int resolve_lookup(struct client *c, const struct pod *p, const struct slim_route_req *req,
		   const struct cluster_node *node)
{
	return 0;
}
void resolve_cache_drop(uint32_t ip, uint16_t port)
{
}
void peer_broadcast_invalidate(uint32_t ip, uint16_t port)
{
}

static struct pod *pod_a, *pod_b;
static const uint32_t fab = 0x010012c6; /* 198.18.0.1, network order */

static bool setup(void)
{
	char ns1[64], ns2[64], err[256];
	struct stat st;

	log_init("test", LOG_LVL_ERROR);
	if (!ASSERT_OK(unshare(CLONE_NEWNET), "unshare (needs root)") ||
	    !ASSERT_OK(cluster_default(&test_cluster), "cluster"))
		return false;
	router.r_cluster = test_cluster;
	router.r_self = &test_cluster->cl_nodes[0];
	router.r_fabric_ip = router.r_self->cn_fabric_ip;
	stat("/proc/self/ns/net", &st);
	router.r_ns_dev = st.st_dev;
	router.r_ns_ino = st.st_ino;
	if (!ASSERT_OK(pod_table_init(), "pods") || !ASSERT_OK(listener_table_init(), "listeners") ||
	    !ASSERT_OK(directory_init(), "directory") || !ASSERT_OK(sockdiag_init(), "sockdiag") ||
	    make_netns(ns1, sizeof(ns1)) < 0 || make_netns(ns2, sizeof(ns2)) < 0)
		return false;
	if (!ASSERT_OK(pod_add(ns1, open(ns1, O_RDONLY | O_CLOEXEC), inet_addr("10.244.1.2"), "a",
			       NULL, &pod_a, err, sizeof(err)),
		       err) ||
	    !ASSERT_OK(pod_add(ns2, open(ns2, O_RDONLY | O_CLOEXEC), inet_addr("10.244.1.3"), "b",
			       NULL, &pod_b, err, sizeof(err)),
		       err))
		return false;
	/* a listens on 80 (any address) and on 127.0.0.1:81 only. */
	return ASSERT_OK(listener_add(pod_a, htons(80), 0, fab, htons(40080), 1, NULL), "l80") &&
	       ASSERT_OK(listener_add(pod_a, htons(81), inet_addr("127.0.0.1"), fab, htons(40081),
				      2, NULL),
			 "l81");
}

static struct route_decision decide(const struct pod *p, const char *ip, int port,
				    const struct resolve_result *remote)
{
	struct route_decision d;

	route_decide(p, inet_addr(ip), htons((uint16_t)port), remote, &d);
	return d;
}

TEST(route_decisions)
{
	struct resolve_result found = {.status = SLIM_RESOLVE_FOUND,
				       .host_ip = inet_addr("198.18.0.2"),
				       .host_port = htons(45000)};
	struct resolve_result denied = {.status = SLIM_RESOLVE_DENIED};
	struct resolve_result none = {.status = SLIM_RESOLVE_NO_LISTENER};
	struct route_decision d;

	if (!setup())
		return;
	d = decide(pod_b, "10.244.1.2", 80, NULL);
	ASSERT_EQ(d.rd_action, ROUTE_HOST, "local listener");
	ASSERT_EQ(ntohs(d.rd_host_port), 40080, "its host port");
	ASSERT_EQ(d.rd_scope, 0, "every pod may use the route");
	ASSERT_EQ(d.rd_ttl_ms, 0, "a local route lives until the listener goes");
	ASSERT_EQ(decide(pod_b, "10.244.1.2", 82, NULL).rd_action, ROUTE_FALLBACK, "no listener");
	ASSERT_EQ(decide(pod_b, "10.244.1.9", 80, NULL).rd_action, ROUTE_FALLBACK, "no pod");

	d = decide(pod_a, "127.0.0.1", 80, NULL);
	ASSERT_EQ(d.rd_action, ROUTE_HOST, "sidecar to a wildcard listener");
	ASSERT_EQ(d.rd_scope, pod_a->p_ip, "a loopback route is the pod's own");
	ASSERT_EQ(decide(pod_a, "127.0.0.1", 81, NULL).rd_action, ROUTE_HOST, "loopback-bound");
	ASSERT_EQ(decide(pod_a, "127.0.0.2", 81, NULL).rd_action, ROUTE_FALLBACK,
		  "bound to another loopback address");
	ASSERT_EQ(decide(pod_b, "127.0.0.1", 80, NULL).rd_action, ROUTE_FALLBACK,
		  "another pod's listener is not on our loopback");
	ASSERT_EQ(decide(pod_b, "10.244.1.2", 81, NULL).rd_action, ROUTE_FALLBACK,
		  "a loopback-only listener is private to its pod");

	d = decide(pod_a, "10.244.2.2", 80, NULL);
	ASSERT_EQ(d.rd_action, ROUTE_ASK, "remote, not known yet");
	ASSERT_TRUE(d.rd_node == &test_cluster->cl_nodes[1], "asks the owner");
	d = decide(pod_a, "10.244.2.2", 80, &found);
	ASSERT_EQ(d.rd_action, ROUTE_HOST, "remote answer");
	ASSERT_EQ(d.rd_host_ip, found.host_ip, "remote host listener");
	ASSERT_EQ(d.rd_ttl_ms, RESOLVE_TTL_FOUND_MS, "remote routes expire");
	ASSERT_EQ(decide(pod_a, "10.244.2.2", 80, &denied).rd_action, ROUTE_DENY, "owner denies");
	d = decide(pod_a, "10.244.2.2", 80, &none);
	ASSERT_EQ(d.rd_action, ROUTE_FALLBACK, "owner has no slim listener");
	ASSERT_EQ(d.rd_ttl_ms, RESOLVE_TTL_NEGATIVE_MS, "remembered briefly");

	ASSERT_EQ(decide(pod_a, "198.18.0.2", 7471, NULL).rd_action, ROUTE_FALLBACK,
		  "a fabric address is never routed to a host listener");
	ASSERT_EQ(decide(pod_a, "127.0.0.1", 7471, NULL).rd_action, ROUTE_FALLBACK,
		  "the host's loopback services are not the pod's");
}

TEST(route_policy)
{
	static const char doc[] =
		"{\"policies\": [{\"name\": \"a-in\", \"podSelector\": {\"matchLabels\": "
		"{\"app\": \"a\"}}, \"ingress\": [{\"from\": [{\"podSelector\": {\"matchLabels\": "
		"{\"app\": \"c\"}}}]}]}]}";
	struct policy_doc *pd;
	char err[256];

	if (!pod_a && !setup())
		return;
	directory_put("h1", true, pod_a->p_ip, "a", json_pack("{s:s}", "app", "a"));
	directory_put("h1", true, pod_b->p_ip, "b", json_pack("{s:s}", "app", "b"));
	if (!ASSERT_OK(policy_parse(doc, sizeof(doc) - 1, "p.json", &pd, err, sizeof(err)), err))
		return;
	policy_install(pd);
	ASSERT_EQ(decide(pod_b, "10.244.1.2", 80, NULL).rd_action, ROUTE_DENY,
		  "b may not reach a (a admits app=c only)");
	ASSERT_EQ(decide(pod_a, "10.244.1.3", 80, NULL).rd_action, ROUTE_FALLBACK,
		  "a may reach b (b is not isolated; no listener there)");
	ASSERT_EQ(decide(pod_a, "127.0.0.1", 80, NULL).rd_action, ROUTE_HOST,
		  "policy is between pods, not inside one");
	policy_install(NULL);
	ASSERT_EQ(decide(pod_b, "10.244.1.2", 80, NULL).rd_action, ROUTE_HOST, "policy removed");
}
