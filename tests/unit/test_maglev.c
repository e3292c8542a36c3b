// SPDX-License-Identifier: MIT
/*
 * Unit tests for Maglev consistent hashing (router/maglev.c): table sizes, balance, that a
 * table depends on the set of backends only, how few slots a change of one backend moves, and
 * how evenly the kernel's slot hash spreads connects.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "router.h"
#include "test.h"

#define TEST_BACKENDS_MAX 700

static bool is_prime(uint32_t m)
{
	if (m < 2)
		return false;
	for (uint32_t d = 2; d * d <= m; d++)
		if (m % d == 0)
			return false;
	return true;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* A deterministic xorshift, so a failure reproduces. */
static uint32_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return (uint32_t)(*s >> 32);
}

/*
 * n distinct pod addresses spread over 10.244.0.0/16 (network order), sorted as the router
 * hands them over.
 */
static void make_backends(uint32_t *b, unsigned n, uint64_t seed)
{
	uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;

	for (unsigned i = 0; i < n;) {
		uint32_t ip = htonl(0x0af40000u | (rnd(&s) & 0xffff));
		unsigned j;

		for (j = 0; j < i && b[j] != ip; j++)
			;
		if (j == i && (ip & htonl(0xff)) != 0)
			b[i++] = ip;
	}
	qsort(b, n, sizeof(*b), cmp_u32);
}

/* Slots whose backend (by address) differs between two tables of the same size. */
static unsigned moved(const uint32_t *b1, const uint16_t *t1, const uint32_t *b2,
		      const uint16_t *t2, uint32_t m, uint32_t skip_ip)
{
	unsigned count = 0;

	for (uint32_t s = 0; s < m; s++)
		if (b1[t1[s]] != skip_ip && b1[t1[s]] != b2[t2[s]])
			count++;
	return count;
}

TEST(maglev_table_sizes)
{
	static const unsigned ns[] = {0, 1, 3, 10, 100, 655};

	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		uint32_t m = maglev_table_size(ns[i]), want = ns[i] * MAGLEV_SCALE;
		char what[64];

		snprintf(what, sizeof(what), "%u backends: m=%u", ns[i], m);
		ASSERT_TRUE(is_prime(m), what);
		ASSERT_TRUE(m >= want && m >= MAGLEV_MIN && m <= MAGLEV_MAX, what);
		/* The smallest such prime: none between the bound and m. */
		for (uint32_t p = want > MAGLEV_MIN ? want : MAGLEV_MIN; p < m; p++)
			if (!ASSERT_TRUE(!is_prime(p), what))
				break;
	}
	ASSERT_EQ(maglev_table_size(1), 101, "1 backend");
	ASSERT_EQ(maglev_table_size(3), 307, "3 backends");
	ASSERT_EQ(maglev_table_size(10), 1009, "10 backends");
	ASSERT_EQ(maglev_table_size(100), 10007, "100 backends");
	ASSERT_EQ(maglev_table_size(656), MAGLEV_MAX, "656 backends: capped");
	ASSERT_EQ(maglev_table_size(700), MAGLEV_MAX, "700 backends: capped");
	ASSERT_EQ(maglev_table_size(~0u), MAGLEV_MAX, "no overflow");
	ASSERT_TRUE(is_prime(MAGLEV_MAX), "MAGLEV_MAX is prime");
}

TEST(maglev_balance)
{
	static const unsigned ns[] = {1, 2, 3, 7, 100, 655};
	static uint32_t b[TEST_BACKENDS_MAX];
	static uint16_t t[MAGLEV_MAX];
	static unsigned count[TEST_BACKENDS_MAX];

	for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++) {
		unsigned n = ns[k];
		uint32_t m = maglev_table_size(n);
		char what[64];

		make_backends(b, n, k);
		memset(t, 0xff, sizeof(t));
		memset(count, 0, sizeof(count));
		maglev_build(b, n, m, t);
		snprintf(what, sizeof(what), "n=%u m=%u: every slot names a backend", n, m);
		for (uint32_t s = 0; s < m; s++) {
			if (!ASSERT_TRUE(t[s] < n, what))
				return;
			count[t[s]]++;
		}
		for (unsigned i = 0; i < n; i++) {
			snprintf(what, sizeof(what), "n=%u m=%u: backend %u has %u slots", n, m, i,
				 count[i]);
			if (!ASSERT_TRUE(count[i] == m / n || count[i] == (m + n - 1) / n, what))
				break;
		}
	}
}

TEST(maglev_deterministic)
{
	enum { N = 50 };
	uint32_t b[N], shuffled[N];
	static uint16_t t1[MAGLEV_MAX], t2[MAGLEV_MAX];
	uint32_t m = maglev_table_size(N);
	uint64_t s = 42;

	make_backends(b, N, 7);
	maglev_build(b, N, m, t1);
	for (int round = 0; round < 5; round++) {
		memcpy(shuffled, b, sizeof(b));
		for (unsigned i = N - 1; i > 0; i--) {
			unsigned j = rnd(&s) % (i + 1);
			uint32_t x = shuffled[i];

			shuffled[i] = shuffled[j];
			shuffled[j] = x;
		}
		qsort(shuffled, N, sizeof(*shuffled), cmp_u32);
		memset(t2, 0xff, sizeof(t2));
		maglev_build(shuffled, N, m, t2);
		if (!ASSERT_EQ(moved(b, t1, shuffled, t2, m, 0), 0, "same set, same table"))
			return;
	}
}

/*
 * Tables of the n backends b[] and of the same without b[gone], both of size m: *survivors
 * counts the slots that go from one surviving backend to another, *changed every slot whose
 * backend differs (the removed one's too). Which table is "before" does not matter: removing
 * b[gone] and adding it are the same pair of tables.
 */
