#!/usr/bin/env bats
# lkvm's virtio-net, refereed by the test kernel's network checks
# (x86-kernel/net.c) and by host clients (tests/net-client.py): user-mode
# networking through lkvm-slirp (DHCP, NAT to the host's loopback, a host
# forward into the guest), a tap in a network namespace the test creates
# (the host pings the guest and gets its UDP echo), a tap that lkvm
# creates and removes, a tap deleted under a running guest, and options
# lkvm must refuse. tests/qemu-net.bats runs the same guest checks under
# QEMU.

bats_require_minimum_version 1.5.0

load helpers
load net

setup_file() {
	make -C "$KERNEL_DIR" >&2
}

setup() {
	setup_tmp
	BGPID=
}

teardown() { net_teardown; }

lkvm_run() {
	timeout --kill-after=5 "${LKVM_TIMEOUT:-60}" \
		"$LKVM" run -k "$KERNEL" -m 128 "$@"
}

need_slirp() {
	[ -x "$BATS_TEST_DIRNAME/../lkvm-slirp" ] ||
		{ echo "lkvm-slirp not built (libslirp-dev missing?)"; return 1; }
}

need_netns() {
	[ "$(id -u)" -eq 0 ] || skip "network namespaces need root"
	[ -c /dev/net/tun ] || skip "no /dev/net/tun"
}

@test "lkvm -n: bad options are refused with one line naming them" {
	run "$LKVM" run -n mode=bogus
	assert_one_line_error "network 'mode=bogus': bad option"
	run "$LKVM" run -n mode=tap,guest_mac=01:00:00:00:00:01
	assert_one_line_error "guest_mac"
	run "$LKVM" run -n mode=user,hostfwd=tcp:80
	assert_one_line_error "hostfwd 'tcp:80'"
	run "$LKVM" run -n mode=user,tapif=tap0
	assert_one_line_error "tapif needs mode=tap"
}

@test "lkvm -n none: no device; virtio-net then fails for want of one" {
	run --separate-stderr lkvm_run -n none -p tests=virtio-net </dev/null
	echo "$output"
	[ "$status" -ne 0 ]
	grep -q '^not ok 1 - virtio-net: no virtio-net device' <<<"$output"
}

@test "lkvm -n (user mode): DHCP from slirp, the guest's UDP reaches a host loopback echo server" {
	need_slirp
	start_echo_server
	for t in pci mmio pci-legacy; do
		guest_passes lkvm_run --virtio-transport $t \
			-n guest_mac=02:00:00:00:00:42 \
			-p "tests=virtio-net,virtio-net-dhcp,virtio-net-udp net_peer=10.0.2.2:$ECHOPORT"
		grep -q 'mac 02:00:00:00:00:42, link up' <<<"$output"
		grep -q 'DHCP lease 10\.0\.2\.15 from 10\.0\.2\.2' <<<"$output"
		grep -q "UDP echo from 10\.0\.2\.2:$ECHOPORT" <<<"$output"
	done
}

@test "lkvm -n mode=user,hostfwd: a host TCP connection reaches the guest's listener" {
	need_slirp
	local port
	port=$("$NETCLIENT" free-port)
	lkvm_run -n "mode=user,hostfwd=tcp:$port-:7" \
		-p "tests=virtio-net-dhcp,virtio-net-serve net_serve=30" \
		</dev/null >"$TMP/out" 2>"$TMP/err" &
	BGPID=$!
	host_reaches_forward "$port" 30
	grep -qE 'answered .* [1-9][0-9]* TCP' "$TMP/out"
}

@test "lkvm -n mode=tap,tapif: in a namespace the host pings the guest and gets its UDP echo" {
	need_netns
	netns_with_tap "lkvm-net-$$" lt0
	for t in pci mmio; do
		ip netns exec "$NETNS" timeout 60 "$LKVM" run -k "$KERNEL" -m 128 \
			--virtio-transport $t -n mode=tap,tapif=lt0 \
			-p "tests=virtio-net,virtio-net-serve net_ip=$GUEST_IP net_serve=30" \
			</dev/null >"$TMP/out" 2>"$TMP/err" &
		BGPID=$!
		wait_for "$TMP/out" "serving at $GUEST_IP" 30
		run host_talks_to_guest "$NETNS"
		echo "$output"
		[ "$status" -eq 0 ]
		wait_bg
		[ "$rc" -eq 0 ]
		grep -qE 'answered [0-9]+ ARP, [3-9] ICMP echo, 2 UDP' "$TMP/out"
		# The tap the test made is still there.
		ip -n "$NETNS" link show lt0 >/dev/null
	done
}

