/* virtio-hostile (not in `all`): a driver that breaks the rules, and what
 * the virtio 1.2 specification lets a device do about it.
 *
 * The targets are the first virtio-blk and the first virtio-rng device.
 * Each case starts from a freshly initialised device and puts one broken
 * chain (or one broken step) in front of it:
 *
 *   outside-ram        a buffer at 256 GiB, where there is no RAM
 *   wrapping           a buffer whose address + length wraps 64 bits
 *   length-overflow    two 2 GiB buffers: the chain's length wraps 32 bits
 *   looping-chain      descriptors whose next fields form a loop
 *   next-out-of-range  a next index beyond the queue size
 *   past-the-end       (blk) reads at and across the end of the disk
 *   queue-size         a queue size that is not a power of two
 *   before-driver-ok   a valid request notified before DRIVER_OK
 *
 * What the specification requires of the device, and so what fails here:
 * it writes no memory it was not given (canary pages where a truncated or
 * wrapped address would land: the page the 256 GiB address aliases below
 * 256 GiB, page 0, the top page of RAM; and the device-readable request
 * header) and never a device-readable buffer; it keeps the ring protocol
 * (used ids that were made available, used lengths within the writable
 * bytes); it does not call a chain whose length wraps 32 bits, or a read
 * beyond the disk, a success; it does not consume buffers before DRIVER_OK
 * on the modern interface (3.1.2; legacy drivers did that, so it is
 * allowed there); and it works afterwards: on its other queue (blk with
 * VIRTIO_BLK_F_MQ), on the same queue when it did not set
 * DEVICE_NEEDS_RESET, after a reset when it did. A modern device that
 * stops working without setting DEVICE_NEEDS_RESET fails (the legacy
 * interface has no such bit: there a reset must do). The other target
 * device must keep working throughout.
 *
 * What the specification leaves open is reported, one line per case
 * (`# hostile DEV CASE: ...`), not judged: whether a buffer outside RAM
 * is refused (DEVICE_NEEDS_RESET, an error status) or served the way a
 * bus serves DMA to nothing (QEMU: writes dropped, status OK); whether a
 * loop is detected; what happens with a queue size that is not a power of
 * two (a driver duty with no device reaction named). A VMM with a stricter
 * contract (lkvm: a malformed chain is refused) checks those lines.
 */
#include "virtio.h"
#include "blk.h"

#define OUTSIDE_RAM 0x4000000000ull /* 256 GiB */
#define HDR_OFF 2048		    /* blk header in the scratch page */
#define STATUS_OFF 2064		    /* blk status byte, 0xff until written */
#define OBSERVE_TICKS 30	    /* how long a broken chain is watched */
#define IDLE_TICKS 10		    /* before DRIVER_OK: 100 ms of nothing */

enum kind { K_BLK, K_RNG };

struct target {
	struct vdev *d;
	enum kind kind;
	struct blk b;
	int nq, qi; /* queues set up; the queue broken chains go to */
	uint64_t page;
	bool open;
};

/* Canaries: pages a device must not write, each with a saved copy. */
#define NCANARY 3
static uint64_t canary[NCANARY], saved[NCANARY], expect;
static uint64_t canary_seed;

static void canaries_arm(void)
{
	for (int i = 0; i < NCANARY; i++) {
		memcpy_user((void *)(uintptr_t)saved[i], (void *)(uintptr_t)canary[i], 4096);
		pattern_fill((void *)(uintptr_t)canary[i], 4096, canary[i] >> 9, canary_seed);
	}
}

/* Restores the pages; false (msg says which) when one changed. */
static bool canaries_check(const char *dev, const char *name, char *msg, size_t n)
{
	bool ok = true;
	for (int i = 0; i < NCANARY; i++) {
		pattern_fill((void *)(uintptr_t)expect, 4096, canary[i] >> 9, canary_seed);
		uint64_t bad = mem_diff((void *)(uintptr_t)expect,
					(void *)(uintptr_t)canary[i], 4096);
		if (bad && ok) {
			ksnprintf(msg, n, "%s %s: the device wrote guest memory it was "
				  "not given, at 0x%lx", dev, name, canary[i] + bad - 1);
			ok = false;
		}
		memcpy_user((void *)(uintptr_t)canary[i], (void *)(uintptr_t)saved[i], 4096);
	}
	return ok;
}

