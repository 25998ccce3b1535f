# test_multinode.py - several machines as network namespaces: HAProxy sends PROXY v2 to two edge daemons with local upstreams, a killed edge is taken out by the health check, and both edges relay to a remote nginx that learns the client from PROXY v2.
"""The topology, built from examples/multinode/ (the files docs/operations.md
shows), each "machine" its own network namespace made by the test:

  client 192.0.2.10 --- 192.0.2.1 lb (HAProxy, :443)
                                   198.51.100.1 (bridge "edges")
                                    |                  |
                     edge1 198.51.100.11   edge2 198.51.100.12   handoff serve :443
                           203.0.113.11          203.0.113.12    + https-upstream for a.example
                                    |                  |
                             203.0.113.100 remote (bridge "site"): nginx :8443 proxy_protocol

Only the file paths of the example configurations are changed (each change
is checked, so an edited example cannot silently drift from the test).
No address of this host is used: traffic stays between the namespaces,
which are removed when the test ends, whatever happened."""
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from harness import (DAEMON_ASAN_OPTIONS, HANDOFF, REPO, START_TIMEOUT, Daemon, Upstream, daemon_ready,
		     sanitizer_findings, wait_for)
from relay_helpers import Processes, make_cert, require_program

EXAMPLES = REPO / "examples" / "multinode"
RUN_NUMBERS = itertools.count(1)

CLIENT_ADDR = "192.0.2.10"
LB_FRONT_ADDR = "192.0.2.1"
LB_EDGE_ADDR = "198.51.100.1"
EDGES = {"edge1": ("198.51.100.11", "203.0.113.11"), "edge2": ("198.51.100.12", "203.0.113.12")}
REMOTE_ADDR = "203.0.113.100"
REMOTE_TARGET = f"tcp:{REMOTE_ADDR}:8443"
ROLES = ("client", "lb", "edge1", "edge2", "remote")
HEALTH_TIMEOUT = 30.0		# HAProxy checks every second; a loaded machine is slow
REQUEST_TIMEOUT = 20


def from_example(name, replacements):
	"""The example file's text with each (old, new) replacement made; every
	old text must be there."""
	text = (EXAMPLES / name).read_text()
	for old, new in replacements:
		assert old in text, f"examples/multinode/{name} no longer contains {old!r}: update {__file__}"
		text = text.replace(old, str(new))
	return text


class Lab:
	"""The five namespaces and their links. remove() kills what still runs
	in them and deletes them (their veth pairs and bridges go with them);
	it may be called more than once."""

	def __init__(self):
		self.ip = require_program("ip")
		self.prefix = f"ho-mn{os.getpid()}-"
		self.made = []

	def ns(self, role):
		return self.prefix + role

	def _ip(self, *args):
		result = subprocess.run([self.ip, *args], capture_output=True, text=True, timeout=30)
		if result.returncode != 0:
			raise AssertionError(f"ip {' '.join(args)}: {result.stderr.strip()}")

	def _link(self, role_a, if_a, role_b, if_b):
		"""A veth pair made directly inside two namespaces, both ends up."""
		self._ip("link", "add", "name", if_a, "netns", self.ns(role_a), "type", "veth",
			 "peer", "name", if_b, "netns", self.ns(role_b))
		self._ip("-n", self.ns(role_a), "link", "set", if_a, "up")
		self._ip("-n", self.ns(role_b), "link", "set", if_b, "up")

	def _bridge(self, role, name, address):
		self._ip("-n", self.ns(role), "link", "add", name, "type", "bridge")
		self._ip("-n", self.ns(role), "addr", "add", address, "dev", name)
		self._ip("-n", self.ns(role), "link", "set", name, "up")

	def build(self):
		for role in ROLES:
			self._ip("netns", "add", self.ns(role))
			self.made.append(self.ns(role))
			self._ip("-n", self.ns(role), "link", "set", "lo", "up")
		self._link("client", "eth0", "lb", "front")
		self._ip("-n", self.ns("client"), "addr", "add", f"{CLIENT_ADDR}/24", "dev", "eth0")
		self._ip("-n", self.ns("lb"), "addr", "add", f"{LB_FRONT_ADDR}/24", "dev", "front")
		self._bridge("lb", "edges", f"{LB_EDGE_ADDR}/24")
		self._bridge("remote", "site", f"{REMOTE_ADDR}/24")
		for edge, (lan_addr, site_addr) in EDGES.items():
			self._link(edge, "lan", "lb", f"to-{edge}")
			self._ip("-n", self.ns("lb"), "link", "set", f"to-{edge}", "master", "edges")
			self._ip("-n", self.ns(edge), "addr", "add", f"{lan_addr}/24", "dev", "lan")
			self._link(edge, "site", "remote", f"to-{edge}")
			self._ip("-n", self.ns("remote"), "link", "set", f"to-{edge}", "master", "site")
			self._ip("-n", self.ns(edge), "addr", "add", f"{site_addr}/24", "dev", "site")

	def remove(self):
		for name in reversed(self.made):
			pids = subprocess.run([self.ip, "netns", "pids", name], capture_output=True, text=True,
					      timeout=30).stdout.split()
			for pid in pids:
				try:
					os.kill(int(pid), signal.SIGKILL)
				except ProcessLookupError:
					pass
			subprocess.run([self.ip, "netns", "del", name], capture_output=True, timeout=30)
		self.made = []

	def leftovers(self):
		listed = subprocess.run([self.ip, "netns", "list"], capture_output=True, text=True,
					timeout=30).stdout
		return [line.split()[0] for line in listed.splitlines() if line.startswith(self.prefix)]

	def exec_argv(self, role, argv):
		"""argv run inside the role's namespace; ip netns exec execs it,
		so the process keeps the PID Popen reports."""
		return [self.ip, "netns", "exec", self.ns(role), *map(str, argv)]


