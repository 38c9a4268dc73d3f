/* SPDX-License-Identifier: GPL-2.0 */
/*
 * libkvm: a thin, checked layer over the /dev/kvm ioctls.
 *
 * Modelled on the original libkvm API (a context, callbacks for the exits
 * a VMM must emulate, VM and vCPU creation, register and memory access)
 * and brought up to today's KVM: capability checks, irqfd, ioeventfd,
 * MSR filters and user-space MSR exits, immediate_exit kicks.
 *
 * Every function returns 0 or a positive value on success and -errno on
 * failure; nothing here prints or exits, so tools can embed it.
 */
#ifndef LIBKVM_H
#define LIBKVM_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kvm_ctx;
struct kvm_vcpu;

/*
 * What a handler returns: KVM_CONTINUE (0) re-enters the guest, any
 * positive value makes kvm_vcpu_run() return it, a negative errno is an
 * error that kvm_vcpu_run() returns as well.
 */
#define KVM_CONTINUE 0

struct kvm_callbacks {
	/* Port I/O: size is 1, 2 or 4; count > 1 for string instructions. */
	int (*pio)(void *opaque, struct kvm_vcpu *vcpu, uint16_t port,
		   bool is_write, void *data, unsigned int size,
		   unsigned int count);
	/* MMIO to an address with no memory slot (or a read-only slot). */
	int (*mmio)(void *opaque, struct kvm_vcpu *vcpu, uint64_t gpa,
		    bool is_write, void *data, unsigned int len);
	/* HLT reached user space (only without the in-kernel irqchip). */
	int (*halt)(void *opaque, struct kvm_vcpu *vcpu);
	/* Triple fault. */
	int (*shutdown)(void *opaque, struct kvm_vcpu *vcpu);
	/* KVM_EXIT_DEBUG (single-step, breakpoints). */
	int (*debug)(void *opaque, struct kvm_vcpu *vcpu,
		     struct kvm_debug_exit_arch *arch);
	/*
	 * User-space MSR access (KVM_CAP_X86_USER_SPACE_MSR). Return
	 * KVM_CONTINUE with *data filled (rdmsr) or consumed (wrmsr), or
	 * KVM_MSR_FAULT to inject #GP.
	 */
	int (*rdmsr)(void *opaque, struct kvm_vcpu *vcpu, uint32_t index,
		     uint64_t *data);
	int (*wrmsr)(void *opaque, struct kvm_vcpu *vcpu, uint32_t index,
		     uint64_t data);
	/* KVM_EXIT_SYSTEM_EVENT. */
	int (*system_event)(void *opaque, struct kvm_vcpu *vcpu, uint32_t type);
	/*
	 * With the split irqchip (kvm_create_split_irqchip): the local APIC
	 * took an EOI of a vector that a level-triggered I/O APIC route
	 * uses (KVM_EXIT_IOAPIC_EOI). KVM_EXIT_IRQ_WINDOW_OPEN, which
	 * request_interrupt_window asks for, needs no callback: it returns
	 * KVM_CONTINUE so the caller injects before the next KVM_RUN.
	 */
	int (*eoi)(void *opaque, struct kvm_vcpu *vcpu, uint8_t vector);
	/* Anything else: internal errors, failed entries, unknown exits. */
	int (*unhandled)(void *opaque, struct kvm_vcpu *vcpu,
			 struct kvm_run *run);
};

#define KVM_MSR_FAULT (-0x10000)

/* Why kvm_open() failed, beyond errno, for a precise message. */
enum kvm_open_error {
	KVM_OPEN_OK,
	KVM_OPEN_NO_DEVICE,	/* the device node does not exist */
	KVM_OPEN_PERMISSION,	/* open() refused */
	KVM_OPEN_FAILED,	/* another open() error */
	KVM_OPEN_API_VERSION,	/* KVM_GET_API_VERSION is not 12 */
	KVM_OPEN_CREATE_VM,	/* KVM_CREATE_VM failed */
};

