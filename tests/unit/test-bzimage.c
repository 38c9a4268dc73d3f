// SPDX-License-Identifier: GPL-2.0
/*
 * bzImage loading: setup-header validation with crafted images, and what
 * a Linux kernel finds when lkvm hands over to its 64-bit entry (zero
 * page, command line, initrd, setup_data, page tables, registers).
 */
#include <errno.h>
#include <fcntl.h>
#include <libfdt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
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

static void wr16(uint8_t *p, uint16_t v)
{
	p[0] = v;
	p[1] = v >> 8;
}

static void wr32(uint8_t *p, uint32_t v)
{
	wr16(p, v);
	wr16(p + 2, v >> 16);
}

static void wr64(uint8_t *p, uint64_t v)
{
	wr32(p, v);
	wr32(p + 4, v >> 32);
}

/* ---- crafted bzImages --------------------------------------------------- */

#define SETUP_SECTS 4
#define SETUP_LEN ((SETUP_SECTS + 1) * 512)
#define PAYLOAD_LEN (64 * 1024)
#define PREF_ADDR 0x1000000ull
#define INIT_SIZE (4 * 1024 * 1024)

/* A protocol 2.15 bzImage as a 64-bit relocatable kernel has it. */
static uint8_t *make_bzimage(size_t *size)
{
	uint8_t *k = calloc(1, SETUP_LEN + PAYLOAD_LEN);

	k[SH_SETUP_SECTS] = SETUP_SECTS;
	wr32(k + SH_SYSSIZE, PAYLOAD_LEN / 16);
	wr16(k + SH_BOOT_FLAG, 0xaa55);
	k[SH_JUMP] = 0xeb;
	k[SH_JUMP + 1] = SH_END_MIN - (SH_JUMP + 2);
	wr32(k + SH_HEADER, 0x53726448);
	wr16(k + SH_VERSION, 0x020f);
	k[SH_LOADFLAGS] = LOADED_HIGH;
	wr32(k + SH_INITRD_ADDR_MAX, 0x7fffffff);
	wr32(k + SH_KERNEL_ALIGNMENT, 0x200000);
	k[SH_RELOCATABLE] = 1;
	wr16(k + SH_XLOADFLAGS, XLF_KERNEL_64);
	wr32(k + SH_CMDLINE_SIZE, 2047);
	wr64(k + SH_PREF_ADDRESS, PREF_ADDR);
	wr32(k + SH_INIT_SIZE, INIT_SIZE);
	for (size_t i = 0; i < PAYLOAD_LEN; i++)
		k[SETUP_LEN + i] = (uint8_t)(i * 7 + 1);
	*size = SETUP_LEN + PAYLOAD_LEN;
	return k;
}

static struct x86_image img(const char *what, const char *path,
			    const void *data, size_t size)
{
	return (struct x86_image){ what, path, data, size };
}

/* Parses a damaged image; true when it is refused with one line that
 * names the file and contains want. */
static bool refused(const uint8_t *k, size_t size, const char *want)
{
	struct x86_image i = img("kernel", "bz", k, size);
	struct x86_bzimage bz;
	const char *msg;
	int err;

	capture();
	err = x86_bzimage_parse(&i, &bz);
	msg = captured();
	if (err >= 0 || lines(msg) != 1 || !strstr(msg, "kernel 'bz': ") ||
	    !strstr(msg, want)) {
		printf("# got %d: %s", err, msg);
		return false;
	}
	return true;
}

