/* The virtio-blk check: capacity, GET_ID, the whole disk read (SHA-256 in
 * ring 3, printed for the host to compare) and written (a pattern, read
 * back, the original restored) with several requests in flight, flush,
 * and a read-only disk refusing writes. */
#include "virtio.h"
#include "blk.h"

#define WINDOW (1u << 20) /* bytes per read/write/verify round */
#define REQ_BYTES (128u << 10)
#define SLOTS 64

static uint64_t slot_mem;      /* SLOTS x 32 bytes: header, then status */
static uint64_t buf_a, buf_b, buf_c;
static bool selftest_done, selftest_ok;

static bool blk_alloc(void)
{
	if (!slot_mem)
		slot_mem = palloc(SLOTS * 32, 4096);
	if (!buf_a)
		buf_a = palloc(WINDOW, 4096);
	if (!buf_b)
		buf_b = palloc(WINDOW, 4096);
	if (!buf_c)
		buf_c = palloc(WINDOW, 4096);
	return slot_mem && buf_a && buf_b && buf_c;
}

uint64_t blk_scratch(void)
{
	return blk_alloc() ? buf_c : 0;
}

/* Negotiates, reads the configuration, sizes requests. */
bool blk_open(struct blk *b, struct vdev *d, uint64_t extra, int nq, char *msg,
	      size_t n)
{
	char err[96];
	memset(b, 0, sizeof(*b));
	b->d = d;
	if (!blk_alloc()) {
		ksnprintf(msg, n, "no memory for buffers");
		return false;
	}
	uint64_t want = BLK_F_SIZE_MAX | BLK_F_SEG_MAX | BLK_F_RO | BLK_F_BLK_SIZE |
			BLK_F_FLUSH | extra;
	if (!vd_start(d, want, nq, err, sizeof(err))) {
		ksnprintf(msg, n, "%s", err);
		return false;
	}
	b->capacity = vd_cfg(d, 0, 8);
	b->size_max = (d->features & BLK_F_SIZE_MAX) ? (uint32_t)vd_cfg(d, 8, 4) : 0;
	b->seg_max = (d->features & BLK_F_SEG_MAX) ? (uint32_t)vd_cfg(d, 12, 4) : 0;
	b->blk_size = (d->features & BLK_F_BLK_SIZE) ? (uint32_t)vd_cfg(d, 20, 4) : 512;
	b->ro = d->features & BLK_F_RO;
	b->flush = d->features & BLK_F_FLUSH;
	/* Requests of REQ_BYTES, fewer when the device limits segments. */
	uint32_t seg = b->size_max ? b->size_max & ~511u : REQ_BYTES;
	if (!seg)
		seg = 512;
	uint32_t segs = b->seg_max ? b->seg_max : 1;
	if (segs > BLK_MAX_SEGS)
		segs = BLK_MAX_SEGS;
	uint64_t req = (uint64_t)seg * segs;
	b->req_bytes = req < REQ_BYTES ? (uint32_t)req : REQ_BYTES;
	b->seg_bytes = seg < b->req_bytes ? seg : b->req_bytes;
	b->timeout = 2 * PIT_HZ;
	return true;
}

/* Runs n requests, as many in flight as the ring and SLOTS allow, one
 * notification per batch. Each request's status and used length land in
 * it. False when the device stops answering or breaks the ring protocol. */
