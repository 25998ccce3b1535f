# Makefile - build the handoff daemon, libhandoff, the example upstream, tests and fuzzers.
#
#   make                  release-ish build into build/
#   make SANITIZE=1       AddressSanitizer + UBSan build into build/asan/
#   make SANITIZE=thread  ThreadSanitizer build into build/tsan/ (the daemon's
#                         accepting threads are tested with it)
#   make CC=clang         any C17 compiler; clang and gcc are both kept warning-free
#   make fuzz             libFuzzer targets (clang only) into build/fuzz/
#   make musl             the preload library and a static `handoff run` built
#                         with musl-gcc (Alpine images) into build/musl/
#   make container-kit    build/container-kit/: what to COPY into an image
#                         (docs/containers.md)
#   make test             everything the suite needs, then the suite (see README)

CC       ?= cc
PREFIX   ?= /usr/local
# Install paths (docs/operations.md, "Install"). The configuration lives in
# SYSCONFDIR whatever PREFIX is, because the unit names it.
SYSCONFDIR     ?= /etc
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR    ?= $(PREFIX)/lib/sysusers.d
DOCDIR         ?= $(PREFIX)/share/doc/handoff
SANITIZE ?=

WARNINGS = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wpointer-arith -Wcast-qual
# src/parse: the pure peek parsers; src/daemon: `handoff serve`; src/: the
# command line and what the daemon and libhandoff share (wire.h).
# src/run: `handoff run`, linked into the same executable.
SRC_DIRS := src src/parse src/daemon src/run
CPPFLAGS += -D_GNU_SOURCE -Iinclude $(SRC_DIRS:%=-I%)
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c17 $(WARNINGS) -fno-strict-aliasing
# The preload library is loaded into servers built without sanitizers, and an
# ASan-instrumented shared object cannot be preloaded into those, so it is
# always compiled with the flags as they are before SANITIZE adds its own.
PRELOAD_CFLAGS := $(CFLAGS)

ifeq ($(SANITIZE),1)
BUILD    ?= build/asan
CFLAGS   += -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS  += -fsanitize=address,undefined
else ifeq ($(SANITIZE),thread)
BUILD    ?= build/tsan
CFLAGS   += -fsanitize=thread -fno-omit-frame-pointer
LDFLAGS  += -fsanitize=thread
else
BUILD    ?= build
endif

