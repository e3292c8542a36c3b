/* SPDX-License-Identifier: MIT */
/*
 * An intrusive chained hash table: the router's pods, listeners, resolution cache and
 * connections each embed a struct hnode per key, so a lookup allocates nothing and an insert
 * allocates only when the bucket array grows. The caller computes the hash and compares keys.
 */
#ifndef SLIM_HTAB_H
#define SLIM_HTAB_H

#include <stddef.h>
#include <stdint.h>

struct hnode {
	struct hnode *hn_next;
	uint64_t hn_hash;
};

struct htab {
	struct hnode **ht_buckets;
	size_t ht_nbuckets; /* a power of two */
	size_t ht_count;
};

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* 0 or -ENOMEM. nbuckets is rounded up to a power of two (at least 16). */
int htab_init(struct htab *t, size_t nbuckets);
void htab_free(struct htab *t);
/* Inserts n under hash; grows the table (best effort) when the load passes 1. */
void htab_insert(struct htab *t, struct hnode *n, uint64_t hash);
/* Removes n, which must be in t. */
void htab_remove(struct htab *t, struct hnode *n);
/* First node with this hash (or NULL); htab_next() gives the following one with the same hash. */
struct hnode *htab_first(const struct htab *t, uint64_t hash);
struct hnode *htab_next(const struct hnode *n);
/* Iteration over every node: start with *bucket = 0 and n = NULL; NULL at the end. Removing the
 * returned node before the next call is allowed. */
struct hnode *htab_iter(const struct htab *t, size_t *bucket, struct hnode *n);

uint64_t htab_hash_u64(uint64_t key);
uint64_t htab_hash_bytes(const void *p, size_t n);
uint64_t htab_hash_str(const char *s);

#endif
