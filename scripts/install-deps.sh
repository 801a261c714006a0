#!/bin/bash
# Installs the Debian packages ktest, its tests and its example tests need.
# Run on Debian bookworm or later, as root or as a user with sudo.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
	exec sudo "$0" "$@"
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
	qemu-system-x86 qemu-utils \
	gdb openssh-server openssh-client \
	busybox-static socat cpio \
	debootstrap e2fsprogs bcache-tools \
	linux-source-6.1 build-essential flex bison bc libelf-dev libssl-dev libncurses-dev xz-utils kmod \
	python3 iproute2 procps util-linux
