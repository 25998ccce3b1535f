# target_server.py - a TCP target for the relay tests: "http" serves its label or N bytes over HTTP/1.1, "summary" reads to EOF and answers with the byte count and SHA-256.
"""Usage: target_server.py http|summary PORT LABEL

Listens on 127.0.0.1:PORT and prints "ready" on stdout once it accepts.

http     GET /          200 "label=LABEL\\n" (keep-alive unless asked to close)
         GET /bytes/N   200, N bytes where byte i is (i * 7 + 13) & 0xff
summary  reads the connection until the client's half-close (EOF), then
         sends "label=LABEL bytes=N sha256=HEX\\n" and closes: only a relay
         that passes the half-close on lets the client see the answer.
"""
import hashlib
import socketserver
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATTERN_BLOCK = bytes((i * 7 + 13) & 0xFF for i in range(256))


class Server(ThreadingHTTPServer):
	daemon_threads = True
	allow_reuse_address = True	# the checks restart a target on the same port
	request_queue_size = 256


class LabelHandler(BaseHTTPRequestHandler):
	protocol_version = "HTTP/1.1"
	label = "-"

	def do_GET(self):
		if self.path.startswith("/bytes/"):
			self.send_pattern(int(self.path[len("/bytes/"):]))
			return
		body = f"label={self.label}\n".encode()
		self.send_response(200)
		self.send_header("Content-Type", "text/plain")
		self.send_header("Content-Length", str(len(body)))
		self.end_headers()
		self.wfile.write(body)

	def send_pattern(self, length):
		self.send_response(200)
		self.send_header("Content-Type", "application/octet-stream")
		self.send_header("Content-Length", str(length))
		self.end_headers()
		block = PATTERN_BLOCK * 256	# 64 KiB, a whole number of 256-byte periods
		sent = 0
		while sent < length:
			chunk = block[:min(len(block), length - sent)]
			self.wfile.write(chunk)
			sent += len(chunk)

	def log_message(self, format, *args):	# noqa: A002 (the base class's name)
		sys.stderr.write(f"{self.client_address[0]}:{self.client_address[1]} {format % args}\n")


class SummaryHandler(socketserver.BaseRequestHandler):
	label = "-"

	def handle(self):
		digest = hashlib.sha256()
		count = 0
		while True:
			data = self.request.recv(1 << 20)
			if not data:
				break
			digest.update(data)
			count += len(data)
		self.request.sendall(f"label={self.label} bytes={count} sha256={digest.hexdigest()}\n".encode())


class SummaryServer(socketserver.ThreadingTCPServer):
	daemon_threads = True
	allow_reuse_address = True


def main():
	mode, port, label = sys.argv[1], int(sys.argv[2]), sys.argv[3]
	if mode == "http":
		handler = type("Handler", (LabelHandler,), {"label": label})
		server = Server(("127.0.0.1", port), handler)
	elif mode == "summary":
		handler = type("Handler", (SummaryHandler,), {"label": label})
		server = SummaryServer(("127.0.0.1", port), handler)
	else:
		sys.exit(f"unknown mode {mode!r}")
	print("ready", flush=True)
	server.serve_forever()


if __name__ == "__main__":
	main()
