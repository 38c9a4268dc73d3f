// SPDX-License-Identifier: GPL-2.0
/*
 * Split virtqueues, device side: the rings, the descriptor-chain walker,
 * notification suppression and EVENT_IDX. See lkvm/virtio_queue.h for the
 * rules a chain must follow.
 *
 * Ordering with the driver, which runs on other CPUs:
 * - the available index is read with acquire semantics before the ring
 *   entry and the descriptors it publishes;
 * - a used element is written before the used index, which is stored
 *   with release semantics;
 * - deciding whether to interrupt reads the driver's flags or used_event
 *   after the used index is stored, and re-enabling kicks reads the
 *   available index after avail_event (or the used flags) is stored: both
 *   are store-then-load, which needs a full fence even on x86.
 */
#include "lkvm/virtio_queue.h"

#include <errno.h>
#include <string.h>

#include "lkvm/machine.h"

static const char *const errors[VIRTQ_E_NR] = {
	[VIRTQ_OK] = "no error",
	[VIRTQ_E_RING] = "rings outside RAM or misaligned",
	[VIRTQ_E_AVAIL_IDX] = "available index moved past the queue size",
	[VIRTQ_E_HEAD] = "head index out of range",
	[VIRTQ_E_NEXT] = "next index out of range",
	[VIRTQ_E_LOOP] = "descriptor chain longer than its table (a loop)",
	[VIRTQ_E_ADDR] = "buffer outside guest RAM",
	[VIRTQ_E_ZERO_LEN] = "zero-length buffer",
	[VIRTQ_E_TOO_LONG] = "buffer lengths add up to more than 4 GiB",
	[VIRTQ_E_ORDER] = "device-readable buffer after a device-writable one",
	[VIRTQ_E_TOO_MANY] = "too many buffers in one chain",
	[VIRTQ_E_INDIRECT] = "indirect descriptor not allowed here",
	[VIRTQ_E_INDIRECT_LEN] = "bad indirect table length",
	[VIRTQ_E_FRAMING] = "request too short for its header and status",
};

const char *virtq_strerror(int err)
{
	if (err < 0)
		err = -err;
	if (err >= VIRTQ_E_NR)
		return "unknown error";
	return errors[err];
}

/*
 * Copies guest-owned bytes once. The compiler barrier keeps the compiler
 * from reading the guest's copy again later instead of ours, so what was
 * checked is what is used.
 */
static inline void read_once(void *dst, const void *src, size_t n)
{
	memcpy(dst, src, n);
	__asm__ __volatile__("" ::: "memory");
}

