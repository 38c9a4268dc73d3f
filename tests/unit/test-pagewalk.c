// SPDX-License-Identifier: GPL-2.0
/*
 * Page-table walks over hand-built tables in guest memory: every paging
 * mode, large pages, unmapped addresses, and tables that point outside
 * guest RAM (which must fail, never crash).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "lkvm/arch.h"
#include "lkvm/machine.h"
#include "lkvm/x86.h"
#include "tap.h"

#define RAM (64ull << 20)

#define P 0x1ull
#define RW 0x2ull
#define PS 0x80ull
#define NX (1ull << 63)

#define CR0_PE 0x1ull
#define CR0_PG 0x80000000ull
#define CR4_PSE 0x10ull
#define CR4_PAE 0x20ull
#define CR4_LA57 0x1000ull
#define EFER_LME 0x100ull
#define EFER_LMA 0x400ull

static struct machine *m;
static char *ram;

static void put32(uint64_t gpa, uint32_t v)
{
	memcpy(ram + gpa, &v, 4);
}

static void put64(uint64_t gpa, uint64_t v)
{
	memcpy(ram + gpa, &v, 8);
}

/* Translates gva; true when it maps to want (or faults, for want ~0). */
static bool walks_to(uint64_t cr0, uint64_t cr3, uint64_t cr4, uint64_t efer,
		     uint64_t gva, uint64_t want)
{
	struct x86_paging p = { cr0, cr3, cr4, efer };
	uint64_t gpa = 0xdead;
	int err = x86_translate(m, &p, gva, &gpa);

	if (want == ~0ull)
		return err == -EFAULT;
	if (err || gpa != want)
		printf("# 0x%llx -> err %d, 0x%llx (want 0x%llx)\n",
		       (unsigned long long)gva, err, (unsigned long long)gpa,
		       (unsigned long long)want);
	return !err && gpa == want;
}

static void test_no_paging(void)
{
	CHECK(walks_to(0, 0, 0, 0, 0x12345678, 0x12345678),
	      "paging off: linear is physical");
	CHECK(walks_to(CR0_PE, 0, 0, 0, 0x112345678ull, 0x12345678),
	      "paging off: 32 bits of address");
}

static void test_32bit(void)
{
	uint64_t cr0 = CR0_PE | CR0_PG, pd = 0x10000, pt = 0x11000;

	memset(ram + pd, 0, 8192);
	put32(pd + 1 * 4, pt | P | RW);		/* 4-8 MiB through a PT */
	put32(pt + 5 * 4, 0x123000 | P);
	put32(pd + 2 * 4, 0x1c00000 | P | PS);	/* 8-12 MiB: a 4 MiB page */
	put32(pd + 4 * 4, 0xfffff000 | P);	/* PT at 4 GiB - 4 KiB */
	put32(pd + 5 * 4, (0x1ull << 13) | 0x400000 | P | PS);	/* PSE-36 */

	CHECK(walks_to(cr0, pd, 0, 0, 0x405abc, 0x123abc),
	      "32-bit: 4 KiB page through PD and PT");
	CHECK(walks_to(cr0, pd, 0, 0, 0x406000, ~0ull),
	      "32-bit: a not-present PTE faults");
	CHECK(walks_to(cr0, pd, 0, 0, 0x0, ~0ull),
	      "32-bit: a not-present PDE faults");
	CHECK(walks_to(cr0, pd, CR4_PSE, 0, 0x812345, 0x1c12345),
	      "32-bit: 4 MiB page with CR4.PSE");
	CHECK(walks_to(cr0, pd, CR4_PSE, 0, 0x1412345,
		       0x100000000ull | 0x412345),
	      "32-bit: PSE-36 address bits above 4 GiB");
	CHECK(walks_to(cr0, pd, 0, 0, 0x1012345, ~0ull),
	      "32-bit: a page table outside guest RAM faults");
	CHECK(walks_to(cr0, 0xfffff000, 0, 0, 0x1000, ~0ull),
	      "32-bit: a page directory outside guest RAM faults");
}

static void test_pae(void)
{
	uint64_t cr0 = CR0_PE | CR0_PG, pdpt = 0x20020, pd = 0x21000,
		 pt = 0x22000;

	memset(ram + 0x20000, 0, 3 * 4096);
	put64(pdpt + 3 * 8, pd | P);		/* 3-4 GiB */
	put64(pd + 1 * 8, pt | P | RW);
	put64(pt + 2 * 8, 0x3456000 | P | NX);
	put64(pd + 2 * 8, 0x1e00000 | P | PS | (1ull << 12));	/* + PAT */

	CHECK(walks_to(cr0, pdpt, CR4_PAE, 0, 0xc0202abc, 0x3456abc),
	      "PAE: 4 KiB page through the 32-byte-aligned PDPT (NX ignored)");
	CHECK(walks_to(cr0, pdpt, CR4_PAE, 0, 0xc0412345, 0x1e12345),
	      "PAE: 2 MiB page (PAT bit not taken as address)");
	CHECK(walks_to(cr0, pdpt, CR4_PAE, 0, 0x40000000, ~0ull),
	      "PAE: a not-present PDPTE faults");
	put64(pdpt, 0x7fff000000ull | P);
	CHECK(walks_to(cr0, pdpt, CR4_PAE, 0, 0x1000, ~0ull),
	      "PAE: a page directory outside guest RAM faults");
}

