// SPDX-License-Identifier: GPL-2.0
/*
 * What the x86 guest boots, and the pieces every boot protocol shares:
 * the e820 map, the command line, the GDT and identity page tables, the
 * initrd and the device tree. The protocols themselves live in bzimage.c,
 * elf.c (vmlinux and PVH), flat.c and firmware.c.
 */
#include <errno.h>
#include <libfdt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lkvm/arch.h"
#include "lkvm/fdt.h"
#include "lkvm/machine.h"
#include "lkvm/util.h"
#include "lkvm/x86.h"

/* A kernel file bigger than this is refused before it is read. */
#define KERNEL_FILE_MAX (1ull << 30)

int x86_image_err(const struct x86_image *img, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pr_err("%s '%s': %s", img->what, img->path, msg);
	return -EINVAL;
}

unsigned int x86_ncpus(const struct machine *m)
{
	/* Unit tests build tables from cfg alone, before any machine_init(). */
	if (m->ncpus)
		return m->ncpus;
	return m->cfg.ncpus ? m->cfg.ncpus : 1;
}

uint64_t x86_low_ram_end(struct machine *m)
{
	for (unsigned int i = 0; i < m->nmem; i++)
		if (m->mem[i].gpa == 0 && !m->mem[i].readonly)
			return m->mem[i].size;
	return 0;
}

/* ---- e820 --------------------------------------------------------------- */

static void e820_add(struct x86_e820 *e, unsigned int *n, unsigned int max,
		     uint64_t addr, uint64_t end, uint32_t type)
{
	if (end <= addr || *n >= max)
		return;
	e[(*n)++] = (struct x86_e820){ addr, end - addr, type };
}

unsigned int x86_build_e820(struct machine *m, struct x86_e820 *e,
			    unsigned int max)
{
	/* KVM's TSS and identity-map pages in the PCI hole: reserved, so
	 * the guest never puts a BAR over them. */
	uint64_t tss = x86_tss_addr(m) - X86_IDENTITY_MAP_OFFSET;
	uint64_t tss_end = x86_tss_addr(m) + 3 * 4096;
	bool tss_done = false;
	unsigned int n = 0;

	for (unsigned int i = 0; i < m->nmem; i++) {
		const struct mem_region *r = &m->mem[i];
		uint64_t end = r->gpa + r->size;

		if (r->readonly)
			continue;
		if (!tss_done && r->gpa >= tss_end) {
			e820_add(e, &n, max, tss, tss_end, E820_RESERVED);
			tss_done = true;
		}
		if (r->gpa != 0) {
			e820_add(e, &n, max, r->gpa, end, E820_RAM);
			continue;
		}
		/*
		 * The first MiB as a PC has it: conventional memory up to
		 * the EBDA, the EBDA reserved, the VGA window and option
		 * ROM area left out, the BIOS segment (which holds the MP
		 * table) reserved.
		 */
		e820_add(e, &n, max, 0, MIN(end, X86_EBDA_ADDR), E820_RAM);
		e820_add(e, &n, max, X86_EBDA_ADDR, MIN(end, X86_VGA_ADDR),
			 E820_RESERVED);
		e820_add(e, &n, max, X86_BIOS_ADDR, MIN(end, X86_HIGH_ADDR),
			 E820_RESERVED);
		e820_add(e, &n, max, X86_HIGH_ADDR, end, E820_RAM);
	}
	if (!tss_done)
		e820_add(e, &n, max, tss, tss_end, E820_RESERVED);
	return n;
}

/* ---- the command line --------------------------------------------------- */

/*
 * What a Linux guest needs on lkvm and would not guess: its console on the
 * 8250 at COM1 (or the virtio console), early messages there too, reboot
 * through the keyboard controller (which ends the run cleanly; there is
 * no ACPI or triple-fault reset to prefer), and a reboot instead of a hang
 * on panic, so a dead guest does not keep lkvm running. Each default is
 * left out when -p sets the same parameter, whatever its value. Other
 * kernels (the bundled test kernel, PVH kernels that are not Linux) get
 * -p exactly as written.
 */
static const char *const linux_defaults[] = {
	"console=ttyS0",
	"earlyprintk=serial",
	"reboot=k",
	"panic=-1",
};

/* Does params set the parameter named like def (up to its '=')? */
static bool param_given(const char *params, const char *def)
{
	size_t klen = strcspn(def, "=");
	const char *p = params;

	while (p && *p) {
		size_t len;

		p += strspn(p, " \t\n");
		len = strcspn(p, " \t\n");
		/* What follows "--" belongs to init, not the kernel. */
		if (len == 2 && !strncmp(p, "--", 2))
			break;
		if ((len == klen || (len > klen && p[klen] == '=')) &&
		    !strncmp(p, def, klen))
			return true;
		p += len;
	}
	return false;
}

