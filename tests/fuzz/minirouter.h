/* SPDX-License-Identifier: MIT */
/*
 * A minimal slimrouterd inside a fuzz target (fuzz_control, fuzz_podsync, fuzz_policy): the
 * router's real global state and tables, set up the way main() sets them up, without sockets to
 * the world.
 */
#ifndef SLIM_MINIROUTER_H
#define SLIM_MINIROUTER_H

#include "router.h"

/*
 * Node h1 of the built-in two-host cluster, empty tables, no event loop running. Aborts when
 * something cannot be set up (the target would test nothing).
 */
void minirouter_init(void);
/* Puts a pod labelled app=APP into the directory (node's, local or announced); aborts on failure. */
void minirouter_pod(const char *node, bool local, uint32_t ip, const char *app);

#endif