@test "lkvm -n mode=tap: lkvm creates a tap and it is gone after lkvm exits" {
	need_netns
	ip netns add "lkvm-net-$$"
	NETNS="lkvm-net-$$"
	ip netns exec "$NETNS" timeout 60 "$LKVM" run -k "$KERNEL" -m 128 \
		-n mode=tap -p "tests=virtio-net,virtio-net-serve net_ip=$GUEST_IP net_serve=30" \
		</dev/null >"$TMP/out" 2>"$TMP/err" &
	BGPID=$!
	wait_for "$TMP/out" "serving at" 30
	ip -n "$NETNS" -o link show | grep -q 'lkvmtap0:.*UP'
	ip -n "$NETNS" addr add "$HOST_IP/24" dev lkvmtap0
	run ip netns exec "$NETNS" "$NETCLIENT" udp "$GUEST_IP" 7 quit
	[ "$status" -eq 0 ]
	wait_bg
	[ "$rc" -eq 0 ]
	! ip -n "$NETNS" link show lkvmtap0 2>/dev/null
}

@test "lkvm -n mode=tap: the tap deleted under a running guest: one message, link down, lkvm goes on" {
	need_netns
	netns_with_tap "lkvm-net-$$" lt0
	ip netns exec "$NETNS" timeout 60 "$LKVM" run -k "$KERNEL" -m 128 \
		-n mode=tap,tapif=lt0 \
		-p "tests=virtio-net,virtio-net-serve,virtio-net net_ip=$GUEST_IP net_serve=30 net_until=linkdown net_link=down" \
		</dev/null >"$TMP/out" 2>"$TMP/err" &
	BGPID=$!
	wait_for "$TMP/out" "serving at" 30
	ip -n "$NETNS" link del lt0
	wait_for "$TMP/out" 'net0: link down' 20
	wait_bg
	# The first virtio-net saw the link up (and net_link=down says
	# otherwise): exactly that one check fails.
	grep -q '^not ok 1 - virtio-net: net0: link up, expected down' "$TMP/out"
	grep -q '^ok 2 - virtio-net-serve' "$TMP/out"
	grep -q '^ok 3 - virtio-net' "$TMP/out"
	[ "$rc" -eq 3 ]
	[ "$(grep -c 'link down' "$TMP/err")" -eq 1 ]
	grep -q 'virtio-net0: tap lt0: .*; link down' "$TMP/err"
}

@test "lkvm -n (user mode): a hostile driver costs frames, counted, and lkvm goes on" {
	need_slirp
	start_echo_server
	local port
	port=$("$NETCLIENT" free-port)
	for t in pci mmio; do
		lkvm_run --name "hostile-$t" --virtio-transport $t \
			-n "hostfwd=udp:$port-:7" \
			-p "tests=virtio-net-dhcp,virtio-net-hostile,virtio-net-serve net_peer=10.0.2.2:$ECHOPORT net_serve=30" \
			</dev/null >"$TMP/out" 2>"$TMP/err" &
		BGPID=$!
		wait_for "$TMP/out" 'serving at' 30
		run "$LKVM" stat "hostile-$t" --all
		echo "$output"
		[ "$status" -eq 0 ]
		# The 3000-byte frame and the echo too long for 128-byte buffers.
		grep -qE '^dev\.virtio-net0-tx\.errors [1-9]' <<<"$output"
		grep -qE '^dev\.virtio-net0-rx\.errors [1-9]' <<<"$output"
		run "$NETCLIENT" udp 127.0.0.1 "$port" quit
		[ "$status" -eq 0 ]
		wait_bg
		[ "$rc" -eq 0 ]
		grep -q '^ok 2 - virtio-net-hostile' "$TMP/out"
		[ "$(grep -c 'buffer outside guest RAM' "$TMP/err")" -eq 1 ]
	done
}

