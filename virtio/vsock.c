// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-vsock (virtio 1.2, 5.10) served in user space, --vsock CID,PATH:
 * no vhost module. The host side is a Unix socket, with the connection
 * protocol Firecracker uses:
 * - a host program connects to PATH and writes "CONNECT PORT\n"; lkvm
 *   asks the guest (OP_REQUEST from host CID 2, a fresh host port); when
 *   the guest accepts, lkvm writes "OK HOSTPORT\n" and the connection is a
 *   byte stream both ways; when it refuses (OP_RST), lkvm closes it;
 * - a guest that connects to CID 2 port P is connected to the Unix socket
 *   PATH_P (a host program listens there); none: the guest gets OP_RST.
 *
 * Flow control is the credit scheme of 5.10.6.3: every packet to the guest
 * carries lkvm's buf_alloc (VSOCK_BUF per connection) and fwd_cnt (bytes
 * of the guest's data lkvm has passed on); lkvm sends the guest no more
 * than the guest's buf_alloc - (tx_cnt - fwd_cnt) allows, and stops
 * reading the host socket meanwhile. Data the host socket cannot take at
 * once waits in a buffer of at most VSOCK_BUF bytes; a guest that sends
 * beyond its credit breaks the protocol and its connection is reset.
 *
 * The guest is hostile: a packet shorter than the header, with a length
 * that disagrees with its buffer, from another CID, of another type, with
 * an operation that does not exist or that its connection is not in, is
 * refused (reset when there is a connection to reset) and counted
 * (vsock_bad_name() reasons, `lkvm stat`: dev.virtio-vsock.errors). It
 * never reaches a host socket.
 *
 * Everything runs on the device's I/O thread: the queues, and a private
 * epoll set of the listening socket and the connections, which is
 * itself one of the I/O thread's watched descriptors.
 *
 * The event queue: a transport reset (every connection dropped, the
 * guest told through VIRTIO_VSOCK_EVENT_TRANSPORT_RESET) happens when the
 * device is reset by the driver with connections open; the event buffer
 * is written for the next driver. Nothing else in lkvm moves a guest
 * between hosts.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "lkvm/seccomp.h"
#include "lkvm/device.h"
#include "lkvm/machine.h"
#include "lkvm/stats.h"
#include "lkvm/util.h"
#include "lkvm/virtio.h"
#include "lkvm/vsock.h"

#define RXQ 0
#define TXQ 1
#define EVQ 2
#define QUEUE_SIZE 256

#define CFG_GUEST_CID 0
#define CFG_SIZE 8

#define VSOCK_BUF (256u * 1024)		/* per connection, each way */
#define VSOCK_MAX_PKT (64u * 1024)	/* payload of one packet */
#define MAX_CONNS 128
#define MAX_PENDING 1024
#define FIRST_HOST_PORT (1u << 30)
#define LINE_MAX_LEN 32			/* "CONNECT 4294967295\n" fits */
#define EVENT_TRANSPORT_RESET 0

enum conn_state {
	C_HANDSHAKE,	/* a host client: waiting for "CONNECT PORT\n" */
	C_CONNECTING,	/* OP_REQUEST sent to the guest */
	C_OPEN,
};

struct conn {
	struct conn *next;
	int fd;
	enum conn_state state;
	uint32_t gport, hport;
	char line[LINE_MAX_LEN];
	size_t linelen;
	/* The guest's receive window, and what lkvm sent into it. */
	uint32_t peer_buf_alloc, peer_fwd_cnt, tx_cnt;
	/* The guest's data lkvm passed on, and what it last told. */
	uint32_t fwd_cnt, fwd_told;
	uint8_t *wbuf;		/* VSOCK_BUF: guest data the host has not taken */
	size_t wlen;
	bool guest_no_send, guest_no_rcv;
	bool host_eof;		/* the host program will send no more */
	uint32_t events;	/* in the epoll set */
	bool in_set;		/* (with no events, out of it) */
	uint64_t id;		/* the epoll set's key for it */
};

/* A packet without payload for the guest, waiting for a receive buffer. */
struct ctrl {
	uint32_t gport, hport, flags, fwd_cnt;
	uint16_t op;
};

struct vsock {
	struct virtio_dev *d;
	struct machine *m;
	uint64_t cid;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int listen_fd, ep;
	struct conn *conns;
	uint64_t next_id;	/* connection keys; 0 is the listener */
	unsigned int nconns;
	uint32_t next_hport;
	struct ctrl pending[MAX_PENDING];
	unsigned int phead, pcount;
	bool reset_event;	/* a transport reset to tell the next driver */
	struct iovec iov[VIRTQ_MAX_SEGS];
	struct iovec slice[VIRTQ_MAX_SEGS];
	struct dev_counters counters;
	uint64_t bad[VSOCK_BAD_NR];
	bool warned[VSOCK_BAD_NR];
};

