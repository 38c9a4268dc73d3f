// SPDX-License-Identifier: GPL-2.0
/*
 * vCPU control: holds, parking, work on the vCPU thread, events.
 * See include/lkvm/vcpu.h for the model.
 *
 * The vCPU thread looks at one atomic flag (request) before each
 * KVM_RUN; everything else is under the vCPU's lock. A holder sets the
 * flag before kicking, and kvm_vcpu_run() clears immediate_exit before
 * the thread looks at the flag again, so a hold is never lost: either
 * the thread sees the flag, or the kick's immediate_exit comes after the
 * clear and the next KVM_RUN returns at once.
 */
#include "lkvm/vcpu.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "lkvm/machine.h"
#include "lkvm/util.h"

struct vcpu_work {
	vcpu_work_fn fn;
	void *arg;
	bool wait, done;
	struct vcpu_work *next;
};

struct vcpu_ctl {
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* any change below */
	unsigned int holds[VCPU_HOLD_NR];
	unsigned int nholds;
	enum vcpu_run_state state;
	bool request;			/* atomic: holds or work pending */
	bool dirty;			/* the last exit may need completing */
	pthread_t thread;
	bool has_thread;
	struct vcpu_work *work, **work_tail;
	struct vcpu_event *event;
	uint64_t exits[VCPU_EXIT_REASONS];	/* atomic, written by the thread */
	int stats_fd;			/* KVM's binary statistics, or -1 */
};

struct machine_vcpu_ctl {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct vcpu_event *head, **tail;	/* published, not taken */
};

static void cond_init(pthread_cond_t *c)
{
	pthread_condattr_t a;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(c, &a);
	pthread_condattr_destroy(&a);
}

