#!/bin/sh
# ktest's guest init. ktest writes this file into the per-VM directory
# (.ktest/vm/init) and the kernel runs it as PID 1:
#
#   host root:  the host's / is the guest's root, read-only over 9p; stage 1
#               puts a tmpfs overlay on top and pivots into it.
#   image root: the image's /bin/sh mounted the per-VM directory at
#               /run/ktest and exec'd us from there; the root disk is a qemu
#               snapshot, so it is writable and nothing reaches the image file.
#
# Then it runs the test from its own directory and reports the exit status on
# the virtio-serial port ktest.result. The console is the test's terminal.
# Markers on the console ("ktest-guest: ...") let the host tell ktest's
# output from the test's; keep them in sync with src/console.rs.

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=${TERM:-linux}
umask 022

die() {
	echo "ktest-guest: error: $*"
	echo "ktest-guest: end status=125"
	echo b >/proc/sysrq-trigger
	sleep 10
}

stage1_host() {
	mount -t tmpfs -o mode=0755 ktest-rw /tmp || die "cannot mount the overlay tmpfs"
	mkdir -p /tmp/upper /tmp/work /tmp/root
	mount -t overlay -o lowerdir=/,upperdir=/tmp/upper,workdir=/tmp/work ktest-root /tmp/root ||
		die "cannot mount the root overlay (is CONFIG_OVERLAY_FS set?)"
	mkdir -p /tmp/root/.oldroot
	cd /tmp/root || die "cd /tmp/root"
	pivot_root . .oldroot || die "pivot_root failed"
	exec chroot . /bin/sh "$KTEST_DIR/init" stage2
}

# PID 1 starts here.
[ "$KTEST_ROOT" = image ] && KTEST_DIR=/run/ktest
if [ "$1" != stage2 ]; then
	mount -t proc proc /proc 2>/dev/null
	case "$KTEST_ROOT" in
	host) stage1_host ;;
	esac
fi

mount -t proc proc /proc 2>/dev/null
mount -t sysfs sysfs /sys 2>/dev/null
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts 2>/dev/null
mount -t tmpfs tmpfs /dev/shm 2>/dev/null
[ -d /.oldroot ] && umount -l /.oldroot 2>/dev/null && rmdir /.oldroot 2>/dev/null
# With the host's root, the host's /tmp and /run show through the overlay
# (writable, changes stay in the guest). /run gets a fresh tmpfs so host
# daemons' pid files and sockets do not confuse the guest, unless the VM's
# own directory lives there.
case "$KTEST_ROOT:$KTEST_DIR" in
host:/run/*) ;;
host:*) mount -t tmpfs -o mode=0755 tmpfs /run ;;
esac
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
if [ -n "$KTEST_MODULES" ]; then
	mkdir -p /lib/modules
	mount -t 9p -o trans=virtio,version=9p2000.L,ro "$KTEST_MODULES" /lib/modules 2>/dev/null
fi
hostname ktest 2>/dev/null || echo ktest >/proc/sys/kernel/hostname
ip link set lo up 2>/dev/null

# ktest's assignments: ktest_test, ktest_testdir, ktest_links, "$@".
. "$KTEST_DIR/run.env" || die "cannot read $KTEST_DIR/run.env"

port=
for p in /sys/class/virtio-ports/*; do
	[ "$(cat "$p/name" 2>/dev/null)" = ktest.result ] && port=/dev/${p##*/}
done
[ -n "$port" ] || die "no ktest.result virtio-serial port (is CONFIG_VIRTIO_CONSOLE set?)"

# REQUIRE'd files appear beside the test; the overlay keeps the host intact.
echo "$ktest_links" | while IFS= read -r link; do
	[ -n "$link" ] || continue
	name=${link##*/}
	[ -e "$ktest_testdir/$name" ] || ln -s "$link" "$ktest_testdir/$name"
done

cd "$ktest_testdir" || die "cannot cd to $ktest_testdir"
export PATH="$ktest_testdir:$PATH"
echo "ktest-guest: start $ktest_test"
"$ktest_test" "$@"
status=$?
echo "ktest-guest: end status=$status"
echo "status $status" >"$port"
# qemu runs with -no-reboot, so an immediate reboot is the fastest way out;
# the host has the verdict already and only needs the console drained, which
# it waits for by watching for the end marker above.
echo b >/proc/sysrq-trigger
sleep 10
