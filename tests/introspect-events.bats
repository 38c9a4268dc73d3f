#!/usr/bin/env bats
# KVMI events (docs/kvmi.md, "Events"): a test-kernel guest running the
# `introspect` check, which every 100 ms (round K) writes 0x1000+K to a
# page of its own, writes 0x10+K to MSR 0x174, rings the agent doorbell,
# and prints what it read back:
#   # introspect page 0xGPA msr 0x174 port 0xdb0
#   # introspect write K 0xWANT read 0xGOT
#   # introspect msr K wrote 0xW read 0xR
#   # introspect agent K rbx 0xRBX
# `lkvm introspect watch` protects, intercepts and answers; the guest's
# own lines show what the replies did. Nothing sleeps to synchronise.

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

# start NAME [--introspect extra settings]: the introspect guest,
# listening at $TMP/NAME.sock; sets GPA to its watched page.
start() {
	local name=$1 extra=${2:-}
	run "$LKVM" run --detach --name "$name" --console-log "$TMP/$name.log" \
		-p tests=introspect \
		--introspect "listen=$TMP/$name.sock,cookie=$TMP/cookie$extra"
	[ "$status" -eq 0 ] || { echo "run --detach: $output"; return 1; }
	PIDS+=" $(guest_pid "$name")"
	wait_for "$TMP/$name.log" '^# introspect write 1 ' 30
	GPA=$(grep -oE '^# introspect page 0x[0-9a-f]+' "$TMP/$name.log" |
		cut -d' ' -f4)
}

ki() { # NAME introspect-args...
	local name=$1
	shift
	"$LKVM" introspect --socket "$TMP/$name.sock" --cookie "$TMP/cookie" "$@"
}

# Rounds whose write did not land, as "K WANT GOT" lines.
refused() { # NAME
	complete_lines "$TMP/$1.log" |
		awk '/^# introspect write / && $5 != $7 { print $4, $5, $7 }'
}

last_round() { # NAME
	complete_lines "$TMP/$1.log" | grep -E '^# introspect agent ' | tail -1 |
		cut -d' ' -f4
}

# Waits until the guest has finished round N.
wait_round() { # NAME N [secs]
	wait_for "$TMP/$1.log" "^# introspect agent $2 " "${3:-20}"
}

@test "a write refused with RETRY leaves the old bytes; the guest runs on" {
	start g
	run ki g watch "write:$GPA" --action retry --count 1
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	[[ "$output" == *'"event":"write"'*'"gpa":"'"$GPA"'"'*'"action":"retry"'* ]] ||
		{ echo "$output"; return 1; }
	wait_round g $(($(last_round g) + 2))
	run refused g
	[ "${#lines[@]}" -eq 1 ] || { echo "$output"; return 1; }
	read -r k want got <<<"${lines[0]}"
	# The old bytes: what the round before wrote.
	[ "$((got))" -eq $((0x1000 + k - 1)) ] || { echo "$output"; return 1; }
	# Released when the tool ended: later writes land again.
	[ -z "$(refused g | awk -v k="$k" '$1 > k')" ]
}

@test "RETRY after the tool unprotects the page lets the write land" {
	start g
	# First event: refuse. Second: release the page, then RETRY.
	cat >"$TMP/decide" <<EOF
if [ -e "$TMP/once" ]; then echo retry unprotect; else touch "$TMP/once"; echo retry; fi
EOF
	run ki g watch "write:$GPA" --exec "sh $TMP/decide" --count 2
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	[ "$(grep -c '"action":"retry"' <<<"$output")" -eq 2 ] ||
		{ echo "$output"; return 1; }
	wait_round g $(($(last_round g) + 1))
	# Only the first was refused: the second, retried unprotected, landed.
	run refused g
	[ "${#lines[@]}" -eq 1 ] || { echo "$output"; cat "$TMP/g.log"; return 1; }
}

