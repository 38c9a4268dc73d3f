// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-net (virtio 1.2, 5.1): -n [mode=user|tap][,tapif=NAME]
 * [,queues=N][,guest_mac=MAC][,hostfwd=tcp:HOSTPORT-:GUESTPORT]..., one
 * device per -n, "-n none" for none (docs/net.md). A receive and a
 * transmit queue per pair, each pair with its backend descriptor
 * (lkvm/net.h), all served by the device's I/O thread; with more than
 * one pair (a multi-queue tap) the control queue chooses how many the
 * driver uses.
 *
 * Receive: a frame is read from the backend into a bounce buffer, then
 * copied into the driver's buffers: one chain, or with
 * VIRTIO_NET_F_MRG_RXBUF as many chains as it needs (num_buffers in the
 * header). When the driver has given too few buffers the frame waits,
 * lkvm stops reading the backend (the tap's own queue holds or drops
 * what follows, as a full NIC ring does), and the next kick on the
 * receive queue resumes. A frame larger than the chain offered is
 * dropped and counted, and the chain stays the driver's.
 *
 * Transmit: the header is checked (offloads the driver did not
 * negotiate, oversize frames, runts are dropped and counted) and the
 * frame goes to the backend straight from guest memory with writev().
 *
 * Offloads: with a tap the device offers checksum and TSO in both
 * directions; the header travels to and from the tap unchanged
 * (TUNSETVNETHDRSZ 12), and TUNSETOFFLOAD follows what the driver took.
 * The user-mode backend needs whole frames: no offloads.
 *
 * A backend that fails (the tap deleted, the helper gone) is reported
 * once, the link goes down with a configuration change, and the device
 * drops what the driver sends; lkvm goes on.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/if_tun.h>

#include "lkvm/seccomp.h"
#include "lkvm/device.h"
#include "lkvm/machine.h"
#include "lkvm/net.h"
#include "lkvm/stats.h"
#include "lkvm/util.h"
#include "lkvm/virtio.h"

#define NET_F_CSUM 0
#define NET_F_GUEST_CSUM 1
#define NET_F_MAC 5
#define NET_F_GUEST_TSO4 7
#define NET_F_GUEST_TSO6 8
#define NET_F_GUEST_ECN 9
#define NET_F_GUEST_UFO 10
#define NET_F_HOST_TSO4 11
#define NET_F_HOST_TSO6 12
#define NET_F_HOST_ECN 13
#define NET_F_HOST_UFO 14
#define NET_F_MRG_RXBUF 15
#define NET_F_STATUS 16
#define NET_F_CTRL_VQ 17
#define NET_F_MQ 22

#define NET_S_LINK_UP 1

/* struct virtio_net_config: mac, status, max_virtqueue_pairs (no MTU). */
#define CFG_MAC 0
#define CFG_STATUS 6
#define CFG_MAX_PAIRS 8
#define CFG_SIZE 10

#define NET_QUEUE_SIZE 256

/* The control queue (5.1.6.5). */
#define CTRL_OK 0
#define CTRL_ERR 1
#define CTRL_MQ 4
#define CTRL_MQ_VQ_PAIRS_SET 0

#define ETH_HLEN 14
/* A frame without segmentation: 1500 bytes of payload and a VLAN tag. */
#define ETH_MAX 1518
/* With TSO: a 64 KiB IP packet behind the Ethernet header and a tag. */
#define GSO_MAX (65535 + ETH_HLEN + 4)
#define BOUNCE (NET_HDR_LEN + GSO_MAX)
/* Chains one merged frame may take: 1-byte buffers are not worth more. */
#define MAX_MERGE 64

struct net;

/* A receive and transmit queue pair and its backend descriptor. */
struct net_pair {
	struct net *n;
	unsigned int index;	/* queues 2 * index and 2 * index + 1 */
	int fd;
	bool paused;		/* not reading the backend: no rx buffers */
	bool pending;		/* bounce holds a frame not yet placed */
	size_t pending_len;	/* its bytes after the header */
	uint8_t hdr[NET_HDR_LEN];
	uint8_t *bounce;	/* BOUNCE bytes */
};

