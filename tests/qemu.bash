# Shared by the suites that boot the test kernel ($KERNEL) under QEMU.

# qemu_pc APPEND [QEMU-ARGS...], as in qemu.bats.
qemu_pc() {
	local append="$1"
	shift
	timeout --kill-after=10 "${QEMU_TIMEOUT:-120}" \
		qemu-system-x86_64 -accel kvm -M pc -m 128 -smp 2,sockets=2 \
		-kernel "$KERNEL" -append "$append" \
		-display none -nodefaults -serial stdio -monitor none -no-reboot \
		-device isa-debug-exit,iobase=0xf4,iosize=4 "$@" </dev/null
}

# qemu_microvm APPEND [QEMU-ARGS...]: no ACPI, so that QEMU announces its
# virtio-mmio devices on the command line (virtio_mmio.device=...), which
# is where this kernel looks (it does not read the DSDT). No i8042 either:
# after a passing run the kernel ends with a triple fault, which
# -no-reboot turns into exit status 0.
qemu_microvm() {
	local append="$1"
	shift
	timeout --kill-after=10 "${QEMU_TIMEOUT:-60}" \
		qemu-system-x86_64 -accel kvm -M microvm,acpi=off -m 128 -smp 1 \
		-kernel "$KERNEL" -append "$append" \
		-display none -nodefaults -serial stdio -monitor none -no-reboot \
		-device isa-debug-exit,iobase=0xf4,iosize=4 "$@" </dev/null
}
