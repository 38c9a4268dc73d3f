#!/usr/bin/env bats
# A short run of the soak test (tests/soak.sh; `make soak` runs it for
# SOAK_SECONDS, default 300): a guest doing block, network (UDP echoes
# through user-mode networking, lkvm-slirp) and console I/O while the
# host pauses, resumes, inspects and introspects it, and the memory and
# descriptors of lkvm and of its lkvm-slirp helper stay flat.

soak() { # format seconds
	run env SOAK_FORMAT="$1" SOAK_SECONDS="$2" "$BATS_TEST_DIRNAME/soak.sh"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "${lines[-1]}" == "soak: ok: "* ]]
}

@test "soak: 15 s of guest disk, UDP and console I/O on a raw disk under control and introspection, nothing lost or leaked" {
	soak raw "${SOAK_SECONDS:-15}"
}

@test "soak: 8 s on a qcow2 disk, which qemu-img check accepts after" {
	soak qcow2 "${SOAK_SECONDS:-8}"
}
