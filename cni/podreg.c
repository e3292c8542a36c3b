// SPDX-License-Identifier: MIT
/* slim-cni's side of the router's pod table: register, find, delete and collect pods, each
 * tagged with the attachment that made it (label CNI_LABEL_ATTACHMENT: network/id/ifname). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cni.h"
#include "ctlcall.h"

/* One request (pass_fd: a descriptor it carries, or -1); 0 with *rep the router's successful
 * answer, or -1 with e filled. */
static int podreg_call_fd(const char *sock, json_t *req, int pass_fd, json_t **rep,
			  struct cni_err *e)
{
	char err[CNI_MSG_MAX - 32];
	const char *why;
	int ret;

	*rep = NULL;
	if (!req)
		return cni_fail(e, CNI_ERR_IO, "out of memory");
	ret = ctlcall_doc(sock, req, NULL, 0, pass_fd, rep, err, sizeof(err));
	json_decref(req);
	if (ret < 0)
		/* No router (yet): the runtime may retry, so say "try again later". */
		return cni_fail(e, CNI_ERR_TRY_AGAIN, "slim router: %s", err);
	if (json_is_true(json_object_get(*rep, "ok")))
		return 0;
	why = json_string_value(json_object_get(*rep, "error"));
	cni_fail(e, CNI_ERR_IO, "slim router: %s", why ? why : "failed (no error message)");
	json_decref(*rep);
	*rep = NULL;
	return -1;
}

static int podreg_call(const char *sock, json_t *req, json_t **rep, struct cni_err *e)
{
	return podreg_call_fd(sock, req, -1, rep, e);
}

int podreg_add(const char *sock, const char *netns, const char *ip, const char *name,
	       json_t *labels, struct cni_err *e)
{
	/* The router never opens a path a caller names: it gets the namespace itself. */
	int fd = open(netns, O_RDONLY | O_CLOEXEC), ret;
	json_t *rep;

	if (fd < 0)
		return cni_fail(e, CNI_ERR_IO, "open %s: %s", netns, strerror(errno));
	ret = podreg_call_fd(sock,
			     json_pack("{s:s, s:s, s:s, s:s, s:O}", "cmd", "pod.add", "netns", netns,
				       "ip", ip, "name", name, "labels", labels),
			     fd, &rep, e);
	close(fd);
	if (ret)
		return -1;
	json_decref(rep);
	return 0;
}

/* The router's pods, as an array (owned by *rep). */
static json_t *podreg_list(const char *sock, json_t **rep, struct cni_err *e)
{
	json_t *pods;

	if (podreg_call(sock, json_pack("{s:s}", "cmd", "pod.list"), rep, e))
		return NULL;
	pods = json_object_get(*rep, "pods");
	if (!json_is_array(pods)) {
		json_decref(*rep);
		cni_fail(e, CNI_ERR_DECODE, "slim router: pod.list answer has no pods array");
		return NULL;
	}
	return pods;
}

static const char *podreg_attachment(json_t *pod)
{
	return json_string_value(
		json_object_get(json_object_get(pod, "labels"), CNI_LABEL_ATTACHMENT));
}

static int podreg_del_name(const char *sock, const char *name, struct cni_err *e)
{
	json_t *rep;

	if (podreg_call(sock, json_pack("{s:s, s:s}", "cmd", "pod.del", "name", name), &rep, e))
		return -1;
	json_decref(rep);
	return 0;
}

void podreg_attachment_name(const char *network, const char *containerid, const char *ifname,
			    char *out, size_t cap)
{
	snprintf(out, cap, "%s/%s/%s", network, containerid, ifname);
}

int podreg_del(const char *sock, const char *attachment, struct cni_err *e)
{
	json_t *rep, *pods, *pod;
	size_t i;
	int ret = 0;

	pods = podreg_list(sock, &rep, e);
	if (!pods)
		return -1;
	json_array_foreach(pods, i, pod) {
		const char *a = podreg_attachment(pod);
		const char *name = json_string_value(json_object_get(pod, "name"));

		if (a && name && !strcmp(a, attachment) && podreg_del_name(sock, name, e))
			ret = -1;
	}
	json_decref(rep);
	return ret;
}

int podreg_check(const char *sock, const char *attachment, const char *ip, struct cni_err *e)
{
	json_t *rep, *pods, *pod;
	bool found = false;
	size_t i;

	pods = podreg_list(sock, &rep, e);
	if (!pods)
		return -1;
	json_array_foreach(pods, i, pod) {
		const char *a = podreg_attachment(pod);
		const char *pip = json_string_value(json_object_get(pod, "ip"));

		if (a && pip && !strcmp(a, attachment) && !strcmp(pip, ip))
			found = true;
	}
	json_decref(rep);
	if (!found)
		return cni_fail(e, CNI_ERR_CHECK,
				"slim router at %s has no pod with ip %s for attachment %s", sock,
				ip, attachment);
	return 0;
}

/* True when keep (GC's valid attachments: [{"containerID": ..., "ifname": ...}]) has the
 * attachment "network/id/ifname". */
static bool podreg_kept(json_t *keep, const char *network, const char *attachment)
{
	char name[512];
	json_t *a;
	size_t i;

	json_array_foreach(keep, i, a) {
		const char *id = json_string_value(json_object_get(a, "containerID"));
		const char *ifname = json_string_value(json_object_get(a, "ifname"));

		if (!id || !ifname)
			continue;
		podreg_attachment_name(network, id, ifname, name, sizeof(name));
		if (!strcmp(name, attachment))
			return true;
	}
	return false;
}

int podreg_gc(const char *sock, const char *network, json_t *keep,
	      void (*stale)(const char *containerid, const char *ifname, void *arg), void *arg,
	      struct cni_err *e)
{
	size_t i, plen = strlen(network);
	json_t *rep, *pods, *pod;
	int ret = 0;

	pods = podreg_list(sock, &rep, e);
	if (!pods)
		return -1;
	json_array_foreach(pods, i, pod) {
		const char *a = podreg_attachment(pod), *slash;
		const char *name = json_string_value(json_object_get(pod, "name"));
		char id[256];

		/* Only this network's attachments: "network/id/ifname". */
		if (!a || !name || strncmp(a, network, plen) || a[plen] != '/' ||
		    podreg_kept(keep, network, a))
			continue;
		slash = strchr(a + plen + 1, '/');
		if (!slash || (size_t)(slash - (a + plen + 1)) >= sizeof(id))
			continue;
		if (podreg_del_name(sock, name, e))
			ret = -1;
		snprintf(id, sizeof(id), "%.*s", (int)(slash - (a + plen + 1)), a + plen + 1);
		stale(id, slash + 1, arg);
	}
	json_decref(rep);
	return ret;
}

int podreg_status(const char *sock, struct cni_err *e)
{
	json_t *rep;

	if (podreg_call(sock, json_pack("{s:s}", "cmd", "status"), &rep, e))
		return -1;
	json_decref(rep);
	return 0;
}
