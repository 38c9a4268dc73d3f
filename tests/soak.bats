#!/usr/bin/env bats
# A short run of the soak test (tests/soak.sh; `make soak` runs it for
# SOAK_SECONDS, default 300): a guest doing block and console I/O while
# the host pauses, resumes, inspects and introspects it, and lkvm's
# memory and descriptors stay flat.

@test "soak: 20 s of guest I/O under control and introspection, nothing lost or leaked" {
	run env SOAK_SECONDS="${SOAK_SECONDS:-20}" "$BATS_TEST_DIRNAME/soak.sh"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "${lines[-1]}" == "soak: ok: "* ]]
}
