#!/bin/bash
# fresh-check.sh - run the README's demo and test commands, exactly as written, in freshly bootstrapped Debian 12 roots.
#
# Usage: ./scripts/fresh-check.sh [--keep] [--only demo|test] [--fuzz-seconds N]
#                                 [--cache FILE] [--mirror URL] [--dir DIR]
#        ./scripts/fresh-check.sh --enter ROOT [COMMAND...]
#
# As root on a Debian 12 machine with network access to its package mirror.
# The check proves that the project's own files install everything the two
# README commands need: a package that only this machine happens to have
# makes it fail here, as it would on a new machine or in CI.
#
# Steps: install debootstrap if missing; bootstrap a minimal root
# (debootstrap --variant=minbase bookworm, from the mirror apt already
# uses); then for each command (`./scripts/demo.sh` from "Try it",
# `./scripts/test.sh` from "Run the tests", read from README.md's fenced
# blocks) copy that root afresh, add resolv.conf and /etc/hosts, unpack
# `git archive HEAD` into /src, and run the command there as root, with no
# standard input and a clean environment, in a mount namespace of its own
# with /proc, /sys and /dev mounted in the root and the root made its root
# with pivot_root (not chroot, under which the kernel refuses new user
# namespaces, as a real machine does not).
# Each command gets its own fresh root, so one cannot install what the other
# lacks. Every step prints its time; the last line is the verdict, and the
# exit status is non-zero if either command failed.
#
# Only committed files are checked (git archive HEAD).
#
# Options:
#   --keep            keep the roots (unmounted) for inspection; rerun a
#                     command in one with --enter
#   --only demo|test  run only one of the two commands
#   --fuzz-seconds N  FUZZ_SECONDS for the suite (default: unset, so the
#                     README command uses its own default of 60 s per fuzzer);
#                     FUZZ_SECONDS in the environment is passed through too
#   --cache FILE      reuse FILE (a tarball of a bootstrapped root) if it
#                     exists, else bootstrap and save the root there (remove
#                     FILE to bootstrap afresh)
#   --mirror URL      package mirror (default: the first URIs:/deb line of
#                     apt's own sources)
#   --dir DIR         where to create the roots (default /var/tmp); they
#                     need several GB
#   --enter ROOT [COMMAND...]
#                     run COMMAND (default: bash) in a kept root's /src as
#                     root, entered as the check enters it; e.g.
#                     --enter ROOT python3 -m pytest -v tests/integration/test_relay.py
set -eu
set -o pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
ME=fresh-check
PATH_IN_ROOT=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

KEEP=0
ONLY=""
CACHE=""
MIRROR=""
PARENT=/var/tmp
ENTER=""
FUZZ=${FUZZ_SECONDS:-}

usage() {
	sed -n '4,6p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

while [ $# -gt 0 ]; do
	case "$1" in
	--keep) KEEP=1 ;;
	--only)
		[ $# -ge 2 ] || usage
		case "$2" in demo | test) ONLY=$2 ;; *) usage ;; esac
		shift
		;;
	--fuzz-seconds)
		[ $# -ge 2 ] || usage
		case "$2" in '' | *[!0-9]*) usage ;; esac
		FUZZ=$2
		shift
		;;
	--cache)
		[ $# -ge 2 ] || usage
		CACHE=$2
		shift
		;;
	--mirror)
		[ $# -ge 2 ] || usage
		MIRROR=$2
		shift
		;;
	--dir)
		[ $# -ge 2 ] || usage
		PARENT=$2
		shift
		;;
	--enter)
		[ $# -ge 2 ] || usage
		ENTER=$(cd "$2" && pwd)
		shift 2
		break
		;;
	-h | --help) usage ;;
	*) usage ;;
	esac
	shift
done

if [ "$(id -u)" -ne 0 ]; then
	echo "$ME: must run as root (it bootstraps and mounts a root file system)" >&2
	exit 2
fi

# --- mounts -----------------------------------------------------------------

# mounts_under DIR: mount points at or below DIR, in /proc/self/mountinfo
# order (a mount is always listed after the one it sits on).
mounts_under() {
	awk -v dir="$1" '{
		point = $5
		gsub(/\\040/, " ", point)
		if (point == dir || index(point, dir "/") == 1)
			print point
	}' /proc/self/mountinfo
}

# root_identity DIR: device and inode of DIR, which a process whose root is
# DIR shows through /proc/PID/root also from another mount namespace (where
# the link's text is just "/").
root_identity() {
	stat -L -c '%d:%i' "$1"
}

# processes_in ROOT: the pids of the processes whose root directory is ROOT.
processes_in() {
	local identity proc
	identity=$(root_identity "$1") || return 0
	for proc in /proc/[0-9]*; do
		[ "$(root_identity "$proc/root" 2>/dev/null)" = "$identity" ] || continue
		printf ' %s' "${proc#/proc/}"
	done
}