/* A deadline timeout_ms from now; *forever when timeout_ms < 0. */
static void deadline(struct timespec *ts, int timeout_ms, bool *forever)
{
	*forever = timeout_ms < 0;
	clock_gettime(CLOCK_MONOTONIC, ts);
	if (*forever)
		return;
	ts->tv_sec += timeout_ms / 1000;
	ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

/* Waits on c; false once the deadline has passed. */
static bool wait_until(pthread_cond_t *c, pthread_mutex_t *l,
		       const struct timespec *ts, bool forever)
{
	if (forever) {
		pthread_cond_wait(c, l);
		return true;
	}
	return pthread_cond_timedwait(c, l, ts) != ETIMEDOUT;
}

/* ---- life cycle --------------------------------------------------------- */

int machine_vcpu_ctl_init(struct machine *m)
{
	struct machine_vcpu_ctl *c;

	if (m->vctl)
		return 0;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	cond_init(&c->cond);
	c->tail = &c->head;
	m->vctl = c;
	return 0;
}

void machine_vcpu_ctl_free(struct machine *m)
{
	struct machine_vcpu_ctl *c = m->vctl;

	if (!c)
		return;
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	free(c);
	m->vctl = NULL;
}

int vcpu_ctl_init(struct vcpu *v)
{
	struct vcpu_ctl *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	cond_init(&c->cond);
	c->state = VCPU_STATE_CREATED;
	c->work_tail = &c->work;
	c->stats_fd = -1;
	v->ctl = c;
	return 0;
}

void vcpu_ctl_free(struct vcpu *v)
{
	struct vcpu_ctl *c = v->ctl;

	if (!c)
		return;
	while (c->work) {
		struct vcpu_work *w = c->work;

		c->work = w->next;
		if (!w->wait)
			free(w);
	}
	if (c->stats_fd >= 0)
		close(c->stats_fd);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	free(c);
	v->ctl = NULL;
}

static bool own_thread(const struct vcpu_ctl *c)
{
	return __atomic_load_n(&c->has_thread, __ATOMIC_ACQUIRE) &&
	       pthread_equal(c->thread, pthread_self());
}

void vcpu_ctl_thread_start(struct vcpu *v)
{
	struct vcpu_ctl *c = v->ctl;

	/* A vCPU ioctl waits while the vCPU is in KVM_RUN: the statistics
	 * fd is opened now, and read later without the vCPU. */
	if (v->kvm && kvm_check_extension(v->m->kvm, KVM_CAP_BINARY_STATS_FD) > 0)
		c->stats_fd = ioctl(kvm_vcpu_fd(v->kvm), KVM_GET_STATS_FD, NULL);
	pthread_mutex_lock(&c->lock);
	c->thread = pthread_self();
	__atomic_store_n(&c->has_thread, true, __ATOMIC_RELEASE);
	c->state = VCPU_STATE_RUNNING;
	pthread_mutex_unlock(&c->lock);
}

void vcpu_ctl_thread_end(struct vcpu *v)
{
	struct vcpu_ctl *c = v->ctl;
	struct vcpu_work *w, *next;

	pthread_mutex_lock(&c->lock);
	c->state = VCPU_STATE_EXITED;
	/* Work that never ran: waiters see EXITED; the rest is dropped. */
	for (w = c->work; w; w = next) {
		next = w->next;
		if (!w->wait)
			free(w);
	}
	c->work = NULL;
	c->work_tail = &c->work;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

void vcpu_ctl_wake_all(struct machine *m)
{
	for (unsigned int i = 0; m->vcpus && i < m->ncpus; i++) {
		struct vcpu_ctl *c = m->vcpus[i].ctl;

		if (!c)
			continue;
		pthread_mutex_lock(&c->lock);
		pthread_cond_broadcast(&c->cond);
		pthread_mutex_unlock(&c->lock);
	}
	if (m->vctl) {
		pthread_mutex_lock(&m->vctl->lock);
		pthread_cond_broadcast(&m->vctl->cond);
		pthread_mutex_unlock(&m->vctl->lock);
	}
}

/* ---- the vCPU thread's side ---------------------------------------------- */

bool vcpu_ctl_pending(struct vcpu *v)
{
	return __atomic_load_n(&v->ctl->request, __ATOMIC_SEQ_CST);
}

void vcpu_ctl_count_exit(struct vcpu *v, int r)
{
	struct vcpu_ctl *c = v->ctl;
	unsigned int reason = kvm_vcpu_run_state(v->kvm)->exit_reason;

	if (r == -EINTR)
		reason = KVM_EXIT_INTR;
	if (reason < VCPU_EXIT_REASONS)
		__atomic_store_n(&c->exits[reason], c->exits[reason] + 1,
				 __ATOMIC_RELAXED);
	/* After these KVM finishes the instruction only at the next
	 * KVM_RUN; after a kick nothing is left over. */
	c->dirty = r != -EINTR && r != -EAGAIN;
}

/*
 * Completes what the last exit left for the next KVM_RUN (an I/O read's
 * data, an MMIO or MSR access) with an immediate-exit KVM_RUN, which
 * finishes it and returns -EINTR without entering the guest. A
 * completion may itself exit again (a split MMIO access): those are
 * handled as usual. False when the run must end.
 */
static bool complete_pending_exit(struct vcpu *v)
{
	struct machine *m = v->m;

	for (int i = 0; i < 64; i++) {
		int r;

		__atomic_store_n(&kvm_vcpu_run_state(v->kvm)->immediate_exit, 1,
				 __ATOMIC_SEQ_CST);
		r = kvm_vcpu_run(v->kvm);
		vcpu_ctl_count_exit(v, r);
		if (r == -EINTR || r == -EAGAIN)
			return true;
		if (r == KVM_CONTINUE)
			continue;
		if (r < 0) {
			char why[64];

			snprintf(why, sizeof(why), "KVM_RUN failed: %s",
				 strerror(-r));
			machine_dump_vcpu(m, v, why);
			machine_stop(m, LKVM_EXIT_CRASH);
		}
		return false;
	}
	machine_dump_vcpu(m, v, "an exit could not be completed");
	machine_stop(m, LKVM_EXIT_CRASH);
	return false;
}

bool vcpu_ctl_service(struct vcpu *v)
{
	struct vcpu_ctl *c = v->ctl;
	struct machine *m = v->m;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		if (machine_stopping(m))
			break;
		if ((c->work || c->nholds) && c->dirty) {
			bool ok;

			pthread_mutex_unlock(&c->lock);
			ok = complete_pending_exit(v);
			pthread_mutex_lock(&c->lock);
			if (!ok)
				break;
			continue;
		}
		if (c->work) {
			struct vcpu_work *w = c->work;

			c->work = w->next;
			if (!c->work)
				c->work_tail = &c->work;
			pthread_mutex_unlock(&c->lock);
			w->fn(v, w->arg);
			pthread_mutex_lock(&c->lock);
			if (w->wait) {
				w->done = true;
				pthread_cond_broadcast(&c->cond);
			} else {
				free(w);
			}
			continue;
		}
		if (c->nholds) {
			if (c->state != VCPU_STATE_PARKED) {
				c->state = VCPU_STATE_PARKED;
				pthread_cond_broadcast(&c->cond);
			}
			pthread_cond_wait(&c->cond, &c->lock);
			continue;
		}
		c->state = VCPU_STATE_RUNNING;
		__atomic_store_n(&c->request, false, __ATOMIC_SEQ_CST);
		pthread_mutex_unlock(&c->lock);
		return true;
	}
	pthread_mutex_unlock(&c->lock);
	return false;
}

/* ---- holding and releasing ------------------------------------------------ */

static void kick_locked(struct vcpu *v, bool *kick)
{
	__atomic_store_n(&v->ctl->request, true, __ATOMIC_SEQ_CST);
	*kick = v->ctl->state == VCPU_STATE_RUNNING && !own_thread(v->ctl);
}

bool vcpu_on_own_thread(struct vcpu *v)
{
	return v->ctl && own_thread(v->ctl);
}

void vcpu_kick(struct vcpu *v)
{
	if (v->kvm)
		kvm_vcpu_kick(v->kvm, VCPU_KICK_SIGNAL);
}

void vcpu_hold_async(struct vcpu *v, enum vcpu_hold_reason why)
{
	struct vcpu_ctl *c = v->ctl;
	bool kick;

	pthread_mutex_lock(&c->lock);
	c->holds[why]++;
	c->nholds++;
	kick_locked(v, &kick);
	pthread_mutex_unlock(&c->lock);
	if (kick)
		vcpu_kick(v);
}

static bool stopped_locked(const struct vcpu_ctl *c)
{
	return c->state != VCPU_STATE_RUNNING;
}

static int wait_stopped_until(struct vcpu *v, const struct timespec *ts,
			      bool forever)
{
	struct vcpu_ctl *c = v->ctl;
	int err = 0;

	if (own_thread(c))
		return 0;
	pthread_mutex_lock(&c->lock);
	while (!stopped_locked(c)) {
		if (!wait_until(&c->cond, &c->lock, ts, forever) &&
		    !stopped_locked(c)) {
			err = -ETIMEDOUT;
			break;
		}
	}
	pthread_mutex_unlock(&c->lock);
	return err;
}

int vcpu_wait_stopped(struct vcpu *v, int timeout_ms)
{
	struct timespec ts;
	bool forever;

	deadline(&ts, timeout_ms, &forever);
	return wait_stopped_until(v, &ts, forever);
}

int vcpu_hold(struct vcpu *v, enum vcpu_hold_reason why, int timeout_ms)
{
	vcpu_hold_async(v, why);
	return vcpu_wait_stopped(v, timeout_ms);
}

void vcpu_release(struct vcpu *v, enum vcpu_hold_reason why)
{
	struct vcpu_ctl *c = v->ctl;

	pthread_mutex_lock(&c->lock);
	if (c->holds[why]) {
		c->holds[why]--;
		if (!--c->nholds)
			pthread_cond_broadcast(&c->cond);
	}
	pthread_mutex_unlock(&c->lock);
}

unsigned int vcpu_holds(struct vcpu *v, enum vcpu_hold_reason why)
{
	unsigned int n;

	pthread_mutex_lock(&v->ctl->lock);
	n = v->ctl->holds[why];
	pthread_mutex_unlock(&v->ctl->lock);
	return n;
}

enum vcpu_run_state vcpu_state(struct vcpu *v)
{
	enum vcpu_run_state s;

	pthread_mutex_lock(&v->ctl->lock);
	s = v->ctl->state;
	pthread_mutex_unlock(&v->ctl->lock);
	return s;
}

bool vcpu_stopped(struct vcpu *v)
{
	bool s;

	if (own_thread(v->ctl))
		return true;
	pthread_mutex_lock(&v->ctl->lock);
	s = stopped_locked(v->ctl);
	pthread_mutex_unlock(&v->ctl->lock);
	return s;
}

int machine_hold_all(struct machine *m, enum vcpu_hold_reason why,
		     int timeout_ms)
{
	struct timespec ts;
	bool forever;
	int err = 0;

	for (unsigned int i = 0; i < m->ncpus; i++)
		vcpu_hold_async(&m->vcpus[i], why);
	deadline(&ts, timeout_ms, &forever);
	for (unsigned int i = 0; i < m->ncpus; i++) {
		int e = wait_stopped_until(&m->vcpus[i], &ts, forever);

		if (e && !err)
			err = e;
	}
	return err;
}

void machine_release_all(struct machine *m, enum vcpu_hold_reason why)
{
	for (unsigned int i = 0; i < m->ncpus; i++)
		vcpu_release(&m->vcpus[i], why);
}

/* ---- state ------------------------------------------------------------------ */

static int xioctl(struct vcpu *v, unsigned long req, void *arg)
{
	return ioctl(kvm_vcpu_fd(v->kvm), req, arg) < 0 ? -errno : 0;
}

int vcpu_get_state(struct vcpu *v, unsigned int what, struct vcpu_regs *s)
{
	int err = 0;

	if (!vcpu_stopped(v))
		return -EBUSY;
	if (!err && (what & VCPU_STATE_REGS))
		err = kvm_get_regs(v->kvm, &s->regs);
	if (!err && (what & VCPU_STATE_SREGS))
		err = kvm_get_sregs(v->kvm, &s->sregs);
	if (!err && (what & VCPU_STATE_FPU))
		err = kvm_get_fpu(v->kvm, &s->fpu);
	if (!err && (what & VCPU_STATE_DEBUGREGS))
		err = xioctl(v, KVM_GET_DEBUGREGS, &s->debugregs);
	if (!err && (what & VCPU_STATE_EVENTS))
		err = kvm_get_vcpu_events(v->kvm, &s->events);
	if (!err && (what & VCPU_STATE_MP))
		err = kvm_get_mp_state(v->kvm, &s->mp);
	return err < 0 ? err : 0;
}

int vcpu_set_state(struct vcpu *v, unsigned int what,
		   const struct vcpu_regs *s)
{
	int err = 0;

	if (!vcpu_stopped(v))
		return -EBUSY;
	/* Segments and modes before the registers that depend on them. */
	if (!err && (what & VCPU_STATE_SREGS))
		err = kvm_set_sregs(v->kvm, &s->sregs);
	if (!err && (what & VCPU_STATE_REGS))
		err = kvm_set_regs(v->kvm, &s->regs);
	if (!err && (what & VCPU_STATE_FPU))
		err = kvm_set_fpu(v->kvm, &s->fpu);
	if (!err && (what & VCPU_STATE_DEBUGREGS))
		err = xioctl(v, KVM_SET_DEBUGREGS, (void *)&s->debugregs);
	if (!err && (what & VCPU_STATE_EVENTS))
		err = kvm_set_vcpu_events(v->kvm, &s->events);
	if (!err && (what & VCPU_STATE_MP))
		err = kvm_set_mp_state(v->kvm, &s->mp);
	return err < 0 ? err : 0;
}

int vcpu_inject_nmi(struct vcpu *v)
{
	if (!vcpu_stopped(v))
		return -EBUSY;
	return kvm_inject_nmi(v->kvm) < 0 ? -EIO : 0;
}

/* ---- work ---------------------------------------------------------------------- */

int vcpu_run_on(struct vcpu *v, vcpu_work_fn fn, void *arg, bool wait)
{
	struct vcpu_ctl *c = v->ctl;
	struct vcpu_work local = { fn, arg, true, false, NULL }, *w = &local;
	int err = 0;
	bool kick;

	if (own_thread(c)) {
		fn(v, arg);
		return 0;
	}
	if (!wait) {
		w = calloc(1, sizeof(*w));
		if (!w)
			return -ENOMEM;
		*w = (struct vcpu_work){ fn, arg, false, false, NULL };
	}
	pthread_mutex_lock(&c->lock);
	if (c->state == VCPU_STATE_EXITED) {
		pthread_mutex_unlock(&c->lock);
		if (!wait)
			free(w);
		return -ESRCH;
	}
	*c->work_tail = w;
	c->work_tail = &w->next;
	kick_locked(v, &kick);
	pthread_cond_broadcast(&c->cond);	/* a parked vCPU */
	while (wait && !w->done) {
		if (c->state == VCPU_STATE_EXITED) {
			err = -ESRCH;
			break;
		}
		if (kick) {
			pthread_mutex_unlock(&c->lock);
			vcpu_kick(v);
			kick = false;
			pthread_mutex_lock(&c->lock);
			continue;
		}
		pthread_cond_wait(&c->cond, &c->lock);
	}
	pthread_mutex_unlock(&c->lock);
	if (!wait && kick)
		vcpu_kick(v);
	return err;
}

/* ---- events ---------------------------------------------------------------------- */

static void unpublish(struct machine_vcpu_ctl *mc, struct vcpu_event *ev)
{
	for (struct vcpu_event **p = &mc->head; *p; p = &(*p)->next) {
		if (*p == ev) {
			*p = ev->next;
			if (mc->tail == &ev->next)
				mc->tail = p;
			ev->next = NULL;
			return;
		}
	}
}

int vcpu_event_wait(struct vcpu *v, struct vcpu_event *ev, int timeout_ms)
{
	struct vcpu_ctl *c = v->ctl;
	struct machine_vcpu_ctl *mc = v->m->vctl;
	enum vcpu_run_state prev;
	struct timespec ts;
	bool forever;
	int r;

	ev->v = v;
	ev->done = ev->taken = false;
	ev->next = NULL;
	ev->reply = 0;
	deadline(&ts, timeout_ms, &forever);

	pthread_mutex_lock(&c->lock);
	prev = c->state;
	c->event = ev;
	c->state = VCPU_STATE_EVENT;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);

	if (ev->published) {
		ev->published(ev);
	} else {
		pthread_mutex_lock(&mc->lock);
		*mc->tail = ev;
		mc->tail = &ev->next;
		pthread_cond_broadcast(&mc->cond);
		pthread_mutex_unlock(&mc->lock);
	}

	pthread_mutex_lock(&c->lock);
	for (;;) {
		if (ev->done) {
			r = ev->reply;
			break;
		}
		if (machine_stopping(v->m)) {
			r = -ESHUTDOWN;
			break;
		}
		if (!wait_until(&c->cond, &c->lock, &ts, forever) && !ev->done) {
			r = -ETIMEDOUT;
			break;
		}
	}
	/* Whoever holds it was promised a vCPU that does not change: it
	 * stays in the event, answered or not, until released. */
	while (c->nholds && !machine_stopping(v->m))
		pthread_cond_wait(&c->cond, &c->lock);
	c->event = NULL;
	c->state = prev;
	pthread_mutex_unlock(&c->lock);

	pthread_mutex_lock(&mc->lock);
	unpublish(mc, ev);
	pthread_mutex_unlock(&mc->lock);
	return r;
}