struct net {
	struct virtio_dev *d;
	struct net_opts o;
	struct net_backend be;
	unsigned int npairs;	/* the backend's queues */
	unsigned int active;	/* pairs the driver uses (VQ_PAIRS_SET) */
	struct net_pair pair[NET_MAX_QUEUES];
	struct net_pair *tx_pair;	/* the pair send_frame() serves */
	bool failed;		/* backend gone: link down */
	bool offloads_valid;	/* the tap has what the driver took */
	struct dev_counters rx, tx;	/* errors: frames dropped */
	char rx_name[40], tx_name[40];
	struct iovec iov[VIRTQ_MAX_SEGS];
	struct iovec out[VIRTQ_MAX_SEGS];
	struct iovec hdr_iov[NET_HDR_LEN];
};

static const struct device_ops net_ops;

/* ---- options ------------------------------------------------------------ */

static int parse_mac(const char *s, size_t len, uint8_t mac[6])
{
	unsigned int v[6];
	char buf[18], end;

	if (len != 17)
		return -1;
	memcpy(buf, s, 17);
	buf[17] = 0;
	if (sscanf(buf, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2],
		   &v[3], &v[4], &v[5], &end) != 6)
		return -1;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	/* A multicast address cannot be a station's. */
	return mac[0] & 1 ? -1 : 0;
}

static bool parse_port(const char **s, unsigned int *port)
{
	char *end;
	unsigned long v = strtoul(*s, &end, 10);

	if (end == *s || v == 0 || v > 65535)
		return false;
	*port = (unsigned int)v;
	*s = end;
	return true;
}

/* "tcp:HOSTPORT-:GUESTPORT" (or udp:). */
static bool valid_hostfwd(const char *v)
{
	unsigned int hp, gp;

	if (strncmp(v, "tcp:", 4) && strncmp(v, "udp:", 4))
		return false;
	v += 4;
	if (!parse_port(&v, &hp) || strncmp(v, "-:", 2))
		return false;
	v += 2;
	return parse_port(&v, &gp) && !*v;
}

int net_parse(const char *arg, unsigned int instance, struct net_opts *o)
{
	const char *s = arg;
	bool tapif = false;

	memset(o, 0, sizeof(*o));
	o->mode = NET_USER;
	memcpy(o->mac, (uint8_t[6]){ 0x02, 0x4c, 0x4b, 0x56, 0x4d, 0 }, 6);
	o->mac[5] = (uint8_t)instance;
	if (!strcmp(arg, "none") || !strcmp(arg, "mode=none"))
		return 1;
	while (*s) {
		const char *comma = strchr(s, ','), *eq;
		size_t len = comma ? (size_t)(comma - s) : strlen(s);
		size_t klen, vlen;
		const char *v;

		eq = memchr(s, '=', len);
		if (!eq || (comma && !comma[1]))
			goto bad;
		klen = (size_t)(eq - s);
		v = eq + 1;
		vlen = len - klen - 1;
#define KEY(k) (klen == sizeof(k) - 1 && !strncmp(s, k, klen))
		if (KEY("mode") && vlen == 3 && !strncmp(v, "tap", 3)) {
			o->mode = NET_TAP;
		} else if (KEY("mode") && vlen == 4 && !strncmp(v, "user", 4)) {
			o->mode = NET_USER;
		} else if (KEY("tapif") && vlen && vlen < sizeof(o->tapname) &&
			   !memchr(v, '/', vlen)) {
			memcpy(o->tapname, v, vlen);
			o->tapname[vlen] = 0;
			o->tapif = o->tapname;
			tapif = true;
		} else if (KEY("guest_mac") && !parse_mac(v, vlen, o->mac)) {
			;
		} else if (KEY("queues") && vlen == 1 && *v >= '1' &&
			   *v <= '0' + NET_MAX_QUEUES) {
			o->queues = (unsigned int)(*v - '0');
		} else if (KEY("hostfwd") && o->nhostfwd < NET_MAX_HOSTFWD &&
			   vlen < sizeof(o->hostfwd[0])) {
			char *h = o->hostfwd[o->nhostfwd++];

			memcpy(h, v, vlen);
			h[vlen] = 0;
			if (!valid_hostfwd(h)) {
				pr_err("network '%s': hostfwd '%s': expected "
				       "tcp:HOSTPORT-:GUESTPORT", arg, h);
				return -1;
			}
		} else {
			goto bad;
		}
#undef KEY
		s += len + (comma ? 1 : 0);
	}
	if (tapif && o->mode != NET_TAP) {
		pr_err("network '%s': tapif needs mode=tap", arg);
		return -1;
	}
	if (o->queues > 1 && o->mode != NET_TAP) {
		pr_err("network '%s': queues needs mode=tap", arg);
		return -1;
	}
	if (o->nhostfwd && o->mode != NET_USER) {
		pr_err("network '%s': hostfwd needs mode=user", arg);
		return -1;
	}
	return 0;
bad:
	pr_err("network '%s': bad option near '%s' (mode=user|tap|none, "
	       "tapif=NAME, queues=1-8, guest_mac=XX:XX:XX:XX:XX:XX, "
	       "hostfwd=tcp:HOSTPORT-:GUESTPORT)", arg, s);
	return -1;
}

