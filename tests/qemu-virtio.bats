#!/usr/bin/env bats
# The test kernel's virtio drivers and checks under QEMU 7.2, the reference:
# virtio-pci (transitional devices through their modern interface, and
# legacy-only devices) on the pc machine, virtio-mmio (versions 2 and 1) on
# the microvm machine. The disk checksum the kernel prints (SHA-256 of the
# whole disk as read, computed in ring 3) must be the host's sha256sum of
# the image, and the image must be unchanged afterwards (the check writes a
# pattern over every sector, reads it back and restores the original).
#
# pc boots go through SeaBIOS (4 to 6 s here before the kernel's first
# byte); microvm boots through qboot in well under a second.

bats_require_minimum_version 1.5.0

load helpers
load qemu

setup_file() {
	make -C "$KERNEL_DIR" >&2
}

setup() {
	need_qemu
	setup_tmp
}

teardown() {
	[ -n "${QPID:-}" ] && kill -KILL "$QPID" 2>/dev/null
	[ -n "${CATPID:-}" ] && kill -KILL "$CATPID" 2>/dev/null
	teardown_tmp
}

# disk FILE BYTES: random contents, so every sector differs.
disk() {
	head -c "$2" /dev/urandom >"$1"
}

sha() {
	sha256sum "$1" | cut -d' ' -f1
}

no_failures() {
	! grep -q '^not ok' <<<"$output" || { echo "$output"; return 1; }
}

@test "qemu pc, virtio-pci: tests=all adds console, rng and blk; the disk's SHA-256 is the host's" {
	disk "$TMP/d.img" $((9 * 1048576 + 7 * 512))
	local want
	want=$(sha "$TMP/d.img")
	run --separate-stderr qemu_pc \
		"tests=all expect_mem=128 expect_cpus=2 hosttime=$(date +%s)" \
		-drive file="$TMP/d.img",format=raw,if=none,id=d0 \
		-device virtio-blk-pci,drive=d0,serial=qemu-disk-0 \
		-device virtio-rng-pci \
		-device virtio-serial-pci -chardev file,id=c0,path="$TMP/con.out" \
		-device virtconsole,chardev=c0
	echo "$output"
	[ "$status" -eq 0 ]
	grep -qx '1\.\.13' <<<"$output"
	no_failures
	[ "$(grep -c '^ok ' <<<"$output")" -eq 13 ]
	grep -q '^# virtio: blk0 on pci .* 1af4:1001, transitional, modern interface' <<<"$output"
	grep -q '^ok [0-9]* - virtio-console: console0 (virtio-pci): 2 lines written' <<<"$output"
	grep -q '^ok [0-9]* - virtio-rng: 1 device(s) (virtio-pci), 320 random bytes' <<<"$output"
	grep -q '^ok [0-9]* - virtio-blk: blk0 (virtio-pci): 18439 sectors read, written, read back and restored, up to 8 requests in flight, flushed' <<<"$output"
	grep -qx "# blk0 sha256: $want" <<<"$output"
	grep -qx '# blk0 id: "qemu-disk-0"' <<<"$output"
	grep -qx '# virtio-console: hello from console0 (virtio-pci)' "$TMP/con.out"
	grep -qx '# virtio-console: a line in two descriptors' "$TMP/con.out"
	[ "$(sha "$TMP/d.img")" = "$want" ]
}

@test "qemu pc, legacy virtio-pci (disable-modern=on): a read-only disk refuses writes with IOERR" {
	disk "$TMP/rw.img" $((3 * 1048576 + 512))
	disk "$TMP/ro.img" $((1048576 + 3 * 512))
	local rw ro
	rw=$(sha "$TMP/rw.img")
	ro=$(sha "$TMP/ro.img")
	run --separate-stderr qemu_pc "tests=virtio-blk,virtio-rng,virtio-console" \
		-drive file="$TMP/rw.img",format=raw,if=none,id=d0 \
		-device virtio-blk-pci,drive=d0,disable-modern=on \
		-drive file="$TMP/ro.img",format=raw,if=none,id=d1,readonly=on \
		-device virtio-blk-pci,drive=d1,disable-modern=on \
		-device virtio-rng-pci,disable-modern=on \
		-device virtio-serial-pci,disable-modern=on \
		-chardev file,id=c0,path="$TMP/con.out" -device virtconsole,chardev=c0
	echo "$output"
	[ "$status" -eq 0 ]
	no_failures
	grep -q '^# virtio: blk0 on pci .* 1af4:1001, legacy interface, I/O BAR0' <<<"$output"
	grep -q '^# virtio: blk1 on pci .* legacy interface' <<<"$output"
	grep -qx "# blk0 sha256: $rw" <<<"$output"
	grep -qx "# blk1 sha256: $ro" <<<"$output"
	grep -q '^# blk1: capacity 2051 sectors (1050112 bytes), read-only' <<<"$output"
	grep -q '^# blk1 (virtio-pci legacy): read-only, 2051 sectors read, .* writes refused with IOERR' <<<"$output"
	grep -q '^ok [0-9]* - virtio-rng: 1 device(s) (virtio-pci legacy)' <<<"$output"
	grep -qx '# virtio-console: hello from console0 (virtio-pci legacy)' "$TMP/con.out"
	[ "$(sha "$TMP/rw.img")" = "$rw" ]
	[ "$(sha "$TMP/ro.img")" = "$ro" ]
}

