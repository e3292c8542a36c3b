// SPDX-License-Identifier: MIT
/* Unit tests for the router's intrusive hash table (router/htab.c). */
#include <stdlib.h>

#include "htab.h"
#include "test.h"

struct item {
	struct hnode node;
	uint32_t key;
	bool seen;
};

static struct item *find(struct htab *t, uint32_t key)
{
	for (struct hnode *h = htab_first(t, htab_hash_u64(key)); h; h = htab_next(h)) {
		struct item *it = container_of(h, struct item, node);

		if (it->key == key)
			return it;
	}
	return NULL;
}

TEST(insert_find_remove_with_growth)
{
	enum { N = 20000 };
	struct item *items = calloc(N, sizeof(*items));
	struct htab t;
	size_t found = 0;

	if (!ASSERT_OK(htab_init(&t, 4), "init"))
		return;
	ASSERT_EQ(t.ht_nbuckets, 16, "minimum bucket count");
	for (uint32_t i = 0; i < N; i++) {
		items[i].key = i * 7919u;
		htab_insert(&t, &items[i].node, htab_hash_u64(items[i].key));
	}
	ASSERT_EQ(t.ht_count, N, "count");
	ASSERT_TRUE(t.ht_nbuckets >= N, "grew with the load");
	for (uint32_t i = 0; i < N; i++)
		found += find(&t, i * 7919u) == &items[i];
	ASSERT_EQ(found, N, "every key found");
	ASSERT_TRUE(find(&t, 3) == NULL, "absent key");
	for (uint32_t i = 0; i < N; i += 2)
		htab_remove(&t, &items[i].node);
	ASSERT_EQ(t.ht_count, N / 2, "count after removing half");
	ASSERT_TRUE(find(&t, 0) == NULL, "removed key gone");
	ASSERT_TRUE(find(&t, 7919u) == &items[1], "kept key still there");
	htab_free(&t);
	free(items);
}

TEST(iterate_while_removing)
{
	enum { N = 1000 };
	struct item *items = calloc(N, sizeof(*items));
	struct hnode *h, *next;
	struct htab t;
	size_t b = 0, visited = 0;

	htab_init(&t, 16);
	for (uint32_t i = 0; i < N; i++) {
		items[i].key = i;
		/* Few distinct hashes: long chains exercise the in-bucket resume. */
		htab_insert(&t, &items[i].node, htab_hash_u64(i % 37));
	}
	for (h = htab_iter(&t, &b, NULL); h; h = next) {
		struct item *it = container_of(h, struct item, node);

		next = htab_iter(&t, &b, h);
		ASSERT_TRUE(!it->seen, "each node once");
		it->seen = true;
		visited++;
		if (it->key % 3 == 0)
			htab_remove(&t, h);
	}
	ASSERT_EQ(visited, N, "visited every node");
	ASSERT_EQ(t.ht_count, N - (N + 2) / 3, "removed every third");
	b = 0;
	visited = 0;
	for (h = htab_iter(&t, &b, NULL); h; h = htab_iter(&t, &b, h)) {
		ASSERT_TRUE(container_of(h, struct item, node)->key % 3 != 0, "only kept nodes");
		visited++;
	}
	ASSERT_EQ(visited, t.ht_count, "second pass sees what is left");
	htab_free(&t);
	free(items);
}

TEST(hashes_spread)
{
	/* Sequential IPs and ports must not pile into a few buckets. */
	unsigned buckets[64] = {0}, max = 0;

	for (uint64_t i = 0; i < 6400; i++)
		buckets[htab_hash_u64(0x0af40100ull << 16 | i) & 63]++;
	for (int i = 0; i < 64; i++)
		max = buckets[i] > max ? buckets[i] : max;
	ASSERT_TRUE(max < 200, "no bucket gets twice its share");
	ASSERT_TRUE(htab_hash_str("p1") != htab_hash_str("p2"), "names differ");
}
