# test_acme.py - a certificate obtained over TLS-ALPN-01 through the daemon, offline (pebble, lego), while nginx keeps serving the name.
"""pebble (Debian's test ACME server) validates acme.example by connecting
to the daemon's TLS port with ALPN acme-tls/1; the daemon relays only those
clients to lego's challenge responder (`route NAME alpn acme-tls/1`), and
every other client of the name goes on to nginx under `handoff run`. pebble
resolves the name with pebble-challtestsrv, a mock DNS server on loopback
that the test tells, over its management API, that acme.example is
127.0.0.1. pebble's own HTTPS certificate comes from a CA the test makes,
which lego is told to trust. Nothing leaves 127.0.0.1.

Nothing here skips: a missing program is an AssertionError naming its
Debian package (acme/packages.txt lists them)."""
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from harness import free_port, read_text, wait_for
from preload_helpers import terminate
from servers_helpers import Site, setup_nginx

NAME = "acme.example"
LEGO_TIMEOUT = 60		# seconds for the whole ACME exchange
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
PACKAGES = {"pebble": "pebble", "pebble-challtestsrv": "pebble", "lego": "lego", "openssl": "openssl"}


def require(program):
	path = shutil.which(program)
	assert path is not None, (f"{program} is not installed: install the Debian package "
				  f"{PACKAGES[program]} (tests/integration/acme/packages.txt)")
	return path


