/* The blkbench check (not in `all`): sequential I/O on the first
 * virtio-blk disk for bench/blk.sh.
 *
 *     tests=blkbench blkbench_op=read|write blkbench_bs=BYTES
 *         blkbench_mib=N blkbench_depth=D [blkbench_wait=irq|poll]
 *
 * moves N MiB from (read) or to (write) the disk, from sector 0 up
 * (wrapping at the end of the disk), in requests of BYTES with D in
 * flight. blkbench_mib=0 sets everything up (device, queue, MSI-X,
 * buffers) and moves nothing: the baseline a benchmark subtracts. A write
 * overwrites the disk.
 *
 * The host charges every emulated CPL-0 instruction of the guest to the
 * VMM process (about 2 us each on the build machines), and a benchmark of
 * the VMM's CPU time per request must not measure this driver instead. So
 * the request path runs in ring 3 (natively): each slot's descriptor chain
 * (header, data, status) is built once, and a ring-3 step reaps the used
 * ring, checks every completion, refills the available ring and decides
 * whether the device wants a notification (VRING_USED_F_NO_NOTIFY). CPL 0
 * only enters ring 3, notifies, and waits: with `sti; hlt` for the queue's
 * MSI-X interrupt on the modern virtio-pci interface (suppressed with
 * VRING_AVAIL_F_NO_INTERRUPT except just before the halt), so the vCPU
 * does not spin on the host's CPU; elsewhere (or with
 * blkbench_wait=poll) ring 3 spins on the used ring. Data is never touched at CPL 0; the buffers are filled once
 * in ring 3 (so a write writes something other than zero pages, and the
 * pages exist before the device fills them), in the baseline too.
 *
 * Passes when every request completed with VIRTIO_BLK_S_OK; the message
 * gives bytes, requests and the guest's time (PIT ticks, 10 ms).
 */
#include "virtio.h"
#include "blk.h"
#include "pci.h"

#define MAX_DEPTH 256
#define DEF_BS 4096
#define DEF_MIB 1
#define DEF_DEPTH 32
#define MAX_BS (64u << 20)
#define VRING_USED_F_NO_NOTIFY 1

#define STEP_KICK 1
#define STEP_DONE 2
#define STEP_ERR 4

/* Shared by CPL 0 and ring 3; in palloc'd memory (user accessible, and
 * not in .bss, which is cleared at CPL 0 at every boot). */
struct bench {
	volatile struct vring_desc *desc;
	volatile struct vring_avail *avail;
	volatile struct vring_used *used;
	uint16_t qsize, avail_idx, last_used;
	bool irq;
	uint32_t type, bs, seg, segs, per, depth;
	uint64_t hdr, buf; /* slot s: header at hdr + 32 s (status at +16),
			    * data at buf + bs s */
	uint64_t disk_bytes, pos;
	uint64_t nreq, issued, done;
	uint32_t inflight, wlen;
	unsigned timeout;
	uint16_t nfree;
	uint16_t free_slot[MAX_DEPTH];
	uint8_t busy[MAX_DEPTH];
	uint64_t steps, empty_irqs;
	char err[160];
};

/* ---- ring 3 ------------------------------------------------------------- */

