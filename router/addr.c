// SPDX-License-Identifier: MIT
/* Formatting of IPv4 endpoints for logs and listings. */
#include <stdio.h>
#include <arpa/inet.h>

#include "router.h"

const char *addr_str(char *buf, size_t len, uint32_t ip, uint16_t port)
{
	char a[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &ip, a, sizeof(a));
	snprintf(buf, len, "%s:%u", a, ntohs(port));
	return buf;
}
