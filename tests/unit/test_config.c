/* test_config.c - unit tests for configuration parsing, its error messages and grant checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

#define LABEL "test.conf"
#define KNOWN "(known: runtime-dir, access-log, peek-timeout, handoff-timeout, max-peeking, " \
	      "max-per-ip, max-pending, max-relays, max-relays-per-ip, workers, ipv6-prefix, listen, grant, route, " \
	      "admin, user, group)"
#define LISTEN_USAGE "'listen ADDRESS:PORT tls|http|detect [default NAME] [v6only on|off] [backlog N] " \
	"[accept-proxy CIDR[,CIDR...]] [detect-timeout D] [defer-accept D|off]'"
#define ADDRESS_EXAMPLES "e.g. 127.0.0.1:8443, *:443 or [::1]:8443"
#define PRINCIPAL_HINT "expected a user name, a numeric uid, @group, @GID or self"
#define DURATION_HINT "expected e.g. 500ms, 10s or 2m; more than 0, at most 60m"
#define NOBODY_GROUP "nogroup"	/* Debian's group for nobody */

static void
load_ok(const char *text, struct config *cfg)
{
	char err[512] = "";
	if (config_load_string(text, LABEL, cfg, err, sizeof(err)) != 0)
		fail_msg("unexpected error loading:\n%s\n-> %s", text, err);
}

/* Loading text fails with exactly the message expected and leaves an empty
 * configuration behind. */
static void
expect_error(const char *text, const char *expected)
{
	struct config cfg;
	char err[512] = "";
	memset(&cfg, 0x5a, sizeof(cfg));
	assert_int_equal(config_load_string(text, LABEL, &cfg, err, sizeof(err)), -1);
	assert_string_equal(err, expected);
	assert_null(cfg.listeners);
	assert_int_equal(cfg.n_listeners, 0);
	assert_null(cfg.grants);
	assert_int_equal(cfg.n_grants, 0);
}

static uint16_t
listener_port(const struct config_listener *l)
{
	if (l->addr.ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)(const void *)&l->addr)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)(const void *)&l->addr)->sin6_port);
}

static const struct passwd *
must_getpwnam(const char *user)
{
	const struct passwd *pw = getpwnam(user);
	if (pw == NULL)
		fail_msg("this test needs the user '%s' in the passwd database", user);
	return pw;
}

static const struct group *
must_getgrnam(const char *group)
{
	const struct group *gr = getgrnam(group);
	if (gr == NULL)
		fail_msg("this test needs the group '%s' in the group database", group);
	return gr;
}

static void
test_defaults(void **state)
{
	(void)state;
	struct config cfg;
	char expected_dir[PATH_MAX];
	load_ok("listen 127.0.0.1:8443 tls\n", &cfg);
	config_default_runtime_dir(expected_dir, sizeof(expected_dir));
	assert_string_equal(cfg.source, LABEL);
	assert_string_equal(cfg.runtime_dir, expected_dir);
	assert_string_equal(cfg.access_log, "stderr");
	assert_int_equal(cfg.peek_timeout_ms, 10000);
	assert_int_equal(cfg.handoff_timeout_ms, 5000);
	assert_int_equal(cfg.max_peeking, 4096);
	assert_int_equal(cfg.max_per_ip, 64);
	assert_int_equal(cfg.ipv6_prefix, 64);
	assert_int_equal(cfg.max_pending, 256);
	assert_int_equal(cfg.max_relays, 512);
	assert_int_equal(cfg.max_relays_per_ip, 32);
	assert_int_equal(cfg.n_grants, 0);
	assert_int_equal(cfg.n_listeners, 1);

	const struct config_listener *l = &cfg.listeners[0];
	const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)&l->addr;
	assert_int_equal(l->addr.ss_family, AF_INET);
	assert_int_equal(l->addrlen, sizeof(struct sockaddr_in));
	assert_int_equal(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);
	assert_int_equal(listener_port(l), 8443);
	assert_int_equal(l->proto, LISTENER_TLS);
	assert_int_equal(l->v6only, -1);
	assert_int_equal(l->backlog, 511);
	assert_string_equal(l->default_name, "");
	assert_string_equal(l->text, "127.0.0.1:8443");
	assert_int_equal(l->line, 1);
	config_free(&cfg);
}

static void
test_explicit_values(void **state)
{
	(void)state;
	struct config cfg;
	load_ok("# every directive, with comments and blank lines\n"
		"\n"
		"runtime-dir /srv/handoff/run   # trailing comment\n"
		"access-log /var/log/handoff/access.log\n"
		"\tpeek-timeout 1500ms\n"
		"handoff-timeout 2m\n"
		"max-peeking 1000000\n"
		"max-per-ip 1\n"
		"max-pending 17\n"
		"listen [::]:443 tls default Fallback.Example. v6only on backlog 65535\r\n"
		"listen *:80 http backlog 1 default fallback.example\n",
		&cfg);
	assert_string_equal(cfg.runtime_dir, "/srv/handoff/run");
	assert_string_equal(cfg.access_log, "/var/log/handoff/access.log");
	assert_int_equal(cfg.peek_timeout_ms, 1500);
	assert_int_equal(cfg.handoff_timeout_ms, 120000);
	assert_int_equal(cfg.max_peeking, 1000000);
	assert_int_equal(cfg.max_per_ip, 1);
	assert_int_equal(cfg.max_pending, 17);
	assert_int_equal(cfg.n_listeners, 2);

	const struct config_listener *v6 = &cfg.listeners[0];
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)&v6->addr;
	assert_int_equal(v6->addr.ss_family, AF_INET6);
	assert_int_equal(v6->addrlen, sizeof(struct sockaddr_in6));
	assert_true(IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr));
	assert_int_equal(listener_port(v6), 443);
	assert_int_equal(v6->proto, LISTENER_TLS);
	assert_int_equal(v6->v6only, 1);
	assert_int_equal(v6->backlog, 65535);
	assert_string_equal(v6->default_name, "fallback.example");
	assert_string_equal(v6->text, "[::]:443");
	assert_int_equal(v6->line, 10);

	const struct config_listener *any = &cfg.listeners[1];
	const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)&any->addr;
	assert_int_equal(any->addr.ss_family, AF_INET);
	assert_int_equal(sin->sin_addr.s_addr, htonl(INADDR_ANY));
	assert_int_equal(listener_port(any), 80);
	assert_int_equal(any->proto, LISTENER_HTTP);
	assert_int_equal(any->v6only, -1);
	assert_int_equal(any->backlog, 1);
	assert_string_equal(any->default_name, "fallback.example");
	assert_string_equal(any->text, "0.0.0.0:80");
	assert_int_equal(any->line, 11);
	config_free(&cfg);
}

static void
test_access_log_words(void **state)
{
	(void)state;
	struct config cfg;
	load_ok("access-log off\nlisten 127.0.0.1:1 http\n", &cfg);
	assert_string_equal(cfg.access_log, "off");
	config_free(&cfg);
	load_ok("access-log stderr\nlisten 127.0.0.1:1 http\n", &cfg);
	assert_string_equal(cfg.access_log, "stderr");
	config_free(&cfg);
	expect_error("access-log handoff.log\nlisten 127.0.0.1:1 http\n",
		     LABEL ":1: access-log: 'handoff.log' is not stderr, off or an absolute path");
	expect_error("runtime-dir run/handoff\nlisten 127.0.0.1:1 http\n",
		     LABEL ":1: runtime-dir: 'run/handoff' is not an absolute path");
}

