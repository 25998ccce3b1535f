/* config_listen.c - the listen directive: addresses, options, trusted PROXY sources. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "config_internal.h"
#include "hostname.h"

/* A client that has sent nothing for this long after connecting is taken
 * for one that waits for the server to speak first. Clients of TLS, HTTP
 * and SSH send at once, so two seconds cover slow networks with room. */
#define DEFAULT_DETECT_TIMEOUT_MS 2000

/* "127.0.0.1:8443", "*:443", "[::1]:8443" into l->addr, l->addrlen, l->text. */
static int
parse_address(struct parser *p, const char *word, struct config_listener *l)
{
	static const char examples[] = "e.g. 127.0.0.1:8443, *:443 or [::1]:8443";
	const char *host_start, *host_end, *port;
	bool bracketed = word[0] == '[';
	if (bracketed) {
		host_start = word + 1;
		host_end = strchr(host_start, ']');
		if (host_end == NULL)
			return fail(p, "listen: bad address '%s' (missing ']'; %s)", word, examples);
		if (host_end[1] != ':')
			return fail(p, "listen: '%s' has no port (expected ADDRESS:PORT, %s)", word, examples);
		port = host_end + 2;
	} else {
		host_start = word;
		host_end = strrchr(word, ':');
		if (host_end == NULL)
			return fail(p, "listen: '%s' has no port (expected ADDRESS:PORT, %s)", word, examples);
		port = host_end + 1;
	}
	char host[INET6_ADDRSTRLEN];
	size_t host_len = (size_t)(host_end - host_start);
	if (host_len == 0 || host_len >= sizeof(host))
		return fail(p, "listen: bad address '%s' (expected a numeric address, %s)", word, examples);
	memcpy(host, host_start, host_len);
	host[host_len] = '\0';

	unsigned port_number;
	if (!parse_range(port, 1, 65535, &port_number))
		return fail(p, "listen: bad port '%s' in '%s' (expected 1..65535)", port, word);

	memset(&l->addr, 0, sizeof(l->addr));
	if (bracketed) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)&l->addr;
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return fail(p, "listen: bad address '%s' (expected a numeric IPv6 address in brackets, %s)",
				    word, examples);
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port_number);
		l->addrlen = sizeof(*sin6);
		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		snprintf(l->text, sizeof(l->text), "[%s]:%u", host, port_number);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)(void *)&l->addr;
		if (strchr(host, ':') != NULL)
			return fail(p, "listen: bad address '%s' (put IPv6 addresses in brackets, %s)",
				    word, examples);
		if (strcmp(host, "*") == 0)
			sin->sin_addr.s_addr = htonl(INADDR_ANY);
		else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return fail(p, "listen: bad address '%s' (expected a numeric address, %s)", word, examples);
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port_number);
		l->addrlen = sizeof(*sin);
		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		snprintf(l->text, sizeof(l->text), "%s:%u", host, port_number);
	}
	return 0;
}

