# test_containers.py - upstreams in containers with no network but loopback, reached only through the bind-mounted runtime directory: podman, and the same isolation made by hand with unshare.
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from containers_helpers import (HTTP_ECHO_GLIBC, HTTP_ECHO_MUSL, KIT, MAPPED_UID, MUSL, Podman,
				Unshare, build_root, interfaces_of, wait_registered)
from harness import REQUEST_TIMEOUT, UPSTREAM, free_port, http_get, https_get, read_text, wait_for

KIT_HANDOFF = "/usr/local/bin/handoff"
DOWNLOAD_BYTES = 100 * 1024 * 1024
NEEDED = [KIT / "usr/local/bin/handoff", KIT / "usr/local/lib/handoff/libhandoff-preload.so",
	  KIT / "usr/local/lib/handoff/libhandoff-preload-musl.so", HTTP_ECHO_MUSL, HTTP_ECHO_GLIBC,
	  MUSL / "handoff-run"]


@pytest.fixture(scope="module")
def image_root():
	missing = [str(p) for p in NEEDED if not p.exists()]
	if missing:
		pytest.fail("missing container builds (run 'make SANITIZE=1 container-kit "
			    "build/asan/http-echo'): " + ", ".join(missing))
	workdir = Path(tempfile.mkdtemp(prefix="handoff-ct-"))
	os.chmod(workdir, 0o755)
	yield build_root(workdir / "root", ())
	shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def podman_image(image_root):
	"""The image imported once, or the reason podman cannot run here."""
	workdir = Path(tempfile.mkdtemp(prefix="handoff-podman-"))
	reason = Podman.probe(workdir)
	podman = None
	if reason is None:
		try:
			podman = Podman(workdir, image_root)
		except RuntimeError as e:
			reason = str(e)
	yield podman, reason
	if podman is not None:
		podman.close()
	shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(params=["podman", "unshare"])
def isolation(request, hx, image_root, podman_image):
	if request.param == "podman":
		podman, reason = podman_image
		if podman is None:
			pytest.skip(f"podman cannot run a container here: {reason}")
		podman.names = []
		yield podman
		podman.close_containers()
	else:
		if os.geteuid() != 0:
			pytest.skip("making network, mount and PID namespaces by hand needs root")
		by_hand = Unshare(hx.dir, image_root)
		yield by_hand
		by_hand.close()


def echo_argv(hx, name, label, program=HTTP_ECHO_MUSL, port=9000, wait=None):
	"""`handoff run` from the image's kit, starting a test server on port."""
	argv = [KIT_HANDOFF, "run", "--runtime-dir", str(hx.runtime_dir), "--name", name,
		"--port", f"{port}/http"]
	if wait is not None:
		argv += ["--wait", str(wait)]
	return argv + ["--", str(program), str(port), label]


def upstream_argv(hx, name, label):
	cert, key = hx.certs.pair(name)
	return [str(UPSTREAM), "--name", name, "--cert", str(cert), "--key", str(key),
		"--runtime-dir", str(hx.runtime_dir), "--label", label]


NO_LEAK_CHECK = {"ASAN_OPTIONS": "detect_leaks=0"}


def expected_sha256(count):
	"""The example servers' /bytes/N: byte i is (i * 7 + 13) & 0xff."""
	block = bytes((i * 7 + 13) & 0xff for i in range(1 << 20))
	digest = hashlib.sha256()
	for _ in range(count >> 20):
		digest.update(block)
	digest.update(block[:count & ((1 << 20) - 1)])
	return digest.hexdigest()


def curl_sha256(argv):
	"""Run curl writing the body to stdout; its sha256 and byte count."""
	digest = hashlib.sha256()
	size = 0
	with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
		while chunk := proc.stdout.read(1 << 20):
			digest.update(chunk)
			size += len(chunk)
		errors = proc.stderr.read().decode(errors="replace")
		status = proc.wait(120)
	assert status == 0, f"curl exited {status}: {errors}"
	return digest.hexdigest(), size


