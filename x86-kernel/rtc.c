/* The MC146818 RTC in CMOS: the rtc check, and the second boundaries that
 * the pit check measures against. */
#include "kernel.h"

#define CMOS_INDEX 0x70
#define CMOS_DATA 0x71
#define REG_SEC 0x00
#define REG_MIN 0x02
#define REG_HOUR 0x04
#define REG_DAY 0x07
#define REG_MON 0x08
#define REG_YEAR 0x09
#define REG_A 0x0a
#define REG_B 0x0b
#define REG_D 0x0d
#define REG_CENTURY 0x32
#define A_UIP 0x80
#define B_SET 0x80
#define B_BINARY 0x04
#define B_24H 0x02
#define D_VRT 0x80

/* How far the RTC may be from hosttime=: the script samples the host clock
 * before the VMM starts, so the RTC is behind only by rounding and ahead by
 * at most the VMM's start-up plus firmware time (see README). */
#define HOST_BEHIND_S 2
#define HOST_AHEAD_S 15

struct rtc_edge rtc_last_edge;

static uint8_t cmos_read(uint8_t reg)
{
	outb(CMOS_INDEX, reg);
	return inb(CMOS_DATA);
}

struct rtc_raw {
	uint8_t sec, min, hour, day, mon, year, century;
};

/* Wait while an update is in progress (UIP is set at most 244 us before
 * and during the ~2 ms update); more than three ticks means it is stuck. */
static bool wait_uip_clear(void)
{
	for (int i = 0; i < 4; i++) {
		for (int j = 0; j < 50; j++)
			if (!(cmos_read(REG_A) & A_UIP))
				return true;
		wait_tick();
	}
	return false;
}

static void read_raw(struct rtc_raw *r)
{
	r->sec = cmos_read(REG_SEC);
	r->min = cmos_read(REG_MIN);
	r->hour = cmos_read(REG_HOUR);
	r->day = cmos_read(REG_DAY);
	r->mon = cmos_read(REG_MON);
	r->year = cmos_read(REG_YEAR);
	r->century = cmos_read(REG_CENTURY);
}

/* The update-in-progress protocol: read after UIP clears, twice, until two
 * reads agree, so no value comes from the middle of an update. */
static bool rtc_read(struct rtc_raw *r, const char **err)
{
	struct rtc_raw a, b;
	for (int tries = 0; tries < 5; tries++) {
		if (!wait_uip_clear()) {
			*err = "UIP (register A bit 7) stays set";
			return false;
		}
		read_raw(&a);
		if (!wait_uip_clear()) {
			*err = "UIP (register A bit 7) stays set";
			return false;
		}
		read_raw(&b);
		if (!memcmp(&a, &b, sizeof(a))) {
			*r = a;
			return true;
		}
	}
	*err = "time registers changed between every pair of reads";
	return false;
}

bool rtc_wait_edge(unsigned max_ticks, struct rtc_edge *e)
{
	uint8_t s0 = cmos_read(REG_SEC);
	for (unsigned i = 0; i < max_ticks; i++) {
		wait_tick();
		if (cmos_read(REG_A) & A_UIP)
			continue;
		uint8_t s = cmos_read(REG_SEC);
		if (s != s0) {
			e->valid = true;
			e->ticks = ticks;
			e->sec = s;
			uint8_t b = cmos_read(REG_B);
			if (!(b & B_BINARY))
				e->sec = (uint8_t)((s >> 4) * 10 + (s & 15));
			rtc_last_edge = *e;
			return true;
		}
	}
	return false;
}

struct tm_s {
	int year, mon, day, hour, min, sec;
};

static bool bcd_ok(uint8_t v)
{
	return (v & 15) < 10 && (v >> 4) < 10;
}

static int from_bcd(uint8_t v)
{
	return (v >> 4) * 10 + (v & 15);
}

