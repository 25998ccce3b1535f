/* preload_describe.c - the options a listener remembers and the description of it kept on its receiving socket. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "preload.h"

/* Options snapshotted at bind() when they differ from a fresh socket's. */
const struct option_id known_options[] = {
	{ SOL_SOCKET, SO_REUSEADDR, false },
	{ SOL_SOCKET, SO_REUSEPORT, false },
	{ SOL_SOCKET, SO_KEEPALIVE, true },
	{ SOL_SOCKET, SO_RCVBUF, true },
	{ SOL_SOCKET, SO_SNDBUF, true },
	{ SOL_SOCKET, SO_LINGER, true },
	{ SOL_SOCKET, SO_PRIORITY, true },
	{ SOL_SOCKET, SO_MARK, true },
	{ SOL_SOCKET, SO_RCVLOWAT, true },
	{ SOL_SOCKET, SO_OOBINLINE, true },
	{ IPPROTO_TCP, TCP_NODELAY, true },
	{ IPPROTO_TCP, TCP_MAXSEG, false },
	{ IPPROTO_TCP, TCP_KEEPIDLE, true },
	{ IPPROTO_TCP, TCP_KEEPINTVL, true },
	{ IPPROTO_TCP, TCP_KEEPCNT, true },
	{ IPPROTO_TCP, TCP_SYNCNT, false },
	{ IPPROTO_TCP, TCP_LINGER2, true },
	{ IPPROTO_TCP, TCP_DEFER_ACCEPT, false },
	{ IPPROTO_TCP, TCP_WINDOW_CLAMP, true },
	{ IPPROTO_TCP, TCP_CONGESTION, true },
	{ IPPROTO_TCP, TCP_USER_TIMEOUT, true },
	{ IPPROTO_TCP, TCP_FASTOPEN, false },
	{ IPPROTO_TCP, TCP_NOTSENT_LOWAT, true },
	{ IPPROTO_IP, IP_TOS, true },
	{ IPPROTO_IP, IP_TTL, true },
	{ IPPROTO_IP, IP_FREEBIND, false },
	{ IPPROTO_IP, IP_TRANSPARENT, false },
	{ IPPROTO_IPV6, IPV6_V6ONLY, false },
	{ IPPROTO_IPV6, IPV6_TCLASS, true },
	{ IPPROTO_IPV6, IPV6_UNICAST_HOPS, true },
};
const size_t n_known_options = sizeof(known_options) / sizeof(known_options[0]);

/* ---- options ---- */

const struct option_id *known_option(int level, int name)
{
	for (size_t i = 0; i < n_known_options; i++)
		if (known_options[i].level == level && known_options[i].name == name)
			return &known_options[i];
	return NULL;
}

bool is_timeout_option(int level, int name)
{
	if (level != SOL_SOCKET)
		return false;
	if (name == SO_RCVTIMEO || name == SO_SNDTIMEO)
		return true;
#ifdef SO_RCVTIMEO_NEW
	if (name == SO_RCVTIMEO_NEW || name == SO_SNDTIMEO_NEW ||
	    name == SO_RCVTIMEO_OLD || name == SO_SNDTIMEO_OLD)
		return true;
#endif
	return false;
}

/* Remember an option's value (the description holds levels and names of
 * 16 bits and values of OPTION_VALUE_MAX bytes; others are not kept). */
void remember_option(struct listener_shadow *sh, int level, int name,
			    const void *value, socklen_t len)
{
	struct remembered_option *slot = NULL;

	if (len > OPTION_VALUE_MAX || level < 0 || level > UINT16_MAX || name < 0 ||
	    name > UINT16_MAX)
		return;
	for (size_t i = 0; i < sh->n_options; i++)
		if (sh->options[i].level == level && sh->options[i].name == name)
			slot = &sh->options[i];
	if (!slot) {
		if (sh->n_options == MAX_REMEMBERED)
			return;
		slot = &sh->options[sh->n_options++];
	}
	slot->level = level;
	slot->name = name;
	slot->len = len;
	memset(slot->value, 0, sizeof(slot->value));
	memcpy(slot->value, value, len);
}

