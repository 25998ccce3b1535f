# test_tomcat.py - Debian's Tomcat 10 (NIO, HTTPS) under `handoff run` serves through the daemon and stops cleanly, its acceptor woken as on TCP.
"""Tomcat's NIO acceptor blocks in accept(); to stop it, Tomcat connects to
its own listening address. Under handoff that address is the daemon's (here
the daemon listens on the very port Tomcat binds, as in a deployment), so
without the preload's connect() hook the acceptor is not woken: Tomcat
waits, then logs "The acceptor thread ... did not stop cleanly"."""
import os
import signal
import subprocess
import time

import pytest

from harness import HANDOFF, free_port, read_text, sanitizer_findings, wait_for
import servers_helpers as sh

NAME = "tomcat.example"
CATALINA_HOME = "/usr/share/tomcat10"
CATALINA = f"{CATALINA_HOME}/bin/catalina.sh"
STORE_PASSWORD = "changeit"
START_TIMEOUT = 120.0	# a JVM start on a busy machine
STOP_TIMEOUT = 60.0
UNCLEAN = "did not stop cleanly"
# Tomcat waits 100 ms + 2 x socket.unlockTimeout for an acceptor that was not
# woken (0.6 s by default). Raised, a stop without the wake-up takes more
# than 10 s, many times a whole stop of the same Tomcat, while a stop whose
# acceptor is woken does not wait at all: the comparison below then holds or
# fails by a wide margin, whatever the machine's load does to the rest.
UNLOCK_TIMEOUT_MS = 5000
STOP_RATIO = 4

SERVER_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector port="{port}" protocol="org.apache.coyote.http11.Http11NioProtocol"
               SSLEnabled="true" maxThreads="8" socket.unlockTimeout="{unlock_ms}">
      <SSLHostConfig>
        <Certificate certificateKeystoreFile="${{catalina.base}}/conf/keystore.p12"
                     certificateKeystorePassword="{password}"
                     certificateKeystoreType="PKCS12" type="EC"/>
      </SSLHostConfig>
    </Connector>
    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false"/>
    </Engine>
  </Service>
