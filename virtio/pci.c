// SPDX-License-Identifier: GPL-2.0
/*
 * The virtio-pci transport (virtio 1.2, 4.1): modern, transitional and
 * legacy devices on lkvm's PCI bus.
 *
 * Resources, laid out as QEMU lays them out so that firmware and guests
 * find what they expect:
 * - BAR 0 (I/O, transitional and legacy): the legacy register block, for
 *   SeaBIOS and older kernels (4.1.4.10); SeaBIOS looks for it in BAR 0;
 * - BAR 1 (memory): the MSI-X table and the pending-bit array;
 * - BAR 4 (memory, modern): common configuration at 0, ISR at 0x1000,
 *   device configuration at 0x2000, notifications at 0x3000 (queue q at
 *   0x3000 + 4 * q);
 * - capabilities from 0x40: MSI-X, then the virtio structures (common,
 *   ISR, device, notify) and the PCI configuration access window
 *   (VIRTIO_PCI_CAP_PCI_CFG) that 4.1.4.9 requires and SeaBIOS uses for
 *   BARs above 4 GiB.
 * When firmware or the guest moves a BAR, the handlers and the ioeventfds
 * move with it (bar_update).
 *
 * Notifications: an ioeventfd per queue on the modern notify address
 * (any 16-bit write) and on the legacy notify port (16-bit, matching the
 * queue index), both signalling the queue's kick eventfd; writes that
 * miss (another width, or no ioeventfd) reach the handlers, which kick
 * the same eventfd.
 *
 * Interrupts: with MSI-X enabled, each vector is an irqfd on a GSI of its
 * own, routed to the vector's message through the GSI routing table
 * (x86_set_gsi_routing replaces the whole table, so the routes of every
 * device live in m->msi_routes). A masked vector only sets its pending
 * bit, delivered on unmask. Without MSI-X, the ISR drives INTx.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>

#include "lkvm/ioapic.h"
#include "lkvm/machine.h"
#include "lkvm/pci.h"
#include "lkvm/util.h"
#include "lkvm/virtio.h"
#include "lkvm/x86.h"

#define VIRTIO_PCI_VENDOR 0x1af4
#define VIRTIO_MSI_NO_VECTOR 0xffff

#define BAR_LEGACY 0
#define BAR_MSIX 1
#define BAR_MODERN 4

/* The modern BAR. */
#define MODERN_COMMON 0x0000
#define MODERN_ISR 0x1000
#define MODERN_DEVICE 0x2000
#define MODERN_NOTIFY 0x3000
#define MODERN_BAR_SIZE 0x4000
#define NOTIFY_MULT 4

/* The MSI-X BAR. */
#define MSIX_BAR_SIZE 0x1000
#define MSIX_PBA 0x800
#define MSIX_MAX_VECTORS 64

/* Common configuration (4.1.4.3). */
#define COMMON_DFSELECT 0x00
#define COMMON_DF 0x04
#define COMMON_GFSELECT 0x08
#define COMMON_GF 0x0c
#define COMMON_MSIX 0x10
#define COMMON_NUMQ 0x12
#define COMMON_STATUS 0x14
#define COMMON_CFGGEN 0x15
#define COMMON_Q_SELECT 0x16
#define COMMON_Q_SIZE 0x18
#define COMMON_Q_MSIX 0x1a
#define COMMON_Q_ENABLE 0x1c
#define COMMON_Q_NOFF 0x1e
#define COMMON_Q_DESCLO 0x20
#define COMMON_Q_DESCHI 0x24
#define COMMON_Q_AVAILLO 0x28
#define COMMON_Q_AVAILHI 0x2c
#define COMMON_Q_USEDLO 0x30
#define COMMON_Q_USEDHI 0x34
#define COMMON_SIZE 0x38

/* Legacy registers (4.1.4.10). */
#define LEGACY_HOST_FEATURES 0x00
#define LEGACY_GUEST_FEATURES 0x04
#define LEGACY_QUEUE_PFN 0x08
#define LEGACY_QUEUE_NUM 0x0c
#define LEGACY_QUEUE_SEL 0x0e
#define LEGACY_QUEUE_NOTIFY 0x10
#define LEGACY_STATUS 0x12
#define LEGACY_ISR 0x13
#define LEGACY_CONFIG_VECTOR 0x14
#define LEGACY_QUEUE_VECTOR 0x16
#define LEGACY_CONFIG 0x14	/* 0x18 with MSI-X enabled */
#define LEGACY_CONFIG_MSIX 0x18
#define LEGACY_PAGE 4096

/* Capabilities. */
#define PCI_CAP_PTR 0x34
#define CAP_ID_MSIX 0x11
#define CAP_ID_VENDOR 0x09
#define CAP_MSIX 0x40
#define CAP_COMMON 0x4c
#define CAP_ISR 0x5c
#define CAP_DEVICE 0x6c
#define CAP_NOTIFY 0x7c
#define CAP_PCICFG 0x90
#define CAP_END 0xa4

#define VIRTIO_PCI_CAP_COMMON_CFG 1
#define VIRTIO_PCI_CAP_NOTIFY_CFG 2
#define VIRTIO_PCI_CAP_ISR_CFG 3
#define VIRTIO_PCI_CAP_DEVICE_CFG 4
#define VIRTIO_PCI_CAP_PCI_CFG 5