/* ---- the backend -------------------------------------------------------- */

static bool running(struct virtio_dev *d, struct virtq *rxq)
{
	return (d->legacy || (virtio_read_status(d) & VIRTIO_STATUS_DRIVER_OK)) &&
	       virtq_ready(rxq);
}

/* Where the control queue is: after the pairs with MQ, else queue 2. */
static unsigned int ctrl_index(struct net *n)
{
	return virtio_has_feature(n->d, NET_F_MQ) ? 2 * n->npairs : 2;
}

static void backend_failed(struct net *n, int err)
{
	if (n->failed)
		return;
	n->failed = true;
	pr_err("%s: %s: %s; link down", n->d->name, n->be.desc,
	       err ? strerror(err) : "closed");
	for (unsigned int i = 0; i < n->npairs; i++)
		virtio_dev_watch_set(n->d, n->pair[i].fd, false);
	put_le16(n->d->config + CFG_STATUS, 0);
	virtio_config_changed(n->d);
}

static void set_paused(struct net_pair *p, bool paused)
{
	if (p->paused == paused || p->n->failed)
		return;
	p->paused = paused;
	virtio_dev_watch_set(p->n->d, p->fd, !paused);
}

/*
 * The driver uses k pairs: the tap steers flows only to the queues of
 * those (TUNSETQUEUE detaches the others), and the others are not read.
 */
static int set_active(struct net *n, unsigned int k)
{
	for (unsigned int i = 0; i < n->npairs && !n->failed; i++)
		if (net_tap_attach(&n->be, i, i < k) < 0)
			return -1;
	n->active = k;
	return 0;
}

/* The tap delivers only the offloaded frames the driver accepts. */
static void sync_offloads(struct net *n)
{
	struct virtio_dev *d = n->d;
	unsigned int f = 0;

	if (n->offloads_valid || !n->be.vnet_hdr || n->failed)
		return;
	if (virtio_has_feature(d, NET_F_GUEST_CSUM)) {
		f |= NET_OFF_CSUM;
		if (virtio_has_feature(d, NET_F_GUEST_TSO4))
			f |= NET_OFF_TSO4;
		if (virtio_has_feature(d, NET_F_GUEST_TSO6))
			f |= NET_OFF_TSO6;
	}
	if (net_tap_offload(&n->be, f) < 0)
		pr_warn("%s: TUNSETOFFLOAD 0x%x refused", d->name, f);
	n->offloads_valid = true;
}

static unsigned int hdr_len(struct virtio_dev *d)
{
	return virtio_has_feature(d, VIRTIO_F_VERSION_1) ||
			       virtio_has_feature(d, NET_F_MRG_RXBUF) ?
		       NET_HDR_LEN : 10;
}

/* ---- receive ------------------------------------------------------------ */

/*
 * Reads one frame: its header into p->hdr, its bytes after the first
 * NET_HDR_LEN of the bounce buffer. 1, 0 (none), -1 (failed).
 */
