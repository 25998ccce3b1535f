# test_limits.py - the daemon's bounds: descriptors (EMFILE), connections peeking in all, connections per client address.
import re
import select
import socket
import time

import pytest

from harness import free_port, http_get, read_text, wait_closed, wait_for


def cpu_seconds(pid):
	fields = read_text(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()
	return (int(fields[11]) + int(fields[12])) / 100.0	# utime + stime, in clock ticks of 1/100 s


def idle_clients(port, count, host="127.0.0.1"):
	"""count connections that send nothing; the caller closes them."""
	socks = []
	for _ in range(count):
		s = socket.create_connection((host, port), timeout=5)
		socks.append(s)
	return socks


def close_all(socks):
	for s in socks:
		s.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_out_of_descriptors_pauses_then_resumes(hx, workers):
	"""With 48 descriptors the daemon runs out while idle clients hold
	connections in the peek phase: it says so, stops accepting without
	spinning (the accepting threads too), and serves again once
	descriptors are free."""
	port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{port} http"], peek_timeout="30s", max_per_ip=1000, workers=workers),
		      nofile=48)
	hx.upstream(["a.example"], "site-a", daemon=d)
	socks = idle_clients(port, 60)
	try:
		d.wait_log(r"not accepting new connections: out of file descriptors", timeout=10)
		before = cpu_seconds(d.pid)
		time.sleep(2.0)
		spent = cpu_seconds(d.pid) - before
		assert spent < 0.5, f"daemon used {spent:.2f}s of CPU in 2s while out of descriptors"
	finally:
		close_all(socks)
	# Freed descriptors: accepting resumes within the one-second pause.
	d.wait_log(r"accepting new connections again", timeout=10)
	assert wait_for(lambda: http_get(port, "a.example").status == 200, 10)


@pytest.mark.parametrize("workers", [1, 2])
def test_max_peeking_pauses_the_listeners(hx, workers):
	"""At max-peeking the listeners stop accepting (the accepting threads
	too); a further client waits in the kernel's backlog and is served as
	soon as a slot frees."""
	port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{port} http"], max_peeking=5, peek_timeout="30s", workers=workers))
	hx.upstream(["a.example"], "site-a", daemon=d)
	socks = idle_clients(port, 5)
	try:
		d.wait_log(r"not accepting new connections: max-peeking reached")
		waiting = socket.create_connection(("127.0.0.1", port), timeout=5)
		waiting.sendall(b"GET / HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n")
		waiting.settimeout(1.0)
		try:
			early = waiting.recv(1)
		except socket.timeout:
			early = None
		assert early is None, "a connection was served while max-peeking connections were peeking"
		socks.pop().close()
		waiting.settimeout(10)
		answer = waiting.recv(100)
		assert answer.startswith(b"HTTP/1.1 200"), answer
		waiting.close()
	finally:
		close_all(socks)
	d.wait_log(r"accepting new connections again")


def test_max_per_ip_refuses_the_extra_connection(hx):
	"""A fourth peeking connection from one address is refused at once;
	another address is not affected."""
	port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{port} http"], max_per_ip=3, peek_timeout="30s"))
	hx.upstream(["a.example"], "site-a", daemon=d)
	socks = idle_clients(port, 3)
	try:
		extra = socket.create_connection(("127.0.0.1", port), timeout=5)
		assert wait_closed(extra, 5) is not None, "the fourth connection was not closed"
		extra.close()
		d.wait_access(lambda r: r.get("outcome") == "refused" and "max-per-ip" in r.get("why", ""))
		other = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
		other.bind(("127.0.0.2", 0))	# another client address
		other.settimeout(10)
		other.connect(("127.0.0.1", port))
		other.sendall(b"GET / HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n")
		assert other.recv(100).startswith(b"HTTP/1.1 200")
		other.close()
	finally:
		close_all(socks)
	assert wait_for(lambda: http_get(port, "a.example").status == 200, 5)


def closed_by_daemon(socks, wait):
	"""The sockets of socks the daemon has closed (EOF or reset) within
	wait seconds; each is checked without blocking after one select()."""
	readable, _, _ = select.select(socks, [], [], wait)
	closed = []
	for s in readable:
		try:
			if s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
				closed.append(s)
		except ConnectionResetError:
			closed.append(s)
		except BlockingIOError:
			pass
	return closed


def test_spare_descriptor_survives_a_resume_by_a_finished_connection(hx):
	"""Out of descriptors, the daemon spends its spare one to accept and
	close one waiting client. When the pause then ends because a peeking
	connection finished (not through the pause's timer), the spare must be
	taken back before the freed descriptor goes to the next client in the
	backlog, so the next exhaustion again closes a waiting client instead of
	leaving every one of them hanging; and a later episode is handled the
	same way."""
	port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{port} http"], peek_timeout="60s", max_per_ip=1000), nofile=48)
	hx.upstream(["a.example"], "site-a", daemon=d)
	socks = idle_clients(port, 60)
	try:
		d.wait_log(r"not accepting new connections: out of file descriptors", timeout=10)
		first = closed_by_daemon(socks, 5)
		assert first, "out of descriptors, no waiting client was closed with the spare descriptor"
		for s in first:
			socks.remove(s)
			s.close()
		# The first client connected is one the daemon accepted and is
		# peeking at: its end frees a descriptor and resumes accepting.
		resumes = len(re.findall(r"accepting new connections again", d.log()))
		socks.pop(0).close()
		d.wait_log(r"accepting new connections again", timeout=10, count=resumes + 1)
		again = closed_by_daemon(socks, 5)
		assert again, ("after a resume by a finished connection, running out of descriptors "
			       "again closed no waiting client: the spare descriptor was not taken back")
	finally:
		close_all(socks)
	d.wait_log(r"accepting new connections again", timeout=10)
	assert wait_for(lambda: http_get(port, "a.example").status == 200, 10)
	# A second episode, from a daemon that has settled: handled the same way.
	pauses = len(re.findall(r"not accepting new connections: out of file descriptors", d.log()))
	socks = idle_clients(port, 60)
	try:
		d.wait_log(r"not accepting new connections: out of file descriptors", timeout=10, count=pauses + 1)
		assert closed_by_daemon(socks, 5), "the second episode closed no waiting client"
	finally:
		close_all(socks)
	assert wait_for(lambda: http_get(port, "a.example").status == 200, 10)