char *x86_kernel_cmdline(const char *params, bool is_linux,
			 bool virtio_console)
{
	size_t len = (params ? strlen(params) : 0) + 1;
	char *s, *p;

	if (!is_linux)
		return strdup(params ? params : "");
	for (unsigned int i = 0; i < ARRAY_SIZE(linux_defaults); i++)
		len += strlen(linux_defaults[i]) + 1;
	s = malloc(len);
	if (!s)
		return NULL;
	p = s;
	*p = '\0';
	for (unsigned int i = 0; i < ARRAY_SIZE(linux_defaults); i++) {
		const char *d = linux_defaults[i];

		if (virtio_console && !strncmp(d, "console=", 8))
			d = "console=hvc0";
		if (param_given(params, d))
			continue;
		p += sprintf(p, "%s%s", p == s ? "" : " ", d);
	}
	if (params && *params)
		sprintf(p, "%s%s", p == s ? "" : " ", params);
	return s;
}

char *x86_machine_cmdline(struct machine *m, const char *params,
			  bool is_linux)
{
	bool hvc = m->cfg.console_kind == CONSOLE_VIRTIO;
	char *joined, *s;

	/* What devices tell Linux (virtio_mmio.device=...) goes before -p,
	 * so the user's word is last and wins. */
	if (!is_linux || !m->linux_params || !*m->linux_params)
		return x86_kernel_cmdline(params, is_linux, hvc);
	if (asprintf(&joined, "%s%s%s", m->linux_params,
		     params && *params ? " " : "", params ? params : "") < 0)
		return NULL;
	s = x86_kernel_cmdline(joined, is_linux, hvc);
	free(joined);
	return s;
}

/* ---- GDT, page tables, BIOS data area ----------------------------------- */

static int put(struct machine *m, uint64_t gpa, const void *src, uint64_t len)
{
	void *dst = guest_ptr(m, gpa, len);

	if (!dst)
		return -EFAULT;
	memcpy(dst, src, len);
	return 0;
}

static void le16(uint8_t *p, uint16_t v)
{
	p[0] = v;
	p[1] = v >> 8;
}

static void le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = v >> (8 * i);
}

/*
 * Flat 4 GiB segments at the selectors the boot protocols name: Linux's
 * 64-bit entry wants __BOOT_CS (0x10) and __BOOT_DS (0x18); PVH takes any
 * flat 32-bit code segment (0x08).
 */
static const uint64_t boot_gdt[] = {
	0,
	0x00cf9b000000ffffull,	/* 0x08: code, 32-bit, base 0, 4 GiB */
	0x00af9b000000ffffull,	/* 0x10: code, 64-bit */
	0x00cf93000000ffffull,	/* 0x18: data, base 0, 4 GiB */
};

static int write_gdt(struct machine *m)
{
	uint8_t g[sizeof(boot_gdt)];

	for (unsigned int i = 0; i < ARRAY_SIZE(boot_gdt); i++)
		le64(g + 8 * i, boot_gdt[i]);
	return put(m, X86_GDT_ADDR, g, sizeof(g));
}

/*
 * 0-4 GiB identity mapped with 2 MiB pages: the kernel, the zero page,
 * the command line and the boot tables all lie below 4 GiB. 1 GiB pages
 * would save the page directories, but not every CPU has them.
 */
static int write_page_tables(struct machine *m)
{
	uint8_t *pml4 = guest_ptr(m, X86_PML4_ADDR, 4096);
	uint8_t *pdpt = guest_ptr(m, X86_PDPT_ADDR, 4096);
	uint8_t *pd = guest_ptr(m, X86_PD_ADDR, 4 * 4096);

	if (!pml4 || !pdpt || !pd)
		return -EFAULT;
	memset(pml4, 0, 4096);
	memset(pdpt, 0, 4096);
	le64(pml4, X86_PDPT_ADDR | 0x3);		/* present, writable */
	for (unsigned int i = 0; i < 4; i++)
		le64(pdpt + 8 * i, (X86_PD_ADDR + 4096 * i) | 0x3);
	for (uint64_t i = 0; i < 4 * 512; i++)
		le64(pd + 8 * i, (i << 21) | 0x83);	/* + 2 MiB page */
	return 0;
}

