// SPDX-License-Identifier: GPL-2.0
/*
 * The KVMI codec: every command parsed as the specification has it, and
 * every malformed message refused the right way (an error reply, or the
 * connection closed); events and their replies; the handshake with good
 * and wrong cookies, replayed and tampered answers.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "lkvm/kvmi-proto.h"
#include "tap.h"

#define NVCPUS 2

static struct kvmi_proto P;
static union {
	uint64_t align;
	uint8_t b[16384];
} M;

/* A message with any header and body, aligned or not. */
static size_t raw(uint8_t *out, uint16_t id, uint16_t size, uint32_t seq,
		  const void *body, size_t body_len)
{
	struct kvmi_msg_hdr h = { .id = id, .size = size, .seq = seq };

	memcpy(out, &h, sizeof(h));
	if (body_len)
		memmove(out + sizeof(h), body, body_len);
	return sizeof(h) + body_len;
}

/* A well-formed command for vcpu (-1: a VM command). */
static size_t cmd(uint16_t id, int vcpu, const void *args, size_t len)
{
	ssize_t n = kvmi_cmd_build(M.b, sizeof(M.b), id, 7, vcpu, args, len);

	return n < 0 ? 0 : n;
}

/* Parses and returns the error the command would be answered with;
 * 1000000 + errno when the connection must close. */
static int answer(size_t len, struct kvmi_req *r)
{
	struct kvmi_req tmp;
	int err = kvmi_parse(&P, M.b, len, r ? r : &tmp);

	return err ? 1000000 - err : (r ? r : &tmp)->error;
}

static int ans(uint16_t id, int vcpu, const void *args, size_t len)
{
	return answer(cmd(id, vcpu, args, len), NULL);
}

#define CLOSES(e) (1000000 + (e))

static void test_ids(void)
{
	CHECK(KVMI_GET_VERSION == 2 && KVMI_VM_CHECK_COMMAND == 4 &&
	      KVMI_VM_SET_PAGE_ACCESS == 20 && KVMI_VCPU_EVENT == 1 &&
	      KVMI_VCPU_GET_INFO == 3 && KVMI_VCPU_TRANSLATE_GVA == 29,
	      "command ids as kvmi.h numbers them");
	CHECK(KVMI_VM_EVENT_UNHOOK == 0 && KVMI_VCPU_EVENT_PAUSE == 1 &&
	      KVMI_VCPU_EVENT_BREAKPOINT == 5 && KVMI_VCPU_EVENT_MSR == 15 &&
	      KVMI_VCPU_EVENT_PF == 17 && KVMI_VCPU_EVENT_SINGLESTEP == 19,
	      "event ids as kvmi.h numbers them");
	CHECK(KVM_ENOSYS == 1000 && KVM_EINVAL == 22 && KVM_EPERM == 1 &&
	      KVM_ENOENT == 2 && KVM_EAGAIN == 11 && KVM_EBUSY == 16,
	      "error codes as KVM's uapi gives them");
	CHECK(kvmi_cmd_name(KVMI_LKVM_VM_MAP_MEMORY) &&
	      !strcmp(kvmi_cmd_name(KVMI_VM_READ_PHYSICAL),
		      "KVMI_VM_READ_PHYSICAL") &&
	      !kvmi_cmd_name(0x1234) &&
	      !strcmp(kvmi_event_name(KVMI_LKVM_VCPU_EVENT_AGENT),
		      "KVMI_LKVM_VCPU_EVENT_AGENT"),
	      "names of commands and events, none for unknown ids");
	CHECK(!strcmp(kvmi_strerror(-KVM_ENOSYS),
		      "KVM_ENOSYS (unsupported command)") &&
	      strstr(kvmi_strerror(-KVM_EPERM), "KVM_EPERM"),
	      "error names");
}

static void test_framing(void)
{
	struct kvmi_msg_hdr h = { .size = KVMI_MAX_MSG_SIZE };
	uint8_t body[8] = { 0 };
	size_t n;

	CHECK(!kvmi_check_hdr(&h), "a header of the largest size is read");
	h.size++;
	CHECK(kvmi_check_hdr(&h) == -EMSGSIZE, "one byte more is refused");

	n = cmd(KVMI_GET_VERSION, -1, NULL, 0);
	CHECK(answer(n, NULL) == 0, "KVMI_GET_VERSION is accepted");
	CHECK(answer(4, NULL) == CLOSES(EPROTO),
	      "a truncated header closes the connection");
	CHECK(answer(0, NULL) == CLOSES(EPROTO), "so does an empty message");
	n = raw(M.b, KVMI_VM_CHECK_COMMAND, 8, 1, body, 7);
	CHECK(answer(n, NULL) == CLOSES(EPROTO),
	      "a body shorter than its size closes the connection");
	n = raw(M.b, KVMI_VM_CHECK_COMMAND, 8, 1, body, 8);
	CHECK(answer(n + 1, NULL) == CLOSES(EPROTO),
	      "bytes after the announced size close the connection");
	n = raw(M.b, KVMI_VM_READ_PHYSICAL, KVMI_MAX_MSG_SIZE + 1, 1, NULL,
		0);
	CHECK(answer(n + KVMI_MAX_MSG_SIZE + 1, NULL) == CLOSES(EMSGSIZE),
	      "a size over KVMI_MAX_MSG_SIZE closes the connection");

	/* Unaligned messages parse the same. */
	n = cmd(KVMI_VCPU_GET_CPUID, 1, (uint32_t[2]){ 1, 0 }, 8);
	memmove(M.b + 1, M.b, n);
	{
		struct kvmi_req r;

		CHECK(!kvmi_parse(&P, M.b + 1, n, &r) && !r.error &&
		      r.vcpu == 1 && r.a.get_cpuid.function == 1,
		      "an unaligned message is parsed in place");
	}
}

