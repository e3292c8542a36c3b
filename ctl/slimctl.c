// SPDX-License-Identifier: MIT
/*
 * slimctl: parses a command from a static token table, sends one CTL_REQ (JSON) to the
 * router's control socket, reads the CTL_REP fragments and prints the answer.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>

#include <jansson.h>

#include "ctl.h"
#include "ctlcall.h"
#include "proto.h"

static const char *ctl_argv0 = "slimctl";
/* What the command sends besides its JSON: a document (policy apply), a descriptor (pod add). */
static char *ctl_doc;
static size_t ctl_doc_len;
static int ctl_pass_fd = -1;

void ctl_die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", ctl_argv0);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* pod add --netns PATH --ip IP [--name N] [--label k=v ...] */
static void ctl_build_pod_add(int argc, char **argv, json_t *req)
{
	static const struct option opts[] = {
		{"netns", required_argument, NULL, 'n'},
		{"ip", required_argument, NULL, 'i'},
		{"name", required_argument, NULL, 'N'},
		{"label", required_argument, NULL, 'l'},
		{NULL, 0, NULL, 0},
	};
	json_t *labels = json_object();
	const char *path;
	int opt;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		char *eq;

		switch (opt) {
		case 'n':
			json_object_set_new(req, "netns", json_string(optarg));
			break;
		case 'i':
			json_object_set_new(req, "ip", json_string(optarg));
			break;
		case 'N':
			json_object_set_new(req, "name", json_string(optarg));
			break;
		case 'l':
			eq = strchr(optarg, '=');
			if (!eq || eq == optarg)
				ctl_die("--label wants KEY=VALUE, got \"%s\"", optarg);
			*eq = '\0';
			json_object_set_new(labels, optarg, json_string(eq + 1));
			break;
		default:
			ctl_die("usage: pod add --netns PATH --ip IP [--name N] [--label K=V ...]");
		}
	}
	if (optind != argc)
		ctl_die("pod add: unexpected argument \"%s\"", argv[optind]);
	if (!json_object_get(req, "netns") || !json_object_get(req, "ip"))
		ctl_die("pod add needs --netns PATH and --ip IP");
	json_object_set_new(req, "labels", labels);
	/* We open the namespace, with our rights, and pass it: the router never opens a path we
	 * name (O_NONBLOCK: a FIFO put there must not hang us either). */
	path = json_string_value(json_object_get(req, "netns"));
	ctl_pass_fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (ctl_pass_fd < 0)
		ctl_die("%s: %s", path, strerror(errno));
}

/* pod del (--name N | --ip IP) */
static void ctl_build_pod_del(int argc, char **argv, json_t *req)
{
	static const struct option opts[] = {
		{"name", required_argument, NULL, 'N'},
		{"ip", required_argument, NULL, 'i'},
		{NULL, 0, NULL, 0},
	};
	int opt;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'N':
			json_object_set_new(req, "name", json_string(optarg));
			break;
		case 'i':
			json_object_set_new(req, "ip", json_string(optarg));
			break;
		default:
			ctl_die("usage: pod del (--name N | --ip IP)");
		}
	}
	if (optind != argc)
		ctl_die("pod del: unexpected argument \"%s\"", argv[optind]);
	if (!json_object_get(req, "name") == !json_object_get(req, "ip"))
		ctl_die("pod del needs exactly one of --name N or --ip IP");
}

/* pod set NAME [--egress-rate RATE|none] [--priority N|none] */
static void ctl_build_pod_set(int argc, char **argv, json_t *req)
{
	static const struct option opts[] = {
		{"egress-rate", required_argument, NULL, 'r'},
		{"priority", required_argument, NULL, 'p'},
		{NULL, 0, NULL, 0},
	};
	int opt;

	/* NAME comes first; the options follow it. */
	if (argc < 2 || argv[1][0] == '-')
		ctl_die("usage: pod set NAME [--egress-rate RATE|none] [--priority N|none]");
	json_object_set_new(req, "name", json_string(argv[1]));
	argc--;
	argv++;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		char *end;
		long v;

		switch (opt) {
		case 'r':
			json_object_set_new(req, "egress_rate", json_string(optarg));
			break;
		case 'p':
			if (!strcmp(optarg, "none")) {
				json_object_set_new(req, "priority", json_null());
				break;
			}
			v = strtol(optarg, &end, 10);
			if (*end || end == optarg || v < 0 || v > 6)
				ctl_die("--priority wants 0-6 or none, got \"%s\"", optarg);
			json_object_set_new(req, "priority", json_integer(v));
			break;
		default:
			ctl_die("usage: pod set NAME [--egress-rate RATE|none] [--priority "
				"N|none]");
		}
	}
	if (optind != argc)
		ctl_die("pod set: unexpected argument \"%s\"", argv[optind]);
}

