# relay_helpers.py - real TCP targets (nginx, caddy, python servers), network namespaces and PROXY/curl/RSS helpers for test_relay.py.
"""Every process is started through a Processes registry and stopped by PID
at teardown, together with the children it forked (nginx workers). A
NetNamespace removes its namespace and veth pair when the test ends, even
on failure. Missing programs are AssertionErrors naming the Debian package
(relay/packages.txt lists them)."""
import hashlib
import ipaddress
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import read_text, wait_for

RELAY_DIR = Path(__file__).resolve().parent / "relay"
TARGET_SERVER = RELAY_DIR / "target_server.py"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0

PROGRAM_PACKAGES = {"nginx": "nginx", "caddy": "caddy", "ip": "iproute2", "curl": "curl",
		    "openssl": "openssl"}

PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def require_program(program):
	"""Absolute path of program, or an AssertionError naming its package."""
	path = shutil.which(program, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
	if path is None:
		raise AssertionError(f"{program} is not installed: install the Debian package "
				     f"{PROGRAM_PACKAGES.get(program, program)} "
				     f"(tests/integration/relay/packages.txt lists what these tests need)")
	return path


def make_cert(directory, name):
	"""A self-signed P-256 certificate for name; returns (cert, key) paths,
	readable by nginx's unprivileged workers."""
	directory = Path(directory)
	cert, key = directory / f"{name}.crt", directory / f"{name}.key"
	subprocess.run([require_program("openssl"), "req", "-x509", "-newkey", "ec",
			"-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={name}",
			"-addext", f"subjectAltName=DNS:{name}", "-days", "2",
			"-keyout", str(key), "-out", str(cert)],
		       check=True, capture_output=True, timeout=60)
	os.chmod(cert, 0o644)
	os.chmod(key, 0o644)
	return cert, key


def cert_der(cert_path):
	return ssl.PEM_cert_to_DER_cert(Path(cert_path).read_text())


def port_accepting(port, host="127.0.0.1"):
	try:
		with socket.create_connection((host, port), timeout=0.5):
			return True
	except OSError:
		return False


def child_pids(pid):
	"""PIDs whose parent is pid (nginx's workers), from /proc."""
	children = []
	for entry in Path("/proc").iterdir():
		if not entry.name.isdigit():
			continue
		try:
			stat = (entry / "stat").read_text()
		except OSError:
			continue
		# The command name is in parentheses and may hold spaces.
		fields = stat[stat.rindex(")") + 2:].split()
		if int(fields[1]) == pid:
			children.append(int(entry.name))
	return children


def vm_rss_kib(pid):
	match = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
	return int(match.group(1))


def proxy_v1_header(src, dst):
	"""PROXY v1 line for IPv4 (host, port) pairs."""
	return f"PROXY TCP4 {src[0]} {dst[0]} {src[1]} {dst[1]}\r\n".encode()


def proxy_v2_header(src, dst):
	"""PROXY v2 PROXY command, TCP over IPv4, no TLVs."""
	body = (socket.inet_aton(src[0]) + socket.inet_aton(dst[0])
		+ struct.pack("!HH", src[1], dst[1]))
	return PROXY_V2_SIGNATURE + bytes((0x21, 0x11)) + struct.pack("!H", len(body)) + body


class Proc:
	"""One started program with its output in files under the test's
	directory. stop() ends it by PID and then any child it left behind."""

	def __init__(self, argv, workdir, label, env=None):
		self.label = label
		self.argv = [str(a) for a in argv]
		self.stdout_path = Path(workdir) / f"{label}.stdout"
		self.stderr_path = Path(workdir) / f"{label}.stderr"
		with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
			self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
						     stderr=err, env=env)
		self.children = []

	@property
	def pid(self):
		return self.proc.pid

	def running(self):
		return self.proc.poll() is None

	def output(self):
		return read_text(self.stdout_path) + read_text(self.stderr_path)

	def wait_ready(self, predicate, what):
		ready = wait_for(lambda: predicate() or not self.running(), START_TIMEOUT)
		if not ready or not self.running():
			self.stop()
			raise AssertionError(f"{self.label} ({' '.join(self.argv)}) did not become ready "
					     f"({what}) within {START_TIMEOUT}s, status {self.proc.returncode}:\n"
					     f"{self.output()[-3000:]}")

	def kill9(self):
		"""SIGKILL and reap: once this returns, the kernel has closed every
		socket the process held (it forks nothing)."""
		if self.running():
			self.proc.send_signal(signal.SIGKILL)
		self.proc.wait(STOP_TIMEOUT)

	def stop(self, signo=signal.SIGTERM):
		if self.running():
			self.children = child_pids(self.pid)
			self.proc.send_signal(signo)
			try:
				self.proc.wait(STOP_TIMEOUT)
			except subprocess.TimeoutExpired:
				self.proc.kill()
				self.proc.wait(STOP_TIMEOUT)
		# Workers of a master that died first must not outlive the test.
		for child in self.children:
			try:
				os.kill(child, signal.SIGKILL)
			except ProcessLookupError:
				pass
		self.children = []


