// SPDX-License-Identifier: GPL-2.0
/*
 * lkvm's own PC interrupt controllers on KVM's split irqchip
 * (--irqchip split, the default): the local APICs stay in the kernel,
 * the 8259 pair (hw/i8259.c), the I/O APIC (hw/ioapic.c) and the 8254
 * PIT (hw/i8254.c) are lkvm's. A VM without the kernel's PIC, I/O APIC
 * and PIT closes in about a millisecond; with them KVM's teardown waits
 * out one SRCU grace period per device it unregisters (~22 ms here).
 *
 * The guest sees the same machine as with --irqchip kernel: ISA IRQ n on
 * 8259 input n and I/O APIC pin n, the timer (IRQ 0) on pin 2, PCI INTx
 * on pins 16-23, the I/O APIC at 0xfec00000 with version 0x11.
 *
 * How interrupts get out:
 * - The I/O APIC sends each interrupt as an MSI (KVM_SIGNAL_MSI) to the
 *   kernel's local APICs. For its level-triggered pins it keeps an MSI
 *   route on GSI = pin in KVM's table (KVM_CAP_SPLIT_IRQCHIP reserves
 *   GSIs 0-23 for that), from which KVM learns which vectors' EOIs to
 *   report (KVM_EXIT_IOAPIC_EOI): the EOI clears remote IRR. virtio-pci's
 *   MSI-X routes share the table (x86_set_gsi_routing comes here).
 * - The 8259 pair's INTR goes to vCPU 0's LINT0, as on a PC. When it
 *   rises, vCPU 0 is kicked out of KVM_RUN; before its next KVM_RUN it
 *   acknowledges the PIC and injects the vector (KVM_INTERRUPT) when KVM
 *   says the guest can take an external interrupt (IF set, LINT0 in
 *   ExtINT mode or the APIC off), and otherwise asks KVM for an
 *   interrupt-window exit.
 * - The PIT's channel 0 runs on a timerfd on the main loop, armed for the
 *   next rise of its output, which pulses IRQ 0.
 * One lock covers the three models: devices raise lines from any thread,
 * vCPUs reach the registers, the main loop runs the PIT's timer.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/timerfd.h>

#include "lkvm/arch.h"
#include "lkvm/i8254.h"
#include "lkvm/i8259.h"
#include "lkvm/ioapic.h"
#include "lkvm/machine.h"
#include "lkvm/util.h"
#include "lkvm/vcpu.h"
#include "lkvm/x86.h"

struct irqchip {
	struct machine *m;
	pthread_mutex_t lock;		/* the models below */
	struct i8259 pic;
	struct ioapic ioapic;
	struct i8254 pit;
	int pit_fd;			/* timerfd, CLOCK_MONOTONIC */
	int64_t pit_armed;		/* its deadline, -1 when disarmed */
	int pic_output;			/* the PIC's INTR, for vCPU 0 */

	/* KVM's routing table (routing_lock, taken inside lock): the level
	 * pins' routes and the last set of other routes (virtio-pci's MSI-X
	 * vectors). */
	pthread_mutex_t routing_lock;
	struct kvm_irq_routing_entry pin_route[IOAPIC_PINS];
	bool pin_routed[IOAPIC_PINS];
	struct kvm_irq_routing_entry *extra;
	unsigned int nextra;
};

/* ---- lines ------------------------------------------------------------ */

/* Called locked: an ISA IRQ or PCI line reaches the PIC and the I/O APIC
 * as the MP table says (mptable.c). */
static void set_line(struct irqchip *ic, unsigned int gsi, bool level)
{
	if (gsi >= IOAPIC_PINS || gsi == 2)
		return;			/* 2: the cascade, not a line */
	if (gsi < 16)
		i8259_set_irq(&ic->pic, gsi, level);
	ioapic_set_irq(&ic->ioapic, gsi ? gsi : 2, level);
}

