#!/usr/bin/env bats
# Introspection (docs/kvmi.md): a detached test-kernel guest serving KVMI
# on a socket (--introspect listen=...), driven by `lkvm introspect`.
# The test kernel prints "# magic 0xGPA 0xVALUE" (VALUE stored at GPA)
# and "# map 0xGVA 0xGPA" (a non-identity mapping) at boot. Nothing here
# sleeps to synchronise: each step waits for a console line or a process.

load helpers

setup() {
	setup_tmp
	head -c 32 /dev/urandom >"$TMP/cookie"
	chmod 600 "$TMP/cookie"
}

teardown() {
	stop_guests
	teardown_tmp
}

# start NAME: a heartbeat guest listening for a tool at $TMP/NAME.sock.
start() {
	start_heartbeat "$1" \
		--introspect "listen=$TMP/$1.sock,cookie=$TMP/cookie"
}

ki() { # NAME introspect-args...
	local name=$1
	shift
	"$LKVM" introspect --socket "$TMP/$name.sock" --cookie "$TMP/cookie" "$@"
}

# The bytes of a 64-bit value as a hex dump shows them (little-endian).
le_bytes() { # 0xVALUE
	local v=${1#0x} out="" i
	v=$(printf '%016x' "0x$v")
	for ((i = 14; i >= 0; i -= 2)); do
		out+="${v:i:2} "
	done
	echo "${out% }"
}

@test "introspect info: vCPUs and protocol version through KVMI" {
	start g
	run ki g info
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	[[ "$output" == *"version 1"* ]]
	[[ "$output" == *"vcpus 1"* ]]
	[[ "$output" == *"max_msg_size 8184"* ]]
}

@test "introspect read shows the test kernel's magic value at its GPA" {
	start g
	read -r _ _ gpa value < <(grep -E '^# magic ' "$TMP/g.log")
	run ki g read "$gpa" 8
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	[[ "$output" == *"$(le_bytes "$value")"* ]] ||
		{ echo "read $output; magic $value"; return 1; }
}

@test "introspect translate: the mapped GVA gives its GPA" {
	start g
	read -r _ _ gva gpa < <(grep -E '^# map ' "$TMP/g.log")
	run ki g translate "$gva"
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	[ "$((output))" -eq "$((gpa))" ] || { echo "$output != $gpa"; return 1; }
	# An unmapped address is said to be so.
	run ki g translate 0x7fff00000000
	[ "$status" -eq 1 ]
	[[ "$output" == *"not mapped"* ]]
}

@test "introspect write, then read back; regs shows a 64-bit vCPU" {
	start g
	read -r _ _ gpa _ < <(grep -E '^# magic ' "$TMP/g.log")
	addr=$(printf '0x%x' $((gpa + 0x100)))
	run ki g write "$addr" deadbeef01
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	run ki g read "$addr" 5
	[ "$status" -eq 0 ]
	[[ "$output" == *"de ad be ef 01"* ]] || { echo "$output"; return 1; }
	# Outside guest memory: refused, the guest goes on.
	run ki g read 0xffffffff000 8
	[ "$status" -eq 1 ]
	run ki g regs
	[ "$status" -eq 0 ]
	[[ "$output" == *"mode 64-bit"* ]]
	[[ "$output" == *"rip 0x"* ]]
}

@test "a wrong cookie is refused; the right one still works" {
	start g
	head -c 32 /dev/urandom >"$TMP/bad"
	chmod 600 "$TMP/bad"
	run "$LKVM" introspect --socket "$TMP/g.sock" --cookie "$TMP/bad" info
	[ "$status" -eq 1 ]
	[[ "$output" == *"ermission denied"* ]] || { echo "$output"; return 1; }
	run ki g info
	[ "$status" -eq 0 ]
}

@test "garbage on the socket does not stop the guest" {
	start g
	head -c 4096 /dev/urandom | python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.recv(64)                      # the hello
try:
    s.sendall(sys.stdin.buffer.read())
    s.recv(64)
except OSError:
    pass
s.close()' "$TMP/g.sock"
	beat=$(last_beat g)
	wait_for "$TMP/g.log" "^# heartbeat $((beat + 2))\$" 10
	run "$LKVM" list
	[[ "$output" == *"g "*" running "* ]]
	run ki g info
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
}

@test "introspect pause holds the vCPUs until it ends; a dropped tool lets go" {
	start g
	mkfifo "$TMP/in"
	ki g pause <"$TMP/in" >"$TMP/pause.out" 2>&1 &
	pid=$!
	PIDS+=" $pid"
	exec {w}>"$TMP/in"
	wait_for "$TMP/pause.out" '^paused$' 10
	beat=$(last_beat g)
	# The heartbeat (every 100 ms) must not come within a whole second.
	! wait_for "$TMP/g.log" "^# heartbeat $((beat + 2))\$" 1 2>/dev/null
	# A second tool is turned away while the first is connected.
	run ki g info
	[ "$status" -eq 1 ]
	# The tool goes (stdin ends): its pause ends with it.
	exec {w}>&-
	wait "$pid"
	wait_for "$TMP/g.log" "^# heartbeat $((beat + 2))\$" 10
	# And a killed tool lets go too.
	ki g pause <"$TMP/in" >"$TMP/pause2.out" 2>&1 &
	pid=$!
	PIDS+=" $pid"
	exec {w}>"$TMP/in"
	wait_for "$TMP/pause2.out" '^paused$' 10
	kill -KILL "$pid"
	exec {w}>&-
	beat=$(last_beat g)
	wait_for "$TMP/g.log" "^# heartbeat $((beat + 2))\$" 10
}

@test "introspect NAME pause --detach holds the guest until unpause" {
	start_heartbeat d --introspect listen
	run "$LKVM" introspect d pause --detach
	[ "$status" -eq 0 ] && [ "$output" = paused ] || { echo "$output"; return 1; }
	beat=$(last_beat d)
	! wait_for "$TMP/d.log" "^# heartbeat $((beat + 2))\$" 1 2>/dev/null
	run "$LKVM" introspect d pause --detach
	[ "$status" -eq 1 ]
	[[ "$output" == *"paused already"* ]]
	run "$LKVM" introspect d unpause
	[ "$status" -eq 0 ] && [ "$output" = resumed ] || { echo "$output"; return 1; }
	wait_for "$TMP/d.log" "^# heartbeat $((beat + 2))\$" 10
	run "$LKVM" introspect d unpause
	[ "$status" -eq 1 ]
	[[ "$output" == *"not paused"* ]]
	run "$LKVM" introspect d info --detach
	[ "$status" -eq 1 ]
}

@test "malformed commands get the codec's errors; bad messages close only the tool" {
	start g
	run python3 "$BATS_TEST_DIRNAME/kvmi-raw.py" "$TMP/g.sock" "$TMP/cookie"
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	expect="unknown -1000
version-with-data -22
version 0
read-padding -22
read-cross-page -22
vcpu-out-of-range -22
vcpu-padding -22
check-event-pause 0
check-command-map-memory 0
map-memory-bad-flag -22
control-events 0
after-bad-reply closed
after-oversized closed"
	[ "$output" = "$expect" ] || { echo "$output"; return 1; }
	beat=$(last_beat g)
	wait_for "$TMP/g.log" "^# heartbeat $((beat + 2))\$" 10
	run ki g info
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
}

@test "pipelined reads: one reply each, in order, errors where due; a write between them lands between them" {
	start g
	read -r _ _ gpa _ < <(grep -E '^# magic ' "$TMP/g.log")
	run python3 "$BATS_TEST_DIRNAME/kvmi-raw.py" "$TMP/g.sock" "$TMP/cookie" \
		pipeline "$gpa"
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	expect="replies 200 in-order
errors 100:-14 150:-22
before-write old
after-write new"
	[ "$output" = "$expect" ] || { echo "$output"; return 1; }
	# The library's pipelined read (the test kernel's code and constant
	# data, 124 KiB from 1 MiB) gives the bytes a mapping of RAM shows.
	run ki g read 0x100000 0x1f000
	[ "$status" -eq 0 ] || { echo "$output" | tail -3; return 1; }
	read_out=$(echo "$output" | md5sum)
	[ "$(echo "$output" | wc -l)" -gt 1000 ]
	run ki g read --mapped 0x100000 0x1f000
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | md5sum)" = "$read_out" ]
}

