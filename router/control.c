// SPDX-License-Identifier: MIT
/* slimctl's commands: JSON requests in (fragmented) CTL_REQ, JSON answers in (fragmented)
 * CTL_REP; policy documents parsed by a worker thread. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/eventfd.h>

#include "log.h"
#include "router.h"

#define CONTROL_ERR_MAX	 256
#define CONTROL_NAME_MAX 200 /* a document's display name */

/* Sends doc as one or more CTL_REP fragments (SLIM_MSGF_MORE on all but the last). */
static void control_send(struct client *c, uint32_t id, json_t *doc)
{
	const size_t chunk = SLIM_MSG_MAX - sizeof(struct slim_msg_hdr);
	char *text = json_dumps(doc, JSON_COMPACT);
	size_t len, off = 0;
	uint8_t *buf;

	if (!text)
		text = strdup("{\"ok\":false,\"error\":\"out of memory\"}");
	buf = text ? malloc(SLIM_MSG_MAX) : NULL;
	if (!buf) {
		free(text);
		client_close(c);
		return;
	}
	len = strlen(text);
	do {
		size_t n = len - off < chunk ? len - off : chunk;
		struct slim_msg_hdr h = {
			.type = SLIM_MSG_CTL_REP,
			.flags = off + n < len ? SLIM_MSGF_MORE : 0,
			.len = (uint32_t)(sizeof(h) + n),
			.id = id,
		};

		memcpy(buf, &h, sizeof(h));
		memcpy(buf + sizeof(h), text + off, n);
		/* slimctl reads as we write; large listings may queue more than a shim may. */
		if (client_reply(c, buf, sizeof(h) + n, -1, true) < 0)
			break;
		off += n;
	} while (off < len);
	free(buf);
	free(text);
}

