# servers_helpers.py - runs real, unmodified web servers under `handoff run` behind a daemon for test_servers.py, and the clients that check them.
"""One Site is one web server configured from a template in servers/ into
its own directory: its own name (KEY.example), self-signed certificate,
unprivileged loopback port, access log and document root. Site.start() runs
it as `handoff run --name NAME --port PORT --runtime-dir R -- COMMAND` in a
new session, so that stop() can end the server and every child it forked by
process group. Helper processes the site needs (php-fpm) run next to it and
are stopped the same way.

Nothing here skips: a missing program is an AssertionError naming the
Debian package (servers/packages.txt lists them all)."""
import glob
import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

from harness import BUILD, HANDOFF, read_response, read_text, request_bytes, wait_for

SERVERS_DIR = Path(__file__).resolve().parent / "servers"
PRELOAD = BUILD / "libhandoff-preload.so"
START_TIMEOUT = 20.0		# java and gunicorn+django take a few seconds
STOP_TIMEOUT = 15.0
REQUEST_TIMEOUT = 10.0
CURL_TIMEOUT = 60		# the 100 MiB download included
BIG_FILE_SIZE = 100 * 1024 * 1024
KEYSTORE_PASSWORD = "handoff-test"

# Which Debian package provides each program the sites run.
PROGRAM_PACKAGES = {
	"nginx": "nginx",
	"apache2": "apache2",
	"lighttpd": "lighttpd",
	"node": "nodejs",
	"gunicorn": "gunicorn",
	"php": "php-cli",
	"php-fpm": "php-fpm",
	"javac": "openjdk-17-jdk-headless",
	"java": "openjdk-17-jdk-headless",
	"keytool": "openjdk-17-jdk-headless",
	"caddy": "caddy",
	"curl": "curl",
	"openssl": "openssl",
}

CLIENT_RE = re.compile(r"client=(\S+):(\d+)")
PHP_CLI_CLIENT_RE = re.compile(r"\] (\S+):(\d+) Accepted")


def require_program(program):
	"""Absolute path of program, or an AssertionError naming its package."""
	if program == "php-fpm":
		found = sorted(glob.glob("/usr/sbin/php-fpm*"))
		path = found[-1] if found else None
	else:
		path = shutil.which(program, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
	if path is None:
		package = PROGRAM_PACKAGES.get(program, program)
		raise AssertionError(f"{program} is not installed: install the Debian package "
				     f"{package} (tests/integration/servers/packages.txt lists "
				     f"every package these tests need)")
	return path


def require_django():
	result = subprocess.run(["/usr/bin/python3", "-c", "import django"], capture_output=True,
				text=True, timeout=30)
	if result.returncode != 0:
		raise AssertionError("Django is not importable by /usr/bin/python3: install the "
				     "Debian package python3-django\n" + result.stderr)


def free_local_port():
	"""A loopback TCP port nobody listens on right now."""
	with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
		probe.bind(("127.0.0.1", 0))
		return probe.getsockname()[1]


def port_open(port):
	"""Whether something accepts TCP connections on 127.0.0.1:port."""
	with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
		probe.settimeout(5)
		return probe.connect_ex(("127.0.0.1", port)) == 0


def make_certificate(directory, name):
	"""A self-signed P-256 certificate for name; returns (cert, key) paths."""
	cert = Path(directory) / f"{name}.crt"
	key = Path(directory) / f"{name}.key"
	subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
			"ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={name}",
			"-addext", f"subjectAltName=DNS:{name}", "-days", "2",
			"-keyout", str(key), "-out", str(cert)],
		       check=True, capture_output=True, timeout=60)
	# Readable by the workers that drop privileges (www-data).
	os.chmod(cert, 0o644)
	os.chmod(key, 0o644)
	return cert, key


