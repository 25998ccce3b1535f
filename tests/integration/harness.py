# harness.py - runs the daemon and example upstreams on loopback for the integration tests, plus small TLS/HTTP clients.
import io
import os
import re
import resource
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The sanitizer build unless HANDOFF_TEST_BUILD names another (e.g. "build").
BUILD = REPO / os.environ.get("HANDOFF_TEST_BUILD", "build/asan")
HANDOFF = BUILD / "handoff"
UPSTREAM = BUILD / "https-upstream"

# The ThreadSanitizer build of the daemon (make SANITIZE=thread), for the
# tests of its accepting threads.
HANDOFF_TSAN = REPO / "build/tsan/handoff"

SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error", "ThreadSanitizer")
DAEMON_ASAN_OPTIONS = "detect_leaks=1:abort_on_error=0"
# Upstreams are killed with SIGKILL or stopped mid-connection in some tests,
# so only their memory errors and undefined behaviour are checked, not leaks.
UPSTREAM_ASAN_OPTIONS = "detect_leaks=0:abort_on_error=0"

START_TIMEOUT = 15.0		# ASan binaries start slowly on a loaded machine
STOP_TIMEOUT = 15.0
REQUEST_TIMEOUT = 10.0

ACCESS_TOKEN = re.compile(r"(\w+)=(\S+)")


def wait_for(predicate, timeout, interval=0.02):
	"""Poll predicate until it returns something true or timeout seconds pass;
	returns the last value (falsy on timeout)."""
	deadline = time.monotonic() + timeout
	while True:
		value = predicate()
		if value or time.monotonic() >= deadline:
			return value
		time.sleep(interval)


def free_port(hosts=("127.0.0.1",)):
	"""A TCP port that is currently free on every address in hosts."""
	for _ in range(100):
		with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
			probe.bind(("127.0.0.1", 0))
			port = probe.getsockname()[1]
		if all(port_is_free(host, port) for host in hosts):
			return port
	raise RuntimeError("no free port found in 100 tries")


def port_is_free(host, port):
	family = socket.AF_INET6 if ":" in host else socket.AF_INET
	with socket.socket(family, socket.SOCK_STREAM) as probe:
		try:
			probe.bind((host, port))
		except OSError:
			return False
	return True


def read_text(path):
	try:
		return Path(path).read_text(errors="replace")
	except FileNotFoundError:
		return ""


def sanitizer_findings(text):
	return [line for line in text.splitlines() if any(m in line for m in SANITIZER_MARKERS)]


def daemon_ready(log_text):
	"""True once the daemon logged its ready line (not just "already")."""
	return re.search(r"\bready\b", log_text) is not None


def parse_access_line(line):
	"""key=value fields of one access-log line, or None for other log lines."""
	if " outcome=" not in line or " client=" not in line:
		return None
	return dict(ACCESS_TOKEN.findall(line))


