#!/usr/bin/env bats
# lkvm sandbox: how it assembles 'lkvm run' (host root over virtio-9p,
# read-only unless --rw; guest/init as PID 1; the command hex-encoded on
# the kernel command line) and how it turns the guest's debug-exit report
# back into the command's status. A Linux guest cannot reach user space
# on this host, so the guest side (guest/init) is unit-tested on the host
# (tests/unit/test-init.c) and the status path is driven here by the
# bundled test kernel, which also reports through the debug-exit port.

bats_require_minimum_version 1.5.0

load helpers

KERNEL="$BATS_TEST_DIRNAME/../x86-kernel/test-kernel.elf"
INIT="$BATS_TEST_DIRNAME/../build/guest/init"

setup() { setup_tmp; }
teardown() { teardown_tmp; }

@test "sandbox: --kernel and a command are required, with a one-line error" {
	run "$LKVM" sandbox -- true
	assert_one_line_error "--kernel is required"
	run "$LKVM" sandbox -k "$KERNEL"
	assert_one_line_error "no command"
	run "$LKVM" sandbox -k "$KERNEL" --init "$TMP/none" -- true
	assert_one_line_error "No such file or directory '$TMP/none'"
	run "$LKVM" sandbox -k "$KERNEL" -- ''
	assert_one_line_error "empty arguments"
}

@test "sandbox: the host's / is shared read-only; init and the command on the command line" {
	run "$LKVM" sandbox -k "$KERNEL" --dry-run -- sh -c 'echo "a b"; exit 3'
	echo "$output"
	[ "$status" -eq 0 ]
	grep -q "'--9p' '/,lkvm-root,ro'" <<<"$output"
	grep -q "rootfstype=9p rootflags=trans=virtio,version=9p2000.L" <<<"$output"
	grep -q " ro init=$(realpath "$INIT") -- lkvm-cmd " <<<"$output"
	# sh, -c and the script, each hex-encoded
	local script
	script=$(printf '%s' 'echo "a b"; exit 3' | od -An -tx1 | tr -d ' \n')
	grep -q "lkvm-cmd 7368 2d63 $script'\$" <<<"$output"
}

@test "sandbox: --rw shares / writable; -p adds to the kernel command line" {
	run "$LKVM" sandbox -k "$KERNEL" --rw -p "loglevel=3" --dry-run -- true
	echo "$output"
	[ "$status" -eq 0 ]
	grep -q "'--9p' '/,lkvm-root'" <<<"$output"
	grep -q "'loglevel=3 console=ttyS0 .* rw init=" <<<"$output"
}

@test "sandbox: the guest's debug-exit report becomes the exit status" {
	# The test kernel reports 3 failed checks as 3 = status + 1.
	run --separate-stderr timeout 60 "$LKVM" sandbox -k "$KERNEL" \
		-p "tests=no-such-check-1,no-such-check-2,no-such-check-3" -- true </dev/null
	echo "$output"
	[ "$status" -eq 2 ]
}

@test "sandbox: a guest that stops without a report is an error" {
	run --separate-stderr timeout 60 "$LKVM" sandbox -k "$KERNEL" -p tests=cmdline -- true </dev/null
	echo "$stderr"
	[ "$status" -eq 1 ]
	grep -q "stopped without reporting the command's status" <<<"$stderr"
}

@test "sandbox: guest/init is a static binary that only runs as PID 1" {
	! readelf -l "$INIT" | grep -q INTERP
	run "$INIT" lkvm-cmd 74727565
	[ "$status" -eq 1 ]
	grep -q "not PID 1" <<<"$output"
}
