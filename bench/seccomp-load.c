// SPDX-License-Identifier: GPL-2.0
/*
 * What loading a seccomp program costs the kernel (bench/seccomp.sh).
 *
 * Each figure is the median time of the seccomp(SECCOMP_SET_MODE_FILTER)
 * call over RUNS forked children (each child loads one program on top of
 * nothing, or the narrowing ones on top of the process-wide one, as lkvm
 * does). The load compiles the program, then runs it for every system
 * call number to fill the filter's cache of calls that are always
 * allowed; that run follows the program only through loads of the call
 * number and architecture, jumps and returns, and gives up at the first
 * other instruction. So:
 *   - "skipped": a first jump over N dead tests: compiling N instructions,
 *     while the cache run takes one step per call number;
 *   - "chain": N tests of the call number in a row, each call number's run
 *     going through all of them: the cache run's cost per step;
 *   - lkvm's own programs, with all devices' rules (as the test kernel
 *     boots): the process-wide one, each class's narrowing one stacked on
 *     it, and the process-wide one again behind an instruction the cache
 *     run does not follow (what the cache run costs it).
 * Output: one line a program: name, instructions, median microseconds.
 */
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lkvm/device.h"
#include "lkvm/seccomp.h"

static unsigned int runs = 31;

static double now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int load(const struct sock_fprog *p)
{
	return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, p);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The median time of loading p, after base when there is one. */
static double median_load(const struct sock_fprog *base,
			  const struct sock_fprog *p)
{
	double *t = calloc(runs, sizeof(*t));
	double m;

	if (!t)
		exit(1);
	for (unsigned int r = 0; r < runs; r++) {
		int fd[2];
		pid_t pid;

		if (pipe(fd))
			exit(1);
		pid = fork();
		if (pid < 0)
			exit(1);
		if (!pid) {
			double s;

			if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
			    (base && load(base)))
				_exit(1);
			s = now_us();
			if (load(p))
				_exit(1);
			s = now_us() - s;
			_exit(write(fd[1], &s, sizeof(s)) == sizeof(s) ? 0 : 1);
		}
		close(fd[1]);
		if (read(fd[0], &t[r], sizeof(t[r])) != sizeof(t[r])) {
			fprintf(stderr, "seccomp-load: a child could not load its program\n");
			exit(1);
		}
		close(fd[0]);
		waitpid(pid, NULL, 0);
	}
	qsort(t, runs, sizeof(*t), cmp_double);
	m = t[runs / 2];
	free(t);
	return m;
}

static void report(const char *name, const struct sock_fprog *base,
		   const struct sock_fprog *p)
{
	printf("%s %u %.1f\n", name, p->len, median_load(base, p));
}

/* Synthetic programs of n tests of the call number, none of which
 * matches; skipped: jumped over at once. Every call is allowed. */
static void synthetic(const char *kind, unsigned int n, bool skipped)
{
	struct sock_filter *f = calloc(n + 3, sizeof(*f));
	struct sock_fprog p = { .filter = f };
	char name[64];
	unsigned int k = 0;

	if (!f)
		exit(1);
	f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
					      offsetof(struct seccomp_data, nr));
	if (skipped)
		f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JA, n, 0, 0);
	for (unsigned int i = 0; i < n; i++)
		f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
						      100000 + i, 0, 0);
	f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K,
					      SECCOMP_RET_ALLOW);
	p.len = (unsigned short)k;
	snprintf(name, sizeof(name), "%s-%u", kind, n);
	report(name, NULL, &p);
	free(f);
}

int main(int argc, char **argv)
{
	static const unsigned int classes[] = { SECCOMP_MAIN, SECCOMP_VCPU,
						SECCOMP_IO };
	static const char *const cname[] = { "narrowing-main", "narrowing-vcpu",
					     "narrowing-io" };
	unsigned int ndev, nt = 0;
	const struct device_ops *const *devs = device_list(&ndev);
	const struct seccomp_rule **tables = calloc(ndev + 1, sizeof(*tables));
	struct sock_fprog all, blind;

	if (argc > 1)
		runs = (unsigned int)atoi(argv[1]);
	if (!runs || !tables)
		return 1;
	for (unsigned int n = 1; n <= 400; n = n == 1 ? 100 : n * 2)
		synthetic("skipped", n, true);
	for (unsigned int n = 1; n <= 64; n = n == 1 ? 16 : n * 2)
		synthetic("chain", n, false);

	tables[nt++] = seccomp_core_rules();
	for (unsigned int i = 0; i < ndev; i++)
		if (devs[i]->seccomp)
			tables[nt++] = devs[i]->seccomp;
	if (seccomp_bpf_build(tables, nt, SECCOMP_ALL, &all))
		return 1;
	report("process-wide", NULL, &all);
	for (unsigned int c = 0; c < 3; c++) {
		struct sock_fprog p;

		if (seccomp_bpf_build_narrowing(tables, nt, classes[c], &p))
			return 1;
		report(cname[c], &all, &p);
		free(p.filter);
	}
	/* X = A: a step the cache run does not take. */
	blind.len = all.len + 1;
	blind.filter = calloc(blind.len, sizeof(*blind.filter));
	if (!blind.filter)
		return 1;
	blind.filter[0] = (struct sock_filter)BPF_STMT(BPF_MISC | BPF_TAX, 0);
	memcpy(blind.filter + 1, all.filter, all.len * sizeof(*all.filter));
	report("process-wide-uncached", NULL, &blind);
	free(blind.filter);
	free(all.filter);
	free(tables);
	return 0;
}
