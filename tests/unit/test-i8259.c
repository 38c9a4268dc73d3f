// SPDX-License-Identifier: GPL-2.0
/*
 * The 8259A pair as Linux, SeaBIOS and the test kernel program it: the
 * initialisation words, priorities and rotation, the EOI kinds, the
 * cascade through IR2, edge and level inputs with the ELCR, auto-EOI,
 * poll mode, spurious acknowledges, and the INTR callback; then random
 * bytes on every port with the output checked against a recomputation.
 */
#include <stdlib.h>
#include <string.h>

#include "lkvm/i8259.h"
#include "tap.h"

#define M_CMD 0x20
#define M_DATA 0x21
#define S_CMD 0xa0
#define S_DATA 0xa1
#define ELCR_M 0x4d0
#define ELCR_S 0x4d1

#define EOI 0x20
#define SPECIFIC_EOI 0x60
#define ROTATE_EOI 0xa0
#define ROTATE_SPECIFIC_EOI 0xe0
#define SET_PRIORITY 0xc0
#define ROTATE_AEOI_SET 0x80
#define ROTATE_AEOI_CLEAR 0x00
#define READ_IRR 0x0a
#define READ_ISR 0x0b
#define POLL 0x0c
#define SMM_SET 0x68
#define SMM_CLEAR 0x48

struct rec {
	unsigned int calls, rises;
	bool level, repeated;	/* repeated: called twice with one level */
};

static void rec_intr(struct i8259 *p, bool level)
{
	struct rec *r = p->opaque;

	if (r->calls && r->level == level)
		r->repeated = true;
	if (!r->calls && !level)
		r->repeated = true;	/* it starts low: a first call must rise */
	r->calls++;
	r->rises += level;
	r->level = level;
}

static void setup(struct i8259 *p, struct rec *r)
{
	memset(p, 0xa5, sizeof(*p));	/* reset must not rely on zeroes */
	memset(r, 0, sizeof(*r));
	p->intr = rec_intr;
	p->opaque = r;
	p->output = false;
	i8259_reset(p);
}

static void wr(struct i8259 *p, uint16_t port, uint8_t v)
{
	i8259_write(p, port, v);
}

static uint8_t rd(struct i8259 *p, uint16_t port)
{
	return i8259_read(p, port);
}

/* ICW2-ICW4 on a data port. */
static void icw234(struct i8259 *p, uint16_t data, uint8_t base,
		   uint8_t icw3, uint8_t icw4)
{
	wr(p, data, base);
	wr(p, data, icw3);
	wr(p, data, icw4);
}

/* ICW1 (edge, cascade, ICW4 follows), then the others. */
static void init_chip(struct i8259 *p, uint16_t cmd, uint8_t base,
		      uint8_t icw3, uint8_t icw4)
{
	wr(p, cmd, 0x11);
	icw234(p, cmd + 1, base, icw3, icw4);
}

/* Linux's init_8259A: master, then slave, masks restored after. */
static void init_linux(struct i8259 *p, bool aeoi)
{
	wr(p, M_DATA, 0xff);
	wr(p, S_DATA, 0xff);
	init_chip(p, M_CMD, 0x30, 0x04, aeoi ? 0x03 : 0x01);
	init_chip(p, S_CMD, 0x38, 0x02, 0x01);
	wr(p, M_DATA, 0x00);
	wr(p, S_DATA, 0x00);
}

/* SeaBIOS's pic_setup: both chips word by word, interleaved. */
static void init_seabios(struct i8259 *p)
{
	wr(p, M_CMD, 0x11);
	wr(p, S_CMD, 0x11);
	wr(p, M_DATA, 0x08);
	wr(p, S_DATA, 0x70);
	wr(p, M_DATA, 0x04);
	wr(p, S_DATA, 0x02);
	wr(p, M_DATA, 0x01);
	wr(p, S_DATA, 0x01);
	wr(p, M_DATA, 0xfb);	/* all masked but the cascade */
	wr(p, S_DATA, 0xff);
}

static uint8_t isr(struct i8259 *p, uint16_t cmd)
{
	wr(p, cmd, READ_ISR);
	return rd(p, cmd);
}

static uint8_t irr(struct i8259 *p, uint16_t cmd)
{
	wr(p, cmd, READ_IRR);
	return rd(p, cmd);
}

