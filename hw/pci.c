// SPDX-License-Identifier: GPL-2.0
/*
 * PCI bus 0 behind a host bridge with configuration mechanism #1: the
 * address latch at 0xcf8 (a dword: enable bit 31, bus, device, function,
 * register) and the data window at 0xcfc-0xcff, any width at any offset
 * within the dword. Other buses, functions other than 0 and empty slots
 * read all ones, as a master abort does.
 *
 * The bridge at 00:00.0 is QEMU's i440FX (8086:1237, class 0x060000), so
 * SeaBIOS and Linux take the paths they know; its chipset registers
 * (0x40-0xff: PAM, SMRAM...) keep what is written and do nothing.
 *
 * Each device owns a 256-byte configuration space. This file keeps the
 * standard header: read-only identity fields, the command register, BARs
 * with the sizing protocol (write all ones, read the size mask and type
 * bits back; a 64-bit BAR spans two registers), interrupt line and pin.
 * It tells the device through ops->bar_update when a BAR starts or stops
 * decoding or moves while decoding. Offsets from 0x40 (capabilities) go
 * to the device's cfg_read/cfg_write.
 *
 * A memory BAR decodes only below the x86 legacy hole at 0xfec00000 or
 * above 4 GiB: nothing may cover the I/O APIC, local APIC and firmware
 * flash, and a BAR in the middle of sizing (all ones) lands in that hole,
 * so sizing with decoding on does not make devices collide there. An I/O
 * BAR decodes only inside the 64 KiB port space. Address 0 never decodes.
 *
 * Also here: the reset control register at 0xcf9 (PIIX3's RCR), which
 * Linux uses with reboot=pci: setting bit 2 resets, ending the run with
 * status 0 like the i8042 reset.
 */
#include "lkvm/pci.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lkvm/device.h"
#include "lkvm/machine.h"
#include "lkvm/util.h"

#define PCI_CONFIG_ADDR 0xcf8
#define ADDR_ENABLE 0x80000000u
#define ADDR_RESERVED 0x7f000000u	/* AMD's extended register bits */

/* Header offsets. */
#define PCI_VENDOR_ID 0x00
#define PCI_DEVICE_ID 0x02
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_REVISION 0x08
#define PCI_CLASS_PROG 0x09
#define PCI_HEADER_TYPE 0x0e
#define PCI_BAR0 0x10
#define PCI_SUBSYS_VENDOR 0x2c
#define PCI_SUBSYS_ID 0x2e
#define PCI_CAP_PTR 0x34
#define PCI_INT_LINE 0x3c
#define PCI_INT_PIN 0x3d
#define PCI_HEADER_END 0x40

#define CMD_IO 0x0001
#define CMD_MEM 0x0002
#define CMD_INTX_OFF 0x0400
#define STATUS_INTX 0x0008
#define STATUS_CAP_LIST 0x0010

#define RCR_SYS_RST 0x02
#define RCR_RST_CPU 0x04

/* No BAR may decode over [0xfec00000, 4 GiB): APICs, HPET, flash. */
#define LEGACY_HOLE 0xfec00000ull
#define MMIO_LIMIT (1ull << 48)	/* the MMIO bus's reach */
#define IO_LIMIT 0x10000ull

struct pci_bus {
	struct machine *m;
	/* Config spaces, the address latch, BAR state and allocation. */
	pthread_mutex_t lock;
	uint32_t addr;
	uint8_t rcr;
	struct pci_device *dev[PCI_MAX_DEVICES];
	/* The writable bits of each BAR register (0 for unused ones). */
	uint32_t bar_wmask[PCI_MAX_DEVICES][PCI_NUM_BARS];
	uint64_t io_next, mmio_next;
	struct pci_device bridge;

