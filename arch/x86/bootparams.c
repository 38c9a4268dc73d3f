// SPDX-License-Identifier: GPL-2.0
/*
 * The Linux zero page (struct boot_params) for the 64-bit entry of a
 * bzImage or a vmlinux: the kernel's own setup header, with what the boot
 * loader fills in (Documentation/arch/x86/boot.rst, zero-page.rst).
 */
#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "lkvm/machine.h"
#include "lkvm/util.h"
#include "lkvm/x86.h"

/* A vmlinux has no setup header; Linux still checks these. */
#define VMLINUX_KERNEL_ALIGNMENT 0x01000000u

int x86_write_zero_page(struct machine *m, const uint8_t *setup,
			size_t setup_len, const struct x86_boot *b)
{
	struct x86_e820 e[X86_E820_MAX];
	uint8_t *zp = guest_ptr(m, X86_ZERO_PAGE_ADDR, BP_SIZE);
	unsigned int n;

	if (!zp)
		return -EFAULT;
	memset(zp, 0, BP_SIZE);
	if (setup && setup_len > BP_HDR) {
		/* The header as the kernel wrote it, fields lkvm does not
		 * know included: that is how the protocol stays compatible. */
		setup_len = MIN(setup_len, (size_t)BP_SIZE);
		memcpy(zp + BP_HDR, setup + BP_HDR, setup_len - BP_HDR);
	} else {
		put_le16(zp + SH_BOOT_FLAG, BOOT_FLAG_MAGIC);
		put_le32(zp + SH_HEADER, HDRS_MAGIC);
		put_le32(zp + SH_KERNEL_ALIGNMENT, VMLINUX_KERNEL_ALIGNMENT);
	}

	/* "Undefined" boot loader: lkvm has no assigned ID. */
	zp[SH_TYPE_OF_LOADER] = 0xff;
	zp[SH_LOADFLAGS] |= LOADED_HIGH;
	if (setup)
		put_le32(zp + SH_CODE32_START, b->kernel_start);

	put_le32(zp + SH_CMD_LINE_PTR, b->cmdline_addr);
	put_le32(zp + BP_EXT_CMD_LINE_PTR, b->cmdline_addr >> 32);
	put_le32(zp + SH_RAMDISK_IMAGE, b->initrd_addr);
	put_le32(zp + BP_EXT_RAMDISK_IMAGE, b->initrd_addr >> 32);
	put_le32(zp + SH_RAMDISK_SIZE, b->initrd_size);
	put_le32(zp + BP_EXT_RAMDISK_SIZE, b->initrd_size >> 32);

	/*
	 * setup_data: a random seed for the kernel's RNG, as QEMU gives.
	 * Not the device tree: a Linux with device-tree support that finds
	 * a tree and no ACPI takes its CPUs and interrupt controllers from
	 * the tree (since 6.9), and lkvm's tree does not describe the I/O
	 * APIC, so PCI interrupts would be lost. The tree goes to PVH
	 * kernels as a module and to --dump-dtb.
	 */
	{
		uint8_t *sd = guest_ptr(m, X86_SETUP_DATA_ADDR,
					X86_SETUP_DATA_HDR + X86_RNG_SEED_LEN);

		if (!sd || getrandom(sd + X86_SETUP_DATA_HDR, X86_RNG_SEED_LEN,
				     GRND_NONBLOCK) != X86_RNG_SEED_LEN)
			return -EFAULT;
		put_le64(sd, 0);
		put_le32(sd + 8, SETUP_RNG_SEED);
		put_le32(sd + 12, X86_RNG_SEED_LEN);
		put_le64(zp + SH_SETUP_DATA, X86_SETUP_DATA_ADDR);
	}

	n = x86_build_e820(m, e, X86_E820_MAX);
	zp[BP_E820_ENTRIES] = n;
	for (unsigned int i = 0; i < n; i++) {
		uint8_t *p = zp + BP_E820_TABLE + 20 * i;

		put_le64(p, e[i].addr);
		put_le64(p + 8, e[i].size);
		put_le32(p + 16, e[i].type);
	}
	return 0;
}
