/* The virtio-vsock check: a small stream-socket driver (virtio 1.2, 5.10)
 * with credit-based flow control.
 *
 * Always: a connection to host port vsock_refused (default 1), where no
 * one listens, must be reset. Then, as the command line asks:
 * - vsock_hostile=1: malformed packets (short, unknown operation, a
 *   length beyond the buffer, another source CID, data for no connection)
 *   must be answered with resets or dropped, and the device must go on;
 * - vsock_connect=PORT: connects to the host's PORT, sends one line and
 *   prints the line the host answers;
 * - vsock_port=PORT vsock_wait=SECONDS [vsock_sessions=N]: an echo service
 *   on PORT; passes once N host connections (default 1) have come and
 *   been closed by the host.
 * The kernel polls: between packets it halts until the next timer tick. */
#include "virtio.h"

#define RXQ 0
#define TXQ 1
#define EVQ 2
#define HDR 44
#define HOST_CID 2
#define RXN 16
#define RXB 4096
#define GBUF (64u * 1024) /* our receive window per connection */
#define MAXC 4

#define OP_REQUEST 1
#define OP_RESPONSE 2
#define OP_RST 3
#define OP_SHUTDOWN 4
#define OP_RW 5
#define OP_CREDIT_UPDATE 6
#define OP_CREDIT_REQUEST 7

struct hdr {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port, len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
} __attribute__((packed));

struct gconn {
	bool used, echo, connected, closed, refused, asked;
	bool peer_done; /* the host sends no more: echo what is left, then end */
	uint32_t lport, rport;
	uint32_t peer_buf_alloc, peer_fwd_cnt, tx_cnt, fwd_cnt;
	char got[128];
	uint32_t gotlen;
	/* Echo: received, not yet sent back (a ring of GBUF bytes). Until
	 * it is sent back it counts against the window the host sees. */
	uint32_t bhead, blen;
	int slot;
};

static uint64_t backlog[MAXC];

static struct vdev *vd;
static uint64_t cid, rx_area, tx_page, ev_page;
static uint16_t rx_slot[VQ_SIZE_MAX];
static struct gconn conns[MAXC];
static uint32_t listen_port, sessions, echoed, resets_seen;
/* The last echo session the host's end of stream ended: the device tells
 * that end once, so another SHUTDOWN for it is a device fault. */
static uint32_t ended_lport, ended_rport;

static bool memchr_nl(const char *s, uint32_t len)
{
	for (uint32_t i = 0; i < len; i++)
		if (s[i] == '\n')
			return true;
	return false;
}

static struct gconn *find(uint32_t lport, uint32_t rport)
{
	for (int i = 0; i < MAXC; i++)
		if (conns[i].used && conns[i].lport == lport && conns[i].rport == rport)
			return &conns[i];
	return NULL;
}

static struct gconn *conn_new(uint32_t lport, uint32_t rport)
{
	for (int i = 0; i < MAXC; i++)
		if (!conns[i].used) {
			memset(&conns[i], 0, sizeof(conns[i]));
			conns[i].used = true;
			conns[i].lport = lport;
			conns[i].rport = rport;
			conns[i].slot = i;
			return &conns[i];
		}
	return NULL;
}

/* Sends one packet of `total` bytes (header and payload) already in the
 * transmit page; waits for the device to take it. */
static bool tx_raw(uint32_t total, char *msg, size_t n)
{
	struct vbuf b = { tx_page, total, false };
	uint32_t id, len;
	vq_add(&vd->vq[TXQ], &b, 1);
	vq_kick(vd, &vd->vq[TXQ]);
	int r = vq_wait(vd, &vd->vq[TXQ], &id, &len, PIT_HZ);
	if (r <= 0) {
		ksnprintf(msg, n, "%s: transmit: %s", vd->name,
			  r < 0 ? vd->error : "no completion within 1 s");
		return false;
	}
	return true;
}

static struct hdr *tx_hdr(void)
{
	return (struct hdr *)(uintptr_t)tx_page;
}

static bool vs_send(struct gconn *c, uint32_t lport, uint32_t rport, uint16_t op,
		 uint32_t flags, const void *data, uint32_t len, char *msg, size_t n)
{
	struct hdr *h = tx_hdr();
	memset(h, 0, HDR);
	h->src_cid = cid;
	h->dst_cid = HOST_CID;
	h->src_port = lport;
	h->dst_port = rport;
	h->len = len;
	h->type = 1;
	h->op = op;
	h->flags = flags;
	h->buf_alloc = GBUF;
	h->fwd_cnt = c ? c->fwd_cnt : 0;
	if (len)
		memcpy((uint8_t *)h + HDR, data, len);
	if (c)
		c->tx_cnt += len;
	return tx_raw(HDR + len, msg, n);
}

