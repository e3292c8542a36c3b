// SPDX-License-Identifier: MIT
/* Unit tests for pod announcements between routers (router/podsync.c into router/directory.c):
 * what a router accepts from another node's POD_SYNC, and what it builds for its own pods. */
#include <errno.h>
#include <string.h>
#include <arpa/inet.h>

#include "router.h"
#include "test.h"

/* podsync.c's neighbours, which these tests do not exercise. */
struct router router;
static int broadcasts, nft_refreshes;

void peer_broadcast(const void *msg, size_t len)
{
	broadcasts++;
}

void peer_ensure(const struct cluster_node *node)
{
}

void nft_schedule(void)
{
	nft_refreshes++;
}

long long event_timer_add(struct event_loop *loop, long ms, timer_fn fn, void *arg)
{
	return 1;
}

/* No cluster store here: the fabric's announcements feed the directory. */
bool store_enabled(void)
{
	return false;
}

void store_pod_changed(const struct pod *p, bool added)
{
}

static void setup(void)
{
	directory_free();
	directory_init();
	if (!router.r_cluster)
		cluster_default(&router.r_cluster);
	router.r_self = cluster_node_by_name(router.r_cluster, "h1");
	snprintf(router.r_node_name, sizeof(router.r_node_name), "h1");
}

static struct slim_pod_sync msg(enum slim_pod_sync_op op, const char *ip, const char *name,
				const char *labels)
{
	struct slim_pod_sync m;

	memset(&m, 0, sizeof(m));
	m.hdr.type = htons(SLIM_MSG_POD_SYNC);
	m.hdr.len = htonl(sizeof(m));
	m.op = htonl(op);
	m.pod_ip = ip ? inet_addr(ip) : 0;
	snprintf(m.name, sizeof(m.name), "%s", name ? name : "");
	snprintf(m.labels, sizeof(m.labels), "%s", labels ? labels : "");
	return m;
}

TEST(remote_pods_enter_the_directory)
{
	struct slim_pod_sync m = msg(SLIM_POD_SYNC_ADD, "10.244.2.5", "web", "{\"app\":\"web\"}");
	const struct dir_pod *d;

	setup();
	ASSERT_OK(podsync_receive("h2", &m), "add");
	d = directory_find(inet_addr("10.244.2.5"));
	if (!ASSERT_TRUE(d != NULL, "in the directory"))
		return;
	ASSERT_STREQ(d->dp_name, "web", "name");
	ASSERT_STREQ(d->dp_nodename, "h2", "node");
	ASSERT_STREQ(json_string_value(json_object_get(d->dp_labels, "app")), "web", "label");
	ASSERT_TRUE(!d->dp_local, "remote");
	ASSERT_TRUE(nft_refreshes > 0, "the overlay filter is told");
	m = msg(SLIM_POD_SYNC_DEL, "10.244.2.5", NULL, NULL);
	ASSERT_OK(podsync_receive("h2", &m), "del");
	ASSERT_TRUE(directory_find(inet_addr("10.244.2.5")) == NULL, "gone");
}

TEST(a_node_speaks_only_for_its_own_pods)
{
	struct slim_pod_sync m = msg(SLIM_POD_SYNC_ADD, "10.244.1.5", "evil", "{}");

	setup();
	ASSERT_EQ(podsync_receive("h2", &m), -EBADMSG, "an address of h1's pod_cidr");
	m = msg(SLIM_POD_SYNC_ADD, "192.168.1.1", "evil", "{}");
	ASSERT_EQ(podsync_receive("h2", &m), -EBADMSG, "outside the overlay");
	m = msg(SLIM_POD_SYNC_ADD, "10.244.2.6", "db", "{}");
	ASSERT_OK(podsync_receive("h2", &m), "add");
	m = msg(SLIM_POD_SYNC_DEL, "10.244.2.6", NULL, NULL);
	ASSERT_OK(podsync_receive("h1", &m), "a DEL from another node is ignored");
	ASSERT_TRUE(directory_find(inet_addr("10.244.2.6")) != NULL, "still there");
}

TEST(malformed_announcements)
{
	struct slim_pod_sync m;

	setup();
	m = msg(SLIM_POD_SYNC_ADD, "10.244.2.5", "x", "{\"app\":1}");
	ASSERT_EQ(podsync_receive("h2", &m), -EBADMSG, "non-string label");
	m = msg(SLIM_POD_SYNC_ADD, "10.244.2.5", "x", "[]");
	ASSERT_EQ(podsync_receive("h2", &m), -EBADMSG, "labels not an object");
	m = msg(SLIM_POD_SYNC_ADD, "10.244.2.5", "x", "{");
	ASSERT_EQ(podsync_receive("h2", &m), -EBADMSG, "bad JSON");
	m = msg(SLIM_POD_SYNC_ADD, "10.244.2.5", "x", "{}");
	memset(m.name, 'a', sizeof(m.name));
	ASSERT_EQ(podsync_receive("h2", &m), -EBADMSG, "name without NUL");
	m = msg(9, "10.244.2.5", "x", "{}");
	ASSERT_EQ(podsync_receive("h2", &m), -EBADMSG, "unknown op");
	ASSERT_TRUE(directory_find(inet_addr("10.244.2.5")) == NULL, "nothing added");
}

TEST(reset_forgets_that_node_only)
{
	struct slim_pod_sync m;

	setup();
	m = msg(SLIM_POD_SYNC_ADD, "10.244.2.5", "a", "{}");
	ASSERT_OK(podsync_receive("h2", &m), "add h2 pod");
	directory_put("h1", true, inet_addr("10.244.1.2"), "mine", NULL);
	m = msg(SLIM_POD_SYNC_RESET, NULL, NULL, NULL);
	ASSERT_OK(podsync_receive("h2", &m), "reset");
	ASSERT_TRUE(directory_find(inet_addr("10.244.2.5")) == NULL, "h2's pod gone");
	ASSERT_TRUE(directory_find(inet_addr("10.244.1.2")) != NULL, "our pod stays");
}

TEST(local_pods_are_announced)
{
	struct pod p = {.p_ip = inet_addr("10.244.1.7"), .p_name = "api"};
	const struct dir_pod *d;
	struct slim_pod_sync m;
	int before;

	setup();
	p.p_labels = json_pack("{s:s}", "app", "api");
	before = broadcasts;
	podsync_pod_changed(&p, true);
	ASSERT_EQ(broadcasts, before + 1, "broadcast");
	d = directory_find(p.p_ip);
	if (!ASSERT_TRUE(d && d->dp_local, "local entry"))
		goto out;
	podsync_build(&m, SLIM_POD_SYNC_ADD, d);
	ASSERT_EQ(ntohl(m.hdr.len), sizeof(m), "len");
	ASSERT_STREQ(m.labels, "{\"app\":\"api\"}", "labels as compact JSON");
	ASSERT_EQ(slim_msg_fixed_len(SLIM_MSG_POD_SYNC), sizeof(m), "fixed size");
	podsync_pod_changed(&p, false);
	ASSERT_TRUE(directory_find(p.p_ip) == NULL, "removed");
out:
	json_decref(p.p_labels);
}
