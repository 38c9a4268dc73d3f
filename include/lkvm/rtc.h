/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The MC146818 RTC and CMOS RAM (hw/rtc.c) at ports 0x70 (index) and 0x71
 * (data).
 *
 * The time of day is the host's UTC clock plus an offset that guest
 * writes set; the time registers are computed when read, so no thread
 * ticks them. The register model (struct rtc, rtc_*) reads its clock
 * through a callback so tests can move time by hand.
 */
#ifndef LKVM_RTC_H
#define LKVM_RTC_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#define RTC_INDEX_PORT 0x70
#define RTC_DATA_PORT 0x71
#define RTC_IRQ 8

/* CMOS addresses. */
#define RTC_SECONDS 0x00
#define RTC_SECONDS_ALARM 0x01
#define RTC_MINUTES 0x02
#define RTC_MINUTES_ALARM 0x03
#define RTC_HOURS 0x04
#define RTC_HOURS_ALARM 0x05
#define RTC_DAY_OF_WEEK 0x06
#define RTC_DAY_OF_MONTH 0x07
#define RTC_MONTH 0x08
#define RTC_YEAR 0x09
#define RTC_REG_A 0x0a
#define RTC_REG_B 0x0b
#define RTC_REG_C 0x0c
#define RTC_REG_D 0x0d
#define RTC_CENTURY 0x32

#define RTC_A_UIP 0x80
#define RTC_B_SET 0x80
#define RTC_B_PIE 0x40
#define RTC_B_AIE 0x20
#define RTC_B_UIE 0x10
#define RTC_B_DM_BINARY 0x04
#define RTC_B_24H 0x02
#define RTC_C_IRQF 0x80
#define RTC_C_PF 0x40
#define RTC_C_AF 0x20
#define RTC_C_UF 0x10
#define RTC_D_VRT 0x80

/* How long UIP is set before each update: 8 cycles of 32768 Hz. */
#define RTC_UIP_NS 244140

struct rtc {
	uint8_t cmos[128];
	uint8_t index;

	/* Guest time = host time + (off_sec, off_nsec), off_nsec < 1e9. */
	int64_t off_sec;
	int64_t off_nsec;
	/* Register C flags are brought up to this point of guest time. */
	int64_t flags_sec;
	int64_t flags_ticks;	/* in 1/32768 s */

	bool irq_level;
	/* The host clock (CLOCK_REALTIME when NULL). */
	void (*clock)(struct rtc *r, struct timespec *now);
	void (*irq)(struct rtc *r, bool level);
	void *opaque;
};

/* Power-on state: 24-hour BCD, divider running, NVRAM as it was. */
void rtc_reset(struct rtc *r);
/* port is RTC_INDEX_PORT or RTC_DATA_PORT. */
uint8_t rtc_read(struct rtc *r, uint16_t port);
void rtc_write(struct rtc *r, uint16_t port, uint8_t val);

/*
 * Writes the NVRAM bytes that describe the machine, as PC firmware (and
 * SeaBIOS under QEMU) reads them, and the checksum. low_top is the end of
 * RAM below 4 GiB, high the bytes of RAM above 4 GiB.
 */
void rtc_set_machine(struct rtc *r, uint64_t low_top, uint64_t high,
		     unsigned int ncpus);

/* Brings register C up to now and updates the interrupt output. */
void rtc_tick(struct rtc *r);
/*
 * When register C will next gain a flag that raises the interrupt, in
 * host time; false when no enabled interrupt can come (or one is
 * already pending, which only reading register C clears).
 */
bool rtc_next_event(struct rtc *r, struct timespec *when);

#endif
