// SPDX-License-Identifier: GPL-2.0
/*
 * kvmi-bench: the measurements of bench/kvmi.sh, one per run, each
 * printed as "NAME VALUE UNIT".
 *
 *   kvmi-bench floor N             N MMIO write exits of a raw real-mode
 *                                  guest (KVM ioctls only): us per exit
 *   kvmi-bench floor64 N           the same from a raw 64-bit guest with
 *                                  paging, the round trip's own write (a
 *                                  read-only slot's page): us per exit
 *   kvmi-bench rtt SOCK COOKIE GPA N
 *                                  write-protects GPA's page of a guest
 *                                  that writes to it in a loop; us from
 *                                  one PF event to the next, each answered
 *                                  CONTINUE (event, reply, guest goes on,
 *                                  writes again): the median of N
 *   kvmi-bench protect SOCK COOKIE GPA MS
 *                                  write-protects GPA's page for MS ms
 *                                  with no event switched on: each write
 *                                  exits and lkvm does it (the same guest
 *                                  code's exit, without the tool); wall
 *                                  and lkvm CPU time of the window, for
 *                                  bench/kvmi.sh to divide by the count
 *                                  of writes `lkvm stat` shows
 *   kvmi-bench read SOCK COOKIE GPA MIB
 *                                  4 KiB KVMI_VM_READ_PHYSICAL: MiB/s
 *   kvmi-bench mapped SOCK COOKIE MIB
 *                                  MAP_MEMORY, then 4 KiB memcpy out of
 *                                  guest RAM, and the same from buffers
 *                                  of this process, in turns of 16 MiB
 *                                  until MIB each: the median MiB/s of
 *                                  each; and the first pass over the
 *                                  fresh mapping (its page faults)
 */
#include <dirent.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "kvmi/client.h"

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static double cpu_us_of(int pid, const char *comm);

/* CPU time of every thread of process pid (0: this one), in us. */
static double cpu_us(int pid)
{
	return cpu_us_of(pid, NULL);
}

/* The same, of pid's threads named comm only (NULL: all). */
static double cpu_us_of(int pid, const char *comm)
{
	char path[64];
	double total = 0;
	struct dirent *d;
	DIR *dir;

	if (!pid) {
		struct timespec ts;

		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
		return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
	}
	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	dir = opendir(path);
	if (!dir)
		return 0;
	while ((d = readdir(dir))) {
		char p[300];
		unsigned long long ns;
		FILE *f;

		if (d->d_name[0] == '.')
			continue;
		if (comm) {
			char name[32] = "";

			snprintf(p, sizeof(p), "/proc/%d/task/%s/comm", pid,
				 d->d_name);
			f = fopen(p, "r");
			if (f && !fgets(name, sizeof(name), f))
				name[0] = 0;
			if (f)
				fclose(f);
			name[strcspn(name, "\n")] = 0;
			if (strcmp(name, comm))
				continue;
		}
		snprintf(p, sizeof(p), "/proc/%d/task/%s/schedstat", pid,
			 d->d_name);
		f = fopen(p, "r");
		if (f && fscanf(f, "%llu", &ns) == 1)
			total += ns / 1e3;
		if (f)
			fclose(f);
	}
	closedir(dir);
	return total;
}

static int vmm_pid;	/* lkvm's, for its CPU time (rtt) */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, unsigned int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* A bare KVM guest: one vCPU, RAM at 0 (mem bytes), no VMM around it. */
struct raw_vm {
	int kvm, vm, vcpu;
	struct kvm_run *run;
	char *ram;
};

