# admin_helpers.py - talk to the daemon's admin endpoint (TCP or Unix socket) from the integration tests.
import http.client
import json
import socket

from harness import REQUEST_TIMEOUT, wait_for


class UnixHTTPConnection(http.client.HTTPConnection):
	"""http.client over a Unix stream socket (admin unix:PATH)."""

	def __init__(self, path, timeout=REQUEST_TIMEOUT):
		super().__init__("localhost", timeout=timeout)
		self.unix_path = path

	def connect(self):
		self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
		self.sock.settimeout(self.timeout)
		self.sock.connect(self.unix_path)


def admin_get(address, path, method="GET", headers=None):
	"""(status, content type, body bytes) of one request to the admin
	endpoint at address ("127.0.0.1:PORT" or "unix:/path")."""
	if address.startswith("unix:"):
		conn = UnixHTTPConnection(address[5:])
	else:
		host, port = address.rsplit(":", 1)
		conn = http.client.HTTPConnection(host, int(port), timeout=REQUEST_TIMEOUT)
	try:
		conn.request(method, path, headers=headers or {})
		response = conn.getresponse()
		return response.status, response.getheader("Content-Type"), response.read()
	finally:
		conn.close()


def admin_state(address):
	status, ctype, body = admin_get(address, "/api")
	assert status == 200, (status, body[:300])
	assert ctype == "application/json", ctype
	return json.loads(body)


def wait_state(address, predicate, timeout=10.0):
	"""Poll /api until predicate(state) is true; returns that state, or
	fails with the last one seen."""
	last = {}

	def check():
		last["state"] = admin_state(address)
		return predicate(last["state"])

	if not wait_for(check, timeout, interval=0.2):
		raise AssertionError(f"admin state never matched within {timeout}s; last:\n"
				     + json.dumps(last.get("state"), indent=1)[:4000])
	return last["state"]


def listener(state, address):
	return next(l for l in state["listeners"] if l["address"] == address)


def route(state, name):
	return next((r for r in state["routes"] if r["name"] == name), None)
