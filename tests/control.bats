#!/usr/bin/env bats
# Controlling running guests (docs/control.md): real guests of the test
# kernel, started detached and steered through their control sockets.
# Nothing here sleeps to synchronise: each step waits for an event (a
# console line, a socket, a process gone) with a bounded wait.

load helpers

setup() {
	setup_tmp
	chmod 755 "$TMP"	# the two-users test reaches in as nobody
}

teardown() {
	stop_guests
	teardown_tmp
}

start() { start_heartbeat "$@"; }

# Waits until no process has PID (bounded).
wait_gone() { # pid [secs]
	local deadline=$((SECONDS + ${2:-20}))
	while kill -0 "$1" 2>/dev/null; do
		[ $SECONDS -lt $deadline ] || { echo "pid $1 still there"; return 1; }
		sleep 0.02
	done
}

# json_get FILE KEY.PATH: one value from lkvm stat --json.
json_get() {
	python3 -c '
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    v = v[k]
print(v)' "$1" "$2"
}

@test "run --detach prints the name once the guest runs; list shows it" {
	start g1
	[ -S "$LKVM_HOME/g1.sock" ]
	[ "$(stat -c %a "$LKVM_HOME/g1.sock")" = 600 ]
	[ "$(stat -c %a "$LKVM_HOME")" = 700 ]
	run "$LKVM" list
	[ "$status" -eq 0 ]
	echo "$output"
	[[ "${lines[0]}" == NAME*PID*STATE*VCPUS*MEMORY ]]
	[[ "${lines[1]}" =~ ^g1\ +[0-9]+\ +running\ +1\ +128M$ ]]
	run "$LKVM" list --json
	python3 -c '
import json, sys
g, = json.loads(sys.argv[1])
assert g["name"] == "g1" and g["state"] == "running", g
assert g["vcpus"] == 1 and g["memory"] == 128 << 20, g
assert g["pid"] > 0' "$output"
}

@test "run --detach without --name: the name is guest-PID of the guest's lkvm" {
	run "$LKVM" run --detach -p tests=heartbeat
	[ "$status" -eq 0 ]
	[[ "$output" =~ ^guest-[0-9]+$ ]]
	name=$output
	PIDS+=" ${name#guest-}"
	[ "$(guest_pid "$name")" = "${name#guest-}" ]
}

@test "run --detach of a guest that cannot start: its error, status 1" {
	run "$LKVM" run --detach --name bad -k "$TMP/missing"
	assert_one_line_error "kernel '.*missing': No such file"
	run "$LKVM" run --detach --name 'a/b'
	[ "$status" -eq 1 ]
	[[ "$output" == *"--name 'a/b'"* ]]
	[ -z "$(ls "$LKVM_HOME")" ]
}

@test "pause stops the heartbeat, resume lets it go on; pausing twice is fine" {
	start g
	run "$LKVM" pause g
	[ "$status" -eq 0 ]
	[ -z "$output" ]
	run "$LKVM" pause g
	[ "$status" -eq 0 ]
	[[ "$("$LKVM" list)" == *"g "*" paused "* ]]
	beat=$(last_beat g)
	# A paused vCPU does not move: its registers read the same twice.
	a=$("$LKVM" debug g --regs | grep -E '^(rip|rax)=')
	b=$("$LKVM" debug g --regs | grep -E '^(rip|rax)=')
	[ "$a" = "$b" ]
	# The heartbeat (every 100 ms) must not come within a whole second.
	! wait_for "$TMP/g.log" "^# heartbeat $((beat + 2))\$" 1 2>/dev/null
	run "$LKVM" resume g
	[ "$status" -eq 0 ]
	[[ "$("$LKVM" list)" == *"g "*" running "* ]]
	wait_for "$TMP/g.log" "^# heartbeat $((beat + 2))\$" 10
	run "$LKVM" resume g
	[ "$status" -eq 0 ]
}

@test "pause --all and resume --all act on every guest" {
	start a
	start b
	run "$LKVM" pause --all
	[ "$status" -eq 0 ]
	[ "$("$LKVM" list | grep -c ' paused ')" -eq 2 ]
	run "$LKVM" resume --all
	[ "$status" -eq 0 ]
	[ "$("$LKVM" list | grep -c ' running ')" -eq 2 ]
	run "$LKVM" pause
	[ "$status" -eq 1 ]
	[[ "$output" == *"give a NAME or --all"* ]]
}

