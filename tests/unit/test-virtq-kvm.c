// SPDX-License-Identifier: GPL-2.0
/*
 * Virtio interrupts through a real KVM, with no guest code running: the
 * test drives a virtio-rng device the way a driver would (registers
 * through the buses, rings in guest RAM) and reads the vCPU's local APIC
 * to see that the interrupt arrived:
 * - MSI-X: an irqfd on a GSI routed to the vector's message
 *   (x86_set_gsi_routing with the MSI routes);
 * - INTx: KVM_IRQ_LINE on the device's GSI, through the I/O APIC pin the
 *   MP table names;
 * - virtio-mmio: an irqfd on the device's ISA IRQ, through the I/O APIC.
 * Each with the kernel's I/O APIC (--irqchip kernel) and with lkvm's own
 * on KVM's split irqchip (--irqchip split), where INTx and virtio-mmio
 * lines go through arch/x86/irqchip.c and its I/O APIC sends MSIs; there
 * the level-triggered INTx is also taken through the local APIC's EOI
 * (what KVM_EXIT_IOAPIC_EOI reports): delivered again while the line is
 * up, not once the driver has read the ISR.
 * Skipped without /dev/kvm.
 */
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lkvm/arch.h"
#include "lkvm/ioapic.h"
#include "lkvm/iobus.h"
#include "lkvm/machine.h"
#include "lkvm/virtio.h"
#include "tap.h"

#define QMEM 0x200000ull
#define BUF 0x300000ull
#define APIC_SVR 0xf0
#define APIC_IRR 0x200
#define APIC_TMR 0x180

static struct machine m;
static enum irqchip_kind mode;
static const char *mode_name;

static void *gp(uint64_t gpa)
{
	return guest_ptr(&m, gpa, 1);
}

static uint64_t rd(bool pio, uint64_t a, unsigned int len)
{
	uint64_t v = 0;

	iobus_access(pio ? m.pio : m.mmio, NULL, a, &v, len, false);
	return v;
}

static void wr(bool pio, uint64_t a, unsigned int len, uint64_t v)
{
	iobus_access(pio ? m.pio : m.mmio, NULL, a, &v, len, true);
}

static uint32_t cfg_rd(unsigned int slot, unsigned int reg, unsigned int len)
{
	uint32_t a = 0x80000000u | slot << 11 | (reg & 0xfc), v = 0;

	iobus_access(m.pio, NULL, 0xcf8, &a, 4, true);
	iobus_access(m.pio, NULL, 0xcfc + (reg & 3), &v, len, false);
	return v;
}

static void cfg_wr(unsigned int slot, unsigned int reg, unsigned int len,
		   uint32_t v)
{
	uint32_t a = 0x80000000u | slot << 11 | (reg & 0xfc);

	iobus_access(m.pio, NULL, 0xcf8, &a, 4, true);
	iobus_access(m.pio, NULL, 0xcfc + (reg & 3), &v, len, true);
}

static bool machine_up(const char *transport)
{
	struct virtio_machine *vm;

	memset(&m, 0, sizeof(m));
	m.cfg.ram_size = 64 << 20;
	m.cfg.ncpus = 1;
	m.cfg.rng = true;
	m.cfg.params = "tests=";
	m.cfg.irqchip_kind = mode;
	if (machine_setup_config(&m))
		return false;
	vm = virtio_machine(&m);
	vm->transport = transport;
	return machine_init(&m) == 0;
}

static bool apic_bit(unsigned int reg, uint8_t vector)
{
	struct kvm_lapic_state s;
	uint32_t w;

	if (kvm_get_lapic(m.vcpus[0].kvm, &s))
		return false;
	memcpy(&w, s.regs + reg + 0x10 * (vector / 32), 4);
	return w & (1u << (vector % 32));
}

static bool irr(uint8_t vector)
{
	return apic_bit(APIC_IRR, vector);
}

/* Takes vector off the local APIC's IRR, as if the CPU had taken it. */
static void irr_clear(uint8_t vector)
{
	struct kvm_lapic_state s;
	uint32_t w;
	char *p = s.regs + APIC_IRR + 0x10 * (vector / 32);

	kvm_get_lapic(m.vcpus[0].kvm, &s);
	memcpy(&w, p, 4);
	w &= ~(1u << (vector % 32));
	memcpy(p, &w, 4);
	kvm_set_lapic(m.vcpus[0].kvm, &s);
}

/* irqfd injects through a work queue for I/O APIC routes: wait a bit. */
static bool irr_wait(uint8_t vector)
{
	struct timespec ts = { 0, 1000000 };

	for (int i = 0; i < 1000; i++) {
		if (irr(vector))
			return true;
		nanosleep(&ts, NULL);
	}
	return false;
}

