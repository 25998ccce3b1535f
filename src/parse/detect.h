/* detect.h - pure classifier of a connection's first bytes: TLS, HTTP/1 or SSH. */
#ifndef HANDOFF_DETECT_H
#define HANDOFF_DETECT_H

#include "peek.h"

enum detected_proto {
	DETECTED_NONE = 0,
	DETECTED_TLS,	/* a TLS handshake record */
	DETECTED_HTTP,	/* an HTTP/1 request line */
	DETECTED_SSH,	/* an SSH identification line */
};

struct detect_result {
	enum detected_proto proto;	/* FOUND only */
	size_t consumed;		/* bytes the verdict depends on, as in peek.h */
	const char *why;		/* static reason for INVALID, else NULL */
};

/*
 * Tell from the first bytes of a stream which protocol the client speaks,
 * before that protocol's own parser decides whether the bytes are valid:
 * 0x16 (a TLS handshake record) is TLS; "SSH-" is SSH; an upper-case letter
 * that does not begin "SSH-" is HTTP (every registered method is upper
 * case). While the bytes are a proper prefix of "SSH-" the answer is
 * NEED_MORE; anything else is INVALID, never a guess. Never NO_NAME. No
 * I/O, no allocation; safe on any input of any length.
 */
enum peek_status detect_parse(const uint8_t *buf, size_t len, struct detect_result *out);

/* "tls", "http", "ssh" or "-". */
const char *detected_proto_name(enum detected_proto proto);

#endif