static void
test_durations(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		unsigned ms;
	} good[] = {
		{ "1ms", 1 }, { "500ms", 500 }, { "10s", 10000 }, { "7", 7000 },
		{ "2m", 120000 }, { "60m", 3600000 }, { "3600s", 3600000 },
		{ "3600000ms", 3600000 }, { "007s", 7000 },
	};
	static const char *const bad[] = {
		"0", "0ms", "0m", "3601s", "61m", "3600001ms", "10x", "10 s", "ms", "-1s",
		"+5s", "1h", "1.5s", "99999999999999999999999s", "10S",
	};
	char text[256], expected[256];
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct config cfg;
		snprintf(text, sizeof(text), "handoff-timeout %s\nlisten 127.0.0.1:1 tls\n", good[i].text);
		load_ok(text, &cfg);
		assert_int_equal(cfg.handoff_timeout_ms, good[i].ms);
		config_free(&cfg);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		/* Quoted, so that "10 s" stays one word. */
		snprintf(text, sizeof(text), "listen 127.0.0.1:1 tls\npeek-timeout \"%s\"\n", bad[i]);
		snprintf(expected, sizeof(expected), LABEL ":2: peek-timeout: bad duration '%s' (" DURATION_HINT ")",
			 bad[i]);
		expect_error(text, expected);
	}
}

/* ipv6-prefix: 1..128 bits, once; errors name the file and line. */
static void
test_ipv6_prefix(void **state)
{
	static const char *const bad[] = { "0", "129", "-1", "/64", "64bits", "" };
	char text[256], expected[256];
	struct config cfg;

	(void)state;
	load_ok("ipv6-prefix 48\nlisten 127.0.0.1:1 tls\n", &cfg);
	assert_int_equal(cfg.ipv6_prefix, 48);
	config_free(&cfg);
	load_ok("ipv6-prefix 128\nlisten 127.0.0.1:1 tls\n", &cfg);
	assert_int_equal(cfg.ipv6_prefix, 128);
	config_free(&cfg);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (bad[i][0] == '\0')
			continue;
		snprintf(text, sizeof(text), "listen 127.0.0.1:1 tls\nipv6-prefix %s\n", bad[i]);
		snprintf(expected, sizeof(expected), LABEL ":2: ipv6-prefix: bad prefix length '%s' "
			 "(expected 1..128 bits; 64 counts a whole /64 as one client)", bad[i]);
		expect_error(text, expected);
	}
	expect_error("ipv6-prefix 64\nipv6-prefix 56\nlisten 127.0.0.1:1 tls\n",
		     LABEL ":2: ipv6-prefix: already set on line 1");
	expect_error("ipv6-prefix\nlisten 127.0.0.1:1 tls\n", LABEL ":1: ipv6-prefix: expected 'ipv6-prefix BITS'");
}

static void
test_counts(void **state)
{
	(void)state;
	static const char *const bad[] = { "0", "1000001", "-1", "+5", "abc", "12k", "99999999999999999999" };
	char text[256], expected[256];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "max-pending %s\nlisten 127.0.0.1:1 tls\n", bad[i]);
		snprintf(expected, sizeof(expected), LABEL ":1: max-pending: bad number '%s' (expected 1..1000000)",
			 bad[i]);
		expect_error(text, expected);
	}
	expect_error("listen 127.0.0.1:1 tls backlog 0\n",
		     LABEL ":1: listen: bad backlog '0' (expected 1..65535)");
	expect_error("listen 127.0.0.1:1 tls backlog 65536\n",
		     LABEL ":1: listen: bad backlog '65536' (expected 1..65535)");
}

static void
test_address_forms(void **state)
{
	(void)state;
	struct config cfg;
	load_ok("listen 0.0.0.0:443 tls\n"
		"listen [::1]:8443 tls v6only off\n"
		"listen [0:0:0:0:0:0:0:1]:65535 http\n",
		&cfg);
	assert_int_equal(cfg.n_listeners, 3);
	assert_string_equal(cfg.listeners[0].text, "0.0.0.0:443");
	assert_string_equal(cfg.listeners[1].text, "[::1]:8443");
	assert_int_equal(cfg.listeners[1].v6only, 0);
	/* The canonical text is what inet_ntop prints, whatever was written. */
	assert_string_equal(cfg.listeners[2].text, "[::1]:65535");
	assert_int_equal(listener_port(&cfg.listeners[2]), 65535);
	config_free(&cfg);
}

static void
test_bad_addresses(void **state)
{
	(void)state;
	expect_error("listen localhost:80 tls\n",
		     LABEL ":1: listen: bad address 'localhost:80' (expected a numeric address, " ADDRESS_EXAMPLES ")");
	expect_error("# comment\nlisten 1.2.3:80 http\n",
		     LABEL ":2: listen: bad address '1.2.3:80' (expected a numeric address, " ADDRESS_EXAMPLES ")");
	expect_error("listen 127.000.0.1:80 http\n",
		     LABEL ":1: listen: bad address '127.000.0.1:80' (expected a numeric address, "
		     ADDRESS_EXAMPLES ")");
	expect_error("listen :80 http\n",
		     LABEL ":1: listen: bad address ':80' (expected a numeric address, " ADDRESS_EXAMPLES ")");
	expect_error("listen ::1:80 http\n",
		     LABEL ":1: listen: bad address '::1:80' (put IPv6 addresses in brackets, " ADDRESS_EXAMPLES ")");
	expect_error("listen [::1:80 http\n",
		     LABEL ":1: listen: bad address '[::1:80' (missing ']'; " ADDRESS_EXAMPLES ")");
	expect_error("listen [127.0.0.1]:80 http\n",
		     LABEL ":1: listen: bad address '[127.0.0.1]:80' (expected a numeric IPv6 address in brackets, "
		     ADDRESS_EXAMPLES ")");
	expect_error("listen 127.0.0.1 http\n",
		     LABEL ":1: listen: '127.0.0.1' has no port (expected ADDRESS:PORT, " ADDRESS_EXAMPLES ")");
	expect_error("listen [::1] http\n",
		     LABEL ":1: listen: '[::1]' has no port (expected ADDRESS:PORT, " ADDRESS_EXAMPLES ")");
}

static void
test_bad_ports(void **state)
{
	(void)state;
	expect_error("listen 127.0.0.1:0 tls\n",
		     LABEL ":1: listen: bad port '0' in '127.0.0.1:0' (expected 1..65535)");
	expect_error("\n\nlisten 127.0.0.1:65536 tls\n",
		     LABEL ":3: listen: bad port '65536' in '127.0.0.1:65536' (expected 1..65535)");
	expect_error("listen [::]:https tls\n",
		     LABEL ":1: listen: bad port 'https' in '[::]:https' (expected 1..65535)");
	expect_error("listen *: tls\n", LABEL ":1: listen: bad port '' in '*:' (expected 1..65535)");
	expect_error("listen *:-1 tls\n", LABEL ":1: listen: bad port '-1' in '*:-1' (expected 1..65535)");
}

static void
test_duplicate_listen(void **state)
{
	(void)state;
	/* "*" and "0.0.0.0" are one address. */
	expect_error("listen *:443 tls\nlisten [::]:443 tls\nlisten 0.0.0.0:443 http\n",
		     LABEL ":3: listen: 0.0.0.0:443 already declared on line 1");
	expect_error("listen [::1]:8443 tls\n\nlisten [0::1]:8443 tls\n",
		     LABEL ":3: listen: [::1]:8443 already declared on line 1");
}

