// SPDX-License-Identifier: MIT
/*
 * The app's reads. A blocking read of a socket on the same-host fast path can fail with EAGAIN:
 * the kernel's tcp_bpf_recvmsg_parser gives up when its wait ends with bytes still on the TCP
 * receive queue that the stream verdict program has not moved to the psock queue yet (bytes a
 * direction sent the TCP way, see docs/design.md "Flow control"). TCP without slim never does
 * that, and an app may take it for a fatal error. So a read that fails with EAGAIN although
 * the socket is blocking and has no receive timeout waits for input and reads again. With a
 * receive timeout it reads again only when the socket has something to report right away: the
 * same wait also ends, with EAGAIN, when the peer resets the connection, where TCP says
 * ECONNRESET. The check runs only after such a failure: a read that succeeds costs one
 * indirect call more.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "shim.h"

/*
 * After a read of fd (with recv flags) failed with EAGAIN: true when the kernel should have
 * waited (then we waited for input and the caller reads again), false when EAGAIN is the
 * answer the app asked for. errno is EAGAIN again on false.
 */
static bool io_wait_again(int fd, int flags)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	struct timeval tv;
	socklen_t len = sizeof(tv);
	int fl;

	if (flags & MSG_DONTWAIT)
		goto answer;
	fl = REAL(fcntl)(fd, F_GETFL);
	if (fl < 0 || (fl & O_NONBLOCK))
		goto answer;
	/* Fails on anything but a socket. */
	if (getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, &len) < 0)
		goto answer;
	if (tv.tv_sec || tv.tv_usec) {
		/*
		 * With a receive timeout EAGAIN is a real answer -- unless the socket has something
		 * to report: the wait also ends early when the peer resets (tcp_reset wakes it with
		 * nothing queued), and the app must then read ECONNRESET, not a timeout.
		 */
		if (REAL(poll)(&p, 1, 0) == 1 && (p.revents & (POLLIN | POLLERR | POLLHUP)))
			return true;
		goto answer;
	}
	/* EINTR: read again, and the kernel applies the app's signal semantics to that read. */
	REAL(poll)(&p, 1, -1);
	return true;
answer:
	errno = EAGAIN;
	return false;
}

#define READ_AGAIN(fd, flags, call)                                                       \
	do {                                                                              \
		ssize_t r;                                                                \
		while ((r = (call)) < 0 && errno == EAGAIN && io_wait_again(fd, flags)) \
			;                                                                 \
		return r;                                                                 \
	} while (0)

SHIM_EXPORT ssize_t read(int fd, void *buf, size_t n)
{
	READ_AGAIN(fd, 0, REAL(read)(fd, buf, n));
}

SHIM_EXPORT ssize_t readv(int fd, const struct iovec *iov, int iovcnt)
{
	READ_AGAIN(fd, 0, REAL(readv)(fd, iov, iovcnt));
}

SHIM_EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags)
{
	READ_AGAIN(fd, flags, REAL(recv)(fd, buf, n, flags));
}

SHIM_EXPORT ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *addr,
			     socklen_t *len)
{
	READ_AGAIN(fd, flags, REAL(recvfrom)(fd, buf, n, flags, addr, len));
}

/* Calls fn on every descriptor an SCM_RIGHTS message carries. */
static void io_each_passed(const struct msghdr *msg, void (*fn)(int fd))
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR((struct msghdr *)msg, c)) {
		size_t n;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			fn(fd);
		}
	}
}

SHIM_EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	ssize_t r;

	while ((r = REAL(recvmsg)(fd, msg, flags)) < 0 && errno == EAGAIN &&
	       io_wait_again(fd, flags))
		;
	/* Descriptors that came in have numbers that were free: whatever the shim recorded for
	 * those numbers is stale (as for socket() and accept()). */
	if (r >= 0 && msg && msg->msg_controllen)
		io_each_passed(msg, fdtab_release);
	return r;
}

/* A descriptor passed to another process may outlive the app's close (reset.c). */
SHIM_EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	if (msg && msg->msg_controllen)
		io_each_passed(msg, reset_passed);
	return REAL(sendmsg)(fd, msg, flags);
}

SHIM_EXPORT int sendmmsg(int fd, struct mmsghdr *vec, unsigned n, int flags)
{
	for (unsigned i = 0; vec && i < n; i++)
		if (vec[i].msg_hdr.msg_controllen)
			io_each_passed(&vec[i].msg_hdr, reset_passed);
	return REAL(sendmmsg)(fd, vec, n, flags);
}

/* _FORTIFY_SOURCE builds call these, which reach the kernel without passing read/recv. */
ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen);
ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags);
ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags,
		       struct sockaddr *addr, socklen_t *len);

SHIM_EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
	READ_AGAIN(fd, 0, REAL(__read_chk)(fd, buf, n, buflen));
}

SHIM_EXPORT ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags)
{
	READ_AGAIN(fd, flags, REAL(__recv_chk)(fd, buf, n, buflen, flags));
}

SHIM_EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags,
				   struct sockaddr *addr, socklen_t *len)
{
	READ_AGAIN(fd, flags, REAL(__recvfrom_chk)(fd, buf, n, buflen, flags, addr, len));
}
