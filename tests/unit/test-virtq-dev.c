// SPDX-License-Identifier: GPL-2.0
/*
 * Virtio devices through their transports, driven the way a guest driver
 * drives them, on a fake machine (no KVM: notifications reach the I/O
 * threads through the register handlers, interrupts are seen in the ISR,
 * the PCI status register and the MSI-X pending bits).
 *
 * virtio-pci transitional (modern and legacy interfaces), modern-only and
 * legacy-only; virtio-mmio versions 2 and 1; the status state machine and
 * FEATURES_OK; notifications before DRIVER_OK; malformed chains setting
 * DEVICE_NEEDS_RESET while other devices go on; reset; MSI-X masking;
 * and the rng, console and blk models.
 */
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fake-machine.h"
#include "lkvm/device.h"
#include "lkvm/iobus.h"
#include "lkvm/machine.h"
#include "lkvm/pci.h"
#include "lkvm/virtio.h"
#include "tap.h"

#define RAM (64ull << 20)
#define QMEM 0x100000ull	/* queue q's rings at QMEM + q * 0x10000 */
#define DATA 0x400000ull	/* buffers */

#define S_ACK VIRTIO_STATUS_ACKNOWLEDGE
#define S_DRV VIRTIO_STATUS_DRIVER
#define S_FOK VIRTIO_STATUS_FEATURES_OK
#define S_DOK VIRTIO_STATUS_DRIVER_OK
#define S_NR VIRTIO_STATUS_NEEDS_RESET

static struct machine *m;

static void *gp(uint64_t gpa)
{
	return guest_ptr(m, gpa, 1);
}

static const struct device_ops *find_device(const char *name)
{
	unsigned int n;
	const struct device_ops *const *d = device_list(&n);

	for (unsigned int i = 0; i < n; i++)
		if (!strcmp(d[i]->name, name))
			return d[i];
	return NULL;
}

/* ---- bus access --------------------------------------------------------- */

static uint64_t rd(bool pio, uint64_t addr, unsigned int len)
{
	uint64_t v = 0;

	iobus_access(pio ? m->pio : m->mmio, NULL, addr, &v, len, false);
	return v;
}

static void wr(bool pio, uint64_t addr, unsigned int len, uint64_t v)
{
	iobus_access(pio ? m->pio : m->mmio, NULL, addr, &v, len, true);
}

static uint32_t cfg_rd(unsigned int slot, unsigned int reg, unsigned int len)
{
	uint32_t a = 0x80000000u | slot << 11 | (reg & 0xfc), v = 0;

	iobus_access(m->pio, NULL, 0xcf8, &a, 4, true);
	iobus_access(m->pio, NULL, 0xcfc + (reg & 3), &v, len, false);
	return v;
}

static void cfg_wr(unsigned int slot, unsigned int reg, unsigned int len,
		   uint32_t v)
{
	uint32_t a = 0x80000000u | slot << 11 | (reg & 0xfc);

	iobus_access(m->pio, NULL, 0xcf8, &a, 4, true);
	iobus_access(m->pio, NULL, 0xcfc + (reg & 3), &v, len, true);
}

/* ---- a driver ------------------------------------------------------------ */

enum iface { MODERN, LEGACY, MMIO2, MMIO1 };

struct drv {
	enum iface iface;
	unsigned int slot;
	uint64_t common, isr, devcfg, notify;	/* modern */
	uint16_t io;				/* legacy */
	uint64_t mmio;				/* virtio-mmio */
	uint16_t qsize[4];
	uint16_t avail_idx[4], used_seen[4];
};

/* The slot of the last virtio device plugged with this PCI device ID. */
static unsigned int find_slot(uint16_t id)
{
	unsigned int found = 0;

	for (unsigned int s = 1; s < 32; s++)
		if (cfg_rd(s, 0, 4) == (0x1af4u | (uint32_t)id << 16))
			found = s;
	return found;
}

/* Walks the capability list for a vendor capability of cfg_type. */
static unsigned int find_cap(unsigned int slot, int type)
{
	unsigned int p = cfg_rd(slot, 0x34, 1);

	for (int n = 0; p && n < 48; n++, p = cfg_rd(slot, p + 1, 1)) {
		if (type < 0 && cfg_rd(slot, p, 1) == 0x11)
			return p;
		if (type >= 0 && cfg_rd(slot, p, 1) == 0x09 &&
		    (int)cfg_rd(slot, p + 3, 1) == type)
			return p;
	}
	return 0;
}

static uint64_t bar(unsigned int slot, unsigned int i)
{
	uint32_t v = cfg_rd(slot, 0x10 + 4 * i, 4);

	return v & 1 ? v & ~3u : v & ~0xfu;
}

static void drv_pci(struct drv *d, unsigned int slot, enum iface iface)
{
	memset(d, 0, sizeof(*d));
	d->iface = iface;
	d->slot = slot;
	if (iface == LEGACY) {
		d->io = (uint16_t)bar(slot, 0);
		return;
	}
	d->common = bar(slot, 4) + cfg_rd(slot, find_cap(slot, 1) + 8, 4);
	d->isr = bar(slot, 4) + cfg_rd(slot, find_cap(slot, 3) + 8, 4);
	d->devcfg = bar(slot, 4) + cfg_rd(slot, find_cap(slot, 4) + 8, 4);
	d->notify = bar(slot, 4) + cfg_rd(slot, find_cap(slot, 2) + 8, 4);
}

