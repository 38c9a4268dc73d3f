// SPDX-License-Identifier: GPL-2.0
/*
 * lkvm introspect: an introspection tool on libkvmi-client, speaking KVMI
 * (docs/kvmi.md) to a guest started with `lkvm run --introspect
 * listen=PATH,cookie=FILE`.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvmi/client.h"
#include "lkvm/builtin.h"
#include "lkvm/control.h"
#include "lkvm/options.h"
#include "lkvm/util.h"

#define TIMEOUT_MS 10000
#define READ_MAX (16u << 20)

struct introspect_opts {
	const char *socket, *cookie, *cpu;
};

#define I(f) offsetof(struct introspect_opts, f)

static const struct option introspect_options[] = {
	{ .name = "socket", .type = OPT_STRING, .offset = I(socket),
	  .argname = "PATH",
	  .help = "the guest's introspection socket (run --introspect listen=PATH)" },
	{ .name = "cookie", .type = OPT_STRING, .offset = I(cookie),
	  .argname = "FILE", .help = "the shared cookie (mode 0600)" },
	{ .name = "cpu", .type = OPT_STRING, .offset = I(cpu), .argname = "N",
	  .help = "the vCPU for regs and translate (default 0)" },
	OPTION_END,
};

void help_introspect(FILE *f)
{
	struct option_group g = { "options", introspect_options, NULL };

	fprintf(f, "usage: lkvm introspect --socket PATH --cookie FILE COMMAND [ARGS]\n\n"
		   "Looks at a guest through KVMI (docs/kvmi.md), as an introspection tool\n"
		   "does. The guest runs with --introspect listen=PATH,cookie=FILE.\n\n"
		   "commands:\n"
		   "  info               the guest: vCPUs, protocol version, features, UUID\n"
		   "  regs               a vCPU's registers (--cpu N)\n"
		   "  read GPA LEN       hex dump of guest-physical memory\n"
		   "  write GPA HEX      writes the bytes HEX (\"deadbeef\": de ad be ef)\n"
		   "  translate GVA      the guest-physical address of GVA (--cpu N)\n"
		   "  pause              pauses every vCPU until stdin ends or a signal\n"
		   "  unpause            (not yet: a pause ends with its `introspect pause`)\n");
	print_options(f, &g, 1);
	fprintf(f, "\nNumbers are decimal or 0x hex. Exit status: 0; 1 when the guest cannot\n"
		   "be reached, the cookie is refused, or the guest refuses the command.\n");
}

static int failed(const char *what, int err)
{
	fprintf(stderr, "lkvm introspect: %s: %s\n", what, kvmi_strerror(err));
	return 1;
}

static int do_info(struct kvmi_conn *c)
{
	const struct kvmi_guest *g = kvmi_guest(c);
	uint32_t version, max, n;
	uint64_t tsc = 0;
	int err;

	if ((err = kvmi_get_version(c, &version, &max)))
		return failed("get version", err);
	if ((err = kvmi_get_vm_info(c, &n)))
		return failed("VM info", err);
	printf("uuid ");
	for (unsigned int i = 0; i < 16; i++)
		printf("%02x%s", g->uuid[i],
		       i == 3 || i == 5 || i == 7 || i == 9 ? "-" : "");
	printf("\nversion %u\nmax_msg_size %u\nfeatures 0x%" PRIx64
	       "\nvcpus %u\n", version, max, (uint64_t)g->features, n);
	for (uint32_t i = 0; i < n; i++) {
		if ((err = kvmi_get_vcpu_info(c, (uint16_t)i, &tsc)))
			return failed("vCPU info", err);
		printf("vcpu%u.tsc_hz %" PRIu64 "\n", i, tsc);
	}
	return 0;
}

static int do_regs(struct kvmi_conn *c, uint16_t cpu)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	struct kvm_msr_entry msr[2] = { { .index = 0xc0000080 },	/* EFER */
					{ .index = 0xc0000102 } };	/* KERNEL_GS */
	uint32_t mode;
	int err = kvmi_get_registers(c, cpu, &r, &s, msr, 2, &mode);

	if (err)
		return failed("get registers", err);
	printf("vcpu %u mode %u-bit\n", cpu, mode * 8);
	printf("rax 0x%016llx rbx 0x%016llx rcx 0x%016llx rdx 0x%016llx\n",
	       r.rax, r.rbx, r.rcx, r.rdx);
	printf("rsi 0x%016llx rdi 0x%016llx rbp 0x%016llx rsp 0x%016llx\n",
	       r.rsi, r.rdi, r.rbp, r.rsp);
	printf("r8  0x%016llx r9  0x%016llx r10 0x%016llx r11 0x%016llx\n",
	       r.r8, r.r9, r.r10, r.r11);
	printf("r12 0x%016llx r13 0x%016llx r14 0x%016llx r15 0x%016llx\n",
	       r.r12, r.r13, r.r14, r.r15);
	printf("rip 0x%016llx rflags 0x%016llx\n", r.rip, r.rflags);
	printf("cs 0x%04x ds 0x%04x ss 0x%04x es 0x%04x fs 0x%04x gs 0x%04x\n",
	       s.cs.selector, s.ds.selector, s.ss.selector, s.es.selector,
	       s.fs.selector, s.gs.selector);
	printf("cr0 0x%016llx cr2 0x%016llx cr3 0x%016llx cr4 0x%016llx\n",
	       s.cr0, s.cr2, s.cr3, s.cr4);
	printf("efer 0x%016llx kernel_gs_base 0x%016llx\n", msr[0].data,
	       msr[1].data);
	return 0;
}