/* Where the EBDA is and how much conventional memory there is, in the
 * BIOS data area where Linux and the MP spec's search look for them. */
static int write_bda(struct machine *m)
{
	uint8_t *bda = guest_ptr(m, 0x400, 0x100);
	uint8_t *ebda = guest_ptr(m, X86_EBDA_ADDR, X86_VGA_ADDR - X86_EBDA_ADDR);

	if (!bda || !ebda)
		return -EFAULT;
	le16(bda + X86_BDA_EBDA_SEG - 0x400, X86_EBDA_ADDR >> 4);
	le16(bda + X86_BDA_BASE_KIB - 0x400, X86_EBDA_ADDR >> 10);
	memset(ebda, 0, X86_VGA_ADDR - X86_EBDA_ADDR);
	ebda[0] = 1;	/* its size in KiB, as a BIOS writes it */
	return 0;
}

int x86_write_boot_common(struct machine *m, const struct x86_image *k,
			  const char *cmdline, uint64_t cmdline_limit,
			  struct x86_boot *b)
{
	uint64_t low = x86_low_ram_end(m);

	if (low < X86_HIGH_ADDR)
		return x86_image_err(k, "guest RAM (%llu KiB) is too small: "
				     "the boot tables need the first MiB",
				     (unsigned long long)(low >> 10));
	if (write_gdt(m) || write_page_tables(m) || write_bda(m))
		return x86_image_err(k, "cannot write the boot tables");
	if (!cmdline)
		return 0;

	b->cmdline_len = strlen(cmdline);
	cmdline_limit = MIN(cmdline_limit, X86_CMDLINE_MAX - 1);
	if (b->cmdline_len > cmdline_limit)
		return x86_image_err(k, "command line too long: %u bytes, the "
				     "kernel accepts at most %llu",
				     b->cmdline_len,
				     (unsigned long long)cmdline_limit);
	if (put(m, X86_CMDLINE_ADDR, cmdline, b->cmdline_len + 1))
		return x86_image_err(k, "cannot write the command line");
	b->cmdline_addr = X86_CMDLINE_ADDR;
	return 0;
}

/* ---- initrd and device tree --------------------------------------------- */

int x86_place_initrd(struct machine *m, const struct x86_image *rd,
		     uint64_t min_addr, uint64_t max_end, struct x86_boot *b)
{
	uint64_t top = MIN(x86_low_ram_end(m), max_end);
	uint64_t addr;
	void *dst;

	if (!rd->size)
		return x86_image_err(rd, "empty file");
	min_addr = ALIGN_UP(min_addr, 4096ull);
	if (rd->size > top || ((top - rd->size) & ~4095ull) < min_addr)
		return x86_image_err(rd, "initrd too big: %llu KiB do not fit "
				     "between the kernel's end (0x%llx) and "
				     "0x%llx; give the guest more memory (-m)",
				     (unsigned long long)(rd->size >> 10),
				     (unsigned long long)min_addr,
				     (unsigned long long)top);
	/* As high as it goes, page aligned, as boot loaders do, so the
	 * kernel has the most room below it to decompress and grow. */
	addr = (top - rd->size) & ~4095ull;
	dst = guest_ptr(m, addr, rd->size);
	if (!dst)
		return x86_image_err(rd, "cannot place it at 0x%llx",
				     (unsigned long long)addr);
	memcpy(dst, rd->data, rd->size);
	b->initrd_addr = addr;
	b->initrd_size = rd->size;
	return 0;
}

int x86_place_fdt(struct machine *m, const char *cmdline, uint64_t hdr_room,
		  struct x86_boot *b)
{
	uint32_t size;
	void *dst;
	int err;

	err = machine_build_fdt_bootargs(m, cmdline);
	if (err)
		return err;
	size = fdt_totalsize(m->fdt);
	if (hdr_room + size > X86_FDT_MAX) {
		pr_err("device tree: %u bytes, more than the %llu KiB lkvm "
		       "keeps for it", size,
		       (unsigned long long)(X86_FDT_MAX >> 10));
		return -E2BIG;
	}
	dst = guest_ptr(m, X86_FDT_ADDR + hdr_room, size);
	if (!dst) {
		pr_err("device tree: guest RAM too small to hold it");
		return -EFAULT;
	}
	memcpy(dst, m->fdt, size);
	b->fdt_addr = X86_FDT_ADDR + hdr_room;
	b->fdt_size = size;
	return 0;
}

/* ---- arch_load ---------------------------------------------------------- */

