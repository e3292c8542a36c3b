// SPDX-License-Identifier: MIT
/*
 * Hitless upgrade (slimctl upgrade): the running router starts a new binary and hands it every
 * descriptor it serves on and everything it knows; the new one confirms, the old one exits.
 * No socket is closed and opened again, so no shim, peer or app notices more than a pause.
 *
 *   old (running)                               new (slimrouterd ... --takeover FD)
 *   fork+exec, OFFER {format, proto, ...}  -->
 *                                          <--  PREPARED (programs loaded, not attached),
 *                                               or REFUSE {why}
 *   stop reading requests; settle: every
 *   resolution answered, reply sent, document
 *   and tool run done (bounded)
 *   STATE (a memfd with the JSON) -->
 *   FDS (<= 250 descriptors each)... --> END
 *                                               parse, check; attach our programs in place
 *                                          <--  of the old ones (governor_commit): READY
 *   GO, exit (nothing torn down)           -->  take everything, serve
 *
 * Until GO the old router can always go back to serving (rollback): it still holds every
 * descriptor. A REFUSE, an EOF (the new one exited or crashed) or no READY in time: it kills the
 * new process, puts its own programs back into the pinned links and reads requests again.
 * The requests that arrived meanwhile waited in the sockets' queues, as they do during the
 * settle and the handover (docs/design.md, "Upgrade"; the state format is there too).
 */
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "log.h"
#include "router.h"

#define UPGRADE_FDS_PER_MSG 250  /* SCM_MAX_FD is 253 */
#define UPGRADE_MSG_MAX	    4096 /* the protocol's messages; the state itself is in a memfd */
#define UPGRADE_PREPARE_MS  6000 /* the new binary loads its BPF programs meanwhile */
#define UPGRADE_SETTLE_MS   1500
#define UPGRADE_READY_MS    3000
#define UPGRADE_STATE_MAX   (1u << 30)
/*
 * While the old router serves, the new one starts and loads its programs (~80 ms of CPU) as a
 * SCHED_IDLE task: it runs only on a core nobody else wants, so the apps and the old router keep
 * theirs (a nice 10 task of that size still stretched the slowest connects of two clients that
 * kept both cores busy from ~35 to ~100 ms here). It takes the old router's scheduling back once
 * loaded, before it says PREPARED, so it is never slow to wake during the pause itself.
 */
static void upgrade_sched_idle(void)
{
	struct sched_param sp = {0};

	sched_setscheduler(0, SCHED_IDLE, &sp);
}

/* The new router, loaded: the old router's scheduling back (its nice value is in the OFFER). */
static void upgrade_sched_restore(const json_t *offer)
{
	struct sched_param sp = {0};

	sched_setscheduler(0, SCHED_OTHER, &sp);
	setpriority(PRIO_PROCESS, 0, (int)json_integer_value(json_object_get(offer, "nice")));
}

/* ---- descriptors that travel with the state ---- */

int upgrade_fd_put(struct upgrade_fds *f, int fd)
{
	if (fd < 0)
		return -1;
	if (f->uf_n == f->uf_cap) {
		size_t cap = f->uf_cap ? f->uf_cap * 2 : 256;
		int *n = realloc(f->uf_fds, cap * sizeof(*n));

		if (!n)
			return -1;
		f->uf_fds = n;
		f->uf_cap = cap;
	}
	f->uf_fds[f->uf_n] = fd;
	return (int)f->uf_n++;
}

int upgrade_fd_take(struct upgrade_fds *f, const json_t *idx)
{
	json_int_t i;
	int fd;

	if (!json_is_integer(idx))
		return -1;
	i = json_integer_value(idx);
	if (i < 0 || (size_t)i >= f->uf_n)
		return -1;
	fd = f->uf_fds[i];
	f->uf_fds[i] = -1; /* taken: never twice */
	return fd;
}

int upgrade_fd_use(struct upgrade_fds *f, const json_t *idx, int (*use)(int fd))
{
	int fd = upgrade_fd_take(f, idx), ret;

	if (fd < 0)
		return -EBADF;
	ret = use(fd);
	if (ret < 0)
		close(fd);
	return ret;
}

/* Received descriptors nobody took (the receiving side), and the list itself. */
static void upgrade_fds_free(struct upgrade_fds *f, bool close_them)
{
	for (size_t i = 0; close_them && i < f->uf_n; i++)
		if (f->uf_fds[i] >= 0)
			close(f->uf_fds[i]);
	free(f->uf_fds);
	memset(f, 0, sizeof(*f));
}

/* ---- the protocol's messages: a JSON object, descriptors attached ---- */

