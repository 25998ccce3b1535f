# abuse_inputs.py - the bad inputs test_abuse.py sends to a running daemon: fuzz corpora, crafted hellos and heads, slowloris, relay holders, registration attacks as nobody.
import json
import os
import random
import socket
import statistics
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from abuse_helpers import attacker_argv, fd_count, remove_files, rss_kib, tls_hello
from harness import MemoryTLSClient, connect, https_get, request_bytes, wait_for
from test_limits import close_all

SSH_BANNER = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"
FORGED_CLIENT = "203.0.113.9"
SLOWLORIS_CLIENTS = 1500
SLOWLORIS_SOURCES = 30		# 50 a source: under max-per-ip's default of 64
SLOWLORIS_SECONDS = 5
LATENCY_SAMPLES = 15


class BadInput:
	"""Sends bad inputs and remembers, by local port, which ones must not
	be handed off or relayed; counts every input tried."""

	def __init__(self, d):
		self.d = d
		self.tried = 0
		self.problems = []
		self.must_not_route = {}	# "ADDR:PORT" -> description

	def send(self, port, data, what, source="127.0.0.1", route_ok=False, timeout=10, shut=True):
		"""Send data, half-close, and wait for the daemon to close (clean:
		EOF, an alert or an HTTP error, never a hang). Returns the bytes
		received."""
		self.tried += 1
		sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
		sock.settimeout(timeout)
		received = b""
		try:
			sock.bind((source, 0))
			sock.connect(("127.0.0.1", port))
			local = "%s:%d" % sock.getsockname()
			if not route_ok:
				self.must_not_route[local] = what
			sock.sendall(data)
			if shut:
				try:
					sock.shutdown(socket.SHUT_WR)
				except OSError:
					return received	# already closed by the daemon
			deadline = time.monotonic() + timeout
			while time.monotonic() < deadline:
				chunk = sock.recv(65536)
				if not chunk:
					return received
				received += chunk
			self.problems.append(f"{what}: not closed within {timeout}s")
		except socket.timeout:
			self.problems.append(f"{what}: not closed within {timeout}s")
		except (ConnectionResetError, BrokenPipeError):
			pass	# a reset after unread input is a close too
		finally:
			sock.close()
		return received

	def check_routes(self):
		"""Every input that must not reach an upstream was logged with
		another outcome."""
		clients = set(self.must_not_route)
		found = wait_for(lambda: clients <= {r["client"] for r in self.d.access_records()}, 15)
		records = {r["client"]: r for r in self.d.access_records() if r["client"] in clients}
		if not found:
			missing = sorted(clients - set(records))
			self.problems.append(f"{len(missing)} bad inputs never logged: "
					     f"{[self.must_not_route[c] for c in missing][:10]}")
		for client, record in records.items():
			if record["outcome"] in ("handoff", "relayed"):
				self.problems.append(f"{self.must_not_route[client]}: {record['outcome']} to "
						     f"{record['upstream']} (name={record['name']})")


def replay_corpora(bad, tls_port, http_port, proxy_port):
	corpus = Path(__file__).resolve().parents[1] / "fuzz" / "corpus"
	jobs = []
	def samples(kind):
		return [p for p in sorted((corpus / kind).iterdir()) if not p.name.startswith(".")]
	for sample in samples("tls_hello"):
		jobs.append((tls_port, sample.read_bytes(), f"corpus tls_hello/{sample.name}", "127.0.0.1"))
	for sample in samples("http_host"):
		jobs.append((http_port, sample.read_bytes(), f"corpus http_host/{sample.name}", "127.0.0.1"))
	for sample in samples("proxy_proto"):
		# From the trusted balancer address, so the header is parsed.
		jobs.append((proxy_port, sample.read_bytes(), f"corpus proxy_proto/{sample.name}", "127.0.0.9"))
	with ThreadPoolExecutor(max_workers=8) as pool:
		list(pool.map(lambda j: bad.send(j[0], j[1], j[2], source=j[3], route_ok=True), jobs))
	return len(jobs)


def host_request(host, extra=b""):
	return b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n" + extra + b"Connection: close\r\n\r\n"


