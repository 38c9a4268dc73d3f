/* Shared declarations of the lkvm x86 test kernel. */
#ifndef KERNEL_H
#define KERNEL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MAX_CPUS 64
#define MAX_RANGES 32
#define CMDLINE_MAX 4096

#define COM1 0x3f8
#define DEBUG_EXIT_PORT 0xf4

/* Interrupt vectors: ISA IRQ n arrives through the I/O APIC at 0x20 + n;
 * the (masked) 8259s are moved to 0x30-0x3f so a stray 8259 interrupt
 * cannot pose as an exception. */
#define VEC_ISA_BASE 0x20
#define VEC_PIC_BASE 0x30
#define VEC_SPURIOUS 0xff
/* MSI-X of the blkbench check: the vector of ISA IRQ15, which the I/O
 * APIC never routes here. */
#define VEC_MSI (VEC_ISA_BASE + 15)

#define PIT_HZ 100

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

struct range {
	uint64_t base, size;
};

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline void outw(uint16_t port, uint16_t v)
{
	__asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint16_t inw(uint16_t port)
{
	uint16_t v;
	__asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline void outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint32_t inl(uint16_t port)
{
	uint32_t v;
	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((uint64_t)hi << 32) | lo;
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

static inline void cpu_relax(void)
{
	__asm__ volatile("pause" ::: "memory");
}

static inline void mmio_write32(uint64_t addr, uint32_t v)
{
	*(volatile uint32_t *)(uintptr_t)addr = v;
}

static inline uint32_t mmio_read32(uint64_t addr)
{
	return *(volatile uint32_t *)(uintptr_t)addr;
}

static inline void mmio_write16(uint64_t addr, uint16_t v)
{
	*(volatile uint16_t *)(uintptr_t)addr = v;
}

static inline uint16_t mmio_read16(uint64_t addr)
{
	return *(volatile uint16_t *)(uintptr_t)addr;
}

static inline void mmio_write8(uint64_t addr, uint8_t v)
{
	*(volatile uint8_t *)(uintptr_t)addr = v;
}

static inline uint8_t mmio_read8(uint64_t addr)
{
	return *(volatile uint8_t *)(uintptr_t)addr;
}

/* Stores to ring memory become visible before what follows (a ring index,
 * a notification); on x86 only the compiler and the store buffer need it. */
static inline void mb(void)
{
	__asm__ volatile("mfence" ::: "memory");
}

static inline void barrier(void)
{
	__asm__ volatile("" ::: "memory");
}

/* Everything below 4 GiB is identity mapped by the boot page tables. */
static inline bool phys_low(uint64_t pa, uint64_t len)
{
	return pa + len >= pa && pa + len <= (1ull << 32);
}

static inline const void *phys_ptr(uint64_t pa)
{
	return (const void *)(uintptr_t)pa;
}

/* A read of a fixed low address (the BIOS data area); through asm, since
 * the compiler treats small constant pointers as out of bounds. */
static inline uint16_t phys_read16(uint64_t pa)
{
	uint16_t v;
	__asm__ volatile("movw (%1), %0" : "=r"(v) : "r"(pa) : "memory");
	return v;
}

/* lib.c */
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
size_t strnlen(const char *s, size_t max);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
bool starts_with(const char *s, const char *prefix);
bool parse_u64(const char *s, size_t len, uint64_t *out);
size_t next_word(const char **s, const char **word);
int kvsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int ksnprintf(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void console_write(const char *s, size_t n);
void ranges_add(struct range *r, int *n, int max, uint64_t base, uint64_t size,
		bool *overflow);
uint64_t ranges_total(const struct range *r, int n);
uint64_t ranges_top(const struct range *r, int n);
bool ranges_cover(const struct range *r, int n, uint64_t base, uint64_t len);

/* serial.c */
void serial_init(void);
void serial_putc(uint8_t c);
void serial_irq(void);
int check_serial(char *msg, size_t n);
int check_serial_input(char *msg, size_t n);

/* cpu.c: descriptor tables, interrupts, controllers */
struct irq_frame {
	uint64_t r11, r10, r9, r8, rdi, rsi, rdx, rcx, rax;
	uint64_t vector, error;
	uint64_t rip, cs, rflags, rsp, ss;
};
void idt_init(void);
void irq_init(void);
void ioapic_route(int isa_irq, bool enable);
uint32_t lapic_read(uint32_t reg);
void lapic_write(uint32_t reg, uint32_t v);
uint32_t lapic_id(void);
extern volatile uint64_t unexpected_irqs;
extern volatile uint64_t pic_irq0_seen;
extern volatile uint64_t msi_irqs;
extern uint64_t lapic_base;
void pic_program(uint8_t master_mask, uint8_t slave_mask);
void ioapic_write(uint32_t reg, uint32_t v);
uint32_t ioapic_read(uint32_t reg);
/* When set, every interrupt (not exceptions, not the spurious vector) is
 * offered here first: true means taken, EOIs sent (irq.c). */
extern bool (*volatile irq_hook)(uint64_t vector);

/* irq.c: the 8259, PIT channel 2 and I/O APIC register checks */
int check_pic(char *msg, size_t n);
int check_pit2(char *msg, size_t n);
int check_ioapic(char *msg, size_t n);

/* timer.c */
extern volatile uint64_t ticks;
void timer_irq(void);
void pit_start(void);
bool timer_alive(void);
void wait_tick(void);
void delay_ticks(unsigned n);
int check_pit(char *msg, size_t n);

/* rtc.c */
struct rtc_edge {
	bool valid;
	uint64_t ticks;
	uint8_t sec;
};
extern struct rtc_edge rtc_last_edge;
bool rtc_wait_edge(unsigned max_ticks, struct rtc_edge *e);
int check_rtc(char *msg, size_t n);

/* smp.c */
int check_smp(char *msg, size_t n);

/* fdt.c */
#define FDT_MAX_VIRTIO 16
struct fdt_info {
	bool valid;
	char error[96];
	uint32_t totalsize, version, last_comp, boot_cpuid;
	int nodes, nrsv;
	int nmem;
	bool mem_overflow;
	struct range mem[MAX_RANGES];
	int ncpus;
	bool cpus_overflow;
	uint32_t cpu_ids[MAX_CPUS];
	bool chosen;
	const char *bootargs; /* NUL-terminated inside the blob, or NULL */
	int nserial;
	struct fdt_serial {
		bool has_reg, io; /* io: I/O space of an ISA bus */
		uint64_t addr;
		int irq; /* first cell of interrupts, or -1 */
	} serial[8];
	int nvirtio; /* nodes compatible with "virtio,mmio" */
	struct fdt_virtio {
		uint64_t addr, size;
		int irq; /* first cell of interrupts, or -1 */
	} virtio[FDT_MAX_VIRTIO];
};
void fdt_parse(const uint8_t *blob, uint64_t avail, struct fdt_info *f);

/* platform.c: what the boot protocol and the firmware tables describe */
struct mp_info {
	bool found;
	char error[80];
	uint32_t fp_addr, table_addr;
	int ncpus;
	uint32_t cpu_ids[MAX_CPUS];
	int bsp_id;
	bool have_ioapic;
	uint8_t ioapic_id;
	uint32_t ioapic_addr;
	int8_t isa_pin[16];
};

struct madt_info {
	bool found;
	char error[80];
	uint64_t rsdp, madt;
	int ncpus;
	uint32_t cpu_ids[MAX_CPUS];
	bool have_ioapic;
	uint32_t ioapic_addr, ioapic_gsi_base;
	int8_t isa_pin[16];
};

struct machine {
	/* PVH start info */
	uint32_t start_info;
	bool pvh_ok;
	char pvh_error[80];
	uint32_t pvh_version;
	uint64_t rsdp;
	/* command line */
	uint64_t cmdline_pa;
	bool cmdline_ok;
	char cmdline_error[96];
	size_t cmdline_len;
	char cmdline[CMDLINE_MAX];
	/* PVH memory map: RAM and all described ranges */
	bool memmap;
	int memmap_entries;
	int nram, nall;
	bool ram_overflow;
	struct range ram[MAX_RANGES], all[MAX_RANGES];
	/* boot structures a trampoline must not overwrite */
	int nused;
	struct range used[MAX_RANGES];
	/* device tree module */
	bool dtb_present;
	char dtb_error[96];
	uint64_t dtb_pa, dtb_size;
	struct fdt_info fdt;
	/* firmware tables */
	struct mp_info mp;
	struct madt_info madt;
	/* the conclusions */
	const char *cpu_source;
	int ncpus;
	uint32_t cpu_ids[MAX_CPUS];
	const char *irq_source;
	int8_t isa_pin[16];
	uint32_t ioapic_addr;
	/* parameters */
	bool have_expect_mem, have_expect_cpus, have_hosttime;
	bool bad_expect_mem, bad_expect_cpus, bad_hosttime;
	uint64_t expect_mem, expect_cpus, hosttime;
};
extern struct machine M;

void boot_info_parse(uint32_t start_info_pa);
uint64_t palloc(uint64_t size, uint64_t align);
uint64_t ram_top(void);
void *ioremap(uint64_t pa, uint64_t len);
void platform_discover(void);
void mp_scan(struct mp_info *mp);
void madt_scan(struct madt_info *madt, uint64_t rsdp_hint);

/* checks.c */
int check_mem(char *msg, size_t n);
int check_cmdline(char *msg, size_t n);
int check_dtb(char *msg, size_t n);

/* user.c: ring 3 */
struct sha256 {
	uint32_t h[8];
	uint64_t len;
	uint8_t buf[64];
	uint32_t nbuf;
};
void user_init(void);
uint64_t run_user(uint64_t (*fn)(void *), void *arg);
struct irq_frame;
bool user_trap(struct irq_frame *f);
void sha256_init(struct sha256 *c);
void sha256_update(struct sha256 *c, const void *p, uint64_t n);
void sha256_final(struct sha256 *c, uint8_t out[32]);
void sha256_hex(const uint8_t d[32], char out[65]);
bool sha256_selftest(void);
void pattern_fill(void *buf, uint64_t bytes, uint64_t sector, uint64_t seed);
uint64_t mem_diff(const void *x, const void *y, uint64_t bytes);
void zero(void *p, uint64_t n);
void memcpy_user(void *dst, const void *src, uint64_t n);


/* debug.c: what debuggers of a running guest look for */
#define HIGH_MAP_VA ((uint64_t)0xffff800000000000ull)
void magic_init(void);
int check_heartbeat(char *msg, size_t n);
int check_introspect(char *msg, size_t n);
int check_introspect_bench(char *msg, size_t n);

/* virtio.c and friends */
void virtio_discover(void);
void virtio_describe(void);
bool virtio_present(int type);
int check_virtio_console(char *msg, size_t n);
int check_virtio_console_input(char *msg, size_t n);
int check_virtio_rng(char *msg, size_t n);
int check_virtio_blk(char *msg, size_t n);
int check_virtio_9p(char *msg, size_t n);
int check_p9bench(char *msg, size_t n);
int check_virtio_hostile(char *msg, size_t n);
int check_blkbench(char *msg, size_t n);
int check_virtio_soak(char *msg, size_t n);
int check_virtio_net(char *msg, size_t n);
int check_virtio_net_dhcp(char *msg, size_t n);
int check_virtio_net_udp(char *msg, size_t n);
int check_virtio_net_serve(char *msg, size_t n);
int check_virtio_net_hostile(char *msg, size_t n);
int check_virtio_net_flood(char *msg, size_t n);
int check_virtio_net_mq(char *msg, size_t n);
int check_virtio_net_csum(char *msg, size_t n);
/* For virtio-soak (soak.c): a UDP echo each round through the first
 * virtio-net device (net.c). */
int net_soak_open(char *peer, size_t pn, char *msg, size_t n);
int net_soak_echo(uint64_t r, uint64_t *sent, char *msg, size_t n);
int check_virtio_balloon(char *msg, size_t n);
int check_virtio_vsock(char *msg, size_t n);
int check_virtio_blk_writes(char *msg, size_t n);

/* main.c */
enum { PASS, FAIL, SKIP };
extern int failures;
void fatal_exit(void) __attribute__((noreturn));

#endif
