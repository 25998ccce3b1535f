# test_reload.py - configuration reload, binary upgrade and a killed daemon's restart, each under a load of new connections.
import os
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

from admin_helpers import admin_get, admin_state, listener, wait_state
from harness import (HANDOFF, REQUEST_TIMEOUT, connect, free_port, http_get, https_get, read_response,
		     read_text, request_bytes, tls_context, tls_failure, wait_for)
from relay_helpers import Processes
from systemd_helpers import stop_pid
from test_detect import Backend, tls_hello_to

PATTERN_BLOCK = bytes((i * 7 + 13) & 0xFF for i in range(256))
LOAD_SECONDS_MAX = 240		# every load loop ends by then, whatever happens


class Load:
	"""Client threads that open one new connection per request
	("Connection: close") in a loop, TLS or plain HTTP, and record every
	failure. Bounded in time; stop() joins them."""

	def __init__(self, certs):
		self.certs = certs
		self.stop_event = threading.Event()
		self.lock = threading.Lock()
		self.ok = 0
		self.failures = []
		self.threads = []

	def add(self, kind, port, name):
		thread = threading.Thread(target=self._run, args=(kind, port, name), daemon=True)
		self.threads.append(thread)
		thread.start()

	def _one(self, kind, port, name):
		if kind == "tls":
			response = https_get(self.certs, port, name)
		else:
			response = http_get(port, name)
		if response.status != 200:
			raise AssertionError(f"status {response.status}")

	def _run(self, kind, port, name):
		deadline = time.monotonic() + LOAD_SECONDS_MAX
		while not self.stop_event.is_set() and time.monotonic() < deadline:
			try:
				self._one(kind, port, name)
				with self.lock:
					self.ok += 1
			except Exception as e:	# every kind of failure counts
				with self.lock:
					self.failures.append(f"{kind} {name} on {port}: {type(e).__name__}: {e}")

	def count(self):
		with self.lock:
			return self.ok

	def wait_progress(self, more=20, timeout=60):
		"""Wait until `more` further requests have succeeded."""
		start = self.count()
		assert wait_for(lambda: self.count() >= start + more, timeout), \
			f"load made no progress: {self.count() - start} of {more}; failures {self.failures[:5]}"

	def stop(self):
		self.stop_event.set()
		for thread in self.threads:
			thread.join(REQUEST_TIMEOUT * 3)
		return self.failures


def reload_cmd(d, command="reload"):
	return subprocess.run([str(HANDOFF), command, "-c", str(d.config_path)], capture_output=True, text=True,
			      timeout=200)


def status_of(hx, up):
	files = list((hx.runtime_dir / "upstreams").glob(f"{up.pid}-*.status"))
	return read_text(files[0]) if files else ""


def config_text(hx, listeners, grants, routes=(), **settings):
	text = hx.config(listeners, grants=grants, **settings)
	return text + "".join(f"route {r}\n" for r in routes)