int arch_irq_line(struct machine *m, unsigned int gsi, int level)
{
	struct irqchip *ic = m->irqchip;

	pthread_mutex_lock(&ic->lock);
	set_line(ic, gsi, level);
	pthread_mutex_unlock(&ic->lock);
	return 0;
}

/* ---- the 8259s and vCPU 0 ---------------------------------------------- */

static void pic_intr(struct i8259 *p, bool level)
{
	struct irqchip *ic = p->opaque;
	struct vcpu *v0 = ic->m->vcpus;

	__atomic_store_n(&ic->pic_output, level, __ATOMIC_SEQ_CST);
	/* Before its next KVM_RUN vCPU 0 looks at pic_output: a vCPU 0 in
	 * the guest (or about to enter it) is made to come out and look. */
	if (level && v0 && !vcpu_on_own_thread(v0))
		vcpu_kick(v0);
}

void arch_vcpu_pre_run(struct machine *m, struct vcpu *v)
{
	struct irqchip *ic = m->irqchip;
	struct kvm_run *run;
	int vector = -1;

	if (v->id)
		return;
	run = kvm_vcpu_run_state(v->kvm);
	if (!__atomic_load_n(&ic->pic_output, __ATOMIC_SEQ_CST)) {
		run->request_interrupt_window = 0;
		return;
	}
	/* KVM says, as of the last exit, whether an external interrupt
	 * would be taken now; only then is the PIC acknowledged, so that
	 * the vector is in service exactly when the guest gets it. */
	if (run->ready_for_interrupt_injection && run->if_flag) {
		pthread_mutex_lock(&ic->lock);
		if (ic->pic.output)
			vector = i8259_ack(&ic->pic);
		pthread_mutex_unlock(&ic->lock);
	}
	if (vector >= 0)
		kvm_inject_irq(v->kvm, (unsigned int)vector);
	run->request_interrupt_window =
		__atomic_load_n(&ic->pic_output, __ATOMIC_SEQ_CST);
}

/* ---- the I/O APIC ----------------------------------------------------- */

static void ioapic_deliver(struct ioapic *io, unsigned int pin, uint64_t addr,
			   uint32_t data)
{
	struct irqchip *ic = io->opaque;

	(void)pin;
	kvm_signal_msi(ic->m->kvm, addr, data);
}

/* Called with routing_lock held: the whole table, as KVM wants it. */
static int apply_routes(struct irqchip *ic)
{
	struct kvm_irq_routing_entry pins[IOAPIC_PINS];
	unsigned int n = 0;

	for (unsigned int pin = 0; pin < IOAPIC_PINS; pin++)
		if (ic->pin_routed[pin])
			pins[n++] = ic->pin_route[pin];
	return x86_submit_routes(ic->m, pins, n, ic->extra, ic->nextra);
}

/*
 * Called locked when the guest changed pin's redirection entry, before
 * the I/O APIC delivers anything that write causes: KVM learns which
 * vectors' EOIs to report from the routes, so a level-triggered pin's
 * route must be in place before its first interrupt can be taken. Only
 * a change of the message (not of the mask) touches KVM's table, which
 * costs an SRCU grace period: guests program an entry masked, then
 * unmask it.
 */
static void ioapic_changed(struct ioapic *io, unsigned int pin)
{
	struct irqchip *ic = io->opaque;
	uint64_t e = io->redtbl[pin];
	struct kvm_irq_routing_entry route = { 0 };
	bool on = (e & IOAPIC_LEVEL) && (e & IOAPIC_VECTOR_MASK) >= 16;

	if (on) {
		uint64_t addr;
		uint32_t data;

		ioapic_entry_msi(e, &addr, &data);
		route.gsi = pin;
		route.type = KVM_IRQ_ROUTING_MSI;
		route.u.msi.address_lo = (uint32_t)addr;
		route.u.msi.address_hi = (uint32_t)(addr >> 32);
		route.u.msi.data = data;
	}
	pthread_mutex_lock(&ic->routing_lock);
	if (on != ic->pin_routed[pin] ||
	    (on && memcmp(&route, &ic->pin_route[pin], sizeof(route)))) {
		ic->pin_route[pin] = route;
		ic->pin_routed[pin] = on;
		if (apply_routes(ic))
			pr_warn("irqchip: KVM refused the I/O APIC's routes");
	}
	pthread_mutex_unlock(&ic->routing_lock);
}

