/*
 * The virtio-9p check: a small 9P2000.L client. It attaches to the share,
 * creates a file, writes it, reads it back, lists the directory, renames
 * and removes the file, sends four requests at once, and tries to leave
 * the share: "..", a name with '/', a symlink to "/" and one to "..", and
 * a file the host put next to the share (p9-outside). Every escape must
 * fail. Runs the same under QEMU's -virtfs (tests/qemu-9p.bats).
 */
#include "virtio.h"

#define VIRTIO_ID_9P 9
#define P9_MSIZE 8192
#define P9_BUF 8192
#define NOFID 0xffffffffu

enum {
	RLERROR = 7, TLOPEN = 12, TLCREATE = 14, TSYMLINK = 16, TGETATTR = 24,
	TREADDIR = 40, TRENAMEAT = 74, TUNLINKAT = 76, TVERSION = 100,
	TATTACH = 104, TWALK = 110, TREAD = 116, TWRITE = 118, TCLUNK = 120,
	TREMOVE = 122,
};

static uint64_t p9_mem; /* 5 request/reply pairs */
static uint8_t *req, *rep;
static uint32_t rlen;
static uint16_t next_tag;
static struct vdev *dev;

/* ---- messages ------------------------------------------------------- */

static uint32_t pos;
static uint8_t *mbuf;

static void put8(uint8_t v) { mbuf[pos++] = v; }
static void put16(uint16_t v) { put8((uint8_t)v); put8((uint8_t)(v >> 8)); }
static void put32(uint32_t v) { put16((uint16_t)v); put16((uint16_t)(v >> 16)); }
static void put64(uint64_t v) { put32((uint32_t)v); put32((uint32_t)(v >> 32)); }
static void putstr(const char *s)
{
	size_t n = strlen(s);
	put16((uint16_t)n);
	memcpy(mbuf + pos, s, n);
	pos += (uint32_t)n;
}

static void begin(uint8_t *buf, uint8_t type)
{
	mbuf = buf;
	pos = 0;
	put32(0);
	put8(type);
	put16(next_tag++);
}

static uint32_t end(void)
{
	mbuf[0] = (uint8_t)pos;
	mbuf[1] = (uint8_t)(pos >> 8);
	mbuf[2] = (uint8_t)(pos >> 16);
	mbuf[3] = (uint8_t)(pos >> 24);
	return pos;
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p) { return get16(p) | (uint32_t)get16(p + 2) << 16; }
static uint64_t get64(const uint8_t *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }

static uint32_t rep_cap = P9_BUF;

/*
 * Sends a request made of the buffers b (req first, rep the first
 * device-writable one) and waits for the reply. Returns the reply type,
 * RLERROR with *err set, or -1 (msg says why).
 */
static int rpc_chain(const struct vbuf *b, int nb, uint32_t *err, char *msg,
		     size_t n)
{
	struct vq *q = &dev->vq[0];
	uint32_t id, got;
	uint8_t type = req[4];
	uint16_t tag = get16(req + 5);

	if (vq_add(q, b, nb) < 0) {
		ksnprintf(msg, n, "no room in the queue");
		return -1;
	}
	vq_kick(dev, q);
	int r = vq_wait(dev, q, &id, &got, 2 * PIT_HZ);
	if (r <= 0) {
		ksnprintf(msg, n, "message %u: %s", type,
			  r < 0 ? dev->error : "no reply within 2 s");
		return -1;
	}
	rlen = got;
	if (got < 7 || get16(rep + 5) != tag) {
		ksnprintf(msg, n, "message %u: malformed reply (%u bytes)", type, got);
		return -1;
	}
	if (rep[4] == RLERROR) {
		*err = got >= 11 ? get32(rep + 7) : 0;
		return RLERROR;
	}
	if (rep[4] != type + 1) {
		ksnprintf(msg, n, "message %u: reply type %u", type, rep[4]);
		return -1;
	}
	return rep[4];
}

