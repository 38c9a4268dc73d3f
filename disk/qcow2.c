// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2 images, versions 2 and 3 (QEMU's docs/interop/qcow2.txt).
 *
 * The image is untrusted input: every offset and size read from the
 * header, the L1, L2 and refcount tables is checked before use; a header
 * that cannot be trusted refuses the open, a bad table entry met later
 * fails that request with -EIO (and one message), never lkvm.
 *
 * Reads and overwrites of allocated clusters whose L2 table is cached go
 * to libaio from the submitting thread. Everything else (a table to load,
 * a cluster to allocate, compressed data, discard, write-zeroes) runs in
 * the worker thread with the metadata lock held; the fast path only
 * try-locks, so a submitter never waits behind metadata I/O.
 *
 * Crash consistency: refcounts first, then data, then the mapping (L2,
 * and L1 for a new L2 table) -- QEMU's order. A cluster is handed out
 * only once its refcount of 1 is on disk: refcount blocks, the refcount
 * table and the header are written with RWF_DSYNC, which makes that one
 * range durable without flushing the guest's data along with it (as
 * fdatasync would). So after a crash of lkvm or of the host, nothing is
 * referenced that has a refcount of 0; the worst case is leaked clusters
 * (refcount 1, unreferenced), which are harmless and which `qemu-img
 * check -r leaks` reclaims. The reverse order (L2 before refcounts) would
 * leave clusters in use with refcount 0 that a later allocation could
 * hand out twice. Refcounts are raised for a run of clusters at a time (a
 * reservation doubling up to 8 MiB); close gives back what was not used.
 * Data and L2 need no barrier between them: allocation only moves
 * forward, so a new cluster never held anything and an L2 entry that
 * reaches the disk before its data points at zeros, never at another
 * range's data. For the same reason a cluster never changes owner while
 * a request that looked it up is still in flight.
 *
 * Supported: zlib-compressed clusters (read; a write rewrites the cluster
 * uncompressed), zero clusters, refcount widths 1 to 64 bits, internal
 * snapshots read-only. Refused: backing files, encryption, external data
 * files, extended L2 entries, zstd compression, dirty or corrupt images
 * for writing.
 */
#include "disk-int.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "lkvm/util.h"

#define QCOW2_MAGIC		0x514649fbu
#define HOST_LIMIT		(1ull << 56)	/* offsets are bits 9-55 */
#define MAX_L1_BYTES		(32ull << 20)	/* QEMU's limits */
#define MAX_RT_BYTES		(8ull << 20)
#define MAX_SNAPSHOTS		65536
#define RESERVE_MAX		(8ull << 20)
#define L2_CACHE_BYTES		(32ull << 20)
#define RB_SLOTS		4
#define MAX_SPARE		64
#define FAST_EXTENTS		32

#define ENTRY_OFFSET		0x00fffffffffffe00ull
#define OFLAG_COPIED		(1ull << 63)
#define OFLAG_COMPRESSED	(1ull << 62)
#define OFLAG_ZERO		1ull
#define L1E_RESERVED		0x7f000000000001ffull
#define L2E_RESERVED		0x3f000000000001feull
#define RTE_RESERVED		0x1ffull

#define INCOMPAT_DIRTY		(1ull << 0)
#define INCOMPAT_CORRUPT	(1ull << 1)
#define INCOMPAT_DATA_FILE	(1ull << 2)
#define INCOMPAT_COMPRESSION	(1ull << 3)
#define INCOMPAT_EXTL2		(1ull << 4)
#define INCOMPAT_KNOWN		0x1full

#define EXT_END			0u
#define EXT_FEATURE_NAMES	0x6803f857u

/* Header fields (byte offsets). */
#define H_VERSION		4
#define H_BACKING_OFFSET	8
#define H_BACKING_SIZE		16
#define H_CLUSTER_BITS		20
#define H_SIZE			24
#define H_CRYPT			32
#define H_L1_SIZE		36
#define H_L1_OFFSET		40
#define H_RT_OFFSET		48
#define H_RT_CLUSTERS		56
#define H_NB_SNAPSHOTS		60
#define H_SNAPSHOTS		64
#define H_INCOMPAT		72
#define H_COMPAT		80
#define H_AUTOCLEAR		88
#define H_REFCOUNT_ORDER	96
#define H_HEADER_LENGTH		100
#define H_COMPRESSION		104
#define V2_HEADER		72
#define V3_HEADER		104

enum ctype { C_UNALLOC, C_ZERO, C_ZERO_ALLOC, C_DATA, C_COMPRESSED };

/* What one guest cluster maps to. */
struct cmap {
	enum ctype type;
	uint64_t host;	/* data, zero-alloc: the cluster; compressed: first byte */
	uint64_t clen;	/* compressed: bytes from host */
	uint64_t entry;
};

struct l2_slot {
	uint64_t key;	/* L1 index + 1; 0 when empty */
	uint64_t *tab;	/* as on disk, big endian */
};

struct rb_slot {
	uint64_t key;	/* refcount table index + 1 */
	uint8_t *blk;
};

struct qcow2 {
	pthread_mutex_t meta;		/* all below */
	unsigned int version;
	unsigned int cluster_bits;
	uint64_t cs;
	unsigned int l2_bits;		/* log2 of entries per L2 table */
	uint64_t l1_used;		/* L1 entries the virtual size needs */
	uint64_t l1_offset;
	uint64_t l1_bytes;		/* on disk: l1_size * 8 */
	uint64_t *l1;			/* host order */
	uint64_t rt_offset;
	uint64_t rt_clusters;
	uint64_t rt_entries;
	uint64_t *rt;			/* host order */
	unsigned int refcount_order;
	unsigned int rb_bits;		/* log2 of entries per refcount block */
	uint64_t rc_max;
	unsigned int csize_shift;
	uint64_t csize_mask;
	uint64_t coffset_mask;

	uint64_t file_end;		/* bytes known to be in the file */
	uint64_t free_end;		/* nothing at or past this is in use */
	uint64_t resv_start, resv_end;	/* refcount 1 on disk, not handed out */
	uint64_t resv_chunk;		/* clusters the next reservation takes */
	uint64_t spare[MAX_SPARE];	/* handed out, then not used */
	unsigned int nspare;

	unsigned int l2_nslots;
	struct l2_slot *l2c;
	struct rb_slot rbc[RB_SLOTS];

	/* Scratch space for the worker. */
	uint8_t *zeros;			/* one cluster of zeros */
	uint8_t *dbuf;			/* one cluster, decompressed */
	uint8_t *cbuf;			/* compressed input: two clusters */
	uint64_t *undo;			/* L2 entries before a run changed them */
	uint64_t *allocs;		/* clusters a run took */
	uint64_t *cfree;		/* compressed entries a run dropped */
	struct iovec *biov;		/* a batch's buffers, IOV_MAX */
	z_stream zs;
	bool zs_ready;
	bool reported;			/* one message about corruption */
};

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return be32toh(v);
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return be64toh(v);
}

static void put32(uint8_t *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, sizeof(v));
}

static void put64(uint8_t *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, sizeof(v));
}

static struct qcow2 *Q(struct disk *d)
{
	return d->priv;
}

