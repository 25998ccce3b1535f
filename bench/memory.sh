#!/bin/bash
# memory.sh - the handoff daemon's memory and descriptors with many connections held in the peek phase, and handed off.
#
# Usage: bench/memory.sh                          (as root, to raise the descriptor limit)
#        BENCH_MEMORY_CONNECTIONS=2000 bench/memory.sh
#
# Builds handoff (`make`, no sanitizers) if needed, raises `ulimit -n`,
# starts `handoff serve` with its own configuration on 127.0.0.1
# (max-peeking and max-per-ip above the count, peek-timeout 10m, access-log
# off) and nginx under `handoff run --name bench.example`, then holds N
# connections (bench/hold-connections.py) three ways, one after the other:
#
#   silent       connected, nothing sent: idle in the peek phase
#   partial TLS  the first 100 bytes of a real ClientHello: idle in the
#                middle of peeking
#   handed off   a complete HTTP/1.1 keep-alive request, its response read:
#                held open by nginx, no longer by the daemon
#
# Before, while they are held and after they are closed it reads the
# daemon's VmRSS, RssAnon and descriptor count (/proc/PID/status,
# /proc/PID/fd) and the kernel's Slab (/proc/meminfo, context: socket
# memory is the kernel's, not the daemon's), and prints a Markdown table.
# Everything started is stopped by its PID when the script ends.
#
# Environment: BENCH_MEMORY_CONNECTIONS [10000], BENCH_MEMORY_PORT_BASE
# [23700] first of four TCP ports, BENCH_KEEP=1 keeps the working directory.
# shellcheck disable=SC2154	# before_*, held_*, after_* and RESULT_* are set by printf -v and eval
set -euo pipefail

SCRIPT=memory.sh
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"
N=${BENCH_MEMORY_CONNECTIONS:-10000}
PORT_BASE=${BENCH_MEMORY_PORT_BASE:-23700}
HANDOFF=$ROOT_DIR/build/handoff
# Room for N sockets in each process (the client, the daemon, nginx's worker).
NOFILE=$((N + 4096))

if ! [[ "$N" =~ ^[0-9]+$ ]] || [ "$N" -lt 100 ]; then
	die "BENCH_MEMORY_CONNECTIONS must be a number of at least 100"
fi
for program in nginx python3 make cc curl ss; do
	command -v "$program" >/dev/null || die "$program is missing (bench/run.sh installs what the benchmarks need)"
done

# --- ports ---------------------------------------------------------------------

# pick_ports: four consecutive free ports from PORT_BASE on.
pick_ports() {
	local base
	base=$(free_ports "$PORT_BASE" 4)
	PORT_SILENT=$base PORT_TLS=$((base + 1)) PORT_HTTP=$((base + 2)) PORT_NGINX=$((base + 3))
}

# --- measuring ---------------------------------------------------------------