/* "10.0.0.0/8,192.0.2.7,[2001:db8::]/32" (brackets optional for IPv6). */
static int
parse_trusted(struct parser *p, const char *value, struct config_listener *l)
{
	char copy[CONFIG_LINE_MAX + 1];
	snprintf(copy, sizeof(copy), "%s", value);
	char *save = NULL;
	for (char *item = strtok_r(copy, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
		if (l->n_trusted == CONFIG_MAX_TRUSTED)
			return fail(p, "listen: accept-proxy lists more than %d sources", CONFIG_MAX_TRUSTED);
		struct config_cidr *c = &l->trusted[l->n_trusted];
		unsigned max_prefix;
		enum cidr_result r = parse_cidr(item, c, &max_prefix);
		if (r == CIDR_BAD_ADDRESS)
			return fail(p, "listen: bad accept-proxy source '%s' (expected e.g. 10.0.0.0/8 or ::1)", item);
		if (r == CIDR_BAD_PREFIX)
			return fail(p, "listen: bad prefix length in '%s' (expected 0..%u)", item, max_prefix);
		l->n_trusted++;
	}
	if (l->n_trusted == 0)
		return fail(p, "listen: accept-proxy needs at least one source address");
	return 0;
}

int
parse_listen(struct parser *p, const struct directive *d, char **args, size_t n)
{
	struct config *cfg = p->cfg;
	struct config_listener l;
	memset(&l, 0, sizeof(l));
	l.v6only = -1;
	l.backlog = DEFAULT_BACKLOG;
	l.line = p->line;
	if (n < 2)
		return fail_usage(p, d);
	if (parse_address(p, args[0], &l) < 0)
		return -1;
	if (strcmp(args[1], "tls") == 0)
		l.proto = LISTENER_TLS;
	else if (strcmp(args[1], "http") == 0)
		l.proto = LISTENER_HTTP;
	else if (strcmp(args[1], "detect") == 0)
		l.proto = LISTENER_DETECT;
	else
		return fail(p, "listen: unknown protocol '%s' (expected tls, http or detect)", args[1]);

	bool seen_default = false, seen_v6only = false, seen_backlog = false, seen_proxy = false;
	bool seen_detect_timeout = false, seen_defer = false;
	l.detect_timeout_ms = DEFAULT_DETECT_TIMEOUT_MS;
	for (size_t i = 2; i < n; i += 2) {
		const char *option = args[i];
		bool *seen;
		if (strcmp(option, "default") == 0)
			seen = &seen_default;
		else if (strcmp(option, "v6only") == 0)
			seen = &seen_v6only;
		else if (strcmp(option, "backlog") == 0)
			seen = &seen_backlog;
		else if (strcmp(option, "accept-proxy") == 0)
			seen = &seen_proxy;
		else if (strcmp(option, "detect-timeout") == 0)
			seen = &seen_detect_timeout;
		else if (strcmp(option, "defer-accept") == 0)
			seen = &seen_defer;
		else
			return fail(p, "listen: unknown option '%s'; expected '%s'", option, d->usage);
		if (i + 1 >= n)
			return fail_usage(p, d);
		if (*seen)
			return fail(p, "listen: '%s' given twice", option);
		*seen = true;
		const char *value = args[i + 1];
		if (seen == &seen_default) {
			if (hostname_normalize(value, strlen(value), l.default_name,
					       sizeof(l.default_name)) == 0)
				return fail(p, "listen: bad default name '%s' (expected a host name such as a.example)",
					    value);
		} else if (seen == &seen_v6only) {
			if (strcmp(value, "on") == 0)
				l.v6only = 1;
			else if (strcmp(value, "off") == 0)
				l.v6only = 0;
			else
				return fail(p, "listen: v6only takes on or off, not '%s'", value);
		} else if (seen == &seen_proxy) {
			if (parse_trusted(p, value, &l) < 0)
				return -1;
		} else if (seen == &seen_detect_timeout) {
			if (l.proto != LISTENER_DETECT)
				return fail(p, "listen: detect-timeout applies only to detect listeners");
			if (!parse_duration(value, &l.detect_timeout_ms))
				return fail(p, "listen: bad detect-timeout '%s' (expected a duration such as 2s or 500ms)",
					    value);
		} else if (seen == &seen_defer) {
			unsigned ms = 0;
			if (l.proto == LISTENER_DETECT)
				return fail(p, "listen: defer-accept cannot apply to detect listeners "
					    "(their silent clients would wait in the kernel, unseen)");
			if (strcmp(value, "off") != 0 && (!parse_duration(value, &ms) || ms < 1000 || ms > 3600000))
				return fail(p, "listen: bad defer-accept '%s' (expected off or a duration "
					    "from 1s to 1h such as 10s)", value);
			l.defer_accept_s = ms / 1000;
		} else {
			unsigned backlog;
			if (!parse_range(value, 1, 65535, &backlog))
				return fail(p, "listen: bad backlog '%s' (expected 1..65535)", value);
			l.backlog = (int)backlog;
		}
	}
	if (l.v6only >= 0 && l.addr.ss_family != AF_INET6)
		return fail(p, "listen: v6only applies only to IPv6 addresses such as [::]:443");

	for (size_t i = 0; i < cfg->n_listeners; i++)
		if (strcmp(cfg->listeners[i].text, l.text) == 0)
			return fail(p, "listen: %s already declared on line %d", l.text,
				    cfg->listeners[i].line);
	struct config_listener *grown = realloc(cfg->listeners, (cfg->n_listeners + 1) * sizeof(*grown));
	if (grown == NULL)
		return fail(p, "out of memory");
	cfg->listeners = grown;
	cfg->listeners[cfg->n_listeners++] = l;
	return 0;
}

bool
config_is_trusted(const struct config_listener *l, const struct sockaddr_storage *addr)
{
	const unsigned char *a;
	int family = addr->ss_family;
	unsigned char mapped[4];
	if (family == AF_INET) {
		a = (const unsigned char *)&((const struct sockaddr_in *)(const void *)addr)->sin_addr;
	} else if (family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)(const void *)addr)->sin6_addr;
		a = a6->s6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a6)) {	/* a dual-stack listener sees IPv4 clients this way */
			memcpy(mapped, a + 12, 4);
			a = mapped;
			family = AF_INET;
		}
	} else {
		return false;
	}
	for (size_t i = 0; i < l->n_trusted; i++) {
		const struct config_cidr *c = &l->trusted[i];
		if (c->family != family)
			continue;
		unsigned full = c->prefix / 8, rest = c->prefix % 8;
		if (memcmp(a, c->addr, full) != 0)
			continue;
		if (rest != 0) {
			unsigned char mask = (unsigned char)(0xff << (8 - rest));
			if ((a[full] & mask) != (c->addr[full] & mask))
				continue;
		}
		return true;
	}
	return false;
}
