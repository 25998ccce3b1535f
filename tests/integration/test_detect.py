# test_detect.py - routing by ALPN, and the detect listener: TLS, SSH (OpenSSH under handoff run) and silent clients on one port.
import os
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from harness import HANDOFF, REQUEST_TIMEOUT, START_TIMEOUT, STOP_TIMEOUT, free_port, https_get, read_text, wait_for
from preload_helpers import terminate


class Backend:
	"""A plain TCP server on loopback that remembers the first bytes of
	every connection; with a banner it speaks first (a server-first
	protocol such as SMTP) and echoes what it then reads."""

	def __init__(self, banner=None):
		self.sock = socket.socket()
		self.sock.bind(("127.0.0.1", 0))
		self.sock.listen(16)
		self.port = self.sock.getsockname()[1]
		self.banner = banner
		self.first_bytes = []
		self.thread = threading.Thread(target=self.serve, daemon=True)
		self.thread.start()

	def serve(self):
		while True:
			try:
				conn, _ = self.sock.accept()
			except OSError:
				return
			with conn:
				conn.settimeout(REQUEST_TIMEOUT)
				try:
					if self.banner:
						conn.sendall(self.banner)
					data = conn.recv(4096)
					self.first_bytes.append(data)
					if self.banner:
						conn.sendall(b"echo " + data)
				except OSError:
					self.first_bytes.append(b"")

	def close(self):
		self.sock.close()


def tls_hello_to(port, name, alpn):
	"""Start a TLS handshake offering alpn; the relay target is no TLS
	server, so only the ClientHello matters. Returns when the connection ends."""
	ctx = ssl.create_default_context()
	ctx.check_hostname = False
	ctx.verify_mode = ssl.CERT_NONE
	ctx.set_alpn_protocols(alpn)
	with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT) as raw:
		try:
			with ctx.wrap_socket(raw, server_hostname=name):
				pass
		except (ssl.SSLError, OSError):
			pass


def test_alpn_routes_pick_by_client_preference(hx):
	"""A name's clients go to the route of the first ALPN id in their
	preference order that has one, else to the name's route."""
	h2, acme, plain = Backend(), Backend(), Backend()
	port = free_port()
	config = hx.config([f"127.0.0.1:{port} tls"]) + (
		f"route a.example alpn h2 to tcp:127.0.0.1:{h2.port}\n"
		f"route a.example alpn acme-tls/1 to tcp:127.0.0.1:{acme.port}\n"
		f"route a.example to tcp:127.0.0.1:{plain.port}\n")
	d = hx.daemon(config)
	try:
		cases = [(["acme-tls/1"], acme), (["h2", "http/1.1"], h2), (["http/1.1", "h2"], h2),
			 (["http/1.1"], plain), ([], plain), (["spdy/3", "acme-tls/1", "h2"], acme)]
		for alpn, backend in cases:
			before = [len(b.first_bytes) for b in (h2, acme, plain)]
			tls_hello_to(port, "a.example", alpn)
			assert wait_for(lambda: len(backend.first_bytes) > before[(h2, acme, plain).index(backend)],
					REQUEST_TIMEOUT), f"ALPN {alpn}: no connection at the expected target"
			assert backend.first_bytes[-1][:1] == b"\x16"
		assert [len(b.first_bytes) for b in (h2, acme, plain)] == [2, 2, 2]
	finally:
		for b in (h2, acme, plain):
			b.close()


def test_alpn_claim_takes_only_its_clients(hx):
	"""An upstream whose names file says 'alpn acme-tls/1' gets a.example's
	acme-tls/1 clients; the name's ordinary upstream keeps the others."""
	port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{port} tls"]))
	site = hx.upstream(["a.example"], "site", daemon=d)
	# A second upstream for the same name, limited to acme-tls/1 by the
	# names file line that libhandoff writes for handoff_listen_alpn().
	responder = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
	ident = f"{os.getpid()}-00000000000000aa"
	updir = hx.runtime_dir / "upstreams"
	tmp = updir / f".{ident}"
	tmp.mkdir(mode=0o755)
	responder.bind(str(tmp / f"{ident}.sock"))
	(tmp / f"{ident}.names").write_text("alpn acme-tls/1\na.example\n")
	os.rename(tmp, updir / ident)
	d.wait_log(rf"registered upstream {ident} names=a\.example uid=\d+ alpn=acme-tls/1")
	try:
		response = https_get(hx.certs, port, "a.example")
		assert response.status == 200 and response.cert_subject == "a.example"
		responder.settimeout(REQUEST_TIMEOUT)
		client = threading.Thread(target=tls_hello_to, args=(port, "a.example", ["acme-tls/1"]))
		client.start()
		msg, anc, flags, _ = responder.recvmsg(4096, socket.CMSG_SPACE(4 * 4))
		fds = [int.from_bytes(data[i:i + 4], "little") for level, kind, data in anc
		       if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS for i in range(0, len(data), 4)]
		assert len(fds) == 1, "the acme-tls/1 client was not handed to the ALPN upstream"
		os.close(fds[0])
		client.join(REQUEST_TIMEOUT)
		response = https_get(hx.certs, port, "a.example")
		assert response.status == 200
		d.wait_access(lambda r: r.get("upstream") == ident and r.get("outcome") == "handoff")
	finally:
		responder.close()


