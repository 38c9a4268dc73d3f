/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The KVMI codec (kvm/kvmi-proto.c): what both ends of an introspection
 * connection share. Pure functions over buffers, no KVM and no sockets:
 * the validator of received messages, the builders of replies, events
 * and commands, and the handshake's computations. kvm/kvmi-io.c adds
 * the few socket and file helpers both ends need.
 *
 * The server in `lkvm run` uses it this way for each message it reads:
 *
 *	kvmi_parse(p, buf, len, &r)	< 0: close the connection
 *	r.kind == KVMI_REQ_COMMAND:
 *		r.error != 0		reply with r.error, do nothing else
 *		else			run the command, kvmi_reply_build()
 *	r.kind == KVMI_REQ_EVENT_REPLY:
 *		kvmi_event_reply_check(&pending[r.vcpu], &r) < 0: close
 *		else			the vCPU resumes with r.action
 *
 * Messages may sit anywhere in memory: every field is read with memcpy,
 * and what the server needs comes back copied in struct kvmi_req.
 */
#ifndef LKVM_KVMI_PROTO_H
#define LKVM_KVMI_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "kvmi/kvmi.h"
#include "kvmi/client.h"

/* ---- the message tables -------------------------------------------------- */

/*
 * Each command and event lkvm knows has a bit; sets of them (supported,
 * allowed) are masks of these bits. 0 for an unknown id.
 */
uint64_t kvmi_cmd_bit(uint16_t id);
uint64_t kvmi_event_bit(uint16_t id);
/* Every command or event the codec knows. */
uint64_t kvmi_all_cmds(void);
uint64_t kvmi_all_events(void);
/* Reply data size of a command when fixed, -1 when it varies or the id is
 * unknown. */
ssize_t kvmi_cmd_reply_size(uint16_t id);
/* Event data size after the event headers, -1 for an unknown event. */
ssize_t kvmi_event_data_size(uint16_t id);
/* Data size in the event's reply after struct kvmi_vcpu_event_reply. */
ssize_t kvmi_event_reply_size(uint16_t id);
/* The actions an event accepts, as bits 1 << KVMI_EVENT_ACTION_*. */
unsigned int kvmi_event_actions(uint16_t id);
/* Whether KVMI_VCPU_CONTROL_EVENTS (or _VM_ for VM events) switches it. */
bool kvmi_event_controllable(uint16_t id);

/* ---- the server side ----------------------------------------------------- */

/*
 * A connection's policy, set before the first message: what the VMM
 * implements, what the operator allows. Unsupported commands are answered
 * -KVM_ENOSYS, disallowed ones -KVM_EPERM (except the three always
 * allowed: KVMI_GET_VERSION and the two checks).
 */
struct kvmi_proto {
	unsigned int nvcpus;
	uint64_t cmd_supported, cmd_allowed;	/* kvmi_cmd_bit() masks */
	uint64_t ev_supported, ev_allowed;	/* kvmi_event_bit() masks */
	uint8_t access_supported;	/* bit a: access value a accepted */
	uint32_t seq;			/* the next event's, kvmi_next_seq() */
};

/*
 * Defaults: every command and event lkvm can serve on mainline KVM
 * (docs/kvmi.md lists them), all allowed; page access rwx and r-x.
 */
void kvmi_proto_init(struct kvmi_proto *p, unsigned int nvcpus);

/* The header of a message being read: 0, or -EMSGSIZE (close). */
int kvmi_check_hdr(const struct kvmi_msg_hdr *hdr);

enum kvmi_req_kind {
	KVMI_REQ_COMMAND,
	KVMI_REQ_EVENT_REPLY,
};

/* The fixed part of the commands that end with an array. */
struct kvmi_write_physical_head {
	__u64 gpa;
	__u16 size;
	__u16 padding1;
	__u32 padding2;
};

struct kvmi_set_page_access_head {
	__u16 count;
	__u16 padding1;
	__u32 padding2;
};

