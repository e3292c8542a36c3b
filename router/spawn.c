// SPDX-License-Identifier: MIT
/*
 * Running the system tools the router programs the kernel with (nft, tc): spawn, feed a script
 * on stdin, wait. Used only on control paths (policy apply, pod set), never per connect.
 * nft can take long (0.4 s for 10,000 rules), so the loop hands such runs to spawn_async(): a
 * worker thread spawns, feeds and waits, one run at a time and in order (the last script asked for
 * is the one in force), and the loop is told through an eventfd when each is done. tc runs the
 * same way (qos.c), some of its runs inside a pod's network namespace.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <sys/wait.h>

#include "log.h"
#include "router.h"

extern char **environ;

#define SPAWN_ARGS_MAX 8

struct spawn_job {
	TAILQ_ENTRY(spawn_job) sj_entry;
	const char *sj_argv[SPAWN_ARGS_MAX + 1];
	char *sj_strings; /* the arguments' text */
	char *sj_text;
	size_t sj_len;
	int sj_netns_fd; /* a dup of the namespace to run in, -1: ours */
	spawn_step_fn sj_step; /* writes the texts in the worker (instead of sj_text given) */
	void *sj_warg;
	void (*sj_wfree)(void *warg);
	int sj_ret;
	spawn_done_fn sj_done;
	void *sj_arg;
};

static TAILQ_HEAD(, spawn_job) spawn_jobs = TAILQ_HEAD_INITIALIZER(spawn_jobs);
static int spawn_efd = -1;
static pthread_t spawn_worker;
static bool spawn_busy;

int spawn_feed(const char *const argv[], int netns_fd, const char *text, size_t len)
{
	return spawn_feed_quiet(argv, netns_fd, text, len, false);
}

/*
 * posix_spawn, not fork: the child shares the router's memory until it execs (vfork), where a
 * fork copies the page tables of the whole router holding its mm's lock for writing, and the
 * loop's page faults and frees wait for it (a router with 10,000 services: tens of ms per fork).
 * The namespace is entered by this thread for the spawn (the child inherits it) and left after;
 * a network namespace is per thread.
 */
int spawn_feed_quiet(const char *const argv[], int netns_fd, const char *text, size_t len,
		     bool quiet)
{
	posix_spawn_file_actions_t fa;
	int pfd[2], status, ret, home = -1;
	size_t off = 0;
	pid_t pid;

	if (access(argv[0], X_OK) < 0)
		return -errno;
	if (netns_fd >= 0) {
		home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
		if (home < 0)
			return -errno;
	}
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		ret = -errno;
		goto out;
	}
	ret = -posix_spawn_file_actions_init(&fa);
	if (ret == 0) {
		ret = -posix_spawn_file_actions_adddup2(&fa, pfd[0], 0);
		if (ret == 0 && quiet)
			ret = -posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
		if (ret == 0 && netns_fd >= 0 && setns(netns_fd, CLONE_NEWNET) < 0)
			ret = -errno;
		if (ret == 0)
			ret = -posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
		if (netns_fd >= 0 && setns(home, CLONE_NEWNET) < 0) {
			/* This thread would run whatever comes next in a pod's namespace. */
			log_warnx("%s: cannot return to the router's network namespace: %s",
				  __func__, strerror(errno));
			abort();
		}
		posix_spawn_file_actions_destroy(&fa);
	}
	close(pfd[0]);
	if (ret < 0) {
		close(pfd[1]);
		goto out;
	}
	while (off < len) {
		ssize_t n = write(pfd[1], text + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	close(pfd[1]);
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			ret = -errno;
			goto out;
		}
	}
	ret = WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
out:
	if (home >= 0)
		close(home);
	return ret;
}

const char *spawn_find(const char *name)
{
	static const char *const dirs[] = {"/usr/sbin", "/sbin", "/usr/bin", "/bin", NULL};
	static char path[64];

	for (const char *const *d = dirs; *d; d++) {
		snprintf(path, sizeof(path), "%s/%s", *d, name);
		if (access(path, X_OK) == 0)
			return path;
	}
	return NULL;
}

/* The given text's run, or each run a step function writes, in order. */
static int spawn_job_exec(struct spawn_job *j)
{
	int ret = 0, step;

	if (!j->sj_step)
		return spawn_feed(j->sj_argv, j->sj_netns_fd, j->sj_text, j->sj_len);
	for (unsigned i = 0;; i++) {
		FILE *f = open_memstream(&j->sj_text, &j->sj_len);

		if (!f)
			return -ENOMEM;
		step = j->sj_step(f, i, ret, j->sj_warg);
		if (fclose(f) != 0 && step > 0)
			step = -ENOMEM;
		if (step <= 0)
			return step;
		ret = spawn_feed_quiet(j->sj_argv, j->sj_netns_fd, j->sj_text, j->sj_len,
				       step == SPAWN_STEP_RUN_QUIET);
		free(j->sj_text);
		j->sj_text = NULL;
	}
}

