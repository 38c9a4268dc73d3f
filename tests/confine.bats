#!/usr/bin/env bats
# Confinement (docs/security.md): the seccomp filter every `lkvm run` has
# by default, its report when a thread makes a forbidden call, and --user.
# Every other guest suite runs under the filter too, since it is on by
# default.

load helpers

setup() {
	setup_tmp
}

teardown() {
	stop_guests
	teardown_tmp
}

# The value of FIELD in /proc/PID[/task/TID]/status.
proc_field() { # status-file field
	awk -v f="$2:" '$1 == f { $1 = ""; sub(/^ /, ""); print }' "$1"
}

# The status file of the thread of PID named NAME.
thread_status() { # pid name
	local t
	for t in /proc/"$1"/task/*; do
		[ "$(cat "$t/comm")" = "$2" ] && { echo "$t/status"; return; }
	done
	return 1
}

# The report is one line on stderr; in $output it may follow a part of a
# console line (both go to the same pipe), hence no ^.
violation_report() { # thread-name class [call]
	local call='execve \(59\)'
	[ -n "${3:-}" ] && call=$3
	grep -qE "lkvm: seccomp: thread '$1' \($2 filter\) made system call $call, which lkvm does not allow" <<<"$output" ||
		{ echo "no report for $1 ($2) in: $output"; return 1; }
}

@test "a forbidden call on a vCPU thread stops lkvm with a one-line report" {
	run "$LKVM" run --debug-seccomp-violation vcpu -p tests=heartbeat
	[ "$status" -eq 159 ] || { echo "status $status: $output"; return 1; }
	# vCPU 0 runs on lkvm's first thread, which keeps the name lkvm.
	violation_report lkvm vcpu
	# It stopped before the guest got anywhere: no heartbeat.
	[[ "$output" != *"# heartbeat"* ]]
}

@test "a forbidden call on the main loop stops lkvm with a one-line report" {
	run "$LKVM" run --debug-seccomp-violation main -p tests=heartbeat
	[ "$status" -eq 159 ] || { echo "status $status: $output"; return 1; }
	violation_report main-loop main
}

@test "a forbidden call on a device I/O thread stops lkvm with a one-line report" {
	run "$LKVM" run --rng --debug-seccomp-violation io -p tests=virtio-rng
	[ "$status" -eq 159 ] || { echo "status $status: $output"; return 1; }
	violation_report virtio-rng io
}

@test "a vCPU may not create vCPUs, nor map executable memory" {
	# KVM_RUN and friends pass (the other tests boot guests), this
	# request on the same call does not.
	run "$LKVM" run --debug-seccomp-violation vcpu:ioctl -p tests=serial
	[ "$status" -eq 159 ] || { echo "status $status: $output"; return 1; }
	violation_report lkvm vcpu 'ioctl \(16\)'
	run "$LKVM" run --debug-seccomp-violation vcpu:mmap-exec -p tests=serial
	[ "$status" -eq 159 ] || { echo "status $status: $output"; return 1; }
	violation_report lkvm vcpu 'mmap \(9\)'
}

@test "a call through the i386 ABI kills lkvm outright" {
	run "$LKVM" run --debug-seccomp-violation vcpu:int80 -p tests=serial
	[ "$status" -eq 159 ] || { echo "status $status: $output"; return 1; }
	[[ "$output" != *"lkvm: seccomp:"* ]]
}

@test "--no-seccomp: no filter, so the same call is not stopped" {
	run "$LKVM" run --no-seccomp --debug-seccomp-violation vcpu -p tests=serial
	[ "$status" -eq 0 ] || { echo "status $status: $output"; return 1; }
	[[ "$output" == *"ok 1 - serial"* ]]
	[[ "$output" != *"seccomp"* ]]
}

@test "--debug-seccomp-violation names a thread class" {
	run "$LKVM" run --debug-seccomp-violation disk -p tests=serial
	assert_one_line_error "--debug-seccomp-violation disk: use vcpu, main or io"
	run "$LKVM" run --debug-seccomp-violation vcpu:fork -p tests=serial
	assert_one_line_error "--debug-seccomp-violation vcpu:fork: use"
}

@test "the filter is on by default: each thread has the process filter and its own" {
	start_heartbeat f -c 2
	pid=$(guest_pid f)
	[ "$(proc_field "/proc/$pid/status" Seccomp)" = 2 ]
	# vCPU 0 (lkvm's first thread) and the main loop: the process-wide
	# filter plus their class's.
	[ "$(proc_field "/proc/$pid/status" Seccomp_filters)" = 2 ]
	[ "$(proc_field "/proc/$pid/status" NoNewPrivs)" = 1 ]
	for t in main-loop vcpu1; do
		st=$(thread_status "$pid" $t)
		[ "$(proc_field "$st" Seccomp_filters)" = 2 ]
		[ "$(proc_field "$st" NoNewPrivs)" = 1 ]
	done
	# And the guest runs on under it, and answers control requests.
	"$LKVM" pause f
	"$LKVM" resume f
	"$LKVM" debug f --regs | grep -q rip
	n=$(last_beat f)
	wait_for "$TMP/f.log" "^# heartbeat $((n + 2))\$" 20
}

@test "--no-seccomp: the running lkvm has no filter" {
	start_heartbeat n --no-seccomp
	pid=$(guest_pid n)
	[ "$(proc_field "/proc/$pid/status" Seccomp)" = 0 ]
}

# ---- --user ----------------------------------------------------------------

# A registry the user owns, inside a $TMP others may traverse.
user_home() { # user
	chmod 711 "$TMP"
	mkdir -p "$LKVM_HOME"
	chown "$1" "$LKVM_HOME"
}

as_user() { # uid command...
	local uid=$1
	shift
	setpriv --reuid="$uid" --regid="$uid" --clear-groups \
		env LKVM_HOME="$LKVM_HOME" "$@"
}

@test "--user: lkvm runs as the user; it and root control the guest, others are refused" {
	user_home nobody
	start_heartbeat u --user nobody
	pid=$(guest_pid u)
	read -r _ ruid euid suid fsuid < <(grep '^Uid:' "/proc/$pid/status")
	[ "$ruid $euid $suid $fsuid" = "65534 65534 65534 65534" ] ||
		{ echo "uids $ruid $euid $suid $fsuid"; return 1; }
	read -r _ rgid egid _ < <(grep '^Gid:' "/proc/$pid/status")
	[ "$rgid $egid" = "65534 65534" ]
	[ -z "$(proc_field "/proc/$pid/status" Groups)" ]
	# No capability left.
	[ "$(proc_field "/proc/$pid/status" CapEff)" = 0000000000000000 ]

	# The user and root may control it.
	run as_user 65534 "$LKVM" pause u
	[ "$status" -eq 0 ] || { echo "as nobody: $output"; return 1; }
	run "$LKVM" stat u
	[ "$status" -eq 0 ] || { echo "as root: $output"; return 1; }
	[[ "$output" == *paused* ]] || { echo "stat: $output"; return 1; }
	run as_user 65534 "$LKVM" resume u
	[ "$status" -eq 0 ] || { echo "as nobody: $output"; return 1; }

	# Another user cannot reach the socket (mode 0600, the user's) ...
	run as_user 1 "$LKVM" pause u
	[ "$status" -ne 0 ]
	[[ "$output" == *"permission denied"* ]] || { echo "$output"; return 1; }
	# ... and when the files would let it (the user's own clients made
	# the directory 0700 again), lkvm's peer check refuses it.
	chmod 755 "$LKVM_HOME"
	chmod 666 "$LKVM_HOME/u.sock"
	run as_user 1 python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
print(s.recv(4096)[16:].decode(errors="replace"))' "$LKVM_HOME/u.sock"
	[[ "$output" == *"permission denied: the guest belongs to uid 65534"* ]] ||
		{ echo "$output"; return 1; }
	# The guest ran on throughout.
	n=$(last_beat u)
	wait_for "$TMP/u.log" "^# heartbeat $((n + 1))\$" 20
	# It ends as the user, removing its own registry entry.
	"$LKVM" stop u --wait
	[ ! -e "$LKVM_HOME/u.sock" ] && [ ! -e "$LKVM_HOME/u.lock" ]
}

@test "--user UID:GID works without a passwd entry" {
	user_home 4242:4242
	start_heartbeat g --user 4242:4242
	pid=$(guest_pid g)
	read -r _ ruid euid _ < <(grep '^Uid:' "/proc/$pid/status")
	[ "$ruid $euid" = "4242 4242" ]
	run as_user 4242 "$LKVM" stat g
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
}

@test "--user: bad users and unusable registries are one-line errors" {
	run "$LKVM" run --user no-such-user-here -p tests=serial
	assert_one_line_error "--user no-such-user-here: no such user in /etc/passwd"
	run "$LKVM" run --user 12:x -p tests=serial
	assert_one_line_error "--user 12:x: use a user name or UID:GID"
	run "$LKVM" run --user root -p tests=serial
	assert_one_line_error "--user root: is root"
	# The default registry is root's own (0700): the user could not
	# remove its entry, nor its clients reach the socket.
	run "$LKVM" run --user nobody -p tests=serial
	assert_one_line_error "--user nobody: cannot write the registry directory .*; set LKVM_HOME"
}

@test "under the filter: a qcow2 disk passes the virtio-blk check and stays consistent" {
	# No other guest suite boots from qcow2; its metadata writes use
	# calls (pwritev2 with RWF_DSYNC) raw images never make.
	qemu-img create -q -f qcow2 "$TMP/d.qcow2" 4M
	run "$LKVM" run -d "$TMP/d.qcow2" -p tests=virtio-blk
	[ "$status" -eq 0 ] || { echo "status $status: $output"; return 1; }
	[[ "$output" == *"ok 1 - virtio-blk"* ]]
	[[ "$output" != *seccomp* ]]
	qemu-img check -q "$TMP/d.qcow2"
}

@test "--user, detached: a violation's report still reaches the console log" {
	# The user could not open the root-owned log: lkvm keeps its own
	# descriptor for stderr.
	user_home nobody
	run "$LKVM" run --detach --name v --console-log "$TMP/v.log" \
		--user nobody --debug-seccomp-violation main -p tests=heartbeat
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	wait_for "$TMP/v.log" "lkvm: seccomp: thread 'main-loop' \(main filter\) made system call execve" 20
}
