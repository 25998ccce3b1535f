/* ssh_ident.c - pure parser for the identification line an SSH client sends first (RFC 4253 4.2). */
#include <stdbool.h>
#include <string.h>

#include "ssh_ident.h"

static const char prefix[] = "SSH-2.0-";
#define PREFIX_LEN (sizeof(prefix) - 1)

static enum peek_status
answer(struct ssh_ident *out, enum peek_status st, size_t consumed, const char *why)
{
	size_t software_off = out->software_off, software_len = out->software_len;
	size_t comments_off = out->comments_off, comments_len = out->comments_len;
	memset(out, 0, sizeof(*out));
	out->consumed = consumed;
	out->why = why;
	if (st == PEEK_FOUND) {
		out->line_len = consumed;
		out->software_off = software_off;
		out->software_len = software_len;
		out->comments_off = comments_off;
		out->comments_len = comments_len;
	}
	return st;
}

enum peek_status
ssh_ident_parse(const uint8_t *buf, size_t len, struct ssh_ident *out)
{
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < PREFIX_LEN; i++) {
		if (i == len)
			return answer(out, PEEK_NEED_MORE, len, NULL);
		if (buf[i] != (uint8_t)prefix[i])
			return answer(out, PEEK_INVALID, i + 1,
				      i >= 4 && i < 7 ? "SSH protocol version other than 2.0"
						      : "not an SSH-2.0 identification line");
	}
	out->software_off = PREFIX_LEN;
	bool in_comments = false;
	for (size_t i = PREFIX_LEN; i < len; i++) {
		uint8_t b = buf[i];
		size_t line_end;	/* bytes up to and including the LF */
		if (b == '\r') {
			if (i + 1 >= SSH_IDENT_MAX)	/* no room left for the LF */
				return answer(out, PEEK_INVALID, i + 1, "identification line longer than 255 bytes");
			if (i + 1 == len)
				return answer(out, PEEK_NEED_MORE, len, NULL);
			if (buf[i + 1] != '\n')
				return answer(out, PEEK_INVALID, i + 2, "CR without LF in the identification line");
			line_end = i + 2;
		} else if (b == '\n') {
			line_end = i + 1;
		} else {
			if (i + 1 == SSH_IDENT_MAX)	/* the last byte allowed must be the LF */
				return answer(out, PEEK_INVALID, i + 1, "identification line longer than 255 bytes");
			if (!in_comments && b == ' ') {
				out->software_len = i - out->software_off;
				if (out->software_len == 0)
					return answer(out, PEEK_INVALID, i + 1, "empty software version");
				in_comments = true;
				out->comments_off = i + 1;
			} else if (b < 0x20 || b > 0x7e) {
				return answer(out, PEEK_INVALID, i + 1,
					      "control or non-ASCII byte in the identification line");
			}
			continue;
		}
		/* i is the CR or the lone LF: the text ends before it. */
		if (in_comments)
			out->comments_len = i - out->comments_off;
		else
			out->software_len = i - out->software_off;
		if (out->software_len == 0)
			return answer(out, PEEK_INVALID, line_end, "empty software version");
		return answer(out, PEEK_FOUND, line_end, NULL);
	}
	return answer(out, PEEK_NEED_MORE, len, NULL);
}
