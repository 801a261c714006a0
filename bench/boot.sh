#!/bin/bash
# Boot benchmark: wall time of `ktest run` on a trivial passing test against
# the floor, plain qemu booting the same kernel with a busybox initramfs
# whose init prints a line and reboots at once. Prints medians and the ratio.
#
#   bench/boot.sh [RUNS]        (default 11 runs each; needs busybox-static)
#
# Uses the cached test kernel (tests/test-kernel.sh) and a release build.
set -euo pipefail
runs=${1:-11}
repo=$(cd "$(dirname "$0")/.." && pwd)
kernel=$("$repo/tests/test-kernel.sh")/arch/x86/boot/bzImage
cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
ktest=$repo/target/release/ktest
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The floor's initramfs.
mkdir -p "$work/initramfs/bin"
cp /bin/busybox "$work/initramfs/bin/busybox"
printf '#!/bin/busybox sh\n/bin/busybox echo floor-ok\n/bin/busybox reboot -f\n' >"$work/initramfs/init"
chmod +x "$work/initramfs/init"
(cd "$work/initramfs" && find . | cpio -o -H newc --quiet) >"$work/floor.cpio"

# The trivial test.
. "$repo/bench/lib.sh"
trivial_test "$work/run/trivial" 256M

floor() {
	qemu-system-x86_64 -nodefaults -no-user-config -display none -machine pc -no-reboot \
		-accel tcg -m 256M -smp 2 -kernel "$kernel" -initrd "$work/floor.cpio" \
		-append "console=ttyS0 panic=-1 $*" -serial stdio
}
ktest_run() { (cd "$work/run" && KTEST_DB="$work/state.db" "$ktest" run --accel tcg --kernel "$kernel" ./trivial); }

ktest_run >/dev/null 2>&1 # warm the page cache and the database
# Interleaved, so drifting background load hits all three alike.
for i in $(seq "$runs"); do
	timeit floor >>"$work/floor.all"
	timeit floor acpi=noirq >>"$work/floor-noirq.all"
	timeit ktest_run >>"$work/ktest.all"
done
for f in floor floor-noirq ktest; do median <"$work/$f.all" >"$work/$f"; done

f=$(cat "$work/floor"); fn=$(cat "$work/floor-noirq"); k=$(cat "$work/ktest")
printf 'floor (plain qemu + busybox initramfs):        %.2f s\n' "$f"
printf 'floor with acpi=noirq (as ktest boots):        %.2f s\n' "$fn"
printf 'ktest run, trivial test (host root over 9p):   %.2f s\n' "$k"
printf 'ratio ktest / floor: %.2f   ktest / floor with acpi=noirq: %.2f\n' \
	"$(echo "$k / $f" | bc -l)" "$(echo "$k / $fn" | bc -l)"
