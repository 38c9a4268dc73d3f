// SPDX-License-Identifier: GPL-2.0
/*
 * Linux bzImage through the 64-bit boot protocol (boot.rst, "64-bit Boot
 * Protocol"): the real-mode setup code is never run; lkvm reads the setup
 * header, loads the protected-mode kernel, fills the zero page and enters
 * at the 64-bit entry point, load address + 0x200, with identity paging.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lkvm/machine.h"
#include "lkvm/util.h"
#include "lkvm/fdt.h"
#include "lkvm/x86.h"

#define BOOT_PROTOCOL_MIN 0x0206	/* cmdline_size */
#define BOOT_PROTOCOL_64 0x020c		/* xloadflags: the 64-bit entry */
#define ENTRY64_OFFSET 0x200

bool x86_is_bzimage(const void *data, size_t size)
{
	return size >= SH_HEADER + 4 &&
	       get_le32((const uint8_t *)data + SH_HEADER) == HDRS_MAGIC;
}

int x86_bzimage_parse(const struct x86_image *k, struct x86_bzimage *bz)
{
	const uint8_t *p = k->data;
	uint64_t syssize, align;

	memset(bz, 0, sizeof(*bz));
	if (k->size < SH_HEADER + 4)
		return x86_image_err(k, "truncated setup header: %zu bytes",
				     k->size);
	if (get_le16(p + SH_BOOT_FLAG) != BOOT_FLAG_MAGIC)
		return x86_image_err(k, "damaged setup header: boot flag "
				     "0x%04x, not 0xaa55",
				     get_le16(p + SH_BOOT_FLAG));
	if (get_le32(p + SH_HEADER) != HDRS_MAGIC)
		return x86_image_err(k, "damaged setup header: no 'HdrS' "
				     "signature");
	if (k->size < SH_VERSION + 2)
		return x86_image_err(k, "truncated setup header");
	bz->version = get_le16(p + SH_VERSION);
	if (bz->version < BOOT_PROTOCOL_MIN)
		return x86_image_err(k, "boot protocol %u.%02u is too old "
				     "(lkvm needs 2.06 or later)",
				     bz->version >> 8, bz->version & 0xff);

	/* The header's length is in its own first jump instruction. */
	bz->hdr_end = SH_JUMP + 2 + p[SH_JUMP + 1];
	if (bz->version >= BOOT_PROTOCOL_64)
		bz->hdr_end = MAX(bz->hdr_end, (size_t)SH_END_MIN);
	if (bz->hdr_end > k->size)
		return x86_image_err(k, "truncated setup header: it ends at "
				     "0x%zx, the file at 0x%zx", bz->hdr_end,
				     k->size);

	bz->setup_sects = p[SH_SETUP_SECTS] ? p[SH_SETUP_SECTS] : 4;
	bz->setup_len = (bz->setup_sects + 1) * 512ul;
	if (bz->setup_len > k->size)
		return x86_image_err(k, "truncated: %u setup sectors need "
				     "%zu bytes, the file has %zu",
				     bz->setup_sects, bz->setup_len, k->size);
	bz->payload_len = k->size - bz->setup_len;
	syssize = get_le32(p + SH_SYSSIZE) * 16ull;
	if (!syssize)
		return x86_image_err(k, "damaged setup header: syssize is 0");
	if (syssize > bz->payload_len)
		return x86_image_err(k, "truncated: the setup header gives the "
				     "kernel %llu bytes, the file has %llu "
				     "after the setup code",
				     (unsigned long long)syssize,
				     (unsigned long long)bz->payload_len);

	if (bz->version < BOOT_PROTOCOL_64 ||
	    !(get_le16(p + SH_XLOADFLAGS) & XLF_KERNEL_64))
		return x86_image_err(k, "not a 64-bit kernel: it has no "
				     "64-bit entry point (XLF_KERNEL_64, boot "
				     "protocol 2.12; this is %u.%02u)",
				     bz->version >> 8, bz->version & 0xff);

	bz->relocatable = p[SH_RELOCATABLE];
	bz->initrd_addr_max = get_le32(p + SH_INITRD_ADDR_MAX);
	bz->cmdline_size = get_le32(p + SH_CMDLINE_SIZE);
	bz->init_size = get_le32(p + SH_INIT_SIZE);
	bz->load_addr = get_le64(p + SH_PREF_ADDRESS);
	align = get_le32(p + SH_KERNEL_ALIGNMENT);
	if (!bz->init_size)
		return x86_image_err(k, "damaged setup header: init_size is 0");
	if (bz->relocatable && (!align || (align & (align - 1))))
		return x86_image_err(k, "damaged setup header: kernel_alignment "
				     "0x%llx is not a power of two",
				     (unsigned long long)align);
	if (bz->load_addr < X86_HIGH_ADDR || bz->load_addr >= X86_4GIB) {
		/* lkvm's boot tables live below 1 MiB. */
		if (!bz->relocatable)
			return x86_image_err(k, "the kernel must be loaded at "
					     "0x%llx and is not relocatable",
					     (unsigned long long)bz->load_addr);
		bz->load_addr = ALIGN_UP(X86_HIGH_ADDR, align);
	}
	return 0;
}

