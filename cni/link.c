// SPDX-License-Identifier: MIT
/* slim-cni's netlink (libmnl): the veth pair, its bridge port, addresses, routes, namespaces. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>

#include <libmnl/libmnl.h>

#include "cni.h"

/*
 * One request and its answer: link_call_begin opens a socket in the current network namespace
 * (a netlink socket stays in the namespace it was made in, so none may outlive a setns) and
 * starts the message with its family header; the caller adds attributes; link_call_end sends
 * it, hands each answer to cb until the ACK or the end of a dump, and closes the socket.
 */
struct link_call {
	char lc_buf[32768]; /* a dump of links or routes comes in messages this big */
	struct mnl_socket *lc_nl;
	struct nlmsghdr *lc_nlh;
	unsigned lc_seq;
};

static void *link_call_begin(struct link_call *c, uint16_t type, uint16_t flags, size_t hdrlen,
			     int *err)
{
	c->lc_nl = mnl_socket_open(NETLINK_ROUTE);
	if (!c->lc_nl || mnl_socket_bind(c->lc_nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		*err = -errno;
		if (c->lc_nl)
			mnl_socket_close(c->lc_nl);
		return NULL;
	}
	c->lc_seq = (unsigned)time(NULL);
	c->lc_nlh = mnl_nlmsg_put_header(c->lc_buf);
	c->lc_nlh->nlmsg_type = type;
	/* Every request asks for an ACK: a GETLINK answer is then followed by one, which ends
	 * the read like a dump's DONE does. */
	c->lc_nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
	c->lc_nlh->nlmsg_seq = c->lc_seq;
	return mnl_nlmsg_put_extra_header(c->lc_nlh, hdrlen);
}

static int link_call_end(struct link_call *c, mnl_cb_t cb, void *arg)
{
	unsigned portid = mnl_socket_get_portid(c->lc_nl);
	int ret = 0;

	if (mnl_socket_sendto(c->lc_nl, c->lc_nlh, c->lc_nlh->nlmsg_len) < 0)
		ret = -errno;
	while (!ret) {
		ssize_t n = mnl_socket_recvfrom(c->lc_nl, c->lc_buf, sizeof(c->lc_buf));

		if (n < 0) {
			ret = -errno;
			break;
		}
		n = mnl_cb_run(c->lc_buf, (size_t)n, c->lc_seq, portid, cb, arg);
		if (n < 0)
			ret = -errno;
		else if (n == MNL_CB_STOP)
			break;
	}
	mnl_socket_close(c->lc_nl);
	return ret;
}

/* One dump of IPv4 addresses or routes (ifaddrmsg and rtmsg both start with the family). */
static int link_dump(uint16_t type, mnl_cb_t cb, void *arg)
{
	size_t hdrlen = type == RTM_GETROUTE ? sizeof(struct rtmsg) : sizeof(struct ifaddrmsg);
	struct link_call c;
	uint8_t *family;
	int ret;

	if (!(family = link_call_begin(&c, type, NLM_F_DUMP, hdrlen, &ret)))
		return ret;
	*family = AF_INET;
	return link_call_end(&c, cb, arg);
}

static int link_attr_cb(const struct nlattr *attr, void *data)
{
	const struct nlattr **tb = data;

	if (mnl_attr_type_valid(attr, IFLA_MAX) > 0)
		tb[mnl_attr_get_type(attr)] = attr;
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

/* An IPv4 address entry: its link, prefix length and local address (0 when it has none). */
static uint32_t link_addr_entry(const struct nlmsghdr *nlh, int *index, unsigned *prefix)
{
	const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
	const struct nlattr *attr;
	uint32_t addr = 0;

	if (ifa->ifa_family != AF_INET)
		return 0;
	mnl_attr_for_each(attr, nlh, sizeof(*ifa)) if (mnl_attr_get_type(attr) == IFA_LOCAL &&
						       mnl_attr_get_payload_len(attr) == 4)
		memcpy(&addr, mnl_attr_get_payload(attr), 4);
	*index = (int)ifa->ifa_index;
	*prefix = ifa->ifa_prefixlen;
	return addr;
}

/* link_get: the link's first IPv4 address. */
static int link_first_addr_cb(const struct nlmsghdr *nlh, void *data)
{
	struct cni_link *l = data;
	unsigned prefix;
	uint32_t addr;
	int index;

	addr = link_addr_entry(nlh, &index, &prefix);
	if (addr && index == l->cl_index && !l->cl_addr) {
		l->cl_addr = addr;
		l->cl_prefix = prefix;
	}
	return MNL_CB_OK;
}

int link_get(const char *name, struct cni_link *l)
{
	struct ifinfomsg *ifi;
	struct link_call c;
	int ret;

	memset(l, 0, sizeof(*l));
	if (!(ifi = link_call_begin(&c, RTM_GETLINK, 0, sizeof(*ifi), &ret)))
		return ret;
	ifi->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(c.lc_nlh, IFLA_IFNAME, name);
	if ((ret = link_call_end(&c, link_get_cb, l)))
		return ret;
	return link_dump(RTM_GETADDR, link_first_addr_cb, l);
}

int link_veth_add(const char *host, const char *peer, int netns_fd, unsigned mtu)
{
	struct nlattr *linkinfo, *data, *peerinfo;
	struct ifinfomsg *ifi, *pifi;
	struct link_call c;
	struct nlmsghdr *nlh;
	int ret;

	ifi = link_call_begin(&c, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, sizeof(*ifi), &ret);
	if (!ifi)
		return ret;
	nlh = c.lc_nlh;
	ifi->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, host);
	mnl_attr_put_u32(nlh, IFLA_MTU, mtu);
	linkinfo = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
	data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
	/* The peer is made directly in the container's namespace, under its final name. */
	peerinfo = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
	pifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*pifi));
	pifi->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, peer);
	mnl_attr_put_u32(nlh, IFLA_MTU, mtu);
	mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, (uint32_t)netns_fd);
	mnl_attr_nest_end(nlh, peerinfo);
	mnl_attr_nest_end(nlh, data);
	mnl_attr_nest_end(nlh, linkinfo);
	return link_call_end(&c, NULL, NULL);
}