class EdgeDaemon(Daemon):
	"""harness.Daemon, started inside an edge's namespace."""

	def __init__(self, workdir, config_text, tag, lab):
		super().__init__(workdir, config_text, tag)
		self.lab = lab
		self.killed = False

	def start(self, timeout=START_TIMEOUT):
		self.runs += 1
		self.stderr_path = self.workdir / f"{self.tag}.{self.runs}.stderr"
		env = dict(os.environ, ASAN_OPTIONS=DAEMON_ASAN_OPTIONS, UBSAN_OPTIONS="print_stacktrace=1")
		with open(self.stderr_path, "wb") as err:
			self.proc = subprocess.Popen(self.lab.exec_argv(self.tag, [HANDOFF, "serve", "-c", self.config_path]),
						     stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env)
		wait_for(lambda: daemon_ready(self.log()) or self.proc.poll() is not None, timeout)
		if self.proc.poll() is not None or not daemon_ready(self.log()):
			self.kill()
			raise AssertionError(f"{self.tag} did not become ready within {timeout}s:\n{self.log()}")
		return self

	def kill9(self):
		"""kill -9, as a crash would; the kernel closes its listener."""
		# The same file, compared by device and inode: in another mount
		# namespace the link's text need not be our path for it.
		exe, ours = os.stat(f"/proc/{self.pid}/exe"), os.stat(HANDOFF)
		assert (exe.st_dev, exe.st_ino) == (ours.st_dev, ours.st_ino)
		os.kill(self.pid, signal.SIGKILL)
		self.proc.wait(30)
		self.killed = True

	def teardown_problems(self):
		if not self.killed:
			return self.stop()
		findings = sanitizer_findings(self.log())
		return [f"sanitizer reports in {self.tag} before it was killed:\n" + "\n".join(findings)] if findings else []


def haproxy_servers(stats_socket):
	"""{server name: (status, check status)} of the backend "edges", from
	HAProxy's stats socket."""
	with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
		sock.settimeout(10)
		sock.connect(str(stats_socket))
		sock.sendall(b"show stat\n")
		data = b""
		for _ in range(1000):
			chunk = sock.recv(65536)
			if not chunk:
				break
			data += chunk
	lines = data.decode(errors="replace").splitlines()
	header = lines[0].lstrip("# ").split(",")
	servers = {}
	for line in lines[1:]:
		row = dict(zip(header, line.split(",")))
		if row.get("pxname") == "edges" and row.get("svname") not in ("FRONTEND", "BACKEND", None):
			servers[row["svname"]] = (row["status"], row["check_status"])
	return servers


