# abuse_helpers.py - mixed client load, raw TLS hellos, daemon resource readings and (run as a script) the local-user registration attacks for test_abuse.py.
"""Imported, this gives test_abuse.py:

MixedLoad   threads of real clients (python ssl, http.client) that run until
            stopped: new TLS connections to example upstreams, new plain-HTTP
            and keep-alive requests to nginx under `handoff run`, checksummed
            bulk downloads, and requests through the TCP relay to another
            nginx. Every request is recorded; a kind can be paused.
tls_hello   a ClientHello built byte by byte, so a test can put any bytes in
            the server name (NUL, '/', 300 bytes) or pad it past 16 KiB.
fd_count, rss_kib, log_problems   what the daemon holds and what it wrote.

Run as a script ("abuse_helpers.py attack KIND ...", under setpriv as user
nobody) it is a local user attacking upstream registration in
RUNDIR/upstreams: forged log lines in file names, claims of names it was
not granted, thousands of registrations, a socket swapped for a symlink to
another socket while the daemon registers it, and files planted under
another user's ID. Each attack prints one JSON line and, where it holds
resources, waits for a line on stdin before removing its files."""
import hashlib
import http.client
import json
import os
import random
import re
import socket
import struct
import sys
import threading
import time
from pathlib import Path

HELPERS = Path(__file__).resolve()
PYTHON = "/usr/bin/python3"
NOBODY = ("nobody", "nogroup")

# ---- the daemon's resources and its logs ----


def fd_count(pid):
	return len(os.listdir(f"/proc/{pid}/fd"))


# The relay keeps up to 16 empty pipes (PIPE_POOL_MAX in src/relay.c) for
# the next relay: two descriptors each, not a leak.
PIPE_POOL_DESCRIPTORS = 2 * 16


def fd_count_without_pipes(pid):
	"""Open descriptors other than pipes, and the pipe ends apart."""
	links = []
	for fd in os.listdir(f"/proc/{pid}/fd"):
		try:
			links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
		except FileNotFoundError:
			pass
	pipes = sum(1 for link in links if link.startswith("pipe:"))
	return len(links) - pipes, pipes


def rss_kib(pid):
	match = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
	return int(match.group(1))


def alive(pid):
	try:
		os.kill(pid, 0)
	except ProcessLookupError:
		return False
	return True


ACCESS_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z client=\S+ ")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def forged_lines(pid):
	"""What the log-forging attack tries to make appear as lines of their
	own: the daemon's prefix and a registration it never made."""
	return (f"handoff[{pid}]: registered upstream x",
		f"handoff[{pid}]: registered upstream 1-0 names=a.example uid=0")


def log_problems(stderr_text, access_text, pid):
	"""Lines the daemon did not write as such: a diagnostics line without
	the daemon's prefix or starting with a forged text, an access-log line
	that does not start with its timestamp and client or holds two
	outcomes, and any control character (other than tab) in either."""
	prefix = f"handoff[{pid}]: "
	bad = []
	for line in stderr_text.split("\n")[:-1]:
		if (not line.startswith(prefix) or CONTROL.search(line)
		    or any(line.startswith(f) for f in forged_lines(pid))):
			bad.append(f"stderr: {line!r}")
	for line in access_text.split("\n")[:-1]:
		if not ACCESS_LINE.match(line) or CONTROL.search(line) or line.count(" outcome=") != 1:
			bad.append(f"access log: {line!r}")
	return bad


# ---- raw TLS ClientHello ----

def tls_hello(name=None, padding=0, name_last=False):
	"""A TLS 1.2/1.3-style ClientHello record sequence carrying name (bytes)
	as the SNI host name; padding adds a padding extension (type 21) of that
	many bytes, before the SNI if name_last. Records hold at most 16 KiB."""
	extensions = []
	if name is not None:
		entry = b"\x00" + struct.pack("!H", len(name)) + name
		extensions.append(struct.pack("!HH", 0, len(entry) + 2) + struct.pack("!H", len(entry)) + entry)
	if padding:
		pad = struct.pack("!HH", 21, padding) + bytes(padding)
		if name_last:
			extensions.insert(0, pad)
		else:
			extensions.append(pad)
	# supported_versions: TLS 1.3, TLS 1.2
	extensions.append(struct.pack("!HHB", 43, 5, 4) + b"\x03\x04\x03\x03")
	ext = b"".join(extensions)
	body = (b"\x03\x03" + os.urandom(32) + b"\x00" + struct.pack("!H", 4) + b"\x13\x01\x13\x02"
		+ b"\x01\x00" + struct.pack("!H", len(ext)) + ext)
	handshake = b"\x01" + len(body).to_bytes(3, "big") + body
	records = b""
	for i in range(0, len(handshake), 16384):
		chunk = handshake[i:i + 16384]
		records += b"\x16\x03\x01" + struct.pack("!H", len(chunk)) + chunk
	return records


# ---- the mixed load ----

