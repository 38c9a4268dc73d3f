// SPDX-License-Identifier: GPL-2.0
/*
 * The virtio device core: what every transport shares (status and its
 * state machine, feature negotiation, queue set-up, the configuration
 * space, error reporting) and the I/O thread that serves a device's
 * queues. Also the --virtio-transport option.
 *
 * The status state machine (2.1, 3.1):
 * - writing 0 resets the device: the I/O thread is stopped between
 *   batches, the model drains its requests in flight, the queues and the
 *   negotiated features are forgotten;
 * - FEATURES_OK (modern interface) is kept only when the driver's
 *   features are a subset of the device's, include VIRTIO_F_VERSION_1 and
 *   satisfy the model; otherwise the bit reads back clear, which is how
 *   the driver learns (3.1.1 step 6). Features cannot change after it;
 * - DRIVER_OK starts the device: buffers the driver made available
 *   before are served now (2.1.2: not before), so a driver that kicked
 *   early loses nothing. The legacy interface has no FEATURES_OK, and its
 *   drivers may use queues before DRIVER_OK (2.2.4 and QEMU), so they are
 *   served as soon as they are set up;
 * - DEVICE_NEEDS_RESET is the device's: it stays set until reset.
 */
#include "lkvm/virtio.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "lkvm/device.h"
#include "lkvm/machine.h"
#include "lkvm/seccomp.h"
#include "lkvm/util.h"

struct virtio_watch {
	struct virtio_watch *next;
	int fd;
	virtio_fd_fn fn;
	void *opaque;
};

static const struct device_ops virtio_ops;

struct virtio_machine *virtio_machine(struct machine *m)
{
	return machine_dev_cfg(m, &virtio_ops);
}

enum virtio_transport_kind virtio_transport(struct machine *m)
{
	struct virtio_machine *vm = virtio_machine(m);

	return vm ? vm->kind : VIRTIO_PCI;
}

/* ---- negotiation and status ------------------------------------------- */

bool virtio_has_feature(const struct virtio_dev *d, unsigned int b)
{
	return b < 64 && (d->guest_features & VIRTIO_BIT(b));
}

uint32_t virtio_read_host_features(struct virtio_dev *d, unsigned int sel)
{
	uint64_t f = d->host_features;

	/* The legacy interface has 32 feature bits and no VERSION_1; the
	 * legacy-only bits mean nothing to a modern driver. */
	if (d->legacy)
		return sel ? 0 : (uint32_t)f;
	f &= ~(VIRTIO_BIT(VIRTIO_F_ANY_LAYOUT) |
	       VIRTIO_BIT(VIRTIO_F_NOTIFY_ON_EMPTY));
	return sel == 0 ? (uint32_t)f : sel == 1 ? (uint32_t)(f >> 32) : 0;
}

uint32_t virtio_read_guest_features(struct virtio_dev *d, unsigned int sel)
{
	uint64_t f = d->guest_features;

	return sel == 0 ? (uint32_t)f : sel == 1 ? (uint32_t)(f >> 32) : 0;
}

void virtio_write_guest_features(struct virtio_dev *d, unsigned int sel,
				 uint32_t v)
{
	uint8_t st = virtio_read_status(d);

	/* Negotiation is over once accepted (or the device runs). */
	if (st & (VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK))
		return;
	if (d->legacy) {
		if (sel == 0)
			d->guest_features = v;
		return;
	}
	if (sel == 0)
		d->guest_features = (d->guest_features & ~0xffffffffull) | v;
	else if (sel == 1)
		d->guest_features = (d->guest_features & 0xffffffffull) |
				    (uint64_t)v << 32;
}

static bool features_acceptable(struct virtio_dev *d)
{
	uint64_t f = d->guest_features;

	if (f & ~d->host_features)
		return false;
	if (!(f & VIRTIO_BIT(VIRTIO_F_VERSION_1)))
		return false;	/* 6.1: the device MAY refuse */
	return !d->ops->features_ok || d->ops->features_ok(d, f);
}

uint8_t virtio_read_status(struct virtio_dev *d)
{
	return __atomic_load_n(&d->status, __ATOMIC_ACQUIRE);
}

