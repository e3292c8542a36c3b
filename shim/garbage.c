// SPDX-License-Identifier: MIT
/*
 * Deferred frees. close() and dup2() may run inside a signal handler, where free() is not
 * allowed; they push memory onto a lock-free list instead, and the next call that runs in normal
 * context (connect, listen, epoll_ctl, setsockopt) frees it.
 */
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>

#include "shim.h"

struct garbage {
	struct garbage *next;
	max_align_t align[];
};

static _Atomic(struct garbage *) garbage_list;

void *garbage_alloc(size_t size)
{
	struct garbage *g = calloc(1, sizeof(*g) + size);

	return g ? g->align : NULL;
}

void garbage_defer(void *p)
{
	struct garbage *g;

	if (!p)
		return;
	g = (struct garbage *)((char *)p - offsetof(struct garbage, align));
	g->next = atomic_load(&garbage_list);
	while (!atomic_compare_exchange_weak(&garbage_list, &g->next, g))
		;
}

void garbage_collect(void)
{
	/* Taking the whole list at once has no ABA problem: nobody else pops. */
	struct garbage *g = atomic_exchange(&garbage_list, NULL);

	while (g) {
		struct garbage *next = g->next;

		free(g);
		g = next;
	}
}
