# preload_helpers.py - the probe server run under libhandoff-preload.so (as a script) and the helpers test_preload.py drives it with.
"""Run as a script ("preload_helpers.py probe ...") this is an ordinary,
unmodified Python TCP server: it uses only the socket module (libc bind,
listen, accept4, getsockname, getsockopt, setsockopt, close) and ctypes
calls into libc for exact accept4() flags and short buffers. Every
observation goes to stdout as one JSON object per line, and every HTTP reply
body is a JSON object, so the tests can compare a swapped listener with a
real TCP listener doing the same calls side by side.

Imported, it gives the tests HandoffRun (a `handoff run` process with
checked teardown) and small request helpers."""
import argparse
import ctypes
import errno
import fcntl
import json
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from harness import BUILD, HANDOFF, read_text, sanitizer_findings, wait_for

PRELOAD = BUILD / "libhandoff-preload.so"
HELPERS = Path(__file__).resolve()
PYTHON = "/usr/bin/python3"	# the dynamically linked Debian interpreter
STOP_TIMEOUT = 15.0
IO_TIMEOUT = 10.0

# ---- the probe (runs under the preload) ----

libc = ctypes.CDLL(None, use_errno=True)


def emit(event, **fields):
	print(json.dumps(dict(event=event, pid=os.getpid(), **fields)), flush=True)


def errno_name(code):
	return errno.errorcode.get(code, str(code))


def attempt(operation):
	"""The result of operation(), or "E<NAME>" for an OSError."""
	try:
		return operation()
	except OSError as e:
		return errno_name(e.errno)


def fd_flags(fd):
	return {"nonblock": bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK),
		"cloexec": bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)}


def raw_setsockopt(fd, level, name, value_bytes):
	buf = ctypes.create_string_buffer(value_bytes, len(value_bytes))
	if libc.setsockopt(fd, level, name, buf, len(value_bytes)) < 0:
		return errno_name(ctypes.get_errno())
	return 0


def raw_getsockopt(fd, level, name, length):
	buf = ctypes.create_string_buffer(64)
	size = ctypes.c_uint32(length)
	if libc.getsockopt(fd, level, name, buf, ctypes.byref(size)) < 0:
		return errno_name(ctypes.get_errno())
	return [size.value, buf.raw[:size.value].hex()]


def raw_getsockname(fd, length):
	buf = ctypes.create_string_buffer(128)
	size = ctypes.c_uint32(length)
	if libc.getsockname(fd, buf, ctypes.byref(size)) < 0:
		return errno_name(ctypes.get_errno())
	return [size.value, buf.raw[:min(length, size.value)].hex()]


def raw_accept4(fd, flags, addr_capacity):
	"""accept4() straight from libc; returns (fd or "E...", addrlen, address bytes)."""
	buf = ctypes.create_string_buffer(128)
	size = ctypes.c_uint32(addr_capacity)
	conn = libc.accept4(fd, buf, ctypes.byref(size), flags)
	if conn < 0:
		return errno_name(ctypes.get_errno()), None, None
	return conn, size.value, buf.raw[:min(addr_capacity, size.value)].hex()


