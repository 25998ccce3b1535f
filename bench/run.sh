#!/bin/bash
# run.sh - benchmark handoff against direct nginx, HAProxy, sniproxy and nginx stream on loopback, and print the tables.
#
# Usage: bench/run.sh                 (as root on Debian 12, to install what is missing)
#        BENCH_QUICK=1 bench/run.sh   (about 2 minutes: checks the script, figures are rough)
#
# Installs wrk, haproxy, sniproxy, nginx with its stream module, curl and the
# build tools if they are missing, builds handoff (`make`, no sanitizers) and
# the TLS client bench/tlsconn.c, starts every server and proxy on 127.0.0.1
# and measures each path:
#
#   direct        nginx itself (the baseline)
#   handoff       the same nginx configuration under `handoff run`, behind the daemon: handed off
#   relay         the daemon relaying to the direct nginx (`route ... to tcp:`)
#   haproxy       HAProxy, mode tcp, req.ssl_sni / req.hdr(host)
#   sniproxy      sniproxy
#   nginx-stream  nginx stream + ssl_preread (TLS only: stream has no HTTP parser)
#
# Workloads: new TLS connections with full handshakes and with resumed ones
# (tlsconn, one 1 KiB request each), new plain-HTTP connections routed by
# Host (wrk, "Connection: close"), HTTPS keep-alive requests (wrk), a large
# HTTPS download (curl); then bench/latency.sh adds the handoff latency at
# fixed offered rates (BENCH_LATENCY=0 leaves it out), and bench/memory.sh
# the daemon's memory with 10,000 connections held (2,000 in quick mode).
# Around every measurement the CPU time of the proxy
# and of the server is read from /proc/PID/stat. The measurements run in
# rounds; in every round each workload runs once per path, the paths in a
# rotated order, so that drift of the machine's load or a position in the
# sequence favours none of them. Everything started here is stopped by its
# PID when the script ends.
#
# Environment (defaults in brackets, quick mode's after the slash):
# BENCH_ROUNDS [4/2] rounds, BENCH_SECONDS [4/1] seconds per connection or
# request measurement, BENCH_CONNECTIONS [32] wrk connections, BENCH_THREADS
# [2] wrk threads, BENCH_TLS_CLIENTS [8] tlsconn threads (each one connection
# at a time), BENCH_DOWNLOAD_MIB [512/64], BENCH_PROBES [20/5] sequential
# curl connections per path, BENCH_PORT_BASE [23400] first of eleven TCP
# ports, BENCH_KEEP=1 keeps the working directory (configurations, logs, raw
# output).
set -euo pipefail

SCRIPT=run.sh
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
	ROUNDS=${BENCH_ROUNDS:-2}
	SECONDS_EACH=${BENCH_SECONDS:-1}
	DOWNLOAD_MIB=${BENCH_DOWNLOAD_MIB:-64}
	PROBES=${BENCH_PROBES:-5}
else
	ROUNDS=${BENCH_ROUNDS:-4}
	SECONDS_EACH=${BENCH_SECONDS:-4}
	DOWNLOAD_MIB=${BENCH_DOWNLOAD_MIB:-512}
	PROBES=${BENCH_PROBES:-20}
fi
CONNECTIONS=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_THREADS:-2}
TLS_CLIENTS=${BENCH_TLS_CLIENTS:-8}
# Below the kernel's ephemeral range (32768-60999 by default), so that no
# outgoing connection holds one of them when the servers bind.
PORT_BASE=${BENCH_PORT_BASE:-23400}

PATHS=(direct handoff relay haproxy sniproxy nginx-stream)
# The paths that route plain HTTP by Host.
HTTP_PATHS=(direct handoff relay haproxy sniproxy)

# --- packages and build ------------------------------------------------------

PACKAGES=(wrk haproxy sniproxy nginx libnginx-mod-stream curl openssl python3 iproute2 procps gcc make libc6-dev libssl-dev)

# build_client: the TLS connection client, into the working directory.
build_client() {
	build_tool tlsconn -lssl -lcrypto -lpthread
	TLSCONN=$WORK/tlsconn
}

# --- processes ---------------------------------------------------------------

declare -A PID		# role -> PID

# start_role ROLE COMMAND...: lib.sh's start, the PID kept as PID[ROLE].
start_role() {
	start "$@"
	PID[$1]=$LAST_PID
}

