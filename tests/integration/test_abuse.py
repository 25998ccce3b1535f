# test_abuse.py - load held for a fixed time, faults survived under that load, and bad input of every kind against one running daemon; each part prints one summary line (docs/reliability.md).
import http.client
import os
import signal
import socket
import subprocess
import threading
import json
import random
import statistics
import time
from pathlib import Path

import pytest

import harness
from abuse_helpers import (PIPE_POOL_DESCRIPTORS, MixedLoad, Kind, alive, fd_count_without_pipes, attacker_argv, expect_status, fd_count,
			   keepalive_requests, log_problems, remove_files, rss_kib, sha256, tls_hello)
from harness import (Daemon, MemoryTLSClient, Upstream, connect, free_port, http_get, https_get,
		     read_text, request_bytes, wait_for)
from relay_helpers import Processes, curl_sha256, write_random_file
from servers_helpers import Site, setup_nginx, setup_nginx_http
from test_limits import close_all, cpu_seconds, idle_clients
from test_robustness import CLEAN_REFUSALS, concurrent_requests

MIB = 1024 * 1024
LOAD_SECONDS = 12
BULK_SIZE = 4 * MIB
SLOW_SIZE = 50 * MIB
HANDOFF_TIMEOUT = 1.0


@pytest.fixture
def procs(hx):
	started = Processes(hx.dir)
	yield started
	started.close()


class World:
	"""One daemon (TLS and HTTP listeners) with: two example upstreams for
	b.example, one for a.example, nginx under `handoff run` for n.example
	(TLS) and h.example (plain HTTP), a route r.example to another nginx
	over TCP, and a route far.example to a python target a fault kills."""

	def __init__(self, hx, certs, procs):
		self.hx = hx
		self.certs = certs
		self.procs = procs
		self.sites = []
		self.tls_port, self.http_port = free_port(), free_port()
		relay_www = hx.dir / "relay-www"
		relay_www.mkdir(mode=0o755)
		(relay_www / "small.txt").write_text("relay\n")
		os.chmod(relay_www / "small.txt", 0o644)
		self.relay_port = free_port()
		procs.nginx("nginx-relay", f"""
	server {{
		listen 127.0.0.1:{self.relay_port};
		server_name r.example;
		root {relay_www};
	}}""")
		self.far_port = free_port()
		self.far = procs.target("http", self.far_port, "far")
		routes = [f"r.example to tcp:127.0.0.1:{self.relay_port}",
			  f"far.example to tcp:127.0.0.1:{self.far_port}"]
		config = hx.config([f"127.0.0.1:{self.tls_port} tls", f"127.0.0.1:{self.http_port} http"],
				   handoff_timeout=f"{int(HANDOFF_TIMEOUT * 1000)}ms")
		self.d = hx.daemon(config + "".join(f"route {r}\n" for r in routes))
		self.b_first = hx.upstream(["b.example"], "b-first", daemon=self.d)
		self.b_second = hx.upstream(["b.example"], "b-second", daemon=self.d)
		self.site_a = hx.upstream(["a.example"], "site-a", daemon=self.d)
		sites_root = hx.dir / "sites"
		sites_root.mkdir(mode=0o755)
		self.nginx_tls = Site("n", sites_root, (self.tls_port, self.http_port), hx.runtime_dir)
		self.sites.append(self.nginx_tls)
		setup_nginx(self.nginx_tls)
		self.bulk_sha = write_random_file(self.nginx_tls.docroot / "bulk.bin", BULK_SIZE)
		self.slow_sha = write_random_file(self.nginx_tls.docroot / "slow.bin", SLOW_SIZE)
		self.nginx_http = Site("h", sites_root, (self.tls_port, self.http_port), hx.runtime_dir)
		self.sites.append(self.nginx_http)
		setup_nginx_http(self.nginx_http)
		for site in self.sites:
			(site.docroot / "small.txt").write_text(f"{site.key}\n")
			os.chmod(site.docroot / "small.txt", 0o644)
			site.start(self.d)

	def load(self):
		b_labels = {self.b_first.label, self.b_second.label}

		def tls_new():
			fields = https_get(self.certs, self.tls_port, "b.example").fields
			if fields.get("label") not in b_labels or fields.get("name") != "b.example":
				return f"unexpected page {fields}"
			return None

		def nginx_tls():
			response = self.nginx_tls.get("/small.txt")
			return expect_status(response) or (None if response.body == b"n\n" else "wrong body")

		def http_new():
			response = self.nginx_http.get("/small.txt")
			return expect_status(response) or (None if response.body == b"h\n" else "wrong body")

		def keepalive():
			return keepalive_requests(self.http_port, "h.example", "/small.txt", b"h\n", 10)

		def bulk():
			response = self.nginx_tls.get("/bulk.bin", timeout=30)
			if response.status != 200 or sha256(response.body) != self.bulk_sha:
				return f"bulk download: status {response.status}, {len(response.body)} bytes"
			return None

		def relay():
			response = http_get(self.http_port, "r.example", "/small.txt")
			return expect_status(response) or (None if response.body == b"relay\n" else "wrong body")

		kinds = [Kind("tls-new", tls_new, 1), Kind("nginx-tls", nginx_tls, 1),
			 Kind("http-new", http_new, 1), Kind("keepalive", keepalive, 1, per_call=10),
			 Kind("bulk", bulk, 1), Kind("relay", relay, 1)]
		return MixedLoad(kinds)

	def close(self):
		problems = []
		for site in self.sites:
			problems += site.stop()
		return problems


