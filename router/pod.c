// SPDX-License-Identifier: MIT
/* The pod registry: pods by overlay IP, by name and by network namespace (device, inode). */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/nsfs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include "log.h"
#include "router.h"

static struct htab pod_by_ip, pod_by_name, pod_by_ns;

static uint64_t pod_ns_hash(dev_t dev, ino_t ino)
{
	uint64_t k[2] = {(uint64_t)dev, (uint64_t)ino};

	return htab_hash_bytes(k, sizeof(k));
}

int pod_table_init(void)
{
	if (htab_init(&pod_by_ip, 64) || htab_init(&pod_by_name, 64) || htab_init(&pod_by_ns, 64))
		return -ENOMEM;
	return 0;
}

static void pod_free(struct pod *p)
{
	if (p->p_netns_fd >= 0)
		close(p->p_netns_fd);
	json_decref(p->p_labels);
	free(p->p_netns);
	free(p);
}

void pod_table_free(void)
{
	struct hnode *h;
	size_t b = 0;

	while ((b = 0, h = htab_iter(&pod_by_ip, &b, NULL)))
		pod_del(container_of(h, struct pod, p_by_ip));
	htab_free(&pod_by_ip);
	htab_free(&pod_by_name);
	htab_free(&pod_by_ns);
}

struct pod *pod_find_ip(uint32_t ip)
{
	for (struct hnode *h = htab_first(&pod_by_ip, htab_hash_u64(ip)); h; h = htab_next(h)) {
		struct pod *p = container_of(h, struct pod, p_by_ip);

		if (p->p_ip == ip)
			return p;
	}
	return NULL;
}

struct pod *pod_find_name(const char *name)
{
	for (struct hnode *h = htab_first(&pod_by_name, htab_hash_str(name)); h; h = htab_next(h)) {
		struct pod *p = container_of(h, struct pod, p_by_name);

		if (!strcmp(p->p_name, name))
			return p;
	}
	return NULL;
}

struct pod *pod_find_ns(dev_t dev, ino_t ino)
{
	for (struct hnode *h = htab_first(&pod_by_ns, pod_ns_hash(dev, ino)); h; h = htab_next(h)) {
		struct pod *p = container_of(h, struct pod, p_by_ns);

		if (p->p_ns_dev == dev && p->p_ns_ino == ino)
			return p;
	}
	return NULL;
}

/* Checks fd is a network namespace; fills its (dev, ino). */
static int pod_netns_identify(int fd, dev_t *dev, ino_t *ino)
{
	struct stat st;
	int type;

	if (fd < 0)
		return -EBADF;
	type = ioctl(fd, NS_GET_NSTYPE);
	if (type < 0)
		return errno == ENOTTY ? -ENOTTY : -errno;
	if (type != CLONE_NEWNET)
		return -EINVAL;
	if (fstat(fd, &st) < 0)
		return -errno;
	*dev = st.st_dev;
	*ino = st.st_ino;
	return 0;
}

int pod_add(const char *netns, int netns_fd, uint32_t ip, const char *name, json_t *labels,
	    struct pod **out, char *err, size_t errlen)
{
	char ipbuf[INET_ADDRSTRLEN];
	struct pod *p, *other;
	dev_t dev = 0;
	ino_t ino = 0;
	int ret;

	inet_ntop(AF_INET, &ip, ipbuf, sizeof(ipbuf));
	if (!name || !*name)
		name = ipbuf;
	if (strlen(name) >= NAME_MAX_LEN) {
		snprintf(err, errlen, "name too long (max %d)", NAME_MAX_LEN - 1);
		return -EINVAL;
	}
	if (!cidr_contains(&router.r_self->cn_pod_cidr, ip)) {
		char c[INET_ADDRSTRLEN];

		inet_ntop(AF_INET, &router.r_self->cn_pod_cidr.net, c, sizeof(c));
		snprintf(err, errlen, "ip %s is outside this node's pod_cidr %s/%u", ipbuf, c,
			 router.r_self->cn_pod_cidr.len);
		return -EINVAL;
	}
	if ((other = pod_find_ip(ip))) {
		snprintf(err, errlen, "ip %s is already pod %s", ipbuf, other->p_name);
		return -EEXIST;
	}
	if ((other = pod_find_name(name))) {
		snprintf(err, errlen, "name %s is already taken", name);
		return -EEXIST;
	}
	ret = pod_netns_identify(netns_fd, &dev, &ino);
	if (ret == -ENOTTY || ret == -EINVAL) {
		snprintf(err, errlen, "netns %s is not a network namespace", netns);
		return -EINVAL;
	}
	if (ret < 0) {
		snprintf(err, errlen, "netns %s: %s", netns, strerror(-ret));
		return ret;
	}
	if (dev == router.r_ns_dev && ino == router.r_ns_ino) {
		snprintf(err, errlen, "netns %s is the router's own network namespace", netns);
		return -EINVAL;
	}
	if ((other = pod_find_ns(dev, ino))) {
		snprintf(err, errlen, "netns %s is already pod %s", netns, other->p_name);
		return -EEXIST;
	}

