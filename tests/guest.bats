#!/usr/bin/env bats
# Guests booted end to end: the bundled test kernel, flat binaries,
# firmware images and SeaBIOS.

load helpers

setup() { setup_tmp; }
teardown() {
	[ -n "${BGPID:-}" ] && kill -KILL "$BGPID" 2>/dev/null
	stop_guests
	teardown_tmp
}

no_failures() {
	! grep -q '^not ok' <<<"$output" || { echo "$output"; return 1; }
	grep -q '^ok ' <<<"$output" || { echo "no checks ran: $output"; return 1; }
}

@test "test kernel: every check passes with -c 1" {
	run timeout 120 "$LKVM" run -m 128 -c 1 \
		-p "tests=all expect_mem=128 expect_cpus=1 hosttime=$(date +%s)" </dev/null
	echo "$output"
	[ "$status" -eq 0 ]
	no_failures
	grep -q '^ok .* - smp' <<<"$output"
	grep -q '^ok .* - pit' <<<"$output"
	grep -q '^ok .* - rtc' <<<"$output"
	grep -q '^ok .* - pic: [0-9]* PIT ticks at vector 0x30 through 8259 IRQ0' <<<"$output"
	grep -q '^ok .* - pit2: gate rise restarts mode 2' <<<"$output"
	grep -q '^ok .* - ioapic: version 0x[0-9a-f]*, 24 pins' <<<"$output"
}

@test "test kernel: every check passes with -c 2 and 256 MiB" {
	run timeout 120 "$LKVM" run -m 256 -c 2 \
		-p "tests=all expect_mem=256 expect_cpus=2 hosttime=$(date +%s)" </dev/null
	echo "$output"
	[ "$status" -eq 0 ]
	no_failures
}

@test "test kernel: every check passes with the kernel's irqchip (--irqchip kernel)" {
	run timeout 120 "$LKVM" run --irqchip kernel -m 128 -c 2 \
		-p "tests=all expect_mem=128 expect_cpus=2 hosttime=$(date +%s)" </dev/null
	echo "$output"
	[ "$status" -eq 0 ]
	no_failures
	grep -q '^ok .* - pit' <<<"$output"
}

@test "test kernel: the default run (no -k, no -p) passes" {
	run timeout 120 "$LKVM" run </dev/null
	[ "$status" -eq 0 ]
	no_failures
}

@test "test kernel: a failing check ends the run with (failures << 1) | 1" {
	run timeout 120 "$LKVM" run -c 2 -p "tests=smp expect_cpus=3" </dev/null
	echo "$output"
	[ "$status" -eq 3 ]
	grep -q '^not ok .* - smp' <<<"$output"
}

@test "test kernel: the command line arrives intact" {
	token="tok$RANDOM$RANDOM"
	run timeout 120 "$LKVM" run -p "tests=cmdline marker=$token" </dev/null
	[ "$status" -eq 0 ]
	grep -q "^# cmdline: .*marker=$token" <<<"$output"
	grep -q '^ok .* - cmdline' <<<"$output"
}

@test "test kernel: serial input from a pipe reaches the guest through interrupts" {
	line="hello-$RANDOM"
	run timeout 120 "$LKVM" run -p tests=serial-input <<<"$line"
	echo "$output"
	[ "$status" -eq 0 ]
	grep -q "^# input: $line" <<<"$output"
}

@test "serial input larger than every buffer arrives whole (no byte dropped)" {
	# 20000 bytes: far beyond the FIFO and lkvm's 4 KiB device buffer,
	# so lkvm must hold input back until the guest drains it.
	{ head -c 20000 /dev/zero | tr '\0' x; echo; } >"$TMP/big"
	run timeout 120 "$LKVM" run -p tests=serial-input <"$TMP/big"
	echo "$output" | tail -3
	[ "$status" -eq 0 ]
	grep -qE '^ok .* - serial-input: 127 characters, 20001 bytes' <<<"$output"
	# the same through a pipe
	run bash -c "cat '$TMP/big' | timeout 120 '$LKVM' run -p tests=serial-input"
	[ "$status" -eq 0 ]
	grep -qE '^ok .* - serial-input: 127 characters, 20001 bytes' <<<"$output"
}

@test "test kernel: output to a file" {
	timeout 120 "$LKVM" run -p tests=serial </dev/null >"$TMP/out"
	grep -q '^ok .* - serial' "$TMP/out"
}

@test "--dump-dtb writes the device tree the guest gets" {
	command -v dtc >/dev/null || skip "dtc not installed"
	run timeout 120 "$LKVM" run -c 2 -m 64 --dump-dtb "$TMP/dtb" -p "tests=dtb marker=m$RANDOM" </dev/null
	[ "$status" -eq 0 ]
	dtc -I dtb -O dts "$TMP/dtb" >"$TMP/dts" 2>/dev/null
	grep -q 'cpu@0' "$TMP/dts"
	grep -q 'cpu@1' "$TMP/dts"
	grep -q 'bootargs = "tests=dtb marker=m' "$TMP/dts"
	grep -q 'ns16550a' "$TMP/dts"
	grep -q '^ok .* - dtb' <<<"$output"
}

@test "flat binary: runs in real mode, prints, exits through port 0xf4" {
	flat_exit "$TMP/flat" "flat-ok" 21
	run timeout 60 "$LKVM" run -k "$TMP/flat" </dev/null
	[ "$status" -eq $(((0x21 << 1) | 1)) ]
	[[ "$output" == *flat-ok* ]]
}

