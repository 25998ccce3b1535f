# test_preload.py - libhandoff-preload.so and `handoff run`: an unmodified Python server behaves as on a TCP listener, and the command's contract.
import os
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness import HANDOFF, free_port, http_get, https_get, wait_for
from preload_helpers import PRELOAD, PYTHON, json_body, probe_command, upstream_ids

NAME = "a.example"


def http_daemon(hx, port, grants=("* to self",)):
	return hx.daemon(hx.config([f"127.0.0.1:{port} http"], grants=grants))


def start_probe(runs, daemon, port, *options, label="probe", event="listening"):
	"""A probe server under `handoff run`, registered with the daemon."""
	run = runs(label, probe_command(port, *options), ports=[port])
	started = run.wait_event("start")
	run.wait_event(event)
	daemon.wait_log(rf"registered upstream {started['pid']}-")
	return run


def process_gone(pid):
	"""True once pid has exited (reaped, or a zombie waiting to be)."""
	try:
		with open(f"/proc/{pid}/stat") as f:
			return f.read().rsplit(")", 1)[1].split()[0] == "Z"
	except FileNotFoundError:
		return True


def get(port, host=NAME):
	return json_body(http_get(port, host))


@pytest.mark.parametrize("family", [4, 6])
def test_swapped_listener_answers_like_a_tcp_listener(hx, runs, family):
	"""The same calls on the swapped listener and on a real TCP listener
	(a port not handed off, left alone by the preload) give the same
	answers, and accepted connections inherit the listener's options."""
	port = free_port()
	real_port = free_port(("127.0.0.1", "::") if family == 6 else ("127.0.0.1",))
	d = http_daemon(hx, port)
	run = start_probe(runs, d, port, "--scenario", "inspect", "--family", family,
			  "--real-port", real_port, event="inspect")
	report = run.events("inspect")[0]
	swapped, real = report["swapped"], report["real"]
	for key in real:
		assert swapped[key] == real[key], f"{key}: swapped {swapped[key]!r}, TCP {real[key]!r}"
	# The answers that matter most to servers, spelled out.
	assert swapped["after_listen"]["SO_TYPE"] == 1		# SOCK_STREAM
	assert swapped["after_listen"]["SO_ACCEPTCONN"] == 1
	assert swapped["before_listen"]["SO_ACCEPTCONN"] == 0
	assert swapped["after_set"]["TCP_DEFER_ACCEPT"] == real["after_set"]["TCP_DEFER_ACCEPT"] > 0
	assert swapped["second_bind"] == "EINVAL" and swapped["listen_again"] is None

	through_daemon = get(port)
	direct = get(real_port, "real.example")
	assert through_daemon["listener"] == "swapped" and direct["listener"] == "real"
	for key in ("flags", "keepalive", "nodelay", "keepidle"):
		assert through_daemon[key] == direct[key], key
	assert through_daemon["keepalive"] == 1 and through_daemon["keepidle"] == 77
	# An IPv6 listener sees an IPv4 client as ::ffff:a.b.c.d, like the kernel's.
	expected = "::ffff:127.0.0.1" if family == 6 else "127.0.0.1"
	assert through_daemon["peer"][0] == direct["peer"][0] == expected


def test_accept4_flags_and_address_like_tcp(hx, runs):
	port = free_port()
	real_port = free_port()
	d = http_daemon(hx, port)
	run = start_probe(runs, d, port, "--scenario", "flags", "--real-port", real_port)
	answers = []
	for _ in range(4):
		answers.append((get(port), get(real_port, "real.example")))
	plain_accept = get(port)
	run.wait_event("done")

	for swapped, real in answers:
		assert swapped["listener"] == "swapped" and real["listener"] == "real"
		flags = swapped["flags"]
		assert swapped["observed"] == real["observed"], swapped
		assert swapped["observed"] == {"nonblock": bool(flags & os.O_NONBLOCK),
					       "cloexec": bool(flags & os.O_CLOEXEC)}
		# The full length is reported, only what fits is written.
		assert swapped["addrlen"] == real["addrlen"] == 16
		assert len(swapped["addr"]) == len(real["addr"]) == 2 * min(swapped["capacity"], 16)
		assert swapped["addr"][:4] == real["addr"][:4]		# AF_INET
	assert plain_accept["observed"] == {"nonblock": False, "cloexec": False}


