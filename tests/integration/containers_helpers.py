# containers_helpers.py - upstreams in containers without a network for test_containers.py: image roots built from the host's files, podman and a by-hand namespace isolation.
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from harness import BUILD, REPO, START_TIMEOUT, STOP_TIMEOUT, UPSTREAM, read_text, wait_for

MUSL = REPO / "build" / "musl"
KIT = REPO / "build" / "container-kit"
HTTP_ECHO_MUSL = MUSL / "http-echo"
HTTP_ECHO_GLIBC = BUILD / "http-echo"
MUSL_LOADER = Path("/lib/ld-musl-x86_64.so.1")
# What podman needs on these machines (see docs/containers.md): runc, since
# crun stops on hybrid cgroups, and limits within the machine's hard ones.
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs"]
PODMAN_RUN_LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
IMAGE = "localhost/handoff-test-upstreams:latest"
# The uid that the root of a user-namespaced container is on the host.
MAPPED_UID = 200000


def shared_libraries(binary):
	"""The files the dynamic linker loads for a glibc program, per ldd."""
	out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=30)
	paths = []
	for line in out.stdout.splitlines():
		words = line.split()
		if "=>" in words and len(words) > words.index("=>") + 1 and words[words.index("=>") + 1].startswith("/"):
			paths.append(words[words.index("=>") + 1])
		elif words and words[0].startswith("/"):
			paths.append(words[0])	# the dynamic linker itself
	return paths


def copy_into(root, path):
	"""Copy a host file into root at the same path, following links (the
	image keeps the name the programs ask for)."""
	target = root / str(path).lstrip("/")
	target.parent.mkdir(parents=True, exist_ok=True)
	shutil.copy2(os.path.realpath(path), target)


def build_root(root, mount_points):
	"""An image's root: the container kit (stand-alone handoff run and both
	preload builds), the example HTTPS upstream and the glibc test server
	with the libraries ldd lists, the musl test server with musl's loader,
	and empty directories where the runtime directory and certificates go."""
	shutil.copytree(KIT, root, symlinks=True, dirs_exist_ok=True)
	for program in (UPSTREAM, HTTP_ECHO_GLIBC):
		copy_into(root, program)
		for library in shared_libraries(program):
			copy_into(root, library)
	copy_into(root, HTTP_ECHO_MUSL)
	copy_into(root, MUSL_LOADER)
	for directory in ("proc", "tmp", "dev", "etc", *(str(p).lstrip("/") for p in mount_points)):
		(root / directory).mkdir(parents=True, exist_ok=True)
	os.chmod(root / "tmp", 0o1777)
	return root


def interfaces_of(pid):
	"""The network interfaces process pid sees (its namespace's /proc/net/dev)."""
	lines = read_text(f"/proc/{pid}/net/dev").splitlines()[2:]
	return sorted(line.split(":")[0].strip() for line in lines)


def children_of(pid):
	text = read_text(f"/proc/{pid}/task/{pid}/children")
	return [int(word) for word in text.split()]


class Podman:
	"""Containers from one locally imported image (never pulled), with
	--network none and the runtime directory bind-mounted at its own path."""

	def __init__(self, workdir, root):
		self.workdir = Path(workdir)
		self.names = []
		archive = self.workdir / "image.tar"
		subprocess.run(["tar", "-C", str(root), "-cf", str(archive), "."], check=True, timeout=120)
		result = subprocess.run(PODMAN + ["import", str(archive), IMAGE], capture_output=True,
					text=True, timeout=120)
		archive.unlink()
		if result.returncode != 0:
			raise RuntimeError(f"podman import: {result.stderr.strip()}")

	@staticmethod
	def probe(workdir):
		"""None if podman can run a network-less container here, else why not."""
		if shutil.which("podman") is None or shutil.which("runc") is None:
			return "podman or runc is not installed (Debian packages podman, runc)"
		root = Path(workdir) / "probe-root"
		shutil.copytree(KIT, root, symlinks=True, dirs_exist_ok=True)
		archive = Path(workdir) / "probe.tar"
		subprocess.run(["tar", "-C", str(root), "-cf", str(archive), "."], check=True, timeout=60)
		image = "localhost/handoff-test-probe:latest"
		try:
			steps = [PODMAN + ["import", str(archive), image],
				 PODMAN + ["run", "--rm", "--network", "none", *PODMAN_RUN_LIMITS, image,
					   "/usr/local/bin/handoff", "run", "--help"]]
			for argv in steps:
				result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
				if result.returncode != 0:
					return (f"`{' '.join(argv)}` failed with status {result.returncode}: "
						f"{result.stderr.strip()[-500:]}")
			return None
		except subprocess.TimeoutExpired as e:
			return f"`{' '.join(e.cmd)}` did not finish within {e.timeout}s"
		finally:
			subprocess.run(PODMAN + ["rmi", "-f", image], capture_output=True, timeout=60)
			archive.unlink(missing_ok=True)

	def start(self, name, argv, mounts, read_only=(), user_namespace=False, env=None):
		args = PODMAN + ["run", "-d", "--name", name, "--network", "none", *PODMAN_RUN_LIMITS]
		for key, value in (env or {}).items():
			args += ["-e", f"{key}={value}"]
		for path in mounts:
			args += ["-v", f"{path}:{path}"]
		for path in read_only:
			args += ["-v", f"{path}:{path}:ro"]
		if user_namespace:
			args += ["--uidmap", f"0:{MAPPED_UID}:65536", "--gidmap", f"0:{MAPPED_UID}:65536"]
		result = subprocess.run(args + [IMAGE] + list(argv), capture_output=True, text=True,
					timeout=120)
		assert result.returncode == 0, f"podman run: {result.stderr}"
		self.names.append(name)
		return name

	def pid(self, name):
		out = subprocess.run(PODMAN + ["inspect", "-f", "{{.State.Pid}}", name], capture_output=True,
				     text=True, timeout=60)
		return int(out.stdout.strip() or 0)

	def logs(self, name):
		out = subprocess.run(PODMAN + ["logs", name], capture_output=True, text=True, timeout=60)
		return out.stdout + out.stderr

	def stop(self, name):
		subprocess.run(PODMAN + ["stop", "-t", str(int(STOP_TIMEOUT)), name], capture_output=True,
			       check=True, timeout=120)

	def restart(self, name):
		"""Start the stopped container again (same container, same command)."""
		subprocess.run(PODMAN + ["start", name], capture_output=True, check=True, timeout=120)

	def kill(self, name):
		subprocess.run(PODMAN + ["kill", "-s", "KILL", name], capture_output=True, timeout=120)

	def close_containers(self):
		for name in self.names:
			subprocess.run(PODMAN + ["rm", "-f", "-t", "0", name], capture_output=True, timeout=120)
		self.names = []

	def close(self):
		self.close_containers()
		subprocess.run(PODMAN + ["rmi", "-f", IMAGE], capture_output=True, timeout=120)


