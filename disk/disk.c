// SPDX-License-Identifier: GPL-2.0
/*
 * The common half of the block backends: opening "PATH[,ro]", telling
 * raw from qcow2 by the contents, the libaio context whose completions
 * signal one eventfd, the worker thread for what blocks, and requests
 * split into parts that finish in disk_complete().
 *
 * Images are opened without O_DIRECT: the page cache is the host's cache
 * as for QEMU's cache=writeback, and guests ask for durability with
 * flush, which becomes fdatasync.
 */
#include "disk-int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lkvm/seccomp.h"
#include "lkvm/util.h"

#define AIO_SLOTS	512
#define EVENT_BATCH	64

/* The backend's view of disk_req.priv while the request is in flight. */
struct req_state {
	struct disk_req *next;
	long pending;
	long result;
	void *backend;
};

_Static_assert(sizeof(struct req_state) <= sizeof(((struct disk_req *)0)->priv),
	       "disk_req.priv too small");

static struct req_state *rs(struct disk_req *r)
{
	return (struct req_state *)(void *)r->priv;
}

void disk_err(const struct disk *d, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pr_err("disk '%s': %s", d->path, msg);
}

/* ---- iovec walks ---- */

void iov_cur_init(struct iov_cur *c, const struct iovec *iov,
		  unsigned int cnt)
{
	c->iov = iov;
	c->cnt = cnt;
	c->idx = 0;
	c->off = 0;
}

int iov_cur_take(struct iov_cur *c, uint64_t len, struct iovec *out,
		 int max)
{
	unsigned int i = c->idx;
	size_t off = c->off;
	uint64_t left = len;
	int n = 0;

	/* Count first, so that a refusal leaves the walk where it was. */
	while (left && i < c->cnt) {
		size_t avail = c->iov[i].iov_len - off;

		if (avail) {
			if (++n > max)
				return -1;
			if (avail >= left)
				break;
			left -= avail;
		}
		i++;
		off = 0;
	}
	n = 0;
	left = len;
	while (left && c->idx < c->cnt) {
		size_t avail = c->iov[c->idx].iov_len - c->off;
		size_t step = avail < left ? avail : (size_t)left;

		if (step) {
			out[n].iov_base = (char *)c->iov[c->idx].iov_base + c->off;
			out[n].iov_len = step;
			n++;
		}
		left -= step;
		c->off += step;
		if (c->off == c->iov[c->idx].iov_len) {
			c->idx++;
			c->off = 0;
		}
	}
	return n;
}

/* Calls fn on each piece of the next len bytes. */
static void iov_cur_each(struct iov_cur *c, uint64_t len,
			 void (*fn)(void *piece, size_t n, void *arg,
				    size_t done),
			 void *arg)
{
	size_t done = 0;

	while (len && c->idx < c->cnt) {
		size_t avail = c->iov[c->idx].iov_len - c->off;
		size_t step = avail < len ? avail : (size_t)len;

		if (step)
			fn((char *)c->iov[c->idx].iov_base + c->off, step, arg,
			   done);
		done += step;
		len -= step;
		c->off += step;
		if (c->off == c->iov[c->idx].iov_len) {
			c->idx++;
			c->off = 0;
		}
	}
}

static void piece_skip(void *p, size_t n, void *arg, size_t done)
{
	(void)p, (void)n, (void)arg, (void)done;
}

static void piece_zero(void *p, size_t n, void *arg, size_t done)
{
	(void)arg, (void)done;
	memset(p, 0, n);
}

static void piece_to_buf(void *p, size_t n, void *arg, size_t done)
{
	memcpy((char *)arg + done, p, n);
}

static void piece_from_buf(void *p, size_t n, void *arg, size_t done)
{
	memcpy(p, (const char *)arg + done, n);
}

void iov_cur_skip(struct iov_cur *c, uint64_t len)
{
	iov_cur_each(c, len, piece_skip, NULL);
}

void iov_cur_zero(struct iov_cur *c, uint64_t len)
{
	iov_cur_each(c, len, piece_zero, NULL);
}

void iov_cur_to_buf(struct iov_cur *c, void *buf, size_t len)
{
	iov_cur_each(c, len, piece_to_buf, buf);
}

void iov_cur_from_buf(struct iov_cur *c, const void *buf, size_t len)
{
	iov_cur_each(c, len, piece_from_buf, (void *)buf);
}

/* ---- synchronous I/O ---- */

