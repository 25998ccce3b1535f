# test_fast_path.py - what a handed-off connection costs the daemon in system calls, and defer-accept.
import re
import signal
import subprocess
import time

from admin_helpers import admin_state, listener
from harness import free_port, https_get, read_text, wait_for

CONNECTIONS = 40


def strace_counts(path):
	"""{syscall: (calls, errors)} from the table of `strace -c`."""
	counts = {}
	for line in read_text(path).splitlines():
		# % time  seconds  usecs/call  calls  [errors]  syscall
		m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:(\d+)\s+)?(\w+)\s*$", line)
		if m and m.group(3) != "total":
			counts[m.group(3)] = (int(m.group(1)), int(m.group(2) or 0))
	return counts


def traced(pid, workdir, action):
	"""Run action() while strace counts the system calls of pid and its
	threads; returns the counts."""
	out = workdir / f"strace-{pid}.txt"
	err = workdir / f"strace-{pid}.stderr"
	with open(err, "wb") as err_file:
		tracer = subprocess.Popen(["strace", "-f", "-c", "-o", str(out), "-p", str(pid)],
					  stdin=subprocess.DEVNULL, stderr=err_file)
	try:
		assert wait_for(lambda: "attached" in read_text(err), 10), read_text(err)
		action()
	finally:
		tracer.send_signal(signal.SIGINT)
		tracer.wait(10)
	return strace_counts(out)


def test_a_connection_that_brings_its_hello_costs_the_daemon_four_system_calls(hx, certs):
	"""accept4, one peek, one sendmsg with the descriptor, close: no epoll
	registration, no getsockname(), no second look."""
	port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{port} tls defer-accept 5s"], access_log="off"))
	hx.upstream(["a.example"], "a", daemon=d)
	assert https_get(certs, port, "a.example").status == 200

	def requests():
		for _ in range(CONNECTIONS):
			assert https_get(certs, port, "a.example").status == 200

	counts = traced(d.pid, hx.dir, requests)
	calls = {name: n for name, (n, _) in counts.items()}
	accepted = counts.get("accept4", (0, 0))
	assert accepted[0] - accepted[1] == CONNECTIONS, counts
	assert calls.get("recvfrom") == CONNECTIONS, counts
	assert calls.get("sendmsg") == CONNECTIONS, counts
	assert calls.get("close", 0) >= CONNECTIONS, counts
	assert "epoll_ctl" not in calls, counts
	assert "getsockname" not in calls, counts
	assert "setsockopt" not in calls, counts


def test_defer_accept_leaves_a_silent_client_to_the_kernel(hx, certs):
	"""A client that has sent nothing is not accepted on a defer-accept
	listener (it costs the daemon nothing, not even a peeking slot), while
	it is on a listener without; once it speaks, it is handed off."""
	deferred, plain = free_port(), free_port()
	admin = f"127.0.0.1:{free_port()}"
	d = hx.daemon(hx.config([f"127.0.0.1:{deferred} tls defer-accept 10s", f"127.0.0.1:{plain} tls"],
				admin=admin))
	hx.upstream(["a.example"], "a", daemon=d)
	seen = {}

	def silent_for_a_while(port):
		def look():
			time.sleep(0.5)
			state = admin_state(admin)
			seen[port] = (listener(state, f"127.0.0.1:{port}")["accepted"],
				      state["totals"]["peeking"])
		return look

	for port in (deferred, plain):
		response = https_get(certs, port, "a.example", on_connect=silent_for_a_while(port))
		assert response.status == 200
	assert seen[deferred] == (0, 0), seen
	assert seen[plain] == (1, 1), seen
	assert "cannot set defer-accept" not in d.log()
