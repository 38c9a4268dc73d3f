// SPDX-License-Identifier: GPL-2.0
/*
 * The 8254 PIT as a guest programs it, on a clock the test moves by hand:
 * Linux's periodic tick and TSC calibration, every mode, latches and
 * read-back, BCD, the IRQ 0 pulses the owner sees and their minimum
 * interval, and random bytes on every port.
 */
#include <stdlib.h>
#include <string.h>

#include "lkvm/i8254.h"
#include "tap.h"

#define NSEC 1000000000LL
#define T0 (1000 * NSEC)
#define CH0 0x40
#define CH2 0x42
#define CTRL 0x43

static int64_t fake_ns;
static unsigned int pulses;

static int64_t fake_clock(struct i8254 *p)
{
	(void)p;
	return fake_ns;
}

static void rec_irq0(struct i8254 *p)
{
	(void)p;
	pulses++;
}

/*
 * The PIT's input clock is a grid of edges, edge n at the first ns where
 * n * 1e9 / 1193182 is reached. When k edges have passed after time t,
 * by 128-bit arithmetic rather than the model's split one.
 */
static int64_t at_tick(int64_t t, int64_t k)
{
	__int128 n = (__int128)t * I8254_HZ / NSEC + k;

	return (int64_t)((n * NSEC + I8254_HZ - 1) / I8254_HZ);
}

static void setup(struct i8254 *p)
{
	memset(p, 0xa5, sizeof(*p));	/* reset must not rely on zeroes */
	p->now = fake_clock;
	p->irq0 = rec_irq0;
	p->opaque = NULL;
	fake_ns = T0;
	pulses = 0;
	i8254_reset(p);
}

static void out(struct i8254 *p, uint16_t port, uint8_t v)
{
	i8254_write(p, port, v);
}

static uint8_t in(struct i8254 *p, uint16_t port)
{
	return i8254_read(p, port);
}

/* Control word then an lsb/msb count. */
static void program(struct i8254 *p, int ch, uint8_t ctrl, uint16_t count)
{
	out(p, CTRL, ctrl);
	out(p, CH0 + ch, count & 0xff);
	out(p, CH0 + ch, count >> 8);
}

static uint16_t latched16(struct i8254 *p, int ch)
{
	uint8_t lo;

	out(p, CTRL, (uint8_t)(ch << 6));	/* latch command */
	lo = in(p, CH0 + ch);
	return lo | in(p, CH0 + ch) << 8;
}

static bool out2(struct i8254 *p)
{
	return in(p, 0x61) & 0x20;
}

/* A fresh PIT with gate 2 on and channel 2 programmed; when it started. */
static int64_t gated(struct i8254 *p, uint8_t ctrl, uint16_t count)
{
	int64_t s;

	setup(p);
	out(p, 0x61, 1);
	s = fake_ns;
	program(p, 2, ctrl, count);
	return s;
}

/* OUT2 low k - 1 clocks after s and high at k. */
static bool rises_at(struct i8254 *p, int64_t s, int64_t k)
{
	bool before;

	fake_ns = at_tick(s, k - 1);
	before = out2(p);
	fake_ns = at_tick(s, k);
	return !before && out2(p);
}

