// SPDX-License-Identifier: MIT
/*
 * slimrouterd: start-up (arguments, cluster file, which node we are), signals, the periodic
 * sweep, and the routing of each shim request (who is asking, which node owns the destination).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <ifaddrs.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>

#include "log.h"
#include "router.h"

#define DEFAULT_CLUSTER_FILE "/etc/slim/cluster.json"

struct router router;

void router_reply_fallback(struct client *c, uint16_t type, uint32_t id)
{
	struct slim_listen_rep rep = {
		.hdr = {.type = type, .len = sizeof(rep), .id = id},
		.action = SLIM_ACT_FALLBACK,
	};

	router.r_nfallback++;
	client_reply(c, &rep, sizeof(rep), -1, false);
}

void router_dispatch(struct client *c, const void *msg, size_t len)
{
	const struct slim_msg_hdr *h = msg;
	/* Looked up per request, so a pod registered after the shim connected is recognized. */
	struct pod *p = pod_find_ns(c->cs_ns_dev, c->cs_ns_ino);

	switch (h->type) {
	case SLIM_MSG_POOL_REQ:
		pool_handout(c, p, msg);
		break;
	case SLIM_MSG_ROUTE_REQ:
		if (!p) {
			struct slim_route_rep rep = {
				.hdr = {.type = SLIM_MSG_ROUTE_REP, .len = sizeof(rep), .id = h->id},
				.action = SLIM_ACT_FALLBACK,
			};

			client_reply(c, &rep, sizeof(rep), -1, false);
		} else {
			route_request(c, p, msg);
		}
		break;
	case SLIM_MSG_LISTEN_REQ:
		if (!p)
			router_reply_fallback(c, SLIM_MSG_LISTEN_REP, h->id);
		else
			hostsock_listen(c, p, msg);
		break;
	case SLIM_MSG_CTL_REQ:
		if (!client_is_host_admin(c)) {
			static const char denied[] =
				"{\"ok\":false,\"error\":\"permission denied\"}";
			static struct log_ratelimit rl; /* a pod may ask in a loop */
			uint8_t buf[sizeof(struct slim_msg_hdr) + sizeof(denied)];
			struct slim_msg_hdr rh = {
				.type = SLIM_MSG_CTL_REP,
				.len = sizeof(rh) + sizeof(denied) - 1,
				.id = h->id,
			};

			log_ratelimited(&rl, LOG_LVL_WARN,
					"%s: control request from pid %d uid %d%s: denied", __func__,
					(int)c->cs_pid, (int)c->cs_uid, p ? " inside a pod" : "");
			memcpy(buf, &rh, sizeof(rh));
			memcpy(buf + sizeof(rh), denied, sizeof(denied) - 1);
			client_reply(c, buf, rh.len, -1, false);
			break;
		}
		control_handle(c, h->id, (const char *)msg + sizeof(*h), len - sizeof(*h));
		break;
	}
}

void router_resolve_listener(uint32_t ip, uint16_t port, struct resolve_result *res)
{
	struct pod *p = pod_find_ip(ip);
	struct listener *l;

	memset(res, 0, sizeof(*res));
	if (!p) {
		res->status = SLIM_RESOLVE_NO_POD;
		return;
	}
	l = listener_find(ip, port);
	/* A remote cache keeps our answer for 30 s: make sure the listener still exists. A
	 * loopback-only listener is private to its pod. */
	if (!l || (l->l_bound_ip & htonl(0xff000000)) == htonl(0x7f000000) ||
	    !listener_check_alive(l)) {
		res->status = SLIM_RESOLVE_NO_LISTENER;
		return;
	}
	res->status = SLIM_RESOLVE_FOUND;
	res->host_ip = l->l_host_ip;
	res->host_port = l->l_host_port;
}

static long router_recheck_listeners(struct event_loop *loop, void *arg)
{
	struct pod *p = pod_find_ip((uint32_t)(uintptr_t)arg);
	struct listener *l, *next;

	if (!p)
		return EVENT_TIMER_STOP;
	p->p_recheck = false;
	for (l = TAILQ_FIRST(&p->p_listeners); l; l = next) {
		next = TAILQ_NEXT(l, l_pod_entry);
		listener_check_alive(l); /* a dead one is dropped, and other nodes told */
	}
	return EVENT_TIMER_STOP;
}

