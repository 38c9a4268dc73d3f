// SPDX-License-Identifier: GPL-2.0
/*
 * fw_cfg as SeaBIOS and Linux's qemu_fw_cfg driver read it: the selector
 * and data ports, the items lkvm fills, the file directory, and DMA
 * (select, read with zeros past the end, skip, refused writes, addresses
 * outside RAM).
 */
#include <errno.h>
#include <string.h>

#include "fake-machine.h"
#include "lkvm/device.h"
#include "lkvm/fw_cfg.h"
#include "lkvm/iobus.h"
#include "lkvm/machine.h"
#include "lkvm/pci.h"
#include "tap.h"

#define RAM (256ull << 20)
#define ACC 0x10000ull		/* an FWCfgDmaAccess */
#define DST 0x20000ull

static struct machine *m;

static const struct device_ops *find_device(const char *name)
{
	unsigned int n;
	const struct device_ops *const *d = device_list(&n);

	for (unsigned int i = 0; i < n; i++)
		if (!strcmp(d[i]->name, name))
			return d[i];
	return NULL;
}

static void sel(uint16_t key)
{
	iobus_access(m->pio, NULL, FW_CFG_PORT_SEL, &key, 2, true);
}

static void readn(void *buf, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++)
		((uint8_t *)buf)[i] = fm_inb(m, FW_CFG_PORT_DATA);
}

