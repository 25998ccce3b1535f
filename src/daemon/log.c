/* log.c - daemon diagnostics to stderr and the access log, one escaped write(2) per line. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static int accesslog_fd = STDERR_FILENO;	/* -1 when "off" */
static char accesslog_path[4096];		/* "" unless logging to a file */

size_t
log_escape(const char *in, size_t len, char *out, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (cap == 0)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char b = (unsigned char)in[i];
		char esc[4];
		size_t n;
		if (b == '\\') {
			esc[0] = esc[1] = '\\';
			n = 2;
		} else if (b < 0x20 || b > 0x7e) {
			esc[0] = '\\';
			esc[1] = 'x';
			esc[2] = hex[b >> 4];
			esc[3] = hex[b & 0xf];
			n = 4;
		} else {
			esc[0] = (char)b;
			n = 1;
		}
		if (o + n >= cap)
			break;	/* never half an escape */
		memcpy(out + o, esc, n);
		o += n;
	}
	out[o] = '\0';
	return o;
}

/* One write per line so that lines from concurrent writers never interleave. */
static void
write_line(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return;	/* nowhere left to report a logging failure */
		}
		buf += n;
		len -= (size_t)n;
	}
}

/* The formatted text, truncated to its buffer, as its escaped form after prefix. */
static size_t
format_escaped(char *line, size_t size, size_t off, const char *fmt, va_list ap, const char *suffix)
{
	char raw[2048];
	int n = vsnprintf(raw, sizeof(raw), fmt, ap);
	size_t len = n < 0 ? 0 : (size_t)n;
	if (len > sizeof(raw) - 1)
		len = sizeof(raw) - 1;
	if (suffix != NULL) {
		int m = snprintf(raw + len, sizeof(raw) - len, ": %s", suffix);
		len += m < 0 ? 0 : (size_t)m;
		if (len > sizeof(raw) - 1)
			len = sizeof(raw) - 1;
	}
	/* Leave room for the newline. */
	return off + log_escape(raw, len, line + off, size - off - 1);
}

static void
vlog(const char *fmt, va_list ap, const char *suffix)
{
	char line[4096];
	int off = snprintf(line, sizeof(line), "handoff[%ld]: ", (long)getpid());
	size_t len = format_escaped(line, sizeof(line), off < 0 ? 0 : (size_t)off, fmt, ap, suffix);
	line[len++] = '\n';
	write_line(STDERR_FILENO, line, len);
}

void
log_info(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(fmt, ap, NULL);
	va_end(ap);
}

void
log_warn(const char *fmt, ...)
{
	const char *err = strerror(errno);
	va_list ap;
	va_start(ap, fmt);
	vlog(fmt, ap, err);
	va_end(ap);
}

void
log_warnx(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(fmt, ap, NULL);
	va_end(ap);
}

_Noreturn void
fatal(const char *fmt, ...)
{
	const char *err = strerror(errno);
	va_list ap;
	va_start(ap, fmt);
	vlog(fmt, ap, err);
	va_end(ap);
	exit(1);
}

_Noreturn void
fatalx(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(fmt, ap, NULL);
	va_end(ap);
	exit(1);
}

int
accesslog_open(const char *spec)
{
	accesslog_close();
	if (strcmp(spec, "stderr") == 0) {
		accesslog_fd = STDERR_FILENO;
		return 0;
	}
	if (strcmp(spec, "off") == 0) {
		accesslog_fd = -1;
		return 0;
	}
	int fd = open(spec, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
	if (fd < 0)
		return -1;
	snprintf(accesslog_path, sizeof(accesslog_path), "%s", spec);
	accesslog_fd = fd;
	return 0;
}

int
accesslog_reopen(void)
{
	if (accesslog_path[0] == '\0')
		return 0;
	int fd = open(accesslog_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
	if (fd < 0)
		return -1;	/* keep writing to the old file rather than losing lines */
	close(accesslog_fd);
	accesslog_fd = fd;
	return 0;
}

bool
accesslog_enabled(void)
{
	return accesslog_fd >= 0;
}

void
accesslog_close(void)
{
	if (accesslog_fd > STDERR_FILENO)
		close(accesslog_fd);
	accesslog_fd = STDERR_FILENO;
	accesslog_path[0] = '\0';
}

void
accesslog_write(const char *fmt, ...)
{
	if (accesslog_fd < 0)
		return;
	char line[4096];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t off = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	off += (size_t)snprintf(line + off, sizeof(line) - off, ".%06ldZ ", ts.tv_nsec / 1000);
	va_list ap;
	va_start(ap, fmt);
	size_t len = format_escaped(line, sizeof(line), off, fmt, ap, NULL);
	va_end(ap);
	line[len++] = '\n';
	write_line(accesslog_fd, line, len);
}