class SlowDownload:
	"""GET /bytes/N over one connection, read in a thread that pauses after
	`pause_after` bytes until resume() is called; checks every byte."""

	def __init__(self, sock, host_header, size, pause_after):
		self.sock = sock
		self.size = size
		self.pause_after = pause_after
		self.paused = threading.Event()
		self.resume_event = threading.Event()
		self.received = 0
		self.error = None
		sock.sendall(request_bytes(host_header, f"/bytes/{size}"))
		self.thread = threading.Thread(target=self._run, daemon=True)
		self.thread.start()

	def _run(self):
		try:
			stream = self.sock.makefile("rb")
			response = read_response_head(stream)
			assert response == 200, f"status {response}"
			offset = 0
			while offset < self.size:
				if offset >= self.pause_after and not self.paused.is_set():
					self.paused.set()
					assert self.resume_event.wait(120), "never resumed"
				chunk = stream.read(min(65536, self.size - offset))
				if not chunk:
					raise ConnectionError(f"closed after {offset} of {self.size} bytes")
				start = offset % 256
				expected = (PATTERN_BLOCK * (len(chunk) // 256 + 2))[start:start + len(chunk)]
				if chunk != expected:
					raise AssertionError(f"wrong bytes at offset {offset}")
				offset += len(chunk)
				self.received = offset
		except Exception as e:
			self.error = f"{type(e).__name__}: {e}"
			self.paused.set()
		finally:
			self.sock.close()

	def resume(self):
		self.resume_event.set()

	def finish(self, timeout=120):
		self.thread.join(timeout)
		assert not self.thread.is_alive(), f"download stuck at {self.received} of {self.size}"
		assert self.error is None, self.error
		assert self.received == self.size


def read_response_head(stream):
	status_line = stream.readline(65536)
	if not status_line:
		raise ConnectionError("closed before a response")
	while stream.readline(65536) not in (b"\r\n", b"\n", b""):
		pass
	return int(status_line.split()[1])


def tls_download(certs, port, name, size, pause_after):
	sock = connect(port, timeout=60)
	tls = tls_context(certs).wrap_socket(sock, server_hostname=name)
	return SlowDownload(tls, name, size, pause_after)


@pytest.mark.parametrize("workers", [1, 2])
def test_reload_under_load_drops_no_connection(hx, certs, workers):
	"""Five reloads (same file, a listener added, a grant revoked, a refused
	claim granted, limits and a route changed) and two refused files while
	TLS and HTTP clients open new connections: not one fails; a revoked
	name stops at once, a newly granted one is served. With the event loop
	accepting (workers 1) and with two accepting threads."""
	procs = Processes(hx.dir)
	load = Load(certs)
	try:
		target_port = free_port()
		procs.target("http", target_port, "h")
		tls_port, http_port, added_port = free_port(), free_port(), free_port()
		listeners = [f"127.0.0.1:{tls_port} tls", f"127.0.0.1:{http_port} http"]
		grants = ["a.example to self", "b.example to self"]
		# A host name: resolved again at every reload.
		routes = [f"h.example to tcp:localhost:{target_port}"]
		d = hx.daemon(config_text(hx, listeners, grants, routes, workers=workers))
		hx.upstream(["a.example"], "a", daemon=d)
		up_b = hx.upstream(["b.example"], "b", daemon=d)
		up_y = hx.upstream(["y.apps.example"], "y", daemon=d, expect="refused")
		assert https_get(certs, tls_port, "b.example").status == 200

		load.add("tls", tls_port, "a.example")
		load.add("tls", tls_port, "a.example")
		load.add("http", http_port, "h.example")
		load.wait_progress()

		# 1: the same file.
		r = reload_cmd(d)
		assert r.returncode == 0 and "reloaded (generation 2" in r.stdout, r
		load.wait_progress()

		# 2: a listener added; the others keep their sockets.
		listeners.append(f"127.0.0.1:{added_port} http")
		d.config_path.write_text(config_text(hx, listeners, grants, routes, workers=workers))
		r = reload_cmd(d)
		assert r.returncode == 0 and "1 added" in r.stdout, r
		assert http_get(added_port, "h.example").status == 200
		load.add("http", added_port, "h.example")
		load.wait_progress()

		# 3: b.example's grant revoked: its upstream stops receiving at once.
		grants = ["a.example to self"]
		d.config_path.write_text(config_text(hx, listeners, grants, routes, workers=workers))
		r = reload_cmd(d)
		assert r.returncode == 0, r
		assert tls_failure(certs, tls_port, "b.example") is not None
		assert status_of(hx, up_b).startswith("refused: "), status_of(hx, up_b)
		load.wait_progress()

		# 4: a claim refused before is granted now and registers.
		grants.append("*.apps.example to self")
		d.config_path.write_text(config_text(hx, listeners, grants, routes, workers=workers))
		r = reload_cmd(d)
		assert r.returncode == 0, r
		d.wait_log(rf"registered upstream {up_y.pid}-", timeout=10)
		assert https_get(certs, tls_port, "y.apps.example").status == 200
		assert status_of(hx, up_y) == "registered\n" or status_of(hx, up_y).startswith("registered")
		load.wait_progress()

		# 5: limits, timeouts and the route's options.
		routes = [f"h.example to tcp:localhost:{target_port} idle-timeout 1m connect-timeout 2s"]
		d.config_path.write_text(config_text(hx, listeners, grants, routes, peek_timeout="5s",
						     max_per_ip=200, max_pending=512, workers=workers))
		r = reload_cmd(d)
		assert r.returncode == 0 and "reloaded (generation 6" in r.stdout, r
		load.wait_progress()

		# A file with a syntax error: refused with its file and line.
		good = d.config_path.read_text()
		d.config_path.write_text(good + "listen 127.0.0.1:99999 tls\n")
		r = reload_cmd(d)
		bad_line = len(good.splitlines()) + 1
		assert r.returncode == 1 and f"{d.config_path}:{bad_line}: listen: bad port" in r.stderr, r
		# A file only the running daemon can find wrong (the port is taken):
		# refused by the daemon, with file and line, nothing changed.
		with socket.socket() as squatter:
			squatter.bind(("127.0.0.1", 0))
			squatter.listen()
			taken = squatter.getsockname()[1]
			d.config_path.write_text(good + f"listen 127.0.0.1:{taken} http\n")
			r = reload_cmd(d)
			assert r.returncode == 1 and f"{d.config_path}:{bad_line}: cannot listen on 127.0.0.1:{taken}" \
				in r.stderr, r
			# The same through SIGHUP: logged, nothing changed.
			os.kill(d.pid, signal.SIGHUP)
			d.wait_log(rf"reload failed, configuration unchanged: .*:{bad_line}: cannot listen", timeout=10)
		load.wait_progress()
		assert http_get(added_port, "h.example").status == 200
		d.config_path.write_text(good)

		failures = load.stop()
		assert failures == [], f"{len(failures)} failed connections of {load.ok + len(failures)}: {failures[:10]}"
		assert load.ok >= 100, load.ok
		assert "generation 1 released" in d.log()
	finally:
		load.stop()
		procs.close()


def test_peeking_connection_keeps_its_generation(hx, certs):
	"""A connection accepted before a reload that removes its listener, and
	still in the peek phase, finishes under the rules it started with."""
	procs = Processes(hx.dir)
	try:
		target_port = free_port()
		procs.target("http", target_port, "h")
		http_port, other_port = free_port(), free_port()
		route = [f"h.example to tcp:127.0.0.1:{target_port}"]
		d = hx.daemon(config_text(hx, [f"127.0.0.1:{http_port} http", f"127.0.0.1:{other_port} http"],
					  ["* to self"], route))
		early = connect(http_port)
		early.sendall(b"GET / HTTP/1.1\r\n")	# half a request: still peeking
		d.config_path.write_text(config_text(hx, [f"127.0.0.1:{other_port} http"], ["* to self"], route))
		r = reload_cmd(d)
		assert r.returncode == 0 and "1 removed" in r.stdout, r
		# The listener is gone for new clients...
		with socket.socket() as probe:
			probe.settimeout(5)
			assert probe.connect_ex(("127.0.0.1", http_port)) != 0
		# ...and the early connection is still served.
		early.sendall(b"Host: h.example\r\nConnection: close\r\n\r\n")
		with early.makefile("rb") as stream:
			response = read_response(stream)
		early.close()
		assert response.status == 200 and b"label=h" in response.body
		d.wait_log(r"configuration generation 1 released", timeout=10)
	finally:
		procs.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_upgrade_under_load_keeps_every_connection(hx, certs, workers):
	"""`handoff upgrade` under a load of new TLS and HTTP connections: zero
	failures; a download handed off before and a relayed one both finish
	intact; the old daemon exits once its relay is done; no upstream
	registers again. With the event loop accepting and with two accepting
	threads (stopped in the old daemon at the handover)."""
	procs = Processes(hx.dir)
	load = Load(certs)
	new_pid = None
	try:
		target_port = free_port()
		procs.target("http", target_port, "h")
		tls_port, http_port = free_port(), free_port()
		d = hx.daemon(config_text(hx, [f"127.0.0.1:{tls_port} tls", f"127.0.0.1:{http_port} http"],
					  ["* to self"], [f"h.example to tcp:127.0.0.1:{target_port}"], workers=workers))
		up_a = hx.upstream(["a.example"], "a", daemon=d)
		size = 32 * 1024 * 1024
		handed = tls_download(certs, tls_port, "a.example", size, pause_after=1024 * 1024)
		relayed = SlowDownload(connect(http_port, timeout=60), "h.example", size, pause_after=1024 * 1024)
		assert handed.paused.wait(60) and relayed.paused.wait(60)
		assert handed.error is None and relayed.error is None, (handed.error, relayed.error)

		load.add("tls", tls_port, "a.example")
		load.add("tls", tls_port, "a.example")
		load.add("http", http_port, "h.example")
		load.wait_progress()

		r = reload_cmd(d, "upgrade")
		assert r.returncode == 0 and "took over the listening sockets" in r.stdout, (r, d.tail())
		new_pid = int(r.stdout.split("new daemon pid ")[1].split()[0])
		assert new_pid != d.pid
		assert read_text(hx.runtime_dir / "handoff.pid").strip() == str(new_pid)
		load.wait_progress(more=50)
		# The old daemon still relays; it has stopped accepting.
		assert d.proc.poll() is None

		handed.resume()
		relayed.resume()
		handed.finish()
		relayed.finish()
		# Its last connection done, the old daemon exits by itself.
		d.proc.wait(60)
		assert d.proc.returncode == 0, d.tail()
		load.wait_progress()

		failures = load.stop()
		assert failures == [], f"{len(failures)} failed connections of {load.ok + len(failures)}: {failures[:10]}"
		# The new daemon found the upstream's files: one registration, no new one.
		assert status_of(hx, up_a).startswith("registered")
		assert d.log().count(f"registered upstream {up_a.pid}-") == 2	# once per daemon
		assert https_get(certs, tls_port, "a.example").status == 200
		# A reload reaches the new daemon now.
		r = reload_cmd(d)
		assert r.returncode == 0 and "reloaded" in r.stdout, r
		assert f"handoff[{new_pid}]: " in d.log() and "upgrade: started" in d.log()
	finally:
		load.stop()
		if new_pid is not None:
			stop_pid(new_pid)
		procs.close()


def test_kill9_and_restart_lose_no_handed_off_connection(hx, certs):
	"""SIGKILL the daemon during a download handed off to an upstream: the
	download finishes intact; after a restart new connections work again,
	without the upstream registering again."""
	tls_port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{tls_port} tls"]))
	up_a = hx.upstream(["a.example"], "a", daemon=d)
	download = tls_download(certs, tls_port, "a.example", 32 * 1024 * 1024, pause_after=1024 * 1024)
	assert download.paused.wait(60) and download.error is None, download.error
	d.kill()
	assert tls_failure(certs, tls_port, "a.example") is not None	# nobody listens now
	download.resume()
	download.finish()
	d.start()	# replaces the dead daemon's control socket
	assert "removing" in d.log() and "control.sock" in d.log()
	assert https_get(certs, tls_port, "a.example").status == 200
	assert status_of(hx, up_a).startswith("registered")
	assert up_a.proc.poll() is None


def test_upgrade_closes_the_sockets_the_new_configuration_drops(hx):
	"""The new daemon adopts the handed-over sockets its configuration
	names, closes (and says so) the one it no longer names, and binds the
	address it adds; once the old daemon is gone nothing listens on the
	dropped address."""
	kept, dropped, added = free_port(), free_port(), free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{kept} http", f"127.0.0.1:{dropped} http"]))
	d.config_path.write_text(hx.config([f"127.0.0.1:{kept} http", f"127.0.0.1:{added} http"]))
	new_pid = None
	try:
		r = reload_cmd(d, "upgrade")
		assert r.returncode == 0 and "took over the listening sockets" in r.stdout, (r, d.tail())
		new_pid = int(r.stdout.split("new daemon pid ")[1].split()[0])
		assert d.proc.wait(60) == 0, d.tail()
		log = d.log()
		assert f"handoff[{new_pid}]: listening on 127.0.0.1:{kept} (http), the old daemon" in log, log
		assert (f"handoff[{new_pid}]: closing the listening socket 127.0.0.1:{dropped} from the old daemon: "
			"no 'listen' line names it now") in log, log
		assert f"handoff[{new_pid}]: listening on 127.0.0.1:{added} (http)\n" in log, log
		for port in (kept, added):
			assert http_get(port, "nobody-serves.example").status == 503
		with pytest.raises(ConnectionRefusedError):
			socket.create_connection(("127.0.0.1", dropped), timeout=REQUEST_TIMEOUT).close()
	finally:
		if new_pid is not None:
			stop_pid(new_pid)


def test_second_daemon_on_one_runtime_directory_is_refused(hx):
	"""Two daemons must not share a runtime directory: the second says who
	serves it and exits 1."""
	d = hx.daemon(hx.config([f"127.0.0.1:{free_port()} http"]))
	other = hx.dir / "other.conf"
	other.write_text(hx.config([f"127.0.0.1:{free_port()} http"]))
	r = subprocess.run([str(HANDOFF), "serve", "-c", str(other)], capture_output=True, text=True, timeout=60)
	assert r.returncode == 1
	assert f"another handoff daemon (pid {d.pid}) serves the runtime directory" in r.stderr, r.stderr
	# ...and left the running daemon's files alone.
	assert read_text(hx.runtime_dir / "handoff.pid").strip() == str(d.pid)
	assert reload_cmd(d).returncode == 0


def test_reload_without_daemon_says_so(hx):
	conf = hx.dir / "none.conf"
	conf.write_text(hx.config([f"127.0.0.1:{free_port()} http"]))
	r = subprocess.run([str(HANDOFF), "reload", "-c", str(conf)], capture_output=True, text=True, timeout=60)
	assert r.returncode == 1 and "no daemon answers on" in r.stderr, r.stderr


class RawUpstream:
	"""A registration made by hand, as libhandoff makes it: a datagram
	socket and a names file (with alpn or protocol lines) in a private
	directory. receive() takes one handed-off client socket."""

	def __init__(self, hx, d, serial, names_text):
		self.ident = f"{os.getpid()}-{serial:016x}"
		self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
		updir = hx.runtime_dir / "upstreams"
		tmp = updir / f".{self.ident}"
		tmp.mkdir(mode=0o755)
		self.sock.bind(str(tmp / f"{self.ident}.sock"))
		(tmp / f"{self.ident}.names").write_text(names_text)
		os.rename(tmp, updir / self.ident)
		d.wait_log(rf"registered upstream {self.ident} ")

	def receive(self):
		"""True if one client socket arrives within REQUEST_TIMEOUT (closed here)."""
		self.sock.settimeout(REQUEST_TIMEOUT)
		_, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(4 * 4))
		fds = [int.from_bytes(data[i:i + 4], "little") for level, kind, data in anc
		       if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS for i in range(0, len(data), 4)]
		for fd in fds:
			os.close(fd)
		return len(fds) == 1

	def close(self):
		self.sock.close()


def in_thread(fn, *args):
	thread = threading.Thread(target=fn, args=args, daemon=True)
	thread.start()
	return thread


def ssh_like_client(port):
	"""Send an SSH identification line and wait for the connection to end."""
	with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT) as s:
		s.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
		try:
			while s.recv(4096):
				pass
		except OSError:
			pass


