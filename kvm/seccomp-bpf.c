// SPDX-License-Identifier: GPL-2.0
/*
 * The seccomp allowlist (lkvm/seccomp.h) as a classic BPF program.
 *
 * libseccomp makes the same programs, but takes about 0.5 ms for each of
 * lkvm's four, which was more than the rest of lkvm's start-up together
 * (bench/boot.sh); this takes microseconds. tests/unit/test-seccomp-bpf.c
 * runs both programs side by side over every system call number and the
 * arguments the rules name, and requires the same answer from each.
 *
 * The program:
 *   - another architecture, or an x32 call on x86-64: kill the process;
 *   - clone3: fails with ENOSYS (glibc falls back to clone, whose flags
 *     a filter can read);
 *   - a call with an unconditional rule: allowed;
 *   - a call with conditional rules: allowed when one of them holds,
 *     trapped otherwise;
 *   - anything else: trapped (SECCOMP_RET_TRAP, lkvm's report).
 * Calls are tested one after another, in number order. An allowed call's
 * test jumps on a match to a RET ALLOW shared by the tests before it (one
 * within a conditional jump's reach); each conditional block is entered
 * on a match and jumped over otherwise.
 */
#include "lkvm/seccomp.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdlib.h>

#define X32_SYSCALL_BIT 0x40000000u
#define ARG_LO(n) ((unsigned int)(offsetof(struct seccomp_data, args) + 8 * (n)))
#define ARG_HI(n) (ARG_LO(n) + 4)

struct prog {
	struct sock_filter *insn;
	unsigned int len, cap;
	bool oom;
	/* Tests of unconditionally allowed calls, whose jump on a match
	 * goes to the next shared RET ALLOW (an "island"). */
	unsigned int pending[256], npending;
};

/* A conditional jump reaches 255 instructions ahead. */
#define REACH 250

static void emit(struct prog *p, unsigned short code, unsigned char jt,
		 unsigned char jf, unsigned int k)
{
	if (p->len == p->cap) {
		unsigned int cap = p->cap ? p->cap * 2 : 256;
		struct sock_filter *n = realloc(p->insn, cap * sizeof(*n));

		if (!n) {
			p->oom = true;
			return;
		}
		p->insn = n;
		p->cap = cap;
	}
	p->insn[p->len++] = (struct sock_filter){ code, jt, jf, k };
}

static void ret(struct prog *p, unsigned int action)
{
	emit(p, BPF_RET | BPF_K, 0, 0, action);
}

static void load(struct prog *p, unsigned int off)
{
	emit(p, BPF_LD | BPF_W | BPF_ABS, 0, 0, off);
}

/* Ends the pending tests' jumps at a RET ALLOW here; `over`: the code
 * before falls through, so a jump leads around the island. */
static void island(struct prog *p, bool over)
{
	if (!p->npending)
		return;
	if (over)
		emit(p, BPF_JMP | BPF_JA, 0, 0, 1);
	ret(p, SECCOMP_RET_ALLOW);
	for (unsigned int i = 0; !p->oom && i < p->npending; i++)
		p->insn[p->pending[i]].jt =
			(unsigned char)(p->len - 2 - p->pending[i]);
	p->npending = 0;
}

/* Room for `len` more instructions before the pending jumps' island? */
static void reserve(struct prog *p, unsigned int len)
{
	if (p->npending &&
	    (p->len + len + 2 - p->pending[0] > REACH ||
	     p->npending == sizeof(p->pending) / sizeof(p->pending[0])))
		island(p, true);
}

static int by_nr(const void *a, const void *b)
{
	const struct seccomp_rule *x = *(const struct seccomp_rule *const *)a;
	const struct seccomp_rule *y = *(const struct seccomp_rule *const *)b;

	return (x->nr > y->nr) - (x->nr < y->nr);
}

/* The argument test a conditional rule makes, as masks and values on the
 * two 32-bit halves of the argument. */