static bool is_legacy(struct virtio_dev *d)
{
	return __atomic_load_n(&d->legacy, __ATOMIC_ACQUIRE);
}

static bool serving(struct virtio_dev *d)
{
	return is_legacy(d) ||
	       (virtio_read_status(d) & VIRTIO_STATUS_DRIVER_OK);
}

void virtio_kick(struct virtio_dev *d, unsigned int q)
{
	uint64_t one = 1;

	if (q < d->nvq && write(d->qs[q].kick_fd, &one, sizeof(one)) < 0)
		(void)0;	/* counter saturated: a kick is pending */
}

static void reset(struct virtio_dev *d)
{
	pthread_mutex_lock(&d->io_lock);
	if (d->ops->reset)
		d->ops->reset(d);
	for (unsigned int q = 0; q < d->nvq; q++) {
		virtq_reset(&d->vq[q]);
		d->qs[q].msix_vector = 0xffff;
		d->qs[q].size_set = virtio_queue_max(d);
	}
	d->guest_features = 0;
	__atomic_store_n(&d->isr, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&d->status, 0, __ATOMIC_RELEASE);
	d->error_logged = false;
	pthread_mutex_unlock(&d->io_lock);
}

void virtio_write_status(struct virtio_dev *d, uint8_t v)
{
	uint8_t old = virtio_read_status(d), new;

	if (!v) {
		reset(d);
		return;
	}
	if (!d->legacy && (v & VIRTIO_STATUS_FEATURES_OK) &&
	    !(old & VIRTIO_STATUS_FEATURES_OK) && !features_acceptable(d))
		v &= ~VIRTIO_STATUS_FEATURES_OK;
	/* NEEDS_RESET belongs to the device, which may set it meanwhile
	 * from the I/O thread; only a reset clears it. */
	do {
		new = (v & ~VIRTIO_STATUS_NEEDS_RESET) |
		      (old & VIRTIO_STATUS_NEEDS_RESET);
	} while (!__atomic_compare_exchange_n(&d->status, &old, new, false,
					      __ATOMIC_ACQ_REL,
					      __ATOMIC_ACQUIRE));
	if ((v & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK))
		for (unsigned int q = 0; q < d->nvq; q++)
			if (d->vq[q].enabled)
				virtio_kick(d, q);
}

uint8_t virtio_isr_take(struct virtio_dev *d)
{
	return __atomic_exchange_n(&d->isr, 0, __ATOMIC_ACQ_REL);
}

/* ---- queues ------------------------------------------------------------- */

uint16_t virtio_queue_max(struct virtio_dev *d)
{
	return d->ops->queue_size ? d->ops->queue_size :
				    VIRTIO_DEFAULT_QUEUE_SIZE;
}

void virtio_queue_set_size(struct virtio_dev *d, unsigned int q, uint16_t n)
{
	/* 0 would make the queue unavailable and more than the maximum is
	 * not offered: both ignored, as QEMU does. */
	if (q < d->nvq && !d->vq[q].enabled && n && n <= virtio_queue_max(d))
		d->qs[q].size_set = n;
}

void virtio_queue_enable(struct virtio_dev *d, unsigned int q)
{
	struct virtq *vq;
	int err;

	if (q >= d->nvq)
		return;
	vq = &d->vq[q];
	pthread_mutex_lock(&d->io_lock);
	vq->size = d->qs[q].size_set;
	vq->event_idx = virtio_has_feature(d, VIRTIO_F_EVENT_IDX);
	vq->indirect = virtio_has_feature(d, VIRTIO_F_INDIRECT_DESC);
	err = virtq_enable(vq);
	pthread_mutex_unlock(&d->io_lock);
	if (err)
		virtio_dev_error(d, vq, err);
	else if (serving(d))
		virtio_kick(d, q);
}

void virtio_queue_disable(struct virtio_dev *d, unsigned int q)
{
	if (q >= d->nvq)
		return;
	pthread_mutex_lock(&d->io_lock);
	virtq_reset(&d->vq[q]);
	pthread_mutex_unlock(&d->io_lock);
}

