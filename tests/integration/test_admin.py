# test_admin.py - the admin endpoint: JSON API, Prometheus metrics, who may reach it, its bounds, and `handoff status`.
import socket
import subprocess
import time

from prometheus_client.parser import text_string_to_metric_families

from admin_helpers import admin_get, admin_state, listener, route, wait_state
from harness import HANDOFF, REQUEST_TIMEOUT, free_port, http_get, https_get, wait_for


def start(hx, extra_lines, grants=("* to self",)):
	"""A daemon with a TLS and an HTTP listener, a relay route to a closed
	port and the given admin lines; returns (daemon, tls address, http address)."""
	tls_port, http_port, dead_port = free_port(), free_port(), free_port()
	text = hx.config([f"127.0.0.1:{tls_port} tls", f"127.0.0.1:{http_port} http"], grants=grants)
	text += f"route r.example to tcp:127.0.0.1:{dead_port} fail-after 1 retry-after 60s\n"
	text += "".join(line + "\n" for line in extra_lines)
	d = hx.daemon(text)
	return d, f"127.0.0.1:{tls_port}", f"127.0.0.1:{http_port}"


def port_of(address):
	return int(address.rsplit(":", 1)[1])


def handoff_cli(*args, timeout=REQUEST_TIMEOUT * 2):
	return subprocess.run([str(HANDOFF), *args], capture_output=True, text=True, timeout=timeout)


def test_api_shows_listeners_routes_upstreams_refusals_and_recent_connections(hx, certs):
	admin = f"127.0.0.1:{free_port()}"
	d, tls, http = start(hx, [f"admin {admin}"], grants=["a.example to root", "b.example to root"])
	up = hx.upstream(["a.example"], "site-a", daemon=d)
	intruder = hx.upstream(["b.example"], "intruder", user=("nobody", "nogroup"), daemon=d, expect="refused")

	for _ in range(3):
		assert https_get(certs, port_of(tls), "a.example").fields["pid"] == str(up.pid)
	assert http_get(port_of(http), "r.example").status == 502
	assert http_get(port_of(http), "nobody.example").status == 503

	state = wait_state(admin, lambda s: listener(s, tls)["outcomes"]["handoff"] == 3
			   and listener(s, http)["outcomes"]["failed"] == 1
			   and listener(s, http)["outcomes"]["no-route"] == 1)
	tls_row, http_row = listener(state, tls), listener(state, http)
	assert tls_row["protocol"] == "tls" and http_row["protocol"] == "http"
	assert tls_row["accepted"] == 3 and http_row["accepted"] == 2
	assert tls_row["peeking"] == 0
	assert tls_row["handoff_time"]["count"] == 3
	assert tls_row["peek_time"]["count"] == 3
	assert state["totals"]["accepted"] == 5

	local = route(state, "a.example")
	assert local is not None and local["configured"] is False
	[target] = local["targets"]
	assert target["kind"] == "local" and target["target"].startswith(f"{up.pid}-")
	assert target["delivered"] == 3 and target["healthy"] is True and target["state"] == "up"

	relay = route(state, "r.example")
	assert relay["configured"] is True
	[tcp] = relay["targets"]
	assert tcp["kind"] == "tcp" and tcp["failures"] == 1 and tcp["healthy"] is False and tcp["state"] == "down"

	[registered] = state["upstreams"]
	assert registered["id"].startswith(f"{up.pid}-") and registered["uid"] == 0
	assert registered["names"] == ["a.example"] and registered["queue_depth"] == 0
	assert registered["delivered"] == 3 and registered["age_seconds"] >= 0

	[refusal] = state["refusals"]
	assert refusal["id"].startswith(f"{intruder.pid}-") and refusal["uid"] == 65534
	assert "may not claim b.example" in refusal["reason"]

	names = [(c["name"], c["outcome"]) for c in state["connections"]]
	assert names.count(("a.example", "handoff")) == 3
	assert ("r.example", "failed") in names and ("nobody.example", "no-route") in names
	handed = [c for c in state["connections"] if c["outcome"] == "handoff"]
	assert all(c["upstream"].startswith(f"{up.pid}-") and c["client"].startswith("127.0.0.1:") for c in handed)

	daemon = state["daemon"]
	assert daemon["pid"] == d.pid and daemon["version"]
	assert daemon["open_fds"] > 0 and daemon["rss_bytes"] > 0 and daemon["uptime_seconds"] >= 0

	# One part at a time, as documented.
	status, _, body = admin_get(admin, "/api/upstreams")
	assert status == 200 and b"a.example" in body
	assert admin_get(admin, "/api/nothing")[0] == 404


