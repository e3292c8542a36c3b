// SPDX-License-Identifier: MIT
/*
 * Unit tests for the cluster store's pure parts (router/store.c, router/etcd.c): the gateway's
 * encodings, the framing of a watch stream, the key layout, decoding range answers and watch
 * messages as etcd 3.4 writes them, and what a decoded key does to the directory.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "router.h"
#include "test.h"

/* store.c's neighbours these tests do not exercise. */
struct router router;
static int nft_refreshes, documents;

void nft_schedule(void)
{
	nft_refreshes++;
}

int control_apply_stored(const char *cmd, const char *origin, const char *text, size_t len)
{
	documents++;
	return 0;
}

struct pod *pod_find_ip(uint32_t ip)
{
	return NULL;
}

void pod_foreach(void (*fn)(const struct pod *p, void *arg), void *arg)
{
}

static void setup(void)
{
	directory_free();
	directory_init();
	if (!router.r_cluster)
		cluster_default(&router.r_cluster);
	router.r_self = cluster_node_by_name(router.r_cluster, "h1");
	snprintf(router.r_node_name, sizeof(router.r_node_name), "h1");
}

static char *b64(const char *s)
{
	return etcd_b64_encode(s, strlen(s));
}

/* A watch message as the gateway writes it, with one event of key/value (value NULL: DELETE). */
static json_t *watch_msg(const char *key, const char *value)
{
	char *k = b64(key), *v = value ? b64(value) : NULL;
	json_t *kv = value ? json_pack("{s:s, s:s, s:s, s:s}", "key", k, "value", v, "mod_revision",
				       "7", "create_revision", "7")
			   : json_pack("{s:s, s:s}", "key", k, "mod_revision", "8");
	json_t *ev = value ? json_pack("{s:o}", "kv", kv)
			   : json_pack("{s:s, s:o}", "type", "DELETE", "kv", kv);

	free(k);
	free(v);
	return json_pack("{s:{s:{s:s, s:s}, s:[o]}}", "result", "header", "cluster_id", "1",
			 "revision", "8", "events", ev);
}

TEST(base64_round_trips_and_refuses_junk)
{
	static const char *const plain[] = {"", "f", "fo", "foo", "foob", "/slim/pods/10.244.2.2"};
	char *out;
	size_t len;

	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
		char *e = b64(plain[i]);

		if (!ASSERT_OK(etcd_b64_decode(e, strlen(e), &out, &len), plain[i]))
			continue;
		ASSERT_EQ(len, strlen(plain[i]), "length");
		ASSERT_STREQ(out, plain[i], "round trip");
		free(out);
		free(e);
	}
	out = b64("/slim/a");
	ASSERT_STREQ(out, "L3NsaW0vYQ==", "what etcd writes");
	free(out);
	ASSERT_EQ(etcd_b64_decode("abc", 3, &out, &len), -EINVAL, "not a multiple of 4");
	ASSERT_EQ(etcd_b64_decode("ab=c", 4, &out, &len), -EINVAL, "padding inside");
	ASSERT_EQ(etcd_b64_decode("a===", 4, &out, &len), -EINVAL, "three pads");
	ASSERT_EQ(etcd_b64_decode("ab!d", 4, &out, &len), -EINVAL, "not the alphabet");
	ASSERT_EQ(etcd_b64_decode("YQ==YQ==", 8, &out, &len), -EINVAL, "padding before the end");
}

TEST(int64_fields_are_strings)
{
	json_t *v;
	int64_t n = -1;

	ASSERT_OK(etcd_int64(NULL, &n), "absent");
	ASSERT_EQ(n, 0, "absent is zero");
	v = json_string("7668682707463465479");
	ASSERT_OK(etcd_int64(v, &n), "a lease id");
	ASSERT_EQ(n, 7668682707463465479LL, "value");
	json_decref(v);
	v = json_string("12x");
	ASSERT_EQ(etcd_int64(v, &n), -EINVAL, "trailing junk");
	json_decref(v);
	v = json_string("99999999999999999999");
	ASSERT_EQ(etcd_int64(v, &n), -EINVAL, "overflow");
	json_decref(v);
	v = json_string(" 1");
	ASSERT_EQ(etcd_int64(v, &n), -EINVAL, "space");
	json_decref(v);
	v = json_true();
	ASSERT_EQ(etcd_int64(v, &n), -EINVAL, "not a number");
}

