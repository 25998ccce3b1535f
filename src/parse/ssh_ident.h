/* ssh_ident.h - pure parser for the identification line an SSH client sends first. */
#ifndef HANDOFF_SSH_IDENT_H
#define HANDOFF_SSH_IDENT_H

#include "peek.h"

/* RFC 4253 4.2: the identification line, CR LF included, is at most 255 bytes. */
#define SSH_IDENT_MAX 255

/* Where the parts of a complete identification line lie in the input. */
struct ssh_ident {
	size_t line_len;	/* FOUND: the whole line, its CR LF (or LF) included */
	size_t software_off;	/* "OpenSSH_9.2p1" in "SSH-2.0-OpenSSH_9.2p1 Debian" */
	size_t software_len;
	size_t comments_off;	/* "Debian"; both 0 when there are no comments */
	size_t comments_len;
	size_t consumed;	/* bytes the verdict depends on, as in peek.h */
	const char *why;	/* static reason for INVALID, else NULL */
};

/*
 * Parse the first bytes a client sent on what may be an SSH connection:
 * "SSH-2.0-" then the software version (printable US-ASCII without blanks,
 * at least one byte; a '-' is tolerated, as JSch and others send one), then
 * optionally a space and comments (printable US-ASCII and spaces), then
 * CR LF or a bare LF (which OpenSSH also accepts). Returns NEED_MORE while
 * the bytes so far can still begin such a line, FOUND once the line is
 * complete (bytes after it are ignored), INVALID for anything else: another
 * protocol version ("SSH-1.5-" included), a control byte, a CR without LF,
 * or no line end within SSH_IDENT_MAX bytes. Never NO_NAME. No I/O, no
 * allocation; safe on any input of any length.
 */
enum peek_status ssh_ident_parse(const uint8_t *buf, size_t len, struct ssh_ident *out);

#endif
