/* SPDX-License-Identifier: MIT */
/*
 * The connection preamble: a fixed 20-byte record the client's router writes on a host socket
 * before any app byte (it rides in the SYN with TCP Fast Open). It tells the server side the
 * connection's overlay addresses; the server shim consumes it inside accept().
 */
#ifndef SLIM_PREAMBLE_H
#define SLIM_PREAMBLE_H

#include <stddef.h>
#include <stdint.h>

#define SLIM_PREAMBLE_MAGIC 0x534c4d31u /* "SLM1" */
#define SLIM_PREAMBLE_VERSION 1
#define SLIM_PREAMBLE_LEN 20

/* Addresses and ports in network byte order, as in struct sockaddr_in. */
struct slim_preamble {
	uint32_t src_ip;
	uint32_t dst_ip;
	uint16_t src_port;
	uint16_t dst_port;
};

/* Writes exactly SLIM_PREAMBLE_LEN bytes to buf. */
void slim_preamble_encode(const struct slim_preamble *p, uint8_t buf[SLIM_PREAMBLE_LEN]);

/* Parses n bytes; returns 0, or -EBADMSG for a wrong length, magic, version or field. */
int slim_preamble_decode(const uint8_t *buf, size_t n, struct slim_preamble *p);

#endif
