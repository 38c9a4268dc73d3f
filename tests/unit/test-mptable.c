// SPDX-License-Identifier: GPL-2.0
/*
 * The MP table, read the way a guest reads it: found by its floating
 * pointer in the BIOS segment, checksums verified, then every entry.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lkvm/arch.h"
#include "lkvm/device.h"
#include "lkvm/iobus.h"
#include "lkvm/machine.h"
#include "lkvm/pci.h"
#include "lkvm/x86.h"
#include "fake-machine.h"
#include "tap.h"

static uint16_t rd16(const uint8_t *p)
{
	return p[0] | p[1] << 8;
}

static uint32_t rd32(const uint8_t *p)
{
	return rd16(p) | (uint32_t)rd16(p + 2) << 16;
}

static uint8_t sum(const uint8_t *p, size_t len)
{
	uint8_t s = 0;

	while (len--)
		s += *p++;
	return s;
}

/* What a guest learns from the table. */
struct mp {
	bool found, fp_sum_ok, table_sum_ok, sizes_ok;
	unsigned int count, entries;
	unsigned int ncpus, bsp_count, bsp_id;
	uint8_t cpu_id[256];
	bool cpus_enabled;
	int pci_bus, isa_bus;
	int ioapic_id;
	uint32_t ioapic_addr, lapic_addr;
	int isa_pin[16];		/* -1: no entry */
	int isa_entries;
	bool isa_conforming;
	int pci_pin[32][4];		/* slot, INTA-INTD -> pin */
	bool pci_level_low;
	int lint_extint, lint_nmi;	/* LINT number, -1: none */
	bool lint_all;
};

static void scan(struct machine *m, struct mp *mp)
{
	const uint8_t *seg = guest_ptr(m, 0xf0000, 0x10000), *fp = NULL, *t, *e;
	unsigned int len;

	memset(mp, 0, sizeof(*mp));
	mp->pci_bus = mp->isa_bus = mp->ioapic_id = -1;
	mp->lint_extint = mp->lint_nmi = -1;
	memset(mp->isa_pin, -1, sizeof(mp->isa_pin));
	memset(mp->pci_pin, -1, sizeof(mp->pci_pin));
	mp->cpus_enabled = mp->isa_conforming = mp->pci_level_low = true;
	mp->lint_all = true;
	for (unsigned int off = 0; seg && off < 0x10000; off += 16) {
		if (!memcmp(seg + off, "_MP_", 4)) {
			fp = seg + off;
			break;
		}
	}
	if (!fp)
		return;
	mp->found = true;
	mp->fp_sum_ok = fp[8] == 1 && sum(fp, 16) == 0 && fp[9] == 4;
	t = guest_ptr(m, rd32(fp + 4), 44);
	if (!t || memcmp(t, "PCMP", 4))
		return;
	len = rd16(t + 4);
	t = guest_ptr(m, rd32(fp + 4), len);
	mp->table_sum_ok = t && sum(t, len) == 0 && t[6] == 4;
	if (!t)
		return;
	mp->count = rd16(t + 34);
	mp->lapic_addr = rd32(t + 36);
	mp->sizes_ok = true;
	for (e = t + 44; e < t + len; mp->entries++) {
		switch (e[0]) {
		case 0:
			if (e[3] & 2) {
				mp->bsp_count++;
				mp->bsp_id = e[1];
			}
			if (!(e[3] & 1))
				mp->cpus_enabled = false;
			mp->cpu_id[mp->ncpus++ & 0xff] = e[1];
			e += 20;
			continue;
		case 1:
			if (!memcmp(e + 2, "PCI   ", 6))
				mp->pci_bus = e[1];
			if (!memcmp(e + 2, "ISA   ", 6))
				mp->isa_bus = e[1];
			break;
		case 2:
			mp->ioapic_id = e[1];
			mp->ioapic_addr = rd32(e + 4);
			break;
		case 3:
			if (e[6] != mp->ioapic_id || e[1] != 0)
				break;
			if (e[4] == mp->isa_bus && e[5] < 16) {
				mp->isa_pin[e[5]] = e[7];
				mp->isa_entries++;
				if (rd16(e + 2) != 0)
					mp->isa_conforming = false;
			} else if (e[4] == mp->pci_bus) {
				mp->pci_pin[e[5] >> 2][e[5] & 3] = e[7];
				if (rd16(e + 2) != 0xf)
					mp->pci_level_low = false;
			}
			break;
		case 4:
			if (e[6] != 0xff)
				mp->lint_all = false;
			if (e[1] == 3)
				mp->lint_extint = e[7];
			if (e[1] == 1)
				mp->lint_nmi = e[7];
			break;
		default:
			mp->sizes_ok = false;
			return;
		}
		e += 8;
	}
	if (e != t + len)
		mp->sizes_ok = false;
}