static void pulse(struct i8259 *p, unsigned int irq)
{
	i8259_set_irq(p, irq, true);
	i8259_set_irq(p, irq, false);
}

static void test_reset_and_init(void)
{
	struct i8259 p;
	struct rec r;

	setup(&p, &r);
	CHECK(rd(&p, M_DATA) == 0xff && rd(&p, S_DATA) == 0xff &&
		      rd(&p, M_CMD) == 0 && rd(&p, S_CMD) == 0 &&
		      rd(&p, ELCR_M) == 0 && rd(&p, ELCR_S) == 0 && !p.output,
	      "reset: inputs masked, IRR/ISR and ELCR clear, INTR low");
	pulse(&p, 4);
	CHECK(!p.output && irr(&p, M_CMD) == 0x10 && r.calls == 0,
	      "reset: a masked request is latched but INTR stays low");

	init_linux(&p, false);
	CHECK(rd(&p, M_DATA) == 0 && rd(&p, S_DATA) == 0 &&
		      irr(&p, M_CMD) == 0,
	      "Linux init: IMR as written after it, ICW1 dropped the request");
	pulse(&p, 0);
	CHECK(p.output && r.calls == 1 && r.level,
	      "Linux: IRQ 0 raises INTR (one callback)");
	CHECK(i8259_ack(&p) == 0x30, "Linux: IRQ 0 is vector 0x30");
	CHECK(!p.output && isr(&p, M_CMD) == 0x01 && irr(&p, M_CMD) == 0,
	      "ack: ISR bit 0 set, IRR cleared, INTR low");
	wr(&p, M_CMD, EOI);
	CHECK(isr(&p, M_CMD) == 0, "non-specific EOI clears it");
	pulse(&p, 14);
	CHECK(i8259_ack(&p) == 0x3e && isr(&p, S_CMD) == 0x40 &&
		      isr(&p, M_CMD) == 0x04,
	      "Linux: IRQ 14 through the cascade is 0x3e, ISR on both chips");
	wr(&p, S_CMD, SPECIFIC_EOI | 6);
	wr(&p, M_CMD, SPECIFIC_EOI | 2);
	CHECK(isr(&p, S_CMD) == 0 && isr(&p, M_CMD) == 0,
	      "Linux: specific EOIs (0x66, 0x62) clear both");

	init_seabios(&p);
	CHECK(rd(&p, M_DATA) == 0xfb && rd(&p, S_DATA) == 0xff,
	      "SeaBIOS init: masks read back");
	wr(&p, S_DATA, 0xfe);
	pulse(&p, 8);
	CHECK(p.output && i8259_ack(&p) == 0x70,
	      "SeaBIOS: IRQ 8 (RTC) is vector 0x70");
	pulse(&p, 1);
	CHECK(!p.output, "SeaBIOS: IRQ 1 masked");
	wr(&p, M_DATA, 0xf9);
	CHECK(p.output && i8259_ack(&p) == 0x09,
	      "unmasked, IRQ 1 (above the cascade in service) is 0x09");
	wr(&p, M_CMD, EOI);
	CHECK(isr(&p, M_CMD) == 0x04, "EOI cleared IRQ 1 first, the "
	      "highest priority in service");

	/* The test kernel's pic_disable: base 0x20, everything masked. */
	wr(&p, M_CMD, 0x11);
	wr(&p, S_CMD, 0x11);
	CHECK(isr(&p, M_CMD) == 0 && isr(&p, S_CMD) == 0 &&
		      rd(&p, M_DATA) == 0,
	      "ICW1 clears ISR and IMR");
	wr(&p, M_DATA, 0x25);
	wr(&p, S_DATA, 0x2f);
	wr(&p, M_DATA, 0x04);
	wr(&p, S_DATA, 0x02);
	wr(&p, M_DATA, 0x01);
	wr(&p, S_DATA, 0x01);
	CHECK(rd(&p, M_DATA) == 0, "ICW2-ICW4 are not taken as OCW1");
	pulse(&p, 3);
	pulse(&p, 11);
	CHECK(i8259_ack(&p) == 0x2b, "ICW2's low 3 bits are ignored: IRQ 11 "
	      "with slave base 0x2f is 0x2b");
	CHECK(!p.output, "IRQ 3 waits behind IR2 in service");
	wr(&p, S_CMD, EOI);
	wr(&p, M_CMD, EOI);
	CHECK(p.output && i8259_ack(&p) == 0x23,
	      "after the EOIs IRQ 3 is 0x23 (master base 0x25 -> 0x20)");
	wr(&p, M_CMD, EOI);
	wr(&p, M_DATA, 0xff);
	wr(&p, S_DATA, 0xff);
	CHECK(rd(&p, M_DATA) == 0xff, "masks written after the init");

	/* Single mode (no ICW3), no ICW4. */
	wr(&p, M_CMD, 0x12);
	wr(&p, M_DATA, 0x40);
	wr(&p, M_DATA, 0x7f);
	CHECK(rd(&p, M_DATA) == 0x7f, "single mode without ICW4: the third "
	      "byte is OCW1");
	pulse(&p, 9);
	wr(&p, S_DATA, 0);
	wr(&p, M_DATA, 0);
	CHECK(i8259_ack(&p) == 0x42, "a master in single mode answers IR2 "
	      "itself");
	CHECK(!r.repeated, "the callback never repeats a level");

	setup(&p, &r);
	init_linux(&p, false);
	pulse(&p, 2);
	i8259_set_irq(&p, 2, true);
	i8259_set_irq(&p, 16, true);
	i8259_set_irq(&p, 255, true);
	i8259_set_irq(&p, ~0u, true);
	CHECK(!p.output && irr(&p, M_CMD) == 0 && irr(&p, S_CMD) == 0,
	      "IRQ 2 (the slave's wire) and IRQs above 15 are ignored");
	CHECK(rd(&p, 0x22) == 0xff && rd(&p, 0x4d2) == 0xff,
	      "other ports read 0xff");
}

