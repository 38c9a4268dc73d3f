/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * lkvm's KVMI wire protocol: the message ids and structure layouts of the
 * KVM introspection interface (kvmi.rst, version 1, as last proposed for
 * Linux), which lkvm serves from user space, plus lkvm's own additions
 * (the handshake, the guest-memory map, the agent doorbell), all with ids
 * of their own. docs/kvmi.md describes every message.
 *
 * Every message is a struct kvmi_msg_hdr followed by `size` bytes, in the
 * host's byte order. A command's reply repeats its id and seq and starts
 * with struct kvmi_error_code; the command's data follows only when err
 * is 0. vCPU commands start with struct kvmi_vcpu_hdr. Every padding
 * field must be zero.
 *
 * This header stands alone (Linux uapi headers only), so tools can use it
 * without the rest of lkvm.
 */
#ifndef KVMI_KVMI_H
#define KVMI_KVMI_H

#include <linux/types.h>
#include <linux/kvm.h>
#include <linux/kvm_para.h>

enum {
	KVMI_VERSION = 0x00000001
};

/*
 * Error codes, negated in kvmi_error_code.err. KVM's uapi gives the first
 * ones; the KVMI proposal adds the rest with the same values as Linux's
 * errno on x86 (written out, since errno values are not portable).
 */
#ifndef KVM_ENOSYS
#define KVM_ENOSYS	1000
#endif
#ifndef KVM_EFAULT
#define KVM_EFAULT	14
#endif
#ifndef KVM_EINVAL
#define KVM_EINVAL	22
#endif
#ifndef KVM_E2BIG
#define KVM_E2BIG	7
#endif
#ifndef KVM_EPERM
#define KVM_EPERM	1
#endif
#ifndef KVM_EOPNOTSUPP
#define KVM_EOPNOTSUPP	95
#endif
#ifndef KVM_ENOENT
#define KVM_ENOENT	2
#endif
#ifndef KVM_EAGAIN
#define KVM_EAGAIN	11
#endif
#ifndef KVM_ENOMEM
#define KVM_ENOMEM	12
#endif
#ifndef KVM_EBUSY
#define KVM_EBUSY	16
#endif

/* VM-wide messages have even ids, vCPU messages odd ones. */
#define KVMI_VM_MESSAGE_ID(id)		((id) << 1)
#define KVMI_VCPU_MESSAGE_ID(id)	(((id) << 1) | 1)

enum {
	KVMI_VM_EVENT			= KVMI_VM_MESSAGE_ID(0),

	KVMI_GET_VERSION		= KVMI_VM_MESSAGE_ID(1),
	KVMI_VM_CHECK_COMMAND		= KVMI_VM_MESSAGE_ID(2),
	KVMI_VM_CHECK_EVENT		= KVMI_VM_MESSAGE_ID(3),
	KVMI_VM_GET_INFO		= KVMI_VM_MESSAGE_ID(4),
	KVMI_VM_CONTROL_EVENTS		= KVMI_VM_MESSAGE_ID(5),
	KVMI_VM_READ_PHYSICAL		= KVMI_VM_MESSAGE_ID(6),
	KVMI_VM_WRITE_PHYSICAL		= KVMI_VM_MESSAGE_ID(7),
	KVMI_VM_PAUSE_VCPU		= KVMI_VM_MESSAGE_ID(8),
	KVMI_VM_CONTROL_CLEANUP		= KVMI_VM_MESSAGE_ID(9),
	KVMI_VM_SET_PAGE_ACCESS		= KVMI_VM_MESSAGE_ID(10),

	KVMI_NEXT_VM_MESSAGE
};

enum {
	KVMI_VCPU_EVENT			= KVMI_VCPU_MESSAGE_ID(0),

	KVMI_VCPU_GET_INFO		= KVMI_VCPU_MESSAGE_ID(1),
	KVMI_VCPU_CONTROL_EVENTS	= KVMI_VCPU_MESSAGE_ID(2),
	KVMI_VCPU_GET_REGISTERS		= KVMI_VCPU_MESSAGE_ID(3),
	KVMI_VCPU_SET_REGISTERS		= KVMI_VCPU_MESSAGE_ID(4),
	KVMI_VCPU_GET_CPUID		= KVMI_VCPU_MESSAGE_ID(5),
	KVMI_VCPU_CONTROL_CR		= KVMI_VCPU_MESSAGE_ID(6),
	KVMI_VCPU_INJECT_EXCEPTION	= KVMI_VCPU_MESSAGE_ID(7),
	KVMI_VCPU_GET_XCR		= KVMI_VCPU_MESSAGE_ID(8),
	KVMI_VCPU_GET_XSAVE		= KVMI_VCPU_MESSAGE_ID(9),
	KVMI_VCPU_SET_XSAVE		= KVMI_VCPU_MESSAGE_ID(10),
	KVMI_VCPU_GET_MTRR_TYPE		= KVMI_VCPU_MESSAGE_ID(11),
	KVMI_VCPU_CONTROL_MSR		= KVMI_VCPU_MESSAGE_ID(12),
	KVMI_VCPU_CONTROL_SINGLESTEP	= KVMI_VCPU_MESSAGE_ID(13),
	KVMI_VCPU_TRANSLATE_GVA		= KVMI_VCPU_MESSAGE_ID(14),

