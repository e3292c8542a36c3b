/* SPDX-License-Identifier: MIT */
/* One JSON request to a router's control socket and its whole answer (slimctl, slim-cni). */
#ifndef SLIM_CTLCALL_H
#define SLIM_CTLCALL_H

#include <stddef.h>

#include <jansson.h>

/* How long a caller waits for the router before giving up (send and each receive). */
#define CTLCALL_TIMEOUT_S 10

/*
 * Sends req (a JSON object with "cmd") as one CTL_REQ to the router at path and reads every
 * CTL_REP fragment. On success *rep is the parsed answer (an object; its "ok" is the router's
 * verdict, not checked here) and 0 is returned; otherwise -errno, with the reason in err.
 */
int ctlcall(const char *path, json_t *req, json_t **rep, char *err, size_t errlen);

/*
 * The same with a document after the request's JSON (separated by a NUL; NULL for none) and a
 * descriptor passed with the first fragment (-1 for none): the request goes in CTL_REQ
 * fragments of at most SLIM_MSG_MAX bytes, SLIM_MSGF_MORE on all but the last, at most
 * SLIM_CTL_REQ_MAX bytes in all.
 */
int ctlcall_doc(const char *path, json_t *req, const void *doc, size_t doclen, int pass_fd,
		json_t **rep, char *err, size_t errlen);

#endif
