# test_memory.py - the daemon's memory and descriptors with 2,000 connections held in the peek phase, and handed off to nginx.
import os
import resource
import shutil
import socket

import pytest

from harness import DAEMON_ASAN_OPTIONS, HANDOFF, free_port, read_text, wait_for

COUNT = 2000
# Under ASan every allocation carries redzones and shadow memory: a struct
# conn (under 2 KiB, about 1,975 bytes of RSS per connection in the plain
# build, see docs/performance.md) costs more. Both bounds are about twice
# what was measured, and well under what keeping a 16 KiB peek buffer per
# connection would cost.
SANITIZED = b"__asan_init" in HANDOFF.read_bytes()
PEEK_BOUND = 8192 if SANITIZED else 4096
# The quarantine would keep freed memory from being reused, so that a
# second round could not show that the first one left nothing behind.
DAEMON_ENV = {"ASAN_OPTIONS": DAEMON_ASAN_OPTIONS + ":quarantine_size_mb=0"}
NOFILE = COUNT + 2048


def rss_kib(pid):
	for line in read_text(f"/proc/{pid}/status").splitlines():
		if line.startswith("VmRSS:"):
			return int(line.split()[1])
	raise AssertionError(f"no VmRSS for pid {pid}")


def fd_count(pid):
	return len(os.listdir(f"/proc/{pid}/fd"))


def settled(read, pid):
	"""read(pid) once it has held still for half a second (5 s at most)."""
	last = [read(pid)]

	def still():
		now = read(pid)
		same = now == last[0]
		last[0] = now
		return same

	wait_for(still, 5.0, interval=0.5)
	return last[0]


@pytest.fixture
def many_descriptors():
	"""Room for COUNT client sockets in this process (and what it starts)."""
	soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
	want = NOFILE + 1024
	if hard != resource.RLIM_INFINITY and hard < want:
		pytest.fail(f"the descriptor limit is {hard}; this test needs {want} (ulimit -n)")
	resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
	yield
	resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def hold_silent(port, count):
	socks = []
	try:
		for _ in range(count):
			socks.append(socket.create_connection(("127.0.0.1", port), timeout=30))
	except BaseException:
		close_all(socks)
		raise
	return socks


def close_all(socks):
	for s in socks:
		s.close()


def hold_peeking_round(d, port, baseline_fds):
	"""Hold COUNT silent connections; returns the RSS (KiB) while held and after."""
	socks = hold_silent(port, COUNT)
	try:
		assert wait_for(lambda: fd_count(d.pid) >= baseline_fds + COUNT, 60.0), \
			f"the daemon holds {fd_count(d.pid)} descriptors, expected {baseline_fds + COUNT}"
		held = settled(rss_kib, d.pid)
	finally:
		close_all(socks)
	assert wait_for(lambda: fd_count(d.pid) == baseline_fds, 60.0), \
		f"after the close the daemon holds {fd_count(d.pid)} descriptors, {baseline_fds} before"
	return held, settled(rss_kib, d.pid)


def test_peeking_connections_cost_under_a_bound_and_leave_nothing(hx, many_descriptors):
	"""2,000 silent clients in the peek phase cost the daemon less than
	PEEK_BOUND bytes of RSS each; when they close, its descriptors are
	back to where they were, and a second 2,000 reuse the first ones'
	memory (malloc keeps freed memory, so RSS need not fall; but
	anything left behind per connection would make it grow again)."""
	port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{port} http"], peek_timeout="10m", max_peeking=COUNT + 500,
				max_per_ip=COUNT + 500, access_log="off"), nofile=NOFILE, env=DAEMON_ENV)
	# One refused request first: what the first connection sets up once
	# (the peek buffer, the timer heap) is then in the baseline.
	with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
		s.sendall(b"GET / HTTP/1.1\r\nHost: none.example\r\n\r\n")
		answer = b""
		while chunk := s.recv(4096):	# to the daemon's close
			answer += chunk
		assert answer.startswith(b"HTTP/1.1 503"), answer
	baseline_fds = fd_count(d.pid)
	before = settled(rss_kib, d.pid)

	held, after = hold_peeking_round(d, port, baseline_fds)
	per_conn = (held - before) * 1024 / COUNT
	held_again, after_again = hold_peeking_round(d, port, baseline_fds)
	again_per_conn = (held_again - after) * 1024 / COUNT
	print(f"daemon RSS KiB: before {before}, {COUNT} held {held} ({per_conn:.0f} bytes each), "
	      f"closed {after}; again held {held_again} ({again_per_conn:.0f} bytes each), "
	      f"closed {after_again}; bound {PEEK_BOUND} bytes ({'ASan' if SANITIZED else 'plain'} build)")
	assert per_conn < PEEK_BOUND
	# The first round's growth is what a connection costs (about 2 KiB);
	# a second round growing by half of that would mean memory kept per
	# connection that was closed. (Measured: nothing in the plain build;
	# a fifth in the ASan build, whose allocator reuses less.)
	assert held_again - after < (held - before) / 2, \
		f"a second {COUNT} connections grew the RSS by {held_again - after} KiB " \
		f"(the first {COUNT}: {held - before} KiB)"


NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile {nofile};
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
{user_line}
events {{
	worker_connections {connections};
}}
http {{
	access_log off;
	keepalive_requests 1000;
	keepalive_timeout 600s;
	client_body_temp_path {dir}/nginx-tmp/body;
	proxy_temp_path {dir}/nginx-tmp/proxy;
	fastcgi_temp_path {dir}/nginx-tmp/fastcgi;
	uwsgi_temp_path {dir}/nginx-tmp/uwsgi;
	scgi_temp_path {dir}/nginx-tmp/scgi;
	server {{
		listen 127.0.0.1:{port};
		server_name a.example;
		location / {{
			default_type text/plain;
			return 200 "held\\n";
		}}
	}}
}}
"""


def keepalive_exchange(sock):
	"""One keep-alive GET answered by nginx's 5-byte body; the connection stays open."""
	sock.sendall(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
	data = b""
	while not (b"\r\n\r\n" in data and data.endswith(b"held\n")):
		chunk = sock.recv(4096)
		if not chunk:
			raise ConnectionError(f"closed after {data!r}")
		data += chunk
		if len(data) > 4096:
			raise ConnectionError(f"unexpected answer {data[:200]!r}")
	assert data.startswith(b"HTTP/1.1 200"), data[:100]


def test_handed_off_connections_held_by_nginx_leave_the_daemon_unchanged(hx, runs, many_descriptors):
	"""2,000 keep-alive connections handed off to nginx under `handoff run`
	and held open by it: the daemon's descriptor count is what it was,
	and its RSS did not grow by anything like a connection's worth each."""
	nginx = shutil.which("nginx") or "/usr/sbin/nginx"
	port, nginx_port = free_port(), free_port()
	(hx.dir / "nginx-tmp").mkdir()
	(hx.dir / "nginx.conf").write_text(NGINX_CONF.format(
		nofile=NOFILE, dir=hx.dir, connections=COUNT + 512, port=nginx_port,
		user_line="user www-data;" if os.geteuid() == 0 else ""))
	d = hx.daemon(hx.config([f"127.0.0.1:{port} http"], access_log="off"), nofile=NOFILE, env=DAEMON_ENV)
	runs("nginx", [nginx, "-c", hx.dir / "nginx.conf"], names=("a.example",), ports=(f"{nginx_port}/http",))
	d.wait_log(r"registered upstream \S+ names=a\.example", timeout=15.0)

	socks = []
	try:
		# More than the ring of recent connections (64) first, so that the
		# ring's one-off filling is in the baseline.
		for _ in range(100):
			with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
				keepalive_exchange(s)
		baseline_fds = settled(fd_count, d.pid)
		before = settled(rss_kib, d.pid)
		for _ in range(COUNT):
			s = socket.create_connection(("127.0.0.1", port), timeout=30)
			socks.append(s)
			keepalive_exchange(s)
		# The daemon closes its copy just after passing it: nginx may answer first.
		wait_for(lambda: fd_count(d.pid) <= baseline_fds, 30.0)
		held_fds = settled(fd_count, d.pid)
		held = settled(rss_kib, d.pid)
		# Still open: nginx answers another request on the first one.
		keepalive_exchange(socks[0])
	finally:
		close_all(socks)
	per_conn = (held - before) * 1024 / COUNT
	print(f"daemon with {COUNT} handed-off connections held by nginx: descriptors {baseline_fds} -> {held_fds}, "
	      f"RSS KiB {before} -> {held} ({per_conn:.0f} bytes per connection)")
	# Not one more than before (the ASan build sometimes closes one of its
	# own, unrelated to the clients, in between: 13 -> 12).
	assert held_fds <= baseline_fds
	# A connection kept in any form costs about 2 KiB, 3 KiB under ASan
	# (the test above). Measured: nothing in the plain build, about 640
	# bytes per connection in the ASan build, whose allocator reuses less.
	assert per_conn < PEEK_BOUND / 4
