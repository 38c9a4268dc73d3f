// SPDX-License-Identifier: GPL-2.0
/*
 * The 8254 programmable interval timer as a register model (see
 * include/lkvm/i8254.h and docs/i8254.md).
 *
 * Nothing ticks: each channel remembers when it started counting and
 * from how many clocks, and its count and OUT level at any time are
 * computed from the clock callback. Deliberate approximations:
 * - a written count starts counting at once (the chip loads it on the
 *   next CLK edge, 838 ns later);
 * - mode 3 with an odd count N shows even values: N+1, N-1, ..., 2 in
 *   the high half and N-1, ..., 2 in the low half; a count written while
 *   mode 2 or 3 runs takes over at the end of the period rather than of
 *   the half period;
 * - BCD counting decrements the decimal value; a written count with
 *   nibbles above 9 is taken digit by digit (so 0xffff counts 16665).
 */
#include "lkvm/i8254.h"

#include <string.h>
#include <time.h>

#define NSEC 1000000000LL
#define REFRESH_NS 15085	/* DRAM refresh: 18 clocks of channel 1 */

#define CTRL_PORT (I8254_PORT + 3)

static int64_t clock_now(struct i8254 *p)
{
	struct timespec ts;

	if (p->now)
		return p->now(p);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * NSEC + ts.tv_nsec;
}

/*
 * The input clock's edges are a fixed grid on the clock callback's time
 * line (edge k at ticks_to_ns(k)), as the chip's CLK is one oscillator
 * whatever the guest writes: a count written between two edges starts
 * counting at the next one. ns_to_ticks(x) is how many edges passed by x;
 * split at the second, it neither drifts nor overflows. Times before 0
 * count as 0.
 */
static int64_t ns_to_ticks(int64_t x)
{
	if (x < 0)
		return 0;
	return x / NSEC * (int64_t)I8254_HZ +
	       x % NSEC * (int64_t)I8254_HZ / NSEC;
}

/* Edge k: the first ns at which ns_to_ticks() reaches k. */
static int64_t ticks_to_ns(int64_t k)
{
	int64_t hz = I8254_HZ, a = k / hz, b = k % hz;

	return a * NSEC + (b * NSEC + hz - 1) / hz;
}

static uint32_t modulus(const struct i8254_channel *c)
{
	return c->bcd ? 10000 : 0x10000;
}

static uint16_t to_bcd(uint32_t v)
{
	return (uint16_t)(v % 10 | (v / 10 % 10) << 4 | (v / 100 % 10) << 8 |
			  (v / 1000 % 10) << 12);
}

static uint32_t from_bcd(uint16_t v)
{
	return (v & 0xf) + (v >> 4 & 0xf) * 10 + (v >> 8 & 0xf) * 100 +
	       (v >> 12 & 0xf) * 1000;
}

/* Clocks counted since the cycle began from n. */
static int64_t elapsed(const struct i8254_channel *c, int64_t x)
{
	if (c->frozen || x <= c->start_ns)
		return c->base_ticks;
	return c->base_ticks + ns_to_ticks(x) - ns_to_ticks(c->start_ns);
}

static void restart(struct i8254_channel *c, int64_t now, uint32_t n)
{
	c->n = n;
	c->start_ns = now;
	c->base_ticks = 0;
	c->counting = true;
	c->switch_pending = false;
	c->frozen = false;
}

/* A count written while mode 2 or 3 ran takes over at its period's end. */
static void settle(struct i8254_channel *c, int64_t x)
{
	if (c->switch_pending && !c->frozen && x >= c->switch_ns)
		restart(c, c->switch_ns, c->reload);
}

/* The count (binary, 0..modulus-1) and OUT at time x. */
static void state_at(const struct i8254_channel *in, int64_t x,
		     uint32_t *count, bool *out)
{
	struct i8254_channel c = *in;
	uint32_t m = modulus(&c), n, p, high;
	int64_t t;

	settle(&c, x);
	if (!c.counting) {
		*count = c.held;
		*out = c.mode != 0;
		return;
	}
	t = elapsed(&c, x);
	n = c.n;
	switch (c.mode) {
	case 0:
	case 1:
		*out = t >= n;
		*count = (uint32_t)((n + m - t % m) % m);
		break;
	case 2:
		p = (uint32_t)(t % n);
		*out = c.frozen || n == 1 || p != n - 1;
		*count = (n - p) % m;
		break;
	case 3:
		p = (uint32_t)(t % n);
		high = (n + 1) / 2;
		*out = c.frozen || p < high;
		if (p < high)
			*count = (((n + 1) & ~1u) - 2 * p) % m;
		else
			*count = ((n & ~1u) - 2 * (p - high)) % m;
		break;
	default:		/* 4, 5: strobe */
		*out = t != n;
		*count = (uint32_t)((n + m - t % m) % m);
		break;
	}
}

