// SPDX-License-Identifier: GPL-2.0
/*
 * The split virtqueue and its descriptor-chain walker (virtio/queue.c)
 * against a fake machine: well-formed chains, every malformed case the
 * walker must refuse, the used ring, EVENT_IDX and notification
 * suppression, and the iovec helpers.
 */
#include <string.h>

#include "fake-machine.h"
#include "lkvm/machine.h"
#include "lkvm/virtio_queue.h"
#include "tap.h"

/* 3 GiB of RAM in one region, so that 2 GiB buffers are in RAM. */
#define RAM (3ull << 30)
#define DESC 0x10000ull
#define AVAIL 0x11000ull
#define USED 0x12000ull
#define BUF 0x20000ull
#define IND 0x30000ull
#define IND_BIG 0x40000ull

static struct machine *m;
static struct virtq vq;
static struct iovec iov[VIRTQ_MAX_SEGS];
static struct virtq_chain c;

static void *gp(uint64_t gpa)
{
	return guest_ptr(m, gpa, 1);
}

static void setup(uint16_t size, bool indirect, bool event_idx)
{
	memset(gp(DESC), 0, 0x20000);
	memset(&vq, 0, sizeof(vq));
	vq.m = m;
	vq.size = size;
	vq.desc_gpa = DESC;
	vq.avail_gpa = AVAIL;
	vq.used_gpa = USED;
	vq.indirect = indirect;
	vq.event_idx = event_idx;
	virtq_enable(&vq);
	c = (struct virtq_chain){ .iov = iov, .cap = VIRTQ_MAX_SEGS };
}

static void put_desc(uint64_t table, unsigned int i, uint64_t addr,
		     uint32_t len, uint16_t flags, uint16_t next)
{
	struct virtq_desc d = { addr, len, flags, next };

	memcpy(guest_ptr(m, table + 16ull * i, 16), &d, 16);
}

static void desc(unsigned int i, uint64_t addr, uint32_t len, uint16_t flags,
		 uint16_t next)
{
	put_desc(DESC, i, addr, len, flags, next);
}

static void make_avail(uint16_t head)
{
	struct virtq_avail *a = gp(AVAIL);

	a->ring[a->idx % vq.size] = head;
	a->idx++;
}

static int pop_one(uint16_t head)
{
	make_avail(head);
	return virtq_pop(&vq, &c);
}

