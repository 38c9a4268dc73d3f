#!/usr/bin/env bats
# lkvm's side of virtio: the options, the device tree, host errors that
# reach the guest as VIRTIO_BLK_S_IOERR while lkvm runs on, many devices
# at once, and hostile drivers on the transports tests/kernel-virtio.bats
# leaves out. The guest is the bundled test kernel (x86-kernel/), whose
# virtio checks are the driver.

load helpers

setup() { setup_tmp; }
teardown() { teardown_tmp; }

@test "virtio: --virtio-transport names the choices when it does not know one" {
	run "$LKVM" run --rng --virtio-transport usb
	assert_one_line_error "--virtio-transport 'usb': use pci, pci-modern, pci-legacy, mmio or mmio-legacy"
}

@test "virtio: a disk that cannot be opened is named in one line" {
	run "$LKVM" run -d "$TMP/nope.img"
	assert_one_line_error "nope.img"
}

@test "virtio: mmio devices are in the device tree, 0x200 bytes each, an ISA IRQ each" {
	command -v dtc >/dev/null || skip "dtc not installed"
	head -c 1048576 /dev/zero >"$TMP/a.img"
	run timeout 60 "$LKVM" run --virtio-transport mmio -d "$TMP/a.img" \
		--rng --dump-dtb "$TMP/m.dtb" -p tests= </dev/null
	[ "$status" -eq 0 ]
	dts=$(dtc -I dtb -O dts "$TMP/m.dtb" 2>/dev/null)
	echo "$dts"
	grep -A5 "virtio_mmio@feb00000 {" <<<"$dts" | grep -q 'compatible = "virtio,mmio"'
	grep -A5 "virtio_mmio@feb00000 {" <<<"$dts" | grep -q 'reg = <0x00 0xfeb00000 0x00 0x200>'
	grep -A5 "virtio_mmio@feb00000 {" <<<"$dts" | grep -q 'interrupts = <0x05 0x03>'
	grep -A5 "virtio_mmio@feb00200 {" <<<"$dts" | grep -q 'interrupts = <0x06 0x03>'
	run timeout 60 "$LKVM" run -d "$TMP/a.img" --dump-dtb "$TMP/p.dtb" \
		-p tests= </dev/null
	! dtc -I dtb -O dts "$TMP/p.dtb" 2>/dev/null | grep -q virtio_mmio
}

@test "virtio: six devices on mmio (four disks, rng, console) all work" {
	sums=()
	for i in 0 1 2 3; do
		head -c $((1024 * 1024 * (i + 1))) /dev/urandom >"$TMP/d$i.img"
		sums+=("$(sha256sum "$TMP/d$i.img" | cut -d' ' -f1)")
	done
	run timeout 120 "$LKVM" run --virtio-transport mmio --rng \
		--console virtio -d "$TMP/d0.img" -d "$TMP/d1.img" \
		-d "$TMP/d2.img,ro" -d "$TMP/d3.img" \
		-p "tests=virtio-blk,virtio-rng,virtio-console" </dev/null
	echo "$output"
	[ "$status" -eq 0 ]
	! grep -q '^not ok' <<<"$output"
	[ "$(grep -c '^ok' <<<"$output")" -eq 3 ]
	for i in 0 1 2 3; do
		[ "$(sha256sum "$TMP/d$i.img" | cut -d' ' -f1)" = "${sums[$i]}" ]
	done
}

@test "virtio: a host write error (ENOSPC) is IOERR for the guest; lkvm runs on" {
	command -v unshare >/dev/null || skip "no unshare"
	mkdir "$TMP/small"
	# A private mount namespace: the 2 MiB tmpfs goes away with it.
	run timeout 60 unshare -m sh -c "
		mount -t tmpfs -o size=2m tmpfs '$TMP/small' || exit 99
		truncate -s 4M '$TMP/small/disk.img'
		exec '$LKVM' run -d '$TMP/small/disk.img' -p tests=virtio-blk
	" </dev/null
	echo "$output"
	[ "$status" -ne 99 ] || skip "cannot mount a tmpfs here"
	# The check fails with the device's status 1 and the guest ends the
	# run itself: (1 failure << 1) | 1.
	[ "$status" -eq 3 ]
	grep -q '^not ok .*virtio-blk.*status 1' <<<"$output"
	! grep -qi 'crash\|internal error' <<<"$output"
}

hostile() { # transport
	head -c $((2 * 1024 * 1024)) /dev/urandom >"$TMP/h.img"
	sum=$(sha256sum "$TMP/h.img" | cut -d' ' -f1)
	run timeout 120 "$LKVM" run --virtio-transport "$1" --rng \
		-d "$TMP/h.img" -p "tests=virtio-hostile" </dev/null
	echo "$output"
	[ "$status" -eq 0 ]
	grep -q '^ok .* - virtio-hostile' <<<"$output"
	[ "$(sha256sum "$TMP/h.img" | cut -d' ' -f1)" = "$sum" ]
	# Each refusal is named on stderr, once per reset: device, queue, why.
	grep -q "^lkvm: warning: virtio-blk0: queue 0: .*; the device needs a reset" <<<"$output"
	grep -q "^lkvm: warning: virtio-rng: queue 0: .*; the device needs a reset" <<<"$output"
}

@test "virtio: hostile drivers on pci-modern (1af4:1042)" {
	hostile pci-modern
}

@test "virtio: hostile drivers on mmio-legacy (virtio-mmio version 1)" {
	hostile mmio-legacy
}
