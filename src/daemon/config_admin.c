/* config_admin.c - the admin directive: where the admin endpoint listens and which clients it serves. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "config.h"
#include "config_internal.h"

#define ADMIN_EXAMPLES "e.g. 127.0.0.1:9180, [::1]:9180 or unix:/run/handoff/admin.sock"

/* "127.0.0.1:9180", "[::1]:9180" or "unix:/path" into a. */
static int
parse_admin_address(struct parser *p, const char *word, struct config_admin *a)
{
	memset(&a->addr, 0, sizeof(a->addr));
	if (strncmp(word, "unix:", 5) == 0) {
		const char *path = word + 5;
		if (path[0] != '/')
			return fail(p, "admin: '%s' needs an absolute path after unix: (%s)", word, ADMIN_EXAMPLES);
		if (strlen(path) >= sizeof(a->unix_path))
			return fail(p, "admin: socket path '%s' is longer than %zu bytes (choose a shorter one)",
				    path, sizeof(a->unix_path) - 1);
		a->is_unix = true;
		snprintf(a->unix_path, sizeof(a->unix_path), "%s", path);
		snprintf(a->text, sizeof(a->text), "unix:%s", path);
		return 0;
	}
	char host[INET6_ADDRSTRLEN + 1];
	const char *port;
	bool bracketed = word[0] == '[';
	const char *host_start = bracketed ? word + 1 : word;
	const char *host_end = bracketed ? strchr(host_start, ']') : strrchr(word, ':');
	if (host_end == NULL || (bracketed && host_end[1] != ':'))
		return fail(p, "admin: bad address '%s' (expected ADDRESS:PORT or unix:PATH, %s)", word,
			    ADMIN_EXAMPLES);
	port = host_end + (bracketed ? 2 : 1);
	size_t host_len = (size_t)(host_end - host_start);
	if (host_len == 0 || host_len >= sizeof(host))
		return fail(p, "admin: bad address '%s' (expected a numeric address, %s)", word, ADMIN_EXAMPLES);
	memcpy(host, host_start, host_len);
	host[host_len] = '\0';
	unsigned port_number;
	if (!parse_range(port, 1, 65535, &port_number))
		return fail(p, "admin: bad port '%s' in '%s' (expected 1..65535)", port, word);
	if (bracketed) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)&a->addr;
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return fail(p, "admin: bad address '%s' (expected a numeric IPv6 address in brackets, %s)",
				    word, ADMIN_EXAMPLES);
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port_number);
		a->addrlen = sizeof(*sin6);
		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		snprintf(a->text, sizeof(a->text), "[%s]:%u", host, port_number);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)(void *)&a->addr;
		if (strcmp(host, "*") == 0)
			sin->sin_addr.s_addr = htonl(INADDR_ANY);
		else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return fail(p, "admin: bad address '%s' (expected a numeric address; IPv6 goes in brackets; %s)",
				    word, ADMIN_EXAMPLES);
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port_number);
		a->addrlen = sizeof(*sin);
		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		snprintf(a->text, sizeof(a->text), "%s:%u", host, port_number);
	}
	return 0;
}

/* "10.0.0.0/8,192.0.2.7,[2001:db8::]/32" appended to a->allow. */
static int
parse_admin_allow(struct parser *p, const char *value, struct config_admin *a)
{
	char copy[CONFIG_LINE_MAX + 1];
	snprintf(copy, sizeof(copy), "%s", value);
	char *save = NULL;
	for (char *item = strtok_r(copy, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
		if (a->n_allow == CONFIG_MAX_ADMIN_ALLOW)
			return fail(p, "admin allow: more than %d client ranges in all (use wider prefixes)",
				    CONFIG_MAX_ADMIN_ALLOW);
		struct config_cidr *c = &a->allow[a->n_allow];
		unsigned max_prefix;
		enum cidr_result r = parse_cidr(item, c, &max_prefix);
		if (r == CIDR_BAD_ADDRESS)
			return fail(p, "admin allow: bad client range '%s' (expected e.g. 10.0.0.0/8 or ::1)", item);
		if (r == CIDR_BAD_PREFIX)
			return fail(p, "admin allow: bad prefix length in '%s' (expected 0..%u)", item, max_prefix);
		a->n_allow++;
	}
	return 0;
}

int
parse_admin(struct parser *p, const struct directive *d, char **args, size_t n)
{
	struct config_admin *a = &p->cfg->admin;
	if (n == 2 && strcmp(args[0], "allow") == 0)
		return parse_admin_allow(p, args[1], a);
	if (n != 1 || strcmp(args[0], "allow") == 0)
		return fail_usage(p, d);
	if (a->enabled)
		return fail(p, "admin: already set on line %d (one admin endpoint per daemon)", a->line);
	if (parse_admin_address(p, args[0], a) < 0)
		return -1;
	a->enabled = true;
	a->line = p->line;
	return 0;
}

static bool
is_loopback(const struct sockaddr_storage *addr)
{
	if (addr->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)addr;
		return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
	}
	if (addr->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)addr;
		return IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr);
	}
	return false;
}

/* The admin endpoint shows every route, upstream and recent client: an
 * address others can reach must say who may ask. */
int
check_admin(struct parser *p)
{
	struct config_admin *a = &p->cfg->admin;
	if (!a->enabled) {
		if (a->n_allow > 0)
			return fail(p, "admin allow: given without 'admin ADDRESS:PORT' (add e.g. 'admin 127.0.0.1:9180')");
		return 0;
	}
	if (a->is_unix || is_loopback(&a->addr) || a->n_allow > 0)
		return 0;
	p->line = a->line;
	return fail(p, "admin: %s is not a loopback address, and the admin endpoint shows every route, upstream "
		    "and client (use 127.0.0.1:PORT or unix:PATH, or list who may ask with "
		    "'admin allow ADDR/PREFIX')", a->text);
}

bool
config_admin_allows(const struct config_admin *a, const struct sockaddr *addr)
{
	if (addr == NULL || addr->sa_family == AF_UNIX)
		return true;	/* the socket file's permissions decide */
	const unsigned char *bytes;
	unsigned char mapped[4];
	int family = addr->sa_family;
	if (family == AF_INET) {
		bytes = (const unsigned char *)&((const struct sockaddr_in *)(const void *)addr)->sin_addr;
	} else if (family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)(const void *)addr)->sin6_addr;
		bytes = a6->s6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a6)) {
			memcpy(mapped, bytes + 12, 4);
			bytes = mapped;
			family = AF_INET;
		}
	} else {
		return false;
	}
	if (a->n_allow == 0) {
		/* Only a loopback address gets here without allow lines. */
		return family == AF_INET ? bytes[0] == 127
					 : memcmp(bytes, in6addr_loopback.s6_addr, 16) == 0;
	}
	for (size_t i = 0; i < a->n_allow; i++) {
		const struct config_cidr *c = &a->allow[i];
		if (c->family != family)
			continue;
		unsigned full = c->prefix / 8, rest = c->prefix % 8;
		if (memcmp(bytes, c->addr, full) != 0)
			continue;
		if (rest != 0) {
			unsigned char mask = (unsigned char)(0xff << (8 - rest));
			if ((bytes[full] & mask) != (c->addr[full] & mask))
				continue;
		}
		return true;
	}
	return false;
}
