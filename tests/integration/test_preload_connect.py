# test_preload_connect.py - a server under `handoff run` that connects to its own listening address reaches its own accept(), as on a TCP listener.
import os
import signal
import socket
import struct
from pathlib import Path

import pytest

from harness import free_port, http_get
from preload_helpers import PYTHON, json_body, names_files

NAME = "a.example"
PROBE = Path(__file__).resolve().parent / "self_connect_probe.py"
WIRE_LOCAL_MAGIC = 0x4c464f48


def has_ipv6_loopback():
	try:
		with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
			s.bind(("::1", 0))
		return True
	except OSError:
		return False


def start_self_connecting(hx, runs, bind, target, *options):
	port = free_port(("127.0.0.1", "::1") if has_ipv6_loopback() else ("127.0.0.1",))
	daemon = hx.daemon(hx.config([f"127.0.0.1:{port} http"]))
	run = runs("self", [PYTHON, str(PROBE), "--port", port, "--bind", bind,
			    "--target", target, *options], ports=[port])
	listening = run.wait_event("listening")
	daemon.wait_log(rf"registered upstream {listening['pid']}-")
	return port, run, listening["pid"]


def wake(run, pid, count):
	os.kill(pid, signal.SIGUSR1)
	return run.wait_event("woken", count=count, timeout=30.0)


def unmapped(endpoint):
	"""[address, port] with an IPv4-mapped IPv6 address as plain IPv4."""
	address, port = endpoint
	return [address.removeprefix("::ffff:") if "." in address else address, port]


def check_self_connection(report):
	assert report["accepted"], report
	assert report["marker"] == "wake" and report["reply"] == "awake", report
	# accept() reports the connecting socket itself, as TCP would (v4-mapped
	# on an IPv6 listener).
	assert unmapped(report["accept_peer"]) == unmapped(report["client_local"]), report
	assert report["conn_peer"] == report["accept_peer"], report
	# A true TCP socket on both ends.
	assert report["conn_type"] == socket.SOCK_STREAM, report
	assert report["conn_protocol"] == socket.IPPROTO_TCP, report
	# Every descriptor the connection used is closed again.
	assert report["fds_after"] == report["fds_before"], report


CASES = [
	# (listener bound to, connect target)
	("127.0.0.1", "127.0.0.1"),
	("0.0.0.0", "127.0.0.1"),
	("0.0.0.0", "0.0.0.0"),
	("::", "::1"),
	("::", "127.0.0.1"),
	("::", "::ffff:127.0.0.1"),
]


@pytest.mark.parametrize("nonblocking", [False, True], ids=["blocking", "nonblocking"])
@pytest.mark.parametrize("bind,target", CASES)
def test_connect_to_own_listener_wakes_accept(hx, runs, bind, target, nonblocking):
	"""A thread blocked in accept() on the swapped listener returns the
	connection another thread of the server makes to the listening
	address; the daemon's connections still arrive before and after."""
	if ":" in bind + target and not has_ipv6_loopback():
		pytest.skip("no IPv6 loopback address on this host")
	options = ["--nonblocking"] if nonblocking else []
	port, run, pid = start_self_connecting(hx, runs, bind, target, *options)
	assert json_body(http_get(port, NAME))["pid"] == pid
	for count in (1, 2):
		report = wake(run, pid, count)
		check_self_connection(report)
		if nonblocking:
			assert report["connect"] == "EINPROGRESS", report
			assert report["writable"] and report["so_error"] == 0, report
		# getpeername() on the connecting socket: the address it asked for.
		expected_peer = "127.0.0.1" if target == "0.0.0.0" else target
		assert report["client_peer"] == [expected_peer, port], report
	assert json_body(http_get(port, NAME))["pid"] == pid