@test "debug --mem shows the value the test kernel wrote at its address" {
	start g
	read -r _ _ gpa value < <(grep -m1 '^# magic ' "$TMP/g.log")
	[ -n "$value" ]
	# The hex dump shows the 64-bit value's bytes, little-endian.
	bytes=$(printf '%016x' "$value" | sed -E 's/(..)/\1 /g' |
		awk '{ for (i = NF; i > 0; i--) printf "%s%s", $i, (i > 1 ? " " : "") }')
	run "$LKVM" debug g --mem "$gpa" 8
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == "$(printf '%016x' "$gpa")  $bytes "* ]]
	[[ "$output" == *"MVKL|" ]]
	# A longer dump: 16 bytes a line, the second half after a gap.
	run "$LKVM" debug g --mem "$gpa" 0x20
	[ "${#lines[@]}" -eq 2 ]
	[[ "${lines[0]}" == "$(printf '%016x' "$gpa")  $bytes  "* ]]
	# Beyond RAM: refused, naming the range.
	run "$LKVM" debug g --mem 0x100000000 16
	assert_one_line_error "guest 'g': 0x100000000-0x10000000f is not guest memory"
}

@test "debug --translate walks the kernel's non-identity mapping level by level" {
	start g
	read -r _ _ gva gpa < <(grep -m1 '^# map ' "$TMP/g.log")
	[ -n "$gpa" ]
	run "$LKVM" debug g --translate "$gva"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"4-level paging"* ]]
	for level in PML4E PDPTE PDE PTE; do
		grep -qE "^  $level +\[" <<<"$output"
	done
	[ "${lines[-1]}" = "$gva -> $gpa" ]
	# And the memory there is the magic page.
	read -r _ _ magic _ < <(grep -m1 '^# magic ' "$TMP/g.log")
	[ "$magic" = "$gpa" ]
	# An address with no mapping, and one that is not canonical.
	run "$LKVM" debug g --translate 0xffff900000000000
	[ "$status" -eq 1 ]
	[[ "$output" == *"not present"* ]]
	[[ "${lines[-1]}" == *"0xffff900000000000 is not mapped" ]]
	run "$LKVM" debug g --translate 0x0000900000000000
	[ "$status" -eq 1 ]
	[[ "$output" == *"is not canonical"* ]]
}

@test "debug --regs: every vCPU, or the one --cpu names; a wrong one is named" {
	start g -c 2
	run "$LKVM" debug g --regs
	[ "$status" -eq 0 ]
	[[ "$output" == *"vCPU 0 registers:"*"vCPU 1 registers:"* ]]
	for r in rax= rip= "cs   sel=" cr0= cr3= cr4= efer= "code at"; do
		[[ "$output" == *"$r"* ]]
	done
	run "$LKVM" debug g --regs --cpu 1
	[ "$status" -eq 0 ]
	[[ "$output" == *"vCPU 1 registers:"* ]]
	[[ "$output" != *"vCPU 0 registers:"* ]]
	run "$LKVM" debug g --regs --cpu 5
	assert_one_line_error "^lkvm: guest 'g': no vCPU 5 \(the guest has 2\)$"
}

@test "debug --stack shows the stack; --nmi reaches the guest" {
	start g
	run "$LKVM" debug g --stack
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "${lines[0]}" == "vCPU 0: rip 0x"* ]]
	[[ "${lines[1]}" == "stack from 0x"*"(16 words):" ]]
	[[ "$output" == *"frames (frame-pointer chain):"* ]]
	# The test kernel has no NMI handler: it reports the exception and
	# ends with a failure status, which lkvm wait collects.
	run "$LKVM" debug g --nmi --cpu 0
	[ "$status" -eq 0 ]
	wait_for "$TMP/g.log" 'Bail out! exception NMI' 10
	run "$LKVM" wait g --timeout 20
	[ "$status" -eq 3 ]
}

