# test_preload_families.py - a swapped listener gets only the clients a TCP listener of its family would, with addresses in that family from accept(), getpeername() and getsockname() alike.
import json

import pytest

from harness import free_port, http_get, tls_failure
from preload_helpers import PYTHON

NAME = "a.example"


# An ordinary server that answers each request with what accept(),
# getpeername() and getsockname() said about the connection.
ADDRESS_ECHO_SOURCE = r"""
import json, signal, socket, sys

host, port, v6only = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "v6only"
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
family = socket.AF_INET6 if ":" in host else socket.AF_INET
sock = socket.socket(family, socket.SOCK_STREAM)
if family == socket.AF_INET6:
	# Explicit either way: the system's default must not decide the test.
	sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if v6only else 0)
sock.bind((host, port))
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
				   "getpeername": list(conn.getpeername()[:2]),
				   "getsockname": list(conn.getsockname()[:2])}).encode()
		conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(body)).encode() +
			     b"\r\nConnection: close\r\n\r\n" + body)
"""


def start_echo(hx, runs, host, v6only=False):
	"""A daemon on 127.0.0.1 and [::1] (HTTP on one port, TLS on another)
	and the echo server bound to host under `handoff run`."""
	port, tls_port = free_port(("127.0.0.1", "::1")), free_port(("127.0.0.1", "::1"))
	server_port = free_port(("127.0.0.1", "::1"))
	d = hx.daemon(hx.config([f"127.0.0.1:{port} http", f"[::1]:{port} http",
				 f"127.0.0.1:{tls_port} tls", f"[::1]:{tls_port} tls"]))
	script = hx.dir / "address_echo.py"
	script.write_text(ADDRESS_ECHO_SOURCE)
	run = runs("address-echo", [PYTHON, script, host, server_port,
				    "v6only" if v6only else "dual"], ports=[server_port])
	run.wait_event("listening")
	d.wait_log(r"registered upstream \d+-\S+ names=a\.example")
	return d, port, tls_port


def echo(port, client_host):
	"""GET from a known source port; the server's answer and that port."""
	source = free_port((client_host,))
	response = http_get(port, NAME, host=client_host, source_port=source)
	return response, source


def test_ipv4_listener_gets_ipv4_clients_only(hx, runs, certs):
	"""A server bound to 127.0.0.1 gets the IPv4 client; an IPv6 client
	gets what a name nobody serves gets (HTTP 503, TLS unrecognized_name)."""
	d, port, tls_port = start_echo(hx, runs, "127.0.0.1")
	response, source = echo(port, "127.0.0.1")
	assert response.status == 200
	assert json.loads(response.body) == {"accepted": ["127.0.0.1", source],
					     "getpeername": ["127.0.0.1", source],
					     "getsockname": ["127.0.0.1", port]}
	response, _ = echo(port, "::1")
	assert response.status == 503
	assert tls_failure(certs, tls_port, NAME, host="::1") == "TLSV1_UNRECOGNIZED_NAME"
	d.wait_log(r"no upstream of the name takes this protocol and client address family")
	names_files = list((hx.runtime_dir / "upstreams").glob("*/*.names"))
	assert [p.read_text() for p in names_files] == ["family ipv4\na.example\n"]


def test_dual_stack_listener_gets_both_families_v4_mapped(hx, runs):
	"""A server on [::] gets IPv6 clients as they are and IPv4 clients
	v4-mapped, from accept(), getpeername() and getsockname() alike."""
	d, port, _ = start_echo(hx, runs, "::")
	response, source = echo(port, "127.0.0.1")
	assert response.status == 200
	assert json.loads(response.body) == {"accepted": ["::ffff:127.0.0.1", source],
					     "getpeername": ["::ffff:127.0.0.1", source],
					     "getsockname": ["::ffff:127.0.0.1", port]}
	response, source = echo(port, "::1")
	assert response.status == 200
	assert json.loads(response.body) == {"accepted": ["::1", source],
					     "getpeername": ["::1", source],
					     "getsockname": ["::1", port]}


def test_v6only_listener_gets_ipv6_clients_only(hx, runs, certs):
	"""A server on [::] with IPV6_V6ONLY gets the IPv6 client; an IPv4
	client gets "no upstream"."""
	d, port, tls_port = start_echo(hx, runs, "::", v6only=True)
	response, source = echo(port, "::1")
	assert response.status == 200
	assert json.loads(response.body) == {"accepted": ["::1", source],
					     "getpeername": ["::1", source],
					     "getsockname": ["::1", port]}
	response, _ = echo(port, "127.0.0.1")
	assert response.status == 503
	assert tls_failure(certs, tls_port, NAME, host="127.0.0.1") == "TLSV1_UNRECOGNIZED_NAME"


# A load balancer in front of the daemon names the client in a PROXY
# header: the family that counts is that client's.
@pytest.mark.parametrize("header, host, expected", [
	(b"PROXY TCP6 ::ffff:203.0.113.9 ::ffff:127.0.0.1 4242 443\r\n", "127.0.0.1",
	 ["203.0.113.9", 4242]),
	(b"PROXY TCP6 2001:db8::9 ::1 4242 443\r\n", "127.0.0.1", None),
	(b"PROXY TCP4 203.0.113.9 127.0.0.1 4242 443\r\n", "::", ["::ffff:203.0.113.9", 4242]),
])
def test_proxy_header_client_family_decides(hx, runs, header, host, expected):
	import socket
	port, server_port = free_port(), free_port(("127.0.0.1", "::1"))
	d = hx.daemon(hx.config([f"127.0.0.1:{port} http accept-proxy 127.0.0.2"]))
	script = hx.dir / "address_echo.py"
	script.write_text(ADDRESS_ECHO_SOURCE)
	run = runs("address-echo", [PYTHON, script, host, server_port, "dual"], ports=[server_port])
	run.wait_event("listening")
	d.wait_log(r"registered upstream \d+-\S+ names=a\.example")
	balancer = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
	balancer.bind(("127.0.0.2", 0))		# the trusted source
	balancer.settimeout(10)
	balancer.connect(("127.0.0.1", port))
	balancer.sendall(header + b"GET / HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n")
	answer = b""
	while True:
		chunk = balancer.recv(4096)
		if not chunk:
			break
		answer += chunk
	balancer.close()
	head, _, body = answer.partition(b"\r\n\r\n")
	if expected is None:
		assert head.startswith(b"HTTP/1.1 503"), answer[:200]
	else:
		assert head.startswith(b"HTTP/1.1 200"), answer[:200]
		page = json.loads(body)
		assert page["accepted"] == page["getpeername"] == expected