	/*
	 * INTx. A leaf lock: devices raise INTx from their own handlers,
	 * with their own locks held, and must not wait for the bus.
	 */
	pthread_mutex_t irq_lock;
	bool intx[PCI_MAX_DEVICES];	/* what the device asks for */
	bool intx_off[PCI_MAX_DEVICES];	/* command register bit 10 */
	bool line[256];			/* what each GSI was set to */
};

/* ---- INTx -------------------------------------------------------------- */

/* Called with irq_lock held: the GSI is the OR of the devices on it. */
static void update_gsi(struct pci_bus *b, unsigned int gsi)
{
	bool level = false;

	for (unsigned int s = 0; s < PCI_MAX_DEVICES; s++) {
		struct pci_device *d = b->dev[s];

		if (d && d->irq_pin && d->gsi == gsi && b->intx[s] &&
		    !b->intx_off[s])
			level = true;
	}
	if (level != b->line[gsi]) {
		b->line[gsi] = level;
		machine_irq_line(b->m, gsi, level);
	}
}

void pci_set_irq(struct pci_device *d, int level)
{
	struct pci_bus *b = d->m ? d->m->pci : NULL;

	if (!b || d->slot >= PCI_MAX_DEVICES || b->dev[d->slot] != d ||
	    !d->irq_pin)
		return;
	pthread_mutex_lock(&b->irq_lock);
	b->intx[d->slot] = level != 0;
	update_gsi(b, d->gsi);
	pthread_mutex_unlock(&b->irq_lock);
}

/* ---- BARs -------------------------------------------------------------- */

static bool is_bar_high_half(const struct pci_device *d, unsigned int i)
{
	return i > 0 && d->bars[i - 1].kind == PCI_BAR_MEM64;
}

static uint64_t bar_address(const struct pci_device *d, unsigned int i)
{
	uint32_t lo = get_le32(d->cfg + PCI_BAR0 + 4 * i);

	switch (d->bars[i].kind) {
	case PCI_BAR_IO:
		return lo & ~3u;
	case PCI_BAR_MEM32:
		return lo & ~0xfu;
	case PCI_BAR_MEM64:
		return (lo & ~0xfu) |
		       (uint64_t)get_le32(d->cfg + PCI_BAR0 + 4 * (i + 1)) << 32;
	default:
		return 0;
	}
}

static bool bar_can_decode(enum pci_bar_kind kind, uint64_t addr,
			   uint64_t size)
{
	uint64_t end = addr + size;

	if (!addr || end < addr)
		return false;
	if (kind == PCI_BAR_IO)
		return end <= IO_LIMIT;
	return end <= MMIO_LIMIT && (addr >= 4 * GIB || end <= LEGACY_HOLE);
}

/*
 * Called with the bus lock held after the header changed: tells the
 * device about BARs that started or stopped decoding, or moved while
 * decoding. A BAR that moves while off is only recorded.
 */
static void update_bars(struct pci_device *d)
{
	uint16_t cmd = get_le16(d->cfg + PCI_COMMAND);

	for (unsigned int i = 0; i < PCI_NUM_BARS; i++) {
		struct pci_bar *bar = &d->bars[i];
		uint64_t addr;
		bool on;

		if (bar->kind == PCI_BAR_NONE || is_bar_high_half(d, i))
			continue;
		addr = bar_address(d, i);
		on = (cmd & (bar->kind == PCI_BAR_IO ? CMD_IO : CMD_MEM)) &&
		     bar_can_decode(bar->kind, addr, bar->size);
		if (on == bar->enabled && (!on || addr == bar->addr)) {
			bar->addr = addr;
			continue;
		}
		bar->addr = addr;
		bar->enabled = on;
		if (d->ops && d->ops->bar_update)
			d->ops->bar_update(d, i);
	}
}

/* ---- Configuration space ----------------------------------------------- */