static void
test_listen_options(void **state)
{
	(void)state;
	expect_error("listen 127.0.0.1:443 ssl\n",
		     LABEL ":1: listen: unknown protocol 'ssl' (expected tls, http or detect)");
	expect_error("listen 127.0.0.1:443 tls v6only on\n",
		     LABEL ":1: listen: v6only applies only to IPv6 addresses such as [::]:443");
	expect_error("listen [::]:443 tls v6only yes\n",
		     LABEL ":1: listen: v6only takes on or off, not 'yes'");
	expect_error("listen [::]:443 tls default a..example\n",
		     LABEL ":1: listen: bad default name 'a..example' (expected a host name such as a.example)");
	expect_error("listen [::]:443 tls default *.example\n",
		     LABEL ":1: listen: bad default name '*.example' (expected a host name such as a.example)");
	expect_error("listen [::]:443 tls backlog 5 backlog 6\n",
		     LABEL ":1: listen: 'backlog' given twice");
	expect_error("listen [::]:443 tls reuseport on\n",
		     LABEL ":1: listen: unknown option 'reuseport'; expected " LISTEN_USAGE);
}

static void
test_missing_arguments(void **state)
{
	(void)state;
	expect_error("listen\n", LABEL ":1: listen: expected " LISTEN_USAGE);
	expect_error("listen 127.0.0.1:443\n", LABEL ":1: listen: expected " LISTEN_USAGE);
	expect_error("listen [::]:443 tls default\n", LABEL ":1: listen: expected " LISTEN_USAGE);
	expect_error("listen 127.0.0.1:443 tls\ngrant a.example self\n",
		     LABEL ":2: grant: expected 'grant PATTERN|protocol ssh|silent to PRINCIPAL [PRINCIPAL ...]'");
	expect_error("listen 127.0.0.1:443 tls\ngrant a.example to\n",
		     LABEL ":2: grant: expected 'grant PATTERN|protocol ssh|silent to PRINCIPAL [PRINCIPAL ...]'");
	expect_error("runtime-dir\nlisten 127.0.0.1:443 tls\n",
		     LABEL ":1: runtime-dir: expected 'runtime-dir PATH'");
	expect_error("access-log /a /b\nlisten 127.0.0.1:443 tls\n",
		     LABEL ":1: access-log: expected 'access-log stderr|off|PATH'");
	expect_error("listen 127.0.0.1:443 tls\npeek-timeout\n",
		     LABEL ":2: peek-timeout: expected 'peek-timeout DURATION'");
	expect_error("listen 127.0.0.1:443 tls\nmax-per-ip 1 2\n",
		     LABEL ":2: max-per-ip: expected 'max-per-ip N'");
}

static void
test_unknown_directive(void **state)
{
	(void)state;
	expect_error("listen 127.0.0.1:443 tls\nlisten-on 127.0.0.1:444 tls\n",
		     LABEL ":2: unknown directive 'listen-on' " KNOWN);
	/* Directives are case-sensitive. */
	expect_error("LISTEN 127.0.0.1:443 tls\n", LABEL ":1: unknown directive 'LISTEN' " KNOWN);
	/* Control bytes from the file are masked so the message stays one line. */
	expect_error("fo\033o\n", LABEL ":1: unknown directive 'fo?o' " KNOWN);
}

static void
test_repeated_setting(void **state)
{
	(void)state;
	expect_error("max-peeking 10\nlisten 127.0.0.1:443 tls\nmax-peeking 20\n",
		     LABEL ":3: max-peeking: already set on line 1");
}

static void
test_no_listen(void **state)
{
	(void)state;
	expect_error("", LABEL ": no 'listen' directive (add e.g. 'listen 127.0.0.1:8443 tls')");
	expect_error("# only a comment\n\ngrant * to self\n",
		     LABEL ": no 'listen' directive (add e.g. 'listen 127.0.0.1:8443 tls')");
}

static void
test_quoting(void **state)
{
	(void)state;
	struct config cfg;
	load_ok("runtime-dir \"/tmp/with space/#not a comment\" # a comment\n"
		"access-log \"/var/log/say \\\"hi\\\" \\\\ there\"\n"
		"listen \"127.0.0.1:8443\" \"tls\"\n",
		&cfg);
	assert_string_equal(cfg.runtime_dir, "/tmp/with space/#not a comment");
	assert_string_equal(cfg.access_log, "/var/log/say \"hi\" \\ there");
	assert_int_equal(cfg.n_listeners, 1);
	config_free(&cfg);

	/* A comment may follow a word directly. */
	load_ok("listen 127.0.0.1:8443 tls# no blank needed\n", &cfg);
	assert_int_equal(cfg.listeners[0].proto, LISTENER_TLS);
	config_free(&cfg);

	expect_error("listen 127.0.0.1:443 tls\nruntime-dir \"/tmp/x\n", LABEL ":2: unterminated double quote");
	expect_error("runtime-dir \"/tmp/x\"y\n", LABEL ":1: closing double quote must be followed by a blank");
	expect_error("runtime-dir /tmp/\"x\"\n", LABEL ":1: double quote inside a word (quote the whole word)");
}

static void
test_long_lines(void **state)
{
	(void)state;
	/* 4096 bytes is the limit: a padded comment line of exactly that passes. */
	char text[8192];
	const char *listen = "listen 127.0.0.1:443 tls\n";
	size_t off = strlen(listen);
	memcpy(text, listen, off);
	memset(text + off, '#', 4096);
	strcpy(text + off + 4096, "\n");
	struct config cfg;
	load_ok(text, &cfg);
	config_free(&cfg);

	memset(text + off, '#', 4097);
	strcpy(text + off + 4097, "\n");
	expect_error(text, LABEL ":2: line longer than 4096 bytes");
}