@test "CONTINUE lets a protected write land; the event says where" {
	start g
	run ki g protect "$GPA" --count 2
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	[ "$(grep -c '"action":"continue"' <<<"$output")" -eq 2 ]
	[[ "$output" == *'"vcpu":0,"rip":"0x'* ]]
	# The same store each round: the same RIP (the first event's state
	# comes from ioctls, later ones from the exit's synced registers).
	[ "$(grep -o '"rip":"0x[0-9a-f]*"' <<<"$output" | sort -u | wc -l)" -eq 1 ] ||
		{ echo "$output"; return 1; }
	wait_round g $(($(last_round g) + 1))
	[ -z "$(refused g)" ]
}

@test "an MSR write's value replaced by the tool is what the guest reads back" {
	start g
	run ki g msr watch 0x174 --exec 'echo continue value=0x4242' --count 1
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	[[ "$output" == *'"event":"msr"'*'"msr":"0x174"'*'"value":"0x4242"'* ]] ||
		{ echo "$output"; return 1; }
	wait_round g $(($(last_round g) + 1))
	grep -qE '^# introspect msr [0-9]+ wrote 0x[0-9a-f]+ read 0x4242$' \
		"$TMP/g.log"
	# No tool: the guest's own value again.
	k=$(last_round g)
	wait_round g $((k + 1))
	grep -qE "^# introspect msr $((k + 1)) wrote 0x$(printf '%x' $((0x11 + k))) read 0x$(printf '%x' $((0x11 + k)))\$" \
		"$TMP/g.log"
}

@test "the agent doorbell: the tool answers in the guest's registers" {
	start g
	run ki g watch agent --exec 'echo continue rbx=0x1234' --count 1
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	[[ "$output" == *'"event":"agent"'*'"value":'* ]] || { echo "$output"; return 1; }
	wait_round g $(($(last_round g) + 1))
	grep -qE '^# introspect agent [0-9]+ rbx 0x1234$' "$TMP/g.log"
}

@test "CRASH ends the guest with status 102" {
	start g
	run ki g watch "write:$GPA" --action crash --count 1
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	run "$LKVM" wait g --timeout 20
	[ "$status" -eq 102 ] || { echo "status $status: $output"; return 1; }
}

@test "a tool that leaves an event unanswered past the timeout is dropped" {
	start g ,timeout=300
	run ki g watch "write:$GPA" --exec 'sleep 2; echo retry' --count 2
	[ "$status" -eq 1 ] || { echo "$output"; return 1; }
	# The pending write was let through (CONTINUE), and later ones land.
	k=$(last_round g)
	wait_round g $((k + 2))
	[ -z "$(refused g)" ] || { refused g; return 1; }
	run ki g info
	[ "$status" -eq 0 ]
}

# A tool killed while it decides on a write event; the guest must go on.
killed_in_event() { # [--introspect extra settings]
	start g "${1:-}"
	# Not through ki(): $! must be the tool itself.
	"$LKVM" introspect --socket "$TMP/g.sock" --cookie "$TMP/cookie" \
		watch "write:$GPA" --exec "echo in >$TMP/in-event; sleep 30" \
		>"$TMP/w.out" 2>&1 &
	pid=$!
	PIDS+=" $pid"
	wait_for "$TMP/in-event" '^in$' 20
	k=$(last_round g)
	# The vCPU waits in its event: no round ends.
	! wait_round g $((k + 2)) 1 2>/dev/null
	kill -KILL "$pid"
	wait_round g $((k + 3)) 5
	[ -z "$(refused g)" ] || { refused g; grep -v '^# introspect' "$TMP/g.log"; return 1; }
}

@test "a tool killed inside an event: the vCPU goes on, the page is released" {
	killed_in_event
}

@test "a tool killed while the vCPU polls for its reply: the vCPU goes on" {
	# A polling window of 1 s: the vCPU itself is reading the socket
	# when the tool dies.
	killed_in_event ,poll=1000000
}

# tests/kvmi-raw.py's events: what it prints against lkvm.
raw_events() { # [--introspect extra settings]
	start g "${1:-}"
	run python3 "$BATS_TEST_DIRNAME/kvmi-raw.py" "$TMP/g.sock" \
		"$TMP/cookie" events "$GPA"
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	expect="check-event-pf 0
check-event-msr 0
check-event-agent 0
check-event-cr -2
check-event-xsetbv -2
check-event-descriptor -2
check-command-control-cr -2
access-read-only 0
access-no-read -22
access-no-exec -22
set-registers-outside-event -95
get-xcr0 0 x87 1
get-xsave 0 4096
get-xcr1 -22
map-memory 0 fds 1 writable 0
mapped-word-ok 1
writable-mapping refused
pause-event 1
get-registers-in-event 0
reply-wrong-seq closed"
	[ "$output" = "$expect" ] || { echo "$output"; return 1; }
	# The paused vCPU was let go when the tool was closed.
	k=$(last_round g)
	wait_round g $((k + 2))
}