static void test_header_checks(void)
{
	struct x86_image i;
	struct x86_bzimage bz;
	size_t size;
	uint8_t *k = make_bzimage(&size);

	i = img("kernel", "bz", k, size);
	CHECK(x86_is_bzimage(k, size), "a bzImage is recognised by 'HdrS'");
	CHECK(x86_bzimage_parse(&i, &bz) == 0, "a good setup header passes");
	CHECK(bz.setup_len == SETUP_LEN && bz.payload_len == PAYLOAD_LEN,
	      "setup code and kernel are split at (setup_sects + 1) * 512");
	CHECK(bz.load_addr == PREF_ADDR, "the kernel goes to pref_address");
	CHECK(bz.init_size == INIT_SIZE && bz.cmdline_size == 2047 &&
	      bz.initrd_addr_max == 0x7fffffff,
	      "init_size, cmdline_size and initrd_addr_max are read");

	wr16(k + SH_BOOT_FLAG, 0x55aa);
	CHECK(refused(k, size, "boot flag"), "a bad boot flag is refused");
	wr16(k + SH_BOOT_FLAG, 0xaa55);

	k[SH_HEADER] = 'X';
	CHECK(!x86_is_bzimage(k, size), "no 'HdrS', no bzImage");
	CHECK(refused(k, size, "HdrS"), "a damaged 'HdrS' is refused");
	k[SH_HEADER] = 'H';

	wr16(k + SH_VERSION, 0x0204);
	CHECK(refused(k, size, "2.04 is too old"),
	      "boot protocol 2.04 is refused as too old");
	wr16(k + SH_VERSION, 0x020b);
	CHECK(refused(k, size, "64-bit"),
	      "boot protocol 2.11 (no 64-bit entry) is refused");
	wr16(k + SH_VERSION, 0x020f);

	wr16(k + SH_XLOADFLAGS, 0);
	CHECK(refused(k, size, "not a 64-bit kernel"),
	      "a kernel without XLF_KERNEL_64 is refused");
	wr16(k + SH_XLOADFLAGS, XLF_KERNEL_64);

	CHECK(refused(k, SETUP_LEN + PAYLOAD_LEN / 2, "truncated"),
	      "a file cut short of syssize is refused as truncated");
	CHECK(refused(k, 0x300, "truncated"),
	      "a file cut inside the setup code is refused as truncated");
	CHECK(refused(k, 0x240, "truncated setup header"),
	      "a file cut inside the setup header is refused");

	wr32(k + SH_SYSSIZE, (PAYLOAD_LEN + 4096) / 16);
	CHECK(refused(k, size, "truncated"),
	      "syssize beyond the end of the file is refused");
	wr32(k + SH_SYSSIZE, 0);
	CHECK(refused(k, size, "syssize is 0"), "syssize 0 is refused");
	wr32(k + SH_SYSSIZE, PAYLOAD_LEN / 16);

	k[SH_SETUP_SECTS] = 200;
	CHECK(refused(k, size, "setup sectors"),
	      "setup_sects beyond the file is refused");
	k[SH_SETUP_SECTS] = SETUP_SECTS;

	wr32(k + SH_INIT_SIZE, 0);
	CHECK(refused(k, size, "init_size"), "init_size 0 is refused");
	wr32(k + SH_INIT_SIZE, INIT_SIZE);

	wr32(k + SH_KERNEL_ALIGNMENT, 0x300000);
	CHECK(refused(k, size, "kernel_alignment"),
	      "a kernel_alignment that is not a power of two is refused");
	wr32(k + SH_KERNEL_ALIGNMENT, 0x200000);

	k[SH_RELOCATABLE] = 0;
	wr64(k + SH_PREF_ADDRESS, 0x8000);
	CHECK(refused(k, size, "not relocatable"),
	      "a fixed kernel that wants the first MiB is refused");
	free(k);
}

