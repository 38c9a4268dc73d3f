/* The virtio driver core: discovery, the three transports (virtio-pci
 * modern, the legacy I/O BAR of transitional devices, virtio-mmio versions
 * 1 and 2), the status and feature handshake, and split virtqueues.
 *
 * Completions are polled: the drivers ask for no interrupts
 * (VRING_AVAIL_F_NO_INTERRUPT) and read the used ring, which costs no exit,
 * while the PIT keeps time for the timeouts. INTx is switched off in the PCI
 * command register and MSI-X is left disabled; the ISR register is still
 * read where a check wants to know that the device would have interrupted.
 */
#include "virtio.h"
#include "pci.h"

/* Common configuration (virtio-pci modern). */
#define CC_DFSELECT 0
#define CC_MSIX 16
#define CC_DF 4
#define CC_GFSELECT 8
#define CC_GF 12
#define CC_NUMQ 18
#define CC_STATUS 20
#define CC_CFGGEN 21
#define CC_QSELECT 22
#define CC_QSIZE 24
#define CC_QMSIX 26
#define CC_QENABLE 28
#define CC_QNOFF 30
#define CC_QDESC 32
#define CC_QAVAIL 40
#define CC_QUSED 48

/* The legacy I/O BAR. */
#define LG_HOST_FEATURES 0
#define LG_GUEST_FEATURES 4
#define LG_QUEUE_PFN 8
#define LG_QUEUE_NUM 12
#define LG_QUEUE_SEL 14
#define LG_QUEUE_NOTIFY 16
#define LG_STATUS 18
#define LG_ISR 19
#define LG_CONFIG 20 /* with MSI-X off */

/* virtio-mmio. */
#define MM_MAGIC 0x000
#define MM_VERSION 0x004
#define MM_DEVICE_ID 0x008
#define MM_VENDOR_ID 0x00c
#define MM_DEV_FEATURES 0x010
#define MM_DEV_FEATURES_SEL 0x014
#define MM_DRV_FEATURES 0x020
#define MM_DRV_FEATURES_SEL 0x024
#define MM_GUEST_PAGE_SIZE 0x028 /* version 1 */
#define MM_QUEUE_SEL 0x030
#define MM_QUEUE_NUM_MAX 0x034
#define MM_QUEUE_NUM 0x038
#define MM_QUEUE_ALIGN 0x03c /* version 1 */
#define MM_QUEUE_PFN 0x040   /* version 1 */
#define MM_QUEUE_READY 0x044
#define MM_QUEUE_NOTIFY 0x050
#define MM_INT_STATUS 0x060
#define MM_INT_ACK 0x064
#define MM_STATUS 0x070
#define MM_QUEUE_DESC 0x080
#define MM_QUEUE_AVAIL 0x090
#define MM_QUEUE_USED 0x0a0
#define MM_CONFIG_GEN 0x0fc
#define MM_CONFIG 0x100
#define MMIO_MAGIC 0x74726976 /* "virt" */

#define MAX_VDEVS 16
#define MAX_NOTES 8

struct vdev vdevs[MAX_VDEVS];
int nvdevs;
static bool discovered, force_legacy;
static char notes[MAX_NOTES][112];
static int nnotes;

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
	if (nnotes == MAX_NOTES)
		return;
	va_list ap;
	va_start(ap, fmt);
	kvsnprintf(notes[nnotes++], sizeof(notes[0]), fmt, ap);
	va_end(ap);
}

static const char *type_name(int type)
{
	switch (type) {
	case VIRTIO_ID_NET:
		return "net";
	case VIRTIO_ID_BLK:
		return "blk";
	case VIRTIO_ID_CONSOLE:
		return "console";
	case VIRTIO_ID_RNG:
		return "rng";
	case 5:
		return "balloon";
	case 9:
		return "9p";
	case 19:
		return "vsock";
	default:
		return "dev";
	}
}

const char *vtransport_name(const struct vdev *d)
{
	switch (d->t) {
	case VT_PCI:
		return "virtio-pci";
	case VT_PCI_LEGACY:
		return "virtio-pci legacy";
	default:
		return d->version == 1 ? "virtio-mmio v1" : "virtio-mmio v2";
	}
}

/* Modern interface: VIRTIO_F_VERSION_1 is offered and FEATURES_OK exists. */
bool vd_modern(const struct vdev *d)
{
	return d->t == VT_PCI || (d->t == VT_MMIO && d->version == 2);
}

static struct vdev *vdev_new(int type)
{
	if (nvdevs == MAX_VDEVS) {
		note("more than %d virtio devices; the rest are ignored", MAX_VDEVS);
		return NULL;
	}
	struct vdev *d = &vdevs[nvdevs];
	memset(d, 0, sizeof(*d));
	d->type = type;
	for (int i = 0; i < nvdevs; i++)
		if (vdevs[i].type == type)
			d->nth++;
	ksnprintf(d->name, sizeof(d->name), "%s%d", type_name(type), d->nth);
	nvdevs++;
	return d;
}

