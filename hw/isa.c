// SPDX-License-Identifier: GPL-2.0
/*
 * The /isa device-tree node that the legacy devices in hw/ hang off (see
 * include/lkvm/isa.h for the binding).
 */
#include "lkvm/isa.h"

#include <libfdt.h>
#include <stdio.h>

int isa_fdt_node(void *fdt)
{
	int node = fdt_subnode_offset(fdt, 0, "isa");
	int err;

	if (node != -FDT_ERR_NOTFOUND)
		return node;
	node = fdt_add_subnode(fdt, 0, "isa");
	if (node < 0)
		return node;
	err = fdt_setprop_string(fdt, node, "device_type", "isa");
	if (!err)
		err = fdt_setprop_cell(fdt, node, "#address-cells", 2);
	if (!err)
		err = fdt_setprop_cell(fdt, node, "#size-cells", 1);
	return err ? err : node;
}

int isa_fdt_add_device(void *fdt, const char *name, const char *compatible,
		       uint16_t port, uint16_t len, int irq)
{
	fdt32_t reg[3] = { cpu_to_fdt32(1), cpu_to_fdt32(port),
			   cpu_to_fdt32(len) };
	fdt32_t intr[2] = { cpu_to_fdt32((uint32_t)irq),
			    cpu_to_fdt32(ISA_FDT_IRQ_EDGE_RISING) };
	char unit[32];
	int isa = isa_fdt_node(fdt);
	int node, err;

	if (isa < 0)
		return isa;
	snprintf(unit, sizeof(unit), "%s@i%x", name, port);
	node = fdt_add_subnode(fdt, isa, unit);
	if (node < 0)
		return node;
	err = fdt_setprop_string(fdt, node, "compatible", compatible);
	if (!err)
		err = fdt_setprop(fdt, node, "reg", reg, sizeof(reg));
	if (!err && irq >= 0)
		err = fdt_setprop(fdt, node, "interrupts", intr, sizeof(intr));
	return err ? err : node;
}