static int raw_vm(struct raw_vm *g, size_t mem)
{
	struct kvm_userspace_memory_region r = { 0 };

	g->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	g->vm = g->kvm < 0 ? -1 : ioctl(g->kvm, KVM_CREATE_VM, 0);
	g->ram = mmap(NULL, mem, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (g->vm < 0 || g->ram == MAP_FAILED)
		return 2;
	ioctl(g->vm, KVM_SET_TSS_ADDR, 0xfffbd000ul);
	r.memory_size = mem;
	r.userspace_addr = (unsigned long)g->ram;
	if (ioctl(g->vm, KVM_SET_USER_MEMORY_REGION, &r))
		return 2;
	g->vcpu = ioctl(g->vm, KVM_CREATE_VCPU, 0);
	g->run = mmap(NULL, (size_t)ioctl(g->kvm, KVM_GET_VCPU_MMAP_SIZE, 0),
		      PROT_READ | PROT_WRITE, MAP_SHARED, g->vcpu, 0);
	return g->vcpu < 0 || g->run == MAP_FAILED ? 2 : 0;
}

/* n MMIO write exits of g, after ten to warm up: "NAME us/exit", wall
 * and CPU time. */
static int time_exits(struct raw_vm *g, unsigned long n, const char *name)
{
	double t0 = 0, c0 = 0;

	for (unsigned long i = 0; i < 10 + n; i++) {
		if (i == 10) {
			t0 = now_us();
			c0 = cpu_us(0);
		}
		if (ioctl(g->vcpu, KVM_RUN, 0) < 0 ||
		    g->run->exit_reason != KVM_EXIT_MMIO ||
		    !g->run->mmio.is_write)
			return 3;
	}
	printf("%s %.2f us/exit\n", name, (now_us() - t0) / n);
	printf("%s-cpu %.2f us/exit\n", name, (cpu_us(0) - c0) / n);
	return 0;
}

/* A real-mode loop at 0x10000: mov [0], al with DS at 0x30000, where no
 * memory slot is (an MMIO exit each time), then jmp back. */
static int floor_exits(unsigned long n)
{
	static const unsigned char code[] = { 0xa2, 0x00, 0x00, 0xeb, 0xfb };
	struct kvm_regs regs = { .rip = 0, .rflags = 2 };
	struct raw_vm g;
	struct kvm_sregs s;

	if (raw_vm(&g, 0x20000))
		return 2;
	memcpy(g.ram + 0x10000, code, sizeof(code));
	ioctl(g.vcpu, KVM_GET_SREGS, &s);
	s.cs.selector = 0x1000;
	s.cs.base = 0x10000;
	s.ds = s.es = s.ss = s.cs;
	s.ds.selector = 0x3000;
	s.ds.base = 0x30000;
	s.ds.type = s.es.type = s.ss.type = 3;
	ioctl(g.vcpu, KVM_SET_SREGS, &s);
	ioctl(g.vcpu, KVM_SET_REGS, &regs);
	return time_exits(&g, n, "floor");
}

/*
 * The round trip's own kind of write without any VMM: a 64-bit guest in
 * long mode with paging (identity, 2 MiB pages, as the test kernel's)
 * runs the bench check's loop, the same three instructions (mov %rax to
 * a RIP-relative address; add $1; jmp), at CPL 0; its page is in a
 * read-only memory slot, as a protected page is, so each write exits as
 * MMIO after KVM walked the page tables and decoded the instruction.
 */
static int floor64_exits(unsigned long n)
{
	/* at 0x10000: mov %rax, 0x200008(%rip-relative); add $1, %rax; jmp */
	static const unsigned char code[] = {
		0x48, 0x89, 0x05, 0x01, 0x00, 0x1f, 0x00,
		0x48, 0x83, 0xc0, 0x01,
		0xeb, 0xf3,
	};
	struct kvm_userspace_memory_region ro = {
		.slot = 1, .flags = KVM_MEM_READONLY,
		.guest_phys_addr = 0x200000, .memory_size = 0x1000,
	};
	struct kvm_regs regs = { .rip = 0x10000, .rsp = 0x8000, .rflags = 2,
				 .rax = 1 };
	struct kvm_segment cs = {
		.selector = 8, .type = 11, .present = 1, .s = 1, .l = 1,
		.g = 1, .limit = 0xffffffff,
	}, ds = {
		.selector = 16, .type = 3, .present = 1, .s = 1, .db = 1,
		.g = 1, .limit = 0xffffffff,
	}, tr = {
		.selector = 24, .type = 11, .present = 1, .limit = 0x67,
	};
	uint64_t *pt;
	struct raw_vm g;
	struct kvm_sregs s;
	void *page;

	if (raw_vm(&g, 0x200000))
		return 2;
	page = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED)
		return 2;
	ro.userspace_addr = (unsigned long)page;
	if (ioctl(g.vm, KVM_SET_USER_MEMORY_REGION, &ro))
		return 2;
	/* PML4 at 0x1000, PDPT at 0x2000, PD at 0x3000: 0 to 4 MiB. */
	pt = (uint64_t *)(g.ram + 0x1000);
	pt[0] = 0x2000 | 3;
	pt[512] = 0x3000 | 3;
	pt[1024] = 0x000000 | 0x87;		/* P, RW, U, PS */
	pt[1025] = 0x200000 | 0x87;
	memcpy(g.ram + 0x10000, code, sizeof(code));
	ioctl(g.vcpu, KVM_GET_SREGS, &s);
	s.cs = cs;
	s.ds = s.es = s.ss = s.fs = s.gs = ds;
	s.tr = tr;
	s.cr3 = 0x1000;
	s.cr4 = 1 << 5;				/* PAE */
	s.cr0 = 0x80050033;			/* PG, WP, NE, ET, MP, PE */
	s.efer = 0x500;				/* LMA, LME */
	if (ioctl(g.vcpu, KVM_SET_SREGS, &s) ||
	    ioctl(g.vcpu, KVM_SET_REGS, &regs))
		return 2;
	return time_exits(&g, n, "floor64");
}

