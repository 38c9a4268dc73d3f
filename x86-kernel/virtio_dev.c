/* The virtio-console and virtio-rng checks. */
#include "virtio.h"

#define RNG_BUF 64
#define CON_RXBUFS 4
#define CON_RXBUF 256

static uint64_t dma_page(uint64_t *slot)
{
	if (!*slot)
		*slot = palloc(4096, 4096);
	return *slot;
}

static const char *wait_error(struct vdev *d, int r)
{
	return r < 0 ? d->error : "no completion within 1 s";
}

/* ---- virtio-rng ----------------------------------------------------- */

static uint64_t rng_page;

static bool all_same(const uint8_t *p, uint32_t n)
{
	for (uint32_t i = 1; i < n; i++)
		if (p[i] != p[0])
			return false;
	return true;
}

/* One device: a request with interrupts asked for (the ISR must say the
 * device would have interrupted), then four requests in flight at once. */
static int rng_one(struct vdev *d, char *msg, size_t n, uint32_t *total)
{
	char err[96];
	if (!vd_start(d, 0, 1, err, sizeof(err))) {
		ksnprintf(msg, n, "%s", err);
		return FAIL;
	}
	uint64_t page = dma_page(&rng_page);
	if (!page) {
		ksnprintf(msg, n, "no memory for buffers");
		return FAIL;
	}
	uint8_t *buf = (uint8_t *)(uintptr_t)page;
	struct vq *q = &d->vq[0];
	uint32_t id, len;

	vd_isr(d); /* clears it */
	q->avail->flags = 0;
	memset(buf, 0, RNG_BUF);
	struct vbuf b = { page, RNG_BUF, true };
	vq_add(q, &b, 1);
	vq_kick(d, q);
	int r = vq_wait(d, q, &id, &len, PIT_HZ);
	if (r <= 0) {
		ksnprintf(msg, n, "%s: first request: %s", d->name, wait_error(d, r));
		return FAIL;
	}
	if (len == 0) {
		ksnprintf(msg, n, "%s: a %u-byte request completed with no bytes",
			  d->name, RNG_BUF);
		return FAIL;
	}
	/* The interrupt follows the used ring update; give it 100 ms. */
	uint8_t isr = 0;
	for (uint64_t t0 = ticks; !(isr & 1) && ticks - t0 < PIT_HZ / 10;)
		isr |= vd_isr(d);
	uint8_t isr_after = vd_isr(d);
	q->avail->flags = VRING_AVAIL_F_NO_INTERRUPT;
	if (!(isr & 1)) {
		ksnprintf(msg, n, "%s: completed with interrupts enabled but the "
			  "ISR queue bit stayed clear (0x%x)", d->name, isr);
		return FAIL;
	}
	if (isr_after & 1) {
		ksnprintf(msg, n, "%s: the ISR queue bit stayed set after it was "
			  "read (%s)", d->name,
			  d->t == VT_MMIO ? "and acknowledged" : "reading clears it");
		return FAIL;
	}
	uint32_t first_len = len;

	/* Four buffers in flight, one notification. */
	int heads[4];
	for (int i = 0; i < 4; i++) {
		memset(buf + 256 * (i + 1), 0, RNG_BUF);
		struct vbuf bi = { page + 256 * (uint64_t)(i + 1), RNG_BUF, true };
		if ((heads[i] = vq_add(q, &bi, 1)) < 0) {
			ksnprintf(msg, n, "%s: queue of %u entries has no room for 4",
				  d->name, q->size);
			return FAIL;
		}
	}
	vq_kick(d, q);
	uint32_t lens[4] = { 0, 0, 0, 0 };
	for (int i = 0; i < 4; i++) {
		r = vq_wait(d, q, &id, &len, PIT_HZ);
		if (r <= 0) {
			ksnprintf(msg, n, "%s: %d of 4 requests in flight completed; %s",
				  d->name, i, wait_error(d, r));
			return FAIL;
		}
		for (int k = 0; k < 4; k++)
			if ((uint32_t)heads[k] == id)
				lens[k] = len;
	}
	*total = first_len;
	for (int i = 0; i < 4; i++) {
		const uint8_t *p = buf + 256 * (i + 1);
		if (!lens[i]) {
			ksnprintf(msg, n, "%s: a request completed with no bytes", d->name);
			return FAIL;
		}
		if (lens[i] >= 8 && all_same(p, lens[i])) {
			ksnprintf(msg, n, "%s: %u bytes, all 0x%02x", d->name, lens[i], p[0]);
			return FAIL;
		}
		if (i && lens[i] >= 8 && lens[i] == lens[i - 1] &&
		    !memcmp(p, p - 256, lens[i])) {
			ksnprintf(msg, n, "%s: two requests returned the same %u bytes",
				  d->name, lens[i]);
			return FAIL;
		}
		*total += lens[i];
	}
	if (first_len >= 8 && all_same(buf, first_len)) {
		ksnprintf(msg, n, "%s: %u bytes, all 0x%02x", d->name, first_len, buf[0]);
		return FAIL;
	}
	char hex[2 * 16 + 1];
	uint32_t shown = lens[0] < 16 ? lens[0] : 16;
	for (uint32_t i = 0; i < shown; i++)
		ksnprintf(hex + 2 * i, 3, "%02x", buf[256 + i]);
	hex[2 * shown] = 0;
	kprintf("# %s: %u bytes in 5 requests (4 in flight), first bytes %s\n",
		d->name, *total, hex);
	vd_reset(d);
	return PASS;
}

