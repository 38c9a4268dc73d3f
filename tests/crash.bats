#!/usr/bin/env bats
# Crash consistency: lkvm killed with SIGKILL while the guest writes
# leaves an image that qemu-img accepts, holding every block the guest
# saw written and flushed. The guest (the test kernel's virtio-blk-writes
# check) writes numbered 4 KiB blocks, each followed by a FLUSH, and
# prints "# flushed N" once both completed; the test kills lkvm when a
# chosen block is reported, as the guest goes on writing, then reads the
# image back. It waits for the guest's serial output, never for time.

load helpers

setup() {
	setup_tmp
}

teardown() {
	[ -n "${PID:-}" ] && kill -KILL "$PID" 2>/dev/null
	teardown_tmp
}

# Checks blocks 0..LAST of a raw image: each sector as blkwrite.c wrote it.
verify_blocks() { # raw-image last
	python3 - "$1" "$2" <<-'PY'
	import struct, sys
	path, last = sys.argv[1], int(sys.argv[2])
	data = open(path, "rb").read()
	bad = 0
	for n in range(last + 1):
	    for s in range(8):
	        off = n * 4096 + s * 512
	        want = struct.pack("<8sQQ", b"blkwrite", n, s) + b"".join(
	            struct.pack("<Q", (n * 0x0101010101010101 ^ (s << 56) ^ i)
	                        & (2**64 - 1)) for i in range(3, 64))
	        if data[off:off + 512] != want:
	            print(f"block {n} sector {s} is not what the guest flushed")
	            bad += 1
	            break
	later = sum(1 for n in range(last + 1, len(data) // 4096)
	            if data[n * 4096:n * 4096 + 8] == b"blkwrite")
	if not bad:
	    print(f"# blocks 0..{last} intact; {later} later block(s) also reached the image")
	sys.exit(1 if bad else 0)
	PY
}

# qemu-img check finds no error in a qcow2 image. Leaked clusters (status
# 3) are allowed: clusters lkvm had reserved (refcount 1, durable) but not
# used when it was killed, harmless as after a QEMU crash; qemu-img sees
# them once the file has grown past them.
qcow2_consistent() { # image
	run qemu-img check -f qcow2 "$1"
	echo "$output" | grep -v "^Leaked cluster"
	[ "$status" -eq 0 ] || [ "$status" -eq 3 ] ||
		{ echo "qemu-img check: status $status"; return 1; }
	! grep -qE '^ERROR|^[0-9]+ errors were found|corrupt' <<<"$output"
}

# crash_run IMAGE FORMAT KILL_AT: boots the writer on IMAGE, kills lkvm
# with SIGKILL once block KILL_AT is reported flushed, then checks the
# image with qemu-img and its content.
crash_run() {
	local img=$1 fmt=$2 at=$3 last raw rc
	"$LKVM" run -d "$img" -p tests=virtio-blk-writes \
		>"$TMP/out" 2>&1 </dev/null 3>&- &
	PID=$!
	wait_for "$TMP/out" "^# flushed $at\$" 60
	kill -KILL "$PID"
	wait "$PID" && rc=0 || rc=$?
	PID=
	[ "$rc" -eq 137 ] || { echo "lkvm ended with $rc before the kill"; cat "$TMP/out"; return 1; }
	! grep -q '^ok 1' "$TMP/out" || { echo "the guest finished before the kill"; return 1; }
	last=$(complete_lines "$TMP/out" | grep -E '^# flushed [0-9]+$' | tail -1 | cut -d' ' -f3)
	echo "# killed after block $last was flushed"
	if [ "$fmt" = qcow2 ]; then
		qcow2_consistent "$img"
		raw="$TMP/as-raw"
		qemu-img convert -f qcow2 -O raw "$img" "$raw"
	else
		run qemu-img info -f raw --output=json "$img"
		[ "$status" -eq 0 ] && [[ "$output" == *'"virtual-size": 4194304'* ]] ||
			{ echo "qemu-img info: $output"; return 1; }
		raw=$img
	fi
	verify_blocks "$raw" "$last"
}

@test "crash: raw image, SIGKILL mid-writes keeps every flushed block" {
	truncate -s 4M "$TMP/d.raw"
	crash_run "$TMP/d.raw" raw 30
}

@test "crash: qcow2 image (64 KiB clusters), SIGKILL mid-writes: qemu-img check finds no error, flushed blocks there" {
	qemu-img create -q -f qcow2 "$TMP/d.qcow2" 4M
	crash_run "$TMP/d.qcow2" qcow2 40
}

@test "crash: qcow2 image (4 KiB clusters, a new cluster each write), SIGKILL mid-allocation" {
	qemu-img create -q -f qcow2 -o cluster_size=4096 "$TMP/d.qcow2" 4M
	crash_run "$TMP/d.qcow2" qcow2 25
}

# After the rewrite the leaks of the kill show; `qemu-img check -r leaks`
# must leave a clean image.
@test "crash: the same image used again after the kill: the guest rewrites it whole; at most leaks, which qemu-img repairs" {
	qemu-img create -q -f qcow2 -o cluster_size=4096 "$TMP/d.qcow2" 1M
	crash_run "$TMP/d.qcow2" qcow2 10
	run "$LKVM" run -d "$TMP/d.qcow2" -p tests=virtio-blk-writes
	echo "$output" | grep -v "^# flushed"
	[ "$status" -eq 0 ]
	[[ "$output" == *"ok 1 - virtio-blk-writes: "*"256 blocks"* ]]
	qcow2_consistent "$TMP/d.qcow2"
	run qemu-img check -r leaks -f qcow2 "$TMP/d.qcow2"
	[ "$status" -eq 0 ]
	run qemu-img check -f qcow2 "$TMP/d.qcow2"
	[ "$status" -eq 0 ]
	qemu-img convert -f qcow2 -O raw "$TMP/d.qcow2" "$TMP/r"
	verify_blocks "$TMP/r" 255
}
