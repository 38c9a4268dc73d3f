/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The 9P2000.L protocol as Linux's v9fs speaks it: the message codec
 * (virtio/9p-proto.c) and a file server that serves one host directory
 * (virtio/9p-server.c). Neither knows about virtio: virtio/9p.c moves
 * messages between the queue and p9_handle(), and the unit tests and the
 * fuzz harness call p9_handle() directly.
 *
 * Every message comes from the guest. The codec never reads past the
 * message: a read past its end sets the reader's error flag and returns
 * zeros, and the server answers such a message with Rlerror(EINVAL).
 */
#ifndef LKVM_9P_H
#define LKVM_9P_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Message types (T = request; the reply is T + 1). */
enum {
	P9_RLERROR = 7,
	P9_TSTATFS = 8,
	P9_TLOPEN = 12,
	P9_TLCREATE = 14,
	P9_TSYMLINK = 16,
	P9_TMKNOD = 18,
	P9_TRENAME = 20,
	P9_TREADLINK = 22,
	P9_TGETATTR = 24,
	P9_TSETATTR = 26,
	P9_TXATTRWALK = 30,
	P9_TXATTRCREATE = 32,
	P9_TREADDIR = 40,
	P9_TFSYNC = 50,
	P9_TLOCK = 52,
	P9_TGETLOCK = 54,
	P9_TLINK = 70,
	P9_TMKDIR = 72,
	P9_TRENAMEAT = 74,
	P9_TUNLINKAT = 76,
	P9_TVERSION = 100,
	P9_TAUTH = 102,
	P9_TATTACH = 104,
	P9_TFLUSH = 108,
	P9_TWALK = 110,
	P9_TREAD = 116,
	P9_TWRITE = 118,
	P9_TCLUNK = 120,
	P9_TREMOVE = 122,
};

#define P9_HDR 7		/* size[4] type[1] tag[2] */
#define P9_QID_SIZE 13		/* type[1] version[4] path[8] */
#define P9_NOTAG 0xffff
#define P9_NOFID 0xffffffffu
#define P9_MAXWELEM 16		/* names one Twalk may carry */
#define P9_IOHDR 24		/* Rread/Twrite header: size..count */

/* qid.type */
#define P9_QTDIR 0x80
#define P9_QTSYMLINK 0x02
#define P9_QTFILE 0x00

/* Tgetattr request_mask / Rgetattr valid */
#define P9_GETATTR_BASIC 0x7ffull
#define P9_GETATTR_ALL 0x3fffull

/* Tsetattr valid */
#define P9_SETATTR_MODE 0x1
#define P9_SETATTR_UID 0x2
#define P9_SETATTR_GID 0x4
#define P9_SETATTR_SIZE 0x8
#define P9_SETATTR_ATIME 0x10
#define P9_SETATTR_MTIME 0x20
#define P9_SETATTR_CTIME 0x40
#define P9_SETATTR_ATIME_SET 0x80
#define P9_SETATTR_MTIME_SET 0x100

/* Tlock */
#define P9_LOCK_RDLCK 0
#define P9_LOCK_WRLCK 1
#define P9_LOCK_UNLCK 2
#define P9_LOCK_SUCCESS 0
#define P9_LOCK_BLOCKED 1
#define P9_LOCK_ERROR 2

/* Smallest and largest msize the server agrees to. */
#define P9_MIN_MSIZE 4096u
#define P9_MAX_MSIZE (512u * 1024)

struct p9_qid {
	uint8_t type;
	uint32_t version;
	uint64_t path;
};

/* A message being read: the bytes [pos, len) are still unread. */
struct p9_in {
	const uint8_t *buf;
	uint32_t len, pos;
	bool bad;		/* read past the end, or a string not allowed */
};

/* A reply being written into buf[0, cap). */
struct p9_out {
	uint8_t *buf;
	uint32_t cap, pos;
	bool full;		/* something did not fit */
};

