// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer harness for the ELF loader (arch/x86/elf.c): program headers,
 * PVH and Linux notes, segments against the file and against RAM, the
 * PVH start info or zero page written after them. See fuzz/loader.h for
 * what counts as a finding. Seeds: the bundled test kernel (a PVH ELF)
 * and small ELF files with and without notes.
 */
#include "loader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_load(x86_load_elf, data, size);
}
