/* config_internal.h - what the configuration reader shares with its per-directive parsers. */
#ifndef HANDOFF_CONFIG_INTERNAL_H
#define HANDOFF_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

#define CONFIG_LINE_MAX 4096		/* bytes per line, newline excluded */
#define CONFIG_FILE_MAX (1024 * 1024)	/* a configuration is a few lines; refuse the wrong file */
#define CONFIG_WORDS_MAX (CONFIG_LINE_MAX / 2 + 1)	/* one-byte words split by one blank */
#define DURATION_MAX_MS (60u * 60u * 1000u)
#define COUNT_MAX 1000000u
#define DEFAULT_BACKLOG 511

#define N_DIRECTIVES 17	/* entries in the directive table of config.c */

enum directive_kind {
	DIRECTIVE_RUNTIME_DIR,
	DIRECTIVE_ACCESS_LOG,
	DIRECTIVE_DURATION,
	DIRECTIVE_COUNT,
	DIRECTIVE_IPV6_PREFIX,
	DIRECTIVE_LISTEN,
	DIRECTIVE_GRANT,
	DIRECTIVE_ROUTE,
	DIRECTIVE_ADMIN,
	DIRECTIVE_USER,
	DIRECTIVE_GROUP,
	DIRECTIVE_WORKERS,
};

struct directive {
	const char *name;
	const char *usage;
	enum directive_kind kind;
	size_t field;		/* offsetof the unsigned it sets, for durations and counts */
};

struct parser {
	struct config *cfg;
	const char *label;
	int line;
	char *err;
	size_t errlen;
	int set_on_line[N_DIRECTIVES];	/* where a single-valued directive was given, 0 if not */
};

/* Report a problem on the current line; returns -1 so callers can return it. */
int fail(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int fail_usage(struct parser *p, const struct directive *d);
/* Decimal digits only: no sign, no blanks, no base prefixes. */
bool parse_decimal(const char *s, unsigned long long max, unsigned long long *out);
bool parse_range(const char *s, unsigned min, unsigned max, unsigned *out);
/* One client range: "10.0.0.0/8", "192.0.2.7" or "[2001:db8::]/32" (brackets
 * optional for IPv6) into c. On CIDR_BAD_PREFIX, *max_prefix is the bound the
 * prefix length broke (32 or 128), for the caller's message. */
enum cidr_result { CIDR_OK, CIDR_BAD_ADDRESS, CIDR_BAD_PREFIX };
enum cidr_result parse_cidr(const char *item, struct config_cidr *c, unsigned *max_prefix);
/* "500ms", "10s", "2m" or a bare number of seconds; > 0 and at most an hour. */
bool parse_duration(const char *s, unsigned *ms);

/* A numeric uid or gid; (id_t)-1 is excluded because chown() reserves it. */
bool parse_id(const char *s, unsigned *id);
/* A placeholder for `self` in a grant while the file is read, replaced
 * by finish_user; (uid_t)-1 never names a user (parse_id refuses it). */
#define SELF_UID ((uid_t)-1)

/* config_user.c: `user`, `group`, and once the whole file is read, the
 * check that they go together (group_line: where `group` was, 0 if not). */
int parse_user(struct parser *p, const char *word);
int parse_group(struct parser *p, const char *word);
int finish_user(struct parser *p, int group_line);

/* config_listen.c */
int parse_listen(struct parser *p, const struct directive *d, char **args, size_t n);
/* config_route.c */
int parse_route(struct parser *p, const struct directive *d, char **args, size_t n);

/* config_admin.c: the admin directive, and the check that it is not open
 * to everyone by accident (run once the whole file is read). */
int parse_admin(struct parser *p, const struct directive *d, char **args, size_t n);
int check_admin(struct parser *p);

#endif