static void drv_mmio(struct drv *d, uint64_t base, enum iface iface)
{
	memset(d, 0, sizeof(*d));
	d->iface = iface;
	d->mmio = base;
}

static uint8_t status(struct drv *d)
{
	if (d->iface == MODERN)
		return (uint8_t)rd(false, d->common + 0x14, 1);
	if (d->iface == LEGACY)
		return (uint8_t)rd(true, d->io + 0x12, 1);
	return (uint8_t)rd(false, d->mmio + 0x70, 4);
}

static void set_status(struct drv *d, uint8_t s)
{
	if (d->iface == MODERN)
		wr(false, d->common + 0x14, 1, s);
	else if (d->iface == LEGACY)
		wr(true, d->io + 0x12, 1, s);
	else
		wr(false, d->mmio + 0x70, 4, s);
}

static uint8_t isr(struct drv *d)
{
	if (d->iface == MODERN)
		return (uint8_t)rd(false, d->isr, 1);
	if (d->iface == LEGACY)
		return (uint8_t)rd(true, d->io + 0x13, 1);
	return (uint8_t)rd(false, d->mmio + 0x60, 4);
}

static uint64_t dev_features(struct drv *d)
{
	if (d->iface == MODERN) {
		wr(false, d->common, 4, 0);
		uint64_t lo = rd(false, d->common + 4, 4);
		wr(false, d->common, 4, 1);
		return lo | rd(false, d->common + 4, 4) << 32;
	}
	if (d->iface == LEGACY)
		return rd(true, d->io, 4);
	wr(false, d->mmio + 0x14, 4, 0);
	uint64_t lo = rd(false, d->mmio + 0x10, 4);
	wr(false, d->mmio + 0x14, 4, 1);
	return lo | rd(false, d->mmio + 0x10, 4) << 32;
}

static void set_features(struct drv *d, uint64_t f)
{
	if (d->iface == MODERN) {
		wr(false, d->common + 8, 4, 0);
		wr(false, d->common + 12, 4, (uint32_t)f);
		wr(false, d->common + 8, 4, 1);
		wr(false, d->common + 12, 4, f >> 32);
	} else if (d->iface == LEGACY) {
		wr(true, d->io + 4, 4, (uint32_t)f);
	} else {
		wr(false, d->mmio + 0x24, 4, 0);
		wr(false, d->mmio + 0x20, 4, (uint32_t)f);
		wr(false, d->mmio + 0x24, 4, 1);
		wr(false, d->mmio + 0x20, 4, f >> 32);
	}
}

static uint64_t qdesc(unsigned int q)
{
	return QMEM + q * 0x10000ull;
}

/* Sets queue q up at QMEM with size n (the device's for legacy). */
static void setup_queue(struct drv *d, unsigned int q, uint16_t n)
{
	uint64_t desc = qdesc(q), avail = desc + 0x4000, used = desc + 0x8000;

	memset(gp(desc), 0, 0x10000);
	d->avail_idx[q] = d->used_seen[q] = 0;
	if (d->iface == MODERN) {
		wr(false, d->common + 0x16, 2, q);
		wr(false, d->common + 0x18, 2, n);
		d->qsize[q] = (uint16_t)rd(false, d->common + 0x18, 2);
		wr(false, d->common + 0x20, 8, desc);
		wr(false, d->common + 0x28, 4, (uint32_t)avail);
		wr(false, d->common + 0x2c, 4, 0);
		wr(false, d->common + 0x30, 4, (uint32_t)used);
		wr(false, d->common + 0x34, 4, 0);
		wr(false, d->common + 0x1c, 2, 1);
	} else if (d->iface == LEGACY) {
		wr(true, d->io + 0x0e, 2, q);
		d->qsize[q] = (uint16_t)rd(true, d->io + 0x0c, 2);
		wr(true, d->io + 0x08, 4, desc >> 12);
	} else if (d->iface == MMIO2) {
		wr(false, d->mmio + 0x30, 4, q);
		wr(false, d->mmio + 0x38, 4, n);
		d->qsize[q] = n;
		wr(false, d->mmio + 0x80, 4, (uint32_t)desc);
		wr(false, d->mmio + 0x84, 4, 0);
		wr(false, d->mmio + 0x90, 4, (uint32_t)avail);
		wr(false, d->mmio + 0x94, 4, 0);
		wr(false, d->mmio + 0xa0, 4, (uint32_t)used);
		wr(false, d->mmio + 0xa4, 4, 0);
		wr(false, d->mmio + 0x44, 4, 1);
	} else {
		wr(false, d->mmio + 0x28, 4, 4096);
		wr(false, d->mmio + 0x30, 4, q);
		wr(false, d->mmio + 0x38, 4, n);
		d->qsize[q] = n;
		wr(false, d->mmio + 0x3c, 4, 4096);
		wr(false, d->mmio + 0x40, 4, desc >> 12);
	}
}

static struct virtq_avail *avail_ring(struct drv *d, unsigned int q)
{
	uint64_t a = d->iface == LEGACY || d->iface == MMIO1 ?
			     qdesc(q) + 16ull * d->qsize[q] :
			     qdesc(q) + 0x4000;

	return gp(a);
}

static struct virtq_used *used_ring(struct drv *d, unsigned int q)
{
	uint64_t u;

