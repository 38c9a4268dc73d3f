/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The two cascaded 8259A PICs of a PC (hw/i8259.c): the master at ports
 * 0x20-0x21 with ISA IRQs 0-7, the slave at 0xa0-0xa1 with IRQs 8-15 on
 * the master's input 2, and the edge/level control registers (ELCR) at
 * 0x4d0-0x4d1. Used when lkvm runs on KVM's split irqchip, where the PIC
 * is the VMM's; the register model has no lock and no clock, and tells
 * its owner through a callback when its INTR output changes.
 */
#ifndef LKVM_I8259_H
#define LKVM_I8259_H

#include <stdbool.h>
#include <stdint.h>

#define I8259_MASTER_PORT 0x20	/* command; +1 data */
#define I8259_SLAVE_PORT 0xa0
#define I8259_ELCR_PORT 0x4d0	/* master's ELCR; +1 the slave's */

struct i8259_chip {
	uint8_t irr;		/* requests */
	uint8_t isr;		/* in service */
	uint8_t imr;		/* mask */
	uint8_t elcr;		/* 1: level-triggered input */
	uint8_t elcr_mask;	/* ELCR bits that may be set */
	uint8_t lines;		/* input levels as last set */
	uint8_t vector_base;	/* ICW2 & 0xf8 */
	uint8_t lowest;		/* rotation: the lowest-priority input */
	uint8_t init_step;	/* 0: ready; 1-3: ICW2-4 expected next */
	bool icw4_wanted, single, auto_eoi, rotate_on_aeoi, special_nested;
	bool special_mask, poll, read_isr;
};

struct i8259 {
	struct i8259_chip chip[2];	/* master, slave */
	bool output;			/* the master's INTR */
	/* Called when output changes (may be NULL). */
	void (*intr)(struct i8259 *p, bool level);
	void *opaque;
};

/* Power-on state: both chips uninitialised, inputs masked off. */
void i8259_reset(struct i8259 *p);
/* irq 0-15; level-triggered inputs follow level, edge ones latch a rise. */
void i8259_set_irq(struct i8259 *p, unsigned int irq, bool level);
/*
 * The CPU's interrupt acknowledge: returns the vector of the highest
 * priority request and marks it in service (unless auto-EOI); with no
 * request left (a spurious interrupt), the vector of IRQ 7 (or 15 when
 * the slave has none) without marking it.
 */
uint8_t i8259_ack(struct i8259 *p);
/* port is one of 0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1. */
uint8_t i8259_read(struct i8259 *p, uint16_t port);
void i8259_write(struct i8259 *p, uint16_t port, uint8_t val);

#endif
