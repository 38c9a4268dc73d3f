// SPDX-License-Identifier: GPL-2.0
/*
 * Guest debug: the owners' hardware breakpoints and single steps merged
 * into each vCPU's KVM_SET_GUEST_DEBUG, and KVM_EXIT_DEBUG routed back to
 * them. See include/lkvm/vcpu.h for the model.
 *
 * Each vCPU keeps two tables: cur, what the owners want now (changed by
 * any thread under the machine's debug lock), and applied, what KVM has
 * (written only on the vCPU's thread, by the queued apply work, and read
 * there by the exit handler). Routing looks at both, so a breakpoint an
 * owner removed while its exit was on the way is dropped instead of being
 * mistaken for the guest's own and delivered to it.
 */
#include "lkvm/vcpu.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lkvm/machine.h"
#include "lkvm/util.h"

#define DR6_BS		(1ull << 14)	/* single step */
/* lkvm's own single step over an instruction breakpoint, in .step. */
#define STEP_OVER	(1u << VCPU_DEBUG_NR)
#define DR7_FIXED	(1ull << 10)
#define DB_VECTOR	1
#define BP_VECTOR	3

/*
 * Resuming from an instruction breakpoint: the instruction must run once
 * without trapping again. RFLAGS.RF would say so, but not every KVM
 * honours an RF set from user space (a paravirtual one ignores it), so
 * lkvm steps over instead: the breakpoints at that address are left out
 * and a single step is added for one instruction, then they come back.
 */
struct vcpu_debug {
	struct vcpu_debug_slots cur, applied;
	bool queued;		/* an apply is queued on the vCPU thread */
	bool step_over;
	uint64_t step_over_pc;
};

struct machine_debug {
	pthread_mutex_t lock;
	struct {
		vcpu_debug_fn fn;
		void *opaque;
	} handler[VCPU_DEBUG_NR];
	struct vcpu_debug *vcpu;	/* [m->ncpus] */
	int flags;		/* KVM_CAP_SET_GUEST_DEBUG2; -1: not asked */
};

/* ---- the merge ----------------------------------------------------------- */

int vcpu_debug_check_bp(const struct vcpu_bp *bp)
{
	switch (bp->type) {
	case VCPU_BP_EXEC:
		return bp->len == 1 ? 0 : -EINVAL;
	case VCPU_BP_WRITE:
	case VCPU_BP_RW:
		if (bp->len != 1 && bp->len != 2 && bp->len != 4 &&
		    bp->len != 8)
			return -EINVAL;
		return bp->addr & (bp->len - 1) ? -EINVAL : 0;
	}
	return -EINVAL;
}

static bool same_bp(const struct vcpu_bp *a, const struct vcpu_bp *b)
{
	return a->addr == b->addr && a->type == b->type && a->len == b->len;
}

/* The slot holding bp, or -1. */
static int find_slot(const struct vcpu_debug_slots *s,
		     const struct vcpu_bp *bp)
{
	for (int i = 0; i < VCPU_DEBUG_MAX_BP; i++)
		if (s->owners[i] && same_bp(&s->bp[i], bp))
			return i;
	return -1;
}

int vcpu_debug_slots_add(struct vcpu_debug_slots *s,
			 enum vcpu_debug_owner who, const struct vcpu_bp *bp)
{
	int err = vcpu_debug_check_bp(bp);
	int i;

	if (err)
		return err;
	if ((unsigned int)who >= VCPU_DEBUG_NR)
		return -EINVAL;
	i = find_slot(s, bp);
	if (i < 0) {
		for (i = 0; i < VCPU_DEBUG_MAX_BP && s->owners[i]; i++)
			;
		if (i == VCPU_DEBUG_MAX_BP)
			return -ENOSPC;
		s->bp[i] = *bp;
	}
	s->owners[i] |= 1u << who;
	return 0;
}

int vcpu_debug_slots_del(struct vcpu_debug_slots *s,
			 enum vcpu_debug_owner who, const struct vcpu_bp *bp)
{
	int i = find_slot(s, bp);

	if ((unsigned int)who >= VCPU_DEBUG_NR || i < 0 ||
	    !(s->owners[i] & (1u << who)))
		return -ENOENT;
	s->owners[i] &= ~(1u << who);
	return 0;
}

void vcpu_debug_slots_clear(struct vcpu_debug_slots *s,
			    enum vcpu_debug_owner who)
{
	unsigned int bit = 1u << who;

	for (int i = 0; i < VCPU_DEBUG_MAX_BP; i++)
		s->owners[i] &= ~bit;
	s->step &= ~bit;
	s->sw_bp &= ~bit;
}