static int days_in_month(int y, int m)
{
	static const uint8_t d[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	return m == 2 && leap ? 29 : d[m - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t days_from_civil(int y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int64_t to_unix(const struct tm_s *t)
{
	return days_from_civil(t->year, t->mon, t->day) * 86400 +
	       t->hour * 3600 + t->min * 60 + t->sec;
}

static bool decode(const struct rtc_raw *r, uint8_t regb, struct tm_s *t,
		   char *msg, size_t n)
{
	bool bcd = !(regb & B_BINARY);
	uint8_t hour = r->hour;
	bool pm = false;
	if (!(regb & B_24H)) {
		pm = hour & 0x80;
		hour &= 0x7f;
	}
	const uint8_t vals[6] = { r->sec, r->min, hour, r->day, r->mon, r->year };
	static const char *const names[6] = { "seconds", "minutes", "hours",
					      "day", "month", "year" };
	int dec[6];
	for (int i = 0; i < 6; i++) {
		if (bcd && !bcd_ok(vals[i])) {
			ksnprintf(msg, n, "%s register 0x%02x is not BCD", names[i],
				  vals[i]);
			return false;
		}
		dec[i] = bcd ? from_bcd(vals[i]) : vals[i];
	}
	int century = 20;
	if (bcd && bcd_ok(r->century) && from_bcd(r->century) >= 19 &&
	    from_bcd(r->century) <= 21)
		century = from_bcd(r->century);
	else if (!bcd && r->century >= 19 && r->century <= 21)
		century = r->century;
	t->sec = dec[0];
	t->min = dec[1];
	t->hour = dec[2];
	t->day = dec[3];
	t->mon = dec[4];
	t->year = century * 100 + dec[5];
	if (!(regb & B_24H)) {
		if (t->hour < 1 || t->hour > 12) {
			ksnprintf(msg, n, "12-hour clock shows hour %d", t->hour);
			return false;
		}
		t->hour = t->hour % 12 + (pm ? 12 : 0);
	}
	if (t->sec > 59 || t->min > 59 || t->hour > 23 || t->mon < 1 ||
	    t->mon > 12 || t->day < 1 || t->day > days_in_month(t->year, t->mon)) {
		ksnprintf(msg, n, "invalid time %04d-%02d-%02d %02d:%02d:%02d",
			  t->year, t->mon, t->day, t->hour, t->min, t->sec);
		return false;
	}
	if (t->year < 2020 || t->year > 2099) {
		ksnprintf(msg, n, "implausible year %d", t->year);
		return false;
	}
	return true;
}

int check_rtc(char *msg, size_t n)
{
	uint8_t a = cmos_read(REG_A), b = cmos_read(REG_B), d = cmos_read(REG_D);
	const char *err;
	struct rtc_raw r1, r2;
	struct tm_s t1, t2;
	struct rtc_edge edge;

	kprintf("# rtc: register A 0x%02x, B 0x%02x, D 0x%02x\n", a, b, d);
	if (b & B_SET) {
		ksnprintf(msg, n, "register B has SET: the clock is stopped");
		return FAIL;
	}
	if (!(d & D_VRT)) {
		ksnprintf(msg, n, "register D has VRT clear: time not valid");
		return FAIL;
	}
	if (!rtc_read(&r1, &err)) {
		ksnprintf(msg, n, "%s", err);
		return FAIL;
	}
	if (!decode(&r1, b, &t1, msg, n))
		return FAIL;

	/* It ticks: the next second arrives within a bounded wait and the
	 * whole date moves forward by one or two seconds. */
	if (!rtc_wait_edge(3 * PIT_HZ, &edge)) {
		ksnprintf(msg, n, "seconds did not change within 3 s");
		return FAIL;
	}
	if (!rtc_read(&r2, &err)) {
		ksnprintf(msg, n, "%s", err);
		return FAIL;
	}
	if (!decode(&r2, b, &t2, msg, n))
		return FAIL;
	int64_t step = to_unix(&t2) - to_unix(&t1);
	if (step < 1 || step > 2) {
		ksnprintf(msg, n,
			  "time moved by %ld s across one second boundary "
			  "(%02d:%02d:%02d -> %02d:%02d:%02d)",
			  step, t1.hour, t1.min, t1.sec, t2.hour, t2.min, t2.sec);
		return FAIL;
	}

	int len = ksnprintf(msg, n, "%04d-%02d-%02d %02d:%02d:%02d, %s, %s",
			    t2.year, t2.mon, t2.day, t2.hour, t2.min, t2.sec,
			    (b & B_BINARY) ? "binary" : "BCD",
			    (b & B_24H) ? "24h" : "12h");
	if (M.bad_hosttime) {
		ksnprintf(msg, n, "hosttime= is not a number");
		return FAIL;
	}
	if (M.have_hosttime) {
		int64_t diff = to_unix(&t2) - (int64_t)M.hosttime;
		if (diff < -HOST_BEHIND_S || diff > HOST_AHEAD_S) {
			ksnprintf(msg, n,
				  "RTC %ld s from hosttime (allowed -%d..+%d): "
				  "RTC %04d-%02d-%02d %02d:%02d:%02d UTC",
				  diff, HOST_BEHIND_S, HOST_AHEAD_S, t2.year,
				  t2.mon, t2.day, t2.hour, t2.min, t2.sec);
			return FAIL;
		}
		if (len > 0 && (size_t)len < n)
			ksnprintf(msg + len, n - (size_t)len, ", hosttime %s%ld s",
				  diff >= 0 ? "+" : "", diff);
	}
	return PASS;
}