	KVMI_NEXT_VCPU_MESSAGE
};

/*
 * lkvm's own messages, far above the proposal's ids so that a later
 * KVMI command never collides with them.
 */
enum {
	/* Before authentication only (see docs/kvmi.md, "Handshake"). */
	KVMI_LKVM_HS_HELLO		= KVMI_VM_MESSAGE_ID(0x300),
	KVMI_LKVM_HS_AUTH		= KVMI_VM_MESSAGE_ID(0x301),
	KVMI_LKVM_HS_WELCOME		= KVMI_VM_MESSAGE_ID(0x302),
	KVMI_LKVM_HS_REJECT		= KVMI_VM_MESSAGE_ID(0x303),

	/* Hands the tool a file descriptor of guest RAM (SCM_RIGHTS). */
	KVMI_LKVM_VM_MAP_MEMORY		= KVMI_VM_MESSAGE_ID(0x200),
	/* A hardware execution breakpoint on every vCPU. */
	KVMI_LKVM_VM_SET_BREAKPOINT	= KVMI_VM_MESSAGE_ID(0x201),
	/* vCPU events through shared memory (SCM_RIGHTS). */
	KVMI_LKVM_VM_EVENT_CHANNEL	= KVMI_VM_MESSAGE_ID(0x202),
};

#define KVMI_VM_EVENT_ID(id)	((id) << 1)
#define KVMI_VCPU_EVENT_ID(id)	(((id) << 1) | 1)

enum {
	KVMI_VM_EVENT_UNHOOK		= KVMI_VM_EVENT_ID(0),

	KVMI_NEXT_VM_EVENT
};

enum {
	KVMI_VCPU_EVENT_PAUSE		= KVMI_VCPU_EVENT_ID(0),
	KVMI_VCPU_EVENT_HYPERCALL	= KVMI_VCPU_EVENT_ID(1),
	KVMI_VCPU_EVENT_BREAKPOINT	= KVMI_VCPU_EVENT_ID(2),
	KVMI_VCPU_EVENT_CR		= KVMI_VCPU_EVENT_ID(3),
	KVMI_VCPU_EVENT_TRAP		= KVMI_VCPU_EVENT_ID(4),
	KVMI_VCPU_EVENT_XSETBV		= KVMI_VCPU_EVENT_ID(5),
	KVMI_VCPU_EVENT_DESCRIPTOR	= KVMI_VCPU_EVENT_ID(6),
	KVMI_VCPU_EVENT_MSR		= KVMI_VCPU_EVENT_ID(7),
	KVMI_VCPU_EVENT_PF		= KVMI_VCPU_EVENT_ID(8),
	KVMI_VCPU_EVENT_SINGLESTEP	= KVMI_VCPU_EVENT_ID(9),

	KVMI_NEXT_VCPU_EVENT,

	/*
	 * lkvm: the guest agent rang the doorbell (replaces HYPERCALL).
	 * Below 256, as an event reply names its event in one byte.
	 */
	KVMI_LKVM_VCPU_EVENT_AGENT	= KVMI_VCPU_EVENT_ID(0x70),
};

enum {
	KVMI_EVENT_ACTION_CONTINUE	= 0,
	KVMI_EVENT_ACTION_RETRY		= 1,
	KVMI_EVENT_ACTION_CRASH		= 2,
};

enum {
	KVMI_PAGE_ACCESS_R		= 1 << 0,
	KVMI_PAGE_ACCESS_W		= 1 << 1,
	KVMI_PAGE_ACCESS_X		= 1 << 2,
};

struct kvmi_msg_hdr {
	__u16 id;
	__u16 size;		/* bytes after this header */
	__u32 seq;
};

/*
 * The largest `size` either side accepts: a 4 KiB read or write with its
 * header fits, as does an XSAVE area. A larger one closes the connection.
 */
#define KVMI_MAX_MSG_SIZE	(4096 * 2 - sizeof(struct kvmi_msg_hdr))

