/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The PIO and MMIO buses: devices register address ranges with a handler;
 * an exit is dispatched to the handler that owns the address. Lookup is a
 * table index for ports and a fixed-depth radix walk for MMIO, so its cost
 * does not grow with the number of devices.
 */
#ifndef LKVM_IOBUS_H
#define LKVM_IOBUS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct kvm_vcpu;
struct io_region;

/*
 * offset is relative to the region's base; len is 1..8 and the access
 * never crosses the region's end (the bus splits or refuses it first).
 * A read handler fills data; bytes it leaves alone read as 0xff.
 */
typedef void (*io_handler_fn)(struct io_region *r, struct kvm_vcpu *vcpu,
			      uint64_t offset, void *data, unsigned int len,
			      bool is_write);

struct io_region {
	uint64_t base;
	uint64_t len;
	io_handler_fn fn;
	void *opaque;
	const char *name;
	/* Accesses dispatched to the region, for `lkvm stat` (atomic). */
	uint64_t reads, writes, bytes;
};

enum iobus_kind { IOBUS_PIO, IOBUS_MMIO };

struct iobus;

struct iobus *iobus_new(enum iobus_kind kind);
void iobus_free(struct iobus *bus);

/*
 * Registers [base, base + len). Fails with -EEXIST when the range overlaps
 * a registered one, -EINVAL when it is empty, wraps or is out of the bus's
 * address space (64 KiB for ports, 2^48 for MMIO). The region struct is
 * copied; the returned pointer stays valid until unregistered.
 */
int iobus_register(struct iobus *bus, uint64_t base, uint64_t len,
		   io_handler_fn fn, void *opaque, const char *name,
		   struct io_region **out);
int iobus_unregister(struct iobus *bus, struct io_region *r);
/* Moves a region (a BAR reprogrammed by the guest). */
int iobus_move(struct iobus *bus, struct io_region *r, uint64_t new_base);

/* The region holding addr, or NULL. The caller holds the read lock. */
struct io_region *iobus_lookup(struct iobus *bus, uint64_t addr);

/*
 * Dispatches one access. Returns false when no region holds addr (reads
 * then return all ones). An access crossing a region's end is split.
 */
bool iobus_access(struct iobus *bus, struct kvm_vcpu *vcpu, uint64_t addr,
		  void *data, unsigned int len, bool is_write);

/* Statistics for `lkvm stat` and the bench. */
uint64_t iobus_unclaimed(const struct iobus *bus);
/* Calls fn for every registered region, under the bus's read lock. */
void iobus_for_each(struct iobus *bus,
		    void (*fn)(const struct io_region *r, void *arg),
		    void *arg);

#endif
