#!/bin/bash
# virtio-9p through the test kernel's p9bench check (x86-kernel/p9.c):
# a 64 MiB file written and read back in 128 KiB requests, and metadata
# operations (create, stat, remove of one file), one request in flight;
# lkvm against QEMU's -fsdev local (security_model=none) doing the same
# guest work in the same run. Both on virtio-mmio (lkvm --virtio-transport
# mmio, QEMU microvm, which boots through qboot in well under a second).
#
# Throughput is timed by the host from the guest's "# p9bench: start"
# line to its result line (bench/stamp.py), so the noise of whole boots
# does not bury it. CPU is the workload's boot minus the same boot that
# sets up the share and does no I/O (p9bench_mib=0 / p9bench_n=0).
# Medians of RUNS runs. CPU is the VMM process's user + system time (getrusage of
# the child, bench/boottime.c): the VMM's server threads, and also the
# guest's vCPU, which polls the used ring at CPL 0 while it waits (on
# this host every emulated CPL-0 instruction is charged to the VMM), so
# "CPU per op" is an upper bound for both VMMs and the ratio says more
# than the absolute figure.
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
MIB=${MIB:-64}
META=${META:-200}
MEM=256
B=build/bench
K=x86-kernel/test-kernel.elf
make -s lkvm $K >/dev/null
STAMP="bench/stamp.py ^#.p9bench:.start ^ok.1.-.p9bench"
tmp=$(mktemp -d /var/tmp/lkvm-9p.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export LKVM_HOME=$tmp/home
share=$tmp/share
mkdir -p "$share"

qemu=$(command -v qemu-system-x86_64 || true)

kargs() { # op n
	if [ "$1" = meta ]; then
		echo "tests=p9bench p9bench_op=meta p9bench_n=$2"
	else
		echo "tests=p9bench p9bench_op=$1 p9bench_mib=$2"
	fi
}

run_vmm() { # engine log op n
	local engine=$1 log=$2
	shift 2
	if [ "$engine" = lkvm ]; then
		$STAMP ./lkvm run -k $K -m $MEM --virtio-transport mmio \
			--9p "$share,bench" --console-log "$log" -p "$(kargs "$@")"
	else
		$STAMP "$qemu" -accel kvm -M microvm,acpi=off -m $MEM \
			-display none -nodefaults -monitor none \
			-chardev stdio,id=con,logfile="$log" -serial chardev:con \
			-no-reboot -device isa-debug-exit,iobase=0xf4,iosize=4 \
			-fsdev local,id=fs0,path="$share",security_model=none \
			-device virtio-9p-device,fsdev=fs0,mount_tag=bench \
			-kernel $K -append "$(kargs "$@")"
	fi
}

. bench/lib.bash	# median, measure

# measure NAME engine op n (bench/lib.bash); a read needs the file, a
# write starts from none.
FAIL_LINES='^not ok|lkvm:'
before_run() {
	if [ "$1" = read ]; then
		[ -f "$share/p9bench.dat" ] ||
			head -c $((MIB * 1048576)) /dev/urandom >"$share/p9bench.dat"
	else
		rm -f "$share/p9bench.dat"
	fi
}

probe=$(./lkvm run -k $K --9p "$share,bench" -p "$(kargs write 0)" </dev/null 2>&1 || true)
if ! grep -q '^ok 1 - p9bench' <<<"$probe"; then
	echo "bench/9p.sh: skipped: lkvm or the test kernel lacks virtio-9p / p9bench:"
	grep -E '^not ok|lkvm:' <<<"$probe" | head -3 | sed 's/^/  /'
	exit 0
fi

engines=lkvm
[ -n "$qemu" ] && engines="lkvm qemu"
for e in $engines; do
	measure "$e-idle" "$e" write 0
	measure "$e-write" "$e" write "$MIB"
	measure "$e-read" "$e" read "$MIB"
	measure "$e-meta" "$e" meta "$META"
done

# figures ENGINE WORKLOAD: sets ms (the workload, host clock) and cpu
# (ms, minus the idle boot's).
figures() {
	ms=$(median "$tmp/$1-$2" 7)
	cpu=$(echo "$(median "$tmp/$1-$2" 8) - $(median "$tmp/$1-idle" 8)" | bc -l)
}

qv=none
[ -n "$qemu" ] && qv=$("$qemu" --version | sed -n '1s/.*version \([^ ]*\).*/\1/p')
printf 'virtio-9p (virtio-mmio), one request in flight, medians of %d runs: rate timed\n' "$RUNS"
printf '  by the host around the workload, VMM CPU minus the no-I/O boot\n'
printf '  (QEMU %s, -fsdev local,security_model=none; share in %s)\n' "$qv" "$(df --output=fstype "$share" | tail -1)"
printf '  %-26s %10s %12s %10s %12s %10s\n' "" lkvm "lkvm CPU" QEMU "QEMU CPU" "QEMU/lkvm"
printf '  %-26s %10s %12s %10s %12s %10s\n' "" "" "" "" "" "CPU/op"
line() { # label workload ops unit scale
	local label=$1 w=$2 ops=$3 unit=$4 lrate lcpu qrate qcpu
	figures lkvm "$w"
	lrate=$(echo "if ($ms > 0) $5 * 1000 / $ms else 0" | bc -l)
	lcpu=$(echo "$cpu * 1000 / $ops" | bc -l)
	out=$(printf '%10.0f %9.1f us' "$lrate" "$lcpu")
	if [ -n "$qemu" ]; then
		figures qemu "$w"
		qrate=$(echo "if ($ms > 0) $5 * 1000 / $ms else 0" | bc -l)
		qcpu=$(echo "$cpu * 1000 / $ops" | bc -l)
		out+=$(printf ' %10.0f %9.1f us %9.2fx' "$qrate" "$qcpu" \
			"$(echo "if ($lcpu > 0) $qcpu / $lcpu else 0" | bc -l)")
	fi
	printf '  %-26s %s   (%s)\n' "$label" "$out" "$unit"
}
chunks=$((MIB * 8))
line "write ${MIB} MiB, 128K x$chunks" write "$chunks" "MiB/s; CPU per request" "$MIB"
line "read ${MIB} MiB, 128K x$chunks" read "$chunks" "MiB/s; CPU per request" "$MIB"
line "create+stat+remove x$META" meta $((3 * META)) "ops/s; CPU per op" $((3 * META))
for e in $engines; do
	printf '  no-I/O boot, %-4s: %s ms wall, %s ms CPU\n' "$e" \
		"$(median "$tmp/$e-idle" 2)" "$(median "$tmp/$e-idle" 8)"
done