struct kvmi_get_registers_head {
	__u16 nmsrs;
	__u16 padding1;
	__u32 padding2;
};

/* Fixed-size arguments, copied (aligned) from the message. */
union kvmi_cmd_args {
	struct kvmi_vm_check_command check_command;
	struct kvmi_vm_check_event check_event;
	struct kvmi_vm_control_events vm_control_events;
	struct kvmi_vm_read_physical read_physical;
	struct kvmi_write_physical_head write_physical;	/* data: tail */
	struct kvmi_vm_pause_vcpu pause_vcpu;
	struct kvmi_vm_control_cleanup control_cleanup;
	struct kvmi_set_page_access_head set_page_access; /* entries: tail */
	struct kvmi_vcpu_control_events vcpu_control_events;
	struct kvmi_get_registers_head get_registers;	/* indexes: tail */
	struct kvm_regs set_registers;
	struct kvmi_vcpu_get_cpuid get_cpuid;
	struct kvmi_vcpu_control_cr control_cr;
	struct kvmi_vcpu_inject_exception inject_exception;
	struct kvmi_vcpu_get_xcr get_xcr;
	struct kvmi_vcpu_get_mtrr_type get_mtrr_type;
	struct kvmi_vcpu_control_msr control_msr;
	struct kvmi_vcpu_control_singlestep control_singlestep;
	struct kvmi_vcpu_translate_gva translate_gva;
	struct kvmi_lkvm_vm_map_memory map_memory;
	struct kvmi_lkvm_vm_set_breakpoint set_breakpoint;
	struct kvmi_lkvm_vm_event_channel event_channel;
	struct kvmi_vcpu_event_msr_reply msr_reply;	/* event replies */
	struct kvmi_vcpu_event_cr_reply cr_reply;
};

struct kvmi_req {
	struct kvmi_msg_hdr hdr;
	enum kvmi_req_kind kind;
	/* Commands: 0 to run it, else the -KVM_E* to reply with. */
	int error;
	bool has_vcpu;
	uint16_t vcpu;		/* < nvcpus when has_vcpu */
	/*
	 * The arguments after the vCPU header, or an event reply's data after
	 * struct kvmi_vcpu_event_reply: args_len bytes at args (in the
	 * message, maybe unaligned), the fixed part copied in a, and what
	 * follows it (write data, page-access entries, MSR indexes, an XSAVE
	 * area) at args_tail.
	 */
	const uint8_t *args;
	size_t args_len;
	union kvmi_cmd_args a;
	const uint8_t *args_tail;
	size_t args_tail_len;
	/* Event replies. */
	uint8_t action;
	uint8_t event;
};

/*
 * Validates one whole received message (header and `size` bytes). Returns
 * 0 with r filled, or a negative errno for what ends the connection:
 * -EPROTO for a truncated or overlong message or a malformed event reply,
 * -EMSGSIZE for a size over KVMI_MAX_MSG_SIZE.
 */
int kvmi_parse(const struct kvmi_proto *p, const void *msg, size_t len,
	       struct kvmi_req *r);

/* The answers of KVMI_VM_CHECK_COMMAND and _EVENT: 0, -KVM_ENOENT for
 * unsupported or unknown, -KVM_EPERM for disallowed. */
int kvmi_proto_check_command(const struct kvmi_proto *p, uint16_t id);
int kvmi_proto_check_event(const struct kvmi_proto *p, uint16_t id);
/* Whether an event may be sent at all (supported and allowed). */
bool kvmi_proto_event_allowed(const struct kvmi_proto *p, uint16_t id);

/* A reply's first 16 bytes; the data (none when err != 0) follows. */
struct kvmi_reply_prefix {
	struct kvmi_msg_hdr hdr;
	struct kvmi_error_code ec;
};

/*
 * Fills the prefix of r's reply. -EINVAL when data_len is not the
 * command's fixed reply size (err == 0) or exceeds the maximum.
 */
