// SPDX-License-Identifier: GPL-2.0
/*
 * ELF kernels: an ELF64 x86-64 executable loaded by its program headers at
 * their physical addresses. With a PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY,
 * as Linux, QEMU, Firecracker and cloud-hypervisor use it) the kernel
 * starts there in 32-bit protected mode with an hvm_start_info (pvh.c);
 * otherwise at e_entry in 64-bit mode with a Linux zero page in RSI, as
 * Firecracker starts a vmlinux.
 */
#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lkvm/machine.h"
#include "lkvm/util.h"
#include "lkvm/fdt.h"
#include "lkvm/x86.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18

/*
 * Linux's COMMAND_LINE_SIZE on x86 is 2048 with the NUL; a vmlinux has no
 * setup header to say otherwise, and Linux would cut a longer line short
 * without a word.
 */
#define LINUX_CMDLINE_MAX 2047

bool x86_is_elf(const void *data, size_t size)
{
	return size >= SELFMAG && !memcmp(data, ELFMAG, SELFMAG);
}

/* Is [off, off + len) inside a buffer of size bytes? */
static bool in_file(uint64_t off, uint64_t len, size_t size)
{
	return off <= size && len <= size - off;
}

static bool note_name_is(const uint8_t *name, uint32_t namesz,
			 const char *want)
{
	return namesz == strlen(want) + 1 && !memcmp(name, want, namesz);
}

static int parse_notes(const struct x86_image *k, unsigned int idx,
		       const Elf64_Phdr *ph, struct x86_elf *elf)
{
	const uint8_t *p = (const uint8_t *)k->data + ph->p_offset;
	uint64_t off = 0, len = ph->p_filesz;
	/* 64-bit notes that ask for it are 8-byte aligned, the rest 4. */
	uint64_t al = ph->p_align == 8 ? 8 : 4;

	while (off < len) {
		uint32_t namesz, descsz, type;
		uint64_t name, desc;

		if (len - off < 12)
			return x86_image_err(k, "truncated ELF note in program "
					     "header %u", idx);
		memcpy(&namesz, p + off, 4);
		memcpy(&descsz, p + off + 4, 4);
		memcpy(&type, p + off + 8, 4);
		name = off + 12;
		desc = name + ALIGN_UP((uint64_t)namesz, al);
		if (desc > len || descsz > len - desc)
			return x86_image_err(k, "truncated ELF note in program "
					     "header %u", idx);
		if (note_name_is(p + name, namesz, "Xen") &&
		    type == XEN_ELFNOTE_PHYS32_ENTRY) {
			uint64_t entry = 0;

			if (descsz != 4 && descsz != 8)
				return x86_image_err(k, "damaged PVH entry note "
						     "(%u bytes)", descsz);
			memcpy(&entry, p + desc, descsz);
			if (entry >= X86_4GIB)
				return x86_image_err(k, "PVH entry 0x%llx is "
						     "above 4 GiB",
						     (unsigned long long)entry);
			elf->has_pvh = true;
			elf->pvh_entry = entry;
		} else if (note_name_is(p + name, namesz, "Linux")) {
			elf->is_linux = true;
		}
		off = desc + ALIGN_UP((uint64_t)descsz, al);
	}
	return 0;
}

static int add_segment(const struct x86_image *k, unsigned int idx,
		       const Elf64_Phdr *ph, uint64_t ram_end,
		       struct x86_elf *elf)
{
	struct x86_elf_segment *s;
	uint64_t end;

