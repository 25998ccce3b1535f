# test_performance.py - the daemon's CPU time does not grow with the bytes a handed-off connection carries.
import os

from harness import connect, free_port, https_get, request_bytes, tls_context

DOWNLOAD_BYTES = 200 * 1024 * 1024
CPU_LIMIT_SECONDS = 0.05
PERIOD = 256			# the example upstream's pattern: byte i is (i * 7 + 13) & 0xff
READ_CHUNK = 1 << 20


def cpu_seconds(pid):
	"""utime + stime of a process, from /proc/PID/stat."""
	with open(f"/proc/{pid}/stat") as f:
		fields = f.read().rsplit(")", 1)[1].split()
	# fields[0] is the state (field 3), so utime (14) and stime (15) are 11 and 12.
	return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def expected_pattern(length):
	return bytes((i * 7 + 13) & 0xFF for i in range(length))


def verify_stream(read, total):
	"""Read total body bytes with read(n) and compare each chunk with the
	pattern at its offset; returns the count of bytes that matched."""
	reference = expected_pattern(READ_CHUNK + PERIOD)
	offset = 0
	while offset < total:
		chunk = read(min(READ_CHUNK, total - offset))
		if not chunk:
			break
		start = offset % PERIOD
		if chunk != reference[start:start + len(chunk)]:
			bad = next(i for i, (a, b) in enumerate(zip(chunk, reference[start:])) if a != b)
			raise AssertionError(f"byte {offset + bad} differs from the pattern")
		offset += len(chunk)
	return offset


def download(stream, total):
	"""Read the response head from stream, then verify the body."""
	head_only = read_response_head(stream)
	assert head_only["status"] == 200, head_only
	assert int(head_only["content-length"]) == total
	return verify_stream(stream.read, total)


def read_response_head(stream):
	status = stream.readline(65536).decode("latin-1").split(" ", 2)
	head = {"status": int(status[1])}
	for _ in range(100):
		line = stream.readline(65536)
		if line in (b"\r\n", b"\n", b""):
			break
		key, _, value = line.decode("latin-1").partition(":")
		head[key.strip().lower()] = value.strip()
	return head


def test_daemon_cpu_does_not_grow_with_bytes(hx, certs):
	tls_port = free_port()
	http_port = free_port()
	d = hx.daemon(hx.config([f"127.0.0.1:{tls_port} tls", f"127.0.0.1:{http_port} http"]))
	up = hx.upstream(["a.example"], "site-a", daemon=d)
	assert https_get(certs, tls_port, "a.example").fields["label"] == up.label	# warm-up

	before = cpu_seconds(d.pid)
	upstream_before = cpu_seconds(up.pid)
	ctx = tls_context(certs)
	with connect(tls_port, timeout=60) as sock:
		with ctx.wrap_socket(sock, server_hostname="a.example") as tls:
			tls.sendall(request_bytes("a.example", f"/bytes/{DOWNLOAD_BYTES}"))
			with tls.makefile("rb") as stream:
				assert download(stream, DOWNLOAD_BYTES) == DOWNLOAD_BYTES
	with connect(http_port, timeout=60) as sock:
		sock.sendall(request_bytes("a.example", f"/bytes/{DOWNLOAD_BYTES}"))
		with sock.makefile("rb") as stream:
			assert download(stream, DOWNLOAD_BYTES) == DOWNLOAD_BYTES
	used = cpu_seconds(d.pid) - before

	assert used < CPU_LIMIT_SECONDS, f"daemon used {used:.3f} s of CPU for 400 MiB"
	# The bytes were real work for someone: the upstream encrypted them.
	assert cpu_seconds(up.pid) - upstream_before > used
	d.wait_access(lambda r: r.get("outcome") == "handoff", count=3)
