/* log.c - daemon diagnostics to stderr and the access log, one escaped write(2) per line. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* Where access lines go: STDERR_FILENO, -1 when "off", or log_fd. The
 * accepting threads write lines without the daemon lock, so the number
 * they read must never name anything else: once the log has a
 * descriptor of its own (log_fd) that number stays the log's until the
 * daemon stops, and a reopen or a change of file replaces what it refers
 * to in place (dup3), which is atomic. */
static _Atomic int accesslog_fd = STDERR_FILENO;
static int log_fd = -1;				/* our descriptor for the log file */
static char accesslog_path[4096];		/* "" unless logging to a file */

/* Make log_fd refer to what fd does (fd is consumed). Returns 0 or -1. */
static int
point_log_fd_at(int fd)
{
	if (log_fd < 0) {
		log_fd = fd;
		return 0;
	}
	int rc = dup3(fd, log_fd, O_CLOEXEC);
	close(fd);
	return rc < 0 ? -1 : 0;
}

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
	if (strcmp(spec, "stderr") == 0 || strcmp(spec, "off") == 0) {
		bool off = strcmp(spec, "off") == 0;
		/* A line written late through log_fd goes where the log goes now. */
		int fd = log_fd >= 0 ? (off ? open("/dev/null", O_WRONLY | O_CLOEXEC)
					    : fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 0)) : -1;
		if (fd >= 0)
			point_log_fd_at(fd);
		atomic_store(&accesslog_fd, off ? -1 : STDERR_FILENO);
		accesslog_path[0] = '\0';
		return 0;
	}
	int fd = open(spec, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
	if (fd < 0 || point_log_fd_at(fd) < 0)
		return -1;
	snprintf(accesslog_path, sizeof(accesslog_path), "%s", spec);
	atomic_store(&accesslog_fd, log_fd);
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
	return point_log_fd_at(fd);
}

bool
accesslog_enabled(void)
{
	return atomic_load_explicit(&accesslog_fd, memory_order_relaxed) >= 0;
}

void
accesslog_close(void)
{
	/* At the end, with no other thread left. */
	atomic_store(&accesslog_fd, STDERR_FILENO);
	if (log_fd >= 0)
		close(log_fd);
	log_fd = -1;
	accesslog_path[0] = '\0';
}

void
accesslog_write(const char *fmt, ...)
{
	int fd = atomic_load_explicit(&accesslog_fd, memory_order_relaxed);
	if (fd < 0)
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
	write_line(fd, line, len);
}