def make_big_file(path, size=BIG_FILE_SIZE):
	"""size random bytes at path; returns their sha256 hex digest."""
	digest = hashlib.sha256()
	chunk_size = 1024 * 1024
	with open(path, "wb") as out:
		for _ in range(size // chunk_size):
			chunk = os.urandom(chunk_size)
			digest.update(chunk)
			out.write(chunk)
	os.chmod(path, 0o644)
	return digest.hexdigest()


def file_sha256(path):
	digest = hashlib.sha256()
	with open(path, "rb") as f:
		for chunk in iter(lambda: f.read(1024 * 1024), b""):
			digest.update(chunk)
	return digest.hexdigest()


def fill_template(template_name, values):
	"""The text of servers/template_name with every @KEY@ replaced; any
	placeholder left over is an error in the template or the caller."""
	text = (SERVERS_DIR / template_name).read_text()
	for key, value in values.items():
		text = text.replace(f"@{key}@", str(value))
	leftover = re.findall(r"@[A-Z_]+@", text)
	assert not leftover, f"{template_name}: unfilled placeholders {leftover}"
	return text


def kill_group(pgid, timeout=STOP_TIMEOUT):
	"""SIGKILL every process left in the group pgid and wait (bounded) for
	them to go; harmless if the group is already empty."""
	try:
		os.killpg(pgid, signal.SIGKILL)
	except ProcessLookupError:
		return
	deadline = time.monotonic() + timeout
	while time.monotonic() < deadline:
		try:
			os.killpg(pgid, 0)
		except ProcessLookupError:
			return
		time.sleep(0.05)


class Helper:
	"""A process a site needs beside it (php-fpm), in its own session."""

	def __init__(self, label, argv, log_path, env=None):
		self.label = label
		self.log_path = Path(log_path)
		with open(self.log_path, "wb") as log:
			self.proc = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL,
						     stdout=log, stderr=log, env=env,
						     start_new_session=True)

	def stop(self):
		problems = []
		if self.proc.poll() is None:
			self.proc.send_signal(signal.SIGTERM)
			try:
				self.proc.wait(STOP_TIMEOUT)
			except subprocess.TimeoutExpired:
				problems.append(f"{self.label} (pid {self.proc.pid}) ignored SIGTERM "
						f"for {STOP_TIMEOUT}s")
		kill_group(self.proc.pid)
		if self.proc.poll() is None:
			self.proc.wait(STOP_TIMEOUT)
		return problems


