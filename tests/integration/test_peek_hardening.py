# test_peek_hardening.py - peek-phase bounds: CPU linear in the bytes however they arrive, IPv6 clients counted per prefix, unforgeable log lines.
import os
import socket
import struct
import subprocess
import sys
import textwrap
import time

import harness
from harness import free_port, read_text, wait_for
from test_performance import cpu_seconds

HEAD_BYTES = 15700
ONE_WRITE_CONNECTIONS = 300
# Before the parser kept its progress, one connection sending a 15.7 KB head
# one byte per segment cost as much CPU as hundreds of one-write ones
# (ASan build, one run: 0.13 s against 0.04 s for 300; after: 0.05 s against 0.03 s).
RATIO_BOUND = 6.0


def big_head():
	"""A valid HTTP/1.1 head of about 15.7 KB in 100 lines."""
	lines = [b"GET / HTTP/1.1\r\n", b"Host: a.example\r\n"]
	i = 0
	while sum(map(len, lines)) < HEAD_BYTES - 170:
		lines.append(b"X-H%03d: " % i + b"v" * 150 + b"\r\n")
		i += 1
	return b"".join(lines) + b"\r\n"


def big_hello():
	"""A ClientHello of about 15.7 KB in one record: SNI a.example and a padding extension."""
	sni = b"a.example"
	ext_sni = struct.pack("!HHHBH", 0, len(sni) + 5, len(sni) + 3, 0, len(sni)) + sni
	pad = HEAD_BYTES - 200
	exts = ext_sni + struct.pack("!HH", 21, pad) + bytes(pad)
	body = (b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
		+ struct.pack("!H", len(exts)) + exts)
	handshake = b"\x01" + struct.pack("!I", len(body))[1:] + body
	return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


def send(port, data, one_byte):
	"""Send data (one byte per segment if asked), then wait for the daemon's answer or close."""
	s = socket.create_connection(("127.0.0.1", port), timeout=30)
	s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
	if one_byte:
		for i in range(len(data)):
			s.send(data[i:i + 1])
			time.sleep(0.00005)
	else:
		s.sendall(data)
	try:
		s.recv(100)
	except OSError:
		pass
	s.close()


def test_peek_cpu_is_linear_in_bytes(hx):
	"""A 15.7 KB HTTP head or TLS hello sent one byte per segment costs the
	daemon at most a few times the CPU of 300 connections sending it in one
	write, 300 times (a ratio within one run; nothing routes, so each ends in a refusal)."""
	http_port, tls_port = free_port(), free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{http_port} http", f"127.0.0.1:{tls_port} tls"],
				peek_timeout="60s"))
	for label, port, data in (("http", http_port, big_head()), ("tls", tls_port, big_hello())):
		start = cpu_seconds(d.pid)
		for _ in range(ONE_WRITE_CONNECTIONS):
			send(port, data, one_byte=False)
		one_write = cpu_seconds(d.pid) - start
		start = cpu_seconds(d.pid)
		send(port, data, one_byte=True)
		one_byte = cpu_seconds(d.pid) - start
		# Clock ticks are 10 ms: count the one-write side as at least one.
		ratio = one_byte / max(one_write, 0.01)
		print(f"{label}: {len(data)} bytes, 1-byte segments {one_byte:.2f}s, "
		      f"{ONE_WRITE_CONNECTIONS} one-write connections {one_write:.2f}s, ratio {ratio:.1f}")
		assert ratio < RATIO_BOUND, (f"{label}: one connection sending {len(data)} bytes one per segment "
					     f"cost {one_byte:.2f}s of CPU, {ONE_WRITE_CONNECTIONS} sending it in one "
					     f"write {one_write:.2f}s")
	d.wait_access(lambda r: r.get("outcome") == "no-route", count=2 * ONE_WRITE_CONNECTIONS + 2, timeout=30)


