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
#include <fcntl.h>
#include <ifaddrs.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "router.h"

#define QOS_MARK_BASE	  0x51000000u
#define QOS_HTB_MAJOR	  1 /* handle of the HTB root on the fabric interface */
#define QOS_DEFAULT_MINOR 0xffff
#define QOS_BURST	  "64k" /* at 100 Mbit/s 5 ms: enough for GSO-sized packets */
#define QOS_UNLIMITED	  "100gbit"
#define QOS_POD_IFACE	  "eth0" /* the pod side of its veth, as CNI plugins name it */
#define QOS_RATE_LEN	  24
#define QOS_ERR_LEN	  160

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

bool qos_socket_marks(uint32_t pod_ip, uint32_t *mark, uint32_t *prio)
{
	struct qos *q = qos_get(pod_ip);

	if (!q)
		return false;
	*mark = QOS_MARK_BASE | q->q_minor;
	/*
	 * HTB picks the class straight from skb->priority when it names one of its classes
	 * (1:minor), with no classifier at all. This kernel has neither cls_fw nor u32's mark
	 * match, so the priority, not the mark, is what selects the class; while the pod has no
	 * class, HTB finds none and the packets go out unshaped.
	 */
	*prio = QOS_HTB_MAJOR << 16 | q->q_minor;
	return true;
}

void qos_mark_socket(int fd, uint32_t pod_ip)
{
	uint32_t mark, prio;

	if (!qos_socket_marks(pod_ip, &mark, &prio))
		return;
	if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0)
		log_warn("%s: SO_MARK", __func__);
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

/*
 * A pod.set, or a rebuild of the fabric's classes after a pod left: applied to the table when it
 * reaches the head of the queue, then tc runs off the loop (spawn_async), the fabric interface
 * first, then the pod's own. Requests run one at a time, in the order they came, so the last
 * one asked for is the one in force whatever each run takes. When tc fails, the pod's previous
 * settings go back into the table and tc runs again from them before the caller is answered.
 */
struct qos_req {
	TAILQ_ENTRY(qos_req) qr_entry;
	uint32_t qr_ip;
	bool qr_pod;		    /* a pod.set (else only the fabric's classes are rebuilt) */
	bool qr_set_rate;
	char qr_rate[QOS_RATE_LEN]; /* "" = unlimited */
	int qr_prio;		    /* or QOS_PRIO_KEEP */
	int qr_netns_fd;	    /* a dup of the pod's netns (its interface), -1 */
	char qr_old_rate[QOS_RATE_LEN]; /* the pod's settings before, put back when tc fails */
	int qr_old_prio;
	bool qr_fabric_any;	    /* the fabric script being run leaves an HTB root */
	bool qr_restoring, qr_restore_failed;
	int qr_ret;		    /* the first failure */
	char qr_err[QOS_ERR_LEN];
	qos_done_fn qr_done;
	void *qr_arg;
};

static TAILQ_HEAD(, qos_req) qos_reqs = TAILQ_HEAD_INITIALIZER(qos_reqs);
static bool qos_req_running;

static void qos_req_start(struct qos_req *r);

/* tc, or SLIM_TC: a stand-in the tests use (a slow tc proves the loop does not wait for it). */
static const char *qos_tc_path(void)
{
	const char *tc = getenv("SLIM_TC");

	return tc && tc[0] == '/' ? tc : spawn_find("tc");
}

/* Runs script (owned) with tc in netns_fd (-1: ours), off the loop; done(ret, r) follows. */
static int qos_tc(int netns_fd, char *script, size_t len, spawn_done_fn done, struct qos_req *r)
{
	const char *tc = qos_tc_path();
	const char *argv[] = {tc, "-force", "-batch", "-", NULL};
	int ret;

	ret = tc ? spawn_async(argv, netns_fd, script, len, done, r) : -ENOENT;
	if (ret < 0)
		free(script);
	return ret;
}

/*
 * Removing a root qdisc that may or may not be there: replacing it first (with a qdisc of another
 * kind and handle, which HTB accepts where it refuses a change of itself) makes the delete
 * succeed either way, so a script never depends on what an earlier, maybe failed, run left.
 */
static void qos_script_clear(FILE *f, const char *dev)
{
	fprintf(f, "qdisc replace dev %s root handle fffe: pfifo\nqdisc del dev %s root\n", dev,
		dev);
}