struct vdev *vdev_find(int type, int nth)
{
	for (int i = 0; i < nvdevs; i++)
		if (vdevs[i].type == type && vdevs[i].nth == nth)
			return &vdevs[i];
	return NULL;
}

bool virtio_present(int type)
{
	return vdev_find(type, 0) != NULL;
}

/* ---- Discovery: PCI -------------------------------------------------- */

struct vcap {
	bool found;
	uint8_t bar;
	uint32_t off, len, mult;
};

static uint64_t cap_map(uint32_t bdf, const struct vcap *c, const char *what,
			char *err, size_t n)
{
	struct pci_bar b;
	if (!pci_bar(bdf, c->bar, &b)) {
		ksnprintf(err, n, "%s: BAR%u unusable", what, c->bar);
		return 0;
	}
	if (b.io) {
		ksnprintf(err, n, "%s: BAR%u is an I/O BAR (not supported here)",
			  what, c->bar);
		return 0;
	}
	void *p = ioremap(b.addr + c->off, c->len ? c->len : 1);
	if (!p) {
		ksnprintf(err, n, "%s: BAR%u at 0x%lx cannot be mapped", what,
			  c->bar, b.addr);
		return 0;
	}
	return (uint64_t)(uintptr_t)p;
}

static void pci_found(uint32_t bdf, uint16_t vendor, uint16_t device)
{
	if (vendor != 0x1af4 || device < 0x1000 || device > 0x107f)
		return;
	bool transitional = device < 0x1040;
	int type = transitional ? pci_read16(bdf, 0x2e) : device - 0x1040;
	char loc[16];
	ksnprintf(loc, sizeof(loc), "%02x:%02x.%x", bdf >> 8, (bdf >> 3) & 31, bdf & 7);

	struct vcap caps[5];
	memset(caps, 0, sizeof(caps));
	for (uint8_t p = pci_find_cap(bdf, 0x09, 0); p; p = pci_find_cap(bdf, 0x09, p)) {
		uint8_t t = pci_read8(bdf, p + 3u);
		if (t < 1 || t > 4 || caps[t].found)
			continue;
		caps[t].found = true;
		caps[t].bar = pci_read8(bdf, p + 4u);
		caps[t].off = pci_read32(bdf, p + 8u);
		caps[t].len = pci_read32(bdf, p + 12u);
		if (t == 2)
			caps[t].mult = pci_read32(bdf, p + 16u);
	}
	bool modern = caps[1].found && caps[2].found && caps[3].found;
	pci_enable(bdf);

	struct vdev *d = vdev_new(type);
	if (!d)
		return;
	d->bdf = bdf;
	char err[96] = "";
	if (modern && !(transitional && force_legacy)) {
		d->t = VT_PCI;
		d->common = cap_map(bdf, &caps[1], "common cfg", err, sizeof(err));
		if (d->common)
			d->notify = cap_map(bdf, &caps[2], "notify", err, sizeof(err));
		if (d->notify)
			d->isr = cap_map(bdf, &caps[3], "ISR", err, sizeof(err));
		if (d->isr && caps[4].found)
			d->devcfg = cap_map(bdf, &caps[4], "device cfg", err, sizeof(err));
		d->notify_mult = caps[2].mult;
		if (err[0]) {
			note("pci %s %04x:%04x: %s; ignored", loc, vendor, device, err);
			nvdevs--;
			return;
		}
		ksnprintf(d->where, sizeof(d->where),
			  "pci %s %04x:%04x, %s, common BAR%u+0x%x, notify BAR%u+0x%x x%u",
			  loc, vendor, device,
			  transitional ? "transitional, modern interface" : "modern",
			  caps[1].bar, caps[1].off, caps[2].bar, caps[2].off,
			  caps[2].mult);
	} else if (transitional) {
		struct pci_bar b;
		if (!pci_bar(bdf, 0, &b) || !b.io || b.addr > 0xffff) {
			note("pci %s %04x:%04x: no legacy I/O BAR0; ignored", loc,
			     vendor, device);
			nvdevs--;
			return;
		}
		d->t = VT_PCI_LEGACY;
		d->io = (uint16_t)b.addr;
		ksnprintf(d->where, sizeof(d->where),
			  "pci %s %04x:%04x, legacy interface, I/O BAR0 at 0x%x%s",
			  loc, vendor, device, d->io,
			  modern ? " (modern one not used: virtio_pci=legacy)" : "");
	} else {
		note("pci %s %04x:%04x: modern device without its capabilities; ignored",
		     loc, vendor, device);
		nvdevs--;
	}
}

/* ---- Discovery: MMIO ------------------------------------------------- */

