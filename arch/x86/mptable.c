// SPDX-License-Identifier: GPL-2.0
/*
 * The MP table (Intel MultiProcessor Specification 1.4): how a guest
 * without ACPI or a device tree finds its CPUs, the I/O APIC and the
 * interrupt routing of the ISA and PCI devices. It describes what KVM's
 * in-kernel irqchip does: ISA IRQ n reaches I/O APIC pin n, except the
 * timer (IRQ 0), which KVM's default GSI routing sends to pin 2, and PCI
 * INTx lines reach the pin of their GSI, level-triggered, active low.
 */
#include <errno.h>
#include <string.h>

#include "lkvm/ioapic.h"
#include "lkvm/machine.h"
#include "lkvm/pci.h"
#include "lkvm/util.h"
#include "lkvm/x86.h"

#define MPF_SIZE	16
#define MPC_HDR_SIZE	44
#define MPC_SPEC_REV	4	/* 1.4 */

enum mp_entry_type {
	MP_PROCESSOR = 0,	/* 20 bytes; all others are 8 */
	MP_BUS = 1,
	MP_IOAPIC = 2,
	MP_INTSRC = 3,
	MP_LINTSRC = 4,
};

enum mp_irq_type { MP_INT = 0, MP_NMI = 1, MP_SMI = 2, MP_EXTINT = 3 };

/* Interrupt flags: polarity in bits 0-1, trigger mode in bits 2-3. */
#define MP_IRQ_CONFORMS		0x0
#define MP_IRQ_LEVEL_LOW	0xf	/* active low, level-triggered */

#define MP_CPU_ENABLED		0x01
#define MP_CPU_BSP		0x02
#define MP_IOAPIC_ENABLED	0x01

/* What KVM's local APIC reports in its version register; the I/O APIC's
 * is IOAPIC_VERSION, the same for KVM's and lkvm's (lkvm/ioapic.h). */
#define LAPIC_VERSION		0x14

/* CPUID 1 EAX and EDX to list; only informational for the guest. */
#define CPU_SIGNATURE		0x00000600	/* family 6 */
#define CPU_FEATURES		0x00000201	/* FPU, APIC */

#define ISA_TIMER_PIN		2
#define LINT0			0
#define LINT1			1
#define ALL_LAPICS		0xff

struct mp_writer {
	uint8_t *buf;
	size_t len, max;
	unsigned int count;
	bool overflow;
};

static uint8_t *mp_entry(struct mp_writer *w, size_t size)
{
	uint8_t *p;

	if (w->len + size > w->max) {
		w->overflow = true;
		return NULL;
	}
	p = w->buf + w->len;
	memset(p, 0, size);
	w->len += size;
	w->count++;
	return p;
}

static uint8_t checksum(const uint8_t *p, size_t len)
{
	uint8_t sum = 0;

	while (len--)
		sum += *p++;
	return -sum;
}

static void add_cpu(struct mp_writer *w, unsigned int apic_id, bool bsp)
{
	uint8_t *e = mp_entry(w, 20);

	if (!e)
		return;
	e[0] = MP_PROCESSOR;
	e[1] = apic_id;
	e[2] = LAPIC_VERSION;
	e[3] = MP_CPU_ENABLED | (bsp ? MP_CPU_BSP : 0);
	put_le32(e + 4, CPU_SIGNATURE);
	put_le32(e + 8, CPU_FEATURES);
}

static void add_bus(struct mp_writer *w, unsigned int id, const char *type)
{
	uint8_t *e = mp_entry(w, 8);

	if (!e)
		return;
	e[0] = MP_BUS;
	e[1] = id;
	memcpy(e + 2, type, 6);		/* blank-padded, no NUL */
}

static void add_ioapic(struct mp_writer *w, unsigned int id)
{
	uint8_t *e = mp_entry(w, 8);

	if (!e)
		return;
	e[0] = MP_IOAPIC;
	e[1] = id;
	e[2] = IOAPIC_VERSION;
	e[3] = MP_IOAPIC_ENABLED;
	put_le32(e + 4, (uint32_t)IOAPIC_BASE);
}

static void add_irq(struct mp_writer *w, enum mp_entry_type type,
		    enum mp_irq_type irq_type, uint16_t flags,
		    unsigned int bus, unsigned int bus_irq,
		    unsigned int dst_id, unsigned int dst_pin)
{
	uint8_t *e = mp_entry(w, 8);

	if (!e)
		return;
	e[0] = type;
	e[1] = irq_type;
	put_le16(e + 2, flags);
	e[4] = bus;
	e[5] = bus_irq;
	e[6] = dst_id;
	e[7] = dst_pin;
}

