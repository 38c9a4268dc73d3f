/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The flattened device tree that describes the machine to the guest:
 * memory, CPUs, the command line, and whatever each device adds through
 * its device_ops.fdt hook.
 */
#ifndef LKVM_FDT_H
#define LKVM_FDT_H

struct machine;

/*
 * Builds the tree into m->fdt (malloc'd, packed; free() releases it),
 * replacing any earlier one, with bootargs as /chosen/bootargs (NULL: no
 * bootargs). When m->cfg.dump_dtb names a file, writes the blob there.
 * Prints what failed; returns 0 or -errno.
 */
int machine_build_fdt_bootargs(struct machine *m, const char *bootargs);

/* The same with m->cfg.params as bootargs. */
int machine_build_fdt(struct machine *m);

/* Writes m->fdt to path; prints what failed. */
int machine_dump_fdt(struct machine *m, const char *path);

#endif
