// SPDX-License-Identifier: GPL-2.0
/*
 * The 9P2000.L codec and server (virtio/9p-proto.c, 9p-server.c) driven
 * without a VM: each check sends messages as a guest would and reads
 * the replies. The jail is attacked with "..", absolute symlinks,
 * symlinks to "..", and a directory swapped for a symlink between walk
 * and open, with openat2() and with the fallback resolver.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "lkvm/9p.h"
#include "lkvm/util.h"
#include "tap.h"

static char top[256], root[300];
static uint8_t req[P9_MAX_MSIZE], rep[P9_MAX_MSIZE];
static uint16_t next_tag = 1;

/*
 * Builds a T-message from a format: 1 2 4 8 take an unsigned value of
 * that many bytes, s a string, b a (length, pointer) pair of raw bytes.
 */
static uint32_t build(uint8_t type, uint16_t tag, const char *fmt, va_list ap)
{
	struct p9_out o = { .buf = req, .cap = sizeof(req) };

	p9_msg_begin(&o, type, tag);
	for (const char *f = fmt; *f; f++) {
		switch (*f) {
		case '1': p9_put8(&o, (uint8_t)va_arg(ap, unsigned int)); break;
		case '2': p9_put16(&o, (uint16_t)va_arg(ap, unsigned int)); break;
		case '4': p9_put32(&o, va_arg(ap, uint32_t)); break;
		case '8': p9_put64(&o, va_arg(ap, uint64_t)); break;
		case 's': p9_putstr(&o, va_arg(ap, const char *)); break;
		case 'b': {
			uint32_t n = va_arg(ap, uint32_t);
			const void *p = va_arg(ap, const void *);

			memcpy(p9_putspace(&o, n), p, n);
			break;
		}
		}
	}
	return p9_msg_end(&o);
}

/* Sends a request; returns the reply type and leaves *in after the header. */
static int call(struct p9_server *s, struct p9_in *in, uint8_t type,
		const char *fmt, ...)
{
	va_list ap;
	uint32_t len, n;

	va_start(ap, fmt);
	len = build(type, next_tag++, fmt, ap);
	va_end(ap);
	if (next_tag == P9_NOTAG)
		next_tag = 1;
	n = p9_handle(s, req, len, rep, sizeof(rep));
	*in = (struct p9_in){ .buf = rep, .len = n };
	if (n < P9_HDR || get_le32(rep) != n)
		return -1;
	in->pos = P9_HDR;
	return rep[4];
}

/* The errno of an Rlerror reply, 0 for any other reply. */
static int err_of(struct p9_server *s, uint8_t type, const char *fmt, ...)
{
	struct p9_in in;
	va_list ap;
	uint32_t len, n;

	va_start(ap, fmt);
	len = build(type, next_tag++, fmt, ap);
	va_end(ap);
	n = p9_handle(s, req, len, rep, sizeof(rep));
	in = (struct p9_in){ .buf = rep, .len = n, .pos = P9_HDR };
	if (n < P9_HDR)
		return -1;
	return rep[4] == P9_RLERROR ? (int)p9_get32(&in) : 0;
}

static struct p9_server *session(bool ro, bool no_openat2)
{
	char err[256];
	struct p9_server *s = p9_server_new(root, ro, err, sizeof(err));
	struct p9_in in;

	if (!s) {
		printf("# %s\n", err);
		exit(1);
	}
	if (no_openat2)
		p9_server_no_openat2(s);
	call(s, &in, P9_TVERSION, "4s", 65536, "9P2000.L");
	/* fid 0: the root */
	if (call(s, &in, P9_TATTACH, "44ss4", 0, P9_NOFID, "u", "", 0) !=
	    P9_TATTACH + 1)
		printf("# attach failed\n");
	return s;
}

static struct p9_qid get_qid(struct p9_in *in)
{
	struct p9_qid q;

	q.type = p9_get8(in);
	q.version = p9_get32(in);
	q.path = p9_get64(in);
	return q;
}

/* Walks fid to newfid over n names; returns qids walked or -err. */
static int walk(struct p9_server *s, uint32_t fid, uint32_t newfid,
		struct p9_qid *last, int n, const char *a, const char *b,
		const char *c)
{
	const char *names[3] = { a, b, c };
	struct p9_out o = { .buf = req, .cap = sizeof(req) };
	struct p9_in in;
	uint32_t len;
	int got;

	p9_msg_begin(&o, P9_TWALK, next_tag++);
	p9_put32(&o, fid);
	p9_put32(&o, newfid);
	p9_put16(&o, (uint16_t)n);
	for (int i = 0; i < n; i++)
		p9_putstr(&o, names[i]);
	len = p9_handle(s, req, p9_msg_end(&o), rep, sizeof(rep));
	in = (struct p9_in){ .buf = rep, .len = len, .pos = P9_HDR };
	if (rep[4] == P9_RLERROR)
		return -(int)p9_get32(&in);
	got = p9_get16(&in);
	for (int i = 0; i < got; i++)
		*last = get_qid(&in);
	return got;
}