def sshd_setup(directory, port):
	"""Host key, client key and a private sshd_config in directory."""
	keys = directory / "ssh"
	keys.mkdir(mode=0o700)
	for name in ("host", "client"):
		subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)],
			       check=True, timeout=60)
	shutil.copy(keys / "client.pub", keys / "authorized_keys")
	os.makedirs("/run/sshd", mode=0o755, exist_ok=True)	# sshd's privilege separation directory
	config = keys / "sshd_config"
	config.write_text(
		f"Port {port}\nListenAddress 127.0.0.1\nHostKey {keys}/host\nPidFile {keys}/sshd.pid\n"
		f"AuthorizedKeysFile {keys}/authorized_keys\nStrictModes no\nUsePAM no\n"
		"PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
		"LogLevel VERBOSE\n")
	return keys, config


def ssh_command(keys, port, command):
	return subprocess.run(["ssh", "-i", str(keys / "client"), "-p", str(port), "-o", "StrictHostKeyChecking=no",
			       "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20",
			       "root@127.0.0.1", command], capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(os.geteuid() != 0 or not os.access("/usr/sbin/sshd", os.X_OK),
		    reason="needs root and openssh-server (tests/integration/detect/packages.txt)")
def test_detect_listener_serves_tls_ssh_and_silent_clients(hx):
	"""One detect port: HTTPS to a libhandoff upstream, SSH to OpenSSH's
	sshd under handoff run --protocol ssh (which sees the real client
	address), a silent client to a server-first relay target, and bytes of
	no known protocol refused."""
	port, sshd_port = free_port(), free_port()
	banner = Backend(banner=b"220 banner.example ESMTP\r\n")
	config = hx.config([f"127.0.0.1:{port} detect detect-timeout 1s"],
			   grants=("* to self", "protocol ssh to self")) + \
		f"route protocol silent to tcp:127.0.0.1:{banner.port}\n"
	d = hx.daemon(config)
	hx.upstream(["a.example"], "site", daemon=d)
	keys, sshd_config = sshd_setup(hx.dir, sshd_port)
	sshd_log = hx.dir / "sshd.log"
	with open(sshd_log, "wb") as log:
		sshd = subprocess.Popen([str(HANDOFF), "run", "--protocol", "ssh", "--port", str(sshd_port),
					 "--runtime-dir", str(hx.runtime_dir), "--", "/usr/sbin/sshd", "-D", "-e",
					 "-f", str(sshd_config)], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
	try:
		d.wait_log(r"registered upstream \S+ names=protocol:ssh uid=0 protocol=ssh", timeout=START_TIMEOUT)
		response = https_get(hx.certs, port, "a.example")
		assert response.status == 200 and response.cert_subject == "a.example"

		result = ssh_command(keys, port, "echo over-handoff")
		assert result.returncode == 0, f"ssh failed: {result.stderr}\nsshd log:\n{read_text(sshd_log)}"
		assert result.stdout.strip() == "over-handoff"
		records = d.wait_access(lambda r: r.get("proto") == "ssh" and r.get("outcome") == "handoff")
		client_port = records[-1]["client"].rsplit(":", 1)[1]
		# sshd got the client's own socket: its log names the client's port, not the daemon's.
		assert wait_for(lambda: f"127.0.0.1 port {client_port}" in read_text(sshd_log), REQUEST_TIMEOUT), \
			read_text(sshd_log)

		with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT) as s:
			assert s.recv(100) == b"220 banner.example ESMTP\r\n"
			s.sendall(b"EHLO x\r\n")
			assert s.recv(100) == b"echo EHLO x\r\n"
		d.wait_access(lambda r: r.get("proto") == "silent" and r.get("outcome") == "relayed")

		# Never guessed: bytes of no known protocol, and an SSH line that is
		# not SSH-2.0, are logged and closed.
		for junk, why in ((b"\x00\x01garbage", "unknown protocol from .*: first byte begins neither a TLS"),
				  (b"SSH-1.5-old\r\n", "invalid SSH identification from .*: SSH protocol version other than 2.0")):
			with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT) as s:
				s.sendall(junk)
				assert s.recv(100) == b""
			d.wait_log(why)
		assert len(d.wait_access(lambda r: r.get("outcome") == "invalid" and r.get("proto") in ("-", "ssh"),
					 count=2)) == 2
	finally:
		terminate(sshd)
		banner.close()