static void test_long(void)
{
	uint64_t cr0 = CR0_PE | CR0_PG, cr4 = CR4_PAE,
		 efer = EFER_LME | EFER_LMA;
	uint64_t pml4 = 0x30000, pdpt = 0x31000, pd = 0x32000, pt = 0x33000,
		 hpdpt = 0x34000, pml5 = 0x35000;

	memset(ram + 0x30000, 0, 6 * 4096);
	put64(pml4, pdpt | P | RW);
	put64(pdpt + 1 * 8, pd | P | RW);		/* 1-2 GiB */
	put64(pd + 3 * 8, pt | P | RW);			/* + 6-8 MiB */
	put64(pt + 4 * 8, 0x2345000 | P | NX);
	put64(pd + 4 * 8, 0x3600000 | P | PS);		/* + 8-10 MiB */
	put64(pdpt + 2 * 8, 0x40000000 | P | PS);	/* 1 GiB page */
	put64(pml4 + 511 * 8, hpdpt | P);		/* the top 512 GiB */
	put64(hpdpt + 510 * 8, 0x80000000 | P | PS);
	put64(pdpt + 3 * 8, 0x7ffffff000ull | P);	/* PD outside RAM */

	CHECK(walks_to(cr0, pml4, cr4, efer, 0x40604abc, 0x2345abc),
	      "4-level: 4 KiB page through PML4, PDPT, PD, PT");
	CHECK(walks_to(cr0, pml4, cr4, efer, 0x40812345, 0x3612345),
	      "4-level: 2 MiB page");
	CHECK(walks_to(cr0, pml4, cr4, efer, 0x80000000 + 0x2345678,
		       0x40000000 + 0x2345678),
	      "4-level: 1 GiB page");
	CHECK(walks_to(cr0, pml4, cr4, efer, 0xffffffff80001234ull,
		       0x80001234),
	      "4-level: a kernel address in the top 2 GiB");
	CHECK(walks_to(cr0, pml4, cr4, efer, 0x0000800000000000ull, ~0ull),
	      "4-level: a non-canonical address faults");
	CHECK(walks_to(cr0, pml4, cr4, efer, 0x40605000, ~0ull),
	      "4-level: a not-present PTE faults");
	CHECK(walks_to(cr0, pml4, cr4, efer, 0xc0000000, ~0ull),
	      "4-level: a page directory outside guest RAM faults");
	CHECK(walks_to(cr0, 0x7fffffff000ull, cr4, efer, 0x1000, ~0ull),
	      "4-level: CR3 outside guest RAM faults");

	memset(ram + pml5, 0, 4096);
	put64(pml5, pml4 | P);
	CHECK(walks_to(cr0, pml5, cr4 | CR4_LA57, efer, 0x40604abc,
		       0x2345abc),
	      "5-level: the same page through a PML5");
	CHECK(walks_to(cr0, pml5, cr4 | CR4_LA57, efer, 0x0001000000000000ull,
		       ~0ull),
	      "5-level: a not-present PML5 entry faults");
	CHECK(walks_to(cr0, pml5, cr4 | CR4_LA57, efer, 0x0100000000000000ull,
		       ~0ull),
	      "5-level: a non-canonical 57-bit address faults");
}

/* The tables lkvm itself builds for the Linux 64-bit entry. */
static void test_boot_tables(void)
{
	struct x86_image k = { "kernel", "k", NULL, 0 };
	struct x86_boot b = { 0 };
	bool ok;

	ok = x86_write_boot_common(m, &k, NULL, 0, &b) == 0;
	for (uint64_t a = 0; ok && a < (4ull << 30); a += 0x1fff000)
		ok = walks_to(CR0_PE | CR0_PG, X86_PML4_ADDR, CR4_PAE,
			      EFER_LME | EFER_LMA, a, a);
	CHECK(ok, "lkvm's boot page tables map 0-4 GiB one to one");
	CHECK(walks_to(CR0_PE | CR0_PG, X86_PML4_ADDR, CR4_PAE,
		       EFER_LME | EFER_LMA, 4ull << 30, ~0ull),
	      "... and nothing above 4 GiB");
}

int main(void)
{
	m = calloc(1, sizeof(*m));
	ram = mmap(NULL, RAM, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (!m || ram == MAP_FAILED || machine_add_memory(m, 0, RAM, ram, false))
		abort();
	test_no_paging();
	test_32bit();
	test_pae();
	test_long();
	test_boot_tables();
	munmap(ram, RAM);
	free(m);
	return tap_done();
}
