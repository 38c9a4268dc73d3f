// SPDX-License-Identifier: GPL-2.0
/* libkvm: the /dev/kvm ioctls behind a small, checked API. */
#include "libkvm.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

struct kvm_ctx {
	int sys_fd;
	int vm_fd;
	int run_size;
	const struct kvm_callbacks *cb;
	void *opaque;
	struct kvm_cpuid2 *supported_cpuid;	/* fetched once */
	pthread_mutex_t cpuid_lock;	/* around the fetch */
};

struct kvm_vcpu {
	struct kvm_ctx *ctx;
	unsigned int id;
	int fd;
	struct kvm_run *run;
	void *opaque;
	pthread_t thread;
	bool has_thread;
};

static int xioctl(int fd, unsigned long req, void *arg)
{
	int r;

	do
		r = ioctl(fd, req, arg);
	while (r < 0 && errno == EINTR && req != KVM_RUN);
	return r < 0 ? -errno : r;
}

static const struct kvm_callbacks no_callbacks;

int kvm_open(struct kvm_ctx **out, const char *path,
	     const struct kvm_callbacks *cb, void *opaque,
	     enum kvm_open_error *why)
{
	int r = kvm_open_device(out, path, cb, opaque, why);

	if (!r && (r = kvm_create_vm(*out, why))) {
		kvm_close(*out);
		*out = NULL;
	}
	return r;
}

int kvm_create_vm(struct kvm_ctx *ctx, enum kvm_open_error *why)
{
	do
		ctx->vm_fd = ioctl(ctx->sys_fd, KVM_CREATE_VM, 0);
	while (ctx->vm_fd < 0 && errno == EINTR);
	if (ctx->vm_fd < 0) {
		*why = KVM_OPEN_CREATE_VM;
		return -errno;
	}
	return 0;
}

int kvm_open_device(struct kvm_ctx **out, const char *path,
		    const struct kvm_callbacks *cb, void *opaque,
		    enum kvm_open_error *why)
{
	struct kvm_ctx *ctx;
	int r;

	*out = NULL;
	*why = KVM_OPEN_OK;
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return -ENOMEM;
	ctx->vm_fd = -1;
	pthread_mutex_init(&ctx->cpuid_lock, NULL);
	ctx->cb = cb ? cb : &no_callbacks;
	ctx->opaque = opaque;

