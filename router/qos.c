// SPDX-License-Identifier: MIT
/*
 * Per-pod rate limits and priorities. Every host socket the router creates for a pod carries
 * that pod's class (SO_PRIORITY = 1:class, SO_MARK = QOS_MARK_BASE | class), whether or not it
 * is limited, so a limit set or removed later applies to the pod's existing connections too. On
 * the host's fabric interface an HTB class per shaped pod takes that traffic; everything else
 * bypasses the classes (HTB default 0) and is never limited. A pod's priority is its class's
 * HTB priority (who borrows spare bandwidth first). The pod's overlay traffic (not through slim) is
 * shaped by HTB on the pod's own interface, so both paths obey the same limit.
 */
#include <errno.h>
#include <ifaddrs.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <sys/socket.h>

#include "log.h"
#include "router.h"

#define QOS_MARK_BASE	  0x51000000u
#define QOS_HTB_MAJOR	  1 /* handle of the HTB root on the fabric interface */
#define QOS_DEFAULT_MINOR 0xffff
#define QOS_BURST	  "64k" /* at 100 Mbit/s 5 ms: enough for GSO-sized packets */
#define QOS_UNLIMITED	  "100gbit"
#define QOS_POD_IFACE	  "eth0" /* the pod side of its veth, as CNI plugins name it */
#define QOS_RATE_LEN	  24
#define QOS_SCRIPT_MAX	  (1 << 20)

struct qos {
	struct hnode q_node;
	uint32_t q_ip;
	uint16_t q_minor;
	char q_rate[QOS_RATE_LEN]; /* tc rate ("100mbit"), "" = unlimited */
	int q_prio;		   /* 0-6, higher first (HTB prio 7 - q_prio); -1 = not set */
	bool q_shaped_overlay;	   /* an HTB root is on the pod's interface */
};

static struct htab qos_by_ip;
static bool qos_ready, qos_fabric_shaped;
static uint16_t qos_next_minor = 0x10;

static int qos_init(void)
{
	if (!qos_ready && htab_init(&qos_by_ip, 64) == 0)
		qos_ready = true;
	return qos_ready ? 0 : -ENOMEM;
}

static struct qos *qos_find(uint32_t ip)
{
	if (!qos_ready)
		return NULL;
	for (struct hnode *h = htab_first(&qos_by_ip, htab_hash_u64(ip)); h; h = htab_next(h)) {
		struct qos *q = container_of(h, struct qos, q_node);

		if (q->q_ip == ip)
			return q;
	}
	return NULL;
}

static struct qos *qos_get(uint32_t ip)
{
	struct qos *q = qos_find(ip);

	if (q || qos_init() < 0)
		return q;
	/* Class ids are never reused while the router runs: a socket keeps its mark for life. */
	if (qos_next_minor >= QOS_DEFAULT_MINOR)
		return NULL;
	q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	q->q_ip = ip;
	q->q_minor = qos_next_minor++;
	q->q_prio = -1;
	htab_insert(&qos_by_ip, &q->q_node, htab_hash_u64(ip));
	return q;
}

void qos_mark_socket(int fd, uint32_t pod_ip)
{
	struct qos *q = qos_get(pod_ip);
	uint32_t mark;
	int prio;

	if (!q)
		return;
	mark = QOS_MARK_BASE | q->q_minor;
	if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0)
		log_warn("%s: SO_MARK", __func__);
	/*
	 * HTB picks the class straight from skb->priority when it names one of its classes
	 * (1:minor), with no classifier at all. This kernel has neither cls_fw nor u32's mark
	 * match, so the priority, not the mark, is what selects the class; while the pod has no
	 * class, HTB finds none and the packets go out unshaped.
	 */
	prio = QOS_HTB_MAJOR << 16 | q->q_minor;
	if (setsockopt(fd, SOL_SOCKET, SO_PRIORITY, &prio, sizeof(prio)) < 0)
		log_warn("%s: SO_PRIORITY", __func__);
}

/* "100mbit", "1.5gbit", "800kbit", "2000000bit": a positive number and a tc bit-rate unit. */
static bool qos_rate_valid(const char *s)
{
	static const char *const units[] = {"bit", "kbit", "mbit", "gbit", NULL};
	char *end;
	double v = strtod(s, &end);

	if (end == s || v <= 0 || strlen(s) >= QOS_RATE_LEN)
		return false;
	for (const char *const *u = units; *u; u++)
		if (!strcmp(end, *u))
			return true;
	return false;
}