@test "KVMI check event and command say what mainline KVM cannot do" {
	raw_events
}

@test "a vCPU polling for its reply still has commands answered, and a bad reply closes" {
	# Within a 1 s polling window the tool's command (registers, in the
	# PAUSE event) and its wrong-seq reply reach the vCPU first; both
	# are the server's to answer, as without polling.
	raw_events ,poll=1000000
}

@test "replies a polling vCPU reads itself act as the server's: CONTINUE, RETRY" {
	start g ,poll=1000000
	run ki g --socket-events protect "$GPA" --count 4
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	[ "$(grep -c '"action":"continue"' <<<"$output")" -eq 4 ] ||
		{ echo "$output"; return 1; }
	wait_round g $(($(last_round g) + 1))
	[ -z "$(refused g)" ] || { refused g; return 1; }
	run ki g --socket-events watch "write:$GPA" --action retry --count 1
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	wait_round g $(($(last_round g) + 2))
	run refused g
	[ "${#lines[@]}" -eq 1 ] || { echo "$output"; return 1; }
	# The vCPU polled for all five and read replies itself (`lkvm
	# stat`: polls minus the ones the server ended). Not all: each
	# tool's first reply often reaches the server first, still reading
	# the commands with which the tool protects the page, and a quick
	# reply can wake the server before the vCPU has the socket to itself.
	# The three writes after the first tool's first come 100 ms apart,
	# to a vCPU alone at the socket: it reads at least one reply itself.
	run "$LKVM" stat g --all
	polls=$(awk '$1 == "dev.kvmi-polled.requests" { print $2 }' <<<"$output")
	missed=$(awk '$1 == "dev.kvmi-polled.errors" { print $2 }' <<<"$output")
	[ "$polls" -ge 5 ] && [ "$((polls - missed))" -ge 1 ] ||
		{ echo "$output"; return 1; }
}

@test "poll=0: no polling, the server reads every reply" {
	start g ,poll=0
	run ki g --socket-events protect "$GPA" --count 2
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	run "$LKVM" stat g --all
	sent=$(awk '$1 == "dev.kvmi-events.requests" { print $2 }' <<<"$output")
	polls=$(awk '$1 == "dev.kvmi-polled.requests" { print $2 }' <<<"$output")
	[ "$sent" -ge 2 ] && [ "$polls" -eq 0 ] || { echo "$output"; return 1; }
	wait_round g $(($(last_round g) + 1))
	[ -z "$(refused g)" ]
}

@test "lkvm pause sends UNHOOK first: the tool lets go, its protection with it" {
	start g
	"$LKVM" introspect --socket "$TMP/g.sock" --cookie "$TMP/cookie" \
		watch "write:$GPA" >"$TMP/w.out" 2>&1 &
	pid=$!
	PIDS+=" $pid"
	wait_for "$TMP/w.out" '"event":"write"' 10
	run "$LKVM" pause g
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	wait "$pid"
	grep -q '^{"event":"unhook"}$' "$TMP/w.out" || { cat "$TMP/w.out"; return 1; }
	k=$(last_round g)
	run "$LKVM" resume g
	[ "$status" -eq 0 ]
	wait_round g $((k + 2))
	[ -z "$(refused g)" ]
}

@test "read --mapped: guest RAM mapped from lkvm shows what the guest wrote" {
	start g
	read -r _ _ mgpa value < <(grep -E '^# magic ' "$TMP/g.log")
	run ki g read --mapped "$mgpa" 8
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	mapped=$output
	run ki g read "$mgpa" 8
	[ "$status" -eq 0 ]
	[ "$mapped" = "$output" ] || { echo "mapped $mapped, socket $output"; return 1; }
	v=$(printf '%016x' "$value")
	[[ "$mapped" == *"${v:14:2} ${v:12:2} ${v:10:2} ${v:8:2}"* ]] ||
		{ echo "$mapped; magic $value"; return 1; }
	# Outside guest RAM: refused, as through the socket.
	run ki g read --mapped 0xffffffff000 8
	[ "$status" -eq 1 ]
}

