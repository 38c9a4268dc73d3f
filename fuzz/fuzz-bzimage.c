// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer harness for the bzImage loader (arch/x86/bzimage.c): the
 * setup header, the protected-mode kernel's placement, the command line
 * and initrd limits it sets, the zero page and setup_data. See
 * fuzz/loader.h for what counts as a finding. Seeds: small bzImages with
 * boot protocols 2.06 to 2.15, relocatable or not.
 */
#include "loader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_load(x86_load_bzimage, data, size);
}
