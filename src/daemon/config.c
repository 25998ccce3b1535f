/* config.c - parse and validate the configuration file; answer who may claim which name. */
#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "config_internal.h"
#include "hostname.h"
#include "iplimit.h"
#include "workers.h"

const char config_builtin[] =
	"# Built-in configuration: the demo. Unprivileged loopback ports.\n"
	"listen 127.0.0.1:8443 tls\n"
	"listen [::1]:8443 tls\n"
	"listen 127.0.0.1:8080 http\n"
	"grant * to self\n";

/* Order here is the order "unknown directive" lists them in. */
static const struct directive directives[] = {
	{ "runtime-dir", "runtime-dir PATH", DIRECTIVE_RUNTIME_DIR, 0 },
	{ "access-log", "access-log stderr|off|PATH", DIRECTIVE_ACCESS_LOG, 0 },
	{ "peek-timeout", "peek-timeout DURATION", DIRECTIVE_DURATION,
	  offsetof(struct config, peek_timeout_ms) },
	{ "handoff-timeout", "handoff-timeout DURATION", DIRECTIVE_DURATION,
	  offsetof(struct config, handoff_timeout_ms) },
	{ "max-peeking", "max-peeking N", DIRECTIVE_COUNT, offsetof(struct config, max_peeking) },
	{ "max-per-ip", "max-per-ip N", DIRECTIVE_COUNT, offsetof(struct config, max_per_ip) },
	{ "max-pending", "max-pending N", DIRECTIVE_COUNT, offsetof(struct config, max_pending) },
	{ "max-relays", "max-relays N", DIRECTIVE_COUNT, offsetof(struct config, max_relays) },
	{ "max-relays-per-ip", "max-relays-per-ip N", DIRECTIVE_COUNT, offsetof(struct config, max_relays_per_ip) },
	{ "workers", "workers N|auto", DIRECTIVE_WORKERS, 0 },
	{ "ipv6-prefix", "ipv6-prefix BITS", DIRECTIVE_IPV6_PREFIX, offsetof(struct config, ipv6_prefix) },
	{ "listen", "listen ADDRESS:PORT tls|http|detect [default NAME] [v6only on|off] [backlog N] [accept-proxy CIDR[,CIDR...]] "
		    "[detect-timeout D] [defer-accept D|off]",
	  DIRECTIVE_LISTEN, 0 },
	{ "grant", "grant PATTERN|protocol ssh|silent to PRINCIPAL [PRINCIPAL ...]", DIRECTIVE_GRANT, 0 },
	{ "route", "route PATTERN [alpn ID]|protocol ssh|silent to tcp:HOST:PORT [weight N] [tcp:HOST:PORT ...] [balance round-robin|least-conn] "
		   "[proxy v1|v2] [connect-timeout D] [idle-timeout D] [fail-after N] [retry-after D] [check D]",
	  DIRECTIVE_ROUTE, 0 },
	{ "admin", "admin ADDRESS:PORT|unix:PATH, or admin allow CIDR[,CIDR...]", DIRECTIVE_ADMIN, 0 },
	{ "user", "user NAME|UID", DIRECTIVE_USER, 0 },
	{ "group", "group NAME|GID", DIRECTIVE_GROUP, 0 },
};
_Static_assert(sizeof(directives) / sizeof(directives[0]) == N_DIRECTIVES,
	       "N_DIRECTIVES in config_internal.h counts the directive table");

/* Format one diagnostic into err. Words from the file are quoted verbatim,
 * so control bytes are masked to keep the message on one printable line. */
static void
vreport(char *err, size_t errlen, const char *label, int line, const char *fmt, va_list ap)
{
	if (err == NULL || errlen == 0)
		return;
	int n = line > 0 ? snprintf(err, errlen, "%s:%d: ", label, line)
			 : snprintf(err, errlen, "%s: ", label);
	if (n >= 0 && (size_t)n < errlen)
		vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
	for (char *c = err; *c != '\0'; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
}

static int __attribute__((format(printf, 5, 6)))
report(char *err, size_t errlen, const char *label, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreport(err, errlen, label, line, fmt, ap);
	va_end(ap);
	return -1;
}

/* Report a problem on the current line; returns -1 so callers can return it. */
int
fail(struct parser *p, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreport(p->err, p->errlen, p->label, p->line, fmt, ap);
	va_end(ap);
	return -1;
}

int
fail_usage(struct parser *p, const struct directive *d)
{
	return fail(p, "%s: expected '%s'", d->name, d->usage);
}

/* Decimal digits only: no sign, no blanks, no base prefixes. */
bool
parse_decimal(const char *s, unsigned long long max, unsigned long long *out)
{
	if (*s < '0' || *s > '9')
		return false;
	unsigned long long v = 0;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned digit = (unsigned)(*s - '0');
		if (v > (max - digit) / 10)
			return false;
		v = v * 10 + digit;
	}
	if (*s != '\0')
		return false;
	*out = v;
	return true;
}

