// SPDX-License-Identifier: GPL-2.0
/*
 * `lkvm debug` views: the page-table walk level by level, the stack, the
 * ELF core. x86-64 only, like the rest of lkvm today; the page walk is
 * arch/x86/pagewalk.c's, shown level by level.
 */
#include "lkvm/inspect.h"

#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/procfs.h>
#include <sys/stat.h>
#include <sys/user.h>
#include <unistd.h>

#include "lkvm/arch.h"
#include "lkvm/machine.h"
#include "lkvm/util.h"
#include "lkvm/vcpu.h"
#include "lkvm/x86.h"

#define CR0_PG		(1ull << 31)
#define CR4_PAE		(1ull << 5)
#define CR4_LA57	(1ull << 12)
#define EFER_LMA	(1ull << 10)
#define PTE_P		(1ull << 0)

/* ---- the walk, level by level ---------------------------------------- */

static void entry_flags(uint64_t e, bool wide, char *buf, size_t len)
{
	static const struct {
		uint64_t bit;
		const char *name;
	} f[] = {
		{ 1ull << 0, "P" },   { 1ull << 1, "W" },   { 1ull << 2, "U" },
		{ 1ull << 3, "PWT" }, { 1ull << 4, "PCD" }, { 1ull << 5, "A" },
		{ 1ull << 6, "D" },   { 1ull << 7, "PS" },  { 1ull << 8, "G" },
		{ 1ull << 63, "NX" },
	};
	size_t n = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < ARRAY_SIZE(f); i++) {
		if (!(e & f[i].bit) || (!wide && f[i].bit >> 32))
			continue;
		n += (size_t)snprintf(buf + n, len - MIN(n, len), "%s%s",
				      n ? " " : "", f[i].name);
		if (n >= len)
			break;
	}
}

static const char *page_size(unsigned int shift)
{
	switch (shift) {
	case 12: return "4 KiB";
	case 21: return "2 MiB";
	case 22: return "4 MiB";
	case 30: return "1 GiB";
	}
	return "?";
}

/* Prints each level the walk reads (arch/x86/pagewalk.c walks). */
static void show_step(void *ctx, const struct x86_walk_step *st)
{
	FILE *out = ctx;
	char flags[64];

	if (!st->readable) {
		fprintf(out, "  %-6s[%3u] at 0x%016llx: outside guest memory\n",
			st->name, st->index, (unsigned long long)st->addr);
		return;
	}
	entry_flags(st->entry, st->size == 8, flags, sizeof(flags));
	fprintf(out, "  %-6s[%3u] at 0x%016llx: 0x%0*llx %s\n", st->name,
		st->index, (unsigned long long)st->addr, st->size * 2,
		(unsigned long long)st->entry,
		st->entry & PTE_P ? flags : "not present");
	if (st->page_shift && st->page_shift != 12)
		fprintf(out, "  (a %s page)\n", page_size(st->page_shift));
}

static int walk(struct machine *m, const struct kvm_sregs *s, uint64_t va,
		FILE *out, uint64_t *gpa)
{
	struct x86_paging p = { s->cr0, s->cr3, s->cr4, s->efer };

	if (!(s->cr0 & CR0_PG))
		fprintf(out, "paging is off: linear addresses are physical\n");
	else if (!(s->cr4 & CR4_PAE))
		fprintf(out, "32-bit paging, cr3 0x%llx\n",
			(unsigned long long)s->cr3);
	else if (!(s->efer & EFER_LMA))
		fprintf(out, "PAE paging, cr3 0x%llx\n",
			(unsigned long long)s->cr3);
	else {
		unsigned int width = s->cr4 & CR4_LA57 ? 57 : 48;
		int64_t sva = (int64_t)(va << (64 - width)) >> (64 - width);

		fprintf(out, "%u-level paging, cr3 0x%llx\n",
			width == 57 ? 5 : 4, (unsigned long long)s->cr3);
		if ((uint64_t)sva != va)
			fprintf(out, "  0x%llx is not canonical\n",
				(unsigned long long)va);
	}
	return x86_translate_walk(m, &p, va, gpa, show_step, out);
}

