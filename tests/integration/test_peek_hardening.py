# test_peek_hardening.py - peek-phase bounds: CPU linear in a hello's or head's bytes however they arrive, IPv6 clients counted per prefix, unforgeable log lines.
import os
import socket
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import harness
from harness import free_port, read_text, wait_for

SMALL_HELLO, SMALL_HEAD, BIG = 4000, 2000, 15700
# The kernel charges the softirq work of other traffic to whichever task is
# on the CPU (no IRQ time accounting), so a busy machine only ever adds to
# a measurement: the least of several tries estimates the cost, and more
# tries are made, up to MAX_ROUNDS, while the least costs are still out of
# bounds. Code whose cost grows with the square never gets near the bound.
ROUNDS, MAX_ROUNDS = 3, 8
# The CPU a hello or head costs the daemon when it arrives one byte per
# segment, at two sizes, in one run: work linear in the bytes grows at most
# as the bytes do (3.9 times for hellos); work that peeks (copies) or parses
# the whole prefix again on every segment grows with the square. For heads
# (7.85 times the bytes) the bound also fails work done on every segment,
# as a peek of the whole prefix per segment was (figures in
# docs/architecture.md, peek section).
GROWTH_BOUND = 6.0


def hello(size):
	"""A ClientHello of about size bytes in one record: SNI a.example and a padding extension."""
	sni = b"a.example"
	ext_sni = struct.pack("!HHHBH", 0, len(sni) + 5, len(sni) + 3, 0, len(sni)) + sni
	pad = size - 200
	exts = ext_sni + struct.pack("!HH", 21, pad) + bytes(pad)
	body = (b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
		+ struct.pack("!H", len(exts)) + exts)
	handshake = b"\x01" + struct.pack("!I", len(body))[1:] + body
	return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


def head(size):
	"""A valid HTTP/1.1 head of about size bytes: Host a.example and lines of 158 bytes."""
	lines = [b"GET / HTTP/1.1\r\n", b"Host: a.example\r\n"]
	i = 0
	while sum(map(len, lines)) < size - 170:
		lines.append(b"X-H%03d: " % i + b"v" * 150 + b"\r\n")
		i += 1
	return b"".join(lines) + b"\r\n"


def send_one_byte_segments(port, data, pause):
	"""Send data one byte per segment, pause seconds apart, then wait for the daemon's answer or close."""
	s = socket.create_connection(("127.0.0.1", port), timeout=30)
	s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
	for i in range(len(data)):
		s.send(data[i:i + 1])
		time.sleep(pause)
	try:
		s.recv(100)
	except OSError:
		pass
	s.close()


def cpu_ns(pid):
	"""Nanoseconds on CPU of every thread of pid (schedstat: finer than
	/proc/PID/stat's 10 ms ticks)."""
	total = 0
	for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
		try:
			total += int(stat.read_text().split()[0])
		except (FileNotFoundError, ProcessLookupError):
			pass	# a thread that just ended
	return total


def cpu_growth(hx, monkeypatch, protocol, make_data, small, pause):
	"""Send make_data(small) and make_data(BIG) one byte per segment to a
	listener of protocol, ROUNDS times alternating (up to MAX_ROUNDS, see
	there), and return how many times the least CPU cost of the big one is
	the least of the small one (nothing routes, so each ends in a refusal).
	The release build: ASan's cost per system call would hide the peek and
	parse work."""
	release = harness.REPO / "build" / "handoff"
	assert os.access(release, os.X_OK), f"{release} is missing: run 'make' (the release build)"
	monkeypatch.setattr(harness, "HANDOFF", release)
	port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{port} {protocol}"], peek_timeout="60s"))
	costs = {small: [], BIG: []}
	for rounds in range(1, MAX_ROUNDS + 1):
		for size in costs:
			data = make_data(size)
			start = cpu_ns(d.pid)
			send_one_byte_segments(port, data, pause)
			costs[size].append((cpu_ns(d.pid) - start) / 1e6)
		growth = min(costs[BIG]) / max(min(costs[small]), 0.01)
		if rounds >= ROUNDS and growth < GROWTH_BOUND:
			break
	d.wait_access(lambda r: r.get("outcome") == "no-route", count=2 * rounds, timeout=30)
	print(f"{protocol}: CPU ms for one {small}/{BIG}-byte prefix in 1-byte segments: {costs}, growth {growth:.1f}")
	return growth, costs


def test_peek_cpu_is_linear_in_hello_bytes(hx, monkeypatch):
	"""A ClientHello sent one byte per segment costs the daemon CPU in
	proportion to its length, not to its square, even when the kernel wakes
	the daemon before the bytes the record headers announce are there. With
	0.2 ms between segments each arrives alone and the kernel's receive
	memory for the big hello comes under pressure (ss -tm: more than 7/8 of
	its receive buffer from about 7000 bytes on), which wakes the daemon
	below SO_RCVLOWAT on every segment."""
	growth, costs = cpu_growth(hx, monkeypatch, "tls", hello, SMALL_HELLO, 0.0002)
	assert growth < GROWTH_BOUND, (f"a {BIG}-byte hello in 1-byte segments cost {growth:.1f} times "
				       f"a {SMALL_HELLO}-byte one (ms: {costs}): the peek work is not linear")


def test_peek_cpu_is_linear_in_head_bytes(hx, monkeypatch):
	"""An HTTP head sent one byte per segment costs the daemon no work per
	segment: no event copies the whole prefix again for a byte or two, so
	7.85 times the bytes cost less than GROWTH_BOUND times the CPU."""
	growth, costs = cpu_growth(hx, monkeypatch, "http", head, SMALL_HEAD, 0.00005)
	assert growth < GROWTH_BOUND, (f"a {BIG}-byte head in 1-byte segments cost {growth:.1f} times "
				       f"a {SMALL_HEAD}-byte one (ms: {costs}): the peek work is not linear")


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