@pytest.fixture
def world(hx, certs, procs):
	w = World(hx, certs, procs)
	yield w
	problems = w.close()
	assert not problems, "\n".join(problems)


def test_load_held(world):
	load = world.load().start()
	try:
		time.sleep(LOAD_SECONDS)
	finally:
		load.stop()
	requests = load.requests()
	failed = load.failures()
	line = f"load held: {requests} requests, {len(failed)} failed"
	print(f"\n{line}  (by kind: {load.counts()})")
	assert len(failed) == 0, f"{line}:\n" + "\n".join(map(str, failed[:20]))
	assert line == f"load held: {requests} requests, 0 failed"
	assert set(load.counts()) == set(load.kinds), load.counts()
	assert world.d.proc.poll() is None


# ---- faults, each while the load runs ----

def fault_upstream_killed(world, load):
	"""kill -9 one of the two upstreams of b.example: its files stay behind,
	so the daemon's next handoff to it fails and must go to the other one.
	b.example's requests pause around the kill so that none is inside the
	dying process; every request after it must succeed, the first included."""
	load.pause(["tls-new"])
	victim = world.b_first
	victim.signal(signal.SIGKILL)
	victim.proc.wait(10)
	killed_at = time.monotonic()
	load.resume(["tls-new"])

	def counted():
		return sum(1 for r in load.snapshot() if r[0] == "tls-new" and r[1] >= killed_at)
	wait_for(lambda: counted() >= 10, 20)
	problems = []
	if counted() < 10:
		problems.append(f"only {counted()} b.example requests in 20 s after the kill")
	try:
		world.d.wait_log(rf"dropped upstream {victim.pid}-", timeout=5)
	except AssertionError as e:
		problems.append(str(e).splitlines()[0])
	return problems