static uint16_t shown(const struct i8254_channel *c, uint32_t count)
{
	return c->bcd ? to_bcd(count % 10000) : (uint16_t)count;
}

static uint16_t count_now(const struct i8254_channel *c, int64_t now)
{
	uint32_t count;
	bool out;

	state_at(c, now, &count, &out);
	return shown(c, count);
}

static bool out_now(const struct i8254_channel *c, int64_t now)
{
	uint32_t count;
	bool out;

	state_at(c, now, &count, &out);
	return out;
}

/* When OUT first rises after time x, or -1. */
static int64_t rise_after(const struct i8254_channel *in, int64_t x)
{
	struct i8254_channel c = *in;
	int64_t t, rise;

	settle(&c, x);
	if (!c.counting || c.frozen)
		return -1;
	t = elapsed(&c, x);
	switch (c.mode) {
	case 0:
	case 1:
		rise = c.n;
		break;
	case 2:
	case 3:
		rise = (t / c.n + 1) * c.n;
		break;
	default:
		rise = (int64_t)c.n + 1;	/* end of the strobe */
		break;
	}
	if (rise <= t)
		return -1;
	return ticks_to_ns(ns_to_ticks(c.start_ns) + rise - c.base_ticks);
}

static void freeze(struct i8254_channel *c, int64_t now)
{
	uint32_t count;
	bool out;

	state_at(c, now, &count, &out);
	c->held = shown(c, count);
	c->base_ticks = elapsed(c, now);
	c->frozen = true;
}

static void set_gate(struct i8254_channel *c, int64_t now, bool gate)
{
	if (gate == c->gate)
		return;
	settle(c, now);
	c->gate = gate;
	if (!gate) {
		/* Modes 0, 2, 3 and 4 stop counting; 1 and 5 ignore it. */
		if (c->counting && !c->frozen && c->mode != 1 && c->mode != 5)
			freeze(c, now);
		return;
	}
	switch (c->mode) {
	case 0:
	case 4:
		if (c->frozen) {
			c->start_ns = now;
			c->frozen = false;
		}
		break;
	default:
		/* 2 and 3 reload and restart; 1 and 5 trigger. */
		if (c->reload)
			restart(c, now, c->reload);
		break;
	}
}

static void load(struct i8254_channel *c, int64_t now, uint16_t raw)
{
	uint32_t n = c->bcd ? from_bcd(raw) : raw;
	int64_t t, end;

	if (!n)
		n = modulus(c);
	settle(c, now);
	c->reload = n;
	c->null_count = true;
	switch (c->mode) {
	case 0:
	case 4:
		restart(c, now, n);
		break;
	case 2:
	case 3:
		if (c->counting && !c->frozen) {
			t = elapsed(c, now);
			end = (t / c->n + 1) * c->n;
			c->switch_ns = ticks_to_ns(ns_to_ticks(c->start_ns) +
						   end - c->base_ticks);
			c->switch_pending = true;
			return;
		}
		if (c->counting)	/* gate low: its rise reloads */
			return;
		restart(c, now, n);
		break;
	default:		/* 1, 5: wait for the gate to rise */
		return;
	}
	if (!c->gate) {
		c->held = shown(c, n % modulus(c));
		c->frozen = true;
	}
}

static void write_count(struct i8254_channel *c, int64_t now, uint8_t val)
{
	switch (c->rw) {
	case 1:
		load(c, now, val);
		break;
	case 2:
		load(c, now, (uint16_t)(val << 8));
		break;
	default:
		if (!c->write_msb_next) {
			c->write_lsb = val;
			c->write_msb_next = true;
			/* Mode 0 stops counting at the first byte. */
			if (c->mode == 0 && c->counting) {
				c->held = count_now(c, now);
				c->counting = false;
				c->frozen = false;
			}
			return;
		}
		c->write_msb_next = false;
		load(c, now, (uint16_t)(c->write_lsb | val << 8));
		break;
	}
}

static uint8_t read_count(struct i8254_channel *c, int64_t now)
{
	uint16_t v;
	bool msb;

	if (c->status_valid) {
		c->status_valid = false;
		return c->status;
	}
	if (c->latch_valid) {
		v = c->latched;
		msb = c->rw == 2 || (c->rw == 3 && c->latch_lsb_read);
		if (c->rw == 3 && !c->latch_lsb_read) {
			c->latch_lsb_read = true;
		} else {
			c->latch_valid = false;
			c->latch_lsb_read = false;
		}
		return msb ? v >> 8 : v & 0xff;
	}
	v = count_now(c, now);
	if (c->rw == 3) {
		msb = c->read_msb_next;
		c->read_msb_next = !msb;
	} else {
		msb = c->rw == 2;
	}
	return msb ? v >> 8 : v & 0xff;
}

static void latch_count(struct i8254_channel *c, int64_t now)
{
	if (c->latch_valid)
		return;
	c->latched = count_now(c, now);
	c->latch_valid = true;
	c->latch_lsb_read = false;
}