static const struct device_ops vsock_ops;

/* ---- packets ------------------------------------------------------------ */

void vsock_hdr_get(const uint8_t *p, struct vsock_hdr *h)
{
	h->src_cid = get_le64(p);
	h->dst_cid = get_le64(p + 8);
	h->src_port = get_le32(p + 16);
	h->dst_port = get_le32(p + 20);
	h->len = get_le32(p + 24);
	h->type = get_le16(p + 28);
	h->op = get_le16(p + 30);
	h->flags = get_le32(p + 32);
	h->buf_alloc = get_le32(p + 36);
	h->fwd_cnt = get_le32(p + 40);
}

void vsock_hdr_put(uint8_t *p, const struct vsock_hdr *h)
{
	put_le64(p, h->src_cid);
	put_le64(p + 8, h->dst_cid);
	put_le32(p + 16, h->src_port);
	put_le32(p + 20, h->dst_port);
	put_le32(p + 24, h->len);
	put_le16(p + 28, h->type);
	put_le16(p + 30, h->op);
	put_le32(p + 32, h->flags);
	put_le32(p + 36, h->buf_alloc);
	put_le32(p + 40, h->fwd_cnt);
}

static const char *const bad_names[VSOCK_BAD_NR] = {
	[VSOCK_OK] = "ok",
	[VSOCK_BAD_SHORT] = "a packet shorter than its header",
	[VSOCK_BAD_LEN] = "a length that disagrees with the buffer",
	[VSOCK_BAD_CID] = "a packet not from the guest's CID to the host",
	[VSOCK_BAD_TYPE] = "a socket type other than stream",
	[VSOCK_BAD_OP] = "an unknown operation",
	[VSOCK_BAD_CREDIT] = "data beyond the host's credit",
	[VSOCK_BAD_STATE] = "an operation out of place for its connection",
};

const char *vsock_bad_name(unsigned int why)
{
	return why < VSOCK_BAD_NR ? bad_names[why] : "?";
}

enum vsock_bad vsock_check_packet(const struct vsock_hdr *h, uint64_t out_len,
				  uint64_t guest_cid)
{
	if (out_len < VSOCK_HDR_LEN)
		return VSOCK_BAD_SHORT;
	if (h->len > VSOCK_MAX_PKT || h->len > out_len - VSOCK_HDR_LEN ||
	    (h->len && h->op != VSOCK_OP_RW))
		return VSOCK_BAD_LEN;
	if (h->src_cid != guest_cid || h->dst_cid != VSOCK_HOST_CID)
		return VSOCK_BAD_CID;
	if (h->op == VSOCK_OP_INVALID || h->op > VSOCK_OP_CREDIT_REQUEST)
		return VSOCK_BAD_OP;
	if (h->type != VSOCK_TYPE_STREAM)
		return VSOCK_BAD_TYPE;
	return VSOCK_OK;
}

static void refuse(struct vsock *v, enum vsock_bad why)
{
	v->bad[why]++;
	dev_count(&v->counters, 0, true);
	if (!v->warned[why]) {
		v->warned[why] = true;
		pr_warn("%s: the guest sent %s; refused (counted in lkvm stat)",
			v->d->name, bad_names[why]);
	}
}

/* ---- connections -------------------------------------------------------- */

/*
 * EPOLLHUP and EPOLLERR are reported whatever the mask says, so a
 * connection that waits for nothing leaves the set: otherwise a host
 * program's hang-up would wake the I/O thread again and again while the
 * connection waits for the guest (it did, and told the guest of the
 * end of the stream each time, which kept a polling guest from ever
 * idling: tests/vsock.bats).
 */
static void ep_set(struct vsock *v, struct conn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.u64 = c->id };
	int op;

	if (!events) {
		if (c->in_set && epoll_ctl(v->ep, EPOLL_CTL_DEL, c->fd, NULL) == 0)
			c->in_set = false;
		c->events = 0;
		return;
	}
	if (c->in_set && events == c->events)
		return;
	op = c->in_set ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	if (epoll_ctl(v->ep, op, c->fd, &ev) == 0) {
		c->events = events;
		c->in_set = true;
	}
}

static uint32_t peer_credit(const struct conn *c)
{
	uint32_t used = c->tx_cnt - c->peer_fwd_cnt;

	return used >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - used;
}

