# test_relay_basics.py - names routed to TCP targets (route ... to tcp:): relayed both ways, PROXY headers, failed targets.
import hashlib
import socket
import ssl
import threading
import time

import pytest

from harness import connect, free_port, http_get, https_get, tls_context, tls_failure

PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
PP2_TYPE_ALPN = 0x01
PP2_TYPE_AUTHORITY = 0x02


def pattern(length):
	block = bytes((i * 7 + 13) & 0xFF for i in range(256))
	return (block * (length // 256 + 1))[:length]


def recv_exactly(sock, count):
	data = b""
	while len(data) < count:
		chunk = sock.recv(count - len(data))
		if not chunk:
			raise ConnectionError(f"closed after {len(data)} of {count} bytes")
		data += chunk
	return data


def read_proxy_header(sock, version):
	"""Consume exactly the PROXY header (nothing of the client's bytes
	after it) and describe it as a dict."""
	if version == "v1":
		line = b""
		while not line.endswith(b"\r\n") and len(line) < 108:
			line += recv_exactly(sock, 1)
		words = line.decode().split()
		return {"line": line.decode().rstrip("\r\n"), "src": f"{words[2]}:{words[4]}",
			"dst": f"{words[3]}:{words[5]}"}
	head = recv_exactly(sock, 16)
	assert head[:12] == PROXY_V2_SIGNATURE, head
	body = recv_exactly(sock, int.from_bytes(head[14:16], "big"))
	assert head[12] == 0x21 and head[13] == 0x11, head	# v2 PROXY, TCP over IPv4
	info = {"src": f"{socket.inet_ntoa(body[0:4])}:{int.from_bytes(body[8:10], 'big')}",
		"dst": f"{socket.inet_ntoa(body[4:8])}:{int.from_bytes(body[10:12], 'big')}"}
	offset = 12
	while offset + 3 <= len(body):
		kind, length = body[offset], int.from_bytes(body[offset + 1:offset + 3], "big")
		value = body[offset + 3:offset + 3 + length]
		if kind == PP2_TYPE_AUTHORITY:
			info["authority"] = value.decode()
		elif kind == PP2_TYPE_ALPN:
			info["alpn"] = value.decode()
		offset += 3 + length
	return info


class TargetServer:
	"""A TCP server on loopback standing in for a remote upstream. It reads
	an optional PROXY header, then (over TLS if given a certificate) one
	HTTP request, and answers: GET /bytes/N with the pattern, POST with the
	SHA-256 of the body, anything else with what it saw."""

	def __init__(self, proxy=None, cert=None, key=None):
		self.proxy = proxy
		self.tls = None
		if cert is not None:
			self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
			self.tls.load_cert_chain(str(cert), str(key))
		self.listener = socket.socket()
		self.listener.bind(("127.0.0.1", 0))
		self.listener.listen(16)
		self.listener.settimeout(0.2)
		self.port = self.listener.getsockname()[1]
		self.headers = []
		self.errors = []
		self.stopping = threading.Event()
		self.thread = threading.Thread(target=self.serve)
		self.thread.start()

	def serve(self):
		while not self.stopping.is_set():
			try:
				conn, _ = self.listener.accept()
			except socket.timeout:
				continue
			try:
				with conn:
					self.answer(conn)
			except Exception as e:	# reported by the test through self.errors
				self.errors.append(repr(e))

	def answer(self, conn):
		conn.settimeout(10)
		header = read_proxy_header(conn, self.proxy) if self.proxy else {}
		self.headers.append(header)
		if self.tls is not None:
			conn = self.tls.wrap_socket(conn, server_side=True)
		stream = conn.makefile("rb")
		request_line = stream.readline(65536).decode()
		length = 0
		for _ in range(100):
			line = stream.readline(65536)
			if line in (b"\r\n", b""):
				break
			key, _, value = line.decode().partition(":")
			if key.strip().lower() == "content-length":
				length = int(value)
		method, path = request_line.split()[:2]
		if method == "POST":
			body = hashlib.sha256(stream.read(length)).hexdigest().encode()
		elif path.startswith("/bytes/"):
			body = pattern(int(path[len("/bytes/"):]))
		else:
			body = "".join(f"{k}={v}\n" for k, v in header.items()).encode() + b"target=tcp\n"
		conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
			     b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
		stream.close()

	def close(self):
		self.stopping.set()
		self.thread.join(15)
		self.listener.close()


@pytest.fixture
def targets():
	started = []

	def start(**kwargs):
		server = TargetServer(**kwargs)
		started.append(server)
		return server

	yield start
	for server in started:
		server.close()
	errors = [e for server in started for e in server.errors]
	assert not errors, errors


def test_http_relayed_with_proxy_v1(hx, targets):
	port = free_port()
	target = targets(proxy="v1")
	d = hx.daemon(hx.config([f"127.0.0.1:{port} http"], grants=[],
				route=f"r.example to tcp:127.0.0.1:{target.port} proxy v1"))
	source = free_port()
	page = http_get(port, "r.example", source_port=source).fields
	assert page["target"] == "tcp"
	assert page["line"] == f"PROXY TCP4 127.0.0.1 127.0.0.1 {source} {port}"

	record = d.wait_access(lambda r: r.get("outcome") == "relayed")[0]
	assert record["name"] == "r.example"
	assert record["client"] == f"127.0.0.1:{source}"
	assert int(record["bytes_up"]) > 0 and int(record["bytes_down"]) > 0


def test_tls_relayed_with_proxy_v2_both_ways(hx, certs, targets):
	port = free_port()
	cert, key = certs.pair("b.example")
	target = targets(proxy="v2", cert=cert, key=key)
	d = hx.daemon(hx.config([f"127.0.0.1:{port} tls"], grants=[],
				route=f"b.example to tcp:127.0.0.1:{target.port} proxy v2"))

	source = free_port()
	page = https_get(certs, port, "b.example", source_port=source, alpn=["h2", "http/1.1"])
	assert page.cert_subject == "b.example"	# the target's own certificate, end to end
	assert page.fields["src"] == f"127.0.0.1:{source}"
	assert page.fields["authority"] == "b.example"
	assert page.fields["alpn"] == "h2"

	download = 8 * 1024 * 1024
	assert https_get(certs, port, "b.example", path=f"/bytes/{download}", timeout=30).body == pattern(download)

	upload = pattern(4 * 1024 * 1024)
	with connect(port, timeout=30) as sock:
		with tls_context(certs).wrap_socket(sock, server_hostname="b.example") as tls:
			tls.sendall(b"POST /upload HTTP/1.1\r\nHost: b.example\r\nContent-Length: "
				    + str(len(upload)).encode() + b"\r\n\r\n" + upload)
			answer = b""
			for _ in range(10000):
				chunk = tls.recv(65536)
				if not chunk:
					break
				answer += chunk
	assert answer.endswith(hashlib.sha256(upload).hexdigest().encode()), answer[-200:]

	records = d.wait_access(lambda r: r.get("outcome") == "relayed", count=3, timeout=10)
	assert max(int(r["bytes_down"]) for r in records) > download
	assert max(int(r["bytes_up"]) for r in records) > len(upload)


def test_unreachable_target_fails_cleanly(hx):
	tls_port = free_port()
	http_port = free_port()
	closed_port = free_port()	# nothing listens there
	d = hx.daemon(hx.config([f"127.0.0.1:{tls_port} tls", f"127.0.0.1:{http_port} http"], grants=[],
				route=f"gone.example to tcp:127.0.0.1:{closed_port} connect-timeout 1s"))

	assert tls_failure(hx.certs, tls_port, "gone.example") == "TLSV1_ALERT_INTERNAL_ERROR"
	assert http_get(http_port, "gone.example").status == 502
	records = d.wait_access(lambda r: r.get("outcome") == "failed", count=2)
	assert {r["proto"] for r in records} == {"tls", "http"}


def exchange_times(port, rounds, first=b""):
	"""Seconds per request/answer exchange on one connection to port, where
	the answer comes in two small writes a moment apart (as a server writes
	its headers and then its body). first: bytes sent before the exchanges
	(a request head the daemon routes by)."""
	times = []
	with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
		sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
		if first:
			sock.sendall(first)
		for _ in range(rounds):
			started = time.monotonic()
			sock.sendall(b"?")
			recv_exactly(sock, 2)
			times.append(time.monotonic() - started)
	return sorted(times)[len(times) // 2]


def test_small_writes_are_relayed_without_delay(hx):
	"""A relay forwards each write as it comes: it must not hold a small
	segment back until the previous one is acknowledged (Nagle's algorithm
	against the peer's delayed acknowledgements adds up to 40 ms a time).
	Compared with the same exchanges made directly, in the same run."""
	target_port = free_port()
	listener = socket.create_server(("127.0.0.1", target_port))

	def answer():
		conn, _ = listener.accept()
		with conn:
			conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
			byte = conn.recv(1)
			if byte != b"?":	# through the relay, the request head comes first
				head = byte
				while not head.endswith(b"\r\n\r\n") and 0 < len(head) < 4096:
					head += conn.recv(1)
				byte = conn.recv(1)
			while byte == b"?":
				conn.sendall(b"a")
				time.sleep(0.002)
				conn.sendall(b"b")
				byte = conn.recv(1)

	port = free_port()
	hx.daemon(hx.config([f"127.0.0.1:{port} http"], grants=[],
			    route=f"r.example to tcp:127.0.0.1:{target_port}"))
	try:
		for via in ("direct", "relay"):
			server = threading.Thread(target=answer, daemon=True)
			server.start()
			if via == "direct":
				direct = exchange_times(target_port, 40)
			else:
				relayed = exchange_times(port, 40, b"GET / HTTP/1.1\r\nHost: r.example\r\n\r\n")
			server.join(10)
	finally:
		listener.close()
	# Two writes 2 ms apart: about 2 ms either way; a held-back segment
	# makes it 40 ms or more.
	assert relayed < direct * 4 + 0.005, (direct, relayed)