/* The fabric interface's classes from the table (or no HTB root): the script, NULL if none. */
static int qos_fabric_script(char **script, size_t *len, bool *any)
{
	char dev[IF_NAMESIZE];
	struct hnode *h = NULL;
	size_t b = 0;
	FILE *f;
	int ret;

	*script = NULL;
	*any = false;
	if ((ret = qos_fabric_dev(dev, sizeof(dev))) < 0)
		return ret;
	f = open_memstream(script, len);
	if (!f)
		return -ENOMEM;
	/* From scratch: a fresh root is simpler to get right than diffing classes and filters. */
	if (qos_fabric_shaped)
		qos_script_clear(f, dev);
	while (qos_ready && (h = htab_iter(&qos_by_ip, &b, h))) {
		const struct qos *q = container_of(h, struct qos, q_node);
		const char *rate = q->q_rate[0] ? q->q_rate : QOS_UNLIMITED;

		if (!q->q_rate[0] && q->q_prio < 0)
			continue;
		if (!*any) {
			/* default 0: whatever no filter classifies (unlimited pods, the router's
			 * own traffic) bypasses the classes, so it is not shaped at all. */
			fprintf(f, "qdisc add dev %s root handle %d: htb default 0\n", dev,
				QOS_HTB_MAJOR);
			*any = true;
		}
		/* HTB serves lower prio first when classes borrow; SO_PRIORITY is higher-first. */
		fprintf(f,
			"class add dev %s parent 1: classid 1:%x htb rate %s ceil %s burst %s "
			"cburst %s prio %d\n",
			dev, q->q_minor, rate, rate, QOS_BURST, QOS_BURST,
			q->q_prio >= 0 ? 7 - q->q_prio : 7);
	}
	if (fclose(f) != 0 || !*script) {
		free(*script);
		*script = NULL;
		return -ENOMEM;
	}
	if (!*len) {
		free(*script);
		*script = NULL;
	}
	return 0;
}

/* The pod's overlay traffic: one HTB class on its own interface, inside its netns. NULL: none. */
static char *qos_overlay_script(const struct qos *q, size_t *len)
{
	char *script = NULL;
	FILE *f;

	*len = 0;
	if (!q->q_shaped_overlay && !q->q_rate[0])
		return NULL;
	f = open_memstream(&script, len);
	if (!f)
		return NULL;
	if (q->q_shaped_overlay)
		qos_script_clear(f, QOS_POD_IFACE);
	if (q->q_rate[0])
		fprintf(f,
			"qdisc add dev %s root handle 1: htb default 1\n"
			"class add dev %s parent 1: classid 1:1 htb rate %s ceil %s burst %s "
			"cburst %s\n",
			QOS_POD_IFACE, QOS_POD_IFACE, q->q_rate, q->q_rate, QOS_BURST, QOS_BURST);
	if (fclose(f) != 0) {
		free(script);
		return NULL;
	}
	return script;
}

static void qos_req_fail(struct qos_req *r, int ret, const char *what)
{
	if (r->qr_restoring) {
		r->qr_restore_failed = true;
		return;
	}
	if (r->qr_ret == 0) {
		r->qr_ret = ret;
		snprintf(r->qr_err, sizeof(r->qr_err), "%s: %s", what,
			 ret == -EIO ? "failed" : strerror(-ret));
	}
}

static void qos_req_free(struct qos_req *r)
{
	if (r->qr_netns_fd >= 0)
		close(r->qr_netns_fd);
	free(r);
}

/* The request at the head is through (restored, if it failed): answer, start the next. */
static void qos_req_finish(struct qos_req *r)
{
	TAILQ_REMOVE(&qos_reqs, r, qr_entry);
	qos_req_running = false;
	if (r->qr_ret < 0) {
		char a[INET_ADDRSTRLEN];
		size_t n = strlen(r->qr_err);

		if (r->qr_restoring)
			snprintf(r->qr_err + n, sizeof(r->qr_err) - n, "; %s",
				 r->qr_restore_failed ? "restoring the previous settings failed too"
						      : "previous settings restored");
		inet_ntop(AF_INET, &r->qr_ip, a, sizeof(a));
		log_warnx("qos: pod %s: %s", a, r->qr_err);
	}
	if (r->qr_done)
		r->qr_done(r->qr_ret, r->qr_err, r->qr_arg);
	qos_req_free(r);
	if ((r = TAILQ_FIRST(&qos_reqs)))
		qos_req_start(r);
}

/* Both runs are through: restore the previous settings if one failed, else answer. */
static void qos_req_ran(struct qos_req *r)
{
	struct qos *q = r->qr_pod ? qos_find(r->qr_ip) : NULL;

	/* What a failed restore left is logged and answered; it is not restored in turn. */
	if (r->qr_ret < 0 && q && !r->qr_restoring) {
		r->qr_restoring = true;
		memcpy(q->q_rate, r->qr_old_rate, sizeof(q->q_rate));
		q->q_prio = r->qr_old_prio;
		qos_req_start(r);
		return;
	}
	qos_req_finish(r);
}

static void qos_req_overlay_done(int ret, void *arg)
{
	struct qos_req *r = arg;
	struct qos *q = qos_find(r->qr_ip);

	if (q)
		q->q_shaped_overlay = ret < 0 || q->q_rate[0]; /* after a failure: maybe */
	if (ret < 0)
		qos_req_fail(r, ret, "tc in the pod's netns");
	qos_req_ran(r);
}