/* DR7's R/W and LEN fields (Intel SDM vol. 3, 18.2.4). */
static uint64_t dr7_fields(const struct vcpu_bp *bp)
{
	static const uint8_t rw[] = {
		[VCPU_BP_EXEC] = 0, [VCPU_BP_WRITE] = 1, [VCPU_BP_RW] = 3,
	};
	uint64_t len;

	switch (bp->len) {
	case 2: len = 1; break;
	case 8: len = 2; break;
	case 4: len = 3; break;
	default: len = 0; break;
	}
	return rw[bp->type] | len << 2;
}

void vcpu_debug_encode(const struct vcpu_debug_slots *s,
		       struct kvm_guest_debug *dbg)
{
	uint64_t dr7 = DR7_FIXED;
	bool hw = false;

	memset(dbg, 0, sizeof(*dbg));
	for (int i = 0; i < VCPU_DEBUG_MAX_BP; i++) {
		if (!s->owners[i])
			continue;
		hw = true;
		dbg->arch.debugreg[i] = s->bp[i].addr;
		dr7 |= 2ull << (2 * i);		/* Gn: enabled */
		dr7 |= dr7_fields(&s->bp[i]) << (16 + 4 * i);
	}
	if (hw) {
		dbg->control |= KVM_GUESTDBG_USE_HW_BP;
		dbg->arch.debugreg[7] = dr7;
	}
	if (s->step)
		dbg->control |= KVM_GUESTDBG_SINGLESTEP;
	if (s->sw_bp)
		dbg->control |= KVM_GUESTDBG_USE_SW_BP;
	if (dbg->control)
		dbg->control |= KVM_GUESTDBG_ENABLE;
}

unsigned int vcpu_debug_route(const struct vcpu_debug_slots *applied,
			      const struct vcpu_debug_slots *cur,
			      const struct kvm_debug_exit_arch *arch,
			      struct vcpu_debug_hit hit[VCPU_DEBUG_NR],
			      bool *stale)
{
	unsigned int mask = 0;

	*stale = false;
	for (int o = 0; o < VCPU_DEBUG_NR; o++) {
		memset(&hit[o], 0, sizeof(hit[o]));
		hit[o].exception = arch->exception;
		hit[o].pc = arch->pc;
		hit[o].dr6 = arch->dr6;
		hit[o].dr7 = arch->dr7;
	}
	if (arch->exception == BP_VECTOR) {
		mask = applied->sw_bp & cur->sw_bp;
		for (int o = 0; o < VCPU_DEBUG_NR; o++)
			hit[o].sw_bp = mask & (1u << o);
		return mask;
	}
	if (arch->exception != DB_VECTOR)
		return 0;
	for (int i = 0; i < VCPU_DEBUG_MAX_BP; i++) {
		int now;

		if (!(arch->dr6 & (1ull << i)) || !applied->owners[i])
			continue;
		*stale = true;
		now = find_slot(cur, &applied->bp[i]);
		for (int o = 0; o < VCPU_DEBUG_NR; o++) {
			unsigned int bit = 1u << o;

			if (!(applied->owners[i] & bit) || now < 0 ||
			    !(cur->owners[now] & bit))
				continue;
			mask |= bit;
			hit[o].bp[hit[o].nbp++] = applied->bp[i];
		}
	}
	if ((arch->dr6 & DR6_BS) && applied->step) {
		unsigned int steppers = applied->step & cur->step;

		*stale = true;
		mask |= steppers;
		for (int o = 0; o < VCPU_DEBUG_NR; o++)
			hit[o].step = steppers & (1u << o);
	}
	return mask;
}

/* ---- per vCPU ---------------------------------------------------------- */

int machine_debug_init(struct machine *m)
{
	struct machine_debug *d;

	if (m->debug)
		return 0;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->vcpu = calloc(m->ncpus ? m->ncpus : 1, sizeof(*d->vcpu));
	if (!d->vcpu) {
		free(d);
		return -ENOMEM;
	}
	pthread_mutex_init(&d->lock, NULL);
	d->flags = -1;
	m->debug = d;
	return 0;
}

void machine_debug_free(struct machine *m)
{
	struct machine_debug *d = m->debug;

	if (!d)
		return;
	pthread_mutex_destroy(&d->lock);
	free(d->vcpu);
	free(d);
	m->debug = NULL;
}

void machine_debug_set_handler(struct machine *m, enum vcpu_debug_owner who,
			       vcpu_debug_fn fn, void *opaque)
{
	struct machine_debug *d = m->debug;

	pthread_mutex_lock(&d->lock);
	d->handler[who].fn = fn;
	d->handler[who].opaque = fn ? opaque : NULL;
	pthread_mutex_unlock(&d->lock);
}

static struct vcpu_debug *dbg_of(struct vcpu *v)
{
	return &v->m->debug->vcpu[v->id];
}

