#!/usr/bin/env bats
# The man page (docs/lkvm.1) and lkvm agree: every command, option and
# subcommand that `lkvm help --options` lists has an entry in the man
# page and every entry names something lkvm knows. The listing comes from
# the option tables themselves, so a new option or command fails here
# until the man page describes it; adding its .SS/.TP entry is enough.

load helpers

MAN="$BATS_TEST_DIRNAME/../docs/lkvm.1"

# "COMMAND" and "COMMAND NAME ARG" lines, from the binary.
from_binary() {
	local c
	"$LKVM" help --options | while read -r c; do
		echo "$c"
		"$LKVM" help --options "$c" | sed "s/^/$c /"
	done
}

@test "help --options lists the commands, and run's options with their arguments" {
	run "$LKVM" help --options
	[ "$status" -eq 0 ]
	[[ "$output" == *run*list*help*version* ]]
	run "$LKVM" help --options run
	[ "$status" -eq 0 ]
	[[ "$output" == *$'--kernel FILE\n-k FILE'* ]]
	[[ "$output" == *$'\n--rng\n'* ]]
	run "$LKVM" help --options frobnicate
	[ "$status" -eq 1 ]
	[ "$output" = "lkvm help: unknown command 'frobnicate'" ]
}

@test "every command, option and subcommand lkvm lists is in the man page" {
	local entries line missing=0
	entries=$("$BATS_TEST_DIRNAME/man-entries" "$MAN")
	while read -r cmd name arg; do
		if [ -z "$name" ]; then
			grep -qx "$cmd" <<<"$entries" || { echo "man: no section for '$cmd'"; missing=1; }
			continue
		fi
		line=$(awk -v c="$cmd" -v n="$name" '$1 == c && $2 == n' <<<"$entries" | head -1)
		if [ -z "$line" ]; then
			echo "man: '$cmd' lacks $name"; missing=1
		elif [[ -n "$arg" && "$name" == --* && "$line" != *" $name $arg"* ]]; then
			echo "man: '$cmd $name' should read '$name $arg': $line"; missing=1
		fi
	done < <(from_binary)
	[ "$missing" -eq 0 ]
}

@test "every command, option and subcommand in the man page exists in lkvm" {
	local known extra=0
	known=$(from_binary | awk 'NF == 1 { print; next } { print $1, $2 }')
	while read -r cmd name _; do
		grep -qxF "$cmd${name:+ $name}" <<<"$known" ||
			{ echo "man describes '$cmd $name', which lkvm does not know"; extra=1; }
	done < <("$BATS_TEST_DIRNAME/man-entries" "$MAN")
	[ "$extra" -eq 0 ]
}

@test "the man page renders without warnings" {
	run groff -man -Tutf8 -ww -z "$MAN"
	echo "$output"
	[ "$status" -eq 0 ]
	[ -z "$output" ]
}
