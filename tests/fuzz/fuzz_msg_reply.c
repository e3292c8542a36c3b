// SPDX-License-Identifier: MIT
/*
 * Fuzzes slim_msg_check_reply(), the shim's and slimctl's check on what the router answers.
 * The first 6 input bytes choose the type and id the requester waits for; the rest is the
 * reply. An accepted reply must have exactly the expected type, id and size.
 */
#include <errno.h>

#include "fuzz.h"
#include "msg.h"

/* The reply types a requester can wait for, and one that is never a reply. */
static const uint16_t fuzz_reply_types[] = {
	SLIM_MSG_POOL_REP, SLIM_MSG_LISTEN_REP,	 SLIM_MSG_ROUTE_REP,
	SLIM_MSG_CTL_REP,  SLIM_MSG_RESOLVE_REP, SLIM_MSG_ROUTE_REQ,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const size_t nt = sizeof(fuzz_reply_types) / sizeof(fuzz_reply_types[0]);
	const struct slim_msg_hdr *h;
	uint16_t type;
	uint32_t id;
	uint8_t *buf;
	size_t n;
	int rc;

	if (size < 6)
		return 0;
	type = fuzz_reply_types[data[0] % nt];
	memcpy(&id, data + 2, sizeof(id));
	n = size - 6;
	buf = fuzz_copy(data + 6, n);
	rc = slim_msg_check_reply(buf, n, type, id);
	FUZZ_CHECK(rc == 0 || rc == -EBADMSG);
	if (rc == 0) {
		h = (const void *)buf;
		FUZZ_CHECK(n >= sizeof(*h) && n <= SLIM_MSG_MAX);
		FUZZ_CHECK(h->len == n && h->reserved == 0);
		FUZZ_CHECK(h->type == type && h->id == id);
		if (type == SLIM_MSG_CTL_REP)
			FUZZ_CHECK(n >= sizeof(*h));
		else
			FUZZ_CHECK(slim_msg_fixed_len(type) && n == slim_msg_fixed_len(type));
		/* The caller reads the whole message as its struct: touch every byte. */
		volatile uint8_t sink = 0;

		for (size_t i = 0; i < n; i++)
			sink ^= buf[i];
		(void)sink;
	}
	free(buf);
	return 0;
}
