// SPDX-License-Identifier: GPL-2.0
/*
 * fw_cfg (QEMU's docs/specs/fw_cfg.rst), the interface SeaBIOS reads its
 * configuration from when it runs on a QEMU-like machine (which lkvm's
 * i440FX host bridge with subsystem 1af4:1100 tells it it is):
 * - 0x510 (16-bit write): select an item, rewinding it; bit 14 asks for
 *   the write channel, which lkvm does not offer;
 * - 0x511 (8-bit read): the next byte of the item, 0 past its end or for
 *   an item that does not exist (SeaBIOS reads counts of absent tables
 *   and needs 0);
 * - 0x514/0x518 (32-bit writes, big-endian): the guest-physical address
 *   of an FWCfgDmaAccess {be32 control, be32 length, be64 address}; the
 *   write to 0x518 runs it: select, read (zeros past the end), skip; a
 *   write, or a range outside RAM, sets the error bit. Reading the ports
 *   gives "QEMU CFG", how a guest finds DMA.
 *
 * The items: signature, ID (DMA supported), RAM size, CPU counts, no
 * boot menu, and the files "etc/e820" (RAM and the KVM TSS pages, which
 * SeaBIOS merges with what CMOS told it), "etc/boot-cpus", and
 * "bootorder" (the virtio-blk disks in -d order, as OpenFirmware paths
 * SeaBIOS matches against its PCI devices).
 */
#include "lkvm/fw_cfg.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lkvm/device.h"
#include "lkvm/machine.h"
#include "lkvm/pci.h"
#include "lkvm/util.h"
#include "lkvm/x86.h"

#define DMA_SIGNATURE "QEMU CFG"
#define FW_CFG_PORTS 2		/* 0x510-0x511 */
#define FW_CFG_DMA_PORTS 8	/* 0x514-0x51b */
#define KEY_MASK 0x3fff
#define MAX_FILES 64

struct item {
	uint8_t *data;
	uint32_t len;
};

struct fw_file {
	char name[FW_CFG_NAME_MAX];
	struct item item;
};

struct fw_cfg {
	struct machine *m;
	pthread_mutex_t lock;
	uint16_t key;		/* selected, as written */
	uint32_t offset;	/* into the selected item */
	uint32_t dma_high;
	struct item std[FW_CFG_FILE_FIRST];	/* generic keys */
	struct item e820_table;			/* arch key 0x8003 */
	struct item dir;
	struct fw_file files[MAX_FILES];	/* sorted by name */
	unsigned int nfiles;
	bool up;		/* the ports are live: no more files */
};

struct fw_cfg_cfg {
	struct fw_cfg *fw;
};

static const struct device_ops fw_cfg_ops;

static struct fw_cfg *get(struct machine *m)
{
	struct fw_cfg_cfg *cfg = machine_dev_cfg(m, &fw_cfg_ops);
	struct fw_cfg *fw;

	if (!cfg)
		return NULL;
	if (cfg->fw)
		return cfg->fw;
	fw = calloc(1, sizeof(*fw));
	if (!fw)
		return NULL;
	fw->m = m;
	pthread_mutex_init(&fw->lock, NULL);
	cfg->fw = fw;
	return fw;
}

