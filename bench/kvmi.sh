#!/bin/bash
# Introspection speed (docs/kvmi.md), medians of RUNS (default 5) runs,
# all in this one run so the figures share the machine's state:
#  - event round trip: the test kernel's introspect-bench check writes to
#    a page in a loop; the tool write-protects it and answers every PF
#    event CONTINUE; from one event to the next = exit, event, reply,
#    the write done, the guest on to its next write. Wall time, and
#    lkvm's own CPU time per event (all its threads, guest time included);
#    through lkvm's event channel (shared memory, the client library's
#    default: docs/kvmi.md), and the same over the socket (the channel
#    off, in the same guest);
#    The vCPU and the tool poll for each other's message (bounded,
#    adaptive: docs/kvmi.md, "Polling"; lkvm's and the library's
#    defaults), and the same round trip with polling off on both sides
#    (--introspect poll=0, kvmi_set_poll(0)) in a second guest, with the
#    share of replies the vCPU read itself (`lkvm stat`);
#  - the floor: a write exiting as plain MMIO in a raw real-mode KVM
#    guest (no VMM at all, bench/kvmi-bench.c floor), wall and CPU time;
#    and a second floor, the round trip's own kind of write: the bench
#    check's loop in a raw 64-bit KVM guest with paging, its page in a
#    read-only slot (kvmi-bench.c floor64: KVM walks the page tables and
#    decodes the instruction, as for the protected page);
#  - the same guest write as the round trip's, exiting to lkvm from the
#    protected page with no event (lkvm writes it): the round trip
#    without the tool, for the same (emulated, 64-bit) guest code;
#  - KVMI_VM_READ_PHYSICAL in 4 KiB requests: one call each, and
#    pipelined (1 MiB calls, 64 requests in flight, sent 32 at a time),
#    with the throughput the CPU time of lkvm's KVMI thread and the tool
#    allows (what a machine with cores to spare would see);
#  - guest RAM mapped from lkvm (MAP_MEMORY) against memcpy in this
#    process (4 KiB copies; 4 KiB pages like guest RAM, and huge pages),
#    the three in turns of 16 MiB, each the median of its turns; and the
#    first pass over a fresh mapping (its page faults).
# Targets: round trip within 2x the raw exit; reads over the socket
# above 500 MiB/s; mapped reads at memcpy speed. QEMU has no KVMI: no
# QEMU column.
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
EVENTS=${EVENTS:-1000}
make -s lkvm build/bench/kvmi-bench >/dev/null
tmp=$(mktemp -d)
export LKVM_HOME=$tmp/home
name=kvmi-bench-$$
B=build/bench/kvmi-bench
trap './lkvm stop --wait "$name" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT

# start [SETTINGS]: the bench guest (--introspect listen,SETTINGS); sets
# gpa, sock, cookie, pid.
start() {
	rm -f "$tmp/log"
	./lkvm run --detach --name "$name" --console-log "$tmp/log" \
		-p tests=introspect-bench --introspect "listen${1:+,$1}" >/dev/null
	for ((i = 0; i < 300; i++)); do
		grep -q '^# introspect-bench page' "$tmp/log" 2>/dev/null && break
		sleep 0.1
	done
	gpa=$(grep -oE '^# introspect-bench page 0x[0-9a-f]+' "$tmp/log" | cut -d' ' -f4)
	[ -n "$gpa" ] || { echo "kvmi.sh: the guest did not start" >&2; exit 1; }
	sock=$LKVM_HOME/$name.kvmi
	cookie=$LKVM_HOME/$name.kvmi-cookie
	pid=$(./lkvm list | awk -v n="$name" '$1 == n { print $2 }')
}
# stat KEY: one of `lkvm stat --all`'s values
stat() { ./lkvm stat "$name" --all | awk -v k="$1" '$1 == k { print $2 }'; }

start

for ((r = 0; r < RUNS; r++)); do
	"$B" floor 3000
	"$B" floor64 3000
	p0=$(stat dev.kvmi-polled.requests) m0=$(stat dev.kvmi-polled.errors)
	VMM_PID=$pid "$B" rtt "$sock" "$cookie" "$gpa" "$EVENTS"
	p1=$(stat dev.kvmi-polled.requests) m1=$(stat dev.kvmi-polled.errors)
	VMM_PID=$pid KVMI_BENCH_SOCKET=1 "$B" rtt "$sock" "$cookie" "$gpa" \
		"$EVENTS" 2>/dev/null | sed 's/^rtt/socket-rtt/'
	awk -v p=$((p1 - p0)) -v m=$((m1 - m0)) \
		'BEGIN { if (p) printf "polled %.1f\n", 100 * (p - m) / p }'
	# The same write exiting to lkvm with no event: writes counted by
	# `lkvm stat` (the kvmi-ram region) during a protected window.
	w0=$(./lkvm stat "$name" | awk '$1 == "kvmi-ram" { print $3 }')
	VMM_PID=$pid "$B" protect "$sock" "$cookie" "$gpa" 500 >"$tmp/win"
	w1=$(./lkvm stat "$name" | awk '$1 == "kvmi-ram" { print $3 }')
	awk -v n=$((w1 - w0)) '$1 == "noevent-window" { printf "noevent %.2f\n", $2 / n }
		$1 == "noevent-cpu" { printf "noevent-cpu %.2f\n", $2 / n }' "$tmp/win"
	VMM_PID=$pid "$B" read "$sock" "$cookie" 0x100000 32
	"$B" mapped "$sock" "$cookie" 512
