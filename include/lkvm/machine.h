/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The machine as the VMM sees it: configuration, guest memory map, buses,
 * vCPU threads and the run state. Built on libkvm.
 */
#ifndef LKVM_MACHINE_H
#define LKVM_MACHINE_H

#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>

#include "libkvm.h"
#include "lkvm/device.h"
#include "lkvm/iobus.h"
#include "lkvm/options.h"

/* Exit statuses of `lkvm run`. Debug-exit statuses are odd numbers. */
#define LKVM_EXIT_OK 0
#define LKVM_EXIT_ERROR 1	/* bad usage or set-up failure */
#define LKVM_EXIT_CRASH 100	/* triple fault, internal error, bad exit */
#define LKVM_EXIT_INTROSPECT 102	/* an introspection tool replied CRASH */
#define LKVM_EXIT_SIGNAL 128	/* + signal number */

enum console_kind { CONSOLE_SERIAL, CONSOLE_VIRTIO };
/* Whose interrupt controllers: the kernel's (PIC, I/O APIC, PIT and
 * local APICs in KVM), or KVM's split irqchip (local APICs in KVM, the
 * rest lkvm's own: arch/x86/irqchip.c). */
enum irqchip_kind { IRQCHIP_KERNEL, IRQCHIP_SPLIT };

struct machine_config {
	const char *kernel;
	const char *initrd;
	const char *params;
	const char *firmware;
	const char *name;
	const char *dump_dtb;
	uint64_t ram_size;		/* bytes */
	unsigned int ncpus;
	const char *console;		/* "serial" or "virtio" */
	enum console_kind console_kind;
	const char *irqchip;		/* "split" or "kernel" */
	enum irqchip_kind irqchip_kind;
	struct opt_list disks, nets, p9;
	bool rng, balloon;
	bool detach;			/* --detach: no terminal, runs on */
	const char *console_log;	/* --console-log FILE */
};

/* One contiguous range of guest-physical memory backed by host memory. */
struct mem_region {
	uint64_t gpa;
	uint64_t size;
	void *host;
	uint32_t slot;
	bool readonly;		/* ROM: guest writes exit as MMIO */
};

#define MACHINE_MAX_REGIONS 8

struct pci_bus;
struct fd_watch;
struct vcpu_ctl;
struct machine_vcpu_ctl;
struct machine_debug;
struct control;
struct counters;
struct msi_routes;
struct irqchip;

struct vcpu {
	struct machine *m;
	struct kvm_vcpu *kvm;
	unsigned int id;
	pthread_t thread;
	bool started;
	struct vcpu_ctl *ctl;	/* holds, parking, work (lkvm/vcpu.h) */
};

typedef void (*fd_handler_fn)(struct machine *m, int fd, void *opaque);
/*
 * Host input for the guest console. Returns how many bytes the device
 * took; when it takes fewer, the rest waits and stdin is not read until
 * the device calls machine_console_resume(), so no input is lost.
 */
typedef size_t (*console_input_fn)(struct machine *m, const char *buf,
				   size_t len, void *opaque);

struct machine {
	struct machine_config cfg;
	struct kvm_ctx *kvm;
	struct kvm_opening *opening;	/* machine_prepare() */
	struct iobus *pio;
	struct iobus *mmio;

	struct mem_region mem[MACHINE_MAX_REGIONS];
	unsigned int nmem;
	uint64_t ram_size;

	struct vcpu *vcpus;
	unsigned int ncpus;

	/* Per-device configuration blocks, indexed like device_list(). */
	void **dev_cfg;
	unsigned int ndev;
	unsigned int ndev_up;	/* how many got through init */

	/* Produced by the boot loader, consumed by vCPU set-up. */
	void *boot;

	/* The flattened device tree, once built. */
	void *fdt;

	/* The PCI bus (hw/pci.c), NULL until the host bridge is up. */
	struct pci_bus *pci;

	/* The VMM's own interrupt controllers (arch), NULL when they are
	 * the kernel's. */
	struct irqchip *irqchip;

	/* Next free GSI for PCI INTx and other non-ISA lines. */
	unsigned int next_gsi;

	/* Console input goes to the device that is the console. */
	console_input_fn console_in;
	void *console_in_opaque;

	/* Run state. */
	struct fd_watch *watches;
	int epoll_fd;
	int wake_fd;
	int exit_status;
	bool stopping;
	/* vCPUs 1 and up start their threads during set-up and run the
	 * guest once this is set (machine_run); a futex word. */
	int vcpus_go;
	/* vCPU 0 runs on machine_run()'s caller; set when it has stopped
	 * (a futex word), for the main loop that ends the run. */
	int vcpu0_done;
	void (*run_end)(struct machine *m, int status, void *arg);
	void *run_end_arg;
	/* The main loop's thread, when machine_prepare() started it before
	 * set-up: its work's result once prep_done (a futex word) is set;
	 * then it waits for loop_go (a futex word): to run the loop, or to
	 * leave at once when loop_abort is set (machine_exit). */
	pthread_t loop_thread;
	bool loop_started;
	bool loop_running;	/* machine_run() gave it the word */
	bool loop_abort;
	struct kvm_ctx *prep_kvm;
	cpu_set_t *prep_cpus;	/* the CPUs allowed, to restore */
	int prep_done;
	int prep_err;
	int loop_go;
	int (*prep)(struct machine *m, void *arg);
	void *prep_arg;

