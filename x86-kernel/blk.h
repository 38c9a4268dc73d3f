/* virtio-blk requests (blk.c), shared with the hostile-driver checks. */
#ifndef BLK_H
#define BLK_H

#include "virtio.h"

#define BLK_F_SIZE_MAX (1ull << 1)
#define BLK_F_SEG_MAX (1ull << 2)
#define BLK_F_RO (1ull << 5)
#define BLK_F_BLK_SIZE (1ull << 6)
#define BLK_F_FLUSH (1ull << 9)
#define BLK_F_MQ (1ull << 12)

#define BLK_T_IN 0
#define BLK_T_OUT 1
#define BLK_T_FLUSH 4
#define BLK_T_GET_ID 8

#define BLK_S_OK 0
#define BLK_S_IOERR 1
#define BLK_S_UNSUPP 2

#define BLK_MAX_SEGS 32

struct blk_hdr {
	uint32_t type, reserved;
	uint64_t sector;
};

struct blk {
	struct vdev *d;
	uint64_t capacity; /* 512-byte sectors */
	uint32_t size_max, seg_max, blk_size;
	uint32_t req_bytes, seg_bytes;
	bool ro, flush;
	int max_inflight;
	int qi;		  /* the queue requests go to */
	unsigned timeout; /* PIT ticks to wait for a completion */
};

struct breq {
	uint32_t type;
	uint64_t sector, addr;
	uint32_t bytes;
	uint8_t status; /* 0xff: the device did not write it */
	uint32_t len;
};

bool blk_open(struct blk *b, struct vdev *d, uint64_t extra, int nq, char *msg,
	      size_t n);
bool blk_run(struct blk *b, struct breq *r, int n, char *msg, size_t mn);
int blk_cmd(struct blk *b, uint32_t type, uint64_t sector, uint64_t addr,
	    uint32_t bytes, char *msg, size_t n);
uint64_t blk_scratch(void);

#endif