static void be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void be32(uint8_t *p, uint32_t v)
{
	be16(p, (uint16_t)(v >> 16));
	be16(p + 2, (uint16_t)v);
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get_be64(const uint8_t *p)
{
	return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

static void le(uint8_t *p, uint64_t v, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static int set_item(struct item *it, const void *data, size_t len)
{
	uint8_t *copy = len ? malloc(len) : NULL;

	if ((len && !copy) || len > UINT32_MAX) {
		free(copy);
		return -ENOMEM;
	}
	if (len)
		memcpy(copy, data, len);
	free(it->data);
	it->data = copy;
	it->len = (uint32_t)len;
	return 0;
}

static int set_int(struct item *it, uint64_t v, unsigned int n)
{
	uint8_t b[8];

	le(b, v, n);
	return set_item(it, b, n);
}

int fw_cfg_add_file(struct machine *m, const char *name, const void *data,
		    size_t len)
{
	struct fw_cfg *fw = get(m);
	unsigned int i;
	int cmp = 1;

	if (!name || !*name || strlen(name) >= FW_CFG_NAME_MAX)
		return -EINVAL;
	if (!fw)
		return -ENOMEM;
	if (fw->up)
		return -EBUSY;	/* the directory is what the guest saw */
	for (i = 0; i < fw->nfiles; i++) {
		cmp = strcmp(name, fw->files[i].name);
		if (cmp <= 0)
			break;
	}
	if (cmp == 0)
		return set_item(&fw->files[i].item, data, len);
	if (fw->nfiles == MAX_FILES)
		return -ENOSPC;
	memmove(&fw->files[i + 1], &fw->files[i],
		(fw->nfiles - i) * sizeof(fw->files[0]));
	memset(&fw->files[i], 0, sizeof(fw->files[i]));
	snprintf(fw->files[i].name, FW_CFG_NAME_MAX, "%s", name);
	fw->nfiles++;
	return set_item(&fw->files[i].item, data, len);
}

/* ---- items ----------------------------------------------------------- */

static struct item *lookup(struct fw_cfg *fw, uint16_t key)
{
	uint16_t k = key & KEY_MASK;

	if (key & FW_CFG_ARCH_LOCAL)
		return k == (FW_CFG_E820_TABLE & KEY_MASK) ? &fw->e820_table :
							     NULL;
	if (k < FW_CFG_FILE_FIRST)
		return &fw->std[k];
	if ((unsigned int)(k - FW_CFG_FILE_FIRST) < fw->nfiles)
		return &fw->files[k - FW_CFG_FILE_FIRST].item;
	return NULL;
}

static void select_key(struct fw_cfg *fw, uint16_t key)
{
	fw->key = key;
	fw->offset = 0;
}

/* Copies up to len bytes of the selected item; zeros past its end. */
static void read_item(struct fw_cfg *fw, uint8_t *dst, uint32_t len)
{
	struct item *it = lookup(fw, fw->key);
	uint32_t have = 0;

	if (it && fw->offset < it->len) {
		have = MIN(len, it->len - fw->offset);
		memcpy(dst, it->data + fw->offset, have);
	}
	memset(dst + have, 0, len - have);
	if (it && fw->offset < it->len)
		fw->offset += have;
}

static void skip_item(struct fw_cfg *fw, uint32_t len)
{
	struct item *it = lookup(fw, fw->key);

	if (it && fw->offset < it->len)
		fw->offset += MIN(len, it->len - fw->offset);
}

/* One FWCfgDmaAccess at gpa. */
static void dma(struct fw_cfg *fw, uint64_t gpa)
{
	uint8_t *acc = guest_ptr(fw->m, gpa, 16);
	uint32_t control, len, status = 0;
	uint64_t addr;

	if (!acc)
		return;		/* nowhere to report: as a lost write */
	control = get_be32(acc);
	len = get_be32(acc + 4);
	addr = get_be64(acc + 8);
	if (control & FW_CFG_DMA_SELECT)
		select_key(fw, (uint16_t)(control >> 16));
	if (control & FW_CFG_DMA_READ) {
		uint8_t *dst = guest_ptr(fw->m, addr, len);

		if (dst)
			read_item(fw, dst, len);
		else
			status = FW_CFG_DMA_ERROR;
	} else if (control & FW_CFG_DMA_WRITE) {
		status = FW_CFG_DMA_ERROR;	/* no writable items */
	} else if (control & FW_CFG_DMA_SKIP) {
		skip_item(fw, len);
	}
	/* The guest polls the control word: the result goes last. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	be32(acc, status);
}

/* ---- ports ----------------------------------------------------------- */

static void fw_cfg_io(struct io_region *r, struct kvm_vcpu *vcpu,
		      uint64_t off, void *data, unsigned int len, bool is_write)
{
	struct fw_cfg *fw = r->opaque;
	uint8_t *p = data;

	(void)vcpu;
	pthread_mutex_lock(&fw->lock);
	if (off == 0 && len == 2 && is_write)
		select_key(fw, (uint16_t)(p[0] | p[1] << 8));
	else if (off == 1 && len == 1 && !is_write)
		read_item(fw, p, 1);
	/* Data writes are ignored, as QEMU does since 2.4. */
	pthread_mutex_unlock(&fw->lock);
}

static void fw_cfg_dma_io(struct io_region *r, struct kvm_vcpu *vcpu,
			  uint64_t off, void *data, unsigned int len,
			  bool is_write)
{
	struct fw_cfg *fw = r->opaque;
	uint8_t *p = data;

	(void)vcpu;
	if (!is_write) {
		for (unsigned int i = 0; i < len; i++)
			p[i] = off + i < 8 ?
				       (uint8_t)DMA_SIGNATURE[off + i] : 0;
		return;
	}
	if (len != 4 || off % 4)
		return;
	pthread_mutex_lock(&fw->lock);
	if (off == 0) {
		fw->dma_high = get_be32(p);
	} else {
		dma(fw, (uint64_t)fw->dma_high << 32 | get_be32(p));
		fw->dma_high = 0;
	}
	pthread_mutex_unlock(&fw->lock);
}

/* ---- the items lkvm provides -------------------------------------------- */

/* QEMU's etc/e820 entry: le64 address, le64 length, le32 type. */
static unsigned int e820_entry(uint8_t *p, uint64_t addr, uint64_t len,
			       uint32_t type)
{
	le(p, addr, 8);
	le(p + 8, len, 8);
	le(p + 16, type, 4);
	return 20;
}

static int add_e820(struct fw_cfg *fw)
{
	struct machine *m = fw->m;
	uint8_t buf[20 * (MACHINE_MAX_REGIONS + 1)];
	unsigned int n = 0;
	uint64_t tss = x86_tss_addr(m) - X86_IDENTITY_MAP_OFFSET;

	for (unsigned int i = 0; i < m->nmem; i++)
		if (!m->mem[i].readonly)
			n += e820_entry(buf + n, m->mem[i].gpa, m->mem[i].size,
					E820_RAM);
	/* KVM's identity-map page and TSS, as QEMU reserves them. */
	n += e820_entry(buf + n, tss, X86_IDENTITY_MAP_OFFSET + 3 * 4096,
			E820_RESERVED);
	return fw_cfg_add_file(m, "etc/e820", buf, n);
}

static bool is_virtio_blk(const struct pci_device *d)
{
	uint16_t vendor = (uint16_t)(d->cfg[0] | d->cfg[1] << 8);
	uint16_t id = (uint16_t)(d->cfg[2] | d->cfg[3] << 8);

	return vendor == 0x1af4 && (id == 0x1001 || id == 0x1042);
}

/* The disks in -d order: lkvm plugs them into slots in that order. */
static int add_bootorder(struct fw_cfg *fw)
{
	char buf[PCI_MAX_DEVICES * 40];
	size_t n = 0;

	for (struct pci_device *d = pci_next_device(fw->m, NULL); d;
	     d = pci_next_device(fw->m, d))
		if (is_virtio_blk(d))
			n += (size_t)snprintf(buf + n, sizeof(buf) - n,
					      "/pci@i0cf8/scsi@%x/disk@0,0\n",
					      d->slot);
	if (!n)
		return 0;
	return fw_cfg_add_file(fw->m, "bootorder", buf, n);
}

static int build_dir(struct fw_cfg *fw)
{
	/* be32 count, then per file: be32 size, be16 key, be16 0, name. */
	size_t len = 4 + fw->nfiles * (8 + FW_CFG_NAME_MAX);
	uint8_t *d = calloc(1, len), *p;
	int err;

	if (!d)
		return -ENOMEM;
	be32(d, fw->nfiles);
	p = d + 4;
	for (unsigned int i = 0; i < fw->nfiles;
	     i++, p += 8 + FW_CFG_NAME_MAX) {
		be32(p, fw->files[i].item.len);
		be16(p + 4, (uint16_t)(FW_CFG_FILE_FIRST + i));
		memcpy(p + 8, fw->files[i].name, FW_CFG_NAME_MAX);
	}
	err = set_item(&fw->dir, d, len);
	free(d);
	fw->std[FW_CFG_FILE_DIR] = fw->dir;
	fw->dir.data = NULL;	/* owned by std[] now */
	return err;
}

static int fw_cfg_init(struct machine *m)
{
	struct fw_cfg *fw = get(m);
	unsigned int ncpus = x86_ncpus(m);
	int err;

	if (!fw)
		return -ENOMEM;
	if ((err = set_item(&fw->std[FW_CFG_SIGNATURE], "QEMU", 4)) ||
	    (err = set_int(&fw->std[FW_CFG_ID],
			   FW_CFG_VERSION | FW_CFG_VERSION_DMA, 4)) ||
	    (err = set_item(&fw->std[FW_CFG_UUID], (uint8_t[16]){ 0 }, 16)) ||
	    (err = set_int(&fw->std[FW_CFG_RAM_SIZE], m->ram_size, 8)) ||
	    (err = set_int(&fw->std[FW_CFG_NOGRAPHIC], 1, 2)) ||
	    (err = set_int(&fw->std[FW_CFG_NB_CPUS], ncpus, 2)) ||
	    (err = set_int(&fw->std[FW_CFG_NUMA], 0, 8)) ||
	    (err = set_int(&fw->std[FW_CFG_BOOT_MENU], 0, 2)) ||
	    (err = set_int(&fw->std[FW_CFG_MAX_CPUS], ncpus, 2)) ||
	    (err = set_int(&fw->e820_table, 0, 4)))
		return err;
	if ((err = add_e820(fw)) || (err = add_bootorder(fw)))
		return err;
	{
		uint8_t cpus[2];

		le(cpus, ncpus, 2);
		if ((err = fw_cfg_add_file(m, "etc/boot-cpus", cpus, 2)))
			return err;
	}
	if ((err = build_dir(fw)))
		return err;
	fw->up = true;
	if ((err = machine_register_pio(m, FW_CFG_PORT_SEL, FW_CFG_PORTS,
					fw_cfg_io, fw, "fw_cfg")) ||
	    (err = machine_register_pio(m, FW_CFG_PORT_DMA, FW_CFG_DMA_PORTS,
					fw_cfg_dma_io, fw, "fw_cfg-dma")))
		return err;
	return 0;
}

static void fw_cfg_exit(struct machine *m)
{
	struct fw_cfg_cfg *cfg = machine_dev_cfg(m, &fw_cfg_ops);
	struct fw_cfg *fw = cfg ? cfg->fw : NULL;

	if (!fw)
		return;
	for (unsigned int i = 0; i < FW_CFG_FILE_FIRST; i++)
		free(fw->std[i].data);
	for (unsigned int i = 0; i < fw->nfiles; i++)
		free(fw->files[i].item.data);
	free(fw->e820_table.data);
	free(fw->dir.data);
	pthread_mutex_destroy(&fw->lock);
	free(fw);
	cfg->fw = NULL;
}

/* Late: the boot order lists the disks plugged before it. */
static const struct device_ops fw_cfg_ops = {
	.name = "fw_cfg",
	.stage = DEV_STAGE_LATE,
	.cfg_size = sizeof(struct fw_cfg_cfg),
	.init = fw_cfg_init,
	.exit = fw_cfg_exit,
};
DEVICE(fw_cfg_ops);
