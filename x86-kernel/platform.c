/* What the machine says about itself: the PVH start info (command line,
 * memory map, modules with the device tree), the MP table and the ACPI
 * MADT; and which of them the checks believe. */
#include "kernel.h"

#define PVH_MAGIC 0x336ec578
#define MAX_MEMMAP 128
#define MAX_MODULES 16
#define E820_RAM 1

struct hvm_start_info {
	uint32_t magic, version, flags, nr_modules;
	uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr;
	uint64_t memmap_paddr; /* version 1 and later */
	uint32_t memmap_entries, reserved;
};

struct hvm_memmap_entry {
	uint64_t addr, size;
	uint32_t type, reserved;
};

struct hvm_module {
	uint64_t paddr, size, cmdline_paddr, reserved;
};

struct machine M;

static void note_used(uint64_t base, uint64_t size)
{
	ranges_add(M.used, &M.nused, MAX_RANGES, base, size, NULL);
}

/* The module whose command line is exactly "dtb". */
static bool module_is_dtb(const struct hvm_module *m)
{
	if (!m->cmdline_paddr || !phys_low(m->cmdline_paddr, 4))
		return false;
	const char *s = phys_ptr(m->cmdline_paddr);
	return !strncmp(s, "dtb", 4);
}

static void parse_cmdline(void)
{
	uint64_t pa = M.cmdline_pa;
	if (!pa) {
		ksnprintf(M.cmdline_error, sizeof(M.cmdline_error),
			  "no command line address");
		return;
	}
	if (!phys_low(pa, 1)) {
		ksnprintf(M.cmdline_error, sizeof(M.cmdline_error),
			  "command line at 0x%lx is above 4 GiB", pa);
		return;
	}
	uint64_t room = (1ull << 32) - pa;
	size_t max = room < CMDLINE_MAX ? (size_t)room : CMDLINE_MAX;
	const char *s = phys_ptr(pa);
	size_t len = strnlen(s, max);
	if (len == max) {
		ksnprintf(M.cmdline_error, sizeof(M.cmdline_error),
			  "no NUL within %zu bytes of 0x%lx", max, pa);
		memcpy(M.cmdline, s, max - 1);
		M.cmdline[max - 1] = 0;
		M.cmdline_len = max - 1;
		return;
	}
	memcpy(M.cmdline, s, len + 1);
	M.cmdline_len = len;
	note_used(pa, len + 1);
	M.cmdline_ok = true;
}

