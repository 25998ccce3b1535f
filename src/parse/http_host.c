/* http_host.c - pure parser for the Host of an HTTP/1.x request head (RFC 9112). */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "hostname.h"
#include "http_host.h"

#define LINE_MAX_BYTES	8192	/* longest request or header line, terminator excluded */
#define HEADER_LINES_MAX	100
#define PORT_MAX	65535

enum step {
	STEP_OK,
	STEP_MORE,	/* valid so far; the rest has not arrived */
	STEP_BAD,	/* parser.why says what is wrong */
};

enum line_state {
	LINE_COMPLETE,	/* terminator seen */
	LINE_PARTIAL,	/* valid bytes so far, no terminator yet */
	LINE_BROKEN,	/* a byte at content_end (or the size limit) makes it invalid */
};

/* One line of the head: its content [start, content_end) and what ends it. */
struct line {
	size_t start;
	size_t content_end;
	size_t next;		/* first byte after the terminator, when complete */
	enum line_state state;
	size_t broken_examined;	/* for LINE_BROKEN: bytes the verdict depends on */
	const char *broken_why;
};

struct http_parser {
	const uint8_t *buf;
	size_t len;
	size_t scan_end;	/* bytes we may look at: len, at most PEEK_MAX */
	size_t examined;	/* for INVALID: bytes the verdict depends on */
	const char *why;
	struct http_progress *st;	/* what earlier lines established; where to go on */
};

static enum step
bad(struct http_parser *p, size_t examined, const char *why)
{
	p->examined = examined;
	p->why = why;
	return STEP_BAD;
}

