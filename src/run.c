/* run.c - `handoff run`: start an unmodified TCP server with libhandoff-preload.so so that its listeners become handoff upstreams. */
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "hostname.h"
#include "run.h"
#include "wire.h"

#ifndef HANDOFF_LIBDIR
#define HANDOFF_LIBDIR "/usr/local/lib/handoff"
#endif

#define PRELOAD_NAME		"libhandoff-preload.so"
#define MAX_RUN_NAMES		64
#define MAX_RUN_PORTS		64
#define DEFAULT_WAIT_SECONDS	10
#define MAX_WAIT_SECONDS	86400
/* The kernel follows at most this many "#!" interpreters. */
#define MAX_INTERPRETER_DEPTH	4
/* Upstream IDs are "<pid>-<16 hex digits>"; longer names are not ours. */
#define ID_MAX			64
#define MAX_OUR_IDS		256
#define NAMES_FILE_MAX		(64 * 1024)

static const char usage_text[] =
	"usage: handoff run --name NAME [--name NAME ...]\n"
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

/* A --port: its number and the connections its listeners take. */
struct run_port {
	unsigned number;
	const char *protocol;		/* "tls", "http", or NULL for both */
};

struct run_options {
	char names[MAX_RUN_NAMES][HOSTNAME_MAX + 3];	/* "*." + name + NUL */
	size_t n_names;
	struct run_port ports[MAX_RUN_PORTS];
	size_t n_ports;
	const char *runtime_dir;	/* as given, NULL: the default */
	unsigned wait_seconds;
	char **program_argv;		/* NULL-terminated, from argv */
};

/* What `handoff run` watches in RUNDIR/upstreams while PROGRAM runs. */
struct watch {
	const struct run_options *opt;
	const char *program;
	const char *runtime_dir;
	char upstreams[PATH_MAX + sizeof(WIRE_DIR_UPSTREAMS) + 1];
	pid_t child;
	char (*before)[ID_MAX];		/* IDs whose names existed at start */
	size_t n_before;
	char ours[MAX_OUR_IDS][ID_MAX];	/* IDs PROGRAM registered */
	bool refusal_reported[MAX_OUR_IDS];
	size_t n_ours;
	int64_t found_ms;		/* when the first of ours appeared */
	bool answered;			/* the daemon wrote a status for one of ours */
	bool warned_unbound;
	bool warned_unanswered;
};

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

