// SPDX-License-Identifier: GPL-2.0
/*
 * `lkvm run --gdb [HOST:]PORT[,wait]`: a GDB remote-serial-protocol stub
 * (docs/gdb.md). One debugger at a time connects over TCP (127.0.0.1 by
 * default) and sees one thread per vCPU, the x86-64 registers in the
 * layout GDB expects (also described by the target.xml it may read),
 * guest memory at virtual addresses through the vCPU's page tables,
 * hardware breakpoints and watchpoints, single step, continue and Ctrl-C.
 *
 * All-stop: when one vCPU stops (a breakpoint, a step, Ctrl-C) the stub
 * holds every vCPU (VCPU_HOLD_DEBUGGER) before it answers. The stub has a
 * thread of its own and reaches vCPUs only through the vCPU-control and
 * guest-debug layers (lkvm/vcpu.h): a debug exit calls on_debug() on the
 * vCPU's thread, which takes the holds, records why and wakes the stub's
 * thread; the vCPU parks before it re-enters the guest.
 *
 * The client is not trusted: packets are bounded, checksums checked, and
 * a client that sends too much garbage is dropped. Whenever a client
 * goes (detach, kill, disconnect, dropped), its breakpoints and steps are
 * removed and the guest runs on.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "lkvm/seccomp.h"
#include "lkvm/device.h"
#include "lkvm/machine.h"
#include "lkvm/options.h"
#include "lkvm/util.h"
#include "lkvm/vcpu.h"
#include "lkvm/x86.h"

/* The longest packet body either side sends (advertised as PacketSize). */
#define PKT_MAX 8192
/* A client is dropped after this many bytes outside packets, or this many
 * bad checksums in a row. */
#define GARBAGE_MAX 4096
#define BAD_CSUM_MAX 8
/* How long the stub waits for vCPUs to stop. */
#define HOLD_MS 2000
/* How often the idle thread looks whether the machine stops. */
#define POLL_MS 200
/* How long a reply may wait for a client that does not read. */
#define SEND_TIMEOUT_S 5

#define SIGTRAP_NR 5
#define SIGINT_NR 2

struct gdb_cfg {
	const char *spec;	/* --gdb [HOST:]PORT[,wait] */
	struct gdb *g;
};

/* Where a watchpoint came from, for the stop reply. */
struct gdb_watch {
	uint64_t addr;
	unsigned int len;
	char type;		/* '2' write, '3' read, '4' access; 0: free */
};

struct gdb {
	struct machine *m;
	struct in_addr addr;
	unsigned int port;
	bool wait;		/* hold the guest until a debugger attaches */
	int listen_fd, conn_fd;
	int wake[2];		/* on_debug() and exit -> the thread */
	pthread_t thread;
	bool thread_started;
	bool quit;		/* atomic: device exit ends the thread */

	pthread_mutex_t lock;	/* below, shared with on_debug() */
	bool attached;		/* a client is connected */
	bool *held;		/* per vCPU: the stub holds it */
	bool *pending;		/* per vCPU: a stop not told yet */
	struct vcpu_debug_hit *hit;	/* per vCPU: why */

	/* The thread's own. */
	bool engaged;		/* the client has sent a valid packet */
	bool running;		/* resumed; the client waits for a stop */
	bool noack;
	bool xml_read;		/* the client knows the registers past mxcsr */
	unsigned int cur_g;	/* vCPU of register and memory access */
	int last_sig;
	unsigned int last_vcpu;
	struct vcpu_debug_hit last_hit;	/* of the last stop */
	struct gdb_watch watch[VCPU_DEBUG_MAX_BP];
	unsigned int garbage, bad_csum;
	/* Packet being read. */
	enum { RX_IDLE, RX_DATA, RX_CSUM1, RX_CSUM2 } rx;
	char pkt[PKT_MAX + 1];
	size_t pkt_len;
	bool pkt_overflow;
	uint8_t sum, csum;
	char out[PKT_MAX + 1];
	char frame[PKT_MAX + 4];	/* $out#cs */
};

static const struct device_ops gdb_ops;

static const struct option gdb_options[] = {
	{ .name = "gdb", .type = OPT_STRING,
	  .offset = offsetof(struct gdb_cfg, spec),
	  .argname = "[HOST:]PORT[,wait]",
	  .help = "serve the GDB remote protocol on TCP PORT (0: any free one; host 127.0.0.1 by default); wait: hold the guest until a debugger attaches (docs/gdb.md)" },
	OPTION_END,
};

/* ---- options ------------------------------------------------------------- */

static int parse_spec(struct gdb *g, const char *spec)
{
	char buf[128], *colon, *comma, *end;
	const char *port;
	unsigned long p;

	if (strlen(spec) >= sizeof(buf)) {
		pr_err("--gdb '%s': too long", spec);
		return -EINVAL;
	}
	strcpy(buf, spec);
	comma = strchr(buf, ',');
	if (comma) {
		*comma = 0;
		if (strcmp(comma + 1, "wait")) {
			pr_err("--gdb '%s': unknown setting '%s' (only 'wait')",
			       spec, comma + 1);
			return -EINVAL;
		}
		g->wait = true;
	}
	g->addr.s_addr = htonl(INADDR_LOOPBACK);
	colon = strrchr(buf, ':');
	port = buf;
	if (colon) {
		*colon = 0;
		port = colon + 1;
		if (inet_pton(AF_INET, buf, &g->addr) != 1) {
			pr_err("--gdb '%s': '%s' is not an IPv4 address", spec,
			       buf);
			return -EINVAL;
		}
	}
	errno = 0;
	p = strtoul(port, &end, 10);
	if (!*port || *end || errno || p > 65535 || port[0] == '-' ||
	    port[0] == '+') {
		pr_err("--gdb '%s': the port must be a number from 0 to 65535",
		       spec);
		return -EINVAL;
	}
	g->port = (unsigned int)p;
	return 0;
}

/* ---- registers: GDB's amd64 layout ----------------------------------------- */

/*
 * Register numbers and sizes as GDB's i386:x86-64 description orders
 * them (the no-XML default, and target.xml below): 16 general registers,
 * rip, eflags, 6 segment selectors, 8 x87 registers and 8 x87 control
 * words, 16 xmm registers, mxcsr.
 */
#define R_RIP 16
#define R_EFLAGS 17
#define R_SEG 18
#define R_ST 24
#define R_FCTRL 32
#define R_XMM 40
#define R_MXCSR 56
#define R_NUM_AMD64 57
/* Described only by target.xml: fs_base, gs_base, then cr0, cr2, cr3,
 * cr4 and efer (read-only), for looking at a kernel's state. */
