// SPDX-License-Identifier: GPL-2.0
/*
 * ELF kernels: parsing of crafted files (good, truncated, damaged,
 * segments out of the file or out of RAM), the PVH entry and what a PVH
 * kernel finds in its start info, the 64-bit entry of a vmlinux, and the
 * bundled test kernel itself.
 */
#include <elf.h>
#include <libfdt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lkvm/arch.h"
#include "lkvm/machine.h"
#include "lkvm/x86.h"
#include "fake-machine.h"
#include "tap.h"

/* ---- a machine without KVM, and what it prints ------------------------- */

static char errbuf[4096];
static int saved_stderr = -1;
static FILE *cap;

static void capture(void)
{
	fflush(stderr);
	cap = tmpfile();
	saved_stderr = dup(2);
	dup2(fileno(cap), 2);
}

static const char *captured(void)
{
	size_t n;

	dup2(saved_stderr, 2);
	close(saved_stderr);
	rewind(cap);
	n = fread(errbuf, 1, sizeof(errbuf) - 1, cap);
	errbuf[n] = '\0';
	fclose(cap);
	return errbuf;
}

static int lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static uint64_t rd64_be(const uint8_t *p)
{
	fdt64_t v;

	memcpy(&v, p, 8);
	return fdt64_to_cpu(v);
}

/* ---- crafted ELF files -------------------------------------------------- */

struct seg {
	uint64_t paddr, vaddr;
	uint64_t filesz, memsz;
};

struct elf_spec {
	const struct seg *seg;
	unsigned int nseg;
	bool pvh;
	uint32_t pvh_entry;
	bool linux_note;
	uint64_t entry;
	uint16_t machine;
	uint16_t type;
	uint8_t class;
};

#define NOTE_XEN_SIZE (12 + 4 + 4)
#define NOTE_LINUX_SIZE (12 + 8 + 4)

/* ehdr, phdrs (segments, then one PT_NOTE), notes, segment bytes. Each
 * segment's bytes are its index + 1 repeated. */
static uint8_t *make_elf(const struct elf_spec *s, size_t *size)
{
	unsigned int nph = s->nseg + 1;
	size_t notes = sizeof(Elf64_Ehdr) + nph * sizeof(Elf64_Phdr);
	size_t data = notes + NOTE_XEN_SIZE + NOTE_LINUX_SIZE, off;
	Elf64_Ehdr eh = { 0 };
	Elf64_Phdr ph;
	uint8_t *f;
	size_t total = data;

	for (unsigned int i = 0; i < s->nseg; i++)
		total += s->seg[i].filesz;
	f = calloc(1, total);
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = s->class ? s->class : ELFCLASS64;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_ident[EI_VERSION] = EV_CURRENT;
	eh.e_type = s->type ? s->type : ET_EXEC;
	eh.e_machine = s->machine ? s->machine : EM_X86_64;
	eh.e_version = EV_CURRENT;
	eh.e_entry = s->entry;
	eh.e_phoff = sizeof(eh);
	eh.e_ehsize = sizeof(eh);
	eh.e_phentsize = sizeof(Elf64_Phdr);
	eh.e_phnum = nph;
	memcpy(f, &eh, sizeof(eh));

	off = data;
	for (unsigned int i = 0; i < s->nseg; i++) {
		ph = (Elf64_Phdr){ .p_type = PT_LOAD, .p_flags = PF_R | PF_X,
				   .p_offset = off, .p_vaddr = s->seg[i].vaddr,
				   .p_paddr = s->seg[i].paddr,
				   .p_filesz = s->seg[i].filesz,
				   .p_memsz = s->seg[i].memsz,
				   .p_align = 4096 };
		memcpy(f + sizeof(eh) + i * sizeof(ph), &ph, sizeof(ph));
		memset(f + off, i + 1, s->seg[i].filesz);
		off += s->seg[i].filesz;
	}

	off = notes;
	if (s->pvh) {
		uint32_t hdr[3] = { 4, 4, 18 };

		memcpy(f + off, hdr, 12);
		memcpy(f + off + 12, "Xen", 4);
		memcpy(f + off + 16, &s->pvh_entry, 4);
		off += NOTE_XEN_SIZE;
	}
	if (s->linux_note) {
		uint32_t hdr[3] = { 6, 4, 1 };

		memcpy(f + off, hdr, 12);
		memcpy(f + off + 12, "Linux", 6);
		off += NOTE_LINUX_SIZE;
	}
	ph = (Elf64_Phdr){ .p_type = PT_NOTE, .p_offset = notes,
			   .p_filesz = off - notes, .p_align = 4 };
	memcpy(f + sizeof(eh) + s->nseg * sizeof(ph), &ph, sizeof(ph));
	*size = total;
	return f;
}