</Server>
"""

LOGGING = """handlers = java.util.logging.ConsoleHandler
.handlers = java.util.logging.ConsoleHandler
java.util.logging.ConsoleHandler.level = FINE
java.util.logging.ConsoleHandler.formatter = org.apache.juli.OneLineFormatter
java.util.logging.ConsoleHandler.encoding = UTF-8
"""


def make_catalina_base(base, port):
	"""conf/ (server.xml, web.xml, logging, a PKCS12 keystore made with
	keytool), a ROOT webapp with one page, logs/, work/, temp/."""
	if not os.access(CATALINA, os.X_OK):
		pytest.fail(f"{CATALINA} missing: install tomcat10 (tests/integration/servers/packages.txt)")
	keytool = sh.require_program("keytool")
	for sub in ("conf", "logs", "work", "temp", "webapps/ROOT"):
		(base / sub).mkdir(parents=True)
	server_xml = SERVER_XML.format(port=port, password=STORE_PASSWORD, unlock_ms=UNLOCK_TIMEOUT_MS)
	(base / "conf/server.xml").write_text(server_xml)
	(base / "conf/logging.properties").write_text(LOGGING)
	(base / "conf/web.xml").write_bytes(open("/etc/tomcat10/web.xml", "rb").read())
	(base / "webapps/ROOT/index.html").write_text("served by tomcat\n")
	subprocess.run([keytool, "-genkeypair", "-alias", "tomcat", "-keyalg", "EC",
			"-groupname", "secp256r1", "-storetype", "PKCS12",
			"-keystore", str(base / "conf/keystore.p12"), "-storepass", STORE_PASSWORD,
			"-dname", f"CN={NAME}", "-ext", f"SAN=dns:{NAME}", "-validity", "2"],
		       check=True, capture_output=True, timeout=120)
	cert = base / "cert.pem"
	subprocess.run([keytool, "-exportcert", "-rfc", "-alias", "tomcat",
			"-keystore", str(base / "conf/keystore.p12"), "-storepass", STORE_PASSWORD,
			"-file", str(cert)], check=True, capture_output=True, timeout=120)
	return cert


class Tomcat:
	"""catalina.sh run as a foreground process (it exec()s the JVM), with
	or without `handoff run` in front; its console log in a file."""

	def __init__(self, base, port, log_path, runtime_dir=None):
		self.log_path = log_path
		env = dict(os.environ, CATALINA_HOME=CATALINA_HOME, CATALINA_BASE=str(base),
			   CATALINA_TMPDIR=str(base / "temp"))
		argv = [CATALINA, "run"]
		self.behind_handoff = runtime_dir is not None
		if runtime_dir is not None:
			argv = [str(HANDOFF), "run", "--name", NAME, "--port", str(port),
				"--runtime-dir", str(runtime_dir), "--"] + argv
			env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0"
		with open(log_path, "wb") as log:
			self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
						     stderr=subprocess.STDOUT, env=env,
						     start_new_session=True)

	def log(self):
		return read_text(self.log_path)

	def wait_started(self):
		if not wait_for(lambda: "Server startup in" in self.log() or self.proc.poll() is not None,
				START_TIMEOUT) or self.proc.poll() is not None:
			self.kill()
			pytest.fail(f"tomcat did not start (exit {self.proc.poll()}):\n{self.log()}",
				    pytrace=False)

	def jvm_pid(self):
		"""The JVM's pid: catalina.sh exec()s it, so it is our child alone
		and the child of `handoff run` behind handoff."""
		if self.behind_handoff:
			children = read_text(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").split()
			assert len(children) == 1, f"handoff run has children {children}"
			return int(children[0])
		return self.proc.pid

	def stop(self):
		"""SIGTERM, as a service manager stops it; seconds until the JVM
		exited. Timed to the JVM's own exit, not to `handoff run`'s, whose
		exit (a sanitizer build's leak check) is no part of Tomcat's stop."""
		jvm = self.jvm_pid()
		start = time.monotonic()
		self.proc.send_signal(signal.SIGTERM)
		if not wait_for(lambda: process_gone(jvm), STOP_TIMEOUT, interval=0.005):
			self.kill()
			pytest.fail(f"tomcat ignored SIGTERM:\n{self.log()}", pytrace=False)
		seconds = time.monotonic() - start
		try:
			self.proc.wait(STOP_TIMEOUT)
		except subprocess.TimeoutExpired:
			self.kill()
			pytest.fail(f"handoff run outlived tomcat:\n{self.log()}", pytrace=False)
		return seconds

	def kill(self):
		if self.proc.poll() is None:
			sh.kill_group(self.proc.pid)
			self.proc.wait(STOP_TIMEOUT)


def process_gone(pid):
	"""Has pid exited (gone, or a zombie its parent has not reaped yet)?"""
	try:
		with open(f"/proc/{pid}/stat") as f:
			return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
	except FileNotFoundError:
		return True


def fetch(port, cert):
	out = subprocess.run(["curl", "-sS", "--max-time", "30", "--cacert", str(cert),
			      "--resolve", f"{NAME}:{port}:127.0.0.1",
			      f"https://{NAME}:{port}/index.html"],
			     capture_output=True, text=True, timeout=60)
	assert out.returncode == 0, out.stderr
	return out.stdout


def run_and_stop(tomcat, port, cert):
	try:
		tomcat.wait_started()
		assert fetch(port, cert) == "served by tomcat\n"
		seconds = tomcat.stop()
	finally:
		tomcat.kill()
	return seconds


def test_tomcat_stops_cleanly_behind_handoff(hx):
	"""Served through the daemon, then stopped: no unclean acceptor, the
	same exit status, and within a few times what the same Tomcat takes to
	stop on its own TCP listener (both measured here; an acceptor that is
	not woken costs Tomcat its unlock wait, far more)."""
	sh.require_program("curl")
	port = free_port()
	cert = make_catalina_base(hx.dir / "tomcat", port)

	alone = Tomcat(hx.dir / "tomcat", port, hx.dir / "tomcat-alone.log")
	alone_seconds = run_and_stop(alone, port, cert)

	daemon = hx.daemon(hx.config([f"127.0.0.1:{port} tls"], grants=[f"{NAME} to self"]))
	behind = Tomcat(hx.dir / "tomcat", port, hx.dir / "tomcat-handoff.log", hx.runtime_dir)
	try:
		behind.wait_started()
		daemon.wait_log(r"registered upstream", timeout=30.0)
		assert fetch(port, cert) == "served by tomcat\n"
		daemon.wait_log(rf"name={NAME} upstream=\S+ outcome=handoff", timeout=30.0)
		behind_seconds = behind.stop()
	finally:
		behind.kill()

	assert behind_seconds <= STOP_RATIO * alone_seconds, \
		(f"stop took {behind_seconds:.3f}s behind handoff, {alone_seconds:.3f}s alone; "
		 f"acceptor woken: {UNCLEAN not in behind.log()}")
	for label, tomcat in (("alone", alone), ("behind handoff", behind)):
		log = tomcat.log()
		assert "Destroying ProtocolHandler" in log, f"{label}:\n{log}"
		assert UNCLEAN not in log, f"{label}:\n{log}"
		assert "handoff-preload:" not in log, f"{label}:\n{log}"
	assert behind.proc.returncode == alone.proc.returncode
	findings = sanitizer_findings(behind.log())
	assert not findings, "\n".join(findings)
