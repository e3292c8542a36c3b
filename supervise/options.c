// SPDX-License-Identifier: MIT
/*
 * The socket options an app set on its socket before connect or listen. The shim records them
 * as the app sets them; the supervisor does not trap setsockopt (every trapped call costs ~20 us),
 * so it reads each option of the allowlist (common/sockopt_list.h) from the app's socket and
 * keeps those that differ from a fresh socket's: what the app changed. An option set to its
 * default value is not seen; the one difference that makes is SO_RCVBUF/SO_SNDBUF set to the
 * default, which on the app's socket would also have turned buffer autotuning off.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "proto.h"
#include "sockopt_list.h"
#include "supervise.h"

static const struct options_entry {
	int oe_level, oe_name;
} options_list[] = {
#define OPTIONS_ENTRY(l, n, size) {(l), (n)},
	SLIM_SOCKOPTS_REPLAYED(OPTIONS_ENTRY)
#undef OPTIONS_ENTRY
};
#define OPTIONS_N (sizeof(options_list) / sizeof(options_list[0]))

/* A fresh TCP socket's value of each option, per domain (0: AF_INET, 1: AF_INET6). */
static struct slim_sockopt options_default[2][OPTIONS_N];
static pthread_once_t options_once = PTHREAD_ONCE_INIT;

static void options_get(int fd, struct slim_sockopt *o, const struct options_entry *e)
{
	socklen_t len = sizeof(o->val);

	memset(o, 0, sizeof(*o));
	o->level = e->oe_level;
	o->name = e->oe_name;
	if (getsockopt(fd, e->oe_level, e->oe_name, o->val, &len) == 0)
		o->len = len;
}

static void options_init(void)
{
	static const int domains[2] = {AF_INET, AF_INET6};

	for (int d = 0; d < 2; d++) {
		int s = socket(domains[d], SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (s < 0)
			continue;
		for (unsigned i = 0; i < OPTIONS_N; i++)
			options_get(s, &options_default[d][i], &options_list[i]);
		close(s);
	}
}

int options_changed(int fd, int domain, struct slim_sockopt *out, unsigned max)
{
	const struct slim_sockopt *def;
	unsigned n = 0;

	pthread_once(&options_once, options_init);
	def = options_default[domain == AF_INET6];
	for (unsigned i = 0; i < OPTIONS_N; i++) {
		struct slim_sockopt o;

		options_get(fd, &o, &options_list[i]);
		if (!o.len || (o.len == def[i].len && !memcmp(o.val, def[i].val, o.len)))
			continue;
		if (n == max)
			return -E2BIG;
		/* The kernel reports twice the buffer size asked for: ask for what the app asked. */
		if (o.level == SOL_SOCKET && (o.name == SO_RCVBUF || o.name == SO_SNDBUF)) {
			int v;

			memcpy(&v, o.val, sizeof(v));
			v /= 2;
			memcpy(o.val, &v, sizeof(v));
		}
		out[n++] = o;
	}
	return (int)n;
}

int options_apply(int fd, const struct slim_sockopt *opts, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		if (setsockopt(fd, opts[i].level, opts[i].name, opts[i].val, opts[i].len) < 0)
			return -errno;
	}
	return 0;
}
