// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-blk (virtio 1.2, 5.2): -d PATH[,ro], one device per disk, the
 * image behind lkvm/disk.h.
 *
 * A request is a header (type, sector) in the device-readable part, data,
 * and a status byte at the very end of the device-writable part. The
 * header and the status may share buffers with the data or not; nothing
 * here assumes a layout (2.7.4). Reads and writes go to the backend with
 * the guest's buffers as the iovec, so data is copied once, between them
 * and the host's page cache; up to a queue's worth of requests are in
 * flight, and completions arrive on the backend's eventfd in the device's
 * I/O thread, which returns them and interrupts the driver once per
 * batch. Reads the backend serves from the page cache right away
 * complete before the notification's handler returns, with one interrupt
 * for all of them.
 *
 * Errors: a request the host cannot do (EIO, ENOSPC...) returns
 * VIRTIO_BLK_S_IOERR and the device goes on; so do ranges past the end,
 * lengths that are not whole sectors, and writes, discards or
 * write-zeroes on a read-only disk. Unknown types return
 * VIRTIO_BLK_S_UNSUPP. A request too short to hold its header and status
 * is a broken chain: the queue stops with DEVICE_NEEDS_RESET, as QEMU
 * does.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lkvm/device.h"
#include "lkvm/disk.h"
#include "lkvm/machine.h"
#include "lkvm/seccomp.h"
#include "lkvm/util.h"
#include "lkvm/virtio.h"

#define BLK_F_SEG_MAX 2
#define BLK_F_RO 5
#define BLK_F_BLK_SIZE 6
#define BLK_F_FLUSH 9
#define BLK_F_DISCARD 13
#define BLK_F_WRITE_ZEROES 14

#define BLK_T_IN 0
#define BLK_T_OUT 1
#define BLK_T_FLUSH 4
#define BLK_T_GET_ID 8
#define BLK_T_DISCARD 11
#define BLK_T_WRITE_ZEROES 13
#define BLK_T_BARRIER 0x80000000u	/* legacy flag, ignored as QEMU */

#define BLK_S_OK 0
#define BLK_S_IOERR 1
#define BLK_S_UNSUPP 2

#define BLK_ID_BYTES 20
#define BLK_HDR 16
#define BLK_SEG 16		/* discard / write-zeroes segment */
#define BLK_WZ_UNMAP 1

#define SECTOR 512
#define BLK_QUEUE_SIZE 256
/* One range per discard or write-zeroes request, as QEMU. */
#define BLK_MAX_RANGE_SECTORS 0x3fffffu

/* struct virtio_blk_config */
#define CFG_CAPACITY 0
#define CFG_SIZE_MAX 8
#define CFG_SEG_MAX 12
#define CFG_BLK_SIZE 20
#define CFG_NUM_QUEUES 34
#define CFG_MAX_DISCARD_SECTORS 36
#define CFG_MAX_DISCARD_SEG 40
#define CFG_DISCARD_ALIGN 44
#define CFG_MAX_WZ_SECTORS 48
#define CFG_MAX_WZ_SEG 52
#define CFG_WZ_MAY_UNMAP 56
#define CFG_SIZE 60

struct blk;

struct blk_req {
	struct blk *b;
	struct virtq *vq;
	struct disk_req dr;
	struct virtq_chain c;
	uint8_t *status;
	uint32_t in_len;
	struct blk_req *next_free;
	struct iovec iov[VIRTQ_MAX_SEGS];
};

struct blk {
	struct virtio_dev *d;
	struct disk *disk;
	const struct disk_info *info;
	uint64_t sectors;
	struct blk_req *reqs;
	struct blk_req *free;
	unsigned int inflight;
	bool starved;		/* a chain waits for a free request */
	bool resetting;		/* completions dropped, not returned */
};

static const struct device_ops blk_ops;

static void put_req(struct blk *b, struct blk_req *r)
{
	r->next_free = b->free;
	b->free = r;
}

