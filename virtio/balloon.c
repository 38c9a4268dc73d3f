// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-balloon (virtio 1.2, 5.5), --balloon: the host asks the guest
 * for memory back (`lkvm balloon NAME --inflate MiB`), the driver lists
 * the pages it gave on the inflate queue, and lkvm drops them from its
 * own memory with madvise(MADV_DONTNEED): the guest's RAM is a private
 * anonymous mapping, so the pages leave lkvm's resident set and read as
 * zeros if the guest touches them again (after deflating, or without
 * VIRTIO_BALLOON_F_MUST_TELL_HOST, which is not offered: nothing needs
 * to be done before a page is reused).
 *
 * Offered as QEMU offers them: VIRTIO_BALLOON_F_STATS_VQ (the driver
 * keeps one buffer of statistics on the stats queue; the device returns
 * it to ask for fresh ones, which `lkvm stat --memory` does) and
 * VIRTIO_BALLOON_F_DEFLATE_ON_OOM (the driver may take pages back under
 * memory pressure; it says so through `actual`).
 *
 * Every PFN the guest names is checked: a page outside RAM, in ROM, or
 * straddling regions is refused and counted, never touched.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "lkvm/balloon.h"
#include "lkvm/device.h"
#include "lkvm/machine.h"
#include "lkvm/stats.h"
#include "lkvm/util.h"
#include "lkvm/virtio.h"

#define F_STATS_VQ 1
#define F_DEFLATE_ON_OOM 2

#define INFLATEQ 0
#define DEFLATEQ 1
#define STATSQ 2
#define QUEUE_SIZE 128

/* struct virtio_balloon_config */
#define CFG_NUM_PAGES 0		/* device: the target, in 4 KiB pages */
#define CFG_ACTUAL 4		/* driver: pages in the balloon */
#define CFG_SIZE 8

#define STAT_ENTRY 10		/* le16 tag, le64 value */
#define STATS_MAX 64		/* entries of one buffer that are read */
#define PFN_CHUNK 1024		/* PFNs copied out of a chain at a time */

struct balloon {
	struct virtio_dev *d;
	struct iovec iov[VIRTQ_MAX_SEGS];
	struct dev_counters counters;	/* chains, bytes given, refused */
	bool madvise_warned;		/* I/O thread */

	/* Atomics: read by the control socket. */
	uint64_t inflated, deflated, refused;

	/* The stats queue; io_lock. */
	bool stats_held;	/* the driver's buffer, to return for more */
	uint16_t stats_head;
	uint64_t stats[BALLOON_NSTATS];
	uint32_t stats_seen;
	uint64_t stats_updates;
	struct timespec stats_time;
};

static const struct device_ops balloon_ops;

static const char *const stat_names[BALLOON_NSTATS] = {
	"swap_in", "swap_out", "major_faults", "minor_faults",
	"free_memory", "total_memory", "available_memory", "disk_caches",
	"hugetlb_allocations", "hugetlb_failures", "oom_kills",
	"alloc_stalls", "async_scans", "direct_scans", "async_reclaims",
	"direct_reclaims",
};

const char *balloon_stat_name(unsigned int tag)
{
	return tag < BALLOON_NSTATS ? stat_names[tag] : NULL;
}

int balloon_parse_stats(const uint8_t *buf, size_t len,
			uint64_t vals[BALLOON_NSTATS], uint32_t *seen)
{
	size_t n = len / STAT_ENTRY;

	for (size_t i = 0; i < n; i++) {
		const uint8_t *e = buf + i * STAT_ENTRY;
		uint16_t tag = get_le16(e);

		if (tag < BALLOON_NSTATS) {
			vals[tag] = get_le64(e + 2);
			*seen |= 1u << tag;
		}
	}
	return len % STAT_ENTRY ? -1 : (int)n;
}

void *balloon_page(struct machine *m, uint32_t pfn)
{
	uint64_t gpa = (uint64_t)pfn * BALLOON_PAGE;

	for (unsigned int i = 0; i < m->nmem; i++) {
		const struct mem_region *r = &m->mem[i];

		if (r->readonly || gpa < r->gpa || gpa - r->gpa >= r->size ||
		    r->size - (gpa - r->gpa) < BALLOON_PAGE)
			continue;
		return (char *)r->host + (gpa - r->gpa);
	}
	return NULL;
}

/* Host ranges given back in runs: adjacent pages cost one madvise(). */
struct run {
	char *start;
	size_t len;
};

static void run_flush(struct balloon *b, struct run *r)
{
	if (r->len && madvise(r->start, r->len, MADV_DONTNEED) < 0 &&
	    !b->madvise_warned) {
		b->madvise_warned = true;
		pr_warn("%s: madvise: %s", b->d->name, strerror(errno));
	}
	r->len = 0;
}

static void run_add(struct balloon *b, struct run *r, char *page)
{
	if (r->len && r->start + r->len == page) {
		r->len += BALLOON_PAGE;
		return;
	}
	run_flush(b, r);
	r->start = page;
	r->len = BALLOON_PAGE;
}

