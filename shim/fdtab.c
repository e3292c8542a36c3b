// SPDX-License-Identifier: MIT
/*
 * The per-fd table: what the shim knows about each fd number. Two levels, chunks allocated on
 * first use and never freed, so lookups are two loads, there is no lock, and fd numbers up to
 * 2^20 (the kernel's default nr_open) work. Entries are only touched by calls naming that fd.
 */
#include <stdlib.h>
#include <unistd.h>

#include "shim.h"

#define CHUNK_BITS 10
#define CHUNK_SIZE (1u << CHUNK_BITS)
#define NCHUNKS 1024u

static _Atomic(struct fd_entry *) fdtab_chunks[NCHUNKS];
/* Listeners ever created by this process: poll/select skip their scan while it is zero. */
static atomic_int fdtab_listeners;

struct fd_entry *fdtab_get(int fd)
{
	struct fd_entry *chunk;

	if (fd < 0 || (unsigned)fd >= NCHUNKS * CHUNK_SIZE)
		return NULL;
	chunk = atomic_load_explicit(&fdtab_chunks[fd >> CHUNK_BITS], memory_order_acquire);
	return chunk ? &chunk[fd & (CHUNK_SIZE - 1)] : NULL;
}

struct fd_entry *fdtab_slot(int fd)
{
	struct fd_entry *chunk, *expected = NULL;

	if (fd < 0 || (unsigned)fd >= NCHUNKS * CHUNK_SIZE)
		return NULL;
	chunk = atomic_load_explicit(&fdtab_chunks[fd >> CHUNK_BITS], memory_order_acquire);
	if (!chunk) {
		chunk = calloc(CHUNK_SIZE, sizeof(*chunk));
		if (!chunk)
			return NULL;
		if (!atomic_compare_exchange_strong(&fdtab_chunks[fd >> CHUNK_BITS], &expected,
						    chunk)) {
			free(chunk); /* another thread installed it first */
			chunk = expected;
		}
	}
	return &chunk[fd & (CHUNK_SIZE - 1)];
}

void listener_put(struct shim_listener *l)
{
	if (atomic_fetch_sub(&l->refs, 1) != 1)
		return;
	int host_fd = atomic_exchange(&l->host_fd, -1);

	if (host_fd >= 0) {
		struct fd_entry *h = fdtab_get(host_fd);

		if (h && h->kind == FD_HIDDEN && h->listener == l) {
			h->kind = FD_UNKNOWN;
			h->listener = NULL;
		}
		REAL(close)(host_fd);
	}
	listener_retry_free(l);
	atomic_fetch_sub(&fdtab_listeners, 1);
	garbage_defer(l);
}

void fdtab_release(int fd)
{
	struct fd_entry *e = fdtab_get(fd);
	uint32_t epgen;

	if (!e || e->kind == FD_UNKNOWN)
		return;
	if (e->kind == FD_LISTENER)
		listener_put(e->listener);
	if (e->kind == FD_POOL)
		pool_forget(fd); /* a closefrom loop closed a pool socket */
	if (e->kind == FD_PRIVATE)
		pool_private_lost(fd);
	if (e->kind == FD_HIDDEN && e->listener) {
		/* The app closed the shim's own fd (a closefrom loop): stop using that number. */
		atomic_compare_exchange_strong(&e->listener->host_fd, &fd, -1);
	}
	garbage_defer(e->opts);
	garbage_defer(e->regs);
	epgen = e->epgen + (e->kind == FD_EPOLL);
	*e = (struct fd_entry){.epgen = epgen};
}

void fdtab_copy(int oldfd, int newfd)
{
	struct fd_entry *o = fdtab_get(oldfd), *n;

	if (!o || o->kind == FD_UNKNOWN || o->kind == FD_HIDDEN || o->kind == FD_POOL ||
	    o->kind == FD_PRIVATE)
		return;
	/* Two numbers for one socket: closing one is not its last close (reset.c). */
	o->sole = 0;
	n = fdtab_slot(newfd);
	if (!n)
		return;
	/* Options and epoll registrations belong to the original number only. */
	*n = (struct fd_entry){
		.kind = o->kind,
		.state = o->state,
		.v6 = o->v6,
		.epgen = n->epgen,
		.bound = o->bound,
		.peer = o->peer,
	};
	if (o->kind == FD_LISTENER) {
		atomic_fetch_add(&o->listener->refs, 1);
		n->listener = o->listener;
	}
	if (o->kind == FD_TCP) {
		/*
		 * Two numbers now share one pod socket. Swapping a host socket under one of them
		 * would leave the other behind, so both are connected plainly (over the overlay).
		 */
		n->kind = FD_PLAIN;
		o->kind = FD_PLAIN;
	}
	if (o->kind == FD_EPOLL)
		n->kind = FD_UNKNOWN; /* registrations name the original epfd */
}

void fdtab_release_range(unsigned first, unsigned last)
{
	for (unsigned c = first >> CHUNK_BITS; c < NCHUNKS && c <= (last >> CHUNK_BITS); c++) {
		if (!atomic_load(&fdtab_chunks[c]))
			continue;
		for (unsigned i = 0; i < CHUNK_SIZE; i++) {
			unsigned fd = c * CHUNK_SIZE + i;

			if (fd >= first && fd <= last)
				fdtab_release((int)fd);
		}
	}
}

void fdtab_set_private(int fd)
{
	struct fd_entry *e = fdtab_slot(fd);

	if (e)
		e->kind = FD_PRIVATE;
}

void fdtab_listener_added(void)
{
	atomic_fetch_add(&fdtab_listeners, 1);
}

bool fdtab_has_listeners(void)
{
	return atomic_load_explicit(&fdtab_listeners, memory_order_relaxed) > 0;
}
