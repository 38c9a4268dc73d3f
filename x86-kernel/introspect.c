/*
 * The `introspect` check (not in `all`): a guest for an introspection
 * tool to watch (docs/kvmi.md, tests/introspect-events.bats). It says
 * where it works, then every 100 ms (round K) it
 *   - writes 0x1000+K to the first word of a page of its own, reads it back;
 *   - writes 0x10+K to MSR IA32_SYSENTER_CS, reads it back;
 *   - rings lkvm's agent doorbell (a 32-bit OUT of K to port 0xdb0)
 *     with rbx = 0, and reports rbx as the tool may have set it;
 *   - calls introspect_mark() (its address is printed: a breakpoint);
 * and prints what it observed, so a tool's replies show in what the
 * guest saw: a refused write leaves the old value, a replaced MSR value
 * is what RDMSR returns. Never returns.
 */
#include "kernel.h"

#define AGENT_PORT 0xdb0
#define MSR_SYSENTER_CS 0x174

/* Code at a known address, run once a round: a tool may break on it. */
__attribute__((noinline)) static uint64_t introspect_mark(uint64_t k)
{
	__asm__ volatile("" : "+r"(k));
	return k + 1;
}

/* A page nothing else writes: a tool may write-protect it. */
static volatile uint64_t watched[512] __attribute__((aligned(4096)));

static void wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v),
			 "d"((uint32_t)(v >> 32)) : "memory");
}

/* The doorbell: the tool answers in the registers (here rbx). */
static uint64_t agent_call(uint32_t value)
{
	uint64_t rbx = 0;

	__asm__ volatile("outl %%eax, %%dx"
			 : "+b"(rbx)
			 : "a"(value), "d"((uint16_t)AGENT_PORT)
			 : "memory");
	return rbx;
}

int check_introspect(char *msg, size_t n)
{
	(void)msg;
	(void)n;
	watched[0] = 0x1000;
	kprintf("# introspect page 0x%lx msr 0x%x port 0x%x code 0x%lx\n",
		(uint64_t)(uintptr_t)watched, MSR_SYSENTER_CS, AGENT_PORT,
		(uint64_t)(uintptr_t)introspect_mark);
	wait_tick();
	uint64_t t0 = ticks;
	for (uint64_t k = 1;; k++) {
		while (ticks - t0 < k * (PIT_HZ / 10))
			wait_tick();
		watched[0] = 0x1000 + k;
		kprintf("# introspect write %lu 0x%lx read 0x%lx\n", k,
			0x1000 + k, watched[0]);
		wrmsr(MSR_SYSENTER_CS, 0x10 + k);
		kprintf("# introspect msr %lu wrote 0x%lx read 0x%lx\n", k,
			0x10 + k, rdmsr(MSR_SYSENTER_CS));
		kprintf("# introspect agent %lu rbx 0x%lx\n", k,
			agent_call((uint32_t)k));
		kprintf("# introspect mark %lu\n", introspect_mark(k) - 1);
	}
}

/*
 * The `introspect-bench` check (bench/kvmi.sh): says where its page is,
 * then writes to it as fast as it can, forever. Each write to the page a
 * tool protects is one PF event.
 */
int check_introspect_bench(char *msg, size_t n)
{
	(void)msg;
	(void)n;
	kprintf("# introspect-bench page 0x%lx\n",
		(uint64_t)(uintptr_t)&watched[0]);
	for (uint64_t k = 1;; k++)
		watched[1] = k;
}
