/* Referee checks of the legacy interrupt and timer hardware beyond the
 * time base: the 8259 pair delivering the PIT through the local APIC's
 * LINT0 (`pic`), channel 2 of the 8254 through port 0x61 (`pit2`) and the
 * I/O APIC's registers (`ioapic`). Each check leaves the hardware as it
 * found it, so the time base (PIT channel 0 -> I/O APIC) keeps running. */
#include "kernel.h"

#define PIC1_CMD 0x20
#define PIC1_DATA 0x21
#define PIC2_CMD 0xa0
#define PIC2_DATA 0xa1
#define OCW2_EOI 0x20
#define OCW3_READ_IRR 0x0a
#define OCW3_READ_ISR 0x0b
#define OCW3_POLL 0x0c

#define LAPIC_LINT0 0x350
#define LVT_MASK (1u << 16)
#define LVT_EXTINT 0x700

#define PIT_CH2 0x42
#define PIT_CMD 0x43
#define PORT_B 0x61
#define PORT_B_GATE2 0x01
#define PORT_B_SPEAKER 0x02
#define PORT_B_OUT2 0x20
#define PIT_COUNTS_PER_TICK 11932 /* 1193182 Hz / PIT_HZ */

#define IOAPIC_PINS 24
#define REDIR_MASK (1u << 16)
#define REDIR_LEVEL (1u << 15)
#define REDIR_REMOTE_IRR (1u << 14)
#define REDIR_LOW (1u << 13)
#define REDIR_PENDING (1u << 12)
#define REDIR_LOGICAL (1u << 11)
/* Bits 0-16 without the two read-only ones. */
#define REDIR_WRITABLE (0x1ffffu & ~(REDIR_PENDING | REDIR_REMOTE_IRR))

/* TSC cycles per time-base tick, averaged over a few ticks; 0 with msg
 * set when the time base is dead. */
static uint64_t tsc_per_tick(char *msg, size_t n)
{
	wait_tick();
	if (!timer_alive()) {
		ksnprintf(msg, n, "no time base (PIT channel 0 via the I/O APIC)");
		return 0;
	}
	uint64_t t0 = rdtsc();
	delay_ticks(3); /* four tick edges */
	return (rdtsc() - t0) / 4;
}

/* Spin (interrupts as they are) until *ctr reaches want, at most cycles. */
static bool spin_until(volatile uint64_t *ctr, uint64_t want, uint64_t cycles)
{
	uint64_t t0 = rdtsc();
	while (*ctr < want)
		if (rdtsc() - t0 > cycles)
			return false;
		else
			cpu_relax();
	return true;
}

/* ---- pic ---- */

static uint8_t pic_reg(uint16_t cmd, uint8_t ocw3)
{
	outb(cmd, ocw3);
	return inb(cmd);
}

static volatile struct {
	bool restored;		/* the I/O APIC has IRQ0 again */
	uint64_t irq0;		/* IRQ0 at the 8259's vector, while routed there */
	uint64_t late;		/* ... and after the 8259 was masked again */
	uint64_t bad_isr;	/* ISR in the handler was not just IRQ0 */
	uint8_t isr_in, isr_out;
	uint64_t isr_kept;	/* ISR not clear after the EOI */
	uint64_t other;		/* another 8259 vector (not spurious 7/15) */
	uint64_t other_vec;
} pic_seen;

static bool pic_check_irq(uint64_t vector)
{
	if (vector < VEC_PIC_BASE || vector >= VEC_PIC_BASE + 16)
		return false;
	if (vector == VEC_PIC_BASE) {
		uint8_t isr = pic_reg(PIC1_CMD, OCW3_READ_ISR);
		if (isr != 0x01) {
			pic_seen.bad_isr++;
			pic_seen.isr_in = isr;
		}
		outb(PIC1_CMD, OCW2_EOI);
		isr = pic_reg(PIC1_CMD, OCW3_READ_ISR);
		outb(PIC1_CMD, OCW3_READ_IRR);
		if (isr) {
			pic_seen.isr_kept++;
			pic_seen.isr_out = isr;
		}
		if (pic_seen.restored) {
			pic_seen.late++;
		} else {
			pic_seen.irq0++;
			timer_irq(); /* the time base, while the 8259 carries it */
		}
		return true;
	}
	if (vector == VEC_PIC_BASE + 7 || vector == VEC_PIC_BASE + 15)
		return true; /* spurious: no EOI */
	pic_seen.other++;
	pic_seen.other_vec = vector;
	if (vector >= VEC_PIC_BASE + 8)
		outb(PIC2_CMD, OCW2_EOI);
	outb(PIC1_CMD, OCW2_EOI);
	return true;
}

