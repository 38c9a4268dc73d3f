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
#define SEL_UDATA	0x1b	/* user data, RPL 3 */
#define SEL_UCODE64	0x23	/* user 64-bit code, RPL 3 */
#define USER_RFLAGS	0x202	/* IF: the PIT keeps ticking in ring 3 */
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

/*
 * uint64_t user_call(uint64_t (*fn)(void *), void *arg, void *stack_top)
 *
 * Runs fn(arg) in ring 3 and returns what it returns. Some KVM hosts
 * emulate every CPL-0 instruction but run ring 3 natively, so number
 * crunching (checksums, patterns, compares) goes there. The way back is
 * the `ud2` at user_exit: the #UD arrives on the TSS's RSP0 stack, and
 * isr_dispatch hands it to user_resume, which restores the kernel stack
 * saved here. (A software interrupt through a DPL-3 gate would be the
 * textbook way, but on a PVM host `int $n` from ring 3 arrives as #UD
 * anyway.) Interrupts stay enabled in ring 3 (RFLAGS.IF), so the PIT
 * keeps time meanwhile; they arrive on the RSP0 stack as well.
 */
	.text
	.globl user_call, user_exit, user_resume
user_call:
	pushq %rbx
	pushq %rbp
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	pushfq
	movq %rsp, user_saved_rsp(%rip)
	pushq $SEL_UDATA
	pushq %rdx
	pushq $USER_RFLAGS
	pushq $SEL_UCODE64
	leaq user_entry(%rip), %rax
	pushq %rax
	iretq
user_entry:				/* ring 3: rdi = fn, rsi = arg */
	movq %rdi, %rax
	movq %rsi, %rdi
	andq $-16, %rsp
	call *%rax
user_exit:
	ud2				/* back to ring 0, result in rax */

/* void user_resume(uint64_t result): ring 0, from the #UD at user_exit. */
user_resume:
	movl $SEL_DATA, %eax
	movl %eax, %ss
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %fs
	movl %eax, %gs
	movq user_saved_rsp(%rip), %rsp
	movq %rdi, %rax
	popfq
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbp
	popq %rbx
	ret

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
 * slot is a movable window for RAM and MMIO above 4 GiB). The first three
 * GiB are user accessible (U), so ring-3 code can run on the kernel's text
 * and buffers. One more chain maps the 4 KiB magic page at the
 * non-identity address HIGH_MAP_VA (0xffff800000000000), for debuggers
 * that translate guest-virtual addresses. */
	.section .data
	.p2align 4
	.globl gdt, gdt_end, gdt_tss
gdt:
	.quad 0
	.quad 0x00af9b000000ffff	/* 0x08: 64-bit code, accessed */
	.quad 0x00cf93000000ffff	/* 0x10: data, accessed */
	.quad 0x00cff3000000ffff	/* 0x18: user data (DPL 3) */
	.quad 0x00affb000000ffff	/* 0x20: user 64-bit code (DPL 3) */
gdt_tss:
	.quad 0, 0			/* 0x28: the TSS, filled by user_init() */
gdt_end:
	.p2align 4
gdt_ptr:
	.word gdt_end - gdt - 1
	.quad gdt

	.section .data.pagetables, "aw"
	.p2align 12
	.globl pml4, window_pd, high_pt
pml4:
	.quad pdpt + 0x7
	.fill 255, 8, 0
	.quad high_pdpt + 0x3		/* 256: 0xffff800000000000 */
	.fill 255, 8, 0
pdpt:
	.quad pd + 0x7
	.quad pd + 0x1000 + 0x7
	.quad pd + 0x2000 + 0x7
	.quad pd + 0x3000 + 0x7
	.quad window_pd + 0x3
	.fill 507, 8, 0
high_pdpt:
	.quad high_pd + 0x3
	.fill 511, 8, 0
high_pd:
	.quad high_pt + 0x3
	.fill 511, 8, 0
high_pt:
	.quad magic_page + 0x3		/* P, RW, 4 KiB */
	.fill 511, 8, 0
pd:
	.set addr, 0
	.rept 2048
	.if addr < 0xc0000000
	.quad addr + 0x87		/* P, RW, U, PS */
	.else
	.quad addr + 0x9b		/* P, RW, PWT, PCD, PS */
	.endif
	.set addr, addr + 0x200000
	.endr

	.section .bss
	.p2align 12
window_pd:
	.fill 512, 8, 0
	.globl magic_page
magic_page:
	.fill 512, 8, 0
	.p2align 3
user_saved_rsp:
	.quad 0
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
	.p2align 12
	.globl user_kstack_top, user_stack_top
user_kstack:				/* TSS RSP0: interrupts taken in ring 3 */
	.skip 16384
user_kstack_top:
user_stack:				/* ring 3's own stack */
	.skip 65536
user_stack_top:
