// SPDX-License-Identifier: GPL-2.0
/*
 * libkvmi-client: the tool's end of a KVMI connection (include/kvmi/
 * client.h). Built on the shared codec and transport (kvm/kvmi-proto.c,
 * kvm/kvmi-io.c); uses nothing else of lkvm.
 */
#include "kvmi/client.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "lkvm/kvmi-proto.h"

#define HDR_SIZE sizeof(struct kvmi_msg_hdr)
#define DEFAULT_TIMEOUT_MS 10000
/* Waits for a message poll this long at most before they sleep. */
#define DEFAULT_POLL_US 50
/* Each vCPU has one event in flight at most, plus VM events: a VMM that
 * queues more than this is misbehaving. */
#define MAX_QUEUED 1024

struct kvmi_conn {
	int fd;
	bool dead;
	int timeout_ms;
	struct kvmi_io_poll poll;
	uint32_t seq;
	struct kvmi_guest guest;
	struct kvmi_event *queue;	/* ring of events read early */
	unsigned int qhead, qlen, qcap;
	/* What the VMM sent, read in large pieces (many replies per system
	 * call); msg: the message read last, inside rb. */
	struct kvmi_io_rbuf rb;
	const uint8_t *msg;
	int passed_fd;			/* came with a message, not yet taken */
};

/* A transport or protocol failure: nothing more can be said. */
static int fail(struct kvmi_conn *c, int err)
{
	if (!c->dead) {
		c->dead = true;
		shutdown(c->fd, SHUT_RDWR);
	}
	return err;
}

static int unix_addr(const char *path, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	strcpy(sa->sun_path, path);
	return 0;
}

