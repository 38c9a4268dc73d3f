/* The virtio-net checks: just enough of a network stack (ARP, ICMP echo,
 * UDP, a DHCP client, one TCP echo connection) on the driver core, all
 * polled. Kept small: this code runs emulated at CPL 0 here.
 *
 * Parameters (kernel command line): net_ip=A.B.C.D (else DHCP must have
 * run), net_peer=A.B.C.D:PORT (the UDP echo server virtio-net-udp talks
 * to), net_serve=SECONDS (how long virtio-net-serve waits for "quit"),
 * net_link=down (the link is expected down), net_until=linkdown
 * (virtio-net-serve also ends, passing, when the link goes down). */
#include "virtio.h"

#define NET_F_CSUM (1ull << 0)
#define NET_F_GUEST_CSUM (1ull << 1)
#define NET_F_MAC (1ull << 5)
#define NET_F_MRG_RXBUF (1ull << 15)
#define NET_F_STATUS (1ull << 16)
#define NET_F_CTRL_VQ (1ull << 17)
#define NET_F_MQ (1ull << 22)
#define HDR 12
#define NRX 16
#define BUFSZ 2048
#define ECHO_PORT 7
#define ETH_ARP 0x0806
#define ETH_IP 0x0800

struct nic {
	struct vdev *d;
	bool up;
	uint8_t mac[6];
	uint32_t ip, mask, router, dns, server;
	uint64_t rx, tx;	/* buffer memory */
	uint32_t bufsz;		/* of each receive buffer */
	uint64_t rxaddr[2][VQ_SIZE_MAX];	/* by receive queue and head */
	int pairs, txq;		/* queue pairs polled, the transmit queue */
	uint32_t arp_ip[4];
	uint8_t arp_mac[4][6];
	unsigned narp, nin, nout, nin_q[2];
	uint32_t maxlen;	/* the longest used length seen */
	bool partial;		/* UDP sent with the checksum left to the device */
	uint8_t rx_flags;	/* header flags of the frames received */
	unsigned arps, pings, udps, tcps;
	bool quit;
	/* DHCP client state */
	uint32_t xid;
	int dhcp_type;
	uint32_t offer;
	/* the UDP reply virtio-net-udp waits for */
	uint16_t want_port;
	int got_len;
	uint8_t got[64];
	/* one TCP connection */
	bool tcp_open;
	uint32_t tcp_ip, rcv_nxt, snd_nxt;
	uint16_t tcp_rport, tcp_lport;
};

static struct nic nic;
static uint8_t pkt[1600];
static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

static uint32_t sum16(const uint8_t *p, size_t n, uint32_t s)
{
	for (; n > 1; p += 2, n -= 2)
		s += be16(p);
	if (n)
		s += (uint32_t)p[0] << 8;
	return s;
}

static uint16_t fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static void ip_str(char *b, size_t n, uint32_t ip)
{
	ksnprintf(b, n, "%u.%u.%u.%u", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255,
		  ip & 255);
}

/* The value of word KEY=... on the command line, NUL-terminated in out. */
static bool param(const char *key, char *out, size_t n)
{
	size_t kl = strlen(key);
	for (const char *s = M.cmdline; *s; s++) {
		if ((s == M.cmdline || s[-1] == ' ') && !strncmp(s, key, kl) &&
		    s[kl] == '=') {
			s += kl + 1;
			size_t i = 0;
			while (s[i] && s[i] != ' ' && i + 1 < n) {
				out[i] = s[i];
				i++;
			}
			out[i] = 0;
			return true;
		}
	}
	return false;
}

/* "A.B.C.D[:PORT]" */
static bool parse_ip(const char *s, uint32_t *ip, uint16_t *port)
{
	uint32_t v = 0;
	for (int k = 0; k < 4; k++) {
		size_t i = 0;
		while (s[i] >= '0' && s[i] <= '9')
			i++;
		uint64_t b;
		if (!parse_u64(s, i, &b) || b > 255)
			return false;
		v = v << 8 | (uint32_t)b;
		s += i;
		if (k < 3 && *s++ != '.')
			return false;
	}
	*ip = v;
	if (port) {
		uint64_t p;
		if (*s++ != ':' || !parse_u64(s, strlen(s), &p) || !p || p > 65535)
			return false;
		*port = (uint16_t)p;
	}
	return true;
}

/* ---- frames ---------------------------------------------------------- */

/* A notification unless the device said it needs none
 * (VRING_USED_F_NO_NOTIFY): it looks at the ring again before it asks
 * for notifications again, so the buffers just made available are seen. */
static void kick(struct vdev *d, struct vq *q)
{
	mb();
	if (!(q->used->flags & 1))
		vq_kick(d, q);
}

static bool rx_give(int pair, uint64_t addr)
{
	struct vbuf b = { addr, nic.bufsz, true };
	int h = vq_add(&nic.d->vq[2 * pair], &b, 1);
	if (h < 0)
		return false;
	nic.rxaddr[pair][h] = addr;
	return true;
}

/* nrx buffers for each pair's receive queue. */
static void rx_fill(int nrx)
{
	for (int p = 0; p < nic.pairs; p++) {
		for (int i = 0; i < nrx; i++)
			rx_give(p, nic.rx + (uint64_t)(p * NRX + i) * BUFSZ);
		vq_kick(nic.d, &nic.d->vq[2 * p]);
	}
}