def fault_upstream_stopped(world, load):
	"""SIGSTOP a.example's only upstream: connections that fit its socket
	queue wait, the rest are refused cleanly after handoff-timeout, and
	the other names are served all along."""
	problems = []
	up = world.site_a
	refused_before = len([r for r in world.d.access_records() if r["outcome"] == "refused"])
	up.signal(signal.SIGSTOP)
	try:
		connected, futures = concurrent_requests(world.certs, world.tls_port, 30, timeout=20)
		wait_for(lambda: len(connected) == 30, 10)
		wait_for(lambda: len([r for r in world.d.access_records() if r["outcome"] == "refused"])
			 > refused_before, 4 * HANDOFF_TIMEOUT + 2)
		time.sleep(0.5)
		finished = [f.result() for f in futures if f.done()]
	finally:
		up.signal(signal.SIGCONT)
	results = [f.result(timeout=30) for f in futures]
	refused = [r for r in world.d.access_records() if r["outcome"] == "refused"][refused_before:]
	if not refused:
		problems.append("no connection was refused while the upstream was stopped")
	bad = [r for r in finished
	       if r[0] or r[1] not in CLEAN_REFUSALS or not 0.8 * HANDOFF_TIMEOUT <= r[2] <= 4 * HANDOFF_TIMEOUT]
	if bad:
		problems.append(f"refusals not clean or not within the handoff-timeout bound: {bad}")
	succeeded = [r for r in results if r[0]]
	if len(succeeded) + len(refused) != 30 or not succeeded:
		problems.append(f"{len(succeeded)} served and {len(refused)} refused of 30: {results}")
	return problems


def fault_relay_target_gone(world, load):
	"""The relay target is killed in the middle of a large response: the
	client gets what was in flight and then a clean end of stream (no
	reset, no hang), and the daemon goes on serving."""
	problems = []
	received = 0
	with connect(world.http_port, timeout=20) as sock:
		sock.sendall(request_bytes("far.example", "/bytes/1000000000"))
		head = sock.recv(65536)
		received = len(head)
		if not head.startswith(b"HTTP/1.1 200"):
			return [f"far.example answered {head[:60]!r}"]
		while received < 4 * MIB:
			chunk = sock.recv(65536)
			if not chunk:
				return [f"the relay ended after {received} bytes, before the target was killed"]
			received += len(chunk)
		world.far.kill9()
		ended = False
		deadline = time.monotonic() + 20
		try:
			while time.monotonic() < deadline:
				chunk = sock.recv(1 << 20)
				if not chunk:
					ended = True
					break
				received += len(chunk)
		except ConnectionResetError:
			problems.append(f"the client saw a reset after {received} bytes, not a clean close")
		except socket.timeout:
			pass
		if not ended and not problems:
			problems.append("the client saw no end of stream within 20 s of the target's death")
	try:
		world.d.wait_access(lambda r: r.get("name") == "far.example" and r.get("outcome") == "relayed")
	except AssertionError as e:
		problems.append(str(e).splitlines()[0])
	return problems


def fault_out_of_descriptors(world, load):
	"""A second daemon with 48 descriptors (its own runtime directory and
	upstream) runs out while idle clients hold connections: it pauses
	without spinning, then serves again; the main daemon is not affected."""
	hx = world.hx
	problems = []
	runtime = hx.dir / "run-lowfd"
	port = free_port()
	d2 = Daemon(hx.dir, f"runtime-dir {runtime}\npeek-timeout 30s\nmax-per-ip 1000\n"
		    f"listen 127.0.0.1:{port} http\ngrant * to self\n", tag="lowfd", nofile=48)
	hx.daemons.append(d2)
	d2.start()
	cert, key = world.certs.pair("a.example")
	up = Upstream(hx.dir, runtime, ["a.example"], cert, key, "lowfd-a")
	hx.upstreams.append(up)
	d2.wait_log(rf"registered upstream {up.pid}-", timeout=10)
	socks = idle_clients(port, 60)
	try:
		d2.wait_log(r"not accepting new connections: out of file descriptors", timeout=10)
		before = cpu_seconds(d2.pid)
		time.sleep(2.0)
		spent = cpu_seconds(d2.pid) - before
		if spent >= 0.5:
			problems.append(f"the daemon used {spent:.2f}s of CPU in 2s while out of descriptors")
	except AssertionError as e:
		problems.append(str(e).splitlines()[0])
	finally:
		close_all(socks)
	try:
		d2.wait_log(r"accepting new connections again", timeout=10)
	except AssertionError as e:
		problems.append(str(e).splitlines()[0])

	def served():
		try:
			return http_get(port, "a.example").status == 200
		except OSError:
			return False
	if not wait_for(served, 10, interval=0.2):
		problems.append("the daemon did not serve again after descriptors were freed")
	return problems