static void test_priorities(void)
{
	struct i8259 p;
	struct rec r;

	setup(&p, &r);
	init_linux(&p, false);
	pulse(&p, 5);
	pulse(&p, 3);
	pulse(&p, 6);
	CHECK(i8259_ack(&p) == 0x33, "fixed priority: 3 before 5 and 6");
	CHECK(!p.output, "5 and 6 wait while 3 is in service");
	pulse(&p, 1);
	CHECK(p.output && i8259_ack(&p) == 0x31 &&
		      isr(&p, M_CMD) == 0x0a,
	      "1 nests above 3 in service (ISR 0x0a)");
	wr(&p, M_CMD, EOI);
	CHECK(isr(&p, M_CMD) == 0x08 && !p.output,
	      "non-specific EOI clears the highest (1), 3 still blocks");
	wr(&p, M_CMD, EOI);
	CHECK(p.output && i8259_ack(&p) == 0x35, "then 5");
	wr(&p, M_CMD, SPECIFIC_EOI | 5);
	CHECK(i8259_ack(&p) == 0x36, "then 6");
	wr(&p, M_CMD, SPECIFIC_EOI | 4);
	CHECK(isr(&p, M_CMD) == 0x40, "a specific EOI of a level not in "
	      "service changes nothing");
	wr(&p, M_CMD, SPECIFIC_EOI | 6);

	/* Set priority: 3 lowest, so 4 5 6 7 0 1 2 3. */
	wr(&p, M_CMD, SET_PRIORITY | 3);
	pulse(&p, 1);
	pulse(&p, 5);
	CHECK(i8259_ack(&p) == 0x35, "set priority (3 lowest): 5 before 1");
	CHECK(!p.output, "1 ranks below 5 now: it waits");
	wr(&p, M_CMD, EOI);
	CHECK(i8259_ack(&p) == 0x31, "1 after the EOI of 5");
	pulse(&p, 5);
	CHECK(p.output && i8259_ack(&p) == 0x35 && isr(&p, M_CMD) == 0x22,
	      "rotated: 5 nests above 1 in service");
	wr(&p, M_CMD, EOI);
	CHECK(isr(&p, M_CMD) == 0x02, "non-specific EOI follows the rotated "
	      "order: it clears 5, not 1");

	/* Rotate on non-specific EOI: 1 becomes the lowest. */
	wr(&p, M_CMD, ROTATE_EOI);
	CHECK(isr(&p, M_CMD) == 0, "rotate on EOI clears ISR");
	pulse(&p, 1);
	pulse(&p, 3);
	pulse(&p, 0);
	CHECK(i8259_ack(&p) == 0x33, "after rotating on 1: 3 before 0 and 1");
	wr(&p, M_CMD, ROTATE_EOI);
	CHECK(i8259_ack(&p) == 0x30, "after rotating on 3: 0 before 1");
	wr(&p, M_CMD, ROTATE_SPECIFIC_EOI | 0);
	CHECK(i8259_ack(&p) == 0x31, "rotate on specific EOI of 0: 1 next");
	wr(&p, M_CMD, ROTATE_SPECIFIC_EOI | 6);
	CHECK(isr(&p, M_CMD) == 0x02, "rotate on specific EOI of a level not "
	      "in service leaves ISR");
	pulse(&p, 7);
	pulse(&p, 0);
	CHECK(p.output && i8259_ack(&p) == 0x37,
	      "6 made lowest: 7 is the highest and nests above 1");
	CHECK(i8259_ack(&p) == 0x37 && isr(&p, M_CMD) == 0x82,
	      "0 waits behind 7 in service: the ack is spurious, ISR kept");
	wr(&p, M_CMD, EOI);
	CHECK(p.output && i8259_ack(&p) == 0x30, "0 after EOI of 7");
	CHECK(!r.repeated, "the callback never repeats a level");
}