	if (d->iface == LEGACY || d->iface == MMIO1)
		u = (qdesc(q) + 16ull * d->qsize[q] + 6 + 2ull * d->qsize[q] +
		     4095) & ~4095ull;
	else
		u = qdesc(q) + 0x8000;
	return gp(u);
}

static void put_desc(unsigned int q, unsigned int i, uint64_t addr,
		     uint32_t len, uint16_t flags, uint16_t next)
{
	struct virtq_desc x = { addr, len, flags, next };

	memcpy(guest_ptr(m, qdesc(q) + 16ull * i, 16), &x, 16);
}

struct seg {
	uint64_t addr;
	uint32_t len;
	bool write;
};

/* Descriptors head.. for the segments, made available. */
static void add_chain(struct drv *d, unsigned int q, uint16_t head,
		      const struct seg *s, unsigned int n)
{
	struct virtq_avail *a = avail_ring(d, q);

	for (unsigned int i = 0; i < n; i++)
		put_desc(q, head + i, s[i].addr, s[i].len,
			 (uint16_t)((s[i].write ? VIRTQ_DESC_F_WRITE : 0) |
				    (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
			 (uint16_t)(head + i + 1));
	a->ring[d->avail_idx[q] % d->qsize[q]] = head;
	/* With EVENT_IDX: interrupt me for the next used buffer. */
	a->ring[d->qsize[q]] = d->used_seen[q];
	__atomic_store_n(&a->idx, ++d->avail_idx[q], __ATOMIC_RELEASE);
}

static void kick(struct drv *d, unsigned int q)
{
	if (d->iface == MODERN)
		wr(false, d->notify + 4ull * q, 2, q);
	else if (d->iface == LEGACY)
		wr(true, d->io + 0x10, 2, q);
	else
		wr(false, d->mmio + 0x50, 4, q);
}

/* Waits (up to 2 s) until the used index reaches want. */
static bool wait_used(struct drv *d, unsigned int q, uint16_t want)
{
	struct virtq_used *u = used_ring(d, q);
	struct timespec ts = { 0, 1000000 };

	for (int i = 0; i < 2000; i++) {
		if (__atomic_load_n(&u->idx, __ATOMIC_ACQUIRE) == want)
			return true;
		nanosleep(&ts, NULL);
	}
	return false;
}

/* Nothing happens for 100 ms. */
static bool quiet(struct drv *d, unsigned int q, uint16_t idx)
{
	struct timespec ts = { 0, 100000000 };

	nanosleep(&ts, NULL);
	return __atomic_load_n(&used_ring(d, q)->idx, __ATOMIC_ACQUIRE) == idx;
}

static bool wait_status(struct drv *d, uint8_t bits)
{
	struct timespec ts = { 0, 1000000 };

	for (int i = 0; i < 2000; i++) {
		if ((status(d) & bits) == bits)
			return true;
		nanosleep(&ts, NULL);
	}
	return false;
}

/* Reset, ACK, DRIVER, features, FEATURES_OK: the status read back. */
static uint8_t negotiate(struct drv *d, uint64_t f)
{
	set_status(d, 0);
	set_status(d, S_ACK);
	set_status(d, S_ACK | S_DRV);
	set_features(d, f);
	if (d->iface == LEGACY || d->iface == MMIO1)
		return status(d);
	set_status(d, S_ACK | S_DRV | S_FOK);
	return status(d);
}

static bool random_bytes(const uint8_t *p, size_t n)
{
	size_t zero = 0;

	for (size_t i = 0; i < n; i++)
		zero += !p[i];
	return zero < n / 8 + 4;
}

/* ---- rng over every transport --------------------------------------------- */

static void rng_roundtrip(struct drv *d, const char *what)
{
	char msg[128];
	struct seg s = { DATA, 256, true };
	struct virtq_used *u;

	memset(gp(DATA), 0, 256);
	add_chain(d, 0, 0, &s, 1);
	kick(d, 0);
	u = used_ring(d, 0);
	snprintf(msg, sizeof(msg), "%s: rng fills a 256-byte buffer", what);
	CHECK(wait_used(d, 0, ++d->used_seen[0]) &&
		      u->ring[(d->used_seen[0] - 1) % d->qsize[0]].len == 256 &&
		      random_bytes(gp(DATA), 256),
	      msg);
}

static const struct device_ops *rng_dev;

static void rng_start(enum virtio_transport_kind kind)
{
	virtio_machine(m)->kind = kind;
	m->cfg.rng = true;
	if (rng_dev->init(m))
		abort();
}

static void rng_stop(void)
{
	rng_dev->exit(m);
	m->cfg.rng = false;
}

static void test_pci_transitional(void)
{
	struct drv d, l;
	unsigned int s, msix;
	uint64_t f;

	rng_start(VIRTIO_PCI);
	s = find_slot(0x1005);
	CHECK(s && cfg_rd(s, 8, 1) == 0 && cfg_rd(s, 0x2e, 2) == VIRTIO_ID_RNG,
	      "pci: transitional rng is 1af4:1005 rev 0, subsystem 4");
	CHECK(find_cap(s, 1) && find_cap(s, 2) && find_cap(s, 3) &&
		      find_cap(s, 4) && find_cap(s, 5) && find_cap(s, -1),
	      "pci: common, notify, ISR, device, PCI-cfg and MSI-X capabilities");
	CHECK((cfg_rd(s, 0x10, 4) & 1) && bar(s, 1) && bar(s, 4),
	      "pci: legacy I/O BAR 0, MSI-X BAR 1, modern BAR 4");
	drv_pci(&d, s, MODERN);
	CHECK(cfg_rd(s, find_cap(s, 2) + 16, 4) == 4,
	      "pci: notify_off_multiplier 4");

	f = dev_features(&d);
	CHECK((f & VIRTIO_BIT(VIRTIO_F_VERSION_1)) &&
		      (f & VIRTIO_BIT(VIRTIO_F_EVENT_IDX)) &&
		      (f & VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC)) &&
		      !(f & VIRTIO_BIT(VIRTIO_F_ANY_LAYOUT)),
	      "modern: VERSION_1, EVENT_IDX, INDIRECT_DESC offered, not ANY_LAYOUT");
	CHECK(!(negotiate(&d, VIRTIO_BIT(VIRTIO_F_EVENT_IDX)) & S_FOK),
	      "modern: FEATURES_OK refused without VERSION_1");
	CHECK(!(negotiate(&d, VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(40)) &
		S_FOK),
	      "modern: FEATURES_OK refused for a feature not offered");
	CHECK(negotiate(&d, VIRTIO_BIT(VIRTIO_F_VERSION_1) |
			      VIRTIO_BIT(VIRTIO_F_EVENT_IDX)) ==
		      (S_ACK | S_DRV | S_FOK),
	      "modern: FEATURES_OK kept for VERSION_1 | EVENT_IDX");
	set_features(&d, VIRTIO_BIT(VIRTIO_F_VERSION_1));
	wr(false, d.common + 8, 4, 1);
	CHECK(rd(false, d.common + 12, 4) == 1 &&
		      (wr(false, d.common + 8, 4, 0),
		       rd(false, d.common + 12, 4) ==
			       VIRTIO_BIT(VIRTIO_F_EVENT_IDX)),
	      "modern: features do not change after FEATURES_OK");
	CHECK(rd(false, d.common + 0x12, 2) == 1, "modern: num_queues 1");
	wr(false, d.common + 0x16, 2, 0);
	CHECK(rd(false, d.common + 0x18, 2) == 64,
	      "modern: queue_size reads the maximum, 64");
	wr(false, d.common + 0x18, 2, 0);
	CHECK(rd(false, d.common + 0x18, 2) == 64, "modern: size 0 is ignored");
	wr(false, d.common + 0x1a, 2, 7);
	CHECK(rd(false, d.common + 0x1a, 2) == 0xffff,
	      "modern: an MSI-X vector past the table reads NO_VECTOR");
	wr(false, d.common + 0x16, 2, 5);
	CHECK(rd(false, d.common + 0x18, 2) == 0,
	      "modern: a queue that does not exist has size 0");

	/* Kicks before DRIVER_OK are held until DRIVER_OK. */
	setup_queue(&d, 0, 64);
	{
		struct seg sg = { DATA, 64, true };

		add_chain(&d, 0, 0, &sg, 1);
		kick(&d, 0);
		CHECK(quiet(&d, 0, 0),
		      "modern: a buffer kicked before DRIVER_OK is not used");
		set_status(&d, S_ACK | S_DRV | S_FOK | S_DOK);
		CHECK(wait_used(&d, 0, 1),
		      "modern: ... and is served once DRIVER_OK is set");
		d.used_seen[0] = 1;
	}
	CHECK((cfg_rd(s, 6, 2) & 0x08) && isr(&d) == 1 &&
		      !(cfg_rd(s, 6, 2) & 0x08) && isr(&d) == 0,
	      "INTx: raised with the ISR, lowered when the ISR is read");
	rng_roundtrip(&d, "pci modern");

	/* MSI-X: a masked vector keeps its pending bit until unmasked. */
	msix = find_cap(s, -1);
	CHECK(cfg_rd(s, msix + 2, 2) == 1 && cfg_rd(s, msix + 4, 4) == 1 &&
		      cfg_rd(s, msix + 8, 4) == 0x801,
	      "MSI-X: 2 vectors, table in BAR 1, PBA at 0x800");
	cfg_wr(s, msix + 2, 2, 0x8000);
	wr(false, bar(s, 1), 4, 0xfee00000);
	wr(false, bar(s, 1) + 8, 4, 0x41);
	wr(false, d.common + 0x16, 2, 0);
	wr(false, d.common + 0x1a, 2, 0);
	CHECK(rd(false, d.common + 0x1a, 2) == 0, "MSI-X: queue 0 -> vector 0");
	rng_roundtrip(&d, "MSI-X masked");
	CHECK(rd(false, bar(s, 1) + 0x800, 4) == 1 &&
		      !(cfg_rd(s, 6, 2) & 0x08),
	      "MSI-X: a masked vector sets its pending bit, no INTx");
	wr(false, bar(s, 1) + 12, 4, 0);
	CHECK(rd(false, bar(s, 1) + 0x800, 4) == 0,
	      "MSI-X: unmasking delivers the pending message");
	CHECK(rd(false, bar(s, 1) + 8, 4) == 0x41 && rd(false, bar(s, 1), 4) ==
							     0xfee00000,
	      "MSI-X: the table keeps the message");
	cfg_wr(s, msix + 2, 2, 0);

	/* A broken chain: NEEDS_RESET and a config interrupt. */
	{
		isr(&d);
		put_desc(0, 1, DATA, 16, VIRTQ_DESC_F_NEXT, 1);
		avail_ring(&d, 0)->ring[d.avail_idx[0] % 64] = 1;
		__atomic_store_n(&avail_ring(&d, 0)->idx, ++d.avail_idx[0],
				 __ATOMIC_RELEASE);
		kick(&d, 0);
		CHECK(wait_status(&d, S_NR) && (isr(&d) & 2),
		      "a looping chain: DEVICE_NEEDS_RESET and a config interrupt");
		set_status(&d, status(&d) & ~S_NR);
		CHECK(status(&d) & S_NR,
		      "the driver cannot clear DEVICE_NEEDS_RESET");
		add_chain(&d, 0, 2, &(struct seg){ DATA, 16, true }, 1);
		kick(&d, 0);
		CHECK(quiet(&d, 0, d.used_seen[0]),
		      "the broken queue serves nothing more");
	}
	set_status(&d, 0);
	CHECK(status(&d) == 0 && isr(&d) == 0 &&
		      (wr(false, d.common + 0x16, 2, 0),
		       rd(false, d.common + 0x1c, 2) == 0),
	      "reset: status 0, ISR 0, queue disabled");
	negotiate(&d, VIRTIO_BIT(VIRTIO_F_VERSION_1));
	setup_queue(&d, 0, 32);
	CHECK(d.qsize[0] == 32, "modern: the driver may choose a smaller size");
	set_status(&d, S_ACK | S_DRV | S_FOK | S_DOK);
	rng_roundtrip(&d, "after reset");

	/* The same device through the legacy interface. */
	drv_pci(&l, s, LEGACY);
	CHECK(negotiate(&l, 0) == (S_ACK | S_DRV), "legacy: no FEATURES_OK");
	f = dev_features(&l);
	CHECK(!(f >> 32) && (f & VIRTIO_BIT(VIRTIO_F_ANY_LAYOUT)),
	      "legacy: 32 feature bits, ANY_LAYOUT offered");
	setup_queue(&l, 0, 0);
	CHECK(l.qsize[0] == 64 && rd(true, l.io + 0x08, 4) == qdesc(0) >> 12,
	      "legacy: queue size 64, PFN reads back");
	rng_roundtrip(&l, "legacy before DRIVER_OK (as legacy drivers do)");
	set_status(&l, S_ACK | S_DRV | S_DOK);
	rng_roundtrip(&l, "legacy");
	set_status(&l, 0);
	rng_stop();
}

static void test_pci_flavours(void)
{
	struct drv d;
	unsigned int s;

	rng_start(VIRTIO_PCI_MODERN);
	s = find_slot(0x1044);
	CHECK(s && cfg_rd(s, 8, 1) == 1 && !(cfg_rd(s, 0x10, 4) & 1),
	      "pci-modern: 1af4:1044 rev 1, no legacy I/O BAR");
	drv_pci(&d, s, MODERN);
	negotiate(&d, VIRTIO_BIT(VIRTIO_F_VERSION_1) |
			      VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC));
	setup_queue(&d, 0, 64);
	set_status(&d, S_ACK | S_DRV | S_FOK | S_DOK);
	rng_roundtrip(&d, "pci-modern");
	{
		/* An indirect table with two writable buffers. */
		struct virtq_desc t[2] = {
			{ DATA, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1 },
			{ DATA + 8, 8, VIRTQ_DESC_F_WRITE, 0 },
		};

		memcpy(gp(DATA + 0x1000), t, sizeof(t));
		put_desc(0, 5, DATA + 0x1000, 32, VIRTQ_DESC_F_INDIRECT, 0);
		avail_ring(&d, 0)->ring[d.avail_idx[0] % 64] = 5;
		__atomic_store_n(&avail_ring(&d, 0)->idx, ++d.avail_idx[0],
				 __ATOMIC_RELEASE);
		kick(&d, 0);
		CHECK(wait_used(&d, 0, ++d.used_seen[0]) &&
			      used_ring(&d, 0)->ring[1].len == 16,
		      "pci-modern: indirect descriptors");
	}
	/* The PCI configuration access window reads common config. */
	{
		unsigned int w = find_cap(s, 5);

		cfg_wr(s, w + 4, 1, 4);
		cfg_wr(s, w + 8, 4, 0x14);
		cfg_wr(s, w + 12, 4, 1);
		CHECK(cfg_rd(s, w + 16, 1) == (S_ACK | S_DRV | S_FOK | S_DOK),
		      "VIRTIO_PCI_CAP_PCI_CFG: reads device_status");
	}
	set_status(&d, 0);
	rng_stop();

	rng_start(VIRTIO_PCI_LEGACY);
	s = find_slot(0x1005);
	CHECK(s && find_cap(s, -1) && !find_cap(s, 1) && !bar(s, 4),
	      "pci-legacy: MSI-X but no virtio capabilities, no modern BAR");
	drv_pci(&d, s, LEGACY);
	CHECK(!(dev_features(&d) & VIRTIO_BIT(VIRTIO_F_VERSION_1)),
	      "pci-legacy: no VERSION_1");
	negotiate(&d, 0);
	setup_queue(&d, 0, 0);
	set_status(&d, S_ACK | S_DRV | S_DOK);
	rng_roundtrip(&d, "pci-legacy");
	{
		/* Legacy has no NEEDS_RESET: the queue just stops. */
		put_desc(0, 1, RAM, 16, VIRTQ_DESC_F_WRITE, 0);
		avail_ring(&d, 0)->ring[d.avail_idx[0] % 64] = 1;
		__atomic_store_n(&avail_ring(&d, 0)->idx, ++d.avail_idx[0],
				 __ATOMIC_RELEASE);
		kick(&d, 0);
		CHECK(quiet(&d, 0, d.used_seen[0]) && !(status(&d) & S_NR),
		      "pci-legacy: a buffer outside RAM stops the queue, no status bit");
	}
	set_status(&d, 0);
	rng_stop();
}

