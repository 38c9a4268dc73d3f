/* SPDX-License-Identifier: GPL-2.0 */
/*
 * virtio-balloon (virtio/balloon.c): what the control socket asks of it
 * (`lkvm balloon`, `lkvm stat --memory`), and the parts of the device
 * that unit tests reach without a guest.
 */
#ifndef LKVM_BALLOON_H
#define LKVM_BALLOON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct machine;

#define BALLOON_PAGE 4096ull
/* Statistics tags the device names (virtio 1.2, 5.5.6.3, and the ones
 * Linux sends after them); others are counted, not shown. */
#define BALLOON_NSTATS 16

/* What a control request asks (struct ctl_balloon_req.cmd). */
enum balloon_cmd {
	BALLOON_QUERY = 0,	/* report; ask the driver for fresh stats */
	BALLOON_INFLATE = 1,	/* target += bytes */
	BALLOON_DEFLATE = 2,	/* target -= bytes */
};

/*
 * Serves a control request: writes "key value" lines (docs/balloon.md)
 * to out and returns 0, or returns -errno with a one-line reason in err
 * (-ENODEV: the guest has no balloon; -EINVAL: the target would leave
 * [0, guest RAM] or bytes is not a whole number of pages).
 */
int balloon_request(struct machine *m, uint32_t cmd, uint64_t bytes,
		    FILE *out, char *err, size_t errlen);

/*
 * A statistics buffer (entries of le16 tag, le64 value): fills vals[tag]
 * for known tags and sets their bits in *seen. Returns the number of
 * entries, or -1 when len is not a whole number of entries (what there
 * is is still read).
 */
int balloon_parse_stats(const uint8_t *buf, size_t len,
			uint64_t vals[BALLOON_NSTATS], uint32_t *seen);
/* The key part for a statistics tag ("free_memory"), NULL if unknown. */
const char *balloon_stat_name(unsigned int tag);

/*
 * The host address of the guest page pfn, or NULL when it is not wholly
 * inside writable guest RAM (ROM and holes are never given back).
 */
void *balloon_page(struct machine *m, uint32_t pfn);

#endif