bool
parse_range(const char *s, unsigned min, unsigned max, unsigned *out)
{
	unsigned long long v;
	if (!parse_decimal(s, max, &v) || v < min)
		return false;
	*out = (unsigned)v;
	return true;
}

enum cidr_result
parse_cidr(const char *item, struct config_cidr *c, unsigned *max_prefix)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *slash = strchr(item, '/');
	size_t host_len = slash ? (size_t)(slash - item) : strlen(item);
	if (host_len >= sizeof(host))
		return CIDR_BAD_ADDRESS;
	memcpy(host, item, host_len);
	host[host_len] = '\0';
	char *h = host;
	if (h[0] == '[' && host_len > 2 && h[host_len - 1] == ']') {
		h[host_len - 1] = '\0';
		h++;
	}
	if (inet_pton(AF_INET, h, c->addr) == 1) {
		c->family = AF_INET;
		*max_prefix = 32;
	} else if (inet_pton(AF_INET6, h, c->addr) == 1) {
		c->family = AF_INET6;
		*max_prefix = 128;
	} else {
		return CIDR_BAD_ADDRESS;
	}
	c->prefix = *max_prefix;
	if (slash != NULL && !parse_range(slash + 1, 0, *max_prefix, &c->prefix))
		return CIDR_BAD_PREFIX;
	return CIDR_OK;
}

/* "500ms", "10s", "2m" or a bare number of seconds; > 0 and at most an hour. */
bool
parse_duration(const char *s, unsigned *ms)
{
	size_t digits = strspn(s, "0123456789");
	const char *suffix = s + digits;
	unsigned scale;
	if (digits == 0)
		return false;
	if (strcmp(suffix, "ms") == 0)
		scale = 1;
	else if (strcmp(suffix, "s") == 0 || *suffix == '\0')
		scale = 1000;
	else if (strcmp(suffix, "m") == 0)
		scale = 60 * 1000;
	else
		return false;
	char number[24];
	if (digits >= sizeof(number))
		return false;
	memcpy(number, s, digits);
	number[digits] = '\0';
	unsigned long long v;
	if (!parse_decimal(number, DURATION_MAX_MS, &v) || v == 0 || v * scale > DURATION_MAX_MS)
		return false;
	*ms = (unsigned)(v * scale);
	return true;
}

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/*
 * Split line in place into words. Blanks separate words, '#' outside double
 * quotes ends the line, and "double quoted" words may hold blanks and '#'
 * (inside them \" is a quote and \\ a backslash).
 */
static int
split_words(struct parser *p, char *line, char **words, size_t *n_words)
{
	char *s = line;
	size_t n = 0;
	for (;;) {
		while (is_blank(*s))
			s++;
		if (*s == '\0' || *s == '#')
			break;
		if (n == CONFIG_WORDS_MAX)
			return fail(p, "too many words");
		if (*s == '"') {
			char *out = ++s;
			words[n++] = out;
			while (*s != '"') {
				if (*s == '\0')
					return fail(p, "unterminated double quote");
				if (*s == '\\' && (s[1] == '"' || s[1] == '\\'))
					s++;
				*out++ = *s++;
			}
			s++;
			if (*s != '\0' && *s != '#' && !is_blank(*s))
				return fail(p, "closing double quote must be followed by a blank");
			*out = '\0';	/* may overwrite the closing quote, never what follows */
			continue;
		}
		words[n++] = s;
		while (*s != '\0' && *s != '#' && !is_blank(*s)) {
			if (*s == '"')
				return fail(p, "double quote inside a word (quote the whole word)");
			s++;
		}
		if (*s == '#') {
			*s = '\0';
			break;
		}
		if (*s != '\0')
			*s++ = '\0';
	}
	*n_words = n;
	return 0;
}