static void test_mmio(void)
{
	struct drv d;
	uint64_t base = 0xfeb00000ull + 0x200ull * virtio_machine(m)->nmmio;

	rng_start(VIRTIO_MMIO);
	drv_mmio(&d, base, MMIO2);
	CHECK(rd(false, base, 4) == 0x74726976 && rd(false, base + 4, 4) == 2 &&
		      rd(false, base + 8, 4) == VIRTIO_ID_RNG,
	      "mmio: magic, version 2, device 4");
	CHECK(m->linux_params &&
		      strstr(m->linux_params, "virtio_mmio.device=512@0xfeb"),
	      "mmio: announced on the Linux command line");
	CHECK(rd(false, base + 1, 1) == 0 && rd(false, base, 2) == 0,
	      "mmio: registers take 32-bit accesses only");
	CHECK(negotiate(&d, VIRTIO_BIT(VIRTIO_F_VERSION_1)) ==
		      (S_ACK | S_DRV | S_FOK),
	      "mmio: FEATURES_OK");
	wr(false, base + 0x30, 4, 0);
	CHECK(rd(false, base + 0x34, 4) == 64 && rd(false, base + 0x44, 4) == 0,
	      "mmio: QueueNumMax 64, not ready");
	setup_queue(&d, 0, 3);
	CHECK(rd(false, base + 0x44, 4) == 1 &&
		      rd(false, base + 0x38, 4) == 0,
	      "mmio: ready (QueueNum is write-only)");
	set_status(&d, S_ACK | S_DRV | S_FOK | S_DOK);
	for (int i = 0; i < 4; i++)
		rng_roundtrip(&d, "mmio, queue size 3 (not a power of two)");
	CHECK(rd(false, base + 0x60, 4) == 1, "mmio: InterruptStatus bit 0");
	wr(false, base + 0x64, 4, 1);
	CHECK(rd(false, base + 0x60, 4) == 0, "mmio: InterruptACK clears it");
	wr(false, base + 0x44, 4, 0);
	CHECK(rd(false, base + 0x44, 4) == 0, "mmio: QueueReady 0 disables");
	set_status(&d, 0);
	rng_stop();

	base = 0xfeb00000ull + 0x200ull * virtio_machine(m)->nmmio;
	rng_start(VIRTIO_MMIO_LEGACY);
	drv_mmio(&d, base, MMIO1);
	CHECK(rd(false, base + 4, 4) == 1, "mmio-legacy: version 1");
	negotiate(&d, 0);
	setup_queue(&d, 0, 16);
	CHECK(rd(false, base + 0x40, 4) == qdesc(0) >> 12,
	      "mmio-legacy: QueuePFN reads back");
	set_status(&d, S_ACK | S_DRV | S_DOK);
	rng_roundtrip(&d, "mmio-legacy");
	set_status(&d, 0);
	rng_stop();
}

