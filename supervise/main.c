// SPDX-License-Identifier: MIT
/*
 * slim-supervise [-d] [-s ROUTER_SOCKET] -- CMD [ARGS...]: runs CMD under a seccomp filter whose
 * notifications this process answers, so a program the shim cannot reach (static, or making raw
 * syscalls: Go) gets governed host sockets too. Run it in the pod's network namespace, where the
 * router identifies it as the pod. Its exit status is CMD's.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "msg.h"
#include "supervise.h"

#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS /* Linux 6.6; not yet in every libc's headers */
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS    SECCOMP_IOW(4, __u64)
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif

struct sup_config sup_config;
static pid_t sup_child;

void sup_log(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n, saved = errno;

	if (!sup_config.sc_debug)
		return;
	n = snprintf(buf, sizeof(buf), "slim-supervise[%d]: ", (int)getpid());
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	if (write(STDERR_FILENO, buf, (size_t)n) < 0) {
		/* nowhere else to say it */
	}
	errno = saved;
}

static void usage(void)
{
	fprintf(stderr, "usage: slim-supervise [-d] [-s ROUTER_SOCKET] -- CMD [ARGS...]\n"
			"  runs CMD with its connect/listen/accept served by slim (static binaries, Go)\n"
			"  -d  log every decision to stderr (also SLIM_DEBUG=1)\n"
			"  -s  the router's socket (default $SLIM_ROUTER_SOCKET or %s)\n",
		SLIM_DEFAULT_SOCKET);
	exit(2);
}

static void config_cidr(const char *env, const char *def, struct cidr *out)
{
	const char *v = getenv(env);

	if (cidr_parse(v && *v ? v : def, out) < 0) {
		fprintf(stderr, "slim-supervise: bad %s '%s'\n", env, v);
		exit(2);
	}
}

static void config_parse(int argc, char **argv)
{
	const char *sock = getenv("SLIM_ROUTER_SOCKET");
	int opt;

	sup_config.sc_debug = getenv("SLIM_DEBUG") && *getenv("SLIM_DEBUG");
	while ((opt = getopt(argc, argv, "+ds:h")) != -1) {
		switch (opt) {
		case 'd':
			sup_config.sc_debug = true;
			break;
		case 's':
			sock = optarg;
			break;
		default:
			usage();
		}
	}
	if (optind >= argc)
		usage();
	if (!sock || !*sock)
		sock = SLIM_DEFAULT_SOCKET;
	if (strlen(sock) >= sizeof(sup_config.sc_router)) {
		fprintf(stderr, "slim-supervise: router socket path too long\n");
		exit(2);
	}
	strcpy(sup_config.sc_router, sock);
	config_cidr("SLIM_OVERLAY_CIDR", "10.244.0.0/16", &sup_config.sc_overlay);
	config_cidr("SLIM_SERVICE_CIDR", "10.96.0.0/16", &sup_config.sc_services);
}

/* The child: the filter, its listener to the parent, then CMD. Without a filter (seccomp
 * refused) CMD runs anyway, unsupervised: its connections take the overlay. */
static void child_run(int sock, char **cmd)
{
	int fd = filter_install(), status = fd < 0 ? fd : 0;

	if (slim_msg_send(sock, &status, sizeof(status), fd) < 0 && fd >= 0)
		_exit(127); /* the supervisor is gone: running filtered without it would fail calls */
	if (fd >= 0)
		close(fd);
	close(sock);
	execvp(cmd[0], cmd);
	fprintf(stderr, "slim-supervise: %s: %s\n", cmd[0], strerror(errno));
	_exit(127);
}

static volatile sig_atomic_t sup_child_done;

static void forward_signal(int sig)
{
	if (!sup_child_done) {
		kill(sup_child, sig);
		return;
	}
	/* CMD is gone, only processes it left behind remain: the signal is the supervisor's. */
	signal(sig, SIG_DFL);
	raise(sig);
}

int main(int argc, char **argv)
{
	int sp[2], status = 0, fd = -1;
	struct sigaction sa = {.sa_handler = forward_signal};
	ssize_t n;

	config_parse(argc, argv);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
		perror("slim-supervise: socketpair");
		return 1;
	}
	sup_child = fork();
	if (sup_child < 0) {
		perror("slim-supervise: fork");
		return 1;
	}
	if (sup_child == 0) {
		close(sp[0]);
		child_run(sp[1], argv + optind);
	}
	close(sp[1]);
	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGQUIT, &sa, NULL);
	fdspace_init();
	n = slim_msg_recv(sp[0], &status, sizeof(status), &fd, 0);
	fdspace_give_back(sp[0]);
	if (n == sizeof(status) && fd >= 0) {
		/* The app's thread waits while a worker answers: wake each other on one CPU rather
		 * than through the scheduler's load balancing (older kernels: not available). */
		if (ioctl(fd, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) < 0)
			sup_log("no synchronous wake-ups: %s", strerror(errno));
		worker_start(fd);
		listen_sweep_start();
		sup_log("supervising pid %d (%s)", (int)sup_child, argv[optind]);
	} else {
		fprintf(stderr, "slim-supervise: not supervised (%s): %s runs on the overlay\n",
			n == sizeof(status) && status < 0 ? strerror(-status) : "no filter",
			argv[optind]);
	}
	/*
	 * Serve until every process of CMD's tree is gone, not only CMD: a daemon it started is
	 * filtered too, and without the supervisor its connects would fail. As a subreaper, the
	 * supervisor inherits every orphan of the tree, so "no child left" means exactly that.
	 */
	for (;;) {
		int st;
		pid_t pid = waitpid(-1, &st, 0);

		if (pid == sup_child) {
			status = st;
			sup_child_done = 1;
		}
		if (pid < 0 && errno == ECHILD)
			break;
		if (pid < 0 && errno != EINTR) {
			perror("slim-supervise: waitpid");
			return 1;
		}
	}
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}
