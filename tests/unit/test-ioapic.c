// SPDX-License-Identifier: GPL-2.0
/*
 * The I/O APIC register model as a guest programs it through IOREGSEL and
 * IOWIN, the interrupts it sends as MSI messages, and what it tells its
 * owner about redirection entries.
 */
#include <string.h>

#include "lkvm/ioapic.h"
#include "tap.h"

#define LOW(n) (0x10 + 2 * (n))
#define HIGH(n) (0x11 + 2 * (n))

#define DM_FIXED 0
#define DM_LOWEST 1
#define DM_NMI 4
#define DM_EXTINT 7

struct sent {
	unsigned int pin;
	uint64_t addr;
	uint32_t data;
};

static struct sent sent[64];
static unsigned int nsent;
static unsigned int changed[IOAPIC_PINS];
static unsigned int nchanged;
static int bad_callback;	/* a callback broke an invariant */

static void rec_deliver(struct ioapic *io, unsigned int pin, uint64_t addr,
			uint32_t data)
{
	uint64_t want_addr;
	uint32_t want_data;

	if (pin >= IOAPIC_PINS) {
		bad_callback++;
		return;
	}
	/* The message is the entry's, as it stands when sent. */
	ioapic_entry_msi(io->redtbl[pin], &want_addr, &want_data);
	if (addr != want_addr || data != want_data)
		bad_callback++;
	if (io->redtbl[pin] & IOAPIC_MASKED)
		bad_callback++;
	/* A level interrupt is in service (remote IRR) once it is sent,
	 * and only an asserted line sends one. */
	if ((io->redtbl[pin] & IOAPIC_LEVEL) &&
	    (!(io->redtbl[pin] & IOAPIC_REMOTE_IRR) ||
	     !(io->lines & (1u << pin))))
		bad_callback++;
	if (nsent < sizeof(sent) / sizeof(sent[0]))
		sent[nsent] = (struct sent){ pin, addr, data };
	nsent++;
}

static void rec_changed(struct ioapic *io, unsigned int pin)
{
	(void)io;
	if (pin >= IOAPIC_PINS) {
		bad_callback++;
		return;
	}
	changed[pin]++;
	nchanged++;
}

static void forget(void)
{
	nsent = 0;
	nchanged = 0;
	memset(changed, 0, sizeof(changed));
}

static void setup(struct ioapic *io, uint8_t id)
{
	memset(io, 0, sizeof(*io));
	io->deliver = rec_deliver;
	io->entry_changed = rec_changed;
	ioapic_reset(io, id);
	bad_callback = 0;
	forget();
}

static uint32_t rd(struct ioapic *io, uint32_t reg)
{
	ioapic_mmio_write(io, IOAPIC_REGSEL, reg);
	return ioapic_mmio_read(io, IOAPIC_WINDOW);
}

static void wr(struct ioapic *io, uint32_t reg, uint32_t val)
{
	ioapic_mmio_write(io, IOAPIC_REGSEL, reg);
	ioapic_mmio_write(io, IOAPIC_WINDOW, val);
}

static uint64_t entry(uint8_t vector, unsigned int dm, uint8_t dest,
		      uint64_t flags)
{
	return vector | (uint64_t)dm << IOAPIC_DM_SHIFT |
	       (uint64_t)dest << IOAPIC_DEST_SHIFT | flags;
}

/* As Linux writes an entry: high half first, then low. */
static void program(struct ioapic *io, unsigned int pin, uint64_t e)
{
	wr(io, HIGH(pin), (uint32_t)(e >> 32));
	wr(io, LOW(pin), (uint32_t)e);
}

static uint64_t read_entry(struct ioapic *io, unsigned int pin)
{
	return (uint64_t)rd(io, HIGH(pin)) << 32 | rd(io, LOW(pin));
}

