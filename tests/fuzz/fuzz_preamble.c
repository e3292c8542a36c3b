// SPDX-License-Identifier: MIT
/*
 * Fuzzes slim_preamble_decode(), which parses the first bytes a host listener receives on a
 * connection (anything on the fabric can send them). An accepted preamble has no zero field and
 * encodes back to exactly the bytes that were decoded, so decode and encode agree on the layout.
 */
#include <errno.h>

#include "fuzz.h"
#include "preamble.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *buf = fuzz_copy(data, size);
	uint8_t again[SLIM_PREAMBLE_LEN];
	struct slim_preamble p;
	int rc;

	memset(&p, 0, sizeof(p));
	rc = slim_preamble_decode(buf, size, &p);
	FUZZ_CHECK(rc == 0 || rc == -EBADMSG);
	if (rc == 0) {
		FUZZ_CHECK(size == SLIM_PREAMBLE_LEN);
		FUZZ_CHECK(p.src_ip && p.dst_ip && p.src_port && p.dst_port);
		slim_preamble_encode(&p, again);
		FUZZ_CHECK(memcmp(again, buf, SLIM_PREAMBLE_LEN) == 0);
	}
	free(buf);
	return 0;
}
