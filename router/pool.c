// SPDX-License-Identifier: MIT
/*
 * Pre-made host sockets for the shims: a POOL_REQ gets a batch of sockets created here (so they
 * belong to the router's cgroup and its programs govern them), non-blocking, bound to the
 * fabric address, marked with the pod's QoS class and owned by the asking pod in the kernel's
 * socket state. The shim connects them itself; the router is not on the connect path.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <linux/types.h>

#include "govern_abi.h"
#include "log.h"
#include "router.h"

/*
 * What one pod may take: a burst, then a steady rate. Each socket costs the router a few
 * syscalls and the kernel some memory until the pod closes it; a pod that wants more than
 * this is churning sockets without connecting them, and its shim falls back meanwhile.
 */
#define POOL_BURST     4096
#define POOL_PER_SEC   20000

struct pool_bucket {
	struct hnode pb_node;
	uint32_t pb_ip;
	double pb_tokens;
	uint64_t pb_last_ms;
};

static struct htab pool_buckets;
static bool pool_ready;
static uint64_t pool_nhanded, pool_nrefused;

static struct pool_bucket *pool_bucket(uint32_t ip)
{
	struct pool_bucket *b;

	if (!pool_ready) {
		if (htab_init(&pool_buckets, 64) < 0)
			return NULL;
		pool_ready = true;
	}
	for (struct hnode *h = htab_first(&pool_buckets, htab_hash_u64(ip)); h; h = htab_next(h)) {
		b = container_of(h, struct pool_bucket, pb_node);
		if (b->pb_ip == ip)
			return b;
	}
	b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->pb_ip = ip;
	b->pb_tokens = POOL_BURST;
	b->pb_last_ms = event_now_ms();
	htab_insert(&pool_buckets, &b->pb_node, htab_hash_u64(ip));
	return b;
}

/* Takes up to want tokens from the pod's bucket; returns how many it got. */
static unsigned pool_take_tokens(uint32_t ip, unsigned want)
{
	struct pool_bucket *b = pool_bucket(ip);
	uint64_t now = event_now_ms();
	unsigned got;

	if (!b)
		return 0;
	b->pb_tokens += (double)(now - b->pb_last_ms) * POOL_PER_SEC / 1000.0;
	if (b->pb_tokens > POOL_BURST)
		b->pb_tokens = POOL_BURST;
	b->pb_last_ms = now;
	got = b->pb_tokens < want ? (unsigned)b->pb_tokens : want;
	b->pb_tokens -= got;
	return got;
}

void pool_pod_gone(uint32_t ip)
{
	if (!pool_ready)
		return;
	for (struct hnode *h = htab_first(&pool_buckets, htab_hash_u64(ip)); h; h = htab_next(h)) {
		struct pool_bucket *b = container_of(h, struct pool_bucket, pb_node);

		if (b->pb_ip == ip) {
			htab_remove(&pool_buckets, h);
			free(b);
			return;
		}
	}
}

/* One governed socket for pod_ip. fd or -errno. */
static int pool_socket(uint32_t pod_ip)
{
	struct sockaddr_in src = {.sin_family = AF_INET, .sin_addr.s_addr = router.r_fabric_ip};
	struct slim_sk st = {.ss_pod_ip = pod_ip, .ss_flags = SLIM_SK_HANDED};
	int fd, one = 1, ret;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	qos_mark_socket(fd, pod_ip);
	/* The port is chosen at connect, with 4-tuple sharing: no port exhaustion under churn. */
	if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
		ret = -errno;
		goto fail;
	}
	/* Last: from here on the pod's rules apply to it (bind is refused, for one). */
	ret = governor_sock_set(fd, &st);
	if (ret < 0)
		goto fail;
	return fd;
fail:
	close(fd);
	return ret;
}

/* The pool's socket is the pod's: its state says so, and only its. */
static bool pool_socket_is_pods(int fd, uint32_t pod_ip)
{
	struct slim_sk st;

	return governor_sock_get(fd, &st) == 0 && st.ss_pod_ip == pod_ip &&
	       st.ss_flags == SLIM_SK_HANDED;
}

/*
 * Makes up to want pool sockets for pod p into fds; returns how many. The kernel gives each
 * its state as it is born (slim_sock_create in bpf/slim_govern.bpf.c): one socket() each. A
 * batch whose count falls short (a program of an older build still attached, no memory for the
 * state) is checked socket by socket, and what is not the pod's is closed: a socket without
 * its state would be a general host socket in the pod's hands. The rest are made the long way.
 */
static unsigned pool_make(const struct pod *p, int *fds, unsigned want)
{
	static bool quick_broken;
	uint32_t pod_ip = p->p_ip;
	struct slim_pool_pending pp = {.pp_pod_ip = pod_ip};
	unsigned n = 0, kept = 0;

	if (!quick_broken) {
		uint32_t mark, prio;

		if (qos_socket_marks(pod_ip, &mark, &prio)) {
			pp.pp_mark = mark;
			pp.pp_priority = prio;
		}
		pp.pp_pid_tgid = (uint64_t)getpid() << 32 | (uint32_t)gettid();
		if (governor_pool_pending(&pp) == 0) {
			while (n < want) {
				int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

				if (fd < 0)
					break;
				fds[n++] = fd;
			}
			if (governor_pool_pending_end(&pp) < 0 || pp.pp_made != n) {
				for (unsigned i = 0; i < n; i++) {
					if (pool_socket_is_pods(fds[i], pod_ip))
						fds[kept++] = fds[i];
					else
						close(fds[i]);
				}
				if (!kept && n) {
					quick_broken = true;
					log_warnx("pool: the kernel does not give new sockets their "
						  "state; making them one call at a time");
				}
				n = kept;
			}
		}
	}
	while (n < want) {
		int fd = pool_socket(pod_ip);

		if (fd < 0) {
			log_warnx("pool: pod %s: %s", p->p_name, strerror(-fd));
			break;
		}
		fds[n++] = fd;
	}
	return n;
}

void pool_handout(struct client *c, const struct pod *p, const struct slim_pool_req *req)
{
	struct slim_pool_rep rep = {
		.hdr = {.type = SLIM_MSG_POOL_REP, .len = sizeof(rep), .id = req->hdr.id},
		.action = SLIM_ACT_FALLBACK,
	};
	int fds[SLIM_POOL_BATCH];
	unsigned n = 0, want;

	if (!p || !governor_enabled()) {
		client_reply(c, &rep, sizeof(rep), -1, false);
		return;
	}
	want = pool_take_tokens(p->p_ip, req->count);
	if (want < req->count)
		pool_nrefused += req->count - want;
	n = pool_make(p, fds, want);
	if (n) {
		rep.action = SLIM_ACT_FD;
		rep.count = n;
	}
	pool_nhanded += n;
	client_reply_fds(c, &rep, sizeof(rep), fds, n);
	/* Never keep them: a socket the app closes must go away at once. */
	while (n)
		close(fds[--n]);
}

uint64_t pool_handed_count(void)
{
	return pool_nhanded;
}

uint64_t pool_refused_count(void)
{
	return pool_nrefused;
}

json_t *pool_status_json(void)
{
	return json_pack("{s:I, s:I}", "handed", (json_int_t)pool_nhanded, "refused",
			 (json_int_t)pool_nrefused);
}
