# Helpers shared by the benchmark scripts; source it.

# The median of the numbers on stdin, one per line.
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# timeit CMD...: prints CMD's wall time in seconds. If CMD fails, shows its
# output and ends the benchmark: a failed run is not a measurement.
timeit() {
	local s e out
	out=$(mktemp)
	s=$(date +%s.%N)
	"$@" >"$out" 2>&1 || { echo "bench: failed: $*" >&2; cat "$out" >&2; rm -f "$out"; exit 1; }
	e=$(date +%s.%N)
	rm -f "$out"
	echo "$e - $s" | bc
}

# trivial_test PATH MEM: writes the benchmarks' trivial passing test at
# PATH (its directory is created), declaring MEM=MEM.
trivial_test() {
	mkdir -p "$(dirname "$1")"
	printf '#!/bin/sh\n[ "$1" = deps ] && { echo MEM=%s; exit 0; }\necho ok\n' "$2" >"$1"
	chmod +x "$1"
}