static int do_read(struct kvmi_conn *c, uint64_t gpa, uint64_t len)
{
	unsigned char *buf = malloc(len);
	int err;

	if (!buf)
		return failed("read", -ENOMEM);
	err = kvmi_read_physical(c, gpa, buf, len);
	if (!err)
		hexdump(stdout, gpa, buf, len);
	free(buf);
	return err ? failed("read", err) : 0;
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

static int do_write(struct kvmi_conn *c, uint64_t gpa, const unsigned char *b,
		    size_t len)
{
	int err = kvmi_write_physical(c, gpa, b, len);

	return err ? failed("write", err) : 0;
}

static int do_translate(struct kvmi_conn *c, uint16_t cpu, uint64_t gva)
{
	uint64_t gpa;
	int err = kvmi_translate_gva(c, cpu, gva, &gpa);

	if (err)
		return failed("translate", err);
	if (gpa == ~0ull) {
		fprintf(stderr, "lkvm introspect: 0x%" PRIx64 " is not mapped\n",
			gva);
		return 1;
	}
	printf("0x%" PRIx64 "\n", gpa);
	return 0;
}

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
	got_signal = sig;
}

/* Holds every vCPU until stdin ends or a signal comes: KVMI's pause
 * lasts as long as the tool's connection (until there are PAUSE events
 * to answer). */
static int do_pause(struct kvmi_conn *c)
{
	const struct kvmi_guest *g = kvmi_guest(c);
	struct sigaction sa = { .sa_handler = on_signal };
	char buf[256];
	int err;

	for (uint32_t i = 0; i < g->vcpu_count; i++)
		if ((err = kvmi_pause_vcpu(c, (uint16_t)i, true)))
			return failed("pause", err);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	printf("paused\n");
	fflush(stdout);
	while (!got_signal && read(STDIN_FILENO, buf, sizeof(buf)) > 0)
		;
	return 0;
}