static json_t *control_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static json_t *control_error(const char *fmt, ...)
{
	char msg[CONTROL_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return json_pack("{s:b, s:s}", "ok", 0, "error", msg);
}

static json_t *control_ok(json_t *extra)
{
	json_t *doc = json_pack("{s:b}", "ok", 1);

	if (extra) {
		json_object_update(doc, extra);
		json_decref(extra);
	}
	return doc;
}

void control_answer(struct client *c, uint32_t id, json_t *doc)
{
	control_send(c, id, doc);
}

/* Every key of req must be "cmd" or one of allowed. NULL when fine, else an error document. */
static json_t *control_check_keys(json_t *req, const char *const *allowed)
{
	const char *key;
	json_t *v;

	json_object_foreach(req, key, v) {
		bool ok = !strcmp(key, "cmd");

		for (const char *const *a = allowed; *a && !ok; a++)
			ok = !strcmp(key, *a);
		if (!ok)
			return control_error("unknown argument \"%s\"", key);
	}
	return NULL;
}

/* An optional string argument: NULL when absent; *bad set when present but not a string. */
static const char *control_str(json_t *req, const char *key, bool *bad)
{
	json_t *v = json_object_get(req, key);

	if (!v)
		return NULL;
	if (!json_is_string(v)) {
		*bad = true;
		return NULL;
	}
	return json_string_value(v);
}

/* pod.add {"netns": NAME, "ip": IP, ...} with the netns itself passed as a descriptor (slimctl
 * opened it with its own rights; NAME is for listings only). */
static json_t *control_pod_add(struct client *c, json_t *req)
{
	static const char *const keys[] = {"netns", "ip", "name", "labels", NULL};
	const char *netns, *ip, *name, *key;
	char err[CONTROL_ERR_MAX];
	json_t *labels, *v, *doc;
	struct in_addr a;
	struct pod *p;
	bool bad = false;

	if ((doc = control_check_keys(req, keys)))
		return doc;
	netns = control_str(req, "netns", &bad);
	ip = control_str(req, "ip", &bad);
	name = control_str(req, "name", &bad);
	if (bad)
		return control_error("netns, ip and name must be strings");
	if (!netns || !ip)
		return control_error("pod.add needs netns and ip");
	if (inet_pton(AF_INET, ip, &a) != 1)
		return control_error("bad IPv4 address \"%s\"", ip);
	labels = json_object_get(req, "labels");
	if (labels) {
		if (!json_is_object(labels))
			return control_error("labels must be an object");
		json_object_foreach(labels, key, v)
			if (!json_is_string(v) || !*key)
				return control_error("label \"%s\" must have a string value", key);
	}
	if (c->cs_req_fd < 0)
		return control_error("pod.add needs the netns passed as a descriptor");
	if (pod_add(netns, c->cs_req_fd, a.s_addr, name, labels, &p, err, sizeof(err)) < 0)
		return control_error("%s", err);
	log_info("pod %s added: ip %s netns %s", p->p_name, ip, netns);
	podsync_pod_changed(p, true);
	state_save();
	return control_ok(json_pack("{s:o}", "pod", pod_json(p)));
}

static json_t *control_pod_del(json_t *req)
{
	static const char *const keys[] = {"name", "ip", NULL};
	const char *name, *ip;
	struct pod *p = NULL;
	bool bad = false;
	struct in_addr a;
	json_t *doc;

	if ((doc = control_check_keys(req, keys)))
		return doc;
	name = control_str(req, "name", &bad);
	ip = control_str(req, "ip", &bad);
	if (bad || (!name == !ip))
		return control_error("pod.del needs exactly one of name or ip (strings)");
	if (name) {
		p = pod_find_name(name);
		if (!p)
			return control_error("no pod named %s", name);
	} else {
		if (inet_pton(AF_INET, ip, &a) != 1)
			return control_error("bad IPv4 address \"%s\"", ip);
		p = pod_find_ip(a.s_addr);
		if (!p)
			return control_error("no pod with ip %s", ip);
	}
	doc = control_ok(json_pack("{s:o}", "pod", pod_json(p)));
	log_info("pod %s deleted (%u listener entries dropped)", p->p_name, p->p_nlisteners);
	podsync_pod_changed(p, false);
	qos_pod_gone(p->p_ip);
	pool_pod_gone(p->p_ip);
	pod_del(p);
	state_save();
	return doc;
}

/*
 * pod.label {"name": N, "labels": {k: "v" | null}}: sets (or with null removes) labels of a pod of
 * this node. Everything that selects pods follows: the directory and every other router, policy,
 * the overlay filter and Services' backends.
 */
static json_t *control_pod_label(json_t *req)
{
	static const char *const keys[] = {"name", "labels", NULL};
	json_t *doc, *labels, *next, *v;
	const char *name, *key;
	bool bad = false;
	struct pod *p;

	if ((doc = control_check_keys(req, keys)))
		return doc;
	name = control_str(req, "name", &bad);
	labels = json_object_get(req, "labels");
	if (bad || !name || !json_is_object(labels) || !json_object_size(labels))
		return control_error("pod.label needs \"name\" and \"labels\" (an object)");
	json_object_foreach(labels, key, v) {
		if (!policy_label_valid(key, false))
			return control_error("bad label key \"%s\"", key);
		if (!json_is_null(v) &&
		    (!json_is_string(v) || !policy_label_valid(json_string_value(v), true)))
			return control_error("label \"%s\": a value must be a label value or null",
					     key);
	}
	p = pod_find_name(name);
	if (!p)
		return control_error("no pod named %s", name);
	next = json_deep_copy(p->p_labels);
	if (!next)
		return control_error("out of memory");
	json_object_foreach(labels, key, v) {
		if (json_is_null(v))
			json_object_del(next, key);
		else
			json_object_set(next, key, v);
	}
	json_decref(p->p_labels);
	p->p_labels = next;
	log_info("pod %s: labels changed", p->p_name);
	podsync_pod_changed(p, true);
	state_save();
	return control_ok(json_pack("{s:o}", "pod", pod_json(p)));
}

/* A display name from a request: printable, short, so it can go into logs and errors as is. */
static bool control_name_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > CONTROL_NAME_MAX)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

/*
 * policy.apply and service.apply run in two halves. Parsing and validating a large document
 * takes long (50,000 policies: ~0.5 s, mostly JSON), and the loop must keep serving connects
 * meanwhile, so a worker thread does it: the parsers touch nothing but the document and their
 * own allocations. The loop then swaps the result in, enforces it and answers. Applies run one
 * at a time, in order.
 */