SERVERS = Path(__file__).resolve().parent / "detect" / "servers.py"


class RunServer:
	"""`handoff run OPTIONS -- python3 detect/servers.py ...`, output to a
	file, stopped by PID (SIGTERM, passed on to the server)."""

	def __init__(self, hx, label, options, server_args):
		self.log_path = hx.dir / f"run-{label}.log"
		argv = [str(HANDOFF), "run", *options, "--runtime-dir", str(hx.runtime_dir), "--",
			"/usr/bin/python3", str(SERVERS), *[str(a) for a in server_args]]
		env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
		with open(self.log_path, "wb") as log:
			self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)

	def log(self):
		return read_text(self.log_path)

	def stop(self):
		terminate(self.proc, STOP_TIMEOUT)


def test_handoff_run_alpn_takes_only_clients_offering_its_id(hx):
	"""A TLS server under `handoff run --alpn x-handoff-test` gets the
	clients of a.example that offer that id; the name's ordinary upstream
	keeps every other client of the name."""
	port, server_port = free_port(), free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{port} tls"]))
	site = hx.upstream(["a.example"], "site", daemon=d)
	cert, key = hx.certs.pair("a.example")
	run = RunServer(hx, "alpn", ["--name", "a.example", "--alpn", "x-handoff-test", "--port", str(server_port)],
			["tls", server_port, cert, key, "x-handoff-test"])
	try:
		d.wait_log(r"registered upstream \S+ names=a\.example uid=\d+ alpn=x-handoff-test\b",
			   timeout=START_TIMEOUT)
		for alpn in (["x-handoff-test"], ["h2", "x-handoff-test", "http/1.1"]):
			response = https_get(hx.certs, port, "a.example", alpn=alpn)
			assert response.status == 200, (alpn, run.log())
			assert response.body.startswith(b"server=alpn-server alpn=x-handoff-test peer=127.0.0.1:"), \
				(alpn, response.body, run.log())
		for alpn in (["http/1.1"], ["h2"], None):
			response = https_get(hx.certs, port, "a.example", alpn=alpn)
			assert response.status == 200 and response.fields["label"] == site.label, (alpn, response.body)
		handed = d.wait_access(lambda r: r.get("outcome") == "handoff", count=5)
		assert sorted(r["upstream"].split("-")[0] == str(site.pid) for r in handed) == \
			[False, False, True, True, True], handed
	finally:
		run.stop()


def test_handoff_run_protocol_silent_gets_silent_clients(hx):
	"""A server-speaks-first server under `handoff run --protocol silent`
	on a detect listener receives the socket of a client that says
	nothing; the client reads the server's banner, then talks to it."""
	port, server_port = free_port(), free_port()
	config = hx.config([f"127.0.0.1:{port} detect detect-timeout 1s"],
			   grants=("* to self", "protocol silent to self"))
	d = hx.daemon(config)
	site = hx.upstream(["a.example"], "site", daemon=d)
	run = RunServer(hx, "silent", ["--protocol", "silent", "--port", str(server_port)], ["banner", server_port])
	try:
		d.wait_log(r"registered upstream \S+ names=protocol:silent uid=0 protocol=silent", timeout=START_TIMEOUT)
		with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT) as s:
			client_port = s.getsockname()[1]
			assert s.recv(100) == b"220 first.example ready\r\n", run.log()
			s.sendall(b"HELO client.example\r\n")
			assert s.recv(100) == b"echo HELO client.example\r\n"
		# The server accepted the client's own socket: it sees the client's port.
		assert wait_for(lambda: f"served 127.0.0.1:{client_port}" in run.log(), REQUEST_TIMEOUT), run.log()
		d.wait_access(lambda r: r.get("proto") == "silent" and r.get("outcome") == "handoff")
		# A TLS client on the same port still reaches the name's upstream.
		response = https_get(hx.certs, port, "a.example")
		assert response.status == 200 and response.fields["label"] == site.label
	finally:
		run.stop()
