// SPDX-License-Identifier: MIT
/* slim-cni's netlink (libmnl): the veth pair, its bridge port, addresses, routes, namespaces. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>

#include <libmnl/libmnl.h>

#include "cni.h"

/* A request and its answer: one socket per call, opened in the current network namespace (a
 * netlink socket belongs to the namespace it was made in, so none outlives a setns). */
struct link_call {
	char lc_buf[32768]; /* a dump of links or routes comes in messages this big */
	struct mnl_socket *lc_nl;
	unsigned lc_seq;
	unsigned lc_portid;
};

static int link_call_open(struct link_call *c)
{
	c->lc_nl = mnl_socket_open(NETLINK_ROUTE);
	if (!c->lc_nl)
		return -errno;
	if (mnl_socket_bind(c->lc_nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		int ret = -errno;

		mnl_socket_close(c->lc_nl);
		return ret;
	}
	c->lc_portid = mnl_socket_get_portid(c->lc_nl);
	c->lc_seq = (unsigned)time(NULL);
	return 0;
}

static struct nlmsghdr *link_call_start(struct link_call *c, uint16_t type, uint16_t flags)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(c->lc_buf);

	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	nlh->nlmsg_seq = ++c->lc_seq;
	return nlh;
}

/* Sends nlh and reads until the ACK or the end of a dump; cb sees each answer message. */
static int link_call_run(struct link_call *c, struct nlmsghdr *nlh, mnl_cb_t cb, void *arg)
{
	int ret;

	if (mnl_socket_sendto(c->lc_nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(c->lc_nl, c->lc_buf, sizeof(c->lc_buf));

		if (n < 0)
			return -errno;
		ret = mnl_cb_run(c->lc_buf, (size_t)n, c->lc_seq, c->lc_portid, cb, arg);
		if (ret < 0)
			return -errno;
		if (ret == MNL_CB_STOP)
			return 0;
	}
}

static void link_call_close(struct link_call *c)
{
	mnl_socket_close(c->lc_nl);
}

/* One request that expects only an ACK. */
static int link_call_ack(struct link_call *c, struct nlmsghdr *nlh)
{
	int ret = link_call_run(c, nlh, NULL, NULL);

	link_call_close(c);
	return ret;
}

struct link_attrs {
	const struct nlattr *la_tb[IFLA_MAX + 1];
};

static int link_attr_cb(const struct nlattr *attr, void *data)
{
	const struct nlattr **tb = data;
	int type = mnl_attr_get_type(attr);

	if (mnl_attr_type_valid(attr, IFLA_MAX) > 0)
		tb[type] = attr;
	return MNL_CB_OK;
}

static int link_get_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct ifinfomsg *ifi = mnl_nlmsg_get_payload(nlh);
	const struct nlattr *tb[IFLA_MAX + 1] = {0};
	struct cni_link *l = data;

	mnl_attr_parse(nlh, sizeof(*ifi), link_attr_cb, tb);
	l->cl_index = ifi->ifi_index;
	l->cl_flags = ifi->ifi_flags;
	if (tb[IFLA_MTU])
		l->cl_mtu = mnl_attr_get_u32(tb[IFLA_MTU]);
	if (tb[IFLA_MASTER])
		l->cl_master = (int)mnl_attr_get_u32(tb[IFLA_MASTER]);
	if (tb[IFLA_ADDRESS] && mnl_attr_get_payload_len(tb[IFLA_ADDRESS]) == 6)
		memcpy(l->cl_mac, mnl_attr_get_payload(tb[IFLA_ADDRESS]), 6);
	return MNL_CB_OK;
}

static int link_addr_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
	struct cni_link *l = data;
	const struct nlattr *attr;

	if (ifa->ifa_family != AF_INET || (int)ifa->ifa_index != l->cl_index || l->cl_addr)
		return MNL_CB_OK;
	mnl_attr_for_each(attr, nlh, sizeof(*ifa))
	{
		if (mnl_attr_get_type(attr) == IFA_LOCAL && mnl_attr_get_payload_len(attr) == 4) {
			memcpy(&l->cl_addr, mnl_attr_get_payload(attr), 4);
			l->cl_prefix = ifa->ifa_prefixlen;
		}
	}
	return MNL_CB_OK;
}

int link_get(const char *name, struct cni_link *l)
{
	struct link_call c;
	struct nlmsghdr *nlh;
	struct ifinfomsg *ifi;
	struct ifaddrmsg *ifa;
	int ret;

	memset(l, 0, sizeof(*l));
	if ((ret = link_call_open(&c)))
		return ret;
	/* NLM_F_ACK: the answer is followed by an ACK, which ends the read. */
	nlh = link_call_start(&c, RTM_GETLINK, NLM_F_ACK);
	ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	ret = link_call_run(&c, nlh, link_get_cb, l);
	if (!ret) {
		nlh = link_call_start(&c, RTM_GETADDR, NLM_F_DUMP);
		ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
		ifa->ifa_family = AF_INET;
		ret = link_call_run(&c, nlh, link_addr_cb, l);
	}
	link_call_close(&c);
	return ret;
}

