/* handover.c - binary upgrade: pass the listening sockets to a re-executed daemon over SCM_RIGHTS, then drain. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "admin.h"
#include "conn.h"
#include "control.h"
#include "handover.h"
#include "listener.h"
#include "log.h"
#include "server.h"
#include "systemd.h"

#define UPGRADE_READY_MS	120000	/* the new daemon has this long to say ready */
#define HANDOVER_RECV_MS	30000	/* the new daemon waits this long for each message */
#define HANDOVER_MAX_MESSAGES	(64 + 3)	/* listeners, the control and admin sockets, the end */
#define HANDOVER_MSG_MAX	1280	/* "listener [ADDRESS]:PORT", or an error with its file and line */
#define DRAIN_TICK_MS		100	/* handed over: how often to look for the end of admin requests */
#define HANDOVER_FDS_MAX	4	/* room for more than the one expected, to close extras */

static char **saved_argv;

/* Old daemon: the upgrade under way. */
static struct {
	struct loop_io io;		/* our end of the channel, while waiting for the answer */
	struct loop_timer deadline;
	struct loop_timer drain_tick;	/* handed over: wakes the loop to check the admin side */
	bool running;
	bool handed_over;
} old_side = { .io = { .fd = -1 } };

/* New daemon: the channel from the old one, -1 if not started by an upgrade. */
static int channel = -1;

void
handover_remember_argv(char **argv)
{
	saved_argv = argv;
}

bool
upgrade_handed_over(void)
{
	return old_side.handed_over;
}

bool
upgrade_drained(void)
{
	/* Admin requests it accepted before handing over are answered too:
	 * their connections close within the admin endpoint's idle timeout. */
	if (!old_side.handed_over || conns_live() > 0 || admin_open_connections() > 0)
		return false;
	loop_timer_cancel(server.loop, &old_side.drain_tick);
	return true;
}

/* While handed over: the admin thread's connections end without an event
 * in this loop, so look again now and then (after_batch asks). */
static void
on_drain_tick(struct loop_timer *t)
{
	loop_timer_arm(server.loop, t, DRAIN_TICK_MS);
}

/* One message, with fd (or -1) attached. */
static int
send_message(int fd, const char *text, int attached)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} control;
	struct iovec iov = { .iov_base = (void *)(uintptr_t)text, .iov_len = strlen(text) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (attached >= 0) {
		memset(&control, 0, sizeof(control));
		msg.msg_control = control.buf;
		msg.msg_controllen = sizeof(control.buf);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &attached, sizeof(int));
	}
	return sendmsg(fd, &msg, MSG_NOSIGNAL) == (ssize_t)iov.iov_len ? 0 : -1;
}

struct send_ctx {
	int channel;
	int failed;
	size_t sent;
};

static void
send_listener(int fd, const struct config_listener *lc, void *arg)
{
	struct send_ctx *ctx = arg;
	char text[sizeof(lc->text) + 16];
	snprintf(text, sizeof(text), "listener %s", lc->text);
	if (send_message(ctx->channel, text, fd) < 0)
		ctx->failed = errno;
	else
		ctx->sent++;
}

static void
old_side_finish(bool ok, const char *text)
{
	loop_timer_cancel(server.loop, &old_side.deadline);
	loop_io_del(server.loop, &old_side.io);
	if (old_side.io.fd >= 0)
		close(old_side.io.fd);
	old_side.io.fd = -1;
	old_side.running = false;
	if (ok)
		log_info("upgrade: %s", text);
	else
		log_warnx("upgrade failed, this daemon keeps serving: %s", text);
	control_upgrade_done(ok, text);
}

static void
on_channel(struct loop_io *io, uint32_t revents)
{
	(void)revents;
	char text[HANDOVER_MSG_MAX + 1];
	ssize_t n = recv(io->fd, text, sizeof(text) - 1, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		old_side_finish(false, "the new daemon stopped before taking over (its reason is in the log above)");
		return;
	}
	text[n] = '\0';
	if (strncmp(text, "ready ", 6) == 0) {
		long pid = strtol(text + 6, NULL, 10);
		/* Its copies of the sockets keep them open: closing ours only
		 * stops this process from accepting. What waits in a backlog
		 * is the new daemon's to accept. */
		char done[256];
		snprintf(done, sizeof(done), "new daemon pid %ld took over the listening sockets; old daemon pid %ld "
			 "finishes its %zu connection%s and exits", pid, (long)getpid(), conns_live(),
			 conns_live() == 1 ? "" : "s");
		old_side_finish(true, done);	/* answers `handoff upgrade` before its socket goes */
		listeners_close();
		control_close(true);
		admin_release();	/* admin requests under way are still answered */
		/* The new daemon is the service's main process now (its
		 * READY=1 said MAINPID): this one tells the service manager
		 * nothing more, not even STOPPING=1 when it exits. */
		notify_close();
		old_side.handed_over = true;
		old_side.drain_tick.cb = on_drain_tick;
		loop_timer_arm(server.loop, &old_side.drain_tick, DRAIN_TICK_MS);
		return;
	}
	char why[HANDOVER_MSG_MAX + 64];
	snprintf(why, sizeof(why), "the new daemon could not start: %s",
		 strncmp(text, "error ", 6) == 0 ? text + 6 : "unexpected answer");
	old_side_finish(false, why);
}

