/* SPDX-License-Identifier: MIT */
/* The IPv4 side of a listening socket's name, shared by the shim and the supervisor. */
#ifndef SLIM_SOCKNAME_H
#define SLIM_SOCKNAME_H

#include <netinet/in.h>

/*
 * The IPv4 address IPv4 clients reach an AF_INET6 listener fd on, from its name sin6: the
 * mapped address of a ::ffff:a.b.c.d socket, or 0.0.0.0 for a dual-stack :: socket (IPV6_V6ONLY
 * off, read from fd). 0, or -1 for a listener no IPv4 client can reach.
 */
int slim_sockname_ipv4_of_v6(int fd, const struct sockaddr_in6 *sin6, struct sockaddr_in *out);

#endif
