// SPDX-License-Identifier: MIT
/* Process-wide shim settings from the environment, debug logging, and the constructor. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cidr.h"
#include "shim.h"

struct shim_config shim_config;

/*
 * SLIM_ROUTER_SOCKET   control socket of this host's router (default /run/slim/router.sock)
 * SLIM_OVERLAY_CIDR    destinations the shim virtualizes (default 10.244.0.0/16)
 * SLIM_SERVICE_CIDR    Service virtual IPs, virtualized too (default 10.96.0.0/16)
 * SLIM_DISABLE=1       load but never interpose (everything goes to libc)
 * SLIM_DEBUG           log the shim's decisions to stderr
 */
void config_init(void)
{
	const char *path = getenv("SLIM_ROUTER_SOCKET");
	const char *cidr = getenv("SLIM_OVERLAY_CIDR");
	const char *services = getenv("SLIM_SERVICE_CIDR");
	const char *disable = getenv("SLIM_DISABLE");
	struct cidr c;

	shim_config.debug = getenv("SLIM_DEBUG") != NULL;
	if (!path || !*path)
		path = SLIM_DEFAULT_SOCKET;
	if (strlen(path) >= sizeof(shim_config.router_path)) {
		shim_log("SLIM_ROUTER_SOCKET too long; shim disabled");
		return;
	}
	strcpy(shim_config.router_path, path);
	if (cidr_parse(cidr && *cidr ? cidr : "10.244.0.0/16", &c) < 0) {
		shim_log("bad SLIM_OVERLAY_CIDR '%s'; shim disabled", cidr);
		return;
	}
	shim_config.overlay_net = c.net;
	shim_config.overlay_mask = c.mask;
	if (cidr_parse(services && *services ? services : "10.96.0.0/16", &c) < 0) {
		shim_log("bad SLIM_SERVICE_CIDR '%s'; shim disabled", services);
		return;
	}
	shim_config.service_net = c.net;
	shim_config.service_mask = c.mask;
	shim_config.enabled = !(disable && !strcmp(disable, "1"));
}

void shim_log(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n, saved = errno;

	if (!shim_config.debug)
		return;
	n = snprintf(buf, sizeof(buf), "slim[%d]: ", (int)getpid());
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	if (write(STDERR_FILENO, buf, n) < 0) {
		/* Nothing to do: logging must never fail the app. */
	}
	errno = saved;
}

__attribute__((constructor)) static void shim_init(void)
{
	real_resolve();
	config_init();
	router_link_init();
	pool_init();
	reset_init();
	shim_log("loaded, router %s, %s", shim_config.router_path,
		 shim_config.enabled ? "enabled" : "disabled");
}