static void rx_post(uint16_t slot)
{
	struct vbuf b = { rx_area + (uint64_t)slot * RXB, RXB, true };
	int head = vq_add(&vd->vq[RXQ], &b, 1);
	if (head >= 0)
		rx_slot[head] = slot;
}

static uint32_t credit(const struct gconn *c)
{
	uint32_t used = c->tx_cnt - c->peer_fwd_cnt;
	return used >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - used;
}

/* One packet from the host. false: a failure, msg filled. */
static bool handle(const struct hdr *h, const uint8_t *data, uint32_t got, char *msg,
		   size_t n)
{
	if (got < HDR || h->len > got - HDR || h->src_cid != HOST_CID || h->dst_cid != cid) {
		ksnprintf(msg, n, "%s: a malformed packet from the device (%u bytes, len %u, "
			  "cid %lu -> %lu)", vd->name, got, h->len, h->src_cid, h->dst_cid);
		return false;
	}
	struct gconn *c = find(h->dst_port, h->src_port);
	if (h->op == OP_RST)
		resets_seen++;
	if (h->op == OP_SHUTDOWN &&
	    ((c && c->echo && c->peer_done) ||
	     (!c && ended_rport && h->dst_port == ended_lport && h->src_port == ended_rport))) {
		ksnprintf(msg, n, "%s: the device told the end of the host's stream twice "
			  "(port %u -> %u)", vd->name, h->src_port, h->dst_port);
		return false;
	}
	if (!c) {
		if (h->op == OP_REQUEST && h->dst_port == listen_port &&
		    (c = conn_new(h->dst_port, h->src_port))) {
			c->echo = c->connected = true;
			c->peer_buf_alloc = h->buf_alloc;
			c->peer_fwd_cnt = h->fwd_cnt;
			return vs_send(c, c->lport, c->rport, OP_RESPONSE, 0, NULL, 0, msg, n);
		}
		if (h->op != OP_RST)
			return vs_send(NULL, h->dst_port, h->src_port, OP_RST, 0, NULL, 0, msg, n);
		return true;
	}
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	switch (h->op) {
	case OP_RESPONSE:
		c->connected = true;
		return true;
	case OP_RST:
		c->refused = !c->connected;
		c->closed = true;
		if (c->echo) { /* the host side ended abruptly: a session too */
			sessions++;
			c->used = false;
		}
		return true;
	case OP_SHUTDOWN:
		/* Only "no more from the host" on an echo: what it sent still
		 * goes back (flush_echo ends the session once it has). */
		if (c->echo && !(h->flags & 1)) {
			c->peer_done = true;
			return true;
		}
		c->closed = true;
		if (c->echo) {
			sessions++;
			c->used = false;
		}
		return vs_send(NULL, c->lport, c->rport, OP_RST, 0, NULL, 0, msg, n);
	case OP_RW:
		if (!c->echo) {
			c->fwd_cnt += h->len;
			uint32_t k = h->len;
			if (k > sizeof(c->got) - 1 - c->gotlen)
				k = (uint32_t)sizeof(c->got) - 1 - c->gotlen;
			memcpy(c->got + c->gotlen, data, k);
			c->gotlen += k;
			c->got[c->gotlen] = 0;
			return true;
		}
		if (c->blen + h->len > GBUF) {
			ksnprintf(msg, n, "%s: the host sent %u bytes with %u of our %u-byte "
				  "window in use: beyond its credit", vd->name, h->len,
				  c->blen, GBUF);
			return false;
		}
		for (uint32_t done = 0; done < h->len;) {
			uint32_t at = (c->bhead + c->blen) % GBUF, k = h->len - done;
			if (k > GBUF - at)
				k = GBUF - at;
			memcpy((uint8_t *)(uintptr_t)backlog[c->slot] + at, data + done, k);
			c->blen += k;
			done += k;
		}
		return true;
	case OP_CREDIT_REQUEST:
		return vs_send(c, c->lport, c->rport, OP_CREDIT_UPDATE, 0, NULL, 0, msg, n);
	default:
		return true;
	}
}

/* Sends back what the echo connections hold, as far as the host's
 * credit goes; asks for credit once when it has run out. */
