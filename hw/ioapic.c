// SPDX-License-Identifier: GPL-2.0
/*
 * The 82093AA I/O APIC as a register model: 24 pins, version 0x11 (the
 * version KVM's in-kernel I/O APIC reports, so a guest sees the same
 * chip on either irqchip). No lock, no KVM calls: the owner serialises
 * calls and turns the deliver callback into KVM_SIGNAL_MSI.
 *
 * - Registers are reached indirectly: IOREGSEL (offset 0x00, low 8 bits)
 *   picks one, IOWIN (0x10) reads or writes it. Unknown registers read 0
 *   (as QEMU's model does; KVM's reads all ones) and ignore writes; so do
 *   other offsets (there is no EOI register before version 0x20).
 * - Redirection entries keep every bit the guest writes but delivery
 *   status and remote IRR, which are read-only: a write leaves them as
 *   they were. Reserved bits read back as written, as KVM's in-kernel
 *   model and QEMU's do (Linux's extended destination ID lives in bits
 *   49-55); they are not part of the message. Delivery is immediate, so
 *   delivery status always reads 0.
 * - Input levels come in as logical levels (the owner has applied the
 *   polarity); the polarity bit is only stored for the guest to read.
 * - Edge pins deliver on each rise while unmasked. A rise while masked is
 *   dropped, not latched, as KVM's in-kernel model does (and as a guest
 *   masking an edge pin expects: unmasking later does not fire a stale
 *   interrupt); io->edge_pending records such drops for the owner's
 *   statistics and is never acted on.
 * - Level pins deliver while asserted, unmasked and remote IRR clear, and
 *   set remote IRR; the local APIC's EOI of the vector clears it and
 *   delivers again if the line is still up. Any guest write that leaves a
 *   level pin asserted, unmasked and without remote IRR delivers at once
 *   (unmasking, or switching an asserted pin to level).
 * - Switching an entry to edge clears remote IRR: Linux does this (mask,
 *   edge, level) to unstick a pin on I/O APICs without an EOI register,
 *   which 0x11 is.
 * - There is no storm guard: a level pin whose device never lowers its
 *   line re-fires once per EOI, one interrupt per guest EOI exit, which
 *   is bounded by the guest's own pace; nothing here loops on it. For
 *   the same reason the deliver callback must not call ioapic_eoi()
 *   itself: EOIs come later, from a vCPU's exit.
 * - NMI, SMI, INIT and ExtINT entries follow the trigger bit the guest
 *   wrote; the 82093AA asks guests to program them edge, and a guest that
 *   programs them level keeps remote IRR set until it reprograms the pin.
 */
#include "lkvm/ioapic.h"

#define REG_ID 0x00
#define REG_VERSION 0x01
#define REG_ARB 0x02
#define REG_REDTBL 0x10
#define REG_REDTBL_END (REG_REDTBL + 2 * IOAPIC_PINS)

#define ID_SHIFT 24
#define ID_MASK 0x0f

#define DM_MASK (7ull << IOAPIC_DM_SHIFT)
#define READ_ONLY (IOAPIC_DELIVS | IOAPIC_REMOTE_IRR)
/* What a guest write may change in an entry. */
#define WRITABLE (~READ_ONLY)

/* MSI message fields, as the local APICs decode them. */
#define MSI_ADDR_BASE 0xfee00000ull
#define MSI_ADDR_DEST_SHIFT 12
#define MSI_ADDR_LOGICAL (1u << 2)
#define MSI_DATA_DM_SHIFT 8
#define MSI_DATA_ASSERT (1u << 14)
#define MSI_DATA_LEVEL (1u << 15)

void ioapic_entry_msi(uint64_t entry, uint64_t *addr, uint32_t *data)
{
	uint64_t dest = (entry >> IOAPIC_DEST_SHIFT) & 0xff;

	*addr = MSI_ADDR_BASE | dest << MSI_ADDR_DEST_SHIFT |
		((entry & IOAPIC_DEST_LOGICAL) ? MSI_ADDR_LOGICAL : 0);
	/*
	 * Every message is an assertion: KVM's MSI decoding ignores bit 14
	 * (it treats every MSI as asserted), and the SDM defines it as 1 =
	 * assert for level-triggered messages and ignored for edge ones.
	 */
	*data = (uint32_t)(entry & IOAPIC_VECTOR_MASK) |
		(uint32_t)((entry & DM_MASK) >> IOAPIC_DM_SHIFT)
			<< MSI_DATA_DM_SHIFT |
		MSI_DATA_ASSERT |
		((entry & IOAPIC_LEVEL) ? MSI_DATA_LEVEL : 0);
}