static void test_good_chains(void)
{
	setup(8, true, false);
	desc(0, BUF, 16, VIRTQ_DESC_F_NEXT, 1);
	desc(1, BUF + 100, 200, VIRTQ_DESC_F_NEXT, 5);
	desc(5, BUF + 1000, 1, VIRTQ_DESC_F_WRITE, 0);
	CHECK(virtq_pop(&vq, &c) == 0, "an empty ring pops nothing");
	CHECK(pop_one(0) == 1, "a 3-descriptor chain pops");
	CHECK(c.head == 0 && c.nout == 2 && c.nin == 1 && c.out_len == 216 &&
		      c.in_len == 1,
	      "readable and writable parts counted apart");
	CHECK(iov[0].iov_base == gp(BUF) && iov[0].iov_len == 16 &&
		      iov[1].iov_base == gp(BUF + 100) &&
		      iov[2].iov_base == gp(BUF + 1000),
	      "iovecs point at the guest's buffers");
	CHECK(vq.last_avail == 1 && virtq_pop(&vq, &c) == 0,
	      "the ring is empty again");

	/* As long as the table, not longer. */
	setup(4, false, false);
	for (unsigned int i = 0; i < 4; i++)
		desc(i, BUF + i, 1, i < 3 ? VIRTQ_DESC_F_NEXT : 0, i + 1);
	CHECK(pop_one(0) == 1 && c.nout == 4,
	      "a chain as long as the queue is fine");

	/* Only writable buffers, and 4 GiB - 1 in total. */
	setup(4, false, false);
	desc(0, 0, 0x80000000u, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	desc(1, 0, 0x7fffffffu, VIRTQ_DESC_F_WRITE, 0);
	CHECK(pop_one(0) == 1 && c.nout == 0 && c.nin == 2 &&
		      c.in_len == 0xffffffffu,
	      "a chain of 2^32 - 1 bytes is accepted");

	/* Direct descriptors, then an indirect table at the end. */
	setup(8, true, false);
	desc(0, BUF, 16, VIRTQ_DESC_F_NEXT, 1);
	desc(1, IND, 32, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE, 0);
	put_desc(IND, 0, BUF + 16, 8, VIRTQ_DESC_F_NEXT, 1);
	put_desc(IND, 1, BUF + 32, 4, VIRTQ_DESC_F_WRITE, 0);
	CHECK(pop_one(0) == 1 && c.nout == 2 && c.nin == 1 && c.out_len == 24,
	      "chained descriptors then an indirect table (2.7.5.3.2)");

	/* An indirect table of 1024 entries. */
	setup(8, true, false);
	for (unsigned int i = 0; i < VIRTQ_MAX_SEGS; i++)
		put_desc(IND_BIG, i, BUF, 1,
			 i + 1 < VIRTQ_MAX_SEGS ? VIRTQ_DESC_F_NEXT : 0, i + 1);
	desc(0, IND_BIG, 16 * VIRTQ_MAX_SEGS, VIRTQ_DESC_F_INDIRECT, 0);
	CHECK(pop_one(0) == 1 && c.nout == VIRTQ_MAX_SEGS,
	      "an indirect table of 1024 buffers");
}

/* One malformed chain: popped, refused with err, the queue stopped. */
static void bad(const char *what, int err)
{
	int r = pop_one(0);

	CHECK(r == -err, what);
	if (r != -err)
		printf("# got %d (%s), expected %d\n", r, virtq_strerror(r),
		       -err);
	CHECK(!virtq_ready(&vq) && vq.error == err &&
		      virtq_pop(&vq, &c) == -err && vq.last_avail == 0,
	      "  ... and the queue stays stopped, nothing consumed");
}

static void test_bad_chains(void)
{
	setup(8, true, false);
	CHECK(pop_one(8) == -VIRTQ_E_HEAD, "head index = queue size: refused");

	setup(8, true, false);
	desc(0, BUF, 1, VIRTQ_DESC_F_NEXT, 8);
	bad("next = queue size: refused", VIRTQ_E_NEXT);

	setup(8, true, false);
	desc(0, BUF, 1, VIRTQ_DESC_F_NEXT, 1);
	desc(1, BUF, 1, VIRTQ_DESC_F_NEXT, 0);
	bad("a loop (0 -> 1 -> 0): refused", VIRTQ_E_LOOP);

	setup(8, true, false);
	desc(0, BUF, 1, VIRTQ_DESC_F_NEXT, 0);
	bad("a descriptor pointing at itself: refused", VIRTQ_E_LOOP);

	setup(4, false, false);
	for (unsigned int i = 0; i < 4; i++)
		desc(i, BUF, 1, VIRTQ_DESC_F_NEXT, (i + 1) % 4);
	bad("a chain longer than the queue: refused", VIRTQ_E_LOOP);

	setup(8, true, false);
	desc(0, RAM, 1, 0, 0);
	bad("a buffer just past the end of RAM: refused", VIRTQ_E_ADDR);

	setup(8, true, false);
	desc(0, RAM - 8, 16, 0, 0);
	bad("a buffer straddling the end of RAM: refused", VIRTQ_E_ADDR);

	setup(8, true, false);
	desc(0, 0xc0000000ull, 4096, 0, 0);
	bad("a buffer in the PCI hole: refused", VIRTQ_E_ADDR);

	setup(8, true, false);
	desc(0, ~0ull - 10, 100, 0, 0);
	bad("an address + length that wraps 64 bits: refused", VIRTQ_E_ADDR);

	setup(8, true, false);
	desc(0, BUF, 0, 0, 0);
	bad("a zero-length buffer: refused (as QEMU)", VIRTQ_E_ZERO_LEN);

	setup(8, true, false);
	desc(0, 0, 0x80000000u, VIRTQ_DESC_F_NEXT, 1);
	desc(1, 0, 0x80000000u, 0, 0);
	bad("lengths adding up to 2^32: refused", VIRTQ_E_TOO_LONG);

	setup(8, true, false);
	desc(0, 0, 0x60000000u, VIRTQ_DESC_F_NEXT, 1);
	desc(1, 0, 0x60000000u, VIRTQ_DESC_F_NEXT, 2);
	desc(2, 0, 0x60000000u, 0, 0);
	bad("three 1.5 GiB buffers (4.5 GiB in all): refused",
	    VIRTQ_E_TOO_LONG);

	setup(8, true, false);
	desc(0, BUF, 1, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	desc(1, BUF, 1, 0, 0);
	bad("a readable buffer after a writable one: refused", VIRTQ_E_ORDER);

	setup(8, true, false);
	c.cap = 2;
	desc(0, BUF, 1, VIRTQ_DESC_F_NEXT, 1);
	desc(1, BUF, 1, VIRTQ_DESC_F_NEXT, 2);
	desc(2, BUF, 1, 0, 0);
	bad("more buffers than the caller takes: refused", VIRTQ_E_TOO_MANY);

	setup(8, false, false);
	desc(0, IND, 16, VIRTQ_DESC_F_INDIRECT, 0);
	put_desc(IND, 0, BUF, 1, 0, 0);
	bad("indirect without VIRTIO_F_INDIRECT_DESC: refused",
	    VIRTQ_E_INDIRECT);

	setup(8, true, false);
	desc(0, IND, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
	desc(1, BUF, 1, 0, 0);
	put_desc(IND, 0, BUF, 1, 0, 0);
	bad("indirect with NEXT: refused", VIRTQ_E_INDIRECT);

	setup(8, true, false);
	desc(0, IND, 16, VIRTQ_DESC_F_INDIRECT, 0);
	put_desc(IND, 0, IND, 16, VIRTQ_DESC_F_INDIRECT, 0);
	bad("an indirect table inside an indirect table: refused",
	    VIRTQ_E_INDIRECT);

	setup(8, true, false);
	desc(0, IND, 0, VIRTQ_DESC_F_INDIRECT, 0);
	bad("an indirect table of length 0: refused", VIRTQ_E_INDIRECT_LEN);

	setup(8, true, false);
	desc(0, IND, 24, VIRTQ_DESC_F_INDIRECT, 0);
	bad("an indirect table of 24 bytes: refused", VIRTQ_E_INDIRECT_LEN);

	setup(8, true, false);
	desc(0, IND_BIG, 16 * (VIRTQ_MAX_SEGS + 1), VIRTQ_DESC_F_INDIRECT, 0);
	bad("an indirect table of 1025 entries: refused",
	    VIRTQ_E_INDIRECT_LEN);

	setup(8, true, false);
	desc(0, RAM - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
	bad("an indirect table straddling the end of RAM: refused",
	    VIRTQ_E_ADDR);

	setup(8, true, false);
	desc(0, IND, 32, VIRTQ_DESC_F_INDIRECT, 0);
	put_desc(IND, 0, BUF, 1, VIRTQ_DESC_F_NEXT, 1);
	put_desc(IND, 1, BUF, 1, VIRTQ_DESC_F_NEXT, 0);
	bad("a loop inside an indirect table: refused", VIRTQ_E_LOOP);

	setup(8, true, false);
	desc(0, IND, 32, VIRTQ_DESC_F_INDIRECT, 0);
	put_desc(IND, 0, BUF, 1, VIRTQ_DESC_F_NEXT, 2);
	bad("next past the indirect table's end: refused", VIRTQ_E_NEXT);

	setup(8, true, false);
	desc(0, IND, 16, VIRTQ_DESC_F_INDIRECT, 0);
	put_desc(IND, 0, RAM, 4, 0, 0);
	bad("an indirect buffer outside RAM: refused", VIRTQ_E_ADDR);

	setup(8, true, false);
	desc(0, IND, 32, VIRTQ_DESC_F_INDIRECT, 0);
	put_desc(IND, 0, BUF, 1, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	put_desc(IND, 1, BUF, 1, 0, 0);
	bad("indirect: readable after writable: refused", VIRTQ_E_ORDER);

	setup(8, true, false);
	((struct virtq_avail *)gp(AVAIL))->idx = 9;
	CHECK(virtq_pop(&vq, &c) == -VIRTQ_E_AVAIL_IDX && !virtq_ready(&vq),
	      "the available index 9 entries ahead of an 8-entry queue: "
	      "refused");
	CHECK(!strcmp(virtq_strerror(-VIRTQ_E_LOOP),
		      "descriptor chain longer than its table (a loop)") &&
		      !strcmp(virtq_strerror(99), "unknown error"),
	      "errors have names");
}

static void test_rings(void)
{
	memset(&vq, 0, sizeof(vq));
	vq.m = m;
	vq.size = 8;
	vq.desc_gpa = RAM - 64;
	vq.avail_gpa = AVAIL;
	vq.used_gpa = USED;
	CHECK(virtq_enable(&vq) == -VIRTQ_E_RING && vq.enabled &&
		      !virtq_ready(&vq) && virtq_pop(&vq, &c) == -VIRTQ_E_RING,
	      "a descriptor table past the end of RAM: the queue is stopped");
	vq.desc_gpa = DESC + 8;
	CHECK(virtq_enable(&vq) == -VIRTQ_E_RING,
	      "a misaligned descriptor table is refused");
	vq.desc_gpa = DESC;
	vq.used_gpa = USED + 2;
	CHECK(virtq_enable(&vq) == -VIRTQ_E_RING,
	      "a misaligned used ring is refused");
	vq.used_gpa = 0xfffffffffffff000ull;
	CHECK(virtq_enable(&vq) == -VIRTQ_E_RING,
	      "a used ring at the top of the address space is refused");
	vq.used_gpa = USED;
	vq.size = 0;
	CHECK(virtq_enable(&vq) == -VIRTQ_E_RING, "queue size 0 is refused");
	vq.size = 8;
	CHECK(virtq_enable(&vq) == 0 && virtq_ready(&vq),
	      "good rings enable the queue");
	virtq_reset(&vq);
	CHECK(!vq.enabled && !virtq_ready(&vq) && virtq_pop(&vq, &c) == 0,
	      "a reset queue is disabled and pops nothing");

	/* The legacy layout: used ring at the next page boundary. */
	memset(&vq, 0, sizeof(vq));
	vq.size = 256;
	virtq_legacy_layout(&vq, 0x100000, 4096);
	CHECK(vq.desc_gpa == 0x100000 && vq.avail_gpa == 0x101000 &&
		      vq.used_gpa == 0x102000,
	      "legacy layout: desc, avail, used on the next 4 KiB");
}

static void test_used_and_events(void)
{
	struct virtq_used *u = gp(USED);
	struct virtq_avail *a = gp(AVAIL);

	setup(4, false, false);
	desc(0, BUF, 1, VIRTQ_DESC_F_WRITE, 0);
	pop_one(0);
	virtq_push(&vq, 0, 1);
	CHECK(u->idx == 1 && u->ring[0].id == 0 && u->ring[0].len == 1,
	      "push writes the used element, then the index");
	CHECK(virtq_need_interrupt(&vq), "flags 0: the driver is interrupted");
	a->flags = VIRTQ_AVAIL_F_NO_INTERRUPT;
	virtq_push(&vq, 0, 1);
	CHECK(!virtq_need_interrupt(&vq),
	      "VIRTQ_AVAIL_F_NO_INTERRUPT: no interrupt");
	virtq_kicks_off(&vq);
	CHECK(u->flags == VIRTQ_USED_F_NO_NOTIFY,
	      "kicks off: VIRTQ_USED_F_NO_NOTIFY");
	CHECK(!virtq_kicks_on(&vq) && u->flags == 0,
	      "kicks on: flag cleared, nothing new");
	make_avail(0);
	virtq_kicks_off(&vq);
	CHECK(virtq_kicks_on(&vq), "kicks on sees a buffer made available");

	/* EVENT_IDX: interrupt when used_event lies in (old, new]. */
	setup(8, false, true);
	for (unsigned int i = 0; i < 8; i++)
		desc(i, BUF, 1, VIRTQ_DESC_F_WRITE, 0);
	for (unsigned int i = 0; i < 6; i++)
		make_avail((uint16_t)i);
	a->ring[8] = 0;	/* used_event */
	virtq_pop(&vq, &c);
	virtq_push(&vq, c.head, 1);
	CHECK(virtq_need_interrupt(&vq), "EVENT_IDX: the first one interrupts");
	a->ring[8] = 2;	/* wake me when used idx passes 2 */
	virtq_pop(&vq, &c);
	virtq_push(&vq, c.head, 1);	/* used idx 2 */
	CHECK(!virtq_need_interrupt(&vq), "EVENT_IDX: before used_event: none");
	virtq_pop(&vq, &c);
	virtq_push(&vq, c.head, 1);	/* used idx 3: entry 2 written */
	CHECK(virtq_need_interrupt(&vq),
	      "EVENT_IDX: crossing used_event interrupts");
	virtq_pop(&vq, &c);
	virtq_push(&vq, c.head, 1);
	virtq_pop(&vq, &c);
	virtq_push(&vq, c.head, 1);
	CHECK(!virtq_need_interrupt(&vq),
	      "EVENT_IDX: used_event behind: no new interrupt");
	virtq_kicks_off(&vq);
	CHECK(u->flags == 0, "EVENT_IDX: the flags stay 0");
	virtq_kicks_on(&vq);
	CHECK(*(uint16_t *)&u->ring[8] == vq.last_avail,
	      "EVENT_IDX: kicks on writes avail_event = next to take");

	/* A queue size that is not a power of two works modulo its size,
	 * as QEMU lets it. */
	setup(3, false, false);
	for (unsigned int i = 0; i < 3; i++)
		desc(i, BUF, 1, 0, 0);
	for (unsigned int i = 0; i < 7; i++) {
		if (pop_one((uint16_t)(i % 3)) != 1 || c.head != i % 3)
			break;
		virtq_push(&vq, c.head, 0);
		if (i == 6)
			CHECK(u->ring[6 % 3].id == 0 && u->idx == 7,
			      "queue size 3: slots wrap modulo 3");
	}
}

static void test_iov(void)
{
	char a[4] = "abcd", b[3] = "efg", out[8] = { 0 };
	struct iovec v[2] = { { a, 4 }, { b, 3 } }, s[2];

	CHECK(iov_to_buf(v, 2, 2, out, 4) == 4 && !memcmp(out, "cdef", 4),
	      "iov_to_buf across entries");
	CHECK(iov_from_buf(v, 2, 3, "XYZ", 3) == 3 && !memcmp(a, "abcX", 4) &&
		      !memcmp(b, "YZg", 3),
	      "iov_from_buf across entries");
	CHECK(iov_to_buf(v, 2, 6, out, 8) == 1, "reads stop at the end");
	CHECK(iov_slice(v, 2, 1, 5, s, 2) == 2 && s[0].iov_base == a + 1 &&
		      s[0].iov_len == 3 && s[1].iov_base == b &&
		      s[1].iov_len == 2,
	      "iov_slice: bytes [1, 6)");
	CHECK(iov_slice(v, 2, 4, 0, s, 2) == 0, "an empty slice");
}

int main(void)
{
	m = fake_machine_new(RAM);
	test_good_chains();
	test_bad_chains();
	test_rings();
	test_used_and_events();
	test_iov();
	fake_machine_free(m);
	return tap_done();
}