def test_metrics_parse_as_prometheus_text_and_count_outcomes(hx, certs):
	admin = f"127.0.0.1:{free_port()}"
	d, tls, http = start(hx, [f"admin {admin}"])
	hx.upstream(["a.example"], "site-a", daemon=d)
	for _ in range(4):
		https_get(certs, port_of(tls), "a.example")
	http_get(port_of(http), "r.example")
	wait_state(admin, lambda s: listener(s, tls)["outcomes"]["handoff"] == 4)

	status, ctype, body = admin_get(admin, "/metrics")
	assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
	families = {f.name: f for f in text_string_to_metric_families(body.decode())}

	def sample(family, suffix="", **labels):
		matches = [s.value for s in families[family].samples
			   if s.name == family + suffix and all(s.labels.get(k) == v for k, v in labels.items())]
		assert len(matches) == 1, (family, suffix, labels, families[family].samples)
		return matches[0]

	# prometheus_client names a counter family without its _total suffix.
	assert families["handoff_connections"].type == "counter"
	assert sample("handoff_connections", "_total", listener=tls, outcome="handoff") == 4
	assert sample("handoff_connections", "_total", listener=http, outcome="failed") == 1
	assert sample("handoff_connections_accepted", "_total", listener=tls, protocol="tls") == 4
	assert families["handoff_handoff_duration_seconds"].type == "histogram"
	assert sample("handoff_handoff_duration_seconds", "_count", listener=tls) == 4
	assert sample("handoff_handoff_duration_seconds", "_bucket", listener=tls, le="+Inf") == 4
	buckets = [s.value for s in families["handoff_peek_duration_seconds"].samples
		   if s.name.endswith("_bucket") and s.labels["listener"] == tls]
	assert buckets == sorted(buckets) and buckets[-1] == 4
	assert sample("handoff_peeking_connections", listener=tls) == 0
	assert sample("handoff_upstreams") == 1
	assert sample("handoff_target_failures", "_total", route="r.example", kind="tcp") == 1
	assert sample("handoff_target_healthy", route="r.example", kind="tcp") == 0
	assert sample("handoff_route_targets_healthy", route="a.example") == 1
	assert sample("handoff_target_delivered", "_total", route="a.example", kind="local") == 4
	assert sample("handoff_open_fds") > 0


# The upper bounds of both latency histograms, in µs: fine steps below 100 µs
# resolve a handoff of tens of microseconds, the rest reach slow clients.
HISTOGRAM_BOUNDS_US = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000,
		       100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000]


def test_histograms_expose_every_bucket_with_consistent_cumulative_counts(hx, certs):
	admin = f"127.0.0.1:{free_port()}"
	d, tls, http = start(hx, [f"admin {admin}"])
	hx.upstream(["a.example"], "site-a", daemon=d)
	for _ in range(3):
		https_get(certs, port_of(tls), "a.example")
	state = wait_state(admin, lambda s: listener(s, tls)["outcomes"]["handoff"] == 3)

	for member in ("handoff_time", "peek_time"):
		h = listener(state, tls)[member]
		bounds = [b["le_us"] for b in h["buckets"]]
		assert bounds == HISTOGRAM_BOUNDS_US + [None], (member, bounds)
		counts = [b["count"] for b in h["buckets"]]
		assert counts == sorted(counts) and counts[-1] == h["count"] == 3, (member, counts)

	body = admin_get(admin, "/metrics")[2].decode()
	families = {f.name: f for f in text_string_to_metric_families(body)}
	for name in ("handoff_handoff_duration_seconds", "handoff_peek_duration_seconds"):
		samples = [s for s in families[name].samples if s.labels["listener"] == tls]
		buckets = [s for s in samples if s.name == name + "_bucket"]
		bounds = [float(s.labels["le"]) for s in buckets]
		assert bounds == [us / 1e6 for us in HISTOGRAM_BOUNDS_US] + [float("inf")], (name, bounds)
		counts = [s.value for s in buckets]
		[count] = [s.value for s in samples if s.name == name + "_count"]
		assert counts == sorted(counts) and counts[-1] == count == 3, (name, counts)


def test_public_admin_address_needs_allow_lines(hx):
	port = free_port()
	base = hx.config([f"127.0.0.1:{free_port()} http"])
	refused = hx.dir / "public.conf"
	refused.write_text(base + f"admin 0.0.0.0:{port}\n")
	result = handoff_cli("check", "-c", str(refused))
	line = base.count("\n") + 1
	assert result.returncode == 1
	assert f"{refused}:{line}: admin: 0.0.0.0:{port} is not a loopback address" in result.stderr
	assert "admin allow ADDR/PREFIX" in result.stderr

	allowed = hx.dir / "allowed.conf"
	allowed.write_text(base + f"admin 0.0.0.0:{port}\nadmin allow 127.0.0.0/8\n")
	result = handoff_cli("check", "-c", str(allowed))
	assert result.returncode == 0, result.stderr

	orphan = hx.dir / "orphan.conf"
	orphan.write_text(base + "admin allow 10.0.0.0/8\n")
	result = handoff_cli("check", "-c", str(orphan))
	assert result.returncode == 1 and "without 'admin ADDRESS:PORT'" in result.stderr


