// SPDX-License-Identifier: GPL-2.0
/*
 * The boot information every kernel reads: the RAM layout around the PCI
 * hole, the e820 map, the command line defaults, the Linux zero page, the
 * PVH start info, the BIOS data area and the device tree.
 */
#include <libfdt.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lkvm/arch.h"
#include "lkvm/fdt.h"
#include "lkvm/machine.h"
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

static uint64_t rd64(const uint8_t *p)
{
	return rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

/* Device tree cells are big-endian and only 4-byte aligned. */
static uint64_t cell64(const void *p, unsigned int i)
{
	fdt64_t v;

	memcpy(&v, (const char *)p + 8 * i, 8);
	return fdt64_to_cpu(v);
}

static uint32_t cell32(const void *p)
{
	fdt32_t v;

	memcpy(&v, p, 4);
	return fdt32_to_cpu(v);
}

static bool e820_is(const struct x86_e820 *e, uint64_t addr, uint64_t size,
		    uint32_t type)
{
	return e->addr == addr && e->size == size && e->type == type;
}

static void test_layout(void)
{
	struct ram_range r[4];

	CHECK(arch_memory_layout(128 << 20, r, 4) == 1 && r[0].gpa == 0 &&
	      r[0].size == 128 << 20, "128 MiB: one range from 0");
	CHECK(arch_memory_layout(3ull << 30, r, 4) == 1 &&
	      r[0].size == 3ull << 30, "3 GiB: fits below the PCI hole");
	CHECK(arch_memory_layout(5ull << 30, r, 4) == 2 &&
	      r[0].gpa == 0 && r[0].size == 3ull << 30 &&
	      r[1].gpa == 4ull << 30 && r[1].size == 2ull << 30,
	      "5 GiB: 3 GiB below the hole, 2 GiB from 4 GiB");
	CHECK(arch_memory_layout(5ull << 30, r, 1) == 1,
	      "the layout never writes more ranges than asked");
}

static void test_e820(void)
{
	struct machine *m = fake_machine_new(5ull << 30);
	struct x86_e820 e[X86_E820_MAX];
	unsigned int n = x86_build_e820(m, e, X86_E820_MAX);
	struct x86_e820 fw[X86_E820_MAX];
	unsigned int nfw;
	uint64_t ram = 0;
	bool hole_free = true;

	CHECK(n == 6, "5 GiB: six e820 entries");
	CHECK(e820_is(&e[0], 0, 0x9fc00, E820_RAM),
	      "e820: 0-0x9fbff RAM (conventional memory)");
	CHECK(e820_is(&e[1], 0x9fc00, 0x400, E820_RESERVED),
	      "e820: the 1 KiB EBDA is reserved");
	CHECK(e820_is(&e[2], 0xf0000, 0x10000, E820_RESERVED),
	      "e820: the BIOS segment (MP table) is reserved");
	CHECK(e820_is(&e[3], 0x100000, (3ull << 30) - 0x100000, E820_RAM),
	      "e820: RAM from 1 MiB up to the PCI hole at 3 GiB");
	CHECK(e820_is(&e[4], 0xfffbc000, 0x4000, E820_RESERVED),
	      "e820: KVM's identity-map and TSS pages are reserved");
	CHECK(e820_is(&e[5], 4ull << 30, 2ull << 30, E820_RAM),
	      "e820: the rest of RAM from 4 GiB");
	for (unsigned int i = 0; i < n; i++) {
		if (e[i].type != E820_RAM)
			continue;
		ram += e[i].size;
		if (e[i].addr < 4ull << 30 &&
		    e[i].addr + e[i].size > 3ull << 30)
			hole_free = false;
	}
	CHECK(hole_free, "e820: no RAM in the PCI hole 3-4 GiB");
	CHECK(ram == (5ull << 30) - 0x400 - 0x60000,
	      "e820: all RAM is listed but the EBDA and 0xa0000-0xfffff");
	CHECK(x86_build_e820(m, e, 2) == 2, "e820: never more than asked");
	m->cfg.firmware = "bios.bin";
	nfw = x86_build_e820(m, fw, X86_E820_MAX);
	CHECK(nfw == 6 && e820_is(&fw[4], 0xfeffc000, 0x4000, E820_RESERVED),
	      "e820: with --firmware the TSS pages move below a 16 MiB ROM");
	fake_machine_free(m);
}

static void test_cmdline(void)
{
	char *s;

	s = x86_kernel_cmdline("tests=all", false, false);
	CHECK(!strcmp(s, "tests=all"), "non-Linux kernels get -p unchanged");
	free(s);
	s = x86_kernel_cmdline(NULL, false, false);
	CHECK(!strcmp(s, ""), "no -p: an empty command line");
	free(s);
	s = x86_kernel_cmdline(NULL, true, false);
	CHECK(!strcmp(s, "console=ttyS0 earlyprintk=serial reboot=k panic=-1"),
	      "Linux without -p gets the defaults");
	free(s);
	s = x86_kernel_cmdline(NULL, true, true);
	CHECK(!strcmp(s, "console=hvc0 earlyprintk=serial reboot=k panic=-1"),
	      "with the virtio console, Linux's console is hvc0");
	free(s);
	s = x86_kernel_cmdline("earlyprintk=vga,keep  panic=0 ro", true, false);
	CHECK(!strcmp(s, "console=ttyS0 reboot=k earlyprintk=vga,keep  panic=0 "
			 "ro"),
	      "defaults that -p sets itself are left out");
	free(s);
	s = x86_kernel_cmdline("consoleblank=0 xreboot=k", true, false);
	CHECK(!strcmp(s, "console=ttyS0 earlyprintk=serial reboot=k panic=-1 "
			 "consoleblank=0 xreboot=k"),
	      "only whole parameter names count");
	free(s);
}

static void test_zero_page(void)
{
	struct machine *m = fake_machine_new(5ull << 30);
	struct x86_boot b = {
		.kernel_start = 0x1000000,
		.cmdline_addr = X86_CMDLINE_ADDR,
		.initrd_addr = 0x7000000,
		.initrd_size = 0x123456,
		.fdt_addr = X86_FDT_ADDR + X86_SETUP_DATA_HDR,
		.fdt_size = 0x200,
	};
	uint8_t setup[0x300] = { 0 };
	uint8_t *zp, *e, *sd;

	memset(setup + BP_HDR, 0x77, sizeof(setup) - BP_HDR);
	zp = guest_ptr(m, X86_ZERO_PAGE_ADDR, 4096);
	memset(zp, 0xcc, 4096);
	CHECK(x86_write_zero_page(m, setup, sizeof(setup), &b) == 0,
	      "the zero page is written");
	CHECK(zp[0] == 0 && zp[BP_HDR - 1] == 0 && zp[0x300] == 0 &&
	      zp[4095] == 0, "what lkvm does not fill is zero");
	CHECK(zp[SH_SETUP_SECTS] == 0x77 && zp[SH_VID_MODE] == 0x77,
	      "the kernel's setup header bytes are kept");
	CHECK(zp[SH_TYPE_OF_LOADER] == 0xff && (zp[SH_LOADFLAGS] & LOADED_HIGH),
	      "type_of_loader and LOADED_HIGH");
	CHECK(rd32(zp + SH_CMD_LINE_PTR) == X86_CMDLINE_ADDR &&
	      rd32(zp + SH_RAMDISK_IMAGE) == 0x7000000 &&
	      rd32(zp + SH_RAMDISK_SIZE) == 0x123456 &&
	      rd32(zp + SH_CODE32_START) == 0x1000000,
	      "command line, initrd and code32_start");
	sd = guest_ptr(m, X86_SETUP_DATA_ADDR, 16);
	CHECK(rd64(zp + SH_SETUP_DATA) == X86_SETUP_DATA_ADDR && rd64(sd) == 0 &&
	      rd32(sd + 8) == SETUP_RNG_SEED &&
	      rd32(sd + 12) == X86_RNG_SEED_LEN,
	      "setup_data: an RNG seed, end of chain (no device tree for Linux)");
	CHECK(zp[BP_E820_ENTRIES] == 6, "e820_entries");
	e = zp + BP_E820_TABLE + 5 * 20;
	CHECK(rd64(e) == 4ull << 30 && rd64(e + 8) == 2ull << 30 &&
	      rd32(e + 16) == E820_RAM, "e820_table: 20-byte packed entries");

	b.fdt_size = 0;
	CHECK(x86_write_zero_page(m, NULL, 0, &b) == 0 &&
	      rd16(zp + SH_BOOT_FLAG) == 0xaa55 &&
	      rd32(zp + SH_HEADER) == 0x53726448 &&
	      rd32(zp + SH_KERNEL_ALIGNMENT) == 0x1000000 &&
	      rd64(zp + SH_SETUP_DATA) == X86_SETUP_DATA_ADDR &&
	      zp[SH_SETUP_SECTS] == 0,
	      "a vmlinux zero page: boot flag, 'HdrS', alignment, the "
	      "RNG seed");
	fake_machine_free(m);
}

static void test_pvh_start_info(void)
{
	struct machine *m = fake_machine_new(5ull << 30);
	struct x86_boot b = {
		.cmdline_addr = X86_CMDLINE_ADDR,
		.fdt_addr = X86_FDT_ADDR,
		.fdt_size = 0x400,
	};
	uint8_t *si, *mod, *mm;

	CHECK(x86_write_pvh_start_info(m, &b) == 0, "the start info is written");
	si = guest_ptr(m, X86_START_INFO_ADDR, 56);
	CHECK(rd32(si) == PVH_MAGIC && rd32(si + 4) == 1,
	      "hvm_start_info: magic 0x336ec578, version 1");
	CHECK(rd32(si + 12) == 2 && rd64(si + 16) == PVH_MODLIST_ADDR,
	      "two modules at modlist_paddr");
	CHECK(rd64(si + 24) == X86_CMDLINE_ADDR && rd64(si + 32) == 0,
	      "cmdline_paddr, and rsdp_paddr 0");
	mod = guest_ptr(m, PVH_MODLIST_ADDR, 64);
	CHECK(rd64(mod) == 0 && rd64(mod + 8) == 0 && rd64(mod + 16) == 0,
	      "without -i, module 0 (the initrd slot) is empty");
	CHECK(rd64(mod + 32) == X86_FDT_ADDR && rd64(mod + 40) == 0x400 &&
	      !strcmp(guest_ptr(m, rd64(mod + 48), 4), "dtb"),
	      "module 1: the device tree, named 'dtb'");
	CHECK(rd64(si + 40) == PVH_MEMMAP_ADDR && rd32(si + 48) == 6,
	      "memmap_paddr and 6 entries for 5 GiB");
	mm = guest_ptr(m, PVH_MEMMAP_ADDR, 6 * 24);
	CHECK(rd64(mm + 5 * 24) == 4ull << 30 &&
	      rd64(mm + 5 * 24 + 8) == 2ull << 30 &&
	      rd32(mm + 5 * 24 + 16) == E820_RAM &&
	      rd32(mm + 1 * 24 + 16) == E820_RESERVED &&
	      rd32(mm + 1 * 24 + 20) == 0,
	      "memmap: 24-byte entries with e820 types, reserved 0");
	fake_machine_free(m);
}

static void test_boot_common(void)
{
	struct machine *m = fake_machine_new(64 << 20), *tiny = fake_machine_new(512 << 10);
	struct x86_image k = { "kernel", "k", NULL, 0 };
	struct x86_boot b = { 0 };
	uint8_t *bda;
	int fd;

	CHECK(x86_write_boot_common(m, &k, "hello", 100, &b) == 0 &&
	      b.cmdline_addr == X86_CMDLINE_ADDR && b.cmdline_len == 5 &&
	      !strcmp(guest_ptr(m, X86_CMDLINE_ADDR, 6), "hello"),
	      "the command line is copied with its NUL");
	bda = guest_ptr(m, 0x400, 0x100);
	CHECK(rd16(bda + 0x0e) == 0x9fc0 && rd16(bda + 0x13) == 639,
	      "BIOS data area: EBDA segment 0x9fc0, 639 KiB base memory");
	fd = dup(2);
	close(2);	/* the refusals below print; keep the TAP clean */
	CHECK(x86_write_boot_common(m, &k, "hello", 4, &b) < 0,
	      "a command line over the limit is refused");
	CHECK(x86_write_boot_common(tiny, &k, NULL, 0, &b) < 0,
	      "a guest without the first MiB is refused");
	dup2(fd, 2);
	close(fd);
	fake_machine_free(m);
	fake_machine_free(tiny);
}

static void test_fdt(void)
{
	struct machine *m = fake_machine_new(5ull << 30);
	char path[] = "/tmp/lkvm-test-dtb-XXXXXX";
	const void *fdt;
	const void *reg;
	const char *s;
	int node, len, fd;
	uint8_t buf[64 * 1024];
	ssize_t n;

	m->cfg.ncpus = 3;
	fd = mkstemp(path);
	m->cfg.dump_dtb = path;
	CHECK(machine_build_fdt_bootargs(m, "a b c") == 0 && m->fdt,
	      "the device tree is built");
	fdt = m->fdt;
	CHECK(fdt_check_header(fdt) == 0, "it is a valid blob");
	CHECK(fdt_getprop(fdt, 0, "#address-cells", &len) && len == 4 &&
	      cell32(fdt_getprop(fdt, 0, "#address-cells", NULL)) == 2,
	      "root: #address-cells = 2");
	s = fdt_getprop(fdt, 0, "model", NULL);
	CHECK(s && !strcmp(s, "lkvm"), "root: model 'lkvm'");
	node = fdt_path_offset(fdt, "/memory@100000000");
	reg = node >= 0 ? fdt_getprop(fdt, node, "reg", &len) : NULL;
	CHECK(reg && len == 16 && cell64(reg, 0) == 4ull << 30 &&
	      cell64(reg, 1) == 2ull << 30,
	      "memory@100000000: the 2 GiB above the hole");
	node = fdt_path_offset(fdt, "/memory@0");
	s = node >= 0 ? fdt_getprop(fdt, node, "device_type", NULL) : NULL;
	CHECK(s && !strcmp(s, "memory"), "memory@0: device_type memory");
	node = fdt_path_offset(fdt, "/cpus/cpu@2");
	s = node >= 0 ? fdt_getprop(fdt, node, "device_type", NULL) : NULL;
	CHECK(s && !strcmp(s, "cpu") &&
	      cell32(fdt_getprop(fdt, node, "reg", NULL)) == 2,
	      "cpu@2: device_type cpu, reg = APIC ID 2");
	CHECK(fdt_path_offset(fdt, "/cpus/cpu@3") < 0, "three cpus, no more");
	node = fdt_path_offset(fdt, "/chosen");
	s = node >= 0 ? fdt_getprop(fdt, node, "bootargs", NULL) : NULL;
	CHECK(s && !strcmp(s, "a b c"), "/chosen/bootargs");

	n = read(fd, buf, sizeof(buf));
	CHECK(n == (ssize_t)fdt_totalsize(fdt) && !memcmp(buf, fdt, n),
	      "--dump-dtb writes the blob the guest gets");
	close(fd);
	unlink(path);
	fake_machine_free(m);
}

/* ---- CPUID topology ----------------------------------------------------- */

static struct kvm_cpuid2 *fake_supported(bool amd)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + 16 * sizeof(c->entries[0]));
	struct kvm_cpuid_entry2 *e = c->entries;
	unsigned int n = 0;

	e[n++] = (struct kvm_cpuid_entry2){ .function = 0, .eax = 0xd,
		.ebx = amd ? 0x68747541 : 0x756e6547 };
	/* The host's: APIC ID 5 in a package of 16, HTT, hypervisor. */
	e[n++] = (struct kvm_cpuid_entry2){ .function = 1, .eax = 0xa00f11,
		.ebx = 0x05100800, .ecx = 0x80200000, .edx = 0x178bfbff };
	/* L1 data cache and L3, shared by 2 and 16 threads on the host. */
	e[n++] = (struct kvm_cpuid_entry2){ .function = 4, .index = 0,
		.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
		.eax = 0x1c004121 | 7u << 26 };
	e[n++] = (struct kvm_cpuid_entry2){ .function = 4, .index = 3,
		.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
		.eax = 0x0003c163 | 7u << 26 };
	e[n++] = (struct kvm_cpuid_entry2){ .function = 0xb, .index = 0,
		.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX, .edx = 5 };
	e[n++] = (struct kvm_cpuid_entry2){ .function = 0x40000000,
		.eax = 0x40000001, .ebx = 0x4b4d564b, .ecx = 0x564b4d56,
		.edx = 0x4d };
	e[n++] = (struct kvm_cpuid_entry2){ .function = 0x80000008,
		.eax = 0x3030, .ecx = 0x700f };
	e[n++] = (struct kvm_cpuid_entry2){ .function = 0x8000001e,
		.eax = 5, .ebx = 0x102 };
	c->nent = n;
	return c;
}

