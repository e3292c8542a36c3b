// SPDX-License-Identifier: MIT
/*
 * A plain TCP app for the policy scenarios, run with or without the shim (it knows nothing of
 * slim):
 *
 *   policy_probe serve PORT
 *	listens on 0.0.0.0:PORT, prints "listening", echoes every connection; when a connection
 *	ends prints "closed peer=IP:PORT at=REALTIME_US how=eof|ERRNO".
 *   policy_probe connect IP PORT block|nonblock
 *	one connect; prints "connected" (after an echo round trip), or
 *	"refused how=immediate|inprogress errno=NAME ms=N" / "error errno=NAME ms=N".
 *	Exit 0 connected, 1 refused (ECONNREFUSED), 2 other error.
 *   policy_probe hold IP PORT
 *	connects, prints "held local=IP:PORT" after an echo round trip, then waits (no data) until
 *	the connection dies and prints "closed at=REALTIME_US how=eof|ERRNO" (exit 0); gives up
 *	after 60 s (exit 2).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define MAX_CONNS 256

static long long realtime_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static long long mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *errname(int e)
{
	switch (e) {
	case ECONNREFUSED:
		return "ECONNREFUSED";
	case ECONNRESET:
		return "ECONNRESET";
	case EPIPE:
		return "EPIPE";
	case ETIMEDOUT:
		return "ETIMEDOUT";
	case EHOSTUNREACH:
		return "EHOSTUNREACH";
	case ECONNABORTED:
		return "ECONNABORTED";
	case EINPROGRESS:
		return "EINPROGRESS";
	default:
		return strerrorname_np(e) ? strerrorname_np(e) : "?";
	}
}

static int serve(int port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	struct pollfd pfd[MAX_CONNS + 1];
	char peers[MAX_CONNS + 1][32];
	int lfd, one = 1, n = 1;

	lfd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    listen(lfd, 128) < 0) {
		printf("error errno=%s\n", errname(errno));
		return 2;
	}
	printf("listening\n");
	fflush(stdout);
	pfd[0] = (struct pollfd){.fd = lfd, .events = POLLIN};
	for (;;) {
		if (poll(pfd, (nfds_t)n, -1) < 0)
			continue;
		if ((pfd[0].revents & POLLIN) && n <= MAX_CONNS) {
			struct sockaddr_in peer;
			socklen_t len = sizeof(peer);
			int fd = accept(lfd, (struct sockaddr *)&peer, &len);

			if (fd >= 0) {
				char a[INET_ADDRSTRLEN];

				inet_ntop(AF_INET, &peer.sin_addr, a, sizeof(a));
				snprintf(peers[n], sizeof(peers[n]), "%s:%u", a,
					 ntohs(peer.sin_port));
				pfd[n++] = (struct pollfd){.fd = fd, .events = POLLIN};
			}
		}
		for (int i = 1; i < n; i++) {
			char buf[4096];
			ssize_t r;

			if (!pfd[i].revents)
				continue;
			r = recv(pfd[i].fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (r > 0) {
				send(pfd[i].fd, buf, (size_t)r, MSG_NOSIGNAL);
				continue;
			}
			if (r < 0 && errno == EAGAIN)
				continue;
			printf("closed peer=%s at=%lld how=%s\n", peers[i], realtime_us(),
			       r == 0 ? "eof" : errname(errno));
			fflush(stdout);
			close(pfd[i].fd);
			pfd[i] = pfd[n - 1];
			memcpy(peers[i], peers[n - 1], sizeof(peers[i]));
			n--;
			i--;
		}
	}
}

/* One echo round trip: proves the connection carries data. 0 or errno. */
static int echo_once(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	char c = 'x';

	if (send(fd, &c, 1, MSG_NOSIGNAL) != 1)
		return errno;
	if (poll(&p, 1, 5000) != 1)
		return ETIMEDOUT;
	if (recv(fd, &c, 1, 0) != 1)
		return errno ? errno : ECONNRESET;
	return 0;
}

static int do_connect(const char *ip, int port, bool nonblock, bool *immediate)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0), err = 0;
	socklen_t len = sizeof(err);

	inet_pton(AF_INET, ip, &sin.sin_addr);
	*immediate = true;
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0)
		goto connected;
	if (!nonblock || errno != EINPROGRESS)
		return -errno;
	*immediate = false;
	{
		struct pollfd p = {.fd = fd, .events = POLLOUT};

		if (poll(&p, 1, 10000) != 1)
			return -ETIMEDOUT;
	}
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
	if (err)
		return -err;
	fcntl(fd, F_SETFL, 0);
connected:
	err = echo_once(fd);
	if (err) {
		close(fd);
		return -err;
	}
	return fd;
}

int main(int argc, char **argv)
{
	bool immediate;
	long long t0;
	int fd;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && !strcmp(argv[1], "serve"))
		return serve(atoi(argv[2]));
	if (argc == 5 && !strcmp(argv[1], "connect")) {
		t0 = mono_ms();
		fd = do_connect(argv[2], atoi(argv[3]), !strcmp(argv[4], "nonblock"), &immediate);
		if (fd >= 0) {
			printf("connected\n");
			close(fd);
			return 0;
		}
		printf("%s how=%s errno=%s ms=%lld\n", fd == -ECONNREFUSED ? "refused" : "error",
		       immediate ? "immediate" : "inprogress", errname(-fd), mono_ms() - t0);
		return fd == -ECONNREFUSED ? 1 : 2;
	}
	if (argc == 4 && !strcmp(argv[1], "hold")) {
		struct sockaddr_in me;
		socklen_t len = sizeof(me);
		struct pollfd p;
		char a[INET_ADDRSTRLEN], c;
		ssize_t r;

		fd = do_connect(argv[2], atoi(argv[3]), false, &immediate);
		if (fd < 0) {
			printf("error errno=%s\n", errname(-fd));
			return 2;
		}
		getsockname(fd, (struct sockaddr *)&me, &len);
		inet_ntop(AF_INET, &me.sin_addr, a, sizeof(a));
		printf("held local=%s:%u\n", a, ntohs(me.sin_port));
		p = (struct pollfd){.fd = fd, .events = POLLIN | POLLRDHUP};
		if (poll(&p, 1, 60000) != 1) {
			printf("still open after 60 s\n");
			return 2;
		}
		r = recv(fd, &c, 1, MSG_DONTWAIT);
		printf("closed at=%lld how=%s\n", realtime_us(), r == 0 ? "eof" : errname(errno));
		return 0;
	}
	fprintf(stderr, "usage: policy_probe serve PORT | connect IP PORT block|nonblock | "
			"hold IP PORT\n");
	return 2;
}
