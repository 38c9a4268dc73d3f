/* The bundled test kernel (x86-kernel/), linked into lkvm. */
	.section .rodata
	.balign 64
	.globl lkvm_test_kernel, lkvm_test_kernel_end
lkvm_test_kernel:
	.incbin "x86-kernel/test-kernel.elf"
lkvm_test_kernel_end:
	.section .note.GNU-stack, "", @progbits
