# test_registration.py - the registration directory under attack and churn: dead upstreams, swapped files, floods, squatters.
import os
import signal
import socket
import subprocess
from pathlib import Path

from harness import connect, free_port, http_get, read_text, request_bytes, wait_for

PROBE_LIMIT = 5.0	# the daemon probes every 0.5 s; generous for a loaded machine


def register(upstreams, reg_id, names, directory=None):
	"""A registration made by hand (as the test's user): returns the bound
	receiving socket. directory=None: the flat layout ID.sock + ID.names."""
	where = Path(upstreams) if directory is None else Path(directory)
	sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
	sock.bind(str(where / f"{reg_id}.sock"))
	os.chmod(where / f"{reg_id}.sock", 0o666)
	tmp = where / f"{reg_id}.names.tmp"
	tmp.write_text("".join(f"{n}\n" for n in names))
	os.rename(tmp, where / f"{reg_id}.names")
	return sock


def received_fd(sock, timeout=5.0):
	"""The descriptor of the next handoff on sock, or None."""
	sock.settimeout(timeout)
	try:
		_, fds, _, _ = socket.recv_fds(sock, 2048, 4)
	except TimeoutError:
		return None
	for fd in fds[1:]:
		os.close(fd)
	return fds[0] if fds else None


def nothing_received(sock):
	sock.setblocking(False)
	try:
		sock.recv(2048)
		return False
	except BlockingIOError:
		return True


def test_killed_upstream_is_dropped_without_any_request(hx, certs):
	port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{port} tls"]))
	up = hx.upstream(["a.example"], "doomed", daemon=d)
	upstreams = hx.runtime_dir / "upstreams"
	ours = [p for p in upstreams.iterdir() if p.name.startswith(f"{up.pid}-")]
	assert ours, list(upstreams.iterdir())

	up.signal(signal.SIGKILL)
	up.proc.wait(10)
	# No client connects: the daemon must notice the end by itself.
	d.wait_log(rf"dropped upstream {up.pid}-\S+ \(no process holds its socket any more\)",
		   timeout=PROBE_LIMIT)
	assert wait_for(lambda: not any(p.exists() for p in ours), PROBE_LIMIT), list(upstreams.iterdir())
	assert not any(p.name.startswith(f"{up.pid}-") for p in upstreams.iterdir())


def test_socket_renamed_over_a_registration_is_examined_afresh(hx, certs):
	port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{port} http"]))
	upstreams = hx.runtime_dir / "upstreams"
	first = register(upstreams, "swap-1", ["a.example"])
	d.wait_log(r"registered upstream swap-1 names=a\.example")

	second = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
	second.bind(str(upstreams / "swap-1.sock.new"))
	os.rename(upstreams / "swap-1.sock.new", upstreams / "swap-1.sock")
	d.wait_log(r"dropped upstream swap-1 \(its files were replaced\)")
	d.wait_log(r"registered upstream swap-1 names=a\.example", count=2)

	with connect(port) as client:
		client.sendall(request_bytes("a.example"))
		fd = received_fd(second)
		assert fd is not None, d.tail()
		os.close(fd)
	assert nothing_received(first)
	first.close()
	second.close()


def test_symlink_swapped_over_a_registered_socket_is_never_followed(hx, certs):
	port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{port} http"]))
	upstreams = hx.runtime_dir / "upstreams"
	# Some other datagram socket on the system, which the daemon (root)
	# must never be pointed at.
	victim = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
	victim.bind(str(hx.dir / "victim.sock"))
	mine = register(upstreams, "link-1", ["a.example"])
	d.wait_log(r"registered upstream link-1 names=a\.example")

	os.symlink(hx.dir / "victim.sock", upstreams / "link-1.link")
	os.rename(upstreams / "link-1.link", upstreams / "link-1.sock")
	d.wait_log(r"dropped upstream link-1 \(its files were replaced\)")
	d.wait_log(r"refused upstream link-1: link-1\.sock is not a socket")
	# The status file is written after the log line.
	assert wait_for(lambda: read_text(upstreams / "link-1.status").startswith("refused: "), 5), \
		read_text(upstreams / "link-1.status")

	assert http_get(port, "a.example").status == 503
	assert nothing_received(victim)
	assert nothing_received(mine)
	victim.close()
	mine.close()