@test "flat binary: a reset through the i8042 ends the run with status 0" {
	flat_reset "$TMP/flat" "bye"
	run timeout 60 "$LKVM" run -k "$TMP/flat" </dev/null
	[ "$status" -eq 0 ]
	[[ "$output" == *bye* ]]
}

@test "a guest that triple-faults: registers dumped, status 100" {
	flat_crash "$TMP/crash"
	run timeout 60 "$LKVM" run -k "$TMP/crash" </dev/null
	echo "$output"
	[ "$status" -eq 100 ]
	[[ "$output" == *"vCPU 0"* ]]
	[[ "$output" == *"rip="* ]]
}

@test "firmware: starts at the reset vector; --debug-console shows ports 0xe9 and 0x402" {
	firmware_exit "$TMP/fw" $'fw-ok\n' 05
	run timeout 60 "$LKVM" run --firmware "$TMP/fw" </dev/null
	[ "$status" -eq 11 ]
	[[ "$output" == *fw-ok* ]]
	[[ "$output" != *-log* ]]
	run timeout 60 "$LKVM" run --firmware "$TMP/fw" --debug-console </dev/null
	[ "$status" -eq 11 ]
	grep -qx "e9-log" <<<"$output"
	grep -qx "bios-log" <<<"$output"
}

@test "SeaBIOS starts and logs to the debug console" {
	bios=/usr/share/seabios/bios.bin
	[ -f "$bios" ] || skip "seabios not installed"
	"$LKVM" run --firmware "$bios" --debug-console </dev/null >"$TMP/out" 2>&1 &
	BGPID=$!
	wait_for "$TMP/out" "SeaBIOS \(version" 60
	kill -TERM "$BGPID"
	wait "$BGPID" || status=$?
	BGPID=
	[ "$status" -eq $((128 + 15)) ]
}

@test "SIGTERM stops a running guest in order with status 143" {
	mkfifo "$TMP/in"
	"$LKVM" run -p tests=serial-input <"$TMP/in" >"$TMP/out" 2>&1 &
	BGPID=$!
	exec 8>"$TMP/in"
	wait_for "$TMP/out" "^1\.\." 60
	kill -TERM "$BGPID"
	wait "$BGPID" || status=$?
	BGPID=
	exec 8>&-
	[ "$status" -eq 143 ]
	grep -q "stopping the guest on signal" "$TMP/out"
}

@test "a name in use is refused while its guest runs, free again after" {
	mkfifo "$TMP/in"
	"$LKVM" run --name busy -p tests=serial-input <"$TMP/in" >"$TMP/out" 2>&1 &
	BGPID=$!
	exec 8>"$TMP/in"
	wait_for "$TMP/out" "^1\.\." 60
	run "$LKVM" run --name busy
	assert_one_line_error "a guest named 'busy' is already running \(pid $BGPID\)"
	echo done >&8
	exec 8>&-
	wait "$BGPID"
	BGPID=
	flat_exit "$TMP/flat" "" 00
	run timeout 60 "$LKVM" run --name busy -k "$TMP/flat" </dev/null
	[ "$status" -eq 1 ]	# (0 << 1) | 1: the flat guest ran
}

# Cpus_allowed_list of PID's thread named NAME (the process's without).
cpus_allowed() { # pid [name]
	local t
	for t in /proc/"$1"/task/*; do
		if [ -z "${2:-}" ] || [ "$(cat "$t/comm")" = "$2" ]; then
			awk '$1 == "Cpus_allowed_list:" { print $2 }' "$t/status"
			return
		fi
	done
	return 1
}

@test "the main loop, which sets up on another CPU than vCPU 0, then runs on any CPU lkvm may" {
	start_heartbeat aff
	pid=$(guest_pid aff)
	all=$(cpus_allowed "$pid")
	loop=$(cpus_allowed "$pid" main-loop)
	[ -n "$all" ] && [ "$loop" = "$all" ] ||
		{ echo "lkvm may run on $all, its main loop on $loop"; return 1; }
}

@test "under taskset, every thread keeps to the CPUs lkvm is given" {
	cpus=$(taskset -pc $$ | sed 's/.*: //')
	first=${cpus%%[,-]*}
	run timeout 60 taskset -c "$first" "$LKVM" run -p tests=all </dev/null
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	run taskset -c "$first" "$LKVM" run --detach --name one \
		--console-log "$TMP/one.log" -p tests=heartbeat
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	pid=$(guest_pid one)
	PIDS+=" $pid"
	wait_for "$TMP/one.log" '^# heartbeat 1$' 30
	for t in "" main-loop; do
		[ "$(cpus_allowed "$pid" $t)" = "$first" ] ||
			{ echo "${t:-lkvm}: $(cpus_allowed "$pid" $t)"; return 1; }
	done
}

@test "on a terminal, Ctrl-A x quits with status 0" {
	command -v script >/dev/null || skip "script(1) not installed"
	mkfifo "$TMP/in"
	script -qfec "$LKVM run -p tests=serial-input" /dev/null <"$TMP/in" >"$TMP/out" 2>&1 &
	BGPID=$!
	exec 8>"$TMP/in"
	wait_for "$TMP/out" "^1\.\." 60
	printf '\001x' >&8
	wait "$BGPID"
	BGPID=
	exec 8>&-
}
