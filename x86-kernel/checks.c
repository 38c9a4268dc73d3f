/* The checks of the boot description: mem, cmdline, dtb. */
#include "kernel.h"

#define MIB (1ull << 20)

/* How many MiB below expect_mem the rounded-up RAM sum may fall. Rounding
 * up already absorbs what is not RAM inside the size the user gave (the
 * 384 KiB legacy hole below 1 MiB, the 128 KiB SeaBIOS reserves at the top
 * of low RAM), as long as that stays under 1 MiB. */
#define MEM_SLACK_MIB 0

extern uint64_t window_pd[512];

/* RAM above 4 GiB is reached through one 2 MiB window at virtual 4 GiB. */
static volatile uint64_t *map_page(uint64_t pa)
{
	if (phys_low(pa, 4096))
		return (volatile uint64_t *)(uintptr_t)pa;
	window_pd[0] = (pa & ~0x1fffffull) | 0x83;
	__asm__ volatile("invlpg (%0)" : : "r"(1ull << 32) : "memory");
	return (volatile uint64_t *)(uintptr_t)((1ull << 32) + (pa & 0x1fffff));
}

static const struct range *ram_source(int *n, const char **name)
{
	if (M.dtb_present && M.fdt.valid) {
		*n = M.fdt.nmem;
		*name = "device tree";
		return M.fdt.mem;
	}
	*n = M.nram;
	*name = "PVH memory map";
	return M.memmap ? M.ram : NULL;
}

int check_mem(char *msg, size_t n)
{
	int nr;
	const char *src;
	const struct range *r = ram_source(&nr, &src);

	if (M.bad_expect_mem) {
		ksnprintf(msg, n, "expect_mem= is not a number");
		return FAIL;
	}
	if (!r || nr == 0) {
		ksnprintf(msg, n, "no RAM described (no device tree memory, no PVH memory map)");
		return FAIL;
	}
	uint64_t total = ranges_total(r, nr), top = ranges_top(r, nr);
	uint64_t mib = (total + MIB - 1) / MIB;
	kprintf("# mem: %lu bytes of RAM in %d ranges (%s), top at 0x%lx\n", total,
		nr, src, top);
	if (M.have_expect_mem &&
	    (mib > M.expect_mem || mib + MEM_SLACK_MIB < M.expect_mem)) {
		ksnprintf(msg, n, "%lu MiB of RAM (%s), expect_mem=%lu", mib, src,
			  M.expect_mem);
		return FAIL;
	}

	/* The highest RAM page holds what is written to it. The kernel never
	 * uses that page, but firmware may keep tables there: restore it. */
	uint64_t page = (top & ~0xfffull) - 0x1000;
	if (top < 0x2000 || !ranges_cover(r, nr, page, 0x1000)) {
		ksnprintf(msg, n, "top of RAM 0x%lx is not a whole page of RAM", top);
		return FAIL;
	}
	volatile uint64_t *p = map_page(page);
	uint64_t save0 = p[0], save1 = p[511];
	p[0] = 0x5a5aa5a5c3c33c3cull ^ page;
	p[511] = ~(0x5a5aa5a5c3c33c3cull ^ page);
	uint64_t got0 = p[0], got1 = p[511];
	p[0] = save0;
	p[511] = save1;
	if (got0 != (0x5a5aa5a5c3c33c3cull ^ page) ||
	    got1 != ~(0x5a5aa5a5c3c33c3cull ^ page)) {
		ksnprintf(msg, n, "highest RAM page 0x%lx does not keep data "
			  "(read 0x%lx, 0x%lx)", page, got0, got1);
		return FAIL;
	}
	ksnprintf(msg, n, "%lu MiB (%s), highest page 0x%lx writable", mib, src, page);
	return PASS;
}

int check_cmdline(char *msg, size_t n)
{
	if (!M.cmdline_ok) {
		ksnprintf(msg, n, "%s", M.cmdline_error[0] ? M.cmdline_error
							   : M.pvh_error);
		return FAIL;
	}
	/* Inside memory the VMM described (RAM or a reserved range). */
	const struct range *r = M.all;
	int nr = M.nall;
	if (M.dtb_present && M.fdt.valid) {
		r = M.fdt.mem;
		nr = M.fdt.nmem;
	}
	if (nr && !ranges_cover(r, nr, M.cmdline_pa, M.cmdline_len + 1)) {
		ksnprintf(msg, n, "command line 0x%lx+%zu lies outside described memory",
			  M.cmdline_pa, M.cmdline_len + 1);
		return FAIL;
	}
	for (size_t i = 0; i < M.cmdline_len; i++) {
		uint8_t c = (uint8_t)M.cmdline[i];
		if (c < 0x20 || c > 0x7e) {
			ksnprintf(msg, n, "byte %zu is 0x%02x, not printable ASCII", i, c);
			return FAIL;
		}
	}
	/* What the VMM was told, twice: the PVH command line and bootargs. */
	if (M.dtb_present && M.fdt.valid) {
		if (!M.fdt.bootargs) {
			ksnprintf(msg, n, "the device tree has no /chosen/bootargs");
			return FAIL;
		}
		if (strcmp(M.fdt.bootargs, M.cmdline)) {
			ksnprintf(msg, n, "/chosen/bootargs differs: \"%s\"", M.fdt.bootargs);
			return FAIL;
		}
	}
	ksnprintf(msg, n, "%zu bytes at 0x%lx%s", M.cmdline_len, M.cmdline_pa,
		  M.dtb_present ? ", equal to /chosen/bootargs" : "");
	return PASS;
}