def routes_of(state):
	return {(r["name"], r["alpn"]): r for r in state["routes"]}


def test_reload_adds_alpn_and_protocol_routes_and_keeps_counters(hx):
	"""A reload adds an ALPN route and a protocol route, turns a kept
	listener into a detect listener and adds one: clients offering the ALPN
	id and SSH and silent clients go where the new file says; upstreams
	registered with an ALPN claim or the ssh protocol stay attached; the
	admin API shows the new generation, routes and listener, and the
	counters of kept listeners go on."""
	plain, acme, banner = Backend(), Backend(), Backend(banner=b"220 banner.example ESMTP\r\n")
	tls_port, switch_port, new_port, admin_port = free_port(), free_port(), free_port(), free_port()
	admin = f"127.0.0.1:{admin_port}"
	grants = ["* to self", "protocol ssh to self"]
	before = config_text(hx, [f"127.0.0.1:{tls_port} tls", f"127.0.0.1:{switch_port} http"], grants,
			     [f"a.example to tcp:127.0.0.1:{plain.port}"]) + f"admin {admin}\n"
	d = hx.daemon(before)
	acme_up = RawUpstream(hx, d, 0xa1, "alpn acme-tls/1\nb.example\n")
	ssh_up = RawUpstream(hx, d, 0xa2, "protocol ssh\n")
	try:
		# Before: no ALPN route for a.example; b.example's acme-tls/1 clients
		# go to its ALPN upstream; the http listener takes no SSH.
		tls_hello_to(tls_port, "a.example", ["acme-tls/1"])
		assert wait_for(lambda: len(plain.first_bytes) == 1, REQUEST_TIMEOUT)
		client = in_thread(tls_hello_to, tls_port, "b.example", ["acme-tls/1"])
		assert acme_up.receive()
		client.join(REQUEST_TIMEOUT)
		with socket.create_connection(("127.0.0.1", switch_port), timeout=REQUEST_TIMEOUT) as s:
			s.sendall(b"SSH-2.0-OpenSSH_9.2p1\r\n\r\n")
			assert s.recv(4096).startswith(b"HTTP/1.1 400")
		state = wait_state(admin, lambda st: listener(st, f"127.0.0.1:{tls_port}")["accepted"] == 2 and
				   listener(st, f"127.0.0.1:{switch_port}")["accepted"] == 1)
		assert state["daemon"]["generation"] == 1
		assert ("a.example", "acme-tls/1") not in routes_of(state)

		d.config_path.write_text(
			config_text(hx, [f"127.0.0.1:{tls_port} tls", f"127.0.0.1:{switch_port} detect detect-timeout 1s",
					 f"127.0.0.1:{new_port} http"], grants,
				    [f"a.example alpn acme-tls/1 to tcp:127.0.0.1:{acme.port}",
				     f"a.example to tcp:127.0.0.1:{plain.port}",
				     f"protocol silent to tcp:127.0.0.1:{banner.port}"]) + f"admin {admin}\n")
		r = reload_cmd(d)
		assert r.returncode == 0 and "reloaded (generation 2: 3 listeners, 1 added, 0 removed" in r.stdout, \
			(r, d.tail())

		# The new ALPN route takes a.example's acme-tls/1 clients; the others
		# still go to the name's route.
		tls_hello_to(tls_port, "a.example", ["h2", "acme-tls/1"])
		assert wait_for(lambda: len(acme.first_bytes) == 1, REQUEST_TIMEOUT)
		assert acme.first_bytes[0][:1] == b"\x16"
		tls_hello_to(tls_port, "a.example", ["http/1.1"])
		assert wait_for(lambda: len(plain.first_bytes) == 2, REQUEST_TIMEOUT)
		# The ALPN upstream moved over to the new routes.
		client = in_thread(tls_hello_to, tls_port, "b.example", ["acme-tls/1"])
		assert acme_up.receive()
		client.join(REQUEST_TIMEOUT)
		# The kept port detects now: an SSH client goes to the ssh upstream,
		# a silent one to the new protocol route after its detect-timeout.
		client = in_thread(ssh_like_client, switch_port)
		assert ssh_up.receive()
		client.join(REQUEST_TIMEOUT)
		with socket.create_connection(("127.0.0.1", switch_port), timeout=REQUEST_TIMEOUT) as s:
			assert s.recv(100) == b"220 banner.example ESMTP\r\n"
			s.sendall(b"EHLO x\r\n")
			assert s.recv(100) == b"echo EHLO x\r\n"
		d.wait_access(lambda rec: rec.get("proto") == "silent" and rec.get("outcome") == "relayed")
		d.wait_access(lambda rec: rec.get("proto") == "ssh" and rec.get("upstream") == ssh_up.ident and
			      rec.get("outcome") == "handoff")

		# The admin API: the new generation, its routes and listener; the
		# kept listeners' counters continued (2 + 3 and 1 + 2).
		state = wait_state(admin, lambda st: listener(st, f"127.0.0.1:{tls_port}")["accepted"] == 5 and
				   listener(st, f"127.0.0.1:{switch_port}")["accepted"] == 3)
		assert state["daemon"]["generation"] == 2
		tls_l, switch_l = listener(state, f"127.0.0.1:{tls_port}"), listener(state, f"127.0.0.1:{switch_port}")
		assert tls_l["outcomes"]["relayed"] == 3 and tls_l["outcomes"]["handoff"] == 2
		assert switch_l["protocol"] == "detect" and switch_l["detect_timeout_ms"] == 1000
		assert switch_l["outcomes"]["invalid"] == 1 and switch_l["outcomes"]["handoff"] == 1
		assert switch_l["outcomes"]["relayed"] == 1
		added = listener(state, f"127.0.0.1:{new_port}")
		assert added["protocol"] == "http" and added["accepted"] == 0
		routes = routes_of(state)
		assert routes[("a.example", "acme-tls/1")]["configured"] is True
		assert routes[("a.example", "acme-tls/1")]["targets"][0]["delivered"] == 1
		assert routes[("protocol:silent", None)]["configured"] is True
		assert [t["target"] for t in routes[("b.example", "acme-tls/1")]["targets"]] == [acme_up.ident]
		assert [t["target"] for t in routes[("protocol:ssh", None)]["targets"]] == [ssh_up.ident]
		status, _, metrics = admin_get(admin, "/metrics")
		assert status == 200
		assert f'route="a.example",alpn="acme-tls/1"'.encode() in metrics
	finally:
		acme_up.close()
		ssh_up.close()
		for b in (plain, acme, banner):
			b.close()