static int read_frame(struct net_pair *p)
{
	struct net *n = p->n;
	struct iovec iov[2] = {
		{ p->hdr, NET_HDR_LEN },
		{ p->bounce + NET_HDR_LEN, BOUNCE - NET_HDR_LEN },
	};
	unsigned int skip = n->be.vnet_hdr ? 0 : 1;
	ssize_t r;

	do
		r = readv(p->fd, iov + skip, 2 - (int)skip);
	while (r < 0 && errno == EINTR);
	if (r < 0 && errno == EAGAIN)
		return 0;
	if (r <= 0) {
		backend_failed(n, r < 0 ? errno : 0);
		return -1;
	}
	if (!n->be.vnet_hdr) {
		memset(p->hdr, 0, NET_HDR_LEN);
	} else if ((size_t)r < NET_HDR_LEN) {
		dev_count(&n->rx, 0, true);
		return 1;	/* no frame: dropped */
	} else {
		r -= NET_HDR_LEN;
	}
	p->pending_len = (size_t)r;
	p->pending = true;
	return 1;
}

/*
 * Places the pending frame: 1 placed, 0 not enough buffers (nothing
 * taken), -1 dropped (too large for the chain, or the queue broke).
 */
static int place_frame(struct net_pair *p, struct virtq *vq)
{
	struct net *n = p->n;
	struct virtio_dev *d = n->d;
	bool merge = virtio_has_feature(d, NET_F_MRG_RXBUF);
	unsigned int hl = hdr_len(d), nhdr = 0, used = 0;
	uint16_t heads[MAX_MERGE];
	uint32_t lens[MAX_MERGE];
	size_t total = hl + p->pending_len, done = 0;
	/* The header just before the frame; the 10-byte one is the 12-byte
	 * one without num_buffers. */
	uint8_t *hdr = p->bounce + NET_HDR_LEN - hl;
	int r;

	if (!virtio_has_feature(d, NET_F_GUEST_CSUM))
		p->hdr[0] = 0;	/* flags the driver cannot read */
	put_le16(p->hdr + 10, 0);
	memcpy(hdr, p->hdr, hl);
	while (done < total) {
		struct virtq_chain c = { .iov = n->iov, .cap = VIRTQ_MAX_SEGS };
		size_t put;

		if (used == MAX_MERGE || (used && !merge))
			goto drop;
		r = virtio_pop(d, vq, &c);
		if (r <= 0) {
			vq->last_avail = (uint16_t)(vq->last_avail - used);
			return r < 0 ? -1 : 0;
		}
		if (!merge && c.in_len < total) {
			vq->last_avail--;
			goto drop;
		}
		put = iov_from_buf(c.iov + c.nout, c.nin, 0, hdr + done,
				   total - done);
		if (!used)
			nhdr = iov_slice(c.iov + c.nout, c.nin, 0,
					 MIN((size_t)hl, put), n->hdr_iov,
					 NET_HDR_LEN);
		heads[used] = c.head;
		lens[used++] = (uint32_t)put;
		done += put;
	}
	if (merge) {
		uint8_t nb[2];

		put_le16(nb, (uint16_t)used);
		iov_from_buf(n->hdr_iov, nhdr, 10, nb, 2);
	}
	for (unsigned int i = 0; i < used; i++)
		virtq_push(vq, heads[i], lens[i]);
	dev_count(&n->rx, p->pending_len, false);
	return 1;
drop:
	/* The chains stay the driver's. */
	if (used)
		vq->last_avail = (uint16_t)(vq->last_avail - used);
	dev_count(&n->rx, 0, true);
	return -1;
}

static void receive(struct net_pair *p)
{
	struct net *n = p->n;
	struct virtio_dev *d = n->d;
	struct virtq *vq = &d->vq[2 * p->index];
	bool pushed = false;

	if (n->failed)
		return;
	if (!running(d, vq) || p->index >= n->active) {
		set_paused(p, true);
		return;
	}
	sync_offloads(n);
	/* The driver need not notify while the device has buffers. */
	virtq_kicks_off(vq);
	for (;;) {
		int r;

		if (!p->pending) {
			r = read_frame(p);
			if (r <= 0)
				break;
			if (!p->pending)
				continue;
		}
		r = place_frame(p, vq);
		if (!r) {
			/* Out of buffers: wait for a kick, unless some came. */
			if (virtq_kicks_on(vq))
				continue;
			set_paused(p, true);
			break;
		}
		p->pending = false;
		if (r > 0)
			pushed = true;
		if (vq->error)
			break;
	}
	if (pushed)
		virtio_queue_done(d, vq);
}

static void on_backend(struct virtio_dev *d, int fd, void *opaque)
{
	(void)d;
	(void)fd;
	receive(opaque);
}

