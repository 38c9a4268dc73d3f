/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What `lkvm stat` reports (kvm/stats.c): KVM's own binary statistics
 * (KVM_GET_STATS_FD) where the kernel offers them, lkvm's exits by
 * reason, accesses per I/O region, guest memory, and counters that
 * devices publish here.
 */
#ifndef LKVM_STATS_H
#define LKVM_STATS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct machine;

/* A device's counters; update them with dev_count() from any thread. */
struct dev_counters {
	uint64_t requests;
	uint64_t bytes;
	uint64_t errors;
};

static inline void dev_count(struct dev_counters *c, uint64_t bytes,
			     bool error)
{
	__atomic_fetch_add(&c->requests, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&c->bytes, bytes, __ATOMIC_RELAXED);
	if (error)
		__atomic_fetch_add(&c->errors, 1, __ATOMIC_RELAXED);
}

/*
 * Publishes c under name (e.g. "virtio-blk0"): call from a device's init;
 * c must live until machine_exit(). Returns 0 or -ENOMEM.
 */
int machine_add_counters(struct machine *m, const char *name,
			 struct dev_counters *c);
void machine_free_counters(struct machine *m);

/*
 * Writes the statistics as "key value" lines (docs/control.md lists the
 * keys). Keys are dotted paths of [A-Za-z0-9_-] parts.
 */
void stats_write(struct machine *m, FILE *out);

#endif