int virtio_pop(struct virtio_dev *d, struct virtq *vq, struct virtq_chain *c)
{
	int r = virtq_pop(vq, c);

	if (r >= 0)
		return r;
	virtio_dev_error(d, vq, r);
	return 0;
}

void virtio_queue_done(struct virtio_dev *d, struct virtq *vq)
{
	if (!virtq_need_interrupt(vq))
		return;
	__atomic_fetch_or(&d->isr, VIRTIO_ISR_QUEUE, __ATOMIC_ACQ_REL);
	d->t->signal_queue(d, vq);
}

void virtio_serve(struct virtio_dev *d, struct virtq *vq,
		  struct virtq_chain *c, virtio_chain_fn fn)
{
	bool pushed = false;

again:
	virtq_kicks_off(vq);
	while (virtio_pop(d, vq, c) > 0) {
		virtq_push(vq, c->head, fn(d, c));
		pushed = true;
	}
	if (virtq_kicks_on(vq))
		goto again;
	if (pushed)
		virtio_queue_done(d, vq);
}

static void signal_config(struct virtio_dev *d)
{
	if (!(virtio_read_status(d) & VIRTIO_STATUS_DRIVER_OK))
		return;
	__atomic_fetch_or(&d->isr, VIRTIO_ISR_CONFIG, __ATOMIC_ACQ_REL);
	d->t->signal_config(d);
}

void virtio_dev_error(struct virtio_dev *d, struct virtq *vq, int err)
{
	if (vq && !vq->error)
		vq->error = err < 0 ? -err : err;
	/* Once per reset: a hostile driver must not flood the log. */
	if (!__atomic_exchange_n(&d->error_logged, true, __ATOMIC_ACQ_REL))
		pr_warn("%s: queue %u: %s; the device needs a reset", d->name,
			vq ? vq->index : 0, virtq_strerror(err));
	if (is_legacy(d))
		return;	/* no such status bit: the queue just stops */
	__atomic_fetch_or(&d->status, VIRTIO_STATUS_NEEDS_RESET,
			  __ATOMIC_ACQ_REL);
	signal_config(d);
}

void virtio_config_changed(struct virtio_dev *d)
{
	/* No lock: the I/O thread may call this, and d->lock comes first. */
	__atomic_fetch_add(&d->config_gen, 1, __ATOMIC_ACQ_REL);
	signal_config(d);
}

void virtio_config_read(struct virtio_dev *d, unsigned int off, void *buf,
			unsigned int len)
{
	unsigned int size = d->ops->config_size;

	memset(buf, 0, len);
	if (off < size)
		memcpy(buf, d->config + off, MIN(len, size - off));
}

void virtio_config_write(struct virtio_dev *d, unsigned int off,
			 const void *buf, unsigned int len)
{
	unsigned int size = d->ops->config_size;

	if (off >= size || !d->ops->config_write)
		return;
	d->ops->config_write(d, off, buf, MIN(len, size - off));
}

/* ---- the I/O thread ------------------------------------------------------ */

static void on_kick(struct virtio_dev *d, int fd, void *opaque)
{
	struct virtq *vq = opaque;
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0)
		return;	/* spurious wake-up: nothing counted */
	if (serving(d) && virtq_ready(vq))
		d->ops->queue_notify(d, vq);
}

