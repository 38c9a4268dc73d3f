// SPDX-License-Identifier: GPL-2.0
/*
 * lkvm introspect: an introspection tool on libkvmi-client, speaking KVMI
 * (docs/kvmi.md) to a guest started with `lkvm run --introspect
 * listen=PATH,cookie=FILE`.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kvmi/client.h"
#include "lkvm/builtin.h"
#include "lkvm/introspect.h"
#include "lkvm/kvmi-proto.h"
#include "lkvm/control.h"
#include "lkvm/options.h"
#include "lkvm/registry.h"
#include "lkvm/util.h"

#define TIMEOUT_MS 10000
#define READ_MAX (16u << 20)

#define MAX_POS 12

struct introspect_opts {
	const char *socket, *cookie, *cpu;
	const char *action, *exec, *count;
	bool mapped, virt, detach, socket_events;
};

#define I(f) offsetof(struct introspect_opts, f)

static const struct option introspect_options[] = {
	{ .name = "socket", .type = OPT_STRING, .offset = I(socket),
	  .argname = "PATH",
	  .help = "the guest's introspection socket (run --introspect listen=PATH)" },
	{ .name = "cookie", .type = OPT_STRING, .offset = I(cookie),
	  .argname = "FILE", .help = "the shared cookie (mode 0600)" },
	{ .name = "cpu", .type = OPT_STRING, .offset = I(cpu), .argname = "N",
	  .help = "the vCPU for regs, translate and inject (default 0)" },
	{ .name = "action", .type = OPT_STRING, .offset = I(action),
	  .argname = "A",
	  .help = "watch: the reply to each event: continue (default), retry, crash" },
	{ .name = "exec", .type = OPT_STRING, .offset = I(exec),
	  .argname = "CMD",
	  .help = "watch: a shell command that decides each reply (see below)" },
	{ .name = "count", .type = OPT_STRING, .offset = I(count),
	  .argname = "N", .help = "watch: stop after N events" },
	{ .name = "virt", .type = OPT_BOOL, .offset = I(virt),
	  .help = "read, write: the address is virtual, translated through the page tables of the vCPU (--cpu N)" },
	{ .name = "mapped", .type = OPT_BOOL, .offset = I(mapped),
	  .help = "read: through guest RAM mapped from lkvm (MAP_MEMORY), not the socket" },
	{ .name = "detach", .type = OPT_BOOL, .offset = I(detach),
	  .help = "pause: hold the pause in the background until 'unpause'" },
	{ .name = "socket-events", .type = OPT_BOOL, .offset = I(socket_events),
	  .help = "events over the socket, not lkvm's event channel (shared memory)" },
	OPTION_END,
};

void help_introspect(FILE *f)
{
	struct option_group g = { "options", introspect_options, NULL };

	fprintf(f, "usage: lkvm introspect NAME COMMAND [ARGS]\n"
		   "       lkvm introspect --socket PATH --cookie FILE COMMAND [ARGS]\n\n"
		   "Looks at a guest through KVMI (docs/kvmi.md), as an introspection tool\n"
		   "does. The guest runs with --introspect listen (found by NAME, with the\n"
		   "cookie lkvm made) or --introspect listen=PATH,cookie=FILE.\n\n"
		   "commands:\n"
		   "  info               the guest: vCPUs, protocol version, features, UUID\n"
		   "  regs               a vCPU's registers (--cpu N)\n"
		   "  read GPA LEN       hex dump of guest-physical memory\n"
		   "  write GPA HEX      writes the bytes HEX (\"deadbeef\": de ad be ef)\n"
		   "  translate GVA      the guest-physical address of GVA (--cpu N)\n"
		   "  pause              pauses every vCPU (PAUSE events) until stdin ends\n"
		   "                     or a signal; then they go on; with --detach, a\n"
		   "                     process in the background holds the pause\n"
		   "  unpause            ends the pause that 'pause --detach' holds\n"
		   "  inject VEC [ERR [ADDR]]  injects exception VEC into a vCPU (--cpu N)\n"
		   "  watch WHAT...      streams events as JSON lines, one a line, and\n"
		   "                     answers each; WHAT is write:GPA (write-protects\n"
		   "                     the page), msr:INDEX (intercepts its writes),\n"
		   "                     break:GVA (a hardware breakpoint), step (every\n"
		   "                     instruction), agent (the agent's doorbell), pause\n"
		   "  break GVA          watch break:GVA\n"
		   "  step               watch step (give --count N)\n"
		   "  protect GPA        watch write:GPA\n"
		   "  msr watch INDEX    watch msr:INDEX\n");
	print_options(f, &g, 1);
	fprintf(f, "\nwatch --exec CMD runs CMD (sh -c) for each event with the event's JSON\n"
		   "line in $KVMI_EVENT; the first line it prints is the reply: continue,\n"
		   "retry or crash, then any of: value=N (an MSR event: the value the\n"
		   "guest's WRMSR writes), REG=N (rax..r15, rip: set before the reply),\n"
		   "unprotect (release the page before the reply). Everything the tool\n"
		   "set ends with it: pages, MSRs and paused vCPUs are released.\n");
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

static int do_read(struct kvmi_conn *c, uint64_t gpa, uint64_t len,
		   bool mapped)
{
	unsigned char *buf = malloc(len);
	struct kvmi_memmap map;
	int err;

	if (!buf)
		return failed("read", -ENOMEM);
	if (mapped) {
		const void *p;

		err = kvmi_map_memory(c, false, &map);
		if (err) {
			free(buf);
			return failed("map memory", err);
		}
		p = kvmi_memmap_ptr(&map, gpa, len);
		if (p)
			memcpy(buf, p, len);
		else
			err = -KVM_EFAULT;
		kvmi_unmap_memory(&map);
	} else {
		err = kvmi_read_physical(c, gpa, buf, len);
	}
	if (!err)
		hexdump(stdout, gpa, buf, len);
	free(buf);
	return err ? failed("read", err) : 0;
}

static int do_write(struct kvmi_conn *c, uint64_t gpa, const unsigned char *b,
		    size_t len)
{
	int err = kvmi_write_physical(c, gpa, b, len);

	return err ? failed("write", err) : 0;
}

/*
 * read --virt and write --virt: page by page through the vCPU's page
 * tables (a virtual range need not be contiguous physically).
 */
