# test_routing.py - connections reach the right upstream by TLS SNI, HTTP Host, wildcard and default routes, or get no route.
import re
import subprocess

from harness import (connect, free_port, http_get, https_get, read_response, received_subject_cn, request_bytes,
		     tls_failure)


def curl(*args, timeout=20):
	return subprocess.run(["curl", "-sS", "--max-time", "10", *args],
			      capture_output=True, text=True, timeout=timeout)


def s_client(port, *args, timeout=20):
	"""openssl s_client with no input: handshake, print, close. Returns the
	combined output."""
	result = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args],
				stdin=subprocess.DEVNULL, capture_output=True, text=True,
				timeout=timeout)
	return result.stdout + result.stderr


def test_tls_sni_routes_to_two_upstreams(hx, certs):
	port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{port} tls"]))
	up_a = hx.upstream(["a.example"], "site-a", daemon=d)
	up_b = hx.upstream(["b.example"], "site-b", daemon=d)

	for name, up in (("a.example", up_a), ("b.example", up_b)):
		result = curl("--resolve", f"{name}:{port}:127.0.0.1", "--cacert", str(certs.cert(name)),
			      f"https://{name}:{port}/")
		assert result.returncode == 0, result.stderr
		page = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
		assert page["label"] == up.label
		assert page["pid"] == str(up.pid)
		assert page["name"] == name
		assert page["sni"] == name
		assert page["proto"] == "tls"

	for name in ("a.example", "b.example"):
		output = s_client(port, "-servername", name, "-CAfile", str(certs.cert(name)))
		assert received_subject_cn(output) == name, output
		assert "Verify return code: 0 (ok)" in output, output

	handed = d.wait_access(lambda r: r.get("outcome") == "handoff", count=4)
	assert {r["name"] for r in handed} == {"a.example", "b.example"}
	assert all(r["proto"] == "tls" and r["listener"] == f"127.0.0.1:{port}" for r in handed)


def test_http_host_routes_to_the_right_upstream(hx):
	port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{port} http"]))
	up_a = hx.upstream(["a.example"], "site-a", daemon=d)
	up_b = hx.upstream(["b.example"], "site-b", daemon=d)

	result = curl("-H", "Host: a.example", f"http://127.0.0.1:{port}/")
	assert result.returncode == 0, result.stderr
	assert f"label={up_a.label}\n" in result.stdout
	assert "proto=http" in result.stdout

	# A port in Host and upper case do not matter; the name is normalised.
	for host_header, up in (("b.example:8080", up_b), ("A.Example", up_a), ("b.example.", up_b)):
		page = http_get(port, host_header).fields
		assert page["label"] == up.label, host_header
		assert page["proto"] == "http"

	d.wait_access(lambda r: r.get("outcome") == "handoff" and r.get("proto") == "http", count=4)


def test_wildcard_most_specific_and_default_routes(hx, certs):
	port = free_port()
	default_port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{port} tls",
				 f"127.0.0.1:{default_port} tls default b.example"]))
	wild = hx.upstream(["*.apps.example"], "wild", daemon=d)

	page = https_get(certs, port, "x.apps.example", check_hostname=True).fields
	assert page["label"] == wild.label
	assert page["sni"] == "x.apps.example"

	exact = hx.upstream(["y.apps.example"], "exact-y", daemon=d)
	assert https_get(certs, port, "y.apps.example").fields["label"] == exact.label
	assert https_get(certs, port, "x.apps.example").fields["label"] == wild.label
	# "*.apps.example" does not cover "apps.example" itself.
	assert tls_failure(certs, port, "apps.example") == "TLSV1_UNRECOGNIZED_NAME"

	site_b = hx.upstream(["b.example"], "site-b", daemon=d)
	output = s_client(default_port, "-noservername", "-CAfile", str(certs.cert("b.example")))
	assert received_subject_cn(output) == "b.example", output
	no_sni = https_get(certs, default_port, None, sni=False)
	assert no_sni.fields["label"] == site_b.label
	assert no_sni.fields["sni"] == "-"
	unknown = https_get(certs, default_port, "unknown.example", check_hostname=False)
	assert unknown.fields["label"] == site_b.label
	assert unknown.cert_subject == "b.example"
	# The default applies only on its own listener.
	assert tls_failure(certs, port, "unknown.example") == "TLSV1_UNRECOGNIZED_NAME"


