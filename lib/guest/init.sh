#!/bin/sh
# ktest's guest init: the test-facing half of the guest's PID 1. ktest
# writes it into the per-VM directory (.ktest/vm/init). How it starts:
#
#   host root:  the kernel runs the ktest binary itself as PID 1 (through
#               the read-only 9p root); src/guest_init.rs puts a tmpfs
#               overlay over the root, mounts /proc, /sys, /dev..., the
#               per-VM directory at /run/ktest, finds the ports, and execs
#               "sh /run/ktest/init stage2".
#   image root: the image's /bin/sh mounted the per-VM directory at
#               /run/ktest and exec'd us with no argument; the root disk is a
#               qemu snapshot, writable, and nothing reaches the image file.
#               The same setup is done here in shell.
#
# Then it runs the test's subtests from the test's directory and reports
# each one on the virtio-serial port ktest.result. The test's stdout and stderr go to
# the port ktest.output, never to the console: the console carries only the
# kernel's messages and this script's markers ("ktest-guest: ...", keep them
# in sync with src/console.rs), so nothing a test prints can look like a
# kernel crash or a guest error to the host.

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=${TERM:-linux}
export KTEST_DIR=/run/ktest
umask 022

# Ends the VM (qemu runs with -no-reboot), but only inside a ktest VM: the
# kernel command line of every one has the marker (src/plan.rs). A shell
# builtin reads it: an exec costs 50 ms or more under TCG.
reboot_guest() {
	read -r cmdline </proc/cmdline
	case " $cmdline " in
	*" ktest.guest=1 "*) echo b >/proc/sysrq-trigger ;;
	esac
	sleep 10
}

die() {
	echo "ktest-guest: error: $*"
	echo "ktest-guest: end status=125"
	reboot_guest
	exit 1
}

if [ "$1" != stage2 ]; then
	mount -t proc proc /proc 2>/dev/null
	mount -t sysfs sysfs /sys 2>/dev/null
	mount -t devtmpfs devtmpfs /dev 2>/dev/null
	mkdir -p /dev/pts /dev/shm
	mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts 2>/dev/null
	mount -t tmpfs tmpfs /dev/shm 2>/dev/null
	mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
	# The kernel's own module tree, where modprobe looks for it.
	if [ -n "$KTEST_MODULES" ] && read -r release </proc/sys/kernel/osrelease; then
		mkdir -p "/lib/modules/$release"
		mount -t 9p -o trans=virtio,version=9p2000.L,ro "$KTEST_MODULES" "/lib/modules/$release" 2>/dev/null
	fi
	echo ktest >/proc/sys/kernel/hostname
	ip link set lo up 2>/dev/null
	for p in /sys/class/virtio-ports/*; do
		read -r name <"$p/name" || continue
		case $name in
		ktest.result) KTEST_RESULT_PORT=/dev/${p##*/} ;;
		ktest.output) KTEST_OUTPUT_PORT=/dev/${p##*/} ;;
		esac
	done
fi
port=$KTEST_RESULT_PORT
[ -n "$port" ] && [ -n "$KTEST_OUTPUT_PORT" ] ||
	die "no ktest.result/ktest.output virtio-serial ports (is CONFIG_VIRTIO_CONSOLE set?)"

# ktest's assignments: ktest_test, ktest_testdir, ktest_links,
# ktest_output_end, ktest_subtests (names, one per line; ktest_serve=1 to
# run them through one run-tests-serve process) or ktest_single
# (the one subtest's name, for a file without subtests, run with "$@"),
# ktest_kernel_config (set when kernel.config is here) (no test for
# `ktest boot`); ktest_ssh_*
# (src/sshkey.rs) and ktest_shell,
# ktest_term, ktest_rows, ktest_cols (src/guest.rs's session_env).
. "$KTEST_DIR/run.env" || die "cannot read $KTEST_DIR/run.env"

# With a root image, the test's directory comes from the host over 9p, at
# the same path as on the host, with a tmpfs overlay so the test can write
# beside itself without touching the host's files.
if [ -n "$KTEST_TEST_TAG" ] && [ -n "$ktest_testdir" ]; then
	t=/run/ktest-test
	{ mkdir -p $t/lower $t/rw "$ktest_testdir" &&
		mount -t 9p -o trans=virtio,version=9p2000.L,ro "$KTEST_TEST_TAG" $t/lower &&
		mount -t tmpfs -o mode=0755 tmpfs $t/rw && mkdir $t/rw/upper $t/rw/work &&
		mount -t overlay -o lowerdir=$t/lower,upperdir=$t/rw/upper,workdir=$t/rw/work \
			ktest-test "$ktest_testdir"; } || die "cannot mount the test's directory $ktest_testdir"
fi

# --- Network and sshd, for `ktest ssh`. ---
# qemu's user network is always 10.0.2.0/24 with the host at .2 and its DNS
# at .3, so static settings do and no DHCP client is needed. All of it runs
# in the background and nothing waits for it: a run that never uses ssh
# pays for one fork. (`ktest ssh` waits for sshd's greeting itself.)

ssh_unavailable() {
	# src/attach/ssh.rs looks for this line in the console log.
	echo "ktest-guest: ssh unavailable: $*"
}

# Every exec is slow under TCG, so this part runs as few programs as it
# can: one ip for the whole network (image root only; with the host's root
# ktest's PID 1 did it), one mkdir, sshd.
net_up() {
	printf '%s\n' "link set eth0 up" "addr add 10.0.2.15/24 dev eth0" \
		"route add default via 10.0.2.2" | ip -batch - || return
	# A link into systemd-resolved's /run would lead nowhere in the guest.
	[ -L /etc/resolv.conf ] && rm -f /etc/resolv.conf
	echo "nameserver 10.0.2.3" >/etc/resolv.conf
}

# Without PAM (sshd -f /dev/null), sshd refuses even key logins to an
# account whose shadow password is locked ("!..."), as root's often is;
# "*" means "no password login" without the lock. Only the guest's copy
# changes.
unlock_root() {
	while IFS=: read -r user pw rest; do
		[ "$user" = root ] || continue
		case $pw in
		!*) sed -i 's/^root:[^:]*:/root:*:/' /etc/shadow ;;
		esac
	done 2>/dev/null </etc/shadow
}