/* Returns 0, 1 if --help was asked for, -1 after a usage error. */
static int
parse_options(int argc, char **argv, struct run_options *opt)
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
	if (opt->n_names == 0) {
		usage_error("%s", "which names? give at least one --name");
		return -1;
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

/* ---- finding things ---- */

static bool
is_executable_file(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* Resolve name as execvp() would: as a path if it has a '/', else on PATH.
 * Returns 0, or -1 if nothing executable was found. */
static int
find_program(const char *name, char *out, size_t size)
{
	const char *path = getenv("PATH");

	if (strchr(name, '/')) {
		if (snprintf(out, size, "%s", name) >= (int)size)
			return -1;
		return is_executable_file(out) ? 0 : -1;
	}
	if (path == NULL)
		path = "/bin:/usr/bin";
	for (const char *dir = path;; dir++) {
		const char *end = strchr(dir, ':');
		size_t len = end ? (size_t)(end - dir) : strlen(dir);
		int n = len == 0 ? snprintf(out, size, "%s", name)
				 : snprintf(out, size, "%.*s/%s", (int)len, dir, name);

		if (n > 0 && (size_t)n < size && is_executable_file(out))
			return 0;
		if (!end)
			return -1;
		dir = end;
	}
}

/* The preload library to use, into out. Returns 0, or -1 after an error
 * message. */
static int
find_preload(char *out, size_t size)
{
	const char *env = getenv("HANDOFF_PRELOAD");
	char exe[PATH_MAX];
	ssize_t n;

	if (env != NULL && env[0] != '\0') {
		if (realpath(env, out) == NULL || access(out, R_OK) < 0) {
			fprintf(stderr, "handoff run: HANDOFF_PRELOAD=%s: %s\n", env, strerror(errno));
			return -1;
		}
	} else {
		n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		if (n > 0) {
			exe[n] = '\0';
			char *slash = strrchr(exe, '/');
			if (slash != NULL) {
				*slash = '\0';
				if (snprintf(out, size, "%s/%s", exe, PRELOAD_NAME) < (int)size &&
				    access(out, R_OK) == 0)
					goto found;
			}
		}
		snprintf(out, size, "%s/%s", HANDOFF_LIBDIR, PRELOAD_NAME);
		if (access(out, R_OK) < 0) {
			fprintf(stderr, "handoff run: cannot find %s next to the handoff executable "
				"or in %s; set HANDOFF_PRELOAD to its path\n", PRELOAD_NAME,
				HANDOFF_LIBDIR);
			return -1;
		}
	}
found:
	/* LD_PRELOAD separates entries with blanks and colons. */
	if (strpbrk(out, " :\t") != NULL) {
		fprintf(stderr, "handoff run: the path %s cannot go into LD_PRELOAD (it has a "
			"blank or a colon); set HANDOFF_PRELOAD to another copy\n", out);
		return -1;
	}
	return 0;
}

/* The runtime directory, made absolute (the server may chdir). Returns 0,
 * or -1 after the error message. */
static int
resolve_runtime_dir(const struct run_options *opt, char *out)
{
	char wanted[PATH_MAX], upstreams[PATH_MAX + sizeof(WIRE_DIR_UPSTREAMS) + 1];
	const char *env = getenv("HANDOFF_RUNTIME_DIR");
	struct stat st;

	if (opt->runtime_dir != NULL)
		snprintf(wanted, sizeof(wanted), "%s", opt->runtime_dir);
	else if (env != NULL && env[0] != '\0')
		snprintf(wanted, sizeof(wanted), "%s", env);
	else
		config_default_runtime_dir(wanted, sizeof(wanted));
	if (realpath(wanted, out) == NULL ||
	    snprintf(upstreams, sizeof(upstreams), "%s/%s", out, WIRE_DIR_UPSTREAMS) >=
		    (int)sizeof(upstreams) ||
	    stat(upstreams, &st) < 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "handoff run: runtime directory %s does not exist: is `handoff serve` "
			"running? (or pass --runtime-dir)\n", wanted);
		return -1;
	}
	return 0;
}

/* ---- can LD_PRELOAD work for this program? ---- */

enum program_kind {
	PROGRAM_DYNAMIC,	/* an ELF file with an interpreter (ld.so) */
	PROGRAM_STATIC,		/* an ELF file without one */
	PROGRAM_GO,		/* a Go program, static or not */
	PROGRAM_SCRIPT,		/* "#!": look at the interpreter */
	PROGRAM_OTHER,		/* unknown: leave it to execve() */
};

/* Notes larger than this are not searched for Go's. */
#define MAX_NOTE_SEGMENT	(64 * 1024)
/* The Go linker's build ID note: owner "Go", type 4. */
#define GO_NOTE_TYPE		4

/* One program header, whichever the ELF class. */
struct segment {
	uint32_t type;
	uint64_t offset;
	uint64_t size;
	uint64_t align;
};

static bool
read_segment(int fd, bool is64, off_t at, struct segment *seg)
{
	Elf64_Phdr ph64;
	Elf32_Phdr ph32;

	if (is64) {
		if (pread(fd, &ph64, sizeof(ph64), at) != (ssize_t)sizeof(ph64))
			return false;
		*seg = (struct segment){ ph64.p_type, ph64.p_offset, ph64.p_filesz, ph64.p_align };
	} else {
		if (pread(fd, &ph32, sizeof(ph32), at) != (ssize_t)sizeof(ph32))
			return false;
		*seg = (struct segment){ ph32.p_type, ph32.p_offset, ph32.p_filesz, ph32.p_align };
	}
	return true;
}

/* Does the PT_NOTE segment seg hold the Go linker's build ID note? */
static bool
has_go_note(int fd, const struct segment *seg)
{
	static unsigned char notes[MAX_NOTE_SEGMENT];
	size_t align = seg->align == 8 ? 8 : 4, at = 0, size;

	if (seg->size > sizeof(notes) ||
	    pread(fd, notes, seg->size, (off_t)seg->offset) != (ssize_t)seg->size)
		return false;
	size = (size_t)seg->size;
	/* Each note: name size, description size, type, then the name and the
	 * description, each padded to the alignment. */
	while (size - at >= 3 * sizeof(uint32_t)) {
		uint32_t header[3];
		size_t name_at = at + sizeof(header), desc_at;

		memcpy(header, notes + at, sizeof(header));
		desc_at = name_at + ((header[0] + align - 1) & ~(align - 1));
		if (header[0] > size || header[1] > size || desc_at > size)
			return false;
		if ((header[0] == 3 || header[0] == 4) && header[2] == GO_NOTE_TYPE &&
		    memcmp(notes + name_at, "Go", 3) == 0)
			return true;
		at = desc_at + ((header[1] + align - 1) & ~(align - 1));
		if (at > size)
			return false;
	}
	return false;
}

/* An ELF file: static, dynamic, or Go (whose socket calls bypass the C
 * library however it is linked). */
static enum program_kind
elf_kind(int fd, const unsigned char *ident)
{
	bool is64 = ident[EI_CLASS] == ELFCLASS64, interp = false;
	Elf64_Ehdr eh64;
	Elf32_Ehdr eh32;
	uint64_t phoff;
	unsigned phnum, phentsize;

	if (is64) {
		if (pread(fd, &eh64, sizeof(eh64), 0) != (ssize_t)sizeof(eh64))
			return PROGRAM_OTHER;
		phoff = eh64.e_phoff;
		phnum = eh64.e_phnum;
		phentsize = eh64.e_phentsize;
	} else {
		if (pread(fd, &eh32, sizeof(eh32), 0) != (ssize_t)sizeof(eh32))
			return PROGRAM_OTHER;
		phoff = eh32.e_phoff;
		phnum = eh32.e_phnum;
		phentsize = eh32.e_phentsize;
	}
	if (phentsize < (is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr)))
		return PROGRAM_OTHER;
	for (unsigned i = 0; i < phnum; i++) {
		struct segment seg;

		if (!read_segment(fd, is64, (off_t)(phoff + (uint64_t)i * phentsize), &seg))
			return PROGRAM_OTHER;
		if (seg.type == PT_INTERP)
			interp = true;
		else if (seg.type == PT_NOTE && has_go_note(fd, &seg))
			return PROGRAM_GO;
	}
	return interp ? PROGRAM_DYNAMIC : PROGRAM_STATIC;
}

