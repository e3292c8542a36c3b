// SPDX-License-Identifier: MIT
/*
 * Fuzzes slim_msg_check_fabric(), the check on every message another host's router sends over
 * the fabric (network byte order). An accepted message has a fabric type and exactly its size.
 */
#include <errno.h>
#include <arpa/inet.h>

#include "fuzz.h"
#include "msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *buf = fuzz_copy(data, size);
	int rc = slim_msg_check_fabric(buf, size);

	FUZZ_CHECK(rc == 0 || rc == -EBADMSG);
	if (rc == 0) {
		const struct slim_msg_hdr *h = (const void *)buf;
		uint16_t type;

		FUZZ_CHECK(size >= sizeof(*h));
		type = ntohs(h->type);
		FUZZ_CHECK(ntohl(h->len) == size && h->reserved == 0);
		/* Fabric types start at RESOLVE_REQ, and every one has an exact size. */
		FUZZ_CHECK(type >= SLIM_MSG_RESOLVE_REQ);
		FUZZ_CHECK(slim_msg_fixed_len(type) != 0 && size == slim_msg_fixed_len(type));
		volatile uint8_t sink = buf[size - 1];
		(void)sink;
	}
	free(buf);
	return 0;
}