# kill_processes_in ROOT: end every process whose root directory is ROOT
# (left over by an interrupted command), so nothing keeps using the root.
kill_processes_in() {
	local root=$1 signal tries found
	for signal in TERM KILL; do
		tries=50
		while [ "$tries" -gt 0 ]; do
			found=$(processes_in "$root")
			[ -n "$found" ] || return 0
			[ "$tries" -eq 50 ] && echo "$ME: stopping processes left in $root (SIG$signal):$found" >&2
			# shellcheck disable=SC2086 # one word per pid
			kill -s "$signal" $found 2>/dev/null || true
			sleep 0.1
			tries=$((tries - 1))
		done
	done
}

# unmount_all ROOT: unmount everything at or below ROOT, deepest (most
# recently mounted) first. The root's own mounts live in the mount namespace
# of the command and vanish with it; this catches anything left on the host.
unmount_all() {
	local root=$1 point rounds=0
	while point=$(mounts_under "$root" | tail -n 1) && [ -n "$point" ]; do
		rounds=$((rounds + 1))
		if [ "$rounds" -gt 500 ]; then
			echo "$ME: cannot unmount $point" >&2
			return 1
		fi
		umount "$point" 2>/dev/null || umount -l "$point" || return 1
	done
}

# What runs in the command's own mount namespace (every mount in it
# private), before the command: the root bind-mounted on itself (pivot_root
# needs a mount point, and ip netns exec remounts / as a slave), /proc, /sys
# and /dev in it, then pivot_root into it and the host's tree detached. The
# command's root is then the root of its mount namespace, as on a real
# machine: the kernel refuses a new user namespace (podman, unshare --user)
# to a process in a chroot. Arguments: ROOT, then the command's argv.
# shellcheck disable=SC2016 # expanded by the shell that runs it
ENTER_SCRIPT='
set -e
root=$1
shift
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
cd "$root"
mkdir -p .oldroot
pivot_root . .oldroot
cd /
umount -l /.oldroot
rmdir /.oldroot
exec "$@"
'

# enter_root ROOT ARGV...: run ARGV (found inside) as root with ROOT as its
# file system root, in a mount namespace of its own whose mounts vanish with
# its last process; the process is killed if unshare is.
enter_root() {
	local root=$1
	shift
	unshare --mount --propagation private --kill-child -- \
		/bin/bash -c "$ENTER_SCRIPT" enter-root "$root" "$@"
}

# run_in_root ROOT COMMAND: run a shell command in ROOT/src as root, with no
# standard input and the environment of a fresh root login.
run_in_root() {
	local root=$1 command=$2
	local env=(HOME=/root LOGNAME=root USER=root SHELL=/bin/bash TERM=dumb PATH="$PATH_IN_ROOT")
	[ -z "$FUZZ" ] || env+=(FUZZ_SECONDS="$FUZZ")
	# In the background, so that a signal to this script runs its trap at
	# once; the trap then stops what is left in the root.
	enter_root "$root" /usr/bin/env -i "${env[@]}" /bin/sh -c "cd /src && $command" </dev/null &
	wait "$!"
}

# --- enter a kept root ------------------------------------------------------