/* req[0, len) out, the reply into rep. */
static int rpc(uint32_t len, uint32_t *err, char *msg, size_t n)
{
	struct vbuf b[2] = {
		{ (uint64_t)(uintptr_t)req, len, false },
		{ (uint64_t)(uintptr_t)rep, rep_cap, true },
	};
	int t = rpc_chain(b, 2, err, msg, n);

	if (t > 0 && get32(rep) != rlen) {
		ksnprintf(msg, n, "message %u: size field %u, %u bytes", req[4],
			  get32(rep), rlen);
		return -1;
	}
	return t;
}

/* An RPC that must succeed. */
static bool ok(const char *what, uint32_t len, char *msg, size_t n)
{
	uint32_t err = 0;
	int t = rpc(len, &err, msg, n);
	if (t == RLERROR)
		ksnprintf(msg, n, "%s: Rlerror %u", what, err);
	return t > 0 && t != RLERROR;
}

static uint32_t walk_msg(uint32_t fid, uint32_t newfid, int nw, const char *a,
			 const char *b, const char *c)
{
	const char *names[3] = { a, b, c };
	begin(req, TWALK);
	put32(fid);
	put32(newfid);
	put16((uint16_t)nw);
	for (int i = 0; i < nw; i++)
		putstr(names[i]);
	return end();
}

/*
 * A walk that must not get all the way: Rlerror, or fewer qids than
 * names. Returns false (msg set) if it reached the end.
 */
static bool walk_fails(const char *what, uint32_t newfid, int nw, const char *a,
		       const char *b, const char *c, char *msg, size_t n)
{
	uint32_t err = 0;
	int t = rpc(walk_msg(1, newfid, nw, a, b, c), &err, msg, n);
	if (t < 0)
		return false;
	if (t != RLERROR && get16(rep + 7) == nw) {
		ksnprintf(msg, n, "escape: %s was walked", what);
		return false;
	}
	return true;
}

static bool clunk(uint32_t fid, char *msg, size_t n)
{
	begin(req, TCLUNK);
	put32(fid);
	return ok("clunk", end(), msg, n);
}

static bool unlink_name(const char *name, char *msg, size_t n)
{
	begin(req, TUNLINKAT);
	put32(1);
	putstr(name);
	put32(0);
	return ok(name, end(), msg, n);
}

/* Does the directory opened as fid list name? */
static bool dir_lists(uint32_t fid, const char *name, bool *found, char *msg,
		      size_t n)
{
	uint64_t off = 0;
	size_t nl = strlen(name);
	*found = false;
	for (int round = 0; round < 64; round++) {
		begin(req, TREADDIR);
		put32(fid);
		put64(off);
		put32(P9_BUF - 11);
		if (!ok("readdir", end(), msg, n))
			return false;
		uint32_t count = get32(rep + 7);
		if (!count)
			return true;
		if (count > rlen - 11) {
			ksnprintf(msg, n, "readdir: count %u beyond the reply", count);
			return false;
		}
		for (uint32_t p = 11; p + 24 <= 11 + count;) {
			uint16_t l = get16(rep + p + 22);
			off = get64(rep + p + 13);
			if (l == nl && !memcmp(rep + p + 24, name, nl))
				*found = true;
			p += 24 + l;
		}
	}
	return true;
}

static bool p9_start(char *msg, size_t n, char *tag, size_t tagn)
{
	char err[96];
	if (!vd_start(dev, 1 /* VIRTIO_9P_MOUNT_TAG */, 1, err, sizeof(err))) {
		ksnprintf(msg, n, "%s", err);
		return false;
	}
	if (!(dev->features & 1)) {
		ksnprintf(msg, n, "%s: no mount tag feature", dev->name);
		return false;
	}
	uint16_t tl = (uint16_t)vd_cfg(dev, 0, 2);
	if (!tl || tl >= tagn) {
		ksnprintf(msg, n, "%s: tag length %u", dev->name, tl);
		return false;
	}
	for (uint16_t i = 0; i < tl; i++)
		tag[i] = (char)vd_cfg(dev, 2u + i, 1);
	tag[tl] = 0;
	if (!p9_mem)
		p9_mem = palloc(10 * P9_BUF, 4096);
	if (!p9_mem) {
		ksnprintf(msg, n, "no memory for buffers");
		return false;
	}
	req = (uint8_t *)(uintptr_t)p9_mem;
	rep = req + P9_BUF;
	rep_cap = P9_BUF;
	next_tag = 1;
	return true;
}