def test_https_upstream_in_container_without_network(hx, certs, isolation):
	"""The example HTTPS upstream in a container whose only interface is
	loopback serves the host's port with its own certificate, sees the
	client's own address, and sends 100 MiB intact."""
	port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{port} tls"]))
	isolation.start("https-a", upstream_argv(hx, "a.example", "in-container"),
			mounts=[hx.runtime_dir], read_only=[certs.dir], env=NO_LEAK_CHECK)
	wait_registered(d, "a.example")
	assert interfaces_of(isolation.pid("https-a")) == ["lo"]

	source = free_port()
	response = https_get(certs, port, "a.example", source_port=source)
	assert response.cert_subject == "a.example"
	assert response.fields["label"] == "in-container"
	assert response.fields["client"] == f"127.0.0.1:{source}"

	digest, size = curl_sha256(["curl", "-sS", "--max-time", "120",
				    "--resolve", f"a.example:{port}:127.0.0.1",
				    "--cacert", str(certs.cert("a.example")),
				    f"https://a.example:{port}/bytes/{DOWNLOAD_BYTES}"])
	assert size == DOWNLOAD_BYTES
	assert digest == expected_sha256(DOWNLOAD_BYTES)
	isolation.stop("https-a")


def test_musl_and_glibc_servers_under_handoff_run(hx, isolation):
	"""In one image, `handoff run` gives a musl-linked server the musl build
	of the preload library and a glibc-linked one the glibc build; both
	receive the plain-HTTP listener's connections (--port N/http) with the
	client's own address, in the response and in the server's log."""
	http_port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{http_port} http"]))
	isolation.start("echo-musl", echo_argv(hx, "m.example", "musl-echo", HTTP_ECHO_MUSL),
			mounts=[hx.runtime_dir])
	isolation.start("echo-glibc", echo_argv(hx, "g.example", "glibc-echo", HTTP_ECHO_GLIBC),
			mounts=[hx.runtime_dir])
	wait_registered(d, "m.example")
	wait_registered(d, "g.example")
	for container, name, label in (("echo-musl", "m.example", "musl-echo"),
				       ("echo-glibc", "g.example", "glibc-echo")):
		assert interfaces_of(isolation.pid(container)) == ["lo"]
		source = free_port()
		page = http_get(http_port, name, source_port=source).fields
		assert page["label"] == label
		assert page["client"] == f"127.0.0.1:{source}"
		assert wait_for(lambda: f"{label} client=127.0.0.1:{source}" in isolation.logs(container),
				REQUEST_TIMEOUT), isolation.logs(container)
		isolation.stop(container)


def test_container_stop_and_start_is_rediscovered(hx, isolation):
	"""A container stopped and started again while the daemon runs: its new
	registration is taken within a second of its files appearing, and
	requests reach it again."""
	http_port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{http_port} http"]))
	isolation.start("echo", echo_argv(hx, "r.example", "first"), mounts=[hx.runtime_dir])
	first = wait_registered(d, "r.example")[0]
	assert http_get(http_port, "r.example").fields["label"] == "first"

	isolation.stop("echo")
	d.wait_log(rf"dropped upstream {first} ", timeout=REQUEST_TIMEOUT)
	assert http_get(http_port, "r.example").status == 503
	isolation.restart("echo")
	second = wait_registered(d, "r.example", count=2)[1]
	assert second != first

	# The daemon's own reaction, from the file times it leaves: the
	# registration's names file written, then the daemon's answer.
	upstreams = hx.runtime_dir / "upstreams"
	names_written = (upstreams / second / f"{second}.names").stat().st_mtime
	# The daemon logs the registration, then writes the status file.
	assert wait_for(lambda: (upstreams / f"{second}.status").exists(), 5), "no status file"
	answered = (upstreams / f"{second}.status").stat().st_mtime
	assert read_text(upstreams / f"{second}.status").startswith("registered")
	assert answered - names_written < 1.0
	assert http_get(http_port, "r.example").fields["label"] == "first"
	isolation.stop("echo")


