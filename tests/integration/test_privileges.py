# test_privileges.py - `user`/`group`: a root-started daemon binds, makes its runtime directory, then serves as that user with only CAP_NET_BIND_SERVICE, and upgrades as that user.
import grp
import os
import pwd
import random
import re
import signal
import socket
import subprocess

from admin_helpers import admin_state
from harness import HANDOFF, free_port, http_get, https_get, read_text, wait_for
from systemd_helpers import stop_pid, wrapped_daemon

CAP_NET_BIND_SERVICE = 1 << 10
STEP = 15.0


def proc_status(pid):
	fields = {}
	for line in read_text(f"/proc/{pid}/status").splitlines():
		key, _, value = line.partition(":")
		fields[key] = value.split()
	return fields


def test_daemon_drops_to_its_user_and_keeps_registering_and_refusing(hx, certs):
	daemon_user = pwd.getpwnam("daemon")
	port, admin_port = free_port(), free_port()
	config = hx.config([f"127.0.0.1:{port} tls"], grants=["a.example to nobody"], user="daemon",
			   admin=f"127.0.0.1:{admin_port}")
	d = hx.daemon(config)
	assert re.search(r"running as daemon \(uid 1, gid 1\), keeping only CAP_NET_BIND_SERVICE", d.log()), d.log()

	# Every thread, the admin endpoint's included.
	threads = os.listdir(f"/proc/{d.pid}/task")
	assert len(threads) > 1, threads
	for tid in threads:
		status = proc_status(f"{d.pid}/task/{tid}")
		assert status["Uid"] == [str(daemon_user.pw_uid)] * 4, (tid, status["Uid"])
		assert status["Gid"] == [str(daemon_user.pw_gid)] * 4, (tid, status["Gid"])
		assert status["Groups"] == [], (tid, status["Groups"])
		for cap_set in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
			assert int(status[cap_set][0], 16) == CAP_NET_BIND_SERVICE, (tid, cap_set, status[cap_set])

	# The runtime directory is the daemon user's: libhandoff takes its
	# messages, and the daemon writes status files there.
	upstreams = hx.runtime_dir / "upstreams"
	for path in (hx.runtime_dir, upstreams):
		assert os.stat(path).st_uid == daemon_user.pw_uid, path

	# A granted user registers and is served; an ungranted one is refused.
	granted = hx.upstream(["a.example"], "granted", user=("nobody", "nogroup"), daemon=d)
	response = https_get(certs, port, "a.example")
	assert response.status == 200 and response.fields["label"] == "granted"
	assert any(u["uid"] == pwd.getpwnam("nobody").pw_uid for u in admin_state(f"127.0.0.1:{admin_port}")["upstreams"])
	refused = hx.upstream(["b.example"], "ungranted", daemon=d, expect="refused")
	refused_status = upstreams / f"{next(p.name for p in upstreams.iterdir() if p.name.startswith(f'{refused.pid}-') and p.is_dir())}.status"
	assert read_text(refused_status).startswith("refused"), read_text(refused_status)

	# A dead registration is dropped; the daemon, no longer root, cannot
	# delete inside the upstream's own directory and moves it aside.
	ours = next(p.name for p in upstreams.iterdir() if p.name.startswith(f"{granted.pid}-") and p.is_dir())
	assert (upstreams / f"{ours}.status").exists()
	granted.signal(signal.SIGKILL)
	granted.proc.wait(STEP)
	d.wait_log(rf"dropped upstream {granted.pid}-", timeout=STEP)
	assert wait_for(lambda: (upstreams / f".dead.{ours}").is_dir() and not (upstreams / ours).exists()
			and not (upstreams / f"{ours}.status").exists(), STEP), sorted(os.listdir(upstreams))
	assert "cannot move" not in d.log()


def test_user_is_refused_when_not_started_as_root(hx):
	config = hx.config([f"127.0.0.1:{free_port()} http"], user="daemon")
	d = wrapped_daemon(hx, config, wrapper=["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"],
			   wait_ready=False)
	assert d.wait_exit(STEP) == 1
	nobody = pwd.getpwnam("nobody").pw_uid
	assert (f"{d.config_path}:2: user: the daemon runs as uid {nobody}, not root, so it cannot become 'daemon' "
		"(start it as root, start it as that user and group, or remove the 'user' line)") in d.log(), d.log()