int x86_build_mptable(struct machine *m, unsigned int ncpus,
		      const struct x86_pci_irq *pci, unsigned int npci)
{
	uint64_t table_addr = X86_MPTABLE_ADDR + MPF_SIZE;
	uint8_t *mpf, *mpc;
	struct mp_writer w;
	unsigned int ioapic_id = ncpus;

	/* xAPIC IDs are 8 bits, 0xff is broadcast, and the I/O APIC
	 * takes the ID after the last CPU. */
	if (!ncpus || ncpus > 254) {
		pr_err("MP table: %u vCPUs; it can describe 1 to 254", ncpus);
		return -EINVAL;
	}
	mpf = guest_ptr(m, X86_MPTABLE_ADDR, MPF_SIZE);
	mpc = guest_ptr(m, table_addr, X86_HIGH_ADDR - table_addr);
	if (!mpf || !mpc) {
		pr_err("MP table: guest RAM does not reach the BIOS area");
		return -EFAULT;
	}

	w = (struct mp_writer){ .buf = mpc, .len = MPC_HDR_SIZE,
				.max = X86_HIGH_ADDR - table_addr };
	memset(mpc, 0, MPC_HDR_SIZE);
	for (unsigned int i = 0; i < ncpus; i++)
		add_cpu(&w, i, i == 0);
	add_bus(&w, MP_BUS_PCI, "PCI   ");
	add_bus(&w, MP_BUS_ISA, "ISA   ");
	add_ioapic(&w, ioapic_id);

	for (unsigned int irq = 0; irq < 16; irq++) {
		/* IRQ 2 is the 8259 cascade: nothing is wired to it, and
		 * its pin is the timer's. */
		if (irq == 2)
			continue;
		add_irq(&w, MP_INTSRC, MP_INT, MP_IRQ_CONFORMS, MP_BUS_ISA, irq,
			ioapic_id, irq == 0 ? ISA_TIMER_PIN : irq);
	}
	for (unsigned int i = 0; i < npci; i++) {
		if (!pci[i].pin || pci[i].pin > 4 || pci[i].slot > 31)
			continue;
		/* PCI source IRQ: device number in bits 2-6, pin (INTA=0)
		 * in bits 0-1. */
		add_irq(&w, MP_INTSRC, MP_INT, MP_IRQ_LEVEL_LOW, MP_BUS_PCI,
			(pci[i].slot << 2) | (pci[i].pin - 1), ioapic_id,
			pci[i].gsi);
	}
	/* The local APICs' inputs as firmware programs them: the 8259
	 * through LINT0, NMI on LINT1. */
	add_irq(&w, MP_LINTSRC, MP_EXTINT, MP_IRQ_CONFORMS, MP_BUS_ISA, 0,
		ALL_LAPICS, LINT0);
	add_irq(&w, MP_LINTSRC, MP_NMI, MP_IRQ_CONFORMS, MP_BUS_ISA, 0,
		ALL_LAPICS, LINT1);
	if (w.overflow) {
		pr_err("MP table: does not fit in the BIOS area");
		return -E2BIG;
	}

	memcpy(mpc, "PCMP", 4);
	put_le16(mpc + 4, w.len);			/* base table length */
	mpc[6] = MPC_SPEC_REV;
	memcpy(mpc + 8, "LKVM    ", 8);		/* OEM ID */
	memcpy(mpc + 16, "LKVM PC     ", 12);	/* product ID */
	put_le16(mpc + 34, w.count);		/* entry count */
	put_le32(mpc + 36, X86_LAPIC_ADDR);
	mpc[7] = checksum(mpc, w.len);

	memset(mpf, 0, MPF_SIZE);
	memcpy(mpf, "_MP_", 4);
	put_le32(mpf + 4, table_addr);
	mpf[8] = 1;				/* length in 16-byte units */
	mpf[9] = MPC_SPEC_REV;
	/* Feature bytes 0: a configuration table follows; IMCR absent,
	 * so the guest uses virtual-wire mode. */
	mpf[10] = checksum(mpf, MPF_SIZE);
	return 0;
}

int x86_write_mptable(struct machine *m, unsigned int ncpus)
{
	struct x86_pci_irq pci[PCI_MAX_DEVICES];
	unsigned int n = 0;
	struct pci_device *d;

	for (d = pci_next_device(m, NULL); d && n < PCI_MAX_DEVICES;
	     d = pci_next_device(m, d))
		pci[n++] = (struct x86_pci_irq){ d->slot, d->irq_pin, d->gsi };
	return x86_build_mptable(m, ncpus, pci, n);
}