/* Which bits of a header byte the guest may change. */
static uint8_t header_wmask(const struct pci_bus *b,
			    const struct pci_device *d, unsigned int off)
{
	switch (off) {
	case PCI_COMMAND:
		return 0x47;	/* I/O, memory, bus master, parity */
	case PCI_COMMAND + 1:
		return 0x05;	/* SERR, INTx disable */
	case 0x0c:		/* cache line size */
	case 0x0d:		/* latency timer */
	case PCI_INT_LINE:
		return 0xff;
	}
	if (off >= PCI_BAR0 && off < PCI_BAR0 + 4 * PCI_NUM_BARS)
		return (uint8_t)(b->bar_wmask[d->slot][(off - PCI_BAR0) / 4] >>
				 ((off & 3) * 8));
	return 0;
}

static void cfg_read(struct pci_bus *b, struct pci_device *d,
		     unsigned int off, uint8_t *data, unsigned int len)
{
	if (off >= PCI_HEADER_END) {
		if (d->ops && d->ops->cfg_read)
			d->ops->cfg_read(d, off, data, len);
		else
			memcpy(data, d->cfg + off, len);
		return;
	}
	memcpy(data, d->cfg + off, len);
	if (off <= PCI_STATUS && off + len > PCI_STATUS) {
		pthread_mutex_lock(&b->irq_lock);
		if (b->intx[d->slot])
			data[PCI_STATUS - off] |= STATUS_INTX;
		pthread_mutex_unlock(&b->irq_lock);
	}
}

static void cfg_write(struct pci_bus *b, struct pci_device *d,
		      unsigned int off, const uint8_t *data, unsigned int len)
{
	bool intx_off;

	if (off >= PCI_HEADER_END) {
		if (d->ops && d->ops->cfg_write)
			d->ops->cfg_write(d, off, data, len);
		return;
	}
	for (unsigned int i = 0; i < len; i++) {
		uint8_t m = header_wmask(b, d, off + i);

		d->cfg[off + i] = (uint8_t)((d->cfg[off + i] & ~m) |
					    (data[i] & m));
	}
	update_bars(d);
	intx_off = get_le16(d->cfg + PCI_COMMAND) & CMD_INTX_OFF;
	pthread_mutex_lock(&b->irq_lock);
	if (intx_off != b->intx_off[d->slot]) {
		b->intx_off[d->slot] = intx_off;
		if (d->irq_pin)
			update_gsi(b, d->gsi);
	}
	pthread_mutex_unlock(&b->irq_lock);
}

/* An access to 0xcfc + port_off through the latched address. */
static void data_access(struct pci_bus *b, unsigned int port_off,
			uint8_t *data, unsigned int len, bool is_write)
{
	uint32_t a = b->addr;
	unsigned int bus = (a >> 16) & 0xff, slot = (a >> 11) & 0x1f;
	unsigned int fn = (a >> 8) & 7, off = (a & 0xfc) + port_off;
	struct pci_device *d;

	/* Reads of nothing keep the bus's all-ones fill. */
	if (!(a & ADDR_ENABLE) || (a & ADDR_RESERVED) || bus || fn)
		return;
	d = b->dev[slot];
	if (!d)
		return;
	/* Natural accesses pass whole; anything odd goes byte by byte. */
	if (len == 1 || (len == 2 && !(off & 1)) || (len == 4 && !(off & 3))) {
		if (is_write)
			cfg_write(b, d, off, data, len);
		else
			cfg_read(b, d, off, data, len);
		return;
	}
	for (unsigned int i = 0; i < len; i++) {
		if (is_write)
			cfg_write(b, d, off + i, data + i, 1);
		else
			cfg_read(b, d, off + i, data + i, 1);
	}
}

