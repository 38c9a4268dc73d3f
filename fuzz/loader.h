/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared by the kernel-loader harnesses (fuzz-elf.c, fuzz-bzimage.c):
 * the input is a kernel file, loaded with an initrd and a command line
 * into a machine without KVM, as `lkvm run -k FILE -i INITRD` would.
 * Refusing the file is a fine answer (its message goes nowhere); a
 * crash, a sanitizer report, or a load that says it succeeded but put
 * the kernel, initrd, command line or tables outside guest RAM or the
 * initrd over the kernel, is a finding.
 */
#ifndef LKVM_FUZZ_LOADER_H
#define LKVM_FUZZ_LOADER_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake-machine.h"
#include "lkvm/x86.h"

#define FUZZ_RAM	(32ull << 20)
#define FUZZ_INITRD	4096

typedef int (*fuzz_loader)(struct machine *m, const struct x86_image *k,
			   const struct x86_image *initrd, const char *params,
			   struct x86_boot *b);

static bool fuzz_in_ram(struct machine *m, uint64_t gpa, uint64_t len)
{
	return !len || guest_ptr(m, gpa, len) != NULL;
}

static int fuzz_load(fuzz_loader load, const uint8_t *data, size_t size)
{
	static uint8_t initrd[FUZZ_INITRD];
	struct x86_image k = { "kernel", "fuzz", NULL, size };
	struct x86_image rd = { "initrd", "fuzz-initrd", initrd, FUZZ_INITRD };
	struct x86_boot b = { 0 };
	static bool ready;
	struct machine *m;
	uint8_t *copy, *p;

	/* The refusals' one-line messages would drown libFuzzer's output;
	 * sanitizer reports go to fd 2 directly and still show. */
	if (!ready) {
		FILE *null = fopen("/dev/null", "w");

		ready = true;
		if (null)
			stderr = null;
		for (size_t i = 0; i < FUZZ_INITRD; i++)
			initrd[i] = (uint8_t)(i * 7 + 1);
	}
	/* A copy of the exact size, so ASan sees any overread. */
	copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	k.data = copy;
	m = fake_machine_new(FUZZ_RAM);
	if (!load(m, &k, &rd, "console=ttyS0 fuzz=1", &b)) {
		if (!fuzz_in_ram(m, b.kernel_start, b.kernel_end - b.kernel_start) ||
		    b.kernel_end < b.kernel_start)
			abort();
		if (!fuzz_in_ram(m, b.initrd_addr, b.initrd_size) ||
		    b.initrd_size != FUZZ_INITRD)
			abort();
		p = guest_ptr(m, b.initrd_addr, FUZZ_INITRD);
		if (memcmp(p, initrd, FUZZ_INITRD))
			abort();
		if (b.initrd_addr < b.kernel_end &&
		    b.initrd_addr + b.initrd_size > b.kernel_start)
			abort();
		if (!fuzz_in_ram(m, b.cmdline_addr, b.cmdline_len) ||
		    !fuzz_in_ram(m, b.fdt_addr, b.fdt_size))
			abort();
	}
	fake_machine_free(m);
	free(copy);
	return 0;
}

#endif