#define R_FS_BASE 57
#define R_CR0 59
#define R_EFER 63
#define R_NUM 64

static unsigned int reg_size(unsigned int n)
{
	if (n <= R_RIP)
		return 8;
	if (n < R_ST)
		return 4;
	if (n < R_FCTRL)
		return 10;
	if (n < R_XMM)
		return 4;
	if (n < R_MXCSR)
		return 16;
	if (n == R_MXCSR)
		return 4;
	return n < R_NUM ? 8 : 0;
}

/* GDB's rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp, r8-r15 in kvm_regs. */
static __u64 *gpr(struct kvm_regs *r, unsigned int n)
{
	__u64 *const map[16] = {
		&r->rax, &r->rbx, &r->rcx, &r->rdx, &r->rsi, &r->rdi,
		&r->rbp, &r->rsp, &r->r8, &r->r9, &r->r10, &r->r11,
		&r->r12, &r->r13, &r->r14, &r->r15,
	};

	return map[n];
}

static struct kvm_segment *seg(struct kvm_sregs *s, unsigned int n)
{
	struct kvm_segment *const map[6] = {
		&s->cs, &s->ss, &s->ds, &s->es, &s->fs, &s->gs,
	};

	return map[n];
}

/* The x87 tag word from KVM's abridged one: valid (00) or empty (11). */
static uint32_t full_tag(uint8_t abridged)
{
	uint32_t t = 0;

	for (int i = 0; i < 8; i++)
		if (!(abridged & (1u << i)))
			t |= 3u << (2 * i);
	return t;
}

/* Writes register n of s into b (reg_size(n) bytes, little-endian). */
static void reg_get(struct vcpu_regs *s, unsigned int n, uint8_t *b)
{
	struct kvm_fpu *f = &s->fpu;

	memset(b, 0, 16);
	if (n < 16)
		put_le64(b, *gpr(&s->regs, n));
	else if (n == R_RIP)
		put_le64(b, s->regs.rip);
	else if (n == R_EFLAGS)
		put_le32(b, (uint32_t)s->regs.rflags);
	else if (n < R_ST)
		put_le32(b, seg(&s->sregs, n - R_SEG)->selector);
	else if (n < R_FCTRL)
		memcpy(b, f->fpr[n - R_ST], 10);
	else if (n < R_XMM) {
		static const unsigned int fcw = 0, fsw = 1, ftag = 2, fioff = 4,
					  fooff = 6, fop = 7;
		unsigned int i = n - R_FCTRL;
		uint32_t v = 0;

		if (i == fcw)
			v = f->fcw;
		else if (i == fsw)
			v = f->fsw;
		else if (i == ftag)
			v = full_tag(f->ftwx);
		else if (i == fioff)
			v = (uint32_t)f->last_ip;
		else if (i == fooff)
			v = (uint32_t)f->last_dp;
		else if (i == fop)
			v = f->last_opcode;
		put_le32(b, v);
	} else if (n < R_MXCSR)
		memcpy(b, f->xmm[n - R_XMM], 16);
	else if (n == R_MXCSR)
		put_le32(b, f->mxcsr);
	else if (n < R_CR0)
		put_le64(b, n == R_FS_BASE ? s->sregs.fs.base : s->sregs.gs.base);
	else {
		const __u64 sys[] = { s->sregs.cr0, s->sregs.cr2, s->sregs.cr3,
				      s->sregs.cr4, s->sregs.efer };

		put_le64(b, sys[n - R_CR0]);
	}
}

/*
 * Sets register n of s from b. The selectors, and the x87 words GDB
 * shows but KVM keeps otherwise, are accepted only unchanged: loading a
 * segment needs a descriptor, which GDB does not give. So are the
 * segment bases and system registers, which are there to be looked at.
 */
static int reg_set(struct vcpu_regs *s, unsigned int n, const uint8_t *b)
{
	struct kvm_fpu *f = &s->fpu;
	uint8_t now[16];

	if (n < 16)
		*gpr(&s->regs, n) = get_le64(b);
	else if (n == R_RIP)
		s->regs.rip = get_le64(b);
	else if (n == R_EFLAGS)
		s->regs.rflags = get_le32(b) | 2;	/* bit 1 is fixed */
	else if (n < R_ST || (n > R_FCTRL + 1 && n < R_XMM) || n > R_MXCSR) {
		reg_get(s, n, now);
		return memcmp(now, b, reg_size(n)) ? -EINVAL : 0;
	} else if (n < R_FCTRL)
		memcpy(f->fpr[n - R_ST], b, 10);
	else if (n == R_FCTRL)
		f->fcw = (uint16_t)get_le32(b);
	else if (n == R_FCTRL + 1)
		f->fsw = (uint16_t)get_le32(b);
	else if (n < R_MXCSR)
		memcpy(f->xmm[n - R_XMM], b, 16);
	else
		f->mxcsr = get_le32(b);
	return 0;
}

#define REG_STATE (VCPU_STATE_REGS | VCPU_STATE_SREGS | VCPU_STATE_FPU)

