#!/usr/bin/env bats
# The test kernel's network checks under QEMU 7.2, the reference for
# tests/net.bats: -netdev user (QEMU's own libslirp: DHCP, NAT to a UDP
# echo server on the host's loopback, a host forward into the guest) and
# -netdev tap in a namespace the test creates (the host pings the guest
# and gets its UDP echo), on virtio-pci (pc) and virtio-mmio (microvm).

bats_require_minimum_version 1.5.0

load helpers
load qemu
load net

setup_file() {
	make -C "$KERNEL_DIR" >&2
}

setup() {
	need_qemu
	setup_tmp
	BGPID=
}

teardown() { net_teardown; }

@test "qemu microvm, -netdev user: DHCP, and the guest's UDP reaches a host loopback echo server" {
	start_echo_server
	run --separate-stderr qemu_microvm \
		"tests=virtio-net,virtio-net-dhcp,virtio-net-udp net_peer=10.0.2.2:$ECHOPORT" \
		-netdev user,id=n0 -device virtio-net-device,netdev=n0,mac=02:00:00:00:00:42
	echo "$output"
	[ "$status" -eq 0 ]
	no_failures
	grep -q 'mac 02:00:00:00:00:42, link up' <<<"$output"
	grep -q 'DHCP lease 10\.0\.2\.15 from 10\.0\.2\.2' <<<"$output"
	grep -q "UDP echo from 10\.0\.2\.2:$ECHOPORT" <<<"$output"
}

@test "qemu pc, -netdev user,hostfwd: a host TCP connection reaches the guest's listener" {
	local port
	port=$("$NETCLIENT" free-port)
	qemu_pc "tests=virtio-net-dhcp,virtio-net-serve net_serve=30" \
		-netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:7" \
		-device virtio-net-pci,netdev=n0 >"$TMP/out" 2>"$TMP/err" &
	BGPID=$!
	host_reaches_forward "$port" 60
}

@test "qemu microvm, -netdev tap: in a namespace the host pings the guest and gets its UDP echo" {
	[ "$(id -u)" -eq 0 ] || skip "network namespaces need root"
	netns_with_tap "qemu-net-$$" qt0
	ip netns exec "$NETNS" bash -c "$(declare -f qemu_kernel qemu_microvm); KERNEL=$KERNEL; \
		qemu_microvm 'tests=virtio-net,virtio-net-serve net_ip=$GUEST_IP net_serve=30' \
		-netdev tap,id=n0,ifname=qt0,script=no,downscript=no \
		-device virtio-net-device,netdev=n0" >"$TMP/out" 2>"$TMP/err" &
	BGPID=$!
	wait_for "$TMP/out" "serving at $GUEST_IP" 30
	run host_talks_to_guest "$NETNS"
	echo "$output"
	[ "$status" -eq 0 ]
	wait_bg
	[ "$rc" -eq 0 ]
	grep -qE 'answered [0-9]+ ARP, [3-9] ICMP echo, 2 UDP' "$TMP/out"
}

@test "qemu microvm, -netdev tap,queues=2: the multiqueue and checksum offload checks" {
	[ "$(id -u)" -eq 0 ] || skip "network namespaces need root"
	netns_with_tap "qemu-net-$$" qt0 multi_queue
	start_echo_server "$NETNS"
	run ip netns exec "$NETNS" bash -c "$(declare -f qemu_kernel qemu_microvm); KERNEL=$KERNEL; \
		qemu_microvm 'tests=virtio-net-mq,virtio-net-csum,virtio-net-udp net_ip=$GUEST_IP net_peer=$HOST_IP:$ECHOPORT' \
		-netdev tap,id=n0,ifname=qt0,script=no,downscript=no,queues=2 \
		-device virtio-net-device,netdev=n0,mq=on"
	echo "$output"
	[ "$status" -eq 0 ]
	no_failures
	grep -q '2 pairs offered, 2 in use; echo through the second pair' <<<"$output"
	grep -q '^ok 2 - virtio-net-csum$' <<<"$output"
}
