# test_servers.py - real, unmodified web servers (nginx, Apache, lighttpd, Node.js, gunicorn+Django, PHP, Java) serve through `handoff run` and the daemon.
"""Each server runs from a config written into its own directory (see
servers/), on a loopback port it believes it listens on, under
`handoff run`; the daemon owns the only TCP listeners. The checks, through
the daemon's ports with curl and Python clients:

- the certificate the client receives for SNI = the site's name is the
  site's own;
- the address the server logs and echoes is the client's own ADDR:PORT, and
  the server's port is not open on the network;
- several requests reuse one connection (keep-alive);
- a 100 MiB file arrives intact;
- a graceful reload, where the server has one, fails no request.

Then the special cases: Node's cluster (both scheduling policies),
gunicorn's re-exec upgrade, and caddy, a Go program the preload library
cannot reach: refused by handoff run, served through the TCP relay instead.

Each server starts once, on first use, for all its checks."""
import os
import re
import signal
import socket
import ssl
import subprocess
import time

import pytest

from harness import HANDOFF, UPSTREAM_ASAN_OPTIONS, Daemon, free_port, read_text, wait_for
import servers_helpers as sh
from preload_helpers import names_files

TLS_SITES = ["nginx", "apache", "lighttpd", "node", "node-cluster", "gunicorn", "php-fpm", "java"]
RELOAD_SITES = ["nginx", "apache", "lighttpd", "gunicorn", "php-fpm"]
# Plain HTTP, routed by Host: nginx (where sendfile() runs) and php -S.
HTTP_SITES = ["nginx-http", "php-cli"]
ECHO_SITES = [key for key in TLS_SITES if key != "apache"] + HTTP_SITES
# Served by caddy through the daemon's TCP relay (a route line), not handed off.
RELAY_NAME = "caddy-relay.example"


@pytest.fixture(scope="module")
def servers_root(workroot):
	missing = [str(p) for p in (HANDOFF, sh.PRELOAD) if not os.access(p, os.R_OK)]
	if missing:
		pytest.fail("missing build outputs (run 'make SANITIZE=1'): " + ", ".join(missing))
	for program in ("curl", "openssl"):
		sh.require_program(program)
	root = workroot / "servers"
	root.mkdir(mode=0o755)
	os.chmod(root, 0o755)
	return root