def fault_daemon_killed(world, load):
	"""kill -9 the daemon and start it again. A slow 50 MiB download and a
	keep-alive connection handed off before the kill finish untouched; new
	connections are served once it is back. New requests pause while the
	daemon is down (nothing listens then) and resume after."""
	problems = []
	lost = 0
	d = world.d
	load.pause()
	site = world.nginx_tls
	keep = world.nginx_http
	kept = http.client.HTTPConnection("127.0.0.1", world.http_port, timeout=20)
	kept.request("GET", "/small.txt", headers={"Host": keep.name})
	first = kept.getresponse()
	first_body = first.read()
	if first.status != 200 or first_body != b"h\n":
		problems.append(f"keep-alive request before the kill: {first.status} {first_body!r}")
	outcome = {}
	handoffs = len([r for r in d.access_records() if r.get("name") == site.name])

	def download():
		outcome["result"] = curl_sha256(["--fail", "--http1.1", "--limit-rate", "8M",
						 "--resolve", f"{site.name}:{world.tls_port}:127.0.0.1",
						 "--cacert", site.cert,
						 f"https://{site.name}:{world.tls_port}/slow.bin"], timeout=120)

	downloader = threading.Thread(target=download)
	downloader.start()
	try:
		d.wait_access(lambda r: r.get("name") == site.name and r.get("outcome") == "handoff",
			      count=handoffs + 1, timeout=10)
		time.sleep(1.0)
		d.proc.kill()
		d.proc.wait(10)
		try:
			with socket.create_connection(("127.0.0.1", world.tls_port), timeout=2):
				problems.append("the listener still accepted after the daemon was killed")
		except OSError:
			pass
		d.start()
		for up in (world.b_second, world.site_a):
			d.wait_log(rf"registered upstream {up.pid}-", timeout=10)
		for s in world.sites:
			d.wait_log(rf"registered upstream \S+ names={s.name}\b", timeout=10)
	finally:
		load.resume()
		downloader.join(150)
	code, digest, size, err = outcome.get("result", (None, None, 0, "no result"))
	if (code, size, digest) != (0, SLOW_SIZE, world.slow_sha):
		lost += 1
		problems.append(f"the download handed off before the kill: curl {code}, {size} bytes, {err}")
	try:
		kept.request("GET", "/small.txt", headers={"Host": keep.name})
		second = kept.getresponse()
		if second.status != 200 or second.read() != b"h\n":
			lost += 1
			problems.append(f"keep-alive request after the restart: status {second.status}")
	except (OSError, http.client.HTTPException) as e:
		lost += 1
		problems.append(f"keep-alive connection handed off before the kill: {type(e).__name__}: {e}")
	finally:
		kept.close()
	if https_get(world.certs, world.tls_port, "a.example").fields.get("label") != world.site_a.label:
		problems.append("a new connection after the restart was not served by a.example's upstream")
	return problems, lost


FAULTS = [("upstream kill -9", fault_upstream_killed),
	  ("upstream stopped (SIGSTOP)", fault_upstream_stopped),
	  ("relay target gone mid-transfer", fault_relay_target_gone),
	  ("out of descriptors", fault_out_of_descriptors),
	  ("daemon kill -9 and restart", fault_daemon_killed)]