static void test_linux_periodic(void)
{
	struct i8254 p;
	int64_t start, next;
	uint16_t a, b, c;

	setup(&p);
	CHECK(i8254_next_irq(&p) == -1 && i8254_tick(&p) == -1 && !pulses,
	      "reset: no count, no IRQ 0");
	start = fake_ns;
	program(&p, 0, 0x34, 11932);
	next = i8254_next_irq(&p);
	CHECK(next == at_tick(start, 11932),
	      "mode 2, 11932: first IRQ 0 one period (10 ms) later");
	CHECK(next - start > 9999000 && next - start < 10001000,
	      "the period is 10 ms within 1 us");
	fake_ns = start + 1000000;
	a = latched16(&p, 0);
	CHECK(a == 11932 - 1193, "latched count after 1 ms: 11932 - 1193");
	fake_ns = start + 5000000;
	b = latched16(&p, 0);
	fake_ns = start + 9000000;
	c = latched16(&p, 0);
	CHECK(a > b && b > c && c > 0, "latched counts decrease over time");
	fake_ns = next - 1;
	CHECK(i8254_tick(&p) == next && pulses == 0,
	      "1 ns before the period ends: no pulse, same deadline");
	fake_ns = next;
	CHECK(i8254_tick(&p) == at_tick(start, 2 * 11932) && pulses == 1,
	      "at the period's end: one pulse, next deadline a period on");
	fake_ns = at_tick(start, 2 * 11932) + 1;
	CHECK(latched16(&p, 0) == 11932 ||
		      latched16(&p, 0) == 11931,
	      "the counter reloaded at the period's end");
	CHECK(i8254_tick(&p) == at_tick(start, 3 * 11932) && pulses == 2,
	      "second period: second pulse");
	fake_ns = at_tick(start, 100 * 11932) + 5;
	CHECK(i8254_tick(&p) == at_tick(start, 101 * 11932) && pulses == 3,
	      "98 periods missed: one pulse, deadline the 101st period");
	fake_ns += 100;
	CHECK(i8254_tick(&p) == at_tick(start, 101 * 11932) && pulses == 3,
	      "a tick before the deadline pulses nothing");
}

static void test_tsc_calibration(void)
{
	struct i8254 p;
	int64_t start;

	setup(&p);
	CHECK((in(&p, 0x61) & 0x23) == 0, "reset: gate 2 and speaker off");
	out(&p, 0x61, (in(&p, 0x61) & ~0x02) | 0x01);
	CHECK((in(&p, 0x61) & 3) == 1, "port 0x61 bit 0 reads back gate 2");
	start = fake_ns;
	program(&p, 2, 0xb0, 0xffff);
	CHECK(!out2(&p), "mode 0: OUT2 low after the count is written");
	fake_ns = at_tick(start, 0xffff) - 1;
	CHECK(!out2(&p), "OUT2 still low one ns before the count runs out");
	CHECK(latched16(&p, 2) == 1, "the count is 1 there");
	fake_ns = at_tick(start, 0xffff);
	CHECK(out2(&p), "OUT2 high once 0xffff clocks (54.9 ms) passed");
	fake_ns += 10 * NSEC;
	CHECK(out2(&p), "and stays high");
	CHECK(i8254_next_irq(&p) == -1 && !pulses,
	      "channel 2 never raises IRQ 0");

	/* Gate 2 off: counting stops, so OUT2 never rises. */
	setup(&p);
	program(&p, 2, 0xb0, 0xffff);
	fake_ns += NSEC;
	CHECK(!out2(&p) && latched16(&p, 2) == 0xffff,
	      "gate 2 off: the count holds and OUT2 stays low");
	out(&p, 0x61, 0x01);
	start = fake_ns;
	fake_ns = at_tick(start, 0x8000);
	out(&p, 0x61, 0x00);
	fake_ns += NSEC;
	CHECK(!out2(&p) && latched16(&p, 2) == 0x7fff,
	      "gate on for 0x8000 clocks then off: count 0x7fff held");
	out(&p, 0x61, 0x01);
	start = fake_ns;
	fake_ns = at_tick(start, 0x7fff) - 1;
	CHECK(!out2(&p), "gate on again: OUT2 low 1 ns before the rest runs");
	fake_ns = at_tick(start, 0x7fff);
	CHECK(out2(&p), "and high when the remaining 0x7fff clocks ran");
}

