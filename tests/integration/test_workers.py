# test_workers.py - accepting threads (`workers N`): what they hand off at once, what they pass to the event loop, reloads, vanished upstreams.
import os
import select
import signal
import socket
import subprocess
import time

from admin_helpers import admin_get, admin_state, listener, wait_state
import pytest

from harness import HANDOFF, HANDOFF_TSAN, connect, free_port, http_get, https_get, read_response, read_text, request_bytes, wait_for
from relay_helpers import Processes
from test_reload import reload_cmd

# Each test runs the sanitizer build of the daemon (ASan, UBSan) and the
# ThreadSanitizer one, which reports any access to the loop's state by a
# thread that does not hold the daemon lock.
BUILDS = {"asan": HANDOFF, "tsan": HANDOFF_TSAN}

BURSTS_MAX = 20		# bursts of simultaneous clients before both threads must have worked
BURST = 48


@pytest.fixture(params=sorted(BUILDS))
def binary(request):
	path = BUILDS[request.param]
	assert path.exists(), f"{path} is missing: make SANITIZE={'1' if request.param == 'asan' else 'thread'}"
	return path


def threads_of(pid):
	"""The names of the process's threads."""
	return [read_text(f"/proc/{pid}/task/{tid}/comm").strip() for tid in os.listdir(f"/proc/{pid}/task")]


def workers(state):
	return {w["worker"]: w for w in state["workers"]}


def running(state):
	return sorted(n for n, w in workers(state).items() if w["running"])


def handed_off(state):
	return sum(w["handed_off"] for w in state["workers"])


def passed(state):
	return sum(w["passed"] for w in state["workers"])


def burst(port, name, count):
	"""count clients that connect first and then all send their request:
	with defer-accept they become acceptable within a few microseconds of
	each other. Returns the status lines."""
	socks = [connect(port) for _ in range(count)]
	for s in socks:
		s.sendall(request_bytes(name))
	answers = []
	for s in socks:
		with s.makefile("rb") as stream:
			answers.append(read_response(stream).status)
		s.close()
	return answers


def test_threads_hand_off_what_their_first_look_decides(hx, certs, binary):
	"""workers 2: TLS and plain-HTTP clients that send their hello or
	request at once are handed off by the threads, none passed to the
	loop; the counters, the recent connections and the access log say
	what the loop would have said; under bursts both threads work (and
	what finds the upstream's queue full waits in the loop)."""
	tls_port, http_port = free_port(), free_port()
	admin = f"127.0.0.1:{free_port()}"
	access = hx.dir / "access.log"
	d = hx.daemon(hx.config([f"127.0.0.1:{tls_port} tls defer-accept 5s",
				 f"127.0.0.1:{http_port} http defer-accept 5s"],
				workers=2, admin=admin, access_log=access), binary=binary)
	d.wait_log(r"2 threads accept new connections")
	hx.upstream(["a.example"], "a", daemon=d)
	for _ in range(10):
		assert https_get(certs, tls_port, "a.example").status == 200
		assert http_get(http_port, "a.example").status == 200
	state = wait_state(admin, lambda s: handed_off(s) == 20)
	assert running(state) == [1, 2], state["workers"]
	assert passed(state) == 0, state["workers"]
	assert state["daemon"]["workers"] == 2
	assert state["totals"]["accepted"] == 20 and state["totals"]["outcomes"]["handoff"] == 20, state["totals"]
	assert listener(state, f"127.0.0.1:{tls_port}")["accepted"] == 10
	histogram = listener(state, f"127.0.0.1:{http_port}")["handoff_time"]
	assert histogram["count"] == 10, histogram
	upstream = state["upstreams"][0]
	assert upstream["delivered"] == 20, upstream
	recent = [c for c in state["connections"] if c["outcome"] == "handoff"]
	assert len(recent) == 20 and all(c["upstream"] == upstream["id"] for c in recent), recent
	status, _, body = admin_get(admin, "/metrics")
	metrics = body.decode()
	assert status == 200 and "# TYPE handoff_worker_handed_off_total counter" in metrics, metrics[-2000:]
	handed = {line.split()[0]: int(line.split()[1]) for line in metrics.splitlines()
		  if line.startswith("handoff_worker_handed_off_total{")}
	assert set(handed) == {'handoff_worker_handed_off_total{worker="1"}', 'handoff_worker_handed_off_total{worker="2"}'}
	assert sum(handed.values()) == 20, handed
	assert 'handoff_worker_passed_total{worker="1"} 0' in metrics
	cpu = [float(line.split()[1]) for line in metrics.splitlines() if line.startswith("handoff_cpu_seconds_total ")]
	assert len(cpu) == 1 and cpu[0] > 0, metrics[-1500:]
	d.wait_access(lambda r: r.get("outcome") == "handoff" and r.get("name") == "a.example", count=20)
	assert {"client", "listener", "proto", "peek_us"} <= set(d.access_records()[0])

	# Bursts of simultaneous clients: while one thread is busy accepting,
	# the kernel wakes the other (EPOLLEXCLUSIVE wakes a waiting one).
	total = 20
	for _ in range(BURSTS_MAX):
		assert burst(http_port, "a.example", BURST) == [200] * BURST
		total += BURST
		state = wait_state(admin, lambda s: handed_off(s) + passed(s) == total)
		if all(w["handed_off"] > 0 for w in state["workers"]):
			break
	assert all(w["handed_off"] > 0 for w in state["workers"]), state["workers"]
	# A burst can fill the upstream's socket queue: those wait in the loop.
	assert state["totals"]["outcomes"]["handoff"] == total, state["totals"]