# src/run_main.c is the stand-alone `handoff run` of container images.
CORE_SRCS   := $(filter-out src/main.c src/run_main.c,$(foreach d,$(SRC_DIRS),$(wildcard $(d)/*.c)))
CORE_OBJS   := $(CORE_SRCS:%.c=$(BUILD)/%.o) $(BUILD)/gen/dashboard.o
# The admin endpoint: libmicrohttpd serves HTTP in its own thread, jansson
# writes the JSON; `handoff status` fetches with libcurl (docs/architecture.md).
DAEMON_LIBS := -lmicrohttpd -ljansson -lcurl -lpthread
PRELOAD_SRCS := $(wildcard lib/preload*.c)
LIB_SRCS    := $(filter-out $(PRELOAD_SRCS),$(wildcard lib/*.c))
LIB_OBJS    := $(LIB_SRCS:%.c=$(BUILD)/pic/%.o)
UNIT_SRCS   := $(wildcard tests/unit/test_*.c)
UNIT_BINS   := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/%)
FUZZ_SRCS   := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS   := $(FUZZ_SRCS:tests/fuzz/%.c=build/fuzz/%)

all: $(BUILD)/handoff $(BUILD)/libhandoff.so $(BUILD)/libhandoff.a $(BUILD)/https-upstream \
     $(BUILD)/libhandoff-preload.so

$(BUILD)/%.o: %.c $(wildcard $(SRC_DIRS:%=%/*.h) include/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/pic/%.o: %.c $(wildcard $(SRC_DIRS:%=%/*.h) include/*.h lib/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -fPIC -fvisibility=hidden -c -o $@ $<

# The dashboard (one HTML file with its CSS and script) is compiled into the
# daemon as a byte array, so it needs no files at run time and no CDN.
$(BUILD)/gen/dashboard.c: src/daemon/dashboard.html
	@mkdir -p $(dir $@)
	{ echo '/* dashboard.c - generated from src/daemon/dashboard.html by the Makefile; do not edit. */'; \
	  echo '#include "admin_internal.h"'; \
	  echo 'const unsigned char admin_dashboard_html[] = {'; \
	  xxd -i < $<; \
	  echo '};'; \
	  echo "const unsigned int admin_dashboard_html_len = $$(wc -c < $<);"; } > $@.tmp && mv $@.tmp $@

$(BUILD)/gen/dashboard.o: $(BUILD)/gen/dashboard.c src/daemon/admin_internal.h
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/libcore.a: $(CORE_OBJS)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/handoff: $(BUILD)/src/main.o $(BUILD)/libcore.a
	$(CC) $(LDFLAGS) -o $@ $^ $(DAEMON_LIBS)

$(BUILD)/libhandoff.so: $(LIB_OBJS)
	$(CC) $(LDFLAGS) -shared -Wl,-soname,libhandoff.so.1 -o $@ $^

$(BUILD)/libhandoff.a: $(LIB_OBJS)
	rm -f $@ && ar rcs $@ $^

# libhandoff-preload.so: the hooks plus a private copy of libhandoff, which
# goes in through an archive so that --exclude-libs keeps its symbols local:
# the library exports only the C library functions it replaces.
PRELOAD_OBJS      := $(PRELOAD_SRCS:%.c=$(BUILD)/preload/%.o)
PRELOAD_BASE_OBJS := $(LIB_SRCS:%.c=$(BUILD)/preload/%.o)

$(BUILD)/preload/%.o: %.c $(wildcard $(SRC_DIRS:%=%/*.h) include/*.h lib/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(PRELOAD_CFLAGS) -fPIC -fvisibility=hidden -c -o $@ $<

$(BUILD)/preload/libhandoff-private.a: $(PRELOAD_BASE_OBJS)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/libhandoff-preload.so: $(PRELOAD_OBJS) $(BUILD)/preload/libhandoff-private.a
	$(CC) -shared -Wl,--exclude-libs,ALL -o $@ $^ -ldl -lpthread

# `handoff run` looks for the preload library here after its own directory.
$(BUILD)/src/run/options.o $(BUILD)/src/run/program.o: CPPFLAGS += -DHANDOFF_LIBDIR='"$(PREFIX)/lib/handoff"'

$(BUILD)/https-upstream: $(BUILD)/examples/https_upstream.o $(BUILD)/libhandoff.a
	$(CC) $(LDFLAGS) -o $@ $^ -lssl -lcrypto -lpthread

# libhandoff's test links the library, not the daemon's core.
$(BUILD)/test_libhandoff: $(BUILD)/tests/unit/test_libhandoff.o $(BUILD)/libhandoff.a
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka -lpthread

# The peek parsers' tests share the fixture checks in tests/unit/sample_check.c.
SAMPLE_TESTS := $(BUILD)/test_http_host $(BUILD)/test_tls_hello
SAMPLE_CHECK := $(BUILD)/tests/unit/sample_check.o

$(SAMPLE_CHECK) $(SAMPLE_TESTS:$(BUILD)/%=$(BUILD)/tests/unit/%.o): tests/unit/sample_check.h

$(SAMPLE_TESTS): $(BUILD)/test_%: $(BUILD)/tests/unit/test_%.o $(SAMPLE_CHECK) $(BUILD)/libcore.a
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka $(DAEMON_LIBS)

$(BUILD)/test_%: $(BUILD)/tests/unit/test_%.o $(BUILD)/libcore.a
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka $(DAEMON_LIBS)

unit: $(UNIT_BINS)

# A fuzzer tests/fuzz/fuzz_NAME.c exercises the pure parser src/parse/NAME.c and
# links only that and the helpers every parser uses, not the daemon.
FUZZ_COMMON := src/parse/peek.c src/parse/hostname.c

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c src/parse/%.c $(FUZZ_COMMON) $(wildcard src/parse/*.h) tests/fuzz/fuzz_common.h
	@mkdir -p $(dir $@)
	clang $(CPPFLAGS) -std=c17 -g -O1 $(WARNINGS) -fsanitize=fuzzer,address,undefined \
		-o $@ $< src/parse/$*.c $(FUZZ_COMMON)

fuzz: $(FUZZ_BINS)

# ---- container images (docs/containers.md) ----
# Alpine images use musl, where a glibc-built library cannot load: the
# preload library is built a second time with Debian's musl-gcc
# (musl-tools). `handoff run` is built statically with musl, so one file
# serves glibc and musl images and needs nothing from them; it picks the
# preload build that matches the program's dynamic linker.
MUSL_CC    ?= musl-gcc
MUSL_BUILD := build/musl
# musl-gcc leaves /usr/include out, and with it the kernel's headers
# (linux/, asm/: Debian's linux-libc-dev) that lib/ uses: they are the same
# for any C library, so they come in through links in build/musl/include.
MUSL_KERNEL_HEADERS := $(MUSL_BUILD)/include/.linked
MUSL_FLAGS := $(CPPFLAGS) -isystem $(MUSL_BUILD)/include $(PRELOAD_CFLAGS)
RUN_SRCS   := src/run_main.c $(wildcard src/run/*.c) src/parse/hostname.c src/runtime_dir.c
MUSL_HEADERS := $(wildcard $(SRC_DIRS:%=%/*.h) include/*.h lib/*.h)
# Where the kit puts the libraries, and so where its `handoff run` looks.
CONTAINER_PREFIX := /usr/local

musl: $(MUSL_BUILD)/libhandoff-preload-musl.so $(MUSL_BUILD)/handoff-run \
      $(MUSL_BUILD)/http-echo

$(MUSL_KERNEL_HEADERS):
	@mkdir -p $(dir $@)
	ln -sfn /usr/include/linux $(MUSL_BUILD)/include/linux
	ln -sfn /usr/include/asm-generic $(MUSL_BUILD)/include/asm-generic
	ln -sfn /usr/include/$$($(CC) -print-multiarch)/asm $(MUSL_BUILD)/include/asm
	touch $@

$(MUSL_BUILD)/libhandoff-preload-musl.so: $(PRELOAD_SRCS) $(LIB_SRCS) $(MUSL_HEADERS) $(MUSL_KERNEL_HEADERS)
	@mkdir -p $(dir $@)
	$(MUSL_CC) $(MUSL_FLAGS) -fPIC -fvisibility=hidden -shared -Wl,--exclude-libs,ALL \
		-o $@ $(PRELOAD_SRCS) $(LIB_SRCS)

$(MUSL_BUILD)/handoff-run: $(RUN_SRCS) $(MUSL_HEADERS) $(MUSL_KERNEL_HEADERS)
	@mkdir -p $(dir $@)
	$(MUSL_CC) $(MUSL_FLAGS) -DHANDOFF_LIBDIR='"$(CONTAINER_PREFIX)/lib/handoff"' -static \
		-o $@ $(RUN_SRCS)

# A plain-HTTP test server linked with musl (and, for comparison, with glibc).
$(MUSL_BUILD)/http-echo: tests/integration/containers/http_echo.c $(MUSL_KERNEL_HEADERS)
	@mkdir -p $(dir $@)
	$(MUSL_CC) $(MUSL_FLAGS) -o $@ $<

$(BUILD)/http-echo: tests/integration/containers/http_echo.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(PRELOAD_CFLAGS) -o $@ $<

# build/container-kit/ mirrors an image's root: COPY it to / (the example
# contrib/container/Containerfile does). Both preload builds go in, since
# an image may hold programs of either C library.
KIT := build/container-kit

container-kit: musl $(BUILD)/libhandoff-preload.so
	rm -rf $(KIT)
	install -D -m 0755 $(MUSL_BUILD)/handoff-run $(KIT)$(CONTAINER_PREFIX)/bin/handoff
	ln -s handoff $(KIT)$(CONTAINER_PREFIX)/bin/handoff-run
	install -D -m 0644 $(BUILD)/libhandoff-preload.so \
		$(KIT)$(CONTAINER_PREFIX)/lib/handoff/libhandoff-preload.so
	install -D -m 0644 $(MUSL_BUILD)/libhandoff-preload-musl.so \
		$(KIT)$(CONTAINER_PREFIX)/lib/handoff/libhandoff-preload-musl.so

test:
	./scripts/test.sh

install: all
	install -D -m 0755 $(BUILD)/handoff $(DESTDIR)$(PREFIX)/bin/handoff
	install -D -m 0644 $(BUILD)/libhandoff.so $(DESTDIR)$(PREFIX)/lib/libhandoff.so.1
	ln -sf libhandoff.so.1 $(DESTDIR)$(PREFIX)/lib/libhandoff.so
	install -D -m 0644 $(BUILD)/libhandoff.a $(DESTDIR)$(PREFIX)/lib/libhandoff.a
	install -D -m 0644 include/handoff.h $(DESTDIR)$(PREFIX)/include/handoff.h
	install -D -m 0644 $(BUILD)/libhandoff-preload.so \
		$(DESTDIR)$(PREFIX)/lib/handoff/libhandoff-preload.so
	install -d $(DESTDIR)$(SYSTEMDUNITDIR)
	for unit in handoff.service handoff.socket; do \
		sed -e 's|@BINDIR@|$(PREFIX)/bin|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
		    -e 's|@DOCDIR@|$(DOCDIR)|g' dist/systemd/$$unit >$(DESTDIR)$(SYSTEMDUNITDIR)/$$unit && \
		chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/$$unit || exit 1; \
	done
	install -D -m 0644 dist/sysusers.d/handoff.conf $(DESTDIR)$(SYSUSERSDIR)/handoff.conf
	install -D -m 0644 -t $(DESTDIR)$(DOCDIR) README.md docs/*.md
	# The sample configuration never replaces one already there.
	install -d $(DESTDIR)$(SYSCONFDIR)/handoff
	[ -e $(DESTDIR)$(SYSCONFDIR)/handoff/handoff.conf ] || \
		install -m 0644 dist/handoff.conf $(DESTDIR)$(SYSCONFDIR)/handoff/handoff.conf

clean:
	rm -rf build

.PHONY: musl container-kit all unit fuzz test install clean
.SECONDARY:
