# test_cli.py - the command line: check, serve with a bad configuration or a busy port, help and version.
import os
import re
import socket
import subprocess

import pytest

from harness import DAEMON_ASAN_OPTIONS, HANDOFF, daemon_ready, free_port, sanitizer_findings

# (config lines, line of the error or None for the file as a whole, words the message must contain)
BAD_CONFIGS = {
	"unknown-directive": (["# comment", "", "listen-on 127.0.0.1:8443 tls", "listen 127.0.0.1:8443 tls"],
			      3, ["listen-on"]),
	"bad-port": (["listen 127.0.0.1:99999 tls"], 1, ["99999"]),
	"bad-protocol": (["listen 127.0.0.1:8443 gopher"], 1, ["listen"]),
	"host-name-address": (["listen localhost:8443 tls"], 1, ["localhost"]),
	"bad-duration": (["listen 127.0.0.1:8443 tls", "peek-timeout banana"], 2, ["banana"]),
	"duration-too-long": (["listen 127.0.0.1:8443 tls", "handoff-timeout 61m"], 2, ["handoff-timeout"]),
	"zero-count": (["listen 127.0.0.1:8443 tls", "", "max-pending 0"], 3, ["max-pending"]),
	"relative-path": (["runtime-dir run/handoff", "listen 127.0.0.1:8443 tls"], 1, ["runtime-dir"]),
	"unknown-user": (["listen 127.0.0.1:8443 tls", "grant a.example to no-such-user-for-handoff"], 2,
			 ["no-such-user-for-handoff"]),
	"grant-without-to": (["listen 127.0.0.1:8443 tls", "grant a.example root"], 2, ["grant"]),
	"duplicate-listen": (["listen 127.0.0.1:8443 tls", "listen 127.0.0.1:8080 http",
			      "listen 127.0.0.1:8443 http"], 3, ["127.0.0.1:8443", "line 1"]),
	"set-twice": (["listen 127.0.0.1:8443 tls", "peek-timeout 1s", "peek-timeout 2s"], 3, ["peek-timeout"]),
	"no-listen": (["grant * to self"], None, ["listen"]),
}


def run_handoff(*args, timeout=30):
	env = dict(os.environ, ASAN_OPTIONS=DAEMON_ASAN_OPTIONS)
	return subprocess.run([str(HANDOFF), *args], stdin=subprocess.DEVNULL, capture_output=True,
			      text=True, timeout=timeout, env=env)


def test_check_accepts_a_good_config(hx):
	path = hx.dir / "good.conf"
	path.write_text("# a full configuration\n"
			f"runtime-dir {hx.runtime_dir}\n"
			"access-log off\n"
			"peek-timeout 500ms\nhandoff-timeout 2m\n"
			"max-peeking 100\nmax-per-ip 10\nmax-pending 5\n"
			"listen 127.0.0.1:8443 tls default a.example backlog 16\n"
			"listen [::1]:8443 tls v6only on\n"
			"listen *:8080 http   # trailing comment\n"
			"grant a.example to root 0 @root\n"
			"grant *.apps.example to self\n"
			"grant * to @0\n")
	result = run_handoff("check", "-c", str(path))
	assert result.returncode == 0, result.stderr
	assert result.stdout.startswith(f"{path}: ok"), result.stdout
	assert not sanitizer_findings(result.stderr)


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_check_rejects_a_bad_config(hx, case):
	lines, line, words = BAD_CONFIGS[case]
	path = hx.dir / f"{case}.conf"
	path.write_text("\n".join(lines) + "\n")
	result = run_handoff("check", "-c", str(path))
	assert result.returncode == 1, (result.stdout, result.stderr)
	messages = result.stderr.strip().splitlines()
	assert len(messages) == 1, result.stderr
	prefix = f"{path}:{line}: " if line else f"{path}: "
	assert messages[0].startswith(prefix), messages[0]
	assert all(word in messages[0] for word in words), messages[0]

	served = run_handoff("serve", "-c", str(path))
	assert served.returncode != 0
	assert messages[0] in served.stderr
	assert not daemon_ready(served.stderr)
	assert not sanitizer_findings(served.stderr)


def test_check_missing_file(hx):
	path = hx.dir / "missing.conf"
	result = run_handoff("check", "-c", str(path))
	assert result.returncode == 1
	assert re.fullmatch(rf"{re.escape(str(path))}: .*\n", result.stderr), result.stderr


def test_serve_with_a_port_in_use(hx):
	busy = free_port()
	free = free_port()
	path = hx.dir / "busy.conf"
	path.write_text(f"runtime-dir {hx.runtime_dir}\n"
			f"listen 127.0.0.1:{free} http\n"
			f"listen 127.0.0.1:{busy} tls\n"
			"grant * to self\n")
	with socket.socket() as holder:
		holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
		holder.bind(("127.0.0.1", busy))
		holder.listen(1)
		result = run_handoff("serve", "-c", str(path))
	assert result.returncode != 0
	assert not daemon_ready(result.stderr)
	assert not sanitizer_findings(result.stderr)
	complaints = [line for line in result.stderr.splitlines() if f"127.0.0.1:{busy}" in line]
	assert len(complaints) == 1, result.stderr
	assert "in use" in complaints[0]
	assert f"{path}:3:" in complaints[0]
	# It does not keep the other port either.
	with socket.socket() as probe:
		probe.bind(("127.0.0.1", free))


def test_help_and_version():
	result = run_handoff("--help")
	assert result.returncode == 0
	assert "serve" in result.stdout and "check" in result.stdout
	result = run_handoff("version")
	assert result.returncode == 0
	assert re.search(r"\d+\.\d+", result.stdout), result.stdout
	result = run_handoff("no-such-command")
	assert result.returncode != 0
	assert result.stderr.strip()