/* A table entry that makes no sense: one message per image, then -EIO. */
static int corrupt(struct disk *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int corrupt(struct disk *d, const char *fmt, ...)
{
	struct qcow2 *s = Q(d);
	char msg[256];
	va_list ap;

	if (s->reported)
		return -EIO;
	s->reported = true;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	disk_err(d, "corrupt image: %s", msg);
	return -EIO;
}

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

/* The header cluster, the L1 table or the refcount table. */
static bool hits_metadata(const struct qcow2 *s, uint64_t off, uint64_t len)
{
	return off < s->cs || overlaps(off, len, s->l1_offset, s->l1_bytes) ||
	       overlaps(off, len, s->rt_offset, s->rt_clusters << s->cluster_bits);
}

static void note_file_end(struct qcow2 *s, uint64_t end)
{
	if (end > s->file_end)
		s->file_end = end;
}

static int sync_file(struct disk *d)
{
	return fdatasync(d->fd) ? -errno : 0;
}

static int write_be64(struct disk *d, uint64_t off, uint64_t v, bool sync)
{
	uint8_t b[8];

	put64(b, v);
	return sync ? disk_pwrite_sync(d->fd, b, sizeof(b), off) :
		      disk_pwrite(d->fd, b, sizeof(b), off);
}

/* ---- refcounts ---- */

static uint64_t rc_get(const struct qcow2 *s, const uint8_t *b, uint64_t i)
{
	unsigned int o = s->refcount_order;

	if (o < 3) {
		unsigned int shift = (unsigned int)((i << o) & 7);

		return (b[(i << o) >> 3] >> shift) & ((1u << (1u << o)) - 1);
	}
	b += i << (o - 3);
	switch (o) {
	case 3:
		return b[0];
	case 4:
		return (uint64_t)b[0] << 8 | b[1];
	case 5:
		return get32(b);
	default:
		return get64(b);
	}
}

static void rc_set(const struct qcow2 *s, uint8_t *b, uint64_t i, uint64_t v)
{
	unsigned int o = s->refcount_order;

	if (o < 3) {
		unsigned int shift = (unsigned int)((i << o) & 7);
		unsigned int mask = ((1u << (1u << o)) - 1) << shift;
		uint8_t *p = &b[(i << o) >> 3];

		*p = (uint8_t)((*p & ~mask) | ((unsigned int)v << shift));
		return;
	}
	b += i << (o - 3);
	switch (o) {
	case 3:
		b[0] = (uint8_t)v;
		break;
	case 4:
		b[0] = (uint8_t)(v >> 8);
		b[1] = (uint8_t)v;
		break;
	case 5:
		put32(b, (uint32_t)v);
		break;
	default:
		put64(b, v);
	}
}

static int refcount_add(struct disk *d, uint64_t off, uint64_t n, int delta);

static int grow_rt(struct disk *d, uint64_t need)
{
	struct qcow2 *s = Q(d);
	unsigned int cb = s->cluster_bits;
	uint64_t per = s->cs / 8, a = s->free_end >> cb, entries, t, b = 0;
	uint64_t last, first_i, last_i, k, *ntab = NULL, old_off, old_t;
	uint8_t *blocks = NULL, *tbuf = NULL, hb[12];
	int ret;

	entries = ALIGN_UP(MAX(s->rt_entries * 2, need + 1), per);
	/*
	 * The new table and the refcount blocks it needs for its own
	 * clusters go together at the end; find sizes that cover themselves.
	 */
	for (;;) {
		uint64_t nb = 0;

		t = entries / per;
		if (t << cb > MAX_RT_BYTES) {
			disk_err(d, "refcount table would pass 8 MiB");
			return -EFBIG;
		}
		last = a + t + b;
		first_i = a >> s->rb_bits;
		last_i = (last - 1) >> s->rb_bits;
		if (last_i >= entries) {
			entries = ALIGN_UP(last_i + 1, per);
			continue;
		}
		for (uint64_t i = first_i; i <= last_i; i++)
			nb += i >= s->rt_entries || !s->rt[i];
		if (nb == b)
			break;
		b = nb;
	}
	if (last << cb > HOST_LIMIT)
		return -ENOSPC;
	ntab = calloc(entries, sizeof(*ntab));
	blocks = b ? calloc(b, s->cs) : NULL;
	tbuf = malloc(t << cb);
	if (!ntab || (b && !blocks) || !tbuf) {
		ret = -ENOMEM;
		goto out;
	}
	memcpy(ntab, s->rt, s->rt_entries * sizeof(*ntab));
	k = 0;
	for (uint64_t i = first_i; i <= last_i; i++) {
		if (i >= s->rt_entries || !s->rt[i])
			ntab[i] = (a + t + k++) << cb;
	}
	for (uint64_t c = a; c < last; c++) {
		uint64_t i = c >> s->rb_bits;

		if (i >= s->rt_entries || !s->rt[i]) {
			uint64_t bi = (ntab[i] >> cb) - (a + t);

			rc_set(s, blocks + (bi << cb), c & ((1ull << s->rb_bits) - 1), 1);
			continue;
		}
		ret = refcount_add(d, c << cb, 1, 1);
		if (ret)
			goto out;
	}
	for (uint64_t i = 0; i < entries; i++)
		put64(tbuf + i * 8, ntab[i]);
	if (b) {
		ret = disk_pwrite_sync(d->fd, blocks, b << cb, (a + t) << cb);
		if (ret)
			goto out;
	}
	ret = disk_pwrite_sync(d->fd, tbuf, t << cb, a << cb);
	if (ret)
		goto out;
	/* One write switches tables: offset and size are adjacent. */
	put64(hb, a << cb);
	put32(hb + 8, (uint32_t)t);
	ret = disk_pwrite_sync(d->fd, hb, sizeof(hb), H_RT_OFFSET);
	if (ret)
		goto out;
	old_off = s->rt_offset;
	old_t = s->rt_clusters;
	free(s->rt);
	s->rt = ntab;
	ntab = NULL;
	s->rt_offset = a << cb;
	s->rt_clusters = t;
	s->rt_entries = entries;
	s->free_end = last << cb;
	note_file_end(s, s->free_end);
	/* A crash before this leaks the old table; no more. */
	ret = refcount_add(d, old_off, old_t, -1);
out:
	free(ntab);
	free(blocks);
	free(tbuf);
	return ret;
}

/* A refcount block for table index rti, at the end of the image. */
static int new_refblock(struct disk *d, uint64_t rti)
{
	struct qcow2 *s = Q(d);
	unsigned int cb = s->cluster_bits;
	uint64_t off, self;
	uint8_t *buf;
	int ret;

	if (rti >= s->rt_entries) {
		ret = grow_rt(d, rti);
		if (ret || s->rt[rti])
			return ret;
	}
	off = s->free_end;
	if (off + s->cs > HOST_LIMIT)
		return -ENOSPC;
	s->free_end += s->cs;
	self = (off >> cb) >> s->rb_bits;
	/* Its own refcount first: a crash in between leaks, no more. */
	if (self != rti) {
		ret = refcount_add(d, off, 1, 1);
		if (ret)
			return ret;
	}
	buf = calloc(1, s->cs);
	if (!buf)
		return -ENOMEM;
	if (self == rti)
		rc_set(s, buf, (off >> cb) & ((1ull << s->rb_bits) - 1), 1);
	/* The block is on disk before the table entry that points at it. */
	ret = disk_pwrite_sync(d->fd, buf, s->cs, off);
	free(buf);
	if (ret)
		return ret;
	note_file_end(s, off + s->cs);
	ret = write_be64(d, s->rt_offset + rti * 8, off, true);
	if (ret)
		return ret;
	s->rt[rti] = off;
	return 0;
}

static int refblock_get(struct disk *d, uint64_t rti, bool alloc,
			uint8_t **blk)
{
	struct qcow2 *s = Q(d);
	struct rb_slot *slot;
	int ret;

	*blk = NULL;
	if (rti >= s->rt_entries || !s->rt[rti]) {
		if (!alloc)
			return 0;
		ret = new_refblock(d, rti);
		if (ret)
			return ret;
	}
	slot = &s->rbc[rti % RB_SLOTS];
	if (slot->key != rti + 1) {
		if (!slot->blk) {
			slot->blk = malloc(s->cs);
			if (!slot->blk)
				return -ENOMEM;
		}
		slot->key = 0;
		ret = disk_pread(d->fd, slot->blk, s->cs, s->rt[rti]);
		if (ret)
			return ret;
		slot->key = rti + 1;
	}
	*blk = slot->blk;
	return 0;
}

/*
 * Raises n clusters from refcount 0 to 1 (delta 1), or lowers them by
 * one (delta -1). Anything else found there is corruption.
 */
static int refcount_add(struct disk *d, uint64_t off, uint64_t n, int delta)
{
	struct qcow2 *s = Q(d);
	unsigned int cb = s->cluster_bits, o = s->refcount_order;
	uint64_t per = 1ull << s->rb_bits;

	while (n) {
		uint64_t c = off >> cb, rti = c >> s->rb_bits;
		uint64_t bi = c & (per - 1), k = MIN(n, per - bi), lo, hi;
		uint8_t *blk;
		int ret;

		ret = refblock_get(d, rti, delta > 0, &blk);
		if (ret)
			return ret;
		if (!blk)
			return corrupt(d, "freeing cluster 0x%llx whose refcount is 0",
				       (unsigned long long)(c << cb));
		for (uint64_t i = bi; i < bi + k; i++) {
			uint64_t v = rc_get(s, blk, i);

			if (delta > 0 ? v != 0 : v == 0)
				return corrupt(d, "cluster 0x%llx has refcount %llu",
					       (unsigned long long)((c - bi + i) << cb),
					       (unsigned long long)v);
		}
		for (uint64_t i = bi; i < bi + k; i++)
			rc_set(s, blk, i, delta > 0 ? 1 : rc_get(s, blk, i) - 1);
		lo = (bi << o) >> 3;
		hi = (((bi + k) << o) + 7) >> 3;
		/* A raised count must be on disk before anything uses it. */
		if (delta > 0)
			ret = disk_pwrite_sync(d->fd, blk + lo, hi - lo, s->rt[rti] + lo);
		else
			ret = disk_pwrite(d->fd, blk + lo, hi - lo, s->rt[rti] + lo);
		if (ret) {
			s->rbc[rti % RB_SLOTS].key = 0;
			return ret;
		}
		off += k << cb;
		n -= k;
	}
	return 0;
}

/* Refcounts raised and durable for a run of clusters not yet used. */
static int reserve(struct disk *d)
{
	struct qcow2 *s = Q(d);
	uint64_t n = s->resv_chunk, start = s->free_end;
	int ret;

	if (start + (n << s->cluster_bits) > HOST_LIMIT)
		n = 1;
	if (start + (n << s->cluster_bits) > HOST_LIMIT)
		return -ENOSPC;
	s->free_end = start + (n << s->cluster_bits);
	ret = refcount_add(d, start, n, 1);
	if (ret)
		return ret;
	s->resv_start = start;
	/* Not free_end: new refcount blocks may lie past the run. */
	s->resv_end = start + (n << s->cluster_bits);
	if ((s->resv_chunk << 1) << s->cluster_bits <= RESERVE_MAX)
		s->resv_chunk <<= 1;
	return 0;
}

static int alloc_cluster(struct disk *d, uint64_t *off)
{
	struct qcow2 *s = Q(d);
	int ret;

	if (s->nspare) {
		*off = s->spare[--s->nspare];
		return 0;
	}
	if (s->resv_start == s->resv_end) {
		ret = reserve(d);
		if (ret)
			return ret;
	}
	*off = s->resv_start;
	s->resv_start += s->cs;
	return 0;
}

/* A cluster taken but not referenced after all. */
static void give_back(struct qcow2 *s, uint64_t off)
{
	if (s->nspare < MAX_SPARE)
		s->spare[s->nspare++] = off;
	/* else it stays a leak: refcount 1, harmless */
}

static int release_reserved(struct disk *d)
{
	struct qcow2 *s = Q(d);
	int ret = 0;

	if (s->resv_end > s->resv_start)
		ret = refcount_add(d, s->resv_start,
				   (s->resv_end - s->resv_start) >> s->cluster_bits,
				   -1);
	s->resv_start = s->resv_end;
	while (!ret && s->nspare)
		ret = refcount_add(d, s->spare[--s->nspare], 1, -1);
	return ret;
}

/* ---- mapping ---- */

/* The L2 table of L1 index l1i (NULL when unallocated). */
static int l2_get(struct disk *d, uint64_t l1i, bool nonblock, uint64_t **tab)
{
	struct qcow2 *s = Q(d);
	uint64_t off = s->l1[l1i] & ENTRY_OFFSET;
	struct l2_slot *slot = &s->l2c[l1i % s->l2_nslots];
	int ret;

	*tab = NULL;
	if (!off)
		return 0;
	if (slot->key == l1i + 1) {
		*tab = slot->tab;
		return 0;
	}
	if (nonblock)
		return -EWOULDBLOCK;
	if (!slot->tab) {
		slot->tab = malloc(s->cs);
		if (!slot->tab)
			return -ENOMEM;
	}
	slot->key = 0;
	ret = disk_pread(d->fd, slot->tab, s->cs, off);
	if (ret)
		return ret;
	slot->key = l1i + 1;
	*tab = slot->tab;
	return 0;
}

static int classify(struct disk *d, uint64_t entry, struct cmap *m,
		    bool report)
{
	struct qcow2 *s = Q(d);
	uint64_t off;

	m->entry = entry;
	if (entry & OFLAG_COMPRESSED) {
		uint64_t nsec = ((entry >> s->csize_shift) & s->csize_mask) + 1;

		off = entry & s->coffset_mask;
		if (off < s->cs || off >= s->file_end || off >= HOST_LIMIT)
			return report ? corrupt(d, "compressed cluster at 0x%llx is outside the file",
						(unsigned long long)off) : -EIO;
		m->type = C_COMPRESSED;
		m->host = off;
		m->clen = nsec * 512 - (off & 511);
		return 0;
	}
	if ((entry & L2E_RESERVED) || ((entry & OFLAG_ZERO) && s->version < 3))
		return report ? corrupt(d, "L2 entry 0x%016llx has reserved bits set",
					(unsigned long long)entry) : -EIO;
	off = entry & ENTRY_OFFSET;
	m->host = off;
	if (!off) {
		m->type = entry & OFLAG_ZERO ? C_ZERO : C_UNALLOC;
		return 0;
	}
	if ((off & (s->cs - 1)) || hits_metadata(s, off, s->cs) ||
	    (!(entry & OFLAG_ZERO) && off >= s->file_end))
		return report ? corrupt(d, "data cluster at 0x%llx is misaligned, outside the file or on metadata",
					(unsigned long long)off) : -EIO;
	m->type = entry & OFLAG_ZERO ? C_ZERO_ALLOC : C_DATA;
	return 0;
}

static int read_compressed(struct disk *d, const struct cmap *m)
{
	struct qcow2 *s = Q(d);
	int ret, zr;

	ret = disk_pread(d->fd, s->cbuf, m->clen, m->host);
	if (ret)
		return ret;
	if (!s->zs_ready) {
		memset(&s->zs, 0, sizeof(s->zs));
		/* QEMU writes raw deflate; any window size reads it. */
		if (inflateInit2(&s->zs, -15) != Z_OK)
			return -ENOMEM;
		s->zs_ready = true;
	} else {
		inflateReset(&s->zs);
	}
	s->zs.next_in = s->cbuf;
	s->zs.avail_in = (uInt)m->clen;
	s->zs.next_out = s->dbuf;
	s->zs.avail_out = (uInt)s->cs;
	zr = inflate(&s->zs, Z_FINISH);
	if (s->zs.avail_out ||
	    (zr != Z_STREAM_END && zr != Z_OK && zr != Z_BUF_ERROR))
		return corrupt(d, "compressed cluster at 0x%llx does not inflate to a cluster",
			       (unsigned long long)m->host);
	return 0;
}

static int free_compressed(struct disk *d, uint64_t entry)
{
	struct qcow2 *s = Q(d);
	uint64_t nsec = ((entry >> s->csize_shift) & s->csize_mask) + 1;
	uint64_t start = (entry & s->coffset_mask) & ~511ull;
	uint64_t first = start >> s->cluster_bits;
	uint64_t last = (start + nsec * 512 - 1) >> s->cluster_bits;

	return refcount_add(d, first << s->cluster_bits, last - first + 1, -1);
}

/* ---- the fast path ---- */

struct ext {
	bool data;
	uint64_t host;
	uint64_t len;
};

/*
 * Maps a read (holes and zero clusters included) or an overwrite of
 * allocated clusters; -EWOULDBLOCK for anything else, and with nonblock
 * for an L2 table not in the cache.
 */
static int map_fast(struct disk *d, bool write, uint64_t off, uint64_t len,
		    struct ext *ext, int max, bool nonblock)
{
	struct qcow2 *s = Q(d);
	int n = 0;

	while (len) {
		uint64_t gc = off >> s->cluster_bits, in = off & (s->cs - 1);
		uint64_t k = MIN(len, s->cs - in), *tab;
		struct cmap m;
		bool data;
		int ret;

		ret = l2_get(d, gc >> s->l2_bits, nonblock, &tab);
		if (ret)
			return ret;
		ret = classify(d, tab ? be64toh(tab[gc & ((1ull << s->l2_bits) - 1)]) : 0,
			       &m, false);
		if (ret || m.type == C_COMPRESSED || (write && m.type != C_DATA))
			return -EWOULDBLOCK;
		data = m.type == C_DATA;
		if (n && ext[n - 1].data == data &&
		    (!data || ext[n - 1].host + ext[n - 1].len == m.host + in)) {
			ext[n - 1].len += k;
		} else {
			if (n == max)
				return -EWOULDBLOCK;
			ext[n].data = data;
			ext[n].host = m.host + in;
			ext[n].len = k;
			n++;
		}
		off += k;
		len -= k;
	}
	return n;
}

/*
 * Reads and overwrites whose clusters are mapped go to libaio with the
 * metadata lock released: the submitter only try-locks (it never waits
 * behind the worker), the worker takes the lock and may load tables.
 * Reads of data clusters in the page cache are copied right here.
 */
static bool try_fast(struct disk *d, struct disk_req *r, bool worker)
{
	short op = r->op == DISK_READ ? IO_CMD_PREADV : IO_CMD_PWRITEV;
	struct disk_part *parts[FAST_EXTENTS];
	struct ext ext[FAST_EXTENTS];
	struct iovec slice[IOV_MAX];
	struct qcow2 *s = Q(d);
	struct iov_cur c;
	int n, np = 0, err = 0;

	if (r->iovcnt > IOV_MAX)
		return false;
	if (worker)
		pthread_mutex_lock(&s->meta);
	else if (pthread_mutex_trylock(&s->meta))
		return false;
	n = map_fast(d, r->op == DISK_WRITE, r->offset, disk_req_bytes(r), ext,
		     FAST_EXTENTS, !worker);
	pthread_mutex_unlock(&s->meta);
	if (n < 0)
		return false;
	iov_cur_init(&c, r->iov, r->iovcnt);
	for (int i = 0; i < n; i++) {
		struct disk_part *p;
		int k;

		if (!ext[i].data) {
			iov_cur_zero(&c, ext[i].len);
			continue;
		}
		k = iov_cur_take(&c, ext[i].len, slice, IOV_MAX);
		/* Cached data clusters are copied from the image's
		 * mapping (disk/map.c). */
		if (k > 0 && r->op == DISK_READ && r->ram &&
		    disk_map_read(d, slice, (unsigned int)k, ext[i].host))
			continue;
		p = k < 0 ? NULL : disk_part_new(r, op, ext[i].host, slice, k);
		if (!p) {
			err = -ENOMEM;
			break;
		}
		parts[np++] = p;
	}
	disk_part_submit(d, parts, np);
	disk_req_put(d, r, err);
	return true;
}

static void qcow2_submit(struct disk *d, struct disk_req *r)
{
	switch (r->op) {
	case DISK_FLUSH:
		/* Metadata is written through: fdatasync covers it. */
		if (disk_submit_fdsync(d, r)) {
			disk_req_put(d, r, 0);
			return;
		}
		break;
	case DISK_READ:
	case DISK_WRITE:
		if (try_fast(d, r, false))
			return;
		break;
	default:
		break;
	}
	disk_queue_work(d, r);
}

/* ---- the worker ---- */

/* Contiguous host I/O gathered from several pieces. */
struct batch {
	struct disk *d;
	bool write;
	uint64_t host, len;
	int cnt;
	struct iovec *iov;
};

static int batch_flush(struct batch *b)
{
	int ret = 0;

	if (b->cnt) {
		ret = b->write ? disk_pwritev(b->d->fd, b->iov, b->cnt, b->host) :
				 disk_preadv(b->d->fd, b->iov, b->cnt, b->host);
		if (!ret && b->write)
			note_file_end(Q(b->d), b->host + b->len);
	}
	b->cnt = 0;
	b->len = 0;
	return ret;
}

/* A buffer whose walk needs more than IOV_MAX pieces goes alone. */
static int bounce(struct batch *b, uint64_t host, struct iov_cur *c,
		  uint64_t len)
{
	void *tmp = malloc(len);
	int ret;

	if (!tmp)
		return -ENOMEM;
	if (b->write) {
		iov_cur_to_buf(c, tmp, len);
		ret = disk_pwrite(b->d->fd, tmp, len, host);
		if (!ret)
			note_file_end(Q(b->d), host + len);
	} else {
		ret = disk_pread(b->d->fd, tmp, len, host);
		if (!ret)
			iov_cur_from_buf(c, tmp, len);
	}
	free(tmp);
	return ret;
}

/* Adds len bytes at host, from the walk c or else from buf. */
static int batch_add(struct batch *b, uint64_t host, struct iov_cur *c,
		     const void *buf, uint64_t len)
{
	int ret, k;

	if (!len)
		return 0;
	if (b->cnt && (b->host + b->len != host || b->cnt == IOV_MAX)) {
		ret = batch_flush(b);
		if (ret)
			return ret;
	}
	if (!b->cnt)
		b->host = host;
	if (buf) {
		b->iov[b->cnt].iov_base = (void *)buf;
		b->iov[b->cnt].iov_len = len;
		b->cnt++;
		b->len += len;
		return 0;
	}
	k = iov_cur_take(c, len, b->iov + b->cnt, IOV_MAX - b->cnt);
	if (k < 0 && b->cnt) {
		ret = batch_flush(b);
		if (ret)
			return ret;
		b->host = host;
		k = iov_cur_take(c, len, b->iov, IOV_MAX);
	}
	if (k < 0)
		return bounce(b, host, c, len);
	b->cnt += k;
	b->len += len;
	return 0;
}

static int do_read(struct disk *d, struct disk_req *r)
{
	struct qcow2 *s = Q(d);
	struct batch b = { .d = d, .write = false, .iov = s->biov };
	uint64_t off = r->offset, len = disk_req_bytes(r);
	struct iov_cur c;

	iov_cur_init(&c, r->iov, r->iovcnt);
	while (len) {
		uint64_t gc = off >> s->cluster_bits, in = off & (s->cs - 1);
		uint64_t k = MIN(len, s->cs - in), *tab;
		struct cmap m;
		int ret;

		ret = l2_get(d, gc >> s->l2_bits, false, &tab);
		if (!ret)
			ret = classify(d, tab ? be64toh(tab[gc & ((1ull << s->l2_bits) - 1)]) : 0,
				       &m, true);
		if (ret)
			return ret;
		switch (m.type) {
		case C_DATA:
			ret = batch_add(&b, m.host + in, &c, NULL, k);
			break;
		case C_COMPRESSED:
			ret = read_compressed(d, &m);
			if (!ret)
				iov_cur_from_buf(&c, s->dbuf + in, k);
			break;
		default:
			iov_cur_zero(&c, k);
		}
		if (ret)
			return ret;
		off += k;
		len -= k;
	}
	return batch_flush(&b);
}

/*
 * Writes [off, off + len) within the L2 table of l1i: data first
 * (allocating and filling whole clusters), then the L2 entries, then L1
 * if the table is new, then the old compressed clusters are freed.
 */
static int write_run(struct disk *d, uint64_t l1i, uint64_t off,
		     uint64_t len, struct iov_cur *c)
{
	struct qcow2 *s = Q(d);
	unsigned int cb = s->cluster_bits;
	uint64_t mask = (1ull << s->l2_bits) - 1;
	uint64_t g0 = (off >> cb) & mask, g1 = ((off + len - 1) >> cb) & mask;
	struct l2_slot *slot = &s->l2c[l1i % s->l2_nslots];
	struct batch b = { .d = d, .write = true, .iov = s->biov };
	uint64_t *tab, l2_off = 0, nalloc = 0, ncfree = 0;
	bool fresh = false, changed = false;
	int ret;

	ret = l2_get(d, l1i, false, &tab);
	if (ret)
		return ret;
	if (!tab) {
		ret = alloc_cluster(d, &l2_off);
		if (ret)
			return ret;
		if (!slot->tab) {
			slot->tab = malloc(s->cs);
			if (!slot->tab) {
				give_back(s, l2_off);
				return -ENOMEM;
			}
		}
		slot->key = 0;
		memset(slot->tab, 0, s->cs);
		tab = slot->tab;
		fresh = true;
	}
	memcpy(s->undo, tab + g0, (g1 - g0 + 1) * 8);
	while (len) {
		uint64_t in = off & (s->cs - 1), k = MIN(len, s->cs - in);
		uint64_t gi = (off >> cb) & mask, h;
		struct cmap m;

		ret = classify(d, be64toh(tab[gi]), &m, true);
		if (ret)
			goto fail;
		switch (m.type) {
		case C_DATA:
			ret = batch_add(&b, m.host + in, c, NULL, k);
			break;
		case C_COMPRESSED:
			/* dbuf may still be in the batch: write it out first. */
			ret = batch_flush(&b);
			if (!ret)
				ret = read_compressed(d, &m);
			if (!ret)
				ret = alloc_cluster(d, &h);
			if (ret)
				break;
			s->allocs[nalloc++] = h;
			iov_cur_to_buf(c, s->dbuf + in, k);
			ret = batch_add(&b, h, NULL, s->dbuf, s->cs);
			if (!ret)
				ret = batch_flush(&b);
			s->cfree[ncfree++] = m.entry;
			tab[gi] = htobe64(h | OFLAG_COPIED);
			changed = true;
			break;
		default:
			/* A new cluster, or a zero cluster's own: fill it all. */
			if (m.type == C_ZERO_ALLOC) {
				h = m.host;
			} else {
				ret = alloc_cluster(d, &h);
				if (ret)
					break;
				s->allocs[nalloc++] = h;
			}
			ret = batch_add(&b, h, NULL, s->zeros, in);
			if (!ret)
				ret = batch_add(&b, h + in, c, NULL, k);
			if (!ret)
				ret = batch_add(&b, h + in + k, NULL, s->zeros,
						s->cs - in - k);
			tab[gi] = htobe64(h | OFLAG_COPIED);
			changed = true;
		}
		if (ret)
			goto fail;
		off += k;
		len -= k;
	}
	ret = batch_flush(&b);
	if (ret)
		goto fail;
	if (!changed)
		return 0;
	if (fresh) {
		ret = disk_pwrite(d->fd, tab, s->cs, l2_off);
		if (ret)
			goto fail;
		note_file_end(s, l2_off + s->cs);
		slot->key = l1i + 1;
		ret = write_be64(d, s->l1_offset + l1i * 8, l2_off | OFLAG_COPIED,
				 false);
		if (ret) {
			/* The table is written but unreachable: a leak. */
			slot->key = 0;
			return ret;
		}
		s->l1[l1i] = l2_off | OFLAG_COPIED;
	} else {
		ret = disk_pwrite(d->fd, tab + g0, (g1 - g0 + 1) * 8,
				  (s->l1[l1i] & ENTRY_OFFSET) + g0 * 8);
		if (ret) {
			/* Unknown what reached the disk: read it again. */
			slot->key = 0;
			return ret;
		}
	}
	for (uint64_t i = 0; i < ncfree; i++)
		free_compressed(d, s->cfree[i]);
	return 0;
fail:
	/* Nothing refers to the new clusters: they can serve again. */
	memcpy(tab + g0, s->undo, (g1 - g0 + 1) * 8);
	while (nalloc)
		give_back(s, s->allocs[--nalloc]);
	if (fresh)
		give_back(s, l2_off);
	return ret;
}

static int do_write(struct disk *d, uint64_t off, uint64_t len,
		    struct iov_cur *c)
{
	struct qcow2 *s = Q(d);
	unsigned int span = s->cluster_bits + s->l2_bits;

	while (len) {
		uint64_t l1i = off >> span;
		uint64_t k = MIN(len, ((l1i + 1) << span) - off);
		int ret = write_run(d, l1i, off, k, c);

		if (ret)
			return ret;
		off += k;
		len -= k;
	}
	return 0;
}

/*
 * Discard and write-zeroes. Whole clusters: on version 3 a data cluster
 * becomes a zero cluster that keeps its host cluster (punched), so it is
 * reused, never freed; compressed clusters become holes. On version 2 the
 * host range is zeroed or punched. Parts of clusters are zeroed in place
 * (write-zeroes only; discard may leave them).
 */
static int do_zero(struct disk *d, uint64_t off, uint64_t len, bool wz)
{
	struct qcow2 *s = Q(d);
	unsigned int cb = s->cluster_bits, span = cb + s->l2_bits;
	uint64_t mask = (1ull << s->l2_bits) - 1, pend[2][2];
	unsigned int npend = 0;
	int ret;

	while (len) {
		uint64_t l1i = off >> span, run = MIN(len, ((l1i + 1) << span) - off);
		uint64_t g0 = (off >> cb) & mask, g1 = ((off + run - 1) >> cb) & mask;
		uint64_t *tab, npunch = 0, ncfree = 0;
		bool changed = false;

		ret = l2_get(d, l1i, false, &tab);
		if (ret)
			return ret;
		if (!tab) {
			off += run;
			len -= run;
			continue;
		}
		memcpy(s->undo, tab + g0, (g1 - g0 + 1) * 8);
		while (run) {
			uint64_t in = off & (s->cs - 1), k = MIN(run, s->cs - in);
			uint64_t gi = (off >> cb) & mask;
			bool full = !in && k == s->cs;
			struct cmap m;

			ret = classify(d, be64toh(tab[gi]), &m, true);
			if (ret)
				goto fail;
			if (m.type == C_DATA && full && s->version >= 3) {
				tab[gi] = htobe64(m.host | OFLAG_COPIED | OFLAG_ZERO);
				s->allocs[npunch++] = m.host;
				changed = true;
			} else if (m.type == C_DATA && (wz || full)) {
				if (wz)
					ret = disk_zero_range(d->fd, m.host + in, k, full);
				else
					fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
						  (off_t)m.host, (off_t)s->cs);
				if (ret)
					goto fail;
			} else if (m.type == C_COMPRESSED && full) {
				tab[gi] = 0;
				s->cfree[ncfree++] = m.entry;
				changed = true;
			} else if (m.type == C_COMPRESSED && wz && npend < 2) {
				pend[npend][0] = off;
				pend[npend][1] = k;
				npend++;
			}
			off += k;
			len -= k;
			run -= k;
		}
		if (changed) {
			ret = disk_pwrite(d->fd, tab + g0, (g1 - g0 + 1) * 8,
					  (s->l1[l1i] & ENTRY_OFFSET) + g0 * 8);
			if (ret) {
				s->l2c[l1i % s->l2_nslots].key = 0;
				return ret;
			}
		}
		/* The entries say zero now; the space can go. */
		for (uint64_t i = 0; i < npunch; i++)
			fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				  (off_t)s->allocs[i], (off_t)s->cs);
		for (uint64_t i = 0; i < ncfree; i++)
			free_compressed(d, s->cfree[i]);
		continue;
fail:
		memcpy(tab + g0, s->undo, (g1 - g0 + 1) * 8);
		return ret;
	}
	/* Part of a compressed cluster: rewrite it with zeros in. */
	for (unsigned int i = 0; i < npend; i++) {
		struct iovec z = { .iov_base = s->zeros, .iov_len = pend[i][1] };
		struct iov_cur c;

		iov_cur_init(&c, &z, 1);
		ret = do_write(d, pend[i][0], pend[i][1], &c);
		if (ret)
			return ret;
	}
	return 0;
}