const struct remembered_option *find_option(const struct listener_shadow *sh,
						   int level, int name)
{
	for (size_t i = 0; i < sh->n_options; i++)
		if (sh->options[i].level == level && sh->options[i].name == name)
			return &sh->options[i];
	return NULL;
}

/* ---- the listener's description, kept on the receiving socket ----
 * It is a classic BPF socket filter, which the kernel keeps with the socket
 * (across fork, exec and descriptor passing) and gives back to any holder
 * through SO_GET_FILTER. The filter lets every datagram through whole; it
 * is a run of "load immediate" instructions whose 32-bit operands carry the
 * description, in host byte order:
 *
 *   METADATA_MAGIC
 *   version << 24 | listening << 16 | address length << 8 | option count
 *   the bound address, padded to whole words
 *   per option: level << 16 | name, length, value padded to whole words
 *
 * then "return whole datagram". Loading constants costs the kernel a few
 * dozen instructions per handed-off connection. */

#define METADATA_MAGIC		0x50464f48u	/* "HOFP" in little-endian memory */
#define METADATA_VERSION	1
#define WORD_BYTES		4
#define WORDS(bytes)		(((bytes) + WORD_BYTES - 1) / WORD_BYTES)
#define METADATA_MAX_WORDS	(2 + WORDS(sizeof(struct sockaddr_in6)) + \
				 MAX_REMEMBERED * (2 + WORDS(OPTION_VALUE_MAX)))
#define ACCEPT_WHOLE_DATAGRAM	0xffffffffu

static void put_word(struct sock_filter *insns, size_t *n, uint32_t word)
{
	insns[(*n)++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_IMM, word);
}

static void put_bytes(struct sock_filter *insns, size_t *n, const void *data, size_t len)
{
	for (size_t i = 0; i < len; i += WORD_BYTES) {
		uint32_t word = 0;

		memcpy(&word, (const unsigned char *)data + i,
		       len - i < WORD_BYTES ? len - i : WORD_BYTES);
		put_word(insns, n, word);
	}
}

/* Record sh on the receiver fd (replacing what was there). */
void attach_metadata(int fd, const struct listener_shadow *sh)
{
	static atomic_bool warned;
	struct sock_filter insns[METADATA_MAX_WORDS + 1];
	struct sock_fprog program = { .filter = insns };
	size_t n = 0;

	put_word(insns, &n, METADATA_MAGIC);
	put_word(insns, &n, (uint32_t)METADATA_VERSION << 24 | (uint32_t)sh->listening << 16 |
			    (uint32_t)sh->addr_len << 8 | (uint32_t)sh->n_options);
	put_bytes(insns, &n, &sh->addr, sh->addr_len);
	for (size_t i = 0; i < sh->n_options; i++) {
		const struct remembered_option *o = &sh->options[i];

		put_word(insns, &n, (uint32_t)o->level << 16 | (uint32_t)o->name);
		put_word(insns, &n, o->len);
		put_bytes(insns, &n, o->value, o->len);
	}
	insns[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, ACCEPT_WHOLE_DATAGRAM);
	program.len = (unsigned short)n;
	if (real_setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &program, sizeof(program)) < 0 &&
	    !atomic_exchange(&warned, true))
		fprintf(stderr, "handoff-preload: cannot record the listener on its receiving "
			"socket (%s); a re-executed or forked-and-executed server will not "
			"recognise it\n", strerror(errno));
}

/* Read the description on receiver fd into sh (address, listening,
 * options). False if fd carries none. */