def crafted_inputs(bad, certs, tls_port, http_port, proxy_port):
	real_hello = MemoryTLSClient(certs, socket.socket(), "a.example").client_hello()
	rng = random.Random(20261206)
	# 16 KiB + 1: the name only after the first 16 KiB.
	bad.send(tls_port, tls_hello(b"a.example", padding=16385 - 80, name_last=True)[:16385 + 10],
		 "TLS hello of 16 KiB + 1")
	bad.send(http_port, b"GET / HTTP/1.1\r\nX-Pad: " + b"p" * 16385 + b"\r\nHost: a.example\r\n\r\n",
		 "HTTP head of 16 KiB + 1")
	bad.send(http_port, real_hello, "TLS hello on the HTTP port")
	bad.send(tls_port, request_bytes("a.example"), "HTTP request on the TLS port")
	bad.send(tls_port, SSH_BANNER, "SSH banner on the TLS port")
	bad.send(http_port, SSH_BANNER, "SSH banner on the HTTP port")
	for i in range(40):
		blob = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 4096)))
		bad.send(tls_port if i % 2 else http_port, blob, f"random garbage #{i} ({len(blob)} bytes)")
	names = {"'..'": b"a..example", "'/'": b"a.example/..", "NUL": b"a.example\x00b",
		 "300 bytes": b".".join([b"a" * 59] * 5)}
	for what, name in names.items():
		bad.send(tls_port, tls_hello(name), f"SNI with {what}")
		bad.send(http_port, host_request(name), f"Host with {what}")
	# Upper case is a valid spelling of a.example: served by its upstream.
	upper = bad.send(http_port, host_request(b"A.EXAMPLE"), "Host in upper case", route_ok=True)
	if b"label=site-a" not in upper:
		bad.problems.append(f"Host: A.EXAMPLE was not served by a.example's upstream: {upper[:80]!r}")
	# The request target names another site than Host: an upstream obeying
	# RFC 9112 serves the target's site, so a.example's must not get it.
	absolute = bad.send(http_port, b"GET http://b.example/ HTTP/1.1\r\nHost: a.example\r\n"
			    b"Connection: close\r\n\r\n", "absolute-form target for another Host",
			    route_ok=True)
	if b"label=site-a" in absolute:
		bad.problems.append("GET http://b.example/ with Host: a.example went to a.example's upstream")
	bad.send(http_port, host_request(b"a.example", b"Host: b.example\r\n"), "two Host headers")
	# n.example is granted (to nobody) but no upstream serves it now: the
	# listener's default must not get a name that belongs to someone.
	bad.send(http_port, host_request(b"n.example"), "granted name without an upstream (HTTP)")
	bad.send(tls_port, tls_hello(b"n.example"), "granted name without an upstream (TLS)")
	# PROXY headers from sources that are not trusted.
	v1 = f"PROXY TCP4 {FORGED_CLIENT} 127.0.0.1 4444 80\r\n".encode()
	bad.send(http_port, v1 + host_request(b"a.example"), "PROXY v1 on a listener without accept-proxy")
	bad.send(tls_port, v1 + real_hello, "PROXY v1 before a hello without accept-proxy")
	bad.send(proxy_port, v1 + host_request(b"a.example"), "PROXY v1 from an untrusted source")
	forged = [r for r in bad.d.access_records() if r["client"].startswith(FORGED_CLIENT + ":")]
	if forged:
		bad.problems.append(f"an untrusted PROXY header set the client address: {forged}")


def held_slowloris(tls_port, http_port, hello):
	"""SLOWLORIS_CLIENTS connections from SLOWLORIS_SOURCES addresses, each
	sending one byte of an unfinished hello or request head a second."""
	socks = []
	for i in range(SLOWLORIS_CLIENTS):
		sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
		sock.settimeout(10)
		sock.bind((f"127.0.1.{1 + i % SLOWLORIS_SOURCES}", 0))
		sock.connect(("127.0.0.1", tls_port if i % 2 else http_port))
		socks.append(sock)
	return socks


def trickle(socks, hello, head, seconds, stats):
	for second in range(seconds):
		started = time.monotonic()
		for i, sock in enumerate(socks):
			data = hello if i % 2 else head
			try:
				sock.send(data[second:second + 1])
			except OSError:
				stats["cut"] = stats.get("cut", 0) + 1
		time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))


def legit_latencies(certs, port, count):
	out = []
	for _ in range(count):
		started = time.monotonic()
		assert https_get(certs, port, "a.example").fields["label"] == "site-a"
		out.append(time.monotonic() - started)
	return out