static void pci_io(struct io_region *r, struct kvm_vcpu *vcpu,
		   uint64_t offset, void *data, unsigned int len,
		   bool is_write)
{
	struct pci_bus *b = r->opaque;
	uint8_t *p = data;

	(void)vcpu;
	pthread_mutex_lock(&b->lock);
	if (offset >= 4) {
		data_access(b, (unsigned int)offset - 4, p, len, is_write);
	} else if (offset == 0 && len == 4) {
		/* Only dword accesses reach the address latch. */
		if (is_write)
			b->addr = get_le32(p);
		else
			put_le32(p, b->addr);
	} else if (offset == 1 && len == 1) {
		if (!is_write) {
			p[0] = b->rcr;
		} else if (p[0] & RCR_RST_CPU) {
			machine_stop(b->m, LKVM_EXIT_OK);
		} else {
			b->rcr = p[0] & RCR_SYS_RST;
		}
	}
	pthread_mutex_unlock(&b->lock);
}

/* ---- Plugging devices -------------------------------------------------- */

static int check_bars(const struct pci_device *d)
{
	for (unsigned int i = 0; i < PCI_NUM_BARS; i++) {
		const struct pci_bar *bar = &d->bars[i];
		uint64_t s = bar->size;

		if (bar->kind == PCI_BAR_NONE)
			continue;
		if (bar->kind > PCI_BAR_MEM64 || !s || (s & (s - 1)))
			return -EINVAL;
		if (is_bar_high_half(d, i))
			return -EINVAL;	/* owned by a 64-bit BAR */
		switch (bar->kind) {
		case PCI_BAR_IO:
			if (s < 4 || s > PCI_IO_SIZE)
				return -EINVAL;
			break;
		case PCI_BAR_MEM32:
		case PCI_BAR_MEM64:
			if (s < 16 || s > PCI_MMIO_SIZE)
				return -EINVAL;
			if (bar->kind == PCI_BAR_MEM64 &&
			    (i == PCI_NUM_BARS - 1 ||
			     d->bars[i + 1].kind != PCI_BAR_NONE))
				return -EINVAL;
			break;
		default:
			break;
		}
	}
	return 0;
}

/* Naturally aligned addresses for every BAR, or -ENOSPC. */
static int place_bars(struct pci_bus *b, struct pci_device *d)
{
	uint64_t io = b->io_next, mem = b->mmio_next;

	for (unsigned int i = 0; i < PCI_NUM_BARS; i++) {
		struct pci_bar *bar = &d->bars[i];
		uint64_t *next = bar->kind == PCI_BAR_IO ? &io : &mem;
		uint64_t limit = bar->kind == PCI_BAR_IO ?
				 PCI_IO_BASE + PCI_IO_SIZE :
				 PCI_MMIO_BASE + PCI_MMIO_SIZE;

		if (bar->kind == PCI_BAR_NONE || is_bar_high_half(d, i))
			continue;
		bar->addr = ALIGN_UP(*next, bar->size);
		if (bar->addr + bar->size > limit)
			return -ENOSPC;
		*next = bar->addr + bar->size;
	}
	b->io_next = io;
	b->mmio_next = mem;
	return 0;
}

