#!/usr/bin/env bats
# virtio-balloon (--balloon): the test kernel's driver gives pages when the
# host asks (`lkvm balloon NAME --inflate MiB`), lkvm drops them from its
# resident memory, `lkvm stat NAME --memory` shows the balloon and the
# statistics the guest reported; and the same check under QEMU's
# virtio-balloon.

bats_require_minimum_version 1.5.0

load helpers
load qemu

setup_file() {
	make -C "$KERNEL_DIR" >&2
}

setup() {
	setup_tmp
	PIDS=""
}

teardown() {
	[ -n "${QPID:-}" ] && kill -KILL "$QPID" 2>/dev/null
	stop_guests
	teardown_tmp
}

# hmp SOCKET COMMAND: one command to QEMU's human monitor.
hmp() {
	python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
buf = b""
while not buf.endswith(b"(qemu) "):
    buf += s.recv(4096)
s.sendall(sys.argv[2].encode() + b"\n")
buf = b""
while b"(qemu) " not in buf:
    buf += s.recv(4096)
' "$1" "$2"
}

rss_kib() { # pid
	awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# rss_drops PID BEFORE-KIB DROP-KIB SECS: waits until PID's resident
# memory is DROP-KIB below BEFORE-KIB (the kernel's RSS counters are
# per-CPU and lag a little); prints the last reading.
rss_drops() {
	local deadline=$((SECONDS + $4)) now
	while :; do
		now=$(rss_kib "$1")
		[ $(($2 - now)) -ge "$3" ] && break
		[ $SECONDS -ge "$deadline" ] && break
		sleep 0.05
	done
	echo "$now"
	[ $(($2 - now)) -ge "$3" ]
}

# start_balloon NAME POOL-MIB [MORE-PARAMS]: a detached guest whose
# balloon driver has touched POOL-MIB and serves the host for 60 s.
start_balloon() {
	local name=$1 pool=$2
	run "$LKVM" run --detach --name "$name" --console-log "$TMP/$name.log" \
		-k "$KERNEL" -m 128 --balloon \
		-p "tests=virtio-balloon balloon_pool=$pool balloon_wait=60 ${3:-}"
	[ "$status" -eq 0 ] || { echo "run --detach: $output"; return 1; }
	PIDS+=" $(guest_pid "$name")"
	wait_for "$TMP/$name.log" '^# virtio-balloon: serving' 30
}

@test "balloon: the check passes on its own on every transport (one batch given and taken back)" {
	for t in pci pci-legacy mmio mmio-legacy; do
		run timeout 60 "$LKVM" run -k "$KERNEL" -m 64 --balloon \
			--virtio-transport "$t" -p tests=virtio-balloon </dev/null
		echo "$t: $output" | grep -E '^(ok|not ok)|^lkvm' || true
		[ "$status" -eq 0 ]
		grep -qE '^ok 1 - virtio-balloon: .*256 pages given and taken back' <<<"$output"
	done
}

@test "balloon: inflating drops lkvm's resident memory; stat --memory shows the balloon and the guest's statistics; deflating ends the check" {
	start_balloon bal 40
	local pid before after total
	pid=$(guest_pid bal)
	before=$(rss_kib "$pid")
	# The pool the guest touched is resident.
	[ "$before" -ge $((40 * 1024)) ] || { echo "RSS before: $before KiB"; false; }

	run "$LKVM" balloon bal --inflate 32
	[ "$status" -eq 0 ]
	[ "$output" = "guest 'bal': balloon target 32 MiB, 0 MiB in the balloon" ]
	wait_for "$TMP/bal.log" '^# virtio-balloon: actual 8192 pages$' 30
	after=$(rss_drops "$pid" "$before" $((30 * 1024)) 10) ||
		{ echo "RSS before $before KiB, after $after KiB"; false; }

	# The guest's own figure for total memory, as it printed it, is what
	# lkvm shows from the stats queue.
	total=$(sed -nE 's/.*total_memory ([0-9]+)$/\1/p' "$TMP/bal.log")
	[ -n "$total" ]
	run "$LKVM" stat bal --memory
	echo "$output"
	[ "$status" -eq 0 ]
	grep -qE "^balloon: target 32 MiB, 32 MiB in the balloon \(8448 pages given back, 256 taken again, 0 refused PFNs\)$" <<<"$output"
	grep -qE "^  total_memory +$total$" <<<"$output"
	grep -qE "^guest statistics \([0-9]+ ms old\):$" <<<"$output"

	# Each question hands the stats buffer back: the guest refreshes it.
	local i=0
	until "$LKVM" stat bal --memory | grep -qE '^  minor_faults +[1-9]'; do
		i=$((i + 1))
		[ $i -lt 200 ] || { echo "the guest never refreshed its statistics"; false; }
		sleep 0.05
	done

	run "$LKVM" balloon bal --deflate 32
	[ "$status" -eq 0 ]
	run "$LKVM" wait bal
	echo "$output"
	[ "$status" -eq 0 ]
	grep -qE '^ok 1 - virtio-balloon: .*inflated to 8192 pages and back to 0' "$TMP/bal.log"
}

@test "balloon: refusals are one line and change nothing; PFNs outside RAM from the guest are refused and counted" {
	start_balloon ref 4 balloon_hostile=1
	grep -qx '# virtio-balloon: 4 PFNs outside RAM and a torn one sent, both requests completed' "$TMP/ref.log"
	run "$LKVM" stat ref --memory
	echo "$output"
	grep -qE '^balloon: target 0 MiB, 0 MiB in the balloon \(256 pages given back, 256 taken again, 4 refused PFNs\)$' <<<"$output"
	run "$LKVM" stat ref --all
	grep -qx 'dev.virtio-balloon.errors 2' <<<"$output"
	run "$LKVM" balloon ref --deflate 1
	assert_one_line_error "the balloon holds 0 MiB of the guest's 128 MiB; it cannot shrink by 1 MiB"
	run "$LKVM" balloon ref --inflate 129
	assert_one_line_error "cannot grow by 129 MiB"
	run "$LKVM" balloon ref --inflate 5K
	assert_one_line_error "not a whole number of 4 KiB pages"
	run "$LKVM" balloon ref --inflate 1 --deflate 1
	[ "$status" -eq 1 ]
	grep -q "not both" <<<"$output"
	run "$LKVM" balloon ref
	[ "$status" -eq 0 ]
	[ "$output" = "guest 'ref': balloon target 0 MiB, 0 MiB in the balloon" ]
	run "$LKVM" balloon nosuchguest --inflate 1
	assert_one_line_error "no guest named 'nosuchguest'"
}

@test "balloon: a guest without --balloon says so" {
	start_heartbeat hb -k "$KERNEL"
	run "$LKVM" balloon hb --inflate 1
	assert_one_line_error "guest 'hb': the guest has no balloon \(start it with --balloon\)"
	run "$LKVM" stat hb --memory
	[ "$status" -eq 0 ]
	grep -qx "balloon: none (lkvm run --balloon adds one)" <<<"$output"
}

@test "balloon: the same check passes under QEMU's virtio-balloon" {
	need_qemu
	run qemu_kernel 120 pc 1 "tests=virtio-balloon" \
		-device virtio-balloon-pci,deflate-on-oom=on </dev/null
	echo "$output" | grep -E '^(ok|not ok)' || true
	[ "$status" -eq 0 ]
	grep -qE '^ok 1 - virtio-balloon: .*256 pages given and taken back, stats posted, deflate-on-OOM negotiated' <<<"$output"
}

@test "balloon: under QEMU the same driver follows the monitor's balloon command and QEMU's RSS drops too" {
	command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 not installed"
	timeout --kill-after=10 120 qemu-system-x86_64 -accel kvm -M pc -m 128 \
		-kernel "$KERNEL" -append "tests=virtio-balloon balloon_pool=40 balloon_wait=60" \
		-display none -nodefaults -serial "file:$TMP/q.log" -no-reboot \
		-monitor "unix:$TMP/q.mon,server,nowait" -pidfile "$TMP/q.pid" \
		-device isa-debug-exit,iobase=0xf4,iosize=4 \
		-device virtio-balloon-pci,deflate-on-oom=on </dev/null 2>"$TMP/q.err" &
	QPID=$!
	wait_for "$TMP/q.log" '^# virtio-balloon: serving' 60
	local before after
	before=$(rss_kib "$(cat "$TMP/q.pid")")
	hmp "$TMP/q.mon" "balloon 96"	# QEMU's argument is the guest's new size
	wait_for "$TMP/q.log" '^# virtio-balloon: actual 8192 pages$' 30
	after=$(rss_drops "$(cat "$TMP/q.pid")" "$before" $((30 * 1024)) 10) ||
		{ echo "QEMU RSS before $before KiB, after $after KiB"; false; }
	hmp "$TMP/q.mon" "balloon 128"
	wait "$QPID"
	QPID=""
	grep -qE '^ok 1 - virtio-balloon: .*inflated to 8192 pages and back to 0' "$TMP/q.log"
}
