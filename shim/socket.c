// SPDX-License-Identifier: MIT
/*
 * The interposed socket API entry points: each decides in a few loads whether the call concerns
 * the shim, and otherwise goes straight to libc. Calls on established connections (read, write,
 * send*, recv*, sendfile, splice, shutdown) are not interposed at all; getsockopt only to look
 * at SO_ERROR's ECONNREFUSED.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/syscall.h>

#include "msg.h"
#include "shim.h"
#include "sockopt.h"

void sockaddr_out(const struct sockaddr_in *sin, struct sockaddr *addr, socklen_t *len, bool v6)
{
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = sin->sin_port};
	const void *src = sin;
	socklen_t n = sizeof(*sin);

	if (!addr || !len)
		return;
	if (v6) {
		sin6.sin6_addr.s6_addr[10] = 0xff;
		sin6.sin6_addr.s6_addr[11] = 0xff;
		memcpy(&sin6.sin6_addr.s6_addr[12], &sin->sin_addr, 4);
		src = &sin6;
		n = sizeof(sin6);
	}
	memcpy(addr, src, *len < n ? *len : n);
	*len = n;
}

bool signal_restarts(void)
{
	for (int sig = 1; sig < NSIG; sig++) {
		struct sigaction sa;

		if (sigaction(sig, NULL, &sa) < 0)
			continue;
		if (sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN &&
		    !(sa.sa_flags & SA_RESTART))
			return false;
	}
	return true;
}

SHIM_EXPORT int socket(int domain, int type, int protocol)
{
	unsigned gen = fd_window_gen();
	int fd = REAL(socket)(domain, type, protocol);
	struct fd_entry *e;

	/* The pool's sockets count against the app's limit: at the limit, they give way. */
	if (fd < 0 && errno == EMFILE && pool_drain() > 0)
		fd = REAL(socket)(domain, type, protocol);
	if (fd < 0)
		return fd;
	/* The lowest free number, as POSIX says, even if a pool batch passed through meanwhile. */
	fd = shim_fd_lowest(fd, gen);
	fdtab_release(fd); /* the number is new: whatever was recorded for it is stale */
	if ((domain == AF_INET || domain == AF_INET6) && (type & 0xff) == SOCK_STREAM &&
	    (protocol == 0 || protocol == IPPROTO_TCP) && shim_config.enabled &&
	    (e = fdtab_slot(fd))) {
		/* IPv6 sockets for their IPv4 peers: a dual-stack listener's, a v4-mapped connect. */
		e->kind = FD_TCP;
		e->v6 = domain == AF_INET6;
		reset_track(e);
	}
	return fd;
}

SHIM_EXPORT int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
	int rc = REAL(bind)(fd, addr, len);
	struct fd_entry *e;

	if (rc == 0 && (e = fdtab_get(fd)) && e->kind == FD_TCP) {
		struct sockaddr_in6 sin6;
		socklen_t l = sizeof(sin6);

		/* Port 0 means the kernel chose one: record the real one (the port of an IPv6
		 * socket too, so that a bound socket of either family is seen as bound). */
		if (REAL(getsockname)(fd, (struct sockaddr *)&sin6, &l) == 0) {
			if (sin6.sin6_family == AF_INET)
				memcpy(&e->bound, &sin6, sizeof(e->bound));
			else
				e->bound.sin_port = sin6.sin6_port;
		}
	}
	return rc;
}

/*
 * The IPv4 destination of a connect: an AF_INET address, or the v4-mapped AF_INET6 address an
 * IPv6 socket connects to (::ffff:a.b.c.d: what Java and gRPC do with their default dual-stack
 * sockets). false for anything else.
 */
static bool connect_ipv4_dst(const struct fd_entry *e, const struct sockaddr *addr, socklen_t len,
			     struct sockaddr_in *dst)
{
	if (!addr)
		return false;
	if (!e->v6 && addr->sa_family == AF_INET && len >= sizeof(*dst)) {
		memcpy(dst, addr, sizeof(*dst));
		return true;
	}
	if (e->v6 && addr->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)addr;

		if (!IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
			return false;
		*dst = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = sin6->sin6_port};
		memcpy(&dst->sin_addr, &sin6->sin6_addr.s6_addr[12], 4);
		return true;
	}
	return false;
}

