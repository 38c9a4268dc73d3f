/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Virtio devices (virtio 1.2 and the legacy interface) and their
 * transports.
 *
 * A device model (virtio/blk.c, console.c, rng.c) knows nothing of its
 * transport: it fills a struct virtio_dev_ops, calls virtio_dev_add(), and
 * serves its queues from its I/O thread through the walker in
 * lkvm/virtio_queue.h. The core (virtio/core.c) keeps the state every
 * transport shares: status and its state machine, feature negotiation,
 * the queues, the configuration space, the I/O thread. A transport
 * (virtio/pci.c, virtio/mmio.c) maps all of that onto registers and
 * delivers interrupts.
 *
 * Threads and locks:
 * - vCPU threads run the transports' register handlers, which take
 *   d->lock (registers, status, features, queue set-up);
 * - one I/O thread per device waits in epoll on the queues' kick
 *   eventfds (KVM signals them through ioeventfd, so a notification
 *   costs the vCPU no exit to lkvm) and on the device's own fds; it
 *   serves them with d->io_lock held;
 * - whoever changes what the I/O thread reads (reset, disabling a queue)
 *   holds d->lock and then d->io_lock, so the I/O thread is between
 *   batches. The I/O thread never takes d->lock.
 * Interrupts leave through irqfd (MSI-X vectors, virtio-mmio's line) or
 * the PCI INTx line.
 */
#ifndef LKVM_VIRTIO_H
#define LKVM_VIRTIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "lkvm/util.h"
#include "lkvm/virtio_queue.h"

struct machine;
struct virtio_dev;
struct virtio_watch;

/* Device status (2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE 0x01
#define VIRTIO_STATUS_DRIVER 0x02
#define VIRTIO_STATUS_DRIVER_OK 0x04
#define VIRTIO_STATUS_FEATURES_OK 0x08
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED 0x80

/* Reserved feature bits (6). */
#define VIRTIO_F_NOTIFY_ON_EMPTY 24	/* legacy */
#define VIRTIO_F_ANY_LAYOUT 27		/* legacy */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32

#define VIRTIO_BIT(b) (1ull << (b))

/* Device types (5). */
#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLK 2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG 4
#define VIRTIO_ID_9P 9
#define VIRTIO_ID_BALLOON 5
#define VIRTIO_ID_VSOCK 19

/* ISR bits, shared by PCI and MMIO (InterruptStatus). */
#define VIRTIO_ISR_QUEUE 0x1
#define VIRTIO_ISR_CONFIG 0x2

#define VIRTIO_DEFAULT_QUEUE_SIZE 256

/* What --virtio-transport chooses. */
enum virtio_transport_kind {
	VIRTIO_PCI,		/* transitional: modern + legacy I/O BAR */
	VIRTIO_PCI_MODERN,	/* virtio 1.x only */
	VIRTIO_PCI_LEGACY,	/* virtio 0.9.5 only */
	VIRTIO_MMIO,		/* virtio-mmio version 2 */
	VIRTIO_MMIO_LEGACY,	/* virtio-mmio version 1 */
};

struct virtio_dev_ops {
	uint32_t device_id;	/* VIRTIO_ID_* */
	uint32_t pci_class;	/* class code for the PCI transports */
	unsigned int nqueues;
	uint16_t queue_size;	/* maximum; 0: VIRTIO_DEFAULT_QUEUE_SIZE */
	uint64_t features;	/* device-specific bits offered */
	unsigned int config_size;	/* bytes of d->config */

	/*
	 * A driver write to the config space, inside config_size. The
	 * device stores what it accepts in d->config (d->lock held);
	 * without this hook the config space is read-only.
	 */
	void (*config_write)(struct virtio_dev *d, unsigned int off,
			     const void *buf, unsigned int len);
	/* FEATURES_OK: may refuse the driver's choice. */
	bool (*features_ok)(struct virtio_dev *d, uint64_t features);
	/*
	 * The queue may have new buffers (a kick, or DRIVER_OK). I/O
	 * thread, io_lock held. Pop with virtio_pop() and finish a batch
	 * with virtio_queue_done().
	 */
	void (*queue_notify)(struct virtio_dev *d, struct virtq *vq);
	/*
	 * Reset (io_lock held, the I/O thread idle): wait for requests in
	 * flight (the guest may reuse their memory as soon as the reset
	 * is seen) and forget them.
	 */
	void (*reset)(struct virtio_dev *d);
	/* Teardown after the I/O thread stopped. */
	void (*exit)(struct virtio_dev *d);
};

/* What the core asks of a transport. */
struct virtio_transport_ops {
	/* Used-buffer notification for vq (the ISR bit is already set). */
	void (*signal_queue)(struct virtio_dev *d, struct virtq *vq);
	/* Configuration-change notification (ISR bit set). */
	void (*signal_config)(struct virtio_dev *d);
	/* Deregisters everything (I/O thread stopped). */
	void (*exit)(struct virtio_dev *d);
};

struct virtio_queue_state {
	int kick_fd;		/* eventfd: ioeventfd or the MMIO handler */
	uint16_t msix_vector;	/* PCI: VIRTIO_MSI_NO_VECTOR or an entry */
	uint16_t size_set;	/* what the driver wrote (may not be legal) */
};

typedef void (*virtio_fd_fn)(struct virtio_dev *d, int fd, void *opaque);

struct virtio_dev {
	struct machine *m;
	const struct virtio_dev_ops *ops;
	void *priv;			/* the device model's */
	char name[32];			/* "virtio-blk0" for messages */
	unsigned int instance;		/* among devices of its type */

	/* Registers; d->lock. */
	pthread_mutex_t lock;
	uint64_t host_features;
	uint64_t guest_features;
	uint8_t status;			/* atomic: the I/O thread ORs */
	uint8_t isr;			/* atomic */
	uint8_t config_gen;		/* atomic */
	bool legacy;			/* atomic: a legacy driver */
	uint8_t *config;		/* config_size bytes, little-endian */
	unsigned int nvq;
	struct virtq *vq;
	struct virtio_queue_state *qs;

	/* Transport. */
	enum virtio_transport_kind kind;
	const struct virtio_transport_ops *t;
	void *t_priv;

	/* I/O thread. */
	pthread_mutex_t io_lock;
	pthread_t thread;
	bool thread_up;
	int epoll_fd;
	int stop_fd;
	struct virtio_watch *watches;
	bool error_logged;
};

/* ---- for device models ------------------------------------------------ */

/*
 * Creates a device (queues, config space, I/O thread) and plugs it into
 * the transport --virtio-transport chose. name is the device's name for
 * messages; priv is the model's. On failure prints what failed and
 * returns -errno with nothing left behind.
 */
int virtio_dev_add(struct machine *m, const struct virtio_dev_ops *ops,
		   const char *name, void *priv, struct virtio_dev **out);
/* Stops the I/O thread, unplugs, frees (ops->exit first). */
void virtio_dev_remove(struct virtio_dev *d);

/* Watches fd in the I/O thread (fn runs with io_lock held). */
int virtio_dev_watch(struct virtio_dev *d, int fd, virtio_fd_fn fn,
		     void *opaque);

/*
 * Stops (on false) or resumes watching fd, a watched fd: a device stops
 * reading a backend while the driver gives no buffers. I/O thread.
 */
int virtio_dev_watch_set(struct virtio_dev *d, int fd, bool on);

/* Has the driver negotiated feature bit b? */
bool virtio_has_feature(const struct virtio_dev *d, unsigned int b);

/*
 * virtq_pop() for a device: a malformed chain or ring stops the queue and
 * reports the error (virtio_dev_error). Returns 1, 0 (empty or stopped).
 */
int virtio_pop(struct virtio_dev *d, struct virtq *vq, struct virtq_chain *c);
/* After a batch of virtq_push(): interrupts the driver if it wants one. */
void virtio_queue_done(struct virtio_dev *d, struct virtq *vq);
/*
 * Serves every chain the driver made available on vq: fn handles one
 * and returns the bytes it wrote into it; the chain goes back with that
 * length, and the driver gets one interrupt for the batch. Driver
 * notifications are off while the ring drains.
 */
typedef uint32_t (*virtio_chain_fn)(struct virtio_dev *d,
				    struct virtq_chain *c);
void virtio_serve(struct virtio_dev *d, struct virtq *vq,
		  struct virtq_chain *c, virtio_chain_fn fn);
/*
 * The driver broke the protocol on vq: the queue stops, and with the
 * modern interface the device sets DEVICE_NEEDS_RESET and sends a
 * configuration-change notification (2.1.2). The other queues go on.
 */
void virtio_dev_error(struct virtio_dev *d, struct virtq *vq, int err);
/*
 * The device changed d->config: bumps the configuration generation and
 * sends a configuration-change notification. Any thread, no lock held.
 */
void virtio_config_changed(struct virtio_dev *d);

/* ---- for transports ----------------------------------------------------
 * Register accessors: the caller holds d->lock (they may take io_lock).
 */

/* What the core keeps per machine (the "virtio" device's block). */
struct virtio_machine {
	const char *transport;		/* --virtio-transport */
	enum virtio_transport_kind kind;
	unsigned int nmmio;		/* virtio-mmio devices placed */
	struct virtio_dev *mmio[64];	/* for the device tree */
};

struct virtio_machine *virtio_machine(struct machine *m);
/* The transport chosen for the machine. */
enum virtio_transport_kind virtio_transport(struct machine *m);

uint32_t virtio_read_host_features(struct virtio_dev *d, unsigned int sel);
void virtio_write_guest_features(struct virtio_dev *d, unsigned int sel,
				 uint32_t v);
uint32_t virtio_read_guest_features(struct virtio_dev *d, unsigned int sel);
/* Status writes: reset on 0, FEATURES_OK checked, DRIVER_OK starts. */
void virtio_write_status(struct virtio_dev *d, uint8_t v);
uint8_t virtio_read_status(struct virtio_dev *d);
/* Reads and clears the ISR (the caller lowers its line). */
uint8_t virtio_isr_take(struct virtio_dev *d);
/* Queue set-up: size as written (checked at enable). */
void virtio_queue_set_size(struct virtio_dev *d, unsigned int q, uint16_t n);
uint16_t virtio_queue_max(struct virtio_dev *d);
/* Enables q with the addresses in d->vq[q]; disables it. */
void virtio_queue_enable(struct virtio_dev *d, unsigned int q);
void virtio_queue_disable(struct virtio_dev *d, unsigned int q);
/* A notification that did not come through ioeventfd. */
void virtio_kick(struct virtio_dev *d, unsigned int q);
/* Config space accesses (bounds-checked; reads outside return 0). */
void virtio_config_read(struct virtio_dev *d, unsigned int off, void *buf,
			unsigned int len);
void virtio_config_write(struct virtio_dev *d, unsigned int off,
			 const void *buf, unsigned int len);

/* Transport constructors (virtio/pci.c, virtio/mmio.c). */
int virtio_pci_plug(struct virtio_dev *d);
int virtio_mmio_plug(struct virtio_dev *d);

#endif