/* ---- transmit ----------------------------------------------------------- */

/* May the frame described by hdr go out? */
static bool tx_allowed(struct net *n, const uint8_t *hdr, size_t flen)
{
	struct virtio_dev *d = n->d;
	uint8_t gso = hdr[1];

	if (flen < ETH_HLEN)
		return false;
	if ((hdr[0] & NET_HDR_F_NEEDS_CSUM) &&
	    (!n->be.vnet_hdr || !virtio_has_feature(d, NET_F_CSUM)))
		return false;
	switch (gso) {
	case NET_HDR_GSO_NONE:
		return flen <= ETH_MAX;
	case NET_HDR_GSO_TCPV4:
		return virtio_has_feature(d, NET_F_HOST_TSO4) && flen <= GSO_MAX;
	case NET_HDR_GSO_TCPV6:
		return virtio_has_feature(d, NET_F_HOST_TSO6) && flen <= GSO_MAX;
	default:
		return false;
	}
}

static uint32_t send_frame(struct virtio_dev *d, struct virtq_chain *c)
{
	struct net *n = d->priv;
	unsigned int hl = hdr_len(d), k = 0, cnt;
	uint8_t hdr[NET_HDR_LEN] = { 0 };
	size_t flen;
	ssize_t r;

	if (c->out_len < hl || n->failed)
		goto drop;
	iov_to_buf(c->iov, c->nout, 0, hdr, hl);
	put_le16(hdr + 10, 0);
	flen = c->out_len - hl;
	if (!tx_allowed(n, hdr, flen))
		goto drop;
	if (n->be.vnet_hdr)
		n->out[k++] = (struct iovec){ hdr, NET_HDR_LEN };
	cnt = iov_slice(c->iov, c->nout, hl, flen, n->out + k,
			VIRTQ_MAX_SEGS - k);
	do
		r = writev(n->tx_pair->fd, n->out, (int)(k + cnt));
	while (r < 0 && errno == EINTR);
	if (r >= 0) {
		dev_count(&n->tx, flen, false);
		return 0;
	}
	/* A full socket or an interface that is down loses the frame; a
	 * vanished one ends the backend. */
	if (errno != EAGAIN && errno != EIO && errno != ENOBUFS &&
	    errno != EINVAL && errno != EMSGSIZE)
		backend_failed(n, errno);
drop:
	dev_count(&n->tx, 0, true);
	return 0;
}

static void transmit(struct net_pair *p, struct virtq *vq)
{
	struct net *n = p->n;
	struct virtq_chain c = { .iov = n->iov, .cap = VIRTQ_MAX_SEGS };

	sync_offloads(n);
	/* A pair the driver does not use sends through the first. */
	n->tx_pair = p->index < n->active ? p : &n->pair[0];
	virtio_serve(n->d, vq, &c, send_frame);
}

/* One control command; returns the ack byte's length (1) or 0. */
static uint32_t control(struct virtio_dev *d, struct virtq_chain *c)
{
	struct net *n = d->priv;
	uint8_t cmd[4] = { 0 }, ack = CTRL_ERR;

	if (c->out_len < 2 || c->in_len < 1) {
		virtio_dev_error(d, &d->vq[ctrl_index(n)], VIRTQ_E_FRAMING);
		return 0;
	}
	iov_to_buf(c->iov, c->nout, 0, cmd, sizeof(cmd));
	if (cmd[0] == CTRL_MQ && cmd[1] == CTRL_MQ_VQ_PAIRS_SET &&
	    c->out_len == 4 && virtio_has_feature(d, NET_F_MQ)) {
		uint16_t k = get_le16(cmd + 2);

		if (k >= 1 && k <= n->npairs && !set_active(n, k)) {
			ack = CTRL_OK;
			/* Pairs newly in use may have frames and buffers. */
			for (unsigned int i = 0; i < k; i++) {
				set_paused(&n->pair[i], false);
				receive(&n->pair[i]);
			}
		}
	}
	iov_from_buf(c->iov + c->nout, c->nin, c->in_len - 1, &ack, 1);
	return 1;
}

/* ---- the device --------------------------------------------------------- */

