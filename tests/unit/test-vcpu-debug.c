// SPDX-License-Identifier: GPL-2.0
/*
 * The guest-debug layer (lkvm/vcpu.h, kvm/vcpu-debug.c): first the merge
 * of owners' breakpoints into the four debug registers, the DR7 encoding
 * and the routing of exits, on their own; then a real guest (flat,
 * real mode) that hits an instruction breakpoint and a write watchpoint,
 * is single-stepped, and sets TF itself, so that its own #DB reaches it
 * through lkvm as on a real CPU.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lkvm/machine.h"
#include "lkvm/vcpu.h"
#include "flat-guest.h"
#include "tap.h"

/* ---- the merge ------------------------------------------------------------ */

static struct vcpu_bp bp(uint64_t addr, enum vcpu_bp_type type,
			 unsigned int len)
{
	return (struct vcpu_bp){ .addr = addr, .type = type, .len = len };
}

static int nslots(const struct vcpu_debug_slots *s)
{
	int n = 0;

	for (int i = 0; i < VCPU_DEBUG_MAX_BP; i++)
		n += s->owners[i] != 0;
	return n;
}

static void test_merge(void)
{
	struct vcpu_debug_slots s = { 0 };
	struct kvm_guest_debug dbg;
	struct vcpu_bp x = bp(0x1000, VCPU_BP_EXEC, 1);
	struct vcpu_bp w = bp(0x2000, VCPU_BP_WRITE, 4);
	struct vcpu_bp b;

	b = bp(0x1000, VCPU_BP_EXEC, 2);
	CHECK(vcpu_debug_check_bp(&b) == -EINVAL,
	      "an instruction breakpoint has length 1");
	b = bp(0x2002, VCPU_BP_WRITE, 4);
	CHECK(vcpu_debug_check_bp(&b) == -EINVAL,
	      "a watchpoint is aligned to its length");
	b = bp(0x2000, VCPU_BP_RW, 3);
	CHECK(vcpu_debug_check_bp(&b) == -EINVAL, "lengths are 1, 2, 4, 8");
	b = bp(0x2000, (enum vcpu_bp_type)7, 1);
	CHECK(vcpu_debug_check_bp(&b) == -EINVAL, "an unknown type is refused");

	vcpu_debug_encode(&s, &dbg);
	CHECK(dbg.control == 0, "nothing set: guest debug off");

	CHECK(vcpu_debug_slots_add(&s, VCPU_DEBUG_GDB, &x) == 0 &&
	      vcpu_debug_slots_add(&s, VCPU_DEBUG_KVMI, &x) == 0 &&
	      nslots(&s) == 1 && s.owners[0] == 3,
	      "the same breakpoint of two owners shares one register");
	CHECK(vcpu_debug_slots_add(&s, VCPU_DEBUG_GDB, &x) == 0 &&
	      nslots(&s) == 1, "adding it again changes nothing");
	CHECK(vcpu_debug_slots_add(&s, VCPU_DEBUG_KVMI, &w) == 0, "a second");
	vcpu_debug_encode(&s, &dbg);
	/* DR7: bit 10 fixed; G0 (bit 1), R/W0 00, LEN0 00; G1 (bit 3),
	 * R/W1 01 (bits 21:20), LEN1 11 for 4 bytes (bits 23:22). */
	CHECK(dbg.control == (KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP) &&
	      dbg.arch.debugreg[0] == 0x1000 && dbg.arch.debugreg[1] == 0x2000 &&
	      dbg.arch.debugreg[7] == (0x400 | 0x2 | 0x8 | 0x00d00000),
	      "DR0-DR3 and DR7 encode them");
	b = bp(0x3000, VCPU_BP_RW, 8);
	CHECK(vcpu_debug_slots_add(&s, VCPU_DEBUG_GDB, &b) == 0, "a third");
	vcpu_debug_encode(&s, &dbg);
	CHECK(dbg.arch.debugreg[7] >> 24 == 0xb,
	      "read/write, 8 bytes: R/W 11, LEN 10");
	b = bp(0x4000, VCPU_BP_EXEC, 1);
	CHECK(vcpu_debug_slots_add(&s, VCPU_DEBUG_KVMI, &b) == 0, "a fourth");
	b = bp(0x5000, VCPU_BP_EXEC, 1);
	CHECK(vcpu_debug_slots_add(&s, VCPU_DEBUG_GDB, &b) == -ENOSPC &&
	      vcpu_debug_slots_add(&s, VCPU_DEBUG_KVMI, &b) == -ENOSPC,
	      "a fifth, of either owner, is refused with ENOSPC");
	CHECK(vcpu_debug_slots_add(&s, VCPU_DEBUG_KVMI, &x) == 0,
	      "... while sharing a taken one still works");
	CHECK(vcpu_debug_slots_del(&s, VCPU_DEBUG_GDB, &w) == -ENOENT,
	      "an owner cannot remove another's breakpoint");
	CHECK(vcpu_debug_slots_del(&s, VCPU_DEBUG_GDB, &x) == 0 &&
	      nslots(&s) == 4 && s.owners[0] == 2,
	      "removing a shared one keeps it for the other owner");
	s.step = 1u << VCPU_DEBUG_GDB;
	vcpu_debug_slots_clear(&s, VCPU_DEBUG_KVMI);
	CHECK(nslots(&s) == 1 && s.owners[2] == 1 && s.step == 1,
	      "clearing an owner leaves the other's");
	CHECK(vcpu_debug_slots_add(&s, VCPU_DEBUG_GDB, &b) == 0 &&
	      s.owners[0] == 1 && s.bp[0].addr == 0x5000,
	      "a freed register is reused");
	vcpu_debug_slots_clear(&s, VCPU_DEBUG_GDB);
	vcpu_debug_encode(&s, &dbg);
	CHECK(nslots(&s) == 0 && dbg.control == 0, "all cleared: debug off");
	s.step = 2;
	vcpu_debug_encode(&s, &dbg);
	CHECK(dbg.control == (KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP),
	      "a single step alone");
}