TEST(a_stream_is_cut_into_lines)
{
	struct etcd_linebuf lb = {0};
	const char *line;
	size_t len;
	static const char first[] = "{\"a\":1}\n{\"b\"", second[] = ":2}\r\n\n\n{\"c\":3}";

	ASSERT_OK(etcd_linebuf_append(&lb, first, strlen(first), 1024), "append");
	line = etcd_linebuf_next(&lb, &len, false);
	if (ASSERT_TRUE(line != NULL, "first line"))
		ASSERT_EQ(len, 7, "its length");
	ASSERT_TRUE(etcd_linebuf_next(&lb, &len, false) == NULL, "second not complete");
	ASSERT_OK(etcd_linebuf_append(&lb, second, strlen(second), 1024), "append more");
	line = etcd_linebuf_next(&lb, &len, false);
	if (ASSERT_TRUE(line != NULL, "second line"))
		ASSERT_TRUE(len == 7 && !memcmp(line, "{\"b\":2}", 7), "joined across reads");
	ASSERT_TRUE(etcd_linebuf_next(&lb, &len, false) == NULL, "blank lines skipped");
	line = etcd_linebuf_next(&lb, &len, true);
	ASSERT_TRUE(line && len == 7 && !memcmp(line, "{\"c\":3}", 7), "unterminated rest at end");
	ASSERT_EQ(etcd_linebuf_append(&lb, "0123456789", 10, 8), -EMSGSIZE, "bounded");
	etcd_linebuf_free(&lb);
}

TEST(the_key_layout)
{
	struct store_kv kv;
	const char *k;

	memset(&kv, 0, sizeof(kv));
	k = "/slim/policy";
	ASSERT_OK(store_key_parse("/slim/", k, strlen(k), &kv), "policy");
	ASSERT_EQ(kv.sk_kind, STORE_KEY_POLICY, "policy kind");
	k = "/slim/services";
	ASSERT_OK(store_key_parse("/slim/", k, strlen(k), &kv), "services");
	ASSERT_EQ(kv.sk_kind, STORE_KEY_SERVICES, "services kind");
	k = "/slim/nodes/h2";
	ASSERT_OK(store_key_parse("/slim/", k, strlen(k), &kv), "node");
	ASSERT_EQ(kv.sk_kind, STORE_KEY_NODE, "node kind");
	ASSERT_STREQ(kv.sk_node, "h2", "node name");
	k = "/slim/pods/10.244.2.2";
	ASSERT_OK(store_key_parse("/slim/", k, strlen(k), &kv), "pod");
	ASSERT_EQ(kv.sk_kind, STORE_KEY_POD, "pod kind");
	ASSERT_EQ(kv.sk_ip, inet_addr("10.244.2.2"), "pod ip");
	k = "/slim/pods/10.244.2";
	ASSERT_EQ(store_key_parse("/slim/", k, strlen(k), &kv), -EINVAL, "bad pod ip");
	k = "/slim/nodes/a/b";
	ASSERT_EQ(store_key_parse("/slim/", k, strlen(k), &kv), -EINVAL, "bad node name");
	k = "/slim/else";
	ASSERT_OK(store_key_parse("/slim/", k, strlen(k), &kv), "another key");
	ASSERT_EQ(kv.sk_kind, STORE_KEY_OTHER, "not ours");
	k = "/other/policy";
	ASSERT_OK(store_key_parse("/slim/", k, strlen(k), &kv), "another prefix");
	ASSERT_EQ(kv.sk_kind, STORE_KEY_OTHER, "not under the prefix");
	ASSERT_TRUE(store_prefix_valid("/slim/") && store_prefix_valid("/a/b/"), "prefixes");
	ASSERT_TRUE(!store_prefix_valid("slim/") && !store_prefix_valid("/slim") &&
			    !store_prefix_valid("/sl im/"),
		    "bad prefixes");
}

TEST(store_urls)
{
	char url[128], err[128];

	ASSERT_OK(store_parse_url("etcd:http://198.18.0.254:2379", url, sizeof(url), err,
				  sizeof(err)),
		  "good");
	ASSERT_STREQ(url, "http://198.18.0.254:2379", "base URL");
	ASSERT_EQ(store_parse_url("consul:http://x:1", url, sizeof(url), err, sizeof(err)), -EINVAL,
		  "another store");
	ASSERT_EQ(store_parse_url("etcd:ftp://x:1", url, sizeof(url), err, sizeof(err)), -EINVAL,
		  "another scheme");
	ASSERT_EQ(store_parse_url("etcd:http://x:1/a b", url, sizeof(url), err, sizeof(err)),
		  -EINVAL, "a space");
}

