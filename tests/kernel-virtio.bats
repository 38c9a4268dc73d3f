#!/usr/bin/env bats
# lkvm's virtio devices refereed by the test kernel (x86-kernel/): the same
# checks that tests/qemu-virtio.bats runs under QEMU, on every transport
# lkvm offers (--virtio-transport pci, pci-modern, pci-legacy, mmio,
# mmio-legacy). The disk checksum the kernel prints is compared with the
# host's sha256sum of the image, and the image must be unchanged after the
# run (the check writes every sector, reads it back, restores it).

bats_require_minimum_version 1.5.0

load helpers

setup_file() {
	make -C "$KERNEL_DIR" >&2
}

setup() {
	setup_tmp
}

teardown() { teardown_tmp; }

disk() { # file bytes: random contents, so every sector differs
	head -c "$2" /dev/urandom >"$1"
}

sha() {
	sha256sum "$1" | cut -d' ' -f1
}

# lkvm_run [LKVM-RUN-OPTIONS...] -p PARAMS: the current test kernel.
lkvm_run() {
	timeout --kill-after=5 "${LKVM_TIMEOUT:-120}" \
		"$LKVM" run -k "$KERNEL" -m 128 "$@"
}

# Every transport named here is one lkvm offers: refusing it is a failure.
need_transport() {
	local out
	out=$("$LKVM" run --virtio-transport "$1" -p tests= </dev/null 2>&1) ||
		{ echo "lkvm --virtio-transport $1: $out"; return 1; }
}

no_failures() {
	! grep -q '^not ok' <<<"$output" || { echo "$output"; return 1; }
}

@test "lkvm: tests=all adds console, rng and blk (virtio-pci); the disk's SHA-256 is the host's" {
	disk "$TMP/d.img" $((9 * 1048576 + 7 * 512))
	local want
	want=$(sha "$TMP/d.img")
	run --separate-stderr lkvm_run -c 2 -d "$TMP/d.img" --rng --console virtio \
		-p "tests=all expect_mem=128 expect_cpus=2 hosttime=$(date +%s)" </dev/null
	echo "$output"
	echo "$stderr" >&2
	[ "$status" -eq 0 ]
	grep -qx '1\.\.13' <<<"$output"
	no_failures
	[ "$(grep -c '^ok ' <<<"$output")" -eq 13 ]
	grep -q '^ok [0-9]* - virtio-console: console0 (virtio-pci): 2 lines written' <<<"$output"
	grep -q '^ok [0-9]* - virtio-rng: 1 device(s) (virtio-pci), 320 random bytes' <<<"$output"
	grep -q '^ok [0-9]* - virtio-blk: blk0 (virtio-pci): 18439 sectors read, written, read back and restored, up to 8 requests in flight, flushed' <<<"$output"
	grep -qx "# blk0 sha256: $want" <<<"$output"
	grep -q '^# blk0 id: "..*"$' <<<"$output"
	# --console virtio: what the kernel writes to hvc0 reaches stdout
	grep -qx '# virtio-console: hello from console0 (virtio-pci)' <<<"$output"
	grep -qx '# virtio-console: a line in two descriptors' <<<"$output"
	[ "$(sha "$TMP/d.img")" = "$want" ]
}

# transport_checks TRANSPORT DEVICE-LINE-PATTERN NAME: blk, rng and console.
transport_checks() {
	need_transport "$1"
	disk "$TMP/d.img" $((2 * 1048576 + 512))
	local want
	want=$(sha "$TMP/d.img")
	run --separate-stderr lkvm_run --virtio-transport "$1" -d "$TMP/d.img" --rng \
		--console virtio -p "tests=virtio-blk,virtio-rng,virtio-console" </dev/null
	echo "$output"
	echo "$stderr" >&2
	[ "$status" -eq 0 ]
	no_failures
	[ "$(grep -c '^ok ' <<<"$output")" -eq 3 ]
	grep -q "^# virtio: blk0 on $2" <<<"$output"
	grep -q "^ok 1 - virtio-blk: blk0 ($3): 4097 sectors read, written" <<<"$output"
	grep -q "^ok 2 - virtio-rng: 1 device(s) ($3)" <<<"$output"
	grep -q "^ok 3 - virtio-console: console0 ($3)" <<<"$output"
	grep -qx "# virtio-console: hello from console0 ($3)" <<<"$output"
	grep -qx "# blk0 sha256: $want" <<<"$output"
	[ "$(sha "$TMP/d.img")" = "$want" ]
}

@test "lkvm --virtio-transport pci: transitional devices, modern interface" {
	transport_checks pci 'pci .* 1af4:1001, transitional, modern interface' virtio-pci
}

@test "lkvm --virtio-transport pci-modern: modern-only devices (1af4:1042)" {
	transport_checks pci-modern 'pci .* 1af4:1042, modern,' virtio-pci
}

@test "lkvm: virtio_pci=legacy makes the kernel use a transitional device's legacy BAR" {
	run --separate-stderr lkvm_run --rng -p "tests=virtio-rng virtio_pci=legacy" </dev/null
	echo "$output"
	[ "$status" -eq 0 ]
	grep -q '^# virtio: rng0 on pci .* 1af4:1005, legacy interface, I/O BAR0 at 0x[0-9a-f]* (modern one not used: virtio_pci=legacy)' <<<"$output"
	grep -q '^ok 1 - virtio-rng: 1 device(s) (virtio-pci legacy)' <<<"$output"
}

@test "lkvm --virtio-transport pci-legacy: the legacy I/O BAR" {
	transport_checks pci-legacy 'pci .* 1af4:1001, legacy interface, I/O BAR0' \
		'virtio-pci legacy'
}

