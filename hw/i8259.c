// SPDX-License-Identifier: GPL-2.0
/*
 * The cascaded 8259A pair of a PC and the PIIX edge/level control
 * registers, as a register model: no lock, no clock, no KVM. Written from
 * the Intel 8259A datasheet; the choices where it is silent or where a
 * PC's wiring overrides it:
 * - Edge inputs latch a rising edge into IRR and keep it when the line
 *   drops before the acknowledge (a real 8259A would give IR7 instead;
 *   devices of a VM pulse their lines, so the request must stay). Level
 *   inputs (ELCR bit set) follow the line: IRR clears when it drops.
 * - ICW1's LTIM bit is ignored, as on the PIIX: the ELCR decides. ICW1
 *   clears IMR, ISR, IRR (level inputs whose line is high request again at
 *   once: their IRR is the line), special mask, the ICW4 modes, rotation
 *   in AEOI and poll; IR7 becomes the lowest priority and reads select
 *   IRR. The edge detectors are re-armed: a line already high must fall
 *   and rise again to request.
 * - The slave's INT drives the master's IR2, an edge input (ELCR bits
 *   0-2 cannot be set). The cascade is wired: ICW3 is accepted and not
 *   used, but a master put in single mode answers IR2 itself. ICW1 on the
 *   master looks at the slave's INT afresh, so a slave request pending
 *   across the master's initialisation is not lost. IRQ 2 from the owner
 *   is ignored: nothing but the slave drives that input.
 * - After the slave has been acknowledged (INTA through the cascade or a
 *   poll), its INT counts as having dropped: INT is inactive during the
 *   acknowledge sequence on the chip, so a request still pending (auto-EOI,
 *   or a level input) raises IR2 again instead of being lost.
 * - A poll read with nothing to report returns 0; a poll acknowledges as
 *   an INTA would, auto-EOI included, and works on either port.
 * - Non-specific EOI clears the highest-priority ISR bit; in special mask
 *   mode, bits masked in IMR are skipped (the datasheet's rule). Special
 *   fully nested mode (ICW4 SFNM) lets the master take IR2 again while IR2
 *   is the highest level in service; IR2 in service still holds back
 *   IR3-IR7.
 * - The cascade input IR2 latches the slave's INT like any edge input:
 *   when the slave's request goes away before the acknowledge (the guest
 *   masked it, its level line dropped), the master still asks, and the
 *   acknowledge returns the slave's IR7 vector with no slave ISR bit set
 *   (a spurious IRQ 15, which Linux recognises by the empty ISR).
 */
#include "lkvm/i8259.h"

#include <string.h>

#define ICW1 0x10		/* command port: start of initialisation */
#define ICW1_IC4 0x01
#define ICW1_SNGL 0x02
#define ICW4_AEOI 0x02
#define ICW4_SFNM 0x10
#define OCW3 0x08		/* command port, ICW1 bit clear: OCW3, else OCW2 */
#define OCW3_RIS 0x01
#define OCW3_RR 0x02
#define OCW3_POLL 0x04
#define OCW3_SMM 0x20
#define OCW3_ESMM 0x40

#define CASCADE_IRQ 2

enum { STEP_READY, STEP_ICW2, STEP_ICW3, STEP_ICW4 };

/* The input of highest priority in m, or -1: m is rotated so that the
 * input after `lowest` is bit 0. */
static int highest(const struct i8259_chip *c, unsigned int m)
{
	unsigned int s = (c->lowest + 1u) & 7;
	unsigned int r = ((m >> s) | (m << (8 - s))) & 0xff;

	if (!r)
		return -1;
	return (int)(((unsigned int)__builtin_ctz(r) + c->lowest + 1u) & 7);
}

/* The in-service levels that hold back requests of lower priority. */
static unsigned int blocking(const struct i8259_chip *c)
{
	return c->special_mask ? c->isr & ~(unsigned int)c->imr : c->isr;
}

static unsigned int priority(const struct i8259_chip *c, int n)
{
	return ((unsigned int)n - c->lowest - 1u) & 7;	/* 0: highest */
}

/* The request the chip's INT stands for, or -1 (INT low). */
static int deliverable(const struct i8259_chip *c, bool master)
{
	int req = highest(c, c->irr & ~c->imr);
	int svc = highest(c, blocking(c));

	if (req < 0 || svc < 0)
		return req;
	if (priority(c, req) < priority(c, svc))
		return req;
	/* Special fully nested: the slave may interrupt its own service
	 * with a higher request of its own. */
	if (master && c->special_nested && req == CASCADE_IRQ &&
	    svc == CASCADE_IRQ)
		return req;
	return -1;
}