static void test_id_version(void)
{
	struct ioapic io;

	setup(&io, 5);
	CHECK(rd(&io, 0x00) == 5u << 24, "ID register holds the reset ID in bits 24-27");
	CHECK(rd(&io, 0x01) == 0x00170011, "version 0x11 with 24 entries (max index 23)");
	CHECK(rd(&io, 0x02) == 5u << 24, "arbitration ID reads as the ID");
	wr(&io, 0x00, 0xffffffff);
	CHECK(rd(&io, 0x00) == 0x0f000000, "only ID bits 24-27 are writable");
	wr(&io, 0x00, 0x03000000);
	CHECK(rd(&io, 0x00) == 0x03000000 && rd(&io, 0x02) == 0x03000000,
	      "a new ID shows in ID and arbitration registers");
	wr(&io, 0x01, 0);
	wr(&io, 0x02, 0);
	CHECK(rd(&io, 0x01) == 0x00170011 && rd(&io, 0x02) == 0x03000000,
	      "version and arbitration registers ignore writes");
	setup(&io, 0xff);
	CHECK(rd(&io, 0x00) == 0x0f000000, "a reset ID wider than 4 bits is cut to 4");

	ioapic_mmio_write(&io, IOAPIC_REGSEL, 0xabcdef01);
	CHECK(ioapic_mmio_read(&io, IOAPIC_REGSEL) == 0x01,
	      "IOREGSEL keeps only its low 8 bits");
	CHECK(ioapic_mmio_read(&io, IOAPIC_WINDOW) == 0x00170011,
	      "IOREGSEL's high bits do not change the register selected");
}

static void test_reset_state(void)
{
	struct ioapic io;
	unsigned int pin, ok = 1;

	setup(&io, 0);
	for (pin = 0; pin < IOAPIC_PINS; pin++)
		ok &= read_entry(&io, pin) == IOAPIC_MASKED;
	CHECK(ok, "after reset every entry is masked, edge, vector 0, dest 0");
	program(&io, 4, entry(0x44, DM_FIXED, 1, IOAPIC_LEVEL));
	ioapic_set_irq(&io, 4, true);
	ioapic_reset(&io, 0);
	CHECK(read_entry(&io, 4) == IOAPIC_MASKED && io.lines == 0,
	      "reset forgets entries, remote IRR and input levels");
}

static void test_entry_rw(void)
{
	struct ioapic io;
	uint64_t e;
	unsigned int pin, ok = 1;

	setup(&io, 0);
	wr(&io, LOW(7), 0xffffffff);
	wr(&io, HIGH(7), 0xffffffff);
	e = read_entry(&io, 7);
	CHECK(e == 0xffffffffffffafffull,
	      "all-ones reads back all but delivery status and remote IRR "
	      "(reserved bits are kept, as KVM keeps them)");
	for (pin = 0; pin < IOAPIC_PINS; pin++)
		ok &= pin == 7 || read_entry(&io, pin) == IOAPIC_MASKED;
	CHECK(ok, "writing one entry leaves the others alone");

	program(&io, 23, entry(0x9a, DM_LOWEST, 0xc3,
			       IOAPIC_DEST_LOGICAL | IOAPIC_POLARITY_LOW));
	CHECK(read_entry(&io, 23) == entry(0x9a, DM_LOWEST, 0xc3,
					   IOAPIC_DEST_LOGICAL |
					   IOAPIC_POLARITY_LOW),
	      "the last entry (23) reads back as written");
	CHECK(rd(&io, LOW(IOAPIC_PINS)) == 0 && rd(&io, HIGH(IOAPIC_PINS)) == 0,
	      "no entry 24: registers 0x40/0x41 read 0");

	/* Remote IRR set by a delivery survives a write that clears it. */
	program(&io, 2, entry(0x52, DM_FIXED, 0, IOAPIC_LEVEL));
	ioapic_set_irq(&io, 2, true);
	CHECK(rd(&io, LOW(2)) & IOAPIC_REMOTE_IRR, "a level delivery sets remote IRR");
	wr(&io, LOW(2), 0x52 | IOAPIC_LEVEL);
	CHECK(rd(&io, LOW(2)) & IOAPIC_REMOTE_IRR,
	      "writing remote IRR as 0 leaves it set");
	wr(&io, LOW(3), 0x53 | IOAPIC_LEVEL | IOAPIC_REMOTE_IRR | IOAPIC_DELIVS |
			IOAPIC_MASKED);
	CHECK(rd(&io, LOW(3)) == (0x53 | IOAPIC_LEVEL | IOAPIC_MASKED),
	      "writing remote IRR and delivery status as 1 leaves them clear");
	wr(&io, HIGH(2), 0x12000000);
	CHECK(read_entry(&io, 2) == entry(0x52, DM_FIXED, 0x12,
					  IOAPIC_LEVEL | IOAPIC_REMOTE_IRR),
	      "writing the high half keeps the low half and remote IRR");
}