@pytest.fixture(scope="module")
def site_daemon(servers_root):
	"""One daemon for every site: a TLS and an HTTP listener on loopback,
	each site's name granted to the user running the tests."""
	tls_port = free_port()
	http_port = free_port()
	lines = [f"runtime-dir {servers_root / 'run'}",
		 f"access-log {servers_root / 'handoff-access.log'}",
		 f"listen 127.0.0.1:{tls_port} tls",
		 f"listen 127.0.0.1:{http_port} http"]
	lines += [f"grant {name} to self" for name in sh.SITE_NAMES]
	daemon = Daemon(servers_root, "\n".join(lines) + "\n", tag="servers-daemon")
	daemon.start()
	daemon.ports = (tls_port, http_port)
	yield daemon
	problems = daemon.stop()
	if problems:
		pytest.fail("daemon teardown:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def big_file(servers_root):
	"""100 MiB of random bytes, hard-linked into every site's docroot."""
	path = servers_root / "big.bin"
	digest = sh.make_big_file(path)
	return path, digest


class SitePool:
	"""Sites started on first use and kept running until the module ends,
	whatever order pytest runs the parametrized tests in. A site that
	failed to start fails every test that asks for it, without retrying."""

	def __init__(self, root, daemon, big_file):
		self.root = root
		self.daemon = daemon
		self.big_file = big_file
		self.sites = {}
		self.failures = {}

	def get(self, key):
		if key in self.failures:
			pytest.fail(f"{key} did not start (see its first test):\n{self.failures[key]}",
				    pytrace=False)
		if key not in self.sites:
			s = None
			try:
				s = sh.make_site(key, self.root, self.daemon.ports, self.root / "run",
						 self.big_file)
				s.start(self.daemon)
			except BaseException as e:
				if s is not None:
					s.stop()
				self.failures[key] = str(e)
				raise
			self.sites[key] = s
		return self.sites[key]

	def close(self):
		problems = []
		for s in self.sites.values():
			found = s.stop()
			if found:
				problems.append("\n".join(found) + "\n" + s.diagnostics(self.daemon))
		return problems


@pytest.fixture(scope="module")
def site_pool(servers_root, site_daemon, big_file):
	pool = SitePool(servers_root, site_daemon, big_file[0])
	yield pool
	problems = pool.close()
	if problems:
		pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def site(request, site_pool):
	"""The server request.param, configured and started under handoff run."""
	return site_pool.get(request.param)


def handoff_records(daemon, site, client):
	"""The daemon's access-log lines of client's connections to site, once
	there is one: the daemon writes its line just after the handoff, so on a
	busy machine it may come after the server's own log line."""
	return daemon.wait_access(lambda r: r.get("client") == client and r.get("name") == site.name)


@pytest.mark.parametrize("site", TLS_SITES, indirect=True)
def test_sni_gets_the_servers_own_certificate(site):
	"""The TLS handshake is the server's own: for SNI = its name the client
	receives exactly the certificate in the server's config, and curl
	trusting only that certificate succeeds."""
	received = site.peer_certificate_der()
	expected = ssl.PEM_cert_to_DER_cert(site.cert.read_text())
	assert received == expected, f"{site.key}: a different certificate was presented"
	result, transfers = site.curl(paths=[site.file_prefix + "small.txt"])
	assert result.returncode == 0, result.stderr
	assert transfers[0]["status"] == 200
	assert f"{site.key}\n" in result.stdout


@pytest.mark.parametrize("site", ECHO_SITES + ["apache"], indirect=True)
def test_server_sees_the_clients_own_address(site, site_daemon):
	"""The address the server logs (and echoes, where it has a page for it)
	is the client's own ADDR:PORT: the connection is the client's, handed
	over, not a proxy's. The server's own port is not listening at all."""
	path = site.echo_path or site.file_prefix + "small.txt"
	result, transfers = site.curl(paths=[path])
	assert result.returncode == 0, result.stderr
	client = transfers[0]["local"]
	assert client.startswith("127.0.0.1:")
	if site.echo_path:
		assert f"client={client} " in result.stdout, result.stdout
	site.wait_logged(client)
	records = handoff_records(site_daemon, site, client)
	assert [r["outcome"] for r in records] == ["handoff"], site_daemon.tail()
	assert not sh.port_open(site.port), \
		f"{site.key}: something accepts TCP connections on its own port {site.port}"


@pytest.mark.parametrize("site", TLS_SITES + ["nginx-http"], indirect=True)
def test_keepalive_serves_several_requests_on_one_connection(site, site_daemon):
	"""Three URLs in one curl: one connection (one handoff), three requests
	logged by the server from the same client port."""
	paths = [site.echo_path or site.file_prefix + "small.txt", site.file_prefix + "small.txt",
		 site.echo_path or site.file_prefix + "small.txt"]
	result, transfers = site.curl(paths=paths)
	assert result.returncode == 0, result.stderr
	assert [t["status"] for t in transfers] == [200, 200, 200], result.stdout
	assert [t["num_connects"] for t in transfers] == [1, 0, 0], result.stdout
	clients = {t["local"] for t in transfers}
	assert len(clients) == 1, transfers
	client = clients.pop()
	site.wait_logged(client, count=3)
	assert len(handoff_records(site_daemon, site, client)) == 1


@pytest.mark.parametrize("site", TLS_SITES + HTTP_SITES, indirect=True)
def test_big_download_is_intact(site, big_file):
	"""100 MiB from the server's docroot (sendfile where the server uses
	it) arrive complete with the right sha256."""
	path, digest = big_file
	out = site.dir / "download.bin"
	try:
		result, transfers = site.curl(paths=[site.file_prefix + "big.bin"], outputs=[out])
		assert result.returncode == 0, result.stderr
		assert transfers[0]["status"] == 200
		assert transfers[0]["size"] == sh.BIG_FILE_SIZE
		assert sh.file_sha256(out) == digest
	finally:
		out.unlink(missing_ok=True)


@pytest.mark.parametrize("site", RELOAD_SITES, indirect=True)
def test_reload_fails_no_request(site):
	"""200 requests over about 5 s, each on a new connection, while the
	server reloads gracefully: none fails, and the reload happened."""
	path = site.echo_path or site.file_prefix + "small.txt"
	reloads_before = site.reload_done()
	loop = sh.RequestLoop(site, path, count=200, seconds=5.0)
	loop.start()
	time.sleep(1.0)
	site.reload()
	loop.join(60)
	assert not loop.is_alive(), "request loop still running after 60 s"
	assert loop.failures == [], f"{len(loop.failures)} failed requests during the reload:\n" + \
		"\n".join(loop.failures[:20]) + "\n" + site.diagnostics()
	assert loop.done == 200
	assert wait_for(lambda: site.reload_done() > reloads_before, 10), \
		f"{site.key}: no reload in its log\n" + site.diagnostics()
	# And it still serves afterwards.
	assert site.get(path).status == 200


@pytest.mark.parametrize("site", ["node-cluster"], indirect=True)
def test_node_cluster_round_robin_reaches_both_workers(site):
	"""Node's cluster primary accepts (through the preload) and passes each
	connection to a worker: both workers answer."""
	pids = set()
	for _ in range(40):
		body = site.get("/whoami").body.decode()
		pids.add(re.search(r"pid=(\d+)", body).group(1))
		if len(pids) == 2:
			break
	assert len(pids) == 2, f"only worker(s) {pids} answered 40 requests"


def test_caddy_is_refused_with_a_pointer_to_the_relay(servers_root, site_daemon):
	"""caddy is a Go program: Go makes its socket calls without the C
	library, so LD_PRELOAD cannot reach them. handoff run must refuse it at
	once with a message naming the TCP relay, rather than start a server
	that would silently listen on the network."""
	caddy = sh.require_program("caddy")
	directory = servers_root / "caddy"
	directory.mkdir(mode=0o755)
	port = sh.free_local_port()
	caddyfile = directory / "Caddyfile"
	# Plain HTTP, no admin endpoint, no automatic certificates: if caddy
	# were started after all it would still make no outside connection.
	caddyfile.write_text("{\n\tadmin off\n\tauto_https off\n"
			     f"\tstorage file_system {directory / 'data'}\n"
			     "\tservers {\n\t\tprotocols h1 h2\n\t}\n}\n"
			     f"http://caddy.example:{port} {{\n\tbind 127.0.0.1\n\trespond \"caddy\"\n}}\n")
	argv = [str(HANDOFF), "run", "--name", "caddy.example", "--port", str(port),
		"--runtime-dir", str(servers_root / "run"), "--",
		caddy, "run", "--config", str(caddyfile), "--adapter", "caddyfile"]
	env = dict(os.environ, HOME=str(directory), XDG_DATA_HOME=str(directory),
		   XDG_CONFIG_HOME=str(directory))
	log = directory / "handoff-run.log"
	with open(log, "wb") as out:
		proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
					start_new_session=True)
	started = time.monotonic()
	try:
		status = proc.wait(10)
	except subprocess.TimeoutExpired:
		status = None
	finally:
		sh.kill_group(proc.pid)
		proc.wait(sh.STOP_TIMEOUT)
	output = read_text(log)
	assert status is not None, f"handoff run started caddy instead of refusing it:\n{output[-2000:]}"
	assert status != 0
	assert time.monotonic() - started < 5, "the refusal was not immediate"
	assert "caddy" in output and "relay" in output, output
	claimed = "".join(read_text(p) for p in names_files(servers_root / "run"))
	assert "caddy.example" not in claimed, "caddy.example was registered"