@test "debug --dump writes an ELF core that gdb opens" {
	command -v gdb >/dev/null || skip "no gdb"
	start g
	read -r _ _ gpa value < <(grep -m1 '^# magic ' "$TMP/g.log")
	"$LKVM" pause g
	rip=$("$LKVM" debug g --regs | sed -nE 's/^rip=([0-9a-f]+) .*/\1/p')
	run "$LKVM" debug g --dump "$TMP/core"
	[ "$status" -eq 0 ]
	[[ "$output" == "$TMP/core: ELF core, "*" bytes" ]]
	[ "$(stat -c %a "$TMP/core")" = 600 ]
	readelf -h "$TMP/core" | grep -q 'CORE (Core file)'
	readelf -n "$TMP/core" | grep -q NT_PRSTATUS
	run gdb -batch -nx -ex 'info registers rip' -ex "x/gx $gpa" \
		x86-kernel/test-kernel.elf "$TMP/core"
	echo "$output"
	[[ "$output" == *"rip"*"0x$((16#$rip))"* ]] ||
		[[ "$output" == *"rip"*"$(printf '0x%x' $((16#$rip)))"* ]]
	[[ "$output" == *"$(printf '0x%016x' "$value")"* ]] ||
		[[ "$output" == *"$(printf '0x%x' "$value")"* ]]
	"$LKVM" resume g
}

@test "stat: exits by reason and device counters grow while the guest runs" {
	start g
	"$LKVM" stat g --json >"$TMP/s1"
	beat=$(last_beat g)
	wait_for "$TMP/g.log" "^# heartbeat $((beat + 3))\$" 10
	"$LKVM" stat g --json >"$TMP/s2"
	[ "$(json_get "$TMP/s1" mem.ram_bytes)" -eq $((128 << 20)) ]
	[ "$(json_get "$TMP/s2" lkvm.exits.io)" -gt "$(json_get "$TMP/s1" lkvm.exits.io)" ]
	[ "$(json_get "$TMP/s2" io.serial.writes)" -gt "$(json_get "$TMP/s1" io.serial.writes)" ]
	[ "$(json_get "$TMP/s2" io.serial.bytes)" -gt 0 ]
	[ "$(json_get "$TMP/s2" guest.state)" = running ]
	run "$LKVM" stat g
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "${lines[0]}" == "guest 'g': running, 1 vCPU, 128 MiB of memory"* ]]
	[[ "$output" == *"exits that reached lkvm, by reason:"*"io "* ]]
	[[ "$output" == *"serial "* ]]
	# KVM's own statistics, where the kernel has them.
	if "$LKVM" stat g --all | grep -q '^kvm.vcpu.exits '; then
		[[ "$output" == *"exits counted by KVM (all vCPUs):"* ]]
	fi
}

@test "console: attach sees the output, Ctrl-A x detaches, the guest runs on" {
	start g
	mkfifo "$TMP/in"
	"$LKVM" console g <"$TMP/in" >"$TMP/out" 2>&1 &
	cpid=$!
	exec 5>"$TMP/in"
	wait_for "$TMP/out" '^# heartbeat [0-9]+' 10
	printf '\001x' >&5
	wait "$cpid"
	exec 5>&-
	[[ "$("$LKVM" list)" == *"g "*" running "* ]]
	# Attached output also went on into the log.
	beat=$(last_beat g)
	wait_for "$TMP/g.log" "^# heartbeat $((beat + 1))\$" 10
}

@test "console: input reaches the guest; the client ends with the guest" {
	run "$LKVM" run --detach --name s --console-log "$TMP/s.log" \
		-p tests=serial-input
	[ "$status" -eq 0 ]
	wait_for "$TMP/s.log" 'serial-input: waiting' 30
	line="hello-$RANDOM"
	run timeout 30 "$LKVM" console s <<<"$line"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"# input: $line"* ]]
	[[ "$output" == *"ok 1 - serial-input"* ]]
	run "$LKVM" wait s
	[ "$status" -eq 0 ]
}

@test "debug --sysrq sends a break and the character on COM1" {
	run "$LKVM" run --detach --name s --console-log "$TMP/s.log" \
		-p tests=serial-input
	[ "$status" -eq 0 ]
	wait_for "$TMP/s.log" 'serial-input: waiting' 30
	run "$LKVM" debug s --sysrq h
	[ "$status" -eq 0 ]
	# The break arrives as a NUL; then the 'h', then a newline ends it.
	printf '\n' | timeout 30 "$LKVM" console s >"$TMP/out"
	grep -q 'ok 1 - serial-input: 2 characters, 3 bytes' "$TMP/out"
}

