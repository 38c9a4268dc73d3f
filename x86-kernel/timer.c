/* The 8254 PIT: the kernel's time base (channel 0 at 100 Hz, ISA IRQ0 via
 * the I/O APIC) and the pit check, which measures it against the RTC. */
#include "kernel.h"

#define PIT_CH0 0x40
#define PIT_CMD 0x43
#define PIT_INPUT_HZ 1193182
#define PIT_RELOAD ((PIT_INPUT_HZ + PIT_HZ / 2) / PIT_HZ) /* 11932 */

/* Ticks per RTC second that still pass: see README (one tick of edge
 * quantisation at each end, plus ticks the hypervisor delivers late). */
#define PIT_TOLERANCE 3

/* Until the first tick has been seen, wait_tick() spins on the TSC for at
 * most this many cycles: 50 ms at 3 GHz, 5 tick periods. One period was
 * too tight: a boot that reaches its first wait_tick right after
 * pit_start() on a loaded host (the first tick late, the vCPU
 * descheduled, the TSC faster than 3 GHz) saw no tick in time and
 * declared the PIT dead. */
#define TSC_FALLBACK_CYCLES 150000000ull

volatile uint64_t ticks;
static volatile bool alive;

void timer_irq(void)
{
	ticks++;
}

void pit_start(void)
{
	outb(PIT_CMD, 0x34); /* channel 0, lobyte/hibyte, mode 2, binary */
	outb(PIT_CH0, PIT_RELOAD & 0xff);
	outb(PIT_CH0, PIT_RELOAD >> 8);
}

static uint16_t pit_read(void)
{
	outb(PIT_CMD, 0x00); /* latch channel 0 */
	uint8_t lo = inb(PIT_CH0);
	uint8_t hi = inb(PIT_CH0);
	return (uint16_t)(lo | hi << 8);
}

bool timer_alive(void)
{
	return alive;
}

/* Wait for the next timer tick. Once ticks have been seen, halt until an
 * interrupt (sti;hlt is atomic, so a tick cannot slip in between); before
 * that, spin with a TSC bound so a dead PIT cannot hang the kernel. */
void wait_tick(void)
{
	uint64_t t0 = ticks;
	if (alive) {
		__asm__ volatile("cli");
		if (ticks == t0)
			__asm__ volatile("sti; hlt; cli");
		__asm__ volatile("sti");
		return;
	}
	uint64_t start = rdtsc();
	while (ticks == t0 && rdtsc() - start < TSC_FALLBACK_CYCLES)
		cpu_relax();
	if (ticks != t0)
		alive = true;
}

void delay_ticks(unsigned n)
{
	/* n + 1 waits: the first may end at once at a tick boundary. */
	for (unsigned i = 0; i <= n; i++)
		wait_tick();
}

int check_pit(char *msg, size_t n)
{
	wait_tick();
	wait_tick();
	if (!alive) {
		ksnprintf(msg, n,
			  "no IRQ0 interrupts (8254 channel 0 -> I/O APIC pin %d, "
			  "vector 0x%x)", M.isa_pin[0], VEC_ISA_BASE);
		return FAIL;
	}

	/* The counter counts down from the reload value. */
	uint16_t c1 = pit_read(), c2 = pit_read();
	if (c1 > PIT_RELOAD || c2 > PIT_RELOAD || c1 == c2) {
		ksnprintf(msg, n,
			  "channel 0 counter read 0x%x then 0x%x (reload 0x%x)",
			  c1, c2, PIT_RELOAD);
		return FAIL;
	}

	/* Ticks between two RTC second boundaries. An edge seen by the rtc
	 * check less than a second ago serves as the first one. */
	struct rtc_edge e1 = rtc_last_edge, e2;
	if (!e1.valid || ticks - e1.ticks > PIT_HZ) {
		if (!rtc_wait_edge(3 * PIT_HZ, &e1)) {
			ksnprintf(msg, n, "RTC seconds did not change within 3 s");
			return FAIL;
		}
	}
	if (!rtc_wait_edge(3 * PIT_HZ, &e2)) {
		ksnprintf(msg, n, "RTC seconds did not change within 3 s");
		return FAIL;
	}
	int secs = ((int)e2.sec - (int)e1.sec + 60) % 60;
	uint64_t dt = e2.ticks - e1.ticks;
	if (secs < 1 || secs > 2) {
		ksnprintf(msg, n, "RTC seconds went from %u to %u between edges",
			  e1.sec, e2.sec);
		return FAIL;
	}
	uint64_t per_s = dt / (uint64_t)secs;
	kprintf("# pit: %lu ticks in %d RTC second(s)\n", dt, secs);
	if (pic_irq0_seen) {
		ksnprintf(msg, n, "IRQ0 also arrived through the masked 8259 (%lu times)",
			  (uint64_t)pic_irq0_seen);
		return FAIL;
	}
	if (per_s + PIT_TOLERANCE < PIT_HZ || per_s > PIT_HZ + PIT_TOLERANCE) {
		ksnprintf(msg, n, "%lu ticks per RTC second, want %d +- %d", per_s,
			  PIT_HZ, PIT_TOLERANCE);
		return FAIL;
	}
	ksnprintf(msg, n, "%lu ticks per RTC second at %d Hz (IRQ0 -> I/O APIC pin %d)",
		  per_s, PIT_HZ, M.isa_pin[0]);
	return PASS;
}