class Daemon:
	"""One handoff daemon from build/asan, started with a config file; every
	start writes its stderr to a fresh file so restarts can be told apart."""

	def __init__(self, workdir, config_text, tag="handoff", nofile=None, env=None, binary=None):
		self.binary = binary or HANDOFF	# which build of the daemon
		self.workdir = Path(workdir)
		self.tag = tag
		self.nofile = nofile	# RLIMIT_NOFILE (soft = hard) for the daemon, or None
		self.env = dict(env or {})	# extra environment, applied over the defaults
		self.config_path = self.workdir / f"{tag}.conf"
		self.config_path.write_text(config_text)
		match = re.search(r"^\s*access-log\s+(/\S+)", config_text, re.M)
		self.access_path = Path(match.group(1)) if match else None
		self.proc = None
		self.runs = 0
		self.stderr_path = None
		self.problems = []

	def start(self, timeout=START_TIMEOUT):
		self.runs += 1
		self.stderr_path = self.workdir / f"{self.tag}.{self.runs}.stderr"
		env = dict(os.environ, ASAN_OPTIONS=DAEMON_ASAN_OPTIONS,
			   UBSAN_OPTIONS="print_stacktrace=1", TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1")
		env.update(self.env)
		limit = self.nofile

		def set_limit():
			if limit is not None:
				resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

		with open(self.stderr_path, "wb") as err:
			self.proc = subprocess.Popen([str(self.binary), "serve", "-c", str(self.config_path)],
						     stdin=subprocess.DEVNULL, stdout=err, stderr=err,
						     env=env, preexec_fn=set_limit)
		ready = wait_for(lambda: daemon_ready(self.log()) or self.proc.poll() is not None, timeout)
		if self.proc.poll() is not None or not ready or not daemon_ready(self.log()):
			self.kill()
			raise AssertionError(f"daemon did not become ready within {timeout}s:\n{self.log()}")
		return self

	@property
	def pid(self):
		return self.proc.pid

	def log(self):
		return read_text(self.stderr_path) if self.stderr_path else ""

	def access_records(self):
		"""Parsed access-log lines, from the file if configured, else from
		this run's stderr."""
		text = read_text(self.access_path) if self.access_path else self.log()
		return [r for r in map(parse_access_line, text.splitlines()) if r]

	def wait_access(self, predicate, count=1, timeout=5.0):
		"""Wait until at least count access records satisfy predicate; returns them."""
		def matching():
			return [r for r in self.access_records() if predicate(r)]

		wait_for(lambda: len(matching()) >= count, timeout)
		records = matching()
		if len(records) < count:
			raise AssertionError(f"expected {count} matching access-log lines within {timeout}s, "
					     f"found {len(records)}; log:\n{self.tail()}")
		return records

	def wait_log(self, pattern, timeout=5.0, count=1):
		regex = re.compile(pattern)
		found = wait_for(lambda: len(regex.findall(self.log())) >= count, timeout)
		if not found:
			raise AssertionError(f"daemon log has no {pattern!r} (x{count}) within {timeout}s:\n{self.tail()}")

	def tail(self, lines=60):
		return "\n".join(self.log().splitlines()[-lines:])

	def stop(self):
		"""SIGTERM, then check the exit status and sanitizer output; returns
		the problems found (also remembered in self.problems)."""
		problems = []
		if self.proc is not None and self.proc.poll() is None:
			self.proc.send_signal(signal.SIGTERM)
			try:
				self.proc.wait(STOP_TIMEOUT)
			except subprocess.TimeoutExpired:
				problems.append(f"daemon pid {self.pid} did not exit within {STOP_TIMEOUT}s of SIGTERM")
				self.kill()
		if self.proc is not None:
			if self.proc.returncode != 0:
				problems.append(f"daemon exited with status {self.proc.returncode}, expected 0")
			findings = sanitizer_findings(self.log())
			if findings:
				problems.append("sanitizer reports in daemon stderr:\n" + "\n".join(findings))
			# EBADF always means the daemon used a descriptor it had closed.
			bad_fd = [line for line in self.log().splitlines() if "Bad file descriptor" in line]
			if bad_fd:
				problems.append("the daemon used a closed descriptor:\n" + "\n".join(bad_fd))
			if problems:
				problems.append(f"daemon stderr ({self.stderr_path}):\n{self.tail(80)}")
			self.proc = None
		self.problems.extend(problems)
		return problems

	def kill(self):
		if self.proc is not None and self.proc.poll() is None:
			self.proc.kill()
			self.proc.wait(STOP_TIMEOUT)


class Upstream:
	"""One build/asan/https-upstream, optionally run as another user via setpriv."""

	def __init__(self, workdir, runtime_dir, names, cert, key, label, user=None):
		self.names = list(names)
		self.label = label
		self.stdout_path = Path(workdir) / f"upstream-{label}.stdout"
		self.stderr_path = Path(workdir) / f"upstream-{label}.stderr"
		argv = [str(UPSTREAM)]
		for name in self.names:
			argv += ["--name", name]
		argv += ["--cert", str(cert), "--key", str(key), "--runtime-dir", str(runtime_dir),
			 "--label", label]
		if user is not None:
			user_name, group_name = user
			argv = ["setpriv", f"--reuid={user_name}", f"--regid={group_name}",
				"--clear-groups"] + argv
		env = dict(os.environ, ASAN_OPTIONS=UPSTREAM_ASAN_OPTIONS)
		env.pop("HANDOFF_RUNTIME_DIR", None)
		with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
			self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
						     stderr=err, env=env)
		ready = wait_for(lambda: "ready" in read_text(self.stdout_path)
				 or self.proc.poll() is not None, START_TIMEOUT)
		if not ready or "ready" not in read_text(self.stdout_path):
			self.kill()
			raise AssertionError(f"upstream {label} not ready within {START_TIMEOUT}s "
					     f"(status {self.proc.returncode}):\n{read_text(self.stderr_path)}")

	@property
	def pid(self):
		return self.proc.pid

	def signal(self, signo):
		self.proc.send_signal(signo)

	def terminate(self):
		"""SIGTERM (after SIGCONT, in case a test stopped it) and wait;
		returns the exit status."""
		if self.proc.poll() is None:
			self.proc.send_signal(signal.SIGCONT)
			self.proc.send_signal(signal.SIGTERM)
			try:
				self.proc.wait(STOP_TIMEOUT)
			except subprocess.TimeoutExpired:
				self.kill()
		return self.proc.returncode

	def kill(self):
		if self.proc.poll() is None:
			self.proc.send_signal(signal.SIGCONT)
			self.proc.kill()
			self.proc.wait(STOP_TIMEOUT)

	def problems(self):
		findings = sanitizer_findings(read_text(self.stderr_path))
		if findings:
			return [f"sanitizer reports in upstream {self.label} stderr:\n" + "\n".join(findings)]
		return []