static void fill_header(struct pci_bus *b, struct pci_device *d,
			uint16_t vendor, uint16_t device, uint32_t class_code,
			uint16_t subsys_vendor, uint16_t subsys_id)
{
	uint8_t revision = d->cfg[PCI_REVISION], cap = d->cfg[PCI_CAP_PTR];
	uint16_t cmd = 0, status = 0;

	memset(d->cfg, 0, PCI_HEADER_END);
	put_le16(d->cfg + PCI_VENDOR_ID, vendor);
	put_le16(d->cfg + PCI_DEVICE_ID, device);
	d->cfg[PCI_REVISION] = revision;
	d->cfg[PCI_CLASS_PROG] = (uint8_t)class_code;
	put_le16(d->cfg + PCI_CLASS_PROG + 1, (uint16_t)(class_code >> 8));
	d->cfg[PCI_HEADER_TYPE] = 0;	/* type 0, single function */
	put_le16(d->cfg + PCI_SUBSYS_VENDOR, subsys_vendor);
	put_le16(d->cfg + PCI_SUBSYS_ID, subsys_id);
	if (cap >= PCI_HEADER_END) {
		d->cfg[PCI_CAP_PTR] = cap;
		status |= STATUS_CAP_LIST;
	}
	d->cfg[PCI_INT_PIN] = d->irq_pin;
	d->cfg[PCI_INT_LINE] = d->irq_pin ? d->gsi : 0xff;

	memset(b->bar_wmask[d->slot], 0, sizeof(b->bar_wmask[d->slot]));
	for (unsigned int i = 0; i < PCI_NUM_BARS; i++) {
		struct pci_bar *bar = &d->bars[i];
		uint8_t *reg = d->cfg + PCI_BAR0 + 4 * i;
		uint64_t mask = ~(bar->size - 1);

		if (bar->kind == PCI_BAR_NONE || is_bar_high_half(d, i))
			continue;
		bar->enabled = false;
		switch (bar->kind) {
		case PCI_BAR_IO:
			b->bar_wmask[d->slot][i] = (uint32_t)mask & ~3u;
			put_le32(reg, (uint32_t)bar->addr | 1);
			cmd |= CMD_IO;
			break;
		case PCI_BAR_MEM32:
			b->bar_wmask[d->slot][i] = (uint32_t)mask & ~0xfu;
			put_le32(reg, (uint32_t)bar->addr);
			cmd |= CMD_MEM;
			break;
		case PCI_BAR_MEM64:
			b->bar_wmask[d->slot][i] = (uint32_t)mask & ~0xfu;
			b->bar_wmask[d->slot][i + 1] = (uint32_t)(mask >> 32);
			put_le32(reg, (uint32_t)bar->addr | 0x4);
			put_le32(reg + 4, (uint32_t)(bar->addr >> 32));
			cmd |= CMD_MEM;
			break;
		default:
			break;
		}
	}
	/* Decoding on, as firmware leaves assigned devices. */
	put_le16(d->cfg + PCI_COMMAND, cmd);
	put_le16(d->cfg + PCI_STATUS, status);
}

/*
 * Where a device's INTx goes. lkvm's own MP table (kernels booted
 * directly) lists GSIs 16-23. Firmware writes its own tables: SeaBIOS,
 * seeing an i440FX, assumes the PIIX3's routing that QEMU sets up (the
 * pins of slot s rotate over PIRQA-D, PIRQA and B reach IRQ 10, C and D
 * IRQ 11), writes that IRQ to the interrupt line register and lists it in
 * its MP table; lkvm has no PIIX3 to reprogram, so under firmware INTx
 * goes to that IRQ, where the guest will look for it.
 */
static unsigned int intx_gsi(struct machine *m, unsigned int slot,
			     unsigned int pin)
{
	static const uint8_t piix_irq[4] = { 10, 10, 11, 11 };

	if (m->cfg.firmware)
		return piix_irq[(slot - 1 + pin - 1) & 3];
	return machine_alloc_gsi(m);
}

int pci_register(struct machine *m, struct pci_device *d, uint16_t vendor,
		 uint16_t device, uint32_t class_code, uint16_t subsys_vendor,
		 uint16_t subsys_id)
{
	struct pci_bus *b = m->pci;
	unsigned int slot;
	int err;

	if (!b)
		return -ENODEV;
	if (d->irq_pin > 4)
		return -EINVAL;
	err = check_bars(d);
	if (err)
		return err;

	pthread_mutex_lock(&b->lock);
	for (slot = 1; slot < PCI_MAX_DEVICES && b->dev[slot]; slot++)
		;
	err = -ENOSPC;
	if (slot == PCI_MAX_DEVICES)
		goto out;
	err = place_bars(b, d);
	if (err)
		goto out;
	d->m = m;
	d->slot = (uint8_t)slot;
	d->gsi = d->irq_pin ? (uint8_t)intx_gsi(m, slot, d->irq_pin) : 0;
	fill_header(b, d, vendor, device, class_code, subsys_vendor,
		    subsys_id);
	b->dev[slot] = d;
	update_bars(d);
out:
	pthread_mutex_unlock(&b->lock);
	return err;
}