/* Reads the host socket only when the guest can take what comes. */
static void conn_arm(struct vsock *v, struct conn *c)
{
	uint32_t ev = 0;

	if (c->state == C_HANDSHAKE)
		ev = EPOLLIN;
	else if (c->state == C_OPEN && !c->guest_no_rcv && !c->host_eof &&
		 peer_credit(c) &&
		 !v->pcount && virtq_ready(&v->d->vq[RXQ]) &&
		 virtq_has_avail(&v->d->vq[RXQ]))
		ev = EPOLLIN;
	if (c->wlen)
		ev |= EPOLLOUT;
	ep_set(v, c, ev);
}

static void arm_all(struct vsock *v)
{
	for (struct conn *c = v->conns; c; c = c->next)
		conn_arm(v, c);
}

static struct conn *conn_new(struct vsock *v, int fd, enum conn_state st)
{
	struct epoll_event ev = { .events = 0 };
	struct conn *c;

	if (v->nconns >= MAX_CONNS)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->fd = fd;
	c->state = st;
	/* Keys, not pointers: an event for a connection freed earlier in
	 * the same batch must not reach one allocated since at the same
	 * address. */
	c->id = ++v->next_id;
	ev.data.u64 = c->id;
	if (epoll_ctl(v->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
		free(c);
		return NULL;
	}
	c->in_set = true;
	c->next = v->conns;
	v->conns = c;
	v->nconns++;
	return c;
}

static void conn_free(struct vsock *v, struct conn *c)
{
	for (struct conn **p = &v->conns; *p; p = &(*p)->next) {
		if (*p == c) {
			*p = c->next;
			break;
		}
	}
	v->nconns--;
	epoll_ctl(v->ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->wbuf);
	free(c);
}

static struct conn *conn_find(struct vsock *v, uint32_t gport, uint32_t hport)
{
	for (struct conn *c = v->conns; c; c = c->next)
		if (c->state != C_HANDSHAKE && c->gport == gport &&
		    c->hport == hport)
			return c;
	return NULL;
}

/* ---- to the guest -------------------------------------------------------- */

static void hdr_to_guest(struct vsock *v, struct vsock_hdr *h, uint32_t gport,
			 uint32_t hport, uint16_t op, uint32_t flags,
			 uint32_t fwd_cnt)
{
	*h = (struct vsock_hdr){
		.src_cid = VSOCK_HOST_CID, .dst_cid = v->cid,
		.src_port = hport, .dst_port = gport,
		.type = VSOCK_TYPE_STREAM, .op = op, .flags = flags,
		.buf_alloc = VSOCK_BUF, .fwd_cnt = fwd_cnt,
	};
}

static void send_ctrl(struct vsock *v, uint32_t gport, uint32_t hport,
		      uint16_t op, uint32_t flags, uint32_t fwd_cnt)
{
	if (v->pcount == MAX_PENDING) {
		/* The guest posts no receive buffers: it loses control
		 * packets, which only it can notice. */
		dev_count(&v->counters, 0, true);
		return;
	}
	v->pending[(v->phead + v->pcount++) % MAX_PENDING] =
		(struct ctrl){ gport, hport, flags, fwd_cnt, op };
}

static void send_rst(struct vsock *v, uint32_t gport, uint32_t hport)
{
	send_ctrl(v, gport, hport, VSOCK_OP_RST, 0, 0);
}

static void conn_ctrl(struct vsock *v, struct conn *c, uint16_t op,
		      uint32_t flags)
{
	c->fwd_told = c->fwd_cnt;
	send_ctrl(v, c->gport, c->hport, op, flags, c->fwd_cnt);
}

/* A receive chain: false (and the queue stopped) when it cannot hold a
 * header. */
static bool rx_pop(struct vsock *v, struct virtq_chain *c)
{
	struct virtq *vq = &v->d->vq[RXQ];

	if (!virtq_ready(vq) || virtio_pop(v->d, vq, c) <= 0)
		return false;
	if (c->in_len < VSOCK_HDR_LEN) {
		virtio_dev_error(v->d, vq, -VIRTQ_E_FRAMING);
		return false;
	}
	return true;
}

static void rx_push(struct vsock *v, struct virtq_chain *c,
		    const struct vsock_hdr *h)
{
	uint8_t raw[VSOCK_HDR_LEN];

	vsock_hdr_put(raw, h);
	iov_from_buf(c->iov + c->nout, c->nin, 0, raw, sizeof(raw));
	virtq_push(&v->d->vq[RXQ], c->head, VSOCK_HDR_LEN + h->len);
}

/* Pending control packets first, in order. Returns whether any went. */
static bool flush_ctrl(struct vsock *v)
{
	struct virtq_chain c = { .iov = v->iov, .cap = VIRTQ_MAX_SEGS };
	bool pushed = false;

	while (v->pcount && virtq_has_avail(&v->d->vq[RXQ]) && rx_pop(v, &c)) {
		const struct ctrl *p = &v->pending[v->phead];
		struct vsock_hdr h;

		hdr_to_guest(v, &h, p->gport, p->hport, p->op, p->flags,
			     p->fwd_cnt);
		rx_push(v, &c, &h);
		v->phead = (v->phead + 1) % MAX_PENDING;
		v->pcount--;
		pushed = true;
	}
	return pushed;
}

static void rx_done(struct vsock *v, bool pushed)
{
	if (flush_ctrl(v))
		pushed = true;
	if (pushed)
		virtio_queue_done(v->d, &v->d->vq[RXQ]);
	arm_all(v);
}

/* The host socket of an open connection is readable: one packet. */
static void host_to_guest(struct vsock *v, struct conn *c)
{
	struct virtq_chain ch = { .iov = v->iov, .cap = VIRTQ_MAX_SEGS };
	struct vsock_hdr h;
	unsigned int n;
	size_t room;
	ssize_t got;

	/* The end of the stream is told once (a hang-up can still be
	 * reported after it). */
	if (c->host_eof || v->pcount || !virtq_has_avail(&v->d->vq[RXQ]) ||
	    !rx_pop(v, &ch)) {
		conn_arm(v, c);
		return;
	}
	room = MIN((size_t)ch.in_len - VSOCK_HDR_LEN,
		   (size_t)MIN(peer_credit(c), VSOCK_MAX_PKT));
	n = iov_slice(ch.iov + ch.nout, ch.nin, VSOCK_HDR_LEN, room, v->slice,
		      VIRTQ_MAX_SEGS);
	got = n ? readv(c->fd, v->slice, (int)n) : -1;
	if (!n)
		errno = EAGAIN;
	c->fwd_told = c->fwd_cnt;
	if (got > 0) {
		hdr_to_guest(v, &h, c->gport, c->hport, VSOCK_OP_RW, 0,
			     c->fwd_cnt);
		h.len = (uint32_t)got;
		c->tx_cnt += (uint32_t)got;
		dev_count(&v->counters, (uint64_t)got, false);
		rx_push(v, &ch, &h);
	} else if (got < 0 && (errno == EAGAIN || errno == EINTR)) {
		/* Nothing after all: the chain carries credit news. */
		hdr_to_guest(v, &h, c->gport, c->hport,
			     VSOCK_OP_CREDIT_UPDATE, 0, c->fwd_cnt);
		rx_push(v, &ch, &h);
	} else if (got == 0) {
		/* The host program will send no more (it may still read:
		 * a half-close): the guest hears so, and the connection
		 * stays until the guest ends it. */
		hdr_to_guest(v, &h, c->gport, c->hport, VSOCK_OP_SHUTDOWN,
			     VSOCK_SHUTDOWN_SEND, c->fwd_cnt);
		rx_push(v, &ch, &h);
		c->host_eof = true;
	} else {
		/* The host side is broken: the guest's connection is
		 * reset and forgotten. */
		hdr_to_guest(v, &h, c->gport, c->hport, VSOCK_OP_RST, 0,
			     c->fwd_cnt);
		rx_push(v, &ch, &h);
		conn_free(v, c);
		c = NULL;
	}
	virtio_queue_done(v->d, &v->d->vq[RXQ]);
	if (c)
		conn_arm(v, c);
}

/* ---- the host side --------------------------------------------------------- */

static void handshake(struct vsock *v, struct conn *c)
{
	ssize_t n = read(c->fd, c->line + c->linelen,
			 sizeof(c->line) - 1 - c->linelen);
	char *nl, *end = c->line;
	unsigned long port;

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_free(v, c);
		return;
	}
	c->linelen += (size_t)n;
	c->line[c->linelen] = '\0';
	nl = memchr(c->line, '\n', c->linelen);
	if (!nl) {
		if (c->linelen == sizeof(c->line) - 1)
			conn_free(v, c);	/* no such line is this long */
		return;
	}
	*nl = '\0';
	errno = 0;
	port = strncmp(c->line, "CONNECT ", 8) ? 0 :
		strtoul(c->line + 8, &end, 10);
	/* Bytes after the line would be data for a connection that does
	 * not exist yet: the client must wait for OK. */
	if (!port || errno || *end || port > 0xffffffffu ||
	    nl + 1 != c->line + c->linelen) {
		static const char msg[] = "ERROR expected CONNECT PORT\n";

		(void)!write(c->fd, msg, sizeof(msg) - 1);
		conn_free(v, c);
		return;
	}
	c->gport = (uint32_t)port;
	do {
		c->hport = v->next_hport++;
		if (v->next_hport < FIRST_HOST_PORT)
			v->next_hport = FIRST_HOST_PORT;
	} while (conn_find(v, c->gport, c->hport));
	c->state = C_CONNECTING;
	c->peer_buf_alloc = 0;
	conn_ctrl(v, c, VSOCK_OP_REQUEST, 0);
}