/* Drops the first n bytes of a (copied) iovec; returns the new count. */
static int iov_advance(struct iovec **iov, int cnt, size_t n)
{
	while (cnt && n >= (*iov)->iov_len) {
		n -= (*iov)->iov_len;
		(*iov)++;
		cnt--;
	}
	if (cnt && n) {
		(*iov)->iov_base = (char *)(*iov)->iov_base + n;
		(*iov)->iov_len -= n;
	}
	return cnt;
}

static int rw_iov(int fd, const struct iovec *src, int cnt, uint64_t off,
		  bool write)
{
	struct iovec stack[16], *copy = stack, *v;
	int ret = 0;

	if (cnt > IOV_MAX)
		return -EINVAL;
	if (cnt > (int)ARRAY_SIZE(stack)) {
		copy = malloc(sizeof(*copy) * (size_t)cnt);
		if (!copy)
			return -ENOMEM;
	}
	memcpy(copy, src, sizeof(*copy) * (size_t)cnt);
	v = copy;
	while (cnt) {
		ssize_t n = write ? pwritev(fd, v, cnt, (off_t)off) :
				    preadv(fd, v, cnt, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			break;
		}
		if (n == 0) {
			if (write) {
				ret = -EIO;
				break;
			}
			/* End of file: the rest reads as a hole would. */
			for (int i = 0; i < cnt; i++)
				memset(v[i].iov_base, 0, v[i].iov_len);
			break;
		}
		off += (uint64_t)n;
		cnt = iov_advance(&v, cnt, (size_t)n);
	}
	if (copy != stack)
		free(copy);
	return ret;
}

int disk_preadv(int fd, const struct iovec *iov, int cnt, uint64_t off)
{
	return rw_iov(fd, iov, cnt, off, false);
}

int disk_pwritev(int fd, const struct iovec *iov, int cnt, uint64_t off)
{
	return rw_iov(fd, iov, cnt, off, true);
}

int disk_pread(int fd, void *buf, size_t len, uint64_t off)
{
	struct iovec v = { .iov_base = buf, .iov_len = len };

	return rw_iov(fd, &v, 1, off, false);
}

int disk_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
	struct iovec v = { .iov_base = (void *)buf, .iov_len = len };

	return rw_iov(fd, &v, 1, off, true);
}

int disk_pwrite_sync(int fd, const void *buf, size_t len, uint64_t off)
{
	static bool no_rwf_dsync;
	struct iovec v = { .iov_base = (void *)buf, .iov_len = len };
	ssize_t n = 0;
	int ret;

	if (!__atomic_load_n(&no_rwf_dsync, __ATOMIC_RELAXED)) {
		n = pwritev2(fd, &v, 1, (off_t)off, RWF_DSYNC);
		if (n == (ssize_t)len)
			return 0;
		if (n < 0 && (errno == EOPNOTSUPP || errno == EINVAL))
			__atomic_store_n(&no_rwf_dsync, true, __ATOMIC_RELAXED);
		else if (n < 0 && errno != EINTR)
			return -errno;
		if (n < 0)
			n = 0;
	}
	/* Short, interrupted or unsupported: the rest, then fdatasync. */
	ret = disk_pwrite(fd, (const char *)buf + n, len - (size_t)n,
			  off + (uint64_t)n);
	if (ret)
		return ret;
	return fdatasync(fd) ? -errno : 0;
}

int disk_zero_range(int fd, uint64_t off, uint64_t len, bool punch)
{
	static const char zeros[64 * 1024];
	int mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;

	if (!len)
		return 0;
	if (punch && !fallocate(fd, mode, (off_t)off, (off_t)len))
		return 0;
	if (!fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
		       (off_t)off, (off_t)len))
		return 0;
	/* ZERO_RANGE allocates and can fail with ENOSPC where a hole can't. */
	if (!punch && !fallocate(fd, mode, (off_t)off, (off_t)len))
		return 0;
	while (len) {
		size_t n = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);
		int ret = disk_pwrite(fd, zeros, n, off);

		if (ret)
			return ret;
		off += n;
		len -= n;
	}
	return 0;
}

/* ---- requests and completions ---- */

uint64_t disk_req_bytes(const struct disk_req *r)
{
	uint64_t n = 0;

	for (unsigned int i = 0; i < r->iovcnt; i++)
		n += r->iov[i].iov_len;
	return n;
}

void disk_req_get(struct disk_req *r)
{
	__atomic_add_fetch(&rs(r)->pending, 1, __ATOMIC_RELAXED);
}

