# systemd_helpers.py - a daemon started under a wrapper (systemd-socket-activate, setpriv) or with extra environment, a fake NOTIFY_SOCKET, and stopping an upgrade's new daemon.
import os
import signal
import socket
import subprocess
import time

from harness import DAEMON_ASAN_OPTIONS, HANDOFF, Daemon, read_text, wait_for


class WrappedDaemon(Daemon):
	"""A Daemon whose command line is prefixed by wrapper and whose
	environment gets extra_env; start(wait_ready=False) returns at once
	(for a daemon expected to refuse its configuration)."""

	def __init__(self, workdir, config_text, tag="handoff", wrapper=(), extra_env=None):
		super().__init__(workdir, config_text, tag)
		self.wrapper = list(wrapper)
		self.extra_env = dict(extra_env or {})

	def start(self, timeout=15.0, wait_ready=True):
		self.runs += 1
		self.stderr_path = self.workdir / f"{self.tag}.{self.runs}.stderr"
		env = dict(os.environ, ASAN_OPTIONS=DAEMON_ASAN_OPTIONS, UBSAN_OPTIONS="print_stacktrace=1")
		env.update(self.extra_env)
		argv = self.wrapper + [str(HANDOFF), "serve", "-c", str(self.config_path)]
		with open(self.stderr_path, "wb") as err:
			self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env)
		if wait_ready:
			ready = wait_for(lambda: "ready:" in self.log() or self.proc.poll() is not None, timeout)
			if not ready or self.proc.poll() is not None:
				self.kill()
				raise AssertionError(f"daemon did not become ready within {timeout}s:\n{self.log()}")
		return self

	def wait_exit(self, timeout=15.0):
		"""The exit status of a daemon expected to stop by itself; it is then
		not stopped (nor its status checked) again at teardown."""
		status = self.proc.wait(timeout)
		self.proc = None
		return status


def wrapped_daemon(hx, config_text, tag="handoff", wrapper=(), extra_env=None, wait_ready=True):
	d = WrappedDaemon(hx.dir, config_text, tag, wrapper, extra_env)
	hx.daemons.append(d)
	return d.start(wait_ready=wait_ready)


class NotifyListener:
	"""The service manager's side of sd_notify: a datagram socket bound to a
	path in directory, or to an abstract name; env() is what the daemon
	gets as NOTIFY_SOCKET."""

	def __init__(self, directory=None, abstract_name=None):
		self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
		if abstract_name is not None:
			self.sock.bind("\0" + abstract_name)
			self.address = "@" + abstract_name
		else:
			path = os.path.join(str(directory), "notify.sock")
			self.sock.bind(path)
			self.address = path
		self.messages = []

	def env(self):
		return {"NOTIFY_SOCKET": self.address}

	def receive(self, timeout):
		"""The next message as a dict of its KEY=VALUE lines, or None."""
		self.sock.settimeout(timeout)
		try:
			data = self.sock.recv(4096)
		except TimeoutError:
			return None
		fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
		self.messages.append(fields)
		return fields

	def wait_for_key(self, key, timeout):
		"""Messages until one carries key (returned), or None after timeout."""
		deadline = time.monotonic() + timeout
		while time.monotonic() < deadline:
			message = self.receive(max(0.05, deadline - time.monotonic()))
			if message is not None and key in message:
				return message
		return None

	def close(self):
		self.sock.close()


def listening_inode(port):
	"""The inode of the socket listening on 127.0.0.1:port, from /proc/net/tcp."""
	want = f"0100007F:{port:04X}"
	for line in read_text("/proc/net/tcp").splitlines()[1:]:
		fields = line.split()
		if fields[1] == want and fields[3] == "0A":	# 0A: TCP_LISTEN
			return int(fields[9])
	return None


def socket_inodes(pid):
	"""fd number -> socket inode for every socket the process holds."""
	found = {}
	for fd in os.listdir(f"/proc/{pid}/fd"):
		try:
			target = os.readlink(f"/proc/{pid}/fd/{fd}")
		except OSError:
			continue
		if target.startswith("socket:["):
			found[int(fd)] = int(target[len("socket:["):-1])
	return found


def stop_pid(pid, timeout=20):
	"""SIGTERM a daemon that is not our child (an upgrade's new daemon) and wait until it is gone."""
	try:
		os.kill(pid, signal.SIGTERM)
	except ProcessLookupError:
		return

	def gone():
		state = read_text(f"/proc/{pid}/stat")
		return state == "" or state.split(") ")[1].startswith("Z")

	if not wait_for(gone, timeout):
		os.kill(pid, signal.SIGKILL)
		raise AssertionError(f"daemon pid {pid} did not stop within {timeout}s of SIGTERM")