static uint64_t u_prepare(void *arg)
{
	struct bench *b = arg;
	for (uint32_t s = 0; s < b->depth; s++) {
		uint32_t h = s * b->per;
		uint64_t hdr = b->hdr + 32ull * s, buf = b->buf + (uint64_t)b->bs * s;
		volatile struct blk_hdr *bh = (volatile struct blk_hdr *)(uintptr_t)hdr;
		bh->type = b->type;
		bh->reserved = 0;
		bh->sector = 0;
		b->desc[h].addr = hdr;
		b->desc[h].len = 16;
		b->desc[h].flags = VRING_DESC_F_NEXT;
		b->desc[h].next = (uint16_t)(h + 1);
		uint16_t wflag = b->type == BLK_T_IN ? VRING_DESC_F_WRITE : 0;
		for (uint32_t k = 0; k < b->segs; k++) {
			uint32_t off = k * b->seg, l = b->bs - off;
			if (l > b->seg)
				l = b->seg;
			volatile struct vring_desc *dd = &b->desc[h + 1 + k];
			dd->addr = buf + off;
			dd->len = l;
			dd->flags = (uint16_t)(wflag | VRING_DESC_F_NEXT);
			dd->next = (uint16_t)(h + 2 + k);
		}
		volatile struct vring_desc *st = &b->desc[h + b->per - 1];
		st->addr = hdr + 16;
		st->len = 1;
		st->flags = VRING_DESC_F_WRITE;
		st->next = 0;
		b->free_slot[s] = (uint16_t)(b->depth - 1 - s);
		b->busy[s] = 0;
	}
	b->nfree = (uint16_t)b->depth;
	/* Touch every buffer page, with something that is not zeros. */
	uint64_t *p = (uint64_t *)(uintptr_t)b->buf;
	uint64_t words = (uint64_t)b->bs * b->depth / 8;
	for (uint64_t i = 0; i < words; i++)
		p[i] = (i + 1) * 0x9e3779b97f4a7c15ull;
	return 0;
}

/* Takes every completion off the used ring; false (b->err) when the
 * device breaks the ring protocol or a request fails. */
static bool reap(struct bench *b)
{
	uint16_t ui = b->used->idx;
	if (ui == b->last_used)
		return true;
	barrier();
	if ((uint16_t)(ui - b->last_used) > b->inflight) {
		ksnprintf(b->err, sizeof(b->err), "used idx %u runs ahead: %u in flight "
			  "after %u", ui, b->inflight, b->last_used);
		return false;
	}
	while (b->last_used != ui) {
		volatile struct vring_used_elem *e =
			&b->used->ring[b->last_used % b->qsize];
		uint32_t id = e->id, len = e->len;
		uint32_t slot = id / b->per;
		if (id % b->per || slot >= b->depth || !b->busy[slot]) {
			ksnprintf(b->err, sizeof(b->err), "used id %u is not a request in "
				  "flight", id);
			return false;
		}
		uint8_t st = *(volatile uint8_t *)(uintptr_t)(b->hdr + 32ull * slot + 16);
		if (st != BLK_S_OK) {
			volatile struct blk_hdr *bh =
				(volatile struct blk_hdr *)(uintptr_t)(b->hdr + 32ull * slot);
			ksnprintf(b->err, sizeof(b->err), "%s of %u bytes at sector %lu: "
				  "status %u", b->type == BLK_T_IN ? "read" : "write",
				  b->bs, (uint64_t)bh->sector, st);
			return false;
		}
		if (len > b->wlen) {
			ksnprintf(b->err, sizeof(b->err), "used len %u for a request with "
				  "%u writable bytes", len, b->wlen);
			return false;
		}
		b->busy[slot] = 0;
		b->free_slot[b->nfree++] = (uint16_t)slot;
		b->inflight--;
		b->done++;
		b->last_used++;
	}
	return true;
}

/* Fills the free slots with the next requests; how many were added. */
static uint32_t refill(struct bench *b)
{
	uint32_t added = 0;
	while (b->nfree && b->issued < b->nreq) {
		uint16_t slot = b->free_slot[--b->nfree];
		uint64_t hdr = b->hdr + 32ull * slot;
		if (b->pos + b->bs > b->disk_bytes)
			b->pos = 0;
		((volatile struct blk_hdr *)(uintptr_t)hdr)->sector = b->pos / 512;
		*(volatile uint8_t *)(uintptr_t)(hdr + 16) = 0xff;
		b->pos += b->bs;
		b->busy[slot] = 1;
		b->avail->ring[b->avail_idx % b->qsize] = (uint16_t)(slot * b->per);
		b->avail_idx++;
		b->inflight++;
		b->issued++;
		added++;
	}
	if (added) {
		barrier();
		b->avail->idx = b->avail_idx;
	}
	return added;
}

/* One round: reap and refill; in poll mode, wait here for the next
 * completion first when there is nothing to do. */