static void *io_thread(void *arg)
{
	struct virtio_dev *d = arg;
	char name[16];

	/* Thread names hold 15 characters. */
	memcpy(name, d->name, sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	pthread_setname_np(pthread_self(), name);
	for (;;) {
		struct epoll_event ev[16];
		int n = epoll_wait(d->epoll_fd, ev, 16, -1);

		seccomp_thread_enter(SECCOMP_IO);
		if (n < 0)
			continue;	/* EINTR */
		pthread_mutex_lock(&d->io_lock);
		for (int i = 0; i < n; i++) {
			struct virtio_watch *w = ev[i].data.ptr;

			if (!w) {
				pthread_mutex_unlock(&d->io_lock);
				return NULL;
			}
			w->fn(d, w->fd, w->opaque);
		}
		pthread_mutex_unlock(&d->io_lock);
	}
}

int virtio_dev_watch(struct virtio_dev *d, int fd, virtio_fd_fn fn,
		     void *opaque)
{
	struct virtio_watch *w = calloc(1, sizeof(*w));
	struct epoll_event ev = { .events = EPOLLIN };

	if (!w)
		return -ENOMEM;
	*w = (struct virtio_watch){ d->watches, fd, fn, opaque };
	ev.data.ptr = w;
	if (epoll_ctl(d->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int err = -errno;

		free(w);
		return err;
	}
	d->watches = w;
	return 0;
}

int virtio_dev_watch_set(struct virtio_dev *d, int fd, bool on)
{
	struct epoll_event ev = { .events = EPOLLIN };

	for (struct virtio_watch *w = d->watches; w; w = w->next) {
		if (w->fd != fd)
			continue;
		ev.data.ptr = w;
		/* Removed, not masked: epoll reports a hang-up regardless. */
		if (epoll_ctl(d->epoll_fd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL,
			      fd, &ev) < 0 && errno != EEXIST && errno != ENOENT)
			return -errno;
		return 0;
	}
	return -ENOENT;
}

/* I/O threads take no signals: those go to the main loop and vCPUs. */
static int start_thread(struct virtio_dev *d)
{
	sigset_t all, old;
	int err;

	sigfillset(&all);
	sigdelset(&all, SIGSYS);	/* seccomp reports through it */
	pthread_sigmask(SIG_BLOCK, &all, &old);
	err = pthread_create(&d->thread, NULL, io_thread, d);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		return -err;
	d->thread_up = true;
	return 0;
}

static void stop_thread(struct virtio_dev *d)
{
	uint64_t one = 1;

	if (!d->thread_up)
		return;
	if (write(d->stop_fd, &one, sizeof(one)) < 0)
		(void)0;	/* already signalled */
	pthread_join(d->thread, NULL);
	d->thread_up = false;
}

/* ---- devices ------------------------------------------------------------- */

static void free_dev(struct virtio_dev *d)
{
	while (d->watches) {
		struct virtio_watch *w = d->watches;

		d->watches = w->next;
		free(w);
	}
	for (unsigned int q = 0; d->qs && q < d->nvq; q++)
		if (d->qs[q].kick_fd >= 0)
			close(d->qs[q].kick_fd);
	if (d->epoll_fd >= 0)
		close(d->epoll_fd);
	if (d->stop_fd >= 0)
		close(d->stop_fd);
	pthread_mutex_destroy(&d->lock);
	pthread_mutex_destroy(&d->io_lock);
	free(d->qs);
	free(d->vq);
	free(d->config);
	free(d);
}

int virtio_dev_add(struct machine *m, const struct virtio_dev_ops *ops,
		   const char *name, void *priv, struct virtio_dev **out)
{
	struct virtio_machine *vm = virtio_machine(m);
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	struct virtio_dev *d = calloc(1, sizeof(*d));
	int err = -ENOMEM;

	if (!d)
		goto nomem;
	d->m = m;
	d->ops = ops;
	d->priv = priv;
	d->epoll_fd = d->stop_fd = -1;
	snprintf(d->name, sizeof(d->name), "%s", name);
	pthread_mutex_init(&d->lock, NULL);
	pthread_mutex_init(&d->io_lock, NULL);
	d->kind = vm ? vm->kind : VIRTIO_PCI;
	d->nvq = ops->nqueues;
	d->vq = calloc(d->nvq, sizeof(*d->vq));
	d->qs = calloc(d->nvq, sizeof(*d->qs));
	d->config = calloc(1, ops->config_size ? ops->config_size : 1);
	if (!d->vq || !d->qs || !d->config) {
		free_dev(d);
		goto nomem;
	}
	for (unsigned int q = 0; q < d->nvq; q++) {
		d->vq[q].m = m;
		d->vq[q].index = q;
		d->qs[q].kick_fd = -1;
		d->qs[q].msix_vector = 0xffff;
		d->qs[q].size_set = virtio_queue_max(d);
	}
	d->host_features = ops->features | VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC) |
			   VIRTIO_BIT(VIRTIO_F_EVENT_IDX);
	if (d->kind == VIRTIO_PCI_LEGACY || d->kind == VIRTIO_MMIO_LEGACY) {
		d->legacy = true;
		d->host_features |= VIRTIO_BIT(VIRTIO_F_ANY_LAYOUT);
	} else {
		d->host_features |= VIRTIO_BIT(VIRTIO_F_VERSION_1);
		if (d->kind == VIRTIO_PCI)	/* a legacy driver may come */
			d->host_features |= VIRTIO_BIT(VIRTIO_F_ANY_LAYOUT);
	}

	d->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	d->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	err = -errno;
	if (d->epoll_fd < 0 || d->stop_fd < 0 ||
	    epoll_ctl(d->epoll_fd, EPOLL_CTL_ADD, d->stop_fd, &ev) < 0)
		goto fail;
	for (unsigned int q = 0; q < d->nvq; q++) {
		d->qs[q].kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		err = d->qs[q].kick_fd < 0 ? -errno :
		      virtio_dev_watch(d, d->qs[q].kick_fd, on_kick, &d->vq[q]);
		if (err)
			goto fail;
	}
	err = d->kind == VIRTIO_MMIO || d->kind == VIRTIO_MMIO_LEGACY ?
		      virtio_mmio_plug(d) :
		      virtio_pci_plug(d);
	if (err) {
		/* The transport said what failed. */
		free_dev(d);
		return err;
	}
	err = start_thread(d);
	if (err) {
		d->t->exit(d);
		goto fail;
	}
	*out = d;
	return 0;
fail:
	pr_err("%s: cannot set up the device: %s", name, strerror(-err));
	free_dev(d);
	return err;
nomem:
	pr_err("%s: out of memory", name);
	return -ENOMEM;
}

void virtio_dev_remove(struct virtio_dev *d)
{
	if (!d)
		return;
	stop_thread(d);
	/* Requests in flight finish before their memory goes away. */
	pthread_mutex_lock(&d->io_lock);
	if (d->ops->reset)
		d->ops->reset(d);
	pthread_mutex_unlock(&d->io_lock);
	if (d->t && d->t->exit)
		d->t->exit(d);
	if (d->ops->exit)
		d->ops->exit(d);
	free_dev(d);
}

/* ---- the --virtio-transport option ------------------------------------- */

static const struct {
	const char *name;
	enum virtio_transport_kind kind;
} transports[] = {
	{ "pci", VIRTIO_PCI },
	{ "pci-modern", VIRTIO_PCI_MODERN },
	{ "pci-legacy", VIRTIO_PCI_LEGACY },
	{ "mmio", VIRTIO_MMIO },
	{ "mmio-legacy", VIRTIO_MMIO_LEGACY },
};

static const struct option virtio_options[] = {
	{ .name = "virtio-transport", .type = OPT_STRING,
	  .offset = offsetof(struct virtio_machine, transport),
	  .argname = "KIND",
	  .help = "how virtio devices attach: pci (transitional, the "
		  "default), pci-modern, pci-legacy, mmio or mmio-legacy" },
	OPTION_END,
};

static int virtio_check(struct machine *m, void *cfg)
{
	struct virtio_machine *vm = cfg;

	(void)m;
	if (!vm->transport) {
		vm->kind = VIRTIO_PCI;
		return 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(transports); i++) {
		if (!strcmp(vm->transport, transports[i].name)) {
			vm->kind = transports[i].kind;
			return 0;
		}
	}
	pr_err("--virtio-transport '%s': use pci, pci-modern, pci-legacy, "
	       "mmio or mmio-legacy", vm->transport);
	return -EINVAL;
}

/*
 * No init of its own: the device models plug themselves in. Staged with
 * the buses so that its exit runs after theirs.
 */
static const struct device_ops virtio_ops = {
	.name = "virtio",
	.stage = DEV_STAGE_BUS,
	.options = virtio_options,
	.cfg_size = sizeof(struct virtio_machine),
	.check = virtio_check,
};
DEVICE(virtio_ops);