	if (ph->p_filesz > ph->p_memsz)
		return x86_image_err(k, "damaged ELF program header %u: file "
				     "size 0x%llx exceeds memory size 0x%llx",
				     idx, (unsigned long long)ph->p_filesz,
				     (unsigned long long)ph->p_memsz);
	if (!in_file(ph->p_offset, ph->p_filesz, k->size))
		return x86_image_err(k, "truncated: segment %u (0x%llx bytes "
				     "at offset 0x%llx) lies beyond the end "
				     "of the file (0x%zx bytes)", idx,
				     (unsigned long long)ph->p_filesz,
				     (unsigned long long)ph->p_offset,
				     k->size);
	if (!ph->p_memsz)
		return 0;
	end = ph->p_paddr + ph->p_memsz;
	if (end < ph->p_paddr)
		return x86_image_err(k, "damaged ELF program header %u: "
				     "segment wraps around the address space",
				     idx);
	if (ph->p_paddr < X86_HIGH_ADDR)
		return x86_image_err(k, "segment %u at 0x%llx overlaps the "
				     "first MiB, where lkvm puts the boot "
				     "tables", idx,
				     (unsigned long long)ph->p_paddr);
	if (end > ram_end)
		return x86_image_err(k, "segment %u (0x%llx-0x%llx) lies "
				     "outside guest RAM, which ends at 0x%llx "
				     "below 3 GiB; give the guest more memory "
				     "(-m)", idx,
				     (unsigned long long)ph->p_paddr,
				     (unsigned long long)end - 1,
				     (unsigned long long)ram_end);
	for (unsigned int i = 0; i < elf->nseg; i++) {
		const struct x86_elf_segment *o = &elf->seg[i];

		if (ph->p_paddr < o->paddr + o->memsz && o->paddr < end)
			return x86_image_err(k, "segments overlap: 0x%llx-"
					     "0x%llx and 0x%llx-0x%llx",
					     (unsigned long long)o->paddr,
					     (unsigned long long)(o->paddr +
								  o->memsz - 1),
					     (unsigned long long)ph->p_paddr,
					     (unsigned long long)end - 1);
	}
	if (elf->nseg >= ELF_MAX_SEGMENTS)
		return x86_image_err(k, "more than %d loadable segments",
				     ELF_MAX_SEGMENTS);
	s = &elf->seg[elf->nseg++];
	*s = (struct x86_elf_segment){ ph->p_paddr, ph->p_vaddr, ph->p_offset,
				       ph->p_filesz, ph->p_memsz };
	elf->start = elf->nseg == 1 ? ph->p_paddr : MIN(elf->start, ph->p_paddr);
	elf->end = MAX(elf->end, end);
	return 0;
}

/* e_entry as a physical address: vmlinux gives one; a kernel linked with
 * virtual addresses gets it translated through its segments. */
static bool entry_paddr(const struct x86_elf *elf, uint64_t entry,
			uint64_t *pa)
{
	for (unsigned int i = 0; i < elf->nseg; i++) {
		const struct x86_elf_segment *s = &elf->seg[i];

		if (entry >= s->paddr && entry - s->paddr < s->memsz) {
			*pa = entry;
			return true;
		}
	}
	for (unsigned int i = 0; i < elf->nseg; i++) {
		const struct x86_elf_segment *s = &elf->seg[i];

		if (entry >= s->vaddr && entry - s->vaddr < s->memsz) {
			*pa = s->paddr + (entry - s->vaddr);
			return true;
		}
	}
	return false;
}

int x86_elf_parse(const struct x86_image *k, uint64_t ram_end,
		  struct x86_elf *elf)
{
	const uint8_t *p = k->data;
	Elf64_Ehdr eh;
	int err;

	memset(elf, 0, sizeof(*elf));
	if (!x86_is_elf(p, k->size))
		return x86_image_err(k, "not an ELF file");
	if (k->size < EI_NIDENT)
		return x86_image_err(k, "truncated ELF header");
	if (p[EI_CLASS] == ELFCLASS32)
		return x86_image_err(k, "32-bit ELF: lkvm boots ELF64 x86-64 "
				     "kernels");
	if (p[EI_CLASS] != ELFCLASS64)
		return x86_image_err(k, "damaged ELF header: class %u",
				     p[EI_CLASS]);
	if (p[EI_DATA] != ELFDATA2LSB)
		return x86_image_err(k, "damaged ELF header: not little-endian");
	if (k->size < sizeof(eh))
		return x86_image_err(k, "truncated ELF header");
	memcpy(&eh, p, sizeof(eh));
	if (eh.e_version != EV_CURRENT || p[EI_VERSION] != EV_CURRENT)
		return x86_image_err(k, "damaged ELF header: version %u",
				     eh.e_version);
	if (eh.e_machine != EM_X86_64)
		return x86_image_err(k, "not an x86-64 ELF (machine %u)",
				     eh.e_machine);
	if (eh.e_type != ET_EXEC)
		return x86_image_err(k, "not an executable (ELF type %u)",
				     eh.e_type);
	if (!eh.e_phnum)
		return x86_image_err(k, "no ELF program headers");
	if (eh.e_phentsize != sizeof(Elf64_Phdr))
		return x86_image_err(k, "damaged ELF header: program header "
				     "size %u", eh.e_phentsize);
	if (!in_file(eh.e_phoff, (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr),
		     k->size))
		return x86_image_err(k, "truncated ELF program header table "
				     "(%u entries at offset 0x%llx)",
				     eh.e_phnum,
				     (unsigned long long)eh.e_phoff);

