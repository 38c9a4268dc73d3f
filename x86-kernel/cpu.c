/* Descriptor tables, interrupt dispatch, and the interrupt controllers:
 * 8259 PICs (remapped and masked), local APIC, I/O APIC. */
#include "kernel.h"

#define MSR_APIC_BASE 0x1b
#define APIC_BASE_ENABLE (1u << 11)
#define APIC_BASE_X2APIC (1u << 10)

#define LAPIC_ID 0x20
#define LAPIC_TPR 0x80
#define LAPIC_EOI 0xb0
#define LAPIC_SVR 0xf0
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_LVT_LINT1 0x360
#define LVT_MASKED (1u << 16)

struct idt_entry {
	uint16_t off_lo, sel;
	uint8_t ist, type;
	uint16_t off_mid;
	uint32_t off_hi, zero;
} __attribute__((packed));

static struct idt_entry idt[256] __attribute__((aligned(16)));
struct {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed)) idt_ptr;

extern const uint64_t isr_table[65];

uint64_t lapic_base = 0xfee00000;
volatile uint64_t unexpected_irqs;
volatile uint64_t pic_irq0_seen;
volatile uint64_t msi_irqs;
bool (*volatile irq_hook)(uint64_t vector);

static void set_gate_type(int vec, uint64_t handler, uint8_t type)
{
	idt[vec].off_lo = (uint16_t)handler;
	idt[vec].sel = 0x08;
	idt[vec].ist = 0;
	idt[vec].type = type;
	idt[vec].off_mid = (uint16_t)(handler >> 16);
	idt[vec].off_hi = (uint32_t)(handler >> 32);
	idt[vec].zero = 0;
}

static void set_gate(int vec, uint64_t handler)
{
	set_gate_type(vec, handler, 0x8e); /* present, DPL 0, 64-bit interrupt gate */
}

void idt_init(void)
{
	for (int v = 0; v < 64; v++)
		set_gate(v, isr_table[v]);
	set_gate(VEC_SPURIOUS, isr_table[64]);
	idt_ptr.limit = sizeof(idt) - 1;
	idt_ptr.base = (uint64_t)(uintptr_t)idt;
	__asm__ volatile("lidt %0" : : "m"(idt_ptr));
}

uint32_t lapic_read(uint32_t reg)
{
	return mmio_read32(lapic_base + reg);
}

void lapic_write(uint32_t reg, uint32_t v)
{
	mmio_write32(lapic_base + reg, v);
}

uint32_t lapic_id(void)
{
	return lapic_read(LAPIC_ID) >> 24;
}

static const char *const exc_names[32] = {
	"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM",
	"#DF", "CSO", "#TS", "#NP", "#SS", "#GP", "#PF", "15",
	"#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "22", "23",
	"24", "25", "26", "27", "#HV", "#VC", "#SX", "31",
};

void isr_dispatch(struct irq_frame *f)
{
	if (f->vector < 32) {
		if (user_trap(f))
			return;
		uint64_t cr2;
		__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
		kprintf("Bail out! exception %s (vector %lu) error 0x%lx at rip 0x%lx, "
			"cr2 0x%lx, rsp 0x%lx, APIC ID %u\n",
			exc_names[f->vector], f->vector, f->error, f->rip, cr2,
			f->rsp, lapic_id());
		fatal_exit();
	}
	if (f->vector == VEC_SPURIOUS)
		return; /* no EOI for the spurious vector */
	/* A check (irq.c) that takes over vectors; it sends their EOIs. */
	if (irq_hook && irq_hook(f->vector))
		return;
	if (f->vector >= VEC_PIC_BASE && f->vector < VEC_PIC_BASE + 16) {
		/* The 8259s are masked; only spurious IRQ7/IRQ15 may show up. */
		if (f->vector == VEC_PIC_BASE)
			pic_irq0_seen++;
		else if (f->vector != VEC_PIC_BASE + 7 && f->vector != VEC_PIC_BASE + 15)
			unexpected_irqs++;
		if (f->vector != VEC_PIC_BASE + 7 && f->vector != VEC_PIC_BASE + 15) {
			if (f->vector >= VEC_PIC_BASE + 8)
				outb(0xa0, 0x20);
			outb(0x20, 0x20);
		}
		return;
	}
	if (f->vector == VEC_ISA_BASE + 0)
		timer_irq();
	else if (f->vector == VEC_ISA_BASE + 4)
		serial_irq();
	else if (f->vector == VEC_MSI)
		msi_irqs++;
	else
		unexpected_irqs++;
	lapic_write(LAPIC_EOI, 0);
}