/*
 * A shim's connection closed: often its process exited, taking its listeners with it. Rather than
 * leave other routers a dead route until the next sweep (2 s), recheck that pod's listeners soon.
 * Not at once: the kernel closes an exiting process's descriptors in no set order.
 */
void router_client_gone(struct client *c)
{
	struct pod *p = pod_find_ns(c->cs_ns_dev, c->cs_ns_ino);

	if (!p || !p->p_nlisteners || p->p_recheck)
		return;
	p->p_recheck = true;
	event_timer_add(router.r_loop, 10, router_recheck_listeners, (void *)(uintptr_t)p->p_ip);
}

/* A listener appeared or went: the kernel's routes, other nodes, and the state file follow. */
static void router_listener_added(const struct listener *l)
{
	route_listener_added(l);
	state_save();
}

static void router_listener_removed(const struct listener *l)
{
	route_listener_removed(l);
	state_save();
}

static long router_sweep(struct event_loop *loop, void *arg)
{
	peer_reconnect_all();
	listener_gc();
	resolve_cache_expire();
	return CONN_GC_INTERVAL_MS;
}

/*
 * A new cluster file: the node we are must still be there with the same address and port,
 * and every registered pod must still be inside our pod_cidr. 0 or -EINVAL with err filled.
 */
static int router_check_reload(const struct cluster *nc, char *err, size_t errlen)
{
	const struct cluster_node *self = cluster_node_by_name(nc, router.r_node_name);
	struct pod *bad;

	if (!self) {
		snprintf(err, errlen, "%s: nodes: this node (%s) is missing", nc->cl_origin,
			 router.r_node_name);
		return -EINVAL;
	}
	if (self->cn_fabric_ip != router.r_fabric_ip) {
		snprintf(err, errlen,
			 "%s: nodes[%td].fabric_ip: this node's address cannot change "
			 "while running",
			 nc->cl_origin, self - nc->cl_nodes);
		return -EINVAL;
	}
	if (nc->cl_peer_port != router.r_peer_port) {
		snprintf(err, errlen, "%s: peer_port: cannot change while running", nc->cl_origin);
		return -EINVAL;
	}
	bad = pod_find_outside(&self->cn_pod_cidr);
	if (bad) {
		snprintf(err, errlen, "%s: nodes[%td].pod_cidr: registered pod %s is outside it",
			 nc->cl_origin, self - nc->cl_nodes, bad->p_name);
		return -EINVAL;
	}
	return 0;
}

static void router_reload(void)
{
	struct cluster *nc = NULL;
	char err[512];
	int ret;

	if (!router.r_cluster_path) {
		log_info("SIGHUP: no cluster file (built-in default): nothing to reload");
		return;
	}
	ret = cluster_load(router.r_cluster_path, &nc, err, sizeof(err));
	if (ret == 0)
		ret = router_check_reload(nc, err, sizeof(err));
	/* A new secret is for new fabric connections; established ones stay. */
	if (ret == 0 && nc->cl_secret_file)
		ret = auth_load(nc->cl_secret_file, err, sizeof(err));
	if (ret < 0) {
		log_error("reload failed, keeping the current cluster: %s", err);
		cluster_free(nc);
		return;
	}
	if (!nc->cl_secret_file && auth_enabled()) {
		auth_clear();
		log_warnx("reload: no secret_file any more: new fabric connections are not "
			  "authenticated");
	}
	cluster_free(router.r_cluster);
	router.r_cluster = nc;
	router.r_self = cluster_node_by_name(nc, router.r_node_name);
	/* Pod CIDRs may have moved between nodes: resolve everything afresh. */
	resolve_cache_flush();
	governor_cluster_changed();
	peer_cluster_changed();
	log_info("reloaded %s: %zu nodes", nc->cl_origin, nc->cl_nnodes);
}

static void router_signal(struct event_loop *loop, int fd, uint32_t events, void *arg)
{
	struct signalfd_siginfo si;

	while (read(fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			router_reload();
		} else {
			log_info("signal %d: shutting down", (int)si.ssi_signo);
			event_loop_stop(loop);
		}
	}
}

