# test_preload_io.py - data calls on a swapped listener (recv, read, write, send, ...) answer as on a TCP listener and never take a handed-off connection.
import json
from concurrent.futures import ThreadPoolExecutor

from harness import free_port, http_get, https_get
from preload_helpers import PYTHON

NAME = "a.example"


# The idiom of Python's documentation for an HTTPS server: the listening
# socket is wrapped, which makes ssl.py call recv(1) on it.
HTTPS_SERVER_SOURCE = r"""
import http.server, json, signal, ssl, sys

port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

class Handler(http.server.BaseHTTPRequestHandler):
	protocol_version = "HTTP/1.1"
	def do_GET(self):
		body = json.dumps({"served": self.path, "client": self.client_address[0]}).encode()
		self.send_response(200)
		self.send_header("Content-Length", str(len(body)))
		self.send_header("Connection", "close")
		self.end_headers()
		self.wfile.write(body)
	def log_message(self, *args):
		pass

httpd = http.server.HTTPServer(("127.0.0.1", port), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
print(json.dumps({"event": "listening"}), flush=True)
httpd.serve_forever()
"""


def test_python_https_server_with_a_wrapped_listener(hx, runs, certs):
	"""http.server with ctx.wrap_socket(httpd.socket, server_side=True)
	starts under `handoff run` and serves HTTPS through the daemon."""
	port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{port} tls"]))
	script = hx.dir / "https_server.py"
	script.write_text(HTTPS_SERVER_SOURCE)
	cert, key = certs.pair(NAME)
	run = runs("https", [PYTHON, script, port, cert, key], ports=[port])
	run.wait_event("listening")
	d.wait_log(r"registered upstream \d+-\S+ names=a\.example")
	for path in ("/one", "/two"):
		response = https_get(certs, port, NAME, path=path)
		assert response.status == 200
		assert response.cert_subject == NAME
		assert json.loads(response.body) == {"served": path, "client": "127.0.0.1"}


# A server that, with a connection waiting on each, makes every data call on
# its swapped listener and on a real TCP listener (a port not handed off),
# then accepts from the swapped one and answers with what it saw.
DATA_CALLS_SOURCE = r"""
import errno, json, os, select, signal, socket, sys

port, real_port = int(sys.argv[1]), int(sys.argv[2])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
sigpipes = [0]
signal.signal(signal.SIGPIPE, lambda *_: sigpipes.__setitem__(0, sigpipes[0] + 1))

def listener(p):
	sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
	sock.bind(("127.0.0.1", p))
	sock.listen(16)
	sock.setblocking(False)
	return sock

def outcome(call):
	before = sigpipes[0]
	try:
		result = call()
		answer = list(result) if isinstance(result, tuple) else result
		if isinstance(answer, (bytes, bytearray)):
			answer = answer.hex()
		answer = repr(answer)
	except OSError as e:
		answer = errno.errorcode.get(e.errno, str(e.errno))
	return {"answer": answer, "sigpipe": sigpipes[0] - before}

def data_calls(sock):
	fd = sock.fileno()
	calls = {
		"recv": lambda: sock.recv(1),
		"recv_peek": lambda: sock.recv(1, socket.MSG_PEEK),
		"recv_into": lambda: sock.recv_into(bytearray(16)),
		"recvfrom": lambda: sock.recvfrom(16),
		"recvmsg": lambda: sock.recvmsg(16, 64),
		"read": lambda: os.read(fd, 16),
		"read_nothing": lambda: os.read(fd, 0),
		"readv": lambda: os.readv(fd, [bytearray(4), bytearray(4)]),
		"write": lambda: os.write(fd, b"x"),
		"writev": lambda: os.writev(fd, [b"x", b"y"]),
		"send": lambda: sock.send(b"x"),
		"send_nosignal": lambda: sock.send(b"x", socket.MSG_NOSIGNAL),
		"sendto": lambda: sock.sendto(b"x", ("127.0.0.1", 9)),
		"sendmsg": lambda: sock.sendmsg([b"x"]),
		"sendmsg_nosignal": lambda: sock.sendmsg([b"x"], [], socket.MSG_NOSIGNAL),
	}
	return {name: outcome(call) for name, call in calls.items()}

swapped, real = listener(port), listener(real_port)
print(json.dumps({"event": "listening"}), flush=True)
waiting = socket.create_connection(("127.0.0.1", real_port), timeout=30)
for sock in (real, swapped):
	readable, _, _ = select.select([sock], [], [], 60)
	assert readable, "no connection waiting"
seen = {"swapped": data_calls(swapped), "real": data_calls(real)}
print(json.dumps({"event": "probed", **seen}), flush=True)
swapped.setblocking(True)
swapped.settimeout(30)
conn, peer = swapped.accept()
with conn:
	conn.settimeout(30)
	request = b""
	while b"\r\n\r\n" not in request and len(request) < 65536:
		chunk = conn.recv(4096)
		if not chunk:
			break
		request += chunk
	body = json.dumps({"accepted_after_probing": True}).encode()
	conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(body)).encode() +
		     b"\r\nConnection: close\r\n\r\n" + body)
waiting.close()
print(json.dumps({"event": "served"}), flush=True)
signal.pause()
"""


def test_data_calls_on_a_listener_consume_nothing(hx, runs):
	"""recv(1) and every other data call on the swapped listener, while a
	handed-off connection waits, answer exactly as on a TCP listener
	(ENOTCONN; EPIPE with SIGPIPE unless MSG_NOSIGNAL), and the waiting
	connection is still accepted and served afterwards."""
	port, real_port = free_port(), free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{port} http"]))
	script = hx.dir / "data_calls.py"
	script.write_text(DATA_CALLS_SOURCE)
	run = runs("data-calls", [PYTHON, script, port, real_port], ports=[port])
	run.wait_event("listening")
	d.wait_log(r"registered upstream \d+-\S+ names=a\.example")
	with ThreadPoolExecutor(1) as pool:
		client = pool.submit(http_get, port, NAME, timeout=60)
		probed = run.wait_event("probed", timeout=60)
		response = client.result(timeout=90)
	swapped, real = probed["swapped"], probed["real"]
	assert real["recv"] == {"answer": "ENOTCONN", "sigpipe": 0}
	assert real["write"] == {"answer": "EPIPE", "sigpipe": 1}
	assert real["send_nosignal"] == {"answer": "EPIPE", "sigpipe": 0}
	for call in real:
		assert swapped[call] == real[call], f"{call}: swapped {swapped[call]}, TCP {real[call]}"
	assert response.status == 200
	assert json.loads(response.body) == {"accepted_after_probing": True}
	run.wait_event("served")