/* Classify the file at path; for a script, its interpreter line goes into
 * line (NUL-terminated, without "#!"). */
static enum program_kind
program_kind(const char *path, char *line, size_t line_size)
{
	unsigned char head[256];
	enum program_kind kind = PROGRAM_OTHER;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return PROGRAM_OTHER;
	n = pread(fd, head, sizeof(head), 0);
	if (n >= 2 && head[0] == '#' && head[1] == '!') {
		size_t len = 0;
		for (ssize_t i = 2; i < n && head[i] != '\n' && len + 1 < line_size; i++)
			line[len++] = (char)head[i];
		line[len] = '\0';
		kind = PROGRAM_SCRIPT;
	} else if (n >= EI_NIDENT && memcmp(head, ELFMAG, SELFMAG) == 0 &&
		   (head[EI_CLASS] == ELFCLASS64 || head[EI_CLASS] == ELFCLASS32)) {
		kind = elf_kind(fd, head);
	}
	close(fd);
	return kind;
}

/* From an interpreter line "/usr/bin/env -S python3 -u", the program that
 * will run: the interpreter, or for env the first word that is neither an
 * option nor an assignment. Writes it into out (a path or a bare name). */
static void
interpreter_of(char *line, char *out, size_t size)
{
	char *save = NULL;
	char *interp = strtok_r(line, " \t", &save);
	const char *base;

	out[0] = '\0';
	if (interp == NULL)
		return;
	snprintf(out, size, "%s", interp);
	base = strrchr(interp, '/') ? strrchr(interp, '/') + 1 : interp;
	if (strcmp(base, "env") != 0)
		return;
	for (char *word = strtok_r(NULL, " \t", &save); word; word = strtok_r(NULL, " \t", &save)) {
		if (word[0] == '-' || strchr(word, '='))
			continue;
		snprintf(out, size, "%s", word);
		return;
	}
}

/* Refuse programs LD_PRELOAD cannot reach: statically linked ones and Go
 * ones (also as a script's interpreter), and set-user-ID ones. Returns 0,
 * or -1 after an error message. */