def test_faults_survived(world):
	load = world.load().start()
	report = []
	lost = 0
	try:
		time.sleep(2)
		for name, fault in FAULTS:
			started = time.monotonic()
			result = fault(world, load)
			if isinstance(result, tuple):
				problems, lost_here = result
				lost += lost_here
			else:
				problems = result
			time.sleep(1.5)	# the load goes on after each fault
			failed = [r for r in load.failures() if r[1] >= started]
			if failed:
				problems.append(f"{len(failed)} load requests failed: {failed[:10]}")
			report.append((name, problems))
			print(f"\n  {name}: {'survived' if not problems else 'FAILED'}")
			for p in problems:
				print(f"    {p}")
	finally:
		load.stop()
	survived = sum(1 for _, problems in report if not problems)
	early = [r for r in load.failures() if r[3] is not None]
	line = f"faults survived: {survived} of {len(FAULTS)}, {lost} handed-off connections lost"
	print(f"{line}  ({load.requests()} load requests, {len(early)} failed)")
	details = "\n".join(f"{name}: {p}" for name, problems in report for p in problems)
	assert line == f"faults survived: {len(FAULTS)} of {len(FAULTS)}, 0 handed-off connections lost", \
		f"{line}\n{details}"
	assert not early, early[:10]
	assert world.d.proc.poll() is None


# ---- bad input ----

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
	from concurrent.futures import ThreadPoolExecutor
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


def decided(d, ids):
	"""How many of ids the daemon registered, refused or ignored (log lines)."""
	text = d.log()
	return sum(1 for i in ids if f"upstream {i}:" in text or f"upstream {i} " in text)


RELAY_HOLDERS = 100


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
	# Log forging through file names and names files.
	proc, info = run_attacker(["forge", upstreams, d.pid])
	bad.tried += info["tried"]
	wait_for(lambda: decided(d, info["ids"][-2:]) == 2, 10)
	time.sleep(0.5)
	finish_attacker(proc, upstreams, info["ids"])
	# A name that is not granted to nobody.
	proc, info = run_attacker(["ungranted", upstreams])
	bad.tried += info["tried"]
	if not wait_for(lambda: f"refused upstream {info['ids'][0]}:" in d.log(), 10):
		problems.append("a claim of a.example by nobody was not refused")
	labels = {https_get(certs, tls_port, "a.example").fields["label"] for _ in range(5)}
	if labels != {"site-a"}:
		problems.append(f"a.example served by {labels} after nobody claimed it")
	finish_attacker(proc, upstreams, info["ids"])
	# Thousands of registrations by one user, then a legitimate upstream.
	proc, info = run_attacker(["slots", upstreams, 4200], timeout=120)
	bad.tried += info["tried"]
	wait_for(lambda: decided(d, info["ids"][-1:]) == 1, 60, interval=0.2)
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
	# A symlink to another socket swapped in while the daemon registers.
	victim_path = hx.dir / "victim.sock"
	victim = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
	victim.bind(str(victim_path))
	try:
		proc, info = run_attacker(["symlink", upstreams, victim_path, 500, 20000], timeout=120)
		bad.tried += info["tried"]
		wait_for(lambda: decided(d, info["ids"]) == len(info["ids"]), 30, interval=0.2)
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
	# Files planted under an ID another user binds afterwards.
	precious = hx.dir / "precious"
	precious.write_text("precious\n")
	ident = f"{os.getpid()}-0123456789abcdef"
	proc, info = run_attacker(["precreate", upstreams, ident, precious])
	bad.tried += info["tried"]
	owner_socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
	owner_socket.bind(str(upstreams / f"{ident}.sock"))
	try:
		if not wait_for(lambda: f"refused upstream {ident}:" in d.log(), 10):
			problems.append("a names file planted by nobody under root's socket was not refused")
		if precious.read_text() != "precious\n" or precious.is_symlink():
			problems.append("the daemon wrote through a status symlink planted by nobody")
	finally:
		owner_socket.close()
		finish_attacker(proc, upstreams, info["ids"])
	labels = {https_get(certs, tls_port, "b.example").fields["label"] for _ in range(5)}
	if labels != {"site-b"}:
		problems.append(f"b.example served by {labels} after the planted files")