void boot_info_parse(uint32_t pa)
{
	M.start_info = pa;
	if (!pa || !phys_low(pa, sizeof(struct hvm_start_info))) {
		ksnprintf(M.pvh_error, sizeof(M.pvh_error), "no start info (ebx=0x%x)", pa);
		return;
	}
	const struct hvm_start_info *si = phys_ptr(pa);
	if (si->magic != PVH_MAGIC) {
		ksnprintf(M.pvh_error, sizeof(M.pvh_error),
			  "start info at 0x%x has magic 0x%x", pa, si->magic);
		return;
	}
	M.pvh_ok = true;
	M.pvh_version = si->version;
	M.rsdp = si->rsdp_paddr;
	note_used(pa, si->version >= 1 ? sizeof(*si) : 40);

	M.cmdline_pa = si->cmdline_paddr;
	parse_cmdline();

	if (si->version >= 1 && si->memmap_paddr && si->memmap_entries) {
		uint32_t n = si->memmap_entries;
		if (n > MAX_MEMMAP ||
		    !phys_low(si->memmap_paddr, (uint64_t)n * sizeof(struct hvm_memmap_entry))) {
			kprintf("# warning: memory map of %u entries at 0x%lx ignored\n",
				n, si->memmap_paddr);
		} else {
			const struct hvm_memmap_entry *e = phys_ptr(si->memmap_paddr);
			M.memmap = true;
			M.memmap_entries = (int)n;
			note_used(si->memmap_paddr, (uint64_t)n * sizeof(*e));
			for (uint32_t i = 0; i < n; i++) {
				ranges_add(M.all, &M.nall, MAX_RANGES, e[i].addr,
					   e[i].size, NULL);
				if (e[i].type == E820_RAM)
					ranges_add(M.ram, &M.nram, MAX_RANGES,
						   e[i].addr, e[i].size, &M.ram_overflow);
			}
		}
	}

	uint32_t nmod = si->nr_modules;
	if (nmod && si->modlist_paddr) {
		if (nmod > MAX_MODULES ||
		    !phys_low(si->modlist_paddr, (uint64_t)nmod * sizeof(struct hvm_module))) {
			ksnprintf(M.dtb_error, sizeof(M.dtb_error),
				  "module list (%u at 0x%lx) out of reach", nmod,
				  si->modlist_paddr);
			return;
		}
		const struct hvm_module *m = phys_ptr(si->modlist_paddr);
		note_used(si->modlist_paddr, (uint64_t)nmod * sizeof(*m));
		for (uint32_t i = 0; i < nmod; i++) {
			note_used(m[i].paddr, m[i].size);
			if (!module_is_dtb(&m[i]) || M.dtb_present)
				continue;
			M.dtb_present = true;
			M.dtb_pa = m[i].paddr;
			M.dtb_size = m[i].size;
			if (!m[i].paddr || !phys_low(m[i].paddr, m[i].size)) {
				ksnprintf(M.dtb_error, sizeof(M.dtb_error),
					  "dtb module 0x%lx+0x%lx not below 4 GiB",
					  m[i].paddr, m[i].size);
				continue;
			}
			fdt_parse(phys_ptr(m[i].paddr), m[i].size, &M.fdt);
			if (!M.fdt.valid)
				ksnprintf(M.dtb_error, sizeof(M.dtb_error), "%s",
					  M.fdt.error);
		}
	}
}

/* --- MP table (Intel MultiProcessor Specification 1.4) --- */

static uint8_t sum8(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	for (size_t i = 0; i < n; i++)
		s += p[i];
	return s;
}

static uint32_t find_mp_fp(uint32_t start, uint32_t len)
{
	if (!start || !phys_low(start, len))
		return 0;
	for (uint32_t a = start; a + 16 <= start + len; a += 16) {
		const uint8_t *p = phys_ptr(a);
		if (*(const uint32_t *)p == 0x5f504d5f /* "_MP_" */ && p[8] == 1 &&
		    sum8(p, 16) == 0)
			return a;
	}
	return 0;
}

#define MPERR(...)                                                     \
	do {                                                           \
		ksnprintf(mp->error, sizeof(mp->error), __VA_ARGS__); \
		return;                                                \
	} while (0)

