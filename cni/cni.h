/* SPDX-License-Identifier: MIT */
/*
 * slim-cni's internal interfaces, one section per file: conf.c (network config and environment),
 * link.c (netlink: veth, addresses, routes), ipam.c (the delegated IPAM plugin), podreg.c (the
 * router's pod table) and slim-cni.c (the commands, results and errors).
 */
#ifndef SLIM_CNI_H
#define SLIM_CNI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <net/if.h>

#include <jansson.h>

/* The spec's error codes (CNI 1.0.0 and 1.1.0). */
enum cni_code {
	CNI_ERR_VERSION = 1,	  /* incompatible CNI version */
	CNI_ERR_UNSUPPORTED = 2,  /* unsupported field in the network config */
	CNI_ERR_NO_CONTAINER = 3, /* container unknown or does not exist */
	CNI_ERR_ENV = 4,	  /* invalid necessary environment variables */
	CNI_ERR_IO = 5,		  /* I/O failure */
	CNI_ERR_DECODE = 6,	  /* failed to decode content */
	CNI_ERR_CONFIG = 7,	  /* invalid network config */
	CNI_ERR_TRY_AGAIN = 11,	  /* try again later */
	CNI_ERR_UNAVAILABLE = 50, /* STATUS: the plugin is not available */
	CNI_ERR_CHECK = 100,	  /* plugin-specific: CHECK found the attachment wrong */
};

#define CNI_MSG_MAX	256
#define CNI_DETAILS_MAX 512

/* What went wrong, as the runtime will be told it. */
struct cni_err {
	int ce_code;
	char ce_msg[CNI_MSG_MAX];
	char ce_details[CNI_DETAILS_MAX];
};