static void test_load(void)
{
	struct machine *m = fake_machine_new(64 << 20);
	struct x86_boot b = { 0 };
	struct x86_image k, rd;
	uint8_t *kd, *rdd, *zp, *sd, *p;
	size_t size, rd_size = 100000;
	const char *cmd;
	const void *fdt;
	int node, len;

	kd = make_bzimage(&size);
	rdd = malloc(rd_size);
	for (size_t i = 0; i < rd_size; i++)
		rdd[i] = (uint8_t)(i ^ 0x5a);
	k = img("kernel", "bz", kd, size);
	rd = img("initrd", "rd", rdd, rd_size);

	CHECK(x86_load_bzimage(m, &k, &rd, "root=/dev/vda", &b) == 0,
	      "a good bzImage with an initrd loads");
	CHECK(b.entry == X86_ENTRY_LONG64 && b.rip == PREF_ADDR + 0x200 &&
	      b.rsi == X86_ZERO_PAGE_ADDR,
	      "entry: 64-bit mode at load address + 0x200, RSI = zero page");
	p = guest_ptr(m, PREF_ADDR, PAYLOAD_LEN);
	CHECK(p && !memcmp(p, kd + SETUP_LEN, PAYLOAD_LEN),
	      "the protected-mode kernel is at pref_address");

	zp = guest_ptr(m, X86_ZERO_PAGE_ADDR, 4096);
	CHECK(rd16(zp + SH_BOOT_FLAG) == 0xaa55 &&
	      rd32(zp + SH_HEADER) == 0x53726448 &&
	      rd16(zp + SH_VERSION) == 0x020f,
	      "zero page: the kernel's setup header is copied in");
	CHECK(zp[SH_TYPE_OF_LOADER] == 0xff, "zero page: type_of_loader 0xff");
	CHECK(zp[SH_LOADFLAGS] & LOADED_HIGH, "zero page: LOADED_HIGH");
	CHECK(rd32(zp + SH_CODE32_START) == PREF_ADDR,
	      "zero page: code32_start is the load address");

	CHECK(rd32(zp + SH_CMD_LINE_PTR) == X86_CMDLINE_ADDR &&
	      rd32(zp + BP_EXT_CMD_LINE_PTR) == 0,
	      "zero page: cmd_line_ptr");
	cmd = guest_ptr(m, X86_CMDLINE_ADDR, 1);
	CHECK(cmd && !strcmp(cmd, "console=ttyS0 earlyprintk=serial reboot=k "
				  "panic=-1 root=/dev/vda"),
	      "command line: lkvm's Linux defaults, then -p");

	CHECK(rd32(zp + SH_RAMDISK_SIZE) == rd_size &&
	      rd32(zp + BP_EXT_RAMDISK_SIZE) == 0,
	      "zero page: ramdisk_size");
	CHECK(b.initrd_addr == rd32(zp + SH_RAMDISK_IMAGE) &&
	      rd32(zp + BP_EXT_RAMDISK_IMAGE) == 0,
	      "zero page: ramdisk_image");
	CHECK(b.initrd_addr % 4096 == 0 &&
	      b.initrd_addr >= PREF_ADDR + INIT_SIZE &&
	      b.initrd_addr + rd_size <= (64 << 20),
	      "initrd: page aligned, above the kernel's init_size, in RAM");
	CHECK(b.initrd_addr + rd_size > (64 << 20) - 4096,
	      "initrd: as high as it goes");
	p = guest_ptr(m, b.initrd_addr, rd_size);
	CHECK(p && !memcmp(p, rdd, rd_size), "initrd: its bytes are there");

	CHECK(rd64(zp + SH_SETUP_DATA) == X86_SETUP_DATA_ADDR,
	      "zero page: setup_data points at the chain");
	sd = guest_ptr(m, X86_SETUP_DATA_ADDR, 16 + X86_RNG_SEED_LEN);
	CHECK(sd && rd64(sd) == 0 && rd32(sd + 8) == SETUP_RNG_SEED &&
	      rd32(sd + 12) == X86_RNG_SEED_LEN,
	      "setup_data: one SETUP_RNG_SEED entry, the end of the chain");
	{
		static const uint8_t zero[X86_RNG_SEED_LEN];

		CHECK(sd && memcmp(sd + 16, zero, sizeof(zero)),
		      "setup_data: the seed is random bytes, not zeros");
	}
	fdt = m->fdt;
	CHECK(fdt && fdt_check_header(fdt) == 0,
	      "device tree: built for --dump-dtb, not handed to Linux");
	node = fdt ? fdt_path_offset(fdt, "/chosen") : -1;
	p = node >= 0 ? (uint8_t *)fdt_getprop(fdt, node, "bootargs", &len) :
			NULL;
	CHECK(p && cmd && !strcmp((char *)p, cmd),
	      "device tree: bootargs is the final command line");

	CHECK(zp[BP_E820_ENTRIES] == 5, "zero page: 5 e820 entries");
	p = zp + BP_E820_TABLE;
	CHECK(rd64(p) == 0 && rd64(p + 8) == 0x9fc00 && rd32(p + 16) == 1,
	      "e820: conventional memory below the EBDA is RAM");
	CHECK(rd64(p + 20) == 0x9fc00 && rd32(p + 36) == 2,
	      "e820: the EBDA is reserved");
	CHECK(rd64(p + 40) == 0xf0000 && rd64(p + 48) == 0x10000 &&
	      rd32(p + 56) == 2, "e820: the BIOS segment is reserved");
	CHECK(rd64(p + 60) == 0x100000 && rd64(p + 68) == (64 << 20) - 0x100000 &&
	      rd32(p + 76) == 1, "e820: RAM from 1 MiB to the end");
	CHECK(rd64(p + 80) == 0xfffbc000 && rd64(p + 88) == 0x4000 &&
	      rd32(p + 96) == 2,
	      "e820: KVM's identity-map and TSS pages are reserved");

	{
		struct x86_paging pg = { 0x80000011, X86_PML4_ADDR, 0x20,
					 0x500 };
		uint64_t gpa = 0;

		CHECK(!x86_translate(m, &pg, PREF_ADDR + 0x200, &gpa) &&
		      gpa == PREF_ADDR + 0x200 &&
		      !x86_translate(m, &pg, X86_ZERO_PAGE_ADDR, &gpa) &&
		      gpa == X86_ZERO_PAGE_ADDR &&
		      !x86_translate(m, &pg, 0xfffff000, &gpa) &&
		      gpa == 0xfffff000,
		      "page tables: the entry, the zero page and all of "
		      "0-4 GiB are identity mapped");
	}
	p = guest_ptr(m, X86_GDT_ADDR, 32);
	CHECK(p && rd64(p + X86_SEL_CODE64) == 0x00af9b000000ffffull &&
	      rd64(p + X86_SEL_DATA) == 0x00cf93000000ffffull,
	      "GDT: flat __BOOT_CS (64-bit) at 0x10, __BOOT_DS at 0x18");

	free(rdd);
	free(kd);
	fake_machine_free(m);
}