OPTIONS = {
	"SO_TYPE": (socket.SOL_SOCKET, socket.SO_TYPE),
	"SO_DOMAIN": (socket.SOL_SOCKET, socket.SO_DOMAIN),
	"SO_PROTOCOL": (socket.SOL_SOCKET, socket.SO_PROTOCOL),
	"SO_ACCEPTCONN": (socket.SOL_SOCKET, socket.SO_ACCEPTCONN),
	"SO_ERROR": (socket.SOL_SOCKET, socket.SO_ERROR),
	"SO_REUSEADDR": (socket.SOL_SOCKET, socket.SO_REUSEADDR),
	"SO_REUSEPORT": (socket.SOL_SOCKET, socket.SO_REUSEPORT),
	"SO_KEEPALIVE": (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
	"SO_RCVBUF": (socket.SOL_SOCKET, socket.SO_RCVBUF),
	"TCP_NODELAY": (socket.IPPROTO_TCP, socket.TCP_NODELAY),
	"TCP_DEFER_ACCEPT": (socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT),
	"TCP_FASTOPEN": (socket.IPPROTO_TCP, socket.TCP_FASTOPEN),
	"TCP_KEEPIDLE": (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
	"TCP_MAXSEG": (socket.IPPROTO_TCP, socket.TCP_MAXSEG),
	"IPV6_V6ONLY": (socket.IPPROTO_IPV6, socket.IPV6_V6ONLY),
}


def read_options(sock):
	return {name: attempt(lambda lv=lv: sock.getsockopt(*lv)) for name, lv in OPTIONS.items()}


def exercise_listener(sock, address, family):
	"""The same calls on any listener; returns what each answered. The port
	differs between the swapped and the real listener, so addresses are
	reported without it."""
	out = {}
	fd = sock.fileno()
	out["reuseaddr"] = attempt(lambda: sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1))
	if family == socket.AF_INET6:
		out["v6only_before_bind"] = attempt(
			lambda: sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0))
	out["bind"] = attempt(lambda: sock.bind(address))
	out["flags_after_bind"] = fd_flags(fd)
	name = sock.getsockname()
	out["getsockname"] = [name[0]] + list(name[2:])
	short = raw_getsockname(fd, 4)
	out["getsockname_short"] = [short[0], short[1][:4]]	# full length, family
	out["before_listen"] = read_options(sock)
	out["second_bind"] = attempt(lambda: sock.bind(address))
	out["listen"] = attempt(lambda: sock.listen(16))
	out["listen_again"] = attempt(lambda: sock.listen(64))
	out["after_listen"] = read_options(sock)
	sets = {}
	for option, value in (("TCP_DEFER_ACCEPT", 5), ("TCP_FASTOPEN", 16), ("SO_KEEPALIVE", 1),
			      ("SO_RCVBUF", 65536), ("TCP_NODELAY", 1), ("TCP_KEEPIDLE", 77),
			      ("IPV6_V6ONLY", 1)):
		sets[option] = attempt(lambda o=option, v=value: sock.setsockopt(*OPTIONS[o], v))
	sets["SO_KEEPALIVE_short"] = raw_setsockopt(fd, socket.SOL_SOCKET, socket.SO_KEEPALIVE, b"\x01\x00")
	sets["TCP_unknown"] = raw_setsockopt(fd, socket.IPPROTO_TCP, 9999, b"\x01\x00\x00\x00")
	out["set"] = sets
	out["after_set"] = read_options(sock)
	out["getsockopt_short"] = raw_getsockopt(fd, socket.SOL_SOCKET, socket.SO_TYPE, 2)
	out["getsockopt_unknown"] = raw_getsockopt(fd, socket.IPPROTO_TCP, 9999, 4)
	out["fstat_is_socket"] = (os.fstat(fd).st_mode & 0o170000) == 0o140000
	return out


def describe_connection(conn, peer):
	"""peer: the address accept() returned (getpeername() of a handed-off
	socket tells the daemon's view, which may be the other family)."""
	return {"peer": [peer[0], peer[1]],
		"flags": fd_flags(conn.fileno()),
		"keepalive": conn.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
		"nodelay": conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
		"keepidle": conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)}


def read_request(conn):
	"""Read an HTTP request head (bounded by IO_TIMEOUT and 64 KiB)."""
	conn.settimeout(IO_TIMEOUT)
	data = b""
	while b"\r\n\r\n" not in data and len(data) < 65536:
		chunk = conn.recv(4096)
		if not chunk:
			break
		data += chunk
	return data


def reply(conn, body):
	payload = json.dumps(body).encode()
	conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
		     b"Content-Length: " + str(len(payload)).encode() +
		     b"\r\nConnection: close\r\n\r\n" + payload)


def serve_one(conn, state, extra=None, delay=0.0):
	with conn:
		read_request(conn)
		if delay:
			time.sleep(delay)
		state["served"] += 1
		body = {"pid": os.getpid(), "generation": state["generation"],
			"served": state["served"]}
		body.update(extra or {})
		reply(conn, body)


def install_signal_reporting(state):
	def report(signo, _frame):
		emit("signal", signal=signal.Signals(signo).name)
		if signo == signal.SIGTERM:
			state["stop"] = True
			for worker in state.get("workers", ()):
				try:
					os.kill(worker, signal.SIGTERM)
				except ProcessLookupError:
					pass
			if not state.get("workers"):
				sys.exit(state["exit_code"])
	for signo in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
		      signal.SIGWINCH, signal.SIGQUIT):
		signal.signal(signo, report)


def make_listener(args):
	family = socket.AF_INET6 if args.family == 6 else socket.AF_INET
	host = args.host or ("::" if family == socket.AF_INET6 else "127.0.0.1")
	sock = socket.socket(family, socket.SOCK_STREAM)
	return sock, family, (host, args.port)


