// SPDX-License-Identifier: GPL-2.0
/*
 * lkvm's own seccomp compiler (kvm/seccomp-bpf.c) against libseccomp:
 * for the core allowlist plus every device's, for each thread class, and
 * for rules of every kind, both programs run in a small classic-BPF
 * interpreter over every system call number (and x32 and i386 calls) and
 * over the argument values the rules name and their neighbours, and must
 * answer the same.
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lkvm/device.h"
#include "lkvm/seccomp.h"
#include "tap.h"

/* Instructions the last run() executed before it decided or loaded a
 * call argument. */
static unsigned int steps;

/* Runs a seccomp BPF program on d; the action it returns. */
static uint32_t run(const struct sock_fprog *p, const struct seccomp_data *d)
{
	uint32_t a = 0, x = 0, mem[BPF_MEMWORDS] = { 0 };
	const uint8_t *data = (const uint8_t *)d;

	bool searching = true;

	steps = 0;
	for (unsigned int pc = 0; pc < p->len; pc++) {
		const struct sock_filter *f = &p->filter[pc];

		if (BPF_CLASS(f->code) == BPF_LD && BPF_MODE(f->code) == BPF_ABS &&
		    f->k >= offsetof(struct seccomp_data, args))
			searching = false;
		steps += searching;
		uint32_t src = BPF_SRC(f->code) == BPF_X ? x : f->k;

		switch (BPF_CLASS(f->code)) {
		case BPF_LD:
			if (BPF_MODE(f->code) == BPF_ABS) {
				if (f->k + 4 > sizeof(*d))
					return 0xdead;
				memcpy(&a, data + f->k, 4);
			} else if (BPF_MODE(f->code) == BPF_MEM) {
				a = mem[f->k % BPF_MEMWORDS];
			} else if (BPF_MODE(f->code) == BPF_IMM) {
				a = f->k;
			} else {
				return 0xdead;
			}
			break;
		case BPF_LDX:
			if (BPF_MODE(f->code) == BPF_MEM)
				x = mem[f->k % BPF_MEMWORDS];
			else
				x = f->k;
			break;
		case BPF_ST:
			mem[f->k % BPF_MEMWORDS] = a;
			break;
		case BPF_STX:
			mem[f->k % BPF_MEMWORDS] = x;
			break;
		case BPF_ALU:
			switch (BPF_OP(f->code)) {
			case BPF_AND: a &= src; break;
			case BPF_OR: a |= src; break;
			case BPF_ADD: a += src; break;
			case BPF_SUB: a -= src; break;
			case BPF_RSH: a >>= src; break;
			case BPF_LSH: a <<= src; break;
			default: return 0xdead;
			}
			break;
		case BPF_JMP: {
			bool t;

			if (BPF_OP(f->code) == BPF_JA) {
				pc += f->k;
				break;
			}
			switch (BPF_OP(f->code)) {
			case BPF_JEQ: t = a == src; break;
			case BPF_JGT: t = a > src; break;
			case BPF_JGE: t = a >= src; break;
			case BPF_JSET: t = a & src; break;
			default: return 0xdead;
			}
			pc += t ? f->jt : f->jf;
			break;
		}
		case BPF_RET:
			return BPF_RVAL(f->code) == BPF_A ? a : f->k;
		case BPF_MISC:
			if (BPF_MISCOP(f->code) == BPF_TAX)
				x = a;
			else
				a = x;
			break;
		default:
			return 0xdead;
		}
	}
	return 0xdead;	/* fell off the end */
}