	ctx->sys_fd = open(path ? path : "/dev/kvm", O_RDWR | O_CLOEXEC);
	if (ctx->sys_fd < 0) {
		r = -errno;
		*why = r == -ENOENT || r == -ENODEV || r == -ENXIO ?
			KVM_OPEN_NO_DEVICE :
		       r == -EACCES || r == -EPERM ? KVM_OPEN_PERMISSION :
						     KVM_OPEN_FAILED;
		goto fail;
	}
	r = ioctl(ctx->sys_fd, KVM_GET_API_VERSION, 0);
	if (r != KVM_API_VERSION) {
		*why = KVM_OPEN_API_VERSION;
		r = r < 0 ? -errno : -EPROTO;
		goto fail;
	}
	ctx->run_size = ioctl(ctx->sys_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (ctx->run_size < (int)sizeof(struct kvm_run)) {
		*why = KVM_OPEN_FAILED;
		r = ctx->run_size < 0 ? -errno : -EPROTO;
		goto fail;
	}
	*out = ctx;
	return 0;
fail:
	kvm_close(ctx);
	return r;
}

void kvm_close(struct kvm_ctx *ctx)
{
	if (!ctx)
		return;
	if (ctx->vm_fd >= 0)
		close(ctx->vm_fd);
	if (ctx->sys_fd >= 0)
		close(ctx->sys_fd);
	free(ctx->supported_cpuid);
	pthread_mutex_destroy(&ctx->cpuid_lock);
	free(ctx);
}

int kvm_system_fd(const struct kvm_ctx *ctx) { return ctx->sys_fd; }
int kvm_vm_fd(const struct kvm_ctx *ctx) { return ctx->vm_fd; }

int kvm_check_extension(struct kvm_ctx *ctx, long cap)
{
	int r = ioctl(ctx->vm_fd, KVM_CHECK_EXTENSION, cap);

	if (r < 0)
		r = ioctl(ctx->sys_fd, KVM_CHECK_EXTENSION, cap);
	return r < 0 ? 0 : r;
}

const char *kvm_cap_name(long cap)
{
	switch (cap) {
#define C(x) case x: return #x
	C(KVM_CAP_IRQCHIP);
	C(KVM_CAP_PIT2);
	C(KVM_CAP_USER_MEMORY);
	C(KVM_CAP_SET_TSS_ADDR);
	C(KVM_CAP_EXT_CPUID);
	C(KVM_CAP_IOEVENTFD);
	C(KVM_CAP_IRQFD);
	C(KVM_CAP_IMMEDIATE_EXIT);
	C(KVM_CAP_READONLY_MEM);
	C(KVM_CAP_SIGNAL_MSI);
	C(KVM_CAP_X86_USER_SPACE_MSR);
	C(KVM_CAP_X86_MSR_FILTER);
	C(KVM_CAP_SET_GUEST_DEBUG);
	C(KVM_CAP_MP_STATE);
	C(KVM_CAP_USER_NMI);
	C(KVM_CAP_NR_VCPUS);
	C(KVM_CAP_MAX_VCPUS);
	C(KVM_CAP_NR_MEMSLOTS);
#undef C
	}
	return "KVM capability";
}

long kvm_require_caps(struct kvm_ctx *ctx, const long *caps)
{
	for (; *caps; caps++)
		if (!kvm_check_extension(ctx, *caps))
			return *caps;
	return 0;
}

int kvm_create_irqchip(struct kvm_ctx *ctx)
{
	return xioctl(ctx->vm_fd, KVM_CREATE_IRQCHIP, NULL);
}

int kvm_create_split_irqchip(struct kvm_ctx *ctx, unsigned int ioapic_pins)
{
	return kvm_enable_cap(ctx, KVM_CAP_SPLIT_IRQCHIP, ioapic_pins);
}

int kvm_create_pit(struct kvm_ctx *ctx)
{
	struct kvm_pit_config cfg = { .flags = KVM_PIT_SPEAKER_DUMMY };

	return xioctl(ctx->vm_fd, KVM_CREATE_PIT2, &cfg);
}

int kvm_set_tss_addr(struct kvm_ctx *ctx, uint64_t addr)
{
	int r = ioctl(ctx->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)addr);

	return r < 0 ? -errno : 0;
}

int kvm_set_identity_map_addr(struct kvm_ctx *ctx, uint64_t addr)
{
	return xioctl(ctx->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &addr);
}

int kvm_enable_cap(struct kvm_ctx *ctx, uint32_t cap, uint64_t arg0)
{
	struct kvm_enable_cap e = { .cap = cap, .args = { arg0 } };

	return xioctl(ctx->vm_fd, KVM_ENABLE_CAP, &e);
}

int kvm_get_irqchip(struct kvm_ctx *ctx, struct kvm_irqchip *chip)
{
	return xioctl(ctx->vm_fd, KVM_GET_IRQCHIP, chip);
}

int kvm_set_irqchip(struct kvm_ctx *ctx, const struct kvm_irqchip *chip)
{
	return xioctl(ctx->vm_fd, KVM_SET_IRQCHIP, (void *)chip);
}

int kvm_set_gsi_routing(struct kvm_ctx *ctx,
			const struct kvm_irq_routing *routing)
{
	return xioctl(ctx->vm_fd, KVM_SET_GSI_ROUTING, (void *)routing);
}

int kvm_set_memory_region(struct kvm_ctx *ctx, uint32_t slot, uint64_t gpa,
			  uint64_t size, void *host, uint32_t flags)
{
	struct kvm_userspace_memory_region r = {
		.slot = slot,
		.flags = flags,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uintptr_t)host,
	};

	return xioctl(ctx->vm_fd, KVM_SET_USER_MEMORY_REGION, &r);
}

int kvm_get_dirty_log(struct kvm_ctx *ctx, uint32_t slot, uint64_t *bitmap)
{
	struct kvm_dirty_log log = { .slot = slot, .dirty_bitmap = bitmap };

	return xioctl(ctx->vm_fd, KVM_GET_DIRTY_LOG, &log);
}