static void mmio_found(uint64_t pa, uint64_t size, int irq, const char *source)
{
	for (int i = 0; i < nvdevs; i++)
		if (vdevs[i].t == VT_MMIO && vdevs[i].phys == pa)
			return; /* in the device tree and on the command line */
	if (size && size < 0x100) {
		note("virtio-mmio at 0x%lx (%s): window of %lu bytes is too small",
		     pa, source, size);
		return;
	}
	uint64_t base = (uint64_t)(uintptr_t)ioremap(pa, 0x200);
	if (!base) {
		note("virtio-mmio at 0x%lx (%s) cannot be mapped", pa, source);
		return;
	}
	uint32_t magic = mmio_read32(base + MM_MAGIC);
	uint32_t version = mmio_read32(base + MM_VERSION);
	uint32_t id = mmio_read32(base + MM_DEVICE_ID);
	if (magic != MMIO_MAGIC || version < 1 || version > 2) {
		note("virtio-mmio at 0x%lx (%s): magic 0x%x, version %u", pa, source,
		     magic, version);
		return;
	}
	if (id == 0)
		return; /* a transport without a device behind it */
	struct vdev *d = vdev_new((int)id);
	if (!d)
		return;
	d->t = VT_MMIO;
	d->base = base;
	d->phys = pa;
	d->version = (int)version;
	d->irq = irq;
	ksnprintf(d->where, sizeof(d->where),
		  "mmio 0x%lx, version %u, vendor 0x%x, irq %d, from the %s", pa,
		  version, mmio_read32(base + MM_VENDOR_ID), irq, source);
}

/* A number as Linux's memparse reads it: decimal or 0x hex, then an
 * optional K, M or G. Returns the characters used, 0 if none. */
static size_t parse_num(const char *s, size_t len, uint64_t *out, bool suffix)
{
	size_t i = 0;
	uint64_t v = 0;
	unsigned base = 10;
	if (len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		i = 2;
	}
	size_t start = i;
	for (; i < len; i++) {
		char c = s[i];
		unsigned dgt;
		if (c >= '0' && c <= '9')
			dgt = (unsigned)(c - '0');
		else if (base == 16 && c >= 'a' && c <= 'f')
			dgt = (unsigned)(c - 'a' + 10);
		else if (base == 16 && c >= 'A' && c <= 'F')
			dgt = (unsigned)(c - 'A' + 10);
		else
			break;
		v = v * base + dgt;
	}
	if (i == start)
		return 0;
	if (suffix && i < len) {
		char c = s[i];
		int shift = c == 'k' || c == 'K' ? 10 : c == 'm' || c == 'M' ? 20
			    : c == 'g' || c == 'G' ? 30 : 0;
		if (shift) {
			v <<= shift;
			i++;
		}
	}
	*out = v;
	return i;
}

/* virtio_mmio.device=SIZE@BASE:IRQ[:ID], as Linux reads it; and the
 * kernel's own virtio_pci=legacy. */
static void parse_cmdline_devices(void)
{
	const char *s = M.cmdline;
	while (*s) {
		while (*s == ' ')
			s++;
		const char *w = s;
		while (*s && *s != ' ')
			s++;
		size_t wl = (size_t)(s - w);
		static const char key[] = "virtio_mmio.device=";
		if (wl == 17 && !strncmp(w, "virtio_pci=legacy", 17)) {
			force_legacy = true;
			continue;
		}
		if (wl < sizeof(key) - 1 || strncmp(w, key, sizeof(key) - 1))
			continue;
		const char *v = w + sizeof(key) - 1;
		size_t vl = wl - (sizeof(key) - 1), i;
		uint64_t size, base, irq;
		i = parse_num(v, vl, &size, true);
		if (!i || i >= vl || v[i] != '@')
			goto bad;
		v += i + 1;
		vl -= i + 1;
		i = parse_num(v, vl, &base, false);
		if (!i || i >= vl || v[i] != ':')
			goto bad;
		v += i + 1;
		vl -= i + 1;
		i = parse_num(v, vl, &irq, false);
		if (!i || (i < vl && v[i] != ':'))
			goto bad;
		mmio_found(base, size, (int)irq, "command line");
		continue;
bad:
		note("cannot parse %.*s", (int)(wl > 80 ? 80 : wl), w);
	}
}

void virtio_discover(void)
{
	if (discovered)
		return;
	discovered = true;
	parse_cmdline_devices();
	if (M.dtb_present && M.fdt.valid)
		for (int i = 0; i < M.fdt.nvirtio && i < FDT_MAX_VIRTIO; i++)
			mmio_found(M.fdt.virtio[i].addr, M.fdt.virtio[i].size,
				   M.fdt.virtio[i].irq, "device tree");
	/* Bus 0 behind 0xcf8/0xcfc (where nothing answers, every slot reads
	 * all ones). */
	pci_scan(pci_found);
}

void virtio_describe(void)
{
	for (int i = 0; i < nnotes; i++)
		kprintf("# virtio: %s\n", notes[i]);
	for (int i = 0; i < nvdevs; i++)
		kprintf("# virtio: %s on %s\n", vdevs[i].name, vdevs[i].where);
}

/* ---- Register access by transport ------------------------------------ */