int inspect_translate(struct machine *m, struct vcpu *v, uint64_t gva,
		      FILE *out)
{
	struct vcpu_regs s;
	uint64_t gpa = 0;
	int err;

	err = vcpu_get_state(v, VCPU_STATE_SREGS, &s);
	if (err)
		return err;
	fprintf(out, "vCPU %u: 0x%llx: ", v->id, (unsigned long long)gva);
	err = walk(m, &s.sregs, gva, out, &gpa);
	if (err) {
		fprintf(out, "0x%llx is not mapped\n", (unsigned long long)gva);
		return -EFAULT;
	}
	fprintf(out, "0x%llx -> 0x%llx\n", (unsigned long long)gva,
		(unsigned long long)gpa);
	return 0;
}

/* ---- the stack -------------------------------------------------------------- */

/* A linear address from a segment and an offset. */
static uint64_t linear(const struct kvm_sregs *s, const struct kvm_segment *seg,
		       uint64_t off)
{
	if ((s->efer & EFER_LMA) && s->cs.l)
		return off;
	return (seg->base + (seg->db ? off & 0xffffffff : off & 0xffff)) &
	       0xffffffff;
}

static int read_virt(struct machine *m, struct vcpu *v, uint64_t gva,
		     uint64_t *val)
{
	uint64_t gpa;
	const void *p;

	if (arch_translate(m, v, gva, &gpa))
		return -EFAULT;
	/* An 8-byte word may straddle two pages. */
	if ((gva & 0xfff) > 0xff8) {
		uint8_t b[8];

		for (unsigned int i = 0; i < 8; i++) {
			if (arch_translate(m, v, gva + i, &gpa) ||
			    !(p = guest_ptr(m, gpa, 1)))
				return -EFAULT;
			b[i] = *(const uint8_t *)p;
		}
		memcpy(val, b, 8);
		return 0;
	}
	p = guest_ptr(m, gpa, 8);
	if (!p)
		return -EFAULT;
	memcpy(val, p, 8);
	return 0;
}

int inspect_stack(struct machine *m, struct vcpu *v, unsigned int words,
		  FILE *out)
{
	struct vcpu_regs s;
	uint64_t sp, bp, ip;
	bool wide;
	int err;

	err = vcpu_get_state(v, VCPU_STATE_REGS | VCPU_STATE_SREGS, &s);
	if (err)
		return err;
	wide = (s.sregs.efer & EFER_LMA) && s.sregs.cs.l;
	sp = linear(&s.sregs, &s.sregs.ss, s.regs.rsp);
	bp = linear(&s.sregs, &s.sregs.ss, s.regs.rbp);
	ip = linear(&s.sregs, &s.sregs.cs, s.regs.rip);
	fprintf(out, "vCPU %u: rip 0x%llx, rsp 0x%llx, rbp 0x%llx%s\n", v->id,
		(unsigned long long)s.regs.rip, (unsigned long long)s.regs.rsp,
		(unsigned long long)s.regs.rbp,
		wide ? "" : " (linear addresses below add the segment bases)");
	fprintf(out, "stack from 0x%llx (%u words):\n", (unsigned long long)sp,
		words);
	for (unsigned int i = 0; i < words; i++) {
		uint64_t a = sp + i * 8, val;

		if (read_virt(m, v, a, &val)) {
			fprintf(out, "  0x%016llx: not mapped\n",
				(unsigned long long)a);
			break;
		}
		fprintf(out, "  0x%016llx: 0x%016llx\n", (unsigned long long)a,
			(unsigned long long)val);
	}
	/* The frame-pointer chain: [rbp] is the caller's rbp, [rbp + 8]
	 * the return address. Only meaningful for code built with frame
	 * pointers; it stops at the first frame that makes no sense. */
	fprintf(out, "frames (frame-pointer chain):\n");
	fprintf(out, "  #0  0x%016llx\n", (unsigned long long)ip);
	for (unsigned int i = 1; i < 32 && wide && bp; i++) {
		uint64_t next, ret;

		if (bp & 7 || read_virt(m, v, bp, &next) ||
		    read_virt(m, v, bp + 8, &ret) || !ret)
			break;
		fprintf(out, "  #%-2u 0x%016llx  (frame at 0x%llx)\n", i,
			(unsigned long long)ret, (unsigned long long)bp);
		if (next <= bp)
			break;
		bp = next;
	}
	return 0;
}