static int
parse_runtime_dir(struct parser *p, const char *path)
{
	if (path[0] != '/')
		return fail(p, "runtime-dir: '%s' is not an absolute path", path);
	if (strlen(path) >= sizeof(p->cfg->runtime_dir))
		return fail(p, "runtime-dir: path too long");
	strcpy(p->cfg->runtime_dir, path);
	return 0;
}

static int
parse_access_log(struct parser *p, const char *where)
{
	if (strcmp(where, "stderr") != 0 && strcmp(where, "off") != 0 && where[0] != '/')
		return fail(p, "access-log: '%s' is not stderr, off or an absolute path", where);
	if (strlen(where) >= sizeof(p->cfg->access_log))
		return fail(p, "access-log: path too long");
	strcpy(p->cfg->access_log, where);
	return 0;
}

/* add_uid and add_gid append an id unless the grant lists it already. */
static int
add_uid(struct config_grant *g, uid_t uid)
{
	for (size_t i = 0; i < g->n_uids; i++)
		if (g->uids[i] == uid)
			return 0;
	uid_t *grown = realloc(g->uids, (g->n_uids + 1) * sizeof(*grown));
	if (grown == NULL)
		return -1;
	g->uids = grown;
	g->uids[g->n_uids++] = uid;
	return 0;
}

static int
add_gid(struct config_grant *g, gid_t gid)
{
	for (size_t i = 0; i < g->n_gids; i++)
		if (g->gids[i] == gid)
			return 0;
	gid_t *grown = realloc(g->gids, (g->n_gids + 1) * sizeof(*grown));
	if (grown == NULL)
		return -1;
	g->gids = grown;
	g->gids[g->n_gids++] = gid;
	return 0;
}

/* A numeric uid or gid; (id_t)-1 is excluded because chown() reserves it. */
bool
parse_id(const char *s, unsigned *id)
{
	unsigned long long v;
	if (!parse_decimal(s, UINT32_MAX - 1, &v))
		return false;
	*id = (unsigned)v;
	return true;
}

static int
add_principal(struct parser *p, struct config_grant *g, const char *word)
{
	static const char hint[] = "expected a user name, a numeric uid, @group, @GID or self";
	unsigned id;
	int rc;
	if (strcmp(word, "self") == 0) {
		/* Resolved once the whole file is read: `user` may come later. */
		rc = add_uid(g, SELF_UID);
	} else if (word[0] == '@') {
		const char *group = word + 1;
		if (group[0] == '\0')
			return fail(p, "grant: '@' needs a group name or GID after it (%s)", hint);
		if (group[0] >= '0' && group[0] <= '9') {
			if (!parse_id(group, &id))
				return fail(p, "grant: bad GID '%s' (%s)", group, hint);
			rc = add_gid(g, (gid_t)id);
		} else {
			const struct group *gr = getgrnam(group);
			if (gr == NULL)
				return fail(p, "grant: unknown group '%s' (%s)", group, hint);
			rc = add_gid(g, gr->gr_gid);
		}
	} else if (word[0] >= '0' && word[0] <= '9') {
		if (!parse_id(word, &id))
			return fail(p, "grant: bad uid '%s' (%s)", word, hint);
		rc = add_uid(g, (uid_t)id);
	} else {
		const struct passwd *pw = getpwnam(word);
		if (pw == NULL)
			return fail(p, "grant: unknown user '%s' (%s)", word, hint);
		rc = add_uid(g, pw->pw_uid);
	}
	return rc < 0 ? fail(p, "out of memory") : 0;
}