class Multinode:
	"""The running topology and a client in its own namespace."""

	def __init__(self, workdir, certs, lab, procs):
		self.dir = workdir
		self.certs = certs
		self.lab = lab
		self.procs = procs
		self.edges = {}
		self.upstreams = []
		self.haproxy = None
		self.stats_socket = workdir / "haproxy.sock"
		self.local_ports = itertools.count(40001)
		self.remote_cert = None

	def start(self):
		self.lab.build()
		self._start_remote()
		for edge in EDGES:
			self._start_edge(edge)
		self._start_haproxy()
		self.wait_servers(lambda s: s == ("UP", "L4OK"), {"edge1", "edge2"})

	def _start_remote(self):
		self.remote_cert, key = make_cert(self.dir, "r.example")
		server = from_example("nginx-remote.conf", [("/etc/ssl/certs/r.example.crt", self.remote_cert),
							     ("/etc/ssl/private/r.example.key", key)])
		self.procs.nginx("remote-nginx", server, netns=_Netns(self.lab.ns("remote")))

	def _start_edge(self, edge):
		# Short: upstream socket paths under it must fit in sun_path.
		runtime_dir = self.dir / f"e{edge[-1]}" / "run"
		runtime_dir.parent.mkdir(mode=0o755)
		config = from_example("handoff-edge.conf", [("/run/handoff", runtime_dir),
							   ("/var/log/handoff/access.log",
							    self.dir / f"{edge}-access.log")])
		daemon = EdgeDaemon(self.dir, config, edge, self.lab)
		self.edges[edge] = daemon
		daemon.start()
		cert, key = self.certs.pair("a.example")
		up = Upstream(self.dir, runtime_dir, ["a.example"], cert, key, edge, user=("www-data", "www-data"))
		self.upstreams.append(up)
		daemon.wait_log(rf"registered upstream {up.pid}-", timeout=10.0)

	def _start_haproxy(self):
		haproxy = shutil.which("haproxy", path=os.environ.get("PATH", "") + ":/usr/sbin")
		assert haproxy, ("haproxy is not installed: install the Debian package haproxy "
				 "(tests/integration/multinode/packages.txt lists what this test needs)")
		config = self.dir / "haproxy.cfg"
		config.write_text(from_example("haproxy.cfg", [("/run/haproxy/admin.sock", self.stats_socket),
							      ("log /dev/log local0", "log stdout format raw local0")]))
		check = subprocess.run([haproxy, "-c", "-f", config], capture_output=True, text=True, timeout=60)
		assert check.returncode == 0, f"haproxy -c: {check.stdout}{check.stderr}"
		# -db: in the foreground, one process, logging to its stdout.
		self.haproxy = self.procs.start(self.lab.exec_argv("lb", [haproxy, "-db", "-f", config]), "haproxy")
		self.haproxy.wait_ready(self.stats_socket.exists, "its stats socket")

	def wait_servers(self, predicate, names, timeout=HEALTH_TIMEOUT):
		"""Wait until predicate((status, check status)) holds for every
		server in names; returns HAProxy's view."""
		def done():
			servers = haproxy_servers(self.stats_socket)
			return servers if all(predicate(servers.get(n)) for n in names) else None

		servers = wait_for(done, timeout, interval=0.25)
		if not servers:
			raise AssertionError(f"HAProxy did not get there within {timeout}s: "
					     f"{haproxy_servers(self.stats_socket)}\n{self.haproxy.output()[-3000:]}")
		return servers

	def get(self, name, cacert):
		"""curl https://NAME/ from the client's namespace through the
		balancer, from a source port of its own; returns (local port,
		the page's key=value fields)."""
		port = next(self.local_ports)
		result = subprocess.run(self.lab.exec_argv("client", [
			require_program("curl"), "-sS", "--max-time", REQUEST_TIMEOUT, "--local-port", port,
			"--resolve", f"{name}:443:{LB_FRONT_ADDR}", "--cacert", cacert, f"https://{name}/"]),
			capture_output=True, text=True, timeout=REQUEST_TIMEOUT + 20)
		assert result.returncode == 0, (f"curl https://{name}/ from {CLIENT_ADDR}:{port} failed "
						f"({result.returncode}): {result.stderr}\n{self.haproxy.output()[-2000:]}")
		fields = dict(re.findall(r"(\w+)=(\S+)", result.stdout))
		return port, fields

	def close(self):
		problems = []
		if self.haproxy is not None:
			self.haproxy.stop()
		for daemon in self.edges.values():
			problems += daemon.teardown_problems()
		for up in self.upstreams:
			up.terminate()
			problems += up.problems()
		self.procs.close()
		return problems