/* Mode 3's square wave, and gate 2 stopping it. */
static void test_mode3(void)
{
	struct i8254 p;
	int64_t s;
	int i, highs;

	/* Mode 3, count 4: high 2 clocks, low 2. */
	s = gated(&p, 0xb6, 4);
	highs = 0;
	for (i = 0; i < 40; i++) {
		fake_ns = at_tick(s, i);
		highs += out2(&p);
		if (out2(&p) != (i % 4 < 2))
			break;
	}
	CHECK(i == 40 && highs == 20, "mode 3, 4: high 2 clocks, low 2");
	/* Count 5: high 3, low 2. */
	s = fake_ns;
	program(&p, 2, 0xb6, 5);
	for (i = 0; i < 50; i++) {
		fake_ns = at_tick(s, i);
		if (out2(&p) != (i % 5 < 3))
			break;
	}
	CHECK(i == 50, "mode 3, 5: high 3 clocks (ceil), low 2 (floor)");
	fake_ns = at_tick(s, 7);
	CHECK(latched16(&p, 2) == 6 - 2 * 2,
	      "mode 3 counts down by 2 in each half");

	/* Gate 2 low in mode 3: OUT forced high; the rise restarts. */
	s = fake_ns = at_tick(s, 53);	/* low half */
	CHECK(!out2(&p), "mode 3 low half");
	out(&p, 0x61, 0);
	CHECK(out2(&p), "gate low in mode 3: OUT2 high at once");
	fake_ns += NSEC;
	out(&p, 0x61, 1);
	s = fake_ns;
	fake_ns = at_tick(s, 2);
	CHECK(out2(&p), "gate rise restarts: high half again");
	fake_ns = at_tick(s, 3);
	CHECK(!out2(&p), "and low after 3 clocks");

}

static void test_mode2(void)
{
	struct i8254 p;
	int64_t s;
	int i;

	s = gated(&p, 0xb4, 10);
	for (i = 0; i < 100; i++) {
		fake_ns = at_tick(s, i);
		if (out2(&p) != (i % 10 != 9))
			break;
	}
	CHECK(i == 100, "mode 2, 10: OUT low only on the 10th clock");
	/* A new count takes over at the end of the period. */
	fake_ns = at_tick(s, 103);
	out(&p, CH2, 20);
	out(&p, CH2, 0);
	fake_ns = at_tick(s, 109);
	CHECK(!out2(&p), "new count: the running period ends as before");
	fake_ns = at_tick(s, 110);
	CHECK(latched16(&p, 2) == 20,
	      "then the counter reloads with the new count");
	CHECK(rises_at(&p, s, 130),
	      "and the new period is 20 clocks");

}

/* Modes 1 and 5 start on a gate rise, 4 strobes, 0 pauses mid-count. */
static void test_one_shots(void)
{
	struct i8254 p;
	int64_t s;

	setup(&p);
	program(&p, 2, 0xb2, 100);
	fake_ns += NSEC;
	CHECK(out2(&p), "mode 1 before the trigger: OUT high");
	out(&p, 0x61, 1);
	s = fake_ns;
	fake_ns = at_tick(s, 50);
	CHECK(!out2(&p) && latched16(&p, 2) == 50,
	      "gate rise: OUT low, counting from 100");
	out(&p, 0x61, 0);
	fake_ns = at_tick(s, 60);
	CHECK(latched16(&p, 2) == 40, "gate low does not stop mode 1");
	out(&p, 0x61, 1);
	s = fake_ns;
	CHECK(rises_at(&p, s, 100),
	      "retrigger restarts the one-shot: OUT rises 100 clocks on");

	s = gated(&p, 0xb8, 30);	/* mode 4 */
	fake_ns = at_tick(s, 29);
	CHECK(out2(&p), "mode 4: OUT high while counting");
	CHECK(rises_at(&p, s, 31),
	      "low for the clock the count reaches 0, then high again");

	setup(&p);
	program(&p, 2, 0xba, 30);	/* mode 5 */
	fake_ns += NSEC;
	CHECK(out2(&p), "mode 5 before the trigger: OUT high");
	out(&p, 0x61, 1);
	s = fake_ns;
	CHECK(rises_at(&p, s, 31),
	      "mode 5: strobe one clock, 30 clocks after the gate rise");

	/* Mode 0: the first byte of a count stops counting. */
	s = gated(&p, 0xb0, 1000);
	fake_ns = at_tick(s, 400);
	out(&p, CH2, 0x00);
	fake_ns = at_tick(s, 2000);
	CHECK(!out2(&p) && latched16(&p, 2) == 600,
	      "mode 0: after the lsb, counting holds at 600, OUT low");
	s = fake_ns;
	out(&p, CH2, 0x01);
	CHECK(rises_at(&p, s, 256),
	      "the msb starts the new count 0x100");

	/* Modes 6 and 7 are 2 and 3. */
	s = gated(&p, 0xbc, 4);	/* mode 6 */
	CHECK(rises_at(&p, s, 4),
	      "mode 6 acts as mode 2");
	out(&p, CTRL, 0xe8);	/* status of channel 2 */
	CHECK((in(&p, CH2) >> 1 & 7) == 2, "and reads back as mode 2");
}