static int
check_preloadable(const char *program, const char *path)
{
	char current[PATH_MAX], line[256], next[PATH_MAX];
	struct stat st;

	snprintf(current, sizeof(current), "%s", path);
	for (int depth = 0; depth <= MAX_INTERPRETER_DEPTH; depth++) {
		switch (program_kind(current, line, sizeof(line))) {
		case PROGRAM_STATIC:
			if (depth == 0)
				fprintf(stderr, "handoff run: %s is statically linked: LD_PRELOAD cannot "
					"work; route to it over TCP with the relay (see docs/servers.md)\n",
					program);
			else
				fprintf(stderr, "handoff run: %s runs %s, which is statically linked: "
					"LD_PRELOAD cannot work; route to it over TCP with the relay "
					"(see docs/servers.md)\n", program, current);
			return -1;
		case PROGRAM_GO:
			if (depth == 0)
				fprintf(stderr, "handoff run: %s is a Go program: Go makes its socket "
					"calls without the C library, so LD_PRELOAD cannot work; route "
					"to it over TCP with the relay (see docs/servers.md)\n", program);
			else
				fprintf(stderr, "handoff run: %s runs %s, a Go program: Go makes its "
					"socket calls without the C library, so LD_PRELOAD cannot work; "
					"route to it over TCP with the relay (see docs/servers.md)\n",
					program, current);
			return -1;
		case PROGRAM_DYNAMIC:
			/* The dynamic linker ignores LD_PRELOAD (secure execution)
			 * when exec() changes the user or group. */
			if (stat(current, &st) == 0 &&
			    (((st.st_mode & S_ISUID) && st.st_uid != getuid()) ||
			     ((st.st_mode & S_ISGID) && st.st_gid != getgid()))) {
				fprintf(stderr, "handoff run: %s is set-user-ID or set-group-ID: the "
					"dynamic linker ignores LD_PRELOAD for it\n", current);
				return -1;
			}
			return 0;
		case PROGRAM_SCRIPT:
			interpreter_of(line, next, sizeof(next));
			if (next[0] == '\0' || find_program(next, current, sizeof(current)) < 0)
				return 0;	/* execve() will say what is wrong */
			break;
		case PROGRAM_OTHER:
			return 0;
		}
	}
	return 0;
}

/* ---- watching the registration ---- */

static int64_t
monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool
id_in(const char (*list)[ID_MAX], size_t n, const char *id)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i], id) == 0)
			return true;
	return false;
}

/* ID of "ID.names" / "ID.status" into id if file has that suffix. */
static bool
id_of(const char *file, const char *suffix, char *id)
{
	size_t len = strlen(file), slen = strlen(suffix);

	if (len <= slen || len - slen >= ID_MAX || strcmp(file + len - slen, suffix) != 0)
		return false;
	memcpy(id, file, len - slen);
	id[len - slen] = '\0';
	return true;
}

/* A registration's directory ID/ (".ID" is one still being filled). */
static bool
dir_id(const char *name, bool is_dir, char *id)
{
	if (!is_dir || name[0] == '.' || strlen(name) >= ID_MAX)
		return false;
	strcpy(id, name);
	return true;
}

/* Read a small file in the upstreams directory into buf (NUL-terminated):
 * ID.status there, ID.names in the registration's directory ID/ (or
 * directly there, as older libhandoff wrote it). Returns the length or -1.
 * Sets *owner. */
static ssize_t
read_upstream_file(const struct watch *w, const char *id, const char *suffix,
		   char *buf, size_t size, uid_t *owner)
{
	char path[PATH_MAX];
	struct stat st;
	ssize_t n, total = 0;
	int fd;

	fd = -1;
	if (strcmp(suffix, WIRE_NAMES_SUFFIX) == 0 &&
	    snprintf(path, sizeof(path), "%s/%s/%s%s", w->upstreams, id, id, suffix) < (int)sizeof(path))
		fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0 && snprintf(path, sizeof(path), "%s/%s%s", w->upstreams, id, suffix) < (int)sizeof(path))
		fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -1;
	}
	*owner = st.st_uid;
	while ((size_t)total < size - 1 && (n = read(fd, buf + total, size - 1 - (size_t)total)) > 0)
		total += n;
	close(fd);
	buf[total] = '\0';
	return total;
}

/* Is pid the child or one of its descendants (per /proc)? */
static bool
descends_from(pid_t pid, pid_t ancestor)
{
	for (int depth = 0; depth < 32 && pid > 1; depth++) {
		char path[64], stat_line[512];
		FILE *f;
		char *paren;
		long ppid;

		if (pid == ancestor)
			return true;
		snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
		f = fopen(path, "re");
		if (f == NULL)
			return false;
		if (fgets(stat_line, sizeof(stat_line), f) == NULL) {
			fclose(f);
			return false;
		}
		fclose(f);
		/* "pid (comm) state ppid ...": comm may hold anything but the
		 * last ')' ends it. */
		paren = strrchr(stat_line, ')');
		if (paren == NULL || sscanf(paren + 1, " %*c %ld", &ppid) != 1)
			return false;
		pid = (pid_t)ppid;
	}
	return false;
}

