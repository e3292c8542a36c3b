/* SPDX-License-Identifier: MIT */
/*
 * The socket options a pod app may have replayed on a host socket. The shim records only these,
 * and the router applies only these: a pod must never set SO_MARK, SO_BINDTODEVICE or the like
 * on a socket that lives in the host's network namespace.
 */
#ifndef SLIM_SOCKOPT_H
#define SLIM_SOCKOPT_H

#include <stdbool.h>
#include <stddef.h>

/* True when (level, name) is replayable and len is a sane size for it. */
bool slim_sockopt_allowed(int level, int name, size_t len);

#endif