static void test_readback(void)
{
	struct i8254 p;
	int64_t s;
	uint8_t st;
	uint16_t v;

	setup(&p);
	out(&p, CTRL, 0x34);
	out(&p, CTRL, 0xe2);	/* status of channel 0 */
	CHECK(in(&p, CH0) == 0xf4,
	      "status after the control word: OUT high, null count, rw 3, "
	      "mode 2");
	s = fake_ns;
	out(&p, CH0, 0x00);
	out(&p, CH0, 0x10);
	fake_ns = at_tick(s, 0x100);
	out(&p, CTRL, 0xc2);	/* count and status of channel 0 */
	fake_ns = at_tick(s, 0x200);
	st = in(&p, CH0);
	v = in(&p, CH0);
	v |= in(&p, CH0) << 8;
	CHECK(st == 0xb4, "status once counting: 0xb4 (null count clear)");
	CHECK(v == 0x1000 - 0x100,
	      "read-back count: the value when latched, not when read");
	CHECK(latched16(&p, 0) == 0x1000 - 0x200,
	      "after the latch is read, reads are live again");

	/* A second latch before the first is read does not move it. */
	out(&p, CTRL, 0x00);
	fake_ns = at_tick(s, 0x300);
	out(&p, CTRL, 0x00);
	v = in(&p, CH0);
	v |= in(&p, CH0) << 8;
	CHECK(v == 0x1000 - 0x200, "a second latch command is ignored");

	/* Read-back of channels 0 and 2 at once, status only. */
	setup(&p);
	out(&p, CTRL, 0x30);	/* ch 0 mode 0 */
	out(&p, CTRL, 0xb7);	/* ch 2 mode 3 BCD */
	out(&p, CTRL, 0xea);	/* status of 0 and 2 */
	CHECK(in(&p, CH0) == 0x70 && in(&p, CH2) == 0xf7,
	      "read-back of two channels: mode 0 OUT low, mode 3 BCD high");
	out(&p, CTRL, 0xe4);	/* status of 1 */
	CHECK(in(&p, 0x41) == 0x30 + 0x40,
	      "channel 1 at reset: mode 0, rw 3, null count");
	CHECK(in(&p, CTRL) == 0xff, "the control port reads 0xff");
}