class Unshare:
	"""The same isolation made by hand: new network (loopback only), mount
	and PID namespaces, the image root as the root directory, and the
	runtime directory bind-mounted into it; with user_namespace, made by
	MAPPED_UID in a user namespace whose root it is."""

	def __init__(self, workdir, root):
		self.workdir = Path(workdir)
		self.root = Path(root)
		self.started = {}	# name -> (argv, mounts, read_only, user_namespace, env)
		self.procs = {}

	def start(self, name, argv, mounts, read_only=(), user_namespace=False, env=None):
		for path in list(mounts) + list(read_only):
			(self.root / str(path).lstrip("/")).mkdir(parents=True, exist_ok=True)
		self.started[name] = (list(argv), list(mounts), list(read_only), user_namespace,
				      dict(env or {}))
		return self._launch(name)

	def _launch(self, name):
		argv, mounts, read_only, user_namespace, env = self.started[name]
		root = str(self.root)
		setup = ["ip link set lo up"]
		for path in mounts:
			setup.append(f"mount --bind {path} {root}{path}")
		for path in read_only:
			setup.append(f"mount --bind -o ro {path} {root}{path}")
		setup.append(f"mount -t proc proc {root}/proc")
		setup.append("exec chroot " + root + " " + " ".join(f"'{a}'" for a in argv))
		script = "; ".join(setup[:-1]) + " && " + setup[-1]
		log = self.workdir / f"{name}.log"
		namespaces = ["--net", "--mount", "--pid", "--fork", "--kill-child=SIGTERM",
			      "--propagation", "private"]
		prefix = ["unshare"]
		if user_namespace:
			# As rootless podman does: an unprivileged user (MAPPED_UID)
			# makes the namespaces and is root inside them, so that
			# what its processes create belongs to MAPPED_UID.
			prefix = ["setpriv", f"--reuid={MAPPED_UID}", f"--regid={MAPPED_UID}",
				  "--clear-groups", "unshare", "--user", "--map-root-user"]
		with open(log, "ab") as out:
			proc = subprocess.Popen([*prefix, *namespaces, "--", "sh", "-c", script],
						stdin=subprocess.DEVNULL, stdout=out, stderr=out,
						env=dict(os.environ, **env))
		self.procs[name] = proc
		return name

	def pid(self, name):
		"""The first process inside (PID 1 of its namespace)."""
		proc = self.procs[name]
		found = wait_for(lambda: children_of(proc.pid) or proc.poll() is not None, START_TIMEOUT)
		children = children_of(proc.pid) if found else []
		return children[0] if children else 0

	def logs(self, name):
		return read_text(self.workdir / f"{name}.log")

	def stop(self, name):
		"""SIGTERM to the first process inside, as podman stop sends it."""
		proc = self.procs[name]
		if proc.poll() is None:
			inner = self.pid(name)
			if inner:
				os.kill(inner, signal.SIGTERM)
			try:
				proc.wait(STOP_TIMEOUT)
			except subprocess.TimeoutExpired:
				proc.kill()
				proc.wait(STOP_TIMEOUT)

	def restart(self, name):
		self._launch(name)

	def kill(self, name):
		"""SIGKILL to the namespace's first process: the kernel kills
		every other process of the namespace with it."""
		inner = self.pid(name)
		if inner:
			os.kill(inner, signal.SIGKILL)
		self.procs[name].wait(STOP_TIMEOUT)

	def close(self):
		for name in list(self.procs):
			self.stop(name)


def wait_registered(daemon, names_pattern, count=1, timeout=START_TIMEOUT):
	"""Wait for count registrations whose names match; returns their ids."""
	import re
	regex = re.compile(rf"registered upstream (\S+) names={names_pattern} ")
	wait_for(lambda: len(regex.findall(daemon.log())) >= count, timeout)
	ids = regex.findall(daemon.log())
	assert len(ids) >= count, f"expected {count} registrations of {names_pattern}:\n{daemon.tail()}"
	return ids


def elapsed_since(start):
	return time.monotonic() - start