/* OCW3 poll with interrupts off: once IRR0 is set, the poll command
 * acknowledges it and reads bit 7 set, level 0 in bits 0-2; after an EOI
 * the ISR is clear (an 8259A keeps the polled level in service until the
 * EOI; KVM's model ends it at once). IRR0 right after the poll is not
 * checked: KVM's PIT re-injects ticks it could not deliver as soon as one
 * is acknowledged, which on a busy host sets IRR0 again at once. */
static bool pic_poll(uint64_t cpt, char *msg, size_t n)
{
	outb(PIC1_CMD, OCW3_READ_IRR);
	uint64_t t0 = rdtsc();
	while (!(inb(PIC1_CMD) & 1))
		if (rdtsc() - t0 > 10 * cpt) {
			ksnprintf(msg, n, "IRR bit 0 not set within 10 ticks "
				  "(interrupts off, IRQ0 unmasked)");
			return false;
		}
	uint8_t p = pic_reg(PIC1_CMD, OCW3_POLL);
	outb(PIC1_CMD, OCW2_EOI);
	uint8_t isr = pic_reg(PIC1_CMD, OCW3_READ_ISR);
	outb(PIC1_CMD, OCW3_READ_IRR);
	if ((p & 0x87) == 0x80 && !isr)
		return true;
	ksnprintf(msg, n, "poll returned 0x%x (want 0x80), then ISR 0x%x after "
		  "EOI (want 0)", p, isr);
	return false;
}