static void test_unknown(void)
{
	struct kvmi_proto saved = P;
	struct kvmi_req r;
	size_t n;

	CHECK(ans(0x1234, -1, NULL, 0) == -KVM_ENOSYS,
	      "an unknown VM command is answered -KVM_ENOSYS");
	CHECK(ans(0x1235, 0, NULL, 0) == -KVM_ENOSYS,
	      "an unknown vCPU command too");
	n = raw(M.b, KVMI_VM_EVENT, 0, 3, NULL, 0);
	CHECK(answer(n, NULL) == -KVM_ENOSYS,
	      "a VM event sent by the tool is an unknown command");
	n = raw(M.b, KVMI_LKVM_HS_AUTH, 0, 3, NULL, 0);
	CHECK(answer(n, NULL) == -KVM_ENOSYS,
	      "handshake messages mean nothing after the handshake");
	CHECK(ans(KVMI_VCPU_CONTROL_CR, 0,
		  &(struct kvmi_vcpu_control_cr){ .cr = 4, .enable = 1 },
		  8) == -KVM_ENOSYS,
	      "control-register interception is unsupported on mainline KVM");
	n = cmd(0x1234, -1, NULL, 0);
	CHECK(!kvmi_parse(&P, M.b, n, &r) && r.hdr.seq == 7 &&
	      r.kind == KVMI_REQ_COMMAND,
	      "the unknown command's seq is kept for the reply");

	P.cmd_allowed &= ~kvmi_cmd_bit(KVMI_VM_READ_PHYSICAL);
	CHECK(ans(KVMI_VM_READ_PHYSICAL, -1,
		  &(struct kvmi_vm_read_physical){ .size = 1 },
		  16) == -KVM_EPERM,
	      "a disallowed command is answered -KVM_EPERM");
	P.cmd_allowed = 0;
	CHECK(ans(KVMI_GET_VERSION, -1, NULL, 0) == 0 &&
	      ans(KVMI_VM_CHECK_COMMAND, -1,
		  &(struct kvmi_vm_check_command){ .id = 2 }, 8) == 0,
	      "KVMI_GET_VERSION and the checks are always allowed");
	P = saved;
}

/* A command with fixed arguments and its padding, from the spec. */
struct padded {
	uint16_t id;
	uint8_t args[16];
	uint8_t len, pad_off, pad_len;
};

static const struct padded padded[] = {
	{ KVMI_VM_CHECK_COMMAND, { 2 }, 8, 2, 6 },
	{ KVMI_VM_CHECK_EVENT, { 1 }, 8, 2, 6 },
	{ KVMI_VM_CONTROL_EVENTS, { 0, 0, 1 }, 8, 3, 5 },
	{ KVMI_VM_READ_PHYSICAL, { 0, 0x10, 0, 0, 0, 0, 0, 0, 8 }, 16, 10, 6 },
	{ KVMI_VM_PAUSE_VCPU, { 1, 0, 1 }, 8, 3, 5 },
	{ KVMI_VCPU_CONTROL_EVENTS, { KVMI_VCPU_EVENT_PF, 0, 1 }, 8, 3, 5 },
	{ KVMI_VCPU_INJECT_EXCEPTION, { 14, 0, 0, 0, 2 }, 16, 1, 3 },
	{ KVMI_VCPU_GET_XCR, { 0 }, 8, 1, 7 },
	{ KVMI_VCPU_CONTROL_MSR, { 1, 0, 0, 0, 0x74, 0x01 }, 8, 1, 3 },
	{ KVMI_VCPU_CONTROL_SINGLESTEP, { 1 }, 8, 1, 7 },
	{ KVMI_LKVM_VM_MAP_MEMORY, { 0 }, 8, 1, 7 },
	{ KVMI_LKVM_VM_SET_BREAKPOINT, { 0, 0x10, 0, 0, 0, 0, 0, 0, 1 }, 16,
	  9, 7 },
	{ KVMI_LKVM_VM_EVENT_CHANNEL, { 1 }, 8, 1, 7 },
};

static void test_padding(void)
{
	int bad = 0, good = 0;

	for (unsigned int i = 0; i < sizeof(padded) / sizeof(padded[0]); i++) {
		const struct padded *c = &padded[i];
		int vcpu = c->id & 1 ? 1 : -1;
		uint8_t a[16];

		memcpy(a, c->args, sizeof(a));
		good += ans(c->id, vcpu, a, c->len) == 0;
		for (unsigned int b = 0; b < c->pad_len; b++) {
			a[c->pad_off + b] = 0x80;
			bad += ans(c->id, vcpu, a, c->len) == -KVM_EINVAL;
			a[c->pad_off + b] = 0;
		}
		bad -= c->pad_len;
		/* The vCPU header's padding too. */
		if (vcpu >= 0) {
			size_t n = cmd(c->id, vcpu, a, c->len);

			for (unsigned int b = 2; b < 8; b++) {
				M.b[8 + b] = 1;
				bad += answer(n, NULL) == -KVM_EINVAL;
				M.b[8 + b] = 0;
			}
			bad -= 6;
		}
	}
	CHECK(good == (int)(sizeof(padded) / sizeof(padded[0])),
	      "every padded command is accepted with zero padding");
	CHECK(bad == 0, "a non-zero byte in any padding is -KVM_EINVAL");
}