@test "qemu microvm, virtio-mmio version 2 and version 1: blk, rng and console" {
	disk "$TMP/d.img" $((2 * 1048576 + 512))
	local want v legacy
	want=$(sha "$TMP/d.img")
	for v in 2 1; do
		legacy=$([ "$v" = 1 ] && echo on || echo off)
		run --separate-stderr qemu_microvm \
			"tests=virtio-blk,virtio-rng,virtio-console" \
			-global virtio-mmio.force-legacy=$legacy \
			-drive file="$TMP/d.img",format=raw,if=none,id=d0 \
			-device virtio-blk-device,drive=d0,serial=mmio-disk \
			-device virtio-rng-device \
			-device virtio-serial-device \
			-chardev file,id=c0,path="$TMP/con$v.out" \
			-device virtconsole,chardev=c0
		echo "$output"
		[ "$status" -eq 0 ]
		no_failures
		[ "$(grep -c '^ok ' <<<"$output")" -eq 3 ]
		grep -q "^# virtio: blk0 on mmio 0x[0-9a-f]*, version $v, .* from the command line" <<<"$output"
		grep -q "^ok 1 - virtio-blk: blk0 (virtio-mmio v$v)" <<<"$output"
		grep -q "^ok 2 - virtio-rng: 1 device(s) (virtio-mmio v$v)" <<<"$output"
		grep -qx "# blk0 sha256: $want" <<<"$output"
		grep -qx '# blk0 id: "mmio-disk"' <<<"$output"
		grep -qx "# virtio-console: hello from console0 (virtio-mmio v$v)" "$TMP/con$v.out"
	done
	[ "$(sha "$TMP/d.img")" = "$want" ]
}

@test "qemu: virtio-console-input reads a line through the console port" {
	local line ready= log=
	mkfifo "$TMP/c.in" "$TMP/c.out"
	cat "$TMP/c.out" >"$TMP/console.log" 2>/dev/null </dev/null 3>&- &
	CATPID=$!
	# The kernel's COM1 output is read line by line; the line goes into
	# the console's input once the kernel says it waits for it.
	exec {qout}< <(qemu_microvm "tests=virtio-console-input" \
		-device virtio-serial-device -chardev pipe,id=c0,path="$TMP/c" \
		-device virtconsole,chardev=c0 2>/dev/null
		echo "# qemu exit status $?")
	while IFS= read -r -t 60 line <&"$qout"; do
		log+="$line"$'\n'
		if [[ "$line" == "# virtio-console-input: waiting for a line"* ]]; then
			ready=1
			break
		fi
	done
	[ -n "$ready" ] || { echo "$log"; false; }
	printf 'typed into hvc0\n' >"$TMP/c.in"
	while IFS= read -r -t 60 line <&"$qout"; do
		log+="$line"$'\n'
	done
	exec {qout}<&-
	echo "$log"
	grep -qx '# virtio-input: typed into hvc0' <<<"$log"
	grep -q '^ok 1 - virtio-console-input: console0: 15 characters' <<<"$log"
	grep -qx '# qemu exit status 0' <<<"$log"
	grep -qx '# virtio-console-input: type a line' "$TMP/console.log"
}

@test "qemu: without devices the virtio checks are SKIPs" {
	run --separate-stderr qemu_microvm \
		"tests=virtio-blk,virtio-rng,virtio-console,virtio-console-input,virtio-hostile"
	echo "$output"
	[ "$status" -eq 0 ]
	grep -qx 'ok 1 - virtio-blk # SKIP no virtio-blk device' <<<"$output"
	grep -qx 'ok 2 - virtio-rng # SKIP no virtio-rng device' <<<"$output"
	grep -qx 'ok 3 - virtio-console # SKIP no virtio-console device' <<<"$output"
	grep -qx 'ok 4 - virtio-console-input # SKIP no virtio-console device' <<<"$output"
	grep -qx 'ok 5 - virtio-hostile # SKIP no virtio-blk or virtio-rng device' <<<"$output"
}