def test_nonblocking_listener_says_eagain_and_keeps_its_flags(hx, runs):
	port = free_port()
	d = http_daemon(hx, port)
	run = start_probe(runs, d, port, "--nonblocking")
	listening = run.events("listening")[0]
	assert listening["flags"] == {"nonblock": True, "cloexec": False}
	assert listening["first_accept"] == "EAGAIN"
	for _ in range(3):
		assert get(port)["flags"] == {"nonblock": False, "cloexec": True}


def test_emfile_keeps_the_connection_waiting(hx, runs):
	port = free_port()
	d = http_daemon(hx, port)
	run = start_probe(runs, d, port, "--scenario", "emfile")
	with ThreadPoolExecutor(1) as pool:
		pending = pool.submit(get, port)
		report = run.wait_event("emfile")
		body = pending.result(timeout=15)
	assert report["results"] == ["EMFILE", "EMFILE"]
	assert report["still_readable"] is True
	assert body["after"] == "emfile"


def test_forked_workers_share_the_listener_and_outlive_each_other(hx, runs):
	port = free_port()
	d = http_daemon(hx, port)
	run = start_probe(runs, d, port, "--scenario", "workers", "--workers", 2, "--delay", 1,
			  event="workers")
	workers = run.events("workers")[0]["pids"]
	ids = upstream_ids(hx.runtime_dir)
	assert len(ids) == 1, ids

	# Two requests at once: the busy worker leaves the second to the other.
	with ThreadPoolExecutor(2) as pool:
		bodies = list(pool.map(lambda _: get(port), range(2)))
	assert sorted(b["pid"] for b in bodies) == sorted(workers)

	# One worker closes its copy and exits: the other keeps serving, and
	# the registration (the files) stays.
	os.kill(workers[0], signal.SIGTERM)
	assert wait_for(lambda: process_gone(workers[0]), 10)
	for _ in range(3):
		assert get(port)["pid"] == workers[1]
	assert upstream_ids(hx.runtime_dir) == ids
	assert "dropped upstream" not in d.log()


@pytest.mark.parametrize("takeover", ["fileno", "fromfd", "passed"])
def test_the_listener_survives_exec_and_descriptor_passing(hx, runs, takeover):
	"""After one request the listener goes to a new program: the same
	process re-executed (fileno); re-executed with nothing but LD_PRELOAD in
	its environment and taking the listener as a duplicate (fromfd, as
	gunicorn's USR2); or another process, also with a bare environment, that
	receives it over a Unix socket (passed, as node's cluster module). Each
	sees the listener the first program bound, under the same registration."""
	port = free_port()
	d = http_daemon(hx, port)
	run = start_probe(runs, d, port, "--takeover", takeover)
	ids = upstream_ids(hx.runtime_dir)
	assert len(ids) == 1, ids
	first = get(port)
	assert first["generation"] == 1
	inherited = run.wait_event("inherited")
	second = get(port)
	assert second["generation"] == 2
	assert (second["pid"] == first["pid"]) == (takeover != "passed")
	assert inherited["type"] == 1 and inherited["family"] == 2
	assert inherited["getsockname"] == ["127.0.0.1", port]
	assert inherited["options"]["SO_ACCEPTCONN"] == 1
	assert inherited["options"]["SO_REUSEADDR"] == 1
	assert inherited["options"]["TCP_DEFER_ACCEPT"] > 0
	# fromfd() duplicates with F_DUPFD_CLOEXEC.
	assert inherited["flags"] == {"nonblock": False, "cloexec": takeover == "fromfd"}
	assert upstream_ids(hx.runtime_dir) == ids
	assert d.log().count("registered upstream") == 1


def test_daemon_restart_does_not_disturb_the_server(hx, runs):
	port = free_port()
	d = http_daemon(hx, port)
	run = start_probe(runs, d, port)
	before = get(port)
	d.stop()
	d.start()
	d.wait_log(rf"registered upstream {before['pid']}-")
	after = get(port)
	assert after["pid"] == before["pid"] and after["served"] == before["served"] + 1
	assert run.proc.poll() is None