static void test_sizes(void)
{
	uint8_t a[200] = { 0 };
	int bad = 0;

	for (unsigned int i = 0; i < sizeof(padded) / sizeof(padded[0]); i++) {
		const struct padded *c = &padded[i];
		int vcpu = c->id & 1 ? 1 : -1;

		memcpy(a, c->args, sizeof(c->args));
		bad += ans(c->id, vcpu, a, c->len - 1) != -KVM_EINVAL;
		bad += ans(c->id, vcpu, a, c->len + 1) != -KVM_EINVAL;
		bad += ans(c->id, vcpu, a, c->len + 8) != -KVM_EINVAL;
	}
	CHECK(!bad, "one byte less, one more, eight more: -KVM_EINVAL");
	memset(a, 0, sizeof(a));
	CHECK(ans(KVMI_GET_VERSION, -1, a, 8) == -KVM_EINVAL,
	      "a command without arguments refuses some");
	CHECK(ans(KVMI_VCPU_SET_REGISTERS, 0, a,
		  sizeof(struct kvm_regs) - 1) == -KVM_EINVAL &&
	      ans(KVMI_VCPU_SET_REGISTERS, 0, a, sizeof(struct kvm_regs)) == 0,
	      "KVMI_VCPU_SET_REGISTERS takes exactly a struct kvm_regs");
	{
		size_t n = raw(M.b, KVMI_VCPU_GET_INFO, 4, 1, a, 4);

		CHECK(answer(n, NULL) == -KVM_EINVAL,
		      "a vCPU command shorter than its vCPU header");
	}
	CHECK(ans(KVMI_VCPU_GET_INFO, NVCPUS, NULL, 0) == -KVM_EINVAL &&
	      ans(KVMI_VCPU_GET_INFO, NVCPUS - 1, NULL, 0) == 0,
	      "a vCPU index past the last vCPU is -KVM_EINVAL");
}

static void test_fields(void)
{
	struct kvmi_vm_read_physical rp = { .gpa = 0x1ff8, .size = 8 };
	struct kvmi_vcpu_control_msr cm = { .enable = 1 };
	struct kvmi_vm_control_events vce = { .event_id = 0, .enable = 2 };
	struct kvmi_vcpu_control_events ce = { .enable = 1 };
	struct kvmi_proto saved = P;

	CHECK(ans(KVMI_VM_READ_PHYSICAL, -1, &rp, 16) == 0,
	      "a read that ends at the page's end");
	rp.size = 9;
	CHECK(ans(KVMI_VM_READ_PHYSICAL, -1, &rp, 16) == -KVM_EINVAL,
	      "a read across a page boundary is -KVM_EINVAL");
	rp.size = 0;
	CHECK(ans(KVMI_VM_READ_PHYSICAL, -1, &rp, 16) == -KVM_EINVAL,
	      "an empty read is -KVM_EINVAL");
	rp.gpa = 0;
	rp.size = 4097;
	CHECK(ans(KVMI_VM_READ_PHYSICAL, -1, &rp, 16) == -KVM_EINVAL,
	      "a read over 4 KiB is -KVM_EINVAL");

	CHECK(ans(KVMI_VM_CONTROL_EVENTS, -1, &vce, 8) == -KVM_EINVAL,
	      "enable must be 0 or 1");
	vce.enable = 1;
	CHECK(ans(KVMI_VM_CONTROL_EVENTS, -1, &vce, 8) == 0,
	      "KVMI_VM_EVENT_UNHOOK is switched by KVMI_VM_CONTROL_EVENTS");
	vce.event_id = KVMI_VCPU_EVENT_PF;
	CHECK(ans(KVMI_VM_CONTROL_EVENTS, -1, &vce, 8) == -KVM_EINVAL,
	      "a vCPU event is not a VM event");

	ce.event_id = KVMI_VCPU_EVENT_MSR;
	CHECK(ans(KVMI_VCPU_CONTROL_EVENTS, 0, &ce, 8) == 0,
	      "the MSR event can be switched");
	ce.event_id = KVMI_VCPU_EVENT_PAUSE;
	CHECK(ans(KVMI_VCPU_CONTROL_EVENTS, 0, &ce, 8) == -KVM_EINVAL,
	      "the PAUSE event cannot (it follows KVMI_VM_PAUSE_VCPU)");
	ce.event_id = KVMI_VCPU_EVENT_CR;
	CHECK(ans(KVMI_VCPU_CONTROL_EVENTS, 0, &ce, 8) == -KVM_EINVAL,
	      "an unsupported event is -KVM_EINVAL");
	ce.event_id = 0x99;
	CHECK(ans(KVMI_VCPU_CONTROL_EVENTS, 0, &ce, 8) == -KVM_EINVAL,
	      "an unknown event is -KVM_EINVAL");
	ce.event_id = KVMI_VM_EVENT_UNHOOK;
	CHECK(ans(KVMI_VCPU_CONTROL_EVENTS, 0, &ce, 8) == -KVM_EINVAL,
	      "a VM event is not a vCPU event");
	P.ev_allowed &= ~kvmi_event_bit(KVMI_VCPU_EVENT_MSR);
	ce.event_id = KVMI_VCPU_EVENT_MSR;
	CHECK(ans(KVMI_VCPU_CONTROL_EVENTS, 0, &ce, 8) == -KVM_EPERM,
	      "a disallowed event is -KVM_EPERM");
	P = saved;

	cm.msr = 0x1fff;
	CHECK(ans(KVMI_VCPU_CONTROL_MSR, 0, &cm, 8) == 0, "MSR 0x1fff");
	cm.msr = 0x2000;
	CHECK(ans(KVMI_VCPU_CONTROL_MSR, 0, &cm, 8) == -KVM_EINVAL,
	      "MSR 0x2000 is outside both ranges");
	cm.msr = 0xc0000080;
	CHECK(ans(KVMI_VCPU_CONTROL_MSR, 0, &cm, 8) == 0, "MSR 0xc0000080");
	cm.msr = 0xc0002000;
	CHECK(ans(KVMI_VCPU_CONTROL_MSR, 0, &cm, 8) == -KVM_EINVAL,
	      "MSR 0xc0002000 is outside both ranges");
	cm.msr = 0x174;
	cm.enable = 2;
	CHECK(ans(KVMI_VCPU_CONTROL_MSR, 0, &cm, 8) == -KVM_EINVAL,
	      "an MSR's enable must be 0 or 1");

	CHECK(ans(KVMI_VCPU_INJECT_EXCEPTION, 0,
		  &(struct kvmi_vcpu_inject_exception){ .nr = 32 },
		  16) == -KVM_EINVAL,
	      "an exception vector over 31 is -KVM_EINVAL");
	P.ev_allowed &= ~kvmi_event_bit(KVMI_VCPU_EVENT_TRAP);
	CHECK(ans(KVMI_VCPU_INJECT_EXCEPTION, 0,
		  &(struct kvmi_vcpu_inject_exception){ .nr = 3 },
		  16) == -KVM_EPERM,
	      "injecting needs the TRAP event allowed");
	P = saved;
	CHECK(ans(KVMI_VCPU_GET_XCR, 0, &(struct kvmi_vcpu_get_xcr){ .xcr = 1 },
		  8) == -KVM_EINVAL,
	      "only XCR0 can be read");
	CHECK(ans(KVMI_VM_PAUSE_VCPU, -1,
		  &(struct kvmi_vm_pause_vcpu){ .vcpu = NVCPUS }, 8) ==
		      -KVM_EINVAL,
	      "pausing a vCPU that does not exist is -KVM_EINVAL");
	P.ev_allowed &= ~kvmi_event_bit(KVMI_VCPU_EVENT_PAUSE);
	CHECK(ans(KVMI_VM_PAUSE_VCPU, -1,
		  &(struct kvmi_vm_pause_vcpu){ .vcpu = 0 }, 8) == -KVM_EPERM,
	      "pausing needs the PAUSE event allowed");
	P.ev_allowed &= ~kvmi_event_bit(KVMI_VCPU_EVENT_SINGLESTEP);
	CHECK(ans(KVMI_VCPU_CONTROL_SINGLESTEP, 0,
		  &(struct kvmi_vcpu_control_singlestep){ .enable = 1 }, 8) ==
		      -KVM_EPERM,
	      "single-stepping needs the SINGLESTEP event allowed");
	P = saved;
	CHECK(ans(KVMI_LKVM_VM_MAP_MEMORY, -1,
		  &(struct kvmi_lkvm_vm_map_memory){ .writable = 2 }, 8) ==
		      -KVM_EINVAL,
	      "writable must be 0 or 1");
}