class _Netns:
	"""What relay_helpers' nginx starter needs of a namespace: its name."""

	def __init__(self, name):
		self.name = name


@pytest.fixture
def multinode(workroot, certs):
	workdir = workroot / f"mn{next(RUN_NUMBERS)}"
	workdir.mkdir(mode=0o755)
	os.chmod(workdir, 0o755)	# upstreams run as www-data
	lab = Lab()
	setup = Multinode(workdir, certs, lab, Processes(workdir))
	problems = []
	try:
		setup.start()
		yield setup
	finally:
		try:
			problems = setup.close()
		finally:
			lab.remove()
	left = lab.leftovers()
	assert not left, f"namespaces left behind: {left}"
	if problems:
		pytest.fail("teardown found problems:\n" + "\n\n".join(problems), pytrace=False)


def test_balancer_reaches_both_edges_with_the_client_address(multinode):
	bundle = multinode.certs.bundle
	served = {}
	for _ in range(6):
		port, page = multinode.get("a.example", bundle)
		served.setdefault(page["label"], []).append(port)
		# The handoff header names the client in its own namespace; the
		# socket itself is connected to the balancer.
		assert page["peer"] == f"{CLIENT_ADDR}:{port}", page
		assert page["client"].startswith(f"{LB_EDGE_ADDR}:"), page
		assert page["name"] == "a.example", page
	assert set(served) == {"edge1", "edge2"}, f"round robin reached only {served}"
	for edge, ports in served.items():
		daemon = multinode.edges[edge]
		records = daemon.wait_access(lambda r: r.get("outcome") == "handoff", count=len(ports))
		assert sorted(r["client"] for r in records) == sorted(f"{CLIENT_ADDR}:{p}" for p in ports), records
		assert all(r["via"].startswith(f"{LB_EDGE_ADDR}:") for r in records), records
		assert all(r["listener"] == "0.0.0.0:443" for r in records), records


def test_killed_edge_is_taken_out_and_the_other_serves(multinode):
	bundle = multinode.certs.bundle
	labels = {multinode.get("a.example", bundle)[1]["label"] for _ in range(2)}
	assert labels == {"edge1", "edge2"}

	multinode.edges["edge1"].kill9()
	servers = multinode.wait_servers(lambda s: s is not None and s[0] == "DOWN", {"edge1"})
	assert servers["edge2"][0] == "UP", servers

	for _ in range(6):
		port, page = multinode.get("a.example", bundle)
		assert page["label"] == "edge2", page
		assert page["peer"] == f"{CLIENT_ADDR}:{port}", page
	# One before the kill, six after.
	handed = multinode.edges["edge2"].wait_access(lambda r: r.get("outcome") == "handoff", count=7)
	assert len(handed) == 7, handed


def test_edges_relay_to_the_remote_host_with_the_client_address(multinode):
	ports = []
	for _ in range(4):
		port, page = multinode.get("r.example", multinode.remote_cert)
		ports.append(port)
		# nginx believes the edge's PROXY v2 header, which carries what
		# the balancer's header said: the client, with its own port.
		assert page["remote_addr"] == CLIENT_ADDR, page
		assert page["proxy"] == f"{CLIENT_ADDR}:{port}", page

	# A relay is logged when it ends, just after curl has its answer.
	def relayed():
		return {edge: [r for r in daemon.access_records() if r.get("outcome") == "relayed"]
			for edge, daemon in multinode.edges.items()}

	expected = sorted(f"{CLIENT_ADDR}:{p}" for p in ports)
	wait_for(lambda: sum(len(records) for records in relayed().values()) >= len(ports), 10.0)
	by_edge = relayed()
	assert sorted(r["client"] for records in by_edge.values() for r in records) == expected, by_edge
	assert all(by_edge[edge] for edge in EDGES), f"round robin relayed through one edge only: {by_edge}"
	for records in by_edge.values():
		assert all(r["upstream"] == REMOTE_TARGET and r["name"] == "r.example" for r in records), records
		assert all(r["via"].startswith(f"{LB_EDGE_ADDR}:") for r in records), records