void mp_scan(struct mp_info *mp)
{
	memset(mp, 0, sizeof(*mp));
	mp->bsp_id = -1;
	for (int i = 0; i < 16; i++)
		mp->isa_pin[i] = -1;

	/* The three places of the specification: the first KiB of the EBDA,
	 * the last KiB of base memory, the BIOS ROM at 0xf0000. */
	uint32_t ebda = (uint32_t)phys_read16(0x40e) << 4;
	uint32_t basekb = phys_read16(0x413);
	uint32_t fp = 0;
	if (ebda >= 0x400 && ebda < 0xa0000)
		fp = find_mp_fp(ebda, 1024);
	if (!fp && basekb >= 64 && basekb <= 640)
		fp = find_mp_fp(basekb * 1024 - 1024, 1024);
	if (!fp)
		fp = find_mp_fp(0xf0000, 0x10000);
	if (!fp)
		MPERR("no MP floating pointer");
	mp->fp_addr = fp;
	const uint8_t *f = phys_ptr(fp);
	if (f[11])
		MPERR("MP default configuration %u (no table)", f[11]);
	uint32_t ta = *(const uint32_t *)(f + 4);
	if (!ta || !phys_low(ta, 44))
		MPERR("MP table pointer 0x%x", ta);
	const uint8_t *t = phys_ptr(ta);
	uint16_t len = *(const uint16_t *)(t + 4);
	if (*(const uint32_t *)t != 0x504d4350 /* "PCMP" */ || len < 44 ||
	    !phys_low(ta, len) || sum8(t, len))
		MPERR("MP table at 0x%x: bad signature, length or checksum", ta);
	mp->table_addr = ta;
	mp->found = true;

	int isa_bus = -1;
	uint16_t count = *(const uint16_t *)(t + 34);
	uint32_t off = 44;
	for (uint16_t i = 0; i < count; i++) {
		if (off >= len)
			MPERR("MP entry %u past the table length", i);
		uint8_t type = t[off];
		uint32_t size = type == 0 ? 20 : 8;
		if (type > 4 || off + size > len)
			MPERR("MP entry %u: type %u at offset %u", i, type, off);
		const uint8_t *e = t + off;
		switch (type) {
		case 0: /* processor */
			if (!(e[3] & 1))
				break;
			if (mp->ncpus < MAX_CPUS)
				mp->cpu_ids[mp->ncpus] = e[1];
			mp->ncpus++;
			if (e[3] & 2)
				mp->bsp_id = e[1];
			break;
		case 1: /* bus */
			if (!memcmp(e + 2, "ISA", 3))
				isa_bus = e[1];
			break;
		case 2: /* I/O APIC */
			if ((e[3] & 1) && !mp->have_ioapic) {
				mp->have_ioapic = true;
				mp->ioapic_id = e[1];
				mp->ioapic_addr = *(const uint32_t *)(e + 4);
			}
			break;
		case 3: /* I/O interrupt assignment: vectored INT from an ISA IRQ */
			if (e[1] == 0 && isa_bus >= 0 && e[4] == isa_bus && e[5] < 16 &&
			    (!mp->have_ioapic || e[6] == mp->ioapic_id || e[6] == 0xff))
				mp->isa_pin[e[5]] = (int8_t)e[7];
			break;
		}
		off += size;
	}
}

/* --- ACPI MADT, the fallback when there is no MP table --- */

#define MADTERR(...)                                                       \
	do {                                                               \
		ksnprintf(madt->error, sizeof(madt->error), __VA_ARGS__); \
		return;                                                    \
	} while (0)

static uint64_t find_rsdp(uint32_t start, uint32_t len)
{
	if (!start || !phys_low(start, len))
		return 0;
	for (uint32_t a = start; a + 20 <= start + len; a += 16)
		if (*(const uint64_t *)phys_ptr(a) == 0x2052545020445352ull /* "RSD PTR " */ &&
		    !sum8(phys_ptr(a), 20))
			return a;
	return 0;
}

static const uint8_t *acpi_table(uint64_t pa, const char *sig)
{
	if (!pa || !phys_low(pa, 36))
		return NULL;
	const uint8_t *t = phys_ptr(pa);
	uint32_t len = *(const uint32_t *)(t + 4);
	if (len < 36 || len > (1u << 20) || !phys_low(pa, len))
		return NULL;
	if (sig && memcmp(t, sig, 4))
		return NULL;
	return sum8(t, len) ? NULL : t;
}