def test_two_containers_for_one_name_fail_over(hx, isolation):
	"""Two containers serve one name; one is killed (SIGKILL to all its
	processes) and every request still succeeds, from the other."""
	http_port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{http_port} http"]))
	isolation.start("one", echo_argv(hx, "f.example", "one"), mounts=[hx.runtime_dir])
	isolation.start("two", echo_argv(hx, "f.example", "two"), mounts=[hx.runtime_dir])
	wait_registered(d, "f.example", count=2)

	labels = [http_get(http_port, "f.example").fields["label"] for _ in range(6)]
	assert set(labels) == {"one", "two"}
	isolation.kill("one")
	after = []
	for _ in range(20):
		response = http_get(http_port, "f.example")
		assert response.status == 200
		after.append(response.fields["label"])
	assert set(after) == {"two"}
	isolation.stop("two")


def test_user_namespace_owner_is_the_mapped_uid(hx, isolation):
	"""With a user namespace the registration's files belong to the uid the
	container's root is mapped to: the daemon refuses a name not granted to
	that uid, naming it, and `handoff run` inside says so; a grant to the
	mapped uid lets it serve."""
	http_port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{http_port} http"],
				grants=("* to self", f"granted.example to {MAPPED_UID}")))
	isolation.start("refused", echo_argv(hx, "refused.example", "refused", wait=2),
			mounts=[hx.runtime_dir], user_namespace=True)
	d.wait_log(rf"refused upstream \S+: uid {MAPPED_UID} may not claim refused\.example",
		   timeout=REQUEST_TIMEOUT * 2)
	assert wait_for(lambda: f"uid {MAPPED_UID} may not claim refused.example"
			in isolation.logs("refused"), REQUEST_TIMEOUT), isolation.logs("refused")

	isolation.start("granted", echo_argv(hx, "granted.example", "granted"),
			mounts=[hx.runtime_dir], user_namespace=True)
	wait_for(lambda: f"names=granted.example uid={MAPPED_UID} " in d.log(), REQUEST_TIMEOUT * 2)
	assert f"names=granted.example uid={MAPPED_UID} " in d.log(), d.tail()
	assert http_get(http_port, "granted.example").fields["label"] == "granted"
	isolation.stop("refused")
	isolation.stop("granted")


@pytest.mark.parametrize("program, needs, other", [
	(HTTP_ECHO_MUSL, "libhandoff-preload-musl.so", "libhandoff-preload.so"),
	(HTTP_ECHO_GLIBC, "libhandoff-preload.so", "libhandoff-preload-musl.so"),
])
def test_handoff_run_names_the_preload_build_a_program_needs(hx, program, needs, other):
	"""With only the other C library's build installed, `handoff run` stops
	before starting the program and names the build it needs; with the
	right one it starts the program."""
	if Path("/usr/local/lib/handoff", needs).exists():
		pytest.skip(f"/usr/local/lib/handoff/{needs} is installed, so it would be found")
	hx.daemon(hx.config([f"127.0.0.1:{free_port()} http"]))
	bindir = hx.dir / "kit"
	bindir.mkdir()
	shutil.copy2(MUSL / "handoff-run", bindir / "handoff-run")
	shutil.copy2(KIT / "usr/local/lib/handoff" / other, bindir / other)
	env = {k: v for k, v in os.environ.items() if k not in ("HANDOFF_PRELOAD", "LD_PRELOAD")}
	argv = [str(bindir / "handoff-run"), "--runtime-dir", str(hx.runtime_dir), "--name",
		"p.example", "--port", "9000/http", "--", str(program), "9000", "x"]
	result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
	assert result.returncode == 1
	libc = "musl" if needs.endswith("musl.so") else "glibc"
	assert f"needs the {libc} build of the preload library, {needs}" in result.stderr
	assert "dynamic linker is /lib" in result.stderr

	shutil.copy2(KIT / "usr/local/lib/handoff" / needs, bindir / needs)
	with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as run:
		try:
			assert wait_for(lambda: any("names=p.example" in read_text(d.stderr_path)
						    for d in hx.daemons), REQUEST_TIMEOUT)
		finally:
			run.terminate()
			run.wait(REQUEST_TIMEOUT)