static int
parse_grant(struct parser *p, const struct directive *d, char **args, size_t n)
{
	struct config *cfg = p->cfg;
	char pattern[sizeof(cfg->grants[0].pattern)];
	/* "grant protocol ssh to ...": who may claim the clients of a protocol
	 * that carries no name. */
	if (n >= 4 && strcmp(args[0], "protocol") == 0 && strcmp(args[2], "to") == 0) {
		const char *key = config_protocol_key(args[1]);
		if (key == NULL)
			return fail(p, "grant: unknown protocol '%s' (expected ssh or silent)", args[1]);
		snprintf(pattern, sizeof(pattern), "%s", key);
		args++;
		n--;
	} else {
		if (n < 3 || strcmp(args[1], "to") != 0)
			return fail_usage(p, d);
		size_t len = strlen(args[0]);
		size_t normalized = args[0][0] == '*'
			? hostname_normalize_pattern(args[0], len, pattern, sizeof(pattern))
			: hostname_normalize(args[0], len, pattern, sizeof(pattern));
		if (normalized == 0)
			return fail(p, "grant: bad pattern '%s' (expected a host name, *.suffix or *)", args[0]);
	}

	/* Grant lines for one pattern accumulate into one entry. */
	struct config_grant *g = NULL;
	for (size_t i = 0; i < cfg->n_grants && g == NULL; i++)
		if (strcmp(cfg->grants[i].pattern, pattern) == 0)
			g = &cfg->grants[i];
	if (g == NULL) {
		struct config_grant *grown = realloc(cfg->grants, (cfg->n_grants + 1) * sizeof(*grown));
		if (grown == NULL)
			return fail(p, "out of memory");
		cfg->grants = grown;
		g = &cfg->grants[cfg->n_grants++];
		memset(g, 0, sizeof(*g));
		strcpy(g->pattern, pattern);
		g->line = p->line;
	}
	for (size_t i = 2; i < n; i++)
		if (add_principal(p, g, args[i]) < 0)
			return -1;
	return 0;
}

/* `workers auto` is one per CPU this process may run on. */
static int
parse_workers(struct parser *p, const char *word)
{
	if (strcmp(word, "auto") == 0) {
		cpu_set_t cpus;
		int n = sched_getaffinity(0, sizeof(cpus), &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
		p->cfg->workers = n < 1 ? 1 : n > WORKERS_MAX ? WORKERS_MAX : (unsigned)n;
		return 0;
	}
	if (!parse_range(word, 1, WORKERS_MAX, &p->cfg->workers))
		return fail(p, "workers: bad number '%s' (expected 1..%u, or auto for one per CPU)", word,
			    WORKERS_MAX);
	return 0;
}

static int
parse_line(struct parser *p, char *line)
{
	char *words[CONFIG_WORDS_MAX];
	size_t n = 0;
	if (split_words(p, line, words, &n) < 0)
		return -1;
	if (n == 0)
		return 0;

	size_t i;
	for (i = 0; i < N_DIRECTIVES; i++)
		if (strcmp(words[0], directives[i].name) == 0)
			break;
	if (i == N_DIRECTIVES) {
		char known[256] = "";
		for (size_t k = 0; k < N_DIRECTIVES; k++) {
			if (k > 0)
				strcat(known, ", ");
			strcat(known, directives[k].name);
		}
		return fail(p, "unknown directive '%s' (known: %s)", words[0], known);
	}

	const struct directive *d = &directives[i];
	char **args = words + 1;
	size_t n_args = n - 1;
	if (d->kind == DIRECTIVE_LISTEN)
		return parse_listen(p, d, args, n_args);
	if (d->kind == DIRECTIVE_GRANT)
		return parse_grant(p, d, args, n_args);
	if (d->kind == DIRECTIVE_ROUTE)
		return parse_route(p, d, args, n_args);
	if (d->kind == DIRECTIVE_ADMIN)
		return parse_admin(p, d, args, n_args);

	/* The rest take exactly one value and may appear once. */
	if (n_args != 1)
		return fail_usage(p, d);
	if (p->set_on_line[i] != 0)
		return fail(p, "%s: already set on line %d", d->name, p->set_on_line[i]);
	p->set_on_line[i] = p->line;
	unsigned *field = d->kind == DIRECTIVE_DURATION || d->kind == DIRECTIVE_COUNT
			  || d->kind == DIRECTIVE_IPV6_PREFIX
		? (unsigned *)(void *)((char *)p->cfg + d->field) : NULL;
	switch (d->kind) {
	case DIRECTIVE_RUNTIME_DIR:
		return parse_runtime_dir(p, args[0]);
	case DIRECTIVE_ACCESS_LOG:
		return parse_access_log(p, args[0]);
	case DIRECTIVE_WORKERS:
		return parse_workers(p, args[0]);
	case DIRECTIVE_USER:
		return parse_user(p, args[0]);
	case DIRECTIVE_GROUP:
		return parse_group(p, args[0]);
	case DIRECTIVE_DURATION:
		if (!parse_duration(args[0], field))
			return fail(p, "%s: bad duration '%s' (expected e.g. 500ms, 10s or 2m; more than 0, at most 60m)",
				    d->name, args[0]);
		return 0;
	case DIRECTIVE_COUNT:
		if (!parse_range(args[0], 1, COUNT_MAX, field))
			return fail(p, "%s: bad number '%s' (expected 1..%u)", d->name, args[0], COUNT_MAX);
		return 0;
	case DIRECTIVE_IPV6_PREFIX:
		if (!parse_range(args[0], 1, 128, field))
			return fail(p, "%s: bad prefix length '%s' (expected 1..128 bits; 64 counts a whole /64 "
				    "as one client)", d->name, args[0]);
		return 0;
	case DIRECTIVE_LISTEN:
	case DIRECTIVE_GRANT:
	case DIRECTIVE_ROUTE:
	case DIRECTIVE_ADMIN:
		break;
	}
	return 0;
}

static void
set_defaults(struct config *cfg, const char *label)
{
	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->source, sizeof(cfg->source), "%s", label);
	config_default_runtime_dir(cfg->runtime_dir, sizeof(cfg->runtime_dir));
	strcpy(cfg->access_log, "stderr");
	cfg->peek_timeout_ms = 10 * 1000;
	cfg->handoff_timeout_ms = 5 * 1000;
	cfg->max_peeking = 4096;
	cfg->max_per_ip = 64;
	cfg->ipv6_prefix = IPLIMIT_IPV6_PREFIX_DEFAULT;
	cfg->max_pending = 256;
	cfg->max_relays = 512;
	cfg->max_relays_per_ip = 32;
	cfg->workers = 1;
}