struct vcpu_event *vcpu_current_event(struct vcpu *v)
{
	struct vcpu_event *ev;

	pthread_mutex_lock(&v->ctl->lock);
	ev = v->ctl->event;
	pthread_mutex_unlock(&v->ctl->lock);
	return ev;
}

void vcpu_event_reply(struct vcpu_event *ev, int reply)
{
	struct vcpu_ctl *c = ev->v->ctl;

	pthread_mutex_lock(&c->lock);
	if (c->event == ev && !ev->done) {
		ev->reply = reply;
		ev->done = true;
		pthread_cond_broadcast(&c->cond);
	}
	pthread_mutex_unlock(&c->lock);
}

struct vcpu_event *vcpu_event_next(struct machine *m, int timeout_ms)
{
	struct machine_vcpu_ctl *mc = m->vctl;
	struct vcpu_event *ev = NULL;
	struct timespec ts;
	bool forever;

	deadline(&ts, timeout_ms, &forever);
	pthread_mutex_lock(&mc->lock);
	while (!machine_stopping(m)) {
		if (mc->head) {
			ev = mc->head;
			unpublish(mc, ev);
			ev->taken = true;
			break;
		}
		if (!wait_until(&mc->cond, &mc->lock, &ts, forever) &&
		    !mc->head)
			break;
	}
	pthread_mutex_unlock(&mc->lock);
	return ev;
}