static void test_special_mask(void)
{
	struct i8259 p;
	struct rec r;

	setup(&p, &r);
	init_linux(&p, false);
	pulse(&p, 3);
	CHECK(i8259_ack(&p) == 0x33, "3 in service");
	pulse(&p, 5);
	wr(&p, M_DATA, 0x08);
	CHECK(!p.output, "without special mask, masking 3 does not let 5 in");
	wr(&p, M_CMD, SMM_SET);
	CHECK(p.output && i8259_ack(&p) == 0x35,
	      "special mask mode: 5 is taken below masked 3 in service");
	wr(&p, M_CMD, EOI);
	CHECK(isr(&p, M_CMD) == 0x08, "in special mask mode a non-specific "
	      "EOI skips the masked 3 and clears 5");
	wr(&p, M_CMD, SMM_CLEAR);
	pulse(&p, 6);
	CHECK(!p.output, "special mask cleared: 3 in service blocks 6 again");
	wr(&p, M_CMD, 0x08);	/* OCW3 with ESMM clear: no change */
	CHECK(!p.output, "OCW3 without ESMM leaves the mode alone");
	wr(&p, M_CMD, EOI);
	CHECK(p.output && isr(&p, M_CMD) == 0 && i8259_ack(&p) == 0x36,
	      "EOI of 3 lets 6 in");
}

static void test_cascade(void)
{
	struct i8259 p;
	struct rec r;

	setup(&p, &r);
	init_linux(&p, false);
	pulse(&p, 12);
	CHECK(p.output && irr(&p, M_CMD) == 0x04 && irr(&p, S_CMD) == 0x10,
	      "IRQ 12: slave IRR bit 4, master IRR bit 2, INTR");
	CHECK(i8259_ack(&p) == 0x3c && isr(&p, M_CMD) == 0x04 &&
		      isr(&p, S_CMD) == 0x10 && irr(&p, M_CMD) == 0,
	      "acked through the master: 0x3c, in service on both");
	pulse(&p, 9);
	CHECK(!p.output && irr(&p, M_CMD) == 0x04,
	      "9 on the slave reaches IR2 but IR2 in service blocks it");
	pulse(&p, 1);
	CHECK(p.output && i8259_ack(&p) == 0x31,
	      "1 on the master nests above the cascade");
	wr(&p, M_CMD, EOI);
	wr(&p, M_CMD, EOI);
	CHECK(p.output && i8259_ack(&p) == 0x39,
	      "master EOI of IR2: 9 nests above 12 on the slave");
	CHECK(isr(&p, S_CMD) == 0x12, "slave ISR 9 and 12");
	wr(&p, S_CMD, EOI);
	wr(&p, S_CMD, EOI);
	wr(&p, M_CMD, EOI);
	CHECK(!p.output && isr(&p, S_CMD) == 0 && isr(&p, M_CMD) == 0,
	      "all EOIed, nothing left");

	/* Two slave requests, then the second one after the first's EOI. */
	pulse(&p, 10);
	pulse(&p, 15);
	CHECK(i8259_ack(&p) == 0x3a, "10 before 15");
	wr(&p, S_CMD, EOI);
	CHECK(!p.output, "slave EOI alone: IR2 still in service on the master");
	wr(&p, M_CMD, EOI);
	CHECK(p.output && i8259_ack(&p) == 0x3f && isr(&p, S_CMD) == 0x80,
	      "then 15 (a real one: slave ISR bit 7)");
	wr(&p, S_CMD, EOI);
	wr(&p, M_CMD, EOI);

	/* Special fully nested mode on the master. */
	init_chip(&p, M_CMD, 0x30, 0x04, 0x11);
	pulse(&p, 12);
	CHECK(i8259_ack(&p) == 0x3c, "SFNM: 12");
	pulse(&p, 9);
	CHECK(p.output && i8259_ack(&p) == 0x39,
	      "SFNM: 9 on the slave is taken while IR2 is in service");
	pulse(&p, 13);
	CHECK(!p.output, "SFNM: 13 is below 9 and 12 on the slave");
	pulse(&p, 3);
	CHECK(!p.output, "SFNM: IR2 in service still blocks 3");
}

