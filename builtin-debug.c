// SPDX-License-Identifier: GPL-2.0
/* lkvm debug: look inside a running guest (docs/control.md). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lkvm/builtin.h"
#include "lkvm/control.h"
#include "lkvm/options.h"
#include "lkvm/util.h"

#define MEM_MAX (16u << 20)	/* what one --mem shows */

struct debug_opts {
	bool regs, stack, nmi;
	const char *cpu, *mem, *translate, *sysrq, *dump;
};

#define D(f) offsetof(struct debug_opts, f)

static const struct option debug_options[] = {
	{ .name = "regs", .type = OPT_BOOL, .offset = D(regs),
	  .help = "general, segment and control registers, EFER, the code at RIP" },
	{ .name = "cpu", .type = OPT_STRING, .offset = D(cpu), .argname = "N",
	  .help = "the vCPU (default: every vCPU for --regs, 0 otherwise)" },
	{ .name = "mem", .type = OPT_STRING, .offset = D(mem),
	  .argname = "GPA LEN", .help = "hex dump of guest-physical memory" },
	{ .name = "translate", .type = OPT_STRING, .offset = D(translate),
	  .argname = "GVA",
	  .help = "walk the vCPU's page tables for GVA, level by level" },
	{ .name = "stack", .type = OPT_BOOL, .offset = D(stack),
	  .help = "the words at the stack pointer and the frame-pointer chain" },
	{ .name = "nmi", .type = OPT_BOOL, .offset = D(nmi),
	  .help = "inject an NMI into the vCPU" },
	{ .name = "sysrq", .type = OPT_STRING, .offset = D(sysrq),
	  .argname = "CHAR",
	  .help = "a serial break and CHAR on COM1 (Linux's magic SysRq)" },
	{ .name = "dump", .type = OPT_STRING, .offset = D(dump),
	  .argname = "FILE",
	  .help = "write an ELF core of the guest (memory, registers) for gdb" },
	OPTION_END,
};

void help_debug(FILE *f)
{
	struct option_group g = { "options", debug_options, NULL };

	fprintf(f, "usage: lkvm debug NAME [OPTIONS]\n\n"
		   "Looks inside a running guest. Each vCPU looked at is stopped for the\n"
		   "moment it takes, paused or not. Several options may be given; they\n"
		   "run in the order listed below. Numbers are decimal or 0x hex; LEN\n"
		   "takes K and M suffixes.\n");
	print_options(f, &g, 1);
	fprintf(f, "\nExit status: 0; 1 when the guest does not exist or cannot be\n"
		   "reached, an argument is wrong (no such vCPU, an address outside\n"
		   "guest memory), or a --translate address is not mapped.\n");
}

/* A text request; its answer goes to stdout. 0 or 1. */
static int text(struct ctl_conn *c, uint16_t op, const void *req, size_t len)
{
	struct ctl_result r;

	if (ctl_call(c, op, req, len, &r))
		return 1;
	fwrite(r.body, 1, r.len, stdout);
	ctl_result_free(&r);
	return 0;
}

static int show_mem(struct ctl_conn *c, uint64_t gpa, uint64_t len)
{
	unsigned char *buf = malloc(len ? len : 1);
	uint64_t done = 0;

	if (!buf) {
		pr_err("out of memory");
		return 1;
	}
	while (done < len) {
		struct ctl_mem_req req = {
			.gpa = gpa + done,
			.len = (uint32_t)MIN(len - done, (uint64_t)CTL_MEM_MAX),
		};
		struct ctl_result r;

		if (ctl_call(c, CTL_MEM, &req, sizeof(req), &r)) {
			free(buf);
			return 1;
		}
		memcpy(buf + done, r.body, MIN(r.len, (size_t)req.len));
		done += req.len;
		ctl_result_free(&r);
	}
	hexdump(stdout, gpa, buf, (size_t)len);
	free(buf);
	return 0;
}