class Site:
	"""One web server behind the daemon. Attributes the per-server setup
	functions fill in:

	argv          the server's own foreground command line
	env           extra environment for it
	tls           False for a plain HTTP server (routed by Host)
	echo_path     a page answering "client=ADDR:PORT pid=PID", or None
	file_prefix   URL prefix under which docroot's files are served
	log_clients   function returning the ADDR:PORT of every logged request
	reload        function triggering the server's graceful reload, or None
	reload_done   function returning how many reloads the server has logged
	"""

	def __init__(self, key, root, daemon_ports, runtime_dir):
		self.key = key
		self.name = f"{key}.example"
		self.dir = Path(root) / key
		self.dir.mkdir(mode=0o755)
		os.chmod(self.dir, 0o755)
		self.docroot = self.dir / "www"
		self.docroot.mkdir(mode=0o755)
		os.chmod(self.docroot, 0o755)
		self.tls_port, self.http_port = daemon_ports
		self.runtime_dir = runtime_dir
		self.port = free_local_port()
		self.cert, self.key_path = make_certificate(self.dir, self.name)
		self.access_log = self.dir / "access.log"
		self.run_log = self.dir / "handoff-run.log"
		self.argv = None
		self.env = {}
		self.cwd = self.dir
		self.tls = True
		self.echo_path = "/whoami"
		self.file_prefix = "/"
		self.log_clients = lambda: clients_in(self.access_log, CLIENT_RE)
		self.reload = None
		self.reload_done = None
		self.helpers = []
		self.proc = None

	@property
	def daemon_port(self):
		return self.tls_port if self.tls else self.http_port

	@property
	def scheme(self):
		return "https" if self.tls else "http"

	def url(self, path):
		return f"{self.scheme}://{self.name}:{self.daemon_port}{path}"

	def run_argv(self):
		return [str(HANDOFF), "run", "--name", self.name, "--port", str(self.port),
			"--runtime-dir", str(self.runtime_dir), "--"] + [str(a) for a in self.argv]

	def start(self, daemon, timeout=START_TIMEOUT):
		"""Start the server under `handoff run` and wait until the daemon
		has registered it and a request through the daemon succeeds."""
		env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", **self.env)
		env.pop("LD_PRELOAD", None)
		with open(self.run_log, "wb") as log:
			self.proc = subprocess.Popen(self.run_argv(), stdin=subprocess.DEVNULL, stdout=log,
						     stderr=log, env=env, cwd=self.cwd,
						     start_new_session=True)
		pattern = re.compile(rf"registered upstream \S+ names={re.escape(self.name)}\b")
		registered = wait_for(lambda: pattern.search(daemon.log()) or self.proc.poll() is not None,
				      timeout)
		if self.proc.poll() is not None or not registered:
			raise AssertionError(f"{self.key}: not registered with the daemon within "
					     f"{timeout}s (handoff run status {self.proc.poll()})\n"
					     + self.diagnostics(daemon))
		probe = self.echo_path or self.file_prefix + "small.txt"
		ok = wait_for(lambda: self.try_get(probe) or self.proc.poll() is not None, timeout,
			      interval=0.2)
		if self.proc.poll() is not None or not ok:
			raise AssertionError(f"{self.key}: no answer to GET {probe} through the daemon "
					     f"within {timeout}s\n" + self.diagnostics(daemon))
		return self

	def try_get(self, path):
		try:
			return self.get(path, timeout=2.0).status == 200
		except (OSError, ssl.SSLError, ValueError):
			return False

	def get(self, path, timeout=REQUEST_TIMEOUT):
		"""One GET through the daemon on a new connection (Connection: close)."""
		with socket.create_connection(("127.0.0.1", self.daemon_port), timeout=timeout) as sock:
			if self.tls:
				ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
				ctx.load_verify_locations(str(self.cert))
				ctx.set_alpn_protocols(["http/1.1"])
				with ctx.wrap_socket(sock, server_hostname=self.name) as tls:
					return exchange(tls, self.name, path)
			return exchange(sock, self.name, path)

	def peer_certificate_der(self):
		"""The certificate the server presents for SNI = its name, as DER."""
		ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
		ctx.load_verify_locations(str(self.cert))
		with socket.create_connection(("127.0.0.1", self.tls_port), timeout=REQUEST_TIMEOUT) as sock:
			with ctx.wrap_socket(sock, server_hostname=self.name) as tls:
				return tls.getpeercert(binary_form=True)

	def curl(self, *args, paths=(), outputs=None):
		"""curl through the daemon (--resolve NAME:DAEMONPORT:127.0.0.1) for
		every path in one invocation, which reuses one connection when it
		can. Returns (CompletedProcess, transfers) where each transfer is a
		dict of num_connects, local (ADDR:PORT), status and size."""
		argv = ["curl", "-sS", "--http1.1", "--max-time", str(CURL_TIMEOUT - 10),
			"--resolve", f"{self.name}:{self.daemon_port}:127.0.0.1"]
		if self.tls:
			argv += ["--cacert", str(self.cert)]
		argv += ["-w", "\n@@ %{num_connects} %{local_ip}:%{local_port} %{http_code} %{size_download}\n"]
		argv += list(args)
		for i, path in enumerate(paths):
			if outputs is not None:
				argv += ["-o", str(outputs[i])]
			argv.append(self.url(path))
		result = subprocess.run(argv, capture_output=True, text=True, timeout=CURL_TIMEOUT)
		transfers = []
		for line in result.stdout.splitlines():
			if line.startswith("@@ "):
				connects, local, status, size = line.split()[1:]
				transfers.append({"num_connects": int(connects), "local": local,
						  "status": int(status), "size": int(size)})
		return result, transfers

	def wait_logged(self, client, count=1, timeout=15.0):
		"""Wait until the server's own log shows count requests from client
		(ADDR:PORT); lighttpd buffers its access log for a few seconds."""
		found = wait_for(lambda: self.log_clients().count(client) >= count, timeout, interval=0.1)
		assert found, (f"{self.key}: expected {count} logged request(s) from {client} within "
			       f"{timeout}s; logged clients: {self.log_clients()[-20:]}")

	def diagnostics(self, daemon=None):
		parts = [f"--- handoff run + {self.key} output ({self.run_log}) ---",
			 tail(read_text(self.run_log), 40)]
		for helper in self.helpers:
			parts += [f"--- {helper.label} output ---", tail(read_text(helper.log_path), 20)]
		for log in sorted(self.dir.glob("*error*.log")):
			parts += [f"--- {log.name} ---", tail(read_text(log), 20)]
		if daemon is not None:
			parts += ["--- daemon log ---", daemon.tail(30)]
		return "\n".join(parts)

	def stop(self):
		"""SIGTERM to `handoff run`, which passes it to the server; then
		SIGKILL whatever is left in the session (workers, CGI children).
		Returns problems found."""
		problems = []
		if self.proc is not None:
			if self.proc.poll() is None:
				self.proc.send_signal(signal.SIGTERM)
				try:
					self.proc.wait(STOP_TIMEOUT)
				except subprocess.TimeoutExpired:
					problems.append(f"{self.key}: handoff run (pid {self.proc.pid}) did not "
							f"exit within {STOP_TIMEOUT}s of SIGTERM")
			kill_group(self.proc.pid)
			if self.proc.poll() is None:
				self.proc.wait(STOP_TIMEOUT)
		for helper in self.helpers:
			problems += helper.stop()
		return problems