static Elf64_Phdr *phdr(uint8_t *f, unsigned int i)
{
	return (Elf64_Phdr *)(f + sizeof(Elf64_Ehdr) + i * sizeof(Elf64_Phdr));
}

static const struct seg pvh_segs[] = {
	{ 0x100000, 0x100000, 0x3000, 0x3000 },		/* text */
	{ 0x104000, 0x104000, 0x1000, 0x5000 },		/* data + bss */
};

static const struct elf_spec pvh_spec = {
	.seg = pvh_segs, .nseg = 2, .pvh = true, .pvh_entry = 0x100010,
	.entry = 0x100200,
};

/* True when parsing refuses f with one line naming the file and want. */
static bool refused(const uint8_t *f, size_t size, uint64_t ram,
		    const char *want)
{
	struct x86_image k = { "kernel", "vmlinux", f, size };
	struct x86_elf *elf = malloc(sizeof(*elf));
	const char *msg;
	int err;

	capture();
	err = x86_elf_parse(&k, ram, elf);
	msg = captured();
	free(elf);
	if (err >= 0 || lines(msg) != 1 ||
	    !strstr(msg, "kernel 'vmlinux': ") || !strstr(msg, want)) {
		printf("# got %d: %s", err, msg);
		return false;
	}
	return true;
}