int cmd_introspect(int argc, char **argv)
{
	struct introspect_opts o = { 0 };
	struct option_group g = { NULL, introspect_options, &o };
	char *pos[3] = { NULL, NULL, NULL };
	unsigned char *wbuf = NULL;
	uint64_t cpu = 0, a = 0, b = 0;
	size_t wlen = 0;
	struct kvmi_conn *c;
	const char *cmd;
	int np, err, ret = 1;

	if (ctl_wants_help(argc, argv)) {
		help_introspect(stdout);
		return 0;
	}
	np = ctl_parse_args("introspect", argc, argv, &g, 1, pos, 3);
	if (np < 0)
		return 1;
	if (!o.socket) {
		fprintf(stderr, "lkvm introspect: give --socket PATH (guests are not found by name yet)\n");
		return 1;
	}
	if (!o.cookie) {
		fprintf(stderr, "lkvm introspect: give --cookie FILE\n");
		return 1;
	}
	cmd = pos[0];
	if (!cmd) {
		fprintf(stderr, "lkvm introspect: what? see 'lkvm help introspect'\n");
		return 1;
	}
	if (o.cpu && (!ctl_number("introspect", "--cpu", o.cpu, &cpu) ||
		      cpu > 0xffff)) {
		fprintf(stderr, "lkvm introspect: --cpu %s: no such vCPU\n", o.cpu);
		return 1;
	}
	if (!strcmp(cmd, "info") || !strcmp(cmd, "regs") ||
	    !strcmp(cmd, "pause")) {
		if (np != 1)
			goto usage;
	} else if (!strcmp(cmd, "read")) {
		if (np != 3 || !ctl_number("introspect", "GPA", pos[1], &a))
			goto usage;
		if (!parse_uint(pos[2], 1, READ_MAX, &b) &&
		    !(parse_size(pos[2], 1, &b) && b && b <= READ_MAX)) {
			fprintf(stderr, "lkvm introspect: read LEN '%s': use 1 to %u bytes\n",
				pos[2], READ_MAX);
			return 1;
		}
	} else if (!strcmp(cmd, "write")) {
		size_t n;

		if (np != 3 || !ctl_number("introspect", "GPA", pos[1], &a))
			goto usage;
		n = strlen(pos[2]);
		if (!n || n % 2 || n / 2 > READ_MAX) {
			fprintf(stderr, "lkvm introspect: write HEX: an even number of hex digits\n");
			return 1;
		}
		wbuf = malloc(n / 2);
		if (!wbuf)
			return failed("write", -ENOMEM);
		for (size_t i = 0; i < n; i += 2) {
			int hi = hexval(pos[2][i]), lo = hexval(pos[2][i + 1]);

			if (hi < 0 || lo < 0) {
				fprintf(stderr, "lkvm introspect: write HEX: '%s' is not hex\n",
					pos[2]);
				free(wbuf);
				return 1;
			}
			wbuf[wlen++] = (unsigned char)(hi << 4 | lo);
		}
	} else if (!strcmp(cmd, "translate")) {
		if (np != 2 || !ctl_number("introspect", "GVA", pos[1], &a))
			goto usage;
	} else if (!strcmp(cmd, "unpause")) {
		fprintf(stderr, "lkvm introspect: unpause is not available yet: a pause lasts until its 'lkvm introspect pause' ends\n");
		return 1;
	} else {
		fprintf(stderr, "lkvm introspect: unknown command '%s'\n", cmd);
		return 1;
	}

	err = kvmi_connect(o.socket, o.cookie, TIMEOUT_MS, &c);
	if (err) {
		/* Connecting and the handshake fail on this side: errno. */
		free(wbuf);
		fprintf(stderr, "lkvm introspect: %s: %s\n", o.socket,
			strerror(-err));
		return 1;
	}
	kvmi_set_timeout(c, TIMEOUT_MS);
	if (!strcmp(cmd, "info"))
		ret = do_info(c);
	else if (!strcmp(cmd, "regs"))
		ret = do_regs(c, (uint16_t)cpu);
	else if (!strcmp(cmd, "read"))
		ret = do_read(c, a, b);
	else if (!strcmp(cmd, "write"))
		ret = do_write(c, a, wbuf, wlen);
	else if (!strcmp(cmd, "translate"))
		ret = do_translate(c, (uint16_t)cpu, a);
	else if (!strcmp(cmd, "pause"))
		ret = do_pause(c);
	kvmi_close(c);
	free(wbuf);
	return ret;
usage:
	fprintf(stderr, "lkvm introspect: wrong arguments for '%s'; see 'lkvm help introspect'\n",
		cmd);
	free(wbuf);
	return 1;
}