/* ---- console ------------------------------------------------------------- */

static void test_console(void)
{
	const struct device_ops *con = find_device("virtio-console");
	struct drv d;
	int pfd[2], saved;
	char got[64] = { 0 };
	struct seg tx = { DATA, 11, false }, rx = { DATA + 0x100, 4, true };
	ssize_t n;

	virtio_machine(m)->kind = VIRTIO_PCI_MODERN;
	m->cfg.console_kind = CONSOLE_VIRTIO;
	CHECK(con && con->init(m) == 0 && m->console_in,
	      "console: up, takes the console input");
	drv_pci(&d, find_slot(0x1043), MODERN);
	CHECK(dev_features(&d) & VIRTIO_BIT(2), "console: EMERG_WRITE offered");
	CHECK(m->console_in(m, "x", 1, m->console_in_opaque) == 0,
	      "console: input before the driver is up is held back");
	negotiate(&d, VIRTIO_BIT(VIRTIO_F_VERSION_1));
	setup_queue(&d, 0, 8);
	setup_queue(&d, 1, 8);
	set_status(&d, S_ACK | S_DRV | S_FOK | S_DOK);

	/* What the guest writes lands on stdout: catch it in a pipe. */
	fflush(stdout);
	if (pipe(pfd))
		abort();
	saved = dup(1);
	dup2(pfd[1], 1);
	memcpy(gp(DATA), "hello, hvc0", 11);
	add_chain(&d, 1, 0, &tx, 1);
	kick(&d, 1);
	wait_used(&d, 1, 1);
	wr(false, d.devcfg + 8, 4, '!');
	dup2(saved, 1);
	close(saved);
	close(pfd[1]);
	n = read(pfd[0], got, sizeof(got) - 1);
	close(pfd[0]);
	CHECK(n == 12 && !strcmp(got, "hello, hvc0!"),
	      "console: transmit and emerg_wr reach the console");

	add_chain(&d, 0, 0, &rx, 1);
	kick(&d, 0);
	CHECK(m->console_in(m, "abcdef", 6, m->console_in_opaque) == 4 &&
		      wait_used(&d, 0, 1) && used_ring(&d, 0)->ring[0].len == 4 &&
		      !memcmp(gp(DATA + 0x100), "abcd", 4),
	      "console: input fills the receive buffer, the rest waits");
	set_status(&d, 0);
	con->exit(m);
	CHECK(!m->console_in, "console: input released on exit");
	m->cfg.console_kind = CONSOLE_SERIAL;
}