@test "break: a hardware breakpoint on the guest's code sends BREAKPOINT events" {
	start g
	code=$(grep -oE '^# introspect page .* code 0x[0-9a-f]+' "$TMP/g.log" |
		awk '{ print $NF }')
	run ki g break "$code" --count 2
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	[ "${#lines[@]}" -eq 3 ] || { echo "$output"; return 1; }
	# Where it stopped: the code's address, identity-mapped.
	[[ "${lines[1]}" == '{"event":"break","vcpu":0,"rip":"'"$code"'","gpa":"'"$code"'","insn_len":0,"action":"continue"}' ]] ||
		{ echo "$output"; return 1; }
	# The guest never saw it, and goes on once the tool has gone.
	k=$(last_round g)
	wait_for "$TMP/g.log" "^# introspect mark $((k + 1))\$" 10
}

@test "step: SINGLESTEP events, one per instruction, the guest goes on after" {
	start g
	run ki g step --count 8
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	[ "$(grep -c '^{"event":"step","vcpu":0,"rip":"0x' <<<"$output")" -eq 8 ] ||
		{ echo "$output"; return 1; }
	# Each a different instruction: RIP moves on.
	[ "$(grep -o '"rip":"0x[0-9a-f]*"' <<<"$output" | sort -u | wc -l)" -ge 4 ]
	k=$(last_round g)
	wait_round g $((k + 2))
}

@test "inject: the guest takes the exception with its error code; TRAP says so" {
	start g
	run ki g inject 13 0x1234
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	[ "$output" = "vcpu 0 exception 13 error_code 0x1234" ] || { echo "$output"; return 1; }
	wait_for "$TMP/g.log" '^Bail out! exception .*\(vector 13\) error 0x1234 ' 10
	# Out of range: refused by the codec.
	run ki g inject 32
	[ "$status" -eq 1 ]
}

# `lkvm stat` counter KEY of guest NAME.
counter() { # NAME KEY
	"$LKVM" stat "$1" --all | awk -v k="$2" '$1 == k { print $2 }'
}

@test "the event channel: lkvm introspect answers through shared memory; --socket-events keeps the socket" {
	start g
	run ki g protect "$GPA" --count 2
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	[ "$(grep -c '"action":"continue"' <<<"$output")" -eq 2 ] ||
		{ echo "$output"; return 1; }
	chan=$(counter g dev.kvmi-channel.requests)
	[ "$chan" -ge 2 ] || { "$LKVM" stat g --all; return 1; }
	# RETRY through the channel refuses the write, as on the socket.
	run ki g watch "write:$GPA" --action retry --count 1
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	wait_round g $(($(last_round g) + 2))
	run refused g
	[ "${#lines[@]}" -eq 1 ] || { echo "$output"; return 1; }
	# The socket, on request: the channel's count stays.
	sent=$(counter g dev.kvmi-events.requests)
	chan=$(counter g dev.kvmi-channel.requests)
	run ki g --socket-events protect "$GPA" --count 2
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	[ "$(counter g dev.kvmi-channel.requests)" -eq "$chan" ] &&
		[ "$(counter g dev.kvmi-events.requests)" -ge $((sent + 2)) ] ||
		{ "$LKVM" stat g --all; return 1; }
	wait_round g $(($(last_round g) + 1))
	[ "$(refused g | wc -l)" -eq 1 ]
}

# tests/kvmi-raw.py's channel MODE against guest g: its output.
raw_channel() { # MODE
	run python3 "$BATS_TEST_DIRNAME/kvmi-raw.py" "$TMP/g.sock" \
		"$TMP/cookie" channel "$GPA" "$1"
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	head="check-command-event-channel 0
event-channel-bad-flag -22
event-channel 0 fds 2 slots 1
event-channel-again -16
control-pf 0
protect 0
slot-event 17 gpa-ok 1"
}

@test "the event channel from a raw tool: CONTINUE, then RETRY, through the doorbell when the vCPU sleeps" {
	start g
	raw_channel continue-retry
	[ "$output" = "$head
rang-doorbell
rang-doorbell
second-event-new 1
release 0" ] || { echo "$output"; return 1; }
	# Both replies were the server's (the vCPU had stopped looking).
	[ "$(counter g dev.kvmi-channel.errors)" -ge 2 ] ||
		{ "$LKVM" stat g --all; return 1; }
	wait_round g $(($(last_round g) + 2))
	# Only the RETRY's write was refused.
	run refused g
	[ "${#lines[@]}" -eq 1 ] || { echo "$output"; return 1; }
}

@test "garbage in the event channel drops the tool; the guest runs on, its write lands" {
	start g
	raw_channel garbage
	[ "$output" = "$head
rang-doorbell
after-garbage closed" ] || { echo "$output"; return 1; }
	grep -q 'dropping the tool: it wrote a bad event reply in the event channel' \
		"$TMP/g.log" || { cat "$TMP/g.log"; return 1; }
	wait_round g $(($(last_round g) + 2))
	[ -z "$(refused g)" ] || { refused g; return 1; }
}

@test "a tool that takes an event from the channel and never answers hits the timeout" {
	start g ,timeout=300
	raw_channel stall
	[ "$output" = "$head
after-stall closed" ] || { echo "$output"; return 1; }
	grep -q 'dropping the tool: it left an event unanswered past the timeout' \
		"$TMP/g.log" || { cat "$TMP/g.log"; return 1; }
	wait_round g $(($(last_round g) + 2))
	[ -z "$(refused g)" ] || { refused g; return 1; }
}

# How many descriptors process PID has open.
nfds() { # PID
	ls "/proc/$1/fd" | wc -l
}

@test "a tool that passes descriptors nobody asked for and closes its doorbell: dropped at the timeout, nothing kept" {
	start g ,timeout=300
	pid=$(guest_pid g)
	before=$(nfds "$pid")
	raw_channel hostile
	[ "$output" = "$head
version-with-fds 2 True 0
version-after-bell 0
after-dead-bell closed" ] || { echo "$output"; return 1; }
	grep -q 'dropping the tool: it left an event unanswered past the timeout' \
		"$TMP/g.log" || { cat "$TMP/g.log"; return 1; }
	wait_round g $(($(last_round g) + 2))
	# The connection, its channel and doorbell gone: as many as before.
	local deadline=$((SECONDS + 10))
	until [ "$(nfds "$pid")" -eq "$before" ]; do
		[ $SECONDS -lt $deadline ] ||
			{ ls -l "/proc/$pid/fd"; echo "before: $before"; return 1; }
		sleep 0.05
	done
	# The next tool is served.
	run ki g protect "$GPA" --count 1
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
}

@test "a tool that writes anything in its slot at any time, racing lkvm: dropped, the guest runs on, the next tool served" {
	start g ,timeout=300
	pid=$(guest_pid g)
	for seed in 1 2 3; do
		run python3 "$BATS_TEST_DIRNAME/kvmi-raw.py" "$TMP/g.sock" \
			"$TMP/cookie" channel "$GPA" chaos "$seed"
		[ "$status" -eq 0 ] || { echo "$output"; return 1; }
		[ "${lines[-1]}" = "after-chaos closed" ] ||
			{ echo "$output"; return 1; }
		kill -0 "$pid"
	done
	wait_round g $(($(last_round g) + 2))
	run ki g protect "$GPA" --count 1
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
}

@test "a reply written in the channel just before the tool goes counts: RETRY refuses the write" {
	# poll=0: the vCPU sleeps at once; the tool does not ring, it closes.
	start g ,timeout=5000,poll=0
	raw_channel retry-close
	[ "$output" = "$head
replied-and-closed" ] || { echo "$output"; return 1; }
	wait_round g $(($(last_round g) + 2))
	run refused g
	[ "${#lines[@]}" -eq 1 ] || { echo "$output"; return 1; }
	! grep -q 'dropping the tool' "$TMP/g.log" || { cat "$TMP/g.log"; return 1; }
}