/* The same rules through libseccomp, as lkvm once built them. */
static int reference(const struct seccomp_rule *const *tables, unsigned int nt,
		     unsigned int classes, struct sock_fprog *out)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
	int err = ctx ? 0 : -ENOMEM, fd;
	off_t len;

	if (!err)
		err = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH,
				       SCMP_ACT_KILL_PROCESS);
	if (!err)
		err = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS),
				       SCMP_SYS(clone3), 0);
	for (unsigned int t = 0; !err && t < nt; t++) {
		for (const struct seccomp_rule *r = tables[t]; !err && r->nr >= 0;
		     r++) {
			struct scmp_arg_cmp c;

			if (!(r->classes & classes) || r->nr == __NR_clone3)
				continue;
			if (r->match == SECCOMP_ARG_ANY) {
				err = seccomp_rule_add(ctx, SCMP_ACT_ALLOW,
						       r->nr, 0);
				continue;
			}
			if (r->match == SECCOMP_ARG_IOCTL)
				c = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu,
					    r->value & 0xffffffffu);
			else
				c = (struct scmp_arg_cmp){ r->arg,
							   SCMP_CMP_MASKED_EQ,
							   r->mask, r->value };
			err = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, r->nr, 1,
					       c);
		}
	}
	fd = memfd_create("ref", 0);
	if (!err)
		err = seccomp_export_bpf(ctx, fd);
	len = lseek(fd, 0, SEEK_END);
	out->len = (unsigned short)(len / sizeof(struct sock_filter));
	out->filter = malloc((size_t)len);
	if (!err && pread(fd, out->filter, (size_t)len, 0) != len)
		err = -EIO;
	close(fd);
	seccomp_release(ctx);
	return err;
}

static unsigned long cases[64];
static unsigned int ncases;

static void add_case(unsigned long v)
{
	if (ncases < sizeof(cases) / sizeof(cases[0]))
		cases[ncases++] = v;
}

/* What seccomp answers when a thread runs under both programs: the
 * stricter action (the lower one, taken as signed: KILL_PROCESS first). */
static uint32_t stricter(uint32_t x, uint32_t y)
{
	int32_t ax = (int32_t)(x & SECCOMP_RET_ACTION_FULL);
	int32_t ay = (int32_t)(y & SECCOMP_RET_ACTION_FULL);

	return ay < ax ? y : x;
}

/* Program a, stacked on under when there is one. */
static const struct sock_fprog *under;

static uint32_t run_a(const struct sock_fprog *a, const struct seccomp_data *d)
{
	return under ? stricter(run(under, d), run(a, d)) : run(a, d);
}

/* Both programs over every call number, and over each rule's argument
 * values and their neighbours on its argument. Mismatches found. */
static unsigned int compare(const struct seccomp_rule *const *tables,
			    unsigned int nt, const struct sock_fprog *a,
			    const struct sock_fprog *b)
{
	unsigned int bad = 0;
	struct seccomp_data d = { 0 };

	for (int arch = 0; arch < 2; arch++) {
		d.arch = arch ? AUDIT_ARCH_I386 : AUDIT_ARCH_X86_64;
		for (int nr = 0; nr < 600; nr++) {
			for (int x32 = 0; x32 < 2; x32++) {
				d.nr = nr | (x32 ? 0x40000000 : 0);
				memset(d.args, 0, sizeof(d.args));
				bad += run_a(a, &d) != run(b, &d);
			}
		}
	}
	d.arch = AUDIT_ARCH_X86_64;
	for (unsigned int t = 0; t < nt; t++) {
		for (const struct seccomp_rule *r = tables[t]; r->nr >= 0; r++) {
			unsigned int arg = r->match == SECCOMP_ARG_IOCTL ? 1 :
									   r->arg;

			if (r->match == SECCOMP_ARG_ANY)
				continue;
			ncases = 0;
			add_case(r->value);
			add_case(r->value ^ 1);
			add_case(r->value ^ (1ul << 32));
			add_case(r->value | ~r->mask);
			add_case(r->value & 0xffffffffu);
			add_case(0);
			add_case(~0ul);
			d.nr = r->nr;
			for (unsigned int c = 0; c < ncases; c++) {
				memset(d.args, 0, sizeof(d.args));
				d.args[arg] = cases[c];
				bad += run_a(a, &d) != run(b, &d);
			}
		}
	}
	return bad;
}

