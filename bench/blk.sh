#!/bin/bash
# Sequential throughput of one virtio-blk disk and the host CPU time each
# request costs: lkvm, QEMU (virtio-blk-pci) and dd on the host (the
# page-cache bound), reads and writes at 4 KiB and 1 MiB requests.
#
# The bundled test kernel's blkbench check moves N MiB sequentially
# through the first virtio-blk disk with DEPTH requests in flight:
#     tests=blkbench blkbench_op=read|write blkbench_bs=BYTES
#     blkbench_mib=N blkbench_depth=DEPTH
# and passes when every request completed with status OK. Its request
# path runs in ring 3 and it sleeps (sti; hlt) for the queue's MSI-X
# interrupt, so the guest itself costs the host little per request
# (x86-kernel/README.md, blkbench). The same boot with blkbench_mib=0
# (the device, queue, MSI-X and buffers set up, no I/O) is the baseline:
# a workload's time and CPU are its run minus the baseline of the same
# request size, medians of RUNS runs each. CPU is the VMM process's user
# + system time (getrusage of the child, bench/boottime.c), so both VMMs
# are charged for their I/O threads, and for the guest's emulated CPL-0
# instructions, which the same kernel spends in both.
#
# QEMU boots the kernel through qboot (-bios qboot.rom) where it is
# installed: SeaBIOS spends 4 to 6 s of emulated CPU before the kernel
# starts, whose variance would bury the small workloads.
#
# Needs virtio-blk behind -d (virtio/blk.c) and the blkbench check in
# x86-kernel/; until both are there it says what is missing and exits 0.
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-7}
IMG_MIB=${IMG_MIB:-256}		# the image; workloads wrap around at its end
BIG_MIB=${BIG_MIB:-2048}	# data moved with 1 MiB requests
SMALL_MIB=${SMALL_MIB:-128}	# data moved with 4 KiB requests
DEPTH=${DEPTH:-32}
MEM=256
B=build/bench
K=x86-kernel/test-kernel.elf
make -s lkvm $K $B/boottime >/dev/null
tmp=$(mktemp -d /var/tmp/lkvm-blk.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export LKVM_HOME=$tmp/home
img=$tmp/disk.img

kargs() { # op bs mib
	echo "tests=blkbench blkbench_op=$1 blkbench_bs=$2 blkbench_mib=$3 blkbench_depth=$DEPTH"
}

truncate -s 1M "$img"
if ! ./lkvm run -k $K -m $MEM -d "$img" -p "$(kargs read 4096 1)" >"$tmp/probe" 2>&1; then
	echo "bench/blk.sh: skipped: it needs virtio-blk (-d) and the test kernel's blkbench check; the probe said:"
	grep -E '^not ok|lkvm:|usage' "$tmp/probe" | head -3 | sed 's/^/  /'
	exit 0
fi
# Written once, so every block is allocated and in the page cache.
dd if=/dev/urandom of="$img" bs=1M count="$IMG_MIB" status=none

qemu=$(command -v qemu-system-x86_64 || true)
qbios=()
for f in /usr/share/qemu/qboot.rom /usr/share/qemu-kvm/qboot.rom; do
	if [ -f "$f" ]; then
		qbios=(-bios "$f")
		break
	fi
done

# run_vmm engine log op bs mib: one boot through bench/boottime; the
# guest's console also goes to log.
run_vmm() {
	local engine=$1 log=$2
	shift 2
	if [ "$engine" = lkvm ]; then
		$B/boottime ./lkvm run -k $K -m $MEM -d "$img" --console-log "$log" \
			-p "$(kargs "$@")"
	else
		$B/boottime "$qemu" -accel kvm -M pc -m $MEM "${qbios[@]}" \
			-display none -nodefaults -monitor none \
			-chardev stdio,id=con,logfile="$log" -serial chardev:con \
			-no-reboot -device isa-debug-exit,iobase=0xf4,iosize=4 \
			-drive if=none,id=d,file="$img",format=raw \
			-device virtio-blk-pci,drive=d \
			-kernel $K -append "$(kargs "$@")"
	fi
}

. bench/lib.bash	# median, measure

# measure NAME engine op bs mib (bench/lib.bash)
FAIL_LINES='^not ok|^Bail|blkbench:'

# guest_view NAME: the guest's own account of the last run: MSI-X
# interrupts per notification, and MiB/s by its PIT clock.
guest_view() {
	awk '/^# blkbench: .* notifications/ {
		for (i = 1; i <= NF; i++) {
			if ($(i) ~ /^notifications/) k = $(i - 1)
			if ($(i) ~ /^interrupts/) n = $(i - 1)
		}
	}
	/^ok .* blkbench:/ {
		for (i = 1; i <= NF; i++) {
			if ($(i) == "bytes") b = $(i - 1)
			if ($(i) == "ms") ms = $(i - 1)
		}
	}
	END {
		irq = k > 0 ? sprintf("%.2f", n / k) : "-"
		rate = ms > 0 ? sprintf("%.0f", b / 1048576 * 1000 / ms) : "-"
		printf "%9s %9s", irq, rate
	}' "$tmp/$1.log"
}