static bool tx(const uint8_t *dst, uint16_t type, uint32_t len)
{
	struct vdev *d = nic.d;
	uint8_t *b = (uint8_t *)(uintptr_t)nic.tx;
	uint32_t id, l;
	memset(b, 0, HDR);
	if (nic.partial && type == ETH_IP && pkt[9] == 17) {
		b[0] = 1; /* VIRTIO_NET_HDR_F_NEEDS_CSUM */
		b[6] = 14 + 20; /* csum_start: the UDP header */
		b[8] = 6; /* csum_offset: its checksum field */
	}
	memcpy(b + HDR, dst, 6);
	memcpy(b + HDR + 6, nic.mac, 6);
	put16(b + HDR + 12, type);
	memcpy(b + HDR + 14, pkt, len);
	struct vbuf v = { nic.tx, HDR + 14 + len, false };
	struct vq *q = &d->vq[nic.txq];
	if (vq_add(q, &v, 1) < 0)
		return false;
	vq_kick(d, q);
	if (vq_wait(d, q, &id, &l, PIT_HZ) != 1)
		return false;
	nic.nout++;
	return true;
}

static void arp_learn(uint32_t ip, const uint8_t *mac)
{
	unsigned i;
	for (i = 0; i < nic.narp && nic.arp_ip[i] != ip; i++)
		;
	if (i == nic.narp) {
		i = nic.narp < 4 ? nic.narp++ : 0;
		nic.arp_ip[i] = ip;
	}
	memcpy(nic.arp_mac[i], mac, 6);
}

static const uint8_t *arp_find(uint32_t ip)
{
	for (unsigned i = 0; i < nic.narp; i++)
		if (nic.arp_ip[i] == ip)
			return nic.arp_mac[i];
	return NULL;
}

static void arp_send(uint16_t op, const uint8_t *tha, uint32_t tpa)
{
	put16(pkt, 1);
	put16(pkt + 2, ETH_IP);
	pkt[4] = 6;
	pkt[5] = 4;
	put16(pkt + 6, op);
	memcpy(pkt + 8, nic.mac, 6);
	put32(pkt + 14, nic.ip);
	memcpy(pkt + 18, op == 1 ? (const uint8_t[6]){ 0 } : tha, 6);
	put32(pkt + 24, tpa);
	tx(op == 1 ? bcast : tha, ETH_ARP, 28);
}

/* IPv4 header for len payload bytes at pkt + 20; returns the frame length. */
static uint32_t ip_hdr(uint8_t proto, uint32_t src, uint32_t dst, uint32_t len)
{
	static uint16_t id;
	memset(pkt, 0, 20);
	pkt[0] = 0x45;
	put16(pkt + 2, (uint16_t)(20 + len));
	put16(pkt + 4, ++id);
	pkt[8] = 64;
	pkt[9] = proto;
	put32(pkt + 12, src);
	put32(pkt + 16, dst);
	put16(pkt + 10, fold(sum16(pkt, 20, 0)));
	return 20 + len;
}

static bool net_poll(void);

/* Sends the IPv4 packet in pkt (header filled) to dst's MAC. */
static bool ip_send(uint32_t dst, uint32_t len)
{
	if (dst == 0xffffffffu)
		return tx(bcast, ETH_IP, len);
	uint32_t hop = nic.mask && (dst & nic.mask) != (nic.ip & nic.mask) &&
			       nic.router ? nic.router : dst;
	static uint8_t save[1600];
	memcpy(save, pkt, len);
	for (int tries = 0; tries < 3 && !arp_find(hop); tries++) {
		arp_send(1, NULL, hop);
		for (uint64_t t0 = ticks, c0 = rdtsc();
		     !arp_find(hop) && !expired(t0, c0, PIT_HZ);)
			if (!net_poll())
				cpu_relax();
	}
	const uint8_t *mac = arp_find(hop);
	if (!mac)
		return false;
	memcpy(pkt, save, len);
	return tx(mac, ETH_IP, len);
}

static bool udp_send(uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport,
		     const void *data, uint32_t len)
{
	uint8_t *u = pkt + 20;
	put16(u, sport);
	put16(u + 2, dport);
	put16(u + 4, (uint16_t)(8 + len));
	put16(u + 6, 0); /* no checksum (IPv4 allows it) */
	memcpy(u + 8, data, len);
	if (nic.partial) {
		/* The pseudo-header's sum; the device adds the rest. */
		uint8_t ph[12];
		put32(ph, src);
		put32(ph + 4, dst);
		ph[8] = 0;
		ph[9] = 17;
		put16(ph + 10, (uint16_t)(8 + len));
		put16(u + 6, (uint16_t)~fold(sum16(ph, 12, 0)));
	}
	return ip_send(dst, ip_hdr(17, src, dst, 8 + len));
}

/* ---- TCP: one connection, echoing what it receives ------------------- */

static void tcp_send(uint8_t flags, const uint8_t *data, uint32_t len)
{
	uint8_t *t = pkt + 20;
	memset(t, 0, 20);
	put16(t, nic.tcp_lport);
	put16(t + 2, nic.tcp_rport);
	put32(t + 4, nic.snd_nxt);
	put32(t + 8, nic.rcv_nxt);
	t[12] = 5 << 4;
	t[13] = flags;
	put16(t + 14, 4096);
	memcpy(t + 20, data, len);
	uint8_t ph[12];
	put32(ph, nic.ip);
	put32(ph + 4, nic.tcp_ip);
	ph[8] = 0;
	ph[9] = 6;
	put16(ph + 10, (uint16_t)(20 + len));
	put16(t + 16, fold(sum16(t, 20 + len, sum16(ph, 12, 0))));
	ip_send(nic.tcp_ip, ip_hdr(6, nic.ip, nic.tcp_ip, 20 + len));
}

#define TCP_FIN 1
#define TCP_SYN 2
#define TCP_RST 4
#define TCP_PSH 8
#define TCP_ACK 16

