# ktest's shell library for test files (docs/suites.md). POSIX sh: dash,
# bash and busybox sh. ktest hands it to tests as $KTEST_LIB, on the host
# (deps, list-tests) and in the VM alike:
#
#	#!/bin/sh
#	. "$KTEST_LIB"
#	ktest_deps() { echo MEM=512M; }
#	test_mount() { mkfs.ext4 -q /dev/vda && mount /dev/vda /mnt; }
#	test_later() { ktest_skip "not written yet"; }
#	ktest_main "$@"
#
# Each function named test_* is a subtest, named without the prefix, and
# runs in a subshell with `set -e`: its first failing command fails it, and
# its `exit` ends only it. Exit status 0 passes, 4 skips (kselftest's
# KSFT_SKIP), anything else fails.
#
# Nothing here runs a program on the way into or out of a subtest: under
# TCG every exec costs 50 ms or more. Only the helpers that need one
# (grep, sleep) run it, and only when called.

# What this file declares, then that it has subtests and can serve them.
_ktest_deps() {
	if command -v ktest_deps >/dev/null 2>&1; then
		ktest_deps || return
	fi
	# serve: ktest may run every subtest through one run-tests-serve
	# process (below) instead of a process each.
	echo SUBTESTS=serve
}

# The test_* functions of the test file, in file order, without the prefix.
# Runs on the host only (list-tests), so sed's exec costs nothing in a VM.
_ktest_list() {
	sed -n -e 's/^[[:space:]]*\(function[[:space:]]\{1,\}\)\{0,1\}test_\([A-Za-z0-9_]\{1,\}\)[[:space:]]*\(()\)\{0,1\}[[:space:]]*{\{0,1\}[[:space:]]*$/\2/p' \
		-e 's/^[[:space:]]*\(function[[:space:]]\{1,\}\)\{0,1\}test_\([A-Za-z0-9_]\{1,\}\)[[:space:]]*()[[:space:]]*{.*$/\2/p' "$0" |
		awk '!seen[$0]++'
}

# Runs subtest $1 and sets _ktest_status to its exit status. A plain
# statement, never part of `||` or `if`: there the shell would ignore the
# subtest's `set -e`.
_ktest_run() {
	if ! command -v "test_$1" >/dev/null 2>&1; then
		echo "ktest.sh: no subtest '$1' (no function test_$1 in $0)" >&2
		_ktest_status=2
		return
	fi
	KTEST_SUBTEST=$1
	(
		set -e
		"test_$1"
	)
	_ktest_status=$?
}

# The entry point: `ktest_main "$@"` at the end of the test file.
ktest_main() {
	case "${1:-}" in
	deps)
		_ktest_deps
		;;
	list-tests)
		_ktest_list
		;;
	run-tests)
		shift
		if [ $# -eq 0 ]; then
			echo "ktest.sh: run-tests needs subtest names" >&2
			exit 2
		fi
		# ktest passes one name; by hand, several run in order and the
		# first that does not pass decides the exit status.
		_ktest_worst=0
		for _ktest_name in "$@"; do
			_ktest_run "$_ktest_name"
			[ "$_ktest_worst" -ne 0 ] || _ktest_worst=$_ktest_status
		done
		exit "$_ktest_worst"
		;;
	run-tests-serve)
		# ktest's guest init asks for the subtests one per line on stdin
		# and reads each exit status on fd 5: one process for them all.
		# A subtest's stdin is /dev/null, not ktest's requests.
		while IFS= read -r _ktest_name; do
			_ktest_run "$_ktest_name" </dev/null
			echo "$_ktest_status" >&5
		done
		exit 0
		;;
	*)
		echo "usage: $0 deps | list-tests | run-tests NAME... (run it with: ktest run $0)" >&2
		exit 2
		;;
	esac
}

# Writes a line for ktest to $KTEST_SUBTEST_INFO (unset outside ktest's VM).
_ktest_info() {
	if [ -n "${KTEST_SUBTEST_INFO:-}" ]; then
		echo "$*" >>"$KTEST_SUBTEST_INFO"
	fi
}

# ktest_skip REASON...: ends the subtest as skipped, with the reason.
ktest_skip() {
	_ktest_info "skip $*"
	echo "skipped: $*"
	exit 4
}

# ktest_allow KIND...: this subtest may cause kernel-log reports of these
# kinds (warning, taint, lockdep, kasan, ...: docs/suites.md) without
# failing; they are still recorded.
ktest_allow() {
	for _ktest_kind in "$@"; do
		_ktest_info "allow $_ktest_kind"
	done
}