TEST(watch_messages_decode)
{
	struct store_batch b;
	char err[256];
	json_t *m;

	setup();
	m = watch_msg("/slim/pods/10.244.2.2", "{\"node\":\"h2\",\"name\":\"p1\",\"labels\":{\"app\":\"web\"}}");
	if (ASSERT_OK(store_batch_decode("/slim/", m, true, &b, err, sizeof(err)), err)) {
		ASSERT_EQ(b.sb_revision, 8, "revision");
		ASSERT_EQ(b.sb_n, 1, "one event");
		ASSERT_EQ(b.sb_kvs[0].sk_kind, STORE_KEY_POD, "a pod");
		ASSERT_TRUE(!b.sb_kvs[0].sk_delete, "a put");
		ASSERT_STREQ(b.sb_kvs[0].sk_node, "h2", "owner");
		ASSERT_STREQ(b.sb_kvs[0].sk_name, "p1", "name");
		ASSERT_EQ(b.sb_kvs[0].sk_mod_revision, 7, "mod revision");
		store_batch_clear(&b);
	}
	json_decref(m);

	m = watch_msg("/slim/pods/10.244.2.2", NULL);
	if (ASSERT_OK(store_batch_decode("/slim/", m, true, &b, err, sizeof(err)), err)) {
		ASSERT_EQ(b.sb_n, 1, "one event");
		ASSERT_TRUE(b.sb_kvs[0].sk_delete, "a delete");
		store_batch_clear(&b);
	}
	json_decref(m);

	/* A node may not speak for another node's address: skipped, the stream goes on. */
	m = watch_msg("/slim/pods/10.244.1.9", "{\"node\":\"h2\",\"name\":\"x\"}");
	if (ASSERT_OK(store_batch_decode("/slim/", m, true, &b, err, sizeof(err)), err)) {
		ASSERT_EQ(b.sb_n, 0, "nothing applied");
		ASSERT_EQ(b.sb_bad, 1, "one ignored");
		store_batch_clear(&b);
	}
	json_decref(m);
	m = watch_msg("/slim/pods/10.244.2.9", "{\"node\":\"h2\",\"name\":\"x\",\"labels\":{\"a\":1}}");
	ASSERT_OK(store_batch_decode("/slim/", m, true, &b, err, sizeof(err)), "bad labels");
	ASSERT_EQ(b.sb_bad, 1, "ignored");
	store_batch_clear(&b);
	json_decref(m);

	m = watch_msg("/slim/policy", "{\"policies\":[]}");
	if (ASSERT_OK(store_batch_decode("/slim/", m, true, &b, err, sizeof(err)), err)) {
		ASSERT_EQ(b.sb_kvs[0].sk_kind, STORE_KEY_POLICY, "the policy");
		ASSERT_STREQ(b.sb_kvs[0].sk_value, "{\"policies\":[]}", "its text");
		store_batch_clear(&b);
	}
	json_decref(m);
}

TEST(watch_control_messages)
{
	static const char created[] =
		"{\"result\":{\"header\":{\"cluster_id\":\"2\",\"revision\":\"2\",\"raft_term\":\"2\"},"
		"\"created\":true}}";
	static const char compacted[] =
		"{\"result\":{\"header\":{\"raft_term\":\"2\"},\"canceled\":true,"
		"\"compact_revision\":\"5\"}}";
	static const char *const bad[] = {
		"{\"error\":{\"grpc_code\":14,\"http_code\":503,\"message\":\"unavailable\"}}",
		"{\"result\":7}",
		"{\"result\":{\"header\":{\"revision\":\"x\"}}}",
		"{\"result\":{\"header\":{\"revision\":\"3\"},\"events\":{}}}",
		"{\"result\":{\"header\":{\"revision\":\"3\"},\"events\":[{\"type\":\"NOPE\",\"kv\":{}}]}}",
		"{\"result\":{\"header\":{\"revision\":\"3\"},\"events\":[{\"kv\":{\"key\":\"!!!!\"}}]}}",
		"{\"result\":{\"header\":{\"revision\":\"3\"},\"events\":[{\"kv\":{\"key\":7}}]}}",
	};
	struct store_batch b;
	char err[256];
	json_t *m;

	m = json_loads(created, 0, NULL);
	ASSERT_OK(store_batch_decode("/slim/", m, true, &b, err, sizeof(err)), "created");
	ASSERT_TRUE(b.sb_created && !b.sb_canceled, "created flag");
	ASSERT_EQ(b.sb_revision, 2, "revision");
	store_batch_clear(&b);
	json_decref(m);
	m = json_loads(compacted, 0, NULL);
	ASSERT_OK(store_batch_decode("/slim/", m, true, &b, err, sizeof(err)), "compacted");
	ASSERT_TRUE(b.sb_canceled, "canceled");
	ASSERT_EQ(b.sb_compact_revision, 5, "compact revision");
	store_batch_clear(&b);
	json_decref(m);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		m = json_loads(bad[i], 0, NULL);
		ASSERT_EQ(store_batch_decode("/slim/", m, true, &b, err, sizeof(err)), -EBADMSG,
			  bad[i]);
		json_decref(m);
	}
}

