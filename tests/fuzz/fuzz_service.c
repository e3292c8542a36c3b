// SPDX-License-Identifier: MIT
/*
 * Fuzzes service_parse() (router/service.c), the router's decoder of Service documents, inside a
 * minimal router (minirouter.c) whose pod directory holds three pods. An accepted document is
 * put in force (backends, Maglev tables) and checked: every service is found by its VIP and
 * ports, its backends are sorted pod addresses of the overlay, its table is a prime of at least
 * 100 slots per backend and only names its backends. A refused one names its origin.
 */
#include <errno.h>
#include <arpa/inet.h>

#include "fuzz.h"
#include "minirouter.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	minirouter_init();
	minirouter_pod("h1", true, htonl(0x0af40102), "web"); /* 10.244.1.2 */
	minirouter_pod("h2", false, htonl(0x0af40202), "web");
	minirouter_pod("h2", false, htonl(0x0af40203), "db");
	return 0;
}

static bool fuzz_prime(uint32_t m)
{
	if (m < 2)
		return false;
	for (uint32_t d = 2; d * d <= m; d++)
		if (m % d == 0)
			return false;
	return true;
}

static void fuzz_check_service(const struct service *sv, void *arg)
{
	unsigned *n = arg;

	(*n)++;
	FUZZ_CHECK(service_range_contains(sv->sv_ip));
	FUZZ_CHECK(sv->sv_nports >= 1 && sv->sv_nports <= SERVICE_MAX_PORTS);
	for (unsigned k = 0; k < sv->sv_nports; k++) {
		uint16_t target = 0;

		FUZZ_CHECK(service_find(sv->sv_ip, sv->sv_ports[k].sp_port, &target) == sv);
		FUZZ_CHECK(target == sv->sv_ports[k].sp_target && target != 0);
	}
	FUZZ_CHECK(sv->sv_nbackends <= SERVICE_MAX_BACKENDS);
	for (unsigned b = 0; b < sv->sv_nbackends; b++) {
		FUZZ_CHECK(cidr_contains(&router.r_cluster->cl_overlay, sv->sv_backends[b]));
		FUZZ_CHECK(b == 0 || ntohl(sv->sv_backends[b - 1]) < ntohl(sv->sv_backends[b]));
		FUZZ_CHECK(service_has_backend(sv, sv->sv_backends[b]));
	}
	if (!sv->sv_nbackends) {
		FUZZ_CHECK(sv->sv_table_size == 0);
		return;
	}
	FUZZ_CHECK(sv->sv_table && fuzz_prime(sv->sv_table_size));
	FUZZ_CHECK(sv->sv_table_size >= MAGLEV_SCALE * sv->sv_nbackends);
	for (uint32_t s = 0; s < sv->sv_table_size; s++)
		FUZZ_CHECK(sv->sv_table[s] < sv->sv_nbackends);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = (char *)fuzz_copy(data, size);
	struct service_doc *d = NULL;
	struct event_loop *loop = router.r_loop;
	size_t count;
	unsigned seen = 0;
	char err[512];
	int rc;

	err[0] = '\0';
	rc = service_parse(text, size, "fuzz", &router.r_cluster->cl_services,
			   &router.r_cluster->cl_overlay, &d, err, sizeof(err));
	FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ENOMEM);
	free(text);
	if (rc) {
		FUZZ_CHECK(d == NULL && !strncmp(err, "fuzz", 4));
		return 0;
	}
	count = service_doc_count(d);
	/* No loop running here: the install runs whole at once (service.c's test path). */
	router.r_loop = NULL;
	service_install(d, NULL, NULL);
	router.r_loop = loop;
	FUZZ_CHECK(service_count() == count);
	service_foreach(fuzz_check_service, &seen);
	FUZZ_CHECK(seen == count);
	return 0;
}