/* On v's thread: hands KVM what the owners want now. */
static void apply(struct vcpu *v, void *arg)
{
	struct machine_debug *d = v->m->debug;
	struct vcpu_debug *vd = dbg_of(v);
	struct kvm_guest_debug dbg;
	int err;

	(void)arg;
	pthread_mutex_lock(&d->lock);
	vd->queued = false;
	vd->applied = vd->cur;
	if (vd->step_over) {
		for (int i = 0; i < VCPU_DEBUG_MAX_BP; i++)
			if (vd->applied.bp[i].type == VCPU_BP_EXEC &&
			    vd->applied.bp[i].addr == vd->step_over_pc)
				vd->applied.owners[i] = 0;
		vd->applied.step |= STEP_OVER;
	}
	vcpu_debug_encode(&vd->applied, &dbg);
	if (d->flags < 0)
		d->flags = MAX(kvm_check_extension(v->m->kvm,
						   KVM_CAP_SET_GUEST_DEBUG2), 0);
	/*
	 * No interrupt while stepping: one taken then would push the TF
	 * that KVM sets for the step into the guest's interrupt frame, and
	 * the guest would trap on its own after its iret, long after the
	 * debugger let go (without BLOCKIRQ a step may land in a handler).
	 */
	if ((dbg.control & KVM_GUESTDBG_SINGLESTEP) &&
	    (d->flags & KVM_GUESTDBG_BLOCKIRQ))
		dbg.control |= KVM_GUESTDBG_BLOCKIRQ;
	pthread_mutex_unlock(&d->lock);
	err = kvm_set_guest_debug(v->kvm, &dbg);
	if (err)
		pr_err("vCPU %u: KVM_SET_GUEST_DEBUG: %s", v->id,
		       strerror(-err));
}

/* With the lock held: makes sure an apply runs before v re-enters. */
static void queue_apply(struct vcpu *v, bool *run_now)
{
	struct vcpu_debug *vd = dbg_of(v);

	*run_now = !vd->queued;
	vd->queued = true;
}

static void kick_apply(struct vcpu *v, bool run_now)
{
	if (run_now && vcpu_run_on(v, apply, NULL, false)) {
		/* The thread has ended, or no memory: nothing to apply to,
		 * or the next change tries again. */
		pthread_mutex_lock(&v->m->debug->lock);
		dbg_of(v)->queued = false;
		pthread_mutex_unlock(&v->m->debug->lock);
	}
}

typedef int (*slots_op)(struct vcpu_debug_slots *s, enum vcpu_debug_owner who,
			const struct vcpu_bp *bp);

static int change(struct vcpu *v, enum vcpu_debug_owner who, slots_op op,
		  const struct vcpu_bp *bp)
{
	struct machine_debug *d = v->m->debug;
	bool run_now = false;
	int err;

	if ((unsigned int)who >= VCPU_DEBUG_NR)
		return -EINVAL;
	pthread_mutex_lock(&d->lock);
	err = op(&dbg_of(v)->cur, who, bp);
	if (!err)
		queue_apply(v, &run_now);
	pthread_mutex_unlock(&d->lock);
	kick_apply(v, run_now);
	return err;
}

int vcpu_debug_add_bp(struct vcpu *v, enum vcpu_debug_owner who,
		      const struct vcpu_bp *bp)
{
	return change(v, who, vcpu_debug_slots_add, bp);
}

int vcpu_debug_del_bp(struct vcpu *v, enum vcpu_debug_owner who,
		      const struct vcpu_bp *bp)
{
	return change(v, who, vcpu_debug_slots_del, bp);
}

int machine_debug_add_bp(struct machine *m, enum vcpu_debug_owner who,
			 const struct vcpu_bp *bp)
{
	for (unsigned int i = 0; i < m->ncpus; i++) {
		int err = vcpu_debug_add_bp(&m->vcpus[i], who, bp);

		if (err) {
			while (i-- > 0)
				vcpu_debug_del_bp(&m->vcpus[i], who, bp);
			return err;
		}
	}
	return 0;
}

int machine_debug_del_bp(struct machine *m, enum vcpu_debug_owner who,
			 const struct vcpu_bp *bp)
{
	int ret = -ENOENT;

	for (unsigned int i = 0; i < m->ncpus; i++)
		if (!vcpu_debug_del_bp(&m->vcpus[i], who, bp))
			ret = 0;
	return ret;
}

/* Sets or clears who's bit in the mask at offset off of cur. */
static int set_flag(struct vcpu *v, enum vcpu_debug_owner who, size_t off,
		    bool on)
{
	struct machine_debug *d = v->m->debug;
	bool run_now = false;
	unsigned int *mask;

	if ((unsigned int)who >= VCPU_DEBUG_NR)
		return -EINVAL;
	pthread_mutex_lock(&d->lock);
	mask = (unsigned int *)((char *)&dbg_of(v)->cur + off);
	if (!!(*mask & (1u << who)) != on) {
		*mask ^= 1u << who;
		queue_apply(v, &run_now);
	}
	pthread_mutex_unlock(&d->lock);
	kick_apply(v, run_now);
	return 0;
}

