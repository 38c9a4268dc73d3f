#!/usr/bin/env bats
# The test kernel's virtio-9p check (x86-kernel/p9.c) under QEMU's
# -virtfs/-fsdev local backend with security_model=none, the reference
# for tests/p9.bats: virtio-pci on the pc machine, virtio-mmio (versions
# 2 and 1) on microvm. The escapes must fail there too, and the share is
# left empty.

bats_require_minimum_version 1.5.0

load helpers
load qemu

setup_file() {
	make -C "$KERNEL_DIR" >&2
}

setup() {
	need_qemu
	setup_tmp
	J="$TMP/jail"
	mkdir -p "$J/share"
	echo "outside the share" >"$J/p9-outside"
}

teardown() { teardown_tmp; }

qemu() { # machine append [args...]
	local machine="$1" append="$2"
	shift 2
	qemu_kernel "${QEMU_TIMEOUT:-120}" "$machine" 1 "$append" "$@" </dev/null
}

share_clean() {
	[ -z "$(ls -A "$J/share")" ] || { ls -la "$J/share"; return 1; }
	[ "$(cat "$J/p9-outside")" = "outside the share" ]
	[ "$(ls -A "$J")" = "$(printf 'p9-outside\nshare')" ]
}

@test "qemu pc, virtio-pci: the virtio-9p check passes; escapes fail" {
	run --separate-stderr qemu pc "tests=virtio-9p" \
		-virtfs local,path="$J/share",mount_tag=qshare,security_model=none
	echo "$output"
	echo "$stderr" >&2
	grep -q "^ok 1 - virtio-9p: virtio-pci: tag 'qshare'.*5 escapes refused" <<<"$output"
	share_clean
}

@test "qemu microvm, virtio-mmio version 2 and 1: the virtio-9p check passes" {
	local v legacy
	for v in 2 1; do
		legacy=$([ "$v" = 1 ] && echo on || echo off)
		run --separate-stderr qemu microvm,acpi=off "tests=virtio-9p" \
			-global virtio-mmio.force-legacy=$legacy \
			-fsdev local,id=fs0,path="$J/share",security_model=none \
			-device virtio-9p-device,fsdev=fs0,mount_tag=qshare
		echo "$output"
		echo "$stderr" >&2
		grep -q "^ok 1 - virtio-9p: virtio-mmio v$v: tag 'qshare'.*5 escapes refused" <<<"$output"
		share_clean
	done
}
