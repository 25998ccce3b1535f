# test_relay.py - the TCP relay against real targets: another host (a network namespace), nginx reading PROXY v1/v2, caddy, half-close, failover and connect timeouts, balancing, slow readers, accept-proxy, access-log byte counts, stopping mid-relay.
import hashlib
import io
import os
import socket
import ssl
import subprocess
import threading
import time

import pytest

import harness
from harness import (MemoryTLSClient, connect, free_port, http_get, read_response,
		     request_bytes, tls_context, wait_closed, wait_for)
from relay_helpers import (NetNamespace, Processes, cert_der, curl, curl_sha256, make_cert,
			   nginx_has_tlv_variables, proxy_v1_header, proxy_v2_header, require_program,
			   vm_rss_kib, wait_file_lines, write_random_file)

MIB = 1024 * 1024
RELAY_CERT_NAMES = ("c.example", "k.example", "p2.example")


@pytest.fixture(scope="session")
def relay_certs(workroot):
	"""Certificates of the targets themselves: the daemon never holds one."""
	directory = workroot / "relay-certs"
	directory.mkdir(mode=0o755)
	return {name: make_cert(directory, name) for name in RELAY_CERT_NAMES}


@pytest.fixture
def procs(hx):
	"""Targets started by the test, stopped by PID before the daemon."""
	started = Processes(hx.dir)
	yield started
	started.close()


@pytest.fixture
def netns():
	"""A namespace of this test's own, removed even when the test fails."""
	ns = NetNamespace(tag="a")
	try:
		yield ns
	finally:
		ns.remove()
	assert not ns.exists(), f"network namespace {ns.name} is still there"


def relay_config(hx, listeners, routes, grants=()):
	return hx.config(listeners, grants=grants) + "".join(f"route {r}\n" for r in routes)


def relayed(upstream=None):
	return lambda r: r.get("outcome") == "relayed" and (upstream is None or r.get("upstream") == upstream)


def recv_until_eof(sock, limit, timeout):
	"""Everything the peer sends until it closes; bounded by size and time."""
	data = bytearray()
	deadline = time.monotonic() + timeout
	while len(data) < limit and time.monotonic() < deadline:
		chunk = sock.recv(1 << 20)
		if not chunk:
			break
		data += chunk
	return bytes(data)


class Load:
	"""total plain HTTP GETs for name through the daemon's port, spread over
	threads. Each result is (start time, label or None, error or None)."""

	def __init__(self, port, name, total, threads=4):
		self.port = port
		self.name = name
		self.total = total
		self.results = []
		self.issued = 0
		self.lock = threading.Lock()
		self.threads = [threading.Thread(target=self.worker) for _ in range(threads)]
		for t in self.threads:
			t.start()

	def worker(self):
		for _ in range(self.total):
			with self.lock:
				if self.issued >= self.total:
					return
				self.issued += 1
			start = time.monotonic()
			try:
				response = http_get(self.port, self.name, timeout=10)
				if response.status == 200:
					result = (start, response.fields.get("label"), None)
				else:
					result = (start, None, f"status {response.status}")
			except (OSError, ValueError, IndexError) as e:
				result = (start, None, repr(e))
			with self.lock:
				self.results.append(result)

	def done(self):
		with self.lock:
			return len(self.results)

	def join(self, timeout=60):
		deadline = time.monotonic() + timeout
		for t in self.threads:
			t.join(max(0.1, deadline - time.monotonic()))
		assert not any(t.is_alive() for t in self.threads), "load threads did not finish"
		return self.results

	def counts(self):
		out = {}
		for _, label, _ in self.results:
			out[label] = out.get(label, 0) + 1
		return out


# 1. Another host: nginx in a network namespace behind a veth pair.