static void host_writable(struct vsock *v, struct conn *c)
{
	ssize_t n = write(c->fd, c->wbuf, c->wlen);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0) {
		send_rst(v, c->gport, c->hport);
		conn_free(v, c);
		return;
	}
	memmove(c->wbuf, c->wbuf + n, c->wlen - (size_t)n);
	c->wlen -= (size_t)n;
	c->fwd_cnt += (uint32_t)n;
	if (!c->wlen && c->guest_no_send)
		shutdown(c->fd, SHUT_WR);
	/* The guest hears of the room it has again. */
	if (c->fwd_cnt - c->fwd_told >= VSOCK_BUF / 4 || !c->wlen)
		conn_ctrl(v, c, VSOCK_OP_CREDIT_UPDATE, 0);
}

static void accept_host(struct vsock *v)
{
	int fd = accept4(v->listen_fd, NULL, NULL,
			 SOCK_NONBLOCK | SOCK_CLOEXEC);
	struct conn *c;

	if (fd < 0)
		return;
	c = conn_new(v, fd, C_HANDSHAKE);
	if (!c) {
		close(fd);
		return;
	}
	conn_arm(v, c);
}

/* The private epoll set has events: the listener or connections. */
static void on_sockets(struct virtio_dev *d, int fd, void *opaque)
{
	struct vsock *v = d->priv;
	struct epoll_event ev[32];
	bool pushed = false;
	int n;

	(void)fd;
	(void)opaque;
	n = epoll_wait(v->ep, ev, 32, 0);
	for (int i = 0; i < n; i++) {
		struct conn *c = NULL;

		if (!ev[i].data.u64) {
			accept_host(v);
			continue;
		}
		/* Earlier events of this batch may have freed it. */
		for (struct conn *k = v->conns; k && !c; k = k->next)
			if (k->id == ev[i].data.u64)
				c = k;
		if (!c)
			continue;
		if (c->state == C_HANDSHAKE) {
			handshake(v, c);
		} else if (ev[i].events & EPOLLOUT) {
			host_writable(v, c);
		} else if (c->state == C_OPEN) {
			host_to_guest(v, c);
		}
	}
	rx_done(v, pushed);
}