static void test_bcd_and_byte_modes(void)
{
	struct i8254 p;
	int64_t s;

	setup(&p);
	s = fake_ns;
	program(&p, 0, 0x31, 0x1000);	/* BCD 1000 */
	fake_ns = at_tick(s, 1);
	CHECK(latched16(&p, 0) == 0x0999, "BCD: 1000 - 1 reads 0x0999");
	fake_ns = at_tick(s, 500);
	CHECK(latched16(&p, 0) == 0x0500, "BCD: 500 clocks on, 0x0500");
	CHECK(i8254_next_irq(&p) == at_tick(s, 1000),
	      "BCD: terminal count after 1000 clocks, not 0x1000");
	s = fake_ns;
	program(&p, 0, 0x31, 0);
	fake_ns = at_tick(s, 1);
	CHECK(latched16(&p, 0) == 0x9999, "BCD: 0 means 10000");
	CHECK(i8254_next_irq(&p) == at_tick(s, 10000),
	      "BCD 0: IRQ after 10000 clocks");
	s = fake_ns;
	program(&p, 0, 0x30, 0);
	fake_ns = at_tick(s, 1);
	CHECK(latched16(&p, 0) == 0xffff && i8254_next_irq(&p) ==
		      at_tick(s, 0x10000),
	      "binary: 0 means 0x10000");

	setup(&p);
	s = fake_ns;
	out(&p, CTRL, 0x10);	/* lsb only, mode 0 */
	out(&p, CH0, 100);
	fake_ns = at_tick(s, 30);
	CHECK(in(&p, CH0) == 70 && in(&p, CH0) == 70,
	      "lsb only: writes and reads are one byte, the lsb");
	CHECK(i8254_next_irq(&p) == at_tick(s, 100), "lsb only: count 100");
	s = fake_ns;
	out(&p, CTRL, 0x20);	/* msb only */
	out(&p, CH0, 0x02);
	fake_ns = at_tick(s, 0x100);
	CHECK(in(&p, CH0) == 0x01 && in(&p, CH0) == 0x01,
	      "msb only: 0x200 less 0x100 clocks reads msb 0x01");
	CHECK(i8254_next_irq(&p) == at_tick(s, 0x200), "msb only: 0x200");
	out(&p, CTRL, 0x00);
	fake_ns = at_tick(s, 0x180);
	CHECK(in(&p, CH0) == 0x01 && in(&p, CH0) == 0x00,
	      "a latch in msb mode is one byte; the next read is live");
	out(&p, CTRL, 0x30);
	s = fake_ns;
	out(&p, CH0, 0x34);
	out(&p, CH0, 0x12);
	fake_ns = at_tick(s, 0x10);
	CHECK(in(&p, CH0) == 0x24 && in(&p, CH0) == 0x12,
	      "lsb then msb: live reads alternate");
}

static void test_irq0(void)
{
	struct i8254 p;
	int64_t s, d, last;
	int i;

	/* Mode 0: Linux's one-shot clockevent. */
	setup(&p);
	s = fake_ns;
	program(&p, 0, 0x30, 5000);
	d = i8254_next_irq(&p);
	CHECK(d == at_tick(s, 5000), "mode 0: IRQ at terminal count");
	fake_ns = d + 1000;
	CHECK(i8254_tick(&p) == -1 && pulses == 1,
	      "mode 0: one pulse, then no more");
	fake_ns += NSEC;
	CHECK(i8254_tick(&p) == -1 && pulses == 1, "even much later");
	s = fake_ns;
	program(&p, 0, 0x30, 5000);
	CHECK(i8254_next_irq(&p) == at_tick(s, 5000),
	      "rewriting the count re-arms mode 0");

	/* Mode 3 rises once per period. */
	setup(&p);
	s = fake_ns;
	program(&p, 0, 0x36, 1193);
	fake_ns = at_tick(s, 5 * 1193 + 600);
	CHECK(i8254_tick(&p) == at_tick(s, 6 * 1193) && pulses == 1,
	      "mode 3: 5 rises since the last tick are one pulse; the "
	      "deadline is the 6th");

	/* Mode 2 with a count of 1 or 2: the owner cannot spin. */
	for (int n = 1; n <= 2; n++) {
		setup(&p);
		program(&p, 0, 0x34, (uint16_t)n);
		last = INT64_MIN;
		for (i = 0; i < 1000; i++) {
			d = i8254_tick(&p);
			if (d < 0 || (i && d < last + I8254_MIN_IRQ_NS) ||
			    d <= fake_ns)
				break;
			last = d;
			fake_ns = d;
		}
		CHECK(i == 1000 && pulses == 999,
		      n == 1 ? "count 1: a pulse per tick, deadlines 50 us "
			       "apart and in the future"
			     : "count 2: likewise");
	}
	d = i8254_tick(&p);
	fake_ns += 10;
	CHECK(pulses == 1000 && d == fake_ns - 10 + I8254_MIN_IRQ_NS &&
		      i8254_next_irq(&p) == d && i8254_tick(&p) == d &&
		      pulses == 1000,
	      "a tick inside the minimum interval pulses nothing");

	/* A rise owed when the guest reprograms channel 0 is not lost. */
	setup(&p);
	s = fake_ns;
	program(&p, 0, 0x34, 1000);
	fake_ns = at_tick(s, 1500);
	program(&p, 0, 0x30, 0xffff);
	CHECK(i8254_next_irq(&p) == at_tick(s, 1000),
	      "reprogrammed after a rise the owner had not ticked: due");
	CHECK(i8254_tick(&p) == at_tick(fake_ns, 0xffff) && pulses == 1,
	      "the tick pulses it and then follows the new count");

	/* Mode 1 and 5 on channel 0 never trigger (gate 0 is high). */
	setup(&p);
	program(&p, 0, 0x32, 100);
	fake_ns += NSEC;
	CHECK(i8254_tick(&p) == -1 && !pulses, "mode 1 on channel 0: no IRQ");
	program(&p, 0, 0x38, 100);
	CHECK(i8254_next_irq(&p) == at_tick(fake_ns, 101),
	      "mode 4 on channel 0: IRQ at the strobe's end");
}

