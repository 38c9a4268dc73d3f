// SPDX-License-Identifier: GPL-2.0
/*
 * The MC146818 RTC as a guest reads it, on a clock the test moves by hand,
 * and the CMOS bytes firmware reads for several memory sizes.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "lkvm/device.h"
#include "lkvm/iobus.h"
#include "lkvm/machine.h"
#include "lkvm/rtc.h"
#include "tap.h"

#define NSEC 1000000000L

/* 2024-02-29 13:45:56 UTC, a Thursday. */
#define T0 1709214356L

static struct timespec fake_now;
static unsigned int rises;

static void fake_clock(struct rtc *r, struct timespec *ts)
{
	(void)r;
	*ts = fake_now;
}

static void rec_irq(struct rtc *r, bool level)
{
	(void)r;
	rises += level;
}

static void set_clock(long sec, long nsec)
{
	fake_now.tv_sec = sec;
	fake_now.tv_nsec = nsec;
}

static void advance(long nsec)
{
	fake_now.tv_nsec += nsec;
	fake_now.tv_sec += fake_now.tv_nsec / NSEC;
	fake_now.tv_nsec %= NSEC;
}

static uint8_t rd(struct rtc *r, uint8_t idx)
{
	rtc_write(r, RTC_INDEX_PORT, idx);
	return rtc_read(r, RTC_DATA_PORT);
}

static void wr(struct rtc *r, uint8_t idx, uint8_t v)
{
	rtc_write(r, RTC_INDEX_PORT, idx);
	rtc_write(r, RTC_DATA_PORT, v);
}

static void setup(struct rtc *r)
{
	memset(r, 0, sizeof(*r));
	r->clock = fake_clock;
	r->irq = rec_irq;
	rises = 0;
	set_clock(T0, 500000000);
	rtc_reset(r);
}

static bool time_is(struct rtc *r, uint8_t c, uint8_t y, uint8_t mo,
		    uint8_t d, uint8_t h, uint8_t mi, uint8_t s)
{
	return rd(r, RTC_CENTURY) == c && rd(r, RTC_YEAR) == y &&
	       rd(r, RTC_MONTH) == mo && rd(r, RTC_DAY_OF_MONTH) == d &&
	       rd(r, RTC_HOURS) == h && rd(r, RTC_MINUTES) == mi &&
	       rd(r, RTC_SECONDS) == s;
}

static void test_time(void)
{
	struct rtc r;

	setup(&r);
	CHECK(rd(&r, RTC_REG_A) == 0x26 && rd(&r, RTC_REG_B) == 0x02 &&
		      rd(&r, RTC_REG_D) == 0x80,
	      "reset: A 0x26 (running), B 0x02 (24 h, BCD), D VRT");
	CHECK(time_is(&r, 0x20, 0x24, 0x02, 0x29, 0x13, 0x45, 0x56) &&
		      rd(&r, RTC_DAY_OF_WEEK) == 5,
	      "BCD: 2024-02-29 13:45:56 UTC, Thursday (5)");
	wr(&r, RTC_REG_B, 0x06);
	CHECK(time_is(&r, 20, 24, 2, 29, 13, 45, 56),
	      "binary mode (B.DM) shows the same time in binary");
	wr(&r, RTC_REG_B, 0x00);
	CHECK(rd(&r, RTC_HOURS) == 0x81, "12-hour BCD: 1 PM is 0x81");
	wr(&r, RTC_REG_B, 0x04);
	CHECK(rd(&r, RTC_HOURS) == 0x81, "12-hour binary: 1 PM is 0x81");
	set_clock(T0 - 13 * 3600 - 45 * 60 - 56, 0);	/* midnight */
	CHECK(rd(&r, RTC_HOURS) == 12, "12-hour: midnight is 12 AM");
	advance(12 * 3600 * NSEC);
	CHECK(rd(&r, RTC_HOURS) == 0x8c, "12-hour: noon is 12 PM (0x8c)");
	wr(&r, RTC_REG_B, 0x02);
	CHECK(rd(&r, RTC_HOURS) == 0x12, "back to 24-hour BCD");

	set_clock(T0, 999700000);
	CHECK(!(rd(&r, RTC_REG_A) & 0x80),
	      "UIP clear 300 us before the update");
	set_clock(T0, 999800000);
	CHECK(rd(&r, RTC_REG_A) & 0x80, "UIP set 200 us before the update");
	CHECK(rd(&r, RTC_SECONDS) == 0x56, "registers hold until the second");
	set_clock(T0 + 1, 1000);
	CHECK(!(rd(&r, RTC_REG_A) & 0x80) && rd(&r, RTC_SECONDS) == 0x57,
	      "after the update: UIP clear, seconds advanced");
	wr(&r, RTC_REG_A, 0xa6);
	CHECK(rd(&r, RTC_REG_A) == 0x26, "UIP cannot be written");
}

