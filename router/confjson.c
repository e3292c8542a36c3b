// SPDX-License-Identifier: MIT
/*
 * What the router's JSON documents (the cluster file, policy and services) check the same way:
 * the "ORIGIN: PATH: problem" error text, the name of a JSON type, unknown keys, the parse itself.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "router.h"

int confjson_verror(char *err, size_t errlen, const char *origin, const char *path,
		    const char *fmt, va_list ap)
{
	int n = snprintf(err, errlen, "%s: %s%s", origin, path, *path ? ": " : "");

	if (n >= 0 && (size_t)n < errlen)
		vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
	return -EINVAL;
}

const char *confjson_type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		break;
	}
	return "null";
}

const char *confjson_unknown_key(const json_t *obj, const char *const *allowed)
{
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)obj, key, v) {
		const char *const *a;

		for (a = allowed; *a && strcmp(*a, key); a++)
			;
		if (!*a)
			return key;
	}
	return NULL;
}

int confjson_error(const struct confjson_ctx *x, const char *path, const char *fmt, ...)
{
	va_list ap;
	int ret;

	va_start(ap, fmt);
	ret = confjson_verror(x->err, x->errlen, x->origin, *path ? path : "(top level)", fmt, ap);
	va_end(ap);
	return ret;
}

void confjson_path(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

int confjson_want(const struct confjson_ctx *x, json_t *v, json_type t, const char *path,
		  const char *what)
{
	if (!v || json_typeof(v) != t)
		return confjson_error(x, path, "wrong type: expected %s, got %s", what,
				      v ? confjson_type_name(v) : "nothing");
	return 0;
}

int confjson_check_keys(const struct confjson_ctx *x, json_t *o, const char *path,
			const char *const *allowed)
{
	const char *key = confjson_unknown_key(o, allowed);

	return key ? confjson_error(x, path, "unknown key \"%s\"", key) : 0;
}

json_t *confjson_load(const struct confjson_ctx *x, const char *text, size_t len)
{
	json_error_t jerr;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);

	if (!root)
		snprintf(x->err, x->errlen, "%s: line %d column %d: %s", x->origin, jerr.line,
			 jerr.column, jerr.text);
	return root;
}
