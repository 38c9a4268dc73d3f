// SPDX-License-Identifier: GPL-2.0
/*
 * PC firmware (--firmware, e.g. SeaBIOS): the image is ROM ending at
 * 4 GiB, where the reset vector 0xfffffff0 reads its last 16 bytes, and
 * its last 128 KiB are also at 0xe0000-0xfffff below 1 MiB, where a PC
 * chipset aliases the BIOS. That low copy is ordinary RAM, which is what
 * SeaBIOS expects after it has "unlocked" its shadow copy. The vCPU keeps
 * the architectural reset state that KVM gives it.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "lkvm/machine.h"
#include "lkvm/util.h"
#include "lkvm/x86.h"

int x86_load_firmware(struct machine *m, const struct x86_image *fw,
		      struct x86_boot *b)
{
	uint64_t low = MIN((uint64_t)fw->size, X86_FW_LOW_MAX);
	uint64_t base = X86_4GIB - fw->size;
	void *rom, *dst;
	int err;

	if (!fw->size)
		return x86_image_err(fw, "empty file");
	if (fw->size > X86_FW_MAX)
		return x86_image_err(fw, "%zu KiB is more than the %llu MiB a "
				     "PC firmware image may have",
				     fw->size >> 10,
				     (unsigned long long)(X86_FW_MAX >> 20));
	if (fw->size % X86_FW_ALIGN)
		return x86_image_err(fw, "size %zu bytes is not a multiple of "
				     "64 KiB, as a PC firmware image is",
				     fw->size);
	if (m->kvm && kvm_check_extension(m->kvm, KVM_CAP_READONLY_MEM) <= 0)
		return x86_image_err(fw, "KVM lacks KVM_CAP_READONLY_MEM, "
				     "which firmware needs for its ROM");
	dst = guest_ptr(m, X86_HIGH_ADDR - low, low);
	if (!dst)
		return x86_image_err(fw, "guest RAM too small for the BIOS "
				     "area below 1 MiB");

	/* Memory slots want page-aligned host memory of their own. */
	rom = mmap(NULL, fw->size, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (rom == MAP_FAILED)
		return x86_image_err(fw, "cannot allocate the ROM: %s",
				     strerror(errno));
	memcpy(rom, fw->data, fw->size);
	/* Not even lkvm writes to a ROM. */
	mprotect(rom, fw->size, PROT_READ);
	err = machine_add_memory(m, base, fw->size, rom, true);
	if (err) {
		munmap(rom, fw->size);
		return x86_image_err(fw, "cannot map the ROM at 0x%llx: %s",
				     (unsigned long long)base, strerror(-err));
	}
	memcpy(dst, (const uint8_t *)fw->data + fw->size - low, low);

	b->entry = X86_ENTRY_RESET;
	b->rom = rom;
	b->rom_size = fw->size;
	b->kernel_start = base;
	b->kernel_end = X86_4GIB;
	b->kind = "firmware";
	return 0;
}