static void finish(struct blk_req *r, uint8_t status)
{
	struct blk *b = r->b;

	if (!b->resetting) {
		*r->status = status;
		virtq_push(r->vq, r->c.head, r->in_len);
	}
	put_req(b, r);
}

static void submit(struct blk_req *r, enum disk_op op, uint64_t offset,
		   uint64_t len, unsigned int iovcnt);

static void disk_done(struct disk_req *dr, int result)
{
	struct blk_req *r = dr->opaque;
	struct blk *b = r->b;

	b->inflight--;
	/*
	 * A driver that did not take VIRTIO_BLK_F_FLUSH cannot ask for one
	 * and assumes a write-through device (Linux does, and QEMU then
	 * writes through): a write is durable before it completes.
	 */
	if (!result && !b->resetting &&
	    (dr->op == DISK_WRITE || dr->op == DISK_WRITE_ZEROES) &&
	    !virtio_has_feature(b->d, BLK_F_FLUSH)) {
		submit(r, DISK_FLUSH, 0, 0, 0);
		return;
	}
	finish(r, result ? BLK_S_IOERR : BLK_S_OK);
}

/*
 * Is each buffer in guest RAM that lkvm may write (not ROM, which is
 * mapped read-only)? The backend may then fill it with memcpy; otherwise
 * only the kernel writes it, and refuses read-only pages with EFAULT.
 */
static bool writable_ram(struct machine *m, const struct iovec *iov,
			 unsigned int n)
{
	for (unsigned int i = 0; i < n; i++) {
		const char *p = iov[i].iov_base;
		unsigned int k;

		for (k = 0; k < m->nmem; k++) {
			const struct mem_region *mr = &m->mem[k];
			const char *h = mr->host;

			if (p >= h && (uint64_t)(p - h) <= mr->size &&
			    iov[i].iov_len <= mr->size - (uint64_t)(p - h))
				break;
		}
		if (k == m->nmem || m->mem[k].readonly)
			return false;
	}
	return true;
}

static void submit(struct blk_req *r, enum disk_op op, uint64_t offset,
		   uint64_t len, unsigned int iovcnt)
{
	struct blk *b = r->b;

	r->dr = (struct disk_req){
		.op = op,
		.offset = offset,
		.len = len,
		.iov = r->iov,
		.iovcnt = iovcnt,
		.ram = op == DISK_READ && writable_ram(b->d->m, r->iov, iovcnt),
		.done = disk_done,
		.opaque = r,
	};
	b->inflight++;
	if (disk_submit(b->disk, &r->dr) < 0) {
		/* Refused up front (read-only, past the end): done() will
		 * not run. */
		b->inflight--;
		finish(r, BLK_S_IOERR);
	}
}

/* Is [sector, sector + n) on the disk, with no overflow? */
static bool in_range(struct blk *b, uint64_t sector, uint64_t n)
{
	return sector <= b->sectors && n <= b->sectors - sector;
}

static void rw(struct blk_req *r, bool write, uint64_t sector)
{
	struct blk *b = r->b;
	struct virtq_chain *c = &r->c;
	uint64_t len = write ? c->out_len - BLK_HDR : c->in_len - 1u;
	unsigned int n;

	if (len % SECTOR || !in_range(b, sector, len / SECTOR) ||
	    (write && b->info->readonly)) {
		finish(r, BLK_S_IOERR);
		return;
	}
	if (!len) {
		finish(r, BLK_S_OK);
		return;
	}
	/* The data part, sliced in place: the chain's iov is ours. */
	if (write)
		n = iov_slice(c->iov, c->nout, BLK_HDR, len, r->iov,
			      VIRTQ_MAX_SEGS);
	else
		n = iov_slice(c->iov + c->nout, c->nin, 0, len, r->iov,
			      VIRTQ_MAX_SEGS);
	submit(r, write ? DISK_WRITE : DISK_READ, sector * SECTOR, len, n);
}