/* One descriptor of a hand-made chain; next is an index into the chain,
 * or (raw) the value to write. */
struct hd {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	int next;
	bool raw;
};

struct hres {
	bool completed, needs_reset, protocol;
	bool config_irq; /* ISR bit 1 read when DEVICE_NEEDS_RESET was seen */
	uint32_t len;
	uint8_t status; /* blk */
	uint8_t dev_status;
};

static const char *kname(const struct target *t)
{
	return t->d->name;
}

static uint64_t blk_want(void)
{
	return BLK_F_SIZE_MAX | BLK_F_SEG_MAX | BLK_F_RO | BLK_F_BLK_SIZE | BLK_F_FLUSH;
}

/* Reset and initialise the target for normal use. */
static bool t_open(struct target *t, char *msg, size_t n)
{
	char err[96];
	t->open = false;
	if (t->kind == K_BLK) {
		uint64_t extra = t->nq > 1 ? BLK_F_MQ : 0;
		if (!blk_open(&t->b, t->d, extra, t->nq, msg, n))
			return false;
		t->b.timeout = PIT_HZ / 5;
	} else if (!vd_start(t->d, 0, 1, err, sizeof(err))) {
		ksnprintf(msg, n, "%s", err);
		return false;
	}
	t->open = true;
	return true;
}

/* A valid request on queue q: it must complete, and succeed. */
static bool t_probe(struct target *t, int q, char *why, size_t n)
{
	if (t->kind == K_BLK) {
		t->b.qi = q;
		int st = blk_cmd(&t->b, BLK_T_IN, 0, t->page, 512, why, n);
		if (st < 0)
			return false;
		if (st != BLK_S_OK) {
			ksnprintf(why, n, "%s: a valid read on queue %d: status %d",
				  kname(t), q, st);
			return false;
		}
		return true;
	}
	struct vq *vq = &t->d->vq[q];
	struct vbuf b = { t->page, 16, true };
	uint32_t id, len;
	if (vq_add(vq, &b, 1) < 0) {
		ksnprintf(why, n, "%s: no room for a valid request", kname(t));
		return false;
	}
	vq_kick(t->d, vq);
	int r = vq_wait(t->d, vq, &id, &len, PIT_HZ / 5);
	if (r <= 0 || len == 0 || len > 16) {
		ksnprintf(why, n, "%s: a valid request on queue %d: %s", kname(t), q,
			  r < 0 ? t->d->error : r == 0 ? "no completion in 200 ms"
						       : "no bytes");
		return false;
	}
	return true;
}

/* Publishes a hand-made chain on queue q and notifies. */
static int put_chain(struct target *t, int q, const struct hd *c, int nc)
{
	struct vq *vq = &t->d->vq[q];
	uint16_t idx[8];
	if (nc > 8 || vq_reserve(vq, nc, idx) < 0)
		return -1;
	uint64_t wlen = 0;
	for (int k = 0; k < nc; k++) {
		volatile struct vring_desc *dd = &vq->desc[idx[k]];
		dd->addr = c[k].addr;
		dd->len = c[k].len;
		dd->flags = c[k].flags;
		dd->next = c[k].raw ? (uint16_t)c[k].next
				    : c[k].next >= 0 ? idx[c[k].next] : 0;
		if (c[k].flags & VRING_DESC_F_WRITE)
			wlen += c[k].len;
	}
	if (t->kind == K_BLK) {
		volatile struct blk_hdr *h =
			(volatile struct blk_hdr *)(uintptr_t)(t->page + HDR_OFF);
		h->type = BLK_T_IN;
		h->reserved = 0;
		h->sector = 0;
		*(volatile uint8_t *)(uintptr_t)(t->page + STATUS_OFF) = 0xff;
	}
	vq_publish(vq, idx[0], nc, wlen > 0xffffffffull ? 0xffffffffu : (uint32_t)wlen);
	vq_kick(t->d, vq);
	return idx[0];
}