def test_user_already_in_effect_is_accepted(hx, certs):
	"""Started as the user and group named (systemd's User=, or a successor
	executed by an unprivileged daemon): nothing to drop, it serves."""
	daemon_user = pwd.getpwnam("daemon")
	hx.runtime_dir.mkdir(mode=0o755)
	os.chown(hx.runtime_dir, daemon_user.pw_uid, daemon_user.pw_gid)
	port = free_port()
	config = hx.config([f"127.0.0.1:{port} tls"], grants=["a.example to nobody"], user="daemon",
			   group=grp.getgrgid(daemon_user.pw_gid).gr_name)
	d = wrapped_daemon(hx, config, wrapper=["setpriv", "--reuid=daemon", "--regid=daemon", "--clear-groups"])
	assert "running as daemon (uid 1, gid 1) already" in d.log(), d.log()
	assert proc_status(d.pid)["Uid"] == [str(daemon_user.pw_uid)] * 4
	hx.upstream(["a.example"], "granted", user=("nobody", "nogroup"), daemon=d)
	assert https_get(certs, port, "a.example").fields["label"] == "granted"


def free_privileged_port():
	"""A port below 1024 that nothing listens on at 127.0.0.1 right now."""
	for port in random.sample(range(600, 1000), 400):
		with socket.socket() as s:
			try:
				s.bind(("127.0.0.1", port))
				return port
			except OSError:
				continue
	raise AssertionError("no free port below 1024 on 127.0.0.1")


def as_daemon_user(argv):
	return subprocess.run(["setpriv", "--reuid=daemon", "--regid=daemon", "--clear-groups"] + argv,
			      capture_output=True, text=True, timeout=200)


def test_upgrade_of_a_daemon_that_dropped_root(hx, certs):
	"""The old daemon runs as `user daemon` with only CAP_NET_BIND_SERVICE:
	`handoff upgrade`, asked by that user, starts the new daemon as that
	user; it adopts the sockets without privilege, accepts the `user` line
	as already in effect, binds a new port below 1024 with the inherited
	capability, writes the pid file and answers the control socket."""
	daemon_user = pwd.getpwnam("daemon")
	port, low = free_port(), free_privileged_port()
	settings = dict(grants=["a.example to nobody"], user="daemon")
	d = hx.daemon(hx.config([f"127.0.0.1:{port} tls"], **settings))
	granted = hx.upstream(["a.example"], "granted", user=("nobody", "nogroup"), daemon=d)
	control = hx.runtime_dir / "control.sock"
	assert os.stat(control).st_uid == daemon_user.pw_uid, "the control socket is not the user's"
	d.config_path.write_text(hx.config([f"127.0.0.1:{port} tls", f"127.0.0.1:{low} http"], **settings))
	new_pid = None
	try:
		r = as_daemon_user([str(HANDOFF), "upgrade", "-c", str(d.config_path)])
		assert r.returncode == 0 and "took over the listening sockets" in r.stdout, (r, d.log())
		new_pid = int(r.stdout.split("new daemon pid ")[1].split()[0])
		assert d.proc.wait(STEP * 2) == 0, d.log()
		status = proc_status(new_pid)
		assert status["Uid"] == [str(daemon_user.pw_uid)] * 4 and status["Gid"] == [str(daemon_user.pw_gid)] * 4
		assert int(status["CapEff"][0], 16) == CAP_NET_BIND_SERVICE, status["CapEff"]
		assert f"handoff[{new_pid}]: running as daemon (uid 1, gid 1) already" in d.log(), d.log()
		assert read_text(hx.runtime_dir / "handoff.pid").strip() == str(new_pid)
		assert https_get(certs, port, "a.example").fields["label"] == "granted"
		assert http_get(low, "nobody-serves.example").status == 503
		assert granted.proc.poll() is None
		r = as_daemon_user([str(HANDOFF), "reload", "-c", str(d.config_path)])
		assert r.returncode == 0 and "reloaded" in r.stdout, (r, d.log())
	finally:
		if new_pid is not None:
			stop_pid(new_pid)