static const char target_xml[] =
	"<?xml version=\"1.0\"?>"
	"<!DOCTYPE target SYSTEM \"gdb-target.dtd\">"
	"<target><architecture>i386:x86-64</architecture>"
	"<feature name=\"org.gnu.gdb.i386.core\">"
	"<flags id=\"eflags\" size=\"4\">"
	"<field name=\"CF\" start=\"0\" end=\"0\"/>"
	"<field name=\"PF\" start=\"2\" end=\"2\"/>"
	"<field name=\"AF\" start=\"4\" end=\"4\"/>"
	"<field name=\"ZF\" start=\"6\" end=\"6\"/>"
	"<field name=\"SF\" start=\"7\" end=\"7\"/>"
	"<field name=\"TF\" start=\"8\" end=\"8\"/>"
	"<field name=\"IF\" start=\"9\" end=\"9\"/>"
	"<field name=\"DF\" start=\"10\" end=\"10\"/>"
	"<field name=\"OF\" start=\"11\" end=\"11\"/>"
	"<field name=\"NT\" start=\"14\" end=\"14\"/>"
	"<field name=\"RF\" start=\"16\" end=\"16\"/>"
	"<field name=\"VM\" start=\"17\" end=\"17\"/>"
	"<field name=\"AC\" start=\"18\" end=\"18\"/>"
	"<field name=\"ID\" start=\"21\" end=\"21\"/>"
	"</flags>"
	"<reg name=\"rax\" bitsize=\"64\" type=\"int64\"/>"
	"<reg name=\"rbx\" bitsize=\"64\" type=\"int64\"/>"
	"<reg name=\"rcx\" bitsize=\"64\" type=\"int64\"/>"
	"<reg name=\"rdx\" bitsize=\"64\" type=\"int64\"/>"
	"<reg name=\"rsi\" bitsize=\"64\" type=\"int64\"/>"
	"<reg name=\"rdi\" bitsize=\"64\" type=\"int64\"/>"
	"<reg name=\"rbp\" bitsize=\"64\" type=\"data_ptr\"/>"
	"<reg name=\"rsp\" bitsize=\"64\" type=\"data_ptr\"/>"
	"<reg name=\"r8\" bitsize=\"64\" type=\"int64\"/>"
	"<reg name=\"r9\" bitsize=\"64\" type=\"int64\"/>"
	"<reg name=\"r10\" bitsize=\"64\" type=\"int64\"/>"
	"<reg name=\"r11\" bitsize=\"64\" type=\"int64\"/>"
	"<reg name=\"r12\" bitsize=\"64\" type=\"int64\"/>"
	"<reg name=\"r13\" bitsize=\"64\" type=\"int64\"/>"
	"<reg name=\"r14\" bitsize=\"64\" type=\"int64\"/>"
	"<reg name=\"r15\" bitsize=\"64\" type=\"int64\"/>"
	"<reg name=\"rip\" bitsize=\"64\" type=\"code_ptr\"/>"
	"<reg name=\"eflags\" bitsize=\"32\" type=\"eflags\"/>"
	"<reg name=\"cs\" bitsize=\"32\" type=\"int32\"/>"
	"<reg name=\"ss\" bitsize=\"32\" type=\"int32\"/>"
	"<reg name=\"ds\" bitsize=\"32\" type=\"int32\"/>"
	"<reg name=\"es\" bitsize=\"32\" type=\"int32\"/>"
	"<reg name=\"fs\" bitsize=\"32\" type=\"int32\"/>"
	"<reg name=\"gs\" bitsize=\"32\" type=\"int32\"/>"
	"<reg name=\"st0\" bitsize=\"80\" type=\"i387_ext\"/>"
	"<reg name=\"st1\" bitsize=\"80\" type=\"i387_ext\"/>"
	"<reg name=\"st2\" bitsize=\"80\" type=\"i387_ext\"/>"
	"<reg name=\"st3\" bitsize=\"80\" type=\"i387_ext\"/>"
	"<reg name=\"st4\" bitsize=\"80\" type=\"i387_ext\"/>"
	"<reg name=\"st5\" bitsize=\"80\" type=\"i387_ext\"/>"
	"<reg name=\"st6\" bitsize=\"80\" type=\"i387_ext\"/>"
	"<reg name=\"st7\" bitsize=\"80\" type=\"i387_ext\"/>"
	"<reg name=\"fctrl\" bitsize=\"32\" type=\"int\" group=\"float\"/>"
	"<reg name=\"fstat\" bitsize=\"32\" type=\"int\" group=\"float\"/>"
	"<reg name=\"ftag\" bitsize=\"32\" type=\"int\" group=\"float\"/>"
	"<reg name=\"fiseg\" bitsize=\"32\" type=\"int\" group=\"float\"/>"
	"<reg name=\"fioff\" bitsize=\"32\" type=\"int\" group=\"float\"/>"
	"<reg name=\"foseg\" bitsize=\"32\" type=\"int\" group=\"float\"/>"
	"<reg name=\"fooff\" bitsize=\"32\" type=\"int\" group=\"float\"/>"
	"<reg name=\"fop\" bitsize=\"32\" type=\"int\" group=\"float\"/>"
	"</feature><feature name=\"org.gnu.gdb.i386.sse\">"
	"<reg name=\"xmm0\" bitsize=\"128\" type=\"uint128\"/>"
	"<reg name=\"xmm1\" bitsize=\"128\" type=\"uint128\"/>"
	"<reg name=\"xmm2\" bitsize=\"128\" type=\"uint128\"/>"
	"<reg name=\"xmm3\" bitsize=\"128\" type=\"uint128\"/>"
	"<reg name=\"xmm4\" bitsize=\"128\" type=\"uint128\"/>"
	"<reg name=\"xmm5\" bitsize=\"128\" type=\"uint128\"/>"
	"<reg name=\"xmm6\" bitsize=\"128\" type=\"uint128\"/>"
	"<reg name=\"xmm7\" bitsize=\"128\" type=\"uint128\"/>"
	"<reg name=\"xmm8\" bitsize=\"128\" type=\"uint128\"/>"
	"<reg name=\"xmm9\" bitsize=\"128\" type=\"uint128\"/>"
	"<reg name=\"xmm10\" bitsize=\"128\" type=\"uint128\"/>"
	"<reg name=\"xmm11\" bitsize=\"128\" type=\"uint128\"/>"
	"<reg name=\"xmm12\" bitsize=\"128\" type=\"uint128\"/>"
	"<reg name=\"xmm13\" bitsize=\"128\" type=\"uint128\"/>"
	"<reg name=\"xmm14\" bitsize=\"128\" type=\"uint128\"/>"
	"<reg name=\"xmm15\" bitsize=\"128\" type=\"uint128\"/>"
	"<reg name=\"mxcsr\" bitsize=\"32\" type=\"int\" group=\"vector\"/>"
	"</feature><feature name=\"org.gnu.gdb.i386.segments\">"
	"<reg name=\"fs_base\" bitsize=\"64\" type=\"int\"/>"
	"<reg name=\"gs_base\" bitsize=\"64\" type=\"int\"/>"
	"</feature><feature name=\"org.lkvm.x86.system\">"
	"<reg name=\"cr0\" bitsize=\"64\" type=\"uint64\" group=\"system\"/>"
	"<reg name=\"cr2\" bitsize=\"64\" type=\"uint64\" group=\"system\"/>"
	"<reg name=\"cr3\" bitsize=\"64\" type=\"uint64\" group=\"system\"/>"
	"<reg name=\"cr4\" bitsize=\"64\" type=\"uint64\" group=\"system\"/>"
	"<reg name=\"efer\" bitsize=\"64\" type=\"uint64\" group=\"system\"/>"
	"</feature></target>";