def test_no_route(hx, certs):
	tls_port = free_port()
	http_port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{tls_port} tls", f"127.0.0.1:{http_port} http"]))

	output = s_client(tls_port, "-servername", "nobody-serves.example")
	assert re.search(r"unrecognized.name", output) and "alert number 112" in output, output

	result = curl("-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: nobody-serves.example",
		      f"http://127.0.0.1:{http_port}/")
	assert result.returncode == 0 and result.stdout == "503", (result.stdout, result.stderr)
	with connect(http_port) as sock:
		sock.sendall(request_bytes("nobody-serves.example", close=False))
		answer = b""
		while len(answer) < 65536:
			chunk = sock.recv(65536)
			if not chunk:
				break
			answer += chunk
	assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), answer

	records = d.wait_access(lambda r: r.get("outcome") == "no-route", count=3)
	assert {r["proto"] for r in records} == {"tls", "http"}
	assert all(r["name"] == "nobody-serves.example" and r["upstream"] == "-" for r in records)


def test_owned_name_never_falls_back_to_the_default(hx, certs):
	"""a.example is granted but its upstream is away (restarting): its
	clients carry a.example's cookies and credentials, so they are refused
	rather than sent to the default route, which may be another user's
	process. So is a name a wildcard grant covers. A name nobody owns and a
	client without a name still go to the default."""
	tls_port = free_port()
	http_port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{tls_port} tls default b.example",
				 f"127.0.0.1:{http_port} http default b.example"],
				grants=("a.example to self", "b.example to self", "*.apps.example to self")))
	site_a = hx.upstream(["a.example"], "site-a", daemon=d)
	site_b = hx.upstream(["b.example"], "site-b", daemon=d)
	assert https_get(certs, tls_port, "a.example").fields["label"] == site_a.label
	site_a.terminate()
	d.wait_log(rf"dropped upstream {site_a.pid}-", timeout=10)

	assert tls_failure(certs, tls_port, "a.example") == "TLSV1_UNRECOGNIZED_NAME"
	assert http_get(http_port, "a.example").status == 503
	assert tls_failure(certs, tls_port, "x.apps.example") == "TLSV1_UNRECOGNIZED_NAME"
	records = d.wait_access(lambda r: r.get("outcome") == "no-route", count=3)
	assert {r["name"] for r in records} == {"a.example", "x.apps.example"}

	unknown = https_get(certs, tls_port, "unknown.example", check_hostname=False)
	assert unknown.fields["label"] == site_b.label
	assert https_get(certs, tls_port, None, sni=False).fields["label"] == site_b.label
	assert http_get(http_port, "unknown.example").fields["label"] == site_b.label


def raw_http(port, head):
	"""Send one raw request head; returns the response (or None if the
	connection ended without one)."""
	with connect(port) as sock:
		sock.sendall(head)
		with sock.makefile("rb") as stream:
			try:
				return read_response(stream)
			except ConnectionError:
				return None


def test_absolute_form_target_must_match_host(hx):
	"""An absolute-form target names the host as much as Host does: when
	they disagree the daemon answers 400 itself and hands the client to
	nobody; when they agree the client goes to the target's upstream."""
	port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{port} http"]))
	up_a = hx.upstream(["a.example"], "site-a", daemon=d)
	up_b = hx.upstream(["b.example"], "site-b", daemon=d)

	mismatched = (b"GET http://b.example/ HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
		      b"GET ws://b.example/ HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n")
	for head in mismatched:
		response = raw_http(port, head)
		assert response is not None and response.status == 400, head
		# The daemon's own answer, not a page of either upstream.
		assert b"label=" not in response.body, (head, response.body)
	invalid = d.wait_access(lambda r: r.get("outcome") == "invalid", count=2)
	assert len(invalid) == 2
	d.wait_log(r"invalid request head from .*: Host does not match the request target", count=2)

	# The example upstream serves origin-form paths only, so it answers
	# the absolute-form request itself with its 404: it did get the client.
	matching = raw_http(port, b"GET http://b.example/ HTTP/1.1\r\nHost: b.example\r\nConnection: close\r\n\r\n")
	assert matching is not None and matching.status == 404, matching and matching.status
	page = http_get(port, "a.example").fields
	assert page["label"] == up_a.label
	handed = d.wait_access(lambda r: r.get("outcome") == "handoff", count=2)
	# Only the two agreeing requests were handed to an upstream, each to its name's.
	assert sorted((r["name"], r["upstream"].split("-")[0]) for r in handed) == \
		[("a.example", str(up_a.pid)), ("b.example", str(up_b.pid))], handed