uint8_t vd_status(struct vdev *d)
{
	switch (d->t) {
	case VT_PCI:
		return mmio_read8(d->common + CC_STATUS);
	case VT_PCI_LEGACY:
		return inb(d->io + LG_STATUS);
	default:
		return (uint8_t)mmio_read32(d->base + MM_STATUS);
	}
}

void vd_set_status(struct vdev *d, uint8_t s)
{
	switch (d->t) {
	case VT_PCI:
		mmio_write8(d->common + CC_STATUS, s);
		break;
	case VT_PCI_LEGACY:
		outb(d->io + LG_STATUS, s);
		break;
	default:
		mmio_write32(d->base + MM_STATUS, s);
	}
}

static uint64_t get_features(struct vdev *d)
{
	switch (d->t) {
	case VT_PCI:
		mmio_write32(d->common + CC_DFSELECT, 0);
		uint64_t lo = mmio_read32(d->common + CC_DF);
		mmio_write32(d->common + CC_DFSELECT, 1);
		return lo | (uint64_t)mmio_read32(d->common + CC_DF) << 32;
	case VT_PCI_LEGACY:
		return inl(d->io + LG_HOST_FEATURES);
	default:
		mmio_write32(d->base + MM_DEV_FEATURES_SEL, 0);
		uint64_t l = mmio_read32(d->base + MM_DEV_FEATURES);
		if (d->version == 1)
			return l;
		mmio_write32(d->base + MM_DEV_FEATURES_SEL, 1);
		return l | (uint64_t)mmio_read32(d->base + MM_DEV_FEATURES) << 32;
	}
}

static void set_features(struct vdev *d, uint64_t f)
{
	switch (d->t) {
	case VT_PCI:
		mmio_write32(d->common + CC_GFSELECT, 0);
		mmio_write32(d->common + CC_GF, (uint32_t)f);
		mmio_write32(d->common + CC_GFSELECT, 1);
		mmio_write32(d->common + CC_GF, (uint32_t)(f >> 32));
		break;
	case VT_PCI_LEGACY:
		outl(d->io + LG_GUEST_FEATURES, (uint32_t)f);
		break;
	default:
		mmio_write32(d->base + MM_DRV_FEATURES_SEL, 0);
		mmio_write32(d->base + MM_DRV_FEATURES, (uint32_t)f);
		if (d->version == 2) {
			mmio_write32(d->base + MM_DRV_FEATURES_SEL, 1);
			mmio_write32(d->base + MM_DRV_FEATURES, (uint32_t)(f >> 32));
		}
	}
}

static uint8_t cfg_generation(struct vdev *d)
{
	if (d->t == VT_PCI)
		return mmio_read8(d->common + CC_CFGGEN);
	if (d->t == VT_MMIO && d->version == 2)
		return (uint8_t)mmio_read32(d->base + MM_CONFIG_GEN);
	return 0;
}

static uint32_t cfg_read(struct vdev *d, uint32_t off, int width)
{
	if (d->t == VT_PCI_LEGACY) {
		uint16_t p = (uint16_t)(d->io + LG_CONFIG + off);
		return width == 1 ? inb(p) : width == 2 ? inw(p) : inl(p);
	}
	uint64_t a = d->t == VT_PCI ? d->devcfg + off : d->base + MM_CONFIG + off;
	if (d->t == VT_PCI && !d->devcfg)
		return 0;
	return width == 1 ? mmio_read8(a) : width == 2 ? mmio_read16(a) : mmio_read32(a);
}

/* A device configuration field; 64-bit fields are read as two halves and
 * again if the configuration generation moved in between. */
uint64_t vd_cfg(struct vdev *d, uint32_t off, int width)
{
	if (width != 8)
		return cfg_read(d, off, width);
	uint64_t v = 0;
	for (int tries = 0; tries < 4; tries++) {
		uint8_t g = cfg_generation(d);
		v = cfg_read(d, off, 4) | (uint64_t)cfg_read(d, off + 4, 4) << 32;
		if (cfg_generation(d) == g)
			break;
	}
	return v;
}

/* A 32-bit driver-writable configuration field. */
void vd_cfg_write32(struct vdev *d, uint32_t off, uint32_t v)
{
	if (d->t == VT_PCI_LEGACY)
		outl((uint16_t)(d->io + LG_CONFIG + off), v);
	else if (d->t == VT_PCI && d->devcfg)
		mmio_write32(d->devcfg + off, v);
	else if (d->t == VT_MMIO)
		mmio_write32(d->base + MM_CONFIG + off, v);
}

/* NAME=NUMBER on the command line (the last one counts). */
bool vd_param_u64(const char *name, uint64_t *out)
{
	size_t nl = strlen(name);
	bool found = false;
	const char *s = M.cmdline, *w;
	for (size_t wl; (wl = next_word(&s, &w));) {
		if (wl > nl + 1 && !strncmp(w, name, nl) && w[nl] == '=')
			found = parse_u64(w + nl + 1, wl - nl - 1, out) || found;
	}
	return found;
}