/* max-relays-per-ip above max-relays could never apply: an explicit one is
 * a mistake to report, the default simply follows a lower max-relays. */
static int
check_relay_limits(struct parser *p)
{
	struct config *cfg = p->cfg;
	if (cfg->max_relays_per_ip <= cfg->max_relays)
		return 0;
	int per_ip_line = 0;
	for (size_t i = 0; i < N_DIRECTIVES; i++)
		if (directives[i].field == offsetof(struct config, max_relays_per_ip) &&
		    directives[i].kind == DIRECTIVE_COUNT)
			per_ip_line = p->set_on_line[i];
	if (per_ip_line == 0) {
		cfg->max_relays_per_ip = cfg->max_relays;
		return 0;
	}
	p->line = per_ip_line;
	return fail(p, "max-relays-per-ip: %u is more than max-relays %u (lower it, or raise max-relays)",
		    cfg->max_relays_per_ip, cfg->max_relays);
}

/* Where `group` was given, 0 if not. */
static int
group_line(const struct parser *p)
{
	for (size_t i = 0; i < N_DIRECTIVES; i++)
		if (directives[i].kind == DIRECTIVE_GROUP)
			return p->set_on_line[i];
	return 0;
}

int
config_load_string(const char *text, const char *label, struct config *out, char *err, size_t errlen)
{
	struct config cfg;
	struct parser p;
	char line[CONFIG_LINE_MAX + 1];
	set_defaults(&cfg, label);
	memset(&p, 0, sizeof(p));
	p.cfg = &cfg;
	p.label = label;
	p.err = err;
	p.errlen = errlen;

	for (const char *start = text; *start != '\0';) {
		const char *end = strchr(start, '\n');
		size_t len = end != NULL ? (size_t)(end - start) : strlen(start);
		p.line++;
		if (len > CONFIG_LINE_MAX) {
			fail(&p, "line longer than %d bytes", CONFIG_LINE_MAX);
			goto error;
		}
		memcpy(line, start, len);
		line[len] = '\0';
		if (parse_line(&p, line) < 0)
			goto error;
		start += len + (end != NULL);
	}
	if (cfg.n_listeners == 0) {
		report(err, errlen, label, 0, "no 'listen' directive (add e.g. 'listen 127.0.0.1:8443 tls')");
		goto error;
	}
	if (check_relay_limits(&p) < 0 || check_admin(&p) < 0 || finish_user(&p, group_line(&p)) < 0)
		goto error;
	for (size_t i = 0; i < cfg.n_listeners; i++) {
		const struct config_listener *l = &cfg.listeners[i];
		if (l->proto == LISTENER_DETECT && l->detect_timeout_ms >= cfg.peek_timeout_ms) {
			p.line = l->line;
			fail(&p, "listen: detect-timeout %u ms is not shorter than peek-timeout %u ms "
			     "(lower it, or raise peek-timeout)", l->detect_timeout_ms, cfg.peek_timeout_ms);
			goto error;
		}
	}
	*out = cfg;
	return 0;
error:
	config_free(&cfg);
	memset(out, 0, sizeof(*out));
	return -1;
}

