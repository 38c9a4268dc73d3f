/* The virtio-balloon check: a driver that gives pages when the device's
 * num_pages asks for them and reports statistics on the stats queue.
 *
 * The pages given come from a pool the check allocates and touches first
 * (balloon_pool=MIB, default 8), so that the host has really backed them
 * before it gets them back. Every run gives one batch unasked and takes it
 * back (the device must complete both); balloon_hostile=1 adds requests
 * with PFNs outside RAM, which the device must complete without harm
 * (and count); with balloon_wait=SECONDS the
 * check then serves the host for that long: it follows num_pages up and
 * down, writes `actual`, returns fresh statistics whenever the device
 * hands the stats buffer back, and passes once the host has inflated and
 * then deflated the balloon to 0. */
#include "virtio.h"

#define F_STATS_VQ (1ull << 1)
#define F_DEFLATE_ON_OOM (1ull << 2)
#define CFG_NUM_PAGES 0
#define CFG_ACTUAL 4
#define INFLATEQ 0
#define DEFLATEQ 1
#define STATSQ 2
#define BATCH 256 /* PFNs in one request, as Linux */
#define STAT_ENTRY 10
#define PAGE 4096ull

/* Statistics tags (virtio 1.2, 5.5.6.3). */
#define ST_SWAP_IN 0
#define ST_SWAP_OUT 1
#define ST_MINFLT 3
#define ST_MEMFREE 4
#define ST_MEMTOT 5
#define ST_AVAIL 6

static uint64_t pool, pfn_page, stats_page;
static uint32_t pool_pages, given, refreshes;

static const char *bwait_error(struct vdev *d, int r)
{
	return r < 0 ? d->error : "no completion within 1 s";
}

/* Gives (inflate) or takes back (deflate) pool pages [first, first + n). */
static bool transfer(struct vdev *d, int q, uint32_t first, uint32_t n, char *msg,
		     size_t len)
{
	uint32_t *pfns = (uint32_t *)(uintptr_t)pfn_page;
	for (uint32_t i = 0; i < n; i++)
		pfns[i] = (uint32_t)(pool / PAGE) + first + i;
	struct vbuf b = { pfn_page, n * 4, false };
	uint32_t id, l;
	vq_add(&d->vq[q], &b, 1);
	vq_kick(d, &d->vq[q]);
	int r = vq_wait(d, &d->vq[q], &id, &l, PIT_HZ);
	if (r <= 0) {
		ksnprintf(msg, len, "%s: %s of %u pages: %s", d->name,
			  q == INFLATEQ ? "inflate" : "deflate", n, bwait_error(d, r));
		return false;
	}
	return true;
}

static void put_stat(uint8_t *p, uint16_t tag, uint64_t v)
{
	p[0] = (uint8_t)tag;
	p[1] = (uint8_t)(tag >> 8);
	for (int i = 0; i < 8; i++)
		p[2 + i] = (uint8_t)(v >> (8 * i));
}

static uint64_t total_ram(void)
{
	return ranges_total(M.ram, M.nram);
}

/* Fills the statistics buffer and makes it available again. */
static void stats_post(struct vdev *d)
{
	uint8_t *p = (uint8_t *)(uintptr_t)stats_page;
	uint64_t free_bytes = (uint64_t)(pool_pages - given) * PAGE;
	put_stat(p + 0 * STAT_ENTRY, ST_SWAP_IN, 0);
	put_stat(p + 1 * STAT_ENTRY, ST_SWAP_OUT, 0);
	put_stat(p + 2 * STAT_ENTRY, ST_MINFLT, refreshes);
	put_stat(p + 3 * STAT_ENTRY, ST_MEMFREE, free_bytes);
	put_stat(p + 4 * STAT_ENTRY, ST_MEMTOT, total_ram());
	put_stat(p + 5 * STAT_ENTRY, ST_AVAIL, free_bytes);
	struct vbuf b = { stats_page, 6 * STAT_ENTRY, false };
	vq_add(&d->vq[STATSQ], &b, 1);
	vq_kick(d, &d->vq[STATSQ]);
}

/* One step toward num_pages; false on a device error. */
static bool follow(struct vdev *d, uint32_t *peak, char *msg, size_t n)
{
	uint32_t target = (uint32_t)vd_cfg(d, CFG_NUM_PAGES, 4);
	if (target > pool_pages)
		target = pool_pages; /* the rest is the kernel's own */
	if (target == given)
		return true;
	if (target > given) {
		uint32_t k = target - given > BATCH ? BATCH : target - given;
		if (!transfer(d, INFLATEQ, given, k, msg, n))
			return false;
		given += k;
	} else {
		uint32_t k = given - target > BATCH ? BATCH : given - target;
		if (!transfer(d, DEFLATEQ, given - k, k, msg, n))
			return false;
		given -= k;
	}
	vd_cfg_write32(d, CFG_ACTUAL, given);
	if (given > *peak)
		*peak = given;
	if (given == target)
		kprintf("# virtio-balloon: actual %u pages\n", given);
	return true;
}

/* balloon_hostile=1: PFNs that are no RAM, and a buffer that ends inside
 * a PFN; the device must complete both requests and go on. */