static void qcow2_work(struct disk *d, struct disk_req *r)
{
	struct qcow2 *s = Q(d);
	struct iov_cur c;
	int ret;

	if (r->op == DISK_FLUSH) {
		disk_req_put(d, r, sync_file(d));
		return;
	}
	if ((r->op == DISK_READ || r->op == DISK_WRITE) && try_fast(d, r, true))
		return;
	pthread_mutex_lock(&s->meta);
	switch (r->op) {
	case DISK_READ:
		ret = do_read(d, r);
		break;
	case DISK_WRITE:
		iov_cur_init(&c, r->iov, r->iovcnt);
		ret = do_write(d, r->offset, disk_req_bytes(r), &c);
		break;
	case DISK_DISCARD:
	case DISK_WRITE_ZEROES:
		ret = do_zero(d, r->offset, r->len, r->op == DISK_WRITE_ZEROES);
		break;
	default:
		ret = -EINVAL;
	}
	pthread_mutex_unlock(&s->meta);
	disk_req_put(d, r, ret);
}

/* ---- open and close ---- */

static void qcow2_free(struct qcow2 *s)
{
	if (!s)
		return;
	if (s->l2c) {
		for (unsigned int i = 0; i < s->l2_nslots; i++)
			free(s->l2c[i].tab);
		free(s->l2c);
	}
	for (unsigned int i = 0; i < RB_SLOTS; i++)
		free(s->rbc[i].blk);
	if (s->zs_ready)
		inflateEnd(&s->zs);
	free(s->l1);
	free(s->rt);
	free(s->zeros);
	free(s->dbuf);
	free(s->cbuf);
	free(s->undo);
	free(s->allocs);
	free(s->cfree);
	free(s->biov);
	pthread_mutex_destroy(&s->meta);
	free(s);
}

