// SPDX-License-Identifier: GPL-2.0
/*
 * The vCPU-control layer (lkvm/vcpu.h) on a real machine: a flat guest
 * whose BSP counts in EBX between port writes (exits that leave work for
 * the next KVM_RUN) while the AP waits for a SIPI inside KVM_RUN. Holds,
 * their reasons, state reads and writes, work on the vCPU thread, events
 * and the end of the run.
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

static uint64_t rbx_of(struct vcpu *v)
{
	struct vcpu_regs s;

	if (vcpu_get_state(v, VCPU_STATE_REGS, &s))
		return ~0ull;
	return s.regs.rbx;
}

static pthread_t ran_on;
static uint64_t seen_rbx;

static void on_thread(struct vcpu *v, void *arg)
{
	(void)arg;
	ran_on = pthread_self();
	seen_rbx = rbx_of(v);
}

static int ev_result;

static void in_event(struct vcpu *v, void *arg)
{
	struct vcpu_event ev = { .kind = 42, .data = arg };

	ev_result = vcpu_event_wait(v, &ev, (int)(intptr_t)arg);
}

static void nothing(struct vcpu *v, void *arg)
{
	(void)v;
	(void)arg;
}

int main(void)
{
	/* inc ebx; out 0x80, al; jmp back */
	static const unsigned char code[] = { 0x66, 0x43, 0xe6, 0x80,
					      0xeb, 0xfa };
	struct vcpu *v0, *v1;
	struct vcpu_regs s;
	struct vcpu_event *ev;
	pthread_t t;
	uint64_t a, b;

	flat_guest_init(code, sizeof(code), 2, "unit");
	v0 = &m.vcpus[0];
	v1 = &m.vcpus[1];
	CHECK(vcpu_state(v0) == VCPU_STATE_CREATED, "a vCPU starts created");
	flat_guest_start(&t);
	WAIT_UNTIL(vcpu_state(v0) == VCPU_STATE_RUNNING);
	CHECK(vcpu_state(v0) == VCPU_STATE_RUNNING, "its thread runs it");

	CHECK(vcpu_hold(v0, VCPU_HOLD_CONTROL, 2000) == 0,
	      "a hold stops a vCPU that exits to lkvm all the time");
	CHECK(vcpu_state(v0) == VCPU_STATE_PARKED, "... and parks it");
	a = rbx_of(v0);
	usleep(20000);
	b = rbx_of(v0);
	CHECK(a == b && a != ~0ull, "a parked vCPU does not run");
	CHECK(vcpu_get_state(v0, VCPU_STATE_REGS | VCPU_STATE_SREGS |
				 VCPU_STATE_FPU | VCPU_STATE_DEBUGREGS |
				 VCPU_STATE_EVENTS | VCPU_STATE_MP, &s) == 0 &&
	      s.sregs.cs.base == 0x10000, "every part of its state reads");
	s.regs.rbx = 0x12345000;
	CHECK(vcpu_set_state(v0, VCPU_STATE_REGS, &s) == 0,
	      "its registers can be written");
	vcpu_release(v0, VCPU_HOLD_CONTROL);
	WAIT_UNTIL(vcpu_state(v0) == VCPU_STATE_RUNNING);
	CHECK(vcpu_get_state(v0, VCPU_STATE_REGS, &s) == -EBUSY,
	      "a running vCPU's state is refused");
	CHECK(vcpu_run_on(v0, on_thread, NULL, true) == 0 &&
	      pthread_equal(ran_on, v0->thread),
	      "work runs on the vCPU's own thread");
	CHECK(seen_rbx >= 0x12345000 && seen_rbx < 0x20000000,
	      "... which sees the registers written while held");

	/* Reasons count apart. */
	vcpu_hold(v0, VCPU_HOLD_PAUSE, 2000);
	vcpu_hold(v0, VCPU_HOLD_CONTROL, 2000);
	vcpu_release(v0, VCPU_HOLD_CONTROL);
	vcpu_release(v0, VCPU_HOLD_CONTROL);	/* one too many: ignored */
	a = rbx_of(v0);
	usleep(20000);
	CHECK(vcpu_stopped(v0) && rbx_of(v0) == a &&
	      vcpu_holds(v0, VCPU_HOLD_PAUSE) == 1,
	      "releasing one reason's hold leaves another's");
	vcpu_release(v0, VCPU_HOLD_PAUSE);
	WAIT_UNTIL(vcpu_state(v0) == VCPU_STATE_RUNNING);
	CHECK(vcpu_holds(v0, VCPU_HOLD_PAUSE) == 0 &&
	      vcpu_state(v0) == VCPU_STATE_RUNNING, "the last release runs it");

	CHECK(vcpu_hold(v1, VCPU_HOLD_CONTROL, 2000) == 0 &&
	      vcpu_get_state(v1, VCPU_STATE_MP, &s) == 0 &&
	      s.mp.mp_state != KVM_MP_STATE_RUNNABLE,
	      "an AP waiting for its SIPI inside KVM_RUN is held too");
	vcpu_release(v1, VCPU_HOLD_CONTROL);

	CHECK(machine_hold_all(&m, VCPU_HOLD_PAUSE, 2000) == 0 &&
	      vcpu_stopped(v0) && vcpu_stopped(v1), "machine_hold_all");
	machine_release_all(&m, VCPU_HOLD_PAUSE);
	WAIT_UNTIL(vcpu_state(v0) == VCPU_STATE_RUNNING);

	/* An event: the vCPU waits in it, others see it and answer. */
	CHECK(vcpu_run_on(v0, in_event, (void *)(intptr_t)5000, false) == 0,
	      "work can be queued without waiting");
	ev = vcpu_event_next(&m, 2000);
	CHECK(ev && ev->kind == 42 && vcpu_current_event(v0) == ev,
	      "vcpu_event_next hands out the event");
	CHECK(vcpu_state(v0) == VCPU_STATE_EVENT &&
	      vcpu_hold(v0, VCPU_HOLD_INTROSPECT, 100) == 0 &&
	      rbx_of(v0) != ~0ull,
	      "a vCPU in an event counts as stopped: held at once, state readable");
	vcpu_release(v0, VCPU_HOLD_INTROSPECT);
	CHECK(vcpu_event_next(&m, 10) == NULL, "an event is handed out once");
	if (ev)
		vcpu_event_reply(ev, 7);
	vcpu_run_on(v0, nothing, NULL, true);
	CHECK(ev_result == 7 && vcpu_current_event(v0) == NULL,
	      "the reply reaches the waiting vCPU");
	vcpu_run_on(v0, in_event, (void *)(intptr_t)5000, false);
	ev = vcpu_event_next(&m, 2000);
	vcpu_hold(v0, VCPU_HOLD_INTROSPECT, 100);
	if (ev)
		vcpu_event_reply(ev, 9);
	usleep(20000);
	CHECK(ev && vcpu_state(v0) == VCPU_STATE_EVENT &&
	      vcpu_current_event(v0) == ev,
	      "a held vCPU stays in its event after the reply");
	vcpu_release(v0, VCPU_HOLD_INTROSPECT);
	vcpu_run_on(v0, nothing, NULL, true);
	CHECK(ev_result == 9, "... and goes on with the reply once released");
	vcpu_run_on(v0, in_event, (void *)(intptr_t)30, true);
	CHECK(ev_result == -ETIMEDOUT, "an unanswered event times out");

	/* The end of the run, with a vCPU parked. */
	vcpu_hold(v0, VCPU_HOLD_PAUSE, 2000);
	machine_stop(&m, 5);
	pthread_join(t, NULL);
	CHECK(run_status == 5, "a paused machine stops with its status");
	CHECK(vcpu_state(v0) == VCPU_STATE_EXITED &&
	      vcpu_state(v1) == VCPU_STATE_EXITED, "every vCPU thread ended");
	CHECK(vcpu_run_on(v0, nothing, NULL, true) == -ESRCH,
	      "work for an ended vCPU is refused");
	CHECK(vcpu_get_state(v0, VCPU_STATE_REGS, &s) == 0,
	      "an ended vCPU's state still reads");
	machine_exit(&m);
	return tap_done();
}
