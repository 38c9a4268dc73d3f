/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Debugging views for `lkvm debug` (kvm/inspect.c): a page-table walk
 * shown level by level, the stack, and an ELF core of the whole guest.
 * Each works on stopped vCPUs (see lkvm/vcpu.h) and reads guest memory
 * only through guest_ptr(). The walks and the core's register notes are
 * x86-64's; another architecture brings its own.
 */
#ifndef LKVM_INSPECT_H
#define LKVM_INSPECT_H

#include <stdint.h>
#include <stdio.h>

struct machine;
struct vcpu;

/* Prints each level of the walk of gva; 0, or -EFAULT when unmapped. */
int inspect_translate(struct machine *m, struct vcpu *v, uint64_t gva,
		      FILE *out);
/* Prints words 8-byte words from the stack pointer, then the chain of
 * frame pointers. */
int inspect_stack(struct machine *m, struct vcpu *v, unsigned int words,
		  FILE *out);
/*
 * Writes an ELF core of guest memory to fd: a PT_LOAD per memory region
 * (physical address as both p_paddr and p_vaddr), an NT_PRSTATUS note per
 * vCPU (gdb's threads) and an "LKVM" note per vCPU with its struct
 * kvm_sregs. Every vCPU must be stopped. Returns the file's size or
 * -errno.
 */
int64_t inspect_write_core(struct machine *m, int fd, const char *name);

/* The note type of the "LKVM" per-vCPU note: struct lkvm_core_sregs. */
#define LKVM_NOTE_SREGS 1

#endif
