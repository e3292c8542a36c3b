// SPDX-License-Identifier: MIT
/*
 * The overlay path's Services: the service table as one nftables table (`ip slim_svc_0` or
 * `ip slim_svc_1`, see below) in the host netns, so connections to a ClusterIP that do not go
 * through slim (apps without the shim, fallback) reach a backend too. Shimmed apps get theirs
 * picked in BPF at connect time; this is kube-proxy's nftables mode for everything else. Every
 * change replaces the table, and packets go from the old one to the new one in one step.
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
 * backends in one transaction, about a second in the transactions of SVCNFT_CHUNK elements it
 * is loaded in (tests/unit/test_svcnft.c loads that many).
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

/*
 * The table comes in two generations, `slim_svc_0` and `slim_svc_1`: a reload builds the one not
 * in force, unhooked, in transactions of SVCNFT_CHUNK elements, then hooks it and unhooks the
 * other in one, then drops the other. The kernel runs each transaction's netlink batch without
 * a break (this kernel is not preemptible there): 10,000 services in one transaction held a CPU
 * for 40-60 ms, and a task woken on that CPU meanwhile (a pod's connect, the router's loop)
 * waited as long (tests/unit/test_svcnft.c; pinned to that CPU: 50 ms late, 5 ms with chunks of
 * 4,000). Smaller chunks cost more nft runs (2,500: ~19 runs, 0.8 s instead of 0.5 s, and a
 * busier machine meanwhile); the packet path still changes in one step (the hook swap), from
 * one complete table to the other.
 */
#define SVCNFT_TABLE	 "slim_svc"
#define SVCNFT_TABLE_OLD SVCNFT_TABLE /* the single table of routers before generations */
#define SVCNFT_CHUNK	 5000
/* jhash's seed is random per rule unless given: a fixed one keeps a client's backend across
 * reloads of the table and makes it the same on every host. */
#define SVCNFT_SEED "0x736c696d"

/* The chains that hook the table in; a swap creates them in the new generation and deletes them
 * in the old one. */
static const char *const svcnft_hooks[] = {"prerouting", "output", "postrouting", "untracked_in",
					   "untracked_out"};

/* Whether a table of ours may exist: a run that installs it sets this before it is known to
 * have worked, and only a removal that worked clears it. At start we cannot know (a router that
 * crashed leaves its table), so the first apply replaces or removes whatever is there. */
static bool svcnft_installed = true;
static bool svcnft_busy;  /* a run of ours is queued or running */
static bool svcnft_again; /* the services changed meanwhile: apply once more when it is done */
static bool svcnft_warned_missing;
/* The generation in force, -1 when not known (at start, or after a removal). */
static int svcnft_gen = -1;

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
	unsigned n = svcnft_nbackends(s);
	bool any = false;

	for (unsigned i = 0; i < s->sv_nports; i++) {
		if (!svcnft_port_first(s, i))
			continue;
		t->st_ports++;
		t->st_backends += n;
		any = true;
	}
	if (any && n)
		t->st_pick[n] |= s->sv_affinity ? SVCNFT_PICK_CLIENT : SVCNFT_PICK_RANDOM;
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
		fprintf(t->st_f, "%s\t%s . tcp . %u : goto %s", t->st_n++ ? ",\n" : "", vip,
			ntohs(s->sv_ports[i].sp_port), chain);
	}
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
			fprintf(t->st_f, "%s\t%s . %u . %u : %s . %u", t->st_n++ ? ",\n" : "", vip,
				ntohs(s->sv_ports[i].sp_port), b, be,
				ntohs(s->sv_ports[i].sp_target));
		}
	}
}

static void svcnft_each(struct svcnft_text *t, void (*fn)(const struct service *s, void *arg))
{
	for (size_t i = 0; i < t->st_nsvcs; i++)
		fn(&t->st_svcs[i], t);
}

/* "delete table T" that is valid whether or not T exists: creating it first makes it so. */
static void svcnft_drop_table(FILE *f, const char *table)
{
	fprintf(f, "table ip %s {}\ndelete table ip %s\n", table, table);
}

static void svcnft_table_name(char *buf, size_t len, int gen)
{
	snprintf(buf, len, "%s_%d", SVCNFT_TABLE, gen);
}

/*
 * Transaction 1 of a reload: generation gen's table, unhooked, with empty maps and the chains
 * their elements jump to. A leftover of gen (a run that failed half way) goes first, but never
 * the table in force: giving its prerouting chain another hook fails, and with it the whole
 * transaction (so a router that does not know which generation is in force can guess).
 */
