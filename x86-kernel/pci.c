/* PCI bus 0 through configuration mechanism #1 (0xcf8/0xcfc): enumeration,
 * BARs, capabilities. Each configuration access costs two port exits, so
 * only what the virtio drivers need is read. */
#include "kernel.h"
#include "pci.h"

#define PCI_ADDR 0xcf8
#define PCI_DATA 0xcfc

static uint32_t cfg_addr(uint32_t bdf, uint32_t off)
{
	return 0x80000000u | bdf << 8 | (off & 0xfc);
}

uint32_t pci_read32(uint32_t bdf, uint32_t off)
{
	outl(PCI_ADDR, cfg_addr(bdf, off));
	return inl(PCI_DATA);
}

uint16_t pci_read16(uint32_t bdf, uint32_t off)
{
	outl(PCI_ADDR, cfg_addr(bdf, off));
	return inw((uint16_t)(PCI_DATA + (off & 2)));
}

uint8_t pci_read8(uint32_t bdf, uint32_t off)
{
	outl(PCI_ADDR, cfg_addr(bdf, off));
	return inb((uint16_t)(PCI_DATA + (off & 3)));
}

void pci_write32(uint32_t bdf, uint32_t off, uint32_t v)
{
	outl(PCI_ADDR, cfg_addr(bdf, off));
	outl(PCI_DATA, v);
}

void pci_write16(uint32_t bdf, uint32_t off, uint16_t v)
{
	outl(PCI_ADDR, cfg_addr(bdf, off));
	outw((uint16_t)(PCI_DATA + (off & 2)), v);
}

/* Unassigned BARs (address 0) get addresses here: a VMM that boots a
 * kernel directly may leave that to the kernel. Both VMMs this kernel is
 * tested under assign every BAR themselves (QEMU through SeaBIOS, near
 * 0xfe000000; lkvm from 0xc0000000 up), so this is a fallback that only
 * has to stay clear of them and of the APICs. */
static uint64_t next_mem = 0xe0000000, next_io = 0xc000;

static void bar_size(uint32_t bdf, int i, bool is64, uint64_t *size)
{
	uint32_t off = 0x10 + 4 * i;
	uint32_t lo = pci_read32(bdf, off), hi = 0;
	pci_write32(bdf, off, 0xffffffff);
	uint32_t mlo = pci_read32(bdf, off), mhi = 0xffffffff;
	pci_write32(bdf, off, lo);
	if (is64) {
		hi = pci_read32(bdf, off + 4);
		pci_write32(bdf, off + 4, 0xffffffff);
		mhi = pci_read32(bdf, off + 4);
		pci_write32(bdf, off + 4, hi);
	}
	uint64_t mask = (uint64_t)mhi << 32 | (mlo & ((lo & 1) ? ~3u : ~0xfu));
	if (lo & 1)
		mask |= 0xffffffffffff0000ull; /* I/O BARs decode 16 bits */
	*size = mask ? ~mask + 1 : 0;
}

/* Reads BAR i (both halves of a 64-bit one); assigns it when it is 0. */
bool pci_bar(uint32_t bdf, int i, struct pci_bar *b)
{
	memset(b, 0, sizeof(*b));
	if (i < 0 || i > 5)
		return false;
	uint32_t off = 0x10 + 4 * i;
	uint32_t lo = pci_read32(bdf, off);
	b->io = lo & 1;
	b->is64 = !b->io && ((lo >> 1) & 3) == 2;
	if (b->is64 && i == 5)
		return false;
	b->addr = b->io ? (lo & ~3u) : (lo & ~0xfu);
	if (b->is64)
		b->addr |= (uint64_t)pci_read32(bdf, off + 4) << 32;
	if (b->addr)
		return true;
	/* Unassigned: size it with decoding off, then place it. */
	uint16_t cmd = pci_read16(bdf, 4);
	pci_write16(bdf, 4, cmd & ~3u);
	bar_size(bdf, i, b->is64, &b->size);
	if (!b->size) {
		pci_write16(bdf, 4, cmd);
		return false;
	}
	uint64_t *next = b->io ? &next_io : &next_mem;
	b->addr = (*next + b->size - 1) & ~(b->size - 1);
	if (b->addr + b->size > (b->io ? 0x10000ull : 0xfec00000ull)) {
		pci_write16(bdf, 4, cmd);
		return false;
	}
	*next = b->addr + b->size;
	pci_write32(bdf, off, (uint32_t)b->addr | (lo & (b->io ? 3u : 0xfu)));
	if (b->is64)
		pci_write32(bdf, off + 4, (uint32_t)(b->addr >> 32));
	pci_write16(bdf, 4, cmd);
	b->assigned = true;
	return true;
}

/* Bus 0: every function that answers (function 0, and functions 1-7 of
 * multi-function devices). Calls fn for each. */
void pci_scan(void (*fn)(uint32_t bdf, uint16_t vendor, uint16_t device))
{
	for (uint32_t dev = 0; dev < 32; dev++) {
		uint32_t id = pci_read32(dev << 3, 0);
		if ((id & 0xffff) == 0xffff || (id & 0xffff) == 0)
			continue;
		int nfn = (pci_read8(dev << 3, 0x0e) & 0x80) ? 8 : 1;
		for (int f = 0; f < nfn; f++) {
			uint32_t bdf = dev << 3 | (uint32_t)f;
			if (f)
				id = pci_read32(bdf, 0);
			if ((id & 0xffff) == 0xffff || (id & 0xffff) == 0)
				continue;
			fn(bdf, (uint16_t)id, (uint16_t)(id >> 16));
		}
	}
}

/* The offset of the first capability with this ID at or after `from`
 * (0: from the start of the list), or 0. */
uint8_t pci_find_cap(uint32_t bdf, uint8_t id, uint8_t from)
{
	if (!(pci_read16(bdf, 6) & 0x10))
		return 0;
	uint8_t p = from ? pci_read8(bdf, from + 1u) : pci_read8(bdf, 0x34);
	for (int guard = 0; p >= 0x40 && guard < 48; guard++) {
		p &= 0xfc;
		uint16_t w = pci_read16(bdf, p);
		if ((w & 0xff) == id)
			return p;
		p = (uint8_t)(w >> 8);
	}
	return 0;
}

void pci_enable(uint32_t bdf)
{
	uint16_t cmd = pci_read16(bdf, 4);
	/* I/O, memory, bus master (DMA: the rings), INTx off: the drivers
	 * poll. */
	pci_write16(bdf, 4, (uint16_t)(cmd | 0x0007 | 0x0400));
}