static int virt_access(struct kvmi_conn *c, uint16_t cpu, uint64_t gva,
		       unsigned char *buf, size_t len, bool write)
{
	size_t done = 0;

	while (done < len) {
		uint64_t va = gva + done, gpa;
		size_t n = 4096 - (va & 4095);
		int err;

		if (n > len - done)
			n = len - done;
		err = kvmi_translate_gva(c, cpu, va, &gpa);
		if (err)
			return failed("translate", err);
		if (gpa == ~0ull) {
			fprintf(stderr, "lkvm introspect: 0x%" PRIx64 " is not mapped\n",
				va);
			return 1;
		}
		err = write ? kvmi_write_physical(c, gpa, buf + done, n) :
			      kvmi_read_physical(c, gpa, buf + done, n);
		if (err)
			return failed(write ? "write" : "read", err);
		done += n;
	}
	if (!write)
		hexdump(stdout, gva, buf, len);
	return 0;
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
/*
 * pause --detach: a child keeps the connection, and with it the pause,
 * and leaves its pid in hold_file (SOCKET.pause) for 'unpause'. The
 * parent says "paused" and exits without closing the connection.
 */
static const char *hold_file;

static int hold_in_background(const char *file)
{
	char line[32];
	int fd, n;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return failed("pause --detach", -errno);
	if (pid > 0) {
		printf("paused\n");
		fflush(stdout);
		_exit(0);
	}
	setsid();
	fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return failed("pause --detach", -errno);
	n = snprintf(line, sizeof(line), "%d\n", (int)getpid());
	if (write(fd, line, (size_t)n) != n) {
		close(fd);
		unlink(file);
		return failed("pause --detach", -EIO);
	}
	close(fd);
	/* Nobody reads our output any more. */
	fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		close(fd);
	}
	return 0;
}

/* unpause: ends the holder that file names, and waits until it is gone
 * (then the guest's vCPUs run again). */