static void test_variable(void)
{
	uint8_t a[600] = { 0 };
	struct kvmi_vm_write_physical *w = (void *)a;
	struct kvmi_vm_set_page_access *s = (void *)a;
	struct kvmi_page_access_entry *e = (void *)(a + 8);
	struct kvmi_vcpu_get_registers *g = (void *)a;
	struct kvmi_req r;

	w->gpa = 0x2000;
	w->size = 5;
	memcpy(w->data, "hello", 5);
	CHECK(answer(cmd(KVMI_VM_WRITE_PHYSICAL, -1, a, 21), &r) == 0 &&
	      r.args_tail_len == 5 && !memcmp(r.args_tail, "hello", 5) &&
	      r.a.write_physical.gpa == 0x2000,
	      "a write's data follows its header");
	CHECK(ans(KVMI_VM_WRITE_PHYSICAL, -1, a, 20) == -KVM_EINVAL &&
	      ans(KVMI_VM_WRITE_PHYSICAL, -1, a, 22) == -KVM_EINVAL,
	      "a write whose data differs from its size is -KVM_EINVAL");
	CHECK(ans(KVMI_VM_WRITE_PHYSICAL, -1, a, 12) == -KVM_EINVAL,
	      "a write shorter than its header is -KVM_EINVAL");
	a[12] = 1;
	CHECK(ans(KVMI_VM_WRITE_PHYSICAL, -1, a, 21) == -KVM_EINVAL,
	      "a write with padding set is -KVM_EINVAL");
	memset(a, 0, sizeof(a));

	s->count = 2;
	e[0].gpa = 0x1000;
	e[0].access = KVMI_PAGE_ACCESS_R | KVMI_PAGE_ACCESS_X;
	e[1].gpa = 0x2000;
	e[1].access = 7;
	CHECK(answer(cmd(KVMI_VM_SET_PAGE_ACCESS, -1, a, 40), &r) == 0 &&
	      r.args_tail_len == 32,
	      "write-protecting and releasing pages");
	CHECK(ans(KVMI_VM_SET_PAGE_ACCESS, -1, a, 24) == -KVM_EINVAL,
	      "fewer entries than count is -KVM_EINVAL");
	e[1].padding[6] = 1;
	CHECK(ans(KVMI_VM_SET_PAGE_ACCESS, -1, a, 40) == -KVM_EINVAL,
	      "an entry's padding set is -KVM_EINVAL");
	e[1].padding[6] = 0;
	e[1].access = KVMI_PAGE_ACCESS_R | KVMI_PAGE_ACCESS_W;
	CHECK(ans(KVMI_VM_SET_PAGE_ACCESS, -1, a, 40) == -KVM_EINVAL,
	      "execute protection is unsupported on mainline KVM: -KVM_EINVAL");
	e[1].access = 8;
	CHECK(ans(KVMI_VM_SET_PAGE_ACCESS, -1, a, 40) == -KVM_EINVAL,
	      "an unknown access bit is -KVM_EINVAL");
	s->count = 0;
	CHECK(ans(KVMI_VM_SET_PAGE_ACCESS, -1, a, 8) == -KVM_EINVAL,
	      "no entries at all is -KVM_EINVAL");
	memset(a, 0, sizeof(a));

	g->nmsrs = 2;
	CHECK(answer(cmd(KVMI_VCPU_GET_REGISTERS, 1, a, 16), &r) == 0 &&
	      r.args_tail_len == 8 && r.a.get_registers.nmsrs == 2,
	      "KVMI_VCPU_GET_REGISTERS with two MSRs");
	CHECK(ans(KVMI_VCPU_GET_REGISTERS, 1, a, 12) == -KVM_EINVAL,
	      "fewer MSR indexes than nmsrs is -KVM_EINVAL");
	g->nmsrs = 500;
	CHECK(ans(KVMI_VCPU_GET_REGISTERS, 1, a, 8) == -KVM_EINVAL,
	      "nmsrs without its indexes is -KVM_EINVAL");
	{
		static uint8_t big[8 + 500 * 4];

		memcpy(big, a, 8);
		CHECK(ans(KVMI_VCPU_GET_REGISTERS, 1, big, sizeof(big)) ==
			      -KVM_EINVAL,
		      "more MSRs than a reply can hold is -KVM_EINVAL");
	}
	{
		static uint8_t x[sizeof(struct kvm_xsave)];

		CHECK(ans(KVMI_VCPU_SET_XSAVE, 0, x, sizeof(x)) == -KVM_ENOSYS,
		      "KVMI_VCPU_SET_XSAVE is off by default");
		P.cmd_supported |= kvmi_cmd_bit(KVMI_VCPU_SET_XSAVE);
		P.cmd_allowed |= kvmi_cmd_bit(KVMI_VCPU_SET_XSAVE);
		CHECK(ans(KVMI_VCPU_SET_XSAVE, 0, x, sizeof(x)) == 0 &&
		      ans(KVMI_VCPU_SET_XSAVE, 0, x, 100) == -KVM_EINVAL,
		      "KVMI_VCPU_SET_XSAVE takes a whole struct kvm_xsave");
		kvmi_proto_init(&P, NVCPUS);
	}
}

