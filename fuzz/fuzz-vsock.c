// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer harness for what a hostile guest sends virtio-vsock
 * (virtio/vsock.c, included here for its internals): sequences of
 * transmit-queue packets through the connection state machine, with real
 * host sockets behind it. Host port 7 has a listener that accepts nothing
 * (so connections form and their sockets fill up: the credit and buffer
 * paths); other ports have none (resets).
 *
 * Input: packets, each
 *   0    flags: bit 0 "well-addressed" (CID 3 -> 2, stream, op % 8, the
 *        destination port folded to 5..8), bit 1 split the buffer in two,
 *        bits 2-3 the source port's low bits (so packets meet the same
 *        connection)
 *   1-2  the packet's length (header included), up to what is left
 *   then the packet.
 * After every packet the device's own limits must hold: connections,
 * pending control packets, each connection's buffer. Each input ends
 * with a device reset, which must leave nothing open.
 */
#include "../virtio/vsock.c"

#include <stdio.h>
#include <stdlib.h>

#define GUEST_CID 3

static struct vsock *v;
static struct virtio_dev dev;
static struct virtq vqs[3];
static int sink_fd = -1;
static uint8_t pkt[VSOCK_HDR_LEN + 70000];

static void check(int cond)
{
	if (!cond)
		abort();
}

static int listen_at(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	unlink(path);
	check(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	      listen(fd, 256) == 0);
	return fd;
}

static char dir[] = "/tmp/fuzz-vsock.XXXXXX";
static char sink_path[108];

/* libFuzzer ends with exit(): the sockets and their directory go. */
static void cleanup(void)
{
	unlink(sink_path);
	unlink(v->path);
	rmdir(dir);
}

static void setup(void)
{
	char *path = sink_path;

	check(mkdtemp(dir) != NULL);
	v = calloc(1, sizeof(*v));
	check(v != NULL);
	snprintf(v->path, sizeof(v->path), "%s/v.sock", dir);
	snprintf(path, sizeof(sink_path), "%s_7", v->path);
	sink_fd = listen_at(path);
	v->listen_fd = listen_at(v->path);
	atexit(cleanup);
	v->ep = epoll_create1(EPOLL_CLOEXEC);
	check(v->ep >= 0);
	v->cid = GUEST_CID;
	v->next_hport = FIRST_HOST_PORT;
	/* A device whose queues the driver never enabled: what goes to
	 * the guest waits in the pending list, as with a slow driver. */
	snprintf(dev.name, sizeof(dev.name), "virtio-vsock");
	dev.nvq = 3;
	dev.vq = vqs;
	dev.priv = v;
	v->d = &dev;
	memset(v->warned, 1, sizeof(v->warned));	/* no log flood */
}

static void invariants(void)
{
	unsigned int n = 0;

	check(v->pcount <= MAX_PENDING && v->phead < MAX_PENDING);
	for (struct conn *c = v->conns; c; c = c->next) {
		n++;
		check(c->wlen <= VSOCK_BUF);
		check(c->state != C_HANDSHAKE);
		check(c->fd >= 0);
	}
	check(n == v->nconns && n <= MAX_CONNS);
}

/* The host side drops what piled up in the sink's backlog. */
static void drain_sink(void)
{
	int fd;

	while ((fd = accept4(sink_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
		close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct iovec iov[2];

	if (!v)
		setup();
	while (size >= 3) {
		uint8_t flags = data[0];
		size_t len = get_le16(data + 1);
		struct virtq_chain c = { .iov = iov, .cap = 2 };
		size_t split;

		data += 3;
		size -= 3;
		len = MIN(len, size);
		memcpy(pkt, data, len);
		data += len;
		size -= len;
		if ((flags & 1) && len >= VSOCK_HDR_LEN) {
			struct vsock_hdr h;

			vsock_hdr_get(pkt, &h);
			h.src_cid = GUEST_CID;
			h.dst_cid = VSOCK_HOST_CID;
			h.type = VSOCK_TYPE_STREAM;
			h.op %= 8;
			h.dst_port = 5 + h.dst_port % 4;
			h.src_port = 1000 + ((flags >> 2) & 3);
			if (h.op == VSOCK_OP_RW)
				h.len = (uint32_t)(len - VSOCK_HDR_LEN);
			vsock_hdr_put(pkt, &h);
		}
		split = (flags & 2) && len > 1 ? len / 2 : len;
		iov[0] = (struct iovec){ pkt, split };
		iov[1] = (struct iovec){ pkt + split, len - split };
		c.nout = len > split ? 2 : 1;
		c.out_len = (uint32_t)len;
		if (!len)
			continue;	/* the walker never yields an empty chain */
		guest_packet(v, &c);
		invariants();
	}
	vsock_reset(&dev);
	check(!v->conns && !v->nconns && !v->pcount);
	drain_sink();
	return 0;
}