def test_bad_input(hx, certs, procs, monkeypatch):
	# RSS is measured, so the daemon is the release build (as in
	# test_relay's slow-reader test): ASan's allocator quarantine and
	# shadow memory would move RSS on their own.
	release = harness.REPO / "build" / "handoff"
	assert os.access(release, os.X_OK), f"{release} is missing: run 'make'"
	monkeypatch.setattr(harness, "HANDOFF", release)
	tls_port, http_port, proxy_port = free_port(), free_port(), free_port()
	access_log = hx.dir / "access.log"
	hold_port = free_port()
	procs.target("summary", hold_port, "hold")
	d = hx.daemon(hx.config([f"127.0.0.1:{tls_port} tls default a.example",
				 f"127.0.0.1:{http_port} http default a.example",
				 f"127.0.0.1:{proxy_port} http accept-proxy 127.0.0.9"],
				grants=["* to self", "n.example to nobody", "*.n.example to nobody"],
				access_log=str(access_log))
		      + f"route hold.example to tcp:127.0.0.1:{hold_port}\n")
	hx.upstream(["a.example"], "site-a", daemon=d)
	hx.upstream(["b.example"], "site-b", daemon=d)
	# Warm up, so lazily opened descriptors and first allocations are in the baseline.
	for _ in range(5):
		https_get(certs, tls_port, "a.example")
		http_get(http_port, "b.example")
	d.wait_access(lambda r: r["outcome"] == "handoff", count=10)
	time.sleep(0.5)
	base_fds, base_rss = fd_count_without_pipes(d.pid)[0], rss_kib(d.pid)

	bad = BadInput(d)
	replay_corpora(bad, tls_port, http_port, proxy_port)
	crafted_inputs(bad, certs, tls_port, http_port, proxy_port)
	loris = slowloris(bad, d, certs, tls_port, http_port, base_rss)
	held = relay_holders(bad, http_port)
	registration_attacks(bad, hx, d, certs, tls_port, http_port)
	bad.check_routes()

	is_alive = alive(d.pid) and d.proc.poll() is None
	serves = is_alive and https_get(certs, tls_port, "a.example").fields["label"] == "site-a"
	def descriptors_back():
		others, pipes = fd_count_without_pipes(d.pid)
		return others <= base_fds and pipes <= PIPE_POOL_DESCRIPTORS
	fds_back = wait_for(descriptors_back, 15) if is_alive else False
	end_fds = fd_count(d.pid) if is_alive else -1
	end_rss = rss_kib(d.pid) if is_alive else -1
	rss_back = is_alive and end_rss <= base_rss * 1.25 + 8 * 1024
	forged = log_problems(d.log(), read_text(access_log), d.pid)
	if forged:
		bad.problems.append(f"{len(forged)} log lines not written as the daemon's own: {forged[:6]}")
	back = "back to baseline" if fds_back and rss_back else "NOT back to baseline"
	line = (f"bad inputs tried: {bad.tried}, daemon {'alive' if serves else 'NOT alive'}, "
		f"descriptors and memory {back}")
	print(f"\n{line}  (descriptors {base_fds} -> {loris['peak_fds']} -> {end_fds}, RSS {base_rss} -> "
	      f"{loris['peak_rss']} -> {end_rss} KiB, slowloris latency x{loris['ratio']:.1f} of "
	      f"{loris['before_ms']:.1f} ms, {held} of {RELAY_HOLDERS} relays from one address held)")
	if is_alive and not fds_back:
		bad.problems.append("descriptors held after the bad input: " + ", ".join(
			sorted(os.readlink(f"/proc/{d.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{d.pid}/fd"))))
	for p in bad.problems:
		print(f"  {p}")
	assert line == f"bad inputs tried: {bad.tried}, daemon alive, descriptors and memory back to baseline"
	assert not bad.problems, "\n".join(bad.problems)