static void test_unknown(void)
{
	struct ioapic io;
	static const uint32_t regs[] = { 0x03, 0x0f, 0x40, 0x41, 0x80, 0xff };
	static const uint64_t offs[] = { 0x01, 0x04, 0x08, 0x0c, 0x14, 0x20,
					 0x40, 0xfff, 0x1000, ~0ull };
	unsigned int i, pin, ok = 1, ok2 = 1;

	setup(&io, 9);
	for (i = 0; i < sizeof(regs) / sizeof(regs[0]); i++) {
		wr(&io, regs[i], 0xffffffff);
		ok &= rd(&io, regs[i]) == 0;
	}
	CHECK(ok, "unknown registers read 0 after a write");
	ioapic_mmio_write(&io, IOAPIC_REGSEL, 0x01);
	for (i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		ioapic_mmio_write(&io, offs[i], 0x10);
		ok2 &= ioapic_mmio_read(&io, offs[i]) == 0;
	}
	CHECK(ok2, "offsets other than IOREGSEL and IOWIN read 0");
	CHECK(ioapic_mmio_read(&io, IOAPIC_REGSEL) == 0x01,
	      "writes at other offsets do not touch IOREGSEL");
	ok = rd(&io, 0x00) == 9u << 24;
	for (pin = 0; pin < IOAPIC_PINS; pin++)
		ok &= read_entry(&io, pin) == IOAPIC_MASKED;
	CHECK(ok && nchanged == 0 && nsent == 0,
	      "writes to unknown registers and offsets change nothing");
}

static void test_edge(void)
{
	struct ioapic io;

	setup(&io, 0);
	program(&io, 3, entry(0x33, DM_FIXED, 1, 0));
	forget();
	ioapic_set_irq(&io, 3, true);
	CHECK(nsent == 1 && sent[0].pin == 3 && (sent[0].data & 0xff) == 0x33,
	      "edge pin: a rise delivers its vector");
	ioapic_set_irq(&io, 3, true);
	CHECK(nsent == 1, "edge pin: staying high delivers nothing more");
	ioapic_set_irq(&io, 3, false);
	CHECK(nsent == 1, "edge pin: a fall delivers nothing");
	ioapic_set_irq(&io, 3, true);
	CHECK(nsent == 2, "edge pin: the next rise delivers again");
	CHECK(!(rd(&io, LOW(3)) & IOAPIC_REMOTE_IRR), "edge pin: no remote IRR");

	ioapic_set_irq(&io, 3, false);
	wr(&io, LOW(3), 0x33 | IOAPIC_MASKED);
	ioapic_set_irq(&io, 3, true);
	CHECK(nsent == 2 && (io.edge_pending & (1u << 3)),
	      "masked edge pin: a rise is dropped (and recorded)");
	wr(&io, LOW(3), 0x33);
	CHECK(nsent == 2, "unmasking does not fire the dropped edge");
	ioapic_set_irq(&io, 3, false);
	ioapic_set_irq(&io, 3, true);
	CHECK(nsent == 3 && !(io.edge_pending & (1u << 3)),
	      "the next rise after unmasking delivers");
	ioapic_eoi(&io, 0x33);
	CHECK(nsent == 3, "EOI of an edge vector delivers nothing");
}

static void test_level(void)
{
	struct ioapic io;

	setup(&io, 0);
	program(&io, 9, entry(0x49, DM_FIXED, 0, IOAPIC_LEVEL));
	program(&io, 10, entry(0x4a, DM_FIXED, 0, IOAPIC_LEVEL));
	forget();
	ioapic_set_irq(&io, 9, true);
	CHECK(nsent == 1 && sent[0].pin == 9 && (sent[0].data & 0xff) == 0x49,
	      "level pin: asserting delivers");
	CHECK(rd(&io, LOW(9)) & IOAPIC_REMOTE_IRR, "level pin: remote IRR set");
	ioapic_set_irq(&io, 9, true);
	ioapic_set_irq(&io, 9, false);
	ioapic_set_irq(&io, 9, true);
	CHECK(nsent == 1, "level pin: remote IRR blocks delivery until EOI");
	ioapic_eoi(&io, 0x4a);
	ioapic_eoi(&io, 0x00);
	CHECK(nsent == 1 && (rd(&io, LOW(9)) & IOAPIC_REMOTE_IRR),
	      "EOI of an unrelated vector changes nothing");
	ioapic_eoi(&io, 0x49);
	CHECK(nsent == 2 && sent[1].pin == 9 &&
	      (rd(&io, LOW(9)) & IOAPIC_REMOTE_IRR),
	      "EOI while still asserted delivers again");
	ioapic_set_irq(&io, 9, false);
	CHECK(rd(&io, LOW(9)) & IOAPIC_REMOTE_IRR,
	      "lowering the line keeps remote IRR until EOI");
	ioapic_eoi(&io, 0x49);
	CHECK(nsent == 2 && !(rd(&io, LOW(9)) & IOAPIC_REMOTE_IRR),
	      "EOI after the line fell clears remote IRR, delivers nothing");
	ioapic_set_irq(&io, 9, true);
	CHECK(nsent == 3, "the next assertion delivers");

	/* Two pins sharing a vector: one EOI serves both. */
	program(&io, 10, entry(0x49, DM_FIXED, 0, IOAPIC_LEVEL));
	ioapic_set_irq(&io, 10, true);
	ioapic_set_irq(&io, 9, false);
	forget();
	ioapic_eoi(&io, 0x49);
	CHECK(nsent == 1 && sent[0].pin == 10 &&
	      !(rd(&io, LOW(9)) & IOAPIC_REMOTE_IRR) &&
	      (rd(&io, LOW(10)) & IOAPIC_REMOTE_IRR),
	      "EOI clears every pin with the vector, re-delivers the asserted one");
}