static void test_parse(void)
{
	struct x86_elf *elf = malloc(sizeof(*elf));
	struct elf_spec s = pvh_spec;
	struct x86_image k;
	uint8_t *f;
	size_t size;

	f = make_elf(&s, &size);
	k = (struct x86_image){ "kernel", "vmlinux", f, size };
	CHECK(x86_is_elf(f, size), "an ELF file is recognised");
	CHECK(x86_elf_parse(&k, 64 << 20, elf) == 0, "a good PVH ELF parses");
	CHECK(elf->has_pvh && elf->pvh_entry == 0x100010,
	      "the PVH note (Xen, type 18) gives the 32-bit entry");
	CHECK(!elf->is_linux, "no 'Linux' note: not Linux");
	CHECK(elf->nseg == 2 && elf->start == 0x100000 && elf->end == 0x109000,
	      "two loadable segments, 0x100000-0x109000");

	CHECK(refused(f, 40, 64 << 20, "truncated ELF header"),
	      "a file cut inside the ELF header is refused");
	CHECK(refused(f, sizeof(Elf64_Ehdr) + 20, 64 << 20,
		      "truncated ELF program header table"),
	      "a file cut inside the program headers is refused");
	CHECK(refused(f, size - 100, 64 << 20, "beyond the end of the file"),
	      "a file cut inside a segment is refused");
	free(f);

	s.class = ELFCLASS32;
	f = make_elf(&s, &size);
	CHECK(refused(f, size, 64 << 20, "32-bit ELF"),
	      "a 32-bit ELF is refused");
	free(f);
	s.class = 7;
	f = make_elf(&s, &size);
	CHECK(refused(f, size, 64 << 20, "class 7"), "a bad class is refused");
	free(f);
	s.class = 0;

	s.machine = EM_AARCH64;
	f = make_elf(&s, &size);
	CHECK(refused(f, size, 64 << 20, "not an x86-64 ELF (machine 183)"),
	      "another machine's ELF is refused");
	free(f);
	s.machine = 0;

	s.type = ET_DYN;
	f = make_elf(&s, &size);
	CHECK(refused(f, size, 64 << 20, "not an executable"),
	      "a shared object is refused");
	free(f);
	s.type = 0;

	f = make_elf(&s, &size);
	((Elf64_Ehdr *)f)->e_phoff = size - 10;
	CHECK(refused(f, size, 64 << 20, "truncated ELF program header table"),
	      "program headers outside the file are refused");
	((Elf64_Ehdr *)f)->e_phoff = ~0ull - 8;
	CHECK(refused(f, size, 64 << 20, "truncated ELF program header table"),
	      "a program header offset that overflows is refused");
	((Elf64_Ehdr *)f)->e_phoff = sizeof(Elf64_Ehdr);
	((Elf64_Ehdr *)f)->e_phentsize = 32;
	CHECK(refused(f, size, 64 << 20, "program header size 32"),
	      "a wrong program header size is refused");
	((Elf64_Ehdr *)f)->e_phentsize = sizeof(Elf64_Phdr);

	phdr(f, 0)->p_offset = size - 0x100;
	CHECK(refused(f, size, 64 << 20, "beyond the end of the file"),
	      "a segment reaching past the file is refused");
	phdr(f, 0)->p_offset = ~0ull - 0x10;
	CHECK(refused(f, size, 64 << 20, "beyond the end of the file"),
	      "a segment offset that overflows is refused");
	phdr(f, 0)->p_offset = phdr(f, 1)->p_offset - 0x3000;

	phdr(f, 1)->p_filesz = 0x6000;
	CHECK(refused(f, size, 64 << 20, "exceeds memory size"),
	      "p_filesz > p_memsz is refused");
	phdr(f, 1)->p_filesz = 0x1000;

	CHECK(refused(f, size, 0x108000, "outside guest RAM"),
	      "a segment beyond the end of RAM is refused");
	phdr(f, 1)->p_paddr = 0x40000000;
	CHECK(refused(f, size, 64 << 20, "outside guest RAM"),
	      "a segment at 1 GiB in a 64 MiB guest is refused");
	phdr(f, 1)->p_paddr = ~0ull - 0x1000;
	CHECK(refused(f, size, 64 << 20, "wraps around"),
	      "a segment that wraps around is refused");
	phdr(f, 1)->p_paddr = 0x102000;
	CHECK(refused(f, size, 64 << 20, "segments overlap"),
	      "overlapping segments are refused");
	phdr(f, 1)->p_paddr = 0x8000;
	CHECK(refused(f, size, 64 << 20, "first MiB"),
	      "a segment over the boot tables is refused");
	phdr(f, 1)->p_paddr = 0x104000;

	phdr(f, 2)->p_filesz = 14;
	CHECK(refused(f, size, 64 << 20, "truncated ELF note"),
	      "a truncated note is refused");
	phdr(f, 2)->p_filesz = NOTE_XEN_SIZE;
	phdr(f, 2)->p_offset = size + 10;
	CHECK(refused(f, size, 64 << 20, "note segment 2"),
	      "a note segment outside the file is refused");
	free(f);

	s.pvh_entry = 0x200000;
	f = make_elf(&s, &size);
	CHECK(refused(f, size, 64 << 20, "PVH entry 0x200000"),
	      "a PVH entry outside the segments is refused");
	free(f);

	s.pvh = false;
	s.entry = 0xffffffff81000200ull;
	f = make_elf(&s, &size);
	k = (struct x86_image){ "kernel", "vmlinux", f, size };
	CHECK(refused(f, size, 64 << 20, "entry point 0xffffffff81000200"),
	      "an entry point outside the segments is refused");
	phdr(f, 0)->p_vaddr = 0xffffffff81000000ull;
	CHECK(x86_elf_parse(&k, 64 << 20, elf) == 0 && !elf->has_pvh &&
	      elf->entry == 0x100200,
	      "a virtual e_entry is translated through its segment");
	free(f);

	s.nseg = 0;
	f = make_elf(&s, &size);
	CHECK(refused(f, size, 64 << 20, "no loadable segments"),
	      "an ELF without PT_LOAD is refused");
	free(f);
	free(elf);
}