@test "lkvm -n (user mode) without lkvm-slirp: one line, the guest sees the link down, lkvm runs on" {
	cp "$LKVM" "$TMP/lkvm"
	run --separate-stderr timeout 60 "$TMP/lkvm" run -k "$KERNEL" -n mode=user \
		-p "tests=virtio-net net_link=down" </dev/null
	echo "$output"
	echo "$stderr"
	[ "$status" -eq 0 ]
	grep -q 'net0: mac .*, link down' <<<"$output"
	[ "$(wc -l <<<"$stderr")" -eq 1 ]
	grep -q '^lkvm: network: user mode needs lkvm-slirp next to lkvm' <<<"$stderr"
}

@test "lkvm -n mode=tap,queues=2: two queue pairs on a multi-queue tap, chosen through the control queue" {
	need_netns
	netns_with_tap "lkvm-net-$$" lt0 multi_queue
	start_echo_server "$NETNS"
	for t in pci mmio pci-legacy; do
		guest_passes ip netns exec "$NETNS" timeout 60 "$LKVM" run \
			-k "$KERNEL" --virtio-transport $t -n mode=tap,tapif=lt0,queues=2 \
			-p "tests=virtio-net-mq,virtio-net-udp net_ip=$GUEST_IP net_peer=$HOST_IP:$ECHOPORT"
		grep -q '2 pairs offered, 2 in use; echo through the second pair' <<<"$output"
	done
}

@test "lkvm -n mode=tap,queues=2 on a single-queue tap: one line, link down, lkvm runs on" {
	need_netns
	netns_with_tap "lkvm-net-$$" lt0
	run --separate-stderr ip netns exec "$NETNS" timeout 60 "$LKVM" run \
		-k "$KERNEL" -n mode=tap,tapif=lt0,queues=2 -p "tests=virtio-net net_link=down" </dev/null
	echo "$output"
	echo "$stderr"
	[ "$status" -eq 0 ]
	[ "$(wc -l <<<"$stderr")" -eq 1 ]
	grep -q "^lkvm: network: tap lt0: .*multi_queue" <<<"$stderr"
}

@test "lkvm -n mode=tap: checksum offload: the header reaches the tap, which completes the checksum" {
	need_netns
	netns_with_tap "lkvm-net-$$" lt0
	start_echo_server "$NETNS"
	for t in pci mmio-legacy; do
		guest_passes ip netns exec "$NETNS" timeout 60 "$LKVM" run \
			-k "$KERNEL" --virtio-transport $t -n mode=tap,tapif=lt0 \
			-p "tests=virtio-net-csum,virtio-net-udp net_ip=$GUEST_IP net_peer=$HOST_IP:$ECHOPORT"
		grep -q '^ok 1 - virtio-net-csum$' <<<"$output"
	done
	# User mode offers no offloads: the check says so.
	need_slirp
	guest_passes lkvm_run -n mode=user -p "tests=virtio-net-csum"
	grep -q '^ok 1 - virtio-net-csum # SKIP net0: no checksum offload offered' <<<"$output"
}

@test "lkvm -n twice: two devices; a -n none between them adds none" {
	need_slirp
	guest_passes lkvm_run -n mode=user -n none -n mode=user,guest_mac=02:00:00:00:00:07 \
		-p "tests=virtio-net"
	grep -q '^# virtio: net0 on pci 00:0[0-9a-f]\.0 1af4:1000' <<<"$output"
	grep -q '^# virtio: net1 on pci 00:0[0-9a-f]\.0 1af4:1000' <<<"$output"
	! grep -q '^# virtio: net2' <<<"$output"
	grep -q 'net0: mac 02:4c:4b:56:4d:00, link up' <<<"$output"
}

@test "lkvm run --detach -n mode=user: the caller's output ends once the guest runs, not when lkvm-slirp exits" {
	need_slirp
	# The guest serves for 20 s: a helper holding the caller's stdout
	# would keep `run` waiting until then, and the guest would be gone.
	run "$LKVM" run -k "$KERNEL" -m 128 --detach --name det \
		--console-log "$TMP/det.log" -n mode=user \
		-p "tests=virtio-net-dhcp,virtio-net-serve net_serve=20"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$output" = det ]
	run "$LKVM" stat det
	[ "$status" -eq 0 ]
	! grep -q '^ok 2' "$TMP/det.log"
	"$LKVM" stop det --wait
}