static void test_port61(void)
{
	struct i8254 p;
	int flips = 0, i;
	uint8_t v, prev;

	setup(&p);
	out(&p, 0x61, 0xfe);
	v = in(&p, 0x61);
	CHECK((v & 0xcf) == 0x02, "0x61: only bits 0 and 1 are written");
	prev = in(&p, 0x61) & 0x10;
	for (i = 0; i < 100; i++) {
		fake_ns += 15085;
		v = in(&p, 0x61) & 0x10;
		flips += v != prev;
		prev = v;
	}
	CHECK(flips == 100, "bit 4 flips every 15 us of clock time");
	fake_ns += 1000;
	CHECK((in(&p, 0x61) & 0x10) == prev, "and not in between");
}

/*
 * A reference channel 2 that steps clock by clock as the datasheet tells
 * it (count element, OUT, gate), with the model's documented choices: a
 * count starts at the next edge, mode 3 loads N+1 or N rounded down to
 * even for its halves, and a new count in modes 2 and 3 waits for the
 * reload. The closed-form model must agree with it after any sequence.
 */
struct ref {
	int mode;
	uint32_t n, active, ce;	/* n: 0 until a count is written */
	bool out, gate, run, strobed, pending, msb_next;
	uint8_t lsb;
};

static void ref_start(struct ref *r)
{
	r->active = r->n;
	r->ce = r->mode == 3 ? (r->n + 1) & ~1u : r->n;
	r->out = r->mode != 0 && r->mode != 1;
	r->run = true;
	r->strobed = false;
	r->pending = false;
}

static void ref_load(struct ref *r, uint16_t v)
{
	r->n = v ? v : 0x10000;
	switch (r->mode) {
	case 0:
	case 4:
		ref_start(r);
		break;
	case 2:
	case 3:
		if (!r->run)
			ref_start(r);
		else if (r->gate)
			r->pending = true;
		break;
	}
}

static void ref_gate(struct ref *r, bool g)
{
	bool rise = g && !r->gate;

	r->gate = g;
	if (!g && (r->mode == 2 || r->mode == 3))
		r->out = true;
	if (rise && r->n && r->mode != 0 && r->mode != 4)
		ref_start(r);
}

/* One input clock; true when OUT rose (in modes 2 and 3 with a count of
 * 1, OUT stays high and each clock counts as a rise). */
static bool ref_step(struct ref *r)
{
	bool was = r->out;

	if (!r->run || (!r->gate && r->mode != 1 && r->mode != 5))
		return false;
	switch (r->mode) {
	case 0:
	case 1:
		r->ce = (r->ce + 0xffff) % 0x10000;
		r->out |= r->ce == 0;
		break;
	case 2:
		r->ce--;
		r->out = r->ce != 1;
		if (r->ce == 0) {
			if (r->pending)
				r->active = r->n;
			r->pending = false;
			r->ce = r->active;
			r->out = true;
			return true;
		}
		break;
	case 3:
		if (r->active == 1)
			return true;
		r->ce -= 2;
		if (r->ce == 0) {
			r->out = !r->out;
			if (r->out && r->pending) {
				r->active = r->n;
				r->pending = false;
			}
			r->ce = r->out ? (r->active + 1) & ~1u : r->active & ~1u;
		}
		break;
	default:
		r->ce = (r->ce + 0xffff) % 0x10000;
		r->out = r->ce != 0 || r->strobed;
		r->strobed |= r->ce == 0;
		break;
	}
	return !was && r->out;
}

