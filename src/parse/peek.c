/* peek.c - helpers shared by the peek parsers and their callers. */
#include <string.h>

#include "peek.h"

const char *
peek_status_name(enum peek_status status)
{
	switch (status) {
	case PEEK_NEED_MORE:
		return "need-more";
	case PEEK_FOUND:
		return "found";
	case PEEK_NO_NAME:
		return "no-name";
	case PEEK_INVALID:
		return "invalid";
	}
	return "unknown";
}

void
peek_result_clear(struct peek_result *out)
{
	out->name[0] = '\0';
	out->name_len = 0;
	out->alpn_len = 0;
	out->consumed = 0;
	out->why = NULL;
}

enum peek_status
peek_need_more(struct peek_result *out, size_t len)
{
	peek_result_clear(out);
	out->consumed = len;
	return PEEK_NEED_MORE;
}

enum peek_status
peek_invalid(struct peek_result *out, size_t examined, const char *why)
{
	peek_result_clear(out);
	out->consumed = examined;
	out->why = why;
	return PEEK_INVALID;
}
