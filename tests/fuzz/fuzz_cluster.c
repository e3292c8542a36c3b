// SPDX-License-Identifier: MIT
/*
 * Fuzzes cluster_parse() (router/cluster.c), the router's decoder of the cluster file, and checks
 * what it promises about an accepted description: unique node names and fabric addresses, pod
 * CIDRs inside the overlay that do not overlap (every pod CIDR's first and last address belong
 * to its own node), and on rejection an error message that names the origin.
 */
#include <errno.h>

#include "fuzz.h"
#include "router.h"

static void fuzz_check_cluster(const struct cluster *c)
{
	FUZZ_CHECK(c->cl_nnodes >= 1 && c->cl_nodes);
	FUZZ_CHECK(c->cl_peer_port >= 1);
	FUZZ_CHECK(c->cl_origin && !strcmp(c->cl_origin, "fuzz"));
	for (size_t i = 0; i < c->cl_nnodes; i++) {
		const struct cluster_node *n = &c->cl_nodes[i];
		const struct cidr *p = &n->cn_pod_cidr;
		uint32_t last = p->net | ~p->mask;

		FUZZ_CHECK(memchr(n->cn_name, '\0', sizeof(n->cn_name)) && n->cn_name[0]);
		FUZZ_CHECK(cluster_node_by_name(c, n->cn_name) == n);
		FUZZ_CHECK(cluster_node_by_ip(c, n->cn_fabric_ip) == n);
		FUZZ_CHECK(!cidr_contains(&c->cl_overlay, n->cn_fabric_ip));
		FUZZ_CHECK(p->len >= c->cl_overlay.len && cidr_contains(&c->cl_overlay, p->net));
		FUZZ_CHECK((p->net & ~p->mask) == 0);
		FUZZ_CHECK(cluster_owner(c, p->net) == n);
		FUZZ_CHECK(cluster_owner(c, last) == n);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = (char *)fuzz_copy(data, size);
	struct cluster *c = NULL;
	char err[512];
	int rc;

	err[0] = '\0';
	rc = cluster_parse(text, size, "fuzz", &c, err, sizeof(err));
	FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ENOMEM);
	if (rc == 0) {
		FUZZ_CHECK(c != NULL);
		fuzz_check_cluster(c);
		cluster_free(c);
	} else {
		FUZZ_CHECK(!strncmp(err, "fuzz", 4));
	}
	free(text);
	return 0;
}