/* ---- from the guest ---------------------------------------------------------- */

static void guest_connect(struct vsock *v, const struct vsock_hdr *h)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct conn *c;
	int fd, len;

	if (conn_find(v, h->src_port, h->dst_port)) {
		refuse(v, VSOCK_BAD_STATE);
		send_rst(v, h->src_port, h->dst_port);
		return;
	}
	len = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%u", v->path,
		       h->dst_port);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || len >= (int)sizeof(sa.sun_path) ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (fd >= 0)
			close(fd);
		send_rst(v, h->src_port, h->dst_port);
		return;
	}
	c = conn_new(v, fd, C_OPEN);
	if (!c) {
		close(fd);
		send_rst(v, h->src_port, h->dst_port);
		return;
	}
	c->gport = h->src_port;
	c->hport = h->dst_port;
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	conn_ctrl(v, c, VSOCK_OP_RESPONSE, 0);
}

static void guest_data(struct vsock *v, struct conn *c,
		       const struct virtq_chain *ch, uint32_t len)
{
	unsigned int n;
	ssize_t w = 0;

	if (c->guest_no_send || c->wlen + len > VSOCK_BUF) {
		refuse(v, c->guest_no_send ? VSOCK_BAD_STATE : VSOCK_BAD_CREDIT);
		send_rst(v, c->gport, c->hport);
		conn_free(v, c);
		return;
	}
	dev_count(&v->counters, len, false);
	n = iov_slice(ch->iov, ch->nout, VSOCK_HDR_LEN, len, v->slice,
		      VIRTQ_MAX_SEGS);
	if (!c->wlen && n) {
		w = writev(c->fd, v->slice, (int)n);
		if (w < 0 && errno != EAGAIN && errno != EINTR) {
			send_rst(v, c->gport, c->hport);
			conn_free(v, c);
			return;
		}
		if (w < 0)
			w = 0;
		c->fwd_cnt += (uint32_t)w;
	}
	if ((uint32_t)w < len) {
		if (!c->wbuf && !(c->wbuf = malloc(VSOCK_BUF))) {
			send_rst(v, c->gport, c->hport);
			conn_free(v, c);
			return;
		}
		c->wlen += iov_to_buf(ch->iov, ch->nout,
				      VSOCK_HDR_LEN + (size_t)w,
				      c->wbuf + c->wlen, len - (size_t)w);
	}
	if (c->fwd_cnt - c->fwd_told >= VSOCK_BUF / 4)
		conn_ctrl(v, c, VSOCK_OP_CREDIT_UPDATE, 0);
}