PORT_ROLES=(DIRECT_TLS DIRECT_HTTP UNDER_RUN_TLS UNDER_RUN_HTTP HANDOFF_TLS HANDOFF_HTTP
	HAPROXY_TLS HAPROXY_HTTP SNIPROXY_TLS SNIPROXY_HTTP STREAM_TLS)

# pick_ports: PORT_<ROLE> for every role, consecutive free ports from
# PORT_BASE on. UNDER_RUN_* are nginx's own ports under handoff run, which
# it never opens on the network.
pick_ports() {
	local base i n=${#PORT_ROLES[@]}
	base=$(free_ports "$PORT_BASE" "$n")
	for ((i = 0; i < n; i++)); do
		printf -v "PORT_${PORT_ROLES[i]}" '%s' $((base + i))
	done
}

# --- measuring CPU ---------------------------------------------------------------

CLK_TCK=$(getconf CLK_TCK)

# busy_ticks: user+nice+system+irq+softirq ticks of the whole machine. The
# interrupt columns belong in the sum because a task's system time includes
# the softirq work (loopback packets) done in its context.
busy_ticks() {
	awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat
}

now() {
	date +%s.%N
}

RESULTS=""		# WORK/results.tsv: kind path run key value

record() {
	printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"
}

# The CPU snapshot around one measurement: the machine, this script's whole
# tree (client, servers, proxies), the path's proxy and the path's server.
snap_begin() {
	local path=$1
	T0=$(now)
	BUSY0=$(busy_ticks)
	OURS0=$(tree_ticks $$)
	PROXY0=$(tree_ticks "${PROXY[$path]}")
	SERVER0=$(tree_ticks "${SERVER[$path]}")
}

# snap_end KIND PATH RUN: record elapsed seconds, proxy and server ticks,
# and the CPU used by processes that are not ours (other engineers' jobs,
# kernel threads), as a percentage of one core.
snap_end() {
	local kind=$1 path=$2 run=$3 t1 busy1 ours1 proxy1 server1
	t1=$(now)
	busy1=$(busy_ticks)
	ours1=$(tree_ticks $$)
	proxy1=$(tree_ticks "${PROXY[$path]}")
	server1=$(tree_ticks "${SERVER[$path]}")
	record "$kind" "$path" "$run" seconds "$(awk -v a="$T0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
	record "$kind" "$path" "$run" proxy_cpu_s "$(awk -v d=$((proxy1 - PROXY0)) -v h="$CLK_TCK" 'BEGIN { printf "%.2f", d / h }')"
	record "$kind" "$path" "$run" server_cpu_s "$(awk -v d=$((server1 - SERVER0)) -v h="$CLK_TCK" 'BEGIN { printf "%.2f", d / h }')"
	record "$kind" "$path" "$run" other_cpu_pct "$(awk -v d=$((busy1 - BUSY0 - (ours1 - OURS0))) \
		-v h="$CLK_TCK" -v a="$T0" -v b="$t1" 'BEGIN { if (d < 0) d = 0; printf "%.1f", 100 * d / h / (b - a) }')"
}

# check_quiet: warn when other processes already keep the CPUs busy, since
# every figure of this benchmark would be disturbed.
check_quiet() {
	local busy0 ours0 busy1 ours1 percent
	busy0=$(busy_ticks)
	ours0=$(tree_ticks $$)
	sleep 2
	busy1=$(busy_ticks)
	ours1=$(tree_ticks $$)
	percent=$(( (busy1 - busy0 - (ours1 - ours0)) * 100 / (2 * CLK_TCK) ))
	if [ "$percent" -gt 10 ]; then
		say "WARNING: other processes use ${percent}% of a core right now; the results will be disturbed"
	fi
}

# --- the paths -----------------------------------------------------------------

# Per path: the TLS name and port, the plain-HTTP name and port, the proxy's
# PID (none for direct) and the PID of the nginx that answers.
declare -A TLS_NAME TLS_PORT HTTP_NAME HTTP_PORT PROXY SERVER

setup_paths() {
	TLS_NAME=([direct]=bench.example [handoff]=bench.example [relay]=relay.example
		[haproxy]=bench.example [sniproxy]=bench.example [nginx-stream]=bench.example)
	TLS_PORT=([direct]=$PORT_DIRECT_TLS [handoff]=$PORT_HANDOFF_TLS [relay]=$PORT_HANDOFF_TLS
		[haproxy]=$PORT_HAPROXY_TLS [sniproxy]=$PORT_SNIPROXY_TLS [nginx-stream]=$PORT_STREAM_TLS)
	HTTP_NAME=([direct]=bench.example [handoff]=bench.example [relay]=relay-plain.example
		[haproxy]=bench.example [sniproxy]=bench.example)
	HTTP_PORT=([direct]=$PORT_DIRECT_HTTP [handoff]=$PORT_HANDOFF_HTTP [relay]=$PORT_HANDOFF_HTTP
		[haproxy]=$PORT_HAPROXY_HTTP [sniproxy]=$PORT_SNIPROXY_HTTP)
	PROXY=([direct]="" [handoff]=${PID[handoff]} [relay]=${PID[handoff]}
		[haproxy]=${PID[haproxy]} [sniproxy]=${PID[sniproxy]} [nginx-stream]=${PID[nginx-stream]})
	SERVER=([direct]=${PID[nginx-direct]} [handoff]=${PID[nginx-handoff]} [relay]=${PID[nginx-direct]}
		[haproxy]=${PID[nginx-direct]} [sniproxy]=${PID[nginx-direct]} [nginx-stream]=${PID[nginx-direct]})
}

# tls_url PATH FILE, http_url PATH FILE
tls_url() {
	echo "https://${TLS_NAME[$1]}:${TLS_PORT[$1]}/$2"
}

http_url() {
	echo "http://${HTTP_NAME[$1]}:${HTTP_PORT[$1]}/$2"
}

# curl_tls PATH CURL-ARGS...: curl to the path's TLS port at 127.0.0.1.
curl_tls() {
	local path=$1
	shift
	curl -sk --max-time 120 --resolve "${TLS_NAME[$path]}:${TLS_PORT[$path]}:127.0.0.1" "$@"
}

curl_http() {
	local path=$1
	shift
	curl -s --max-time 120 --resolve "${HTTP_NAME[$path]}:${HTTP_PORT[$path]}:127.0.0.1" "$@"
}

# answered_by tls|http PATH LABEL: the path reaches the nginx labelled LABEL.
answered_by() {
	local headers
	headers=$("curl_$1" "$2" -o /dev/null -D - "$("$1_url" "$2" index.html)") &&
		grep -qi "^x-bench-server: $3" <<<"$headers"
}

start_everything() {
	local user_line="" sniproxy_user path
	if [ "$(id -u)" -eq 0 ]; then
		user_line="user root;"	# the workers read the document root in WORK
		sniproxy_user=root
	else
		sniproxy_user=$(id -un)
	fi

	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
		-subj /CN=bench.example -addext 'subjectAltName=DNS:bench.example,DNS:relay.example' \
		-keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
	mkdir -p "$WORK/www" "$WORK/tmp-direct" "$WORK/tmp-handoff"
	head -c 1024 /dev/zero | tr '\0' 'x' >"$WORK/www/index.html"
	# Sparse: the same bytes for every path, and no disk in the way.
	truncate -s "${DOWNLOAD_MIB}M" "$WORK/www/big.bin"
	# The first read of a hole fills the page cache with zeroed pages, which
	# costs seconds of system time: pay it here, not in the first download.
	cat "$WORK/www/big.bin" >/dev/null

	fill nginx-server.conf.in nginx-direct.conf DIR="$WORK" LABEL=direct \
		TLS_PORT="$PORT_DIRECT_TLS" HTTP_PORT="$PORT_DIRECT_HTTP" USER_LINE="$user_line"
	fill nginx-server.conf.in nginx-handoff.conf DIR="$WORK" LABEL=handoff \
		TLS_PORT="$PORT_UNDER_RUN_TLS" HTTP_PORT="$PORT_UNDER_RUN_HTTP" USER_LINE="$user_line"
	fill nginx-stream.conf.in nginx-stream.conf DIR="$WORK" TLS_PORT="$PORT_STREAM_TLS" \
		UPSTREAM_TLS_PORT="$PORT_DIRECT_TLS" USER_LINE="$user_line"
	fill haproxy.cfg.in haproxy.cfg TLS_PORT="$PORT_HAPROXY_TLS" HTTP_PORT="$PORT_HAPROXY_HTTP" \
		UPSTREAM_TLS_PORT="$PORT_DIRECT_TLS" UPSTREAM_HTTP_PORT="$PORT_DIRECT_HTTP"
	fill sniproxy.conf.in sniproxy.conf DIR="$WORK" USER="$sniproxy_user" \
		TLS_PORT="$PORT_SNIPROXY_TLS" HTTP_PORT="$PORT_SNIPROXY_HTTP" \
		UPSTREAM_TLS_PORT="$PORT_DIRECT_TLS" UPSTREAM_HTTP_PORT="$PORT_DIRECT_HTTP"
	fill handoff.conf.in handoff.conf DIR="$WORK" TLS_PORT="$PORT_HANDOFF_TLS" HTTP_PORT="$PORT_HANDOFF_HTTP" \
		UPSTREAM_TLS_PORT="$PORT_DIRECT_TLS" UPSTREAM_HTTP_PORT="$PORT_DIRECT_HTTP"

	"$ROOT_DIR/build/handoff" check -c "$WORK/handoff.conf" >/dev/null || die "handoff check failed"
	nginx -t -q -c "$WORK/nginx-direct.conf" 2>/dev/null || die "nginx -t failed for nginx-direct.conf"
	nginx -t -q -c "$WORK/nginx-stream.conf" 2>/dev/null || die "nginx -t failed for nginx-stream.conf"
	haproxy -c -q -f "$WORK/haproxy.cfg" || die "haproxy -c failed"

	start_role nginx-direct nginx -c "$WORK/nginx-direct.conf"
	start_role handoff "$ROOT_DIR/build/handoff" serve -c "$WORK/handoff.conf"
	wait_until "the handoff daemon" test -d "$WORK/run/upstreams"
	start_role nginx-handoff "$ROOT_DIR/build/handoff" run --name bench.example \
		--port "$PORT_UNDER_RUN_TLS/tls" --port "$PORT_UNDER_RUN_HTTP/http" \
		--runtime-dir "$WORK/run" -- "$(command -v nginx)" -c "$WORK/nginx-handoff.conf"
	start_role haproxy haproxy -db -f "$WORK/haproxy.cfg"
	start_role sniproxy sniproxy -f -c "$WORK/sniproxy.conf"
	start_role nginx-stream nginx -c "$WORK/nginx-stream.conf"

	setup_paths
	wait_until "nginx (direct)" answered_by tls direct direct
	wait_until "nginx under handoff run (TLS)" answered_by tls handoff handoff
	wait_until "nginx under handoff run (HTTP)" answered_by http handoff handoff
	for path in relay haproxy sniproxy nginx-stream; do
		wait_until "the $path path (TLS)" answered_by tls "$path" direct
	done
	for path in direct relay haproxy sniproxy; do
		wait_until "the $path path (HTTP)" answered_by http "$path" direct
	done
	# nginx under handoff run must not have opened its ports on the network.
	port_free "$PORT_UNDER_RUN_TLS" || die "nginx under handoff run listens on TCP port $PORT_UNDER_RUN_TLS"
	port_free "$PORT_UNDER_RUN_HTTP" || die "nginx under handoff run listens on TCP port $PORT_UNDER_RUN_HTTP"
}

# --- measurements ----------------------------------------------------------------

# parse_wrk FILE: "key value" lines from wrk --latency output; latencies in ms.
parse_wrk() {
	awk '
	function ms(v) {
		if (v ~ /us$/) return v * 0.001
		if (v ~ /ms$/) return v + 0
		if (v ~ /m$/) return v * 60000
		if (v ~ /s$/) return v * 1000
		return v
	}
	$1 == "50%" { printf "p50_ms %.3f\n", ms($2) }
	$1 == "99%" { printf "p99_ms %.3f\n", ms($2) }
	$2 == "requests" && $3 == "in" { requests = $1 }
	/Socket errors:/ { gsub(/,/, ""); errors += $4 + $6 + $8 + $10 }
	/Non-2xx or 3xx responses:/ { errors += $NF }
	$1 == "Requests/sec:" { rps = $2 }
	END {
		printf "connections %d\nerrors %d\nrps %s\n", requests, errors, rps
	}' "$1"
}

# run_wrk KIND PATH ROUND URL [WRK OPTIONS...]: wrk for SECONDS_EACH seconds.
run_wrk() {
	local kind=$1 path=$2 round=$3 url=$4 out key value
	shift 4
	out="$WORK/wrk-$kind-$path-$round.txt"
	snap_begin "$path"
	timeout $((SECONDS_EACH + 30)) wrk -t"$THREADS" -c"$CONNECTIONS" -d"${SECONDS_EACH}s" --latency \
		-s "$BENCH_DIR/sni.lua" "$@" "$url" >"$out" 2>&1 ||
		die "wrk failed on $path: $(tail -3 "$out")"
	snap_end "$kind" "$path" "$round"
	while read -r key value; do
		record "$kind" "$path" "$round" "$key" "$value"
	done < <(parse_wrk "$out")
}

# run_tlsconn full|resume PATH ROUND
run_tlsconn() {
	local mode=$1 path=$2 round=$3 out key value fields
	out="$WORK/tlsconn-$mode-$path-$round.txt"
	snap_begin "$path"
	timeout $((SECONDS_EACH + 30)) "$TLSCONN" "$mode" 127.0.0.1 "${TLS_PORT[$path]}" "${TLS_NAME[$path]}" \
		/index.html "$TLS_CLIENTS" $((SECONDS_EACH * 1000)) >"$out" 2>&1 ||
		die "tlsconn $mode failed on $path: $(tail -3 "$out")"
	snap_end "$mode" "$path" "$round"
	read -r -a fields < <(tail -1 "$out") || true	# the last line, its words
	set -- "${fields[@]}"
	while [ $# -ge 2 ]; do
		key=$1 value=$2
		shift 2
		[ "$key" = seconds ] && continue	# snap_end recorded the elapsed time
		record "$mode" "$path" "$round" "$key" "$value"
	done
}

# rotated ROUND PATH...: the paths, starting at a different one in every
# round, so that no path is always the first after a pause or a phase.
rotated() {
	local round=$1 i
	shift
	local list=("$@") n=$#
	for ((i = 0; i < n; i++)); do
		echo "${list[(round - 1 + i) % n]}"
	done
}

measure_probes() {
	local i path line code connect tls total
	say "unloaded connection time: $PROBES sequential curl connections per path"
	for ((i = 1; i <= PROBES; i++)); do
		for path in "${PATHS[@]}"; do
			line=$(curl_tls "$path" -o /dev/null \
				-w '%{http_code} %{time_connect} %{time_appconnect} %{time_total}' \
				"$(tls_url "$path" index.html)") || die "curl failed on $path"
			read -r code connect tls total <<<"$line"
			[ "$code" = 200 ] || die "HTTP $code on $path"
			record probe "$path" "$i" connect_ms "$(awk -v t="$connect" 'BEGIN { printf "%.3f", t * 1000 }')"
			record probe "$path" "$i" tls_ms "$(awk -v t="$tls" 'BEGIN { printf "%.3f", t * 1000 }')"
			record probe "$path" "$i" total_ms "$(awk -v t="$total" 'BEGIN { printf "%.3f", t * 1000 }')"
		done
	done
}

# download PATH ROUND: one download of big.bin; ROUND 0 is not recorded.
download() {
	local path=$1 round=$2 line code size total expected=$((DOWNLOAD_MIB * 1024 * 1024))
	snap_begin "$path"
	line=$(curl_tls "$path" -o /dev/null -w '%{http_code} %{size_download} %{time_total}' \
		"$(tls_url "$path" big.bin)") || die "download failed on $path"
	snap_end download "$path" "$round"
	read -r code size total <<<"$line"
	if [ "$code" != 200 ] || [ "$size" != "$expected" ]; then
		die "download on $path: HTTP $code, $size bytes"
	fi
	record download "$path" "$round" bytes "$size"
	record download "$path" "$round" mb_per_s "$(awk -v b="$size" -v t="$total" 'BEGIN { printf "%.1f", b / t / 1e6 }')"
}

measure_round() {
	local round=$1 path
	say "round $round/$ROUNDS: full TLS handshakes (${SECONDS_EACH}s per path)"
	for path in $(rotated "$round" "${PATHS[@]}"); do
		run_tlsconn full "$path" "$round"
	done
	say "round $round/$ROUNDS: resumed TLS handshakes"
	for path in $(rotated "$round" "${PATHS[@]}"); do
		run_tlsconn resume "$path" "$round"
	done
	say "round $round/$ROUNDS: new plain-HTTP connections"
	for path in $(rotated "$round" "${HTTP_PATHS[@]}"); do
		run_wrk plain "$path" "$round" "$(http_url "$path" index.html)" -H 'Connection: close'
	done
	say "round $round/$ROUNDS: HTTPS keep-alive requests"
	for path in $(rotated "$round" "${PATHS[@]}"); do
		run_wrk keepalive "$path" "$round" "$(tls_url "$path" index.html)"
	done
	say "round $round/$ROUNDS: download of $DOWNLOAD_MIB MiB"
	for path in $(rotated "$round" "${PATHS[@]}"); do
		download "$path" "$round"
	done
}

warm_up() {
	local path
	say "warming up: 1 s of each client and one download per path (not recorded)"
	for path in "${PATHS[@]}"; do
		"$TLSCONN" full 127.0.0.1 "${TLS_PORT[$path]}" "${TLS_NAME[$path]}" /index.html "$TLS_CLIENTS" 1000 \
			>/dev/null || die "tlsconn failed on $path during the warm-up"
		timeout 30 wrk -t"$THREADS" -c"$CONNECTIONS" -d1s -s "$BENCH_DIR/sni.lua" \
			"$(tls_url "$path" index.html)" >/dev/null 2>&1 ||
			die "wrk failed on $path during the warm-up"
		curl_tls "$path" -o /dev/null "$(tls_url "$path" big.bin)" || die "download failed on $path"
	done
	for path in "${HTTP_PATHS[@]}"; do
		timeout 30 wrk -t"$THREADS" -c"$CONNECTIONS" -d1s -s "$BENCH_DIR/sni.lua" -H 'Connection: close' \
			"$(http_url "$path" index.html)" >/dev/null 2>&1 ||
			die "wrk failed on $path (plain HTTP) during the warm-up"
	done
}

describe_machine() {
	local command=""
	[ "$QUICK" = 1 ] && command="BENCH_QUICK=1 "
	command+=$({ env | grep '^BENCH_' | grep -v '^BENCH_QUICK=' || true; } | sort | tr '\n' ' ')
	{
		echo "command	${command}bench/run.sh"
		echo "date	$(date -u '+%Y-%m-%d %H:%M UTC')"
		echo "cpus	$(nproc)"
		echo "cpu_model	$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
		echo "kernel	$(uname -r)"
		echo "memory	$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
		echo "os	$(awk -F= '$1 == "PRETTY_NAME" { gsub(/"/, "", $2); print $2 }' /etc/os-release)"
		echo "nginx	$(nginx -v 2>&1 | sed 's|.*nginx/||')"
		echo "haproxy	$(haproxy -v | awk 'NR == 1 { print $3 }')"
		echo "sniproxy	$(dpkg-query -W -f='${Version}' sniproxy)"
		echo "wrk	$(dpkg-query -W -f='${Version}' wrk)"
		echo "curl	$(curl --version | awk 'NR == 1 { print $2 }')"
		echo "openssl	$(openssl version | awk '{ print $2 }')"
		echo "handoff	$(git -C "$ROOT_DIR" describe --always --dirty 2>/dev/null || echo unknown)"
		echo "rounds	$ROUNDS"
		echo "seconds	$SECONDS_EACH"
		echo "connections	$CONNECTIONS"
		echo "threads	$THREADS"
		echo "tls_clients	$TLS_CLIENTS"
		echo "download_mib	$DOWNLOAD_MIB"
		echo "probes	$PROBES"
		echo "load_before	$(cut -d' ' -f1-3 /proc/loadavg)"
	} >"$WORK/machine.tsv"
}