struct kvmi_error_code {
	__s32 err;
	__u32 padding;
};

struct kvmi_get_version_reply {
	__u32 version;
	__u32 max_msg_size;
};

struct kvmi_vm_check_command {
	__u16 id;
	__u16 padding1;
	__u32 padding2;
};

struct kvmi_vm_check_event {
	__u16 id;
	__u16 padding1;
	__u32 padding2;
};

struct kvmi_vm_get_info_reply {
	__u32 vcpu_count;
	__u32 padding[3];
};

struct kvmi_vm_control_events {
	__u16 event_id;
	__u8 enable;
	__u8 padding1;
	__u32 padding2;
};

#define KVMI_PAGE_SIZE		4096u

struct kvmi_vm_read_physical {
	__u64 gpa;
	__u16 size;		/* 1..4096, within one page */
	__u16 padding1;
	__u32 padding2;
};

struct kvmi_vm_write_physical {
	__u64 gpa;
	__u16 size;		/* 1..4096, within one page */
	__u16 padding1;
	__u32 padding2;
	__u8 data[];
};

struct kvmi_vm_pause_vcpu {
	__u16 vcpu;
	__u8 wait;
	__u8 padding1;
	__u32 padding2;
};

struct kvmi_vm_control_cleanup {
	__u8 enable;
	__u8 padding[7];
};

struct kvmi_page_access_entry {
	__u64 gpa;
	__u8 access;		/* KVMI_PAGE_ACCESS_* */
	__u8 padding[7];
};

struct kvmi_vm_set_page_access {
	__u16 count;
	__u16 padding1;
	__u32 padding2;
	struct kvmi_page_access_entry entries[];
};

struct kvmi_vcpu_hdr {
	__u16 vcpu;
	__u16 padding1;
	__u32 padding2;
};

struct kvmi_vcpu_get_info_reply {
	__u64 tsc_speed;	/* Hz, 0 when unknown */
};

struct kvmi_vcpu_control_events {
	__u16 event_id;
	__u8 enable;
	__u8 padding1;
	__u32 padding2;
};

struct kvmi_vcpu_get_registers {
	__u16 nmsrs;
	__u16 padding1;
	__u32 padding2;
	__u32 msrs_idx[];
};

struct kvmi_vcpu_get_registers_reply {
	__u32 mode;		/* 2, 4 or 8 (bytes) */
	__u32 padding;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_msrs msrs;	/* nmsrs entries follow */
};

/* KVMI_VCPU_SET_REGISTERS: struct kvmi_vcpu_hdr, then struct kvm_regs. */

struct kvmi_vcpu_get_cpuid {
	__u32 function;
	__u32 index;
};

struct kvmi_vcpu_get_cpuid_reply {
	__u32 eax;
	__u32 ebx;
	__u32 ecx;
	__u32 edx;
};

struct kvmi_vcpu_control_cr {
	__u8 cr;		/* 0, 3 or 4 */
	__u8 enable;
	__u16 padding1;
	__u32 padding2;
};

struct kvmi_vcpu_inject_exception {
	__u8 nr;
	__u8 padding1;
	__u16 padding2;
	__u32 error_code;
	__u64 address;
};

struct kvmi_vcpu_get_xcr {
	__u8 xcr;		/* 0 */
	__u8 padding[7];
};

struct kvmi_vcpu_get_xcr_reply {
	__u64 value;
};

/* KVMI_VCPU_GET_XSAVE replies, and KVMI_VCPU_SET_XSAVE takes, a struct
 * kvm_xsave (its size is the message's). */

struct kvmi_vcpu_get_mtrr_type {
	__u64 gpa;
};

struct kvmi_vcpu_get_mtrr_type_reply {
	__u8 type;
	__u8 padding[7];
};

struct kvmi_vcpu_control_msr {
	__u8 enable;
	__u8 padding1;
	__u16 padding2;
	__u32 msr;		/* 0..0x1fff or 0xc0000000..0xc0001fff */
};

struct kvmi_vcpu_control_singlestep {
	__u8 enable;
	__u8 padding[7];
};

struct kvmi_vcpu_translate_gva {
	__u64 gva;
};

struct kvmi_vcpu_translate_gva_reply {
	__u64 gpa;		/* ~0 when the address is not mapped */
};

/* ---- lkvm: map guest memory ---------------------------------------------- */

struct kvmi_lkvm_vm_map_memory {
	__u8 writable;		/* 0: the descriptor is read-only */
	__u8 padding[7];
};

struct kvmi_lkvm_mem_region {
	__u64 gpa;
	__u64 size;
	__u64 offset;		/* in the passed file */
};