static int do_unpause(const char *file, const char *name)
{
	char line[32] = { 0 };
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	uint64_t pid;

	if (fd < 0) {
		fprintf(stderr, "lkvm introspect: %s: not paused by 'lkvm introspect pause --detach'\n",
			name);
		return 1;
	}
	if (read(fd, line, sizeof(line) - 1) < 0)
		line[0] = 0;
	close(fd);
	line[strcspn(line, "\n")] = 0;
	if (!parse_uint(line, 2, INT32_MAX, &pid)) {
		fprintf(stderr, "lkvm introspect: %s: bad pause record; removed\n",
			file);
		unlink(file);
		return 1;
	}
	fd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
	if (fd < 0 || kill((pid_t)pid, SIGTERM) < 0) {
		if (fd >= 0)
			close(fd);
		unlink(file);
		fprintf(stderr, "lkvm introspect: %s: the pause had ended already\n",
			name);
		return 1;
	}
	/* It answers the PAUSE events, removes its record and ends. */
	{
		struct pollfd p = { .fd = fd, .events = POLLIN };

		poll(&p, 1, 5000);
		close(fd);
	}
	if (!access(file, F_OK)) {
		fprintf(stderr, "lkvm introspect: %s: the pausing process %d does not end\n",
			name, (int)pid);
		return 1;
	}
	printf("resumed\n");
	return 0;
}

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
	if (hold_file) {
		if (hold_in_background(hold_file))
			return 1;
		/* The holder: until 'unpause' signals it, or the guest
		 * ends (its side of the connection closes). */
		struct pollfd p = { .fd = kvmi_fd(c), .events = POLLRDHUP };

		while (!got_signal && poll(&p, 1, -1) <= 0)
			;
		if (!got_signal) {
			unlink(hold_file);
			return 0;
		}
	} else {
		printf("paused\n");
		fflush(stdout);
		while (!got_signal && read(STDIN_FILENO, buf, sizeof(buf)) > 0)
			;
	}
	/* Unpause: answer the PAUSE events (the vCPUs go on either way
	 * when the connection ends). */
	for (uint32_t i = 0; i < g->vcpu_count; i++) {
		struct kvmi_event ev;

		if (kvmi_wait_event(c, &ev, 1000))
			break;
		if (ev.is_vcpu)
			kvmi_reply_event(c, &ev, KVMI_EVENT_ACTION_CONTINUE,
					 NULL, 0);
	}
	if (hold_file)
		unlink(hold_file);
	return 0;
}

static int do_inject(struct kvmi_conn *c, uint16_t cpu, uint64_t nr,
		     uint64_t ec, uint64_t addr)
{
	int err = kvmi_inject_exception(c, cpu, (uint8_t)nr, (uint32_t)ec, addr);
	struct kvmi_event ev;

	if (err)
		return failed("inject", err);
	/* The TRAP event says it is on its way. */
	if (!kvmi_wait_event(c, &ev, TIMEOUT_MS) && ev.is_vcpu) {
		if (ev.event == KVMI_VCPU_EVENT_TRAP)
			printf("vcpu %u exception %u error_code 0x%x\n", ev.vcpu,
			       ev.data.trap.nr, ev.data.trap.error_code);
		kvmi_reply_event(c, &ev, KVMI_EVENT_ACTION_CONTINUE, NULL, 0);
	}
	return 0;
}

/* ---- watch ----------------------------------------------------------------- */

struct watch {
	uint64_t pages[64];
	unsigned int npages;
	uint32_t msrs[16];
	unsigned int nmsrs;
	uint64_t bps[4];
	unsigned int nbps;
	bool agent, pause, step;
	int action;
	const char *exec;
	uint64_t count;		/* 0: no limit */
};

static int parse_action(const char *s)
{
	if (!strcmp(s, "continue"))
		return KVMI_EVENT_ACTION_CONTINUE;
	if (!strcmp(s, "retry"))
		return KVMI_EVENT_ACTION_RETRY;
	if (!strcmp(s, "crash"))
		return KVMI_EVENT_ACTION_CRASH;
	return -1;
}