@pytest.mark.parametrize("bind,target", [("0.0.0.0", "127.0.0.1"), ("::", "::1")])
def test_connection_reset_before_accept_is_still_accepted(hx, runs, bind, target):
	"""A server that connects and at once closes with SO_LINGER 0 (Tomcat
	does) before its acceptor runs: accept() returns the connection, with
	the connecting socket's address, as on a TCP listener."""
	if ":" in bind + target and not has_ipv6_loopback():
		pytest.skip("no IPv6 loopback address on this host")
	port, run, pid = start_self_connecting(hx, runs, bind, target, "--reset")
	report = wake(run, pid, 1)
	assert report["accepted"], report
	assert unmapped(report["accept_peer"]) == unmapped(report["client_local"]), report


def inject(receiver_path, conn):
	"""Send conn to the receiver as a connection-to-oneself message with a
	guessed (all-zero) token, as another process without the token would."""
	peer = socket.inet_pton(socket.AF_INET, "127.0.0.1")
	address = struct.pack("=HH4s", socket.AF_INET, 0, peer).ljust(128, b"\0")
	message = struct.pack("=II32sI4x128s", WIRE_LOCAL_MAGIC, 176, bytes(32), 16, address)
	with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
		sender.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
					    struct.pack("i", conn.fileno()))], 0, str(receiver_path))


def test_connection_from_another_process_is_not_taken(hx, runs):
	"""Only the server itself queues a connection to itself: the same
	message from a process without its token is dropped, and accept()
	returns the daemon's next connection instead."""
	port, run, pid = start_self_connecting(hx, runs, "127.0.0.1", "127.0.0.1")
	receivers = [names.with_suffix(".sock") for names in names_files(hx.runtime_dir)]
	assert len(receivers) == 1, receivers
	with socket.socket() as server, socket.socket() as client:
		server.bind(("127.0.0.1", 0))
		server.listen(1)
		client.connect(server.getsockname())
		conn, _ = server.accept()
		with conn:
			inject(receivers[0], conn)
			client.sendall(b"injected")
		# The server's acceptor answers the daemon's request, not the
		# injected connection, which it would hand to the main thread.
		assert json_body(http_get(port, NAME))["pid"] == pid
		client.settimeout(10.0)
		try:	# dropped: closed by the receiver, unread data making it a reset
			assert client.recv(16) == b""
		except ConnectionResetError:
			pass
	report = wake(run, pid, 1)
	check_self_connection(report)



def test_connection_never_goes_to_the_name_the_receiver_was_bound_under(hx, runs):
	"""The receiver was bound as upstreams/.ID/ID.sock before .ID became ID;
	anyone can create that name again in the sticky upstreams directory. A
	socket put there gets neither the connection nor the token: the server
	sends to ID/ID.sock and its own accept() returns the connection."""
	port, run, pid = start_self_connecting(hx, runs, "127.0.0.1", "127.0.0.1")
	names = names_files(hx.runtime_dir)
	assert len(names) == 1, names
	decoy_dir = names[0].parent.with_name("." + names[0].parent.name)
	decoy_dir.mkdir()
	with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as decoy:
		decoy.bind(str(decoy_dir / names[0].with_suffix(".sock").name))
		decoy.setblocking(False)
		report = wake(run, pid, 1)
		check_self_connection(report)
		try:
			stolen = decoy.recvmsg(256, socket.CMSG_SPACE(16))
		except BlockingIOError:
			stolen = None
	for _, _, data in (stolen[1] if stolen else []):
		os.close(struct.unpack("i", data[:4])[0])
	assert stolen is None, stolen


def test_connect_after_exec_reaches_the_inherited_listener(hx, runs):
	"""A server that exec()s itself keeping its listener (nginx's binary
	upgrade, gunicorn's USR2) adopts the receiver it inherits, which it did
	not register: its connections to itself reach it all the same."""
	port, run, pid = start_self_connecting(hx, runs, "127.0.0.1", "127.0.0.1", "--reexec")
	assert json_body(http_get(port, NAME))["pid"] == pid
	check_self_connection(wake(run, pid, 1))
	assert json_body(http_get(port, NAME))["pid"] == pid