static void rule_test(const struct seccomp_rule *r, unsigned int *arg,
		      unsigned int *mlo, unsigned int *vlo, unsigned int *mhi,
		      unsigned int *vhi)
{
	unsigned long mask = r->match == SECCOMP_ARG_IOCTL ? 0xffffffffu :
							     r->mask;

	*arg = r->match == SECCOMP_ARG_IOCTL ? 1 : r->arg;
	*mlo = (unsigned int)mask;
	*mhi = (unsigned int)(mask >> 32);
	*vlo = (unsigned int)r->value & *mlo;
	*vhi = (unsigned int)(r->value >> 32) & *mhi;
}

/* One conditional rule: ALLOW when it holds, on to the next otherwise. */
static void emit_test(struct prog *p, const struct seccomp_rule *r)
{
	unsigned int arg, mlo, vlo, mhi, vhi;
	unsigned char hi_len;

	rule_test(r, &arg, &mlo, &vlo, &mhi, &vhi);
	/* The high half's test: load, mask, compare (3), if it has one. */
	hi_len = mhi ? (mhi == 0xffffffffu ? 2 : 3) : 0;
	load(p, ARG_LO(arg));
	if (mlo != 0xffffffffu)
		emit(p, BPF_ALU | BPF_AND | BPF_K, 0, 0, mlo);
	emit(p, BPF_JMP | BPF_JEQ | BPF_K, 0, (unsigned char)(hi_len + 1), vlo);
	if (mhi) {
		load(p, ARG_HI(arg));
		if (mhi != 0xffffffffu)
			emit(p, BPF_ALU | BPF_AND | BPF_K, 0, 0, mhi);
		emit(p, BPF_JMP | BPF_JEQ | BPF_K, 0, 1, vhi);
	}
	ret(p, SECCOMP_RET_ALLOW);
}

/* Instructions emit_test() makes for r. */
static unsigned int test_len(const struct seccomp_rule *r)
{
	unsigned int arg, mlo, vlo, mhi, vhi;

	rule_test(r, &arg, &mlo, &vlo, &mhi, &vhi);
	return 3 + (mlo != 0xffffffffu) +
	       (mhi ? 2 + (mhi != 0xffffffffu) : 0);
}

static bool low_only(const struct seccomp_rule *r)
{
	unsigned int arg, mlo, vlo, mhi, vhi;

	rule_test(r, &arg, &mlo, &vlo, &mhi, &vhi);
	return !mhi;
}

/* Orders low-half tests by the argument and mask they load. */
static int by_load(const void *a, const void *b)
{
	unsigned int aa, am, av, ah, ahv, ba, bm, bv, bh, bhv;

	rule_test(*(const struct seccomp_rule *const *)a, &aa, &am, &av, &ah,
		  &ahv);
	rule_test(*(const struct seccomp_rule *const *)b, &ba, &bm, &bv, &bh,
		  &bhv);
	if (aa != ba)
		return aa < ba ? -1 : 1;
	return (am > bm) - (am < bm);
}

/*
 * The conditional rules of one call: ALLOW when one holds, TRAP
 * otherwise. Tests of an argument's low half alone (ioctl requests,
 * flags) share the load of that argument and a RET ALLOW at the end;
 * tests of both halves end in their own.
 */
static int emit_block(struct prog *p, const struct seccomp_rule **r, size_t n)
{
	unsigned int *jumps = calloc(n ? n : 1, sizeof(*jumps)), nj = 0;
	unsigned int cur_arg = ~0u, cur_mask = 0;

	if (!jumps)
		return -ENOMEM;
	qsort(r, n, sizeof(*r), by_load);
	for (size_t k = 0; k < n; k++) {
		unsigned int arg, mlo, vlo, mhi, vhi;

		if (!low_only(r[k]))
			continue;
		rule_test(r[k], &arg, &mlo, &vlo, &mhi, &vhi);
		if (arg != cur_arg || mlo != cur_mask) {
			load(p, ARG_LO(arg));
			if (mlo != 0xffffffffu)
				emit(p, BPF_ALU | BPF_AND | BPF_K, 0, 0, mlo);
			cur_arg = arg;
			cur_mask = mlo;
		}
		jumps[nj++] = p->len;
		emit(p, BPF_JMP | BPF_JEQ | BPF_K, 0, 0, vlo);
	}
	for (size_t k = 0; k < n; k++)
		if (!low_only(r[k]))
			emit_test(p, r[k]);
	ret(p, SECCOMP_RET_TRAP);
	if (nj)
		ret(p, SECCOMP_RET_ALLOW);
	for (unsigned int k = 0; !p->oom && k < nj; k++) {
		unsigned int d = p->len - 2 - jumps[k];

		if (d > 255) {
			free(jumps);
			return -E2BIG;	/* too many tests for one call */
		}
		p->insn[jumps[k]].jt = (unsigned char)d;
	}
	free(jumps);
	return 0;
}

