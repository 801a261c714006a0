#!/bin/bash
# A/B benchmark: wall time of `ktest run` on a trivial passing test with two
# ktest binaries, interleaved so background load hits both alike. For
# attributing a change's cost when the machine is not idle enough for
# bench/boot.sh's absolute numbers.
#
#   bench/ab.sh OLD_KTEST NEW_KTEST [RUNS]     (default 21 runs each)
#
# Uses the cached test kernel (tests/test-kernel.sh).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 OLD_KTEST NEW_KTEST [RUNS]" >&2; exit 2; }
old=$(readlink -f "$1") new=$(readlink -f "$2") runs=${3:-21}
repo=$(cd "$(dirname "$0")/.." && pwd)
kernel=$("$repo/tests/test-kernel.sh")/arch/x86/boot/bzImage
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
. "$repo/bench/lib.sh"
trivial_test "$work/run/trivial" 256M

run_with() { (cd "$work/run" && KTEST_DB="$work/state.db" "$1" run --accel tcg --kernel "$kernel" ./trivial); }
a() { run_with "$old"; }
b() { run_with "$new"; }

a >/dev/null 2>&1 # warm the page cache and the database
b >/dev/null 2>&1
# Alternating which goes first (ABBA): the second run of a pair starts
# while the first one's qemu is still being torn down, and measured about
# 5% slower whichever binary it was.
for i in $(seq "$runs"); do
	if [ $((i % 2)) = 1 ]; then
		timeit a >>"$work/a.all"
		timeit b >>"$work/b.all"
	else
		timeit b >>"$work/b.all"
		timeit a >>"$work/a.all"
	fi
done
ma=$(median <"$work/a.all") mb=$(median <"$work/b.all")
printf 'old %s: %.2f s\nnew %s: %.2f s\nnew / old: %.3f\n' "$old" "$ma" "$new" "$mb" "$(echo "$mb / $ma" | bc -l)"