CLIENTS = textwrap.dedent("""
	import socket, sys, time
	port = int(sys.argv[1])
	held = []
	for source in sys.argv[2:]:
		s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
		s.bind((source, 0))
		s.connect(("2001:db8::1", port))
		held.append((source, s))
		time.sleep(0.2)
	time.sleep(1.0)
	for source, s in held:
		s.settimeout(0.1)
		try:
			answer = s.recv(100)	# a refusal is a 503 and a close
			closed = answer == b"" or answer.startswith(b"HTTP/1.1 503")
		except socket.timeout:
			closed = False
		except OSError:
			closed = True
		print(source, "closed" if closed else "open")
""")


class Ipv6Namespace:
	"""A network namespace whose lo carries 2001:db8::1-3/64 (and 2001:db8:0:1::1/64)."""

	def __init__(self):
		self.name = f"ho-v6-{os.getpid()}"
		subprocess.run(["ip", "netns", "add", self.name], check=True, timeout=30)
		try:
			self.ip("link", "set", "lo", "up")
			for addr in ("2001:db8::1", "2001:db8::2", "2001:db8::3", "2001:db8:0:1::1"):
				self.ip("addr", "add", f"{addr}/64", "dev", "lo", "nodad")
		except BaseException:
			self.remove()
			raise

	def ip(self, *args):
		subprocess.run(["ip", "-n", self.name, *args], check=True, capture_output=True, timeout=30)

	def remove(self):
		subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=30)


def clients_in(ns, port, sources):
	out = subprocess.run(["ip", "netns", "exec", ns.name, sys.executable, "-c", CLIENTS, str(port), *sources],
			     capture_output=True, text=True, timeout=60, check=True).stdout
	return dict(line.split() for line in out.splitlines())


def test_ipv6_clients_count_per_prefix(hx, monkeypatch):
	"""max-per-ip 2: three addresses of one /64 are one client (the third is
	refused), an address of another /64 is another; with ipv6-prefix 128
	each address counts alone."""
	ns = Ipv6Namespace()
	try:
		wrapper = hx.dir / "handoff-in-netns"
		wrapper.write_text(f"#!/bin/sh\nexec ip netns exec {ns.name} {harness.HANDOFF} \"$@\"\n")
		wrapper.chmod(0o755)
		monkeypatch.setattr(harness, "HANDOFF", wrapper)
		port = 8080
		listen = [f"[2001:db8::1]:{port} http"]
		d = hx.daemon(hx.config(listen, peek_timeout="30s", max_per_ip=2), tag="per64")
		state = clients_in(ns, port, ["2001:db8::1", "2001:db8::2", "2001:db8::3", "2001:db8:0:1::1"])
		assert state == {"2001:db8::1": "open", "2001:db8::2": "open", "2001:db8::3": "closed",
				 "2001:db8:0:1::1": "open"}, f"{state}\n{d.tail()}"
		d.wait_access(lambda r: r.get("outcome") == "refused", count=1)
		d.stop()
		d = hx.daemon(hx.config(listen, peek_timeout="30s", max_per_ip=2, ipv6_prefix=128), tag="per128")
		state = clients_in(ns, port, ["2001:db8::1", "2001:db8::2", "2001:db8::3"])
		assert state == {"2001:db8::1": "open", "2001:db8::2": "open", "2001:db8::3": "open"}, \
			f"{state}\n{d.tail()}"
	finally:
		for daemon in hx.daemons:
			daemon.stop()
		ns.remove()


def test_upstream_file_names_cannot_forge_log_lines(hx):
	"""A file in the world-writable upstreams directory whose name carries a
	newline and a fake daemon line leaves one escaped line, not a forged one."""
	port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{port} http"]))
	upstreams = hx.runtime_dir / "upstreams"
	forged = "z names=bank.example uid=0\nhandoff[1]: registered upstream y"
	(upstreams / f"{forged}.names").write_text("bank.example\n")
	d.wait_log(r"ignoring upstream file id", timeout=10)
	log = d.log()
	assert "\nhandoff[1]: registered upstream y" not in log, log
	assert "z names=bank.example uid=0\\x0ahandoff[1]: registered upstream y" in log, log
