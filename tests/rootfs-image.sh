#!/bin/bash
# Builds (once) the Debian root image the end-to-end tests boot, with
# create-vm-image, and prints its path on stdout (everything else goes to
# stderr).
#
# The image is cached as ${XDG_CACHE_HOME:-~/.cache}/ktest/rootfs/KEY/root.img
# where KEY hashes what decides its contents: the rootfs-builder sources
# (rootfs-builder/src/**, rootfs-builder/Cargo.toml), this script, the
# release, architecture, extra packages and size. Building needs root and
# the Debian mirror (about 1-2 minutes here); later calls print the cached
# path at once.
#
# Settings (environment):
#   KTEST_ROOTFS_RELEASE   Debian codename (default: the host's)
#   KTEST_ROOTFS_ARCH      Debian architecture (default: the host's; another
#                          needs qemu-user-static and binfmt_misc, as
#                          scripts/install-deps.sh sets up)
#   KTEST_ROOTFS_PACKAGES  extra packages, comma separated (default: none)
#   KTEST_ROOTFS_SIZE      file system size (default: 4G; the file is sparse)
#   KTEST_ROOTFS_MIRROR    Debian mirror (default: create-vm-image's)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
self=$here/$(basename "$0")

die() {
	echo "rootfs-image.sh: $*" >&2
	exit 1
}

release=${KTEST_ROOTFS_RELEASE:-}
if [ -z "$release" ]; then
	release=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
	[ -n "$release" ] || die "cannot tell the host's Debian release; set KTEST_ROOTFS_RELEASE"
fi
packages=${KTEST_ROOTFS_PACKAGES:-}
size=${KTEST_ROOTFS_SIZE:-4G}
mirror=${KTEST_ROOTFS_MIRROR:-}
arch=${KTEST_ROOTFS_ARCH:-}
if [ -z "$arch" ]; then
	arch=$(dpkg --print-architecture 2>/dev/null) || die "dpkg not found: is this a Debian host?"
fi

key=$(
	cd "$repo"
	find rootfs-builder/src -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
	sha256sum rootfs-builder/Cargo.toml
	# Its content, not its path: clones elsewhere share the image.
	sha256sum <"$self"
	printf 'release=%s\narch=%s\npackages=%s\nsize=%s\nmirror=%s\n' \
		"$release" "$arch" "$packages" "$size" "$mirror"
)
key=$(printf '%s\n' "$key" | sha256sum | cut -c1-16)
out=${XDG_CACHE_HOME:-$HOME/.cache}/ktest/rootfs/$key
img=$out/root.img

if [ -f "$img" ]; then
	echo "$img"
	exit 0
fi

[ "$(id -u)" = 0 ] || die "building $img needs root (debootstrap); run this script as root"

mkdir -p "$out"
# Two test runs starting at once build the image once.
exec 9>"$out/.lock"
flock 9
if [ -f "$img" ]; then
	echo "$img"
	exit 0
fi

echo "rootfs-image.sh: building $img ($release $arch${packages:+, +$packages})" >&2
(cd "$repo" && cargo build --release --quiet -p rootfs-builder) >&2
bin=${CARGO_TARGET_DIR:-$repo/target}/release/create-vm-image
[ -x "$bin" ] || die "$bin was not built"

args=(--release "$release" --arch "$arch" --size "$size")
[ -z "$packages" ] || args+=(--packages "$packages")
[ -z "$mirror" ] || args+=(--mirror "$mirror")
# --force: a root.img left here by an interrupted older build is ours.
"$bin" "${args[@]}" --force "$img" >&2
echo "$img"