@test "wait returns the guest's own exit status, even after the guest ended" {
	flat_exit "$TMP/f.bin" "bye" 05
	run "$LKVM" run --detach --name f -k "$TMP/f.bin"
	[ "$status" -eq 0 ]
	run "$LKVM" wait f
	[ "$status" -eq 11 ]	# (5 << 1) | 1, as lkvm run
	# Collected: nothing is left, a second wait knows no such guest.
	[ -z "$(ls "$LKVM_HOME")" ]
	run "$LKVM" wait f
	assert_one_line_error "^lkvm: no guest named 'f'$"
	# A guest that ended before anyone waited is listed with its status.
	run "$LKVM" run --detach --name t -p "tests=smp expect_cpus=3"
	[ "$status" -eq 0 ]
	wait_for "$LKVM_HOME/t.exit" . 30
	[[ "$("$LKVM" list)" == *"t "*"exited(3)"* ]]
	run "$LKVM" wait t
	[ "$status" -eq 3 ]
}

@test "wait --timeout: 124 when the guest runs on; errors name the guest" {
	start g
	run "$LKVM" wait g --timeout 0.2
	[ "$status" -eq 124 ]
	[[ "$output" == "lkvm: guest 'g' is still running after 0.2 s" ]]
	run "$LKVM" wait nosuch
	assert_one_line_error "^lkvm: no guest named 'nosuch'$"
}

@test "stop: devices flushed, socket gone, run exits 0; --wait outlives the process" {
	# In the foreground, as a script would run it in the background.
	"$LKVM" run --name fg -p tests=heartbeat >"$TMP/fg.out" 2>&1 </dev/null &
	fg=$!
	wait_for "$TMP/fg.out" '^# heartbeat 1$' 30
	run "$LKVM" stop fg
	[ "$status" -eq 0 ]
	[ ! -e "$LKVM_HOME/fg.sock" ]
	wait "$fg"
	# The run ends as a power-off does.
	[ "$?" -eq 0 ] || { echo "lkvm run: $?"; false; }

	start d
	pid=$(guest_pid d)
	run "$LKVM" stop --wait d
	[ "$status" -eq 0 ]
	! kill -0 "$pid" 2>/dev/null
	[ -z "$(ls "$LKVM_HOME")" ]
	run "$LKVM" stop d
	assert_one_line_error "^lkvm: no guest named 'd'$"
}

@test "stop runs every device's exit hook before it returns" {
	# The debug console holds a line until its newline or the device's
	# exit hook; a detached lkvm's own stderr goes to the console log.
	{ print_code "unfinished" e9 00; print_code $'ready\n'; hex fa f4; } \
		>"$TMP/f.bin"
	run "$LKVM" run --detach --name f --debug-console -k "$TMP/f.bin" \
		--console-log "$TMP/f.log"
	[ "$status" -eq 0 ]
	wait_for "$TMP/f.log" '^ready' 30
	! grep -q unfinished "$TMP/f.log"
	run "$LKVM" stop f
	[ "$status" -eq 0 ]
	grep -q unfinished "$TMP/f.log"
}

@test "stop of a paused guest" {
	start g
	"$LKVM" pause g
	run "$LKVM" stop --wait g
	[ "$status" -eq 0 ]
	[ -z "$(ls "$LKVM_HOME")" ]
}

@test "errors name the guest and the problem" {
	for cmd in pause resume stop stat console "debug --regs" wait; do
		run "$LKVM" $cmd nosuch
		assert_one_line_error "^lkvm: no guest named 'nosuch'$"
	done
	run "$LKVM" pause 'no/such'
	assert_one_line_error "^lkvm: 'no/such' is not a guest name$"
	run "$LKVM" debug nosuch
	[ "$status" -eq 1 ]
	[[ "$output" == *"nothing to do"* ]]
	run "$LKVM" debug --mem 0x1000
	[ "$status" -eq 1 ]
	for c in list pause resume stop stat debug console wait; do
		run "$LKVM" help "$c"
		[ "$status" -eq 0 ]
		[[ "$output" == *"Exit status"* ]] || { echo "help $c"; false; }
	done
}

@test "two guests cannot share a name" {
	start g
	run "$LKVM" run --detach --name g -p tests=heartbeat
	assert_one_line_error "^lkvm: a guest named 'g' is already running \(pid [0-9]+\)$"
}