#define MASKED(name, argno, m, v, cls)                                     \
	{ .nr = __NR_##name, .classes = (cls), .match = SECCOMP_ARG_MASKED, \
	  .arg = (argno), .mask = (m), .value = (v) }

/* Rules of every kind, some sharing a call. */
static const struct seccomp_rule kinds[] = {
	SECCOMP_SYSCALL(read, SECCOMP_ALL),
	SECCOMP_SYSCALL_ARG(socket, 0, 1, SECCOMP_IO),
	SECCOMP_SYSCALL_ARG(socket, 0, 2, SECCOMP_MAIN),
	SECCOMP_IOCTL(0x4004ae86, SECCOMP_VCPU),
	SECCOMP_IOCTL(0xffffffff8004ae87ul, SECCOMP_VCPU),
	MASKED(clone, 0, 0x10000, 0x10000, SECCOMP_ALL),
	MASKED(mmap, 2, 0x4, 0, SECCOMP_ALL),
	MASKED(mprotect, 2, 0xf00000004ul, 0x100000000ul, SECCOMP_ALL),
	MASKED(prctl, 0, 0xff00000000ul, 0x1200000000ul, SECCOMP_MAIN),
	SECCOMP_SYSCALL(clone3, SECCOMP_ALL),	/* still ENOSYS */
	SECCOMP_SYSCALL(write, SECCOMP_IO),
	SECCOMP_SYSCALL_ARG(write, 0, 2, SECCOMP_IO),	/* and unconditional */
	/* More requests, so that a narrowing program lists the fewer
	 * (inverted) for vcpu and io; one named twice. */
	SECCOMP_IOCTL(0x1111, SECCOMP_ALL),
	SECCOMP_IOCTL(0x2222, SECCOMP_VCPU | SECCOMP_IO),
	SECCOMP_IOCTL(0x3333, SECCOMP_VCPU | SECCOMP_IO),
	SECCOMP_IOCTL(0x4444, SECCOMP_MAIN),
	SECCOMP_IOCTL(0x2222, SECCOMP_MAIN),
	SECCOMP_IOCTL(0x5555, SECCOMP_ALL),
	SECCOMP_END,
};

