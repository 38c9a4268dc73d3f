/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the machine core asks of the architecture (arch/x86/).
 * Called by kvm/machine.c in this order: arch_init_vm, arch_memory_layout
 * (the core then allocates and maps RAM), device init, arch_load, then
 * arch_setup_vcpu for each vCPU.
 */
#ifndef LKVM_ARCH_H
#define LKVM_ARCH_H

#include <stdint.h>
#include <stdio.h>

struct machine;
struct vcpu;

/* Capabilities the architecture cannot work without (0-terminated). */
extern const long arch_required_caps[];

struct kvm_ctx;

/* What vCPU set-up will ask of KVM and can be asked ahead, on another
 * thread than set-up's (machine_prepare): on x86 the host's CPUID table. */
void arch_prefetch(struct kvm_ctx *kvm);

/* The interrupt controllers (the kernel's, or lkvm's own on the split
 * irqchip, which sets m->irqchip), TSS and identity-map pages. */
int arch_init_vm(struct machine *m);

/*
 * With lkvm's own interrupt controllers (m->irqchip set), the core calls:
 * arch_irq_line for machine_irq_line; arch_vcpu_pre_run on the vCPU's
 * thread before each KVM_RUN (to inject what only user space can); and
 * arch_eoi when a local APIC reports the EOI of a level-triggered vector.
 */
int arch_irq_line(struct machine *m, unsigned int gsi, int level);
void arch_vcpu_pre_run(struct machine *m, struct vcpu *v);
void arch_eoi(struct machine *m, struct vcpu *v, uint8_t vector);

struct ram_range {
	uint64_t gpa;
	uint64_t size;
};

/*
 * Splits ram_size bytes of RAM into guest-physical ranges around the
 * architecture's holes (on x86: RAM up to the PCI hole at 3 GiB, the rest
 * from 4 GiB). Returns how many ranges it wrote (at most max).
 */
unsigned int arch_memory_layout(uint64_t ram_size, struct ram_range *r,
				unsigned int max);

/*
 * Loads what the guest boots (cfg.firmware, cfg.kernel, or the bundled
 * test kernel), with the initrd and command line, and writes the boot
 * tables (zero page, e820, PVH start info, MP table, device tree).
 * Prints a one-line error naming the file and the problem on failure.
 */
int arch_load(struct machine *m);

/* Frees what arch_load() left in m->boot. */
void arch_exit(struct machine *m);

/* Architecture-specific parts of the device tree (reserved memory). */
int arch_fdt(struct machine *m, void *fdt);

/* CPUID, MSRs, local APIC, and the boot registers for the BSP. */
int arch_setup_vcpu(struct machine *m, struct vcpu *v);

/* Registers and the bytes at RIP, for crash reports and `lkvm debug`. */
void arch_dump_vcpu(struct machine *m, struct vcpu *v, FILE *out);

/*
 * Walks the vCPU's page tables: guest-virtual to guest-physical.
 * Returns 0, -EFAULT when unmapped or a table lies outside RAM.
 */
int arch_translate(struct machine *m, struct vcpu *v, uint64_t gva,
		   uint64_t *gpa);

/* The bundled test kernel, linked into the binary. */
extern const unsigned char lkvm_test_kernel[];
extern const unsigned char lkvm_test_kernel_end[];

#endif
