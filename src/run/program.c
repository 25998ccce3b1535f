/* program.c - find PROGRAM, the preload library of its C library (glibc or musl) and the runtime directory, and refuse programs LD_PRELOAD cannot reach (static, Go, set-user-ID). */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "run/launcher.h"

#ifndef HANDOFF_LIBDIR
#define HANDOFF_LIBDIR "/usr/local/lib/handoff"
#endif

/* The kernel follows at most this many "#!" interpreters. */
#define MAX_INTERPRETER_DEPTH	4

/* ---- finding things ---- */

static bool
is_executable_file(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* Resolve name as execvp() would: as a path if it has a '/', else on PATH.
 * Returns 0, or -1 if nothing executable was found. */
int
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

/* The preload library's file name for each C library. */
static const char *
preload_name(enum program_libc libc)
{
	return libc == LIBC_MUSL ? PRELOAD_NAME_MUSL : PRELOAD_NAME;
}

static const char *
libc_description(enum program_libc libc)
{
	return libc == LIBC_MUSL ? "musl" : "the GNU C library (glibc)";
}

/* The preload library to use for a program of the given C library, into
 * out: $HANDOFF_PRELOAD, else the build for that C library next to the
 * handoff executable, else in HANDOFF_LIBDIR. A glibc-built library cannot
 * load into a musl program and the other way round, so a missing build is
 * named rather than the other one used. Returns 0, or -1 after an error
 * message. */
int
find_preload(const struct program_info *info, char *out, size_t size)
{
	const char *env = getenv("HANDOFF_PRELOAD"), *name = preload_name(info->libc);
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
				if (snprintf(out, size, "%s/%s", exe, name) < (int)size &&
				    access(out, R_OK) == 0)
					goto found;
			}
		}
		snprintf(out, size, "%s/%s", HANDOFF_LIBDIR, name);
		if (access(out, R_OK) < 0) {
			if (info->interpreter[0] != '\0')
				fprintf(stderr, "handoff run: %s is linked with %s (its dynamic linker "
					"is %s) and needs the %s build of the preload library, %s, "
					"which is neither next to the handoff executable nor in %s; "
					"install that build (see docs/containers.md) or set "
					"HANDOFF_PRELOAD to its path\n", info->path,
					libc_description(info->libc), info->interpreter,
					info->libc == LIBC_MUSL ? "musl" : "glibc", name, HANDOFF_LIBDIR);
			else
				fprintf(stderr, "handoff run: cannot find %s next to the handoff "
					"executable or in %s; set HANDOFF_PRELOAD to its path\n", name,
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
int
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
/* The dynamic linker a PT_INTERP segment names, into out ("" if unreadable). */
static void
read_interpreter(int fd, const struct segment *seg, char *out, size_t size)
{
	size_t len = seg->size < size ? (size_t)seg->size : size - 1;

	out[0] = '\0';
	if (pread(fd, out, len, (off_t)seg->offset) != (ssize_t)len)
		len = 0;
	out[len] = '\0';
}

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
elf_kind(int fd, const unsigned char *ident, char *interpreter, size_t interpreter_size)
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
		if (seg.type == PT_INTERP) {
			interp = true;
			read_interpreter(fd, &seg, interpreter, interpreter_size);
		}
		else if (seg.type == PT_NOTE && has_go_note(fd, &seg))
			return PROGRAM_GO;
	}
	return interp ? PROGRAM_DYNAMIC : PROGRAM_STATIC;
}

/* Classify the file at path; for a script, its interpreter line goes into
 * line (NUL-terminated, without "#!"), for a dynamic ELF file its dynamic
 * linker's path. */
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
		kind = elf_kind(fd, head, line, line_size);
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

/* The C library a dynamic linker's path stands for: musl's is
 * /lib/ld-musl-ARCH.so.1, glibc's ld-linux-ARCH.so.N or ld64.so.N. */
static enum program_libc
libc_of_interpreter(const char *interpreter)
{
	const char *base = strrchr(interpreter, '/') ? strrchr(interpreter, '/') + 1 : interpreter;

	if (strncmp(base, "ld-musl-", strlen("ld-musl-")) == 0)
		return LIBC_MUSL;
	return LIBC_GLIBC;
}

/* Refuse programs LD_PRELOAD cannot reach: statically linked ones and Go
 * ones (also as a script's interpreter), and set-user-ID ones. Fills info
 * with the program that will take the preload library (PROGRAM or the
 * interpreter of its script) and that program's C library. Returns 0, or
 * -1 after an error message. */
int
check_preloadable(const char *program, const char *path, struct program_info *info)
{
	char current[PATH_MAX], line[256], next[PATH_MAX];
	struct stat st;

	*info = (struct program_info){ .libc = LIBC_GLIBC };
	snprintf(info->path, sizeof(info->path), "%s", program);
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
			snprintf(info->interpreter, sizeof(info->interpreter), "%s", line);
			info->libc = libc_of_interpreter(line);
			if (depth > 0)
				snprintf(info->path, sizeof(info->path), "%s", current);
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