static void tcp_in(uint32_t src, const uint8_t *t, uint32_t len)
{
	if (len < 20 || (t[12] >> 4) * 4u > len)
		return;
	uint32_t off = (t[12] >> 4) * 4u, dlen = len - off, seq = be32(t + 4);
	uint8_t f = t[13];
	static uint8_t data[1460];
	if (f & TCP_RST) {
		nic.tcp_open = false;
		return;
	}
	if ((f & TCP_SYN) && !(f & TCP_ACK)) {
		nic.tcp_open = true;
		nic.tcp_ip = src;
		nic.tcp_rport = be16(t);
		nic.tcp_lport = be16(t + 2);
		nic.rcv_nxt = seq + 1;
		nic.snd_nxt = 0x10000;
		tcp_send(TCP_SYN | TCP_ACK, NULL, 0);
		nic.snd_nxt++;
		return;
	}
	if (!nic.tcp_open || src != nic.tcp_ip || be16(t) != nic.tcp_rport)
		return;
	if (seq != nic.rcv_nxt) {
		tcp_send(TCP_ACK, NULL, 0);
		return;
	}
	if (dlen > sizeof(data))
		dlen = sizeof(data);
	if (dlen) {
		memcpy(data, t + off, dlen);
		nic.rcv_nxt += dlen;
		nic.tcps++;
		if (dlen >= 4 && !memcmp(data, "quit", 4))
			nic.quit = true;
		tcp_send(TCP_ACK | TCP_PSH, data, dlen);
		nic.snd_nxt += dlen;
	}
	if (f & TCP_FIN) {
		nic.rcv_nxt++;
		tcp_send(TCP_FIN | TCP_ACK, NULL, 0);
		nic.snd_nxt++;
		nic.tcp_open = false;
	}
}

/* ---- input ----------------------------------------------------------- */

static void dhcp_in(const uint8_t *b, uint32_t len);

static void ip_in(const uint8_t *p, uint32_t len)
{
	if (len < 20 || (p[0] >> 4) != 4 || (p[0] & 15) * 4u > len)
		return;
	uint32_t hl = (p[0] & 15) * 4u, tot = be16(p + 2);
	uint32_t src = be32(p + 12), dst = be32(p + 16);
	if (tot < hl || tot > len)
		return;
	if (nic.ip && dst != nic.ip && dst != 0xffffffffu)
		return;
	const uint8_t *l4 = p + hl;
	uint32_t l4len = tot - hl;
	if (p[9] == 1 && l4len >= 8 && l4[0] == 8 && nic.ip) { /* echo request */
		if (l4len > sizeof(pkt) - 20)
			return;
		memcpy(pkt + 20, l4, l4len);
		pkt[20] = 0;
		put16(pkt + 22, 0);
		put16(pkt + 22, fold(sum16(pkt + 20, l4len, 0)));
		nic.pings++;
		ip_send(src, ip_hdr(1, nic.ip, src, l4len));
	} else if (p[9] == 17 && l4len >= 8) {
		uint16_t sport = be16(l4), dport = be16(l4 + 2);
		uint32_t ulen = be16(l4 + 4);
		if (ulen < 8 || ulen > l4len)
			return;
		const uint8_t *data = l4 + 8;
		ulen -= 8;
		if (dport == 68) {
			dhcp_in(data, ulen);
		} else if (dport == ECHO_PORT && nic.ip) {
			static uint8_t copy[1472];
			if (ulen > sizeof(copy))
				return;
			memcpy(copy, data, ulen);
			nic.udps++;
			if (ulen >= 4 && !memcmp(copy, "quit", 4))
				nic.quit = true;
			udp_send(nic.ip, src, ECHO_PORT, sport, copy, ulen);
		} else if (dport == nic.want_port && nic.got_len < 0) {
			nic.got_len = (int)(ulen < sizeof(nic.got) ? ulen : sizeof(nic.got));
			memcpy(nic.got, data, (size_t)nic.got_len);
		}
	} else if (p[9] == 6 && nic.ip) {
		tcp_in(src, l4, l4len);
	}
}

static void frame_in(const uint8_t *f, uint32_t len)
{
	if (len < 14)
		return;
	uint16_t type = be16(f + 12);
	const uint8_t *p = f + 14;
	len -= 14;
	if (type == ETH_ARP && len >= 28 && be16(p) == 1 && be16(p + 2) == ETH_IP) {
		uint32_t spa = be32(p + 14), tpa = be32(p + 24);
		uint8_t sha[6];
		memcpy(sha, p + 8, 6);
		if (spa)
			arp_learn(spa, sha);
		if (be16(p + 6) == 1 && nic.ip && tpa == nic.ip) {
			nic.arps++;
			arp_send(2, sha, spa);
		}
	} else if (type == ETH_IP) {
		/* The sender's MAC is the way back (its router's when off-link). */
		if (len >= 20 && be32(p + 12))
			arp_learn(be32(p + 12), f + 6);
		ip_in(p, len);
	}
}

/* Handles the frames received so far and gives their buffers back. */
static bool net_poll(void)
{
	struct vdev *d = nic.d;
	uint32_t id, len;
	bool any = false;
	for (int p = 0; p < nic.pairs; p++) {
		struct vq *q = &d->vq[2 * p];
		bool got = false;
		while (vq_get(d, q, &id, &len) == 1) {
			uint64_t a = nic.rxaddr[p][id];
			if (len > HDR && len <= nic.bufsz)
				frame_in((const uint8_t *)(uintptr_t)a + HDR, len - HDR);
			nic.nin++;
			nic.nin_q[p]++;
			nic.rx_flags |= *(const uint8_t *)(uintptr_t)a;
			if (len > nic.maxlen)
				nic.maxlen = len;
			rx_give(p, a);
			got = true;
		}
		if (got)
			kick(d, q);
		any |= got;
	}
	return any;
}

/* ---- DHCP ------------------------------------------------------------ */

