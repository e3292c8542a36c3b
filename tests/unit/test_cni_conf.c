// SPDX-License-Identifier: MIT
/* slim-cni's inputs (cni/conf.c): the network config, CNI_ARGS, the host veth name. */
#include <stdlib.h>
#include <string.h>

#include "cni.h"
#include "test.h"

static int parse(const char *text, bool need_ipam, struct cni_conf *c, struct cni_err *e)
{
	memset(e, 0, sizeof(*e));
	return cni_conf_parse(text, strlen(text), need_ipam, c, e);
}

#define IPAM "\"ipam\": {\"type\": \"host-local\", \"subnet\": \"10.244.1.0/24\"}"

TEST(defaults)
{
	struct cni_conf c;
	struct cni_err e;

	if (!ASSERT_OK(parse("{\"cniVersion\": \"1.0.0\", \"name\": \"slim\", \"type\": "
			     "\"slim-cni\", " IPAM "}",
			     true, &c, &e),
		       e.ce_msg))
		return;
	ASSERT_STREQ(c.cc_version, "1.0.0", "cniVersion");
	ASSERT_STREQ(c.cc_name, "slim", "name");
	ASSERT_STREQ(c.cc_bridge, "cni0", "default bridge");
	ASSERT_EQ(c.cc_mtu, 1450, "default mtu");
	ASSERT_STREQ(c.cc_router_socket, "/run/slim/router.sock", "default routerSocket");
	ASSERT_STREQ(c.cc_ipam_type, "host-local", "ipam.type");
	ASSERT_EQ(json_object_size(c.cc_labels), 0, "no labels");
	ASSERT_TRUE(!c.cc_prev && !c.cc_dns, "no prevResult, no dns");
	cni_conf_free(&c);
}

TEST(all_keys)
{
	struct cni_conf c;
	struct cni_err e;
	const char *text =
		"{\"cniVersion\": \"1.1.0\", \"name\": \"n1\", \"type\": \"slim-cni\", \"bridge\": "
		"\"br9\", \"mtu\": 9000, \"routerSocket\": \"/run/slim/x/r.sock\", " IPAM
		", \"dns\": {\"nameservers\": [\"10.0.0.10\"]}, \"args\": {\"labels\": {\"app\": "
		"\"web\", \"tier\": \"a\"}, \"cni\": {}}, \"runtimeConfig\": {\"labels\": "
		"{\"tier\": \"b\"}, \"portMappings\": []}, \"capabilities\": {\"portMappings\": "
		"true}, \"ipMasq\": false, \"prevResult\": {\"ips\": []}}";

	if (!ASSERT_OK(parse(text, true, &c, &e), e.ce_msg))
		return;
	ASSERT_STREQ(c.cc_bridge, "br9", "bridge");
	ASSERT_EQ(c.cc_mtu, 9000, "mtu");
	ASSERT_STREQ(c.cc_router_socket, "/run/slim/x/r.sock", "routerSocket");
	ASSERT_STREQ(json_string_value(json_object_get(c.cc_labels, "app")), "web", "args label");
	/* runtimeConfig comes from the runtime, per container: it wins over the config's. */
	ASSERT_STREQ(json_string_value(json_object_get(c.cc_labels, "tier")), "b",
		     "runtimeConfig label overrides args label");
	ASSERT_TRUE(json_is_object(c.cc_dns), "dns kept");
	ASSERT_TRUE(json_is_object(c.cc_prev), "prevResult kept");
	cni_conf_free(&c);
}

TEST(unknown_key_is_named)
{
	struct cni_conf c;
	struct cni_err e;

	ASSERT_EQ(parse("{\"cniVersion\": \"1.0.0\", \"name\": \"n\", " IPAM
			", \"brigde\": \"cni0\"}",
			true, &c, &e),
		  -1, "parse");
	ASSERT_EQ(e.ce_code, CNI_ERR_UNSUPPORTED, "code 2: unsupported field");
	ASSERT_TRUE(strstr(e.ce_msg, "\"brigde\"") != NULL, e.ce_msg);
	ASSERT_STREQ(e.ce_details, "brigde: \"cni0\"", "details: key and value");
	cni_conf_free(&c);
}

