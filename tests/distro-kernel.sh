#!/bin/bash
# Unpacks (once) Debian's generic x86_64 kernel package, the distribution
# kernel the end-to-end tests boot with its modules, and prints the
# directory: boot/vmlinuz-RELEASE, boot/config-RELEASE and
# lib/modules/RELEASE, the layout of an installed kernel (/boot beside
# /lib/modules), with modules.dep made by depmod as the package's postinst
# would.
#
# The package is downloaded and unpacked, never installed: installing a
# kernel on a developer's machine would add a boot entry (and may change
# the default one). Cached as ${XDG_CACHE_HOME:-~/.cache}/ktest/distro/PKG_VERSION;
# later calls print the cached directory at once. Needs apt's package
# lists (scripts/install-deps.sh runs apt-get update) and dpkg-deb and
# depmod (kmod).
#
#   KTEST_DISTRO_PACKAGE  the package (default: what linux-image-amd64 depends on)
set -euo pipefail

die() {
	echo "distro-kernel.sh: $*" >&2
	exit 1
}

pkg=${KTEST_DISTRO_PACKAGE:-}
if [ -z "$pkg" ]; then
	pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }')
	[ -n "$pkg" ] || die "apt knows no linux-image-amd64 package; run apt-get update"
fi
version=$(apt-cache policy "$pkg" | awk '/Candidate:/ { if ($2 != "(none)") print $2 }')
[ -n "$version" ] || die "apt offers no version of $pkg; run apt-get update"
command -v depmod >/dev/null || [ -x /sbin/depmod ] || die "depmod not found; apt-get install kmod"

cache=${XDG_CACHE_HOME:-$HOME/.cache}/ktest/distro
dir=$cache/${pkg}_$version
mkdir -p "$cache"
# Two test processes starting at once unpack once.
exec 9>"$cache/.lock"
flock 9

if [ ! -f "$dir/.done" ]; then
	echo "distro-kernel.sh: downloading and unpacking $pkg $version into $dir" >&2
	rm -rf "$dir" "$dir.tmp"
	mkdir -p "$dir.tmp/deb"
	(cd "$dir.tmp/deb" && apt-get download -q "$pkg=$version" >&2) || die "apt-get download $pkg=$version failed"
	dpkg-deb -x "$dir.tmp"/deb/*.deb "$dir.tmp/root"
	release=$(ls "$dir.tmp/root/lib/modules")
	[ -n "$release" ] && [ -f "$dir.tmp/root/boot/vmlinuz-$release" ] || die "$pkg has no boot/vmlinuz-RELEASE beside lib/modules/RELEASE"
	PATH=$PATH:/sbin depmod -b "$dir.tmp/root" "$release"
	mv "$dir.tmp/root" "$dir"
	rm -rf "$dir.tmp"
	touch "$dir/.done"
	# An older kernel's directory is 400 MB that nothing uses any more.
	for old in "$cache"/linux-image-*; do
		[ "$old" = "$dir" ] || rm -rf "$old"
	done
fi
echo "$dir"