/* ---- the ELF core ------------------------------------------------------------------ */

struct lkvm_core_sregs {
	uint32_t cpu;
	uint32_t reserved;
	struct kvm_sregs sregs;
};

struct out {
	int fd;
	bool seekable;
	uint64_t pos;
	int err;
};

static void out_write(struct out *o, const void *buf, size_t len)
{
	if (o->err)
		return;
	o->err = write_all(o->fd, buf, len);
	if (!o->err)
		o->pos += len;
}

static void out_zero(struct out *o, uint64_t len)
{
	static const char zero[4096];

	if (o->err || !len)
		return;
	if (o->seekable) {
		if (lseek(o->fd, (off_t)len, SEEK_CUR) < 0)
			o->err = -errno;
		else
			o->pos += len;
		return;
	}
	while (len && !o->err) {
		size_t n = (size_t)MIN(len, sizeof(zero));

		out_write(o, zero, n);
		len -= n;
	}
}

static size_t note_size(size_t namesz, size_t descsz)
{
	return sizeof(Elf64_Nhdr) + ALIGN_UP(namesz, 4) + ALIGN_UP(descsz, 4);
}

static char *put_note(char *p, const char *name, uint32_t type,
		      const void *desc, size_t descsz)
{
	Elf64_Nhdr h = {
		.n_namesz = (uint32_t)strlen(name) + 1,
		.n_descsz = (uint32_t)descsz,
		.n_type = type,
	};

	memcpy(p, &h, sizeof(h));
	p += sizeof(h);
	memcpy(p, name, h.n_namesz);
	p += ALIGN_UP(h.n_namesz, 4);
	memcpy(p, desc, descsz);
	return p + ALIGN_UP(descsz, 4);
}

static void fill_prstatus(struct elf_prstatus *ps, unsigned int id,
			  const struct vcpu_regs *s)
{
	struct user_regs_struct r = {
		.r15 = s->regs.r15, .r14 = s->regs.r14, .r13 = s->regs.r13,
		.r12 = s->regs.r12, .rbp = s->regs.rbp, .rbx = s->regs.rbx,
		.r11 = s->regs.r11, .r10 = s->regs.r10, .r9 = s->regs.r9,
		.r8 = s->regs.r8, .rax = s->regs.rax, .rcx = s->regs.rcx,
		.rdx = s->regs.rdx, .rsi = s->regs.rsi, .rdi = s->regs.rdi,
		.orig_rax = ~0ull, .rip = s->regs.rip,
		.cs = s->sregs.cs.selector, .eflags = s->regs.rflags,
		.rsp = s->regs.rsp, .ss = s->sregs.ss.selector,
		.fs_base = s->sregs.fs.base, .gs_base = s->sregs.gs.base,
		.ds = s->sregs.ds.selector, .es = s->sregs.es.selector,
		.fs = s->sregs.fs.selector, .gs = s->sregs.gs.selector,
	};

	memset(ps, 0, sizeof(*ps));
	/* gdb shows each vCPU as a thread, LWP id + 1. */
	ps->pr_pid = (pid_t)id + 1;
	memcpy(&ps->pr_reg, &r, MIN(sizeof(r), sizeof(ps->pr_reg)));
}

