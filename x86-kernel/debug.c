/* For debuggers of a running guest (`lkvm debug --mem`, `--translate`,
 * `lkvm pause`): a known value at a known guest-physical address, the same
 * page mapped at a non-identity virtual address, and a heartbeat that
 * stops advancing while the guest is paused. */
#include "kernel.h"

extern uint64_t magic_page[512];
extern uint64_t high_pt[512];

/* "LKVMMAGI" in the top half, the low half from the TSC: the value exists
 * only once this boot has written it, not in the ELF file. */
#define MAGIC_HIGH 0x4c4b564d00000000ull

void magic_init(void)
{
	uint64_t pa = (uint64_t)(uintptr_t)magic_page;
	uint64_t v = MAGIC_HIGH | (rdtsc() & 0xffffffffull);
	magic_page[0] = v;
	/* The static page tables map HIGH_MAP_VA to the magic page; read the
	 * value back through that mapping before telling anyone about it. */
	uint64_t back = *(volatile uint64_t *)(uintptr_t)HIGH_MAP_VA;
	kprintf("# magic 0x%lx 0x%016lx\n", pa, v);
	kprintf("# map 0x%lx 0x%lx\n", HIGH_MAP_VA, high_pt[0] & ~(uint64_t)0xfff);
	if (back != v || (high_pt[0] & ~(uint64_t)0xfff) != pa)
		kprintf("# warning: 0x%lx reads 0x%lx, not the magic value\n",
			HIGH_MAP_VA, back);
}

/* Never returns: "# heartbeat N" every 10 PIT ticks (100 ms). */
int check_heartbeat(char *msg, size_t n)
{
	(void)msg;
	(void)n;
	wait_tick();
	uint64_t t0 = ticks;
	for (uint64_t beat = 1;; beat++) {
		while (ticks - t0 < beat * (PIT_HZ / 10))
			wait_tick();
		kprintf("# heartbeat %lu\n", beat);
	}
}