struct control_job;

struct control_doc_kind {
	const char *dk_cmd; /* "policy.apply", ... */
	/* Off the loop: fills cj_doc, or cj_err and returns -errno. */
	int (*dk_parse)(struct control_job *j);
	/* On the loop: puts cj_doc in force and answers (now, or later and frees j then). Returns
	 * true when j is done with. */
	bool (*dk_install)(struct control_job *j);
	void (*dk_free)(void *doc);
};

struct control_job {
	TAILQ_ENTRY(control_job) cj_entry;
	const struct control_doc_kind *cj_kind;
	struct client *cj_client; /* NULL once the client went away (the work still completes) */
	uint32_t cj_id;
	char *cj_name;
	char *cj_text; /* a copy: the request's buffer is gone when the handler returns */
	size_t cj_len;
	struct cidr cj_services, cj_overlay; /* the cluster's ranges, for service documents */
	void *cj_doc;			     /* the worker's result */
	struct enforce_report cj_report;
	size_t cj_count, cj_nrules; /* policies or services in the document; rules (policy) */
	uint32_t cj_pod_ip;	    /* pod.set: the pod's address */
	bool cj_from_store; /* the cluster store's: put in force here, nobody to answer */
	int cj_ret;
	char cj_err[CONTROL_ERR_MAX * 2];
	uint64_t cj_queued_ms;
};

static TAILQ_HEAD(, control_job) control_jobs = TAILQ_HEAD_INITIALIZER(control_jobs);
/* Applied, waiting before answering: for the overlay filter (nft, off the loop), for the
 * services to be in force (service.c works in slices), or for tc (pod.set). */
static TAILQ_HEAD(, control_job) control_filtering = TAILQ_HEAD_INITIALIZER(control_filtering);
static int control_job_efd = -1; /* the worker's "done" signal to the loop */
static pthread_t control_worker;
static bool control_worker_busy;

static void *control_job_parse(void *arg)
{
	struct control_job *j = arg;
	uint64_t one = 1;

	j->cj_ret = j->cj_kind->dk_parse(j);
	/* An eventfd write of 1 cannot fail short of overflow (2^64 - 1 pending). */
	if (write(control_job_efd, &one, sizeof(one)) < 0)
		abort();
	return NULL;
}

static void control_job_free(struct control_job *j)
{
	if (j->cj_doc)
		j->cj_kind->dk_free(j->cj_doc);
	free(j->cj_name);
	free(j->cj_text);
	free(j);
}

/* Answers j's client, if it is still there (doc: a reference, dropped). */
static void control_job_answer(struct control_job *j, json_t *doc)
{
	if (!doc)
		doc = control_error("out of memory");
	if (j->cj_client)
		control_send(j->cj_client, j->cj_id, doc);
	json_decref(doc);
}

/* tc is through for a pod.set (or failed, and the previous settings are back): answer. */
static void control_pod_set_done(int ret, const char *err, void *arg)
{
	struct control_job *j = arg;

	TAILQ_REMOVE(&control_filtering, j, cj_entry);
	if (ret < 0) {
		control_job_answer(j, control_error("pod %s: %s", j->cj_name, err));
	} else {
		log_info("pod %s: rate limit and priority in force (%llu ms after the request)",
			 j->cj_name, (unsigned long long)(event_now_ms() - j->cj_queued_ms));
		control_job_answer(j, control_ok(json_pack("{s:s, s:o}", "name", j->cj_name, "qos",
							   qos_pod_json(j->cj_pod_ip))));
	}
	control_job_free(j);
}

/*
 * pod.set {"name": N, "egress_rate": "100mbit"|"none", "priority": 0-6|null}: shaping applies
 * to the pod's existing slim connections too (their sockets carry its mark already). tc runs off
 * the loop; the answer comes once it is in force (or failed). Returns NULL then.
 */
