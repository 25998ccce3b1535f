/* tls_hello.h - pure parser for a TLS ClientHello: SNI and ALPN. */
#ifndef HANDOFF_TLS_HELLO_H
#define HANDOFF_TLS_HELLO_H

#include "peek.h"

/*
 * Parse the first bytes a client sent on a TLS connection. The ClientHello
 * handshake message may span several TLS records and any number of TCP
 * segments; buf always holds the stream from its first byte. Records must be
 * handshake records (any SSL 3/TLS record version) of 1..16384 bytes, and
 * the hello must end within PEEK_MAX bytes of stream; bytes after the hello
 * are ignored. Returns NEED_MORE while the hello is incomplete, FOUND with
 * out->name set, NO_NAME for a well-formed hello without server_name,
 * INVALID otherwise (including any malformed or unexpected server_name: a
 * bad name never degrades to "no name"). out->alpn receives the ALPN list
 * when there is one. No I/O, no allocation; safe on any input of any length.
 */
enum peek_status tls_hello_parse(const uint8_t *buf, size_t len, struct peek_result *out);

#endif