static bool load_refused(struct machine *m, const uint8_t *kd, size_t size,
			 const struct x86_image *rd, const char *params,
			 const char *name, const char *want)
{
	struct x86_image k = img("kernel", "bz", kd, size);
	struct x86_boot b = { 0 };
	const char *msg;
	int err;

	capture();
	err = x86_load_bzimage(m, &k, rd, params, &b);
	msg = captured();
	if (err >= 0 || lines(msg) != 1 || !strstr(msg, name) ||
	    !strstr(msg, want)) {
		printf("# got %d: %s", err, msg);
		return false;
	}
	return true;
}

static void test_load_limits(void)
{
	struct machine *small = fake_machine_new(16 << 20), *m = fake_machine_new(32 << 20);
	struct x86_image rd;
	char params[3000];
	uint8_t *kd, *rdd;
	size_t size;

	kd = make_bzimage(&size);
	CHECK(load_refused(small, kd, size, NULL, NULL, "kernel 'bz'",
			   "give the guest more memory"),
	      "a kernel whose init_size does not fit in RAM is refused");

	memset(params, 'x', sizeof(params) - 1);
	params[sizeof(params) - 1] = '\0';
	CHECK(load_refused(m, kd, size, NULL, params, "kernel 'bz'",
			   "command line too long"),
	      "a command line over cmdline_size is refused");
	wr32(kd + SH_CMDLINE_SIZE, 60);
	CHECK(load_refused(m, kd, size, NULL, "root=/dev/vda", "kernel 'bz'",
			   "at most 60"),
	      "cmdline_size counts lkvm's defaults too");
	wr32(kd + SH_CMDLINE_SIZE, 2047);

	rdd = calloc(1, 20 << 20);
	rd = img("initrd", "big.img", rdd, 20 << 20);
	CHECK(load_refused(m, kd, size, &rd, NULL, "initrd 'big.img'",
			   "initrd too big"),
	      "an initrd that does not fit above the kernel is refused");
	rd.size = 5 << 20;	/* 4 MiB fit between 20 and 24 MiB */
	wr32(kd + SH_INITRD_ADDR_MAX, 0x17fffff);
	CHECK(load_refused(m, kd, size, &rd, NULL, "initrd 'big.img'",
			   "initrd too big"),
	      "an initrd that must end below initrd_addr_max but cannot is "
	      "refused");
	rd.size = 0;
	CHECK(load_refused(m, kd, size, &rd, NULL, "initrd 'big.img'",
			   "empty"), "an empty initrd is refused");
	free(rdd);

	{
		struct x86_boot b = { 0 };
		struct x86_image k = img("kernel", "bz", kd, size);
		const char *cmd;

		rd = img("initrd", "rd", "abcd", 4);
		wr32(kd + SH_INITRD_ADDR_MAX, 0x1ffffff);
		CHECK(x86_load_bzimage(m, &k, &rd, "console=hvc0 panic=5 "
				       "-- reboot=x", &b) == 0 &&
		      b.initrd_addr + 4 <= 0x2000000 &&
		      b.initrd_addr >= 0x1fff000,
		      "the initrd ends below initrd_addr_max");
		cmd = guest_ptr(m, X86_CMDLINE_ADDR, 1);
		CHECK(cmd && !strcmp(cmd, "earlyprintk=serial reboot=k "
					  "console=hvc0 panic=5 -- reboot=x"),
		      "-p overrides a default of the same name; what follows "
		      "'--' does not count");
	}
	free(kd);
	fake_machine_free(small);
	fake_machine_free(m);
}

