#!/bin/bash
# Distribution-kernel benchmark. Two measurements:
#
# 1. Boot: wall time of `ktest run` of a trivial passing test on Debian's
#    generic kernel (its virtio, 9p and overlay drivers are modules, loaded
#    from ktest's cached initramfs) against the floor on the same kernel:
#    plain qemu with a busybox initramfs whose init prints a line and
#    reboots at once.
# 2. The initramfs step when cached: `ktest run --dry-run` with that kernel
#    (which reads the module tree, decides, keys and finds the cached
#    archive) minus `ktest run --dry-run` with ktest's own test kernel
#    (which needs no initramfs). Everything else the two do is the same.
#
#   bench/modules.sh [RUNS]      (default 11 runs of each boot, 41 dry runs)
#
# Uses tests/distro-kernel.sh and tests/test-kernel.sh, and a release build.
set -euo pipefail
runs=${1:-11}
repo=$(cd "$(dirname "$0")/.." && pwd)
distro=$("$repo/tests/distro-kernel.sh")
release=$(ls "$distro/lib/modules")
kernel=$distro/boot/vmlinuz-$release
own=$("$repo/tests/test-kernel.sh")/arch/x86/boot/bzImage
cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
ktest=$repo/target/release/ktest
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export XDG_CACHE_HOME=$work/cache KTEST_DB=$work/state.db

mkdir -p "$work/initramfs/bin" "$work/initramfs/dev"
cp /bin/busybox "$work/initramfs/bin/busybox"
printf '#!/bin/busybox sh\n/bin/busybox echo floor-ok\n/bin/busybox reboot -f\n' >"$work/initramfs/init"
chmod +x "$work/initramfs/init"
(cd "$work/initramfs" && find . | cpio -o -H newc --quiet) | gzip -1 >"$work/floor.cpio.gz"

. "$repo/bench/lib.sh"
trivial_test "$work/run/trivial" 512M

floor() {
	qemu-system-x86_64 -nodefaults -no-user-config -display none -machine pc -no-reboot \
		-accel tcg -cpu qemu64,+rdrand -m 512M -smp 2 -kernel "$kernel" -initrd "$work/floor.cpio.gz" \
		-append "console=ttyS0 panic=-1 acpi=noirq i8042.noaux" -serial stdio
}
ktest_run() { (cd "$work/run" && "$ktest" run --accel tcg --kernel "$kernel" ./trivial); }
dry() { (cd "$work/run" && "$ktest" run --accel tcg --dry-run --kernel "$1" ./trivial); }

ktest_run >/dev/null 2>&1 # builds the initramfs once; warms the page cache
for i in $(seq "$runs"); do
	timeit floor >>"$work/floor.all"
	timeit ktest_run >>"$work/ktest.all"
done
for i in $(seq $((runs * 4 - 3))); do
	timeit dry "$kernel" >>"$work/dry-distro.all"
	timeit dry "$own" >>"$work/dry-own.all"
done
for f in floor ktest dry-distro dry-own; do median <"$work/$f.all" >"$work/$f"; done

f=$(cat "$work/floor") k=$(cat "$work/ktest")
dd=$(cat "$work/dry-distro") do=$(cat "$work/dry-own")
echo "kernel: $kernel"
printf 'floor (plain qemu + busybox initramfs, same kernel): %.2f s\n' "$f"
printf 'ktest run, trivial test (host root over 9p):         %.2f s\n' "$k"
printf 'ratio ktest / floor: %.2f\n' "$(echo "$k / $f" | bc -l)"
printf 'dry run: distro kernel %.1f ms, own kernel %.1f ms; initramfs step (cached) %.1f ms\n' \
	"$(echo "$dd * 1000" | bc -l)" "$(echo "$do * 1000" | bc -l)" "$(echo "($dd - $do) * 1000" | bc -l)"
