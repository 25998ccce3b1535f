# test_robustness.py - garbage input, descriptor accounting under a burst, and upstreams too busy to take connections.
import os
import signal
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import connect, free_port, http_get, https_get, wait_closed, wait_for

GARBAGE = [
	b"\x00\x01\x02garbage that is no TLS record at all\r\n\r\n",
	b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	# A handshake record whose ClientHello claims more bytes than the record holds.
	b"\x16\x03\x01\x00\x08\x01\x00\xff\xff\x03\x03\x00\x00",
	# A record that is not a handshake (application data) first.
	b"\x17\x03\x03\x00\x05hello",
]

# How a TLS client sees a refusal that is not a reset.
CLEAN_REFUSALS = ("TLSV1_UNRECOGNIZED_NAME", "TLSV1_ALERT_INTERNAL_ERROR", "UNEXPECTED_EOF_WHILE_READING",
		  "SSLEOFError", "SSLZeroReturnError")


def send_garbage(port, data):
	"""Send data and return the seconds until the daemon closed the connection."""
	with connect(port, timeout=5) as sock:
		sock.sendall(data)
		return wait_closed(sock, 5)


def test_garbage_is_closed_as_invalid(hx, certs):
	tls_port = free_port()
	http_port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{tls_port} tls", f"127.0.0.1:{http_port} http"]))
	up = hx.upstream(["a.example"], "site-a", daemon=d)

	for data in GARBAGE:
		assert send_garbage(tls_port, data) is not None, data
	assert send_garbage(http_port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64)) is not None
	assert send_garbage(http_port, b"GET / HTTP/1.1\r\nHost: a.ex ample\r\n\r\n") is not None

	records = d.wait_access(lambda r: r.get("outcome") == "invalid", count=len(GARBAGE) + 2)
	assert sum(r["proto"] == "tls" for r in records) == len(GARBAGE)
	assert all(r["upstream"] == "-" for r in records)
	assert "client=" not in open(up.stderr_path).read()	# nothing reached the upstream

	assert https_get(certs, tls_port, "a.example").fields["label"] == up.label
	assert http_get(http_port, "a.example").fields["label"] == up.label
	assert d.proc.poll() is None


def open_descriptors(pid):
	return len(os.listdir(f"/proc/{pid}/fd"))


def test_no_descriptor_leak_after_a_burst(hx, certs):
	tls_port = free_port()
	http_port = free_port()
	access_log = hx.dir / "access.log"
	d = hx.daemon(hx.config([f"127.0.0.1:{tls_port} tls", f"127.0.0.1:{http_port} http"],
				access_log=str(access_log)))
	hx.upstream(["a.example"], "site-a", daemon=d)
	hx.upstream(["b.example"], "site-b", daemon=d)

	# Warm up, so lazily opened descriptors are in the baseline.
	https_get(certs, tls_port, "a.example")
	http_get(http_port, "b.example")
	send_garbage(tls_port, GARBAGE[0])
	logged_before = len(d.wait_access(lambda r: True, count=3))
	baseline = open_descriptors(d.pid)

	def one_request(i):
		name = "a.example" if i % 2 else "b.example"
		if i % 3 == 0:
			return http_get(http_port, name).fields["name"] == name
		return https_get(certs, tls_port, name).fields["name"] == name

	with ThreadPoolExecutor(max_workers=8) as pool:
		results = list(pool.map(one_request, range(300)))
	assert all(results)
	for i in range(50):
		sock = connect(tls_port if i % 2 else http_port)
		sock.close()
	for i in range(20):
		send_garbage(tls_port, GARBAGE[i % len(GARBAGE)])

	records = d.wait_access(lambda r: True, count=logged_before + 370, timeout=30)
	burst = records[logged_before:]
	outcomes = [r["outcome"] for r in burst]
	assert outcomes.count("handoff") == 300
	assert outcomes.count("invalid") == 20
	assert outcomes.count("closed") == 50

	settled = wait_for(lambda: open_descriptors(d.pid) == baseline, 5)
	assert settled, f"daemon holds {open_descriptors(d.pid)} descriptors, {baseline} before the burst: " \
		f"{sorted(os.readlink(f'/proc/{d.pid}/fd/{fd}') for fd in os.listdir(f'/proc/{d.pid}/fd'))}"


