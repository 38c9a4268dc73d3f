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

struct walk {
	struct machine *m;
	x86_walk_fn fn;
	void *ctx;
};

enum leaf_rule { NEVER_LEAF, ALWAYS_LEAF, LEAF_IF_PS };

/*
 * Reads one entry and reports it to the walk's caller. Returns -EFAULT
 * when the walk ends here (outside RAM, not present), 1 when the entry
 * maps a page of 1 << shift bytes, 0 when it points to the next table.
 */
static int step(struct walk *w, const char *name, unsigned int index,
		uint64_t addr, unsigned int size, unsigned int shift,
		enum leaf_rule rule, uint64_t *e)
{
	const void *p = guest_ptr(w->m, addr, size);
	struct x86_walk_step st = { name, index, addr, size, 0, p != NULL, 0 };
	bool present, leaf;

	*e = 0;
	if (p)
		memcpy(e, p, size);	/* little-endian host, like the guest */
	present = p && (*e & PTE_P);
	leaf = rule == ALWAYS_LEAF || (rule == LEAF_IF_PS && (*e & PTE_PS));
	st.entry = *e;
	st.page_shift = present && leaf ? shift : 0;
	if (w->fn)
		w->fn(w->ctx, &st);
	if (!present)
		return -EFAULT;
	return leaf;
}

/* Bits [hi:lo] of v. */
static uint64_t bits(uint64_t v, unsigned int hi, unsigned int lo)
{
	return (v >> lo) & ((2ull << (hi - lo)) - 1);
}

static int walk32(struct walk *w, const struct x86_paging *p, uint32_t va,
		  uint64_t *gpa)
{
	unsigned int i = (unsigned int)bits(va, 31, 22);
	uint64_t pde, pte;
	int r;

	/* 4 MiB pages only with CR4.PSE. */
	r = step(w, "PDE", i, (p->cr3 & 0xfffff000) + i * 4, 4, 22,
		 p->cr4 & CR4_PSE ? LEAF_IF_PS : NEVER_LEAF, &pde);
	if (r < 0)
		return r;
	if (r) {
		/* PSE-36 puts address bits 39:32 in 20:13. */
		*gpa = (pde & 0xffc00000) | bits(pde, 20, 13) << 32 |
		       bits(va, 21, 0);
		return 0;
	}
	i = (unsigned int)bits(va, 21, 12);
	r = step(w, "PTE", i, (pde & 0xfffff000) + i * 4, 4, 12, ALWAYS_LEAF,
		 &pte);
	if (r < 0)
		return r;
	*gpa = (pte & 0xfffff000) | bits(va, 11, 0);
	return 0;
}

/*
 * The 64-bit table formats: PAE (a 4-entry PDPT from CR3 bits 31:5, then
 * two levels), 4-level and 5-level long mode. Large pages end the walk at
 * the PDPT (1 GiB) or the page directory (2 MiB).
 */
static int walk64(struct walk *w, const struct x86_paging *p, uint64_t va,
		  uint64_t *gpa)
{
	static const char *const names[] = { "PML5E", "PML4E", "PDPTE", "PDE",
					      "PTE" };
	unsigned int levels;
	uint64_t table, e;

	if (!(p->efer & EFER_LMA)) {
		unsigned int i = (unsigned int)bits(va, 31, 30);

		va &= 0xffffffff;
		if (step(w, "PDPTE", i, (p->cr3 & 0xffffffe0) + i * 8, 8, 30,
			 NEVER_LEAF, &e) < 0)
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
	for (unsigned int l = 0; l < levels; l++) {
		unsigned int shift = 12 + 9 * (levels - 1 - l);
		unsigned int i = (unsigned int)bits(va, shift + 8, shift);
		/* A PDPTE or PDE with PS set maps a 1 GiB or 2 MiB page. */
		enum leaf_rule rule = l == levels - 1 ? ALWAYS_LEAF :
				      shift == 21 || shift == 30 ? LEAF_IF_PS :
								   NEVER_LEAF;
		int r = step(w, names[5 - levels + l], i, table + i * 8ull, 8,
			     shift, rule, &e);

		if (r < 0)
			return r;
		if (r) {
			uint64_t mask = (1ull << shift) - 1;

			*gpa = (e & ADDR_MASK & ~mask) | (va & mask);
			return 0;
		}
		table = e & ADDR_MASK;
	}
	return -EFAULT;
}

int x86_translate_walk(struct machine *m, const struct x86_paging *p,
		       uint64_t gva, uint64_t *gpa, x86_walk_fn fn, void *ctx)
{
	struct walk w = { m, fn, ctx };

	if (!(p->cr0 & CR0_PG)) {
		/* Linear addresses are physical, 32 bits wide. */
		*gpa = p->efer & EFER_LMA ? gva : gva & 0xffffffff;
		return 0;
	}
	if (!(p->cr4 & CR4_PAE))
		return walk32(&w, p, (uint32_t)gva, gpa);
	return walk64(&w, p, gva, gpa);
}

int x86_translate(struct machine *m, const struct x86_paging *p,
		  uint64_t gva, uint64_t *gpa)
{
	return x86_translate_walk(m, p, gva, gpa, NULL, NULL);
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