# Kills $1 and, first, everything below it but the process $2 (the
# watchdog calling it, itself a child of $1). A shell loop over /proc: it
# runs only when a time limit expires.
_ktest_kill_tree() {
	for _ktest_stat in /proc/[0-9]*/stat; do
		read -r _ktest_p _ktest_comm _ktest_state _ktest_ppid _ktest_rest <"$_ktest_stat" 2>/dev/null || continue
		[ "$_ktest_ppid" = "$1" ] && [ "$_ktest_p" != "$2" ] && _ktest_kill_tree "$_ktest_p" "$2"
	done
	kill -TERM "$1" 2>/dev/null
}

# ktest_timeout SECS: the rest of this subtest may take SECS seconds; then
# it is killed (with what it started) and reported as timed out. ktest's own
# per-subtest limit (TIMEOUT) still applies, and catches a hung kernel.
ktest_timeout() {
	case "${1:-}" in
	'' | *[!0-9]*)
		echo "ktest_timeout: '${1:-}' is not a whole number of seconds" >&2
		exit 2
		;;
	esac
	# This shell's pid without a fork ($$ is the test file's, and $(...)
	# would be a new process): a builtin's redirection is opened by the
	# shell itself, so /proc/self is this subtest's shell.
	read -r _ktest_victim _ktest_rest </proc/self/stat
	# Off the output port (fd 3 in ktest's guest) and its stdout: a
	# sleeping watchdog must not hold the test's output open.
	(
		sleep "$1"
		# The subtest may have ended, and another begun, meanwhile.
		kill -0 "$_ktest_victim" 2>/dev/null || exit 0
		_ktest_info "timeout $1"
		read -r _ktest_watchdog _ktest_rest </proc/self/stat
		_ktest_kill_tree "$_ktest_victim" "$_ktest_watchdog"
	) </dev/null >/dev/null 2>&1 3>&- &
}

# ktest_require_config OPTION [--fail]: skips the subtest (or, with
# --fail, fails it) unless the kernel has CONFIG_OPTION built in or as a
# module. Reads the kernel's .config ($KTEST_KERNEL_CONFIG) or
# /proc/config.gz.
ktest_require_config() {
	_ktest_opt=${1#CONFIG_}
	if [ -n "${KTEST_KERNEL_CONFIG:-}" ] && [ -r "$KTEST_KERNEL_CONFIG" ]; then
		grep -Eq "^CONFIG_${_ktest_opt}=(y|m)\$" "$KTEST_KERNEL_CONFIG" && return 0
	elif [ -r /proc/config.gz ]; then
		zcat /proc/config.gz | grep -Eq "^CONFIG_${_ktest_opt}=(y|m)\$" && return 0
	else
		echo "ktest_require_config: cannot tell whether the kernel has CONFIG_$_ktest_opt (no KTEST_KERNEL_CONFIG, no /proc/config.gz)"
		exit 1
	fi
	if [ "${2:-}" = --fail ]; then
		echo "the kernel lacks CONFIG_$_ktest_opt"
		exit 1
	fi
	ktest_skip "needs CONFIG_$_ktest_opt"
}

# ktest_expect_fail CMD...: runs CMD, which must fail.
ktest_expect_fail() {
	if "$@"; then
		echo "expected to fail, but succeeded: $*"
		exit 1
	fi
	return 0
}

# Runs CMD (the rest of the arguments) and prints what it printed; sets
# _ktest_out to that and returns whether ERE $1 matches a line of it.
_ktest_grep_output() {
	_ktest_pat=$1
	shift
	_ktest_out=$("$@" 2>&1) || true
	[ -z "$_ktest_out" ] || printf '%s\n' "$_ktest_out"
	printf '%s\n' "$_ktest_out" | grep -Eq -- "$_ktest_pat"
}

# ktest_expect_output PATTERN CMD...: runs CMD; a line of its stdout or
# stderr must match the extended regular expression PATTERN. (Its exit
# status does not matter: use ktest_expect_fail or plain `set -e` too.)
ktest_expect_output() {
	if ! _ktest_grep_output "$@"; then
		_ktest_pat=$1
		shift
		echo "expected output matching '$_ktest_pat' from: $*"
		exit 1
	fi
}

# ktest_expect_no_output PATTERN CMD...: runs CMD; no line of its output may
# match PATTERN.
ktest_expect_no_output() {
	if _ktest_grep_output "$@"; then
		_ktest_pat=$1
		shift
		echo "unexpected output matching '$_ktest_pat' from: $*"
		exit 1
	fi
}
