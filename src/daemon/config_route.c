/* config_route.c - the route directive: TCP targets, balancing, health and timeouts. */
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

/* "tcp:HOST:PORT": HOST numeric (IPv6 in brackets) or a name resolved now;
 * each address becomes one target. */
static int
add_tcp_target(struct parser *p, struct config_route *r, const char *word)
{
	static const char hint[] = "expected tcp:HOST:PORT, e.g. tcp:127.0.0.1:9443, tcp:[::1]:9443 or tcp:backend.lan:443";
	const char *spec = word + 4;
	const char *host_start = spec, *host_end, *port;
	if (spec[0] == '[') {
		host_start = spec + 1;
		host_end = strchr(host_start, ']');
		if (host_end == NULL || host_end[1] != ':')
			return fail(p, "route: bad target '%s' (%s)", word, hint);
		port = host_end + 2;
	} else {
		host_end = strrchr(spec, ':');
		if (host_end == NULL)
			return fail(p, "route: target '%s' has no port (%s)", word, hint);
		port = host_end + 1;
	}
	char host[256];
	size_t host_len = (size_t)(host_end - host_start);
	unsigned port_number;
	if (host_len == 0 || host_len >= sizeof(host))
		return fail(p, "route: bad host in '%s' (%s)", word, hint);
	if (!parse_range(port, 1, 65535, &port_number))
		return fail(p, "route: bad port in '%s' (expected 1..65535)", word);
	memcpy(host, host_start, host_len);
	host[host_len] = '\0';

	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res = NULL;
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0)
		return fail(p, "route: cannot resolve '%s': %s (check the name, or use an address)", host,
			    gai_strerror(rc));
	int added = 0;
	for (struct addrinfo *ai = res; ai != NULL && added < 8; ai = ai->ai_next) {
		if (ai->ai_addrlen > sizeof(struct sockaddr_storage))
			continue;
		bool duplicate = false;
		for (size_t i = 0; i < r->n_targets && !duplicate; i++)
			duplicate = r->targets[i].addrlen == ai->ai_addrlen &&
				    memcmp(&r->targets[i].addr, ai->ai_addr, ai->ai_addrlen) == 0;
		if (duplicate)
			continue;
		struct config_target *grown = realloc(r->targets, (r->n_targets + 1) * sizeof(*grown));
		if (grown == NULL) {
			freeaddrinfo(res);
			return fail(p, "out of memory");
		}
		r->targets = grown;
		struct config_target *t = &r->targets[r->n_targets++];
		memset(t, 0, sizeof(*t));
		snprintf(t->text, sizeof(t->text), "%s", word);
		memcpy(&t->addr, ai->ai_addr, ai->ai_addrlen);
		t->addrlen = ai->ai_addrlen;
		t->weight = 1;
		added++;
	}
	freeaddrinfo(res);
	if (added == 0)
		return fail(p, "route: '%s' resolves to no new address", word);
	return added;
}

