// SPDX-License-Identifier: MIT
/*
 * Unit tests for the router's lookup tables (router/pod.c, listener.c): keys, the
 * replacement rules, and what a pod's removal takes with it. Runs in a private network
 * namespace so the netns checks and the sock_diag sweeps see only this test's sockets.
 */
#include <errno.h>
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

static bool setup(void)
{
	struct stat st;

	log_init("test", LOG_LVL_ERROR); /* the tables log adds at info: keep the output clean */
	if (geteuid() != 0)
		SKIP("needs root (network namespaces)");
	if (!ASSERT_OK(unshare(CLONE_NEWNET), "unshare") ||
	    !ASSERT_OK(cluster_default(&test_cluster), "cluster"))
		return false;
	router.r_cluster = test_cluster;
	router.r_self = &test_cluster->cl_nodes[0];
	router.r_fabric_ip = router.r_self->cn_fabric_ip;
	stat("/proc/self/ns/net", &st);
	router.r_ns_dev = st.st_dev;
	router.r_ns_ino = st.st_ino;
	return ASSERT_OK(pod_table_init(), "pods") &&
	       ASSERT_OK(listener_table_init(), "listeners") &&
	       ASSERT_OK(sockdiag_init(), "sockdiag");
}

/* pod_add() as slimctl drives it: the caller opens the netns (non-blocking: it may be a FIFO). */
static int add_pod(const char *netns, uint32_t ip, const char *name, json_t *labels,
		   struct pod **out, char *err, size_t errlen)
{
	int fd = open(netns, O_RDONLY | O_NONBLOCK | O_CLOEXEC), ret;

	if (fd < 0)
		return -errno;
	ret = pod_add(netns, fd, ip, name, labels, out, err, errlen);
	close(fd);
	return ret;
}

TEST(pods_by_ip_name_and_netns)
{
	char ns1[64], ns2[64], err[256];
	struct pod *a, *b;
	struct stat st;

	if (!setup() || make_netns(ns1, sizeof(ns1)) < 0 || make_netns(ns2, sizeof(ns2)) < 0)
		return;
	if (!ASSERT_OK(add_pod(ns1, inet_addr("10.244.1.2"), "a", NULL, &a, err, sizeof(err)), err))
		return;
	ASSERT_OK(add_pod(ns2, inet_addr("10.244.1.3"), NULL, NULL, &b, err, sizeof(err)), err);
	ASSERT_STREQ(b->p_name, "10.244.1.3", "default name is the ip");
	ASSERT_TRUE(pod_find_ip(inet_addr("10.244.1.2")) == a, "by ip");
	ASSERT_TRUE(pod_find_name("10.244.1.3") == b, "by name");
	stat(ns1, &st);
	ASSERT_TRUE(pod_find_ns(st.st_dev, st.st_ino) == a, "by netns");
	ASSERT_EQ(add_pod(ns1, inet_addr("10.244.1.9"), "c", NULL, NULL, err, sizeof(err)), -EEXIST,
		  "same netns twice");
	ASSERT_EQ(add_pod(ns2, inet_addr("10.244.2.9"), "c", NULL, NULL, err, sizeof(err)), -EINVAL,
		  "ip of another node");
	ASSERT_EQ(add_pod("/proc/self/ns/net", inet_addr("10.244.1.9"), "c", NULL, NULL, err,
			  sizeof(err)),
		  -EINVAL, "the router's own netns");
	/* A FIFO where a netns should be: refused at once, never waited on. */
	ASSERT_OK(mkfifo("/tmp/slim-test-fifo", 0600) == 0 || errno == EEXIST ? 0 : -errno, "fifo");
	ASSERT_EQ(add_pod("/tmp/slim-test-fifo", inet_addr("10.244.1.9"), "c", NULL, NULL, err,
			  sizeof(err)),
		  -EINVAL, "a FIFO is no netns");
	unlink("/tmp/slim-test-fifo");
	ASSERT_EQ(pod_count(), 2, "count");
	pod_del(a);
	ASSERT_TRUE(pod_find_ip(inet_addr("10.244.1.2")) == NULL, "deleted");
	ASSERT_TRUE(pod_find_ns(st.st_dev, st.st_ino) == NULL, "netns forgotten");
	ASSERT_EQ(pod_count(), 1, "count after del");
}

TEST(listeners_replace_share_and_go_with_their_pod)
{
	uint32_t fab = inet_addr("198.18.0.1");
	char ns1[64], ns2[64], err[256];
	struct listener *l, *l2;
	struct pod *a, *b;

	if (!setup() || make_netns(ns1, sizeof(ns1)) < 0 || make_netns(ns2, sizeof(ns2)) < 0)
		return;
	add_pod(ns1, inet_addr("10.244.1.2"), "a", NULL, &a, err, sizeof(err));
	add_pod(ns2, inet_addr("10.244.1.3"), "b", NULL, &b, err, sizeof(err));
	ASSERT_OK(listener_add(a, htons(80), 0, fab, htons(40000), 1, &l), "add");
	ASSERT_TRUE(listener_find(a->p_ip, htons(80)) == l, "find");
	ASSERT_TRUE(listener_find(a->p_ip, htons(81)) == NULL, "other port");
	ASSERT_OK(listener_add(a, htons(80), 0, fab, htons(40000), 2, &l2), "reuseport join");
	ASSERT_TRUE(l2 == l && l->l_nsockets == 2 && l->l_cookie == 2, "joined the same entry");
	ASSERT_OK(listener_add(a, htons(80), 0, fab, htons(40001), 3, &l), "re-listen");
	ASSERT_EQ(ntohs(listener_find(a->p_ip, htons(80))->l_host_port), 40001, "replaced");
	ASSERT_EQ(listener_count(), 1, "one entry");
	/* Host port 40001 handed out again (to b): a's entry naming it is stale. */
	ASSERT_OK(listener_add(b, htons(90), 0, fab, htons(40001), 4, NULL), "port reused");
	ASSERT_TRUE(listener_find(a->p_ip, htons(80)) == NULL, "stale entry dropped");
	ASSERT_OK(listener_add(a, htons(81), 0, fab, htons(40002), 5, NULL), "add");
	ASSERT_OK(listener_add(a, htons(82), 0, fab, htons(40003), 6, NULL), "add");
	ASSERT_EQ(a->p_nlisteners, 2, "a has two");
	pod_del(a);
	ASSERT_EQ(listener_count(), 1, "a's entries went with it");
	ASSERT_TRUE(listener_find(b->p_ip, htons(90)) != NULL, "b's stays");
	/* No socket behind it: the sweep and the point check both drop it. */
	ASSERT_TRUE(!listener_check_alive(listener_find(b->p_ip, htons(90))), "not alive");
	ASSERT_EQ(listener_count(), 0, "dropped");
}
