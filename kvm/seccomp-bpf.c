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
 * The call number is found by a binary search (JGE tests) down to leaves
 * of a few JEQ tests; a conditional call's leaf test jumps to its block
 * of argument tests, placed after the search.
 *
 * The shape matters for start-up: when a filter is loaded, the kernel
 * runs it for every system call number to find the calls it allows
 * whatever their arguments (its per-filter cache). A chain of tests in
 * number order made that run cost up to ~3 us per instruction (measured
 * with filters that match nothing), and loading lkvm's process-wide
 * filter took about 0.2 ms, a tenth of lkvm's time to the guest's first
 * byte (bench/boot.sh); the search makes every call number cost a few
 * tests.
 */
#include "lkvm/seccomp.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#define X32_SYSCALL_BIT 0x40000000u
#define ARG_LO(n) ((unsigned int)(offsetof(struct seccomp_data, args) + 8 * (n)))
#define ARG_HI(n) (ARG_LO(n) + 4)

struct prog {
	struct sock_filter *insn;
	unsigned int len, cap;
	bool oom;
};

/*
 * The calls of one number. hit: the search answers it at its leaf with
 * the program's hit action (ALLOW in an allowlist, TRAP in a narrowing
 * program); otherwise the leaf jumps to the call's block of argument
 * tests: ALLOW when one of rules holds, or, inverted, TRAP when one
 * does.
 */
struct call {
	int nr;
	bool hit, inverted;
	const struct seccomp_rule **rules;
	size_t nrules;
	unsigned int ja;	/* its leaf's jump to its block */
};

/* A leaf tests this many numbers one after another. */
#define LEAF 8

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

/* Orders the rules by call number, keeping each table's order within a
 * number: a counting sort, as the numbers are few and small (qsort of
 * the same rules was most of the build's time, on the way to the guest's
 * first instruction). */
