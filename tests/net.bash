# Shared by net.bats and qemu-net.bats: network namespaces with a tap,
# and the host-side client (net-client.py).
NETCLIENT="$BATS_TEST_DIRNAME/net-client.py"
GUEST_IP=10.77.0.2
HOST_IP=10.77.0.1

# netns_with_tap NAME TAP [multi_queue]: a namespace holding TAP (up,
# $HOST_IP/24).
netns_with_tap() {
	ip netns add "$1" || return 1
	NETNS="$1"
	ip -n "$1" link set lo up &&
	ip -n "$1" tuntap add dev "$2" mode tap ${3:-} &&
	ip -n "$1" addr add "$HOST_IP/24" dev "$2" &&
	ip -n "$1" link set "$2" up
}

netns_cleanup() {
	[ -n "${NETNS:-}" ] && ip netns del "$NETNS" 2>/dev/null
	NETNS=
	return 0
}

# A UDP echo server on the host's loopback, or in namespace NS on
# $HOST_IP: ECHOPID, ECHOPORT.
start_echo_server() { # [ns]
	if [ -n "${1:-}" ]; then
		ip netns exec "$1" "$NETCLIENT" echo-server "$HOST_IP" >"$TMP/echo.port" &
	else
		"$NETCLIENT" echo-server >"$TMP/echo.port" &
	fi
	ECHOPID=$!
	wait_for "$TMP/echo.port" '^[0-9]+$' 10
	ECHOPORT=$(cat "$TMP/echo.port")
}

# host_talks_to_guest NS: the host pings the guest in namespace NS, gets
# its UDP echo, then ends the guest's serve loop with "quit".
host_talks_to_guest() {
	ip netns exec "$1" "$NETCLIENT" ping "$GUEST_IP" 3 &&
	ip netns exec "$1" "$NETCLIENT" udp "$GUEST_IP" 7 hello-guest &&
	ip netns exec "$1" "$NETCLIENT" udp "$GUEST_IP" 7 quit
}

# Waits for the guest started in the background as BGPID (its console in
# $TMP/out, messages in $TMP/err): its status in rc, both logs shown.
wait_bg() {
	rc=0
	wait "$BGPID" || rc=$?
	BGPID=
	cat "$TMP/out" "$TMP/err"
}

# host_reaches_forward PORT SECS: the guest started as BGPID (console in
# $TMP/out) serves within SECS; a host TCP connection to 127.0.0.1:PORT
# reaches its listener through the forward, a second one ends its serve
# loop, and the guest passes its serve check.
host_reaches_forward() {
	wait_for "$TMP/out" 'serving at 10\.0\.2\.15' "$2" || return 1
	run "$NETCLIENT" tcp 127.0.0.1 "$1" hello-through-slirp
	echo "$output"
	[ "$status" -eq 0 ] || return 1
	run "$NETCLIENT" tcp 127.0.0.1 "$1" quit
	[ "$status" -eq 0 ] || return 1
	wait_bg
	[ "$rc" -eq 0 ] || return 1
	grep -q '^ok 2 - virtio-net-serve' "$TMP/out"
}

# Whatever a test left running: the guest, the echo server, the namespace.
net_teardown() {
	[ -n "${BGPID:-}" ] && kill -KILL "$BGPID" 2>/dev/null
	[ -n "${ECHOPID:-}" ] && kill "$ECHOPID" 2>/dev/null
	netns_cleanup
	teardown_tmp
}

no_failures() {
	! grep -q '^not ok' <<<"$output" || { echo "$output"; return 1; }
}

# guest_passes COMMAND...: runs a guest (stdin empty); it must exit 0 with
# no failed check. Its console in $output, its messages on stderr.
guest_passes() {
	run --separate-stderr "$@" </dev/null
	echo "$output"
	echo "$stderr" >&2
	[ "$status" -eq 0 ] || return 1
	no_failures
}