int main(void)
{
	static const unsigned int classes[] = { SECCOMP_ALL, SECCOMP_MAIN,
						SECCOMP_VCPU, SECCOMP_IO };
	static const char *const cname[] = { "all", "main", "vcpu", "io" };
	unsigned int ndev, nt = 0;
	const struct device_ops *const *devs = device_list(&ndev);
	const struct seccomp_rule **tables = calloc(ndev + 1, sizeof(*tables));
	const struct seccomp_rule *one[] = { kinds };
	char what[256];

	tables[nt++] = seccomp_core_rules();
	for (unsigned int i = 0; i < ndev; i++)
		if (devs[i]->seccomp)
			tables[nt++] = devs[i]->seccomp;

	for (unsigned int c = 0; c < 4; c++) {
		struct sock_fprog ours, ref;
		int e1 = seccomp_bpf_build(tables, nt, classes[c], &ours);
		int e2 = reference(tables, nt, classes[c], &ref);
		unsigned int bad = e1 || e2 ? ~0u : compare(tables, nt, &ours, &ref);

		snprintf(what, sizeof(what),
			 "%s class, core and %u device tables: lkvm's program (%u instructions) answers as libseccomp's (%u) everywhere (%u differ)",
			 cname[c], nt - 1, ours.len, ref.len, bad);
		CHECK(!e1 && !e2 && bad == 0, what);
		free(ours.filter);
		free(ref.filter);
	}
	{
		/* The kernel runs a new filter for every call number when it
		 * loads it (its cache of calls always allowed): the cost of a
		 * load, and of every call the cache does not answer, is the
		 * search's length, not the number of rules. */
		struct sock_fprog p;
		struct seccomp_data d = { .arch = AUDIT_ARCH_X86_64 };
		unsigned int worst = 0, worst_nr = 0;

		seccomp_bpf_build(tables, nt, SECCOMP_ALL, &p);
		for (d.nr = 0; d.nr < 512; d.nr++) {
			run(&p, &d);
			if (steps > worst) {
				worst = steps;
				worst_nr = (unsigned int)d.nr;
			}
		}
		snprintf(what, sizeof(what),
			 "all class: every call number is decided or reaches its argument tests within 24 instructions (the most: %u, call %u)",
			 worst, worst_nr);
		CHECK(worst <= 24, what);
		free(p.filter);
	}
	for (unsigned int c = 0; c < 4; c++) {
		struct sock_fprog ours, ref;
		int e1 = seccomp_bpf_build(one, 1, classes[c], &ours);
		int e2 = reference(one, 1, classes[c], &ref);
		unsigned int bad = e1 || e2 ? ~0u : compare(one, 1, &ours, &ref);

		snprintf(what, sizeof(what),
			 "rules of every kind, %s class: the same answers (%u differ)",
			 cname[c], bad);
		CHECK(!e1 && !e2 && bad == 0, what);
		free(ours.filter);
		free(ref.filter);
	}
	/* Each class's narrowing program on top of the process-wide one
	 * answers as the class's whole allowlist does. */
	for (unsigned int set = 0; set < 2; set++) {
		const struct seccomp_rule *const *t = set ? one : tables;
		unsigned int n = set ? 1 : nt;
		struct sock_fprog all, whole, narrow;

		seccomp_bpf_build(t, n, SECCOMP_ALL, &all);
		for (unsigned int c = 1; c < 4; c++) {
			int e1 = seccomp_bpf_build_narrowing(t, n, classes[c],
							     &narrow);
			int e2 = seccomp_bpf_build(t, n, classes[c], &whole);
			unsigned int bad;

			under = &all;
			bad = e1 || e2 ? ~0u : compare(t, n, &narrow, &whole);
			under = NULL;
			snprintf(what, sizeof(what),
				 "%s, %s class: its narrowing program (%u instructions) under the process-wide one answers as its whole allowlist (%u) does (%u differ)",
				 set ? "rules of every kind" : "core and device tables",
				 cname[c], e1 ? 0 : narrow.len,
				 e2 ? 0 : whole.len, bad);
			CHECK(!e1 && !e2 && bad == 0, what);
			if (!set && !e1 && !e2)
				CHECK(narrow.len * 2 < whole.len,
				      "a narrowing program is under half its class's allowlist");
			free(narrow.filter);
			free(whole.filter);
		}
		free(all.filter);
	}
	{
		static const struct seccomp_rule badarg[] = {
			MASKED(read, 6, 1, 1, SECCOMP_ALL), SECCOMP_END,
		};
		const struct seccomp_rule *t[] = { badarg };
		struct sock_fprog p;

		CHECK(seccomp_bpf_build(t, 1, SECCOMP_ALL, &p) == -EINVAL,
		      "a rule on argument 7 is refused");
	}
	{
		struct sock_fprog p;
		struct seccomp_data d = { .arch = AUDIT_ARCH_X86_64 };

		seccomp_bpf_build(one, 1, SECCOMP_IO, &p);
		d.nr = __NR_socket;
		d.args[0] = 1;
		CHECK(run(&p, &d) == SECCOMP_RET_ALLOW,
		      "io: socket(1) allowed");
		d.args[0] = 2;
		CHECK(run(&p, &d) == SECCOMP_RET_TRAP, "io: socket(2) traps");
		d.nr = __NR_clone3;
		CHECK(run(&p, &d) == (SECCOMP_RET_ERRNO | ENOSYS),
		      "clone3 fails with ENOSYS");
		d.nr = __NR_read | 0x40000000;
		CHECK(run(&p, &d) == SECCOMP_RET_KILL_PROCESS,
		      "an x32 call kills the process");
		free(p.filter);
	}
	free(tables);
	return tap_done();
}