int kvmi_reply_prefix(struct kvmi_reply_prefix *pre, const struct kvmi_req *r,
		      int err, size_t data_len);
/* The whole reply in buf; returns its length or -EINVAL, -ENOSPC. */
ssize_t kvmi_reply_build(void *buf, size_t cap, const struct kvmi_req *r,
			 int err, const void *data, size_t data_len);

/* An event in flight on one vCPU, waiting for its reply. */
struct kvmi_pending {
	bool active;
	uint16_t vcpu;
	uint16_t event;
	uint32_t seq;
};

/* A fresh sequence number for an event (thread-safe). */
uint32_t kvmi_next_seq(struct kvmi_proto *p);
/*
 * A vCPU event: data is the event's own structure (exactly its size).
 * Fills *pend for kvmi_event_reply_check(). Returns the length or
 * -EINVAL (unknown event, wrong data size), -ENOSPC.
 */
ssize_t kvmi_vcpu_event_build(void *buf, size_t cap, uint32_t seq,
			      uint16_t vcpu, uint16_t event,
			      const struct kvmi_vcpu_event_arch *arch,
			      const void *data, size_t data_len,
			      struct kvmi_pending *pend);
ssize_t kvmi_vm_event_build(void *buf, size_t cap, uint32_t seq,
			    uint16_t event);
/*
 * An event reply against the event it must answer: the same vCPU, seq
 * and event, an action the event accepts, the exact reply size. 0, or
 * -EPROTO (close the connection). The caller then clears pend->active.
 */
int kvmi_event_reply_check(const struct kvmi_pending *pend,
			   const struct kvmi_req *r);

/* ---- the tool side ------------------------------------------------------- */

/* A command message: vcpu >= 0 exactly for vCPU commands. */
ssize_t kvmi_cmd_build(void *buf, size_t cap, uint16_t id, uint32_t seq,
		       int vcpu, const void *args, size_t args_len);
struct kvmi_reply {
	int err;		/* the VMM's: 0 or -KVM_E* */
	const uint8_t *data;	/* in the message; none unless err is 0 */
	size_t len;
};
/*
 * The reply to command (id, seq): 0 with out filled, or -EPROTO for a
 * malformed one or one answering something else.
 */
int kvmi_reply_parse(const void *msg, size_t len, uint16_t id, uint32_t seq,
		     struct kvmi_reply *out);
/* Whether a message from the VMM is an event (else a reply). */
bool kvmi_msg_is_event(const void *msg, size_t len);
/* An event from the VMM: 0, or -EPROTO. */
int kvmi_event_parse(const void *msg, size_t len, struct kvmi_event *ev);
ssize_t kvmi_event_reply_build(void *buf, size_t cap,
			       const struct kvmi_event *ev, uint8_t action,
			       const void *data, size_t data_len);

/* ---- the handshake (docs/kvmi.md) ---------------------------------------- */

#define KVMI_COOKIE_MIN 16
#define KVMI_COOKIE_MAX 4096
#define KVMI_HS_MSG_MAX \
	(sizeof(struct kvmi_msg_hdr) + sizeof(struct kvmi_lkvm_hs_welcome))

struct kvmi_hs {
	uint8_t key[KVMI_COOKIE_MAX];
	size_t key_len;
	uint8_t nonce_vmm[KVMI_LKVM_NONCE_SIZE];
	uint8_t nonce_tool[KVMI_LKVM_NONCE_SIZE];
	int step;
};

/* -EINVAL when the cookie is shorter than KVMI_COOKIE_MIN or too long. */
int kvmi_hs_init(struct kvmi_hs *hs, const void *cookie, size_t len);
/* Forgets the cookie. */
void kvmi_hs_wipe(struct kvmi_hs *hs);

/* The VMM: hello (with a fresh random nonce), check the tool's answer,
 * then welcome, or reject and close. */