fd_count() {
	local fds=(/proc/"$1"/fd/*)
	echo ${#fds[@]}
}

# status_kib PID FIELD: a kB field of /proc/PID/status.
status_kib() {
	awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

slab_kib() {
	awk '$1 == "Slab:" { print $2 }' /proc/meminfo
}

# snapshot PREFIX: PREFIX_rss, PREFIX_anon (KiB), PREFIX_fds of the daemon, PREFIX_slab (KiB).
snapshot() {
	printf -v "$1_rss" '%s' "$(status_kib "$DAEMON" VmRSS)"
	printf -v "$1_anon" '%s' "$(status_kib "$DAEMON" RssAnon)"
	printf -v "$1_fds" '%s' "$(fd_count "$DAEMON")"
	printf -v "$1_slab" '%s' "$(slab_kib)"
}

# settle: wait (up to 10 s) until the daemon's RSS holds still for half a second.
settle() {
	local last now i
	last=$(status_kib "$DAEMON" VmRSS)
	for ((i = 0; i < 20; i++)); do
		sleep 0.5
		now=$(status_kib "$DAEMON" VmRSS)
		[ "$now" = "$last" ] && return 0
		last=$now
	done
}

fds_at_least() { [ "$(fd_count "$DAEMON")" -ge "$1" ]; }
fds_at_most() { [ "$(fd_count "$DAEMON")" -le "$1" ]; }
holder_says() { grep -q "^$1" "$WORK/hold-$2.log"; }

ROWS=()

# measure KEY LABEL MODE PORT: hold N connections of MODE on PORT and record one table row.
measure() {
	local key=$1 label=$2 mode=$3 port=$4 holder expect_fds per_conn per_anon
	say "$label: opening $N connections"
	snapshot before
	start "hold-$key" python3 "$BENCH_DIR/hold-connections.py" "$mode" --port "$port" --count "$N" \
		--name bench.example
	holder=$LAST_PID
	# 10 ms per connection at most: bounded, and far above what it takes.
	if ! poll $((N / 100 + 30)) holder_says held "$key"; then
		die "$label: the client did not hold $N connections: $(tail -3 "$WORK/hold-$key.log")"
	fi
	if [ "$mode" = http ]; then
		expect_fds=$before_fds	# handed off: the daemon's copies are closed
		poll 30 fds_at_most "$expect_fds" || say "WARNING: $label: the daemon holds $(fd_count "$DAEMON") descriptors, $expect_fds before"
	else
		expect_fds=$((before_fds + N))
		poll 60 fds_at_least "$expect_fds" || die "$label: the daemon holds $(fd_count "$DAEMON") descriptors, expected $expect_fds"
	fi
	settle
	snapshot held
	[ "$mode" = http ] && NGINX_HELD_FDS=$(nginx_worker_fds)
	kill -TERM "$holder"
	poll 60 holder_says closed "$key" || die "$label: the client did not close its connections"
	wait "$holder" || die "$label: the client failed: $(tail -3 "$WORK/hold-$key.log")"
	poll 60 fds_at_most "$before_fds" || say "WARNING: $label: the daemon still holds $(fd_count "$DAEMON") descriptors, $before_fds before"
	settle
	snapshot after
	per_conn=$(((held_rss - before_rss) * 1024 / N))
	per_anon=$(((held_anon - before_anon) * 1024 / N))
	ROWS+=("| $label | $N | $before_rss | $held_rss | $after_rss | $per_conn | $per_anon | $before_fds / $held_fds / $after_fds | $before_slab → $held_slab |")
	eval "RESULT_${key}_per_conn=$per_conn RESULT_${key}_rss_delta=$((held_rss - before_rss))"
	eval "RESULT_${key}_fd_delta=$((held_fds - before_fds)) RESULT_${key}_after_delta=$((after_rss - before_rss))"
}

nginx_worker_fds() {
	local pid total=0
	for pid in $(descendants "$NGINX_RUN"); do
		[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = nginx ] || continue
		total=$((total + $(fd_count "$pid")))
	done
	echo "$total"
}

# start_daemon KEY: a new `handoff serve` with runtime directory WORK/run-KEY; PID in DAEMON.
start_daemon() {
	local key=$1
	cat >"$WORK/handoff-$key.conf" <<-EOF
	# The daemon of bench/memory.sh: room for every held connection in the
	# peek phase, from one address, for longer than the measurement.
	runtime-dir $WORK/run-$key
	access-log off
	max-peeking $((N + 1000))
	max-per-ip $((N + 1000))
	peek-timeout 10m
	listen 127.0.0.1:$PORT_SILENT http
	listen 127.0.0.1:$PORT_TLS tls
	listen 127.0.0.1:$PORT_HTTP http
	grant bench.example to self
	EOF
	"$HANDOFF" check -c "$WORK/handoff-$key.conf" >/dev/null || die "handoff check failed"
	start "handoff-$key" "$HANDOFF" serve -c "$WORK/handoff-$key.conf"
	DAEMON=$LAST_PID
	poll 15 grep -q ready "$WORK/handoff-$key.log" || die "the daemon did not come up: $(tail -3 "$WORK/handoff-$key.log")"
	# One connection through every listener first, so that what the first
	# connection sets up once (the peek buffer, a timer heap) is in "before".
	curl -s --max-time 5 -o /dev/null -H 'Host: none.example' "http://127.0.0.1:$PORT_SILENT/" || true
}

stop_daemon() {
	local pid kept=()
	stop_pids "$DAEMON"
	wait "$DAEMON" 2>/dev/null || true
	for pid in "${STARTED[@]}"; do
		[ "$pid" = "$DAEMON" ] || kept+=("$pid")
	done
	STARTED=("${kept[@]}")
}

# --- main --------------------------------------------------------------------

main() {
	ulimit -n "$NOFILE" 2>/dev/null ||
		die "cannot raise the descriptor limit to $NOFILE (hard limit $(ulimit -Hn); run as root)"
	build_handoff
	make_work memory
	mkdir -p "$WORK/www" "$WORK/tmp-memory"
	echo "held" >"$WORK/www/index.html"
	pick_ports

	local user_line=""
	[ "$(id -u)" -eq 0 ] && user_line="user root;"
	sed -e "s|@DIR@|$WORK|g" -e "s|@HTTP_PORT@|$PORT_NGINX|g" -e "s|@USER_LINE@|$user_line|g" \
		-e "s|@NOFILE@|$NOFILE|g" -e "s|@WORKER_CONNECTIONS@|$((N + 2048))|g" \
		"$BENCH_DIR/nginx-memory.conf.in" >"$WORK/nginx-memory.conf"
	nginx -t -q -c "$WORK/nginx-memory.conf" 2>/dev/null || die "nginx -t failed for nginx-memory.conf"
	say "descriptor limit $NOFILE, ports $PORT_SILENT-$PORT_NGINX"

	# Each measurement starts on a daemon of its own, so that none reuses
	# memory an earlier one freed (malloc keeps it for the process); an
	# "again" row holds N more on the same daemon, which shows that reuse.
	start_daemon silent
	measure silent "silent, in the peek phase" silent "$PORT_SILENT"
	measure silent_again "silent, again on the same daemon" silent "$PORT_SILENT"
	stop_daemon
	start_daemon partial
	measure partial "partial TLS hello, in the peek phase" partial-tls "$PORT_TLS"
	stop_daemon
	start_daemon handoff
	start nginx "$HANDOFF" run --name bench.example --port "$PORT_NGINX/http" --runtime-dir "$WORK/run-handoff" \
		-- "$(command -v nginx)" -c "$WORK/nginx-memory.conf"
	NGINX_RUN=$LAST_PID
	poll 15 curl -sf --max-time 5 -H 'Host: bench.example' "http://127.0.0.1:$PORT_HTTP/index.html" ||
		die "nginx under handoff run does not answer through the daemon (see $WORK/*.log; BENCH_KEEP=1 keeps them)"
	port_free "$PORT_NGINX" || die "nginx under handoff run listens on TCP port $PORT_NGINX"
	measure handoff "handed off, held by nginx" http "$PORT_HTTP"
	measure handoff_again "handed off, again on the same daemon" http "$PORT_HTTP"

	local version
	version=$(git -C "$ROOT_DIR" describe --always --dirty 2>/dev/null || echo unknown)
	echo
	echo "### Memory of the daemon with $N connections held (\`bench/memory.sh\`, $(date -u '+%Y-%m-%d %H:%M UTC'))"
	echo
	echo "handoff $version, Linux $(uname -r), $(nproc) CPUs. RSS and RssAnon of \`handoff serve\` in KiB"
	echo "(/proc/PID/status), its open descriptors (/proc/PID/fd), and the kernel's Slab in KiB"
	echo "(/proc/meminfo, the whole machine's: socket memory is the kernel's, not the daemon's)."
	echo
	echo "| connections | N | RSS before | RSS held | RSS after close | RSS bytes per connection | RssAnon bytes per connection | descriptors before / held / after | Slab before → held |"
	echo "|---|---:|---:|---:|---:|---:|---:|---|---|"
	printf '%s\n' "${ROWS[@]}"
	echo
	local worst=$RESULT_silent_per_conn
	[ "$RESULT_partial_per_conn" -gt "$worst" ] && worst=$RESULT_partial_per_conn
	if [ "$worst" -le 2048 ]; then
		echo "Peek phase: at most $worst bytes of daemon RSS per connection: within the target of 2 KiB."
	else
		echo "Peek phase: up to $worst bytes of daemon RSS per connection: ABOVE the target of 2 KiB."
	fi
	echo "Handed off: while nginx held the $N connections (nginx's processes: $NGINX_HELD_FDS descriptors)," \
		"the daemon's RSS changed by $RESULT_handoff_rss_delta KiB and its descriptors by $RESULT_handoff_fd_delta" \
		"on a fresh daemon, and by $RESULT_handoff_again_rss_delta KiB and $RESULT_handoff_again_fd_delta the second time."
}

main "$@"