static bool flush_echo(char *msg, size_t n)
{
	for (int i = 0; i < MAXC; i++) {
		struct gconn *c = &conns[i];
		while (c->used && c->echo && c->blen && credit(c)) {
			uint32_t k = c->blen, cr = credit(c);
			if (k > GBUF - c->bhead)
				k = GBUF - c->bhead;
			if (k > cr)
				k = cr;
			if (k > RXB - HDR)
				k = RXB - HDR;
			c->fwd_cnt += k;
			echoed += k;
			if (!vs_send(c, c->lport, c->rport, OP_RW, 0,
				     (uint8_t *)(uintptr_t)backlog[i] + c->bhead, k, msg, n))
				return false;
			c->bhead = (c->bhead + k) % GBUF;
			c->blen -= k;
			c->asked = false;
		}
		if (c->used && c->echo && c->peer_done && !c->blen) {
			sessions++;
			c->used = false;
			ended_lport = c->lport;
			ended_rport = c->rport;
			if (!vs_send(NULL, c->lport, c->rport, OP_RST, 0, NULL, 0, msg, n))
				return false;
			continue;
		}
		if (c->used && c->echo && c->blen && !c->asked) {
			c->asked = true;
			if (!vs_send(c, c->lport, c->rport, OP_CREDIT_REQUEST, 0, NULL, 0, msg, n))
				return false;
		}
	}
	return true;
}

/* Takes what the device has put in the receive queue. -1 on failure,
 * else the number of packets. */
static int poll_rx(char *msg, size_t n)
{
	uint32_t id, len;
	int r, k = 0;
	while ((r = vq_get(vd, &vd->vq[RXQ], &id, &len)) > 0) {
		uint16_t slot = rx_slot[id];
		const uint8_t *p = (const uint8_t *)(uintptr_t)(rx_area + (uint64_t)slot * RXB);
		struct hdr h;
		memcpy(&h, p, HDR);
		bool ok = handle(&h, p + HDR, len, msg, n);
		rx_post(slot);
		vq_kick(vd, &vd->vq[RXQ]);
		if (!ok)
			return -1;
		k++;
	}
	if (r < 0) {
		ksnprintf(msg, n, "%s: receive queue: %s", vd->name, vd->error);
		return -1;
	}
	return flush_echo(msg, n) ? k : -1;
}

/* Serves the receive queue until *flag is set or `secs` pass. */
static int wait_flag(volatile bool *flag, uint64_t secs, char *msg, size_t n)
{
	for (uint64_t t0 = ticks; !*flag; ) {
		int k = poll_rx(msg, n);
		if (k < 0)
			return FAIL;
		if (ticks - t0 >= secs * PIT_HZ)
			return SKIP; /* the caller words the timeout */
		if (!k)
			wait_tick();
	}
	return PASS;
}

static int expect_refused(uint32_t lport, uint32_t port, char *msg, size_t n)
{
	struct gconn *c = conn_new(lport, port);
	if (!c || !vs_send(c, lport, port, OP_REQUEST, 0, NULL, 0, msg, n))
		return FAIL;
	int r = wait_flag(&c->closed, 2, msg, n);
	c->used = false;
	if (r == SKIP)
		ksnprintf(msg, n, "%s: no answer within 2 s to a connection to host port "
			  "%u", vd->name, port);
	if (r != PASS)
		return FAIL;
	if (!c->refused) {
		ksnprintf(msg, n, "%s: host port %u accepted a connection; expected a "
			  "reset (nobody listens there)", vd->name, port);
		return FAIL;
	}
	return PASS;
}

static int hostile(uint32_t port, char *msg, size_t n)
{
	struct hdr *h = tx_hdr();
	uint32_t before = resets_seen;
	/* 1: ten bytes, no header. */
	memset(h, 0, HDR);
	if (!tx_raw(10, msg, n))
		return FAIL;
	/* 2: an operation that does not exist: reset. */
	if (!vs_send(NULL, 40001, port, 99, 0, NULL, 0, msg, n))
		return FAIL;
	/* 3: a length beyond the buffer: reset. */
	memset(h, 0, HDR);
	h->src_cid = cid;
	h->dst_cid = HOST_CID;
	h->src_port = 40002;
	h->dst_port = port;
	h->len = 1000;
	h->type = 1;
	h->op = OP_RW;
	if (!tx_raw(HDR + 10, msg, n))
		return FAIL;
	/* 4: from another CID: dropped. */
	h->src_cid = cid + 1;
	h->len = 0;
	h->op = OP_REQUEST;
	if (!tx_raw(HDR, msg, n))
		return FAIL;
	/* 5: data for no connection: reset. */
	if (!vs_send(NULL, 40003, port, OP_RW, 0, "x", 1, msg, n))
		return FAIL;
	/* Three resets come back; give them 2 s. */
	for (uint64_t t0 = ticks; resets_seen - before < 3 && ticks - t0 < 2 * PIT_HZ;)
		if (poll_rx(msg, n) < 0)
			return FAIL;
		else
			wait_tick();
	if (resets_seen - before != 3) {
		ksnprintf(msg, n, "%s: %u resets for 3 malformed packets that deserve one",
			  vd->name, resets_seen - before);
		return FAIL;
	}
	uint8_t s = vd_status(vd);
	if (s & VIRTIO_S_NEEDS_RESET) {
		ksnprintf(msg, n, "%s: status 0x%x: malformed packets stopped the device",
			  vd->name, s);
		return FAIL;
	}
	kprintf("# virtio-vsock: 5 malformed packets sent, 3 resets back, device "
		"status 0x%x\n", s);
	return PASS;
}