# The host's sshd (or the image's), with none of its configuration: ktest's
# host key (shared by every guest, pinned in ktest's known_hosts) and
# ktest's client key for root, both copied to root-owned files because
# sshd refuses keys owned by another user, as the host's files over 9p are.
start_sshd() {
	d=/run/ktest-ssh
	# /run/sshd: sshd's privilege separation directory, root's alone.
	(umask 077 && mkdir -p $d /run/sshd &&
		printf '%s\n' "$ktest_ssh_host_key" >$d/host_key &&
		printf '%s\n' "$ktest_ssh_authorized" >$d/authorized_keys) || return
	unlock_root
	set -- -f /dev/null -h $d/host_key -E $d/sshd.log -o PidFile=$d/sshd.pid \
		-o AuthorizedKeysFile=$d/authorized_keys \
		-o PermitRootLogin=prohibit-password -o "Subsystem sftp internal-sftp"
	# -r: no re-exec of sshd for every connection, a whole exec (0.3 s
	# under TCG) off each login; OpenSSH 9.8 dropped the option.
	/usr/sbin/sshd -r "$@" 2>/dev/null || /usr/sbin/sshd "$@" ||
		ssh_unavailable "sshd failed: $(tail -n 2 $d/sshd.log 2>/dev/null)"
}

if [ -n "$ktest_ssh_unavailable" ]; then
	ssh_unavailable "$ktest_ssh_unavailable"
elif [ ! -x /usr/sbin/sshd ]; then
	ssh_unavailable "/usr/sbin/sshd not found (install openssh-server on the host, or in the root image)"
elif [ "$KTEST_NET" = up ]; then
	# ktest's PID 1 (src/guest_init.rs) configured eth0 already.
	start_sshd </dev/null >/dev/console 2>&1 &
elif [ -n "$KTEST_NET" ]; then
	ssh_unavailable "cannot configure eth0: $KTEST_NET (is CONFIG_VIRTIO_NET set?)"
elif ! command -v ip >/dev/null; then
	ssh_unavailable "no network: ip not found (install iproute2)"
else
	(net_up || ssh_unavailable "cannot configure eth0 (is CONFIG_VIRTIO_NET set?)"; start_sshd) \
		</dev/null >/dev/console 2>&1 &
fi

# --- The subtests. ---
# Each runs as its own process with its stdout and stderr on the output
# port. Around each one the init reports on three channels, each in its own
# order: the result port gets "begin NAME TAINT" and "end NAME STATUS
# TAINT" (and the subtest's "info" lines), which decide the verdict; the
# kernel log gets "ktest-guest: subtest-begin/-end NAME" through /dev/kmsg,
# in printk order, so the host can cut the kernel's messages into each
# subtest's share; the output port gets the run's random marker followed by
# "begin NAME"/"end NAME", which cuts the test's output the same way. Only
# builtins run between subtests: every exec costs 50 ms or more under TCG.
# (src/supervise.rs and src/runner/session.rs read all of this.)
# Sets $taint to the kernel's taint flags, or "-". Only bash reads all of
# it (src/guest_init.rs's shell); dash gets the first digit, which must not
# pass for the value.
read_taint() {
	taint=-
	[ -n "$BASH_VERSION" ] && read -r taint </proc/sys/kernel/tainted
}

subtest_begin() {
	: >"$KTEST_SUBTEST_INFO"
	read_taint
	echo "ktest-guest: subtest-begin $1" >/dev/kmsg
	printf '%s begin %s\n' "$ktest_output_end" "$1" >&3
	echo "begin $1 $taint" >&4
}

# subtest_end NAME STATUS
subtest_end() {
	# The subtest's last byte may not have been a newline: the marker may
	# end its last line.
	printf '%s end %s\n' "$ktest_output_end" "$1" >&3
	read_taint
	echo "ktest-guest: subtest-end $1" >/dev/kmsg
	n=0
	while [ $n -lt 32 ] && IFS= read -r line; do
		echo "info $1 $line" >&4
		n=$((n + 1))
	done <"$KTEST_SUBTEST_INFO"
	echo "end $1 $2 $taint" >&4
}

