/* SPDX-License-Identifier: MIT */
/*
 * Internal header of slim-supervise, one section per file: a seccomp user-notification
 * supervisor that gives static and raw-syscall programs (Go) governed host sockets, as the shim
 * does for dynamically linked ones (docs/design.md, "The supervisor").
 */
#ifndef SLIM_SUPERVISE_H
#define SLIM_SUPERVISE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <linux/seccomp.h>

#include "cidr.h"

/* ---- main.c: settings from the command line and the environment ---- */
struct sup_config {
	char sc_router[108];     /* the pod's router socket (SLIM_ROUTER_SOCKET) */
	struct cidr sc_overlay;  /* SLIM_OVERLAY_CIDR, default 10.244.0.0/16 */
	struct cidr sc_services; /* SLIM_SERVICE_CIDR, default 10.96.0.0/16 */
	bool sc_debug;           /* -d or SLIM_DEBUG: log every decision */
};
extern struct sup_config sup_config;
/* Logs to stderr when debugging; never to stdout (the app's). */
void sup_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- filter.c: the seccomp filter the app runs under ---- */
/* In the child, before exec: no_new_privs, the filter; returns the listener fd or -errno. */
int filter_install(void);

/* ---- call.c: one notified syscall and the answers the supervisor can give it ---- */
struct sup_call {
	struct seccomp_notif sn;
	int notify_fd; /* the seccomp listener */
	int pidfd;     /* the calling thread, -1 until call_pidfd() */
};
/* Answers val (error 0) or -errno in err; CONTINUE lets the kernel run the app's own call. */
int call_reply(struct sup_call *c, long long val, int err);
int call_continue(struct sup_call *c);
/* True while the app still waits for this answer (not interrupted, not dead). */
bool call_valid(struct sup_call *c);
/*
 * True when the calling thread has a signal pending that it does not block. A long wait (a
 * blocking connect or accept) then answers -ERESTARTSYS: on its way back the kernel delivers the
 * signal and restarts the call (SA_RESTART) or fails it with EINTR, as for its own waits.
 */
bool call_signal_pending(struct sup_call *c);
#define CALL_ERESTARTSYS 512 /* the kernel's restart-or-EINTR return (include/linux/errno.h) */
/* Copies len bytes at the app's addr into buf (then checks the call is still valid). 0/-errno. */
int call_read(struct sup_call *c, uint64_t addr, void *buf, size_t len);
int call_write(struct sup_call *c, uint64_t addr, const void *buf, size_t len);
/* A copy of the app's descriptor fd (same open file), or -errno. */
int call_getfd(struct sup_call *c, int fd);
/* Installs our srcfd in the app: at newfd (SETFD) or the lowest free number; with send, it is
 * also the call's answer. The app's fd number, or -errno. */
int call_addfd(struct sup_call *c, int srcfd, int newfd, bool cloexec, bool send);
/* The flags field of the app's descriptor fd (octal in /proc/TID/fdinfo/FD), or -errno. */
int call_fd_flags(struct sup_call *c, int fd);

/* ---- worker.c: threads that receive notifications and handle each to its end ---- */
/* Serves notify_fd for ever; blocking work (a blocking connect or accept) occupies one worker
 * while others are started to serve the rest. */
void worker_start(int notify_fd);
/* Starts fn(arg) on a detached thread of the supervisor's (workers, pool, sweep). 0/-errno. */
int worker_detach(void *(*fn)(void *), void *arg);

/* ---- fdspace.c: the supervisor's own descriptor numbers ---- */
/* Fills the low descriptor numbers with placeholders, so the supervisor's own descriptors are
 * never made there and an app's number can be borrowed (fdspace_borrow). */
void fdspace_init(void);
/* Runs fn(fd, arg) with our descriptor src also under the app's number appfd in our table (so
 * an epoll registration we make carries the app's number). fn's result, or -EBADF when appfd is
 * not a number we can borrow. */
int fdspace_borrow(int appfd, int src, int (*fn)(int fd, void *arg), void *arg);
/* Closes a descriptor we had before fdspace_init, at a low number: the number becomes a
 * placeholder. Closed plainly, it would be the lowest free number, where our next descriptor
 * lands and which an app's registration could then never borrow (its EPOLL_CTL_MOD after a
 * connect failed with ENOENT when its socket had that number). */
void fdspace_give_back(int fd);
/* Closes what our descriptor fd refers to while keeping the number taken (by /dev/null), so a
 * thread still using the number gets an error, never another descriptor made meanwhile. */
int fdspace_retire(int fd);

/* ---- link.c: the router, as the shim talks to it (one connection per worker thread) ---- */
/* Request/reply on this thread's connection, pass_fd attached; the reply's descriptors (at
 * most maxfds) in fds, *nfds of them. 0 or -errno (router unreachable or slow: fall back). */
int link_call(void *req, size_t len, int pass_fd, uint16_t rep_type, void *rep, size_t rep_len,
	      int *fds, unsigned maxfds, unsigned *nfds);

/* ---- pool.c: governed host sockets made by the router ahead of need ---- */
int pool_take(void);
void pool_put(int fd);

/* ---- epoll.c: the app's epoll instances ---- */
struct epoll_reg {
	int er_epfd;       /* the app's epoll descriptor */
	uint32_t er_events;
	uint64_t er_data;
};
#define EPOLL_MAX_REGS 8
void epoll_trap_create(struct sup_call *c);
/* The app's registrations of its descriptor appfd, whose file has inode ino. How many. */
int epoll_find(struct sup_call *c, int appfd, unsigned long ino, struct epoll_reg *regs, int max);
/* Adds our descriptor fd to the app's epoll instances as regs say; with borrow, under the app's
 * number appfd (a later EPOLL_CTL_DEL by the app finds it). How many were added. */
int epoll_add(struct sup_call *c, int fd, int appfd, const struct epoll_reg *regs, int n,
	      bool borrow);

/* ---- options.c: the socket options the app set ---- */
struct slim_sockopt;
/* The allowlisted options whose value on fd (of domain) differs from a fresh socket's, at most
 * max of them: how many, or -E2BIG. */
int options_changed(int fd, int domain, struct slim_sockopt *out, unsigned max);
/* Sets them on fd. 0 or -errno. */
int options_apply(int fd, const struct slim_sockopt *opts, unsigned n);

/* ---- sock.c: what a copy of the app's socket is ---- */
struct sock_info {
	int si_domain;          /* AF_INET, AF_INET6, ... */
	int si_type;            /* SOCK_STREAM, ... */
	int si_protocol;
	bool si_pod;            /* made in the pod's network namespace (not a host socket) */
	bool si_nonblock;
	unsigned long si_ino;   /* the socket's inode: names the file in epoll's fdinfo */
};
/* Fills *si from fd. 0 or -errno (not a socket). */
int sock_info(int fd, struct sock_info *si);

/* ---- connect.c ---- */
void connect_trap(struct sup_call *c);

/* ---- listen.c ---- */
void listen_trap(struct sup_call *c);
void listen_trap_accept(struct sup_call *c, bool accept4);
/* Starts the thread that lets go of the host side of listeners the app has closed. */
void listen_sweep_start(void);

#endif /* SLIM_SUPERVISE_H */