static void test_set(void)
{
	struct rtc r;

	setup(&r);
	wr(&r, RTC_REG_B, 0x82 | RTC_B_UIE);
	CHECK(rd(&r, RTC_REG_B) == 0x82, "setting SET clears UIE");
	advance(10L * NSEC);
	CHECK(rd(&r, RTC_SECONDS) == 0x56 && !(rd(&r, RTC_REG_A) & 0x80),
	      "SET freezes the registers; no UIP");
	wr(&r, RTC_CENTURY, 0x20);
	wr(&r, RTC_YEAR, 0x99);
	wr(&r, RTC_MONTH, 0x12);
	wr(&r, RTC_DAY_OF_MONTH, 0x31);
	wr(&r, RTC_HOURS, 0x23);
	wr(&r, RTC_MINUTES, 0x59);
	wr(&r, RTC_SECONDS, 0x58);
	CHECK(time_is(&r, 0x20, 0x99, 0x12, 0x31, 0x23, 0x59, 0x58),
	      "writes under SET read back as written");
	wr(&r, RTC_REG_B, 0x02);
	advance(3L * NSEC);
	CHECK(time_is(&r, 0x21, 0x00, 0x01, 0x01, 0x00, 0x00, 0x01),
	      "clearing SET runs on from there: 2100-01-01 00:00:01");
	CHECK(rd(&r, RTC_DAY_OF_WEEK) == 6, "2100-01-01 is a Friday (6)");

	wr(&r, RTC_MINUTES, 0x30);
	CHECK(rd(&r, RTC_MINUTES) == 0x30 && rd(&r, RTC_SECONDS) == 0x01 &&
		      rd(&r, RTC_YEAR) == 0x00,
	      "a time register written while running sets just that field");
	advance(NSEC);
	CHECK(rd(&r, RTC_SECONDS) == 0x02, "and the clock goes on");

	wr(&r, RTC_REG_B, 0x82);
	for (uint8_t i = 0; i <= 9; i++)
		wr(&r, i, 0xff);
	wr(&r, RTC_CENTURY, 0xff);
	wr(&r, RTC_REG_B, 0x02);
	CHECK(rd(&r, RTC_REG_D) == 0x80, "garbage in every time register: "
					 "the clock survives");
	wr(&r, RTC_REG_B, 0x86);
	for (uint8_t i = 0; i <= 9; i++)
		wr(&r, i, 0xff);
	wr(&r, RTC_REG_B, 0x06);
	CHECK(rd(&r, RTC_REG_D) == 0x80, "and in binary mode");

	setup(&r);
	wr(&r, RTC_REG_A, 0x76);	/* divider held in reset */
	advance(5L * NSEC);
	CHECK(rd(&r, RTC_SECONDS) == 0x56, "divider reset stops the clock");
	wr(&r, RTC_REG_A, 0x26);
	advance(400000000);
	CHECK(rd(&r, RTC_SECONDS) == 0x56, "restarted: no update for 500 ms");
	advance(200000000);
	CHECK(rd(&r, RTC_SECONDS) == 0x57, "then the first update");
}

static void test_interrupts(void)
{
	struct rtc r;
	struct timespec when;

	setup(&r);
	CHECK(!rtc_next_event(&r, &when), "no interrupt enabled: no timer");
	wr(&r, RTC_REG_B, 0x02 | RTC_B_UIE);
	CHECK(rtc_next_event(&r, &when) && when.tv_sec == T0 + 1 &&
		      when.tv_nsec == 0,
	      "UIE: the next event is the next update");
	advance(600000000);
	rtc_tick(&r);
	CHECK(rises == 1, "UIE: IRQ 8 raised after the update");
	CHECK(!rtc_next_event(&r, &when),
	      "nothing to wake for while the flag is unread");
	/* PF runs at register A's rate (1024 Hz) whether PIE is on or not. */
	CHECK(rd(&r, RTC_REG_C) == 0xd0 && rd(&r, RTC_REG_C) == 0 &&
		      !r.irq_level,
	      "register C: IRQF|PF|UF, cleared by reading it");

	setup(&r);
	wr(&r, RTC_REG_B, 0x02 | RTC_B_PIE);	/* A: rate 6, 1024 Hz */
	CHECK(rtc_next_event(&r, &when) && when.tv_sec == T0 &&
		      when.tv_nsec > 500000000 && when.tv_nsec <= 500976563,
	      "PIE at 1024 Hz: the next event within 977 us");
	fake_now = when;
	rtc_tick(&r);
	CHECK(rises == 1 && (rd(&r, RTC_REG_C) & 0xc0) == 0xc0,
	      "PIE: PF and IRQF at the period");
	wr(&r, RTC_REG_B, 0x02);
	advance(600000000);
	CHECK(rd(&r, RTC_REG_C) == (RTC_C_PF | RTC_C_UF),
	      "flags without enables: PF and UF set, IRQF clear");

	setup(&r);
	wr(&r, RTC_SECONDS_ALARM, 0x58);
	wr(&r, RTC_MINUTES_ALARM, 0xff);	/* any minute */
	wr(&r, RTC_HOURS_ALARM, 0xc0);		/* any hour */
	wr(&r, RTC_REG_B, 0x02 | RTC_B_AIE);
	advance(NSEC);
	rtc_tick(&r);
	CHECK(rises == 0, "alarm: not yet at :57");
	advance(NSEC);
	rtc_tick(&r);
	CHECK(rises == 1 && (rd(&r, RTC_REG_C) & 0xa0) == 0xa0,
	      "alarm at :58 with don't-care hour and minute: AF, IRQF");
	advance(3L * 86400 * NSEC);
	CHECK(rd(&r, RTC_REG_C) & 0x20, "an alarm passed days ago still shows");
}

