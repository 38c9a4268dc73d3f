// SPDX-License-Identifier: GPL-2.0
/*
 * PCI configuration mechanism #1 as firmware and Linux use it: probing,
 * the host bridge, BAR sizing and moves, read-only fields, capabilities,
 * INTx.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lkvm/device.h"
#include "lkvm/iobus.h"
#include "lkvm/machine.h"
#include "lkvm/pci.h"
#include "tap.h"

struct fake {
	struct pci_device pci;
	unsigned int updates[PCI_NUM_BARS];
	uint64_t last_addr[PCI_NUM_BARS];
	bool last_on[PCI_NUM_BARS];
	uint8_t caps[16];
};

static void bar_update(struct pci_device *d, unsigned int i)
{
	struct fake *f = d->opaque;

	f->updates[i]++;
	f->last_addr[i] = d->bars[i].addr;
	f->last_on[i] = d->bars[i].enabled;
}

static void cap_read(struct pci_device *d, unsigned int off, void *data,
		     unsigned int len)
{
	struct fake *f = d->opaque;

	for (unsigned int i = 0; i < len; i++)
		((uint8_t *)data)[i] = off + i - 0x40 < sizeof(f->caps) ?
					       f->caps[off + i - 0x40] : 0;
}

static void cap_write(struct pci_device *d, unsigned int off,
		      const void *data, unsigned int len)
{
	struct fake *f = d->opaque;

	for (unsigned int i = 0; i < len; i++)
		if (off + i - 0x40 < sizeof(f->caps))
			f->caps[off + i - 0x40] = ((const uint8_t *)data)[i];
}

static const struct pci_device_ops fake_ops = {
	.bar_update = bar_update,
	.cfg_read = cap_read,
	.cfg_write = cap_write,
};

static struct machine *m;

static uint32_t cfg_addr(unsigned int bus, unsigned int slot,
			 unsigned int fn, unsigned int reg)
{
	return 0x80000000u | bus << 16 | slot << 11 | fn << 8 | (reg & 0xfc);
}

static uint32_t cfg_read(unsigned int slot, unsigned int reg,
			 unsigned int len)
{
	uint32_t a = cfg_addr(0, slot, 0, reg), v = 0;

	iobus_access(m->pio, NULL, 0xcf8, &a, 4, true);
	iobus_access(m->pio, NULL, 0xcfc + (reg & 3), &v, len, false);
	return v;
}

static void cfg_write(unsigned int slot, unsigned int reg, unsigned int len,
		      uint32_t v)
{
	uint32_t a = cfg_addr(0, slot, 0, reg);

	iobus_access(m->pio, NULL, 0xcf8, &a, 4, true);
	iobus_access(m->pio, NULL, 0xcfc + (reg & 3), &v, len, true);
}

static uint32_t raw_read(uint32_t addr)
{
	uint32_t v = 0;

	iobus_access(m->pio, NULL, 0xcf8, &addr, 4, true);
	iobus_access(m->pio, NULL, 0xcfc, &v, 4, false);
	return v;
}

static const struct device_ops *find_device(const char *name)
{
	unsigned int n;
	const struct device_ops *const *d = device_list(&n);

	for (unsigned int i = 0; i < n; i++)
		if (!strcmp(d[i]->name, name))
			return d[i];
	return NULL;
}

static void init_fake(struct fake *f)
{
	memset(f, 0, sizeof(*f));
	f->pci.ops = &fake_ops;
	f->pci.opaque = f;
	f->pci.irq_pin = 1;
	f->pci.bars[0] = (struct pci_bar){ .kind = PCI_BAR_IO, .size = 32 };
	f->pci.bars[1] = (struct pci_bar){ .kind = PCI_BAR_MEM32,
					   .size = 4096 };
	f->pci.bars[2] = (struct pci_bar){ .kind = PCI_BAR_MEM64,
					   .size = 1 << 20 };
	f->pci.cfg[0x34] = 0x40;	/* a capability list */
	f->caps[0] = 0x09;		/* vendor-specific, last */
}

