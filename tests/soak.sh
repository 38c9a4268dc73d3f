#!/bin/bash
# The soak test: `make soak` (SOAK_SECONDS, default 300), and a 20-second
# run in `make check` (tests/soak.bats).
#
# A detached guest runs the test kernel's virtio-soak check: round after
# round, a sector written to its disk, read back and compared, another
# written, zeroed (WRITE_ZEROES, unmapping every other round) and read
# back as zeroes, a UDP datagram "lkvm-soak N" echoed (network, below),
# and a console line "# soak N net E/S" (E echoes for S datagrams sent).
# Meanwhile this script loops: pause, stat, debug --regs, introspect
# (KVMI) while paused, resume, debug --mem, introspect info, then waits
# for the guest to show progress again.
#
# Network: the guest has a virtio-net in user mode (-n mode=user, the
# lkvm-slirp helper), takes a DHCP lease at the start, and each round
# sends its datagram through slirp to a UDP echo server on the host's
# loopback (tests/net-client.py, which logs what it gets), resending a
# bounded number of times until the echo comes back. SOAK_NET=none runs
# without the network.
#
# It fails when
#   - lkvm's resident memory (VmRSS) grows by more than SOAK_RSS_SLACK_KIB
#     (default 256), or its open descriptors by more than the two a
#     client may hold for a moment after it has gone (a control client
#     and a KVMI tool), measured from /proc after a warm-up of two host
#     cycles; at the end, with no client, they must be back to the start;
#     the same for the lkvm-slirp helper (its RSS within
#     SOAK_SLIRP_RSS_SLACK_KIB, default 256; its descriptors no more than
#     at the warm-up);
#   - a console line "# soak N" is missing or out of order, or the guest
#     reports a failure (a round whose echo never came is one);
#   - the disk does not hold the last round of each sector (a lost write);
#   - the echo server did not get every round's datagram, or the guest's
#     count of echoes is not its count of rounds;
#   - lkvm dies, a host command fails, or lkvm reports a system call
#     its seccomp filter refused.
# SOAK_FORMAT=qcow2 uses a qcow2 image (and `qemu-img check` at the end)
# instead of a raw one. It prints the figures on the last line.

set -u
cd "$(dirname "$0")/.." || exit 1
source tests/lines.bash	# complete_lines
LKVM=${LKVM:-$PWD/lkvm}
SECS=${SOAK_SECONDS:-300}
SLACK=${SOAK_RSS_SLACK_KIB:-256}
FORMAT=${SOAK_FORMAT:-raw}	# or qcow2
NET=${SOAK_NET:-user}		# or none
SLIRP_SLACK=${SOAK_SLIRP_RSS_SLACK_KIB:-256}
TMP=$(mktemp -d /tmp/lkvm-soak.XXXXXX)
export LKVM_HOME=$TMP/home
LOG=$TMP/soak.log
NAME=soak
pid= echopid= helper=
# A round's console line: "# soak N", with the network "# soak N net E/S".
ROUND_RE='^# soak [0-9]+( net [0-9]+/[0-9]+)?$'

fail() {
	echo "soak: FAIL: $*"
	grep -av '^# soak [0-9]' "$LOG" 2>/dev/null | tail -5 | sed 's/^/soak:   | /'
	exit 1
}

cleanup() {
	"$LKVM" stop "$NAME" --wait >/dev/null 2>&1
	[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
	[ -n "$echopid" ] && kill "$echopid" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

last_round() {
	complete_lines "$LOG" | grep -aoE "$ROUND_RE" | tail -1 | cut -d' ' -f3
}

# Waits until the guest has printed a round past $1 (at most 20 s): it
# runs, and is not stuck on a lost request.
wait_round() { # after
	local deadline=$((SECONDS + 20)) r
	while :; do
		r=$(last_round)
		[ -n "$r" ] && [ "$r" -gt "$1" ] && return 0
		kill -0 "$pid" 2>/dev/null || fail "lkvm has ended"
		[ $SECONDS -ge $deadline ] && fail "no round after ${1} within 20 s"
		sleep 0.05
	done
}

proc_rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }
proc_fds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }

sample() { # sets rss (KiB) and fds, and srss and sfds of the helper
	rss=$(proc_rss "$pid")
	fds=$(proc_fds "$pid")
	[ -n "$rss" ] || fail "lkvm has ended"
	[ -n "$helper" ] || return 0
	srss=$(proc_rss "$helper")
	sfds=$(proc_fds "$helper")
	[ -n "$srss" ] || fail "lkvm-slirp has ended"
}

ki() {
	"$LKVM" introspect --socket "$TMP/kvmi.sock" --cookie "$TMP/cookie" "$@"
}

