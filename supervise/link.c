// SPDX-License-Identifier: MIT
/*
 * The router, asked as the shim asks it (common/proto.h): each worker thread has a connection of
 * its own, so request and reply need no lock. The router names the caller's pod by the kernel
 * (SO_PEERCRED: the supervisor runs in the pod's network namespace), exactly as for a shim.
 * Replies are awaited with a receive timeout: a router that does not answer means fallback.
 */
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "msg.h"
#include "supervise.h"

#define LINK_TIMEOUT_S 2 /* longer than the router's own 1 s bound on a remote resolution */
#define LINK_RETRY_S   1 /* after the router could not be reached, plain sockets this long */

static __thread int link_sock = -1;
static __thread uint32_t link_id;
static __thread time_t link_down_until;

static int link_open(void)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = LINK_TIMEOUT_S};
	int s;

	if (link_sock >= 0)
		return 0;
	if (link_down_until && time(NULL) < link_down_until)
		return -ECONNREFUSED;
	s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	memcpy(sun.sun_path, sup_config.sc_router, sizeof(sun.sun_path));
	if (setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    connect(s, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int err = -errno;

		close(s);
		link_down_until = time(NULL) + LINK_RETRY_S;
		sup_log("router %s unreachable (%s): plain sockets", sup_config.sc_router,
			strerror(-err));
		return err;
	}
	link_sock = s;
	link_down_until = 0;
	return 0;
}

int link_call(void *req, size_t len, int pass_fd, uint16_t rep_type, void *rep, size_t rep_len,
	      int *fds, unsigned maxfds, unsigned *nfds)
{
	struct slim_msg_hdr *h = req;
	char buf[256];
	int err;

	*nfds = 0;
	if ((err = link_open()) < 0)
		return err;
	h->id = ++link_id;
	h->len = (uint32_t)len;
	h->reserved = 0;
	err = slim_msg_send(link_sock, req, len, pass_fd);
	while (err == 0) {
		ssize_t n = slim_msg_recv_fds(link_sock, buf, sizeof(buf), fds, maxfds, nfds, 0);

		if (n <= 0) {
			err = n == 0 ? -ECONNRESET : (n == -EAGAIN ? -ETIMEDOUT : (int)n);
			break;
		}
		if (slim_msg_check_reply(buf, (size_t)n, rep_type, h->id) == 0 &&
		    (size_t)n == rep_len) {
			memcpy(rep, buf, rep_len);
			return 0;
		}
		/* A late answer to a request given up on: drop it (and what it carries). */
		while (*nfds > 0)
			close(fds[--*nfds]);
	}
	sup_log("router call failed (%s): plain sockets", strerror(-err));
	close(link_sock);
	link_sock = -1;
	link_down_until = time(NULL) + LINK_RETRY_S;
	return err;
}
