#!/bin/bash
# profile.sh - where one new connection's cost goes: the daemon's CPU per connection by load, its system calls, its profile, and the receiving server's system calls.
#
# Usage: bench/profile.sh                 (as root on Debian 12, to install what is missing)
#        bench/profile.sh cores           (only part 4)
#        BENCH_QUICK=1 bench/profile.sh   (shorter: checks the script, figures are rough)
#
# Starts on 127.0.0.1 `handoff serve` with four listeners (plain HTTP and
# TLS, each without and with `defer-accept`), the benchmark's nginx
# configuration (bench/nginx-server.conf.in) under `handoff run`, and the
# same configuration reached directly, then measures:
#
#   1. the daemon's CPU per new connection (utime+stime from /proc/PID/stat)
#      and its context switches per connection, for new plain-HTTP
#      connections at 1, 4 and 32 concurrent clients (wrk, "Connection:
#      close") and new TLS connections (bench/tlsconn.c, full handshakes),
#      each without and with defer-accept, with the event loop accepting
#      and with two accepting threads (workers 2): medians of the rounds;
#   2. the system calls per connection of the daemon and of nginx's workers,
#      under `handoff run` and direct (strace -c);
#   3. the daemon's profile (perf record -g): the share of its samples in
#      each system call's kernel path, in waiting for events, and in user
#      space;
#   4. new plain-HTTP connections/s, direct and handed off (`workers 1`:
#      the event loop accepts; `workers N`: one accepting thread per CPU),
#      with every process pinned (taskset) to 1, 2, 4, ... of the machine's
#      CPUs, and the daemon's share of one CPU; then, on all CPUs, where
#      the machine's CPU goes per connection, direct and handed off: the
#      client, nginx, the daemon, and what no process was charged with.
#
# Environment: BENCH_ROUNDS [3/1], BENCH_SECONDS [4/2] per measurement,
# BENCH_PORT_BASE [23800] first of eight TCP ports, BENCH_KEEP=1.
set -euo pipefail

SCRIPT=profile.sh
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

if [ "${BENCH_QUICK:-0}" = 1 ]; then
	ROUNDS=${BENCH_ROUNDS:-1}
	SECONDS_EACH=${BENCH_SECONDS:-2}
else
	ROUNDS=${BENCH_ROUNDS:-3}
	SECONDS_EACH=${BENCH_SECONDS:-4}
fi
PORT_BASE=${BENCH_PORT_BASE:-23800}

# --- measurements --------------------------------------------------------------