int x86_irqchip_set_routing(struct machine *m,
			    const struct kvm_irq_routing_entry *extra,
			    unsigned int nextra)
{
	struct irqchip *ic = m->irqchip;
	struct kvm_irq_routing_entry *copy = NULL;
	int err;

	if (nextra) {
		copy = malloc(nextra * sizeof(*copy));
		if (!copy)
			return -ENOMEM;
		memcpy(copy, extra, nextra * sizeof(*copy));
	}
	pthread_mutex_lock(&ic->routing_lock);
	free(ic->extra);
	ic->extra = copy;
	ic->nextra = nextra;
	err = apply_routes(ic);
	pthread_mutex_unlock(&ic->routing_lock);
	return err;
}

void arch_eoi(struct machine *m, struct vcpu *v, uint8_t vector)
{
	struct irqchip *ic = m->irqchip;

	(void)v;
	pthread_mutex_lock(&ic->lock);
	ioapic_eoi(&ic->ioapic, vector);
	pthread_mutex_unlock(&ic->lock);
}

static void ioapic_io(struct io_region *r, struct kvm_vcpu *vcpu,
		      uint64_t offset, void *data, unsigned int len,
		      bool is_write)
{
	struct irqchip *ic = r->opaque;
	uint64_t reg = offset & ~3ull;
	uint32_t val = 0;

	(void)vcpu;
	pthread_mutex_lock(&ic->lock);
	if (is_write) {
		/* A narrower or wider write sets the register's low bytes,
		 * zero-extended; one not at a register's start is dropped. */
		if (!(offset & 3)) {
			memcpy(&val, data, MIN(len, 4u));
			ioapic_mmio_write(&ic->ioapic, reg, val);
		}
	} else {
		unsigned int shift = (unsigned int)(offset & 3);

		val = ioapic_mmio_read(&ic->ioapic, reg);
		memset(data, 0, len);
		memcpy(data, (uint8_t *)&val + shift, MIN(len, 4u - shift));
	}
	pthread_mutex_unlock(&ic->lock);
}

/* ---- the PIT ------------------------------------------------------------ */

static void pit_irq0(struct i8254 *p)
{
	struct irqchip *ic = p->opaque;

	set_line(ic, 0, true);
	set_line(ic, 0, false);
}

