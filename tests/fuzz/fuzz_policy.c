// SPDX-License-Identifier: MIT
/*
 * Fuzzes policy_parse() (router/policy.c), the router's decoder of network policy documents,
 * inside a minimal router (minirouter.c) whose pod directory holds two pods. An accepted document
 * is installed (compiled) and queried; a document without policies must allow everything, and
 * the same question must always get the same answer. A refused one names its origin.
 */
#include <errno.h>
#include <arpa/inet.h>

#include "fuzz.h"
#include "minirouter.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);

static uint32_t fuzz_web, fuzz_db;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	minirouter_init();
	fuzz_web = htonl(0x0af40102); /* 10.244.1.2, local */
	fuzz_db = htonl(0x0af40202);  /* 10.244.2.2, on h2 */
	minirouter_pod("h1", true, fuzz_web, "web");
	minirouter_pod("h2", false, fuzz_db, "db");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint16_t ports[] = {80, 5432, 8050};
	char *text = (char *)fuzz_copy(data, size);
	struct policy_doc *d = NULL;
	char err[512];
	int rc;

	err[0] = '\0';
	rc = policy_parse(text, size, "fuzz", &d, err, sizeof(err));
	FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ENOMEM);
	if (rc) {
		FUZZ_CHECK(!strncmp(err, "fuzz", 4));
		free(text);
		return 0;
	}
	FUZZ_CHECK(d != NULL);
	FUZZ_CHECK(policy_doc_rules(d) == 0 || policy_doc_count(d) > 0);
	bool none = policy_doc_count(d) == 0;

	policy_install(d); /* owned by the router from here on */
	for (unsigned i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
		uint16_t port = htons(ports[i]);
		bool a = policy_allows_conn(fuzz_web, fuzz_db, port);
		bool b = policy_allows_conn(fuzz_db, fuzz_web, port);

		FUZZ_CHECK(a == policy_allows_conn(fuzz_web, fuzz_db, port));
		FUZZ_CHECK(b == policy_allows_conn(fuzz_db, fuzz_web, port));
		if (none)
			FUZZ_CHECK(a && b);
	}
	free(text);
	return 0;
}