def test_target_on_another_host_over_veth(hx, netns, procs, relay_certs):
	cert, key = relay_certs["c.example"]
	www = hx.dir / "www"
	www.mkdir(mode=0o755)
	big_size = 100 * MIB
	big_sha = write_random_file(www / "big.bin", big_size)
	(www / "hello.txt").write_text("hello from another host\n")
	os.chmod(www / "hello.txt", 0o644)
	_, nginx_dir = procs.nginx("nginx-ns", f"""
	server {{
		listen {netns.addr}:8443 ssl;
		server_name c.example;
		ssl_certificate {cert};
		ssl_certificate_key {key};
		root {www};
	}}""", netns=netns)
	port = free_port()
	target = f"tcp:{netns.addr}:8443"
	d = hx.daemon(relay_config(hx, [f"127.0.0.1:{port} tls"], [f"c.example to {target}"]))

	# The certificate the client gets is nginx's own: TLS passes through.
	ctx = ssl.create_default_context(cafile=str(cert))
	with connect(port) as sock, ctx.wrap_socket(sock, server_hostname="c.example") as tls:
		assert tls.getpeercert(binary_form=True) == cert_der(cert)
		tls.sendall(request_bytes("c.example", "/hello.txt"))
		with tls.makefile("rb") as stream:
			assert read_response(stream).body == b"hello from another host\n"

	code, sha, count, err = curl_sha256(["--fail", "--resolve", f"c.example:{port}:127.0.0.1",
					     "--cacert", cert, f"https://c.example:{port}/big.bin"],
					    timeout=90)
	assert code == 0, err
	assert (count, sha) == (big_size, big_sha)

	# nginx saw the daemon's address on the host end of the veth pair.
	lines = wait_file_lines(nginx_dir / "access.log", r'"GET /big\.bin HTTP/1\.1" 200', count=1)
	assert f"remote={netns.host_addr}:" in lines[0], lines[0]

	# 9. Byte counts: the download plus TLS framing down, a small hello up.
	records = d.wait_access(relayed(target), count=2, timeout=10)
	big = max(records, key=lambda r: int(r["bytes_down"]))
	assert big_size < int(big["bytes_down"]) < big_size * 1.01 + 64 * 1024, big
	assert 0 < int(big["bytes_up"]) < 64 * 1024, big
	assert int(big["duration_ms"]) > 0


# 2. PROXY v1 and v2 read by nginx itself.

def test_proxy_v1_and_v2_read_by_nginx(hx, procs, relay_certs):
	cert, key = relay_certs["p2.example"]
	v1_port, v2_port = free_port(), free_port()
	# 1.23.2 added $proxy_protocol_tlv_*; older nginx cannot show the name.
	has_authority = nginx_has_tlv_variables()
	_, nginx_dir = procs.nginx("nginx-pp", f"""
	server {{
		listen 127.0.0.1:{v1_port} proxy_protocol;
		server_name p1.example;
		location / {{ return 200 "pp=$proxy_protocol_addr:$proxy_protocol_port\\n"; }}
	}}
	server {{
		listen 127.0.0.1:{v2_port} ssl proxy_protocol;
		server_name p2.example;
		ssl_certificate {cert};
		ssl_certificate_key {key};
		location / {{ return 200 "pp=$proxy_protocol_addr:$proxy_protocol_port\\n"; }}
	}}""")
	http_port, tls_port = free_port(), free_port()
	d = hx.daemon(relay_config(hx, [f"127.0.0.1:{http_port} http", f"127.0.0.1:{tls_port} tls"],
				   [f"p1.example to tcp:127.0.0.1:{v1_port} proxy v1",
				    f"p2.example to tcp:127.0.0.1:{v2_port} proxy v2"]))

	v1_source, v2_source = free_port(), free_port()
	got = curl(["--fail", "--local-port", v1_source, "--resolve", f"p1.example:{http_port}:127.0.0.1",
		    f"http://p1.example:{http_port}/"])
	assert got.returncode == 0, got.stderr
	assert got.stdout == f"pp=127.0.0.1:{v1_source}\n"
	got = curl(["--fail", "--local-port", v2_source, "--resolve", f"p2.example:{tls_port}:127.0.0.1",
		    "--cacert", cert, f"https://p2.example:{tls_port}/"])
	assert got.returncode == 0, got.stderr
	assert got.stdout == f"pp=127.0.0.1:{v2_source}\n"

	log = nginx_dir / "access.log"
	(v1_line,) = wait_file_lines(log, r"host=p1\.example ")
	(v2_line,) = wait_file_lines(log, r"host=p2\.example ")
	assert f"pp=127.0.0.1:{v1_source} " in v1_line, v1_line
	assert f"pp=127.0.0.1:{v2_source} " in v2_line, v2_line
	# nginx's own peer is the daemon, not the client: the address came from the header.
	assert f"remote=127.0.0.1:{v1_source} " not in v1_line, v1_line
	assert "sni=p2.example " in v2_line, v2_line
	if has_authority:
		assert "authority=p2.example " in v2_line, v2_line
	d.wait_access(relayed(), count=2)