def exchange(sock, host, path):
	sock.sendall(request_bytes(host, path))
	with sock.makefile("rb") as stream:
		return read_response(stream)


def clients_in(path, regex):
	return [f"{m.group(1)}:{m.group(2)}" for m in regex.finditer(read_text(path))]


def tail(text, lines):
	return "\n".join(text.splitlines()[-lines:])


def count_in(path, pattern):
	return len(re.findall(pattern, read_text(path)))


def read_pid(path):
	return int(Path(path).read_text().split()[0])


def read_pid_or_none(path):
	try:
		return read_pid(path)
	except (FileNotFoundError, ValueError, IndexError):
		return None


def process_alive(pid):
	try:
		os.kill(pid, 0)
	except ProcessLookupError:
		return False
	return True


def parent_pid(pid):
	"""The parent of pid from /proc, or None if pid is gone."""
	try:
		stat = Path(f"/proc/{pid}/stat").read_text()
	except FileNotFoundError:
		return None
	# The command name in parentheses may contain spaces; fields follow it.
	return int(stat.rsplit(")", 1)[1].split()[1])


def pid_signaller(pid_file, signo):
	def send():
		os.kill(read_pid(pid_file), signo)
	return send


def command_runner(argv, env=None):
	def run():
		result = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
					timeout=30, env=env)
		assert result.returncode == 0, f"{argv}: status {result.returncode}\n{result.stderr}"
	return run


# ---- one setup function per server: writes its config, sets argv ----

def user_is_root():
	return os.geteuid() == 0


def setup_nginx(site, extra=""):
	nginx = require_program("nginx")
	(site.dir / "nginx-tmp").mkdir()
	conf = site.dir / "nginx.conf"
	conf.write_text(fill_template("nginx.conf.in", {
		"DIR": site.dir, "PORT": site.port, "NAME": site.name, "CERT": site.cert,
		"KEY": site.key_path, "EXTRA": extra, "SSL": " ssl" if site.tls else "",
		# As root the workers run as www-data, as Debian's nginx does.
		"USER_LINE": "user www-data;" if user_is_root() else ""}))
	site.argv = [nginx, "-c", conf]
	site.reload = command_runner([nginx, "-c", conf, "-s", "reload"])
	site.reload_done = lambda: count_in(site.dir / "nginx-error.log", r"signal 1 \(SIGHUP\) received")


def setup_nginx_http(site):
	"""nginx in plain HTTP behind the daemon's http listener: the one
	place where sendfile() really runs (TLS needs the bytes in user space
	unless the kernel does TLS)."""
	site.tls = False
	setup_nginx(site)


# The MPM sections apache.conf.in takes: the threaded event MPM, and
# prefork, whose parent signals its whole process group on stop and restart.
APACHE_MPMS = {
	"event": "LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so\n"
		 "StartServers 2\nServerLimit 4\nThreadsPerChild 16\nMaxRequestWorkers 64",
	"prefork": "LoadModule mpm_prefork_module /usr/lib/apache2/modules/mod_mpm_prefork.so\n"
		   "StartServers 3\nMinSpareServers 2\nMaxSpareServers 6\nServerLimit 16\n"
		   "MaxRequestWorkers 16",
}


def setup_apache(site, mpm="event"):
	apache = require_program("apache2")
	(site.dir / "apache-run").mkdir()
	conf = site.dir / "apache.conf"
	conf.write_text(fill_template("apache.conf.in", {
		"DIR": site.dir, "PORT": site.port, "NAME": site.name, "CERT": site.cert,
		"KEY": site.key_path, "MPM_LINES": APACHE_MPMS[mpm],
		"USER_LINES": "User www-data\nGroup www-data" if user_is_root() else ""}))
	site.argv = [apache, "-DFOREGROUND", "-f", conf]
	site.echo_path = None		# the access log shows the client's address
	site.reload = command_runner([apache, "-f", conf, "-k", "graceful"])
	# event says "SIGUSR1 received", prefork "Graceful restart requested".
	site.reload_done = lambda: count_in(site.dir / "apache-error.log",
					    r"SIGUSR1 received|Graceful restart requested")
	(site.docroot / "small.txt").write_text("apache\n")