static void
on_ready_deadline(struct loop_timer *t)
{
	(void)t;
	/* Closing the channel makes the new daemon's "ready" fail, so it
	 * stops rather than serve beside us. */
	old_side_finish(false, "the new daemon did not say ready in time");
}

/* The binary at the same path: /proc/self/exe, also when a package
 * update replaced the file (the link then ends in " (deleted)"). */
static int
own_binary(char *path, size_t size)
{
	ssize_t n = readlink("/proc/self/exe", path, size - 1);
	if (n <= 0)
		return -1;
	path[n] = '\0';
	static const char deleted[] = " (deleted)";
	size_t len = (size_t)n, dl = sizeof(deleted) - 1;
	if (len > dl && strcmp(path + len - dl, deleted) == 0)
		path[len - dl] = '\0';
	return 0;
}

/* In the forked child: become the new daemon, or say why not. Never returns. */
static _Noreturn void
exec_new_daemon(const char *exe, int chan)
{
	/* A grandchild: the old daemon reaps the middle process at once,
	 * and the new daemon outlives the old one without becoming a zombie
	 * of it. */
	pid_t pid = fork();
	if (pid != 0)
		_exit(pid < 0 ? 1 : 0);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	int inherited = dup(chan);	/* without FD_CLOEXEC */
	char value[16];
	snprintf(value, sizeof(value), "%d", inherited);
	if (inherited >= 0 && setenv(HANDOVER_ENV, value, 1) == 0)
		execv(exe, saved_argv);
	char text[PATH_MAX + 128];
	snprintf(text, sizeof(text), "error cannot run %s: %s", exe, strerror(errno));
	(void)send(chan, text, strlen(text), MSG_NOSIGNAL);
	_exit(127);
}