static json_t *control_pod_set(struct client *c, uint32_t id, json_t *req)
{
	static const char *const keys[] = {"name", "egress_rate", "priority", NULL};
	char err[CONTROL_ERR_MAX];
	const char *name, *rate;
	int prio = QOS_PRIO_KEEP;
	struct control_job *j;
	bool bad = false;
	json_t *doc, *pv;
	struct pod *p;

	if ((doc = control_check_keys(req, keys)))
		return doc;
	name = control_str(req, "name", &bad);
	rate = control_str(req, "egress_rate", &bad);
	if (bad || !name)
		return control_error("pod.set needs \"name\" (and egress_rate as a string)");
	pv = json_object_get(req, "priority");
	if (pv && json_is_null(pv))
		prio = -1;
	else if (pv && json_is_integer(pv) && json_integer_value(pv) >= 0 &&
		 json_integer_value(pv) <= 6)
		prio = (int)json_integer_value(pv);
	else if (pv)
		return control_error("priority must be 0-6 or null");
	if (!rate && prio == QOS_PRIO_KEEP)
		return control_error("pod.set: nothing to set (egress_rate, priority)");
	p = pod_find_name(name);
	if (!p)
		return control_error("no pod named %s", name);
	j = calloc(1, sizeof(*j));
	if (!j || !(j->cj_name = strdup(name))) {
		free(j);
		return control_error("out of memory");
	}
	j->cj_client = c;
	j->cj_id = id;
	j->cj_pod_ip = p->p_ip;
	j->cj_queued_ms = event_now_ms();
	TAILQ_INSERT_TAIL(&control_filtering, j, cj_entry);
	if (qos_pod_set(p, rate, prio, control_pod_set_done, j, err, sizeof(err)) < 0) {
		TAILQ_REMOVE(&control_filtering, j, cj_entry);
		control_job_free(j);
		return control_error("pod %s: %s", name, err);
	}
	if (prio >= 0)
		snprintf(err, sizeof(err), "%d", prio);
	log_info("pod %s: egress rate %s, priority %s asked for", name, rate ? rate : "(unchanged)",
		 prio == QOS_PRIO_KEEP ? "(unchanged)" : prio < 0 ? "none" : err);
	return NULL;
}

/* Starts the worker on the oldest job, unless it is busy. */
static void control_job_next(void)
{
	struct control_job *j = TAILQ_FIRST(&control_jobs);
	int ret;

	if (control_worker_busy || !j)
		return;
	ret = pthread_create(&control_worker, NULL, control_job_parse, j);
	if (ret == 0) {
		control_worker_busy = true;
		return;
	}
	/* No thread: parse here, the loop waits (correct, only slower). */
	log_warnx("%s: pthread_create: %s: parsing on the loop", __func__, strerror(ret));
	control_worker_busy = true;
	control_job_parse(j);
	control_worker = pthread_self();
}

static int control_policy_parse(struct control_job *j)
{
	return policy_parse(j->cj_text, j->cj_len, j->cj_name, (struct policy_doc **)&j->cj_doc,
			    j->cj_err, sizeof(j->cj_err));
}

static void control_policy_free(void *doc)
{
	policy_doc_free(doc);
}

/* Third half, on the loop: the overlay filter is in force (or nft failed): answer. */
static void control_job_filtered(int ret, void *arg)
{
	struct control_job *j = arg;
	const struct enforce_report *r = &j->cj_report;

	TAILQ_REMOVE(&control_filtering, j, cj_entry);
	log_info("policy %s applied: %zu policies, %zu rules; %u of %u connections revoked in %llu "
		 "us; overlay filter %s (%llu ms after the request)",
		 j->cj_name, j->cj_count, j->cj_nrules, r->er_revoked, r->er_checked,
		 (unsigned long long)r->er_usec, ret == 0 ? "in force" : "unchanged",
		 (unsigned long long)(event_now_ms() - j->cj_queued_ms));
	control_job_answer(j, control_ok(json_pack(
				      "{s:s, s:I, s:I, s:I, s:I, s:I, s:b, s:I}", "origin",
				      j->cj_name, "policies", (json_int_t)j->cj_count, "rules",
				      (json_int_t)j->cj_nrules, "checked", (json_int_t)r->er_checked,
				      "revoked", (json_int_t)r->er_revoked, "failed",
				      (json_int_t)r->er_failed, "overlay_filter", ret == 0, "usec",
				      (json_int_t)r->er_usec)));
	control_job_free(j);
}