static void qcow2_close(struct disk *d)
{
	struct qcow2 *s = Q(d);
	int ret;

	if (!s)
		return;
	if (!d->info.readonly) {
		pthread_mutex_lock(&s->meta);
		ret = release_reserved(d);
		if (!ret)
			ret = sync_file(d);
		if (ret)
			disk_err(d, "closing: %s (the image may have leaked clusters)",
				 strerror(-ret));
		pthread_mutex_unlock(&s->meta);
	}
	qcow2_free(s);
	d->priv = NULL;
}

/* The name an image gives a feature bit, for messages. */
static void feature_name(const uint8_t *tab, uint32_t len, unsigned int bit,
			 char *out, size_t outlen)
{
	for (uint32_t i = 0; tab && i + 48 <= len; i += 48) {
		size_t n = 0;

		if (tab[i] != 0 || tab[i + 1] != bit)
			continue;
		while (n < 46 && n + 1 < outlen && tab[i + 2 + n]) {
			char ch = (char)tab[i + 2 + n];

			out[n++] = ch >= 0x20 && ch < 0x7f ? ch : '?';
		}
		out[n] = '\0';
		if (n)
			return;
	}
	snprintf(out, outlen, "bit %u", bit);
}

static bool in_file(const struct disk *d, uint64_t off, uint64_t len)
{
	return off <= d->file_size && len <= d->file_size - off;
}