static bool same_ids(const uint32_t *a, int na, const uint32_t *b, int nb)
{
	if (na != nb)
		return false;
	for (int i = 0; i < na && i < MAX_CPUS; i++) {
		bool found = false;
		for (int j = 0; j < nb && j < MAX_CPUS; j++)
			if (a[i] == b[j])
				found = true;
		if (!found)
			return false;
	}
	return true;
}

int check_dtb(char *msg, size_t n)
{
	const struct fdt_info *f = &M.fdt;
	if (!M.dtb_present) {
		ksnprintf(msg, n, "no device tree module");
		return SKIP;
	}
	if (M.dtb_error[0] || !f->valid) {
		ksnprintf(msg, n, "%s", M.dtb_error);
		return FAIL;
	}
	kprintf("# dtb: %u bytes at 0x%lx, version %u, %d nodes, %d memory ranges, "
		"%d CPUs, boot_cpuid_phys %u\n", f->totalsize, M.dtb_pa, f->version,
		f->nodes, f->nmem, f->ncpus, f->boot_cpuid);

	if (f->nmem == 0 || f->mem_overflow) {
		ksnprintf(msg, n, f->nmem ? "more than %d memory ranges" : "no /memory reg",
			  MAX_RANGES);
		return FAIL;
	}
	uint64_t dmib = (ranges_total(f->mem, f->nmem) + MIB - 1) / MIB;
	if (M.memmap) {
		uint64_t pmib = (ranges_total(M.ram, M.nram) + MIB - 1) / MIB;
		if (pmib > dmib || pmib + MEM_SLACK_MIB < dmib) {
			ksnprintf(msg, n, "memory: %lu MiB in the device tree, %lu MiB "
				  "in the PVH memory map", dmib, pmib);
			return FAIL;
		}
	}
	if (f->ncpus == 0 || f->cpus_overflow) {
		ksnprintf(msg, n, "%d cpu nodes under /cpus", f->ncpus);
		return FAIL;
	}
	if (M.mp.found && !same_ids(f->cpu_ids, f->ncpus, M.mp.cpu_ids, M.mp.ncpus)) {
		ksnprintf(msg, n, "%d CPUs in the device tree, %d in the MP table "
			  "(or other APIC IDs)", f->ncpus, M.mp.ncpus);
		return FAIL;
	}
	if (!M.mp.found && M.madt.found &&
	    !same_ids(f->cpu_ids, f->ncpus, M.madt.cpu_ids, M.madt.ncpus)) {
		ksnprintf(msg, n, "%d CPUs in the device tree, %d in the MADT",
			  f->ncpus, M.madt.ncpus);
		return FAIL;
	}
	/* The console UART: an ns16550a at I/O port 0x3f8 on the ISA bus,
	 * and if it names its interrupt, ISA IRQ 4. */
	const struct fdt_serial *com1 = NULL;
	for (int i = 0; i < f->nserial && i < (int)ARRAY_SIZE(f->serial); i++) {
		const struct fdt_serial *s = &f->serial[i];
		kprintf("# dtb: ns16550a %s 0x%lx, interrupt %d\n",
			!s->has_reg ? "without reg" : s->io ? "at I/O port" : "at address",
			s->addr, s->irq);
		if (s->has_reg && s->io && s->addr == COM1 && !com1)
			com1 = s;
	}
	if (!com1) {
		ksnprintf(msg, n, "no ns16550a node at I/O port 0x%x (an ISA bus child "
			  "with reg = <1 0x%x 8>) among %d", COM1, COM1, f->nserial);
		return FAIL;
	}
	if (com1->irq >= 0 && com1->irq != 4) {
		ksnprintf(msg, n, "the ns16550a at 0x%x has interrupt %d, COM1 is IRQ 4",
			  COM1, com1->irq);
		return FAIL;
	}
	if (!f->chosen) {
		ksnprintf(msg, n, "no /chosen node");
		return FAIL;
	}
	ksnprintf(msg, n, "version %u, %lu MiB, %d CPUs%s, ns16550a at I/O 0x%lx",
		  f->version, dmib, f->ncpus, M.mp.found ? " (as the MP table)" : "",
		  com1->addr);
	return PASS;
}