int kvm_irq_line(struct kvm_ctx *ctx, uint32_t gsi, int level)
{
	struct kvm_irq_level l = { .irq = gsi, .level = level };

	return xioctl(ctx->vm_fd, KVM_IRQ_LINE, &l);
}

int kvm_signal_msi(struct kvm_ctx *ctx, uint64_t addr, uint32_t data)
{
	struct kvm_msi m = {
		.address_lo = (uint32_t)addr,
		.address_hi = (uint32_t)(addr >> 32),
		.data = data,
	};
	int r = xioctl(ctx->vm_fd, KVM_SIGNAL_MSI, &m);

	return r < 0 ? r : 0;
}

int kvm_irqfd(struct kvm_ctx *ctx, int fd, uint32_t gsi, int resample_fd,
	      bool deassign)
{
	struct kvm_irqfd i = { .fd = (uint32_t)fd, .gsi = gsi };

	if (deassign)
		i.flags |= KVM_IRQFD_FLAG_DEASSIGN;
	if (resample_fd >= 0) {
		i.flags |= KVM_IRQFD_FLAG_RESAMPLE;
		i.resamplefd = (uint32_t)resample_fd;
	}
	return xioctl(ctx->vm_fd, KVM_IRQFD, &i);
}

int kvm_ioeventfd(struct kvm_ctx *ctx, uint64_t addr, uint32_t len, int fd,
		  bool pio, bool has_datamatch, uint64_t datamatch,
		  bool deassign)
{
	struct kvm_ioeventfd e = {
		.datamatch = datamatch,
		.addr = addr,
		.len = len,
		.fd = fd,
	};

	if (pio)
		e.flags |= KVM_IOEVENTFD_FLAG_PIO;
	if (has_datamatch)
		e.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
	if (deassign)
		e.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
	return xioctl(ctx->vm_fd, KVM_IOEVENTFD, &e);
}

int kvm_enable_user_msr(struct kvm_ctx *ctx, uint32_t reasons)
{
	return kvm_enable_cap(ctx, KVM_CAP_X86_USER_SPACE_MSR, reasons);
}

int kvm_set_msr_filter(struct kvm_ctx *ctx, const struct kvm_msr_filter *f)
{
	return xioctl(ctx->vm_fd, KVM_X86_SET_MSR_FILTER, (void *)f);
}

int kvm_create_vcpu(struct kvm_ctx *ctx, unsigned int id,
		    struct kvm_vcpu **out)
{
	struct kvm_vcpu *v;
	int r;