def bare_environment():
	"""Only what loads the library: the listener's details must come with
	the socket itself, not with HANDOFF_* variables."""
	return {"LD_PRELOAD": os.environ["LD_PRELOAD"]}


def next_generation_argv(args, state, how, fd):
	return [PYTHON, str(HELPERS), "probe", "--port", str(args.port), "--family", str(args.family),
		how, str(fd), "--generation", str(state["generation"] + 1)]


def take_over(sock, args, state):
	"""Hand the listener to the next generation: exec() this process with
	the listener kept (--takeover fileno), exec() it with a bare environment
	and have it duplicate the listener as gunicorn does (fromfd), or start a
	new process with a bare environment and send it the listener over a
	Unix socket, as node's cluster module does (passed)."""
	fd = sock.fileno()
	if args.takeover == "passed":
		ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
		child = subprocess.Popen(next_generation_argv(args, state, "--receive", theirs.fileno()),
					 pass_fds=[theirs.fileno()], env=bare_environment())
		theirs.close()
		socket.send_fds(ours, [b"listener"], [fd])
		ours.close()
		sock.close()
		state["workers"] = [child.pid]
		emit("passed", to=child.pid)
		child.wait()
		sys.exit(0)
	os.set_inheritable(fd, True)
	argv = next_generation_argv(args, state, "--inherit", fd)
	emit("exec", fd=fd)
	if args.takeover == "fromfd":
		os.execve(PYTHON, argv + ["--fromfd"], bare_environment())
	os.execv(PYTHON, argv)


def serve_forever(listeners, state, args, delay=0.0):
	"""Accept on every listener until SIGTERM; bounded waits keep checking
	state["stop"]. listeners: [(socket, label)]."""
	while not state["stop"]:
		ready, _, _ = select.select([s for s, _ in listeners], [], [], 0.5)
		for sock, label in listeners:
			if sock not in ready:
				continue
			try:
				conn, peer = sock.accept()
			except BlockingIOError:
				state["eagain"] += 1
				continue
			info = describe_connection(conn, peer)
			info["listener"] = label
			serve_one(conn, state, info, delay)
			if args.takeover and state["served"] >= 1 and label == "swapped":
				take_over(sock, args, state)


def probe_inspect(args, state):
	"""Swapped listener and real listener, same calls; report, then serve both."""
	swapped, family, address = make_listener(args)
	real = socket.socket(family, socket.SOCK_STREAM)
	report = {"swapped": exercise_listener(swapped, address, family),
		  "real": exercise_listener(real, (address[0], args.real_port), family)}
	emit("inspect", **report)
	serve_forever([(swapped, "swapped"), (real, "real")], state, args)


def probe_flags(args, state):
	"""accept4() with every flag combination and address size, on the
	swapped and on the real listener in turn."""
	swapped, family, address = make_listener(args)
	swapped.bind(address)
	swapped.listen(16)
	real = socket.socket(family, socket.SOCK_STREAM)
	real.bind(("127.0.0.1" if family == socket.AF_INET else "::1", args.real_port))
	real.listen(16)
	emit("listening")
	cases = [(0, 128), (socket.SOCK_NONBLOCK, 128), (socket.SOCK_CLOEXEC, 4),
		 (socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, 128)]
	for flags, capacity in cases:
		for sock, label in ((swapped, "swapped"), (real, "real")):
			conn_fd, addrlen, addr = raw_accept4(sock.fileno(), flags, capacity)
			if isinstance(conn_fd, str):
				emit("accept4", listener=label, error=conn_fd)
				return
			observed = fd_flags(conn_fd)
			conn = socket.socket(fileno=conn_fd)
			conn.setblocking(True)
			serve_one(conn, state, {"listener": label, "flags": flags, "capacity": capacity,
						"observed": observed, "addrlen": addrlen,
						"addr": addr})
	# accept() is accept4() without flags.
	conn_fd = libc.accept(swapped.fileno(), None, None)
	observed = fd_flags(conn_fd)
	conn = socket.socket(fileno=conn_fd)
	conn.setblocking(True)
	serve_one(conn, state, {"listener": "swapped", "call": "accept", "observed": observed})
	emit("done")


