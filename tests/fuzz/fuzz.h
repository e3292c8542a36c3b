/* SPDX-License-Identifier: MIT */
/*
 * What every libFuzzer target in tests/fuzz/ shares: the entry point's prototype, a copy of the
 * input into a buffer of exactly its size (so AddressSanitizer reports any read past the end,
 * and the decoder sees the malloc alignment a real receive buffer has), and the check that turns
 * a violated invariant into a crash libFuzzer records.
 */
#ifndef SLIM_FUZZ_H
#define SLIM_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An exactly sized heap copy of data; malloc(0) may return NULL, so size 0 gets one byte. */
static inline uint8_t *fuzz_copy(const uint8_t *data, size_t size)
{
	uint8_t *buf = malloc(size ? size : 1);

	if (!buf)
		abort();
	memcpy(buf, data, size);
	return buf;
}

/* An invariant the decoder promised does not hold for this input: report it and crash. */
#define FUZZ_CHECK(cond)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: invariant violated: %s\n", __FILE__, __LINE__,     \
				#cond);                                                            \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

#endif