	*out = NULL;
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->ctx = ctx;
	v->id = id;
	v->fd = ioctl(ctx->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
	if (v->fd < 0) {
		r = -errno;
		free(v);
		return r;
	}
	v->run = mmap(NULL, (size_t)ctx->run_size, PROT_READ | PROT_WRITE,
		      MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		r = -errno;
		close(v->fd);
		free(v);
		return r;
	}
	*out = v;
	return 0;
}

void kvm_destroy_vcpu(struct kvm_vcpu *v)
{
	if (!v)
		return;
	munmap(v->run, (size_t)v->ctx->run_size);
	close(v->fd);
	free(v);
}

unsigned int kvm_vcpu_id(const struct kvm_vcpu *v) { return v->id; }
int kvm_vcpu_fd(const struct kvm_vcpu *v) { return v->fd; }
struct kvm_run *kvm_vcpu_run_state(struct kvm_vcpu *v) { return v->run; }
void *kvm_vcpu_opaque(const struct kvm_vcpu *v) { return v->opaque; }
void kvm_vcpu_set_opaque(struct kvm_vcpu *v, void *o) { v->opaque = o; }

void kvm_vcpu_bind_thread(struct kvm_vcpu *v)
{
	v->thread = pthread_self();
	__atomic_store_n(&v->has_thread, true, __ATOMIC_RELEASE);
}

int kvm_vcpu_kick(struct kvm_vcpu *v, int sig)
{
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (!__atomic_load_n(&v->has_thread, __ATOMIC_ACQUIRE))
		return 0;
	return -pthread_kill(v->thread, sig);
}

static int run_pio(struct kvm_vcpu *v, const struct kvm_callbacks *cb)
{
	struct kvm_run *run = v->run;
	uint64_t total = (uint64_t)run->io.size * run->io.count;

	/* The data area lives inside the shared run page; trust no offset. */
	if (run->io.data_offset > (uint64_t)v->ctx->run_size ||
	    total > (uint64_t)v->ctx->run_size - run->io.data_offset)
		return -EFAULT;
	if (!cb->pio)
		return KVM_CONTINUE;
	return cb->pio(v->ctx->opaque, v, run->io.port,
		       run->io.direction == KVM_EXIT_IO_OUT,
		       (char *)run + run->io.data_offset, run->io.size,
		       run->io.count);
}

static int run_msr(struct kvm_vcpu *v, const struct kvm_callbacks *cb,
		   bool write)
{
	struct kvm_run *run = v->run;
	int r;

	if (write)
		r = cb->wrmsr ? cb->wrmsr(v->ctx->opaque, v, run->msr.index,
					  run->msr.data) :
				KVM_MSR_FAULT;
	else
		r = cb->rdmsr ? cb->rdmsr(v->ctx->opaque, v, run->msr.index,
					  (uint64_t *)&run->msr.data) :
				KVM_MSR_FAULT;
	run->msr.error = r == KVM_MSR_FAULT;
	return r == KVM_MSR_FAULT ? KVM_CONTINUE : r;
}

int kvm_vcpu_run(struct kvm_vcpu *v)
{
	const struct kvm_callbacks *cb = v->ctx->cb;
	struct kvm_run *run = v->run;
	int r;

	r = ioctl(v->fd, KVM_RUN, 0);
	__atomic_store_n(&run->immediate_exit, 0, __ATOMIC_SEQ_CST);
	if (r < 0)
		return -errno;

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		return run_pio(v, cb);
	case KVM_EXIT_MMIO:
		if (run->mmio.len > sizeof(run->mmio.data))
			return -EFAULT;
		return cb->mmio ? cb->mmio(v->ctx->opaque, v,
					   run->mmio.phys_addr,
					   run->mmio.is_write, run->mmio.data,
					   run->mmio.len) :
				  KVM_CONTINUE;
	case KVM_EXIT_HLT:
		return cb->halt ? cb->halt(v->ctx->opaque, v) : KVM_CONTINUE;
	case KVM_EXIT_INTR:
		return -EINTR;
	case KVM_EXIT_SHUTDOWN:
		if (cb->shutdown)
			return cb->shutdown(v->ctx->opaque, v);
		break;
	case KVM_EXIT_DEBUG:
		if (cb->debug)
			return cb->debug(v->ctx->opaque, v, &run->debug.arch);
		break;
	case KVM_EXIT_X86_RDMSR:
		return run_msr(v, cb, false);
	case KVM_EXIT_X86_WRMSR:
		return run_msr(v, cb, true);
	case KVM_EXIT_IRQ_WINDOW_OPEN:
		return KVM_CONTINUE;
	case KVM_EXIT_IOAPIC_EOI:
		return cb->eoi ? cb->eoi(v->ctx->opaque, v, run->eoi.vector) :
				 KVM_CONTINUE;
	case KVM_EXIT_SYSTEM_EVENT:
		if (cb->system_event)
			return cb->system_event(v->ctx->opaque, v,
						run->system_event.type);
		break;
	}
	return cb->unhandled ? cb->unhandled(v->ctx->opaque, v, run) : -ENOSYS;
}

#define VCPU_IOCTL(name, req, type)                                      \
	int kvm_##name(struct kvm_vcpu *v, type *arg)                     \
	{                                                                 \
		return xioctl(v->fd, req, (void *)arg);                   \
	}