host() { # what, command...: runs it, fails the soak when it fails
	local what=$1 out
	shift
	out=$("$@" 2>&1) || fail "$what: $out"
}

if [ "$FORMAT" = qcow2 ]; then
	qemu-img create -q -f qcow2 "$TMP/disk.img" 1M || fail "qemu-img create"
else
	truncate -s 1M "$TMP/disk.img"
fi
head -c 32 /dev/urandom >"$TMP/cookie"
chmod 600 "$TMP/cookie"
NET_ARGS=() PARAMS=tests=virtio-soak
if [ "$NET" = user ]; then
	[ -x "$(dirname "$LKVM")/lkvm-slirp" ] ||
		fail "no lkvm-slirp next to $LKVM (libslirp-dev missing?); SOAK_NET=none runs without the network"
	# The echo server: ready once it has printed its port.
	"$PWD/tests/net-client.py" echo-server 127.0.0.1 "$TMP/echo.log" \
		>"$TMP/echo.port" &
	echopid=$!
	deadline=$((SECONDS + 10))
	until grep -qE '^[0-9]+$' "$TMP/echo.port"; do
		kill -0 "$echopid" 2>/dev/null || fail "the echo server has ended"
		[ $SECONDS -ge $deadline ] && fail "the echo server gave no port in 10 s"
		sleep 0.05
	done
	NET_ARGS=(-n mode=user)
	PARAMS="$PARAMS net_peer=10.0.2.2:$(cat "$TMP/echo.port")"
fi
out=$("$LKVM" run --detach --name "$NAME" --console-log "$LOG" \
	-d "$TMP/disk.img" \
	--introspect "listen=$TMP/kvmi.sock,cookie=$TMP/cookie" \
	"${NET_ARGS[@]}" -p "$PARAMS" 2>&1) || fail "run: $out"
