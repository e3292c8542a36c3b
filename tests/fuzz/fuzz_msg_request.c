// SPDX-License-Identifier: MIT
/*
 * Fuzzes slim_msg_check_request(), the check on every message a pod sends to its router, and
 * verifies that an accepted message is internally consistent: whatever the router then reads
 * (options, JSON text) lies inside the bytes that were received.
 */
#include <errno.h>
#include <stddef.h>

#include "fuzz.h"
#include "msg.h"
#include "sockopt.h"

/* Reads an accepted option the way the router replays it, so ASan sees every byte it would. */
static unsigned fuzz_touch_opts(const struct slim_sockopt *opts, unsigned nopts)
{
	unsigned sum = 0;

	for (unsigned i = 0; i < nopts; i++) {
		FUZZ_CHECK(opts[i].len > 0 && opts[i].len <= SLIM_SOCKOPT_MAXLEN);
		FUZZ_CHECK(slim_sockopt_allowed(opts[i].level, opts[i].name, opts[i].len));
		for (uint32_t b = 0; b < opts[i].len; b++)
			sum += opts[i].val[b];
	}
	return sum;
}

static void fuzz_check_accepted(const uint8_t *buf, size_t n)
{
	const struct slim_msg_hdr *h = (const void *)buf;
	volatile unsigned sink = 0;

	FUZZ_CHECK(n >= sizeof(*h) && n <= SLIM_MSG_MAX);
	FUZZ_CHECK(h->len == n && h->reserved == 0);
	switch (h->type) {
	case SLIM_MSG_POOL_REQ: {
		const struct slim_pool_req *r = (const void *)buf;

		FUZZ_CHECK(n == sizeof(*r));
		FUZZ_CHECK(r->count >= 1 && r->count <= SLIM_POOL_BATCH);
		break;
	}
	case SLIM_MSG_ROUTE_REQ: {
		const struct slim_route_req *r = (const void *)buf;

		FUZZ_CHECK(n == sizeof(*r));
		FUZZ_CHECK(!(r->flags & ~SLIM_ROUTEF_RETRY));
		break;
	}
	case SLIM_MSG_LISTEN_REQ: {
		const struct slim_listen_req *r = (const void *)buf;

		FUZZ_CHECK(n >= offsetof(struct slim_listen_req, opts));
		FUZZ_CHECK(r->nopts <= SLIM_MAX_SOCKOPTS);
		FUZZ_CHECK(n == offsetof(struct slim_listen_req, opts) +
					r->nopts * sizeof(struct slim_sockopt));
		FUZZ_CHECK(n == slim_listen_req_len(r->nopts));
		sink += fuzz_touch_opts(r->opts, r->nopts);
		break;
	}
	case SLIM_MSG_CTL_REQ:
		/* The JSON text is hdr.len - sizeof(hdr) bytes and must not be empty. */
		FUZZ_CHECK(n > sizeof(*h));
		sink += buf[n - 1];
		break;
	case SLIM_MSG_POOL_REP:
	case SLIM_MSG_ROUTE_REP:
	case SLIM_MSG_LISTEN_REP:
	case SLIM_MSG_CTL_REP:
		FUZZ_CHECK(!"accepted a reply as a request");
		break;
	default:
		/* Every other request has one exact size; fabric types never pass here. */
		FUZZ_CHECK(h->type < SLIM_MSG_RESOLVE_REQ);
		FUZZ_CHECK(slim_msg_fixed_len(h->type) != 0 && n == slim_msg_fixed_len(h->type));
		sink += buf[n - 1];
	}
	(void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *buf = fuzz_copy(data, size);
	int rc = slim_msg_check_request(buf, size);

	FUZZ_CHECK(rc == 0 || rc == -EBADMSG);
	if (rc == 0)
		fuzz_check_accepted(buf, size);
	free(buf);
	return 0;
}