static void test_checks(void)
{
	struct kvmi_proto saved = P;

	CHECK(kvmi_proto_check_command(&P, KVMI_VM_READ_PHYSICAL) == 0 &&
	      kvmi_proto_check_command(&P, KVMI_VCPU_CONTROL_CR) ==
		      -KVM_ENOENT &&
	      kvmi_proto_check_command(&P, 0x4242) == -KVM_ENOENT,
	      "check command: supported, unsupported, unknown");
	CHECK(kvmi_proto_check_event(&P, KVMI_VCPU_EVENT_PF) == 0 &&
	      kvmi_proto_check_event(&P, KVMI_VCPU_EVENT_XSETBV) ==
		      -KVM_ENOENT &&
	      kvmi_proto_check_event(&P, 0x4243) == -KVM_ENOENT,
	      "check event: supported, unsupported, unknown");
	P.cmd_allowed &= ~kvmi_cmd_bit(KVMI_VM_WRITE_PHYSICAL);
	P.ev_allowed &= ~kvmi_event_bit(KVMI_VCPU_EVENT_PF);
	CHECK(kvmi_proto_check_command(&P, KVMI_VM_WRITE_PHYSICAL) ==
		      -KVM_EPERM &&
	      kvmi_proto_check_event(&P, KVMI_VCPU_EVENT_PF) == -KVM_EPERM,
	      "check command and event: disallowed is -KVM_EPERM");
	P = saved;
}

static void test_replies(void)
{
	struct kvmi_get_version_reply v = { 1, KVMI_MAX_MSG_SIZE };
	struct kvmi_reply_prefix pre;
	struct kvmi_reply rp;
	struct kvmi_req r;
	uint8_t out[64], data[8] = { 0 };
	ssize_t n;

	answer(cmd(KVMI_GET_VERSION, -1, NULL, 0), &r);
	n = kvmi_reply_build(out, sizeof(out), &r, 0, &v, sizeof(v));
	CHECK(n == 24 && !kvmi_reply_parse(out, n, KVMI_GET_VERSION, 7, &rp) &&
	      rp.err == 0 && rp.len == 8,
	      "a reply echoes id and seq, error code then data");
	CHECK(kvmi_reply_build(out, sizeof(out), &r, 0, &v, 4) == -EINVAL,
	      "a reply of the wrong size for its command is refused");
	CHECK(kvmi_reply_build(out, sizeof(out), &r, -KVM_EINVAL, &v, 8) ==
		      -EINVAL,
	      "an error reply carries no data");
	CHECK(kvmi_reply_build(out, sizeof(out), &r, 5, NULL, 0) == -EINVAL,
	      "a positive error code is refused");
	n = kvmi_reply_build(out, sizeof(out), &r, -KVM_ENOSYS, NULL, 0);
	CHECK(n == 16 && !kvmi_reply_parse(out, n, KVMI_GET_VERSION, 7, &rp) &&
	      rp.err == -KVM_ENOSYS && !rp.len,
	      "an error reply is its error code alone");
	CHECK(kvmi_reply_build(out, 10, &r, 0, &v, 8) == -ENOSPC,
	      "a reply never overruns its buffer");

	answer(cmd(KVMI_VM_READ_PHYSICAL, -1,
		   &(struct kvmi_vm_read_physical){ .gpa = 8, .size = 8 }, 16),
	       &r);
	CHECK(!kvmi_reply_prefix(&pre, &r, 0, 8) &&
	      kvmi_reply_prefix(&pre, &r, 0, 7) == -EINVAL &&
	      pre.hdr.size == 16,
	      "a read's reply has exactly the bytes asked for");

	/* The tool side of replies. */
	n = kvmi_reply_build(out, sizeof(out), &r, 0, data, 8);
	CHECK(kvmi_reply_parse(out, n, KVMI_VM_READ_PHYSICAL, 8, &rp) ==
		      -EPROTO,
	      "the tool refuses a reply with another seq");
	CHECK(kvmi_reply_parse(out, n, KVMI_GET_VERSION, 7, &rp) == -EPROTO,
	      "the tool refuses a reply with another id");
	CHECK(kvmi_reply_parse(out, n - 1, KVMI_VM_READ_PHYSICAL, 7, &rp) ==
		      -EPROTO,
	      "the tool refuses a truncated reply");
	out[12] = 1;
	CHECK(kvmi_reply_parse(out, n, KVMI_VM_READ_PHYSICAL, 7, &rp) ==
		      -EPROTO,
	      "the tool refuses an error code with padding set");
	out[12] = 0;
	memcpy(out + 8, &(int32_t){ -22 }, 4);
	CHECK(kvmi_reply_parse(out, n, KVMI_VM_READ_PHYSICAL, 7, &rp) ==
		      -EPROTO,
	      "the tool refuses data after an error");
	CHECK(kvmi_cmd_build(out, sizeof(out), KVMI_VM_GET_INFO, 1, 0, NULL,
			     0) == -EINVAL &&
	      kvmi_cmd_build(out, sizeof(out), KVMI_VCPU_GET_INFO, 1, -1, NULL,
			     0) == -EINVAL,
	      "commands carry a vCPU header exactly when their id is odd");
}