pid=$("$LKVM" list --json | python3 -c '
import json, sys
print(next(g["pid"] for g in json.load(sys.stdin) if g["name"] == sys.argv[1]))' "$NAME")
[ -n "$pid" ] || fail "no pid"
if [ "$NET" = user ]; then
	# lkvm's child: the helper it started.
	for c in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
		[ "$(cat "/proc/$c/comm" 2>/dev/null)" = lkvm-slirp ] && helper=$c
	done
	[ -n "$helper" ] || fail "no lkvm-slirp child of lkvm $pid"
fi
wait_round 0
read -r _ _ magic _ < <(grep -aE '^# magic ' "$LOG")

cycles=0
base_rss= base_fds= max_rss=0 max_fds=0
sbase_rss= sbase_fds= smax_rss=0 srss= sfds=
end=$((SECONDS + SECS))
while [ $SECONDS -lt $end ] || [ $cycles -lt 3 ]; do
	r=$(last_round)
	host pause "$LKVM" pause "$NAME"
	out=$("$LKVM" stat "$NAME" --json 2>&1) || fail "stat: $out"
	grep -q '"state": "paused"' <<<"$out" || fail "stat while paused: $out"
	host "debug --regs" "$LKVM" debug "$NAME" --regs
	host "introspect regs" ki regs
	host "introspect read" ki read "$magic" 8
	host resume "$LKVM" resume "$NAME"
	host "debug --mem" "$LKVM" debug "$NAME" --mem "$magic" 16
	host "introspect info" ki info
	wait_round "${r:-0}"
	cycles=$((cycles + 1))
	sample
	if [ $cycles -eq 2 ]; then
		base_rss=$rss base_fds=$fds
		sbase_rss=$srss sbase_fds=$sfds
	elif [ $cycles -gt 2 ]; then
		# The fewest seen: a sample may catch a client's.
		[ "$fds" -lt "$base_fds" ] && base_fds=$fds
		[ "$rss" -gt "$max_rss" ] && max_rss=$rss
		[ "$fds" -gt "$max_fds" ] && max_fds=$fds
		[ $((rss - base_rss)) -le "$SLACK" ] ||
			fail "lkvm's RSS grew from $base_rss to $rss KiB after $cycles cycles"
		[ "$fds" -le $((base_fds + 2)) ] ||
			fail "lkvm's open descriptors grew from $base_fds to $fds after $cycles cycles"
		if [ -n "$helper" ]; then
			[ "$srss" -gt "$smax_rss" ] && smax_rss=$srss
			[ $((srss - sbase_rss)) -le "$SLIRP_SLACK" ] ||
				fail "lkvm-slirp's RSS grew from $sbase_rss to $srss KiB after $cycles cycles"
			[ "$sfds" -le "$sbase_fds" ] ||
				fail "lkvm-slirp's open descriptors grew from $sbase_fds to $sfds after $cycles cycles"
		fi
	fi
done
# No client now: the descriptors must come back to the start's.
deadline=$((SECONDS + 5))
while sample && [ "$fds" -gt "$base_fds" ] && [ $SECONDS -lt $deadline ]; do
	sleep 0.05
done
[ "$fds" -le "$base_fds" ] ||
	fail "lkvm holds $fds descriptors at the end, $base_fds at the start"
end_rss=$rss end_fds=$fds send_rss=$srss send_fds=$sfds

# The end: every round in order on the console, each sector's last round
# on the disk (the round after the last printed one may have written).
"$LKVM" stop "$NAME" --wait >/dev/null 2>&1 || fail "stop failed"
pid=
grep -aqE '^not ok' "$LOG" && fail "the guest reported a failure"
grep -aq 'seccomp' "$LOG" && fail "lkvm's seccomp filter refused a system call"
# The stop may have cut the guest's last line short: whole lines only.
LINES=$TMP/lines
complete_lines "$LOG" >"$LINES"
rounds=$(grep -acE "$ROUND_RE" "$LINES")
R=$(last_round)
if [ "$FORMAT" = qcow2 ]; then
	out=$(qemu-img check -q "$TMP/disk.img" 2>&1) || fail "qemu-img check: $out"
	qemu-img convert -O raw "$TMP/disk.img" "$TMP/disk.raw" ||
		fail "qemu-img convert"
	mv "$TMP/disk.raw" "$TMP/disk.img"
fi
grep -aoE "$ROUND_RE" "$LINES" | cut -d' ' -f3 |
	awk '$1 != NR { print "round " NR " missing: line says " $1; exit 1 }' ||
	fail "console rounds out of order"
net=
if [ "$NET" = user ]; then
	# Each round's line counts one echo more; the echo server got every
	# round's datagram (resends and the round after the last line may
	# add more).
	grep -aoE '^# soak [0-9]+ net [0-9]+/[0-9]+$' "$LINES" | tr '/' ' ' |
		awk '$3 != $5 { print "round " $3 ": " $5 " echoes"; exit 1 }' ||
		fail "the guest's echoes do not match its rounds"
	[ "$(grep -acE '^# soak [0-9]+ net ' "$LINES")" -eq "$rounds" ] ||
		fail "a round's line has no network count"
	sent=$(grep -aoE '^# soak [0-9]+ net [0-9]+/[0-9]+$' "$LINES" | tail -1 | cut -d/ -f2)
	kill "$echopid" 2>/dev/null
	wait "$echopid" 2>/dev/null
	echopid=
	got=$(awk -v last="$R" '
		/^lkvm-soak [0-9]+$/ && $2 >= 1 && $2 <= last { seen[$2] = 1 }
		END {
			for (r = 1; r <= last; r++)
				if (!(r in seen)) { print "missing " r; exit 1 }
			print NR
		}' "$TMP/echo.log") || fail "the echo server's log: $got"
	net=", $sent UDP datagrams sent for $R echoes ($got seen by the echo server) through lkvm-slirp (RSS ${sbase_rss} -> ${send_rss} KiB (max ${smax_rss}), open fds ${sbase_fds} -> ${send_fds})"
fi
python3 - "$TMP/disk.img" "$R" <<'EOF' || fail "disk contents"
import struct, sys
img, last = open(sys.argv[1], "rb").read(), int(sys.argv[2])
N, K = 64, 0x9e3779b97f4a7c15
# Sectors N..2N-1 are zeroed each round, but the one the round after the
# last may have written before it was stopped.
for s in range(N, 2 * N):
    words = struct.unpack_from("<64Q", img, s * 512)
    if any(words) and not (s == N + (last + 1) % N and words[0] == last + 1):
        sys.exit(f"sector {s} is not zero: round {words[0]}")
for s in range(N):
    words = struct.unpack_from("<64Q", img, s * 512)
    want = max([r for r in range(s, last + 1, N) if r >= 1], default=0)
    ok = {want} | ({last + 1} if (last + 1) % N == s else set())
    r = words[0]
    if r not in ok:
        sys.exit(f"sector {s} holds round {r}, expected {sorted(ok)}")
    if r and any(words[i] != (r * K + i) & (2**64 - 1) for i in range(1, 64)):
        sys.exit(f"sector {s}: round {r}'s pattern is damaged")
EOF
echo "soak: ok: ${SECS} s on a $FORMAT image, $rounds guest rounds (each: a sector written, read and compared, one written and zeroed${net:+, a UDP echo}, a console line), $cycles host cycles (pause, stat, debug, introspect, resume); lkvm RSS ${base_rss} -> ${end_rss} KiB (max ${max_rss}), open fds ${base_fds} -> ${end_fds} (max ${max_fds})$net"
