/* SPDX-License-Identifier: MIT */
/* Leveled logging to stderr for the daemons and tools (never used by the shim). */
#ifndef SLIM_LOG_H
#define SLIM_LOG_H

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

void log_init(const char *progname, enum log_level level);
/* Parses "error", "warn", "info", "debug"; returns the level or -EINVAL. */
int log_level_parse(const char *name);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Like log_msg at LOG_LVL_WARN, with ": strerror(errno)" appended. */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Logs at error level with strerror(errno) and exits 1: start-up failures only. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/*
 * A call site's budget for log_ratelimited(): LOG_RATELIMIT_BURST lines per
 * LOG_RATELIMIT_INTERVAL_MS, then silence until the next interval, which starts by saying how
 * many were dropped. For warnings a remote party can trigger at will (a pod, a host on the
 * fabric): they must not be able to fill the disk or bury the other lines. Declare one static
 * per call site: static struct log_ratelimit rl;
 */
#define LOG_RATELIMIT_BURST	  10
#define LOG_RATELIMIT_INTERVAL_MS 5000

struct log_ratelimit {
	unsigned long long lr_start_ms; /* 0: no interval yet */
	unsigned lr_logged, lr_dropped;
};

void log_ratelimited(struct log_ratelimit *rl, enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warnx(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
