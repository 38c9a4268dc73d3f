/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A machine without KVM for unit tests: RAM laid out as lkvm lays it out
 * (machine_add_memory() only records regions when m->kvm is NULL), the
 * two buses, and every device's configuration block. Devices and loaders
 * run against it unchanged; port and MMIO accesses go through the buses
 * as a vCPU's exits would.
 */
#ifndef LKVM_FAKE_MACHINE_H
#define LKVM_FAKE_MACHINE_H

#include <stdlib.h>
#include <sys/mman.h>

#include "lkvm/arch.h"
#include "lkvm/machine.h"

static inline struct machine *fake_machine_new(uint64_t ram)
{
	struct machine *m = calloc(1, sizeof(*m));
	struct ram_range r[MACHINE_MAX_REGIONS];
	unsigned int n;
	uint64_t off = 0;
	char *host;

	if (!m)
		abort();
	m->epoll_fd = m->wake_fd = -1;
	m->cfg.ram_size = m->ram_size = ram;
	m->cfg.ncpus = 1;	/* m->ncpus stays 0: tests set cfg.ncpus */
	m->pio = iobus_new(IOBUS_PIO);
	m->mmio = iobus_new(IOBUS_MMIO);
	if (!m->pio || !m->mmio || machine_setup_config(m))
		abort();
	if (!ram)
		return m;
	host = mmap(NULL, ram, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (host == MAP_FAILED)
		abort();
	n = arch_memory_layout(ram, r, MACHINE_MAX_REGIONS);
	for (unsigned int i = 0; i < n; i++) {
		if (machine_add_memory(m, r[i].gpa, r[i].size, host + off,
				       false))
			abort();
		off += r[i].size;
	}
	return m;
}

static inline void fake_machine_free(struct machine *m)
{
	if (m->ram_size && m->nmem)
		munmap(m->mem[0].host, m->ram_size);
	arch_exit(m);
	free(m->fdt);
	for (unsigned int i = 0; m->dev_cfg && i < m->ndev; i++)
		free(m->dev_cfg[i]);
	free(m->dev_cfg);
	iobus_free(m->pio);
	iobus_free(m->mmio);
	free(m);
}

static inline uint8_t fm_inb(struct machine *m, uint16_t port)
{
	uint8_t v;

	iobus_access(m->pio, NULL, port, &v, 1, false);
	return v;
}

static inline void fm_outb(struct machine *m, uint16_t port, uint8_t v)
{
	iobus_access(m->pio, NULL, port, &v, 1, true);
}

#endif