static void test_route(void)
{
	struct vcpu_debug_slots a = { 0 }, c;
	struct vcpu_debug_hit hit[VCPU_DEBUG_NR];
	struct kvm_debug_exit_arch ex = { .exception = 1, .pc = 0x2345 };
	struct vcpu_bp x = bp(0x1000, VCPU_BP_EXEC, 1);
	struct vcpu_bp w = bp(0x2000, VCPU_BP_WRITE, 4);
	unsigned int mask;
	bool stale;

	vcpu_debug_slots_add(&a, VCPU_DEBUG_GDB, &x);
	vcpu_debug_slots_add(&a, VCPU_DEBUG_KVMI, &x);
	vcpu_debug_slots_add(&a, VCPU_DEBUG_KVMI, &w);
	a.step = 1u << VCPU_DEBUG_GDB;
	c = a;

	ex.dr6 = 0xffff0ff0 | 2;	/* B1: the watchpoint */
	mask = vcpu_debug_route(&a, &c, &ex, hit, &stale);
	CHECK(mask == 1u << VCPU_DEBUG_KVMI && hit[VCPU_DEBUG_KVMI].nbp == 1 &&
	      hit[VCPU_DEBUG_KVMI].bp[0].addr == 0x2000 &&
	      hit[VCPU_DEBUG_KVMI].pc == 0x2345 && !hit[VCPU_DEBUG_KVMI].step,
	      "a watchpoint goes to its owner only");
	ex.dr6 = 0xffff0ff0 | 1;
	mask = vcpu_debug_route(&a, &c, &ex, hit, &stale);
	CHECK(mask == 3 && hit[0].nbp == 1 && hit[1].nbp == 1,
	      "a shared breakpoint goes to both owners");
	ex.dr6 = 0xffff0ff0 | (1u << 14);
	mask = vcpu_debug_route(&a, &c, &ex, hit, &stale);
	CHECK(mask == 1u << VCPU_DEBUG_GDB && hit[VCPU_DEBUG_GDB].step &&
	      hit[VCPU_DEBUG_GDB].nbp == 0, "a step goes to the stepping owner");
	vcpu_debug_slots_del(&c, VCPU_DEBUG_KVMI, &w);
	c.step = 0;
	ex.dr6 = 0xffff0ff0 | 2;
	mask = vcpu_debug_route(&a, &c, &ex, hit, &stale);
	CHECK(mask == 0 && stale,
	      "a watchpoint removed while its exit was on the way is dropped");
	ex.dr6 = 0xffff0ff0 | (1u << 14);
	mask = vcpu_debug_route(&a, &c, &ex, hit, &stale);
	CHECK(mask == 0 && stale, "... and so is a step switched off");
	a.step = 0;
	mask = vcpu_debug_route(&a, &c, &ex, hit, &stale);
	CHECK(mask == 0 && !stale,
	      "a step trap lkvm did not ask for is the guest's own");
	ex.exception = 3;
	mask = vcpu_debug_route(&a, &c, &ex, hit, &stale);
	CHECK(mask == 0 && !stale, "an int3 with no software breakpoints too");
	a.sw_bp = c.sw_bp = 1u << VCPU_DEBUG_KVMI;
	mask = vcpu_debug_route(&a, &c, &ex, hit, &stale);
	CHECK(mask == 1u << VCPU_DEBUG_KVMI && hit[VCPU_DEBUG_KVMI].sw_bp,
	      "an int3 goes to the owner of software breakpoints");
}

