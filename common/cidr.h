/* SPDX-License-Identifier: MIT */
/* IPv4 prefixes: parsing "a.b.c.d/len" and membership, shared by the router and the shim. */
#ifndef SLIM_CIDR_H
#define SLIM_CIDR_H

#include <stdbool.h>
#include <stdint.h>

struct cidr {
	uint32_t net;  /* network order, host bits zero */
	uint32_t mask; /* network order */
	uint8_t len;
};

/* Parses "10.244.0.0/16" (a bare address means /32). 0, or -EINVAL for anything else,
 * including host bits set beyond the prefix. */
int cidr_parse(const char *text, struct cidr *out);

/* ip in network order. */
static inline bool cidr_contains(const struct cidr *c, uint32_t ip)
{
	return (ip & c->mask) == c->net;
}

#endif