/* The node whose fabric_ip is on one of our interfaces. */
static const struct cluster_node *router_find_self(const struct cluster *c)
{
	const struct cluster_node *found = NULL;
	struct ifaddrs *ifa, *i;

	if (getifaddrs(&ifa) < 0)
		fatal("getifaddrs");
	for (i = ifa; i; i = i->ifa_next) {
		const struct cluster_node *n;

		if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET)
			continue;
		n = cluster_node_by_ip(c, ((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr);
		if (n && found && n != found) {
			errno = 0;
			fatal("both %s and %s have a local fabric_ip: pass --node", found->cn_name,
			      n->cn_name);
		}
		if (n)
			found = n;
	}
	freeifaddrs(ifa);
	return found;
}

/*
 * Every shim thread holds a control connection and every connect in progress a socket: the
 * default soft limit of 1024 descriptors is far too low for a node's worth of pods.
 */
static void router_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_warn("%s: setrlimit", __func__);
	}
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: slimrouterd [--socket PATH] [--cluster FILE] [--node NAME]\n"
		"                   [--log-level error|warn|info|debug] [--cgroup NAME] [--no-sockmap]\n"
		"                   [--policy FILE] [--admin-ns DIR] [--pidfile FILE] [--bpf-dir DIR]\n"
		"                   [--state FILE] [--metrics ADDR:PORT] [--store etcd:URL]\n"
		"                   [--store-ttl SECONDS] [--store-prefix PREFIX] [-n] [--help]\n"
		"                   [--takeover FD]\n"
		"  --socket PATH    control socket (default %s)\n"
		"  --cluster FILE   cluster description (default %s, else the built-in lab plan)\n"
		"  --node NAME      this node's name in the cluster (default: by local address)\n"
		"  --cgroup NAME    cgroup v2 directory (under the v2 root) for the router and its\n"
		"                   sockets, governed by its BPF programs (default slim/NODE-PID)\n"
		"  --no-sockmap     no same-host fast path (sockmap redirect)\n"
		"  --policy FILE    network policy to enforce from the start (docs/policy.md)\n"
		"  --admin-ns DIR   who may use the control commands: root in the namespaces of\n"
		"                   DIR (a /proc/PID/ns directory; default /proc/self/ns, ours)\n"
		"  --pidfile FILE   write our pid there once started (in our namespaces, serving)\n"
		"  --bpf-dir DIR    pin the governance maps and links in DIR (on a bpffs): handed\n"
		"                   sockets stay governed while the router is down, and the next\n"
		"                   router takes their state over\n"
		"  --state FILE     keep the pods and host listeners there, and take them back at\n"
		"                   start: a restart loses nothing\n"
		"  --metrics ADDR:PORT  serve Prometheus metrics at http://ADDR:PORT/metrics\n"
		"                   (default: off)\n"
		"  --store etcd:URL pods, policy and services from etcd's v3 gateway at URL\n"
		"                   (http://HOST:2379; docs/store.md) instead of the fabric's\n"
		"                   announcements (default: off)\n"
		"  --store-ttl SECONDS  lease of this node's keys: how long after its router dies\n"
		"                   its pods leave the others' directories (default %d)\n"
		"  --store-prefix PREFIX  key prefix of the cluster (default %s)\n"
		"  -n               check the cluster file (and the policy file) and exit\n"
		"  --takeover FD    take over from the running router that started us (slimctl\n"
		"                   upgrade; FD is our end of its handover socket)\n",
		SLIM_DEFAULT_SOCKET, DEFAULT_CLUSTER_FILE, STORE_TTL_DEFAULT, STORE_PREFIX_DEFAULT);
}

/*
 * Written once we are in our namespaces and serving, never before: whoever reads it (slimlab)
 * finds the router itself, in the namespaces it runs in. Atomic (rename), so it is never seen
 * half-written.
 */
static int router_write_pidfile(const char *path)
{
	char buf[32];
	int len = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());

	return state_replace_file(path, buf, (size_t)len);
}