int
parse_route(struct parser *p, const struct directive *d, char **args, size_t n)
{
	struct config *cfg = p->cfg;
	struct config_route r;
	memset(&r, 0, sizeof(r));
	r.line = p->line;
	r.connect_timeout_ms = 5 * 1000;
	r.idle_timeout_ms = 10 * 60 * 1000;
	r.fail_after = 3;
	r.retry_after_ms = 30 * 1000;
	/* "route protocol ssh to ...": the clients of a protocol without names;
	 * "route NAME alpn ID to ...": those of NAME offering ALPN protocol ID. */
	if (n >= 4 && strcmp(args[0], "protocol") == 0 && strcmp(args[2], "to") == 0) {
		const char *key = config_protocol_key(args[1]);
		if (key == NULL)
			return fail(p, "route: unknown protocol '%s' (expected ssh or silent)", args[1]);
		snprintf(r.pattern, sizeof(r.pattern), "%s", key);
		args++;	/* args[1] is "to", as for a pattern */
		n--;
	} else {
		if (n < 3)
			return fail_usage(p, d);
		size_t len = strlen(args[0]);
		if ((args[0][0] == '*' ? hostname_normalize_pattern(args[0], len, r.pattern, sizeof(r.pattern))
				       : hostname_normalize(args[0], len, r.pattern, sizeof(r.pattern))) == 0)
			return fail(p, "route: bad pattern '%s' (expected a host name, *.suffix or *)", args[0]);
		if (n >= 5 && strcmp(args[1], "alpn") == 0) {
			if (!config_alpn_valid(args[2], strlen(args[2])))
				return fail(p, "route: bad ALPN id '%s' (expected 1..255 visible ASCII bytes, e.g. h2 "
					    "or acme-tls/1)", args[2]);
			snprintf(r.alpn, sizeof(r.alpn), "%s", args[2]);
			args += 2;	/* args[1] is "to", as without alpn */
			n -= 2;
		}
	}
	if (n < 3 || strcmp(args[1], "to") != 0)
		return fail_usage(p, d);
	for (size_t i = 0; i < cfg->n_routes; i++)
		if (strcmp(cfg->routes[i].pattern, r.pattern) == 0 && strcmp(cfg->routes[i].alpn, r.alpn) == 0)
			return fail(p, "route: %s%s%s already routed on line %d", r.pattern, r.alpn[0] ? " alpn " : "",
				    r.alpn, cfg->routes[i].line);

	int last_added = 0;
	for (size_t i = 2; i < n; i++) {
		const char *w = args[i];
		if (strncmp(w, "tcp:", 4) == 0) {
			if ((last_added = add_tcp_target(p, &r, w)) < 0)
				goto fail;
			continue;
		}
		if (i + 1 >= n) {
			fail(p, "route: '%s' needs a value; expected '%s'", w, d->usage);
			goto fail;
		}
		const char *v = args[++i];
		bool ok = true;
		if (strcmp(w, "weight") == 0) {
			unsigned weight;
			if (last_added == 0) {
				fail(p, "route: 'weight' must follow a tcp: target");
				goto fail;
			}
			ok = parse_range(v, 1, 1000, &weight);
			for (size_t k = r.n_targets - (size_t)last_added; ok && k < r.n_targets; k++)
				r.targets[k].weight = weight;
			last_added = 0;
		} else if (strcmp(w, "balance") == 0) {
			if (strcmp(v, "round-robin") == 0)
				r.balance = BALANCE_ROUND_ROBIN;
			else if (strcmp(v, "least-conn") == 0)
				r.balance = BALANCE_LEAST_CONN;
			else
				ok = false;
		} else if (strcmp(w, "proxy") == 0) {
			if (strcmp(v, "v1") == 0)
				r.proxy_version = 1;
			else if (strcmp(v, "v2") == 0)
				r.proxy_version = 2;
			else
				ok = false;
		} else if (strcmp(w, "connect-timeout") == 0) {
			ok = parse_duration(v, &r.connect_timeout_ms);
		} else if (strcmp(w, "idle-timeout") == 0) {
			ok = parse_duration(v, &r.idle_timeout_ms);
		} else if (strcmp(w, "fail-after") == 0) {
			ok = parse_range(v, 1, 1000, &r.fail_after);
		} else if (strcmp(w, "retry-after") == 0) {
			ok = parse_duration(v, &r.retry_after_ms);
		} else if (strcmp(w, "check") == 0) {
			ok = parse_duration(v, &r.check_interval_ms);
		} else {
			fail(p, "route: unknown option '%s'; expected '%s'", w, d->usage);
			goto fail;
		}
		if (!ok) {
			fail(p, "route: bad value '%s' for %s", v, w);
			goto fail;
		}
	}
	if (r.n_targets == 0) {
		fail(p, "route: %s has no tcp: target (local upstreams need no route line)", r.pattern);
		goto fail;
	}
	struct config_route *grown = realloc(cfg->routes, (cfg->n_routes + 1) * sizeof(*grown));
	if (grown == NULL) {
		fail(p, "out of memory");
		goto fail;
	}
	cfg->routes = grown;
	cfg->routes[cfg->n_routes++] = r;
	return 0;
fail:
	free(r.targets);
	return -1;
}
