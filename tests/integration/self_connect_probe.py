# self_connect_probe.py - an unmodified Python server that wakes its own blocked accept() by connecting to its listening address, as Tomcat's acceptor does; run under libhandoff-preload.so by test_preload_connect.py.
"""Usage: self_connect_probe.py --port P --bind ADDR --target ADDR [--nonblocking] [--reset] [--reexec]

One thread blocks in accept() on a listener bound to (ADDR, P), serving
each connection it gets (a request through the daemon gets a JSON reply).
When the test sends SIGUSR1, the main thread connects to (TARGET, P),
blocking or non-blocking (EINPROGRESS, then writable), sends a marker and
reports what accept() returned: one JSON object per line on stdout."""
import argparse
import errno
import json
import os
import select
import signal
import socket
import struct
import sys
import threading
import time

TIMEOUT = 20.0


def emit(event, **fields):
	print(json.dumps(dict(event=event, pid=os.getpid(), **fields)), flush=True)


def open_fds():
	return sorted(int(n) for n in os.listdir("/proc/self/fd"))


def wait_blocked_in_accept(thread, listener):
	"""Wait until the acceptor thread sleeps in the call that waits for
	its next connection (accept(), or the receiver's recvmsg() under the
	preload: a system call whose first argument is the listener). Before
	that it may still hold the descriptor of the connection it just served,
	or handoff_accept()'s two probes for free descriptors, which a listing
	of /proc/self/fd would count."""
	path = f"/proc/self/task/{thread.native_id}/syscall"
	deadline = time.monotonic() + TIMEOUT
	while time.monotonic() < deadline:
		fields = open(path).read().split()
		if len(fields) > 1 and fields[0] not in ("running", "-1") and \
		   int(fields[1], 16) == listener.fileno():
			return
		time.sleep(0.01)
	raise SystemExit(f"the acceptor thread never went back to accept(): {fields}")


def family_of(address):
	return socket.AF_INET6 if ":" in address else socket.AF_INET


def acceptor(listener, accepted):
	"""Block in accept(); daemon requests are answered, everything else is
	handed to the main thread, which waits for the self-connection."""
	while True:
		conn, peer = listener.accept()
		conn.settimeout(TIMEOUT)
		first = conn.recv(4096)
		if first.startswith(b"GET "):
			body = json.dumps({"pid": os.getpid()}).encode()
			conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
				     b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
			conn.close()
			continue
		accepted.put((conn, peer, first))


def connect_to_self(args):
	"""Connect to the listening address as the server would; returns the
	connected socket and how the connect went."""
	client = socket.socket(family_of(args.target), socket.SOCK_STREAM)
	how = {}
	if args.nonblocking:
		client.setblocking(False)
		code = client.connect_ex((args.target, args.port))
		how["connect"] = errno.errorcode.get(code, str(code)) if code else "0"
		writable = select.select([], [client], [], TIMEOUT)[1]
		how["writable"] = bool(writable)
		how["so_error"] = client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
		client.setblocking(True)
	else:
		client.settimeout(TIMEOUT)
		client.connect((args.target, args.port))
		how["connect"] = "0"
	client.settimeout(TIMEOUT)
	how["client_local"] = list(client.getsockname()[:2])
	how["client_peer"] = list(client.getpeername()[:2])
	return client, how


def reset_before_accept(args, listener, wake):
	"""Connect and close at once with SO_LINGER 0, as Tomcat's stop does,
	before accept() runs: accept() still returns the connection."""
	emit("listening", fds=open_fds())
	wake.wait()
	client, how = connect_to_self(args)
	client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
	client.close()
	listener.settimeout(TIMEOUT)
	try:
		conn, peer = listener.accept()
	except OSError as e:
		emit("woken", accepted=False, error=str(e), **how)
		return
	conn.close()
	emit("woken", accepted=True, accept_peer=list(peer[:2]), **how)
	wake.clear()
	wake.wait()


def main(argv):
	import queue

	parser = argparse.ArgumentParser(prog="self_connect_probe.py")
	parser.add_argument("--port", type=int, required=True)
	parser.add_argument("--bind", required=True)
	parser.add_argument("--target", required=True)
	parser.add_argument("--nonblocking", action="store_true")
	parser.add_argument("--reset", action="store_true",
			    help="connect and close with a reset before accept() runs")
	parser.add_argument("--reexec", action="store_true",
			    help="exec() this program again, the listener kept, and wake that one")
	parser.add_argument("--inherited-fd", type=int, help=argparse.SUPPRESS)
	args = parser.parse_args(argv)

	if args.inherited_fd is not None:
		listener = socket.socket(fileno=args.inherited_fd)
	else:
		listener = socket.socket(family_of(args.bind), socket.SOCK_STREAM)
		listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
		if listener.family == socket.AF_INET6:
			listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
		listener.bind((args.bind, args.port))
		listener.listen(16)
	if args.reexec and args.inherited_fd is None:
		# The new image adopts the receiver it inherits; its connections to
		# itself must reach it too.
		listener.set_inheritable(True)
		kept = [a for a in argv if a != "--reexec"]
		os.execv(sys.executable, [sys.executable, __file__, *kept,
					  "--inherited-fd", str(listener.fileno())])
	accepted = queue.Queue()
	wake = threading.Event()
	signal.signal(signal.SIGUSR1, lambda *_: wake.set())
	signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
	if args.reset:
		return reset_before_accept(args, listener, wake)
	thread = threading.Thread(target=acceptor, args=(listener, accepted), daemon=True)
	thread.start()
	emit("listening", fds=open_fds())

	while True:
		wake.wait()
		wake.clear()
		# The acceptor may still be closing the daemon's last request.
		wait_blocked_in_accept(thread, listener)
		before = open_fds()
		client, how = connect_to_self(args)
		client.sendall(b"wake")
		try:
			conn, peer, first = accepted.get(timeout=TIMEOUT)
		except queue.Empty:
			emit("woken", accepted=False, **how)
			client.close()
			continue
		conn.sendall(b"awake")
		reply = client.recv(16)
		report = dict(how, accepted=True, marker=first.decode(errors="replace"),
			      reply=reply.decode(errors="replace"), accept_peer=list(peer[:2]),
			      conn_peer=list(conn.getpeername()[:2]),
			      conn_type=conn.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE),
			      conn_protocol=conn.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL),
			      conn_nodelay=conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1))
		conn.close()
		client.close()
		report["fds_before"] = before
		# Compared in the same state: the acceptor waiting again, nothing
		# else of ours open. A descriptor more is a leak.
		wait_blocked_in_accept(thread, listener)
		report["fds_after"] = open_fds()
		report["fd_targets"] = {fd: os.readlink(f"/proc/self/fd/{fd}")
					for fd in report["fds_after"] if os.path.exists(f"/proc/self/fd/{fd}")}
		emit("woken", **report)


if __name__ == "__main__":
	main(sys.argv[1:])
