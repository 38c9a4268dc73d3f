// SPDX-License-Identifier: GPL-2.0
#include <errno.h>
#include <string.h>
#include <time.h>

#include "lkvm/iobus.h"
#include "tap.h"

struct rec {
	uint64_t off;
	unsigned int len, calls;
	bool write;
	struct iobus *bus;	/* for the handler that moves itself */
};

static void h(struct io_region *r, struct kvm_vcpu *v, uint64_t off,
	      void *data, unsigned int len, bool is_write)
{
	struct rec *x = r->opaque;

	(void)v;
	x->off = off;
	x->len = len;
	x->write = is_write;
	x->calls++;
	if (!is_write)
		memset(data, 0x5a, len);
}

static void mover(struct io_region *r, struct kvm_vcpu *v, uint64_t off,
		  void *data, unsigned int len, bool is_write)
{
	struct rec *x = r->opaque;

	h(r, v, off, data, len, is_write);
	/* A handler may move its own region, as a BAR write does. */
	iobus_move(x->bus, r, 0x50000);
}

/* ns per lookup of addr: the fastest of 9 batches of 100000. */
static double lookup_ns(struct iobus *bus, uint64_t addr)
{
	double best = 1e30;

	for (int b = 0; b < 9; b++) {
		struct timespec t0, t1;
		double ns;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (int i = 0; i < 100000; i++)
			iobus_lookup(bus, addr);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		ns = ((t1.tv_sec - t0.tv_sec) * 1e9 +
		      (t1.tv_nsec - t0.tv_nsec)) / 1e5;
		if (ns < best)
			best = ns;
	}
	return best;
}

int main(void)
{
	struct iobus *pio = iobus_new(IOBUS_PIO);
	struct iobus *mmio = iobus_new(IOBUS_MMIO);
	struct rec a = { 0 }, b = { 0 }, c = { 0 }, big = { 0 }, mv = { 0 };
	struct io_region *ra, *rm;
	uint8_t buf[8];

	CHECK(iobus_register(pio, 0x3f8, 8, h, &a, "a", &ra) == 0,
	      "pio: register 0x3f8-0x3ff");
	CHECK(iobus_register(pio, 0x3fc, 8, h, &b, "b", NULL) == -EEXIST,
	      "pio: an overlapping range is refused");
	CHECK(iobus_register(pio, 0xfffe, 4, h, &b, "b", NULL) == -EINVAL,
	      "pio: a range past port 0xffff is refused");
	CHECK(iobus_register(pio, 0x10, 0, h, &b, "b", NULL) == -EINVAL,
	      "pio: an empty range is refused");
	CHECK(iobus_access(pio, NULL, 0x3fd, buf, 1, false) && a.off == 5 &&
		      buf[0] == 0x5a,
	      "pio: a read reaches the handler at its offset");
	CHECK(!iobus_access(pio, NULL, 0x2f8, buf, 1, false) && buf[0] == 0xff,
	      "pio: an unclaimed read returns all ones");
	CHECK(iobus_unclaimed(pio) == 1, "pio: unclaimed accesses are counted");
	memset(buf, 0, sizeof(buf));
	CHECK(iobus_access(pio, NULL, 0x3fe, buf, 4, false) && a.len == 2 &&
		      buf[0] == 0x5a && buf[1] == 0x5a && buf[2] == 0xff,
	      "pio: an access crossing the region's end is split");
	iobus_unregister(pio, ra);
	CHECK(!iobus_access(pio, NULL, 0x3f8, buf, 1, true),
	      "pio: an unregistered range is gone");
	CHECK(iobus_register(pio, 0x3f8, 8, h, &b, "b", NULL) == 0,
	      "pio: the range can be registered again");

	/* MMIO: sub-page regions, big regions, high addresses. */
	CHECK(iobus_register(mmio, 0xd0000000, 0x200, h, &a, "m0", NULL) == 0 &&
		      iobus_register(mmio, 0xd0000200, 0x200, h, &b, "m1",
				     NULL) == 0,
	      "mmio: two regions in one page");
	CHECK(iobus_register(mmio, 0xd0000100, 0x10, h, &c, "x", NULL) ==
		      -EEXIST,
	      "mmio: overlap inside a page is refused");
	CHECK(iobus_access(mmio, NULL, 0xd0000204, buf, 4, true) &&
		      b.off == 4 && b.write && a.calls == 2,
	      "mmio: the second region of the page gets its access");
	CHECK(iobus_register(mmio, 0x100000000ull, 1ull << 30, h, &big, "big",
			     NULL) == 0,
	      "mmio: a 1 GiB region registers");
	CHECK(iobus_access(mmio, NULL, 0x100000000ull + (1ull << 30) - 8, buf,
			   8, false) &&
		      big.off == (1ull << 30) - 8 && big.len == 8,
	      "mmio: the last bytes of the 1 GiB region");
	CHECK(!iobus_access(mmio, NULL, 0x100000000ull + (1ull << 30), buf, 1,
			    false),
	      "mmio: the byte after it is unclaimed");
	CHECK(iobus_register(mmio, 1ull << 48, 16, h, &c, "x", NULL) == -EINVAL,
	      "mmio: addresses past 2^48 are refused");
	CHECK(iobus_register(mmio, UINT64_MAX - 8, 16, h, &c, "x", NULL) ==
		      -EINVAL,
	      "mmio: a wrapping range is refused");
	mv.bus = mmio;
	CHECK(iobus_register(mmio, 0x40000, 0x1000, mover, &mv, "mv", &rm) == 0,
	      "mmio: register a region that moves itself");
	iobus_access(mmio, NULL, 0x40010, buf, 4, true);
	CHECK(rm->base == 0x50000 && mv.off == 0x10,
	      "mmio: a handler can move its own region");
	CHECK(!iobus_access(mmio, NULL, 0x40010, buf, 4, true) &&
		      iobus_access(mmio, NULL, 0x50010, buf, 4, true),
	      "mmio: after the move only the new address answers");

	/* Lookup cost must not grow with the number of regions. Each figure
	 * is the fastest of several batches, so that a busy machine's
	 * preemptions do not decide the outcome. */
	{
		struct rec many = { 0 };
		double few, lots;

		few = lookup_ns(mmio, 0xd0000204);
		for (int i = 0; i < 4096; i++)
			iobus_register(mmio, 0xe0000000ull + i * 0x1000ull,
				       0x800, h, &many, "many", NULL);
		lots = lookup_ns(mmio, 0xd0000204);
		printf("# lookup: %.1f ns with 8 regions, %.1f ns with 4104\n",
		       few, lots);
		CHECK(lots < few * 3 + 2,
		      "mmio: lookup time does not grow with 4096 more regions");
		CHECK(iobus_lookup(mmio, 0xe0000000ull + 4095 * 0x1000ull + 0x7ff) &&
			      !iobus_lookup(mmio, 0xe0000000ull + 4095 * 0x1000ull + 0x800),
		      "mmio: the 4096th region ends where it should");
	}
	iobus_free(pio);
	iobus_free(mmio);
	return tap_done();
}