def setup_apache_prefork(site):
	setup_apache(site, mpm="prefork")


def setup_lighttpd(site):
	lighttpd = require_program("lighttpd")
	(site.dir / "lighttpd-tmp").mkdir()
	conf = site.dir / "lighttpd.conf"
	conf.write_text(fill_template("lighttpd.conf.in", {
		"DIR": site.dir, "PORT": site.port, "NAME": site.name, "CERT": site.cert,
		"KEY": site.key_path, "USER_LINES": ""}))
	shutil.copy(SERVERS_DIR / "whoami.cgi", site.docroot / "whoami.cgi")
	os.chmod(site.docroot / "whoami.cgi", 0o755)
	site.argv = [lighttpd, "-D", "-f", conf]
	site.echo_path = "/whoami.cgi"
	# SIGUSR1: graceful restart in the same process; the listening socket is kept.
	site.reload = pid_signaller(site.dir / "lighttpd.pid", signal.SIGUSR1)
	site.reload_done = lambda: count_in(site.dir / "lighttpd-error.log", r"graceful shutdown started")


def node_args(site):
	return [site.port, site.cert, site.key_path, site.docroot, site.access_log]


def setup_node(site):
	site.argv = [require_program("node"), SERVERS_DIR / "node_https.js"] + node_args(site)


def setup_node_cluster(site, policy="rr"):
	site.argv = [require_program("node"), SERVERS_DIR / "node_cluster.js", policy] + node_args(site)


def setup_node_cluster_sched_none(site):
	setup_node_cluster(site, "none")


def setup_gunicorn(site):
	gunicorn = require_program("gunicorn")
	require_django()
	# A copy, so that nothing is written into the source tree.
	shutil.copytree(SERVERS_DIR / "django_site", site.dir / "django_site")
	site.argv = [gunicorn, "--workers", "2", "--worker-class", "gthread", "--threads", "4",
		     "--keep-alive", "30", "--graceful-timeout", "5",
		     "--bind", f"127.0.0.1:{site.port}",
		     "--certfile", site.cert, "--keyfile", site.key_path,
		     "--pid", site.dir / "gunicorn.pid",
		     "--access-logfile", site.access_log,
		     "--access-logformat", 'client=%(h)s:%({remote_port}e)s pid=%(p)s "%(r)s" %(s)s %(b)s',
		     "--error-logfile", site.dir / "gunicorn-error.log",
		     "django_site.wsgi"]
	site.env = {"SITE_DOCROOT": str(site.docroot)}
	site.file_prefix = "/files/"
	site.reload = pid_signaller(site.dir / "gunicorn.pid", signal.SIGHUP)
	site.reload_done = lambda: count_in(site.dir / "gunicorn-error.log", r"Handling signal: hup")


def setup_php_fpm(site):
	php_fpm = require_program("php-fpm")
	conf = site.dir / "php-fpm.conf"
	conf.write_text(fill_template("php-fpm.conf.in", {
		"DIR": site.dir,
		"USER_LINES": "user = www-data\ngroup = www-data" if user_is_root() else ""}))
	shutil.copy(SERVERS_DIR / "whoami.php", site.docroot / "whoami.php")
	fpm_argv = [php_fpm, "--nodaemonize", "--fpm-config", conf]
	if user_is_root():
		fpm_argv.append("--allow-to-run-as-root")
	# php-fpm is started normally: it listens on a Unix socket only.
	fpm = Helper("php-fpm", fpm_argv, site.dir / "php-fpm.out")
	site.helpers.append(fpm)
	socket_path = site.dir / "php-fpm.sock"
	if not wait_for(lambda: socket_path.exists() or fpm.proc.poll() is not None, START_TIMEOUT):
		raise AssertionError("php-fpm did not create its socket\n" + read_text(fpm.log_path))
	assert fpm.proc.poll() is None, "php-fpm exited:\n" + read_text(fpm.log_path)
	location = ("\t\tlocation ~ \\.php$ {\n"
		    "\t\t\tinclude /etc/nginx/fastcgi_params;\n"
		    "\t\t\tfastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n"
		    f"\t\t\tfastcgi_pass unix:{socket_path};\n"
		    "\t\t}")
	setup_nginx(site, extra=location)
	site.echo_path = "/whoami.php"
	# The reload under test is php-fpm's (USR2: re-exec of the master).
	site.reload = pid_signaller(site.dir / "php-fpm.pid", signal.SIGUSR2)
	site.reload_done = lambda: count_in(site.dir / "php-fpm-error.log", r"Reloading in progress")


