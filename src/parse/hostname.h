/* hostname.h - normalise and validate DNS host names (pure, no allocation). */
#ifndef HANDOFF_HOSTNAME_H
#define HANDOFF_HOSTNAME_H

#include <stdbool.h>
#include <stddef.h>

/* Longest normalised name (text form, no trailing dot); equals PEEK_NAME_MAX. */
#define HOSTNAME_MAX 253

/*
 * Normalise the len bytes at in into out (capacity outcap, NUL-terminated):
 * ASCII-lowercase, drop one trailing dot, then check every label is 1..63
 * bytes of [a-z0-9-] (also '_' which real deployments use), not starting or
 * ending with '-', total length 1..253. IDNs must arrive as A-labels
 * ("xn--..."). Returns the normalised length, or 0 if the name is invalid
 * (out is then an empty string). Never reads past in[len-1].
 */
size_t hostname_normalize(const char *in, size_t len, char *out, size_t outcap);

/*
 * Same as hostname_normalize, but also accepts a route pattern: "*" alone,
 * or "*." followed by a valid name. Returns normalised length or 0.
 */
size_t hostname_normalize_pattern(const char *in, size_t len, char *out, size_t outcap);

/* True if name (normalised) is covered by pattern (normalised): equal, or
 * pattern is "*.suffix" and name ends with ".suffix" (at least one more label),
 * or pattern is "*". A pattern "*.a.b" also covers the pattern "*.x.a.b". */
bool hostname_pattern_covers(const char *pattern, const char *name);

#endif