static int rtt(struct kvmi_conn *c, uint64_t gpa, unsigned int n)
{
	uint8_t ro = KVMI_PAGE_ACCESS_R | KVMI_PAGE_ACCESS_X;
	double *v = calloc(n, sizeof(*v)), prev = 0, c0 = 0;
	struct kvmi_event ev;
	int err;

	if (!v)
		return 2;
	gpa &= ~0xfffull;
	if ((err = kvmi_control_vcpu_events(c, 0, KVMI_VCPU_EVENT_PF, true)) ||
	    (err = kvmi_set_page_access(c, &gpa, &ro, 1))) {
		fprintf(stderr, "kvmi-bench: %s\n", kvmi_strerror(err));
		return 1;
	}
	for (unsigned int i = 0; i <= n + 10; i++) {
		double t;

		if ((err = kvmi_wait_event(c, &ev, 10000)) ||
		    (err = kvmi_reply_event(c, &ev, KVMI_EVENT_ACTION_CONTINUE,
					    NULL, 0))) {
			fprintf(stderr, "kvmi-bench: %s\n", kvmi_strerror(err));
			return 1;
		}
		t = now_us();
		/* The first ten warm up. */
		if (i > 10)
			v[i - 11] = t - prev;
		else if (i == 10)
			c0 = cpu_us(vmm_pid);
		prev = t;
	}
	if (!kvmi_event_channel(c))
		fprintf(stderr, "kvmi-bench: events over the socket\n");
	printf("rtt %.2f us/event\n", median(v, n));
	if (vmm_pid)
		printf("rtt-vmm-cpu %.2f us/event\n",
		       (cpu_us(vmm_pid) - c0) / n);
	free(v);
	return 0;
}