def worker_pid(site):
	return int(re.search(r"pid=(\d+)", site.get("/whoami").body.decode()).group(1))


@pytest.mark.parametrize("site", ["gunicorn-upgrade"], indirect=True)
def test_gunicorn_binary_upgrade_inherits_the_listener(site):
	"""USR2 makes gunicorn's master exec a new master that inherits the
	listening socket (GUNICORN_FD); the new master's workers must serve
	through the same registration. Then the new master is stopped and the
	old one serves on, as after an aborted upgrade."""
	old_master = sh.read_pid(site.dir / "gunicorn.pid")
	os.kill(old_master, signal.SIGUSR2)
	new_master = None
	try:
		# The new master writes its pid to PIDFILE.2 until the old one exits.
		new_pid_file = site.dir / "gunicorn.pid.2"
		new_master = wait_for(lambda: (lambda pid: pid if pid is not None and pid != old_master
					       and sh.process_alive(pid) else None)(sh.read_pid_or_none(new_pid_file)), 10)
		assert new_master, "no new gunicorn master after USR2\n" + site.diagnostics()
		served = wait_for(lambda: sh.parent_pid(worker_pid(site)) == new_master, 10, interval=0.05)
		assert served, "the new master's workers never answered\n" + site.diagnostics()
	finally:
		if new_master and sh.process_alive(new_master):
			os.kill(new_master, signal.SIGTERM)
			wait_for(lambda: sh.parent_pid(new_master) is None or
				 not sh.process_alive(new_master), sh.STOP_TIMEOUT)
	assert wait_for(lambda: sh.parent_pid(worker_pid(site)) == old_master, 10, interval=0.05)


