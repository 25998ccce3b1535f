# test_systemd.py - the shipped units pass systemd-analyze verify; socket activation (LISTEN_FDS) and readiness notification (NOTIFY_SOCKET).
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from harness import HANDOFF, REPO, free_port, http_get, https_get, read_text, wait_for
from systemd_helpers import NotifyListener, listening_inode, socket_inodes, stop_pid, wrapped_daemon

UNITS = ("handoff.service", "handoff.socket")
STEP = 15.0
JUNK_ENTRIES = 4000	# the daemon reads 256 directory entries per loop turn	# generous: ASan daemons start slowly on a shared machine


def installed_units(directory, bindir):
	"""The units as `make install` writes them, with the binary in bindir."""
	for unit in UNITS:
		text = (REPO / "dist" / "systemd" / unit).read_text()
		text = (text.replace("@BINDIR@", str(bindir)).replace("@SYSCONFDIR@", str(directory))
			.replace("@DOCDIR@", str(REPO / "docs")))
		(Path(directory) / unit).write_text(text)
	return [Path(directory) / unit for unit in UNITS]


def unit_settings(path):
	"""KEY -> list of values of a unit file (comments and sections dropped)."""
	found = {}
	for line in Path(path).read_text().splitlines():
		line = line.strip()
		if line and not line.startswith(("#", ";", "[")) and "=" in line:
			key, value = line.split("=", 1)
			found.setdefault(key, []).append(value)
	return found


