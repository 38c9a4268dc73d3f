/* SPDX-License-Identifier: GPL-2.0 */
/*
 * libkvmi-client: what an introspection tool links (build/libkvmi.a, with
 * -lnettle) to talk to a guest's lkvm over the KVMI protocol
 * (include/kvmi/kvmi.h, docs/kvmi.md).
 *
 * The tool either listens and the VMM connects to it (as KVMI's design
 * has it: `lkvm run --introspect connect=PATH,cookie=FILE`), or connects
 * to a VMM that listens (`--introspect listen=PATH,...`). Either way the
 * two authenticate each other with the shared cookie before anything
 * else is said, and the VMM then tells the guest's UUID and features.
 *
 * Return values: 0 on success, else negative. A refusal from the VMM is
 * -KVM_E* as it sent it (KVM_ENOSYS is 1000, the others equal errno
 * values); a failure on this side is -errno. A transport or protocol
 * failure (the VMM went away, a malformed or unexpected message, a reply
 * that did not come in time) also ends the connection: kvmi_alive()
 * becomes false and every later call fails with -ENOTCONN.
 *
 * A connection is not thread-safe: one thread at a time, which can
 * interleave commands and event replies freely (events that arrive while
 * a command waits for its reply are queued for kvmi_wait_event()).
 */
#ifndef KVMI_CLIENT_H
#define KVMI_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvmi/kvmi.h"

struct kvmi_conn;

/* What the VMM said about the guest after the handshake. */
struct kvmi_guest {
	uint8_t uuid[16];
	uint64_t features;		/* KVMI_LKVM_F_* */
	uint32_t version;		/* KVMI_VERSION */
	uint32_t max_msg_size;
	uint32_t vcpu_count;
};

/* A listening Unix socket at path (mode 0600), for kvmi_accept(). */
int kvmi_listen(const char *path);
/*
 * Waits up to timeout_ms (-1: forever) for a VMM to connect to
 * listen_fd, then authenticates it with the cookie in cookie_file (which
 * only its owner may read). -EACCES: the VMM refused our cookie, or
 * proved no knowledge of it.
 */
int kvmi_accept(int listen_fd, const char *cookie_file, int timeout_ms,
		struct kvmi_conn **conn);
/* Connects to a VMM listening at path, then as kvmi_accept(). */
int kvmi_connect(const char *path, const char *cookie_file, int timeout_ms,
		 struct kvmi_conn **conn);
/* The handshake over a connected stream socket, which conn then owns
 * (closed on failure too). */
int kvmi_open_fd(int fd, const char *cookie_file, int timeout_ms,
		 struct kvmi_conn **conn);
/* Same, with the cookie's bytes rather than its file. */
int kvmi_open_fd_cookie(int fd, const void *cookie, size_t cookie_len,
			int timeout_ms, struct kvmi_conn **conn);
void kvmi_close(struct kvmi_conn *conn);

const struct kvmi_guest *kvmi_guest(const struct kvmi_conn *conn);
/*
 * The socket, to poll() for readability next to other work. Messages
 * the library has read already (events that came while a command
 * waited, or in the same piece as a reply) do not show there: take them
 * with kvmi_wait_event(conn, &ev, 0) until -ETIMEDOUT before poll().
 */
int kvmi_fd(const struct kvmi_conn *conn);
bool kvmi_alive(const struct kvmi_conn *conn);
/* How long a command waits for its reply (default 10000 ms; -1: forever). */
void kvmi_set_timeout(struct kvmi_conn *conn, int timeout_ms);
/*
 * Bounded polling: kvmi_wait_event() looks at the socket again for up
 * to max_us (default 50; adaptive below that, docs/kvmi.md "Polling")
 * before it sleeps, which saves a wake-up when events come within
 * microseconds of each other, at the cost of that much CPU time per
 * wait at most. Waits for a command's reply never poll. 0: never poll.
 */
void kvmi_set_poll(struct kvmi_conn *conn, unsigned int max_us);

/*
 * Any command: args after the vCPU header (vcpu >= 0 for KVMI_VCPU_*
 * commands, -1 otherwise). The reply's data goes to reply: exactly
 * reply_cap bytes when reply_len is NULL, else at most reply_cap, with
 * *reply_len set.
 */
int kvmi_command(struct kvmi_conn *conn, uint16_t id, int vcpu,
		 const void *args, size_t args_len, void *reply,
		 size_t reply_cap, size_t *reply_len);

int kvmi_get_version(struct kvmi_conn *conn, uint32_t *version,
		     uint32_t *max_msg_size);
/* 0, -KVM_ENOENT (unsupported) or -KVM_EPERM (disallowed). */
int kvmi_check_command(struct kvmi_conn *conn, uint16_t id);
int kvmi_check_event(struct kvmi_conn *conn, uint16_t id);
int kvmi_get_vm_info(struct kvmi_conn *conn, uint32_t *vcpu_count);
int kvmi_control_vm_events(struct kvmi_conn *conn, uint16_t event,
			   bool enable);
/* Any length; split in page-bounded requests. */
int kvmi_read_physical(struct kvmi_conn *conn, uint64_t gpa, void *buf,
		       size_t len);
int kvmi_write_physical(struct kvmi_conn *conn, uint64_t gpa,
			const void *buf, size_t len);
int kvmi_pause_vcpu(struct kvmi_conn *conn, uint16_t vcpu, bool wait);
int kvmi_control_cleanup(struct kvmi_conn *conn, bool enable);
/* access[i] (KVMI_PAGE_ACCESS_*) for the page holding gpa[i]; split in
 * as many messages as needed. */
int kvmi_set_page_access(struct kvmi_conn *conn, const uint64_t *gpa,
			 const uint8_t *access, unsigned int count);