static void net_notify(struct virtio_dev *d, struct virtq *vq)
{
	struct net *n = d->priv;
	struct net_pair *p;

	if (virtio_has_feature(d, NET_F_CTRL_VQ) && vq->index == ctrl_index(n)) {
		struct virtq_chain c = { .iov = n->iov, .cap = VIRTQ_MAX_SEGS };

		virtio_serve(d, vq, &c, control);
		return;
	}
	if (vq->index >= 2 * n->npairs)
		return;		/* the control queue, not negotiated */
	p = &n->pair[vq->index / 2];
	if (vq->index & 1) {
		transmit(p, vq);
	} else {
		/* New receive buffers: the waiting frame, then the backend. */
		set_paused(p, false);
		receive(p);
	}
}

static bool net_features_ok(struct virtio_dev *d, uint64_t f)
{
	(void)d;
	/* 5.1.3.1: the offloads each need their checksum feature. */
#define HAS(b) (!!(f & VIRTIO_BIT(b)))
	if ((HAS(NET_F_GUEST_TSO4) || HAS(NET_F_GUEST_TSO6)) &&
	    !HAS(NET_F_GUEST_CSUM))
		return false;
	if ((HAS(NET_F_HOST_TSO4) || HAS(NET_F_HOST_TSO6)) && !HAS(NET_F_CSUM))
		return false;
	if (HAS(NET_F_MQ) && !HAS(NET_F_CTRL_VQ))
		return false;
#undef HAS
	return true;
}

static void net_reset(struct virtio_dev *d)
{
	struct net *n = d->priv;

	n->offloads_valid = false;
	/* One pair until the driver asks for more (5.1.6.5.5). */
	set_active(n, 1);
	for (unsigned int i = 0; i < n->npairs; i++) {
		n->pair[i].pending = false;
		/* Until the driver gives buffers again. */
		set_paused(&n->pair[i], true);
	}
}

static const struct virtio_dev_ops net_dev_ops = {
	.device_id = VIRTIO_ID_NET,
	.pci_class = 0x020000,		/* network, Ethernet */
	.queue_size = NET_QUEUE_SIZE,
	.config_size = CFG_SIZE,
	.features_ok = net_features_ok,
	.queue_notify = net_notify,
	.reset = net_reset,
};

struct net_cfg {
	unsigned int n;
	struct net *net[OPT_LIST_MAX];
	struct net_opts opts[OPT_LIST_MAX];
	bool none[OPT_LIST_MAX];
};

static void net_free(struct net *n)
{
	if (n->d) {
		const struct virtio_dev_ops *ops = n->d->ops;

		virtio_dev_remove(n->d);
		free((void *)ops);
	}
	net_backend_close(&n->be);
	for (unsigned int k = 0; k < NET_MAX_QUEUES; k++)
		free(n->pair[k].bounce);
	free(n);
}

