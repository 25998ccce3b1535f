#!/bin/bash
# latency.sh - measure the handoff latency (daemon's accept to the upstream holding the socket) at fixed offered rates of new connections, and print a Markdown table.
#
# Usage: bench/latency.sh                 (as root on Debian 12, to install what is missing)
#        BENCH_QUICK=1 bench/latency.sh   (under a minute: checks the script, figures are rough)
#
# Builds the daemon and libhandoff (`make`, no sanitizers), the open-loop
# client bench/latency-client.c and the upstream bench/latency-receiver.c
# (which links build/libhandoff.a), starts the daemon on 127.0.0.1 with an
# admin endpoint and the receiver for latency.example, and for every rate
# and round runs the client for a fixed time. Around each measurement it
# reads the daemon's handoff and peek histograms from /metrics (their
# difference is the measurement's), resets and then reads the receiver's
# own figures (SIGUSR1), and reads the daemon's CPU time from
# /proc/PID/stat and how long the daemon and the receiver waited for a CPU
# from /proc/PID/schedstat. bench/latency-report.py prints the table. Everything
# started here is stopped by its PID when the script ends.
#
# Environment (defaults in brackets, quick mode's after the slash):
# BENCH_LATENCY_RATES ["5000 15000"] offered new connections per second,
# BENCH_LATENCY_ROUNDS [3/1], BENCH_LATENCY_SECONDS [5/1] per measurement,
# BENCH_LATENCY_IN_FLIGHT [2000] the client's bound on open connections,
# BENCH_LATENCY_LISTEN_OPTIONS [none] appended to the daemon's listen line
# (e.g. "defer-accept 1s"), BENCH_LATENCY_PORT_BASE [23460] first of two
# TCP ports, BENCH_KEEP=1 keeps
# the working directory (configuration, logs, raw figures).
set -euo pipefail

SCRIPT=latency.sh
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
	ROUNDS=${BENCH_LATENCY_ROUNDS:-1}
	SECONDS_EACH=${BENCH_LATENCY_SECONDS:-1}
else
	ROUNDS=${BENCH_LATENCY_ROUNDS:-3}
	SECONDS_EACH=${BENCH_LATENCY_SECONDS:-5}
fi
RATES=${BENCH_LATENCY_RATES:-5000 15000}
IN_FLIGHT=${BENCH_LATENCY_IN_FLIGHT:-2000}
LISTEN_OPTIONS=${BENCH_LATENCY_LISTEN_OPTIONS:-}
PORT_BASE=${BENCH_LATENCY_PORT_BASE:-23460}
NAME=latency.example

build() {
	say "building (make, bench/latency-client.c, bench/latency-receiver.c)"
	make_handoff build/handoff build/libhandoff.a
	build_tool latency-client
	build_tool latency-receiver -I"$ROOT_DIR/include" "$ROOT_DIR/build/libhandoff.a" -lpthread
}

# pick_ports: LISTEN_PORT and ADMIN_PORT, two consecutive free ports.
pick_ports() {
	local base
	base=$(free_ports "$PORT_BASE" 2)
	LISTEN_PORT=$base
	ADMIN_PORT=$((base + 1))
}