static void set_input(struct i8259_chip *c, unsigned int n, bool level)
{
	uint8_t bit = (uint8_t)(1u << n);

	if (c->elcr & bit) {
		if (level)
			c->irr |= bit;
		else
			c->irr &= (uint8_t)~bit;
	} else if (level && !(c->lines & bit)) {
		c->irr |= bit;
	}
	if (level)
		c->lines |= bit;
	else
		c->lines &= (uint8_t)~bit;
}

/* Feed the slave's INT to the master's IR2, then recompute the master's
 * INT and tell the owner if it changed. */
static void update(struct i8259 *p)
{
	bool out;

	set_input(&p->chip[0], CASCADE_IRQ, deliverable(&p->chip[1], false) >= 0);
	out = deliverable(&p->chip[0], true) >= 0;
	if (out == p->output)
		return;
	p->output = out;
	if (p->intr)
		p->intr(p, out);
}

/* The chip's part of an acknowledge of input n. */
static void intack(struct i8259_chip *c, unsigned int n)
{
	uint8_t bit = (uint8_t)(1u << n);

	if (!(c->elcr & bit))
		c->irr &= (uint8_t)~bit;
	if (c->auto_eoi) {
		if (c->rotate_on_aeoi)
			c->lowest = (uint8_t)n;
	} else {
		c->isr |= bit;
	}
}

/* The slave's INT drops during its acknowledge; update() re-raises IR2
 * if a request is still there. */
static void slave_acked(struct i8259 *p)
{
	p->chip[0].lines &= (uint8_t)~(1u << CASCADE_IRQ);
}

void i8259_reset(struct i8259 *p)
{
	void (*intr)(struct i8259 *, bool) = p->intr;
	void *opaque = p->opaque;
	bool was = p->output;

	memset(p, 0, sizeof(*p));
	p->intr = intr;
	p->opaque = opaque;
	for (unsigned int i = 0; i < 2; i++) {
		p->chip[i].imr = 0xff;
		p->chip[i].lowest = 7;
	}
	/* IRQs 0, 1, 2 (timer, keyboard, cascade) and 8, 13 (RTC, FPU) are
	 * edge-only on the PIIX. */
	p->chip[0].elcr_mask = 0xf8;
	p->chip[1].elcr_mask = 0xde;
	if (was && intr)
		intr(p, false);
}

void i8259_set_irq(struct i8259 *p, unsigned int irq, bool level)
{
	/* IR2 is wired to the slave's INT: nothing else drives it. */
	if (irq > 15 || irq == CASCADE_IRQ)
		return;
	set_input(&p->chip[irq >> 3], irq & 7, level);
	update(p);
}

uint8_t i8259_ack(struct i8259 *p)
{
	struct i8259_chip *m = &p->chip[0], *s = &p->chip[1];
	int irq = deliverable(m, true);
	uint8_t vec;

	if (irq < 0)
		return m->vector_base + 7;
	intack(m, (unsigned int)irq);
	if (irq != CASCADE_IRQ || m->single) {
		vec = m->vector_base + (uint8_t)irq;
	} else {
		int sirq = deliverable(s, false);

		if (sirq < 0) {
			vec = s->vector_base + 7;
		} else {
			intack(s, (unsigned int)sirq);
			vec = s->vector_base + (uint8_t)sirq;
		}
		slave_acked(p);
	}
	update(p);
	return vec;
}

static uint8_t poll_read(struct i8259 *p, unsigned int i)
{
	struct i8259_chip *c = &p->chip[i];
	int irq = deliverable(c, i == 0);

	c->poll = false;
	if (irq < 0)
		return 0;
	intack(c, (unsigned int)irq);
	if (i == 1)
		slave_acked(p);
	update(p);
	return (uint8_t)(0x80 | irq);
}

enum reg { REG_NONE, REG_CMD, REG_DATA, REG_ELCR };

/* Which chip and register a port is. */
static enum reg decode(struct i8259 *p, uint16_t port, struct i8259_chip **c)
{
	switch (port) {
	case I8259_ELCR_PORT:
	case I8259_ELCR_PORT + 1:
		*c = &p->chip[port - I8259_ELCR_PORT];
		return REG_ELCR;
	case I8259_MASTER_PORT:
	case I8259_MASTER_PORT + 1:
	case I8259_SLAVE_PORT:
	case I8259_SLAVE_PORT + 1:
		*c = &p->chip[port >= I8259_SLAVE_PORT];
		return port & 1 ? REG_DATA : REG_CMD;
	default:
		return REG_NONE;
	}
}