static void test_probe(void)
{
	uint32_t a = 0x80000000, v = 0;

	iobus_access(m->pio, NULL, 0xcf8, &a, 4, true);
	iobus_access(m->pio, NULL, 0xcf8, &v, 4, false);
	CHECK(v == 0x80000000,
	      "0xcf8 latches the address (Linux's type 1 check)");
	CHECK(cfg_read(0, 0, 4) == 0x12378086,
	      "00:00.0 is an i440FX host bridge (8086:1237)");
	CHECK(cfg_read(0, 8, 4) >> 8 == 0x060000,
	      "host bridge class 0x060000");
	CHECK(cfg_read(0, 2, 2) == 0x1237 && cfg_read(0, 1, 1) == 0x80,
	      "word and byte reads at offsets inside the dword");
	cfg_write(0, 0, 4, 0xdeadbeef);
	CHECK(cfg_read(0, 0, 4) == 0x12378086,
	      "vendor and device are read-only");
	cfg_write(0, 0x59, 1, 0x30);
	CHECK(cfg_read(0, 0x59, 1) == 0x30,
	      "chipset registers (PAM0) keep what firmware writes");

	CHECK(cfg_read(31, 0, 4) == 0xffffffff, "an empty slot reads all ones");
	CHECK(raw_read(cfg_addr(1, 0, 0, 0)) == 0xffffffff,
	      "bus 1 reads all ones");
	CHECK(raw_read(cfg_addr(0, 0, 1, 0)) == 0xffffffff,
	      "function 1 reads all ones");
	CHECK(raw_read(0x00000000) == 0xffffffff,
	      "with the enable bit clear, data reads all ones");
	a = 0x80000000 | 0x01000000;
	CHECK(raw_read(a) == 0xffffffff,
	      "extended register bits (AMD) read all ones");
	v = 0x12;
	iobus_access(m->pio, NULL, 0xcf8, &v, 1, true);
	iobus_access(m->pio, NULL, 0xcf8, &v, 4, false);
	CHECK(v == (0x80000000 | 0x01000000),
	      "a byte write to 0xcf8 leaves the latch alone");
}