class Harness:
	"""Per-test state: a work directory (traversable by nobody), a runtime
	directory, and every process started, all stopped by PID at teardown."""

	def __init__(self, workdir, certs):
		self.dir = Path(workdir)
		self.runtime_dir = self.dir / "run"
		self.certs = certs
		self.daemons = []
		self.upstreams = []

	def config(self, listeners, grants=("* to self",), **settings):
		"""Config text: settings like peek_timeout="1s" become directives."""
		lines = [f"runtime-dir {self.runtime_dir}"]
		for key, value in settings.items():
			lines.append(f"{key.replace('_', '-')} {value}")
		lines += [f"listen {spec}" for spec in listeners]
		lines += [f"grant {spec}" for spec in grants]
		return "\n".join(lines) + "\n"

	def daemon(self, config_text, tag="handoff", nofile=None, env=None, binary=None):
		d = Daemon(self.dir, config_text, tag, nofile, env, binary)
		self.daemons.append(d)
		return d.start()

	def upstream(self, names, label, cert_name=None, user=None, daemon=None, expect="registered"):
		"""Start an upstream for names using the certificate of cert_name
		(default: the first name). With a daemon, wait until it logs the
		registration (expect="registered") or the refusal ("refused")."""
		cert, key = self.certs.pair(cert_name or names[0])
		up = Upstream(self.dir, self.runtime_dir, names, cert, key, label, user)
		self.upstreams.append(up)
		if daemon is not None and expect:
			daemon.wait_log(rf"{expect} upstream {up.pid}-", timeout=5.0)
		return up

	def close(self):
		problems = []
		for up in self.upstreams:
			running = up.proc.poll() is None
			status = up.terminate()
			if running and status != 0:
				problems.append(f"upstream {up.label} exited with status {status} on SIGTERM:\n"
						f"{read_text(up.stderr_path)[-3000:]}")
			problems += up.problems()
		for d in self.daemons:
			d.stop()
			problems += d.problems
		return problems


class Response:
	def __init__(self, status, headers, body, cert_subject=None):
		self.status = status
		self.headers = headers
		self.body = body
		self.cert_subject = cert_subject

	@property
	def fields(self):
		"""The example upstream's key=value page as a dict."""
		out = {}
		for line in self.body.decode(errors="replace").splitlines():
			key, sep, value = line.partition("=")
			if sep:
				out[key] = value
		return out


def read_response(stream):
	"""One HTTP/1.1 response from a binary file object."""
	status_line = stream.readline(65536)
	if not status_line:
		raise ConnectionError("connection closed before a response")
	parts = status_line.decode("latin-1").split(" ", 2)
	status = int(parts[1])
	headers = {}
	while True:
		line = stream.readline(65536)
		if line in (b"\r\n", b"\n", b""):
			break
		key, _, value = line.decode("latin-1").partition(":")
		headers[key.strip().lower()] = value.strip()
	if "content-length" in headers:
		length = int(headers["content-length"])
		body = stream.read(length)
		if len(body) != length:
			raise ConnectionError(f"body truncated: {len(body)} of {length} bytes")
	else:
		body = stream.read()
	return Response(status, headers, body)


def request_bytes(host_header, path="/", close=True):
	head = f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: handoff-tests\r\n"
	if close:
		head += "Connection: close\r\n"
	return (head + "\r\n").encode()


def tls_context(certs, check_hostname=True):
	ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
	ctx.load_verify_locations(str(certs.bundle))
	ctx.check_hostname = check_hostname
	return ctx


def received_subject_cn(s_client_output):
	"""CN of the certificate the server actually sent, from openssl
	s_client's "Certificate chain" section (depth 0 subject)."""
	match = re.search(r"Certificate chain\n\s*0 s:\s*CN\s*=\s*(\S+)", s_client_output)
	return match.group(1) if match else None