static int upgrade_send(int sock, json_t *msg, const int *fds, unsigned nfds)
{
	char cbuf[CMSG_SPACE(sizeof(int) * UPGRADE_FDS_PER_MSG)] = {0};
	char *text = json_dumps(msg, JSON_COMPACT);
	struct iovec iov;
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t n;

	json_decref(msg);
	if (!text)
		return -ENOMEM;
	iov.iov_base = text;
	iov.iov_len = strlen(text);
	if (nfds) {
		struct cmsghdr *cm;

		mh.msg_control = cbuf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}
	do
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	free(text);
	return n < 0 ? -errno : 0;
}

/*
 * The next message within timeout_ms (-1: no limit): the object, its descriptors appended to f
 * (when f is not NULL; else closed). NULL with *err: -ETIMEDOUT, -EPIPE (the other side is
 * gone), -EBADMSG.
 */
static json_t *upgrade_recv(int sock, int timeout_ms, struct upgrade_fds *f, int *err)
{
	char cbuf[CMSG_SPACE(sizeof(int) * UPGRADE_FDS_PER_MSG)];
	char buf[UPGRADE_MSG_MAX + 1];
	struct iovec iov = {buf, UPGRADE_MSG_MAX};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf)};
	struct pollfd pfd = {.fd = sock, .events = POLLIN};
	struct cmsghdr *cm;
	json_t *msg;
	ssize_t n;
	int r;

	do
		r = poll(&pfd, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r == 0) {
		*err = -ETIMEDOUT;
		return NULL;
	}
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n <= 0) {
		/* A closed socket with our message unread in it reports a reset. */
		*err = n == 0 || errno == ECONNRESET ? -EPIPE : -errno;
		return NULL;
	}
	for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		int *fds = (int *)(void *)CMSG_DATA(cm);

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; i < k; i++)
			if (!f || upgrade_fd_put(f, fds[i]) < 0)
				close(fds[i]);
	}
	*err = -EBADMSG;
	if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
		return NULL;
	buf[n] = '\0';
	msg = json_loads(buf, 0, NULL);
	if (!json_is_object(msg) || !json_is_string(json_object_get(msg, "msg"))) {
		json_decref(msg);
		return NULL;
	}
	*err = 0;
	return msg;
}

static bool upgrade_is(const json_t *msg, const char *what)
{
	return !strcmp(json_string_value(json_object_get(msg, "msg")), what);
}

static uint64_t upgrade_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- the state ---- */

struct upgrade_pod_arg {
	json_t *list;
	struct upgrade_fds *fds;
};

static void upgrade_add_pod(const struct pod *p, void *arg)
{
	struct upgrade_pod_arg *a = arg;
	json_t *tmp = json_array(), *o;

	/* The state file's record of a pod, and what only a running router has: its netns. */
	state_add_pod_json(p, tmp);
	o = json_incref(json_array_get(tmp, 0));
	json_decref(tmp);
	if (!o)
		return;
	json_object_set_new(o, "netns_fd", json_integer(upgrade_fd_put(a->fds, p->p_netns_fd)));
	json_object_set_new(o, "added", json_integer((json_int_t)p->p_added));
	json_array_append_new(a->list, o);
}

/* Everything the old router knew, the descriptors it serves on in fds (docs/design.md). */
static json_t *upgrade_state(struct upgrade_fds *fds, const struct client *requester,
			     int *requester_index)
{
	struct upgrade_pod_arg pa = {json_array(), fds};
	json_t *listeners = json_array(), *directory = json_array(), *policy, *doc;
	const struct dir_pod *d = NULL;
	size_t b = 0;

	pod_foreach(upgrade_add_pod, &pa);
	listener_foreach(state_add_listener_json, listeners);
	while ((d = directory_iter(&b, d)))
		if (!d->dp_local)
			json_array_append_new(directory,
					      json_pack("{s:s, s:I, s:s, s:O}", "node",
							d->dp_nodename, "ip", (json_int_t)d->dp_ip,
							"name", d->dp_name, "labels", d->dp_labels));
	policy = policy_current() ? policy_json() : json_null();
	doc = json_pack("{s:i, s:i, s:s, s:I, s:{s:I, s:I, s:I}, s:o, s:o, s:o, s:o, s:o, s:o, "
			"s:o, s:o}",
			"format", UPGRADE_FORMAT, "proto", SLIM_PROTO_VERSION, "node",
			router.r_node_name, "started", (json_int_t)router.r_started, "counters",
			"connect", (json_int_t)router.r_nconnect, "fallback",
			(json_int_t)router.r_nfallback, "listen", (json_int_t)router.r_nlisten,
			"pods", pa.list, "listeners", listeners, "directory", directory, "policy",
			policy, "services", service_export(), "qos", qos_export(), "clients",
			client_export(fds, requester, requester_index), "peers", peer_export(fds));
	if (doc) {
		json_object_set_new(doc, "metrics", json_integer(upgrade_fd_put(fds,
										metrics_listen_fd())));
		json_object_set_new(doc, "fastpath_maps", fastpath_export(fds));
	}
	return doc;
}

