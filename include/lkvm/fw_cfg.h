/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fw_cfg, QEMU's firmware configuration interface, as SeaBIOS and Linux's
 * qemu_fw_cfg driver use it on x86: a selector at I/O port 0x510, a byte
 * data port at 0x511 and the DMA address registers at 0x514-0x51b.
 *
 * lkvm fills the items firmware needs to boot (signature, ID, RAM size,
 * CPU counts, "etc/e820", "bootorder" from the virtio-blk disks); devices
 * may add named files of their own with fw_cfg_add_file().
 */
#ifndef LKVM_FW_CFG_H
#define LKVM_FW_CFG_H

#include <stddef.h>
#include <stdint.h>

struct machine;

#define FW_CFG_PORT_SEL 0x510
#define FW_CFG_PORT_DATA 0x511
#define FW_CFG_PORT_DMA 0x514	/* high address word; low at 0x518 */

/* Selector keys (QEMU's docs/specs/fw_cfg.rst). */
#define FW_CFG_SIGNATURE 0x0000
#define FW_CFG_ID 0x0001
#define FW_CFG_UUID 0x0002
#define FW_CFG_RAM_SIZE 0x0003
#define FW_CFG_NOGRAPHIC 0x0004
#define FW_CFG_NB_CPUS 0x0005
#define FW_CFG_NUMA 0x000d
#define FW_CFG_BOOT_MENU 0x000e
#define FW_CFG_MAX_CPUS 0x000f
#define FW_CFG_FILE_DIR 0x0019
#define FW_CFG_FILE_FIRST 0x0020
#define FW_CFG_WRITE_CHANNEL 0x4000
#define FW_CFG_ARCH_LOCAL 0x8000
#define FW_CFG_E820_TABLE (FW_CFG_ARCH_LOCAL + 3)

/* FW_CFG_ID bits. */
#define FW_CFG_VERSION 0x01
#define FW_CFG_VERSION_DMA 0x02

/* FWCfgDmaAccess.control bits. */
#define FW_CFG_DMA_ERROR 0x01
#define FW_CFG_DMA_READ 0x02
#define FW_CFG_DMA_SKIP 0x04
#define FW_CFG_DMA_SELECT 0x08
#define FW_CFG_DMA_WRITE 0x10

#define FW_CFG_NAME_MAX 56	/* with the NUL */

/*
 * Adds (or replaces) the file name with a copy of data. Any time before
 * the guest runs; returns 0, -EINVAL for a bad name, -ENOMEM.
 */
int fw_cfg_add_file(struct machine *m, const char *name, const void *data,
		    size_t len);

#endif