static int link_set(int index, int master, bool set_master)
{
	struct ifinfomsg *ifi;
	struct link_call c;
	int ret;

	if (!(ifi = link_call_begin(&c, RTM_NEWLINK, 0, sizeof(*ifi), &ret)))
		return ret;
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = index;
	ifi->ifi_flags = IFF_UP;
	ifi->ifi_change = IFF_UP;
	if (set_master)
		mnl_attr_put_u32(c.lc_nlh, IFLA_MASTER, (uint32_t)master);
	return link_call_end(&c, NULL, NULL);
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
	int ret;

	if (!(ifi = link_call_begin(&c, RTM_DELLINK, 0, sizeof(*ifi), &ret)))
		return ret;
	ifi->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(c.lc_nlh, IFLA_IFNAME, name);
	return link_call_end(&c, NULL, NULL);
}

int link_addr_add(int index, uint32_t addr, unsigned prefix)
{
	uint32_t brd = addr | (prefix ? htonl(~0U >> prefix) : ~0U);
	struct ifaddrmsg *ifa;
	struct link_call c;
	int ret;

	ifa = link_call_begin(&c, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, sizeof(*ifa), &ret);
	if (!ifa)
		return ret;
	ifa->ifa_family = AF_INET;
	ifa->ifa_prefixlen = (uint8_t)prefix;
	ifa->ifa_scope = RT_SCOPE_UNIVERSE;
	ifa->ifa_index = (unsigned)index;
	mnl_attr_put_u32(c.lc_nlh, IFA_LOCAL, addr);
	mnl_attr_put_u32(c.lc_nlh, IFA_ADDRESS, addr);
	/* /31 and /32 have no broadcast address. */
	if (prefix < 31)
		mnl_attr_put_u32(c.lc_nlh, IFA_BROADCAST, brd);
	return link_call_end(&c, NULL, NULL);
}

struct link_addr_match {
	int am_index;
	uint32_t am_addr;
	unsigned am_prefix;
	bool am_found;
};

static int link_addr_match_cb(const struct nlmsghdr *nlh, void *data)
{
	struct link_addr_match *m = data;
	unsigned prefix;
	uint32_t addr;
	int index;

	addr = link_addr_entry(nlh, &index, &prefix);
	if (addr == m->am_addr && index == m->am_index && prefix == m->am_prefix)
		m->am_found = true;
	return MNL_CB_OK;
}

int link_addr_has(int index, uint32_t addr, unsigned prefix)
{
	struct link_addr_match m = {.am_index = index, .am_addr = addr, .am_prefix = prefix};
	int ret = link_dump(RTM_GETADDR, link_addr_match_cb, &m);

	return ret < 0 ? ret : m.am_found;
}

int link_route_add(int index, uint32_t dst, unsigned len, uint32_t gw)
{
	struct link_call c;
	struct rtmsg *rtm;
	int ret;

	rtm = link_call_begin(&c, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, sizeof(*rtm), &ret);
	if (!rtm)
		return ret;
	rtm->rtm_family = AF_INET;
	rtm->rtm_dst_len = (uint8_t)len;
	rtm->rtm_table = RT_TABLE_MAIN;
	rtm->rtm_protocol = RTPROT_BOOT;
	rtm->rtm_scope = gw ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
	rtm->rtm_type = RTN_UNICAST;
	if (len)
		mnl_attr_put_u32(c.lc_nlh, RTA_DST, dst);
	if (gw)
		mnl_attr_put_u32(c.lc_nlh, RTA_GATEWAY, gw);
	mnl_attr_put_u32(c.lc_nlh, RTA_OIF, (uint32_t)index);
	return link_call_end(&c, NULL, NULL);
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
	int ret = link_dump(RTM_GETROUTE, link_route_match_cb, &m);

	return ret < 0 ? ret : m.rm_found;
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