uint8_t p9_get8(struct p9_in *in);
uint16_t p9_get16(struct p9_in *in);
uint32_t p9_get32(struct p9_in *in);
uint64_t p9_get64(struct p9_in *in);
/*
 * A string: len[2] then len bytes, copied NUL-terminated into dst
 * (dstlen bytes). A string that overruns the message, does not fit dst
 * or holds a NUL sets in->bad.
 */
void p9_getstr(struct p9_in *in, char *dst, size_t dstlen);
/* n raw bytes in place (NULL and in->bad when they overrun). */
const uint8_t *p9_getbytes(struct p9_in *in, uint32_t n);

void p9_put8(struct p9_out *o, uint8_t v);
void p9_put16(struct p9_out *o, uint16_t v);
void p9_put32(struct p9_out *o, uint32_t v);
void p9_put64(struct p9_out *o, uint64_t v);
void p9_putstr(struct p9_out *o, const char *s);
void p9_putqid(struct p9_out *o, const struct p9_qid *q);
/* Reserves n bytes and returns where they go (NULL when full). */
uint8_t *p9_putspace(struct p9_out *o, uint32_t n);

/*
 * Starts a message (size is filled by p9_msg_end), and ends it: returns
 * its length, or 0 when it did not fit.
 */
void p9_msg_begin(struct p9_out *o, uint8_t type, uint16_t tag);
uint32_t p9_msg_end(struct p9_out *o);
/* An Rlerror for tag into buf (at least P9_HDR + 4 bytes). */
uint32_t p9_lerror(uint8_t *buf, uint32_t cap, uint16_t tag, uint32_t err);

/* ---- the server -------------------------------------------------------- */

struct p9_server;

/*
 * Serves the directory root (read-only when ro). Returns NULL after
 * writing a one-line reason into err.
 */
struct p9_server *p9_server_new(const char *root, bool ro, char *err,
				size_t errlen);
void p9_server_free(struct p9_server *s);

/*
 * Handles one request (req[0, len)) and writes the reply into rep[0,
 * cap). Returns the reply's length, 0 when not even an Rlerror fits.
 * Thread-safe: several threads may handle requests at once; a Tflush
 * waits for the request it names to finish. A request whose tag is in
 * flight already is refused with Rlerror(EINVAL).
 */
uint32_t p9_handle(struct p9_server *s, const void *req, uint32_t len,
		   void *rep, uint32_t cap);

/*
 * Marks tag as in flight (what p9_handle does around a request): -EINVAL
 * when it already is. For tests that need a request to stay in flight.
 */
int p9_tag_claim(struct p9_server *s, uint16_t tag, bool flush);
void p9_tag_release(struct p9_server *s, uint16_t tag);

/*
 * A message whose end is still in the guest's buffers: the head handed
 * to p9_handle_split() was copied out (and is all that is parsed); tail
 * holds the tail_len bytes that follow it. Only Twrite's data may stay
 * there, so that a large write is written from the guest's buffers.
 */
struct iovec;

struct p9_split {
	const struct iovec *tail;
	unsigned int ntail;
	uint32_t tail_len;
};

#define P9_TWRITE_HDR 23	/* size type tag fid offset count */

/*
 * p9_handle() with the reply written into the buffers iov[0, niov)
 * (cap bytes of them at most; rep, cap bytes, is scratch): Tread reads
 * straight into them, with no copy. Returns the reply's length.
 */
uint32_t p9_handle_iov(struct p9_server *s, const void *req, uint32_t len,
		       void *rep, uint32_t cap, const struct iovec *iov,
		       unsigned int niov);
/* p9_handle_iov() of a message split as struct p9_split says. */
uint32_t p9_handle_split(struct p9_server *s, const void *head, uint32_t len,
			 const struct p9_split *sp, void *rep, uint32_t cap,
			 const struct iovec *iov, unsigned int niov);

/* The msize the client and the server agreed on (0 before Tversion). */
uint32_t p9_msize(struct p9_server *s);

/* Forgets every fid (as a new Tversion does): a device reset. */
void p9_server_reset(struct p9_server *s);

/* For tests: force the resolver without openat2(). */
void p9_server_no_openat2(struct p9_server *s);

#endif
