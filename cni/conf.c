// SPDX-License-Identifier: MIT
/* slim-cni's inputs: the network config on stdin and the CNI_* environment, validated whole. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cni.h"

const char *const cni_versions[] = {"0.4.0", "1.0.0", "1.1.0", NULL};

int cni_fail(struct cni_err *e, int code, const char *fmt, ...)
{
	va_list ap;

	e->ce_code = code;
	va_start(ap, fmt);
	vsnprintf(e->ce_msg, sizeof(e->ce_msg), fmt, ap);
	va_end(ap);
	return -1;
}

bool cni_version_supported(const char *v)
{
	for (const char *const *s = cni_versions; *s; s++)
		if (!strcmp(*s, v))
			return true;
	return false;
}

/* Copies a string member into out (capacity cap, so at most cap - 1 characters). */
static int conf_string(json_t *root, const char *key, char *out, size_t cap, bool required,
		       struct cni_err *e)
{
	json_t *v = json_object_get(root, key);

	if (!v) {
		if (required)
			return cni_fail(e, CNI_ERR_CONFIG, "network config: \"%s\" is required",
					key);
		return 0;
	}
	if (!json_is_string(v) || !json_string_length(v))
		return cni_fail(e, CNI_ERR_CONFIG,
				"network config: \"%s\" must be a non-empty string", key);
	if (json_string_length(v) >= cap)
		return cni_fail(e, CNI_ERR_CONFIG,
				"network config: \"%s\" is longer than %zu characters", key,
				cap - 1);
	memcpy(out, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

/* Merges a labels object (string values, non-empty keys) found at where into into. */
static int conf_labels(json_t *labels, const char *where, json_t *into, struct cni_err *e)
{
	const char *key;
	json_t *v;

	if (!labels)
		return 0;
	if (!json_is_object(labels))
		return cni_fail(e, CNI_ERR_CONFIG, "network config: %s must be an object", where);
	json_object_foreach(labels, key, v) {
		if (!*key || !json_is_string(v))
			return cni_fail(e, CNI_ERR_CONFIG,
					"network config: %s: label \"%s\" must have a string value",
					where, key);
		json_object_set(into, key, v);
	}
	return 0;
}

/* An interface name the kernel accepts: 1-15 characters, no '/', ':' or white space. */
static bool conf_ifname_ok(const char *s)
{
	size_t n = strlen(s);

	if (!n || n >= IF_NAMESIZE || !strcmp(s, ".") || !strcmp(s, ".."))
		return false;
	return !strpbrk(s, "/: \t\n");
}

/* The keys of a plugin's config this plugin understands; any other is refused (code 2). */
static const char *const conf_keys[] = {
	/* the spec's and its conventions' */
	"cniVersion",
	"cniVersions",
	"name",
	"type",
	"args",
	"ipMasq",
	"ipam",
	"dns",
	"runtimeConfig",
	"prevResult",
	"capabilities",
	"cni.dev/valid-attachments",
	"cni.dev/attachments",
	/* slim's */
	"bridge",
	"mtu",
	"routerSocket",
	NULL,
};

int cni_conf_parse(const char *text, size_t len, bool need_ipam, struct cni_conf *c,
		   struct cni_err *e)
{
	json_t *root, *v, *ipam, *args, *rc;
	json_error_t jerr;
	const char *key;

	memset(c, 0, sizeof(*c));
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return cni_fail(e, CNI_ERR_DECODE, "network config: %s (line %d, column %d)",
				jerr.text, jerr.line, jerr.column);
	c->cc_root = root;
	c->cc_labels = json_object();
	if (!json_is_object(root))
		return cni_fail(e, CNI_ERR_DECODE, "network config: not a JSON object");
	json_object_foreach(root, key, v) {
		const char *const *k = conf_keys;
		char *shown;

		while (*k && strcmp(*k, key))
			k++;
		if (*k)
			continue;
		cni_fail(e, CNI_ERR_UNSUPPORTED, "network config: unknown key \"%s\"", key);
		shown = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		snprintf(e->ce_details, sizeof(e->ce_details), "%s: %s", key, shown ? shown : "?");
		free(shown);
		return -1;
	}

	if (conf_string(root, "cniVersion", c->cc_version, sizeof(c->cc_version), true, e) ||
	    conf_string(root, "name", c->cc_name, sizeof(c->cc_name), true, e))
		return -1;
	/* The name is part of each registration's attachment label "network/id/ifname". */
	if (strchr(c->cc_name, '/'))
		return cni_fail(e, CNI_ERR_CONFIG, "network config: \"name\" must not contain '/'");
	if (!cni_version_supported(c->cc_version))
		return cni_fail(e, CNI_ERR_VERSION,
				"cniVersion %s is not supported (0.4.0, 1.0.0, 1.1.0 are)",
				c->cc_version);
	v = json_object_get(root, "type");
	if (v && !json_is_string(v))
		return cni_fail(e, CNI_ERR_CONFIG, "network config: \"type\" must be a string");

	strcpy(c->cc_bridge, CNI_DEFAULT_BRIDGE);
	if (conf_string(root, "bridge", c->cc_bridge, sizeof(c->cc_bridge), false, e))
		return -1;
	if (!conf_ifname_ok(c->cc_bridge))
		return cni_fail(e, CNI_ERR_CONFIG,
				"network config: bridge \"%s\" is not an interface name",
				c->cc_bridge);

	c->cc_mtu = CNI_DEFAULT_MTU;
	v = json_object_get(root, "mtu");
	if (v) {
		if (!json_is_integer(v) || json_integer_value(v) < 68 ||
		    json_integer_value(v) > 65535)
			return cni_fail(
				e, CNI_ERR_CONFIG,
				"network config: \"mtu\" must be an integer from 68 to 65535");
		c->cc_mtu = (unsigned)json_integer_value(v);
	}

	strcpy(c->cc_router_socket, "/run/slim/router.sock");
	if (conf_string(root, "routerSocket", c->cc_router_socket, sizeof(c->cc_router_socket),
			false, e))
		return -1;
	if (c->cc_router_socket[0] != '/')
		return cni_fail(e, CNI_ERR_CONFIG,
				"network config: \"routerSocket\" must be an absolute path");

	ipam = json_object_get(root, "ipam");
	if (ipam && !json_is_object(ipam))
		return cni_fail(e, CNI_ERR_CONFIG, "network config: \"ipam\" must be an object");
	if (ipam && json_object_get(ipam, "type") &&
	    conf_string(ipam, "type", c->cc_ipam_type, sizeof(c->cc_ipam_type), false, e))
		return cni_fail(e, CNI_ERR_CONFIG,
				"network config: \"ipam.type\" must be a plugin name");
	if (strchr(c->cc_ipam_type, '/'))
		return cni_fail(e, CNI_ERR_CONFIG,
				"network config: \"ipam.type\" must be a plugin name, not a path");
	if (need_ipam && !c->cc_ipam_type[0])
		return cni_fail(
			e, CNI_ERR_CONFIG,
			"network config: \"ipam\" with a \"type\" is required (e.g. host-local)");

	/* Labels: the config's args.labels, then the runtime's runtimeConfig.labels on top. */
	args = json_object_get(root, "args");
	if (args && !json_is_object(args))
		return cni_fail(e, CNI_ERR_CONFIG, "network config: \"args\" must be an object");
	if (args && conf_labels(json_object_get(args, "labels"), "args.labels", c->cc_labels, e))
		return -1;
	rc = json_object_get(root, "runtimeConfig");
	if (rc && !json_is_object(rc))
		return cni_fail(e, CNI_ERR_CONFIG,
				"network config: \"runtimeConfig\" must be an object");
	if (rc &&
	    conf_labels(json_object_get(rc, "labels"), "runtimeConfig.labels", c->cc_labels, e))
		return -1;

	c->cc_dns = json_object_get(root, "dns");
	if (c->cc_dns && !json_is_object(c->cc_dns))
		return cni_fail(e, CNI_ERR_CONFIG, "network config: \"dns\" must be an object");
	c->cc_prev = json_object_get(root, "prevResult");
	if (c->cc_prev && !json_is_object(c->cc_prev))
		return cni_fail(e, CNI_ERR_CONFIG,
				"network config: \"prevResult\" must be an object");
	c->cc_valid = json_object_get(root, "cni.dev/valid-attachments");
	if (c->cc_valid && !json_is_array(c->cc_valid))
		return cni_fail(e, CNI_ERR_CONFIG,
				"network config: \"cni.dev/valid-attachments\" must be an array");
	return 0;
}

void cni_conf_free(struct cni_conf *c)
{
	json_decref(c->cc_labels);
	json_decref(c->cc_root);
	memset(c, 0, sizeof(*c));
}

/* Container ids are made of letters, digits, '_', '.' and '-' (the spec's rule). */
static bool conf_containerid_ok(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == '.' || *s == '-'))
			return false;
	return true;
}