/* Starts the device: receive buffers and one event buffer posted. */
static bool start(char *msg, size_t n)
{
	char err[96];
	if (!vd_start(vd, 0, 3, err, sizeof(err))) {
		ksnprintf(msg, n, "%s", err);
		return false;
	}
	cid = vd_cfg(vd, 0, 8);
	if (!rx_area)
		rx_area = palloc((uint64_t)RXN * RXB, 4096);
	if (!tx_page)
		tx_page = palloc(4096, 4096);
	if (!ev_page)
		ev_page = palloc(4096, 4096);
	for (int i = 0; i < MAXC; i++)
		if (!backlog[i])
			backlog[i] = palloc(GBUF, 4096);
	if (!rx_area || !tx_page || !ev_page || !backlog[MAXC - 1]) {
		ksnprintf(msg, n, "no memory for buffers");
		return false;
	}
	memset(conns, 0, sizeof(conns));
	for (uint16_t i = 0; i < RXN; i++)
		rx_post(i);
	vq_kick(vd, &vd->vq[RXQ]);
	memset((void *)(uintptr_t)ev_page, 0xff, 8);
	struct vbuf ev = { ev_page, 8, true };
	vq_add(&vd->vq[EVQ], &ev, 1);
	vq_kick(vd, &vd->vq[EVQ]);
	return true;
}

/* vsock_reset=1: the driver resets the device with a connection open;
 * the next driver must hear of it on the event queue
 * (VIRTIO_VSOCK_EVENT_TRANSPORT_RESET, id 0). */
static int transport_reset(char *msg, size_t n)
{
	if (!start(msg, n))
		return FAIL;
	uint32_t id, len;
	int r = vq_wait(vd, &vd->vq[EVQ], &id, &len, PIT_HZ);
	if (r <= 0) {
		ksnprintf(msg, n, "%s: no transport reset event within 1 s of a reset "
			  "with a connection open", vd->name);
		return FAIL;
	}
	uint32_t ev = *(volatile uint32_t *)(uintptr_t)ev_page;
	if (len != 4 || ev != 0) {
		ksnprintf(msg, n, "%s: event of %u bytes, id %u; expected 4 bytes, id 0 "
			  "(transport reset)", vd->name, len, ev);
		return FAIL;
	}
	kprintf("# virtio-vsock: transport reset event after a reset\n");
	return PASS;
}

static int connect_host(uint32_t port, bool reset, char *msg, size_t n)
{
	struct gconn *c = conn_new(50002, port);
	if (!c || !vs_send(c, c->lport, port, OP_REQUEST, 0, NULL, 0, msg, n))
		return FAIL;
	int r = wait_flag(&c->connected, 5, msg, n);
	if (r == PASS && c->refused)
		r = SKIP;
	if (r == SKIP)
		ksnprintf(msg, n, "%s: host port %u did not accept a connection", vd->name,
			  port);
	if (r != PASS)
		return FAIL;
	char line[64];
	int l = ksnprintf(line, sizeof(line), "ping from guest cid %lu\n", cid);
	if (!vs_send(c, c->lport, port, OP_RW, 0, line, (uint32_t)l, msg, n))
		return FAIL;
	for (uint64_t t0 = ticks; !memchr_nl(c->got, c->gotlen);) {
		int k = poll_rx(msg, n);
		if (k < 0)
			return FAIL;
		if (c->closed || ticks - t0 >= 5 * PIT_HZ) {
			ksnprintf(msg, n, "%s: no line back from host port %u (%u bytes)",
				  vd->name, port, c->gotlen);
			return FAIL;
		}
		if (!k)
			wait_tick();
	}
	kprintf("# virtio-vsock: host replied: %s", c->got);
	if (reset) {
		vd_reset(vd);
		return transport_reset(msg, n);
	}
	if (!vs_send(c, c->lport, port, OP_SHUTDOWN, 3, NULL, 0, msg, n))
		return FAIL;
	r = wait_flag(&c->closed, 2, msg, n);
	c->used = false;
	if (r != PASS) {
		if (r == SKIP)
			ksnprintf(msg, n, "%s: no reset within 2 s after shutting down",
				  vd->name);
		return FAIL;
	}
	return PASS;
}