static void test_edge_level(void)
{
	struct i8259 p;
	struct rec r;

	setup(&p, &r);
	init_linux(&p, false);
	wr(&p, ELCR_M, 0xff);
	wr(&p, ELCR_S, 0xff);
	CHECK(rd(&p, ELCR_M) == 0xf8 && rd(&p, ELCR_S) == 0xde,
	      "ELCR masks: 0xf8 and 0xde (0, 1, 2, 8, 13 always edge)");

	i8259_set_irq(&p, 0, true);
	CHECK(i8259_ack(&p) == 0x30, "edge IRQ 0 (ELCR cannot make it level)");
	wr(&p, M_CMD, EOI);
	CHECK(!p.output && irr(&p, M_CMD) == 0,
	      "edge held high: no second request after EOI");
	i8259_set_irq(&p, 0, false);
	i8259_set_irq(&p, 0, true);
	CHECK(p.output, "edge: a new rise is a new request");
	i8259_set_irq(&p, 0, false);
	CHECK(p.output && irr(&p, M_CMD) == 0x01,
	      "edge: dropping the line before the ack keeps the request");
	CHECK(i8259_ack(&p) == 0x30, "and it is delivered");
	wr(&p, M_CMD, EOI);

	wr(&p, ELCR_M, 0x08);	/* IRQ 3 level */
	wr(&p, ELCR_S, 0x08);	/* IRQ 11 level */
	i8259_set_irq(&p, 11, true);
	CHECK(p.output && irr(&p, S_CMD) == 0x08, "level IRQ 11 requests");
	i8259_set_irq(&p, 11, false);
	CHECK(irr(&p, S_CMD) == 0, "level: IRR follows the line down");
	CHECK(p.output && i8259_ack(&p) == 0x3f && isr(&p, S_CMD) == 0,
	      "the master's IR2 kept the edge: the ack is the slave's "
	      "spurious 0x3f");
	wr(&p, M_CMD, EOI);
	wr(&p, ELCR_M, 0x08);
	i8259_set_irq(&p, 3, true);
	i8259_set_irq(&p, 3, false);
	CHECK(!p.output && irr(&p, M_CMD) == 0,
	      "level IRQ 3 on the master: line down, INTR down");
	i8259_set_irq(&p, 3, true);
	CHECK(i8259_ack(&p) == 0x33, "level IRQ 3");
	CHECK(irr(&p, M_CMD) == 0x08, "level: IRR stays while the line is high");
	wr(&p, M_CMD, EOI);
	CHECK(p.output && i8259_ack(&p) == 0x33,
	      "level: still high after EOI, requested again");
	i8259_set_irq(&p, 3, false);
	wr(&p, M_CMD, EOI);
	CHECK(!p.output && irr(&p, M_CMD) == 0, "level: line down, done");

	i8259_set_irq(&p, 4, true);
	i8259_set_irq(&p, 4, false);
	wr(&p, ELCR_M, 0x18);
	CHECK(!p.output && irr(&p, M_CMD) == 0,
	      "edge -> level: IRR takes the line (low)");
	i8259_set_irq(&p, 4, true);
	wr(&p, ELCR_M, 0x08);
	i8259_set_irq(&p, 4, false);
	CHECK(p.output && irr(&p, M_CMD) == 0x10,
	      "level -> edge: the request stays when the line drops");
	CHECK(i8259_ack(&p) == 0x34, "and is delivered");
	wr(&p, M_CMD, EOI);

	i8259_set_irq(&p, 11, true);
	wr(&p, S_CMD, 0x11);
	CHECK(irr(&p, S_CMD) == 0x08, "ICW1: a level input high requests "
	      "again at once");
	icw234(&p, S_DATA, 0x38, 0x02, 0x01);
	init_chip(&p, M_CMD, 0x30, 0x04, 0x01);
	CHECK(p.output && i8259_ack(&p) == 0x3b,
	      "master initialised after the slave still hears its request");
	i8259_set_irq(&p, 11, false);
	wr(&p, S_CMD, EOI);
	wr(&p, M_CMD, EOI);
	i8259_set_irq(&p, 5, true);
	wr(&p, M_CMD, 0x11);
	CHECK(irr(&p, M_CMD) == 0, "ICW1: an edge line already high is "
	      "not a request");
	icw234(&p, M_DATA, 0x30, 0x04, 0x01);
	i8259_set_irq(&p, 5, false);
	i8259_set_irq(&p, 5, true);
	CHECK(p.output && i8259_ack(&p) == 0x35, "it must fall and rise");
	CHECK(!r.repeated, "the callback never repeats a level");
}