SHIM_EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	struct fd_entry *e = fdtab_get(fd);
	struct sockaddr_in dst;

	if (!e || (e->kind != FD_TCP && e->kind != FD_SLIM_CONN))
		return REAL(connect)(fd, addr, len);
	if (e->kind == FD_SLIM_CONN && connect_ipv4_dst(e, addr, len, &dst))
		return connect_slim(fd, &dst, addr, len);
	/*
	 * A socket the app bound before connecting keeps its port on the overlay: the kernel
	 * names a governed socket by the port it was given, not one the app chose.
	 */
	if (e->kind != FD_TCP || e->bound.sin_port || !shim_config.enabled ||
	    !connect_ipv4_dst(e, addr, len, &dst) ||
	    !(config_is_overlay(dst.sin_addr.s_addr) || config_is_loopback(dst.sin_addr.s_addr) ||
	      config_is_service(dst.sin_addr.s_addr))) {
		if (e->kind == FD_TCP)
			e->kind = FD_PLAIN;
		return REAL(connect)(fd, addr, len);
	}
	return connect_slim(fd, &dst, addr, len);
}

SHIM_EXPORT int listen(int fd, int backlog)
{
	struct fd_entry *e = fdtab_get(fd);
	int rc = REAL(listen)(fd, backlog);

	if (rc < 0 || !e)
		return rc;
	if (e->kind == FD_TCP) {
		int saved = errno;

		listener_after_listen(fd, backlog);
		errno = saved;
	} else if (e->kind == FD_LISTENER) {
		/* listen() again changes the backlog: keep both sides alike. */
		int host_fd = atomic_load(&e->listener->host_fd);

		if (host_fd >= 0)
			REAL(listen)(host_fd, backlog);
	}
	return rc;
}

SHIM_EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	struct fd_entry *e = fdtab_get(fd);
	int nfd;

	if (e && e->kind == FD_LISTENER)
		return listener_accept(fd, e, addr, len, flags);
	nfd = REAL(accept4)(fd, addr, len, flags);
	if (nfd < 0 && errno == EMFILE && pool_drain() > 0)
		nfd = REAL(accept4)(fd, addr, len, flags);
	if (nfd >= 0)
		fdtab_release(nfd);
	return nfd;
}

SHIM_EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	struct fd_entry *e = fdtab_get(fd);
	int nfd;

	if (e && e->kind == FD_LISTENER)
		return listener_accept(fd, e, addr, len, 0);
	nfd = REAL(accept)(fd, addr, len);
	if (nfd < 0 && errno == EMFILE && pool_drain() > 0)
		nfd = REAL(accept)(fd, addr, len);
	if (nfd >= 0)
		fdtab_release(nfd);
	return nfd;
}

SHIM_EXPORT int close(int fd)
{
	struct fd_entry *e = fdtab_get(fd);

	if (e)
		reset_on_close(fd, e);
	/* Forget first: once the number is closed another thread may get it from the kernel. */
	fdtab_release(fd);
	return REAL(close)(fd);
}

SHIM_EXPORT int close_range(unsigned first, unsigned last, int flags)
{
	if (!(flags & CLOSE_RANGE_CLOEXEC))
		fdtab_release_range(first, last);
	return REAL(close_range)(first, last, flags);
}

SHIM_EXPORT int dup(int oldfd)
{
	int fd = REAL(dup)(oldfd);

	if (fd >= 0) {
		fdtab_release(fd);
		fdtab_copy(oldfd, fd);
	}
	return fd;
}

SHIM_EXPORT int dup2(int oldfd, int newfd)
{
	int fd;

	if (oldfd == newfd)
		return REAL(dup2)(oldfd, newfd);
	fd = REAL(dup2)(oldfd, newfd);
	if (fd >= 0) {
		fdtab_release(fd); /* dup2 closed what newfd was */
		fdtab_copy(oldfd, fd);
	}
	return fd;
}

SHIM_EXPORT int dup3(int oldfd, int newfd, int flags)
{
	int fd = REAL(dup3)(oldfd, newfd, flags);

	if (fd >= 0) {
		fdtab_release(fd);
		fdtab_copy(oldfd, fd);
	}
	return fd;
}

static int fcntl_common(int (*fn)(int, int, ...), int fd, int cmd, void *arg)
{
	int rc = fn(fd, cmd, arg);

	if (rc >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)) {
		fdtab_release(rc);
		fdtab_copy(fd, rc);
	}
	return rc;
}

/*
 * fcntl's third argument is an int or a pointer depending on cmd; on every ABI we build for,
 * both travel in the same register, so it is forwarded as a pointer-sized value.
 */
SHIM_EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	return fcntl_common(REAL(fcntl), fd, cmd, arg);
}

SHIM_EXPORT int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	return fcntl_common(REAL(fcntl64), fd, cmd, arg);
}

