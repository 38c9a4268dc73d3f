// SPDX-License-Identifier: GPL-2.0
/*
 * PIO and MMIO dispatch.
 *
 * Ports: one pointer per port (64 Ki entries, allocated lazily by the
 * kernel's zero pages, so only used pages cost memory).
 * MMIO: a four-level radix over 48 address bits (9 bits a level, 4 KiB
 * leaves). A region that covers a whole block at some level is stored in
 * that level's entry, as a large page would be; a 4 KiB page shared by
 * several small regions holds a short list. Lookup is at most four loads
 * and a scan of the regions that share one page.
 *
 * Handlers run without the bus lock, so a handler may move or register
 * regions (a BAR write). Regions are kept until the bus is freed, so an
 * access racing an unregister never touches freed memory.
 */
#include "lkvm/iobus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MMIO_BITS 48
#define LEVEL_BITS 9
#define LEVELS 4
#define PAGE_SHIFT_ 12
#define FANOUT (1u << LEVEL_BITS)

enum { E_EMPTY = 0, E_REGION = 1, E_SUBPAGE = 2, E_TAGS = 3 };

struct subpage {
	unsigned int n, cap;
	struct io_region **r;
};

struct node {
	uintptr_t e[FANOUT];
};

struct iobus {
	enum iobus_kind kind;
	pthread_rwlock_t lock;
	struct io_region **ports;	/* PIO */
	struct node *root;		/* MMIO */
	struct io_region **all;		/* every region ever made */
	unsigned int nall, capall;
	uint64_t unclaimed;
};

static unsigned int level_shift(int level)
{
	return PAGE_SHIFT_ + LEVEL_BITS * (unsigned int)(LEVELS - 1 - level);
}

struct iobus *iobus_new(enum iobus_kind kind)
{
	struct iobus *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->kind = kind;
	pthread_rwlock_init(&b->lock, NULL);
	if (kind == IOBUS_PIO)
		b->ports = calloc(65536, sizeof(*b->ports));
	else
		b->root = calloc(1, sizeof(*b->root));
	if (!b->ports && !b->root) {
		free(b);
		return NULL;
	}
	return b;
}

static void free_node(struct node *n, int level)
{
	for (unsigned int i = 0; i < FANOUT; i++) {
		uintptr_t e = n->e[i];

		if (!e || (e & E_TAGS) == E_REGION)
			continue;
		if ((e & E_TAGS) == E_SUBPAGE) {
			struct subpage *s = (struct subpage *)(e & ~(uintptr_t)E_TAGS);

			free(s->r);
			free(s);
		} else if (level < LEVELS - 1) {
			free_node((struct node *)e, level + 1);
		}
	}
	free(n);
}

void iobus_free(struct iobus *b)
{
	if (!b)
		return;
	if (b->root)
		free_node(b->root, 0);
	free(b->ports);
	for (unsigned int i = 0; i < b->nall; i++)
		free(b->all[i]);
	free(b->all);
	pthread_rwlock_destroy(&b->lock);
	free(b);
}

static bool live(const struct io_region *r)
{
	return r->len != 0;
}

static bool overlaps(struct iobus *b, uint64_t base, uint64_t end,
		     const struct io_region *skip)
{
	for (unsigned int i = 0; i < b->nall; i++) {
		const struct io_region *r = b->all[i];

		if (r != skip && live(r) && base < r->base + r->len &&
		    r->base < end)
			return true;
	}
	return false;
}

static int subpage_add(uintptr_t *slot, struct io_region *r)
{
	struct subpage *s;

	if (!*slot) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return -ENOMEM;
		*slot = (uintptr_t)s | E_SUBPAGE;
	}
	s = (struct subpage *)(*slot & ~(uintptr_t)E_TAGS);
	if (s->n == s->cap) {
		unsigned int cap = s->cap ? s->cap * 2 : 4;
		struct io_region **n = realloc(s->r, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		s->r = n;
		s->cap = cap;
	}
	s->r[s->n++] = r;
	return 0;
}

static void subpage_del(uintptr_t *slot, struct io_region *r)
{
	struct subpage *s = (struct subpage *)(*slot & ~(uintptr_t)E_TAGS);

	for (unsigned int i = 0; i < s->n; i++) {
		if (s->r[i] == r) {
			s->r[i] = s->r[--s->n];
			break;
		}
	}
	if (!s->n) {
		free(s->r);
		free(s);
		*slot = 0;
	}
}

/* Inserts (r != NULL) or removes (r == NULL, old = region) a range. */
static int radix_set(struct node *n, int level, uint64_t base, uint64_t end,
		     struct io_region *r, struct io_region *old)
{
	unsigned int shift = level_shift(level);
	uint64_t bsize = 1ull << shift;

	while (base < end) {
		uint64_t bstart = base & ~(bsize - 1);
		uint64_t bend = bstart + bsize;
		uint64_t stop = end < bend ? end : bend;
		uintptr_t *slot = &n->e[(base >> shift) & (FANOUT - 1)];
		int err = 0;

		if (base == bstart && stop == bend) {
			/* Whole block: after the overlap check it is empty. */
			*slot = r ? (uintptr_t)r | E_REGION : 0;
		} else if (level == LEVELS - 1) {
			if (r)
				err = subpage_add(slot, r);
			else if ((*slot & E_TAGS) == E_SUBPAGE)
				subpage_del(slot, old);
		} else {
			if (!*slot) {
				if (!r)
					goto next;
				struct node *c = calloc(1, sizeof(*c));

				if (!c)
					return -ENOMEM;
				*slot = (uintptr_t)c;
			}
			err = radix_set((struct node *)*slot, level + 1, base,
					stop, r, old);
		}
		if (err)
			return err;
next:
		base = stop;
	}
	return 0;
}