/* ---- hex ---------------------------------------------------------------------- */

static char *put_hex(char *o, const uint8_t *b, size_t n)
{
	static const char d[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		*o++ = d[b[i] >> 4];
		*o++ = d[b[i] & 15];
	}
	return o;
}

/* n bytes from 2n hex digits at *p; false on a bad digit. */
static bool get_hex(const char **p, uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int hi = hex_digit((*p)[0]), lo = hi < 0 ? -1 : hex_digit((*p)[1]);

		if (lo < 0)
			return false;
		b[i] = (uint8_t)(hi << 4 | lo);
		*p += 2;
	}
	return true;
}

/* A hex number (at most 16 digits) at *p; false when there is none. */
static bool get_num(const char **p, uint64_t *v)
{
	unsigned int n = 0;

	*v = 0;
	while (hex_digit(**p) >= 0) {
		if (++n > 16)
			return false;
		*v = *v << 4 | (uint64_t)hex_digit(**p);
		(*p)++;
	}
	return n > 0;
}

/* ---- the connection ----------------------------------------------------------- */

static bool send_all(struct gdb *g, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = send(g->conn_fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

/* Sends one packet whose body is s (no escaping needed: the stub never
 * sends '$', '#', '}' or '*' in a body). */
static bool send_packet(struct gdb *g, const char *s)
{
	uint8_t sum = 0;
	size_t len = strnlen(s, PKT_MAX);

	/* One write: with TCP_NODELAY each would be a segment. */
	g->frame[0] = '$';
	memcpy(g->frame + 1, s, len);
	for (size_t i = 0; i < len; i++)
		sum += (uint8_t)s[i];
	snprintf(g->frame + 1 + len, 4, "#%02x", sum);
	return send_all(g, g->frame, len + 4);
}

static struct vcpu *cur_vcpu(struct gdb *g)
{
	return &g->m->vcpus[g->cur_g];
}

/* With the lock: holds every vCPU the stub does not hold yet. */
static void hold_all_locked(struct gdb *g)
{
	for (unsigned int i = 0; i < g->m->ncpus; i++) {
		if (!g->held[i]) {
			vcpu_hold_async(&g->m->vcpus[i], VCPU_HOLD_DEBUGGER);
			g->held[i] = true;
		}
	}
}

static void release_locked(struct gdb *g, unsigned int i)
{
	if (g->held[i]) {
		g->held[i] = false;
		vcpu_release(&g->m->vcpus[i], VCPU_HOLD_DEBUGGER);
	}
}

static void wait_all_stopped(struct gdb *g)
{
	for (unsigned int i = 0; i < g->m->ncpus; i++)
		vcpu_wait_stopped(&g->m->vcpus[i], HOLD_MS);
}

/*
 * A debug exit on v's own thread: all vCPUs are held (v parks before it
 * re-enters the guest) and the stub's thread is told.
 */
static int on_debug(struct vcpu *v, enum vcpu_debug_owner who,
		    const struct vcpu_debug_hit *hit, void *opaque)
{
	struct gdb *g = opaque;

	(void)who;
	pthread_mutex_lock(&g->lock);
	if (g->attached) {
		g->hit[v->id] = *hit;
		g->pending[v->id] = true;
		hold_all_locked(g);
	}
	pthread_mutex_unlock(&g->lock);
	(void)!write(g->wake[1], "d", 1);
	return VCPU_DEBUG_RESUME;
}

/* Lets go of the guest: breakpoints, steps and holds (the lock not held). */
static void let_go(struct gdb *g)
{
	machine_debug_clear(g->m, VCPU_DEBUG_GDB);
	pthread_mutex_lock(&g->lock);
	for (unsigned int i = 0; i < g->m->ncpus; i++) {
		g->pending[i] = false;
		release_locked(g, i);
	}
	pthread_mutex_unlock(&g->lock);
	memset(g->watch, 0, sizeof(g->watch));
	g->running = false;
	g->engaged = false;
}

static void drop_client(struct gdb *g, const char *why)
{
	if (g->conn_fd < 0)
		return;
	if (why)
		pr_warn("gdb: client dropped: %s", why);
	pthread_mutex_lock(&g->lock);
	g->attached = false;
	pthread_mutex_unlock(&g->lock);
	let_go(g);
	close(g->conn_fd);
	g->conn_fd = -1;
}

/*
 * A new client. It stops the guest with its first valid packet, not by
 * connecting: something that only connects, or sends nothing but noise,
 * never stops the guest.
 */
static void attach(struct gdb *g, int fd)
{
	/* A client that stops reading cannot block the stub for long. */
	struct timeval tv = { .tv_sec = SEND_TIMEOUT_S };
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	g->conn_fd = fd;
	g->noack = false;
	g->xml_read = false;
	g->rx = RX_IDLE;
	g->garbage = g->bad_csum = 0;
	g->cur_g = 0;
	g->last_sig = SIGTRAP_NR;
	g->last_vcpu = 0;
	memset(&g->last_hit, 0, sizeof(g->last_hit));
	g->engaged = false;
	g->running = false;
	pthread_mutex_lock(&g->lock);
	g->attached = true;
	pthread_mutex_unlock(&g->lock);
}

/* The client's first valid packet: GDB expects a stopped target. */
static void engage(struct gdb *g)
{
	if (g->engaged)
		return;
	pthread_mutex_lock(&g->lock);
	hold_all_locked(g);
	pthread_mutex_unlock(&g->lock);
	wait_all_stopped(g);
	g->engaged = true;
}

/* ---- stop replies ---------------------------------------------------------------- */

/* The stop reply for vCPU i's hit (or a plain signal). */
static void stop_reply(struct gdb *g, char *o, size_t n)
{
	const struct vcpu_debug_hit *h = &g->last_hit;
	int len = snprintf(o, n, "T%02xthread:%x;", g->last_sig,
			   g->last_vcpu + 1);

	if (g->last_sig != SIGTRAP_NR || !h->nbp ||
	    h->bp[0].type == VCPU_BP_EXEC)
		return;
	for (int i = 0; i < VCPU_DEBUG_MAX_BP; i++) {
		const struct gdb_watch *w = &g->watch[i];

		if (w->type && w->addr == h->bp[0].addr) {
			snprintf(o + len, n - (size_t)len, "%s:%llx;",
				 w->type == '2' ? "watch" :
				 w->type == '3' ? "rwatch" : "awatch",
				 (unsigned long long)w->addr);
			return;
		}
	}
}

/* Tells the client about the first pending stop, if any: 1 when told,
 * 0 when none was pending, -1 when the client could not be told. */
static int report_pending(struct gdb *g)
{
	int found = -1;

	pthread_mutex_lock(&g->lock);
	for (unsigned int i = 0; i < g->m->ncpus && found < 0; i++) {
		/* The vCPU being stepped first, then the others. */
		unsigned int k = (g->cur_g + i) % g->m->ncpus;

		if (g->pending[k]) {
			g->pending[k] = false;
			g->last_hit = g->hit[k];
			found = (int)k;
		}
	}
	if (found >= 0)
		hold_all_locked(g);
	pthread_mutex_unlock(&g->lock);
	if (found < 0)
		return 0;
	wait_all_stopped(g);
	for (unsigned int i = 0; i < g->m->ncpus; i++)
		vcpu_debug_set_step(&g->m->vcpus[i], VCPU_DEBUG_GDB, false);
	g->running = false;
	g->last_sig = SIGTRAP_NR;
	g->last_vcpu = (unsigned int)found;
	g->cur_g = (unsigned int)found;
	stop_reply(g, g->out, sizeof(g->out));
	return send_packet(g, g->out) ? 1 : -1;
}

/* Ctrl-C: stops everything and says SIGINT (or a stop that came first). */
static bool interrupt(struct gdb *g)
{
	if (!g->running)
		return true;
	pthread_mutex_lock(&g->lock);
	hold_all_locked(g);
	pthread_mutex_unlock(&g->lock);
	wait_all_stopped(g);
	switch (report_pending(g)) {
	case 1:
		return true;
	case -1:
		return false;
	}
	for (unsigned int i = 0; i < g->m->ncpus; i++)
		vcpu_debug_set_step(&g->m->vcpus[i], VCPU_DEBUG_GDB, false);
	g->running = false;
	memset(&g->last_hit, 0, sizeof(g->last_hit));
	g->last_sig = SIGINT_NR;
	g->last_vcpu = g->cur_g;
	stop_reply(g, g->out, sizeof(g->out));
	return send_packet(g, g->out);
}

/*
 * Resumes: vCPU step (or -1) single-steps while the others stay held, or
 * every vCPU runs. A stop already pending is told at once instead.
 */
static bool resume(struct gdb *g, int step)
{
	if (step >= 0)
		vcpu_debug_set_step(&g->m->vcpus[step], VCPU_DEBUG_GDB, true);
	g->running = true;
	g->cur_g = step >= 0 ? (unsigned int)step : g->cur_g;
	switch (report_pending(g)) {
	case 1:
		return true;
	case -1:
		return false;
	}
	pthread_mutex_lock(&g->lock);
	for (unsigned int i = 0; i < g->m->ncpus; i++)
		if (step < 0 || (unsigned int)step == i)
			release_locked(g, i);
	pthread_mutex_unlock(&g->lock);
	return true;
}

/* ---- packets ------------------------------------------------------------------------- */

/* A thread id (1-based vCPU index; -1 and 0: any) to a vCPU index. */
static int thread_of(struct gdb *g, const char *p, bool any_ok)
{
	uint64_t t;

	if (!strcmp(p, "-1") || !strcmp(p, "0"))
		return any_ok ? (int)g->cur_g : -1;
	if (!get_num(&p, &t) || *p || t < 1 || t > g->m->ncpus)
		return -1;
	return (int)(t - 1);
}

static bool reply(struct gdb *g, const char *s)
{
	return send_packet(g, s);
}

static bool reply_err(struct gdb *g, int err)
{
	char e[8];

	snprintf(e, sizeof(e), "E%02x", (unsigned int)(err < 0 ? -err : err) & 0xff);
	return reply(g, e);
}

/* What g and G move: GDB's amd64 layout, and what target.xml adds once
 * the client has read it (a longer g would upset a client without it). */
static unsigned int nregs(const struct gdb *g)
{
	return g->xml_read ? R_NUM : R_NUM_AMD64;
}

static bool do_read_regs(struct gdb *g, int n)
{
	struct vcpu_regs s;
	uint8_t b[16];
	char *o = g->out;
	int err = vcpu_get_state(cur_vcpu(g), REG_STATE, &s);

	if (err)
		return reply_err(g, err);
	for (unsigned int i = n < 0 ? 0 : (unsigned int)n;
	     i < (n < 0 ? nregs(g) : (unsigned int)n + 1); i++) {
		reg_get(&s, i, b);
		o = put_hex(o, b, reg_size(i));
	}
	*o = 0;
	return reply(g, g->out);
}

/* G (n < 0, all from p) or P n=value. */
static bool do_write_regs(struct gdb *g, int n, const char *p)
{
	struct vcpu *v = cur_vcpu(g);
	struct vcpu_regs s;
	uint8_t b[16];
	int err = vcpu_get_state(v, REG_STATE, &s);

	if (err)
		return reply_err(g, err);
	for (unsigned int i = n < 0 ? 0 : (unsigned int)n;
	     i < (n < 0 ? nregs(g) : (unsigned int)n + 1) && *p; i++) {
		if (!get_hex(&p, b, reg_size(i)))
			return reply_err(g, EINVAL);
		if (reg_set(&s, i, b))
			return reply_err(g, EPERM);
	}
	if (*p)
		return reply_err(g, EINVAL);
	/* Selectors only ever stay as they are: sregs are not written. */
	err = vcpu_set_state(v, VCPU_STATE_REGS | VCPU_STATE_FPU, &s);
	return err ? reply_err(g, err) : reply(g, "OK");
}

/*
 * Up to len bytes at guest virtual address gva, page by page through the
 * current vCPU's page tables, into or out of buf. Returns how many bytes
 * were done (a short count stops at an unmapped page or outside RAM).
 */
static size_t guest_virt(struct gdb *g, uint64_t gva, uint8_t *buf,
			 size_t len, bool write)
{
	struct vcpu_regs s;
	struct x86_paging pg;
	size_t done = 0;

	if (vcpu_get_state(cur_vcpu(g), VCPU_STATE_SREGS, &s))
		return 0;
	pg = (struct x86_paging){ s.sregs.cr0, s.sregs.cr3, s.sregs.cr4,
				  s.sregs.efer };
	while (done < len) {
		uint64_t va = gva + done, gpa;
		size_t chunk = MIN(len - done, 4096 - (size_t)(va & 4095));
		uint8_t *p;

		if (x86_translate(g->m, &pg, va, &gpa))
			break;
		p = guest_ptr(g->m, gpa, chunk);
		for (unsigned int i = 0; p && write && i < g->m->nmem; i++)
			if (g->m->mem[i].readonly &&
			    gpa - g->m->mem[i].gpa < g->m->mem[i].size)
				p = NULL;	/* ROM stays as it is */
		if (!p)
			break;
		if (write)
			memcpy(p, buf + done, chunk);
		else
			memcpy(buf + done, p, chunk);
		done += chunk;
	}
	return done;
}

static bool do_read_mem(struct gdb *g, const char *p)
{
	uint8_t buf[PKT_MAX / 2];
	uint64_t addr, len;
	size_t got;

	if (!get_num(&p, &addr) || *p++ != ',' || !get_num(&p, &len) || *p)
		return reply_err(g, EINVAL);
	len = MIN(len, (uint64_t)sizeof(buf));
	if (!vcpu_stopped(cur_vcpu(g)))
		return reply_err(g, EBUSY);
	got = guest_virt(g, addr, buf, (size_t)len, false);
	if (!got && len)
		return reply_err(g, EFAULT);
	*put_hex(g->out, buf, got) = 0;
	return reply(g, g->out);
}

static bool do_write_mem(struct gdb *g, const char *p)
{
	uint8_t buf[PKT_MAX / 2];
	uint64_t addr, len;

	if (!get_num(&p, &addr) || *p++ != ',' || !get_num(&p, &len) ||
	    *p++ != ':' || len > sizeof(buf) || strlen(p) != len * 2 ||
	    !get_hex(&p, buf, (size_t)len))
		return reply_err(g, EINVAL);
	if (!vcpu_stopped(cur_vcpu(g)))
		return reply_err(g, EBUSY);
	if (guest_virt(g, addr, buf, (size_t)len, true) != len)
		return reply_err(g, EFAULT);
	return reply(g, "OK");
}

/* Z/z type,addr,kind: every kind on the debug registers. */
static bool do_break(struct gdb *g, bool insert, const char *p)
{
	char type = *p;
	uint64_t addr, kind;
	struct vcpu_bp bp;
	int err, slot = -1;

	if (type < '0' || type > '4' || p[1] != ',')
		return reply(g, "");
	p += 2;
	if (!get_num(&p, &addr) || *p++ != ',' || !get_num(&p, &kind) ||
	    (*p && *p != ';'))
		return reply_err(g, EINVAL);
	bp.addr = addr;
	bp.type = type <= '1' ? VCPU_BP_EXEC :
		  type == '2' ? VCPU_BP_WRITE : VCPU_BP_RW;
	bp.len = type <= '1' ? 1 : (unsigned int)MIN(kind, 16u);
	if (!insert) {
		err = machine_debug_del_bp(g->m, VCPU_DEBUG_GDB, &bp);
		for (int i = 0; type > '1' && i < VCPU_DEBUG_MAX_BP; i++)
			if (g->watch[i].type == type && g->watch[i].addr == addr)
				g->watch[i].type = 0;
		return err ? reply_err(g, err) : reply(g, "OK");
	}
	if (type > '1') {
		for (int i = 0; i < VCPU_DEBUG_MAX_BP && slot < 0; i++)
			if (!g->watch[i].type)
				slot = i;
		if (slot < 0)
			return reply_err(g, ENOSPC);
	}
	err = machine_debug_add_bp(g->m, VCPU_DEBUG_GDB, &bp);
	if (err)
		return reply_err(g, err);
	if (slot >= 0)
		g->watch[slot] = (struct gdb_watch){ addr, bp.len, type };
	return reply(g, "OK");
}

/* vCont;ACTION[:thread]...: a step of one vCPU, or continue all. */
static bool do_vcont(struct gdb *g, const char *p)
{
	int step = -1;

	if (!strcmp(p, "?"))
		return reply(g, "vCont;c;C;s;S");
	if (*p != ';')
		return reply(g, "");
	while (*p == ';') {
		char act = *++p;
		const char *colon;
		char tid[24];
		int v = (int)g->cur_g;

		if (act != 'c' && act != 'C' && act != 's' && act != 'S')
			return reply_err(g, EINVAL);
		p++;
		if (act == 'C' || act == 'S') {	/* signals are not sent */
			uint64_t sig;

			if (!get_num(&p, &sig))
				return reply_err(g, EINVAL);
		}
		colon = p;
		if (*colon == ':') {
			size_t n = strcspn(colon + 1, ";");

			if (n >= sizeof(tid))
				return reply_err(g, EINVAL);
			memcpy(tid, colon + 1, n);
			tid[n] = 0;
			v = thread_of(g, tid, true);
			if (v < 0)
				return reply_err(g, EINVAL);
			p = colon + 1 + n;
		}
		if ((act == 's' || act == 'S') && step < 0)
			step = v;
		else if (*p && *p != ';')
			return reply_err(g, EINVAL);
	}
	if (*p)
		return reply_err(g, EINVAL);
	return resume(g, step);
}

/* c/s [addr]: resume at addr when given. */
static bool do_resume(struct gdb *g, const char *p, bool step)
{
	uint64_t addr;

	if (*p) {
		struct vcpu_regs s;

		if (!get_num(&p, &addr) || *p ||
		    vcpu_get_state(cur_vcpu(g), VCPU_STATE_REGS, &s))
			return reply_err(g, EINVAL);
		s.regs.rip = addr;
		if (vcpu_set_state(cur_vcpu(g), VCPU_STATE_REGS, &s))
			return reply_err(g, EIO);
	}
	return resume(g, step ? (int)g->cur_g : -1);
}

static bool do_xfer(struct gdb *g, const char *p)
{
	const char *want = "qXfer:features:read:target.xml:";
	uint64_t off, len;
	size_t total = sizeof(target_xml) - 1;

	if (strncmp(p, want, strlen(want)))
		return reply(g, "");
	p += strlen(want);
	if (!get_num(&p, &off) || *p++ != ',' || !get_num(&p, &len) || *p)
		return reply_err(g, EINVAL);
	if (off >= total)
		return reply(g, "l");
	len = MIN(len, (uint64_t)(sizeof(g->out) - 2));
	len = MIN(len, total - off);
	g->out[0] = off + len < total ? 'm' : 'l';
	g->xml_read = true;
	memcpy(g->out + 1, target_xml + off, (size_t)len);
	g->out[len + 1] = 0;
	return reply(g, g->out);
}

static bool do_query(struct gdb *g, const char *p)
{
	char *o = g->out;

	if (!strncmp(p, "qSupported", 10)) {
		snprintf(o, sizeof(g->out),
			 "PacketSize=%x;qXfer:features:read+;QStartNoAckMode+",
			 PKT_MAX);
		return reply(g, o);
	}
	if (!strncmp(p, "qXfer:", 6))
		return do_xfer(g, p);
	if (!strcmp(p, "qAttached"))
		return reply(g, "1");
	if (!strcmp(p, "qC")) {
		snprintf(o, sizeof(g->out), "QC%x", g->cur_g + 1);
		return reply(g, o);
	}
	if (!strcmp(p, "qfThreadInfo")) {
		o += sprintf(o, "m");
		for (unsigned int i = 0; i < g->m->ncpus &&
		     o < g->out + sizeof(g->out) - 12; i++)
			o += sprintf(o, "%s%x", i ? "," : "", i + 1);
		return reply(g, g->out);
	}
	if (!strcmp(p, "qsThreadInfo"))
		return reply(g, "l");
	if (!strncmp(p, "qThreadExtraInfo,", 17)) {
		char name[32];
		int v = thread_of(g, p + 17, false);

		if (v < 0)
			return reply_err(g, EINVAL);
		snprintf(name, sizeof(name), "vCPU %d", v);
		*put_hex(o, (const uint8_t *)name, strlen(name)) = 0;
		return reply(g, o);
	}
	if (!strcmp(p, "QStartNoAckMode")) {
		bool ok = reply(g, "OK");

		g->noack = true;
		return ok;
	}
	return reply(g, "");
}

/* One checked packet; false when the client goes. */
static bool handle_packet(struct gdb *g, const char *p)
{
	if (g->running)	/* all-stop: only Ctrl-C while it runs */
		return reply_err(g, EBUSY);
	switch (p[0]) {
	case '?':
		stop_reply(g, g->out, sizeof(g->out));
		return reply(g, g->out);
	case 'g':
		return p[1] ? reply_err(g, EINVAL) : do_read_regs(g, -1);
	case 'G':
		return do_write_regs(g, -1, p + 1);
	case 'p':
	case 'P': {
		const char *q = p + 1;
		uint64_t n;

		if (!get_num(&q, &n) || n >= R_NUM ||
		    (p[0] == 'p' ? *q != 0 : *q++ != '='))
			return reply_err(g, EINVAL);
		return p[0] == 'p' ? do_read_regs(g, (int)n) :
				     do_write_regs(g, (int)n, q);
	}
	case 'm':
		return do_read_mem(g, p + 1);
	case 'M':
		return do_write_mem(g, p + 1);
	case 'Z':
	case 'z':
		return do_break(g, p[0] == 'Z', p + 1);
	case 'c':
	case 's':
		return do_resume(g, p + 1, p[0] == 's');
	case 'v':
		if (!strncmp(p, "vCont", 5))
			return do_vcont(g, p + 5);
		if (!strncmp(p, "vMustReplyEmpty", 15))
			return reply(g, "");
		return reply(g, "");
	case 'H': {
		int v = p[1] ? thread_of(g, p + 2, true) : -1;

		if ((p[1] != 'g' && p[1] != 'c') || v < 0)
			return reply_err(g, EINVAL);
		if (p[1] == 'g')
			g->cur_g = (unsigned int)v;
		return reply(g, "OK");
	}
	case 'T':
		return thread_of(g, p + 1, false) < 0 ? reply_err(g, ESRCH) :
							reply(g, "OK");
	case 'q':
	case 'Q':
		return do_query(g, p);
	case 'D':
		reply(g, "OK");
		return false;
	case 'k':
		return false;
	default:
		return reply(g, "");
	}
}

/* Feeds received bytes to the packet reader; false to drop the client. */
static bool receive(struct gdb *g, const uint8_t *buf, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t c = buf[i];

		switch (g->rx) {
		case RX_IDLE:
			if (c == '$') {
				g->rx = RX_DATA;
				g->pkt_len = 0;
				g->pkt_overflow = false;
				g->sum = 0;
			} else if (c == 0x03) {
				if (!interrupt(g))
					return false;
			} else if (c != '+' && c != '-' &&
				   ++g->garbage > GARBAGE_MAX) {
				drop_client(g, "garbage outside packets");
				return false;
			}
			break;
		case RX_DATA:
			if (c == '#') {
				g->rx = RX_CSUM1;
				break;
			}
			g->sum += c;
			if (g->pkt_len >= PKT_MAX) {
				drop_client(g, "packet too long");
				return false;
			}
			g->pkt[g->pkt_len++] = (char)c;
			break;
		case RX_CSUM1:
		case RX_CSUM2: {
			int d = hex_digit((char)c);

			if (d < 0) {
				drop_client(g, "bad checksum digit");
				return false;
			}
			if (g->rx == RX_CSUM1) {
				g->csum = (uint8_t)(d << 4);
				g->rx = RX_CSUM2;
				break;
			}
			g->csum |= (uint8_t)d;
			g->rx = RX_IDLE;
			if (g->csum != g->sum) {
				if (++g->bad_csum > BAD_CSUM_MAX) {
					drop_client(g, "bad checksums");
					return false;
				}
				if (!g->noack && !send_all(g, "-", 1))
					return false;
				break;
			}
			g->bad_csum = 0;
			g->pkt[g->pkt_len] = 0;
			/* A NUL inside a packet body is not protocol. */
			if (strlen(g->pkt) != g->pkt_len) {
				drop_client(g, "NUL in a packet");
				return false;
			}
			if (!g->noack && !send_all(g, "+", 1))
				return false;
			engage(g);
			if (!handle_packet(g, g->pkt))
				return false;
			break;
		}
		}
	}
	return true;
}

/* ---- the thread ------------------------------------------------------------------------- */

static void on_readable(struct gdb *g)
{
	uint8_t buf[4096];
	ssize_t n = recv(g->conn_fd, buf, sizeof(buf), MSG_DONTWAIT);

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0 || !receive(g, buf, (size_t)n))
		drop_client(g, NULL);
}

