// SPDX-License-Identifier: GPL-2.0
/*
 * 9P2000.L message codec: little-endian fields, len[2]-prefixed strings
 * and qids, read from a message that may lie about everything.
 */
#include <string.h>

#include "lkvm/9p.h"
#include "lkvm/util.h"

/* The next n bytes of the message, or NULL (and in->bad) past its end. */
static const uint8_t *take(struct p9_in *in, uint32_t n)
{
	const uint8_t *p;

	if (in->bad || n > in->len - in->pos) {
		in->bad = true;
		return NULL;
	}
	p = in->buf + in->pos;
	in->pos += n;
	return p;
}

uint8_t p9_get8(struct p9_in *in)
{
	const uint8_t *p = take(in, 1);

	return p ? p[0] : 0;
}

uint16_t p9_get16(struct p9_in *in)
{
	const uint8_t *p = take(in, 2);

	return p ? get_le16(p) : 0;
}

uint32_t p9_get32(struct p9_in *in)
{
	const uint8_t *p = take(in, 4);

	return p ? get_le32(p) : 0;
}

uint64_t p9_get64(struct p9_in *in)
{
	const uint8_t *p = take(in, 8);

	return p ? get_le64(p) : 0;
}

const uint8_t *p9_getbytes(struct p9_in *in, uint32_t n)
{
	return take(in, n);
}

void p9_getstr(struct p9_in *in, char *dst, size_t dstlen)
{
	uint16_t n = p9_get16(in);
	const uint8_t *p = take(in, n);

	if (dstlen)
		dst[0] = 0;
	if (!p || (size_t)n >= dstlen || memchr(p, 0, n)) {
		in->bad = true;
		return;
	}
	memcpy(dst, p, n);
	dst[n] = 0;
}

uint8_t *p9_putspace(struct p9_out *o, uint32_t n)
{
	uint8_t *p;

	if (o->full || n > o->cap - o->pos) {
		o->full = true;
		return NULL;
	}
	p = o->buf + o->pos;
	o->pos += n;
	return p;
}

void p9_put8(struct p9_out *o, uint8_t v)
{
	uint8_t *p = p9_putspace(o, 1);

	if (p)
		p[0] = v;
}

void p9_put16(struct p9_out *o, uint16_t v)
{
	uint8_t *p = p9_putspace(o, 2);

	if (p)
		put_le16(p, v);
}

void p9_put32(struct p9_out *o, uint32_t v)
{
	uint8_t *p = p9_putspace(o, 4);

	if (p)
		put_le32(p, v);
}

void p9_put64(struct p9_out *o, uint64_t v)
{
	uint8_t *p = p9_putspace(o, 8);

	if (p)
		put_le64(p, v);
}

void p9_putstr(struct p9_out *o, const char *s)
{
	size_t n = strlen(s);
	uint8_t *p;

	if (n > 0xffff) {
		o->full = true;
		return;
	}
	p9_put16(o, (uint16_t)n);
	p = p9_putspace(o, (uint32_t)n);
	if (p)
		memcpy(p, s, n);
}

void p9_putqid(struct p9_out *o, const struct p9_qid *q)
{
	p9_put8(o, q->type);
	p9_put32(o, q->version);
	p9_put64(o, q->path);
}

void p9_msg_begin(struct p9_out *o, uint8_t type, uint16_t tag)
{
	o->pos = 0;
	o->full = false;
	p9_put32(o, 0);
	p9_put8(o, type);
	p9_put16(o, tag);
}

uint32_t p9_msg_end(struct p9_out *o)
{
	if (o->full || o->pos < P9_HDR)
		return 0;
	put_le32(o->buf, o->pos);
	return o->pos;
}

uint32_t p9_lerror(uint8_t *buf, uint32_t cap, uint16_t tag, uint32_t err)
{
	struct p9_out o = { .buf = buf, .cap = cap };

	p9_msg_begin(&o, P9_RLERROR, tag);
	p9_put32(&o, err);
	return p9_msg_end(&o);
}
