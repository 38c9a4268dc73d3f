// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer harness for the descriptor-chain walker and the split ring
 * (virtio/queue.c): the input is a queue configuration, available ring
 * entries, a descriptor table and the rest of guest memory, all hostile.
 *
 * Input layout:
 *   0-1  queue size (1..256, as size % 256 + 1)
 *   2    bit 0 INDIRECT_DESC, bit 1 EVENT_IDX, bits 4-7: caller's iov cap
 *   3    how many chains to pop (1..16)
 *   4-5  the available index the driver published
 *   then the available ring, the descriptor table (size * 16 bytes), and
 *   the bytes of the buffer area where indirect tables live.
 * Descriptor addresses with bit 63 clear are folded into the low 2 MiB
 * (RAM is 1 MiB), so that most land in or near RAM; with bit 63 set they
 * are used as they are, to reach the wrap-around cases.
 *
 * Each chain popped is checked: its buffers lie in RAM, the lengths add
 * up, readable ones come first, the cap is respected; every byte is read
 * and the writable ones written, which ASan checks.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fake-machine.h"
#include "lkvm/util.h"
#include "lkvm/virtio_queue.h"

#define RAM (1u << 20)
#define DESC 0x1000u
#define AVAIL 0x9000u
#define USED 0xa000u
#define AREA 0x10000u
#define AREA_SIZE 0x10000u

static struct machine *m;
static uint8_t *ram;
static struct iovec iov[VIRTQ_MAX_SEGS];

static void check(int cond)
{
	if (!cond)
		abort();
}

static int in_ram(const void *p, size_t len)
{
	const uint8_t *b = p;

	return b >= ram && len <= RAM && (size_t)(b - ram) <= RAM - len;
}

/*
 * A second, deliberately plain statement of the rules (virtio 1.2 2.7.5
 * and lkvm's limits), to check the walker's verdict and its counts, not
 * just that it does not crash.
 */
static int model(unsigned int qsize, bool indirect_ok, uint16_t head,
		 unsigned int cap, unsigned int *nseg, uint64_t *total)
{
	uint64_t table = DESC;
	unsigned int entries = qsize, seen = 0, i = head;
	bool in_indirect = false, writable = false;

	*nseg = 0;
	*total = 0;
	if (head >= qsize)
		return -1;
	for (;;) {
		struct virtq_desc d;

		if (seen++ >= entries)
			return -1;
		memcpy(&d, ram + table + 16ull * i, 16);
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			if (!indirect_ok || in_indirect ||
			    (d.flags & VIRTQ_DESC_F_NEXT) || d.len == 0 ||
			    d.len % 16 || d.len / 16 > VIRTQ_MAX_SEGS ||
			    d.addr >= RAM || d.len > RAM - d.addr)
				return -1;
			table = d.addr;
			entries = d.len / 16;
			in_indirect = true;
			seen = 0;
			i = 0;
			continue;
		}
		if (d.len == 0 || d.addr >= RAM || d.len > RAM - d.addr)
			return -1;
		if (d.flags & VIRTQ_DESC_F_WRITE)
			writable = true;
		else if (writable)
			return -1;
		*total += d.len;
		if (*total > UINT32_MAX || *nseg >= MIN(cap, VIRTQ_MAX_SEGS))
			return -1;
		(*nseg)++;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		if (d.next >= entries)
			return -1;
		i = d.next;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct virtq vq = { 0 };
	struct virtq_chain c = { .iov = iov };
	uint16_t qsize, idx;
	unsigned int npop, caps[] = { VIRTQ_MAX_SEGS, 1, 2, 3, 8, 64 };
	size_t off = 6, n;

	if (!m) {
		m = fake_machine_new(RAM);
		ram = guest_ptr(m, 0, RAM);
	}
	if (size < off)
		return 0;
	memset(ram, 0, AREA + AREA_SIZE);
	qsize = (uint16_t)((data[0] | data[1] << 8) % 256 + 1);
	c.cap = caps[(data[2] >> 4) % 6];
	npop = data[3] % 16 + 1;
	idx = (uint16_t)(data[4] | data[5] << 8);

	/* The available ring: flags, idx, entries. */
	n = MIN(size - off, 2u * qsize + 2);
	memcpy(ram + AVAIL + 4, data + off, n);
	off += n;
	memcpy(ram + AVAIL + 2, &idx, 2);
	/* The descriptor table, addresses folded. */
	n = MIN(size - off, 16u * qsize);
	memcpy(ram + DESC, data + off, n);
	off += n;
	for (unsigned int i = 0; i < qsize; i++) {
		uint64_t a;

		memcpy(&a, ram + DESC + 16 * i, 8);
		if (!(a >> 63))
			a &= 0x1fffff;
		memcpy(ram + DESC + 16 * i, &a, 8);
	}
	/* The rest: indirect tables and buffers. */
	n = MIN(size - off, AREA_SIZE);
	memcpy(ram + AREA, data + off, n);

	vq.m = m;
	vq.size = qsize;
	vq.desc_gpa = DESC;
	vq.avail_gpa = AVAIL;
	vq.used_gpa = USED;
	vq.indirect = data[2] & 1;
	vq.event_idx = data[2] & 2;
	if (virtq_enable(&vq))
		return 0;
	virtq_kicks_off(&vq);
	for (unsigned int k = 0; k < npop; k++) {
		uint64_t total = 0, sum = 0, mtotal;
		uint16_t avail = (uint16_t)(idx - vq.last_avail), head;
		unsigned int mseg;
		int expect, r;

		memcpy(&head, ram + AVAIL + 4 + 2 * (vq.last_avail % qsize), 2);
		expect = avail == 0 ? 0 : avail > qsize ? -1 :
			 model(qsize, vq.indirect, head, c.cap, &mseg, &mtotal);
		r = virtq_pop(&vq, &c);
		check(expect < 0 ? r < 0 : expect == 0 && avail ? r == 1 : r == 0);
		if (r <= 0) {
			check(r == 0 || (r < 0 && -r < VIRTQ_E_NR &&
					 !virtq_ready(&vq)));
			break;
		}
		check(c.nout + c.nin == mseg && c.out_len + (uint64_t)c.in_len ==
							mtotal);
		check(c.head < qsize);
		check(c.nout + c.nin <= c.cap && c.nout + c.nin <= VIRTQ_MAX_SEGS);
		for (unsigned int i = 0; i < c.nout + c.nin; i++) {
			uint8_t *p = iov[i].iov_base;

			check(iov[i].iov_len && in_ram(p, iov[i].iov_len));
			total += iov[i].iov_len;
			for (size_t j = 0; j < iov[i].iov_len; j += 64)
				sum += p[j];
			if (i >= c.nout)
				p[iov[i].iov_len - 1] = (uint8_t)sum;
		}
		check(total == (uint64_t)c.out_len + c.in_len);
		check(total <= UINT32_MAX);
		virtq_push(&vq, c.head, c.in_len);
	}
	virtq_need_interrupt(&vq);
	virtq_kicks_on(&vq);
	return 0;
}
