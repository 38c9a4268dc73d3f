// SPDX-License-Identifier: GPL-2.0
/*
 * libkvm driven directly by tiny guests: real-mode code (emulated on
 * hosts without hardware virtualization, so kept to a few instructions)
 * and a 64-bit ring-3 loop, which every KVM runs natively.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "libkvm.h"
#include "tap.h"

#define MEM (1u << 20)	/* 1 MiB: an access just past it is MMIO */

struct events {
	char out[64];
	unsigned int nout;
	uint64_t mmio_addr;
	uint8_t mmio_val, first_val;
	uint64_t first_mmio;
	unsigned int halts, mmios;
	uint32_t wrmsr_index;
	uint64_t wrmsr_data;
};

static int on_pio(void *o, struct kvm_vcpu *v, uint16_t port, bool w,
		  void *data, unsigned int size, unsigned int count)
{
	struct events *e = o;

	(void)v;
	(void)size;
	if (port == 0x3f8 && w && e->nout + count < sizeof(e->out))
		for (unsigned int i = 0; i < count; i++)
			e->out[e->nout++] = ((char *)data)[i];
	/* Port 0x3f9 ends the test guest. */
	return port == 0x3f9 ? 1 : KVM_CONTINUE;
}

static int on_mmio(void *o, struct kvm_vcpu *v, uint64_t gpa, bool w,
		   void *data, unsigned int len)
{
	struct events *e = o;

	(void)v;
	(void)len;
	e->mmio_addr = gpa;
	if (w)
		e->mmio_val = *(uint8_t *)data;
	if (!e->mmios++) {
		e->first_mmio = gpa;
		e->first_val = e->mmio_val;
	}
	/* A write to 0x18ffff ends the test guest. */
	return gpa == 0x18ffff ? 1 : KVM_CONTINUE;
}

static int on_halt(void *o, struct kvm_vcpu *v)
{
	(void)v;
	((struct events *)o)->halts++;
	return 2;
}

static int on_wrmsr(void *o, struct kvm_vcpu *v, uint32_t index, uint64_t d)
{
	struct events *e = o;

	(void)v;
	e->wrmsr_index = index;
	e->wrmsr_data = d;
	return KVM_CONTINUE;
}

static const struct kvm_callbacks cb = {
	.pio = on_pio, .mmio = on_mmio, .halt = on_halt, .wrmsr = on_wrmsr,
};

struct vm {
	struct kvm_ctx *ctx;
	struct kvm_vcpu *vcpu;
	uint8_t *mem;
	struct events ev;
};