static void dhcp_in(const uint8_t *b, uint32_t len)
{
	if (len < 240 || b[0] != 2 || be32(b + 4) != nic.xid ||
	    be32(b + 236) != 0x63825363)
		return;
	int type = 0;
	uint32_t server = 0, router = 0, dns = 0, mask = 0;
	for (uint32_t i = 240; i < len && b[i] != 255;) {
		if (b[i] == 0) {
			i++;
			continue;
		}
		if (i + 2 > len || i + 2 + b[i + 1] > len)
			return;
		uint8_t o = b[i], l = b[i + 1];
		const uint8_t *v = b + i + 2;
		if (o == 53 && l == 1)
			type = v[0];
		else if (o == 54 && l == 4)
			server = be32(v);
		else if (o == 3 && l >= 4)
			router = be32(v);
		else if (o == 6 && l >= 4)
			dns = be32(v);
		else if (o == 1 && l == 4)
			mask = be32(v);
		i += 2u + l;
	}
	if ((type == 2 && !nic.dhcp_type) || type == 5 || type == 6) {
		nic.dhcp_type = type;
		nic.offer = be32(b + 16);
		nic.server = server;
		nic.router = router;
		nic.dns = dns;
		nic.mask = mask;
	}
}

static bool dhcp_send(int type)
{
	static uint8_t b[300];
	memset(b, 0, sizeof(b));
	b[0] = 1;
	b[1] = 1;
	b[2] = 6;
	put32(b + 4, nic.xid);
	put16(b + 10, 0x8000); /* answer by broadcast: no address yet */
	memcpy(b + 28, nic.mac, 6);
	put32(b + 236, 0x63825363);
	uint8_t *o = b + 240;
	*o++ = 53, *o++ = 1, *o++ = (uint8_t)type;
	if (type == 3) {
		*o++ = 50, *o++ = 4;
		put32(o, nic.offer);
		o += 4;
		*o++ = 54, *o++ = 4;
		put32(o, nic.server);
		o += 4;
	}
	*o++ = 55, *o++ = 3, *o++ = 1, *o++ = 3, *o++ = 6;
	*o++ = 255;
	return udp_send(0, 0xffffffffu, 68, 67, b, (uint32_t)(o - b));
}

/* Sends `type` until the answer changes nic.dhcp_type to one of want. */
static int dhcp_step(int type, int want, char *msg, size_t n)
{
	for (int tries = 0; tries < 3; tries++) {
		nic.dhcp_type = type == 1 ? 0 : 2;
		if (!dhcp_send(type)) {
			ksnprintf(msg, n, "%s: DHCP message not sent", nic.d->name);
			return FAIL;
		}
		for (uint64_t t0 = ticks, c0 = rdtsc(); !expired(t0, c0, 2 * PIT_HZ);) {
			if (!net_poll())
				cpu_relax();
			if (nic.dhcp_type == want)
				return PASS;
			if (nic.dhcp_type == 6) {
				ksnprintf(msg, n, "%s: DHCP NAK", nic.d->name);
				return FAIL;
			}
		}
	}
	ksnprintf(msg, n, "%s: no DHCP %s in 3 tries of 2 s", nic.d->name,
		  want == 2 ? "offer" : "ack");
	return FAIL;
}

/* ---- the device ------------------------------------------------------ */

/* (Re)starts the device with `want` features, `pairs` queue pairs (and
 * the control queue with more than one) and nrx receive buffers of bufsz
 * bytes on each receive queue. */
static int net_start(uint64_t want, int pairs, int nrx, uint32_t bufsz, char *msg,
		     size_t n)
{
	struct vdev *d = vdev_find(VIRTIO_ID_NET, 0);
	char err[96];
	if (!d) {
		ksnprintf(msg, n, "no virtio-net device");
		return FAIL;
	}
	if (!virtio_timer_ok(msg, n))
		return FAIL;
	nic.d = d;
	nic.up = false;
	nic.pairs = pairs;
	nic.txq = 1;
	if (!vd_start(d, want, pairs > 1 ? 2 * pairs + 1 : 2, err, sizeof(err))) {
		ksnprintf(msg, n, "%s", err);
		return FAIL;
	}
	if (!(d->features & NET_F_MRG_RXBUF) && !vd_modern(d)) {
		ksnprintf(msg, n, "%s: no VIRTIO_NET_F_MRG_RXBUF on the legacy "
			  "interface: this driver uses the 12-byte header", d->name);
		return FAIL;
	}
	if (!(d->features & NET_F_MAC)) {
		ksnprintf(msg, n, "%s: no VIRTIO_NET_F_MAC offered", d->name);
		return FAIL;
	}
	for (int i = 0; i < 6; i++)
		nic.mac[i] = (uint8_t)vd_cfg(d, (uint32_t)i, 1);
	for (int q = 0; q < 2 * pairs; q++)
		d->vq[q].avail->flags = VRING_AVAIL_F_NO_INTERRUPT;
	if (!nic.rx)
		nic.rx = palloc(2 * NRX * BUFSZ, 4096);
	if (!nic.tx)
		nic.tx = palloc(2 * BUFSZ, 4096);
	if (!nic.rx || !nic.tx) {
		ksnprintf(msg, n, "no memory for buffers");
		return FAIL;
	}
	nic.bufsz = bufsz;
	rx_fill(nrx);
	nic.up = true;
	return PASS;
}

static int net_up(char *msg, size_t n)
{
	if (nic.up)
		return PASS;
	int r = net_start(NET_F_MAC | NET_F_STATUS | NET_F_MRG_RXBUF, 1, NRX, BUFSZ,
			  msg, n);
	if (r != PASS)
		return r;
	nic.xid = 0x4c4b0000u ^ (uint32_t)rdtsc();
	char ip[20];
	if (param("net_ip", ip, sizeof(ip)) && !parse_ip(ip, &nic.ip, NULL)) {
		ksnprintf(msg, n, "bad net_ip=%s", ip);
		return FAIL;
	}
	return PASS;
}