class Processes:
	"""The processes one test started, stopped by PID (last started first)."""

	def __init__(self, workdir):
		self.dir = Path(workdir)
		self.procs = []

	def start(self, argv, label, env=None):
		proc = Proc(argv, self.dir, label, env)
		self.procs.append(proc)
		return proc

	def target(self, mode, port, label):
		"""A target_server.py process on 127.0.0.1:port."""
		proc = self.start([sys.executable, TARGET_SERVER, mode, port, label], f"target-{label}")
		proc.wait_ready(lambda: "ready" in read_text(proc.stdout_path), "'ready' on stdout")
		return proc

	def nginx(self, label, servers, netns=None):
		"""nginx with the given server blocks, in its own directory; in
		the namespace netns if given. Returns (proc, directory)."""
		nginx = require_program("nginx")
		directory = self.dir / label
		(directory / "tmp").mkdir(parents=True)
		conf = directory / "nginx.conf"
		authority = "authority=$proxy_protocol_tlv_authority " if nginx_has_tlv_variables() else ""
		conf.write_text(fill_template("nginx.conf.in", {"DIR": directory, "SERVERS": servers,
								"AUTHORITY_FIELD": authority}))
		# -e: the error log before the configuration is read, away from /var/log.
		argv = [nginx, "-e", directory / "error.log", "-c", conf]
		if netns is not None:
			argv = [require_program("ip"), "netns", "exec", netns.name] + argv
		proc = self.start(argv, label)
		proc.wait_ready(lambda: (directory / "nginx.pid").exists() and child_pids(proc.pid),
				"pid file and a worker")
		return proc, directory

	def caddy(self, label, name, port, cert, key):
		caddy = require_program("caddy")
		directory = self.dir / label
		directory.mkdir()
		caddyfile = directory / "Caddyfile"
		caddyfile.write_text(fill_template("Caddyfile.in", {"DIR": directory, "NAME": name,
								    "PORT": port, "CERT": cert, "KEY": key}))
		# Caddy writes its autosave and data under HOME/XDG: keep them here.
		env = dict(os.environ, HOME=str(directory), XDG_DATA_HOME=str(directory / "data"),
			   XDG_CONFIG_HOME=str(directory / "config"))
		proc = self.start([caddy, "run", "--config", caddyfile, "--adapter", "caddyfile"], label, env)
		proc.wait_ready(lambda: port_accepting(port), f"accepting on 127.0.0.1:{port}")
		return proc

	def close(self):
		for proc in reversed(self.procs):
			proc.stop()


def fill_template(name, values):
	text = (RELAY_DIR / name).read_text()
	for key, value in values.items():
		text = text.replace(f"@{key}@", str(value))
	left = re.findall(r"@[A-Z_]+@", text)
	assert not left, f"{name}: unfilled placeholders {left}"
	return text


_tlv_support = {}


def nginx_has_tlv_variables():
	"""Whether this nginx knows $proxy_protocol_tlv_* (added in 1.23.2):
	asked of nginx itself with a throw-away configuration test."""
	if "answer" not in _tlv_support:
		nginx = require_program("nginx")
		with tempfile.TemporaryDirectory(prefix="handoff-nginx-probe-") as probe:
			conf = Path(probe) / "probe.conf"
			conf.write_text(f"pid {probe}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
					f"http {{ log_format probe '$proxy_protocol_tlv_authority'; "
					f"access_log {probe}/a.log probe; }}\n")
			result = subprocess.run([nginx, "-t", "-q", "-e", f"{probe}/e.log", "-c", str(conf)],
						capture_output=True, text=True, timeout=30)
		_tlv_support["answer"] = result.returncode == 0
	return _tlv_support["answer"]