def subject_cn(cert):
	for rdn in cert.get("subject", ()):
		for key, value in rdn:
			if key == "commonName":
				return value
	return None


def connect(port, host="127.0.0.1", source_port=None, timeout=REQUEST_TIMEOUT):
	family = socket.AF_INET6 if ":" in host else socket.AF_INET
	sock = socket.socket(family, socket.SOCK_STREAM)
	sock.settimeout(timeout)
	try:
		if source_port is not None:
			sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
			sock.bind((host, source_port))
		sock.connect((host, port))
	except BaseException:
		sock.close()
		raise
	return sock


def https_get(certs, port, name, path="/", host="127.0.0.1", sni=True, check_hostname=None,
	      source_port=None, timeout=REQUEST_TIMEOUT, alpn=None, on_connect=None):
	"""GET over TLS. name is the SNI (unless sni=False) and the Host header;
	the server certificate is verified against the test CA bundle.
	on_connect, if given, is called once the TCP connection is up."""
	if check_hostname is None:
		check_hostname = sni
	ctx = tls_context(certs, check_hostname)
	if alpn:
		ctx.set_alpn_protocols(alpn)
	sock = connect(port, host, source_port, timeout)
	if on_connect is not None:
		on_connect()
	with ctx.wrap_socket(sock, server_hostname=name if sni else None) as tls:
		tls.sendall(request_bytes(name or "localhost", path))
		with tls.makefile("rb") as stream:
			response = read_response(stream)
		response.cert_subject = subject_cn(tls.getpeercert())
		return response


def http_get(port, host_header, path="/", host="127.0.0.1", source_port=None,
	     timeout=REQUEST_TIMEOUT):
	with connect(port, host, source_port, timeout) as sock:
		sock.sendall(request_bytes(host_header, path))
		with sock.makefile("rb") as stream:
			return read_response(stream)


def tls_failure(certs, port, name, host="127.0.0.1", timeout=REQUEST_TIMEOUT):
	"""Try a TLS request that is expected to fail; returns the SSL error
	reason (e.g. TLSV1_UNRECOGNIZED_NAME) or a short description, or None
	if the request succeeded."""
	try:
		https_get(certs, port, name, host=host, timeout=timeout)
	except ssl.SSLError as e:
		return e.reason or str(e)
	except (ConnectionError, OSError) as e:
		return type(e).__name__
	return None


def wait_closed(sock, timeout):
	"""Block until the peer closes sock (EOF or reset) or timeout passes;
	returns the seconds waited, or None if still open."""
	start = time.monotonic()
	sock.settimeout(timeout)
	try:
		while time.monotonic() - start < timeout:
			data = sock.recv(4096)
			if not data:
				return time.monotonic() - start
	except (ConnectionResetError, BrokenPipeError):
		return time.monotonic() - start
	except socket.timeout:
		return None
	return None


class MemoryTLSClient:
	"""A TLS client driven through ssl.MemoryBIO, so the test decides exactly
	how the bytes reach the socket (one byte per send, odd record splits)."""

	def __init__(self, certs, sock, server_name, check_hostname=True):
		ctx = tls_context(certs, check_hostname)
		self.sock = sock
		self.incoming = ssl.MemoryBIO()
		self.outgoing = ssl.MemoryBIO()
		self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=server_name)

	def client_hello(self):
		"""The ClientHello bytes (first flight), not yet sent."""
		try:
			self.obj.do_handshake()
		except ssl.SSLWantReadError:
			pass
		return self.outgoing.read()

	def _flush(self):
		data = self.outgoing.read()
		if data:
			self.sock.sendall(data)

	def _pump(self, operation):
		"""Run operation, moving bytes between the socket and the BIOs until
		it stops wanting input; bounded by the socket timeout and 1000 rounds."""
		for _ in range(1000):
			try:
				result = operation()
				self._flush()
				return result
			except ssl.SSLWantReadError:
				self._flush()
				data = self.sock.recv(65536)
				if not data:
					self.incoming.write_eof()
				else:
					self.incoming.write(data)
		raise AssertionError("TLS exchange did not finish in 1000 rounds")

	def handshake(self):
		self._pump(self.obj.do_handshake)

	def request(self, host_header, path="/"):
		self._pump(lambda: self.obj.write(request_bytes(host_header, path)))
		body = bytearray()
		for _ in range(100000):
			try:
				chunk = self._pump(lambda: self.obj.read(65536))
			except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
				break
			if not chunk:
				break
			body += chunk
		return read_response(io.BytesIO(bytes(body)))

	def peer_subject(self):
		return subject_cn(self.obj.getpeercert())