# ctx_switches PID: voluntary + involuntary context switches so far, of
# all its threads.
ctx_switches() {
	cat "/proc/$1"/task/*/status 2>/dev/null |
		awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ { s += $2 } END { print s }'
}

# load PORT KIND CLIENTS SECONDS: new connections to PORT; prints their count.
load() {
	local port=$1 kind=$2 clients=$3 seconds=$4 out
	if [ "$kind" = http ]; then
		out=$(wrk -t"$((clients < 2 ? 1 : 2))" -c"$clients" -d"${seconds}s" -H 'Host: bench.example' \
			-H 'Connection: close' "http://127.0.0.1:$port/index.html")
		awk '/requests in/ { print $1 }' <<<"$out"
	else
		out=$("$WORK/tlsconn" full 127.0.0.1 "$port" bench.example /index.html "$clients" $((seconds * 1000)))
		awk '{ for (i = 1; i < NF; i++) if ($i == "connections") print $(i + 1) }' <<<"$out"
	fi
}

# cost PORT KIND CLIENTS: one measurement, "connections/s µs/connection switches/connection".
cost() {
	local t0 c0 t1 c1 n hz
	hz=$(getconf CLK_TCK)
	t0=$(tree_ticks "$DAEMON")
	c0=$(ctx_switches "$DAEMON")
	n=$(load "$1" "$2" "$3" "$SECONDS_EACH")
	t1=$(tree_ticks "$DAEMON")
	c1=$(ctx_switches "$DAEMON")
	[ "${n:-0}" -gt 0 ] || die "no connection completed on port $1"
	awk -v n="$n" -v s="$SECONDS_EACH" -v t=$((t1 - t0)) -v hz="$hz" -v c=$((c1 - c0)) \
		'BEGIN { printf "%.0f %.1f %.2f\n", n / s, t * 1e6 / hz / n, c / n }'
}

median() {
	sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

cost_table() {
	local kinds=("http 1 1" "http 4 1" "http 32 1" "tls 8 1" "http 32 2" "tls 8 2") k kind clients workers
	local plain deferred r line
	echo "#### The daemon's CPU per new connection, by load ($ROUNDS rounds of ${SECONDS_EACH} s, medians)"
	echo
	echo "| workload | connections/s | µs per connection | context switches per connection | with defer-accept: connections/s | µs per connection | context switches per connection |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
	for k in "${kinds[@]}"; do
		read -r kind clients workers <<<"$k"
		set_workers "$workers"
		plain=$PORT_HTTP deferred=$PORT_HTTP_DEFER
		[ "$kind" = tls ] && plain=$PORT_TLS deferred=$PORT_TLS_DEFER
		: >"$WORK/cost-plain" && : >"$WORK/cost-deferred"
		for ((r = 0; r < ROUNDS; r++)); do
			cost "$plain" "$kind" "$clients" >>"$WORK/cost-plain"
			cost "$deferred" "$kind" "$clients" >>"$WORK/cost-deferred"
		done
		line="| $( [ "$kind" = http ] && echo "plain HTTP, wrk -c$clients" || echo "TLS full handshake, tlsconn $clients clients")"
		line+="$( [ "$workers" = 1 ] || echo ", workers $workers") |"
		for f in plain deferred; do
			for col in 1 2 3; do
				line+=" $(cut -d' ' -f"$col" "$WORK/cost-$f" | median) |"
			done
		done
		echo "$line"
	done
	set_workers 1
	echo
}

# syscalls_per_connection LABEL PORT KIND CLIENTS PID...: strace -c of the
# processes while new connections are made; prints "LABEL syscall count/connection" lines.
syscalls_per_connection() {
	local label=$1 port=$2 kind=$3 clients=$4 out=$WORK/strace-$1 args=() pid n
	shift 4
	for pid in "$@"; do
		args+=(-p "$pid")
	done
	strace -f -c -o "$out" "${args[@]}" 2>"$out.err" &
	local tracer=$!
	poll 10 grep -q attached "$out.err" || die "strace did not attach"
	n=$(load "$port" "$kind" "$clients" "$SECONDS_EACH")
	kill -INT "$tracer"
	wait "$tracer" 2>/dev/null || true
	awk -v n="$n" -v label="$label" '
		$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" {
			calls = $4; errors = (NF == 6) ? $5 : 0
			printf "%s %s %.2f %.2f\n", label, $NF, calls / n, errors / n
		}' "$out"
}

syscall_table() {
	local workers_run workers_direct
	workers_run=$(descendants "$NGINX_RUN" | tr '\n' ' ')
	workers_direct=$(descendants "$NGINX_DIRECT" | tr '\n' ' ')
	{
		syscalls_per_connection "daemon,plain-HTTP" "$PORT_HTTP" http 32 "$DAEMON"
		syscalls_per_connection "daemon,plain-HTTP-defer-accept" "$PORT_HTTP_DEFER" http 32 "$DAEMON"
		syscalls_per_connection "daemon,TLS-defer-accept" "$PORT_TLS_DEFER" tls 8 "$DAEMON"
		# shellcheck disable=SC2086
		syscalls_per_connection "nginx-workers,under-handoff-run" "$PORT_HTTP_DEFER" http 32 $workers_run
		# shellcheck disable=SC2086
		syscalls_per_connection "nginx-workers,direct" "$PORT_DIRECT_HTTP" http 32 $workers_direct
	} >"$WORK/syscalls"
	echo "#### System calls per new connection (strace -c; errors in brackets)"
	echo
	awk '
		{ split($1, p, ","); who = p[1] " (" p[2] ")"; gsub(/-/, " ", who)
		  if (!(who in seen)) { seen[who] = 1; order[++n] = who }
		  cell = sprintf("%.2f", $3); if ($4 > 0) cell = cell sprintf(" (%.2f)", $4)
		  if ($3 >= 0.01) row[who] = row[who] (row[who] ? ", " : "") $2 " " cell }
		END { print "| process (workload) | system calls per connection |"; print "|---|---|"
		      for (i = 1; i <= n; i++) print "| " order[i] " | " row[order[i]] " |" }' "$WORK/syscalls"
	echo
}

# profile_shares LABEL PORT KIND CLIENTS: perf record of the daemon; one table row.
profile_shares() {
	local label=$1 port=$2 kind=$3 clients=$4 data=$WORK/perf-$1.data report
	perf record -q -F 4999 -g -p "$DAEMON" -o "$data" -- sleep $((SECONDS_EACH + 1)) >/dev/null 2>&1 &
	local recorder=$!
	sleep 0.3
	load "$port" "$kind" "$clients" "$SECONDS_EACH" >/dev/null
	wait "$recorder" || die "perf record failed"
	report=$(perf report -i "$data" --children --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9.]+%')
	{
		echo "$report"
		echo "DSO"
		perf report -i "$data" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9.]+%'
	} | awk -v label="$label" '
		/^DSO/ { dso = 1; next }
		dso { if ($2 ~ /kernel/) kernel += $1; next }
		{ share = $1 + 0; sym = $NF == "-" ? $(NF - 2) : $NF
		  for (i = 1; i <= NF; i++) if ($i ~ /^[_a-z]/ && $(i - 1) == "[k]") sym = $i
		  if (!(sym in s)) s[sym] = share }
		END {
			printf "| %s | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f |\n", label,
				s["__sys_accept4"], s["__sys_recvfrom"], s["__sys_sendmsg"],
				s["__x64_sys_close"] + s["task_work_run"], s["do_epoll_wait"],
				s["do_epoll_ctl"], kernel, 100 - kernel
		}'
}

profile_table() {
	echo "#### Where the daemon's CPU time goes (perf record -g, % of its samples)"
	echo
	echo "close includes the release of the socket at the end of the system call (task_work_run); waiting includes the context switch."
	echo
	echo "| workload | accept4 | peek (recvfrom) | handoff (sendmsg) | close | waiting (epoll_wait) | epoll_ctl | all kernel | user space |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
	profile_shares "plain HTTP, wrk -c32" "$PORT_HTTP" http 32
	profile_shares "plain HTTP, wrk -c32, defer-accept" "$PORT_HTTP_DEFER" http 32
	profile_shares "plain HTTP, wrk -c1, defer-accept" "$PORT_HTTP_DEFER" http 1
	profile_shares "TLS full, 8 clients, defer-accept" "$PORT_TLS_DEFER" tls 8
	echo
}

# pin CPUS: every process started here (and its threads and children) on CPUS.
pin() {
	local pid
	for pid in "${STARTED[@]}" $(descendants "${STARTED[@]}"); do
		taskset -a -p -c "$1" "$pid" >/dev/null 2>&1 || true
	done
}

# set_workers N: reload the daemon with `workers N`.
set_workers() {
	sed -i '/^workers /d' "$WORK/handoff.conf"
	echo "workers $1" >>"$WORK/handoff.conf"
	"$ROOT_DIR/build/handoff" reload -c "$WORK/handoff.conf" >/dev/null || die "reload to workers $1 failed"
}

# rate_into PORT FILE [SHARE_FILE]: one wrk round on the pinned CPUs;
# appends connections/s to FILE and the daemon's share of one CPU to SHARE_FILE.
rate_into() {
	local t0 t1 conns hz
	hz=$(getconf CLK_TCK)
	t0=$(tree_ticks "$DAEMON")
	conns=$(taskset -c "$CPUS" wrk -t2 -c32 -d"${SECONDS_EACH}s" -H 'Host: bench.example' \
		-H 'Connection: close' "http://127.0.0.1:$1/index.html" | awk '/requests in/ { print $1 }')
	t1=$(tree_ticks "$DAEMON")
	echo $((conns / SECONDS_EACH)) >>"$2"
	[ -z "${3:-}" ] || awk -v t=$((t1 - t0)) -v hz="$hz" -v s="$SECONDS_EACH" \
		'BEGIN { printf "%.1f\n", 100 * t / hz / s }' >>"$3"
}

# cores_table: new plain-HTTP connections/s, direct and handed off (the
# event loop accepting, then one accepting thread per CPU), with
# everything (client, nginx, daemon) on 1, 2, 4, ... of the machine's CPUs.
cores_table() {
	local n=1 direct one many
	echo "#### New plain-HTTP connections/s by number of CPUs (wrk -c32; client, servers and daemon share the CPUs; defer-accept; medians of $ROUNDS rounds)"
	echo
	echo "| CPUs | direct | handoff, workers 1 | ÷ direct | daemon's CPU, % of one CPU | handoff, workers = CPUs | ÷ direct | daemon's CPU, % of one CPU |"
	echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
	while [ "$n" -le "$(nproc)" ]; do
		CPUS="0-$((n - 1))"
		pin "$CPUS"
		rm -f "$WORK"/cores-*
		for ((r = 0; r < ROUNDS; r++)); do
			rate_into "$PORT_DIRECT_HTTP" "$WORK/cores-direct"
			set_workers 1
			rate_into "$PORT_HTTP_DEFER" "$WORK/cores-one" "$WORK/cores-one-share"
			if [ "$n" -ge 2 ]; then
				set_workers "$n"
				pin "$CPUS"	# the new threads
				rate_into "$PORT_HTTP_DEFER" "$WORK/cores-many" "$WORK/cores-many-share"
			fi
		done
		direct=$(median <"$WORK/cores-direct")
		one=$(median <"$WORK/cores-one")
		printf '| %s | %s | %s | %s | %s |' "$n" "$direct" "$one" \
			"$(awk -v a="$one" -v b="$direct" 'BEGIN { printf "%.2f", a / b }')" "$(median <"$WORK/cores-one-share")"
		if [ "$n" -ge 2 ]; then
			many=$(median <"$WORK/cores-many")
			printf ' %s | %s | %s |\n' "$many" "$(awk -v a="$many" -v b="$direct" 'BEGIN { printf "%.2f", a / b }')" \
				"$(median <"$WORK/cores-many-share")"
		else
			printf ' — | — | — |\n'
		fi
		n=$((n * 2))
	done
	set_workers 1
	pin "0-$(($(nproc) - 1))"
	echo
}

# busy_ticks: the machine's non-idle ticks so far (/proc/stat: all but idle and iowait).
busy_ticks() {
	awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}

# machine_table: on all CPUs, where the machine's CPU goes per new
# plain-HTTP connection, direct and handed off: the client (wrk), nginx,
# the daemon, and what no process was charged with.
machine_table() {
	local way port server t0 t1 b0 b1 s0 s1 d0 d1 conns hz
	hz=$(getconf CLK_TCK)
	echo "#### Where the machine's CPU goes per new plain-HTTP connection, all $(nproc) CPUs (wrk -c32, defer-accept, workers 1; µs per connection, medians of $ROUNDS rounds)"
	echo
	echo "| path | connections/s | machine | client (wrk) | nginx | daemon | no process |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
	for way in direct handoff; do
		port=$PORT_DIRECT_HTTP server=$NGINX_DIRECT
		[ "$way" = handoff ] && port=$PORT_HTTP_DEFER server=$RUN_PID
		rm -f "$WORK"/machine-*
		for ((r = 0; r < ROUNDS; r++)); do
			t0=$(tree_ticks $$) b0=$(busy_ticks) s0=$(tree_ticks "$server") d0=$(tree_ticks "$DAEMON")
			conns=$(wrk -t2 -c32 -d"${SECONDS_EACH}s" -H 'Host: bench.example' -H 'Connection: close' \
				"http://127.0.0.1:$port/index.html" | awk '/requests in/ { print $1 }')
			t1=$(tree_ticks $$) b1=$(busy_ticks) s1=$(tree_ticks "$server") d1=$(tree_ticks "$DAEMON")
			awk -v n="$conns" -v hz="$hz" -v s="$SECONDS_EACH" -v all=$((t1 - t0)) -v busy=$((b1 - b0)) \
				-v srv=$((s1 - s0)) -v dmn=$((d1 - d0)) -v way="$way" 'BEGIN {
				u = 1e6 / hz / n
				if (way == "direct") dmn = 0	# idle, but its ticks are in all
				client = all - srv - dmn
				printf "%.0f %.1f %.1f %.1f %.1f %.1f\n", n / s, busy * u, client * u, srv * u, dmn * u,
					(busy - all) * u }' >>"$WORK/machine-$way"
		done
		printf '| %s |' "$way"
		for col in 1 2 3 4 5 6; do
			printf ' %s |' "$(cut -d' ' -f"$col" "$WORK/machine-$way" | median)"
		done
		echo
	done
	echo
}

# --- main --------------------------------------------------------------------

main() {
	install_missing wrk nginx curl openssl iproute2 procps util-linux gcc make libc6-dev libssl-dev strace linux-perf
	build_handoff
	make_work profile
	build_tool tlsconn -lssl -lcrypto -lpthread
	local base user_line=""
	base=$(free_ports "$PORT_BASE" 8)
	PORT_HTTP=$base PORT_HTTP_DEFER=$((base + 1)) PORT_TLS=$((base + 2)) PORT_TLS_DEFER=$((base + 3))
	PORT_DIRECT_TLS=$((base + 4)) PORT_DIRECT_HTTP=$((base + 5)) PORT_RUN_TLS=$((base + 6)) PORT_RUN_HTTP=$((base + 7))
	[ "$(id -u)" -eq 0 ] && user_line="user root;"

	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
		-subj /CN=bench.example -addext 'subjectAltName=DNS:bench.example' \
		-keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
	mkdir -p "$WORK/www" "$WORK/tmp-direct" "$WORK/tmp-handoff"
	head -c 1024 /dev/zero | tr '\0' 'x' >"$WORK/www/index.html"
	fill nginx-server.conf.in nginx-direct.conf DIR="$WORK" LABEL=direct \
		TLS_PORT="$PORT_DIRECT_TLS" HTTP_PORT="$PORT_DIRECT_HTTP" USER_LINE="$user_line"
	fill nginx-server.conf.in nginx-handoff.conf DIR="$WORK" LABEL=handoff \
		TLS_PORT="$PORT_RUN_TLS" HTTP_PORT="$PORT_RUN_HTTP" USER_LINE="$user_line"
	cat >"$WORK/handoff.conf" <<-EOF
	runtime-dir $WORK/run
	access-log off
	max-per-ip 4096
	listen 127.0.0.1:$PORT_HTTP http
	listen 127.0.0.1:$PORT_HTTP_DEFER http defer-accept 10s
	listen 127.0.0.1:$PORT_TLS tls
	listen 127.0.0.1:$PORT_TLS_DEFER tls defer-accept 10s
	grant bench.example to self
	EOF
	start nginx-direct nginx -c "$WORK/nginx-direct.conf"
	NGINX_DIRECT=$LAST_PID
	start handoff "$ROOT_DIR/build/handoff" serve -c "$WORK/handoff.conf"
	DAEMON=$LAST_PID
	poll 10 test -d "$WORK/run/upstreams" || die "the daemon did not start: $(tail -3 "$WORK/handoff.log")"
	start nginx-handoff "$ROOT_DIR/build/handoff" run --name bench.example \
		--port "$PORT_RUN_TLS/tls" --port "$PORT_RUN_HTTP/http" --runtime-dir "$WORK/run" \
		-- "$(command -v nginx)" -c "$WORK/nginx-handoff.conf"
	RUN_PID=$LAST_PID
	local p
	for p in "$PORT_HTTP" "$PORT_HTTP_DEFER" "$PORT_DIRECT_HTTP"; do
		poll 10 curl -sf -o /dev/null -H 'Host: bench.example' "http://127.0.0.1:$p/index.html" ||
			die "nothing answers on port $p"
	done
	# nginx's master under handoff run: the parent of its workers.
	NGINX_RUN=$(pgrep -P "$LAST_PID" -x nginx | head -1)
	[ -n "$NGINX_RUN" ] || NGINX_RUN=$LAST_PID
	load "$PORT_HTTP" http 32 1 >/dev/null	# warm up

	echo "### Results of \`bench/profile.sh\`, $(date -u '+%Y-%m-%d %H:%M') UTC"
	echo
	echo "Machine: $(nproc) CPUs, $(uname -r); handoff $(git -C "$ROOT_DIR" describe --always --dirty 2>/dev/null || echo unknown). Load average before: $(cut -d' ' -f1-3 /proc/loadavg)."
	echo
	if [ "${1:-}" = cores ]; then
		cores_table
		machine_table
	else
		cost_table
		syscall_table
		profile_table
		cores_table
		machine_table
	fi
	echo "Load average after: $(cut -d' ' -f1-3 /proc/loadavg)."
}

main "$@"