static int parse_what(struct watch *w, const char *s)
{
	uint64_t v;

	if (!strncmp(s, "write:", 6)) {
		if (w->npages == ARRAY_SIZE(w->pages) ||
		    !ctl_number("introspect", "write:GPA", s + 6, &v))
			return -1;
		w->pages[w->npages++] = v & ~0xfffull;
	} else if (!strncmp(s, "msr:", 4)) {
		if (w->nmsrs == ARRAY_SIZE(w->msrs) ||
		    !ctl_number("introspect", "msr:INDEX", s + 4, &v) ||
		    v > 0xffffffffull)
			return -1;
		w->msrs[w->nmsrs++] = (uint32_t)v;
	} else if (!strncmp(s, "break:", 6)) {
		if (w->nbps == ARRAY_SIZE(w->bps) ||
		    !ctl_number("introspect", "break:GVA", s + 6, &v))
			return -1;
		w->bps[w->nbps++] = v;
	} else if (!strcmp(s, "step")) {
		w->step = true;
	} else if (!strcmp(s, "agent")) {
		w->agent = true;
	} else if (!strcmp(s, "pause")) {
		w->pause = true;
	} else {
		fprintf(stderr, "lkvm introspect: watch '%s': write:GPA, msr:INDEX, break:GVA, step, agent or pause\n",
			s);
		return -1;
	}
	return 0;
}

static const char *action_name(int a)
{
	return a == KVMI_EVENT_ACTION_RETRY ? "retry" :
	       a == KVMI_EVENT_ACTION_CRASH ? "crash" : "continue";
}

static const char *event_kind(uint16_t event)
{
	switch (event) {
	case KVMI_VCPU_EVENT_PF:
		return "write";
	case KVMI_VCPU_EVENT_MSR:
		return "msr";
	case KVMI_LKVM_VCPU_EVENT_AGENT:
		return "agent";
	case KVMI_VCPU_EVENT_PAUSE:
		return "pause";
	case KVMI_VCPU_EVENT_TRAP:
		return "trap";
	case KVMI_VCPU_EVENT_BREAKPOINT:
		return "break";
	case KVMI_VCPU_EVENT_SINGLESTEP:
		return "step";
	}
	return "other";
}

/* The event as one JSON object, without its closing brace. */
static void event_json(const struct kvmi_event *ev, char *buf, size_t cap)
{
	int n;

	if (!ev->is_vcpu) {
		snprintf(buf, cap, "{\"event\":\"unhook\"");
		return;
	}
	n = snprintf(buf, cap, "{\"event\":\"%s\",\"vcpu\":%u,\"rip\":\"0x%llx\"",
		     event_kind(ev->event), ev->vcpu, ev->arch.regs.rip);
	if (n < 0 || (size_t)n >= cap)
		return;
	switch (ev->event) {
	case KVMI_VCPU_EVENT_PF:
		snprintf(buf + n, cap - n, ",\"gpa\":\"0x%llx\"",
			 ev->data.pf.gpa);
		break;
	case KVMI_VCPU_EVENT_MSR:
		snprintf(buf + n, cap - n,
			 ",\"msr\":\"0x%x\",\"old\":\"0x%llx\",\"new\":\"0x%llx\"",
			 ev->data.msr.msr, ev->data.msr.old_value,
			 ev->data.msr.new_value);
		break;
	case KVMI_LKVM_VCPU_EVENT_AGENT:
		snprintf(buf + n, cap - n, ",\"value\":%u",
			 ev->data.agent.value);
		break;
	case KVMI_VCPU_EVENT_BREAKPOINT:
		snprintf(buf + n, cap - n, ",\"gpa\":\"0x%llx\",\"insn_len\":%u",
			 ev->data.breakpoint.gpa, ev->data.breakpoint.insn_len);
		break;
	}
}

static __u64 *reg_by_name(struct kvm_regs *r, const char *name)
{
	/* struct kvm_regs has exactly this order. */
	static const char *const names[] = {
		"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
		"r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
		"rip", "rflags",
	};
	__u64 *f = &r->rax;

	for (unsigned int i = 0; i < ARRAY_SIZE(names); i++)
		if (!strcmp(name, names[i]))
			return &f[i];
	return NULL;
}

/*
 * The reply to one event: --action, or what --exec's command says.
 * Applies its register changes and unprotect; *val is an MSR's new value.
 */