static bool link_up(void)
{
	return !(nic.d->features & NET_F_STATUS) || (vd_cfg(nic.d, 6, 2) & 1);
}

/* In `all`: negotiation, MAC, link status and one frame out. */
int check_virtio_net(char *msg, size_t n)
{
	int r = net_up(msg, n);
	if (r != PASS)
		return r;
	char want[8] = "";
	bool down = param("net_link", want, sizeof(want)) && !strcmp(want, "down");
	bool up = link_up();
	if (up == down) {
		ksnprintf(msg, n, "%s: link %s, expected %s", nic.d->name,
			  up ? "up" : "down", down ? "down" : "up");
		return FAIL;
	}
	/* A gratuitous ARP (or a probe, with no address yet). */
	put16(pkt, 1);
	put16(pkt + 2, ETH_IP);
	pkt[4] = 6;
	pkt[5] = 4;
	put16(pkt + 6, 1);
	memcpy(pkt + 8, nic.mac, 6);
	put32(pkt + 14, nic.ip);
	memset(pkt + 18, 0, 6);
	put32(pkt + 24, nic.ip);
	if (!tx(bcast, ETH_ARP, 28)) {
		ksnprintf(msg, n, "%s: a frame sent was not returned within 1 s: %s",
			  nic.d->name, nic.d->error[0] ? nic.d->error : "no error");
		return FAIL;
	}
	kprintf("# %s: mac %02x:%02x:%02x:%02x:%02x:%02x, link %s, features 0x%lx, "
		"%d receive buffers\n", nic.d->name, nic.mac[0], nic.mac[1],
		nic.mac[2], nic.mac[3], nic.mac[4], nic.mac[5], up ? "up" : "down",
		nic.d->features, NRX);
	return PASS;
}

int check_virtio_net_dhcp(char *msg, size_t n)
{
	int r = net_up(msg, n);
	if (r != PASS)
		return r;
	uint32_t keep = nic.ip;
	nic.ip = 0;
	if ((r = dhcp_step(1, 2, msg, n)) != PASS ||
	    (r = dhcp_step(3, 5, msg, n)) != PASS) {
		nic.ip = keep;
		return r;
	}
	nic.ip = nic.offer;
	char a[20], s[20], g[20], dn[20];
	ip_str(a, sizeof(a), nic.ip);
	ip_str(s, sizeof(s), nic.server);
	ip_str(g, sizeof(g), nic.router);
	ip_str(dn, sizeof(dn), nic.dns);
	kprintf("# %s: DHCP lease %s from %s, router %s, dns %s\n", nic.d->name, a,
		s, g, dn);
	return PASS;
}

static void udp_wait(unsigned timeout)
{
	for (uint64_t t0 = ticks, c0 = rdtsc();
	     nic.got_len < 0 && !expired(t0, c0, timeout);)
		if (!net_poll())
			cpu_relax();
}

/* Sends data to ip:port and waits for the same bytes back (3 tries). */
static int udp_echo(uint32_t ip, uint16_t port, const void *data, uint32_t len,
		    char *msg, size_t n)
{
	char peer[24];
	ip_str(peer, sizeof(peer), ip);
	nic.want_port = 40007;
	for (int tries = 0; tries < 3; tries++) {
		nic.got_len = -1;
		if (!udp_send(nic.ip, ip, nic.want_port, port, data, len)) {
			ksnprintf(msg, n, "%s: could not send to %s:%u (no ARP answer?)",
				  nic.d->name, peer, port);
			return FAIL;
		}
		udp_wait(2 * PIT_HZ);
		if (nic.got_len >= 0)
			break;
	}
	if (nic.got_len < 0) {
		ksnprintf(msg, n, "%s: no UDP answer from %s:%u in 3 tries of 2 s",
			  nic.d->name, peer, port);
		return FAIL;
	}
	uint32_t cmp = len < sizeof(nic.got) ? len : sizeof(nic.got);
	if ((uint32_t)nic.got_len != cmp || memcmp(nic.got, data, cmp)) {
		ksnprintf(msg, n, "%s: %s:%u answered %d bytes, not the %u sent",
			  nic.d->name, peer, port, nic.got_len, len);
		return FAIL;
	}
	return PASS;
}

/* net_peer= and an address of our own. */
static int need_peer(char *peer, size_t pn, uint32_t *ip, uint16_t *port,
		     char *msg, size_t n)
{
	if (!param("net_peer", peer, pn) || !parse_ip(peer, ip, port)) {
		ksnprintf(msg, n, "needs net_peer=A.B.C.D:PORT");
		return FAIL;
	}
	if (!nic.ip) {
		ksnprintf(msg, n, "no address: give net_ip= or run virtio-net-dhcp first");
		return FAIL;
	}
	return PASS;
}

/* The device up, net_peer= and an address, and one echo of text from
 * the peer (which also learns its MAC). */
static int echo_peer(const char *text, char *peer, size_t pn, uint32_t *ip,
		     uint16_t *port, char *msg, size_t n)
{
	int r = net_up(msg, n);
	if (r == PASS)
		r = need_peer(peer, pn, ip, port, msg, n);
	if (r == PASS)
		r = udp_echo(*ip, *port, text, strlen(text), msg, n);
	return r;
}

int check_virtio_net_udp(char *msg, size_t n)
{
	char peer[32];
	uint32_t ip;
	uint16_t port;
	int r = echo_peer("lkvm-net-udp-echo", peer, sizeof(peer), &ip, &port, msg, n);
	if (r != PASS)
		return r;
	kprintf("# %s: UDP echo from %s\n", nic.d->name, peer);
	return PASS;
}

/* Answers ARP, ICMP echo, UDP and TCP echo (port 7 for UDP, any port for
 * TCP) until a "quit" arrives or net_serve= seconds pass. */