/* One byte to a channel's count, for the model and the reference. */
static void both_byte(struct i8254 *p, struct ref *r, uint16_t port,
		      uint8_t b)
{
	out(p, port, b);
	if (r->msb_next) {
		r->msb_next = false;
		ref_load(r, (uint16_t)(r->lsb | b << 8));
		return;
	}
	r->lsb = b;
	r->msb_next = true;
	if (r->mode == 0 && r->run) {
		r->run = false;
		r->out = false;
	}
}

static void test_reference(void)
{
	static const uint16_t counts[] = { 2, 3, 4, 5, 7, 10, 17, 64, 255,
					   256, 1000, 0xffff, 0 };
	unsigned int i, k, bad = 0, steps = 0;
	struct ref r = { .mode = 0 };
	int64_t origin, clk = 0;
	struct i8254 p;
	uint16_t v;

	srandom(82542);
	setup(&p);
	origin = fake_ns;
	for (i = 0; i < 100000 && !bad; i++) {
		switch (random() % 8) {
		case 0:
			k = random() % 8;
			out(&p, CTRL, (uint8_t)(0xb0 | k << 1));
			r = (struct ref){ .mode = k > 5 ? (int)k - 4 : (int)k,
					  .gate = r.gate };
			r.out = r.mode != 0;
			break;
		case 1:
			v = counts[random() % 13];
			both_byte(&p, &r, CH2, v & 0xff);
			both_byte(&p, &r, CH2, v >> 8);
			break;
		case 2:
			both_byte(&p, &r, CH2, (uint8_t)random());
			break;
		case 3:
			out(&p, 0x61, !r.gate);
			ref_gate(&r, !r.gate);
			break;
		default:
			k = random() % 5 ? random() % 40 : random() % 70000;
			clk += k;
			steps += k;
			while (k--)
				ref_step(&r);
			break;
		}
		/* Anywhere between this edge and the next. */
		fake_ns = at_tick(origin, clk) + random() % 838;
		if (out2(&p) != r.out)
			bad = 1;
		else if (r.run && latched16(&p, 2) != r.ce % 0x10000)
			bad = 2;
		else if (i % 16 == 0 && (out(&p, CTRL, 0xe8),
					 (bool)(in(&p, CH2) & 0x80) != r.out))
			bad = 3;
	}
	if (bad)
		printf("# reference: step %u, mode %d, n %u, clock %ld: %s "
		       "(model OUT %d count %u, reference OUT %d count %u)\n",
		       i, r.mode, r.n, (long)clk,
		       bad == 1 ? "OUT" : bad == 2 ? "count" : "status",
		       out2(&p), latched16(&p, 2), r.out, r.ce);
	CHECK(!bad, "channel 2 agrees with a clock-by-clock reference over "
		    "100000 random writes, gate flips and waits");
	printf("# reference: %u clocks stepped\n", steps);
}

/* When the reference's OUT next rises, in clocks from now, or -1. */
static int64_t ref_next_rise(const struct ref *r, int limit)
{
	struct ref c = *r;

	for (int k = 1; k <= limit; k++)
		if (ref_step(&c))
			return k;
	return -1;
}

/*
 * Channel 0 against the reference, through what the owner sees: after
 * every operation it ticks, and the pulses and deadlines must be the
 * reference's rises, merged when several came since the last pulse, held
 * back to 50 us after the last pulse, and kept when the guest reprograms
 * the channel before the tick.
 */