static int decide(struct kvmi_conn *c, struct watch *w,
		  const struct kvmi_event *ev, const char *json, uint64_t *val)
{
	char line[512], *save = NULL, *tok;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	bool regs_read = false, regs_set = false;
	int action = w->action;
	uint32_t mode;
	FILE *p;

	if (!w->exec)
		return action;
	setenv("KVMI_EVENT", json, 1);
	fflush(stdout);
	p = popen(w->exec, "r");
	if (!p) {
		fprintf(stderr, "lkvm introspect: --exec: %s\n", strerror(errno));
		return action;
	}
	if (!fgets(line, sizeof(line), p))
		line[0] = 0;
	while (fgetc(p) != EOF)
		;
	pclose(p);
	for (tok = strtok_r(line, " \t\n", &save); tok;
	     tok = strtok_r(NULL, " \t\n", &save)) {
		char *eq = strchr(tok, '=');
		uint64_t v;
		__u64 *reg = NULL;

		if (parse_action(tok) >= 0) {
			action = parse_action(tok);
		} else if (!strcmp(tok, "unprotect") &&
			   ev->event == KVMI_VCPU_EVENT_PF) {
			uint64_t page = ev->data.pf.gpa & ~0xfffull;
			uint8_t rwx = 7;
			int err = kvmi_set_page_access(c, &page, &rwx, 1);

			if (err)
				failed("unprotect", err);
		} else if (eq && !strncmp(tok, "value=", 6)) {
			if (ctl_number("introspect", "value", eq + 1, &v))
				*val = v;
		} else if (eq) {
			*eq = 0;
			if (!regs_read && !kvmi_get_registers(c, ev->vcpu, &regs,
							      &sregs, NULL, 0,
							      &mode))
				regs_read = true;
			if (regs_read)
				reg = reg_by_name(&regs, tok);
			if (reg && ctl_number("introspect", tok, eq + 1, &v)) {
				*reg = v;
				regs_set = true;
			} else {
				fprintf(stderr, "lkvm introspect: --exec: cannot set '%s'\n",
					tok);
			}
		} else {
			fprintf(stderr, "lkvm introspect: --exec said '%s': not understood\n",
				tok);
		}
	}
	if (regs_set) {
		int err = kvmi_set_registers(c, ev->vcpu, &regs);

		if (err)
			failed("set registers", err);
	}
	return action;
}

static int do_watch(struct kvmi_conn *c, struct watch *w)
{
	const struct kvmi_guest *g = kvmi_guest(c);
	uint8_t ro = KVMI_PAGE_ACCESS_R | KVMI_PAGE_ACCESS_X;
	struct sigaction sa = { .sa_handler = on_signal };
	uint64_t seen = 0;
	int err = 0;

	for (uint32_t v = 0; v < g->vcpu_count && !err; v++) {
		uint16_t cpu = (uint16_t)v;

		if (w->npages)
			err = kvmi_control_vcpu_events(c, cpu,
						       KVMI_VCPU_EVENT_PF, true);
		if (!err && w->nmsrs)
			err = kvmi_control_vcpu_events(c, cpu,
						       KVMI_VCPU_EVENT_MSR, true);
		for (unsigned int i = 0; !err && i < w->nmsrs; i++)
			err = kvmi_control_msr(c, cpu, w->msrs[i], true);
		if (!err && w->agent)
			err = kvmi_control_vcpu_events(
				c, cpu, KVMI_LKVM_VCPU_EVENT_AGENT, true);
		if (!err && w->nbps)
			err = kvmi_control_vcpu_events(
				c, cpu, KVMI_VCPU_EVENT_BREAKPOINT, true);
		if (!err && w->step)
			err = kvmi_control_singlestep(c, cpu, true);
	}
	for (unsigned int i = 0; !err && i < w->nbps; i++)
		err = kvmi_set_breakpoint(c, w->bps[i], true);
	if (!err)
		err = kvmi_control_vm_events(c, KVMI_VM_EVENT_UNHOOK, true);
	for (unsigned int i = 0; !err && i < w->npages; i++)
		err = kvmi_set_page_access(c, &w->pages[i], &ro, 1);
	for (uint32_t v = 0; !err && w->pause && v < g->vcpu_count; v++)
		err = kvmi_pause_vcpu(c, (uint16_t)v, false);
	if (err)
		return failed("watch", err);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	fprintf(stderr, "lkvm introspect: watching\n");
	while (!got_signal && (!w->count || seen < w->count)) {
		struct kvmi_event ev;
		char json[384];
		uint64_t val;
		int action;

		err = kvmi_wait_event(c, &ev, 500);
		if (err == -ETIMEDOUT)
			continue;
		if (err)
			return got_signal ? 0 : failed("watch", err);
		event_json(&ev, json, sizeof(json) - 1);
		if (!ev.is_vcpu) {
			printf("%s}\n", json);	/* UNHOOK: let go */
			break;
		}
		strcat(json, "}");
		val = ev.data.msr.new_value;
		action = decide(c, w, &ev, json, &val);
		if (!(kvmi_event_actions(ev.event) & (1u << action)))
			action = KVMI_EVENT_ACTION_CONTINUE;
		json[strlen(json) - 1] = 0;
		printf("%s,\"action\":\"%s\"", json, action_name(action));
		if (ev.event == KVMI_VCPU_EVENT_MSR)
			printf(",\"value\":\"0x%" PRIx64 "\"", val);
		printf("}\n");
		fflush(stdout);
		err = kvmi_reply_event(c, &ev, (uint8_t)action,
				       ev.event == KVMI_VCPU_EVENT_MSR ? &val :
									 NULL,
				       ev.event == KVMI_VCPU_EVENT_MSR ?
					       sizeof(val) : 0);
		if (err)
			return failed("reply", err);
		seen++;
	}
	return 0;
}


