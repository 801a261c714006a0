#!/bin/bash
# Builds (once) the minimal x86_64 kernel the end-to-end tests boot, from
# Debian's linux-source-6.1 package, and prints the directory holding it
# (bzImage, vmlinux, .config).
#
# The result is cached under ${XDG_CACHE_HOME:-~/.cache}/ktest/test-kernel/KEY
# where KEY hashes everything that decides the kernel: the source tarball's
# package version, the config fragment and this script. A fresh machine builds
# it once (about 5 minutes on 2 cores); later calls print the cached path.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
fragment=$here/../lib/kconfig/ktest.config
tarball=/usr/src/linux-source-6.1.tar.xz

if [ ! -r "$tarball" ]; then
	echo "test-kernel.sh: $tarball not found; apt-get install linux-source-6.1" >&2
	exit 1
fi

pkgver=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || stat -c %s "$tarball")
key=$( (echo "$pkgver"; cat "$fragment" "$0") | sha256sum | cut -c1-16)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/ktest
out=$cache/test-kernel/$key

if [ -f "$out/bzImage" ]; then
	echo "$out"
	exit 0
fi

mkdir -p "$cache"
src=$cache/linux-source-$pkgver
if [ ! -f "$src/.unpacked" ]; then
	echo "test-kernel.sh: unpacking $tarball into $src" >&2
	rm -rf "$src" "$src.tmp"
	mkdir -p "$src.tmp"
	tar -xf "$tarball" -C "$src.tmp" --strip-components=1
	touch "$src.tmp/.unpacked"
	mv "$src.tmp" "$src"
fi

build=$(mktemp -d "$cache/test-kernel-build.XXXXXX")
trap 'rm -rf "$build"' EXIT
echo "test-kernel.sh: building the test kernel in $build (about 5 minutes)" >&2
make -C "$src" O="$build" -s tinyconfig >&2
"$src/scripts/kconfig/merge_config.sh" -m -O "$build" "$build/.config" "$fragment" >/dev/null
make -C "$src" O="$build" -s olddefconfig >&2
# Fail loudly if any requested option did not survive olddefconfig.
missing=0
while IFS= read -r line; do
	case "$line" in CONFIG_*=*) ;; *) continue ;; esac
	grep -qxF "$line" "$build/.config" || { echo "test-kernel.sh: $line did not survive olddefconfig" >&2; missing=1; }
done <"$fragment"
[ "$missing" = 0 ]
make -C "$src" O="$build" -s -j"$(nproc)" bzImage vmlinux scripts_gdb >&2

mkdir -p "$out.tmp"
cp "$build/arch/x86/boot/bzImage" "$build/vmlinux" "$build/.config" "$out.tmp/"
mv "$out.tmp" "$out"
echo "$out"