if [ -n "$ENTER" ]; then
	if ! [ -d "$ENTER/src" ] || ! [ -x "$ENTER/bin/sh" ]; then
		echo "$ME: $ENTER is not a root made by $ME" >&2
		exit 2
	fi
	if [ -n "$(mounts_under "$ENTER")" ] || [ -n "$(processes_in "$ENTER")" ]; then
		echo "$ME: $ENTER is in use (mounted, or processes run in it)" >&2
		exit 2
	fi
	trap 'kill_processes_in "$ENTER"; unmount_all "$ENTER"' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	if [ $# -eq 0 ]; then
		env=(HOME=/root TERM="${TERM:-dumb}" PATH="$PATH_IN_ROOT")
		[ -z "$FUZZ" ] || env+=(FUZZ_SECONDS="$FUZZ")
		enter_root "$ENTER" /usr/bin/env -i "${env[@]}" /bin/bash -c 'cd /src && exec bash -i'
	else
		run_in_root "$ENTER" "$(printf '%q ' "$@")"
	fi
	exit
fi

# --- the check --------------------------------------------------------------

# readme_command SECTION: the single line of the first fenced block under
# the README heading "## SECTION".
readme_command() {
	local lines
	lines=$(awk -v want="## $1" '
		/^## / { section = $0; block = 0 }
		/^```/ { fenced = !fenced; if (fenced) block++; next }
		fenced && block == 1 && section == want { print }
	' "$REPO/README.md")
	if [ -z "$lines" ] || [ "$(printf '%s\n' "$lines" | wc -l)" -ne 1 ]; then
		echo "$ME: README.md: expected one command in the first fenced block under '## $1'" >&2
		exit 2
	fi
	printf '%s\n' "$lines"
}

# default_mirror: the first Debian mirror apt on this machine uses.
default_mirror() {
	local uri
	uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
		awk '/^URIs:/ { print $2; exit }')
	[ -n "$uri" ] || uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }')
	printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

DEMO_COMMAND=$(readme_command "Try it")
TEST_COMMAND=$(readme_command "Run the tests")
[ -n "$MIRROR" ] || MIRROR=$(default_mirror)
git -C "$REPO" rev-parse --verify -q HEAD >/dev/null || { echo "$ME: $REPO has no commit to check" >&2; exit 2; }
REVISION=$(git -C "$REPO" rev-parse --short HEAD)

mkdir -p "$PARENT"
PARENT=$(cd "$PARENT" && pwd)
WORK=$(mktemp -d "$PARENT/handoff-fresh.XXXXXX")
ROOTS=""	# roots made so far, for the cleanup
SUMMARY=()
FAILED=0
START=$(date +%s)

cleanup() {
	local status=$? root
	trap - EXIT INT TERM
	set +e
	for root in $ROOTS; do
		kill_processes_in "$root"
		if ! unmount_all "$root"; then
			echo "$ME: $root is still mounted; not removing $WORK" >&2
			exit 1
		fi
	done
	if [ "$KEEP" -eq 1 ]; then
		rm -rf --one-file-system "$WORK/base"
		echo "$ME: kept$ROOTS; rerun a command with: $0 --enter ROOT COMMAND..." >&2
	else
		rm -rf --one-file-system "$WORK"
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'echo "$ME: interrupted" >&2; exit 130' INT
trap 'echo "$ME: terminated" >&2; exit 143' TERM

# step NAME COMMAND...: run, print how long it took, record the outcome.
# COMMAND runs without errexit: the functions given here check each command.
step() {
	local name=$1 begin status
	shift
	echo
	echo "=== [$ME] $name"
	begin=$(date +%s)
	set +e
	"$@"
	status=$?
	set -e
	local seconds=$(($(date +%s) - begin))
	if [ "$status" -eq 0 ]; then
		echo "=== [$ME] $name: ok (${seconds}s)"
		SUMMARY+=("$name: ok (${seconds}s)")
	else
		echo "=== [$ME] $name: FAILED, exit status $status (${seconds}s)"
		SUMMARY+=("$name: FAILED, exit status $status (${seconds}s)")
	fi
	return "$status"
}

verdict() {
	local line
	echo
	for line in "${SUMMARY[@]}"; do
		echo "    $line"
	done
	echo "$ME: $1 at $REVISION in $(($(date +%s) - START))s"
}

install_debootstrap() {
	command -v debootstrap >/dev/null 2>&1 && return 0
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends debootstrap ||
		{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends debootstrap; }
}

bootstrap() {
	if [ -n "$CACHE" ] && [ -s "$CACHE" ]; then
		echo "unpacking $CACHE"
		mkdir "$WORK/base" || return 1
		tar -x -C "$WORK/base" -f "$CACHE"
		return
	fi
	debootstrap --variant=minbase bookworm "$WORK/base" "$MIRROR" || return 1
	if [ -n "$CACHE" ]; then
		echo "saving the root to $CACHE"
		tar -c -C "$WORK/base" -f "$CACHE.part" . && mv "$CACHE.part" "$CACHE"
	fi
}

# prepare_root ROOT: a copy of the bootstrapped root, with the files a real installation has and the repository's committed files in /src.
prepare_root() {
	local root=$1
	cp -a "$WORK/base" "$root" || return 1
	chmod 755 "$root" || return 1	# tests run servers and upstreams as nobody
	cp -L /etc/resolv.conf "$root/etc/resolv.conf" || return 1
	# A minbase root has no /etc/hosts; every installed system has one.
	cat >"$root/etc/hosts" <<-EOF || return 1
		127.0.0.1	localhost
		127.0.1.1	$(hostname)
		::1	localhost ip6-localhost ip6-loopback
		ff02::1	ip6-allnodes
		ff02::2	ip6-allrouters
	EOF
	mkdir "$root/src" || return 1
	git -C "$REPO" archive --format=tar HEAD | tar -x -C "$root/src"
}

remove_root() {
	kill_processes_in "$1"
	unmount_all "$1" || return 1
	rm -rf --one-file-system "$1"
}

# check NAME COMMAND: run one README command in its own fresh root.
check() {
	local name=$1 command=$2 root="$WORK/root-$1" status=0
	ROOTS="$ROOTS $root"
	step "$name: prepare a fresh root ($root)" prepare_root "$root" || return 1
	step "$name: $command" run_in_root "$root" "$command" || status=1
	if [ "$KEEP" -eq 0 ]; then
		step "$name: remove the root" remove_root "$root" || return 1
		ROOTS=${ROOTS% "$root"}
	fi
	return "$status"
}

echo "$ME: checking $REVISION of $REPO in fresh Debian 12 roots under $WORK"
echo "$ME: mirror $MIRROR; FUZZ_SECONDS ${FUZZ:-unset (the README default)}"
echo "$ME: demo command: $DEMO_COMMAND"
echo "$ME: test command: $TEST_COMMAND"

if ! step "install debootstrap" install_debootstrap || ! step "bootstrap Debian 12 (minbase)" bootstrap; then
	verdict "FAIL (could not make a root)"
	exit 1
fi
[ "$ONLY" = test ] || check demo "$DEMO_COMMAND" || FAILED=1
[ "$ONLY" = demo ] || check test "$TEST_COMMAND" || FAILED=1
if [ "$FAILED" -eq 0 ]; then
	verdict "PASS"
else
	verdict "FAIL"
	exit 1
fi