/* Does the names file body list exactly our names (after the protocol
 * line a receiver for a --port PORT/PROTOCOL writes, and the family line
 * of one that takes clients of one address family only)? */
static bool
names_match(const struct run_options *opt, char *body)
{
	size_t seen = 0;
	char *save = NULL;

	for (char *line = strtok_r(body, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		bool known = false;
		if (strncmp(line, WIRE_NAMES_PROTOCOL " ", sizeof(WIRE_NAMES_PROTOCOL)) == 0 ||
		    strncmp(line, WIRE_NAMES_FAMILY " ", sizeof(WIRE_NAMES_FAMILY)) == 0)
			continue;
		for (size_t i = 0; i < opt->n_names; i++)
			if (strcmp(opt->names[i], line) == 0)
				known = true;
		if (!known)
			return false;
		seen++;
	}
	return seen == opt->n_names;
}

static void
names_joined(const struct run_options *opt, char *out, size_t size)
{
	size_t used = 0;

	out[0] = '\0';
	for (size_t i = 0; i < opt->n_names; i++) {
		int n = snprintf(out + used, size - used, "%s%s", i ? ", " : "", opt->names[i]);
		if (n < 0 || (size_t)n >= size - used)
			return;
		used += (size_t)n;
	}
}

static void
check_status(struct watch *w, const char *id)
{
	char status[1024], names[2048];
	uid_t owner;
	ssize_t len;
	size_t i;

	for (i = 0; i < w->n_ours; i++)
		if (strcmp(w->ours[i], id) == 0)
			break;
	if (i == w->n_ours || w->refusal_reported[i])
		return;
	len = read_upstream_file(w, id, WIRE_STATUS_SUFFIX, status, sizeof(status), &owner);
	if (len <= 0)
		return;
	w->answered = true;
	if (strncmp(status, "refused: ", 9) != 0)
		return;
	status[strcspn(status, "\n")] = '\0';
	names_joined(w->opt, names, sizeof(names));
	fprintf(stderr, "handoff run: the daemon refused %s: %s\n", names, status + 9);
	w->refusal_reported[i] = true;
}

/* A names file appeared: is it PROGRAM's registration? */
static void
check_names(struct watch *w, const char *id)
{
	char body[NAMES_FILE_MAX];
	uid_t owner;
	long pid;

	if (id_in((const char (*)[ID_MAX])w->before, w->n_before, id) ||
	    id_in((const char (*)[ID_MAX])w->ours, w->n_ours, id) || w->n_ours == MAX_OUR_IDS)
		return;
	if (sscanf(id, "%ld-", &pid) != 1 || !descends_from((pid_t)pid, w->child))
		return;
	if (read_upstream_file(w, id, WIRE_NAMES_SUFFIX, body, sizeof(body), &owner) < 0 ||
	    owner != geteuid() || !names_match(w->opt, body))
		return;
	if (w->n_ours == 0)
		w->found_ms = monotonic_ms();
	strcpy(w->ours[w->n_ours++], id);
	/* The daemon may have answered before this event was read. */
	check_status(w, id);
}

/* Look at every file in the directory: at start (to remember what is
 * not ours) or after the inotify queue overflowed. */
static void
scan_upstreams(struct watch *w, bool at_start)
{
	DIR *dir = opendir(w->upstreams);
	struct dirent *e;
	char id[ID_MAX];

	if (dir == NULL)
		return;
	while ((e = readdir(dir)) != NULL) {
		if (!id_of(e->d_name, WIRE_NAMES_SUFFIX, id) && !dir_id(e->d_name, e->d_type == DT_DIR, id))
			continue;
		if (!at_start) {
			check_names(w, id);
			check_status(w, id);
			continue;
		}
		if (w->n_before % 64 == 0) {
			char (*grown)[ID_MAX] = realloc(w->before, (w->n_before + 64) * sizeof(*grown));
			if (grown == NULL)
				break;
			w->before = grown;
		}
		strcpy(w->before[w->n_before++], id);
	}
	closedir(dir);
}

static void
read_inotify(struct watch *w, int fd)
{
	char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			char id[ID_MAX];

			if (ev->mask & IN_Q_OVERFLOW)
				scan_upstreams(w, false);
			else if (ev->len > 0 && dir_id(ev->name, ev->mask & IN_ISDIR, id))
				check_names(w, id);
			else if (ev->len > 0 && id_of(ev->name, WIRE_NAMES_SUFFIX, id))
				check_names(w, id);
			else if (ev->len > 0 && id_of(ev->name, WIRE_STATUS_SUFFIX, id))
				check_status(w, id);
			p += sizeof(*ev) + ev->len;
		}
	}
}