bool read_metadata(int fd, struct listener_shadow *sh)
{
	struct sock_filter insns[METADATA_MAX_WORDS + 1];
	socklen_t count = sizeof(insns) / sizeof(insns[0]);	/* counts instructions */
	uint32_t words[METADATA_MAX_WORDS], header;
	size_t n_words, at = 2, addr_len, n_options;

	if (real_getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, insns, &count) < 0 || count < 3 ||
	    count > sizeof(insns) / sizeof(insns[0]))
		return false;
	n_words = count - 1;
	if (insns[n_words].code != (BPF_RET | BPF_K) || insns[n_words].k != ACCEPT_WHOLE_DATAGRAM)
		return false;
	for (size_t i = 0; i < n_words; i++) {
		if (insns[i].code != (BPF_LD | BPF_IMM))
			return false;
		words[i] = insns[i].k;
	}
	header = words[1];
	addr_len = header >> 8 & 0xff;
	n_options = header & 0xff;
	if (words[0] != METADATA_MAGIC || header >> 24 != METADATA_VERSION ||
	    n_options > MAX_REMEMBERED || at + WORDS(addr_len) > n_words ||
	    !(addr_len == sizeof(struct sockaddr_in) || addr_len == sizeof(struct sockaddr_in6)))
		return false;
	memcpy(&sh->addr, &words[at], addr_len);
	at += WORDS(addr_len);
	if ((sh->addr.sa.sa_family != AF_INET || addr_len != sizeof(struct sockaddr_in)) &&
	    (sh->addr.sa.sa_family != AF_INET6 || addr_len != sizeof(struct sockaddr_in6)))
		return false;
	sh->addr_len = (socklen_t)addr_len;
	sh->listening = (header >> 16 & 0xff) != 0;
	for (size_t i = 0; i < n_options; i++) {
		uint32_t len;

		if (at + 2 > n_words)
			return false;
		len = words[at + 1];
		if (len > OPTION_VALUE_MAX || at + 2 + WORDS(len) > n_words)
			return false;
		remember_option(sh, (int)(words[at] >> 16), (int)(words[at] & 0xffff),
				&words[at + 2], len);
		at += 2 + WORDS(len);
	}
	return at == n_words;
}

/* ---- receivers ---- */

/* A TCP socket of the listener's family, to ask the kernel for defaults and
 * to validate options; -1 if none can be made (descriptor limit). */
int fresh_tcp_socket(int family)
{
	return socket(family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
}

/* The uid whose messages the receiver fd accepts: the daemon's, which owns
 * both the runtime directory and RUNDIR/upstreams. The socket was bound as
 * RUNDIR/upstreams/.ID/ID.sock (libhandoff's private directory, renamed
 * to ID afterwards; the bound address keeps the old name), or by older
 * versions as RUNDIR/upstreams/ID.sock: two levels up is always one of the
 * two directories. */
int receiver_daemon_uid(int fd, uid_t *uid)
{
	struct sockaddr_un sun;
	socklen_t len = sizeof(sun);
	char path[sizeof(sun.sun_path) + 1];
	struct stat st;
	char *slash;

	if (real_getsockname(fd, (struct sockaddr *)&sun, &len) < 0)
		return -1;
	if (sun.sun_family != AF_UNIX || len <= offsetof(struct sockaddr_un, sun_path) ||
	    sun.sun_path[0] == '\0') {
		errno = EINVAL;
		return -1;
	}
	len -= (socklen_t)offsetof(struct sockaddr_un, sun_path);
	memcpy(path, sun.sun_path, len);
	path[len] = '\0';
	for (int i = 0; i < 2; i++) {
		slash = strrchr(path, '/');
		if (!slash || slash == path) {
			errno = EINVAL;
			return -1;
		}
		*slash = '\0';
	}
	if (stat(path, &st) < 0)
		return -1;
	*uid = st.st_uid;
	return 0;
}

/* Is fd an AF_UNIX datagram socket (what handoff_listen() makes)? */
bool is_receiver_socket(int fd)
{
	int domain = 0, type = 0;
	socklen_t len = sizeof(int);

	if (real_getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0)
		return false;
	len = sizeof(int);
	if (real_getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
		return false;
	return domain == AF_UNIX && type == SOCK_DGRAM;
}

bool is_tcp_socket(int fd, int family)
{
	int domain = 0, type = 0, protocol = 0;
	socklen_t optlen = sizeof(int);

	if (real_getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &optlen) < 0)
		return false;
	optlen = sizeof(int);
	if (real_getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &optlen) < 0)
		return false;
	optlen = sizeof(int);
	if (real_getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &optlen) < 0)
		return false;
	return domain == family && type == SOCK_STREAM && protocol == IPPROTO_TCP;
}
