/* PCI configuration space access and BARs (pci.c). */
#ifndef PCI_H
#define PCI_H

#include "kernel.h"

struct pci_bar {
	uint64_t addr, size; /* size only when the kernel assigned it */
	bool io, is64, assigned;
};

uint32_t pci_read32(uint32_t bdf, uint32_t off);
uint16_t pci_read16(uint32_t bdf, uint32_t off);
uint8_t pci_read8(uint32_t bdf, uint32_t off);
void pci_write32(uint32_t bdf, uint32_t off, uint32_t v);
void pci_write16(uint32_t bdf, uint32_t off, uint16_t v);
bool pci_bar(uint32_t bdf, int i, struct pci_bar *b);
void pci_scan(void (*fn)(uint32_t bdf, uint16_t vendor, uint16_t device));
uint8_t pci_find_cap(uint32_t bdf, uint8_t id, uint8_t from);
void pci_enable(uint32_t bdf);

#endif