static int add_net(struct machine *m, const struct net_opts *o,
		   unsigned int i, struct net **out)
{
	struct virtio_dev_ops *ops = malloc(sizeof(*ops));
	struct net *n = calloc(1, sizeof(*n));
	char name[32];
	int err;

	if (!n || !ops) {
		free(ops);
		free(n);
		return -ENOMEM;
	}
	n->o = *o;
	n->o.detached = m->cfg.detach;
	if (n->o.tapif)
		n->o.tapif = n->o.tapname;
	/* A backend that cannot open leaves the device with its link down. */
	err = o->mode == NET_TAP ? net_tap_open(&n->o, &n->be) :
				   net_user_open(&n->o, &n->be);
	n->failed = err != 0;
	n->npairs = n->failed ? 1 : n->be.nfds;
	n->active = 1;
	for (unsigned int k = 0; k < n->npairs; k++) {
		n->pair[k] = (struct net_pair){ .n = n, .index = k,
			.fd = n->failed ? -1 : n->be.fds[k] };
		n->pair[k].bounce = malloc(BOUNCE);
		if (!n->pair[k].bounce) {
			net_free(n);
			free(ops);
			return -ENOMEM;
		}
	}
	*ops = net_dev_ops;
	ops->nqueues = 2 * n->npairs;
	ops->features = VIRTIO_BIT(NET_F_MAC) | VIRTIO_BIT(NET_F_STATUS) |
			VIRTIO_BIT(NET_F_MRG_RXBUF);
	if (n->npairs > 1) {
		ops->nqueues++;
		ops->features |= VIRTIO_BIT(NET_F_MQ) | VIRTIO_BIT(NET_F_CTRL_VQ);
	}
	if (n->be.vnet_hdr)
		ops->features |= VIRTIO_BIT(NET_F_CSUM) |
				 VIRTIO_BIT(NET_F_GUEST_CSUM) |
				 VIRTIO_BIT(NET_F_HOST_TSO4) |
				 VIRTIO_BIT(NET_F_HOST_TSO6) |
				 VIRTIO_BIT(NET_F_GUEST_TSO4) |
				 VIRTIO_BIT(NET_F_GUEST_TSO6);
	snprintf(name, sizeof(name), "virtio-net%u", i);
	err = virtio_dev_add(m, ops, name, n, &n->d);
	if (err) {
		free(ops);
		net_free(n);
		return err;
	}
	memcpy(n->d->config + CFG_MAC, n->o.mac, 6);
	put_le16(n->d->config + CFG_STATUS, n->failed ? 0 : NET_S_LINK_UP);
	put_le16(n->d->config + CFG_MAX_PAIRS, (uint16_t)n->npairs);
	snprintf(n->rx_name, sizeof(n->rx_name), "%s-rx", name);
	snprintf(n->tx_name, sizeof(n->tx_name), "%s-tx", name);
	if (machine_add_counters(m, n->rx_name, &n->rx) ||
	    machine_add_counters(m, n->tx_name, &n->tx)) {
		net_free(n);
		return -ENOMEM;
	}
	for (unsigned int k = 0; k < n->npairs && !n->failed; k++) {
		err = virtio_dev_watch(n->d, n->pair[k].fd, on_backend,
				       &n->pair[k]);
		if (err) {
			pr_err("%s: cannot watch the backend: %s", name,
			       strerror(-err));
			net_free(n);
			return err;
		}
	}
	set_active(n, 1);
	*out = n;
	return 0;
}

/* Every -n is parsed before anything starts: a typo is one line. */
static int net_check(struct machine *m, void *c)
{
	struct net_cfg *cfg = c;
	unsigned int k = 0;

	for (unsigned int i = 0; i < m->cfg.nets.n; i++) {
		int r = net_parse(m->cfg.nets.v[i], k, &cfg->opts[i]);

		if (r < 0)
			return -EINVAL;
		cfg->none[i] = r == 1;
		k += r == 0;
	}
	return 0;
}

static int net_init(struct machine *m)
{
	struct net_cfg *cfg = machine_dev_cfg(m, &net_ops);
	unsigned int k = 0;
	int err;

	if (!cfg || !m->cfg.nets.n)
		return 0;
	for (unsigned int i = 0; i < m->cfg.nets.n; i++) {
		if (cfg->none[i])
			continue;
		err = add_net(m, &cfg->opts[i], k++, &cfg->net[cfg->n]);
		if (err)
			return err;
		cfg->n++;
	}
	return 0;
}

static void net_exit(struct machine *m)
{
	struct net_cfg *cfg = machine_dev_cfg(m, &net_ops);

	if (!cfg)
		return;
	while (cfg->n)
		net_free(cfg->net[--cfg->n]);
}

/* What the backends do once the guest runs (lkvm/seccomp.h): offloads and
 * queues follow the driver; the user-mode helper is stopped and reaped. */
static const struct seccomp_rule net_seccomp[] = {
	SECCOMP_IOCTL(TUNSETOFFLOAD, SECCOMP_ALL),
	SECCOMP_IOCTL(TUNSETQUEUE, SECCOMP_ALL),
	SECCOMP_SYSCALL(kill, SECCOMP_MAIN),
	SECCOMP_SYSCALL(wait4, SECCOMP_MAIN),
	SECCOMP_END,
};

static bool net_wanted(struct machine *m)
{
	return m->cfg.nets.n > 0;
}

static const struct device_ops net_ops = {
	.name = "virtio-net",
	.seccomp = net_seccomp,
	.seccomp_wanted = net_wanted,
	.stage = DEV_STAGE_DEVICE,
	.cfg_size = sizeof(struct net_cfg),
	.check = net_check,
	.init = net_init,
	.exit = net_exit,
};
DEVICE(net_ops);
