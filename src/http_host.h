/* http_host.h - pure parser for the Host of an HTTP/1.x request head. */
#ifndef HANDOFF_HTTP_HOST_H
#define HANDOFF_HTTP_HOST_H

#include "peek.h"

/*
 * Parse the start of an HTTP/1.0 or HTTP/1.1 request. FOUND when the host
 * is known: from an http or https absolute-form request target
 * ("GET http://h:80/ ...", decided at the end of the request line), else
 * from the Host header (case-insensitive name, port stripped, optional
 * whitespace trimmed), decided once the end of the head (CRLF CRLF or LF LF)
 * is seen. The name is normalised with hostname_normalize; an IPv6 literal
 * "[v6]" yields its canonical text without brackets ("::1"). HTTP/1.0
 * without Host, or an empty Host, is NO_NAME; HTTP/1.1 without Host,
 * several Host headers, a bad request line, header or host, a line over
 * 8 KiB, over 100 header lines or a head longer than PEEK_MAX is INVALID.
 * No I/O, no allocation; safe on any input of any length.
 */
enum peek_status http_host_parse(const uint8_t *buf, size_t len, struct peek_result *out);

#endif
