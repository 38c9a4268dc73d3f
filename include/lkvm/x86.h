/* SPDX-License-Identifier: GPL-2.0 */
/*
 * x86 boot: where lkvm puts the boot structures in guest memory, the boot
 * state that arch_load() hands to arch_setup_vcpu(), and the loaders and
 * table builders of arch/x86/, which the unit tests call directly (they
 * work on struct machine without /dev/kvm).
 */
#ifndef LKVM_X86_H
#define LKVM_X86_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct machine;

/*
 * Guest-physical layout below 1 MiB. Everything lkvm writes for a kernel
 * lives here, below the 1 MiB mark where kernels are loaded, and out of
 * the way of a flat binary (0x10000-0x9ffff), which gets only the GDT.
 *
 *   0x00400  BIOS data area: EBDA segment and base memory size
 *   0x01000  GDT
 *   0x02000  PVH start info, module list, "dtb" string, memory map
 *   0x03000  PML4, 0x04000 PDPT, 0x05000-0x08fff four page directories:
 *            0-4 GiB identity mapped with 2 MiB pages
 *   0x09000  zero page (struct boot_params)
 *   0x0f000  top of the boot stack (0x0a000-0x0efff is left free)
 *   0x10000  flat binaries
 *   0x20000  command line, at most 64 KiB
 *   0x30000  setup_data header and device tree, at most 384 KiB
 *   0x9fc00  EBDA (1 KiB, reserved in e820)
 *   0xf0000  MP floating pointer and configuration table (reserved)
 */
#define X86_BDA_EBDA_SEG	0x40e
#define X86_BDA_BASE_KIB	0x413
#define X86_GDT_ADDR		0x1000ull
#define X86_START_INFO_ADDR	0x2000ull
#define X86_PML4_ADDR		0x3000ull
#define X86_PDPT_ADDR		0x4000ull
#define X86_PD_ADDR		0x5000ull
#define X86_ZERO_PAGE_ADDR	0x9000ull
#define X86_BOOT_STACK_TOP	0xf000ull
#define X86_FLAT_ADDR		0x10000ull
#define X86_CMDLINE_ADDR	0x20000ull
#define X86_CMDLINE_MAX		0x10000ull	/* with the NUL */
#define X86_FDT_ADDR		0x30000ull
#define X86_FDT_MAX		0x60000ull	/* with setup_data header */
#define X86_EBDA_ADDR		0x9fc00ull
#define X86_VGA_ADDR		0xa0000ull
#define X86_BIOS_ADDR		0xf0000ull
#define X86_MPTABLE_ADDR	X86_BIOS_ADDR
#define X86_HIGH_ADDR		0x100000ull	/* 1 MiB */

/* Flat binaries: kvmtool's real-mode convention. */
#define X86_FLAT_SEG		0x1000
#define X86_FLAT_SP		0x8000
#define X86_FLAT_MAX		(X86_VGA_ADDR - X86_FLAT_ADDR)

/* GDT selectors of the boot GDT. */
#define X86_SEL_CODE32		0x08
#define X86_SEL_CODE64		0x10	/* Linux's __BOOT_CS */
#define X86_SEL_DATA		0x18	/* Linux's __BOOT_DS */

/* The 32-bit PCI hole and what sits at its top (and the I/O APIC, at
 * IOAPIC_BASE with IOAPIC_PINS pins: lkvm/ioapic.h). */
#define X86_PCI_HOLE_START	0xc0000000ull
#define X86_4GIB		0x100000000ull
#define X86_LAPIC_ADDR		0xfee00000u

/* Firmware images. */
#define X86_FW_MAX		(16ull << 20)
#define X86_FW_ALIGN		(64ull << 10)
#define X86_FW_LOW_MAX		(128ull << 10)	/* copied below 1M */

/* e820 types (also the PVH memory map types). */
enum {
	E820_RAM = 1,
	E820_RESERVED = 2,
	E820_ACPI = 3,
	E820_NVS = 4,
	E820_UNUSABLE = 5,
};

struct x86_e820 {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
};

#define X86_E820_MAX 128	/* what the zero page holds */

/* How the boot vCPU starts. */
enum x86_entry {
	X86_ENTRY_RESET,	/* architectural reset state (firmware) */
	X86_ENTRY_REAL,		/* real mode at seg:ip (flat binary) */
	X86_ENTRY_PROT32,	/* 32-bit protected mode, paging off (PVH) */
	X86_ENTRY_LONG64,	/* 64-bit mode, identity paging (Linux) */
};

/*
 * What arch_load() leaves in m->boot for arch_setup_vcpu(). Plain data:
 * free(m->boot) releases it.
 */
