#!/bin/bash
# Makes (once) the git kernel repository the bisect tests run `ktest bisect`
# in, and prints its path: Debian's linux-source-6.1 as a first commit,
# then five commits whose story the tests know:
#
#   base   linux-source-6.1 as Debian ships it       good
#   A      a comment in fs/proc/uptime.c              good
#   B      fs/proc/uptime.c no longer compiles        does not build: skip
#   C      B's breakage mended                        good
#   D      /proc/version says "Lunix"                 the regression: bad
#   E      a comment in fs/proc/version.c             bad
#
# The regression is one ktest's own guest does not notice (it reads
# /proc/cmdline, so breaking that would be a crash, not a test failure).
#
# The repository is cached in ${XDG_CACHE_HOME:-~/.cache}/ktest, keyed by
# the package's version and this script's content, so a bisect test's
# worktree and build directory (in the repository's .ktest/bisect) are
# reused by the next run; nothing needs the cache.
set -euo pipefail

tarball=/usr/src/linux-source-6.1.tar.xz
if [ ! -r "$tarball" ]; then
	echo "bisect-repo.sh: $tarball not found; apt-get install linux-source-6.1" >&2
	exit 1
fi
command -v git >/dev/null || { echo "bisect-repo.sh: git not found; apt-get install git" >&2; exit 1; }
pkgver=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || stat -c %s "$tarball")
key=$(sha256sum "$0" | cut -c1-12)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/ktest
repo=$cache/bisect-linux-$pkgver-$key
mkdir -p "$cache"
exec 9>"$cache/.bisect-repo.lock"
flock 9

if [ ! -f "$repo/.ktest-bisect-repo" ]; then
	echo "bisect-repo.sh: making $repo" >&2
	rm -rf "$repo" "$repo.tmp"
	mkdir -p "$repo.tmp"
	tar -xf "$tarball" -C "$repo.tmp" --strip-components=1
	g() { git -C "$repo.tmp" -c user.name=ktest -c user.email=ktest@localhost "$@"; }
	g init -q -b master
	# Debian's tree ignores everything (/* in .gitignore): add it all anyway.
	g add -f -A .
	g commit -q -m "linux-source-6.1 as Debian ships it"
	g tag base
	commit() { g commit -q -a -m "$1"; }
	sed -i '1a /* ktest bisect test: a harmless comment. */' "$repo.tmp/fs/proc/uptime.c"
	commit "proc: a comment in uptime.c"
	sed -i 's|^/\* ktest bisect test: a harmless comment. \*/$|#error "ktest bisect test: this commit does not build"|' "$repo.tmp/fs/proc/uptime.c"
	commit "proc: uptime.c does not compile"
	sed -i 's|^#error "ktest bisect test: this commit does not build"$|/* ktest bisect test: mended. */|' "$repo.tmp/fs/proc/uptime.c"
	commit "proc: uptime.c compiles again"
	sed -i 's|^\t\tutsname()->sysname,$|\t\t"Lunix", /* ktest bisect test: the regression. */|' "$repo.tmp/fs/proc/version.c"
	grep -q "the regression" "$repo.tmp/fs/proc/version.c"
	commit "proc: /proc/version says Lunix"
	sed -i '1a /* ktest bisect test: a harmless comment. */' "$repo.tmp/fs/proc/version.c"
	commit "proc: a comment in version.c"
	touch "$repo.tmp/.ktest-bisect-repo"
	mv "$repo.tmp" "$repo"
fi
echo "$repo"
