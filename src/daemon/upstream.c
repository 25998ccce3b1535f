/* upstream.c - hand connections to local upstreams: one datagram with the descriptor, queueing while theirs is full. */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "config.h"
#include "conn.h"
#include "listener.h"
#include "log.h"
#include "net.h"
#include "route.h"
#include "server.h"
#include "upstream.h"
#include "upstream_internal.h"
#include "wire.h"
#include "workers.h"

static enum deliver_result deliver_local(struct target *t, struct conn *c);
static void enqueue_local(struct target *t, struct conn *c);

const struct target_ops upstream_target_ops = {
	.kind = "local",
	.deliver = deliver_local,
	.enqueue = enqueue_local,
};

/* One datagram: the header, and the client's descriptor in SCM_RIGHTS. */
enum send_result
upstream_send_on(int sock, const struct conn *c)
{
	struct wire_header h;
	memset(&h, 0, sizeof(h));
	h.magic = WIRE_MAGIC;
	h.version = WIRE_VERSION;
	h.size = sizeof(h);
	h.protocol = c->proto == PROTO_TLS ? WIRE_PROTO_TLS : c->proto == PROTO_HTTP ? WIRE_PROTO_HTTP
		   : c->proto == PROTO_SSH ? WIRE_PROTO_SSH : WIRE_PROTO_SILENT;
	if (c->has_name) {
		h.name_len = (uint8_t)strlen(c->peek.name);
		memcpy(h.name, c->peek.name, h.name_len);
	}
	h.alpn_len = (uint8_t)(c->peek.alpn_len < sizeof(h.alpn) ? c->peek.alpn_len : sizeof(h.alpn) - 1);
	memcpy(h.alpn, c->peek.alpn, h.alpn_len);
	/* The address the client reached is the listener's own unless that
	 * is a wildcard; then the receiver asks the socket (local_len 0),
	 * so that no connection costs the daemon a getsockname(). */
	const struct config_listener *lc = c->listener->cfg;
	if (c->local_len > 0) {
		h.local = c->local;
		h.local_len = c->local_len;
	} else if (!net_addr_is_any(&lc->addr) && lc->addrlen <= sizeof(h.local)) {
		memcpy(&h.local, &lc->addr, lc->addrlen);
		h.local_len = lc->addrlen;
	}
	if (c->via_text[0] == '\0')
		h.flags |= WIRE_FLAG_PEER_IS_SOCKET;
	h.peer = c->peer;
	h.peer_len = c->peer_len;
	h.accepted_us = c->accepted_real_us;

	struct iovec iov = { .iov_base = &h, .iov_len = sizeof(h) };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	memset(&control, 0, sizeof(control));
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = control.buf, .msg_controllen = sizeof(control.buf),
	};
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	cmsg->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cmsg), &c->io.fd, sizeof(int));

	ssize_t n = sendmsg(sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n == (ssize_t)sizeof(h))
		return SEND_OK;
	if (n >= 0) {
		errno = EMSGSIZE;
		return SEND_FAILED;
	}
	switch (errno) {
	case EAGAIN:
		return SEND_FULL;
	case ECONNREFUSED:
	case ECONNRESET:
	case ENOTCONN:
	case EPIPE:
	case ENOENT:
		return SEND_DEAD;
	default:
		return SEND_FAILED;
	}
}

static void watch_for_room(struct upstream *up);

static enum send_result
send_conn(struct upstream *up, struct conn *c)
{
	return upstream_send_on(up->io.fd, c);
}

int
upstream_send_begin(struct target *t, char *id, size_t idlen)
{
	struct upstream *up = container_of(t, struct upstream, target);
	if (up->dead || up->io.fd < 0)
		return -1;
	/* Its socket stays open, and its record allocated, while a send is
	 * under way (upstream_drop and upstreams_reap wait for senders). */
	up->senders++;
	size_t len = strnlen(up->id, idlen - 1);
	memcpy(id, up->id, len);
	id[len] = '\0';
	return up->io.fd;
}

void
upstream_send_end(struct target *t, enum send_result result)
{
	struct upstream *up = container_of(t, struct upstream, target);
	up->senders--;
	if (result == SEND_OK)
		t->delivered++;
	if (result == SEND_FULL && !up->dead) {
		/* As deliver_local does: the next connections wait in its
		 * queue (the loop's) instead of trying again. */
		t->busy = true;
		watch_for_room(up);
	}
	if (up->dead && up->senders == 0)
		workers_wake_loop();	/* upstreams_reap can free it now */
}

static void
watch_for_room(struct upstream *up)
{
	if (!(up->io.events & EPOLLOUT))
		loop_io_mod(server.loop, &up->io, EPOLLOUT);
}

/* The local kind of target: one sendmsg() hands the connection over. */
static enum deliver_result
deliver_local(struct target *t, struct conn *c)
{
	struct upstream *up = container_of(t, struct upstream, target);
	switch (send_conn(up, c)) {
	case SEND_OK:
		t->delivered++;
		conn_handed_off(c, up->id);
		return DELIVER_DONE;
	case SEND_FULL:
		t->busy = true;
		watch_for_room(up);
		return DELIVER_BUSY;
	case SEND_DEAD:
		upstream_drop(up, "its socket refuses connections: process gone", true);
		return DELIVER_FAILED;
	case SEND_FAILED:
		break;
	}
	log_warn("cannot hand a connection to upstream %s", up->id);
	return DELIVER_FAILED;
}

static void
enqueue_local(struct target *t, struct conn *c)
{
	struct upstream *up = container_of(t, struct upstream, target);
	TAILQ_INSERT_TAIL(&up->waiting, c, queue);
	t->n_waiting++;
	server.n_waiting++;
	watch_for_room(up);
	conn_wait(c, t);
}

void
upstream_unqueue(struct conn *c)
{
	if (c->waiting_at == NULL)
		return;
	struct upstream *up = container_of(c->waiting_at, struct upstream, target);
	TAILQ_REMOVE(&up->waiting, c, queue);
	up->target.n_waiting--;
	server.n_waiting--;
	c->waiting_at = NULL;
}

/* Room at a busy upstream (or an error on our socket to it). */
void
upstream_on_event(struct loop_io *io, uint32_t revents)
{
	struct upstream *up = container_of(io, struct upstream, io);
	if (revents & (EPOLLERR | EPOLLHUP)) {
		int err = 0;
		socklen_t len = sizeof(err);
		getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err != 0 || (revents & EPOLLHUP)) {
			upstream_drop(up, err ? strerror(err) : "hung up", true);
			return;
		}
	}
	if (!(revents & EPOLLOUT))
		return;
	up->target.busy = false;
	struct conn *c;
	while ((c = TAILQ_FIRST(&up->waiting)) != NULL) {
		switch (send_conn(up, c)) {
		case SEND_OK:
			upstream_unqueue(c);
			up->target.delivered++;
			conn_handed_off(c, up->id);
			continue;
		case SEND_FULL:
			up->target.busy = true;
			return;	/* still watching EPOLLOUT */
		case SEND_DEAD:
			upstream_drop(up, "its socket refuses connections: process gone", true);
			return;
		case SEND_FAILED:
			log_warn("cannot hand a connection to upstream %s", up->id);
			upstream_unqueue(c);
			conn_reject(c, OUTCOME_REFUSED, "handoff failed");
			continue;
		}
	}
	loop_io_mod(server.loop, &up->io, 0);
}