static struct kvmi_vcpu_event_arch arch(void)
{
	struct kvmi_vcpu_event_arch a;

	memset(&a, 0, sizeof(a));
	a.mode = 8;
	a.regs.rip = 0xfff0;
	a.regs.rax = 0x1234;
	a.sregs.cr3 = 0x9000;
	a.msrs.efer = 0x500;
	return a;
}

static void test_events(void)
{
	struct kvmi_vcpu_event_arch ar = arch();
	struct kvmi_vcpu_event_pf pf = { .gva = 0x7000, .gpa = 0x3000,
					 .access = KVMI_PAGE_ACCESS_W };
	struct kvmi_vcpu_event_msr msr = { .msr = 0x174, .old_value = 1,
					   .new_value = 2 };
	struct kvmi_pending pend = { 0 }, saved;
	struct kvmi_event ev;
	struct kvmi_req r;
	uint8_t buf[1024], rep[64];
	uint64_t new_val = 5;
	uint32_t seq;
	ssize_t n, m;

	seq = kvmi_next_seq(&P);
	CHECK(kvmi_next_seq(&P) == seq + 1, "event seqs count up");
	n = kvmi_vcpu_event_build(buf, sizeof(buf), seq, 1, KVMI_VCPU_EVENT_PF,
				  &ar, &pf, sizeof(pf), &pend);
	CHECK(n == 8 + 8 + 544 + 24 && pend.active && pend.seq == seq &&
	      pend.vcpu == 1,
	      "a PF event: headers, vCPU state, its data");
	CHECK(!kvmi_event_parse(buf, n, &ev) && ev.is_vcpu && ev.vcpu == 1 &&
	      ev.event == KVMI_VCPU_EVENT_PF && ev.arch.regs.rip == 0xfff0 &&
	      ev.arch.sregs.cr3 == 0x9000 && ev.data.pf.gpa == 0x3000 &&
	      ev.data.pf.access == KVMI_PAGE_ACCESS_W && ev.hdr.seq == seq,
	      "the tool reads it back whole");
	CHECK(kvmi_vcpu_event_build(buf, sizeof(buf), seq, 1,
				    KVMI_VCPU_EVENT_PF, &ar, &pf, 16,
				    NULL) == -EINVAL,
	      "an event with the wrong data size is refused");
	CHECK(kvmi_vcpu_event_build(buf, 100, seq, 1, KVMI_VCPU_EVENT_PF, &ar,
				    &pf, sizeof(pf), NULL) == -ENOSPC,
	      "an event never overruns its buffer");

	/* RETRY: the page stays protected and the guest retries. */
	m = kvmi_event_reply_build(rep, sizeof(rep), &ev,
				   KVMI_EVENT_ACTION_RETRY, NULL, 0);
	CHECK(m == 24 && !kvmi_parse(&P, rep, m, &r) &&
	      r.kind == KVMI_REQ_EVENT_REPLY && r.vcpu == 1 &&
	      r.action == KVMI_EVENT_ACTION_RETRY &&
	      !kvmi_event_reply_check(&pend, &r),
	      "the reply matches its event: vCPU, seq, event, action");
	saved = pend;
	pend.seq++;
	CHECK(kvmi_event_reply_check(&pend, &r) == -EPROTO,
	      "a reply with a wrong sequence number closes the connection");
	pend = saved;
	pend.vcpu = 0;
	CHECK(kvmi_event_reply_check(&pend, &r) == -EPROTO,
	      "a reply for another vCPU's event closes it");
	pend = saved;
	pend.event = KVMI_VCPU_EVENT_BREAKPOINT;
	CHECK(kvmi_event_reply_check(&pend, &r) == -EPROTO,
	      "a reply naming another event closes it");
	pend = saved;
	pend.active = false;
	CHECK(kvmi_event_reply_check(&pend, &r) == -EPROTO,
	      "a reply to no pending event (a duplicate) closes it");
	pend = saved;
	rep[16] = 9;
	CHECK(!kvmi_parse(&P, rep, m, &r) &&
	      kvmi_event_reply_check(&pend, &r) == -EPROTO,
	      "an unknown action closes it");
	rep[16] = KVMI_EVENT_ACTION_RETRY;
	rep[20] = 1;
	CHECK(kvmi_parse(&P, rep, m, &r) == -EPROTO,
	      "a reply with padding set closes it");
	rep[20] = 0;
	rep[10] = 1;
	CHECK(kvmi_parse(&P, rep, m, &r) == -EPROTO,
	      "a reply with vCPU-header padding set closes it");
	rep[10] = 0;
	CHECK(kvmi_parse(&P, rep, 20, &r) == -EPROTO,
	      "a truncated reply closes it");
	n = raw(buf, KVMI_VCPU_EVENT, 8, seq, rep + 8, 8);
	CHECK(kvmi_parse(&P, buf, n, &r) == -EPROTO,
	      "a reply without kvmi_vcpu_event_reply closes it");

	/* MSR: CONTINUE with the value to write; RETRY is not accepted. */
	n = kvmi_vcpu_event_build(buf, sizeof(buf), kvmi_next_seq(&P), 0,
				  KVMI_VCPU_EVENT_MSR, &ar, &msr, sizeof(msr),
				  &pend);
	CHECK(!kvmi_event_parse(buf, n, &ev) && ev.data.msr.msr == 0x174,
	      "an MSR event");
	m = kvmi_event_reply_build(rep, sizeof(rep), &ev,
				   KVMI_EVENT_ACTION_CONTINUE, &new_val, 8);
	CHECK(m == 32 && !kvmi_parse(&P, rep, m, &r) &&
	      !kvmi_event_reply_check(&pend, &r) && r.a.msr_reply.new_val == 5,
	      "its reply carries the value the guest writes");
	CHECK(kvmi_event_reply_build(rep, sizeof(rep), &ev,
				     KVMI_EVENT_ACTION_RETRY, &new_val,
				     8) == -EINVAL &&
	      kvmi_event_reply_build(rep, sizeof(rep), &ev,
				     KVMI_EVENT_ACTION_CONTINUE, NULL,
				     0) == -EINVAL,
	      "the tool cannot build a reply the event does not accept");
	m = raw(rep, KVMI_VCPU_EVENT, 16, ev.hdr.seq, rep + 8, 16);
	CHECK(!kvmi_parse(&P, rep, m, &r) &&
	      kvmi_event_reply_check(&pend, &r) == -EPROTO,
	      "an MSR reply without its value closes the connection");
	rep[16] = KVMI_EVENT_ACTION_RETRY;
	m = kvmi_vcpu_event_build(buf, sizeof(buf), pend.seq, 0,
				  KVMI_VCPU_EVENT_MSR, &ar, &msr, sizeof(msr),
				  &pend);
	{
		uint8_t bad[32];

		memcpy(bad, rep, 24);
		memcpy(bad + 24, &new_val, 8);
		raw(bad, KVMI_VCPU_EVENT, 24, pend.seq, bad + 8, 24);
		CHECK(!kvmi_parse(&P, bad, 32, &r) &&
		      kvmi_event_reply_check(&pend, &r) == -EPROTO,
		      "RETRY for an MSR write closes the connection");
	}

	/* The tool refuses malformed events. */
	n = kvmi_vcpu_event_build(buf, sizeof(buf), 9, 1, KVMI_VCPU_EVENT_PF,
				  &ar, &pf, sizeof(pf), NULL);
	CHECK(kvmi_event_parse(buf, n - 1, &ev) == -EPROTO,
	      "a truncated event");
	buf[8 + 8 + 8 + 3] = 1;	/* arch.padding */
	CHECK(kvmi_event_parse(buf, n, &ev) == -EPROTO,
	      "an event with the vCPU state's padding set");
	buf[8 + 8 + 8 + 3] = 0;
	buf[n - 2] = 1;		/* kvmi_vcpu_event_pf.padding3 */
	CHECK(kvmi_event_parse(buf, n, &ev) == -EPROTO,
	      "an event with its data's padding set");
	buf[n - 2] = 0;
	buf[8 + 8] = 100;	/* kvmi_vcpu_event.size */
	CHECK(kvmi_event_parse(buf, n, &ev) == -EPROTO,
	      "an event whose vCPU part has another size");
	buf[8 + 8] = 544 & 0xff;
	buf[8] = 0x99;		/* kvmi_event_hdr.event */
	CHECK(kvmi_event_parse(buf, n, &ev) == -EPROTO, "an unknown event");
	n = kvmi_vm_event_build(buf, sizeof(buf), 11, KVMI_VM_EVENT_UNHOOK);
	CHECK(n == 16 && !kvmi_event_parse(buf, n, &ev) && !ev.is_vcpu &&
	      ev.event == KVMI_VM_EVENT_UNHOOK,
	      "the UNHOOK event, which takes no reply");
	CHECK(kvmi_event_reply_build(rep, sizeof(rep), &ev,
				     KVMI_EVENT_ACTION_CONTINUE, NULL,
				     0) == -EINVAL,
	      "a VM event cannot be replied to");
	CHECK(kvmi_vm_event_build(buf, sizeof(buf), 1, KVMI_VCPU_EVENT_PF) ==
		      -EINVAL,
	      "a vCPU event is not sent as a VM event");
	buf[0] = KVMI_VCPU_EVENT;
	CHECK(kvmi_event_parse(buf, n, &ev) == -EPROTO,
	      "a VM event under the vCPU event id is refused");
	CHECK(kvmi_msg_is_event(buf, n) && !kvmi_msg_is_event(buf, 4),
	      "events are told from replies by id");
}

