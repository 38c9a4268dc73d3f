/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Split virtqueues (virtio 1.2, section 2.7) as the device side sees them,
 * and the one descriptor-chain walker that every virtio device uses.
 *
 * Everything in a ring comes from the guest and may change while lkvm
 * reads it, so the walker copies each descriptor once before checking it,
 * reaches every buffer through guest_ptr(), and refuses a chain that is
 * malformed: a head or next index out of range, more descriptors than the
 * table holds (a loop), a buffer outside RAM or of length 0, lengths whose
 * sum does not fit the 32-bit used length, a device-readable buffer after
 * a device-writable one, an indirect table that is empty, not a multiple
 * of 16 bytes, outside RAM, nested, chained on, or used without
 * VIRTIO_F_INDIRECT_DESC. A refused chain is never handed to a device;
 * the queue stops and the device reports the error to the driver (see
 * virtio_dev_error() in lkvm/virtio.h).
 *
 * Split rings are little-endian; the legacy interface uses the guest's
 * endianness, which on x86 is the same.
 */
#ifndef LKVM_VIRTIO_QUEUE_H
#define LKVM_VIRTIO_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct machine;

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY 1

/* The largest queue the specification allows. */
#define VIRTQ_MAX_SIZE 32768
/*
 * The most buffers one chain may have, counting those of its indirect
 * table: Linux's IOV_MAX, what one preadv() takes, and QEMU's limit.
 */
#define VIRTQ_MAX_SEGS 1024

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct virtq_avail {
	uint16_t flags;
	uint16_t idx;
	uint16_t ring[];	/* [size], then used_event with EVENT_IDX */
};

struct virtq_used_elem {
	uint32_t id;
	uint32_t len;
};

struct virtq_used {
	uint16_t flags;
	uint16_t idx;
	struct virtq_used_elem ring[];	/* [size], then avail_event */
};

/* Why a chain or a ring was refused (negated in return values). */
enum virtq_error {
	VIRTQ_OK,
	VIRTQ_E_RING,		/* rings outside RAM or misaligned */
	VIRTQ_E_AVAIL_IDX,	/* more new entries than the queue holds */
	VIRTQ_E_HEAD,		/* head index >= queue size */
	VIRTQ_E_NEXT,		/* next index outside the table */
	VIRTQ_E_LOOP,		/* more descriptors than the table holds */
	VIRTQ_E_ADDR,		/* a buffer outside RAM */
	VIRTQ_E_ZERO_LEN,	/* a buffer of length 0 */
	VIRTQ_E_TOO_LONG,	/* lengths add up to more than 2^32 - 1 */
	VIRTQ_E_ORDER,		/* readable after writable */
	VIRTQ_E_TOO_MANY,	/* more than the caller's (or 1024) buffers */
	VIRTQ_E_INDIRECT,	/* without the feature, nested, +NEXT */
	VIRTQ_E_INDIRECT_LEN,	/* indirect table length 0 or not 16 * n */
	VIRTQ_E_FRAMING,	/* too short for the device's header/status */
	VIRTQ_E_NR
};

const char *virtq_strerror(int err);

/*
 * One queue. The transport fills size and the three addresses while the
 * queue is disabled, then calls virtq_enable(); only the I/O thread that
 * serves the queue touches the ring state afterwards.
 */
struct virtq {
	struct machine *m;
	unsigned int index;

	/* Written by the transport while disabled. */
	uint16_t size;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	bool event_idx;		/* VIRTIO_F_EVENT_IDX negotiated */
	bool indirect;		/* VIRTIO_F_INDIRECT_DESC negotiated */

	/* Host views of the rings, set by virtq_enable(). */
	struct virtq_desc *desc;
	struct virtq_avail *avail;
	struct virtq_used *used;
	bool enabled;		/* by the driver (rings may be bad) */
	int error;		/* a virtq_error that stopped the queue */

	/* Device-side indices. */
	uint16_t last_avail;	/* next available entry to take */
	uint16_t used_idx;	/* next used entry to write */
	uint16_t signalled_used; /* used_idx at the last interrupt */
	bool signalled_valid;
	bool kicks_off;		/* we asked the driver not to notify */
};

/*
 * A chain taken from the available ring: iov[0, nout) are the device-
 * readable buffers in order, iov[nout, nout + nin) the device-writable
 * ones. Every iov points into guest RAM and was checked.
 */
struct virtq_chain {
	uint16_t head;
	unsigned int nout, nin;
	uint32_t out_len, in_len;	/* bytes; their sum fits 32 bits */
	unsigned int cap;		/* entries of iov */
	struct iovec *iov;
};

/* Bytes a split ring part takes (with the event field). */
static inline uint64_t virtq_desc_bytes(unsigned int size)
{
	return 16ull * size;
}

static inline uint64_t virtq_avail_bytes(unsigned int size)
{
	return 6ull + 2ull * size;
}

static inline uint64_t virtq_used_bytes(unsigned int size)
{
	return 6ull + 8ull * size;
}

/* The legacy layout (one block at pfn * page): desc, avail, used. */
void virtq_legacy_layout(struct virtq *vq, uint64_t base, uint64_t align);

/*
 * Resolves the rings through guest_ptr() and resets the indices. Returns
 * 0, or -VIRTQ_E_RING when a part is outside RAM or misaligned; the queue
 * is then enabled but stopped with that error.
 */
int virtq_enable(struct virtq *vq);
/* Forgets the rings and the error: the queue as after reset. */
void virtq_reset(struct virtq *vq);

/* Serving the queue (I/O thread). */
bool virtq_ready(const struct virtq *vq);	/* enabled, no error */

/*
 * Takes the next available chain. Returns 1 with *c filled, 0 when the
 * ring is empty, or -virtq_error when the ring or the chain is malformed
 * (the queue then stops: vq->error is set and later calls return it).
 * c->iov and c->cap are the caller's.
 */
int virtq_pop(struct virtq *vq, struct virtq_chain *c);

/*
 * Walks the chain that starts at head (no ring access): what virtq_pop()
 * does after reading the available ring. Returns 0 or -virtq_error.
 */
int virtq_walk(struct virtq *vq, uint16_t head, struct virtq_chain *c);

/* Returns a chain to the driver with len bytes written into it. */
void virtq_push(struct virtq *vq, uint16_t head, uint32_t len);

/*
 * After pushes: does the driver want a used-buffer notification
 * (VIRTQ_AVAIL_F_NO_INTERRUPT, or used_event with EVENT_IDX)? Records
 * the answer for the next call.
 */
bool virtq_need_interrupt(struct virtq *vq);

/*
 * Driver-to-device notifications: off while the device drains the ring,
 * on again when it is empty. Turning them on returns true when buffers
 * arrived meanwhile (the caller drains again, so no kick is lost).
 */
void virtq_kicks_off(struct virtq *vq);
bool virtq_kicks_on(struct virtq *vq);

/* Are there chains the device has not taken? */
bool virtq_has_avail(struct virtq *vq);

/* Copies between a chain's buffers and flat memory. */
size_t iov_to_buf(const struct iovec *iov, unsigned int n, size_t skip,
		  void *buf, size_t len);
size_t iov_from_buf(const struct iovec *iov, unsigned int n, size_t skip,
		    const void *buf, size_t len);
/*
 * Fills out[] with the bytes [skip, skip + len) of iov[0, n): returns the
 * number of entries written (at most max), 0 when len is 0.
 */
unsigned int iov_slice(const struct iovec *iov, unsigned int n, size_t skip,
		       size_t len, struct iovec *out, unsigned int max);

#endif