/* ---- statistics ------------------------------------------------------------------- */

int vcpu_stats_fd(struct vcpu *v)
{
	return v->ctl ? v->ctl->stats_fd : -1;
}

void machine_exit_counts(struct machine *m, uint64_t out[VCPU_EXIT_REASONS])
{
	memset(out, 0, sizeof(uint64_t) * VCPU_EXIT_REASONS);
	for (unsigned int i = 0; m->vcpus && i < m->ncpus; i++) {
		struct vcpu_ctl *c = m->vcpus[i].ctl;

		for (unsigned int r = 0; c && r < VCPU_EXIT_REASONS; r++)
			out[r] += __atomic_load_n(&c->exits[r],
						  __ATOMIC_RELAXED);
	}
}

const char *vcpu_exit_name(unsigned int reason)
{
	static const char *const names[] = {
		[KVM_EXIT_UNKNOWN] = "unknown",
		[KVM_EXIT_EXCEPTION] = "exception",
		[KVM_EXIT_IO] = "io",
		[KVM_EXIT_HYPERCALL] = "hypercall",
		[KVM_EXIT_DEBUG] = "debug",
		[KVM_EXIT_HLT] = "hlt",
		[KVM_EXIT_MMIO] = "mmio",
		[KVM_EXIT_IRQ_WINDOW_OPEN] = "irq_window_open",
		[KVM_EXIT_SHUTDOWN] = "shutdown",
		[KVM_EXIT_FAIL_ENTRY] = "fail_entry",
		[KVM_EXIT_INTR] = "intr",
		[KVM_EXIT_SET_TPR] = "set_tpr",
		[KVM_EXIT_TPR_ACCESS] = "tpr_access",
		[KVM_EXIT_NMI] = "nmi",
		[KVM_EXIT_INTERNAL_ERROR] = "internal_error",
		[KVM_EXIT_SYSTEM_EVENT] = "system_event",
		[KVM_EXIT_IOAPIC_EOI] = "ioapic_eoi",
		[KVM_EXIT_HYPERV] = "hyperv",
		[KVM_EXIT_X86_RDMSR] = "rdmsr",
		[KVM_EXIT_X86_WRMSR] = "wrmsr",
		[KVM_EXIT_DIRTY_RING_FULL] = "dirty_ring_full",
		[KVM_EXIT_X86_BUS_LOCK] = "bus_lock",
		[KVM_EXIT_NOTIFY] = "notify",
	};

	if (reason < ARRAY_SIZE(names) && names[reason])
		return names[reason];
	return NULL;
}