static void *gdb_thread(void *arg)
{
	struct gdb *g = arg;

	pthread_setname_np(pthread_self(), "gdb");
	while (!machine_stopping(g->m) &&
	       !__atomic_load_n(&g->quit, __ATOMIC_ACQUIRE)) {
		struct pollfd pfd[3] = {
			{ .fd = g->wake[0], .events = POLLIN },
			{ .fd = g->listen_fd, .events = POLLIN },
			{ .fd = g->conn_fd, .events = POLLIN },
		};
		int n = poll(pfd, g->conn_fd >= 0 ? 3 : 2, POLL_MS);

		seccomp_thread_enter(SECCOMP_IO);
		if (n < 0 && errno != EINTR)
			break;
		if (n <= 0)
			continue;
		if (pfd[0].revents & POLLIN) {
			char drain[64];

			(void)!read(g->wake[0], drain, sizeof(drain));
			if (g->conn_fd >= 0 && g->running &&
			    report_pending(g) < 0)
				drop_client(g, NULL);
		}
		/* The client first: one that has just closed is gone
		 * before the next is let in. */
		if (g->conn_fd >= 0 &&
		    (pfd[2].revents & (POLLIN | POLLHUP | POLLERR)))
			on_readable(g);
		if (pfd[1].revents & POLLIN) {
			int c = accept4(g->listen_fd, NULL, NULL, SOCK_CLOEXEC);

			if (c >= 0 && g->conn_fd >= 0)
				close(c);	/* one debugger at a time */
			else if (c >= 0)
				attach(g, c);
		}
	}
	if (g->conn_fd >= 0) {
		/* The guest has ended: W with its status. */
		char w[8];

		snprintf(w, sizeof(w), "W%02x", g->m->exit_status & 0xff);
		send_packet(g, w);
		drop_client(g, NULL);
	}
	return NULL;
}

