// SPDX-License-Identifier: MIT
/*
 * The overlay path's Services: the service table as one nftables table (`ip slim_svc`) in the
 * host netns, so connections to a ClusterIP that do not go through slim (apps without the shim,
 * fallback) reach a backend too. Shimmed apps get theirs picked in BPF at connect time; this is
 * kube-proxy's nftables mode for everything else. The table is replaced atomically (one
 * `nft -f` transaction) on every change.
 *
 * The first packet of a connection costs one verdict-map lookup by VIP . protocol . port,
 * whatever the number of services. The verdict jumps to the chain that picks one of N backends
 * (numgen random, or jhash of the client address for ClientIP affinity), and that pick is the
 * last part of the key into one map of VIP . port . index -> backend . targetPort, which the
 * chain's dnat reads. Later packets never see these chains: conntrack translates them.
 *
 * kube-proxy writes a chain per service port and one per endpoint, with an anonymous verdict
 * map in each. Loaded whole, 10,000 such services took 25 to 60 s here, and still 7 s with the
 * endpoint chains folded into one anonymous map per service: the kernel's time grows with the
 * square of the number of maps in a table (0.4 s for 2,500 services, 6.8 s for 10,000). Here
 * the chains are shared by every service port with the same number of backends and the table
 * has two maps, so a reload grows linearly: about half a second for 10,000 services of 3
 * backends (tests/unit/test_svcnft.c loads that many).
 *
 * ClientIP affinity on this path is a hash of the client address modulo the number of
 * backends, the same on every host and across reloads: no timeout, and a change in the number
 * of backends moves most clients. The BPF path (Maglev, with the timeout) is the precise one.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "log.h"
#include "router.h"

#define SVCNFT_TABLE "slim_svc"
/* jhash's seed is random per rule unless given: a fixed one keeps a client's backend across
 * reloads of the table and makes it the same on every host. */
#define SVCNFT_SEED "0x736c696d"

/* A reload of the table must be one transaction, so the delete must be valid whether or not
 * the table exists: creating it first makes it so. */
static const char svcnft_delete[] = "table ip " SVCNFT_TABLE " {}\n"
				    "delete table ip " SVCNFT_TABLE "\n";

/* Whether our table may exist: a run that installs it sets this before it is known to have
 * worked, and only a removal that worked clears it. At start we cannot know (a router that
 * crashed leaves its table), so the first apply replaces or removes whatever is there. */
static bool svcnft_installed = true;
static bool svcnft_busy;  /* a run of ours is queued or running */
static bool svcnft_again; /* the services changed meanwhile: apply once more when it is done */
static bool svcnft_warned_missing;

/* The pick chains a table needs: bit 0 random, bit 1 by client, per backend count. */
#define SVCNFT_PICK_RANDOM 1
#define SVCNFT_PICK_CLIENT 2

struct svcnft_text {
	FILE *st_f;
	const struct service *st_svcs; /* the services written (a snapshot: see svcnft_apply) */
	size_t st_nsvcs;
	size_t st_ports;    /* service ports (the elements of service_ips) */
	size_t st_backends; /* service ports times their backends (the elements of backends) */
	size_t st_n;	    /* elements written into the map being written */
	uint8_t st_pick[SERVICE_MAX_BACKENDS + 1];
};

static void svcnft_cidr(char *buf, size_t len, const struct cidr *c)
{
	char a[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &c->net, a, sizeof(a));
	snprintf(buf, len, "%s/%u", a, c->len);
}

/* Whether port i of s is the first of its number (a document with a port twice would make
 * nft refuse the whole table, every other service with it). */
static bool svcnft_port_first(const struct service *s, unsigned i)
{
	for (unsigned j = 0; j < i; j++)
		if (s->sv_ports[j].sp_port == s->sv_ports[i].sp_port)
			return false;
	return true;
}

static unsigned svcnft_nbackends(const struct service *s)
{
	return s->sv_nbackends < SERVICE_MAX_BACKENDS ? s->sv_nbackends : SERVICE_MAX_BACKENDS;
}

static void svcnft_count(const struct service *s, void *arg)
{
	struct svcnft_text *t = arg;

	for (unsigned i = 0; i < s->sv_nports; i++) {
		if (!svcnft_port_first(s, i))
			continue;
		t->st_ports++;
		t->st_backends += svcnft_nbackends(s);
	}
}

