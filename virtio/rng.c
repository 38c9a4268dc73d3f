// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-rng (virtio 1.2, 5.4), --rng: one request queue whose
 * device-writable buffers are filled from the host's getrandom().
 *
 * A chain gets at most RNG_CHUNK bytes, as QEMU caps a request, so that
 * one huge buffer does not keep the I/O thread busy; the driver asks
 * again for more.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>

#include "lkvm/device.h"
#include "lkvm/machine.h"
#include "lkvm/util.h"
#include "lkvm/virtio.h"

#define RNG_CHUNK (64 * 1024)
#define RNG_QUEUE_SIZE 64

struct rng {
	struct virtio_dev *d;
	struct iovec iov[VIRTQ_MAX_SEGS];
};

static const struct device_ops rng_ops;

static uint32_t fill(struct virtio_dev *d, struct virtq_chain *c)
{
	uint32_t done = 0;

	(void)d;
	for (unsigned int i = c->nout; i < c->nout + c->nin; i++) {
		size_t want = MIN(c->iov[i].iov_len, (size_t)(RNG_CHUNK - done));
		ssize_t got;

		if (!want)
			break;
		got = getrandom(c->iov[i].iov_base, want, 0);
		if (got <= 0)
			break;	/* interrupted: what we have */
		done += (uint32_t)got;
		if ((size_t)got < want)
			break;
	}
	return done;
}

static void rng_notify(struct virtio_dev *d, struct virtq *vq)
{
	struct rng *r = d->priv;
	struct virtq_chain c = { .iov = r->iov, .cap = VIRTQ_MAX_SEGS };

	virtio_serve(d, vq, &c, fill);
}

static const struct virtio_dev_ops rng_dev_ops = {
	.device_id = VIRTIO_ID_RNG,
	.pci_class = 0x00ff00,		/* as QEMU: "other" */
	.nqueues = 1,
	.queue_size = RNG_QUEUE_SIZE,
	.queue_notify = rng_notify,
};

struct rng_cfg {
	struct rng *rng;
};

static int rng_init(struct machine *m)
{
	struct rng_cfg *cfg = machine_dev_cfg(m, &rng_ops);
	struct rng *r;
	int err;

	if (!m->cfg.rng || !cfg)
		return 0;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	err = virtio_dev_add(m, &rng_dev_ops, "virtio-rng", r, &r->d);
	if (err) {
		free(r);
		return err;
	}
	cfg->rng = r;
	return 0;
}

static void rng_exit(struct machine *m)
{
	struct rng_cfg *cfg = machine_dev_cfg(m, &rng_ops);

	if (!cfg || !cfg->rng)
		return;
	virtio_dev_remove(cfg->rng->d);
	free(cfg->rng);
	cfg->rng = NULL;
}

static const struct device_ops rng_ops = {
	.name = "virtio-rng",
	.stage = DEV_STAGE_DEVICE,
	.cfg_size = sizeof(struct rng_cfg),
	.init = rng_init,
	.exit = rng_exit,
};
DEVICE(rng_ops);