/* Checks the fixed header and its extensions. h is the first cluster. */
static int check_header(struct disk *d, const uint8_t *h, uint64_t hdr_len)
{
	struct qcow2 *s = Q(d);
	const uint8_t *names = NULL;
	uint32_t names_len = 0, crypt;
	uint64_t incompat = 0, pos = s->version >= 3 ? hdr_len : V2_HEADER;
	uint64_t boff = get64(h + H_BACKING_OFFSET);
	char name[64];

	/* Extensions first: their feature names make better messages. */
	while (pos + 8 <= s->cs) {
		uint32_t type = get32(h + pos), len = get32(h + pos + 4);

		if (type == EXT_END)
			break;
		if (len > s->cs - pos - 8) {
			disk_err(d, "corrupt image: header extension 0x%08x runs past the first cluster",
				 type);
			return -EINVAL;
		}
		if (type == EXT_FEATURE_NAMES) {
			names = h + pos + 8;
			names_len = len;
		}
		pos += 8 + ALIGN_UP((uint64_t)len, 8);
	}
	crypt = get32(h + H_CRYPT);
	if (crypt) {
		disk_err(d, "encrypted images (%s) are not supported",
			 crypt == 1 ? "AES" : crypt == 2 ? "LUKS" : "unknown method");
		return -EOPNOTSUPP;
	}
	if (s->version >= 3)
		incompat = get64(h + H_INCOMPAT);
	if (incompat & ~INCOMPAT_KNOWN) {
		unsigned int bit = (unsigned int)__builtin_ctzll(incompat & ~INCOMPAT_KNOWN);

		feature_name(names, names_len, bit, name, sizeof(name));
		disk_err(d, "unsupported incompatible feature '%s' (bit %u)", name, bit);
		return -EOPNOTSUPP;
	}
	if (incompat & INCOMPAT_DATA_FILE) {
		disk_err(d, "external data files are not supported");
		return -EOPNOTSUPP;
	}
	if (incompat & INCOMPAT_EXTL2) {
		disk_err(d, "extended L2 entries (subclusters) are not supported");
		return -EOPNOTSUPP;
	}
	if (hdr_len > H_COMPRESSION && h[H_COMPRESSION]) {
		if (!(incompat & INCOMPAT_COMPRESSION)) {
			disk_err(d, "corrupt image: compression type %u without its feature bit",
				 h[H_COMPRESSION]);
			return -EINVAL;
		}
		disk_err(d, "%s compression is not supported (only zlib)",
			 h[H_COMPRESSION] == 1 ? "zstd" : "unknown");
		return -EOPNOTSUPP;
	}
	if (incompat & INCOMPAT_COMPRESSION) {
		disk_err(d, "corrupt image: compression type bit set with zlib compression");
		return -EINVAL;
	}
	if (!d->info.readonly && (incompat & INCOMPAT_CORRUPT)) {
		disk_err(d, "the image is marked corrupt; repair it with 'qemu-img check -r all' or open it read-only (,ro)");
		return -EINVAL;
	}
	if (!d->info.readonly && (incompat & INCOMPAT_DIRTY)) {
		disk_err(d, "the image is dirty (lazy refcounts); repair it with 'qemu-img check -r all' or open it read-only (,ro)");
		return -EINVAL;
	}
	if (boff) {
		uint32_t blen = get32(h + H_BACKING_SIZE);

		if (blen && blen < 1024 && boff < s->cs && blen <= s->cs - boff) {
			char bname[1024];

			for (uint32_t i = 0; i < blen; i++) {
				char ch = (char)h[boff + i];

				bname[i] = ch >= 0x20 && ch < 0x7f ? ch : '?';
			}
			bname[blen] = '\0';
			disk_err(d, "backing files are not supported (backing file '%s'); flatten it with 'qemu-img convert'",
				 bname);
		} else {
			disk_err(d, "backing files are not supported");
		}
		return -EOPNOTSUPP;
	}
	return 0;
}