def test_only_allowed_clients_are_served(hx):
	admin = f"127.0.0.1:{free_port()}"
	d, _, _ = start(hx, [f"admin {admin}", "admin allow 10.0.0.0/8"])
	# A loopback client outside the allowed range is closed without an answer.
	host, port = admin.rsplit(":", 1)
	with socket.create_connection((host, int(port)), timeout=REQUEST_TIMEOUT) as s:
		s.sendall(b"GET /api HTTP/1.0\r\n\r\n")
		try:
			answer = s.recv(100)
		except ConnectionResetError:
			answer = b""
	assert answer == b""
	# One daemon per runtime directory: the first goes before the second starts.
	assert d.stop() == []

	admin2 = f"127.0.0.1:{free_port()}"
	start(hx, [f"admin {admin2}", "admin allow 127.0.0.2/32,127.0.0.1"])
	assert admin_state(admin2)["daemon"]["admin"] == admin2


def test_admin_is_read_only_and_bounded_and_never_delays_handoffs(hx, certs):
	admin = f"127.0.0.1:{free_port()}"
	d, tls, _ = start(hx, [f"admin {admin}"])
	up = hx.upstream(["a.example"], "site-a", daemon=d)
	assert admin_get(admin, "/api", method="POST")[0] == 405
	# A request head past the per-connection memory bound is refused, not
	# buffered. The endpoint answers 431 and closes while the client may
	# still be sending, so the client can see a reset instead of the answer:
	# then the daemon's log must show the refusal.
	try:
		status, _, _ = admin_get(admin, "/api", headers={"X-Filler": "x" * 64 * 1024})
		assert status in (413, 431), status
	except (ConnectionResetError, BrokenPipeError):
		d.wait_log(r"admin: .*\(HTTP response code is 431\b")
	# Idle admin clients past the connection limit: handoffs go on, and the
	# endpoint answers again once they are gone.
	host, port = admin.rsplit(":", 1)
	idle = []
	try:
		for _ in range(40):
			s = socket.create_connection((host, int(port)), timeout=REQUEST_TIMEOUT)
			s.sendall(b"GET /api HTTP/1.1\r\nHost: x\r\n")	# never finished
			idle.append(s)
		for _ in range(5):
			assert https_get(certs, port_of(tls), "a.example").fields["pid"] == str(up.pid)
	finally:
		for s in idle:
			s.close()
	# The endpoint frees the idle clients' slots when it sees them close;
	# until then a new client may be turned away (a reset), after that it
	# must be answered.
	def answers():
		try:
			return admin_state(admin)
		except (ConnectionResetError, ConnectionRefusedError):
			return None
	assert wait_for(answers, 10.0), "the admin endpoint did not answer after its idle clients left"
	state = wait_state(admin, lambda s: listener(s, tls)["outcomes"]["handoff"] == 5, timeout=20.0)
	assert state["upstreams"][0]["delivered"] == 5


def test_status_prints_tables_over_tcp_and_unix_socket(hx, certs):
	sock_path = hx.dir / "admin.sock"
	d, tls, http = start(hx, [f"admin unix:{sock_path}"])
	up = hx.upstream(["a.example"], "site-a", daemon=d)
	https_get(certs, port_of(tls), "a.example")
	wait_state(f"unix:{sock_path}", lambda s: listener(s, tls)["outcomes"]["handoff"] == 1)

	for args in (["-c", str(d.config_path)], ["--admin", f"unix:{sock_path}"]):
		result = handoff_cli("status", *args)
		assert result.returncode == 0, result.stderr
		out = result.stdout
		assert f"pid {d.pid}" in out
		for heading in ("LISTENERS", "ROUTES", "UPSTREAMS", "REFUSED CLAIMS"):
			assert heading in out
		rows = out.splitlines()
		tls_row = next(r for r in rows if r.startswith(tls)).split()
		assert tls_row[:4] == [tls, "tls", "1", "0"] and tls_row[4] == "1"	# HANDOFF column
		assert any(r.startswith("r.example") and "tcp:127.0.0.1:" in r for r in rows)
		assert any(r.startswith(f"{up.pid}-") and "a.example" in r for r in rows)

	result = handoff_cli("status", "--admin", f"unix:{sock_path}", "--json")
	assert result.returncode == 0 and '"upstreams"' in result.stdout


def test_status_says_when_the_endpoint_is_off_or_unreachable(hx):
	off = hx.dir / "off.conf"
	off.write_text(hx.config([f"127.0.0.1:{free_port()} http"]))
	result = handoff_cli("status", "-c", str(off))
	assert result.returncode == 1
	assert "has no 'admin' line, so the admin endpoint is off" in result.stderr

	port = free_port()
	down = hx.dir / "down.conf"
	down.write_text(hx.config([f"127.0.0.1:{free_port()} http"]) + f"admin 127.0.0.1:{port}\n")
	result = handoff_cli("status", "-c", str(down))
	assert result.returncode == 1
	assert f"cannot reach the admin endpoint at 127.0.0.1:{port} ({down}:" in result.stderr

	result = handoff_cli("status")
	assert result.returncode == 2 and "give either -c FILE or --admin ADDRESS" in result.stderr