uint8_t vd_isr(struct vdev *d)
{
	switch (d->t) {
	case VT_PCI:
		return mmio_read8(d->isr);
	case VT_PCI_LEGACY:
		return inb(d->io + LG_ISR);
	default: {
		uint32_t v = mmio_read32(d->base + MM_INT_STATUS);
		if (v)
			mmio_write32(d->base + MM_INT_ACK, v);
		return (uint8_t)v;
	}
	}
}

static void queue_select(struct vdev *d, int q)
{
	switch (d->t) {
	case VT_PCI:
		mmio_write16(d->common + CC_QSELECT, (uint16_t)q);
		break;
	case VT_PCI_LEGACY:
		outw(d->io + LG_QUEUE_SEL, (uint16_t)q);
		break;
	default:
		mmio_write32(d->base + MM_QUEUE_SEL, (uint32_t)q);
	}
}

uint16_t vq_max(struct vdev *d, int q)
{
	queue_select(d, q);
	switch (d->t) {
	case VT_PCI:
		return mmio_read16(d->common + CC_QSIZE);
	case VT_PCI_LEGACY:
		return inw(d->io + LG_QUEUE_NUM);
	default: {
		uint32_t m = mmio_read32(d->base + MM_QUEUE_NUM_MAX);
		return m > 0xffff ? 0xffff : (uint16_t)m;
	}
	}
}

/* The size the device holds for queue q (virtio-pci modern only; the
 * other transports cannot say: 0). */
uint16_t vq_size_readback(struct vdev *d, int q)
{
	if (d->t != VT_PCI)
		return 0;
	queue_select(d, q);
	return mmio_read16(d->common + CC_QSIZE);
}

/* How many queues the device has: the common configuration says so; for
 * the other transports, the queues with a non-zero size among the first
 * VQ_MAX. */
uint16_t vd_num_queues(struct vdev *d)
{
	if (d->t == VT_PCI)
		return mmio_read16(d->common + CC_NUMQ);
	uint16_t n = 0;
	while (n < VQ_MAX && vq_max(d, n))
		n++;
	return n;
}

/* True once `n` PIT ticks have passed since (t0, c0), or the TSC says
 * they must have (at up to 5 GHz): a dead timer cannot hang a wait. */
bool expired(uint64_t t0, uint64_t c0, unsigned n)
{
	return ticks - t0 > n || rdtsc() - c0 > (uint64_t)n * 50000000ull;
}

/* The virtio checks count their timeouts in PIT ticks. The first tick
 * may come late on a loaded host (wait_tick() gives it 50 ms): up to 20
 * such waits. */
bool virtio_timer_ok(char *msg, size_t n)
{
	wait_tick();
	for (int i = 0; i < 19 && !timer_alive(); i++)
		wait_tick();
	if (timer_alive())
		return true;
	ksnprintf(msg, n, "no PIT ticks to time the device by");
	return false;
}

bool vd_reset(struct vdev *d)
{
	vd_set_status(d, 0);
	/* The driver waits until the device reads 0: a reset may take time. */
	uint64_t t0 = ticks, c0 = rdtsc();
	while (vd_status(d) != 0) {
		if (expired(t0, c0, PIT_HZ / 2))
			return false;
		cpu_relax();
	}
	for (int i = 0; i < VQ_MAX; i++)
		d->vq[i].ready = false;
	d->error[0] = 0;
	return true;
}

/* Reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK (checked). */
bool vd_begin(struct vdev *d, uint64_t want, char *err, size_t n)
{
	if (!vd_reset(d)) {
		ksnprintf(err, n, "%s: status still 0x%x 500 ms after a reset", d->name,
			  vd_status(d));
		return false;
	}
	uint8_t s = VIRTIO_S_ACKNOWLEDGE;
	vd_set_status(d, s);
	s |= VIRTIO_S_DRIVER;
	vd_set_status(d, s);
	d->offered = get_features(d);
	uint64_t f = d->offered & want;
	if (vd_modern(d)) {
		if (!(d->offered & VIRTIO_F_VERSION_1)) {
			ksnprintf(err, n, "%s: the %s interface does not offer "
				  "VIRTIO_F_VERSION_1 (features 0x%lx)", d->name,
				  vtransport_name(d), d->offered);
			vd_set_status(d, s | VIRTIO_S_FAILED);
			return false;
		}
		f |= VIRTIO_F_VERSION_1;
	} else {
		f &= 0xffffffffull;
	}
	set_features(d, f);
	d->features = f;
	if (d->t == VT_MMIO && d->version == 1)
		mmio_write32(d->base + MM_GUEST_PAGE_SIZE, 4096);
	if (vd_modern(d)) {
		s |= VIRTIO_S_FEATURES_OK;
		vd_set_status(d, s);
		uint8_t got = vd_status(d);
		if (!(got & VIRTIO_S_FEATURES_OK)) {
			ksnprintf(err, n, "%s: FEATURES_OK did not stick (status 0x%x, "
				  "features 0x%lx of 0x%lx)", d->name, got, f,
				  d->offered);
			vd_set_status(d, got | VIRTIO_S_FAILED);
			return false;
		}
	}
	return true;
}