/* SLIM_LABELS=k:v,k:v (keys non-empty; a value may be empty). Not '=': the reference
 * plugins (the IPAM delegate sees the same CNI_ARGS) refuse a pair with a second '='. */
static int conf_args_labels(const char *val, json_t *into, struct cni_err *e)
{
	char *copy = strdup(val), *save = NULL, *item;

	if (!copy)
		return cni_fail(e, CNI_ERR_IO, "out of memory");
	for (item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(item, ':');

		if (!eq || eq == item) {
			cni_fail(e, CNI_ERR_ENV, "CNI_ARGS: SLIM_LABELS wants k:v,k:v, got \"%s\"",
				 item);
			free(copy);
			return -1;
		}
		*eq = '\0';
		json_object_set_new(into, item, json_string(eq + 1));
	}
	free(copy);
	return 0;
}

int cni_args_parse(const char *args, const char *containerid, struct cni_env *env,
		   struct cni_err *e)
{
	char *copy, *save = NULL, *kv;
	bool ignore_unknown = false;
	char unknown[64] = "";
	int ret = 0;

	env->ce_labels = json_object();
	env->ce_podname[0] = '\0';
	if (!args)
		args = "";
	copy = strdup(args);
	if (!copy || !env->ce_labels)
		return cni_fail(e, CNI_ERR_IO, "out of memory");
	for (kv = strtok_r(copy, ";", &save); kv && !ret; kv = strtok_r(NULL, ";", &save)) {
		char *eq = strchr(kv, '=');
		const char *val;

		if (!eq || eq == kv) {
			ret = cni_fail(e, CNI_ERR_ENV, "CNI_ARGS: \"%s\" is not KEY=VALUE", kv);
			break;
		}
		*eq = '\0';
		val = eq + 1;
		if (!strcmp(kv, "IgnoreUnknown")) {
			ignore_unknown = !strcmp(val, "1") || !strcasecmp(val, "true");
		} else if (!strcmp(kv, "K8S_POD_NAME")) {
			if (strlen(val) >= CNI_NAME_MAX)
				ret = cni_fail(
					e, CNI_ERR_ENV,
					"CNI_ARGS: K8S_POD_NAME is longer than %d characters",
					CNI_NAME_MAX - 1);
			else
				snprintf(env->ce_podname, sizeof(env->ce_podname), "%s", val);
		} else if (!strcmp(kv, "SLIM_LABELS")) {
			ret = conf_args_labels(val, env->ce_labels, e);
		} else if (!unknown[0]) {
			snprintf(unknown, sizeof(unknown), "%s", kv);
		}
	}
	free(copy);
	if (ret)
		return -1;
	/* Kubernetes' keys are known to every runtime that sets them: never an error. */
	if (unknown[0] && !ignore_unknown && strncmp(unknown, "K8S_", 4))
		return cni_fail(e, CNI_ERR_ENV,
				"CNI_ARGS: unknown key \"%s\" (IgnoreUnknown=1 lets it pass)",
				unknown);
	/* A container id is 64 hex digits with most runtimes: its first 12 name the pod, as
	 * docker and podman shorten it. */
	if (!env->ce_podname[0] && containerid)
		snprintf(env->ce_podname, sizeof(env->ce_podname), "%.*s",
			 strlen(containerid) >= CNI_NAME_MAX ? 12 : CNI_NAME_MAX - 1, containerid);
	return 0;
}