static void test_aeoi(void)
{
	struct i8259 p;
	struct rec r;

	setup(&p, &r);
	init_linux(&p, true);
	pulse(&p, 3);
	pulse(&p, 5);
	CHECK(i8259_ack(&p) == 0x33 && isr(&p, M_CMD) == 0,
	      "auto-EOI: ISR not set");
	CHECK(p.output && i8259_ack(&p) == 0x35,
	      "auto-EOI: the next request is delivered at once");
	CHECK(!p.output, "nothing left");

	wr(&p, M_CMD, ROTATE_AEOI_SET);
	pulse(&p, 1);
	pulse(&p, 4);
	CHECK(i8259_ack(&p) == 0x31, "rotate in AEOI: 1 first");
	pulse(&p, 1);
	CHECK(i8259_ack(&p) == 0x34, "1 became the lowest: 4 before it");
	CHECK(i8259_ack(&p) == 0x31, "then 1");
	wr(&p, M_CMD, ROTATE_AEOI_CLEAR);
	pulse(&p, 1);
	pulse(&p, 0);
	CHECK(i8259_ack(&p) == 0x30, "rotation cleared: 0 before 1 (1 lowest)");
	pulse(&p, 0);
	CHECK(i8259_ack(&p) == 0x30, "and acking 0 did not rotate: 0 again");
	CHECK(i8259_ack(&p) == 0x31, "then 1");

	/* Both chips in auto-EOI: two slave requests, one behind the other. */
	init_chip(&p, S_CMD, 0x38, 0x02, 0x03);
	pulse(&p, 9);
	pulse(&p, 12);
	CHECK(i8259_ack(&p) == 0x39 && isr(&p, M_CMD) == 0 &&
		      isr(&p, S_CMD) == 0,
	      "auto-EOI on both: 9, nothing in service");
	CHECK(p.output && i8259_ack(&p) == 0x3c,
	      "the slave's INT stays up: 12 comes through IR2 again");
	CHECK(!p.output && irr(&p, M_CMD) == 0 && irr(&p, S_CMD) == 0,
	      "nothing left on either chip");
	CHECK(!r.repeated, "the callback never repeats a level");
}