static void test_unmask(void)
{
	struct ioapic io;

	setup(&io, 0);
	program(&io, 11, entry(0x5b, DM_FIXED, 2, IOAPIC_LEVEL | IOAPIC_MASKED));
	ioapic_set_irq(&io, 11, true);
	CHECK(nsent == 0, "masked level pin: asserting delivers nothing");
	wr(&io, LOW(11), 0x5b | IOAPIC_LEVEL);
	CHECK(nsent == 1 && sent[0].pin == 11 &&
	      (rd(&io, LOW(11)) & IOAPIC_REMOTE_IRR),
	      "unmasking an asserted level pin delivers at once");
	wr(&io, LOW(11), 0x5b | IOAPIC_LEVEL | IOAPIC_MASKED);
	wr(&io, LOW(11), 0x5b | IOAPIC_LEVEL);
	CHECK(nsent == 1, "re-unmasking while remote IRR is set delivers nothing");
	ioapic_set_irq(&io, 11, false);
	ioapic_eoi(&io, 0x5b);
	wr(&io, LOW(11), 0x5b | IOAPIC_LEVEL | IOAPIC_MASKED);
	wr(&io, LOW(11), 0x5b | IOAPIC_LEVEL);
	CHECK(nsent == 1, "unmasking a level pin whose line is low delivers nothing");

	/* Linux's way to clear a stuck remote IRR: mask, edge, level. */
	ioapic_set_irq(&io, 11, true);
	CHECK(nsent == 2 && (rd(&io, LOW(11)) & IOAPIC_REMOTE_IRR), "delivered");
	wr(&io, LOW(11), 0x5b | IOAPIC_MASKED);
	CHECK(!(rd(&io, LOW(11)) & IOAPIC_REMOTE_IRR),
	      "switching to edge clears remote IRR");
	wr(&io, LOW(11), 0x5b | IOAPIC_LEVEL);
	CHECK(nsent == 3, "back to level, unmasked and asserted: delivers");

	/* Switching an asserted unmasked edge pin to level delivers. */
	program(&io, 12, entry(0x5c, DM_FIXED, 0, 0));
	ioapic_set_irq(&io, 12, true);
	CHECK(nsent == 4, "edge rise");
	wr(&io, LOW(12), 0x5c | IOAPIC_LEVEL);
	CHECK(nsent == 5 && sent[4].pin == 12 && (sent[4].data & (1u << 15)),
	      "an asserted pin switched to level delivers a level message");
}

