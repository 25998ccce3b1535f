/* control.c - the control socket: `handoff reload` and `handoff upgrade` ask the running daemon and get its answer. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "control.h"
#include "handover.h"
#include "log.h"
#include "registry.h"
#include "reload.h"
#include "server.h"

#define CONTROL_MAX_CLIENTS	8	/* requests handled at once */
#define CONTROL_REQUEST_MS	10000	/* time a client has to send its request */
#define CONTROL_MESSAGE_MAX	2048	/* one request or answer */
#define CLIENT_RELOAD_WAIT_MS	120000	/* a reload resolves route names */
#define CLIENT_UPGRADE_WAIT_MS	180000	/* a new daemon starts and scans */

struct control_client_conn {
	struct loop_io io;
	struct loop_timer deadline;
	bool in_use;
	bool waits_for_upgrade;
};

static struct loop_io listen_io = { .fd = -1 };
static int adopted_fd = -1;
static struct control_client_conn clients[CONTROL_MAX_CLIENTS];
static char socket_path[PATH_MAX];
static char pid_path[PATH_MAX];

void
control_adopt(int fd)
{
	if (adopted_fd >= 0)
		close(adopted_fd);
	adopted_fd = fd;
}

int
control_socket(void)
{
	return listen_io.fd;
}

static void
client_close(struct control_client_conn *cc)
{
	if (!cc->in_use)
		return;
	loop_timer_cancel(server.loop, &cc->deadline);
	loop_io_del(server.loop, &cc->io);
	close(cc->io.fd);
	cc->io.fd = -1;
	cc->in_use = false;
	cc->waits_for_upgrade = false;
}

static void
client_answer(struct control_client_conn *cc, bool ok, const char *text)
{
	char msg[CONTROL_MESSAGE_MAX];
	int n = snprintf(msg, sizeof(msg), "%s %s", ok ? "ok" : "error", text);
	if (n > 0)
		(void)send(cc->io.fd, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1,
			   MSG_DONTWAIT | MSG_NOSIGNAL);
	client_close(cc);
}

void
control_upgrade_done(bool ok, const char *text)
{
	for (size_t i = 0; i < CONTROL_MAX_CLIENTS; i++)
		if (clients[i].in_use && clients[i].waits_for_upgrade)
			client_answer(&clients[i], ok, text);
}

static void
on_client_deadline(struct loop_timer *t)
{
	struct control_client_conn *cc = container_of(t, struct control_client_conn, deadline);
	if (!cc->waits_for_upgrade)
		client_close(cc);
}

static void
on_client_request(struct loop_io *io, uint32_t revents)
{
	struct control_client_conn *cc = container_of(io, struct control_client_conn, io);
	char req[64], answer[CONTROL_MESSAGE_MAX];
	ssize_t n = recv(io->fd, req, sizeof(req) - 1, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR) && !(revents & (EPOLLHUP | EPOLLERR)))
		return;
	if (n <= 0 || cc->waits_for_upgrade) {
		client_close(cc);	/* gone, or a second request: not part of the protocol */
		return;
	}
	req[n] = '\0';
	if (strcmp(req, "reload") == 0) {
		int rc = daemon_reload(answer, sizeof(answer));
		client_answer(cc, rc == 0, answer);
	} else if (strcmp(req, "upgrade") == 0) {
		if (upgrade_start(answer, sizeof(answer)) < 0) {
			client_answer(cc, false, answer);
			return;
		}
		cc->waits_for_upgrade = true;	/* answered by control_upgrade_done */
		loop_timer_cancel(server.loop, &cc->deadline);
	} else {
		client_answer(cc, false, "unknown request (known: reload, upgrade)");
	}
}