static void mkfile(const char *dir, const char *name, const char *text)
{
	char p[512];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	f = fopen(p, "w");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

static void setup_tree(void)
{
	char p[512];

	snprintf(top, sizeof(top), "/tmp/lkvm-9p-XXXXXX");
	if (!mkdtemp(top))
		exit(1);
	mkfile(top, "secret", "outside");
	snprintf(root, sizeof(root), "%s/share", top);
	mkdir(root, 0755);
	snprintf(p, sizeof(p), "%s/d", root);
	mkdir(p, 0755);
	mkfile(p, "inside", "in d");
	mkfile(root, "f", "hello");
	snprintf(p, sizeof(p), "%s/abs", root);
	symlink(top, p);
	snprintf(p, sizeof(p), "%s/up", root);
	symlink("..", p);
	snprintf(p, sizeof(p), "%s/dotdot", root);
	symlink("../secret", p);
}

static void test_codec(void)
{
	uint8_t buf[64];
	struct p9_out o = { .buf = buf, .cap = sizeof(buf) };
	struct p9_in in;
	char s[8];
	struct p9_qid q = { P9_QTDIR, 7, 0x1122334455667788ull }, r;

	p9_msg_begin(&o, P9_TVERSION, 3);
	p9_put8(&o, 0xab);
	p9_put16(&o, 0xbeef);
	p9_put64(&o, 0x0102030405060708ull);
	p9_putstr(&o, "abc");
	p9_putqid(&o, &q);
	CHECK(p9_msg_end(&o) == P9_HDR + 1 + 2 + 8 + 5 + 13,
	      "codec: message length counts every field");
	in = (struct p9_in){ .buf = buf, .len = o.pos, .pos = P9_HDR };
	CHECK(p9_get8(&in) == 0xab && p9_get16(&in) == 0xbeef &&
	      p9_get64(&in) == 0x0102030405060708ull,
	      "codec: integers read back little-endian");
	p9_getstr(&in, s, sizeof(s));
	r = get_qid(&in);
	CHECK(!strcmp(s, "abc") && r.type == q.type && r.path == q.path &&
	      r.version == 7 && !in.bad, "codec: string and qid read back");
	CHECK(p9_get8(&in) == 0 && in.bad, "codec: a read past the end sets bad");

	/* A string whose length runs past the message. */
	put_le16(buf, 40);
	in = (struct p9_in){ .buf = buf, .len = 10 };
	p9_getstr(&in, s, sizeof(s));
	CHECK(in.bad && s[0] == 0, "codec: an overrunning string is refused");
	/* Longer than the caller's buffer, or with a NUL inside. */
	put_le16(buf, 8);
	memcpy(buf + 2, "abcdefgh", 8);
	in = (struct p9_in){ .buf = buf, .len = 10 };
	p9_getstr(&in, s, sizeof(s));
	CHECK(in.bad, "codec: a string longer than the field is refused");
	put_le16(buf, 3);
	memcpy(buf + 2, "a\0b", 3);
	in = (struct p9_in){ .buf = buf, .len = 5 };
	p9_getstr(&in, s, sizeof(s));
	CHECK(in.bad, "codec: a string holding NUL is refused");

	o = (struct p9_out){ .buf = buf, .cap = 10 };
	p9_msg_begin(&o, P9_TREAD, 1);
	p9_put64(&o, 1);
	CHECK(o.full && p9_msg_end(&o) == 0, "codec: a reply that does not fit is not sent");
	CHECK(p9_lerror(buf, 10, 5, EIO) == 0 &&
	      p9_lerror(buf, 11, 5, EIO) == 11 && buf[4] == P9_RLERROR &&
	      get_le16(buf + 5) == 5 && get_le32(buf + 7) == EIO,
	      "codec: Rlerror is 11 bytes with the tag and errno");
}

static void test_version_and_malformed(void)
{
	char err[128];
	struct p9_server *s = p9_server_new(root, false, err, sizeof(err));
	struct p9_in in;
	char v[32];

	CHECK(err_of(s, P9_TATTACH, "44ss4", 0, P9_NOFID, "u", "", 0) == EPROTO,
	      "version: requests before Tversion are refused");
	CHECK(err_of(s, P9_TVERSION, "4s", 512, "9P2000.L") == EINVAL,
	      "version: an msize below 4096 is refused");
	CHECK(call(s, &in, P9_TVERSION, "4s", 1u << 30, "9P2000.L") ==
		      P9_TVERSION + 1 && p9_get32(&in) == P9_MAX_MSIZE,
	      "version: msize is cut to the server's maximum");
	p9_getstr(&in, v, sizeof(v));
	CHECK(!strcmp(v, "9P2000.L") && p9_msize(s) == P9_MAX_MSIZE,
	      "version: 9P2000.L is agreed");
	CHECK(call(s, &in, P9_TVERSION, "4s", 8192, "9P2000.u") ==
		      P9_TVERSION + 1 && p9_get32(&in) == 8192,
	      "version: another dialect gets an Rversion...");
	p9_getstr(&in, v, sizeof(v));
	CHECK(!strcmp(v, "unknown") && p9_msize(s) == 0, "version: ...that says unknown");
	call(s, &in, P9_TVERSION, "4s", 8192, "9P2000.L");
	CHECK(err_of(s, P9_TATTACH, "44ss4", 0, P9_NOFID, "u", "", 0) == 0,
	      "attach: fid 0 is the root");
	CHECK(err_of(s, P9_TATTACH, "44ss4", 0, P9_NOFID, "u", "", 0) == EBADF,
	      "attach: a fid in use is refused");

	/* Sizes that disagree: the size field says more or less than sent. */
	{
		struct p9_out o = { .buf = req, .cap = sizeof(req) };
		uint32_t n;

		p9_msg_begin(&o, P9_TGETATTR, 9);
		p9_put32(&o, 0);
		p9_put64(&o, P9_GETATTR_ALL);
		n = p9_msg_end(&o);
		put_le32(req, n + 4);
		n = p9_handle(s, req, n, rep, sizeof(rep));
		CHECK(n == 11 && rep[4] == P9_RLERROR && get_le16(rep + 5) == 9 &&
		      get_le32(rep + 7) == EINVAL,
		      "malformed: a size field larger than the message gets Rlerror");
		put_le32(req, 5);
		n = p9_handle(s, req, 3, rep, sizeof(rep));
		CHECK(n == 11 && rep[4] == P9_RLERROR,
		      "malformed: a message shorter than a header gets Rlerror");
		/* A string that overruns the message: the name length lies. */
		p9_msg_begin(&o, P9_TWALK, 10);
		p9_put32(&o, 0);
		p9_put32(&o, 1);
		p9_put16(&o, 1);
		p9_put16(&o, 200);
		p9_putspace(&o, 3);
		n = p9_msg_end(&o);
		n = p9_handle(s, req, n, rep, sizeof(rep));
		CHECK(n == 11 && rep[4] == P9_RLERROR && get_le32(rep + 7) == EINVAL,
		      "malformed: an overrunning string gets Rlerror(EINVAL)");
		/* Twrite whose count is more than the data sent. */
		p9_msg_begin(&o, P9_TWRITE, 11);
		p9_put32(&o, 0);
		p9_put64(&o, 0);
		p9_put32(&o, 1000);
		p9_putspace(&o, 10);
		n = p9_msg_end(&o);
		n = p9_handle(s, req, n, rep, sizeof(rep));
		CHECK(n == 11 && get_le32(rep + 7) == EINVAL,
		      "malformed: Twrite count beyond the message gets Rlerror");
		/* An R-message type, and a type nobody defined. */
		p9_msg_begin(&o, P9_TWALK + 1, 12);
		n = p9_handle(s, req, p9_msg_end(&o), rep, sizeof(rep));
		CHECK(n == 11 && get_le32(rep + 7) == EINVAL,
		      "malformed: an R-message from the guest gets Rlerror");
		p9_msg_begin(&o, 200, 12);
		n = p9_handle(s, req, p9_msg_end(&o), rep, sizeof(rep));
		CHECK(n == 11 && get_le32(rep + 7) == EOPNOTSUPP,
		      "malformed: an unknown type gets Rlerror(EOPNOTSUPP)");
		CHECK(p9_handle(s, req, 7, rep, 10) == 0,
		      "malformed: no reply when not even Rlerror fits");
	}
	CHECK(err_of(s, P9_TGETATTR, "48", 77, P9_GETATTR_ALL) == EBADF,
	      "malformed: an unknown fid gets Rlerror(EBADF)");
	CHECK(err_of(s, P9_TCLUNK, "4", 77) == EBADF,
	      "malformed: clunking an unknown fid gets Rlerror(EBADF)");
	CHECK(err_of(s, P9_TWALK, "442", 0, 1, 17) == EINVAL,
	      "malformed: more than 16 walk names gets Rlerror");
	p9_server_free(s);
}

struct flush_arg {
	struct p9_server *s;
	uint16_t old;
	volatile int done;
	uint8_t rep[64];
};

static void *flusher(void *p)
{
	struct flush_arg *a = p;
	uint8_t m[16];
	struct p9_out o = { .buf = m, .cap = sizeof(m) };

	p9_msg_begin(&o, P9_TFLUSH, 4000);
	p9_put16(&o, a->old);
	p9_handle(a->s, m, p9_msg_end(&o), a->rep, sizeof(a->rep));
	__atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void test_tags(void)
{
	struct p9_server *s = session(false, false);
	struct flush_arg a = { .s = s, .old = 300 };
	struct p9_out o = { .buf = req, .cap = sizeof(req) };
	pthread_t t;
	uint32_t n;
	int spins = 0;

	/* Tag 300 is in flight (as a request a worker still serves). */
	CHECK(p9_tag_claim(s, 300, false) == 0, "tags: a free tag is claimed");
	p9_msg_begin(&o, P9_TGETATTR, 300);
	p9_put32(&o, 0);
	p9_put64(&o, P9_GETATTR_ALL);
	n = p9_handle(s, req, p9_msg_end(&o), rep, sizeof(rep));
	CHECK(n == 11 && rep[4] == P9_RLERROR && get_le32(rep + 7) == EINVAL,
	      "tags: a request reusing a tag in flight gets Rlerror");
	pthread_create(&t, NULL, flusher, &a);
	/* Rflush must wait for the request it flushes. */
	while (!__atomic_load_n(&a.done, __ATOMIC_ACQUIRE) && spins < 200) {
		usleep(1000);	/* polling a condition that must stay false */
		spins++;
	}
	CHECK(!a.done, "tags: Tflush waits while the old request is in flight");
	p9_tag_release(s, 300);
	pthread_join(t, NULL);
	CHECK(a.done && a.rep[4] == P9_TFLUSH + 1 && get_le16(a.rep + 5) == 4000,
	      "tags: Rflush follows once the old request is done");
	n = p9_handle(s, req, get_le32(req), rep, sizeof(rep));
	CHECK(rep[4] == P9_TGETATTR + 1, "tags: the tag is free again afterwards");
	p9_server_free(s);
}

/* Reads a whole file through fid (opened) into buf. */
static int read_all(struct p9_server *s, uint32_t fid, char *buf, size_t len)
{
	struct p9_in in;
	uint32_t n;

	if (call(s, &in, P9_TREAD, "484", fid, (uint64_t)0, (uint32_t)len - 1) !=
	    P9_TREAD + 1)
		return -1;
	n = p9_get32(&in);
	memcpy(buf, p9_getbytes(&in, n), n);
	buf[n] = 0;
	return (int)n;
}

/* Does the directory opened as fid list name? */
static bool lists(struct p9_server *s, uint32_t fid, const char *name)
{
	struct p9_in in;
	uint64_t off = 0;

	for (int rounds = 0; rounds < 100; rounds++) {
		uint32_t count;

		if (call(s, &in, P9_TREADDIR, "484", fid, off, 200) !=
		    P9_TREADDIR + 1)
			return false;
		count = p9_get32(&in);
		if (!count)
			return false;
		while (in.pos < P9_HDR + 4 + count) {
			char n[256];

			get_qid(&in);
			off = p9_get64(&in);
			p9_get8(&in);
			p9_getstr(&in, n, sizeof(n));
			if (!strcmp(n, name))
				return true;
		}
	}
	return false;
}

static void test_escapes(bool no_openat2)
{
	struct p9_server *s = session(false, no_openat2);
	const char *how = no_openat2 ? " (fallback)" : "";
	struct p9_qid rootq, q;
	char what[160], p[512], q2[512], buf[64];
	struct p9_in in;

#define ESC(cond, text)                                                    \
	do {                                                               \
		snprintf(what, sizeof(what), "jail%s: %s", how, text);     \
		CHECK(cond, what);                                         \
	} while (0)

	call(s, &in, P9_TGETATTR, "48", 0, P9_GETATTR_BASIC);
	p9_get64(&in);
	rootq = get_qid(&in);
	ESC(walk(s, 0, 1, &q, 1, "..", NULL, NULL) == 1 && q.path == rootq.path,
	    "'..' from the root is the root");
	ESC(walk(s, 1, 2, &q, 1, "secret", NULL, NULL) == -ENOENT,
	    "'..' then the outside file's name finds nothing");
	ESC(walk(s, 0, 3, &q, 2, "d", "..", NULL) == 2 && q.path == rootq.path,
	    "'d/..' is the root again");
	ESC(walk(s, 0, 4, &q, 3, "d", "..", "..") == 3 && q.path == rootq.path,
	    "'d/../..' stays at the root");
	ESC(walk(s, 0, 5, &q, 1, "../secret", NULL, NULL) == -EINVAL,
	    "a name holding '/' is refused");
	ESC(walk(s, 0, 5, &q, 1, ".", NULL, NULL) == -EINVAL,
	    "'.' is refused");
	ESC(walk(s, 0, 5, &q, 1, "abs", NULL, NULL) == 1 &&
		    q.type == P9_QTSYMLINK,
	    "an absolute symlink is walked to as a symlink");
	ESC(err_of(s, P9_TLOPEN, "44", 5, O_RDONLY) == ELOOP,
	    "opening an absolute symlink fails (ELOOP), never follows it");
	ESC(walk(s, 0, 6, &q, 2, "abs", "secret", NULL) == 1 &&
		    err_of(s, P9_TCLUNK, "4", 6) == EBADF,
	    "walking through an absolute symlink stops at it, no fid");
	ESC(walk(s, 0, 6, &q, 2, "up", "secret", NULL) == 1 &&
		    err_of(s, P9_TCLUNK, "4", 6) == EBADF,
	    "walking through a symlink to '..' stops at it");
	ESC(walk(s, 0, 6, &q, 1, "dotdot", NULL, NULL) == 1 &&
		    err_of(s, P9_TLOPEN, "44", 6, O_RDONLY) == ELOOP,
	    "a symlink to '../secret' is not opened");
	ESC(call(s, &in, P9_TREADLINK, "4", 6) == P9_TREADLINK + 1,
	    "readlink reads the symlink itself");
	p9_getstr(&in, buf, sizeof(buf));
	ESC(!strcmp(buf, "../secret"), "readlink gives the target as written");
	ESC(err_of(s, P9_TLCREATE, "4s444", 0, "../escape", O_RDWR, 0644, 0) ==
		    EINVAL, "creating '../escape' is refused");
	snprintf(p, sizeof(p), "%s/escape", top);
	ESC(access(p, F_OK) != 0, "nothing was created outside");
	ESC(err_of(s, P9_TRENAMEAT, "4s4s", 0, "f", 0, "../f") == EINVAL,
	    "renaming to '../f' is refused");
	ESC(err_of(s, P9_TUNLINKAT, "4s4", 0, "..", 0) == EINVAL,
	    "unlinking '..' is refused");
	/* A dangling symlink to the outside is not created through. */
	snprintf(p, sizeof(p), "%s/dangle", root);
	snprintf(q2, sizeof(q2), "%s/made-outside", top);
	symlink(q2, p);
	ESC(err_of(s, P9_TLCREATE, "4s444", 0, "dangle", O_RDWR, 0644, 0) != 0 &&
		    err_of(s, P9_TMKDIR, "4s44", 0, "dangle", 0755, 0) == EEXIST &&
		    access(q2, F_OK) != 0,
	    "creating through a dangling symlink to the outside fails");
	unlink(p);
	/* A symlink made by the guest to / is harmless too. */
	ESC(err_of(s, P9_TSYMLINK, "4ss4", 0, "mine", "/", 0) == 0 &&
		    walk(s, 0, 7, &q, 2, "mine", "etc", NULL) == 1,
	    "a guest-made symlink to / is not followed by a walk");
	ESC(err_of(s, P9_TLINK, "44s", 0, 6, "hard") == 0 &&
		    call(s, &in, P9_TREADLINK, "4", 6) == P9_TREADLINK + 1,
	    "a hard link to a symlink stays a symlink");

	/* The swap: walk to d, then d becomes a symlink to the outside. */
	ESC(walk(s, 0, 8, &q, 1, "d", NULL, NULL) == 1 && q.type == P9_QTDIR,
	    "walk to d");
	snprintf(p, sizeof(p), "%s/d", root);
	snprintf(q2, sizeof(q2), "%s/d-moved", root);
	rename(p, q2);
	symlink(top, p);
	ESC(err_of(s, P9_TLOPEN, "44", 8, O_RDONLY | O_DIRECTORY) == 0,
	    "the walked fid opens after the swap...");
	ESC(lists(s, 8, "inside") && !lists(s, 8, "secret"),
	    "...and lists the directory it walked to, not the outside");
	ESC(walk(s, 0, 9, &q, 2, "d", "secret", NULL) == 1,
	    "a new walk through the swapped-in symlink stops at it");
	ESC(walk(s, 0, 9, &q, 1, "d-moved", NULL, NULL) == 1 &&
		    walk(s, 9, 10, &q, 1, "inside", NULL, NULL) == 1 &&
		    err_of(s, P9_TLOPEN, "44", 10, O_RDONLY) == 0 &&
		    read_all(s, 10, buf, sizeof(buf)) == 4 && !strcmp(buf, "in d"),
	    "the moved directory's file reads back");
	unlink(p);
	rename(q2, p);
	snprintf(p, sizeof(p), "%s/mine", root);
	unlink(p);
	snprintf(p, sizeof(p), "%s/hard", root);
	unlink(p);
	p9_server_free(s);
#undef ESC
}

/*
 * Treads fid at off with the reply in two buffers (5 and 40 bytes, cap
 * of them used) through p9_handle_iov(); flat gets both, in order.
 */
static uint32_t read_split(struct p9_server *s, uint32_t fid, uint64_t off,
			   uint32_t cap, uint8_t flat[45])
{
	uint8_t a[5], b[40];
	struct iovec iov[2] = { { a, sizeof(a) }, { b, sizeof(b) } };
	struct p9_out o = { .buf = req, .cap = sizeof(req) };
	uint32_t n;

	p9_msg_begin(&o, P9_TREAD, next_tag++);
	p9_put32(&o, fid);
	p9_put64(&o, off);
	p9_put32(&o, 100);
	n = p9_handle_iov(s, req, p9_msg_end(&o), rep, cap, iov, 2);
	memcpy(flat, a, sizeof(a));
	memcpy(flat + sizeof(a), b, sizeof(b));
	return n;
}

/*
 * A Twrite of text at off to fid whose data stays in two tail buffers,
 * as the device leaves a large one; size_adj skews the size field,
 * extra adds bytes to the head. Returns the reply's errno or 0.
 */
static int write_split(struct p9_server *s, uint8_t type, uint32_t fid,
		       uint64_t off, const char *text, uint32_t count,
		       int size_adj, uint32_t extra)
{
	size_t tl = strlen(text);
	struct iovec tail[2] = { { (void *)text, tl / 2 },
				 { (void *)(text + tl / 2), tl - tl / 2 } };
	struct p9_split sp = { tail, 2, (uint32_t)tl };
	struct iovec out = { rep + 64, 64 };
	struct p9_out o = { .buf = req, .cap = sizeof(req) };
	uint32_t n, len;

	p9_msg_begin(&o, type, next_tag++);
	p9_put32(&o, fid);
	p9_put64(&o, off);
	p9_put32(&o, count);
	p9_putspace(&o, extra);
	len = p9_msg_end(&o);
	put_le32(req, (uint32_t)((int)(len + tl) + size_adj));
	n = p9_handle_split(s, req, len, &sp, rep, 64, &out, 1);
	if (n < 11)
		return -1;
	return rep[64 + 4] == P9_RLERROR ? (int)get_le32(rep + 64 + 7) :
	       (int)get_le32(rep + 64 + 7) == (int)count ? 0 : -2;
}

static void test_ops(void)
{
	struct p9_server *s = session(false, false);
	struct p9_in in;
	struct p9_qid q;
	char buf[128], p[512];
	struct stat st;

	CHECK(walk(s, 0, 1, &q, 0, NULL, NULL, NULL) == 0, "ops: clone the root fid");
	CHECK(call(s, &in, P9_TLCREATE, "4s444", 1, "new", O_RDWR, 0640, 0) ==
		      P9_TLCREATE + 1, "ops: lcreate");
	q = get_qid(&in);
	snprintf(p, sizeof(p), "%s/new", root);
	CHECK(q.type == P9_QTFILE && stat(p, &st) == 0 &&
	      (st.st_mode & 0777) == 0640, "ops: lcreate made the file with its mode");
	CHECK(call(s, &in, P9_TWRITE, "484b", 1, (uint64_t)0, 11u, 11u,
		   "hello world") == P9_TWRITE + 1 && p9_get32(&in) == 11,
	      "ops: write");
	CHECK(read_all(s, 1, buf, sizeof(buf)) == 11 && !strcmp(buf, "hello world"),
	      "ops: read back what was written");
	{
		/* The reply straight into split buffers, as the device does. */
		uint8_t flat[45];
		uint32_t n;

		n = read_split(s, 1, 6, 45, flat);
		CHECK(n == 16 && get_le32(flat) == 16 && flat[4] == P9_TREAD + 1 &&
		      get_le32(flat + 7) == 5 && !memcmp(flat + 11, "world", 5),
		      "ops: a read lands in split reply buffers, header and data");
		n = read_split(s, 1, 0, 20, flat);
		CHECK(n == 20 && get_le32(flat + 7) == 9 && !memcmp(flat + 11, "hello wor", 9),
		      "ops: a direct read is cut to the reply's room");
		n = read_split(s, 99, 0, 45, flat);
		CHECK(n == 11 && flat[4] == P9_RLERROR && get_le32(flat + 7) == EBADF,
		      "ops: an Rlerror goes to the split buffers too");
	}
	CHECK(write_split(s, P9_TWRITE, 1, 0, "HELLO", 5, 0, 0) == 0 &&
	      read_all(s, 1, buf, sizeof(buf)) == 11 && !strcmp(buf, "HELLO world"),
	      "ops: a split Twrite writes its data from the tail buffers");
	CHECK(write_split(s, P9_TWRITE, 1, 0, "HELLO", 6, 0, 0) == EINVAL &&
	      write_split(s, P9_TWRITE, 1, 0, "HELLO", 5, 1, 0) == EINVAL &&
	      write_split(s, P9_TWRITE, 1, 0, "HELLO", 5, 0, 2) == EINVAL &&
	      write_split(s, P9_TREAD, 1, 0, "HELLO", 5, 0, 0) == EINVAL,
	      "ops: a split message that lies (count, size, head, type) gets Rlerror");
	CHECK(write_split(s, P9_TWRITE, 1, 0, "hello", 5, 0, 0) == 0,
	      "ops: the split write is undone");
	CHECK(err_of(s, P9_TFSYNC, "44", 1, 0) == 0, "ops: fsync");
	CHECK(call(s, &in, P9_TLOCK, "414884s", 1, P9_LOCK_WRLCK, 0,
		   (uint64_t)0, (uint64_t)0, 1, "c") == P9_TLOCK + 1 &&
	      p9_get8(&in) == P9_LOCK_SUCCESS, "ops: lock");
	CHECK(call(s, &in, P9_TGETLOCK, "41884s", 1, P9_LOCK_WRLCK,
		   (uint64_t)0, (uint64_t)0, 1, "c") == P9_TGETLOCK + 1 &&
	      p9_get8(&in) == P9_LOCK_UNLCK, "ops: getlock (own lock does not conflict)");
	CHECK(err_of(s, P9_TSETATTR, "4444488888", 1, P9_SETATTR_SIZE, 0, 0, 0,
		     (uint64_t)5, (uint64_t)0, (uint64_t)0, (uint64_t)0,
		     (uint64_t)0) == 0 && stat(p, &st) == 0 && st.st_size == 5,
	      "ops: setattr truncates");
	CHECK(err_of(s, P9_TSETATTR, "4444488888", 1, P9_SETATTR_MODE, 0600, 0, 0,
		     (uint64_t)0, (uint64_t)0, (uint64_t)0, (uint64_t)0,
		     (uint64_t)0) == 0 && stat(p, &st) == 0 &&
	      (st.st_mode & 0777) == 0600, "ops: setattr chmods");
	CHECK(call(s, &in, P9_TGETATTR, "48", 1, P9_GETATTR_ALL) ==
		      P9_TGETATTR + 1 && p9_get64(&in) == P9_GETATTR_BASIC,
	      "ops: getattr");
	get_qid(&in);
	CHECK(p9_get32(&in) == (S_IFREG | 0600), "ops: getattr mode");
	CHECK(err_of(s, P9_TMKDIR, "4s44", 0, "sub", 0755, 0) == 0,
	      "ops: mkdir");
	CHECK(err_of(s, P9_TRENAMEAT, "4s4s", 0, "new", 0, "sub") == ENOTDIR ||
	      err_of(s, P9_TRENAMEAT, "4s4s", 0, "new", 0, "sub") == EISDIR,
	      "ops: renameat over a directory fails as rename(2) does");
	CHECK(walk(s, 0, 2, &q, 1, "sub", NULL, NULL) == 1 &&
	      err_of(s, P9_TRENAMEAT, "4s4s", 0, "new", 2, "moved") == 0,
	      "ops: renameat into a subdirectory");
	snprintf(p, sizeof(p), "%s/sub/moved", root);
	CHECK(access(p, F_OK) == 0, "ops: the file moved on the host");
	CHECK(walk(s, 2, 3, &q, 1, "moved", NULL, NULL) == 1 &&
	      err_of(s, P9_TRENAME, "44s", 3, 0, "back") == 0,
	      "ops: rename by fid");
	snprintf(p, sizeof(p), "%s/back", root);
	CHECK(access(p, F_OK) == 0, "ops: rename by fid moved it");
	CHECK(walk(s, 0, 4, &q, 0, NULL, NULL, NULL) == 0 &&
	      err_of(s, P9_TLOPEN, "44", 4, O_RDONLY | O_DIRECTORY) == 0 &&
	      lists(s, 4, "back") && lists(s, 4, "sub") && lists(s, 4, "f"),
	      "ops: readdir lists the root across several small replies");
	CHECK(err_of(s, P9_TLINK, "44s", 0, 3, "linked") == 0,
	      "ops: link");
	snprintf(p, sizeof(p), "%s/linked", root);
	CHECK(stat(p, &st) == 0 && st.st_nlink == 2, "ops: the link shares the inode");
	CHECK(err_of(s, P9_TUNLINKAT, "4s4", 0, "linked", 0) == 0 &&
	      access(p, F_OK) != 0, "ops: unlinkat");
	CHECK(err_of(s, P9_TREMOVE, "4", 3) == 0 &&
	      err_of(s, P9_TCLUNK, "4", 3) == EBADF,
	      "ops: remove takes the file and the fid");
	CHECK(err_of(s, P9_TUNLINKAT, "4s4", 0, "sub", 0) != 0 &&
	      err_of(s, P9_TUNLINKAT, "4s4", 0, "sub", AT_REMOVEDIR) == 0,
	      "ops: unlinkat of a directory needs AT_REMOVEDIR");
	CHECK(err_of(s, P9_TMKNOD, "4s4444", 0, "null", S_IFCHR | 0666, 1, 3,
		     0) == EPERM, "ops: mknod of a device node is refused");
	CHECK(err_of(s, P9_TMKNOD, "4s4444", 0, "fifo", S_IFIFO | 0600, 0, 0,
		     0) == 0, "ops: mknod of a FIFO");
	CHECK(walk(s, 0, 5, &q, 1, "fifo", NULL, NULL) == 1 &&
	      err_of(s, P9_TLOPEN, "44", 5, O_RDONLY) == EACCES,
	      "ops: special files are not opened on the host");
	err_of(s, P9_TUNLINKAT, "4s4", 0, "fifo", 0);
	CHECK(call(s, &in, P9_TSTATFS, "4", 0) == P9_TSTATFS + 1,
	      "ops: statfs");
	p9_get32(&in);
	CHECK(p9_get32(&in) > 0, "ops: statfs block size");
	CHECK(call(s, &in, P9_TXATTRWALK, "44s", 0, 6, "") == P9_TXATTRWALK + 1,
	      "ops: xattrwalk lists names");
	CHECK(err_of(s, P9_TXATTRWALK, "44s", 0, 7, "user.none") == ENODATA,
	      "ops: xattrwalk of a missing attribute is ENODATA");
	CHECK(walk(s, 0, 11, &q, 1, "f", NULL, NULL) == 1 &&
	      err_of(s, P9_TREAD, "484", 11, (uint64_t)0, 10u) == EBADF,
	      "ops: reading an unopened fid is EBADF");
	CHECK(err_of(s, P9_TLOPEN, "44", 4, O_RDONLY) == EBUSY,
	      "ops: a fid opens once");
	CHECK(err_of(s, P9_TWALK, "442s", 4, 9, 1, "f") == EBUSY,
	      "ops: an open fid is not walked");
	err_of(s, P9_TUNLINKAT, "4s4", 0, "back", 0);
	/* Tversion starts a new session: every fid is gone. */
	call(s, &in, P9_TVERSION, "4s", 8192, "9P2000.L");
	CHECK(err_of(s, P9_TCLUNK, "4", 0) == EBADF, "ops: Tversion clunks every fid");
	p9_server_free(s);
}

static void test_readonly(void)
{
	struct p9_server *s = session(true, false);
	struct p9_qid q;
	char p[512];

	CHECK(err_of(s, P9_TLCREATE, "4s444", 0, "x", O_RDWR, 0644, 0) == EROFS,
	      "ro: lcreate is EROFS");
	CHECK(err_of(s, P9_TMKDIR, "4s44", 0, "x", 0755, 0) == EROFS,
	      "ro: mkdir is EROFS");
	CHECK(err_of(s, P9_TSYMLINK, "4ss4", 0, "x", "f", 0) == EROFS,
	      "ro: symlink is EROFS");
	CHECK(err_of(s, P9_TMKNOD, "4s4444", 0, "x", S_IFIFO | 0600, 0, 0, 0) ==
		      EROFS, "ro: mknod is EROFS");
	CHECK(err_of(s, P9_TUNLINKAT, "4s4", 0, "f", 0) == EROFS,
	      "ro: unlinkat is EROFS");
	CHECK(err_of(s, P9_TRENAMEAT, "4s4s", 0, "f", 0, "g") == EROFS,
	      "ro: renameat is EROFS");
	CHECK(err_of(s, P9_TLINK, "44s", 0, 0, "g") == EROFS, "ro: link is EROFS");
	CHECK(walk(s, 0, 1, &q, 1, "f", NULL, NULL) == 1 &&
	      err_of(s, P9_TLOPEN, "44", 1, O_WRONLY) == EROFS &&
	      err_of(s, P9_TLOPEN, "44", 1, O_RDONLY | O_TRUNC) == EROFS,
	      "ro: opening for writing or truncation is EROFS");
	CHECK(err_of(s, P9_TSETATTR, "4444488888", 1, P9_SETATTR_SIZE, 0, 0, 0,
		     (uint64_t)0, (uint64_t)0, (uint64_t)0, (uint64_t)0,
		     (uint64_t)0) == EROFS, "ro: setattr is EROFS");
	CHECK(err_of(s, P9_TRENAME, "44s", 1, 0, "g") == EROFS, "ro: rename is EROFS");
	CHECK(err_of(s, P9_TLOPEN, "44", 1, O_RDONLY) == 0 &&
	      err_of(s, P9_TWRITE, "484b", 1, (uint64_t)0, 1u, 1u, "x") == EROFS,
	      "ro: reading opens, writing is EROFS");
	CHECK(err_of(s, P9_TREMOVE, "4", 1) == EROFS, "ro: remove is EROFS");
	CHECK(err_of(s, P9_TXATTRCREATE, "4s84", 0, "user.x", (uint64_t)1, 0) ==
		      EROFS, "ro: xattrcreate is EROFS");
	snprintf(p, sizeof(p), "%s/f", root);
	CHECK(access(p, F_OK) == 0, "ro: the file is still there");
	p9_server_free(s);
}

int main(void)
{
	char cmd[600];

	setup_tree();
	test_codec();
	test_version_and_malformed();
	test_tags();
	test_escapes(false);
	test_escapes(true);
	test_ops();
	test_readonly();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
	if (system(cmd))
		printf("# could not remove %s\n", top);
	return tap_done();
}