bool blk_run(struct blk *b, struct breq *r, int n, char *msg, size_t mn)
{
	struct vdev *d = b->d;
	struct vq *q = &d->vq[b->qi];
	static int16_t req_of_head[VQ_SIZE_MAX];
	static uint8_t slot_of_head[VQ_SIZE_MAX];
	static bool mine[VQ_SIZE_MAX]; /* heads of this run's requests */
	bool slot_busy[SLOTS];
	memset(slot_busy, 0, sizeof(slot_busy));
	int next = 0, done = 0, inflight = 0;
	while (done < n) {
		bool added = false;
		while (next < n && inflight < SLOTS) {
			struct breq *rq = &r[next];
			int slot = 0;
			while (slot_busy[slot])
				slot++;
			uint64_t hdr = slot_mem + 32ull * slot;
			volatile struct blk_hdr *h = (volatile struct blk_hdr *)(uintptr_t)hdr;
			h->type = rq->type;
			h->reserved = 0;
			h->sector = rq->sector;
			*(volatile uint8_t *)(uintptr_t)(hdr + 16) = 0xff;
			struct vbuf v[BLK_MAX_SEGS + 2];
			int nv = 0;
			v[nv++] = (struct vbuf){ hdr, 16, false };
			bool din = rq->type == BLK_T_IN || rq->type == BLK_T_GET_ID;
			for (uint32_t off = 0; off < rq->bytes;) {
				uint32_t l = rq->bytes - off;
				if (l > b->seg_bytes)
					l = b->seg_bytes;
				v[nv++] = (struct vbuf){ rq->addr + off, l, din };
				off += l;
			}
			v[nv++] = (struct vbuf){ hdr + 16, 1, true };
			int head = vq_add(q, v, nv);
			if (head < 0)
				break;
			slot_busy[slot] = true;
			req_of_head[head] = (int16_t)next;
			slot_of_head[head] = (uint8_t)slot;
			mine[head] = true;
			inflight++;
			next++;
			added = true;
		}
		if (added) {
			vq_kick(d, q);
			if (inflight > b->max_inflight)
				b->max_inflight = inflight;
		}
		if (!inflight) {
			ksnprintf(msg, mn, "%s: a request of %u bytes does not fit a ring of "
				  "%u entries", d->name, r[next].bytes, q->size);
			return false;
		}
		uint32_t id, len;
		int w = vq_wait(d, q, &id, &len, b->timeout);
		if (w <= 0) {
			ksnprintf(msg, mn, "%s: %s (%d of %d requests done, %d in flight)",
				  d->name, w < 0 ? d->error : "no completion in time",
				  done, n, inflight);
			for (int h = 0; h < VQ_SIZE_MAX; h++)
				mine[h] = false;
			return false;
		}
		if (!mine[id])
			continue; /* a chain the hostile checks left behind */
		mine[id] = false;
		struct breq *rq = &r[req_of_head[id]];
		int slot = slot_of_head[id];
		rq->status = *(volatile uint8_t *)(uintptr_t)(slot_mem + 32ull * slot + 16);
		rq->len = len;
		slot_busy[slot] = false;
		inflight--;
		done++;
	}
	return true;
}

/* One command on its own; its status, or -1 (msg says why). */
int blk_cmd(struct blk *b, uint32_t type, uint64_t sector, uint64_t addr,
	    uint32_t bytes, char *msg, size_t n)
{
	struct breq r = { type, sector, addr, bytes, 0, 0 };
	if (!blk_run(b, &r, 1, msg, n))
		return -1;
	return r.status;
}

/* Reads or writes [sector, sector + bytes/512) from or to addr in
 * requests of req_bytes, all in flight together. */
static bool blk_rw(struct blk *b, uint32_t type, uint64_t sector, uint64_t addr,
		   uint32_t bytes, char *msg, size_t n)
{
	/* Up to WINDOW / 512 requests: in allocated memory, since .bss is
	 * cleared at every boot and that costs time at CPL 0. */
	static struct breq *r;
	if (!r)
		r = (struct breq *)(uintptr_t)palloc(WINDOW / 512 * sizeof(*r), 8);
	if (!r) {
		ksnprintf(msg, n, "no memory for requests");
		return false;
	}
	int nr = 0;
	for (uint32_t off = 0; off < bytes; off += b->req_bytes) {
		uint32_t l = bytes - off < b->req_bytes ? bytes - off : b->req_bytes;
		r[nr++] = (struct breq){ type, sector + off / 512, addr + off, l, 0, 0 };
	}
	if (!blk_run(b, r, nr, msg, n))
		return false;
	for (int i = 0; i < nr; i++) {
		if (r[i].status != BLK_S_OK) {
			ksnprintf(msg, n, "%s: %s of sectors %lu+%u: status %u", b->d->name,
				  type == BLK_T_IN ? "read" : "write", r[i].sector,
				  r[i].bytes / 512, r[i].status);
			return false;
		}
	}
	return true;
}