static uint64_t u_step(void *arg)
{
	struct bench *b = arg;
	uint64_t kick = 0;
	b->steps++;
	for (;;) {
		if (!reap(b))
			return STEP_ERR;
		if (refill(b)) {
			mb();
			if (!(b->used->flags & VRING_USED_F_NO_NOTIFY))
				kick = STEP_KICK;
		}
		if (b->done == b->nreq)
			return kick | STEP_DONE;
		if (b->irq || kick)
			return kick; /* CPL 0 notifies (and waits); in poll mode,
				      * the next step waits */
		uint64_t t0 = ticks;
		while (b->used->idx == b->last_used) {
			if (ticks - t0 > b->timeout) {
				ksnprintf(b->err, sizeof(b->err), "no completion in %u ms",
					  b->timeout * 1000 / PIT_HZ);
				return STEP_ERR;
			}
			cpu_relax();
		}
	}
}

/* ---- CPL 0 ---------------------------------------------------------------- */

struct params {
	uint32_t type;
	uint64_t bs, mib, depth;
	bool poll;
	char bad[64];
};

static void params_read(struct params *p)
{
	p->type = BLK_T_IN;
	p->bs = DEF_BS;
	p->mib = DEF_MIB;
	p->depth = DEF_DEPTH;
	p->poll = false;
	p->bad[0] = 0;
	const char *s = M.cmdline;
	while (*s) {
		while (*s == ' ')
			s++;
		const char *w = s;
		while (*s && *s != ' ')
			s++;
		size_t wl = (size_t)(s - w);
		if (wl < 9 || strncmp(w, "blkbench_", 9))
			continue;
		const char *k = w + 9, *eq = k;
		while (eq < s && *eq != '=')
			eq++;
		size_t kl = (size_t)(eq - k);
		const char *v = eq < s ? eq + 1 : s;
		size_t vl = (size_t)(s - v);
		bool ok = eq < s;
		if (kl == 2 && !strncmp(k, "op", 2)) {
			if (vl == 4 && !strncmp(v, "read", 4))
				p->type = BLK_T_IN;
			else if (vl == 5 && !strncmp(v, "write", 5))
				p->type = BLK_T_OUT;
			else
				ok = false;
		} else if (kl == 2 && !strncmp(k, "bs", 2)) {
			ok = ok && parse_u64(v, vl, &p->bs);
		} else if (kl == 3 && !strncmp(k, "mib", 3)) {
			ok = ok && parse_u64(v, vl, &p->mib);
		} else if (kl == 5 && !strncmp(k, "depth", 5)) {
			ok = ok && parse_u64(v, vl, &p->depth);
		} else if (kl == 4 && !strncmp(k, "wait", 4)) {
			if (vl == 4 && !strncmp(v, "poll", 4))
				p->poll = true;
			else if (vl == 3 && !strncmp(v, "irq", 3))
				p->poll = false;
			else
				ok = false;
		} else {
			ok = false;
		}
		if (!ok && !p->bad[0])
			ksnprintf(p->bad, sizeof(p->bad), "%.*s", (int)(wl > 60 ? 60 : wl), w);
	}
}

/* Waits (sti; hlt) for the used ring to move; false after `timeout`
 * ticks without. Interrupts are asked for (avail flags 0) only just
 * before the halt and suppressed again as soon as the driver is awake:
 * every interrupt costs this guest's emulated CPL-0 handler, and the
 * benchmark must not charge the VMM for interrupts the driver did not
 * need. */
static bool wait_used(struct bench *b)
{
	uint64_t t0 = ticks;
	bool ok = true;
	for (;;) {
		__asm__ volatile("cli" ::: "memory");
		if (b->used->idx != b->last_used)
			break;
		b->avail->flags = 0;
		mb();
		if (b->used->idx != b->last_used)
			break;
		if (ticks - t0 > b->timeout) {
			ok = false;
			break;
		}
		uint64_t irqs = msi_irqs;
		__asm__ volatile("sti; hlt" ::: "memory");
		/* Woken by the queue's interrupt with nothing new to reap? */
		if (msi_irqs != irqs && b->used->idx == b->last_used)
			b->empty_irqs++;
	}
	b->avail->flags = VRING_AVAIL_F_NO_INTERRUPT;
	__asm__ volatile("sti" ::: "memory");
	return ok;
}