static void ranges(struct blk_req *r, bool zeroes)
{
	struct blk *b = r->b;
	uint8_t seg[BLK_SEG];
	uint64_t sector;
	uint32_t n, flags;

	if (r->c.out_len - BLK_HDR != BLK_SEG) {
		finish(r, BLK_S_UNSUPP);	/* max_*_seg is 1 */
		return;
	}
	iov_to_buf(r->c.iov, r->c.nout, BLK_HDR, seg, sizeof(seg));
	sector = get_le64(seg);
	n = get_le32(seg + 8);
	flags = get_le32(seg + 12);
	if (flags & ~(zeroes ? BLK_WZ_UNMAP : 0u)) {
		finish(r, BLK_S_UNSUPP);
		return;
	}
	if (b->info->readonly || n > BLK_MAX_RANGE_SECTORS ||
	    !in_range(b, sector, n)) {
		finish(r, BLK_S_IOERR);
		return;
	}
	if (!n) {
		finish(r, BLK_S_OK);
		return;
	}
	submit(r, zeroes ? DISK_WRITE_ZEROES : DISK_DISCARD, sector * SECTOR,
	       (uint64_t)n * SECTOR, 0);
}

static void get_id(struct blk_req *r)
{
	struct virtq_chain *c = &r->c;
	char id[BLK_ID_BYTES] = { 0 };
	size_t len = c->in_len - 1u;

	/* 20 bytes, NUL-padded when shorter (5.2.6). */
	memcpy(id, r->b->info->serial,
	       strnlen(r->b->info->serial, sizeof(id)));
	iov_from_buf(c->iov + c->nout, c->nin, 0, id, MIN(len, sizeof(id)));
	finish(r, BLK_S_OK);
}

/* Starts one request; false when the chain is broken. */
static bool start(struct blk_req *r)
{
	struct virtq_chain *c = &r->c;
	uint8_t hdr[BLK_HDR];
	struct iovec *last;
	uint32_t type;

	if (c->out_len < BLK_HDR || c->in_len < 1)
		return false;
	last = &c->iov[c->nout + c->nin - 1];
	r->status = (uint8_t *)last->iov_base + last->iov_len - 1;
	r->in_len = c->in_len;
	iov_to_buf(c->iov, c->nout, 0, hdr, sizeof(hdr));
	type = get_le32(hdr) & ~BLK_T_BARRIER;
	switch (type) {
	case BLK_T_IN:
	case BLK_T_OUT:
		rw(r, type == BLK_T_OUT, get_le64(hdr + 8));
		break;
	case BLK_T_FLUSH:
		submit(r, DISK_FLUSH, 0, 0, 0);
		break;
	case BLK_T_GET_ID:
		get_id(r);
		break;
	case BLK_T_DISCARD:
	case BLK_T_WRITE_ZEROES:
		ranges(r, type == BLK_T_WRITE_ZEROES);
		break;
	default:
		finish(r, BLK_S_UNSUPP);
	}
	return true;
}

static void blk_notify(struct virtio_dev *d, struct virtq *vq)
{
	struct blk *b = d->priv;
	bool started = false;

	for (;;) {
		disk_plug(b->disk);
	again:
		virtq_kicks_off(vq);
		while (b->free) {
			struct blk_req *r = b->free;

			r->c.iov = r->iov;
			r->c.cap = VIRTQ_MAX_SEGS;
			if (virtio_pop(d, vq, &r->c) <= 0)
				break;
			b->free = r->next_free;
			r->vq = vq;
			started = true;
			if (!start(r)) {
				put_req(b, r);
				virtio_dev_error(d, vq, -VIRTQ_E_FRAMING);
				break;
			}
		}
		if (!b->free) {
			/* Completions will free requests and come back
			 * here; kicks stay off until then. */
			b->starved = true;
		} else if (virtq_kicks_on(vq)) {
			goto again;
		}
		/* Reads served from the page cache finish here, without a
		 * trip through the completion eventfd. */
		disk_unplug_complete(b->disk);
		if (!b->starved || !b->free || !virtq_ready(vq))
			break;
		b->starved = false;	/* they freed requests: go on */
	}
	if (started)
		virtio_queue_done(d, vq);
}

