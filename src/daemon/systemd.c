/* systemd.c - socket activation (LISTEN_FDS) and readiness notification (NOTIFY_SOCKET), written out by hand. */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "listener.h"
#include "log.h"
#include "systemd.h"

/* Both protocols are a few lines each; libsystemd would add a library to
 * a daemon that links nothing but libc. */

/* A decimal in [min, max], the whole string. */
static bool
parse_number(const char *s, long min, long max, long *out)
{
	if (s == NULL || *s < '0' || *s > '9')
		return false;
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* The name of the i-th passed socket from LISTEN_FDNAMES ("a:b:c"), or ""
 * when the list is absent or shorter. */
static void
fd_name(const char *names, long i, char *buf, size_t bufsize)
{
	buf[0] = '\0';
	for (long k = 0; names != NULL && k < i; k++) {
		names = strchr(names, ':');
		if (names != NULL)
			names++;
	}
	if (names == NULL)
		return;
	size_t len = strcspn(names, ":");
	if (len >= bufsize)
		len = bufsize - 1;
	memcpy(buf, names, len);
	buf[len] = '\0';
}

int
activation_adopt_listeners(char *err, size_t errlen)
{
	const char *pid_text = getenv("LISTEN_PID");
	const char *fds_text = getenv("LISTEN_FDS");
	long pid, n_fds;
	int rc = 0;
	if (pid_text == NULL && fds_text == NULL)
		return 0;
	/* Meant for another process (a parent that was activated and did not
	 * clear them): not ours to take, and not ours to close. */
	if (!parse_number(pid_text, 1, INT32_MAX, &pid) || pid != (long)getpid()) {
		log_info("socket activation: LISTEN_PID is %s, not this process: passed sockets ignored",
			 pid_text != NULL ? pid_text : "unset");
		goto done;
	}
	if (!parse_number(fds_text, 0, ACTIVATION_FDS_MAX, &n_fds)) {
		snprintf(err, errlen, "socket activation: LISTEN_FDS='%s' is not a count of 0 to %d sockets",
			 fds_text != NULL ? fds_text : "", ACTIVATION_FDS_MAX);
		rc = -1;
		goto done;
	}
	/* Copied: unsetenv below would free the environment's string. */
	char *names = getenv("LISTEN_FDNAMES") != NULL ? strdup(getenv("LISTEN_FDNAMES")) : NULL;
	long i;
	for (i = 0; i < n_fds; i++) {
		char name[256], origin[300];
		fd_name(names, i, name, sizeof(name));
		snprintf(origin, sizeof(origin), "socket '%s' from systemd",
			 name[0] != '\0' ? name : "unnamed");
		if (listener_adopt(ACTIVATION_FD_START + (int)i, origin, ADOPT_UNNAMED_FAILS, err, errlen) < 0)
			break;
		rc++;
	}
	free(names);
	if (i < n_fds) {
		/* The one refused and every one after it: the daemon stops. */
		for (; i < n_fds; i++)
			close(ACTIVATION_FD_START + (int)i);
		rc = -1;
	}
done:
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return rc;
}

static int notify_fd = -1;
static struct sockaddr_un notify_addr;
static socklen_t notify_addrlen;

void
notify_init(void)
{
	const char *where = getenv("NOTIFY_SOCKET");
	if (notify_fd >= 0 || where == NULL || where[0] == '\0')
		return;
	size_t len = strlen(where);
	if ((where[0] != '/' && where[0] != '@') || len >= sizeof(notify_addr.sun_path)) {
		log_warnx("NOTIFY_SOCKET='%s' is neither an absolute path nor an @abstract name that fits; "
			  "not notifying the service manager", where);
		return;
	}
	memset(&notify_addr, 0, sizeof(notify_addr));
	notify_addr.sun_family = AF_UNIX;
	memcpy(notify_addr.sun_path, where, len);
	if (where[0] == '@')
		notify_addr.sun_path[0] = '\0';	/* abstract: the length, not a NUL, ends the name */
	notify_addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (where[0] == '/'));
	notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (notify_fd < 0)
		log_warn("cannot open a socket to notify the service manager");
}

/* One datagram, whole or not at all; the manager reads it in one go. */
static void
notify_send(const char *message)
{
	if (notify_fd < 0)
		return;
	if (sendto(notify_fd, message, strlen(message), MSG_NOSIGNAL | MSG_DONTWAIT,
		   (const struct sockaddr *)&notify_addr, notify_addrlen) < 0)
		log_warn("cannot notify the service manager (%.40s...)", message);
}

/* STATUS= ends at the line's end: a status never carries a newline. */
static void
status_line(const char *status, char *buf, size_t bufsize)
{
	snprintf(buf, bufsize, "STATUS=%s", status);
	buf[strcspn(buf, "\n")] = '\0';
}

void
notify_ready(const char *status)
{
	char message[600], line[512];
	status_line(status, line, sizeof(line));
	snprintf(message, sizeof(message), "READY=1\nMAINPID=%ld\n%s", (long)getpid(), line);
	notify_send(message);
}

void
notify_reloading(void)
{
	/* MONOTONIC_USEC lets a Type=notify-reload manager match the READY=1
	 * that ends this reload; plain Type=notify ignores it. */
	struct timespec ts;
	char message[128];
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(message, sizeof(message), "RELOADING=1\nMONOTONIC_USEC=%llu",
		 (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000ull);
	notify_send(message);
}

void
notify_stopping(void)
{
	notify_send("STOPPING=1");
}

void
notify_status(const char *status)
{
	char line[512];
	status_line(status, line, sizeof(line));
	notify_send(line);
}

void
notify_close(void)
{
	if (notify_fd >= 0)
		close(notify_fd);
	notify_fd = -1;
}