int
upgrade_start(char *err, size_t errlen)
{
	char exe[PATH_MAX];
	int sv[2];
	if (old_side.handed_over) {
		snprintf(err, errlen, "this daemon already handed over to a new one");
		return -1;
	}
	if (old_side.running) {
		snprintf(err, errlen, "an upgrade is already under way");
		return -1;
	}
	if (saved_argv == NULL || own_binary(exe, sizeof(exe)) < 0) {
		snprintf(err, errlen, "cannot find the daemon's own binary: %s", strerror(errno));
		return -1;
	}
	if (access(exe, X_OK) < 0) {
		snprintf(err, errlen, "cannot run %s: %s (install the new binary at the same path)", exe,
			 strerror(errno));
		return -1;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		snprintf(err, errlen, "socketpair: %s", strerror(errno));
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if (pid == 0) {
		close(sv[0]);
		exec_new_daemon(exe, sv[1]);
	}
	close(sv[1]);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	/* Everything the new daemon needs waits in the channel before it
	 * reads any of it; a few small messages fit its buffer. */
	struct send_ctx ctx = { .channel = sv[0] };
	listeners_foreach_socket(send_listener, &ctx);
	if (ctx.failed == 0 && control_socket() >= 0 && send_message(sv[0], "control", control_socket()) < 0)
		ctx.failed = errno;
	if (ctx.failed == 0 && admin_socket() >= 0 && send_message(sv[0], "admin", admin_socket()) < 0)
		ctx.failed = errno;
	if (ctx.failed == 0 && send_message(sv[0], "end", -1) < 0)
		ctx.failed = errno;
	if (ctx.failed != 0) {
		snprintf(err, errlen, "cannot pass the sockets to the new daemon: %s", strerror(ctx.failed));
		close(sv[0]);
		return -1;
	}
	old_side.io.fd = sv[0];
	old_side.io.cb = on_channel;
	old_side.deadline.cb = on_ready_deadline;
	if (loop_io_add(server.loop, &old_side.io, EPOLLIN) < 0) {
		snprintf(err, errlen, "epoll: %s", strerror(errno));
		close(sv[0]);
		old_side.io.fd = -1;
		return -1;
	}
	loop_timer_arm(server.loop, &old_side.deadline, UPGRADE_READY_MS);
	old_side.running = true;
	log_info("upgrade: started %s; passed %zu listening socket%s, the control socket%s", exe, ctx.sent,
		 ctx.sent == 1 ? "" : "s", admin_socket() >= 0 ? " and the admin socket" : "");
	return 0;
}

int
handover_begin(char *err, size_t errlen)
{
	const char *value = getenv(HANDOVER_ENV);
	if (value == NULL)
		return 0;
	char *end;
	long fd = strtol(value, &end, 10);
	unsetenv(HANDOVER_ENV);		/* not for the processes we start */
	if (*value == '\0' || *end != '\0' || fd < 0 || fd > INT_MAX || fcntl((int)fd, F_SETFD, FD_CLOEXEC) < 0) {
		snprintf(err, errlen, "%s=%s does not name an open descriptor", HANDOVER_ENV, value);
		return -1;
	}
	int type = 0;
	socklen_t len = sizeof(type);
	if (getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_SEQPACKET) {
		snprintf(err, errlen, "%s=%s is not the old daemon's channel", HANDOVER_ENV, value);
		return -1;
	}
	channel = (int)fd;
	struct timeval tv = { .tv_sec = HANDOVER_RECV_MS / 1000 };
	setsockopt(channel, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return 0;
}

bool
handover_pending(void)
{
	return channel >= 0;
}

static void
close_all(const int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		close(fds[i]);
}

int
handover_receive(char *err, size_t errlen)
{
	if (channel < 0)
		return 0;
	for (int count = 0; count < HANDOVER_MAX_MESSAGES; count++) {
		char text[HANDOVER_MSG_MAX + 1];
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(int) * HANDOVER_FDS_MAX)];
		} control;
		struct iovec iov = { .iov_base = text, .iov_len = sizeof(text) - 1 };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
				      .msg_controllen = sizeof(control.buf) };
		ssize_t n = recvmsg(channel, &msg, MSG_CMSG_CLOEXEC);
		if (n <= 0) {
			snprintf(err, errlen, "no sockets from the old daemon: %s",
				 n == 0 ? "it closed the channel" : strerror(errno));
			return -1;
		}
		text[n] = '\0';
		int fds[HANDOVER_FDS_MAX];
		size_t n_fds = 0;
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm != NULL; cm = CMSG_NXTHDR(&msg, cm)) {
			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < k && n_fds < HANDOVER_FDS_MAX; i++)
				memcpy(&fds[n_fds++], CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
		}
		if (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) {
			close_all(fds, n_fds);
			snprintf(err, errlen, "a message from the old daemon was cut off (%s)",
				 msg.msg_flags & MSG_CTRUNC ? "MSG_CTRUNC: descriptors lost" : "MSG_TRUNC");
			return -1;
		}
		if (strcmp(text, "end") == 0 && n_fds == 0)
			return 0;
		if (n_fds != 1) {
			log_warnx("upgrade: message '%s' came with %zu descriptors instead of one: ignored", text, n_fds);
			close_all(fds, n_fds);
		} else if (strncmp(text, "listener ", 9) == 0) {
			/* An address the new configuration dropped is closed here;
			 * the old daemon stops accepting on it once this one is
			 * ready. */
			if (listener_adopt(fds[0], "the old daemon", ADOPT_UNNAMED_CLOSES, err, errlen) < 0) {
				close(fds[0]);
				return -1;
			}
		} else if (strcmp(text, "control") == 0) {
			control_adopt(fds[0]);
		} else if (strcmp(text, "admin") == 0) {
			admin_offer(fds[0]);
		} else {
			log_warnx("upgrade: unexpected message '%s' from the old daemon: its descriptor is closed", text);
			close(fds[0]);
		}
	}
	snprintf(err, errlen, "too many messages from the old daemon");
	return -1;
}

int
handover_ready(void)
{
	if (channel < 0)
		return 0;
	char text[32];
	snprintf(text, sizeof(text), "ready %ld", (long)getpid());
	int rc = send(channel, text, strlen(text), MSG_NOSIGNAL) == (ssize_t)strlen(text) ? 0 : -1;
	close(channel);
	channel = -1;
	return rc;
}

void
handover_failed(const char *why)
{
	if (channel < 0)
		return;
	char text[HANDOVER_MSG_MAX];
	snprintf(text, sizeof(text), "error %.*s", HANDOVER_MSG_MAX - 16, why);
	(void)send(channel, text, strlen(text), MSG_NOSIGNAL);
	close(channel);
	channel = -1;
}
