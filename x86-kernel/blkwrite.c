/* The virtio-blk-writes check (not in `all`): the guest side of the host's
 * crash-consistency test (tests/crash.bats). On the first virtio-blk disk
 * it writes 4 KiB blocks 0, 1, 2... to the end of the disk, one at a time,
 * each followed by a FLUSH, and prints "# flushed N" once block N's write
 * and the flush after it have both completed with VIRTIO_BLK_S_OK. The
 * host may kill lkvm at any moment: every block reported flushed must be
 * on the disk then.
 *
 * Block N holds eight 512-byte sectors; sector s of it is the 8 bytes
 * "blkwrite", N and s (little-endian u64 each), then the u64 words
 * N * 0x0101010101010101 ^ (s << 56) ^ word index, to the sector's end.
 * Passes when every block of the disk was written and flushed. */
#include "virtio.h"
#include "blk.h"

#define BLOCK 4096u

static void fill(uint64_t addr, uint64_t n)
{
	volatile uint64_t *w = (volatile uint64_t *)(uintptr_t)addr;
	for (uint64_t s = 0; s < BLOCK / 512; s++) {
		volatile uint64_t *p = w + s * 64;
		p[0] = 0x65746972776b6c62ull; /* "blkwrite" */
		p[1] = n;
		p[2] = s;
		for (uint64_t i = 3; i < 64; i++)
			p[i] = (n * 0x0101010101010101ull) ^ (s << 56) ^ i;
	}
}

int check_virtio_blk_writes(char *msg, size_t n)
{
	struct vdev *d = vdev_find(VIRTIO_ID_BLK, 0);
	struct blk b;
	if (!d) {
		ksnprintf(msg, n, "no virtio-blk device");
		return SKIP;
	}
	if (!virtio_timer_ok(msg, n) || !blk_open(&b, d, 0, 1, msg, n))
		return FAIL;
	if (b.ro || !b.flush) {
		ksnprintf(msg, n, "%s: needs a writable disk with FLUSH", d->name);
		return FAIL;
	}
	uint64_t buf = blk_scratch(), blocks = b.capacity / (BLOCK / 512);
	for (uint64_t i = 0; i < blocks; i++) {
		fill(buf, i);
		int st = blk_cmd(&b, BLK_T_OUT, i * (BLOCK / 512), buf, BLOCK, msg, n);
		if (st != BLK_S_OK) {
			if (st >= 0)
				ksnprintf(msg, n, "write of block %lu: status %d", i, st);
			return FAIL;
		}
		st = blk_cmd(&b, BLK_T_FLUSH, 0, 0, 0, msg, n);
		if (st != BLK_S_OK) {
			if (st >= 0)
				ksnprintf(msg, n, "flush after block %lu: status %d", i, st);
			return FAIL;
		}
		kprintf("# flushed %lu\n", i);
	}
	vd_reset(d);
	ksnprintf(msg, n, "%s: %lu blocks of 4 KiB written and flushed", d->name, blocks);
	return PASS;
}