/* Called locked: the timer follows the model's next rise of IRQ 0. */
static void pit_arm(struct irqchip *ic, int64_t when)
{
	struct itimerspec its = { 0 };

	if (when == ic->pit_armed || ic->pit_fd < 0)
		return;
	if (when >= 0) {
		/* 0 would disarm: a deadline already past fires at once. */
		its.it_value.tv_sec = when / 1000000000ll;
		its.it_value.tv_nsec = when % 1000000000ll;
		if (!its.it_value.tv_sec && !its.it_value.tv_nsec)
			its.it_value.tv_nsec = 1;
	}
	if (timerfd_settime(ic->pit_fd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
		ic->pit_armed = when;
}

static void pit_timer(struct machine *m, int fd, void *opaque)
{
	struct irqchip *ic = opaque;
	uint64_t n;

	(void)m;
	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		return;
	pthread_mutex_lock(&ic->lock);
	ic->pit_armed = -1;
	pit_arm(ic, i8254_tick(&ic->pit));
	pthread_mutex_unlock(&ic->lock);
}

/* The 8259s' and the PIT's ports, a byte at a time. */
static void port_io(struct io_region *r, struct kvm_vcpu *vcpu,
		    uint64_t offset, void *data, unsigned int len, bool is_write)
{
	struct irqchip *ic = r->opaque;
	bool pit_written = false;
	uint8_t *b = data;

	(void)vcpu;
	pthread_mutex_lock(&ic->lock);
	for (unsigned int i = 0; i < len && offset + i < r->len; i++) {
		uint16_t port = (uint16_t)(r->base + offset + i);
		bool pit = port == I8254_SPEAKER_PORT ||
			   (port & ~3u) == I8254_PORT;

		if (is_write && pit)
			i8254_write(&ic->pit, port, b[i]);
		else if (is_write)
			i8259_write(&ic->pic, port, b[i]);
		else
			b[i] = pit ? i8254_read(&ic->pit, port) :
				     i8259_read(&ic->pic, port);
		pit_written |= is_write && pit;
	}
	if (pit_written)
		pit_arm(ic, i8254_next_irq(&ic->pit));
	pthread_mutex_unlock(&ic->lock);
}

/* ---- set-up ------------------------------------------------------------ */

static int register_all(struct machine *m, struct irqchip *ic)
{
	static const struct {
		uint16_t port, len;
		const char *name;
	} pio[] = {
		{ I8259_MASTER_PORT, 2, "pic-master" },
		{ I8259_SLAVE_PORT, 2, "pic-slave" },
		{ I8259_ELCR_PORT, 2, "pic-elcr" },
		{ I8254_PORT, 4, "pit" },
		{ I8254_SPEAKER_PORT, 1, "pit-speaker" },
	};
	int err;

	for (unsigned int i = 0; i < ARRAY_SIZE(pio); i++) {
		err = machine_register_pio(m, pio[i].port, pio[i].len,
					   port_io, ic, pio[i].name);
		if (err) {
			pr_err("irqchip: cannot register ports 0x%x-0x%x: %s",
			       pio[i].port, pio[i].port + pio[i].len - 1,
			       strerror(-err));
			return err;
		}
	}
	err = machine_register_mmio(m, IOAPIC_BASE, IOAPIC_SIZE, ioapic_io, ic,
				    "ioapic");
	if (err)
		pr_err("irqchip: cannot register the I/O APIC at 0x%llx: %s",
		       (unsigned long long)IOAPIC_BASE, strerror(-err));
	return err;
}

int x86_irqchip_init(struct machine *m)
{
	struct irqchip *ic;
	int err;

	ic = calloc(1, sizeof(*ic));
	if (!ic)
		return -ENOMEM;
	ic->m = m;
	ic->pit_fd = -1;
	ic->pit_armed = -1;
	pthread_mutex_init(&ic->lock, NULL);
	pthread_mutex_init(&ic->routing_lock, NULL);
	ic->pic.intr = pic_intr;
	ic->pic.opaque = ic;
	i8259_reset(&ic->pic);
	ic->ioapic.deliver = ioapic_deliver;
	ic->ioapic.entry_changed = ioapic_changed;
	ic->ioapic.opaque = ic;
	/* The ID the MP table gives it: the one after the last CPU's. */
	ioapic_reset(&ic->ioapic, (uint8_t)x86_ncpus(m));
	/* No clock callback: the model reads CLOCK_MONOTONIC, the timerfd's. */
	ic->pit.irq0 = pit_irq0;
	ic->pit.opaque = ic;
	i8254_reset(&ic->pit);
	m->irqchip = ic;

	/* KVM starts the split irqchip with an empty routing table. */
	if ((err = kvm_create_split_irqchip(m->kvm, IOAPIC_PINS)) ||
	    (err = register_all(m, ic)))
		return err;
	ic->pit_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (ic->pit_fd < 0 || machine_watch_fd(m, ic->pit_fd, pit_timer, ic)) {
		pr_err("irqchip: no timer for the PIT: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

void x86_irqchip_exit(struct machine *m)
{
	struct irqchip *ic = m->irqchip;

	if (!ic)
		return;
	if (ic->pit_fd >= 0) {
		machine_unwatch_fd(m, ic->pit_fd);
		close(ic->pit_fd);
	}
	free(ic->extra);
	pthread_mutex_destroy(&ic->lock);
	pthread_mutex_destroy(&ic->routing_lock);
	free(ic);
	m->irqchip = NULL;
}