/* Four Tgetattr of the root at once, one notification. */
static bool in_flight(char *msg, size_t n)
{
	struct vq *q = &dev->vq[0];
	uint8_t *base = (uint8_t *)(uintptr_t)p9_mem + 2 * P9_BUF;
	uint16_t tags[4];
	for (int i = 0; i < 4; i++) {
		uint8_t *r = base + 2 * P9_BUF * (uint64_t)i;
		begin(r, TGETATTR);
		put32(1);
		put64(0x7ff);
		tags[i] = get16(r + 5);
		struct vbuf b[2] = {
			{ (uint64_t)(uintptr_t)r, end(), false },
			{ (uint64_t)(uintptr_t)(r + P9_BUF), P9_BUF, true },
		};
		if (vq_add(q, b, 2) < 0) {
			ksnprintf(msg, n, "no room for 4 requests");
			return false;
		}
	}
	vq_kick(dev, q);
	for (int i = 0; i < 4; i++) {
		uint32_t id, len;
		if (vq_wait(dev, q, &id, &len, 2 * PIT_HZ) <= 0) {
			ksnprintf(msg, n, "%d of 4 requests in flight answered", i);
			return false;
		}
	}
	for (int i = 0; i < 4; i++) {
		const uint8_t *r = base + 2 * P9_BUF * (uint64_t)i + P9_BUF;
		if (r[4] != TGETATTR + 1 || get16(r + 5) != tags[i]) {
			ksnprintf(msg, n, "request %d in flight: reply type %u tag %u",
				  i, r[4], get16(r + 5));
			return false;
		}
	}
	return true;
}