void madt_scan(struct madt_info *madt, uint64_t rsdp)
{
	memset(madt, 0, sizeof(*madt));
	for (int i = 0; i < 16; i++)
		madt->isa_pin[i] = (int8_t)i; /* identity unless overridden */

	if (!rsdp) {
		uint32_t ebda = (uint32_t)phys_read16(0x40e) << 4;
		if (ebda >= 0x400 && ebda < 0xa0000)
			rsdp = find_rsdp(ebda, 1024);
		if (!rsdp)
			rsdp = find_rsdp(0xe0000, 0x20000);
	}
	if (!rsdp || !phys_low(rsdp, 36) || memcmp(phys_ptr(rsdp), "RSD PTR ", 8))
		MADTERR("no ACPI RSDP");
	madt->rsdp = rsdp;
	const uint8_t *r = phys_ptr(rsdp);
	bool xsdt = r[15] >= 2 && *(const uint64_t *)(r + 24);
	uint64_t root = xsdt ? *(const uint64_t *)(r + 24) : *(const uint32_t *)(r + 16);
	const uint8_t *rt = acpi_table(root, xsdt ? "XSDT" : "RSDT");
	if (!rt)
		MADTERR("ACPI %s at 0x%lx is not valid", xsdt ? "XSDT" : "RSDT", root);
	uint32_t esz = xsdt ? 8 : 4, rlen = *(const uint32_t *)(rt + 4);
	const uint8_t *t = NULL;
	for (uint32_t off = 36; off + esz <= rlen && !t; off += esz) {
		uint64_t pa = xsdt ? *(const uint64_t *)(rt + off)
				   : *(const uint32_t *)(rt + off);
		t = acpi_table(pa, "APIC");
		if (t)
			madt->madt = pa;
	}
	if (!t)
		MADTERR("no valid MADT");
	madt->found = true;
	uint32_t len = *(const uint32_t *)(t + 4);
	for (uint32_t off = 44; off + 2 <= len;) {
		uint8_t type = t[off], l = t[off + 1];
		if (l < 2 || off + l > len)
			MADTERR("MADT entry at offset %u has length %u", off, l);
		const uint8_t *e = t + off;
		if (type == 0 && l >= 8 && (*(const uint32_t *)(e + 4) & 1)) {
			if (madt->ncpus < MAX_CPUS)
				madt->cpu_ids[madt->ncpus] = e[3];
			madt->ncpus++;
		} else if (type == 1 && l >= 12 && !madt->have_ioapic) {
			madt->have_ioapic = true;
			madt->ioapic_addr = *(const uint32_t *)(e + 4);
			madt->ioapic_gsi_base = *(const uint32_t *)(e + 8);
		} else if (type == 2 && l >= 10 && e[2] == 0 && e[3] < 16) {
			uint32_t gsi = *(const uint32_t *)(e + 4);
			if (gsi < 24)
				madt->isa_pin[e[3]] = (int8_t)gsi;
		}
		off += l;
	}
}

static void use_cpus(const char *source, int n, const uint32_t *ids)
{
	M.cpu_source = source;
	M.ncpus = n;
	for (int i = 0; i < n && i < MAX_CPUS; i++)
		M.cpu_ids[i] = ids[i];
}

void platform_discover(void)
{
	mp_scan(&M.mp);
	/* The MADT is the fallback; with an RSDP at hand it costs nothing to
	 * read it as a cross-check too (no scan of the BIOS area). */
	if (!M.mp.found || M.rsdp)
		madt_scan(&M.madt, M.rsdp);

	if (M.dtb_present && M.fdt.valid)
		use_cpus("device tree", M.fdt.ncpus, M.fdt.cpu_ids);
	else if (M.mp.found)
		use_cpus("MP table", M.mp.ncpus, M.mp.cpu_ids);
	else if (M.madt.found)
		use_cpus("ACPI MADT", M.madt.ncpus, M.madt.cpu_ids);
	else
		use_cpus("nothing", 0, NULL);

	/* Interrupt wiring: the MP table, else the MADT, else the wiring both
	 * lkvm and QEMU use (identity, except ISA IRQ0 on pin 2). */
	M.ioapic_addr = 0xfec00000;
	for (int i = 0; i < 16; i++)
		M.isa_pin[i] = (int8_t)(i == 0 ? 2 : i);
	M.irq_source = "default wiring";
	if (M.mp.found) {
		M.irq_source = "MP table";
		if (M.mp.have_ioapic)
			M.ioapic_addr = M.mp.ioapic_addr;
		for (int i = 0; i < 16; i++)
			if (M.mp.isa_pin[i] >= 0)
				M.isa_pin[i] = M.mp.isa_pin[i];
	} else if (M.madt.found) {
		M.irq_source = "ACPI MADT";
		if (M.madt.have_ioapic)
			M.ioapic_addr = M.madt.ioapic_addr;
		for (int i = 0; i < 16; i++)
			M.isa_pin[i] = M.madt.isa_pin[i];
	}
	for (int i = 0; i < 16; i++)
		if (M.isa_pin[i] < 0 || M.isa_pin[i] > 23)
			M.isa_pin[i] = (int8_t)i;
	if (!phys_low(M.ioapic_addr, 0x20))
		M.ioapic_addr = 0xfec00000;
}