/* ---- blk ------------------------------------------------------------------ */

#define B_HDR (DATA + 0x10000)
#define B_BUF (DATA + 0x20000)
#define B_ST (DATA + 0x30000)

static uint8_t blk_req(struct drv *d, uint32_t type, uint64_t sector,
		       uint64_t buf, uint32_t len, bool write_buf)
{
	uint8_t *h = gp(B_HDR);
	struct seg s[3] = {
		{ B_HDR, 16, false },
		{ buf, len, write_buf },
		{ B_ST, 1, true },
	};
	unsigned int head = (d->avail_idx[0] * 3u) % 255;

	memset(h, 0, 16);
	memcpy(h, &type, 4);
	memcpy(h + 8, &sector, 8);
	*(uint8_t *)gp(B_ST) = 0xee;
	if (len) {
		add_chain(d, 0, (uint16_t)head, s, 3);
	} else {
		s[1] = s[2];
		add_chain(d, 0, (uint16_t)head, s, 2);
	}
	kick(d, 0);
	if (!wait_used(d, 0, ++d->used_seen[0]))
		return 0xff;
	return *(uint8_t *)gp(B_ST);
}

static void test_blk(void)
{
	const struct device_ops *blk = find_device("virtio-blk");
	char path[] = "/tmp/lkvm-virtq-dev.XXXXXX", spec[64];
	struct blk_cfg_view { struct disk *disk[OPT_LIST_MAX]; } *bc;
	uint8_t *buf = gp(B_BUF), id[21] = { 0 };
	struct drv d;
	uint64_t f;
	int fd;

	fd = mkstemp(path);
	if (fd < 0 || ftruncate(fd, 1 << 20))
		abort();
	for (int i = 0; i < 2048; i++) {
		char sect[512];

		memset(sect, (char)i, sizeof(sect));
		if (pwrite(fd, sect, 512, (off_t)i * 512) != 512)
			abort();
	}
	close(fd);
	virtio_machine(m)->kind = VIRTIO_PCI;
	m->cfg.disks.n = 1;
	m->cfg.disks.v[0] = path;
	bc = machine_dev_cfg(m, blk);
	CHECK(blk && blk->check(m, bc) == 0 && blk->init(m) == 0,
	      "blk: a 1 MiB raw image plugs in");
	drv_pci(&d, find_slot(0x1001), MODERN);
	f = dev_features(&d);
	CHECK((f & VIRTIO_BIT(9)) && (f & VIRTIO_BIT(2)) && (f & VIRTIO_BIT(14)) &&
		      !(f & VIRTIO_BIT(5)),
	      "blk: FLUSH, SEG_MAX, WRITE_ZEROES offered; not RO");
	CHECK(rd(false, d.devcfg, 8) == 2048 && rd(false, d.devcfg + 12, 4) == 254,
	      "blk: capacity 2048 sectors, seg_max 254");
	negotiate(&d, VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(9));
	setup_queue(&d, 0, 256);
	set_status(&d, S_ACK | S_DRV | S_FOK | S_DOK);

	CHECK(blk_req(&d, 0, 7, B_BUF, 1024, true) == 0 && buf[0] == 7 &&
		      buf[511] == 7 && buf[512] == 8,
	      "blk: read 2 sectors at 7");
	memset(buf, 0xa5, 4096);
	CHECK(blk_req(&d, 1, 100, B_BUF, 4096, false) == 0,
	      "blk: write 8 sectors at 100");
	memset(buf, 0, 4096);
	CHECK(blk_req(&d, 0, 100, B_BUF, 4096, true) == 0 && buf[0] == 0xa5 &&
		      buf[4095] == 0xa5,
	      "blk: ... and read them back");
	CHECK(blk_req(&d, 4, 0, 0, 0, false) == 0, "blk: flush");
	CHECK(blk_req(&d, 8, 0, B_BUF, 20, true) == 0 &&
		      (memcpy(id, buf, 20), strlen((char *)id) <= 20),
	      "blk: GET_ID answers");
	CHECK(blk_req(&d, 0, 2047, B_BUF, 1024, true) == 1,
	      "blk: a read past the end: IOERR");
	CHECK(blk_req(&d, 0, ~0ull / 256, B_BUF, 512, true) == 1,
	      "blk: a sector whose offset overflows: IOERR");
	CHECK(blk_req(&d, 0, 0, B_BUF, 100, true) == 1,
	      "blk: a length not a multiple of 512: IOERR");
	CHECK(blk_req(&d, 0x77, 0, B_BUF, 512, true) == 2,
	      "blk: an unknown type: UNSUPP");
	{
		uint8_t seg[16] = { 0 };

		seg[0] = 100;	/* sector 100, 8 sectors */
		seg[8] = 8;
		memcpy(buf, seg, 16);
		CHECK(blk_req(&d, 13, 0, B_BUF, 16, false) == 0 &&
			      blk_req(&d, 0, 100, B_BUF + 64, 4096, true) == 0 &&
			      buf[64] == 0 && buf[64 + 4095] == 0,
		      "blk: write-zeroes, then the range reads zeros");
		seg[12] = 2;	/* flags: an unknown bit */
		memcpy(buf, seg, 16);
		CHECK(blk_req(&d, 13, 0, B_BUF, 16, false) == 2,
		      "blk: write-zeroes with an unknown flag: UNSUPP");
	}

	/* 64 reads in flight at once, one kick. */
	{
		struct virtq_avail *a = avail_ring(&d, 0);
		bool ok = true;

		for (unsigned int i = 0; i < 64; i++) {
			struct seg s[3] = {
				{ B_HDR + 16 * i, 16, false },
				{ B_BUF + 512 * i, 512, true },
				{ B_ST + i, 1, true },
			};
			uint8_t *h = gp(B_HDR + 16 * i);
			uint64_t sector = 200 + i;

			memset(h, 0, 16);
			memcpy(h + 8, &sector, 8);
			add_chain(&d, 0, (uint16_t)(3 * i), s, 3);
		}
		(void)a;
		kick(&d, 0);
		d.used_seen[0] += 64;
		ok = wait_used(&d, 0, d.used_seen[0]);
		for (unsigned int i = 0; ok && i < 64; i++)
			ok = *(uint8_t *)gp(B_ST + i) == 0 &&
			     buf[512 * i] == (uint8_t)(200 + i);
		CHECK(ok, "blk: 64 requests in flight complete, data right");
	}

	/* A reset with requests in flight waits for them, returns none. */
	{
		struct virtq_used *u = used_ring(&d, 0);
		uint16_t before;
		bool ok = true;

		for (unsigned int round = 0; round < 8 && ok; round++) {
			for (unsigned int i = 0; i < 32; i++) {
				struct seg s[3] = {
					{ B_HDR + 16 * i, 16, false },
					{ B_BUF + 4096 * i, 4096, true },
					{ B_ST + i, 1, true },
				};
				uint8_t *h = gp(B_HDR + 16 * i);

				memset(h, 0, 16);
				h[8] = (uint8_t)(8 * i);
				add_chain(&d, 0, (uint16_t)(3 * i), s, 3);
			}
			kick(&d, 0);
			set_status(&d, 0);
			before = u->idx;
			ok = status(&d) == 0 && quiet(&d, 0, before);
			negotiate(&d, VIRTIO_BIT(VIRTIO_F_VERSION_1));
			setup_queue(&d, 0, 256);
			set_status(&d, S_ACK | S_DRV | S_FOK | S_DOK);
			ok = ok && blk_req(&d, 0, 3, B_BUF, 512, true) == 0 &&
			     buf[0] == 3;
		}
		CHECK(ok, "blk: 8 resets with 32 requests in flight; the "
			  "device works after each");
	}

	/* The driver above took no FLUSH: writes are written through
	 * (a flush follows each one before it completes). */
	memset(buf, 0x3c, 4096);
	CHECK(blk_req(&d, 1, 300, B_BUF, 4096, false) == 0 &&
		      (memset(buf, 0, 4096),
		       blk_req(&d, 0, 300, B_BUF, 4096, true) == 0) &&
		      buf[0] == 0x3c && buf[4095] == 0x3c,
	      "blk: without FLUSH negotiated a write completes and reads back");

	/* Too short for a header: the queue stops with NEEDS_RESET. */
	{
		struct seg s = { B_ST, 1, true };

		add_chain(&d, 0, 0, &s, 1);
		kick(&d, 0);
		CHECK(wait_status(&d, S_NR), "blk: no header: DEVICE_NEEDS_RESET");
	}
	set_status(&d, 0);
	blk->exit(m);

	/* Read-only. */
	snprintf(spec, sizeof(spec), "%s,ro", path);
	m->cfg.disks.v[0] = spec;
	CHECK(blk->check(m, bc) == 0 && blk->init(m) == 0, "blk: ,ro plugs in");
	drv_pci(&d, find_slot(0x1001), MODERN);
	CHECK(dev_features(&d) & VIRTIO_BIT(5), "blk: read-only offers RO");
	negotiate(&d, VIRTIO_BIT(VIRTIO_F_VERSION_1));
	setup_queue(&d, 0, 256);
	set_status(&d, S_ACK | S_DRV | S_FOK | S_DOK);
	CHECK(blk_req(&d, 1, 0, B_BUF, 512, false) == 1 &&
		      blk_req(&d, 0, 0, B_BUF, 512, true) == 0,
	      "blk: read-only refuses writes (IOERR), reads work");
	set_status(&d, 0);
	blk->exit(m);
	m->cfg.disks.n = 0;
	unlink(path);
}

int main(void)
{
	const struct device_ops *pci = find_device("pci");

	m = fake_machine_new(RAM);
	rng_dev = find_device("virtio-rng");
	CHECK(pci && pci->init(m) == 0 && rng_dev, "the PCI bus is up");
	test_pci_transitional();
	test_pci_flavours();
	test_mmio();
	test_console();
	test_blk();
	find_device("virtio-mmio")->exit(m);
	pci->exit(m);
	free(m->msi_routes);
	fake_machine_free(m);
	return tap_done();
}