static void test_reference_irq0(void)
{
	static const uint16_t counts[] = { 2, 3, 5, 17, 60, 61, 100, 255,
					   1000 };
	unsigned int i, k, bad = 0, expect = 0, rises = 0;
	int64_t origin, clk = 0, first_owed = -1, last = INT64_MIN / 2;
	int64_t want, d, r_next;
	struct ref r = { .mode = 0, .gate = true };
	struct i8254 p;
	uint16_t v;

	srandom(8254000);
	setup(&p);
	origin = fake_ns;
	for (i = 0; i < 30000 && !bad; i++) {
		switch (random() % 6) {
		case 0:
			k = random() % 6;
			if (k == 1 || k == 5)	/* never trigger on gate 0 */
				k = 2;
			out(&p, CTRL, (uint8_t)(0x30 | k << 1));
			r = (struct ref){ .mode = (int)k, .gate = true };
			r.out = r.mode != 0;
			break;
		case 1:
			v = counts[random() % 9];
			both_byte(&p, &r, CH0, v & 0xff);
			both_byte(&p, &r, CH0, v >> 8);
			break;
		default:
			k = random() % 4 ? random() % 100 : random() % 3000;
			while (k--) {
				clk++;
				if (ref_step(&r)) {
					rises++;
					if (first_owed < 0)
						first_owed = at_tick(origin, clk);
				}
			}
			break;
		}
		fake_ns = at_tick(origin, clk) + random() % 838;
		if (first_owed >= 0 && fake_ns >= last + I8254_MIN_IRQ_NS) {
			expect++;
			first_owed = -1;
			last = fake_ns;
		}
		r_next = ref_next_rise(&r, 2100);
		want = first_owed >= 0 ? first_owed :
		       r_next < 0 ? -1 : at_tick(origin, clk + r_next);
		if (want >= 0 && want < last + I8254_MIN_IRQ_NS)
			want = last + I8254_MIN_IRQ_NS;
		d = i8254_tick(&p);
		if (pulses != expect || d != want) {
			printf("# irq0 reference: step %u, mode %d, n %u: "
			       "pulses %u want %u, deadline %+ld want %+ld "
			       "(ns from now)\n", i, r.mode, r.n, pulses,
			       expect, d < 0 ? -1 : (long)(d - fake_ns),
			       want < 0 ? -1 : (long)(want - fake_ns));
			bad = 1;
		}
	}
	CHECK(!bad, "IRQ 0 pulses and deadlines follow a clock-by-clock "
		    "reference of channel 0 over 30000 random operations");
	printf("# irq0 reference: %u rises, %u pulses\n", rises, expect);
}

static void test_random(void)
{
	static const uint16_t ports[] = { 0x40, 0x41, 0x42, 0x43, 0x61,
					  0x44, 0x60, 0x3f };
	struct i8254 p;
	int64_t d, last_pulse = INT64_MIN / 2;
	unsigned int before, bad = 0, i, j;
	uint8_t v;

	srandom(8254);
	setup(&p);
	for (i = 0; i < 200000; i++) {
		uint16_t port = ports[random() % 8];

		if (random() % 2)
			i8254_write(&p, port, (uint8_t)random());
		else
			(void)i8254_read(&p, port);
		fake_ns += random() % 3 ? random() % 2000 : random() % 100000000;
		before = pulses;
		d = i8254_tick(&p);
		if (pulses > before + 1)
			bad |= 1;
		if (pulses != before) {
			if (fake_ns - last_pulse < I8254_MIN_IRQ_NS)
				bad |= 2;
			last_pulse = fake_ns;
		}
		if (d != -1 && d <= fake_ns)
			bad |= 4;
		if (i8254_next_irq(&p) != d)
			bad |= 8;
		if ((in(&p, 0x61) & 0xcc) != 0)
			bad |= 16;
		if (i % 1000 == 0) {
			out(&p, CTRL, 0xee);	/* status of all three */
			for (j = 0; j < 3; j++) {
				v = in(&p, (uint16_t)(CH0 + j));
				if (!(v >> 4 & 3) || (v >> 1 & 7) > 5)
					bad |= 32;
			}
		}
	}
	CHECK(!bad, "200000 random port accesses: at most one pulse per "
		    "tick, 50 us apart, deadlines ahead, status sane");
	printf("# random: %u pulses, bad mask %#x\n", pulses, bad);
}

int main(void)
{
	test_linux_periodic();
	test_tsc_calibration();
	test_mode3();
	test_mode2();
	test_one_shots();
	test_readback();
	test_bcd_and_byte_modes();
	test_irq0();
	test_port61();
	test_reference();
	test_reference_irq0();
	test_random();
	return tap_done();
}
