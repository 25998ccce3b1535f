/* http_host.h - pure parser for the Host of an HTTP/1.x request head. */
#ifndef HANDOFF_HTTP_HOST_H
#define HANDOFF_HTTP_HOST_H

#include "peek.h"

#include <stdbool.h>

/*
 * Parse the start of an HTTP/1.0 or HTTP/1.1 request, deciding once the end
 * of the head (CRLF CRLF or LF LF) is seen, whatever the request form. The
 * host comes from the Host header (case-insensitive name, port stripped,
 * optional whitespace trimmed), normalised with hostname_normalize; an IPv6
 * literal "[v6]" yields its canonical text without brackets ("::1").
 * A request target "scheme://authority/..." (absolute-form, any scheme)
 * names a host too: its host part (userinfo and port aside; userinfo is
 * invalid in http and https targets) and the Host header must name the same
 * host, so that the daemon and the server behind it cannot read different
 * hosts. FOUND: one non-empty Host (or an absolute-form HTTP/1.0 request
 * without Host). NO_NAME: HTTP/1.0 without Host, or an empty Host, in
 * origin-form. INVALID: HTTP/1.1 without Host, several Host headers, a Host
 * that differs from the absolute-form target, a bad request line, header or
 * host, a line over 8 KiB, over 100 header lines or a head longer than
 * PEEK_MAX. No I/O, no allocation; safe on any input of any length.
 */
enum peek_status http_host_parse(const uint8_t *buf, size_t len, struct peek_result *out);

/*
 * What http_host_parse_resume learnt from the lines it accepted, and how far
 * it got in the line after them. A caller that sees the same request grow
 * keeps one, zeroed before the first call, so that each call looks only at
 * the bytes that are new: the work per request is linear in its length.
 */
struct http_progress {
	size_t line_start;	/* the first line not accepted yet */
	size_t line_scanned;	/* its bytes before this one hold no terminator or bad byte */
	size_t field_scanned;	/* its syntax check got this far without a verdict */
	size_t target_start;	/* request line: where the target starts; 0 while in the method */
	unsigned lines;		/* lines accepted, the request line included */
	int http_minor;		/* 0 or 1 once the version is read */
	unsigned host_headers;
	bool host_empty;
	bool absolute_form;
	size_t host_name_len;
	size_t target_name_len;
	char host_name[PEEK_NAME_MAX + 1];	/* from the Host header */
	char target_name[PEEK_NAME_MAX + 1];	/* from an absolute-form target */
};

/*
 * http_host_parse for a request that arrives in pieces: buf holds the first
 * len bytes, and progress comes from earlier calls on shorter prefixes of
 * the same bytes (or is zeroed). The answer is exactly http_host_parse's on
 * the same bytes. A NEED_MORE moves progress on; a verdict leaves it as it
 * was, so asking again gives the same verdict. Pure: no I/O, no allocation.
 */
enum peek_status http_host_parse_resume(const uint8_t *buf, size_t len, struct http_progress *progress,
					struct peek_result *out);

#endif