def test_what_needs_the_loop_is_passed_to_it(hx, certs, binary):
	"""workers 2: a request sent in two parts, a name nobody serves, a
	relayed name, a detect listener and a silent client beyond max-per-ip
	all go to the event loop, which answers them as it always does."""
	procs = Processes(hx.dir)
	try:
		target_port = free_port()
		procs.target("http", target_port, "h")
		http_port, detect_port = free_port(), free_port()
		admin = f"127.0.0.1:{free_port()}"
		text = hx.config([f"127.0.0.1:{http_port} http", f"127.0.0.1:{detect_port} detect"],
				 workers=2, admin=admin, max_per_ip=2, peek_timeout="30s")
		d = hx.daemon(text + f"route h.example to tcp:127.0.0.1:{target_port}\n", binary=binary)
		hx.upstream(["a.example"], "a", daemon=d)

		split = connect(http_port)
		split.sendall(b"GET / HTTP/1.1\r\n")
		time.sleep(0.3)
		split.sendall(b"Host: a.example\r\nConnection: close\r\n\r\n")
		with split.makefile("rb") as stream:
			assert read_response(stream).status == 200
		split.close()
		assert http_get(http_port, "nobody.example").status == 503
		relayed = http_get(http_port, "h.example")
		assert relayed.status == 200 and b"label=h" in relayed.body
		assert https_get(certs, detect_port, "a.example").status == 200

		# Three silent clients from one address: one is refused. Which one
		# depends on which thread took which first, so all three are read.
		silent = [connect(http_port) for _ in range(3)]
		readable, _, _ = select.select(silent, [], [], 10)
		assert len(readable) == 1, f"{len(readable)} of three silent clients were answered"
		assert readable[0].recv(100).startswith(b"HTTP/1.1 503")
		for s in silent:
			s.close()

		state = wait_state(admin, lambda s: s["totals"]["outcomes"]["refused"] >= 1)
		outcomes = state["totals"]["outcomes"]
		assert outcomes["handoff"] == 2 and outcomes["no-route"] == 1 and outcomes["relayed"] == 1, outcomes
		assert passed(state) == 7 and handed_off(state) == 0, state["workers"]
		d.wait_access(lambda r: r.get("outcome") == "refused" and "max-per-ip" in r.get("why", ""))
	finally:
		procs.close()


def test_reload_changes_the_number_of_threads(hx, certs, binary):
	"""workers 2, then 3, then 1 by reload: the threads are started and
	stopped (joined: the process has them no more), counters stay, and with
	1 the event loop accepts again; clients are served at every step."""
	port = free_port()
	admin = f"127.0.0.1:{free_port()}"
	settings = dict(admin=admin, access_log="off")
	d = hx.daemon(hx.config([f"127.0.0.1:{port} http defer-accept 5s"], workers=2, **settings), binary=binary)
	hx.upstream(["a.example"], "a", daemon=d)
	base = len(threads_of(d.pid))
	for _ in range(5):
		assert http_get(port, "a.example").status == 200
	assert running(wait_state(admin, lambda s: handed_off(s) == 5)) == [1, 2]

	d.config_path.write_text(hx.config([f"127.0.0.1:{port} http defer-accept 5s"], workers=3, **settings))
	r = reload_cmd(d)
	assert r.returncode == 0, r
	d.wait_log(r"3 threads accept new connections")
	assert wait_for(lambda: len(threads_of(d.pid)) == base + 1, 10), threads_of(d.pid)
	for _ in range(5):
		assert http_get(port, "a.example").status == 200
	state = wait_state(admin, lambda s: handed_off(s) == 10)
	assert running(state) == [1, 2, 3], state["workers"]
	status = subprocess.run([str(HANDOFF), "status", "--admin", admin], capture_output=True, text=True,
				timeout=30)
	assert status.returncode == 0 and "workers 3" in status.stdout, status
	table = status.stdout.split("ACCEPTING THREADS", 1)[1].splitlines()
	assert table[1].split()[:2] == ["THREAD", "STATE"], status.stdout
	assert [line.split()[1] for line in table[2:5]] == ["running"] * 3, status.stdout

	d.config_path.write_text(hx.config([f"127.0.0.1:{port} http defer-accept 5s"], workers=1, **settings))
	r = reload_cmd(d)
	assert r.returncode == 0, r
	assert wait_for(lambda: len(threads_of(d.pid)) == base - 2, 10), threads_of(d.pid)
	for _ in range(5):
		assert http_get(port, "a.example").status == 200
	state = wait_state(admin, lambda s: s["totals"]["outcomes"]["handoff"] == 15)
	assert running(state) == [] and handed_off(state) == 10, state["workers"]


def test_a_vanished_upstream_costs_no_connection(hx, certs, binary):
	"""Two upstreams serve one name; one is killed with SIGKILL while the
	threads hand off: the next connections all succeed (a send that finds
	it gone goes to the loop, which drops it and takes the other), and the
	daemon frees it without a sanitizer finding."""
	port = free_port()
	admin = f"127.0.0.1:{free_port()}"
	d = hx.daemon(hx.config([f"127.0.0.1:{port} tls defer-accept 5s"], workers=2, admin=admin), binary=binary)
	first = hx.upstream(["a.example"], "a1", daemon=d)
	hx.upstream(["a.example"], "a2", daemon=d)
	for _ in range(4):
		assert https_get(certs, port, "a.example").status == 200
	os.kill(first.pid, signal.SIGKILL)
	first.proc.wait(10)
	statuses = [https_get(certs, port, "a.example").status for _ in range(10)]
	assert statuses == [200] * 10, statuses
	d.wait_log(rf"dropped upstream {first.pid}-", timeout=10)
	state = admin_state(admin)
	assert [u["id"] for u in state["upstreams"]] != [] and all(
		not u["id"].startswith(f"{first.pid}-") for u in state["upstreams"]), state["upstreams"]
