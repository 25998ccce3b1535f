/* hostname.c - normalise and validate DNS host names and route patterns (pure, no allocation). */
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "hostname.h"

#define LABEL_MAX 63

static bool
is_label_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static char
ascii_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static size_t
reject(char *out, size_t outcap)
{
	if (outcap > 0)
		out[0] = '\0';
	return 0;
}

size_t
hostname_normalize(const char *in, size_t len, char *out, size_t outcap)
{
	if (in == NULL || out == NULL)
		return reject(out, outcap);
	/* "a.example." names the same host as "a.example": the root label is implied. */
	if (len > 0 && in[len - 1] == '.')
		len--;
	if (len == 0 || len > HOSTNAME_MAX || len >= outcap)
		return reject(out, outcap);

	size_t label_len = 0;
	for (size_t i = 0; i < len; i++) {
		char c = ascii_lower(in[i]);
		if (c == '.') {
			/* An empty label ("a..b", ".a") or one ending in '-' is not a host name. */
			if (label_len == 0 || out[i - 1] == '-')
				return reject(out, outcap);
			label_len = 0;
		} else {
			if (!is_label_char(c))
				return reject(out, outcap);
			if (label_len == 0 && c == '-')
				return reject(out, outcap);
			if (++label_len > LABEL_MAX)
				return reject(out, outcap);
		}
		out[i] = c;
	}
	/* The last label, like every other, is non-empty and does not end in '-'. */
	if (label_len == 0 || out[len - 1] == '-')
		return reject(out, outcap);
	out[len] = '\0';
	return len;
}

size_t
hostname_normalize_pattern(const char *in, size_t len, char *out, size_t outcap)
{
	if (in == NULL || out == NULL)
		return reject(out, outcap);
	if (len == 1 && in[0] == '*') {
		if (outcap < 2)
			return reject(out, outcap);
		out[0] = '*';
		out[1] = '\0';
		return 1;
	}
	if (len > 0 && in[0] != '*')
		return hostname_normalize(in, len, out, outcap);
	/* "*." followed by a valid name; "*." alone is a typo, not the catch-all. */
	if (len < 3 || in[0] != '*' || in[1] != '.' || outcap < 3)
		return reject(out, outcap);
	size_t suffix_len = hostname_normalize(in + 2, len - 2, out + 2, outcap - 2);
	if (suffix_len == 0 || suffix_len + 2 > HOSTNAME_MAX)
		return reject(out, outcap);
	out[0] = '*';
	out[1] = '.';
	return suffix_len + 2;
}

bool
hostname_pattern_covers(const char *pattern, const char *name)
{
	if (pattern == NULL || name == NULL || name[0] == '\0')
		return false;
	if (strcmp(pattern, "*") == 0 || strcmp(pattern, name) == 0)
		return true;
	if (pattern[0] != '*' || pattern[1] != '.')
		return false;
	/* "*.a.b" covers "x.a.b" and "y.x.a.b" (and the pattern "*.x.a.b"), never "a.b". */
	const char *dot_suffix = pattern + 1;
	size_t suffix_len = strlen(dot_suffix);
	size_t name_len = strlen(name);
	if (name_len <= suffix_len)
		return false;
	return memcmp(name + name_len - suffix_len, dot_suffix, suffix_len) == 0;
}
