/* SPDX-License-Identifier: GPL-2.0 */
/*
 * PCI: the host bridge (configuration mechanism #1 at 0xcf8/0xcfc) and
 * the devices plugged into bus 0. A device owns a 256-byte configuration
 * space; the bridge sizes and moves BARs the way PCI says and tells the
 * device when a BAR moves. Firmware tables (MP table, device tree) list
 * the devices and their INTx lines through pci_next_device().
 */
#ifndef LKVM_PCI_H
#define LKVM_PCI_H

#include <stdbool.h>
#include <stdint.h>

struct machine;
struct pci_device;

#define PCI_MAX_DEVICES 32	/* one function per slot on bus 0 */
#define PCI_NUM_BARS 6

/* Where the core places PCI resources on x86. */
#define PCI_IO_BASE 0xc000u
#define PCI_IO_SIZE 0x4000u
#define PCI_MMIO_BASE 0xc0000000ull	/* the 32-bit hole starts here */
#define PCI_MMIO_SIZE 0x20000000ull

enum pci_bar_kind { PCI_BAR_NONE, PCI_BAR_IO, PCI_BAR_MEM32, PCI_BAR_MEM64 };

struct pci_bar {
	enum pci_bar_kind kind;
	uint64_t size;		/* power of two */
	uint64_t addr;		/* current address */
	bool enabled;		/* decoding on (command register) */
};

struct pci_device_ops {
	/* BAR i now decodes at addr (enabled) or not at all. */
	void (*bar_update)(struct pci_device *d, unsigned int i);
	/* Config accesses beyond the standard header (capabilities). */
	void (*cfg_write)(struct pci_device *d, unsigned int off,
			  const void *data, unsigned int len);
	void (*cfg_read)(struct pci_device *d, unsigned int off, void *data,
			 unsigned int len);
};

struct pci_device {
	struct machine *m;
	uint8_t cfg[256];	/* little-endian configuration space */
	uint8_t slot;		/* device number on bus 0 */
	uint8_t irq_pin;	/* 1 = INTA, 0 = none */
	uint8_t gsi;		/* I/O APIC input for INTx */
	struct pci_bar bars[PCI_NUM_BARS];
	const struct pci_device_ops *ops;
	void *opaque;
};

/*
 * Fills the header (vendor, device, class, subsystem), allocates BAR
 * addresses from the I/O and MMIO windows, a slot and a GSI, and plugs
 * the device in. bars[i].kind and .size must be set before the call.
 */
int pci_register(struct machine *m, struct pci_device *d, uint16_t vendor,
		 uint16_t device, uint32_t class_code, uint16_t subsys_vendor,
		 uint16_t subsys_id);

/*
 * Unplugs the device (its slot reads all ones again, its INTx drops).
 * The caller has stopped its BARs decoding; the bus forgets the pointer.
 */
void pci_unregister(struct pci_device *d);

/* Iterates over plugged devices: pass NULL to start. */
struct pci_device *pci_next_device(struct machine *m, struct pci_device *prev);

/* Raises or lowers INTx (level-triggered). */
void pci_set_irq(struct pci_device *d, int level);

#endif