int cmd_introspect(int argc, char **argv)
{
	struct introspect_opts o = { 0 };
	struct option_group g = { NULL, introspect_options, &o };
	char *pos[MAX_POS] = { NULL };
	char sock_path[4096], cookie_path[4096], hold_path[4200];
	const char *name = NULL;
	unsigned char *rbuf = NULL;
	unsigned char *wbuf = NULL;
	uint64_t cpu = 0, a = 0, b = 0, d = 0;
	struct watch w = { .action = KVMI_EVENT_ACTION_CONTINUE };
	size_t wlen = 0;
	struct kvmi_conn *c;
	const char *cmd;
	int np, err, ret = 1;

	if (ctl_wants_help(argc, argv)) {
		help_introspect(stdout);
		return 0;
	}
	np = ctl_parse_args("introspect", argc, argv, &g, 1, pos, MAX_POS);
	if (np < 0)
		return 1;
	if (!o.socket) {
		/* lkvm introspect NAME COMMAND: the guest's registry entry,
		 * as `lkvm run --name NAME --introspect listen` made it. */
		if (np < 1 || !registry_name_valid(pos[0])) {
			fprintf(stderr, "lkvm introspect: give a guest NAME or --socket PATH\n");
			return 1;
		}
		if (introspect_paths(pos[0], sock_path, sizeof(sock_path),
				     cookie_path, sizeof(cookie_path))) {
			fprintf(stderr, "lkvm introspect: %s: no registry directory\n",
				pos[0]);
			return 1;
		}
		if (access(sock_path, F_OK)) {
			fprintf(stderr, "lkvm introspect: %s: no such guest with introspection (lkvm run --name %s --introspect listen)\n",
				pos[0], pos[0]);
			return 1;
		}
		o.socket = sock_path;
		name = pos[0];
		if (!o.cookie)
			o.cookie = cookie_path;
		memmove(pos, pos + 1, (MAX_POS - 1) * sizeof(pos[0]));
		np--;
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
		if (o.detach) {
			if (strcmp(cmd, "pause"))
				goto usage;
			snprintf(hold_path, sizeof(hold_path), "%s.pause",
				 o.socket);
			if (!access(hold_path, F_OK)) {
				fprintf(stderr, "lkvm introspect: %s: paused already ('unpause' first)\n",
					name ? name : o.socket);
				return 1;
			}
			hold_file = hold_path;
		}
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
			int hi = hex_digit(pos[2][i]), lo = hex_digit(pos[2][i + 1]);

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
	} else if (!strcmp(cmd, "inject")) {
		if (np < 2 || np > 4 ||
		    !ctl_number("introspect", "VEC", pos[1], &a) || a > 31 ||
		    (np > 2 && !ctl_number("introspect", "ERR", pos[2], &b)) ||
		    b > 0xffffffffull ||
		    (np > 3 && !ctl_number("introspect", "ADDR", pos[3], &d)))
			goto usage;
	} else if (!strcmp(cmd, "watch") || !strcmp(cmd, "protect") ||
		   !strcmp(cmd, "msr") || !strcmp(cmd, "break") ||
		   !strcmp(cmd, "step")) {
		int first = 1;
		char what[64];

		if (!strcmp(cmd, "protect") || !strcmp(cmd, "break")) {
			if (np != 2)
				goto usage;
			snprintf(what, sizeof(what), "%s:%s",
				 cmd[0] == 'p' ? "write" : "break", pos[1]);
			pos[1] = what;
		} else if (!strcmp(cmd, "step")) {
			if (np != 1)
				goto usage;
			w.step = true;
		} else if (!strcmp(cmd, "msr")) {
			if (np != 3 || strcmp(pos[1], "watch"))
				goto usage;
			snprintf(what, sizeof(what), "msr:%s", pos[2]);
			pos[2] = what;
			first = 2;
		} else if (np < 2) {
			goto usage;
		}
		for (int i = first; i < np; i++)
			if (parse_what(&w, pos[i]))
				goto usage;
		if (o.action && (w.action = parse_action(o.action)) < 0) {
			fprintf(stderr, "lkvm introspect: --action %s: continue, retry or crash\n",
				o.action);
			return 1;
		}
		if (o.count && !ctl_number("introspect", "--count", o.count,
					   &w.count))
			return 1;
		w.exec = o.exec;
		cmd = "watch";
	} else if (!strcmp(cmd, "unpause")) {
		if (np != 1)
			goto usage;
		snprintf(hold_path, sizeof(hold_path), "%s.pause", o.socket);
		return do_unpause(hold_path, name ? name : o.socket);
	} else {
		fprintf(stderr, "lkvm introspect: unknown command '%s'\n", cmd);
		return 1;
	}

	if (!strcmp(cmd, "read") && o.virt && !(rbuf = malloc(b))) {
		free(wbuf);
		return failed("read", -ENOMEM);
	}
	err = kvmi_connect(o.socket, o.cookie, TIMEOUT_MS, &c);
	if (err) {
		/* Connecting and the handshake fail on this side: errno. */
		free(wbuf);
		free(rbuf);
		fprintf(stderr, "lkvm introspect: %s: %s\n", o.socket,
			strerror(-err));
		return 1;
	}
	kvmi_set_timeout(c, TIMEOUT_MS);
	if (o.socket_events)
		kvmi_set_event_channel(c, false);
	if (!strcmp(cmd, "info"))
		ret = do_info(c);
	else if (!strcmp(cmd, "regs"))
		ret = do_regs(c, (uint16_t)cpu);
	else if (!strcmp(cmd, "read"))
		ret = o.virt ? virt_access(c, (uint16_t)cpu, a, rbuf, b, false) :
			       do_read(c, a, b, o.mapped);
	else if (!strcmp(cmd, "write"))
		ret = o.virt ? virt_access(c, (uint16_t)cpu, a, wbuf, wlen, true) :
			       do_write(c, a, wbuf, wlen);
	else if (!strcmp(cmd, "translate"))
		ret = do_translate(c, (uint16_t)cpu, a);
	else if (!strcmp(cmd, "pause"))
		ret = do_pause(c);
	else if (!strcmp(cmd, "inject"))
		ret = do_inject(c, (uint16_t)cpu, a, b, d);
	else if (!strcmp(cmd, "watch"))
		ret = do_watch(c, &w);
	kvmi_close(c);
	free(wbuf);
	free(rbuf);
	return ret;
usage:
	fprintf(stderr, "lkvm introspect: wrong arguments for '%s'; see 'lkvm help introspect'\n",
		cmd);
	free(wbuf);
	return 1;
}
