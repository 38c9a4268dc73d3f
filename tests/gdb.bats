#!/usr/bin/env bats
# The GDB stub (docs/gdb.md): a detached test-kernel guest with --gdb 0
# (lkvm picks a free port and prints it, so tests never race for one),
# debugged by gdb in batch mode with the test kernel's ELF for symbols,
# and by a raw protocol client (tests/gdb-rsp.py). The test kernel
# prints "# magic 0xGPA 0xVALUE" and "# map 0xGVA 0xGPA" at boot: VALUE
# is at GPA and, through a non-identity mapping, at GVA. Nothing here
# sleeps to synchronise: each step waits for a console line or a process.

load helpers

ELF="$BATS_TEST_DIRNAME/../x86-kernel/test-kernel.elf"
RSP="$BATS_TEST_DIRNAME/gdb-rsp.py"

setup() {
	setup_tmp
}

teardown() {
	stop_guests
	teardown_tmp
}

# start NAME [--gdb SPEC] [run options]: a detached heartbeat guest with
# the stub, once it beats (unless it waits for the debugger); PORT is the
# port lkvm chose.
start() {
	local name=$1 spec=0
	shift
	if [ "${1:-}" = --gdb ]; then
		spec=$2
		shift 2
	fi
	run "$LKVM" run --detach --name "$name" --console-log "$TMP/$name.log" \
		-p tests=heartbeat --gdb "$spec" "$@"
	[ "$status" -eq 0 ] || { echo "run --detach: $output"; return 1; }
	PIDS+=" $(guest_pid "$name")"
	PORT=$(sed -nE 's/^lkvm: gdb: listening on 127\.0\.0\.1:([0-9]+).*/\1/p' <<<"$output")
	[ -n "$PORT" ] || { echo "no port in: $output"; return 1; }
	[ "${lines[-1]}" = "$name" ] || { echo "printed '$output'"; return 1; }
	[[ "$spec" == *,wait ]] || wait_for "$TMP/$name.log" '^# heartbeat 1$' 30
}

# rsp MODE [packets...]: tests/gdb-rsp.py against the guest's stub.
rsp() {
	run timeout 30 python3 "$RSP" "$PORT" "$@"
	echo "$output"
}

gdb_batch() { # gdb commands...
	local args=() c
	for c in "$@"; do
		args+=(-ex "$c")
	done
	timeout 60 gdb -batch -nx -ex "target remote 127.0.0.1:$PORT" \
		"${args[@]}" "$ELF" 2>&1
}

@test "gdb: a breakpoint on a test-kernel function, its registers and memory, detach" {
	command -v gdb >/dev/null || skip "no gdb"
	start g
	read -r _ _ gpa value < <(grep -E '^# magic ' "$TMP/g.log")
	read -r _ _ gva _ < <(grep -E '^# map ' "$TMP/g.log")
	addr=$(nm "$ELF" | awk '$3 == "wait_tick" { print $1 }')
	run gdb_batch 'break wait_tick' continue 'info registers rip' \
		"x/gx $gpa" "x/gx $gva" 'x/gx &magic_page' 'info threads' \
		'p/x $cr3' 'set $cr3 = 0' detach
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"Breakpoint 1, 0x$addr in wait_tick ()"* ]]
	[[ "$output" == *"rip"*"$(printf '0x%x' $((16#$addr)))"*"<wait_tick>"* ]]
	# The value at the GPA, at the mapped GVA and at the symbol.
	[ "$(grep -c ":[[:space:]]*$value\$" <<<"$output")" -eq 3 ]
	[[ "$output" == *"Thread 1 (vCPU 0)"* ]]
	# cr3 as lkvm debug shows it; system registers are read-only.
	cr3=$("$LKVM" debug g --regs | sed -nE 's/.*cr3=0*([0-9a-f]+) .*/\1/p')
	[[ "$output" == *"\$1 = 0x$cr3"* ]]
	[[ "$output" == *'Could not write register "cr3"'* ]]
	[[ "$output" == *"detached"* ]]
	# Detached: breakpoint gone, the guest runs on.
	beat=$(last_beat g)
	wait_for "$TMP/g.log" "^# heartbeat $((beat + 2))\$" 10
	! grep -q 'Bail out' "$TMP/g.log"
}

