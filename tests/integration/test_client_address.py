# test_client_address.py - the upstream sees the client's own address and port (the socket is passed, not proxied), IPv4 and IPv6.
import subprocess

from harness import free_port, http_get, https_get


def test_client_address_ipv4_and_ipv6(hx, certs):
	port = free_port(hosts=("127.0.0.1", "::1"))
	http_port = free_port(hosts=("::1",))
	d = hx.daemon(hx.config([f"127.0.0.1:{port} tls", f"[::1]:{port} tls",
				 f"[::1]:{http_port} http"]))
	up = hx.upstream(["a.example"], "site-a", daemon=d)

	source = free_port()
	page = https_get(certs, port, "a.example", source_port=source).fields
	assert page["client"] == f"127.0.0.1:{source}"
	assert page["local"] == f"127.0.0.1:{port}"
	assert page["pid"] == str(up.pid)

	source6 = free_port(hosts=("::1",))
	page = https_get(certs, port, "a.example", host="::1", source_port=source6).fields
	assert page["client"] == f"[::1]:{source6}"
	assert page["local"] == f"[::1]:{port}"

	source6 = free_port(hosts=("::1",))
	page = http_get(http_port, "a.example", host="::1", source_port=source6).fields
	assert page["client"] == f"[::1]:{source6}"
	assert page["proto"] == "http"

	# curl chooses its own source port the same way a browser would.
	curl_port = free_port()
	result = subprocess.run(["curl", "-sS", "--max-time", "10", "--local-port", str(curl_port),
				 "--resolve", f"a.example:{port}:127.0.0.1",
				 "--cacert", str(certs.cert("a.example")), f"https://a.example:{port}/"],
				capture_output=True, text=True, timeout=20)
	assert result.returncode == 0, result.stderr
	assert f"client=127.0.0.1:{curl_port}\n" in result.stdout

	clients = {r["client"] for r in d.wait_access(lambda r: r.get("outcome") == "handoff", count=4)}
	assert f"127.0.0.1:{source}" in clients
	assert f"[::1]:{source6}" in clients