def concurrent_requests(certs, port, count, timeout):
	"""Start count TLS requests at once; returns (list of connect times,
	futures of (ok, label or exception name, seconds))."""
	connected = []
	lock = threading.Lock()

	def on_connect():
		with lock:
			connected.append(time.monotonic())

	def run(_):
		start = time.monotonic()
		try:
			page = https_get(certs, port, "a.example", timeout=timeout, on_connect=on_connect)
			return True, page.fields["label"], time.monotonic() - start
		except ssl.SSLError as e:	# an alert, or EOF in the handshake
			return False, e.reason or type(e).__name__, time.monotonic() - start
		except OSError as e:
			return False, type(e).__name__, time.monotonic() - start

	pool = ThreadPoolExecutor(max_workers=count)
	futures = [pool.submit(run, i) for i in range(count)]
	pool.shutdown(wait=False)
	return connected, futures


@pytest.mark.parametrize("workers", [1, 2])
def test_busy_upstream_connections_wait(hx, certs, workers):
	"""A stopped upstream's socket queue fills: the rest wait in the event
	loop's queue (also those accepting threads found it full for) and are
	all handed off once it runs again."""
	port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{port} tls"], handoff_timeout="5s", workers=workers))
	up = hx.upstream(["a.example"], "site-a", daemon=d)
	https_get(certs, port, "a.example")

	up.signal(signal.SIGSTOP)
	try:
		connected, futures = concurrent_requests(certs, port, 30, timeout=20)
		assert wait_for(lambda: len(connected) == 30, 10)
		time.sleep(1.5)
		assert not any(f.done() for f in futures), [f.result() for f in futures if f.done()]
	finally:
		up.signal(signal.SIGCONT)
	results = [f.result(timeout=30) for f in futures]
	failures = [r for r in results if not r[0]]
	assert not failures, f"{len(failures)} of 30 failed: {failures}"
	assert all(label == up.label for _, label, _ in results)
	d.wait_access(lambda r: r.get("outcome") == "handoff", count=31)
	assert not [r for r in d.access_records() if r["outcome"] == "refused"]


@pytest.mark.parametrize("workers", [1, 2])
def test_busy_upstream_past_handoff_timeout_refuses(hx, certs, workers):
	port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{port} tls"], handoff_timeout="1s", workers=workers))
	up = hx.upstream(["a.example"], "site-a", daemon=d)
	https_get(certs, port, "a.example")

	up.signal(signal.SIGSTOP)
	try:
		connected, futures = concurrent_requests(certs, port, 30, timeout=20)
		assert wait_for(lambda: len(connected) == 30, 10)
		# Those that did not fit in the upstream's socket queue are refused
		# after the 1 s handoff timeout while the upstream is still stopped.
		d.wait_access(lambda r: r.get("outcome") == "refused", count=10, timeout=5)
		time.sleep(0.5)
		refused = [r for r in d.access_records() if r["outcome"] == "refused"]
		finished = [f.result() for f in futures if f.done()]
	finally:
		up.signal(signal.SIGCONT)
	assert len(finished) == len(refused), (finished, refused)
	# Closed cleanly (an alert or a FIN, since the hello was read first), not reset.
	assert all(not ok and error in CLEAN_REFUSALS and 0.8 <= took <= 4.0
		   for ok, error, took in finished), finished
	results = [f.result(timeout=30) for f in futures]
	succeeded = [r for r in results if r[0]]
	assert len(succeeded) + len(refused) == 30, results
	assert len(succeeded) >= 1
	assert all(r["name"] == "a.example" for r in refused)
	d.wait_access(lambda r: r.get("outcome") == "handoff", count=1 + len(succeeded))
	# The daemon is fine afterwards.
	assert https_get(certs, port, "a.example").fields["label"] == up.label