def probe_emfile(args, state):
	"""Accept with no descriptor left: EMFILE, and the connection waits."""
	swapped, family, address = make_listener(args)
	swapped.bind(address)
	swapped.listen(16)
	emit("listening")
	readable, _, _ = select.select([swapped], [], [], IO_TIMEOUT)
	if not readable:
		emit("timeout")
		return
	soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
	resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
	fillers = []
	while True:
		try:
			fillers.append(os.open("/dev/null", os.O_RDONLY))
		except OSError as e:
			assert e.errno == errno.EMFILE
			break
	# No slot for the connection: EMFILE, as TCP's accept() says, twice,
	# and the connection stays queued rather than being dropped.
	results = [attempt(lambda: swapped.accept()), attempt(lambda: swapped.accept())]
	still_readable = bool(select.select([swapped], [], [], 0)[0])
	# One free slot is enough for the one descriptor the daemon sends.
	os.close(fillers.pop())
	conn, _ = swapped.accept()
	for fd in fillers:
		os.close(fd)
	resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
	emit("emfile", results=[r if isinstance(r, str) else "ok" for r in results],
	     still_readable=still_readable)
	serve_one(conn, state, {"after": "emfile"})


def probe_workers(args, state):
	"""Fork workers after listen(); each accepts on the shared listener."""
	swapped, family, address = make_listener(args)
	swapped.bind(address)
	swapped.listen(16)
	state["workers"] = []
	for _ in range(args.workers):
		pid = os.fork()
		if pid == 0:
			state["workers"] = []
			# A worker that stops closes its copy first, as nginx's do.
			signal.signal(signal.SIGTERM, lambda *_: (swapped.close(), os._exit(0)))
			while True:
				conn, _ = swapped.accept()
				serve_one(conn, state, {"worker": True}, args.delay)
		state["workers"].append(pid)
	emit("workers", pids=state["workers"])
	for _ in state["workers"]:
		try:
			os.wait()
		except ChildProcessError:
			break
	emit("workers_done")


def probe_main(argv):
	parser = argparse.ArgumentParser(prog="preload_helpers.py probe")
	parser.add_argument("--port", type=int, required=True)
	parser.add_argument("--real-port", type=int, default=0)
	parser.add_argument("--family", type=int, choices=(4, 6), default=4)
	parser.add_argument("--host")
	parser.add_argument("--scenario", default="serve",
			    choices=("serve", "inspect", "flags", "emfile", "workers"))
	parser.add_argument("--nonblocking", action="store_true")
	parser.add_argument("--workers", type=int, default=2)
	parser.add_argument("--delay", type=float, default=0.0)
	parser.add_argument("--takeover", choices=("fileno", "fromfd", "passed"),
			    help="after the first request, give the listener to a new program")
	parser.add_argument("--inherit", type=int)
	parser.add_argument("--receive", type=int,
			    help="receive the listener over this Unix socket descriptor")
	parser.add_argument("--fromfd", action="store_true",
			    help="take the inherited listener with socket.fromfd() (a dup), "
			    "close the original and listen() again, as gunicorn does")
	parser.add_argument("--generation", type=int, default=1)
	parser.add_argument("--exit-code", type=int, default=0)
	args = parser.parse_args(argv)
	state = {"served": 0, "generation": args.generation, "stop": False, "eagain": 0,
		 "exit_code": args.exit_code}
	install_signal_reporting(state)
	emit("start", environ={k: v for k, v in os.environ.items()
			       if k.startswith("HANDOFF_") or k == "LD_PRELOAD"})
	if args.scenario == "inspect":
		return probe_inspect(args, state)
	if args.scenario == "flags":
		return probe_flags(args, state)
	if args.scenario == "emfile":
		return probe_emfile(args, state)
	if args.scenario == "workers":
		return probe_workers(args, state)

	if args.receive is not None:
		channel = socket.socket(fileno=args.receive)
		_, fds, _, _ = socket.recv_fds(channel, 64, 1)
		channel.close()
		args.inherit = fds[0]
	if args.inherit is not None:
		# A new program image or process: the listener arrives as a bare
		# descriptor.
		if args.fromfd:
			sock = socket.fromfd(args.inherit, socket.AF_INET, socket.SOCK_STREAM)
			os.close(args.inherit)
			sock.listen(16)
		else:
			sock = socket.socket(fileno=args.inherit)
		family = sock.family
		emit("inherited", family=int(family), type=int(sock.type),
		     getsockname=list(sock.getsockname()[:2]), options=read_options(sock),
		     flags=fd_flags(sock.fileno()))
	else:
		sock, family, address = make_listener(args)
		if args.nonblocking:
			# Also inheritable, the less common FD_CLOEXEC state.
			sock.setblocking(False)
			sock.set_inheritable(True)
		sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
		sock.bind(address)
		sock.listen(16)
		sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 5)
		first = attempt(lambda: sock.accept()) if args.nonblocking else None
		emit("listening", flags=fd_flags(sock.fileno()),
		     first_accept=first if isinstance(first, str) else None)
	serve_forever([(sock, "swapped")], state, args)
	emit("stopped", eagain=state["eagain"])
	sys.exit(args.exit_code)