/* service_ips: VIP . tcp . port -> goto the chain that picks among its backends. */
static void svcnft_service_ips(const struct service *s, void *arg)
{
	struct svcnft_text *t = arg;
	unsigned n = svcnft_nbackends(s);
	char vip[INET_ADDRSTRLEN], chain[32];

	inet_ntop(AF_INET, &s->sv_ip, vip, sizeof(vip));
	if (!n)
		snprintf(chain, sizeof(chain), "refuse");
	else
		snprintf(chain, sizeof(chain), "pick-%u%s", n, s->sv_affinity ? "-by-client" : "");
	for (unsigned i = 0; i < s->sv_nports; i++) {
		if (!svcnft_port_first(s, i))
			continue;
		fprintf(t->st_f, "%s\t\t\t%s . tcp . %u : goto %s", t->st_n++ ? ",\n" : "", vip,
			ntohs(s->sv_ports[i].sp_port), chain);
	}
	if (n)
		t->st_pick[n] |= s->sv_affinity ? SVCNFT_PICK_CLIENT : SVCNFT_PICK_RANDOM;
}

/* backends: VIP . port . index -> backend . targetPort, index 0..N-1 in ascending backend
 * order (so an unchanged set of backends keeps its indexes, and affinity its clients). */
static void svcnft_backends(const struct service *s, void *arg)
{
	struct svcnft_text *t = arg;
	unsigned n = svcnft_nbackends(s);
	char vip[INET_ADDRSTRLEN], be[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &s->sv_ip, vip, sizeof(vip));
	for (unsigned i = 0; i < s->sv_nports; i++) {
		if (!svcnft_port_first(s, i))
			continue;
		for (unsigned b = 0; b < n; b++) {
			inet_ntop(AF_INET, &s->sv_backends[b], be, sizeof(be));
			fprintf(t->st_f, "%s\t\t\t%s . %u . %u : %s . %u", t->st_n++ ? ",\n" : "",
				vip, ntohs(s->sv_ports[i].sp_port), b, be,
				ntohs(s->sv_ports[i].sp_target));
		}
	}
}

static void svcnft_each(struct svcnft_text *t, void (*fn)(const struct service *s, void *arg))
{
	for (size_t i = 0; i < t->st_nsvcs; i++)
		fn(&t->st_svcs[i], t);
}

/* One map with its n elements; nft refuses an empty "elements = { }", so none means no line. */
static void svcnft_map(struct svcnft_text *t, const char *name, const char *type, size_t n,
		       void (*fn)(const struct service *s, void *arg))
{
	fprintf(t->st_f, "\tmap %s {\n\t\t%s\n", name, type);
	if (n) {
		fputs("\t\telements = {\n", t->st_f);
		t->st_n = 0;
		svcnft_each(t, fn);
		fputs("\n\t\t}\n", t->st_f);
	}
	fputs("\t}\n", t->st_f);
}

void nft_write_untracked(FILE *f, const struct cluster *c)
{
	char overlay[INET_ADDRSTRLEN + 4], services[INET_ADDRSTRLEN + 4];

	/*
	 * Only pod traffic needs conntrack. Without these, a ct rule (or a nat chain) turns on
	 * tracking for every packet of the netns: each slim connection (host sockets, fabric to
	 * fabric) and every VXLAN datagram would pay for it, the cost slim exists to avoid. Pods'
	 * traffic (forwarded, or from a pod) and the host's own connections to pods and Services
	 * stay tracked: the Services' DNAT (svcnft.c) must see their replies.
	 */
	svcnft_cidr(overlay, sizeof(overlay), &c->cl_overlay);
	svcnft_cidr(services, sizeof(services), &c->cl_services);
	fprintf(f,
		"\tchain untracked_in {\n"
		"\t\ttype filter hook prerouting priority raw; policy accept;\n"
		"\t\tip saddr != %s fib daddr type local notrack\n"
		"\t}\n"
		"\tchain untracked_out {\n"
		"\t\ttype filter hook output priority raw; policy accept;\n"
		"\t\tip daddr != %s ip daddr != %s notrack\n"
		"\t}\n",
		overlay, services, overlay);
}

/*
 * Writes table ip slim_svc for the services svcs[0..n) (c: the service and overlay ranges; self:
 * this host, whose pod range gets the hairpin rule, or NULL) to f, and nothing when no service
 * has a port. Returns how many service ports the table serves (0: no table), or -errno. Kept
 * apart from running nft so a test can read and load the text.
 */