static int protect_window(struct kvmi_conn *c, uint64_t gpa, unsigned int ms)
{
	uint8_t ro = KVMI_PAGE_ACCESS_R | KVMI_PAGE_ACCESS_X, rwx = 7;
	double t0, c0;
	int err;

	gpa &= ~0xfffull;
	if ((err = kvmi_set_page_access(c, &gpa, &ro, 1))) {
		fprintf(stderr, "kvmi-bench: %s\n", kvmi_strerror(err));
		return 1;
	}
	t0 = now_us();
	c0 = cpu_us(vmm_pid);
	usleep(ms * 1000);
	printf("noevent-window %.0f us\n", now_us() - t0);
	printf("noevent-cpu %.0f us\n", cpu_us(vmm_pid) - c0);
	return kvmi_set_page_access(c, &gpa, &rwx, 1) ? 1 : 0;
}

/*
 * mib MiB in 4 KiB KVMI_VM_READ_PHYSICAL requests: one call per request
 * (each waits for its reply), and 1 MiB calls, which the client library
 * sends as 256 requests, 32 per send, up to 64 in flight.
 */
static int read_physical(struct kvmi_conn *c, uint64_t gpa, unsigned int mib)
{
	static uint8_t buf[1 << 20];
	unsigned long pages = (unsigned long)mib * 256;
	double t0 = now_us(), c0, c1;
	int err = 0;

	gpa &= ~0xfffull;
	for (unsigned long i = 0; i < pages && !err; i++)
		err = kvmi_read_physical(c, gpa + (i % 256) * 4096, buf, 4096);
	if (!err)
		printf("read %.0f MiB/s\n", mib / ((now_us() - t0) / 1e6));
	/* lkvm's CPU time: its KVMI server thread's (its vCPU spins in the
	 * guest meanwhile, which is not the reads' cost). */
	t0 = now_us();
	c0 = cpu_us_of(vmm_pid, "kvmi");
	c1 = cpu_us(0);
	for (unsigned int i = 0; i < mib && !err; i++)
		err = kvmi_read_physical(c, gpa, buf, sizeof(buf));
	if (!err) {
		double cpu = (vmm_pid ? cpu_us_of(vmm_pid, "kvmi") - c0 : 0) +
			     cpu_us(0) - c1;

		printf("read-pipelined %.0f MiB/s\n",
		       mib / ((now_us() - t0) / 1e6));
		/* What the CPU time of both ends allows, waits apart. */
		if (vmm_pid)
			printf("read-cpu-bound %.0f MiB/s\n", mib / (cpu / 1e6));
	}
	if (err)
		fprintf(stderr, "kvmi-bench: %s\n", kvmi_strerror(err));
	return !!err;
}

/* 4 KiB copies out of src (size bytes, cycled) until mib MiB: MiB/s. */
static double copy_rate(const uint8_t *src, size_t size, unsigned int mib)
{
	static uint8_t dst[4096];
	unsigned long pages = (unsigned long)mib * 256, per = size / 4096;
	double t0 = now_us();

	for (unsigned long i = 0; i < pages; i++) {
		memcpy(dst, src + (i % per) * 4096, sizeof(dst));
		__asm__ volatile("" : : "r"(dst) : "memory");
	}
	return mib / ((now_us() - t0) / 1e6);
}

#define COPY_ROUND_MIB 16	/* one pass over the 16 MiB of each source */

/*
 * The copy rates, fairly: the three sources take turns in short rounds
 * (A B C, B C A, C A B, ...) and each rate is the median of its rounds,
 * so a change in the machine's load or an order effect falls on all
 * alike. Same 4 KiB copies, same 16 MiB, one pass per round.
 */
