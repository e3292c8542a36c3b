// SPDX-License-Identifier: MIT
/*
 * What the router's two JSON documents (the cluster file and the policy file) check the same
 * way: the "ORIGIN: PATH: problem" error text, the name of a JSON type, unknown keys.
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
