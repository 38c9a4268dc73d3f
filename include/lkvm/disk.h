/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Block backends (disk/): raw and qcow2 images behind one asynchronous
 * interface. virtio-blk (and anything else that reads disks) uses only
 * this header; the image format is the backend's business.
 *
 * Requests are submitted from any thread and complete asynchronously
 * (libaio for raw images and qcow2 data clusters). Completions are
 * signalled on disk_completion_fd(); the owner then calls
 * disk_complete(), which runs each finished request's done() callback in
 * the calling thread. A request that fails on the host completes with
 * -errno (-EIO, -ENOSPC...), never aborts lkvm.
 */
#ifndef LKVM_DISK_H
#define LKVM_DISK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

struct disk;

enum disk_op {
	DISK_READ,
	DISK_WRITE,
	DISK_FLUSH,		/* everything written so far is durable */
	DISK_DISCARD,		/* the range may read back as anything */
	DISK_WRITE_ZEROES,	/* the range reads back as zeros */
};

struct disk_req {
	enum disk_op op;
	uint64_t offset;	/* bytes; READ/WRITE/DISCARD/WRITE_ZEROES */
	uint64_t len;		/* DISCARD/WRITE_ZEROES; READ/WRITE use iov */
	struct iovec *iov;	/* READ/WRITE: guest buffers, checked */
	unsigned int iovcnt;
	/* result: 0, or -errno. Runs in the thread calling disk_complete. */
	void (*done)(struct disk_req *r, int result);
	void *opaque;
	/* READ: iov is writable memory the backend may fill with memcpy
	 * (not only through the kernel, which refuses read-only pages). */
	bool ram;
	/* Owned by the backend while the request is in flight. */
	void *priv[4];
};

struct disk_info {
	uint64_t size;		/* bytes, a multiple of 512 */
	bool readonly;
	bool discard;		/* DISCARD is more than a no-op */
	char serial[21];	/* NUL-terminated, at most 20 characters */
	const char *format;	/* "raw", "qcow2" */
};

/*
 * Opens "PATH[,ro]". Detects the format from the contents; refuses a
 * corrupt or unsupported image with one line naming the file and the
 * problem (printed) and a negative errno. ",format=raw" or
 * ",format=qcow2" may follow to skip the detection (a raw disk whose
 * guest wrote a qcow2 header stays raw). Images are locked (flock): a
 * writer excludes every other opener (-EBUSY), readers share.
 *
 * The serial number is "lkvm" and 16 hex digits of a hash of the
 * canonical path: the same file has the same serial every time.
 */
int disk_open(const char *spec, struct disk **out);
/*
 * Waits for requests in flight, running their done() callbacks in the
 * calling thread (the one that calls disk_complete), then frees the disk.
 */
void disk_close(struct disk *d);
const struct disk_info *disk_info(const struct disk *d);

/* -EROFS for writes to a read-only disk, -EINVAL for ranges past the
 * end; such requests are refused without calling done(). Otherwise done()
 * runs exactly once, in disk_complete() (or disk_unplug_complete()),
 * never inside disk_submit(). A
 * FLUSH covers the writes completed before it was submitted. */
int disk_submit(struct disk *d, struct disk_req *r);
/*
 * Between disk_plug() and disk_unplug(), requests that this thread
 * submits to d are held and go to the kernel together, in one io_submit
 * (a device plugs around the requests of one queue notification).
 */
void disk_plug(struct disk *d);
void disk_unplug(struct disk *d);
/*
 * disk_unplug, and then done() right here for the requests that finished
 * while plugged (reads served from the host's page cache, and the
 * buffered I/O that the kernel did within io_submit), instead of after a
 * trip through the eventfd. Their done() may submit more.
 */
void disk_unplug_complete(struct disk *d);
int disk_completion_fd(const struct disk *d);
void disk_complete(struct disk *d);

#endif