static void test_bars(void)
{
	struct fake f, g;
	unsigned int s;
	uint64_t io, mem, mem64;

	init_fake(&f);
	CHECK(pci_register(m, &f.pci, 0x1af4, 0x1000, 0x020000, 0x1af4, 1) == 0,
	      "pci_register: plugged");
	s = f.pci.slot;
	CHECK(s == 1 && f.pci.gsi >= 16 && f.pci.gsi <= 23,
	      "slot 1, INTx on a GSI in 16-23");
	CHECK(cfg_read(s, 0, 4) == 0x10001af4 &&
		      cfg_read(s, 8, 4) == 0x02000000 &&
		      cfg_read(s, 0x2c, 4) == 0x00011af4,
	      "vendor, device, class, subsystem in the header");
	CHECK(cfg_read(s, 0x3d, 1) == 1 && cfg_read(s, 0x3c, 1) == f.pci.gsi,
	      "interrupt pin INTA, line = GSI");
	CHECK((cfg_read(s, 6, 2) & 0x10) && cfg_read(s, 0x34, 1) == 0x40 &&
		      cfg_read(s, 0x40, 2) == 0x0009,
	      "capability list: status bit, pointer, device's own bytes");
	cfg_write(s, 0x42, 1, 0x77);
	CHECK(f.caps[2] == 0x77, "config writes from 0x40 reach the device");

	io = f.pci.bars[0].addr;
	mem = f.pci.bars[1].addr;
	mem64 = f.pci.bars[2].addr;
	CHECK(io >= PCI_IO_BASE && io % 32 == 0 && mem >= PCI_MMIO_BASE &&
		      mem % 4096 == 0 && mem64 % (1 << 20) == 0 &&
		      mem64 + (1 << 20) <= PCI_MMIO_BASE + PCI_MMIO_SIZE,
	      "BARs naturally aligned inside the I/O and MMIO windows");
	CHECK(cfg_read(s, 0x10, 4) == (io | 1) && cfg_read(s, 0x14, 4) == mem &&
		      cfg_read(s, 0x18, 4) == (mem64 | 4) &&
		      cfg_read(s, 0x1c, 4) == mem64 >> 32,
	      "BAR registers: address with the type bits");
	CHECK((cfg_read(s, 4, 2) & 3) == 3 && f.last_on[0] && f.last_on[1] &&
		      f.last_on[2] && f.updates[0] == 1,
	      "decoding on at plug time, bar_update told once per BAR");

	/* Sizing, as Linux does it: decoding off, all ones, restore. */
	cfg_write(s, 4, 2, 0);
	CHECK(!f.last_on[0] && !f.last_on[1] && !f.last_on[2] &&
		      f.updates[0] == 2 && f.updates[3] == 0,
	      "command I/O and memory off: every BAR stops decoding");
	for (unsigned int r = 0x10; r <= 0x24; r += 4)
		cfg_write(s, r, 4, 0xffffffff);
	CHECK(cfg_read(s, 0x10, 4) == 0xffffffe1,
	      "I/O BAR sizing reads ~(32-1) with bit 0 set");
	CHECK(cfg_read(s, 0x14, 4) == 0xfffff000, "32-bit BAR sizing: 4 KiB");
	CHECK(cfg_read(s, 0x18, 4) == 0xfff00004 &&
		      cfg_read(s, 0x1c, 4) == 0xffffffff,
	      "64-bit BAR sizing: 1 MiB over two registers, type 0x4");
	CHECK(cfg_read(s, 0x20, 4) == 0 && cfg_read(s, 0x24, 4) == 0 &&
		      cfg_read(s, 0x30, 4) == 0,
	      "unused BARs and the ROM BAR read 0");
	CHECK(f.updates[0] == 2 && f.updates[1] == 2,
	      "moves while decoding is off call nothing");

	/* Move everything and turn decoding back on. */
	cfg_write(s, 0x10, 4, 0xd000);
	cfg_write(s, 0x14, 4, 0xd0000000);
	cfg_write(s, 0x18, 4, 0x00000000);
	cfg_write(s, 0x1c, 4, 0x1);	/* 4 GiB */
	cfg_write(s, 4, 2, 3);
	CHECK(f.last_on[0] && f.last_addr[0] == 0xd000 && f.last_on[1] &&
		      f.last_addr[1] == 0xd0000000 && f.last_on[2] &&
		      f.last_addr[2] == 0x100000000ull,
	      "decoding on: bar_update at the new addresses, one above 4 GiB");
	cfg_write(s, 0x14, 2, 0x1000);	/* a word write to the low half */
	CHECK(f.last_addr[1] == 0xd0001000 && f.updates[1] == 4,
	      "moving a decoding BAR calls bar_update at once");
	cfg_write(s, 0x14, 4, 0xffffffff);
	CHECK(!f.last_on[1],
	      "sizing with decoding on: the all-ones address does not decode");
	cfg_write(s, 0x14, 4, (uint32_t)mem);
	cfg_write(s, 0x10, 4, 0xfffffff0);
	CHECK(!f.last_on[0], "an I/O BAR beyond port 0xffff does not decode");
	cfg_write(s, 0x10, 4, (uint32_t)io);
	cfg_write(s, 4, 2, 1);
	CHECK(f.last_on[0] && !f.last_on[1] && !f.last_on[2],
	      "the memory enable bit governs memory BARs only");
	cfg_write(s, 4, 2, 3);

	/* Read-only header fields. */
	cfg_write(s, 0, 4, 0);
	cfg_write(s, 8, 4, 0xffffffff);
	cfg_write(s, 0x0c, 4, 0xffffffff);
	cfg_write(s, 0x2c, 4, 0);
	cfg_write(s, 0x3c, 2, 0xff0b);
	CHECK(cfg_read(s, 0, 4) == 0x10001af4 &&
		      cfg_read(s, 8, 4) == 0x02000000 &&
		      cfg_read(s, 0x0e, 1) == 0 &&
		      cfg_read(s, 0x2c, 4) == 0x00011af4,
	      "vendor, device, class, header type, subsystem are read-only");
	CHECK(cfg_read(s, 0x3c, 1) == 0x0b && cfg_read(s, 0x3d, 1) == 1 &&
		      cfg_read(s, 0x0c, 1) == 0xff,
	      "interrupt line and cache line size writable, pin read-only");
	cfg_write(s, 4, 2, 0xffff);
	CHECK(cfg_read(s, 4, 2) == 0x0547,
	      "command keeps only its defined bits");
	cfg_write(s, 4, 2, 3);

	/* INTx. */
	pci_set_irq(&f.pci, 1);
	CHECK(cfg_read(s, 6, 2) & 0x08, "INTx asserted: status bit 3");
	pci_set_irq(&f.pci, 0);
	CHECK(!(cfg_read(s, 6, 2) & 0x08), "INTx deasserted");

	init_fake(&g);
	g.pci.bars[1].kind = PCI_BAR_NONE;
	g.pci.bars[2].kind = PCI_BAR_NONE;
	g.pci.irq_pin = 0;
	CHECK(pci_register(m, &g.pci, 0x1234, 0x5678, 0xff0000, 0, 0) == 0 &&
		      g.pci.slot == 2 && g.pci.bars[0].addr != io &&
		      cfg_read(2, 0x3d, 1) == 0,
	      "a second device: next slot, its own I/O range, no INTx");
	CHECK(pci_next_device(m, NULL) == &f.pci &&
		      pci_next_device(m, &f.pci) == &g.pci &&
		      pci_next_device(m, &g.pci) == NULL,
	      "pci_next_device lists the plugged devices, not the bridge");
}