/* Swaps the policy in and enforces it; the answer waits for the overlay filter. */
static bool control_policy_install(struct control_job *j)
{
	struct policy_doc *d = j->cj_doc;

	j->cj_doc = NULL;
	j->cj_count = policy_doc_count(d);
	j->cj_nrules = policy_doc_rules(d);
	policy_install(d);
	TAILQ_INSERT_TAIL(&control_filtering, j, cj_entry);
	enforce_policy(&j->cj_report, control_job_filtered, j);
	return false;
}

static const struct control_doc_kind control_policy_kind = {
	"policy.apply", control_policy_parse, control_policy_install, control_policy_free};

static int control_service_parse(struct control_job *j)
{
	return service_parse(j->cj_text, j->cj_len, j->cj_name, &j->cj_services, &j->cj_overlay,
			     (struct service_doc **)&j->cj_doc, j->cj_err, sizeof(j->cj_err));
}

static void control_service_free(void *doc)
{
	service_doc_free(doc);
}

/* Third half, on the loop: the services are in force (or were dropped at shutdown). */
static void control_service_done(int revoked, void *arg)
{
	struct control_job *j = arg;

	TAILQ_REMOVE(&control_filtering, j, cj_entry);
	if (revoked < 0) {
		control_job_answer(j, control_error("%s: %s", j->cj_name, strerror(-revoked)));
	} else {
		log_info("services %s applied: %zu services, %d connections reset (%llu ms after "
			 "the request)",
			 j->cj_name, j->cj_count, revoked,
			 (unsigned long long)(event_now_ms() - j->cj_queued_ms));
		control_job_answer(j, control_ok(json_pack(
					      "{s:s, s:I, s:I, s:I}", "origin", j->cj_name,
					      "services", (json_int_t)j->cj_count, "revoked",
					      (json_int_t)revoked, "total_ms",
					      (json_int_t)(event_now_ms() - j->cj_queued_ms))));
	}
	control_job_free(j);
}

/* Hands the document over; service.c puts it in force in slices and calls back. */
static bool control_service_install(struct control_job *j)
{
	struct service_doc *d = j->cj_doc;

	j->cj_doc = NULL;
	j->cj_count = service_doc_count(d);
	TAILQ_INSERT_TAIL(&control_filtering, j, cj_entry);
	service_install(d, control_service_done, j);
	return false;
}

static const struct control_doc_kind control_service_kind = {
	"service.apply", control_service_parse, control_service_install, control_service_free};

/* The store has the document (or refused it): answer. Every router, this one included, puts it
 * in force from its watch. */
static void control_job_stored(int ret, int64_t revision, const char *msg, void *arg)
{
	struct control_job *j = arg;
	bool policy = j->cj_kind == &control_policy_kind;

	TAILQ_REMOVE(&control_filtering, j, cj_entry);
	if (ret < 0) {
		log_warnx("%s %s: the cluster store refused it, nothing changed: %s",
			  j->cj_kind->dk_cmd, j->cj_name, msg ? msg : strerror(-ret));
		control_job_answer(j, control_error("%s: cluster store: %s; nothing changed",
						    j->cj_name, msg ? msg : strerror(-ret)));
	} else {
		log_info("%s %s: stored at revision %lld (%llu ms after the request)",
			 j->cj_kind->dk_cmd, j->cj_name, (long long)revision,
			 (unsigned long long)(event_now_ms() - j->cj_queued_ms));
		control_job_answer(j, control_ok(json_pack(
					      "{s:s, s:b, s:I, s:I, s:I}", "origin", j->cj_name,
					      "stored", 1, "revision", (json_int_t)revision,
					      policy ? "policies" : "services",
					      (json_int_t)j->cj_count, "rules",
					      (json_int_t)j->cj_nrules)));
	}
	control_job_free(j);
}

/*
 * With a cluster store, a valid document from slimctl goes to the store, not in force here: the
 * watch brings it to every router alike (this one too, a few ms later). A document the parser
 * refused never gets there.
 */
