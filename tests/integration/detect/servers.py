# servers.py - two small unmodified servers for test_detect.py to run under `handoff run`: a TLS server for one ALPN id, and a server-speaks-first one.
"""python3 servers.py tls PORT CERT KEY ALPN
	HTTPS on 127.0.0.1:PORT that accepts only ALPN ALPN and answers every
	request with "server=alpn-server alpn=SELECTED peer=ADDR:PORT".
python3 servers.py banner PORT
	On 127.0.0.1:PORT, says "220 first.example ready" as soon as a client
	connects, then answers one line with "echo LINE" and closes.

Both are ordinary socket servers (bind, listen, accept): under `handoff
run` the preload library gives them the clients the daemon hands off.
Each connection is bounded by a 10 s timeout; SIGTERM ends the server."""
import socket
import ssl
import sys

TIMEOUT = 10.0


def listener(port):
	sock = socket.socket()
	sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
	sock.bind(("127.0.0.1", port))
	sock.listen(16)
	print("listening", flush=True)
	return sock


def serve_tls(port, cert, key, alpn):
	ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
	ctx.load_cert_chain(cert, key)
	ctx.set_alpn_protocols([alpn])
	sock = listener(port)
	while True:
		conn, peer = sock.accept()
		conn.settimeout(TIMEOUT)
		try:
			with ctx.wrap_socket(conn, server_side=True) as tls:
				head = b""
				while b"\r\n\r\n" not in head and len(head) < 65536:
					chunk = tls.recv(4096)
					if not chunk:
						break
					head += chunk
				body = f"server=alpn-server alpn={tls.selected_alpn_protocol()} peer={peer[0]}:{peer[1]}\n"
				tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
					    b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body.encode())
		except (OSError, ssl.SSLError) as e:
			print(f"connection from {peer}: {e}", flush=True)


def serve_banner(port):
	sock = listener(port)
	while True:
		conn, peer = sock.accept()
		conn.settimeout(TIMEOUT)
		with conn:
			try:
				conn.sendall(b"220 first.example ready\r\n")
				line = conn.recv(4096)
				conn.sendall(b"echo " + line)
				print(f"served {peer[0]}:{peer[1]}", flush=True)
			except OSError as e:
				print(f"connection from {peer}: {e}", flush=True)


if __name__ == "__main__":
	if len(sys.argv) == 6 and sys.argv[1] == "tls":
		serve_tls(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
	elif len(sys.argv) == 3 and sys.argv[1] == "banner":
		serve_banner(int(sys.argv[2]))
	else:
		sys.exit(__doc__)
