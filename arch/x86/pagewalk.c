// SPDX-License-Identifier: GPL-2.0
/*
 * Guest page-table walks, for crash dumps and the debugger: every paging
 * mode a vCPU can be in, every table read through guest_ptr() so a guest
 * with garbage in CR3 or its tables can never make lkvm read outside
 * guest memory. Permissions (user, write, NX) are not checked: the
 * question is only where an address leads.
 */
#include <errno.h>
#include <string.h>

#include "lkvm/arch.h"
#include "lkvm/machine.h"
#include "lkvm/x86.h"

#define CR0_PG		(1ull << 31)
#define CR4_PSE		(1ull << 4)
#define CR4_PAE		(1ull << 5)
#define CR4_LA57	(1ull << 12)
#define EFER_LMA	(1ull << 10)

#define PTE_P		(1ull << 0)
#define PTE_PS		(1ull << 7)
#define ADDR_MASK	0x000ffffffffff000ull	/* bits 51:12 */

static int read_entry(struct machine *m, uint64_t addr, unsigned int size,
		      uint64_t *val)
{
	const void *p = guest_ptr(m, addr, size);

	if (!p)
		return -EFAULT;
	*val = 0;
	memcpy(val, p, size);	/* little-endian host, like the guest */
	return 0;
}

/* Bits [hi:lo] of v. */
static uint64_t bits(uint64_t v, unsigned int hi, unsigned int lo)
{
	return (v >> lo) & ((2ull << (hi - lo)) - 1);
}

static int walk32(struct machine *m, const struct x86_paging *p, uint32_t va,
		  uint64_t *gpa)
{
	uint64_t pde, pte;

	if (read_entry(m, (p->cr3 & 0xfffff000) + bits(va, 31, 22) * 4, 4,
		       &pde) || !(pde & PTE_P))
		return -EFAULT;
	if ((pde & PTE_PS) && (p->cr4 & CR4_PSE)) {
		/* 4 MiB page; PSE-36 puts address bits 39:32 in 20:13. */
		*gpa = (pde & 0xffc00000) | bits(pde, 20, 13) << 32 |
		       bits(va, 21, 0);
		return 0;
	}
	if (read_entry(m, (pde & 0xfffff000) + bits(va, 21, 12) * 4, 4,
		       &pte) || !(pte & PTE_P))
		return -EFAULT;
	*gpa = (pte & 0xfffff000) | bits(va, 11, 0);
	return 0;
}

/*
 * The 64-bit table formats: PAE (a 4-entry PDPT from CR3 bits 31:5, then
 * two levels), 4-level and 5-level long mode. Large pages end the walk at
 * the PDPT (1 GiB) or the page directory (2 MiB).
 */
static int walk64(struct machine *m, const struct x86_paging *p, uint64_t va,
		  uint64_t *gpa)
{
	unsigned int levels, shift;
	uint64_t table, e;

	if (!(p->efer & EFER_LMA)) {
		va &= 0xffffffff;
		if (read_entry(m, (p->cr3 & 0xffffffe0) + bits(va, 31, 30) * 8,
			       8, &e) || !(e & PTE_P))
			return -EFAULT;
		table = e & ADDR_MASK;
		levels = 2;
	} else {
		unsigned int width = p->cr4 & CR4_LA57 ? 57 : 48;
		int64_t sva = (int64_t)(va << (64 - width)) >> (64 - width);

		/* Non-canonical addresses fault before any walk. */
		if ((uint64_t)sva != va)
			return -EFAULT;
		table = p->cr3 & ADDR_MASK;
		levels = width == 57 ? 5 : 4;
	}
	for (; levels > 0; levels--) {
		shift = 12 + 9 * (levels - 1);
		if (read_entry(m, table + bits(va, shift + 8, shift) * 8, 8,
			       &e) || !(e & PTE_P))
			return -EFAULT;
		if (levels == 1 || ((levels == 2 || levels == 3) &&
				    (e & PTE_PS))) {
			uint64_t mask = (1ull << shift) - 1;

			*gpa = (e & ADDR_MASK & ~mask) | (va & mask);
			return 0;
		}
		table = e & ADDR_MASK;
	}
	return -EFAULT;
}

int x86_translate(struct machine *m, const struct x86_paging *p,
		  uint64_t gva, uint64_t *gpa)
{
	if (!(p->cr0 & CR0_PG)) {
		/* Linear addresses are physical, 32 bits wide. */
		*gpa = p->efer & EFER_LMA ? gva : gva & 0xffffffff;
		return 0;
	}
	if (!(p->cr4 & CR4_PAE))
		return walk32(m, p, gva, gpa);
	return walk64(m, p, gva, gpa);
}

int arch_translate(struct machine *m, struct vcpu *v, uint64_t gva,
		   uint64_t *gpa)
{
	struct kvm_sregs s;
	struct x86_paging p;
	int err;

	err = kvm_get_sregs(v->kvm, &s);
	if (err)
		return err;
	p = (struct x86_paging){ s.cr0, s.cr3, s.cr4, s.efer };
	return x86_translate(m, &p, gva, gpa);
}