static void
warn_not_bound(const struct watch *w)
{
	const struct run_options *opt = w->opt;
	char list[MAX_RUN_PORTS * 8] = "";
	size_t used = 0;

	if (opt->n_ports == 1) {
		fprintf(stderr, "handoff run: %s has not bound port %u after %u s; is it listening "
			"on that port?\n", w->program, opt->ports[0].number, opt->wait_seconds);
		return;
	}
	for (size_t i = 0; i < opt->n_ports; i++)
		used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%u",
					 i ? ", " : "", opt->ports[i].number);
	fprintf(stderr, "handoff run: %s has not bound any of ports %s after %u s; is it "
		"listening on them?\n", w->program, list, opt->wait_seconds);
}

static int
exit_status_of(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return 1;
}

/* Warn about a registration that did not happen, or that the daemon did
 * not answer, once its time is up. Returns the poll() timeout until the
 * next such moment (-1: none). */
static int
check_deadlines(struct watch *w, int64_t start_ms)
{
	int64_t wait_ms = (int64_t)w->opt->wait_seconds * 1000, now = monotonic_ms(), due;

	if (wait_ms == 0)
		return -1;
	if (w->n_ours == 0 && !w->warned_unbound) {
		due = start_ms + wait_ms;
		if (now < due)
			return (int)(due - now);
		warn_not_bound(w);
		w->warned_unbound = true;
	}
	if (w->n_ours > 0 && !w->answered && !w->warned_unanswered) {
		due = w->found_ms + wait_ms;
		if (now < due)
			return (int)(due - now);
		fprintf(stderr, "handoff run: the daemon has not answered %s's registration after "
			"%u s; is `handoff serve` running with runtime directory %s?\n",
			w->program, w->opt->wait_seconds, w->runtime_dir);
		w->warned_unanswered = true;
	}
	return -1;
}

/* Forward signals, watch the registration, and return PROGRAM's exit
 * status once it has ended. */
static int
supervise(struct watch *w, int signal_fd, int inotify_fd)
{
	int64_t start_ms = monotonic_ms();

	for (;;) {
		struct pollfd fds[2] = {
			{ .fd = signal_fd, .events = POLLIN },
			{ .fd = inotify_fd, .events = POLLIN },
		};
		struct signalfd_siginfo si;

		if (poll(fds, inotify_fd >= 0 ? 2 : 1, check_deadlines(w, start_ms)) < 0 &&
		    errno != EINTR) {
			fprintf(stderr, "handoff run: poll: %s\n", strerror(errno));
			return 1;
		}
		if (fds[1].revents & POLLIN)
			read_inotify(w, inotify_fd);
		if (!(fds[0].revents & POLLIN))
			continue;
		while (read(signal_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
			int status;

			if (si.ssi_signo != SIGCHLD) {
				/* The terminal signals the whole foreground process
				 * group, PROGRAM included; pass on only the others. */
				if (si.ssi_code != SI_KERNEL)
					kill(w->child, (int)si.ssi_signo);
				continue;
			}
			if (waitpid(w->child, &status, WNOHANG) == w->child) {
				/* Its last words about the registration, if any. */
				if (inotify_fd >= 0)
					read_inotify(w, inotify_fd);
				return exit_status_of(status);
			}
		}
	}
}

/* In the child: the environment for the preload library, then exec. */
static void __attribute__((noreturn))
exec_program(const struct run_options *opt, const char *path, const char *preload,
	     const char *runtime_dir, const sigset_t *mask)
{
	char names[MAX_RUN_NAMES * sizeof(opt->names[0])], ports[MAX_RUN_PORTS * 16];
	const char *existing = getenv("LD_PRELOAD");
	char *ld_preload = NULL;
	size_t used = 0;

	names[0] = '\0';
	for (size_t i = 0; i < opt->n_names; i++)
		used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s",
					 i ? "," : "", opt->names[i]);
	used = 0;
	ports[0] = '\0';
	for (size_t i = 0; i < opt->n_ports; i++)
		used += (size_t)snprintf(ports + used, sizeof(ports) - used, "%s%u%s%s",
					 i ? "," : "", opt->ports[i].number,
					 opt->ports[i].protocol ? "/" : "",
					 opt->ports[i].protocol ? opt->ports[i].protocol : "");
	if (existing != NULL && existing[0] != '\0' && strstr(existing, preload) == NULL) {
		if (asprintf(&ld_preload, "%s:%s", existing, preload) < 0)
			ld_preload = NULL;
	} else if (existing != NULL && existing[0] != '\0') {
		ld_preload = strdup(existing);
	} else {
		ld_preload = strdup(preload);
	}
	if (ld_preload == NULL || setenv("LD_PRELOAD", ld_preload, 1) < 0 ||
	    setenv("HANDOFF_NAMES", names, 1) < 0 || setenv("HANDOFF_PORTS", ports, 1) < 0 ||
	    setenv("HANDOFF_RUNTIME_DIR", runtime_dir, 1) < 0) {
		fprintf(stderr, "handoff run: cannot set up the environment: %s\n", strerror(errno));
		_exit(127);
	}
	sigprocmask(SIG_SETMASK, mask, NULL);
	execv(path, opt->program_argv);
	fprintf(stderr, "handoff run: cannot execute %s: %s\n", path, strerror(errno));
	_exit(errno == ENOENT ? 127 : 126);
}