static int read_image(struct x86_image *img, const char *what,
		      const char *path, uint64_t max, void **buf)
{
	size_t size;
	int err;

	img->what = what;
	img->path = path;
	err = read_file(path, max, buf, &size);
	if (err == -EFBIG)
		return x86_image_err(img, "too big: more than %llu MiB",
				     (unsigned long long)(max >> 20));
	if (err) {
		pr_err("%s '%s': %s", what, path, strerror(-err));
		return err;
	}
	img->data = *buf;
	img->size = size;
	if (!size)
		return x86_image_err(img, "empty file");
	return 0;
}

static int load_kernel(struct machine *m, const struct x86_image *k,
		       struct x86_boot *b)
{
	struct x86_image rd = { 0 };
	void *rd_buf = NULL;
	int err;

	if (!x86_is_elf(k->data, k->size) &&
	    !x86_is_bzimage(k->data, k->size)) {
		err = x86_load_flat(m, k, b);
		/* Nothing would hand them to a flat binary. */
		if (!err && (m->cfg.initrd || m->cfg.params))
			return x86_image_err(k, "not an ELF or bzImage kernel, "
					     "so a flat binary, which takes "
					     "no %s",
					     m->cfg.initrd ? "initrd (-i)" :
							     "command line (-p)");
		/* Built only for --dump-dtb: nothing hands it over. */
		return err ? err : machine_build_fdt(m);
	}
	if (m->cfg.initrd) {
		err = read_image(&rd, "initrd", m->cfg.initrd,
				 MAX(x86_low_ram_end(m), 1), &rd_buf);
		if (err) {
			free(rd_buf);
			return err;
		}
	}
	if (x86_is_elf(k->data, k->size))
		err = x86_load_elf(m, k, m->cfg.initrd ? &rd : NULL,
				   m->cfg.params, b);
	else
		err = x86_load_bzimage(m, k, m->cfg.initrd ? &rd : NULL,
				       m->cfg.params, b);
	free(rd_buf);
	return err;
}

int arch_load(struct machine *m)
{
	struct x86_boot *b;
	struct x86_image img = { 0 };
	void *buf = NULL;
	int err;

	b = calloc(1, sizeof(*b));
	if (!b) {
		pr_err("out of memory");
		return -ENOMEM;
	}
	if (m->cfg.firmware) {
		if (m->cfg.initrd || m->cfg.kernel || m->cfg.params) {
			pr_err("firmware '%s': the firmware boots from its own "
			       "devices and takes no -k, -i or -p",
			       m->cfg.firmware);
			err = -EINVAL;
			goto out;
		}
		/* One byte over the limit, so the size check can name it. */
		err = read_image(&img, "firmware", m->cfg.firmware,
				 X86_FW_MAX + X86_FW_ALIGN, &buf);
		if (!err)
			err = x86_load_firmware(m, &img, b);
		/* Built only for --dump-dtb: firmware has its own tables. */
		if (!err)
			err = machine_build_fdt(m);
	} else if (m->cfg.kernel) {
		err = read_image(&img, "kernel", m->cfg.kernel,
				 KERNEL_FILE_MAX, &buf);
		if (!err)
			err = load_kernel(m, &img, b);
	} else {
		img = (struct x86_image){
			.what = "kernel",
			.path = "(bundled test kernel)",
			.data = lkvm_test_kernel,
			.size = lkvm_test_kernel_end - lkvm_test_kernel,
		};
		err = load_kernel(m, &img, b);
	}
	/* Guests without a device tree or ACPI find their CPUs and
	 * interrupt routing here; firmware writes its own. */
	if (!err && b->entry != X86_ENTRY_RESET)
		err = x86_write_mptable(m, x86_ncpus(m));
out:
	free(buf);
	if (err) {
		free(b);
		return err < 0 ? err : -EINVAL;
	}
	free(m->boot);
	m->boot = b;
	return 0;
}

/* Reserved ranges inside RAM (the EBDA and BIOS area) are reserved in the
 * device tree too, so a guest reading only the tree leaves them alone. */
int arch_fdt(struct machine *m, void *fdt)
{
	struct x86_e820 e[X86_E820_MAX];
	unsigned int n = x86_build_e820(m, e, X86_E820_MAX);
	int err;

	for (unsigned int i = 0; i < n; i++) {
		if (e[i].type == E820_RAM || !guest_ptr(m, e[i].addr, e[i].size))
			continue;
		err = fdt_add_mem_rsv(fdt, e[i].addr, e[i].size);
		if (err)
			return err;
	}
	return 0;
}
