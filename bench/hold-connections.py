#!/usr/bin/env python3
# hold-connections.py - open N connections to a handoff listener, bring them to one state, and hold them until told to close.
"""Usage: hold-connections.py MODE --port PORT [--count N] [--name NAME]

MODE is what each connection does before it is held:

  silent        connects and sends nothing (the daemon waits in the peek phase)
  partial-tls   sends the first --partial bytes of a real TLS ClientHello for
                NAME (made by Python's ssl module), so the daemon is in the
                middle of peeking
  http          sends a complete HTTP/1.1 keep-alive request with Host: NAME,
                reads the whole response, and stays open: the connection has
                been handed off and is held by the server, not the daemon

Once all N are in that state it prints "held N" on standard output and waits
for SIGTERM (or, with --stdin, until standard input is closed or a line
arrives); then it closes every connection, prints "closed N" and exits. Each connect, send and
response has a timeout (--timeout); any failure ends the program with a
message and status 1. Uses the Python standard library only."""
import argparse
import resource
import signal
import socket
import ssl
import sys


class Released(Exception):
	"""SIGTERM: close the connections and exit."""


def client_hello(name):
	"""The bytes of a real TLS ClientHello with SNI name (TLS 1.2 and 1.3 offered)."""
	ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
	ctx.check_hostname = False
	ctx.verify_mode = ssl.CERT_NONE
	incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
	tls = ctx.wrap_bio(incoming, outgoing, server_hostname=name)
	try:
		tls.do_handshake()
	except ssl.SSLWantReadError:
		pass
	hello = outgoing.read()
	if len(hello) < 64 or hello[0] != 0x16:
		raise RuntimeError("the ssl module made no ClientHello")
	return hello


def raise_nofile(count):
	"""Make room for count sockets (soft limit up to the hard one)."""
	soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
	want = count + 64
	if soft >= want:
		return
	if hard != resource.RLIM_INFINITY and hard < want:
		sys.exit(f"hold-connections.py: the descriptor limit is {hard}, {want} needed "
			 f"(raise it with ulimit -n as root)")
	resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def read_response(sock):
	"""Read one HTTP/1.1 response with a Content-Length; returns the status."""
	data = b""
	while b"\r\n\r\n" not in data:
		chunk = sock.recv(65536)
		if not chunk:
			raise ConnectionError("closed before the response head")
		data += chunk
		if len(data) > 65536:
			raise ConnectionError("response head over 64 KiB")
	head, _, body = data.partition(b"\r\n\r\n")
	lines = head.decode("latin-1").split("\r\n")
	status = int(lines[0].split(" ", 2)[1])
	length = None
	for line in lines[1:]:
		key, _, value = line.partition(":")
		if key.strip().lower() == "content-length":
			length = int(value.strip())
	if length is None:
		raise ConnectionError("response without Content-Length: cannot keep the connection")
	while len(body) < length:
		chunk = sock.recv(65536)
		if not chunk:
			raise ConnectionError("closed in the middle of the response body")
		body += chunk
	if len(body) != length:
		raise ConnectionError("more bytes than the response announced")
	return status


def open_connections(args):
	payload = b""
	if args.mode == "partial-tls":
		hello = client_hello(args.name)
		payload = hello[:min(args.partial, len(hello) - 1)]
	elif args.mode == "http":
		payload = (f"GET {args.path} HTTP/1.1\r\nHost: {args.name}\r\n"
			   f"User-Agent: handoff-bench-hold\r\n\r\n").encode()
	held = []
	try:
		# In batches, so that the requests of a batch are handled while
		# the next ones are sent, and no listen backlog overflows.
		for start in range(0, args.count, args.batch):
			batch = []
			for _ in range(min(args.batch, args.count - start)):
				sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
				held.append(sock)
				sock.settimeout(args.timeout)
				sock.connect((args.host, args.port))
				if payload:
					sock.sendall(payload)
				batch.append(sock)
			if args.mode == "http":
				for sock in batch:
					status = read_response(sock)
					if status != 200:
						raise ConnectionError(f"HTTP status {status}, expected 200")
	except (OSError, ValueError, IndexError) as exc:
		for sock in held:
			sock.close()
		sys.exit(f"hold-connections.py: connection {len(held)} of {args.count} ({args.mode}): {exc}")
	return held


def main():
	parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
	parser.add_argument("mode", choices=("silent", "partial-tls", "http"))
	parser.add_argument("--host", default="127.0.0.1")
	parser.add_argument("--port", type=int, required=True)
	parser.add_argument("--count", type=int, default=10000)
	parser.add_argument("--name", default="bench.example", help="SNI or Host")
	parser.add_argument("--path", default="/index.html", help="http: the request's path")
	parser.add_argument("--partial", type=int, default=100, help="partial-tls: bytes of the hello sent")
	parser.add_argument("--batch", type=int, default=200)
	parser.add_argument("--timeout", type=float, default=30.0, help="seconds per connect, send or response")
	parser.add_argument("--stdin", action="store_true", help="release on the end of standard input, not SIGTERM")
	args = parser.parse_args()

	raise_nofile(args.count)

	def on_term(_signo, _frame):
		raise Released()

	signal.signal(signal.SIGTERM, on_term)
	held = []
	try:
		held = open_connections(args)
		print(f"held {len(held)}", flush=True)
		if args.stdin:
			sys.stdin.readline()
		else:
			while True:
				signal.pause()
	except (Released, KeyboardInterrupt):
		pass
	for sock in held:
		sock.close()
	print(f"closed {len(held)}", flush=True)


if __name__ == "__main__":
	main()
