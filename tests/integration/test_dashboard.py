# test_dashboard.py - the admin dashboard in a real headless Chromium, driven over the DevTools protocol.
import base64
import json
import os
import signal
import subprocess
import time
import urllib.request

import websocket

from admin_helpers import listener, wait_state
from harness import STOP_TIMEOUT, free_port, http_get, https_get, read_text, wait_for

CHROMIUM = "/usr/bin/chromium"
BROWSER_START_TIMEOUT = 60.0	# a cold Chromium on a loaded 2-core machine
PAGE_TIMEOUT = 30.0


class DevTools:
	"""The smallest DevTools protocol client: one page, commands by id."""

	def __init__(self, ws_url):
		self.ws = websocket.create_connection(ws_url, timeout=PAGE_TIMEOUT, suppress_origin=True)
		self.next_id = 0

	def call(self, method, **params):
		self.next_id += 1
		self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
		deadline = time.monotonic() + PAGE_TIMEOUT
		while time.monotonic() < deadline:
			message = json.loads(self.ws.recv())
			if message.get("id") == self.next_id:
				if "error" in message:
					raise AssertionError(f"{method}: {message['error']}")
				return message["result"]
		raise AssertionError(f"{method}: no answer within {PAGE_TIMEOUT}s")

	def evaluate(self, expression):
		result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
		if "exceptionDetails" in result:
			raise AssertionError(f"{expression}: {result['exceptionDetails']}")
		return result["result"].get("value")

	def wait(self, expression, timeout=PAGE_TIMEOUT):
		value = wait_for(lambda: self.evaluate(expression), timeout, interval=0.25)
		assert value, f"page never satisfied {expression!r} within {timeout}s"
		return value

	def close(self):
		self.ws.close()


class Chromium:
	"""A headless Chromium with its own profile under the test's directory,
	stopped by PID."""

	def __init__(self, workdir):
		self.profile = workdir / "chromium-profile"
		self.profile.mkdir()
		self.log_path = workdir / "chromium.log"
		argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--disable-dev-shm-usage", f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
			"--window-size=1400,1500", "about:blank"]
		with open(self.log_path, "wb") as log:
			self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
		port_file = self.profile / "DevToolsActivePort"
		ready = wait_for(lambda: port_file.exists() and port_file.read_text().count("\n") >= 1
				 or self.proc.poll() is not None, BROWSER_START_TIMEOUT, interval=0.2)
		if not ready or self.proc.poll() is not None:
			self.stop()
			raise AssertionError(f"chromium did not start within {BROWSER_START_TIMEOUT}s:\n"
					     f"{read_text(self.log_path)[-3000:]}")
		self.port = int(port_file.read_text().splitlines()[0])

	def dashboard(self, admin):
		"""A page showing the dashboard of the admin endpoint at admin, loaded."""
		page = self.page()
		page.call("Page.enable")
		page.call("Page.navigate", url=f"http://{admin}/")
		page.wait("document.readyState === 'complete'")
		return page

	def page(self):
		with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=PAGE_TIMEOUT) as r:
			targets = json.load(r)
		page = next(t for t in targets if t["type"] == "page")
		return DevTools(page["webSocketDebuggerUrl"])

	def stop(self):
		if self.proc.poll() is None:
			self.proc.terminate()
			try:
				self.proc.wait(STOP_TIMEOUT)
			except subprocess.TimeoutExpired:
				self.proc.kill()
				self.proc.wait(STOP_TIMEOUT)


