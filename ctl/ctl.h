/* SPDX-License-Identifier: MIT */
/* slimctl's internal interfaces: slimctl.c (commands, router I/O) and show.c (printing). */
#ifndef SLIM_CTL_H
#define SLIM_CTL_H

#include <jansson.h>

/* Prints "slimctl: <message>" to stderr and exits 1. */
void ctl_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* show.c: one printer per command, given the router's successful answer. */
void ctl_show_pod_added(json_t *rep);
void ctl_show_pod_deleted(json_t *rep);
void ctl_show_pods(json_t *rep);
void ctl_show_conns(json_t *rep);
void ctl_show_listeners(json_t *rep);
void ctl_show_status(json_t *rep);
void ctl_show_policy_applied(json_t *rep);
void ctl_show_policy(json_t *rep);
void ctl_show_pod_set(json_t *rep);
void ctl_show_pod_labeled(json_t *rep);
void ctl_show_services_applied(json_t *rep);
void ctl_show_services(json_t *rep);
void ctl_show_directory(json_t *rep);
void ctl_show_upgraded(json_t *rep);

#endif