static bool hostile(struct vdev *d, char *msg, size_t n)
{
	uint32_t *pfns = (uint32_t *)(uintptr_t)pfn_page, id, l;
	pfns[0] = 0xffffffffu;			    /* far beyond RAM */
	pfns[1] = (uint32_t)(ram_top() / PAGE) + 5; /* just beyond */
	pfns[2] = 0xfec00;			    /* the I/O APIC */
	pfns[3] = 0xfffffffeu;
	struct vbuf bufs[2] = { { pfn_page, 12, false }, { pfn_page + 12, 6, false } };
	for (int i = 0; i < 2; i++) {
		vq_add(&d->vq[INFLATEQ], &bufs[i], 1);
		vq_kick(d, &d->vq[INFLATEQ]);
		int r = vq_wait(d, &d->vq[INFLATEQ], &id, &l, PIT_HZ);
		if (r <= 0) {
			ksnprintf(msg, n, "%s: a request with bad PFNs: %s", d->name,
				  bwait_error(d, r));
			return false;
		}
	}
	uint8_t s = vd_status(d);
	if (s & VIRTIO_S_NEEDS_RESET) {
		ksnprintf(msg, n, "%s: status 0x%x after bad PFNs", d->name, s);
		return false;
	}
	kprintf("# virtio-balloon: 4 PFNs outside RAM and a torn one sent, both "
		"requests completed\n");
	return true;
}

static int serve(struct vdev *d, uint64_t secs, char *msg, size_t n)
{
	bool stats = d->features & F_STATS_VQ;
	uint32_t peak = 0, id, len;
	kprintf("# virtio-balloon: serving for %lu s, pool %u pages touched, "
		"total_memory %lu\n", secs, pool_pages, total_ram());
	for (uint64_t t0 = ticks; ticks - t0 < secs * PIT_HZ;) {
		if (!follow(d, &peak, msg, n))
			return FAIL;
		if (stats) {
			int r = vq_get(d, &d->vq[STATSQ], &id, &len);
			if (r < 0) {
				ksnprintf(msg, n, "%s: stats queue: %s", d->name, d->error);
				return FAIL;
			}
			if (r > 0) {
				refreshes++;
				stats_post(d);
			}
		}
		if (peak && !given && !vd_cfg(d, CFG_NUM_PAGES, 4)) {
			ksnprintf(msg, n, "%s (%s): inflated to %u pages and back to 0 "
				  "as asked; %u statistics refreshes", d->name,
				  vtransport_name(d), peak, refreshes);
			return PASS;
		}
		delay_ticks(1);
	}
	ksnprintf(msg, n, "%s: the host did not inflate and deflate within %lu s "
		  "(peak %u pages, now %u)", d->name, secs, peak, given);
	return FAIL;
}

int check_virtio_balloon(char *msg, size_t n)
{
	struct vdev *d = vdev_find(VIRTIO_ID_BALLOON, 0);
	if (!d) {
		ksnprintf(msg, n, "no virtio-balloon device");
		return SKIP;
	}
	if (!virtio_timer_ok(msg, n))
		return FAIL;
	char err[96];
	if (!vd_begin(d, F_STATS_VQ | F_DEFLATE_ON_OOM, err, sizeof(err)) ||
	    !vq_setup(d, INFLATEQ, 0, err, sizeof(err)) ||
	    !vq_setup(d, DEFLATEQ, 0, err, sizeof(err)) ||
	    ((d->features & F_STATS_VQ) && !vq_setup(d, STATSQ, 0, err, sizeof(err)))) {
		ksnprintf(msg, n, "%s", err);
		return FAIL;
	}
	uint64_t mib = 8, secs = 0, bad = 0;
	vd_param_u64("balloon_pool", &mib);
	vd_param_u64("balloon_hostile", &bad);
	vd_param_u64("balloon_wait", &secs);
	if (!pfn_page)
		pfn_page = palloc(PAGE, PAGE);
	if (!stats_page)
		stats_page = palloc(PAGE, PAGE);
	if (!pool && mib)
		pool = palloc(mib << 20, PAGE);
	if (!pfn_page || !stats_page || !pool) {
		ksnprintf(msg, n, "no memory for a %lu MiB pool", mib);
		return FAIL;
	}
	pool_pages = (uint32_t)((mib << 20) / PAGE);
	given = 0;
	/* The host backs what the guest touched: one write per page. */
	for (uint32_t i = 0; i < pool_pages; i++)
		*(volatile uint8_t *)(uintptr_t)(pool + i * PAGE) = 0xa5;
	vd_driver_ok(d);
	uint8_t s = vd_status(d);
	if (s & (VIRTIO_S_NEEDS_RESET | VIRTIO_S_FAILED)) {
		ksnprintf(msg, n, "%s: status 0x%x after DRIVER_OK", d->name, s);
		return FAIL;
	}
	if (d->features & F_STATS_VQ)
		stats_post(d);

	/* One batch unasked, then back: both must complete. */
	uint32_t k = pool_pages < BATCH ? pool_pages : BATCH;
	if (!transfer(d, INFLATEQ, 0, k, msg, n) || !transfer(d, DEFLATEQ, 0, k, msg, n))
		return FAIL;
	if (bad && !hostile(d, msg, n))
		return FAIL;
	int r = PASS;
	if (secs)
		r = serve(d, secs, msg, n);
	else
		ksnprintf(msg, n, "%s (%s): %u pages given and taken back, stats %s, "
			  "deflate-on-OOM %s", d->name, vtransport_name(d), k,
			  d->features & F_STATS_VQ ? "posted" : "not offered",
			  d->features & F_DEFLATE_ON_OOM ? "negotiated" : "not offered");
	vd_reset(d);
	return r;
}
