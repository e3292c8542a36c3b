// SPDX-License-Identifier: MIT
/*
 * Maglev consistent hashing (Eisenbud et al., NSDI'16): the lookup table a Service's connects
 * pick their backend from. Each backend walks its own permutation of the table's slots and the
 * backends take turns claiming their next free slot, so every backend ends up with m/n slots
 * give or take one, and adding or removing one backend moves little more than its own share.
 * The permutation depends on the backend's address only, so two routers that know the same set
 * of backends build the same table, and a restarted router rebuilds the one it had.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <linux/types.h>

#include "govern_abi.h"
#include "router.h"

/*
 * Two unrelated seeds make two independent hashes of a backend's address: one picks where its
 * walk starts, the other the stride. Changing them reshuffles every table: they are part of
 * what a table means, like slim_hash32 itself.
 */
#define MAGLEV_SEED_OFFSET 0x6d61676cu /* "magl" */
#define MAGLEV_SEED_SKIP   0x65763136u /* "ev16" */

/* The most backends a table of MAGLEV_MAX slots still gives MAGLEV_SCALE slots each. */
#define MAGLEV_BACKENDS_MAX (MAGLEV_MAX / MAGLEV_SCALE)

#define MAGLEV_EMPTY UINT16_MAX

static bool maglev_is_prime(uint32_t m)
{
	if (m < 2)
		return false;
	if (m % 2 == 0)
		return m == 2;
	for (uint32_t d = 3; d * d <= m; d += 2)
		if (m % d == 0)
			return false;
	return true;
}

uint32_t maglev_table_size(unsigned nbackends)
{
	uint64_t want = (uint64_t)nbackends * MAGLEV_SCALE;
	uint32_t m;

	/* MAGLEV_MAX is prime, so no search from below it runs past it. */
	if (want >= MAGLEV_MAX)
		return MAGLEV_MAX;
	m = want < MAGLEV_MIN ? MAGLEV_MIN : (uint32_t)want;
	while (!maglev_is_prime(m))
		m++;
	return m;
}

void maglev_build(const uint32_t *backends, unsigned n, uint32_t m, uint16_t *table)
{
	/*
	 * Where each backend's walk stands and its stride. Kept on the stack at the bound the
	 * table sizes allow, so building a table cannot fail: the router calls this while it
	 * swaps a Service's layout and has no good answer to an allocation failure there.
	 */
	uint32_t next[MAGLEV_BACKENDS_MAX], skip[MAGLEV_BACKENDS_MAX];
	uint32_t filled = 0;

	if (!m)
		return;
	/*
	 * A walk covers every slot only if its stride is coprime with m, which a prime m
	 * guarantees for any stride in [1, m). Given anything else (a caller's bug), a walk
	 * could circle forever over filled slots: fill round-robin instead, which is still a
	 * valid table, just not a consistent one. More backends than MAGLEV_BACKENDS_MAX would
	 * get fewer than MAGLEV_SCALE slots each; the ones past it get none.
	 */
	if (n > MAGLEV_BACKENDS_MAX)
		n = MAGLEV_BACKENDS_MAX;
	if (!n || !maglev_is_prime(m)) {
		for (uint32_t s = 0; s < m; s++)
			table[s] = n ? (uint16_t)(s % n) : 0;
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		next[i] = slim_hash32(backends[i], MAGLEV_SEED_OFFSET) % m;
		skip[i] = slim_hash32(backends[i], MAGLEV_SEED_SKIP) % (m - 1) + 1;
	}
	memset(table, 0xff, (size_t)m * sizeof(*table));
	/*
	 * Round after round, each backend claims the first still-empty slot of its walk. The
	 * walks are random permutations, so the whole fill takes about m * ln(m / n) steps
	 * (coupon collecting over each round's leftovers), not m * n.
	 */
	for (;;) {
		for (unsigned i = 0; i < n; i++) {
			uint32_t s = next[i];

			while (table[s] != MAGLEV_EMPTY) {
				s += skip[i];
				if (s >= m)
					s -= m;
			}
			table[s] = (uint16_t)i;
			next[i] = s + skip[i] >= m ? s + skip[i] - m : s + skip[i];
			if (++filled == m)
				return;
		}
	}
}

uint32_t maglev_slot(uint32_t key_a, uint32_t key_b, uint32_t m)
{
	return slim_hash32(key_a, key_b) % m;
}
