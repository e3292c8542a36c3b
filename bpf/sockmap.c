// SPDX-License-Identifier: MIT
/*
 * The sockmap loader: opens the slim_sockmap skeleton, sets host_ip, loads it, attaches the
 * sockhash programs and the cgroup sockops link, and answers sockhash queries for the router.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <linux/types.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "sockmap.h"
#include "sockmap_key.h"
#include "slim_sockmap.skel.h"

struct sockmap {
	struct slim_sockmap_bpf *sm_skel;
	struct bpf_link *sm_cgroup_link;
	int sm_cgroup_fd;
	int sm_map_fd;
	bool sm_msg_attached;
	bool sm_verdict_attached;
};

/*
 * net.ipv4.tcp_rmem[1], the receive buffer a socket starts with, as the flow-control bound's
 * share for peers that did not set SO_RCVBUF (slim_sockmap.bpf.c); 0 if it cannot be read.
 */
static uint32_t sockmap_rcvbuf_default(void)
{
	unsigned int lo, def = 0, hi;
	FILE *f = fopen("/proc/sys/net/ipv4/tcp_rmem", "re");

	if (!f)
		return 0;
	if (fscanf(f, "%u %u %u", &lo, &def, &hi) != 3)
		def = 0;
	fclose(f);
	return def;
}

/* libbpf reports through errno and NULL/negative returns; normalise to -errno. */
static int sockmap_errno(int err)
{
	if (err < 0)
		return err;
	return errno ? -errno : -EINVAL;
}

int sockmap_open(const char *cgroup_path, uint32_t host_ip, unsigned int flags,
		 struct sockmap **out)
{
	struct sockmap *sm;
	uint32_t rcvbuf;
	int err;

	*out = NULL;
	if (!cgroup_path || !host_ip || (flags & ~(SOCKMAP_F_NO_VERDICT | SOCKMAP_F_NO_ORDER | SOCKMAP_F_NO_TRIM)))
		return -EINVAL;
	sm = calloc(1, sizeof(*sm));
	if (!sm)
		return -ENOMEM;
	sm->sm_cgroup_fd = open(cgroup_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sm->sm_cgroup_fd < 0) {
		err = -errno;
		goto free_sm;
	}

	sm->sm_skel = slim_sockmap_bpf__open();
	if (!sm->sm_skel) {
		err = sockmap_errno(0);
		goto close_cgroup;
	}
	sm->sm_skel->rodata->host_ip = host_ip;
	sm->sm_skel->rodata->keep_order = !(flags & SOCKMAP_F_NO_ORDER);
	sm->sm_skel->rodata->trim_repeats = !(flags & SOCKMAP_F_NO_TRIM);
	rcvbuf = sockmap_rcvbuf_default();
	if (rcvbuf)
		sm->sm_skel->rodata->rcvbuf_default = rcvbuf;
	if (flags & SOCKMAP_F_NO_VERDICT)
		bpf_program__set_autoload(sm->sm_skel->progs.slim_stream_verdict, false);
	err = slim_sockmap_bpf__load(sm->sm_skel);
	if (err) {
		err = sockmap_errno(err);
		goto destroy_skel;
	}
	sm->sm_map_fd = bpf_map__fd(sm->sm_skel->maps.slim_socks);

	/* Programs on the map first: a socket picks up the map's programs when it is added. */
	err = bpf_prog_attach(bpf_program__fd(sm->sm_skel->progs.slim_msg_redirect), sm->sm_map_fd,
			      BPF_SK_MSG_VERDICT, 0);
	if (err) {
		err = sockmap_errno(err);
		goto destroy_skel;
	}
	sm->sm_msg_attached = true;
	if (!(flags & SOCKMAP_F_NO_VERDICT)) {
		err = bpf_prog_attach(bpf_program__fd(sm->sm_skel->progs.slim_stream_verdict),
				      sm->sm_map_fd, BPF_SK_SKB_STREAM_VERDICT, 0);
		if (err) {
			err = sockmap_errno(err);
			goto detach_map_progs;
		}
		sm->sm_verdict_attached = true;
	}

	sm->sm_cgroup_link =
		bpf_program__attach_cgroup(sm->sm_skel->progs.slim_sockops, sm->sm_cgroup_fd);
	if (!sm->sm_cgroup_link) {
		err = sockmap_errno(0);
		goto detach_map_progs;
	}
	*out = sm;
	return 0;

detach_map_progs:
	if (sm->sm_verdict_attached)
		bpf_prog_detach2(bpf_program__fd(sm->sm_skel->progs.slim_stream_verdict),
				 sm->sm_map_fd, BPF_SK_SKB_STREAM_VERDICT);
	bpf_prog_detach2(bpf_program__fd(sm->sm_skel->progs.slim_msg_redirect), sm->sm_map_fd,
			 BPF_SK_MSG_VERDICT);
destroy_skel:
	slim_sockmap_bpf__destroy(sm->sm_skel);
close_cgroup:
	close(sm->sm_cgroup_fd);
free_sm:
	free(sm);
	return err;
}

void sockmap_close(struct sockmap *sm)
{
	if (!sm)
		return;
	/* The cgroup link first, so no new socket enters the map while it is torn down. */
	bpf_link__destroy(sm->sm_cgroup_link);
	if (sm->sm_verdict_attached)
		bpf_prog_detach2(bpf_program__fd(sm->sm_skel->progs.slim_stream_verdict),
				 sm->sm_map_fd, BPF_SK_SKB_STREAM_VERDICT);
	if (sm->sm_msg_attached)
		bpf_prog_detach2(bpf_program__fd(sm->sm_skel->progs.slim_msg_redirect),
				 sm->sm_map_fd, BPF_SK_MSG_VERDICT);
	/* Mapped sockets keep the programs and so the map alive until they close (see sockmap.h). */
	slim_sockmap_bpf__destroy(sm->sm_skel);
	close(sm->sm_cgroup_fd);
	free(sm);
}

