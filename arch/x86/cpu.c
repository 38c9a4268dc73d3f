// SPDX-License-Identifier: GPL-2.0
/*
 * vCPU set-up: CPUID with per-vCPU topology, the MSRs and local APIC state
 * that firmware would leave, and the boot registers of the BSP. Other
 * vCPUs stay in KVM's wait-for-SIPI state, from which the guest starts
 * them with INIT-SIPI-SIPI through the in-kernel local APIC.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lkvm/arch.h"
#include "lkvm/machine.h"
#include "lkvm/util.h"
#include "lkvm/x86.h"

#define MSR_IA32_MISC_ENABLE		0x1a0
#define MISC_ENABLE_FAST_STRING		(1ull << 0)
#define MSR_MTRR_DEF_TYPE		0x2ff
#define MTRR_ENABLE			(1ull << 11)
#define MTRR_TYPE_WB			6
#define MSR_IA32_APICBASE		0x1b

#define CPUID_1_EDX_MTRR		(1u << 12)
#define CPUID_1_EDX_HTT			(1u << 28)

#define APIC_LVT0			0x350
#define APIC_LVT1			0x360
#define APIC_DM_NMI			0x400
#define APIC_DM_EXTINT			0x700

#define CR0_PE				(1ull << 0)
#define CR0_ET				(1ull << 4)
#define CR0_PG				(1ull << 31)
#define CR4_PAE				(1ull << 5)
#define EFER_LME			(1ull << 8)
#define EFER_LMA			(1ull << 10)

/* Extended topology (leaves 0xb and 0x1f) level types. */
#define TOPO_SMT			1
#define TOPO_CORE			2

/*
 * The topology lkvm presents: one package, one core per vCPU, one thread
 * per core, APIC ID = vCPU id. core_bits is how many APIC ID bits the
 * core number takes.
 */
struct topo {
	unsigned int ncpus, core_bits;
};

static struct topo topo_of(unsigned int ncpus)
{
	struct topo t = { ncpus, 0 };

	while ((1u << t.core_bits) < ncpus)
		t.core_bits++;
	return t;
}

static struct kvm_cpuid_entry2 *find_leaf(struct kvm_cpuid2 *c, uint32_t fn,
					  uint32_t index)
{
	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function == fn &&
		    (!(c->entries[i].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) ||
		     c->entries[i].index == index))
			return &c->entries[i];
	return NULL;
}

/* Cache parameters (Intel leaf 4, AMD leaf 0x8000001d): which logical
 * CPUs share each cache. L1 and L2 are per core, L3 per package. */
static void fix_cache_leaf(struct kvm_cpuid_entry2 *e, const struct topo *t,
			   bool intel_cores)
{
	unsigned int level = (e->eax >> 5) & 7;
	unsigned int sharing = level >= 3 ? (1u << t->core_bits) - 1 : 0;

	if (!(e->eax & 0x1f))	/* no cache at this index */
		return;
	e->eax = (e->eax & ~(0xfffu << 14)) | (MIN(sharing, 0xfffu) << 14);
	if (intel_cores)
		e->eax = (e->eax & 0x03ffffff) |
			 (MIN((1u << t->core_bits) - 1, 63u) << 26);
}

/*
 * KVM's supported CPUID is the host's, with the host's topology; each
 * vCPU gets the same features and its own place in lkvm's topology. The
 * hypervisor bit and the KVM signature leaves stay as KVM returns them.
 */
