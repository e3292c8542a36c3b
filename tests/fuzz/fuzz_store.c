// SPDX-License-Identifier: MIT
/*
 * Fuzzes the decoder of what etcd's gateway sends the router (router/etcd.c, router/store.c):
 * bytes from the network, cut into lines as a watch stream is, each line parsed and decoded as
 * a watch message or a range answer (the first input byte picks which, and where the stream is
 * split into reads), the decoded pod and node keys applied to the directory of a minimal router
 * (minirouter.c, node h1). A decoded pod must be in its node's pod_cidr and land in the
 * directory as decoded; nothing may crash, leak or read out of bounds.
 */
#include <errno.h>
#include <arpa/inet.h>

#include "fuzz.h"
#include "minirouter.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	minirouter_init();
	return 0;
}

static void fuzz_line(const char *line, size_t len, bool watch)
{
	struct store_batch b;
	char err[256];
	json_t *msg;
	int rc;

	msg = json_loadb(line, len, 0, NULL);
	if (!msg)
		return;
	rc = store_batch_decode(STORE_PREFIX_DEFAULT, msg, watch, &b, err, sizeof(err));
	FUZZ_CHECK(rc == 0 || rc == -EBADMSG || rc == -ENOMEM);
	if (rc == 0) {
		for (size_t i = 0; i < b.sb_n; i++) {
			const struct store_kv *kv = &b.sb_kvs[i];

			FUZZ_CHECK(kv->sk_kind >= STORE_KEY_OTHER && kv->sk_kind <= STORE_KEY_SERVICES);
			if (kv->sk_kind == STORE_KEY_POD && !kv->sk_delete) {
				const struct cluster_node *owner =
					cluster_owner(router.r_cluster, kv->sk_ip);

				FUZZ_CHECK(owner && !strcmp(owner->cn_name, kv->sk_node));
				FUZZ_CHECK(json_is_object(kv->sk_labels));
			}
			if ((kv->sk_kind == STORE_KEY_POLICY || kv->sk_kind == STORE_KEY_SERVICES) &&
			    !kv->sk_delete)
				FUZZ_CHECK(kv->sk_value && strlen(kv->sk_value) <= kv->sk_len);
			store_apply_pod(kv);
			if (kv->sk_kind == STORE_KEY_POD && !kv->sk_delete &&
			    strcmp(kv->sk_node, router.r_node_name)) {
				const struct dir_pod *d = directory_find(kv->sk_ip);

				FUZZ_CHECK(d && !d->dp_local && !strcmp(d->dp_nodename, kv->sk_node));
			}
		}
		store_batch_clear(&b);
	}
	json_decref(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct etcd_linebuf lb = {0};
	const char *line;
	bool watch;
	size_t len, chunk, off = 1;
	uint8_t *buf;

	if (size < 1)
		return 0;
	watch = data[0] & 1;
	chunk = (data[0] >> 1) + 1u; /* reads of 1-128 bytes */
	buf = fuzz_copy(data, size);
	while (off < size) {
		size_t n = size - off < chunk ? size - off : chunk;

		if (etcd_linebuf_append(&lb, (const char *)buf + off, n, 1u << 20) < 0)
			break;
		off += n;
		while ((line = etcd_linebuf_next(&lb, &len, false)))
			fuzz_line(line, len, watch);
	}
	while ((line = etcd_linebuf_next(&lb, &len, true)))
		fuzz_line(line, len, watch);
	etcd_linebuf_free(&lb);
	free(buf);
	return 0;
}
