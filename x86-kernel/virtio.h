/* The virtio driver core (virtio.c): devices, transports, split rings. */
#ifndef VIRTIO_H
#define VIRTIO_H

#include "kernel.h"

#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLK 2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG 4
#define VIRTIO_ID_BALLOON 5
#define VIRTIO_ID_VSOCK 19

#define VIRTIO_S_ACKNOWLEDGE 0x01
#define VIRTIO_S_DRIVER 0x02
#define VIRTIO_S_DRIVER_OK 0x04
#define VIRTIO_S_FEATURES_OK 0x08
#define VIRTIO_S_NEEDS_RESET 0x40
#define VIRTIO_S_FAILED 0x80

#define VIRTIO_F_VERSION_1 (1ull << 32)

#define VRING_DESC_F_NEXT 1
#define VRING_DESC_F_WRITE 2
#define VRING_AVAIL_F_NO_INTERRUPT 1

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

struct vring_avail {
	uint16_t flags, idx;
	uint16_t ring[];
};

struct vring_used_elem {
	uint32_t id, len;
};

struct vring_used {
	uint16_t flags, idx;
	struct vring_used_elem ring[];
};

#define VQ_MAX 5	   /* queues per device this kernel sets up */
#define VQ_SIZE_MAX 1024   /* the largest ring (legacy sizes are fixed) */
#define VQ_SIZE_MODERN 256 /* what the kernel asks for when it may choose */

struct vq {
	bool ready;
	uint16_t index, size, max;
	uint64_t mem;	   /* ring memory, allocated once for `alloc` entries */
	uint16_t alloc;
	volatile struct vring_desc *desc;
	volatile struct vring_avail *avail;
	volatile struct vring_used *used;
	uint16_t avail_idx, last_used;
	uint16_t free_head, nfree;
	uint16_t notify_off;
	/* Driver-private, after the rings in the same allocation (the
	 * device is never told about them): by head, the chain's length (0
	 * when not in flight) and its device-writable bytes; and the free
	 * list and chains as the driver built them, so what the device (or
	 * a hostile check) writes into the descriptor table cannot lead
	 * the driver astray. */
	uint16_t *chain_len, *next;
	uint32_t *chain_wlen;
};

enum vtransport { VT_PCI, VT_PCI_LEGACY, VT_MMIO };

struct vdev {
	char name[16];
	int type, nth;
	enum vtransport t;
	char where[112];
	/* PCI */
	uint32_t bdf;
	uint64_t common, notify, isr, devcfg;
	uint32_t notify_mult;
	uint16_t io;
	uint8_t msix_cap; /* MSI-X capability offset while enabled, else 0 */
	/* MMIO */
	uint64_t base, phys;
	int version, irq;
	/* negotiated */
	uint64_t offered, features;
	struct vq vq[VQ_MAX];
	char error[96]; /* the last ring protocol violation seen */
};

/* One piece of a request: guest-physical address, length, direction. */
struct vbuf {
	uint64_t addr;
	uint32_t len;
	bool write; /* device-writable */
};

extern struct vdev vdevs[];
extern int nvdevs;

struct vdev *vdev_find(int type, int nth);
const char *vtransport_name(const struct vdev *d);
uint8_t vd_status(struct vdev *d);
void vd_set_status(struct vdev *d, uint8_t s);
bool vd_reset(struct vdev *d);
bool vd_begin(struct vdev *d, uint64_t want, char *err, size_t n);
bool vq_setup(struct vdev *d, int q, uint16_t size, char *err, size_t n);
void vd_driver_ok(struct vdev *d);
bool vd_start(struct vdev *d, uint64_t want, int nq, char *err, size_t n);
uint16_t vq_max(struct vdev *d, int q);
uint16_t vq_size_readback(struct vdev *d, int q);
uint16_t vd_num_queues(struct vdev *d);
uint64_t vd_cfg(struct vdev *d, uint32_t off, int width);
uint8_t vd_isr(struct vdev *d);
void vd_cfg_write32(struct vdev *d, uint32_t off, uint32_t v);
bool vd_param_u64(const char *name, uint64_t *out);
bool vd_modern(const struct vdev *d);
bool vd_msix_enable(struct vdev *d, unsigned entry, uint8_t vector, char *err,
		    size_t n);
void vd_msix_disable(struct vdev *d);
uint16_t vq_set_vector(struct vdev *d, int q, uint16_t entry);

int vq_add(struct vq *q, const struct vbuf *b, int n);
int vq_reserve(struct vq *q, int n, uint16_t *idx);
void vq_publish(struct vq *q, uint16_t head, int n, uint32_t wlen);
void vq_kick(struct vdev *d, struct vq *q);
int vq_get(struct vdev *d, struct vq *q, uint32_t *id, uint32_t *len);
int vq_wait(struct vdev *d, struct vq *q, uint32_t *id, uint32_t *len,
	    unsigned timeout_ticks);
uint16_t vq_pending(const struct vq *q);
bool expired(uint64_t t0, uint64_t c0, unsigned n);
bool virtio_timer_ok(char *msg, size_t n);

#endif