# 3. caddy, a static Go binary that cannot take a descriptor.

def test_caddy_behind_the_relay_by_sni(hx, procs, relay_certs):
	cert, key = relay_certs["k.example"]
	caddy_port = free_port()
	procs.caddy("caddy", "k.example", caddy_port, cert, key)
	port = free_port()
	target = f"tcp:127.0.0.1:{caddy_port}"
	d = hx.daemon(relay_config(hx, [f"127.0.0.1:{port} tls"], [f"k.example to {target}"]))

	ctx = ssl.create_default_context(cafile=str(cert))
	with connect(port) as sock, ctx.wrap_socket(sock, server_hostname="k.example") as tls:
		assert tls.getpeercert(binary_form=True) == cert_der(cert)
		tls.sendall(request_bytes("k.example"))
		with tls.makefile("rb") as stream:
			response = read_response(stream)
	assert response.status == 200
	assert response.body.startswith(b"served-by=caddy host=k.example"), response.body

	# ALPN is negotiated between curl and caddy: h2 end to end.
	got = curl(["--fail", "--http2", "-w", "\\nversion=%{http_version}", "--resolve",
		    f"k.example:{port}:127.0.0.1", "--cacert", cert, f"https://k.example:{port}/"])
	assert got.returncode == 0, got.stderr
	assert got.stdout.endswith("version=2"), got.stdout
	d.wait_access(relayed(target), count=2)


# 4. Half-close, and 9. exact byte counts and duration in the access log.

def test_half_close_through_http_route(hx, procs):
	target_port = free_port()
	procs.target("summary", target_port, "summary")
	port = free_port()
	target = f"tcp:127.0.0.1:{target_port}"
	d = hx.daemon(relay_config(hx, [f"127.0.0.1:{port} http"], [f"h.example to {target}"]))

	head = (b"POST /upload HTTP/1.1\r\nHost: h.example\r\n"
		b"Content-Type: application/octet-stream\r\n\r\n")
	body = os.urandom(3 * MIB)
	pause = 0.3
	with connect(port, timeout=20) as sock:
		start = time.monotonic()
		sock.sendall(head)
		time.sleep(pause)	# shows up in duration_ms
		sock.sendall(body)
		sock.shutdown(socket.SHUT_WR)
		# The target answers only after it saw our EOF.
		answer = recv_until_eof(sock, 4096, timeout=20)
		elapsed_ms = (time.monotonic() - start) * 1000
	sent = head + body
	assert answer == (f"label=summary bytes={len(sent)} "
			  f"sha256={hashlib.sha256(sent).hexdigest()}\n").encode()

	(record,) = d.wait_access(relayed(target))
	assert int(record["bytes_up"]) == len(sent), record
	assert int(record["bytes_down"]) == len(answer), record
	# From the relay's start (after routing and connecting) to the last byte.
	assert pause * 1000 / 2 <= int(record["duration_ms"]) <= elapsed_ms + 50, (record, elapsed_ms)

	# The whole request and the half-close at once, before the daemon has
	# even chosen a target: the end of the stream is not the client leaving.
	short = head + b"short body"
	with connect(port) as sock:
		sock.sendall(short)
		sock.shutdown(socket.SHUT_WR)
		answer = recv_until_eof(sock, 4096, timeout=10)
	assert answer == (f"label=summary bytes={len(short)} "
			  f"sha256={hashlib.sha256(short).hexdigest()}\n").encode()
	d.wait_access(relayed(target), count=2)