static void
on_control_accept(struct loop_io *io, uint32_t revents)
{
	(void)revents;
	for (int rounds = 0; rounds < CONTROL_MAX_CLIENTS; rounds++) {
		int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		/* The file mode already keeps others out; the credentials say so
		 * again, whatever a later chmod does. */
		struct ucred cred;
		socklen_t len = sizeof(cred);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
		    (cred.uid != 0 && cred.uid != geteuid())) {
			const char no[] = "error only root or the daemon's user may control it";
			(void)send(fd, no, sizeof(no) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
			close(fd);
			continue;
		}
		struct control_client_conn *cc = NULL;
		for (size_t i = 0; i < CONTROL_MAX_CLIENTS && cc == NULL; i++)
			if (!clients[i].in_use)
				cc = &clients[i];
		if (cc == NULL) {
			const char busy[] = "error busy: too many control requests at once; try again";
			(void)send(fd, busy, sizeof(busy) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
			close(fd);
			continue;
		}
		cc->in_use = true;
		cc->io.fd = fd;
		cc->io.cb = on_client_request;
		cc->deadline.cb = on_client_deadline;
		if (loop_io_add(server.loop, &cc->io, EPOLLIN) < 0) {
			close(fd);
			cc->in_use = false;
			continue;
		}
		loop_timer_arm(server.loop, &cc->deadline, CONTROL_REQUEST_MS);
	}
}

static int
path_in_rundir(char *buf, size_t size, const char *name)
{
	int n = snprintf(buf, size, "%s/%s", server.cfg.runtime_dir, name);
	return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* Write our pid to RUNDIR/handoff.pid in one rename. */
static int
write_pid_file(char *err, size_t errlen)
{
	char tmp[PATH_MAX + 16];
	snprintf(tmp, sizeof(tmp), "%s.%ld", pid_path, (long)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0) {
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		return -1;
	}
	char text[32];
	int n = snprintf(text, sizeof(text), "%ld\n", (long)getpid());
	bool ok = write(fd, text, (size_t)n) == n;
	if (close(fd) < 0 || !ok || rename(tmp, pid_path) < 0) {
		snprintf(err, errlen, "cannot write %s: %s", pid_path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

static long
read_pid_file(const char *path)
{
	char text[32] = "";
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	text[n] = '\0';
	return strtol(text, NULL, 10);
}

static int
connect_control(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sun.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(sun.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

static int
bind_control(char *err, size_t errlen)
{
	int probe = connect_control(socket_path);
	if (probe >= 0) {
		close(probe);
		snprintf(err, errlen, "another handoff daemon (pid %ld) serves the runtime directory %s: stop it, "
			 "or replace it with 'handoff upgrade'", read_pid_file(pid_path), server.cfg.runtime_dir);
		return -1;
	}
	if (errno == ECONNREFUSED) {
		log_info("removing %s: the daemon that made it is gone", socket_path);
		unlink(socket_path);
	}
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	if (strlen(socket_path) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "%s: path too long for a socket (set runtime-dir to a shorter path)", socket_path);
		return -1;
	}
	strcpy(sun.sun_path, socket_path);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	mode_t old_mask = umask(077);	/* created 0600: never a moment open to others */
	int rc = fd < 0 ? -1 : bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old_mask);
	if (rc < 0 || listen(fd, CONTROL_MAX_CLIENTS) < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", socket_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	/* Bound by root before it becomes `user`: the socket is the service
	 * user's, like the directory, so that `handoff reload` works as that
	 * user too. */
	uid_t owner = config_service_uid(&server.cfg);
	if (geteuid() == 0 && owner != 0 &&
	    lchown(socket_path, owner, config_service_gid(&server.cfg)) < 0) {
		snprintf(err, errlen, "cannot give %s to uid %lu: %s", socket_path, (unsigned long)owner,
			 strerror(errno));
		close(fd);
		unlink(socket_path);
		return -1;
	}
	return fd;
}

int
control_open(char *err, size_t errlen)
{
	if (path_in_rundir(socket_path, sizeof(socket_path), CONTROL_SOCKET_NAME) < 0 ||
	    path_in_rundir(pid_path, sizeof(pid_path), CONTROL_PID_NAME) < 0) {
		snprintf(err, errlen, "runtime directory path too long: %s", server.cfg.runtime_dir);
		return -1;
	}
	/* The directory first: nothing else in it is touched before this
	 * daemon knows it is the only one there. */
	if (rundir_make(server.cfg.runtime_dir, 0755, err, errlen) < 0)
		return -1;
	int fd = adopted_fd;
	adopted_fd = -1;
	if (fd >= 0) {
		int flags = fcntl(fd, F_GETFL);
		if (flags >= 0)
			fcntl(fd, F_SETFL, flags | O_NONBLOCK);
		log_info("control socket %s: adopted from the old daemon", socket_path);
	} else if ((fd = bind_control(err, errlen)) < 0) {
		return -1;
	}
	listen_io.fd = fd;
	listen_io.cb = on_control_accept;
	if (loop_io_add(server.loop, &listen_io, EPOLLIN) < 0) {
		snprintf(err, errlen, "epoll: %s", strerror(errno));
		close(fd);
		listen_io.fd = -1;
		return -1;
	}
	return 0;
}

int
control_write_pid(char *err, size_t errlen)
{
	return write_pid_file(err, errlen);
}

void
control_close(bool handed_over)
{
	for (size_t i = 0; i < CONTROL_MAX_CLIENTS; i++)
		client_close(&clients[i]);
	if (adopted_fd >= 0) {
		close(adopted_fd);
		adopted_fd = -1;
	}
	if (listen_io.fd < 0)
		return;
	loop_io_del(server.loop, &listen_io);
	close(listen_io.fd);
	listen_io.fd = -1;
	if (!handed_over && read_pid_file(pid_path) == (long)getpid()) {
		unlink(socket_path);
		unlink(pid_path);
	}
}

/* The client side: `handoff reload` and `handoff upgrade`. */
int
control_client(const char *command, int argc, char **argv)
{
	const char *path = NULL;
	for (int i = 0; i < argc; i++) {
		if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
			path = argv[++i];
		else if (strncmp(argv[i], "--config=", 9) == 0)
			path = argv[i] + 9;
		else if (strncmp(argv[i], "-c", 2) == 0 && argv[i][2] != '\0')
			path = argv[i] + 2;
		else {
			fprintf(stderr, "handoff %s: unexpected argument '%s' (usage: handoff %s [-c FILE])\n",
				command, argv[i], command);
			return 2;
		}
	}
	/* The file tells where the daemon's runtime directory is; a file the
	 * daemon would refuse is reported here without asking it. */
	struct config cfg;
	char err[1024];
	int rc = path ? config_load_file(path, &cfg, err, sizeof(err))
		      : config_load_string(config_builtin, "(built-in)", &cfg, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "%s\nhandoff %s: not done; the running daemon keeps its configuration\n", err, command);
		return 1;
	}
	char sock[PATH_MAX + sizeof(CONTROL_SOCKET_NAME) + 1];
	snprintf(sock, sizeof(sock), "%s/%s", cfg.runtime_dir, CONTROL_SOCKET_NAME);
	config_free(&cfg);
	int fd = connect_control(sock);
	if (fd < 0) {
		fprintf(stderr, "handoff %s: no daemon answers on %s: %s%s\n", command, sock, strerror(errno),
			errno == ENOENT || errno == ECONNREFUSED ? " (is 'handoff serve' running with this configuration?)" :
			errno == EACCES ? " (run as root or as the daemon's user)" : "");
		return 1;
	}
	if (send(fd, command, strlen(command), MSG_NOSIGNAL) < 0) {
		fprintf(stderr, "handoff %s: cannot ask the daemon: %s\n", command, strerror(errno));
		close(fd);
		return 1;
	}
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	int wait_ms = strcmp(command, "upgrade") == 0 ? CLIENT_UPGRADE_WAIT_MS : CLIENT_RELOAD_WAIT_MS;
	char answer[CONTROL_MESSAGE_MAX + 1];
	ssize_t n = -1;
	int ready;
	while ((ready = poll(&pfd, 1, wait_ms)) < 0 && errno == EINTR)
		;
	if (ready > 0)
		n = recv(fd, answer, sizeof(answer) - 1, 0);
	close(fd);
	if (n <= 0) {
		fprintf(stderr, "handoff %s: %s\n", command,
			ready == 0 ? "no answer from the daemon in time; see its log" :
				     "the daemon closed the control connection without an answer; see its log");
		return 1;
	}
	answer[n] = '\0';
	if (strncmp(answer, "ok ", 3) == 0) {
		printf("%s\n", answer + 3);
		return 0;
	}
	fprintf(stderr, "%s\n", strncmp(answer, "error ", 6) == 0 ? answer + 6 : answer);
	return 1;
}
