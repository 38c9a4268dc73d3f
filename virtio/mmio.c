// SPDX-License-Identifier: GPL-2.0
/*
 * The virtio-mmio transport (virtio 1.2, 4.2): version 2, and version 1
 * (the legacy layout with a guest page size and queue PFNs) with
 * --virtio-transport mmio-legacy.
 *
 * Each device takes 0x200 bytes from 0xfeb00000 (where QEMU's microvm
 * puts them, clear of RAM, the PCI window and the APICs) and an ISA IRQ
 * nothing else uses. Guests learn of them from the device tree (a
 * "virtio,mmio" node with reg and interrupts = <irq 3>, the convention of
 * lkvm's /isa devices: rising edge) and, for Linux, from the command line
 * (virtio_mmio.device=512@0xfeb00000:5, collected in m->linux_params).
 *
 * The interrupt is an irqfd on the ISA IRQ (with lkvm's own irqchip, a
 * pulse of the line: KVM's irqfds reach only its own I/O APIC and
 * MSIs), which the I/O APIC and the 8259 take as edge-triggered: each used-buffer or configuration event
 * sends an edge, and the driver acknowledges the InterruptStatus bits it
 * saw (Linux acknowledges before it looks at the rings, so an event that
 * comes while it works sends a new edge). Notifications come through an
 * ioeventfd per queue on QueueNotify, matching the queue index.
 */
#include <errno.h>
#include <libfdt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "lkvm/device.h"
#include "lkvm/machine.h"
#include "lkvm/util.h"
#include "lkvm/virtio.h"

#define MMIO_BASE 0xfeb00000ull
#define MMIO_SIZE 0x200
#define MMIO_MAX 64

#define MMIO_MAGIC 0x000
#define MMIO_VERSION 0x004
#define MMIO_DEVICE_ID 0x008
#define MMIO_VENDOR_ID 0x00c
#define MMIO_DEVICE_FEATURES 0x010
#define MMIO_DEVICE_FEATURES_SEL 0x014
#define MMIO_DRIVER_FEATURES 0x020
#define MMIO_DRIVER_FEATURES_SEL 0x024
#define MMIO_GUEST_PAGE_SIZE 0x028	/* version 1 */
#define MMIO_QUEUE_SEL 0x030
#define MMIO_QUEUE_NUM_MAX 0x034
#define MMIO_QUEUE_NUM 0x038
#define MMIO_QUEUE_ALIGN 0x03c		/* version 1 */
#define MMIO_QUEUE_PFN 0x040		/* version 1 */
#define MMIO_QUEUE_READY 0x044
#define MMIO_QUEUE_NOTIFY 0x050
#define MMIO_INTERRUPT_STATUS 0x060
#define MMIO_INTERRUPT_ACK 0x064
#define MMIO_STATUS 0x070
#define MMIO_QUEUE_DESC_LOW 0x080
#define MMIO_QUEUE_DESC_HIGH 0x084
#define MMIO_QUEUE_DRIVER_LOW 0x090
#define MMIO_QUEUE_DRIVER_HIGH 0x094
#define MMIO_QUEUE_DEVICE_LOW 0x0a0
#define MMIO_QUEUE_DEVICE_HIGH 0x0a4
#define MMIO_SHM_SEL 0x0ac
#define MMIO_SHM_LEN_LOW 0x0b0
#define MMIO_SHM_LEN_HIGH 0x0b4
#define MMIO_SHM_BASE_LOW 0x0b8
#define MMIO_SHM_BASE_HIGH 0x0bc
#define MMIO_CONFIG_GENERATION 0x0fc
#define MMIO_CONFIG 0x100

#define MMIO_MAGIC_VALUE 0x74726976	/* "virt" */
#define MMIO_VENDOR 0x4d564b4c		/* "LKVM" */

/* ISA IRQs no lkvm device uses: 0 timer, 1 and 12 i8042, 3 and 4 the
 * UARTs, 8 RTC, 2 the cascade, 13 the FPU. */
static const uint8_t free_irqs[] = { 5, 6, 7, 9, 10, 11, 14, 15 };

struct virtio_mmio {
	struct virtio_dev *d;
	uint64_t base;
	unsigned int irq;
	int irq_fd;
	bool v1;
	struct io_region *r;
	bool ioevent_ok;

	/* Registers (d->lock). */
	uint32_t dfsel, gfsel, queue_sel;
	uint32_t page_size;		/* version 1 */
	uint32_t *queue_align;		/* version 1, per queue */
};

static void irq_pulse(struct virtio_dev *d)
{
	struct virtio_mmio *vm = d->t_priv;
	uint64_t one = 1;

	if (vm->irq_fd < 0) {
		machine_irq_line(d->m, vm->irq, 1);
		machine_irq_line(d->m, vm->irq, 0);
		return;
	}
	if (write(vm->irq_fd, &one, sizeof(one)) < 0)
		(void)0;	/* counter saturated: an edge is pending */
}