int check_virtio_9p(char *msg, size_t n)
{
	static const char text[] = "lkvm 9p check: written, read back, renamed, removed";
	char tag[64];
	uint32_t err = 0;
	bool found;

	dev = vdev_find(VIRTIO_ID_9P, 0);
	if (!dev) {
		ksnprintf(msg, n, "no virtio-9p device");
		return SKIP;
	}
	if (!virtio_timer_ok(msg, n) || !p9_start(msg, n, tag, sizeof(tag)))
		return FAIL;

	begin(req, TVERSION);
	put32(P9_MSIZE);
	putstr("9P2000.L");
	if (!ok("version", end(), msg, n))
		return FAIL;
	uint32_t msize = get32(rep + 7);
	if (msize > P9_MSIZE || msize < 4096) {
		ksnprintf(msg, n, "version: msize %u for %u asked", msize, P9_MSIZE);
		return FAIL;
	}
	begin(req, TATTACH);
	put32(1);
	put32(NOFID);
	putstr("root");
	putstr("");
	put32(0);
	if (!ok("attach", end(), msg, n))
		return FAIL;
	uint64_t root_path = get64(rep + 12);
	if (rep[7] != 0x80) {
		ksnprintf(msg, n, "attach: the root's qid is not a directory");
		return FAIL;
	}

	/* Create, write, read back. */
	if (!ok("walk (clone)", walk_msg(1, 2, 0, 0, 0, 0), msg, n))
		return FAIL;
	begin(req, TLCREATE);
	put32(2);
	putstr("p9-check");
	put32(02 | 0100 | 0200); /* O_RDWR | O_CREAT | O_EXCL */
	put32(0644);
	put32(0);
	if (!ok("lcreate", end(), msg, n))
		return FAIL;
	begin(req, TWRITE);
	put32(2);
	put64(0);
	put32(sizeof(text) - 1);
	memcpy(req + pos, text, sizeof(text) - 1);
	pos += sizeof(text) - 1;
	if (!ok("write", end(), msg, n))
		return FAIL;
	if (get32(rep + 7) != sizeof(text) - 1) {
		ksnprintf(msg, n, "write: %u of %u bytes", get32(rep + 7),
			  (unsigned)sizeof(text) - 1);
		return FAIL;
	}
	begin(req, TREAD);
	put32(2);
	put64(0);
	put32(4096);
	if (!ok("read", end(), msg, n))
		return FAIL;
	if (get32(rep + 7) != sizeof(text) - 1 ||
	    memcmp(rep + 11, text, sizeof(text) - 1)) {
		ksnprintf(msg, n, "read back %u bytes that differ", get32(rep + 7));
		return FAIL;
	}
	if (!clunk(2, msg, n))
		return FAIL;

	/* readdir lists it; rename; the old name is gone. */
	if (!ok("walk (clone)", walk_msg(1, 3, 0, 0, 0, 0), msg, n))
		return FAIL;
	begin(req, TLOPEN);
	put32(3);
	put32(0200000); /* O_RDONLY | O_DIRECTORY */
	if (!ok("lopen (dir)", end(), msg, n))
		return FAIL;
	if (!dir_lists(3, "p9-check", &found, msg, n))
		return FAIL;
	if (!found) {
		ksnprintf(msg, n, "readdir does not list p9-check");
		return FAIL;
	}
	if (!clunk(3, msg, n))
		return FAIL;
	begin(req, TRENAMEAT);
	put32(1);
	putstr("p9-check");
	put32(1);
	putstr("p9-renamed");
	if (!ok("renameat", end(), msg, n))
		return FAIL;
	if (!ok("walk to the new name", walk_msg(1, 4, 1, "p9-renamed", 0, 0), msg, n))
		return FAIL;
	if (rpc(walk_msg(1, 5, 1, "p9-check", 0, 0), &err, msg, n) != RLERROR) {
		ksnprintf(msg, n, "the old name is still there after rename");
		return FAIL;
	}

	if (!in_flight(msg, n))
		return FAIL;

	/* Escapes. */
	if (!ok("walk ..", walk_msg(1, 6, 1, "..", 0, 0), msg, n))
		return FAIL;
	if (get16(rep + 7) != 1 || get64(rep + 9 + 5) != root_path) {
		ksnprintf(msg, n, "escape: '..' of the root is not the root");
		return FAIL;
	}
	if (!clunk(6, msg, n))
		return FAIL;
	if (!walk_fails("'../p9-outside'", 7, 2, "..", "p9-outside", 0, msg, n) ||
	    !walk_fails("'../../p9-outside'", 7, 3, "..", "..", "p9-outside", msg, n) ||
	    !walk_fails("a name '../p9-outside'", 7, 1, "../p9-outside", 0, 0, msg, n))
		return FAIL;
	begin(req, TSYMLINK);
	put32(1);
	putstr("p9-abs");
	putstr("/");
	put32(0);
	if (!ok("symlink to /", end(), msg, n))
		return FAIL;
	begin(req, TSYMLINK);
	put32(1);
	putstr("p9-up");
	putstr("..");
	put32(0);
	if (!ok("symlink to ..", end(), msg, n))
		return FAIL;
	if (!walk_fails("'p9-abs/proc' (symlink to /)", 7, 2, "p9-abs", "proc", 0, msg, n) ||
	    !walk_fails("'p9-up/p9-outside' (symlink to ..)", 7, 2, "p9-up",
			"p9-outside", 0, msg, n))
		return FAIL;
	if (!ok("walk to the symlink", walk_msg(1, 8, 1, "p9-abs", 0, 0), msg, n))
		return FAIL;
	begin(req, TLOPEN);
	put32(8);
	put32(0200000);
	if (rpc(end(), &err, msg, n) != RLERROR) {
		ksnprintf(msg, n, "escape: the symlink to / was opened as a directory");
		return FAIL;
	}

	/* Remove the file and the symlinks. */
	begin(req, TREMOVE);
	put32(4);
	if (!ok("remove", end(), msg, n))
		return FAIL;
	if (rpc(walk_msg(1, 5, 1, "p9-renamed", 0, 0), &err, msg, n) != RLERROR) {
		ksnprintf(msg, n, "the file is still there after remove");
		return FAIL;
	}
	if (!unlink_name("p9-abs", msg, n) || !unlink_name("p9-up", msg, n) ||
	    !clunk(8, msg, n) || !clunk(1, msg, n))
		return FAIL;
	vd_reset(dev);
	ksnprintf(msg, n, "%s: tag '%s', msize %u: create, write, read back, readdir, "
		  "rename, remove, 4 in flight; 5 escapes refused",
		  vtransport_name(dev), tag, msize);
	return PASS;
}

