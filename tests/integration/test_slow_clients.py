# test_slow_clients.py - hellos that arrive one byte at a time or in many records, and clients that send nothing.
import socket
import subprocess
import threading
import time

from harness import (MemoryTLSClient, connect, free_port, https_get, read_response,
		     received_subject_cn, request_bytes, wait_closed)

BYTE_DELAY = 0.002

# A long ALPN list makes openssl's ClientHello larger than the smallest
# record size it allows (512), so the hello spans several records.
LONG_ALPN = ",".join([f"proto-{i:03d}" for i in range(90)] + ["http/1.1"])
S_CLIENT_SPLIT = ["-max_send_frag", "512", "-split_send_frag", "512", "-alpn", LONG_ALPN]


def send_bytewise(sock, data):
	sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
	for i in range(len(data)):
		sock.send(data[i:i + 1])
		time.sleep(BYTE_DELAY)


def tls_records(data):
	"""(content type, length) of each complete TLS record in data."""
	records, offset = [], 0
	while offset + 5 <= len(data):
		length = int.from_bytes(data[offset + 3:offset + 5], "big")
		records.append((data[offset], length))
		offset += 5 + length
	return records


def test_one_byte_at_a_time(hx, certs):
	tls_port = free_port()
	http_port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{tls_port} tls", f"127.0.0.1:{http_port} http"]))
	up = hx.upstream(["a.example"], "site-a", daemon=d)

	with connect(tls_port, timeout=30) as sock:
		client = MemoryTLSClient(certs, sock, "a.example")
		hello = client.client_hello()
		assert len(tls_records(hello)) == 1 and hello[0] == 22
		send_bytewise(sock, hello)
		client.handshake()
		assert client.peer_subject() == "a.example"
		page = client.request("a.example").fields
	assert page["label"] == up.label
	assert page["sni"] == "a.example"

	with connect(http_port, timeout=30) as sock:
		send_bytewise(sock, request_bytes("a.example"))
		with sock.makefile("rb") as stream:
			response = read_response(stream)
	assert response.status == 200
	assert response.fields["label"] == up.label
	assert response.fields["proto"] == "http"

	records = d.wait_access(lambda r: r.get("outcome") == "handoff", count=2)
	assert {r["proto"] for r in records} == {"tls", "http"}


def capture_s_client_hello(args):
	"""Run s_client against a local listener and return the bytes it sent
	first, to confirm the options really split the hello."""
	with socket.socket() as listener:
		listener.bind(("127.0.0.1", 0))
		listener.listen(1)
		listener.settimeout(10)
		port = listener.getsockname()[1]
		proc = subprocess.Popen(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
					 "-servername", "a.example", *args],
					stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
					stderr=subprocess.DEVNULL)
		try:
			conn, _ = listener.accept()
			with conn:
				conn.settimeout(0.5)
				data = b""
				deadline = time.monotonic() + 5
				while time.monotonic() < deadline:
					try:
						chunk = conn.recv(65536)
					except socket.timeout:
						break
					if not chunk:
						break
					data += chunk
		finally:
			proc.kill()
			proc.wait(10)
	return data


def test_multi_record_hello(hx, certs):
	hello = capture_s_client_hello(S_CLIENT_SPLIT)
	records = tls_records(hello)
	assert len(records) >= 2 and all(kind == 22 for kind, _ in records), records

	port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{port} tls"]))
	hx.upstream(["a.example"], "site-a", daemon=d)
	hx.upstream(["b.example"], "site-b", daemon=d)

	result = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
				 "-servername", "a.example", "-CAfile", str(certs.cert("a.example")),
				 *S_CLIENT_SPLIT],
				stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
	output = result.stdout + result.stderr
	assert received_subject_cn(output) == "a.example", output
	assert "Verify return code: 0 (ok)" in output, output
	record = d.wait_access(lambda r: r.get("outcome") == "handoff")[0]
	assert record["name"] == "a.example"

	# The same from Python with every record 40 bytes long, so even the
	# record and handshake headers fall into different records.
	with connect(port) as sock:
		client = MemoryTLSClient(certs, sock, "b.example")
		hello = client.client_hello()
		body = hello[5:]
		version = hello[1:3]
		split = b"".join(bytes([22]) + version + len(body[i:i + 40]).to_bytes(2, "big") + body[i:i + 40]
				 for i in range(0, len(body), 40))
		assert len(tls_records(split)) > 5
		sock.sendall(split)
		client.handshake()
		assert client.peer_subject() == "b.example"
		assert client.request("b.example").fields["label"] == "site-b"


def test_silent_client_times_out_while_others_are_served(hx, certs):
	port = free_port()
	http_port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{port} tls", f"127.0.0.1:{http_port} http"],
				peek_timeout="1s"))
	up = hx.upstream(["a.example"], "site-a", daemon=d)

	silent = [connect(port, timeout=10) for _ in range(3)]
	# An HTTP client that stops in the middle of its request head.
	partial = connect(http_port, timeout=10)
	partial.sendall(b"GET / HTTP/1.1\r\nHo")
	clients = silent + [partial]
	started = time.monotonic()
	served = []

	def serve_others():
		while time.monotonic() - started < 0.8:
			served.append(https_get(certs, port, "a.example").fields["label"])

	worker = threading.Thread(target=serve_others)
	worker.start()
	closed_after = []
	try:
		for sock in clients:
			remaining = max(0.1, started + 5 - time.monotonic())
			closed = wait_closed(sock, remaining)
			closed_after.append(None if closed is None else time.monotonic() - started)
	finally:
		worker.join(30)
		for sock in clients:
			sock.close()
	assert not worker.is_alive()
	assert all(t is not None for t in closed_after), f"not disconnected within 5 s: {closed_after}"
	assert all(0.8 <= t <= 3.0 for t in closed_after), closed_after
	assert len(served) >= 2 and all(label == up.label for label in served), served

	timeouts = d.wait_access(lambda r: r.get("outcome") == "timeout", count=4)
	assert sorted(r["proto"] for r in timeouts) == ["http", "tls", "tls", "tls"]
	assert all(r["upstream"] == "-" for r in timeouts)
	assert len(d.wait_access(lambda r: r.get("outcome") == "handoff", count=len(served))) == len(served)


def test_trickling_client_is_cut_at_the_peek_deadline(hx, certs):
	port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{port} tls"], peek_timeout="1s"))
	hx.upstream(["a.example"], "site-a", daemon=d)

	with connect(port, timeout=10) as sock:
		hello = MemoryTLSClient(certs, sock, "a.example").client_hello()
		sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
		started = time.monotonic()
		cut_after = None
		# 20 ms a byte would take seconds; the deadline is for the whole hello.
		for i in range(len(hello)):
			try:
				sock.send(hello[i:i + 1])
			except (BrokenPipeError, ConnectionResetError):
				cut_after = time.monotonic() - started
				break
			time.sleep(0.02)
			if time.monotonic() - started > 5:
				break
		if cut_after is None:
			closed = wait_closed(sock, 0.5)
			cut_after = None if closed is None else time.monotonic() - started
	assert cut_after is not None and 0.8 <= cut_after <= 3.0, cut_after
	record = d.wait_access(lambda r: r.get("outcome") == "timeout")[0]
	assert record["upstream"] == "-"