@test "a socket left by a killed lkvm is recognised as stale and replaced" {
	start g
	pid=$(guest_pid g)
	kill -KILL "$pid"
	wait_gone "$pid"
	[ -S "$LKVM_HOME/g.sock" ]	# left behind
	run "$LKVM" pause g
	assert_one_line_error "^lkvm: no guest named 'g'$"
	run "$LKVM" list
	[ "${#lines[@]}" -eq 1 ]
	[ ! -e "$LKVM_HOME/g.sock" ]	# removed on the way
	# A bare socket file nobody holds is replaced by the next guest.
	python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' \
		"$LKVM_HOME/g.sock"
	start g
	run "$LKVM" pause g
	[ "$status" -eq 0 ]
	run "$LKVM" wait g --timeout 0.1
	[ "$status" -eq 124 ]
	run "$LKVM" wait dead 2>/dev/null
	[ "$status" -eq 1 ]
}

@test "a malformed control message closes that client only" {
	start g
	run python3 - "$LKVM_HOME/g.sock" <<'EOF'
import socket, struct, sys
def conn():
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(sys.argv[1])
    return s
good, bad, big = conn(), conn(), conn()
bad.sendall(b"GET / HTTP/1.1\r\n\r\n")
assert bad.recv(100) == b"", "garbage must close the client"
big.sendall(struct.pack("<IHHII", 0x434d564c, 1, 1, 1, 1 << 20))
assert big.recv(100) == b"", "an oversized message must close the client"
good.sendall(struct.pack("<IHHII", 0x434d564c, 1, 1, 42, 0))  # INFO
hdr = good.recv(16, socket.MSG_WAITALL)
magic, version, op, seq, size = struct.unpack("<IHHII", hdr)
body = good.recv(size, socket.MSG_WAITALL)
err, _ = struct.unpack("<iI", body[:8])
assert (op, seq, err) == (1, 42, 0), (op, seq, err)
assert b"name g\n" in body
# A wrong body size is answered, and the client stays.
good.sendall(struct.pack("<IHHII", 0x434d564c, 1, 7, 43, 3) + b"abc")
hdr = good.recv(16, socket.MSG_WAITALL)
body = good.recv(struct.unpack("<IHHII", hdr)[4], socket.MSG_WAITALL)
assert struct.unpack("<i", body[:4])[0] == -22, body
print("ok")
EOF
	echo "$output"
	[ "$status" -eq 0 ]
	run "$LKVM" pause g
	[ "$status" -eq 0 ]
}

@test "two users: another user can reach neither the directory nor the socket" {
	id nobody >/dev/null 2>&1 || skip "no user nobody"
	[ "$(id -u)" -eq 0 ] || skip "needs root to switch users"
	start g
	as_nobody() {
		setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups \
			env LKVM_HOME="$LKVM_HOME" "$LKVM" "$@"
	}
	# The directory is 0700: the first wall.
	run as_nobody pause g
	[ "$status" -eq 1 ]
	[[ "$output" == "lkvm: guest 'g': "*"ermission denied"* ]]
	# With the walls opened, the server still checks who connects.
	chmod 755 "$LKVM_HOME"
	chmod 666 "$LKVM_HOME/g.sock"
	run as_nobody pause g
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == "lkvm: guest 'g': permission denied: the guest belongs to uid 0" ]]
	[[ "$("$LKVM" list)" == *"g "*" running "* ]]
	# Root may control any user's guest: the server allows uid 0.
	run "$LKVM" pause g
	[ "$status" -eq 0 ]
}

@test "20 guests started and stopped in parallel leave nothing behind" {
	nets_before=$(ls /sys/class/net | sort)
	for i in $(seq 1 20); do
		"$LKVM" run --detach --name "p$i" -m 16 --console-log "$TMP/p$i.log" \
			-p tests=heartbeat >"$TMP/p$i.out" 2>&1 &
	done
	wait
	for i in $(seq 1 20); do
		[ "$(cat "$TMP/p$i.out")" = "p$i" ] || { cat "$TMP/p$i.out"; false; }
	done
	pids=$("$LKVM" list --json | python3 -c '
import json, sys
g = json.load(sys.stdin)
assert len(g) == 20 and all(x["state"] == "running" for x in g), g
print(" ".join(str(x["pid"]) for x in g))')
	PIDS+=" $pids"
	for i in $(seq 1 20); do
		wait_for "$TMP/p$i.log" '^# heartbeat 1$' 60
	done
	run "$LKVM" stop --all --wait
	[ "$status" -eq 0 ]
	for p in $pids; do
		! kill -0 "$p" 2>/dev/null
	done
	[ -z "$(ls -A "$LKVM_HOME")" ]
	[ "$(ls /sys/class/net | sort)" = "$nets_before" ]
	run "$LKVM" list --json
	[ "$output" = "[]" ]
}