/* The interface that holds our fabric address. */
static int qos_fabric_dev(char *name, size_t len)
{
	struct ifaddrs *ifa, *i;
	int ret = -ENODEV;

	if (getifaddrs(&ifa) < 0)
		return -errno;
	for (i = ifa; i; i = i->ifa_next)
		if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET &&
		    ((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr == router.r_fabric_ip) {
			snprintf(name, len, "%s", i->ifa_name);
			ret = 0;
			break;
		}
	freeifaddrs(ifa);
	return ret;
}

static int qos_tc(int netns_fd, const char *script, size_t len)
{
	const char *tc = spawn_find("tc");
	const char *argv[] = {tc, "-force", "-batch", "-", NULL};

	if (!tc)
		return -ENOENT;
	return spawn_feed(argv, netns_fd, script, len);
}

/* Rebuilds the fabric interface's classes from the table (or removes the HTB root). */
static int qos_sync_fabric(void)
{
	char dev[IF_NAMESIZE], *script = NULL;
	struct hnode *h = NULL;
	size_t len = 0, b = 0;
	bool any = false;
	FILE *f;
	int ret;

	if ((ret = qos_fabric_dev(dev, sizeof(dev))) < 0)
		return ret;
	f = open_memstream(&script, &len);
	if (!f)
		return -ENOMEM;
	/* From scratch: a fresh root is simpler to get right than diffing classes and filters. */
	if (qos_fabric_shaped)
		fprintf(f, "qdisc del dev %s root\n", dev);
	while (qos_ready && (h = htab_iter(&qos_by_ip, &b, h))) {
		const struct qos *q = container_of(h, struct qos, q_node);
		const char *rate = q->q_rate[0] ? q->q_rate : QOS_UNLIMITED;

		if (!q->q_rate[0] && q->q_prio < 0)
			continue;
		if (!any) {
			/* default 0: whatever no filter classifies (unlimited pods, the router's
			 * own traffic) bypasses the classes, so it is not shaped at all. */
			fprintf(f, "qdisc add dev %s root handle %d: htb default 0\n", dev,
				QOS_HTB_MAJOR);
			any = true;
		}
		/* HTB serves lower prio first when classes borrow; SO_PRIORITY is higher-first. */
		fprintf(f,
			"class add dev %s parent 1: classid 1:%x htb rate %s ceil %s burst %s "
			"cburst %s prio %d\n",
			dev, q->q_minor, rate, rate, QOS_BURST, QOS_BURST,
			q->q_prio >= 0 ? 7 - q->q_prio : 7);
	}
	fclose(f);
	if (!script)
		return -ENOMEM;
	ret = len ? qos_tc(-1, script, len) : 0;
	free(script);
	if (ret == 0 || any)
		qos_fabric_shaped = any;
	return ret;
}

/* The pod's overlay traffic: one HTB class on its own interface, inside its netns. */
static int qos_sync_overlay(struct qos *q, const struct pod *p)
{
	char script[256];
	int n = 0, ret;

	if (q->q_shaped_overlay)
		n += snprintf(script + n, sizeof(script) - (size_t)n, "qdisc del dev %s root\n",
			      QOS_POD_IFACE);
	if (q->q_rate[0])
		n += snprintf(script + n, sizeof(script) - (size_t)n,
			      "qdisc add dev %s root handle 1: htb default 1\n"
			      "class add dev %s parent 1: classid 1:1 htb rate %s ceil %s burst %s "
			      "cburst %s\n",
			      QOS_POD_IFACE, QOS_POD_IFACE, q->q_rate, q->q_rate, QOS_BURST,
			      QOS_BURST);
	if (!n)
		return 0;
	ret = qos_tc(p->p_netns_fd, script, (size_t)n);
	q->q_shaped_overlay = q->q_rate[0] != 0;
	return ret;
}

int qos_pod_set(const struct pod *p, const char *rate, int prio, char *err, size_t errlen)
{
	struct qos *q;
	int ret;

	if (rate && strcmp(rate, "none") && !qos_rate_valid(rate)) {
		snprintf(err, errlen, "bad rate \"%s\" (e.g. 100mbit, 1gbit, 500kbit, or none)",
			 rate);
		return -EINVAL;
	}
	if (prio < QOS_PRIO_KEEP || prio > 6) {
		snprintf(err, errlen, "bad priority %d (0-6, or none)", prio);
		return -EINVAL;
	}
	q = qos_get(p->p_ip);
	if (!q) {
		snprintf(err, errlen, "out of memory (or of class ids)");
		return -ENOMEM;
	}
	if (rate)
		snprintf(q->q_rate, sizeof(q->q_rate), "%s", strcmp(rate, "none") ? rate : "");
	if (prio != QOS_PRIO_KEEP)
		q->q_prio = prio;
	ret = qos_sync_fabric();
	if (ret < 0) {
		snprintf(err, errlen, "tc on the fabric interface: %s", strerror(-ret));
		return ret;
	}
	ret = qos_sync_overlay(q, p);
	if (ret < 0) {
		snprintf(err, errlen, "tc in the pod's netns: %s", strerror(-ret));
		return ret;
	}
	return 0;
}

json_t *qos_pod_json(uint32_t ip)
{
	const struct qos *q = qos_find(ip);

	if (!q)
		return json_pack("{s:n, s:n}", "egress_rate", "priority");
	return json_pack("{s:s?, s:o, s:i}", "egress_rate", q->q_rate[0] ? q->q_rate : NULL,
			 "priority", q->q_prio >= 0 ? json_integer(q->q_prio) : json_null(), "mark",
			 (int)(QOS_MARK_BASE | q->q_minor));
}

void qos_pod_gone(uint32_t ip)
{
	struct qos *q = qos_find(ip);
	bool shaped;

	if (!q)
		return;
	shaped = q->q_rate[0] || q->q_prio >= 0;
	htab_remove(&qos_by_ip, &q->q_node);
	free(q);
	if (shaped)
		qos_sync_fabric();
}

json_t *qos_export(void)
{
	json_t *list = json_array();
	struct hnode *h = NULL;
	size_t b = 0;

	while (qos_ready && (h = htab_iter(&qos_by_ip, &b, h))) {
		const struct qos *q = container_of(h, struct qos, q_node);

		json_array_append_new(list, json_pack("{s:I, s:i, s:s, s:i, s:b}", "ip",
						      (json_int_t)q->q_ip, "minor", q->q_minor,
						      "rate", q->q_rate, "prio", q->q_prio,
						      "shaped_overlay", q->q_shaped_overlay));
	}
	return json_pack("{s:o, s:i, s:b}", "pods", list, "next_minor", qos_next_minor,
			 "fabric_shaped", qos_fabric_shaped);
}

void qos_adopt(json_t *o)
{
	json_t *v;
	size_t i;

	/* tc already holds these classes: only our record of them comes over. */
	if (!json_is_object(o) || qos_init() < 0)
		return;
	qos_next_minor = (uint16_t)json_integer_value(json_object_get(o, "next_minor"));
	if (qos_next_minor < 0x10)
		qos_next_minor = 0x10;
	qos_fabric_shaped = json_is_true(json_object_get(o, "fabric_shaped"));
	json_array_foreach(json_object_get(o, "pods"), i, v) {
		const char *rate = json_string_value(json_object_get(v, "rate"));
		struct qos *q = calloc(1, sizeof(*q));

		if (!q)
			return;
		q->q_ip = (uint32_t)json_integer_value(json_object_get(v, "ip"));
		q->q_minor = (uint16_t)json_integer_value(json_object_get(v, "minor"));
		snprintf(q->q_rate, sizeof(q->q_rate), "%s", rate ? rate : "");
		q->q_prio = (int)json_integer_value(json_object_get(v, "prio"));
		q->q_shaped_overlay = json_is_true(json_object_get(v, "shaped_overlay"));
		htab_insert(&qos_by_ip, &q->q_node, htab_hash_u64(q->q_ip));
	}
}

void qos_free(void)
{
	struct hnode *h;
	size_t b;

	if (!qos_ready)
		return;
	while ((b = 0, h = htab_iter(&qos_by_ip, &b, NULL))) {
		htab_remove(&qos_by_ip, h);
		free(container_of(h, struct qos, q_node));
	}
	if (qos_fabric_shaped)
		qos_sync_fabric();
	htab_free(&qos_by_ip);
	qos_ready = false;
}