int check_pic(char *msg, size_t n)
{
	uint64_t cpt = tsc_per_tick(msg, n);
	if (!cpt)
		return FAIL;
	int pin = M.isa_pin[0];
	bool ok = false;

	__asm__ volatile("cli");
	uint32_t lint0 = lapic_read(LAPIC_LINT0);
	uint32_t lo = ioapic_read(0x10 + 2 * pin), hi = ioapic_read(0x11 + 2 * pin);
	memset((void *)&pic_seen, 0, sizeof(pic_seen));
	irq_hook = pic_check_irq;
	ioapic_write(0x10 + 2 * pin, lo | REDIR_MASK);
	pic_program(0xff, 0xff);
	uint8_t imr1 = inb(PIC1_DATA), imr2 = inb(PIC2_DATA);
	lapic_write(LAPIC_LINT0, LVT_EXTINT);
	outb(PIC1_DATA, 0xfe);
	uint8_t imr1_on = inb(PIC1_DATA), imr2_on = inb(PIC2_DATA);
	__asm__ volatile("sti");

	/* Ticks through the 8259: the first may be one latched before the
	 * unmask; after it, the masked I/O APIC pin must deliver nothing. */
	uint64_t t_apic = 0, t_pic = 0;
	if (imr1 != 0xff || imr2 != 0xff || imr1_on != 0xfe || imr2_on != 0xff) {
		ksnprintf(msg, n, "IMR read back 0x%x/0x%x after writing 0xff/0xff, "
			  "0x%x/0x%x after 0xfe/0xff", imr1, imr2, imr1_on, imr2_on);
	} else if (!spin_until(&pic_seen.irq0, 1, 10 * cpt)) {
		ksnprintf(msg, n, "no IRQ0 at vector 0x%x within 10 ticks (8259 IRQ0 "
			  "unmasked, LINT0 ExtINT, I/O APIC pin %d masked)",
			  VEC_PIC_BASE, pin);
	} else {
		t_apic = ticks - pic_seen.irq0;
		t_pic = pic_seen.irq0;
		if (!spin_until(&pic_seen.irq0, t_pic + 3, 10 * cpt))
			ksnprintf(msg, n, "%lu IRQ0 at vector 0x%x, then no 3 more "
				  "within 10 ticks", t_pic, VEC_PIC_BASE);
		else
			ok = true;
	}
	__asm__ volatile("cli");
	if (ok) {
		t_apic = ticks - pic_seen.irq0 - t_apic;
		ok = pic_poll(cpt, msg, n);
	}

	/* Put everything back: the 8259 masked, LINT0 as it was, the pin as
	 * it was; then the time base must run through the I/O APIC alone. */
	outb(PIC1_DATA, 0xff);
	outb(PIC2_DATA, 0xff);
	lapic_write(LAPIC_LINT0, lint0);
	pic_seen.restored = true;
	ioapic_write(0x11 + 2 * pin, hi);
	ioapic_write(0x10 + 2 * pin, lo);
	uint32_t lint0_back = lapic_read(LAPIC_LINT0);
	uint32_t lo_back = ioapic_read(0x10 + 2 * pin), hi_back = ioapic_read(0x11 + 2 * pin);
	uint8_t imr1_back = inb(PIC1_DATA), imr2_back = inb(PIC2_DATA);
	uint64_t t0 = ticks;
	__asm__ volatile("sti");
	bool resumed = spin_until(&ticks, t0 + 2, 10 * cpt);
	irq_hook = NULL;

	if (!ok)
		return FAIL;
	if (pic_seen.bad_isr)
		ksnprintf(msg, n, "%lu time(s) ISR read 0x%x in the IRQ0 handler, want 0x01",
			  pic_seen.bad_isr, pic_seen.isr_in);
	else if (pic_seen.isr_kept)
		ksnprintf(msg, n, "%lu time(s) ISR read 0x%x after the EOI, want 0",
			  pic_seen.isr_kept, pic_seen.isr_out);
	else if (pic_seen.other)
		ksnprintf(msg, n, "%lu interrupt(s) at 8259 vector 0x%lx, only IRQ0 "
			  "was unmasked", pic_seen.other, pic_seen.other_vec);
	else if (t_apic)
		ksnprintf(msg, n, "%lu tick(s) at vector 0x%x while I/O APIC pin %d "
			  "was masked", t_apic, VEC_ISA_BASE, pin);
	else if (lint0_back != lint0 || lo_back != lo || hi_back != hi ||
		 imr1_back != 0xff || imr2_back != 0xff)
		ksnprintf(msg, n, "not restored: LINT0 0x%x (was 0x%x), pin %d 0x%x:%x "
			  "(was 0x%x:%x), IMR 0x%x/0x%x", lint0_back, lint0, pin,
			  hi_back, lo_back, hi, lo, imr1_back, imr2_back);
	else if (!resumed)
		ksnprintf(msg, n, "the time base did not resume through I/O APIC pin %d",
			  pin);
	else if (pic_seen.late)
		ksnprintf(msg, n, "%lu IRQ0 at vector 0x%x after the 8259 was masked",
			  pic_seen.late, VEC_PIC_BASE);
	else {
		ksnprintf(msg, n, "%lu PIT ticks at vector 0x%x through 8259 IRQ0 and "
			  "LINT0 ExtINT, ISR 0x01 in the handler and 0 after EOI, "
			  "IMR 0xfe/0xff, poll 0x80; restored", (uint64_t)pic_seen.irq0,
			  VEC_PIC_BASE);
		return PASS;
	}
	return FAIL;
}

/* ---- pit2 ---- */

/* Channel 2's count through the counter latch command. */
static uint16_t pit2_latch(void)
{
	outb(PIT_CMD, 0x80);
	uint8_t lo = inb(PIT_CH2);
	return (uint16_t)(lo | inb(PIT_CH2) << 8);
}

/* Channel 2's status byte through the read-back command (0xe8: latch the
 * status, not the count, of channel 2): OUT, null count, access, mode, BCD. */
static uint8_t pit2_status(void)
{
	outb(PIT_CMD, 0xe8);
	return inb(PIT_CH2);
}

/* Control word for channel 2, lsb then msb, binary, then the count. */
static void pit2_program(uint8_t mode, uint16_t count)
{
	outb(PIT_CMD, (uint8_t)(0xb0 | mode << 1));
	outb(PIT_CH2, (uint8_t)count);
	outb(PIT_CH2, (uint8_t)(count >> 8));
}

static uint64_t tsc_to_counts(uint64_t cycles, uint64_t cpt)
{
	return cycles * PIT_COUNTS_PER_TICK / cpt;
}

/* Mode 2 with the gate low, then a rising gate: the count starts again
 * from the reload value. (Whether a low gate holds the count is only
 * reported: KVM's 8254 keeps counting.) Returns false with msg set. */