static void test_msi(void)
{
	uint64_t addr;
	uint32_t data;
	struct ioapic io;

	ioapic_entry_msi(entry(0x41, DM_FIXED, 0x03, 0), &addr, &data);
	CHECK(addr == 0xfee03000 && data == 0x4041,
	      "MSI: physical destination 3, fixed, edge");
	ioapic_entry_msi(entry(0x41, DM_FIXED, 0xff, 0), &addr, &data);
	CHECK(addr == 0xfeeff000, "MSI: destination 0xff (broadcast) in bits 12-19");
	ioapic_entry_msi(entry(0x62, DM_LOWEST, 0x0f, IOAPIC_DEST_LOGICAL |
			       IOAPIC_LEVEL), &addr, &data);
	CHECK(addr == 0xfee0f004 && data == (0x62 | 1u << 8 | 1u << 14 | 1u << 15),
	      "MSI: logical destination, lowest priority, level");
	ioapic_entry_msi(entry(0x00, DM_NMI, 0x01, 0), &addr, &data);
	CHECK(addr == 0xfee01000 && data == (4u << 8 | 1u << 14), "MSI: NMI");
	ioapic_entry_msi(entry(0x20, DM_EXTINT, 0x00, 0), &addr, &data);
	CHECK(addr == 0xfee00000 && data == (0x20 | 7u << 8 | 1u << 14),
	      "MSI: ExtINT");
	ioapic_entry_msi(entry(0x20, 2, 0, 0), &addr, &data);
	CHECK(((data >> 8) & 7) == 2, "MSI: SMI passes in the delivery mode field");
	ioapic_entry_msi(entry(0x20, 5, 0, 0), &addr, &data);
	CHECK(((data >> 8) & 7) == 5, "MSI: INIT passes in the delivery mode field");
	ioapic_entry_msi(~0ull, &addr, &data);
	CHECK(addr == 0xfeeff004 && data == 0xc7ff,
	      "MSI: an all-ones entry sets no bit outside the message fields");
	ioapic_entry_msi(entry(0x41, DM_FIXED, 0x03, IOAPIC_POLARITY_LOW |
			       IOAPIC_MASKED), &addr, &data);
	CHECK(addr == 0xfee03000 && data == 0x4041,
	      "MSI: polarity and mask are not part of the message");

	setup(&io, 0);
	program(&io, 6, entry(0x76, DM_LOWEST, 0x0c, IOAPIC_DEST_LOGICAL));
	ioapic_set_irq(&io, 6, true);
	CHECK(nsent == 1 && sent[0].addr == 0xfee0c004 &&
	      sent[0].data == (0x76 | 1u << 8 | 1u << 14),
	      "a delivery carries the entry's MSI message");
}

static void test_entry_changed(void)
{
	struct ioapic io;

	setup(&io, 0);
	wr(&io, LOW(5), (uint32_t)IOAPIC_MASKED);
	wr(&io, HIGH(5), 0);
	CHECK(nchanged == 0, "rewriting the same value reports nothing");
	wr(&io, LOW(5), 0x65 | IOAPIC_MASKED);
	CHECK(nchanged == 1 && changed[5] == 1, "a vector change is reported for its pin");
	wr(&io, HIGH(5), 0x01000000);
	CHECK(nchanged == 2 && changed[5] == 2, "a destination change is reported");
	wr(&io, HIGH(5), 0x01000000);
	CHECK(nchanged == 2, "rewriting the same destination reports nothing");
	wr(&io, HIGH(5), 0x01fe0000);
	CHECK(nchanged == 3 && rd(&io, HIGH(5)) == 0x01fe0000,
	      "reserved bits (extended destination ID) read back, reported");
	wr(&io, HIGH(5), 0x01000000);
	wr(&io, LOW(5), 0x65 | IOAPIC_MASKED | IOAPIC_DELIVS | IOAPIC_REMOTE_IRR);
	CHECK(nchanged == 4, "read-only bits written are not a change");
	wr(&io, LOW(5), 0x65 | IOAPIC_LEVEL);
	CHECK(nchanged == 5, "mask and trigger changes are reported");
	ioapic_set_irq(&io, 5, true);
	CHECK(nsent == 1 && nchanged == 5, "remote IRR set by delivery is not reported");
	ioapic_eoi(&io, 0x65);
	ioapic_set_irq(&io, 5, false);
	ioapic_eoi(&io, 0x65);
	CHECK(nchanged == 5, "remote IRR cleared by EOI is not reported");
	wr(&io, LOW(5), 0x65 | IOAPIC_LEVEL | IOAPIC_POLARITY_LOW);
	CHECK(nchanged == 6, "a polarity change is reported");
	wr(&io, LOW(5), 0x65 | 7u << 8 | IOAPIC_LEVEL | IOAPIC_POLARITY_LOW |
			IOAPIC_DEST_LOGICAL);
	CHECK(nchanged == 7 && changed[5] == 7,
	      "delivery and destination mode changes are reported");
	wr(&io, 0x00, 0x05000000);
	wr(&io, 0x03, 0xffffffff);
	ioapic_set_irq(&io, 0, true);
	CHECK(nchanged == 7, "ID, unknown registers and input lines are not entry changes");
}