def test_dashboard_shows_routes_and_counts_live_traffic(hx, certs):
	tls_port, http_port, admin_port, dead_port = free_port(), free_port(), free_port(), free_port()
	admin = f"127.0.0.1:{admin_port}"
	text = hx.config([f"127.0.0.1:{tls_port} tls", f"127.0.0.1:{http_port} http"],
			 grants=["a.example to root", "b.example to root"])
	text += f"route api.example to tcp:127.0.0.1:{dead_port} fail-after 1 retry-after 60s\n"
	text += f"admin {admin}\n"
	d = hx.daemon(text)
	hx.upstream(["a.example"], "site-a", daemon=d)
	hx.upstream(["b.example"], "intruder", user=("nobody", "nogroup"), daemon=d, expect="refused")

	browser = Chromium(hx.dir)
	try:
		page = browser.dashboard(admin)
		# The routes the configuration and the upstream made, with their health.
		page.wait("document.querySelector('#routes tbody').textContent.includes('api.example')")
		routes = page.wait("document.querySelector('#routes tbody').textContent.includes('a.example')"
				   " && document.querySelector('#routes tbody').textContent")
		assert "tcp:127.0.0.1:%d" % dead_port in routes
		refusals = page.wait("document.querySelector('#refusals tbody').textContent.includes('may not claim')"
				     " && document.querySelector('#refusals tbody').textContent")
		assert "b.example" in refusals
		assert page.evaluate("document.getElementById('live-dot').className") == "dot ok"
		# Nothing came from elsewhere: every resource the page loaded is the admin endpoint's.
		origins = page.evaluate("[location.href].concat(performance.getEntriesByType('resource')"
					".map(e => e.name)).map(u => new URL(u).host)")
		assert set(origins) == {admin}, origins

		accepted_before = page.evaluate("document.getElementById('c-accepted').textContent")
		assert accepted_before == "accepted 0 in all"
		for _ in range(6):
			https_get(certs, tls_port, "a.example")
		http_get(http_port, "api.example")
		wait_state(admin, lambda s: listener(s, f"127.0.0.1:{tls_port}")["outcomes"]["handoff"] == 6)
		page.wait("document.getElementById('c-accepted').textContent === 'accepted 7 in all'")
		page.wait("document.querySelector('#connections tbody').textContent.includes('a.example')")
		# The per-target delivered counter of a.example moved to 6.
		page.wait("[...document.querySelectorAll('#routes tbody tr')].some(tr => "
			  "tr.textContent.includes('a.example') && tr.children[7].textContent === '6')")
		page.wait("document.querySelector('#connections tbody').textContent.includes('failed')")
		time.sleep(1.5)		# one more poll, so the rate chart has a bar to show
		shot = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
		path = hx.dir / "dashboard.png"
		path.write_bytes(base64.b64decode(shot["data"]))
		print(f"dashboard screenshot: {path}")
		assert path.stat().st_size > 10000
		page.close()
	finally:
		browser.stop()


def test_dashboard_shows_the_accepting_threads(hx, certs):
	"""workers 2: the page lists both threads, running, with what each
	handed off; after a reload to workers 1 they show stopped."""
	port, admin_port = free_port(), free_port()
	admin = f"127.0.0.1:{admin_port}"
	config = hx.config([f"127.0.0.1:{port} tls defer-accept 5s"], workers=2, admin=admin)
	d = hx.daemon(config)
	hx.upstream(["a.example"], "site-a", daemon=d)
	browser = Chromium(hx.dir)
	try:
		page = browser.dashboard(admin)
		page.wait("!document.getElementById('workers-section').hidden"
			  " && document.querySelectorAll('#workers tbody tr').length === 2")
		assert "workers 2" in page.evaluate("document.getElementById('meta').textContent")
		assert page.evaluate("document.getElementById('workers-count').textContent") == "2 running"
		for _ in range(5):
			assert https_get(certs, port, "a.example").status == 200
		# The handed-off column adds up to the five connections.
		page.wait("[...document.querySelectorAll('#workers tbody tr')]"
			  ".reduce((a, tr) => a + Number(tr.children[2].textContent), 0) === 5")
		d.config_path.write_text(config.replace("workers 2", "workers 1"))
		os.kill(d.pid, signal.SIGHUP)
		page.wait("document.getElementById('workers-count').textContent === '0 running'")
		page.close()
	finally:
		browser.stop()