static const struct kvm_cpuid_entry2 *leaf(const struct kvm_cpuid2 *c,
					   uint32_t fn, uint32_t index)
{
	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function == fn &&
		    c->entries[i].index == index)
			return &c->entries[i];
	return NULL;
}

static void test_cpuid(void)
{
	struct kvm_cpuid2 *sup = fake_supported(false), *c;
	const struct kvm_cpuid_entry2 *e, *e1;

	c = x86_vcpu_cpuid(sup, 2, 3);
	e = leaf(c, 1, 0);
	CHECK(e && e->ebx >> 24 == 2 && (e->ebx >> 16 & 0xff) == 4 &&
	      (e->ebx & 0xffff) == 0x0800 && (e->edx & (1u << 28)),
	      "leaf 1: APIC ID 2, 4 IDs in the package, HTT, CLFLUSH kept");
	CHECK(e && e->ecx == 0x80200000 && e->eax == 0xa00f11,
	      "leaf 1: features, hypervisor bit and signature as KVM gives");
	e = leaf(c, 0xb, 0);
	e1 = leaf(c, 0xb, 1);
	CHECK(e && e->edx == 2 && e->ebx == 1 && e->ecx == 0x100 &&
	      e->eax == 0, "leaf 0xb.0: SMT level, 1 thread, x2APIC ID 2");
	CHECK(e1 && e1->edx == 2 && e1->ebx == 3 && e1->ecx == 0x201 &&
	      e1->eax == 2, "leaf 0xb.1: core level, 3 CPUs, 2 ID bits");
	e = leaf(c, 0xb, 2);
	CHECK(e && e->ecx == 2 && e->ebx == 0, "leaf 0xb.2 ends the levels");
	e = leaf(c, 4, 0);
	e1 = leaf(c, 4, 3);
	CHECK(e && (e->eax >> 26) == 3 && (e->eax >> 14 & 0xfff) == 0 &&
	      e1 && (e1->eax >> 14 & 0xfff) == 3,
	      "leaf 4: 4 core IDs; L1 per core, L3 shared by the package");
	e = leaf(c, 0x40000000, 0);
	CHECK(e && e->ebx == 0x4b4d564b, "the KVM signature leaf is kept");
	e = leaf(c, 0x8000001e, 0);
	CHECK(e && e->eax == 5, "Intel: AMD topology leaves left alone");
	free(c);

	c = x86_vcpu_cpuid(sup, 0, 1);
	e = leaf(c, 1, 0);
	CHECK(e && e->ebx >> 24 == 0 && (e->ebx >> 16 & 0xff) == 1 &&
	      !(e->edx & (1u << 28)), "one vCPU: APIC ID 0, no HTT");
	free(c);
	free(sup);

	sup = fake_supported(true);
	c = x86_vcpu_cpuid(sup, 3, 4);
	e = leaf(c, 0x80000008, 0);
	CHECK(e && (e->ecx & 0xff) == 3 && (e->ecx >> 12 & 0xf) == 2,
	      "AMD leaf 0x80000008: 4 cores, 2 APIC ID bits");
	e = leaf(c, 0x8000001e, 0);
	CHECK(e && e->eax == 3 && e->ebx == 3,
	      "AMD leaf 0x8000001e: extended APIC ID and core ID 3");
	free(c);
	free(sup);
}

int main(void)
{
	test_layout();
	test_e820();
	test_cmdline();
	test_zero_page();
	test_pvh_start_info();
	test_boot_common();
	test_fdt();
	test_cpuid();
	return tap_done();
}