static void mmio_signal_queue(struct virtio_dev *d, struct virtq *vq)
{
	(void)vq;
	irq_pulse(d);
}

static uint32_t reg_read(struct virtio_mmio *vm, unsigned int off)
{
	struct virtio_dev *d = vm->d;
	unsigned int q = vm->queue_sel;
	struct virtq *vq = q < d->nvq ? &d->vq[q] : NULL;

	switch (off) {
	case MMIO_MAGIC:
		return MMIO_MAGIC_VALUE;
	case MMIO_VERSION:
		return vm->v1 ? 1 : 2;
	case MMIO_DEVICE_ID:
		return d->ops->device_id;
	case MMIO_VENDOR_ID:
		return MMIO_VENDOR;
	case MMIO_DEVICE_FEATURES:
		return virtio_read_host_features(d, vm->dfsel);
	case MMIO_QUEUE_NUM_MAX:
		return vq ? virtio_queue_max(d) : 0;
	case MMIO_QUEUE_READY:
		return vq && !vm->v1 ? vq->enabled : 0;
	case MMIO_QUEUE_PFN:
		return vq && vm->v1 && vq->enabled && vm->page_size ?
			       (uint32_t)(vq->desc_gpa / vm->page_size) : 0;
	case MMIO_INTERRUPT_STATUS:
		return __atomic_load_n(&d->isr, __ATOMIC_ACQUIRE);
	case MMIO_STATUS:
		return virtio_read_status(d);
	case MMIO_SHM_LEN_LOW:
	case MMIO_SHM_LEN_HIGH:
	case MMIO_SHM_BASE_LOW:
	case MMIO_SHM_BASE_HIGH:
		return vm->v1 ? 0 : 0xffffffff;	/* no shared memory */
	case MMIO_CONFIG_GENERATION:
		return vm->v1 ? 0 : d->config_gen;
	}
	if (!vq || vm->v1)
		return 0;
	switch (off) {
	case MMIO_QUEUE_DESC_LOW:
		return (uint32_t)vq->desc_gpa;
	case MMIO_QUEUE_DESC_HIGH:
		return vq->desc_gpa >> 32;
	case MMIO_QUEUE_DRIVER_LOW:
		return (uint32_t)vq->avail_gpa;
	case MMIO_QUEUE_DRIVER_HIGH:
		return vq->avail_gpa >> 32;
	case MMIO_QUEUE_DEVICE_LOW:
		return (uint32_t)vq->used_gpa;
	case MMIO_QUEUE_DEVICE_HIGH:
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

static void set_pfn(struct virtio_mmio *vm, unsigned int q, uint32_t pfn)
{
	struct virtio_dev *d = vm->d;
	struct virtq *vq = &d->vq[q];
	uint64_t align = vm->queue_align[q];

	if (vq->enabled)
		virtio_queue_disable(d, q);
	if (!pfn)
		return;
	vq->size = d->qs[q].size_set;
	/* A bad page size or alignment makes bad rings, which enabling
	 * reports; an alignment that is not a power of two is one. */
	if (!align || (align & (align - 1)))
		align = 1ull << 63;
	virtq_legacy_layout(vq, (uint64_t)pfn * vm->page_size, align);
	virtio_queue_enable(d, q);
}

static void reg_write(struct virtio_mmio *vm, unsigned int off, uint32_t v)
{
	struct virtio_dev *d = vm->d;
	unsigned int q = vm->queue_sel;
	struct virtq *vq = q < d->nvq ? &d->vq[q] : NULL;

	switch (off) {
	case MMIO_DEVICE_FEATURES_SEL:
		vm->dfsel = v;
		return;
	case MMIO_DRIVER_FEATURES:
		virtio_write_guest_features(d, vm->gfsel, v);
		return;
	case MMIO_DRIVER_FEATURES_SEL:
		vm->gfsel = v;
		return;
	case MMIO_GUEST_PAGE_SIZE:
		if (vm->v1)
			vm->page_size = v;
		return;
	case MMIO_QUEUE_SEL:
		vm->queue_sel = v;
		return;
	case MMIO_INTERRUPT_ACK:
		__atomic_fetch_and(&d->isr, (uint8_t)~v, __ATOMIC_ACQ_REL);
		return;
	case MMIO_STATUS:
		virtio_write_status(d, (uint8_t)v);
		return;
	}
	if (!vq)
		return;
	switch (off) {
	case MMIO_QUEUE_NUM:
		virtio_queue_set_size(d, q, (uint16_t)MIN(v, 0xffffu));
		return;
	case MMIO_QUEUE_ALIGN:
		if (vm->v1)
			vm->queue_align[q] = v;
		return;
	case MMIO_QUEUE_PFN:
		if (vm->v1)
			set_pfn(vm, q, v);
		return;
	case MMIO_QUEUE_READY:
		if (vm->v1)
			return;
		if (v == 1 && !vq->enabled)
			virtio_queue_enable(d, q);
		else if (v == 0 && vq->enabled)
			virtio_queue_disable(d, q);
		return;
	}
	if (vm->v1 || vq->enabled)
		return;		/* fixed while the queue runs */
	switch (off) {
	case MMIO_QUEUE_DESC_LOW:
	case MMIO_QUEUE_DESC_HIGH:
		set_half(&vq->desc_gpa, off == MMIO_QUEUE_DESC_HIGH, v);
		return;
	case MMIO_QUEUE_DRIVER_LOW:
	case MMIO_QUEUE_DRIVER_HIGH:
		set_half(&vq->avail_gpa, off == MMIO_QUEUE_DRIVER_HIGH, v);
		return;
	case MMIO_QUEUE_DEVICE_LOW:
	case MMIO_QUEUE_DEVICE_HIGH:
		set_half(&vq->used_gpa, off == MMIO_QUEUE_DEVICE_HIGH, v);
		return;
	}
}

static void mmio_io(struct io_region *r, struct kvm_vcpu *vcpu,
		    uint64_t off, void *data, unsigned int len, bool is_write)
{
	struct virtio_mmio *vm = r->opaque;
	struct virtio_dev *d = vm->d;
	uint32_t v = 0;

	(void)vcpu;
	if (off >= MMIO_CONFIG) {
		pthread_mutex_lock(&d->lock);
		if (is_write)
			virtio_config_write(d, (unsigned int)off - MMIO_CONFIG,
					    data, len);
		else
			virtio_config_read(d, (unsigned int)off - MMIO_CONFIG,
					   data, len);
		pthread_mutex_unlock(&d->lock);
		return;
	}
	/* 4.2.2.2: the registers take aligned 32-bit accesses only. */
	if (len != 4 || off % 4) {
		if (!is_write)
			memset(data, 0, len);
		return;
	}
	if (is_write) {
		memcpy(&v, data, 4);
		if (off == MMIO_QUEUE_NOTIFY) {
			if (v < d->nvq)
				virtio_kick(d, v);
			return;
		}
		pthread_mutex_lock(&d->lock);
		reg_write(vm, (unsigned int)off, v);
		pthread_mutex_unlock(&d->lock);
		return;
	}
	pthread_mutex_lock(&d->lock);
	v = reg_read(vm, (unsigned int)off);
	pthread_mutex_unlock(&d->lock);
	memcpy(data, &v, 4);
}

static void ioevents(struct virtio_mmio *vm, bool assign)
{
	struct virtio_dev *d = vm->d;

	if (!d->m->kvm)
		return;
	for (unsigned int q = 0; q < d->nvq; q++) {
		int err = kvm_ioeventfd(d->m->kvm, vm->base + MMIO_QUEUE_NOTIFY,
					4, d->qs[q].kick_fd, false, true, q,
					!assign);

		if (err && assign && vm->ioevent_ok) {
			vm->ioevent_ok = false;
			pr_warn("%s: no ioeventfd (%s): notifications exit "
				"to lkvm", d->name, strerror(-err));
		}
	}
}

static void mmio_exit(struct virtio_dev *d)
{
	struct virtio_machine *vmc = virtio_machine(d->m);
	struct virtio_mmio *vm = d->t_priv;
	struct machine *m = d->m;

	if (!vm)
		return;
	for (unsigned int i = 0; vmc && i < vmc->nmmio; i++)
		if (vmc->mmio[i] == d)
			vmc->mmio[i] = NULL;
	ioevents(vm, false);
	if (vm->irq_fd >= 0) {
		if (m->kvm)
			kvm_irqfd(m->kvm, vm->irq_fd, vm->irq, -1, true);
		close(vm->irq_fd);
	}
	iobus_unregister(m->mmio, vm->r);
	free(vm->queue_align);
	free(vm);
	d->t_priv = NULL;
}

static const struct virtio_transport_ops mmio_transport = {
	.signal_queue = mmio_signal_queue,
	.signal_config = irq_pulse,
	.exit = mmio_exit,
};

/* Adds " virtio_mmio.device=512@0x...:irq" to the Linux command line. */
static int add_linux_param(struct machine *m, const struct virtio_mmio *vm)
{
	size_t old = m->linux_params ? strlen(m->linux_params) : 0;
	char param[80];
	char *s;
	int n;

	n = snprintf(param, sizeof(param), "%svirtio_mmio.device=%u@0x%llx:%u",
		     old ? " " : "", MMIO_SIZE, (unsigned long long)vm->base,
		     vm->irq);
	s = realloc(m->linux_params, old + (size_t)n + 1);
	if (!s)
		return -ENOMEM;
	memcpy(s + old, param, (size_t)n + 1);
	m->linux_params = s;
	return 0;
}

int virtio_mmio_plug(struct virtio_dev *d)
{
	struct virtio_machine *vmc = virtio_machine(d->m);
	struct machine *m = d->m;
	struct virtio_mmio *vm;
	int err;

	if (!vmc || vmc->nmmio >= MMIO_MAX) {
		pr_err("%s: no room for another virtio-mmio device", d->name);
		return -ENOSPC;
	}
	vm = calloc(1, sizeof(*vm));
	if (!vm || !(vm->queue_align = calloc(d->nvq, sizeof(uint32_t)))) {
		free(vm);
		pr_err("%s: out of memory", d->name);
		return -ENOMEM;
	}
	vm->d = d;
	vm->v1 = d->kind == VIRTIO_MMIO_LEGACY;
	vm->base = MMIO_BASE + (uint64_t)vmc->nmmio * MMIO_SIZE;
	vm->irq = free_irqs[vmc->nmmio % ARRAY_SIZE(free_irqs)];
	vm->ioevent_ok = true;
	/* Version 1's defaults, as QEMU's, for drivers that skip them. */
	vm->page_size = 4096;
	for (unsigned int q = 0; q < d->nvq; q++)
		vm->queue_align[q] = 4096;
	vm->irq_fd = m->irqchip ? -1 :
				  eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->irq_fd < 0 && !m->irqchip) {
		err = -errno;
		goto fail;
	}
	if (m->kvm && vm->irq_fd >= 0 &&
	    (err = kvm_irqfd(m->kvm, vm->irq_fd, vm->irq, -1, false)) < 0)
		goto fail;
	err = iobus_register(m->mmio, vm->base, MMIO_SIZE, mmio_io, vm,
			     d->name, &vm->r);
	if (err)
		goto fail;
	err = add_linux_param(m, vm);
	if (err) {
		iobus_unregister(m->mmio, vm->r);
		goto fail;
	}
	d->t = &mmio_transport;
	d->t_priv = vm;
	ioevents(vm, true);
	vmc->mmio[vmc->nmmio++] = d;
	return 0;
fail:
	pr_err("%s: cannot set up virtio-mmio at 0x%llx: %s", d->name,
	       (unsigned long long)vm->base, strerror(-err));
	if (vm->irq_fd >= 0) {
		if (m->kvm)
			kvm_irqfd(m->kvm, vm->irq_fd, vm->irq, -1, true);
		close(vm->irq_fd);
	}
	free(vm->queue_align);
	free(vm);
	return err;
}

/* ---- the device tree ----------------------------------------------------- */

static int mmio_fdt(struct machine *m, void *fdt)
{
	struct virtio_machine *vmc = virtio_machine(m);

	/* Last to first: each node goes in front of its siblings. */
	for (unsigned int i = vmc ? vmc->nmmio : 0; i-- > 0;) {
		struct virtio_dev *d = vmc->mmio[i];
		struct virtio_mmio *vm = d ? d->t_priv : NULL;
		fdt64_t reg[2];
		fdt32_t intr[2];
		char name[40];
		int node, err;

		if (!vm)
			continue;
		reg[0] = cpu_to_fdt64(vm->base);
		reg[1] = cpu_to_fdt64(MMIO_SIZE);
		intr[0] = cpu_to_fdt32(vm->irq);
		intr[1] = cpu_to_fdt32(3);	/* rising edge, as /isa */
		snprintf(name, sizeof(name), "virtio_mmio@%llx",
			 (unsigned long long)vm->base);
		node = fdt_add_subnode(fdt, 0, name);
		if (node < 0)
			return node;
		if ((err = fdt_setprop_string(fdt, node, "compatible",
					      "virtio,mmio")) ||
		    (err = fdt_setprop(fdt, node, "reg", reg, sizeof(reg))) ||
		    (err = fdt_setprop(fdt, node, "interrupts", intr,
				       sizeof(intr))) ||
		    (err = fdt_setprop(fdt, node, "dma-coherent", NULL, 0)))
			return err;
	}
	return 0;
}

static void mmio_devices_exit(struct machine *m)
{
	struct virtio_machine *vmc = virtio_machine(m);

	if (vmc)
		vmc->nmmio = 0;
	free(m->linux_params);
	m->linux_params = NULL;
}

/* The devices' nodes, and the end of what the transport added. */
static const struct device_ops virtio_mmio_ops = {
	.name = "virtio-mmio",
	.stage = DEV_STAGE_BUS,
	.exit = mmio_devices_exit,
	.fdt = mmio_fdt,
};
DEVICE(virtio_mmio_ops);