/* Both ends of a handshake, without a socket. */
struct hs_run {
	struct kvmi_hs vmm, tool;
	uint8_t hello[KVMI_HS_MSG_MAX], auth[KVMI_HS_MSG_MAX];
	uint8_t welcome[KVMI_HS_MSG_MAX];
	ssize_t hello_len, auth_len, welcome_len;
	struct kvmi_guest info;
};

static const char cookie[] = "0123456789abcdef-shared-secret";
static const char other[] = "0123456789abcdef-wrong--secret";

static int hs(struct hs_run *h, const char *vmm_key, const char *tool_key,
	      uint8_t vmm_nonce, uint8_t tool_nonce)
{
	struct kvmi_guest g = {
		.uuid = { 1, 2, 3, 4 },
		.features = KVMI_LKVM_F_MAP_MEMORY,
		.version = KVMI_VERSION,
		.max_msg_size = KVMI_MAX_MSG_SIZE,
		.vcpu_count = 2,
	};
	uint8_t nv[32], nt[32];
	int err;

	memset(nv, vmm_nonce, sizeof(nv));
	memset(nt, tool_nonce, sizeof(nt));
	memset(&h->info, 0, sizeof(h->info));
	kvmi_hs_init(&h->vmm, vmm_key, strlen(vmm_key));
	kvmi_hs_init(&h->tool, tool_key, strlen(tool_key));
	h->hello_len = kvmi_hs_hello(&h->vmm, nv, h->hello, sizeof(h->hello));
	err = kvmi_hs_check_hello(&h->tool, h->hello, h->hello_len);
	if (err)
		return err;
	h->auth_len = kvmi_hs_auth(&h->tool, nt, h->auth, sizeof(h->auth));
	err = kvmi_hs_check_auth(&h->vmm, h->auth, h->auth_len);
	if (err)
		return err;
	h->welcome_len = kvmi_hs_welcome(&h->vmm, &g, h->welcome,
					 sizeof(h->welcome));
	return kvmi_hs_check_welcome(&h->tool, h->welcome, h->welcome_len,
				     &h->info);
}