static void control_job_store(struct control_job *j)
{
	bool policy = j->cj_kind == &control_policy_kind;
	int ret;

	j->cj_count = policy ? policy_doc_count(j->cj_doc) : service_doc_count(j->cj_doc);
	j->cj_nrules = policy ? policy_doc_rules(j->cj_doc) : 0;
	j->cj_kind->dk_free(j->cj_doc);
	j->cj_doc = NULL;
	TAILQ_INSERT_TAIL(&control_filtering, j, cj_entry);
	ret = store_put_document(policy ? STORE_KEY_POLICY : STORE_KEY_SERVICES, j->cj_text,
				 j->cj_len, control_job_stored, j);
	if (ret < 0)
		control_job_stored(ret, 0, NULL, j);
}

/* Second half, on the loop: swap in, enforce (the overlay filter follows off the loop). */
static void control_job_done(struct event_loop *loop, int fd, uint32_t events, void *arg)
{
	struct control_job *j;
	uint64_t n;

	if (read(fd, &n, sizeof(n)) != sizeof(n) || !control_worker_busy)
		return;
	if (!pthread_equal(control_worker, pthread_self()))
		pthread_join(control_worker, NULL);
	control_worker_busy = false;
	j = TAILQ_FIRST(&control_jobs);
	TAILQ_REMOVE(&control_jobs, j, cj_entry);
	if (j->cj_ret < 0) {
		if (j->cj_ret == -ENOMEM && !j->cj_err[0])
			snprintf(j->cj_err, sizeof(j->cj_err), "%s: out of memory", j->cj_name);
		log_warnx("%s refused, keeping what is in force: %s", j->cj_kind->dk_cmd,
			  j->cj_err);
		control_job_answer(j, control_error("%s", j->cj_err));
		control_job_free(j);
	} else if (!j->cj_from_store && store_enabled()) {
		control_job_store(j);
	} else if (j->cj_kind->dk_install(j)) {
		control_job_free(j);
	}
	control_job_next();
}

/* Queues a document for the worker (c NULL: nobody to answer). 0 or -errno. */
static int control_job_queue(const struct control_doc_kind *kind, struct client *c, uint32_t id,
			     const char *name, const char *text, size_t len, bool from_store)
{
	struct control_job *j;

	if (control_job_efd < 0) {
		control_job_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (control_job_efd < 0 ||
		    event_add(router.r_loop, control_job_efd, EVENT_READ, control_job_done, NULL)) {
			if (control_job_efd >= 0)
				close(control_job_efd);
			control_job_efd = -1;
			return -EMFILE;
		}
	}
	j = calloc(1, sizeof(*j));
	if (!j || !(j->cj_name = strdup(name)) || !(j->cj_text = malloc(len ? len : 1))) {
		if (j)
			control_job_free(j);
		return -ENOMEM;
	}
	j->cj_kind = kind;
	memcpy(j->cj_text, text, len);
	j->cj_len = len;
	j->cj_client = c;
	j->cj_id = id;
	j->cj_from_store = from_store;
	j->cj_services = router.r_cluster->cl_services;
	j->cj_overlay = router.r_cluster->cl_overlay;
	j->cj_queued_ms = event_now_ms();
	TAILQ_INSERT_TAIL(&control_jobs, j, cj_entry);
	control_job_next();
	return 0;
}

int control_apply_stored(const char *cmd, const char *origin, const char *text, size_t len)
{
	return control_job_queue(!strcmp(cmd, "policy.apply") ? &control_policy_kind
							       : &control_service_kind,
				 NULL, 0, origin, text, len, true);
}

/*
 * policy.apply / service.apply {"name": N} + the document: parse and validate it whole (off the
 * loop), then swap it in and enforce it before answering, so the caller knows it is in force.
 * The caller read the file (with its own rights) and sent its content; the router never opens a
 * path a caller names. N is only for messages ("where it came from"). Returns NULL when the
 * answer will come later (control_job_done).
 */
