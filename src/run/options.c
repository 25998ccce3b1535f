/* options.c - `handoff run`'s command line: --name, --port, --runtime-dir, --wait and PROGRAM. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "run/launcher.h"

#ifndef HANDOFF_LIBDIR
#define HANDOFF_LIBDIR "/usr/local/lib/handoff"
#endif

#define DEFAULT_WAIT_SECONDS	10
#define MAX_WAIT_SECONDS	86400

const char run_usage_text[] =
	"usage: handoff run --name NAME [--name NAME ...] [--alpn ID ...] | --protocol ssh|silent\n"
	"                   --port PORT[/tls|/http] [--port PORT[/tls|/http] ...]\n"
	"                   [--runtime-dir DIR] [--wait SECONDS] -- PROGRAM [ARGS...]\n"
	"\n"
	"Start PROGRAM, an ordinary TCP server, so that its listening sockets on the\n"
	"given ports receive the connections the handoff daemon routes to NAME,\n"
	"instead of listening on the network. PROGRAM binds, listens and accepts as\n"
	"usual; the preload library libhandoff-preload.so answers those calls.\n"
	"\n"
	"  --name NAME         a name to claim: a.example, *.apps.example or *; repeat\n"
	"                      for more (the daemon's configuration must grant them)\n"
	"  --protocol ssh|silent\n"
	"                      take the daemon's detect listeners' SSH (or silent)\n"
	"                      clients instead of names (needs 'grant protocol ssh')\n"
	"  --alpn ID           only TLS clients offering ALPN protocol ID (e.g.\n"
	"                      acme-tls/1); repeat for more (at most 8)\n"
	"  --port PORT[/tls|/http]\n"
	"                      a TCP port PROGRAM listens on; repeat for more. With\n"
	"                      /tls it receives only the connections of the daemon's\n"
	"                      TLS listeners, with /http only those of its plain-HTTP\n"
	"                      listeners; without, both (say which is which when\n"
	"                      PROGRAM serves TLS on one port and plain HTTP on another)\n"
	"  --runtime-dir DIR   the daemon's runtime directory (default:\n"
	"                      $HANDOFF_RUNTIME_DIR, else the daemon's default)\n"
	"  --wait SECONDS      warn if PROGRAM has not bound a port, or the daemon has\n"
	"                      not answered, after this long (default 10; 0: never)\n"
	"\n"
	"handoff run passes SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and\n"
	"SIGWINCH on to PROGRAM and exits with its status (128+N if signal N killed\n"
	"it). PROGRAM must stay in the foreground, be dynamically linked and not be\n"
	"a Go program.\n"
	"The preload library is $HANDOFF_PRELOAD if set, else " PRELOAD_NAME "\n"
	"next to the handoff executable, else " HANDOFF_LIBDIR "/" PRELOAD_NAME ".\n"
	"\n"
	"Example: serve a.example and www.a.example with Python's web server, which\n"
	"binds port 8000:\n"
	"\n"
	"  handoff run --name a.example --name www.a.example --port 8000 -- \\\n"
	"      python3 -m http.server 8000\n"
	"\n"
	"Serve shop.example with nginx listening for HTTPS on 8443 and for plain\n"
	"HTTP on 8080:\n"
	"\n"
	"  handoff run --name shop.example --port 8443/tls --port 8080/http -- \\\n"
	"      nginx -g 'daemon off;'\n"
	"\n"
	"More in docs/servers.md.\n";

static void
usage_error(const char *fmt, const char *arg)
{
	fputs("handoff run: ", stderr);
	fprintf(stderr, fmt, arg);
	fputs(" (see 'handoff run --help')\n", stderr);
}

static bool
parse_unsigned(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	if (s[0] < '0' || s[0] > '9')
		return false;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return false;
	*out = v;
	return true;
}

static int
add_name(struct run_options *opt, const char *name)
{
	char normalised[sizeof(opt->names[0])];

	if (hostname_normalize_pattern(name, strlen(name), normalised, sizeof(normalised)) == 0) {
		usage_error("invalid name '%s' (expected a host name such as a.example, "
			    "*.apps.example or *)", name);
		return -1;
	}
	for (size_t i = 0; i < opt->n_names; i++)
		if (strcmp(opt->names[i], normalised) == 0)
			return 0;
	if (opt->n_names == MAX_RUN_NAMES) {
		usage_error("too many names (at most %s)", "64");
		return -1;
	}
	strcpy(opt->names[opt->n_names++], normalised);
	return 0;
}

/* Parse "PORT", "PORT/tls" or "PORT/http". */
static int
add_port(struct run_options *opt, const char *text)
{
	static const char *const protocols[] = { "tls", "http" };
	char digits[8];
	const char *slash = strchr(text, '/'), *protocol = NULL;
	size_t digits_len = slash ? (size_t)(slash - text) : strlen(text);
	unsigned long port;

	if (slash != NULL) {
		for (size_t i = 0; i < sizeof(protocols) / sizeof(protocols[0]); i++)
			if (strcmp(slash + 1, protocols[i]) == 0)
				protocol = protocols[i];
	}
	if (digits_len >= sizeof(digits) || (slash != NULL && protocol == NULL))
		goto invalid;
	memcpy(digits, text, digits_len);
	digits[digits_len] = '\0';
	if (!parse_unsigned(digits, 65535, &port) || port == 0)
		goto invalid;
	for (size_t i = 0; i < opt->n_ports; i++) {
		if (opt->ports[i].number != port)
			continue;
		if (opt->ports[i].protocol == protocol)
			return 0;
		/* One listener cannot be given two protocols. */
		usage_error("port '%s' given again with another protocol", digits);
		return -1;
	}
	if (opt->n_ports == MAX_RUN_PORTS) {
		usage_error("too many ports (at most %s)", "64");
		return -1;
	}
	opt->ports[opt->n_ports++] = (struct run_port){ (unsigned)port, protocol };
	return 0;
invalid:
	usage_error("invalid port '%s' (expected 1..65535, optionally followed by /tls or /http)",
		    text);
	return -1;
}