static int mapped(struct kvmi_conn *c, unsigned int mib)
{
	enum { GUEST, LOCAL, SMALL, KINDS };
	static const char *const names[KINDS] = { "mapped", "memcpy",
						  "memcpy-4k" };
	unsigned int rounds = mib / COPY_ROUND_MIB ? mib / COPY_ROUND_MIB : 1;
	double *rate[KINDS], first;
	const uint8_t *src[KINDS];
	struct kvmi_memmap map;
	size_t size = COPY_ROUND_MIB << 20;
	uint8_t *local, *small;
	int err = kvmi_map_memory(c, false, &map);

	if (err) {
		fprintf(stderr, "kvmi-bench: %s\n", kvmi_strerror(err));
		return 1;
	}
	/* 16 MiB of guest RAM from 1 MiB (the kernel, its data). */
	src[GUEST] = kvmi_memmap_ptr(&map, 0x100000, size);
	/* The same bytes in this process's memory: in huge pages where the
	 * host gives them, and in 4 KiB pages as guest RAM is. */
	local = malloc(size);
	small = mmap(NULL, size, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	for (int k = 0; k < KINDS; k++)
		rate[k] = calloc(rounds, sizeof(double));
	if (!src[GUEST] || !local || small == MAP_FAILED || !rate[0] ||
	    !rate[1] || !rate[2])
		return 2;
	/* The first pass over the fresh mapping: its page faults. */
	first = copy_rate(src[GUEST], size, COPY_ROUND_MIB);
	madvise(small, size, MADV_NOHUGEPAGE);
	memcpy(local, src[GUEST], size);
	memcpy(small, src[GUEST], size);
	src[LOCAL] = local;
	src[SMALL] = small;
	for (int k = 0; k < KINDS; k++)	/* warm up */
		copy_rate(src[k], size, COPY_ROUND_MIB);
	for (unsigned int r = 0; r < rounds; r++)
		for (int i = 0; i < KINDS; i++) {
			int k = (r + i) % KINDS;

			rate[k][r] = copy_rate(src[k], size, COPY_ROUND_MIB);
		}
	for (int k = 0; k < KINDS; k++) {
		printf("%s %.0f MiB/s\n", names[k], median(rate[k], rounds));
		free(rate[k]);
	}
	printf("mapped-first %.0f MiB/s\n", first);
	munmap(small, size);
	free(local);
	kvmi_unmap_memory(&map);
	return 0;
}

int main(int argc, char **argv)
{
	struct kvmi_conn *c;
	int err, ret;

	if (argc == 3 && !strcmp(argv[1], "floor"))
		return floor_exits(strtoul(argv[2], NULL, 0));
	if (argc == 3 && !strcmp(argv[1], "floor64"))
		return floor64_exits(strtoul(argv[2], NULL, 0));
	if (argc < 5) {
		fprintf(stderr, "usage: see bench/kvmi-bench.c\n");
		return 2;
	}
	if (getenv("VMM_PID"))
		vmm_pid = atoi(getenv("VMM_PID"));
	err = kvmi_connect(argv[2], argv[3], 10000, &c);
	if (err) {
		fprintf(stderr, "kvmi-bench: %s: %s\n", argv[2],
			kvmi_strerror(err));
		return 1;
	}
	kvmi_set_timeout(c, 10000);
	/* The library's polling window (docs/kvmi.md, "Polling"), when
	 * the bench is asked to compare: KVMI_BENCH_POLL_US. */
	if (getenv("KVMI_BENCH_POLL_US"))
		kvmi_set_poll(c, (unsigned int)atoi(getenv("KVMI_BENCH_POLL_US")));
	/* Events over the socket rather than lkvm's event channel. */
	if (getenv("KVMI_BENCH_SOCKET"))
		kvmi_set_event_channel(c, false);
	if (!strcmp(argv[1], "rtt") && argc == 6)
		ret = rtt(c, strtoull(argv[4], NULL, 0), atoi(argv[5]));
	else if (!strcmp(argv[1], "protect") && argc == 6)
		ret = protect_window(c, strtoull(argv[4], NULL, 0),
				     atoi(argv[5]));
	else if (!strcmp(argv[1], "read") && argc == 6)
		ret = read_physical(c, strtoull(argv[4], NULL, 0),
				    atoi(argv[5]));
	else if (!strcmp(argv[1], "mapped"))
		ret = mapped(c, atoi(argv[4]));
	else
		ret = 2;
	kvmi_close(c);
	return ret;
}