	/* Control: vCPU events (kvm/vcpu.c), the control socket
	 * (kvm/control.c), device counters for `lkvm stat` (kvm/stats.c). */
	struct machine_vcpu_ctl *vctl;
	struct control *control;
	struct counters *counters;
	/* Guest debug: breakpoints and steps of each owner (vcpu-debug.c). */
	struct machine_debug *debug;

	/*
	 * Virtio (virtio/): the MSI routes that virtio-pci's MSI-X vectors
	 * add to the GSI routing table; and what devices add to a Linux
	 * guest's command line (virtio_mmio.device=... for each virtio-mmio
	 * device), space-separated, malloc'd, NULL when nothing: the boot
	 * loader appends it for Linux kernels.
	 */
	struct msi_routes *msi_routes;
	char *linux_params;

	/*
	 * A WRMSR that KVM passed to user space (an MSR filter's refusal),
	 * on the vCPU's thread: KVM_CONTINUE once handled, KVM_MSR_FAULT
	 * for a #GP. NULL: every such write faults. (kvm/introspect.c)
	 */
	int (*wrmsr)(struct machine *m, struct vcpu *v, uint32_t index,
		     uint64_t data);
};

/* Guest memory. */
int machine_add_memory(struct machine *m, uint64_t gpa, uint64_t size,
		       void *host, bool readonly);
/*
 * The one way to reach guest memory: a host pointer to [gpa, gpa + len)
 * when the whole range lies inside one memory region, NULL otherwise
 * (out of range, overflowing, or straddling two regions).
 */
void *guest_ptr(struct machine *m, uint64_t gpa, uint64_t len);
int guest_read(struct machine *m, uint64_t gpa, void *buf, uint64_t len);
int guest_write(struct machine *m, uint64_t gpa, const void *buf,
		uint64_t len);

/* The configuration block of a device (see struct device_ops). */
void *machine_dev_cfg(struct machine *m, const struct device_ops *ops);

/* Interrupts. */
int machine_irq_line(struct machine *m, unsigned int gsi, int level);
/* A GSI for a level-triggered, non-ISA line (16..23), shared in turn. */
unsigned int machine_alloc_gsi(struct machine *m);

/* I/O registration shortcuts. */
int machine_register_pio(struct machine *m, uint16_t base, uint16_t len,
			 io_handler_fn fn, void *opaque, const char *name);
int machine_register_mmio(struct machine *m, uint64_t base, uint64_t len,
			  io_handler_fn fn, void *opaque, const char *name);

/* The main loop watches fd and calls fn when it is readable. */
int machine_watch_fd(struct machine *m, int fd, fd_handler_fn fn,
		     void *opaque);
int machine_unwatch_fd(struct machine *m, int fd);

/* The console device takes host input through this. */
void machine_set_console_input(struct machine *m, console_input_fn fn,
			       void *opaque);

/*
 * What the guest console prints: to stdout (and, with the control
 * features, to attached console clients and the console log). Any
 * thread; each call's bytes stay together.
 */
void machine_console_write(struct machine *m, const void *buf, size_t len);

/* The console device has room again (any thread). */
void machine_console_resume(struct machine *m);

/*
 * Ends the run with status (the first call wins) and kicks every vCPU.
 * Safe from any thread, including vCPU threads and signal context.
 */
void machine_stop(struct machine *m, int status);
bool machine_stopping(const struct machine *m);

/* Prints a vCPU's registers and the bytes at RIP, for crash reports. */
void machine_dump_vcpu(struct machine *m, struct vcpu *v, const char *why);

/* The life cycle, in builtin-run.c's order. */
int machine_setup_config(struct machine *m);	/* device config blocks */
/*
 * Optional, before machine_init() and after any fork: opens /dev/kvm,
 * starts the main loop's thread, and creates the VM, first thing
 * (open_kvm() reports their errors later). The thread does, beside the
 * main thread's set-up, what needs neither the VM's state nor the main
 * thread: the host's CPUID table (arch_prefetch), then fn(m, arg), which
 * may only read m->cfg and the devices' config blocks.
 * machine_prepared() waits for it and returns fn's result. The thread
 * then waits for machine_run(), or for machine_exit() after a failed
 * set-up. Returns 0, or -errno when no thread could start (fn did not
 * run: the caller ends).
 */
int machine_prepare(struct machine *m, int (*fn)(struct machine *m, void *arg),
		    void *arg);
int machine_prepared(struct machine *m);
int machine_init(struct machine *m);	/* KVM, memory, devices, boot */
/*
 * Runs the machine until it stops and returns its status. vCPU 0 runs on
 * the calling thread, which goes into the guest without waiting for any
 * other thread; the main loop runs on a thread of its own ("main-loop"),
 * which, once every vCPU has stopped, calls end (if not NULL) with the
 * status: the run's teardown belongs there, under the main loop's
 * seccomp filter rather than vCPU 0's. machine_run() returns after end.
 */
int machine_run(struct machine *m,
		void (*end)(struct machine *m, int status, void *arg),
		void *arg);
/* One round of the main loop: waits up to timeout_ms (-1: no limit) and
 * calls the handlers of ready fds. Returns how many were ready or -errno. */
int machine_poll(struct machine *m, int timeout_ms);
void machine_exit(struct machine *m);

#endif