static void guest_shutdown(struct vsock *v, struct conn *c, uint32_t flags)
{
	if (flags & VSOCK_SHUTDOWN_SEND) {
		c->guest_no_send = true;
		if (!c->wlen)
			shutdown(c->fd, SHUT_WR);
	}
	if (flags & VSOCK_SHUTDOWN_RCV)
		c->guest_no_rcv = true;
	if (c->guest_no_send && c->guest_no_rcv) {
		/* Closed both ways: what the host has not taken yet is
		 * given one try, then the connection ends. */
		if (c->wlen)
			(void)!write(c->fd, c->wbuf, c->wlen);
		send_rst(v, c->gport, c->hport);
		conn_free(v, c);
	}
}

static void guest_packet(struct vsock *v, const struct virtq_chain *ch)
{
	uint8_t raw[VSOCK_HDR_LEN];
	struct vsock_hdr h;
	enum vsock_bad why;
	struct conn *c;

	memset(raw, 0, sizeof(raw));
	iov_to_buf(ch->iov, ch->nout, 0, raw, sizeof(raw));
	vsock_hdr_get(raw, &h);
	why = vsock_check_packet(&h, ch->out_len, v->cid);
	if (why != VSOCK_OK) {
		refuse(v, why);
		/* A well-addressed packet is answered with a reset, so that
		 * the guest's connection does not hang; a reset never. */
		if (why != VSOCK_BAD_SHORT && why != VSOCK_BAD_CID &&
		    h.op != VSOCK_OP_RST) {
			c = conn_find(v, h.src_port, h.dst_port);
			if (c)
				conn_free(v, c);
			send_rst(v, h.src_port, h.dst_port);
		}
		return;
	}
	c = conn_find(v, h.src_port, h.dst_port);
	if (h.op == VSOCK_OP_REQUEST) {
		guest_connect(v, &h);
		return;
	}
	if (!c) {
		/* 5.10.6.4: a packet for no connection gets a reset. */
		if (h.op != VSOCK_OP_RST)
			send_rst(v, h.src_port, h.dst_port);
		return;
	}
	c->peer_buf_alloc = h.buf_alloc;
	c->peer_fwd_cnt = h.fwd_cnt;
	switch (h.op) {
	case VSOCK_OP_RESPONSE: {
		char ok[24];
		int n;

		if (c->state != C_CONNECTING) {
			refuse(v, VSOCK_BAD_STATE);
			send_rst(v, c->gport, c->hport);
			conn_free(v, c);
			return;
		}
		c->state = C_OPEN;
		n = snprintf(ok, sizeof(ok), "OK %u\n", c->hport);
		if (write(c->fd, ok, (size_t)n) != n) {
			send_rst(v, c->gport, c->hport);
			conn_free(v, c);
		}
		return;
	}
	case VSOCK_OP_RST:
		conn_free(v, c);
		return;
	case VSOCK_OP_SHUTDOWN:
		guest_shutdown(v, c, h.flags);
		return;
	case VSOCK_OP_RW:
		if (c->state != C_OPEN) {
			refuse(v, VSOCK_BAD_STATE);
			send_rst(v, c->gport, c->hport);
			conn_free(v, c);
			return;
		}
		guest_data(v, c, ch, h.len);
		return;
	case VSOCK_OP_CREDIT_REQUEST:
		conn_ctrl(v, c, VSOCK_OP_CREDIT_UPDATE, 0);
		return;
	default:	/* CREDIT_UPDATE: the window was updated above */
		return;
	}
}

static void transmit(struct vsock *v, struct virtq *vq)
{
	struct virtq_chain c = { .iov = v->iov, .cap = VIRTQ_MAX_SEGS };
	bool pushed = false;

again:
	virtq_kicks_off(vq);
	while (virtio_pop(v->d, vq, &c) > 0) {
		guest_packet(v, &c);
		virtq_push(vq, c.head, 0);
		pushed = true;
	}
	if (virtq_kicks_on(vq))
		goto again;
	if (pushed)
		virtio_queue_done(v->d, vq);
}