int vcpu_debug_set_step(struct vcpu *v, enum vcpu_debug_owner who, bool on)
{
	return set_flag(v, who, offsetof(struct vcpu_debug_slots, step), on);
}

bool vcpu_debug_stepping(struct vcpu *v, enum vcpu_debug_owner who)
{
	bool on;

	pthread_mutex_lock(&v->m->debug->lock);
	on = dbg_of(v)->cur.step & (1u << who);
	pthread_mutex_unlock(&v->m->debug->lock);
	return on;
}

int machine_debug_set_sw_bp(struct machine *m, enum vcpu_debug_owner who,
			    bool on)
{
	for (unsigned int i = 0; i < m->ncpus; i++) {
		int err = set_flag(&m->vcpus[i], who,
				   offsetof(struct vcpu_debug_slots, sw_bp), on);

		if (err)
			return err;
	}
	return 0;
}

void machine_debug_clear(struct machine *m, enum vcpu_debug_owner who)
{
	struct machine_debug *d = m->debug;

	if (!d || (unsigned int)who >= VCPU_DEBUG_NR)
		return;
	for (unsigned int i = 0; i < m->ncpus; i++) {
		struct vcpu *v = &m->vcpus[i];
		bool run_now;

		pthread_mutex_lock(&d->lock);
		vcpu_debug_slots_clear(&dbg_of(v)->cur, who);
		queue_apply(v, &run_now);
		pthread_mutex_unlock(&d->lock);
		kick_apply(v, run_now);
	}
}

/* ---- the exit ------------------------------------------------------------- */

/* Delivers the exception to the guest, as the CPU would have. */
static int reinject(struct vcpu *v, const struct kvm_debug_exit_arch *arch)
{
	struct vcpu_regs s;
	unsigned int what = VCPU_STATE_EVENTS;
	int err;

	if (arch->exception == DB_VECTOR)
		what |= VCPU_STATE_DEBUGREGS;
	err = vcpu_get_state(v, what, &s);
	if (err)
		return err;
	/* The guest's DR6 says why, as after a real #DB. */
	s.debugregs.dr6 = arch->dr6;
	s.events.exception.injected = 1;
	s.events.exception.nr = (uint8_t)arch->exception;
	s.events.exception.has_error_code = 0;
	s.events.exception.error_code = 0;
	return vcpu_set_state(v, what, &s);
}

int vcpu_debug_exit(struct vcpu *v, const struct kvm_debug_exit_arch *arch)
{
	struct machine_debug *d = v->m->debug;
	struct vcpu_debug *vd = dbg_of(v);
	struct vcpu_debug_hit hit[VCPU_DEBUG_NR];
	vcpu_debug_fn fn[VCPU_DEBUG_NR];
	void *opaque[VCPU_DEBUG_NR];
	bool stale, exec = false, again = false, changed = false;
	unsigned int mask;

	pthread_mutex_lock(&d->lock);
	mask = vcpu_debug_route(&vd->applied, &vd->cur, arch, hit, &stale);
	for (int o = 0; o < VCPU_DEBUG_NR; o++) {
		fn[o] = d->handler[o].fn;
		opaque[o] = d->handler[o].opaque;
		/* An owner without a handler has nobody to tell. */
		if (!fn[o])
			mask &= ~(1u << o);
		exec |= hit[o].nbp && hit[o].bp[0].type == VCPU_BP_EXEC;
	}
	if (vd->step_over && (arch->dr6 & DR6_BS)) {
		/* Stepped over: the breakpoints come back. */
		vd->step_over = false;
		changed = stale = true;
		exec = false;
	}
	pthread_mutex_unlock(&d->lock);

	if (!mask && !stale)
		return reinject(v, arch) ? -EIO : KVM_CONTINUE;
	for (int o = 0; o < VCPU_DEBUG_NR; o++)
		if (mask & (1u << o) &&
		    fn[o](v, o, &hit[o], opaque[o]) == VCPU_DEBUG_REINJECT)
			again = true;
	if (again)
		return reinject(v, arch) ? -EIO : KVM_CONTINUE;
	if (exec) {
		pthread_mutex_lock(&d->lock);
		vd->step_over = true;
		vd->step_over_pc = arch->pc;
		pthread_mutex_unlock(&d->lock);
		changed = true;
	}
	/* On this thread: in KVM before the guest runs on. */
	if (changed)
		apply(v, NULL);
	return KVM_CONTINUE;
}