int svcnft_write(FILE *f, const struct cluster *c, const struct cluster_node *self,
		 const struct service *svcs, size_t nsvcs)
{
	struct svcnft_text *t;
	char services[INET_ADDRSTRLEN + 4], overlay[INET_ADDRSTRLEN + 4];
	size_t ports;

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->st_f = f;
	t->st_svcs = svcs;
	t->st_nsvcs = nsvcs;
	svcnft_each(t, svcnft_count);
	ports = t->st_ports;
	if (!ports) {
		free(t);
		return 0;
	}
	svcnft_cidr(services, sizeof(services), &c->cl_services);
	svcnft_cidr(overlay, sizeof(overlay), &c->cl_overlay);

	fprintf(f, "table ip %s {\n", SVCNFT_TABLE);
	svcnft_map(t, "service_ips", "type ipv4_addr . inet_proto . inet_service : verdict", ports,
		   svcnft_service_ips);
	svcnft_map(t, "backends",
		   "typeof ip daddr . tcp dport . numgen random mod 1 : ip daddr . tcp dport",
		   t->st_backends, svcnft_backends);
	/*
	 * Pods' connections arrive at prerouting, the host's own at output ("dstnat" is a name
	 * nft 1.0.6 knows at prerouting only; it is -100 at both). A VIP . port no service has
	 * is refused, as a connect through slim would be, rather than routed to where the
	 * host's default route goes.
	 */
	fprintf(f,
		"\tchain prerouting {\n"
		"\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
		"\t\tip daddr . meta l4proto . th dport vmap @service_ips\n"
		"\t\tip daddr %s goto refuse\n"
		"\t}\n"
		"\tchain output {\n"
		"\t\ttype nat hook output priority -100; policy accept;\n"
		"\t\tip daddr . meta l4proto . th dport vmap @service_ips\n"
		"\t\tip daddr %s goto refuse\n"
		"\t}\n",
		services, services);
	/*
	 * A client and a backend on this host's bridge: left alone, the backend's reply goes
	 * straight back over the bridge and the client, which talked to the VIP, resets a packet
	 * from the backend's address. br_netfilter (built in here, on by default in every netns)
	 * passes bridged packets through conntrack, which undoes the DNAT, but it can be off or
	 * missing; and a pod that is its own service's backend is sent its own address as the
	 * source, which no bridge setting mends. Taking the VIP as the source sends every reply
	 * back through the host. Not the host's address (masquerade): replies to that are local
	 * traffic, which the notrack chains (ours below, nft.c's) keep from conntrack, so they
	 * would never be translated back. The backend sees the service as its client.
	 *
	 * With br_netfilter on, the bridge forwards a packet DNATed to a pod on the same bridge
	 * itself (it is not routed), so a pod that is its own backend is reached only when its
	 * bridge port has hairpin mode on (whoever makes the port sets it, as kubelet's
	 * hairpin-veth does).
	 */
	if (self) {
		char pods[INET_ADDRSTRLEN + 4];

		svcnft_cidr(pods, sizeof(pods), &self->cn_pod_cidr);
		fprintf(f,
			"\tchain postrouting {\n"
			"\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
			"\t\tct status dnat ip saddr %s ip daddr %s "
			"snat ip to ct original ip daddr\n"
			"\t}\n",
			pods, pods);
	}
	/* NAT needs conntrack: only for pods' traffic, as the policy filter's table says. */
	nft_write_untracked(f, c);
	for (unsigned n = 1; n <= SERVICE_MAX_BACKENDS; n++) {
		if (t->st_pick[n] & SVCNFT_PICK_RANDOM)
			fprintf(f,
				"\tchain pick-%u {\n"
				"\t\tdnat ip to ip daddr . tcp dport . numgen random mod %u map "
				"@backends\n"
				"\t}\n",
				n, n);
		if (t->st_pick[n] & SVCNFT_PICK_CLIENT)
			fprintf(f,
				"\tchain pick-%u-by-client {\n"
				"\t\tdnat ip to ip daddr . tcp dport . jhash ip saddr mod %u seed "
				"%s map @backends\n"
				"\t}\n",
				n, n, SVCNFT_SEED);
	}
	/* A service without backends refuses at once: the client sees ECONNREFUSED. */
	fputs("\tchain refuse {\n"
	      "\t\tmeta l4proto tcp reject with tcp reset\n"
	      "\t\treject\n"
	      "\t}\n"
	      "}\n",
	      f);
	free(t);
	if (ferror(f))
		return -EIO;
	return ports > INT_MAX ? INT_MAX : (int)ports;
}

static void svcnft_applied(int ret, void *arg)
{
	bool installing = arg != NULL;

	svcnft_busy = false;
	if (ret < 0)
		log_warnx("%s: nft -f failed (%s): overlay services unchanged", __func__,
			  strerror(-ret));
	else if (!installing)
		svcnft_installed = false;
	if (svcnft_again) {
		svcnft_again = false;
		svcnft_apply();
	}
}

/*
 * What the worker thread writes the table from: a copy of the services in force (their backends
 * into one array) and of the ranges, taken on the loop in about a millisecond for 10,000
 * services. Writing the text itself takes ~20 ms for as many, too long for the loop.
 */
struct svcnft_snap {
	struct cluster sn_cluster; /* the ranges only (its pointers are not followed) */
	struct cluster_node sn_self;
	bool sn_has_self;
	struct service *sn_svcs;
	size_t sn_n, sn_cap;
	uint32_t *sn_backends;
	size_t sn_nbackends;
	size_t sn_ports;
	bool sn_failed;
};