	p = calloc(1, sizeof(*p));
	if (!p || !(p->p_netns = strdup(netns))) {
		free(p);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	/* Kept for tc inside the pod (qos.c): the name could be replaced, the namespace cannot. */
	p->p_netns_fd = fcntl(netns_fd, F_DUPFD_CLOEXEC, 3);
	if (p->p_netns_fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "netns %s: %s", netns, strerror(errno));
		pod_free(p);
		return ret;
	}
	p->p_ip = ip;
	snprintf(p->p_name, sizeof(p->p_name), "%s", name);
	p->p_ns_dev = dev;
	p->p_ns_ino = ino;
	p->p_labels = labels ? json_incref(labels) : json_object();
	p->p_added = time(NULL);
	TAILQ_INIT(&p->p_listeners);
	htab_insert(&pod_by_ip, &p->p_by_ip, htab_hash_u64(ip));
	htab_insert(&pod_by_name, &p->p_by_name, htab_hash_str(p->p_name));
	htab_insert(&pod_by_ns, &p->p_by_ns, pod_ns_hash(dev, ino));
	if (out)
		*out = p;
	return 0;
}

void pod_del(struct pod *p)
{
	listener_drop_pod(p);
	htab_remove(&pod_by_ip, &p->p_by_ip);
	htab_remove(&pod_by_name, &p->p_by_name);
	htab_remove(&pod_by_ns, &p->p_by_ns);
	pod_free(p);
}

struct pod *pod_find_outside(const struct cidr *c)
{
	struct hnode *h = NULL;
	size_t b = 0;

	while ((h = htab_iter(&pod_by_ip, &b, h))) {
		struct pod *p = container_of(h, struct pod, p_by_ip);

		if (!cidr_contains(c, p->p_ip))
			return p;
	}
	return NULL;
}

size_t pod_count(void)
{
	return pod_by_ip.ht_count;
}

json_t *pod_json(const struct pod *p)
{
	char ip[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &p->p_ip, ip, sizeof(ip));
	return json_pack("{s:s, s:s, s:s, s:O, s:I, s:I}", "name", p->p_name, "ip", ip, "netns",
			 p->p_netns, "labels", p->p_labels, "listeners",
			 (json_int_t)p->p_nlisteners, "added", (json_int_t)p->p_added);
}

static int pod_cmp_ip(const void *a, const void *b)
{
	uint32_t x = ntohl((*(struct pod *const *)a)->p_ip),
		 y = ntohl((*(struct pod *const *)b)->p_ip);

	return x < y ? -1 : x > y;
}

json_t *pod_list_json(void)
{
	size_t n = 0, b = 0, count = pod_by_ip.ht_count;
	struct pod **v = calloc(count ? count : 1, sizeof(*v));
	json_t *a = json_array();
	struct hnode *h = NULL;

	if (!v)
		return a;
	while ((h = htab_iter(&pod_by_ip, &b, h)) && n < count)
		v[n++] = container_of(h, struct pod, p_by_ip);
	/* Sorted by address so listings are stable. */
	qsort(v, n, sizeof(*v), pod_cmp_ip);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, pod_json(v[i]));
	free(v);
	return a;
}

void pod_foreach(void (*fn)(const struct pod *p, void *arg), void *arg)
{
	struct hnode *h = NULL;
	size_t b = 0;

	while ((h = htab_iter(&pod_by_ip, &b, h)))
		fn(container_of(h, struct pod, p_by_ip), arg);
}
