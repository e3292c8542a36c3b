// SPDX-License-Identifier: MIT
/* Delegation to the IPAM plugin the config names (host-local, static, ...), as the spec says:
 * same CNI_* environment, same config on stdin, its result or error JSON on stdout. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "cni.h"

#define IPAM_OUTPUT_MAX (1 << 20)

/* The first executable CNI_PATH entry holding type. */
static int ipam_find(const char *type, char *out, size_t cap, struct cni_err *e)
{
	const char *path = getenv("CNI_PATH");
	char *copy, *save = NULL, *dir;
	int found = 0;

	if (!path || !*path)
		return cni_fail(e, CNI_ERR_ENV,
				"CNI_PATH is not set (needed to find the IPAM plugin %s)", type);
	copy = strdup(path);
	if (!copy)
		return cni_fail(e, CNI_ERR_IO, "out of memory");
	for (dir = strtok_r(copy, ":", &save); dir && !found; dir = strtok_r(NULL, ":", &save)) {
		struct stat st;

		if ((size_t)snprintf(out, cap, "%s/%s", dir, type) >= cap)
			continue;
		found = !stat(out, &st) && S_ISREG(st.st_mode) && !access(out, X_OK);
	}
	free(copy);
	if (!found)
		return cni_fail(e, CNI_ERR_CONFIG, "IPAM plugin \"%s\" not found in CNI_PATH %s",
				type, path);
	return 0;
}

/* Writes all of text to fd and reads fd_out to EOF into *out (NUL-terminated), together, so
 * neither side can block the other on a full pipe. */
static int ipam_io(int fd_in, const char *text, size_t len, int fd_out, char **out, size_t *outlen)
{
	size_t off = 0, n = 0, cap = 4096;
	char *buf = malloc(cap);

	if (!buf)
		return -ENOMEM;
	while (fd_out >= 0) {
		struct pollfd p[2] = {{.fd = fd_out, .events = POLLIN},
				      {.fd = fd_in, .events = POLLOUT}};
		ssize_t r;

		if (poll(p, fd_in >= 0 ? 2 : 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			free(buf);
			return -errno;
		}
		if (fd_in >= 0 && p[1].revents) {
			r = write(fd_in, text + off, len - off);
			if (r > 0)
				off += (size_t)r;
			if (r < 0 || off == len) {
				close(fd_in);
				fd_in = -1;
			}
		}
		if (p[0].revents) {
			if (cap - n < 2) {
				char *grown = cap < IPAM_OUTPUT_MAX ? realloc(buf, cap * 2) : NULL;

				if (!grown) {
					free(buf);
					return -EMSGSIZE;
				}
				buf = grown;
				cap *= 2;
			}
			r = read(fd_out, buf + n, cap - n - 1);
			if (r <= 0)
				fd_out = -1;
			else
				n += (size_t)r;
		}
	}
	if (fd_in >= 0)
		close(fd_in);
	buf[n] = '\0';
	*out = buf;
	*outlen = n;
	return 0;
}

/* Copies the delegate's own error JSON into e (its code and words are the most precise). */
static void ipam_error(const char *type, const char *command, const char *out, size_t n, int status,
		       struct cni_err *e)
{
	json_t *doc = json_loadb(out, n, 0, NULL);
	const char *msg = json_string_value(json_object_get(doc, "msg"));
	const char *details = json_string_value(json_object_get(doc, "details"));
	json_t *code = json_object_get(doc, "code");

	if (msg) {
		cni_fail(e, json_is_integer(code) ? (int)json_integer_value(code) : CNI_ERR_IO,
			 "IPAM %s %s: %s", type, command, msg);
		if (details)
			snprintf(e->ce_details, sizeof(e->ce_details), "%s", details);
	} else if (WIFEXITED(status)) {
		cni_fail(e, CNI_ERR_IO, "IPAM %s %s exited with status %d", type, command,
			 WEXITSTATUS(status));
	} else {
		cni_fail(e, CNI_ERR_IO, "IPAM %s %s killed by signal %d", type, command,
			 WTERMSIG(status));
	}
	json_decref(doc);
}

static int ipam_run(const struct cni_conf *conf, const char *command, const char *text, size_t len,
		    json_t **result, struct cni_err *e)
{
	int in[2] = {-1, -1}, out[2] = {-1, -1}, status, ret;
	char plugin[PATH_MAX], *output = NULL;
	json_error_t jerr;
	size_t outlen = 0;
	pid_t pid;

	if (result)
		*result = NULL;
	if (ipam_find(conf->cc_ipam_type, plugin, sizeof(plugin), e))
		return -1;
	if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC)) {
		ret = cni_fail(e, CNI_ERR_IO, "pipe: %s", strerror(errno));
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		ret = cni_fail(e, CNI_ERR_IO, "fork: %s", strerror(errno));
		goto out;
	}
	if (pid == 0) {
		/* Its stderr is ours: the runtime logs it. */
		if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 ||
		    setenv("CNI_COMMAND", command, 1) < 0)
			_exit(127);
		execl(plugin, conf->cc_ipam_type, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	in[0] = out[1] = -1;
	/* A delegate that quits early must not kill us with SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	ret = ipam_io(in[1], text, len, out[0], &output, &outlen);
	in[1] = -1; /* ipam_io closed it */
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (ret < 0) {
		ret = cni_fail(e, CNI_ERR_IO, "IPAM %s %s: reading its output: %s",
			       conf->cc_ipam_type, command, strerror(-ret));
		goto out;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		ipam_error(conf->cc_ipam_type, command, output, outlen, status, e);
		ret = -1;
		goto out;
	}
	ret = 0;
	if (result) {
		*result = json_loadb(output, outlen, 0, &jerr);
		if (!*result || !json_is_object(*result)) {
			json_decref(*result);
			*result = NULL;
			ret = cni_fail(e, CNI_ERR_DECODE,
				       "IPAM %s %s: result is not a JSON object: %s",
				       conf->cc_ipam_type, command, jerr.text);
		}
	}
out:
	for (int i = 0; i < 2; i++) {
		if (in[i] >= 0)
			close(in[i]);
		if (out[i] >= 0)
			close(out[i]);
	}
	free(output);
	return ret;
}

