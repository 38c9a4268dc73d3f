/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vCPU control: the one way for any thread to stop a vCPU, look at or
 * change its state, and let it go again. `lkvm pause`, `lkvm debug`, the
 * ELF core writer, and the introspection server (issue 7) all use it.
 *
 * The model: a vCPU thread runs the guest until someone holds it. A hold
 * kicks the vCPU out of KVM_RUN; at its next exit the thread completes
 * what KVM left pending (an I/O read's data, an MMIO or MSR access) with
 * an immediate-exit KVM_RUN, so that the registers are the guest's real,
 * consistent state, and then parks. While a vCPU is parked any thread may
 * read and write its state (vcpu_get_state() and friends). The vCPU runs
 * again when every hold is released. Holds of different reasons are
 * counted apart: `lkvm resume` does not release a debugger's hold, and a
 * debugger's release does not resume a paused guest.
 *
 * Work and events, for code that must act on the vCPU's own thread:
 * - vcpu_run_on() runs a function there the next time the vCPU is out of
 *   the guest with consistent state (how an introspection PAUSE event is
 *   sent from the paused vCPU itself);
 * - vcpu_event_wait(), called by an exit handler on the vCPU thread,
 *   publishes an event and blocks until another thread answers it with
 *   vcpu_event_reply() (or a timeout passes). Meanwhile the vCPU counts as
 *   parked: holds succeed at once and its state may be read and written
 *   (an MSR write, a page write or a breakpoint seen as it happens). A
 *   held vCPU stays in its event, answered or not, until released.
 *   vcpu_event_next() waits for the next event of any vCPU.
 *
 * Locking: each vCPU has its own lock; no function here holds one while
 * calling out, so any of them may be called from work functions and
 * event handlers, except waiting on the calling vCPU's own hold.
 */
#ifndef LKVM_VCPU_H
#define LKVM_VCPU_H

#include <linux/kvm.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

/* Kicks a vCPU thread out of KVM_RUN; blocked on every other thread. */
#define VCPU_KICK_SIGNAL SIGUSR1

struct machine;
struct vcpu;

enum vcpu_hold_reason {
	VCPU_HOLD_PAUSE,	/* lkvm pause, until lkvm resume */
	VCPU_HOLD_CONTROL,	/* a control request reading or writing state */
	VCPU_HOLD_INTROSPECT,	/* introspection: pause-vCPU, a tool's view */
	VCPU_HOLD_DEBUGGER,	/* a GDB stub's stop */
	VCPU_HOLD_NR,
};

enum vcpu_run_state {
	VCPU_STATE_CREATED,	/* its thread has not started */
	VCPU_STATE_RUNNING,	/* in the guest, or handling an exit */
	VCPU_STATE_PARKED,	/* out of the guest, state consistent, waiting */
	VCPU_STATE_EVENT,	/* inside an exit handler, in vcpu_event_wait() */
	VCPU_STATE_EXITED,	/* its thread has ended; state still readable */
};

/* Exit reasons counted per vCPU (KVM_EXIT_* below this are counted). */
#define VCPU_EXIT_REASONS 64

/* The per-vCPU control block (v->ctl); fields are private to vcpu.c. */
struct vcpu_ctl;

/* ---- life cycle (kvm/machine.c) ------------------------------------- */

/* The machine's part (the event queue), then each vCPU's. */
int machine_vcpu_ctl_init(struct machine *m);
void machine_vcpu_ctl_free(struct machine *m);
int vcpu_ctl_init(struct vcpu *v);
void vcpu_ctl_free(struct vcpu *v);
/*
 * The vCPU thread's side. vcpu_ctl_pending() is the cheap check made
 * before every KVM_RUN; vcpu_ctl_service() then runs queued work and
 * parks while held. It returns false when the thread must end (the
 * machine stops, or completing a pending exit failed).
 */
bool vcpu_ctl_pending(struct vcpu *v);
bool vcpu_ctl_service(struct vcpu *v);
/* After each KVM_RUN: r is kvm_vcpu_run()'s value. */
void vcpu_ctl_count_exit(struct vcpu *v, int r);
void vcpu_ctl_thread_start(struct vcpu *v);
void vcpu_ctl_thread_end(struct vcpu *v);
/* Wakes parked vCPUs so they see that the machine stops (main thread). */
void vcpu_ctl_wake_all(struct machine *m);

/* ---- holding and releasing -------------------------------------------- */

/*
 * Makes v leave KVM_RUN soon (it re-enters unless something holds it or
 * work is queued). Any thread.
 */
void vcpu_kick(struct vcpu *v);

/*
 * Takes a hold on v for why and waits up to timeout_ms (-1: no limit)
 * until v is parked, in an event, or its thread has ended. Returns 0;
 * -ETIMEDOUT when v did not stop in time (the hold is kept either way:
 * release it); -EDEADLK when called on v's own thread.
 */
int vcpu_hold(struct vcpu *v, enum vcpu_hold_reason why, int timeout_ms);
/* Takes the hold and kicks, without waiting. */
void vcpu_hold_async(struct vcpu *v, enum vcpu_hold_reason why);
/* Waits until v is stopped (as vcpu_hold() does). */
int vcpu_wait_stopped(struct vcpu *v, int timeout_ms);
/* Drops one hold of why; the vCPU runs when no hold is left. */
void vcpu_release(struct vcpu *v, enum vcpu_hold_reason why);
/* How many holds of why v has. */
unsigned int vcpu_holds(struct vcpu *v, enum vcpu_hold_reason why);
enum vcpu_run_state vcpu_state(struct vcpu *v);
/* Whether v is out of the guest with its state safe to touch. */
bool vcpu_stopped(struct vcpu *v);

/*
 * Every vCPU at once: all are asked first, then waited for, so pausing
 * N vCPUs costs one round trip, not N. On -ETIMEDOUT the holds are kept.
 */
int machine_hold_all(struct machine *m, enum vcpu_hold_reason why,
		     int timeout_ms);
void machine_release_all(struct machine *m, enum vcpu_hold_reason why);

/* ---- state ------------------------------------------------------------- */

/* What vcpu_get_state() and vcpu_set_state() move (a mask). */
#define VCPU_STATE_REGS		(1u << 0)	/* struct kvm_regs */
#define VCPU_STATE_SREGS	(1u << 1)	/* segments, CRs, EFER */
#define VCPU_STATE_FPU		(1u << 2)
#define VCPU_STATE_DEBUGREGS	(1u << 3)
#define VCPU_STATE_EVENTS	(1u << 4)	/* pending exceptions, NMI */
#define VCPU_STATE_MP		(1u << 5)	/* runnable, halted, INIT */

struct vcpu_regs {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
	struct kvm_debugregs debugregs;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp;
};

/*
 * Reads or writes the parts named in what. v must be stopped (held,
 * parked, in an event, or the caller is v's own thread): -EBUSY
 * otherwise, so no caller can race the guest by mistake.
 */
int vcpu_get_state(struct vcpu *v, unsigned int what, struct vcpu_regs *s);
int vcpu_set_state(struct vcpu *v, unsigned int what,
		   const struct vcpu_regs *s);
/* Queues an NMI (delivered when the vCPU runs). v must be stopped. */
int vcpu_inject_nmi(struct vcpu *v);

/* ---- work on the vCPU thread ------------------------------------------ */

typedef void (*vcpu_work_fn)(struct vcpu *v, void *arg);

/*
 * Runs fn(v, arg) on v's thread at its next exit, with consistent state
 * (a parked vCPU wakes for it and parks again). With wait, returns when
 * fn has run (0), or -ESRCH when the thread ended first. Without wait, a
 * copy of nothing is made: arg must live until fn runs; returns 0, or
 * -ENOMEM. On v's own thread fn runs at once.
 */
int vcpu_run_on(struct vcpu *v, vcpu_work_fn fn, void *arg, bool wait);

/* ---- events: exit handlers waiting for an answer ----------------------- */

struct vcpu_event {
	unsigned int kind;	/* the caller's */
	const void *data;	/* the caller's, valid while waiting */
	int reply;		/* set by vcpu_event_reply() */
	/*
	 * Optional: called on the vCPU's thread once ev is its current event
	 * (so vcpu_event_reply() reaches it) and before the wait, without
	 * locks. An event with this callback is answered by whoever set it:
	 * it is not queued for vcpu_event_next().
	 */
	void (*published)(struct vcpu_event *ev);
	/* private */
	bool done, taken;
	struct vcpu *v;
	struct vcpu_event *next;
};

/*
 * On v's own thread, inside an exit handler: publishes ev, then waits
 * until another thread replies (returns the reply) or timeout_ms passes
 * (-ETIMEDOUT; -1: no limit) or the machine stops (-ESHUTDOWN).
 */
int vcpu_event_wait(struct vcpu *v, struct vcpu_event *ev, int timeout_ms);
/* The event v waits in, or NULL. */
struct vcpu_event *vcpu_current_event(struct vcpu *v);
/* Answers ev; its vCPU goes on (unless held). Any thread. */
void vcpu_event_reply(struct vcpu_event *ev, int reply);
/*
 * Waits up to timeout_ms for an event of any vCPU of m that no one has
 * taken yet, marks it taken and returns it (NULL on timeout or when the
 * machine stops).
 */
struct vcpu_event *vcpu_event_next(struct machine *m, int timeout_ms);

/* ---- statistics -------------------------------------------------------- */

/*
 * The vCPU's KVM_GET_STATS_FD descriptor, opened when its thread started
 * (a vCPU ioctl would wait for KVM_RUN to return), or -1.
 */
int vcpu_stats_fd(struct vcpu *v);
/* KVM_EXIT_* counts of lkvm's own exit loop, summed over vCPUs. */
void machine_exit_counts(struct machine *m, uint64_t out[VCPU_EXIT_REASONS]);
/* "io", "mmio", "hlt"... for a KVM_EXIT_* value. */
const char *vcpu_exit_name(unsigned int reason);

#endif
