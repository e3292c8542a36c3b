/* SPDX-License-Identifier: MIT */
/*
 * Internal header of the shim (libslim.so), one section per file. The shim is a guest in someone
 * else's process: it never exits, never writes to stdout, takes no global lock, and falls back to
 * the plain syscall whenever anything of its own fails.
 */
#ifndef SLIM_SHIM_H
#define SLIM_SHIM_H

#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>

#include "proto.h"

#define SHIM_EXPORT __attribute__((visibility("default")))

/* ---- real.c: the libc functions the shim wraps, resolved with dlsym(RTLD_NEXT) ---- */
struct shim_real {
	int (*socket)(int, int, int);
	int (*bind)(int, const struct sockaddr *, socklen_t);
	int (*connect)(int, const struct sockaddr *, socklen_t);
	int (*listen)(int, int);
	int (*accept)(int, struct sockaddr *, socklen_t *);
	int (*accept4)(int, struct sockaddr *, socklen_t *, int);
	int (*close)(int);
	int (*close_range)(unsigned, unsigned, int);
	int (*dup)(int);
	int (*dup2)(int, int);
	int (*dup3)(int, int, int);
	int (*fcntl)(int, int, ...);
	int (*fcntl64)(int, int, ...);
	int (*setsockopt)(int, int, int, const void *, socklen_t);
	int (*getsockopt)(int, int, int, void *, socklen_t *);
	int (*getsockname)(int, struct sockaddr *, socklen_t *);
	int (*getpeername)(int, struct sockaddr *, socklen_t *);
	int (*poll)(struct pollfd *, nfds_t, int);
	int (*ppoll)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
	int (*__poll_chk)(struct pollfd *, nfds_t, int, size_t);
	int (*__ppoll_chk)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *,
			   size_t);
	int (*select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
	int (*pselect)(int, fd_set *, fd_set *, fd_set *, const struct timespec *,
		       const sigset_t *);
	int (*epoll_create)(int);
	int (*epoll_create1)(int);
	int (*epoll_ctl)(int, int, int, struct epoll_event *);
	long (*syscall)(long, ...);
	ssize_t (*read)(int, void *, size_t);
	ssize_t (*readv)(int, const struct iovec *, int);
	ssize_t (*recv)(int, void *, size_t, int);
	ssize_t (*recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
	ssize_t (*recvmsg)(int, struct msghdr *, int);
	ssize_t (*__read_chk)(int, void *, size_t, size_t);
	ssize_t (*__recv_chk)(int, void *, size_t, size_t, int);
	ssize_t (*__recvfrom_chk)(int, void *, size_t, size_t, int, struct sockaddr *, socklen_t *);
	ssize_t (*sendmsg)(int, const struct msghdr *, int);
	int (*sendmmsg)(int, struct mmsghdr *, unsigned, int);
	int (*posix_spawn)(pid_t *, const char *, const posix_spawn_file_actions_t *,
			   const posix_spawnattr_t *, char *const[], char *const[]);
	int (*posix_spawnp)(pid_t *, const char *, const posix_spawn_file_actions_t *,
			    const posix_spawnattr_t *, char *const[], char *const[]);
	int (*system)(const char *);
	FILE *(*popen)(const char *, const char *);
};

extern struct shim_real real;
/* Resolves every entry of `real`; safe to call more than once and before the constructor. */
void real_resolve(void);
#define REAL(fn) (real.fn ? real.fn : (real_resolve(), real.fn))

/* ---- config.c: process-wide settings read once from the environment ---- */
struct shim_config {
	bool enabled;       /* false with SLIM_DISABLE=1 or when the overlay CIDR is bad */
	bool debug;         /* SLIM_DEBUG set */
	uint32_t overlay_net, overlay_mask; /* network order */
	uint32_t service_net, service_mask; /* ClusterIPs (network order) */
	char router_path[108];
};
extern struct shim_config shim_config;
void config_init(void);
/* True when ip (network order) is an overlay address the shim should virtualize. */
static inline bool config_is_overlay(uint32_t ip)
{
	return (ip & shim_config.overlay_mask) == shim_config.overlay_net;
}
/* True when ip (network order) is a Service's virtual IP: the kernel picks its backend. */
static inline bool config_is_service(uint32_t ip)
{
	return (ip & shim_config.service_mask) == shim_config.service_net;
}
/* True for 127.0.0.0/8 (network order): in-pod connections, virtualized too (sidecars). */
static inline bool config_is_loopback(uint32_t ip)
{
	return (ip & htonl(0xff000000)) == htonl(0x7f000000);
}
/* Logs to stderr when SLIM_DEBUG is set; never allocates, never touches stdout. */
void shim_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- garbage.c: frees deferred out of code a signal handler may reach (close, dup2) ---- */
void *garbage_alloc(size_t size);
void garbage_defer(void *p);
void garbage_collect(void);

/* ---- fdtab.c: what the shim knows about each fd number ---- */
enum fd_kind {
	FD_UNKNOWN = 0,  /* never seen, or an fd the shim does not care about */
	FD_TCP,         /* an app's TCP socket (IPv4, or IPv6 for a dual-stack listener), not yet
			 * connected or listening */
	FD_PLAIN,        /* handled by the kernel alone (fallback connect, pod-side accept) */
	FD_SLIM_CONN,    /* a host socket the router connected for the app */
	FD_SLIM_ACCEPTED, /* a host socket accepted from a host listener */
	FD_LISTENER,     /* a pod listener with a companion host listener */
	FD_HIDDEN,       /* the shim's own host listener fd */
	FD_EPOLL,        /* an epoll instance (its generation guards stale registrations) */
	FD_POOL,         /* a governed host socket waiting in the pool (pool.c) */
	FD_PRIVATE,      /* the shim's own connection to the router */
};

/* CONN_RECONNECTING: connecting again after a refusal the app was not told of (once). */
enum conn_state { CONN_CONNECTING = 1, CONN_CONNECTED, CONN_FAILED, CONN_RECONNECTING };

/* A host listener shared by every dup of the app's listening fd. */
struct shim_listener {
	atomic_int refs;
	atomic_int host_fd;
	uint32_t ip; /* overlay address the app bound (0 = any) */
	uint16_t port;
	bool v6; /* a dual-stack AF_INET6 listener: addresses go out as ::ffff:a.b.c.d */
	atomic_uint turn; /* decides which listener accept tries first */
	/* While the router could not be asked (down or stopped at listen()): the shim's fd that
	 * wakes the app (readable when it is time to ask again or the router answered), waited on
	 * beside the app's listener as the host listener would be; -1 otherwise. */
	atomic_int wake_fd;
	struct shim_listen_retry *retry; /* listener.c; set once at listen(), freed with l */
};

struct shim_epoll_reg {
	int epfd;
	uint32_t epgen;
	struct epoll_event ev;
};

struct shim_opts {
	unsigned n;
	struct slim_sockopt opt[SLIM_MAX_SOCKOPTS];
};

#define SHIM_MAX_EPOLL_REGS 8

struct shim_regs {
	unsigned n;
	struct shim_epoll_reg reg[SHIM_MAX_EPOLL_REGS];
};

struct fd_entry {
	uint8_t kind;       /* enum fd_kind */
	uint8_t state;      /* enum conn_state, FD_SLIM_CONN only */
	uint8_t v6;         /* an AF_INET6 socket: addresses are reported v4-mapped */
	uint8_t error;      /* FD_SLIM_CONN: the SO_ERROR the shim took from the kernel, for the app */
	uint32_t epgen;     /* FD_EPOLL generation; survives resets of the entry */
	/* reset.c: this number is its socket's only reference, as far as the shim saw, as of
	 * these fork and spawn counts (a close with unread bytes may then reset) */
	uint8_t sole;
	uint32_t forks, spawns;
	struct sockaddr_in bound;     /* FD_TCP: what the app bound, if anything */
	struct sockaddr_in peer;      /* FD_SLIM_CONN: the overlay destination it connects to */
	struct shim_listener *listener; /* FD_LISTENER, FD_HIDDEN */
	struct shim_opts *opts;       /* FD_TCP/FD_LISTENER: recorded socket options */
	struct shim_regs *regs;       /* FD_TCP: epoll sets it was added to before connect;
				       * FD_LISTENER waiting for its host listener: its epoll sets */
};

/* The entry of fd, or NULL when fd is out of range or never recorded (no allocation). */
struct fd_entry *fdtab_get(int fd);
/* The entry of fd, allocating its chunk if needed; NULL when fd is out of range or OOM. */
struct fd_entry *fdtab_slot(int fd);
/* Forgets everything about fd (its number is being closed or reused). Signal-safe. */
void fdtab_release(int fd);
/* Makes newfd describe what oldfd describes (after dup*): listener references are shared. */
void fdtab_copy(int oldfd, int newfd);
/* Marks fd as one of the shim's own, so an app that takes its number is noticed. */
void fdtab_set_private(int fd);
/* Releases every fd in [first, last] that has an entry. */
void fdtab_release_range(unsigned first, unsigned last);
/* True when some fd in the table is a listener (cheap hint for poll/select). */
bool fdtab_has_listeners(void);
void fdtab_listener_added(void);
void listener_put(struct shim_listener *l);

/* ---- reset.c: the last close of a socket with unread bytes resets, as TCP's does ---- */
void reset_init(void);
/* e was just made by this process (socket(), accept()): it is its socket's only number. */
void reset_track(struct fd_entry *e);
/* Before close(fd): arms an abortive close when e is a slim connection with unread bytes
 * that nothing else can hold. Signal-safe. */
void reset_on_close(int fd, const struct fd_entry *e);
/* fd is being passed (SCM_RIGHTS): it is held elsewhere from now on. */
void reset_passed(int fd);

/* ---- router_link.c: this thread's connection to the router ---- */
/*
 * Sends req (len bytes), waits for the reply of type rep_type into rep (rep_len bytes exactly),
 * with a passed descriptor in *fd_out (-1 if none). Returns 0, or -errno when the router is
 * unreachable, too slow, or answers nonsense: the caller then falls back.
 */
int router_call(void *req, size_t len, uint16_t rep_type, void *rep, size_t rep_len, int *fd_out);
/* The same, passing pass_fd with the request (a LISTEN_REQ's proof: the app's own listener). */
int router_call_fd(void *req, size_t len, int pass_fd, uint16_t rep_type, void *rep,
		   size_t rep_len, int *fd_out);
void router_link_init(void);
/* A new connection to the router's socket, at a high descriptor number. fd or -errno. */
int router_socket_connect(void);

/* ---- pool.c: governed host sockets made ahead of need ---- */
void pool_init(void);
/* A governed host socket (non-blocking, unconnected), or -1 when none can be had. */
int pool_take(void);
/* Gives back a socket taken but not used. */
void pool_put(int fd);
/* The app closed fd, a number the pool held: forget it. */
void pool_forget(int fd);
/* Closes every socket the pool holds (the app hit its descriptor limit); how many. */
int pool_drain(void);
/* The app took the number of a private descriptor (close, dup2 over it). */
void pool_private_lost(int fd);
/* The shim's own descriptors live high (see pool.c): the lowest number they may take, and a
 * move of fd there (returns the new number, or fd when it cannot move). */
int shim_fd_base(void);
int shim_fd_relocate(int fd);
/*
 * The app's descriptors keep the lowest free numbers although the pool's batches arrive there
 * first (SCM_RIGHTS installs at the lowest free numbers) before moving up: fd_window_gen() is
 * read before a call that makes a descriptor, shim_fd_lowest() after it moves the new descriptor
 * down to the lowest free number if a batch came in meanwhile.
 */
unsigned fd_window_gen(void);
int shim_fd_lowest(int fd, unsigned gen_before);

/* ---- connect.c ---- */
/* dst: the IPv4 overlay destination; addr/len: what the app gave (for the plain connect). */
int connect_slim(int fd, const struct sockaddr_in *dst, const struct sockaddr *addr,
		 socklen_t len);
/* SO_ERROR said ECONNREFUSED on fd's governed connect: what SO_ERROR should say instead. */
int connect_refused_again(int fd, struct fd_entry *e);
/* poll saw fd's governed connect end with an error: true when it is connecting again (a
 * refusal on a route that may be stale) and the app is not to see the error. */
bool connect_heal(int fd, struct fd_entry *e);
/* Set once this process made a governed connect: only then is poll's answer looked at. */
extern atomic_bool connect_governed_made;

/* ---- listener.c ---- */
int listener_after_listen(int fd, int backlog);
int listener_accept(int fd, struct fd_entry *e, struct sockaddr *addr, socklen_t *len,
		    int flags);
void listener_mirror_sockopt(struct fd_entry *e, int level, int name, const void *val,
			     socklen_t len);
/* What is waited on beside the app's listener: the host listener, or while the router is asked
 * again for one, the wake fd; -1 when neither. */
int listener_side_fd(struct shim_listener *l);
/* True while l has no host listener and asks the router again (epoll sets are recorded then). */
bool listener_retrying(struct shim_listener *l);
/* The router is asked again for fd's host listener: its wake fd turned readable (time to ask,
 * or the answer came). Never blocks. */
void listener_retry_step(int fd, struct fd_entry *e);
/* Closes what the retry of l holds (its last reference is gone). */
void listener_retry_free(struct shim_listener *l);

/* ---- readiness.c ---- */
/* Re-registers fd in the epoll sets recorded in regs, after its file changed under it. */
void readiness_epoll_unregister(int fd, const struct shim_regs *regs);
void readiness_epoll_reregister(int fd, const struct shim_regs *regs);

/* ---- util ---- */
/* True when the signal that interrupted a wait would have restarted the syscall (SA_RESTART on
 * every caught signal): used to give the shim's own waits the kernel's restart semantics. */
bool signal_restarts(void);
/* Copies sin into (addr, *len) with the kernel's truncation semantics; as a v4-mapped
 * sockaddr_in6 when v6 (what a dual-stack socket reports for an IPv4 peer). */
void sockaddr_out(const struct sockaddr_in *sin, struct sockaddr *addr, socklen_t *len, bool v6);

#endif /* SLIM_SHIM_H */