/* ---- arch_load with files ----------------------------------------------- */

static char tmpdir[] = "/tmp/lkvm-test-bzimage-XXXXXX";

static const char *write_tmp(const char *name, const void *data, size_t len)
{
	static char path[4][256];
	static int next;
	char *p = path[next++ % 4];
	int fd;

	snprintf(p, 256, "%s/%s", tmpdir, name);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, data, len) != (ssize_t)len)
		abort();
	close(fd);
	return p;
}

static bool arch_load_says(struct machine *m, const char *want1,
			   const char *want2)
{
	const char *msg;
	int err;

	capture();
	err = arch_load(m);
	msg = captured();
	if (err >= 0 || lines(msg) != 1 || !strstr(msg, want1) ||
	    !strstr(msg, want2)) {
		printf("# got %d: %s", err, msg);
		return false;
	}
	return true;
}

static void test_arch_load(void)
{
	struct machine *m = fake_machine_new(64 << 20);
	const struct x86_boot *b;
	char missing[100], want[300];
	uint8_t *kd;
	size_t size;

	if (!mkdtemp(tmpdir))
		abort();
	kd = make_bzimage(&size);
	m->cfg.kernel = write_tmp("bzImage", kd, size);
	m->cfg.params = "quiet";
	CHECK(arch_load(m) == 0 && m->boot, "arch_load boots a bzImage file");
	b = m->boot;
	CHECK(b && b->entry == X86_ENTRY_LONG64 && b->rip == PREF_ADDR + 0x200 &&
	      !strcmp(b->kind, "bzImage"), "... through the 64-bit entry");
	CHECK(m->fdt && fdt_check_header(m->fdt) == 0,
	      "... and keeps the device tree in m->fdt");

	snprintf(missing, sizeof(missing), "%s/nope", tmpdir);
	m->cfg.kernel = missing;
	snprintf(want, sizeof(want), "kernel '%s': No such file or directory",
		 missing);
	CHECK(arch_load_says(m, want, ""), "a missing kernel is named");

	m->cfg.kernel = write_tmp("empty", "", 0);
	CHECK(arch_load_says(m, "empty", "empty file"),
	      "an empty kernel is refused");

	m->cfg.kernel = tmpdir;
	CHECK(arch_load_says(m, tmpdir, "Is a directory"),
	      "a directory as kernel is refused");

	m->cfg.kernel = write_tmp("bzImage", kd, size);
	m->cfg.initrd = missing;
	CHECK(arch_load_says(m, "initrd '", "No such file"),
	      "a missing initrd is named");
	m->cfg.initrd = NULL;

	/*
	 * Without "HdrS" a file is a flat binary: a small one runs (and
	 * refuses -p), a kernel-sized one is refused.
	 */
	kd[SH_HEADER] = 'X';
	m->cfg.kernel = write_tmp("damaged", kd, size);
	CHECK(arch_load_says(m, "damaged': not an ELF or bzImage kernel",
			     "takes no command line (-p)"),
	      "a small file without 'HdrS' is a flat binary and refuses -p");
	{
		size_t big = 700 * 1024;
		uint8_t *bk = calloc(1, big);

		memcpy(bk, kd, size);
		m->cfg.kernel = write_tmp("damaged", bk, big);
		free(bk);
	}
	CHECK(arch_load_says(m, "damaged': not an ELF or bzImage kernel",
			     "boot sector without a 'HdrS'"),
	      "a kernel-sized bzImage with a damaged signature is refused");
	kd[SH_HEADER] = 'H';

	m->cfg.kernel = write_tmp("truncated", kd, size / 2);
	CHECK(arch_load_says(m, "truncated'", "truncated"),
	      "a truncated bzImage file is refused");

	free(kd);
	unlink(write_tmp("bzImage", "", 0));
	unlink(write_tmp("empty", "", 0));
	unlink(write_tmp("damaged", "", 0));
	unlink(write_tmp("truncated", "", 0));
	rmdir(tmpdir);
	fake_machine_free(m);
}

int main(void)
{
	test_header_checks();
	test_load();
	test_load_limits();
	test_arch_load();
	return tap_done();
}