# ---- the test side ----

def terminate(proc, timeout=STOP_TIMEOUT):
	"""SIGTERM to a running process and wait for it; SIGKILL if it has not
	exited within timeout. False if it had to be killed."""
	if proc.poll() is None:
		proc.send_signal(signal.SIGTERM)
		try:
			proc.wait(timeout)
		except subprocess.TimeoutExpired:
			proc.kill()
			proc.wait(timeout)
			return False
	return True


class HandoffRun:
	"""A `handoff run` process (build/asan/handoff) with its stdout and
	stderr in files; stopped by PID and checked for sanitizer reports."""

	def __init__(self, hx, label, names, ports, program, wait=None, runtime_dir=None,
		     env=None):
		self.label = label
		self.stdout_path = hx.dir / f"run-{label}.stdout"
		self.stderr_path = hx.dir / f"run-{label}.stderr"
		argv = [str(HANDOFF), "run"]
		for name in names:
			argv += ["--name", name]
		for port in ports:
			argv += ["--port", str(port)]
		argv += ["--runtime-dir", str(runtime_dir or hx.runtime_dir)]
		if wait is not None:
			argv += ["--wait", str(wait)]
		argv += ["--"] + [str(a) for a in program]
		full_env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
				PYTHONDONTWRITEBYTECODE="1")
		full_env.update(env or {})
		with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
			self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
						     stderr=err, env=full_env)

	@property
	def pid(self):
		return self.proc.pid

	def stderr(self):
		return read_text(self.stderr_path)

	def events(self, kind=None):
		out = []
		for line in read_text(self.stdout_path).splitlines():
			try:
				record = json.loads(line)
			except ValueError:
				continue
			if kind is None or record.get("event") == kind:
				out.append(record)
		return out

	def wait_event(self, kind, count=1, timeout=IO_TIMEOUT):
		found = wait_for(lambda: len(self.events(kind)) >= count or self.proc.poll() is not None,
				 timeout)
		events = self.events(kind)
		if len(events) < count:
			raise AssertionError(f"no {kind!r} event (x{count}) from {self.label} within "
					     f"{timeout}s (exited: {self.proc.poll()}, wait: {found}):\n"
					     f"stdout:\n{read_text(self.stdout_path)}\nstderr:\n{self.stderr()}")
		return events[count - 1]

	def wait_stderr(self, text, timeout=IO_TIMEOUT):
		if not wait_for(lambda: text in self.stderr(), timeout):
			raise AssertionError(f"{self.label}: no {text!r} on stderr within {timeout}s:\n"
					     f"{self.stderr()}")

	def wait_exit(self, timeout=STOP_TIMEOUT):
		return self.proc.wait(timeout)

	def stop(self):
		"""SIGTERM (passed on to the server), wait; returns problems found."""
		if not terminate(self.proc):
			return [f"handoff run {self.label} ignored SIGTERM"]
		findings = sanitizer_findings(self.stderr())
		if findings:
			return [f"sanitizer reports from handoff run {self.label}:\n" + "\n".join(findings)]
		return []


def probe_command(port, *options):
	return [PYTHON, str(HELPERS), "probe", "--port", str(port), *[str(o) for o in options]]


def json_body(response):
	assert response.status == 200, response.status
	return json.loads(response.body)


def names_files(runtime_dir):
	"""The names files of every registration in RUNDIR/upstreams: ID/ID.names
	(libhandoff's own directory per registration) and the older flat ID.names."""
	upstreams = Path(runtime_dir) / "upstreams"
	return sorted([*upstreams.glob("*/*.names"), *upstreams.glob("*.names")])


def upstream_ids(runtime_dir):
	"""IDs of the registrations in RUNDIR/upstreams."""
	return sorted(p.name[:-len(".names")] for p in names_files(runtime_dir))


if __name__ == "__main__":
	if len(sys.argv) < 2 or sys.argv[1] != "probe":
		sys.exit("usage: preload_helpers.py probe --port PORT [options]")
	probe_main(sys.argv[2:])