int kvmi_get_vcpu_info(struct kvmi_conn *conn, uint16_t vcpu,
		       uint64_t *tsc_speed);
int kvmi_control_vcpu_events(struct kvmi_conn *conn, uint16_t vcpu,
			     uint16_t event, bool enable);
/* msrs[i].index in, msrs[i].data out; any of regs, sregs, mode may be
 * NULL. */
int kvmi_get_registers(struct kvmi_conn *conn, uint16_t vcpu,
		       struct kvm_regs *regs, struct kvm_sregs *sregs,
		       struct kvm_msr_entry *msrs, unsigned int nmsrs,
		       uint32_t *mode);
/* Only while the vCPU waits for the reply to one of its events. */
int kvmi_set_registers(struct kvmi_conn *conn, uint16_t vcpu,
		       const struct kvm_regs *regs);
int kvmi_get_cpuid(struct kvmi_conn *conn, uint16_t vcpu, uint32_t function,
		   uint32_t index, struct kvmi_vcpu_get_cpuid_reply *out);
int kvmi_inject_exception(struct kvmi_conn *conn, uint16_t vcpu, uint8_t nr,
			  uint32_t error_code, uint64_t address);
int kvmi_get_xcr(struct kvmi_conn *conn, uint16_t vcpu, uint8_t xcr,
		 uint64_t *value);
int kvmi_get_xsave(struct kvmi_conn *conn, uint16_t vcpu,
		   struct kvm_xsave *xsave);
int kvmi_control_msr(struct kvmi_conn *conn, uint16_t vcpu, uint32_t msr,
		     bool enable);
int kvmi_control_singlestep(struct kvmi_conn *conn, uint16_t vcpu,
			    bool enable);
/* lkvm: a hardware execution breakpoint at gva on every vCPU. */
int kvmi_set_breakpoint(struct kvmi_conn *conn, uint64_t gva, bool enable);
/* *gpa is ~0 when gva is not mapped. */
int kvmi_translate_gva(struct kvmi_conn *conn, uint16_t vcpu, uint64_t gva,
		       uint64_t *gpa);

/* ---- guest memory, mapped (KVMI_LKVM_VM_MAP_MEMORY) ---------------------- */

struct kvmi_memmap {
	void *base;			/* the whole file, mapped shared */
	uint64_t file_size;
	bool writable;
	unsigned int count;
	struct kvmi_lkvm_mem_region regions[KVMI_LKVM_MAX_MEM_REGIONS];
};

/* Maps the guest's RAM (read-only unless writable, and the VMM agrees). */
int kvmi_map_memory(struct kvmi_conn *conn, bool writable,
		    struct kvmi_memmap *map);
void kvmi_unmap_memory(struct kvmi_memmap *map);
/* A pointer to [gpa, gpa + len) when it lies in one RAM region, else NULL. */
void *kvmi_memmap_ptr(const struct kvmi_memmap *map, uint64_t gpa,
		      uint64_t len);

/* ---- events -------------------------------------------------------------- */

/* One event, parsed and copied out of its message. */
struct kvmi_event {
	struct kvmi_msg_hdr hdr;
	uint16_t event;			/* KVMI_VM_EVENT_*, KVMI_VCPU_EVENT_* */
	bool is_vcpu;			/* false: a VM event, with no reply */
	uint16_t vcpu;
	struct kvmi_vcpu_event_arch arch;	/* vCPU events */
	union {
		struct kvmi_vcpu_event_breakpoint breakpoint;
		struct kvmi_vcpu_event_cr cr;
		struct kvmi_vcpu_event_trap trap;
		struct kvmi_vcpu_event_xsetbv xsetbv;
		struct kvmi_vcpu_event_descriptor descriptor;
		struct kvmi_vcpu_event_msr msr;
		struct kvmi_vcpu_event_pf pf;
		struct kvmi_vcpu_event_singlestep singlestep;
		struct kvmi_lkvm_vcpu_event_agent agent;
		uint8_t raw[24];
	} data;
};

/* The next event, queued or read, within timeout_ms (-1: forever). */
int kvmi_wait_event(struct kvmi_conn *conn, struct kvmi_event *ev,
		    int timeout_ms);
/*
 * lkvm's event channel (docs/kvmi.md): vCPU events and their replies
 * through memory shared with the VMM rather than the socket, a shorter
 * round trip. kvmi_wait_event() asks for it by itself the first time,
 * when the VMM offers it (KVMI_LKVM_F_EVENT_CHANNEL); VM events and
 * commands stay on the socket. With the channel on, events do not make
 * kvmi_fd() readable: a tool that waits for them with its own poll()
 * keeps them on the socket with kvmi_set_event_channel(conn, false)
 * before its first wait. on: asks for it now (0, or the VMM's refusal).
 * false once it is on: -EBUSY (it lasts as long as the connection).
 */
int kvmi_set_event_channel(struct kvmi_conn *conn, bool on);
/* Whether events come through the channel. */
bool kvmi_event_channel(const struct kvmi_conn *conn);
/*
 * Answers a vCPU event with KVMI_EVENT_ACTION_*; data is what the event's
 * reply carries after struct kvmi_vcpu_event_reply (the u64 new value for
 * MSR and CR events, nothing otherwise).
 */
int kvmi_reply_event(struct kvmi_conn *conn, const struct kvmi_event *ev,
		     uint8_t action, const void *data, size_t len);

/* ---- names --------------------------------------------------------------- */

/* "KVMI_VM_READ_PHYSICAL", or NULL for an unknown id. */
const char *kvmi_cmd_name(uint16_t id);
const char *kvmi_event_name(uint16_t id);
/* "KVM_EINVAL" for -KVM_EINVAL, else strerror() of -err. */
const char *kvmi_strerror(int err);

#endif