static void churn(const uint32_t *b, unsigned n, unsigned gone, uint32_t m, unsigned *survivors,
		  unsigned *changed)
{
	static uint32_t fewer[TEST_BACKENDS_MAX];
	static uint16_t t1[MAGLEV_MAX], t2[MAGLEV_MAX];
	unsigned k = 0;

	for (unsigned i = 0; i < n; i++)
		if (i != gone)
			fewer[k++] = b[i];
	maglev_build(b, n, m, t1);
	maglev_build(fewer, n - 1, m, t2);
	*survivors = moved(b, t1, fewer, t2, m, b[gone]);
	*changed = moved(b, t1, fewer, t2, m, 0);
}

/* Measurements go to stderr when a test fails, or always with TEST_VERBOSE set. */
static void report(const char *what, unsigned cases, double sum, unsigned worst, uint32_t m)
{
	if (test_failed || getenv("TEST_VERBOSE"))
		fprintf(stderr, "  %s: %u cases, mean %.2f%%, worst %.2f%% of m=%u\n", what, cases,
			100.0 * sum / cases / m, 100.0 * worst / m, m);
}

/*
 * Removing one backend, the table size kept: its slots must move, and few of the others may.
 * Maglev trades some of that for balance, more in small tables: with 10 backends (m = 1009) the
 * survivors lose about 2.6% of the slots on average, 8% at worst over these 200 cases; with 100
 * (m = 10007) 1.6%, 2.1% at worst. A hash modulo n would move about 90% of them.
 */
TEST(maglev_disruption_remove)
{
	static uint32_t b[TEST_BACKENDS_MAX];
	unsigned worst = 0, cases = 0, surv, changed;
	uint32_t m = maglev_table_size(10);
	double sum = 0;

	for (uint64_t set = 0; set < 20; set++) {
		make_backends(b, 10, 100 + set);
		for (unsigned gone = 0; gone < 10; gone++, cases++) {
			churn(b, 10, gone, m, &surv, &changed);
			ASSERT_TRUE(changed >= surv + m / 10, "the removed backend's slots move");
			sum += surv;
			worst = surv > worst ? surv : worst;
		}
	}
	ASSERT_TRUE(sum / cases < 0.03 * m, "10 backends: survivors' slots moved, mean < 3% of m");
	ASSERT_TRUE(worst < 0.10 * m, "10 backends: survivors' slots moved, worst < 10% of m");
	report("remove 1 of 10", cases, sum, worst, m);

	m = maglev_table_size(100);
	worst = cases = 0;
	sum = 0;
	for (uint64_t set = 0; set < 4; set++) {
		make_backends(b, 100, 300 + set);
		for (unsigned gone = 0; gone < 100; gone += 10, cases++) {
			churn(b, 100, gone, m, &surv, &changed);
			sum += surv;
			worst = surv > worst ? surv : worst;
		}
	}
	ASSERT_TRUE(worst < 0.03 * m, "100 backends: survivors' slots moved, worst < 3% of m");
	report("remove 1 of 100", cases, sum, worst, m);
}

/*
 * Adding an 11th backend to 10, the table size kept: it takes its share (m/11 give or take
 * one, 9.1%) and a few more slots change hands among the others: 11.8% of m change owner on
 * average over these 40 sets, 16.8% at worst.
 */
TEST(maglev_disruption_add)
{
	enum { N = 10 };
	uint32_t b[N + 1], m = maglev_table_size(N);
	static uint16_t t[MAGLEV_MAX];
	unsigned worst = 0, cases = 0, surv, changed;
	double sum = 0, share = (double)m / (N + 1);

	for (uint64_t set = 0; set < 40; set++, cases++) {
		/* Any one of the 11 plays the newcomer; the list stays sorted. */
		unsigned pos = (unsigned)(set % (N + 1)), taken = 0;

		make_backends(b, N + 1, 200 + set);
		maglev_build(b, N + 1, m, t);
		for (uint32_t s = 0; s < m; s++)
			taken += t[s] == pos;
		ASSERT_TRUE(taken == m / (N + 1) || taken == (m + N) / (N + 1),
			    "the newcomer takes its share");
		churn(b, N + 1, pos, m, &surv, &changed);
		sum += changed;
		worst = changed > worst ? changed : worst;
	}
	ASSERT_TRUE(sum / cases < share + 0.03 * m, "slots that changed owner, mean < 1/11 + 3%");
	ASSERT_TRUE(worst < share + 0.09 * m, "slots that changed owner, worst < 1/11 + 9%");
	report("add an 11th to 10", cases, sum, worst, m);
}

/* The kernel picks slot slim_hash32(pod, cookie) % m: connects spread like the slots do. */
TEST(maglev_slot_spread)
{
	enum { N = 3, KEYS = 100000 };
	uint32_t b[N], m = maglev_table_size(N), pod = inet_addr("10.244.1.3");
	static uint16_t t[MAGLEV_MAX];
	unsigned count[N] = {0};

	if (!ASSERT_EQ(m, 307, "m"))
		return;
	make_backends(b, N, 3);
	maglev_build(b, N, m, t);
	for (uint32_t cookie = 0; cookie < KEYS; cookie++) {
		uint32_t s = maglev_slot(pod, 0x1000 + cookie, m);

		if (!ASSERT_TRUE(s < m, "slot in range"))
			return;
		count[t[s]]++;
	}
	for (unsigned i = 0; i < N; i++) {
		char what[64];

		snprintf(what, sizeof(what), "backend %u got %u of %u", i, count[i], KEYS);
		ASSERT_TRUE(count[i] * 100 >= 20u * KEYS && count[i] * 100 <= 47u * KEYS, what);
		if (test_failed || getenv("TEST_VERBOSE"))
			fprintf(stderr, "  %s\n", what);
	}
}
