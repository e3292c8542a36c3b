// SPDX-License-Identifier: MIT
/* The client side of the control protocol: one CTL_REQ out, CTL_REP fragments back. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include "ctlcall.h"
#include "msg.h"

#define CTLCALL_REPLY_MAX (64 << 20) /* refuse to buffer more than this */

static int ctlcall_connect(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = CTLCALL_TIMEOUT_S};
	int fd, ret;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "socket path too long: %s", path);
		return -ENAMETOOLONG;
	}
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return ret;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot reach the router at %s: %s", path, strerror(errno));
		close(fd);
		return ret;
	}
	/* Never hang on a router that stopped answering. */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

int ctlcall(const char *path, json_t *req, json_t **rep, char *err, size_t errlen)
{
	return ctlcall_doc(path, req, NULL, 0, -1, rep, err, errlen);
}

int ctlcall_doc(const char *path, json_t *req, const void *doc, size_t doclen, int pass_fd,
		json_t **rep, char *err, size_t errlen)
{
	const size_t chunk = SLIM_MSG_MAX - sizeof(struct slim_msg_hdr);
	const uint32_t id = (uint32_t)getpid();
	size_t len, jlen, off = 0, total = 0;
	char *text, *all = NULL, *out = NULL;
	uint8_t *buf = NULL;
	json_error_t jerr;
	int fd = -1, ret;

	*rep = NULL;
	text = json_dumps(req, JSON_COMPACT);
	buf = malloc(SLIM_MSG_MAX);
	if (!text || !buf) {
		snprintf(err, errlen, "out of memory");
		ret = -ENOMEM;
		goto out;
	}
	jlen = strlen(text);
	len = jlen + (doc ? 1 + doclen : 0);
	if (len > SLIM_CTL_REQ_MAX) {
		snprintf(err, errlen, "request too large (%zu bytes, at most %d)", len,
			 SLIM_CTL_REQ_MAX);
		ret = -EMSGSIZE;
		goto out;
	}
	out = malloc(len);
	if (!out) {
		snprintf(err, errlen, "out of memory");
		ret = -ENOMEM;
		goto out;
	}
	memcpy(out, text, jlen);
	if (doc) {
		out[jlen] = '\0';
		memcpy(out + jlen + 1, doc, doclen);
	}

	fd = ctlcall_connect(path, err, errlen);
	if (fd < 0) {
		ret = fd;
		goto out;
	}
	do {
		size_t n = len - off < chunk ? len - off : chunk;
		struct slim_msg_hdr h = {
			.type = SLIM_MSG_CTL_REQ,
			.flags = off + n < len ? SLIM_MSGF_MORE : 0,
			.len = (uint32_t)(sizeof(h) + n),
			.id = id,
		};

		memcpy(buf, &h, sizeof(h));
		memcpy(buf + sizeof(h), out + off, n);
		ret = slim_msg_send(fd, buf, h.len, off == 0 ? pass_fd : -1);
		if (ret < 0) {
			snprintf(err, errlen, "send to %s: %s", path,
				 ret == -EAGAIN ? "timed out" : strerror(-ret));
			goto out;
		}
		off += n;
	} while (off < len);
	for (;;) {
		const struct slim_msg_hdr *rh = (const void *)buf;
		ssize_t n = slim_msg_recv(fd, buf, SLIM_MSG_MAX, &ret, 0);
		size_t body;
		char *grown;

		if (ret >= 0)
			close(ret);
		if (n <= 0) {
			ret = n == 0 ? -ECONNRESET : (int)n;
			snprintf(err, errlen, "receive from %s: %s", path,
				 n == 0		? "the router closed the connection"
				 : n == -EAGAIN ? "timed out"
						: strerror((int)-n));
			goto out;
		}
		if (slim_msg_check_reply(buf, (size_t)n, SLIM_MSG_CTL_REP, id) < 0) {
			snprintf(err, errlen, "malformed reply from the router");
			ret = -EBADMSG;
			goto out;
		}
		body = (size_t)n - sizeof(*rh);
		if (total + body > CTLCALL_REPLY_MAX) {
			snprintf(err, errlen, "reply larger than %d bytes", CTLCALL_REPLY_MAX);
			ret = -EMSGSIZE;
			goto out;
		}
		grown = realloc(all, total + body + 1);
		if (!grown) {
			snprintf(err, errlen, "out of memory");
			ret = -ENOMEM;
			goto out;
		}
		all = grown;
		memcpy(all + total, buf + sizeof(*rh), body);
		total += body;
		if (!(rh->flags & SLIM_MSGF_MORE))
			break;
	}
	*rep = json_loadb(all ? all : "", total, 0, &jerr);
	if (!*rep || !json_is_object(*rep)) {
		snprintf(err, errlen, "the router's reply is not a JSON object%s%s",
			 *rep ? "" : ": ", *rep ? "" : jerr.text);
		json_decref(*rep);
		*rep = NULL;
		ret = -EBADMSG;
		goto out;
	}
	ret = 0;
out:
	if (fd >= 0)
		close(fd);
	free(all);
	free(out);
	free(buf);
	free(text);
	return ret;
}