int cni_env_load(struct cni_env *env, struct cni_err *e)
{
	const char *cmd = getenv("CNI_COMMAND");
	bool attach, needs_netns;

	memset(env, 0, sizeof(*env));
	if (!cmd || !*cmd)
		return cni_fail(e, CNI_ERR_ENV, "CNI_COMMAND is not set");
	env->ce_command = cmd;
	env->ce_containerid = getenv("CNI_CONTAINERID");
	env->ce_netns = getenv("CNI_NETNS");
	env->ce_ifname = getenv("CNI_IFNAME");
	env->ce_args = getenv("CNI_ARGS");
	env->ce_path = getenv("CNI_PATH");
	attach = !strcmp(cmd, "ADD") || !strcmp(cmd, "DEL") || !strcmp(cmd, "CHECK");
	needs_netns = !strcmp(cmd, "ADD") || !strcmp(cmd, "CHECK");
	if (attach) {
		if (!env->ce_containerid || !conf_containerid_ok(env->ce_containerid))
			return cni_fail(e, CNI_ERR_ENV, "CNI_CONTAINERID is %s",
					env->ce_containerid ? "malformed" : "not set");
		if (!env->ce_ifname || !conf_ifname_ok(env->ce_ifname))
			return cni_fail(e, CNI_ERR_ENV, "CNI_IFNAME is %s",
					env->ce_ifname ? "not an interface name" : "not set");
	}
	if ((attach || !strcmp(cmd, "GC")) && (!env->ce_path || !*env->ce_path))
		return cni_fail(e, CNI_ERR_ENV, "CNI_PATH is not set");
	if (needs_netns && (!env->ce_netns || env->ce_netns[0] != '/'))
		return cni_fail(e, CNI_ERR_ENV, "CNI_NETNS is %s",
				env->ce_netns ? "not an absolute path" : "not set");
	return cni_args_parse(env->ce_args, env->ce_containerid, env, e);
}

void cni_env_free(struct cni_env *env)
{
	json_decref(env->ce_labels);
	env->ce_labels = NULL;
}

void cni_host_ifname(const char *containerid, const char *ifname, char out[IF_NAMESIZE])
{
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a 64 */

	for (const char *s = containerid; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
	h = (h ^ '/') * 0x100000001b3ULL;
	for (const char *s = ifname; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
	snprintf(out, IF_NAMESIZE, "slim%011llx", (unsigned long long)(h & 0xfffffffffffULL));
}