/* Watches queue q for `ticks`: a completion, DEVICE_NEEDS_RESET. */
static void observe(struct target *t, int q, unsigned wait, struct hres *r)
{
	memset(r, 0, sizeof(*r));
	r->status = 0xff;
	uint64_t t0 = ticks;
	while (ticks - t0 < wait) {
		uint32_t id, len;
		int g = vq_get(t->d, &t->d->vq[q], &id, &len);
		if (g < 0)
			r->protocol = true;
		if (g) {
			r->completed = true;
			r->len = len;
			if (t->kind == K_BLK)
				r->status = *(volatile uint8_t *)(uintptr_t)(t->page + STATUS_OFF);
			break;
		}
		r->dev_status = vd_status(t->d);
		if (r->dev_status & VIRTIO_S_NEEDS_RESET) {
			r->needs_reset = true;
			break;
		}
		cpu_relax();
	}
	r->dev_status = vd_status(t->d);
	if (r->dev_status & VIRTIO_S_NEEDS_RESET) {
		r->needs_reset = true;
		/* 2.1.2: with DRIVER_OK set, DEVICE_NEEDS_RESET comes with a
		 * configuration change notification: ISR bit 1 (MSI-X is
		 * off). It may trail the status bit a little. */
		uint64_t t1 = ticks;
		do
			r->config_irq = vd_isr(t->d) & 2;
		while (!r->config_irq && ticks - t1 < PIT_HZ / 10);
	}
}

/* Did the device report success for a chain it could not have served? */
static bool accepted(const struct target *t, const struct hres *r)
{
	if (!r->completed)
		return false;
	return t->kind == K_BLK ? r->status == BLK_S_OK : r->len > 0;
}

static void describe(const struct target *t, const struct hres *r, char *s, size_t n)
{
	size_t l = 0;
	if (r->needs_reset)
		l += (size_t)ksnprintf(s + l, n - l, "DEVICE_NEEDS_RESET, ");
	if (!r->completed)
		ksnprintf(s + l, n - l, "not completed");
	else if (t->kind == K_BLK)
		ksnprintf(s + l, n - l, r->status == 0xff ? "returned, status not written"
				       : "completed with status %u", r->status);
	else
		ksnprintf(s + l, n - l, "completed with %u bytes", r->len);
}

/* A device may take its time to say DEVICE_NEEDS_RESET (QEMU's rng
 * does, by 0.5 to 1 s): up to 2 s. */
static bool late_needs_reset(struct target *t)
{
	for (uint64_t t0 = ticks; ticks - t0 < 2 * PIT_HZ;)
		if (vd_status(t->d) & VIRTIO_S_NEEDS_RESET)
			return true;
	return false;
}

/* After a case: the device works again, as the specification allows
 * (see the top of the file). Appends what happened to note. */
static bool recover(struct target *t, struct target *other, const struct hres *r,
		    char *note, size_t nn, char *why, size_t wn)
{
	size_t l = strlen(note);
	bool ok;
	if (r->needs_reset) {
		ok = t_open(t, why, wn) && t_probe(t, 0, why, wn);
		l += (size_t)ksnprintf(note + l, nn - l, "; a reset brings it back");
	} else {
		/* No reset asked for: it must go on working. */
		int q = t->nq > 1 ? 0 : t->qi;
		ok = t_probe(t, q, why, wn);
		if (ok) {
			l += (size_t)ksnprintf(note + l, nn - l, "; queue %d %s", q,
					       q == t->qi ? "keeps working"
							  : "(the other queue) keeps working");
		} else if (vd_modern(t->d) && !late_needs_reset(t)) {
			size_t wl = strlen(why);
			ksnprintf(why + wl, wn - wl, " (after %s, without "
				  "DEVICE_NEEDS_RESET)", note);
			return false;
		} else {
			ok = t_open(t, why, wn) && t_probe(t, 0, why, wn);
			l += (size_t)ksnprintf(note + l, nn - l, "; stopped until a reset%s",
					       vd_modern(t->d) ? " (DEVICE_NEEDS_RESET came late)"
							       : " (legacy: no DEVICE_NEEDS_RESET)");
		}
	}
	if (ok && other && other->open) {
		ok = t_probe(other, 0, why, wn);
		if (ok)
			ksnprintf(note + l, nn - l, "; %s keeps working", kname(other));
	}
	return ok;
}