/* ---- the device ---------------------------------------------------------------------------- */

static void free_gdb(struct gdb *g)
{
	if (!g)
		return;
	if (g->listen_fd >= 0)
		close(g->listen_fd);
	if (g->conn_fd >= 0)
		close(g->conn_fd);
	for (int i = 0; i < 2; i++)
		if (g->wake[i] >= 0)
			close(g->wake[i]);
	pthread_mutex_destroy(&g->lock);
	free(g->held);
	free(g->pending);
	free(g->hit);
	free(g);
}

static int gdb_check(struct machine *m, void *opaque)
{
	struct gdb_cfg *cfg = opaque;
	struct gdb *g;
	int err;

	if (!cfg->spec)
		return 0;
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->m = m;
	g->listen_fd = g->conn_fd = g->wake[0] = g->wake[1] = -1;
	pthread_mutex_init(&g->lock, NULL);
	err = parse_spec(g, cfg->spec);
	if (err) {
		free_gdb(g);
		return err;
	}
	cfg->g = g;
	return 0;
}

static int listen_tcp(struct gdb *g)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr = g->addr,
				  .sin_port = htons((uint16_t)g->port) };
	socklen_t len = sizeof(sa);
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fd, 1) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	g->port = ntohs(sa.sin_port);
	return fd;
}

