# conftest.py - pytest fixtures for the integration tests: session certificates, per-test harness with checked teardown.
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from harness import HANDOFF, UPSTREAM, Harness
from preload_helpers import HandoffRun

CERT_NAMES = ("a.example", "b.example", "*.apps.example", "y.apps.example")
TEST_NUMBERS = itertools.count(1)


class Certs:
	"""Self-signed P-256 certificates, one per test name, plus a bundle of
	all of them for clients to verify against."""

	def __init__(self, directory):
		self.dir = Path(directory)
		self.bundle = self.dir / "bundle.pem"
		pems = []
		for name in CERT_NAMES:
			cert, key = self.pair(name)
			subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
					"-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
					"-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
					"-days", "2", "-keyout", str(key), "-out", str(cert)],
				       check=True, capture_output=True, timeout=60)
			# Readable by the unprivileged upstream of the authorisation test.
			os.chmod(key, 0o644)
			os.chmod(cert, 0o644)
			pems.append(cert.read_text())
		self.bundle.write_text("".join(pems))

	def pair(self, name):
		stem = name.replace("*", "wildcard")
		return self.dir / f"{stem}.crt", self.dir / f"{stem}.key"

	def cert(self, name):
		return self.pair(name)[0]


@pytest.fixture(scope="session")
def workroot():
	"""A directory under /tmp that user nobody can traverse (pytest's own
	tmp_path lives under a 0700 directory)."""
	missing = [str(p) for p in (HANDOFF, UPSTREAM) if not os.access(p, os.X_OK)]
	if missing:
		pytest.fail("missing binaries (run 'make SANITIZE=1'): " + ", ".join(missing))
	root = Path(tempfile.mkdtemp(prefix="handoff-it-"))
	os.chmod(root, 0o755)
	yield root
	if os.environ.get("HANDOFF_KEEP_TEST_DIRS") != "1":
		shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def certs(workroot):
	directory = workroot / "certs"
	directory.mkdir(mode=0o755)
	return Certs(directory)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
	outcome = yield
	report = outcome.get_result()
	setattr(item, "rep_" + report.when, report)


@pytest.fixture
def hx(request, workroot, certs):
	"""The per-test harness. At teardown every upstream and daemon is
	stopped by PID; the daemon must exit 0 on SIGTERM with no sanitizer
	report. On failure the daemon's log is printed."""
	# Short names: socket paths under it must fit in sun_path (108 bytes).
	workdir = workroot / f"t{next(TEST_NUMBERS):03d}"
	workdir.mkdir(mode=0o755)
	os.chmod(workdir, 0o755)
	(workdir / "test-name").write_text(request.node.nodeid + "\n")
	harness = Harness(workdir, certs)
	yield harness
	failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
	if failed:
		for d in harness.daemons:
			print(f"--- daemon log ({d.stderr_path}) ---\n{d.tail(100)}")
	problems = harness.close()
	if problems:
		pytest.fail("teardown found problems:\n" + "\n\n".join(problems), pytrace=False)


@pytest.fixture
def runs(hx):
	"""Start `handoff run` processes (for a.example unless names are given);
	all are stopped (SIGTERM, passed on to the server) and checked at
	teardown, before the daemons stop."""
	started = []

	def start(label, program, names=("a.example",), ports=(), **options):
		run = HandoffRun(hx, label, names, ports, program, **options)
		started.append(run)
		return run

	yield start
	problems = []
	for run in started:
		problems += run.stop()
	if problems:
		pytest.fail("\n\n".join(problems), pytrace=False)