def slowloris(bad, d, certs, tls_port, http_port, baseline_rss):
	before = legit_latencies(certs, tls_port, LATENCY_SAMPLES)
	hello = tls_hello(b"a.example")
	head = b"GET / HTTP/1.1\r\nHost: a.example\r\nX-Slow: 1\r\n"
	socks = held_slowloris(tls_port, http_port, hello)
	bad.tried += len(socks)
	stats = {}
	peak = {"rss": 0, "fds": 0}
	try:
		trickler = threading.Thread(target=trickle, args=(socks, hello, head, SLOWLORIS_SECONDS, stats))
		trickler.start()
		during = []
		while trickler.is_alive() and len(during) < 4 * LATENCY_SAMPLES:
			during += legit_latencies(certs, tls_port, 1)
			peak["rss"] = max(peak["rss"], rss_kib(d.pid))
			peak["fds"] = max(peak["fds"], fd_count(d.pid))
		trickler.join(60)
	finally:
		close_all(socks)
	if stats.get("cut"):
		bad.problems.append(f"slowloris: {stats['cut']} trickled bytes failed before the peek deadline")
	if peak["fds"] < SLOWLORIS_CLIENTS:
		bad.problems.append(f"slowloris: the daemon held only {peak['fds']} descriptors, "
				    f"fewer than the {SLOWLORIS_CLIENTS} clients")
	growth = peak["rss"] - baseline_rss
	if growth > 16 * SLOWLORIS_CLIENTS:
		bad.problems.append(f"slowloris: RSS grew by {growth} KiB for {SLOWLORIS_CLIENTS} clients "
				    f"(more than 16 KiB each)")
	ratio = statistics.median(during) / statistics.median(before)
	if not during or ratio > 10:
		bad.problems.append(f"slowloris: legitimate median latency {ratio:.1f}x the unloaded one "
				    f"({statistics.median(before) * 1000:.1f} ms before)")
	return {"peak_rss": peak["rss"], "peak_fds": peak["fds"], "ratio": ratio,
		"before_ms": statistics.median(before) * 1000, "during": len(during)}