/* ---- MSI-X (virtio-pci, modern interface; the blkbench check) ---------- */

#define PCI_CAP_MSIX 0x11
#define MSIX_ENABLE 0x8000
#define MSIX_FMASK 0x4000
#define MSI_NO_VECTOR 0xffff

/* Enables MSI-X on the function: table entry `entry` sends `vector`
 * (fixed, edge) to this CPU's local APIC; the other entries stay as the
 * device has them (masked after a reset). No configuration vector. Call
 * between vd_begin and the queues' set-up (4.1.5.1.3), then
 * vq_set_vector. False (err says why) when there is no MSI-X to use. */
bool vd_msix_enable(struct vdev *d, unsigned entry, uint8_t vector, char *err,
		    size_t n)
{
	if (d->t != VT_PCI) {
		ksnprintf(err, n, "MSI-X only on the modern virtio-pci interface");
		return false;
	}
	uint8_t cap = pci_find_cap(d->bdf, PCI_CAP_MSIX, 0);
	if (!cap) {
		ksnprintf(err, n, "no MSI-X capability");
		return false;
	}
	uint16_t ctrl = pci_read16(d->bdf, cap + 2u);
	if (entry > (ctrl & 0x7ffu)) {
		ksnprintf(err, n, "MSI-X table of %u entries", (ctrl & 0x7ffu) + 1);
		return false;
	}
	uint32_t tbl = pci_read32(d->bdf, cap + 4u);
	struct pci_bar b;
	if (!pci_bar(d->bdf, (int)(tbl & 7), &b) || b.io) {
		ksnprintf(err, n, "MSI-X table BAR%u unusable", tbl & 7);
		return false;
	}
	uint64_t e = (uint64_t)(uintptr_t)ioremap(b.addr + (tbl & ~7u) + 16ull * entry, 16);
	if (!e) {
		ksnprintf(err, n, "MSI-X table at 0x%lx cannot be mapped", b.addr);
		return false;
	}
	/* As Linux: enabled with the function masked, the entry written,
	 * then the function unmasked. */
	pci_write16(d->bdf, cap + 2u, (uint16_t)(ctrl | MSIX_ENABLE | MSIX_FMASK));
	mmio_write32(e + 0, 0xfee00000u | lapic_id() << 12);
	mmio_write32(e + 4, 0);
	mmio_write32(e + 8, vector);
	mmio_write32(e + 12, 0); /* unmasked */
	pci_write16(d->bdf, cap + 2u, (uint16_t)((ctrl | MSIX_ENABLE) & ~MSIX_FMASK));
	mmio_write16(d->common + CC_MSIX, MSI_NO_VECTOR);
	d->msix_cap = cap;
	return true;
}

/* MSI-X off again (after vd_reset, which gives every queue NO_VECTOR). */
void vd_msix_disable(struct vdev *d)
{
	if (!d->msix_cap)
		return;
	uint16_t ctrl = pci_read16(d->bdf, d->msix_cap + 2u);
	pci_write16(d->bdf, d->msix_cap + 2u,
		    (uint16_t)(ctrl & ~(MSIX_ENABLE | MSIX_FMASK)));
	d->msix_cap = 0;
}

/* Queue q interrupts through MSI-X table entry `entry`; returns what the
 * device reads back (0xffff, NO_VECTOR: refused). */
uint16_t vq_set_vector(struct vdev *d, int q, uint16_t entry)
{
	if (d->t != VT_PCI)
		return MSI_NO_VECTOR;
	queue_select(d, q);
	mmio_write16(d->common + CC_QMSIX, entry);
	return mmio_read16(d->common + CC_QMSIX);
}

void vd_driver_ok(struct vdev *d)
{
	vd_set_status(d, (uint8_t)(vd_status(d) | VIRTIO_S_DRIVER_OK));
}

/* ---- Rings ------------------------------------------------------------ */

static uint64_t ring_bytes(uint16_t size, uint64_t *avail_off, uint64_t *used_off)
{
	uint64_t a = 16ull * size;
	uint64_t u = (a + 6 + 2ull * size + 4095) & ~4095ull;
	if (avail_off)
		*avail_off = a;
	if (used_off)
		*used_off = u;
	return u + 6 + 8ull * size;
}

/* The driver's own arrays, after the largest ring. */
static uint64_t private_bytes(uint16_t alloc)
{
	return (uint64_t)alloc * (2 + 2 + 4);
}

/* Sets queue q up with `size` entries (0: the kernel's choice; the legacy
 * PCI interface has the device's size only). The ring uses the legacy
 * layout (used ring on the next 4 KiB boundary), which every transport
 * accepts. */