void pci_unregister(struct pci_device *d)
{
	struct pci_bus *b = d->m ? d->m->pci : NULL;

	if (!b || d->slot >= PCI_MAX_DEVICES)
		return;
	pthread_mutex_lock(&b->lock);
	if (b->dev[d->slot] == d) {
		b->dev[d->slot] = NULL;
		/* Its INTx no longer counts on the shared line. */
		pthread_mutex_lock(&b->irq_lock);
		b->intx[d->slot] = false;
		if (d->irq_pin)
			update_gsi(b, d->gsi);
		pthread_mutex_unlock(&b->irq_lock);
	}
	pthread_mutex_unlock(&b->lock);
}

struct pci_device *pci_next_device(struct machine *m, struct pci_device *prev)
{
	struct pci_bus *b = m->pci;
	struct pci_device *d = NULL;

	if (!b)
		return NULL;
	pthread_mutex_lock(&b->lock);
	/* The host bridge is the bus itself, not a plugged device. */
	for (unsigned int s = prev ? prev->slot + 1u : 1; s < PCI_MAX_DEVICES;
	     s++) {
		if (b->dev[s]) {
			d = b->dev[s];
			break;
		}
	}
	pthread_mutex_unlock(&b->lock);
	return d;
}

/* ---- The host bridge --------------------------------------------------- */

/* The chipset registers keep what firmware writes and mean nothing. */
static void bridge_cfg_write(struct pci_device *d, unsigned int off,
			     const void *data, unsigned int len)
{
	if (off < sizeof(d->cfg) && len <= sizeof(d->cfg) - off)
		memcpy(d->cfg + off, data, len);
}

static const struct pci_device_ops bridge_ops = {
	.cfg_write = bridge_cfg_write,
};

static int pci_init(struct machine *m)
{
	struct pci_bus *b = calloc(1, sizeof(*b));
	int err;

	if (!b)
		return -ENOMEM;
	b->m = m;
	pthread_mutex_init(&b->lock, NULL);
	pthread_mutex_init(&b->irq_lock, NULL);
	b->io_next = PCI_IO_BASE;
	b->mmio_next = PCI_MMIO_BASE;

	b->bridge.m = m;
	b->bridge.ops = &bridge_ops;
	b->bridge.cfg[PCI_REVISION] = 0x02;	/* QEMU's i440FX */
	fill_header(b, &b->bridge, 0x8086, 0x1237, 0x060000, 0x1af4, 0x1100);
	b->dev[0] = &b->bridge;

	err = machine_register_pio(m, PCI_CONFIG_ADDR, 8, pci_io, b, "pci");
	if (err) {
		pr_err("pci: cannot register ports 0xcf8-0xcff: %s",
		       strerror(-err));
		pthread_mutex_destroy(&b->lock);
		pthread_mutex_destroy(&b->irq_lock);
		free(b);
		return err;
	}
	m->pci = b;
	return 0;
}

static void pci_exit(struct machine *m)
{
	struct pci_bus *b = m->pci;

	if (!b)
		return;
	m->pci = NULL;
	pthread_mutex_destroy(&b->lock);
	pthread_mutex_destroy(&b->irq_lock);
	free(b);
}

/*
 * No device-tree node: on x86, Linux routes INTx through a PCI node's
 * interrupt-map when the tree has one (x86_of_pci_init), so a node would
 * have to describe every slot's routing to do no harm, and guests find
 * devices through configuration space anyway.
 */
static const struct device_ops pci_ops = {
	.name = "pci",
	.stage = DEV_STAGE_BUS,
	.init = pci_init,
	.exit = pci_exit,
};
DEVICE(pci_ops);