/* One chain of the inflate or deflate queue: an array of le32 PFNs. */
static void take_pfns(struct balloon *b, const struct virtq_chain *c,
		      bool inflate)
{
	uint8_t buf[PFN_CHUNK * 4];
	uint64_t good = 0, bad = 0;
	bool torn = c->out_len % 4;	/* an error, but no PFN */
	struct run run = { NULL, 0 };

	for (size_t off = 0; off + 4 <= c->out_len;) {
		size_t got = iov_to_buf(c->iov, c->nout, off, buf,
					MIN(sizeof(buf), (c->out_len - off) & ~3ul));

		for (size_t i = 0; i + 4 <= got; i += 4) {
			char *page = balloon_page(b->d->m, get_le32(buf + i));

			if (!page) {
				bad++;
				continue;
			}
			good++;
			if (inflate)
				run_add(b, &run, page);
		}
		if (!got)
			break;
		off += got;
	}
	run_flush(b, &run);
	__atomic_fetch_add(inflate ? &b->inflated : &b->deflated, good,
			   __ATOMIC_RELAXED);
	__atomic_fetch_add(&b->refused, bad, __ATOMIC_RELAXED);
	dev_count(&b->counters, inflate ? good * BALLOON_PAGE : 0,
		  bad || torn);
}

static void stats_take(struct balloon *b, const struct virtq_chain *c)
{
	uint8_t buf[STATS_MAX * STAT_ENTRY];
	size_t len = iov_to_buf(c->iov, c->nout, 0, buf,
				MIN(sizeof(buf), (size_t)c->out_len));

	if (balloon_parse_stats(buf, len, b->stats, &b->stats_seen) < 0 ||
	    c->out_len > sizeof(buf))
		dev_count(&b->counters, 0, true);
	b->stats_updates++;
	clock_gettime(CLOCK_MONOTONIC, &b->stats_time);
}

static void balloon_notify(struct virtio_dev *d, struct virtq *vq)
{
	struct balloon *b = d->priv;
	struct virtq_chain c = { .iov = b->iov, .cap = VIRTQ_MAX_SEGS };
	bool pushed = false;

again:
	virtq_kicks_off(vq);
	while (virtio_pop(d, vq, &c) > 0) {
		if (vq->index != STATSQ) {
			take_pfns(b, &c, vq->index == INFLATEQ);
			virtq_push(vq, c.head, 0);
			pushed = true;
			continue;
		}
		/* The driver keeps one buffer here; a second one means the
		 * first is stale: it goes back. */
		if (b->stats_held) {
			virtq_push(vq, b->stats_head, 0);
			pushed = true;
		}
		stats_take(b, &c);
		b->stats_held = true;
		b->stats_head = c.head;
	}
	if (virtq_kicks_on(vq))
		goto again;
	if (pushed)
		virtio_queue_done(d, vq);
}

static void balloon_config_write(struct virtio_dev *d, unsigned int off,
				 const void *buf, unsigned int len)
{
	const uint8_t *p = buf;

	/* Only `actual` is the driver's. */
	for (unsigned int i = 0; i < len; i++)
		if (off + i >= CFG_ACTUAL && off + i < CFG_SIZE)
			d->config[off + i] = p[i];
}

static void balloon_reset(struct virtio_dev *d)
{
	struct balloon *b = d->priv;

	/* A new driver starts with an empty balloon; the target stays. */
	b->stats_held = false;
	put_le32(d->config + CFG_ACTUAL, 0);
}

static const struct virtio_dev_ops balloon_dev_ops = {
	.device_id = VIRTIO_ID_BALLOON,
	.pci_class = 0x05ff00,		/* memory, other; as QEMU */
	.nqueues = 3,
	.queue_size = QUEUE_SIZE,
	.features = VIRTIO_BIT(F_STATS_VQ) | VIRTIO_BIT(F_DEFLATE_ON_OOM),
	.config_size = CFG_SIZE,
	.config_write = balloon_config_write,
	.queue_notify = balloon_notify,
	.reset = balloon_reset,
};

struct balloon_cfg {
	struct balloon *b;
};

/* ---- control requests ----------------------------------------------- */