int check_virtio_net_serve(char *msg, size_t n)
{
	int r = net_up(msg, n);
	if (r != PASS)
		return r;
	if (!nic.ip) {
		ksnprintf(msg, n, "no address: give net_ip= or run virtio-net-dhcp first");
		return FAIL;
	}
	char v[16], a[20];
	uint64_t secs = 30;
	if (param("net_serve", v, sizeof(v)))
		parse_u64(v, strlen(v), &secs);
	ip_str(a, sizeof(a), nic.ip);
	kprintf("# %s: serving at %s\n", nic.d->name, a);
	/* net_until=linkdown: ends when the device reports its link down. */
	bool until_down = param("net_until", v, sizeof(v)) && !strcmp(v, "linkdown");
	bool down = false;
	nic.quit = false;
	for (uint64_t t0 = ticks, c0 = rdtsc(), seen = ticks;
	     !nic.quit && !down && !expired(t0, c0, (unsigned)(secs * PIT_HZ));) {
		if (net_poll())
			continue;
		cpu_relax();
		if (until_down && ticks - seen >= PIT_HZ / 10) {
			seen = ticks;
			down = !link_up();
		}
	}
	if (down)
		kprintf("# %s: link down\n", nic.d->name);
	kprintf("# %s: answered %u ARP, %u ICMP echo, %u UDP, %u TCP; %u frames "
		"in, %u out\n", nic.d->name, nic.arps, nic.pings, nic.udps, nic.tcps,
		nic.nin, nic.nout);
	if (!nic.quit && !down) {
		ksnprintf(msg, n, "%s: no \"quit\"%s within %lu s", nic.d->name,
			  until_down ? " and no link down" : "", secs);
		return FAIL;
	}
	return PASS;
}

/* What a hostile driver does must cost it frames, never lkvm: a receive
 * queue with no buffers (the frame waits; lkvm goes on transmitting), a
 * frame longer than the receive buffers (dropped, the buffers stay), an
 * oversize transmit frame (dropped, the chain returned), and a transmit
 * descriptor outside RAM (the device needs a reset, then works). Needs
 * net_peer= (a UDP echo server) and an address (net_ip= or DHCP first);
 * the modern interface (the oversize receive buffers need no
 * VIRTIO_NET_F_MRG_RXBUF, which needs the 12-byte header). */
int check_virtio_net_hostile(char *msg, size_t n)
{
	char peer[32];
	uint32_t ip;
	uint16_t port;
	static const char small[] = "lkvm-hostile";
	/* Learns the peer's MAC while there are buffers. */
	int r = echo_peer(small, peer, sizeof(peer), &ip, &port, msg, n);
	if (r != PASS)
		return r;
	struct vdev *d = nic.d;

	/* 1: no receive buffers. Transmit goes on; the echoes wait. */
	uint64_t base = NET_F_MAC | NET_F_STATUS | NET_F_MRG_RXBUF;
	if ((r = net_start(base, 1, 0, BUFSZ, msg, n)) != PASS)
		return r;
	nic.want_port = 40007;
	nic.got_len = -1;
	for (int i = 0; i < 3; i++)
		if (!udp_send(nic.ip, ip, nic.want_port, port, small, sizeof(small) - 1)) {
			ksnprintf(msg, n, "%s: transmit stopped while the receive queue "
				  "had no buffers", d->name);
			return FAIL;
		}
	rx_fill(NRX);
	udp_wait(2 * PIT_HZ);
	if (nic.got_len < 0) {
		ksnprintf(msg, n, "%s: no echo arrived after receive buffers came "
			  "back", d->name);
		return FAIL;
	}

	/* 2: receive buffers of 128 bytes and no merging: the 1000-byte
	 * echo cannot fit and must not arrive cut; the short one must. */
	if ((r = net_start(NET_F_MAC | NET_F_STATUS, 1, NRX, 128, msg, n)) != PASS)
		return r;
	static uint8_t big[1000];
	memset(big, 'x', sizeof(big));
	nic.maxlen = 0;
	if (!udp_send(nic.ip, ip, nic.want_port, port, big, sizeof(big)) ||
	    (r = udp_echo(ip, port, small, sizeof(small) - 1, msg, n)) != PASS) {
		if (r == PASS)
			ksnprintf(msg, n, "%s: could not send", d->name);
		return FAIL;
	}
	if (nic.maxlen > 128) {
		ksnprintf(msg, n, "%s: used length %u for a 128-byte buffer", d->name,
			  nic.maxlen);
		return FAIL;
	}

	/* 3: a 3000-byte frame with no segmentation asked for. */
	if ((r = net_start(base, 1, NRX, BUFSZ, msg, n)) != PASS)
		return r;
	uint8_t *f = (uint8_t *)(uintptr_t)nic.tx;
	memset(f, 0, HDR + 3000);
	memcpy(f + HDR, bcast, 6);
	memcpy(f + HDR + 6, nic.mac, 6);
	put16(f + HDR + 12, ETH_IP);
	struct vbuf v = { nic.tx, HDR + 3000, false };
	uint32_t id, len;
	vq_add(&d->vq[nic.txq], &v, 1);
	vq_kick(d, &d->vq[nic.txq]);
	if (vq_wait(d, &d->vq[nic.txq], &id, &len, PIT_HZ) != 1 ||
	    (vd_status(d) & VIRTIO_S_NEEDS_RESET)) {
		ksnprintf(msg, n, "%s: an oversize frame was not returned (status "
			  "0x%x)", d->name, vd_status(d));
		return FAIL;
	}
	if ((r = udp_echo(ip, port, small, sizeof(small) - 1, msg, n)) != PASS)
		return r;

	/* 4: a transmit buffer outside RAM. */
	struct vbuf bad = { 1ull << 40, 64, false };
	vq_add(&d->vq[nic.txq], &bad, 1);
	vq_kick(d, &d->vq[nic.txq]);
	bool needs_reset = false;
	for (uint64_t t0 = ticks, c0 = rdtsc(); !needs_reset && !expired(t0, c0, PIT_HZ);)
		needs_reset = vd_status(d) & VIRTIO_S_NEEDS_RESET;
	if (vd_modern(d) && !needs_reset) {
		ksnprintf(msg, n, "%s: a buffer outside RAM did not set "
			  "DEVICE_NEEDS_RESET (status 0x%x)", d->name, vd_status(d));
		return FAIL;
	}
	if ((r = net_start(base, 1, NRX, BUFSZ, msg, n)) != PASS ||
	    (r = udp_echo(ip, port, small, sizeof(small) - 1, msg, n)) != PASS)
		return r;
	kprintf("# %s: no rx buffers, a frame too long for them, a 3000-byte "
		"frame and a buffer outside RAM: the device went on\n", d->name);
	return PASS;
}