static void test_handshake(void)
{
	static struct hs_run a, b;
	struct kvmi_hs tool;
	uint8_t buf[KVMI_HS_MSG_MAX], nt[32] = { 7 };
	ssize_t n;

	CHECK(hs(&a, cookie, cookie, 1, 2) == 0 && a.info.uuid[3] == 4 &&
	      a.info.features == KVMI_LKVM_F_MAP_MEMORY &&
	      a.info.vcpu_count == 2 && a.info.version == KVMI_VERSION,
	      "the handshake with the shared cookie tells the guest's UUID");
	CHECK(hs(&b, cookie, other, 1, 2) == -EACCES,
	      "a tool with a wrong cookie is refused");
	CHECK(hs(&b, cookie, cookie, 3, 3) == -EACCES,
	      "a tool that echoes the VMM's nonce is refused");

	/* Replays: a recorded answer fails a fresh challenge. */
	hs(&b, cookie, cookie, 9, 2);
	kvmi_hs_init(&b.vmm, cookie, strlen(cookie));
	memset(nt, 9, sizeof(nt));
	kvmi_hs_hello(&b.vmm, nt, buf, sizeof(buf));
	CHECK(kvmi_hs_check_auth(&b.vmm, a.auth, a.auth_len) == -EACCES,
	      "a replayed tool answer is refused by a new VMM challenge");
	kvmi_hs_init(&tool, cookie, strlen(cookie));
	kvmi_hs_check_hello(&tool, a.hello, a.hello_len);
	memset(nt, 5, sizeof(nt));
	kvmi_hs_auth(&tool, nt, buf, sizeof(buf));
	CHECK(kvmi_hs_check_welcome(&tool, a.welcome, a.welcome_len,
				    &b.info) == -EACCES,
	      "a replayed VMM welcome is refused by a new tool nonce");

	/* A VMM that does not know the cookie, or alters what it says. */
	hs(&b, other, cookie, 1, 2);
	kvmi_hs_init(&tool, cookie, strlen(cookie));
	kvmi_hs_check_hello(&tool, a.hello, a.hello_len);
	memset(nt, 2, sizeof(nt));
	kvmi_hs_auth(&tool, nt, buf, sizeof(buf));
	a.welcome[8 + 32] ^= 1;		/* the UUID's first byte */
	CHECK(kvmi_hs_check_welcome(&tool, a.welcome, a.welcome_len,
				    &b.info) == -EACCES,
	      "a welcome whose UUID was altered is refused");
	a.welcome[8 + 32] ^= 1;
	kvmi_hs_init(&tool, cookie, strlen(cookie));
	kvmi_hs_check_hello(&tool, a.hello, a.hello_len);
	kvmi_hs_auth(&tool, nt, buf, sizeof(buf));
	CHECK(!kvmi_hs_check_welcome(&tool, a.welcome, a.welcome_len,
				     &b.info),
	      "the same welcome unaltered is accepted");

	kvmi_hs_init(&tool, cookie, strlen(cookie));
	kvmi_hs_check_hello(&tool, a.hello, a.hello_len);
	kvmi_hs_auth(&tool, nt, buf, sizeof(buf));
	n = kvmi_hs_reject(buf, sizeof(buf));
	CHECK(kvmi_hs_check_welcome(&tool, buf, n, &b.info) == -EACCES,
	      "a reject tells the tool its cookie was refused");

	/* Malformed hellos. */
	kvmi_hs_init(&tool, cookie, strlen(cookie));
	memcpy(buf, a.hello, a.hello_len);
	memcpy(buf + 8, &(uint32_t){ __builtin_bswap32(KVMI_LKVM_HS_MAGIC) },
	       4);
	CHECK(kvmi_hs_check_hello(&tool, buf, a.hello_len) == -EPROTO,
	      "a VMM of the other byte order is refused");
	memcpy(buf, a.hello, a.hello_len);
	buf[8 + 6] = 1;
	CHECK(kvmi_hs_check_hello(&tool, buf, a.hello_len) == -EPROTO,
	      "a hello with padding set is refused");
	CHECK(kvmi_hs_check_hello(&tool, a.hello, a.hello_len - 1) == -EPROTO,
	      "a truncated hello is refused");
	CHECK(kvmi_hs_check_hello(&tool, a.auth, a.auth_len) == -EPROTO,
	      "a message out of order is refused");
	CHECK(kvmi_hs_auth(&tool, nt, buf, sizeof(buf)) == -EINVAL,
	      "no answer before a valid hello");
	CHECK(kvmi_hs_init(&tool, "short", 5) == -EINVAL,
	      "a cookie under 16 bytes is refused");
	kvmi_hs_wipe(&tool);
	CHECK(!tool.key_len && !tool.key[0], "the cookie is wiped afterwards");
}

int main(void)
{
	kvmi_proto_init(&P, NVCPUS);
	test_ids();
	test_framing();
	test_unknown();
	test_padding();
	test_sizes();
	test_fields();
	test_variable();
	test_checks();
	test_replies();
	test_events();
	test_handshake();
	return tap_done();
}