int64_t inspect_write_core(struct machine *m, int fd, const char *name)
{
	long page = sysconf(_SC_PAGESIZE);
	unsigned int nload = 0, nph;
	size_t notes_len, hdr_len;
	struct elf_prpsinfo ps = { .pr_state = 0 };
	struct out o = { .fd = fd };
	Elf64_Phdr *ph = NULL;
	char *notes = NULL, *p;
	uint64_t off;
	struct stat st;
	int err = 0;

	o.seekable = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		     lseek(fd, 0, SEEK_SET) == 0;
	if (o.seekable && ftruncate(fd, 0) < 0)
		return -errno;
	for (unsigned int i = 0; i < m->nmem; i++)
		nload += !m->mem[i].readonly;

	notes_len = note_size(5, sizeof(ps)) +
		    m->ncpus * (note_size(5, sizeof(struct elf_prstatus)) +
				note_size(5, sizeof(struct lkvm_core_sregs)));
	notes = calloc(1, notes_len);
	nph = 1 + nload;
	ph = calloc(nph, sizeof(*ph));
	if (!notes || !ph) {
		err = -ENOMEM;
		goto out;
	}
	snprintf(ps.pr_fname, sizeof(ps.pr_fname), "lkvm");
	snprintf(ps.pr_psargs, sizeof(ps.pr_psargs), "guest %s", name);
	p = put_note(notes, "CORE", NT_PRPSINFO, &ps, sizeof(ps));
	for (unsigned int i = 0; i < m->ncpus; i++) {
		struct vcpu_regs s;
		struct elf_prstatus pr;
		struct lkvm_core_sregs ls = { .cpu = i };

		err = vcpu_get_state(&m->vcpus[i],
				     VCPU_STATE_REGS | VCPU_STATE_SREGS, &s);
		if (err)
			goto out;
		fill_prstatus(&pr, i, &s);
		ls.sregs = s.sregs;
		p = put_note(p, "CORE", NT_PRSTATUS, &pr, sizeof(pr));
		p = put_note(p, "LKVM", LKVM_NOTE_SREGS, &ls, sizeof(ls));
	}

	hdr_len = sizeof(Elf64_Ehdr) + nph * sizeof(Elf64_Phdr);
	ph[0] = (Elf64_Phdr){
		.p_type = PT_NOTE,
		.p_offset = hdr_len,
		.p_filesz = notes_len,
		.p_align = 4,
	};
	off = ALIGN_UP(hdr_len + notes_len, (uint64_t)page);
	for (unsigned int i = 0, j = 1; i < m->nmem; i++) {
		const struct mem_region *r = &m->mem[i];

		if (r->readonly)
			continue;
		ph[j++] = (Elf64_Phdr){
			.p_type = PT_LOAD,
			.p_flags = PF_R | PF_W | PF_X,
			.p_offset = off,
			.p_vaddr = r->gpa,
			.p_paddr = r->gpa,
			.p_filesz = r->size,
			.p_memsz = r->size,
			.p_align = (uint64_t)page,
		};
		off += ALIGN_UP(r->size, (uint64_t)page);
	}

	{
		Elf64_Ehdr eh = {
			.e_ident = { ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3,
				     ELFCLASS64, ELFDATA2LSB, EV_CURRENT,
				     ELFOSABI_NONE },
			.e_type = ET_CORE,
			.e_machine = EM_X86_64,
			.e_version = EV_CURRENT,
			.e_phoff = sizeof(Elf64_Ehdr),
			.e_ehsize = sizeof(Elf64_Ehdr),
			.e_phentsize = sizeof(Elf64_Phdr),
			.e_phnum = (uint16_t)nph,
		};

		out_write(&o, &eh, sizeof(eh));
	}
	out_write(&o, ph, nph * sizeof(*ph));
	out_write(&o, notes, notes_len);
	for (unsigned int j = 1; j < nph && !o.err; j++) {
		const struct mem_region *r = NULL;
		unsigned char *vec;
		size_t pages;

		for (unsigned int i = 0; i < m->nmem && !r; i++)
			if (!m->mem[i].readonly && m->mem[i].gpa == ph[j].p_paddr)
				r = &m->mem[i];
		if (!r)
			break;
		out_zero(&o, ph[j].p_offset - o.pos);
		pages = (size_t)(ALIGN_UP(r->size, (uint64_t)page) /
				 (uint64_t)page);
		/* Pages never touched read as zeros: leave holes for them.
		 * The guest's RAM is page-aligned (setup_memory mmaps it). */
		vec = malloc(pages);
		if (vec && mincore(r->host, r->size, vec) < 0)
			memset(vec, 1, pages);
		for (size_t pg = 0; pg < pages && !o.err; pg++) {
			uint64_t at = (uint64_t)pg * (uint64_t)page;
			size_t n = (size_t)MIN((uint64_t)page, r->size - at);
			const char *src = (const char *)r->host + at;

			if (vec && !(vec[pg] & 1))
				out_zero(&o, n);
			else
				out_write(&o, src, n);
		}
		free(vec);
	}
	out_zero(&o, off - o.pos);
	if (!o.err && o.seekable && ftruncate(fd, (off_t)o.pos) < 0)
		o.err = -errno;
	err = o.err;
out:
	free(notes);
	free(ph);
	return err ? err : (int64_t)o.pos;
}