static void test_bad_pins(void)
{
	struct ioapic io;

	setup(&io, 0);
	wr(&io, LOW(0), 0x30);
	ioapic_set_irq(&io, IOAPIC_PINS, true);
	ioapic_set_irq(&io, 31, true);
	ioapic_set_irq(&io, 32, true);
	ioapic_set_irq(&io, ~0u, true);
	CHECK(io.lines == 0 && nsent == 0, "pins 24 and up are ignored");
}

/* Fuzz: random accesses, then invariants a guest could observe. */
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static bool pending_lost(struct ioapic *io)
{
	unsigned int pin;

	for (pin = 0; pin < IOAPIC_PINS; pin++) {
		uint64_t e = io->redtbl[pin];

		if ((e & IOAPIC_LEVEL) && !(e & IOAPIC_MASKED) &&
		    !(e & IOAPIC_REMOTE_IRR) && (io->lines & (1u << pin)))
			return true;
	}
	return false;
}

static void test_random(void)
{
	struct ioapic io;
	uint64_t before[IOAPIC_PINS];
	unsigned int i, k, pin, bad_state = 0, bad_change = 0, bad_read = 0;
	unsigned int lost = 0, level_sent = 0, edge_sent = 0;
	const uint64_t allowed = ~IOAPIC_DELIVS;

	setup(&io, 0);
	for (i = 0; i < 200000; i++) {
		uint64_t r = next();
		uint32_t val = (uint32_t)next();

		memcpy(before, io.redtbl, sizeof(before));
		forget();
		switch (r % 8) {
		case 0: case 1:		/* an entry or known register */
			wr(&io, (r >> 8) % 0x44, val);
			break;
		case 2:			/* any register */
			wr(&io, (uint32_t)(r >> 8), val);
			break;
		case 3:			/* any offset */
			ioapic_mmio_write(&io, (r >> 8) & 0xfff, val);
			if (ioapic_mmio_read(&io, (r >> 20) & 0xfff) &&
			    ((r >> 20) & 0xfff) != IOAPIC_REGSEL &&
			    ((r >> 20) & 0xfff) != IOAPIC_WINDOW)
				bad_read++;
			break;
		case 4: case 5:
			ioapic_set_irq(&io, (r >> 8) % 40, (r >> 16) & 1);
			break;
		case 6:
			ioapic_eoi(&io, (uint8_t)(val & 1 ? val >> 8 :
						  io.redtbl[(r >> 8) % 24]));
			break;
		case 7:
			ioapic_set_irq(&io, (uint32_t)(r >> 8), true);
			break;
		}
		if (io.regsel > 0xff || io.id > 0xf || io.lines >> IOAPIC_PINS)
			bad_state++;
		for (pin = 0; pin < IOAPIC_PINS; pin++) {
			uint64_t e = io.redtbl[pin];
			bool diff = (e ^ before[pin]) & ~IOAPIC_REMOTE_IRR;

			if (e & ~allowed)
				bad_state++;
			if ((e & IOAPIC_REMOTE_IRR) && !(e & IOAPIC_LEVEL))
				bad_state++;
			if (changed[pin] != (diff ? 1u : 0u))
				bad_change++;
		}
		if (rd(&io, 0x01) != 0x00170011)
			bad_read++;
		lost += pending_lost(&io);
		for (k = 0; k < nsent && k < 64; k++) {
			if (io.redtbl[sent[k].pin] & IOAPIC_LEVEL)
				level_sent++;
			else
				edge_sent++;
		}
	}
	CHECK(level_sent > 1000 && edge_sent > 1000,
	      "random accesses deliver both edge and level interrupts");
	CHECK(bad_callback == 0,
	      "random accesses: every delivery is the entry's message, unmasked, "
	      "level ones with remote IRR set and the line up");
	CHECK(bad_state == 0,
	      "random accesses: state stays in range, delivery status clear, "
	      "remote IRR only on level pins");
	CHECK(bad_change == 0,
	      "random accesses: entry_changed exactly when a writable bit changed");
	CHECK(bad_read == 0, "random accesses: other offsets read 0, version intact");
	CHECK(lost == 0,
	      "random accesses: no level pin is left asserted, unmasked and "
	      "undelivered");
}

int main(void)
{
	test_id_version();
	test_reset_state();
	test_entry_rw();
	test_unknown();
	test_edge();
	test_level();
	test_unmask();
	test_msi();
	test_entry_changed();
	test_bad_pins();
	test_random();
	return tap_done();
}
