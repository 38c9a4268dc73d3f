// SPDX-License-Identifier: GPL-2.0
/*
 * The KVMI codec: tables of the messages lkvm knows, the validator of
 * what a tool sends, the builders of replies and events, the tool's side
 * of the same, and the handshake's MACs. No I/O here (kvm/kvmi-io.c).
 */
#include "lkvm/kvmi-proto.h"

#include <errno.h>
#include <string.h>

#include <nettle/hmac.h>
#include <nettle/memops.h>

#define HDR_SIZE sizeof(struct kvmi_msg_hdr)
#define MIN_SIZE(a, b) ((a) < (b) ? (a) : (b))

/* The layouts are the wire protocol: pin them. */
_Static_assert(sizeof(struct kvmi_msg_hdr) == 8, "kvmi_msg_hdr");
_Static_assert(sizeof(struct kvmi_error_code) == 8, "kvmi_error_code");
_Static_assert(sizeof(struct kvmi_vcpu_hdr) == 8, "kvmi_vcpu_hdr");
_Static_assert(sizeof(struct kvmi_vm_read_physical) == 16, "read_physical");
_Static_assert(sizeof(struct kvmi_vm_write_physical) == 16, "write_physical");
_Static_assert(sizeof(struct kvmi_page_access_entry) == 16, "access_entry");
_Static_assert(sizeof(struct kvmi_vm_set_page_access) == 8, "set_access");
_Static_assert(sizeof(struct kvmi_vcpu_inject_exception) == 16, "inject");
_Static_assert(sizeof(struct kvmi_vcpu_event_arch) == 536, "event_arch");
_Static_assert(sizeof(struct kvmi_vcpu_event) == 544, "vcpu_event");
_Static_assert(sizeof(struct kvmi_vcpu_event_reply) == 8, "event_reply");
_Static_assert(sizeof(struct kvmi_vcpu_event_pf) == 24, "event_pf");
_Static_assert(sizeof(struct kvmi_vcpu_event_trap) == 16, "event_trap");
_Static_assert(sizeof(struct kvmi_vcpu_get_registers_reply) == 472, "regs");
_Static_assert(sizeof(struct kvmi_lkvm_vm_map_memory_reply) == 16, "map");
_Static_assert(sizeof(struct kvmi_lkvm_mem_region) == 24, "mem_region");
_Static_assert(sizeof(struct kvmi_lkvm_vm_set_breakpoint) == 16, "set_bp");
_Static_assert(sizeof(struct kvmi_lkvm_vm_event_channel) == 8, "chan");
_Static_assert(sizeof(struct kvmi_lkvm_vm_event_channel_reply) == 16,
	       "chan_reply");
_Static_assert(sizeof(struct kvmi_lkvm_chan_hdr) == 64, "chan_hdr");
_Static_assert(sizeof(struct kvmi_lkvm_chan_slot) == 1024, "chan_slot");
_Static_assert(sizeof(struct kvmi_lkvm_hs_hello) == 48, "hs_hello");
_Static_assert(sizeof(struct kvmi_lkvm_hs_auth) == 64, "hs_auth");
_Static_assert(sizeof(struct kvmi_lkvm_hs_welcome) == 72, "hs_welcome");
_Static_assert(sizeof(struct kvmi_write_physical_head) ==
	       sizeof(struct kvmi_vm_write_physical), "write head");
_Static_assert(sizeof(struct kvmi_set_page_access_head) ==
	       sizeof(struct kvmi_vm_set_page_access), "access head");
_Static_assert(sizeof(struct kvmi_get_registers_head) ==
	       sizeof(struct kvmi_vcpu_get_registers), "registers head");
_Static_assert(sizeof(struct kvm_xsave) <= KVMI_MAX_MSG_SIZE - 8, "xsave");

#define ACT(a) (1u << KVMI_EVENT_ACTION_##a)

/* ---- the tables ---------------------------------------------------------- */

struct cmd_desc {
	uint16_t id;
	const char *name;
	/* Fixed argument size after the vCPU header; -1: checked by check. */
	int16_t args_size;
	/* Reply data size; -1: it varies (see reply_len()). */
	int16_t reply_size;
	/* The one run of padding bytes in the fixed arguments. */
	uint8_t pad_off, pad_len;
	/* A field that must be 0 or 1 (enable, wait, writable); -1: none. */
	int8_t bool_off;
	int (*check)(const struct kvmi_proto *p, struct kvmi_req *r);
};

static int check_vm_control_events(const struct kvmi_proto *p,
				   struct kvmi_req *r);
static int check_read_physical(const struct kvmi_proto *p, struct kvmi_req *r);
static int check_write_physical(const struct kvmi_proto *p, struct kvmi_req *r);
static int check_pause_vcpu(const struct kvmi_proto *p, struct kvmi_req *r);
static int check_set_page_access(const struct kvmi_proto *p,
				 struct kvmi_req *r);
static int check_vcpu_control_events(const struct kvmi_proto *p,
				     struct kvmi_req *r);
static int check_get_registers(const struct kvmi_proto *p, struct kvmi_req *r);
static int check_control_cr(const struct kvmi_proto *p, struct kvmi_req *r);
static int check_inject_exception(const struct kvmi_proto *p,
				  struct kvmi_req *r);
static int check_get_xcr(const struct kvmi_proto *p, struct kvmi_req *r);
static int check_set_xsave(const struct kvmi_proto *p, struct kvmi_req *r);
static int check_control_msr(const struct kvmi_proto *p, struct kvmi_req *r);
static int check_singlestep(const struct kvmi_proto *p, struct kvmi_req *r);
static int check_set_breakpoint(const struct kvmi_proto *p,
				struct kvmi_req *r);

#define CMD(i, a, rs, po, pl, b, c) \
	{ .id = i, .name = #i, .args_size = a, .reply_size = rs, \
	  .pad_off = po, .pad_len = pl, .bool_off = b, .check = c }