struct kvm_cpuid2 *x86_vcpu_cpuid(const struct kvm_cpuid2 *sup,
				  unsigned int id, unsigned int ncpus)
{
	struct topo topo = topo_of(ncpus), *t = &topo;
	uint32_t max_basic = 0, n = 0;
	const struct kvm_cpuid_entry2 *e0;
	struct kvm_cpuid2 *c;
	bool has_1f, amd = false;

	c = calloc(1, sizeof(*c) + (sup->nent + 6) * sizeof(c->entries[0]));
	if (!c)
		return NULL;
	/* Everything but the topology leaves, which are rebuilt below. */
	for (uint32_t i = 0; i < sup->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &sup->entries[i];

		if (e->function == 0xb || e->function == 0x1f)
			continue;
		c->entries[n++] = *e;
	}
	c->nent = n;
	e0 = find_leaf(c, 0, 0);
	if (e0) {
		max_basic = e0->eax;
		/* "AuthenticAMD", "HygonGenuine": AMD's topology leaves. */
		amd = e0->ebx == 0x68747541 || e0->ebx == 0x6f677948;
	}
	has_1f = max_basic >= 0x1f;

	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		switch (e->function) {
		case 1:
			/* APIC ID, logical CPUs per package, HTT when the
			 * package has more than one. */
			e->ebx = (e->ebx & 0x0000ffff) | id << 24 |
				 MIN(1u << t->core_bits, 255u) << 16;
			if (t->ncpus > 1)
				e->edx |= CPUID_1_EDX_HTT;
			else
				e->edx &= ~CPUID_1_EDX_HTT;
			break;
		case 4:
			fix_cache_leaf(e, t, true);
			break;
		case 0x80000008:
			if (!amd)
				break;
			/* Cores per package - 1, and the APIC ID bits
			 * that number them. */
			e->ecx = (e->ecx & ~0xf0ffu) | (t->ncpus - 1) |
				 t->core_bits << 12;
			break;
		case 0x8000001d:
			if (amd)
				fix_cache_leaf(e, t, false);
			break;
		case 0x8000001e:
			if (!amd)
				break;
			/* Extended APIC ID, core ID (one thread per core),
			 * node 0. */
			e->eax = id;
			e->ebx = id & 0xff;
			e->ecx = 0;
			break;
		}
	}

	/* Leaf 0xb (and 0x1f where the CPU has it): the x2APIC ID and the
	 * levels, SMT with one thread, then cores. */
	for (uint32_t fn = 0xb; max_basic >= 0xb && fn <= 0x1f; fn += 0x14) {
		if (fn == 0x1f && !has_1f)
			break;
		for (uint32_t sub = 0; sub < 3; sub++) {
			struct kvm_cpuid_entry2 *e = &c->entries[c->nent++];

			*e = (struct kvm_cpuid_entry2){
				.function = fn,
				.index = sub,
				.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
				.edx = id,
			};
			if (sub == 0) {
				e->eax = 0;
				e->ebx = 1;
				e->ecx = TOPO_SMT << 8 | sub;
			} else if (sub == 1) {
				e->eax = t->core_bits;
				e->ebx = t->ncpus;
				e->ecx = TOPO_CORE << 8 | sub;
			} else {
				e->ecx = sub;	/* invalid level: the end */
			}
		}
	}
	return c;
}

void arch_prefetch(struct kvm_ctx *kvm)
{
	/* An error comes again, and is reported, in setup_cpuid(). */
	(void)kvm_fetch_supported_cpuid(kvm);
}

static int setup_cpuid(struct machine *m, struct vcpu *v, bool *has_mtrr)
{
	struct kvm_cpuid2 *sup, *c;
	struct kvm_cpuid_entry2 *e1;
	int err;

	err = kvm_get_supported_cpuid(m->kvm, &sup);
	if (err)
		return err;
	c = x86_vcpu_cpuid(sup, v->id, x86_ncpus(m));
	free(sup);
	if (!c)
		return -ENOMEM;
	e1 = find_leaf(c, 1, 0);
	*has_mtrr = e1 && (e1->edx & CPUID_1_EDX_MTRR);
	err = kvm_set_cpuid(v->kvm, c);
	free(c);
	return err;
}

/*
 * What a BIOS leaves in the MSRs: fast string operations on, and MTRRs
 * on with write-back as the default type (without them, Linux on real
 * hardware would map all memory uncached).
 */
static int setup_msrs(struct vcpu *v, bool has_mtrr)
{
	struct kvm_msr_entry e[] = {
		{ .index = MSR_IA32_MISC_ENABLE,
		  .data = MISC_ENABLE_FAST_STRING },
		{ .index = MSR_MTRR_DEF_TYPE,
		  .data = MTRR_ENABLE | MTRR_TYPE_WB },
	};

	return kvm_set_msrs(v->kvm, e, has_mtrr ? 2 : 1);
}

