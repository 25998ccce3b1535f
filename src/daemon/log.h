/* log.h - daemon diagnostics (stderr) and the per-connection access log. */
#ifndef HANDOFF_LOG_H
#define HANDOFF_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#define LOG_PRINTF(a, b) __attribute__((format(printf, a, b)))

/*
 * Every line either log writes is escaped here, whatever its arguments
 * carry (file names from the world-writable upstreams directory, names
 * files, client-sent names): a backslash is doubled and any byte outside
 * printable ASCII (controls, DEL, every byte >= 0x80) becomes \xHH, so
 * one call is exactly one line and no argument can forge another.
 */

/* Escape len bytes of in into out (capacity cap >= 1, NUL-terminated,
 * truncated before an escape that does not fit); returns the length. */
size_t log_escape(const char *in, size_t len, char *out, size_t cap);

/* Diagnostics go to stderr as "handoff[PID]: message". */
void log_info(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_warn(const char *fmt, ...) LOG_PRINTF(1, 2);	/* appends ": strerror(errno)" */
void log_warnx(const char *fmt, ...) LOG_PRINTF(1, 2);
_Noreturn void fatal(const char *fmt, ...) LOG_PRINTF(1, 2);
_Noreturn void fatalx(const char *fmt, ...) LOG_PRINTF(1, 2);

/*
 * The access log: "stderr", "off" or a file path (opened O_APPEND, reopened
 * on SIGHUP for log rotation). Returns 0, or -1 with errno set.
 */
int accesslog_open(const char *spec);
int accesslog_reopen(void);
void accesslog_close(void);
/* Whether access lines go anywhere (false for "access-log off"). */
bool accesslog_enabled(void);
/* Write one line (a timestamp is prepended, a newline appended). */
void accesslog_write(const char *fmt, ...) LOG_PRINTF(1, 2);

#endif