def test_node_cluster_sched_none_workers_accept(servers_root, site_daemon, big_file):
	"""Node's other cluster policy: the primary sends the listening socket
	itself to the workers over IPC, and each worker accepts on it. In a
	worker that descriptor arrived by SCM_RIGHTS, not from its own bind()."""
	s = sh.make_site("node-cluster-sched-none", servers_root, site_daemon.ports,
			 servers_root / "run", big_file[0])
	try:
		s.start(site_daemon, timeout=8)
		pids = set()
		for _ in range(60):
			pids.add(worker_pid(s))
			if len(pids) == 2:
				break
		assert len(pids) == 2, f"only worker(s) {pids} answered 60 requests"
	finally:
		problems = s.stop()
	assert not problems, problems


def test_caddy_behind_the_tcp_relay(hx):
	"""What docs/servers.md tells caddy users to do instead: caddy runs
	on its own loopback port, and a route relays its name there. TLS is
	still caddy's own, end to end; the address caddy sees is the daemon's
	side of the relayed connection, not the client's."""
	caddy = sh.require_program("caddy")
	directory = hx.dir / "caddy-relay"
	directory.mkdir(mode=0o755)
	cert, key = sh.make_certificate(directory, RELAY_NAME)
	caddy_port = free_port()
	caddyfile = directory / "Caddyfile"
	caddyfile.write_text(sh.fill_template("Caddyfile.in", {
		"DIR": directory, "NAME": RELAY_NAME, "PORT": caddy_port, "CERT": cert, "KEY": key}))
	env = dict(os.environ, HOME=str(directory), XDG_DATA_HOME=str(directory),
		   XDG_CONFIG_HOME=str(directory))
	caddy_proc = sh.Helper("caddy", [caddy, "run", "--config", caddyfile, "--adapter", "caddyfile"],
			       directory / "caddy.out", env=env)
	try:
		listening = wait_for(lambda: sh.port_open(caddy_port) or caddy_proc.proc.poll() is not None,
				     sh.START_TIMEOUT, interval=0.1)
		assert listening and caddy_proc.proc.poll() is None, read_text(directory / "caddy.out")
		tls_port = free_port()
		daemon = hx.daemon(hx.config([f"127.0.0.1:{tls_port} tls"], grants=(),
					     route=f"{RELAY_NAME} to tcp:127.0.0.1:{caddy_port}"))
		ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
		ctx.load_verify_locations(str(cert))
		with socket.create_connection(("127.0.0.1", tls_port), timeout=10) as sock:
			with ctx.wrap_socket(sock, server_hostname=RELAY_NAME) as tls:
				received = tls.getpeercert(binary_form=True)
				client = f"127.0.0.1:{tls.getsockname()[1]}"
				tls.sendall(sh.request_bytes(RELAY_NAME, "/"))
				with tls.makefile("rb") as stream:
					response = sh.read_response(stream)
		assert received == ssl.PEM_cert_to_DER_cert(cert.read_text())
		assert response.status == 200
		seen = re.search(r"client=(\S+)", response.body.decode()).group(1)
		assert seen.startswith("127.0.0.1:") and seen != client, (seen, client)
		records = daemon.wait_access(lambda r: r.get("client") == client, timeout=10)
		assert records[0]["name"] == RELAY_NAME
		assert records[0]["outcome"] == "relayed", records
	finally:
		problems = caddy_proc.stop()
	assert not problems, problems


# ---- Apache prefork: a server that signals its own process group ----
#
# prefork's parent passes stop and restart signals to its children with
# kill(0, SIG) - to its whole process group, which handoff run shares. Such
# a signal reaches handoff run too, and must not be sent back to Apache.

@pytest.fixture
def prefork(request, servers_root, site_daemon, big_file):
	"""A fresh Apache prefork under handoff run, for a test that stops or
	restarts it; stopped (if still running) at teardown."""
	root = servers_root / f"prefork-{request.node.name}"
	root.mkdir(mode=0o755)
	os.chmod(root, 0o755)
	site = sh.make_site("apache-prefork", root, site_daemon.ports, servers_root / "run",
			    big_file[0])
	# The tests watch handoff run with strace, and LeakSanitizer cannot
	# work under ptrace: it would end handoff run with status 1 at exit.
	site.env["ASAN_OPTIONS"] = UPSTREAM_ASAN_OPTIONS
	try:
		site.start(site_daemon)
		yield site
	finally:
		problems = site.stop()
		assert not problems, "\n".join(problems) + "\n" + site.diagnostics(site_daemon)