/* ---- p9bench: the guest's side of bench/9p.sh ------------------------ */

/*
 *     tests=p9bench p9bench_op=write|read|meta p9bench_mib=N p9bench_n=N
 *
 * write: creates p9bench.dat and writes N MiB to it in 128 KiB Twrites;
 * read: reads N MiB of p9bench.dat (the host made it) in 128 KiB Treads;
 * meta: N times create (walk, lcreate, clunk), stat (walk, getattr,
 * clunk) and remove (unlinkat) of one file. One request in flight; the
 * data goes in and out of one buffer through a second descriptor, never
 * copied at CPL 0. N = 0 sets up (version, attach, open) and stops: the
 * baseline bench/9p.sh subtracts.
 */
#define BENCH_CHUNK (128u * 1024)
#define BENCH_MSIZE (BENCH_CHUNK + 4096)

static uint64_t bench_mem;

static bool bench_param(const char *key, uint64_t *out, const char **str,
			size_t *strl)
{
	size_t kl = strlen(key);
	for (const char *s = M.cmdline; *s;) {
		while (*s == ' ')
			s++;
		const char *w = s;
		while (*s && *s != ' ')
			s++;
		if ((size_t)(s - w) > kl && !strncmp(w, key, kl)) {
			if (str) {
				*str = w + kl;
				*strl = (size_t)(s - w) - kl;
				return true;
			}
			return parse_u64(w + kl, (size_t)(s - w) - kl, out);
		}
	}
	return false;
}

static bool bench_meta(uint64_t count, char *msg, size_t n)
{
	char name[24];
	for (uint64_t i = 0; i < count; i++) {
		ksnprintf(name, sizeof(name), "m%u", (unsigned)i);
		if (!ok("walk", walk_msg(1, 2, 0, 0, 0, 0), msg, n))
			return false;
		begin(req, TLCREATE);
		put32(2);
		putstr(name);
		put32(02 | 0100 | 01000);
		put32(0644);
		put32(0);
		if (!ok("lcreate", end(), msg, n) || !clunk(2, msg, n))
			return false;
		if (!ok("walk", walk_msg(1, 3, 1, name, 0, 0), msg, n))
			return false;
		begin(req, TGETATTR);
		put32(3);
		put64(0x7ff);
		if (!ok("getattr", end(), msg, n) || !clunk(3, msg, n))
			return false;
		if (!unlink_name(name, msg, n))
			return false;
	}
	return true;
}

static bool bench_io(bool write, uint64_t mib, uint8_t *data, char *msg,
		     size_t n)
{
	uint32_t err = 0;
	uint64_t chunks = mib * (1048576 / BENCH_CHUNK);
	for (uint64_t i = 0; i < chunks; i++) {
		struct vbuf b[3];
		begin(req, write ? TWRITE : TREAD);
		put32(2);
		put64(i * BENCH_CHUNK);
		put32(BENCH_CHUNK);
		b[0] = (struct vbuf){ (uint64_t)(uintptr_t)req, pos, false };
		if (write) {
			/* The size field counts the data in the next buffer. */
			uint32_t total = pos + BENCH_CHUNK;
			req[0] = (uint8_t)total;
			req[1] = (uint8_t)(total >> 8);
			req[2] = (uint8_t)(total >> 16);
			req[3] = (uint8_t)(total >> 24);
			b[1] = (struct vbuf){ (uint64_t)(uintptr_t)data, BENCH_CHUNK, false };
			b[2] = (struct vbuf){ (uint64_t)(uintptr_t)rep, 64, true };
		} else {
			end();
			b[1] = (struct vbuf){ (uint64_t)(uintptr_t)rep, 11, true };
			b[2] = (struct vbuf){ (uint64_t)(uintptr_t)data, BENCH_CHUNK, true };
		}
		int t = rpc_chain(b, 3, &err, msg, n);
		if (t == RLERROR)
			ksnprintf(msg, n, "%s at %u MiB: Rlerror %u", write ? "write" : "read",
				  (unsigned)(i * BENCH_CHUNK >> 20), err);
		if (t <= 0 || t == RLERROR)
			return false;
		if (get32(rep + 7) != BENCH_CHUNK) {
			ksnprintf(msg, n, "%s: %u of %u bytes at chunk %u", write ? "write" : "read",
				  get32(rep + 7), BENCH_CHUNK, (unsigned)i);
			return false;
		}
	}
	return true;
}