@test "lkvm --virtio-transport mmio: virtio-mmio version 2 from the device tree" {
	transport_checks mmio 'mmio 0x[0-9a-f]*, version 2, .* from the device tree' \
		'virtio-mmio v2'
}

@test "lkvm --virtio-transport mmio-legacy: virtio-mmio version 1" {
	transport_checks mmio-legacy 'mmio 0x[0-9a-f]*, version 1,' 'virtio-mmio v1'
}

@test "lkvm: two disks, the second read-only (-d PATH,ro) refuses writes with IOERR" {
	disk "$TMP/rw.img" $((3 * 1048576 + 512))
	disk "$TMP/ro.img" $((1048576 + 3 * 512))
	local rw ro
	rw=$(sha "$TMP/rw.img")
	ro=$(sha "$TMP/ro.img")
	run --separate-stderr lkvm_run -d "$TMP/rw.img" -d "$TMP/ro.img,ro" \
		-p "tests=virtio-blk" </dev/null
	echo "$output"
	echo "$stderr" >&2
	[ "$status" -eq 0 ]
	no_failures
	grep -qx "# blk0 sha256: $rw" <<<"$output"
	grep -qx "# blk1 sha256: $ro" <<<"$output"
	grep -q '^# blk1: capacity 2051 sectors (1050112 bytes), read-only' <<<"$output"
	grep -q '^# blk1 (virtio-pci): read-only, 2051 sectors read, .* writes refused with IOERR' <<<"$output"
	[ "$(sha "$TMP/rw.img")" = "$rw" ]
	[ "$(sha "$TMP/ro.img")" = "$ro" ]
}

@test "lkvm: virtio-console-input reads a line from stdin through hvc0" {
	local t
	for t in pci mmio; do
		run --separate-stderr lkvm_run --virtio-transport $t --console virtio \
			-p "tests=virtio-console-input" <<<"typed-on-$t"
		echo "$output"
		[ "$status" -eq 0 ]
		grep -qx "# virtio-input: typed-on-$t" <<<"$output"
		grep -q '^ok 1 - virtio-console-input: console0: ' <<<"$output"
		grep -qx '# virtio-console-input: type a line' <<<"$output"
	done
}

@test "lkvm: without devices the virtio checks SKIP and tests=all leaves them out" {
	run --separate-stderr lkvm_run \
		-p "tests=virtio-blk,virtio-rng,virtio-console,virtio-hostile" </dev/null
	echo "$output"
	[ "$status" -eq 0 ]
	grep -qx 'ok 1 - virtio-blk # SKIP no virtio-blk device' <<<"$output"
	grep -qx 'ok 2 - virtio-rng # SKIP no virtio-rng device' <<<"$output"
	grep -qx 'ok 3 - virtio-console # SKIP no virtio-console device' <<<"$output"
	grep -qx 'ok 4 - virtio-hostile # SKIP no virtio-blk or virtio-rng device' <<<"$output"
	run --separate-stderr lkvm_run -p "tests=all expect_mem=128" </dev/null
	[ "$status" -eq 0 ]
	grep -qx '1\.\.10' <<<"$output"
}

# hostile TRANSPORT: every case passes (what virtio 1.2 requires), and
# lkvm keeps its own stricter contract: a malformed chain is refused, with
# DEVICE_NEEDS_RESET on the modern interfaces (legacy ones have no such
# bit: the chain is left and a reset brings the device back); never served
# as a success, never written through.
hostile() {
	need_transport "$1"
	disk "$TMP/d.img" 1048576
	local want c line
	want=$(sha "$TMP/d.img")
	run --separate-stderr lkvm_run --virtio-transport "$1" -d "$TMP/d.img" --rng \
		-p "tests=virtio-hostile" </dev/null
	echo "$output"
	echo "$stderr" >&2
	[ "$status" -eq 0 ]
	grep -q '^ok 1 - virtio-hostile: 15 cases on blk0 .* and rng0 ' <<<"$output"
	! grep -q 'FAILED' <<<"$output"
	for c in outside-ram wrapping length-overflow looping-chain next-out-of-range; do
		for d in blk0 rng0; do
			line=$(grep "^# hostile $d $c: " <<<"$output")
			if [ "$2" = modern ]; then
				[[ "$line" == *": DEVICE_NEEDS_RESET, not completed; a reset brings it back"* ]] ||
					{ echo "lkvm contract: $line"; return 1; }
			else
				[[ "$line" == *": not completed; stopped until a reset"* ]] ||
					{ echo "lkvm contract: $line"; return 1; }
			fi
		done
	done
	grep -q '^# hostile blk0 past-the-end: status 1 at sector 2048, 1 across the end' <<<"$output"
	grep -q "^# hostile blk0 before-driver-ok: $3" <<<"$output"
	grep -q "^# hostile rng0 before-driver-ok: $3" <<<"$output"
	# lkvm says what it refused, and keeps running
	grep -q 'buffer outside guest RAM; the device needs a reset' <<<"$stderr"
	[ "$(sha "$TMP/d.img")" = "$want" ]
}

@test "lkvm --virtio-transport pci: virtio-hostile" {
	hostile pci modern 'left alone until DRIVER_OK, then served'
}

@test "lkvm --virtio-transport mmio: virtio-hostile" {
	hostile mmio modern 'left alone until DRIVER_OK, then served'
}

@test "lkvm --virtio-transport pci-legacy: virtio-hostile" {
	hostile pci-legacy legacy 'consumed before DRIVER_OK (allowed on the legacy interface)'
}