/*
 * The reply carries one file descriptor (SCM_RIGHTS) on its first byte;
 * `count` regions follow, sorted by gpa, each inside [0, file_size).
 */
struct kvmi_lkvm_vm_map_memory_reply {
	__u64 file_size;
	__u16 count;
	__u8 writable;
	__u8 padding1;
	__u32 padding2;
	struct kvmi_lkvm_mem_region regions[];
};

#define KVMI_LKVM_MAX_MEM_REGIONS	32

/* ---- lkvm: hardware breakpoints ------------------------------------------ */

/*
 * Sets (enable 1) or removes a breakpoint at the guest virtual address
 * gva, in the debug registers of every vCPU: a vCPU that executes the
 * instruction there sends KVMI_VCPU_EVENT_BREAKPOINT (insn_len 0) before
 * it runs. For guests where int3 cannot be intercepted (at most 4 in all,
 * shared with a debugger). Needs the BREAKPOINT event allowed.
 */
struct kvmi_lkvm_vm_set_breakpoint {
	__u64 gva;
	__u8 enable;
	__u8 padding[7];
};

/* ---- lkvm: the event channel --------------------------------------------- */

/*
 * vCPU events and their replies through memory both ends map, instead of
 * the socket (docs/kvmi.md, "The event channel"). enable 1 asks for it;
 * 0 is accepted while it is off (-KVM_EBUSY once on: it lasts as long as
 * the connection). The reply carries two descriptors (SCM_RIGHTS): the
 * channel's memory (map file_size bytes MAP_SHARED, read-write) and the
 * tool's end of a datagram socket pair, the doorbell, on which each side
 * wakes the other when the other said it sleeps. Commands, their
 * replies and VM events stay on the socket.
 */
struct kvmi_lkvm_vm_event_channel {
	__u8 enable;
	__u8 padding[7];
};

struct kvmi_lkvm_vm_event_channel_reply {
	__u32 file_size;
	__u32 slot_offset;	/* vCPU i's slot: slot_offset + i * slot_size */
	__u32 slot_size;
	__u16 nslots;		/* one per vCPU */
	__u16 padding;
};

/* At offset 0 of the channel. */
struct kvmi_lkvm_chan_hdr {
	/* The tool: 1 while it sleeps on the doorbell (the VMM rings it
	 * after it posts an event), 0 while it looks at the slots. */
	__u32 tool_sleeping;
	__u32 padding[15];
};

/* kvmi_lkvm_chan_slot.state */
enum {
	KVMI_LKVM_SLOT_IDLE	= 0,
	KVMI_LKVM_SLOT_EVENT	= 1,	/* VMM: an event, event_len bytes */
	KVMI_LKVM_SLOT_TAKEN	= 2,	/* tool: it has read the event */
	KVMI_LKVM_SLOT_REPLY	= 3,	/* tool: the reply, reply_len bytes */
};

#define KVMI_LKVM_SLOT_EVENT_MAX	768
#define KVMI_LKVM_SLOT_REPLY_MAX	192

/*
 * One vCPU's slot. event and reply hold whole messages, exactly as on the
 * socket (struct kvmi_msg_hdr first). Each side writes its message, then
 * state with release ordering; the other reads state with acquire.
 */
struct kvmi_lkvm_chan_slot {
	__u32 state;		/* KVMI_LKVM_SLOT_* */
	/* The VMM: 1 once the vCPU stopped looking and sleeps: the tool
	 * rings the doorbell after it writes a reply. */
	__u32 vcpu_waiting;
	__u32 event_len;
	__u32 reply_len;
	__u8 padding[48];
	__u8 event[KVMI_LKVM_SLOT_EVENT_MAX];
	__u8 reply[KVMI_LKVM_SLOT_REPLY_MAX];
};

/* ---- events -------------------------------------------------------------- */

/* Starts every event's data, VM or vCPU. */
struct kvmi_event_hdr {
	__u16 event;
	__u16 padding[3];
};

struct kvmi_vcpu_event_arch {
	__u8 mode;		/* 2, 4 or 8 */
	__u8 padding[7];
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct {
		__u64 sysenter_cs;
		__u64 sysenter_esp;
		__u64 sysenter_eip;
		__u64 efer;
		__u64 star;
		__u64 lstar;
		__u64 cstar;
		__u64 pat;
		__u64 shadow_gs;
	} msrs;
};

/* After kvmi_event_hdr in a vCPU event; size is sizeof(this struct). */
struct kvmi_vcpu_event {
	__u16 size;
	__u16 vcpu;
	__u32 padding;
	struct kvmi_vcpu_event_arch arch;
};