/* The L1 and refcount tables: where they are, what their entries say. */
static int load_tables(struct disk *d, const uint8_t *h)
{
	struct qcow2 *s = Q(d);
	uint64_t l1_size = get32(h + H_L1_SIZE), per_l1, size;
	uint64_t rt_limit;
	int ret;

	size = get64(h + H_SIZE) & ~511ull;
	if (!size) {
		disk_err(d, "the virtual disk is empty (size %llu)",
			 (unsigned long long)get64(h + H_SIZE));
		return -EINVAL;
	}
	/* An L2 table maps at most 2^39 bytes: no overflow here. */
	per_l1 = 1ull << (s->cluster_bits + s->l2_bits);
	s->l1_used = size / per_l1 + !!(size % per_l1);
	s->l1_offset = get64(h + H_L1_OFFSET);
	s->l1_bytes = l1_size * 8;
	if (l1_size * 8 > MAX_L1_BYTES) {
		disk_err(d, "corrupt image: L1 table of %llu entries is larger than 32 MiB",
			 (unsigned long long)l1_size);
		return -EINVAL;
	}
	if (l1_size < s->l1_used) {
		disk_err(d, "corrupt image: L1 table of %llu entries is too small for a %llu-byte disk",
			 (unsigned long long)l1_size, (unsigned long long)size);
		return -EINVAL;
	}
	if ((s->l1_offset & (s->cs - 1)) || s->l1_offset < s->cs ||
	    !in_file(d, s->l1_offset, s->l1_bytes)) {
		disk_err(d, "corrupt image: L1 table at 0x%llx (%llu entries) lies outside the file or is misaligned",
			 (unsigned long long)s->l1_offset, (unsigned long long)l1_size);
		return -EINVAL;
	}
	s->rt_offset = get64(h + H_RT_OFFSET);
	s->rt_clusters = get32(h + H_RT_CLUSTERS);
	if (!s->rt_clusters || s->rt_clusters << s->cluster_bits > MAX_RT_BYTES) {
		disk_err(d, "corrupt image: refcount table of %llu clusters (0 or more than 8 MiB)",
			 (unsigned long long)s->rt_clusters);
		return -EINVAL;
	}
	if ((s->rt_offset & (s->cs - 1)) || s->rt_offset < s->cs ||
	    !in_file(d, s->rt_offset, s->rt_clusters << s->cluster_bits)) {
		disk_err(d, "corrupt image: refcount table at 0x%llx lies outside the file or is misaligned",
			 (unsigned long long)s->rt_offset);
		return -EINVAL;
	}
	if (overlaps(s->rt_offset, s->rt_clusters << s->cluster_bits,
		     s->l1_offset, s->l1_bytes)) {
		disk_err(d, "corrupt image: the refcount table overlaps the L1 table");
		return -EINVAL;
	}

	s->l1 = malloc(s->l1_used * 8);
	s->rt_entries = (s->rt_clusters << s->cluster_bits) / 8;
	s->rt = malloc(s->rt_entries * 8);
	if (!s->l1 || !s->rt)
		return -ENOMEM;
	ret = disk_pread(d->fd, s->l1, s->l1_used * 8, s->l1_offset);
	if (!ret)
		ret = disk_pread(d->fd, s->rt, s->rt_entries * 8, s->rt_offset);
	if (ret) {
		disk_err(d, "cannot read the tables: %s", strerror(-ret));
		return ret;
	}
	for (uint64_t i = 0; i < s->l1_used; i++) {
		uint64_t e = be64toh(s->l1[i]), off = e & ENTRY_OFFSET;

		s->l1[i] = e;
		if (e & L1E_RESERVED) {
			disk_err(d, "corrupt image: L1 entry %llu has reserved bits set (0x%016llx)",
				 (unsigned long long)i, (unsigned long long)e);
			return -EINVAL;
		}
		if (off && ((off & (s->cs - 1)) || off >= d->file_size ||
			    hits_metadata(s, off, s->cs))) {
			disk_err(d, "corrupt image: L1 entry %llu points to 0x%llx, outside the file, misaligned or on metadata",
				 (unsigned long long)i, (unsigned long long)off);
			return -EINVAL;
		}
	}
	/* Refcount blocks past this would count clusters past 64 PiB. */
	rt_limit = MAX((HOST_LIMIT >> s->cluster_bits) >> s->rb_bits, 1);
	for (uint64_t i = 0; i < s->rt_entries; i++) {
		uint64_t off = be64toh(s->rt[i]);

		s->rt[i] = off;
		if (!off)
			continue;
		if ((off & RTE_RESERVED) || (off & (s->cs - 1)) || i >= rt_limit ||
		    off >= d->file_size || hits_metadata(s, off, s->cs)) {
			disk_err(d, "corrupt image: refcount table entry %llu (0x%llx) is misaligned, outside the file or on metadata",
				 (unsigned long long)i, (unsigned long long)off);
			return -EINVAL;
		}
	}
	d->info.size = size;
	return 0;
}