int link_veth_add(const char *host, const char *peer, int netns_fd, unsigned mtu)
{
	struct nlattr *linkinfo, *data, *peerinfo;
	struct ifinfomsg *ifi, *pifi;
	struct link_call c;
	struct nlmsghdr *nlh;
	int ret;

	if ((ret = link_call_open(&c)))
		return ret;
	nlh = link_call_start(&c, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK);
	ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, host);
	mnl_attr_put_u32(nlh, IFLA_MTU, mtu);
	linkinfo = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
	data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
	peerinfo = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
	pifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*pifi));
	pifi->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, peer);
	mnl_attr_put_u32(nlh, IFLA_MTU, mtu);
	mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, (uint32_t)netns_fd);
	mnl_attr_nest_end(nlh, peerinfo);
	mnl_attr_nest_end(nlh, data);
	mnl_attr_nest_end(nlh, linkinfo);
	return link_call_ack(&c, nlh);
}

static int link_set(int index, int master, bool set_master)
{
	struct ifinfomsg *ifi;
	struct link_call c;
	struct nlmsghdr *nlh;
	int ret;

	if ((ret = link_call_open(&c)))
		return ret;
	nlh = link_call_start(&c, RTM_NEWLINK, NLM_F_ACK);
	ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = index;
	ifi->ifi_flags = IFF_UP;
	ifi->ifi_change = IFF_UP;
	if (set_master)
		mnl_attr_put_u32(nlh, IFLA_MASTER, (uint32_t)master);
	return link_call_ack(&c, nlh);
}

int link_set_master_up(int index, int master)
{
	return link_set(index, master, true);
}

int link_set_up(int index)
{
	return link_set(index, 0, false);
}

int link_del(const char *name)
{
	struct ifinfomsg *ifi;
	struct link_call c;
	struct nlmsghdr *nlh;
	int ret;

	if ((ret = link_call_open(&c)))
		return ret;
	nlh = link_call_start(&c, RTM_DELLINK, NLM_F_ACK);
	ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	return link_call_ack(&c, nlh);
}

int link_addr_add(int index, uint32_t addr, unsigned prefix)
{
	uint32_t brd = addr | (prefix ? htonl(~0U >> prefix) : ~0U);
	struct ifaddrmsg *ifa;
	struct link_call c;
	struct nlmsghdr *nlh;
	int ret;

	if (prefix >= 31)
		brd = 0;
	if ((ret = link_call_open(&c)))
		return ret;
	nlh = link_call_start(&c, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK);
	ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = AF_INET;
	ifa->ifa_prefixlen = (uint8_t)prefix;
	ifa->ifa_scope = RT_SCOPE_UNIVERSE;
	ifa->ifa_index = (unsigned)index;
	mnl_attr_put_u32(nlh, IFA_LOCAL, addr);
	mnl_attr_put_u32(nlh, IFA_ADDRESS, addr);
	if (brd)
		mnl_attr_put_u32(nlh, IFA_BROADCAST, brd);
	return link_call_ack(&c, nlh);
}

struct link_addr_match {
	int am_index;
	uint32_t am_addr;
	unsigned am_prefix;
	bool am_found;
};

static int link_addr_match_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
	struct link_addr_match *m = data;
	const struct nlattr *attr;

	if (ifa->ifa_family != AF_INET || (int)ifa->ifa_index != m->am_index ||
	    ifa->ifa_prefixlen != m->am_prefix)
		return MNL_CB_OK;
	mnl_attr_for_each(attr, nlh, sizeof(*ifa)) if (mnl_attr_get_type(attr) == IFA_LOCAL &&
						       mnl_attr_get_payload_len(attr) == 4 &&
						       !memcmp(mnl_attr_get_payload(attr),
							       &m->am_addr, 4)) m->am_found = true;
	return MNL_CB_OK;
}

int link_addr_has(int index, uint32_t addr, unsigned prefix)
{
	struct link_addr_match m = {.am_index = index, .am_addr = addr, .am_prefix = prefix};
	struct ifaddrmsg *ifa;
	struct link_call c;
	struct nlmsghdr *nlh;
	int ret;

	if ((ret = link_call_open(&c)))
		return ret;
	nlh = link_call_start(&c, RTM_GETADDR, NLM_F_DUMP);
	ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = AF_INET;
	ret = link_call_run(&c, nlh, link_addr_match_cb, &m);
	link_call_close(&c);
	return ret < 0 ? ret : m.am_found;
}

int link_route_add(int index, uint32_t dst, unsigned len, uint32_t gw)
{
	struct link_call c;
	struct nlmsghdr *nlh;
	struct rtmsg *rtm;
	int ret;

	if ((ret = link_call_open(&c)))
		return ret;
	nlh = link_call_start(&c, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK);
	rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	rtm->rtm_family = AF_INET;
	rtm->rtm_dst_len = (uint8_t)len;
	rtm->rtm_table = RT_TABLE_MAIN;
	rtm->rtm_protocol = RTPROT_BOOT;
	rtm->rtm_scope = gw ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
	rtm->rtm_type = RTN_UNICAST;
	if (len)
		mnl_attr_put_u32(nlh, RTA_DST, dst);
	if (gw)
		mnl_attr_put_u32(nlh, RTA_GATEWAY, gw);
	mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)index);
	return link_call_ack(&c, nlh);
}

