/* detect.c - pure classifier of a connection's first bytes: TLS, HTTP/1 or SSH. */
#include <string.h>

#include "detect.h"

#define TLS_CONTENT_HANDSHAKE 0x16

static enum peek_status
answer(struct detect_result *out, enum peek_status st, enum detected_proto proto, size_t consumed,
       const char *why)
{
	out->proto = st == PEEK_FOUND ? proto : DETECTED_NONE;
	out->consumed = consumed;
	out->why = why;
	return st;
}

enum peek_status
detect_parse(const uint8_t *buf, size_t len, struct detect_result *out)
{
	static const char ssh[] = "SSH-";
	if (len == 0)
		return answer(out, PEEK_NEED_MORE, DETECTED_NONE, 0, NULL);
	if (buf[0] == TLS_CONTENT_HANDSHAKE)
		return answer(out, PEEK_FOUND, DETECTED_TLS, 1, NULL);
	if (buf[0] < 'A' || buf[0] > 'Z')
		return answer(out, PEEK_INVALID, DETECTED_NONE, 1,
			      "first byte begins neither a TLS handshake, an HTTP request nor SSH");
	for (size_t i = 0; i < sizeof(ssh) - 1; i++) {
		if (i == len)
			return answer(out, PEEK_NEED_MORE, DETECTED_NONE, len, NULL);
		if (buf[i] != (uint8_t)ssh[i])
			return answer(out, PEEK_FOUND, DETECTED_HTTP, i + 1, NULL);
	}
	return answer(out, PEEK_FOUND, DETECTED_SSH, sizeof(ssh) - 1, NULL);
}

const char *
detected_proto_name(enum detected_proto proto)
{
	switch (proto) {
	case DETECTED_TLS:
		return "tls";
	case DETECTED_HTTP:
		return "http";
	case DETECTED_SSH:
		return "ssh";
	case DETECTED_NONE:
		break;
	}
	return "-";
}