def test_units_pass_systemd_analyze_verify(hx):
	paths = installed_units(hx.dir, HANDOFF.parent)
	result = subprocess.run(["systemd-analyze", "verify"] + [str(p) for p in paths],
				capture_output=True, text=True, timeout=120, cwd=hx.dir)
	# verify reports unknown keys and bad values as warnings with status 0:
	# clean means no output at all.
	assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr
	service = unit_settings(paths[0])
	assert service["Type"] == ["notify"]
	assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
	assert service["RuntimeDirectory"] == ["handoff"]
	assert service["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
	# The configuration the unit runs must be one the daemon accepts.
	sample = REPO / "dist" / "handoff.conf"
	check = subprocess.run([str(HANDOFF), "check", "-c", str(sample)], capture_output=True, text=True,
			       timeout=60)
	assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_socket_activation_serves_through_the_passed_socket(hx, certs, workers):
	"""With the event loop accepting and with two accepting threads, which
	accept from the passed socket too."""
	tls_port, http_port = free_port(), free_port()
	config = hx.config([f"127.0.0.1:{tls_port} tls", f"127.0.0.1:{http_port} http"], workers=workers)
	# A daemon run before makes the runtime directory the upstream registers in.
	first = hx.daemon(config, tag="first")
	up = hx.upstream(["a.example"], "activated", daemon=first)
	assert first.stop() == []
	# Entries the scan must read past (ignored names), so that the first
	# scan takes many loop turns: a client accepted before it ends would
	# find no upstream.
	upstreams = hx.runtime_dir / "upstreams"
	for i in range(JUNK_ENTRIES):
		(upstreams / f"junk {i}").touch()
	# systemd-socket-activate listens on tls_port and executes the daemon,
	# in its own process, when the first client connects.
	d = wrapped_daemon(hx, config, wrapper=["systemd-socket-activate", "-l", f"127.0.0.1:{tls_port}",
					       "--fdname=https"], wait_ready=False)
	assert wait_for(lambda: listening_inode(tls_port) is not None, STEP), d.log()
	passed_inode = listening_inode(tls_port)

	# The first client starts the daemon and is served: it waits in the
	# backlog until the upstream that registered before the start is known.
	response = https_get(certs, tls_port, "a.example", timeout=STEP * 2)
	assert response.status == 200
	assert response.fields.get("label") == "activated", response.body
	assert re.search(rf"listening on 127\.0\.0\.1:{tls_port} \(tls\), socket 'https' from systemd", d.log())
	# It did not bind a socket of its own for that port: the one listening
	# there is the one passed, descriptor 3 of the daemon.
	assert listening_inode(tls_port) == passed_inode
	assert socket_inodes(d.pid).get(3) == passed_inode, d.log()
	# A listen line without a passed socket is bound as usual.
	assert re.search(rf"listening on 127\.0\.0\.1:{http_port} \(http\)\n", d.log())
	assert http_get(http_port, "nobody-serves.example").status == 503
	assert up.proc.poll() is None


def test_a_passed_socket_no_listen_line_names_is_refused(hx):
	port, stray = free_port(), free_port()
	config = hx.config([f"127.0.0.1:{port} http"])
	d = wrapped_daemon(hx, config, wrapper=["systemd-socket-activate", "-l", f"127.0.0.1:{port}",
					       "-l", f"127.0.0.1:{stray}", "--fdname=web:stray"],
			   wait_ready=False)
	assert wait_for(lambda: listening_inode(stray) is not None, STEP), d.log()
	# Any connection makes systemd-socket-activate execute the daemon.
	with socket_to(stray):
		status = d.wait_exit(STEP * 2)
	assert status == 1, d.log()
	assert (f"socket 'stray' from systemd is bound to 127.0.0.1:{stray}, which no 'listen' line names "
		f"(add 'listen 127.0.0.1:{stray} tls|http' to the configuration or stop passing this socket)"
		in d.log()), d.log()
	assert "ready" not in d.log()


def socket_to(port):
	import socket
	return socket.create_connection(("127.0.0.1", port), timeout=STEP)


def ready_then_serving(hx, notify, port):
	"""Start a daemon notifying notify; when READY=1 arrives, the listener
	must already answer. Returns the daemon and the READY message."""
	d = wrapped_daemon(hx, hx.config([f"127.0.0.1:{port} http"]), extra_env=notify.env(),
			   wait_ready=False)
	ready = notify.wait_for_key("READY", STEP * 2)
	assert ready is not None, f"no READY=1 within {STEP * 2}s; got {notify.messages}\n{d.log()}"
	# Right now, not eventually: readiness means the listener accepts.
	assert http_get(port, "nobody-serves.example").status == 503
	assert ready["READY"] == "1" and ready["MAINPID"] == str(d.pid), ready
	assert "ready:" in d.log()
	return d, ready


def test_ready_is_notified_once_listeners_accept_and_reload_and_stop_are_announced(hx):
	notify = NotifyListener(hx.dir)
	try:
		d, ready = ready_then_serving(hx, notify, free_port())
		assert "serving 1 listener(s)" in ready["STATUS"]
		os.kill(d.pid, signal.SIGHUP)
		reloading = notify.wait_for_key("RELOADING", STEP)
		assert reloading is not None and reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0
		assert notify.wait_for_key("READY", STEP) is not None, notify.messages
		assert d.stop() == []
		stopping = notify.wait_for_key("STOPPING", STEP)
		assert stopping == {"STOPPING": "1"}, notify.messages
	finally:
		notify.close()


def test_upgrade_makes_the_new_daemon_the_main_process(hx):
	"""After `handoff upgrade` the new daemon says READY=1 with its own
	MAINPID (the unit's NotifyAccess=all lets systemd take it); the old one,
	once it has handed over, says nothing more: no STOPPING=1 when it exits,
	which would stop the service."""
	notify = NotifyListener(hx.dir)
	new_pid = None
	try:
		port = free_port()
		d, _ = ready_then_serving(hx, notify, port)
		r = subprocess.run([str(HANDOFF), "upgrade", "-c", str(d.config_path)], capture_output=True, text=True,
				   timeout=200)
		assert r.returncode == 0 and "took over the listening sockets" in r.stdout, (r, d.log())
		new_pid = int(r.stdout.split("new daemon pid ")[1].split()[0])
		assert new_pid != d.pid
		ready = notify.wait_for_key("READY", STEP * 2)
		assert ready is not None, f"no READY=1 from the new daemon; got {notify.messages}\n{d.log()}"
		assert ready["READY"] == "1" and ready["MAINPID"] == str(new_pid), ready
		# Without connections to finish the old daemon exits at once.
		assert d.proc.wait(STEP * 2) == 0, d.log()
		assert http_get(port, "nobody-serves.example").status == 503
		while notify.receive(1.0) is not None:
			pass
		assert not any("STOPPING" in m for m in notify.messages), notify.messages
		# The new daemon is the one systemd's reload and stop reach now.
		os.kill(new_pid, signal.SIGHUP)
		assert notify.wait_for_key("RELOADING", STEP) is not None, notify.messages
		reloaded = notify.wait_for_key("READY", STEP)
		assert reloaded is not None and reloaded["MAINPID"] == str(new_pid), notify.messages
		stop_pid(new_pid)
		new_pid = None
		assert notify.wait_for_key("STOPPING", STEP) == {"STOPPING": "1"}, notify.messages
	finally:
		if new_pid is not None:
			stop_pid(new_pid)
		notify.close()


def test_ready_is_notified_to_an_abstract_socket(hx):
	notify = NotifyListener(abstract_name=f"handoff-test-{os.getpid()}-{hx.dir.name}")
	try:
		ready_then_serving(hx, notify, free_port())
	finally:
		notify.close()


def test_ready_waits_for_the_upstreams_already_registered(hx, certs):
	port = free_port()
	first = hx.daemon(hx.config([f"127.0.0.1:{port} tls"]), tag="first")
	up = hx.upstream(["a.example"], "earlier", daemon=first)
	assert first.stop() == []
	notify = NotifyListener(hx.dir)
	try:
		d = wrapped_daemon(hx, hx.config([f"127.0.0.1:{port} tls"]), tag="second",
				   extra_env=notify.env(), wait_ready=False)
		assert notify.wait_for_key("READY", STEP * 2) is not None, d.log()
		# Registered before READY=1: the first request after it is served.
		assert re.search(rf"registered upstream {up.pid}-", d.log()), d.log()
		assert https_get(certs, port, "a.example").fields.get("label") == "earlier"
	finally:
		notify.close()


def test_sockets_passed_to_another_process_are_left_alone(hx):
	"""LISTEN_PID names another process (a parent that was activated and did
	not clear the variables): the daemon takes nothing and binds its own."""
	port = free_port()
	d = wrapped_daemon(hx, hx.config([f"127.0.0.1:{port} http"]),
			   extra_env={"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "other"})
	assert "socket activation: LISTEN_PID is 1, not this process: passed sockets ignored" in d.log()
	assert re.search(rf"listening on 127\.0\.0\.1:{port} \(http\)\n", d.log())
	assert http_get(port, "nobody-serves.example").status == 503


def test_a_bad_socket_count_is_refused(hx):
	d = wrapped_daemon(hx, hx.config([f"127.0.0.1:{free_port()} http"]), wait_ready=False,
			   wrapper=["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=many exec "$@"', "sh"])
	assert d.wait_exit(STEP) == 1
	assert "socket activation: LISTEN_FDS='many' is not a count of 0 to 1024 sockets" in d.log(), d.log()