bool vq_setup(struct vdev *d, int q, uint16_t size, char *err, size_t n)
{
	if (q < 0 || q >= VQ_MAX) {
		ksnprintf(err, n, "%s: queue %d is beyond this driver", d->name, q);
		return false;
	}
	struct vq *v = &d->vq[q];
	uint16_t max = vq_max(d, q);
	if (!max) {
		ksnprintf(err, n, "%s: queue %d does not exist (size 0)", d->name, q);
		return false;
	}
	if (d->t == VT_MMIO && d->version == 2 && mmio_read32(d->base + MM_QUEUE_READY)) {
		ksnprintf(err, n, "%s: queue %d is ready before it was set up", d->name, q);
		return false;
	}
	if (d->t == VT_PCI_LEGACY)
		size = max;
	else if (!size)
		size = max < VQ_SIZE_MODERN ? max : VQ_SIZE_MODERN;
	if (size > max || size > VQ_SIZE_MAX) {
		ksnprintf(err, n, "%s: queue %d of %u entries (at most %u here)", d->name,
			  q, size, max < VQ_SIZE_MAX ? max : VQ_SIZE_MAX);
		return false;
	}
	if (!v->mem) {
		v->alloc = max < VQ_SIZE_MAX ? max : VQ_SIZE_MAX;
		uint64_t rb = (ring_bytes(v->alloc, NULL, NULL) + 7) & ~7ull;
		v->mem = palloc(rb + private_bytes(v->alloc), 4096);
		if (!v->mem) {
			ksnprintf(err, n, "%s: no memory for queue %d", d->name, q);
			return false;
		}
		v->chain_wlen = (uint32_t *)(uintptr_t)(v->mem + rb);
		v->chain_len = (uint16_t *)(v->chain_wlen + v->alloc);
		v->next = v->chain_len + v->alloc;
	}
	if (size > v->alloc) {
		ksnprintf(err, n, "%s: queue %d grew to %u entries", d->name, q, size);
		return false;
	}
	uint64_t aoff, uoff, bytes = ring_bytes(size, &aoff, &uoff);
	zero((void *)(uintptr_t)v->mem, bytes);
	v->index = (uint16_t)q;
	v->size = size;
	v->max = max;
	v->desc = (volatile struct vring_desc *)(uintptr_t)v->mem;
	v->avail = (volatile struct vring_avail *)(uintptr_t)(v->mem + aoff);
	v->used = (volatile struct vring_used *)(uintptr_t)(v->mem + uoff);
	zero(v->chain_wlen, private_bytes(v->alloc));
	for (uint16_t i = 0; i < size; i++)
		v->next[i] = (uint16_t)(i + 1);
	v->free_head = 0;
	v->nfree = size;
	v->avail_idx = v->last_used = 0;
	v->avail->flags = VRING_AVAIL_F_NO_INTERRUPT;

	uint64_t desc = v->mem, avail = v->mem + aoff, used = v->mem + uoff;
	switch (d->t) {
	case VT_PCI:
		mmio_write16(d->common + CC_QSIZE, size);
		mmio_write32(d->common + CC_QDESC, (uint32_t)desc);
		mmio_write32(d->common + CC_QDESC + 4, (uint32_t)(desc >> 32));
		mmio_write32(d->common + CC_QAVAIL, (uint32_t)avail);
		mmio_write32(d->common + CC_QAVAIL + 4, (uint32_t)(avail >> 32));
		mmio_write32(d->common + CC_QUSED, (uint32_t)used);
		mmio_write32(d->common + CC_QUSED + 4, (uint32_t)(used >> 32));
		v->notify_off = mmio_read16(d->common + CC_QNOFF);
		mmio_write16(d->common + CC_QENABLE, 1);
		break;
	case VT_PCI_LEGACY:
		outl(d->io + LG_QUEUE_PFN, (uint32_t)(desc >> 12));
		break;
	default:
		mmio_write32(d->base + MM_QUEUE_NUM, size);
		if (d->version == 1) {
			mmio_write32(d->base + MM_QUEUE_ALIGN, 4096);
			mmio_write32(d->base + MM_QUEUE_PFN, (uint32_t)(desc >> 12));
		} else {
			mmio_write32(d->base + MM_QUEUE_DESC, (uint32_t)desc);
			mmio_write32(d->base + MM_QUEUE_DESC + 4, (uint32_t)(desc >> 32));
			mmio_write32(d->base + MM_QUEUE_AVAIL, (uint32_t)avail);
			mmio_write32(d->base + MM_QUEUE_AVAIL + 4, (uint32_t)(avail >> 32));
			mmio_write32(d->base + MM_QUEUE_USED, (uint32_t)used);
			mmio_write32(d->base + MM_QUEUE_USED + 4, (uint32_t)(used >> 32));
			mmio_write32(d->base + MM_QUEUE_READY, 1);
		}
	}
	v->ready = true;
	return true;
}

bool vd_start(struct vdev *d, uint64_t want, int nq, char *err, size_t n)
{
	if (!vd_begin(d, want, err, n))
		return false;
	for (int q = 0; q < nq; q++)
		if (!vq_setup(d, q, 0, err, n))
			return false;
	vd_driver_ok(d);
	uint8_t s = vd_status(d);
	if ((s & (VIRTIO_S_NEEDS_RESET | VIRTIO_S_FAILED)) || !(s & VIRTIO_S_DRIVER_OK)) {
		ksnprintf(err, n, "%s: status 0x%x after DRIVER_OK", d->name, s);
		return false;
	}
	return true;
}

