// SPDX-License-Identifier: GPL-2.0
/*
 * MC146818 RTC and CMOS RAM at ports 0x70/0x71.
 *
 * Time of day is the host's UTC clock (QEMU's default, -rtc base=utc)
 * plus an offset. The time registers are computed from it when read, in
 * the format register B asks for, so nothing ticks in the background:
 * - UIP (register A) is set in the last 244 us of each second, when the
 *   chip is about to update; the registers change at the second.
 * - Register B's SET stops updates: the registers hold their values and
 *   take guest writes; clearing SET restarts the clock from them. Writing
 *   a time register while the clock runs sets it as well. Either way the
 *   sub-second phase goes on, as the divider chain does on the chip;
 *   leaving divider reset (register A 11x) starts the first update
 *   500 ms later, as the datasheet says.
 * - Register C's flags (PF, AF, UF) are brought up to date when the guest
 *   reads it, from the time passed since the last look.
 * - IRQ 8: when the guest enables PIE, AIE or UIE, a timerfd on the main
 *   loop wakes at the next event that would set the flag, and the line
 *   stays raised until register C is read. While no such interrupt is
 *   enabled, or one is pending, nothing wakes up.
 * - The day of the week is computed from the date: a guest-written value
 *   is seen only while SET holds the registers.
 */
#include "lkvm/rtc.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "lkvm/device.h"
#include "lkvm/machine.h"
#include "lkvm/pci.h"
#include "lkvm/util.h"

#define NSEC 1000000000LL
#define RTC_HZ 32768
#define DAY 86400

#define A_DV_MASK 0x70
#define A_DV_RESET 0x60		/* 11x: divider chain held in reset */
#define A_RS_MASK 0x0f

struct gtime {
	int64_t sec, nsec;
};

