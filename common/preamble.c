// SPDX-License-Identifier: MIT
/* Encoding and decoding of the connection preamble (see preamble.h). */
#include <errno.h>
#include <string.h>
#include <arpa/inet.h>

#include "preamble.h"

/*
 * Layout (all big-endian): magic u32 | version u8 | flags u8 (0) | length u16 (20) |
 * src_ip u32 | dst_ip u32 | src_port u16 | dst_port u16.
 * The explicit length lets a later version grow the record and still be skipped correctly.
 */
void slim_preamble_encode(const struct slim_preamble *p, uint8_t buf[SLIM_PREAMBLE_LEN])
{
	uint32_t magic = htonl(SLIM_PREAMBLE_MAGIC);
	uint16_t len = htons(SLIM_PREAMBLE_LEN);

	memcpy(buf, &magic, 4);
	buf[4] = SLIM_PREAMBLE_VERSION;
	buf[5] = 0;
	memcpy(buf + 6, &len, 2);
	memcpy(buf + 8, &p->src_ip, 4);
	memcpy(buf + 12, &p->dst_ip, 4);
	memcpy(buf + 16, &p->src_port, 2);
	memcpy(buf + 18, &p->dst_port, 2);
}

int slim_preamble_decode(const uint8_t *buf, size_t n, struct slim_preamble *p)
{
	uint32_t magic;
	uint16_t len;

	if (n != SLIM_PREAMBLE_LEN)
		return -EBADMSG;
	memcpy(&magic, buf, 4);
	memcpy(&len, buf + 6, 2);
	if (ntohl(magic) != SLIM_PREAMBLE_MAGIC || buf[4] != SLIM_PREAMBLE_VERSION || buf[5] != 0 ||
	    ntohs(len) != SLIM_PREAMBLE_LEN)
		return -EBADMSG;
	memcpy(&p->src_ip, buf + 8, 4);
	memcpy(&p->dst_ip, buf + 12, 4);
	memcpy(&p->src_port, buf + 16, 2);
	memcpy(&p->dst_port, buf + 18, 2);
	/* A zero port or address can never come from a router: treat it as forged. */
	if (!p->src_ip || !p->dst_ip || !p->src_port || !p->dst_port)
		return -EBADMSG;
	return 0;
}
