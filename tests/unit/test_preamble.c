// SPDX-License-Identifier: MIT
/* Unit tests for the connection preamble codec. */
#include <errno.h>
#include <arpa/inet.h>

#include "preamble.h"
#include "test.h"

TEST(roundtrip)
{
	struct slim_preamble in = {htonl(0x0af40102), htonl(0x0af40203), htons(40000), htons(80)};
	struct slim_preamble out;
	uint8_t buf[SLIM_PREAMBLE_LEN];

	slim_preamble_encode(&in, buf);
	if (!ASSERT_OK(slim_preamble_decode(buf, sizeof(buf), &out), "decode"))
		return;
	ASSERT_EQ(out.src_ip, in.src_ip, "src_ip");
	ASSERT_EQ(out.dst_ip, in.dst_ip, "dst_ip");
	ASSERT_EQ(out.src_port, in.src_port, "src_port");
	ASSERT_EQ(out.dst_port, in.dst_port, "dst_port");
}

TEST(rejects_bad_magic_length_and_zero_fields)
{
	struct slim_preamble in = {htonl(1), htonl(2), htons(3), htons(4)}, out;
	uint8_t buf[SLIM_PREAMBLE_LEN];

	slim_preamble_encode(&in, buf);
	ASSERT_EQ(slim_preamble_decode(buf, sizeof(buf) - 1, &out), -EBADMSG, "short");
	buf[0] ^= 1;
	ASSERT_EQ(slim_preamble_decode(buf, sizeof(buf), &out), -EBADMSG, "magic");
	buf[0] ^= 1;
	buf[4] = 2;
	ASSERT_EQ(slim_preamble_decode(buf, sizeof(buf), &out), -EBADMSG, "version");
	in.src_port = 0;
	slim_preamble_encode(&in, buf);
	ASSERT_EQ(slim_preamble_decode(buf, sizeof(buf), &out), -EBADMSG, "zero port");
}