static void apic_on(void)
{
	struct kvm_lapic_state s;
	uint32_t svr;

	kvm_get_lapic(m.vcpus[0].kvm, &s);
	memcpy(&svr, s.regs + APIC_SVR, 4);
	svr |= 0x1ff;		/* software enable, spurious vector 0xff */
	memcpy(s.regs + APIC_SVR, &svr, 4);
	kvm_set_lapic(m.vcpus[0].kvm, &s);
}

/* Points I/O APIC pin at vector on CPU 0. */
static void ioapic_route(unsigned int pin, uint8_t vector, bool level)
{
	struct kvm_irqchip chip = { .chip_id = KVM_IRQCHIP_IOAPIC };

	if (m.irqchip) {	/* lkvm's own, through its registers */
		wr(false, IOAPIC_BASE + IOAPIC_REGSEL, 4, 0x11 + 2 * pin);
		wr(false, IOAPIC_BASE + IOAPIC_WINDOW, 4, 0);
		wr(false, IOAPIC_BASE + IOAPIC_REGSEL, 4, 0x10 + 2 * pin);
		wr(false, IOAPIC_BASE + IOAPIC_WINDOW, 4,
		   vector | (level ? IOAPIC_LEVEL : 0));
		return;
	}

	kvm_get_irqchip(m.kvm, &chip);
	chip.chip.ioapic.redirtbl[pin].bits = 0;
	chip.chip.ioapic.redirtbl[pin].fields.vector = vector;
	chip.chip.ioapic.redirtbl[pin].fields.trig_mode = level;
	chip.chip.ioapic.redirtbl[pin].fields.dest_id = 0;
	kvm_set_irqchip(m.kvm, &chip);
}

/* One rng request of 16 bytes; true when it was used. */
static uint16_t avail_idx;

static bool rng_request(void (*kick)(void), uint16_t size)
{
	struct virtq_desc d = { BUF, 16, VIRTQ_DESC_F_WRITE, 0 };
	struct virtq_avail *a = gp(QMEM + 16ull * size);
	struct virtq_used *u;
	struct timespec ts = { 0, 1000000 };

	memcpy(gp(QMEM), &d, sizeof(d));
	a->ring[avail_idx % size] = 0;
	__atomic_store_n(&a->idx, ++avail_idx, __ATOMIC_RELEASE);
	kick();
	u = gp((QMEM + 16ull * size + 6 + 2ull * size + 4095) & ~4095ull);
	for (int i = 0; i < 2000; i++) {
		if (__atomic_load_n(&u->idx, __ATOMIC_ACQUIRE) == avail_idx)
			return true;
		nanosleep(&ts, NULL);
	}
	return false;
}

static uint64_t common, notify, msix;
static unsigned int slot;

static void pci_kick(void)
{
	wr(false, notify, 2, 0);
}

#define CHECKM(cond, what)                                                 \
	do {                                                               \
		char what_[160];                                           \
		snprintf(what_, sizeof(what_), "%s: %s", mode_name, what); \
		CHECK(cond, what_);                                        \
	} while (0)

