/*
 * Entry points of the test kernel.
 *
 * pvh_start:  the PVH entry (32-bit protected mode, paging off, %ebx =
 *             struct hvm_start_info). It writes the first console byte,
 *             then goes straight to long mode with static tables.
 * ap_tramp_*: the real-mode trampoline that smp.c copies below 1 MiB for
 *             INIT-SIPI-SIPI; it goes from real mode to long mode in one
 *             step (no 32-bit stage, no iret).
 * isr_*:      interrupt and exception stubs, all returning with iretq.
 */

#define CR0_PE		0x00000001
#define CR0_ET		0x00000010
#define CR0_PG		0x80000000
#define CR4_PAE		0x00000020
#define MSR_EFER	0xc0000080
#define EFER_LME	0x00000100
#define SEL_CODE64	0x08
#define SEL_DATA	0x10
#define AP_STACK_SIZE	4096
#define MAX_APS		64

/* XEN_ELFNOTE_PHYS32_ENTRY: name "Xen", type 18, 32-bit physical entry. */
	.section .note.Xen, "a", @note
	.p2align 2
	.long 4, 4, 18
	.asciz "Xen"
	.long pvh_start

	.section .boot32, "ax"
	.code32
	.globl pvh_start
pvh_start:
	/* 8N1 with DLAB clear, so the next byte reaches THR, then '#':
	 * the first byte of the banner line "# lkvm test kernel". */
	movw $0x3fb, %dx
	movb $0x03, %al
	outb %al, %dx
	movw $0x3f8, %dx
	movb $'#', %al
	outb %al, %dx

	lgdt gdt_ptr
	movl $CR4_PAE, %eax
	movl %eax, %cr4
	movl $pml4, %eax
	movl %eax, %cr3
	movl $MSR_EFER, %ecx
	rdmsr
	orl $EFER_LME, %eax
	wrmsr
	movl $(CR0_PG | CR0_ET | CR0_PE), %eax
	movl %eax, %cr0
	ljmp $SEL_CODE64, $long_entry

	.code64
long_entry:
	movl $SEL_DATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl %eax, %fs
	movl %eax, %gs
	movq $boot_stack_top, %rsp
	/* Zero .bss ourselves: the kernel should not depend on the loader. */
	movq $__bss_start, %rdi
	movq $__bss_end, %rcx
	subq %rdi, %rcx
	shrq $3, %rcx
	xorl %eax, %eax
	rep stosq
	movl %ebx, %edi
	call kmain
1:	cli
	hlt
	jmp 1b

/*
 * AP trampoline, copied to a free page below 1 MiB; the SIPI vector starts
 * it at offset 0 in real mode with CS = page >> 4. Only offsets relative to
 * ap_tramp_start are used for data, and absolute 32-bit addresses for
 * everything in the kernel image (which sits below 4 GiB).
 */
	.section .text
	.code16
	.p2align 4
	.globl ap_tramp_start, ap_tramp_end
ap_tramp_start:
	cli
	movw %cs, %ax
	movw %ax, %ds
	lgdtl (ap_tramp_gdtr - ap_tramp_start)
	movl $CR4_PAE, %eax
	movl %eax, %cr4
	movl $pml4, %eax
	movl %eax, %cr3
	movl $MSR_EFER, %ecx
	rdmsr
	orl $EFER_LME, %eax
	wrmsr
	/* PE and PG together: real mode straight into long mode. */
	movl $(CR0_PG | CR0_ET | CR0_PE), %eax
	movl %eax, %cr0
	ljmpl $SEL_CODE64, $ap_entry64
	.p2align 2
ap_tramp_gdtr:
	.word gdt_end - gdt - 1
	.long gdt
ap_tramp_end:

	.code64
ap_entry64:
	movl $SEL_DATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl %eax, %fs
	movl %eax, %gs
	lidt idt_ptr
	/* Each AP takes its own stack slot, so a late starter can never
	 * share a stack with the one the BSP is waiting for. */
	movl $1, %eax
	lock xaddl %eax, ap_next_slot
	cmpl $MAX_APS, %eax
	jae 2f
	movl %eax, %edi
	leal 1(%rax), %ecx
	shlq $12, %rcx
	leaq ap_stacks(%rcx), %rsp
	call ap_main
2:	cli
	hlt
	jmp 2b

/* Interrupt stubs: vectors 0-63 and 255. Exceptions without an error code
 * push a zero so every frame has the same layout (struct irq_frame). */
.macro ISR n
	.p2align 3
isr_\n:
	.if (\n == 8) || (\n == 10) || (\n == 11) || (\n == 12) || (\n == 13) || (\n == 14) || (\n == 17) || (\n == 21) || (\n == 29) || (\n == 30)
	pushq $\n
	.else
	pushq $0
	pushq $\n
	.endif
	jmp isr_common
.endm

	.altmacro
	.set vec, 0
	.rept 64
	ISR %vec
	.set vec, vec + 1
	.endr
	ISR 255

isr_common:
	pushq %rax
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	movq %rsp, %rdi
	cld
	call isr_dispatch
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rdi
	popq %rsi
	popq %rdx
	popq %rcx
	popq %rax
	addq $16, %rsp
	iretq

	.section .rodata
	.p2align 3
	.globl isr_table
isr_table:
.macro ISR_ADDR n
	.quad isr_\n
.endm
	.set vec, 0
	.rept 64
	ISR_ADDR %vec
	.set vec, vec + 1
	.endr
	ISR_ADDR 255
	.noaltmacro

/* Static descriptor tables and identity page tables (first 4 GiB in 2 MiB
 * pages, the top GiB uncached for the APICs and PCI holes; a fifth PDPT
 * slot is a movable window for RAM above 4 GiB). */
	.section .data
	.p2align 4
	.globl gdt, gdt_end
gdt:
	.quad 0
	.quad 0x00af9b000000ffff	/* 0x08: 64-bit code, accessed */
	.quad 0x00cf93000000ffff	/* 0x10: data, accessed */
gdt_end:
	.p2align 4
gdt_ptr:
	.word gdt_end - gdt - 1
	.quad gdt

	.section .data.pagetables, "aw"
	.p2align 12
	.globl pml4, window_pd
pml4:
	.quad pdpt + 0x3
	.fill 511, 8, 0
pdpt:
	.quad pd + 0x3
	.quad pd + 0x1000 + 0x3
	.quad pd + 0x2000 + 0x3
	.quad pd + 0x3000 + 0x3
	.quad window_pd + 0x3
	.fill 507, 8, 0
pd:
	.set addr, 0
	.rept 2048
	.if addr < 0xc0000000
	.quad addr + 0x83		/* P, RW, PS */
	.else
	.quad addr + 0x9b		/* P, RW, PWT, PCD, PS */
	.endif
	.set addr, addr + 0x200000
	.endr

	.section .bss
	.p2align 12
window_pd:
	.fill 512, 8, 0
	.p2align 2
	.globl ap_next_slot
ap_next_slot:
	.long 0

	.section .noinit, "aw", @nobits
	.p2align 12
	.globl ap_stacks
boot_stack:
	.skip 16384
boot_stack_top:
ap_stacks:
	.skip AP_STACK_SIZE * (MAX_APS + 1)