int x86_load_bzimage(struct machine *m, const struct x86_image *k,
		     const struct x86_image *initrd, const char *params,
		     struct x86_boot *b)
{
	uint64_t ram_end = x86_low_ram_end(m), need;
	struct x86_bzimage bz;
	char *cmdline;
	void *dst;
	int err;

	err = x86_bzimage_parse(k, &bz);
	if (err)
		return err;

	/*
	 * The kernel decompresses in place and runs from its preferred
	 * address (a relocatable one loaded lower still moves itself up
	 * to it): it needs init_size bytes from there.
	 */
	need = MAX(bz.init_size, bz.payload_len);
	if (bz.load_addr + need > ram_end)
		return x86_image_err(k, "the kernel needs %llu MiB from 0x%llx "
				     "(init_size), guest RAM below 3 GiB ends "
				     "at 0x%llx; give the guest more memory "
				     "(-m)",
				     (unsigned long long)((need + MIB - 1) >> 20),
				     (unsigned long long)bz.load_addr,
				     (unsigned long long)ram_end);
	dst = guest_ptr(m, bz.load_addr, bz.payload_len);
	if (!dst)
		return x86_image_err(k, "cannot load the kernel at 0x%llx",
				     (unsigned long long)bz.load_addr);
	memcpy(dst, (const uint8_t *)k->data + bz.setup_len, bz.payload_len);
	b->kernel_start = bz.load_addr;
	b->kernel_end = bz.load_addr + need;

	cmdline = x86_machine_cmdline(m, params, true);
	if (!cmdline)
		return -ENOMEM;
	err = x86_write_boot_common(m, k, cmdline, bz.cmdline_size, b);
	if (!err && initrd)
		/* initrd_addr_max is the last byte the initrd may use. */
		err = x86_place_initrd(m, initrd, b->kernel_end,
				       (uint64_t)bz.initrd_addr_max + 1, b);
	/* The tree is built (for --dump-dtb) but not handed to Linux: see
	 * x86_write_zero_page(). */
	if (!err)
		err = machine_build_fdt_bootargs(m, cmdline);
	free(cmdline);
	if (err)
		return err;
	if (x86_write_zero_page(m, k->data, bz.hdr_end, b))
		return x86_image_err(k, "cannot write the zero page");

	b->entry = X86_ENTRY_LONG64;
	b->rip = bz.load_addr + ENTRY64_OFFSET;
	b->rsi = X86_ZERO_PAGE_ADDR;
	b->rsp = X86_BOOT_STACK_TOP;
	b->kind = "bzImage";
	return 0;
}
