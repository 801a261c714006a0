#!/bin/sh
# ktest's guest init: the test-facing half of the guest's PID 1. ktest
# writes it into the per-VM directory (.ktest/vm/init). How it starts:
#
#   host root:  the kernel runs the ktest binary itself as PID 1 (through
#               the read-only 9p root); src/guest_init.rs puts a tmpfs
#               overlay over the root, mounts /proc, /sys, /dev..., finds the
#               result port, and execs "sh init stage2".
#   image root: the image's /bin/sh mounted the per-VM directory at
#               /run/ktest and exec'd us with no argument; the root disk is a
#               qemu snapshot, writable, and nothing reaches the image file.
#               The same setup is done here in shell.
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

if [ "$1" != stage2 ]; then
	KTEST_DIR=/run/ktest
	mount -t proc proc /proc 2>/dev/null
	mount -t sysfs sysfs /sys 2>/dev/null
	mount -t devtmpfs devtmpfs /dev 2>/dev/null
	mkdir -p /dev/pts /dev/shm
	mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts 2>/dev/null
	mount -t tmpfs tmpfs /dev/shm 2>/dev/null
	mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
	if [ -n "$KTEST_MODULES" ]; then
		mkdir -p /lib/modules
		mount -t 9p -o trans=virtio,version=9p2000.L,ro "$KTEST_MODULES" /lib/modules 2>/dev/null
	fi
	echo ktest >/proc/sys/kernel/hostname
	ip link set lo up 2>/dev/null
	for p in /sys/class/virtio-ports/*; do
		read -r name <"$p/name" && [ "$name" = ktest.result ] && KTEST_RESULT_PORT=/dev/${p##*/}
	done
fi
port=$KTEST_RESULT_PORT
[ -n "$port" ] || die "no ktest.result virtio-serial port (is CONFIG_VIRTIO_CONSOLE set?)"

# ktest's assignments: ktest_test, ktest_testdir, ktest_links, "$@".
. "$KTEST_DIR/run.env" || die "cannot read $KTEST_DIR/run.env"

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