def test_registrations_are_capped_per_uid(hx, certs):
	port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{port} http"],
				grants=["* to self", "b.example to nobody"]))
	upstreams = hx.runtime_dir / "upstreams"
	socks = [register(upstreams, f"many-{i:03d}", ["a.example"]) for i in range(257)]
	d.wait_log(r"registered upstream many-", count=256, timeout=20)
	d.wait_log(r"refused upstream many-\d+: uid 0 has 256 upstreams registered already", timeout=20)
	assert len([s for s in upstreams.glob("many-*.status")
		    if read_text(s).startswith("registered")]) == 256
	# Another user still has room.
	other = hx.upstream(["b.example"], "other-user", user=("nobody", "nogroup"), daemon=d)
	d.wait_log(rf"registered upstream {other.pid}-\S+ names=b\.example uid=65534")
	for s in socks:
		s.close()


def test_refusals_are_logged_at_a_bounded_rate(hx, certs):
	port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{port} http"], grants=["a.example to root"]))
	upstreams = hx.runtime_dir / "upstreams"
	socks = [register(upstreams, f"greedy-{i:02d}", ["c.example"]) for i in range(40)]
	assert wait_for(lambda: len(list(upstreams.glob("greedy-*.status"))) == 40, 20), d.tail()
	assert all(read_text(s).startswith("refused: uid 0 may not claim c.example")
		   for s in upstreams.glob("greedy-*.status"))
	lines = [l for l in d.log().splitlines() if "refused upstream greedy-" in l]
	assert 1 <= len(lines) <= 20, len(lines)
	for s in socks:
		s.close()


def test_registration_lives_in_a_directory_no_other_user_can_write(hx, certs):
	port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{port} http"], grants=["* to self", "b.example to nobody"]))
	upstreams = hx.runtime_dir / "upstreams"
	up = hx.upstream(["b.example"], "private", user=("nobody", "nogroup"), daemon=d)
	entries = [p for p in upstreams.iterdir() if p.name.startswith(f"{up.pid}-")]
	dirs = [p for p in entries if p.is_dir() and not p.is_symlink()]
	assert len(dirs) == 1, entries
	reg = dirs[0]
	st = reg.lstat()
	assert st.st_uid == 65534 and (st.st_mode & 0o022) == 0, oct(st.st_mode)
	assert (reg / f"{reg.name}.sock").exists() and (reg / f"{reg.name}.names").exists()
	assert not (upstreams / f"{reg.name}.sock").exists()

	# Another user cannot put a file where the registration lives, and
	# files it puts beside the directory do not touch the registration.
	intruder = subprocess.run(["setpriv", "--reuid=daemon", "--regid=daemon", "--clear-groups",
				   "touch", str(reg / f"{reg.name}.names.tmp")], capture_output=True)
	assert intruder.returncode != 0
	subprocess.run(["setpriv", "--reuid=daemon", "--regid=daemon", "--clear-groups",
			"sh", "-c", f"touch {upstreams}/{reg.name}.names && rm {upstreams}/{reg.name}.names"],
		       check=True, timeout=30)
	assert http_get(port, "b.example").fields["pid"] == str(up.pid)
	assert "dropped upstream" not in d.log()

	# A directory others may write to is refused.
	shared = upstreams / "shared-1"
	shared.mkdir()
	os.chmod(shared, 0o777)
	s = register(upstreams, "shared-1", ["a.example"], directory=shared)
	os.rename(shared, upstreams / "shared-2")
	os.rename(upstreams / "shared-2", shared)
	d.wait_log(r"refused upstream shared-1: directory \S+ is writable by others than its owner")
	s.close()
