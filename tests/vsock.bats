#!/usr/bin/env bats
# virtio-vsock without vhost (--vsock CID,PATH): host programs reach an
# echo service in the test kernel through lkvm's Unix socket with
# Firecracker's protocol ("CONNECT PORT\n" -> "OK HOSTPORT\n"), the guest
# reaches a host listener on PATH_PORT, unknown ports are reset, credit
# flow control holds both ways for more data than either window, and
# malformed packets from the guest are refused and counted.

bats_require_minimum_version 1.5.0

load helpers
load qemu

HOSTPY="$BATS_TEST_DIRNAME/vsock-host.py"

setup_file() {
	make -C "$KERNEL_DIR" >&2
}

setup() {
	setup_tmp
	PIDS=""
	LISTENER=""
}

teardown() {
	[ -n "$LISTENER" ] && kill "$LISTENER" 2>/dev/null
	stop_guests
	teardown_tmp
}

# listener SOCK: a host program on SOCK that answers one guest line
# (vsock-host.py listen), its pid in LISTENER; returns once it listens.
listener() {
	python3 "$HOSTPY" listen "$1" >"$TMP/listener.out" 2>&1 &
	LISTENER=$!
	wait_for "$TMP/listener.out" '^listening$' 10
}

# guest_with PARAMS [lkvm run options]: the vsock check in the foreground.
guest_with() {
	local params=$1
	shift
	run timeout 60 "$LKVM" run -k "$KERNEL" -m 64 "$@" \
		-p "tests=virtio-vsock $params" </dev/null
	echo "$output"
}

# start_vsock NAME PARAMS [lkvm run options]: a detached guest with a
# vsock device (CID 3) on $TMP/v.sock running the vsock check.
start_vsock() {
	local name=$1 params=$2
	shift 2
	run "$LKVM" run --detach --name "$name" --console-log "$TMP/$name.log" \
		-k "$KERNEL" -m 64 --vsock "3,$TMP/v.sock" "$@" \
		-p "tests=virtio-vsock $params"
	[ "$status" -eq 0 ] || { echo "run --detach: $output"; return 1; }
	PIDS+=" $(guest_pid "$name")"
}

@test "vsock: host programs reach the guest's echo service; 256 KiB each way through 64 KiB windows; a half-close; unknown ports and bad handshakes are closed" {
	start_vsock echo "vsock_port=1234 vsock_wait=60 vsock_sessions=3"
	wait_for "$TMP/echo.log" '^# virtio-vsock: listening on port 1234 \(cid 3\)$' 30

	run python3 "$HOSTPY" refused "$TMP/v.sock" 4321
	[ "$status" -eq 0 ] && [ "$output" = refused ]
	run python3 "$HOSTPY" garbage "$TMP/v.sock" "HELLO 1234"
	[ "$output" = "ERROR expected CONNECT PORT" ]

	run python3 "$HOSTPY" echo "$TMP/v.sock" 1234 262144
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" =~ ^"echo ok 262144 hostport "[0-9]+" in " ]]
	run python3 "$HOSTPY" echo "$TMP/v.sock" 1234 10
	echo "$output"
	[ "$status" -eq 0 ] || { cat "$TMP/echo.log"; false; }
	# A host program that stops sending still gets everything back, then
	# the end of the stream.
	run python3 "$HOSTPY" halfclose "$TMP/v.sock" 1234 30000
	[ "$status" -eq 0 ] && [ "$output" = "halfclose ok 30000" ]

	run "$LKVM" wait echo
	[ "$status" -eq 0 ]
	grep -qx '# virtio-vsock: 3 sessions, 292154 bytes echoed' "$TMP/echo.log"
	grep -qE '^ok 1 - virtio-vsock: .*echo sessions served$' "$TMP/echo.log"
	# The socket goes with the guest.
	[ ! -e "$TMP/v.sock" ]
}

@test "vsock: the guest connects to a host listener on PATH_PORT and gets its answer" {
	listener "$TMP/v.sock_5555"
	guest_with vsock_connect=5555 --vsock "cid=7,uds=$TMP/v.sock"
	[ "$status" -eq 0 ]
	grep -qx '# virtio-vsock: host replied: pong: ping from guest cid 7' <<<"$output"
	grep -qE '^ok 1 - virtio-vsock: vsock0 .*cid 7, port 1 refused, connected to the host$' <<<"$output"
	wait "$LISTENER"
	LISTENER=""
	grep -qx 'got ping from guest cid 7' "$TMP/listener.out"
}

@test "vsock: a device reset with a connection open closes the host side and gives the next driver a transport-reset event" {
	listener "$TMP/v.sock_6000"
	guest_with "vsock_connect=6000 vsock_reset=1" --vsock "3,$TMP/v.sock"
	[ "$status" -eq 0 ]
	grep -qx '# virtio-vsock: transport reset event after a reset' <<<"$output"
	grep -qE '^ok 1 - virtio-vsock: .*connected to the host, transport reset seen$' <<<"$output"
	# The listener's connection ended with the reset (it waits for EOF).
	wait "$LISTENER"
	LISTENER=""
}