@test "a tool that sends a batch of reads and goes away does not wedge lkvm" {
	start g
	read -r _ _ gpa _ < <(grep -E '^# magic ' "$TMP/g.log")
	run timeout 20 python3 "$BATS_TEST_DIRNAME/kvmi-raw.py" "$TMP/g.sock" \
		"$TMP/cookie" drop "$gpa"
	[ "$status" -eq 0 ] && [ "$output" = dropped ] || { echo "$output"; return 1; }
	beat=$(last_beat g)
	wait_for "$TMP/g.log" "^# heartbeat $((beat + 2))\$" 10
	run ki g read "$gpa" 8
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
}

@test "a tool that stops taking its replies is dropped within the send timeout, and the log says why" {
	start g
	read -r _ _ gpa _ < <(grep -E '^# magic ' "$TMP/g.log")
	run timeout 30 python3 "$BATS_TEST_DIRNAME/kvmi-raw.py" "$TMP/g.sock" \
		"$TMP/cookie" deaf "$gpa" "$TMP/g.log"
	[ "$status" -eq 0 ] && [ "$output" = "dropped closed" ] || { echo "$output"; return 1; }
	beat=$(last_beat g)
	wait_for "$TMP/g.log" "^# heartbeat $((beat + 2))\$" 10
	run ki g info
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
}

