#!/bin/sh
# test.sh - install what the suite needs, build with gcc, clang, sanitizers and libFuzzer, then run every test with pytest.
#
# Usage: ./scripts/test.sh            (as root on Debian 12 to install missing packages)
# Environment: FUZZ_SECONDS  seconds per fuzzer (default 30)
#              JOBS          parallel make jobs (default: number of CPUs)
# The last line printed is pytest's summary; the exit status is non-zero if
# any build step or test failed.
set -eu

cd "$(dirname "$0")/.."

PACKAGES="gcc clang make libc6-dev libssl-dev libcmocka-dev libclang-rt-14-dev
	libmicrohttpd-dev libjansson-dev libcurl4-openssl-dev xxd
	python3 python3-pytest curl openssl iproute2 procps psmisc util-linux"
# Test suites that need more (the real servers behind `handoff run`) list
# their Debian packages in a packages.txt next to them, one per line.
for list in $(find tests -name packages.txt | sort); do
	PACKAGES="$PACKAGES $(sed 's/#.*//' "$list")"
done

package_installed() {
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

install_missing() {
	missing=""
	for package in $PACKAGES; do
		package_installed "$package" || missing="$missing $package"
	done
	[ -z "$missing" ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		echo "test.sh: missing packages:$missing (run as root to install them)" >&2
		exit 1
	fi
	echo "test.sh: installing$missing"
	export DEBIAN_FRONTEND=noninteractive
	# Server packages (nginx, apache2, ...) would start their services on
	# install; the tests start their own copies, so keep the system's off.
	policy=/usr/sbin/policy-rc.d
	own_policy=0
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		own_policy=1
		trap 'rm -f "$policy"' EXIT
	fi
	apt-get update
	# shellcheck disable=SC2086 # one word per package
	apt-get install -y --no-install-recommends $missing
	if [ "$own_policy" -eq 1 ]; then
		rm -f "$policy"
		trap - EXIT
	fi
}

step() {
	echo
	echo "=== $*"
	"$@"
}

if command -v dpkg-query >/dev/null 2>&1; then
	install_missing
else
	echo "test.sh: not a Debian system; assuming the packages are present" >&2
fi

JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
export FUZZ_SECONDS="${FUZZ_SECONDS:-30}"

# Both compilers must build everything, the unit tests included, without a warning (-Werror).
step make -j"$JOBS" all unit
step make -j"$JOBS" CC=clang BUILD=build/clang all unit
step make -j"$JOBS" SANITIZE=1 all
step make -j"$JOBS" SANITIZE=1 unit
# The daemon under ThreadSanitizer, for the tests of its accepting threads.
step make -j"$JOBS" SANITIZE=thread build/tsan/handoff
step make -j"$JOBS" fuzz
# The container tests: the musl builds, the kit they copy into images, and
# the glibc build of their test server.
step make -j"$JOBS" SANITIZE=1 container-kit build/asan/http-echo

echo
echo "=== pytest (fuzzers: ${FUZZ_SECONDS}s each)"
# The Debian interpreter, which has python3-pytest, whatever python3 is first on PATH.
export PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 -m pytest -v tests/