static const struct cmd_desc cmds[] = {
	CMD(KVMI_GET_VERSION, 0, sizeof(struct kvmi_get_version_reply),
	    0, 0, -1, NULL),
	CMD(KVMI_VM_CHECK_COMMAND, sizeof(struct kvmi_vm_check_command), 0,
	    2, 6, -1, NULL),
	CMD(KVMI_VM_CHECK_EVENT, sizeof(struct kvmi_vm_check_event), 0,
	    2, 6, -1, NULL),
	CMD(KVMI_VM_GET_INFO, 0, sizeof(struct kvmi_vm_get_info_reply),
	    0, 0, -1, NULL),
	CMD(KVMI_VM_CONTROL_EVENTS, sizeof(struct kvmi_vm_control_events), 0,
	    3, 5, 2, check_vm_control_events),
	CMD(KVMI_VM_READ_PHYSICAL, sizeof(struct kvmi_vm_read_physical), -1,
	    10, 6, -1, check_read_physical),
	CMD(KVMI_VM_WRITE_PHYSICAL, -1, 0, 10, 6, -1, check_write_physical),
	CMD(KVMI_VM_PAUSE_VCPU, sizeof(struct kvmi_vm_pause_vcpu), 0,
	    3, 5, 2, check_pause_vcpu),
	CMD(KVMI_VM_CONTROL_CLEANUP, sizeof(struct kvmi_vm_control_cleanup), 0,
	    1, 7, 0, NULL),
	CMD(KVMI_VM_SET_PAGE_ACCESS, -1, 0, 2, 6, -1, check_set_page_access),
	CMD(KVMI_VCPU_GET_INFO, 0, sizeof(struct kvmi_vcpu_get_info_reply),
	    0, 0, -1, NULL),
	CMD(KVMI_VCPU_CONTROL_EVENTS, sizeof(struct kvmi_vcpu_control_events),
	    0, 3, 5, 2, check_vcpu_control_events),
	CMD(KVMI_VCPU_GET_REGISTERS, -1, -1, 2, 6, -1, check_get_registers),
	CMD(KVMI_VCPU_SET_REGISTERS, sizeof(struct kvm_regs), 0,
	    0, 0, -1, NULL),
	CMD(KVMI_VCPU_GET_CPUID, sizeof(struct kvmi_vcpu_get_cpuid),
	    sizeof(struct kvmi_vcpu_get_cpuid_reply), 0, 0, -1, NULL),
	CMD(KVMI_VCPU_CONTROL_CR, sizeof(struct kvmi_vcpu_control_cr), 0,
	    2, 6, 1, check_control_cr),
	CMD(KVMI_VCPU_INJECT_EXCEPTION,
	    sizeof(struct kvmi_vcpu_inject_exception), 0, 1, 3, -1,
	    check_inject_exception),
	CMD(KVMI_VCPU_GET_XCR, sizeof(struct kvmi_vcpu_get_xcr),
	    sizeof(struct kvmi_vcpu_get_xcr_reply), 1, 7, -1, check_get_xcr),
	CMD(KVMI_VCPU_GET_XSAVE, 0, -1, 0, 0, -1, NULL),
	CMD(KVMI_VCPU_SET_XSAVE, -1, 0, 0, 0, -1, check_set_xsave),
	CMD(KVMI_VCPU_GET_MTRR_TYPE, sizeof(struct kvmi_vcpu_get_mtrr_type),
	    sizeof(struct kvmi_vcpu_get_mtrr_type_reply), 0, 0, -1, NULL),
	CMD(KVMI_VCPU_CONTROL_MSR, sizeof(struct kvmi_vcpu_control_msr), 0,
	    1, 3, 0, check_control_msr),
	CMD(KVMI_VCPU_CONTROL_SINGLESTEP,
	    sizeof(struct kvmi_vcpu_control_singlestep), 0, 1, 7, 0,
	    check_singlestep),
	CMD(KVMI_VCPU_TRANSLATE_GVA, sizeof(struct kvmi_vcpu_translate_gva),
	    sizeof(struct kvmi_vcpu_translate_gva_reply), 0, 0, -1, NULL),
	CMD(KVMI_LKVM_VM_MAP_MEMORY, sizeof(struct kvmi_lkvm_vm_map_memory),
	    -1, 1, 7, 0, NULL),
	CMD(KVMI_LKVM_VM_SET_BREAKPOINT,
	    sizeof(struct kvmi_lkvm_vm_set_breakpoint), 0, 9, 7, 8,
	    check_set_breakpoint),
	CMD(KVMI_LKVM_VM_EVENT_CHANNEL,
	    sizeof(struct kvmi_lkvm_vm_event_channel),
	    sizeof(struct kvmi_lkvm_vm_event_channel_reply), 1, 7, 0, NULL),
};

struct event_desc {
	uint16_t id;
	const char *name;
	uint8_t data_size;	/* after kvmi_vcpu_event (or kvmi_event_hdr) */
	uint8_t reply_size;	/* after kvmi_vcpu_event_reply */
	uint8_t pad_off, pad_len;	/* padding in the data */
	uint8_t actions;
	bool controllable;
};

#define EV(i, d, rs, po, pl, a, c) \
	{ .id = i, .name = #i, .data_size = d, .reply_size = rs, \
	  .pad_off = po, .pad_len = pl, .actions = a, .controllable = c }

static const struct event_desc events[] = {
	EV(KVMI_VM_EVENT_UNHOOK, 0, 0, 0, 0, 0, true),
	EV(KVMI_VCPU_EVENT_PAUSE, 0, 0, 0, 0, ACT(CONTINUE) | ACT(CRASH),
	   false),
	EV(KVMI_VCPU_EVENT_HYPERCALL, 0, 0, 0, 0, ACT(CONTINUE) | ACT(CRASH),
	   true),
	EV(KVMI_VCPU_EVENT_BREAKPOINT,
	   sizeof(struct kvmi_vcpu_event_breakpoint), 0, 9, 7,
	   ACT(CONTINUE) | ACT(RETRY) | ACT(CRASH), true),
	EV(KVMI_VCPU_EVENT_CR, sizeof(struct kvmi_vcpu_event_cr),
	   sizeof(struct kvmi_vcpu_event_cr_reply), 1, 7,
	   ACT(CONTINUE) | ACT(CRASH), true),
	EV(KVMI_VCPU_EVENT_TRAP, sizeof(struct kvmi_vcpu_event_trap), 0, 1, 3,
	   ACT(CONTINUE) | ACT(CRASH), false),
	EV(KVMI_VCPU_EVENT_XSETBV, sizeof(struct kvmi_vcpu_event_xsetbv), 0,
	   1, 7, ACT(CONTINUE) | ACT(CRASH), true),
	EV(KVMI_VCPU_EVENT_DESCRIPTOR,
	   sizeof(struct kvmi_vcpu_event_descriptor), 0, 2, 6,
	   ACT(CONTINUE) | ACT(RETRY) | ACT(CRASH), true),
	EV(KVMI_VCPU_EVENT_MSR, sizeof(struct kvmi_vcpu_event_msr),
	   sizeof(struct kvmi_vcpu_event_msr_reply), 4, 4,
	   ACT(CONTINUE) | ACT(CRASH), true),
	EV(KVMI_VCPU_EVENT_PF, sizeof(struct kvmi_vcpu_event_pf), 0, 17, 7,
	   ACT(CONTINUE) | ACT(RETRY) | ACT(CRASH), true),
	EV(KVMI_VCPU_EVENT_SINGLESTEP,
	   sizeof(struct kvmi_vcpu_event_singlestep), 0, 1, 7,
	   ACT(CONTINUE) | ACT(CRASH), false),
	EV(KVMI_LKVM_VCPU_EVENT_AGENT,
	   sizeof(struct kvmi_lkvm_vcpu_event_agent), 0, 4, 4,
	   ACT(CONTINUE) | ACT(CRASH), true),
};