@test "--introspect: bad settings and an open cookie are refused at start" {
	run "$LKVM" run --introspect "listen=$TMP/s"
	[ "$status" -eq 1 ]
	[[ "$output" == *"cookie=FILE"* ]]
	run "$LKVM" run --introspect "listen=$TMP/s,cookie=$TMP/cookie,poll=2000000"
	[ "$status" -eq 1 ]
	[[ "$output" == *"poll=2000000: microseconds, 0 to 1000000"* ]]
	chmod 644 "$TMP/cookie"
	run "$LKVM" run --introspect "listen=$TMP/s,cookie=$TMP/cookie"
	[ "$status" -eq 1 ]
	[[ "$output" == *"chmod 600"* ]]
}

@test "--introspect connect=: lkvm connects to a listening tool" {
	python3 - "$TMP/tool.sock" "$TMP/cookie" >"$TMP/tool.out" 2>&1 <<'PY' &
import hashlib, hmac, os, socket, struct, sys
path, cookie = sys.argv[1], open(sys.argv[2], "rb").read()
l = socket.socket(socket.AF_UNIX)
l.bind(path)
l.listen(1)
print("listening", flush=True)
l.settimeout(30)
s, _ = l.accept()
s.settimeout(10)
def recv_exact(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        assert c
        b += c
    return b
def recv_msg():
    mid, size, seq = struct.unpack("=HHI", recv_exact(8))
    return mid, seq, recv_exact(size)
_, _, hello = recv_msg()
nt = os.urandom(32)
mac = hmac.new(cookie, b"lkvm-kvmi-v1 tool" + hello[16:48] + nt,
               hashlib.sha256).digest()
s.sendall(struct.pack("=HHI", 0x602, 64, 0) + nt + mac)
recv_msg()
s.sendall(struct.pack("=HHI", 8, 0, 5))    # KVMI_VM_GET_INFO
mid, seq, r = recv_msg()
print("vcpus", struct.unpack("=iII", r[:12])[2], flush=True)
PY
	PIDS+=" $!"
	wait_for "$TMP/tool.out" '^listening$' 10
	run "$LKVM" run --detach --name c --console-log "$TMP/c.log" \
		-p tests=heartbeat \
		--introspect "connect=$TMP/tool.sock,cookie=$TMP/cookie"
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	wait_for "$TMP/tool.out" '^vcpus 1$' 30
	wait_for "$TMP/c.log" '^# heartbeat 2$' 30
}

@test "a socket file left by a dead lkvm is replaced; a live one is not" {
	python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' \
		"$TMP/g.sock"
	start g
	run ki g info
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	run "$LKVM" run --introspect "listen=$TMP/g.sock,cookie=$TMP/cookie"
	[ "$status" -eq 1 ]
	[[ "$output" == *"cannot listen"* ]] || { echo "$output"; return 1; }
	run ki g info
	[ "$status" -eq 0 ]
}

@test "tools one after another are each served, while the guest is paused too" {
	start g
	read -r _ _ gpa value < <(grep -E '^# magic ' "$TMP/g.log")
	"$LKVM" pause g
	for i in $(seq 15); do
		ki g regs >/dev/null || { echo "regs, round $i"; return 1; }
		run ki g read "$gpa" 8
		[ "$status" -eq 0 ] || { echo "read, round $i: $output"; return 1; }
	done
	"$LKVM" resume g
}

@test "lkvm introspect NAME: found in the registry with the cookie lkvm made" {
	start_heartbeat n --introspect listen
	run "$LKVM" introspect n info
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	[[ "$output" == *"vcpus 1"* ]]
	# Virtual addresses, through the guest's page tables.
	read -r _ _ gva _ < <(grep -E '^# map ' "$TMP/n.log")
	read -r _ _ _ value < <(grep -E '^# magic ' "$TMP/n.log")
	run "$LKVM" introspect n read --virt "$gva" 8
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	[[ "$output" == *"$(le_bytes "$value")"* ]] || { echo "$output"; return 1; }
	va=$(printf '0x%x' $((gva + 0x200)))
	run "$LKVM" introspect n write --virt "$va" cafe
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	run "$LKVM" introspect n read --virt "$va" 2
	[[ "$output" == *"ca fe"* ]] || { echo "$output"; return 1; }
	run "$LKVM" introspect nosuch info
	[ "$status" -eq 1 ]
	[[ "$output" == *"no such guest"* ]]
	# The registry entry goes with the guest.
	"$LKVM" stop n --wait
	run "$LKVM" introspect n info
	[ "$status" -eq 1 ]
}