# host dd over the same requests (up to the image's size): MiB/s, the
# median of RUNS runs.
host_dd() { # op bs mib
	local op=$1 bs=$2 mib=$3 count t0 t1 r
	[ "$mib" -gt "$IMG_MIB" ] && mib=$IMG_MIB
	count=$((mib * 1048576 / bs))
	: >"$tmp/dd"
	for ((r = 0; r < RUNS; r++)); do
		t0=$(date +%s%N)
		if [ "$op" = read ]; then
			dd if="$img" of=/dev/null bs="$bs" count="$count" status=none
		else
			dd if=/dev/zero of="$img" bs="$bs" count="$count" conv=notrunc status=none
		fi
		t1=$(date +%s%N)
		echo "$mib * 1000000000 / ($t1 - $t0)" | bc -l >>"$tmp/dd"
	done
	median "$tmp/dd" 1
}

engines=lkvm
[ -n "$qemu" ] && engines="lkvm qemu"
labels=()
for e in $engines; do
	for bs in 4096 1048576; do
		measure "$e-idle-$bs" "$e" read $bs 0
	done
done

# compute engine op bs mib: sets mbs and us (MiB/s and CPU us per request)
compute() {
	local e=$1 op=$2 bs=$3 mib=$4 ms cpu reqs
	reqs=$((mib * 1048576 / bs))
	ms=$(echo "$(median "$tmp/$e-$op-$bs" 2) - $(median "$tmp/$e-idle-$bs" 2)" | bc -l)
	cpu=$(echo "$(median "$tmp/$e-$op-$bs" 7) - $(median "$tmp/$e-idle-$bs" 7)" | bc -l)
	mbs=$(echo "if ($ms > 0) $mib * 1000 / $ms else 0" | bc -l)
	us=$(echo "$cpu * 1000 / $reqs" | bc -l)
}

printf 'virtio-blk sequential I/O, %d requests in flight, median of %d runs minus the no-I/O boot\n' \
	"$DEPTH" "$RUNS"
qv=none
if [ -n "$qemu" ]; then
	qv=$("$qemu" --version | sed -n '1s/.*version \([^ ]*\).*/\1/p')
	qv+=" with ${qbios[1]:-SeaBIOS}"
fi
printf '  (%d MiB image in the page cache; QEMU %s)\n' "$IMG_MIB" "$qv"
printf '  %-16s %10s %11s %10s %11s %10s %9s\n' "" "lkvm" "lkvm CPU" \
	"QEMU" "QEMU CPU" "QEMU/lkvm" "host dd"
printf '  %-16s %10s %11s %10s %11s %10s %9s\n' "" "MiB/s" "us/request" \
	"MiB/s" "us/request" "CPU/req" "MiB/s"
for op in read write; do
	for bs in 4096 1048576; do
		mib=$BIG_MIB
		[ "$bs" = 4096 ] && mib=$SMALL_MIB
		measure "lkvm-$op-$bs" lkvm "$op" "$bs" "$mib"
		compute lkvm "$op" "$bs" "$mib"
		lm=$mbs lu=$us
		line=$(printf '%10.0f %11.2f' "$lm" "$lu")
		if [ -n "$qemu" ]; then
			measure "qemu-$op-$bs" qemu "$op" "$bs" "$mib"
			compute qemu "$op" "$bs" "$mib"
			ratio=$(echo "if ($lu > 0) $us / $lu else 0" | bc -l)
			line+=$(printf ' %10.0f %11.2f %9.2fx' "$mbs" "$us" "$ratio")
		else
			line+=$(printf ' %10s %11s %10s' - - -)
		fi
		dd_mbs=$(host_dd "$op" "$bs" "$mib")
		label=$(printf '%s %s x%d' "$op" \
			"$([ "$bs" = 4096 ] && echo 4K || echo 1M)" $((mib * 1048576 / bs)))
		printf '  %-16s %s %9.0f\n' "$label" "$line" "$dd_mbs"
		labels+=("$label")
	done
done
echo "  CPU per request includes the guest driver's CPL-0 work per wake-up (the same"
echo "  kernel under both VMMs), which hosts that emulate CPL 0 charge at ~2 us an"
echo "  instruction. The guest's view (last run): MSI-X interrupts per notification"
echo "  (each one wakes that CPL-0 path), and MiB/s by the guest's PIT:"
printf '  %-16s %9s %9s  %9s %9s\n' "" "lkvm" "lkvm" "QEMU" "QEMU"
printf '  %-16s %9s %9s  %9s %9s\n' "" "irq/kick" "MiB/s" "irq/kick" "MiB/s"
i=0
for op in read write; do
	for bs in 4096 1048576; do
		q=$(printf '%9s %9s' - -)
		[ -n "$qemu" ] && q=$(guest_view "qemu-$op-$bs")
		printf '  %-16s %s  %s\n' "${labels[i]}" "$(guest_view "lkvm-$op-$bs")" "$q"
		i=$((i + 1))
	done
done
for e in $engines; do
	printf '  no-I/O boot, %-4s: %s ms wall, %s ms CPU (4K buffers); %s ms, %s ms CPU (1M buffers)\n' \
		"$e" "$(median "$tmp/$e-idle-4096" 2)" "$(median "$tmp/$e-idle-4096" 7)" \
		"$(median "$tmp/$e-idle-1048576" 2)" "$(median "$tmp/$e-idle-1048576" 7)"
done