static int place(struct iobus *b, struct io_region *r, bool add)
{
	if (b->kind == IOBUS_PIO) {
		for (uint64_t p = r->base; p < r->base + r->len; p++)
			b->ports[p] = add ? r : NULL;
		return 0;
	}
	return radix_set(b->root, 0, r->base, r->base + r->len,
			 add ? r : NULL, r);
}

static bool range_ok(struct iobus *b, uint64_t base, uint64_t len)
{
	uint64_t limit = b->kind == IOBUS_PIO ? 65536 : 1ull << MMIO_BITS;

	return len && base < limit && len <= limit - base;
}

int iobus_register(struct iobus *b, uint64_t base, uint64_t len,
		   io_handler_fn fn, void *opaque, const char *name,
		   struct io_region **out)
{
	struct io_region *r;
	int err = -EEXIST;

	if (!range_ok(b, base, len) || !fn)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	*r = (struct io_region){ .base = base, .len = len, .fn = fn,
				.opaque = opaque, .name = name };

	pthread_rwlock_wrlock(&b->lock);
	if (overlaps(b, base, base + len, NULL))
		goto fail;
	if (b->nall == b->capall) {
		unsigned int cap = b->capall ? b->capall * 2 : 16;
		struct io_region **n = realloc(b->all, cap * sizeof(*n));

		err = -ENOMEM;
		if (!n)
			goto fail;
		b->all = n;
		b->capall = cap;
	}
	err = place(b, r, true);
	if (err) {
		place(b, r, false);
		goto fail;
	}
	b->all[b->nall++] = r;
	pthread_rwlock_unlock(&b->lock);
	if (out)
		*out = r;
	return 0;
fail:
	pthread_rwlock_unlock(&b->lock);
	free(r);
	return err;
}

int iobus_unregister(struct iobus *b, struct io_region *r)
{
	pthread_rwlock_wrlock(&b->lock);
	if (live(r)) {
		place(b, r, false);
		r->len = 0;	/* kept allocated: see the comment at the top */
	}
	pthread_rwlock_unlock(&b->lock);
	return 0;
}

int iobus_move(struct iobus *b, struct io_region *r, uint64_t new_base)
{
	int err = 0;

	if (!range_ok(b, new_base, r->len))
		return -EINVAL;
	pthread_rwlock_wrlock(&b->lock);
	if (overlaps(b, new_base, new_base + r->len, r)) {
		err = -EEXIST;
		goto out;
	}
	place(b, r, false);
	r->base = new_base;
	err = place(b, r, true);
	if (err)
		place(b, r, false);
out:
	pthread_rwlock_unlock(&b->lock);
	return err;
}

struct io_region *iobus_lookup(struct iobus *b, uint64_t addr)
{
	const struct node *n = b->root;

	if (b->kind == IOBUS_PIO)
		return addr < 65536 ? b->ports[addr] : NULL;
	if (addr >> MMIO_BITS)
		return NULL;
	for (int level = 0; level < LEVELS; level++) {
		uintptr_t e = n->e[(addr >> level_shift(level)) & (FANOUT - 1)];

		if (!e)
			return NULL;
		if ((e & E_TAGS) == E_REGION)
			return (struct io_region *)(e & ~(uintptr_t)E_TAGS);
		if ((e & E_TAGS) == E_SUBPAGE) {
			const struct subpage *s =
				(const struct subpage *)(e & ~(uintptr_t)E_TAGS);

			for (unsigned int i = 0; i < s->n; i++)
				if (addr - s->r[i]->base < s->r[i]->len)
					return s->r[i];
			return NULL;
		}
		if (level == LEVELS - 1)
			return NULL;
		n = (const struct node *)e;
	}
	return NULL;
}

bool iobus_access(struct iobus *b, struct kvm_vcpu *vcpu, uint64_t addr,
		  void *data, unsigned int len, bool is_write)
{
	unsigned char *p = data;
	bool claimed = false;

	if (!is_write)
		memset(data, 0xff, len);
	while (len) {
		struct io_region copy, *r;
		unsigned int chunk = len;

		pthread_rwlock_rdlock(&b->lock);
		r = iobus_lookup(b, addr);
		if (r)
			copy = *r;
		pthread_rwlock_unlock(&b->lock);
		if (!r) {
			chunk = 1;
		} else {
			uint64_t left = copy.base + copy.len - addr;

			if (chunk > left)
				chunk = (unsigned int)left;
			copy.fn(r, vcpu, addr - copy.base, p, chunk, is_write);
			__atomic_fetch_add(is_write ? &r->writes : &r->reads, 1,
					   __ATOMIC_RELAXED);
			__atomic_fetch_add(&r->bytes, chunk, __ATOMIC_RELAXED);
			claimed = true;
		}
		addr += chunk;
		p += chunk;
		len -= chunk;
	}
	if (!claimed)
		__atomic_fetch_add(&b->unclaimed, 1, __ATOMIC_RELAXED);
	return claimed;
}

uint64_t iobus_unclaimed(const struct iobus *b)
{
	return __atomic_load_n(&b->unclaimed, __ATOMIC_RELAXED);
}

void iobus_for_each(struct iobus *b,
		    void (*fn)(const struct io_region *r, void *arg),
		    void *arg)
{
	pthread_rwlock_rdlock(&b->lock);
	for (unsigned int i = 0; i < b->nall; i++)
		if (live(b->all[i]))
			fn(b->all[i], arg);
	pthread_rwlock_unlock(&b->lock);
}