static void test_poll(void)
{
	struct i8259 p;
	struct rec r;

	setup(&p, &r);
	init_linux(&p, false);
	wr(&p, M_CMD, POLL);
	CHECK(rd(&p, M_CMD) == 0, "poll with nothing pending reads 0");
	pulse(&p, 6);
	pulse(&p, 4);
	wr(&p, M_CMD, POLL);
	CHECK(rd(&p, M_CMD) == 0x84, "poll: 0x80 | 4");
	CHECK(isr(&p, M_CMD) == 0x10 && irr(&p, M_CMD) == 0x40 && !p.output,
	      "poll acknowledged 4: in service, 6 waits, INTR low");
	CHECK(rd(&p, M_CMD) == 0x40, "the next read is a register read again");
	wr(&p, M_CMD, EOI);
	wr(&p, M_CMD, POLL);
	CHECK(rd(&p, M_DATA) == 0x86, "poll read on the data port: 0x86");
	CHECK(rd(&p, M_DATA) == 0x00, "then the data port is IMR again");
	wr(&p, M_CMD, EOI);

	pulse(&p, 13);
	wr(&p, M_CMD, POLL);
	CHECK(rd(&p, M_CMD) == 0x82, "poll of the master: the cascade (0x82)");
	wr(&p, S_CMD, POLL);
	CHECK(rd(&p, S_CMD) == 0x85 && isr(&p, S_CMD) == 0x20,
	      "poll of the slave: 0x85, 13 in service");
	wr(&p, S_CMD, EOI);
	wr(&p, M_CMD, EOI);
	CHECK(!p.output && isr(&p, M_CMD) == 0, "EOIs: nothing left");
	wr(&p, M_CMD, POLL | READ_ISR);
	pulse(&p, 7);
	CHECK(rd(&p, M_CMD) == 0x87, "poll wins over a register read in the "
	      "same OCW3");
	CHECK(rd(&p, M_CMD) == 0x80, "and the register read (ISR) follows");
}

static void test_spurious(void)
{
	struct i8259 p;
	struct rec r;

	setup(&p, &r);
	init_linux(&p, false);
	CHECK(i8259_ack(&p) == 0x37 && isr(&p, M_CMD) == 0,
	      "ack with nothing pending: 0x37, ISR untouched");
	wr(&p, ELCR_M, 0x20);
	i8259_set_irq(&p, 5, true);
	CHECK(p.output, "level IRQ 5 raises INTR");
	i8259_set_irq(&p, 5, false);
	CHECK(!p.output && i8259_ack(&p) == 0x37 && isr(&p, M_CMD) == 0,
	      "dropped before the ack: spurious 0x37, ISR untouched");
	pulse(&p, 7);
	CHECK(i8259_ack(&p) == 0x37 && isr(&p, M_CMD) == 0x80,
	      "a real IRQ 7 is 0x37 with ISR bit 7 (what Linux checks)");
	wr(&p, M_CMD, EOI);

	pulse(&p, 12);
	wr(&p, S_DATA, 0x10);
	CHECK(p.output && irr(&p, M_CMD) == 0x04 && irr(&p, S_CMD) == 0x10,
	      "IRQ 12 masked on the slave after IR2 latched: INTR stays");
	CHECK(i8259_ack(&p) == 0x3f && isr(&p, S_CMD) == 0 &&
		      isr(&p, M_CMD) == 0x04,
	      "slave has nothing: its IRQ 15 (0x3f), master ISR bit 2 only");
	wr(&p, M_CMD, EOI);
	wr(&p, S_DATA, 0x00);
	CHECK(p.output && i8259_ack(&p) == 0x3c,
	      "unmasked, 12 is still there and delivered");
	CHECK(!r.repeated, "the callback never repeats a level");
}

static void test_masking_and_callback(void)
{
	struct i8259 p;
	struct rec r;

	setup(&p, &r);
	init_linux(&p, false);
	CHECK(r.calls == 0, "no callback during the init");
	pulse(&p, 4);
	CHECK(r.calls == 1 && r.level, "request: one call, high");
	pulse(&p, 4);
	pulse(&p, 6);
	CHECK(r.calls == 1, "more requests while high: no call");
	wr(&p, M_DATA, 0x50);
	CHECK(r.calls == 2 && !r.level && !p.output,
	      "masking both pending requests: one call, low");
	CHECK(irr(&p, M_CMD) == 0x50, "masked requests stay in IRR");
	wr(&p, M_DATA, 0x50);
	CHECK(r.calls == 2, "the same mask again: no call");
	wr(&p, M_DATA, 0x10);
	CHECK(r.calls == 3 && r.level, "unmasking 6: high");
	CHECK(i8259_ack(&p) == 0x36 && r.calls == 4 && !r.level,
	      "ack of 6: low");
	pulse(&p, 7);
	CHECK(r.calls == 4, "7 below 6 in service: no call");
	wr(&p, M_CMD, EOI);
	CHECK(r.calls == 5 && r.level, "EOI: 7 raises INTR");
	wr(&p, M_DATA, 0x00);
	CHECK(r.calls == 5, "unmasking 4 while high: no call");
	i8259_reset(&p);
	CHECK(r.calls == 6 && !r.level && !p.output,
	      "reset while high: one call, low");
	i8259_reset(&p);
	CHECK(r.calls == 6, "reset while low: no call");
	CHECK(!r.repeated, "the callback never repeats a level");
}