/* For bench/net.sh. net_flood=tx:N sends N UDP datagrams of net_size=
 * bytes (default 1472) to net_peer= as fast as the transmit queue takes
 * them (up to 64 in flight, one notification per batch); net_flood=rx:N
 * counts N received frames. Prints the guest's time for the N frames. */
#define FLOOD_INFLIGHT 64
int check_virtio_net_flood(char *msg, size_t n)
{
	char peer[32], v[32];
	uint32_t ip;
	uint16_t port;
	int r = echo_peer("lkvm-net-flood", peer, sizeof(peer), &ip, &port, msg, n);
	if (r != PASS)
		return r;
	uint64_t count = 0, size = 1472;
	if (!param("net_flood", v, sizeof(v)) || strlen(v) < 4 ||
	    !parse_u64(v + 3, strlen(v + 3), &count) ||
	    (strncmp(v, "tx:", 3) && strncmp(v, "rx:", 3))) {
		ksnprintf(msg, n, "needs net_flood=tx:N or rx:N");
		return FAIL;
	}
	if (param("net_size", v + 3, sizeof(v) - 3))
		parse_u64(v + 3, strlen(v + 3), &size);
	if (size < 18 || size > 1472)
		size = 1472;
	struct vdev *d = nic.d;
	uint64_t t0 = ticks;
	if (v[0] == 'r') {
		unsigned start = nic.nin;
		kprintf("# %s: flood: receiving\n", d->name);
		for (uint64_t c0 = rdtsc(); nic.nin - start < count &&
		     !expired(t0, c0, 60 * PIT_HZ);)
			if (!net_poll())
				cpu_relax();
		count = nic.nin - start;
	} else {
		static uint64_t bufs;
		if (!bufs)
			bufs = palloc(FLOOD_INFLIGHT * 2048, 4096);
		/* One frame, built once (ip_send resolved the peer's MAC). */
		uint8_t *u = pkt + 20;
		put16(u, nic.want_port);
		put16(u + 2, port);
		put16(u + 4, (uint16_t)(8 + size));
		put16(u + 6, 0);
		memset(u + 8, 'f', size);
		uint32_t len = ip_hdr(17, nic.ip, ip, 8 + (uint32_t)size);
		for (int i = 0; i < FLOOD_INFLIGHT; i++) {
			uint8_t *b = (uint8_t *)(uintptr_t)(bufs + (uint64_t)i * 2048);
			memset(b, 0, HDR);
			memcpy(b + HDR, arp_find(ip), 6);
			memcpy(b + HDR + 6, nic.mac, 6);
			put16(b + HDR + 12, ETH_IP);
			memcpy(b + HDR + 14, pkt, len);
		}
		struct vq *q = &d->vq[nic.txq];
		uint64_t sent = 0, done = 0;
		uint32_t id, l;
		for (uint64_t c0 = rdtsc(); done < count && !expired(t0, c0, 60 * PIT_HZ);) {
			bool added = false;
			while (sent < count) {
				struct vbuf b = { bufs + (sent % FLOOD_INFLIGHT) * 2048,
						  HDR + 14 + len, false };
				if (sent - done >= FLOOD_INFLIGHT || vq_add(q, &b, 1) < 0)
					break;
				sent++;
				added = true;
			}
			if (added)
				kick(d, q);
			while (vq_get(d, q, &id, &l) == 1)
				done++;
		}
		count = done;
	}
	uint64_t dt = ticks - t0;
	kprintf("# %s: flood %s: %lu frames in %lu ms\n", d->name,
		v[0] == 'r' ? "rx" : "tx", count, dt * 1000 / PIT_HZ);
	return PASS;
}

/* Multiqueue: two pairs and the control queue; VQ_PAIRS_SET refused for 0
 * and for more pairs than the device has, accepted for 2; then an echo
 * from net_peer= sent through the second pair (the answer may come on
 * either receive queue). */
