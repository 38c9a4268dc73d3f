/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the ISA devices in hw/: their device-tree nodes.
 *
 * I/O ports have no place in a CPU address map on x86, so the devices are
 * children of an /isa node that follows the Open Firmware ISA binding:
 * #address-cells = <2> (a space cell, 1 for I/O, and the port), and
 * #size-cells = <1>. A UART at 0x3f8 is "serial@i3f8" with
 * reg = <1 0x3f8 8>. Interrupts are two cells, <irq type>, as the x86
 * I/O APIC binding reads them (type 3: rising edge, active high, the
 * ISA convention).
 *
 * The fdt callbacks work on a read-write tree (fdt_open_into or
 * fdt_create_empty_tree) and return 0 or a negative libfdt error.
 */
#ifndef LKVM_ISA_H
#define LKVM_ISA_H

#include <stdint.h>

#define ISA_FDT_IRQ_EDGE_RISING 3

/* The offset of /isa, creating it on first use; < 0 on libfdt errors. */
int isa_fdt_node(void *fdt);

/*
 * Adds /isa/<name>@i<port> with compatible, reg = <1 port len> and, when
 * irq >= 0, interrupts = <irq 3>. Returns the node's offset or < 0.
 */
int isa_fdt_add_device(void *fdt, const char *name, const char *compatible,
		       uint16_t port, uint16_t len, int irq);

#endif
