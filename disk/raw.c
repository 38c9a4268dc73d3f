// SPDX-License-Identifier: GPL-2.0
/*
 * Raw images: the guest's sector N is the file's byte N * 512. Reads of
 * pages in the page cache are copied from a mapping of the image
 * (disk/map.c); other reads and writes go to the kernel as iocbs, many in
 * flight; flush is an IOCB_CMD_FDSYNC (or fdatasync in the worker where
 * the kernel refuses it); discard and write-zeroes are fallocate calls in
 * the worker.
 */
#include "disk-int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include "lkvm/util.h"

static int raw_open(struct disk *d)
{
	d->info.size = d->file_size & ~511ull;
	if (!d->info.size) {
		disk_err(d, "smaller than one 512-byte sector");
		return -EINVAL;
	}
	d->info.discard = !d->info.readonly;
	return 0;
}

static void raw_rw(struct disk *d, struct disk_req *r)
{
	short op = r->op == DISK_READ ? IO_CMD_PREADV : IO_CMD_PWRITEV;
	struct disk_part *parts[8];
	uint64_t off = r->offset;
	unsigned int i = 0;
	int n = 0;

	if (r->op == DISK_READ && r->ram &&
	    disk_map_read(d, r->iov, r->iovcnt, r->offset)) {
		disk_req_put(d, r, 0);
		return;
	}
	/* One iocb holds at most IOV_MAX buffers. */
	while (i < r->iovcnt) {
		unsigned int cnt = r->iovcnt - i;
		struct disk_part *p;

		if (cnt > IOV_MAX)
			cnt = IOV_MAX;
		p = disk_part_new(r, op, off, r->iov + i, (int)cnt);
		if (!p) {
			while (n)
				free(parts[--n]);
			disk_req_put(d, r, -ENOMEM);
			return;
		}
		off += p->len;
		i += cnt;
		parts[n++] = p;
		if (n == (int)ARRAY_SIZE(parts) || i == r->iovcnt) {
			disk_part_submit(d, parts, n);
			n = 0;
		}
	}
	disk_req_put(d, r, 0);
}

static void raw_submit(struct disk *d, struct disk_req *r)
{
	switch (r->op) {
	case DISK_READ:
	case DISK_WRITE:
		raw_rw(d, r);
		return;
	case DISK_FLUSH:
		if (disk_submit_fdsync(d, r)) {
			disk_req_put(d, r, 0);
			return;
		}
		break;
	default:
		break;
	}
	disk_queue_work(d, r);
}

static void raw_work(struct disk *d, struct disk_req *r)
{
	int ret = 0;

	switch (r->op) {
	case DISK_FLUSH:
		ret = fdatasync(d->fd) ? -errno : 0;
		break;
	case DISK_DISCARD:
		/* Advisory: a file system without holes just keeps the data. */
		if (fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)r->offset, (off_t)r->len) &&
		    errno != EOPNOTSUPP)
			ret = -errno;
		break;
	case DISK_WRITE_ZEROES:
		ret = disk_zero_range(d->fd, r->offset, r->len, false);
		break;
	default:
		ret = -EINVAL;
	}
	disk_req_put(d, r, ret);
}

static void raw_close(struct disk *d)
{
	(void)d;
}

const struct disk_ops disk_raw_ops = {
	.format = "raw",
	.open = raw_open,
	.submit = raw_submit,
	.work = raw_work,
	.close = raw_close,
};