def make_ca_and_server_cert(directory):
	"""A CA and a certificate it signs for localhost and 127.0.0.1, for
	pebble's own HTTPS listener (Debian's pebble ships no test certificates)."""
	ca_key, ca_cert = directory / "ca.key", directory / "ca.pem"
	key, csr, cert = directory / "pebble.key", directory / "pebble.csr", directory / "pebble.pem"
	ext = directory / "pebble.ext"
	ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
	for argv in (
		["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		 "-subj", "/CN=handoff test ACME CA", "-days", "2", "-keyout", ca_key, "-out", ca_cert],
		["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		 "-subj", "/CN=localhost", "-keyout", key, "-out", csr],
		["openssl", "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
		 "-days", "2", "-extfile", ext, "-out", cert]):
		subprocess.run([str(a) for a in argv], check=True, capture_output=True, timeout=60)
	return ca_cert, cert, key


class Service:
	"""A helper program in its own session, output to a file, stopped by PID."""

	def __init__(self, label, argv, log_path, env=None):
		self.label = label
		self.log_path = Path(log_path)
		with open(self.log_path, "wb") as log:
			self.proc = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=log,
						     stderr=log, env=env, start_new_session=True)

	def log(self):
		return read_text(self.log_path)

	def stop(self):
		terminate(self.proc, STOP_TIMEOUT)


def listening(port):
	"""Whether something accepts TCP connections on 127.0.0.1:port."""
	with socket.socket() as probe:
		probe.settimeout(2)
		return probe.connect_ex(("127.0.0.1", port)) == 0


class SiteRequests(threading.Thread):
	"""GET /small.txt from the site through the daemon, one new connection
	after another, until stopped; every failure is recorded."""

	def __init__(self, site):
		super().__init__(daemon=True)
		self.site = site
		self.done = 0
		self.failures = []
		self.stopping = threading.Event()

	def run(self):
		deadline = time.monotonic() + 3 * LEGO_TIMEOUT
		while not self.stopping.is_set() and time.monotonic() < deadline:
			try:
				response = self.site.get("/small.txt")
				if response.status != 200 or response.body != b"acme\n":
					self.failures.append(f"request {self.done}: status {response.status} {response.body[:80]!r}")
			except (OSError, ssl.SSLError, ValueError) as e:
				self.failures.append(f"request {self.done}: {type(e).__name__}: {e}")
			self.done += 1
			time.sleep(0.02)


def test_tls_alpn_01_through_the_daemon_while_nginx_serves(hx):
	pebble, challtestsrv, lego = require("pebble"), require("pebble-challtestsrv"), require("lego")
	tls_port, http_port, lego_port = free_port(), free_port(), free_port()
	pebble_port, pebble_mgmt, dns_port, dns_mgmt = free_port(), free_port(), free_port(), free_port()
	work = hx.dir / "ca"
	work.mkdir(mode=0o755)
	ca_cert, pebble_cert, pebble_key = make_ca_and_server_cert(work)

	config = hx.config([f"127.0.0.1:{tls_port} tls", f"127.0.0.1:{http_port} http"]) + \
		f"route {NAME} alpn acme-tls/1 to tcp:127.0.0.1:{lego_port}\n"
	d = hx.daemon(config)
	site = Site("acme", hx.dir, (tls_port, http_port), hx.runtime_dir)
	services = []
	try:
		setup_nginx(site)
		(site.docroot / "small.txt").write_text("acme\n")
		os.chmod(site.docroot / "small.txt", 0o644)
		site.start(d)

		# Mock DNS: only A records, so that pebble dials 127.0.0.1, where
		# the daemon listens; no challenge responders of its own.
		dns = Service("pebble-challtestsrv", [
			challtestsrv, "-management", f"127.0.0.1:{dns_mgmt}", "-dns01", f"127.0.0.1:{dns_port}",
			"-http01", "", "-https01", "", "-tlsalpn01", "", "-defaultIPv4", "", "-defaultIPv6", ""],
			work / "challtestsrv.log")
		services.append(dns)
		assert wait_for(lambda: listening(dns_mgmt) or dns.proc.poll() is not None, START_TIMEOUT) \
			and dns.proc.poll() is None, f"pebble-challtestsrv did not start:\n{dns.log()}"
		request = urllib.request.Request(f"http://127.0.0.1:{dns_mgmt}/add-a", method="POST",
						 data=json.dumps({"host": NAME, "addresses": ["127.0.0.1"]}).encode())
		with urllib.request.urlopen(request, timeout=10) as answer:
			assert answer.status == 200

		(work / "pebble.json").write_text(json.dumps({"pebble": {
			"listenAddress": f"127.0.0.1:{pebble_port}",
			"managementListenAddress": f"127.0.0.1:{pebble_mgmt}",
			"certificate": str(pebble_cert), "privateKey": str(pebble_key),
			# pebble validates tls-alpn-01 on the daemon's TLS port; no
			# http-01 is offered to it, so httpPort is never dialled.
			"httpPort": free_port(), "tlsPort": tls_port,
			"ocspResponderURL": "", "externalAccountBindingRequired": False}}))
		env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0")
		ca = Service("pebble", [pebble, "-config", work / "pebble.json", "-dnsserver", f"127.0.0.1:{dns_port}"],
			     work / "pebble.log", env=env)
		services.append(ca)
		assert wait_for(lambda: listening(pebble_port) or ca.proc.poll() is not None, START_TIMEOUT) \
			and ca.proc.poll() is None, f"pebble did not start:\n{ca.log()}"

		requests = SiteRequests(site)
		requests.start()
		lego_env = dict(os.environ, LEGO_CA_CERTIFICATES=str(ca_cert))
		started = time.monotonic()
		result = subprocess.run([lego, "--server", f"https://127.0.0.1:{pebble_port}/dir", "--accept-tos",
					 "--email", f"admin@{NAME}", "--domains", NAME, "--path", work / "lego",
					 "--tls", "--tls.port", f"127.0.0.1:{lego_port}", "run"],
					capture_output=True, text=True, timeout=LEGO_TIMEOUT, env=lego_env)
		lego_seconds = time.monotonic() - started
		requests.stopping.set()
		requests.join(2 * STOP_TIMEOUT)
		assert result.returncode == 0, (f"lego failed ({lego_seconds:.1f}s):\n{result.stderr[-4000:]}\n"
						f"--- pebble ---\n{ca.log()[-3000:]}\n--- daemon ---\n{d.tail(40)}")

		cert_path = work / "lego" / "certificates" / f"{NAME}.crt"
		assert cert_path.exists(), f"no certificate at {cert_path}: {sorted(p.name for p in (work / 'lego').rglob('*'))}"
		text = subprocess.run(["openssl", "x509", "-in", cert_path, "-noout", "-text"], capture_output=True,
				      text=True, check=True, timeout=30).stdout
		assert f"DNS:{NAME}" in text, text
		assert "Pebble Intermediate CA" in text, text	# issued by pebble, not made up

		# pebble's validation went to lego through the daemon, nowhere else.
		relayed = d.wait_access(lambda r: r.get("outcome") == "relayed")
		assert all(r.get("name") == NAME and r.get("upstream") == f"tcp:127.0.0.1:{lego_port}"
			   for r in relayed), relayed
		assert re.search(r"authz \S+ set VALID by completed challenge", ca.log()), ca.log()[-3000:]

		# nginx kept serving the name through the same daemon port all along.
		assert not requests.failures, f"{len(requests.failures)} of {requests.done} requests failed: " \
			f"{requests.failures[:5]}\n{site.diagnostics(d)}"
		assert requests.done >= 5, f"only {requests.done} requests to nginx while lego ran ({lego_seconds:.1f}s)"
		handed = d.wait_access(lambda r: r.get("name") == NAME and r.get("outcome") == "handoff",
				       count=requests.done)
		assert len(handed) >= requests.done
	finally:
		for service in services:
			service.stop()
		site.stop()
