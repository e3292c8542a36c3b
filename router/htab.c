// SPDX-License-Identifier: MIT
/* The intrusive chained hash table behind every router lookup table (see htab.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "htab.h"

int htab_init(struct htab *t, size_t nbuckets)
{
	size_t n = 16;

	while (n < nbuckets)
		n <<= 1;
	t->ht_buckets = calloc(n, sizeof(*t->ht_buckets));
	if (!t->ht_buckets)
		return -ENOMEM;
	t->ht_nbuckets = n;
	t->ht_count = 0;
	return 0;
}

void htab_free(struct htab *t)
{
	free(t->ht_buckets);
	t->ht_buckets = NULL;
	t->ht_nbuckets = 0;
	t->ht_count = 0;
}

static void htab_grow(struct htab *t)
{
	size_t n = t->ht_nbuckets * 2;
	struct hnode **b = calloc(n, sizeof(*b));

	/* Growing is an optimization: without memory the chains just get longer. */
	if (!b)
		return;
	for (size_t i = 0; i < t->ht_nbuckets; i++) {
		struct hnode *e = t->ht_buckets[i], *next;

		for (; e; e = next) {
			next = e->hn_next;
			e->hn_next = b[e->hn_hash & (n - 1)];
			b[e->hn_hash & (n - 1)] = e;
		}
	}
	free(t->ht_buckets);
	t->ht_buckets = b;
	t->ht_nbuckets = n;
}

void htab_insert(struct htab *t, struct hnode *n, uint64_t hash)
{
	struct hnode **head;

	if (t->ht_count >= t->ht_nbuckets)
		htab_grow(t);
	head = &t->ht_buckets[hash & (t->ht_nbuckets - 1)];
	n->hn_hash = hash;
	n->hn_next = *head;
	*head = n;
	t->ht_count++;
}

void htab_remove(struct htab *t, struct hnode *n)
{
	struct hnode **pp = &t->ht_buckets[n->hn_hash & (t->ht_nbuckets - 1)];

	for (; *pp; pp = &(*pp)->hn_next) {
		if (*pp == n) {
			/* n->hn_next stays: htab_iter() resumes from it after this removal. */
			*pp = n->hn_next;
			t->ht_count--;
			return;
		}
	}
}

struct hnode *htab_first(const struct htab *t, uint64_t hash)
{
	struct hnode *e = t->ht_buckets[hash & (t->ht_nbuckets - 1)];

	while (e && e->hn_hash != hash)
		e = e->hn_next;
	return e;
}

struct hnode *htab_next(const struct hnode *n)
{
	struct hnode *e = n->hn_next;

	while (e && e->hn_hash != n->hn_hash)
		e = e->hn_next;
	return e;
}

struct hnode *htab_iter(const struct htab *t, size_t *bucket, struct hnode *n)
{
	/*
	 * Resume from the bucket of n rather than from n->hn_next, so the caller may unlink n
	 * between calls: we restart that bucket's walk after n by rescanning it.
	 */
	if (n) {
		size_t b = n->hn_hash & (t->ht_nbuckets - 1);
		struct hnode *e = t->ht_buckets[b];

		while (e && e != n)
			e = e->hn_next;
		if (e && e->hn_next)
			return e->hn_next;
		if (!e && n->hn_next)
			return n->hn_next; /* n was unlinked: its old successor is still valid */
		*bucket = b + 1;
	}
	for (; *bucket < t->ht_nbuckets; (*bucket)++)
		if (t->ht_buckets[*bucket])
			return t->ht_buckets[*bucket];
	return NULL;
}

uint64_t htab_hash_u64(uint64_t x)
{
	/* splitmix64's finalizer: every input bit affects the bucket bits. */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

uint64_t htab_hash_bytes(const void *p, size_t n)
{
	const unsigned char *s = p;
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++) {
		h ^= s[i];
		h *= 0x100000001b3ull;
	}
	return htab_hash_u64(h);
}

uint64_t htab_hash_str(const char *s)
{
	return htab_hash_bytes(s, strlen(s));
}