/* --- Memory for rings and buffers --- */

extern char __kernel_end[];
static uint64_t palloc_next;

static const struct range *ram_ranges(int *n)
{
	if (M.dtb_present && M.fdt.valid) {
		*n = M.fdt.nmem;
		return M.fdt.mem;
	}
	*n = M.nram;
	return M.memmap ? M.ram : NULL;
}

/* The end of the highest RAM below 4 GiB (what the identity map reaches). */
uint64_t ram_top(void)
{
	int n;
	const struct range *r = ram_ranges(&n);
	uint64_t top = 0;
	for (int i = 0; r && i < n; i++) {
		uint64_t end = r[i].base + r[i].size;
		if (r[i].base >= (1ull << 32))
			continue;
		if (end > (1ull << 32))
			end = 1ull << 32;
		if (end > top)
			top = end;
	}
	return top;
}

/* Physical memory for device rings and buffers, never given back: the
 * first fit above the kernel image, in RAM every description agrees on,
 * below 4 GiB (identity mapped), clear of the boot structures (command
 * line, start info, modules, device tree). 0 when there is none. Not
 * cleared: callers clear what they need, with zero() for large areas. */
uint64_t palloc(uint64_t size, uint64_t align)
{
	int nr;
	const struct range *r = ram_ranges(&nr);
	if (!r || !size || (align & (align - 1)))
		return 0;
	if (!palloc_next)
		palloc_next = (uint64_t)(uintptr_t)__kernel_end;
	uint64_t a = (palloc_next + align - 1) & ~(align - 1);
	for (int guard = 0; guard < 4 * MAX_RANGES; guard++) {
		if (a < palloc_next || !phys_low(a, size))
			return 0;
		bool moved = false;
		for (int i = 0; i < M.nused; i++) {
			const struct range *u = &M.used[i];
			if (a < u->base + u->size && u->base < a + size) {
				a = (u->base + u->size + align - 1) & ~(align - 1);
				moved = true;
			}
		}
		if (moved)
			continue;
		if (!ranges_cover(r, nr, a, size)) {
			uint64_t next = ~0ull;
			for (int i = 0; i < nr; i++)
				if (r[i].base > a && r[i].base < next)
					next = r[i].base;
			if (next == ~0ull)
				return 0;
			a = (next + align - 1) & ~(align - 1);
			continue;
		}
		palloc_next = a + size;
		return a;
	}
	return 0;
}

/* Device registers: below 4 GiB the identity map serves (uncached in the
 * top GiB, where firmware and VMMs put PCI windows); above, uncached 2 MiB
 * windows in the upper half of window_pd (virtual 4.5 to 5 GiB; the lower
 * half is the mem check's). The range must not cross a 2 MiB boundary. */
extern uint64_t window_pd[512];

void *ioremap(uint64_t pa, uint64_t len)
{
	if (phys_low(pa, len))
		return (void *)(uintptr_t)pa;
	uint64_t frame = pa & ~0x1fffffull;
	if (pa + len < pa || ((pa + len - 1) & ~0x1fffffull) != frame)
		return NULL;
	int slot = -1;
	for (int i = 256; i < 512; i++) {
		if ((window_pd[i] & ~0xfffull) == frame && window_pd[i]) {
			slot = i;
			break;
		}
		if (!window_pd[i] && slot < 0)
			slot = i;
	}
	if (slot < 0)
		return NULL;
	uint64_t va = (1ull << 32) + (uint64_t)slot * 0x200000;
	if (!window_pd[slot]) {
		window_pd[slot] = frame | 0x9b; /* P, RW, PWT, PCD, PS */
		__asm__ volatile("invlpg (%0)" : : "r"(va) : "memory");
	}
	return (void *)(uintptr_t)(va + (pa & 0x1fffff));
}
