# test_relay_limits.py - relays are bounded: max-relays, max-relays-per-ip and a descriptor reserve keep other clients and local upstreams served.
import os
import re
import signal
import socket

import pytest

from harness import free_port, http_get, read_response, request_bytes, tls_failure, wait_for
from relay_helpers import Processes

RELAY_NAME = "r.example"


@pytest.fixture
def procs(hx):
	started = Processes(hx.dir)
	yield started
	started.close()


def open_relay(port, source="127.0.0.1"):
	"""A keep-alive HTTP exchange for RELAY_NAME from source; returns
	(socket, status). The socket stays open: a relayed one keeps its relay
	until the test closes it."""
	sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
	sock.settimeout(10)
	sock.bind((source, 0))
	sock.connect(("127.0.0.1", port))
	sock.sendall(request_bytes(RELAY_NAME, close=False))
	stream = sock.makefile("rb")
	status = read_response(stream).status
	stream.close()
	return sock, status


def descriptors(pid):
	return len(os.listdir(f"/proc/{pid}/fd"))


def relay_daemon(hx, procs, nofile=None, listeners=None, **settings):
	target_port = free_port()
	procs.target("http", target_port, "far")
	port = free_port()
	listeners = listeners or [f"127.0.0.1:{port} http"]
	text = hx.config(listeners, grants=("a.example to self",), peek_timeout="30s", **settings)
	text += f"route {RELAY_NAME} to tcp:127.0.0.1:{target_port} idle-timeout 60s\n"
	d = hx.daemon(text, nofile=nofile)
	hx.upstream(["a.example"], "site-a", daemon=d)
	return d, port


def refusal_lines(d):
	return re.findall(r"relay for \S+ refused: .*", d.log())


def refusals(d, count):
	"""The why of count access-log lines with outcome=refused."""
	pattern = re.compile(r" outcome=refused .*why=\"([^\"]*)\"")
	wait_for(lambda: len(pattern.findall(d.log())) >= count, 10)
	found = pattern.findall(d.log())
	assert len(found) == count, (found, d.tail())
	return found


def relay_status(port, source="127.0.0.1"):
	sock, status = open_relay(port, source)
	sock.close()
	return status


def test_one_address_cannot_take_every_descriptor(hx, procs):
	"""The reviewed attack: 256 descriptors, max-per-ip 4, 60 keep-alive
	relays from one address. The address gets max-relays-per-ip (default
	32) relays, the rest get a 503 at once; other addresses are relayed and
	the local upstream is served, from that address too."""
	d, port = relay_daemon(hx, procs, nofile=256, max_per_ip=4)
	held = []
	statuses = []
	try:
		for _ in range(60):
			sock, status = open_relay(port)
			held.append(sock)
			statuses.append(status)
		assert statuses.count(200) == 32, statuses
		assert statuses.count(503) == 28, statuses
		assert descriptors(d.pid) < 256 - 32

		other, status = open_relay(port, source="127.0.0.2")
		held.append(other)
		assert status == 200, "another address was not relayed"
		for _ in range(3):
			assert http_get(port, "a.example").fields["label"] == "site-a"

		refused = refusals(d, 28)
		assert all(why.startswith("max-relays-per-ip") for why in refused), refused
		# Rate-limited: far fewer log lines than refusals.
		assert 1 <= len(refusal_lines(d)) < 28, refusal_lines(d)
		os.kill(d.pid, signal.SIGUSR1)
		d.wait_log(r"stats .* relaying=33 .*relays_refused=28\b")
	finally:
		for sock in held:
			sock.close()
	# Closed relays give their places back.
	assert wait_for(lambda: relay_status(port) == 200, 10)


def test_descriptor_reserve_keeps_local_handoffs_going(hx, procs):
	"""With the counts out of the way (max-relays and max-relays-per-ip far
	above what 256 descriptors allow), relays stop at the descriptor budget:
	a reserve of them stays free, so local upstreams are still served."""
	d, port = relay_daemon(hx, procs, nofile=256, max_relays=5000, max_relays_per_ip=5000)
	d.wait_log(r"relays may hold up to 192 descriptors; 64 stay in reserve")
	held = []
	statuses = []
	try:
		for i in range(120):
			sock, status = open_relay(port, source=f"127.0.1.{i % 200 + 1}")
			held.append(sock)
			statuses.append(status)
		relayed = statuses.count(200)
		assert 0 < relayed <= 96, statuses
		assert statuses.count(503) == 120 - relayed, statuses
		assert descriptors(d.pid) <= 256 - 32
		refused = refusals(d, 120 - relayed)
		assert all("descriptor" in why for why in refused), refused
		for i in range(5):
			page = http_get(port, "a.example", host="127.0.0.1")
			assert page.fields["label"] == "site-a"
	finally:
		for sock in held:
			sock.close()


def test_max_relays_refuses_with_the_no_upstream_answer(hx, procs):
	"""At max-relays a further relay is refused as if no target could take
	it: TLS clients get an alert, HTTP clients a 503; the counter says so."""
	http_port = free_port()
	tls_port = free_port()
	d, _ = relay_daemon(hx, procs, listeners=[f"127.0.0.1:{http_port} http", f"127.0.0.1:{tls_port} tls"],
			    max_relays=3)
	held = []
	try:
		for i in range(3):
			sock, status = open_relay(http_port, source=f"127.0.2.{i + 1}")
			held.append(sock)
			assert status == 200
		sock, status = open_relay(http_port, source="127.0.2.9")
		held.append(sock)
		assert status == 503
		assert tls_failure(hx.certs, tls_port, RELAY_NAME) == "TLSV1_UNRECOGNIZED_NAME"
		assert refusals(d, 2) == ["max-relays reached"] * 2
		records = d.wait_access(lambda r: r.get("outcome") == "refused", count=2)
		assert {r["proto"] for r in records} == {"http", "tls"}
		os.kill(d.pid, signal.SIGUSR1)
		d.wait_log(r"stats .*relays_refused=2\b")
		assert http_get(http_port, "a.example").fields["label"] == "site-a"
	finally:
		for sock in held:
			sock.close()