# An ordinary Python server with a TLS listener and a plain-HTTP listener
# (either may be left out), answering on each with the listener's label.
TWO_LISTENERS_SOURCE = r"""
import json, select, signal, socket, ssl, sys

tls_port, http_port, cert, key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
listeners = {}
for port, label in ((tls_port, "tls"), (http_port, "http")):
	if port:
		sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
		sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
		sock.bind(("127.0.0.1", port))
		sock.listen(16)
		listeners[sock] = label
print(json.dumps({"event": "listening"}), flush=True)
while True:
	for sock in select.select(list(listeners), [], [], 0.5)[0]:
		conn, _ = sock.accept()
		label = listeners[sock]
		try:
			conn.settimeout(10)
			if label == "tls":
				conn = context.wrap_socket(conn, server_side=True)
			request = b""
			while b"\r\n\r\n" not in request and len(request) < 65536:
				chunk = conn.recv(4096)
				if not chunk:
					break
				request += chunk
			body = json.dumps({"listener": label}).encode()
			conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(body)).encode() +
				     b"\r\nConnection: close\r\n\r\n" + body)
		except OSError as e:
			print(json.dumps({"event": "failed", "listener": label, "error": str(e)}),
			      flush=True)
		finally:
			conn.close()
"""


def test_run_splits_tls_and_http_between_the_listeners(hx, runs, certs):
	"""--port A/tls --port B/http: TLS clients reach only the TLS listener,
	plain-HTTP clients only the plain-HTTP one; a name served only over TLS
	has no route for plain HTTP."""
	tls_port, http_port, server_tls, server_http, tls_only = (free_port() for _ in range(5))
	d = hx.daemon(hx.config([f"127.0.0.1:{tls_port} tls", f"127.0.0.1:{http_port} http"]))
	script = hx.dir / "two_listeners.py"
	script.write_text(TWO_LISTENERS_SOURCE)
	cert, key = certs.pair(NAME)
	both = runs("both", [PYTHON, script, server_tls, server_http, cert, key],
		    ports=[f"{server_tls}/tls", f"{server_http}/http"])
	both.wait_event("listening")
	d.wait_log(r"registered upstream \d+-\S+ names=a\.example uid=\d+ protocol=tls")
	d.wait_log(r"registered upstream \d+-\S+ names=a\.example uid=\d+ protocol=http")

	for _ in range(30):
		assert json_body(https_get(certs, tls_port, NAME)) == {"listener": "tls"}
		assert json_body(http_get(http_port, NAME)) == {"listener": "http"}
	assert not both.events("failed")

	cert, key = certs.pair("b.example")
	only = runs("tls-only", [PYTHON, script, tls_only, 0, cert, key], names=["b.example"],
		    ports=[f"{tls_only}/tls"])
	only.wait_event("listening")
	d.wait_log(r"registered upstream \d+-\S+ names=b\.example uid=\d+ protocol=tls")
	assert json_body(https_get(certs, tls_port, "b.example")) == {"listener": "tls"}
	assert http_get(http_port, "b.example").status == 503
	assert not only.events("failed")


# ---- handoff run ----

def run_command(*args, env=None, timeout=30):
	full_env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0")
	full_env.update(env or {})
	return subprocess.run([str(HANDOFF), "run", *[str(a) for a in args]], stdin=subprocess.DEVNULL,
			      capture_output=True, text=True, timeout=timeout, env=full_env)