#define MSIX_CTRL_ENABLE 0x8000
#define MSIX_CTRL_FMASK 0x4000
#define MSIX_ENTRY_MASKED 1

/* ---- MSI routes, shared by every device of the machine ------------------ */

struct msi_routes {
	pthread_mutex_t lock;
	unsigned int next_gsi;
	unsigned int n, cap;
	struct kvm_irq_routing_entry *e;
	unsigned int users;
};

/* GSIs above the I/O APIC's pins are free for MSI routes. */
#define MSI_FIRST_GSI IOAPIC_PINS

static struct msi_routes *routes_get(struct machine *m)
{
	struct msi_routes *r = m->msi_routes;

	if (!r) {
		r = calloc(1, sizeof(*r));
		if (!r)
			return NULL;
		pthread_mutex_init(&r->lock, NULL);
		r->next_gsi = MSI_FIRST_GSI;
		m->msi_routes = r;
	}
	r->users++;
	return r;
}

static void routes_put(struct machine *m)
{
	struct msi_routes *r = m->msi_routes;

	if (!r || --r->users)
		return;
	pthread_mutex_destroy(&r->lock);
	free(r->e);
	free(r);
	m->msi_routes = NULL;
}

/* Points gsi (allocated when *gsi is 0) at the message. */
static int route_set(struct machine *m, unsigned int *gsi, uint64_t addr,
		     uint32_t data)
{
	struct msi_routes *r = m->msi_routes;
	struct kvm_irq_routing_entry *e = NULL;
	int err = 0;

	pthread_mutex_lock(&r->lock);
	if (!*gsi) {
		if (r->n == r->cap) {
			unsigned int cap = r->cap ? r->cap * 2 : 16;
			void *p = realloc(r->e, cap * sizeof(*r->e));

			if (!p) {
				err = -ENOMEM;
				goto out;
			}
			r->e = p;
			r->cap = cap;
		}
		*gsi = r->next_gsi++;
		e = &r->e[r->n++];
		memset(e, 0, sizeof(*e));
		e->gsi = *gsi;
		e->type = KVM_IRQ_ROUTING_MSI;
	}
	for (unsigned int i = 0; i < r->n && !e; i++)
		if (r->e[i].gsi == *gsi)
			e = &r->e[i];
	e->u.msi.address_lo = (uint32_t)addr;
	e->u.msi.address_hi = (uint32_t)(addr >> 32);
	e->u.msi.data = data;
	if (m->kvm)
		err = x86_set_gsi_routing(m, r->e, r->n);
out:
	pthread_mutex_unlock(&r->lock);
	return err;
}

/* ---- the device ------------------------------------------------------ */

struct msix_vec {
	uint32_t addr_lo, addr_hi, data, ctrl;	/* the table entry */
	int fd;			/* irqfd, -1 until first routed */
	unsigned int gsi;	/* 0 until first routed */
	uint64_t r_addr;	/* the message routed */
	uint32_t r_data;
	bool masked;		/* atomic: effective mask */
	bool pending;		/* atomic: the PBA bit */
};

struct bar_map {
	struct io_region *r;
	uint64_t addr;		/* where the region and ioeventfds are */
	bool on;
};

struct virtio_pci {
	struct virtio_dev *d;
	struct pci_device pci;
	bool modern, legacy;		/* interfaces offered */
	uint16_t legacy_size;		/* the I/O BAR */

	/* Registers (d->lock). */
	uint32_t dfselect, gfselect;
	uint16_t queue_sel;
	uint16_t config_vector;

	struct bar_map bar[PCI_NUM_BARS];
	bool ioevent_ok;		/* KVM took the ioeventfds */

	/* MSI-X (msix_lock). */
	pthread_mutex_t msix_lock;
	unsigned int nvec;
	bool msix_on, fmask;		/* enable and function mask */
	struct msix_vec vec[MSIX_MAX_VECTORS];

	/* INTx: the ISR and the line change together. */
	pthread_mutex_t intx_lock;
};

/* PCI device IDs of transitional devices (4.1.2.3), by virtio ID. */
static const uint16_t transitional_id[] = {
	[VIRTIO_ID_NET] = 0x1000,
	[VIRTIO_ID_BLK] = 0x1001,
	[VIRTIO_ID_CONSOLE] = 0x1003,
	[VIRTIO_ID_RNG] = 0x1005,
	[VIRTIO_ID_9P] = 0x1009,
	[VIRTIO_ID_BALLOON] = 0x1002,
};