/* vsock_flood=PORT: data far beyond the host's credit, to a host program
 * that reads nothing: the device must reset the connection. */
static int flood(uint32_t port, char *msg, size_t n)
{
	struct gconn *c = conn_new(50004, port);
	if (!c || !vs_send(c, c->lport, port, OP_REQUEST, 0, NULL, 0, msg, n))
		return FAIL;
	int r = wait_flag(&c->connected, 5, msg, n);
	if (r != PASS || c->refused) {
		if (r != FAIL)
			ksnprintf(msg, n, "%s: host port %u did not accept a connection",
				  vd->name, port);
		return FAIL;
	}
	uint32_t granted = c->peer_buf_alloc, sent = 0;
	static const char junk[RXB - HDR];
	while (!c->closed && sent < 8u << 20) {
		if (!vs_send(c, c->lport, port, OP_RW, 0, junk, sizeof(junk), msg, n) ||
		    poll_rx(msg, n) < 0)
			return FAIL;
		sent += (uint32_t)sizeof(junk);
	}
	c->used = false;
	if (!c->closed || c->refused) {
		ksnprintf(msg, n, "%s: %u bytes beyond a %u-byte credit and no reset",
			  vd->name, sent, granted);
		return FAIL;
	}
	kprintf("# virtio-vsock: flood reset after %u bytes (credit %u)\n", sent, granted);
	return PASS;
}

static int serve(uint64_t secs, uint64_t want, char *msg, size_t n)
{
	kprintf("# virtio-vsock: listening on port %u (cid %lu)\n", listen_port, cid);
	for (uint64_t t0 = ticks; sessions < want;) {
		int k = poll_rx(msg, n);
		if (k < 0)
			return FAIL;
		if (ticks - t0 >= secs * PIT_HZ) {
			ksnprintf(msg, n, "%s: %u of %lu sessions on port %u within %lu s",
				  vd->name, sessions, want, listen_port, secs);
			return FAIL;
		}
		if (!k)
			wait_tick();
	}
	kprintf("# virtio-vsock: %u sessions, %u bytes echoed\n", sessions, echoed);
	return PASS;
}

int check_virtio_vsock(char *msg, size_t n)
{
	vd = vdev_find(VIRTIO_ID_VSOCK, 0);
	if (!vd) {
		ksnprintf(msg, n, "no virtio-vsock device");
		return SKIP;
	}
	if (!virtio_timer_ok(msg, n))
		return FAIL;
	if (!start(msg, n))
		return FAIL;
	sessions = echoed = resets_seen = 0;
	ended_lport = ended_rport = 0;
	uint64_t refused = 1, port = 0, wait = 0, want = 1, connect = 0, bad = 0, reset = 0,
		 flood_port = 0;
	vd_param_u64("vsock_flood", &flood_port);
	vd_param_u64("vsock_reset", &reset);
	vd_param_u64("vsock_refused", &refused);
	vd_param_u64("vsock_port", &port);
	vd_param_u64("vsock_wait", &wait);
	vd_param_u64("vsock_sessions", &want);
	vd_param_u64("vsock_connect", &connect);
	vd_param_u64("vsock_hostile", &bad);
	listen_port = (uint32_t)port;

	int r = expect_refused(50001, (uint32_t)refused, msg, n);
	if (r == PASS && bad)
		r = hostile((uint32_t)refused, msg, n);
	if (r == PASS && flood_port)
		r = flood((uint32_t)flood_port, msg, n);
	if (r == PASS && connect)
		r = connect_host((uint32_t)connect, reset, msg, n);
	if (r == PASS && port && wait)
		r = serve(wait, want, msg, n);
	if (r == PASS)
		ksnprintf(msg, n, "%s (%s): cid %lu, port %lu refused%s%s%s", vd->name,
			  vtransport_name(vd), cid, refused,
			  bad ? (flood_port ? ", malformed packets and a flood refused" :
				 ", malformed packets refused") : flood_port ? ", a flood refused" : "",
			  connect ? (reset ? ", connected to the host, transport reset seen" :
				     ", connected to the host") : "",
			  port && wait ? ", echo sessions served" : "");
	vd_reset(vd);
	return r;
}
