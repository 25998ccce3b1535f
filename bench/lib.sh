# lib.sh - what the benchmark scripts share: messages, processes stopped by PID, free ports, templates, packages.
#
# Sourced by bench/*.sh after they set SCRIPT (their name, for messages)
# and, optionally, KEEP_WORK=1 to keep WORK at the end.
# shellcheck shell=bash
# shellcheck disable=SC2153	# SCRIPT is set by the script that sources this file

BENCH_DIR=${BENCH_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
ROOT_DIR=${ROOT_DIR:-$(dirname "$BENCH_DIR")}
KEEP_WORK=${KEEP_WORK:-${BENCH_KEEP:-0}}
STARTED=()		# PIDs this script started, each stopped by its PID at the end
WORK=""

die() {
	echo "$SCRIPT: $*" >&2
	exit 1
}

say() {
	echo "$SCRIPT: $*" >&2
}

# proc_tree descendants|ticks PID...: from one read of /proc/*/stat, every
# process below the given ones (one a line, the given ones left out), or the
# sum of the CPU ticks of the given ones and all below them: utime + stime +
# cutime + cstime, so that reaped children's count too; 0 for no PID at all.
proc_tree() {
	local what=$1
	shift
	{ cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v what="$what" -v roots="$*" '
	{
		pid = $1
		rest = $0
		sub(/^[0-9]+ \(.*\) /, "", rest)	# comm may hold blanks
		split(rest, f, " ")
		parent[pid] = f[2]
		ticks[pid] = f[12] + f[13] + f[14] + f[15]	# utime stime cutime cstime
	}
	END {
		n = split(roots, r, " ")
		for (i = 1; i <= n; i++)
			mark[r[i]] = 1
		do {
			grew = 0
			for (p in parent)
				if (!(p in mark) && (parent[p] in mark)) {
					mark[p] = 1
					grew = 1
					if (what == "descendants")
						print p
				}
		} while (grew)
		if (what == "ticks") {
			sum = 0
			for (p in mark)
				if (p in parent)
					sum += ticks[p]
			print sum
		}
	}'
}

# descendants PID...: every process below the given ones.
descendants() {
	proc_tree descendants "$@"
}

# tree_ticks PID...: CPU ticks of the processes and every one below them.
tree_ticks() {
	proc_tree ticks "$@"
}

# stop_pids PID...: SIGTERM the processes, wait up to 10 s for them and
# everything below them, then SIGKILL what is left.
stop_pids() {
	local tree pid i alive
	tree="$* $(descendants "$@")"
	for pid in "$@"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for ((i = 0; i < 100; i++)); do
		alive=0
		for pid in $tree; do
			kill -0 "$pid" 2>/dev/null && alive=1
		done
		[ "$alive" -eq 0 ] && break
		sleep 0.1
	done
	for pid in $tree; do
		kill -KILL "$pid" 2>/dev/null || true
	done
}

# cleanup: the EXIT trap: stop what was started, remove WORK (unless kept).
cleanup() {
	local status=$?
	trap - EXIT INT TERM
	if [ ${#STARTED[@]} -gt 0 ]; then
		stop_pids "${STARTED[@]}"
		wait 2>/dev/null || true
	fi
	if [ -n "$WORK" ] && [ -d "$WORK" ]; then
		if [ "$KEEP_WORK" = 1 ]; then
			say "working directory kept: $WORK"
		else
			rm -rf "$WORK"
		fi
	fi
	exit "$status"
}

# make_work NAME: a fresh working directory in WORK, removed at exit.
make_work() {
	WORK=$(mktemp -d "/tmp/handoff-$1.XXXXXX")
	chmod 755 "$WORK"	# servers' workers may read a document root in it
	trap cleanup EXIT
	trap 'exit 130' INT TERM
}

# start ROLE COMMAND...: run COMMAND in the background, output to
# WORK/ROLE.log; its PID in LAST_PID.
start() {
	local role=$1
	shift
	"$@" >"$WORK/$role.log" 2>&1 &
	LAST_PID=$!
	STARTED+=("$LAST_PID")
}

# poll SECONDS COMMAND...: true as soon as COMMAND succeeds, false after SECONDS.
poll() {
	local tenths=$(($1 * 10)) i
	shift
	for ((i = 0; i < tenths; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

# wait_until WHAT COMMAND...: poll COMMAND for up to 10 s; die naming WHAT if it never succeeds.
wait_until() {
	local what=$1
	shift
	poll 10 "$@" || die "$what did not come up (see the logs in $WORK; BENCH_KEEP=1 keeps them)"
}

# port_free PORT: no TCP socket of any state uses PORT locally.
port_free() {
	! ss -Htan "sport = :$1" | grep -q .
}

# free_ports BASE N: the first of N consecutive free ports from BASE on
# (below the kernel's ephemeral range, so no outgoing connection takes one).
free_ports() {
	local base=$1 n=$2 attempt p ok
	for ((attempt = 0; attempt < 20; attempt++)); do
		ok=1
		for ((p = base; p < base + n; p++)); do
			port_free "$p" || ok=0
		done
		if [ "$ok" -eq 1 ]; then
			echo "$base"
			return 0
		fi
		base=$((base + n + 10))
	done
	die "no $n free TCP ports from $1 on"
}

# fill TEMPLATE OUTPUT KEY=VALUE...: bench/TEMPLATE with @KEY@ replaced, into WORK/OUTPUT.
fill() {
	local template=$1 output=$2 pair script=""
	shift 2
	for pair in "$@"; do
		script+="s|@${pair%%=*}@|${pair#*=}|g;"
	done
	sed -e "$script" "$BENCH_DIR/$template" >"$WORK/$output"
}

package_installed() {
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

# install_missing PACKAGE...: apt-get install those not installed (as
# root), keeping packaged services (nginx on port 80, haproxy, sniproxy)
# from starting: the benchmarks run their own copies.
install_missing() {
	local apt=(apt-get -o DPkg::Lock::Timeout=900)
	local missing=() package policy=/usr/sbin/policy-rc.d own_policy=0

	for package in "$@"; do
		package_installed "$package" || missing+=("$package")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	[ "$(id -u)" -eq 0 ] || die "missing packages: ${missing[*]} (run as root to install them)"
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		own_policy=1
	fi
	# Other jobs may hold the dpkg lock: wait for it rather than fail.
	if ! "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
		"${apt[@]}" update -qq
		"${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
			die "apt-get install ${missing[*]} failed"
	fi
	[ "$own_policy" -eq 0 ] || rm -f "$policy"
}

# make_handoff TARGET...: make the targets (build/handoff, build/libhandoff.a ...), quietly.
make_handoff() {
	make -C "$ROOT_DIR" -j"$(nproc)" "$@" >/dev/null || die "make failed"
}

# build_handoff: the daemon and the preload library, without sanitizers.
build_handoff() {
	say "building (make)"
	make_handoff build/handoff build/libhandoff-preload.so
}

# build_tool NAME [CC ARGUMENTS...]: compile bench/NAME.c into WORK/NAME,
# as strictly as the project's own code.
build_tool() {
	local name=$1
	shift
	cc -std=c17 -O2 -Wall -Wextra -Wshadow -Wcast-qual -Wstrict-prototypes -Wmissing-prototypes -Werror \
		-o "$WORK/$name" "$BENCH_DIR/$name.c" "$@" || die "cannot build bench/$name.c"
}
