// SPDX-License-Identifier: MIT
/*
 * The overlay path's policy filter: the compiled policy of this host's pods as one nftables
 * table (`inet slim`) in the host netns, so traffic that does not go through slim (apps without
 * the shim, fallback) is allowed or refused exactly as a slim connect would be. The table is
 * replaced atomically (one `nft -f` transaction) on every change.
 *
 * Every packet to or from an isolated local pod must match an allowance (sets keyed by local
 * pod . peer prefix [. protocol . port range], so the cost per packet does not grow with the
 * number of rules), with conntrack telling which end is the client. A refused TCP connect gets
 * a reset, so a non-shimmed client sees ECONNREFUSED just like a shimmed one; so does the next
 * packet of a connection a new policy forbids.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "log.h"
#include "router.h"

#define NFT_TABLE      "slim"
#define NFT_REFRESH_MS 50
/* Bridged (same-host) pod traffic reaches the inet forward hook only through br_netfilter. */
#define NFT_BRIDGE_SYSCTL "/proc/sys/net/bridge/bridge-nf-call-iptables"

static bool nft_installed; /* our table exists (so an empty policy must delete it) */

struct nft_text {
	FILE *f;
	const char *set_any[POLICY_NDIRS], *set_ports[POLICY_NDIRS];
	size_t n[POLICY_NDIRS * 2];
	int which; /* the set being written: dir * 2 + (ports ? 1 : 0) */
};

static void nft_prefix(char *buf, size_t len, uint32_t net, uint8_t plen)
{
	char a[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &net, a, sizeof(a));
	if (plen == 32)
		snprintf(buf, len, "%s", a);
	else
		snprintf(buf, len, "%s/%u", a, plen);
}

static void nft_element(const struct policy_allowance *a, void *arg)
{
	struct nft_text *t = arg;
	const struct dir_pod *d = directory_find(a->pa_local);
	char local[INET_ADDRSTRLEN + 4], peer[INET_ADDRSTRLEN + 4];
	bool ports = !a->pa_all_ports;
	int slot = a->pa_dir * 2 + (ports ? 1 : 0);

	/* Each host filters its own pods; the others' hosts filter theirs. */
	if (!d || !d->dp_local || slot != t->which)
		return;
	nft_prefix(local, sizeof(local), a->pa_local, 32);
	nft_prefix(peer, sizeof(peer), a->pa_net, a->pa_len);
	fprintf(t->f, "%s%s . %s", t->n[slot]++ ? ",\n\t\t\t" : "", local, peer);
	if (!ports)
		return;
	fprintf(t->f, " . %s . %u", a->pa_proto == IPPROTO_UDP ? "udp" : "tcp", a->pa_lo);
	if (a->pa_hi != a->pa_lo)
		fprintf(t->f, "-%u", a->pa_hi);
}

struct nft_iso {
	FILE *f;
	enum policy_dir dir;
	size_t n;
};

static void nft_isolated(uint32_t ip, enum policy_dir dir, void *arg)
{
	struct nft_iso *x = arg;
	const struct dir_pod *d = directory_find(ip);
	char a[INET_ADDRSTRLEN];

	if (dir != x->dir || !d || !d->dp_local)
		return;
	inet_ntop(AF_INET, &ip, a, sizeof(a));
	fprintf(x->f, "%s%s", x->n++ ? ", " : "", a);
}

/* Writes the whole table; returns how many local pods are isolated (0: no table needed). */
static size_t nft_ruleset(FILE *f)
{
	static const char *const dirs[POLICY_NDIRS] = {"ingress", "egress"};
	struct nft_text t = {.f = f};
	size_t isolated = 0;

	fprintf(f, "table inet %s {\n", NFT_TABLE);
	for (int dir = 0; dir < POLICY_NDIRS; dir++) {
		struct nft_iso x = {.f = f, .dir = (enum policy_dir)dir};

		fprintf(f, "\tset %s_isolated {\n\t\ttype ipv4_addr\n\t\telements = { ", dirs[dir]);
		policy_foreach_isolated(nft_isolated, &x);
		isolated += x.n;
		/* nft wants at least one element when "elements" is given; 0.0.0.0 never matches.
		 */
		fprintf(f, "%s }\n\t}\n", x.n ? "" : "0.0.0.0");

		fprintf(f,
			"\tset %s_any {\n\t\ttype ipv4_addr . ipv4_addr\n\t\tflags interval\n"
			"\t\telements = { ",
			dirs[dir]);
		t.which = dir * 2;
		policy_foreach_allowance(nft_element, &t);
		fprintf(f, "%s }\n\t}\n", t.n[dir * 2] ? "" : "0.0.0.0 . 0.0.0.0");

		fprintf(f,
			"\tset %s_ports {\n\t\ttype ipv4_addr . ipv4_addr . inet_proto . "
			"inet_service\n\t\tflags interval\n\t\telements = { ",
			dirs[dir]);
		t.which = dir * 2 + 1;
		policy_foreach_allowance(nft_element, &t);
		fprintf(f, "%s }\n\t}\n", t.n[dir * 2 + 1] ? "" : "0.0.0.0 . 0.0.0.0 . tcp . 0");
	}
	/*
	 * Egress is judged with the local pod as source, ingress with it as destination; a
	 * connection between two local pods must pass both. "return" from a check goes on to the
	 * next one; falling off a check's end refuses. Established connections are judged too,
	 * packet by packet (replies with the roles swapped, the server's port being the source
	 * port): a connection the policy forbids since it was set up gets a reset on its next
	 * packet, so the overlay is no way around a policy change either. Pods no policy isolates
	 * cost two set lookups per packet.
	 */
	fprintf(f, "\tchain pods {\n"
		   "\t\ttype filter hook forward priority filter; policy accept;\n"
		   "\t\tct state related accept\n"
		   "\t\tct direction reply jump reply_checks\n"
		   "\t\tip saddr @egress_isolated jump egress_check\n"
		   "\t\tip daddr @ingress_isolated jump ingress_check\n"
		   "\t}\n"
		   "\tchain egress_check {\n"
		   "\t\tip saddr . ip daddr @egress_any return\n"
		   "\t\tip saddr . ip daddr . meta l4proto . th dport @egress_ports return\n"
		   "\t\tcounter jump refuse\n"
		   "\t}\n"
		   "\tchain ingress_check {\n"
		   "\t\tip daddr . ip saddr @ingress_any return\n"
		   "\t\tip daddr . ip saddr . meta l4proto . th dport @ingress_ports return\n"
		   "\t\tcounter jump refuse\n"
		   "\t}\n"
		   "\tchain reply_checks {\n"
		   "\t\tip daddr @egress_isolated jump egress_check_reply\n"
		   "\t\tip saddr @ingress_isolated jump ingress_check_reply\n"
		   "\t\taccept\n"
		   "\t}\n"
		   "\tchain egress_check_reply {\n"
		   "\t\tip daddr . ip saddr @egress_any return\n"
		   "\t\tip daddr . ip saddr . meta l4proto . th sport @egress_ports return\n"
		   "\t\tcounter jump refuse\n"
		   "\t}\n"
		   "\tchain ingress_check_reply {\n"
		   "\t\tip saddr . ip daddr @ingress_any return\n"
		   "\t\tip saddr . ip daddr . meta l4proto . th sport @ingress_ports return\n"
		   "\t\tcounter jump refuse\n"
		   "\t}\n"
		   "\tchain refuse {\n"
		   "\t\tmeta l4proto tcp reject with tcp reset\n"
		   "\t\treject with icmpx admin-prohibited\n"
		   "\t}\n");
	nft_write_untracked(f, router.r_cluster);
	fprintf(f, "}\n");
	return isolated;
}

/* Runs `nft -f -` with text on its stdin. 0 or -errno (-EIO: nft refused it). */
static int nft_run(const char *text, size_t len)
{
	const char *nft = spawn_find("nft");
	const char *argv[] = {nft, "-f", "-", NULL};

	return nft ? spawn_feed(argv, -1, text, len) : -ENOENT;
}

static void nft_enable_bridge_hook(void)
{
	int fd = open(NFT_BRIDGE_SYSCTL, O_WRONLY | O_CLOEXEC);

	if (fd < 0 || write(fd, "1\n", 2) != 2)
		log_warn("%s: %s (same-host overlay traffic is not filtered)", __func__,
			 NFT_BRIDGE_SYSCTL);
	if (fd >= 0)
		close(fd);
}

struct nft_apply_ctx {
	bool na_installed; /* what the table will be once this script is in force */
	spawn_done_fn na_done;
	void *na_arg;
};

static void nft_applied(int ret, void *arg)
{
	struct nft_apply_ctx *ctx = arg;

	if (ret < 0)
		log_warnx("%s: nft -f failed (%s): overlay filter unchanged", __func__,
			  strerror(-ret));
	else
		nft_installed = ctx->na_installed;
	if (ctx->na_done)
		ctx->na_done(ret, ctx->na_arg);
	free(ctx);
}

void nft_apply(spawn_done_fn done, void *arg)
{
	const char *nft = spawn_find("nft");
	const char *argv[] = {nft, "-f", "-", NULL};
	char *text = NULL, *body = NULL;
	size_t len = 0, blen = 0, isolated;
	struct nft_apply_ctx *ctx;
	FILE *f;
	int ret;

	/* The script is built here, from the tables as they are; only running it waits. */
	f = open_memstream(&body, &blen);
	if (!f) {
		ret = -ENOMEM;
		goto fail;
	}
	isolated = nft_ruleset(f);
	fclose(f);
	if (!isolated && !nft_installed) {
		free(body);
		ret = 0; /* nothing to filter, nothing of ours to remove */
		goto fail;
	}
	f = open_memstream(&text, &len);
	if (!f) {
		free(body);
		ret = -ENOMEM;
		goto fail;
	}
	/* Create-then-delete makes the delete valid whether or not the table exists; the whole
	 * file is one transaction, so packets never see a missing or half-built table. */
	fprintf(f, "table inet %s {}\ndelete table inet %s\n", NFT_TABLE, NFT_TABLE);
	if (isolated)
		fputs(body, f);
	fclose(f);
	free(body);
	if (isolated)
		nft_enable_bridge_hook();
	ctx = calloc(1, sizeof(*ctx));
	ret = !nft ? -ENOENT : !ctx ? -ENOMEM : 0;
	if (ret == 0) {
		ctx->na_installed = isolated > 0;
		ctx->na_done = done;
		ctx->na_arg = arg;
		ret = spawn_async(argv, -1, text, len, nft_applied, ctx);
		if (ret == 0)
			return;
	}
	free(ctx);
	free(text);
	log_warnx("%s: %s: overlay filter unchanged", __func__, strerror(-ret));
fail:
	if (done)
		done(ret, arg);
}

void nft_remove(void)
{
	static const char text[] = "table inet " NFT_TABLE " {}\ndelete table inet " NFT_TABLE "\n";

	if (nft_installed && nft_run(text, sizeof(text) - 1) == 0)
		nft_installed = false;
}

static long long nft_timer = -1;

static long nft_refresh(struct event_loop *loop, void *arg)
{
	nft_timer = -1;
	nft_apply(NULL, NULL);
	return EVENT_TIMER_STOP;
}

void nft_schedule(void)
{
	/* Pod announcements come in bursts (a peer's full sync): rebuild once after them. */
	if (nft_timer < 0 && (policy_current() || nft_installed))
		nft_timer = event_timer_add(router.r_loop, NFT_REFRESH_MS, nft_refresh, NULL);
}