static void *spawn_job_run(void *arg)
{
	struct spawn_job *j = arg;
	uint64_t one = 1;

	j->sj_ret = spawn_job_exec(j);
	/* An eventfd write of 1 cannot fail short of overflow. */
	if (write(spawn_efd, &one, sizeof(one)) < 0)
		abort();
	return NULL;
}

static void spawn_job_next(void)
{
	struct spawn_job *j = TAILQ_FIRST(&spawn_jobs);
	uint64_t one = 1;
	int ret;

	if (spawn_busy || !j)
		return;
	spawn_busy = true;
	ret = pthread_create(&spawn_worker, NULL, spawn_job_run, j);
	if (ret == 0)
		return;
	/* No thread: run it here, the loop waits (correct, only slower). */
	log_warnx("%s: pthread_create: %s: running on the loop", __func__, strerror(ret));
	spawn_worker = pthread_self();
	j->sj_ret = spawn_job_exec(j);
	if (write(spawn_efd, &one, sizeof(one)) < 0)
		abort();
}

static void spawn_job_free(struct spawn_job *j)
{
	if (j->sj_netns_fd >= 0)
		close(j->sj_netns_fd);
	free(j->sj_strings);
	free(j->sj_text);
	if (j->sj_wfree)
		j->sj_wfree(j->sj_warg);
	free(j);
}

static void spawn_job_done(struct event_loop *loop, int fd, uint32_t events, void *arg)
{
	struct spawn_job *j;
	uint64_t n;

	if (read(fd, &n, sizeof(n)) != sizeof(n) || !spawn_busy)
		return;
	if (!pthread_equal(spawn_worker, pthread_self()))
		pthread_join(spawn_worker, NULL);
	spawn_busy = false;
	j = TAILQ_FIRST(&spawn_jobs);
	TAILQ_REMOVE(&spawn_jobs, j, sj_entry);
	if (j->sj_done)
		j->sj_done(j->sj_ret, j->sj_arg);
	spawn_job_free(j);
	spawn_job_next();
}

static int spawn_queue(const char *const argv[], int netns_fd, char *text, size_t len,
		       spawn_step_fn step, void *warg, void (*wfree)(void *warg),
		       spawn_done_fn done, void *arg)
{
	struct spawn_job *j;
	size_t total = 0, off = 0;
	int n = 0;

	if (spawn_efd < 0) {
		spawn_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (spawn_efd < 0)
			return -errno;
		if (event_add(router.r_loop, spawn_efd, EVENT_READ, spawn_job_done, NULL) < 0) {
			close(spawn_efd);
			spawn_efd = -1;
			return -ENOMEM;
		}
	}
	while (argv[n])
		total += strlen(argv[n++]) + 1;
	if (n > SPAWN_ARGS_MAX)
		return -E2BIG;
	j = calloc(1, sizeof(*j));
	if (!j || !(j->sj_strings = malloc(total ? total : 1))) {
		free(j);
		return -ENOMEM;
	}
	/* The caller's descriptor may be closed before the run starts (a pod deleted meanwhile). */
	j->sj_netns_fd = netns_fd >= 0 ? fcntl(netns_fd, F_DUPFD_CLOEXEC, 0) : -1;
	if (netns_fd >= 0 && j->sj_netns_fd < 0) {
		int err = -errno;

		free(j->sj_strings);
		free(j);
		return err;
	}
	/* Copies: the caller's arguments may live in static buffers (spawn_find). */
	for (int i = 0; i < n; i++) {
		size_t l = strlen(argv[i]) + 1;

		memcpy(j->sj_strings + off, argv[i], l);
		j->sj_argv[i] = j->sj_strings + off;
		off += l;
	}
	j->sj_text = text;
	j->sj_len = len;
	j->sj_step = step;
	j->sj_warg = warg;
	j->sj_wfree = wfree;
	j->sj_done = done;
	j->sj_arg = arg;
	TAILQ_INSERT_TAIL(&spawn_jobs, j, sj_entry);
	spawn_job_next();
	return 0;
}

int spawn_async(const char *const argv[], int netns_fd, char *text, size_t len,
		spawn_done_fn done, void *arg)
{
	return spawn_queue(argv, netns_fd, text, len, NULL, NULL, NULL, done, arg);
}

int spawn_async_steps(const char *const argv[], spawn_step_fn step, void *warg,
		      void (*wfree)(void *warg), spawn_done_fn done, void *arg)
{
	return spawn_queue(argv, -1, NULL, 0, step, warg, wfree, done, arg);
}

bool spawn_idle(void)
{
	return !spawn_busy && TAILQ_EMPTY(&spawn_jobs);
}

void spawn_stop(void)
{
	struct spawn_job *j;

	if (spawn_busy && !pthread_equal(spawn_worker, pthread_self()))
		pthread_join(spawn_worker, NULL);
	spawn_busy = false;
	while ((j = TAILQ_FIRST(&spawn_jobs))) {
		TAILQ_REMOVE(&spawn_jobs, j, sj_entry);
		spawn_job_free(j);
	}
	if (spawn_efd >= 0) {
		event_del(router.r_loop, spawn_efd);
		close(spawn_efd);
		spawn_efd = -1;
	}
}
