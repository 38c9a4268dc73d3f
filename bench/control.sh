#!/bin/bash
# Control round trips against a running guest, medians of RUNS (default
# 101) runs, each a whole command as a script runs it (exec included):
#  - `lkvm pause NAME` then `lkvm resume NAME`;
#  - `lkvm debug NAME --regs`.
# Target: each under 5 ms.
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-101}
make -s lkvm >/dev/null
tmp=$(mktemp -d)
export LKVM_HOME=$tmp/home
name=bench-$$
trap './lkvm stop --wait "$name" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT

# A guest that keeps running and printing: the test kernel's heartbeat
# where it has one, else its serial-input check (60 s of waiting).
if grep -qa 'heartbeat' x86-kernel/test-kernel.elf; then
	params=tests=heartbeat
else
	params=tests=serial-input
fi
./lkvm run --detach --name "$name" -p "$params" >/dev/null

us() { # the microseconds of $EPOCHREALTIME
	local t=${EPOCHREALTIME/./}
	echo "$t"
}

median() { # numbers on stdin
	sort -n | awk '{a[NR]=$1} END {
		if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'
}

pr=$tmp/pause-resume
regs=$tmp/regs
for ((i = 0; i < RUNS; i++)); do
	t0=$(us)
	./lkvm pause "$name"
	./lkvm resume "$name"
	t1=$(us)
	./lkvm debug "$name" --regs >/dev/null
	t2=$(us)
	echo $((t1 - t0)) >>"$pr"
	echo $((t2 - t1)) >>"$regs"
done
# The floor: starting lkvm at all (a command that does not connect).
for ((i = 0; i < RUNS; i++)); do
	t0=$(us)
	./lkvm version >/dev/null
	t1=$(us)
	echo $((t1 - t0)) >>"$tmp/exec"
done

ms() { awk '{ printf "%.2f ms", $1 / 1000 }'; }
printf 'control round trips, median of %d (guest: %s)\n' "$RUNS" "$params"
printf '  %-34s %s\n' "lkvm pause + lkvm resume" "$(median <"$pr" | ms)"
printf '  %-34s %s\n' "lkvm debug --regs" "$(median <"$regs" | ms)"
printf '  %-34s %s\n' "lkvm version (exec floor, once)" "$(median <"$tmp/exec" | ms)"