/* ---- a real guest ---------------------------------------------------------- */

/*
 * Real mode at 0x1000:0 (linear 0x10000):
 *   00 inc ebx              <- loop
 *   02 inc ebx              <- instruction breakpoint
 *   04 mov [0x100], bx      <- write watchpoint on 0x10100
 *   08 out 0x80, al
 *   0a cmp si, 1
 *   0d jne loop
 *   0f pushf; pop ax; or ax, 0x100; push ax; popf   (TF on)
 *   16 nop                  <- the guest's own #DB after this
 *   17 xor si, si
 *   19 jmp loop
 *   40 out 0x81, al         <- the guest's #DB handler (IVT entry 1):
 *   42 mov bp, sp              counts, clears TF in the saved FLAGS
 *   44 and word [bp+4], 0xfeff
 *   49 iret
 */
static const unsigned char code[0x4a] = {
	0x66, 0x43, 0x66, 0x43, 0x89, 0x1e, 0x00, 0x01, 0xe6, 0x80,
	0x83, 0xfe, 0x01, 0x75, 0xf1, 0x9c, 0x58, 0x0d, 0x00, 0x01,
	0x50, 0x9d, 0x90, 0x31, 0xf6, 0xeb, 0xe5,
	[0x40] = 0xe6, 0x81, 0x89, 0xe5, 0x81, 0x66, 0x04, 0xff, 0xfe, 0xcf,
};
#define BASE 0x10000ull

/* GDB's handler waits in an event, as a stub whose user looks around. */
static int gdb_handler(struct vcpu *v, enum vcpu_debug_owner who,
		       const struct vcpu_debug_hit *hit, void *opaque)
{
	struct vcpu_event ev = { .kind = 0xdb, .data = hit };

	(void)who;
	(void)opaque;
	return vcpu_event_wait(v, &ev, 5000) == VCPU_DEBUG_REINJECT ?
		       VCPU_DEBUG_REINJECT : VCPU_DEBUG_RESUME;
}

/* The introspection owner's handler records steps and answers at once. */
#define NSTEPS 12
static uint64_t step_pc[NSTEPS];
static unsigned int nsteps, kvmi_calls, kvmi_bp_hits;

static int kvmi_handler(struct vcpu *v, enum vcpu_debug_owner who,
			const struct vcpu_debug_hit *hit, void *opaque)
{
	(void)opaque;
	__atomic_add_fetch(&kvmi_calls, 1, __ATOMIC_SEQ_CST);
	if (hit->nbp)
		__atomic_add_fetch(&kvmi_bp_hits, 1, __ATOMIC_SEQ_CST);
	if (hit->step && nsteps < NSTEPS) {
		step_pc[nsteps] = hit->pc;
		if (++nsteps == NSTEPS)	/* from the vCPU's own thread */
			vcpu_debug_set_step(v, who, false);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
	}
	return VCPU_DEBUG_RESUME;
}

static unsigned int port81;

static void on_port81(struct io_region *r, struct kvm_vcpu *kv,
		      uint64_t off, void *data, unsigned int len, bool w)
{
	(void)r, (void)kv, (void)off, (void)data, (void)len;
	if (w)
		__atomic_add_fetch(&port81, 1, __ATOMIC_SEQ_CST);
}

/* The next GDB event, or NULL after 5 s. */
static struct vcpu_event *next_gdb(void)
{
	struct vcpu_event *ev = vcpu_event_next(&m, 5000);

	return ev && ev->kind == 0xdb ? ev : NULL;
}

