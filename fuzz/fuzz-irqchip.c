// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer harness for the 8259 pair (hw/i8259.c) and the I/O APIC
 * (hw/ioapic.c), the interrupt controllers lkvm runs on KVM's split
 * irqchip. The input is a stream of six-byte operations: what a guest
 * does (port and register accesses of any width of value, EOIs, the
 * CPU's acknowledge) and what devices do (lines up and down). A finding
 * is a sanitizer report or a broken promise:
 * - the 8259s' INTR callback reports every change of their output, and
 *   an acknowledge returns a vector of one of the two chips' bases;
 * - the I/O APIC delivers only for a pin below 24 that is unmasked, with
 *   the message its entry says, a level pin only while its line is up;
 *   and after each operation no level pin is up, unmasked, remote IRR
 *   clear and yet undelivered.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lkvm/i8259.h"
#include "lkvm/ioapic.h"

static bool intr_level;

static void on_intr(struct i8259 *p, bool level)
{
	if (level == intr_level || level != p->output)
		abort();	/* not a change, or not what it says */
	intr_level = level;
}

static void on_deliver(struct ioapic *io, unsigned int pin, uint64_t addr,
		       uint32_t data)
{
	uint64_t a;
	uint32_t d;

	if (pin >= IOAPIC_PINS || (io->redtbl[pin] & IOAPIC_MASKED))
		abort();
	if ((io->redtbl[pin] & IOAPIC_LEVEL) && !(io->lines & 1u << pin))
		abort();
	ioapic_entry_msi(io->redtbl[pin], &a, &d);
	if (a != addr || d != data)
		abort();
}

static void on_changed(struct ioapic *io, unsigned int pin)
{
	(void)io;
	if (pin >= IOAPIC_PINS)
		abort();
}

static void check_ioapic(const struct ioapic *io)
{
	for (unsigned int pin = 0; pin < IOAPIC_PINS; pin++) {
		uint64_t e = io->redtbl[pin];

		if ((e & IOAPIC_LEVEL) && !(e & IOAPIC_MASKED) &&
		    (io->lines & 1u << pin) && !(e & IOAPIC_REMOTE_IRR))
			abort();	/* up, open, and never sent */
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint16_t pic_ports[8] = { 0x20, 0x21, 0xa0, 0xa1,
					       0x4d0, 0x4d1, 0x22, 0x4d2 };
	struct i8259 pic;
	struct ioapic io;

	memset(&pic, 0, sizeof(pic));
	memset(&io, 0, sizeof(io));
	intr_level = false;
	pic.intr = on_intr;
	io.deliver = on_deliver;
	io.entry_changed = on_changed;
	i8259_reset(&pic);
	ioapic_reset(&io, 1);
	for (size_t i = 0; i + 6 <= size; i += 6) {
		uint8_t op = data[i], a = data[i + 1];
		uint32_t v;

		memcpy(&v, data + i + 2, 4);
		switch (op & 7) {
		case 0:
			i8259_write(&pic, pic_ports[a & 7], (uint8_t)v);
			break;
		case 1:
			(void)i8259_read(&pic, pic_ports[a & 7]);
			break;
		case 2:		/* a device's line; 16 and up are bad numbers */
			i8259_set_irq(&pic, a & 0x1f, v & 1);
			break;
		case 3:
			if (pic.output) {
				uint8_t vec = i8259_ack(&pic);

				if ((vec & 0xf8) != pic.chip[0].vector_base &&
				    (vec & 0xf8) != pic.chip[1].vector_base)
					abort();
			}
			break;
		case 4:		/* IOREGSEL, IOWIN, or anywhere in the page */
			ioapic_mmio_write(&io, (op & 8) ? (a & 1) * 0x10 :
							a * 4u,
					  v);
			break;
		case 5:
			(void)ioapic_mmio_read(&io, (a & 1) * 0x10);
			break;
		case 6:
			ioapic_set_irq(&io, a & 0x1f, v & 1);
			break;
		case 7:
			ioapic_eoi(&io, (uint8_t)v);
			break;
		}
		if (pic.output != intr_level)
			abort();	/* a change the callback missed */
		check_ioapic(&io);
	}
	return 0;
}