static bool pit2_gate(uint8_t keep, uint64_t cpt, uint16_t *held, char *msg, size_t n)
{
	for (int attempt = 0; attempt < 3; attempt++) {
		outb(PORT_B, keep);
		pit2_program(2, 0xffff);
		uint16_t c1 = pit2_latch();
		delay_ticks(1); /* 10 to 20 ms: 11932 to 23864 counts */
		uint16_t c2 = pit2_latch();
		*held = (uint16_t)(c1 - c2);
		uint64_t t0 = rdtsc();
		outb(PORT_B, keep | PORT_B_GATE2);
		uint16_t c = pit2_latch();
		uint64_t dt = tsc_to_counts(rdtsc() - t0, cpt);
		if (dt > 3000)
			continue; /* descheduled in between: cannot tell */
		uint64_t since = 0xffffu - c;
		if (since <= 2 * dt + 200)
			return true;
		ksnprintf(msg, n, "mode 2: count 0x%x right after the gate rose (0x%x "
			  "with the gate low), want a restart from 0xffff (within "
			  "%lu counts)", c, c2, 2 * dt + 200);
		return false;
	}
	ksnprintf(msg, n, "mode 2 gate restart: three tries interrupted");
	return false;
}

/* Mode 0 with the gate high: OUT low once programmed, high when the count
 * has elapsed, not much earlier; the status byte agrees. */
static bool pit2_mode0(uint8_t keep, uint64_t cpt, char *msg, size_t n)
{
	const uint16_t count = 0x8000; /* 27.5 ms */
	outb(PORT_B, keep | PORT_B_GATE2);
	uint64_t t0 = rdtsc();
	pit2_program(0, count);
	uint8_t b = inb(PORT_B), st = pit2_status();
	uint16_t c1 = pit2_latch(), c2 = pit2_latch();
	uint64_t t1 = rdtsc();
	if (tsc_to_counts(t1 - t0, cpt) < count / 2 &&
	    ((b & PORT_B_OUT2) || (st & 0xbf) != 0x30 || c1 > count || c2 >= c1)) {
		ksnprintf(msg, n, "mode 0, count 0x%x: port 0x61 0x%x, status 0x%x "
			  "(want OUT low, 0x30), counts 0x%x then 0x%x", count, b, st,
			  c1, c2);
		return false;
	}
	while (!((b = inb(PORT_B)) & PORT_B_OUT2))
		if (rdtsc() - t0 > 20 * cpt) {
			ksnprintf(msg, n, "mode 0, count 0x%x: OUT2 (port 0x61 bit 5) "
				  "still low after 20 ticks, count 0x%x", count,
				  pit2_latch());
			return false;
		}
	uint64_t took = tsc_to_counts(rdtsc() - t0, cpt);
	st = pit2_status();
	if (took < count / 2 || (st & 0xbf) != 0xb0 ||
	    (b & (PORT_B_GATE2 | PORT_B_SPEAKER)) != PORT_B_GATE2) {
		ksnprintf(msg, n, "mode 0, count 0x%x: OUT2 high after ~0x%lx counts, "
			  "port 0x61 0x%x, status 0x%x (want 0xb0)", count, took, b, st);
		return false;
	}
	return true;
}

int check_pit2(char *msg, size_t n)
{
	uint64_t cpt = tsc_per_tick(msg, n);
	if (!cpt)
		return FAIL;
	uint8_t saved = inb(PORT_B) & 0x0f;
	/* Bits 2-3 (NMI source enables) as they were, speaker off. */
	uint8_t keep = saved & 0x0c;
	uint16_t held = 0;
	bool ok = pit2_gate(keep, cpt, &held, msg, n) && pit2_mode0(keep, cpt, msg, n);
	outb(PORT_B, saved);
	uint8_t back = inb(PORT_B) & 0x0f;
	if (!ok)
		return FAIL;
	if (back != saved) {
		ksnprintf(msg, n, "port 0x61 bits 0-3 read 0x%x after restoring 0x%x",
			  back, saved);
		return FAIL;
	}
	kprintf("# pit2: with the gate low the count %s (%u counts in a tick)\n",
		held ? "moved" : "held", held);
	ksnprintf(msg, n, "gate rise restarts mode 2; mode 0 OUT2 low, then high "
		  "after the count; read-back status 0x30/0xb0; port 0x61 0x%x "
		  "restored", saved);
	return PASS;
}

/* ---- ioapic ---- */