static int vm_new(struct vm *vm, uint32_t memflags)
{
	enum kvm_open_error why;

	memset(vm, 0, sizeof(*vm));
	if (kvm_open(&vm->ctx, NULL, &cb, &vm->ev, &why))
		return -1;
	vm->mem = mmap(NULL, MEM, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (vm->mem == MAP_FAILED ||
	    kvm_set_tss_addr(vm->ctx, 0xfffbd000) ||
	    kvm_set_memory_region(vm->ctx, 0, 0, MEM, vm->mem, memflags) ||
	    kvm_create_vcpu(vm->ctx, 0, &vm->vcpu))
		return -1;
	return 0;
}

static void vm_free(struct vm *vm)
{
	kvm_destroy_vcpu(vm->vcpu);
	kvm_close(vm->ctx);
	munmap(vm->mem, MEM);
}

/* Real mode, CS base 0, code at 0x1000. */
static int real_mode(struct vm *vm, const void *code, size_t len)
{
	struct kvm_sregs s;
	struct kvm_regs r = { .rip = 0x1000, .rflags = 2, .rsp = 0x8000 };

	memcpy(vm->mem + 0x1000, code, len);
	if (kvm_get_sregs(vm->vcpu, &s))
		return -1;
	s.cs.base = 0;
	s.cs.selector = 0;
	return kvm_set_sregs(vm->vcpu, &s) || kvm_set_regs(vm->vcpu, &r);
}

/*
 * 64-bit ring 3 with IOPL 3: a CPL-0 stub (a handful of instructions)
 * enters the user code at 0x2000 with iretq, as a kernel does. User pages
 * map the first 2 MiB; only the first 1 MiB is RAM.
 */
static int ring3(struct vm *vm, const void *code, size_t len)
{
	static const uint8_t stub[] = {
		0x6a, 0x23,			/* push 0x23 (ss) */
		0x68, 0x00, 0x80, 0x00, 0x00,	/* push 0x8000 (rsp) */
		0x68, 0x02, 0x30, 0x00, 0x00,	/* push 0x3002 (IOPL 3) */
		0x6a, 0x1b,			/* push 0x1b (cs) */
		0x68, 0x00, 0x20, 0x00, 0x00,	/* push 0x2000 (rip) */
		0x48, 0xcf,			/* iretq */
	};
	uint64_t *gdt = (uint64_t *)(vm->mem + 0x14000);
	uint64_t *pml4 = (uint64_t *)(vm->mem + 0x10000);
	uint64_t *pdpt = (uint64_t *)(vm->mem + 0x11000);
	uint64_t *pd = (uint64_t *)(vm->mem + 0x12000);
	struct kvm_segment cs = {
		.base = 0, .limit = 0xffffffff, .selector = 0x08, .type = 0xb,
		.present = 1, .dpl = 0, .s = 1, .l = 1, .g = 1,
	};
	struct kvm_segment ds = {
		.base = 0, .limit = 0xffffffff, .selector = 0x10, .type = 0x3,
		.present = 1, .dpl = 0, .s = 1, .db = 1, .g = 1,
	};
	struct kvm_segment tr = {
		.base = 0x13000, .limit = 0x67, .selector = 0x28, .type = 0xb,
		.present = 1,
	};
	struct kvm_regs r = { .rip = 0x1000, .rflags = 2, .rsp = 0x9000 };
	struct kvm_sregs s;

	memcpy(vm->mem + 0x1000, stub, sizeof(stub));
	memcpy(vm->mem + 0x2000, code, len);
	gdt[1] = 0x00209a0000000000ull;	/* kernel code, 64-bit */
	gdt[2] = 0x0000920000000000ull;	/* kernel data */
	gdt[3] = 0x0020fa0000000000ull;	/* user code, 64-bit, DPL 3 */
	gdt[4] = 0x0000f20000000000ull;	/* user data, DPL 3 */
	gdt[5] = 0x0000890130000067ull;	/* TSS at 0x13000 */
	gdt[6] = 0;
	pml4[0] = 0x11000 | 7;
	pdpt[0] = 0x12000 | 7;
	pd[0] = 0x0 | 0x87;	/* 2 MiB, present, writable, user */
	if (kvm_get_sregs(vm->vcpu, &s))
		return -1;
	s.cs = cs;
	s.ds = s.es = s.fs = s.gs = s.ss = ds;
	s.tr = tr;
	s.gdt.base = 0x14000;
	s.gdt.limit = 7 * 8 - 1;
	s.cr3 = 0x10000;
	s.cr4 = 1u << 5;			/* PAE */
	s.cr0 = 0x80000001u | (1u << 16);	/* PG, PE, WP */
	s.efer = (1u << 8) | (1u << 10);	/* LME, LMA */
	return kvm_set_sregs(vm->vcpu, &s) || kvm_set_regs(vm->vcpu, &r);
}

static int run(struct vm *vm)
{
	int r;

	do
		r = kvm_vcpu_run(vm->vcpu);
	while (r == KVM_CONTINUE || r == -EINTR);
	return r;
}

static void test_open_errors(void)
{
	struct kvm_ctx *c;
	enum kvm_open_error why;
	char path[] = "/tmp/lkvm-not-kvm-XXXXXX";
	int fd;

	CHECK(kvm_open(&c, "/nonexistent/kvm", NULL, NULL, &why) == -ENOENT &&
		      why == KVM_OPEN_NO_DEVICE && !c,
	      "open: a missing device is told apart");
	fd = mkstemp(path);
	CHECK(fd >= 0 && kvm_open(&c, path, NULL, NULL, &why) < 0 &&
		      why == KVM_OPEN_API_VERSION,
	      "open: a file that is not KVM fails the API version check");
	if (fd >= 0) {
		close(fd);
		unlink(path);
	}
}

static void *fetch_cpuid(void *arg)
{
	return (void *)(long)kvm_fetch_supported_cpuid(arg);
}

/* lkvm's start-up: the device, then a thread fetches the host's CPUID
 * table while this one creates the VM and then asks for the table. */
static void test_open_in_steps(void)
{
	struct kvm_ctx *c, *ref;
	struct kvm_cpuid2 *a = NULL, *b = NULL;
	enum kvm_open_error why;
	pthread_t t;
	void *fetched = (void *)-1L;
	int created;
	bool same;

	if (kvm_open_device(&c, NULL, NULL, NULL, &why)) {
		CHECK(0, "open in steps: the device opens");
		return;
	}
	CHECK(kvm_vm_fd(c) < 0, "open in steps: no VM before kvm_create_vm");
	if (pthread_create(&t, NULL, fetch_cpuid, c) == 0) {
		created = kvm_create_vm(c, &why);
		pthread_join(t, &fetched);
	} else {
		created = kvm_create_vm(c, &why);
	}
	CHECK(!created && kvm_vm_fd(c) >= 0 && why == KVM_OPEN_OK,
	      "open in steps: the VM is created beside the fetch");
	CHECK(fetched == NULL, "open in steps: the other thread fetched CPUID");
	/* The same leaves; their values may differ in the APIC IDs of the
	 * host CPU that ran each fetch (leaves 1 and 0xb). */
	same = !kvm_open(&ref, NULL, NULL, NULL, &why) &&
	       !kvm_get_supported_cpuid(c, &a) &&
	       !kvm_get_supported_cpuid(ref, &b) && a->nent == b->nent;
	for (unsigned int i = 0; same && i < a->nent; i++)
		same = a->entries[i].function == b->entries[i].function &&
		       a->entries[i].index == b->entries[i].index;
	CHECK(same, "open in steps: the table has the leaves a fresh context gets");
	free(a);
	free(b);
	kvm_close(ref);
	kvm_close(c);
}

static void test_real_mode(void)
{
	static const uint8_t code[] = {
		0xba, 0xf8, 0x03,		/* mov dx, 0x3f8 */
		0xb0, 'h', 0xee,		/* mov al, 'h'; out dx, al */
		0xb0, 'i', 0xee,		/* mov al, 'i'; out dx, al */
		0xb8, 0xff, 0xff,		/* mov ax, 0xffff */
		0x8e, 0xc0,			/* mov es, ax */
		0x26, 0xc6, 0x06, 0x20, 0x00, 0x42, /* mov es:[0x20], 0x42 */
		0xc6, 0x06, 0x00, 0x50, 0x01,	/* mov [0x5000], 1 */
		0xf4,				/* hlt */
	};
	struct vm vm;
	uint64_t bitmap[(MEM >> 12) / 64] = { 0 };
	struct kvm_regs r;

	if (vm_new(&vm, KVM_MEM_LOG_DIRTY_PAGES) || real_mode(&vm, code,
							      sizeof(code))) {
		CHECK(0, "real mode: guest set up");
		return;
	}
	kvm_get_dirty_log(vm.ctx, 0, bitmap);	/* clear the loader's writes */
	memset(bitmap, 0, sizeof(bitmap));
	CHECK(run(&vm) == 2 && vm.ev.halts == 1, "real mode: HLT reaches the halt callback");
	CHECK(vm.ev.nout == 2 && !memcmp(vm.ev.out, "hi", 2),
	      "real mode: OUT reaches the pio callback in order");
	CHECK(vm.ev.mmios == 1 && vm.ev.mmio_addr == 0x100010 &&
		      vm.ev.mmio_val == 0x42,
	      "real mode: a write past RAM reaches the mmio callback");
	CHECK(kvm_get_dirty_log(vm.ctx, 0, bitmap) == 0 &&
		      (bitmap[0] >> 5 & 1) && !(bitmap[0] >> 6 & 1),
	      "dirty log: the page the guest wrote is dirty, its neighbour not");
	CHECK(kvm_get_regs(vm.vcpu, &r) == 0 && r.rip == 0x1000 + sizeof(code),
	      "registers: RIP after HLT");
	r.rbx = 0x1234;
	CHECK(kvm_set_regs(vm.vcpu, &r) == 0 && kvm_get_regs(vm.vcpu, &r) == 0 &&
		      r.rbx == 0x1234,
	      "registers: set and get round trip");
	vm_free(&vm);
}

static void test_msr_and_ioeventfd(void)
{
	static const uint8_t code[] = {
		0x66, 0xb9, 0x74, 0x01, 0x00, 0x00,	/* mov ecx, 0x174 */
		0x66, 0xb8, 0x78, 0x56, 0x34, 0x12,	/* mov eax, 0x12345678 */
		0x66, 0x31, 0xd2,			/* xor edx, edx */
		0x0f, 0x30,				/* wrmsr */
		0xba, 0x00, 0x05, 0xee,			/* out 0x500, al */
		0xba, 0xf9, 0x03, 0xee,			/* out 0x3f9, al */
	};
	uint8_t deny = 0;
	struct kvm_msr_filter f = {
		.flags = KVM_MSR_FILTER_DEFAULT_ALLOW,
		.ranges[0] = { .flags = KVM_MSR_FILTER_WRITE, .nmsrs = 1,
			       .base = 0x174, .bitmap = &deny },
	};
	struct kvm_msr_entry e = { .index = 0x175, .data = 0xabcd000 };
	struct vm vm;
	uint64_t n = 0;
	int efd = eventfd(0, EFD_NONBLOCK);

	if (vm_new(&vm, 0) || real_mode(&vm, code, sizeof(code))) {
		CHECK(0, "msr: guest set up");
		return;
	}
	CHECK(kvm_enable_user_msr(vm.ctx, KVM_MSR_EXIT_REASON_FILTER) == 0 &&
		      kvm_set_msr_filter(vm.ctx, &f) == 0,
	      "msr: user-space MSR exits and a filter are accepted");
	CHECK(kvm_ioeventfd(vm.ctx, 0x500, 1, efd, true, false, 0, false) == 0,
	      "ioeventfd: registered on port 0x500");
	CHECK(run(&vm) == 1, "msr: the guest runs to its end");
	CHECK(vm.ev.wrmsr_index == 0x174 && vm.ev.wrmsr_data == 0x12345678,
	      "msr: a filtered WRMSR reaches the wrmsr callback with its value");
	CHECK(read(efd, &n, sizeof(n)) == sizeof(n) && n == 1 && vm.ev.nout == 0,
	      "ioeventfd: the guest's OUT signalled the eventfd without an exit");
	CHECK(kvm_set_msrs(vm.vcpu, &e, 1) == 0 &&
		      (e.data = 0, kvm_get_msrs(vm.vcpu, &e, 1)) == 0 &&
		      e.data == 0xabcd000,
	      "msr: set and get through the API");
	close(efd);
	vm_free(&vm);
}

static void test_nmi(void)
{
	static const uint8_t code[] = { 0xeb, 0xfe };	/* jmp $ */
	static const uint8_t handler[] = {
		0xba, 0xf8, 0x03, 0xb0, 'N', 0xee,	/* out 'N' */
		0xba, 0xf9, 0x03, 0xee,			/* end */
	};
	struct vm vm;

	if (vm_new(&vm, 0) || real_mode(&vm, code, sizeof(code))) {
		CHECK(0, "nmi: guest set up");
		return;
	}
	memcpy(vm.mem + 0x1100, handler, sizeof(handler));
	vm.mem[8] = 0x00;	/* IVT[2] = 0000:1100 */
	vm.mem[9] = 0x11;
	vm.mem[10] = vm.mem[11] = 0;
	CHECK(kvm_inject_nmi(vm.vcpu) == 0 && run(&vm) == 1 && vm.ev.nout == 1 &&
		      vm.ev.out[0] == 'N',
	      "nmi: an injected NMI runs the guest's handler");
	vm_free(&vm);
}

struct kicker {
	struct kvm_vcpu *vcpu;
	volatile int ready;
};

static void *kick_thread(void *arg)
{
	struct kicker *k = arg;

	while (!__atomic_load_n(&k->ready, __ATOMIC_ACQUIRE))
		;
	kvm_vcpu_kick(k->vcpu, SIGUSR1);
	return NULL;
}

static void noop(int s) { (void)s; }

static void test_ring3(void)
{
	static const uint8_t loop[] = {
		0x48, 0xc7, 0xc1, 0x00, 0xe1, 0xf5, 0x05, /* mov rcx, 1e8 */
		0x48, 0xff, 0xc9,			  /* dec rcx */
		0x75, 0xfb,				  /* jnz .-5 */
		0xc6, 0x04, 0x25, 0x00, 0x00, 0x18, 0x00, 0x77,
						/* mov byte [0x180000], 0x77 */
		0xc6, 0x04, 0x25, 0xff, 0xff, 0x18, 0x00, 0x00,
						/* mov byte [0x18ffff], 0: end */
	};
	static const uint8_t spin[] = { 0xeb, 0xfe };
	struct timespec t0, t1;
	struct kicker k;
	pthread_t t;
	struct vm vm;
	double secs;
	int r;

	if (vm_new(&vm, 0) || ring3(&vm, loop, sizeof(loop))) {
		CHECK(0, "ring 3: guest set up");
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = run(&vm);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("# ring 3: 1e8 loop iterations in %.3f s\n", secs);
	CHECK(r == 1 && vm.ev.mmios == 2 && vm.ev.first_mmio == 0x180000 &&
		      vm.ev.first_val == 0x77,
	      "ring 3: a 64-bit user-mode guest entered by iretq runs and its write outside RAM reaches the mmio callback");
	/* Instruction-by-instruction emulation needs minutes for 2e8
	 * instructions; native execution needs a fraction of a second. */
	CHECK(secs < 10, "ring 3: the loop ran at native speed");

	/* A kick makes a spinning guest leave KVM_RUN. */
	signal(SIGUSR1, noop);
	ring3(&vm, spin, sizeof(spin));
	k.vcpu = vm.vcpu;
	k.ready = 0;
	kvm_vcpu_bind_thread(vm.vcpu);
	pthread_create(&t, NULL, kick_thread, &k);
	__atomic_store_n(&k.ready, 1, __ATOMIC_RELEASE);
	r = kvm_vcpu_run(vm.vcpu);
	pthread_join(t, NULL);
	if (r == KVM_CONTINUE)	/* the kick landed before entry */
		r = kvm_vcpu_run(vm.vcpu);
	CHECK(r == -EINTR, "kick: a spinning vCPU leaves KVM_RUN with -EINTR");
	vm_free(&vm);
}

/* irqfd: a write to the eventfd raises the GSI, seen in the PIC's IRR. */
static void test_irqfd(void)
{
	struct kvm_irqchip pic = { .chip_id = KVM_IRQCHIP_PIC_MASTER };
	struct vm vm = { 0 };
	enum kvm_open_error why;
	int efd = eventfd(0, EFD_NONBLOCK);
	uint64_t one = 1;

	/* The irqchip must come before any vCPU. */
	if (kvm_open(&vm.ctx, NULL, &cb, &vm.ev, &why) ||
	    kvm_create_irqchip(vm.ctx)) {
		CHECK(0, "irqfd: VM with an irqchip");
		return;
	}
	CHECK(kvm_irqfd(vm.ctx, efd, 5, -1, false) == 0,
	      "irqfd: assigned to GSI 5");
	CHECK(kvm_get_irqchip(vm.ctx, &pic) == 0 &&
		      !(pic.chip.pic.irr & (1 << 5)),
	      "irqfd: IRQ 5 not requested before the eventfd is written");
	/* KVM injects from a work item: wait for the request to land. */
	if (write(efd, &one, sizeof(one)) == sizeof(one)) {
		for (int i = 0; i < 100000; i++) {
			if (kvm_get_irqchip(vm.ctx, &pic) ||
			    (pic.chip.pic.irr & (1 << 5)))
				break;
			sched_yield();
		}
	}
	CHECK(pic.chip.pic.irr & (1 << 5),
	      "irqfd: writing the eventfd raises IRQ 5 at the PIC");
	CHECK(kvm_irqfd(vm.ctx, efd, 5, -1, true) == 0,
	      "irqfd: deassigned");
	CHECK(kvm_irq_line(vm.ctx, 3, 1) == 0 &&
		      kvm_get_irqchip(vm.ctx, &pic) == 0 &&
		      (pic.chip.pic.irr & (1 << 3)),
	      "irq line: KVM_IRQ_LINE raises IRQ 3 at the PIC");
	close(efd);
	kvm_close(vm.ctx);
}

int main(void)
{
	test_irqfd();
	test_open_errors();
	test_open_in_steps();
	test_real_mode();
	test_msr_and_ioeventfd();
	test_nmi();
	test_ring3();
	return tap_done();
}
