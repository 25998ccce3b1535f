#!/bin/sh
# demo.sh - build handoff and watch it pass HTTPS and HTTP connections by name to local upstreams and real servers.
#
# Usage: ./scripts/demo.sh [--keep]
#   Runs the daemon with its built-in configuration (TLS on 127.0.0.1:8443 and
#   [::1]:8443, HTTP on 127.0.0.1:8080), starts a native upstream for
#   a.example and one for b.example, an unmodified nginx (master and two
#   workers) for c.example and an unmodified Node.js https server for
#   d.example through `handoff run`, each with its own self-signed
#   certificate, sends requests with curl and shows the answers and the access
#   log. Everything it started is stopped on exit; with --keep it keeps
#   running until Ctrl-C.
set -eu

cd "$(dirname "$0")/.."

KEEP=0
case "${1:-}" in
--keep) KEEP=1 ;;
"") ;;
*)
	echo "usage: $0 [--keep]" >&2
	exit 2
	;;
esac

PACKAGES="gcc make pkg-config libc6-dev libssl-dev libmicrohttpd-dev libjansson-dev libcurl4-openssl-dev xxd
	openssl curl nginx nodejs"

package_installed() {
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

install_missing() {
	missing=""
	for package in $PACKAGES; do
		package_installed "$package" || missing="$missing $package"
	done
	[ -z "$missing" ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		echo "demo.sh: missing packages:$missing (run as root to install them)" >&2
		exit 1
	fi
	echo "demo.sh: installing$missing"
	export DEBIAN_FRONTEND=noninteractive
	# Keep the system's own nginx service from starting on install: the
	# demo runs its own copy on a loopback port.
	policy=/usr/sbin/policy-rc.d
	own_policy=0
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		own_policy=1
	fi
	apt-get update
	# shellcheck disable=SC2086 # one word per package
	apt-get install -y --no-install-recommends $missing
	[ "$own_policy" -eq 0 ] || rm -f "$policy"
}

if command -v dpkg-query >/dev/null 2>&1; then
	install_missing
fi
make -j"$(nproc 2>/dev/null || echo 2)"

WORK=$(mktemp -d)
PIDS=""

stop_all() {
	status=$?
	trap - EXIT INT TERM
	for pid in $PIDS; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in $PIDS; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$WORK"
	exit "$status"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
	echo "demo.sh: $*" >&2
	exit 1
}

# wait_for_line FILE REGEX SECONDS: until a line of FILE matches (bounded).
wait_for_line() {
	tries=$(($3 * 10))
	while [ "$tries" -gt 0 ]; do
		grep -Eq "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
		tries=$((tries - 1))
	done
	return 1
}

for name in a.example b.example c.example d.example; do
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-subj "/CN=$name" -addext "subjectAltName=DNS:$name" -days 2 \
		-keyout "$WORK/$name.key" -out "$WORK/$name.crt" 2>/dev/null
done

# The upstreams find the daemon through the same default runtime directory
# rule it uses (/run/handoff for root), unless this variable redirects them.
unset HANDOFF_RUNTIME_DIR

echo
echo "=== build/handoff serve   (built-in configuration)"
build/handoff serve 2>"$WORK/handoff.log" &
DAEMON=$!
PIDS="$DAEMON"
if ! wait_for_line "$WORK/handoff.log" '\bready\b' 10; then
	cat "$WORK/handoff.log" >&2
	fail "the daemon did not start"
fi
sed 's/^/    /' "$WORK/handoff.log"

for name in a.example b.example; do
	echo "=== build/https-upstream --name $name"
	build/https-upstream --name "$name" --cert "$WORK/$name.crt" --key "$WORK/$name.key" \
		--label "upstream-for-$name" >"$WORK/$name.out" 2>"$WORK/$name.err" &
	pid=$!
	PIDS="$pid $PIDS"
	wait_for_line "$WORK/$name.out" '^ready$' 10 || { cat "$WORK/$name.err" >&2; fail "upstream $name did not start"; }
	wait_for_line "$WORK/handoff.log" "registered upstream $pid-" 5 ||
		{ cat "$WORK/handoff.log" >&2; fail "the daemon did not register upstream $name"; }
	grep "registered upstream $pid-" "$WORK/handoff.log" | sed 's/^/    /'
done

# Unmodified servers: their listening socket becomes a receiver for the
# names given to `handoff run`; they keep their own TLS configuration.
cat >"$WORK/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 2;
user root;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 128; }
http {
	access_log $WORK/nginx-access.log;
	client_body_temp_path $WORK/nginx-body;
	proxy_temp_path $WORK/nginx-proxy;
	fastcgi_temp_path $WORK/nginx-fastcgi;
	uwsgi_temp_path $WORK/nginx-uwsgi;
	scgi_temp_path $WORK/nginx-scgi;
	server {
		listen 127.0.0.1:9443 ssl;
		ssl_certificate $WORK/c.example.crt;
		ssl_certificate_key $WORK/c.example.key;
		location / {
			default_type text/plain;
			return 200 "server=nginx worker pid \$pid\nsni=\$ssl_server_name\nclient=\$remote_addr:\$remote_port\n";
		}
	}
}
EOF
cat >"$WORK/server.js" <<EOF
const https = require('https');
const fs = require('fs');
https.createServer({
	key: fs.readFileSync('$WORK/d.example.key'),
	cert: fs.readFileSync('$WORK/d.example.crt'),
}, (req, res) => {
	res.setHeader('Content-Type', 'text/plain');
	res.end('server=node ' + process.version + ' pid ' + process.pid + '\\n' +
		'sni=' + req.socket.servername + '\\n' +
		'client=' + req.socket.remoteAddress + ':' + req.socket.remotePort + '\\n');
}).listen(9444, '127.0.0.1');
EOF

start_run() {	# start_run NAME PORT LABEL COMMAND...
	name=$1 port=$2 label=$3
	shift 3
	echo "=== build/handoff run --name $name --port $port -- $*"
	build/handoff run --name "$name" --port "$port" -- "$@" >"$WORK/$label.out" 2>"$WORK/$label.err" &
	PIDS="$! $PIDS"
	wait_for_line "$WORK/handoff.log" "registered upstream .* names=$name " 10 ||
		{ cat "$WORK/$label.err" >&2; fail "$label was not registered for $name"; }
	grep "names=$name " "$WORK/handoff.log" | sed 's/^/    /'
}
start_run c.example 9443 nginx nginx -p "$WORK" -c "$WORK/nginx.conf"
start_run d.example 9444 node node "$WORK/server.js"

# show DESCRIPTION COMMAND...: print the command, run it, indent its answer.
show() {
	echo
	echo "=== $1"
	shift
	printf '$'
	for word in "$@"; do
		case "$word" in
		*[[:space:]]*) printf " '%s'" "$word" ;;
		*) printf ' %s' "$word" ;;
		esac
	done
	echo
	answer=$("$@") || fail "the request failed"
	printf '%s\n' "$answer" | sed 's/^/    /'
}