done >"$tmp/out"
# The same round trip with polling off on both sides.
./lkvm stop --wait "$name" >/dev/null
start poll=0
for ((r = 0; r < RUNS; r++)); do
	VMM_PID=$pid KVMI_BENCH_POLL_US=0 "$B" rtt "$sock" "$cookie" "$gpa" \
		"$EVENTS" | sed 's/^rtt/nopoll-rtt/'
done >>"$tmp/out"

median() { # NAME: the median of NAME's values
	awk -v n="$1" '$1 == n { print $2 }' "$tmp/out" | sort -n | awk \
		'{a[NR]=$1} END { if (NR % 2) print a[(NR+1)/2];
			else print (a[NR/2]+a[NR/2+1])/2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

floor=$(median floor) floor_cpu=$(median floor-cpu)
floor64=$(median floor64) floor64_cpu=$(median floor64-cpu)
rtt=$(median rtt) rtt_cpu=$(median rtt-vmm-cpu)
srtt=$(median socket-rtt) srtt_cpu=$(median socket-rtt-vmm-cpu)
printf 'KVMI, medians of %d runs (%d events each)\n' "$RUNS" "$EVENTS"
printf '  %-44s %8s us  (CPU %s us)\n' "raw MMIO exit (floor)" "$floor" "$floor_cpu"
printf '  %-44s %8s us  (CPU %s us)\n' "raw MMIO exit, 64-bit paged write (floor64)" "$floor64" "$floor64_cpu"
printf '  %-44s %8s us  (lkvm CPU %s us)\n' "event round trip (write, PF, CONTINUE)" "$rtt" "$rtt_cpu"
printf '  %-44s %8s us  (lkvm CPU %s us)\n' "  the same over the socket (no event channel)" "$srtt" "$srtt_cpu"
printf '  %-44s %8s %%\n' "  replies the polling vCPU read itself" "$(median polled)"
printf '  %-44s %8s us  (lkvm CPU %s us)\n' "  the same, polling off (poll=0, both sides)" \
	"$(median nopoll-rtt)" "$(median nopoll-rtt-vmm-cpu)"
noev=$(median noevent) noev_cpu=$(median noevent-cpu)
printf '  %-44s %8s us  (lkvm CPU %s us)\n' "the same write, exit to lkvm, no event" "$noev" "$noev_cpu"
printf '  %-44s %8s x   (CPU %s x; target 2)\n' "round trip / floor" \
	"$(ratio "$rtt" "$floor")" "$(ratio "$rtt_cpu" "$floor_cpu")"
printf '  %-44s %8s x   (CPU %s x; target 2)\n' "round trip / floor64" \
	"$(ratio "$rtt" "$floor64")" "$(ratio "$rtt_cpu" "$floor64_cpu")"
printf '  %-44s %8s x   (CPU %s x)\n' "  over the socket / floor" \
	"$(ratio "$srtt" "$floor")" "$(ratio "$srtt_cpu" "$floor_cpu")"
printf '  %-44s %8s x   (CPU %s x)\n' "round trip / the same write without event" \
	"$(ratio "$rtt" "$noev")" "$(ratio "$rtt_cpu" "$noev_cpu")"
printf '  %-44s %8s MiB/s (target 500)\n' "read physical, 4 KiB, one at a time" "$(median read)"
printf '  %-44s %8s MiB/s (target 500)\n' "read physical, 4 KiB, 64 in flight" "$(median read-pipelined)"
printf '  %-44s %8s MiB/s\n' "  the same, from lkvm's and the tool's CPU time" "$(median read-cpu-bound)"
printf '  %-44s %8s MiB/s\n' "mapped guest RAM, 4 KiB copies" "$(median mapped)"
printf '  %-44s %8s MiB/s\n' "memcpy, 4 KiB pages" "$(median memcpy-4k)"
printf '  %-44s %8s MiB/s\n' "memcpy, huge pages where given" "$(median memcpy)"
printf '  %-44s %8s x\n' "mapped / memcpy (4 KiB pages)" \
	"$(ratio "$(median mapped)" "$(median memcpy-4k)")"
printf '  %-44s %8s MiB/s\n' "mapped, first pass over a fresh mapping" "$(median mapped-first)"
