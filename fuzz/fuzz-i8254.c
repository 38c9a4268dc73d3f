// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer harness for the 8254 PIT model (hw/i8254.c). The input is a
 * guest's port accesses and the time between them, three bytes each:
 * port and direction, value, and a time step. After each access the owner
 * ticks: a finding is a sanitizer report or a broken promise of
 * i8254_tick() (more than one pulse, pulses closer than the minimum
 * interval, a deadline not ahead of the clock, next_irq disagreeing).
 * Seeds: Linux's periodic set-up with latched reads, its TSC calibration
 * polling port 0x61, and counts of 1 and BCD with gate 2 toggling.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lkvm/i8254.h"

static int64_t fake_ns;
static unsigned int pulses;

static int64_t fake_clock(struct i8254 *p)
{
	(void)p;
	return fake_ns;
}

static void count_pulse(struct i8254 *p)
{
	(void)p;
	pulses++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint16_t ports[8] = { 0x40, 0x41, 0x42, 0x43,
					   0x61, 0x60, 0x44, 0x3f };
	int64_t last_pulse = INT64_MIN / 2, d;
	struct i8254 p;
	unsigned int before;
	size_t i;

	memset(&p, 0, sizeof(p));
	p.now = fake_clock;
	p.irq0 = count_pulse;
	fake_ns = 1000000000;
	pulses = 0;
	i8254_reset(&p);
	for (i = 0; i + 3 <= size; i += 3) {
		uint16_t port = ports[data[i] & 7];

		if (data[i] & 8)
			(void)i8254_read(&p, port);
		else
			i8254_write(&p, port, data[i + 1]);
		/* Steps of up to 255 << 30 ns (~270 s): within a clock and over
		 * many periods. */
		fake_ns += (int64_t)data[i + 2] << (data[i] >> 4 & 0xf) * 2;
		before = pulses;
		d = i8254_tick(&p);
		if (pulses > before + 1 || (d != -1 && d <= fake_ns) ||
		    i8254_next_irq(&p) != d)
			abort();
		if (pulses != before) {
			if (fake_ns - last_pulse < I8254_MIN_IRQ_NS)
				abort();
			last_pulse = fake_ns;
		}
	}
	return 0;
}