show "HTTPS, routed by the TLS server name (SNI)" \
	curl -sS --resolve a.example:8443:127.0.0.1 --cacert "$WORK/a.example.crt" https://a.example:8443/
show "HTTPS, routed by the TLS server name (SNI)" \
	curl -sS --resolve b.example:8443:127.0.0.1 --cacert "$WORK/b.example.crt" https://b.example:8443/
show "plain HTTP, routed by the Host header" \
	curl -sS -H 'Host: a.example' http://127.0.0.1:8080/
show "HTTPS to an unmodified nginx (handoff run), its own certificate" \
	curl -sS --resolve c.example:8443:127.0.0.1 --cacert "$WORK/c.example.crt" https://c.example:8443/
show "HTTPS to an unmodified Node.js server (handoff run), its own certificate" \
	curl -sS --resolve d.example:8443:127.0.0.1 --cacert "$WORK/d.example.crt" https://d.example:8443/

echo
echo "Each answer comes from the server itself: the daemon passed it the"
echo "connected socket, so 'client=' is curl's own address and port, and"
echo "nginx and node never opened a TCP port of their own."
echo
echo "=== access log (the daemon's stderr), last lines"
sleep 0.2
grep ' outcome=' "$WORK/handoff.log" | tail -n 5 | sed 's/^/    /'

if [ "$KEEP" -eq 1 ]; then
	echo
	echo "Still running (daemon pid $DAEMON); certificates in $WORK. Try:"
	echo "    curl --resolve a.example:8443:127.0.0.1 --cacert $WORK/a.example.crt https://a.example:8443/"
	echo "Ctrl-C stops everything."
	wait "$DAEMON" || true
fi
