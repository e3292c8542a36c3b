// SPDX-License-Identifier: MIT
/* The table of libc functions the shim wraps, resolved once with dlsym(RTLD_NEXT). */
#include <dlfcn.h>

#include "shim.h"

struct shim_real real;

/*
 * Resolution may run before the shim's constructor (another library's constructor can call
 * socket()), and from several threads at once: each store is of the same value, so the race is
 * benign and no lock is needed.
 */
#define RESOLVE(name) (*(void **)&real.name = dlsym(RTLD_NEXT, #name))

void real_resolve(void)
{
	RESOLVE(socket);
	RESOLVE(bind);
	RESOLVE(connect);
	RESOLVE(listen);
	RESOLVE(accept);
	RESOLVE(accept4);
	RESOLVE(close);
	RESOLVE(close_range);
	RESOLVE(dup);
	RESOLVE(dup2);
	RESOLVE(dup3);
	RESOLVE(fcntl);
	RESOLVE(fcntl64);
	RESOLVE(setsockopt);
	RESOLVE(getsockopt);
	RESOLVE(getsockname);
	RESOLVE(getpeername);
	RESOLVE(poll);
	RESOLVE(ppoll);
	RESOLVE(__poll_chk);
	RESOLVE(__ppoll_chk);
	RESOLVE(select);
	RESOLVE(pselect);
	RESOLVE(epoll_create);
	RESOLVE(epoll_create1);
	RESOLVE(epoll_ctl);
	RESOLVE(syscall);
	RESOLVE(read);
	RESOLVE(readv);
	RESOLVE(recv);
	RESOLVE(recvfrom);
	RESOLVE(recvmsg);
	RESOLVE(__read_chk);
	RESOLVE(__recv_chk);
	RESOLVE(__recvfrom_chk);
	RESOLVE(sendmsg);
	RESOLVE(sendmmsg);
	RESOLVE(posix_spawn);
	RESOLVE(posix_spawnp);
	RESOLVE(system);
	RESOLVE(popen);
	if (!real.fcntl64)
		real.fcntl64 = real.fcntl;
}