/* A transport reset waits for an event buffer. */
static void post_event(struct vsock *v)
{
	struct virtq *vq = &v->d->vq[EVQ];
	struct virtq_chain c = { .iov = v->iov, .cap = VIRTQ_MAX_SEGS };
	uint8_t id[4];

	if (!v->reset_event || !virtq_ready(vq) || virtio_pop(v->d, vq, &c) <= 0)
		return;
	put_le32(id, EVENT_TRANSPORT_RESET);
	virtq_push(vq, c.head,
		   (uint32_t)iov_from_buf(c.iov + c.nout, c.nin, 0, id, 4));
	virtio_queue_done(v->d, vq);
	v->reset_event = false;
}

static void vsock_notify(struct virtio_dev *d, struct virtq *vq)
{
	struct vsock *v = d->priv;

	if (vq->index == TXQ)
		transmit(v, vq);
	else if (vq->index == EVQ)
		post_event(v);
	rx_done(v, false);
}

static void vsock_reset(struct virtio_dev *d)
{
	struct vsock *v = d->priv;

	if (v->conns)
		v->reset_event = true;
	while (v->conns)
		conn_free(v, v->conns);
	v->pcount = 0;
	v->phead = 0;
}

static const struct virtio_dev_ops vsock_dev_ops = {
	.device_id = VIRTIO_ID_VSOCK,
	.pci_class = 0x078000,		/* communication, other */
	.nqueues = 3,
	.queue_size = QUEUE_SIZE,
	.config_size = CFG_SIZE,
	.queue_notify = vsock_notify,
	.reset = vsock_reset,
};

/* ---- the option and set-up --------------------------------------------------- */

int vsock_parse_option(const char *arg, uint32_t *cid, char *path,
		       size_t pathlen, char *err, size_t errlen)
{
	const char *comma = strchr(arg, ',');
	char cidstr[24] = "";
	const char *p = NULL;
	uint64_t v;
	size_t plen;

	if (!comma) {
		snprintf(err, errlen, "--vsock '%s': use CID,PATH or cid=CID,uds=PATH",
			 arg);
		return -1;
	}
	if (!strncmp(arg, "cid=", 4) || !strncmp(arg, "uds=", 4)) {
		for (const char *s = arg; s;) {
			const char *e = strchr(s, ',');
			size_t l = e ? (size_t)(e - s) : strlen(s);

			if (!strncmp(s, "cid=", 4) && l - 4 < sizeof(cidstr)) {
				memcpy(cidstr, s + 4, l - 4);
				cidstr[l - 4] = '\0';
			} else if (!strncmp(s, "uds=", 4)) {
				p = s + 4;	/* the path runs to the end */
				break;
			} else {
				snprintf(err, errlen, "--vsock: unknown part '%.*s' (cid=CID,uds=PATH)",
					 (int)l, s);
				return -1;
			}
			s = e ? e + 1 : NULL;
		}
	} else if ((size_t)(comma - arg) < sizeof(cidstr)) {
		memcpy(cidstr, arg, (size_t)(comma - arg));
		cidstr[comma - arg] = '\0';
		p = comma + 1;
	}
	if (!parse_uint(cidstr, 3, 0xfffffffeu, &v)) {
		snprintf(err, errlen,
			 "--vsock: the guest CID '%s' must be a number from 3 to 4294967294",
			 cidstr);
		return -1;
	}
	plen = p ? strlen(p) : 0;
	if (!plen) {
		snprintf(err, errlen, "--vsock '%s': no socket path", arg);
		return -1;
	}
	/* PATH_PORT must fit a socket address too. */
	if (plen + 12 > pathlen) {
		snprintf(err, errlen,
			 "--vsock: the socket path is %zu bytes; at most %zu fit",
			 plen, pathlen - 12);
		return -1;
	}
	memcpy(path, p, plen + 1);
	*cid = (uint32_t)v;
	return 0;
}

struct vsock_cfg {
	const char *arg;	/* --vsock */
	uint32_t cid;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int listen_fd;		/* bound in check, so errors come first */
	bool listening;
	struct vsock *v;
};

static const struct option vsock_options[] = {
	{ .name = "vsock", .type = OPT_STRING,
	  .offset = offsetof(struct vsock_cfg, arg),
	  .argname = "CID,PATH",
	  .help = "virtio-vsock with guest CID; host programs connect to the "
		  "Unix socket PATH (\"CONNECT PORT\\n\"), guest connections to "
		  "port P reach PATH_P (also cid=CID,uds=PATH)" },
	OPTION_END,
};

/* Binds PATH; a socket left there by a dead lkvm is replaced, a live
 * one or another file is refused. */
