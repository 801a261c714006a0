#!/bin/bash
# No-op rebuild benchmark. In a kernel tree ktest has already built, compares
# the wall time of
#   A  ktest run TEST                 (from the tree: checks the build inputs,
#                                      runs make's own no-op, then boots)
#   B  ktest run --kernel DIR TEST    (the same kernel, no build step at all)
# and, for reference,
#   M  make -C TREE O=DIR -jN         (make's own no-op, what A must pay)
#   K  ktest build                    (A's build step alone, no VM)
# The runs are interleaved so background load hits all of them alike.
# Prints medians; A - B is ktest's no-op rebuild cost, to compare with M.
#
#   bench/rebuild.sh [RUNS] [TREE]
#
# RUNS defaults to 11. TREE defaults to Debian's linux-source-6.1 unpacked
# by tests/test-kernel.sh in ~/.cache/ktest. The first call builds the
# kernel there if it is not built yet (several minutes).
set -euo pipefail
runs=${1:-11}
repo=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${2:-}" ]; then
	tree=$(cd "$2" && pwd)
else
	"$repo/tests/test-kernel.sh" >/dev/null
	pkgver=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || stat -c %s /usr/src/linux-source-6.1.tar.xz)
	tree=${XDG_CACHE_HOME:-$HOME/.cache}/ktest/linux-source-$pkgver
fi
cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
ktest=$repo/target/release/ktest
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export KTEST_DB=$work/state.db

. "$repo/bench/lib.sh"
trivial_test "$work/trivial" 256M

cd "$tree"
echo "bench: making sure $tree is built (ktest build)" >&2
dir=$("$ktest" build)
jobs=$(nproc)

config_mtime=$(stat -c %Y.%y "$dir/.config")
vmlinux_mtime=$(stat -c %Y.%y "$dir/vmlinux")
: >"$work/A"; : >"$work/B"; : >"$work/M"; : >"$work/K"
for i in $(seq "$runs"); do
	timeit "$ktest" run "$work/trivial" >>"$work/A"
	timeit "$ktest" run --kernel "$dir" "$work/trivial" >>"$work/B"
	timeit make -s -C "$tree" O="$dir" -j"$jobs" >>"$work/M"
	timeit "$ktest" build >>"$work/K"
	echo "bench: run $i/$runs done" >&2
done
[ "$(stat -c %Y.%y "$dir/.config")" = "$config_mtime" ] || echo "bench: WARNING: .config changed during the runs" >&2
[ "$(stat -c %Y.%y "$dir/vmlinux")" = "$vmlinux_mtime" ] || echo "bench: WARNING: vmlinux was rebuilt during the runs" >&2

a=$(median <"$work/A"); b=$(median <"$work/B"); m=$(median <"$work/M"); k=$(median <"$work/K")
echo "runs:                           $runs (median wall seconds, load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))"
echo "A  ktest run (tree):            $a"
echo "B  ktest run --kernel DIR:      $b"
echo "M  make no-op:                  $m"
echo "K  ktest build (no-op):         $k"
echo "A - B (no-op rebuild cost):     $(echo "$a - $b" | bc)"
echo "K - M (ktest's own overhead):   $(echo "$k - $m" | bc)"