int check_virtio_rng(char *msg, size_t n)
{
	if (!virtio_present(VIRTIO_ID_RNG)) {
		ksnprintf(msg, n, "no virtio-rng device");
		return SKIP;
	}
	if (!virtio_timer_ok(msg, n))
		return FAIL;
	uint32_t total = 0, sum = 0;
	int devs = 0;
	for (struct vdev *d; (d = vdev_find(VIRTIO_ID_RNG, devs)); devs++) {
		int r = rng_one(d, msg, n, &total);
		if (r != PASS)
			return r;
		sum += total;
	}
	struct vdev *d0 = vdev_find(VIRTIO_ID_RNG, 0);
	ksnprintf(msg, n, "%d device(s) (%s%s), %u random bytes, not constant, "
		  "ISR set on completion", devs, vtransport_name(d0),
		  devs > 1 ? ", ..." : "", sum);
	return PASS;
}

/* ---- virtio-console ------------------------------------------------- */

static uint64_t con_page;

/* Port 0 only: VIRTIO_CONSOLE_F_MULTIPORT is not negotiated, so queue 0
 * receives and queue 1 transmits. */
static bool con_start(struct vdev *d, char *msg, size_t n, uint8_t **rx)
{
	char err[96];
	if (!vd_begin(d, 0, err, sizeof(err)) || !vq_setup(d, 0, 0, err, sizeof(err)) ||
	    !vq_setup(d, 1, 0, err, sizeof(err))) {
		ksnprintf(msg, n, "%s", err);
		return false;
	}
	uint64_t page = dma_page(&con_page);
	if (!page) {
		ksnprintf(msg, n, "no memory for buffers");
		return false;
	}
	*rx = (uint8_t *)(uintptr_t)page;
	/* Receive buffers may be made available before DRIVER_OK; the device
	 * is told about them after. */
	for (int i = 0; i < CON_RXBUFS; i++) {
		struct vbuf b = { page + (uint64_t)i * CON_RXBUF, CON_RXBUF, true };
		vq_add(&d->vq[0], &b, 1);
	}
	vd_driver_ok(d);
	uint8_t s = vd_status(d);
	if (s & (VIRTIO_S_NEEDS_RESET | VIRTIO_S_FAILED)) {
		ksnprintf(msg, n, "%s: status 0x%x after DRIVER_OK", d->name, s);
		return false;
	}
	vq_kick(d, &d->vq[0]);
	return true;
}

static int con_write(struct vdev *d, const struct vbuf *b, int nb, char *msg, size_t n)
{
	uint32_t id, len;
	struct vq *tx = &d->vq[1];
	if (vq_add(tx, b, nb) < 0) {
		ksnprintf(msg, n, "%s: no room in the transmit queue", d->name);
		return FAIL;
	}
	vq_kick(d, tx);
	int r = vq_wait(d, tx, &id, &len, PIT_HZ);
	if (r <= 0) {
		ksnprintf(msg, n, "%s: transmit: %s", d->name, wait_error(d, r));
		return FAIL;
	}
	return PASS;
}

static void repost(struct vdev *d, uint32_t id)
{
	struct vbuf b = { con_page + (uint64_t)id * CON_RXBUF, CON_RXBUF, true };
	vq_add(&d->vq[0], &b, 1);
	vq_kick(d, &d->vq[0]);
}

/* The first virtio console, started with its receive buffers posted:
 * PASS, SKIP when there is none, FAIL with msg filled. */