static void on_completion(struct virtio_dev *d, int fd, void *opaque)
{
	struct blk *b = d->priv;

	(void)fd;
	(void)opaque;
	disk_complete(b->disk);
	virtio_queue_done(d, &d->vq[0]);
	if (b->starved && b->free) {
		b->starved = false;
		if (virtq_ready(&d->vq[0]))
			blk_notify(d, &d->vq[0]);
	}
}

static void blk_reset(struct virtio_dev *d)
{
	struct blk *b = d->priv;
	struct pollfd p = { .fd = disk_completion_fd(b->disk),
			    .events = POLLIN };

	/* The driver may reuse the buffers once it sees the reset: wait
	 * for the backend to be done with them. */
	b->resetting = true;
	while (b->inflight) {
		if (poll(&p, 1, -1) < 0)
			continue;
		disk_complete(b->disk);
	}
	b->resetting = false;
	b->starved = false;
}

static const struct virtio_dev_ops blk_dev_ops = {
	.device_id = VIRTIO_ID_BLK,
	.pci_class = 0x010000,		/* mass storage, SCSI: as QEMU */
	.nqueues = 1,
	.queue_size = BLK_QUEUE_SIZE,
	.config_size = CFG_SIZE,
	.queue_notify = blk_notify,
	.reset = blk_reset,
};

static void fill_config(struct blk *b, uint8_t *cfg)
{
	put_le64(cfg + CFG_CAPACITY, b->sectors);
	put_le32(cfg + CFG_SIZE_MAX, 0);
	/* Two descriptors go to the header and the status. */
	put_le32(cfg + CFG_SEG_MAX, BLK_QUEUE_SIZE - 2);
	put_le32(cfg + CFG_BLK_SIZE, SECTOR);
	put_le16(cfg + CFG_NUM_QUEUES, 1);
	put_le32(cfg + CFG_MAX_DISCARD_SECTORS, BLK_MAX_RANGE_SECTORS);
	put_le32(cfg + CFG_MAX_DISCARD_SEG, 1);
	put_le32(cfg + CFG_DISCARD_ALIGN, 1);
	put_le32(cfg + CFG_MAX_WZ_SECTORS, BLK_MAX_RANGE_SECTORS);
	put_le32(cfg + CFG_MAX_WZ_SEG, 1);
	cfg[CFG_WZ_MAY_UNMAP] = 1;
}

struct blk_cfg {
	struct disk *disk[OPT_LIST_MAX];	/* opened by the check */
	struct blk *blk[OPT_LIST_MAX];
	unsigned int n;
};

static void blk_free(struct blk *b)
{
	if (b->disk)
		disk_close(b->disk);
	free(b->reqs);
	free(b);
}

/* Takes the disk: closed on failure. */
static int add_disk(struct machine *m, struct disk *disk, unsigned int i,
		    struct blk **out)
{
	struct virtio_dev_ops *ops;
	struct blk *b = calloc(1, sizeof(*b));
	char name[32];
	int err;