main() {
	local began=$SECONDS
	install_missing "${PACKAGES[@]}"
	build_handoff
	make_work bench
	RESULTS=$WORK/results.tsv
	: >"$RESULTS"
	build_client

	check_quiet
	pick_ports
	start_everything
	describe_machine
	say "all paths answer; ports $PORT_DIRECT_TLS-$PORT_STREAM_TLS; working directory $WORK"
	warm_up
	measure_probes
	local round
	for ((round = 1; round <= ROUNDS; round++)); do
		measure_round "$round"
	done
	echo "load_after	$(cut -d' ' -f1-3 /proc/loadavg)" >>"$WORK/machine.tsv"
	echo "duration	$((SECONDS - began)) s" >>"$WORK/machine.tsv"
	python3 "$BENCH_DIR/report.py" "$WORK/machine.tsv" "$RESULTS"
	# The handoff latency at fixed offered rates (its own daemon, upstream
	# and client), before the memory section: the kernel frees the tens of
	# thousands of sockets that one holds in the background for a while
	# after, which would take CPU from the latency measurement.
	[ "${BENCH_LATENCY:-1}" = 0 ] || "$BENCH_DIR/latency.sh"
	# Then the daemon's memory with many connections held (its own daemon, nginx and ports).
	[ "$QUICK" = 1 ] && export BENCH_MEMORY_CONNECTIONS=${BENCH_MEMORY_CONNECTIONS:-2000}
	"$BENCH_DIR/memory.sh" || die "bench/memory.sh failed"
}

main "$@"