class Kind:
	"""One kind of request: a function doing one request (raising or
	returning an error text on failure), a pause switch and a count of
	requests in flight."""

	def __init__(self, name, request, threads, per_call=1):
		self.name = name
		self.per_call = per_call	# HTTP requests one call makes
		self.request = request
		self.threads = threads
		self.running = threading.Event()
		self.running.set()
		self.in_flight = 0


class MixedLoad:
	"""Runs every kind in its own threads until stop(). results holds
	(kind, start, end, error or None) per request."""

	def __init__(self, kinds):
		self.kinds = {k.name: k for k in kinds}
		self.results = []
		self.lock = threading.Lock()
		self.stopping = threading.Event()
		self.workers = []

	def start(self):
		for kind in self.kinds.values():
			for _ in range(kind.threads):
				t = threading.Thread(target=self._work, args=(kind,), daemon=True)
				t.start()
				self.workers.append(t)
		return self

	def _work(self, kind):
		while not self.stopping.is_set():
			if not kind.running.wait(0.1):
				continue
			with self.lock:
				if not kind.running.is_set():
					continue
				kind.in_flight += 1
			start = time.monotonic()
			try:
				error = kind.request()
			except (OSError, ValueError, http.client.HTTPException, AssertionError) as e:
				error = f"{type(e).__name__}: {e}"
			with self.lock:
				kind.in_flight -= 1
				self.results.append((kind.name, start, time.monotonic(), error))

	def pause(self, names=None, timeout=30):
		"""Stop starting requests of these kinds (all by default) and wait
		until none is in flight."""
		chosen = [self.kinds[n] for n in (names or self.kinds)]
		with self.lock:
			for kind in chosen:
				kind.running.clear()
		deadline = time.monotonic() + timeout
		while any(k.in_flight for k in chosen) and time.monotonic() < deadline:
			time.sleep(0.01)
		assert not any(k.in_flight for k in chosen), "load requests still in flight after pausing"

	def resume(self, names=None):
		for name in names or self.kinds:
			self.kinds[name].running.set()

	def stop(self, timeout=60):
		self.stopping.set()
		for kind in self.kinds.values():
			kind.running.set()
		deadline = time.monotonic() + timeout
		for t in self.workers:
			t.join(max(0.1, deadline - time.monotonic()))
		assert not any(t.is_alive() for t in self.workers), "load threads did not finish"

	def snapshot(self):
		with self.lock:
			return list(self.results)

	def failures(self, since=None):
		return [r for r in self.snapshot() if r[3] is not None and (since is None or r[1] >= since)]

	def requests(self):
		"""HTTP requests made so far (a keep-alive call makes several)."""
		return sum(self.kinds[kind].per_call for kind, _, _, _ in self.snapshot())

	def counts(self):
		out = {}
		for kind, _, _, _ in self.snapshot():
			out[kind] = out.get(kind, 0) + 1
		return out


def expect_status(response, status=200):
	if response.status != status:
		return f"status {response.status}"
	return None


def keepalive_requests(port, host_header, path, expected_body, count):
	"""count GETs on one connection (http.client keeps it alive)."""
	conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
	try:
		for i in range(count):
			conn.request("GET", path, headers={"Host": host_header})
			response = conn.getresponse()
			body = response.read()
			if response.status != 200 or body != expected_body:
				return f"keep-alive request {i}: status {response.status}, body {body[:60]!r}"
			if response.will_close:
				return f"keep-alive request {i}: the server closed the connection"
	finally:
		conn.close()
	return None


def sha256(data):
	return hashlib.sha256(data).hexdigest()


# ---- the attacks (run as a script, as an unprivileged user) ----

def emit(**fields):
	print(json.dumps(fields), flush=True)


def bind_dgram(path):
	sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
	sock.bind(str(path))
	return sock


def write_names(directory, ident, text):
	"""ID.names written under a temporary name and renamed into place, as
	libhandoff does, so the daemon never reads half a file."""
	tmp = directory / f".{os.getpid()}.{abs(hash(ident))}.tmp"
	tmp.write_text(text)
	os.rename(tmp, directory / f"{ident}.names")


def attack_forge(directory, daemon_pid):
	"""IDs and names that carry a newline or control characters followed by
	text shaped like the daemon's own lines."""
	# Short enough for sun_path under the test's runtime directory.
	short, fake = forged_lines(daemon_pid)
	idents = [f"1\n{short}", f"2\r{short}", f"3\x1b[2K\r{short}"]
	socks = []
	for ident in idents:
		socks.append(bind_dgram(directory / f"{ident}.sock"))
		write_names(directory, ident, "a.example\n")
	ident = f"{os.getpid()}-forged"
	socks.append(bind_dgram(directory / f"{ident}.sock"))
	write_names(directory, ident, f"n.example\nx\r{fake}\n")
	ident = f"{os.getpid()}-escape"
	socks.append(bind_dgram(directory / f"{ident}.sock"))
	write_names(directory, ident, f"n\x1b[1mx.example\n")
	emit(attack="forge", ids=idents + [f"{os.getpid()}-forged", ident], tried=len(idents) + 2)
	return socks