	if (!b) {
		disk_close(disk);
		return -ENOMEM;
	}
	b->disk = disk;
	b->info = disk_info(b->disk);
	b->sectors = b->info->size / SECTOR;
	b->reqs = calloc(BLK_QUEUE_SIZE, sizeof(*b->reqs));
	ops = malloc(sizeof(*ops));
	if (!b->reqs || !ops) {
		free(ops);
		blk_free(b);
		return -ENOMEM;
	}
	for (unsigned int k = BLK_QUEUE_SIZE; k-- > 0;) {
		b->reqs[k].b = b;
		put_req(b, &b->reqs[k]);
	}
	/* Each disk offers what its backend can do. */
	*ops = blk_dev_ops;
	ops->features = VIRTIO_BIT(BLK_F_SEG_MAX) | VIRTIO_BIT(BLK_F_BLK_SIZE) |
			VIRTIO_BIT(BLK_F_FLUSH) |
			VIRTIO_BIT(BLK_F_WRITE_ZEROES);
	if (b->info->readonly)
		ops->features |= VIRTIO_BIT(BLK_F_RO);
	if (b->info->discard)
		ops->features |= VIRTIO_BIT(BLK_F_DISCARD);
	snprintf(name, sizeof(name), "virtio-blk%u", i);
	err = virtio_dev_add(m, ops, name, b, &b->d);
	if (err) {
		free(ops);
		blk_free(b);
		return err;
	}
	fill_config(b, b->d->config);
	err = virtio_dev_watch(b->d, disk_completion_fd(b->disk),
			       on_completion, NULL);
	if (err) {
		pr_err("%s: cannot watch the disk's completions: %s", name,
		       strerror(-err));
		virtio_dev_remove(b->d);
		free(ops);
		blk_free(b);
		return err;
	}
	*out = b;
	return 0;
}

static void remove_disk(struct blk *b)
{
	const struct virtio_dev_ops *ops = b->d->ops;

	virtio_dev_remove(b->d);
	free((void *)ops);
	blk_free(b);
}

static void close_unused(struct blk_cfg *cfg, struct machine *m)
{
	for (unsigned int i = 0; i < m->cfg.disks.n; i++) {
		if (cfg->disk[i])
			disk_close(cfg->disk[i]);
		cfg->disk[i] = NULL;
	}
}

/*
 * The images open before any device is set up, so that a missing or
 * corrupt one is refused with the backend's one line and nothing else.
 */
static int blk_check(struct machine *m, void *c)
{
	struct blk_cfg *cfg = c;
	int err;

	if (!m->cfg.disks.n)
		return 0;
	for (unsigned int i = 0; i < m->cfg.disks.n; i++) {
		err = disk_open(m->cfg.disks.v[i], &cfg->disk[i]);
		if (err) {
			cfg->disk[i] = NULL;
			close_unused(cfg, m);
			return err;
		}
	}
	return 0;
}

static int blk_init(struct machine *m)
{
	struct blk_cfg *cfg = machine_dev_cfg(m, &blk_ops);
	int err;

	if (!cfg || !m->cfg.disks.n)
		return 0;
	if (!cfg->disk[0] && (err = blk_check(m, cfg)))
		return err;
	for (unsigned int i = 0; i < m->cfg.disks.n; i++) {
		struct disk *disk = cfg->disk[i];

		cfg->disk[i] = NULL;
		err = add_disk(m, disk, i, &cfg->blk[cfg->n]);
		if (err) {
			close_unused(cfg, m);
			return err;
		}
		cfg->n++;
	}
	return 0;
}

static void blk_exit(struct machine *m)
{
	struct blk_cfg *cfg = machine_dev_cfg(m, &blk_ops);

	if (!cfg)
		return;
	while (cfg->n)
		remove_disk(cfg->blk[--cfg->n]);
	close_unused(cfg, m);
}

/* Discard and write-zeroes punch or zero ranges of the image
 * (disk/disk.c, disk/qcow2.c), on whichever thread runs the request;
 * reads ask which pages of the image are cached (disk/map.c). */
static const struct seccomp_rule blk_seccomp[] = {
	SECCOMP_SYSCALL(fallocate, SECCOMP_ALL),
	SECCOMP_SYSCALL(mincore, SECCOMP_ALL),
	SECCOMP_END,
};

static const struct device_ops blk_ops = {
	.name = "virtio-blk",
	.stage = DEV_STAGE_DEVICE,
	.cfg_size = sizeof(struct blk_cfg),
	.check = blk_check,
	.init = blk_init,
	.exit = blk_exit,
	.seccomp = blk_seccomp,
};
DEVICE(blk_ops);
