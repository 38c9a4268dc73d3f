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
/* Whether the caller is the thread that runs v. */
bool vcpu_on_own_thread(struct vcpu *v);

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

/* ---- guest debug: hardware breakpoints and single step (kvm/vcpu-debug.c)
 *
 * Several owners (a GDB stub, the introspection server) debug the same
 * guest. Each sets its own hardware breakpoints and single step per vCPU;
 * this layer merges them into the one KVM_SET_GUEST_DEBUG a vCPU has
 * (DR0-3 and DR7, at most VCPU_DEBUG_MAX_BP breakpoints in total, an
 * identical breakpoint of two owners sharing one register) and routes
 * each KVM_EXIT_DEBUG to the owners whose breakpoint or step matched
 * (DR6), through the handler the owner registered. A debug exit that no
 * owner claims (the guest's own TF trap, say) is delivered to the guest
 * as the #DB (or #BP) a real CPU would raise.
 *
 * Changes take effect before the vCPU next enters the guest: a running
 * vCPU is kicked; a held or parked one is updated before it runs again.
 * Any thread, including handlers on the vCPU's own thread.
 */

enum vcpu_debug_owner {
	VCPU_DEBUG_GDB,
	VCPU_DEBUG_KVMI,
	VCPU_DEBUG_NR,
};

#define VCPU_DEBUG_MAX_BP 4	/* DR0-DR3 */

enum vcpu_bp_type {
	VCPU_BP_EXEC,		/* instruction fetch at addr (len 1) */
	VCPU_BP_WRITE,		/* data write to [addr, addr + len) */
	VCPU_BP_RW,		/* data read or write */
};

struct vcpu_bp {
	uint64_t addr;		/* guest linear (virtual) address */
	enum vcpu_bp_type type;
	unsigned int len;	/* 1, 2, 4 or 8, addr aligned to it; exec: 1 */
};

/* What an owner's handler is told about a debug exit. */
struct vcpu_debug_hit {
	unsigned int exception;	/* 1 (#DB) or 3 (#BP, an int3) */
	uint64_t pc;		/* linear RIP at the exit (after a data access) */
	uint64_t dr6, dr7;	/* as KVM reported them */
	bool step;		/* this owner's single step completed */
	bool sw_bp;		/* an int3 with this owner's software breakpoints */
	unsigned int nbp;	/* this owner's breakpoints that matched */
	struct vcpu_bp bp[VCPU_DEBUG_MAX_BP];
};

/*
 * What a handler returns. RESUME after an int3 (#BP) runs the int3 again
 * (KVM reports it at its own address): the owner puts the original byte
 * back or moves RIP first.
 */
#define VCPU_DEBUG_RESUME	0	/* go on (past an exec breakpoint) */
#define VCPU_DEBUG_REINJECT	1	/* deliver the #DB/#BP to the guest */

/*
 * Called on the vCPU's own thread for each debug exit routed to who.
 * The vCPU is out of the guest and its state may be read and written
 * here. To keep it stopped until the owner answers, either block in
 * vcpu_event_wait() (another thread answers with vcpu_event_reply()), or
 * take a hold with vcpu_hold_async() and return: the vCPU parks before it
 * re-enters the guest, until released. When two owners match one exit,
 * each handler runs in owner order; REINJECT from either wins.
 */
typedef int (*vcpu_debug_fn)(struct vcpu *v, enum vcpu_debug_owner who,
			     const struct vcpu_debug_hit *hit, void *opaque);

/* The machine's part (kvm/machine.c calls these). */
int machine_debug_init(struct machine *m);
void machine_debug_free(struct machine *m);
/* KVM_EXIT_DEBUG on v's thread: routes it; KVM_CONTINUE or an error. */
int vcpu_debug_exit(struct vcpu *v, const struct kvm_debug_exit_arch *arch);

/*
 * Registers (fn non-NULL) or removes who's handler. A debug exit copies
 * the handler before calling it, so a call already on its way may still
 * come after the removal: keep opaque alive until the vCPU threads have
 * ended (or the owner's cleanup has answered its events).
 */
void machine_debug_set_handler(struct machine *m, enum vcpu_debug_owner who,
			       vcpu_debug_fn fn, void *opaque);

/*
 * Adds who's breakpoint on v: 0 (also when who has it already),
 * -EINVAL for a bad type, length or alignment, -ENOSPC when the four
 * debug registers are taken by the owners together.
 */
int vcpu_debug_add_bp(struct vcpu *v, enum vcpu_debug_owner who,
		      const struct vcpu_bp *bp);
/* Removes it: 0, or -ENOENT when who has no such breakpoint on v. */
int vcpu_debug_del_bp(struct vcpu *v, enum vcpu_debug_owner who,
		      const struct vcpu_bp *bp);
/* The same on every vCPU; an add that fails on one is undone on all. */
int machine_debug_add_bp(struct machine *m, enum vcpu_debug_owner who,
			 const struct vcpu_bp *bp);
int machine_debug_del_bp(struct machine *m, enum vcpu_debug_owner who,
			 const struct vcpu_bp *bp);
/* Single step of v for who: one debug exit after each instruction. */
int vcpu_debug_set_step(struct vcpu *v, enum vcpu_debug_owner who, bool on);
bool vcpu_debug_stepping(struct vcpu *v, enum vcpu_debug_owner who);
/*
 * Software breakpoints for who on every vCPU (KVM_GUESTDBG_USE_SW_BP):
 * the guest's int3 exits to who instead of the guest. Only where the
 * host intercepts int3 (at CPL 0 on a paravirtual KVM it does not).
 */
int machine_debug_set_sw_bp(struct machine *m, enum vcpu_debug_owner who,
			    bool on);
/* Everything who set, on every vCPU: its breakpoints, steps, sw_bp. */
void machine_debug_clear(struct machine *m, enum vcpu_debug_owner who);

/*
 * The merge, kept apart from vCPUs for tests: one vCPU's table of debug
 * registers, each with the owners that share it.
 */
struct vcpu_debug_slots {
	struct vcpu_bp bp[VCPU_DEBUG_MAX_BP];
	unsigned int owners[VCPU_DEBUG_MAX_BP];	/* 1u << owner; 0: free */
	unsigned int step;			/* owners single-stepping */
	unsigned int sw_bp;			/* owners taking int3 */
};

int vcpu_debug_check_bp(const struct vcpu_bp *bp);
int vcpu_debug_slots_add(struct vcpu_debug_slots *s,
			 enum vcpu_debug_owner who, const struct vcpu_bp *bp);
int vcpu_debug_slots_del(struct vcpu_debug_slots *s,
			 enum vcpu_debug_owner who, const struct vcpu_bp *bp);
void vcpu_debug_slots_clear(struct vcpu_debug_slots *s,
			    enum vcpu_debug_owner who);
/* The KVM_SET_GUEST_DEBUG argument for s. */
void vcpu_debug_encode(const struct vcpu_debug_slots *s,
		       struct kvm_guest_debug *dbg);
/*
 * The owners (a mask) a debug exit belongs to, given the table that was
 * in KVM when it happened (applied) and the one owners want now (cur):
 * an owner that removed its breakpoint or step meanwhile is not told.
 * hit[owner] is filled for each owner in the mask. *stale is set when
 * the exit came from lkvm's own, since removed, debugging (to be
 * dropped, not delivered to the guest).
 */
unsigned int vcpu_debug_route(const struct vcpu_debug_slots *applied,
			      const struct vcpu_debug_slots *cur,
			      const struct kvm_debug_exit_arch *arch,
			      struct vcpu_debug_hit hit[VCPU_DEBUG_NR],
			      bool *stale);


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