static void test_pvh_boot(void)
{
	struct machine *m = fake_machine_new(64 << 20);
	struct elf_spec s = pvh_spec;
	struct x86_boot b = { 0 };
	struct x86_image k, rd;
	uint8_t *f, *si, *mod, *mm, *p;
	const char *cmd, *name;
	size_t size;
	int node, len;
	const void *fdt;
	bool ok;

	m->cfg.ncpus = 2;
	f = make_elf(&s, &size);
	k = (struct x86_image){ "kernel", "pvh", f, size };
	rd = (struct x86_image){ "initrd", "rd", "initrd-bytes", 12 };
	CHECK(x86_load_elf(m, &k, &rd, "tests=all console=none", &b) == 0,
	      "a PVH kernel with an initrd loads");
	CHECK(b.entry == X86_ENTRY_PROT32 && b.rip == 0x100010 &&
	      b.rbx == X86_START_INFO_ADDR,
	      "entry: 32-bit protected mode at the PVH entry, EBX = start info");
	p = guest_ptr(m, 0x100000, 0x9000);
	ok = p != NULL;
	for (size_t i = 0; ok && i < 0x9000; i++) {
		uint8_t want = i < 0x3000 ? 1 : i < 0x4000 ? 0 :
			       i < 0x5000 ? 2 : 0;
		ok = p[i] == want;
	}
	CHECK(ok, "segments are loaded at p_paddr, the bss zeroed");

	si = guest_ptr(m, X86_START_INFO_ADDR, 56);
	CHECK(si && rd32(si) == 0x336ec578 && rd32(si + 4) == 1 &&
	      rd32(si + 8) == 0, "start info: magic, version 1, no flags");
	CHECK(si && rd64(si + 32) == 0, "start info: no RSDP (no ACPI)");
	cmd = si ? guest_ptr(m, rd64(si + 24), 1) : NULL;
	CHECK(cmd && !strcmp(cmd, "tests=all console=none"),
	      "start info: the command line is -p as given");

	CHECK(si && rd32(si + 12) == 2, "start info: two modules");
	mod = si ? guest_ptr(m, rd64(si + 16), 64) : NULL;
	CHECK(mod && rd64(mod) == b.initrd_addr && rd64(mod + 8) == 12 &&
	      rd64(mod + 16) == 0,
	      "module 0 is the initrd, without a command line");
	p = mod ? guest_ptr(m, rd64(mod), 12) : NULL;
	CHECK(p && !memcmp(p, "initrd-bytes", 12) && b.initrd_addr % 4096 == 0,
	      "the initrd's bytes are at its page-aligned address");
	name = mod ? guest_ptr(m, rd64(mod + 48), 4) : NULL;
	CHECK(name && !strcmp(name, "dtb"),
	      "module 1 is named 'dtb' by its command line");
	fdt = mod ? guest_ptr(m, rd64(mod + 32), rd64(mod + 40)) : NULL;
	CHECK(fdt && fdt_check_header(fdt) == 0 &&
	      fdt_totalsize(fdt) == rd64(mod + 40),
	      "module 1 holds a valid device tree of its size");
	node = fdt ? fdt_path_offset(fdt, "/chosen") : -1;
	p = node >= 0 ? (uint8_t *)fdt_getprop(fdt, node, "bootargs", &len) :
			NULL;
	CHECK(p && !strcmp((char *)p, "tests=all console=none"),
	      "device tree: bootargs is the command line");
	CHECK(fdt && fdt_path_offset(fdt, "/cpus/cpu@1") >= 0 &&
	      fdt_path_offset(fdt, "/cpus/cpu@2") < 0,
	      "device tree: one cpu node per vCPU");
	node = fdt ? fdt_path_offset(fdt, "/memory@0") : -1;
	p = node >= 0 ? (uint8_t *)fdt_getprop(fdt, node, "reg", &len) : NULL;
	CHECK(p && len == 16 && rd64_be(p + 8) == 64 << 20,
	      "device tree: memory@0 covers all 64 MiB");

	CHECK(si && rd64(si + 40) == PVH_MEMMAP_ADDR && rd32(si + 48) == 5,
	      "start info: a memory map of 5 entries");
	mm = si ? guest_ptr(m, rd64(si + 40), 4 * 24) : NULL;
	CHECK(mm && rd64(mm) == 0 && rd64(mm + 8) == 0x9fc00 &&
	      rd32(mm + 16) == 1 && rd32(mm + 24 + 16) == 2 &&
	      rd64(mm + 48) == 0xf0000 && rd32(mm + 48 + 16) == 2 &&
	      rd64(mm + 72) == 0x100000 &&
	      rd64(mm + 80) == (64 << 20) - 0x100000 && rd32(mm + 72 + 16) == 1,
	      "memory map: RAM, EBDA and BIOS reserved, RAM from 1 MiB");
	free(f);
	fake_machine_free(m);
}