static void svcnft_write_prep(struct svcnft_text *t, const char *table)
{
	FILE *f = t->st_f;

	fprintf(f, "table ip %s {}\nadd chain ip %s prerouting { type filter hook input priority 0; }\n",
		table, table);
	fprintf(f, "delete table ip %s\ntable ip %s {\n", table, table);
	fputs("\tmap service_ips {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n\t}\n"
	      "\tmap backends {\n\t\ttypeof ip daddr . tcp dport . numgen random mod 1 : ip daddr . "
	      "tcp dport\n\t}\n",
	      f);
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
}

/*
 * Elements of map `ips` (service_ips, else backends) for services [*from, ...), whole services,
 * until at least chunk elements (or the services end); *from moves past them. Returns how many
 * elements were written: nothing at all when none (nft refuses "{ }").
 */
static size_t svcnft_write_elements(struct svcnft_text *t, const char *table, bool ips,
				    size_t *from, size_t chunk)
{
	size_t end = *from, n = 0;

	while (end < t->st_nsvcs && n < chunk) {
		struct svcnft_text c = {0};

		svcnft_count(&t->st_svcs[end++], &c);
		n += ips ? c.st_ports : c.st_backends;
	}
	if (n) {
		fprintf(t->st_f, "add element ip %s %s {\n", table, ips ? "service_ips" : "backends");
		t->st_n = 0;
		for (size_t i = *from; i < end; i++)
			(ips ? svcnft_service_ips : svcnft_backends)(&t->st_svcs[i], t);
		fputs("\n}\n", t->st_f);
	}
	*from = end;
	return n;
}

/*
 * The swap: the chains that hook generation gen in, and the other generation's (and a table of
 * a router before generations) out, in one transaction, so every packet sees one whole table.
 */
static void svcnft_write_swap(struct svcnft_text *t, const char *table, const char *old,
			      const struct cluster *c, const struct cluster_node *self)
{
	char services[INET_ADDRSTRLEN + 4];
	FILE *f = t->st_f;

	svcnft_cidr(services, sizeof(services), &c->cl_services);
	fprintf(f, "table ip %s {\n", table);
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
	fputs("}\n", f);
	/* Out: each chain deleted whether or not it is there (made first, as for tables). */
	for (int k = 0; k < 2; k++) {
		const char *t_old = k ? SVCNFT_TABLE_OLD : old;

		fprintf(f, "table ip %s {}\n", t_old);
		for (size_t i = 0; i < sizeof(svcnft_hooks) / sizeof(svcnft_hooks[0]); i++)
			fprintf(f, "add chain ip %s %s\ndelete chain ip %s %s\n", t_old,
				svcnft_hooks[i], t_old, svcnft_hooks[i]);
	}
}

/* What svcnft_step writes next. */
enum svcnft_phase {
	SVCNFT_PREP,
	SVCNFT_SERVICE_IPS,
	SVCNFT_BACKENDS,
	SVCNFT_SWAP,
	SVCNFT_CLEANUP,
	SVCNFT_DONE
};

