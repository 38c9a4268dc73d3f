/* SPDX-License-Identifier: GPL-2.0 */
/*
 * virtio-vsock without vhost (virtio/vsock.c): the parts unit tests reach
 * without a guest. docs/balloon-vsock.md describes the device and its
 * host side.
 */
#ifndef LKVM_VSOCK_H
#define LKVM_VSOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VSOCK_HOST_CID 2
#define VSOCK_HDR_LEN 44

/* Operations and flags of struct virtio_vsock_hdr (virtio 1.2, 5.10.6). */
enum vsock_op {
	VSOCK_OP_INVALID = 0,
	VSOCK_OP_REQUEST = 1,
	VSOCK_OP_RESPONSE = 2,
	VSOCK_OP_RST = 3,
	VSOCK_OP_SHUTDOWN = 4,
	VSOCK_OP_RW = 5,
	VSOCK_OP_CREDIT_UPDATE = 6,
	VSOCK_OP_CREDIT_REQUEST = 7,
};
#define VSOCK_TYPE_STREAM 1
#define VSOCK_SHUTDOWN_RCV 1
#define VSOCK_SHUTDOWN_SEND 2

/* The header in host byte order. */
struct vsock_hdr {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port;
	uint32_t len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
};

void vsock_hdr_get(const uint8_t *p, struct vsock_hdr *h);
void vsock_hdr_put(uint8_t *p, const struct vsock_hdr *h);

/* Why a packet from the guest was refused (counted per reason). */
enum vsock_bad {
	VSOCK_OK,
	VSOCK_BAD_SHORT,	/* shorter than the header */
	VSOCK_BAD_LEN,		/* len disagrees with the buffer, or > 64 KiB */
	VSOCK_BAD_CID,		/* not from the guest's CID, or not to the host */
	VSOCK_BAD_TYPE,		/* not a stream */
	VSOCK_BAD_OP,		/* an operation that does not exist */
	VSOCK_BAD_CREDIT,	/* more data than the host's buffer allows */
	VSOCK_BAD_STATE,	/* an operation the connection is not in */
	VSOCK_BAD_NR
};
const char *vsock_bad_name(unsigned int why);

/*
 * Checks a packet the guest sent: out_len bytes of which the header is
 * the first VSOCK_HDR_LEN. Returns VSOCK_OK or why it is refused.
 */
enum vsock_bad vsock_check_packet(const struct vsock_hdr *h, uint64_t out_len,
				  uint64_t guest_cid);

/*
 * --vsock: "CID,PATH" or "cid=CID,uds=PATH" (either order). CID is 3 to
 * 0xfffffffe; PATH leaves room for "_PORT" in a socket address. Returns
 * 0, or -1 with a one-line message in err.
 */
int vsock_parse_option(const char *arg, uint32_t *cid, char *path,
		       size_t pathlen, char *err, size_t errlen);

#endif