/* Fills e (code, message) and returns -1, so callers can "return cni_fail(...)". */
int cni_fail(struct cni_err *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---------------------------------------------------------------- conf.c */

#define CNI_DEFAULT_BRIDGE "cni0"
#define CNI_DEFAULT_MTU	   1450
#define CNI_NAME_MAX	   64 /* the router's pod name, NUL included */
#define CNI_SOCKET_MAX	   108

/* The versions this plugin speaks; the result format is 1.0.0's (0.4.0 adds ips[].version). */
extern const char *const cni_versions[];

/* A network config as given on stdin, validated. */
struct cni_conf {
	char cc_version[16];		       /* cniVersion */
	char cc_name[256];		       /* the network's name */
	char cc_bridge[IF_NAMESIZE];	       /* bridge: host bridge the veths join */
	unsigned cc_mtu;		       /* mtu */
	char cc_router_socket[CNI_SOCKET_MAX]; /* routerSocket */
	char cc_ipam_type[64];		       /* ipam.type, "" when there is no ipam */
	json_t *cc_labels;		       /* args.labels + runtimeConfig.labels, merged */
	json_t *cc_dns;			       /* dns, or NULL */
	json_t *cc_prev;		       /* prevResult, or NULL */
	json_t *cc_valid;		       /* GC: cni.dev/valid-attachments, or NULL */
	json_t *cc_root;		       /* the whole document (owns the others) */
};

/* The runtime's environment (CNI_*), checked as the command needs it. */
struct cni_env {
	const char *ce_command;
	const char *ce_containerid;
	const char *ce_netns;
	const char *ce_ifname;
	const char *ce_args;
	const char *ce_path;
	char ce_podname[CNI_NAME_MAX]; /* K8S_POD_NAME, else the container id (shortened) */
	json_t *ce_labels;	       /* SLIM_LABELS of CNI_ARGS, an object */
};

/* Parses and validates a network config. 0, or -1 with e filled; on success free with
 * cni_conf_free. Checks ipam.type only when need_ipam. */
int cni_conf_parse(const char *text, size_t len, bool need_ipam, struct cni_conf *c,
		   struct cni_err *e);
void cni_conf_free(struct cni_conf *c);

/* True when v is one of cni_versions. */
bool cni_version_supported(const char *v);

/*
 * Reads CNI_* from getenv and checks what command needs: CNI_CONTAINERID, CNI_IFNAME and
 * CNI_PATH for ADD, DEL, CHECK; CNI_NETNS for ADD and CHECK. CNI_ARGS is parsed ("K=V;K=V"):
 * K8S_POD_NAME names the pod, SLIM_LABELS=k:v,k:v adds labels, IgnoreUnknown=1 lets other keys
 * pass (else they are errors). 0, or -1 with e filled; free with cni_env_free.
 */
int cni_env_load(struct cni_env *env, struct cni_err *e);
void cni_env_free(struct cni_env *env);
/* The same checks on CNI_ARGS alone (unit-tested): fills ce_podname and ce_labels. */
int cni_args_parse(const char *args, const char *containerid, struct cni_env *env,
		   struct cni_err *e);

/* The host-side veth name for a container and interface: "slim" + 11 hex digits of a hash. */
void cni_host_ifname(const char *containerid, const char *ifname, char out[IF_NAMESIZE]);

/* ---------------------------------------------------------------- link.c */

struct cni_link {
	int cl_index;
	int cl_master; /* ifindex of the bridge it is a port of, 0 if none */
	unsigned cl_mtu;
	unsigned cl_flags; /* IFF_* */
	uint8_t cl_mac[6];
	uint32_t cl_addr; /* first IPv4 address (network order), 0 if none */
	unsigned cl_prefix;
};

/* The link named name in the current network namespace. 0, -ENODEV or -errno. */
int link_get(const char *name, struct cni_link *l);
/* Creates a veth pair: host in the current namespace, peer in the netns of netns_fd; both MTU. */
int link_veth_add(const char *host, const char *peer, int netns_fd, unsigned mtu);
/* Sets the link's master (0: none) and brings it up. */
int link_set_master_up(int index, int master);
int link_set_up(int index);
/* Deletes the link by name; -ENODEV when it does not exist. */
int link_del(const char *name);
int link_addr_add(int index, uint32_t addr, unsigned prefix);
/* True when the link has exactly this IPv4 address. */
int link_addr_has(int index, uint32_t addr, unsigned prefix);
/* Adds dst/len via gw on the link (gw 0: directly connected). */
int link_route_add(int index, uint32_t dst, unsigned len, uint32_t gw);
/* True when a route dst/len via gw exists (main table). */
int link_route_has(uint32_t dst, unsigned len, uint32_t gw);
/* Waits (bounded) until the link's carrier is up, so the first packets are not dropped. */
int link_wait_running(int index, unsigned timeout_ms);
/* Enters the network namespace of fd; *saved gets the current one to return to. */
int link_netns_enter(int fd, int *saved);
int link_netns_leave(int saved);

/* ---------------------------------------------------------------- ipam.c */

/* Runs the IPAM plugin conf->cc_ipam_type (found on CNI_PATH) with command (ADD, DEL, CHECK,
 * GC), the current CNI_* environment and the config text on stdin. For ADD *result gets its
 * parsed result. 0, or -1 with e filled (the plugin's own error JSON when it printed one). */
int ipam_exec(const struct cni_conf *conf, const char *command, const char *text, size_t len,
	      json_t **result, struct cni_err *e);
/* 1 when the IPAM plugin's VERSION lists version, 0 when not, -1 with e filled on failure. */
int ipam_supports(const struct cni_conf *conf, const char *version, struct cni_err *e);

/* ---------------------------------------------------------------- podreg.c */

/* The label that ties a router pod entry to the attachment that made it; its value is
 * "network/containerid/ifname" (none of the three may contain '/'). */
#define CNI_LABEL_ATTACHMENT "cni.slim/attachment"

void podreg_attachment_name(const char *network, const char *containerid, const char *ifname,
			    char *out, size_t cap);
int podreg_add(const char *sock, const char *netns, const char *ip, const char *name,
	       json_t *labels, struct cni_err *e);
/* Deletes every pod registered for the attachment; 0 also when there is none. */
int podreg_del(const char *sock, const char *attachment, struct cni_err *e);
/* 0 when a pod with this ip is registered for the attachment; -1 with e filled otherwise. */
int podreg_check(const char *sock, const char *attachment, const char *ip, struct cni_err *e);
/* Deletes the pods of network whose attachment is not in keep (GC's valid attachments) and
 * calls stale for each, so the caller releases the rest of it. */
int podreg_gc(const char *sock, const char *network, json_t *keep,
	      void (*stale)(const char *containerid, const char *ifname, void *arg), void *arg,
	      struct cni_err *e);
/* 0 when the router answers. */
int podreg_status(const char *sock, struct cni_err *e);

#endif