/* ---- the old router's side ---- */

enum upgrade_phase { UPGRADE_IDLE, UPGRADE_PREPARING, UPGRADE_SETTLING };

static struct {
	enum upgrade_phase phase;
	int sock;
	pid_t pid;
	struct client *requester;
	uint32_t id;
	char binary[4096];
	uint64_t start_us, settle_start_ms, pause_us;
	long long timer;
} up = {.sock = -1, .timer = -1};

bool upgrade_in_progress(void)
{
	return up.phase != UPGRADE_IDLE;
}

void upgrade_client_gone(struct client *c)
{
	if (up.requester == c)
		up.requester = NULL;
}

/* Waits (bounded) for the new process to be gone; kills it first when kill_it. */
static int upgrade_reap(bool kill_it)
{
	int status = 0;

	if (up.pid <= 0)
		return 0;
	if (kill_it)
		kill(up.pid, SIGKILL);
	for (int i = 0; i < 1000; i++) {
		pid_t r = waitpid(up.pid, &status, WNOHANG);

		if (r == up.pid || (r < 0 && errno != EINTR))
			break;
		if (i == 200)
			kill(up.pid, SIGKILL); /* it had 200 ms to exit on its own */
		usleep(1000);
	}
	up.pid = 0;
	return status;
}

/* "exited with status 1", "was killed by signal 9", for the process upgrade_reap waited for. */
static const char *upgrade_status_str(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "was killed by signal %d", WTERMSIG(status));
	else
		snprintf(buf, len, "is gone");
	return buf;
}

static void upgrade_answer(json_t *doc)
{
	if (up.requester)
		control_answer(up.requester, up.id, doc);
	json_decref(doc);
	up.requester = NULL;
}

/* Back to serving, having handed nothing over; why: one line for the log and the requester. */
static void upgrade_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void upgrade_fail(const char *fmt, ...)
{
	char why[512];
	va_list ap;
	int ret;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	upgrade_reap(true);
	/* The new router may have attached its programs already (the pinned links): ours back. */
	ret = governor_relink();
	if (up.timer >= 0)
		event_timer_del(router.r_loop, up.timer);
	up.timer = -1;
	if (up.sock >= 0) {
		event_del(router.r_loop, up.sock);
		close(up.sock);
	}
	up.sock = -1;
	client_pause(false);
	up.phase = UPGRADE_IDLE;
	log_warnx("upgrade to %s failed, this router keeps serving: %s%s", up.binary, why,
		  ret < 0 ? " (and our programs could not be put back: restart this router)" : "");
	upgrade_answer(json_pack("{s:b, s:s}", "ok", 0, "error", why));
}

/* Sends the state and every descriptor, then waits for READY (blocking: this is the pause the
 * apps see). Returns only when the handover failed. */