static int bench_run(struct vdev *d, const struct params *p, char *msg, size_t n)
{
	char err[96];
	const char *op = p->type == BLK_T_IN ? "read" : "write";
	if (!p->bs || p->bs % 512 || p->bs > MAX_BS) {
		ksnprintf(msg, n, "blkbench_bs=%lu: a multiple of 512 up to %u", p->bs,
			  MAX_BS);
		return FAIL;
	}
	if (p->mib > (1ull << 30) || (p->mib << 20) % p->bs) {
		ksnprintf(msg, n, "blkbench_bs=%lu does not divide blkbench_mib=%lu MiB",
			  p->bs, p->mib);
		return FAIL;
	}
	if (!p->depth || p->depth > MAX_DEPTH) {
		ksnprintf(msg, n, "blkbench_depth=%lu: 1 to %u", p->depth, MAX_DEPTH);
		return FAIL;
	}

	/* FLUSH, as real drivers: without it QEMU makes its cache write
	 * through (a flush after every write), which Linux's driver also
	 * assumes of a device without FLUSH. */
	uint64_t want = BLK_F_SIZE_MAX | BLK_F_SEG_MAX | BLK_F_RO | BLK_F_BLK_SIZE |
			BLK_F_FLUSH;
	if (!vd_begin(d, want, err, sizeof(err))) {
		ksnprintf(msg, n, "%s", err);
		return FAIL;
	}
	uint64_t capacity = vd_cfg(d, 0, 8);
	uint32_t size_max = (d->features & BLK_F_SIZE_MAX) ? (uint32_t)vd_cfg(d, 8, 4) : 0;
	uint32_t seg_max = (d->features & BLK_F_SEG_MAX) ? (uint32_t)vd_cfg(d, 12, 4) : 0;
	if (p->type == BLK_T_OUT && (d->features & BLK_F_RO)) {
		ksnprintf(msg, n, "%s is read-only: no write benchmark", d->name);
		return FAIL;
	}
	if (capacity * 512 < p->bs || capacity > (1ull << 40)) {
		ksnprintf(msg, n, "%s: %lu sectors: too small for %lu-byte requests",
			  d->name, capacity, p->bs);
		return FAIL;
	}

	/* Data descriptors of up to SIZE_MAX bytes, at most SEG_MAX of them. */
	uint32_t seg = size_max ? size_max & ~511u : (uint32_t)p->bs;
	if (!seg)
		seg = 512;
	if (seg > p->bs)
		seg = (uint32_t)p->bs;
	uint32_t segs = (uint32_t)((p->bs + seg - 1) / seg);
	if ((seg_max && segs > seg_max) || segs > 62) {
		ksnprintf(msg, n, "%s: %lu-byte requests need %u segments of %u bytes; "
			  "seg_max %u", d->name, p->bs, segs, seg, seg_max);
		return FAIL;
	}

	bool irq = false;
	char why_poll[64] = "blkbench_wait=poll";
	if (!p->poll) {
		irq = vd_msix_enable(d, 0, VEC_MSI, why_poll, sizeof(why_poll));
		if (irq && vq_set_vector(d, 0, 0) != 0) {
			ksnprintf(why_poll, sizeof(why_poll), "queue 0 refused MSI-X vector 0");
			irq = false;
		}
	}
	if (!vq_setup(d, 0, 0, err, sizeof(err))) {
		ksnprintf(msg, n, "%s", err);
		return FAIL;
	}
	vd_driver_ok(d);
	uint8_t s = vd_status(d);
	if ((s & (VIRTIO_S_NEEDS_RESET | VIRTIO_S_FAILED)) || !(s & VIRTIO_S_DRIVER_OK)) {
		ksnprintf(msg, n, "%s: status 0x%x after DRIVER_OK", d->name, s);
		return FAIL;
	}

	struct vq *q = &d->vq[0];
	uint32_t per = segs + 2, depth = (uint32_t)p->depth;
	if (depth > q->size / per)
		depth = q->size / per;
	if (!depth) {
		ksnprintf(msg, n, "%s: a request of %u descriptors does not fit a ring "
			  "of %u", d->name, per, q->size);
		return FAIL;
	}
	static struct bench *b;
	if (!b)
		b = (struct bench *)(uintptr_t)palloc(sizeof(*b), 64);
	uint64_t hdr = palloc(32ull * depth, 4096);
	uint64_t buf = palloc(p->bs * depth, 4096);
	if (!b || !hdr || !buf) {
		ksnprintf(msg, n, "no memory for %u buffers of %lu bytes", depth, p->bs);
		return FAIL;
	}
	zero(b, sizeof(*b));
	b->desc = q->desc;
	b->avail = q->avail;
	b->used = q->used;
	b->qsize = q->size;
	b->irq = irq;
	b->type = p->type;
	b->bs = (uint32_t)p->bs;
	b->seg = seg;
	b->segs = segs;
	b->per = per;
	b->depth = depth;
	b->hdr = hdr;
	b->buf = buf;
	b->disk_bytes = capacity * 512;
	b->nreq = (p->mib << 20) / p->bs;
	b->wlen = p->type == BLK_T_IN ? (uint32_t)p->bs + 1 : 1;
	b->timeout = 2 * PIT_HZ;
	run_user(u_prepare, b);

	char how[112];
	ksnprintf(how, sizeof(how), "%s (%s): %s, %lu-byte requests (%u segment%s), "
		  "depth %u%s, %s", d->name, vtransport_name(d), op, p->bs, segs,
		  segs > 1 ? "s" : "", depth, depth < p->depth ? " (ring-bound)" : "",
		  irq ? "MSI-X" : "polled");
	if (!irq && !p->poll)
		kprintf("# blkbench: polling: %s\n", why_poll);

	uint64_t msi0 = msi_irqs, kicks = 0, waits = 0;
	wait_tick();
	uint64_t t0 = ticks;
	int result = PASS;
	while (b->nreq) {
		uint64_t r = run_user(u_step, b);
		if (r & STEP_ERR) {
			ksnprintf(msg, n, "%s: %s (%lu of %lu requests done)", d->name,
				  b->err, b->done, b->nreq);
			result = FAIL;
			break;
		}
		if (r & STEP_KICK) {
			vq_kick(d, q);
			kicks++;
		}
		if (r & STEP_DONE)
			break;
		if (irq) {
			waits++;
			if (!wait_used(b)) {
				ksnprintf(msg, n, "%s: no completion in %u ms (%lu of %lu "
					  "requests done, %u in flight)", d->name,
					  b->timeout * 1000 / PIT_HZ, b->done, b->nreq,
					  b->inflight);
				result = FAIL;
				break;
			}
		}
	}
	uint64_t ms = (ticks - t0) * 1000 / PIT_HZ;
	uint64_t irqs = msi_irqs - msi0;
	vd_reset(d);
	vd_msix_disable(d);
	if (result != PASS)
		return result;

	uint64_t bytes = b->nreq * p->bs;
	if (!bytes) {
		ksnprintf(msg, n, "%s; baseline, no I/O", how);
		return PASS;
	}
	kprintf("# blkbench: %lu ring-3 steps, %lu notifications, %lu waits, %lu "
		"interrupts (%lu woke the driver to an unchanged used ring)\n",
		b->steps, kicks, waits, irqs, b->empty_irqs);
	char rate[32] = "under a tick";
	if (ms)
		ksnprintf(rate, sizeof(rate), "%lu MiB/s", bytes * 1000 / ms >> 20);
	ksnprintf(msg, n, "%s; %lu bytes in %lu requests, %lu ms (guest PIT), %s",
		  how, bytes, b->nreq, ms, rate);
	return PASS;
}

int check_blkbench(char *msg, size_t n)
{
	struct params p;
	params_read(&p);
	if (p.bad[0]) {
		ksnprintf(msg, n, "cannot use %s (blkbench_op=read|write, blkbench_bs=, "
			  "blkbench_mib=, blkbench_depth=, blkbench_wait=irq|poll)", p.bad);
		return FAIL;
	}
	struct vdev *d = vdev_find(VIRTIO_ID_BLK, 0);
	if (!d) {
		ksnprintf(msg, n, "no virtio-blk device");
		return FAIL;
	}
	if (!virtio_timer_ok(msg, n))
		return FAIL;
	return bench_run(d, &p, msg, n);
}