/* Where allocation starts: past the file and every counted cluster. */
static int find_free_end(struct disk *d)
{
	struct qcow2 *s = Q(d);
	uint64_t end = ALIGN_UP(d->file_size, s->cs), scanned = 0;
	uint8_t *blk;
	int ret;

	end = MAX(end, ALIGN_UP(s->l1_offset + s->l1_bytes, s->cs));
	end = MAX(end, s->rt_offset + (s->rt_clusters << s->cluster_bits));
	for (uint64_t i = s->rt_entries; i-- > 0;) {
		uint64_t per = 1ull << s->rb_bits, last = 0;
		bool found = false;

		if (!s->rt[i])
			continue;
		/* Distinct blocks fit in the file; repeats would only cost. */
		scanned += s->cs;
		if (scanned > d->file_size) {
			disk_err(d, "corrupt image: the refcount table lists more blocks than the file holds");
			return -EINVAL;
		}
		ret = refblock_get(d, i, false, &blk);
		if (ret) {
			disk_err(d, "cannot read a refcount block: %s", strerror(-ret));
			return ret;
		}
		for (uint64_t j = per; j-- > 0;) {
			if (rc_get(s, blk, j)) {
				last = j;
				found = true;
				break;
			}
		}
		if (found) {
			end = MAX(end, ((i << s->rb_bits) + last + 1) << s->cluster_bits);
			break;
		}
	}
	if (end > HOST_LIMIT) {
		disk_err(d, "corrupt image: clusters in use past 64 PiB");
		return -EINVAL;
	}
	s->free_end = end;
	return 0;
}