static void test_table(unsigned int ncpus)
{
	struct machine *m = fake_machine_new(16 << 20);
	static const struct x86_pci_irq pci[] = {
		{ 0, 0, 0 },		/* host bridge: no INTx */
		{ 3, 1, 16 },		/* INTA -> GSI 16 */
		{ 4, 1, 17 },
		{ 31, 2, 23 },		/* INTB on the last slot */
	};
	struct mp mp;
	char what[128];
	bool ok;

#define CHECKF(cond, ...)                                                  \
	do {                                                               \
		snprintf(what, sizeof(what), __VA_ARGS__);                 \
		CHECK(cond, what);                                         \
	} while (0)

	CHECKF(x86_build_mptable(m, ncpus, pci, 4) == 0,
	       "%u vCPUs: the MP table is written", ncpus);
	scan(m, &mp);
	CHECKF(mp.found && mp.fp_sum_ok,
	       "%u vCPUs: floating pointer in the F segment, checksum 0",
	       ncpus);
	CHECKF(mp.table_sum_ok && mp.sizes_ok && mp.count == mp.entries,
	       "%u vCPUs: table checksum, entry sizes and count agree", ncpus);
	ok = mp.ncpus == ncpus && mp.cpus_enabled;
	for (unsigned int i = 0; ok && i < ncpus; i++)
		ok = mp.cpu_id[i] == i;
	CHECKF(ok, "%u vCPUs: one enabled processor per vCPU, APIC ID = id",
	       ncpus);
	CHECKF(mp.bsp_count == 1 && mp.bsp_id == 0,
	       "%u vCPUs: vCPU 0 is the only BSP", ncpus);
	CHECKF(mp.lapic_addr == 0xfee00000,
	       "%u vCPUs: local APICs at 0xfee00000", ncpus);
	CHECKF(mp.pci_bus >= 0 && mp.isa_bus >= 0 && mp.pci_bus != mp.isa_bus,
	       "%u vCPUs: a PCI and an ISA bus", ncpus);
	CHECKF(mp.ioapic_id == (int)ncpus && mp.ioapic_addr == 0xfec00000,
	       "%u vCPUs: the I/O APIC has ID %u, at 0xfec00000", ncpus,
	       ncpus);

	ok = mp.isa_pin[0] == 2 && mp.isa_pin[2] == -1 &&
	     mp.isa_entries == 15 && mp.isa_conforming;
	for (unsigned int irq = 1; ok && irq < 16; irq++)
		ok = irq == 2 || mp.isa_pin[irq] == (int)irq;
	CHECKF(ok, "%u vCPUs: ISA IRQ0 -> pin 2, IRQ2 absent, others on "
		   "their own pin", ncpus);
	CHECKF(mp.pci_pin[3][0] == 16 && mp.pci_pin[4][0] == 17 &&
	       mp.pci_pin[31][1] == 23 && mp.pci_pin[0][0] == -1 &&
	       mp.pci_level_low,
	       "%u vCPUs: PCI INTx -> their GSI, level, active low; none "
	       "without a pin", ncpus);
	CHECKF(mp.lint_extint == 0 && mp.lint_nmi == 1 && mp.lint_all,
	       "%u vCPUs: ExtINT on LINT0, NMI on LINT1, every local APIC",
	       ncpus);
	fake_machine_free(m);
}

static void test_limits(void)
{
	struct machine *m = fake_machine_new(16 << 20), *tiny = fake_machine_new(512 << 10);
	int fd = dup(2);

	close(2);	/* the refusals print; keep the TAP clean */
	CHECK(x86_build_mptable(m, 255, NULL, 0) < 0,
	      "255 vCPUs do not fit xAPIC IDs and are refused");
	CHECK(x86_build_mptable(m, 0, NULL, 0) < 0, "0 vCPUs are refused");
	CHECK(x86_build_mptable(tiny, 1, NULL, 0) < 0,
	      "without RAM at the BIOS segment the table is refused");
	dup2(fd, 2);
	close(fd);
	CHECK(x86_build_mptable(m, 254, NULL, 0) == 0,
	      "254 vCPUs fit in the BIOS segment");
	CHECK(x86_write_mptable(m, 1) == 0,
	      "x86_write_mptable works without a PCI bus");
	fake_machine_free(m);
	fake_machine_free(tiny);
}

/* The same through the machine's real PCI bus (hw/pci.c). */
static void test_pci_bus(void)
{
	struct machine *m = fake_machine_new(16 << 20);
	const struct device_ops *const *devs;
	const struct device_ops *pci = NULL;
	struct pci_device d[3] = { { .irq_pin = 1 }, { .irq_pin = 0 },
				   { .irq_pin = 1 } };
	struct mp mp;
	unsigned int n;
	bool ok;

	devs = device_list(&n);
	for (unsigned int i = 0; i < n; i++)
		if (!strcmp(devs[i]->name, "pci"))
			pci = devs[i];
	m->next_gsi = 16;
	ok = pci && pci->init(m) == 0;
	for (unsigned int i = 0; ok && i < 3; i++)
		ok = pci_register(m, &d[i], 0x1af4, 0x1000 + i, 0xff0000,
				  0x1af4, 1) == 0;
	CHECK(ok, "three devices on the PCI bus, two with INTA");
	CHECK(x86_write_mptable(m, 2) == 0, "the MP table lists the bus");
	scan(m, &mp);
	CHECK(mp.table_sum_ok && mp.pci_pin[d[0].slot][0] == d[0].gsi &&
	      mp.pci_pin[d[2].slot][0] == d[2].gsi && d[0].gsi >= 16 &&
	      mp.pci_pin[d[1].slot][0] == -1 && mp.pci_pin[0][0] == -1,
	      "each device's INTA reaches the pin of its GSI; none for a "
	      "device without a pin or for the host bridge");
	if (pci && pci->exit)
		pci->exit(m);
	fake_machine_free(m);
}

int main(void)
{
	test_table(1);
	test_table(2);
	test_table(8);
	test_table(254);
	test_limits();
	test_pci_bus();
	return tap_done();
}