# 5. Failover.

def test_failover_under_load_then_all_targets_down(hx, procs):
	a_port, b_port = free_port(), free_port()
	a = procs.target("http", a_port, "A")
	b = procs.target("http", b_port, "B")
	http_port, tls_port = free_port(), free_port()
	target_a, target_b = f"tcp:127.0.0.1:{a_port}", f"tcp:127.0.0.1:{b_port}"
	d = hx.daemon(relay_config(hx, [f"127.0.0.1:{http_port} http", f"127.0.0.1:{tls_port} tls"],
				   [f"f.example to {target_a} {target_b} fail-after 1"]))

	load = Load(http_port, "f.example", total=300, threads=4)
	assert wait_for(lambda: load.done() >= 60, 60), "load did not get going"
	a.kill9()
	killed_at = time.monotonic()
	results = load.join()
	assert len(results) == 300

	# Requests A held at the moment it died may break; nothing after.
	late = [r for r in results if r[0] >= killed_at]
	assert len(late) >= 100, f"only {len(late)} requests after the kill"
	assert [r for r in late if r[1] is None] == []
	assert {r[1] for r in late} == {"B"}
	failed_early = [r for r in results if r[1] is None]
	assert len(failed_early) <= 4, failed_early	# at most one in flight per thread
	assert {"A", "B"} <= set(load.counts())
	d.wait_log(rf"target {target_a} is down after 1 failure")
	served_by_b = sum(1 for r in results if r[1] == "B")
	d.wait_access(relayed(target_b), count=served_by_b, timeout=10)
	assert not [r for r in d.access_records() if r["outcome"] == "failed"]

	# Every target down: an HTTP 502, a TLS internal_error alert, outcome=failed.
	b.kill9()
	assert http_get(http_port, "f.example").status == 502
	openssl = require_program("openssl")
	s_client = subprocess.run([openssl, "s_client", "-connect", f"127.0.0.1:{tls_port}",
				   "-servername", "f.example"], stdin=subprocess.DEVNULL,
				  capture_output=True, text=True, timeout=30)
	assert "alert internal error" in s_client.stdout + s_client.stderr, s_client.stderr
	records = d.wait_access(lambda r: r.get("outcome") == "failed", count=2)
	assert {r["proto"] for r in records} == {"http", "tls"}


def test_connect_timeout_moves_to_the_next_target(hx, procs):
	# A listener whose accept queue is full drops new SYNs: connects to it
	# neither succeed nor fail until the daemon's connect-timeout.
	with socket.socket() as stuck:
		stuck.bind(("127.0.0.1", 0))
		stuck.listen(0)
		stuck_target = f"tcp:127.0.0.1:{stuck.getsockname()[1]}"
		fillers = []
		try:
			for _ in range(3):
				filler = socket.socket()
				fillers.append(filler)
				filler.setblocking(False)
				filler.connect_ex(stuck.getsockname())
			b_port = free_port()
			procs.target("http", b_port, "B")
			port = free_port()
			d = hx.daemon(relay_config(hx, [f"127.0.0.1:{port} http"],
						   [f"t.example to {stuck_target} tcp:127.0.0.1:{b_port} "
						    "connect-timeout 500ms"]))
			start = time.monotonic()
			assert http_get(port, "t.example").fields["label"] == "B"
			assert 0.45 <= time.monotonic() - start < 5
		finally:
			for filler in fillers:
				filler.close()
	d.wait_log(rf"connect to {stuck_target} for 127\.0\.0\.1:\d+ failed: connect timeout")
	(record,) = d.wait_access(relayed())
	assert record["upstream"] == f"tcp:127.0.0.1:{b_port}", record


