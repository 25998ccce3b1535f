/* handoff_local.c - connections a process makes to itself: the token its processes share, and the wire_local messages that carry such a connection to its own receiver. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "handoff_internal.h"
#include "handoff_local.h"
#include "wire.h"

#define SOCK_PATH_CAP	sizeof(((struct sockaddr_un *)0)->sun_path)

/* The secret a process shares with the processes it forks, which lets one
 * queue a connection to itself on a receiver (see struct wire_local). Made
 * when the first receiver is registered: servers fork their workers after
 * that, and the workers inherit it. */
static pthread_once_t local_token_once = PTHREAD_ONCE_INIT;
static uint8_t local_token[WIRE_LOCAL_TOKEN_LEN];
static bool local_token_ready;

static void make_token(void)
{
	size_t got = 0;

	while (got < sizeof(local_token)) {
		ssize_t n = getrandom(local_token + got, sizeof(local_token) - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return;		/* no token: connections to oneself are not taken */
		}
		got += (size_t)n;
	}
	local_token_ready = true;
}

void handoff_local_token_make(void)
{
	pthread_once(&local_token_once, make_token);
}

/* A connection this process, or one sharing its token, made to itself:
 * from our own uid or root, with the token, compared in constant time. */
bool handoff_local_message_is_valid(const struct wire_header *h, size_t received, uid_t sender_uid)
{
	struct wire_local local;
	uint8_t differ = 0;

	_Static_assert(sizeof(local) <= sizeof(*h), "a local message fits the receive buffer");
	if (received != sizeof(local) || !local_token_ready ||
	    (sender_uid != 0 && sender_uid != getuid()))
		return false;
	memcpy(&local, h, sizeof(local));
	if (local.magic != WIRE_LOCAL_MAGIC || local.size != sizeof(local) ||
	    local.peer_len == 0 || local.peer_len > sizeof(local.peer))
		return false;
	for (size_t i = 0; i < sizeof(local.token); i++)
		differ |= (uint8_t)(local.token[i] ^ local_token[i]);
	return differ == 0;
}

/* The same for a connection to oneself, from the address in the message. */
void handoff_fill_local_peer(const struct wire_header *h, struct sockaddr *addr, socklen_t *addrlen)
{
	struct wire_local local;

	memcpy(&local, h, sizeof(local));
	memcpy(addr, &local.peer, *addrlen < local.peer_len ? *addrlen : local.peer_len);
	*addrlen = local.peer_len;
}

/*
 * Where a message to the receiver fd goes: RUNDIR/upstreams/ID/ID.sock, the
 * name the daemon reaches it by. The socket was bound in the private
 * directory .ID before that was renamed to ID, so getsockname() names a path
 * that no longer exists, and that anyone could create again in the sticky
 * upstreams directory: it is never used as such. A receiver this process
 * registered knows its path; an adopted one (inherited across exec()) has
 * its path derived from the bound name, .ID/ID.sock -> ID/ID.sock. Either
 * way the directory must be ours and writable by no one else, so no other
 * user can have put a socket of theirs at that name: the connection we
 * send is ours to keep. Returns the sockaddr length, or -1 with errno.
 */
static int receiver_address(int fd, struct sockaddr_un *sun)
{
	socklen_t sun_len = sizeof(*sun);
	char path[SOCK_PATH_CAP];
	struct stat st;

	memset(sun, 0, sizeof(*sun));
	if (handoff_registered_sock_path(fd, path, sizeof(path)) < 0)
		return -1;
	if (path[0] == '\0') {
		if (getsockname(fd, (struct sockaddr *)sun, &sun_len) < 0)
			return -1;
		if (sun->sun_family != AF_UNIX || sun_len <= offsetof(struct sockaddr_un, sun_path) ||
		    sun_len > sizeof(*sun) ||
		    memchr(sun->sun_path, '\0', sun_len - offsetof(struct sockaddr_un, sun_path)) == NULL) {
			errno = EINVAL;
			return -1;
		}
		/* .../.ID/ID.sock: drop the dot that marked the directory private. */
		char *file = strrchr(sun->sun_path, '/');
		char *dot = NULL;

		if (file != NULL && file > sun->sun_path) {
			*file = '\0';
			dot = strrchr(sun->sun_path, '/');
			*file = '/';
		}
		if (dot == NULL || dot[1] != '.' || dot + 2 >= file) {
			errno = EINVAL;
			return -1;
		}
		size_t head = (size_t)(dot + 1 - sun->sun_path);

		memcpy(path, sun->sun_path, head);
		memcpy(path + head, dot + 2, strlen(dot + 2) + 1);
	}
	char *slash = strrchr(path, '/');

	if (slash == NULL || slash == path) {
		errno = EINVAL;
		return -1;
	}
	*slash = '\0';
	int checked = lstat(path, &st);

	*slash = '/';
	if (checked < 0)
		return -1;
	if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 022)) {
		errno = EPERM;
		return -1;
	}
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path, path, strlen(path) + 1);
	return (int)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
}

int handoff_send_local(int fd, int conn, const struct sockaddr *peer, socklen_t peer_len)
{
	struct sockaddr_un sun;
	int sun_len;
	struct wire_local local = { .magic = WIRE_LOCAL_MAGIC, .size = sizeof(local) };
	struct iovec iov = { .iov_base = &local, .iov_len = sizeof(local) };
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} control;
	struct msghdr msg = {
		.msg_name = &sun,
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = control.buf,
		.msg_controllen = sizeof(control.buf),
	};
	/* Bounded: a receiver whose queue stays full drops this connection. */
	struct timeval send_timeout = { .tv_sec = 1 };
	struct cmsghdr *c;
	int sender, saved;
	ssize_t sent;

	if (peer_len == 0 || peer_len > sizeof(local.peer)) {
		errno = EINVAL;
		return -1;
	}
	if (!local_token_ready) {
		errno = EPERM;
		return -1;
	}
	sun_len = receiver_address(fd, &sun);
	if (sun_len < 0)
		return -1;
	msg.msg_namelen = (socklen_t)sun_len;
	memcpy(local.token, local_token, sizeof(local.token));
	memcpy(&local.peer, peer, peer_len);
	local.peer_len = peer_len;
	memset(&control, 0, sizeof(control));
	c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &conn, sizeof(int));

	sender = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sender < 0)
		return -1;
	setsockopt(sender, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof(send_timeout));
	do
		sent = sendmsg(sender, &msg, MSG_NOSIGNAL);
	while (sent < 0 && errno == EINTR);
	saved = errno;
	close(sender);
	explicit_bzero(local.token, sizeof(local.token));
	if (sent < 0) {
		errno = saved;
		return -1;
	}
	return 0;
}
