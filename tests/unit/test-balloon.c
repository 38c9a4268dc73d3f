// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-balloon's guest-facing parsing without a guest: which PFNs may be
 * given back (only whole pages of writable RAM), and the statistics
 * buffer (known tags kept, unknown ones skipped, a torn entry noticed).
 */
#include <string.h>

#include "fake-machine.h"
#include "lkvm/balloon.h"
#include "lkvm/util.h"
#include "tap.h"

#define RAM (64ull << 20)

static void test_pages(void)
{
	struct machine *m = fake_machine_new(RAM);
	uint32_t last = (uint32_t)(RAM / BALLOON_PAGE) - 1;
	char *p0 = balloon_page(m, 0x100);

	CHECK(p0 && p0 == guest_ptr(m, 0x100000, BALLOON_PAGE),
	      "a PFN inside RAM maps to its host page");
	CHECK(balloon_page(m, last) == guest_ptr(m, (uint64_t)last * 4096, 4096),
	      "the last page of RAM is accepted");
	CHECK(!balloon_page(m, last + 1), "the first PFN past RAM is refused");
	CHECK(!balloon_page(m, 0xffffffffu), "PFN 0xffffffff is refused");
	CHECK(!balloon_page(m, 0xfec00), "a PFN in the MMIO hole is refused");
	/* A read-only region (ROM) is never given back. */
	m->mem[0].readonly = true;
	CHECK(!balloon_page(m, (uint32_t)(m->mem[0].gpa / 4096)),
	      "a PFN in a read-only region is refused");
	m->mem[0].readonly = false;
	fake_machine_free(m);
}

static void put(uint8_t *p, uint16_t tag, uint64_t v)
{
	put_le16(p, tag);
	put_le64(p + 2, v);
}

static void test_stats(void)
{
	uint64_t vals[BALLOON_NSTATS] = { 0 };
	uint32_t seen = 0;
	uint8_t buf[41];

	put(buf, 5, 128ull << 20);	/* total_memory */
	put(buf + 10, 4, 7);		/* free_memory */
	put(buf + 20, 200, 99);		/* unknown */
	put(buf + 30, 15, 3);		/* direct_reclaims, the last known */
	CHECK(balloon_parse_stats(buf, 40, vals, &seen) == 4,
	      "four entries are read");
	CHECK(vals[5] == 128ull << 20 && vals[4] == 7 && vals[15] == 3,
	      "values land under their tags");
	CHECK(seen == ((1u << 5) | (1u << 4) | (1u << 15)),
	      "only the known tags are marked seen");
	CHECK(balloon_parse_stats(buf, 41, vals, &seen) == -1,
	      "a buffer that ends inside an entry is reported");
	CHECK(balloon_parse_stats(buf, 0, vals, &seen) == 0,
	      "an empty buffer has no entries");
	CHECK(!strcmp(balloon_stat_name(4), "free_memory") &&
	      !balloon_stat_name(BALLOON_NSTATS), "tag names");
}

int main(void)
{
	test_pages();
	test_stats();
	return tap_done();
}
