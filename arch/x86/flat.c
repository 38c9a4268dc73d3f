// SPDX-License-Identifier: GPL-2.0
/*
 * Flat binaries: raw code loaded at 0x10000 and started in real mode at
 * 1000:0000 with SP 0x8000, as kvmtool starts them. They must end below
 * the VGA window at 0xa0000. Anything that is neither ELF nor bzImage
 * lands here, so the size check also catches damaged kernels.
 */
#include <string.h>

#include "lkvm/machine.h"
#include "lkvm/util.h"
#include "lkvm/x86.h"

int x86_load_flat(struct machine *m, const struct x86_image *k,
		  struct x86_boot *b)
{
	const uint8_t *p = k->data;
	void *dst;

	if (!k->size)
		return x86_image_err(k, "empty file");
	if (k->size > X86_FLAT_MAX) {
		/* A PC boot sector signature without "HdrS" is most
		 * likely a bzImage whose setup header was damaged. */
		bool bootsect = k->size >= 512 && p[510] == 0x55 &&
				p[511] == 0xaa;

		return x86_image_err(k, "not an ELF or bzImage kernel%s, and "
				     "at %zu KiB too big for a flat binary "
				     "(at most %llu KiB, loaded at 0x%llx "
				     "below 0xa0000)",
				     bootsect ? " (boot sector without a "
						"'HdrS' setup header)" : "",
				     (k->size + 1023) >> 10,
				     (unsigned long long)(X86_FLAT_MAX >> 10),
				     (unsigned long long)X86_FLAT_ADDR);
	}
	dst = guest_ptr(m, X86_FLAT_ADDR, k->size);
	if (!dst)
		return x86_image_err(k, "guest RAM too small for a flat "
				     "binary at 0x%llx",
				     (unsigned long long)X86_FLAT_ADDR);
	memcpy(dst, k->data, k->size);

	b->entry = X86_ENTRY_REAL;
	b->real_seg = X86_FLAT_SEG;
	b->rip = 0;
	b->rsp = X86_FLAT_SP;
	b->kernel_start = X86_FLAT_ADDR;
	b->kernel_end = X86_FLAT_ADDR + k->size;
	b->kind = "flat binary";
	return 0;
}