static void upgrade_hand_over(void)
{
	struct upgrade_fds fds = {0};
	int requester = -1, memfd, err;
	char *text;
	size_t len, off = 0, nfds;
	json_t *state, *msg;
	uint64_t t0 = upgrade_now_us();

	state = upgrade_state(&fds, up.requester, &requester);
	/* CLOCK_MONOTONIC is the machine's: the new router tells how long requests waited. */
	if (state)
		json_object_set_new(state, "requester",
				    json_pack("{s:i, s:I, s:I}", "client", requester, "id",
					      (json_int_t)up.id, "paused_us",
					      (json_int_t)up.pause_us));
	text = state ? json_dumps(state, JSON_COMPACT) : NULL;
	json_decref(state);
	if (!text) {
		upgrade_fds_free(&fds, false);
		upgrade_fail("out of memory writing the state");
		return;
	}
	len = strlen(text);
	memfd = memfd_create("slim-upgrade-state", MFD_CLOEXEC);
	while (memfd >= 0 && off < len) {
		ssize_t n = write(memfd, text + off, len - off);

		if (n <= 0) {
			close(memfd);
			memfd = -1;
			break;
		}
		off += (size_t)n;
	}
	free(text);
	if (memfd < 0) {
		upgrade_fds_free(&fds, false);
		upgrade_fail("memfd for the state: %s", strerror(errno));
		return;
	}
	err = upgrade_send(up.sock,
			   json_pack("{s:s, s:I, s:I}", "msg", "state", "bytes", (json_int_t)len,
				     "fds", (json_int_t)fds.uf_n),
			   &memfd, 1);
	close(memfd);
	for (size_t i = 0; !err && i < fds.uf_n; i += UPGRADE_FDS_PER_MSG) {
		unsigned n = fds.uf_n - i < UPGRADE_FDS_PER_MSG ? (unsigned)(fds.uf_n - i)
								: UPGRADE_FDS_PER_MSG;

		err = upgrade_send(up.sock, json_pack("{s:s, s:I}", "msg", "fds", "from",
						      (json_int_t)i),
				   fds.uf_fds + i, n);
	}
	if (!err)
		err = upgrade_send(up.sock, json_pack("{s:s}", "msg", "end"), NULL, 0);
	nfds = fds.uf_n;
	upgrade_fds_free(&fds, false); /* ours: we keep serving on them until GO */
	if (err) {
		upgrade_fail("sending the state: %s", strerror(-err));
		return;
	}
	msg = upgrade_recv(up.sock, UPGRADE_READY_MS, NULL, &err);
	if (!msg) {
		char st[64];

		if (err == -EPIPE)
			upgrade_fail("the new router %s during the handover",
				     upgrade_status_str(upgrade_reap(false), st, sizeof(st)));
		else
			upgrade_fail("%s", err == -ETIMEDOUT ? "the new router was not ready within 3 s"
							     : "the new router sent a malformed message");
		return;
	}
	if (!upgrade_is(msg, "ready")) {
		const char *why = json_string_value(json_object_get(msg, "why"));

		upgrade_fail("the new router refused the state: %s", why ? why : "no reason");
		json_decref(msg);
		return;
	}
	json_decref(msg);
	err = upgrade_send(up.sock, json_pack("{s:s}", "msg", "go"), NULL, 0);
	if (err) {
		upgrade_fail("sending GO: %s", strerror(-err));
		return;
	}
	/* The new router serves from here: nothing of ours may touch the shared state again
	 * (no table removed, no cgroup left, no socket unlinked). */
	log_info("upgrade: handed over to pid %d (%s): %zu descriptors, %zu bytes of state in "
		 "%llu us, %llu us after requests stopped being read",
		 (int)up.pid, up.binary, nfds, len, (unsigned long long)(upgrade_now_us() - t0),
		 (unsigned long long)(upgrade_now_us() - up.pause_us));
	_exit(0);
}

static bool upgrade_settled(void)
{
	return resolve_inflight_count() == 0 && client_settled(false) && control_idle() &&
	       spawn_idle() && service_idle() && qos_idle();
}

static long upgrade_settle_timer(struct event_loop *loop, void *arg)
{
	uint64_t waited = event_now_ms() - up.settle_start_ms;

	if (up.phase != UPGRADE_SETTLING)
		return EVENT_TIMER_STOP;
	/* A shim that does not read its replies does not hold the upgrade up for long. */
	if (waited >= UPGRADE_SETTLE_MS / 2)
		client_settled(true);
	if (upgrade_settled()) {
		up.timer = -1;
		upgrade_hand_over(); /* returns only when it failed */
		return EVENT_TIMER_STOP;
	}
	if (waited >= UPGRADE_SETTLE_MS) {
		up.timer = -1;
		upgrade_fail("still busy after %d ms (resolutions %zu, documents or tool runs in "
			     "progress: %s)",
			     UPGRADE_SETTLE_MS, resolve_inflight_count(),
			     control_idle() && spawn_idle() && service_idle() && qos_idle() ? "no"
												: "yes");
		return EVENT_TIMER_STOP;
	}
	return 1;
}

static void upgrade_event(struct event_loop *loop, int fd, uint32_t events, void *arg)
{
	json_t *msg;
	int err;

	msg = upgrade_recv(fd, 0, NULL, &err);
	if (!msg) {
		char st[64];

		if (err == -ETIMEDOUT)
			return;
		if (err == -EPIPE)
			upgrade_fail("the new router %s before it was ready",
				     upgrade_status_str(upgrade_reap(false), st, sizeof(st)));
		else
			upgrade_fail("the new router sent a malformed message");
		return;
	}
	if (up.phase == UPGRADE_PREPARING && upgrade_is(msg, "prepared")) {
		json_decref(msg);
		if (up.timer >= 0)
			event_timer_del(router.r_loop, up.timer);
		up.phase = UPGRADE_SETTLING;
		up.settle_start_ms = event_now_ms();
		up.pause_us = upgrade_now_us();
		client_pause(true);
		up.timer = event_timer_add(router.r_loop, 0, upgrade_settle_timer, NULL);
		return;
	}
	{
		const char *why = json_string_value(json_object_get(msg, "why"));
		char copy[400];

		snprintf(copy, sizeof(copy), "%s", why ? why : "unexpected message");
		json_decref(msg);
		upgrade_fail("the new router refused: %s", copy);
	}
}