# 6. Load balancing.

def test_weighted_round_robin_3_to_1(hx, procs):
	a_port, b_port = free_port(), free_port()
	procs.target("http", a_port, "A")
	procs.target("http", b_port, "B")
	port = free_port()
	d = hx.daemon(relay_config(hx, [f"127.0.0.1:{port} http"],
				   [f"w.example to tcp:127.0.0.1:{a_port} weight 3 tcp:127.0.0.1:{b_port}"]))
	load = Load(port, "w.example", total=400, threads=4)
	load.join()
	counts = load.counts()
	assert None not in counts, load.results
	assert 270 <= counts.get("A", 0) <= 330 and 90 <= counts.get("B", 0) <= 110, counts
	d.wait_access(relayed(), count=400, timeout=10)


def test_least_conn_avoids_the_busy_target(hx, procs):
	a_port, b_port = free_port(), free_port()
	procs.target("http", a_port, "A")
	procs.target("http", b_port, "B")
	port = free_port()
	target_b = f"tcp:127.0.0.1:{b_port}"
	d = hx.daemon(relay_config(hx, [f"127.0.0.1:{port} http"],
				   [f"l.example to tcp:127.0.0.1:{a_port} {target_b} balance least-conn"]))

	# Eight long-lived keep-alive connections spread over both targets;
	# then the ones on B end, leaving A with four and B with none.
	opened, landed = [], []
	try:
		for _ in range(8):
			sock = connect(port)
			stream = sock.makefile("rb")
			opened.append((sock, stream))
			sock.sendall(request_bytes("l.example", close=False))
			landed.append(read_response(stream).fields["label"])
		assert landed.count("A") == 4, landed
		for (sock, stream), label in zip(opened, landed):
			if label == "B":
				stream.close()
				sock.close()
		d.wait_access(relayed(target_b), count=4)
		labels = [http_get(port, "l.example").fields["label"] for _ in range(20)]
		assert labels == ["B"] * 20
	finally:
		for sock, stream in opened:
			stream.close()
			sock.close()


def test_active_check_marks_down_and_up(hx, procs):
	a_port, b_port = free_port(), free_port()
	procs.target("http", a_port, "A")
	b = procs.target("http", b_port, "B")
	port = free_port()
	target_b = f"tcp:127.0.0.1:{b_port}"
	d = hx.daemon(relay_config(hx, [f"127.0.0.1:{port} http"],
				   [f"hc.example to tcp:127.0.0.1:{a_port} {target_b} check 200ms"]))
	assert {http_get(port, "hc.example").fields["label"] for _ in range(4)} == {"A", "B"}

	b.kill9()
	# Three failed checks (the default fail-after) 200 ms apart, no client involved.
	d.wait_log(rf"target {target_b} is down after 3 failures", timeout=5)
	labels = [http_get(port, "hc.example").fields["label"] for _ in range(10)]
	assert labels == ["A"] * 10
	assert f"connect to {target_b} for" not in d.log()	# no client was sent there

	b = procs.target("http", b_port, "B")
	d.wait_log(rf"target {target_b} is up again", timeout=5)
	labels = [http_get(port, "hc.example").fields["label"] for _ in range(10)]
	assert labels.count("B") >= 4, labels


# 7. Slow reader: the relay holds at most a pipe per direction.