int sockmap_entries(struct sockmap *sm)
{
	return sockmap_map_entries(sm->sm_map_fd);
}

int sockmap_fd(struct sockmap *sm)
{
	return sm->sm_map_fd;
}

int sockmap_map_entries(int map_fd)
{
	struct slim_sock_key key, next;
	void *prev = NULL;
	int n = 0;

	while (bpf_map_get_next_key(map_fd, prev, &next) == 0) {
		n++;
		key = next;
		prev = &key;
	}
	/*
	 * ENOENT ends the walk. A key deleted between two calls restarts the walk from the first
	 * key on this kernel, so a count taken under churn is approximate; the leak test counts
	 * when the map is quiet.
	 */
	if (errno != ENOENT)
		return -errno;
	return n;
}

static struct slim_sock_key sockmap_key(const struct sockaddr_in *local,
					const struct sockaddr_in *remote)
{
	return (struct slim_sock_key){
		.sk_local_ip = local->sin_addr.s_addr,
		.sk_remote_ip = remote->sin_addr.s_addr,
		.sk_local_port = local->sin_port,
		.sk_remote_port = remote->sin_port,
	};
}

bool sockmap_contains(struct sockmap *sm, const struct sockaddr_in *local,
		      const struct sockaddr_in *remote)
{
	return sockmap_map_contains(sm->sm_map_fd, local, remote);
}

bool sockmap_map_contains(int map_fd, const struct sockaddr_in *local,
			  const struct sockaddr_in *remote)
{
	struct slim_sock_key key = sockmap_key(local, remote);
	__u64 cookie;

	return bpf_map_lookup_elem(map_fd, &key, &cookie) == 0;
}

static int sockmap_fd_addrs(int fd, struct sockaddr_in *local, struct sockaddr_in *remote)
{
	socklen_t len = sizeof(*local);

	if (getsockname(fd, (struct sockaddr *)local, &len) || local->sin_family != AF_INET)
		return -EINVAL;
	len = sizeof(*remote);
	if (getpeername(fd, (struct sockaddr *)remote, &len) || remote->sin_family != AF_INET)
		return -ENOTCONN;
	return 0;
}

bool sockmap_contains_fd(struct sockmap *sm, int fd)
{
	struct sockaddr_in local, remote;

	if (sockmap_fd_addrs(fd, &local, &remote))
		return false;
	return sockmap_contains(sm, &local, &remote);
}

bool sockmap_peer_mapped(struct sockmap *sm, int fd)
{
	struct sockaddr_in local, remote;

	if (sockmap_fd_addrs(fd, &local, &remote))
		return false;
	return sockmap_contains(sm, &remote, &local);
}

int sockmap_client_established(struct sockmap *sm, int fd)
{
	struct sockaddr_in local, remote;
	struct slim_sock_key key;
	int err;

	err = sockmap_fd_addrs(fd, &local, &remote);
	if (err)
		return err;
	if (!sockmap_contains(sm, &local, &remote))
		return 0;
	if (sockmap_contains(sm, &remote, &local))
		return 1;
	/*
	 * The peer may still enter the map later; with this socket out of it, neither end's sends
	 * are ever redirected (the sk_msg program only runs on mapped sockets and finds no peer
	 * for the child), so all bytes keep their TCP order.
	 */
	key = sockmap_key(&local, &remote);
	if (bpf_map_delete_elem(sm->sm_map_fd, &key) && errno != ENOENT)
		return -errno;
	return 0;
}

void sockmap_stats(struct sockmap *sm, struct sockmap_stats *st)
{
	const struct slim_sockmap_bpf__bss *bss = sm->sm_skel->bss;

	st->sms_added = __atomic_load_n(&bss->stat_added, __ATOMIC_RELAXED);
	st->sms_add_failed = __atomic_load_n(&bss->stat_add_failed, __ATOMIC_RELAXED);
	st->sms_skipped = __atomic_load_n(&bss->stat_skipped, __ATOMIC_RELAXED);
	st->sms_redirected = st->sms_redirected_bytes = st->sms_passed = st->sms_flow_passed = 0;
	for (int i = 0; i < SLIM_STAT_CPUS; i++) {
		const struct slim_send_stats *c = &bss->stat_sends[i];

		st->sms_redirected += __atomic_load_n(&c->ss_redirected, __ATOMIC_RELAXED);
		st->sms_redirected_bytes += __atomic_load_n(&c->ss_redirected_bytes, __ATOMIC_RELAXED);
		st->sms_passed += __atomic_load_n(&c->ss_passed, __ATOMIC_RELAXED);
		st->sms_flow_passed += __atomic_load_n(&c->ss_flow_passed, __ATOMIC_RELAXED);
	}
	st->sms_to_tcp = __atomic_load_n(&bss->stat_to_tcp, __ATOMIC_RELAXED);
	st->sms_to_redirect = __atomic_load_n(&bss->stat_to_redirect, __ATOMIC_RELAXED);
	st->sms_rx_trimmed = __atomic_load_n(&bss->stat_rx_trimmed, __ATOMIC_RELAXED);
	st->sms_rx_trimmed_bytes = __atomic_load_n(&bss->stat_rx_trimmed_bytes, __ATOMIC_RELAXED);
	st->sms_rx_trim_failed = __atomic_load_n(&bss->stat_rx_trim_failed, __ATOMIC_RELAXED);
}