def run_attacker(args, timeout=60):
	"""Start an attack as nobody; returns (process, the JSON line it printed)."""
	proc = subprocess.Popen(attacker_argv(*args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
				stderr=subprocess.PIPE, text=True)
	out = []
	reader = threading.Thread(target=lambda: out.append(proc.stdout.readline()))
	reader.start()
	reader.join(timeout)
	line = out[0] if out else ""
	if not line:
		proc.kill()
		proc.wait(10)
		raise AssertionError(f"attacker {args[0]} printed nothing: {proc.stderr.read()[-2000:]}")
	return proc, json.loads(line)


def finish_attacker(proc, directory, ids):
	try:
		proc.stdin.write("\n")
		proc.stdin.flush()
	except BrokenPipeError:
		pass
	proc.wait(30)
	remove_files(directory, ids)


def status_of(upstreams, ident):
	"""The daemon's answer in upstreams/ID.status ("registered" or
	"refused: why"), or None while there is none (or only a planted symlink)."""
	path = upstreams / f"{ident}.status"
	if path.is_symlink():
		return None
	try:
		return path.read_text().strip() or None
	except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
		return None


def decided(d, ids, upstreams):
	"""How many of ids the daemon has answered: a status file, or a log
	line (refusals in the log may be rate-limited, status files are not)."""
	text = d.log()
	return sum(1 for i in ids if status_of(upstreams, i) is not None
		   or f"upstream {i}:" in text or f"upstream {i} " in text)


def settle(d, ids, upstreams, timeout, quiet=2.0):
	"""Wait until the daemon has answered every one of ids, or its log and
	the answers have not changed for quiet seconds (a daemon may answer
	claims beyond a per-user quota only in a rate-limited way)."""
	deadline = time.monotonic() + timeout
	last, since = None, time.monotonic()
	while time.monotonic() < deadline:
		answered = decided(d, ids, upstreams)
		if answered == len(ids):
			return
		state = (answered, len(d.log()))
		if state != last:
			last, since = state, time.monotonic()
		elif time.monotonic() - since >= quiet:
			return
		time.sleep(0.2)


def refused(d, ident, upstreams):
	status = status_of(upstreams, ident)
	return (status is not None and status.startswith("refused")) or f"refused upstream {ident}:" in d.log()


# Under max-per-ip (64), so that the peek-phase bound is not what refuses.
RELAY_HOLDERS = 60


def relay_holders(bad, http_port):
	"""RELAY_HOLDERS relayed connections from one address to a target that
	waits for the client's end of stream: each holds two descriptors in
	the daemon for as long as the client likes, so the daemon must refuse
	them past a per-address bound."""
	socks = []
	for _ in range(RELAY_HOLDERS):
		sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
		sock.settimeout(10)
		sock.bind(("127.0.2.1", 0))
		sock.connect(("127.0.0.1", http_port))
		sock.sendall(host_request(b"hold.example"))
		socks.append(sock)
	bad.tried += len(socks)
	time.sleep(2.0)
	try:
		still_open = 0
		for sock in socks:
			sock.setblocking(False)
			try:
				if sock.recv(1) == b"":
					continue
			except BlockingIOError:
				still_open += 1
			except OSError:
				continue
	finally:
		close_all(socks)
	if still_open == RELAY_HOLDERS:
		bad.problems.append(f"all {RELAY_HOLDERS} relayed connections from one address were held: "
				    f"no per-address bound on relays")
	return still_open


def registration_attacks(bad, hx, d, certs, tls_port, http_port):
	upstreams = hx.runtime_dir / "upstreams"
	problems = bad.problems
	phases = [("start", time.monotonic())]
	# Log forging through file names and names files.
	proc, info = run_attacker(["forge", upstreams, d.pid])
	bad.tried += info["tried"]
	wait_for(lambda: decided(d, info["ids"][-2:], upstreams) == 2, 10)
	time.sleep(0.5)
	finish_attacker(proc, upstreams, info["ids"])
	phases.append(("forge", time.monotonic()))
	# A name that is not granted to nobody.
	proc, info = run_attacker(["ungranted", upstreams])
	bad.tried += info["tried"]
	if not wait_for(lambda: refused(d, info["ids"][0], upstreams), 10):
		problems.append("a claim of a.example by nobody was not refused")
	labels = {https_get(certs, tls_port, "a.example").fields["label"] for _ in range(5)}
	if labels != {"site-a"}:
		problems.append(f"a.example served by {labels} after nobody claimed it")
	finish_attacker(proc, upstreams, info["ids"])
	# Thousands of registrations by one user, then a legitimate upstream.
	proc, info = run_attacker(["slots", upstreams, 4200], timeout=120)
	bad.tried += info["tried"]
	settle(d, info["ids"], upstreams, 30)
	try:
		late = hx.upstream(["y.apps.example"], "late", daemon=d)
		if https_get(certs, tls_port, "y.apps.example").fields["label"] != "late":
			problems.append("the legitimate upstream registered but did not get its connection")
	except AssertionError as e:
		late = hx.upstreams[-1]
		problems.append(f"a legitimate upstream could not register while nobody held "
				f"{info['tried']} registrations: {str(e).splitlines()[0]}")
	finish_attacker(proc, upstreams, info["ids"])
	late.terminate()
	phases.append(("slots", time.monotonic()))
	# A symlink to another socket swapped in while the daemon registers.
	victim_path = hx.dir / "victim.sock"
	victim = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
	victim.bind(str(victim_path))
	try:
		proc, info = run_attacker(["symlink", upstreams, victim_path, 500, 20000], timeout=120)
		bad.tried += info["tried"]
		settle(d, info["ids"], upstreams, 10)
		registered = sum(1 for i in info["ids"] if f"registered upstream {i} " in d.log())
		print(f"\n  symlink swaps: {registered} of {len(info['ids'])} registered, the rest refused")
		# Enough connections for n.example to reach every registered one.
		held = []
		for _ in range(2 * registered + 4):
			sock = connect(http_port, timeout=10)
			sock.sendall(request_bytes("n.example"))
			held.append(sock)
		wait_for(lambda: len([r for r in d.access_records() if r["name"] == "n.example"])
			 >= len(held), 15)
		close_all(held)
		victim.setblocking(False)
		try:
			message, fds, _, _ = socket.recv_fds(victim, 4096, 4)
			for fd in fds:
				os.close(fd)
			problems.append(f"the socket a symlink pointed at received a handoff "
					f"({len(message)} bytes, {len(fds)} descriptors)")
		except BlockingIOError:
			pass
		finish_attacker(proc, upstreams, info["ids"])
	finally:
		victim.close()
	phases.append(("symlink", time.monotonic()))
	# Files planted under an ID another user binds afterwards.
	precious = hx.dir / "precious"
	precious.write_text("precious\n")
	ident = f"{os.getpid()}-0123456789abcdef"
	proc, info = run_attacker(["precreate", upstreams, ident, precious])
	bad.tried += info["tried"]
	owner_socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
	owner_socket.bind(str(upstreams / f"{ident}.sock"))
	try:
		if not wait_for(lambda: refused(d, ident, upstreams), 10):
			problems.append("a names file planted by nobody under root's socket was not refused")
		if precious.read_text() != "precious\n" or precious.is_symlink():
			problems.append("the daemon wrote through a status symlink planted by nobody")
	finally:
		owner_socket.close()
		finish_attacker(proc, upstreams, info["ids"])
	labels = {https_get(certs, tls_port, "b.example").fields["label"] for _ in range(5)}
	if labels != {"site-b"}:
		problems.append(f"b.example served by {labels} after the planted files")
	phases.append(("precreate", time.monotonic()))
	print("  registration attacks took " + ", ".join(
		f"{name} {t - phases[i][1]:.1f}s" for i, (name, t) in enumerate(phases[1:])))