/* The chip's INT worked out level by level in priority order, from the
 * registers alone. */
static bool ref_int(const struct i8259_chip *c, bool master)
{
	for (unsigned int k = 0; k < 8; k++) {
		unsigned int n = (c->lowest + 1u + k) % 8;
		bool in_service = c->isr >> n & 1;
		bool requested = (c->irr & ~c->imr) >> n & 1;

		if (c->special_mask && (c->imr >> n & 1))
			in_service = false;
		if (in_service)
			return master && c->special_nested && n == 2 &&
			       requested;
		if (requested)
			return true;
	}
	return false;
}

static bool consistent(struct i8259 *p, const struct rec *r)
{
	bool slave_int = ref_int(&p->chip[1], false);

	for (unsigned int i = 0; i < 2; i++) {
		const struct i8259_chip *c = &p->chip[i];

		if (c->lowest > 7 || c->init_step > 3 || c->vector_base & 7 ||
		    c->elcr & ~c->elcr_mask)
			return false;
	}
	if (p->chip[0].elcr_mask != 0xf8 || p->chip[1].elcr_mask != 0xde)
		return false;
	if (!!(p->chip[0].lines & 4) != slave_int)
		return false;
	if (p->output != ref_int(&p->chip[0], true))
		return false;
	/* The owner's view (the last callback) is the output. */
	return r->calls ? r->level == p->output : !p->output;
}

static void test_random(void)
{
	static const uint16_t ports[] = {
		M_CMD, M_DATA, S_CMD, S_DATA, ELCR_M, ELCR_S,
		0x22, 0xa2, 0x4d2, 0x1f, 0x9f, 0x4cf, 0xffff, 0,
	};
	unsigned int bad = 0, vec_bad = 0, acks = 0, delivered = 0;
	struct i8259 p;
	struct rec r;

	srandom(8259);
	for (unsigned int round = 0; round < 40; round++) {
		setup(&p, &r);
		if (round & 1)
			init_linux(&p, round & 2);
		for (unsigned int i = 0; i < 20000; i++) {
			unsigned int op = (unsigned int)random() % 16;
			unsigned int x = (unsigned int)random();
			uint16_t port = ports[x % (round < 20 ? 6 : 14)];

			if (op < 5) {
				i8259_write(&p, port, (uint8_t)(x >> 8));
			} else if (op < 7) {
				(void)i8259_read(&p, port);
			} else if (op < 13) {
				unsigned int irq = x >> 8 & 15;

				if (!(x & 0x10000))
					irq = x >> 8;	/* mostly > 15 */
				i8259_set_irq(&p, irq, x & 0x20000);
			} else {
				bool was = p.output;
				uint8_t v = i8259_ack(&p);
				uint8_t mb = p.chip[0].vector_base;
				uint8_t sb = p.chip[1].vector_base;

				acks++;
				delivered += was;
				if ((v & 0xf8) != mb && (v & 0xf8) != sb)
					vec_bad++;
			}
			if (!consistent(&p, &r))
				bad++;
		}
		if (r.repeated)
			bad++;
	}
	CHECK(bad == 0, "random bytes on every port, random lines and acks: "
	      "INTR always matches a recomputation, the callback tracks it");
	CHECK(vec_bad == 0, "every ack returns a vector of one of the bases");
	CHECK(acks > 0 && delivered > acks / 20,
	      "the random run reached delivered interrupts");
}

int main(void)
{
	test_reset_and_init();
	test_priorities();
	test_special_mask();
	test_cascade();
	test_edge_level();
	test_aeoi();
	test_poll();
	test_spurious();
	test_masking_and_callback();
	test_random();
	return tap_done();
}
