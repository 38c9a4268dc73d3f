/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Device registration. Each device file declares a struct device_ops and
 * DEVICE(ops); the linker gathers them into one section, so adding a
 * device touches no other file. Devices are set up in stage order (then
 * by name, so the order is stable) and torn down in reverse.
 */
#ifndef LKVM_DEVICE_H
#define LKVM_DEVICE_H

#include <stdbool.h>
#include <stddef.h>

#include "lkvm/options.h"

struct machine;
struct seccomp_rule;

enum dev_stage {
	DEV_STAGE_CORE = 0,	/* interrupt controllers, buses */
	DEV_STAGE_BUS = 10,	/* the PCI host bridge */
	DEV_STAGE_LEGACY = 20,	/* ISA devices */
	DEV_STAGE_DEVICE = 30,	/* PCI and MMIO devices */
	DEV_STAGE_LATE = 40,	/* firmware tables that list the others */
};

struct device_ops {
	const char *name;
	enum dev_stage stage;
	/*
	 * Options the device owns. Their offsets point into a zeroed
	 * block of cfg_size bytes that the machine keeps for the device;
	 * machine_dev_cfg() returns it.
	 */
	const struct option *options;
	size_t cfg_size;
	/* Called once after option parsing, before any init; may reject. */
	int (*check)(struct machine *m, void *cfg);
	/* Registers I/O ranges, interrupts, threads. -errno on failure,
	 * after printing what failed. */
	int (*init)(struct machine *m);
	void (*exit)(struct machine *m);
	/* Adds the device's nodes to the flattened device tree. */
	int (*fdt)(struct machine *m, void *fdt);
	/* System calls the device's threads need beyond the core
	 * allowlist, SECCOMP_END-terminated (lkvm/seccomp.h); NULL: none. */
	const struct seccomp_rule *seccomp;
	/* Whether those calls are wanted for this machine's options (NULL:
	 * always); asked once the options are parsed. */
	bool (*seccomp_wanted)(struct machine *m);
};

#define DEVICE(ops)                                                        \
	static const struct device_ops *const __device_##ops                \
		__attribute__((used, section("lkvm_devices"),                \
			       aligned(sizeof(void *)))) = &(ops)

/* Every registered device, in stage order. */
const struct device_ops *const *device_list(unsigned int *n);

#endif