int kvmi_listen(const char *path)
{
	struct sockaddr_un sa;
	struct stat st;
	int fd, err;

	err = unix_addr(path, &sa);
	if (err)
		return err;
	/* Only a stale socket is replaced, never another file. */
	if (!lstat(path, &st)) {
		if (!S_ISSOCK(st.st_mode))
			return -EEXIST;
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    chmod(path, 0600) < 0 || listen(fd, 4) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

int kvmi_open_fd_cookie(int fd, const void *cookie, size_t cookie_len,
			int timeout_ms, struct kvmi_conn **conn)
{
	struct kvmi_conn *c;
	int err;

	*conn = NULL;
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return -ENOMEM;
	}
	c->fd = fd;
	c->passed_fd = -1;
	c->timeout_ms = DEFAULT_TIMEOUT_MS;
	kvmi_io_poll_init(&c->poll, DEFAULT_POLL_US);
	c->seq = 1;
	err = kvmi_io_handshake_tool(fd, cookie, cookie_len, timeout_ms,
				     &c->guest);
	if (err) {
		close(fd);
		free(c);
		return err;
	}
	*conn = c;
	return 0;
}

int kvmi_open_fd(int fd, const char *cookie_file, int timeout_ms,
		 struct kvmi_conn **conn)
{
	uint8_t cookie[KVMI_COOKIE_MAX];
	size_t len;
	int err;

	*conn = NULL;
	err = kvmi_io_cookie_load(cookie_file, cookie, &len);
	if (err) {
		close(fd);
		return err;
	}
	err = kvmi_open_fd_cookie(fd, cookie, len, timeout_ms, conn);
	explicit_bzero(cookie, sizeof(cookie));
	return err;
}

int kvmi_accept(int listen_fd, const char *cookie_file, int timeout_ms,
		struct kvmi_conn **conn)
{
	struct pollfd pfd = { .fd = listen_fd, .events = POLLIN };
	int fd, r;

	*conn = NULL;
	do
		r = poll(&pfd, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	if (!r)
		return -ETIMEDOUT;
	fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return -errno;
	return kvmi_open_fd(fd, cookie_file, timeout_ms, conn);
}

int kvmi_connect(const char *path, const char *cookie_file, int timeout_ms,
		 struct kvmi_conn **conn)
{
	struct sockaddr_un sa;
	int fd, err;

	*conn = NULL;
	err = unix_addr(path, &sa);
	if (err)
		return err;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return kvmi_open_fd(fd, cookie_file, timeout_ms, conn);
}

void kvmi_close(struct kvmi_conn *c)
{
	if (!c)
		return;
	close(c->fd);
	if (c->passed_fd >= 0)
		close(c->passed_fd);
	free(c->queue);
	free(c);
}

const struct kvmi_guest *kvmi_guest(const struct kvmi_conn *c)
{
	return &c->guest;
}

int kvmi_fd(const struct kvmi_conn *c)
{
	return c->fd;
}

bool kvmi_alive(const struct kvmi_conn *c)
{
	return !c->dead;
}

void kvmi_set_timeout(struct kvmi_conn *c, int timeout_ms)
{
	c->timeout_ms = timeout_ms;
}

void kvmi_set_poll(struct kvmi_conn *c, unsigned int max_us)
{
	kvmi_io_poll_init(&c->poll, max_us);
}

static int enqueue(struct kvmi_conn *c, const struct kvmi_event *ev)
{
	if (c->qlen == c->qcap) {
		unsigned int cap = c->qcap ? c->qcap * 2 : 8;
		struct kvmi_event *q;

		if (c->qcap >= MAX_QUEUED)
			return -EPROTO;
		q = malloc(sizeof(*q) * cap);
		if (!q)
			return -ENOMEM;
		for (unsigned int i = 0; i < c->qlen; i++)
			q[i] = c->queue[(c->qhead + i) % c->qcap];
		free(c->queue);
		c->queue = q;
		c->qcap = cap;
		c->qhead = 0;
	}
	c->queue[(c->qhead + c->qlen) % c->qcap] = *ev;
	c->qlen++;
	return 0;
}

static int64_t deadline_of(int timeout_ms)
{
	struct timespec ts;

	if (timeout_ms < 0)
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + timeout_ms;
}

static int left_of(int64_t deadline)
{
	struct timespec ts;
	int64_t now;

	if (deadline < 0)
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	return deadline <= now ? 0 : (int)(deadline - now);
}

/*
 * Reads one message (c->msg); any failure ends the connection, except
 * a timeout with nothing read. poll: an event wait, which polls first
 * (the vCPU sends it from a core of its own); a command's reply is the
 * VMM's server thread's, which may need this very core: no polling.
 * A descriptor that comes waits in c->passed_fd for the reply that
 * carries one (only MAP_MEMORY's, one at a time).
 */
static int read_msg(struct kvmi_conn *c, int timeout_ms, bool poll,
		    size_t *len)
{
	int err = kvmi_io_recv_msg(c->fd, &c->rb, HDR_SIZE + KVMI_MAX_MSG_SIZE,
				   timeout_ms, poll ? &c->poll : NULL, &c->msg,
				   len, &c->passed_fd);

	if (err == -ETIMEDOUT)
		return err;
	return err ? fail(c, err == -EMSGSIZE ? -EPROTO : err) : 0;
}

/* Sends a command; its seq goes to *seq. */
static int send_cmd(struct kvmi_conn *c, uint16_t id, int vcpu,
		    const struct iovec *args, int nargs, uint32_t *seq)
{
	struct kvmi_msg_hdr hdr = { .id = id };
	struct kvmi_vcpu_hdr vh = { .vcpu = vcpu < 0 ? 0 : vcpu };
	struct iovec v[6];
	size_t args_len = 0;
	int n = 0, err;

	if (c->dead)
		return -ENOTCONN;
	if ((vcpu >= 0) != (id & 1) || vcpu > 0xffff || nargs > 4)
		return -EINVAL;
	for (int i = 0; i < nargs; i++)
		args_len += args[i].iov_len;
	if (args_len + (vcpu >= 0 ? sizeof(vh) : 0) > KVMI_MAX_MSG_SIZE)
		return -E2BIG;
	hdr.size = args_len + (vcpu >= 0 ? sizeof(vh) : 0);
	hdr.seq = c->seq++;
	v[n++] = (struct iovec){ .iov_base = &hdr, .iov_len = sizeof(hdr) };
	if (vcpu >= 0)
		v[n++] = (struct iovec){ .iov_base = &vh,
					 .iov_len = sizeof(vh) };
	for (int i = 0; i < nargs; i++)
		v[n++] = args[i];
	err = kvmi_io_send(c->fd, v, n, -1);
	if (err)
		return fail(c, err);
	*seq = hdr.seq;
	return 0;
}

/*
 * Waits for the reply to command (id, seq); events that come first are
 * queued. The reply's data is copied to reply (see kvmi_command()).
 */
static int wait_reply(struct kvmi_conn *c, uint16_t id, uint32_t seq,
		      void *reply, size_t reply_cap, size_t *reply_len,
		      int *fd_out)
{
	int64_t deadline = deadline_of(c->timeout_ms);
	size_t len;
	int err;

	if (reply_len)
		*reply_len = 0;
	if (fd_out)
		*fd_out = -1;
	if (c->dead)
		return -ENOTCONN;
	for (;;) {
		struct kvmi_reply r;
		struct kvmi_event ev;

		err = read_msg(c, left_of(deadline), false, &len);
		if (err)
			return err == -ETIMEDOUT ? fail(c, err) : err;
		if (kvmi_msg_is_event(c->msg, len)) {
			err = kvmi_event_parse(c->msg, len, &ev);
			if (!err)
				err = enqueue(c, &ev);
			if (err)
				return fail(c, -EPROTO);
			continue;
		}
		if (kvmi_reply_parse(c->msg, len, id, seq, &r))
			return fail(c, -EPROTO);
		if (fd_out) {
			/* Its reply has come: the descriptor is all there. */
			int pfd = c->passed_fd;

			c->passed_fd = -1;
			if (!r.err && pfd < 0)
				return fail(c, -EPROTO);
			if (r.err && pfd >= 0)
				close(pfd);
			*fd_out = r.err ? -1 : pfd;
		}
		if (r.err)
			return r.err;
		if (reply_len ? r.len > reply_cap : r.len != reply_cap) {
			if (fd_out && *fd_out >= 0) {
				close(*fd_out);
				*fd_out = -1;
			}
			return fail(c, -EPROTO);
		}
		if (r.len)
			memcpy(reply, r.data, r.len);
		if (reply_len)
			*reply_len = r.len;
		return 0;
	}
}

/* Sends a command and waits for its reply. */
static int call(struct kvmi_conn *c, uint16_t id, int vcpu,
		const struct iovec *args, int nargs, void *reply,
		size_t reply_cap, size_t *reply_len, int *fd_out)
{
	uint32_t seq;
	int err = send_cmd(c, id, vcpu, args, nargs, &seq);

	if (err) {
		if (reply_len)
			*reply_len = 0;
		if (fd_out)
			*fd_out = -1;
		return err;
	}
	return wait_reply(c, id, seq, reply, reply_cap, reply_len, fd_out);
}

static int call1(struct kvmi_conn *c, uint16_t id, int vcpu,
		 const void *args, size_t args_len, void *reply,
		 size_t reply_cap)
{
	struct iovec v = { .iov_base = (void *)args, .iov_len = args_len };

	return call(c, id, vcpu, &v, args_len ? 1 : 0, reply, reply_cap, NULL,
		    NULL);
}

int kvmi_command(struct kvmi_conn *c, uint16_t id, int vcpu,
		 const void *args, size_t args_len, void *reply,
		 size_t reply_cap, size_t *reply_len)
{
	struct iovec v = { .iov_base = (void *)args, .iov_len = args_len };

	return call(c, id, vcpu, &v, args_len ? 1 : 0, reply, reply_cap,
		    reply_len, NULL);
}

int kvmi_get_version(struct kvmi_conn *c, uint32_t *version,
		     uint32_t *max_msg_size)
{
	struct kvmi_get_version_reply r;
	int err = call1(c, KVMI_GET_VERSION, -1, NULL, 0, &r, sizeof(r));

	if (!err) {
		if (version)
			*version = r.version;
		if (max_msg_size)
			*max_msg_size = r.max_msg_size;
	}
	return err;
}

int kvmi_check_command(struct kvmi_conn *c, uint16_t id)
{
	struct kvmi_vm_check_command a = { .id = id };

	return call1(c, KVMI_VM_CHECK_COMMAND, -1, &a, sizeof(a), NULL, 0);
}

int kvmi_check_event(struct kvmi_conn *c, uint16_t id)
{
	struct kvmi_vm_check_event a = { .id = id };

	return call1(c, KVMI_VM_CHECK_EVENT, -1, &a, sizeof(a), NULL, 0);
}

int kvmi_get_vm_info(struct kvmi_conn *c, uint32_t *vcpu_count)
{
	struct kvmi_vm_get_info_reply r;
	int err = call1(c, KVMI_VM_GET_INFO, -1, NULL, 0, &r, sizeof(r));

	if (!err)
		*vcpu_count = r.vcpu_count;
	return err;
}

int kvmi_control_vm_events(struct kvmi_conn *c, uint16_t event, bool enable)
{
	struct kvmi_vm_control_events a = {
		.event_id = event,
		.enable = enable,
	};

	return call1(c, KVMI_VM_CONTROL_EVENTS, -1, &a, sizeof(a), NULL, 0);
}

/* The bytes from gpa to the end of its page, at most len. */
static size_t page_chunk(uint64_t gpa, size_t len)
{
	size_t room = KVMI_PAGE_SIZE - (gpa & (KVMI_PAGE_SIZE - 1));

	return len < room ? len : room;
}

/*
 * Reads in page-sized requests, up to READ_WINDOW of them in flight,
 * sent READ_BATCH or more at a time in one system call: the VMM answers
 * in order, so the socket's round trip is paid once per window, not once
 * per page, and each side wakes once per batch (docs/kvmi.md, "Reads").
 */
#define READ_WINDOW 64
#define READ_BATCH 32

struct read_req {
	struct kvmi_msg_hdr hdr;
	struct kvmi_vm_read_physical a;
};
_Static_assert(sizeof(struct read_req) == HDR_SIZE +
	       sizeof(struct kvmi_vm_read_physical), "requests back to back");

struct read_slot {
	uint32_t seq;
	uint8_t *dst;
	size_t n;
};

/*
 * Sends requests for the next pages of [*gpa, *gpa + *len) while the
 * window has room; their slots follow fl[(head + *count) % READ_WINDOW].
 */
static int send_reads(struct kvmi_conn *c, struct read_slot *fl,
		      unsigned int head, unsigned int *count, uint64_t *gpa,
		      uint8_t **p, size_t *len)
{
	struct read_req req[READ_WINDOW];
	struct iovec v;
	unsigned int k = 0;
	int err;

	if (c->dead)
		return -ENOTCONN;
	while (*len && *count + k < READ_WINDOW) {
		size_t n = page_chunk(*gpa, *len);
		struct read_slot *s = &fl[(head + *count + k) % READ_WINDOW];

		memset(&req[k], 0, sizeof(req[k]));
		req[k].hdr.id = KVMI_VM_READ_PHYSICAL;
		req[k].hdr.size = sizeof(req[k].a);
		req[k].hdr.seq = c->seq++;
		req[k].a.gpa = *gpa;
		req[k].a.size = n;
		s->seq = req[k].hdr.seq;
		s->dst = *p;
		s->n = n;
		k++;
		*gpa += n;
		*p += n;
		*len -= n;
	}
	v.iov_base = req;
	v.iov_len = sizeof(req[0]) * k;
	err = kvmi_io_send(c->fd, &v, 1, -1);
	if (err)
		return fail(c, err);
	*count += k;
	return 0;
}

int kvmi_read_physical(struct kvmi_conn *c, uint64_t gpa, void *buf,
		       size_t len)
{
	struct read_slot fl[READ_WINDOW];
	unsigned int head = 0, count = 0;
	uint8_t *p = buf;
	int err = 0;

	while ((len || count) && !err) {
		if (len && count <= READ_WINDOW - READ_BATCH) {
			err = send_reads(c, fl, head, &count, &gpa, &p, &len);
			continue;
		}
		err = wait_reply(c, KVMI_VM_READ_PHYSICAL, fl[head].seq,
				 fl[head].dst, fl[head].n, NULL, NULL);
		head = (head + 1) % READ_WINDOW;
		count--;
	}
	/* A refusal leaves replies in flight: collect them, in order. */
	while (count && !c->dead) {
		uint8_t scratch[KVMI_PAGE_SIZE];

		wait_reply(c, KVMI_VM_READ_PHYSICAL, fl[head].seq, scratch,
			   fl[head].n, NULL, NULL);
		head = (head + 1) % READ_WINDOW;
		count--;
	}
	return err;
}

int kvmi_write_physical(struct kvmi_conn *c, uint64_t gpa, const void *buf,
			size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		size_t n = page_chunk(gpa, len);
		struct kvmi_vm_write_physical a = { .gpa = gpa, .size = n };
		struct iovec v[2] = {
			{ .iov_base = &a, .iov_len = sizeof(a) },
			{ .iov_base = (void *)p, .iov_len = n },
		};
		int err = call(c, KVMI_VM_WRITE_PHYSICAL, -1, v, 2, NULL, 0,
			       NULL, NULL);

		if (err)
			return err;
		gpa += n;
		p += n;
		len -= n;
	}
	return 0;
}

int kvmi_pause_vcpu(struct kvmi_conn *c, uint16_t vcpu, bool wait)
{
	struct kvmi_vm_pause_vcpu a = { .vcpu = vcpu, .wait = wait };

	return call1(c, KVMI_VM_PAUSE_VCPU, -1, &a, sizeof(a), NULL, 0);
}

int kvmi_control_cleanup(struct kvmi_conn *c, bool enable)
{
	struct kvmi_vm_control_cleanup a = { .enable = enable };

	return call1(c, KVMI_VM_CONTROL_CLEANUP, -1, &a, sizeof(a), NULL, 0);
}

#define ACCESS_BATCH \
	((KVMI_MAX_MSG_SIZE - sizeof(struct kvmi_vm_set_page_access)) / \
	 sizeof(struct kvmi_page_access_entry))

int kvmi_set_page_access(struct kvmi_conn *c, const uint64_t *gpa,
			 const uint8_t *access, unsigned int count)
{
	struct kvmi_page_access_entry *e;
	int err = 0;

	e = calloc(ACCESS_BATCH, sizeof(*e));
	if (!e)
		return -ENOMEM;
	while (!err && count) {
		unsigned int n = count < ACCESS_BATCH ? count : ACCESS_BATCH;
		struct kvmi_vm_set_page_access a = { .count = n };
		struct iovec v[2] = {
			{ .iov_base = &a, .iov_len = sizeof(a) },
			{ .iov_base = e, .iov_len = n * sizeof(*e) },
		};

		for (unsigned int i = 0; i < n; i++) {
			e[i].gpa = gpa[i];
			e[i].access = access[i];
		}
		err = call(c, KVMI_VM_SET_PAGE_ACCESS, -1, v, 2, NULL, 0, NULL,
			   NULL);
		gpa += n;
		access += n;
		count -= n;
	}
	free(e);
	return err;
}

int kvmi_get_vcpu_info(struct kvmi_conn *c, uint16_t vcpu, uint64_t *tsc)
{
	struct kvmi_vcpu_get_info_reply r;
	int err = call1(c, KVMI_VCPU_GET_INFO, vcpu, NULL, 0, &r, sizeof(r));

	if (!err)
		*tsc = r.tsc_speed;
	return err;
}

int kvmi_control_vcpu_events(struct kvmi_conn *c, uint16_t vcpu,
			     uint16_t event, bool enable)
{
	struct kvmi_vcpu_control_events a = {
		.event_id = event,
		.enable = enable,
	};

	return call1(c, KVMI_VCPU_CONTROL_EVENTS, vcpu, &a, sizeof(a), NULL,
		     0);
}

#define REGS_REPLY_MAX (KVMI_MAX_MSG_SIZE - sizeof(struct kvmi_error_code))
#define MAX_MSRS \
	((REGS_REPLY_MAX - sizeof(struct kvmi_vcpu_get_registers_reply)) / \
	 sizeof(struct kvm_msr_entry))

int kvmi_get_registers(struct kvmi_conn *c, uint16_t vcpu,
		       struct kvm_regs *regs, struct kvm_sregs *sregs,
		       struct kvm_msr_entry *msrs, unsigned int nmsrs,
		       uint32_t *mode)
{
	struct kvmi_vcpu_get_registers a = { .nmsrs = nmsrs };
	struct kvmi_vcpu_get_registers_reply r;
	uint32_t idx[MAX_MSRS];
	uint8_t *reply;
	size_t want = sizeof(r) + (size_t)nmsrs * sizeof(*msrs);
	struct iovec v[2] = {
		{ .iov_base = &a, .iov_len = sizeof(a) },
		{ .iov_base = idx, .iov_len = nmsrs * sizeof(idx[0]) },
	};
	int err;

	if (nmsrs > MAX_MSRS)
		return -E2BIG;
	for (unsigned int i = 0; i < nmsrs; i++)
		idx[i] = msrs[i].index;
	reply = malloc(want);
	if (!reply)
		return -ENOMEM;
	err = call(c, KVMI_VCPU_GET_REGISTERS, vcpu, v, 2, reply, want, NULL,
		   NULL);
	if (!err) {
		memcpy(&r, reply, sizeof(r));
		if (r.msrs.nmsrs != nmsrs) {
			free(reply);
			return fail(c, -EPROTO);
		}
		if (regs)
			*regs = r.regs;
		if (sregs)
			*sregs = r.sregs;
		if (mode)
			*mode = r.mode;
		for (unsigned int i = 0; i < nmsrs; i++) {
			struct kvm_msr_entry e;

			memcpy(&e, reply + sizeof(r) + i * sizeof(e),
			       sizeof(e));
			msrs[i].data = e.data;
		}
	}
	free(reply);
	return err;
}

int kvmi_set_registers(struct kvmi_conn *c, uint16_t vcpu,
		       const struct kvm_regs *regs)
{
	return call1(c, KVMI_VCPU_SET_REGISTERS, vcpu, regs, sizeof(*regs),
		     NULL, 0);
}

int kvmi_get_cpuid(struct kvmi_conn *c, uint16_t vcpu, uint32_t function,
		   uint32_t index, struct kvmi_vcpu_get_cpuid_reply *out)
{
	struct kvmi_vcpu_get_cpuid a = { .function = function, .index = index };

	return call1(c, KVMI_VCPU_GET_CPUID, vcpu, &a, sizeof(a), out,
		     sizeof(*out));
}

int kvmi_inject_exception(struct kvmi_conn *c, uint16_t vcpu, uint8_t nr,
			  uint32_t error_code, uint64_t address)
{
	struct kvmi_vcpu_inject_exception a = {
		.nr = nr,
		.error_code = error_code,
		.address = address,
	};

	return call1(c, KVMI_VCPU_INJECT_EXCEPTION, vcpu, &a, sizeof(a), NULL,
		     0);
}

int kvmi_get_xcr(struct kvmi_conn *c, uint16_t vcpu, uint8_t xcr,
		 uint64_t *value)
{
	struct kvmi_vcpu_get_xcr a = { .xcr = xcr };
	struct kvmi_vcpu_get_xcr_reply r;
	int err = call1(c, KVMI_VCPU_GET_XCR, vcpu, &a, sizeof(a), &r,
			sizeof(r));

	if (!err)
		*value = r.value;
	return err;
}

int kvmi_get_xsave(struct kvmi_conn *c, uint16_t vcpu, struct kvm_xsave *x)
{
	size_t len;

	memset(x, 0, sizeof(*x));
	return call(c, KVMI_VCPU_GET_XSAVE, vcpu, NULL, 0, x, sizeof(*x), &len,
		    NULL);
}

int kvmi_control_msr(struct kvmi_conn *c, uint16_t vcpu, uint32_t msr,
		     bool enable)
{
	struct kvmi_vcpu_control_msr a = { .enable = enable, .msr = msr };

	return call1(c, KVMI_VCPU_CONTROL_MSR, vcpu, &a, sizeof(a), NULL, 0);
}

int kvmi_control_singlestep(struct kvmi_conn *c, uint16_t vcpu, bool enable)
{
	struct kvmi_vcpu_control_singlestep a = { .enable = enable };

	return call1(c, KVMI_VCPU_CONTROL_SINGLESTEP, vcpu, &a, sizeof(a),
		     NULL, 0);
}

int kvmi_set_breakpoint(struct kvmi_conn *c, uint64_t gva, bool enable)
{
	struct kvmi_lkvm_vm_set_breakpoint a = { .gva = gva, .enable = enable };

	return call1(c, KVMI_LKVM_VM_SET_BREAKPOINT, -1, &a, sizeof(a), NULL,
		     0);
}

int kvmi_translate_gva(struct kvmi_conn *c, uint16_t vcpu, uint64_t gva,
		       uint64_t *gpa)
{
	struct kvmi_vcpu_translate_gva a = { .gva = gva };
	struct kvmi_vcpu_translate_gva_reply r;
	int err = call1(c, KVMI_VCPU_TRANSLATE_GVA, vcpu, &a, sizeof(a), &r,
			sizeof(r));

	if (!err)
		*gpa = r.gpa;
	return err;
}

/* Regions inside the file, not overflowing, sorted and apart. */
static bool regions_ok(const struct kvmi_memmap *m)
{
	uint64_t prev_end = 0;

	for (unsigned int i = 0; i < m->count; i++) {
		const struct kvmi_lkvm_mem_region *r = &m->regions[i];

		if (!r->size || r->gpa + r->size < r->gpa ||
		    r->offset + r->size < r->offset ||
		    r->offset + r->size > m->file_size ||
		    (i && r->gpa < prev_end))
			return false;
		prev_end = r->gpa + r->size;
	}
	return true;
}

int kvmi_map_memory(struct kvmi_conn *c, bool writable, struct kvmi_memmap *m)
{
	struct kvmi_lkvm_vm_map_memory a = { .writable = writable };
	struct kvmi_lkvm_vm_map_memory_reply r;
	uint8_t reply[sizeof(r) + sizeof(m->regions)];
	struct iovec v = { .iov_base = &a, .iov_len = sizeof(a) };
	size_t len;
	void *base;
	int fd, err;

	memset(m, 0, sizeof(*m));
	err = call(c, KVMI_LKVM_VM_MAP_MEMORY, -1, &v, 1, reply, sizeof(reply),
		   &len, &fd);
	if (err)
		return err;
	if (len < sizeof(r))
		goto bad;
	memcpy(&r, reply, sizeof(r));
	if (r.padding1 || r.padding2 || r.writable > 1 ||
	    (r.writable && !writable) || r.count > KVMI_LKVM_MAX_MEM_REGIONS ||
	    len != sizeof(r) + r.count * sizeof(m->regions[0]))
		goto bad;
	m->file_size = r.file_size;
	m->writable = r.writable;
	m->count = r.count;
	memcpy(m->regions, reply + sizeof(r), r.count * sizeof(m->regions[0]));
	if (!m->file_size || m->file_size > SIZE_MAX || !regions_ok(m))
		goto bad;
	base = mmap(NULL, m->file_size,
		    PROT_READ | (m->writable ? PROT_WRITE : 0), MAP_SHARED, fd,
		    0);
	err = base == MAP_FAILED ? -errno : 0;
	close(fd);
	if (err) {
		memset(m, 0, sizeof(*m));
		return err;
	}
	m->base = base;
	return 0;
bad:
	close(fd);
	memset(m, 0, sizeof(*m));
	return fail(c, -EPROTO);
}

void kvmi_unmap_memory(struct kvmi_memmap *m)
{
	if (m->base)
		munmap(m->base, m->file_size);
	memset(m, 0, sizeof(*m));
}

void *kvmi_memmap_ptr(const struct kvmi_memmap *m, uint64_t gpa, uint64_t len)
{
	if (!m->base || gpa + len < gpa)
		return NULL;
	for (unsigned int i = 0; i < m->count; i++) {
		const struct kvmi_lkvm_mem_region *r = &m->regions[i];

		if (gpa >= r->gpa && gpa + len <= r->gpa + r->size)
			return (uint8_t *)m->base + r->offset + (gpa - r->gpa);
	}
	return NULL;
}

int kvmi_wait_event(struct kvmi_conn *c, struct kvmi_event *ev, int timeout_ms)
{
	size_t len;
	int err;

	if (c->qlen) {
		*ev = c->queue[c->qhead];
		c->qhead = (c->qhead + 1) % c->qcap;
		c->qlen--;
		return 0;
	}
	if (c->dead)
		return -ENOTCONN;
	err = read_msg(c, timeout_ms, true, &len);
	if (err)
		return err;
	/* No command is waiting: anything but an event is out of place. */
	if (!kvmi_msg_is_event(c->msg, len) ||
	    kvmi_event_parse(c->msg, len, ev))
		return fail(c, -EPROTO);
	return 0;
}

int kvmi_reply_event(struct kvmi_conn *c, const struct kvmi_event *ev,
		     uint8_t action, const void *data, size_t len)
{
	uint8_t buf[64];
	struct iovec v = { .iov_base = buf };
	ssize_t n;
	int err;

	if (c->dead)
		return -ENOTCONN;
	n = kvmi_event_reply_build(buf, sizeof(buf), ev, action, data, len);
	if (n < 0)
		return n;
	v.iov_len = n;
	err = kvmi_io_send(c->fd, &v, 1, -1);
	return err ? fail(c, err) : 0;
}