/* Each case: a config that must be refused, the code and a word the message must contain. */
TEST(refusals)
{
	static const struct {
		const char *text;
		int code;
		const char *word;
	} cases[] = {
		{"{\"cniVersion\": \"1.0.0\", \"name\": ", CNI_ERR_DECODE, "line"},
		{"[1]", CNI_ERR_DECODE, "object"},
		{"{\"name\": \"n\", " IPAM "}", CNI_ERR_CONFIG, "cniVersion"},
		{"{\"cniVersion\": \"0.3.1\", \"name\": \"n\", " IPAM "}", CNI_ERR_VERSION,
		 "0.3.1"},
		{"{\"cniVersion\": \"1.0.0\", " IPAM "}", CNI_ERR_CONFIG, "name"},
		{"{\"cniVersion\": \"1.0.0\", \"name\": \"a/b\", " IPAM "}", CNI_ERR_CONFIG, "'/'"},
		{"{\"cniVersion\": \"1.0.0\", \"name\": \"n\"}", CNI_ERR_CONFIG, "ipam"},
		{"{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"ipam\": {}}", CNI_ERR_CONFIG,
		 "ipam"},
		{"{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"ipam\": {\"type\": \"../x\"}}",
		 CNI_ERR_CONFIG, "ipam.type"},
		{"{\"cniVersion\": \"1.0.0\", \"name\": \"n\", " IPAM ", \"mtu\": 67}",
		 CNI_ERR_CONFIG, "mtu"},
		{"{\"cniVersion\": \"1.0.0\", \"name\": \"n\", " IPAM ", \"mtu\": \"1450\"}",
		 CNI_ERR_CONFIG, "mtu"},
		{"{\"cniVersion\": \"1.0.0\", \"name\": \"n\", " IPAM
		 ", \"bridge\": \"averyveryverylongname\"}",
		 CNI_ERR_CONFIG, "bridge"},
		{"{\"cniVersion\": \"1.0.0\", \"name\": \"n\", " IPAM ", \"bridge\": \"a/b\"}",
		 CNI_ERR_CONFIG, "bridge"},
		{"{\"cniVersion\": \"1.0.0\", \"name\": \"n\", " IPAM
		 ", \"routerSocket\": \"r.sock\"}",
		 CNI_ERR_CONFIG, "absolute"},
		{"{\"cniVersion\": \"1.0.0\", \"name\": \"n\", " IPAM
		 ", \"args\": {\"labels\": {\"a\": 1}}}",
		 CNI_ERR_CONFIG, "args.labels"},
		{"{\"cniVersion\": \"1.0.0\", \"name\": \"n\", " IPAM
		 ", \"runtimeConfig\": {\"labels\": []}}",
		 CNI_ERR_CONFIG, "runtimeConfig.labels"},
		{"{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"name\": \"m\", " IPAM "}",
		 CNI_ERR_DECODE, "duplicate"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cni_conf c;
		struct cni_err e;

		if (ASSERT_EQ(parse(cases[i].text, true, &c, &e), -1, cases[i].text)) {
			ASSERT_EQ(e.ce_code, cases[i].code, cases[i].text);
			ASSERT_TRUE(strstr(e.ce_msg, cases[i].word) != NULL, e.ce_msg);
		}
		cni_conf_free(&c);
	}
}

TEST(no_ipam_for_status_and_gc)
{
	struct cni_conf c;
	struct cni_err e;

	ASSERT_OK(
		parse("{\"cniVersion\": \"1.1.0\", \"name\": \"n\", \"cni.dev/valid-attachments\": "
		      "[{\"containerID\": \"a\", \"ifname\": \"eth0\"}]}",
		      false, &c, &e),
		e.ce_msg);
	ASSERT_EQ(json_array_size(c.cc_valid), 1, "valid attachments");
	cni_conf_free(&c);
}

TEST(args)
{
	struct cni_env env;
	struct cni_err e = {0};

	if (ASSERT_OK(cni_args_parse("IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web-1;SLIM_"
				     "LABELS=app:web,tier:db:x;FOO=bar",
				     "0123456789abcdef", &env, &e),
		      e.ce_msg)) {
		ASSERT_STREQ(env.ce_podname, "web-1", "K8S_POD_NAME names the pod");
		ASSERT_STREQ(json_string_value(json_object_get(env.ce_labels, "app")), "web",
			     "app");
		ASSERT_STREQ(json_string_value(json_object_get(env.ce_labels, "tier")), "db:x",
			     "a value may hold ':'");
	}
	cni_env_free(&env);

	/* Without K8S_POD_NAME: the container id; a 64-digit one shortened to 12. */
	if (ASSERT_OK(cni_args_parse(NULL, "abc", &env, &e), e.ce_msg))
		ASSERT_STREQ(env.ce_podname, "abc", "short id as is");
	cni_env_free(&env);
	if (ASSERT_OK(cni_args_parse(
			      "",
			      "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
			      &env, &e),
		      e.ce_msg))
		ASSERT_STREQ(env.ce_podname, "0123456789ab", "long id shortened");
	cni_env_free(&env);

	ASSERT_EQ(cni_args_parse("FOO=bar", "x", &env, &e), -1,
		  "unknown key without IgnoreUnknown");
	ASSERT_EQ(e.ce_code, CNI_ERR_ENV, "code 4");
	ASSERT_TRUE(strstr(e.ce_msg, "FOO") != NULL, e.ce_msg);
	cni_env_free(&env);
	ASSERT_OK(cni_args_parse("K8S_POD_INFRA_CONTAINER_ID=x", "x", &env, &e), "K8S_ keys pass");
	cni_env_free(&env);
	ASSERT_EQ(cni_args_parse("SLIM_LABELS=novalue", "x", &env, &e), -1, "label without ':'");
	cni_env_free(&env);
	ASSERT_EQ(cni_args_parse("justakey", "x", &env, &e), -1, "not KEY=VALUE");
	cni_env_free(&env);
}

TEST(host_ifname)
{
	char a[IF_NAMESIZE], b[IF_NAMESIZE], c[IF_NAMESIZE];

	cni_host_ifname("0123456789abcdef", "eth0", a);
	cni_host_ifname("0123456789abcdef", "eth0", b);
	cni_host_ifname("0123456789abcdef", "eth1", c);
	ASSERT_EQ(strlen(a), 15, "15 characters, the kernel's limit");
	ASSERT_TRUE(!strncmp(a, "slim", 4), a);
	ASSERT_STREQ(a, b, "the same container and interface: the same name (DEL finds it)");
	ASSERT_TRUE(strcmp(a, c) != 0, "another interface: another name");
}

TEST(versions)
{
	ASSERT_TRUE(cni_version_supported("1.0.0"), "1.0.0");
	ASSERT_TRUE(cni_version_supported("1.1.0"), "1.1.0");
	ASSERT_TRUE(cni_version_supported("0.4.0"), "0.4.0");
	ASSERT_TRUE(!cni_version_supported("0.3.1"), "0.3.1");
	ASSERT_TRUE(!cni_version_supported("2.0.0"), "2.0.0");
}