static void latch_status(struct i8254_channel *c, int64_t now)
{
	struct i8254_channel v = *c;
	bool null;

	if (c->status_valid)
		return;
	/* The count written is loaded once the channel counts from it. */
	settle(&v, now);
	null = c->null_count &&
	       !(v.counting && !v.switch_pending && v.n == c->reload &&
		 (v.frozen || elapsed(&v, now) > v.base_ticks));
	if (!null)
		c->null_count = false;
	c->status = (uint8_t)(out_now(c, now) << 7 | null << 6 | c->rw << 4 |
			      c->mode << 1 | c->bcd);
	c->status_valid = true;
}

static void control(struct i8254 *p, int64_t now, uint8_t val)
{
	unsigned int sel = val >> 6, rw = val >> 4 & 3, i;
	struct i8254_channel *c;

	if (sel == 3) {		/* read-back */
		for (i = 0; i < 3; i++) {
			if (!(val & 2 << i))
				continue;
			if (!(val & 0x20))
				latch_count(&p->ch[i], now);
			if (!(val & 0x10))
				latch_status(&p->ch[i], now);
		}
		return;
	}
	c = &p->ch[sel];
	if (!rw) {
		latch_count(c, now);
		return;
	}
	c->rw = (uint8_t)rw;
	c->mode = val >> 1 & 7;
	if (c->mode > 5)
		c->mode -= 4;
	c->bcd = val & 1;
	c->counting = false;
	c->frozen = false;
	c->switch_pending = false;
	c->reload = 0;
	c->null_count = true;
	c->write_msb_next = false;
	c->read_msb_next = false;
	c->latch_valid = false;
	c->latch_lsb_read = false;
	c->status_valid = false;
}

/* A rise of channel 0 the guest is about to reprogram away stays owed. */
static void note_rise(struct i8254 *p, int64_t now)
{
	int64_t r;

	if (p->rise_pending)
		return;
	r = rise_after(&p->ch[0], p->irq_done_ns);
	if (r >= 0 && r <= now) {
		p->rise_pending = true;
		p->rise_pending_ns = r;
	}
}

void i8254_reset(struct i8254 *p)
{
	int64_t (*now)(struct i8254 *) = p->now;
	void (*irq0)(struct i8254 *) = p->irq0;
	void *opaque = p->opaque;
	int64_t t;
	int i;

	memset(p, 0, sizeof(*p));
	p->now = now;
	p->irq0 = irq0;
	p->opaque = opaque;
	t = clock_now(p);
	for (i = 0; i < 3; i++) {
		p->ch[i].rw = 3;
		p->ch[i].gate = i < 2;
		p->ch[i].start_ns = t;
		p->ch[i].null_count = true;
	}
	p->irq_done_ns = t;
	p->last_pulse_ns = INT64_MIN / 2;
}

uint8_t i8254_read(struct i8254 *p, uint16_t port)
{
	int64_t now = clock_now(p);
	struct i8254_channel *c2 = &p->ch[2];

	if (port >= I8254_PORT && port < CTRL_PORT)
		return read_count(&p->ch[port - I8254_PORT], now);
	if (port == I8254_SPEAKER_PORT)
		return (uint8_t)(c2->gate | p->speaker_on << 1 |
				 ((uint64_t)now / REFRESH_NS & 1) << 4 |
				 out_now(c2, now) << 5);
	return 0xff;		/* the control word is write-only */
}

void i8254_write(struct i8254 *p, uint16_t port, uint8_t val)
{
	int64_t now = clock_now(p);

	note_rise(p, now);
	if (port >= I8254_PORT && port < CTRL_PORT) {
		write_count(&p->ch[port - I8254_PORT], now, val);
	} else if (port == CTRL_PORT) {
		control(p, now, val);
	} else if (port == I8254_SPEAKER_PORT) {
		p->speaker_on = val & 2;
		set_gate(&p->ch[2], now, val & 1);
	}
}

static int64_t next_irq(struct i8254 *p)
{
	int64_t r = p->rise_pending ? p->rise_pending_ns :
				      rise_after(&p->ch[0], p->irq_done_ns);
	int64_t min = p->last_pulse_ns + I8254_MIN_IRQ_NS;

	if (r < 0)
		return -1;
	return r > min ? r : min;
}

int64_t i8254_tick(struct i8254 *p)
{
	int64_t now = clock_now(p);
	int64_t due = next_irq(p);

	/* Too early (before the minimum interval): the rise stays owed. */
	if (due >= 0 && due <= now) {
		p->rise_pending = false;
		p->irq_done_ns = now;
		p->last_pulse_ns = now;
		if (p->irq0)
			p->irq0(p);
	}
	return next_irq(p);
}

int64_t i8254_next_irq(struct i8254 *p)
{
	return next_irq(p);
}