struct link_route_match {
	uint32_t rm_dst, rm_gw;
	unsigned rm_len;
	bool rm_found;
};

static int link_route_match_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct rtmsg *rtm = mnl_nlmsg_get_payload(nlh);
	struct link_route_match *m = data;
	const struct nlattr *attr;
	uint32_t dst = 0, gw = 0;

	if (rtm->rtm_family != AF_INET || rtm->rtm_dst_len != m->rm_len ||
	    rtm->rtm_table != RT_TABLE_MAIN)
		return MNL_CB_OK;
	mnl_attr_for_each(attr, nlh, sizeof(*rtm))
	{
		if (mnl_attr_get_payload_len(attr) != 4)
			continue;
		if (mnl_attr_get_type(attr) == RTA_DST)
			memcpy(&dst, mnl_attr_get_payload(attr), 4);
		else if (mnl_attr_get_type(attr) == RTA_GATEWAY)
			memcpy(&gw, mnl_attr_get_payload(attr), 4);
	}
	if (dst == m->rm_dst && gw == m->rm_gw)
		m->rm_found = true;
	return MNL_CB_OK;
}

int link_route_has(uint32_t dst, unsigned len, uint32_t gw)
{
	struct link_route_match m = {.rm_dst = dst, .rm_gw = gw, .rm_len = len};
	struct link_call c;
	struct nlmsghdr *nlh;
	struct rtmsg *rtm;
	int ret;

	if ((ret = link_call_open(&c)))
		return ret;
	nlh = link_call_start(&c, RTM_GETROUTE, NLM_F_DUMP);
	rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	rtm->rtm_family = AF_INET;
	ret = link_call_run(&c, nlh, link_route_match_cb, &m);
	link_call_close(&c);
	return ret < 0 ? ret : m.rm_found;
}

struct link_ports_walk {
	int pw_master;
	const char *pw_prefix;
	char (*pw_names)[IF_NAMESIZE];
	size_t pw_n, pw_cap;
};

static int link_ports_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct ifinfomsg *ifi = mnl_nlmsg_get_payload(nlh);
	const struct nlattr *tb[IFLA_MAX + 1] = {0};
	struct link_ports_walk *w = data;
	const char *name;

	mnl_attr_parse(nlh, sizeof(*ifi), link_attr_cb, tb);
	if (!tb[IFLA_IFNAME] || !tb[IFLA_MASTER] ||
	    (int)mnl_attr_get_u32(tb[IFLA_MASTER]) != w->pw_master)
		return MNL_CB_OK;
	name = mnl_attr_get_str(tb[IFLA_IFNAME]);
	if (strncmp(name, w->pw_prefix, strlen(w->pw_prefix)) || strlen(name) >= IF_NAMESIZE)
		return MNL_CB_OK;
	if (w->pw_n == w->pw_cap) {
		size_t cap = w->pw_cap ? 2 * w->pw_cap : 16;
		void *grown = realloc(w->pw_names, cap * sizeof(*w->pw_names));

		if (!grown)
			return MNL_CB_ERROR;
		w->pw_names = grown;
		w->pw_cap = cap;
	}
	strcpy(w->pw_names[w->pw_n++], name);
	return MNL_CB_OK;
}

int link_ports(int bridge_index, const char *prefix, void (*fn)(const char *name, void *arg),
	       void *arg)
{
	struct link_ports_walk w = {.pw_master = bridge_index, .pw_prefix = prefix};
	struct ifinfomsg *ifi;
	struct link_call c;
	struct nlmsghdr *nlh;
	int ret;

	if ((ret = link_call_open(&c)))
		return ret;
	nlh = link_call_start(&c, RTM_GETLINK, NLM_F_DUMP);
	ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	ret = link_call_run(&c, nlh, link_ports_cb, &w);
	link_call_close(&c);
	/* The callbacks run after the dump: fn may change links without disturbing it. */
	for (size_t i = 0; !ret && i < w.pw_n; i++)
		fn(w.pw_names[i], arg);
	free(w.pw_names);
	return ret;
}

int link_wait_running(int index, unsigned timeout_ms)
{
	char name[IF_NAMESIZE];
	struct cni_link l;
	int ret;

	if (!if_indextoname((unsigned)index, name))
		return -errno;
	for (unsigned waited = 0;; waited++) {
		if ((ret = link_get(name, &l)))
			return ret;
		if (l.cl_flags & IFF_RUNNING)
			return 0;
		if (waited >= timeout_ms)
			return -ETIMEDOUT;
		usleep(1000);
	}
}

int link_netns_enter(int fd, int *saved)
{
	*saved = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (*saved < 0)
		return -errno;
	if (setns(fd, CLONE_NEWNET) < 0) {
		int ret = -errno;

		close(*saved);
		*saved = -1;
		return ret;
	}
	return 0;
}

int link_netns_leave(int saved)
{
	int ret = setns(saved, CLONE_NEWNET) < 0 ? -errno : 0;

	close(saved);
	return ret;
}