def test_slow_reader_keeps_daemon_memory_flat(hx, procs, monkeypatch):
	# RSS is measured, so the daemon is the release build: ASan's shadow
	# memory and allocator quarantine would move RSS on their own.
	release = harness.REPO / "build" / "handoff"
	assert os.access(release, os.X_OK), f"{release} missing (run 'make')"
	monkeypatch.setattr(harness, "HANDOFF", release)

	www = hx.dir / "www"
	www.mkdir(mode=0o755)
	size = 1024 * MIB
	with open(www / "zero.bin", "wb") as f:
		f.truncate(size)	# sparse: reads as zeros, takes no disk
	os.chmod(www / "zero.bin", 0o644)
	nginx_port = free_port()
	procs.nginx("nginx-big", f"""
	server {{
		listen 127.0.0.1:{nginx_port};
		server_name z.example;
		root {www};
	}}""")
	port = free_port()
	target = f"tcp:127.0.0.1:{nginx_port}"
	d = hx.daemon(relay_config(hx, [f"127.0.0.1:{port} http"], [f"z.example to {target}"]))

	request = request_bytes("z.example", "/zero.bin")
	with connect(port, timeout=20) as sock:
		sock.sendall(request)
		first = sock.recv(65536)
		head_end = first.find(b"\r\n\r\n")
		assert first.startswith(b"HTTP/1.1 200") and head_end > 0, first[:200]
		expected_total = head_end + 4 + size
		received = len(first)
		time.sleep(0.5)		# every buffer on the way is full now
		baseline = vm_rss_kib(d.pid)
		samples = []
		trickle_end = time.monotonic() + 8
		next_sample = time.monotonic()
		while time.monotonic() < trickle_end:
			chunk = sock.recv(65536)
			assert chunk, "closed during the trickle"
			received += len(chunk)
			if time.monotonic() >= next_sample:
				samples.append(vm_rss_kib(d.pid))
				next_sample += 0.5
			time.sleep(0.05)
		assert received < 64 * MIB, received	# it really was a trickle
		assert len(samples) >= 10
		assert max(samples) - baseline < 2048, (baseline, samples)

		# Now fast, to the end.
		buf = bytearray(1 << 20)
		deadline = time.monotonic() + 60
		while received < expected_total and time.monotonic() < deadline:
			n = sock.recv_into(buf)
			if n == 0:
				break
			received += n
		assert received == expected_total

	(record,) = d.wait_access(relayed(target), timeout=10)
	assert int(record["bytes_down"]) == expected_total, record
	assert int(record["bytes_up"]) == len(request), record


# 8. accept-proxy: the daemon behind a balancer.

def test_accept_proxy_v1_to_local_upstream_and_untrusted_source(hx):
	trusted_port, strict_port = free_port(), free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{trusted_port} tls accept-proxy 127.0.0.1",
				 f"127.0.0.1:{strict_port} tls accept-proxy 127.0.0.2"]))
	hx.upstream(["a.example"], "a", daemon=d)

	client = ("192.0.2.44", 40404)
	with connect(trusted_port) as sock:
		via = sock.getsockname()
		sock.sendall(proxy_v1_header(client, ("127.0.0.1", trusted_port)))
		with tls_context(hx.certs).wrap_socket(sock, server_hostname="a.example") as tls:
			tls.sendall(request_bytes("a.example"))
			with tls.makefile("rb") as stream:
				page = read_response(stream).fields
	# The example upstream's "peer" is the handoff header's client; its
	# "client" is getpeername(), which behind a balancer is the balancer.
	assert page["peer"] == f"{client[0]}:{client[1]}", page
	assert page["client"] == f"{via[0]}:{via[1]}", page
	(record,) = d.wait_access(lambda r: r.get("outcome") == "handoff")
	assert record["client"] == f"{client[0]}:{client[1]}", record
	assert record["via"] == f"{via[0]}:{via[1]}", record

	# From a source the listener does not trust, a PROXY header is just
	# bytes that are not a ClientHello.
	with connect(strict_port) as sock:
		untrusted = sock.getsockname()
		hello = MemoryTLSClient(hx.certs, sock, "a.example").client_hello()
		sock.sendall(proxy_v1_header(client, ("127.0.0.1", strict_port)) + hello)
		assert wait_closed(sock, 5) is not None
	(record,) = d.wait_access(lambda r: r.get("outcome") == "invalid")
	assert record["client"] == f"{untrusted[0]}:{untrusted[1]}", record
	assert "via" not in record

	# The same listener believes its balancer at 127.0.0.2.
	with socket.socket() as sock:
		sock.settimeout(10)
		sock.bind(("127.0.0.2", 0))
		sock.connect(("127.0.0.1", strict_port))
		sock.sendall(proxy_v1_header(client, ("127.0.0.1", strict_port)))
		with tls_context(hx.certs).wrap_socket(sock, server_hostname="a.example") as tls:
			tls.sendall(request_bytes("a.example"))
			with tls.makefile("rb") as stream:
				assert read_response(stream).fields["peer"] == f"{client[0]}:{client[1]}"
	records = d.wait_access(lambda r: r.get("outcome") == "handoff", count=2)
	assert records[1]["via"].startswith("127.0.0.2:"), records[1]