@test "vsock: malformed packets and data beyond the credit are refused, answered with resets where due, and counted" {
	python3 "$HOSTPY" sink "$TMP/v.sock_7000" >"$TMP/sink.out" 2>&1 &
	LISTENER=$!
	wait_for "$TMP/sink.out" '^listening$' 10
	start_vsock bad "vsock_hostile=1 vsock_flood=7000 vsock_port=1234 vsock_wait=60"
	wait_for "$TMP/bad.log" '^# virtio-vsock: listening' 30
	grep -qx '# virtio-vsock: 5 malformed packets sent, 3 resets back, device status 0xf' "$TMP/bad.log"
	# The flood to a host program that reads nothing: reset once lkvm's
	# 256 KiB buffer and the socket's own are full, not before the credit.
	local sent
	sent=$(sed -nE 's/^# virtio-vsock: flood reset after ([0-9]+) bytes \(credit 262144\)$/\1/p' "$TMP/bad.log")
	[ -n "$sent" ] && [ "$sent" -gt 262144 ] && [ "$sent" -lt $((4 << 20)) ]
	wait_for "$TMP/sink.out" '^closed$' 10
	# short, unknown op, bad length, wrong CID, the flood; data for no
	# connection is an ordinary reset, not an error.
	run "$LKVM" stat bad --all
	grep -qx 'dev.virtio-vsock.errors 5' <<<"$output"
	# And the device still works.
	run python3 "$HOSTPY" echo "$TMP/v.sock" 1234 1000
	[ "$status" -eq 0 ] || { echo "$output"; cat "$TMP/bad.log"; false; }
	run "$LKVM" wait bad
	[ "$status" -eq 0 ] || { echo "wait: $status $output"; cat "$TMP/bad.log"; false; }
}

@test "vsock: the check passes on every transport" {
	for t in pci pci-modern mmio mmio-legacy; do
		guest_with "" --vsock "3,$TMP/v$t.sock" --virtio-transport "$t"
		[ "$status" -eq 0 ]
		grep -qE '^ok 1 - virtio-vsock: vsock0 .*cid 3, port 1 refused$' <<<"$output"
	done
}

@test "vsock: bad --vsock options are refused in one line" {
	run "$LKVM" run --vsock 2,"$TMP/v.sock"
	assert_one_line_error "the guest CID '2' must be a number from 3 to 4294967294"
	run "$LKVM" run --vsock "$TMP/v.sock"
	assert_one_line_error "use CID,PATH or cid=CID,uds=PATH"
	run "$LKVM" run --vsock 3,
	assert_one_line_error "no socket path"
	run "$LKVM" run --vsock "3,/$(printf 'x%.0s' {1..120})"
	assert_one_line_error "the socket path is 121 bytes; at most 96 fit"
	run "$LKVM" run --vsock "cid=3,port=4"
	assert_one_line_error "unknown part 'port=4'"
	touch "$TMP/file"
	run "$LKVM" run -k "$KERNEL" --vsock "3,$TMP/file" -p tests=
	assert_one_line_error "exists and is not a socket"
	run "$LKVM" run -k "$KERNEL" --vsock "3,$TMP/nodir/v.sock" -p tests=
	assert_one_line_error "No such file or directory"
	run "$LKVM" run -k "$KERNEL" --vsock "3,$TMP/v.sock" --virtio-transport pci-legacy -p tests=
	assert_one_line_error "virtio-vsock has no legacy PCI interface"
	# A socket left by a dead lkvm is replaced; a live one is not.
	python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$TMP/stale.sock"
	run timeout 30 "$LKVM" run -k "$KERNEL" --vsock "3,$TMP/stale.sock" -p tests= </dev/null
	[ "$status" -eq 0 ]
	listener "$TMP/live.sock"
	run "$LKVM" run -k "$KERNEL" --vsock "3,$TMP/live.sock" -p tests=
	assert_one_line_error "another program listens there"
}

@test "vsock: QEMU's vhost-vsock needs /dev/vhost-vsock" {
	need_qemu
	[ -e /dev/vhost-vsock ] || skip "QEMU's vsock (vhost-vsock-pci) needs /dev/vhost-vsock, which this host lacks"
	run qemu_kernel 120 pc 1 "tests=virtio-vsock" \
		-device vhost-vsock-pci,guest-cid=3 </dev/null
	echo "$output" | grep -E '^(ok|not ok)' || true
	[ "$status" -eq 0 ]
	grep -qE '^ok 1 - virtio-vsock: .*cid 3, port 1 refused' <<<"$output"
}