static void qos_req_fabric_done(int ret, void *arg)
{
	struct qos_req *r = arg;
	struct qos *q = r->qr_pod ? qos_find(r->qr_ip) : NULL;
	size_t len;
	char *script;

	qos_fabric_shaped = ret < 0 || r->qr_fabric_any; /* after a failure: maybe */
	if (ret < 0)
		qos_req_fail(r, ret, "tc on the fabric interface");
	/* The pod may be gone by now: its netns with it. */
	script = q && r->qr_netns_fd >= 0 ? qos_overlay_script(q, &len) : NULL;
	if (!script)
		qos_req_ran(r);
	else if ((ret = qos_tc(r->qr_netns_fd, script, len, qos_req_overlay_done, r)) < 0)
		qos_req_overlay_done(ret, r);
}

/* On the loop, at the head of the queue: the table takes the request, tc follows off the loop. */
static void qos_req_start(struct qos_req *r)
{
	struct qos *q = r->qr_pod ? qos_get(r->qr_ip) : NULL;
	size_t len = 0;
	char *script;
	int ret;

	qos_req_running = true;
	if (r->qr_pod && !q) {
		qos_req_fail(r, -ENOMEM, "no class for the pod (out of class ids)");
		qos_req_finish(r);
		return;
	}
	if (q && !r->qr_restoring) {
		memcpy(r->qr_old_rate, q->q_rate, sizeof(q->q_rate));
		r->qr_old_prio = q->q_prio;
		if (r->qr_set_rate)
			memcpy(q->q_rate, r->qr_rate, sizeof(q->q_rate));
		if (r->qr_prio != QOS_PRIO_KEEP)
			q->q_prio = r->qr_prio;
	}
	ret = qos_fabric_script(&script, &len, &r->qr_fabric_any);
	if (ret == 0 && script)
		ret = qos_tc(-1, script, len, qos_req_fabric_done, r);
	else if (ret == 0)
		r->qr_fabric_any = false;
	if (ret < 0 || !script)
		qos_req_fabric_done(ret, r);
}

static int qos_req_queue(uint32_t ip, const struct pod *p, const char *rate, int prio,
			 qos_done_fn done, void *arg)
{
	struct qos_req *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->qr_ip = ip;
	r->qr_pod = p != NULL;
	r->qr_netns_fd = -1;
	if (p && p->p_netns_fd >= 0 &&
	    (r->qr_netns_fd = fcntl(p->p_netns_fd, F_DUPFD_CLOEXEC, 0)) < 0) {
		free(r);
		return -errno;
	}
	r->qr_set_rate = rate != NULL;
	if (rate)
		snprintf(r->qr_rate, sizeof(r->qr_rate), "%s", strcmp(rate, "none") ? rate : "");
	r->qr_prio = prio;
	r->qr_done = done;
	r->qr_arg = arg;
	TAILQ_INSERT_TAIL(&qos_reqs, r, qr_entry);
	if (!qos_req_running)
		qos_req_start(r);
	return 0;
}

int qos_pod_set(const struct pod *p, const char *rate, int prio, qos_done_fn done, void *arg,
		char *err, size_t errlen)
{
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
	ret = qos_req_queue(p->p_ip, p, rate, prio, done, arg);
	if (ret < 0)
		snprintf(err, errlen, "%s", strerror(-ret));
	return ret;
}

bool qos_idle(void)
{
	return TAILQ_EMPTY(&qos_reqs);
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
	/* Its class goes with the next rebuild of the fabric's; the pod's netns is gone. */
	if (shaped && qos_req_queue(ip, NULL, NULL, QOS_PRIO_KEEP, NULL, NULL) < 0)
		log_warnx("%s: out of memory: the class of a deleted pod stays", __func__);
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
	char dev[IF_NAMESIZE];
	const char *tc;
	struct qos_req *r;
	struct hnode *h;
	size_t b;

	/* After spawn_stop(): a run of ours that was queued is dropped, one running is done. */
	while ((r = TAILQ_FIRST(&qos_reqs))) {
		TAILQ_REMOVE(&qos_reqs, r, qr_entry);
		qos_req_free(r);
	}
	qos_req_running = false;
	if (!qos_ready)
		return;
	while ((b = 0, h = htab_iter(&qos_by_ip, &b, NULL))) {
		htab_remove(&qos_by_ip, h);
		free(container_of(h, struct qos, q_node));
	}
	/* Shutting down, the loop is over: waiting for tc here holds up no one. */
	if (qos_fabric_shaped && qos_fabric_dev(dev, sizeof(dev)) == 0 && (tc = qos_tc_path())) {
		const char *argv[] = {tc, "-force", "-batch", "-", NULL};
		char script[128];
		int n = snprintf(script, sizeof(script), "qdisc del dev %s root\n", dev);

		spawn_feed(argv, -1, script, (size_t)n);
	}
	htab_free(&qos_by_ip);
	qos_ready = false;
}