/* A vCPU event's reply: struct kvmi_vcpu_hdr, this, then event data. */
struct kvmi_vcpu_event_reply {
	__u8 action;		/* KVMI_EVENT_ACTION_* */
	__u8 event;		/* the event's id, as sent */
	__u16 padding1;
	__u32 padding2;
};

struct kvmi_vcpu_event_breakpoint {
	__u64 gpa;
	__u8 insn_len;
	__u8 padding[7];
};

struct kvmi_vcpu_event_cr {
	__u8 cr;
	__u8 padding[7];
	__u64 old_value;
	__u64 new_value;
};

struct kvmi_vcpu_event_cr_reply {
	__u64 new_val;
};

struct kvmi_vcpu_event_trap {
	__u8 nr;
	__u8 padding1;
	__u16 padding2;
	__u32 error_code;
	__u64 address;
};

struct kvmi_vcpu_event_xsetbv {
	__u8 xcr;
	__u8 padding[7];
	__u64 old_value;
	__u64 new_value;
};

enum {
	KVMI_DESC_IDTR	= 1,
	KVMI_DESC_GDTR	= 2,
	KVMI_DESC_LDTR	= 3,
	KVMI_DESC_TR	= 4,
};

struct kvmi_vcpu_event_descriptor {
	__u8 descriptor;
	__u8 write;
	__u8 padding[6];
};

struct kvmi_vcpu_event_msr {
	__u32 msr;
	__u32 padding;
	__u64 old_value;
	__u64 new_value;
};

struct kvmi_vcpu_event_msr_reply {
	__u64 new_val;		/* what the guest's WRMSR writes */
};

struct kvmi_vcpu_event_pf {
	__u64 gva;		/* ~0 when unknown */
	__u64 gpa;
	__u8 access;		/* KVMI_PAGE_ACCESS_* of the faulting access */
	__u8 padding1;
	__u16 padding2;
	__u32 padding3;
};

struct kvmi_vcpu_event_singlestep {
	__u8 failed;
	__u8 padding[7];
};

/*
 * lkvm: the guest agent's doorbell. A 32-bit OUT to this port from the
 * guest sends KVMI_LKVM_VCPU_EVENT_AGENT with the value written; the
 * arguments are in the event's registers, and the tool answers through
 * KVMI_VCPU_SET_REGISTERS before its reply.
 */
#define KVMI_LKVM_AGENT_PORT	0x0db0

struct kvmi_lkvm_vcpu_event_agent {
	__u32 value;
	__u32 padding;
};

/* ---- lkvm: the handshake ------------------------------------------------- */

#define KVMI_LKVM_HS_MAGIC	0x494d564bu	/* "KVMI" in little-endian */
#define KVMI_LKVM_HS_VERSION	1
#define KVMI_LKVM_NONCE_SIZE	32
#define KVMI_LKVM_MAC_SIZE	32		/* HMAC-SHA-256 */

/* VMM -> tool, first. */
struct kvmi_lkvm_hs_hello {
	__u32 magic;		/* KVMI_LKVM_HS_MAGIC in the VMM's byte order */
	__u16 version;		/* KVMI_LKVM_HS_VERSION */
	__u16 padding1;
	__u64 padding2;
	__u8 nonce[KVMI_LKVM_NONCE_SIZE];
};

/* tool -> VMM: proves the tool knows the cookie. */
struct kvmi_lkvm_hs_auth {
	__u8 nonce[KVMI_LKVM_NONCE_SIZE];
	__u8 mac[KVMI_LKVM_MAC_SIZE];
};

/* Bits of kvmi_lkvm_hs_welcome.features. */
enum {
	KVMI_LKVM_F_MAP_MEMORY	= 1 << 0,	/* KVMI_LKVM_VM_MAP_MEMORY */
	KVMI_LKVM_F_AGENT	= 1 << 1,	/* the agent doorbell */
	KVMI_LKVM_F_SINGLESTEP	= 1 << 2,
	KVMI_LKVM_F_EVENT_CHANNEL = 1 << 3,	/* KVMI_LKVM_VM_EVENT_CHANNEL */
};

/* VMM -> tool: proves the VMM knows the cookie; describes the guest. */
struct kvmi_lkvm_hs_welcome {
	__u8 mac[KVMI_LKVM_MAC_SIZE];
	__u8 uuid[16];
	__u64 features;		/* KVMI_LKVM_F_* */
	__u32 version;		/* KVMI_VERSION */
	__u32 max_msg_size;	/* KVMI_MAX_MSG_SIZE */
	__u32 vcpu_count;
	__u32 padding;
};

/* KVMI_LKVM_HS_REJECT has no data: the VMM closes after it. */

#endif
