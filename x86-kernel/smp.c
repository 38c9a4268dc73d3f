/* The smp check: start every described application processor with
 * INIT-SIPI-SIPI and collect the APIC ID each one reports. */
#include "kernel.h"

#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define ICR_INIT 0x00004500 /* INIT, level assert */
#define ICR_STARTUP 0x00004600
#define ICR_BUSY (1u << 12)
#define AP_REPORT_TICKS PIT_HZ /* 1 s for an AP to reach ap_main */

extern const uint8_t ap_tramp_start[], ap_tramp_end[];
extern volatile uint32_t ap_next_slot;

static volatile uint32_t ap_reports;
static volatile uint32_t ap_ids[MAX_CPUS];

/* Runs on each AP in long mode, on its own stack; parks on return. */
void ap_main(uint32_t slot)
{
	ap_ids[slot] = lapic_id();
	__atomic_fetch_add(&ap_reports, 1, __ATOMIC_SEQ_CST);
}

static bool send_ipi(uint32_t apic_id, uint32_t icr)
{
	lapic_write(LAPIC_ICR_HI, apic_id << 24);
	lapic_write(LAPIC_ICR_LO, icr);
	for (int i = 0; i < 1000; i++)
		if (!(lapic_read(LAPIC_ICR_LO) & ICR_BUSY))
			return true;
	return false;
}

/* A page below 640 KiB that every memory description calls RAM and that
 * holds none of the boot structures (start info, command line, modules). */
static uint64_t trampoline_page(void)
{
	bool dt = M.dtb_present && M.fdt.valid;
	if (!dt && !M.memmap)
		return 0;
	for (uint64_t p = 0x1000; p < 0x9f000; p += 0x1000) {
		if (M.memmap && !ranges_cover(M.ram, M.nram, p, 0x1000))
			continue;
		if (dt && !ranges_cover(M.fdt.mem, M.fdt.nmem, p, 0x1000))
			continue;
		bool busy = false;
		for (int i = 0; i < M.nused; i++)
			if (M.used[i].base < p + 0x1000 &&
			    p < M.used[i].base + M.used[i].size)
				busy = true;
		if (!busy)
			return p;
	}
	return 0;
}

int check_smp(char *msg, size_t n)
{
	uint32_t bsp = lapic_id();
	int described = M.ncpus;

	if (M.bad_expect_cpus) {
		ksnprintf(msg, n, "expect_cpus= is not a number");
		return FAIL;
	}
	if (described <= 0) {
		ksnprintf(msg, n, "no CPUs described (no device tree, MP table or MADT)");
		return FAIL;
	}
	if (described > MAX_CPUS) {
		ksnprintf(msg, n, "%d CPUs described, this kernel handles %d",
			  described, MAX_CPUS);
		return FAIL;
	}
	bool bsp_listed = false;
	for (int i = 0; i < described; i++)
		if (M.cpu_ids[i] == bsp)
			bsp_listed = true;
	if (!bsp_listed) {
		ksnprintf(msg, n, "the BSP (APIC ID %u) is not among the %d described CPUs",
			  bsp, described);
		return FAIL;
	}

	uint64_t page = 0;
	if (described > 1) {
		page = trampoline_page();
		if (!page) {
			ksnprintf(msg, n, "no free RAM page below 640 KiB for the trampoline");
			return FAIL;
		}
		memcpy((void *)(uintptr_t)page, ap_tramp_start,
		       (size_t)(ap_tramp_end - ap_tramp_start));
		kprintf("# smp: %d CPUs from the %s, BSP APIC ID %u, trampoline at 0x%lx\n",
			described, M.cpu_source, bsp, page);
	}

	/* One AP at a time, so a report is tied to the CPU just started. */
	uint32_t reported[MAX_CPUS];
	int nrep = 0;
	reported[nrep++] = bsp;
	for (int i = 0; i < described; i++) {
		uint32_t id = M.cpu_ids[i];
		if (id == bsp)
			continue;
		uint32_t before = ap_reports, slot = ap_next_slot;
		bool ok = send_ipi(id, ICR_INIT);
		delay_ticks(1); /* >= 10 ms */
		ok = ok && send_ipi(id, ICR_STARTUP | (uint32_t)(page >> 12));
		delay_ticks(1); /* >= 200 us */
		if (ap_reports == before)
			ok = ok && send_ipi(id, ICR_STARTUP | (uint32_t)(page >> 12));
		if (!ok) {
			kprintf("# smp: IPI to APIC ID %u never left the ICR\n", id);
			continue;
		}
		uint64_t start = ticks;
		for (unsigned w = 0; ap_reports == before && w < AP_REPORT_TICKS &&
				     (!timer_alive() || ticks - start < AP_REPORT_TICKS);
		     w++)
			wait_tick();
		if (ap_reports == before) {
			kprintf("# smp: APIC ID %u did not report within 1 s\n", id);
			continue;
		}
		uint32_t got = slot < MAX_CPUS ? ap_ids[slot] : 0xffffffff;
		if (got != id)
			kprintf("# smp: started APIC ID %u, it reported %u\n", id, got);
		if (nrep < MAX_CPUS)
			reported[nrep++] = got;
	}

	/* Every described CPU reported exactly once. */
	int matched = 0;
	for (int i = 0; i < described; i++) {
		int seen = 0;
		for (int j = 0; j < nrep; j++)
			if (reported[j] == M.cpu_ids[i])
				seen++;
		if (seen == 1)
			matched++;
	}

	char ids[160];
	int len = 0;
	for (int j = 0; j < nrep && len < (int)sizeof(ids) - 12; j++)
		len += ksnprintf(ids + len, sizeof(ids) - (size_t)len, "%s%u",
				 j ? " " : "", reported[j]);
	ids[len] = 0;

	if (nrep != described || matched != described) {
		ksnprintf(msg, n, "%d of %d described CPUs reported (APIC IDs %s)",
			  nrep, described, ids);
		return FAIL;
	}
	if (M.have_expect_cpus && (uint64_t)nrep != M.expect_cpus) {
		ksnprintf(msg, n, "%d CPUs reported, expect_cpus=%lu (APIC IDs %s)",
			  nrep, M.expect_cpus, ids);
		return FAIL;
	}
	ksnprintf(msg, n, "%d of %d CPUs reported (APIC IDs %s, from the %s)", nrep,
		  described, ids, M.cpu_source);
	return PASS;
}