/* The cases with one broken chain. strict: a blk success is wrong. */
static int chain_case(struct target *t, struct target *other, const char *name,
		      const struct hd *c, int nc, bool strict, char *msg, size_t n)
{
	char note[200], why[200];
	struct hres r;
	why[0] = 0;
	if (!t_open(t, msg, n))
		return FAIL;
	canaries_arm();
	struct blk_hdr hdr_before = *(struct blk_hdr *)(uintptr_t)(t->page + HDR_OFF);
	if (put_chain(t, t->qi, c, nc) < 0) {
		canaries_check(kname(t), name, msg, n);
		ksnprintf(msg, n, "%s %s: no room in the queue", kname(t), name);
		return FAIL;
	}
	if (t->kind == K_BLK)
		hdr_before = *(struct blk_hdr *)(uintptr_t)(t->page + HDR_OFF);
	observe(t, t->qi, OBSERVE_TICKS, &r);
	describe(t, &r, note, sizeof(note));
	if (!canaries_check(kname(t), name, msg, n))
		return FAIL;
	if (t->kind == K_BLK &&
	    memcmp(&hdr_before, (void *)(uintptr_t)(t->page + HDR_OFF), sizeof(hdr_before))) {
		ksnprintf(msg, n, "%s %s: the device wrote the device-readable request "
			  "header", kname(t), name);
		return FAIL;
	}
	if (r.protocol) {
		ksnprintf(msg, n, "%s %s: %s", kname(t), name, t->d->error);
		return FAIL;
	}
	if (r.needs_reset && (r.dev_status & VIRTIO_S_DRIVER_OK) && !r.config_irq) {
		ksnprintf(msg, n, "%s %s: DEVICE_NEEDS_RESET without a configuration "
			  "change notification (ISR bit 1 clear)", kname(t), name);
		return FAIL;
	}
	if (strict && t->kind == K_BLK && accepted(t, &r)) {
		ksnprintf(msg, n, "%s %s: %s, a success for a request whose length "
			  "wraps 32 bits", kname(t), name, note);
		return FAIL;
	}
	if (!recover(t, other, &r, note, sizeof(note), why, sizeof(why))) {
		ksnprintf(msg, n, "%s %s: %s", kname(t), name, why);
		return FAIL;
	}
	kprintf("# hostile %s %s: %s\n", kname(t), name, note);
	return PASS;
}

/* Data descriptors (device-writable), framed as a blk read when the
 * target is a disk. */
static int data_case(struct target *t, struct target *other, const char *name,
		     const struct hd *data, int nd, bool strict, char *msg, size_t n)
{
	struct hd c[8];
	int nc = 0, first = t->kind == K_BLK ? 1 : 0;
	if (t->kind == K_BLK)
		c[nc++] = (struct hd){ t->page + HDR_OFF, 16, VRING_DESC_F_NEXT, 1, false };
	for (int i = 0; i < nd; i++) {
		c[nc] = data[i];
		if (!c[nc].raw && c[nc].next >= 0)
			c[nc].next += first;
		nc++;
	}
	if (t->kind == K_BLK) {
		c[nc - 1].flags |= VRING_DESC_F_NEXT;
		c[nc - 1].next = nc;
		c[nc++] = (struct hd){ t->page + STATUS_OFF, 1, VRING_DESC_F_WRITE, -1, false };
	}
	return chain_case(t, other, name, c, nc, strict, msg, n);
}

static int past_the_end(struct target *t, struct target *other, char *msg, size_t n)
{
	char note[200], why[200];
	if (!t_open(t, msg, n))
		return FAIL;
	t->b.qi = t->qi;
	uint64_t cap = t->b.capacity;
	int s1 = blk_cmd(&t->b, BLK_T_IN, cap, t->page, 512, msg, n);
	if (s1 < 0)
		return FAIL;
	int s2 = blk_cmd(&t->b, BLK_T_IN, cap - 1, t->page, 1024, msg, n);
	if (s2 < 0)
		return FAIL;
	if (s1 == BLK_S_OK || s2 == BLK_S_OK || s1 == 0xff || s2 == 0xff) {
		ksnprintf(msg, n, "%s past-the-end: a read of sector %lu: status %d, of "
			  "sectors %lu+2: status %d (want an error)", kname(t), cap, s1,
			  cap - 1, s2);
		return FAIL;
	}
	ksnprintf(note, sizeof(note), "status %d at sector %lu, %d across the end", s1,
		  cap, s2);
	struct hres r;
	memset(&r, 0, sizeof(r));
	r.completed = true;
	r.status = (uint8_t)s1;
	r.needs_reset = vd_status(t->d) & VIRTIO_S_NEEDS_RESET;
	if (!recover(t, other, &r, note, sizeof(note), why, sizeof(why))) {
		ksnprintf(msg, n, "%s past-the-end: %s", kname(t), why);
		return FAIL;
	}
	kprintf("# hostile %s past-the-end: %s\n", kname(t), note);
	return PASS;
}