static int alloc_scratch(struct qcow2 *s)
{
	uint64_t n = s->cs / 8;

	s->zeros = calloc(1, s->cs);
	s->dbuf = malloc(s->cs);
	s->cbuf = malloc(2 * s->cs);
	s->undo = malloc(n * 8);
	s->allocs = malloc((n + 1) * 8);
	s->cfree = malloc(n * 8);
	s->biov = malloc(sizeof(struct iovec) * IOV_MAX);
	if (!s->zeros || !s->dbuf || !s->cbuf || !s->undo || !s->allocs ||
	    !s->cfree || !s->biov)
		return -ENOMEM;
	return 0;
}

static int qcow2_setup(struct disk *d)
{
	struct qcow2 *s = Q(d);
	uint8_t fixed[V3_HEADER + 8] = { 0 }, *h = NULL;
	uint64_t hdr_len = V2_HEADER;
	int ret;

	if (d->file_size < V2_HEADER) {
		disk_err(d, "corrupt image: truncated header (%llu bytes)",
			 (unsigned long long)d->file_size);
		return -EINVAL;
	}
	ret = disk_pread(d->fd, fixed, sizeof(fixed), 0);
	if (ret) {
		disk_err(d, "cannot read the header: %s", strerror(-ret));
		return ret;
	}
	if (get32(fixed) != QCOW2_MAGIC) {
		disk_err(d, "not a qcow2 image (bad magic)");
		return -EINVAL;
	}
	s->version = get32(fixed + H_VERSION);
	if (s->version == 1) {
		disk_err(d, "qcow version 1 images are not supported; convert with 'qemu-img convert -O qcow2'");
		return -EOPNOTSUPP;
	}
	if (s->version != 2 && s->version != 3) {
		disk_err(d, "unsupported qcow2 version %u", s->version);
		return -EOPNOTSUPP;
	}
	if (s->version == 3) {
		hdr_len = get32(fixed + H_HEADER_LENGTH);
		if (d->file_size < V3_HEADER) {
			disk_err(d, "corrupt image: truncated header (%llu bytes)",
				 (unsigned long long)d->file_size);
			return -EINVAL;
		}
		if (hdr_len < V3_HEADER || hdr_len % 8) {
			disk_err(d, "corrupt image: header length %llu",
				 (unsigned long long)hdr_len);
			return -EINVAL;
		}
	}
	s->cluster_bits = get32(fixed + H_CLUSTER_BITS);
	if (s->cluster_bits < 9 || s->cluster_bits > 21) {
		disk_err(d, "cluster_bits %u is out of range (9 to 21)",
			 s->cluster_bits);
		return -EINVAL;
	}
	s->cs = 1ull << s->cluster_bits;
	s->l2_bits = s->cluster_bits - 3;
	if (hdr_len > s->cs || hdr_len > d->file_size) {
		disk_err(d, "corrupt image: header length %llu is past the first cluster or the file",
			 (unsigned long long)hdr_len);
		return -EINVAL;
	}
	s->refcount_order = s->version >= 3 ? get32(fixed + H_REFCOUNT_ORDER) : 4;
	if (s->refcount_order > 6) {
		disk_err(d, "refcount order %u is not supported (0 to 6: 1 to 64 bits)",
			 s->refcount_order);
		return -EOPNOTSUPP;
	}
	s->rb_bits = s->cluster_bits + 3 - s->refcount_order;
	s->rc_max = s->refcount_order == 6 ? UINT64_MAX :
		    (1ull << (1u << s->refcount_order)) - 1;
	s->csize_shift = 62 - (s->cluster_bits - 8);
	s->csize_mask = (1ull << (s->cluster_bits - 8)) - 1;
	s->coffset_mask = (1ull << s->csize_shift) - 1;

	h = malloc(s->cs);
	if (!h)
		return -ENOMEM;
	ret = disk_pread(d->fd, h, s->cs, 0);
	if (ret) {
		disk_err(d, "cannot read the header: %s", strerror(-ret));
		goto out;
	}
	ret = check_header(d, h, hdr_len);
	if (ret)
		goto out;
	if (get32(h + H_NB_SNAPSHOTS)) {
		uint32_t n = get32(h + H_NB_SNAPSHOTS);
		uint64_t off = get64(h + H_SNAPSHOTS);

		if (n > MAX_SNAPSHOTS || (off & (s->cs - 1)) || off < s->cs ||
		    off >= d->file_size) {
			disk_err(d, "corrupt image: snapshot table (%u at 0x%llx)",
				 n, (unsigned long long)off);
			ret = -EINVAL;
			goto out;
		}
		if (!d->info.readonly) {
			disk_err(d, "the image has %u internal snapshots; writing such images is not supported (open it ,ro)",
				 n);
			ret = -EOPNOTSUPP;
			goto out;
		}
	}
	ret = load_tables(d, h);
	if (ret)
		goto out;
	s->l2_nslots = (unsigned int)MAX(1, MIN(s->l1_used, L2_CACHE_BYTES >> s->cluster_bits));
	s->l2c = calloc(s->l2_nslots, sizeof(*s->l2c));
	if (!s->l2c || alloc_scratch(s)) {
		ret = -ENOMEM;
		goto out;
	}
	s->file_end = d->file_size;
	s->resv_chunk = 1;
	if (!d->info.readonly) {
		ret = find_free_end(d);
		if (ret)
			goto out;
		/* Bits for features we don't keep up to date must go first. */
		if (s->version >= 3 && get64(h + H_AUTOCLEAR)) {
			uint8_t zero[8] = { 0 };

			ret = disk_pwrite_sync(d->fd, zero, sizeof(zero), H_AUTOCLEAR);
			if (ret) {
				disk_err(d, "cannot update the header: %s",
					 strerror(-ret));
				goto out;
			}
		}
	}
	d->info.discard = !d->info.readonly;
out:
	free(h);
	return ret;
}

static int qcow2_open(struct disk *d)
{
	struct qcow2 *s = calloc(1, sizeof(*s));
	int ret;

	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->meta, NULL);
	d->priv = s;
	ret = qcow2_setup(d);
	if (ret) {
		if (ret == -ENOMEM)
			disk_err(d, "%s", strerror(ENOMEM));
		qcow2_free(s);
		d->priv = NULL;
	}
	return ret;
}

const struct disk_ops disk_qcow2_ops = {
	.format = "qcow2",
	.open = qcow2_open,
	.submit = qcow2_submit,
	.work = qcow2_work,
	.close = qcow2_close,
};