static inline uint16_t load16(const uint16_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void store16(uint16_t *p, uint16_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static inline void full_fence(void)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* The ring slot of a free-running index. QEMU accepts queue sizes that
 * are not powers of two (the driver's mistake), and so does lkvm. */
static inline unsigned int slot(const struct virtq *vq, uint16_t idx)
{
	return vq->size & (vq->size - 1) ? idx % vq->size :
					    idx & (vq->size - 1u);
}

static uint16_t *used_event(struct virtq *vq)
{
	return &vq->avail->ring[vq->size];
}

static uint16_t *avail_event(struct virtq *vq)
{
	return (uint16_t *)&vq->used->ring[vq->size];
}

void virtq_legacy_layout(struct virtq *vq, uint64_t base, uint64_t align)
{
	uint64_t avail_end = base + virtq_desc_bytes(vq->size) +
			     virtq_avail_bytes(vq->size);

	vq->desc_gpa = base;
	vq->avail_gpa = base + virtq_desc_bytes(vq->size);
	vq->used_gpa = (avail_end + align - 1) & ~(align - 1);
}

void virtq_reset(struct virtq *vq)
{
	vq->size = 0;
	vq->desc_gpa = vq->avail_gpa = vq->used_gpa = 0;
	vq->event_idx = vq->indirect = false;
	vq->desc = NULL;
	vq->avail = NULL;
	vq->used = NULL;
	vq->enabled = false;
	vq->error = 0;
	vq->last_avail = vq->used_idx = vq->signalled_used = 0;
	vq->signalled_valid = false;
	vq->kicks_off = false;
}

int virtq_enable(struct virtq *vq)
{
	uint64_t ev = vq->event_idx ? 2 : 0;
	unsigned int n = vq->size;

	vq->enabled = true;
	vq->error = 0;
	vq->last_avail = vq->used_idx = vq->signalled_used = 0;
	vq->signalled_valid = false;
	vq->kicks_off = false;
	vq->desc = NULL;
	vq->avail = NULL;
	vq->used = NULL;
	/* The alignments of 2.7: checked, so that every field we touch is
	 * naturally aligned. */
	if (!n || n > VIRTQ_MAX_SIZE || vq->desc_gpa % 16 ||
	    vq->avail_gpa % 2 || vq->used_gpa % 4)
		goto bad;
	vq->desc = guest_ptr(vq->m, vq->desc_gpa, virtq_desc_bytes(n));
	vq->avail = guest_ptr(vq->m, vq->avail_gpa,
			      virtq_avail_bytes(n) - 2 + ev);
	vq->used = guest_ptr(vq->m, vq->used_gpa,
			     virtq_used_bytes(n) - 2 + ev);
	if (vq->desc && vq->avail && vq->used)
		return 0;
bad:
	vq->desc = NULL;
	vq->avail = NULL;
	vq->used = NULL;
	vq->error = VIRTQ_E_RING;
	return -VIRTQ_E_RING;
}

bool virtq_ready(const struct virtq *vq)
{
	return vq->enabled && !vq->error;
}

int virtq_walk(struct virtq *vq, uint16_t head, struct virtq_chain *c)
{
	const struct virtq_desc *table = vq->desc;
	unsigned int entries = vq->size;	/* in the current table */
	unsigned int budget = vq->size;		/* descriptors left */
	unsigned int cap = c->cap < VIRTQ_MAX_SEGS ? c->cap : VIRTQ_MAX_SEGS;
	bool indirect = false, writable = false;
	uint64_t total = 0;
	unsigned int i = head;

	c->head = head;
	c->nout = c->nin = 0;
	c->out_len = c->in_len = 0;
	if (head >= vq->size)
		return -VIRTQ_E_HEAD;
	for (;;) {
		struct virtq_desc d;
		void *p;

		if (budget-- == 0)
			return -VIRTQ_E_LOOP;
		read_once(&d, &table[i], sizeof(d));
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			/* One table per chain, at its end (2.7.5.3). */
			if (!vq->indirect || indirect ||
			    (d.flags & VIRTQ_DESC_F_NEXT))
				return -VIRTQ_E_INDIRECT;
			if (!d.len || d.len % sizeof(d) ||
			    d.len / sizeof(d) > VIRTQ_MAX_SEGS)
				return -VIRTQ_E_INDIRECT_LEN;
			table = guest_ptr(vq->m, d.addr, d.len);
			if (!table)
				return -VIRTQ_E_ADDR;
			entries = budget = d.len / sizeof(d);
			indirect = true;
			i = 0;
			continue;
		}
		if (!d.len)
			return -VIRTQ_E_ZERO_LEN;	/* as QEMU */
		p = guest_ptr(vq->m, d.addr, d.len);
		if (!p)
			return -VIRTQ_E_ADDR;
		if (d.flags & VIRTQ_DESC_F_WRITE)
			writable = true;
		else if (writable)
			return -VIRTQ_E_ORDER;
		total += d.len;
		if (total > UINT32_MAX)
			return -VIRTQ_E_TOO_LONG;
		if (c->nout + c->nin >= cap)
			return -VIRTQ_E_TOO_MANY;
		c->iov[c->nout + c->nin] =
			(struct iovec){ .iov_base = p, .iov_len = d.len };
		if (writable) {
			c->nin++;
			c->in_len += d.len;
		} else {
			c->nout++;
			c->out_len += d.len;
		}
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		if (d.next >= entries)
			return -VIRTQ_E_NEXT;
		i = d.next;
	}
}

static int stop(struct virtq *vq, int err)
{
	vq->error = -err;
	return err;
}

bool virtq_has_avail(struct virtq *vq)
{
	if (!virtq_ready(vq))
		return false;
	return load16(&vq->avail->idx) != vq->last_avail;
}

int virtq_pop(struct virtq *vq, struct virtq_chain *c)
{
	uint16_t idx, head;
	int err;

	if (!vq->enabled)
		return 0;
	if (vq->error)
		return -vq->error;
	idx = load16(&vq->avail->idx);
	if (idx == vq->last_avail)
		return 0;
	if ((uint16_t)(idx - vq->last_avail) > vq->size)
		return stop(vq, -VIRTQ_E_AVAIL_IDX);
	read_once(&head, &vq->avail->ring[slot(vq, vq->last_avail)],
		  sizeof(head));
	err = virtq_walk(vq, head, c);
	if (err)
		return stop(vq, err);
	vq->last_avail++;
	return 1;
}

void virtq_push(struct virtq *vq, uint16_t head, uint32_t len)
{
	struct virtq_used_elem e = { head, len };

	if (!virtq_ready(vq))
		return;
	memcpy(&vq->used->ring[slot(vq, vq->used_idx)], &e, sizeof(e));
	vq->used_idx++;
	store16(&vq->used->idx, vq->used_idx);
}

bool virtq_need_interrupt(struct virtq *vq)
{
	uint16_t old = vq->signalled_used, now = vq->used_idx, event;
	bool valid = vq->signalled_valid;

	if (!virtq_ready(vq))
		return false;
	full_fence();
	if (!vq->event_idx) {
		/* Nothing used since the last interrupt: a wake-up to an
		 * unchanged ring costs the driver for nothing. */
		if ((valid && old == now) ||
		    (load16(&vq->avail->flags) & VIRTQ_AVAIL_F_NO_INTERRUPT))
			return false;
		vq->signalled_used = now;
		vq->signalled_valid = true;
		return true;
	}
	vq->signalled_used = now;
	vq->signalled_valid = true;
	if (!valid)
		return true;
	event = load16(used_event(vq));
	/* 2.7.10: interrupt when used_event lies in (old, now]. */
	return (uint16_t)(now - event - 1) < (uint16_t)(now - old);
}

void virtq_kicks_off(struct virtq *vq)
{
	if (!virtq_ready(vq) || vq->kicks_off)
		return;
	vq->kicks_off = true;
	/* With EVENT_IDX, leaving avail_event behind is what asks the
	 * driver not to notify; the flag is only for the other case. */
	if (!vq->event_idx)
		store16(&vq->used->flags, VIRTQ_USED_F_NO_NOTIFY);
}

bool virtq_kicks_on(struct virtq *vq)
{
	if (!virtq_ready(vq))
		return false;
	vq->kicks_off = false;
	if (vq->event_idx)
		store16(avail_event(vq), vq->last_avail);
	else
		store16(&vq->used->flags, 0);
	full_fence();
	return load16(&vq->avail->idx) != vq->last_avail;
}

size_t iov_to_buf(const struct iovec *iov, unsigned int n, size_t skip,
		  void *buf, size_t len)
{
	size_t done = 0;

	for (unsigned int i = 0; i < n && done < len; i++) {
		size_t l = iov[i].iov_len;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		l -= skip;
		if (l > len - done)
			l = len - done;
		memcpy((char *)buf + done, (char *)iov[i].iov_base + skip, l);
		done += l;
		skip = 0;
	}
	return done;
}

size_t iov_from_buf(const struct iovec *iov, unsigned int n, size_t skip,
		    const void *buf, size_t len)
{
	size_t done = 0;

	for (unsigned int i = 0; i < n && done < len; i++) {
		size_t l = iov[i].iov_len;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		l -= skip;
		if (l > len - done)
			l = len - done;
		memcpy((char *)iov[i].iov_base + skip, (const char *)buf + done,
		       l);
		done += l;
		skip = 0;
	}
	return done;
}

unsigned int iov_slice(const struct iovec *iov, unsigned int n, size_t skip,
		       size_t len, struct iovec *out, unsigned int max)
{
	unsigned int k = 0;

	for (unsigned int i = 0; i < n && len && k < max; i++) {
		size_t l = iov[i].iov_len;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		l -= skip;
		if (l > len)
			l = len;
		out[k++] = (struct iovec){
			.iov_base = (char *)iov[i].iov_base + skip,
			.iov_len = l,
		};
		len -= l;
		skip = 0;
	}
	return k;
}
