#!/bin/bash
# Parallel-VM benchmark (issue "Many test files at once"):
#
# 1. 8 trivial test files, `ktest run --vms 2 DIR`, against the same 8 run
#    one after another (`--vms 1`, one ktest) and against 8 separate
#    `ktest run FILE` commands. Target: --vms 2 at most 0.6x the serial run
#    on 2 cores. Prints medians of RUNS interleaved runs.
# 2. 16 trivial test files with `--vms 16`: every file passes, no lock or
#    slot error, and nothing is left behind (no VM directory, no qemu, no
#    row in `ktest status`). Prints its wall time.
#
#   bench/parallel.sh [RUNS]      (default 5)
#   CPUS=1 bench/parallel.sh      (the files declare CPUS=1; default: none,
#                                  so ktest's default of 2 vCPUs)
#
# Uses the cached test kernel (tests/test-kernel.sh) and a release build;
# run it on an idle machine.
set -euo pipefail
runs=${1:-5}
repo=$(cd "$(dirname "$0")/.." && pwd)
kernel=${KTEST_TEST_KERNEL:-$("$repo/tests/test-kernel.sh")}/arch/x86/boot/bzImage
cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
ktest=$repo/target/release/ktest
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
. "$repo/bench/lib.sh"

# files DIR N: N trivial test files in DIR.
cpus=${CPUS:+echo CPUS=$CPUS; }
files() {
	mkdir -p "$1"
	for i in $(seq "$2"); do
		printf '#!/bin/sh\n[ "$1" = deps ] && { echo MEM=256M; %sexit 0; }\necho "test %s"\n' "$cpus" "$i" >"$1/t$i.ktest"
		chmod +x "$1/t$i.ktest"
	done
}
files "$work/eight" 8
files "$work/sixteen" 16
export KTEST_DB="$work/state.db"
ktest_run() { (cd "$work" && "$ktest" run --accel tcg --kernel "$kernel" "$@"); }
separately() { for f in "$work"/eight/*.ktest; do ktest_run "$f" || return 1; done; }

ktest_run eight/t1.ktest >/dev/null 2>&1 # warm the page cache and the database
for i in $(seq "$runs"); do
	timeit ktest_run --vms 1 eight >>"$work/serial.all"
	timeit ktest_run --vms 2 eight >>"$work/two.all"
	timeit separately >>"$work/separate.all"
done
for f in serial two separate; do median <"$work/$f.all" >"$work/$f"; done
s=$(cat "$work/serial"); t=$(cat "$work/two"); p=$(cat "$work/separate")
printf '8 files, one ktest, --vms 1:      %.2f s\n' "$s"
printf '8 files, 8 ktest commands:        %.2f s\n' "$p"
printf '8 files, one ktest, --vms 2:      %.2f s   ratio to --vms 1: %.2f (target <= 0.6)\n' \
	"$t" "$(echo "$t / $s" | bc -l)"

out=$work/sixteen.out
start=$(date +%s.%N)
if ! ktest_run --vms 16 --json "$work/sixteen.json" sixteen >"$out" 2>&1; then
	echo "bench: 16 VMs: ktest failed" >&2
	cat "$out" >&2
	exit 1
fi
end=$(date +%s.%N)
passed=$(grep -c '"verdict": "pass"' "$work/sixteen.json" || true)
if [ "$passed" != 16 ] || grep -Eqi 'lock|slot|busy|is running' "$out"; then
	echo "bench: 16 VMs: $passed of 16 passed, or a lock/slot complaint:" >&2
	cat "$out" >&2
	exit 1
fi
left=$(find "$work/.ktest" -mindepth 2 -maxdepth 2 -path '*/vms/*' -type d | wc -l)
qemus=$(pgrep -f "qemu-system.*$work" | wc -l || true)
status=$("$ktest" status | grep -c "$work" || true)
if [ "$left" != 0 ] || [ "$qemus" != 0 ] || [ "$status" != 0 ]; then
	echo "bench: 16 VMs left $left VM directories, $qemus qemu, $status status rows" >&2
	exit 1
fi
printf '16 files, --vms 16:               %.2f s   all 16 passed, nothing left\n' \
	"$(echo "$end - $start" | bc -l)"
