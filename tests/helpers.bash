# Shared by the bats suites.
LKVM="${LKVM:-$BATS_TEST_DIRNAME/../lkvm}"
# The bundled test kernel, for the suites that boot it with -k or under QEMU.
KERNEL_DIR="$BATS_TEST_DIRNAME/../x86-kernel"
KERNEL="$KERNEL_DIR/test-kernel.elf"
# complete_lines
source "$BATS_TEST_DIRNAME/lines.bash"

setup_tmp() {
	TMP=$(mktemp -d "${BATS_TMPDIR:-/tmp}/lkvm-test.XXXXXX")
	export LKVM_HOME="$TMP/home"
}

teardown_tmp() {
	[ -n "${TMP:-}" ] && rm -rf "$TMP"
	return 0
}

# hex "ba f8 03 ..." > file: writes the bytes.
hex() {
	local b out=""
	for b in "$@"; do
		out+="\\x$b"
	done
	printf "$out"
}

# Real-mode code that prints TEXT on COM1, or on PORT (one OUT per byte).
print_code() { # text [port-low port-high]
	local text=$1 i c
	hex ba "${2:-f8}" "${3:-03}"
	for ((i = 0; i < ${#text}; i++)); do
		c=$(printf '%02x' "'${text:i:1}")
		hex b0 "$c" ee
	done
}

# A flat binary: prints TEXT then writes VALUE (hex byte) to the
# debug-exit port 0xf4.
flat_exit() { # file text value
	{ print_code "$2"; hex ba f4 00 b0 "$3" ee f4; } >"$1"
}

# A flat binary: prints TEXT then resets through the i8042.
flat_reset() { # file text
	{ print_code "$2"; hex b0 fe e6 64 f4; } >"$1"
}

# A flat binary that triple-faults: an empty IDT, then an exception.
flat_crash() { # file
	# lidt [0x20] with a zeroed descriptor at 0x1000:0x20, then ud2.
	hex 0f 01 1e 20 00 0f 0b >"$1"
	head -c 64 /dev/zero >>"$1"
}

# A 64 KiB firmware image: at the reset vector a far jump to F000:E000,
# where it prints TEXT to COM1, "e9-log" to port 0xe9, "bios-log" to port
# 0x402, and exits with VALUE.
firmware_exit() { # file text value
	local f=$1
	head -c 65536 /dev/zero | tr '\0' '\377' >"$f"
	{ print_code "$2"; print_code $'e9-log\n' e9 00
	  print_code $'bios-log\n' 02 04; hex ba f4 00 b0 "$3" ee f4; } |
		dd of="$f" bs=1 seek=$((0xe000)) conv=notrunc status=none
	hex ea 00 e0 00 f0 |
		dd of="$f" bs=1 seek=$((0xfff0)) conv=notrunc status=none
}

# Waits until FILE contains PATTERN (grep -E), or fails after SECS.
# This waits for an event the guest produces, not for time to pass.
wait_for() { # file pattern secs
	local deadline=$((SECONDS + ${3:-20}))
	while ! grep -qE "$2" "$1" 2>/dev/null; do
		if [ $SECONDS -ge $deadline ]; then
			echo "timed out waiting for '$2' in $1:" >&2
			cat "$1" >&2
			return 1
		fi
		sleep 0.05
	done
}

# Asserts that the command failed with status 1 and printed exactly one
# line on stderr, starting with "lkvm", that matches PATTERN.
assert_one_line_error() { # pattern
	[ "$status" -eq 1 ] || { echo "status $status, expected 1: $output"; return 1; }
	[ "${#lines[@]}" -eq 1 ] || { echo "expected one line, got: $output"; return 1; }
	[[ "${lines[0]}" == lkvm* ]] || { echo "not an lkvm message: $output"; return 1; }
	grep -qE -- "$1" <<<"$output" || { echo "'$output' does not match '$1'"; return 1; }
}

# ---- detached test-kernel guests (control and introspection suites) ----

# The pid of a running guest's lkvm, from `lkvm list --json`.
guest_pid() { # name
	"$LKVM" list --json | python3 -c '
import json, sys
for g in json.load(sys.stdin):
    if g["name"] == sys.argv[1]:
        print(g.get("pid", ""))' "$1"
}

# start_heartbeat NAME [lkvm run options]: a detached guest running the
# test kernel's heartbeat, its console in $TMP/NAME.log, its pid added to
# PIDS; returns once the first heartbeat is there.
start_heartbeat() {
	local name=$1
	shift
	run "$LKVM" run --detach --name "$name" --console-log "$TMP/$name.log" \
		-p tests=heartbeat "$@"
	[ "$status" -eq 0 ] || { echo "run --detach: $output"; return 1; }
	[ "$output" = "$name" ] || { echo "printed '$output'"; return 1; }
	PIDS+=" $(guest_pid "$name")"
	wait_for "$TMP/$name.log" '^# heartbeat 1$' 30
}

# The last heartbeat number a guest printed.
last_beat() { # name
	complete_lines "$TMP/$1.log" | grep -E '^# heartbeat [0-9]+$' | tail -1 |
		cut -d' ' -f3
}

# Stops every guest, then kills what a failed test left half-way.
stop_guests() {
	"$LKVM" stop --all --wait >/dev/null 2>&1
	for p in ${PIDS:-}; do
		kill -KILL "$p" 2>/dev/null
	done
	return 0
}