class AdminPoller:
	"""Ask the admin API in a loop from a thread and record every failure."""

	def __init__(self, address):
		self.address = address
		self.stop_event = threading.Event()
		self.ok = 0
		self.pids = set()
		self.failures = []
		self.thread = in_thread(self._run)

	def _run(self):
		deadline = time.monotonic() + LOAD_SECONDS_MAX
		while not self.stop_event.is_set() and time.monotonic() < deadline:
			try:
				status, _, body = admin_get(self.address, "/api/daemon")
				if status != 200:
					raise AssertionError(f"status {status}: {body[:200]}")
				self.pids.add(int(body.split(b'"pid":')[1].split(b",")[0].split(b"}")[0]))
				self.ok += 1
			except Exception as e:	# every kind of failure counts
				self.failures.append(f"{type(e).__name__}: {e}")

	def stop(self):
		self.stop_event.set()
		self.thread.join(REQUEST_TIMEOUT * 3)
		return self.failures


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_upgrade_hands_the_admin_endpoint_over(hx, certs, kind):
	"""`handoff upgrade` with an admin endpoint (TCP or Unix socket): the
	new daemon adopts the admin socket, no admin request fails during the
	upgrade, and the API then shows the new daemon with the same listeners
	and upstreams. Counters are the new process's own: they start at 0."""
	admin = f"127.0.0.1:{free_port()}" if kind == "tcp" else f"unix:{hx.dir / 'admin.sock'}"
	tls_port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{tls_port} tls"]) + f"admin {admin}\n")
	up = hx.upstream(["a.example"], "a", daemon=d)
	new_pid = None
	poller = None
	try:
		for _ in range(3):
			assert https_get(certs, tls_port, "a.example").status == 200
		wait_state(admin, lambda st: listener(st, f"127.0.0.1:{tls_port}")["accepted"] == 3)
		poller = AdminPoller(admin)
		assert wait_for(lambda: poller.ok >= 5, REQUEST_TIMEOUT)
		r = reload_cmd(d, "upgrade")
		assert r.returncode == 0 and "took over the listening sockets" in r.stdout, (r, d.tail())
		new_pid = int(r.stdout.split("new daemon pid ")[1].split()[0])
		d.proc.wait(60)		# no connections of its own: the old daemon exits at once
		assert d.proc.returncode == 0, d.tail()
		assert wait_for(lambda: new_pid in poller.pids, REQUEST_TIMEOUT * 2), poller.pids
		ok = poller.ok
		assert wait_for(lambda: poller.ok >= ok + 5, REQUEST_TIMEOUT)	# still answered after the old one left
		failures = poller.stop()
		assert failures == [], f"{len(failures)} failed admin requests of {poller.ok + len(failures)}: {failures[:5]}"
		assert poller.pids == {d.pid, new_pid}
		assert "admin endpoint on " + admin + ": adopted the socket from the old daemon" in d.log()

		state = admin_state(admin)
		assert state["daemon"]["pid"] == new_pid and state["daemon"]["generation"] == 1
		assert [l["address"] for l in state["listeners"]] == [f"127.0.0.1:{tls_port}"]
		assert listener(state, f"127.0.0.1:{tls_port}")["accepted"] == 0	# a new process counts afresh
		assert len(state["upstreams"]) == 1 and state["upstreams"][0]["id"].startswith(f"{up.pid}-")
		assert https_get(certs, tls_port, "a.example").status == 200
		wait_state(admin, lambda st: listener(st, f"127.0.0.1:{tls_port}")["outcomes"]["handoff"] == 1)
	finally:
		if poller is not None:
			poller.stop()
		if new_pid is not None:
			stop_pid(new_pid)