static uint64_t read_le(uint16_t key, unsigned int n)
{
	uint8_t b[8] = { 0 };
	uint64_t v = 0;

	sel(key);
	readn(b, n);
	for (unsigned int i = 0; i < n; i++)
		v |= (uint64_t)b[i] << (8 * i);
	return v;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Finds a file in the directory: its key and size. */
static int find_file(const char *name, uint16_t *key, uint32_t *size)
{
	uint8_t count[4], e[64];

	sel(FW_CFG_FILE_DIR);
	readn(count, 4);
	for (uint32_t i = 0; i < be32(count); i++) {
		readn(e, 64);
		if (!strcmp((char *)e + 8, name)) {
			*key = (uint16_t)(e[4] << 8 | e[5]);
			*size = be32(e);
			return 0;
		}
	}
	return -1;
}

/* Runs one DMA access; returns the control word it left. */
static uint32_t dma(uint32_t control, uint32_t len, uint64_t addr,
		    uint64_t acc)
{
	uint8_t *a = guest_ptr(m, ACC, 16);
	uint32_t hi, lo;

	put_be32(a, control);
	put_be32(a + 4, len);
	put_be32(a + 8, (uint32_t)(addr >> 32));
	put_be32(a + 12, (uint32_t)addr);
	/* The guest writes the big-endian value with a little-endian out. */
	put_be32((uint8_t *)&hi, (uint32_t)(acc >> 32));
	put_be32((uint8_t *)&lo, (uint32_t)acc);
	iobus_access(m->pio, NULL, FW_CFG_PORT_DMA, &hi, 4, true);
	iobus_access(m->pio, NULL, FW_CFG_PORT_DMA + 4, &lo, 4, true);
	return be32(a);
}

static void test_ports(void)
{
	char sig[5] = { 0 };
	uint8_t b;

	sel(FW_CFG_SIGNATURE);
	readn(sig, 4);
	CHECK(!strcmp(sig, "QEMU"), "signature QEMU");
	b = fm_inb(m, FW_CFG_PORT_DATA);
	CHECK(b == 0, "past the end of an item: 0");
	sel(FW_CFG_SIGNATURE);
	CHECK(fm_inb(m, FW_CFG_PORT_DATA) == 'Q', "selecting again rewinds");
	CHECK(read_le(FW_CFG_ID, 4) == 3, "ID: traditional interface and DMA");
	CHECK(read_le(FW_CFG_RAM_SIZE, 8) == RAM, "RAM size, 64-bit");
	CHECK(read_le(FW_CFG_NB_CPUS, 2) == 3 && read_le(FW_CFG_MAX_CPUS, 2) == 3,
	      "3 CPUs, at most 3");
	CHECK(read_le(FW_CFG_BOOT_MENU, 2) == 0, "no boot menu");
	CHECK(read_le(FW_CFG_NUMA, 8) == 0, "no NUMA nodes");
	CHECK(read_le(FW_CFG_E820_TABLE, 4) == 0,
	      "arch key 0x8003 (legacy e820 reservations): none");
	CHECK(read_le(0x0123, 4) == 0 && read_le(0x7fff, 4) == 0,
	      "keys that do not exist read 0");
	CHECK(read_le(FW_CFG_ID | FW_CFG_WRITE_CHANNEL, 4) == 3,
	      "the write-channel bit selects the same item");
	sel(FW_CFG_SIGNATURE);
	b = 'X';
	iobus_access(m->pio, NULL, FW_CFG_PORT_DATA, &b, 1, true);
	CHECK(fm_inb(m, FW_CFG_PORT_DATA) == 'Q', "data writes are ignored");
}

static void test_files(void)
{
	uint8_t count[4], e[64], buf[128];
	char prev[56] = "";
	uint16_t key;
	uint32_t size, n;
	bool sorted = true;

	sel(FW_CFG_FILE_DIR);
	readn(count, 4);
	n = be32(count);
	for (uint32_t i = 0; i < n; i++) {
		readn(e, 64);
		sorted &= strcmp(prev, (char *)e + 8) < 0 &&
			  (e[4] << 8 | e[5]) == FW_CFG_FILE_FIRST + (int)i;
		memcpy(prev, e + 8, sizeof(prev));
	}
	CHECK(n >= 4 && sorted,
	      "the directory: big-endian, sorted by name, keys from 0x20");

	CHECK(!find_file("etc/e820", &key, &size) && size == 40,
	      "etc/e820: two entries");
	sel(key);
	readn(buf, size);
	{
		uint64_t a, l;
		uint32_t t;

		memcpy(&a, buf, 8);
		memcpy(&l, buf + 8, 8);
		memcpy(&t, buf + 16, 4);
		CHECK(a == 0 && l == RAM && t == 1, "etc/e820: RAM at 0");
		memcpy(&a, buf + 20, 8);
		memcpy(&l, buf + 28, 8);
		memcpy(&t, buf + 36, 4);
		CHECK(a == 0xfeffc000 && l == 0x4000 && t == 2,
		      "etc/e820: KVM's identity map and TSS reserved");
	}
	CHECK(!find_file("bootorder", &key, &size) &&
		      (sel(key), readn(buf, size),
		       !memcmp(buf, "/pci@i0cf8/scsi@1/disk@0,0\n", size)),
	      "bootorder: the virtio-blk disk in slot 1");
	CHECK(!find_file("etc/boot-cpus", &key, &size) && size == 2 &&
		      read_le(key, 2) == 3,
	      "etc/boot-cpus: 3");
	CHECK(!find_file("opt/lkvm/test", &key, &size) && size == 5 &&
		      (sel(key), readn(buf, 5), !memcmp(buf, "hello", 5)),
	      "a file a device added before start");
	CHECK(fw_cfg_add_file(m, "opt/late", "x", 1) == -EBUSY,
	      "no files once the guest may have read the directory");
}

static void test_dma(void)
{
	uint8_t *dst = guest_ptr(m, DST, 64);
	uint32_t sig[2];

	iobus_access(m->pio, NULL, FW_CFG_PORT_DMA, &sig[0], 4, false);
	iobus_access(m->pio, NULL, FW_CFG_PORT_DMA + 4, &sig[1], 4, false);
	CHECK(!memcmp(sig, "QEMU CFG", 8), "DMA ports read \"QEMU CFG\"");

	memset(dst, 0xee, 64);
	CHECK(dma(FW_CFG_SIGNATURE << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ,
		  8, DST, ACC) == 0 &&
		      !memcmp(dst, "QEMU\0\0\0\0", 8) && dst[8] == 0xee,
	      "DMA select + read: the item, then zeros; control cleared");
	CHECK(dma(FW_CFG_ID << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_SKIP, 2, 0,
		  ACC) == 0 &&
		      dma(FW_CFG_DMA_READ, 2, DST, ACC) == 0 && dst[0] == 0 &&
		      dst[1] == 0,
	      "DMA skip then read: the rest of the item");
	CHECK(dma(FW_CFG_SIGNATURE << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_WRITE,
		  4, DST, ACC) == FW_CFG_DMA_ERROR,
	      "DMA write: refused with the error bit");
	CHECK(dma(FW_CFG_SIGNATURE << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ,
		  4, RAM - 2, ACC) == FW_CFG_DMA_ERROR,
	      "DMA read into a range past RAM: error bit");
	CHECK(dma(FW_CFG_DMA_READ, 4, DST, RAM + 4096) == FW_CFG_DMA_READ,
	      "an access structure outside RAM is ignored");
	CHECK(dma(FW_CFG_DMA_READ, 4, DST, 1ull << 32 | ACC) == FW_CFG_DMA_READ,
	      "the high address word counts (4 GiB + ACC: no RAM there)");
	CHECK(dma(FW_CFG_SIGNATURE << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ,
		  1, DST, ACC) == 0 && dst[0] == 'Q',
	      "the next access starts from a high word of 0 again");
}

int main(void)
{
	const struct device_ops *pci = find_device("pci");
	const struct device_ops *fw = find_device("fw_cfg");
	struct pci_device blk = { .irq_pin = 1 };
	int err;

	m = fake_machine_new(RAM);
	m->cfg.ncpus = 3;
	m->cfg.firmware = "bios.bin";
	CHECK(pci && fw && pci->init(m) == 0, "the PCI bus is up");
	blk.bars[0] = (struct pci_bar){ .kind = PCI_BAR_IO, .size = 64 };
	CHECK(pci_register(m, &blk, 0x1af4, 0x1001, 0x010000, 0x1af4, 2) == 0,
	      "a virtio-blk-like device in slot 1");
	CHECK(fw_cfg_add_file(m, "opt/lkvm/test", "hello", 5) == 0 &&
		      fw_cfg_add_file(m, "", "x", 1) == -EINVAL &&
		      fw_cfg_add_file(m, "a-name-that-is-far-too-long-for-"
					 "the-fw-cfg-directory-entry",
				      "x", 1) == -EINVAL,
	      "fw_cfg_add_file takes good names only");
	err = fw->init(m);
	CHECK(err == 0, "fw_cfg is up");
	if (err)
		return tap_done();
	test_ports();
	test_files();
	test_dma();
	fw->exit(m);
	pci_unregister(&blk);
	pci->exit(m);
	fake_machine_free(m);
	return tap_done();
}
