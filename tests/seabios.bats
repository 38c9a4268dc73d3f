#!/usr/bin/env bats
# SeaBIOS boots a virtio-blk disk: fw_cfg tells it the machine, its
# virtio driver reads the MBR and, through INT 13h, a second sector. One
# boot per virtio-pci flavour: transitional (SeaBIOS takes the modern
# interface), modern-only (device 1af4:1042) and legacy-only.

load helpers

BIOS=/usr/share/seabios/bios.bin

setup() {
	setup_tmp
	[ -f "$BIOS" ] || skip "seabios not installed"
}
teardown() { teardown_tmp; }

# A 1 MiB disk whose boot sector waits 100 ms (so that SeaBIOS's serial
# console has flushed), reads sector 1 with INT 13h, prints the string
# there on COM1 and exits through port 0xf4 with 0x2a (status 85), or
# 0x15 (status 43) when the read fails. Source: 16-bit code,
#   xor ax,ax; mov ds,ax; mov es,ax; mov bp,dx; mov ah,86h; mov cx,1;
#   mov dx,86a0h; int 15h; mov ax,0201h; mov cx,2; mov dx,bp; mov dh,0;
#   mov bx,7e00h; int 13h; jc fail; mov si,7e00h
#   next: lodsb; test al,al; jz done; mov ah,al; mov dx,3fdh
#   wait: in al,dx; test al,20h; jz wait; mov dx,3f8h; mov al,ah;
#   out dx,al; jmp next
#   done: mov al,2ah; jmp out; fail: mov al,15h
#   out: mov dx,0f4h; out dx,al; hlt
boot_disk() { # file text
	head -c 1048576 /dev/zero >"$1"
	hex 31 c0 8e d8 8e c0 89 d5 b4 86 b9 01 00 ba a0 86 cd 15 b8 01 02 \
		b9 02 00 89 ea b6 00 bb 00 7e cd 13 72 1e be 00 7e ac 84 c0 \
		74 12 88 c4 ba fd 03 ec a8 20 74 fb ba f8 03 88 e0 ee eb e9 \
		b0 2a eb 02 b0 15 ba f4 00 ee f4 |
		dd of="$1" conv=notrunc status=none
	hex 55 aa | dd of="$1" bs=1 seek=510 conv=notrunc status=none
	printf '%s\r\n\0' "$2" | dd of="$1" bs=1 seek=512 conv=notrunc status=none
}

boot() { # transport [lkvm options]
	local t=$1
	shift
	token="sector-one-$RANDOM$RANDOM"
	boot_disk "$TMP/disk.img" "virtio-blk: $token"
	run timeout 120 "$LKVM" run --firmware "$BIOS" --debug-console \
		--virtio-transport "$t" -d "$TMP/disk.img" "$@" </dev/null
	echo "$output"
	[ "$status" -eq 85 ]
	grep -q "virtio-blk: $token" <<<"$output"
	grep -q "found virtio-blk at 00:01.0" <<<"$output"
}

@test "SeaBIOS boots a transitional virtio-blk disk (modern interface)" {
	boot pci
	grep -q "using modern (1.0) virtio mode" <<<"$output"
}

@test "SeaBIOS boots a modern-only virtio-blk disk" {
	boot pci-modern
	grep -q "using modern (1.0) virtio mode" <<<"$output"
}

@test "SeaBIOS boots a legacy virtio-blk disk" {
	boot pci-legacy
	grep -q "using legacy (0.9.5) virtio mode" <<<"$output"
}

@test "SeaBIOS reads fw_cfg: DMA, e820, CPUs, boot order, no boot menu" {
	boot pci -c 2
	grep -q "Found QEMU fw_cfg" <<<"$output"
	grep -q "QEMU fw_cfg DMA interface supported" <<<"$output"
	grep -q "qemu/e820: addr 0x0000000000000000 len 0x0000000008000000 \[RAM\]" <<<"$output"
	grep -q "Found 2 cpu(s) max supported 2 cpu(s)" <<<"$output"
	grep -q "Searching bootorder for: /pci@i0cf8/\*@1" <<<"$output"
	! grep -q "Press ESC for boot menu" <<<"$output"
}

@test "SeaBIOS boots from a read-only disk" {
	token="ro-$RANDOM"
	boot_disk "$TMP/disk.img" "read-only: $token"
	run timeout 120 "$LKVM" run --firmware "$BIOS" -d "$TMP/disk.img,ro" \
		</dev/null
	echo "$output"
	[ "$status" -eq 85 ]
	grep -q "read-only: $token" <<<"$output"
}
