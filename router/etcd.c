// SPDX-License-Identifier: MIT
/*
 * etcd's v3 JSON gateway over HTTP: unary calls (POST /v3/kv/range, ...) and streams (POST
 * /v3/watch, one JSON object per line), driven by libcurl's multi interface from the router's
 * loop, so that nothing here ever blocks it. Also the gateway's encodings: base64 keys and
 * values, int64 numbers as decimal strings.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "log.h"
#include "router.h"

/*
 * A whole answer (a range of every pod of the cluster and the two documents) or one watch
 * message (a document of up to 16 MiB, base64, in JSON) must fit; more is an answer we refuse
 * rather than let a misbehaving server grow the router without bound.
 */
#define ETCD_BODY_MAX	    (64u << 20)
#define ETCD_CONNECT_MS	    1000
#define ETCD_USER_AGENT	    "slimrouterd"

struct etcd_req {
	TAILQ_ENTRY(etcd_req) rq_entry;
	CURL *rq_easy;
	struct curl_slist *rq_headers;
	bool rq_stream;
	etcd_reply_fn rq_reply;	 /* unary */
	etcd_stream_fn rq_event; /* stream */
	void *rq_arg;
	struct etcd_linebuf rq_in;
	bool rq_overflow;
	bool rq_dispatching; /* a stream callback is running: a close only marks it */
	bool rq_closed;
	char rq_errbuf[CURL_ERROR_SIZE];
};

static TAILQ_HEAD(, etcd_req) etcd_reqs = TAILQ_HEAD_INITIALIZER(etcd_reqs);
static struct event_loop *etcd_loop;
static CURLM *etcd_multi;
static char *etcd_base;		 /* "http://host:port", no trailing slash */
static long long etcd_timer = -1; /* libcurl's one timeout, as a loop timer */

/* ---- base64 (RFC 4648, with padding: what the gateway writes for bytes fields) ---- */

static const char etcd_b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *etcd_b64_encode(const void *data, size_t len)
{
	const uint8_t *p = data;
	size_t olen = (len + 2) / 3 * 4, o = 0;
	char *out;

	if (len > SIZE_MAX / 2)
		return NULL;
	out = malloc(olen + 1);
	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;

		if (i + 1 < len)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < len)
			v |= p[i + 2];
		out[o++] = etcd_b64_alphabet[(v >> 18) & 63];
		out[o++] = etcd_b64_alphabet[(v >> 12) & 63];
		out[o++] = i + 1 < len ? etcd_b64_alphabet[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < len ? etcd_b64_alphabet[v & 63] : '=';
	}
	out[o] = '\0';
	return out;
}

static int etcd_b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int etcd_b64_decode(const char *s, size_t slen, char **out, size_t *outlen)
{
	size_t o = 0, pad = 0;
	char *buf;

	/* Go's encoding/json writes []byte with padding, so the length is a multiple of 4. */
	if (slen % 4)
		return -EINVAL;
	if (slen && s[slen - 1] == '=')
		pad = slen >= 2 && s[slen - 2] == '=' ? 2 : 1;
	buf = malloc(slen / 4 * 3 + 1);
	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < slen; i += 4) {
		uint32_t v = 0;

		for (size_t k = 0; k < 4; k++) {
			int d = etcd_b64_value(s[i + k]);

			if (d < 0) {
				/* '=' only as the last one or two characters. */
				if (s[i + k] != '=' || i + 4 != slen || k < 4 - pad) {
					free(buf);
					return -EINVAL;
				}
				d = 0;
			}
			v = v << 6 | (uint32_t)d;
		}
		buf[o++] = (char)(v >> 16);
		if (i + 4 != slen || pad < 2)
			buf[o++] = (char)(v >> 8);
		if (i + 4 != slen || pad < 1)
			buf[o++] = (char)v;
	}
	buf[o] = '\0';
	*out = buf;
	*outlen = o;
	return 0;
}