int check_virtio_net_mq(char *msg, size_t n)
{
	int r = net_up(msg, n);
	if (r != PASS)
		return r;
	struct vdev *d = nic.d;
	uint64_t want = NET_F_MAC | NET_F_STATUS | NET_F_MRG_RXBUF | NET_F_MQ |
			NET_F_CTRL_VQ;
	if ((r = net_start(want, 2, NRX, BUFSZ, msg, n)) != PASS)
		return r;
	uint16_t max = (uint16_t)vd_cfg(d, 8, 2);
	if ((d->features & (NET_F_MQ | NET_F_CTRL_VQ)) != (NET_F_MQ | NET_F_CTRL_VQ) ||
	    max < 2) {
		ksnprintf(msg, n, "%s: no multiqueue (features 0x%lx, %u pairs)",
			  d->name, d->offered, max);
		nic.up = false;
		return FAIL;
	}
	static uint64_t page;
	if (!page)
		page = palloc(4096, 4096);
	volatile uint8_t *cmd = (volatile uint8_t *)(uintptr_t)page;
	struct vq *cq = &d->vq[4];
	const uint16_t tries[3] = { 0, (uint16_t)(max + 1), 2 };
	for (int i = 0; i < 3; i++) {
		cmd[0] = 4; /* VIRTIO_NET_CTRL_MQ */
		cmd[1] = 0; /* VQ_PAIRS_SET */
		cmd[2] = (uint8_t)tries[i];
		cmd[3] = (uint8_t)(tries[i] >> 8);
		cmd[64] = 0xee;
		struct vbuf b[2] = { { page, 4, false }, { page + 64, 1, true } };
		uint32_t id, len;
		vq_add(cq, b, 2);
		vq_kick(d, cq);
		if (vq_wait(d, cq, &id, &len, PIT_HZ) != 1) {
			ksnprintf(msg, n, "%s: VQ_PAIRS_SET %u not answered: %s", d->name,
				  tries[i], d->error[0] ? d->error : "timeout");
			nic.up = false;
			return FAIL;
		}
		uint8_t want_ack = i < 2 ? 1 : 0;
		if (cmd[64] != want_ack) {
			ksnprintf(msg, n, "%s: VQ_PAIRS_SET %u answered %u, not %s", d->name,
				  tries[i], cmd[64], want_ack ? "ERR" : "OK");
			nic.up = false;
			return FAIL;
		}
	}
	nic.txq = 3;
	nic.nin_q[0] = nic.nin_q[1] = 0;
	char peer[32];
	uint32_t ip;
	uint16_t port;
	r = echo_peer("lkvm-net-mq", peer, sizeof(peer), &ip, &port, msg, n);
	kprintf("# %s: %u pairs offered, 2 in use; echo through the second pair; "
		"frames in per receive queue %u, %u\n", d->name, max, nic.nin_q[0],
		nic.nin_q[1]);
	nic.up = false; /* the next check starts again with one pair */
	return r;
}

/* Checksum offload: a datagram sent with VIRTIO_NET_HDR_F_NEEDS_CSUM and
 * only the pseudo-header's sum in its checksum field reaches net_peer=
 * (whose stack drops a bad checksum) only when the device carried the
 * header to a backend that completes it; the echo comes back with the
 * flags the host chose (GUEST_CSUM negotiated). SKIP when the device
 * offers no checksum offload (user mode). */
int check_virtio_net_csum(char *msg, size_t n)
{
	int r = net_up(msg, n);
	if (r != PASS)
		return r;
	struct vdev *d = nic.d;
	uint64_t both = NET_F_CSUM | NET_F_GUEST_CSUM;
	if ((d->offered & both) != both) {
		ksnprintf(msg, n, "%s: no checksum offload offered", d->name);
		return SKIP;
	}
	if ((r = net_start(NET_F_MAC | NET_F_STATUS | NET_F_MRG_RXBUF | both, 1, NRX,
			   BUFSZ, msg, n)) != PASS)
		return r;
	char peer[32];
	uint32_t ip;
	uint16_t port;
	nic.partial = true;
	nic.rx_flags = 0;
	r = echo_peer("lkvm-net-csum", peer, sizeof(peer), &ip, &port, msg, n);
	nic.partial = false;
	nic.up = false; /* the next check starts without offloads */
	if (r == PASS)
		kprintf("# %s: a datagram with its checksum left to the device was "
			"echoed; receive header flags 0x%x\n", d->name, nic.rx_flags);
	return r;
}

/* ---- the soak's network step (soak.c) -------------------------------- */

#define SOAK_PORT 40008
#define SOAK_TRIES 5

static uint32_t soak_ip;
static uint16_t soak_port;

/* The device up, an address (DHCP unless net_ip= gave one) and
 * net_peer=, whose text goes to peer: PASS, or FAIL with why. */
int net_soak_open(char *peer, size_t pn, char *msg, size_t n)
{
	int r = net_up(msg, n);
	if (r == PASS && !link_up()) {
		ksnprintf(msg, n, "%s: link down", nic.d->name);
		r = FAIL;
	}
	if (r == PASS && !nic.ip)
		r = check_virtio_net_dhcp(msg, n);
	if (r == PASS)
		r = need_peer(peer, pn, &soak_ip, &soak_port, msg, n);
	return r;
}

/* Round r's datagram, "lkvm-soak R", to the peer until the same comes
 * back: UDP may drop either way, so up to SOAK_TRIES sends, each waited
 * for 2 s; a late echo of an earlier send is skipped. Each send counts
 * in *sent. */
int net_soak_echo(uint64_t r, uint64_t *sent, char *msg, size_t n)
{
	char text[32];
	ksnprintf(text, sizeof(text), "lkvm-soak %lu", r);
	uint32_t len = (uint32_t)strlen(text);
	nic.want_port = SOAK_PORT;
	for (int tries = 0; tries < SOAK_TRIES; tries++) {
		nic.got_len = -1;
		if (!udp_send(nic.ip, soak_ip, SOAK_PORT, soak_port, text, len)) {
			ksnprintf(msg, n, "round %lu: %s: could not send (no ARP answer?)",
				  r, nic.d->name);
			return FAIL;
		}
		(*sent)++;
		for (uint64_t t0 = ticks, c0 = rdtsc(); !expired(t0, c0, 2 * PIT_HZ);) {
			if (nic.got_len < 0) {
				if (!net_poll())
					cpu_relax();
				continue;
			}
			if ((uint32_t)nic.got_len == len && !memcmp(nic.got, text, len))
				return PASS;
			nic.got_len = -1;
		}
	}
	ksnprintf(msg, n, "round %lu: %s: no echo of \"%s\" in %d tries of 2 s",
		  r, nic.d->name, text, SOAK_TRIES);
	return FAIL;
}