static int sort_by_nr(const struct seccomp_rule **rules, size_t n)
{
	const struct seccomp_rule **out;
	unsigned int *count;
	int max = 0;

	for (size_t i = 0; i < n; i++)
		max = rules[i]->nr > max ? rules[i]->nr : max;
	count = calloc((size_t)max + 2, sizeof(*count));
	out = malloc(n * sizeof(*out));
	if (!count || !out) {
		free(count);
		free(out);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		count[rules[i]->nr + 1]++;
	for (int k = 1; k <= max + 1; k++)
		count[k] += count[k - 1];
	for (size_t i = 0; i < n; i++)
		out[count[rules[i]->nr]++] = rules[i];
	memcpy(rules, out, n * sizeof(*rules));
	free(count);
	free(out);
	return 0;
}

/* A program's two answers: where its tests find nothing (miss), and
 * where one matches (hit). */
struct answers {
	unsigned int miss, hit;
};

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
 * The conditional rules of one call: the hit action (ALLOW in an
 * allowlist) when one holds, the miss action otherwise. Tests of an
 * argument's low half alone (ioctl requests, flags) share the load of
 * that argument and a RET of the hit action at the end; tests of both
 * halves (only in an allowlist) end in their own RET ALLOW.
 */
static int emit_block(struct prog *p, const struct seccomp_rule **r, size_t n,
		      const struct answers *a)
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
	ret(p, a->miss);
	if (nj)
		ret(p, a->hit);
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

/* Instructions the search over calls [lo, hi) takes (emit_search). */
static unsigned int search_len(const struct call *c, size_t lo, size_t hi)
{
	unsigned int len = 1, left;	/* a leaf ends in the miss action */
	size_t mid;
	bool hit = false;

	if (hi - lo <= LEAF) {
		for (size_t k = lo; k < hi; k++) {
			len += c[k].hit ? 1 : 2;
			hit |= c[k].hit;
		}
		return len + hit;
	}
	mid = lo + (hi - lo) / 2;
	left = search_len(c, lo, mid);
	return (left > 255 ? 2 : 1) + left + search_len(c, mid, hi);
}

/*
 * The binary search over calls [lo, hi), the number in the accumulator.
 * A node: JGE on its middle call's number, to the upper half (through a
 * JA when the lower half is out of a conditional jump's reach). A leaf:
 * JEQ per call, to a shared RET of the hit action or to a JA to the
 * call's block; no match: the miss action.
 */
static void emit_search(struct prog *p, struct call *c, size_t lo, size_t hi,
			const struct answers *a)
{
	size_t mid = lo + (hi - lo) / 2;
	unsigned int left, at;

	if (hi - lo <= LEAF) {
		unsigned int hits[LEAF], nh = 0;

		for (size_t k = lo; k < hi; k++) {
			if (c[k].hit) {
				hits[nh++] = p->len;
				emit(p, BPF_JMP | BPF_JEQ | BPF_K, 0, 0,
				     (unsigned int)c[k].nr);
				continue;
			}
			emit(p, BPF_JMP | BPF_JEQ | BPF_K, 0, 1,
			     (unsigned int)c[k].nr);
			c[k].ja = p->len;
			emit(p, BPF_JMP | BPF_JA, 0, 0, 0);
		}
		ret(p, a->miss);
		if (nh)
			ret(p, a->hit);
		for (unsigned int k = 0; !p->oom && k < nh; k++)
			p->insn[hits[k]].jt =
				(unsigned char)(p->len - 2 - hits[k]);
		return;
	}
	left = search_len(c, lo, mid);
	if (left <= 255) {
		emit(p, BPF_JMP | BPF_JGE | BPF_K, (unsigned char)left, 0,
		     (unsigned int)c[mid].nr);
		emit_search(p, c, lo, mid, a);
	} else {
		emit(p, BPF_JMP | BPF_JGE | BPF_K, 0, 1,
		     (unsigned int)c[mid].nr);
		at = p->len;
		emit(p, BPF_JMP | BPF_JA, 0, 0, 0);
		emit_search(p, c, lo, mid, a);
		if (!p->oom)
			p->insn[at].k = p->len - at - 1;
	}
	emit_search(p, c, mid, hi, a);
}

static const struct answers allowlist = {
	.miss = SECCOMP_RET_TRAP, .hit = SECCOMP_RET_ALLOW,
};
static const struct answers inverted = {
	.miss = SECCOMP_RET_ALLOW, .hit = SECCOMP_RET_TRAP,
};

/* The search over the nc calls, then the blocks of those that are not
 * hits. */
static int emit_calls(struct prog *p, struct call *c, size_t nc,
		      const struct answers *a)
{
	int err = 0;

	if (nc)
		emit_search(p, c, 0, nc, a);
	else
		ret(p, a->miss);
	for (size_t k = 0; !err && !p->oom && k < nc; k++) {
		if (c[k].hit)
			continue;
		p->insn[c[k].ja].k = p->len - c[k].ja - 1;
		err = emit_block(p, c[k].rules, c[k].nrules,
				 c[k].inverted ? &inverted : &allowlist);
	}
	return err;
}

/* The rules of tables that name one of classes, sorted by number, in
 * *out (malloc'd); their count, or -errno. */
static ssize_t collect(const struct seccomp_rule *const *tables,
		       unsigned int ntables, unsigned int classes,
		       const struct seccomp_rule ***out)
{
	const struct seccomp_rule **rules = NULL;
	size_t n = 0, cap = 0;
	int err;

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
	if (n && (err = sort_by_nr(rules, n))) {
		free(rules);
		return err;
	}
	*out = rules;
	return (ssize_t)n;
}

/* Rules [i, *end) share rules[i]'s number; whether one has no condition. */
static bool same_nr(const struct seccomp_rule **rules, size_t n, size_t i,
		    size_t *end)
{
	bool any = false;
	size_t j;

	for (j = i; j < n && rules[j]->nr == rules[i]->nr; j++)
		any |= rules[j]->match == SECCOMP_ARG_ANY;
	*end = j;
	return any;
}

static int finish(struct prog *p, int err, struct sock_fprog *out)
{
	if (err || p->oom || p->len > BPF_MAXINSNS) {
		free(p->insn);
		return err ? err : p->oom ? -ENOMEM : -E2BIG;
	}
	out->len = (unsigned short)p->len;
	out->filter = p->insn;
	return 0;
}

int seccomp_bpf_build(const struct seccomp_rule *const *tables,
		      unsigned int ntables, unsigned int classes,
		      struct sock_fprog *out)
{
	const struct seccomp_rule **rules = NULL;
	struct prog p = { 0 };
	struct call *c;
	ssize_t n = collect(tables, ntables, classes, &rules);
	size_t nc = 0;
	int err;

	if (n < 0)
		return (int)n;
	c = calloc(n ? (size_t)n : 1, sizeof(*c));
	if (!c) {
		free(rules);
		return -ENOMEM;
	}
	for (size_t i = 0, j; i < (size_t)n; i = j) {
		bool any = same_nr(rules, (size_t)n, i, &j);

		if (rules[i]->nr == __NR_clone3)
			continue;	/* answered before the search */
		c[nc++] = (struct call){ .nr = rules[i]->nr, .hit = any,
					 .rules = rules + i, .nrules = j - i };
	}

	load(&p, offsetof(struct seccomp_data, arch));
	emit(&p, BPF_JMP | BPF_JEQ | BPF_K, 1, 0, AUDIT_ARCH_X86_64);
	ret(&p, SECCOMP_RET_KILL_PROCESS);
	load(&p, offsetof(struct seccomp_data, nr));
	emit(&p, BPF_JMP | BPF_JGE | BPF_K, 0, 1, X32_SYSCALL_BIT);
	ret(&p, SECCOMP_RET_KILL_PROCESS);
	emit(&p, BPF_JMP | BPF_JEQ | BPF_K, 0, 1, __NR_clone3);
	ret(&p, SECCOMP_RET_ERRNO | ENOSYS);

	err = emit_calls(&p, c, nc, &allowlist);
	free(c);
	free(rules);
	return finish(&p, err, out);
}

/*
 * A call where all's rules (n of them) are exact tests of one argument's
 * low half under one mask (ioctl requests, say) allows the values they
 * name; c's rules keep some. The values all's rules name and c's do not
 * are then the ones to trap, and all's program refuses every other: when
 * they are fewer than c's, c's block becomes an inverted block of them,
 * kept in out (*nout grows).
 */
static void invert(struct call *c, const struct seccomp_rule **all, size_t n,
		   const struct seccomp_rule **out, size_t *nout)
{
	unsigned int arg0, m0, v0, mh, vh, arg, m, v;
	size_t nrest = 0;

	rule_test(all[0], &arg0, &m0, &v0, &mh, &vh);
	for (size_t i = 0; i < n; i++) {
		bool kept = false;

		rule_test(all[i], &arg, &m, &v, &mh, &vh);
		if (mh || arg != arg0 || m != m0)
			return;
		for (size_t k = 0; k < c->nrules && !kept; k++) {
			unsigned int ka, km, kv, kh, khv;

			rule_test(c->rules[k], &ka, &km, &kv, &kh, &khv);
			kept = kv == v;
		}
		if (!kept)
			out[nrest++] = all[i];
	}
	if (nrest >= c->nrules)
		return;
	c->rules = out;
	c->nrules = nrest;
	c->inverted = true;
	*nout += nrest;
}

/*
 * What a thread of classes adds on top of the process-wide program of
 * every class (seccomp runs both and keeps the stricter answer): only
 * the calls whose rules differ. A call the thread's classes have no rule
 * for traps; one where they keep some of its rules gets those as its
 * block; one they keep whole, and every call the process-wide program
 * decides anyway (another ABI, clone3, a call nobody allows), is
 * allowed here. Loading a program costs the kernel time in proportion
 * to its length (compiling it, running it for every call number), and
 * this one is a fraction of the class's whole allowlist; every call the
 * thread makes that the kernel's cache does not answer also runs less.
 */
int seccomp_bpf_build_narrowing(const struct seccomp_rule *const *tables,
				unsigned int ntables, unsigned int classes,
				struct sock_fprog *out)
{
	const struct seccomp_rule **all = NULL, **mine = NULL;
	ssize_t na = collect(tables, ntables, SECCOMP_ALL, &all);
	ssize_t nm = na < 0 ? na : collect(tables, ntables, classes, &mine);
	const struct seccomp_rule **rest;
	struct prog p = { 0 };
	struct call *c;
	size_t nc = 0, m = 0, nrest = 0;
	int err;

	if (nm < 0) {
		free(all);
		return (int)nm;
	}
	c = calloc(na ? (size_t)na : 1, sizeof(*c));
	rest = calloc(na ? (size_t)na : 1, sizeof(*rest));
	if (!c || !rest) {
		free(c);
		free(rest);
		free(all);
		free(mine);
		return -ENOMEM;
	}
	/* Both lists are sorted by number, mine a sublist of all's, in the
	 * same order within a number. */
	for (size_t i = 0, j; i < (size_t)na; i = j) {
		bool any_all = same_nr(all, (size_t)na, i, &j), any_mine = false;
		size_t k = m;

		if (m < (size_t)nm && mine[m]->nr == all[i]->nr)
			any_mine = same_nr(mine, (size_t)nm, m, &m);
		if (all[i]->nr == __NR_clone3 || any_mine ||
		    (m - k == j - i && !any_all))
			continue;	/* the same answers as all's */
		/* None of its rules: a hit (TRAP). Some: their block, or the
		 * block of the others when that is shorter. */
		c[nc] = (struct call){ .nr = all[i]->nr, .hit = m == k,
				       .rules = mine + k, .nrules = m - k };
		if (m > k && !any_all)
			invert(&c[nc], all + i, j - i, rest + nrest, &nrest);
		nc++;
	}
	load(&p, offsetof(struct seccomp_data, nr));
	err = emit_calls(&p, c, nc, &inverted);
	free(c);
	free(all);
	free(mine);
	free(rest);
	return finish(&p, err, out);
}
