# test_log_rotation.py - the access-log rotation docs/operations.md describes: logrotate renames the file, SIGHUP makes the daemon open a new one (also when the reload it triggers is refused), and a failed reopen keeps the old one.
import signal

from harness import free_port, http_get, parse_access_line, read_text, wait_for


def access_clients(path):
	"""The client= field of every access-log line in path."""
	return [r["client"] for r in map(parse_access_line, read_text(path).splitlines()) if r]


def logged(path, client):
	"""Wait until path has the access-log line of client."""
	assert wait_for(lambda: client in access_clients(path), 5.0), f"{client} not in {path}:\n{read_text(path)}"


def request(port, source_port):
	response = http_get(port, "a.example", source_port=source_port)
	assert response.status == 200, response.status
	return f"127.0.0.1:{source_port}"


def daemon_logging_to_a_file(hx):
	"""A daemon with an HTTP listener and an upstream for a.example, writing
	its access log to logs/access.log; (port, logs, that file, daemon)."""
	port = free_port()
	logs = hx.dir / "logs"
	logs.mkdir()
	live = logs / "access.log"
	d = hx.daemon(hx.config([f"127.0.0.1:{port} http"], access_log=live))
	hx.upstream(["a.example"], "a", daemon=d)
	return port, logs, live, d


def test_sighup_reopens_the_renamed_access_log(hx):
	port, logs, live, d = daemon_logging_to_a_file(hx)

	before = request(port, free_port())
	logged(live, before)

	# What logrotate does: rename, then signal.
	rotated = logs / "access.log.1"
	live.rename(rotated)
	during = request(port, free_port())
	logged(rotated, during)		# the daemon's descriptor still points at the renamed file
	d.proc.send_signal(signal.SIGHUP)
	d.wait_log(r"access log reopened")
	after = request(port, free_port())
	logged(live, after)

	assert access_clients(rotated) == [before, during]
	assert access_clients(live) == [after]
	assert (live.stat().st_mode & 0o777) == 0o640


def test_failed_reopen_keeps_writing_to_the_old_file(hx):
	port, logs, live, d = daemon_logging_to_a_file(hx)

	# The file moves elsewhere and its directory is gone: no new file can be made.
	kept = hx.dir / "kept-access.log"
	live.rename(kept)
	logs.rmdir()
	d.proc.send_signal(signal.SIGHUP)
	d.wait_log(rf"cannot reopen access log {live}: No such file or directory")
	client = request(port, free_port())
	logged(kept, client)
	assert not logs.exists()


def test_sighup_reopens_the_access_log_when_the_reload_is_refused(hx):
	"""SIGHUP is also a reload; a configuration file with an error is
	refused, but the rotation half of the signal still happens."""
	port, logs, live, d = daemon_logging_to_a_file(hx)
	before = request(port, free_port())
	logged(live, before)

	d.config_path.write_text(d.config_path.read_text() + "no-such-directive 1\n")
	rotated = logs / "access.log.1"
	live.rename(rotated)
	d.proc.send_signal(signal.SIGHUP)
	d.wait_log(r"reload failed, configuration unchanged: .*no-such-directive")
	d.wait_log(r"access log reopened")
	after = request(port, free_port())
	logged(live, after)
	assert access_clients(rotated) == [before]
	assert access_clients(live) == [after]
