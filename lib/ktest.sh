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
	_ktest_disarm
}

# Before running subtests: where an armed ktest_timeout keeps its
# watchdog's pid, for _ktest_run to stop it when the subtest ends; beside
# the info file, or, run by hand, in a private directory.
_ktest_prepare() {
	if [ -n "${KTEST_SUBTEST_INFO:-}" ]; then
		_ktest_armed=$KTEST_SUBTEST_INFO.watchdog
	else
		_ktest_tmp=$(mktemp -d "${TMPDIR:-/tmp}/ktest-XXXXXX") || exit 2
		trap 'rm -rf "$_ktest_tmp"' EXIT
		trap 'exit 130' INT TERM
		_ktest_armed=$_ktest_tmp/watchdog
	fi
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
		_ktest_prepare
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
		_ktest_prepare
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

# ktest_timeout SECS: the rest of this subtest may take SECS seconds; then
# it is killed (with what it started) and reported as timed out. A second
# call replaces the limit; `ktest_timeout 0` lifts it. ktest's own
# per-subtest limit (TIMEOUT) still applies, and catches a hung kernel.
# Call it from the test function itself, not in a pipeline or $(...): it
# watches the shell it runs in.
ktest_timeout() {
	case "${1:-}" in
	'' | *[!0-9]*)
		echo "ktest_timeout: '${1:-}' is not a whole number of seconds" >&2
		exit 2
		;;
	esac
	_ktest_disarm
	[ "$1" -gt 0 ] || return 0
	# This shell's pid without a fork ($$ is the test file's, and $(...)
	# would be a new process): a builtin's redirection is opened by the
	# shell itself, so /proc/self is this subtest's shell.
	read -r _ktest_victim _ktest_rest </proc/self/stat
	# Not on ktest's status channel either (fd 5 under run-tests-serve).
	_ktest_watchdog "$1" "$_ktest_victim" </dev/null 3>&- 5>&- &
	echo "$!" >"$_ktest_armed"
}

# Stops the armed watchdog, if any: the subtest ended, or set a new limit.
# $_ktest_armed holds the watchdog's pid while one is armed.
_ktest_disarm() {
	if [ -s "$_ktest_armed" ]; then
		read -r _ktest_pid <"$_ktest_armed"
		kill "$_ktest_pid" 2>/dev/null || :
		: >"$_ktest_armed"
	fi
}

# The watchdog, in the background: after $1 seconds, reports the time-out
# and kills the subtest's shell $2 with what it started. Its sleep holds
# none of the test's output (a sleeping watchdog must not keep it open);
# disarmed (SIGTERM), it takes its sleep with it. Its own options: the
# test's `set -eu` are not for it.
_ktest_watchdog() {
	set +eu
	# The disarm may come before the sleep starts, or just after, before
	# any assignment: the sleep is ours once $! has changed (a subshell
	# inherits its parent's $!). SIGKILL: a SIGTERM can reach the sleep's
	# process before it execs sleep and drops this shell's trap.
	_ktest_before=$!
	trap '[ "$!" = "$_ktest_before" ] || kill -KILL "$!" 2>/dev/null; exit 0' TERM
	# shellcheck disable=SC2217 # no fd of the test's for the sleep
	sleep "$1" </dev/null >/dev/null 2>&1 &
	wait "$!" || exit 0
	# Past this point a disarm must not stop a kill half done.
	trap '' TERM
	kill -0 "$2" 2>/dev/null || exit 0
	_ktest_info "timeout $1"
	echo "ktest_timeout: ${KTEST_SUBTEST:-the subtest} still running after $1 s; killing it" >&2
	read -r _ktest_self _ktest_rest </proc/self/stat
	_ktest_kill_tree "$2" "$_ktest_self"
	exit 0
}

# Kills process $1 and everything below it but $2 (the watchdog, itself a
# child of $1). SIGKILL, which no process can ignore; each process is
# stopped as it is found, so none forks anew while /proc is walked. The
# processes below $1 die first and $1 last, so that when the subtest is
# seen to end what it started is gone too (with the mounts and devices it
# held). Builtins but for sleep: it runs only when a time limit expires.
_ktest_kill_tree() {
	_ktest_tree=" $1 "
	kill -STOP "$1" 2>/dev/null
	_ktest_grew=1
	while [ -n "$_ktest_grew" ]; do
		_ktest_grew=
		for _ktest_dir in /proc/[0-9]*; do
			_ktest_p=${_ktest_dir#/proc/}
			case "$_ktest_tree" in *" $_ktest_p "*) continue ;; esac
			[ "$_ktest_p" != "$2" ] || continue
			{ read -r _ktest_stat <"$_ktest_dir/stat"; } 2>/dev/null || continue
			# PID (COMM) STATE PPID ...: COMM may hold anything.
			_ktest_stat=${_ktest_stat##*) }
			_ktest_stat=${_ktest_stat#* }
			case "$_ktest_tree" in
			*" ${_ktest_stat%% *} "*)
				kill -STOP "$_ktest_p" 2>/dev/null
				_ktest_tree="$_ktest_tree$_ktest_p "
				_ktest_grew=1
				;;
			esac
		done
	done
	_ktest_tree=${_ktest_tree#" $1 "}
	if [ -n "$_ktest_tree" ]; then
		# shellcheck disable=SC2086 # a pid a word
		kill -KILL $_ktest_tree 2>/dev/null
		# A process inside the kernel (state D) dies when it comes out:
		# wait for that a while, not for ever.
		_ktest_i=0
		# shellcheck disable=SC2086
		while [ $_ktest_i -lt 50 ] && _ktest_any_alive $_ktest_tree; do
			sleep 0.1
			_ktest_i=$((_ktest_i + 1))
		done
	fi
	kill -KILL "$1" 2>/dev/null
}

# Whether any of the pids is a live process: not gone, not a zombie.
_ktest_any_alive() {
	for _ktest_p in "$@"; do
		{ read -r _ktest_stat <"/proc/$_ktest_p/stat"; } 2>/dev/null || continue
		case ${_ktest_stat##*) } in
		Z* | X*) ;;
		*) return 0 ;;
		esac
	done
	return 1
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
	# set +e: CMD runs as in an `if`, whatever the shell (dash keeps
	# set -e in $(...), bash drops it).
	_ktest_out=$(
		set +e
		"$@" 2>&1
	) || true
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
