#!/bin/bash
# Installs the Debian packages ktest, its tests and its example tests need.
# Run on Debian bookworm or later, as root or as a user with sudo.
# Idempotent: a second run installs nothing and says so.
set -euo pipefail
export LC_ALL=C
if [ "$(id -u)" != 0 ]; then
	exec sudo "$0" "$@"
fi
export DEBIAN_FRONTEND=noninteractive

packages=(
	qemu-system-x86 qemu-utils
	gdb openssh-server openssh-client
	busybox-static socat cpio
	debootstrap e2fsprogs bcache-tools
	linux-source-6.1 build-essential flex bison bc libelf-dev libssl-dev libncurses-dev xz-utils kmod
	python3 iproute2 procps util-linux
	# ktest bisect (and its test repository).
	git
	# arm64 guests: the emulator, a cross compiler for ktest build --arch
	# arm64, a gdb that reads arm64's vmlinux, and qemu-user through
	# binfmt_misc for create-vm-image --arch arm64 (debootstrap runs the
	# new system's programs).
	qemu-system-arm gcc-aarch64-linux-gnu gdb-multiarch qemu-user-static binfmt-support
)

# Installed version of a package, empty if it is not installed.
installed() {
	{ dpkg-query -W -f='${db:Status-Abbrev} ${Version}\n' "$1" 2>/dev/null || true; } |
		awk '$1 == "ii" { print $2 }'
}

# Candidate version apt would install, empty if none.
candidate() {
	apt-cache policy "$1" | awk '/Candidate:/ { if ($2 != "(none)") print $2 }'
}

# Whether an apt source offers this exact version of a package.
available() {
	apt-cache madison "$1" | awk -F'|' -v v="$2" '{ gsub(/ /, "", $2) } $2 == v { found = 1 } END { exit !found }'
}

snapshot() {
	dpkg-query -W -f='${db:Status-Abbrev} ${Package} ${Version}\n' | awk '$1 == "ii" { print $2, $3 }' | sort
}

echo "install-deps: apt-get update"
apt-get update -q >/dev/null

# qemu-utils and qemu-system-common must come from the same qemu release:
# newer qemu-utils (a backport, as some machine images ship) Breaks the older
# qemu-system-common that qemu-system-x86 pulls in, and apt then gives up.
# Install qemu-utils at the version of the qemu-system-x86 we get, allowing
# the downgrade; a matching pair (e.g. both from backports) is left alone.
extra=()
system=$(installed qemu-system-x86)
[ -n "$system" ] || system=$(candidate qemu-system-x86)
utils=$(installed qemu-utils)
if [ -z "$system" ]; then
	echo "install-deps: no apt source offers qemu-system-x86; add Debian's main archive" >&2
	exit 1
fi
if [ -n "$utils" ] && [ "$utils" != "$system" ]; then
	if available qemu-utils "$system"; then
		echo "install-deps: qemu-utils $utils does not match qemu-system-x86 $system; installing qemu-utils $system"
		packages=("${packages[@]/#qemu-utils/qemu-utils=$system}")
		extra+=(--allow-downgrades)
	else
		echo "install-deps: qemu-utils $utils is installed and no source offers version $system to match qemu-system-x86; apt may refuse" >&2
	fi
fi

before=$(snapshot)
apt-get install -y -q --no-install-recommends "${extra[@]}" "${packages[@]}"
after=$(snapshot)

changes=$(join -a1 -a2 -e- -o 0,1.2,2.2 <(echo "$before") <(echo "$after") |
	awk '$2 != $3 { if ($2 == "-") print "  installed " $1 " " $3; else if ($3 == "-") print "  removed " $1 " " $2; else print "  changed " $1 " " $2 " -> " $3 }')
if [ -z "$changes" ]; then
	echo "install-deps: everything was already installed; nothing changed"
else
	echo "install-deps: $(echo "$changes" | wc -l) package(s) changed:"
	echo "$changes"
fi

# binfmt-support registers qemu-user's handlers when binfmt_misc is mounted;
# a container or a minimal host may not have it mounted, and the handler
# may have been registered before it was.
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
	mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null ||
		echo "install-deps: cannot mount binfmt_misc; create-vm-image --arch arm64 will not work here" >&2
fi
if [ -e /proc/sys/fs/binfmt_misc/register ] &&
	! head -1 /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null | grep -qx enabled; then
	if update-binfmts --enable qemu-aarch64; then
		echo "install-deps: enabled binfmt_misc's qemu-aarch64 (arm64 programs run through qemu-user)"
	else
		echo "install-deps: cannot enable binfmt_misc's qemu-aarch64; create-vm-image --arch arm64 will not work here" >&2
	fi
fi