static long upgrade_prepare_timer(struct event_loop *loop, void *arg)
{
	up.timer = -1;
	upgrade_fail("the new router did not load within %d s", UPGRADE_PREPARE_MS / 1000);
	return EVENT_TIMER_STOP;
}

/* Our own arguments without an earlier --takeover, then --takeover FD. */
static char **upgrade_argv(const char *binary, int fd)
{
	size_t n = 0, k = 0;
	char **argv, num[16];

	while (router.r_argv[n])
		n++;
	argv = calloc(n + 3, sizeof(*argv));
	if (!argv)
		return NULL;
	argv[k++] = (char *)binary;
	for (size_t i = 1; i < n; i++) {
		if (!strcmp(router.r_argv[i], "--takeover")) {
			i++;
			continue;
		}
		if (!strncmp(router.r_argv[i], "--takeover=", 11))
			continue;
		argv[k++] = router.r_argv[i];
	}
	snprintf(num, sizeof(num), "%d", fd);
	argv[k++] = strdup("--takeover");
	argv[k++] = strdup(num);
	return argv;
}

json_t *upgrade_begin(struct client *c, uint32_t id, const char *binary)
{
	int sv[2], err;
	sigset_t none;
	char **argv;
	pid_t pid;

	if (up.phase != UPGRADE_IDLE)
		return json_pack("{s:b, s:s}", "ok", 0, "error", "an upgrade is in progress");
	if (!binary)
		binary = router.r_exe;
	if (!binary || access(binary, X_OK) < 0) {
		char why[4200];

		snprintf(why, sizeof(why), "%s: not an executable file",
			 binary ? binary : "our own binary");
		return json_pack("{s:b, s:s}", "ok", 0, "error", why);
	}
	if (governor_enabled() && !router.r_bpf_dir)
		return json_pack("{s:b, s:s}", "ok", 0, "error",
				 "an upgrade needs --bpf-dir: programs that are not pinned would "
				 "detach with this process");
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return json_pack("{s:b, s:s}", "ok", 0, "error", strerror(errno));
	argv = upgrade_argv(binary, sv[1]);
	if (!argv) {
		close(sv[0]);
		close(sv[1]);
		return json_pack("{s:b, s:s}", "ok", 0, "error", "out of memory");
	}
	pid = fork();
	if (pid == 0) {
		/* The child: only the handover socket crosses exec (everything else is CLOEXEC),
		 * and it starts with no signal blocked (we block those our signalfd reads). */
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		upgrade_sched_idle();
		fcntl(sv[1], F_SETFD, 0);
		execv(binary, argv);
		_exit(127);
	}
	err = errno;
	for (size_t i = 0; argv[i]; i++)
		if (!strcmp(argv[i], "--takeover")) {
			free(argv[i]);
			free(argv[i + 1]);
			break;
		}
	free(argv);
	close(sv[1]);
	if (pid < 0) {
		close(sv[0]);
		return json_pack("{s:b, s:s}", "ok", 0, "error", strerror(err));
	}
	snprintf(up.binary, sizeof(up.binary), "%s", binary);
	up.sock = sv[0];
	up.pid = pid;
	up.requester = c;
	up.id = id;
	up.start_us = upgrade_now_us();
	up.phase = UPGRADE_PREPARING;
	log_info("upgrade: started %s as pid %d", binary, (int)pid);
	err = upgrade_send(up.sock,
			   json_pack("{s:s, s:i, s:i, s:s, s:i, s:o, s:s, s:i}", "msg", "offer",
				     "format", UPGRADE_FORMAT, "proto", SLIM_PROTO_VERSION, "cgroup",
				     router.r_cgroup_name ? router.r_cgroup_name : "", "pid",
				     (int)getpid(), "admin", client_admin_export(), "node",
				     router.r_node_name, "nice", getpriority(PRIO_PROCESS, 0)),
			   NULL, 0);
	if (err || event_add(router.r_loop, up.sock, EVENT_READ, upgrade_event, NULL) < 0) {
		upgrade_fail("cannot talk to the new router: %s", strerror(err ? -err : ENOMEM));
		return NULL;
	}
	up.timer = event_timer_add(router.r_loop, UPGRADE_PREPARE_MS, upgrade_prepare_timer, NULL);
	return NULL; /* answered when it is done */
}

