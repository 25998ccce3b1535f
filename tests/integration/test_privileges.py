# test_privileges.py - `user`/`group`: a root-started daemon binds, makes its runtime directory, then serves as that user with only CAP_NET_BIND_SERVICE.
import grp
import os
import pwd
import re
import signal

from admin_helpers import admin_state
from harness import free_port, https_get, read_text, wait_for
from systemd_helpers import wrapped_daemon

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