/* RFC 9110 5.6.2: token characters. */
static bool
is_tchar(uint8_t c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool
is_ows(uint8_t c)
{
	return c == ' ' || c == '\t';
}

static uint8_t
ascii_lower(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') ? (uint8_t)(c - 'A' + 'a') : c;
}

static bool
has_prefix_nocase(const uint8_t *s, size_t n, const char *prefix)
{
	size_t plen = strlen(prefix);
	if (n < plen)
		return false;
	for (size_t i = 0; i < plen; i++)
		if (ascii_lower(s[i]) != (uint8_t)prefix[i])
			return false;
	return true;
}

/*
 * Find the line starting at st->line_start. Lines end in CRLF or a bare LF; a CR
 * anywhere else, a control character other than HT, a line over 8 KiB or
 * a head reaching PEEK_MAX break it, at the first offending byte.
 */
static void
scan_line(const struct http_parser *p, struct line *line)
{
	size_t start = p->st->line_start;
	size_t i;

	line->start = start;
	/* Bytes scanned by an earlier call hold no terminator and no bad byte. */
	for (i = start > p->st->line_scanned ? start : p->st->line_scanned; i < p->scan_end; i++) {
		uint8_t b = p->buf[i];
		if (b == '\n') {
			line->content_end = i;
			line->next = i + 1;
			line->state = LINE_COMPLETE;
			return;
		}
		if (b == '\r') {
			if (i + 1 == p->scan_end)
				break;	/* the LF may be next */
			line->content_end = i;
			if (p->buf[i + 1] == '\n') {
				line->next = i + 2;
				line->state = LINE_COMPLETE;
				return;
			}
			line->state = LINE_BROKEN;
			line->broken_examined = i + 2;
			line->broken_why = "bare CR in request head";
			return;
		}
		const char *why = NULL;
		if (i - start == LINE_MAX_BYTES)
			why = "request head too large";
		else if (b == '\0')
			why = "NUL byte in request head";
		else if ((b < 0x20 && b != '\t') || b == 0x7f)
			why = "control character in request head";
		if (why != NULL) {
			line->content_end = i;
			line->state = LINE_BROKEN;
			line->broken_examined = i + 1;
			line->broken_why = why;
			return;
		}
	}
	line->content_end = i;
	if (p->scan_end == PEEK_MAX) {
		line->state = LINE_BROKEN;
		line->broken_examined = PEEK_MAX;
		line->broken_why = "request head too large";
	} else {
		line->state = LINE_PARTIAL;
	}
}

/*
 * host, host:port, [v6] or [v6]:port. A name is normalised; an IPv6 literal
 * is stored without brackets in its canonical RFC 5952 text; IPv4 literals
 * pass as names. The port, if present, is 0..5 digits up to 65535 (RFC 3986
 * allows an empty port). Sets p->why and returns false if invalid.
 */
static bool
parse_host(struct http_parser *p, const uint8_t *s, size_t n, char name[PEEK_NAME_MAX + 1], size_t *name_len)
{
	const uint8_t *rest;
	size_t rest_len;

	if (n > 0 && s[0] == '[') {
		const uint8_t *close = memchr(s, ']', n);
		char literal[INET6_ADDRSTRLEN];
		struct in6_addr addr;
		if (close == NULL) {
			p->why = "unterminated IPv6 literal in host";
			return false;
		}
		size_t literal_len = (size_t)(close - s) - 1;
		if (literal_len == 0 || literal_len >= sizeof(literal)) {
			p->why = "bad IPv6 literal in host";
			return false;
		}
		memcpy(literal, s + 1, literal_len);
		literal[literal_len] = '\0';
		if (inet_pton(AF_INET6, literal, &addr) != 1
		    || inet_ntop(AF_INET6, &addr, name, PEEK_NAME_MAX + 1) == NULL) {
			p->why = "bad IPv6 literal in host";
			return false;
		}
		*name_len = strlen(name);
		rest = close + 1;
		rest_len = n - (size_t)(rest - s);
	} else {
		const uint8_t *colon = memchr(s, ':', n);
		size_t raw_len = colon == NULL ? n : (size_t)(colon - s);
		if (raw_len == 0) {
			p->why = "empty host name";
			return false;
		}
		*name_len = hostname_normalize((const char *)s, raw_len, name, PEEK_NAME_MAX + 1);
		if (*name_len == 0) {
			p->why = "host is not a valid host name";
			return false;
		}
		rest = s + raw_len;
		rest_len = n - raw_len;
	}
	if (rest_len == 0)
		return true;
	if (rest[0] != ':' || rest_len > 6) {
		p->why = "bad port in host";
		return false;
	}
	unsigned long port = 0;
	for (size_t i = 1; i < rest_len; i++) {
		if (rest[i] < '0' || rest[i] > '9') {
			p->why = "bad port in host";
			return false;
		}
		port = port * 10 + (unsigned long)(rest[i] - '0');
	}
	if (port > PORT_MAX) {
		p->why = "bad port in host";
		return false;
	}
	return true;
}

static bool
is_scheme_char(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
	       || c == '+' || c == '-' || c == '.';
}

/*
 * RFC 9112 3.2.2: a target "scheme://authority..." (absolute-form) names a
 * host, which the Host header must name too (checked once the head is
 * complete). Userinfo is an error in http and https URIs (RFC 9110 4.2.4);
 * other schemes may carry it and it is skipped.
 */
static enum step
check_target(struct http_parser *p, size_t start, size_t end, size_t examined)
{
	const uint8_t *target = p->buf + start;
	size_t n = end - start;
	size_t scheme_len = 0;

	if (n == 0 || !((target[0] | 0x20) >= 'a' && (target[0] | 0x20) <= 'z'))
		return STEP_OK;	/* origin- or asterisk-form: Host decides */
	while (scheme_len < n && is_scheme_char(target[scheme_len]))
		scheme_len++;
	if (n - scheme_len < 3 || memcmp(target + scheme_len, "://", 3) != 0)
		return STEP_OK;	/* authority-form (CONNECT) or no authority: Host decides */
	bool is_http = (scheme_len == 4 && has_prefix_nocase(target, n, "http"))
		       || (scheme_len == 5 && has_prefix_nocase(target, n, "https"));
	const uint8_t *authority = target + scheme_len + 3;
	size_t authority_len = 0;
	while (scheme_len + 3 + authority_len < n) {
		uint8_t c = authority[authority_len];
		if (c == '/' || c == '?' || c == '#')
			break;
		authority_len++;
	}
	const uint8_t *at = NULL;
	for (size_t k = 0; k < authority_len; k++)
		if (authority[k] == '@')
			at = authority + k;
	if (at != NULL) {
		if (is_http)
			return bad(p, examined, "userinfo in request target");
		authority_len -= (size_t)(at + 1 - authority);
		authority = at + 1;
	}
	if (authority_len == 0)
		return bad(p, examined, "absolute-form target without a host");
	if (!parse_host(p, authority, authority_len, p->st->target_name, &p->st->target_name_len))
		return bad(p, examined, p->why);
	p->st->absolute_form = true;
	return STEP_OK;
}

/* Check the version at [i, end): "HTTP/1.0" or "HTTP/1.1", possibly still arriving. */
static enum step
check_version(struct http_parser *p, size_t i, const struct line *line)
{
	static const char expected[] = "HTTP/1.";
	size_t end = line->content_end;
	size_t k;

	for (k = 0; k < sizeof(expected) - 1 && i + k < end; k++) {
		if (p->buf[i + k] == expected[k])
			continue;
		if (k == 5 && p->buf[i + k] == '2')
			return bad(p, i + k + 1, "HTTP/2 prior knowledge is not supported");
		return bad(p, i + k + 1, "unsupported HTTP version");
	}
	if (i + k < end) {
		uint8_t minor = p->buf[i + k];
		if (minor != '0' && minor != '1')
			return bad(p, i + k + 1, "unsupported HTTP version");
		p->st->http_minor = minor - '0';
		k++;
		if (i + k < end)
			return bad(p, i + k + 1, "unsupported HTTP version");
	}
	if (line->state != LINE_COMPLETE)
		return STEP_MORE;
	if (k < sizeof(expected))
		return bad(p, line->next, "unsupported HTTP version");
	return STEP_OK;
}

/*
 * RFC 9112 3: method SP request-target SP HTTP-version, checked as far as it
 * has arrived. An incomplete line leaves in st how far it got, so that the
 * next call goes on from there instead of from the line's start.
 */
static enum step
check_request_line(struct http_parser *p, const struct line *line)
{
	struct http_progress *st = p->st;
	size_t end = line->content_end;
	bool complete = line->state == LINE_COMPLETE;
	size_t i;

	if (st->target_start == 0) {
		i = st->field_scanned > line->start ? st->field_scanned : line->start;
		while (i < end && is_tchar(p->buf[i]))
			i++;
		if (i == end) {
			if (!complete) {
				st->field_scanned = i;
				return STEP_MORE;
			}
			return bad(p, line->next, i == line->start ? "empty request line"
								   : "request line lacks a target");
		}
		if (i == line->start)
			return bad(p, i + 1, "request line does not start with a method");
		if (p->buf[i] != ' ')
			return bad(p, i + 1, "bad character in method");
		st->target_start = ++i;
		st->field_scanned = i;
	}
	size_t target_start = st->target_start;
	i = st->field_scanned;
	while (i < end && p->buf[i] > 0x20 && p->buf[i] < 0x7f)
		i++;
	st->field_scanned = i;
	if (i == end) {
		if (!complete)
			return STEP_MORE;
		return bad(p, line->next, "request line lacks an HTTP version");
	}
	if (i == target_start)
		return bad(p, i + 1, "empty request target");
	if (p->buf[i] != ' ')
		return bad(p, i + 1, "bad character in request target");
	enum step s = check_target(p, target_start, i, i + 1);
	if (s != STEP_OK)
		return s;
	return check_version(p, i + 1, line);
}

/* RFC 9112 5: field-name ":" OWS field-value OWS, checked as far as it has arrived. */
static enum step
check_header_line(struct http_parser *p, const struct line *line)
{
	struct http_progress *st = p->st;
	size_t end = line->content_end;
	size_t i = line->start;

	if (i < end && is_ows(p->buf[i]))
		return bad(p, i + 1, "obsolete header line folding");
	if (st->field_scanned > i)
		i = st->field_scanned;
	while (i < end && is_tchar(p->buf[i]))
		i++;
	st->field_scanned = i;
	if (i == end) {
		if (line->state != LINE_COMPLETE)
			return STEP_MORE;
		return bad(p, line->next, "header line without a colon");
	}
	if (is_ows(p->buf[i]))
		return bad(p, i + 1, "whitespace before colon in header");
	if (p->buf[i] != ':' || i == line->start)
		return bad(p, i + 1, "bad character in header name");

	bool is_host = i - line->start == 4 && has_prefix_nocase(p->buf + line->start, 4, "host");
	if (is_host && st->host_headers > 0)
		return bad(p, i + 1, "several Host headers");
	if (line->state != LINE_COMPLETE)
		return STEP_MORE;
	if (!is_host)
		return STEP_OK;

	size_t value = i + 1;
	while (value < end && is_ows(p->buf[value]))
		value++;
	while (end > value && is_ows(p->buf[end - 1]))
		end--;
	if (value == end) {
		/* RFC 9112 3.2: allowed when the target has no authority. */
		st->host_headers++;
		st->host_empty = true;
		return STEP_OK;
	}
	if (!parse_host(p, p->buf + value, end - value, st->host_name, &st->host_name_len))
		return bad(p, line->next, p->why);
	st->host_headers++;
	return STEP_OK;
}

/* Combine a line's own verdict with the syntax check of its content: the earlier fault wins. */
static enum step
check_line(struct http_parser *p, const struct line *line,
	   enum step (*check)(struct http_parser *, const struct line *))
{
	struct line content = *line;

	/* The syntax checker sees a broken line as one still arriving, so it
	 * reports any fault that lies before the byte that broke the line. */
	if (line->state == LINE_BROKEN)
		content.state = LINE_PARTIAL;
	enum step s = check(p, &content);
	if (s == STEP_BAD)
		return s;
	if (line->state == LINE_BROKEN)
		return bad(p, line->broken_examined, line->broken_why);
	return s;
}

/* The line at st->line_start is accepted whole: the next one starts afresh. */
static void
next_line(struct http_progress *st, size_t next)
{
	st->line_start = next;
	st->line_scanned = next;
	st->field_scanned = 0;
	st->target_start = 0;
}

/* Check the head line by line from st->line_start; OK once its empty last line is in. */
static enum step
parse_head(struct http_parser *p, size_t *head_end)
{
	struct http_progress *st = p->st;
	struct line line;
	enum step s;

	/* A TLS record header (content type 22) would otherwise read as a control character. */
	if (p->len > 0 && p->buf[0] == 0x16)
		return bad(p, 1, "TLS handshake on a plain HTTP listener");
	for (;;) {
		scan_line(p, &line);
		if (line.state == LINE_PARTIAL)
			st->line_scanned = line.content_end;
		bool empty = line.content_end == line.start;
		if (st->lines == 0) {
			/* RFC 9112 2.2: ignore one empty line before the request line. */
			if (line.start == 0 && line.state == LINE_COMPLETE && empty) {
				next_line(st, line.next);
				continue;
			}
			s = check_line(p, &line, check_request_line);
		} else {
			if (line.state == LINE_COMPLETE && empty) {
				*head_end = line.next;
				return STEP_OK;
			}
			if (line.state == LINE_PARTIAL && empty)
				return STEP_MORE;
			if (st->lines - 1 == HEADER_LINES_MAX) {
				/* An empty line here is broken, so its first byte may not exist. */
				size_t examined = !empty ? line.start + 1 : line.broken_examined;
				return bad(p, examined, "request head too large");
			}
			s = check_line(p, &line, check_header_line);
		}
		if (s != STEP_OK)
			return s;
		st->lines++;
		next_line(st, line.next);
	}
}

/* The whole head is in and well-formed: which host does it name? */
static enum peek_status
decide(const struct http_progress *st, size_t head_end, struct peek_result *out)
{
	if (st->http_minor == 1 && st->host_headers == 0)
		return peek_invalid(out, head_end, "HTTP/1.1 request without Host");
	const char *name = NULL;
	if (st->absolute_form) {
		/* The server may read either: they must agree (ports aside). */
		if (st->host_headers == 1
		    && (st->host_empty || strcmp(st->host_name, st->target_name) != 0))
			return peek_invalid(out, head_end, "Host does not match the request target");
		name = st->target_name;
	} else if (st->host_headers == 1 && !st->host_empty) {
		name = st->host_name;
	}
	peek_result_clear(out);
	out->consumed = head_end;
	if (name == NULL) {
		out->why = st->host_headers == 1 ? "empty Host header" : "HTTP/1.0 request without Host";
		return PEEK_NO_NAME;
	}
	out->name_len = strlen(name);
	memcpy(out->name, name, out->name_len + 1);
	return PEEK_FOUND;
}

enum peek_status
http_host_parse_resume(const uint8_t *buf, size_t len, struct http_progress *progress,
		       struct peek_result *out)
{
	static const uint8_t nothing[1];
	struct http_progress work = *progress;
	struct http_parser p = { .buf = buf != NULL ? buf : nothing, .len = buf != NULL ? len : 0,
				 .st = &work };
	size_t head_end = 0;

	peek_result_clear(out);
	p.scan_end = p.len < PEEK_MAX ? p.len : PEEK_MAX;
	if (work.line_start > p.scan_end)
		work = (struct http_progress){ 0 };	/* not from a prefix of this input: start over */
	enum step s = parse_head(&p, &head_end);
	if (s == STEP_OK)
		return decide(&work, head_end, out);
	if (s == STEP_BAD)
		return peek_invalid(out, p.examined, p.why);
	*progress = work;	/* only a wait moves on: a verdict stays reproducible */
	return peek_need_more(out, p.len);
}

enum peek_status
http_host_parse(const uint8_t *buf, size_t len, struct peek_result *out)
{
	struct http_progress progress = { 0 };

	return http_host_parse_resume(buf, len, &progress, out);
}