static json_t *control_doc_apply(const struct control_doc_kind *kind, struct client *c,
				 uint32_t id, json_t *req, const char *text, size_t len,
				 bool attached)
{
	static const char *const keys[] = {"name", NULL};
	const char *name;
	bool bad = false;
	json_t *doc;
	int ret;

	if ((doc = control_check_keys(req, keys)))
		return doc;
	name = control_str(req, "name", &bad);
	if (bad || !name || !control_name_valid(name))
		return control_error("%s needs \"name\": 1-%d printable characters", kind->dk_cmd,
				     CONTROL_NAME_MAX);
	if (!attached)
		return control_error("%s needs the document after the request", kind->dk_cmd);
	ret = control_job_queue(kind, c, id, name, text, len, false);
	if (ret < 0)
		return control_error("%s", ret == -ENOMEM ? "out of memory"
							  : "cannot start the document worker");
	return NULL;
}

void control_client_gone(struct client *c)
{
	struct control_job *j;

	upgrade_client_gone(c);
	TAILQ_FOREACH(j, &control_jobs, cj_entry)
		if (j->cj_client == c)
			j->cj_client = NULL;
	TAILQ_FOREACH(j, &control_filtering, cj_entry)
		if (j->cj_client == c)
			j->cj_client = NULL;
}

bool control_idle(void)
{
	return !control_worker_busy && TAILQ_EMPTY(&control_jobs) &&
	       TAILQ_EMPTY(&control_filtering);
}

void control_stop(void)
{
	struct control_job *j;

	if (control_worker_busy && !pthread_equal(control_worker, pthread_self()))
		pthread_join(control_worker, NULL);
	control_worker_busy = false;
	while ((j = TAILQ_FIRST(&control_jobs))) {
		TAILQ_REMOVE(&control_jobs, j, cj_entry);
		control_job_free(j);
	}
	/* Shutting down: their overlay filter runs are dropped (spawn_stop), no one is answered. */
	while ((j = TAILQ_FIRST(&control_filtering))) {
		TAILQ_REMOVE(&control_filtering, j, cj_entry);
		control_job_free(j);
	}
	if (control_job_efd >= 0) {
		event_del(router.r_loop, control_job_efd);
		close(control_job_efd);
		control_job_efd = -1;
	}
}

static json_t *control_status(void)
{
	const struct cluster *cl = router.r_cluster;
	json_t *nodes = json_array(), *doc;
	char ip[INET_ADDRSTRLEN], net[INET_ADDRSTRLEN], cidr[INET_ADDRSTRLEN + 4];

	for (size_t i = 0; i < cl->cl_nnodes; i++) {
		const struct cluster_node *n = &cl->cl_nodes[i];

		inet_ntop(AF_INET, &n->cn_fabric_ip, ip, sizeof(ip));
		inet_ntop(AF_INET, &n->cn_pod_cidr.net, net, sizeof(net));
		snprintf(cidr, sizeof(cidr), "%s/%u", net, n->cn_pod_cidr.len);
		json_array_append_new(nodes, json_pack("{s:s, s:s, s:s, s:b}", "name", n->cn_name,
						       "fabric_ip", ip, "pod_cidr", cidr, "self",
						       n == router.r_self));
	}
	inet_ntop(AF_INET, &router.r_fabric_ip, ip, sizeof(ip));
	doc = json_pack(
		"{s:s, s:s, s:i, s:s, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:I, s:{s:I, s:I, "
		"s:I}, s:o, s:o, s:o}",
		"node", router.r_node_name, "fabric_ip", ip, "peer_port", router.r_peer_port,
		"cluster", cl->cl_origin, "nodes", nodes, "pods", (json_int_t)pod_count(),
		"listeners", (json_int_t)listener_count(), "conns", (json_int_t)conn_count(),
		"clients", (json_int_t)client_count(), "cache", (json_int_t)resolve_cache_count(),
		"resolving", (json_int_t)resolve_inflight_count(), "peers", peer_list_json(),
		"uptime", (json_int_t)(time(NULL) - router.r_started), "counters", "connect",
		(json_int_t)router.r_nconnect, "fallback", (json_int_t)router.r_nfallback, "listen",
		(json_int_t)router.r_nlisten, "fastpath", fastpath_status_json(), "governance",
		governor_status_json(), "pool", pool_status_json());
	if (doc)
		json_object_set_new(doc, "services", json_integer((json_int_t)service_count()));
	if (doc && store_enabled())
		json_object_set_new(doc, "store", store_status_json());
	/* What the resource caps turned away (client.c, peer.c). */
	if (doc)
		json_object_set_new(doc, "limits",
				    json_pack("{s:I, s:i, s:i, s:I, s:I}", "clients_refused",
					      (json_int_t)client_refused_count(),
					      "client_pending_max", (int)client_pending_max(),
					      "client_queued_max", (int)client_queued_max(),
					      "fabric_refused", (json_int_t)peer_refused_count(),
					      "fabric_timed_out",
					      (json_int_t)peer_timed_out_count()));
	return control_ok(doc);
}