int svcnft_step(FILE *f, struct svcnft_run *r, int prev)
{
	struct svcnft_text t = {.st_f = f, .st_svcs = r->sr_svcs, .st_nsvcs = r->sr_nsvcs};
	char table[32], old[32];

	if (prev < 0) {
		if (r->sr_phase != SVCNFT_SERVICE_IPS || r->sr_cursor || !r->sr_guessed)
			return prev;
		/* The guess was the generation in force (its prep failed): the other one. */
		r->sr_guessed = false;
		r->sr_gen ^= 1;
		r->sr_phase = SVCNFT_PREP;
	} else if (r->sr_phase == SVCNFT_SERVICE_IPS && r->sr_cursor == 0) {
		r->sr_guessed = false; /* the prep went through */
	}
	if (r->sr_phase == SVCNFT_CLEANUP)
		r->sr_swapped = true; /* the swap just went through */
	svcnft_table_name(table, sizeof(table), r->sr_gen);
	svcnft_table_name(old, sizeof(old), r->sr_gen ^ 1);
	for (;;) {
		switch (r->sr_phase) {
		case SVCNFT_PREP:
			svcnft_each(&t, svcnft_count);
			if (!t.st_ports) {
				/* No services: every table of ours goes, in one transaction. */
				svcnft_drop_table(f, table);
				svcnft_drop_table(f, old);
				svcnft_drop_table(f, SVCNFT_TABLE_OLD);
				r->sr_phase = SVCNFT_DONE;
				r->sr_removal = true;
				return SPAWN_STEP_RUN;
			}
			svcnft_write_prep(&t, table);
			r->sr_phase = SVCNFT_SERVICE_IPS;
			r->sr_cursor = 0;
			return r->sr_guessed ? SPAWN_STEP_RUN_QUIET : SPAWN_STEP_RUN;
		case SVCNFT_SERVICE_IPS:
		case SVCNFT_BACKENDS: {
			size_t n = svcnft_write_elements(&t, table,
							 r->sr_phase == SVCNFT_SERVICE_IPS,
							 &r->sr_cursor, r->sr_chunk);

			if (r->sr_cursor == r->sr_nsvcs) {
				r->sr_phase++;
				r->sr_cursor = 0;
			}
			if (n)
				return SPAWN_STEP_RUN;
			break;
		}
		case SVCNFT_SWAP:
			svcnft_write_swap(&t, table, old, &r->sr_cluster,
					  r->sr_has_self ? &r->sr_self : NULL);
			r->sr_phase = SVCNFT_CLEANUP;
			return SPAWN_STEP_RUN;
		case SVCNFT_CLEANUP:
			svcnft_drop_table(f, old);
			svcnft_drop_table(f, SVCNFT_TABLE_OLD);
			r->sr_phase = SVCNFT_DONE;
			return SPAWN_STEP_RUN;
		case SVCNFT_DONE:
			return 0;
		}
	}
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
 * What the worker thread writes the table from: a copy of the services in force (their backends
 * into one array) and of the ranges, taken on the loop in about a millisecond for 10,000
 * services. Writing the text itself takes ~20 ms for as many, too long for the loop.
 */
struct svcnft_snap {
	struct svcnft_run sn_run; /* the transactions, written from sn_svcs */
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
	svcnft_run_init(&sn->sn_run, sn->sn_svcs, sn->sn_n, router.r_cluster, router.r_self,
			svcnft_gen);
	return sn;
}

static void svcnft_applied(int ret, void *arg)
{
	struct svcnft_snap *sn = arg;
	struct svcnft_run *r = &sn->sn_run;

	svcnft_busy = false;
	if (r->sr_swapped)
		svcnft_gen = r->sr_gen; /* in force, even if the old one could not be dropped */
	if (ret < 0)
		log_warnx("%s: nft -f failed (%s): overlay services %s", __func__, strerror(-ret),
			  r->sr_swapped ? "in force, the old table left behind" : "unchanged");
	else if (r->sr_removal) {
		svcnft_installed = false;
		svcnft_gen = -1;
	}
	if (svcnft_again) {
		svcnft_again = false;
		svcnft_apply();
	}
}

/* In the worker: the next transaction of the run. */
static int svcnft_snap_step(FILE *f, unsigned step, int prev, void *arg)
{
	struct svcnft_snap *sn = arg;

	(void)step;
	return svcnft_step(f, &sn->sn_run, prev);
}

void svcnft_run_init(struct svcnft_run *r, const struct service *svcs, size_t n,
		     const struct cluster *c, const struct cluster_node *self, int gen)
{
	*r = (struct svcnft_run){
		.sr_svcs = svcs,
		.sr_nsvcs = n,
		.sr_gen = gen < 0 ? 0 : gen ^ 1,
		.sr_guessed = gen < 0,
		.sr_chunk = SVCNFT_CHUNK,
	};
	if (c)
		r->sr_cluster = *c;
	if (self) {
		r->sr_self = *self;
		r->sr_has_self = true;
	}
}

void svcnft_apply(void)
{
	struct svcnft_snap *sn;
	const char *nft;
	const char *argv[4];
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
	if (sn->sn_ports > 0)
		svcnft_installed = true;
	/* sn belongs to the run from here on (svcnft_applied reads it before it is freed) */
	ret = spawn_async_steps(argv, svcnft_snap_step, sn, svcnft_snap_free, svcnft_applied, sn);
	if (ret < 0) {
		svcnft_snap_free(sn);
		goto fail;
	}
	svcnft_busy = true;
	return;
fail:
	log_warnx("%s: %s: overlay services unchanged", __func__, strerror(-ret));
}

void svcnft_remove(void)
{
	const char *nft = spawn_find("nft");
	const char *argv[] = {nft, "-f", "-", NULL};
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	/* After spawn_stop(): a run of ours that was queued is dropped, one running is done. */
	svcnft_busy = svcnft_again = false;
	if (!nft || !svcnft_installed || !(f = open_memstream(&text, &len)))
		return;
	for (int gen = 0; gen < 2; gen++) {
		char table[32];

		svcnft_table_name(table, sizeof(table), gen);
		svcnft_drop_table(f, table);
	}
	svcnft_drop_table(f, SVCNFT_TABLE_OLD);
	if (fclose(f) == 0 && spawn_feed(argv, -1, text, len) == 0) {
		svcnft_installed = false;
		svcnft_gen = -1;
	}
	free(text);
}