int ipam_exec(const struct cni_conf *conf, const char *command, const char *text, size_t len,
	      json_t **result, struct cni_err *e)
{
	json_t *older;
	char *otext;
	int ret;

	if (!ipam_run(conf, command, text, len, result, e))
		return 0;
	/* 1.1.0 changed nothing an IPAM plugin's ADD, DEL or CHECK sees, but a delegate built
	 * before it (Debian 12's host-local) refuses the version: ask again as 1.0.0. */
	if (e->ce_code != CNI_ERR_VERSION || strcmp(conf->cc_version, "1.1.0"))
		return -1;
	older = json_deep_copy(conf->cc_root);
	json_object_set_new(older, "cniVersion", json_string("1.0.0"));
	otext = json_dumps(older, JSON_COMPACT);
	json_decref(older);
	if (!otext)
		return cni_fail(e, CNI_ERR_IO, "out of memory");
	memset(e, 0, sizeof(*e));
	ret = ipam_run(conf, command, otext, strlen(otext), result, e);
	free(otext);
	return ret;
}

int ipam_supports(const struct cni_conf *conf, const char *version, struct cni_err *e)
{
	static const char query[] = "{\"cniVersion\": \"1.1.0\"}";
	json_t *res, *v;
	int found = 0;
	size_t i;

	if (ipam_run(conf, "VERSION", query, sizeof(query) - 1, &res, e))
		return -1;
	json_array_foreach(json_object_get(res, "supportedVersions"), i, v)
		if (json_is_string(v) && !strcmp(json_string_value(v), version))
			found = 1;
	json_decref(res);
	return found;
}
