/* SPDX-License-Identifier: GPL-2.0 */
/*
 * An 82093AA-style I/O APIC with 24 pins (hw/ioapic.c), version 0x11 as
 * KVM's in-kernel one reports, at IOAPIC_BASE. Used when lkvm runs on
 * KVM's split irqchip: the local APICs stay in the kernel and the I/O
 * APIC sends them MSI messages. The register model has no lock; it
 * delivers and reports its redirection table through callbacks.
 */
#ifndef LKVM_IOAPIC_H
#define LKVM_IOAPIC_H

#include <stdbool.h>
#include <stdint.h>

#define IOAPIC_BASE 0xfec00000ull
#define IOAPIC_SIZE 0x1000
#define IOAPIC_PINS 24
#define IOAPIC_VERSION 0x11

/* Register window offsets. */
#define IOAPIC_REGSEL 0x00
#define IOAPIC_WINDOW 0x10

/* Redirection entry bits. */
#define IOAPIC_VECTOR_MASK 0xffull
#define IOAPIC_DM_SHIFT 8	/* delivery mode, 3 bits */
#define IOAPIC_DEST_LOGICAL (1ull << 11)
#define IOAPIC_DELIVS (1ull << 12)	/* read-only */
#define IOAPIC_POLARITY_LOW (1ull << 13)
#define IOAPIC_REMOTE_IRR (1ull << 14)	/* read-only */
#define IOAPIC_LEVEL (1ull << 15)
#define IOAPIC_MASKED (1ull << 16)
#define IOAPIC_DEST_SHIFT 56

struct ioapic {
	uint8_t id;
	uint32_t regsel;
	uint64_t redtbl[IOAPIC_PINS];
	uint32_t lines;		/* input levels as last set (asserted = 1) */
	uint32_t edge_pending;	/* a rise came while masked and was dropped
				 * (a record only; cleared by the pin's
				 * next delivered rise) */
	/* Sends one interrupt as an MSI message (address, data). */
	void (*deliver)(struct ioapic *io, unsigned int pin, uint64_t addr,
			uint32_t data);
	/* A redirection entry changed (vector, destination, modes or
	 * mask): the owner keeps KVM's route for the pin in step, so that
	 * the kernel's local APICs report EOIs of level-triggered vectors. */
	void (*entry_changed)(struct ioapic *io, unsigned int pin);
	void *opaque;
};

/* Power-on state: every pin masked, edge, vector 0; the ID given. */
void ioapic_reset(struct ioapic *io, uint8_t id);
/*
 * Sets input pin's level (true = asserted, whatever the polarity the
 * guest programmed: callers pass the logical level). An edge pin
 * delivers on each rise while unmasked; a level pin delivers while
 * asserted and its remote IRR is clear, then sets remote IRR.
 */
void ioapic_set_irq(struct ioapic *io, unsigned int pin, bool level);
/*
 * A local APIC's EOI of vector (KVM_EXIT_IOAPIC_EOI): clears remote IRR
 * of every level pin with that vector, and delivers again those still
 * asserted and unmasked.
 */
void ioapic_eoi(struct ioapic *io, uint8_t vector);
/* 32-bit accesses at IOAPIC_REGSEL and IOAPIC_WINDOW; others read 0 /
 * are ignored. offset is from IOAPIC_BASE. */
uint32_t ioapic_mmio_read(struct ioapic *io, uint64_t offset);
void ioapic_mmio_write(struct ioapic *io, uint64_t offset, uint32_t val);
/* The MSI message a redirection entry sends (as the kernel's local APICs
 * decode it: destination, logical mode, delivery mode, level trigger). */
void ioapic_entry_msi(uint64_t entry, uint64_t *addr, uint32_t *data);

#endif