int
config_load_file(const char *path, struct config *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return report(err, errlen, path, 0, "cannot read: %s", strerror(errno));
	char *text = malloc(CONFIG_FILE_MAX + 1);
	if (text == NULL) {
		fclose(f);
		return report(err, errlen, path, 0, "cannot read: %s", strerror(ENOMEM));
	}
	/* Read one byte past the limit to tell "exactly at" from "over". */
	size_t len = fread(text, 1, CONFIG_FILE_MAX + 1, f);
	int read_errno = ferror(f) ? errno : 0;
	fclose(f);
	int rc = -1;
	if (read_errno != 0) {
		report(err, errlen, path, 0, "cannot read: %s", strerror(read_errno));
	} else if (len > CONFIG_FILE_MAX) {
		report(err, errlen, path, 0, "larger than %d bytes; is this the configuration file?",
		       CONFIG_FILE_MAX);
	} else {
		text[len] = '\0';
		const char *nul = memchr(text, '\0', len);
		if (nul != NULL) {
			int line = 1;
			for (const char *c = text; c < nul; c++)
				line += *c == '\n';
			report(err, errlen, path, line, "NUL byte in line; is this a text file?");
		} else {
			rc = config_load_string(text, path, out, err, errlen);
		}
	}
	free(text);
	return rc;
}

void
config_free(struct config *cfg)
{
	for (size_t i = 0; i < cfg->n_grants; i++) {
		free(cfg->grants[i].uids);
		free(cfg->grants[i].gids);
	}
	free(cfg->grants);
	free(cfg->listeners);
	for (size_t i = 0; i < cfg->n_routes; i++)
		free(cfg->routes[i].targets);
	free(cfg->routes);
	memset(cfg, 0, sizeof(*cfg));
}

/*
 * The groups uid belongs to: its primary group and supplementary ones, as
 * the group database says now. Returns the count (0 if uid has no passwd
 * entry) and a malloc'd array in *out, or -1 on allocation failure.
 */
static int
groups_of(uid_t uid, gid_t **out)
{
	*out = NULL;
	const struct passwd *pw = getpwuid(uid);
	if (pw == NULL)
		return 0;
	gid_t primary = pw->pw_gid;
	char *user = strdup(pw->pw_name);	/* getgrouplist may reuse NSS buffers */
	if (user == NULL)
		return -1;
	int n = 32;
	/* getgrouplist reports the size it needs; the second try normally
	 * fits, the third covers the group file changing in between. */
	for (int attempt = 0; attempt < 3; attempt++) {
		gid_t *groups = malloc((size_t)n * sizeof(*groups));
		if (groups == NULL)
			break;
		int want = n;
		if (getgrouplist(user, primary, groups, &want) >= 0) {
			free(user);
			*out = groups;
			return want;
		}
		free(groups);
		n = want > n ? want : n * 2;
	}
	free(user);
	return -1;
}

const char *
config_protocol_key(const char *word)
{
	if (strcmp(word, "ssh") == 0)
		return PROTOCOL_KEY_SSH;
	if (strcmp(word, "silent") == 0)
		return PROTOCOL_KEY_SILENT;
	return NULL;
}

bool
config_alpn_valid(const char *text, size_t len)
{
	if (len == 0 || len > ALPN_ID_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (text[i] <= 0x20 || text[i] >= 0x7f)
			return false;
	return true;
}

bool
config_may_claim(const struct config *cfg, const char *name, uid_t uid)
{
	gid_t *groups = NULL;
	int n_groups = -2;	/* not looked up yet; only group grants need it */
	bool allowed = false;
	for (size_t i = 0; i < cfg->n_grants && !allowed; i++) {
		const struct config_grant *g = &cfg->grants[i];
		bool protocol_key = strchr(name, ':') != NULL;
		if (protocol_key ? strcmp(g->pattern, name) != 0 : !hostname_pattern_covers(g->pattern, name))
			continue;
		for (size_t k = 0; k < g->n_uids && !allowed; k++)
			allowed = g->uids[k] == uid;
		if (allowed || g->n_gids == 0)
			continue;
		if (n_groups == -2)
			n_groups = groups_of(uid, &groups);
		for (size_t k = 0; k < g->n_gids && !allowed; k++)
			for (int m = 0; m < n_groups && !allowed; m++)
				allowed = groups[m] == g->gids[k];
	}
	free(groups);
	return allowed;
}