/*
 * Reads a document the router is to parse: a regular file (or "-", standard input) of at most
 * SLIM_CTL_DOC_MAX bytes, read with the caller's rights. Anything else is refused here: a FIFO
 * or a device could block us forever or never end. Returns the bytes (NUL-free is not required:
 * the router parses exactly len bytes) and sets *len.
 */
static char *ctl_read_doc(const char *path, size_t *len)
{
	bool is_stdin = !strcmp(path, "-");
	size_t cap = 1 << 16, off = 0;
	struct stat st;
	char *buf;
	int fd;

	fd = is_stdin ? 0 : open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		ctl_die("%s: %s", path, strerror(errno));
	if (!is_stdin) {
		if (fstat(fd, &st) < 0)
			ctl_die("%s: %s", path, strerror(errno));
		if (!S_ISREG(st.st_mode))
			ctl_die("%s: not a regular file (give a file, or - for standard input)",
				path);
		if (st.st_size > SLIM_CTL_DOC_MAX)
			ctl_die("%s: %lld bytes, more than the %d bytes a document may have", path,
				(long long)st.st_size, SLIM_CTL_DOC_MAX);
	}
	buf = malloc(cap);
	for (;;) {
		ssize_t n;

		if (!buf)
			ctl_die("out of memory");
		if (off == cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			continue;
		}
		n = read(fd, buf + off, cap - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			ctl_die("%s: %s", path, strerror(errno));
		if (n == 0)
			break;
		off += (size_t)n;
		/* A file may grow while we read it; standard input has no size to check first. */
		if (off > SLIM_CTL_DOC_MAX)
			ctl_die("%s: more than the %d bytes a document may have", path,
				SLIM_CTL_DOC_MAX);
	}
	if (!is_stdin)
		close(fd);
	*len = off;
	return buf;
}

/* policy apply FILE|- and service apply FILE|-: we read the document (with our rights) and send
 * it; the router never opens a path we name. The name only labels its messages. */
static void ctl_build_doc_apply(int argc, char **argv, json_t *req)
{
	char *abs;

	if (argc != 2 || (argv[1][0] == '-' && argv[1][1]))
		ctl_die("usage: %s apply FILE|-", argv[0]);
	ctl_doc = ctl_read_doc(argv[1], &ctl_doc_len);
	abs = strcmp(argv[1], "-") ? realpath(argv[1], NULL) : NULL;
	json_object_set_new(req, "name",
			    json_string(abs ? abs : strcmp(argv[1], "-") ? argv[1] : "(stdin)"));
	free(abs);
}

/* pod label NAME KEY=VALUE|KEY- ...: KEY- removes the label, as kubectl label does. */
static void ctl_build_pod_label(int argc, char **argv, json_t *req)
{
	json_t *labels = json_object();

	if (argc < 3)
		ctl_die("usage: pod label NAME KEY=VALUE|KEY- ...");
	json_object_set_new(req, "name", json_string(argv[1]));
	for (int i = 2; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		size_t n = strlen(argv[i]);

		if (eq && eq != argv[i]) {
			*eq = '\0';
			json_object_set_new(labels, argv[i], json_string(eq + 1));
		} else if (!eq && n > 1 && argv[i][n - 1] == '-') {
			argv[i][n - 1] = '\0';
			json_object_set_new(labels, argv[i], json_null());
		} else {
			ctl_die("pod label: \"%s\" is neither KEY=VALUE nor KEY-", argv[i]);
		}
	}
	json_object_set_new(req, "labels", labels);
}

/* upgrade [BINARY]: the binary as an absolute path (the router resolves nothing a caller
 * names relative to its own directory). */
static void ctl_build_upgrade(int argc, char **argv, json_t *req)
{
	char *abs;

	if (argc > 2 || (argc == 2 && argv[1][0] == '-'))
		ctl_die("usage: upgrade [BINARY]");
	if (argc < 2)
		return;
	abs = realpath(argv[1], NULL);
	if (!abs)
		ctl_die("upgrade: %s: %s", argv[1], strerror(errno));
	json_object_set_new(req, "binary", json_string(abs));
	free(abs);
}

static void ctl_build_none(int argc, char **argv, json_t *req)
{
	if (argc > 1)
		ctl_die("unexpected argument \"%s\"", argv[1]);
}

struct ctl_command {
	const char *cc_words[2];
	const char *cc_cmd; /* the request's "cmd" */
	void (*cc_build)(int argc, char **argv, json_t *req);
	void (*cc_show)(json_t *rep);
	const char *cc_usage;
};

static const struct ctl_command ctl_commands[] = {
	{{"pod", "add"},
	 "pod.add",
	 ctl_build_pod_add,
	 ctl_show_pod_added,
	 "pod add --netns PATH --ip IP [--name N] [--label K=V ...]"},
	{{"pod", "del"},
	 "pod.del",
	 ctl_build_pod_del,
	 ctl_show_pod_deleted,
	 "pod del (--name N | --ip IP)"},
	{{"pod", "set"},
	 "pod.set",
	 ctl_build_pod_set,
	 ctl_show_pod_set,
	 "pod set NAME [--egress-rate RATE|none] [--priority N|none]"},
	{{"pod", "list"}, "pod.list", ctl_build_none, ctl_show_pods, "pod list"},
	{{"conns", NULL}, "conns", ctl_build_none, ctl_show_conns, "conns"},
	{{"listeners", NULL}, "listeners", ctl_build_none, ctl_show_listeners, "listeners"},
	{{"status", NULL}, "status", ctl_build_none, ctl_show_status, "status"},
	{{"policy", "apply"},
	 "policy.apply",
	 ctl_build_doc_apply,
	 ctl_show_policy_applied,
	 "policy apply FILE|-"},
	{{"policy", "show"}, "policy.show", ctl_build_none, ctl_show_policy, "policy show"},
	{{"service", "apply"},
	 "service.apply",
	 ctl_build_doc_apply,
	 ctl_show_services_applied,
	 "service apply FILE|-"},
	{{"service", "show"}, "service.show", ctl_build_none, ctl_show_services, "service show"},
	{{"pod", "label"},
	 "pod.label",
	 ctl_build_pod_label,
	 ctl_show_pod_labeled,
	 "pod label NAME KEY=VALUE|KEY- ..."},
	{{"directory", NULL}, "directory", ctl_build_none, ctl_show_directory, "directory"},
	{{"upgrade", NULL}, "upgrade", ctl_build_upgrade, ctl_show_upgraded, "upgrade [BINARY]"},
};

static void ctl_usage(FILE *f)
{
	fprintf(f,
		"usage: slimctl [-s SOCKET] [--json] COMMAND ...\n"
		"  -s SOCKET   router control socket (default $SLIM_ROUTER_SOCKET or %s)\n"
		"  --json      print the router's JSON answer\n"
		"commands:\n",
		SLIM_DEFAULT_SOCKET);
	for (size_t i = 0; i < sizeof(ctl_commands) / sizeof(ctl_commands[0]); i++)
		fprintf(f, "  %s\n", ctl_commands[i].cc_usage);
}

/* Finds the command named by the leading words; *nwords gets how many it used. */
static const struct ctl_command *ctl_lookup(int argc, char **argv, int *nwords)
{
	for (size_t i = 0; i < sizeof(ctl_commands) / sizeof(ctl_commands[0]); i++) {
		const struct ctl_command *c = &ctl_commands[i];
		int n = c->cc_words[1] ? 2 : 1;

		if (argc < n || strcmp(argv[0], c->cc_words[0]) ||
		    (n == 2 && strcmp(argv[1], c->cc_words[1])))
			continue;
		*nwords = n;
		return c;
	}
	return NULL;
}

/*
 * Sends req (its JSON, then a NUL and ctl_doc when there is one; ctl_pass_fd with it) and returns
 * the whole answer, parsed; dies when the router cannot be asked.
 */
static json_t *ctl_request(const char *path, json_t *req)
{
	char err[512];
	json_t *rep;

	if (ctlcall_doc(path, req, ctl_doc, ctl_doc_len, ctl_pass_fd, &rep, err, sizeof(err)) < 0)
		ctl_die("%s", err);
	return rep;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"socket", required_argument, NULL, 's'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *path = getenv("SLIM_ROUTER_SOCKET");
	const struct ctl_command *cmd;
	bool as_json = false;
	json_t *req, *rep;
	int opt, nwords;

	if (!path || !*path)
		path = SLIM_DEFAULT_SOCKET;
	/* "+": stop at the command, whose own options are parsed by its builder. */
	while ((opt = getopt_long(argc, argv, "+s:h", opts, NULL)) != -1) {
		switch (opt) {
		case 's':
			path = optarg;
			break;
		case 'j':
			as_json = true;
			break;
		case 'h':
			ctl_usage(stdout);
			return 0;
		default:
			ctl_usage(stderr);
			return 1;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc == 0) {
		ctl_usage(stderr);
		return 1;
	}
	cmd = ctl_lookup(argc, argv, &nwords);
	if (!cmd)
		ctl_die("unknown command \"%s%s%s\" (try --help)", argv[0], argc > 1 ? " " : "",
			argc > 1 ? argv[1] : "");

	req = json_pack("{s:s}", "cmd", cmd->cc_cmd);
	/* The builder sees its words as argv[0] and its options after. */
	optind = 1;
	cmd->cc_build(argc - nwords + 1, argv + nwords - 1, req);
	rep = ctl_request(path, req);
	json_decref(req);

	if (as_json) {
		char *text = json_dumps(rep, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

		puts(text ? text : "{}");
		free(text);
	}
	if (!json_is_true(json_object_get(rep, "ok"))) {
		const char *e = json_string_value(json_object_get(rep, "error"));

		fprintf(stderr, "%s: %s\n", ctl_argv0, e ? e : "failed (no error message)");
		json_decref(rep);
		return 1;
	}
	if (!as_json)
		cmd->cc_show(rep);
	json_decref(rep);
	return 0;
}