def apache_error_log(site):
	return read_text(site.dir / "apache-error.log")


def stop_run(site, signo):
	"""signo to handoff run; its exit status once it has ended."""
	site.proc.send_signal(signo)
	try:
		return site.proc.wait(sh.STOP_TIMEOUT)
	except subprocess.TimeoutExpired:
		raise AssertionError(f"handoff run did not exit within {sh.STOP_TIMEOUT}s of "
				     f"{signo.name}\n" + site.diagnostics()) from None


class KillTrace:
	"""strace on handoff run, recording the kill() calls it makes: the
	signals it passes on, as the server receives them."""

	def __init__(self, site):
		self.site = site
		self.path = site.dir / f"handoff-run-{time.monotonic_ns()}.strace"
		pid = site.proc.pid
		self.proc = subprocess.Popen([sh.require_program("strace"), "-qq", "-e", "trace=kill",
					      "-e", "signal=none", "-o", str(self.path), "-p", str(pid)],
					     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
					     stderr=subprocess.DEVNULL)
		# strace says nothing once attached; the tracee's status does.
		attached = wait_for(lambda: "TracerPid:\t0" not in read_text(f"/proc/{pid}/status")
				    or self.proc.poll() is not None, 10)
		if not attached or self.proc.poll() is not None:
			self.stop()
			raise AssertionError(f"strace did not attach to handoff run (pid {pid})")

	def stop(self):
		if self.proc.poll() is None:
			self.proc.terminate()
		self.proc.wait(sh.STOP_TIMEOUT)

	def kills(self, pid, signo):
		return re.findall(rf"kill\({pid}, {signo.name}\)", read_text(self.path))


def test_apache_prefork_graceful_stop_exits_0(prefork):
	"""SIGWINCH to handoff run: Apache's graceful stop, passed on once.
	Apache exits 0 after one graceful stop, and so does handoff run."""
	parent = sh.read_pid(prefork.dir / "apache.pid")
	trace = KillTrace(prefork)
	try:
		status = stop_run(prefork, signal.SIGWINCH)
	finally:
		trace.stop()
	log = apache_error_log(prefork)
	assert log.count("caught SIGWINCH, shutting down gracefully") == 1, prefork.diagnostics()
	assert len(trace.kills(parent, signal.SIGWINCH)) == 1, read_text(trace.path)
	assert status == 0, f"handoff run exited {status}\n" + prefork.diagnostics()


def test_apache_prefork_stop_signal_is_delivered_once(prefork):
	"""SIGTERM reaches Apache's parent once from handoff run, and is not
	sent back when Apache signals its process group (handoff run in it)
	to stop its children."""
	parent = sh.read_pid(prefork.dir / "apache.pid")
	trace = KillTrace(prefork)
	try:
		status = stop_run(prefork, signal.SIGTERM)
	finally:
		trace.stop()
	kills = trace.kills(parent, signal.SIGTERM)
	assert status == 0, f"handoff run exited {status}\n" + prefork.diagnostics()
	assert len(kills) == 1, f"handoff run sent SIGTERM to Apache {len(kills)} times:\n" + \
		read_text(trace.path)


def test_apache_prefork_graceful_restart_fails_no_request(prefork):
	"""`apache2 -k graceful` (SIGUSR1 to the parent, which passes it to its
	group) under load: one restart, no failed request, and handoff run
	sends Apache no SIGUSR1 of its own."""
	parent = sh.read_pid(prefork.dir / "apache.pid")
	path = "/small.txt"
	trace = KillTrace(prefork)
	loop = sh.RequestLoop(prefork, path, count=200, seconds=5.0)
	try:
		loop.start()
		time.sleep(1.0)
		prefork.reload()
		loop.join(60)
		assert not loop.is_alive(), "request loop still running after 60 s"
		assert wait_for(lambda: prefork.reload_done() >= 1, 10), prefork.diagnostics()
		time.sleep(2.0)		# a restart sent back to Apache would be logged by now
	finally:
		trace.stop()
	assert trace.kills(parent, signal.SIGUSR1) == [], read_text(trace.path)
	assert prefork.reload_done() == 1, "Apache restarted more than once\n" + prefork.diagnostics()
	assert loop.failures == [], f"{len(loop.failures)} failed requests during the restart:\n" + \
		"\n".join(loop.failures[:20]) + "\n" + prefork.diagnostics()
	assert loop.done == 200
	assert prefork.get(path).status == 200