/* Records an option set before connect/listen, for the router to replay on the host socket. */
static void sockopt_record(struct fd_entry *e, int level, int name, const void *val,
			   socklen_t len)
{
	struct shim_opts *o = e->opts;
	unsigned i;

	if (!o) {
		garbage_collect();
		o = e->opts = garbage_alloc(sizeof(*o));
		if (!o)
			return;
	}
	for (i = 0; i < o->n; i++)
		if (o->opt[i].level == level && o->opt[i].name == name)
			break;
	if (i == o->n) {
		if (o->n == SLIM_MAX_SOCKOPTS) {
			/* An option the host socket would not get: keep this socket in the pod. */
			e->kind = FD_PLAIN;
			return;
		}
		o->n++;
	}
	o->opt[i] = (struct slim_sockopt){.level = level, .name = name, .len = len};
	memcpy(o->opt[i].val, val, len);
}

SHIM_EXPORT int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	int rc = REAL(setsockopt)(fd, level, name, val, len);
	struct fd_entry *e;

	if (rc < 0 || !(e = fdtab_get(fd)) || !val || !slim_sockopt_allowed(level, name, len))
		return rc;
	if (e->kind == FD_TCP)
		sockopt_record(e, level, name, val, len);
	else if (e->kind == FD_LISTENER)
		listener_mirror_sockopt(e, level, name, val, len);
	return rc;
}

/*
 * Only SO_ERROR's ECONNREFUSED on a governed connect is looked at: a non-blocking connect whose
 * cached route was stale (the server moved) is connected again before the app learns of it,
 * as a blocking one is (connect.c). Everything else is the kernel's answer as it is.
 */
SHIM_EXPORT int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	int rc = REAL(getsockopt)(fd, level, name, val, len);
	struct fd_entry *e;

	if (rc < 0 || level != SOL_SOCKET || name != SO_ERROR || !val || !len ||
	    *len < sizeof(int) || !(e = fdtab_get(fd)) || e->kind != FD_SLIM_CONN)
		return rc;
	/* An error poll took from the kernel (readiness.c) is the app's to read, once. */
	if (e->error && !*(int *)val) {
		*(int *)val = e->error;
		e->error = 0;
		return rc;
	}
	if (*(int *)val == ECONNREFUSED && e->state == CONN_CONNECTING)
		*(int *)val = connect_refused_again(fd, e);
	return rc;
}

/*
 * The kernel names host sockets by their overlay addresses itself (the governance programs), on
 * both ends and whoever holds them. What is left to the shim: the IPv6 sockets whose host socket
 * is AF_INET (a dual-stack listener's accepted connections, a connect to ::ffff:a.b.c.d), whose
 * app expects IPv4 addresses as ::ffff:a.b.c.d.
 */
static int sockname_overlay(int (*fn)(int, struct sockaddr *, socklen_t *), int fd,
			    struct sockaddr *addr, socklen_t *len)
{
	struct fd_entry *e = fdtab_get(fd);
	struct sockaddr_in sin;
	socklen_t slen = sizeof(sin);
	int rc;

	if (!e || !e->v6 || (e->kind != FD_SLIM_ACCEPTED && e->kind != FD_SLIM_CONN))
		return fn(fd, addr, len);
	rc = fn(fd, addr ? (struct sockaddr *)&sin : NULL, len ? &slen : NULL);
	if (rc == 0)
		sockaddr_out(&sin, addr, len, true);
	return rc;
}

SHIM_EXPORT int getsockname(int fd, struct sockaddr *addr, socklen_t *len)
{
	return sockname_overlay(REAL(getsockname), fd, addr, len);
}

SHIM_EXPORT int getpeername(int fd, struct sockaddr *addr, socklen_t *len)
{
	return sockname_overlay(REAL(getpeername), fd, addr, len);
}

/* Raw syscall(SYS_connect, ...) and friends reach the same code as the libc calls. */
SHIM_EXPORT long syscall(long nr, ...)
{
	va_list ap;
	long a[6];

	va_start(ap, nr);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	switch (nr) {
	case SYS_connect:
		return connect((int)a[0], (const struct sockaddr *)a[1], (socklen_t)a[2]);
	case SYS_listen:
		return listen((int)a[0], (int)a[1]);
	case SYS_accept:
		return accept((int)a[0], (struct sockaddr *)a[1], (socklen_t *)a[2]);
	case SYS_accept4:
		return accept4((int)a[0], (struct sockaddr *)a[1], (socklen_t *)a[2], (int)a[3]);
	case SYS_close:
		return close((int)a[0]);
	case SYS_dup:
		return dup((int)a[0]);
	case SYS_dup2:
		return dup2((int)a[0], (int)a[1]);
	case SYS_dup3:
		return dup3((int)a[0], (int)a[1], (int)a[2]);
	case SYS_socket:
		return socket((int)a[0], (int)a[1], (int)a[2]);
	case SYS_sendmsg:
		return sendmsg((int)a[0], (const struct msghdr *)a[1], (int)a[2]);
	}
	return REAL(syscall)(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}