uint8_t i8259_read(struct i8259 *p, uint16_t port)
{
	struct i8259_chip *c;

	switch (decode(p, port, &c)) {
	case REG_ELCR:
		return c->elcr;
	case REG_NONE:
		return 0xff;
	default:
		break;
	}
	if (c->poll)
		return poll_read(p, (unsigned int)(c - p->chip));
	if (port & 1)		/* REG_DATA */
		return c->imr;
	return c->read_isr ? c->isr : c->irr;
}

static void icw1(struct i8259_chip *c, uint8_t val, bool master)
{
	/* The cascade input is re-armed too, but the slave's INT is looked
	 * at again right away: a slave holding a level request when the
	 * master is initialised after it would otherwise never be heard. */
	if (master)
		c->lines &= (uint8_t)~(1u << CASCADE_IRQ);
	c->isr = 0;
	c->imr = 0;
	/* Edge detectors re-armed: only the level inputs request now. */
	c->irr = c->lines & c->elcr;
	c->lowest = 7;
	c->icw4_wanted = val & ICW1_IC4;
	c->single = val & ICW1_SNGL;
	c->auto_eoi = false;
	c->special_nested = false;
	c->rotate_on_aeoi = false;
	c->special_mask = false;
	c->poll = false;
	c->read_isr = false;
	c->init_step = STEP_ICW2;
}

static void init_word(struct i8259_chip *c, uint8_t val)
{
	switch (c->init_step) {
	case STEP_ICW2:
		c->vector_base = val & 0xf8;
		if (!c->single)
			c->init_step = STEP_ICW3;
		else
			c->init_step = c->icw4_wanted ? STEP_ICW4 : STEP_READY;
		break;
	case STEP_ICW3:
		/* The wiring is fixed: slave on IR2, whatever is said here. */
		c->init_step = c->icw4_wanted ? STEP_ICW4 : STEP_READY;
		break;
	default:
		c->auto_eoi = val & ICW4_AEOI;
		c->special_nested = val & ICW4_SFNM;
		c->init_step = STEP_READY;
		break;
	}
}

/* Clear in-service level n; `rotate` makes it the lowest priority. */
static void eoi(struct i8259_chip *c, int n, bool rotate)
{
	if (n < 0)
		return;
	c->isr &= (uint8_t)~(1u << n);
	if (rotate)
		c->lowest = (uint8_t)n;
}

static void ocw2(struct i8259_chip *c, uint8_t val)
{
	unsigned int level = val & 7;
	unsigned int nonspec = c->special_mask ? c->isr & ~c->imr : c->isr;

	switch (val >> 5) {
	case 0:		/* rotate in auto-EOI mode: clear */
		c->rotate_on_aeoi = false;
		break;
	case 4:		/* rotate in auto-EOI mode: set */
		c->rotate_on_aeoi = true;
		break;
	case 1:		/* non-specific EOI */
		eoi(c, highest(c, nonspec), false);
		break;
	case 5:		/* rotate on non-specific EOI */
		eoi(c, highest(c, nonspec), true);
		break;
	case 3:		/* specific EOI */
		eoi(c, (int)level, false);
		break;
	case 7:		/* rotate on specific EOI */
		eoi(c, (int)level, true);
		break;
	case 6:		/* set priority */
		c->lowest = (uint8_t)level;
		break;
	default:	/* 2: no operation */
		break;
	}
}

static void ocw3(struct i8259_chip *c, uint8_t val)
{
	if (val & OCW3_ESMM)
		c->special_mask = val & OCW3_SMM;
	if (val & OCW3_RR)
		c->read_isr = val & OCW3_RIS;
	c->poll = val & OCW3_POLL;
}

void i8259_write(struct i8259 *p, uint16_t port, uint8_t val)
{
	struct i8259_chip *c;

	switch (decode(p, port, &c)) {
	case REG_NONE:
		return;
	case REG_ELCR:
		c->elcr = val & c->elcr_mask;
		/* A level input's request is its line. */
		c->irr = (uint8_t)((c->irr & ~c->elcr) | (c->lines & c->elcr));
		break;
	case REG_DATA:
		if (c->init_step != STEP_READY)
			init_word(c, val);
		else
			c->imr = val;
		break;
	case REG_CMD:
		if (val & ICW1)
			icw1(c, val, c == p->chip);
		else if (val & OCW3)
			ocw3(c, val);
		else
			ocw2(c, val);
		break;
	}
	update(p);
}