/*
 * LINT0 as ExtINT and LINT1 as NMI, unmasked, on every local APIC, as
 * firmware programs them: the 8259's interrupts reach a CPU through
 * LINT0 only, and KVM's reset state masks it on all but the BSP.
 */
static int setup_lapic(struct vcpu *v)
{
	struct kvm_lapic_state s;
	uint32_t lvt0 = APIC_DM_EXTINT, lvt1 = APIC_DM_NMI;
	int err;

	err = kvm_get_lapic(v->kvm, &s);
	if (err)
		return err;
	memcpy(&s.regs[APIC_LVT0], &lvt0, 4);
	memcpy(&s.regs[APIC_LVT1], &lvt1, 4);
	return kvm_set_lapic(v->kvm, &s);
}

/* A kvm_segment from a descriptor of lkvm's boot GDT. */
static struct kvm_segment gdt_segment(uint16_t sel, bool code, bool l64)
{
	return (struct kvm_segment){
		.base = 0,
		.limit = 0xffffffff,
		.selector = sel,
		.type = code ? 0xb : 0x3,	/* accessed, read or write */
		.present = 1,
		.dpl = 0,
		.db = l64 ? 0 : 1,
		.s = 1,
		.l = l64,
		.g = 1,
	};
}

static struct kvm_segment real_segment(uint16_t seg, bool code)
{
	return (struct kvm_segment){
		.base = (uint64_t)seg << 4,
		.limit = 0xffff,
		.selector = seg,
		.type = code ? 0xb : 0x3,
		.present = 1,
		.s = 1,
	};
}

static int setup_boot_regs(struct vcpu *v, const struct x86_boot *b)
{
	struct kvm_sregs s;
	struct kvm_regs r = { .rflags = 0x2 };	/* bit 1 is always set */
	struct kvm_segment code, data;
	int err;

	if (b->entry == X86_ENTRY_RESET)
		return 0;
	err = kvm_get_sregs(v->kvm, &s);
	if (err)
		return err;

	switch (b->entry) {
	case X86_ENTRY_REAL:
		code = real_segment(b->real_seg, true);
		data = real_segment(b->real_seg, false);
		break;
	case X86_ENTRY_PROT32:
		code = gdt_segment(X86_SEL_CODE32, true, false);
		data = gdt_segment(X86_SEL_DATA, false, false);
		/* Paging off; CD and NW from reset cleared too. */
		s.cr0 = CR0_PE | CR0_ET;
		s.cr4 = 0;
		s.efer = 0;
		break;
	case X86_ENTRY_LONG64:
	default:
		code = gdt_segment(X86_SEL_CODE64, true, true);
		data = gdt_segment(X86_SEL_DATA, false, false);
		s.cr0 = CR0_PE | CR0_ET | CR0_PG;
		s.cr3 = X86_PML4_ADDR;
		s.cr4 = CR4_PAE;
		s.efer = EFER_LME | EFER_LMA;
		break;
	}
	s.cs = code;
	s.ds = s.es = s.fs = s.gs = s.ss = data;
	if (b->entry != X86_ENTRY_REAL) {
		s.gdt.base = X86_GDT_ADDR;
		s.gdt.limit = 4 * 8 - 1;
		/* No IDT: an exception before the kernel sets its own
		 * triple-faults, which lkvm reports as a crash. */
		s.idt.base = 0;
		s.idt.limit = 0;
	}
	err = kvm_set_sregs(v->kvm, &s);
	if (err)
		return err;

	r.rip = b->rip;
	r.rsp = b->rsp;
	r.rsi = b->rsi;
	r.rbx = b->rbx;
	return kvm_set_regs(v->kvm, &r);
}

int arch_setup_vcpu(struct machine *m, struct vcpu *v)
{
	const struct x86_boot *b = m->boot;
	bool has_mtrr = false;
	int err;

	if (!b)
		return -EINVAL;	/* arch_load() has not run */
	/* CPUID first: KVM checks MSR writes against it. */
	if ((err = setup_cpuid(m, v, &has_mtrr)) ||
	    (err = setup_msrs(v, has_mtrr)) || (err = setup_lapic(v)))
		return err;
	if (v->id == 0)
		return setup_boot_regs(v, b);
	return 0;
}