/*
 * Opens path (NULL: /dev/kvm), checks the API version and creates a VM.
 * On failure returns -errno and sets *why.
 */
int kvm_open(struct kvm_ctx **ctx, const char *path,
	     const struct kvm_callbacks *cb, void *opaque,
	     enum kvm_open_error *why);
/* kvm_open() in two steps, for a caller that asks the system fd
 * something (kvm_fetch_supported_cpuid) from another thread while the VM
 * is created: the device (on failure *ctx is NULL), then the VM (on
 * failure the context stays open: the caller closes it). */
int kvm_open_device(struct kvm_ctx **ctx, const char *path,
		    const struct kvm_callbacks *cb, void *opaque,
		    enum kvm_open_error *why);
int kvm_create_vm(struct kvm_ctx *ctx, enum kvm_open_error *why);
void kvm_close(struct kvm_ctx *ctx);

int kvm_system_fd(const struct kvm_ctx *ctx);
int kvm_vm_fd(const struct kvm_ctx *ctx);

/* KVM_CHECK_EXTENSION on the VM (falls back to the system fd). */
int kvm_check_extension(struct kvm_ctx *ctx, long cap);
/* The name of a capability, for messages ("KVM_CAP_IRQCHIP"). */
const char *kvm_cap_name(long cap);
/* Returns 0, or the first capability of caps[] (0-terminated) missing. */
long kvm_require_caps(struct kvm_ctx *ctx, const long *caps);

/* Machine-wide set-up. */
int kvm_create_irqchip(struct kvm_ctx *ctx);
/* Only the local APICs in the kernel (KVM_CAP_SPLIT_IRQCHIP); GSIs
 * 0..ioapic_pins-1 are the VMM's I/O APIC's routes. */
int kvm_create_split_irqchip(struct kvm_ctx *ctx, unsigned int ioapic_pins);
int kvm_create_pit(struct kvm_ctx *ctx);
int kvm_set_tss_addr(struct kvm_ctx *ctx, uint64_t addr);
int kvm_set_identity_map_addr(struct kvm_ctx *ctx, uint64_t addr);
int kvm_enable_cap(struct kvm_ctx *ctx, uint32_t cap, uint64_t arg0);

/* In-kernel PIC and I/O APIC state (chip->chip_id selects which). */
int kvm_get_irqchip(struct kvm_ctx *ctx, struct kvm_irqchip *chip);
int kvm_set_irqchip(struct kvm_ctx *ctx, const struct kvm_irqchip *chip);

/* Replaces the whole GSI routing table. */
int kvm_set_gsi_routing(struct kvm_ctx *ctx,
			const struct kvm_irq_routing *routing);

/* Guest memory. flags: KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY. */
int kvm_set_memory_region(struct kvm_ctx *ctx, uint32_t slot, uint64_t gpa,
			  uint64_t size, void *host, uint32_t flags);
/* bitmap: one bit per page of the slot, rounded up to 64 bits. */
int kvm_get_dirty_log(struct kvm_ctx *ctx, uint32_t slot, uint64_t *bitmap);

/* Interrupts. */
int kvm_irq_line(struct kvm_ctx *ctx, uint32_t gsi, int level);
int kvm_signal_msi(struct kvm_ctx *ctx, uint64_t addr, uint32_t data);
int kvm_irqfd(struct kvm_ctx *ctx, int fd, uint32_t gsi, int resample_fd,
	      bool deassign);
/* len 0 matches any length; datamatch only when has_datamatch. */
int kvm_ioeventfd(struct kvm_ctx *ctx, uint64_t addr, uint32_t len, int fd,
		  bool pio, bool has_datamatch, uint64_t datamatch,
		  bool deassign);

/* MSRs handled in user space. */
int kvm_enable_user_msr(struct kvm_ctx *ctx, uint32_t reasons);
int kvm_set_msr_filter(struct kvm_ctx *ctx, const struct kvm_msr_filter *f);