ssize_t kvmi_hs_hello(struct kvmi_hs *hs,
		      const uint8_t nonce[KVMI_LKVM_NONCE_SIZE], void *buf,
		      size_t cap);
/* 0; -EACCES for a wrong cookie or a replayed answer; -EPROTO. */
int kvmi_hs_check_auth(struct kvmi_hs *hs, const void *msg, size_t len);
ssize_t kvmi_hs_welcome(struct kvmi_hs *hs, const struct kvmi_guest *info,
			void *buf, size_t cap);
ssize_t kvmi_hs_reject(void *buf, size_t cap);

/* The tool: check the hello, answer with its own fresh nonce, check the
 * welcome (-EACCES for a reject or a VMM that does not know the cookie). */
int kvmi_hs_check_hello(struct kvmi_hs *hs, const void *msg, size_t len);
ssize_t kvmi_hs_auth(struct kvmi_hs *hs,
		     const uint8_t nonce[KVMI_LKVM_NONCE_SIZE], void *buf,
		     size_t cap);
int kvmi_hs_check_welcome(struct kvmi_hs *hs, const void *msg, size_t len,
			  struct kvmi_guest *info);

/* ---- sockets and files (kvm/kvmi-io.c) ----------------------------------- */

/* How long the rest of a message may take once its first byte came. */
#define KVMI_IO_MSG_TIMEOUT_MS 5000

/*
 * Sends one message (or several back to back: a batch of replies or of
 * commands, one system call for all) from iov, at most KVMI_IO_MAX_IOV
 * pieces, with pass_fd (>= 0) as SCM_RIGHTS on its first byte. 0 or
 * -errno (-EPIPE when the peer is gone, -ETIMEDOUT when what could not
 * go at once is not all out within KVMI_IO_MSG_TIMEOUT_MS: a peer that
 * stopped reading, or reads too slowly to be waited for).
 */
#define KVMI_IO_MAX_IOV 1024
int kvmi_io_send(int fd, const struct iovec *iov, int iovcnt, int pass_fd);
/* The same with nfds (up to KVMI_IO_MAX_FDS) descriptors. */
#define KVMI_IO_MAX_FDS 4
int kvmi_io_send_fds(int fd, const struct iovec *iov, int iovcnt,
		     const int *fds, unsigned int nfds);
/*
 * Reads one message into buf: waits up to timeout_ms (-1: forever) for
 * its first byte (-ETIMEDOUT, nothing read), then KVMI_IO_MSG_TIMEOUT_MS
 * for the rest. -ECONNRESET: closed between messages; -EPROTO: closed or
 * stalled inside one; -EMSGSIZE: larger than cap or KVMI_MAX_MSG_SIZE.
 * A descriptor passed with it goes to *passed_fd (-1 if none; closed when
 * passed_fd is NULL).
 */
int kvmi_io_recv(int fd, void *buf, size_t cap, int timeout_ms, size_t *len,
		 int *passed_fd);
/*
 * Bounded adaptive polling (docs/kvmi.md, "Polling"): a waiter that
 * expects its peer to answer within microseconds looks again for up to
 * cur_us before it sleeps, saving the wake-up; like KVM's halt polling,
 * the window grows (from KVMI_IO_POLL_START_US, doubling, to max_us)
 * after a wait the window would have covered and halves after a longer
 * one. max_us 0: never poll.
 */
#define KVMI_IO_POLL_START_US 10
#define KVMI_IO_POLL_MAX_US 1000000
struct kvmi_io_poll {
	unsigned int max_us, cur_us;
};
void kvmi_io_poll_init(struct kvmi_io_poll *p, unsigned int max_us);
/* After a wait of waited_us; hit: polling caught it, no sleep. */
void kvmi_io_poll_update(struct kvmi_io_poll *p, int64_t waited_us, bool hit);
/* How long to poll before sleeping, in microseconds: p's window (0 when p
 * is NULL or polling is off), never past the caller's timeout_ms. */
