// SPDX-License-Identifier: MIT
/*
 * Fuzzes control_handle() (router/control.c), the router's decoder of slimctl's JSON commands,
 * inside a minimal router (minirouter.c) with one control client on a socketpair. Every input
 * must get a reply that passes the requester's own check (slim_msg_check_reply) and whose JSON
 * says {"ok": true|false, ...}, and the client must stay open.
 *
 * Commands with effects outside the process are not run: policy.apply (runs nft) and pod.set
 * (runs tc); add new ones to fuzz_unsafe_cmds. pod.add wants its netns passed as a descriptor,
 * which slimctl opens from the "netns" path: here it runs only when netns is absent, not a string,
 * "/proc/self/ns/net", or "@pod", which stands for the namespace in $FUZZ_NETNS (substituted
 * before the call), and the target opens that path as slimctl would. fuzz_decoders.sh runs the
 * target in a namespace of its own, so whatever a pod.add starts (dialing peers) stays in there.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"
#include "minirouter.h"
#include "msg.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);

static const char *const fuzz_unsafe_cmds[] = {"policy.apply", "pod.set", NULL};

static struct client fuzz_client;
static int fuzz_peer = -1;
static uint32_t fuzz_id;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	int sv[2], sndbuf = 8 << 20;

	minirouter_init();
	/* A send buffer big enough that no reply is ever queued for the event loop. */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	if (setsockopt(sv[0], SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf)) < 0)
		setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	fuzz_client.cs_fd = sv[0];
	fuzz_client.cs_pid = getpid();
	fuzz_client.cs_uid = 0;
	TAILQ_INIT(&fuzz_client.cs_pending);
	STAILQ_INIT(&fuzz_client.cs_outq);
	fuzz_peer = sv[1];
	return 0;
}

/*
 * Decides whether an input may run, and substitutes "@pod". Returns the text to pass (data
 * itself, or a new string the caller frees in *owned), or NULL to skip the input.
 */
static const char *fuzz_filter(const uint8_t *data, size_t size, char **owned)
{
	const char *cmd, *ns, *pod_ns = getenv("FUZZ_NETNS");
	json_t *req, *jns;
	const char *text = (const char *)data;

	*owned = NULL;
	req = json_loadb(text, size, JSON_REJECT_DUPLICATES, NULL);
	if (!req)
		return text;
	cmd = json_string_value(json_object_get(req, "cmd"));
	for (unsigned i = 0; cmd && fuzz_unsafe_cmds[i]; i++) {
		if (!strcmp(cmd, fuzz_unsafe_cmds[i])) {
			json_decref(req);
			return NULL;
		}
	}
	jns = json_object_get(req, "netns");
	ns = json_string_value(jns);
	if (!cmd || strcmp(cmd, "pod.add") || !ns || !strcmp(ns, "/proc/self/ns/net")) {
		json_decref(req);
		return text;
	}
	if (strcmp(ns, "@pod") || !pod_ns) {
		json_decref(req);
		return NULL;
	}
	json_object_set_new(req, "netns", json_string(pod_ns));
	*owned = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	return *owned;
}

/* Reads the whole reply (all fragments) and checks it. */
static void fuzz_check_reply(void)
{
	static uint8_t buf[SLIM_MSG_MAX];
	struct slim_msg_hdr h;
	json_t *doc, *ok;
	char *json = NULL;
	size_t jlen = 0;

	for (;;) {
		int fd;
		ssize_t n = slim_msg_recv(fuzz_peer, buf, sizeof(buf), &fd, MSG_DONTWAIT);

		FUZZ_CHECK(n > 0); /* every request gets a complete reply, at once */
		FUZZ_CHECK(fd < 0);
		FUZZ_CHECK(slim_msg_check_reply(buf, (size_t)n, SLIM_MSG_CTL_REP, fuzz_id) == 0);
		memcpy(&h, buf, sizeof(h));
		json = realloc(json, jlen + (size_t)n - sizeof(h) + 1);
		FUZZ_CHECK(json != NULL);
		memcpy(json + jlen, buf + sizeof(h), (size_t)n - sizeof(h));
		jlen += (size_t)n - sizeof(h);
		if (!(h.flags & SLIM_MSGF_MORE))
			break;
	}
	doc = json_loadb(json, jlen, 0, NULL);
	FUZZ_CHECK(json_is_object(doc));
	ok = json_object_get(doc, "ok");
	FUZZ_CHECK(json_is_boolean(ok));
	if (json_is_false(ok))
		FUZZ_CHECK(json_is_string(json_object_get(doc, "error")));
	json_decref(doc);
	free(json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *owned, *copy;
	const char *text = fuzz_filter(data, size, &owned);

	if (!text)
		return 0;
	/* An exactly sized copy: the decoder must not read past len (no NUL is promised). */
	if (owned) {
		copy = (char *)fuzz_copy((const uint8_t *)owned, strlen(owned));
		size = strlen(owned);
	} else {
		copy = (char *)fuzz_copy(data, size);
	}
	fuzz_id++;
	/* What slimctl passes with pod.add: the namespace it names, opened. */
	fuzz_client.cs_req_fd = -1;
	if (owned)
		fuzz_client.cs_req_fd = open(getenv("FUZZ_NETNS"), O_RDONLY | O_CLOEXEC);
	else if (memmem(data, size, "/proc/self/ns/net", 17))
		fuzz_client.cs_req_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	control_handle(&fuzz_client, fuzz_id, copy, size);
	if (fuzz_client.cs_req_fd >= 0)
		close(fuzz_client.cs_req_fd);
	FUZZ_CHECK(!fuzz_client.cs_closing);
	fuzz_check_reply();
	free(copy);
	free(owned);
	return 0;
}