static void report(struct balloon *b, FILE *out, uint32_t target,
		   uint32_t actual)
{
	struct virtio_dev *d = b->d;
	struct timespec now;

	fprintf(out, "balloon.target_bytes %llu\nballoon.actual_bytes %llu\n"
		     "balloon.inflated_pages %llu\nballoon.deflated_pages %llu\n"
		     "balloon.refused_pfns %llu\nballoon.deflate_on_oom %d\n",
		(unsigned long long)(target * BALLOON_PAGE),
		(unsigned long long)(actual * BALLOON_PAGE),
		(unsigned long long)__atomic_load_n(&b->inflated, __ATOMIC_RELAXED),
		(unsigned long long)__atomic_load_n(&b->deflated, __ATOMIC_RELAXED),
		(unsigned long long)__atomic_load_n(&b->refused, __ATOMIC_RELAXED),
		virtio_has_feature(d, F_DEFLATE_ON_OOM));

	pthread_mutex_lock(&d->io_lock);
	fprintf(out, "balloon.stats_updates %llu\n",
		(unsigned long long)b->stats_updates);
	if (b->stats_updates) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		fprintf(out, "balloon.stats_age_ms %lld\n",
			(long long)(now.tv_sec - b->stats_time.tv_sec) * 1000 +
				(now.tv_nsec - b->stats_time.tv_nsec) / 1000000);
	}
	for (unsigned int t = 0; t < BALLOON_NSTATS; t++)
		if (b->stats_seen & (1u << t))
			fprintf(out, "balloon.stats.%s %llu\n", stat_names[t],
				(unsigned long long)b->stats[t]);
	/* Fresh statistics for the next question: the buffer goes back. */
	if (b->stats_held && virtq_ready(&d->vq[STATSQ]) &&
	    (virtio_read_status(d) & VIRTIO_STATUS_DRIVER_OK)) {
		b->stats_held = false;
		virtq_push(&d->vq[STATSQ], b->stats_head, 0);
		virtio_queue_done(d, &d->vq[STATSQ]);
	}
	pthread_mutex_unlock(&d->io_lock);
}

int balloon_request(struct machine *m, uint32_t cmd, uint64_t bytes,
		    FILE *out, char *err, size_t errlen)
{
	struct balloon_cfg *cfg = machine_dev_cfg(m, &balloon_ops);
	struct balloon *b = cfg ? cfg->b : NULL;
	uint64_t max = m->ram_size / BALLOON_PAGE, pages = bytes / BALLOON_PAGE;
	uint32_t target, actual;
	int64_t next;

	if (!b) {
		snprintf(err, errlen,
			 "the guest has no balloon (start it with --balloon)");
		return -ENODEV;
	}
	if (cmd > BALLOON_DEFLATE || (cmd == BALLOON_QUERY && bytes) ||
	    bytes % BALLOON_PAGE) {
		snprintf(err, errlen, "a balloon change is a whole number of "
				      "%llu-byte pages",
			 (unsigned long long)BALLOON_PAGE);
		return -EINVAL;
	}
	pthread_mutex_lock(&b->d->lock);
	target = get_le32(b->d->config + CFG_NUM_PAGES);
	actual = get_le32(b->d->config + CFG_ACTUAL);
	next = (int64_t)target + (cmd == BALLOON_INFLATE ? (int64_t)MIN(pages, max + 1) :
			-(int64_t)MIN(pages, max + 1));
	if (cmd != BALLOON_QUERY && (next < 0 || (uint64_t)next > max)) {
		pthread_mutex_unlock(&b->d->lock);
		snprintf(err, errlen,
			 "the balloon holds %llu MiB of the guest's %llu MiB; "
			 "it cannot %s by %llu MiB",
			 (unsigned long long)(target * BALLOON_PAGE >> 20),
			 (unsigned long long)(m->ram_size >> 20),
			 cmd == BALLOON_INFLATE ? "grow" : "shrink",
			 (unsigned long long)(bytes >> 20));
		return -EINVAL;
	}
	if (cmd != BALLOON_QUERY) {
		target = (uint32_t)next;
		put_le32(b->d->config + CFG_NUM_PAGES, target);
	}
	pthread_mutex_unlock(&b->d->lock);
	if (cmd != BALLOON_QUERY)
		virtio_config_changed(b->d);
	report(b, out, target, actual);
	return 0;
}

/* ---- set-up ----------------------------------------------------------- */

static int balloon_init(struct machine *m)
{
	struct balloon_cfg *cfg = machine_dev_cfg(m, &balloon_ops);
	struct balloon *b;
	int err;

	if (!m->cfg.balloon || !cfg)
		return 0;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	err = virtio_dev_add(m, &balloon_dev_ops, "virtio-balloon", b, &b->d);
	if (!err)
		err = machine_add_counters(m, "virtio-balloon", &b->counters);
	if (err) {
		if (b->d)
			virtio_dev_remove(b->d);
		free(b);
		return err;
	}
	cfg->b = b;
	return 0;
}

static void balloon_exit(struct machine *m)
{
	struct balloon_cfg *cfg = machine_dev_cfg(m, &balloon_ops);

	if (!cfg || !cfg->b)
		return;
	virtio_dev_remove(cfg->b->d);
	free(cfg->b);
	cfg->b = NULL;
}

static const struct device_ops balloon_ops = {
	.name = "virtio-balloon",
	.stage = DEV_STAGE_DEVICE,
	.cfg_size = sizeof(struct balloon_cfg),
	.init = balloon_init,
	.exit = balloon_exit,
};
DEVICE(balloon_ops);