int etcd_int64(const json_t *v, int64_t *out)
{
	const char *s;
	char *end;
	long long n;

	/* The gateway writes int64 fields as strings; an absent field is zero (proto3). */
	if (!v) {
		*out = 0;
		return 0;
	}
	if (json_is_integer(v)) {
		*out = json_integer_value(v);
		return 0;
	}
	if (!json_is_string(v))
		return -EINVAL;
	s = json_string_value(v);
	if (!*s || json_string_length(v) != strlen(s) || (*s != '-' && (*s < '0' || *s > '9')))
		return -EINVAL;
	errno = 0;
	n = strtoll(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*out = n;
	return 0;
}

/* ---- a stream cut into lines: the gateway ends every message of a stream with '\n' ---- */

int etcd_linebuf_append(struct etcd_linebuf *lb, const char *data, size_t len, size_t max)
{
	if (lb->lb_off) {
		memmove(lb->lb_buf, lb->lb_buf + lb->lb_off, lb->lb_len - lb->lb_off);
		lb->lb_len -= lb->lb_off;
		lb->lb_off = 0;
	}
	if (len > max || lb->lb_len > max - len)
		return -EMSGSIZE;
	if (lb->lb_len + len + 1 > lb->lb_cap) {
		size_t cap = lb->lb_cap ? lb->lb_cap : 4096;
		char *nb;

		while (cap < lb->lb_len + len + 1)
			cap *= 2;
		nb = realloc(lb->lb_buf, cap);
		if (!nb)
			return -ENOMEM;
		lb->lb_buf = nb;
		lb->lb_cap = cap;
	}
	memcpy(lb->lb_buf + lb->lb_len, data, len);
	lb->lb_len += len;
	lb->lb_buf[lb->lb_len] = '\0';
	return 0;
}

const char *etcd_linebuf_next(struct etcd_linebuf *lb, size_t *len, bool final)
{
	while (lb->lb_off < lb->lb_len) {
		char *start = lb->lb_buf + lb->lb_off;
		size_t avail = lb->lb_len - lb->lb_off;
		char *nl = memchr(start, '\n', avail);
		size_t n;

		if (!nl && !final)
			return NULL;
		n = nl ? (size_t)(nl - start) : avail;
		lb->lb_off += nl ? n + 1 : n;
		/* Blank lines (and "\r\n" ends) carry nothing. */
		while (n && (start[n - 1] == '\r' || start[n - 1] == ' ' || start[n - 1] == '\t'))
			n--;
		if (n) {
			*len = n;
			return start;
		}
	}
	return NULL;
}

void etcd_linebuf_free(struct etcd_linebuf *lb)
{
	free(lb->lb_buf);
	memset(lb, 0, sizeof(*lb));
}

/* ---- requests ---- */

static void etcd_req_free(struct etcd_req *rq)
{
	TAILQ_REMOVE(&etcd_reqs, rq, rq_entry);
	if (rq->rq_easy) {
		curl_multi_remove_handle(etcd_multi, rq->rq_easy);
		curl_easy_cleanup(rq->rq_easy);
	}
	curl_slist_free_all(rq->rq_headers);
	etcd_linebuf_free(&rq->rq_in);
	free(rq);
}

static size_t etcd_on_data(char *data, size_t size, size_t n, void *arg)
{
	struct etcd_req *rq = arg;

	/* Only buffered here: handlers run after libcurl returns, where they may start and stop
	 * transfers (libcurl refuses that from inside its callbacks). */
	if (etcd_linebuf_append(&rq->rq_in, data, n, ETCD_BODY_MAX) < 0) {
		rq->rq_overflow = true;
		return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
	}
	return n * size;
}

static struct etcd_req *etcd_req_new(const char *path, json_t *body, long timeout_ms)
{
	struct etcd_req *rq;
	char url[512];
	char *text;

	if (!etcd_multi)
		return NULL;
	if (snprintf(url, sizeof(url), "%s%s", etcd_base, path) >= (int)sizeof(url))
		return NULL;
	rq = calloc(1, sizeof(*rq));
	if (!rq)
		return NULL;
	TAILQ_INSERT_TAIL(&etcd_reqs, rq, rq_entry);
	text = json_dumps(body, JSON_COMPACT);
	rq->rq_easy = curl_easy_init();
	rq->rq_headers = curl_slist_append(NULL, "Content-Type: application/json");
	/* No "Expect: 100-continue" for bodies over 1 KiB: the gateway does not answer it, and
	 * libcurl would wait a second before sending the body. */
	if (rq->rq_headers)
		rq->rq_headers = curl_slist_append(rq->rq_headers, "Expect:");
	if (!text || !rq->rq_easy || !rq->rq_headers) {
		free(text);
		etcd_req_free(rq);
		return NULL;
	}
	curl_easy_setopt(rq->rq_easy, CURLOPT_URL, url);
	curl_easy_setopt(rq->rq_easy, CURLOPT_PROTOCOLS_STR, "http,https");
	/* The store's address is given; a proxy from the environment is not ours to use. */
	curl_easy_setopt(rq->rq_easy, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(rq->rq_easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(rq->rq_easy, CURLOPT_USERAGENT, ETCD_USER_AGENT);
	curl_easy_setopt(rq->rq_easy, CURLOPT_HTTPHEADER, rq->rq_headers);
	curl_easy_setopt(rq->rq_easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(text));
	curl_easy_setopt(rq->rq_easy, CURLOPT_COPYPOSTFIELDS, text);
	curl_easy_setopt(rq->rq_easy, CURLOPT_WRITEFUNCTION, etcd_on_data);
	curl_easy_setopt(rq->rq_easy, CURLOPT_WRITEDATA, rq);
	curl_easy_setopt(rq->rq_easy, CURLOPT_PRIVATE, rq);
	curl_easy_setopt(rq->rq_easy, CURLOPT_ERRORBUFFER, rq->rq_errbuf);
	curl_easy_setopt(rq->rq_easy, CURLOPT_CONNECTTIMEOUT_MS, (long)ETCD_CONNECT_MS);
	/* A watch is idle for as long as nothing changes: keepalive probes find a dead peer. */
	curl_easy_setopt(rq->rq_easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(rq->rq_easy, CURLOPT_TCP_KEEPIDLE, 5L);
	curl_easy_setopt(rq->rq_easy, CURLOPT_TCP_KEEPINTVL, 2L);
	if (timeout_ms > 0)
		curl_easy_setopt(rq->rq_easy, CURLOPT_TIMEOUT_MS, timeout_ms);
	free(text);
	if (curl_multi_add_handle(etcd_multi, rq->rq_easy) != CURLM_OK) {
		etcd_req_free(rq);
		return NULL;
	}
	return rq;
}

struct etcd_req *etcd_call(const char *path, json_t *body, long timeout_ms, etcd_reply_fn fn,
			   void *arg)
{
	struct etcd_req *rq = etcd_req_new(path, body, timeout_ms);

	if (rq) {
		rq->rq_reply = fn;
		rq->rq_arg = arg;
	}
	return rq;
}

struct etcd_req *etcd_stream(const char *path, json_t *body, etcd_stream_fn fn, void *arg)
{
	struct etcd_req *rq = etcd_req_new(path, body, 0);

	if (rq) {
		rq->rq_stream = true;
		rq->rq_event = fn;
		rq->rq_arg = arg;
	}
	return rq;
}

void etcd_close(struct etcd_req *rq)
{
	if (!rq)
		return;
	if (rq->rq_dispatching)
		rq->rq_closed = true;
	else
		etcd_req_free(rq);
}

size_t etcd_inflight(void)
{
	struct etcd_req *rq;
	size_t n = 0;

	TAILQ_FOREACH(rq, &etcd_reqs, rq_entry)
		n++;
	return n;
}

/* A message of a stream: delivered, or the stream fails (not JSON: we cannot know where the
 * next message starts). Returns false when the stream is gone. */
static bool etcd_stream_line(struct etcd_req *rq, const char *line, size_t len)
{
	json_error_t jerr;
	json_t *obj = json_loadb(line, len, 0, &jerr);
	char msg[200];

	rq->rq_dispatching = true;
	if (obj && json_is_object(obj)) {
		rq->rq_event(0, obj, NULL, rq->rq_arg);
	} else {
		snprintf(msg, sizeof(msg), "malformed stream message: %s",
			 obj ? "not an object" : jerr.text);
		rq->rq_closed = true;
		rq->rq_event(-EBADMSG, NULL, msg, rq->rq_arg);
	}
	json_decref(obj);
	rq->rq_dispatching = false;
	if (rq->rq_closed) {
		etcd_req_free(rq);
		return false;
	}
	return true;
}

/* Delivers the complete lines of every open stream (after libcurl returned). */
static void etcd_drain_streams(void)
{
	struct etcd_req *rq;
	const char *line;
	size_t len;

again:
	TAILQ_FOREACH(rq, &etcd_reqs, rq_entry) {
		if (!rq->rq_stream || rq->rq_closed)
			continue;
		if ((line = etcd_linebuf_next(&rq->rq_in, &len, false))) {
			/* The handler may have started or stopped requests: walk afresh. */
			etcd_stream_line(rq, line, len);
			goto again;
		}
	}
}

static int etcd_curl_error(CURLcode res)
{
	switch (res) {
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_WRITE_ERROR:
		return -EMSGSIZE;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

/* A transfer ended: its callback, once, then it is freed. */
static void etcd_finish(struct etcd_req *rq, CURLcode res)
{
	long code = 0;
	char msg[CURL_ERROR_SIZE + 64];
	const char *line;
	size_t len;

	curl_easy_getinfo(rq->rq_easy, CURLINFO_RESPONSE_CODE, &code);
	curl_multi_remove_handle(etcd_multi, rq->rq_easy);
	if (res != CURLE_OK)
		snprintf(msg, sizeof(msg), "%s", rq->rq_overflow ? "answer too large"
					    : rq->rq_errbuf[0] ? rq->rq_errbuf
							       : curl_easy_strerror(res));
	if (rq->rq_stream) {
		/* What came before the end still counts; a last line may lack its newline. */
		while (res == CURLE_OK && (line = etcd_linebuf_next(&rq->rq_in, &len, true)))
			if (!etcd_stream_line(rq, line, len))
				return;
		if (res == CURLE_OK)
			snprintf(msg, sizeof(msg), "stream ended (HTTP %ld)", code);
		/* Its handler may close it: that only marks it, it is freed here. */
		rq->rq_dispatching = true;
		rq->rq_event(res == CURLE_OK ? -EPIPE : etcd_curl_error(res), NULL, msg,
			     rq->rq_arg);
		etcd_req_free(rq);
		return;
	}
	rq->rq_dispatching = true;
	if (res != CURLE_OK) {
		rq->rq_reply(etcd_curl_error(res), NULL, msg, rq->rq_arg);
	} else {
		json_error_t jerr;
		json_t *body = json_loadb(rq->rq_in.lb_buf ? rq->rq_in.lb_buf : "",
					  rq->rq_in.lb_len, 0, &jerr);

		if (!body || !json_is_object(body)) {
			snprintf(msg, sizeof(msg), "HTTP %ld, malformed answer: %s", code,
				 body ? "not an object" : jerr.text);
			rq->rq_reply(-EBADMSG, NULL, msg, rq->rq_arg);
		} else if (code != 200) {
			const char *m = json_string_value(json_object_get(body, "message"));

			snprintf(msg, sizeof(msg), "HTTP %ld: %s", code, m ? m : "(no message)");
			rq->rq_reply(code == 404 ? -ENOENT : -EPROTO, body, msg, rq->rq_arg);
		} else {
			rq->rq_reply(0, body, NULL, rq->rq_arg);
		}
		json_decref(body);
	}
	etcd_req_free(rq);
}

/* After libcurl did some work: deliver stream messages and finished transfers. */
static void etcd_progress(void)
{
	CURLMsg *m;
	int left;

	etcd_drain_streams();
	/* One at a time: a handler may free other transfers, and their messages with them. */
	while ((m = curl_multi_info_read(etcd_multi, &left))) {
		struct etcd_req *rq = NULL;
		CURLcode res = m->data.result;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&rq);
		if (rq)
			etcd_finish(rq, res);
	}
}

static void etcd_on_socket(struct event_loop *loop, int fd, uint32_t events, void *arg)
{
	int flags = 0, running;

	if (events & EPOLLIN)
		flags |= CURL_CSELECT_IN;
	if (events & EPOLLOUT)
		flags |= CURL_CSELECT_OUT;
	if (events & (EPOLLERR | EPOLLHUP))
		flags |= CURL_CSELECT_ERR;
	curl_multi_socket_action(etcd_multi, fd, flags, &running);
	etcd_progress();
}

static long etcd_on_timer(struct event_loop *loop, void *arg)
{
	int running;

	/* Before libcurl runs: it may arm its next timeout from inside. */
	etcd_timer = -1;
	curl_multi_socket_action(etcd_multi, CURL_SOCKET_TIMEOUT, 0, &running);
	etcd_progress();
	return EVENT_TIMER_STOP;
}

static int etcd_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	uint32_t mask = 0;
	int ret;

	if (what == CURL_POLL_REMOVE) {
		event_del(etcd_loop, s);
		return 0;
	}
	if (what & CURL_POLL_IN)
		mask |= EVENT_READ;
	if (what & CURL_POLL_OUT)
		mask |= EVENT_WRITE;
	ret = event_add(etcd_loop, s, mask, etcd_on_socket, NULL);
	if (ret < 0) {
		errno = -ret;
		log_warn("%s: event_add %d", __func__, (int)s);
		return -1;
	}
	return 0;
}

static int etcd_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
	if (etcd_timer >= 0)
		event_timer_del(etcd_loop, etcd_timer);
	etcd_timer = -1;
	if (timeout_ms >= 0) {
		etcd_timer = event_timer_add(etcd_loop, timeout_ms, etcd_on_timer, NULL);
		if (etcd_timer < 0)
			return -1;
	}
	return 0;
}

int etcd_init(struct event_loop *loop, const char *base_url)
{
	size_t n = strlen(base_url);

	if (etcd_multi)
		return -EALREADY;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return -ENOMEM;
	while (n && base_url[n - 1] == '/')
		n--;
	etcd_base = strndup(base_url, n);
	etcd_multi = curl_multi_init();
	if (!etcd_base || !etcd_multi) {
		etcd_free();
		return -ENOMEM;
	}
	etcd_loop = loop;
	curl_multi_setopt(etcd_multi, CURLMOPT_SOCKETFUNCTION, etcd_curl_socket);
	curl_multi_setopt(etcd_multi, CURLMOPT_TIMERFUNCTION, etcd_curl_timer);
	return 0;
}

void etcd_free(void)
{
	struct etcd_req *rq;

	while ((rq = TAILQ_FIRST(&etcd_reqs)))
		etcd_req_free(rq);
	if (etcd_multi)
		curl_multi_cleanup(etcd_multi);
	etcd_multi = NULL;
	if (etcd_timer >= 0 && etcd_loop)
		event_timer_del(etcd_loop, etcd_timer);
	etcd_timer = -1;
	free(etcd_base);
	etcd_base = NULL;
	curl_global_cleanup();
}
