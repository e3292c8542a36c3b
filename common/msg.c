// SPDX-License-Identifier: MIT
/* Control-socket message I/O with descriptor passing, and the size checks for every type. */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include "msg.h"
#include "sockopt.h"

size_t slim_listen_req_len(unsigned nopts)
{
	return offsetof(struct slim_listen_req, opts) + nopts * sizeof(struct slim_sockopt);
}

static int check_opts(const struct slim_sockopt *opts, unsigned nopts)
{
	for (unsigned i = 0; i < nopts; i++)
		if (!slim_sockopt_allowed(opts[i].level, opts[i].name, opts[i].len))
			return -EBADMSG;
	return 0;
}

static int check_header(const struct slim_msg_hdr *h, size_t n)
{
	if (n < sizeof(*h) || n > SLIM_MSG_MAX || h->len != n || h->reserved != 0)
		return -EBADMSG;
	return 0;
}

int slim_msg_check_request(const void *buf, size_t n)
{
	const struct slim_msg_hdr *h = buf;

	if (check_header(h, n) < 0)
		return -EBADMSG;
	switch (h->type) {
	case SLIM_MSG_LISTEN_REQ: {
		const struct slim_listen_req *r = buf;

		if (n < offsetof(struct slim_listen_req, opts) || r->nopts > SLIM_MAX_SOCKOPTS ||
		    n != slim_listen_req_len(r->nopts))
			return -EBADMSG;
		return check_opts(r->opts, r->nopts);
	}
	case SLIM_MSG_POOL_REQ: {
		const struct slim_pool_req *r = buf;

		if (n != sizeof(*r) || r->count < 1 || r->count > SLIM_POOL_BATCH)
			return -EBADMSG;
		return 0;
	}
	case SLIM_MSG_ROUTE_REQ: {
		const struct slim_route_req *r = buf;

		if (n != sizeof(*r) || (r->flags & ~SLIM_ROUTEF_RETRY))
			return -EBADMSG;
		return 0;
	}
	case SLIM_MSG_CTL_REQ:
		return n > sizeof(*h) ? 0 : -EBADMSG;
	}
	return -EBADMSG;
}

int slim_msg_check_reply(const void *buf, size_t n, uint16_t type, uint32_t id)
{
	const struct slim_msg_hdr *h = buf;

	if (check_header(h, n) < 0 || h->type != type || h->id != id)
		return -EBADMSG;
	if (type == SLIM_MSG_CTL_REP)
		return 0;
	return n == slim_msg_fixed_len(type) ? 0 : -EBADMSG;
}

int slim_msg_check_fabric(const void *buf, size_t n)
{
	const struct slim_msg_hdr *h = buf;
	uint16_t type;

	if (n < sizeof(*h) || ntohl(h->len) != n || h->reserved != 0)
		return -EBADMSG;
	type = ntohs(h->type);
	if (type != SLIM_MSG_RESOLVE_REQ && type != SLIM_MSG_RESOLVE_REP &&
	    type != SLIM_MSG_INVALIDATE && type != SLIM_MSG_POD_SYNC &&
	    type != SLIM_MSG_AUTH_CHALLENGE && type != SLIM_MSG_AUTH_RESPONSE &&
	    type != SLIM_MSG_AUTH_OK)
		return -EBADMSG;
	return n == slim_msg_fixed_len(type) ? 0 : -EBADMSG;
}

int slim_msg_send_fds(int sock, const void *msg, size_t len, const int *fds, unsigned nfds)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(SLIM_MSG_MAX_FDS * sizeof(int))];
	} control;
	struct iovec iov = {.iov_base = (void *)msg, .iov_len = len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t n;

	if (nfds > SLIM_MSG_MAX_FDS)
		return -EINVAL;
	if (nfds) {
		struct cmsghdr *c;

		memset(&control, 0, sizeof(control));
		mh.msg_control = control.buf;
		mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
	}
	do
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EMSGSIZE;
}

int slim_msg_send(int sock, const void *msg, size_t len, int pass_fd)
{
	return slim_msg_send_fds(sock, msg, len, &pass_fd, pass_fd >= 0 ? 1 : 0);
}

ssize_t slim_msg_recv_fds(int sock, void *buf, size_t cap, int *fds, unsigned maxfds,
			  unsigned *nfds, int flags)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(SLIM_MSG_MAX_FDS * sizeof(int))];
	} control;
	struct iovec iov = {.iov_base = buf, .iov_len = cap};
	struct msghdr mh = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = control.buf,
		.msg_controllen = sizeof(control.buf),
	};
	ssize_t n;

	*nfds = 0;
	do
		n = recvmsg(sock, &mh, flags | MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t got = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

		for (size_t i = 0; i < got; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (*nfds < maxfds)
				fds[(*nfds)++] = fd;
			else
				close(fd); /* never leak what the caller did not ask for */
		}
	}
	if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		while (*nfds)
			close(fds[--*nfds]);
		return -EMSGSIZE;
	}
	return n;
}

ssize_t slim_msg_recv(int sock, void *buf, size_t cap, int *fd_out, int flags)
{
	unsigned nfds;
	ssize_t n = slim_msg_recv_fds(sock, buf, cap, fd_out, 1, &nfds, flags);

	if (n < 0 || !nfds)
		*fd_out = -1;
	return n;
}