void control_handle(struct client *c, uint32_t id, const char *text, size_t len)
{
	static const char *const none[] = {NULL};
	/* The request's JSON, then (after a NUL) the document it carries, if any. */
	size_t jlen = strnlen(text, len);
	bool attached = jlen < len;
	const char *att = attached ? text + jlen + 1 : NULL;
	size_t attlen = attached ? len - jlen - 1 : 0;
	json_error_t jerr;
	json_t *req, *doc;
	const char *cmd;

	req = json_loadb(text, jlen, JSON_REJECT_DUPLICATES, &jerr);
	if (!req || !json_is_object(req)) {
		doc = control_error("bad request: %s", req ? "not an object" : jerr.text);
		goto out;
	}
	cmd = json_string_value(json_object_get(req, "cmd"));
	if (!cmd)
		doc = control_error("bad request: no \"cmd\" string");
	else if (!strcmp(cmd, "pod.add"))
		doc = control_pod_add(c, req);
	else if (!strcmp(cmd, "pod.del"))
		doc = control_pod_del(req);
	else if (!strcmp(cmd, "pod.set")) {
		if (!(doc = control_pod_set(c, id, req))) {
			json_decref(req);
			return; /* answered when tc is through (control_pod_set_done) */
		}
	}
	else if (!strcmp(cmd, "pod.label"))
		doc = control_pod_label(req);
	else if (!strcmp(cmd, "upgrade")) {
		static const char *const keys[] = {"binary", NULL};
		bool bad = false;
		const char *binary;

		if (!(doc = control_check_keys(req, keys))) {
			binary = control_str(req, "binary", &bad);
			if (bad || (binary && (!*binary || binary[0] != '/')))
				doc = control_error("upgrade: \"binary\" must be an absolute path");
			else if (!(doc = upgrade_begin(c, id, binary))) {
				json_decref(req);
				return; /* answered by the new router, or here when it fails */
			}
		}
	}
	else if (!strcmp(cmd, "policy.apply") || !strcmp(cmd, "service.apply")) {
		doc = control_doc_apply(!strcmp(cmd, "policy.apply") ? &control_policy_kind
								     : &control_service_kind,
					c, id, req, att, attlen, attached);
		if (!doc) {
			json_decref(req);
			return; /* answered when the document is in force (control_job_done) */
		}
	} else if (attached)
		doc = control_error("%s takes no document", cmd);
	else if ((doc = control_check_keys(req, none)))
		; /* the remaining commands take no arguments */
	else if (!strcmp(cmd, "pod.list"))
		doc = control_ok(json_pack("{s:o}", "pods", pod_list_json()));
	else if (!strcmp(cmd, "conns")) {
		doc = control_ok(json_pack("{s:o}", "conns", conn_list_json()));
	} else if (!strcmp(cmd, "listeners")) {
		listener_gc();
		doc = control_ok(json_pack("{s:o}", "listeners", listener_list_json()));
	} else if (!strcmp(cmd, "service.show")) {
		doc = control_ok(json_pack("{s:o}", "services", service_list_json()));
	} else if (!strcmp(cmd, "policy.show"))
		doc = control_ok(json_pack("{s:o}", "policy", policy_json()));
	else if (!strcmp(cmd, "directory"))
		doc = control_ok(json_pack("{s:o}", "pods", directory_json()));
	else if (!strcmp(cmd, "status"))
		doc = control_status();
	else
		doc = control_error("unknown command \"%s\"", cmd);
out:
	json_decref(req);
	if (!doc)
		doc = control_error("out of memory");
	control_send(c, id, doc);
	json_decref(doc);
}
