/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Confinement of a running guest's lkvm (docs/security.md): a seccomp
 * allowlist per thread class, and --user.
 *
 * Every thread is confined before the first KVM_RUN by one process-wide
 * filter, the union of the classes' lists (installed on all threads at
 * once, so no thread is ever left out). Each thread then narrows itself
 * to its own class's list with seccomp_thread_enter(): vCPU threads
 * before their first KVM_RUN, the main loop once its own set-up is done,
 * I/O threads at their next wake-up. Filters only ever stack, so a
 * thread can never widen what it may call.
 *
 * The allowlist is the core table in kvm/seccomp.c plus what each device
 * that got through init declares in its struct device_ops .seccomp:
 *
 *	static const struct seccomp_rule net_seccomp[] = {
 *		SECCOMP_SYSCALL(sendmsg, SECCOMP_IO),
 *		SECCOMP_IOCTL(TUNSETOFFLOAD, SECCOMP_MAIN),
 *		SECCOMP_END,
 *	};
 *	... .seccomp = net_seccomp, ...
 */
#ifndef LKVM_SECCOMP_H
#define LKVM_SECCOMP_H

#include <stdbool.h>
#include <sys/syscall.h>

struct machine;
struct registry_entry;

/* Thread classes, as a mask. */
enum seccomp_class {
	SECCOMP_MAIN = 1 << 0,	/* the main loop: control clients, console */
	SECCOMP_VCPU = 1 << 1,	/* KVM_RUN and the device models it calls */
	SECCOMP_IO = 1 << 2,	/* device I/O threads, disk workers, KVMI */
	SECCOMP_ALL = SECCOMP_MAIN | SECCOMP_VCPU | SECCOMP_IO,
};

enum seccomp_arg {
	SECCOMP_ARG_ANY,	/* the call, whatever its arguments */
	SECCOMP_ARG_IOCTL,	/* ioctl with request number .value */
	SECCOMP_ARG_MASKED,	/* (argument .arg & .mask) == .value */
};

struct seccomp_rule {
	int nr;			/* __NR_ number; 0 with .classes 0 ends */
	unsigned int classes;	/* enum seccomp_class mask */
	enum seccomp_arg match;
	unsigned int arg;
	unsigned long mask, value;
};

#define SECCOMP_SYSCALL(name, cls) { .nr = __NR_##name, .classes = (cls) }
#define SECCOMP_IOCTL(req, cls)                                            \
	{ .nr = __NR_ioctl, .classes = (cls), .match = SECCOMP_ARG_IOCTL,  \
	  .value = (unsigned long)(req) }
/* name allowed only when argument number argno (0-5) equals val. */
#define SECCOMP_SYSCALL_ARG(name, argno, val, cls)                         \
	{ .nr = __NR_##name, .classes = (cls), .match = SECCOMP_ARG_MASKED,\
	  .arg = (argno), .mask = ~0ul, .value = (unsigned long)(val) }
#define SECCOMP_END { .nr = -1 }

struct sock_fprog;

/* The allowlist every lkvm has, before the devices' (for tests). */
const struct seccomp_rule *seccomp_core_rules(void);

/*
 * The rules of tables (each SECCOMP_END-terminated) that name one of
 * classes, as a seccomp BPF program (kvm/seccomp-bpf.c): allowed calls
 * ALLOW, others TRAP, another ABI kills the process, clone3 fails with
 * ENOSYS. out->filter is malloc'd. -EINVAL for a malformed rule.
 */
int seccomp_bpf_build(const struct seccomp_rule *const *tables,
		      unsigned int ntables, unsigned int classes,
		      struct sock_fprog *out);

/*
 * The program a thread of classes stacks on the one of SECCOMP_ALL (which
 * it must run under): together they answer as seccomp_bpf_build() for
 * classes does, but this one tests only the calls whose rules differ.
 */
int seccomp_bpf_build_narrowing(const struct seccomp_rule *const *tables,
				unsigned int ntables, unsigned int classes,
				struct sock_fprog *out);

/*
 * Builds the filters confine_start() will install (it builds them itself
 * otherwise): needs only the options, so machine_prepare() runs it beside
 * set-up. Returns 0 or -errno; confine_start() reports a failure.
 */
int confine_prepare(struct machine *m);

/*
 * After set-up, before machine_run(): drops to --user (when given), then
 * installs the process-wide filter on every thread (unless
 * --no-seccomp). Prints why and returns -errno on failure.
 */
int confine_start(struct machine *m, struct registry_entry *reg);

/*
 * The calling thread narrows itself to its class's filter, once; a no-op
 * before confine_start() or with --no-seccomp. Cheap enough for every
 * wake-up of an I/O thread's loop.
 */
void seccomp_thread_enter(enum seccomp_class cls);

#endif
