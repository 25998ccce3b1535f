# test_upstreams.py - upstreams come and go: crash failover, daemon restart, discovery, and who may claim a name.
import signal
import time

from harness import free_port, http_get, https_get, read_text, tls_failure, wait_for

DISCOVERY_LIMIT = 1.5		# "within a second", plus scheduling slack


def test_killed_upstream_fails_over_to_the_other(hx, certs):
	port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{port} tls"]))
	first = hx.upstream(["a.example"], "a-first", daemon=d)
	second = hx.upstream(["a.example"], "a-second", daemon=d)

	labels = {https_get(certs, port, "a.example").fields["label"] for _ in range(10)}
	assert labels <= {first.label, second.label}

	first.signal(signal.SIGKILL)
	first.proc.wait(10)
	# Every request succeeds: whether the daemon noticed the end already
	# or meets the dead socket on this request, it hands off to the other.
	results = [https_get(certs, port, "a.example").fields["label"] for _ in range(50)]
	assert all(label == second.label for label in results), results
	d.wait_log(rf"dropped upstream {first.pid}-")
	d.wait_access(lambda r: r.get("outcome") == "handoff", count=10 + 50)
	assert not [r for r in d.access_records() if r.get("outcome") != "handoff"]


def test_daemon_restart_keeps_upstreams(hx, certs):
	tls_port = free_port()
	http_port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{tls_port} tls", f"127.0.0.1:{http_port} http"]))
	up_a = hx.upstream(["a.example"], "site-a", daemon=d)
	up_b = hx.upstream(["b.example"], "site-b", daemon=d)
	assert https_get(certs, tls_port, "a.example").fields["pid"] == str(up_a.pid)
	assert https_get(certs, tls_port, "b.example").fields["pid"] == str(up_b.pid)
	assert http_get(http_port, "b.example").fields["pid"] == str(up_b.pid)

	problems = d.stop()
	assert not problems, "\n".join(problems)
	assert up_a.proc.poll() is None and up_b.proc.poll() is None

	d.start()
	d.wait_log(rf"registered upstream {up_a.pid}-")
	d.wait_log(rf"registered upstream {up_b.pid}-")
	for _ in range(3):
		assert https_get(certs, tls_port, "a.example").fields["pid"] == str(up_a.pid)
		assert https_get(certs, tls_port, "b.example").fields["pid"] == str(up_b.pid)
		assert http_get(http_port, "a.example").fields["pid"] == str(up_a.pid)


def test_unauthorized_claim_is_refused(hx, certs):
	port = free_port()
	http_port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{port} tls", f"127.0.0.1:{http_port} http"],
				grants=["a.example to root", "b.example to nobody"]))
	nobody = ("nobody", "nogroup")
	intruder = hx.upstream(["a.example"], "intruder", user=nobody, daemon=d, expect="refused")
	d.wait_log(rf"refused upstream {intruder.pid}-\S+: uid 65534 may not claim a\.example")
	assert tls_failure(certs, port, "a.example") == "TLSV1_UNRECOGNIZED_NAME"
	assert http_get(http_port, "a.example").status == 503
	records = d.wait_access(lambda r: r.get("name") == "a.example", count=2)
	assert all(r["outcome"] == "no-route" and r["upstream"] == "-" for r in records)
	assert "client=" not in read_text(intruder.stderr_path)	# it never got a connection

	# The same user may serve what it is granted, so the refusal above was
	# about the name, not about the user's access to the runtime directory.
	allowed = hx.upstream(["b.example"], "allowed", user=nobody, daemon=d)
	d.wait_log(rf"registered upstream {allowed.pid}-\S+ names=b\.example uid=65534")
	assert https_get(certs, port, "b.example").fields["pid"] == str(allowed.pid)

	# Claiming one granted and one forbidden name refuses the upstream entirely.
	greedy = hx.upstream(["b.example", "a.example"], "greedy", cert_name="b.example",
			     user=nobody, daemon=d, expect="refused")
	for _ in range(5):
		assert https_get(certs, port, "b.example").fields["pid"] == str(allowed.pid)
	assert greedy.proc.poll() is None


def poll_until(check, limit):
	"""Seconds until check() is true (polled every 50 ms), or None after limit."""
	start = time.monotonic()
	ok = wait_for(check, limit, interval=0.05)
	return time.monotonic() - start if ok else None


def test_upstreams_are_discovered_and_withdrawn(hx, certs):
	port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{port} tls"]))
	assert tls_failure(certs, port, "a.example") == "TLSV1_UNRECOGNIZED_NAME"

	up = hx.upstream(["a.example"], "late")	# started after the daemon; no waiting for its log

	def reached():
		try:
			return https_get(certs, port, "a.example", timeout=2).fields["pid"] == str(up.pid)
		except OSError:
			return False

	took = poll_until(reached, DISCOVERY_LIMIT)
	assert took is not None, f"not routed within {DISCOVERY_LIMIT}s:\n{d.tail()}"
	d.wait_log(rf"registered upstream {up.pid}-\S+ names=a\.example uid=0")

	assert up.terminate() == 0
	took = poll_until(lambda: tls_failure(certs, port, "a.example", timeout=2) == "TLSV1_UNRECOGNIZED_NAME",
			  DISCOVERY_LIMIT)
	assert took is not None, f"still routed {DISCOVERY_LIMIT}s after the upstream stopped:\n{d.tail()}"
	d.wait_log(rf"dropped upstream {up.pid}-")


def test_counters_on_sigusr1(hx, certs):
	"""SIGUSR1 logs one line of counters that tells handed-off, refused and
	relayed connections apart; the same line is logged at exit."""
	port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{port} http"]))
	hx.upstream(["a.example"], "site-a", daemon=d)
	for _ in range(3):
		assert http_get(port, "a.example").status == 200
	assert http_get(port, "nobody.example").status == 503
	d.wait_access(lambda r: True, count=4)
	d.proc.send_signal(signal.SIGUSR1)
	d.wait_log(r"stats accepted=4 handoff=3 no-route=1 invalid=0 timeout=0 refused=0 closed=0 "
		   r"relayed=0 failed=0 peeking=0 waiting=0 connecting=0 relaying=0 bytes_relayed=0")