int check_p9bench(char *msg, size_t n)
{
	const char *op = "";
	size_t opl = 0;
	uint64_t mib = 0, count = 0;
	char tag[64];

	bench_param("p9bench_op=", 0, &op, &opl);
	bench_param("p9bench_mib=", &mib, 0, 0);
	bench_param("p9bench_n=", &count, 0, 0);
	bool w = opl == 5 && !strncmp(op, "write", 5);
	bool r = opl == 4 && !strncmp(op, "read", 4);
	bool m = opl == 4 && !strncmp(op, "meta", 4);
	if (!w && !r && !m) {
		ksnprintf(msg, n, "p9bench_op= must be write, read or meta");
		return FAIL;
	}
	dev = vdev_find(VIRTIO_ID_9P, 0);
	if (!dev) {
		ksnprintf(msg, n, "no virtio-9p device");
		return FAIL;
	}
	if (!virtio_timer_ok(msg, n) || !p9_start(msg, n, tag, sizeof(tag)))
		return FAIL;
	if (!bench_mem)
		bench_mem = palloc(3 * (uint64_t)BENCH_MSIZE, 4096);
	if (!bench_mem) {
		ksnprintf(msg, n, "no memory for 3 x %u bytes", BENCH_MSIZE);
		return FAIL;
	}
	req = (uint8_t *)(uintptr_t)bench_mem;
	rep = req + BENCH_MSIZE;
	rep_cap = BENCH_MSIZE;
	uint8_t *data = rep + BENCH_MSIZE;
	memset(data, 0x5a, BENCH_CHUNK);

	begin(req, TVERSION);
	put32(BENCH_MSIZE);
	putstr("9P2000.L");
	if (!ok("version", end(), msg, n))
		return FAIL;
	if (get32(rep + 7) < BENCH_MSIZE) {
		ksnprintf(msg, n, "msize %u: less than %u", get32(rep + 7), BENCH_MSIZE);
		return FAIL;
	}
	begin(req, TATTACH);
	put32(1);
	put32(NOFID);
	putstr("bench");
	putstr("");
	put32(0);
	if (!ok("attach", end(), msg, n))
		return FAIL;
	if (w || r) {
		if (!ok("walk", walk_msg(1, 2, r ? 1 : 0, "p9bench.dat", 0, 0), msg, n))
			return FAIL;
		if (w) {
			begin(req, TLCREATE);
			put32(2);
			putstr("p9bench.dat");
			put32(02 | 0100 | 01000); /* O_RDWR | O_CREAT | O_TRUNC */
			put32(0644);
			put32(0);
		} else {
			begin(req, TLOPEN);
			put32(2);
			put32(0);
		}
		if (!ok("open", end(), msg, n))
			return FAIL;
	}
	kprintf("# p9bench: start\n");
	uint64_t t0 = ticks;
	if ((m && !bench_meta(count, msg, n)) || ((w || r) && !bench_io(w, mib, data, msg, n)))
		return FAIL;
	uint64_t ms = (ticks - t0) * 1000 / PIT_HZ;
	vd_reset(dev);
	if (m)
		ksnprintf(msg, n, "meta: %u creates, stats and removes in %u ms",
			  (unsigned)count, (unsigned)ms);
	else
		ksnprintf(msg, n, "%s: %u bytes in %u ms", w ? "write" : "read",
			  (unsigned)(mib << 20), (unsigned)ms);
	return PASS;
}
