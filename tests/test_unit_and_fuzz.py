# test_unit_and_fuzz.py - runs every cmocka unit test binary of the sanitizer build and each libFuzzer target for a bounded time.
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UNIT_DIR = REPO / "build" / "asan"
FUZZ_DIR = REPO / "build" / "fuzz"
CORPUS_DIR = REPO / "tests" / "fuzz" / "corpus"
# The parsers that must have a fuzzer; any other fuzz_* found is run as well.
REQUIRED_FUZZERS = ("fuzz_http_host", "fuzz_tls_hello")
FUZZ_SECONDS = int(os.environ.get("FUZZ_SECONDS", "30"))
UNIT_TIMEOUT = 300


def expected_unit_tests():
	"""One entry per tests/unit/test_*.c, plus any binary built without a
	source, so a unit test that failed to build is reported, not skipped."""
	names = {p.stem for p in (REPO / "tests" / "unit").glob("test_*.c")}
	names |= {p.name for p in UNIT_DIR.glob("test_*") if p.is_file() and os.access(p, os.X_OK)}
	return sorted(names) or ["(no unit tests found)"]


def expected_fuzzers():
	names = set(REQUIRED_FUZZERS)
	names |= {p.stem for p in (REPO / "tests" / "fuzz").glob("fuzz_*.c")}
	names |= {p.name for p in FUZZ_DIR.glob("fuzz_*") if p.is_file() and os.access(p, os.X_OK)}
	return sorted(names)


@pytest.mark.parametrize("name", expected_unit_tests())
def test_unit(name):
	binary = UNIT_DIR / name
	assert os.access(binary, os.X_OK), f"{binary} is missing: run 'make SANITIZE=1 unit'"
	env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0")
	result = subprocess.run([str(binary)], cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True,
				text=True, timeout=UNIT_TIMEOUT, env=env)
	output = result.stdout + result.stderr
	assert result.returncode == 0, output
	assert "[  PASSED  ]" in output, output
	assert "AddressSanitizer" not in output and "runtime error" not in output, output


@pytest.mark.parametrize("name", expected_fuzzers())
def test_fuzz(name, tmp_path):
	binary = FUZZ_DIR / name
	assert os.access(binary, os.X_OK), f"{binary} is missing: run 'make fuzz'"
	seeds = CORPUS_DIR / name.removeprefix("fuzz_")
	assert seeds.is_dir() and any(seeds.iterdir()), f"no seed corpus in {seeds}"
	corpus = tmp_path / "corpus"
	shutil.copytree(seeds, corpus)	# the fuzzer adds inputs; keep the repository clean
	artifacts = tmp_path / "artifacts"
	artifacts.mkdir()
	result = subprocess.run([str(binary), f"-max_total_time={FUZZ_SECONDS}", "-timeout=10",
				 "-rss_limit_mb=2048", "-print_final_stats=1",
				 f"-artifact_prefix={artifacts}/", str(corpus)],
				cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True,
				timeout=FUZZ_SECONDS + 120)
	output = result.stdout + result.stderr
	crashes = sorted(p.name for p in artifacts.iterdir())
	assert result.returncode == 0 and not crashes, f"crash inputs {crashes}:\n{output[-6000:]}"
	assert "stat::number_of_executed_units" in output, output[-3000:]