@test "gdb: --gdb PORT,wait holds the guest until gdb continues; stepi and hbreak" {
	command -v gdb >/dev/null || skip "no gdb"
	start g --gdb 0,wait
	# Held before its first instruction: nothing printed yet.
	[ ! -s "$TMP/g.log" ]
	run gdb_batch 'hbreak magic_init' continue 'info registers rip' \
		stepi 'info registers rip' stepi 'info registers rip' detach
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"Breakpoint 1, "*" in magic_init ()"* ]]
	mapfile -t rips < <(sed -nE 's/^rip +(0x[0-9a-f]+) .*/\1/p' <<<"$output")
	[ "${#rips[@]}" -eq 3 ]
	[ $((rips[1])) -gt $((rips[0])) ] && [ $((rips[2])) -gt $((rips[1])) ]
	bp=$(sed -nE 's/^Hardware assisted breakpoint 1 at (0x[0-9a-f]+).*/\1/p' <<<"$output")
	[ -n "$bp" ] && [ $((rips[0])) -eq $((bp)) ]
	wait_for "$TMP/g.log" '^# heartbeat 2$' 30
	! grep -q 'Bail out' "$TMP/g.log"
}

@test "gdb: Ctrl-C stops the running guest; detach resumes it" {
	start g
	rsp interrupt
	[ "$status" -eq 0 ]
	[[ "$output" == *"stop T05thread:1;"* ]]
	[[ "$output" == *"ack + interrupted T02thread:1;"* ]]
	[[ "$output" =~ rip\ [0-9a-f]{16} ]]
	[[ "$output" == *"detach OK"* ]]
	beat=$(last_beat g)
	wait_for "$TMP/g.log" "^# heartbeat $((beat + 2))\$" 10
}

@test "gdb: registers, threads and the target description over the raw protocol" {
	start g --gdb 0,wait -c 2
	rsp packets qfThreadInfo qsThreadInfo \
		Hg2 qC T3 p10 p40 'qXfer:features:read:target.xml:0,40' \
		'Z1,100000,1' 'Z1,100001,1' 'Z2,100010,2' 'Z1,100003,1' \
		'Z1,100004,1' 'z1,100000,1' 'z1,100000,1' 'Z2,100011,2' m0,0x D
	[ "$status" -eq 0 ]
	[[ "$output" == *"qfThreadInfo -> m1,2"* ]]
	[[ "$output" == *"qsThreadInfo -> l"* ]]
	[[ "$output" == *"qC -> QC2"* ]]
	[[ "$output" == *"T3 -> E03"* ]]
	# Held before its first instruction, the AP has not started: its rip.
	[[ "$output" =~ p10\ -\>\ [0-9a-f]{16} ]]
	[[ "$output" == *"p40 -> E16"* ]]
	[[ "$output" == *'-> m<?xml version="1.0"?><!DOCTYPE target'* ]]
	# Four debug registers: the fifth breakpoint is refused, one freed is
	# taken again, a misaligned watchpoint is refused.
	[[ "$output" == *"Z1,100004,1 -> E1c"* ]]
	[[ "$output" == *"z1,100000,1 -> OK"* ]]
	[[ "$output" == *"z1,100000,1 -> E02"* ]]
	[[ "$output" == *"Z2,100011,2 -> E16"* ]]
	[[ "$output" == *"m0,0x -> E16"* ]]
	wait_for "$TMP/g.log" '^# heartbeat 1$' 30
}

@test "gdb: malformed packets and garbage drop the client, never the guest" {
	start g
	# Connected but silent: the guest is not stopped by that alone.
	exec {silent}<>"/dev/tcp/127.0.0.1/$PORT"
	beat=$(last_beat g)
	wait_for "$TMP/g.log" "^# heartbeat $((beat + 2))\$" 10
	exec {silent}>&-
	rsp malformed
	[ "$status" -eq 0 ]
	[[ "$output" == *"bad checksum: -"* ]]
	[[ "$output" == *"after it: QC1"* ]]
	[[ "$output" == *"oversized: closed"* ]]
	rsp garbage
	[[ "$output" == *"garbage: closed"* ]]
	beat=$(last_beat g)
	wait_for "$TMP/g.log" "^# heartbeat $((beat + 2))\$" 10
	# A well-behaved debugger is served afterwards.
	rsp packets '?' D
	[[ "$output" == *"? -> T05thread:1;"* ]]
}

@test "gdb: one debugger at a time; it hears when the guest ends" {
	start g
	timeout 90 python3 "$RSP" "$PORT" exit >"$TMP/rsp.out" 2>&1 &
	rsp=$!
	wait_for "$TMP/rsp.out" '^continued$' 30
	"$LKVM" stop g --wait
	wait "$rsp"
	cat "$TMP/rsp.out"
	grep -q '^second client: closed$' "$TMP/rsp.out"
	grep -qE '^end W[0-9a-f]{2}$' "$TMP/rsp.out"
}

@test "--gdb: a bad port or setting is refused at start" {
	run "$LKVM" run --gdb 70000
	assert_one_line_error "--gdb '70000': the port must be a number from 0 to 65535"
	run "$LKVM" run --gdb 0,later
	assert_one_line_error "--gdb '0,later': unknown setting 'later'"
	run "$LKVM" run --gdb nohost:0
	assert_one_line_error "'nohost' is not an IPv4 address"
}