static uint64_t get_le(const void *data, unsigned int len)
{
	const uint8_t *p = data;
	uint64_t v = 0;

	for (unsigned int i = 0; i < len && i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void put_le(void *data, unsigned int len, uint64_t v)
{
	uint8_t *p = data;

	for (unsigned int i = 0; i < len && i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* ---- interrupts ---------------------------------------------------------- */

static void vec_fire(struct virtio_pci *vp, struct msix_vec *v)
{
	uint64_t one = 1;

	if (v->fd >= 0) {
		if (write(v->fd, &one, sizeof(one)) < 0)
			(void)0;	/* counter saturated: one is pending */
	} else if (vp->d->m->kvm && v->addr_lo) {
		/* Unmasked but never routed (a route failed): direct. */
		kvm_signal_msi(vp->d->m->kvm, v->addr_lo |
				       (uint64_t)v->addr_hi << 32, v->data);
	}
}

static void signal_vector(struct virtio_pci *vp, uint16_t vector)
{
	struct msix_vec *v;

	if (vector >= vp->nvec)
		return;		/* NO_VECTOR: the driver wants none */
	v = &vp->vec[vector];
	if (__atomic_load_n(&v->masked, __ATOMIC_ACQUIRE)) {
		__atomic_store_n(&v->pending, true, __ATOMIC_RELEASE);
		/* Unmasked meanwhile? Then the unmask may have missed it. */
		if (__atomic_load_n(&v->masked, __ATOMIC_ACQUIRE) ||
		    !__atomic_exchange_n(&v->pending, false, __ATOMIC_ACQ_REL))
			return;
	}
	vec_fire(vp, v);
}

static void intx_raise(struct virtio_pci *vp)
{
	pthread_mutex_lock(&vp->intx_lock);
	if (__atomic_load_n(&vp->d->isr, __ATOMIC_ACQUIRE))
		pci_set_irq(&vp->pci, 1);
	pthread_mutex_unlock(&vp->intx_lock);
}

static uint8_t isr_read(struct virtio_pci *vp)
{
	uint8_t v;

	pthread_mutex_lock(&vp->intx_lock);
	v = virtio_isr_take(vp->d);
	pci_set_irq(&vp->pci, 0);
	pthread_mutex_unlock(&vp->intx_lock);
	return v;
}

static void pci_signal_queue(struct virtio_dev *d, struct virtq *vq)
{
	struct virtio_pci *vp = d->t_priv;

	if (__atomic_load_n(&vp->msix_on, __ATOMIC_ACQUIRE))
		signal_vector(vp, __atomic_load_n(&d->qs[vq->index].msix_vector,
						  __ATOMIC_RELAXED));
	else
		intx_raise(vp);
}

static void pci_signal_config(struct virtio_dev *d)
{
	struct virtio_pci *vp = d->t_priv;

	if (__atomic_load_n(&vp->msix_on, __ATOMIC_ACQUIRE))
		signal_vector(vp, __atomic_load_n(&vp->config_vector,
						  __ATOMIC_RELAXED));
	else
		intx_raise(vp);
}

/*
 * Called with msix_lock held after the enable bit, the function mask or
 * an entry changed: routes what becomes unmasked, delivers what was
 * pending.
 */
static void msix_update(struct virtio_pci *vp)
{
	struct machine *m = vp->d->m;

	for (unsigned int i = 0; i < vp->nvec; i++) {
		struct msix_vec *v = &vp->vec[i];
		uint64_t addr = v->addr_lo | (uint64_t)v->addr_hi << 32;
		bool masked = !vp->msix_on || vp->fmask ||
			      (v->ctrl & MSIX_ENTRY_MASKED);

		if (masked) {
			__atomic_store_n(&v->masked, true, __ATOMIC_RELEASE);
			continue;
		}
		if (!v->gsi || addr != v->r_addr || v->data != v->r_data) {
			int err = route_set(m, &v->gsi, addr, v->data);

			if (!err && v->fd < 0) {
				v->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
				if (v->fd >= 0 && m->kvm &&
				    kvm_irqfd(m->kvm, v->fd, v->gsi, -1,
					      false) < 0) {
					close(v->fd);
					v->fd = -1;
				}
			}
			if (!err) {
				v->r_addr = addr;
				v->r_data = v->data;
			}
		}
		__atomic_store_n(&v->masked, false, __ATOMIC_RELEASE);
		if (__atomic_exchange_n(&v->pending, false, __ATOMIC_ACQ_REL))
			vec_fire(vp, v);
	}
}

static void msix_reset(struct virtio_pci *vp)
{
	pthread_mutex_lock(&vp->msix_lock);
	for (unsigned int i = 0; i < vp->nvec; i++) {
		struct msix_vec *v = &vp->vec[i];

		v->addr_lo = v->addr_hi = v->data = 0;
		v->ctrl = MSIX_ENTRY_MASKED;
		v->pending = false;
	}
	vp->msix_on = vp->fmask = false;
	put_le16(vp->pci.cfg + CAP_MSIX + 2, (uint16_t)(vp->nvec - 1));
	msix_update(vp);
	pthread_mutex_unlock(&vp->msix_lock);
}

/* One dword of a table entry: address low, high, data, vector control. */
static void entry_access(struct virtio_pci *vp, struct msix_vec *v,
			 unsigned int w, uint8_t *p, bool is_write)
{
	uint32_t *f[] = { &v->addr_lo, &v->addr_hi, &v->data, &v->ctrl };

	if (!is_write) {
		put_le(p, 4, *f[w]);
		return;
	}
	*f[w] = (uint32_t)get_le(p, 4);
	if (w == 3)
		v->ctrl &= MSIX_ENTRY_MASKED;	/* the rest is reserved */
	msix_update(vp);
}

static void msix_io(struct io_region *r, struct kvm_vcpu *vcpu,
		    uint64_t off, void *data, unsigned int len, bool is_write)
{
	struct virtio_pci *vp = r->opaque;

	(void)vcpu;
	/* DWORD and QWORD accesses (PCI 6.8.2); a QWORD is two DWORDs. */
	if ((len != 4 && len != 8) || off % 4)
		return;
	pthread_mutex_lock(&vp->msix_lock);
	for (unsigned int k = 0; k < len; k += 4, off += 4) {
		uint8_t *p = (uint8_t *)data + k;

		if (off >= MSIX_PBA) {
			uint64_t bits = 0, base = (off - MSIX_PBA) * 8;

			for (unsigned int i = 0; i < 32; i++)
				if (base + i < vp->nvec &&
				    __atomic_load_n(&vp->vec[base + i].pending,
						    __ATOMIC_ACQUIRE))
					bits |= 1u << i;
			if (!is_write)
				put_le(p, 4, bits);
			continue;
		}
		if (off / 16 >= vp->nvec) {
			if (!is_write)
				put_le(p, 4, 0);
			continue;
		}
		entry_access(vp, &vp->vec[off / 16], (off % 16) / 4, p,
			     is_write);
	}
	pthread_mutex_unlock(&vp->msix_lock);
}

/* ---- the modern registers -------------------------------------------- */

static uint16_t vector_ok(struct virtio_pci *vp, uint16_t v)
{
	/* 4.1.5.1.2: an unusable vector reads back as NO_VECTOR. */
	return v < vp->nvec ? v : VIRTIO_MSI_NO_VECTOR;
}

static uint64_t common_read(struct virtio_pci *vp, unsigned int off)
{
	struct virtio_dev *d = vp->d;
	unsigned int q = vp->queue_sel;
	struct virtq *vq = q < d->nvq ? &d->vq[q] : NULL;

	switch (off) {
	case COMMON_DFSELECT:
		return vp->dfselect;
	case COMMON_DF:
		return virtio_read_host_features(d, vp->dfselect);
	case COMMON_GFSELECT:
		return vp->gfselect;
	case COMMON_GF:
		return virtio_read_guest_features(d, vp->gfselect);
	case COMMON_MSIX:
		return vp->config_vector;
	case COMMON_NUMQ:
		return d->nvq;
	case COMMON_STATUS:
		return virtio_read_status(d);
	case COMMON_CFGGEN:
		return d->config_gen;
	case COMMON_Q_SELECT:
		return vp->queue_sel;
	}
	if (!vq)
		return 0;	/* 4.1.4.3.2: a queue that does not exist */
	switch (off) {
	case COMMON_Q_SIZE:
		return d->qs[q].size_set;
	case COMMON_Q_MSIX:
		return d->qs[q].msix_vector;
	case COMMON_Q_ENABLE:
		return vq->enabled;
	case COMMON_Q_NOFF:
		return q;
	case COMMON_Q_DESCLO:
		return (uint32_t)vq->desc_gpa;
	case COMMON_Q_DESCHI:
		return vq->desc_gpa >> 32;
	case COMMON_Q_AVAILLO:
		return (uint32_t)vq->avail_gpa;
	case COMMON_Q_AVAILHI:
		return vq->avail_gpa >> 32;
	case COMMON_Q_USEDLO:
		return (uint32_t)vq->used_gpa;
	case COMMON_Q_USEDHI:
		return vq->used_gpa >> 32;
	}
	return 0;
}

static void set_half(uint64_t *x, bool high, uint32_t v)
{
	if (high)
		*x = (*x & 0xffffffffull) | (uint64_t)v << 32;
	else
		*x = (*x & ~0xffffffffull) | v;
}

static void common_write(struct virtio_pci *vp, unsigned int off, uint64_t v)
{
	struct virtio_dev *d = vp->d;
	unsigned int q = vp->queue_sel;
	struct virtq *vq = q < d->nvq ? &d->vq[q] : NULL;

	switch (off) {
	case COMMON_DFSELECT:
		vp->dfselect = (uint32_t)v;
		return;
	case COMMON_GFSELECT:
		vp->gfselect = (uint32_t)v;
		return;
	case COMMON_GF:
		virtio_write_guest_features(d, vp->gfselect, (uint32_t)v);
		return;
	case COMMON_MSIX:
		__atomic_store_n(&vp->config_vector, vector_ok(vp, (uint16_t)v),
				 __ATOMIC_RELAXED);
		return;
	case COMMON_STATUS:
		virtio_write_status(d, (uint8_t)v);
		if (!v) {
			vp->config_vector = VIRTIO_MSI_NO_VECTOR;
			isr_read(vp);	/* the line drops with the reset */
		}
		return;
	case COMMON_Q_SELECT:
		vp->queue_sel = (uint16_t)v;
		return;
	}
	if (!vq)
		return;
	switch (off) {
	case COMMON_Q_SIZE:
		virtio_queue_set_size(d, q, (uint16_t)v);
		return;
	case COMMON_Q_MSIX:
		__atomic_store_n(&d->qs[q].msix_vector,
				 vector_ok(vp, (uint16_t)v), __ATOMIC_RELAXED);
		return;
	case COMMON_Q_ENABLE:
		/* Only 1 may be written (4.1.4.3.2); the rest is ignored. */
		if (v == 1 && !vq->enabled)
			virtio_queue_enable(d, q);
		return;
	}
	/* The addresses are fixed while the queue runs (4.1.4.3.2). */
	if (vq->enabled)
		return;
	switch (off) {
	case COMMON_Q_DESCLO:
	case COMMON_Q_DESCHI:
		set_half(&vq->desc_gpa, off == COMMON_Q_DESCHI, (uint32_t)v);
		return;
	case COMMON_Q_AVAILLO:
	case COMMON_Q_AVAILHI:
		set_half(&vq->avail_gpa, off == COMMON_Q_AVAILHI, (uint32_t)v);
		return;
	case COMMON_Q_USEDLO:
	case COMMON_Q_USEDHI:
		set_half(&vq->used_gpa, off == COMMON_Q_USEDHI, (uint32_t)v);
		return;
	}
}

static void common_access(struct virtio_pci *vp, unsigned int off,
			  void *data, unsigned int len, bool is_write)
{
	struct virtio_dev *d = vp->d;

	pthread_mutex_lock(&d->lock);
	if (vp->legacy)		/* a modern driver after all */
		__atomic_store_n(&d->legacy, false, __ATOMIC_RELEASE);
	if (off >= COMMON_SIZE) {
		if (!is_write)
			put_le(data, len, 0);
	} else if (len == 8 && off % 8 == 0 && off >= COMMON_Q_DESCLO) {
		/* A 64-bit queue address as two halves. */
		if (is_write) {
			uint64_t v = get_le(data, 8);

			common_write(vp, off, (uint32_t)v);
			common_write(vp, off + 4, v >> 32);
		} else {
			put_le(data, 8, common_read(vp, off) |
					common_read(vp, off + 4) << 32);
		}
	} else if (is_write) {
		common_write(vp, off, get_le(data, len));
	} else {
		put_le(data, len, common_read(vp, off));
	}
	pthread_mutex_unlock(&d->lock);
}

static void modern_access(struct virtio_pci *vp, uint64_t off, void *data,
			  unsigned int len, bool is_write)
{
	struct virtio_dev *d = vp->d;

	if (off < MODERN_ISR) {
		common_access(vp, (unsigned int)off, data, len, is_write);
	} else if (off < MODERN_DEVICE) {
		if (!is_write)
			put_le(data, len, off == MODERN_ISR ? isr_read(vp) : 0);
	} else if (off < MODERN_NOTIFY) {
		unsigned int cfg = (unsigned int)off - MODERN_DEVICE;

		pthread_mutex_lock(&d->lock);
		if (is_write)
			virtio_config_write(d, cfg, data, len);
		else
			virtio_config_read(d, cfg, data, len);
		pthread_mutex_unlock(&d->lock);
	} else if (is_write) {
		/* Without VIRTIO_F_NOTIFICATION_DATA the value is the queue
		 * index; the address says it already. */
		uint64_t q = (off - MODERN_NOTIFY) / NOTIFY_MULT;

		if (q < d->nvq)
			virtio_kick(d, (unsigned int)q);
	} else {
		put_le(data, len, 0);
	}
}

static void modern_io(struct io_region *r, struct kvm_vcpu *vcpu,
		      uint64_t off, void *data, unsigned int len, bool is_write)
{
	(void)vcpu;
	modern_access(r->opaque, off, data, len, is_write);
}

/* ---- the legacy registers -------------------------------------------- */

static void legacy_set_pfn(struct virtio_pci *vp, unsigned int q, uint32_t pfn)
{
	struct virtio_dev *d = vp->d;
	struct virtq *vq = &d->vq[q];

	if (vq->enabled)
		virtio_queue_disable(d, q);
	if (!pfn)
		return;		/* 0 releases the queue */
	/* Legacy sizes are the device's: the driver cannot choose. */
	d->qs[q].size_set = virtio_queue_max(d);
	vq->size = d->qs[q].size_set;
	virtq_legacy_layout(vq, (uint64_t)pfn * LEGACY_PAGE, LEGACY_PAGE);
	virtio_queue_enable(d, q);
}

static void legacy_access(struct virtio_pci *vp, unsigned int off,
			  void *data, unsigned int len, bool is_write)
{
	struct virtio_dev *d = vp->d;
	unsigned int q = vp->queue_sel, cfg;
	bool msix = __atomic_load_n(&vp->msix_on, __ATOMIC_ACQUIRE);
	uint64_t v = is_write ? get_le(data, len) : 0;

	cfg = msix ? LEGACY_CONFIG_MSIX : LEGACY_CONFIG;
	if (off == LEGACY_ISR) {
		if (!is_write)
			put_le(data, len, isr_read(vp));
		return;
	}
	if (off == LEGACY_QUEUE_NOTIFY) {
		if (is_write && v < d->nvq)
			virtio_kick(d, (unsigned int)v);
		else if (!is_write)
			put_le(data, len, 0);
		return;
	}
	pthread_mutex_lock(&d->lock);
	__atomic_store_n(&d->legacy, true, __ATOMIC_RELEASE);
	if (off >= cfg) {
		if (is_write)
			virtio_config_write(d, off - cfg, data, len);
		else
			virtio_config_read(d, off - cfg, data, len);
		goto out;
	}
	if (!is_write) {
		switch (off) {
		case LEGACY_HOST_FEATURES:
			v = virtio_read_host_features(d, 0);
			break;
		case LEGACY_GUEST_FEATURES:
			v = virtio_read_guest_features(d, 0);
			break;
		case LEGACY_QUEUE_PFN:
			v = q < d->nvq && d->vq[q].enabled ?
				    d->vq[q].desc_gpa / LEGACY_PAGE : 0;
			break;
		case LEGACY_QUEUE_NUM:
			v = q < d->nvq ? virtio_queue_max(d) : 0;
			break;
		case LEGACY_QUEUE_SEL:
			v = vp->queue_sel;
			break;
		case LEGACY_STATUS:
			v = virtio_read_status(d);
			break;
		case LEGACY_CONFIG_VECTOR:
			v = vp->config_vector;
			break;
		case LEGACY_QUEUE_VECTOR:
			v = q < d->nvq ? d->qs[q].msix_vector :
					 VIRTIO_MSI_NO_VECTOR;
			break;
		}
		put_le(data, len, v);
		goto out;
	}
	switch (off) {
	case LEGACY_GUEST_FEATURES:
		virtio_write_guest_features(d, 0, (uint32_t)v);
		break;
	case LEGACY_QUEUE_PFN:
		if (q < d->nvq)
			legacy_set_pfn(vp, q, (uint32_t)v);
		break;
	case LEGACY_QUEUE_SEL:
		vp->queue_sel = (uint16_t)v;
		break;
	case LEGACY_STATUS:
		virtio_write_status(d, (uint8_t)v);
		if (!v) {
			vp->config_vector = VIRTIO_MSI_NO_VECTOR;
			isr_read(vp);
		}
		break;
	case LEGACY_CONFIG_VECTOR:
		__atomic_store_n(&vp->config_vector, vector_ok(vp, (uint16_t)v),
				 __ATOMIC_RELAXED);
		break;
	case LEGACY_QUEUE_VECTOR:
		if (q < d->nvq)
			__atomic_store_n(&d->qs[q].msix_vector,
					 vector_ok(vp, (uint16_t)v),
					 __ATOMIC_RELAXED);
		break;
	}
out:
	pthread_mutex_unlock(&d->lock);
}

static void legacy_io(struct io_region *r, struct kvm_vcpu *vcpu,
		      uint64_t off, void *data, unsigned int len, bool is_write)
{
	(void)vcpu;
	legacy_access(r->opaque, (unsigned int)off, data, len, is_write);
}

/* ---- BARs ------------------------------------------------------------ */

static void ioevents(struct virtio_pci *vp, unsigned int bar, uint64_t addr,
		     bool assign)
{
	struct virtio_dev *d = vp->d;
	struct kvm_ctx *kvm = d->m->kvm;

	if (!kvm)
		return;
	for (unsigned int q = 0; q < d->nvq; q++) {
		int err;

		if (bar == BAR_MODERN)
			err = kvm_ioeventfd(kvm, addr + MODERN_NOTIFY +
						 NOTIFY_MULT * q, 2,
					    d->qs[q].kick_fd, false, false, 0,
					    !assign);
		else
			err = kvm_ioeventfd(kvm, addr + LEGACY_QUEUE_NOTIFY, 2,
					    d->qs[q].kick_fd, true, true, q,
					    !assign);
		/* Without it the notify write exits to the handler, which
		 * kicks the same eventfd: slower, not wrong. */
		if (err && assign && vp->ioevent_ok) {
			vp->ioevent_ok = false;
			pr_warn("%s: no ioeventfd (%s): notifications exit "
				"to lkvm", d->name, strerror(-err));
		}
	}
}

static void bar_update(struct pci_device *pd, unsigned int i)
{
	struct virtio_pci *vp = pd->opaque;
	struct machine *m = vp->d->m;
	struct bar_map *b = &vp->bar[i];
	struct pci_bar *pb = &pd->bars[i];
	bool pio = pb->kind == PCI_BAR_IO;
	struct iobus *bus = pio ? m->pio : m->mmio;
	io_handler_fn fn = i == BAR_LEGACY ? legacy_io :
			   i == BAR_MSIX ? msix_io : modern_io;
	bool notify = i == BAR_LEGACY || i == BAR_MODERN;
	int err = 0;

	if (b->on && notify)
		ioevents(vp, i, b->addr, false);
	if (b->on && (!pb->enabled || !b->r)) {
		iobus_unregister(bus, b->r);
		b->r = NULL;
		b->on = false;
	}
	if (!pb->enabled)
		return;
	if (b->on)
		err = iobus_move(bus, b->r, pb->addr);
	else
		err = iobus_register(bus, pb->addr, pb->size, fn, vp,
				     vp->d->name, &b->r);
	if (err) {
		/* The guest placed it over something: it decodes nothing. */
		if (b->on)
			iobus_unregister(bus, b->r);
		b->r = NULL;
		b->on = false;
		pr_warn("%s: BAR %u at 0x%llx overlaps another device",
			vp->d->name, i, (unsigned long long)pb->addr);
		return;
	}
	b->on = true;
	b->addr = pb->addr;
	if (notify)
		ioevents(vp, i, b->addr, true);
}

/* ---- configuration space --------------------------------------------- */

/* What the guest may write in the capabilities. */
static bool cap_writable(unsigned int off)
{
	if (off == CAP_MSIX + 3)
		return true;	/* enable and function mask (bits 15, 14) */
	if (off >= CAP_PCICFG + 4 && off < CAP_PCICFG + 16 &&
	    !(off >= CAP_PCICFG + 5 && off < CAP_PCICFG + 8))
		return true;	/* bar, offset, length of the window */
	return false;
}

/* Does a config access touch the window's pci_cfg_data? */
static bool in_window(unsigned int off, unsigned int len)
{
	return off < CAP_PCICFG + 20 && off + len > CAP_PCICFG + 16;
}

/* The window's access to a BAR, for VIRTIO_PCI_CAP_PCI_CFG. */
static void window_access(struct virtio_pci *vp, void *data, bool is_write)
{
	uint8_t *cap = vp->pci.cfg + CAP_PCICFG;
	uint32_t off = get_le32(cap + 8), len = get_le32(cap + 12);
	uint8_t bar = cap[4];

	if ((len != 1 && len != 2 && len != 4) || off % len)
		return;		/* 4.1.4.9.1: the driver's mistake */
	if (bar == BAR_MODERN && vp->modern && off + len <= MODERN_BAR_SIZE)
		modern_access(vp, off, data, len, is_write);
	else if (bar == BAR_LEGACY && vp->legacy &&
		 off + len <= vp->legacy_size)
		legacy_access(vp, off, data, len, is_write);
}

static void pci_cfg_read(struct pci_device *pd, unsigned int off, void *data,
			 unsigned int len)
{
	struct virtio_pci *vp = pd->opaque;
	uint8_t *p = data;

	memcpy(data, pd->cfg + off, len);
	if (vp->modern && in_window(off, len)) {
		uint8_t win[4] = { 0 };

		window_access(vp, win, false);
		for (unsigned int i = 0; i < len; i++)
			if (off + i >= CAP_PCICFG + 16 &&
			    off + i < CAP_PCICFG + 20)
				p[i] = win[off + i - (CAP_PCICFG + 16)];
	}
}

static void pci_cfg_write(struct pci_device *pd, unsigned int off,
			  const void *data, unsigned int len)
{
	struct virtio_pci *vp = pd->opaque;
	const uint8_t *p = data;
	bool msix = false;

	for (unsigned int i = 0; i < len; i++) {
		if (!cap_writable(off + i))
			continue;
		if (off + i == CAP_MSIX + 3) {
			pd->cfg[off + i] = p[i] & 0xc0;
			msix = true;
		} else {
			pd->cfg[off + i] = p[i];
		}
	}
	if (msix) {
		uint16_t ctrl = get_le16(pd->cfg + CAP_MSIX + 2);

		pthread_mutex_lock(&vp->msix_lock);
		vp->fmask = ctrl & MSIX_CTRL_FMASK;
		__atomic_store_n(&vp->msix_on, !!(ctrl & MSIX_CTRL_ENABLE),
				 __ATOMIC_RELEASE);
		msix_update(vp);
		pthread_mutex_unlock(&vp->msix_lock);
		/* A device using MSI-X does not assert INTx (PCI 6.8.3.3). */
		if (ctrl & MSIX_CTRL_ENABLE) {
			pthread_mutex_lock(&vp->intx_lock);
			pci_set_irq(&vp->pci, 0);
			pthread_mutex_unlock(&vp->intx_lock);
		}
	}
	if (vp->modern && in_window(off, len)) {
		/* The whole data field is written, as the driver aligns it. */
		uint8_t win[4];

		memcpy(win, pd->cfg + CAP_PCICFG + 16, 4);
		for (unsigned int i = 0; i < len; i++)
			if (off + i >= CAP_PCICFG + 16 &&
			    off + i < CAP_PCICFG + 20)
				win[off + i - (CAP_PCICFG + 16)] = p[i];
		window_access(vp, win, true);
	}
}

static const struct pci_device_ops virtio_pci_ops = {
	.bar_update = bar_update,
	.cfg_read = pci_cfg_read,
	.cfg_write = pci_cfg_write,
};

static void vendor_cap(uint8_t *cfg, unsigned int at, unsigned int next,
		       unsigned int len, uint8_t type, uint8_t bar,
		       uint32_t offset, uint32_t length)
{
	uint8_t *c = cfg + at;

	c[0] = CAP_ID_VENDOR;
	c[1] = (uint8_t)next;
	c[2] = (uint8_t)len;
	c[3] = type;
	c[4] = bar;
	put_le32(c + 8, offset);
	put_le32(c + 12, length);
}

static void build_caps(struct virtio_pci *vp)
{
	uint8_t *cfg = vp->pci.cfg;
	struct virtio_dev *d = vp->d;

	cfg[PCI_CAP_PTR] = CAP_MSIX;
	cfg[CAP_MSIX] = CAP_ID_MSIX;
	cfg[CAP_MSIX + 1] = vp->modern ? CAP_COMMON : 0;
	put_le16(cfg + CAP_MSIX + 2, (uint16_t)(vp->nvec - 1));
	put_le32(cfg + CAP_MSIX + 4, 0 | BAR_MSIX);
	put_le32(cfg + CAP_MSIX + 8, MSIX_PBA | BAR_MSIX);
	if (!vp->modern)
		return;
	vendor_cap(cfg, CAP_COMMON, CAP_ISR, 16, VIRTIO_PCI_CAP_COMMON_CFG,
		   BAR_MODERN, MODERN_COMMON, COMMON_SIZE);
	vendor_cap(cfg, CAP_ISR, CAP_DEVICE, 16, VIRTIO_PCI_CAP_ISR_CFG,
		   BAR_MODERN, MODERN_ISR, 1);
	vendor_cap(cfg, CAP_DEVICE, CAP_NOTIFY, 16, VIRTIO_PCI_CAP_DEVICE_CFG,
		   BAR_MODERN, MODERN_DEVICE,
		   d->ops->config_size ? d->ops->config_size : 4);
	vendor_cap(cfg, CAP_NOTIFY, CAP_PCICFG, 20, VIRTIO_PCI_CAP_NOTIFY_CFG,
		   BAR_MODERN, MODERN_NOTIFY, NOTIFY_MULT * d->nvq);
	put_le32(cfg + CAP_NOTIFY + 16, NOTIFY_MULT);
	vendor_cap(cfg, CAP_PCICFG, 0, 20, VIRTIO_PCI_CAP_PCI_CFG, 0, 0, 0);
}

static uint16_t pow2_at_least(unsigned int n)
{
	uint16_t s = 4;

	while (s < n)
		s <<= 1;
	return s;
}

static void pci_exit(struct virtio_dev *d)
{
	struct virtio_pci *vp = d->t_priv;
	struct machine *m = d->m;

	if (!vp)
		return;
	/* The slot stays taken (no hot-unplug); decoding stops. */
	for (unsigned int i = 0; i < PCI_NUM_BARS; i++) {
		struct bar_map *b = &vp->bar[i];

		if (!b->on)
			continue;
		if (i == BAR_LEGACY || i == BAR_MODERN)
			ioevents(vp, i, b->addr, false);
		iobus_unregister(vp->pci.bars[i].kind == PCI_BAR_IO ? m->pio :
								      m->mmio,
				 b->r);
		b->on = false;
	}
	for (unsigned int i = 0; i < vp->nvec; i++) {
		if (vp->vec[i].fd < 0)
			continue;
		if (m->kvm)
			kvm_irqfd(m->kvm, vp->vec[i].fd, vp->vec[i].gsi, -1,
				  true);
		close(vp->vec[i].fd);
	}
	pci_unregister(&vp->pci);
	routes_put(m);
	pthread_mutex_destroy(&vp->msix_lock);
	pthread_mutex_destroy(&vp->intx_lock);
	free(vp);
	d->t_priv = NULL;
}

static const struct virtio_transport_ops pci_transport = {
	.signal_queue = pci_signal_queue,
	.signal_config = pci_signal_config,
	.exit = pci_exit,
};

int virtio_pci_plug(struct virtio_dev *d)
{
	struct virtio_pci *vp = calloc(1, sizeof(*vp));
	uint32_t id = d->ops->device_id;
	uint16_t pci_id;
	int err;

	if (!vp || !routes_get(d->m)) {
		free(vp);
		pr_err("%s: out of memory", d->name);
		return -ENOMEM;
	}
	vp->d = d;
	vp->modern = d->kind != VIRTIO_PCI_LEGACY;
	vp->legacy = d->kind != VIRTIO_PCI_MODERN;
	vp->nvec = MIN(d->nvq + 1, MSIX_MAX_VECTORS);
	vp->config_vector = VIRTIO_MSI_NO_VECTOR;
	vp->ioevent_ok = true;
	pthread_mutex_init(&vp->msix_lock, NULL);
	pthread_mutex_init(&vp->intx_lock, NULL);
	for (unsigned int i = 0; i < vp->nvec; i++) {
		vp->vec[i].fd = -1;
		vp->vec[i].ctrl = MSIX_ENTRY_MASKED;
		vp->vec[i].masked = true;
	}
	vp->pci.ops = &virtio_pci_ops;
	vp->pci.opaque = vp;
	vp->pci.irq_pin = 1;
	if (vp->legacy) {
		vp->legacy_size = pow2_at_least(LEGACY_CONFIG_MSIX +
						d->ops->config_size);
		vp->pci.bars[BAR_LEGACY] = (struct pci_bar){
			.kind = PCI_BAR_IO, .size = vp->legacy_size };
	}
	vp->pci.bars[BAR_MSIX] = (struct pci_bar){ .kind = PCI_BAR_MEM32,
						   .size = MSIX_BAR_SIZE };
	if (vp->modern)
		vp->pci.bars[BAR_MODERN] = (struct pci_bar){
			.kind = PCI_BAR_MEM32, .size = MODERN_BAR_SIZE };
	/* Transitional devices are revision 0 with the old IDs; modern-only
	 * ones revision 1 with 0x1040 + type (4.1.2). */
	if (vp->legacy && id < ARRAY_SIZE(transitional_id) &&
	    transitional_id[id]) {
		pci_id = transitional_id[id];
	} else {
		pci_id = (uint16_t)(0x1040 + id);
		vp->pci.cfg[0x08] = 1;
	}
	build_caps(vp);
	d->t = &pci_transport;
	d->t_priv = vp;
	err = pci_register(d->m, &vp->pci, VIRTIO_PCI_VENDOR, pci_id,
			   d->ops->pci_class, VIRTIO_PCI_VENDOR, (uint16_t)id);
	if (err) {
		pr_err("%s: cannot plug into the PCI bus: %s", d->name,
		       err == -ENOSPC ? "no free slot or address space" :
					strerror(-err));
		d->t = NULL;
		d->t_priv = NULL;
		routes_put(d->m);
		pthread_mutex_destroy(&vp->msix_lock);
		pthread_mutex_destroy(&vp->intx_lock);
		free(vp);
		return err;
	}
	msix_reset(vp);
	return 0;
}