int64_t kvmi_io_poll_window(const struct kvmi_io_poll *p, int timeout_ms);
int64_t kvmi_io_now_us(void);
/* One step of a polling loop: lets the sibling hyperthread run. */
static inline void kvmi_io_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#else
	__asm__ volatile("" ::: "memory");
#endif
}
/* kvmi_io_recv() polling the first byte as poll says (NULL: never). */
int kvmi_io_recv_poll(int fd, void *buf, size_t cap, int timeout_ms,
		      struct kvmi_io_poll *poll, size_t *len, int *passed_fd);
/* The same keeping up to max_fds descriptors passed with the message
 * (fds[0..*nfds), the rest -1; any more are closed). */
int kvmi_io_recv_fds(int fd, void *buf, size_t cap, int timeout_ms,
		     struct kvmi_io_poll *poll, size_t *len, int *fds,
		     unsigned int max_fds, unsigned int *nfds);
/*
 * The same through rb: each recv() takes as much as the socket holds, so
 * pipelined messages cost one system call for many (the introspection
 * server's commands, the client's replies). rb starts zeroed.
 */
struct kvmi_io_rbuf {
	uint8_t data[256 * 1024];	/* > 2 of the largest messages */
	size_t start, end;
};
/* The next message copied to buf; a stream that carries no descriptors. */
int kvmi_io_recv_buffered(int fd, struct kvmi_io_rbuf *rb, void *buf,
			  size_t cap, int timeout_ms, size_t *len);
/* Descriptors that came on a stream, kept for the message that claims
 * them. */
struct kvmi_io_fds {
	int fd[KVMI_IO_MAX_FDS];
	unsigned int n;
};
/*
 * The next message in place: *msg points into rb, valid until the next
 * call. poll as kvmi_io_recv_poll(). Descriptors that come go to *passed
 * (when passed is not NULL, else they are closed) and stay there until
 * the caller takes them; later ones replace (close) them.
 */
int kvmi_io_recv_msg(int fd, struct kvmi_io_rbuf *rb, size_t cap,
		     int timeout_ms, struct kvmi_io_poll *poll,
		     const uint8_t **msg, size_t *len,
		     struct kvmi_io_fds *passed);
/* The length of the whole message at rb's front: 0 when it is not all
 * there yet, -EMSGSIZE when its header breaks protocol or exceeds cap. */
ssize_t kvmi_io_rbuf_peek(const struct kvmi_io_rbuf *rb, size_t cap);
/* One recv() without waiting, appended to rb: the bytes it took, 0 when
 * the peer closed, -EAGAIN when nothing is there (or rb is full). */
ssize_t kvmi_io_rbuf_fill(int fd, struct kvmi_io_rbuf *rb);
/* The same, keeping a passed descriptor as kvmi_io_recv_msg() says. */
ssize_t kvmi_io_rbuf_fill_fd(int fd, struct kvmi_io_rbuf *rb,
			     struct kvmi_io_fds *passed);
/*
 * Reads a cookie file: -EPERM when its group or others may read it,
 * -EINVAL when its size is outside [KVMI_COOKIE_MIN, KVMI_COOKIE_MAX].
 */
int kvmi_io_cookie_load(const char *path, void *buf, size_t *len);
int kvmi_io_random(void *buf, size_t len);
/*
 * The whole handshake on a connected socket, each message within
 * timeout_ms. The VMM's side: 0, -EACCES (the tool did not know the
 * cookie; it was sent a reject), or a transport error.
 */
int kvmi_io_handshake_vmm(int fd, const void *cookie, size_t cookie_len,
			  const struct kvmi_guest *info, int timeout_ms);
int kvmi_io_handshake_tool(int fd, const void *cookie, size_t cookie_len,
			   int timeout_ms, struct kvmi_guest *info);

#endif
