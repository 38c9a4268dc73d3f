// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-console (virtio 1.2, 5.3) as the guest console: with
 * --console virtio, what the guest writes to port 0 (hvc0 in Linux) goes
 * to machine_console_write() and host input fills the receive queue.
 * One port, no multiport; VIRTIO_CONSOLE_F_EMERG_WRITE lets early code
 * print through the config space.
 *
 * Input follows the console back-pressure contract of lkvm/machine.h:
 * console_in() takes what fits in the buffers the driver gave, and when
 * it took less than offered, the next kick on the receive queue (the
 * driver added buffers) calls machine_console_resume().
 */
#include <errno.h>
#include <stdlib.h>

#include "lkvm/device.h"
#include "lkvm/machine.h"
#include "lkvm/util.h"
#include "lkvm/virtio.h"

#define CONSOLE_F_EMERG_WRITE 2
#define CONSOLE_QUEUE_SIZE 128

#define RXQ 0
#define TXQ 1

/* struct virtio_console_config */
#define CFG_COLS 0
#define CFG_ROWS 2
#define CFG_MAX_NR_PORTS 4
#define CFG_EMERG_WR 8
#define CFG_SIZE 12

struct console {
	struct virtio_dev *d;
	bool rx_wanted;		/* input waits for receive buffers */
	struct iovec tx_iov[VIRTQ_MAX_SEGS];
	struct iovec rx_iov[VIRTQ_MAX_SEGS];
};

static const struct device_ops console_ops;

static uint32_t transmit_one(struct virtio_dev *d, struct virtq_chain *c)
{
	for (unsigned int i = 0; i < c->nout; i++)
		machine_console_write(d->m, c->iov[i].iov_base,
				      c->iov[i].iov_len);
	return 0;
}

static void transmit(struct virtio_dev *d, struct virtq *vq)
{
	struct console *con = d->priv;
	struct virtq_chain c = { .iov = con->tx_iov, .cap = VIRTQ_MAX_SEGS };

	virtio_serve(d, vq, &c, transmit_one);
}

static void console_notify(struct virtio_dev *d, struct virtq *vq)
{
	struct console *con = d->priv;

	if (vq->index == TXQ) {
		transmit(d, vq);
	} else if (con->rx_wanted) {
		/* New receive buffers: the held-back input may come. */
		con->rx_wanted = false;
		machine_console_resume(d->m);
	}
}

/* Main thread: host input into the receive queue. */
static size_t console_in(struct machine *m, const char *buf, size_t len,
			 void *opaque)
{
	struct console *con = opaque;
	struct virtio_dev *d = con->d;
	struct virtq *vq = &d->vq[RXQ];
	struct virtq_chain c = { .iov = con->rx_iov, .cap = VIRTQ_MAX_SEGS };
	size_t taken = 0;

	(void)m;
	pthread_mutex_lock(&d->io_lock);
	while (taken < len) {
		size_t n;

		if (!(virtio_read_status(d) & VIRTIO_STATUS_DRIVER_OK) ||
		    virtio_pop(d, vq, &c) <= 0) {
			con->rx_wanted = true;
			break;
		}
		n = iov_from_buf(c.iov + c.nout, c.nin, 0, buf + taken,
				 len - taken);
		virtq_push(vq, c.head, (uint32_t)n);
		taken += n;
	}
	if (taken)
		virtio_queue_done(d, vq);
	pthread_mutex_unlock(&d->io_lock);
	return taken;
}

static void console_config_write(struct virtio_dev *d, unsigned int off,
				 const void *buf, unsigned int len)
{
	/* Only emerg_wr is writable: its low byte is a character. */
	if (off == CFG_EMERG_WR && len >= 1)
		machine_console_write(d->m, buf, 1);
}

static const struct virtio_dev_ops console_dev_ops = {
	.device_id = VIRTIO_ID_CONSOLE,
	.pci_class = 0x078000,		/* communication, other */
	.nqueues = 2,
	.queue_size = CONSOLE_QUEUE_SIZE,
	.features = VIRTIO_BIT(CONSOLE_F_EMERG_WRITE),
	.config_size = CFG_SIZE,
	.config_write = console_config_write,
	.queue_notify = console_notify,
};

struct console_cfg {
	struct console *con;
};

static int console_init(struct machine *m)
{
	struct console_cfg *cfg = machine_dev_cfg(m, &console_ops);
	struct console *con;
	int err;

	if (m->cfg.console_kind != CONSOLE_VIRTIO || !cfg)
		return 0;
	con = calloc(1, sizeof(*con));
	if (!con)
		return -ENOMEM;
	err = virtio_dev_add(m, &console_dev_ops, "virtio-console", con,
			     &con->d);
	if (err) {
		free(con);
		return err;
	}
	put_le16(con->d->config + CFG_COLS, 80);
	put_le16(con->d->config + CFG_ROWS, 25);
	put_le32(con->d->config + CFG_MAX_NR_PORTS, 1);
	cfg->con = con;
	machine_set_console_input(m, console_in, con);
	return 0;
}

static void console_exit(struct machine *m)
{
	struct console_cfg *cfg = machine_dev_cfg(m, &console_ops);

	if (!cfg || !cfg->con)
		return;
	machine_set_console_input(m, NULL, NULL);
	virtio_dev_remove(cfg->con->d);
	free(cfg->con);
	cfg->con = NULL;
}

static const struct device_ops console_ops = {
	.name = "virtio-console",
	.stage = DEV_STAGE_DEVICE,
	.cfg_size = sizeof(struct console_cfg),
	.init = console_init,
	.exit = console_exit,
};
DEVICE(console_ops);
