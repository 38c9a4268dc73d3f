// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-vsock's guest-facing checks and its option without a guest: the
 * header codec, which packets are refused and why, and --vsock spellings.
 */
#include <string.h>

#include "lkvm/vsock.h"
#include "tap.h"

static struct vsock_hdr good(void)
{
	return (struct vsock_hdr){
		.src_cid = 3, .dst_cid = VSOCK_HOST_CID, .src_port = 1000,
		.dst_port = 22, .type = VSOCK_TYPE_STREAM,
		.op = VSOCK_OP_REQUEST, .buf_alloc = 65536,
	};
}

static void test_codec(void)
{
	struct vsock_hdr h = good(), back;
	uint8_t raw[VSOCK_HDR_LEN];

	h.len = 0x11223344;
	h.flags = 3;
	h.fwd_cnt = 0xdeadbeef;
	vsock_hdr_put(raw, &h);
	vsock_hdr_get(raw, &back);
	CHECK(back.src_cid == h.src_cid && back.dst_cid == h.dst_cid &&
	      back.src_port == h.src_port && back.dst_port == h.dst_port &&
	      back.len == h.len && back.type == h.type && back.op == h.op &&
	      back.flags == h.flags && back.buf_alloc == h.buf_alloc &&
	      back.fwd_cnt == h.fwd_cnt, "a header survives put and get");
	CHECK(raw[0] == 3 && raw[8] == 2 && raw[24] == 0x44 && raw[30] == 1,
	      "fields sit little-endian at their spec offsets");
}

static void test_packets(void)
{
	struct vsock_hdr h = good();

	CHECK(vsock_check_packet(&h, VSOCK_HDR_LEN, 3) == VSOCK_OK,
	      "a request is accepted");
	CHECK(vsock_check_packet(&h, VSOCK_HDR_LEN - 1, 3) == VSOCK_BAD_SHORT,
	      "a packet shorter than the header is refused");
	h.op = VSOCK_OP_RW;
	h.len = 100;
	CHECK(vsock_check_packet(&h, VSOCK_HDR_LEN + 100, 3) == VSOCK_OK,
	      "data whose length matches its buffer is accepted");
	CHECK(vsock_check_packet(&h, VSOCK_HDR_LEN + 99, 3) == VSOCK_BAD_LEN,
	      "a length beyond the buffer is refused");
	h.len = 64 * 1024 + 1;
	CHECK(vsock_check_packet(&h, VSOCK_HDR_LEN + h.len, 3) == VSOCK_BAD_LEN,
	      "more than 64 KiB in one packet is refused");
	h.len = 0xffffffffu;
	CHECK(vsock_check_packet(&h, VSOCK_HDR_LEN, 3) == VSOCK_BAD_LEN,
	      "a length of 2^32-1 is refused");
	h = good();
	h.len = 4;
	CHECK(vsock_check_packet(&h, VSOCK_HDR_LEN + 4, 3) == VSOCK_BAD_LEN,
	      "a payload on a request is refused");
	h = good();
	CHECK(vsock_check_packet(&h, VSOCK_HDR_LEN, 4) == VSOCK_BAD_CID,
	      "another source CID is refused");
	h.dst_cid = 5;
	CHECK(vsock_check_packet(&h, VSOCK_HDR_LEN, 3) == VSOCK_BAD_CID,
	      "a destination other than the host is refused");
	h = good();
	h.src_cid |= 1ull << 32;
	CHECK(vsock_check_packet(&h, VSOCK_HDR_LEN, 3) == VSOCK_BAD_CID,
	      "high bits of the CID are not ignored");
	h = good();
	h.op = 8;
	CHECK(vsock_check_packet(&h, VSOCK_HDR_LEN, 3) == VSOCK_BAD_OP,
	      "operation 8 does not exist");
	h.op = VSOCK_OP_INVALID;
	CHECK(vsock_check_packet(&h, VSOCK_HDR_LEN, 3) == VSOCK_BAD_OP,
	      "operation 0 is invalid");
	h = good();
	h.type = 2;
	CHECK(vsock_check_packet(&h, VSOCK_HDR_LEN, 3) == VSOCK_BAD_TYPE,
	      "seqpacket (not offered) is refused");
	CHECK(strcmp(vsock_bad_name(VSOCK_BAD_OP), "an unknown operation") == 0 &&
	      strcmp(vsock_bad_name(99), "?") == 0, "reasons have names");
}

static void test_option(void)
{
	char path[108], err[256];
	uint32_t cid = 0;

	CHECK(!vsock_parse_option("3,/tmp/v.sock", &cid, path, sizeof(path),
				  err, sizeof(err)) &&
	      cid == 3 && !strcmp(path, "/tmp/v.sock"), "CID,PATH");
	CHECK(vsock_parse_option("uds=/tmp/a,b.sock", &cid, path, sizeof(path),
				 err, sizeof(err)) != 0, "uds= without cid= is refused");
	CHECK(!vsock_parse_option("cid=42,uds=/tmp/a,b.sock", &cid, path,
				  sizeof(path), err, sizeof(err)) &&
	      cid == 42 && !strcmp(path, "/tmp/a,b.sock"),
	      "cid=,uds= (the path may hold commas)");
	CHECK(vsock_parse_option("2,/tmp/v", &cid, path, sizeof(path), err,
				 sizeof(err)) && strstr(err, "from 3"),
	      "CID 2 (the host) is refused");
	CHECK(vsock_parse_option("4294967295,/tmp/v", &cid, path, sizeof(path),
				 err, sizeof(err)), "CID -1 (any) is refused");
	CHECK(vsock_parse_option("x,/tmp/v", &cid, path, sizeof(path), err,
				 sizeof(err)), "a CID that is no number is refused");
	CHECK(vsock_parse_option("3", &cid, path, sizeof(path), err, sizeof(err)) &&
	      strstr(err, "CID,PATH"), "no comma: the usage");
	CHECK(vsock_parse_option("3,", &cid, path, sizeof(path), err,
				 sizeof(err)) && strstr(err, "no socket path"),
	      "an empty path is refused");
	CHECK(vsock_parse_option("cid=3,foo=1", &cid, path, sizeof(path), err,
				 sizeof(err)) && strstr(err, "unknown part 'foo=1'"),
	      "an unknown key is named");
}

int main(void)
{
	test_codec();
	test_packets();
	test_option();
	return tap_done();
}