/* vCPUs. */
int kvm_create_vcpu(struct kvm_ctx *ctx, unsigned int id,
		    struct kvm_vcpu **vcpu);
void kvm_destroy_vcpu(struct kvm_vcpu *vcpu);
unsigned int kvm_vcpu_id(const struct kvm_vcpu *vcpu);
int kvm_vcpu_fd(const struct kvm_vcpu *vcpu);
struct kvm_run *kvm_vcpu_run_state(struct kvm_vcpu *vcpu);
void *kvm_vcpu_opaque(const struct kvm_vcpu *vcpu);
void kvm_vcpu_set_opaque(struct kvm_vcpu *vcpu, void *opaque);

/*
 * Enters the guest once and dispatches the exit to the callbacks.
 * Returns KVM_CONTINUE after a handled exit, -EINTR after a kick or a
 * signal, a handler's non-zero value, or -errno.
 */
int kvm_vcpu_run(struct kvm_vcpu *vcpu);

/*
 * Makes the vCPU leave KVM_RUN soon: sets immediate_exit (so a vCPU that
 * is about to enter returns at once) and signals its thread with sig
 * (which must have a handler installed and be blocked nowhere but
 * outside KVM_RUN). Safe from any thread.
 */
int kvm_vcpu_kick(struct kvm_vcpu *vcpu, int sig);
/* Records the calling thread as the vCPU's thread, for kicks. */
void kvm_vcpu_bind_thread(struct kvm_vcpu *vcpu);

int kvm_get_regs(struct kvm_vcpu *vcpu, struct kvm_regs *regs);
int kvm_set_regs(struct kvm_vcpu *vcpu, const struct kvm_regs *regs);
int kvm_get_sregs(struct kvm_vcpu *vcpu, struct kvm_sregs *sregs);
int kvm_set_sregs(struct kvm_vcpu *vcpu, const struct kvm_sregs *sregs);
int kvm_get_fpu(struct kvm_vcpu *vcpu, struct kvm_fpu *fpu);
int kvm_set_fpu(struct kvm_vcpu *vcpu, const struct kvm_fpu *fpu);
int kvm_get_msrs(struct kvm_vcpu *vcpu, struct kvm_msr_entry *e, unsigned n);
int kvm_set_msrs(struct kvm_vcpu *vcpu, const struct kvm_msr_entry *e,
		 unsigned n);
int kvm_get_lapic(struct kvm_vcpu *vcpu, struct kvm_lapic_state *s);
int kvm_set_lapic(struct kvm_vcpu *vcpu, const struct kvm_lapic_state *s);
int kvm_get_mp_state(struct kvm_vcpu *vcpu, struct kvm_mp_state *s);
int kvm_set_mp_state(struct kvm_vcpu *vcpu, const struct kvm_mp_state *s);
int kvm_get_vcpu_events(struct kvm_vcpu *vcpu, struct kvm_vcpu_events *e);
int kvm_set_vcpu_events(struct kvm_vcpu *vcpu,
			const struct kvm_vcpu_events *e);
int kvm_set_guest_debug(struct kvm_vcpu *vcpu,
			const struct kvm_guest_debug *dbg);
int kvm_set_cpuid(struct kvm_vcpu *vcpu, const struct kvm_cpuid2 *cpuid);
/* Returns a malloc'd table the caller frees. KVM is asked once, by the
 * first caller; kvm_fetch_supported_cpuid() asks it ahead, from any
 * thread, so that the later calls only copy. */
int kvm_fetch_supported_cpuid(struct kvm_ctx *ctx);
int kvm_get_supported_cpuid(struct kvm_ctx *ctx, struct kvm_cpuid2 **out);

/* Injection. */
int kvm_inject_irq(struct kvm_vcpu *vcpu, unsigned int vector);
int kvm_inject_nmi(struct kvm_vcpu *vcpu);

#endif
