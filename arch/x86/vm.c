// SPDX-License-Identifier: GPL-2.0
/* The x86 VM as a whole: capabilities, interrupt controllers, RAM layout. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ioctl.h>

#include "lkvm/arch.h"
#include "lkvm/ioapic.h"
#include "lkvm/machine.h"
#include "lkvm/util.h"
#include "lkvm/x86.h"

const long arch_required_caps[] = {
	KVM_CAP_IRQCHIP,
	KVM_CAP_PIT2,
	KVM_CAP_SET_TSS_ADDR,
	KVM_CAP_SET_IDENTITY_MAP_ADDR,
	KVM_CAP_EXT_CPUID,
	KVM_CAP_MP_STATE,
	KVM_CAP_IRQ_ROUTING,
	0,
};

/*
 * The three TSS pages and the identity-map page that VMX needs for real
 * mode on CPUs without unrestricted guest. kvmtool's addresses sit just
 * below the top 256 KiB, which is fine for kernels and for a firmware
 * image of up to 256 KiB (SeaBIOS's bios-256k.bin ends right above them);
 * a bigger image would cover them, so with --firmware they go where QEMU
 * puts them, right below the largest ROM lkvm accepts (16 MiB).
 */
#define TSS_ADDR 0xfffbd000ull
#define TSS_ADDR_FIRMWARE 0xfeffd000ull

uint64_t x86_tss_addr(const struct machine *m)
{
	return m->cfg.firmware ? TSS_ADDR_FIRMWARE : TSS_ADDR;
}

/*
 * Where each GSI goes, as on a PC and as the MP table (mptable.c) says:
 * GSIs 0-15 are the ISA IRQs and reach both the 8259s and the I/O APIC,
 * the timer (GSI 0) on I/O APIC pin 2, where the ISA bus wires it on PC
 * boards and where firmware's tables (SeaBIOS's MP table and MADT) say it
 * is; GSI 2 is the 8259 cascade and goes nowhere; GSIs 16-23 are the
 * remaining I/O APIC pins, for PCI INTx. KVM's default routing would
 * send GSI 0 to pin 0, so it is replaced here; QEMU and kvmtool do the
 * same. KVM_SET_GSI_ROUTING replaces the whole table: whoever adds
 * routes later (MSI for irqfd) passes them through here.
 */
int x86_set_gsi_routing(struct machine *m,
			const struct kvm_irq_routing_entry *extra,
			unsigned int nextra)
{
	struct kvm_irq_routing_entry pins[2 * IOAPIC_PINS];
	unsigned int n = 0;

	if (m->irqchip)
		return x86_irqchip_set_routing(m, extra, nextra);
	for (unsigned int gsi = 0; gsi < IOAPIC_PINS; gsi++) {
		if (gsi == 2)
			continue;
		if (gsi < 16)
			pins[n++] = (struct kvm_irq_routing_entry){
				.gsi = gsi,
				.type = KVM_IRQ_ROUTING_IRQCHIP,
				.u.irqchip = { gsi < 8 ? KVM_IRQCHIP_PIC_MASTER :
						         KVM_IRQCHIP_PIC_SLAVE,
					       gsi % 8 },
			};
		pins[n++] = (struct kvm_irq_routing_entry){
			.gsi = gsi,
			.type = KVM_IRQ_ROUTING_IRQCHIP,
			.u.irqchip = { KVM_IRQCHIP_IOAPIC, gsi ? gsi : 2 },
		};
	}
	return x86_submit_routes(m, pins, n, extra, nextra);
}

int x86_submit_routes(struct machine *m,
		      const struct kvm_irq_routing_entry *pins, unsigned int npins,
		      const struct kvm_irq_routing_entry *extra,
		      unsigned int nextra)
{
	struct kvm_irq_routing *rt;
	int err;

	rt = calloc(1, sizeof(*rt) + (npins + nextra) * sizeof(rt->entries[0]));
	if (!rt)
		return -ENOMEM;
	if (npins)
		memcpy(rt->entries, pins, npins * sizeof(*pins));
	if (nextra)
		memcpy(rt->entries + npins, extra, nextra * sizeof(*extra));
	rt->nr = npins + nextra;
	err = kvm_set_gsi_routing(m->kvm, rt);
	free(rt);
	return err;
}

/*
 * The I/O APIC's ID register says what the MP table says (the ID after
 * the last CPU's), as firmware programs it on a PC; KVM starts it at 0,
 * which guests that check the two see as a conflict with CPU 0.
 */
static int set_ioapic_id(struct machine *m)
{
	struct kvm_irqchip chip = { .chip_id = KVM_IRQCHIP_IOAPIC };
	int err = kvm_get_irqchip(m->kvm, &chip);

	if (err)
		return err;
	chip.chip.ioapic.id = x86_ncpus(m);
	return kvm_set_irqchip(m->kvm, &chip);
}

int arch_init_vm(struct machine *m)
{
	uint64_t tss = x86_tss_addr(m);
	int err;

	/* The identity map must be set before any vCPU exists. */
	if ((err = kvm_set_tss_addr(m->kvm, tss)) ||
	    (err = kvm_set_identity_map_addr(m->kvm,
					     tss - X86_IDENTITY_MAP_OFFSET)))
		return err;
	if (m->cfg.irqchip_kind == IRQCHIP_SPLIT) {
		/* Asked for by default: a KVM without it (before Linux 4.4)
		 * gets the kernel's irqchip instead. */
		if (!m->cfg.irqchip &&
		    kvm_check_extension(m->kvm, KVM_CAP_SPLIT_IRQCHIP) <= 0)
			m->cfg.irqchip_kind = IRQCHIP_KERNEL;
		else
			return x86_irqchip_init(m);
	}
	/* The irqchip first: the PIT delivers through it. */
	if ((err = kvm_create_irqchip(m->kvm)) ||
	    (err = x86_set_gsi_routing(m, NULL, 0)) ||
	    (err = set_ioapic_id(m)) || (err = kvm_create_pit(m->kvm)))
		return err;
	return 0;
}

void arch_exit(struct machine *m)
{
	struct x86_boot *b = m->boot;

	x86_irqchip_exit(m);
	if (!b)
		return;
	if (b->rom)
		munmap(b->rom, b->rom_size);
	free(b);
	m->boot = NULL;
}

unsigned int arch_memory_layout(uint64_t ram_size, struct ram_range *r,
				unsigned int max)
{
	uint64_t low = MIN(ram_size, X86_PCI_HOLE_START);
	unsigned int n = 0;

	if (!max || !ram_size)
		return 0;
	r[n++] = (struct ram_range){ 0, low };
	if (ram_size > low && n < max)
		r[n++] = (struct ram_range){ X86_4GIB, ram_size - low };
	return n;
}