VCPU_IOCTL(get_regs, KVM_GET_REGS, struct kvm_regs)
VCPU_IOCTL(set_regs, KVM_SET_REGS, const struct kvm_regs)
VCPU_IOCTL(get_sregs, KVM_GET_SREGS, struct kvm_sregs)
VCPU_IOCTL(set_sregs, KVM_SET_SREGS, const struct kvm_sregs)
VCPU_IOCTL(get_fpu, KVM_GET_FPU, struct kvm_fpu)
VCPU_IOCTL(set_fpu, KVM_SET_FPU, const struct kvm_fpu)
VCPU_IOCTL(get_lapic, KVM_GET_LAPIC, struct kvm_lapic_state)
VCPU_IOCTL(set_lapic, KVM_SET_LAPIC, const struct kvm_lapic_state)
VCPU_IOCTL(get_mp_state, KVM_GET_MP_STATE, struct kvm_mp_state)
VCPU_IOCTL(set_mp_state, KVM_SET_MP_STATE, const struct kvm_mp_state)
VCPU_IOCTL(get_vcpu_events, KVM_GET_VCPU_EVENTS, struct kvm_vcpu_events)
VCPU_IOCTL(set_vcpu_events, KVM_SET_VCPU_EVENTS,
	   const struct kvm_vcpu_events)
VCPU_IOCTL(set_guest_debug, KVM_SET_GUEST_DEBUG,
	   const struct kvm_guest_debug)
VCPU_IOCTL(set_cpuid, KVM_SET_CPUID2, const struct kvm_cpuid2)

static int msr_io(struct kvm_vcpu *v, unsigned long req,
		  const struct kvm_msr_entry *e, unsigned int n)
{
	struct kvm_msrs *m;
	int r;

	m = calloc(1, sizeof(*m) + n * sizeof(*e));
	if (!m)
		return -ENOMEM;
	m->nmsrs = n;
	memcpy(m->entries, e, n * sizeof(*e));
	r = xioctl(v->fd, req, m);
	if (r >= 0 && req == KVM_GET_MSRS)
		memcpy((void *)e, m->entries, n * sizeof(*e));
	free(m);
	/* The ioctls return how many MSRs they handled; fewer is a fault. */
	if (r >= 0 && (unsigned int)r != n)
		return -EINVAL;
	return r < 0 ? r : 0;
}

int kvm_get_msrs(struct kvm_vcpu *v, struct kvm_msr_entry *e, unsigned n)
{
	return msr_io(v, KVM_GET_MSRS, e, n);
}

int kvm_set_msrs(struct kvm_vcpu *v, const struct kvm_msr_entry *e,
		 unsigned n)
{
	return msr_io(v, KVM_SET_MSRS, e, n);
}

/* The answer does not change: asked once, copied for each caller (every
 * vCPU's set-up asks; machine_prepare() asks ahead, on another thread). */
static int fetch_supported_cpuid(struct kvm_ctx *ctx)
{
	unsigned int n = 64;

	while (!ctx->supported_cpuid) {
		struct kvm_cpuid2 *c;
		int r;

		c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
		if (!c)
			return -ENOMEM;
		c->nent = n;
		r = xioctl(ctx->sys_fd, KVM_GET_SUPPORTED_CPUID, c);
		if (r >= 0) {
			ctx->supported_cpuid = c;
			break;
		}
		free(c);
		if (r != -E2BIG || n >= 4096)
			return r;
		n *= 2;
	}
	return 0;
}

int kvm_fetch_supported_cpuid(struct kvm_ctx *ctx)
{
	int err;

	pthread_mutex_lock(&ctx->cpuid_lock);
	err = fetch_supported_cpuid(ctx);
	pthread_mutex_unlock(&ctx->cpuid_lock);
	return err;
}

int kvm_get_supported_cpuid(struct kvm_ctx *ctx, struct kvm_cpuid2 **out)
{
	size_t size;
	int err = kvm_fetch_supported_cpuid(ctx);

	if (err)
		return err;
	size = sizeof(**out) +
	       ctx->supported_cpuid->nent * sizeof((*out)->entries[0]);
	*out = malloc(size);
	if (!*out)
		return -ENOMEM;
	memcpy(*out, ctx->supported_cpuid, size);
	return 0;
}

int kvm_inject_irq(struct kvm_vcpu *v, unsigned int vector)
{
	struct kvm_interrupt i = { .irq = vector };

	return xioctl(v->fd, KVM_INTERRUPT, &i);
}

int kvm_inject_nmi(struct kvm_vcpu *v)
{
	return xioctl(v->fd, KVM_NMI, NULL);
}