static int router_signalfd(void)
{
	sigset_t set;
	int fd;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -errno;
	fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"socket", required_argument, NULL, 's'},
		{"cluster", required_argument, NULL, 'c'},
		{"node", required_argument, NULL, 'N'},
		{"log-level", required_argument, NULL, 'l'},
		{"cgroup", required_argument, NULL, 'g'},
		{"no-sockmap", no_argument, NULL, 'S'},
		{"policy", required_argument, NULL, 'P'},
		{"admin-ns", required_argument, NULL, 'A'},
		{"pidfile", required_argument, NULL, 'p'},
		{"bpf-dir", required_argument, NULL, 'B'},
		{"state", required_argument, NULL, 'T'},
		{"metrics", required_argument, NULL, 'M'},
		{"store", required_argument, NULL, 'E'},
		{"store-ttl", required_argument, NULL, 'L'},
		{"store-prefix", required_argument, NULL, 'X'},
		{"takeover", required_argument, NULL, 'K'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *socket_path = SLIM_DEFAULT_SOCKET, *cluster_path = NULL, *node = NULL;
	const struct cluster_node *self;
	int level = LOG_LVL_INFO, opt, sigfd, ret;
	bool check_only = false, sockmap = true;
	const char *cgroup_name = NULL, *policy_path = NULL, *admin_ns = "/proc/self/ns";
	const char *pidfile = NULL, *bpf_dir = NULL, *state_file = NULL, *metrics_addr = NULL;
	struct sockaddr_in metrics_sa;
	char err[512], cgroup_default[NAME_MAX_LEN + 32], store_url[256];
	const char *store_arg = NULL, *store_prefix = STORE_PREFIX_DEFAULT;
	unsigned store_ttl = STORE_TTL_DEFAULT;
	int takeover_fd = -1;
	struct stat st;

	log_init("slimrouterd", LOG_LVL_INFO);
	while ((opt = getopt_long(argc, argv, "s:c:nh", opts, NULL)) != -1) {
		switch (opt) {
		case 's':
			socket_path = optarg;
			break;
		case 'c':
			cluster_path = optarg;
			break;
		case 'N':
			node = optarg;
			break;
		case 'l':
			level = log_level_parse(optarg);
			if (level < 0) {
				fprintf(stderr, "slimrouterd: bad log level \"%s\"\n", optarg);
				return 1;
			}
			break;
		case 'n':
			check_only = true;
			break;
		case 'g':
			cgroup_name = optarg;
			break;
		case 'S':
			sockmap = false;
			break;
		case 'P':
			policy_path = optarg;
			break;
		case 'A':
			admin_ns = optarg;
			break;
		case 'p':
			pidfile = optarg;
			break;
		case 'B':
			bpf_dir = optarg;
			break;
		case 'T':
			state_file = optarg;
			break;
		case 'M':
			if (metrics_parse_addr(optarg, &metrics_sa, err, sizeof(err)) < 0) {
				fprintf(stderr, "slimrouterd: --metrics \"%s\": %s\n", optarg, err);
				return 1;
			}
			metrics_addr = optarg;
			break;
		case 'E':
			if (store_parse_url(optarg, store_url, sizeof(store_url), err,
					    sizeof(err)) < 0) {
				fprintf(stderr, "slimrouterd: --store \"%s\": %s\n", optarg, err);
				return 1;
			}
			store_arg = optarg;
			break;
		case 'L': {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);

			if (*optarg < '0' || *optarg > '9' || *end || v < STORE_TTL_MIN ||
			    v > STORE_TTL_MAX) {
				fprintf(stderr, "slimrouterd: --store-ttl \"%s\": expected %d-%d "
						"seconds\n", optarg, STORE_TTL_MIN, STORE_TTL_MAX);
				return 1;
			}
			store_ttl = (unsigned)v;
			break;
		}
		case 'X':
			if (!store_prefix_valid(optarg)) {
				fprintf(stderr, "slimrouterd: --store-prefix \"%s\": expected /.../, "
						"printable, at most %d bytes\n", optarg,
					STORE_PREFIX_MAX);
				return 1;
			}
			store_prefix = optarg;
			break;
		case 'K': {
			char *end;
			long v = strtol(optarg, &end, 10);

			if (*optarg < '0' || *optarg > '9' || *end || v < 3 || v > 65535 ||
			    fcntl((int)v, F_GETFD) < 0) {
				fprintf(stderr, "slimrouterd: --takeover \"%s\": not an open "
						"descriptor\n", optarg);
				return 1;
			}
			takeover_fd = (int)v;
			fcntl(takeover_fd, F_SETFD, FD_CLOEXEC);
			break;
		}
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 1;
	}
	log_init("slimrouterd", (enum log_level)level);
	router.r_debug = level >= LOG_LVL_DEBUG;

	if (!cluster_path && access(DEFAULT_CLUSTER_FILE, F_OK) == 0)
		cluster_path = DEFAULT_CLUSTER_FILE;
	ret = cluster_path ? cluster_load(cluster_path, &router.r_cluster, err, sizeof(err))
			   : cluster_default(&router.r_cluster);
	if (check_only) {
		if (ret < 0) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		printf("cluster %s: ok (%zu nodes)\n", router.r_cluster->cl_origin,
		       router.r_cluster->cl_nnodes);
		if (router.r_cluster->cl_secret_file) {
			if (auth_load(router.r_cluster->cl_secret_file, err, sizeof(err)) < 0) {
				fprintf(stderr, "%s: %s\n", router.r_cluster->cl_origin, err);
				return 1;
			}
			printf("secret_file %s: ok\n", router.r_cluster->cl_secret_file);
		}
		if (policy_path) {
			struct policy_doc *pd;

			if (policy_load(policy_path, &pd, err, sizeof(err)) < 0) {
				fprintf(stderr, "%s\n", err);
				return 1;
			}
			printf("policy %s: ok (%zu policies, %zu rules)\n", policy_path,
			       policy_doc_count(pd), policy_doc_rules(pd));
			policy_doc_free(pd);
		}
		return 0;
	}
	if (ret < 0) {
		errno = 0;
		fatal("%s", err);
	}
	router.r_cluster_path = cluster_path ? realpath(cluster_path, NULL) : NULL;
	if (router.r_cluster->cl_secret_file) {
		if (auth_load(router.r_cluster->cl_secret_file, err, sizeof(err)) < 0) {
			errno = 0;
			fatal("%s: %s", router.r_cluster->cl_origin, err);
		}
	} else {
		log_warnx("%s has no secret_file: fabric connections are not authenticated",
			  router.r_cluster->cl_origin);
	}

	if (node) {
		self = cluster_node_by_name(router.r_cluster, node);
		errno = 0;
		if (!self)
			fatal("node %s is not in %s", node, router.r_cluster->cl_origin);
	} else {
		self = router_find_self(router.r_cluster);
		errno = 0;
		if (!self)
			fatal("no node of %s has a fabric_ip on this host: pass --node",
			      router.r_cluster->cl_origin);
	}
	router.r_self = self;
	snprintf(router.r_node_name, sizeof(router.r_node_name), "%s", self->cn_name);
	router.r_fabric_ip = self->cn_fabric_ip;
	router.r_peer_port = router.r_cluster->cl_peer_port;
	router.r_socket_path = strdup(socket_path);
	router.r_started = time(NULL);
	router.r_argv = argv;
	router.r_exe = realpath("/proc/self/exe", NULL);
	router.r_bpf_dir = bpf_dir ? strdup(bpf_dir) : NULL;
	if (stat("/proc/self/ns/net", &st) < 0)
		fatal("stat /proc/self/ns/net");
	router.r_ns_dev = st.st_dev;
	router.r_ns_ino = st.st_ino;
	/* Taking over: the administrator is the running router's (its --admin-ns may be gone). */
	if (takeover_fd >= 0) {
		const char *cg = NULL;

		upgrade_takeover_offer(takeover_fd, &cg);
		if (cg)
			cgroup_name = cg;
	} else if ((ret = client_admin_init(admin_ns)) < 0) {
		/* Now, before the fast path may give us a mount namespace of our own. */
		errno = -ret;
		fatal("--admin-ns %s", admin_ns);
	}

	signal(SIGPIPE, SIG_IGN);
	router_raise_nofile();
	router.r_loop = event_loop_new();
	if (!router.r_loop)
		fatal("event loop");
	if (pod_table_init() || listener_table_init() || resolve_init() ||
	    directory_init())
		fatal("out of memory");
	ret = sockdiag_init();
	if (ret < 0) {
		errno = -ret;
		fatal("sock_diag netlink socket");
	}
	/* Taking over, the policy in force comes with the state (it may have been replaced). */
	if (policy_path && takeover_fd < 0) {
		struct policy_doc *pd;

		if (policy_load(policy_path, &pd, err, sizeof(err)) < 0) {
			errno = 0;
			fatal("%s", err);
		}
		policy_install(pd);
		log_info("policy %s: %zu policies, %zu rules", policy_path, policy_doc_count(pd),
			 policy_doc_rules(pd));
	}

	if (accept_init() < 0)
		fatal("spare descriptor");
	sigfd = router_signalfd();
	if (sigfd < 0 || event_add(router.r_loop, sigfd, EVENT_READ, router_signal, NULL) < 0)
		fatal("signalfd");
	/* Taking over, the listening sockets come from the running router (upgrade.c). */
	ret = takeover_fd >= 0 ? 0 : client_listen(socket_path);
	if (ret == -EADDRINUSE) {
		errno = 0;
		fatal("another router answers on %s", socket_path);
	}
	if (ret < 0) {
		errno = -ret;
		fatal("control socket %s", socket_path);
	}
	ret = takeover_fd >= 0 ? 0 : peer_listen(router.r_fabric_ip, router.r_peer_port);
	if (ret < 0) {
		char a[ADDR_STRLEN];

		unlink(socket_path);
		errno = -ret;
		fatal("fabric listener %s",
		      addr_str(a, sizeof(a), router.r_fabric_ip, htons(router.r_peer_port)));
	}
	if (metrics_addr && takeover_fd < 0 && (ret = metrics_start(&metrics_sa)) < 0) {
		unlink(socket_path);
		errno = -ret;
		fatal("--metrics %s", metrics_addr);
	}
	event_timer_add(router.r_loop, CONN_GC_INTERVAL_MS, router_sweep, NULL);
	/*
	 * Last of the start-up steps, after everything that can fail fatally: governance moves
	 * us into a cgroup of our own, which only a clean exit leaves and removes.
	 */
	conn_accelerated_hook = fastpath_contains;
	listener_added_hook = router_listener_added;
	listener_removed_hook = router_listener_removed;
	directory_changed_hook = service_refresh;
	service_changed_hook = svcnft_apply;
	if (!sockmap) {
		fastpath_disable("--no-sockmap");
		log_info("same-host fast path off (--no-sockmap)");
	}
	if (!cgroup_name) {
		snprintf(cgroup_default, sizeof(cgroup_default), "slim/%s-%d", router.r_node_name,
			 (int)getpid());
		cgroup_name = cgroup_default;
	}
	router.r_cgroup_name = strdup(cgroup_name);
	governor_start(cgroup_name, sockmap, bpf_dir, takeover_fd >= 0);
	if (takeover_fd >= 0)
		upgrade_takeover(state_file);
	else if (state_file)
		state_open(state_file);
	/* After the state file: the pods it brings back are registered with the first lease. */
	if (store_arg && (ret = store_start(store_url, store_prefix, store_ttl)) < 0) {
		errno = -ret;
		log_warn("%s: --store %s", __func__, store_arg);
	} else if (store_arg) {
		log_info("cluster store %s (prefix %s, lease %u s): pods, policy and services "
			 "come from there", store_url, store_prefix, store_ttl);
	}

	{
		char a[ADDR_STRLEN];

		log_info("started: node %s fabric %s, cluster %s (%zu nodes), socket %s",
			 router.r_node_name,
			 addr_str(a, sizeof(a), router.r_fabric_ip, htons(router.r_peer_port)),
			 router.r_cluster->cl_origin, router.r_cluster->cl_nnodes, socket_path);
	}
	if (pidfile && (ret = router_write_pidfile(pidfile)) < 0) {
		errno = -ret;
		log_warn("%s: pid file %s", __func__, pidfile);
	}
	event_loop_run(router.r_loop);

	metrics_stop();
	control_stop();
	store_stop();
	spawn_stop();
	client_close_all();
	accept_free();
	unlink(socket_path);
	governor_stop();
	state_close();
	peer_close_all();
	resolve_free();
	pod_table_free();
	listener_table_free();
	nft_remove();
	svcnft_remove();
	service_free();
	qos_free();
	policy_free();
	directory_free();
	sockdiag_close();
	event_del(router.r_loop, sigfd);
	close(sigfd);
	event_loop_free(router.r_loop);
	cluster_free(router.r_cluster);
	auth_clear();
	free(router.r_cluster_path);
	free(router.r_socket_path);
	free(router.r_cgroup_name);
	free(router.r_exe);
	free(router.r_bpf_dir);
	log_info("stopped");
	return 0;
}
