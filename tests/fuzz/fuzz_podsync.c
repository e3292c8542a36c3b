// SPDX-License-Identifier: MIT
/*
 * Fuzzes podsync_receive() (router/podsync.c), which decodes the pod announcements (POD_SYNC:
 * name, labels as JSON text) another router sends over the fabric, inside a minimal router
 * (minirouter.c) that is node h1. The first input byte picks the announcing node (h2, or a name
 * that is no node); the rest is the message, zero-padded or cut to its size (the fabric check
 * has already enforced that). An accepted ADD must be in the directory as announced, under the
 * announcing node, for an address in that node's pod_cidr.
 */
#include <errno.h>
#include <arpa/inet.h>

#include "fuzz.h"
#include "minirouter.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);

static const char *const fuzz_nodes[] = {"h2", "h9"};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	minirouter_init();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct slim_pod_sync *m;
	const struct dir_pod *d;
	const char *node;
	int rc;

	if (size < 1)
		return 0;
	node = fuzz_nodes[data[0] % (sizeof(fuzz_nodes) / sizeof(fuzz_nodes[0]))];
	m = calloc(1, sizeof(*m));
	FUZZ_CHECK(m != NULL);
	memcpy(m, data + 1, size - 1 < sizeof(*m) ? size - 1 : sizeof(*m));
	rc = podsync_receive(node, m);
	FUZZ_CHECK(rc == 0 || rc == -EBADMSG || rc == -ENOMEM);
	if (rc == 0 && ntohl(m->op) == SLIM_POD_SYNC_ADD) {
		const struct cluster_node *owner = cluster_owner(router.r_cluster, m->pod_ip);

		FUZZ_CHECK(owner && !strcmp(owner->cn_name, node));
		FUZZ_CHECK(memchr(m->name, '\0', sizeof(m->name)));
		d = directory_find(m->pod_ip);
		FUZZ_CHECK(d != NULL && !d->dp_local);
		FUZZ_CHECK(!strcmp(d->dp_nodename, node));
		FUZZ_CHECK(!strncmp(d->dp_name, m->name, sizeof(d->dp_name) - 1));
		FUZZ_CHECK(json_is_object(d->dp_labels));
	}
	free(m);
	return 0;
}