/*
 * A paravirtual KVM (HOST-KVM.md) emulates CPL-0 code, and its emulator
 * does not check data breakpoints, and reports the step over an I/O
 * instruction one instruction late. What it does not do is skipped or
 * allowed there; everywhere else it is checked.
 */
static bool pvm_host(void)
{
	return access("/sys/module/kvm_pvm", F_OK) == 0;
}

/* Whether b is the instruction after a in the loop, by offset. */
static bool follows(uint64_t a, uint64_t b)
{
	static const struct { uint8_t from, to; } next[] = {
		{ 0x00, 0x02 }, { 0x02, 0x04 }, { 0x04, 0x08 }, { 0x08, 0x0a },
		{ 0x0a, 0x0d }, { 0x0d, 0x00 },
	};

	if (pvm_host() && a == BASE + 0x08 && b == BASE + 0x0d)
		return true;
	for (unsigned int i = 0; i < sizeof(next) / sizeof(next[0]); i++)
		if (a == BASE + next[i].from && b == BASE + next[i].to)
			return true;
	return false;
}

static const struct vcpu_debug_hit *hit_of(const struct vcpu_event *ev)
{
	return ev ? ev->data : NULL;
}

static void reply(struct vcpu_event *ev, int r)
{
	if (ev)
		vcpu_event_reply(ev, r);
}