/* Negotiates and sets the queues up, without DRIVER_OK; the hostile
 * queue gets `size` entries (0: the usual). */
static bool t_begin(struct target *t, uint16_t size, char *msg, size_t n)
{
	char err[96];
	t->open = false;
	uint64_t want = t->kind == K_BLK ? blk_want() | (t->nq > 1 ? BLK_F_MQ : 0) : 0;
	if (!vd_begin(t->d, want, err, sizeof(err))) {
		ksnprintf(msg, n, "%s", err);
		return false;
	}
	for (int q = 0; q < t->nq; q++)
		if (!vq_setup(t->d, q, q == t->qi ? size : 0, err, sizeof(err))) {
			ksnprintf(msg, n, "%s", err);
			return false;
		}
	return true;
}

static int valid_chain(struct target *t, struct hd *c)
{
	if (t->kind == K_RNG) {
		c[0] = (struct hd){ t->page, 16, VRING_DESC_F_WRITE, -1, false };
		return 1;
	}
	c[0] = (struct hd){ t->page + HDR_OFF, 16, VRING_DESC_F_NEXT, 1, false };
	c[1] = (struct hd){ t->page, 512, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 2, false };
	c[2] = (struct hd){ t->page + STATUS_OFF, 1, VRING_DESC_F_WRITE, -1, false };
	return 3;
}

static int before_driver_ok(struct target *t, struct target *other, char *msg, size_t n)
{
	char note[200], why[200];
	struct hd c[3];
	struct hres r;
	if (!t_begin(t, 0, msg, n))
		return FAIL;
	int nc = valid_chain(t, c);
	put_chain(t, t->qi, c, nc);
	observe(t, t->qi, IDLE_TICKS, &r);
	bool early = r.completed;
	if (early && vd_modern(t->d)) {
		ksnprintf(msg, n, "%s before-driver-ok: a request notified before "
			  "DRIVER_OK was consumed (%s interface)", kname(t),
			  vtransport_name(t->d));
		return FAIL;
	}
	vd_driver_ok(t->d);
	t->open = true;
	if (!early) {
		vq_kick(t->d, &t->d->vq[t->qi]);
		observe(t, t->qi, PIT_HZ, &r);
		if (!r.completed || !accepted(t, &r)) {
			describe(t, &r, note, sizeof(note));
			ksnprintf(msg, n, "%s before-driver-ok: after DRIVER_OK and a "
				  "notification, the request was %s", kname(t), note);
			return FAIL;
		}
	}
	ksnprintf(note, sizeof(note), "%s", early ? "consumed before DRIVER_OK "
		  "(allowed on the legacy interface)" : "left alone until DRIVER_OK, "
		  "then served");
	r.needs_reset = false;
	if (!recover(t, other, &r, note, sizeof(note), why, sizeof(why))) {
		ksnprintf(msg, n, "%s before-driver-ok: %s", kname(t), why);
		return FAIL;
	}
	kprintf("# hostile %s before-driver-ok: %s\n", kname(t), note);
	return PASS;
}

