/* SPDX-License-Identifier: MIT */
/*
 * Sending, receiving and validating control-socket messages (proto.h). Used by the shim, the
 * router and slimctl; no allocation, so the shim may call it anywhere.
 */
#ifndef SLIM_MSG_H
#define SLIM_MSG_H

#include <stddef.h>
#include <sys/types.h>

#include "proto.h"

/*
 * Checks a received control-socket message of n bytes: header sane, hdr.len == n, size exact
 * for its type, option counts and options within the whitelist. Returns 0 or -EBADMSG.
 * Only types a router accepts from a client are valid here (LISTEN_REQ, POOL_REQ, ROUTE_REQ,
 * CTL_REQ); replies are checked by slim_msg_check_reply().
 */
int slim_msg_check_request(const void *buf, size_t n);

/* Checks a reply of n bytes against the type and id the requester expects. 0 or -EBADMSG. */
int slim_msg_check_reply(const void *buf, size_t n, uint16_t type, uint32_t id);

/* Checks a fabric message (RESOLVE_REQ/REP, INVALIDATE, POD_SYNC, AUTH_*) whose header is in
 * network order. */
int slim_msg_check_fabric(const void *buf, size_t n);

/* Byte size of a LISTEN_REQ carrying nopts options. */
size_t slim_listen_req_len(unsigned nopts);

/* Most descriptors one message carries (a POOL_REP's batch). */
#define SLIM_MSG_MAX_FDS SLIM_POOL_BATCH

/*
 * Sends one message on a SOCK_SEQPACKET socket, with pass_fd attached when >= 0 (or nfds
 * descriptors). MSG_NOSIGNAL: a dead peer is an error, never SIGPIPE. On a non-blocking socket
 * a full buffer is -EAGAIN. Returns 0 or -errno.
 */
int slim_msg_send(int sock, const void *msg, size_t len, int pass_fd);
int slim_msg_send_fds(int sock, const void *msg, size_t len, const int *fds, unsigned nfds);

/* As slim_msg_recv, keeping up to maxfds passed descriptors in fds (*nfds of them). */
ssize_t slim_msg_recv_fds(int sock, void *buf, size_t cap, int *fds, unsigned maxfds,
			  unsigned *nfds, int flags);

/*
 * Receives one message (up to cap bytes). A passed descriptor is stored in *fd_out (O_CLOEXEC),
 * -1 when none; any surplus descriptors are closed. Returns the byte count, 0 on EOF, or -errno
 * (-EMSGSIZE for a truncated message). flags are recvmsg flags (e.g. MSG_DONTWAIT).
 */
ssize_t slim_msg_recv(int sock, void *buf, size_t cap, int *fd_out, int flags);

#endif