	for (unsigned int i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;

		memcpy(&ph, p + eh.e_phoff + i * sizeof(ph), sizeof(ph));
		if (ph.p_type == PT_LOAD) {
			err = add_segment(k, i, &ph, ram_end, elf);
		} else if (ph.p_type == PT_NOTE) {
			if (!in_file(ph.p_offset, ph.p_filesz, k->size))
				return x86_image_err(k, "truncated: note "
						     "segment %u lies beyond "
						     "the end of the file", i);
			err = parse_notes(k, i, &ph, elf);
		} else {
			err = 0;
		}
		if (err)
			return err;
	}
	if (!elf->nseg)
		return x86_image_err(k, "no loadable segments");

	if (elf->has_pvh) {
		uint64_t pa;

		if (!entry_paddr(elf, elf->pvh_entry, &pa) ||
		    pa != elf->pvh_entry)
			return x86_image_err(k, "PVH entry 0x%x lies outside "
					     "the loaded segments",
					     elf->pvh_entry);
	} else if (!entry_paddr(elf, eh.e_entry, &elf->entry)) {
		return x86_image_err(k, "entry point 0x%llx lies outside the "
				     "loaded segments",
				     (unsigned long long)eh.e_entry);
	}
	return 0;
}

/*
 * The PVH convention of lkvm: hvm_start_info lists two modules. The first
 * is the initrd (paddr and size 0 without -i), because that is where
 * Linux and QEMU look for it. The second carries the flattened device
 * tree and is named by its module command line, the string "dtb"; a
 * kernel that wants the machine description takes it from there (the
 * bundled test kernel does), others ignore it.
 */
int x86_load_elf(struct machine *m, const struct x86_image *k,
		 const struct x86_image *initrd, const char *params,
		 struct x86_boot *b)
{
	struct x86_elf *elf;
	uint64_t limit;
	char *cmdline;
	int err;

	elf = malloc(sizeof(*elf));
	if (!elf)
		return -ENOMEM;
	err = x86_elf_parse(k, x86_low_ram_end(m), elf);
	if (err)
		goto out;

	for (unsigned int i = 0; i < elf->nseg; i++) {
		const struct x86_elf_segment *s = &elf->seg[i];
		uint8_t *dst = guest_ptr(m, s->paddr, s->memsz);

		if (!dst) {
			err = x86_image_err(k, "cannot load segment at 0x%llx",
					    (unsigned long long)s->paddr);
			goto out;
		}
		memcpy(dst, (const uint8_t *)k->data + s->offset, s->filesz);
		memset(dst + s->filesz, 0, s->memsz - s->filesz);
	}
	b->kernel_start = elf->start;
	b->kernel_end = elf->end;

	/* Linux gets lkvm's defaults, whichever entry it takes. */
	cmdline = x86_machine_cmdline(m, params, elf->is_linux);
	if (!cmdline) {
		err = -ENOMEM;
		goto out;
	}
	limit = elf->is_linux ? LINUX_CMDLINE_MAX : X86_CMDLINE_MAX - 1;
	err = x86_write_boot_common(m, k, cmdline, limit, b);
	if (!err && initrd)
		err = x86_place_initrd(m, initrd, b->kernel_end, X86_4GIB, b);
	/* PVH kernels get the tree as a module; Linux through the zero
	 * page does not (see x86_write_zero_page()). */
	if (!err)
		err = elf->has_pvh ? x86_place_fdt(m, cmdline, 0, b) :
				     machine_build_fdt_bootargs(m, cmdline);
	free(cmdline);
	if (err)
		goto out;

	b->rsp = X86_BOOT_STACK_TOP;
	if (elf->has_pvh) {
		if (x86_write_pvh_start_info(m, b)) {
			err = x86_image_err(k, "cannot write the PVH start info");
			goto out;
		}
		b->entry = X86_ENTRY_PROT32;
		b->rip = elf->pvh_entry;
		b->rbx = X86_START_INFO_ADDR;
		b->kind = "PVH ELF";
	} else {
		if (x86_write_zero_page(m, NULL, 0, b)) {
			err = x86_image_err(k, "cannot write the zero page");
			goto out;
		}
		b->entry = X86_ENTRY_LONG64;
		b->rip = elf->entry;
		b->rsi = X86_ZERO_PAGE_ADDR;
		b->kind = "ELF, 64-bit entry";
	}
out:
	free(elf);
	return err;
}
