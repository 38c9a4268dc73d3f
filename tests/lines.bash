# Sourced by tests/helpers.bash and tests/soak.sh.

# FILE up to its last newline, without a line the guest is still writing
# or one cut short when it was stopped (the serial port takes one byte an
# exit, so the last line is often half there: "# heartbeat 1" on its way
# to "# heartbeat 12").
complete_lines() { # file
	# One read of the file: looking at its end, then reading it, would
	# race with the guest's writes (a line begun in between, whole to
	# the first look, partial to the read).
	local s
	s=$(cat "$1"; echo .)
	s=${s%.}
	printf '%s' "${s%"${s##*$'\n'}"}"
}
