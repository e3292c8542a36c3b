// SPDX-License-Identifier: MIT
/* The IPv4 side of a listening socket's name (sockname.h). No allocation: the shim calls it. */
#include <string.h>
#include <sys/socket.h>

#include "sockname.h"

int slim_sockname_ipv4_of_v6(int fd, const struct sockaddr_in6 *sin6, struct sockaddr_in *out)
{
	int v6only = 1;
	socklen_t olen = sizeof(v6only);

	if (sin6->sin6_family != AF_INET6)
		return -1;
	*out = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = sin6->sin6_port};
	if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
		memcpy(&out->sin_addr, &sin6->sin6_addr.s6_addr[12], 4);
		return 0;
	}
	if (!IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr) ||
	    getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &olen) < 0 || v6only)
		return -1;
	return 0;
}
