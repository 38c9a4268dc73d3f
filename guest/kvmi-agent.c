// SPDX-License-Identifier: GPL-2.0
/*
 * kvmi-agent: a guest agent for lkvm's introspection (docs/kvmi.md,
 * "KVMI_LKVM_VCPU_EVENT_AGENT"). Runs inside a Linux guest as root:
 *
 *   kvmi-agent VALUE [ARG...]
 *
 * rings the doorbell: a 32-bit OUT of VALUE to port 0xdb0, with up to
 * four arguments in rbx, rcx, rsi and rdi. The tool gets the AGENT event
 * with VALUE and the registers, may answer in those registers (through
 * KVMI_VCPU_SET_REGISTERS), and replies; the OUT then completes and the
 * agent prints rax, rbx, rcx, rsi and rdi as the tool left them. With no
 * tool listening the OUT completes at once, the registers unchanged.
 *
 * Built for the guest (x86-64 Linux, static): make build/guest/kvmi-agent.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>

#define AGENT_PORT 0xdb0

static int number(const char *s, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 0);
	return errno || !*s || *end ? -1 : 0;
}

int main(int argc, char **argv)
{
	uint64_t value, a[4] = { 0 }, rax;

	if (argc < 2 || argc > 6 || number(argv[1], &value) ||
	    value > 0xffffffffull) {
		fprintf(stderr, "usage: kvmi-agent VALUE [ARG...] (VALUE: 32 bits, up to 4 ARGs)\n");
		return 2;
	}
	for (int i = 2; i < argc; i++)
		if (number(argv[i], &a[i - 2])) {
			fprintf(stderr, "kvmi-agent: '%s' is not a number\n",
				argv[i]);
			return 2;
		}
	/* Port access for this process only (needs CAP_SYS_RAWIO). */
	if (ioperm(AGENT_PORT, 4, 1)) {
		fprintf(stderr, "kvmi-agent: port 0x%x: %s\n", AGENT_PORT,
			strerror(errno));
		return 1;
	}
	rax = value;
	__asm__ volatile("outl %%eax, %%dx"
			 : "+a"(rax), "+b"(a[0]), "+c"(a[1]), "+S"(a[2]),
			   "+D"(a[3])
			 : "d"((uint16_t)AGENT_PORT)
			 : "memory");
	printf("rax 0x%" PRIx64 " rbx 0x%" PRIx64 " rcx 0x%" PRIx64
	       " rsi 0x%" PRIx64 " rdi 0x%" PRIx64 "\n",
	       rax, a[0], a[1], a[2], a[3]);
	return 0;
}