_Static_assert(sizeof(cmds) / sizeof(cmds[0]) <= 64, "command bits");
_Static_assert(sizeof(events) / sizeof(events[0]) <= 64, "event bits");

#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))
#define NEVENTS (sizeof(events) / sizeof(events[0]))

static int cmd_index(uint16_t id)
{
	for (unsigned int i = 0; i < NCMDS; i++)
		if (cmds[i].id == id)
			return i;
	return -1;
}

static const struct event_desc *event_desc(uint16_t id)
{
	for (unsigned int i = 0; i < NEVENTS; i++)
		if (events[i].id == id)
			return &events[i];
	return NULL;
}

uint64_t kvmi_cmd_bit(uint16_t id)
{
	int i = cmd_index(id);

	return i < 0 ? 0 : 1ull << i;
}

uint64_t kvmi_event_bit(uint16_t id)
{
	const struct event_desc *e = event_desc(id);

	return e ? 1ull << (e - events) : 0;
}

uint64_t kvmi_all_cmds(void)
{
	return NCMDS == 64 ? ~0ull : (1ull << NCMDS) - 1;
}

uint64_t kvmi_all_events(void)
{
	return NEVENTS == 64 ? ~0ull : (1ull << NEVENTS) - 1;
}

const char *kvmi_cmd_name(uint16_t id)
{
	int i = cmd_index(id);

	return i < 0 ? NULL : cmds[i].name;
}

const char *kvmi_event_name(uint16_t id)
{
	const struct event_desc *e = event_desc(id);

	return e ? e->name : NULL;
}

ssize_t kvmi_cmd_reply_size(uint16_t id)
{
	int i = cmd_index(id);

	return i < 0 ? -1 : cmds[i].reply_size;
}

ssize_t kvmi_event_data_size(uint16_t id)
{
	const struct event_desc *e = event_desc(id);

	return e ? e->data_size : -1;
}

ssize_t kvmi_event_reply_size(uint16_t id)
{
	const struct event_desc *e = event_desc(id);

	return e ? e->reply_size : -1;
}

unsigned int kvmi_event_actions(uint16_t id)
{
	const struct event_desc *e = event_desc(id);

	return e ? e->actions : 0;
}

bool kvmi_event_controllable(uint16_t id)
{
	const struct event_desc *e = event_desc(id);

	return e && e->controllable;
}

static bool is_vm_event(uint16_t id)
{
	return !(id & 1);
}

const char *kvmi_strerror(int err)
{
	static const struct {
		int code;
		const char *text;
	} names[] = {
		{ KVM_ENOSYS, "KVM_ENOSYS (unsupported command)" },
		{ KVM_EPERM, "KVM_EPERM (disallowed)" },
		{ KVM_EINVAL, "KVM_EINVAL (invalid argument)" },
		{ KVM_ENOENT, "KVM_ENOENT (no such entry)" },
		{ KVM_EAGAIN, "KVM_EAGAIN (not ready, try again)" },
		{ KVM_EBUSY, "KVM_EBUSY (busy)" },
		{ KVM_ENOMEM, "KVM_ENOMEM (out of memory)" },
		{ KVM_EFAULT, "KVM_EFAULT (bad address)" },
		{ KVM_E2BIG, "KVM_E2BIG (too big)" },
		{ KVM_EOPNOTSUPP, "KVM_EOPNOTSUPP (not supported here)" },
	};

	if (!err)
		return "success";
	for (unsigned int i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (-err == names[i].code)
			return names[i].text;
	return strerror(err < 0 ? -err : err);
}

/* ---- the server side ----------------------------------------------------- */

void kvmi_proto_init(struct kvmi_proto *p, unsigned int nvcpus)
{
	/* Mainline KVM neither exits on control-register or descriptor-table
	 * writes, XSETBV or hypercalls, nor restricts reads or execution. */
	static const uint16_t no_cmds[] = {
		KVMI_VCPU_CONTROL_CR, KVMI_VCPU_SET_XSAVE,
		KVMI_VCPU_GET_MTRR_TYPE, KVMI_VM_CONTROL_CLEANUP,
	};
	static const uint16_t no_events[] = {
		KVMI_VCPU_EVENT_HYPERCALL, KVMI_VCPU_EVENT_CR,
		KVMI_VCPU_EVENT_XSETBV, KVMI_VCPU_EVENT_DESCRIPTOR,
	};

	memset(p, 0, sizeof(*p));
	p->nvcpus = nvcpus;
	p->cmd_supported = kvmi_all_cmds();
	for (unsigned int i = 0; i < sizeof(no_cmds) / sizeof(no_cmds[0]); i++)
		p->cmd_supported &= ~kvmi_cmd_bit(no_cmds[i]);
	p->ev_supported = kvmi_all_events();
	for (unsigned int i = 0; i < sizeof(no_events) / sizeof(no_events[0]);
	     i++)
		p->ev_supported &= ~kvmi_event_bit(no_events[i]);
	p->cmd_allowed = p->cmd_supported;
	p->ev_allowed = p->ev_supported;
	p->access_supported =
		1u << (KVMI_PAGE_ACCESS_R | KVMI_PAGE_ACCESS_W |
		       KVMI_PAGE_ACCESS_X) |
		1u << (KVMI_PAGE_ACCESS_R | KVMI_PAGE_ACCESS_X);
	p->seq = 1;
}

uint32_t kvmi_next_seq(struct kvmi_proto *p)
{
	return __atomic_fetch_add(&p->seq, 1, __ATOMIC_RELAXED);
}

static bool all_zero(const uint8_t *b, size_t n)
{
	uint8_t acc = 0;

	for (size_t i = 0; i < n; i++)
		acc |= b[i];
	return !acc;
}

static bool cmd_always_allowed(uint16_t id)
{
	return id == KVMI_GET_VERSION || id == KVMI_VM_CHECK_COMMAND ||
	       id == KVMI_VM_CHECK_EVENT;
}

int kvmi_proto_check_command(const struct kvmi_proto *p, uint16_t id)
{
	uint64_t bit = kvmi_cmd_bit(id);

	if (!bit || !(p->cmd_supported & bit))
		return -KVM_ENOENT;
	if (!cmd_always_allowed(id) && !(p->cmd_allowed & bit))
		return -KVM_EPERM;
	return 0;
}

int kvmi_proto_check_event(const struct kvmi_proto *p, uint16_t id)
{
	uint64_t bit = kvmi_event_bit(id);

	if (!bit || !(p->ev_supported & bit))
		return -KVM_ENOENT;
	if (!(p->ev_allowed & bit))
		return -KVM_EPERM;
	return 0;
}

bool kvmi_proto_event_allowed(const struct kvmi_proto *p, uint16_t id)
{
	return !kvmi_proto_check_event(p, id);
}

/* For the control-events commands: unknown, not switchable or
 * unsupported is -KVM_EINVAL, as the specification has it. */
static int check_control(const struct kvmi_proto *p, uint16_t event,
			 bool vm)
{
	int err;

	if (!event_desc(event) || is_vm_event(event) != vm ||
	    !kvmi_event_controllable(event))
		return -KVM_EINVAL;
	err = kvmi_proto_check_event(p, event);
	return err == -KVM_ENOENT ? -KVM_EINVAL : err;
}

static int check_vm_control_events(const struct kvmi_proto *p,
				   struct kvmi_req *r)
{
	return check_control(p, r->a.vm_control_events.event_id, true);
}

static int check_gpa_size(uint64_t gpa, unsigned int size)
{
	if (!size || size > KVMI_PAGE_SIZE ||
	    (gpa & (KVMI_PAGE_SIZE - 1)) + size > KVMI_PAGE_SIZE)
		return -KVM_EINVAL;
	return 0;
}

static int check_read_physical(const struct kvmi_proto *p, struct kvmi_req *r)
{
	(void)p;
	return check_gpa_size(r->a.read_physical.gpa, r->a.read_physical.size);
}

static int check_write_physical(const struct kvmi_proto *p, struct kvmi_req *r)
{
	const struct kvmi_write_physical_head *w = &r->a.write_physical;

	(void)p;
	if (r->args_len < sizeof(*w))
		return -KVM_EINVAL;
	memcpy(&r->a, r->args, sizeof(*w));
	if (!all_zero(r->args + 10, 6))
		return -KVM_EINVAL;
	if (check_gpa_size(w->gpa, w->size) ||
	    r->args_len != sizeof(*w) + w->size)
		return -KVM_EINVAL;
	r->args_tail = r->args + sizeof(*w);
	r->args_tail_len = w->size;
	return 0;
}

static int check_pause_vcpu(const struct kvmi_proto *p, struct kvmi_req *r)
{
	if (r->a.pause_vcpu.vcpu >= p->nvcpus)
		return -KVM_EINVAL;
	if (!kvmi_proto_event_allowed(p, KVMI_VCPU_EVENT_PAUSE))
		return -KVM_EPERM;
	return 0;
}

static int check_set_page_access(const struct kvmi_proto *p,
				 struct kvmi_req *r)
{
	const struct kvmi_set_page_access_head *s = &r->a.set_page_access;
	struct kvmi_page_access_entry e;
	const uint8_t *ent;

	if (r->args_len < sizeof(*s))
		return -KVM_EINVAL;
	memcpy(&r->a, r->args, sizeof(*s));
	if (!all_zero(r->args + 2, 6) || !s->count ||
	    r->args_len != sizeof(*s) + (size_t)s->count * sizeof(e))
		return -KVM_EINVAL;
	ent = r->args + sizeof(*s);
	for (unsigned int i = 0; i < s->count; i++, ent += sizeof(e)) {
		memcpy(&e, ent, sizeof(e));
		if (!all_zero(e.padding, sizeof(e.padding)) || e.access > 7 ||
		    !(p->access_supported & (1u << e.access)))
			return -KVM_EINVAL;
	}
	r->args_tail = r->args + sizeof(*s);
	r->args_tail_len = r->args_len - sizeof(*s);
	return 0;
}

static int check_vcpu_control_events(const struct kvmi_proto *p,
				     struct kvmi_req *r)
{
	return check_control(p, r->a.vcpu_control_events.event_id, false);
}

/* The reply's size must fit the limit, with its error code. */
static size_t registers_reply_len(unsigned int nmsrs)
{
	return sizeof(struct kvmi_vcpu_get_registers_reply) +
	       (size_t)nmsrs * sizeof(struct kvm_msr_entry);
}

static int check_get_registers(const struct kvmi_proto *p, struct kvmi_req *r)
{
	const struct kvmi_get_registers_head *g = &r->a.get_registers;

	(void)p;
	if (r->args_len < sizeof(*g))
		return -KVM_EINVAL;
	memcpy(&r->a, r->args, sizeof(*g));
	if (!all_zero(r->args + 2, 6) ||
	    r->args_len != sizeof(*g) + (size_t)g->nmsrs * sizeof(__u32) ||
	    sizeof(struct kvmi_error_code) + registers_reply_len(g->nmsrs) >
		    KVMI_MAX_MSG_SIZE)
		return -KVM_EINVAL;
	r->args_tail = r->args + sizeof(*g);
	r->args_tail_len = r->args_len - sizeof(*g);
	return 0;
}

static int check_control_cr(const struct kvmi_proto *p, struct kvmi_req *r)
{
	uint8_t cr = r->a.control_cr.cr;

	(void)p;
	return cr == 0 || cr == 3 || cr == 4 ? 0 : -KVM_EINVAL;
}

static int check_inject_exception(const struct kvmi_proto *p,
				  struct kvmi_req *r)
{
	if (r->a.inject_exception.nr >= 32)
		return -KVM_EINVAL;
	if (!kvmi_proto_event_allowed(p, KVMI_VCPU_EVENT_TRAP))
		return -KVM_EPERM;
	return 0;
}

static int check_get_xcr(const struct kvmi_proto *p, struct kvmi_req *r)
{
	(void)p;
	return r->a.get_xcr.xcr == 0 ? 0 : -KVM_EINVAL;
}

static int check_set_xsave(const struct kvmi_proto *p, struct kvmi_req *r)
{
	(void)p;
	if (r->args_len != sizeof(struct kvm_xsave))
		return -KVM_EINVAL;
	r->args_tail = r->args;
	r->args_tail_len = r->args_len;
	return 0;
}

static int check_control_msr(const struct kvmi_proto *p, struct kvmi_req *r)
{
	uint32_t msr = r->a.control_msr.msr;

	(void)p;
	if (msr <= 0x1fff || (msr >= 0xc0000000 && msr <= 0xc0001fff))
		return 0;
	return -KVM_EINVAL;
}

static int check_singlestep(const struct kvmi_proto *p, struct kvmi_req *r)
{
	(void)r;
	if (!kvmi_proto_event_allowed(p, KVMI_VCPU_EVENT_SINGLESTEP))
		return -KVM_EPERM;
	return 0;
}

static int check_set_breakpoint(const struct kvmi_proto *p,
				struct kvmi_req *r)
{
	(void)r;
	if (!kvmi_proto_event_allowed(p, KVMI_VCPU_EVENT_BREAKPOINT))
		return -KVM_EPERM;
	return 0;
}

int kvmi_check_hdr(const struct kvmi_msg_hdr *hdr)
{
	return hdr->size > KVMI_MAX_MSG_SIZE ? -EMSGSIZE : 0;
}

/* Splits off the vCPU header: -KVM_EINVAL when it is short, padded or
 * names no vCPU. */
static int take_vcpu_hdr(const struct kvmi_proto *p, struct kvmi_req *r)
{
	struct kvmi_vcpu_hdr vh;

	if (r->args_len < sizeof(vh))
		return -KVM_EINVAL;
	memcpy(&vh, r->args, sizeof(vh));
	if (vh.padding1 || vh.padding2 || vh.vcpu >= p->nvcpus)
		return -KVM_EINVAL;
	r->has_vcpu = true;
	r->vcpu = vh.vcpu;
	r->args += sizeof(vh);
	r->args_len -= sizeof(vh);
	return 0;
}

static int parse_event_reply(const struct kvmi_proto *p, struct kvmi_req *r)
{
	struct kvmi_vcpu_event_reply er;

	r->kind = KVMI_REQ_EVENT_REPLY;
	/* No reply can carry an error back: every fault here is fatal. */
	if (take_vcpu_hdr(p, r) || r->args_len < sizeof(er))
		return -EPROTO;
	memcpy(&er, r->args, sizeof(er));
	if (er.padding1 || er.padding2)
		return -EPROTO;
	r->action = er.action;
	r->event = er.event;
	r->args += sizeof(er);
	r->args_len -= sizeof(er);
	memcpy(&r->a, r->args, MIN_SIZE(r->args_len, sizeof(r->a)));
	return 0;
}

int kvmi_parse(const struct kvmi_proto *p, const void *msg, size_t len,
	       struct kvmi_req *r)
{
	const struct cmd_desc *d;
	uint64_t bit;
	int i, err;

	memset(r, 0, sizeof(*r));
	if (len < HDR_SIZE)
		return -EPROTO;
	memcpy(&r->hdr, msg, HDR_SIZE);
	if (kvmi_check_hdr(&r->hdr))
		return -EMSGSIZE;
	if (len != HDR_SIZE + r->hdr.size)
		return -EPROTO;
	r->args = (const uint8_t *)msg + HDR_SIZE;
	r->args_len = r->hdr.size;

	if (r->hdr.id == KVMI_VCPU_EVENT)
		return parse_event_reply(p, r);

	r->kind = KVMI_REQ_COMMAND;
	i = cmd_index(r->hdr.id);
	bit = i < 0 ? 0 : 1ull << i;
	if (!bit || !(p->cmd_supported & bit)) {
		r->error = -KVM_ENOSYS;
		return 0;
	}
	if (!cmd_always_allowed(r->hdr.id) && !(p->cmd_allowed & bit)) {
		r->error = -KVM_EPERM;
		return 0;
	}
	d = &cmds[i];
	if ((r->hdr.id & 1) && (err = take_vcpu_hdr(p, r))) {
		r->error = err;
		return 0;
	}
	if (d->args_size >= 0) {
		if (r->args_len != (size_t)d->args_size) {
			r->error = -KVM_EINVAL;
			return 0;
		}
		memcpy(&r->a, r->args, r->args_len);
		if (!all_zero(r->args + d->pad_off, d->pad_len) ||
		    (d->bool_off >= 0 && r->args[d->bool_off] > 1)) {
			r->error = -KVM_EINVAL;
			return 0;
		}
	}
	if (d->check)
		r->error = d->check(p, r);
	return 0;
}

/* The reply data a command must come back with; -1: any length. */
static ssize_t reply_len(const struct kvmi_req *r)
{
	int i = cmd_index(r->hdr.id);

	if (i < 0)
		return -1;
	switch (r->hdr.id) {
	case KVMI_VM_READ_PHYSICAL:
		return r->a.read_physical.size;
	case KVMI_VCPU_GET_REGISTERS:
		return registers_reply_len(r->a.get_registers.nmsrs);
	default:
		return cmds[i].reply_size;
	}
}

int kvmi_reply_prefix(struct kvmi_reply_prefix *pre, const struct kvmi_req *r,
		      int err, size_t data_len)
{
	ssize_t want;

	if (r->kind != KVMI_REQ_COMMAND || err > 0)
		return -EINVAL;
	if (err) {
		if (data_len)
			return -EINVAL;
	} else {
		want = reply_len(r);
		if (want >= 0 && data_len != (size_t)want)
			return -EINVAL;
	}
	if (sizeof(pre->ec) + data_len > KVMI_MAX_MSG_SIZE)
		return -EINVAL;
	memset(pre, 0, sizeof(*pre));
	pre->hdr.id = r->hdr.id;
	pre->hdr.seq = r->hdr.seq;
	pre->hdr.size = sizeof(pre->ec) + data_len;
	pre->ec.err = err;
	return 0;
}

ssize_t kvmi_reply_build(void *buf, size_t cap, const struct kvmi_req *r,
			 int err, const void *data, size_t data_len)
{
	struct kvmi_reply_prefix pre;
	int ret = kvmi_reply_prefix(&pre, r, err, data_len);

	if (ret)
		return ret;
	if (cap < sizeof(pre) + data_len)
		return -ENOSPC;
	memcpy(buf, &pre, sizeof(pre));
	if (data_len)
		memcpy((uint8_t *)buf + sizeof(pre), data, data_len);
	return sizeof(pre) + data_len;
}

ssize_t kvmi_vcpu_event_build(void *buf, size_t cap, uint32_t seq,
			      uint16_t vcpu, uint16_t event,
			      const struct kvmi_vcpu_event_arch *arch,
			      const void *data, size_t data_len,
			      struct kvmi_pending *pend)
{
	const struct event_desc *e = event_desc(event);
	struct kvmi_msg_hdr hdr = { .id = KVMI_VCPU_EVENT, .seq = seq };
	struct kvmi_event_hdr eh = { .event = event };
	struct kvmi_vcpu_event ve = { .size = sizeof(ve), .vcpu = vcpu };
	size_t total = HDR_SIZE + sizeof(eh) + sizeof(ve) + data_len;
	uint8_t *b = buf;

	if (!e || is_vm_event(event) || data_len != e->data_size)
		return -EINVAL;
	if (cap < total)
		return -ENOSPC;
	ve.arch = *arch;
	memset(ve.arch.padding, 0, sizeof(ve.arch.padding));
	hdr.size = total - HDR_SIZE;
	memcpy(b, &hdr, sizeof(hdr));
	memcpy(b + HDR_SIZE, &eh, sizeof(eh));
	memcpy(b + HDR_SIZE + sizeof(eh), &ve, sizeof(ve));
	if (data_len)
		memcpy(b + HDR_SIZE + sizeof(eh) + sizeof(ve), data, data_len);
	if (pend) {
		pend->active = true;
		pend->vcpu = vcpu;
		pend->event = event;
		pend->seq = seq;
	}
	return total;
}

ssize_t kvmi_vm_event_build(void *buf, size_t cap, uint32_t seq,
			    uint16_t event)
{
	struct kvmi_msg_hdr hdr = {
		.id = KVMI_VM_EVENT,
		.size = sizeof(struct kvmi_event_hdr),
		.seq = seq,
	};
	struct kvmi_event_hdr eh = { .event = event };

	if (!event_desc(event) || !is_vm_event(event))
		return -EINVAL;
	if (cap < sizeof(hdr) + sizeof(eh))
		return -ENOSPC;
	memcpy(buf, &hdr, sizeof(hdr));
	memcpy((uint8_t *)buf + sizeof(hdr), &eh, sizeof(eh));
	return sizeof(hdr) + sizeof(eh);
}

int kvmi_event_reply_check(const struct kvmi_pending *pend,
			   const struct kvmi_req *r)
{
	const struct event_desc *e = event_desc(pend->event);

	if (r->kind != KVMI_REQ_EVENT_REPLY || !pend->active || !e ||
	    r->vcpu != pend->vcpu || r->hdr.seq != pend->seq ||
	    r->event != (uint8_t)pend->event)
		return -EPROTO;
	if (r->action > 7 || !(e->actions & (1u << r->action)))
		return -EPROTO;
	if (r->args_len != e->reply_size)
		return -EPROTO;
	return 0;
}

/* ---- the tool side ------------------------------------------------------- */

ssize_t kvmi_cmd_build(void *buf, size_t cap, uint16_t id, uint32_t seq,
		       int vcpu, const void *args, size_t args_len)
{
	struct kvmi_msg_hdr hdr = { .id = id, .seq = seq };
	struct kvmi_vcpu_hdr vh = { 0 };
	size_t vlen = vcpu >= 0 ? sizeof(vh) : 0;
	uint8_t *b = buf;

	if ((vcpu >= 0) != (id & 1) || vcpu > 0xffff)
		return -EINVAL;
	if (vlen + args_len > KVMI_MAX_MSG_SIZE)
		return -EMSGSIZE;
	if (cap < HDR_SIZE + vlen + args_len)
		return -ENOSPC;
	hdr.size = vlen + args_len;
	memcpy(b, &hdr, sizeof(hdr));
	if (vlen) {
		vh.vcpu = vcpu;
		memcpy(b + HDR_SIZE, &vh, sizeof(vh));
	}
	if (args_len)
		memcpy(b + HDR_SIZE + vlen, args, args_len);
	return HDR_SIZE + vlen + args_len;
}

static int whole_msg(const void *msg, size_t len, struct kvmi_msg_hdr *hdr)
{
	if (len < HDR_SIZE)
		return -EPROTO;
	memcpy(hdr, msg, HDR_SIZE);
	if (hdr->size > KVMI_MAX_MSG_SIZE || len != HDR_SIZE + hdr->size)
		return -EPROTO;
	return 0;
}

int kvmi_reply_parse(const void *msg, size_t len, uint16_t id, uint32_t seq,
		     struct kvmi_reply *out)
{
	struct kvmi_msg_hdr hdr;
	struct kvmi_error_code ec;

	memset(out, 0, sizeof(*out));
	if (whole_msg(msg, len, &hdr) || hdr.id != id || hdr.seq != seq ||
	    hdr.size < sizeof(ec))
		return -EPROTO;
	memcpy(&ec, (const uint8_t *)msg + HDR_SIZE, sizeof(ec));
	if (ec.padding || ec.err > 0 || (ec.err && hdr.size != sizeof(ec)))
		return -EPROTO;
	out->err = ec.err;
	out->data = (const uint8_t *)msg + HDR_SIZE + sizeof(ec);
	out->len = hdr.size - sizeof(ec);
	return 0;
}

bool kvmi_msg_is_event(const void *msg, size_t len)
{
	struct kvmi_msg_hdr hdr;

	if (len < HDR_SIZE)
		return false;
	memcpy(&hdr, msg, HDR_SIZE);
	return hdr.id == KVMI_VM_EVENT || hdr.id == KVMI_VCPU_EVENT;
}

int kvmi_event_parse(const void *msg, size_t len, struct kvmi_event *ev)
{
	const uint8_t *b = msg;
	const struct event_desc *e;
	struct kvmi_event_hdr eh;
	struct kvmi_vcpu_event ve;
	size_t off = HDR_SIZE + sizeof(eh);

	memset(ev, 0, sizeof(*ev));
	if (whole_msg(msg, len, &ev->hdr) || ev->hdr.size < sizeof(eh))
		return -EPROTO;
	memcpy(&eh, b + HDR_SIZE, sizeof(eh));
	e = event_desc(eh.event);
	if (!e || !all_zero((const uint8_t *)eh.padding, sizeof(eh.padding)))
		return -EPROTO;
	ev->event = eh.event;
	if (ev->hdr.id == KVMI_VM_EVENT) {
		if (!is_vm_event(eh.event) ||
		    ev->hdr.size != sizeof(eh) + e->data_size)
			return -EPROTO;
		return 0;
	}
	if (ev->hdr.id != KVMI_VCPU_EVENT || is_vm_event(eh.event) ||
	    ev->hdr.size != sizeof(eh) + sizeof(ve) + e->data_size)
		return -EPROTO;
	memcpy(&ve, b + off, sizeof(ve));
	if (ve.size != sizeof(ve) || ve.padding ||
	    !all_zero(ve.arch.padding, sizeof(ve.arch.padding)))
		return -EPROTO;
	off += sizeof(ve);
	if (!all_zero(b + off + e->pad_off, e->pad_len))
		return -EPROTO;
	ev->is_vcpu = true;
	ev->vcpu = ve.vcpu;
	ev->arch = ve.arch;
	memcpy(&ev->data, b + off, e->data_size);
	return 0;
}

ssize_t kvmi_event_reply_build(void *buf, size_t cap,
			       const struct kvmi_event *ev, uint8_t action,
			       const void *data, size_t data_len)
{
	const struct event_desc *e = event_desc(ev->event);
	struct kvmi_msg_hdr hdr = { .id = KVMI_VCPU_EVENT, .seq = ev->hdr.seq };
	struct kvmi_vcpu_hdr vh = { .vcpu = ev->vcpu };
	struct kvmi_vcpu_event_reply er = {
		.action = action,
		.event = (uint8_t)ev->event,
	};
	size_t total = HDR_SIZE + sizeof(vh) + sizeof(er) + data_len;
	uint8_t *b = buf;

	if (!ev->is_vcpu || !e || action > 7 ||
	    !(e->actions & (1u << action)) || data_len != e->reply_size)
		return -EINVAL;
	if (cap < total)
		return -ENOSPC;
	hdr.size = total - HDR_SIZE;
	memcpy(b, &hdr, sizeof(hdr));
	memcpy(b + HDR_SIZE, &vh, sizeof(vh));
	memcpy(b + HDR_SIZE + sizeof(vh), &er, sizeof(er));
	if (data_len)
		memcpy(b + HDR_SIZE + sizeof(vh) + sizeof(er), data, data_len);
	return total;
}

/* ---- the handshake ------------------------------------------------------- */

/*
 * Distinct labels make the tool's proof useless as the VMM's and the
 * other way round; each MAC covers the other side's fresh nonce, so no
 * recorded answer satisfies a new challenge.
 */
#define LABEL_TOOL "lkvm-kvmi-v1 tool"
#define LABEL_VMM "lkvm-kvmi-v1 vmm"

enum {
	HS_FRESH,
	HS_VMM_HELLO_SENT,
	HS_VMM_AUTHENTICATED,
	HS_TOOL_HELLO_OK,
	HS_TOOL_AUTH_SENT,
	HS_DONE,
};

static void hs_mac(const struct kvmi_hs *hs, const char *label,
		   const void *extra, size_t extra_len,
		   uint8_t out[KVMI_LKVM_MAC_SIZE])
{
	struct hmac_sha256_ctx ctx;

	hmac_sha256_set_key(&ctx, hs->key_len, hs->key);
	hmac_sha256_update(&ctx, strlen(label), (const uint8_t *)label);
	hmac_sha256_update(&ctx, sizeof(hs->nonce_vmm), hs->nonce_vmm);
	hmac_sha256_update(&ctx, sizeof(hs->nonce_tool), hs->nonce_tool);
	if (extra_len)
		hmac_sha256_update(&ctx, extra_len, extra);
	hmac_sha256_digest(&ctx, KVMI_LKVM_MAC_SIZE, out);
	memset(&ctx, 0, sizeof(ctx));
}

int kvmi_hs_init(struct kvmi_hs *hs, const void *cookie, size_t len)
{
	memset(hs, 0, sizeof(*hs));
	if (len < KVMI_COOKIE_MIN || len > KVMI_COOKIE_MAX)
		return -EINVAL;
	memcpy(hs->key, cookie, len);
	hs->key_len = len;
	return 0;
}

void kvmi_hs_wipe(struct kvmi_hs *hs)
{
	explicit_bzero(hs, sizeof(*hs));
}

static ssize_t hs_put(void *buf, size_t cap, uint16_t id, const void *body,
		      size_t len)
{
	struct kvmi_msg_hdr hdr = { .id = id, .size = len };

	if (cap < HDR_SIZE + len)
		return -ENOSPC;
	memcpy(buf, &hdr, sizeof(hdr));
	if (len)
		memcpy((uint8_t *)buf + HDR_SIZE, body, len);
	return HDR_SIZE + len;
}

/* A handshake message of this id and exact body size, seq 0. */
static int hs_take(const void *msg, size_t len, uint16_t id, void *body,
		   size_t body_len)
{
	struct kvmi_msg_hdr hdr;

	if (whole_msg(msg, len, &hdr) || hdr.id != id ||
	    hdr.size != body_len || hdr.seq)
		return -EPROTO;
	memcpy(body, (const uint8_t *)msg + HDR_SIZE, body_len);
	return 0;
}

ssize_t kvmi_hs_hello(struct kvmi_hs *hs,
		      const uint8_t nonce[KVMI_LKVM_NONCE_SIZE], void *buf,
		      size_t cap)
{
	struct kvmi_lkvm_hs_hello h = {
		.magic = KVMI_LKVM_HS_MAGIC,
		.version = KVMI_LKVM_HS_VERSION,
	};
	ssize_t n;

	if (hs->step != HS_FRESH || !hs->key_len)
		return -EINVAL;
	memcpy(h.nonce, nonce, sizeof(h.nonce));
	n = hs_put(buf, cap, KVMI_LKVM_HS_HELLO, &h, sizeof(h));
	if (n > 0) {
		memcpy(hs->nonce_vmm, nonce, sizeof(hs->nonce_vmm));
		hs->step = HS_VMM_HELLO_SENT;
	}
	return n;
}

int kvmi_hs_check_auth(struct kvmi_hs *hs, const void *msg, size_t len)
{
	struct kvmi_lkvm_hs_auth a;
	uint8_t want[KVMI_LKVM_MAC_SIZE];
	int ok;

	if (hs->step != HS_VMM_HELLO_SENT)
		return -EPROTO;
	if (hs_take(msg, len, KVMI_LKVM_HS_AUTH, &a, sizeof(a)))
		return -EPROTO;
	/* A peer echoing our own nonce is reflecting, not answering. */
	if (!memcmp(a.nonce, hs->nonce_vmm, sizeof(a.nonce)))
		return -EACCES;
	memcpy(hs->nonce_tool, a.nonce, sizeof(hs->nonce_tool));
	hs_mac(hs, LABEL_TOOL, NULL, 0, want);
	ok = memeql_sec(want, a.mac, sizeof(want));
	explicit_bzero(want, sizeof(want));
	if (!ok)
		return -EACCES;
	hs->step = HS_VMM_AUTHENTICATED;
	return 0;
}

ssize_t kvmi_hs_welcome(struct kvmi_hs *hs, const struct kvmi_guest *info,
			void *buf, size_t cap)
{
	struct kvmi_lkvm_hs_welcome w;
	ssize_t n;

	if (hs->step != HS_VMM_AUTHENTICATED)
		return -EINVAL;
	memset(&w, 0, sizeof(w));
	memcpy(w.uuid, info->uuid, sizeof(w.uuid));
	w.features = info->features;
	w.version = info->version;
	w.max_msg_size = info->max_msg_size;
	w.vcpu_count = info->vcpu_count;
	hs_mac(hs, LABEL_VMM, (const uint8_t *)&w + sizeof(w.mac),
	       sizeof(w) - sizeof(w.mac), w.mac);
	n = hs_put(buf, cap, KVMI_LKVM_HS_WELCOME, &w, sizeof(w));
	if (n > 0)
		hs->step = HS_DONE;
	return n;
}

ssize_t kvmi_hs_reject(void *buf, size_t cap)
{
	return hs_put(buf, cap, KVMI_LKVM_HS_REJECT, NULL, 0);
}

int kvmi_hs_check_hello(struct kvmi_hs *hs, const void *msg, size_t len)
{
	struct kvmi_lkvm_hs_hello h;

	if (hs->step != HS_FRESH || !hs->key_len)
		return -EPROTO;
	/* The magic in the VMM's byte order: another order fails here. */
	if (hs_take(msg, len, KVMI_LKVM_HS_HELLO, &h, sizeof(h)) ||
	    h.magic != KVMI_LKVM_HS_MAGIC ||
	    h.version != KVMI_LKVM_HS_VERSION || h.padding1 || h.padding2)
		return -EPROTO;
	memcpy(hs->nonce_vmm, h.nonce, sizeof(hs->nonce_vmm));
	hs->step = HS_TOOL_HELLO_OK;
	return 0;
}

ssize_t kvmi_hs_auth(struct kvmi_hs *hs,
		     const uint8_t nonce[KVMI_LKVM_NONCE_SIZE], void *buf,
		     size_t cap)
{
	struct kvmi_lkvm_hs_auth a;
	ssize_t n;

	if (hs->step != HS_TOOL_HELLO_OK)
		return -EINVAL;
	memcpy(hs->nonce_tool, nonce, sizeof(hs->nonce_tool));
	memcpy(a.nonce, nonce, sizeof(a.nonce));
	hs_mac(hs, LABEL_TOOL, NULL, 0, a.mac);
	n = hs_put(buf, cap, KVMI_LKVM_HS_AUTH, &a, sizeof(a));
	if (n > 0)
		hs->step = HS_TOOL_AUTH_SENT;
	return n;
}

int kvmi_hs_check_welcome(struct kvmi_hs *hs, const void *msg, size_t len,
			  struct kvmi_guest *info)
{
	struct kvmi_lkvm_hs_welcome w;
	uint8_t want[KVMI_LKVM_MAC_SIZE];
	uint8_t none;
	int ok;

	if (hs->step != HS_TOOL_AUTH_SENT)
		return -EPROTO;
	if (!hs_take(msg, len, KVMI_LKVM_HS_REJECT, &none, 0))
		return -EACCES;
	if (hs_take(msg, len, KVMI_LKVM_HS_WELCOME, &w, sizeof(w)) ||
	    w.padding)
		return -EPROTO;
	hs_mac(hs, LABEL_VMM, (const uint8_t *)&w + sizeof(w.mac),
	       sizeof(w) - sizeof(w.mac), want);
	ok = memeql_sec(want, w.mac, sizeof(want));
	explicit_bzero(want, sizeof(want));
	if (!ok)
		return -EACCES;
	if (w.version != KVMI_VERSION || w.max_msg_size < KVMI_PAGE_SIZE ||
	    w.max_msg_size > KVMI_MAX_MSG_SIZE)
		return -EPROTO;
	memset(info, 0, sizeof(*info));
	memcpy(info->uuid, w.uuid, sizeof(info->uuid));
	info->features = w.features;
	info->version = w.version;
	info->max_msg_size = w.max_msg_size;
	info->vcpu_count = w.vcpu_count;
	hs->step = HS_DONE;
	return 0;
}