int seccomp_bpf_build(const struct seccomp_rule *const *tables,
		      unsigned int ntables, unsigned int classes,
		      struct sock_fprog *out)
{
	const struct seccomp_rule **rules = NULL;
	struct prog p = { 0 };
	size_t n = 0, cap = 0;

	for (unsigned int t = 0; t < ntables; t++) {
		for (const struct seccomp_rule *r = tables[t]; r && r->nr >= 0;
		     r++) {
			if (!(r->classes & classes))
				continue;
			if (r->match != SECCOMP_ARG_ANY &&
			    r->match != SECCOMP_ARG_IOCTL &&
			    (r->match != SECCOMP_ARG_MASKED || r->arg > 5)) {
				free(rules);
				return -EINVAL;
			}
			if (n == cap) {
				const struct seccomp_rule **m;

				cap = cap ? cap * 2 : 256;
				m = realloc(rules, cap * sizeof(*m));
				if (!m) {
					free(rules);
					return -ENOMEM;
				}
				rules = m;
			}
			rules[n++] = r;
		}
	}
	if (n)
		qsort(rules, n, sizeof(*rules), by_nr);

	load(&p, offsetof(struct seccomp_data, arch));
	emit(&p, BPF_JMP | BPF_JEQ | BPF_K, 1, 0, AUDIT_ARCH_X86_64);
	ret(&p, SECCOMP_RET_KILL_PROCESS);
	load(&p, offsetof(struct seccomp_data, nr));
	emit(&p, BPF_JMP | BPF_JGE | BPF_K, 0, 1, X32_SYSCALL_BIT);
	ret(&p, SECCOMP_RET_KILL_PROCESS);
	emit(&p, BPF_JMP | BPF_JEQ | BPF_K, 0, 1, __NR_clone3);
	ret(&p, SECCOMP_RET_ERRNO | ENOSYS);

	for (size_t i = 0, j; i < n; i = j) {
		bool always = false;
		unsigned int len = 2, ja;	/* the closing TRAP and ALLOW */
		int err;

		for (j = i; j < n && rules[j]->nr == rules[i]->nr; j++) {
			always |= rules[j]->match == SECCOMP_ARG_ANY;
			len += test_len(rules[j]);
		}
		if (rules[i]->nr == __NR_clone3)
			continue;	/* answered above */
		if (always) {
			reserve(&p, 1);
			if (!p.oom)
				p.pending[p.npending++] = p.len;
			emit(&p, BPF_JMP | BPF_JEQ | BPF_K, 0, 0,
			     (unsigned int)rules[i]->nr);
			continue;
		}
		reserve(&p, len + 2);
		/* Into the block on a match; over it otherwise. Inside, the
		 * accumulator no longer holds the number: the block ends in
		 * TRAP, since no later test could match this call. */
		emit(&p, BPF_JMP | BPF_JEQ | BPF_K, 1, 0,
		     (unsigned int)rules[i]->nr);
		ja = p.len;
		emit(&p, BPF_JMP | BPF_JA, 0, 0, 0);
		err = emit_block(&p, rules + i, j - i);
		if (err) {
			free(rules);
			free(p.insn);
			return err;
		}
		if (!p.oom)
			p.insn[ja].k = p.len - ja - 1;
	}
	ret(&p, SECCOMP_RET_TRAP);
	island(&p, false);
	free(rules);

	if (p.oom || p.len > BPF_MAXINSNS) {
		free(p.insn);
		return p.oom ? -ENOMEM : -E2BIG;
	}
	out->len = (unsigned short)p.len;
	out->filter = p.insn;
	return 0;
}