static void test_pci(void)
{
	unsigned int cap, msix_cap = 0, gsi;
	uint64_t bar4, isr = 0;

	avail_idx = 0;
	CHECKM(machine_up("pci") && !m.irqchip == (mode == IRQCHIP_KERNEL),
	       "pci: a machine with virtio-rng");
	apic_on();
	for (slot = 1; slot < 32; slot++)
		if (cfg_rd(slot, 0, 4) == 0x10051af4)
			break;
	bar4 = cfg_rd(slot, 0x20, 4) & ~0xfu;
	msix = cfg_rd(slot, 0x14, 4) & ~0xfu;
	for (cap = cfg_rd(slot, 0x34, 1); cap; cap = cfg_rd(slot, cap + 1, 1)) {
		if (cfg_rd(slot, cap, 1) == 0x11)
			msix_cap = cap;
		if (cfg_rd(slot, cap, 1) == 0x09 && cfg_rd(slot, cap + 3, 1) == 1)
			common = bar4 + cfg_rd(slot, cap + 8, 4);
		if (cfg_rd(slot, cap, 1) == 0x09 && cfg_rd(slot, cap + 3, 1) == 2)
			notify = bar4 + cfg_rd(slot, cap + 8, 4);
		if (cfg_rd(slot, cap, 1) == 0x09 && cfg_rd(slot, cap + 3, 1) == 3)
			isr = bar4 + cfg_rd(slot, cap + 8, 4);
	}
	gsi = cfg_rd(slot, 0x3c, 1);

	/* A modern driver: features, queue 0 (legacy layout at QMEM,
	 * which a modern driver may use too), DRIVER_OK. */
	wr(false, common + 0x14, 1, 0);
	wr(false, common + 0x14, 1, 3);
	wr(false, common + 0x08, 4, 1);
	wr(false, common + 0x0c, 4, 1);	/* VERSION_1 */
	wr(false, common + 0x14, 1, 0xb);
	wr(false, common + 0x16, 2, 0);
	wr(false, common + 0x20, 8, QMEM);
	wr(false, common + 0x28, 8, QMEM + 16 * 64);
	wr(false, common + 0x30, 8, (QMEM + 16 * 64 + 6 + 2 * 64 + 4095) &
					    ~4095ull);
	wr(false, common + 0x1c, 2, 1);
	wr(false, common + 0x14, 1, 0xf);

	/* INTx first: the I/O APIC pin the MP table gives (GSI = pin). */
	ioapic_route(gsi, 0x51, true);
	CHECKM(gsi >= 16 && gsi <= 23 && rng_request(pci_kick, 64),
	       "INTx: the request completes");
	CHECKM(irr_wait(0x51), "INTx: vector 0x51 pending in the local APIC");
	if (m.irqchip) {
		CHECKM(apic_bit(APIC_TMR, 0x51),
		       "INTx: the local APIC took it as level-triggered");
		irr_clear(0x51);
		arch_eoi(&m, NULL, 0x50);
		CHECKM(!irr(0x51), "INTx: another vector's EOI: not again");
		arch_eoi(&m, NULL, 0x51);
		CHECKM(irr(0x51), "INTx: EOI with the line still up: again");
		irr_clear(0x51);
		CHECKM(isr && rd(false, isr, 1) == 1,
		       "INTx: reading the ISR acknowledges it");
		arch_eoi(&m, NULL, 0x51);
		CHECKM(!irr(0x51), "INTx: EOI after the line fell: not again");
	}

	/* MSI-X: vector 0 to APIC 0, vector 0x41. */
	cfg_wr(slot, msix_cap + 2, 2, 0x8000);
	wr(false, msix, 4, 0xfee00000);
	wr(false, msix + 4, 4, 0);
	wr(false, msix + 8, 4, 0x41);
	wr(false, msix + 12, 4, 0);
	wr(false, common + 0x16, 2, 0);
	wr(false, common + 0x1a, 2, 0);
	CHECKM(!irr(0x41) && rng_request(pci_kick, 64),
	      "MSI-X: the request completes");
	CHECKM(irr_wait(0x41), "MSI-X: vector 0x41 pending (irqfd, MSI route)");

	/* The message changes while masked: the new one is routed. */
	wr(false, msix + 12, 4, 1);
	wr(false, msix + 8, 4, 0x42);
	CHECKM(rng_request(pci_kick, 64) && !irr(0x42) &&
		      rd(false, msix + 0x800, 4) == 1,
	      "MSI-X masked: nothing delivered, the pending bit set");
	wr(false, msix + 12, 4, 0);
	CHECKM(irr_wait(0x42) && rd(false, msix + 0x800, 4) == 0,
	      "MSI-X unmasked: the pending message goes to the new vector");
	machine_exit(&m);
}

static uint64_t mmio_base;

static void mmio_kick(void)
{
	wr(false, mmio_base + 0x50, 4, 0);
}

static void test_mmio(void)
{
	CHECKM(machine_up("mmio"), "mmio: a machine with virtio-rng");
	apic_on();
	mmio_base = 0xfeb00000;
	CHECKM(rd(false, mmio_base, 4) == 0x74726976, "mmio: the device is there");
	wr(false, mmio_base + 0x70, 4, 0);
	wr(false, mmio_base + 0x70, 4, 3);
	wr(false, mmio_base + 0x24, 4, 1);
	wr(false, mmio_base + 0x20, 4, 1);
	wr(false, mmio_base + 0x70, 4, 0xb);
	wr(false, mmio_base + 0x30, 4, 0);
	wr(false, mmio_base + 0x38, 4, 64);
	wr(false, mmio_base + 0x80, 4, QMEM);
	wr(false, mmio_base + 0x90, 4, QMEM + 16 * 64);
	wr(false, mmio_base + 0xa0, 4,
	   (QMEM + 16 * 64 + 6 + 2 * 64 + 4095) & ~4095ull);
	wr(false, mmio_base + 0x44, 4, 1);
	wr(false, mmio_base + 0x70, 4, 0xf);
	ioapic_route(5, 0x61, false);
	avail_idx = 0;
	CHECKM(rng_request(mmio_kick, 64), "mmio: the request completes");
	CHECKM(irr_wait(0x61), "mmio: IRQ 5 reaches vector 0x61");
	machine_exit(&m);
}

int main(void)
{
	int fd = open("/dev/kvm", O_RDWR);

	if (fd < 0) {
		printf("ok 1 # skip no /dev/kvm\n1..1\n");
		return 0;
	}
	close(fd);
	mode = IRQCHIP_KERNEL;
	mode_name = "kernel irqchip";
	test_pci();
	test_mmio();
	mode = IRQCHIP_SPLIT;
	mode_name = "split irqchip";
	test_pci();
	test_mmio();
	return tap_done();
}
