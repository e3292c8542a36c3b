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

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warnx(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