static void show_id(const char *name, const uint8_t *id, int status)
{
	if (status == BLK_S_UNSUPP) {
		kprintf("# %s id: unsupported\n", name);
		return;
	}
	char s[21];
	int i;
	for (i = 0; i < 20 && id[i]; i++)
		s[i] = id[i] >= 0x20 && id[i] < 0x7f ? (char)id[i] : '?';
	s[i] = 0;
	kprintf("# %s id: \"%s\"\n", name, s);
}

static int blk_one(struct vdev *d, uint64_t seed, char *msg, size_t n)
{
	struct blk b;
	if (!blk_open(&b, d, 0, 1, msg, n))
		return FAIL;
	kprintf("# %s: capacity %lu sectors (%lu bytes)%s, features 0x%lx of 0x%lx, "
		"seg_max %u, size_max %u, blk_size %u, %u-byte requests\n", d->name,
		b.capacity, b.capacity * 512, b.ro ? ", read-only" : "", d->features,
		d->offered, b.seg_max, b.size_max, b.blk_size, b.req_bytes);
	if (!b.capacity) {
		ksnprintf(msg, n, "%s: capacity 0", d->name);
		return FAIL;
	}
	if (b.capacity > (1ull << 40)) {
		ksnprintf(msg, n, "%s: capacity %lu sectors is beyond this check",
			  d->name, b.capacity);
		return FAIL;
	}

	/* GET_ID: 20 bytes, NUL-padded when shorter. */
	uint8_t *id = (uint8_t *)(uintptr_t)buf_b;
	memset(id, 0, 32);
	int st = blk_cmd(&b, BLK_T_GET_ID, 0, buf_b, 20, msg, n);
	if (st < 0)
		return FAIL;
	if (st != BLK_S_OK && st != BLK_S_UNSUPP) {
		ksnprintf(msg, n, "%s: GET_ID: status %d", d->name, st);
		return FAIL;
	}
	show_id(d->name, id, st);

	/* A request type no device knows. */
	st = blk_cmd(&b, 0x7f, 0, buf_b, 512, msg, n);
	if (st < 0)
		return FAIL;
	if (st == BLK_S_OK) {
		ksnprintf(msg, n, "%s: request type 0x7f completed with VIRTIO_BLK_S_OK",
			  d->name);
		return FAIL;
	}

	struct sha256 h;
	sha256_init(&h);
	uint8_t first[512], last[512];
	uint64_t total = b.capacity * 512;
	void *A = (void *)(uintptr_t)buf_a, *B = (void *)(uintptr_t)buf_b,
	     *C = (void *)(uintptr_t)buf_c;
	for (uint64_t pos = 0; pos < total; pos += WINDOW) {
		uint32_t bytes = total - pos < WINDOW ? (uint32_t)(total - pos) : WINDOW;
		uint64_t sector = pos / 512;
		if (!blk_rw(&b, BLK_T_IN, sector, buf_a, bytes, msg, n))
			return FAIL;
		sha256_update(&h, A, bytes);
		if (pos == 0)
			memcpy(first, A, 512);
		if (pos + bytes == total)
			memcpy(last, (uint8_t *)A + bytes - 512, 512);
		if (b.ro)
			continue;
		pattern_fill(B, bytes, sector, seed);
		if (!blk_rw(&b, BLK_T_OUT, sector, buf_b, bytes, msg, n) ||
		    !blk_rw(&b, BLK_T_IN, sector, buf_c, bytes, msg, n))
			return FAIL;
		uint64_t bad = mem_diff(B, C, bytes);
		if (bad) {
			ksnprintf(msg, n, "%s: sector %lu reads back other data than was "
				  "written (byte %lu)", d->name, sector + (bad - 1) / 512,
				  (bad - 1) % 512);
			return FAIL;
		}
		if (!blk_rw(&b, BLK_T_OUT, sector, buf_a, bytes, msg, n))
			return FAIL;
	}
	uint8_t digest[32];
	char hex[65];
	sha256_final(&h, digest);
	sha256_hex(digest, hex);
	kprintf("# %s sha256: %s\n", d->name, hex);

	if (b.ro) {
		/* VIRTIO_BLK_F_RO: every write fails with IOERR and changes
		 * nothing (virtio 1.2, 5.2.6.1). */
		uint64_t ends[2] = { 0, b.capacity - 1 };
		for (int i = 0; i < 2; i++) {
			pattern_fill(B, 512, ends[i], seed);
			st = blk_cmd(&b, BLK_T_OUT, ends[i], buf_b, 512, msg, n);
			if (st < 0)
				return FAIL;
			if (st != BLK_S_IOERR) {
				ksnprintf(msg, n, "%s: read-only, but a write of sector %lu "
					  "completed with status %d, not IOERR", d->name,
					  ends[i], st);
				return FAIL;
			}
			st = blk_cmd(&b, BLK_T_IN, ends[i], buf_c, 512, msg, n);
			if (st != BLK_S_OK) {
				if (st >= 0)
					ksnprintf(msg, n, "%s: read of sector %lu: status %d",
						  d->name, ends[i], st);
				return FAIL;
			}
			if (mem_diff(C, i ? last : first, 512)) {
				ksnprintf(msg, n, "%s: read-only, refused the write of "
					  "sector %lu, but the sector changed", d->name,
					  ends[i]);
				return FAIL;
			}
		}
		ksnprintf(msg, n, "%s (%s): read-only, %lu sectors read, up to %d "
			  "requests in flight, writes refused with IOERR", d->name,
			  vtransport_name(d), b.capacity, b.max_inflight);
		vd_reset(d);
		return PASS;
	}
	const char *flushed = "no VIRTIO_BLK_F_FLUSH";
	if (b.flush) {
		st = blk_cmd(&b, BLK_T_FLUSH, 0, 0, 0, msg, n);
		if (st < 0)
			return FAIL;
		if (st != BLK_S_OK) {
			ksnprintf(msg, n, "%s: flush: status %d", d->name, st);
			return FAIL;
		}
		flushed = "flushed";
	}
	ksnprintf(msg, n, "%s (%s): %lu sectors read, written, read back and "
		  "restored, up to %d requests in flight, %s", d->name,
		  vtransport_name(d), b.capacity, b.max_inflight, flushed);
	vd_reset(d);
	return PASS;
}

int check_virtio_blk(char *msg, size_t n)
{
	if (!virtio_present(VIRTIO_ID_BLK)) {
		ksnprintf(msg, n, "no virtio-blk device");
		return SKIP;
	}
	if (!virtio_timer_ok(msg, n))
		return FAIL;
	if (!selftest_done) {
		selftest_done = true;
		selftest_ok = sha256_selftest();
	}
	if (!selftest_ok) {
		ksnprintf(msg, n, "SHA-256 in ring 3 gives the wrong digest for \"abc\"");
		return FAIL;
	}
	uint64_t seed = rdtsc() * 0x9e3779b97f4a7c15ull;
	char one[256];
	int devs = 0;
	for (struct vdev *d; (d = vdev_find(VIRTIO_ID_BLK, devs)); devs++) {
		one[0] = 0;
		int r = blk_one(d, seed, one, sizeof(one));
		if (r != PASS) {
			ksnprintf(msg, n, "%s", one);
			return r;
		}
		kprintf("# %s\n", one);
		if (devs == 0)
			ksnprintf(msg, n, "%s", one);
	}
	if (devs > 1) {
		size_t l = strlen(msg);
		ksnprintf(msg + l, n - l, "; and %d more disk(s)", devs - 1);
	}
	return PASS;
}