TEST(a_range_answer_decodes)
{
	char *k1 = b64("/slim/nodes/h2"), *v1 = b64("{\"fabric_ip\":\"198.18.0.2\",\"pod_cidr\":\"10.244.2.0/24\"}");
	char *k2 = b64("/slim/services"), *v2 = b64("{\"services\":[]}");
	struct store_batch b;
	char err[256];
	json_t *m;

	setup();
	m = json_pack("{s:{s:s}, s:[{s:s, s:s}, {s:s, s:s}], s:s}", "header", "revision", "12",
		      "kvs", "key", k1, "value", v1, "key", k2, "value", v2, "count", "2");
	if (ASSERT_OK(store_batch_decode("/slim/", m, false, &b, err, sizeof(err)), err)) {
		ASSERT_EQ(b.sb_revision, 12, "revision");
		ASSERT_EQ(b.sb_n, 2, "two keys");
		ASSERT_EQ(b.sb_kvs[0].sk_kind, STORE_KEY_NODE, "a node");
		ASSERT_EQ(b.sb_kvs[0].sk_fabric_ip, inet_addr("198.18.0.2"), "its fabric ip");
		ASSERT_EQ(b.sb_kvs[0].sk_pod_cidr.len, 24, "its pod cidr");
		ASSERT_EQ(b.sb_kvs[1].sk_kind, STORE_KEY_SERVICES, "the services");
		store_batch_clear(&b);
	}
	json_decref(m);
	free(k1);
	free(v1);
	free(k2);
	free(v2);
}

TEST(store_keys_feed_the_directory)
{
	struct store_batch b;
	uint64_t gen;
	char err[256];
	json_t *m;

	setup();
	m = watch_msg("/slim/pods/10.244.2.2", "{\"node\":\"h2\",\"name\":\"p1\",\"labels\":{\"app\":\"web\"}}");
	if (!ASSERT_OK(store_batch_decode("/slim/", m, true, &b, err, sizeof(err)), err))
		return;
	store_apply_pod(&b.sb_kvs[0]);
	ASSERT_TRUE(directory_find(inet_addr("10.244.2.2")) != NULL, "in the directory");
	ASSERT_STREQ(directory_find(inet_addr("10.244.2.2"))->dp_nodename, "h2", "under h2");
	gen = directory_generation();
	store_apply_pod(&b.sb_kvs[0]);
	ASSERT_EQ(directory_generation(), gen, "the same key again changes nothing");
	store_batch_clear(&b);
	json_decref(m);

	/* A local pod is the pod table's: a key of the store never replaces or removes it. */
	directory_put("h1", true, inet_addr("10.244.1.2"), "mine", NULL);
	m = watch_msg("/slim/pods/10.244.1.2", NULL);
	store_batch_decode("/slim/", m, true, &b, err, sizeof(err));
	store_apply_pod(&b.sb_kvs[0]);
	ASSERT_TRUE(directory_find(inet_addr("10.244.1.2")) != NULL, "local pod kept");
	store_batch_clear(&b);
	json_decref(m);

	/* The node's key goes (its lease expired): so do its pods. */
	m = watch_msg("/slim/nodes/h2", NULL);
	store_batch_decode("/slim/", m, true, &b, err, sizeof(err));
	store_apply_pod(&b.sb_kvs[0]);
	ASSERT_TRUE(directory_find(inet_addr("10.244.2.2")) == NULL, "h2's pod gone");
	store_batch_clear(&b);
	json_decref(m);
}
