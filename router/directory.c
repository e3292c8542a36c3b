// SPDX-License-Identifier: MIT
/*
 * The pod directory: every pod of the cluster this router knows of (its own, and those other
 * routers announce with POD_SYNC), by overlay IP, with the labels policy selectors match. It is
 * the one place policy asks "who is 10.244.2.3", so a cluster store (etcd) can later feed it
 * through the same directory_put/directory_del calls instead of the fabric.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "router.h"

static struct htab dir_by_ip;
static uint64_t dir_generation = 1;

int directory_init(void)
{
	return htab_init(&dir_by_ip, 256);
}

static void directory_entry_free(struct dir_pod *d)
{
	htab_remove(&dir_by_ip, &d->dp_node);
	json_decref(d->dp_labels);
	free(d);
}

void directory_free(void)
{
	struct hnode *h;
	size_t b;

	while ((b = 0, h = htab_iter(&dir_by_ip, &b, NULL)))
		directory_entry_free(container_of(h, struct dir_pod, dp_node));
	htab_free(&dir_by_ip);
}

void (*directory_changed_hook)(void);

static void directory_changed(void)
{
	dir_generation++;
	if (directory_changed_hook)
		directory_changed_hook();
}

const struct dir_pod *directory_find(uint32_t ip)
{
	for (struct hnode *h = htab_first(&dir_by_ip, htab_hash_u64(ip)); h; h = htab_next(h)) {
		struct dir_pod *d = container_of(h, struct dir_pod, dp_node);

		if (d->dp_ip == ip)
			return d;
	}
	return NULL;
}

int directory_put(const char *node, bool local, uint32_t ip, const char *name, json_t *labels)
{
	struct dir_pod *d = (struct dir_pod *)directory_find(ip);

	if (!d) {
		d = calloc(1, sizeof(*d));
		if (!d)
			return -ENOMEM;
		d->dp_ip = ip;
		htab_insert(&dir_by_ip, &d->dp_node, htab_hash_u64(ip));
	}
	/* A remote announcement never replaces one of our own pods: the kernel told us those. */
	if (d->dp_local && !local)
		return -EEXIST;
	snprintf(d->dp_nodename, sizeof(d->dp_nodename), "%s", node);
	snprintf(d->dp_name, sizeof(d->dp_name), "%s", name);
	json_decref(d->dp_labels);
	d->dp_labels = labels ? json_incref(labels) : json_object();
	d->dp_local = local;
	directory_changed();
	return 0;
}

void directory_del(uint32_t ip)
{
	struct dir_pod *d = (struct dir_pod *)directory_find(ip);

	if (d) {
		directory_entry_free(d);
		directory_changed();
	}
}

void directory_drop_node(const char *node)
{
	struct hnode *h, *next;
	size_t b = 0;

	for (h = htab_iter(&dir_by_ip, &b, NULL); h; h = next) {
		struct dir_pod *d = container_of(h, struct dir_pod, dp_node);

		next = htab_iter(&dir_by_ip, &b, h);
		if (!d->dp_local && !strcmp(d->dp_nodename, node)) {
			directory_entry_free(d);
			directory_changed();
		}
	}
}

const struct dir_pod *directory_iter(size_t *bucket, const struct dir_pod *prev)
{
	struct hnode *h =
		htab_iter(&dir_by_ip, bucket, prev ? (struct hnode *)&prev->dp_node : NULL);

	return h ? container_of(h, struct dir_pod, dp_node) : NULL;
}

uint64_t directory_generation(void)
{
	return dir_generation;
}

size_t directory_count(void)
{
	return dir_by_ip.ht_count;
}

json_t *directory_json(void)
{
	const struct dir_pod *d = NULL;
	json_t *a = json_array();
	size_t b = 0;

	while ((d = directory_iter(&b, d))) {
		char ip[INET_ADDRSTRLEN];

		inet_ntop(AF_INET, &d->dp_ip, ip, sizeof(ip));
		json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:O, s:b}", "ip", ip, "name",
						   d->dp_name, "node", d->dp_nodename, "labels",
						   d->dp_labels, "local", d->dp_local));
	}
	return a;
}