static void
test_builtin(void **state)
{
	(void)state;
	struct config cfg;
	char err[512] = "";
	assert_int_equal(config_load_string(config_builtin, "(built-in)", &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg.source, "(built-in)");
	assert_int_equal(cfg.n_listeners, 3);
	assert_string_equal(cfg.listeners[0].text, "127.0.0.1:8443");
	assert_int_equal(cfg.listeners[0].proto, LISTENER_TLS);
	assert_string_equal(cfg.listeners[1].text, "[::1]:8443");
	assert_int_equal(cfg.listeners[1].proto, LISTENER_TLS);
	assert_string_equal(cfg.listeners[2].text, "127.0.0.1:8080");
	assert_int_equal(cfg.listeners[2].proto, LISTENER_HTTP);
	assert_int_equal(cfg.n_grants, 1);
	assert_string_equal(cfg.grants[0].pattern, "*");
	assert_int_equal(cfg.grants[0].n_uids, 1);
	assert_int_equal(cfg.grants[0].uids[0], geteuid());
	assert_int_equal(cfg.grants[0].n_gids, 0);
	assert_true(config_may_claim(&cfg, "anything.example", geteuid()));
	assert_true(config_may_claim(&cfg, "*", geteuid()));
	config_free(&cfg);
}

static void
test_grant_errors(void **state)
{
	(void)state;
	const char *user = "no-such-user-handoff";
	const char *group = "no-such-group-handoff";
	char text[256], expected[256];
	assert_null(getpwnam(user));
	assert_null(getgrnam(group));

	snprintf(text, sizeof(text), "listen 127.0.0.1:443 tls\ngrant a.example to self %s\n", user);
	snprintf(expected, sizeof(expected), LABEL ":2: grant: unknown user '%s' (" PRINCIPAL_HINT ")", user);
	expect_error(text, expected);

	snprintf(text, sizeof(text), "listen 127.0.0.1:443 tls\ngrant a.example to @%s\n", group);
	snprintf(expected, sizeof(expected), LABEL ":2: grant: unknown group '%s' (" PRINCIPAL_HINT ")", group);
	expect_error(text, expected);

	expect_error("listen 127.0.0.1:443 tls\ngrant a.example to @\n",
		     LABEL ":2: grant: '@' needs a group name or GID after it (" PRINCIPAL_HINT ")");
	expect_error("listen 127.0.0.1:443 tls\ngrant a.example to 4294967295\n",
		     LABEL ":2: grant: bad uid '4294967295' (" PRINCIPAL_HINT ")");
	expect_error("listen 127.0.0.1:443 tls\ngrant a.example to @12x\n",
		     LABEL ":2: grant: bad GID '12x' (" PRINCIPAL_HINT ")");

	static const char *const bad_patterns[] = { "*.*.example", "a..example", "foo*", "*example", "-a.example" };
	for (size_t i = 0; i < sizeof(bad_patterns) / sizeof(bad_patterns[0]); i++) {
		snprintf(text, sizeof(text), "listen 127.0.0.1:443 tls\ngrant %s to self\n", bad_patterns[i]);
		snprintf(expected, sizeof(expected),
			 LABEL ":2: grant: bad pattern '%s' (expected a host name, *.suffix or *)", bad_patterns[i]);
		expect_error(text, expected);
	}
}

static void
test_grant_parsing(void **state)
{
	(void)state;
	const struct passwd *nobody = must_getpwnam("nobody");
	uid_t nobody_uid = nobody->pw_uid;
	gid_t nogroup_gid = must_getgrnam(NOBODY_GROUP)->gr_gid;
	struct config cfg;
	char text[512];
	snprintf(text, sizeof(text),
		 "listen 127.0.0.1:443 tls\n"
		 "grant A.Example. to nobody 0 @" NOBODY_GROUP "\n"
		 "grant *.apps.example to self\n"
		 "grant a.example to %lu @%lu root\n",
		 (unsigned long)nobody_uid, (unsigned long)nogroup_gid);
	load_ok(text, &cfg);
	/* The two lines for a.example make one grant; repeated ids appear once. */
	assert_int_equal(cfg.n_grants, 2);
	const struct config_grant *a = &cfg.grants[0];
	assert_string_equal(a->pattern, "a.example");
	assert_int_equal(a->line, 2);
	assert_int_equal(a->n_uids, 2);
	assert_int_equal(a->uids[0], nobody_uid);
	assert_int_equal(a->uids[1], 0);
	assert_int_equal(a->n_gids, 1);
	assert_int_equal(a->gids[0], nogroup_gid);
	const struct config_grant *apps = &cfg.grants[1];
	assert_string_equal(apps->pattern, "*.apps.example");
	assert_int_equal(apps->n_uids, 1);
	assert_int_equal(apps->uids[0], geteuid());
	config_free(&cfg);
}

/* Independent oracle for group grants: the primary group from getpwuid or a
 * listing in the group's member list. */
static bool
user_in_group(uid_t uid, gid_t gid)
{
	const struct passwd *pw = getpwuid(uid);
	if (pw == NULL)
		return false;
	if (pw->pw_gid == gid)
		return true;
	char name[256];
	snprintf(name, sizeof(name), "%s", pw->pw_name);
	const struct group *gr = getgrgid(gid);
	if (gr == NULL)
		return false;
	for (char *const *m = gr->gr_mem; *m != NULL; m++)
		if (strcmp(*m, name) == 0)
			return true;
	return false;
}

static void
test_may_claim_users(void **state)
{
	(void)state;
	uid_t root = must_getpwnam("root")->pw_uid;
	uid_t nobody = must_getpwnam("nobody")->pw_uid;
	uid_t self = geteuid();
	uid_t stranger = 4000000;	/* no passwd entry */
	assert_null(getpwuid(stranger));
	struct config cfg;
	char text[512];
	snprintf(text, sizeof(text),
		 "listen 127.0.0.1:443 tls\n"
		 "grant a.example to root\n"
		 "grant *.apps.example to nobody\n"
		 "grant b.example to %lu\n"
		 "grant c.example to self\n"
		 "grant a.example to %lu\n",
		 (unsigned long)stranger, (unsigned long)nobody);
	load_ok(text, &cfg);

	assert_true(config_may_claim(&cfg, "a.example", root));
	assert_true(config_may_claim(&cfg, "a.example", nobody));	/* accumulated */
	assert_false(config_may_claim(&cfg, "a.example", stranger));
	assert_false(config_may_claim(&cfg, "x.a.example", root));
	assert_false(config_may_claim(&cfg, "example", root));

	assert_true(config_may_claim(&cfg, "x.apps.example", nobody));
	assert_true(config_may_claim(&cfg, "y.x.apps.example", nobody));
	assert_true(config_may_claim(&cfg, "*.apps.example", nobody));
	assert_true(config_may_claim(&cfg, "*.x.apps.example", nobody));
	assert_false(config_may_claim(&cfg, "apps.example", nobody));
	assert_false(config_may_claim(&cfg, "*.example", nobody));
	assert_false(config_may_claim(&cfg, "*", nobody));
	assert_false(config_may_claim(&cfg, "x.apps.example", root == nobody ? stranger : root));

	assert_true(config_may_claim(&cfg, "b.example", stranger));
	assert_false(config_may_claim(&cfg, "b.example", nobody));

	assert_true(config_may_claim(&cfg, "c.example", self));
	assert_int_equal(config_may_claim(&cfg, "c.example", nobody), self == nobody);
	config_free(&cfg);
}

static void
test_may_claim_catch_all(void **state)
{
	(void)state;
	uid_t nobody = must_getpwnam("nobody")->pw_uid;
	struct config cfg;
	load_ok("listen 127.0.0.1:443 tls\ngrant * to nobody\n", &cfg);
	assert_true(config_may_claim(&cfg, "a.example", nobody));
	assert_true(config_may_claim(&cfg, "*.example", nobody));
	assert_true(config_may_claim(&cfg, "*", nobody));
	assert_false(config_may_claim(&cfg, "a.example", nobody + 1));
	config_free(&cfg);

	/* Without any grant nobody may claim anything. */
	load_ok("listen 127.0.0.1:443 tls\n", &cfg);
	assert_false(config_may_claim(&cfg, "a.example", 0));
	config_free(&cfg);
}

static void
test_may_claim_groups(void **state)
{
	(void)state;
	const struct passwd *pw = must_getpwnam("nobody");
	uid_t nobody = pw->pw_uid;
	uid_t root = must_getpwnam("root")->pw_uid;
	gid_t nogroup = must_getgrnam(NOBODY_GROUP)->gr_gid;
	struct config cfg;
	char text[512];
	snprintf(text, sizeof(text),
		 "listen 127.0.0.1:443 tls\n"
		 "grant *.example to @" NOBODY_GROUP "\n"
		 "grant g.test to @%lu\n",
		 (unsigned long)nogroup);
	load_ok(text, &cfg);
	bool nobody_member = user_in_group(nobody, nogroup);
	bool root_member = user_in_group(root, nogroup);
	assert_int_equal(config_may_claim(&cfg, "a.example", nobody), nobody_member);
	assert_int_equal(config_may_claim(&cfg, "g.test", nobody), nobody_member);
	assert_int_equal(config_may_claim(&cfg, "a.example", root), root_member);
	assert_int_equal(config_may_claim(&cfg, "g.test", root), root_member);
	/* A uid the passwd database does not know belongs to no group. */
	assert_false(config_may_claim(&cfg, "a.example", 4000000));
	assert_false(config_may_claim(&cfg, "other.test", nobody));
	config_free(&cfg);
}

static void
test_may_claim_supplementary_group(void **state)
{
	(void)state;
	/* Find a user listed as a member of a group other than its primary one. */
	char user[256] = "", group[256] = "";
	uid_t uid = 0;
	setgrent();
	for (int scanned = 0; scanned < 10000 && user[0] == '\0'; scanned++) {
		const struct group *gr = getgrent();
		if (gr == NULL)
			break;
		for (char *const *m = gr->gr_mem; *m != NULL; m++) {
			const struct passwd *pw = getpwnam(*m);
			if (pw != NULL && pw->pw_gid != gr->gr_gid) {
				snprintf(user, sizeof(user), "%s", *m);
				snprintf(group, sizeof(group), "%s", gr->gr_name);
				uid = pw->pw_uid;
				break;
			}
		}
	}
	endgrent();
	if (user[0] == '\0')
		skip();	/* no supplementary membership on this system to test with */

	struct config cfg;
	char text[600];
	snprintf(text, sizeof(text), "listen 127.0.0.1:443 tls\ngrant s.example to @%s\n", group);
	load_ok(text, &cfg);
	assert_true(config_may_claim(&cfg, "s.example", uid));
	config_free(&cfg);
}

static void
test_load_file(void **state)
{
	(void)state;
	char path[] = "/tmp/handoff-test-config-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char text[] = "# from a file\nlisten 127.0.0.1:8443 tls\nmax-per-ip 3\n";
	assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
	close(fd);

	struct config cfg;
	char err[512] = "";
	assert_int_equal(config_load_file(path, &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg.source, path);
	assert_int_equal(cfg.max_per_ip, 3);
	assert_int_equal(cfg.listeners[0].line, 2);
	config_free(&cfg);

	/* Errors name the file. */
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("listen 127.0.0.1:8443 tls\nbogus\n", f);
	fclose(f);
	char expected[600];
	assert_int_equal(config_load_file(path, &cfg, err, sizeof(err)), -1);
	snprintf(expected, sizeof(expected), "%s:2: unknown directive 'bogus' " KNOWN, path);
	assert_string_equal(err, expected);

	/* A NUL byte means this is not a configuration file. */
	f = fopen(path, "w");
	assert_non_null(f);
	static const char with_nul[] = "listen 127.0.0.1:8443 tls\n\nab\0c\n";
	assert_int_equal(fwrite(with_nul, 1, sizeof(with_nul) - 1, f), sizeof(with_nul) - 1);
	fclose(f);
	assert_int_equal(config_load_file(path, &cfg, err, sizeof(err)), -1);
	snprintf(expected, sizeof(expected), "%s:3: NUL byte in line; is this a text file?", path);
	assert_string_equal(err, expected);

	assert_int_equal(unlink(path), 0);
	assert_int_equal(config_load_file(path, &cfg, err, sizeof(err)), -1);
	snprintf(expected, sizeof(expected), "%s: cannot read: No such file or directory", path);
	assert_string_equal(err, expected);
	assert_null(cfg.listeners);

	assert_int_equal(config_load_file("/", &cfg, err, sizeof(err)), -1);
	assert_string_equal(err, "/: cannot read: Is a directory");
}

static void
test_free_and_reuse(void **state)
{
	(void)state;
	struct config cfg;
	load_ok("listen 127.0.0.1:1 tls\nlisten 127.0.0.1:2 tls\ngrant * to self 0 @0\n", &cfg);
	config_free(&cfg);
	assert_null(cfg.listeners);
	assert_int_equal(cfg.n_listeners, 0);
	assert_null(cfg.grants);
	assert_int_equal(cfg.n_grants, 0);
	config_free(&cfg);	/* harmless twice */
	load_ok("listen 127.0.0.1:3 http\n", &cfg);
	assert_int_equal(cfg.n_listeners, 1);
	assert_string_equal(cfg.listeners[0].text, "127.0.0.1:3");
	config_free(&cfg);
}

static void
test_error_truncation(void **state)
{
	(void)state;
	struct config cfg;
	char err[12];
	assert_int_equal(config_load_string("nope\n", LABEL, &cfg, err, sizeof(err)), -1);
	assert_string_equal(err, "test.conf:1");
	assert_int_equal(config_load_string("nope\n", LABEL, &cfg, NULL, 0), -1);
}

/* Check the non-root branches of the runtime directory rule as the current
 * (non-root) user; returns a description of the first mismatch or NULL. */
static const char *
check_user_runtime_dir(void)
{
	static char why[PATH_MAX + 64];
	char buf[PATH_MAX], expected[PATH_MAX];
	setenv("XDG_RUNTIME_DIR", "/run/user/test", 1);
	config_default_runtime_dir(buf, sizeof(buf));
	if (strcmp(buf, "/run/user/test/handoff") != 0) {
		snprintf(why, sizeof(why), "with XDG_RUNTIME_DIR: got %s", buf);
		return why;
	}
	setenv("XDG_RUNTIME_DIR", "", 1);
	snprintf(expected, sizeof(expected), "/tmp/handoff-%lu", (unsigned long)geteuid());
	config_default_runtime_dir(buf, sizeof(buf));
	if (strcmp(buf, expected) != 0) {
		snprintf(why, sizeof(why), "with empty XDG_RUNTIME_DIR: got %s", buf);
		return why;
	}
	unsetenv("XDG_RUNTIME_DIR");
	config_default_runtime_dir(buf, sizeof(buf));
	if (strcmp(buf, expected) != 0) {
		snprintf(why, sizeof(why), "without XDG_RUNTIME_DIR: got %s", buf);
		return why;
	}
	return NULL;
}

static void
test_default_runtime_dir(void **state)
{
	(void)state;
	char buf[PATH_MAX];
	if (geteuid() != 0) {
		const char *why = check_user_runtime_dir();
		if (why != NULL)
			fail_msg("%s", why);
		return;
	}
	/* Root always gets /run/handoff, whatever the environment says. */
	setenv("XDG_RUNTIME_DIR", "/run/user/test", 1);
	config_default_runtime_dir(buf, sizeof(buf));
	unsetenv("XDG_RUNTIME_DIR");
	assert_string_equal(buf, "/run/handoff");

	/* And the user branches are checked in a child that became nobody. */
	uid_t nobody = must_getpwnam("nobody")->pw_uid;
	gid_t nobody_gid = must_getpwnam("nobody")->pw_gid;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (setgid(nobody_gid) < 0 || setuid(nobody) < 0)
			_exit(2);
		const char *why = check_user_runtime_dir();
		if (why != NULL)
			fprintf(stderr, "%s\n", why);
		_exit(why == NULL ? 0 : 1);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void
test_route_targets_and_options(void **state)
{
	(void)state;
	struct config cfg;
	load_ok("listen 127.0.0.1:8443 tls\n"
		"route a.example to tcp:127.0.0.1:9443 weight 3 tcp:[::1]:9444 balance least-conn proxy v2 "
		"connect-timeout 250ms idle-timeout 2m fail-after 2 retry-after 10s check 1s\n"
		"route *.Apps.Example. to tcp:localhost:80\n", &cfg);
	assert_int_equal(cfg.n_routes, 2);
	const struct config_route *r = &cfg.routes[0];
	assert_string_equal(r->pattern, "a.example");
	assert_int_equal(r->n_targets, 2);
	assert_int_equal(r->targets[0].addr.ss_family, AF_INET);
	assert_int_equal(r->targets[0].weight, 3);
	assert_int_equal(ntohs(((const struct sockaddr_in *)(const void *)&r->targets[0].addr)->sin_port), 9443);
	assert_int_equal(r->targets[1].addr.ss_family, AF_INET6);
	assert_int_equal(r->targets[1].weight, 1);
	assert_string_equal(r->targets[1].text, "tcp:[::1]:9444");
	assert_int_equal(r->balance, BALANCE_LEAST_CONN);
	assert_int_equal(r->proxy_version, 2);
	assert_int_equal(r->connect_timeout_ms, 250);
	assert_int_equal(r->idle_timeout_ms, 120000);
	assert_int_equal(r->fail_after, 2);
	assert_int_equal(r->retry_after_ms, 10000);
	assert_int_equal(r->check_interval_ms, 1000);
	r = &cfg.routes[1];
	assert_string_equal(r->pattern, "*.apps.example");
	assert_true(r->n_targets >= 1);	/* localhost: 127.0.0.1 and perhaps ::1 */
	assert_int_equal(r->balance, BALANCE_ROUND_ROBIN);
	assert_int_equal(r->proxy_version, 0);
	assert_int_equal(r->connect_timeout_ms, 5000);
	assert_int_equal(r->fail_after, 3);
	assert_int_equal(r->check_interval_ms, 0);
	config_free(&cfg);
}

static void
test_route_errors(void **state)
{
	(void)state;
	expect_error("listen 127.0.0.1:8443 tls\nroute a.example tcp:127.0.0.1:1\n",
		     "test.conf:2: route: expected 'route PATTERN [alpn ID]|protocol ssh|silent to tcp:HOST:PORT [weight N] [tcp:HOST:PORT ...] "
		     "[balance round-robin|least-conn] [proxy v1|v2] [connect-timeout D] [idle-timeout D] "
		     "[fail-after N] [retry-after D] [check D]'");
	expect_error("listen 127.0.0.1:8443 tls\nroute a.example to tcp:127.0.0.1\n",
		     "test.conf:2: route: target 'tcp:127.0.0.1' has no port (expected tcp:HOST:PORT, e.g. "
		     "tcp:127.0.0.1:9443, tcp:[::1]:9443 or tcp:backend.lan:443)");
	expect_error("listen 127.0.0.1:8443 tls\nroute a.example to tcp:127.0.0.1:99999\n",
		     "test.conf:2: route: bad port in 'tcp:127.0.0.1:99999' (expected 1..65535)");
	expect_error("listen 127.0.0.1:8443 tls\nroute a.example to tcp:1.2.3.4:5 proxy v3\n",
		     "test.conf:2: route: bad value 'v3' for proxy");
	expect_error("listen 127.0.0.1:8443 tls\nroute a.example to weight 2\n",
		     "test.conf:2: route: 'weight' must follow a tcp: target");
	expect_error("listen 127.0.0.1:8443 tls\nroute a.example to tcp:1.2.3.4:5 colour blue\n",
		     "test.conf:2: route: unknown option 'colour'; expected 'route PATTERN [alpn ID]|protocol ssh|silent to tcp:HOST:PORT [weight N] "
		     "[tcp:HOST:PORT ...] [balance round-robin|least-conn] [proxy v1|v2] [connect-timeout D] "
		     "[idle-timeout D] [fail-after N] [retry-after D] [check D]'");
	expect_error("listen 127.0.0.1:8443 tls\nroute a.example to tcp:1.2.3.4:5\nroute A.example to tcp:1.2.3.4:6\n",
		     "test.conf:3: route: a.example already routed on line 2");
	expect_error("listen 127.0.0.1:8443 tls\nroute a.example to balance least-conn\n",
		     "test.conf:2: route: a.example has no tcp: target (local upstreams need no route line)");
	expect_error("listen 127.0.0.1:8443 tls\nroute a..example to tcp:1.2.3.4:5\n",
		     "test.conf:2: route: bad pattern 'a..example' (expected a host name, *.suffix or *)");
}

static void
test_accept_proxy(void **state)
{
	(void)state;
	struct config cfg;
	load_ok("listen 127.0.0.1:8443 tls accept-proxy 10.0.0.0/8,192.0.2.7,[2001:db8::]/32\n", &cfg);
	const struct config_listener *l = &cfg.listeners[0];
	assert_int_equal(l->n_trusted, 3);
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *sin = (struct sockaddr_in *)(void *)&ss;
	sin->sin_family = AF_INET;
	inet_pton(AF_INET, "10.200.3.4", &sin->sin_addr);
	assert_true(config_is_trusted(l, &ss));
	inet_pton(AF_INET, "11.0.0.1", &sin->sin_addr);
	assert_false(config_is_trusted(l, &ss));
	inet_pton(AF_INET, "192.0.2.7", &sin->sin_addr);
	assert_true(config_is_trusted(l, &ss));
	inet_pton(AF_INET, "192.0.2.8", &sin->sin_addr);
	assert_false(config_is_trusted(l, &ss));
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)&ss;
	memset(&ss, 0, sizeof(ss));
	sin6->sin6_family = AF_INET6;
	inet_pton(AF_INET6, "2001:db8:1::5", &sin6->sin6_addr);
	assert_true(config_is_trusted(l, &ss));
	inet_pton(AF_INET6, "2001:db9::5", &sin6->sin6_addr);
	assert_false(config_is_trusted(l, &ss));
	inet_pton(AF_INET6, "::ffff:10.1.2.3", &sin6->sin6_addr);	/* v4-mapped on a dual-stack socket */
	assert_true(config_is_trusted(l, &ss));
	assert_int_equal(cfg.listeners[0].n_trusted, 3);
	config_free(&cfg);
	expect_error("listen 127.0.0.1:8443 tls accept-proxy 10.0.0.0/33\n",
		     "test.conf:1: listen: bad prefix length in '10.0.0.0/33' (expected 0..32)");
	expect_error("listen 127.0.0.1:8443 tls accept-proxy lb.example\n",
		     "test.conf:1: listen: bad accept-proxy source 'lb.example' (expected e.g. 10.0.0.0/8 or ::1)");
}

/* max-relays and max-relays-per-ip: counts, and the per-address cap may
 * not exceed the total unless it is the default, which follows. */
static void
test_relay_limits(void **state)
{
	(void)state;
	struct config cfg;
	load_ok("listen 127.0.0.1:443 tls\nmax-relays 100\nmax-relays-per-ip 7\n", &cfg);
	assert_int_equal(cfg.max_relays, 100);
	assert_int_equal(cfg.max_relays_per_ip, 7);
	config_free(&cfg);
	load_ok("listen 127.0.0.1:443 tls\nmax-relays 10\n", &cfg);
	assert_int_equal(cfg.max_relays, 10);
	assert_int_equal(cfg.max_relays_per_ip, 10);
	config_free(&cfg);
	expect_error("listen 127.0.0.1:443 tls\nmax-relays-per-ip 20\nmax-relays 10\n",
		     LABEL ":2: max-relays-per-ip: 20 is more than max-relays 10 (lower it, or raise max-relays)");
	expect_error("listen 127.0.0.1:443 tls\nmax-relays 0\n",
		     LABEL ":2: max-relays: bad number '0' (expected 1..1000000)");
	expect_error("listen 127.0.0.1:443 tls\nmax-relays-per-ip 5\nmax-relays-per-ip 6\n",
		     LABEL ":3: max-relays-per-ip: already set on line 2");
}

/* The admin endpoint: loopback or a Unix socket as is; any other address
 * only with `admin allow`, which then decides who is served. */
static void
test_admin(void **state)
{
	(void)state;
	struct config cfg;
	load_ok("listen 127.0.0.1:8443 tls\n", &cfg);
	assert_false(cfg.admin.enabled);
	config_free(&cfg);

	load_ok("listen 127.0.0.1:8443 tls\nadmin [::1]:9180\n", &cfg);
	assert_true(cfg.admin.enabled);
	assert_string_equal(cfg.admin.text, "[::1]:9180");
	struct sockaddr_in6 v6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	struct sockaddr_in v4 = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	assert_true(config_admin_allows(&cfg.admin, (struct sockaddr *)&v6));
	assert_true(config_admin_allows(&cfg.admin, (struct sockaddr *)&v4));
	v4.sin_addr.s_addr = htonl(0x0a000001);
	assert_false(config_admin_allows(&cfg.admin, (struct sockaddr *)&v4));
	config_free(&cfg);

	load_ok("listen 127.0.0.1:8443 tls\nadmin unix:/run/handoff/admin.sock\n", &cfg);
	assert_true(cfg.admin.is_unix);
	assert_string_equal(cfg.admin.unix_path, "/run/handoff/admin.sock");
	config_free(&cfg);

	load_ok("listen 127.0.0.1:8443 tls\nadmin *:9180\nadmin allow 10.0.0.0/8,[2001:db8::]/32\n"
		"admin allow 192.0.2.7\n", &cfg);
	assert_int_equal(cfg.admin.n_allow, 3);
	v4.sin_addr.s_addr = htonl(0x0a010203);
	assert_true(config_admin_allows(&cfg.admin, (struct sockaddr *)&v4));
	v4.sin_addr.s_addr = htonl(0x7f000001);	/* loopback, not listed */
	assert_false(config_admin_allows(&cfg.admin, (struct sockaddr *)&v4));
	v4.sin_addr.s_addr = htonl(0xc0000207);
	assert_true(config_admin_allows(&cfg.admin, (struct sockaddr *)&v4));
	v4.sin_addr.s_addr = htonl(0xc0000208);
	assert_false(config_admin_allows(&cfg.admin, (struct sockaddr *)&v4));
	config_free(&cfg);

	expect_error("listen 127.0.0.1:8443 tls\nadmin 192.0.2.1:9180\n",
		     "test.conf:2: admin: 192.0.2.1:9180 is not a loopback address, and the admin endpoint shows "
		     "every route, upstream and client (use 127.0.0.1:PORT or unix:PATH, or list who may ask with "
		     "'admin allow ADDR/PREFIX')");
	expect_error("listen 127.0.0.1:8443 tls\nadmin allow 10.0.0.0/8\n",
		     "test.conf:2: admin allow: given without 'admin ADDRESS:PORT' (add e.g. 'admin 127.0.0.1:9180')");
	expect_error("listen 127.0.0.1:8443 tls\nadmin 127.0.0.1:9180\nadmin 127.0.0.1:9181\n",
		     "test.conf:3: admin: already set on line 2 (one admin endpoint per daemon)");
	expect_error("listen 127.0.0.1:8443 tls\nadmin unix:relative.sock\n",
		     "test.conf:2: admin: 'unix:relative.sock' needs an absolute path after unix: "
		     "(e.g. 127.0.0.1:9180, [::1]:9180 or unix:/run/handoff/admin.sock)");
	expect_error("listen 127.0.0.1:8443 tls\nadmin 127.0.0.1:0\n",
		     "test.conf:2: admin: bad port '0' in '127.0.0.1:0' (expected 1..65535)");
	expect_error("listen 127.0.0.1:8443 tls\nadmin 127.0.0.1:9180\nadmin allow 10.0.0.0/33\n",
		     "test.conf:3: admin allow: bad prefix length in '10.0.0.0/33' (expected 0..32)");
}

static void
test_user_and_group(void **state)
{
	(void)state;
	const struct passwd *daemon_pw = must_getpwnam("daemon");
	uid_t daemon_uid = daemon_pw->pw_uid;
	gid_t daemon_gid = daemon_pw->pw_gid;
	gid_t nogroup_gid = must_getgrnam(NOBODY_GROUP)->gr_gid;
	struct config cfg;

	/* No `user`: the daemon stays who it is, and `self` is that. */
	load_ok("listen 127.0.0.1:443 tls\ngrant * to self\n", &cfg);
	assert_string_equal(cfg.user, "");
	assert_int_equal(config_service_uid(&cfg), geteuid());
	assert_int_equal(config_service_gid(&cfg), getegid());
	assert_int_equal(cfg.grants[0].uids[0], geteuid());
	config_free(&cfg);

	/* `user` alone: its primary group; `self`, even on an earlier line,
	 * is the user the daemon becomes. */
	load_ok("grant * to self\nlisten 127.0.0.1:443 tls\nuser daemon\n", &cfg);
	assert_string_equal(cfg.user, "daemon");
	assert_int_equal(cfg.user_line, 3);
	assert_int_equal(cfg.user_uid, daemon_uid);
	assert_int_equal(cfg.user_gid, daemon_gid);
	assert_int_equal(config_service_uid(&cfg), daemon_uid);
	assert_int_equal(config_service_gid(&cfg), daemon_gid);
	assert_int_equal(cfg.grants[0].n_uids, 1);
	assert_int_equal(cfg.grants[0].uids[0], daemon_uid);
	config_free(&cfg);

	/* `group` wins over the primary group, in either order; numbers work. */
	load_ok("listen 127.0.0.1:443 tls\ngroup " NOBODY_GROUP "\nuser daemon\n", &cfg);
	assert_int_equal(cfg.user_gid, nogroup_gid);
	config_free(&cfg);
	char text[256];
	snprintf(text, sizeof(text), "listen 127.0.0.1:443 tls\nuser %lu\ngroup %lu\n",
		 (unsigned long)daemon_uid, (unsigned long)nogroup_gid);
	load_ok(text, &cfg);
	assert_int_equal(cfg.user_uid, daemon_uid);
	assert_int_equal(cfg.user_gid, nogroup_gid);
	config_free(&cfg);

	expect_error("listen 127.0.0.1:443 tls\nuser no-such-user-here\n",
		     LABEL ":2: user: unknown user 'no-such-user-here' (expected a user name from the passwd "
		     "database or a numeric uid; create it with 'useradd --system --no-create-home no-such-user-here')");
	expect_error("listen 127.0.0.1:443 tls\nuser root\n",
		     LABEL ":2: user: 'root' is root, which gives nothing up (name an unprivileged user, or remove the line)");
	expect_error("listen 127.0.0.1:443 tls\nuser daemon\ngroup root\n",
		     LABEL ":3: group: 'root' is root's group, which gives nothing up (name an unprivileged group, "
		     "or remove the line)");
	expect_error("listen 127.0.0.1:443 tls\ngroup no-such-group-here\n",
		     LABEL ":2: group: unknown group 'no-such-group-here' (expected a group name from the group "
		     "database or a numeric gid)");
	expect_error("listen 127.0.0.1:443 tls\ngroup " NOBODY_GROUP "\n",
		     LABEL ":2: group: needs a 'user' line too (the daemon changes its user and group together)");
	expect_error("listen 127.0.0.1:443 tls\nuser 4000000000\n",
		     LABEL ":2: user: uid 4000000000 has no passwd entry, so no primary group (add a 'group' line)");
	expect_error("listen 127.0.0.1:443 tls\nuser daemon\nuser nobody\n",
		     LABEL ":3: user: already set on line 2");
	expect_error("listen 127.0.0.1:443 tls\nuser\n", LABEL ":2: user: expected 'user NAME|UID'");
}

/* ALPN routes, protocol routes and grants, detect listeners and their errors. */
static void
test_alpn_and_detect(void **state)
{
	(void)state;
	struct config cfg;
	load_ok("listen 127.0.0.1:1 detect detect-timeout 500ms\n"
		"route a.example alpn acme-tls/1 to tcp:127.0.0.1:5001\n"
		"route a.example to tcp:127.0.0.1:8443\n"
		"route protocol silent to tcp:127.0.0.1:25\n"
		"grant protocol ssh to 0\n"
		"grant a.example to 1000\n", &cfg);
	assert_int_equal(cfg.listeners[0].proto, LISTENER_DETECT);
	assert_int_equal(cfg.listeners[0].detect_timeout_ms, 500);
	assert_int_equal(cfg.n_routes, 3);
	assert_string_equal(cfg.routes[0].pattern, "a.example");
	assert_string_equal(cfg.routes[0].alpn, "acme-tls/1");
	assert_string_equal(cfg.routes[1].alpn, "");
	assert_string_equal(cfg.routes[2].pattern, PROTOCOL_KEY_SILENT);
	assert_true(config_may_claim(&cfg, PROTOCOL_KEY_SSH, 0));
	assert_false(config_may_claim(&cfg, PROTOCOL_KEY_SSH, 1000));
	assert_false(config_may_claim(&cfg, PROTOCOL_KEY_SILENT, 0));
	config_free(&cfg);

	/* grant * never grants a protocol. */
	load_ok("listen 127.0.0.1:1 detect\ngrant * to 0\n", &cfg);
	assert_int_equal(cfg.listeners[0].detect_timeout_ms, 2000);
	assert_false(config_may_claim(&cfg, PROTOCOL_KEY_SSH, 0));
	config_free(&cfg);

	load_ok("listen 127.0.0.1:1 tls defer-accept 10s\nlisten 127.0.0.1:2 http defer-accept off\n"
		"listen 127.0.0.1:3 http\n", &cfg);
	assert_int_equal(cfg.listeners[0].defer_accept_s, 10);
	assert_int_equal(cfg.listeners[1].defer_accept_s, 0);
	assert_int_equal(cfg.listeners[2].defer_accept_s, 0);
	config_free(&cfg);
	expect_error("listen 127.0.0.1:1 detect defer-accept 5s\n",
		     LABEL ":1: listen: defer-accept cannot apply to detect listeners "
		     "(their silent clients would wait in the kernel, unseen)");
	expect_error("listen 127.0.0.1:1 tls defer-accept 500ms\n",
		     LABEL ":1: listen: bad defer-accept '500ms' (expected off or a duration from 1s to 1h such as 10s)");
	expect_error("listen 127.0.0.1:1 tls detect-timeout 1s\n",
		     LABEL ":1: listen: detect-timeout applies only to detect listeners");
	expect_error("peek-timeout 2s\nlisten 127.0.0.1:1 detect detect-timeout 2s\n",
		     LABEL ":2: listen: detect-timeout 2000 ms is not shorter than peek-timeout 2000 ms "
		     "(lower it, or raise peek-timeout)");
	expect_error("listen 127.0.0.1:1 tls\nroute a.example alpn \"h 2\" to tcp:127.0.0.1:1\n",
		     LABEL ":2: route: bad ALPN id 'h 2' (expected 1..255 visible ASCII bytes, e.g. h2 or acme-tls/1)");
	expect_error("listen 127.0.0.1:1 tls\nroute a.example alpn h2 to tcp:127.0.0.1:1\n"
		     "route a.example alpn h2 to tcp:127.0.0.1:2\n",
		     LABEL ":3: route: a.example alpn h2 already routed on line 2");
	expect_error("listen 127.0.0.1:1 tls\nroute protocol ftp to tcp:127.0.0.1:1\n",
		     LABEL ":2: route: unknown protocol 'ftp' (expected ssh or silent)");
	expect_error("listen 127.0.0.1:1 tls\ngrant protocol telnet to 0\n",
		     LABEL ":2: grant: unknown protocol 'telnet' (expected ssh or silent)");
}

/* workers: a count of accepting threads or one per CPU; 1 by default. */
static void
test_workers(void **state)
{
	(void)state;
	struct config cfg;
	load_ok("listen 127.0.0.1:1 tls\n", &cfg);
	assert_int_equal(cfg.workers, 1);
	config_free(&cfg);
	load_ok("workers 4\nlisten 127.0.0.1:1 tls\n", &cfg);
	assert_int_equal(cfg.workers, 4);
	config_free(&cfg);
	cpu_set_t cpus;
	assert_int_equal(sched_getaffinity(0, sizeof(cpus), &cpus), 0);
	load_ok("workers auto\nlisten 127.0.0.1:1 tls\n", &cfg);
	assert_int_equal(cfg.workers, CPU_COUNT(&cpus) < 64 ? CPU_COUNT(&cpus) : 64);
	config_free(&cfg);
	expect_error("workers 0\n", LABEL ":1: workers: bad number '0' (expected 1..64, or auto for one per CPU)");
	expect_error("workers 65\n", LABEL ":1: workers: bad number '65' (expected 1..64, or auto for one per CPU)");
	expect_error("workers 2\nworkers 3\n", LABEL ":2: workers: already set on line 1");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_explicit_values),
		cmocka_unit_test(test_access_log_words),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_counts),
		cmocka_unit_test(test_ipv6_prefix),
		cmocka_unit_test(test_address_forms),
		cmocka_unit_test(test_bad_addresses),
		cmocka_unit_test(test_bad_ports),
		cmocka_unit_test(test_duplicate_listen),
		cmocka_unit_test(test_listen_options),
		cmocka_unit_test(test_missing_arguments),
		cmocka_unit_test(test_unknown_directive),
		cmocka_unit_test(test_repeated_setting),
		cmocka_unit_test(test_no_listen),
		cmocka_unit_test(test_quoting),
		cmocka_unit_test(test_long_lines),
		cmocka_unit_test(test_builtin),
		cmocka_unit_test(test_grant_errors),
		cmocka_unit_test(test_grant_parsing),
		cmocka_unit_test(test_may_claim_users),
		cmocka_unit_test(test_may_claim_catch_all),
		cmocka_unit_test(test_may_claim_groups),
		cmocka_unit_test(test_may_claim_supplementary_group),
		cmocka_unit_test(test_load_file),
		cmocka_unit_test(test_free_and_reuse),
		cmocka_unit_test(test_error_truncation),
		cmocka_unit_test(test_default_runtime_dir),
		cmocka_unit_test(test_route_targets_and_options),
		cmocka_unit_test(test_route_errors),
		cmocka_unit_test(test_accept_proxy),
		cmocka_unit_test(test_relay_limits),
		cmocka_unit_test(test_admin),
		cmocka_unit_test(test_alpn_and_detect),
		cmocka_unit_test(test_user_and_group),
		cmocka_unit_test(test_workers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
