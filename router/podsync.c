// SPDX-License-Identifier: MIT
/*
 * Pod announcements between routers (POD_SYNC on the fabric): telling every other router about
 * our pods when its connection is new and on each change, and feeding what others announce into
 * the directory. With a cluster store (store.c) the store feeds the directory instead: one
 * source, so that a pod disappears when its node's lease does and a listing after an outage can
 * be reconciled; what arrives over the fabric is then ignored.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "log.h"
#include "router.h"

#define PODSYNC_DIAL_MS 1000

static long long podsync_timer = -1;

void podsync_build(struct slim_pod_sync *m, enum slim_pod_sync_op op, const struct dir_pod *d)
{
	memset(m, 0, sizeof(*m));
	m->hdr.type = htons(SLIM_MSG_POD_SYNC);
	m->hdr.len = htonl(sizeof(*m));
	m->op = htonl(op);
	if (!d)
		return;
	m->pod_ip = d->dp_ip;
	snprintf(m->name, sizeof(m->name), "%s", d->dp_name);
	if (op == SLIM_POD_SYNC_ADD) {
		char *text = json_dumps(d->dp_labels, JSON_COMPACT | JSON_SORT_KEYS);

		if (!text || strlen(text) >= sizeof(m->labels)) {
			log_warnx("%s: pod %s: labels longer than %d bytes are not announced",
				  __func__, d->dp_name, SLIM_POD_LABELS_MAX - 1);
			snprintf(m->labels, sizeof(m->labels), "{}");
		} else {
			snprintf(m->labels, sizeof(m->labels), "%s", text);
		}
		free(text);
	}
}

int podsync_receive(const char *node, const struct slim_pod_sync *m)
{
	uint32_t op = ntohl(m->op);
	char name[SLIM_POD_NAME_MAX];
	json_error_t jerr;
	json_t *labels;
	const char *key;
	json_t *v;
	int ret;

	/* Still sent as a fabric connection's first message by routers, ignored with a store. */
	if (store_enabled())
		return op >= SLIM_POD_SYNC_RESET && op <= SLIM_POD_SYNC_DEL ? 0 : -EBADMSG;
	switch (op) {
	case SLIM_POD_SYNC_RESET:
		directory_drop_node(node);
		nft_schedule();
		return 0;
	case SLIM_POD_SYNC_DEL: {
		const struct dir_pod *d = directory_find(m->pod_ip);

		/* Only the node that announced a pod may take it back. */
		if (d && !d->dp_local && !strcmp(d->dp_nodename, node)) {
			directory_del(m->pod_ip);
			nft_schedule();
		}
		return 0;
	}
	case SLIM_POD_SYNC_ADD:
		break;
	default:
		return -EBADMSG;
	}
	if (!memchr(m->name, '\0', sizeof(m->name)) || !memchr(m->labels, '\0', sizeof(m->labels)))
		return -EBADMSG;
	{
		const struct cluster_node *owner = cluster_owner(router.r_cluster, m->pod_ip);

		/* A node speaks only for addresses in its own pod_cidr. */
		if (!owner || strcmp(owner->cn_name, node))
			return -EBADMSG;
	}
	labels = json_loads(m->labels, JSON_REJECT_DUPLICATES, &jerr);
	if (!labels || !json_is_object(labels)) {
		json_decref(labels);
		return -EBADMSG;
	}
	json_object_foreach(labels, key, v) {
		if (!json_is_string(v)) {
			json_decref(labels);
			return -EBADMSG;
		}
	}
	snprintf(name, sizeof(name), "%s", m->name);
	ret = directory_put(node, false, m->pod_ip, name, labels);
	json_decref(labels);
	nft_schedule();
	return ret == -EEXIST ? 0 : ret;
}

/* Keeps a fabric connection open to every other node, so each one hears about our pods. */
static long podsync_dial(struct event_loop *loop, void *arg)
{
	const struct cluster *cl = router.r_cluster;

	for (size_t i = 0; i < cl->cl_nnodes; i++)
		if (&cl->cl_nodes[i] != router.r_self)
			peer_ensure(&cl->cl_nodes[i]);
	return PODSYNC_DIAL_MS;
}

void podsync_pod_changed(const struct pod *p, bool added)
{
	struct slim_pod_sync m;

	if (added) {
		directory_put(router.r_node_name, true, p->p_ip, p->p_name, p->p_labels);
		podsync_build(&m, SLIM_POD_SYNC_ADD, directory_find(p->p_ip));
	} else {
		struct dir_pod gone = {.dp_ip = p->p_ip};

		snprintf(gone.dp_name, sizeof(gone.dp_name), "%s", p->p_name);
		directory_del(p->p_ip);
		podsync_build(&m, SLIM_POD_SYNC_DEL, &gone);
	}
	if (store_enabled()) {
		store_pod_changed(p, added);
		nft_schedule();
		return;
	}
	peer_broadcast(&m, sizeof(m));
	nft_schedule();
	/* With a pod to announce, start keeping connections to every other node. */
	if (podsync_timer < 0) {
		podsync_timer = event_timer_add(router.r_loop, PODSYNC_DIAL_MS, podsync_dial, NULL);
		podsync_dial(router.r_loop, NULL);
	}
}
