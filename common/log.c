// SPDX-License-Identifier: MIT
/* Leveled logging to stderr with a timestamp and the program name. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"

static const char *log_progname = "slim";
static enum log_level log_threshold = LOG_LVL_INFO;
static const char *const log_names[] = {"error", "warn", "info", "debug"};

void log_init(const char *progname, enum log_level level)
{
	log_progname = progname;
	log_threshold = level;
}

int log_level_parse(const char *name)
{
	for (unsigned i = 0; i < sizeof(log_names) / sizeof(log_names[0]); i++)
		if (!strcasecmp(name, log_names[i]))
			return (int)i;
	return -EINVAL;
}

static void log_vwrite(enum log_level level, const char *fmt, va_list ap, const char *suffix)
{
	struct timespec ts;
	struct tm tm;
	char when[32];

	if (level > log_threshold)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%H:%M:%S", &tm);
	flockfile(stderr);
	fprintf(stderr, "%s.%03ld %s %s: ", when, ts.tv_nsec / 1000000, log_progname,
		log_names[level]);
	vfprintf(stderr, fmt, ap);
	if (suffix)
		fprintf(stderr, ": %s", suffix);
	fputc('\n', stderr);
	funlockfile(stderr);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(level, fmt, ap, NULL);
	va_end(ap);
}

void log_warn(const char *fmt, ...)
{
	const char *why = strerror(errno);
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LVL_WARN, fmt, ap, why);
	va_end(ap);
}

void log_ratelimited(struct log_ratelimit *rl, enum log_level level, const char *fmt, ...)
{
	unsigned long long now;
	struct timespec ts;
	va_list ap;

	if (level > log_threshold)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (unsigned long long)ts.tv_sec * 1000 + (unsigned long long)ts.tv_nsec / 1000000;
	if (!rl->lr_start_ms || now - rl->lr_start_ms >= LOG_RATELIMIT_INTERVAL_MS) {
		if (rl->lr_dropped)
			log_msg(level, "(%u similar messages dropped in %u ms)", rl->lr_dropped,
				(unsigned)(now - rl->lr_start_ms));
		rl->lr_start_ms = now ? now : 1;
		rl->lr_logged = rl->lr_dropped = 0;
	}
	if (rl->lr_logged >= LOG_RATELIMIT_BURST) {
		rl->lr_dropped++;
		return;
	}
	rl->lr_logged++;
	va_start(ap, fmt);
	log_vwrite(level, fmt, ap, NULL);
	va_end(ap);
}

void fatal(const char *fmt, ...)
{
	const char *why = errno ? strerror(errno) : NULL;
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LVL_ERROR, fmt, ap, why);
	va_end(ap);
	exit(1);
}
