# Shared by the suites that boot the test kernel ($KERNEL) under QEMU.

# Skips the test without QEMU or a writable /dev/kvm.
need_qemu() {
	command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 not installed"
	[ -w /dev/kvm ] || skip "no writable /dev/kvm"
}

# qemu_kernel SECONDS MACHINE SMP APPEND [QEMU-ARGS...]: the kernel with
# COM1 on stdio, no monitor, the debug-exit device, and QEMU's exit on
# reset, for at most SECONDS. Standard input is the caller's.
qemu_kernel() {
	local secs="$1" machine="$2" smp="$3" append="$4"
	shift 4
	timeout --kill-after=10 "$secs" \
		qemu-system-x86_64 -accel kvm -M "$machine" -m 128 -smp "$smp" \
		-kernel "$KERNEL" -append "$append" \
		-display none -nodefaults -serial stdio -monitor none -no-reboot \
		-device isa-debug-exit,iobase=0xf4,iosize=4 "$@"
}

# qemu_pc APPEND [QEMU-ARGS...]: a pc machine with two vCPUs. SeaBIOS lists
# only the first logical CPU of each package in its MP table, so the vCPUs
# are sockets, which makes every one of them visible there.
qemu_pc() {
	local append="$1"
	shift
	qemu_kernel "${QEMU_TIMEOUT:-120}" pc 2,sockets=2 "$append" "$@" </dev/null
}

# qemu_microvm APPEND [QEMU-ARGS...]: no ACPI, so that QEMU announces its
# virtio-mmio devices on the command line (virtio_mmio.device=...), which
# is where this kernel looks (it does not read the DSDT). No i8042 either:
# after a passing run the kernel ends with a triple fault, which
# -no-reboot turns into exit status 0.
qemu_microvm() {
	local append="$1"
	shift
	qemu_kernel "${QEMU_TIMEOUT:-60}" microvm,acpi=off 1 "$append" "$@" </dev/null
}