static int queue_size(struct target *t, struct target *other, char *msg, size_t n)
{
	char note[200], why[200];
	struct hd c[3];
	struct hres r;
	memset(&r, 0, sizeof(r));
	if (t->d->t == VT_PCI_LEGACY) {
		kprintf("# hostile %s queue-size: the legacy interface has the "
			"device's size only\n", kname(t));
		return PASS;
	}
	uint16_t max = vq_max(t->d, t->qi);
	uint16_t size = 3;
	if (max < 4) {
		kprintf("# hostile %s queue-size: queue of %u entries, no room for a "
			"size that is not a power of two\n", kname(t), max);
		return PASS;
	}
	if (!t_begin(t, size, msg, n))
		return FAIL;
	uint16_t back = vq_size_readback(t->d, t->qi);
	vd_driver_ok(t->d);
	t->open = true;
	uint8_t s = vd_status(t->d);
	size_t l = 0;
	if (back && back != size)
		l += (size_t)ksnprintf(note + l, sizeof(note) - l, "reads back %u; ", back);
	if ((s & (VIRTIO_S_NEEDS_RESET | VIRTIO_S_FAILED)) || !(s & VIRTIO_S_DRIVER_OK)) {
		ksnprintf(note + l, sizeof(note) - l, "refused (status 0x%x)", s);
		r.needs_reset = true;
	} else if (back && back != size) {
		ksnprintf(note + l, sizeof(note) - l, "refused");
		r.needs_reset = true; /* ring layout unknown: reset */
	} else {
		int nc = valid_chain(t, c);
		put_chain(t, t->qi, c, nc);
		observe(t, t->qi, PIT_HZ / 2, &r);
		if (r.protocol) {
			ksnprintf(msg, n, "%s queue-size %u: %s", kname(t), size,
				  t->d->error);
			return FAIL;
		}
		if (r.completed && accepted(t, &r))
			ksnprintf(note + l, sizeof(note) - l, "accepted; a request on "
				  "the %u-entry ring completes", size);
		else if (r.needs_reset)
			ksnprintf(note + l, sizeof(note) - l,
				  "accepted, then DEVICE_NEEDS_RESET at the first request");
		else if (r.completed)
			ksnprintf(note + l, sizeof(note) - l,
				  "accepted; the request completed with an error");
		else if (!vd_modern(t->d))
			ksnprintf(note + l, sizeof(note) - l,
				  "accepted; the request was not served");
		else {
			ksnprintf(msg, n, "%s queue-size %u: accepted, then the request "
				  "was neither served nor refused, without "
				  "DEVICE_NEEDS_RESET", kname(t), size);
			return FAIL;
		}
		if (!r.completed)
			r.needs_reset = true;
	}
	/* Whatever happened, the normal size must work after a reset. */
	r.needs_reset = true;
	if (!recover(t, other, &r, note, sizeof(note), why, sizeof(why))) {
		ksnprintf(msg, n, "%s queue-size %u: %s", kname(t), size, why);
		return FAIL;
	}
	kprintf("# hostile %s queue-size %u: %s\n", kname(t), size, note);
	return PASS;
}

/* Each case on its own: a failure is printed and counted, and the next
 * case still runs (from a reset device), so one bug does not hide the
 * others. The first failure is the message of the check. */
struct tally {
	int cases, failed;
	char first[256];
};

static void count(struct tally *ty, struct target *t, const char *name, int r,
		  const char *msg)
{
	ty->cases++;
	if (r == PASS)
		return;
	ty->failed++;
	kprintf("# hostile %s %s: FAILED: %s\n", kname(t), name, msg);
	if (ty->failed == 1)
		ksnprintf(ty->first, sizeof(ty->first), "%s", msg);
}

static void run_cases(struct target *t, struct target *other, struct tally *ty)
{
	char msg[256];
	uint64_t p = t->page;
	uint16_t W = VRING_DESC_F_WRITE, NW = VRING_DESC_F_WRITE | VRING_DESC_F_NEXT;

	/* 256 GiB above canary 0: a device that drops high address bits
	 * writes the canary. */
	struct hd outside[1] = { { OUTSIDE_RAM + canary[0], 512, W, -1, false } };
	/* Wraps to page 0, canary 1. */
	struct hd wrapping[1] = { { 0xfffffffffffff000ull, 0x2000, W, -1, false } };
	/* From the top page of RAM (canary 2) far beyond RAM; 2 x 2 GiB is
	 * 0 in 32 bits. */
	struct hd overflow[2] = { { canary[2], 0x80000000u, NW, 1, false },
				  { canary[2], 0x80000000u, W, -1, false } };
	count(ty, t, "outside-ram",
	      data_case(t, other, "outside-ram", outside, 1, false, msg, sizeof(msg)), msg);
	count(ty, t, "wrapping",
	      data_case(t, other, "wrapping", wrapping, 1, false, msg, sizeof(msg)), msg);
	count(ty, t, "length-overflow",
	      data_case(t, other, "length-overflow", overflow, 2, true, msg, sizeof(msg)),
	      msg);

	/* A loop through every descriptor of the chain, no end. */
	struct hd loop[2];
	if (t->kind == K_BLK) {
		loop[0] = (struct hd){ p + HDR_OFF, 16, VRING_DESC_F_NEXT, 1, false };
		loop[1] = (struct hd){ p, 512, NW, 0, false };
	} else {
		loop[0] = (struct hd){ p, 16, NW, 1, false };
		loop[1] = (struct hd){ p + 16, 16, NW, 0, false };
	}
	count(ty, t, "looping-chain",
	      chain_case(t, other, "looping-chain", loop, 2, false, msg, sizeof(msg)), msg);

	/* next just beyond the queue (its size is known once it is set up) */
	int r = t_open(t, msg, sizeof(msg)) ? PASS : FAIL;
	if (r == PASS) {
		/* blk: the header's next; rng: the buffer's. */
		uint16_t qsize = t->d->vq[t->qi].size;
		struct hd beyond[1] = { { p, 16, NW, qsize, true } };
		if (t->kind == K_BLK)
			beyond[0] = (struct hd){ p + HDR_OFF, 16, VRING_DESC_F_NEXT, qsize,
						 true };
		r = chain_case(t, other, "next-out-of-range", beyond, 1, false, msg,
			       sizeof(msg));
	}
	count(ty, t, "next-out-of-range", r, msg);
	if (t->kind == K_BLK)
		count(ty, t, "past-the-end", past_the_end(t, other, msg, sizeof(msg)), msg);
	count(ty, t, "queue-size", queue_size(t, other, msg, sizeof(msg)), msg);
	count(ty, t, "before-driver-ok", before_driver_ok(t, other, msg, sizeof(msg)), msg);
	/* Leave it usable for the other target's probes. */
	t_open(t, msg, sizeof(msg));
}

