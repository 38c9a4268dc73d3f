// SPDX-License-Identifier: GPL-2.0
/*
 * The PVH boot information: struct hvm_start_info, version 1, as Xen's
 * public/arch-x86/hvm/start_info.h lays it out, with its module list and
 * memory map. Written at X86_START_INFO_ADDR; EBX points at it.
 *
 *   start info  (56 bytes)  magic, version, flags, nr_modules,
 *                           modlist_paddr, cmdline_paddr, rsdp_paddr,
 *                           memmap_paddr, memmap_entries, reserved
 *   module      (32 bytes)  paddr, size, cmdline_paddr, reserved
 *   memmap      (24 bytes)  addr, size, type (e820 numbering), reserved
 */
#include <errno.h>
#include <string.h>

#include "lkvm/machine.h"
#include "lkvm/util.h"
#include "lkvm/x86.h"

static void put_module(uint8_t *p, uint64_t paddr, uint64_t size,
		       uint64_t cmdline)
{
	put_le64(p, paddr);
	put_le64(p + 8, size);
	put_le64(p + 16, cmdline);
	put_le64(p + 24, 0);
}

int x86_write_pvh_start_info(struct machine *m, const struct x86_boot *b)
{
	uint8_t *page = guest_ptr(m, X86_START_INFO_ADDR, 4096);
	uint8_t *si, *mod, *mm;
	struct x86_e820 e[PVH_MEMMAP_MAX];
	unsigned int n, nmod;

	if (!page)
		return -EFAULT;
	memset(page, 0, 4096);
	si = page;
	mod = page + (PVH_MODLIST_ADDR - X86_START_INFO_ADDR);
	mm = page + (PVH_MEMMAP_ADDR - X86_START_INFO_ADDR);

	/* See x86_load_elf() for the module convention. */
	put_module(mod, b->initrd_addr, b->initrd_size, 0);
	nmod = 1;
	if (b->fdt_size) {
		memcpy(page + (PVH_DTB_NAME_ADDR - X86_START_INFO_ADDR), "dtb",
		       4);
		put_module(mod + PVH_MODULE_SIZE, b->fdt_addr, b->fdt_size,
			   PVH_DTB_NAME_ADDR);
		nmod = 2;
	}

	n = x86_build_e820(m, e, PVH_MEMMAP_MAX);
	for (unsigned int i = 0; i < n; i++) {
		uint8_t *p = mm + PVH_MEMMAP_ENTRY_SIZE * i;

		put_le64(p, e[i].addr);
		put_le64(p + 8, e[i].size);
		put_le32(p + 16, e[i].type);
	}

	put_le32(si, PVH_MAGIC);
	put_le32(si + 4, PVH_VERSION);
	put_le32(si + 8, 0);			/* flags */
	put_le32(si + 12, nmod);
	put_le64(si + 16, PVH_MODLIST_ADDR);
	put_le64(si + 24, b->cmdline_addr);
	put_le64(si + 32, 0);			/* no ACPI: no RSDP */
	put_le64(si + 40, PVH_MEMMAP_ADDR);
	put_le32(si + 48, n);
	return 0;
}
