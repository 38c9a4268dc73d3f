#!/usr/bin/env bats
# Each libFuzzer harness (fuzz/fuzz-*.c, built by `make check` where clang
# is installed) runs a few seconds on its seeds without a crash; `make
# fuzz` runs them longer.

@test "fuzz harnesses: a few seconds each, no crash" {
	cd "$BATS_TEST_DIRNAME/.."
	shopt -s nullglob
	harnesses=()
	for h in build/fuzz/fuzz-*; do
		[ -x "$h" ] && [ -f "fuzz/$(basename "$h").c" ] && harnesses+=("$h")
	done
	if [ ${#harnesses[@]} -eq 0 ]; then
		# make check installs clang: a missing harness is then a bug.
		! command -v clang >/dev/null || { echo "clang is here but no harness was built"; false; }
		skip "no fuzz harness built (clang missing)"
	fi
	run fuzz/run "${FUZZ_TIME:-5}" "${harnesses[@]}"
	echo "$output"
	[ "$status" -eq 0 ]
}