answered() {
	[ "$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' -H "Host: $NAME" "http://127.0.0.1:$LISTEN_PORT/")" = 200 ]
}

start_everything() {
	cat >"$WORK/handoff.conf" <<-EOF
	# The daemon for bench/latency.sh: one plain-HTTP listener, one local upstream.
	runtime-dir $WORK/run
	access-log off
	# Every client is 127.0.0.1, and an open loop may hold many connections.
	max-per-ip 60000
	max-peeking 60000
	admin 127.0.0.1:$ADMIN_PORT
	listen 127.0.0.1:$LISTEN_PORT http $LISTEN_OPTIONS
	grant $NAME to self
	EOF
	"$ROOT_DIR/build/handoff" check -c "$WORK/handoff.conf" >/dev/null || die "handoff check failed"
	start handoff "$ROOT_DIR/build/handoff" serve -c "$WORK/handoff.conf"
	DAEMON_PID=$LAST_PID
	wait_until "the handoff daemon" test -d "$WORK/run/upstreams"
	start receiver "$WORK/latency-receiver" "$WORK/run" "$NAME" "$WORK/receiver.txt"
	RECEIVER_PID=$LAST_PID
	wait_until "the receiver behind the daemon" answered
}

# receiver_line: have the receiver append its figures and start anew (SIGUSR1); print the line.
receiver_line() {
	local before i
	touch "$WORK/receiver.txt"
	before=$(wc -l <"$WORK/receiver.txt" 2>/dev/null || echo 0)
	kill -USR1 "$RECEIVER_PID"
	for ((i = 0; i < 100; i++)); do
		if [ "$(wc -l <"$WORK/receiver.txt" 2>/dev/null || echo 0)" -gt "$before" ]; then
			tail -1 "$WORK/receiver.txt"
			return 0
		fi
		sleep 0.05
	done
	die "the receiver did not answer SIGUSR1"
}

metrics() {
	curl -s --max-time 10 "http://127.0.0.1:$ADMIN_PORT/metrics" |
		grep -E '^handoff_(handoff|peek)_duration_seconds_(bucket|count)\{listener="127\.0\.0\.1:'"$LISTEN_PORT"'"' ||
		die "cannot read the daemon's metrics"
}

# schedstat PID: nanoseconds on a CPU, nanoseconds runnable but waiting for
# one (run queue), times run; both processes are single-threaded.
schedstat() {
	cat "/proc/$1/schedstat"
}

# measure RATE ROUND [warm-up]: one run of the client; its figures into WORK/RATE-ROUND/.
measure() {
	local rate=$1 round=$2 dir ticks0 ticks1 daemon0 daemon1 receiver0 receiver1
	dir=$WORK/runs/$rate-$round
	mkdir -p "$dir"
	metrics >"$dir/metrics-before.txt"
	receiver_line >/dev/null
	ticks0=$(tree_ticks "$DAEMON_PID")
	daemon0=$(schedstat "$DAEMON_PID")
	receiver0=$(schedstat "$RECEIVER_PID")
	timeout $((SECONDS_EACH + 60)) "$WORK/latency-client" 127.0.0.1 "$LISTEN_PORT" "$NAME" "$rate" \
		"$SECONDS_EACH" "$IN_FLIGHT" >"$dir/client.txt" 2>"$dir/client.log" ||
		die "latency-client failed at $rate/s: $(tail -3 "$dir/client.log")"
	ticks1=$(tree_ticks "$DAEMON_PID")
	daemon1=$(schedstat "$DAEMON_PID")
	receiver1=$(schedstat "$RECEIVER_PID")
	receiver_line >"$dir/receiver.txt"
	metrics >"$dir/metrics-after.txt"
	echo "ticks $((ticks1 - ticks0)) clk_tck $(getconf CLK_TCK)" >"$dir/cpu.txt"
	local -a d0 d1 r0 r1
	read -r -a d0 <<<"$daemon0"
	read -r -a d1 <<<"$daemon1"
	read -r -a r0 <<<"$receiver0"
	read -r -a r1 <<<"$receiver1"
	echo "daemon_wait_ns $((d1[1] - d0[1])) daemon_runs $((d1[2] - d0[2]))" >>"$dir/cpu.txt"
	echo "receiver_wait_ns $((r1[1] - r0[1])) receiver_runs $((r1[2] - r0[2]))" >>"$dir/cpu.txt"
}

main() {
	local rate round
	install_missing curl python3 iproute2 procps gcc make libc6-dev
	make_work latency
	build
	pick_ports
	start_everything
	local load_before
	load_before=$(cut -d' ' -f1-3 /proc/loadavg)
	say "daemon on 127.0.0.1:$LISTEN_PORT, admin $ADMIN_PORT; rates $RATES; $ROUNDS rounds of ${SECONDS_EACH}s"
	say "warming up: 1 s at the first rate (not recorded)"
	SECONDS_EACH=1 measure "${RATES%% *}" warmup
	rm -rf "$WORK/runs/"*-warmup
	for ((round = 1; round <= ROUNDS; round++)); do
		for rate in $RATES; do
			say "round $round/$ROUNDS: $rate connections/s for ${SECONDS_EACH}s"
			measure "$rate" "$round"
		done
	done
	local command=""
	[ "$QUICK" = 1 ] && command="BENCH_QUICK=1 "
	command+=$({ env | grep '^BENCH_LATENCY_' || true; } | sort | tr '\n' ' ')
	python3 "$BENCH_DIR/latency-report.py" "$WORK/runs" \
		"command=${command}bench/latency.sh" "seconds=$SECONDS_EACH" "rounds=$ROUNDS" \
		"cpus=$(nproc)" "load_before=$load_before" "load_after=$(cut -d' ' -f1-3 /proc/loadavg)" \
		"handoff=$(git -C "$ROOT_DIR" describe --always --dirty 2>/dev/null || echo unknown)"
}

main "$@"
