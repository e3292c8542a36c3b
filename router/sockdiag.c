// SPDX-License-Identifier: MIT
/* NETLINK_SOCK_DIAG through libmnl: TCP socket dumps, listener lookups and SOCK_DESTROY. */
#include <errno.h>
#include <string.h>
#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <libmnl/libmnl.h>

#include "log.h"
#include "router.h"

static struct mnl_socket *sockdiag_nl;
static unsigned int sockdiag_portid;
static unsigned int sockdiag_seq;

int sockdiag_init(void)
{
	sockdiag_nl = mnl_socket_open2(NETLINK_SOCK_DIAG, SOCK_CLOEXEC);
	if (!sockdiag_nl)
		return -errno;
	if (mnl_socket_bind(sockdiag_nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		int ret = -errno;

		mnl_socket_close(sockdiag_nl);
		sockdiag_nl = NULL;
		return ret;
	}
	sockdiag_portid = mnl_socket_get_portid(sockdiag_nl);
	return 0;
}

void sockdiag_close(void)
{
	if (sockdiag_nl)
		mnl_socket_close(sockdiag_nl);
	sockdiag_nl = NULL;
}

struct sockdiag_walk {
	sockdiag_fn sw_fn;
	void *sw_arg;
	unsigned sw_count;
	int sw_map_fd;	      /* with a storage dump: the SK_STORAGE map asked for, else -1 */
	uint32_t sw_map_id;   /* its id, as replies name it */
	size_t sw_value_size; /* the size of its values */
};

/* The value a storage dump reports for the socket in m (NULL when the socket has none). */
static const void *sockdiag_storage(const struct nlmsghdr *nlh, const struct sockdiag_walk *w)
{
	const struct inet_diag_msg *m = mnl_nlmsg_get_payload(nlh);
	const struct nlattr *a, *st, *f;

	if (w->sw_map_fd < 0)
		return NULL;
	mnl_attr_for_each(a, nlh, sizeof(*m)) {
		if (mnl_attr_get_type(a) != INET_DIAG_SK_BPF_STORAGES)
			continue;
		mnl_attr_for_each_nested(st, a) {
			uint32_t id = 0;
			const void *value = NULL;

			if (mnl_attr_get_type(st) != SK_DIAG_BPF_STORAGE)
				continue;
			mnl_attr_for_each_nested(f, st) {
				if (mnl_attr_get_type(f) == SK_DIAG_BPF_STORAGE_MAP_ID &&
				    mnl_attr_get_payload_len(f) == sizeof(id))
					id = mnl_attr_get_u32(f);
				else if (mnl_attr_get_type(f) == SK_DIAG_BPF_STORAGE_MAP_VALUE &&
					 mnl_attr_get_payload_len(f) >= w->sw_value_size)
					value = mnl_attr_get_payload(f);
			}
			if (id == w->sw_map_id && value)
				return value;
		}
	}
	return NULL;
}

static int sockdiag_parse(const struct nlmsghdr *nlh, void *data)
{
	const struct inet_diag_msg *m = mnl_nlmsg_get_payload(nlh);
	struct sockdiag_walk *w = data;
	struct sockdiag_sock s;

	if (nlh->nlmsg_type != SOCK_DIAG_BY_FAMILY || mnl_nlmsg_get_payload_len(nlh) < sizeof(*m) ||
	    m->idiag_family != AF_INET)
		return MNL_CB_OK;
	s.sd_tuple.src_ip = m->id.idiag_src[0];
	s.sd_tuple.dst_ip = m->id.idiag_dst[0];
	s.sd_tuple.src_port = m->id.idiag_sport;
	s.sd_tuple.dst_port = m->id.idiag_dport;
	s.sd_cookie = (uint64_t)m->id.idiag_cookie[0] | (uint64_t)m->id.idiag_cookie[1] << 32;
	s.sd_inode = m->idiag_inode;
	s.sd_state = m->idiag_state;
	s.sd_storage = sockdiag_storage(nlh, w);
	w->sw_count++;
	if (w->sw_fn)
		w->sw_fn(&s, w->sw_arg);
	return MNL_CB_OK;
}

/*
 * Sends one inet_diag request and runs the replies through sockdiag_parse. For a dump the
 * kernel ends with NLMSG_DONE; for a single lookup it sends one message or an error, so we
 * stop after the first batch. Netlink to the kernel answers at once: blocking is fine here.
 */
static int sockdiag_request(uint16_t type, uint16_t flags, const struct inet_diag_req_v2 *req,
			    struct sockdiag_walk *w)
{
	char buf[32768]; /* a dump batch; the kernel fills up to this much per read */
	struct nlmsghdr *nlh;
	unsigned int seq;
	ssize_t n;
	int ret;

	if (!sockdiag_nl)
		return -ENOTCONN;
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	nlh->nlmsg_seq = seq = ++sockdiag_seq;
	memcpy(mnl_nlmsg_put_extra_header(nlh, sizeof(*req)), req, sizeof(*req));
	if (w->sw_map_fd >= 0) {
		struct nlattr *nest = mnl_attr_nest_start(nlh, INET_DIAG_REQ_SK_BPF_STORAGES);

		mnl_attr_put_u32(nlh, SK_DIAG_BPF_STORAGE_REQ_MAP_FD, (uint32_t)w->sw_map_fd);
		mnl_attr_nest_end(nlh, nest);
	}
	if (mnl_socket_sendto(sockdiag_nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	for (;;) {
		n = mnl_socket_recvfrom(sockdiag_nl, buf, sizeof(buf));
		if (n < 0)
			return -errno;
		ret = mnl_cb_run(buf, (size_t)n, seq, sockdiag_portid, sockdiag_parse, w);
		if (ret < 0)
			return -errno;
		if (ret == MNL_CB_STOP || !(flags & NLM_F_DUMP))
			return 0;
	}
}

int sockdiag_dump(uint32_t states, sockdiag_fn fn, void *arg)
{
	struct inet_diag_req_v2 req = {
		.sdiag_family = AF_INET,
		.sdiag_protocol = IPPROTO_TCP,
		.idiag_states = states,
	};
	struct sockdiag_walk w = {.sw_fn = fn, .sw_arg = arg, .sw_map_fd = -1};
	int ret = sockdiag_request(SOCK_DIAG_BY_FAMILY, NLM_F_DUMP, &req, &w);

	if (ret < 0)
		log_warnx("%s: %s", __func__, strerror(-ret));
	return ret;
}

int sockdiag_dump_storage(uint32_t states, int map_fd, uint32_t map_id, size_t value_size,
			  sockdiag_fn fn, void *arg)
{
	struct inet_diag_req_v2 req = {
		.sdiag_family = AF_INET,
		.sdiag_protocol = IPPROTO_TCP,
		.idiag_states = states,
	};
	struct sockdiag_walk w = {.sw_fn = fn,
				  .sw_arg = arg,
				  .sw_map_fd = map_fd,
				  .sw_map_id = map_id,
				  .sw_value_size = value_size};
	int ret = sockdiag_request(SOCK_DIAG_BY_FAMILY, NLM_F_DUMP, &req, &w);

	if (ret < 0)
		log_warnx("%s: %s", __func__, strerror(-ret));
	return ret;
}

int sockdiag_listener_exists(uint32_t ip, uint16_t port)
{
	struct inet_diag_req_v2 req = {
		.sdiag_family = AF_INET,
		.sdiag_protocol = IPPROTO_TCP,
		.idiag_states = 1u << TCP_LISTEN,
		.id =
			{
				.idiag_sport = port,
				.idiag_src = {ip},
				.idiag_cookie = {INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE},
			},
	};
	struct sockdiag_walk w = {.sw_map_fd = -1};
	int ret = sockdiag_request(SOCK_DIAG_BY_FAMILY, 0, &req, &w);

	if (ret == -ENOENT)
		return 0;
	if (ret < 0) {
		log_warnx("%s: %s", __func__, strerror(-ret));
		return ret;
	}
	return w.sw_count > 0;
}

int sockdiag_destroy(const struct tuple4 *t)
{
	struct inet_diag_req_v2 req = {
		.sdiag_family = AF_INET,
		.sdiag_protocol = IPPROTO_TCP,
		.idiag_states = ~0u,
		.id =
			{
				.idiag_sport = t->src_port,
				.idiag_dport = t->dst_port,
				.idiag_src = {t->src_ip},
				.idiag_dst = {t->dst_ip},
				.idiag_cookie = {INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE},
			},
	};
	struct sockdiag_walk w = {.sw_map_fd = -1};

	/* With NLM_F_ACK the kernel answers NLMSG_ERROR: 0 on success, -errno otherwise. */
	return sockdiag_request(SOCK_DESTROY, NLM_F_ACK, &req, &w);
}

/* The kernel looks a bare 4-tuple up like a packet: with the connection gone it finds the
 * listener on that port. With the cookie it refuses instead (ESTALE). */
int sockdiag_destroy_sock(const struct sockdiag_sock *s)
{
	struct inet_diag_req_v2 req = {
		.sdiag_family = AF_INET,
		.sdiag_protocol = IPPROTO_TCP,
		.idiag_states = ~0u,
		.id =
			{
				.idiag_sport = s->sd_tuple.src_port,
				.idiag_dport = s->sd_tuple.dst_port,
				.idiag_src = {s->sd_tuple.src_ip},
				.idiag_dst = {s->sd_tuple.dst_ip},
				.idiag_cookie = {(uint32_t)s->sd_cookie,
						 (uint32_t)(s->sd_cookie >> 32)},
			},
	};
	struct sockdiag_walk w = {.sw_map_fd = -1};

	return sockdiag_request(SOCK_DESTROY, NLM_F_ACK, &req, &w);
}
