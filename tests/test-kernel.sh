#!/bin/bash
# Builds (once) the minimal kernel the end-to-end tests boot, and prints the
# build directory holding it (the image, vmlinux, vmlinux-gdb.py, .config,
# lib/modules). KTEST_TEST_ARCH chooses the architecture (x86_64, arm64;
# default: the host's), cross-compiled where it is not the host's.
#
# The kernel is Debian's linux-source-6.1, unpacked once into
# ${XDG_CACHE_HOME:-~/.cache}/ktest/linux-source-VERSION and built there by
# `ktest build` itself (tinyconfig + lib/kconfig/ktest.config), so the test
# kernel is exactly what `ktest run` builds from that tree, and the build
# tests reuse it. Each architecture has its own fragment
# (lib/kconfig/ARCH.config; ktest.config for x86_64). ktest keys each build directory by its inputs (base
# config, fragment, options, make variables), so a changed fragment gets a
# fresh build and an unchanged one is make's no-op. A fresh machine builds it
# once (5-10 minutes on 2 cores).
#
# Uses $KTEST_BIN if set (the Rust tests pass their own binary: a nested
# cargo would wait on their build lock), else builds ktest with cargo.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
tarball=/usr/src/linux-source-6.1.tar.xz

if [ ! -r "$tarball" ]; then
	echo "test-kernel.sh: $tarball not found; apt-get install linux-source-6.1" >&2
	exit 1
fi

pkgver=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || stat -c %s "$tarball")
cache=${XDG_CACHE_HOME:-$HOME/.cache}/ktest
src=$cache/linux-source-$pkgver
mkdir -p "$cache"
# Two test processes starting at once unpack and build once.
exec 9>"$cache/.test-kernel.lock"
flock 9

if [ ! -f "$src/.unpacked" ]; then
	echo "test-kernel.sh: unpacking $tarball into $src" >&2
	rm -rf "$src" "$src.tmp"
	mkdir -p "$src.tmp"
	tar -xf "$tarball" -C "$src.tmp" --strip-components=1
	touch "$src.tmp/.unpacked"
	mv "$src.tmp" "$src"
fi

ktest=${KTEST_BIN:-}
if [ -z "$ktest" ]; then
	cargo build --quiet --manifest-path "$repo/Cargo.toml" --bin ktest >&2
	ktest=${CARGO_TARGET_DIR:-$repo/target}/debug/ktest
fi
arch=()
[ -z "${KTEST_TEST_ARCH:-}" ] || arch=(--arch "$KTEST_TEST_ARCH")
echo "test-kernel.sh: ktest build ${arch[*]} in $src (a no-op when cached)" >&2
(cd "$src" && "$ktest" build "${arch[@]}") >&2
readlink -f "$src/.ktest/build/last"