/* ---- CMOS through the ports, from the machine's memory map ----------- */

static const struct device_ops *find_device(const char *name)
{
	unsigned int n;
	const struct device_ops *const *d = device_list(&n);

	for (unsigned int i = 0; i < n; i++)
		if (!strcmp(d[i]->name, name))
			return d[i];
	return NULL;
}

static uint8_t cmos(struct machine *m, uint8_t idx)
{
	uint8_t v = idx | 0x80;		/* NMI mask bit: ignored */

	iobus_access(m->pio, NULL, 0x70, &v, 1, true);
	iobus_access(m->pio, NULL, 0x71, &v, 1, false);
	return v;
}

struct size_case {
	const char *what;
	uint64_t low, high;	/* RAM below 4 GiB (from 0), from 4 GiB */
	unsigned int cpus;
	uint16_t ext, ext16;
	uint32_t hi64k;
};

static void check_sizes(const struct size_case *c)
{
	const struct device_ops *ops = find_device("rtc");
	struct machine *m = calloc(1, sizeof(*m));
	unsigned int sum = 0;
	uint8_t v[2] = { 0x40, 0xab };
	char what[160];

	m->wake_fd = -1;
	m->epoll_fd = epoll_create1(0);
	m->pio = iobus_new(IOBUS_PIO);
	m->cfg.ncpus = c->cpus;
	m->ram_size = c->low + c->high;
	m->mem[m->nmem++] = (struct mem_region){ 0, c->low, NULL, 0, false };
	if (c->high)
		m->mem[m->nmem++] = (struct mem_region){ 4ull << 30, c->high,
							 NULL, 1, false };
	/* Firmware ROM below 4 GiB is not RAM. */
	m->mem[m->nmem++] = (struct mem_region){ 0xfffc0000, 0x40000, NULL,
						 2, true };
	if (!ops || machine_setup_config(m) || ops->init(m)) {
		CHECK(0, "rtc device: init");
		return;
	}
	snprintf(what, sizeof(what), "%s: base 640 KiB, extended %#x KiB",
		 c->what, c->ext);
	CHECK((cmos(m, 0x15) | cmos(m, 0x16) << 8) == 640 &&
		      (cmos(m, 0x17) | cmos(m, 0x18) << 8) == c->ext &&
		      (cmos(m, 0x30) | cmos(m, 0x31) << 8) == c->ext,
	      what);
	snprintf(what, sizeof(what),
		 "%s: %#x x 64 KiB above 16 MiB, %#x above 4 GiB",
		 c->what, c->ext16, c->hi64k);
	CHECK((cmos(m, 0x34) | cmos(m, 0x35) << 8) == c->ext16 &&
		      (cmos(m, 0x5b) | cmos(m, 0x5c) << 8 |
		       (uint32_t)cmos(m, 0x5d) << 16) == c->hi64k,
	      what);
	snprintf(what, sizeof(what), "%s: %u CPUs (0x5f = %u)", c->what,
		 c->cpus, c->cpus - 1);
	CHECK(cmos(m, 0x5f) == c->cpus - 1, what);
	for (uint8_t i = 0x10; i <= 0x2d; i++)
		sum += cmos(m, i);
	snprintf(what, sizeof(what), "%s: checksum 0x2e/0x2f over 0x10-0x2d",
		 c->what);
	CHECK((unsigned int)(cmos(m, 0x2e) << 8 | cmos(m, 0x2f)) == sum, what);

	iobus_access(m->pio, NULL, 0x70, v, 2, true);
	CHECK(cmos(m, 0x40) == 0xab, "NVRAM keeps a guest write (16-bit out)");
	v[0] = 0;
	iobus_access(m->pio, NULL, 0x70, v, 1, false);
	CHECK(v[0] == 0xff, "the index register reads 0xff");

	ops->exit(m);
	for (unsigned int i = 0; i < m->ndev; i++)
		free(m->dev_cfg[i]);
	free(m->dev_cfg);
	iobus_free(m->pio);
	close(m->epoll_fd);
	free(m);
}

int main(void)
{
	static const struct size_case sizes[] = {
		{ "32 MiB", 32ull << 20, 0, 1, 0x7c00, 0x100, 0 },
		{ "128 MiB", 128ull << 20, 0, 2, 0xffff, 0x700, 0 },
		{ "1 GiB", 1ull << 30, 0, 4, 0xffff, 0x3f00, 0 },
		{ "6 GiB", 3ull << 30, 3ull << 30, 8, 0xffff, 0xbf00, 0xc000 },
	};

	test_time();
	test_set();
	test_interrupts();
	for (unsigned int i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		check_sizes(&sizes[i]);
	return tap_done();
}