static void svcnft_snap_free(void *arg)
{
	struct svcnft_snap *sn = arg;

	free(sn->sn_svcs);
	free(sn->sn_backends);
	free(sn);
}

static void svcnft_snap_count(const struct service *s, void *arg)
{
	struct svcnft_snap *sn = arg;

	sn->sn_cap++;
	sn->sn_nbackends += svcnft_nbackends(s);
}

static void svcnft_snap_add(const struct service *s, void *arg)
{
	struct svcnft_snap *sn = arg;
	struct service *c;
	unsigned n = svcnft_nbackends(s);

	if (sn->sn_n == sn->sn_cap)
		return;
	c = &sn->sn_svcs[sn->sn_n++];
	*c = *s;
	/* Nothing the writer does not read: the rest belongs to the loop. */
	c->sv_selector = NULL;
	c->sv_endpoints = NULL;
	c->sv_table = NULL;
	c->sv_backends = sn->sn_backends + sn->sn_nbackends;
	memcpy(c->sv_backends, s->sv_backends, n * sizeof(uint32_t));
	c->sv_nbackends = n;
	sn->sn_nbackends += n;
	for (unsigned i = 0; i < s->sv_nports; i++)
		sn->sn_ports += svcnft_port_first(s, i);
}

static struct svcnft_snap *svcnft_snapshot(void)
{
	struct svcnft_snap *sn = calloc(1, sizeof(*sn));

	if (!sn)
		return NULL;
	service_foreach(svcnft_snap_count, sn);
	sn->sn_svcs = calloc(sn->sn_cap + 1, sizeof(*sn->sn_svcs));
	sn->sn_backends = calloc(sn->sn_nbackends + 1, sizeof(uint32_t));
	if (!sn->sn_svcs || !sn->sn_backends) {
		svcnft_snap_free(sn);
		return NULL;
	}
	sn->sn_nbackends = 0;
	service_foreach(svcnft_snap_add, sn);
	if (router.r_cluster)
		sn->sn_cluster = *router.r_cluster;
	if (router.r_self) {
		sn->sn_self = *router.r_self;
		sn->sn_has_self = true;
	}
	return sn;
}

/* In the worker: the whole transaction (our table replaced, or removed). */
static int svcnft_snap_write(FILE *f, void *arg)
{
	struct svcnft_snap *sn = arg;
	int ports;

	fputs(svcnft_delete, f);
	ports = svcnft_write(f, &sn->sn_cluster, sn->sn_has_self ? &sn->sn_self : NULL,
			     sn->sn_svcs, sn->sn_n);
	return ports < 0 ? ports : 0;
}

void svcnft_apply(void)
{
	struct svcnft_snap *sn;
	const char *nft;
	const char *argv[4];
	size_t ports;
	int ret;

	/* Changes come in bursts (a document, then its backends): while a run is on its way,
	 * remember that another is needed and build it when this one is done, from the tables
	 * as they are then. */
	if (svcnft_busy) {
		svcnft_again = true;
		return;
	}
	nft = spawn_find("nft");
	if (!nft) {
		if (!svcnft_warned_missing && service_count())
			log_warnx("%s: nft not found: services are reachable through slim only",
				  __func__);
		svcnft_warned_missing = service_count() > 0;
		return;
	}
	argv[0] = nft;
	argv[1] = "-f";
	argv[2] = "-";
	argv[3] = NULL;
	if (!router.r_cluster)
		return;
	sn = svcnft_snapshot();
	if (!sn) {
		ret = -ENOMEM;
		goto fail;
	}
	if (sn->sn_ports == 0 && !svcnft_installed) {
		svcnft_snap_free(sn);
		return; /* no services, and nothing of ours to remove */
	}
	ports = sn->sn_ports; /* sn belongs to the run from here on */
	ret = spawn_async_write(argv, svcnft_snap_write, sn, svcnft_snap_free, svcnft_applied,
				ports > 0 ? (void *)1 : NULL);
	if (ret < 0) {
		svcnft_snap_free(sn);
		goto fail;
	}
	svcnft_busy = true;
	if (ports > 0)
		svcnft_installed = true;
	return;
fail:
	log_warnx("%s: %s: overlay services unchanged", __func__, strerror(-ret));
}

void svcnft_remove(void)
{
	const char *nft = spawn_find("nft");
	const char *argv[] = {nft, "-f", "-", NULL};

	/* After spawn_stop(): a run of ours that was queued is dropped, one running is done. */
	svcnft_busy = svcnft_again = false;
	if (!nft || !svcnft_installed)
		return;
	if (spawn_feed(argv, -1, svcnft_delete, sizeof(svcnft_delete) - 1) == 0)
		svcnft_installed = false;
}