static int listen_path(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, probe, err;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			pr_err("--vsock '%s': exists and is not a socket", path);
			return -EEXIST;
		}
		probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		err = probe >= 0 &&
		      connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0;
		if (probe >= 0)
			close(probe);
		if (err) {
			pr_err("--vsock '%s': another program listens there", path);
			return -EADDRINUSE;
		}
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fd, 64) < 0) {
		err = -errno;
		pr_err("--vsock '%s': %s", path, strerror(-err));
		if (fd >= 0)
			close(fd);
		return err;
	}
	return fd;
}

static int vsock_check(struct machine *m, void *c)
{
	struct vsock_cfg *cfg = c;
	char err[256];

	if (!cfg->arg)
		return 0;
	/* 5.10: a device of virtio 1.0 and later; no transitional PCI ID. */
	if (virtio_transport(m) == VIRTIO_PCI_LEGACY) {
		pr_err("--vsock: virtio-vsock has no legacy PCI interface; use "
		       "--virtio-transport pci, pci-modern, mmio or mmio-legacy");
		return -EINVAL;
	}
	if (vsock_parse_option(cfg->arg, &cfg->cid, cfg->path,
			       sizeof(cfg->path), err, sizeof(err))) {
		pr_err("%s", err);
		return -EINVAL;
	}
	cfg->listen_fd = listen_path(cfg->path);
	if (cfg->listen_fd < 0)
		return cfg->listen_fd;
	cfg->listening = true;
	return 0;
}

static void vsock_free(struct vsock *v)
{
	while (v->conns)
		conn_free(v, v->conns);
	if (v->ep >= 0)
		close(v->ep);
	if (v->listen_fd >= 0) {
		close(v->listen_fd);
		unlink(v->path);
	}
	free(v);
}

static int vsock_init(struct machine *m)
{
	struct vsock_cfg *cfg = machine_dev_cfg(m, &vsock_ops);
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0 };
	struct vsock *v;
	int err;

	if (!cfg || !cfg->listening)
		return 0;
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->m = m;
	v->cid = cfg->cid;
	v->next_hport = FIRST_HOST_PORT;
	snprintf(v->path, sizeof(v->path), "%s", cfg->path);
	v->ep = epoll_create1(EPOLL_CLOEXEC);
	v->listen_fd = -1;
	if (v->ep < 0) {
		err = -errno;
		vsock_free(v);
		return err;
	}
	v->listen_fd = cfg->listen_fd;
	cfg->listening = false;
	if (epoll_ctl(v->ep, EPOLL_CTL_ADD, v->listen_fd, &ev) < 0) {
		err = -errno;
		vsock_free(v);
		return err;
	}
	err = virtio_dev_add(m, &vsock_dev_ops, "virtio-vsock", v, &v->d);
	if (err) {
		vsock_free(v);
		return err;
	}
	put_le64(v->d->config + CFG_GUEST_CID, v->cid);
	err = virtio_dev_watch(v->d, v->ep, on_sockets, v);
	if (!err)
		err = machine_add_counters(m, "virtio-vsock", &v->counters);
	if (err) {
		pr_err("virtio-vsock: %s", strerror(-err));
		virtio_dev_remove(v->d);
		vsock_free(v);
		return err;
	}
	cfg->v = v;
	return 0;
}

static void vsock_exit(struct machine *m)
{
	struct vsock_cfg *cfg = machine_dev_cfg(m, &vsock_ops);

	if (cfg && cfg->listening) {
		close(cfg->listen_fd);
		unlink(cfg->path);
		cfg->listening = false;
	}
	if (!cfg || !cfg->v)
		return;
	virtio_dev_remove(cfg->v->d);
	vsock_free(cfg->v);
	cfg->v = NULL;
}

/* The host side's sockets (lkvm/seccomp.h): a host program connecting,
 * a guest connecting out to PATH_PORT, connections ending. */
static const struct seccomp_rule vsock_seccomp[] = {
	SECCOMP_SYSCALL(accept4, SECCOMP_IO),
	SECCOMP_SYSCALL_ARG(socket, 0, AF_UNIX, SECCOMP_IO),
	SECCOMP_SYSCALL(connect, SECCOMP_IO),
	SECCOMP_SYSCALL(shutdown, SECCOMP_ALL),
	SECCOMP_END,
};

static bool vsock_wanted(struct machine *m)
{
	struct vsock_cfg *cfg = machine_dev_cfg(m, &vsock_ops);

	return cfg && cfg->arg;
}

static const struct device_ops vsock_ops = {
	.name = "virtio-vsock",
	.seccomp = vsock_seccomp,
	.seccomp_wanted = vsock_wanted,
	.stage = DEV_STAGE_DEVICE,
	.options = vsock_options,
	.cfg_size = sizeof(struct vsock_cfg),
	.check = vsock_check,
	.init = vsock_init,
	.exit = vsock_exit,
};
DEVICE(vsock_ops);
