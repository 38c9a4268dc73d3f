#!/usr/bin/env bats
# The bundled test kernel (x86-kernel/) under QEMU, the reference VMM: every
# check must pass there, and a failing check must be reported as TAP and as
# the debug-exit status. lkvm's own tests boot the same kernel.
#
# Each boot goes through SeaBIOS and QEMU's pvh.bin option ROM; on the
# emulating KVM of the build machines that takes 4 to 6 s before the
# kernel's first byte, and tests=all about 2 s more (x86-kernel/README.md).

bats_require_minimum_version 1.5.0

load helpers
load qemu

setup_file() {
	make -C "$KERNEL_DIR" >&2
}

setup() {
	need_qemu
}

# qemu_run APPEND [QEMU-ARGS...]: qemu_pc with the caller's stdin (the
# serial-input check feeds it).
qemu_run() {
	local append="$1"
	shift
	qemu_kernel "${QEMU_TIMEOUT:-120}" pc 2,sockets=2 "$append" "$@"
}

@test "qemu: tests=all passes and the kernel resets the machine" {
	run --separate-stderr qemu_run \
		"tests=all expect_mem=128 expect_cpus=2 hosttime=$(date +%s)"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "# lkvm test kernel" ]
	[[ "$output" == *"# cmdline: tests=all expect_mem=128 expect_cpus=2 hosttime="* ]]
	grep -qx '1\.\.10' <<<"$output"
	! grep -q '^not ok' <<<"$output"
	[ "$(grep -c '^ok ' <<<"$output")" -eq 10 ]
	for check in serial rtc pit mem cmdline smp pic pit2 ioapic; do
		grep -q "^ok [0-9]* - $check: " <<<"$output"
	done
	grep -q '^ok [0-9]* - dtb # SKIP' <<<"$output"
}

@test "qemu: no tests= on the command line runs all checks" {
	run --separate-stderr qemu_run "expect_cpus=2"
	echo "$output"
	[ "$status" -eq 0 ]
	grep -qx '1\.\.10' <<<"$output"
	! grep -q '^not ok' <<<"$output"
}

@test "qemu: a failing check is reported and exits with (1 << 1) | 1" {
	run --separate-stderr qemu_run "tests=smp expect_cpus=3"
	echo "$output"
	[ "$status" -eq 3 ]
	grep -qx '1\.\.1' <<<"$output"
	grep -q '^not ok 1 - smp: 2 CPUs reported, expect_cpus=3' <<<"$output"
}

@test "qemu: wrong expectations and unknown checks each count as a failure" {
	run --separate-stderr qemu_run \
		"tests=mem,rtc,no-such-check,cmdline expect_mem=64 hosttime=1000000000"
	echo "$output"
	[ "$status" -eq $(((3 << 1) | 1)) ]
	grep -qx '1\.\.4' <<<"$output"
	grep -q '^not ok 1 - mem: 128 MiB of RAM (PVH memory map), expect_mem=64' <<<"$output"
	grep -q '^not ok 2 - rtc: RTC .* s from hosttime' <<<"$output"
	grep -q '^not ok 3 - no-such-check: no such check' <<<"$output"
	grep -q '^ok 4 - cmdline: ' <<<"$output"
}

@test "qemu: serial-input reads a line from stdin through IRQ4" {
	local fifo="$BATS_TEST_TMPDIR/stdin" line ready= log=
	mkfifo "$fifo"
	# QEMU's stdout is read here line by line; its stdin is the FIFO, opened
	# for writing only once QEMU runs. The line is sent when the kernel says
	# it is waiting, so nothing depends on timing.
	exec {qout}< <(qemu_run "tests=serial-input" <"$fifo" 2>/dev/null
		echo "# qemu exit status $?")
	exec {qin}>"$fifo"
	while IFS= read -r -t 120 line <&"$qout"; do
		log+="$line"$'\n'
		if [[ "$line" == "# serial-input: waiting for a line"* ]]; then
			ready=1
			break
		fi
	done
	[ -n "$ready" ] || { echo "$log"; false; }
	printf 'hello from the host\n' >&"$qin"
	while IFS= read -r -t 120 line <&"$qout"; do
		log+="$line"$'\n'
	done
	exec {qin}>&- {qout}<&-
	echo "$log"
	grep -qx '# input: hello from the host' <<<"$log"
	grep -q '^ok 1 - serial-input: 19 characters' <<<"$log"
	grep -qx '# qemu exit status 0' <<<"$log"
}
