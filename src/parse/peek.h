/* peek.h - result type shared by the pure peek parsers (TLS ClientHello, HTTP/1 Host). */
#ifndef HANDOFF_PEEK_H
#define HANDOFF_PEEK_H

#include <stddef.h>
#include <stdint.h>

/* Largest number of bytes the daemon ever peeks at; a parser that has not
 * answered within this many bytes is treated as INVALID by the caller. */
#define PEEK_MAX 16384

/* DNS names are at most 253 characters in text form (255 on the wire);
 * we accept up to 253 after normalisation, stored NUL-terminated. */
#define PEEK_NAME_MAX 253

/* Raw ALPN protocol_name_list as sent (wire form: 1-byte length + bytes, repeated).
 * A longer list keeps only its leading protocols that fit whole. */
#define PEEK_ALPN_MAX 255

enum peek_status {
	PEEK_NEED_MORE = 0,	/* valid so far; feed a longer prefix */
	PEEK_FOUND,		/* a name was found and normalised into out->name */
	PEEK_NO_NAME,		/* complete and well-formed, but carries no name */
	PEEK_INVALID,		/* malformed; never route such input */
};

/*
 * A parser's answer. name is set only for FOUND and alpn only for FOUND and
 * NO_NAME; otherwise both are empty. A verdict (anything but NEED_MORE)
 * depends on exactly the first `consumed` input bytes: the same bytes give
 * the same answer whatever follows, and one byte fewer gives NEED_MORE.
 */
struct peek_result {
	char name[PEEK_NAME_MAX + 1];	/* normalised (lowercase, no trailing dot), NUL-terminated */
	size_t name_len;
	uint8_t alpn[PEEK_ALPN_MAX];	/* TLS only: ALPN list in wire form, alpn_len bytes */
	size_t alpn_len;
	size_t consumed;		/* bytes the verdict depends on; the whole input for NEED_MORE */
	const char *why;		/* static string: reason for INVALID / NO_NAME, for the log; else NULL */
};

/* "need-more", "found", "no-name" or "invalid", for logs and tests. */
const char *peek_status_name(enum peek_status status);

/* Empty name and ALPN, consumed 0, why NULL: the state every parser starts from. */
void peek_result_clear(struct peek_result *out);

/* A parser's answer when it stopped short of a verdict: whatever it had filled
 * in is dropped, and the whole input of len bytes is a valid start. */
enum peek_status peek_need_more(struct peek_result *out, size_t len);

/* A parser's answer when the first `examined` bytes are malformed for the
 * static reason why; whatever it had filled in is dropped. */
enum peek_status peek_invalid(struct peek_result *out, size_t examined, const char *why);

#endif