def test_accept_proxy_v2_relayed_to_nginx(hx, procs):
	nginx_port = free_port()
	_, nginx_dir = procs.nginx("nginx-pp", f"""
	server {{
		listen 127.0.0.1:{nginx_port} proxy_protocol;
		server_name pp8.example;
		location / {{ return 200 "pp=$proxy_protocol_addr:$proxy_protocol_port\\n"; }}
	}}""")
	port = free_port()
	target = f"tcp:127.0.0.1:{nginx_port}"
	d = hx.daemon(relay_config(hx, [f"127.0.0.1:{port} http accept-proxy 127.0.0.1"],
				   [f"pp8.example to {target} proxy v2"]))

	client = ("198.51.100.23", 51515)
	with connect(port) as sock:
		via = sock.getsockname()
		sock.sendall(proxy_v2_header(client, ("203.0.113.1", 80)) + request_bytes("pp8.example"))
		raw = recv_until_eof(sock, 65536, timeout=10)
	response = read_response(io.BytesIO(raw))
	assert response.body == f"pp={client[0]}:{client[1]}\n".encode()
	(line,) = wait_file_lines(nginx_dir / "access.log", r"host=pp8\.example ")
	assert f"pp={client[0]}:{client[1]} " in line, line
	(record,) = d.wait_access(relayed(target))
	assert record["client"] == f"{client[0]}:{client[1]}", record
	assert record["via"] == f"{via[0]}:{via[1]}", record
	# The balancer's header is consumed, not relayed: only the request goes up.
	assert int(record["bytes_up"]) == len(request_bytes("pp8.example")), record
	assert int(record["bytes_down"]) == len(raw), record


# 10. Stopping: SIGTERM closes relayed connections, logs them, exits cleanly.

def test_sigterm_with_a_relay_in_flight(hx, procs):
	target_port = free_port()
	procs.target("http", target_port, "A")
	port = free_port()
	target = f"tcp:127.0.0.1:{target_port}"
	d = hx.daemon(relay_config(hx, [f"127.0.0.1:{port} http"], [f"s.example to {target}"]))
	with connect(port, timeout=20) as sock:
		sock.sendall(request_bytes("s.example", f"/bytes/{256 * MIB}"))
		assert sock.recv(65536).startswith(b"HTTP/1.1 200")
		problems = d.stop()
		assert problems == [], "\n".join(problems)
		# Whatever was already in the socket, then the end.
		assert wait_closed(sock, 10) is not None
	(line,) = [line for line in d.log().splitlines() if " outcome=relayed " in line]
	assert f"upstream={target} " in line and line.endswith(' why="daemon stopping"'), line