int check_virtio_hostile(char *msg, size_t n)
{
	struct target tb, tr;
	memset(&tb, 0, sizeof(tb));
	memset(&tr, 0, sizeof(tr));
	tb.d = vdev_find(VIRTIO_ID_BLK, 0);
	tr.d = vdev_find(VIRTIO_ID_RNG, 0);
	if (!tb.d && !tr.d) {
		ksnprintf(msg, n, "no virtio-blk or virtio-rng device");
		return SKIP;
	}
	if (!virtio_timer_ok(msg, n))
		return FAIL;
	tb.kind = K_BLK;
	tr.kind = K_RNG;
	tb.page = palloc(4096, 4096);
	tr.page = palloc(4096, 4096);
	if (!tb.page || !tr.page) {
		ksnprintf(msg, n, "no memory for buffers");
		return FAIL;
	}
	tb.nq = tr.nq = 1;
	/* Canaries: a page of our own, page 0, the top page of RAM. */
	canary[0] = palloc(4096, 4096);
	canary[1] = 0;
	canary[2] = (ram_top() & ~0xfffull) - 4096;
	for (int i = 0; i < NCANARY; i++)
		saved[i] = palloc(4096, 4096);
	expect = palloc(4096, 4096);
	canary_seed = rdtsc();
	if (!canary[0] || !saved[NCANARY - 1] || !expect || ram_top() < (1u << 21)) {
		ksnprintf(msg, n, "no memory for canaries");
		return FAIL;
	}
	if (tr.d && !t_open(&tr, msg, n))
		return FAIL;
	if (tb.d) {
		/* With VIRTIO_BLK_F_MQ and two queues, broken chains go to
		 * queue 1 and queue 0 must keep working. */
		if (!t_open(&tb, msg, n))
			return FAIL;
		if ((tb.d->offered & BLK_F_MQ) && vd_cfg(tb.d, 34, 2) >= 2)
			tb.nq = 2;
		tb.qi = tb.nq - 1;
		if (!t_open(&tb, msg, n))
			return FAIL;
	}
	struct tally ty;
	memset(&ty, 0, sizeof(ty));
	if (tb.d)
		run_cases(&tb, tr.d ? &tr : NULL, &ty);
	if (tr.d)
		run_cases(&tr, tb.d ? &tb : NULL, &ty);
	if (tb.d)
		vd_reset(tb.d);
	if (tr.d)
		vd_reset(tr.d);
	if (ty.failed) {
		ksnprintf(msg, n, "%d of %d cases failed, first: %s", ty.failed, ty.cases,
			  ty.first);
		return FAIL;
	}
	size_t l = (size_t)ksnprintf(msg, n, "%d cases on", ty.cases);
	if (tb.d)
		l += (size_t)ksnprintf(msg + l, n - l, " %s (%s%s)", tb.d->name,
				       vtransport_name(tb.d),
				       tb.nq > 1 ? ", 2 queues" : "");
	if (tr.d)
		ksnprintf(msg + l, n - l, "%s %s (%s)", tb.d ? " and" : "", tr.d->name,
			  vtransport_name(tr.d));
	return PASS;
}
