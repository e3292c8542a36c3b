// SPDX-License-Identifier: MIT
/* IPv4 prefix parsing. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "cidr.h"

int cidr_parse(const char *text, struct cidr *out)
{
	char buf[INET_ADDRSTRLEN + 4];
	const char *slash;
	struct in_addr a;
	unsigned long len = 32;
	size_t alen;

	slash = strchr(text, '/');
	alen = slash ? (size_t)(slash - text) : strlen(text);
	if (alen == 0 || alen >= INET_ADDRSTRLEN)
		return -EINVAL;
	memcpy(buf, text, alen);
	buf[alen] = '\0';
	if (inet_pton(AF_INET, buf, &a) != 1)
		return -EINVAL;
	if (slash) {
		char *end;

		if (slash[1] < '0' || slash[1] > '9')
			return -EINVAL;
		len = strtoul(slash + 1, &end, 10);
		if (*end || len > 32)
			return -EINVAL;
	}
	out->len = (uint8_t)len;
	out->mask = len ? htonl(~0u << (32 - len)) : 0;
	if (a.s_addr & ~out->mask)
		return -EINVAL;
	out->net = a.s_addr;
	return 0;
}
