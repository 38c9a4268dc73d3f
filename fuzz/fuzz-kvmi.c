// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer harness for the KVMI codec: whatever bytes a tool (or a VMM)
 * sends, the parsers neither read outside the message nor accept what
 * they must refuse. The first byte picks the parser (and, for event
 * replies, the pending event); the rest is the message.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lkvm/kvmi-proto.h"

static void server_side(const uint8_t *msg, size_t len)
{
	static struct kvmi_proto p;
	struct kvmi_pending pend = {
		.active = true, .vcpu = 1, .event = KVMI_VCPU_EVENT_MSR,
		.seq = 5,
	};
	struct kvmi_req r;
	uint8_t out[64];

	if (!p.nvcpus)
		kvmi_proto_init(&p, 4);
	if (kvmi_parse(&p, msg, len, &r))
		return;
	if (r.has_vcpu && r.vcpu >= 4)
		abort();
	if (r.args_len && (r.args < msg || r.args + r.args_len > msg + len))
		abort();
	if (r.args_tail_len &&
	    (r.args_tail < msg || r.args_tail + r.args_tail_len > msg + len))
		abort();
	if (r.kind == KVMI_REQ_EVENT_REPLY) {
		kvmi_event_reply_check(&pend, &r);
		return;
	}
	/* An accepted command's padding is zero and its size exact. */
	if (!r.error && r.hdr.id == KVMI_VM_READ_PHYSICAL &&
	    (!r.a.read_physical.size || r.a.read_physical.size > 4096))
		abort();
	kvmi_reply_build(out, sizeof(out), &r, r.error, NULL, 0);
	kvmi_proto_check_command(&p, r.hdr.id);
}

static void tool_side(const uint8_t *msg, size_t len)
{
	struct kvmi_event ev;
	struct kvmi_reply rep;
	uint8_t out[64];

	if (kvmi_msg_is_event(msg, len)) {
		if (!kvmi_event_parse(msg, len, &ev) && ev.is_vcpu)
			kvmi_event_reply_build(out, sizeof(out), &ev,
					       KVMI_EVENT_ACTION_CONTINUE,
					       NULL, 0);
		return;
	}
	if (!kvmi_reply_parse(msg, len, KVMI_VM_READ_PHYSICAL, 1, &rep) &&
	    rep.len && rep.data + rep.len > msg + len)
		abort();
}

/*
 * An event reply against an event pending on a vCPU: the pending event
 * (any vCPU event lkvm knows) and its seq come from the input. A reply
 * the checker accepts answers exactly that event, with an action the
 * event takes and exactly its reply data.
 */
static void event_reply(uint8_t pick, const uint8_t *msg, size_t len)
{
	static struct kvmi_proto p;
	static uint16_t ids[64];
	static unsigned int nids;
	struct kvmi_pending pend = { .active = true, .vcpu = pick & 3 };
	struct kvmi_req r;

	if (!p.nvcpus) {
		kvmi_proto_init(&p, 4);
		for (unsigned int id = 1; id < 256; id += 2)
			if (kvmi_event_name((uint16_t)id) && nids < 64)
				ids[nids++] = (uint16_t)id;
	}
	pend.event = ids[(pick >> 2) % nids];
	if (len >= 8)
		memcpy(&pend.seq, msg + 4, 4);	/* the reply's own, often */
	if (pick & 0x80)
		pend.seq ^= 1;			/* and sometimes not */
	if (kvmi_parse(&p, msg, len, &r) || r.kind != KVMI_REQ_EVENT_REPLY)
		return;
	if (kvmi_event_reply_check(&pend, &r))
		return;
	if (r.vcpu != pend.vcpu || r.hdr.seq != pend.seq ||
	    r.event != (uint8_t)pend.event ||
	    !(kvmi_event_actions(pend.event) & (1u << r.action)) ||
	    (ssize_t)r.args_len != kvmi_event_reply_size(pend.event) ||
	    (r.args_len && (r.args < msg || r.args + r.args_len > msg + len)))
		abort();
}

static void handshake(const uint8_t *msg, size_t len, bool vmm)
{
	static const char key[] = "fuzzing cookie, 16+ bytes";
	uint8_t nonce[KVMI_LKVM_NONCE_SIZE] = { 1 };
	uint8_t buf[KVMI_HS_MSG_MAX];
	struct kvmi_guest g;
	struct kvmi_hs hs;

	kvmi_hs_init(&hs, key, sizeof(key) - 1);
	if (vmm) {
		kvmi_hs_hello(&hs, nonce, buf, sizeof(buf));
		/* Forging the MAC by chance is not expected. */
		if (!kvmi_hs_check_auth(&hs, msg, len))
			abort();
	} else if (!kvmi_hs_check_hello(&hs, msg, len)) {
		kvmi_hs_auth(&hs, nonce, buf, sizeof(buf));
		kvmi_hs_check_welcome(&hs, msg, len, &g);
	}
	kvmi_hs_wipe(&hs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *msg;

	if (size < 2)
		return 0;
	/* A copy of the exact size, so ASan sees any overread. */
	msg = malloc(size - 1 ? size - 1 : 1);
	if (!msg)
		return 0;
	memcpy(msg, data + 1, size - 1);
	switch (data[0] & 7) {
	case 0:
	case 4:
		server_side(msg, size - 1);
		break;
	case 1:
	case 5:
		tool_side(msg, size - 1);
		break;
	case 6:
	case 7:
		event_reply(data[0], msg, size - 1);
		break;
	default:
		handshake(msg, size - 1, data[0] & 1);
		break;
	}
	free(msg);
	return 0;
}
