/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The 8254 PIT (hw/i8254.c) at ports 0x40-0x43, with port 0x61's gate and
 * output of channel 2 (the PC speaker's timer, which Linux uses to
 * calibrate the TSC). Used when lkvm runs on KVM's split irqchip. The
 * register model computes counts from a clock callback (nanoseconds,
 * monotonic) when read, so nothing ticks it; its owner asks when channel
 * 0's output next rises and calls i8254_tick() then, which pulses IRQ 0.
 */
#ifndef LKVM_I8254_H
#define LKVM_I8254_H

#include <stdbool.h>
#include <stdint.h>

#define I8254_PORT 0x40		/* channels 0-2, then the control word */
#define I8254_SPEAKER_PORT 0x61
#define I8254_HZ 1193182ull
/* The shortest interval between IRQ 0 pulses i8254_tick() allows, so a
 * guest programming a count of 1 or 2 cannot make its owner spin. */
#define I8254_MIN_IRQ_NS 50000

struct i8254_channel {
	uint8_t mode;		/* 0-5 */
	uint8_t rw;		/* 1 lsb, 2 msb, 3 lsb then msb */
	bool bcd;
	bool gate;
	uint32_t reload;	/* 1..0x10000 (0 written means 0x10000;
				 * in BCD the decimal value, 0 meaning
				 * 10000); 0 until a count is written */
	int64_t start_ns;	/* when counting began (from n, at
				 * base_ticks clocks) */
	bool counting;		/* a count was loaded (and, for modes 1
				 * and 5, the gate rose) */
	/* Counter latch and status latch (read-back). */
	uint16_t latched;
	bool latch_valid, latch_lsb_read;
	uint8_t status;
	bool status_valid;
	/* lsb/msb sequencing for reads and writes. */
	bool write_msb_next, read_msb_next;
	uint8_t write_lsb;
	bool null_count;
	/* Internal: the count of the running cycle (reload is the last
	 * written), the elapsed clocks at start_ns, counting paused by a
	 * low gate, a count written in mode 2/3 that takes over at
	 * switch_ns (the end of the running period), and the count shown
	 * while nothing counts. */
	uint32_t n;
	int64_t base_ticks;
	bool frozen;
	bool switch_pending;
	int64_t switch_ns;
	uint16_t held;
};

struct i8254 {
	struct i8254_channel ch[3];
	bool speaker_on;	/* port 0x61 bit 1 */
	int64_t irq_done_ns;	/* channel 0 rises up to here were pulsed */
	/* Internal: a rise of channel 0 seen when the guest reprogrammed it
	 * before the owner ticked, and when IRQ 0 was last pulsed (the
	 * minimum interval counts from there). */
	bool rise_pending;
	int64_t rise_pending_ns;
	int64_t last_pulse_ns;
	/* The clock, ns (CLOCK_MONOTONIC when NULL). */
	int64_t (*now)(struct i8254 *p);
	/* One pulse of IRQ 0 (a rise of channel 0's output). */
	void (*irq0)(struct i8254 *p);
	void *opaque;
};

void i8254_reset(struct i8254 *p);
/* port is 0x40-0x43 or 0x61. */
uint8_t i8254_read(struct i8254 *p, uint16_t port);
void i8254_write(struct i8254 *p, uint16_t port, uint8_t val);
/*
 * Pulses IRQ 0 once if channel 0's output rose since the last call (rises
 * that came together count as one, as on an edge-triggered line), and
 * returns when it next rises, in clock ns, or -1 when it will not
 * (mode 0 already fired, no count, gate low).
 */
int64_t i8254_tick(struct i8254 *p);
/* When channel 0's output next rises after the last tick, or -1: what
 * the owner's timer is set to after a guest write. */
int64_t i8254_next_irq(struct i8254 *p);

#endif