static bool redir_try(int pin, uint32_t lo, uint32_t hi, char *msg, size_t n)
{
	ioapic_write(0x11 + 2 * pin, hi);
	ioapic_write(0x10 + 2 * pin, lo | REDIR_PENDING | REDIR_REMOTE_IRR);
	uint32_t lo_r = ioapic_read(0x10 + 2 * pin), hi_r = ioapic_read(0x11 + 2 * pin);
	if ((lo_r & 0x1ffff) == lo && (hi_r & 0xff000000) == hi)
		return true;
	ksnprintf(msg, n, "pin %d: wrote 0x%x:%x (and the read-only bits 12, 14), "
		  "read 0x%x:%x", pin, hi, lo | REDIR_PENDING | REDIR_REMOTE_IRR,
		  hi_r, lo_r);
	return false;
}

/* Level-triggered end to end: COM1's THR-empty interrupt holds ISA IRQ4
 * high while IER asks for it. Through the pin set level triggered the
 * handler must see remote IRR set; an EOI with the line still high must
 * bring the interrupt again; once the line is low (IER 0, in the second
 * handler) the interrupts stop and remote IRR reads clear. (How many
 * arrive in between is not checked: the KVM of the build machines shows
 * the vector pending again in the local APIC's IRR inside the first
 * handler, so a third may come.) */
#define COM1_IER (COM1 + 1)
#define COM1_MCR (COM1 + 4)
#define IER_THRE 0x02
#define MCR_OUT2 0x08
#define LAPIC_EOI 0xb0
#define VEC_LEVEL (VEC_ISA_BASE + 13) /* ISA IRQ13's, routed nowhere */
#define LEVEL_STORM 8

static volatile struct {
	int pin;
	uint64_t irqs;
	uint32_t first; /* the entry in the first handler, before its EOI */
} lvl;

static bool level_irq(uint64_t vector)
{
	if (vector != VEC_LEVEL)
		return false;
	uint64_t k = lvl.irqs++;
	uint32_t reg = 0x10 + 2 * (uint32_t)lvl.pin;
	if (k == 0)
		lvl.first = ioapic_read(reg);
	if (k >= 1)
		outb(COM1_IER, 0); /* the line goes low */
	if (k + 1 >= LEVEL_STORM)
		ioapic_write(reg, ioapic_read(reg) | REDIR_MASK);
	lapic_write(LAPIC_EOI, 0);
	return true;
}

static bool ioapic_level(uint64_t cpt, char *msg, size_t n)
{
	int pin = M.isa_pin[4];
	uint32_t reg = 0x10 + 2 * (uint32_t)pin;
	__asm__ volatile("cli");
	uint32_t lo = ioapic_read(reg), hi = ioapic_read(reg + 1);
	uint8_t ier = inb(COM1_IER), mcr = inb(COM1_MCR);
	memset((void *)&lvl, 0, sizeof(lvl));
	lvl.pin = pin;
	irq_hook = level_irq;
	ioapic_write(reg, REDIR_MASK | REDIR_LEVEL | VEC_LEVEL);
	ioapic_write(reg + 1, lapic_id() << 24);
	outb(COM1_MCR, mcr | MCR_OUT2);
	outb(COM1_IER, IER_THRE); /* THR is empty: IRQ4 rises */
	uint32_t masked = ioapic_read(reg);
	ioapic_write(reg, REDIR_LEVEL | VEC_LEVEL);
	__asm__ volatile("sti");
	spin_until(&lvl.irqs, 2, 10 * cpt);
	uint64_t t0 = ticks;
	spin_until(&ticks, t0 + 2, 10 * cpt);
	uint64_t settled = lvl.irqs;
	spin_until(&ticks, t0 + 4, 10 * cpt); /* room for a wrong one more */
	__asm__ volatile("cli");
	uint64_t total = lvl.irqs;
	uint32_t last = ioapic_read(reg);
	outb(COM1_IER, ier);
	outb(COM1_MCR, mcr);
	ioapic_write(reg, lo | REDIR_MASK);
	ioapic_write(reg + 1, hi);
	ioapic_write(reg, lo);
	irq_hook = NULL;
	__asm__ volatile("sti");

	if (masked & REDIR_REMOTE_IRR)
		ksnprintf(msg, n, "level: pin %d masked with the line high reads 0x%x "
			  "(remote IRR set, nothing was delivered)", pin, masked);
	else if (total < 2)
		ksnprintf(msg, n, "level: %lu interrupt(s) at vector 0x%x, want a second "
			  "after an EOI with COM1's THRE interrupt still up", total,
			  VEC_LEVEL);
	else if (total >= LEVEL_STORM)
		ksnprintf(msg, n, "level: %lu interrupts at vector 0x%x, going on after "
			  "the line went low until the pin was masked", total, VEC_LEVEL);
	else if (total != settled)
		ksnprintf(msg, n, "level: %lu interrupts at vector 0x%x, then %lu two "
			  "ticks after the line went low", settled, VEC_LEVEL, total);
	else if (!(lvl.first & REDIR_REMOTE_IRR) || (last & REDIR_REMOTE_IRR))
		ksnprintf(msg, n, "level: pin %d read 0x%x in the handler (want remote "
			  "IRR set), 0x%x at the end (want clear)", pin, lvl.first, last);
	else
		return true;
	return false;
}