void ioapic_reset(struct ioapic *io, uint8_t id)
{
	unsigned int pin;

	io->id = id & ID_MASK;
	io->regsel = 0;
	io->lines = 0;
	io->edge_pending = 0;
	for (pin = 0; pin < IOAPIC_PINS; pin++)
		io->redtbl[pin] = IOAPIC_MASKED;
}

static void send(struct ioapic *io, unsigned int pin)
{
	uint64_t addr;
	uint32_t data;

	ioapic_entry_msi(io->redtbl[pin], &addr, &data);
	if (io->deliver)
		io->deliver(io, pin, addr, data);
}

/*
 * A level pin that is asserted, unmasked and not waiting for an EOI
 * delivers; remote IRR is set before the callback so that a callback
 * that comes back into the model sees the interrupt in service.
 */
static void service_level(struct ioapic *io, unsigned int pin)
{
	uint64_t *e = &io->redtbl[pin];

	if (!(*e & IOAPIC_LEVEL) || (*e & (IOAPIC_MASKED | IOAPIC_REMOTE_IRR)) ||
	    !(io->lines & (1u << pin)))
		return;
	*e |= IOAPIC_REMOTE_IRR;
	send(io, pin);
}

void ioapic_set_irq(struct ioapic *io, unsigned int pin, bool level)
{
	uint32_t bit;
	bool rise;

	if (pin >= IOAPIC_PINS)
		return;
	bit = 1u << pin;
	rise = level && !(io->lines & bit);
	if (level)
		io->lines |= bit;
	else
		io->lines &= ~bit;

	if (io->redtbl[pin] & IOAPIC_LEVEL) {
		service_level(io, pin);
		return;
	}
	if (!rise)
		return;
	if (io->redtbl[pin] & IOAPIC_MASKED) {
		/* Dropped, not latched: see the top of the file. */
		io->edge_pending |= bit;
		return;
	}
	io->edge_pending &= ~bit;
	send(io, pin);
}

void ioapic_eoi(struct ioapic *io, uint8_t vector)
{
	unsigned int pin;

	for (pin = 0; pin < IOAPIC_PINS; pin++) {
		uint64_t *e = &io->redtbl[pin];

		if ((*e & IOAPIC_VECTOR_MASK) != vector ||
		    !(*e & IOAPIC_LEVEL) || !(*e & IOAPIC_REMOTE_IRR))
			continue;
		*e &= ~IOAPIC_REMOTE_IRR;
		service_level(io, pin);
	}
}

static void write_entry(struct ioapic *io, unsigned int pin, bool high,
			uint32_t val)
{
	uint64_t *e = &io->redtbl[pin];
	uint64_t old = *e, v;

	if (high)
		v = (old & 0xffffffffull) | (uint64_t)val << 32;
	else
		v = (old & ~0xffffffffull) | val;
	v = (v & WRITABLE) | (old & READ_ONLY);
	/* Remote IRR means nothing on an edge pin; clearing it on the
	 * switch to edge is how guests unstick a level pin. */
	if (!(v & IOAPIC_LEVEL))
		v &= ~IOAPIC_REMOTE_IRR;
	*e = v;
	if ((v ^ old) & WRITABLE && io->entry_changed)
		io->entry_changed(io, pin);
	service_level(io, pin);
}

static uint32_t read_reg(struct ioapic *io, uint8_t reg)
{
	switch (reg) {
	case REG_ID:
	case REG_ARB:
		return (uint32_t)(io->id & ID_MASK) << ID_SHIFT;
	case REG_VERSION:
		return IOAPIC_VERSION | (IOAPIC_PINS - 1) << 16;
	}
	if (reg >= REG_REDTBL && reg < REG_REDTBL_END) {
		uint64_t e = io->redtbl[(reg - REG_REDTBL) / 2];

		return (reg & 1) ? (uint32_t)(e >> 32) : (uint32_t)e;
	}
	return 0;
}

static void write_reg(struct ioapic *io, uint8_t reg, uint32_t val)
{
	if (reg == REG_ID)
		io->id = (val >> ID_SHIFT) & ID_MASK;
	else if (reg >= REG_REDTBL && reg < REG_REDTBL_END)
		write_entry(io, (reg - REG_REDTBL) / 2, reg & 1, val);
}

uint32_t ioapic_mmio_read(struct ioapic *io, uint64_t offset)
{
	if (offset == IOAPIC_REGSEL)
		return io->regsel;
	if (offset == IOAPIC_WINDOW)
		return read_reg(io, (uint8_t)io->regsel);
	return 0;
}

void ioapic_mmio_write(struct ioapic *io, uint64_t offset, uint32_t val)
{
	if (offset == IOAPIC_REGSEL)
		io->regsel = val & 0xff;
	else if (offset == IOAPIC_WINDOW)
		write_reg(io, (uint8_t)io->regsel, val);
}