static int gdb_init(struct machine *m)
{
	struct gdb_cfg *cfg = machine_dev_cfg(m, &gdb_ops);
	struct gdb *g = cfg ? cfg->g : NULL;
	char host[INET_ADDRSTRLEN];
	int err;

	if (!g)
		return 0;
	cfg->g = NULL;		/* set again once all is up */
	g->held = calloc(m->ncpus, sizeof(*g->held));
	g->pending = calloc(m->ncpus, sizeof(*g->pending));
	g->hit = calloc(m->ncpus, sizeof(*g->hit));
	if (!g->held || !g->pending || !g->hit ||
	    pipe2(g->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		err = -ENOMEM;
		pr_err("gdb: %s", strerror(-err));
		goto fail;
	}
	inet_ntop(AF_INET, &g->addr, host, sizeof(host));
	g->listen_fd = listen_tcp(g);
	if (g->listen_fd < 0) {
		err = g->listen_fd;
		pr_err("--gdb: cannot listen on %s:%u: %s", host, g->port,
		       strerror(-err));
		goto fail;
	}
	machine_debug_set_handler(m, VCPU_DEBUG_GDB, on_debug, g);
	if (g->wait) {
		/* Held before the vCPUs first run: the debugger sees the
		 * first instruction. */
		pthread_mutex_lock(&g->lock);
		hold_all_locked(g);
		pthread_mutex_unlock(&g->lock);
	}
	err = pthread_create(&g->thread, NULL, gdb_thread, g);
	if (err) {
		err = -err;
		pr_err("gdb: no thread: %s", strerror(-err));
		goto fail;
	}
	g->thread_started = true;
	pr_info("gdb: listening on %s:%u%s", host, g->port,
		g->wait ? ", the guest waits for the debugger" : "");
	cfg->g = g;
	return 0;
fail:
	machine_debug_set_handler(m, VCPU_DEBUG_GDB, NULL, NULL);
	free_gdb(g);
	return err;
}

static void gdb_exit(struct machine *m)
{
	struct gdb_cfg *cfg = machine_dev_cfg(m, &gdb_ops);
	struct gdb *g = cfg ? cfg->g : NULL;

	if (!g)
		return;
	if (g->thread_started) {
		__atomic_store_n(&g->quit, true, __ATOMIC_RELEASE);
		(void)!write(g->wake[1], "q", 1);
		pthread_join(g->thread, NULL);
	}
	machine_debug_set_handler(m, VCPU_DEBUG_GDB, NULL, NULL);
	free_gdb(g);
	cfg->g = NULL;
}

/* The stub thread's socket calls (lkvm/seccomp.h). */
static const struct seccomp_rule gdb_seccomp[] = {
	SECCOMP_SYSCALL(accept4, SECCOMP_IO),
	SECCOMP_SYSCALL(setsockopt, SECCOMP_IO),
	SECCOMP_SYSCALL(shutdown, SECCOMP_IO),
	SECCOMP_END,
};

static bool gdb_wanted(struct machine *m)
{
	struct gdb_cfg *cfg = machine_dev_cfg(m, &gdb_ops);

	return cfg && cfg->spec;
}

static const struct device_ops gdb_ops = {
	.name = "gdb",
	.seccomp = gdb_seccomp,
	.seccomp_wanted = gdb_wanted,
	.stage = DEV_STAGE_LATE,
	.options = gdb_options,
	.cfg_size = sizeof(struct gdb_cfg),
	.check = gdb_check,
	.init = gdb_init,
	.exit = gdb_exit,
};
DEVICE(gdb_ops);