/* ---- crash dumps -------------------------------------------------------- */

static void dump_segment(FILE *out, const char *name,
			 const struct kvm_segment *s)
{
	fprintf(out, "%-4s sel=%04x base=%016llx limit=%08x type=%x dpl=%u "
		     "db=%u l=%u g=%u s=%u p=%u%s\n",
		name, s->selector, (unsigned long long)s->base, s->limit,
		s->type, s->dpl, s->db, s->l, s->g, s->s, s->present,
		s->unusable ? " unusable" : "");
}

/* Linear address of RIP in the vCPU's current mode. */
static uint64_t rip_linear(const struct kvm_regs *r, const struct kvm_sregs *s)
{
	if ((s->efer & EFER_LMA) && s->cs.l)
		return r->rip;
	if (!(s->cr0 & CR0_PE))
		return s->cs.base + (r->rip & 0xffff);
	return (s->cs.base + r->rip) & 0xffffffff;
}

static void dump_code(struct machine *m, FILE *out, const struct kvm_regs *r,
		      const struct kvm_sregs *s)
{
	struct x86_paging p = { s->cr0, s->cr3, s->cr4, s->efer };
	uint64_t lin = rip_linear(r, s), gpa = 0;
	bool mapped = !x86_translate(m, &p, lin, &gpa);

	fprintf(out, "code at %016llx", (unsigned long long)lin);
	if (mapped)
		fprintf(out, " (physical %llx)", (unsigned long long)gpa);
	fprintf(out, ":");
	/* Byte by byte: the 16 bytes may cross into an unmapped page. */
	for (unsigned int i = 0; i < 16; i++) {
		const uint8_t *b = NULL;

		if (!x86_translate(m, &p, lin + i, &gpa))
			b = guest_ptr(m, gpa, 1);
		if (b)
			fprintf(out, " %02x", *b);
		else
			fprintf(out, " ??");
	}
	fprintf(out, "\n");
}

void arch_dump_vcpu(struct machine *m, struct vcpu *v, FILE *out)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	int err;

	if ((err = kvm_get_regs(v->kvm, &r)) ||
	    (err = kvm_get_sregs(v->kvm, &s))) {
		fprintf(out, "vCPU %u: cannot read registers: %s\n", v->id,
			strerror(-err));
		return;
	}
	fprintf(out, "vCPU %u registers:\n", v->id);
	fprintf(out, "rax=%016llx rbx=%016llx rcx=%016llx rdx=%016llx\n",
		r.rax, r.rbx, r.rcx, r.rdx);
	fprintf(out, "rsi=%016llx rdi=%016llx rbp=%016llx rsp=%016llx\n",
		r.rsi, r.rdi, r.rbp, r.rsp);
	fprintf(out, "r8 =%016llx r9 =%016llx r10=%016llx r11=%016llx\n",
		r.r8, r.r9, r.r10, r.r11);
	fprintf(out, "r12=%016llx r13=%016llx r14=%016llx r15=%016llx\n",
		r.r12, r.r13, r.r14, r.r15);
	fprintf(out, "rip=%016llx rflags=%08llx\n", r.rip, r.rflags);
	dump_segment(out, "cs", &s.cs);
	dump_segment(out, "ds", &s.ds);
	dump_segment(out, "es", &s.es);
	dump_segment(out, "fs", &s.fs);
	dump_segment(out, "gs", &s.gs);
	dump_segment(out, "ss", &s.ss);
	dump_segment(out, "tr", &s.tr);
	dump_segment(out, "ldt", &s.ldt);
	fprintf(out, "gdt base=%016llx limit=%04x  idt base=%016llx "
		     "limit=%04x\n",
		s.gdt.base, s.gdt.limit, s.idt.base, s.idt.limit);
	fprintf(out, "cr0=%016llx cr2=%016llx cr3=%016llx cr4=%016llx\n",
		s.cr0, s.cr2, s.cr3, s.cr4);
	fprintf(out, "cr8=%016llx efer=%016llx apic_base=%016llx\n", s.cr8,
		s.efer, s.apic_base);
	dump_code(m, out, &r, &s);
}