int check_ioapic(char *msg, size_t n)
{
	uint64_t cpt = tsc_per_tick(msg, n);
	if (!cpt)
		return FAIL;
	uint32_t id = ioapic_read(0), ver = ioapic_read(1);
	uint32_t v = ver & 0xff, pins = ((ver >> 16) & 0xff) + 1;
	if (v < 0x11 || v > 0x20 || pins != IOAPIC_PINS) {
		ksnprintf(msg, n, "version register 0x%x: version 0x%x, %u pins (want "
			  "0x11-0x20, %d)", ver, v, pins, IOAPIC_PINS);
		return FAIL;
	}
	uint32_t apic_id = (id >> 24) & 0xf;
	if (M.mp.found && M.mp.have_ioapic && M.mp.ioapic_id != apic_id) {
		ksnprintf(msg, n, "ID %u, the MP table says %u", apic_id, M.mp.ioapic_id);
		return FAIL;
	}
	/* IOREGSEL reads back. */
	mmio_write32(M.ioapic_addr, 0x3f);
	uint32_t sel = mmio_read32(M.ioapic_addr) & 0xff;
	/* The ID's 4 bits are writable. */
	ioapic_write(0, (apic_id ^ 0xa) << 24);
	uint32_t id2 = (ioapic_read(0) >> 24) & 0xf;
	ioapic_write(0, id);
	uint32_t id3 = ioapic_read(0);
	if (sel != 0x3f || id2 != (apic_id ^ 0xa) || id3 != id) {
		ksnprintf(msg, n, "IOREGSEL read 0x%x (wrote 0x3f); ID %u after writing "
			  "%u, 0x%x after restoring 0x%x", sel, id2, apic_id ^ 0xa, id3, id);
		return FAIL;
	}

	/* A pin nothing uses: every writable field both ways, the read-only
	 * delivery status and remote IRR staying 0 (masked, nothing pending). */
	const int pin = IOAPIC_PINS - 1;
	uint32_t lo = ioapic_read(0x10 + 2 * pin), hi = ioapic_read(0x11 + 2 * pin);
	bool ok = redir_try(pin, REDIR_MASK | REDIR_LEVEL | REDIR_LOW | REDIR_LOGICAL |
			    0x100 | 0x5a, 0x0a000000, msg, n) &&
		  redir_try(pin, REDIR_MASK | 0x0a5, 0x05000000, msg, n) &&
		  redir_try(pin, REDIR_MASK | REDIR_LEVEL | 0x700 | 0x33, 0x0f000000,
			    msg, n);
	ioapic_write(0x10 + 2 * pin, lo | REDIR_MASK);
	ioapic_write(0x11 + 2 * pin, hi);
	ioapic_write(0x10 + 2 * pin, lo);
	uint32_t lo_b = ioapic_read(0x10 + 2 * pin), hi_b = ioapic_read(0x11 + 2 * pin);
	if (!ok)
		return FAIL;
	if ((lo_b & REDIR_WRITABLE) != (lo & REDIR_WRITABLE) || hi_b != hi) {
		ksnprintf(msg, n, "pin %d read 0x%x:%x after restoring 0x%x:%x", pin,
			  hi_b, lo_b, hi, lo);
		return FAIL;
	}
	if (!ioapic_level(cpt, msg, n))
		return FAIL;
	ksnprintf(msg, n, "version 0x%x, %u pins, ID %u%s; ID, IOREGSEL and pin %d's "
		  "entry read back, bits 12 and 14 read-only; level IRQ4 (COM1 THRE) "
		  "on pin %d: remote IRR, sent again while high; restored", v, pins,
		  apic_id, M.mp.found && M.mp.have_ioapic ? " (MP table)" : "", pin,
		  M.isa_pin[4]);
	return PASS;
}
