#!/bin/bash
# What loading a seccomp program costs the kernel here, and lkvm's own
# programs (bench/seccomp-load.c says how each is made). Medians of RUNS
# (default 31) loads, each in a new process.
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-31}
B=build/bench
make -s $B/seccomp-load >/dev/null
out=$($B/seccomp-load "$RUNS")
us() { awk -v n="$1" '$1 == n { print $3 }' <<<"$out"; }
len() { awk -v n="$1" '$1 == n { print $2 }' <<<"$out"; }
echo "seccomp program loads, median of $RUNS (us):"
awk '{ printf "  %-24s %4u instructions  %7.1f us\n", $1, $2, $3 }' <<<"$out"
printf '  fixed cost %.1f us; compiling %.3f us an instruction (skipped-400 vs skipped-100)\n' \
	"$(us skipped-1)" \
	"$(echo "($(us skipped-400) - $(us skipped-100)) / ($(len skipped-400) - $(len skipped-100))" | bc -l)"
printf '  the cache run: %.2f us per test every call number passes (chain-64 vs chain-16)\n' \
	"$(echo "($(us chain-64) - $(us chain-16)) / 48" | bc -l)"
printf '  lkvm process-wide program: %.1f us, of which the cache run %.1f us\n' \
	"$(us process-wide)" \
	"$(echo "$(us process-wide) - $(us process-wide-uncached)" | bc -l)"
