/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the block backends share (disk/): the open image, the libaio
 * context and its completion eventfd, one worker thread for operations
 * that block (fallocate, fdatasync without IOCB_CMD_FDSYNC, qcow2
 * metadata), and the per-request bookkeeping kept in disk_req.priv.
 *
 * A request is split into parts: each part is one iocb. The request
 * carries a count of unfinished parts plus one bias held by whoever is
 * still splitting it, so a part that completes early never finishes the
 * request before all its parts exist.
 */
#ifndef LKVM_DISK_INT_H
#define LKVM_DISK_INT_H

#include <libaio.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "lkvm/disk.h"

struct disk;

struct disk_ops {
	const char *format;
	/* After the common open: validate, fill d->info.size, set up. */
	int (*open)(struct disk *d);
	/*
	 * In the submitting thread. Either starts the request (parts,
	 * immediate completion, or disk_queue_work) and drops the bias with
	 * disk_req_put, every path ending there.
	 */
	void (*submit)(struct disk *d, struct disk_req *r);
	/* In the worker thread, for requests passed to disk_queue_work. */
	void (*work)(struct disk *d, struct disk_req *r);
	/* After every request finished and the worker stopped. */
	void (*close)(struct disk *d);
};

extern const struct disk_ops disk_raw_ops;
extern const struct disk_ops disk_qcow2_ops;

struct disk_part {
	struct iocb cb;
	struct disk_req *req;		/* NULL: parts merged into one iocb */
	struct disk_part *next;		/* waiting for a free iocb slot */
	struct disk_part *chain;	/* the merged parts, in file order */
	uint64_t len;			/* bytes the iocb moves */
	int iovcnt;
	struct iovec iov[];
};

struct disk {
	const struct disk_ops *ops;
	char *path;			/* as given, for messages */
	int fd;
	bool blockdev;
	uint64_t file_size;		/* at open */
	struct disk_info info;
	void *priv;			/* the backend's state */

	io_context_t aio;
	int efd;			/* completions: aio and worker */
	unsigned int aio_max;		/* iocbs the context holds */

	pthread_mutex_t lock;		/* everything below */
	unsigned int aio_inflight;
	struct disk_part *overflow, *overflow_tail;
	struct disk_req *done, *done_tail;
	struct disk_req *work, *work_tail;
	pthread_cond_t work_cond;
	bool stop;
	bool worker_running;
	pthread_t worker;
	bool fdsync;			/* IOCB_CMD_FDSYNC accepted so far */

	unsigned long busy;		/* accepted, done() not yet run; atomic */

	/* disk/map.c: the image mapped read-only, or NULL. */
	char *map;
	uint64_t map_len;
	uint64_t map_copied;		/* since page tables were last dropped */
};

/* Reports a problem with the image: "lkvm: disk 'PATH': ..." */
void disk_err(const struct disk *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * Reads from the page cache through a mapping of the image (disk/map.c).
 * disk_map_read copies [off, off + the iovec's length) into iov when
 * every page of it is cached and readable, and returns false, having
 * done nothing that counts, otherwise: the caller then reads through
 * libaio. iov must be writable memory.
 */
void disk_map_open(struct disk *d);
void disk_map_close(struct disk *d);
/* The plug ends: what was found cached under it may not stay so. */
void disk_map_forget(void);
/* Does this thread hold d's plug? */
bool disk_plugged(const struct disk *d);
bool disk_map_read(struct disk *d, const struct iovec *iov,
		   unsigned int cnt, uint64_t off);

/* Request bookkeeping. */
uint64_t disk_req_bytes(const struct disk_req *r);
void disk_req_get(struct disk_req *r);
/* Records result (the first error wins) and drops one reference. */
void disk_req_put(struct disk *d, struct disk_req *r, int result);
/* Runs r through d->ops->work in the worker thread. Keeps the bias. */
void disk_queue_work(struct disk *d, struct disk_req *r);

/*
 * Parts. disk_part_new copies the iovec; submitting takes a reference on
 * the request that the part's completion drops.
 */
struct disk_part *disk_part_new(struct disk_req *r, short opcode,
				uint64_t off, const struct iovec *iov,
				int iovcnt);
void disk_part_submit(struct disk *d, struct disk_part **p, int n);
/* A flush through IOCB_CMD_FDSYNC, or false when the kernel refuses it. */
bool disk_submit_fdsync(struct disk *d, struct disk_req *r);

/* A walk over an iovec, for splitting requests into parts. */
struct iov_cur {
	const struct iovec *iov;
	unsigned int cnt;
	unsigned int idx;
	size_t off;			/* into iov[idx] */
};

void iov_cur_init(struct iov_cur *c, const struct iovec *iov,
		  unsigned int cnt);
/* Appends the next len bytes as up to max entries; -1 when more needed. */
int iov_cur_take(struct iov_cur *c, uint64_t len, struct iovec *out,
		 int max);
void iov_cur_skip(struct iov_cur *c, uint64_t len);
void iov_cur_zero(struct iov_cur *c, uint64_t len);
void iov_cur_to_buf(struct iov_cur *c, void *buf, size_t len);
void iov_cur_from_buf(struct iov_cur *c, const void *buf, size_t len);

/*
 * Synchronous I/O for the worker: whole lengths or -errno. Reads past the
 * end of the file give zeros, as a hole would.
 */
int disk_pread(int fd, void *buf, size_t len, uint64_t off);
int disk_preadv(int fd, const struct iovec *iov, int cnt, uint64_t off);
int disk_pwrite(int fd, const void *buf, size_t len, uint64_t off);
int disk_pwritev(int fd, const struct iovec *iov, int cnt, uint64_t off);
/*
 * A write that is durable when it returns (RWF_DSYNC): only its own
 * range goes to the disk, not every dirty page of the file as with
 * fdatasync. Falls back to pwrite and fdatasync.
 */
int disk_pwrite_sync(int fd, const void *buf, size_t len, uint64_t off);
/*
 * Makes [off, off + len) read as zeros: fallocate(ZERO_RANGE), then
 * PUNCH_HOLE, then writing zeros. punch allows freeing the space.
 */
int disk_zero_range(int fd, uint64_t off, uint64_t len, bool punch);

#endif