/* Drops a reference; true when it was the last. */
static bool req_put(struct disk_req *r, int result)
{
	struct req_state *st = rs(r);

	if (result < 0) {
		long zero = 0;

		__atomic_compare_exchange_n(&st->result, &zero, (long)result,
					    false, __ATOMIC_RELAXED,
					    __ATOMIC_RELAXED);
	}
	return __atomic_sub_fetch(&st->pending, 1, __ATOMIC_ACQ_REL) == 0;
}

/*
 * The plug of this thread: parts reserved and waiting for one io_submit,
 * and whether requests finished while plugged (read from the page cache):
 * those wait on the done list without an eventfd signal each, for the
 * unplug to report.
 */
static __thread struct {
	struct disk *d;
	int n;
	bool finished;
	struct disk_part *parts[EVENT_BATCH];
} plug;

static void signal_completion(struct disk *d)
{
	uint64_t one = 1;

	/* Only fails when the counter would overflow: already readable. */
	if (write(d->efd, &one, sizeof(one)) < 0)
		return;
}

void disk_req_put(struct disk *d, struct disk_req *r, int result)
{
	if (!req_put(r, result))
		return;
	rs(r)->next = NULL;
	pthread_mutex_lock(&d->lock);
	if (d->done_tail)
		rs(d->done_tail)->next = r;
	else
		d->done = r;
	d->done_tail = r;
	pthread_mutex_unlock(&d->lock);
	if (plug.d == d)
		plug.finished = true;
	else
		signal_completion(d);
}

void disk_queue_work(struct disk *d, struct disk_req *r)
{
	rs(r)->next = NULL;
	pthread_mutex_lock(&d->lock);
	if (d->work_tail)
		rs(d->work_tail)->next = r;
	else
		d->work = r;
	d->work_tail = r;
	pthread_cond_signal(&d->work_cond);
	pthread_mutex_unlock(&d->lock);
}