/* An ALPN id as the daemon takes it: 1..255 bytes of visible ASCII, no comma
 * (HANDOFF_ALPN separates ids with commas). */
static bool
alpn_id_valid(const char *id)
{
	size_t len = strlen(id);

	if (len == 0 || len > 255)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)id[i] <= 0x20 || (unsigned char)id[i] >= 0x7f || id[i] == ',')
			return false;
	return true;
}

/* "--opt VALUE" or "--opt=VALUE": the value, advancing *i; NULL if a is
 * not this option. Sets *missing if the value is absent. */
static const char *
option_value(const char *opt, int argc, char **argv, int *i, bool *missing)
{
	const char *a = argv[*i];
	size_t len = strlen(opt);

	if (strncmp(a, opt, len) != 0)
		return NULL;
	if (a[len] == '=')
		return a + len + 1;
	if (a[len] != '\0')
		return NULL;
	if (*i + 1 >= argc) {
		*missing = true;
		return NULL;
	}
	return argv[++*i];
}

int
run_parse_options(int argc, char **argv, struct run_options *opt)
{
	int i;

	opt->wait_seconds = DEFAULT_WAIT_SECONDS;
	for (i = 0; i < argc; i++) {
		const char *a = argv[i], *v;
		bool missing = false;
		unsigned long seconds;

		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
			return 1;
		if (a[0] != '-')
			break;		/* PROGRAM without "--" */
		if ((v = option_value("--name", argc, argv, &i, &missing)) != NULL) {
			if (add_name(opt, v) < 0)
				return -1;
		} else if ((v = option_value("--port", argc, argv, &i, &missing)) != NULL) {
			if (add_port(opt, v) < 0)
				return -1;
		} else if ((v = option_value("--protocol", argc, argv, &i, &missing)) != NULL) {
			if (strcmp(v, "ssh") != 0 && strcmp(v, "silent") != 0) {
				usage_error("invalid --protocol '%s' (expected ssh or silent)", v);
				return -1;
			}
			opt->claim = strcmp(v, "ssh") == 0 ? "ssh" : "silent";
		} else if ((v = option_value("--alpn", argc, argv, &i, &missing)) != NULL) {
			if (!alpn_id_valid(v) || opt->n_alpn == WIRE_NAMES_ALPN_MAX) {
				usage_error("invalid or one too many --alpn '%s' (at most 8 ids of visible ASCII, "
					    "such as acme-tls/1 or h2)", v);
				return -1;
			}
			opt->alpn[opt->n_alpn++] = v;
		} else if ((v = option_value("--runtime-dir", argc, argv, &i, &missing)) != NULL) {
			opt->runtime_dir = v;
		} else if ((v = option_value("--wait", argc, argv, &i, &missing)) != NULL) {
			if (!parse_unsigned(v, MAX_WAIT_SECONDS, &seconds)) {
				usage_error("invalid --wait '%s' (expected whole seconds, 0..86400)", v);
				return -1;
			}
			opt->wait_seconds = (unsigned)seconds;
		} else if (missing) {
			usage_error("%s needs a value", a);
			return -1;
		} else {
			usage_error("unknown option '%s'", a);
			return -1;
		}
	}
	if (opt->claim != NULL && (opt->n_names > 0 || opt->n_alpn > 0)) {
		usage_error("--protocol %s takes no --name and no --alpn: its clients carry no name", opt->claim);
		return -1;
	}
	if (opt->n_names == 0 && opt->claim == NULL) {
		usage_error("%s", "which names? give at least one --name (or --protocol ssh|silent)");
		return -1;
	}
	for (size_t k = 0; k < opt->n_ports; k++) {
		if (opt->claim != NULL && opt->ports[k].protocol != NULL) {
			usage_error("--protocol %s: give its ports without /tls or /http", opt->claim);
			return -1;
		}
		if (opt->n_alpn > 0 && opt->ports[k].protocol != NULL && strcmp(opt->ports[k].protocol, "http") == 0) {
			usage_error("%s", "--alpn applies to TLS clients: a /http port never gets one");
			return -1;
		}
		if (opt->claim != NULL)
			opt->ports[k].protocol = opt->claim;
	}
	if (opt->n_ports == 0) {
		usage_error("%s", "which ports? give at least one --port");
		return -1;
	}
	if (i >= argc) {
		usage_error("%s", "which program? put it after '--'");
		return -1;
	}
	opt->program_argv = argv + i;
	return 0;
}
