#!/usr/bin/env bats
# Bash completion (completions/lkvm.bash): commands, options, option
# arguments, subcommands and the names of running guests, all taken from
# the lkvm being completed.

load helpers

setup() {
	setup_tmp
	# shellcheck source=../completions/lkvm.bash
	source "$BATS_TEST_DIRNAME/../completions/lkvm.bash"
}

teardown() {
	stop_guests
	teardown_tmp
}

# complete WORD...: what TAB offers after the words (the last one is the
# word being completed, "" for a new one), one a line.
complete_words() {
	COMP_WORDS=("$LKVM" "$@")
	COMP_CWORD=$(($# ))
	_lkvm
	printf '%s\n' "${COMPREPLY[@]}"
}

@test "completion: the commands, and the prefix narrows them" {
	run complete_words ""
	[[ "$output" == *$'run\n'* && "$output" == *introspect* && "$output" == *--version* ]]
	[ "$(complete_words "pa")" = pause ]
	[ "$(complete_words "he")" = help ]
	[ "$(complete_words help "ver")" = version ]
}

@test "completion: every option of a command is offered, none of another's" {
	local opt
	run complete_words run --
	for opt in $("$LKVM" help --options run | awk '/^--/ { print $1 }'); do
		grep -qx -- "$opt" <<<"$output" || { echo "run: $opt not offered"; false; }
	done
	! grep -qx -- --json <<<"$output"
	[ "$(complete_words stop --w)" = --wait ]
	[ "$(complete_words run --virtio-tr)" = --virtio-transport ]
}

@test "completion: option arguments are files, directories or the choices" {
	mkdir "$TMP/dir"
	touch "$TMP/kern.elf"
	[ "$(complete_words run -k "$TMP/ke")" = "$TMP/kern.elf" ]
	[ "$(complete_words run --disk "$TMP/ke")" = "$TMP/kern.elf" ]
	[ "$(complete_words run --9p "$TMP/")" = "$TMP/dir" ]
	run complete_words run --console ""
	[ "$output" = $'serial\nvirtio' ]
	# A number: nothing to offer.
	[ -z "$(complete_words run --cpus "")" ]
}

@test "completion: introspect's subcommands, once" {
	run complete_words introspect --socket s --cookie c "re"
	[ "$output" = $'regs\nread' ]
	[ -z "$(complete_words introspect info "")" ]
}

@test "completion: the names of running guests for the commands that take one" {
	PIDS=""
	start_heartbeat compl-a
	run complete_words pause "compl"
	[ "$output" = compl-a ]
	run complete_words debug ""
	[ "$output" = compl-a ]
	# list takes no guest name.
	[ -z "$(complete_words list "")" ]
}
