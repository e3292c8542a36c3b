/* SPDX-License-Identifier: MIT */
/*
 * A tiny unit-test harness in the style of the BPF selftests. A test is a function written
 * TEST(name) { ... } in tests/unit/test_<file>.c; the build finds every TEST by name and
 * generates the runner, so there is no registration list. ASSERT_* print what was expected and
 * what came, mark the test failed, and return the verdict so a test can bail out early. A test
 * that cannot run on this machine calls SKIP(reason): it is reported as skipped, never passed.
 */
#ifndef SLIM_TEST_H
#define SLIM_TEST_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

extern int test_failed;
extern const char *test_name; /* "file/test", set by the runner */

/*
 * SKIP("why"): the test cannot run here (no root, no cgroup v2): it ends now and is counted as
 * skipped with the reason, never as passed. Call it before the test makes anything it would
 * have to clean up.
 */
#define SKIP(...)                                                                                  \
	do {                                                                                       \
		printf("SKIP %s: ", test_name);                                                    \
		printf(__VA_ARGS__);                                                               \
		printf("\n");                                                                      \
		fflush(NULL);                                                                      \
		_exit(TEST_EXIT_SKIP);                                                             \
	} while (0)
#define TEST_EXIT_SKIP 77

#define TEST(name)                                                                                 \
	void test_##name(void);                                                                    \
	void test_##name(void)

#define ASSERT_TRUE(cond, what)                                                                    \
	({                                                                                         \
		bool ok_ = (cond);                                                                 \
		if (!ok_) {                                                                        \
			fprintf(stderr, "  %s:%d: %s: expected true: %s\n", __FILE__, __LINE__,   \
				what, #cond);                                                      \
			test_failed = 1;                                                           \
		}                                                                                  \
		ok_;                                                                               \
	})

#define ASSERT_EQ(actual, expected, what)                                                          \
	({                                                                                         \
		long long a_ = (long long)(actual), e_ = (long long)(expected);                    \
		bool ok_ = a_ == e_;                                                               \
		if (!ok_) {                                                                        \
			fprintf(stderr, "  %s:%d: %s: expected %lld, got %lld\n", __FILE__,        \
				__LINE__, what, e_, a_);                                           \
			test_failed = 1;                                                           \
		}                                                                                  \
		ok_;                                                                               \
	})

#define ASSERT_OK(err, what) ASSERT_EQ(err, 0, what)

#define ASSERT_STREQ(actual, expected, what)                                                       \
	({                                                                                         \
		const char *a_ = (actual), *e_ = (expected);                                       \
		bool ok_ = a_ && e_ && !strcmp(a_, e_);                                            \
		if (!ok_) {                                                                        \
			fprintf(stderr, "  %s:%d: %s: expected \"%s\", got \"%s\"\n", __FILE__,    \
				__LINE__, what, e_ ? e_ : "(null)", a_ ? a_ : "(null)");           \
			test_failed = 1;                                                           \
		}                                                                                  \
		ok_;                                                                               \
	})

#endif