# QEMU 7.2 breaks two rules of the specification that the hostile checks
# test, so under QEMU those cases, and only those, fail:
# - a buffer at 0xfffffffffffff000 of 0x2000 bytes wraps around the
#   address space and QEMU writes the second half to guest-physical 0
#   (blk and rng alike);
# - virtio-blk serves a request notified before DRIVER_OK, also on the
#   modern interface ("Some guests kick before setting DRIVER_OK", in
#   virtio_blk_handle_output), where 2.1.2 says the device MUST NOT.
qemu_hostile_expected() {
	echo "$output"
	[ "$status" -eq 3 ]
	grep -q '^not ok 1 - virtio-hostile: 3 of 15 cases failed' <<<"$output"
	[ "$(grep -c '^# hostile .*: FAILED: ' <<<"$output")" -eq 3 ]
	# The kernel names the first byte that differs from its canary; the
	# wrapped half lands on 0x0-0xfff, and its first bytes may happen to
	# equal the canary, so the address is somewhere in that page.
	grep -qxE '# hostile blk0 wrapping: FAILED: blk0 wrapping: the device wrote guest memory it was not given, at 0x[0-9a-f]{1,3}' <<<"$output"
	grep -qxE '# hostile rng0 wrapping: FAILED: rng0 wrapping: the device wrote guest memory it was not given, at 0x[0-9a-f]{1,3}' <<<"$output"
	grep -q "^# hostile blk0 before-driver-ok: FAILED: .* consumed ($1 interface)" <<<"$output"
	# every other case passed, with a way back for the device
	[ "$(grep -c '^# hostile [a-z0-9]* [a-z-]*\( 3\)\?: .*\(keeps working\|brings it back\)' <<<"$output")" -eq 12 ]
	grep -q '^# hostile rng0 before-driver-ok: left alone until DRIVER_OK, then served' <<<"$output"
	grep -q '^# hostile blk0 past-the-end: status 1 at sector' <<<"$output"
}

@test "qemu pc, virtio-pci: virtio-hostile, with blk's second queue as the other queue" {
	disk "$TMP/d.img" $((1048576))
	local want
	want=$(sha "$TMP/d.img")
	run --separate-stderr qemu_pc "tests=virtio-hostile" \
		-drive file="$TMP/d.img",format=raw,if=none,id=d0 \
		-device virtio-blk-pci,drive=d0,num-queues=2 -device virtio-rng-pci
	qemu_hostile_expected virtio-pci
	grep -q '^# hostile blk0 outside-ram: .*; queue 0 (the other queue) keeps working; rng0 keeps working' <<<"$output"
	grep -q '^# hostile blk0 looping-chain: DEVICE_NEEDS_RESET, not completed; a reset brings it back' <<<"$output"
	[ "$(sha "$TMP/d.img")" = "$want" ]
}

@test "qemu microvm, virtio-mmio v2: virtio-hostile" {
	disk "$TMP/d.img" $((1048576))
	run --separate-stderr qemu_microvm "tests=virtio-hostile" \
		-global virtio-mmio.force-legacy=off \
		-drive file="$TMP/d.img",format=raw,if=none,id=d0 \
		-device virtio-blk-device,drive=d0 -device virtio-rng-device
	qemu_hostile_expected virtio-mmio\ v2
}

# hmp SOCKET COMMAND...: QEMU's human monitor, one command at a time.
hmp() {
	python3 - "$@" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(20)
s.connect(sys.argv[1])
buf = b""
def prompt():
    global buf
    while b"(qemu) " not in buf:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    out, _, buf = buf.partition(b"(qemu) ")
    return out.decode(errors="replace")
prompt()
for cmd in sys.argv[2:]:
    s.sendall(cmd.encode() + b"\n")
    print(prompt().replace("\r", ""))
EOF
}

@test "qemu: # magic and # map tell the truth (xp, gva2gpa), and the heartbeat stops while QEMU is stopped" {
	local log="$TMP/serial.log" mon="$TMP/mon.sock" gpa val va mapped n1 n2
	timeout 60 qemu-system-x86_64 -accel kvm -M microvm,acpi=off -m 128 \
		-kernel "$KERNEL" -append "tests=heartbeat" -display none \
		-nodefaults -serial file:"$log" -monitor unix:"$mon",server=on,wait=off \
		-no-reboot </dev/null &
	QPID=$!
	wait_for "$log" '^# heartbeat 3$' 30
	read -r _ _ gpa val < <(grep '^# magic ' "$log")
	read -r _ _ va mapped < <(grep '^# map ' "$log")
	[[ "$val" =~ ^0x4c4b564d[0-9a-f]{8}$ ]]
	[ "$va" = 0xffff800000000000 ]
	[ "$mapped" = "$gpa" ]
	run hmp "$mon" "xp /1gx $gpa" "gva2gpa $va" "x /1gx $va"
	echo "$output"
	grep -q "^0*${gpa#0x}: $val\$" <<<"$output"
	grep -qx "gpa: $gpa" <<<"$output"
	grep -q "^ffff800000000000: $val\$" <<<"$output"
	# stopped: no beat for a second; continued: beats again
	hmp "$mon" stop >/dev/null
	n1=$(grep -c '^# heartbeat' "$log")
	sleep 1
	n2=$(grep -c '^# heartbeat' "$log")
	[ "$n1" -eq "$n2" ]
	hmp "$mon" cont >/dev/null
	wait_for "$log" "^# heartbeat $((n2 + 3))\$" 10
	hmp "$mon" quit >/dev/null || true
	wait "$QPID" || true
	QPID=
}