/* Takes n descriptors off the free list, linked in order through the
 * driver's next[]: idx[0] is the head. The caller fills them, then
 * publishes the head. -1 when the ring has no room. */
int vq_reserve(struct vq *q, int n, uint16_t *idx)
{
	if (!q->ready || n < 1 || n > q->nfree)
		return -1;
	uint16_t i = q->free_head;
	for (int k = 0; k < n; k++) {
		idx[k] = i;
		i = q->next[i];
	}
	q->free_head = i;
	q->nfree = (uint16_t)(q->nfree - n);
	return idx[0];
}

/* Makes a reserved chain available. */
void vq_publish(struct vq *q, uint16_t head, int n, uint32_t wlen)
{
	q->chain_len[head] = (uint16_t)n;
	q->chain_wlen[head] = wlen;
	q->avail->ring[q->avail_idx % q->size] = head;
	barrier();
	q->avail_idx++;
	q->avail->idx = q->avail_idx;
}

/* Puts a chain on the available ring; returns its head, or -1 when the
 * ring has no room. Readable pieces must come before writable ones. */
int vq_add(struct vq *q, const struct vbuf *b, int n)
{
	uint16_t idx[VQ_SIZE_MAX > 64 ? 64 : VQ_SIZE_MAX];
	if (n > (int)ARRAY_SIZE(idx) || vq_reserve(q, n, idx) < 0)
		return -1;
	uint32_t wlen = 0;
	for (int k = 0; k < n; k++) {
		volatile struct vring_desc *dd = &q->desc[idx[k]];
		dd->addr = b[k].addr;
		dd->len = b[k].len;
		dd->flags = (uint16_t)((b[k].write ? VRING_DESC_F_WRITE : 0) |
				       (k + 1 < n ? VRING_DESC_F_NEXT : 0));
		dd->next = k + 1 < n ? idx[k + 1] : 0;
		if (b[k].write)
			wlen += b[k].len;
	}
	vq_publish(q, idx[0], n, wlen);
	return idx[0];
}

void vq_kick(struct vdev *d, struct vq *q)
{
	mb();
	switch (d->t) {
	case VT_PCI:
		mmio_write16(d->notify + (uint64_t)q->notify_off * d->notify_mult,
			     q->index);
		break;
	case VT_PCI_LEGACY:
		outw(d->io + LG_QUEUE_NOTIFY, q->index);
		break;
	default:
		mmio_write32(d->base + MM_QUEUE_NOTIFY, q->index);
	}
}

uint16_t vq_pending(const struct vq *q)
{
	return (uint16_t)(q->avail_idx - q->last_used);
}

/* Takes one completion off the used ring: 1, or 0 when there is none, or
 * -1 when the device broke the ring protocol (d->error says how). */
int vq_get(struct vdev *d, struct vq *q, uint32_t *id, uint32_t *len)
{
	uint16_t used_idx = q->used->idx;
	if (used_idx == q->last_used)
		return 0;
	barrier();
	if ((uint16_t)(used_idx - q->last_used) > vq_pending(q)) {
		ksnprintf(d->error, sizeof(d->error),
			  "queue %u: used idx %u runs ahead of %u buffers made available",
			  q->index, used_idx, q->avail_idx);
		q->last_used = used_idx;
		return -1;
	}
	volatile struct vring_used_elem *e = &q->used->ring[q->last_used % q->size];
	q->last_used++;
	*id = e->id;
	*len = e->len;
	if (*id >= q->size || !q->chain_len[*id]) {
		ksnprintf(d->error, sizeof(d->error),
			  "queue %u: used id %u is not a chain in flight", q->index, *id);
		return -1;
	}
	uint16_t n = q->chain_len[*id], i = (uint16_t)*id, tail = i;
	for (uint16_t k = 1; k < n; k++)
		tail = q->next[tail];
	q->next[tail] = q->free_head;
	q->free_head = i;
	q->nfree = (uint16_t)(q->nfree + n);
	q->chain_len[i] = 0;
	if (*len > q->chain_wlen[i]) {
		ksnprintf(d->error, sizeof(d->error),
			  "queue %u: used len %u for a chain with %u writable bytes",
			  q->index, *len, q->chain_wlen[i]);
		return -1;
	}
	return 1;
}

/* vq_get, waiting up to timeout_ticks PIT ticks (with a TSC bound too, so
 * a dead timer cannot hang the kernel): 1, 0 (timed out) or -1. */
int vq_wait(struct vdev *d, struct vq *q, uint32_t *id, uint32_t *len,
	    unsigned timeout_ticks)
{
	uint64_t t0 = ticks, c0 = rdtsc();
	for (;;) {
		int r = vq_get(d, q, id, len);
		if (r)
			return r;
		if (expired(t0, c0, timeout_ticks))
			return 0;
		cpu_relax();
	}
}