class NetNamespace:
	"""A network namespace joined to this host by a veth pair on a /30 of
	10.213.0.0/16: the host end is .1, the namespace end .2. remove()
	kills what still runs inside (processes this test started there) and
	deletes the pair and the namespace; it is safe to call twice."""

	def __init__(self, tag):
		self.ip = require_program("ip")
		ident = f"{os.getpid()}{tag}"
		self.name = f"ho-relay-{ident}"
		# Interface names are at most 15 bytes.
		self.host_if = f"hr{ident}h"[-15:]
		self.ns_if = f"hr{ident}n"[-15:]
		self.subnet = self._free_subnet()
		self.host_addr = str(self.subnet.network_address + 1)
		self.addr = str(self.subnet.network_address + 2)
		try:
			self._run("netns", "add", self.name)
			self._run("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
			self._run("link", "set", self.ns_if, "netns", self.name)
			self._run("addr", "add", f"{self.host_addr}/30", "dev", self.host_if)
			self._run("link", "set", self.host_if, "up")
			self._inside("addr", "add", f"{self.addr}/30", "dev", self.ns_if)
			self._inside("link", "set", self.ns_if, "up")
			self._inside("link", "set", "lo", "up")
		except BaseException:
			self.remove()
			raise

	def _free_subnet(self):
		"""A 10.213.X.0/30 no interface of this host uses yet."""
		used = subprocess.run([self.ip, "-4", "-o", "addr"], capture_output=True, text=True,
				      check=True, timeout=30).stdout
		start = os.getpid() % 200
		for step in range(250):
			x = (start + step) % 250 + 1
			if f" 10.213.{x}." not in used:
				return ipaddress.ip_network(f"10.213.{x}.0/30")
		raise AssertionError("no free 10.213.X.0/30 for the test's veth pair")

	def _run(self, *args):
		subprocess.run([self.ip, *args], check=True, capture_output=True, timeout=30)

	def _inside(self, *args):
		self._run("netns", "exec", self.name, self.ip, *args)

	def remove(self):
		pids = subprocess.run([self.ip, "netns", "pids", self.name], capture_output=True,
				      text=True, timeout=30).stdout.split()
		for pid in pids:
			try:
				os.kill(int(pid), signal.SIGKILL)
			except ProcessLookupError:
				pass
		# Deleting one end of a veth pair deletes both.
		subprocess.run([self.ip, "link", "del", self.host_if], capture_output=True, timeout=30)
		subprocess.run([self.ip, "netns", "del", self.name], capture_output=True, timeout=30)

	def exists(self):
		names = subprocess.run([self.ip, "netns", "list"], capture_output=True, text=True,
				       timeout=30).stdout
		return any(line.split()[0] == self.name for line in names.splitlines() if line.strip())


def write_random_file(path, size):
	"""size bytes of random data; returns their SHA-256."""
	digest = hashlib.sha256()
	block = 1 << 20
	with open(path, "wb") as f:
		for _ in range(size // block):
			data = os.urandom(block)
			digest.update(data)
			f.write(data)
	os.chmod(path, 0o644)
	return digest.hexdigest()


def curl_sha256(args, timeout):
	"""Run curl with args, hashing what it writes to stdout; returns
	(returncode, sha256, byte count, stderr)."""
	curl = require_program("curl")
	digest = hashlib.sha256()
	count = 0
	deadline = time.monotonic() + timeout
	with subprocess.Popen([curl, "-sS", "--max-time", str(int(timeout)), *map(str, args)],
			      stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
		while time.monotonic() < deadline:
			chunk = proc.stdout.read(1 << 20)
			if not chunk:
				break
			digest.update(chunk)
			count += len(chunk)
		try:
			proc.wait(max(1.0, deadline - time.monotonic()))
		except subprocess.TimeoutExpired:
			proc.kill()
			proc.wait()
		err = proc.stderr.read().decode(errors="replace")
	return proc.returncode, digest.hexdigest(), count, err


def curl(args, timeout=20):
	result = subprocess.run([require_program("curl"), "-sS", "--max-time", str(int(timeout)),
				 *map(str, args)], capture_output=True, text=True, timeout=timeout + 10)
	return result


def wait_file_lines(path, pattern, count=1, timeout=5.0):
	"""Lines of path matching the regex pattern, once there are count of them."""
	regex = re.compile(pattern)

	def matching():
		return [line for line in read_text(path).splitlines() if regex.search(line)]

	wait_for(lambda: len(matching()) >= count, timeout)
	lines = matching()
	if len(lines) < count:
		raise AssertionError(f"{path}: expected {count} lines matching {pattern!r} within "
				     f"{timeout}s, found:\n{read_text(path)[-3000:]}")
	return lines