static void *worker(void *arg)
{
	struct disk *d = arg;

	pthread_mutex_lock(&d->lock);
	for (;;) {
		struct disk_req *r;

		while (!d->work && !d->stop)
			pthread_cond_wait(&d->work_cond, &d->lock);
		r = d->work;
		if (!r)
			break;
		seccomp_thread_enter(SECCOMP_IO);
		d->work = rs(r)->next;
		if (!d->work)
			d->work_tail = NULL;
		pthread_mutex_unlock(&d->lock);
		d->ops->work(d, r);
		pthread_mutex_lock(&d->lock);
	}
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

struct disk_part *disk_part_new(struct disk_req *r, short opcode,
				uint64_t off, const struct iovec *iov,
				int iovcnt)
{
	struct disk_part *p;

	p = calloc(1, sizeof(*p) + sizeof(struct iovec) * (size_t)iovcnt);
	if (!p)
		return NULL;
	p->req = r;
	p->iovcnt = iovcnt;
	if (iovcnt)
		memcpy(p->iov, iov, sizeof(struct iovec) * (size_t)iovcnt);
	for (int i = 0; i < iovcnt; i++)
		p->len += iov[i].iov_len;
	p->cb.aio_lio_opcode = opcode;
	p->cb.u.c.offset = (long long)off;
	return p;
}

/* What a part that the kernel would not take does instead. */
static void part_sync(struct disk *d, struct disk_part *p, int err)
{
	int ret;

	if (!p->req) {
		/* Merged: each part on its own. */
		for (struct disk_part *c = p->chain, *next; c; c = next) {
			next = c->chain;
			part_sync(d, c, err);
		}
		free(p);
		return;
	}
	switch (p->cb.aio_lio_opcode) {
	case IO_CMD_PREADV:
		ret = disk_preadv(d->fd, p->iov, p->iovcnt,
				  (uint64_t)p->cb.u.c.offset);
		break;
	case IO_CMD_PWRITEV:
		ret = disk_pwritev(d->fd, p->iov, p->iovcnt,
				   (uint64_t)p->cb.u.c.offset);
		break;
	case IO_CMD_FDSYNC:
		if (err == -EINVAL)
			__atomic_store_n(&d->fdsync, false, __ATOMIC_RELAXED);
		ret = fdatasync(d->fd) ? -errno : 0;
		break;
	default:
		ret = err;
	}
	disk_req_put(d, p->req, ret);
	free(p);
}

static void prep_iocb(struct disk *d, struct disk_part *p)
{
	short op = p->cb.aio_lio_opcode;
	long long off = p->cb.u.c.offset;

	if (op == IO_CMD_FDSYNC) {
		io_prep_fdsync(&p->cb, d->fd);
	} else if (op == IO_CMD_PREADV) {
		io_prep_preadv(&p->cb, d->fd, p->iov, p->iovcnt, off);
	} else {
		io_prep_pwritev(&p->cb, d->fd, p->iov, p->iovcnt, off);
	}
	p->cb.data = p;
	io_set_eventfd(&p->cb, d->efd);
}

/* Hands parts with reserved slots to the kernel. */
static void aio_push(struct disk *d, struct disk_part **p, int n)
{
	struct iocb *cbs[EVENT_BATCH];

	while (n > 0) {
		int k = n < EVENT_BATCH ? n : EVENT_BATCH, ret;

		for (int i = 0; i < k; i++)
			cbs[i] = &p[i]->cb;
		ret = io_submit(d->aio, k, cbs);
		if (ret == -EINTR)
			continue;
		if (ret <= 0) {
			/* The first one was refused: do it here and go on. */
			pthread_mutex_lock(&d->lock);
			d->aio_inflight--;
			pthread_mutex_unlock(&d->lock);
			part_sync(d, p[0], ret < 0 ? ret : -EIO);
			ret = 1;
		}
		p += ret;
		n -= ret;
	}
}

/*
 * Requests that follow each other on the disk, held by one plug, go to
 * the kernel as one iocb when they are reads or writes together of at
 * most MERGE_MAX: the buffered read or write path costs about as much
 * per call as for 32 KiB of copying, so 4 KiB requests in a row are
 * written (or read) at a third of that cost each (bench/blk.sh).
 */
#define MERGE_MAX (1u << 20)

static bool mergeable(const struct disk_part *first, uint64_t len, int cnt,
		      const struct disk_part *p)
{
	short op = first->cb.aio_lio_opcode;

	return (op == IO_CMD_PREADV || op == IO_CMD_PWRITEV) &&
	       p->cb.aio_lio_opcode == op &&
	       (uint64_t)first->cb.u.c.offset + len ==
	       (uint64_t)p->cb.u.c.offset &&
	       len + p->len <= MERGE_MAX && cnt + p->iovcnt <= IOV_MAX;
}

/* One iocb for p[0..n), linked through chain; NULL without memory. */
static struct disk_part *merge_run(struct disk *d, struct disk_part **p,
				   int n, int cnt, uint64_t len)
{
	struct disk_part *m = calloc(1, sizeof(*m) +
				     sizeof(struct iovec) * (size_t)cnt);
	int k = 0;

	if (!m)
		return NULL;
	m->iovcnt = cnt;
	m->len = len;
	m->cb.aio_lio_opcode = p[0]->cb.aio_lio_opcode;
	m->cb.u.c.offset = p[0]->cb.u.c.offset;
	m->chain = p[0];
	for (int i = 0; i < n; i++) {
		memcpy(m->iov + k, p[i]->iov,
		       sizeof(struct iovec) * (size_t)p[i]->iovcnt);
		k += p[i]->iovcnt;
		p[i]->chain = i + 1 < n ? p[i + 1] : NULL;
	}
	prep_iocb(d, m);
	return m;
}

/* Merges runs of p[0..n) in place; returns the new count. */
static int merge(struct disk *d, struct disk_part **p, int n)
{
	unsigned int saved = 0;
	int out = 0;

	for (int i = 0; i < n;) {
		uint64_t len = p[i]->len;
		int j = i + 1, cnt = p[i]->iovcnt;
		struct disk_part *m = NULL;

		while (j < n && mergeable(p[i], len, cnt, p[j])) {
			len += p[j]->len;
			cnt += p[j]->iovcnt;
			j++;
		}
		if (j - i > 1)
			m = merge_run(d, p + i, j - i, cnt, len);
		if (!m) {
			p[out++] = p[i++];
			continue;
		}
		p[out++] = m;
		saved += (unsigned int)(j - i - 1);
		i = j;
	}
	if (saved) {
		/* Each part held an iocb slot; the merged ones need one. */
		pthread_mutex_lock(&d->lock);
		d->aio_inflight -= saved;
		pthread_mutex_unlock(&d->lock);
	}
	return out;
}

/* What the plug holds goes to the kernel. */
static void push_plugged(struct disk *d)
{
	aio_push(d, plug.parts, merge(d, plug.parts, plug.n));
	plug.n = 0;
}

bool disk_plugged(const struct disk *d)
{
	return plug.d == d;
}

void disk_plug(struct disk *d)
{
	if (plug.d && plug.d != d)
		disk_unplug(plug.d);
	plug.d = d;
}

static void run_done(struct disk *d, struct disk_req *fin,
		     struct disk_req **tail);

/*
 * Submits what the plug holds. Returns UNPLUG_FINISHED when requests
 * finished under it, UNPLUG_SUBMITTED when iocbs went to the kernel.
 */
#define UNPLUG_FINISHED 1
#define UNPLUG_SUBMITTED 2
static int unplug(struct disk *d)
{
	int ret = plug.n ? UNPLUG_SUBMITTED : 0;

	push_plugged(d);
	if (plug.finished)
		ret |= UNPLUG_FINISHED;
	plug.d = NULL;
	disk_map_forget();
	plug.finished = false;
	return ret;
}

void disk_unplug(struct disk *d)
{
	if (plug.d == d && (unplug(d) & UNPLUG_FINISHED))
		signal_completion(d);
}

void disk_unplug_complete(struct disk *d)
{
	int ret;

	if (plug.d != d)
		return;
	ret = unplug(d);
	/* Buffered I/O (no O_DIRECT) is done by the time io_submit
	 * returns: its events are there to take now, not after a trip
	 * through the eventfd and the I/O thread's poll. */
	if (ret & UNPLUG_SUBMITTED)
		disk_complete(d);
	else if (ret & UNPLUG_FINISHED)
		run_done(d, NULL, NULL);
}

/* Reserved parts go to the kernel now, or wait in this thread's plug. */
static void aio_push_or_hold(struct disk *d, struct disk_part **p, int n)
{
	if (plug.d != d) {
		aio_push(d, p, n);
		return;
	}
	for (int i = 0; i < n; i++) {
		if (plug.n == EVENT_BATCH)
			push_plugged(d);
		plug.parts[plug.n++] = p[i];
	}
}

void disk_part_submit(struct disk *d, struct disk_part **parts, int n)
{
	struct disk_part *now[EVENT_BATCH];
	int i = 0;

	while (i < n) {
		int k = 0;

		pthread_mutex_lock(&d->lock);
		for (; i < n && k < EVENT_BATCH; i++) {
			struct disk_part *p = parts[i];

			disk_req_get(p->req);
			prep_iocb(d, p);
			if (!d->overflow && d->aio_inflight < d->aio_max) {
				d->aio_inflight++;
				now[k++] = p;
				continue;
			}
			/* Full: disk_complete submits it when a slot frees. */
			p->next = NULL;
			if (d->overflow_tail)
				d->overflow_tail->next = p;
			else
				d->overflow = p;
			d->overflow_tail = p;
		}
		pthread_mutex_unlock(&d->lock);
		aio_push_or_hold(d, now, k);
	}
}

bool disk_submit_fdsync(struct disk *d, struct disk_req *r)
{
	struct disk_part *p;

	if (!__atomic_load_n(&d->fdsync, __ATOMIC_RELAXED))
		return false;
	p = disk_part_new(r, IO_CMD_FDSYNC, 0, NULL, 0);
	if (!p)
		return false;
	disk_part_submit(d, &p, 1);
	return true;
}

/* An iocb finished: short reads end in a hole, short writes go on. */
static int part_result(struct disk *d, struct disk_part *p, long res)
{
	struct iov_cur c;

	if (res < 0)
		return (int)res;
	if ((uint64_t)res >= p->len)
		return 0;
	iov_cur_init(&c, p->iov, (unsigned int)p->iovcnt);
	iov_cur_skip(&c, (uint64_t)res);
	if (p->cb.aio_lio_opcode == IO_CMD_PREADV) {
		iov_cur_zero(&c, p->len - (uint64_t)res);
		return 0;
	}
	if (p->cb.aio_lio_opcode == IO_CMD_PWRITEV) {
		struct iovec rest[IOV_MAX];
		int n = iov_cur_take(&c, p->len - (uint64_t)res, rest, IOV_MAX);

		/* Usually ENOSPC: the kernel wrote what fit. */
		return disk_pwritev(d->fd, rest, n,
				    (uint64_t)p->cb.u.c.offset +
				    (uint64_t)res);
	}
	return 0;
}

static void append(struct disk_req ***tail, struct disk_req *r)
{
	rs(r)->next = NULL;
	**tail = r;
	*tail = &rs(r)->next;
}

/* An iocb finished: its part's request, or each of the merged ones. */
static void part_done(struct disk *d, struct disk_part *p, long res,
		      struct disk_req ***tail)
{
	uint64_t at = 0;
	int ret;

	if (p->req) {
		ret = part_result(d, p, res);
		if (req_put(p->req, ret))
			append(tail, p->req);
		free(p);
		return;
	}
	for (struct disk_part *c = p->chain, *next; c; c = next) {
		next = c->chain;
		if (res < 0 && at) {
			/* The first part failed; the others, on their own,
			 * may not. */
			part_sync(d, c, (int)res);
			continue;
		}
		if (res < 0)
			ret = (int)res;
		else
			ret = part_result(d, c, (uint64_t)res <= at ? 0 :
					  (long)MIN((uint64_t)res - at, c->len));
		at += c->len;
		if (req_put(c->req, ret))
			append(tail, c->req);
		free(c);
	}
	free(p);
}

/*
 * Runs done() of the requests in fin (tail: its last next pointer) and
 * then of those on the done list.
 */
static void run_done(struct disk *d, struct disk_req *fin,
		     struct disk_req **tail)
{
	struct disk_req *r;

	if (!fin)
		tail = &fin;
	pthread_mutex_lock(&d->lock);
	if (d->done) {
		*tail = d->done;
		d->done = d->done_tail = NULL;
	}
	pthread_mutex_unlock(&d->lock);
	while ((r = fin)) {
		int result = (int)rs(r)->result;

		fin = rs(r)->next;
		__atomic_sub_fetch(&d->busy, 1, __ATOMIC_RELEASE);
		r->done(r, result);
	}
}

void disk_complete(struct disk *d)
{
	struct disk_req *fin = NULL, **tail = &fin;
	struct io_event ev[EVENT_BATCH];
	struct timespec zero = { 0, 0 };
	uint64_t cnt;

	if (read(d->efd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
		pr_warn("disk '%s': eventfd: %s", d->path, strerror(errno));
	for (;;) {
		struct disk_part *more[EVENT_BATCH];
		int n = io_getevents(d->aio, 0, EVENT_BATCH, ev, &zero), k = 0;

		if (n == -EINTR)
			continue;
		if (n <= 0)
			break;
		for (int i = 0; i < n; i++)
			part_done(d, ev[i].data, (long)ev[i].res, &tail);
		pthread_mutex_lock(&d->lock);
		d->aio_inflight -= (unsigned int)n;
		while (d->overflow && d->aio_inflight < d->aio_max &&
		       k < EVENT_BATCH) {
			more[k++] = d->overflow;
			d->overflow = d->overflow->next;
			d->aio_inflight++;
		}
		if (!d->overflow)
			d->overflow_tail = NULL;
		pthread_mutex_unlock(&d->lock);
		aio_push(d, more, k);
		if (n < EVENT_BATCH && !k)
			break;
	}
	run_done(d, fin, tail);
}

int disk_completion_fd(const struct disk *d)
{
	return d->efd;
}

const struct disk_info *disk_info(const struct disk *d)
{
	return &d->info;
}

int disk_submit(struct disk *d, struct disk_req *r)
{
	uint64_t len = 0;

	switch (r->op) {
	case DISK_READ:
	case DISK_WRITE:
		if (r->iovcnt && !r->iov)
			return -EINVAL;
		for (unsigned int i = 0; i < r->iovcnt; i++) {
			if (__builtin_add_overflow(len, r->iov[i].iov_len,
						   &len))
				return -EINVAL;
		}
		break;
	case DISK_DISCARD:
	case DISK_WRITE_ZEROES:
		len = r->len;
		break;
	case DISK_FLUSH:
		break;
	default:
		return -EINVAL;
	}
	if (d->info.readonly && r->op != DISK_READ && r->op != DISK_FLUSH)
		return -EROFS;
	if (r->op != DISK_FLUSH &&
	    (r->offset > d->info.size || len > d->info.size - r->offset))
		return -EINVAL;
	if (!r->done)
		return -EINVAL;

	memset(r->priv, 0, sizeof(r->priv));
	rs(r)->pending = 1;
	__atomic_add_fetch(&d->busy, 1, __ATOMIC_RELAXED);
	if ((r->op != DISK_FLUSH && !len) ||
	    (r->op == DISK_FLUSH && d->info.readonly))
		disk_req_put(d, r, 0);
	else
		d->ops->submit(d, r);
	return 0;
}

/* ---- open and close ---- */

/* Strips the options that "PATH[,ro][,format=F]" may end with. */
static int parse_spec(const char *spec, char **path, bool *ro,
		      const char **format)
{
	char *p = strdup(spec), *comma;

	if (!p)
		return -ENOMEM;
	*ro = false;
	*format = NULL;
	while ((comma = strrchr(p, ','))) {
		const char *opt = comma + 1;

		if (!strcmp(opt, "ro"))
			*ro = true;
		else if (!strcmp(opt, "rw"))
			*ro = false;
		else if (!strcmp(opt, "format=raw"))
			*format = "raw";
		else if (!strcmp(opt, "format=qcow2"))
			*format = "qcow2";
		else
			break;
		*comma = '\0';
	}
	*path = p;
	return 0;
}

/* A stable serial: FNV-1a of the canonical path, as 20 characters. */
static void make_serial(struct disk *d)
{
	char *real = realpath(d->path, NULL);
	const char *s = real ? real : d->path;
	uint64_t h = 0xcbf29ce484222325ull;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ull;
	}
	snprintf(d->info.serial, sizeof(d->info.serial), "lkvm%016llx",
		 (unsigned long long)h);
	free(real);
}

/*
 * io_destroy waits for an RCU grace period, tens of milliseconds: idle
 * contexts (nothing in flight, every event reaped) serve the next disk
 * of this process instead. A forked child never inherits them.
 */
static pthread_mutex_t ctx_pool_lock = PTHREAD_MUTEX_INITIALIZER;
static io_context_t ctx_pool[4];
static unsigned int ctx_pool_n;
static pid_t ctx_pool_pid;

static int ctx_get(struct disk *d)
{
	int ret;

	pthread_mutex_lock(&ctx_pool_lock);
	if (ctx_pool_pid != getpid())
		ctx_pool_n = 0;
	if (ctx_pool_n) {
		d->aio = ctx_pool[--ctx_pool_n];
		d->aio_max = AIO_SLOTS;
		pthread_mutex_unlock(&ctx_pool_lock);
		return 0;
	}
	pthread_mutex_unlock(&ctx_pool_lock);
	for (d->aio_max = AIO_SLOTS; d->aio_max >= 16; d->aio_max /= 2) {
		ret = io_setup((int)d->aio_max, &d->aio);
		if (ret != -EAGAIN)
			break;
	}
	if (ret)
		d->aio = 0;
	return ret;
}

static void ctx_put(struct disk *d)
{
	pthread_mutex_lock(&ctx_pool_lock);
	if (ctx_pool_pid != getpid()) {
		ctx_pool_n = 0;
		ctx_pool_pid = getpid();
	}
	if (d->aio_max == AIO_SLOTS && ctx_pool_n < ARRAY_SIZE(ctx_pool)) {
		ctx_pool[ctx_pool_n++] = d->aio;
		d->aio = 0;
	}
	pthread_mutex_unlock(&ctx_pool_lock);
	if (d->aio)
		io_destroy(d->aio);
	d->aio = 0;
}

static int start_worker(struct disk *d)
{
	sigset_t all, old;
	int ret;

	/* Signals belong to the main thread. */
	sigfillset(&all);
	sigdelset(&all, SIGSYS);	/* seccomp reports through it */
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = pthread_create(&d->worker, NULL, worker, d);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret)
		return -ret;
	d->worker_running = true;
	return 0;
}

static void free_disk(struct disk *d)
{
	if (d->worker_running) {
		pthread_mutex_lock(&d->lock);
		d->stop = true;
		pthread_cond_broadcast(&d->work_cond);
		pthread_mutex_unlock(&d->lock);
		pthread_join(d->worker, NULL);
	}
	if (d->aio)
		ctx_put(d);
	disk_map_close(d);
	if (d->efd >= 0)
		close(d->efd);
	if (d->fd >= 0)
		close(d->fd);
	pthread_mutex_destroy(&d->lock);
	pthread_cond_destroy(&d->work_cond);
	free(d->path);
	free(d);
}

static int open_file(struct disk *d)
{
	int flags = (d->info.readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	struct stat st;

	d->fd = open(d->path, flags);
	if (d->fd < 0) {
		int err = errno;

		if (!d->info.readonly && (err == EACCES || err == EROFS))
			disk_err(d, "%s (add ,ro to open it read-only)",
				 strerror(err));
		else
			disk_err(d, "%s", strerror(err));
		return -err;
	}
	if (fstat(d->fd, &st)) {
		int err = errno;

		disk_err(d, "%s", strerror(err));
		return -err;
	}
	if (S_ISDIR(st.st_mode)) {
		disk_err(d, "%s", strerror(EISDIR));
		return -EISDIR;
	}
	if (S_ISBLK(st.st_mode)) {
		uint64_t size;

		if (ioctl(d->fd, BLKGETSIZE64, &size)) {
			int err = errno;

			disk_err(d, "BLKGETSIZE64: %s", strerror(err));
			return -err;
		}
		d->blockdev = true;
		d->file_size = size;
	} else if (S_ISREG(st.st_mode)) {
		d->file_size = (uint64_t)st.st_size;
	} else {
		disk_err(d, "not a regular file or a block device");
		return -EINVAL;
	}
	if (!d->file_size) {
		disk_err(d, "the image is empty");
		return -EINVAL;
	}
	/* Two writers of one image corrupt it; readers may share. */
	if (flock(d->fd, (d->info.readonly ? LOCK_SH : LOCK_EX) | LOCK_NB)) {
		int err = errno;

		if (err == EWOULDBLOCK) {
			disk_err(d, "in use by another process (locked)");
			return -EBUSY;
		}
		disk_err(d, "flock: %s", strerror(err));
		return -err;
	}
	return 0;
}

static int detect(struct disk *d, const char *format)
{
	unsigned char magic[4] = { 0 };
	bool qcow2;
	int ret;

	ret = disk_pread(d->fd, magic, sizeof(magic), 0);
	if (ret) {
		disk_err(d, "cannot read: %s", strerror(-ret));
		return ret;
	}
	qcow2 = !memcmp(magic, "QFI\xfb", 4);
	if (format && !strcmp(format, "raw"))
		qcow2 = false;
	if (format && !strcmp(format, "qcow2") && !qcow2) {
		disk_err(d, "not a qcow2 image (no QFI\\xfb magic)");
		return -EINVAL;
	}
	d->ops = qcow2 ? &disk_qcow2_ops : &disk_raw_ops;
	d->info.format = d->ops->format;
	return 0;
}

int disk_open(const char *spec, struct disk **out)
{
	const char *format;
	struct disk *d;
	bool ro;
	int ret;

	*out = NULL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->fd = d->efd = -1;
	d->fdsync = true;
	pthread_mutex_init(&d->lock, NULL);
	pthread_cond_init(&d->work_cond, NULL);
	ret = parse_spec(spec ? spec : "", &d->path, &ro, &format);
	if (ret) {
		free_disk(d);
		return ret;
	}
	d->info.readonly = ro;
	if (!*d->path) {
		pr_err("disk '%s': no file named", spec ? spec : "");
		free_disk(d);
		return -EINVAL;
	}
	ret = open_file(d);
	if (!ret)
		ret = detect(d, format);
	if (!ret)
		ret = d->ops->open(d);
	if (ret) {
		free_disk(d);
		return ret;
	}
	d->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (d->efd < 0) {
		ret = -errno;
		disk_err(d, "eventfd: %s", strerror(-ret));
		goto fail;
	}
	ret = ctx_get(d);
	if (ret) {
		disk_err(d, "io_setup: %s", strerror(-ret));
		goto fail;
	}
	ret = start_worker(d);
	if (ret) {
		disk_err(d, "worker thread: %s", strerror(-ret));
		goto fail;
	}
	disk_map_open(d);
	make_serial(d);
	*out = d;
	return 0;
fail:
	d->ops->close(d);
	free_disk(d);
	return ret;
}

void disk_close(struct disk *d)
{
	if (!d)
		return;
	while (__atomic_load_n(&d->busy, __ATOMIC_ACQUIRE)) {
		struct pollfd pfd = { .fd = d->efd, .events = POLLIN };

		poll(&pfd, 1, 1000);
		disk_complete(d);
	}
	/* Stop the worker before the backend's state goes. */
	if (d->worker_running) {
		pthread_mutex_lock(&d->lock);
		d->stop = true;
		pthread_cond_broadcast(&d->work_cond);
		pthread_mutex_unlock(&d->lock);
		pthread_join(d->worker, NULL);
		d->worker_running = false;
	}
	d->ops->close(d);
	free_disk(d);
}