static void test_vmlinux_boot(void)
{
	struct machine *m = fake_machine_new(64 << 20);
	struct elf_spec s = pvh_spec;
	struct x86_boot b = { 0 };
	struct x86_image k;
	const char *cmd;
	uint8_t *f, *zp;
	size_t size;

	s.pvh = false;
	s.linux_note = true;
	f = make_elf(&s, &size);
	k = (struct x86_image){ "kernel", "vmlinux", f, size };
	CHECK(x86_load_elf(m, &k, NULL, "root=/dev/vda", &b) == 0,
	      "a vmlinux without a PVH note loads");
	CHECK(b.entry == X86_ENTRY_LONG64 && b.rip == 0x100200 &&
	      b.rsi == X86_ZERO_PAGE_ADDR,
	      "entry: 64-bit mode at e_entry, RSI = zero page");
	zp = guest_ptr(m, X86_ZERO_PAGE_ADDR, 4096);
	CHECK(zp && rd32(zp + SH_HEADER) == 0x53726448 &&
	      zp[SH_TYPE_OF_LOADER] == 0xff &&
	      (zp[SH_BOOT_FLAG] | zp[SH_BOOT_FLAG + 1] << 8) == 0xaa55,
	      "zero page: boot flag, 'HdrS', type_of_loader 0xff");
	cmd = zp ? guest_ptr(m, rd32(zp + SH_CMD_LINE_PTR), 1) : NULL;
	CHECK(cmd && !strcmp(cmd, "console=ttyS0 earlyprintk=serial reboot=k "
				  "panic=-1 root=/dev/vda"),
	      "a Linux vmlinux gets lkvm's defaults before -p");
	CHECK(zp && zp[BP_E820_ENTRIES] == 5 && rd32(zp + SH_RAMDISK_SIZE) == 0,
	      "zero page: e820 map, no initrd");
	CHECK(zp && rd64(zp + SH_SETUP_DATA) == X86_FDT_ADDR,
	      "zero page: the device tree in setup_data");

	{
		char params[2100];

		memset(params, 'y', sizeof(params) - 1);
		params[sizeof(params) - 1] = '\0';
		capture();
		CHECK(x86_load_elf(m, &k, NULL, params, &b) < 0 &&
		      strstr(captured(), "command line too long"),
		      "Linux's 2048-byte command line limit holds for vmlinux");
	}
	free(f);
	fake_machine_free(m);
}

static void test_bundled(void)
{
	struct machine *m = fake_machine_new(32 << 20);
	const struct x86_boot *b;
	struct x86_elf *elf = malloc(sizeof(*elf));
	struct x86_image k = { "kernel", "bundled", lkvm_test_kernel,
			       lkvm_test_kernel_end - lkvm_test_kernel };

	CHECK(x86_elf_parse(&k, 32 << 20, elf) == 0 && elf->has_pvh,
	      "the bundled test kernel is a PVH ELF");
	m->cfg.params = "tests=all";
	CHECK(arch_load(m) == 0 && (b = m->boot) != NULL &&
	      b->entry == X86_ENTRY_PROT32 && b->rip == elf->pvh_entry,
	      "arch_load boots it through the PVH entry without -k");
	free(elf);
	fake_machine_free(m);
}

int main(void)
{
	test_parse();
	test_pvh_boot();
	test_vmlinux_boot();
	test_bundled();
	return tap_done();
}