/* Initialise both 8259s (ICW1-4): vectors VEC_PIC_BASE and VEC_PIC_BASE +
 * 8, the slave on IRQ2, then the masks. */
void pic_program(uint8_t master_mask, uint8_t slave_mask)
{
	outb(0x20, 0x11); /* ICW1: edge, cascade, ICW4 follows */
	outb(0xa0, 0x11);
	outb(0x21, VEC_PIC_BASE);
	outb(0xa1, VEC_PIC_BASE + 8);
	outb(0x21, 0x04); /* slave on IRQ2 */
	outb(0xa1, 0x02);
	outb(0x21, 0x01); /* 8086 mode */
	outb(0xa1, 0x01);
	outb(0x21, master_mask);
	outb(0xa1, slave_mask);
}

/* Remap the 8259s away from the exception vectors and mask every input:
 * all device interrupts go through the I/O APIC. */
static void pic_disable(void)
{
	pic_program(0xff, 0xff);
}

void ioapic_write(uint32_t reg, uint32_t v)
{
	mmio_write32(M.ioapic_addr, reg);
	mmio_write32(M.ioapic_addr + 0x10, v);
}

uint32_t ioapic_read(uint32_t reg)
{
	mmio_write32(M.ioapic_addr, reg);
	return mmio_read32(M.ioapic_addr + 0x10);
}

/* ISA IRQs are edge triggered, active high; fixed delivery, physical
 * destination: the BSP. */
void ioapic_route(int isa_irq, bool enable)
{
	int pin = M.isa_pin[isa_irq];
	uint32_t lo = (uint32_t)(VEC_ISA_BASE + isa_irq);
	if (!enable)
		lo |= LVT_MASKED;
	ioapic_write(0x11 + 2 * pin, lapic_id() << 24);
	ioapic_write(0x10 + 2 * pin, lo);
}

void irq_init(void)
{
	pic_disable();

	uint64_t base = rdmsr(MSR_APIC_BASE);
	lapic_base = base & 0xfffff000ull;
	if (!(base & APIC_BASE_ENABLE) || (base & APIC_BASE_X2APIC) ||
	    !phys_low(lapic_base, 4096))
		kprintf("# warning: IA32_APIC_BASE 0x%lx is not an enabled xAPIC\n",
			base);
	lapic_write(LAPIC_TPR, 0);
	lapic_write(LAPIC_SVR, 0x100 | VEC_SPURIOUS);
	lapic_write(LAPIC_LVT_LINT0, LVT_MASKED | 0x700);
	lapic_write(LAPIC_LVT_LINT1, 0x400);
	lapic_write(LAPIC_LVT_TIMER, LVT_MASKED);

	uint32_t ver = ioapic_read(1);
	uint32_t id = ioapic_read(0);
	int maxpin = (int)((ver >> 16) & 0xff);
	kprintf("# ioapic: at 0x%x, ID %u, version 0x%x, %d pins; "
		"ISA IRQ0 -> pin %d, IRQ4 -> pin %d (%s)\n",
		M.ioapic_addr, (id >> 24) & 0xf, ver & 0xff, maxpin + 1,
		M.isa_pin[0], M.isa_pin[4], M.irq_source);
	/* The MP specification has firmware program the ID register to the
	 * ID its table gives; an OS matching interrupt entries by ID relies
	 * on that. Not a check of its own, but worth saying. */
	if (M.mp.found && M.mp.have_ioapic && M.mp.ioapic_id != ((id >> 24) & 0xf))
		kprintf("# warning: the MP table gives I/O APIC ID %u, its ID register "
			"says %u\n", M.mp.ioapic_id, (id >> 24) & 0xf);
	ioapic_route(0, true);
	pit_start();
	__asm__ volatile("sti");
}