static void test_refusals(void)
{
	static struct fake many[PCI_MAX_DEVICES];
	struct fake f;
	unsigned int plugged = 0;
	int err = 0;

	init_fake(&f);
	f.pci.bars[1].size = 3000;
	CHECK(pci_register(m, &f.pci, 1, 1, 0, 0, 0) == -EINVAL,
	      "a BAR size that is no power of two is refused");
	init_fake(&f);
	f.pci.bars[5] = (struct pci_bar){ .kind = PCI_BAR_MEM64, .size = 4096 };
	CHECK(pci_register(m, &f.pci, 1, 1, 0, 0, 0) == -EINVAL,
	      "a 64-bit BAR in BAR 5 is refused");
	init_fake(&f);
	f.pci.irq_pin = 5;
	CHECK(pci_register(m, &f.pci, 1, 1, 0, 0, 0) == -EINVAL,
	      "interrupt pin 5 is refused");
	for (unsigned int i = 0; i < PCI_MAX_DEVICES && !err; i++) {
		memset(&many[i], 0, sizeof(many[i]));
		many[i].pci.irq_pin = 1;
		err = pci_register(m, &many[i].pci, 1, 1, 0, 0, 0);
		plugged += !err;
	}
	CHECK(err == -ENOSPC && plugged == PCI_MAX_DEVICES - 3,
	      "the 32 slots fill up (bridge and two devices plugged before)");
}

int main(void)
{
	const struct device_ops *ops = find_device("pci");
	uint8_t b;

	m = calloc(1, sizeof(*m));
	m->epoll_fd = m->wake_fd = -1;
	m->pio = iobus_new(IOBUS_PIO);
	machine_setup_config(m);
	CHECK(ops && ops->init(m) == 0 && m->pci, "pci: the host bridge is up");
	if (!m->pci)
		return tap_done();
	test_probe();
	test_bars();
	test_refusals();

	b = 0x02;
	iobus_access(m->pio, NULL, 0xcf9, &b, 1, true);
	CHECK(!machine_stopping(m), "0xcf9: SYS_RST alone does not reset");
	b = 0x06;
	iobus_access(m->pio, NULL, 0xcf9, &b, 1, true);
	CHECK(machine_stopping(m) && m->exit_status == 0,
	      "0xcf9: RST_CPU resets (status 0)");

	ops->exit(m);
	for (unsigned int i = 0; i < m->ndev; i++)
		free(m->dev_cfg[i]);
	free(m->dev_cfg);
	iobus_free(m->pio);
	free(m);
	return tap_done();
}
