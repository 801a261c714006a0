#!/bin/bash
# Suite benchmark: wall time of `ktest run` on a test file of 20 trivial
# subtests against one with a single trivial subtest (one boot each, so the
# difference is the per-subtest cost), plus the same 20 written with the
# shell library (lib/ktest.sh). Prints medians, the ratio (target <= 1.5)
# and the overhead per subtest, (t20 - t1) / 19 (target < 50 ms).
#
#   bench/suite.sh [RUNS]       (default 9 runs each)
#
# Uses the cached test kernel (tests/test-kernel.sh) and a release build.
set -euo pipefail
runs=${1:-9}
repo=$(cd "$(dirname "$0")/.." && pwd)
kernel=${KTEST_TEST_KERNEL:-$("$repo/tests/test-kernel.sh")}/arch/x86/boot/bzImage
cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
ktest=$repo/target/release/ktest
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/run"

# plain N: N subtests with the plain contract, each `true`.
plain() {
	cat <<EOS
#!/bin/sh
case "\$1" in
deps) echo MEM=256M; echo SUBTESTS=yes; exit 0 ;;
list-tests) seq -f 't%g' $1; exit 0 ;;
esac
exit 0
EOS
}
plain 1 >"$work/run/one"
plain 20 >"$work/run/twenty"
{
	echo '#!/bin/sh'
	echo '. "$KTEST_LIB"'
	echo 'ktest_deps() { echo MEM=256M; }'
	for i in $(seq 20); do echo "test_t$i() { :; }"; done
	echo 'ktest_main "$@"'
} >"$work/run/library"
chmod +x "$work/run/"*

. "$repo/bench/lib.sh"
ktest_run() { (cd "$work/run" && KTEST_DB="$work/state.db" "$ktest" run --accel tcg --kernel "$kernel" "./$1"); }

ktest_run one >/dev/null 2>&1 # warm the page cache and the database
# Interleaved, so drifting background load hits all alike.
for i in $(seq "$runs"); do
	timeit ktest_run one >>"$work/one.all"
	timeit ktest_run twenty >>"$work/twenty.all"
	timeit ktest_run library >>"$work/library.all"
done
for f in one twenty library; do median <"$work/$f.all" >"$work/$f"; done

o=$(cat "$work/one"); t=$(cat "$work/twenty"); l=$(cat "$work/library")
printf '1 trivial subtest:                     %.2f s\n' "$o"
printf '20 trivial subtests (plain contract):  %.2f s   ratio %.2f   per subtest %.0f ms\n' \
	"$t" "$(echo "$t / $o" | bc -l)" "$(echo "($t - $o) * 1000 / 19" | bc -l)"
printf '20 trivial subtests (shell library):   %.2f s   ratio %.2f   per subtest %.0f ms\n' \
	"$l" "$(echo "$l / $o" | bc -l)" "$(echo "($l - $o) * 1000 / 19" | bc -l)"
