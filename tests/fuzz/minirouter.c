// SPDX-License-Identifier: MIT
/* Setting up the router state the router fuzz targets run against (see minirouter.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>

#include "minirouter.h"
#include "log.h"

void minirouter_init(void)
{
	struct stat st;

	/* Only errors: a fuzzer runs a command per input, info lines would be millions. */
	log_init("fuzz", LOG_LVL_ERROR);
	if (cluster_default(&router.r_cluster) < 0) {
		fprintf(stderr, "%s: built-in cluster\n", __func__);
		abort();
	}
	router.r_self = &router.r_cluster->cl_nodes[0];
	snprintf(router.r_node_name, sizeof(router.r_node_name), "%s", router.r_self->cn_name);
	router.r_fabric_ip = router.r_self->cn_fabric_ip;
	router.r_peer_port = router.r_cluster->cl_peer_port;
	router.r_started = time(NULL);
	if (stat("/proc/self/ns/net", &st) < 0) {
		fprintf(stderr, "%s: /proc/self/ns/net: %s\n", __func__, strerror(errno));
		abort();
	}
	router.r_ns_dev = st.st_dev;
	router.r_ns_ino = st.st_ino;
	router.r_loop = event_loop_new();
	if (!router.r_loop || pod_table_init() || listener_table_init() ||
	    resolve_init() || directory_init() || sockdiag_init() < 0) {
		fprintf(stderr, "%s: router tables: %s\n", __func__, strerror(errno));
		abort();
	}
}

void minirouter_pod(const char *node, bool local, uint32_t ip, const char *app)
{
	json_t *labels = json_pack("{s:s}", "app", app);

	/* The directory takes its own reference. */
	if (!labels || directory_put(node, local, ip, "p1", labels))
		abort();
	json_decref(labels);
}
