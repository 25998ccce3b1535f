# socket_activated.py - an HTTP server that serves on the listener systemd-style socket activation hands it as descriptor 3 (LISTEN_FDS=1), as socket-activated servers do.
import http.server
import os
import socket
import sys

LISTEN_FDS_START = 3


class Handler(http.server.BaseHTTPRequestHandler):
	def do_GET(self):
		body = b"socket-activated\n"
		self.send_response(200)
		self.send_header("Content-Length", str(len(body)))
		self.end_headers()
		self.wfile.write(body)

	def log_message(self, *args):
		pass


if os.environ.get("LISTEN_FDS") != "1":
	sys.exit("socket_activated.py: expected LISTEN_FDS=1 (run it under systemd-socket-activate)")
server = http.server.HTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
server.socket.close()
server.socket = socket.socket(fileno=LISTEN_FDS_START)
server.serve_forever()
