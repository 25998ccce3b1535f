# test_abuse.py - load held for a fixed time, faults survived under that load, and bad input of every kind against one running daemon; each part prints one summary line (docs/reliability.md).
import http.client
import os
import signal
import socket
import threading
import time

import pytest

import harness
from abuse_helpers import (PIPE_POOL_DESCRIPTORS, Kind, MixedLoad, alive, expect_status, fd_count,
			   fd_count_without_pipes, keepalive_requests, log_problems, rss_kib, sha256)
from abuse_inputs import (RELAY_HOLDERS, BadInput, crafted_inputs, registration_attacks,
			  relay_holders, replay_corpora, slowloris)
from harness import (Daemon, Upstream, connect, free_port, http_get, https_get, read_text,
		     request_bytes, wait_for)
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