int
cmd_run(int argc, char **argv)
{
	/* Static: some 40 KiB of names and IDs, run once per process. */
	static struct run_options opt;
	static struct watch w;
	static char runtime_dir[PATH_MAX];
	char program_path[PATH_MAX], preload[PATH_MAX];
	sigset_t forwarded, old_mask;
	int signal_fd, inotify_fd, rc;
	static const int signals[] = {
		SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCHLD,
	};

	rc = parse_options(argc, argv, &opt);
	if (rc != 0) {
		if (rc > 0)
			fputs(usage_text, stdout);
		return rc > 0 ? 0 : 2;
	}
	w.opt = &opt;
	w.program = opt.program_argv[0];
	w.runtime_dir = runtime_dir;
	if (find_program(w.program, program_path, sizeof(program_path)) < 0) {
		fprintf(stderr, "handoff run: %s: command not found\n", w.program);
		return 127;
	}
	if (find_preload(preload, sizeof(preload)) < 0 ||
	    resolve_runtime_dir(&opt, runtime_dir) < 0 ||
	    check_preloadable(w.program, program_path) < 0)
		return 1;
	if (snprintf(w.upstreams, sizeof(w.upstreams), "%s/%s", runtime_dir,
		     WIRE_DIR_UPSTREAMS) >= (int)sizeof(w.upstreams))
		return 1;	/* cannot happen: resolve_runtime_dir() checked it */

	/* Watch before looking, so that no registration falls in between. */
	inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (inotify_fd >= 0 &&
	    inotify_add_watch(inotify_fd, w.upstreams, IN_MOVED_TO | IN_CLOSE_WRITE) < 0) {
		fprintf(stderr, "handoff run: cannot watch %s (%s); no registration reports\n",
			w.upstreams, strerror(errno));
		close(inotify_fd);
		inotify_fd = -1;
	}
	scan_upstreams(&w, true);

	sigemptyset(&forwarded);
	for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
		sigaddset(&forwarded, signals[i]);
	sigprocmask(SIG_BLOCK, &forwarded, &old_mask);
	signal_fd = signalfd(-1, &forwarded, SFD_NONBLOCK | SFD_CLOEXEC);
	if (signal_fd < 0) {
		fprintf(stderr, "handoff run: signalfd: %s\n", strerror(errno));
		return 1;
	}
	fflush(NULL);
	w.child = fork();
	if (w.child < 0) {
		fprintf(stderr, "handoff run: fork: %s\n", strerror(errno));
		return 1;
	}
	if (w.child == 0)
		exec_program(&opt, program_path, preload, runtime_dir, &old_mask);

	rc = supervise(&w, signal_fd, inotify_fd);
	close(signal_fd);
	if (inotify_fd >= 0)
		close(inotify_fd);
	free(w.before);
	return rc;
}
