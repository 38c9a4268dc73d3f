// SPDX-License-Identifier: GPL-2.0
/*
 * floor [-i|-s] FLAT [MIB]: the least any VMM must do to run a flat real-mode
 * binary that prints on COM1 and exits through port 0xf4: open /dev/kvm,
 * create the VM, its TSS, one memory slot of MIB (default 128) and one
 * vCPU, load the binary at 0x10000, start it at 1000:0000, and handle port
 * writes. No devices, no tables; with -i, also the in-kernel interrupt
 * controllers and PIT that every VMM with interrupts creates (QEMU,
 * kvmtool and Firecracker all do): tearing those down is most of a
 * VM's exit time. With -s, the split irqchip instead (only the local
 * APICs in the kernel, as cloud-hypervisor and QEMU's q35 with
 * kernel-irqchip=split run; the PIC, I/O APIC and PIT are then the VMM's
 * to emulate): what the exit costs without the kernel's. lkvm's boot
 * time is compared with this program's.
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int irqchip = argc > 1 && argv[1][0] == '-' && argv[1][1] == 'i';
	int split = argc > 1 && argv[1][0] == '-' && argv[1][1] == 's';
	size_t mem;

	int kvm, vm, vcpu, fd;
	struct kvm_userspace_memory_region r = { 0 };
	struct kvm_sregs s;
	struct kvm_regs regs = { .rip = 0, .rflags = 2 };
	struct kvm_run *run;
	char *ram;
	ssize_t n;

	argv += irqchip + split;
	argc -= irqchip + split;
	if (argc < 2)
		return 2;
	mem = (argc > 2 ? strtoul(argv[2], NULL, 0) : 128) << 20;
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000ul);
	ram = mmap(NULL, mem, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	fd = open(argv[1], O_RDONLY);
	n = read(fd, ram + 0x10000, 0x90000);
	if (kvm < 0 || vm < 0 || ram == MAP_FAILED || n <= 0)
		return 2;
	r.memory_size = mem;
	r.userspace_addr = (unsigned long)ram;
	ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r);
	if (irqchip) {
		struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };

		ioctl(vm, KVM_CREATE_IRQCHIP, 0);
		ioctl(vm, KVM_CREATE_PIT2, &pit);
	}
	if (split) {
		struct kvm_enable_cap cap = { .cap = KVM_CAP_SPLIT_IRQCHIP,
					      .args = { 24 } };

		if (ioctl(vm, KVM_ENABLE_CAP, &cap))
			return 2;
	}
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	run = mmap(NULL, (size_t)ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0),
		   PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	ioctl(vcpu, KVM_GET_SREGS, &s);
	s.cs.selector = 0x1000;
	s.cs.base = 0x10000;
	s.ds = s.es = s.ss = s.cs;
	s.ds.type = s.es.type = s.ss.type = 3;
	ioctl(vcpu, KVM_SET_SREGS, &s);
	ioctl(vcpu, KVM_SET_REGS, &regs);
	for (;;) {
		if (ioctl(vcpu, KVM_RUN, 0) < 0)
			return 3;
		if (run->exit_reason != KVM_EXIT_IO)
			return 4;
		if (run->io.direction == KVM_EXIT_IO_OUT) {
			char c = *((char *)run + run->io.data_offset);

			if (run->io.port == 0x3f8 && write(1, &c, 1) < 0)
				return 5;
			if (run->io.port == 0xf4)
				return (c << 1) | 1;
		}
	}
}