# run_subtest NAME COMMAND...: the subtest as its own process.
run_subtest() {
	name=$1
	shift
	subtest_begin "$name"
	KTEST_SUBTEST=$name "$@" >&3 2>&3 3>&- 4>&-
	subtest_end "$name" $?
}

# One process of the test runs every subtest (SUBTESTS=serve, as ktest's
# shell library answers): a name per line on its stdin, each exit status
# back on its fd 5. No exec per subtest. Needs bash's coproc; the test's
# stdout and stderr still go to the output port.
start_server() {
	coproc KTEST_SERVER { exec "$ktest_test" run-tests-serve 5>&1 >&3 2>&3 3>&- 4>&-; }
}

serve_subtests() {
	start_server
	for subtest in $ktest_subtests; do
		subtest_begin "$subtest"
		status=
		if echo "$subtest" >&"${KTEST_SERVER[1]}"; then
			read -r status <&"${KTEST_SERVER[0]}"
		fi
		if [ -z "$status" ]; then
			# The server died under this subtest: it fails, and a new
			# server runs the rest.
			echo "server ended: the test's run-tests-serve process exited" >>"$KTEST_SUBTEST_INFO"
			status=125
			start_server
		fi
		subtest_end "$subtest" "$status"
	done
	eval "exec ${KTEST_SERVER[1]}>&-"
}

if [ -n "$ktest_test" ]; then
	# REQUIRE'd files appear beside the test; the overlay keeps the host intact.
	echo "$ktest_links" | while IFS= read -r link; do
		[ -n "$link" ] || continue
		name=${link##*/}
		[ -e "$ktest_testdir/$name" ] || ln -s "$link" "$ktest_testdir/$name"
	done

	cd "$ktest_testdir" || die "cannot cd to $ktest_testdir"
	export PATH="$ktest_testdir:$PATH"
	export KTEST_LIB="$KTEST_DIR/ktest.sh" KTEST_SUBTEST_INFO=/run/ktest-subtest-info
	[ -n "$ktest_kernel_config" ] && export KTEST_KERNEL_CONFIG="$KTEST_DIR/kernel.config"
	# Virtio ports open once at a time, and the test's background
	# processes may keep one open: open both once, here.
	# (A failed exec redirection would end this shell, PID 1: check first.)
	[ -w "$KTEST_OUTPUT_PORT" ] || die "cannot write $KTEST_OUTPUT_PORT"
	[ -w "$port" ] || die "cannot write $port"
	exec 3>"$KTEST_OUTPUT_PORT" 4>"$port"
	read -r release </proc/sys/kernel/osrelease && echo "kernel $release" >&4
	echo "ktest-guest: start $ktest_test"
	if [ -n "$ktest_serve" ] && [ -n "$BASH_VERSION" ]; then
		serve_subtests
	elif [ -n "$ktest_subtests" ]; then
		# Names are validated on the host: no blanks, no glob characters.
		for subtest in $ktest_subtests; do
			run_subtest "$subtest" "$ktest_test" run-tests "$subtest"
		done
	else
		run_subtest "$ktest_single" "$ktest_test" "$@"
	fi
	# Tells the host it has all of the test's output (src/supervise.rs).
	printf '%s\n' "$ktest_output_end" >&3
	echo done >&4
	echo "ktest-guest: end status=0"
else
	cd "$HOME" 2>/dev/null || cd /
fi

# --- The console shell of `ktest run -I` and `ktest boot`. ---
# A login shell in its own session with the serial port as its controlling
# terminal, so Ctrl-C and job control work; leaving it powers the VM off.
if [ -n "$ktest_shell" ]; then
	[ -n "$ktest_term" ] && export TERM="$ktest_term"
	console=/dev/${ktest_console:-ttyS0}
	[ -n "$ktest_rows" ] && stty rows "$ktest_rows" cols "$ktest_cols" <"$console" 2>/dev/null
	shell=/bin/sh
	[ -x /bin/bash ] && shell=/bin/bash
	if command -v setsid >/dev/null; then
		# A subshell is no process group leader, so setsid needs no fork
		# (and so no -w, which busybox's setsid lacks).
		(exec setsid -c $shell -l) <>"$console" >&0 2>&1
	else
		echo "ktest-guest: no setsid: the shell has no job control (install util-linux)"
		$shell -l
	fi
fi

# After a test, ktest stops qemu itself once it has the status and has seen
# the end marker on the console. The console may still be draining the
# test's last lines from the tty buffer, which a reboot now would lose
# (printk's own "sysrq: Resetting" overtakes them), so the guest reboots
# (qemu runs with -no-reboot: that ends it) only if ktest has not stopped
# it by then. After a console shell, nobody is waiting: end at once.
[ -n "$ktest_test" ] && [ -z "$ktest_shell" ] && sleep 5
reboot_guest