static int dump(struct ctl_conn *c, const char *path)
{
	struct ctl_dump_req req = { 0 };
	struct ctl_result r;
	char size[32] = "?";
	int fd, err;

	/* Opened here, with the caller's rights and working directory;
	 * the guest's lkvm writes through the descriptor. */
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		pr_err("--dump '%s': %s", path, strerror(errno));
		return 1;
	}
	err = ctl_send(c, CTL_DUMP, &req, sizeof(req), fd);
	close(fd);
	if (!err)
		err = ctl_recv(c, &r, -1);
	if (err) {
		pr_err("guest '%s': %s", c->name, strerror(-err));
		return 1;
	}
	if (r.error) {
		pr_err("guest '%s': %s", c->name, r.body);
		ctl_result_free(&r);
		return 1;
	}
	ctl_kv(r.body, "size", size, sizeof(size));
	printf("%s: ELF core, %s bytes\n", path, size);
	ctl_result_free(&r);
	return 0;
}

int cmd_debug(int argc, char **argv)
{
	struct debug_opts o = { 0 };
	struct option_group g = { NULL, debug_options, &o };
	char *pos[2] = { NULL, NULL };
	uint64_t cpu = 0, gpa = 0, len = 0, gva = 0;
	struct ctl_conn c;
	int np, failed = 0;

	if (ctl_wants_help(argc, argv)) {
		help_debug(stdout);
		return 0;
	}
	np = ctl_parse_args("debug", argc, argv, &g, 1, pos, 2);
	if (np < 0)
		return 1;
	/* --mem GPA LEN: LEN is the positional after NAME. */
	if (!pos[0] || (np == 2) != !!o.mem) {
		fprintf(stderr, "lkvm debug: %s\n",
			!pos[0] ? "which guest? give a NAME" :
			o.mem   ? "--mem needs GPA and LEN" :
				  "unexpected argument");
		fprintf(stderr, "see 'lkvm help debug'\n");
		return 1;
	}
	if (!o.regs && !o.stack && !o.nmi && !o.mem && !o.translate &&
	    !o.sysrq && !o.dump) {
		fprintf(stderr, "lkvm debug: nothing to do: give --regs, --mem, --translate, --stack, --nmi, --sysrq or --dump\n");
		return 1;
	}
	if ((o.cpu && !ctl_number("debug", "--cpu", o.cpu, &cpu)) ||
	    (o.mem && !ctl_number("debug", "--mem GPA", o.mem, &gpa)) ||
	    (o.translate &&
	     !ctl_number("debug", "--translate", o.translate, &gva)))
		return 1;
	if (o.mem && (!(parse_uint(pos[1], 1, MEM_MAX, &len) ||
			parse_size(pos[1], 1, &len)) ||
		      !len || len > MEM_MAX)) {
		fprintf(stderr, "lkvm debug: --mem LEN '%s': use 1 to %u bytes\n",
			pos[1], MEM_MAX);
		return 1;
	}
	if (cpu > 0xfffffffe) {
		fprintf(stderr, "lkvm debug: --cpu %s: no such vCPU\n", o.cpu);
		return 1;
	}
	if (o.sysrq && strlen(o.sysrq) != 1) {
		fprintf(stderr, "lkvm debug: --sysrq takes one character\n");
		return 1;
	}
	if (ctl_open(pos[0], &c))
		return 1;
	if (o.regs) {
		struct ctl_cpu_req req = {
			o.cpu ? (uint32_t)cpu : CTL_ALL_CPUS, 0
		};

		failed |= text(&c, CTL_REGS, &req, sizeof(req));
	}
	if (!failed && o.mem)
		failed |= show_mem(&c, gpa, len);
	if (!failed && o.translate) {
		struct ctl_translate_req req = { gva, (uint32_t)cpu, 0 };
		struct ctl_result r;

		failed = 1;
		if (!ctl_call(&c, CTL_TRANSLATE, &req, sizeof(req), &r)) {
			fwrite(r.body, 1, r.len, stdout);
			failed = strstr(r.body, "is not mapped") != NULL;
			ctl_result_free(&r);
		}
	}
	if (!failed && o.stack) {
		struct ctl_cpu_req req = { (uint32_t)cpu, 0 };

		failed |= text(&c, CTL_STACK, &req, sizeof(req));
	}
	if (!failed && o.nmi) {
		struct ctl_cpu_req req = { (uint32_t)cpu, 0 };

		failed |= text(&c, CTL_NMI, &req, sizeof(req));
	}
	if (!failed && o.sysrq) {
		struct ctl_sysrq_req req = { .ch = (uint8_t)o.sysrq[0] };

		failed |= text(&c, CTL_SYSRQ, &req, sizeof(req));
	}
	if (!failed && o.dump)
		failed |= dump(&c, o.dump);
	ctl_close(&c);
	return failed;
}