def setup_php_cli(site):
	php = require_program("php")
	shutil.copy(SERVERS_DIR / "whoami.php", site.docroot / "whoami.php")
	site.argv = [php, "-S", f"127.0.0.1:{site.port}", "-t", site.docroot]
	site.tls = False
	site.echo_path = "/whoami.php"
	# php -S logs "[date] ADDR:PORT Accepted" for every connection.
	site.log_clients = lambda: clients_in(site.run_log, PHP_CLI_CLIENT_RE)


def setup_java(site):
	javac = require_program("javac")
	java = require_program("java")
	classes = site.dir / "classes"
	subprocess.run([javac, "-d", classes, SERVERS_DIR / "EchoHttpsServer.java"], check=True,
		       capture_output=True, timeout=120)
	keystore = site.dir / "keystore.p12"
	subprocess.run(["openssl", "pkcs12", "-export", "-in", site.cert, "-inkey", site.key_path,
			"-name", site.name, "-out", keystore, "-passout", f"pass:{KEYSTORE_PASSWORD}"],
		       check=True, capture_output=True, timeout=60)
	site.argv = [java, "-cp", classes, "EchoHttpsServer", site.port, keystore, KEYSTORE_PASSWORD,
		     site.docroot, site.access_log]
	site.file_prefix = "/files/"


SETUPS = {
	"nginx": setup_nginx,
	"nginx-http": setup_nginx_http,
	"apache": setup_apache,
	"apache-prefork": setup_apache_prefork,
	"lighttpd": setup_lighttpd,
	"node": setup_node,
	"node-cluster": setup_node_cluster,
	"node-cluster-sched-none": setup_node_cluster_sched_none,
	"gunicorn": setup_gunicorn,
	"gunicorn-upgrade": setup_gunicorn,
	"php-fpm": setup_php_fpm,
	"php-cli": setup_php_cli,
	"java": setup_java,
}

# Every name the daemon grants: one per site plus the one caddy asks for.
SITE_NAMES = [f"{key}.example" for key in SETUPS] + ["caddy.example"]


def make_site(key, root, daemon_ports, runtime_dir, big_file):
	"""Configure (not start) the site key; big_file is hard-linked into
	its document root as big.bin."""
	site = Site(key, root, daemon_ports, runtime_dir)
	os.link(big_file, site.docroot / "big.bin")
	(site.docroot / "small.txt").write_text(f"{key}\n")
	os.chmod(site.docroot / "small.txt", 0o644)
	try:
		SETUPS[key](site)
	except BaseException:
		site.stop()
		raise
	return site


class RequestLoop(threading.Thread):
	"""count GETs of path, each on a new connection, spread over about
	seconds; every failure (exception or non-200) is recorded. Bounded by
	count and by a deadline of 6 * seconds."""

	def __init__(self, site, path, count=200, seconds=5.0):
		super().__init__(daemon=True)
		self.site = site
		self.path = path
		self.count = count
		self.interval = seconds / count
		self.deadline = time.monotonic() + 6 * seconds
		self.done = 0
		self.failures = []
		self.bodies = []

	def run(self):
		for i in range(self.count):
			if time.monotonic() > self.deadline:
				self.failures.append(f"deadline passed after {i} requests")
				break
			started = time.monotonic()
			try:
				response = self.site.get(self.path)
				if response.status != 200:
					self.failures.append(f"request {i}: status {response.status}")
				else:
					self.bodies.append(response.body.decode(errors="replace"))
			except (OSError, ssl.SSLError, ValueError) as e:
				self.failures.append(f"request {i}: {type(e).__name__}: {e}")
			self.done += 1
			time.sleep(max(0.0, self.interval - (time.monotonic() - started)))