def attack_ungranted(directory):
	ident = f"{os.getpid()}-ungranted"
	sock = bind_dgram(directory / f"{ident}.sock")
	write_names(directory, ident, "a.example\n")
	emit(attack="ungranted", ids=[ident], tried=1)
	return [sock]


def attack_slots(directory, count):
	"""count registrations of a granted name, each with a socket of its own."""
	socks = []
	idents = []
	for i in range(count):
		ident = f"{os.getpid()}-slot{i:05d}"
		socks.append(bind_dgram(directory / f"{ident}.sock"))
		write_names(directory, ident, "n.example\n")
		idents.append(ident)
	emit(attack="slots", ids=idents, tried=count)
	return socks


def spin(seconds):
	"""Busy-wait: sleep() cannot wait a few microseconds."""
	end = time.perf_counter() + seconds
	while time.perf_counter() < end:
		pass


def attack_symlink(directory, victim, attempts, flips):
	"""For each attempt: write ID.names, then keep replacing ID.sock, in
	turn, by the attacker's own bound socket (a hard link to it) and by a
	symbolic link to the victim's socket, so that the daemon's checks and
	its connect() may see different files; until the daemon has answered
	in ID.status, or for at most 15 ms (a daemon that rate-limits its
	answers may never write one). Ends with the real socket. Stops early
	after 12 s in all."""
	socks = []
	idents = []
	rng = random.Random(attempts)
	give_up = time.monotonic() + 12
	for i in range(attempts):
		if time.monotonic() > give_up:
			break
		ident = f"{os.getpid()}-swap{i:04d}"
		real = directory / f"{ident}.real"
		socks.append(bind_dgram(real))
		# 64 names: the most one upstream may claim, the most work for the
		# daemon between its checks of ID.sock and its connect().
		write_names(directory, ident, "n.example\n" + "".join(f"s{k}.n.example\n" for k in range(63)))
		target = directory / f"{ident}.sock"
		status = directory / f"{ident}.status"
		tmp_link = directory / f"{ident}.tl"
		tmp_real = directory / f"{ident}.tr"
		# The daemon wakes up on the rename of the real socket into place;
		# the symlink follows after a varying delay, so that over many
		# attempts it lands anywhere in the daemon's work on that event.
		until = time.monotonic() + 0.015
		for flip in range(flips):
			os.symlink(victim, tmp_link)
			os.link(real, tmp_real)
			os.rename(tmp_real, target)
			spin(rng.uniform(0, 80e-6))
			os.rename(tmp_link, target)
			spin(rng.uniform(0, 100e-6))
			if status.exists() or time.monotonic() > until:
				break
		os.link(real, tmp_real)
		os.rename(tmp_real, target)
		idents.append(ident)
	emit(attack="symlink", ids=idents, tried=len(idents))
	return socks


def attack_precreate(directory, ident, precious):
	"""Files under an ID that another user is going to bind: a names file
	and a status file that is a symlink to a file the attacker may not write."""
	write_names(directory, ident, "b.example\n")
	os.symlink(precious, directory / f"{ident}.status")
	emit(attack="precreate", ids=[ident], tried=1)
	return []


def remove_files(directory, idents):
	for ident in idents:
		for suffix in (".sock", ".names", ".status", ".real", ".tl", ".tr"):
			try:
				os.unlink(directory / f"{ident}{suffix}")
			except FileNotFoundError:
				pass


def attack_main(argv):
	kind, directory = argv[0], Path(argv[1])
	if kind == "forge":
		socks = attack_forge(directory, int(argv[2]))
	elif kind == "ungranted":
		socks = attack_ungranted(directory)
	elif kind == "slots":
		socks = attack_slots(directory, int(argv[2]))
	elif kind == "symlink":
		socks = attack_symlink(directory, argv[2], int(argv[3]), int(argv[4]))
	elif kind == "precreate":
		socks = attack_precreate(directory, argv[2], argv[3])
	else:
		sys.exit(f"unknown attack {kind}")
	# Hold the sockets until told to go (bounded), then clean up.
	sys.stdin.readline()
	for sock in socks:
		sock.close()
	emit(attack=kind, done=True)


def attacker_argv(*args):
	"""The command running one attack as user nobody."""
	user, group = NOBODY
	return ["setpriv", f"--reuid={user}", f"--regid={group}", "--clear-groups",
		PYTHON, str(HELPERS), "attack", *[str(a) for a in args]]


if __name__ == "__main__":
	if len(sys.argv) < 3 or sys.argv[1] != "attack":
		sys.exit("usage: abuse_helpers.py attack forge|ungranted|slots|symlink|precreate DIR ...")
	attack_main(sys.argv[2:])
