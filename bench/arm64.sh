#!/bin/bash
# arm64 guest benchmark, on an x86_64 host under TCG: wall time of
# `ktest run` of a trivial passing test on the arm64 test kernel and the
# arm64 root image, against the floor on the same kernel: plain
# qemu-system-aarch64 (same machine, CPU, memory) with an initramfs whose
# init prints a line and reboots at once.
#
# The floor's init is a few instructions of static arm64 code (write, then
# reboot), cross-compiled here: Debian's cross toolchain has no static libc
# for a static busybox, and any init does less than busybox's shell, so
# this floor is the lower one.
#
#   bench/arm64.sh [RUNS]      (default 11 runs of each, medians reported)
#
# Uses tests/test-kernel.sh (KTEST_TEST_ARCH=arm64), tests/rootfs-image.sh
# (KTEST_ROOTFS_ARCH=arm64) and a release build. Needs root (mknod for the
# floor's /dev/console).
set -euo pipefail
runs=${1:-11}
repo=$(cd "$(dirname "$0")/.." && pwd)
build=$(KTEST_TEST_ARCH=arm64 "$repo/tests/test-kernel.sh")
kernel=$build/arch/arm64/boot/Image
image=$(KTEST_ROOTFS_ARCH=arm64 "$repo/tests/rootfs-image.sh")
cargo build --release --quiet --manifest-path "$repo/Cargo.toml" --bin ktest
ktest=$repo/target/release/ktest
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export KTEST_DB=$work/state.db

mkdir -p "$work/initramfs/dev"
cat >"$work/init.c" <<'EOF'
static long sys(long n, long a, long b, long c, long d)
{
	register long x8 __asm__("x8") = n, x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b, x2 __asm__("x2") = c, x3 __asm__("x3") = d;
	__asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
	return x0;
}
void _start(void)
{
	sys(64, 1, (long)"floor-ok\n", 9, 0);            /* write(1, ...) */
	sys(142, 0xfee1dead, 672274793, 0x01234567, 0); /* reboot(RESTART) */
	for (;;)
		;
}
EOF
aarch64-linux-gnu-gcc -O2 -static -nostdlib -ffreestanding -o "$work/initramfs/init" "$work/init.c"
mknod "$work/initramfs/dev/console" c 5 1
(cd "$work/initramfs" && find . | cpio -o -H newc --quiet) | gzip -1 >"$work/floor.cpio.gz"

. "$repo/bench/lib.sh"
trivial_test "$work/run/trivial" 512M

floor() {
	qemu-system-aarch64 -nodefaults -no-user-config -display none -machine virt -no-reboot \
		-accel tcg -cpu max,pauth-impdef=on -m 512M -smp 2 -kernel "$kernel" -initrd "$work/floor.cpio.gz" \
		-append "console=ttyAMA0 panic=-1" -serial stdio | grep floor-ok >/dev/null
}
ktest_run() { (cd "$work/run" && "$ktest" run --accel tcg --kernel "$build" --root "$image" ./trivial); }

floor
ktest_run >/dev/null 2>&1 # warms the page cache
for i in $(seq "$runs"); do
	timeit floor >>"$work/floor.all"
	timeit ktest_run >>"$work/ktest.all"
done
for f in floor ktest; do median <"$work/$f.all" >"$work/$f"; done

f=$(cat "$work/floor") k=$(cat "$work/ktest")
echo "kernel: $kernel"
echo "image: $image"
printf 'floor (plain qemu-system-aarch64 + initramfs, same kernel): %.2f s\n' "$f"
printf 'ktest run, trivial test (arm64 root image):                 %.2f s\n' "$k"
printf 'ratio ktest / floor: %.2f\n' "$(echo "$k / $f" | bc -l)"