static int con_open(struct vdev **d, uint8_t **rx, char *msg, size_t n)
{
	*d = vdev_find(VIRTIO_ID_CONSOLE, 0);
	if (!*d) {
		ksnprintf(msg, n, "no virtio-console device");
		return SKIP;
	}
	if (!virtio_timer_ok(msg, n) || !con_start(*d, msg, n, rx))
		return FAIL;
	return PASS;
}

int check_virtio_console(char *msg, size_t n)
{
	struct vdev *d;
	uint8_t *rx;
	int r0 = con_open(&d, &rx, msg, n);
	if (r0 != PASS)
		return r0;
	/* The text sits after the receive buffers on the same page. */
	char *tx = (char *)rx + CON_RXBUFS * CON_RXBUF;
	int l1 = ksnprintf(tx, 200, "# virtio-console: hello from %s (%s)\n", d->name,
			   vtransport_name(d));
	struct vbuf b1 = { (uint64_t)(uintptr_t)tx, (uint32_t)l1, false };
	if (con_write(d, &b1, 1, msg, n) != PASS)
		return FAIL;
	/* One line in two pieces: a chain of two readable descriptors. */
	char *tx2 = tx + 256;
	int l2 = ksnprintf(tx2, 100, "# virtio-console: a line in ");
	int l3 = ksnprintf(tx2 + 128, 100, "two descriptors\n");
	struct vbuf b2[2] = { { (uint64_t)(uintptr_t)tx2, (uint32_t)l2, false },
			      { (uint64_t)(uintptr_t)tx2 + 128, (uint32_t)l3, false } };
	if (con_write(d, b2, 2, msg, n) != PASS)
		return FAIL;
	/* Input that is already there is shown, not waited for. */
	uint32_t id, len, got = 0;
	int r;
	while ((r = vq_get(d, &d->vq[0], &id, &len)) > 0)
		got += len;
	if (r < 0) {
		ksnprintf(msg, n, "%s: receive queue: %s", d->name, d->error);
		return FAIL;
	}
	ksnprintf(msg, n, "%s (%s): 2 lines written (%d bytes), %d receive buffers "
		  "posted, %u bytes of input waiting", d->name, vtransport_name(d),
		  l1 + l2 + l3, CON_RXBUFS, got);
	vd_reset(d);
	return PASS;
}

/* Not in `all`: waits up to 60 s for one line typed into the console. */
int check_virtio_console_input(char *msg, size_t n)
{
	struct vdev *d;
	uint8_t *rx;
	int r0 = con_open(&d, &rx, msg, n);
	if (r0 != PASS)
		return r0;
	char *prompt = (char *)rx + CON_RXBUFS * CON_RXBUF;
	int pl = ksnprintf(prompt, 200, "# virtio-console-input: type a line\n");
	struct vbuf b = { (uint64_t)(uintptr_t)prompt, (uint32_t)pl, false };
	if (con_write(d, &b, 1, msg, n) != PASS)
		return FAIL;
	kprintf("# virtio-console-input: waiting for a line on %s (60 s)\n", d->name);
	char line[128];
	size_t ll = 0;
	uint32_t bytes = 0, bufs = 0;
	bool done = false;
	uint64_t t0 = ticks;
	while (!done && ticks - t0 < 60 * PIT_HZ) {
		uint32_t id, len;
		int r = vq_get(d, &d->vq[0], &id, &len);
		if (r < 0) {
			ksnprintf(msg, n, "%s: receive queue: %s", d->name, d->error);
			return FAIL;
		}
		if (r == 0) {
			cpu_relax();
			continue;
		}
		bufs++;
		bytes += len;
		const uint8_t *p = rx + (uint64_t)id * CON_RXBUF;
		for (uint32_t i = 0; i < len && !done; i++) {
			if (p[i] == '\n' || p[i] == '\r')
				done = ll > 0;
			else if (ll < sizeof(line) - 1 && p[i] >= 0x20 && p[i] < 0x7f)
				line[ll++] = (char)p[i];
		}
		repost(d, id);
	}
	line[ll] = 0;
	if (!done) {
		ksnprintf(msg, n, "%s: no line within 60 s (%u bytes)", d->name, bytes);
		return FAIL;
	}
	kprintf("# virtio-input: %s\n", line);
	ksnprintf(msg, n, "%s: %zu characters, %u bytes in %u buffers", d->name, ll,
		  bytes, bufs);
	vd_reset(d);
	return PASS;
}