static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;

	return (a % b && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t floor_mod(int64_t a, int64_t b)
{
	return a - floor_div(a, b) * b;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (month 1-12). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	if (m <= 2)
		y--;
	era = floor_div(y, 400);
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

struct rtc_tm {
	int sec, min, hour, wday, mday, mon;	/* wday 0 = Sunday */
	int64_t year;
};

static void civil_from_secs(int64_t t, struct rtc_tm *tm)
{
	int64_t days = floor_div(t, DAY), sod = t - days * DAY;
	int64_t z = days + 719468, era, doe, yoe, doy, mp;

	tm->hour = (int)(sod / 3600);
	tm->min = (int)(sod / 60 % 60);
	tm->sec = (int)(sod % 60);
	/* 1970-01-01 was a Thursday. */
	tm->wday = (int)floor_mod(days + 4, 7);
	era = floor_div(z, 146097);
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	tm->mday = (int)(doy - (153 * mp + 2) / 5 + 1);
	tm->mon = (int)(mp < 10 ? mp + 3 : mp - 9);
	tm->year = yoe + era * 400 + (tm->mon <= 2);
}

static void host_now(struct rtc *r, struct timespec *ts)
{
	if (r->clock)
		r->clock(r, ts);
	else
		clock_gettime(CLOCK_REALTIME, ts);
}

static struct gtime guest_now(struct rtc *r)
{
	struct timespec ts;
	int64_t nsec;

	host_now(r, &ts);
	nsec = ts.tv_nsec + r->off_nsec;
	return (struct gtime){ ts.tv_sec + r->off_sec + nsec / NSEC,
			       nsec % NSEC };
}

static int64_t ticks_of(struct gtime t)
{
	return t.sec * RTC_HZ + t.nsec * RTC_HZ / NSEC;
}

static void set_guest_time(struct rtc *r, int64_t sec, int64_t phase)
{
	struct timespec ts;

	host_now(r, &ts);
	r->off_sec = sec - ts.tv_sec;
	r->off_nsec = phase - ts.tv_nsec;
	if (r->off_nsec < 0) {
		r->off_nsec += NSEC;
		r->off_sec--;
	}
}

static bool divider_reset(const struct rtc *r)
{
	return (r->cmos[RTC_REG_A] & A_DV_RESET) == A_DV_RESET;
}

/* Whether the time registers update: divider running and SET clear. */
static bool running(const struct rtc *r)
{
	return !(r->cmos[RTC_REG_B] & RTC_B_SET) &&
	       (r->cmos[RTC_REG_A] & A_DV_MASK) <= 0x20;
}

static uint8_t to_reg(const struct rtc *r, int64_t v)
{
	if (r->cmos[RTC_REG_B] & RTC_B_DM_BINARY)
		return (uint8_t)v;
	v = floor_mod(v, 100);
	return (uint8_t)((v / 10) << 4 | v % 10);
}

/* Garbage BCD decodes to garbage, never to anything out of 0..255. */
static int from_reg(const struct rtc *r, uint8_t v)
{
	if (r->cmos[RTC_REG_B] & RTC_B_DM_BINARY)
		return v;
	return (v >> 4) * 10 + (v & 0x0f);
}

static uint8_t hour_to_reg(const struct rtc *r, int h)
{
	if (r->cmos[RTC_REG_B] & RTC_B_24H)
		return to_reg(r, h);
	/* 12-hour: 12, 1..11 with bit 7 set after noon. */
	return to_reg(r, h % 12 ? h % 12 : 12) | (h >= 12 ? 0x80 : 0);
}

static int hour_from_reg(const struct rtc *r, uint8_t v)
{
	if (r->cmos[RTC_REG_B] & RTC_B_24H)
		return from_reg(r, v);
	return from_reg(r, v & 0x7f) % 12 + ((v & 0x80) ? 12 : 0);
}

static void time_to_regs(const struct rtc *r, int64_t t, uint8_t *cmos)
{
	struct rtc_tm tm;

	civil_from_secs(t, &tm);
	cmos[RTC_SECONDS] = to_reg(r, tm.sec);
	cmos[RTC_MINUTES] = to_reg(r, tm.min);
	cmos[RTC_HOURS] = hour_to_reg(r, tm.hour);
	cmos[RTC_DAY_OF_WEEK] = to_reg(r, tm.wday + 1);
	cmos[RTC_DAY_OF_MONTH] = to_reg(r, tm.mday);
	cmos[RTC_MONTH] = to_reg(r, tm.mon);
	cmos[RTC_YEAR] = to_reg(r, floor_mod(tm.year, 100));
	cmos[RTC_CENTURY] = to_reg(r, floor_div(tm.year, 100));
}

/*
 * The time the registers hold. Out-of-range fields carry over into the
 * next larger one (the 32nd of a month is the 1st of the next), except
 * the month, which is clamped, so any bytes give a time and no overflow.
 */
static int64_t regs_to_time(const struct rtc *r)
{
	const uint8_t *c = r->cmos;
	int mon = from_reg(r, c[RTC_MONTH]);
	int64_t year = from_reg(r, c[RTC_YEAR]) +
		       100 * (int64_t)from_reg(r, c[RTC_CENTURY]);
	int64_t days;

	mon = mon < 1 ? 1 : mon > 12 ? 12 : mon;
	days = days_from_civil(year, mon, 1) +
	       from_reg(r, c[RTC_DAY_OF_MONTH]) - 1;
	return days * DAY + hour_from_reg(r, c[RTC_HOURS]) * 3600 +
	       from_reg(r, c[RTC_MINUTES]) * 60 + from_reg(r, c[RTC_SECONDS]);
}

static bool is_time_reg(unsigned int i)
{
	return i == RTC_SECONDS || i == RTC_MINUTES || i == RTC_HOURS ||
	       (i >= RTC_DAY_OF_WEEK && i <= RTC_YEAR) || i == RTC_CENTURY;
}

/* Period of the periodic interrupt in 1/32768 s; 0 when off. */
static int64_t pi_period(const struct rtc *r)
{
	unsigned int rs = r->cmos[RTC_REG_A] & A_RS_MASK;

	if (!rs || divider_reset(r))
		return 0;
	/* Rates 1 and 2 repeat rates 8 and 9 with a 32768 Hz crystal. */
	if (rs <= 2)
		rs += 7;
	return (int64_t)1 << (rs - 1);
}

/* Whether the alarm matched at any second in (from, to]. */
static bool alarm_hit(const struct rtc *r, int64_t from, int64_t to)
{
	uint8_t as = r->cmos[RTC_SECONDS_ALARM];
	uint8_t am = r->cmos[RTC_MINUTES_ALARM];
	uint8_t ah = r->cmos[RTC_HOURS_ALARM];

	/* Every time of day comes up within one day. */
	if (to - from > DAY)
		from = to - DAY;
	for (int64_t t = from + 1; t <= to; t++) {
		int64_t sod = floor_mod(t, DAY);

		/* Alarm bytes 0xc0-0xff match any value. */
		if ((as >= 0xc0 || as == to_reg(r, sod % 60)) &&
		    (am >= 0xc0 || am == to_reg(r, sod / 60 % 60)) &&
		    (ah >= 0xc0 || ah == hour_to_reg(r, (int)(sod / 3600))))
			return true;
	}
	return false;
}

static void update_irq(struct rtc *r)
{
	uint8_t c = r->cmos[RTC_REG_C], b = r->cmos[RTC_REG_B];
	bool irqf = ((c & RTC_C_PF) && (b & RTC_B_PIE)) ||
		    ((c & RTC_C_AF) && (b & RTC_B_AIE)) ||
		    ((c & RTC_C_UF) && (b & RTC_B_UIE));

	/* IRQF follows the flags and their enables, like the chip's gates. */
	r->cmos[RTC_REG_C] = (c & ~RTC_C_IRQF) | (irqf ? RTC_C_IRQF : 0);
	if (irqf == r->irq_level)
		return;
	r->irq_level = irqf;
	if (r->irq)
		r->irq(r, irqf);
}

/* Sets the register C flags for what happened since the last look. */
static void advance_flags(struct rtc *r)
{
	struct gtime g = guest_now(r);
	int64_t ticks = ticks_of(g), period = pi_period(r);

	if (period &&
	    floor_div(ticks, period) > floor_div(r->flags_ticks, period))
		r->cmos[RTC_REG_C] |= RTC_C_PF;
	r->flags_ticks = ticks;
	if (!running(r))
		return;
	if (g.sec > r->flags_sec) {
		r->cmos[RTC_REG_C] |= RTC_C_UF;
		if (alarm_hit(r, r->flags_sec, g.sec))
			r->cmos[RTC_REG_C] |= RTC_C_AF;
	}
	r->flags_sec = g.sec;
}

/* After the time jumps: no flags for the jump itself. */
static void rebase_flags(struct rtc *r)
{
	struct gtime g = guest_now(r);

	r->flags_sec = g.sec;
	r->flags_ticks = ticks_of(g);
}

void rtc_tick(struct rtc *r)
{
	advance_flags(r);
	update_irq(r);
}

/* Register A or B changes: stop or restart the clock as needed. */
static void write_control(struct rtc *r, unsigned int reg, uint8_t val)
{
	bool was_running = running(r), was_reset = divider_reset(r);
	struct gtime g;

	advance_flags(r);
	if (reg == RTC_REG_A) {
		/* UIP is read-only. */
		r->cmos[RTC_REG_A] = val & ~RTC_A_UIP;
	} else {
		/* Setting SET clears UIE: no updates, no update interrupts. */
		if (val & RTC_B_SET)
			val &= ~RTC_B_UIE;
		r->cmos[RTC_REG_B] = val;
	}
	if (was_running && !running(r)) {
		/* Hold the current time in the registers. */
		time_to_regs(r, guest_now(r).sec, r->cmos);
	} else if (!was_running && running(r)) {
		g = guest_now(r);
		if (was_reset && !divider_reset(r))
			g.nsec = NSEC / 2;
		set_guest_time(r, regs_to_time(r), g.nsec);
		rebase_flags(r);
	}
	update_irq(r);
}

static void write_time_reg(struct rtc *r, unsigned int reg, uint8_t val)
{
	struct gtime g;

	if (!running(r)) {
		r->cmos[reg] = val;
		return;
	}
	g = guest_now(r);
	advance_flags(r);
	time_to_regs(r, g.sec, r->cmos);
	r->cmos[reg] = val;
	set_guest_time(r, regs_to_time(r), g.nsec);
	rebase_flags(r);
}

uint8_t rtc_read(struct rtc *r, uint16_t port)
{
	unsigned int i = r->index;
	uint8_t regs[128];
	struct gtime g;
	uint8_t v;

	if (port != RTC_DATA_PORT)
		return 0xff;	/* the index register is write-only */
	if (is_time_reg(i)) {
		if (!running(r))
			return r->cmos[i];
		time_to_regs(r, guest_now(r).sec, regs);
		return regs[i];
	}
	switch (i) {
	case RTC_REG_A:
		v = r->cmos[RTC_REG_A] & ~RTC_A_UIP;
		g = guest_now(r);
		if (running(r) && g.nsec >= NSEC - RTC_UIP_NS)
			v |= RTC_A_UIP;
		return v;
	case RTC_REG_C:
		advance_flags(r);
		update_irq(r);
		v = r->cmos[RTC_REG_C];
		/* Reading C clears its flags and the interrupt. */
		r->cmos[RTC_REG_C] = 0;
		update_irq(r);
		return v;
	case RTC_REG_D:
		return RTC_D_VRT;	/* the battery is fine */
	default:
		return r->cmos[i];
	}
}

void rtc_write(struct rtc *r, uint16_t port, uint8_t val)
{
	unsigned int i = r->index;

	if (port != RTC_DATA_PORT) {
		/* Bit 7 masks NMIs on PCs; there is nothing to mask here. */
		r->index = val & 0x7f;
		return;
	}
	if (is_time_reg(i)) {
		write_time_reg(r, i, val);
		return;
	}
	switch (i) {
	case RTC_REG_A:
	case RTC_REG_B:
		write_control(r, i, val);
		break;
	case RTC_REG_C:
	case RTC_REG_D:
		break;	/* read-only */
	default:
		r->cmos[i] = val;	/* alarms and NVRAM */
		break;
	}
}

void rtc_reset(struct rtc *r)
{
	r->index = 0;
	r->cmos[RTC_REG_A] = 0x26;	/* 32768 Hz divider, 1024 Hz rate */
	r->cmos[RTC_REG_B] = RTC_B_24H;
	r->cmos[RTC_REG_C] = 0;
	r->cmos[RTC_REG_D] = RTC_D_VRT;
	r->off_sec = 0;
	r->off_nsec = 0;
	rebase_flags(r);
	update_irq(r);
}

bool rtc_next_event(struct rtc *r, struct timespec *when)
{
	uint8_t b = r->cmos[RTC_REG_B];
	struct gtime g = guest_now(r), next = { INT64_MAX, 0 };
	int64_t period = pi_period(r), sec, nsec;

	if (r->cmos[RTC_REG_C] & RTC_C_IRQF)
		return false;
	if ((b & RTC_B_PIE) && period) {
		int64_t t = (floor_div(ticks_of(g), period) + 1) * period;
		int64_t s = floor_div(t, RTC_HZ), sub = t - s * RTC_HZ;

		/* Rounded up, so waking then finds the period over. */
		next = (struct gtime){ s, (sub * NSEC + RTC_HZ - 1) / RTC_HZ };
	}
	if ((b & (RTC_B_UIE | RTC_B_AIE)) && running(r) &&
	    (g.sec + 1 < next.sec || (g.sec + 1 == next.sec && next.nsec)))
		next = (struct gtime){ g.sec + 1, 0 };
	if (next.sec == INT64_MAX)
		return false;
	sec = next.sec - r->off_sec;
	nsec = next.nsec - r->off_nsec;
	if (nsec < 0) {
		nsec += NSEC;
		sec--;
	}
	when->tv_sec = sec;
	when->tv_nsec = nsec;
	return true;
}

void rtc_set_machine(struct rtc *r, uint64_t low_top, uint64_t high,
		     unsigned int ncpus)
{
	uint64_t base = MIN(low_top / KIB, 640);
	uint64_t ext = low_top > MIB ? (low_top - MIB) / KIB : 0;
	uint64_t ext16 = low_top > 16 * MIB ?
			 (low_top - 16 * MIB) / (64 * KIB) : 0;
	uint64_t hi = high / (64 * KIB);
	unsigned int sum = 0;

	/* 64 MiB is all these bytes can say. */
	ext = MIN(ext, 0xffff);
	ext16 = MIN(ext16, 0xffff);
	hi = MIN(hi, 0xffffff);
	/* Equipment: an FPU; no floppy drive, no mouse. */
	r->cmos[0x14] = 0x02;
	r->cmos[0x15] = (uint8_t)base;
	r->cmos[0x16] = (uint8_t)(base >> 8);
	r->cmos[0x17] = (uint8_t)ext;
	r->cmos[0x18] = (uint8_t)(ext >> 8);
	r->cmos[0x30] = (uint8_t)ext;
	r->cmos[0x31] = (uint8_t)(ext >> 8);
	r->cmos[0x34] = (uint8_t)ext16;
	r->cmos[0x35] = (uint8_t)(ext16 >> 8);
	/* SeaBIOS's boot order bytes: hard disk, then CD-ROM. */
	r->cmos[0x3d] = 0x32;
	r->cmos[0x5b] = (uint8_t)hi;
	r->cmos[0x5c] = (uint8_t)(hi >> 8);
	r->cmos[0x5d] = (uint8_t)(hi >> 16);
	r->cmos[0x5f] = (uint8_t)(MIN(MAX(ncpus, 1u), 256u) - 1);
	for (unsigned int i = 0x10; i <= 0x2d; i++)
		sum += r->cmos[i];
	r->cmos[0x2e] = (uint8_t)(sum >> 8);
	r->cmos[0x2f] = (uint8_t)sum;
}

/* ---- Glue -------------------------------------------------------------- */

struct rtc_dev {
	struct rtc r;
	struct machine *m;
	pthread_mutex_t lock;
	int tfd;		/* IRQ 8 timer, -1 without one */
	bool armed;
	struct timespec when;
};

struct rtc_cfg {
	struct rtc_dev *dev;
};

static const struct device_ops rtc_ops;

static void rtc_irq(struct rtc *r, bool level)
{
	struct rtc_dev *d = r->opaque;

	machine_irq_line(d->m, RTC_IRQ, level);
}

/* Called locked: points the timer at the next interrupt, if any. */
static void rearm(struct rtc_dev *d)
{
	struct itimerspec its = { 0 };
	struct timespec when;
	bool on;

	if (d->tfd < 0)
		return;
	on = rtc_next_event(&d->r, &when);
	if (on == d->armed && (!on || (when.tv_sec == d->when.tv_sec &&
				       when.tv_nsec == d->when.tv_nsec)))
		return;
	if (on)
		its.it_value = when;
	if (timerfd_settime(d->tfd, TFD_TIMER_ABSTIME, &its, NULL) == 0) {
		d->armed = on;
		d->when = when;
	}
}

static void rtc_timer(struct machine *m, int fd, void *opaque)
{
	struct rtc_dev *d = opaque;
	uint64_t expirations;

	(void)m;
	/* Non-blocking: a timer re-armed meanwhile reads nothing. */
	if (read(fd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
		return;
	pthread_mutex_lock(&d->lock);
	rtc_tick(&d->r);
	d->armed = false;
	rearm(d);
	pthread_mutex_unlock(&d->lock);
}

static void rtc_io(struct io_region *r, struct kvm_vcpu *vcpu,
		   uint64_t offset, void *data, unsigned int len,
		   bool is_write)
{
	struct rtc_dev *d = r->opaque;
	uint8_t *b = data;

	(void)vcpu;
	pthread_mutex_lock(&d->lock);
	for (unsigned int i = 0; i < len && offset + i < 2; i++) {
		uint16_t port = (uint16_t)(RTC_INDEX_PORT + offset + i);

		if (is_write)
			rtc_write(&d->r, port, b[i]);
		else
			b[i] = rtc_read(&d->r, port);
	}
	rearm(d);
	pthread_mutex_unlock(&d->lock);
}

/* RAM below and above 4 GiB, as the memory map lays it out. */
static void ram_split(struct machine *m, uint64_t *low_top, uint64_t *high)
{
	uint64_t top4g = 4 * GIB, high_end = top4g;
	bool found = false;

	*low_top = 0;
	for (unsigned int i = 0; i < m->nmem && i < MACHINE_MAX_REGIONS; i++) {
		const struct mem_region *r = &m->mem[i];
		uint64_t end = r->gpa + r->size;

		if (r->readonly || !r->size)
			continue;	/* firmware ROM is not RAM */
		found = true;
		if (r->gpa < top4g)
			*low_top = MAX(*low_top, MIN(end, top4g));
		if (end > top4g)
			high_end = MAX(high_end, end);
	}
	if (!found) {
		/* No map yet: split the size the way arch/x86 lays it out. */
		*low_top = MIN(m->ram_size, (uint64_t)PCI_MMIO_BASE);
		*high = m->ram_size - *low_top;
		return;
	}
	*high = high_end - top4g;
}

static int rtc_init(struct machine *m)
{
	struct rtc_cfg *cfg = machine_dev_cfg(m, &rtc_ops);
	struct rtc_dev *d;
	uint64_t low, high;
	int err;

	if (!cfg)
		return -EINVAL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->m = m;
	d->tfd = -1;
	pthread_mutex_init(&d->lock, NULL);
	d->r.opaque = d;
	d->r.irq = rtc_irq;
	rtc_reset(&d->r);
	ram_split(m, &low, &high);
	rtc_set_machine(&d->r, low, high,
			m->cfg.ncpus ? m->cfg.ncpus : m->ncpus);
	cfg->dev = d;

	err = machine_register_pio(m, RTC_INDEX_PORT, 2, rtc_io, d, "rtc");
	if (err) {
		pr_err("rtc: cannot register ports 0x70-0x71: %s",
		       strerror(-err));
		return err;
	}
	d->tfd = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC);
	if (d->tfd >= 0 && machine_watch_fd(m, d->tfd, rtc_timer, d) < 0) {
		close(d->tfd);
		d->tfd = -1;
	}
	if (d->tfd < 0)
		pr_warn("rtc: no timer: the RTC will not interrupt (IRQ 8)");
	return 0;
}

static void rtc_exit(struct machine *m)
{
	struct rtc_cfg *cfg = machine_dev_cfg(m, &rtc_ops);
	struct rtc_dev *d = cfg ? cfg->dev : NULL;

	if (!d)
		return;
	if (d->tfd >= 0) {
		machine_unwatch_fd(m, d->tfd);
		close(d->tfd);
	}
	pthread_mutex_destroy(&d->lock);
	free(d);
	cfg->dev = NULL;
}

static const struct device_ops rtc_ops = {
	.name = "rtc",
	.stage = DEV_STAGE_LEGACY,
	.cfg_size = sizeof(struct rtc_cfg),
	.init = rtc_init,
	.exit = rtc_exit,
};
DEVICE(rtc_ops);