static void test_guest(void)
{
	struct vcpu_bp x = bp(BASE + 2, VCPU_BP_EXEC, 1);
	struct vcpu_bp w = bp(BASE + 0x100, VCPU_BP_WRITE, 2);
	const struct vcpu_debug_hit *hit;
	struct vcpu_event *ev;
	struct vcpu_regs s;
	uint16_t ivt[2] = { 0x40, 0x1000 }, mem = 0;
	uint64_t rbx1 = 0;
	struct vcpu *v;
	pthread_t t;
	bool ok;

	flat_guest_init(code, sizeof(code), 1, "unit-debug");
	if (machine_register_pio(&m, 0x81, 1, on_port81, NULL, "test") ||
	    guest_write(&m, 4, ivt, sizeof(ivt)))
		abort();
	v = &m.vcpus[0];
	machine_debug_set_handler(&m, VCPU_DEBUG_GDB, gdb_handler, NULL);
	machine_debug_set_handler(&m, VCPU_DEBUG_KVMI, kvmi_handler, NULL);
	/* Set before the vCPU first runs: applied before it enters. */
	CHECK(machine_debug_add_bp(&m, VCPU_DEBUG_GDB, &x) == 0,
	      "a breakpoint set before the guest starts");
	flat_guest_start(&t);

	ev = next_gdb();
	hit = hit_of(ev);
	CHECK(hit && hit->exception == 1 && hit->pc == BASE + 2 &&
	      hit->nbp == 1 && hit->bp[0].addr == BASE + 2 && !hit->step,
	      "the guest stops at the instruction breakpoint");
	ok = ev && vcpu_stopped(v) &&
	     vcpu_get_state(v, VCPU_STATE_REGS, &s) == 0 && s.regs.rip == 2;
	rbx1 = s.regs.rbx;
	CHECK(ok, "the owner reads its registers while it waits: rip 2");
	reply(ev, VCPU_DEBUG_RESUME);
	ev = next_gdb();
	ok = hit_of(ev) && hit_of(ev)->pc == BASE + 2 &&
	     vcpu_get_state(v, VCPU_STATE_REGS, &s) == 0 &&
	     s.regs.rbx == rbx1 + 2;
	CHECK(ok, "resumed, it runs the loop once and stops there again");

	/* Handed to the guest: its #DB handler runs, returns, and the
	 * breakpoint fires again. */
	reply(ev, VCPU_DEBUG_REINJECT);
	ev = next_gdb();
	CHECK(hit_of(ev) && hit_of(ev)->pc == BASE + 2 &&
	      __atomic_load_n(&port81, __ATOMIC_SEQ_CST) == 1,
	      "a reinjected #DB reaches the guest's handler, which returns");

	/* Shared with the second owner: both are told. */
	CHECK(vcpu_debug_add_bp(v, VCPU_DEBUG_KVMI, &x) == 0,
	      "the second owner sets the same breakpoint");
	reply(ev, VCPU_DEBUG_RESUME);
	ev = next_gdb();
	reply(ev, VCPU_DEBUG_RESUME);
	WAIT_UNTIL(__atomic_load_n(&kvmi_bp_hits, __ATOMIC_SEQ_CST) >= 1);
	CHECK(ev && kvmi_bp_hits == 1,
	      "a shared breakpoint reaches both owners, in owner order");
	ev = next_gdb();
	vcpu_debug_del_bp(v, VCPU_DEBUG_KVMI, &x);
	CHECK(machine_debug_del_bp(&m, VCPU_DEBUG_GDB, &x) == 0,
	      "the breakpoint is removed while the vCPU waits");

	/* A write watchpoint traps after the write. */
	CHECK(machine_debug_add_bp(&m, VCPU_DEBUG_GDB, &w) == 0,
	      "a write watchpoint");
	reply(ev, VCPU_DEBUG_RESUME);
	if (pvm_host()) {
		ev = vcpu_event_next(&m, 300);
		hit = hit_of(ev);
		if (!ev)
			printf("ok %d # skip this KVM's emulator does not check data breakpoints\n",
			       ++tap_n);
	} else {
		ev = next_gdb();
		hit = hit_of(ev);
	}
	if (ev || !pvm_host()) {
		ok = hit && hit->pc == BASE + 8 && hit->nbp == 1 &&
		     hit->bp[0].type == VCPU_BP_WRITE &&
		     vcpu_get_state(v, VCPU_STATE_REGS, &s) == 0 &&
		     guest_read(&m, BASE + 0x100, &mem, 2) == 0 &&
		     mem == (uint16_t)s.regs.rbx;
		CHECK(ok, "it stops after the write, which has landed");
	}
	machine_debug_del_bp(&m, VCPU_DEBUG_GDB, &w);

	/* Single step, by the other owner. */
	CHECK(vcpu_debug_set_step(v, VCPU_DEBUG_KVMI, true) == 0 &&
	      vcpu_debug_stepping(v, VCPU_DEBUG_KVMI) &&
	      !vcpu_debug_stepping(v, VCPU_DEBUG_GDB), "single step on");
	reply(ev, VCPU_DEBUG_RESUME);
	WAIT_UNTIL(__atomic_load_n(&nsteps, __ATOMIC_SEQ_CST) == NSTEPS);
	ok = nsteps == NSTEPS;
	for (unsigned int i = 1; ok && i < NSTEPS; i++)
		ok = follows(step_pc[i - 1], step_pc[i]);
	CHECK(ok, "each step stops at the next instruction of the loop");
	CHECK(!vcpu_debug_stepping(v, VCPU_DEBUG_KVMI),
	      "the owner switched it off from its handler");

	/* The guest's own TF trap is not lkvm's: the guest gets its #DB
	 * (through lkvm where KVM intercepts #DB while debugging). */
	vcpu_debug_add_bp(v, VCPU_DEBUG_GDB, &(struct vcpu_bp){
		BASE + 0x30, VCPU_BP_EXEC, 1 });
	vcpu_hold(v, VCPU_HOLD_DEBUGGER, 2000);
	kvmi_calls = 0;
	vcpu_get_state(v, VCPU_STATE_REGS, &s);
	s.regs.rsi = 1;
	vcpu_set_state(v, VCPU_STATE_REGS, &s);
	vcpu_release(v, VCPU_HOLD_DEBUGGER);
	WAIT_UNTIL(__atomic_load_n(&port81, __ATOMIC_SEQ_CST) > 1);
	CHECK(port81 == 2 && kvmi_calls == 0 && vcpu_event_next(&m, 0) == NULL,
	      "the guest's own single-step trap reaches its #DB handler");
	vcpu_hold(v, VCPU_HOLD_DEBUGGER, 2000);
	CHECK(vcpu_get_state(v, VCPU_STATE_REGS, &s) == 0 && s.regs.rsi == 0 &&
	      s.regs.rip < 0x10 && !(s.regs.rflags & 0x100),
	      "... and goes on after it with TF clear");
	vcpu_release(v, VCPU_HOLD_DEBUGGER);

	machine_debug_clear(&m, VCPU_DEBUG_GDB);
	machine_stop(&m, 0);
	pthread_join(t, NULL);
	CHECK(run_status == 0, "the guest stops cleanly");
	machine_exit(&m);
}

int main(void)
{
	test_merge();
	test_route();
	test_guest();
	return tap_done();
}