struct x86_boot {
	enum x86_entry entry;
	uint64_t rip;
	uint64_t rsp;
	uint64_t rsi;		/* zero page (Linux 64-bit entry) */
	uint64_t rbx;		/* hvm_start_info (PVH) */
	uint16_t real_seg;	/* X86_ENTRY_REAL: CS = DS = ES = SS */
	const char *kind;	/* "bzImage", "PVH ELF"... for messages */

	/* Where things went, for messages and tests. */
	uint64_t kernel_start, kernel_end;
	uint64_t initrd_addr, initrd_size;
	uint64_t fdt_addr, fdt_size;
	uint64_t cmdline_addr;
	uint32_t cmdline_len;

	/* Firmware: the ROM's host mapping (munmap on exit). */
	void *rom;
	uint64_t rom_size;
};

/* A file handed to a loader: what it is for messages, and its bytes. */
struct x86_image {
	const char *what;	/* "kernel", "initrd", "firmware" */
	const char *path;	/* as the user named it */
	const void *data;
	size_t size;
};

/* Prints "lkvm: WHAT 'PATH': message" and returns -EINVAL. */
int x86_image_err(const struct x86_image *img, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ---- boot.c: shared pieces ---------------------------------------------- */

/* The end of RAM that starts at 0 (the first region). */
uint64_t x86_low_ram_end(struct machine *m);

/* Builds the e820 map from the machine's RAM regions. Returns the count. */
unsigned int x86_build_e820(struct machine *m, struct x86_e820 *e,
			    unsigned int max);

/*
 * The command line a kernel gets: for Linux, lkvm's defaults that params
 * does not set itself, then params; for anything else params as is.
 * Returns a malloc'd string.
 */
/* The same for a machine: adds what its devices tell Linux (virtio-mmio
 * devices) and picks the console. */
char *x86_machine_cmdline(struct machine *m, const char *params,
			  bool is_linux);
char *x86_kernel_cmdline(const char *params, bool is_linux,
			 bool virtio_console);

/*
 * Writes the GDT, the identity page tables for 0-4 GiB and the BIOS data
 * area words, and copies cmdline to X86_CMDLINE_ADDR (limit: the most the
 * kernel accepts, without the NUL). Prints and fails when it does not fit.
 */
int x86_write_boot_common(struct machine *m, const struct x86_image *k,
			  const char *cmdline, uint64_t cmdline_limit,
			  struct x86_boot *b);

/*
 * Reads and places the initrd: page aligned, as high as possible below
 * min(max_end, end of low RAM) and above min_addr. Fills b->initrd_*.
 */
int x86_place_initrd(struct machine *m, const struct x86_image *rd,
		     uint64_t min_addr, uint64_t max_end, struct x86_boot *b);

/*
 * Builds the device tree (with cmdline as bootargs) and copies it to
 * X86_FDT_ADDR + hdr_room; fills b->fdt_*. hdr_room leaves space for a
 * setup_data header in front of it.
 */
int x86_place_fdt(struct machine *m, const char *cmdline, uint64_t hdr_room,
		  struct x86_boot *b);

/* The number of vCPUs the tables describe. */
unsigned int x86_ncpus(const struct machine *m);

/* ---- bootparams.c: the Linux zero page ---------------------------------- */

/* Offsets in struct boot_params (Documentation/arch/x86/zero-page.rst). */
#define BP_EXT_RAMDISK_IMAGE	0x0c0
#define BP_EXT_RAMDISK_SIZE	0x0c4
#define BP_EXT_CMD_LINE_PTR	0x0c8
#define BP_E820_ENTRIES		0x1e8
#define BP_HDR			0x1f1
#define BP_E820_TABLE		0x2d0
#define BP_SIZE			0x1000

/* Offsets of the setup header, in the file and in the zero page alike. */
#define SH_SETUP_SECTS		0x1f1
#define SH_SYSSIZE		0x1f4
#define SH_VID_MODE		0x1fa
#define SH_BOOT_FLAG		0x1fe
#define SH_JUMP			0x200
#define SH_HEADER		0x202
#define SH_VERSION		0x206
#define SH_TYPE_OF_LOADER	0x210
#define SH_LOADFLAGS		0x211
#define SH_CODE32_START		0x214
#define SH_RAMDISK_IMAGE	0x218
#define SH_RAMDISK_SIZE		0x21c
#define SH_CMD_LINE_PTR		0x228
#define SH_INITRD_ADDR_MAX	0x22c
#define SH_KERNEL_ALIGNMENT	0x230
#define SH_RELOCATABLE		0x234
#define SH_XLOADFLAGS		0x236
#define SH_CMDLINE_SIZE		0x238
#define SH_HARDWARE_SUBARCH	0x23c
#define SH_SETUP_DATA		0x250
#define SH_PREF_ADDRESS		0x258
#define SH_INIT_SIZE		0x260
#define SH_END_MIN		0x26c	/* end of a 2.12 header */

#define BOOT_FLAG_MAGIC		0xaa55
#define HDRS_MAGIC		0x53726448	/* "HdrS" */
#define LOADED_HIGH		0x01
#define XLF_KERNEL_64		0x0001
#define SETUP_DTB		2
#define X86_SETUP_DATA_HDR	16	/* next, type, len */
/* The setup_data chain for Linux: one SETUP_RNG_SEED entry, placed where
 * PVH kernels get the device tree (Linux reserves it itself). */
#define X86_SETUP_DATA_ADDR	X86_FDT_ADDR
#define X86_RNG_SEED_LEN	32
#ifndef SETUP_RNG_SEED
#define SETUP_RNG_SEED		9
#endif

/*
 * Fills the zero page at X86_ZERO_PAGE_ADDR: setup (the kernel's own
 * setup header bytes, or NULL for a vmlinux), e820 map, command line,
 * initrd and setup_data chain from b.
 */
int x86_write_zero_page(struct machine *m, const uint8_t *setup,
			size_t setup_len, const struct x86_boot *b);

/* ---- bzimage.c ---------------------------------------------------------- */

struct x86_bzimage {
	uint16_t version;
	unsigned int setup_sects;
	size_t setup_len;	/* bytes before the protected-mode kernel */
	size_t hdr_end;		/* end of the setup header in the file */
	uint64_t payload_len;	/* protected-mode kernel in the file */
	uint64_t load_addr;	/* where the protected-mode kernel goes */
	uint64_t init_size;	/* memory it needs from load_addr */
	uint32_t initrd_addr_max;
	uint32_t cmdline_size;
	bool relocatable;
};

/* True when the image carries a Linux setup header ("HdrS"). */
bool x86_is_bzimage(const void *data, size_t size);

/* Validates the setup header. Prints and returns -EINVAL when bad. */
int x86_bzimage_parse(const struct x86_image *k, struct x86_bzimage *bz);

int x86_load_bzimage(struct machine *m, const struct x86_image *k,
		     const struct x86_image *initrd, const char *params,
		     struct x86_boot *b);

/* ---- elf.c -------------------------------------------------------------- */

#define ELF_MAX_SEGMENTS 64

struct x86_elf_segment {
	uint64_t paddr;
	uint64_t vaddr;
	uint64_t offset;
	uint64_t filesz;
	uint64_t memsz;
};

struct x86_elf {
	uint64_t entry;		/* e_entry */
	bool has_pvh;
	uint32_t pvh_entry;	/* XEN_ELFNOTE_PHYS32_ENTRY */
	bool is_linux;		/* carries a "Linux" ELF note */
	unsigned int nseg;
	struct x86_elf_segment seg[ELF_MAX_SEGMENTS];
	uint64_t start, end;	/* lowest and highest loaded address */
};

bool x86_is_elf(const void *data, size_t size);

/*
 * Validates an ELF64 x86-64 executable and its loadable segments against
 * the file and against guest RAM (ram_end: end of RAM starting at 0).
 */
int x86_elf_parse(const struct x86_image *k, uint64_t ram_end,
		  struct x86_elf *elf);

int x86_load_elf(struct machine *m, const struct x86_image *k,
		 const struct x86_image *initrd, const char *params,
		 struct x86_boot *b);

/* ---- pvh.c: struct hvm_start_info (xen/include/public/arch-x86/hvm) ---- */

#define PVH_MAGIC		0x336ec578
#define PVH_VERSION		1
#define PVH_START_INFO_SIZE	56
#define PVH_MODLIST_ADDR	(X86_START_INFO_ADDR + 0x40)
#define PVH_MODULE_SIZE		32
#define PVH_NR_MODULES		2
#define PVH_DTB_NAME_ADDR	(X86_START_INFO_ADDR + 0x80)
#define PVH_MEMMAP_ADDR		(X86_START_INFO_ADDR + 0x100)
#define PVH_MEMMAP_ENTRY_SIZE	24
#define PVH_MEMMAP_MAX		((0x1000 - 0x100) / PVH_MEMMAP_ENTRY_SIZE)

/* Writes the start info, module list and memory map; b gives the rest. */
int x86_write_pvh_start_info(struct machine *m, const struct x86_boot *b);

/* ---- flat.c and firmware.c ---------------------------------------------- */

int x86_load_flat(struct machine *m, const struct x86_image *k,
		  struct x86_boot *b);
int x86_load_firmware(struct machine *m, const struct x86_image *fw,
		      struct x86_boot *b);

/* ---- mptable.c: Intel MultiProcessor Specification 1.4 ------------------ */

#define MP_BUS_PCI		0
#define MP_BUS_ISA		1

/* A PCI function's INTx line: pin 1 = INTA, 0 = none. */
struct x86_pci_irq {
	uint8_t slot, pin, gsi;
};

/*
 * Writes the floating pointer and the configuration table at
 * X86_MPTABLE_ADDR for ncpus processors (APIC IDs 0..ncpus-1), the I/O
 * APIC (ID ncpus), ISA and PCI interrupt routing.
 */
int x86_build_mptable(struct machine *m, unsigned int ncpus,
		      const struct x86_pci_irq *pci, unsigned int npci);
/* The same for the devices on the machine's PCI bus. */
int x86_write_mptable(struct machine *m, unsigned int ncpus);

/* ---- vm.c ---------------------------------------------------------------- */

/* Where the three TSS pages go; the identity-map page is right below. */
uint64_t x86_tss_addr(const struct machine *m);
#define X86_IDENTITY_MAP_OFFSET 0x1000ull

struct kvm_irq_routing_entry;

/*
 * lkvm's own PIC, I/O APIC and PIT on KVM's split irqchip (irqchip.c):
 * set-up (sets m->irqchip), teardown, and the routing table while they
 * are in use (x86_set_gsi_routing goes there).
 */
int x86_irqchip_init(struct machine *m);
void x86_irqchip_exit(struct machine *m);
int x86_irqchip_set_routing(struct machine *m,
			    const struct kvm_irq_routing_entry *extra,
			    unsigned int nextra);

/*
 * Installs lkvm's GSI routing (ISA IRQs to the 8259s and the I/O APIC,
 * the timer on pin 2, GSIs 16-23 to I/O APIC pins) plus extra entries
 * (MSI routes for irqfd). KVM replaces the whole table on every call.
 * With lkvm's own irqchip: its level pins' routes plus extra.
 */
int x86_set_gsi_routing(struct machine *m,
			const struct kvm_irq_routing_entry *extra,
			unsigned int nextra);
/* KVM_SET_GSI_ROUTING with pins[] then extra[], the whole table. */
int x86_submit_routes(struct machine *m,
		      const struct kvm_irq_routing_entry *pins, unsigned int npins,
		      const struct kvm_irq_routing_entry *extra,
		      unsigned int nextra);

/* ---- cpu.c --------------------------------------------------------------- */

struct kvm_cpuid2;

/*
 * vCPU id's CPUID table (malloc'd) from KVM's supported one: one package
 * of ncpus single-threaded cores, APIC ID = id, in leaves 1, 4, 0xb, 0x1f
 * and AMD's 0x80000008, 0x8000001d, 0x8000001e.
 */
struct kvm_cpuid2 *x86_vcpu_cpuid(const struct kvm_cpuid2 *sup,
				  unsigned int id, unsigned int ncpus);

/* ---- pagewalk.c ---------------------------------------------------------- */

struct x86_paging {
	uint64_t cr0, cr3, cr4, efer;
};

/*
 * Linear to guest-physical through the tables in guest memory: no paging,
 * 32-bit (4 KiB and 4 MiB pages), PAE, 4- and 5-level long mode (2 MiB and
 * 1 GiB pages). -EFAULT when not present or a table is outside RAM.
 */
/* One table entry the walk read, for callers that show the walk. */
struct x86_walk_step {
	const char *name;	/* "PML4E", "PDPTE", "PDE", "PTE"... */
	unsigned int index;	/* the entry's index in its table */
	uint64_t addr;		/* guest-physical address of the entry */
	unsigned int size;	/* 4 or 8 bytes */
	uint64_t entry;		/* its value, when readable */
	bool readable;		/* false: the entry lies outside RAM */
	unsigned int page_shift; /* it maps a page of 1 << shift bytes; 0 */
};
typedef void (*x86_walk_fn)(void *ctx, const struct x86_walk_step *step);

/* x86_translate, calling fn (when not NULL) for each level it reads. */
int x86_translate_walk(struct machine *m, const struct x86_paging *p,
		       uint64_t gva, uint64_t *gpa, x86_walk_fn fn, void *ctx);
int x86_translate(struct machine *m, const struct x86_paging *p,
		  uint64_t gva, uint64_t *gpa);

#endif