/* ---- the new router's side ---- */

static struct {
	int sock;
	json_t *offer;
} take = {.sock = -1};

/* Says why we cannot take over (the old router keeps serving) and exits: nothing of ours was
 * put in force, nothing is torn down. */
static void upgrade_refuse(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void upgrade_refuse(const char *fmt, ...)
{
	char why[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	log_warnx("takeover refused: %s", why);
	if (take.sock >= 0)
		upgrade_send(take.sock, json_pack("{s:s, s:s}", "msg", "refuse", "why", why), NULL,
			     0);
	_exit(1);
}

/*
 * Fault injection for the tests of the rollback (tests/integration/router_upgrade.sh):
 * SLIM_UPGRADE_FAULT=crash|hang makes the new router abort, or stop answering, at the worst
 * moment: its programs attached, the old router waiting for READY.
 */
static void upgrade_fault(const char *crash, const char *hang)
{
	const char *f = getenv("SLIM_UPGRADE_FAULT");

	if (f && !strcmp(f, crash)) {
		log_warnx("takeover: SLIM_UPGRADE_FAULT=%s", f);
		abort();
	}
	if (f && !strcmp(f, hang)) {
		log_warnx("takeover: SLIM_UPGRADE_FAULT=%s", f);
		for (;;)
			pause();
	}
}

int upgrade_takeover_offer(int sock, const char **cgroup)
{
	json_t *msg;
	int err, fmt, proto, reads = UPGRADE_FORMAT;

	take.sock = sock;
	msg = upgrade_recv(sock, 10000, NULL, &err);
	if (!msg || !upgrade_is(msg, "offer"))
		upgrade_refuse("no offer from the running router (%s)",
			       msg ? "unexpected message" : strerror(-err));
	fmt = (int)json_integer_value(json_object_get(msg, "format"));
	proto = (int)json_integer_value(json_object_get(msg, "proto"));
	/* SLIM_UPGRADE_FAULT=old-format: as a binary that reads only an older format would. */
	if (getenv("SLIM_UPGRADE_FAULT") && !strcmp(getenv("SLIM_UPGRADE_FAULT"), "old-format"))
		reads = UPGRADE_FORMAT - 1;
	if (fmt < 1 || fmt > reads)
		upgrade_refuse("state format %d is not one this binary reads (1-%d)", fmt, reads);
	/* The shims and peers keep the connections they have: we must speak their protocol. */
	if (proto != SLIM_PROTO_VERSION)
		upgrade_refuse("the running router speaks protocol %d, this binary %d", proto,
			       SLIM_PROTO_VERSION);
	if (strcmp(json_string_value(json_object_get(msg, "node")) ?: "", router.r_node_name))
		upgrade_refuse("the running router is node %s, this one would be %s",
			       json_string_value(json_object_get(msg, "node")) ?: "?",
			       router.r_node_name);
	if (client_admin_adopt(json_object_get(msg, "admin")) < 0)
		upgrade_refuse("the offer has no administrator namespaces");
	take.offer = msg;
	*cgroup = json_string_value(json_object_get(msg, "cgroup"));
	if (*cgroup && !**cgroup)
		*cgroup = NULL;
	log_info("taking over from pid %d (state format %d, protocol %d)",
		 (int)json_integer_value(json_object_get(msg, "pid")), fmt, proto);
	return 0;
}

/* Reads STATE, FDS..., END: the state document, every descriptor in fds. */
static json_t *upgrade_receive_state(struct upgrade_fds *fds)
{
	struct upgrade_fds memfd = {0};
	json_t *msg, *state;
	json_error_t jerr;
	size_t bytes, want;
	char *text;
	int err;

	msg = upgrade_recv(take.sock, UPGRADE_PREPARE_MS + UPGRADE_SETTLE_MS, &memfd, &err);
	if (!msg || !upgrade_is(msg, "state") || memfd.uf_n != 1)
		upgrade_refuse("no state from the running router (%s)",
			       msg ? "unexpected message" : strerror(-err));
	bytes = (size_t)json_integer_value(json_object_get(msg, "bytes"));
	want = (size_t)json_integer_value(json_object_get(msg, "fds"));
	json_decref(msg);
	if (!bytes || bytes > UPGRADE_STATE_MAX)
		upgrade_refuse("state of %zu bytes", bytes);
	text = mmap(NULL, bytes, PROT_READ, MAP_PRIVATE, memfd.uf_fds[0], 0);
	upgrade_fds_free(&memfd, true);
	if (text == MAP_FAILED)
		upgrade_refuse("cannot map the state: %s", strerror(errno));
	state = json_loadb(text, bytes, JSON_REJECT_DUPLICATES, &jerr);
	munmap(text, bytes);
	if (!json_is_object(state))
		upgrade_refuse("the state is not a JSON object: %s (line %d)", jerr.text, jerr.line);
	for (;;) {
		size_t before = fds->uf_n;

		msg = upgrade_recv(take.sock, UPGRADE_READY_MS, fds, &err);
		if (!msg)
			upgrade_refuse("the descriptors did not all come (%s)", strerror(-err));
		if (upgrade_is(msg, "end"))
			break;
		/* In order, none lost: the state names them by their place in the sequence. */
		if (!upgrade_is(msg, "fds") ||
		    json_integer_value(json_object_get(msg, "from")) != (json_int_t)before)
			upgrade_refuse("unexpected message among the descriptors");
		json_decref(msg);
	}
	json_decref(msg);
	if (fds->uf_n != want)
		upgrade_refuse("%zu descriptors came, the state names %zu", fds->uf_n, want);
	return state;
}

static int upgrade_check_state(json_t *s, char *err, size_t errlen)
{
	static const char *const arrays[] = {"pods", "listeners", "directory", NULL};
	json_int_t fmt = json_integer_value(json_object_get(s, "format"));

	if (fmt < 1 || fmt > UPGRADE_FORMAT) {
		snprintf(err, errlen, "state format %lld is not one this binary reads (1-%d)",
			 (long long)fmt, UPGRADE_FORMAT);
		return -EINVAL;
	}
	for (int i = 0; arrays[i]; i++)
		if (!json_is_array(json_object_get(s, arrays[i]))) {
			snprintf(err, errlen, "state: \"%s\" is not an array", arrays[i]);
			return -EINVAL;
		}
	if (!json_is_object(json_object_get(s, "clients")) ||
	    !json_is_object(json_object_get(s, "peers"))) {
		snprintf(err, errlen, "state: no \"clients\" or \"peers\"");
		return -EINVAL;
	}
	return 0;
}

static void upgrade_adopt_pods(json_t *state, struct upgrade_fds *fds)
{
	json_t *o;
	size_t i;

	json_array_foreach(json_object_get(state, "pods"), i, o) {
		const char *name = json_string_value(json_object_get(o, "name"));
		const char *netns = json_string_value(json_object_get(o, "netns"));
		const char *ip = json_string_value(json_object_get(o, "ip"));
		json_t *labels = json_object_get(o, "labels");
		int fd = upgrade_fd_take(fds, json_object_get(o, "netns_fd"));
		struct in_addr a;
		struct pod *p;
		char err[256];

		if (!name || !netns || !ip || inet_pton(AF_INET, ip, &a) != 1 || fd < 0) {
			log_warnx("takeover: pod %zu of the state is malformed: not taken", i);
		} else if (pod_add(netns, fd, a.s_addr, name, labels, &p, err, sizeof(err)) < 0) {
			log_warnx("takeover: pod %s: %s", name, err);
		} else {
			p->p_added = (time_t)json_integer_value(json_object_get(o, "added"));
			/* Other nodes know it already: the directory only, no announcement. */
			directory_put(router.r_node_name, true, p->p_ip, p->p_name, p->p_labels);
		}
		if (fd >= 0)
			close(fd);
	}
}

static void upgrade_adopt(json_t *state, struct upgrade_fds *fds, const char *state_file)
{
	json_t *o, *counters = json_object_get(state, "counters");
	struct client *requester = NULL;
	char err[512];
	size_t i;
	int ret;

	router.r_started = (time_t)json_integer_value(json_object_get(state, "started"));
	router.r_nconnect = (uint64_t)json_integer_value(json_object_get(counters, "connect"));
	router.r_nfallback = (uint64_t)json_integer_value(json_object_get(counters, "fallback"));
	router.r_nlisten = (uint64_t)json_integer_value(json_object_get(counters, "listen"));
	upgrade_adopt_pods(state, fds);
	json_array_foreach(json_object_get(state, "listeners"), i, o)
		state_load_listener(o);
	json_array_foreach(json_object_get(state, "directory"), i, o) {
		const char *node = json_string_value(json_object_get(o, "node"));
		const char *name = json_string_value(json_object_get(o, "name"));

		if (node && name)
			directory_put(node, false,
				      (uint32_t)json_integer_value(json_object_get(o, "ip")), name,
				      json_object_get(o, "labels"));
	}
	o = json_object_get(state, "policy");
	if (json_is_object(o) && json_is_object(json_object_get(o, "document"))) {
		char *text = json_dumps(json_object_get(o, "document"), JSON_COMPACT);
		const char *origin = json_string_value(json_object_get(o, "origin"));
		struct policy_doc *pd;

		if (text && policy_parse(text, strlen(text), origin ? origin : "(upgrade)", &pd, err,
					 sizeof(err)) == 0)
			policy_install(pd);
		else
			log_warnx("takeover: the policy in force could not be taken: %s",
				  text ? err : "out of memory");
		free(text);
	}
	qos_adopt(json_object_get(state, "qos"));
	fastpath_adopt(json_object_get(state, "fastpath_maps"), fds);
	ret = client_adopt(json_object_get(state, "clients"), fds,
			   (int)json_integer_value(json_object_get(json_object_get(state,
										   "requester"),
								   "client")),
			   &requester);
	if (ret < 0)
		log_warnx("takeover: the control socket: %s", strerror(-ret));
	ret = peer_adopt(json_object_get(state, "peers"), fds);
	if (ret < 0)
		log_warnx("takeover: the fabric listener: %s", strerror(-ret));
	/* metrics_start_fd takes the descriptor whatever happens. */
	ret = upgrade_fd_take(fds, json_object_get(state, "metrics"));
	if (ret >= 0 && (ret = metrics_start_fd(ret)) < 0)
		log_warnx("takeover: metrics: %s", strerror(-ret));
	if (service_adopt(json_object_get(state, "services"), err, sizeof(err)) < 0)
		log_warnx("takeover: services: %s", err);
	if (state_file && state_adopt(state_file) == 0)
		state_save();
	/* The overlay's tables are as the old router left them; ours replace them, the same. */
	nft_schedule();
	if (requester) {
		json_t *rq = json_object_get(state, "requester");
		uint64_t paused = (uint64_t)json_integer_value(json_object_get(rq, "paused_us"));

		control_answer(requester, (uint32_t)json_integer_value(json_object_get(rq, "id")),
			       json_pack("{s:b, s:i, s:i, s:I, s:I, s:I}", "ok", 1, "old_pid",
					 (int)json_integer_value(json_object_get(take.offer, "pid")),
					 "pid", (int)getpid(), "pods", (json_int_t)pod_count(),
					 "clients", (json_int_t)client_count(), "paused_us",
					 (json_int_t)(upgrade_now_us() - paused)));
	}
}

void upgrade_takeover(const char *state_file)
{
	struct upgrade_fds fds = {0};
	char err[512];
	json_t *state, *msg;
	int ret;

	if (!governor_enabled() && router.r_bpf_dir)
		upgrade_refuse("governance could not be loaded (see the log above)");
	/* Before PREPARED: never slow to wake once the pause has begun. */
	upgrade_sched_restore(take.offer);
	ret = upgrade_send(take.sock, json_pack("{s:s, s:i}", "msg", "prepared", "pid",
						(int)getpid()),
			   NULL, 0);
	if (ret < 0)
		upgrade_refuse("the running router is gone: %s", strerror(-ret));
	state = upgrade_receive_state(&fds);
	if (upgrade_check_state(state, err, sizeof(err)) < 0)
		upgrade_refuse("%s", err);
	if (governor_enabled() && (ret = governor_commit()) < 0)
		upgrade_refuse("attaching our programs: %s", strerror(-ret));
	upgrade_fault("crash", "hang");
	ret = upgrade_send(take.sock, json_pack("{s:s}", "msg", "ready"), NULL, 0);
	if (ret < 0)
		upgrade_refuse("the running router is gone: %s", strerror(-ret));
	msg = upgrade_recv(take.sock, UPGRADE_READY_MS, NULL, &ret);
	if (!msg || !upgrade_is(msg, "go"))
		upgrade_refuse("no GO from the running router (%s): it serves on",
			       msg ? "unexpected message" : strerror(-ret));
	json_decref(msg);
	close(take.sock);
	take.sock = -1;
	upgrade_adopt(state, &fds, state_file);
	json_decref(state);
	json_decref(take.offer);
	take.offer = NULL;
	upgrade_fds_free(&fds, true);
	log_info("took over: %zu pods, %zu listeners, %zu clients, %zu services", pod_count(),
		 listener_count(), client_count(), service_count());
}
