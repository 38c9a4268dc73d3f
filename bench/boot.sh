#!/bin/bash
# Boot time and memory of lkvm beside the ioctl floor and QEMU.
# Prints medians of RUNS runs (default 11) of:
#  - a flat real-mode guest that prints one line and exits through port
#    0xf4: floor (bench/floor.c; also linked statically, with the
#    in-kernel irqchip and PIT, and with the split irqchip) vs lkvm, exec
#    to first byte and to exit, lkvm's first byte without its seccomp
#    filters (--no-seccomp), and lkvm with the kernel's irqchip and PIT
#    (--irqchip kernel) instead of its own on the split irqchip;
#  - the bundled test kernel running its serial check: lkvm vs QEMU;
#  - lkvm's peak resident memory for both guests.
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-11}
B=build/bench
make -s lkvm $B/boottime $B/floor $B/floor-static >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export LKVM_HOME=$tmp/home

# The flat guest: print "hello from a flat guest\n", exit with 0.
{
	printf '\xba\xf8\x03'
	msg="hello from a flat guest"
	for ((i = 0; i < ${#msg}; i++)); do
		printf "\\xb0\\x$(printf %02x "'${msg:i:1}")\\xee"
	done
	printf '\xb0\x0a\xee\xba\xf4\x00\xb0\x00\xee\xf4'
} >"$tmp/flat"

# median FILE COLUMN
median() {
	cut -d' ' -f"$2" "$1" | sort -n | awk '{a[NR]=$1} END {
		if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'
}

# The configurations run in turn within each round, so that a change in
# the machine's load falls on all of them alike.
names=()
cmds=()
expect=()
add() { # name expected-status cmd...
	names+=("$1")
	expect+=("$2")
	shift 2
	cmds+=("$*")
}
add floor 1 $B/floor "$tmp/flat" 128
add floor-static 1 $B/floor-static "$tmp/flat" 128
add floor-irq 1 $B/floor -i "$tmp/flat" 128
add floor-split 1 $B/floor -s "$tmp/flat" 128
add lkvm-flat 1 ./lkvm run -m 128 -k "$tmp/flat"
# The same without the seccomp filters: their share of start-up.
add lkvm-flat-nosec 1 ./lkvm run --no-seccomp -m 128 -k "$tmp/flat"
add lkvm-flat-kirq 1 ./lkvm run --irqchip kernel -m 128 -k "$tmp/flat"
add lkvm-tk 0 ./lkvm run -m 128 -p tests=serial
qemu=$(command -v qemu-system-x86_64 || true)
if [ -n "$qemu" ]; then
	add qemu-tk 0 "$qemu" -accel kvm -M pc -m 128 -nographic -no-reboot \
		-nodefaults -serial stdio -monitor none \
		-device isa-debug-exit,iobase=0xf4,iosize=4 \
		-kernel x86-kernel/test-kernel.elf -append tests=serial
fi
for n in "${names[@]}"; do : >"$tmp/$n"; done
for ((r = 0; r < RUNS; r++)); do
	for i in "${!names[@]}"; do
		# QEMU takes seconds a run: a third as many rounds.
		[ "${names[i]}" = qemu-tk ] && ((r % 3)) && continue
		$B/boottime ${cmds[i]} >>"$tmp/${names[i]}"
	done
done
for i in "${!names[@]}"; do
	st=$(median "$tmp/${names[i]}" 6)
	if [ "$st" != "${expect[i]}" ]; then
		echo "bench: ${names[i]} exited with status $st, expected ${expect[i]}" >&2
		exit 1
	fi
done

f1=$(median "$tmp/floor" 1); fe=$(median "$tmp/floor" 2)
s1=$(median "$tmp/floor-static" 1); se=$(median "$tmp/floor-static" 2)
i1=$(median "$tmp/floor-irq" 1); ie=$(median "$tmp/floor-irq" 2)
p1=$(median "$tmp/floor-split" 1); pe=$(median "$tmp/floor-split" 2)
l1=$(median "$tmp/lkvm-flat" 1); le=$(median "$tmp/lkvm-flat" 2)
lr=$(median "$tmp/lkvm-flat" 3)
t1=$(median "$tmp/lkvm-tk" 1); te=$(median "$tmp/lkvm-tk" 2)
tr=$(median "$tmp/lkvm-tk" 3)
# CPU time, user and system (the kernel's, with the guest's emulated
# CPL-0 code): user time alone comes in 4 ms ticks here.
awk '{ print $4 + $5 }' "$tmp/lkvm-tk" >"$tmp/lkvm-tk-cpu"
tu=$(median "$tmp/lkvm-tk-cpu" 1)
echo "boot time, median of $RUNS runs (ms):"
printf '  flat guest   floor  first byte %7.2f  exit %7.2f\n' "$f1" "$fe"
printf '  flat guest   floor, linked statically  first byte %7.2f  exit %7.2f\n' "$s1" "$se"
printf '  flat guest   floor with irqchip and PIT  first byte %7.2f  exit %7.2f\n' "$i1" "$ie"
printf '  flat guest   floor with the split irqchip (local APICs only)  first byte %7.2f  exit %7.2f\n' "$p1" "$pe"
printf '  flat guest   lkvm   first byte %7.2f  exit %7.2f\n' "$l1" "$le"
printf '    lkvm / floor:                 first byte %.2fx  exit %.2fx\n' \
	"$(echo "$l1 / $f1" | bc -l)" "$(echo "$le / $fe" | bc -l)"
printf '    lkvm / static floor:          first byte %.2fx  exit %.2fx\n' \
	"$(echo "$l1 / $s1" | bc -l)" "$(echo "$le / $se" | bc -l)"
printf '    lkvm / floor with irqchip:    first byte %.2fx  exit %.2fx\n' \
	"$(echo "$l1 / $i1" | bc -l)" "$(echo "$le / $ie" | bc -l)"
printf '    lkvm / floor with split irqchip: first byte %.2fx  exit %.2fx\n' \
	"$(echo "$l1 / $p1" | bc -l)" "$(echo "$le / $pe" | bc -l)"
k1=$(median "$tmp/lkvm-flat-kirq" 1); ke=$(median "$tmp/lkvm-flat-kirq" 2)
printf '  flat guest   lkvm --irqchip kernel  first byte %7.2f  exit %7.2f  (/ floor with irqchip: %.2fx, %.2fx)\n' \
	"$k1" "$ke" "$(echo "$k1 / $i1" | bc -l)" "$(echo "$ke / $ie" | bc -l)"
n1=$(median "$tmp/lkvm-flat-nosec" 1)
printf '  flat guest   lkvm --no-seccomp  first byte %7.2f  (the filters: %.2f ms)\n' \
	"$n1" "$(echo "$l1 - $n1" | bc -l)"
printf '  test kernel  lkvm   first byte %7.2f  exit %7.2f  (lkvm CPU, user and system, guest included: %.2f ms)\n' \
	"$t1" "$te" "$tu"
if [ -n "$qemu" ]; then
	q1=$(median "$tmp/qemu-tk" 1); qe=$(median "$tmp/qemu-tk" 2)
	printf '  test kernel  QEMU   first byte %7.2f  exit %7.2f  (QEMU/lkvm: %.1fx to exit)\n' \
		"$q1" "$qe" "$(echo "$qe / $te" | bc -l)"
fi
echo "lkvm peak resident memory (KiB, includes the guest pages touched):"
echo "  flat guest $lr, test kernel $tr"