def test_run_passes_signals_and_exits_with_the_server_status(hx, runs):
	port = free_port()
	d = http_daemon(hx, port)
	run = start_probe(runs, d, port, "--exit-code", 7)
	for count, signo in enumerate((signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
				       signal.SIGWINCH, signal.SIGQUIT), start=1):
		run.proc.send_signal(signo)
		run.wait_event("signal", count=count)
	assert [e["signal"] for e in run.events("signal")] == \
		["SIGHUP", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGQUIT"]
	assert get(port)["served"] == 1		# still serving
	run.proc.send_signal(signal.SIGTERM)
	assert run.wait_exit() == 7
	assert run.events("signal")[-1]["signal"] == "SIGTERM"


def test_run_reports_death_by_signal_as_128_plus_n(hx):
	hx.runtime_dir.joinpath("upstreams").mkdir(parents=True)
	result = run_command("--name", NAME, "--port", free_port(), "--runtime-dir", hx.runtime_dir,
			     "--wait", 0, "--", "sh", "-c", "kill -KILL $$")
	assert result.returncode == 128 + signal.SIGKILL, result.stderr
	result = run_command("--name", NAME, "--port", free_port(), "--runtime-dir", hx.runtime_dir,
			     "--wait", 0, "--", "sh", "-c", "exit 3")
	assert result.returncode == 3, result.stderr


# A server that registers, then crashes when the test says so (a file).
CRASHING_SERVER = """
import os, signal, socket, sys, time
port, go = int(sys.argv[1]), sys.argv[2]
listener = socket.socket()
listener.bind(("127.0.0.1", port))
listener.listen(8)
deadline = time.monotonic() + 60
while not os.path.exists(go) and time.monotonic() < deadline:
	time.sleep(0.05)
os.kill(os.getpid(), signal.SIGSEGV)
"""


def test_run_reports_a_server_that_crashes(hx, runs):
	"""The server registers, then dies of SIGSEGV: handoff run says so,
	and that its name is no longer served, not only the daemon's log."""
	port = free_port()
	d = http_daemon(hx, port)
	go = hx.dir / "crash-now"
	run = runs("crash", [PYTHON, "-c", CRASHING_SERVER, port, go], ports=[port])
	d.wait_log(r"registered upstream \d+-\w+ names=a.example")
	go.write_text("")
	assert run.wait_exit() == 128 + signal.SIGSEGV
	stderr = run.stderr()
	assert f"handoff run: {PYTHON} was killed by signal 11 (SIGSEGV" in stderr, stderr
	assert "a.example is no longer served by it" in stderr, stderr


def test_run_reports_a_server_that_exits_before_registering(hx):
	hx.runtime_dir.joinpath("upstreams").mkdir(parents=True)
	result = run_command("--name", NAME, "--port", free_port(), "--runtime-dir", hx.runtime_dir,
			     "--", "sh", "-c", "echo 'cannot open the configuration' >&2; exit 1")
	assert result.returncode == 1, result.stderr
	lines = result.stderr.splitlines()
	assert lines[0] == "cannot open the configuration", result.stderr
	assert lines[1].startswith("handoff run: sh exited with status 1 after "), result.stderr
	assert lines[1].endswith(" s, before it registered: no connection for a.example reached it"), \
		result.stderr


def test_run_says_nothing_more_when_stopped_as_asked(hx, runs):
	port = free_port()
	d = http_daemon(hx, port)
	run = start_probe(runs, d, port)
	run.proc.send_signal(signal.SIGTERM)
	assert run.wait_exit() == 0
	assert "handoff run:" not in run.stderr(), run.stderr()


# ---- launchers between handoff run and the server ----

SOCKET_ACTIVATED = Path(__file__).resolve().parent / "launchers" / "socket_activated.py"
NO_PRELOAD = "but without the preload library"
LAUNCHER_WAIT = 20	# the warning comes within seconds; generous for a loaded machine


def socket_activate():
	"""systemd-socket-activate, or an AssertionError naming its package."""
	path = shutil.which("systemd-socket-activate")
	assert path, ("systemd-socket-activate is not installed: install the Debian package systemd "
		      "(tests/integration/launchers/packages.txt)")
	return path


def test_run_warns_when_env_i_drops_the_preload(hx, runs):
	"""env -i starts the server with an empty environment: it binds the
	port for real, and no connection from the daemon reaches it."""
	port = free_port()
	server_port = free_port()
	http_daemon(hx, port)
	run = runs("env-i", ["env", "-i", PYTHON, "-m", "http.server", server_port, "--bind",
			     "127.0.0.1"], ports=[server_port], wait=0)
	run.wait_stderr(NO_PRELOAD, timeout=LAUNCHER_WAIT)
	warning = next(line for line in run.stderr().splitlines() if NO_PRELOAD in line)
	assert warning.startswith("handoff run: python3 (pid "), warning
	assert f"listens on TCP port {server_port} itself" in warning, warning
	assert "env -i" in warning and "LD_PRELOAD" in warning, warning
	assert run.stderr().count(NO_PRELOAD) == 1, run.stderr()


def test_run_warns_when_systemd_socket_activate_drops_the_preload(hx, runs):
	"""systemd-socket-activate (with the preload) binds the port, which
	becomes a registered receiver; when the first connection comes, it
	starts the server without LD_PRELOAD: the server holds the receiver
	and cannot accept from it."""
	port = free_port()
	d = http_daemon(hx, port)
	run = runs("socket-activate", [socket_activate(), "-l", f"127.0.0.1:{port}", PYTHON,
				       SOCKET_ACTIVATED], ports=[port], wait=0)
	d.wait_log(r"registered upstream \d+-")
	assert NO_PRELOAD not in run.stderr()	# nothing wrong yet
	# The first connection starts the server; it is never answered.
	with pytest.raises((OSError, ValueError)):
		http_get(port, NAME, timeout=3)
	run.wait_stderr(NO_PRELOAD, timeout=LAUNCHER_WAIT)
	warning = next(line for line in run.stderr().splitlines() if NO_PRELOAD in line)
	assert warning.startswith("handoff run: python3 (pid "), warning
	assert "holds the listener registered for a.example" in warning, warning
	assert "systemd-socket-activate without -E LD_PRELOAD" in warning, warning


def test_run_with_socket_activation_keeping_the_preload_serves_and_warns_not(hx, runs):
	"""The fix docs/servers.md gives: -E LD_PRELOAD. The server adopts the
	receiver, serves through the daemon, and no warning appears."""
	port = free_port()
	d = http_daemon(hx, port)
	run = runs("socket-activate-e", [socket_activate(), "-E", "LD_PRELOAD", "-l",
					 f"127.0.0.1:{port}", PYTHON, SOCKET_ACTIVATED],
		   ports=[port], wait=0)
	d.wait_log(r"registered upstream \d+-")
	assert wait_for(lambda: run.proc.poll() is None and
			http_get(port, NAME).body == b"socket-activated\n", 20, interval=0.2), \
		run.stderr()
	time.sleep(3)		# past the first checks
	assert NO_PRELOAD not in run.stderr(), run.stderr()


def test_run_sets_the_environment_and_appends_to_ld_preload(hx, runs):
	port = free_port()
	d = http_daemon(hx, port)
	other = "libm.so.6"	# any library the dynamic linker finds will do
	run = runs("env", probe_command(port), names=[NAME, "WWW.A.Example."], ports=[port, port + 1],
		   env={"LD_PRELOAD": str(other), "ASAN_OPTIONS": "verify_asan_link_order=0"})
	environ = run.wait_event("start")["environ"]
	assert environ["LD_PRELOAD"] == f"{other}:{PRELOAD.resolve()}"
	assert environ["HANDOFF_NAMES"] == "a.example,www.a.example"
	assert environ["HANDOFF_PORTS"] == f"{port},{port + 1}"
	assert environ["HANDOFF_RUNTIME_DIR"] == str(hx.runtime_dir.resolve())
	run.wait_event("listening")
	d.wait_log(r"registered upstream \d+-\w+ names=a.example,www.a.example")


def test_run_warns_when_no_port_is_bound(hx, runs):
	port = free_port()
	http_daemon(hx, port)
	run = runs("idle", ["sleep", "30"], ports=[port], wait=1)
	run.wait_stderr(f"handoff run: sleep has not bound port {port} after 1 s; "
			"is it listening on that port?", timeout=10)
	assert run.proc.poll() is None


def test_run_warns_when_no_daemon_answers(hx, runs):
	"""A runtime directory left behind by a daemon that is not running:
	the server registers, but nobody answers."""
	hx.runtime_dir.joinpath("upstreams").mkdir(parents=True)
	port = free_port()
	run = runs("unanswered", probe_command(port), ports=[port], wait=1)
	run.wait_event("listening")
	run.wait_stderr("handoff run: the daemon has not answered /usr/bin/python3's registration "
			f"after 1 s; is `handoff serve` running with runtime directory "
			f"{hx.runtime_dir.resolve()}?")
	assert "has not bound" not in run.stderr()


def test_run_reports_a_refused_name_and_keeps_the_server(hx, runs):
	port = free_port()
	d = http_daemon(hx, port, grants=["a.example to self"])
	run = runs("refused", probe_command(port), names=["b.example"], ports=[port], wait=1)
	run.wait_event("listening")
	run.wait_stderr("handoff run: the daemon refused b.example: ")
	assert "no grant" in run.stderr()
	time.sleep(1.5)		# past --wait: no other warning follows
	assert run.proc.poll() is None
	assert run.stderr().count("handoff run:") == 1, run.stderr()
	d.wait_log("refused upstream")


def test_run_refuses_static_programs(hx, tmp_path):
	hx.runtime_dir.joinpath("upstreams").mkdir(parents=True)
	source = tmp_path / "static.c"
	source.write_text("int main(void) { return 0; }\n")
	binary = tmp_path / "static-server"
	built = subprocess.run(["cc", "-static", "-o", str(binary), str(source)], capture_output=True)
	if built.returncode != 0:
		pytest.skip("no static C library to build a static program with")
	common = ["--name", NAME, "--port", 8443, "--runtime-dir", hx.runtime_dir, "--"]
	result = run_command(*common, binary)
	assert result.returncode == 1
	assert f"handoff run: {binary} is statically linked: LD_PRELOAD cannot work" in result.stderr
	script = tmp_path / "server.sh"
	script.write_text(f"#!{binary}\n")
	script.chmod(0o755)
	result = run_command(*common, script)
	assert result.returncode == 1
	assert f"runs {binary}, which is statically linked" in result.stderr
	# A script whose interpreter is dynamic is fine (env finds sh).
	script.write_text("#!/usr/bin/env sh\nexit 4\n")
	assert run_command("--wait", 0, *common, script).returncode == 4


# A C program carrying the note the Go linker writes into every Go binary.
GO_LIKE_SOURCE = r"""
__asm__(".section .note.go.buildid,\"a\",@note\n.balign 4\n"
	".long 4\n.long 4\n.long 4\n.asciz \"Go\"\n.byte 0\n.ascii \"abcd\"\n.text\n");
int main(void) { return 0; }
"""


def test_run_refuses_go_programs(hx, tmp_path):
	"""Go makes its socket calls without the C library, dynamically linked
	or not; the Go linker's build ID note gives such a program away."""
	hx.runtime_dir.joinpath("upstreams").mkdir(parents=True)
	source = tmp_path / "go-like.c"
	source.write_text(GO_LIKE_SOURCE)
	binary = tmp_path / "go-server"
	subprocess.run(["cc", "-o", str(binary), str(source)], check=True, capture_output=True)
	result = run_command("--name", NAME, "--port", 8443, "--runtime-dir", hx.runtime_dir,
			     "--", binary)
	assert result.returncode == 1
	assert result.stderr == (f"handoff run: {binary} is a Go program: Go makes its socket calls "
				 "without the C library, so LD_PRELOAD cannot work; route to it over "
				 "TCP with the relay (see docs/servers.md)\n")


def test_run_explains_a_missing_runtime_directory(hx):
	missing = hx.dir / "no-such-runtime"
	result = run_command("--name", NAME, "--port", 8443, "--runtime-dir", missing, "--", "true")
	assert result.returncode == 1
	assert result.stderr == (f"handoff run: runtime directory {missing} does not exist: "
				 "is `handoff serve` running? (or pass --runtime-dir)\n")


@pytest.mark.parametrize("args, words", [
	(["--port", 8443, "--", "true"], "give at least one --name"),
	(["--name", NAME, "--", "true"], "give at least one --port"),
	(["--name", NAME, "--port", 8443], "which program"),
	(["--name", "bad..name", "--port", 8443, "--", "true"], "invalid name 'bad..name'"),
	(["--name", NAME, "--port", 70000, "--", "true"], "invalid port '70000'"),
	(["--name", NAME, "--port", "8443/quic", "--", "true"], "invalid port '8443/quic'"),
	(["--name", NAME, "--port", "8443/tls", "--port", "8443/http", "--", "true"],
	 "port '8443' given again with another protocol"),
	(["--name", NAME, "--port", 8443, "--wait", "soon", "--", "true"], "invalid --wait 'soon'"),
	(["--name", NAME, "--port", 8443, "--frobnicate", "--", "true"], "unknown option"),
	(["--name"], "--name needs a value"),
])
def test_run_usage_errors(args, words):
	result = run_command(*args)
	assert result.returncode == 2, result.stderr
	assert words in result.stderr and "handoff run --help" in result.stderr


def test_run_help_and_unknown_program(hx):
	result = run_command("--help")
	assert result.returncode == 0
	assert "usage: handoff run --name NAME" in result.stdout and "Example" in result.stdout
	assert "--port 8443/tls --port 8080/http" in result.stdout
	hx.runtime_dir.joinpath("upstreams").mkdir(parents=True)
	result = run_command("--name", NAME, "--port", 8443, "--runtime-dir", hx.runtime_dir,
			     "--", "no-such-program-for-handoff")
	assert result.returncode == 127
	assert "no-such-program-for-handoff: command not found" in result.stderr


# An ordinary Python server (IPv4 or IPv6 listener) that answers with what
# accept() and getpeername() told it about the client.
PEER_ECHO_SOURCE = r"""
import json, signal, socket, sys

port, family = int(sys.argv[1]), sys.argv[2]
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
if family == "6":
	sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
	sock.bind(("::1", port))
else:
	sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
	sock.bind(("127.0.0.1", port))
sock.listen(16)
print(json.dumps({"event": "listening"}), flush=True)
while True:
	conn, accepted = sock.accept()
	with conn:
		conn.settimeout(10)
		request = b""
		while b"\r\n\r\n" not in request and len(request) < 65536:
			chunk = conn.recv(4096)
			if not chunk:
				break
			request += chunk
		body = json.dumps({"accepted": list(accepted[:2]),
				   "getpeername": list(conn.getpeername()[:2])}).encode()
		conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(body)).encode() +
			     b"\r\nConnection: close\r\n\r\n" + body)
"""


@pytest.mark.parametrize("family", ["4", "6"])
def test_client_address_from_a_proxy_header_reaches_the_server(hx, runs, family):
	"""Behind a balancer (a listener with accept-proxy), an unmodified server
	sees the client the PROXY header names, from accept() and getpeername()
	alike, v4-mapped on an IPv6 listener; a direct client still sees itself."""
	port, server_port = free_port(), free_port(("127.0.0.1", "::1"))
	d = hx.daemon(hx.config([f"127.0.0.1:{port} http accept-proxy 127.0.0.2"]))
	script = hx.dir / "peer_echo.py"
	script.write_text(PEER_ECHO_SOURCE)
	run = runs("peer-echo", [PYTHON, script, server_port, family], ports=[server_port])
	run.wait_event("listening")
	d.wait_log(r"registered upstream \d+-\S+ names=a\.example")

	import socket
	balancer = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
	balancer.bind(("127.0.0.2", 0))		# the trusted source
	balancer.settimeout(10)
	balancer.connect(("127.0.0.1", port))
	balancer.sendall(b"PROXY TCP4 203.0.113.9 127.0.0.1 4242 443\r\n"
			 b"GET / HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n")
	answer = b""
	while True:
		chunk = balancer.recv(4096)
		if not chunk:
			break
		answer += chunk
	balancer.close()
	body = json_body_bytes(answer)
	expected = ["203.0.113.9", 4242] if family == "4" else ["::ffff:203.0.113.9", 4242]
	assert body == {"accepted": expected, "getpeername": expected}
	d.wait_access(lambda r: r.get("client") == "203.0.113.9:4242" and r.get("via", "").startswith("127.0.0.2:"))

	direct = json_body(http_get(port, NAME))
	assert direct["accepted"] == direct["getpeername"]
	assert direct["accepted"][0] in ("127.0.0.1", "::ffff:127.0.0.1")


def json_body_bytes(raw):
	import json
	head, _, body = raw.partition(b"\r\n\r\n")
	assert head.startswith(b"HTTP/1.1 200"), raw[:200]
	return json.loads(body)
