// SPDX-License-Identifier: GPL-2.0
/*
 * libkvmi-client: the tool's end of a KVMI connection (include/kvmi/
 * client.h). Built on the shared codec and transport (kvm/kvmi-proto.c,
 * kvm/kvmi-io.c); uses nothing else of lkvm.
 */
#include "kvmi/client.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
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
	/*
	 * The event channel (docs/kvmi.md): asked for at the first
	 * kvmi_wait_event() when the VMM offers it, unless the tool said
	 * no. chan: its memory, mapped; bell: our end of the doorbell;
	 * ring[i]: the event of vCPU i read from its slot and not answered.
	 */
	enum { CHAN_AUTO, CHAN_OFF, CHAN_ON } chan_mode;
	uint8_t *chan;
	size_t chan_size;
	uint32_t slot_off, slot_size;
	unsigned int nslots, scan;
	int bell;
	struct {
		bool pending;
		uint32_t seq;
	} *ring;
	union {
		uint64_t align;
		uint8_t buf[HDR_SIZE + KVMI_MAX_MSG_SIZE];
	} in;
	/* What the VMM sent, read in large pieces (many replies per system
	 * call); msg: the message read last, inside rb. */
	struct kvmi_io_rbuf rb;
	const uint8_t *msg;
	struct kvmi_io_fds passed;	/* came with a message, not yet taken */
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
	c->bell = -1;
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

static void close_fds(int *fds, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
		fds[i] = -1;
	}
}

void kvmi_close(struct kvmi_conn *c)
{
	if (!c)
		return;
	close(c->fd);
	if (c->chan)
		munmap(c->chan, c->chan_size);
	if (c->bell >= 0)
		close(c->bell);
	free(c->ring);
	close_fds(c->passed.fd, c->passed.n);
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
 * Descriptors that come wait in c->passed for the reply that
 * carries one (only MAP_MEMORY's, one at a time).
 */
static int read_msg(struct kvmi_conn *c, int timeout_ms, bool poll,
		    size_t *len)
{
	int err = kvmi_io_recv_msg(c->fd, &c->rb, HDR_SIZE + KVMI_MAX_MSG_SIZE,
				   timeout_ms, poll ? &c->poll : NULL, &c->msg,
				   len, &c->passed);

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
 * queued. The reply's data is copied to reply (see kvmi_command()); a
 * reply that must carry descriptors (nfds of them, to fd_out) has
 * exactly that many when it says success.
 */
static int wait_reply(struct kvmi_conn *c, uint16_t id, uint32_t seq,
		      void *reply, size_t reply_cap, size_t *reply_len,
		      int *fd_out, unsigned int nfds)
{
	int64_t deadline = deadline_of(c->timeout_ms);
	size_t len;
	int err;

	if (reply_len)
		*reply_len = 0;
	for (unsigned int i = 0; fd_out && i < nfds; i++)
		fd_out[i] = -1;
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
			/* Its reply has come: the descriptors are all there. */
			struct kvmi_io_fds pf = c->passed;

			c->passed.n = 0;
			if (!r.err && pf.n != nfds) {
				close_fds(pf.fd, pf.n);
				return fail(c, -EPROTO);
			}
			if (r.err)
				close_fds(pf.fd, pf.n);
			else
				memcpy(fd_out, pf.fd, nfds * sizeof(int));
		}
		if (r.err)
			return r.err;
		if (reply_len ? r.len > reply_cap : r.len != reply_cap) {
			if (fd_out)
				close_fds(fd_out, nfds);
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
static int call_fds(struct kvmi_conn *c, uint16_t id, int vcpu,
		    const struct iovec *args, int nargs, void *reply,
		    size_t reply_cap, size_t *reply_len, int *fd_out,
		    unsigned int nfds)
{
	uint32_t seq;
	int err = send_cmd(c, id, vcpu, args, nargs, &seq);

	if (err) {
		if (reply_len)
			*reply_len = 0;
		for (unsigned int i = 0; fd_out && i < nfds; i++)
			fd_out[i] = -1;
		return err;
	}
	return wait_reply(c, id, seq, reply, reply_cap, reply_len, fd_out,
			  nfds);
}

static int call(struct kvmi_conn *c, uint16_t id, int vcpu,
		const struct iovec *args, int nargs, void *reply,
		size_t reply_cap, size_t *reply_len, int *fd_out)
{
	return call_fds(c, id, vcpu, args, nargs, reply, reply_cap, reply_len,
			fd_out, fd_out ? 1 : 0);
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
				 fl[head].dst, fl[head].n, NULL, NULL, 0);
		head = (head + 1) % READ_WINDOW;
		count--;
	}
	/* A refusal leaves replies in flight: collect them, in order. */
	while (count && !c->dead) {
		uint8_t scratch[KVMI_PAGE_SIZE];

		wait_reply(c, KVMI_VM_READ_PHYSICAL, fl[head].seq, scratch,
			   fl[head].n, NULL, NULL, 0);
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

/*
 * A file the VMM passed to be mapped: a regular file at least size bytes
 * long that cannot shrink (lkvm seals both of its memfds), so that no
 * access inside the mapping ends the tool with SIGBUS.
 */
static bool vmm_file_ok(int fd, uint64_t size)
{
	struct stat st;
	int seals;

	if (fstat(fd, &st) || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size < size)
		return false;
	seals = fcntl(fd, F_GET_SEALS);
	return seals >= 0 && (seals & F_SEAL_SHRINK);
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
	if (!m->file_size || m->file_size > SIZE_MAX || !regions_ok(m) ||
	    !vmm_file_ok(fd, m->file_size))
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

/* ---- the event channel ---------------------------------------------------- */

#define CHAN_MAX_SIZE (64u << 20)

static struct kvmi_lkvm_chan_slot *chan_slot(const struct kvmi_conn *c,
					     unsigned int i)
{
	return (struct kvmi_lkvm_chan_slot *)(c->chan + c->slot_off +
					      (size_t)i * c->slot_size);
}

/* Asks the VMM for the channel and maps it. */
static int chan_open(struct kvmi_conn *c)
{
	struct kvmi_lkvm_vm_event_channel a = { .enable = 1 };
	struct kvmi_lkvm_vm_event_channel_reply r;
	struct iovec v = { .iov_base = &a, .iov_len = sizeof(a) };
	int fds[2], err;
	struct stat st;
	void *base;

	err = call_fds(c, KVMI_LKVM_VM_EVENT_CHANNEL, -1, &v, 1, &r, sizeof(r),
		       NULL, fds, 2);
	if (err)
		return err;
	/* Every slot inside the file, the file as large as it says, and a
	 * doorbell that is a socket. */
	if (r.padding || r.nslots != c->guest.vcpu_count || !r.nslots ||
	    r.file_size > CHAN_MAX_SIZE ||
	    r.slot_offset < sizeof(struct kvmi_lkvm_chan_hdr) ||
	    r.slot_size < sizeof(struct kvmi_lkvm_chan_slot) ||
	    r.slot_size % 8 || r.slot_offset % 8 ||
	    (uint64_t)r.slot_offset + (uint64_t)r.nslots * r.slot_size >
		    r.file_size ||
	    !vmm_file_ok(fds[0], r.file_size) || fstat(fds[1], &st) ||
	    !S_ISSOCK(st.st_mode)) {
		close_fds(fds, 2);
		return fail(c, -EPROTO);
	}
	c->ring = calloc(r.nslots, sizeof(*c->ring));
	base = mmap(NULL, r.file_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		    fds[0], 0);
	close(fds[0]);
	if (!c->ring || base == MAP_FAILED) {
		err = base == MAP_FAILED ? -errno : -ENOMEM;
		if (base != MAP_FAILED)
			munmap(base, r.file_size);
		free(c->ring);
		c->ring = NULL;
		close(fds[1]);
		return err;
	}
	c->chan = base;
	c->chan_size = r.file_size;
	c->slot_off = r.slot_offset;
	c->slot_size = r.slot_size;
	c->nslots = r.nslots;
	c->bell = fds[1];
	return 0;
}

int kvmi_set_event_channel(struct kvmi_conn *c, bool on)
{
	int err;

	if (c->chan)
		return on ? 0 : -EBUSY;
	if (!on) {
		c->chan_mode = CHAN_OFF;
		return 0;
	}
	if (c->dead)
		return -ENOTCONN;
	if (!(c->guest.features & KVMI_LKVM_F_EVENT_CHANNEL))
		return -KVM_ENOSYS;
	err = chan_open(c);
	c->chan_mode = err ? CHAN_OFF : CHAN_ON;
	return err;
}

bool kvmi_event_channel(const struct kvmi_conn *c)
{
	return c->chan != NULL;
}

/* An event from a slot: 1 with *ev, 0: none, or a failure. */
static int chan_scan(struct kvmi_conn *c, struct kvmi_event *ev)
{
	for (unsigned int k = 0; k < c->nslots; k++) {
		unsigned int i = (c->scan + k) % c->nslots;
		struct kvmi_lkvm_chan_slot *s = chan_slot(c, i);
		uint32_t len;

		if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) !=
		    KVMI_LKVM_SLOT_EVENT)
			continue;
		len = __atomic_load_n(&s->event_len, __ATOMIC_RELAXED);
		if (len > sizeof(s->event))
			return fail(c, -EPROTO);
		memcpy(c->in.buf, s->event, len);
		__atomic_store_n(&s->state, KVMI_LKVM_SLOT_TAKEN,
				 __ATOMIC_RELAXED);
		if (kvmi_event_parse(c->in.buf, len, ev) || !ev->is_vcpu ||
		    ev->vcpu != i)
			return fail(c, -EPROTO);
		c->ring[i].pending = true;
		c->ring[i].seq = ev->hdr.seq;
		c->scan = i + 1;
		return 1;
	}
	return 0;
}

/* An event on the socket within timeout_ms (polling first as c->poll
 * says, with poll): 1 with *ev, 0: none. */
static int sock_event(struct kvmi_conn *c, struct kvmi_event *ev,
		      int timeout_ms, bool poll)
{
	size_t len;
	int err = read_msg(c, timeout_ms, poll, &len);

	if (err == -ETIMEDOUT)
		return 0;
	if (err)
		return err;
	/* No command is waiting: anything but an event is out of place. */
	if (!kvmi_msg_is_event(c->msg, len) ||
	    kvmi_event_parse(c->msg, len, ev))
		return fail(c, -EPROTO);
	return 1;
}

/*
 * The next event from the slots or the socket: looks at both for the
 * polling window, then says it sleeps, looks once more (an event posted
 * just before did not see the flag) and sleeps on both the socket and
 * the doorbell.
 */
static int chan_wait(struct kvmi_conn *c, struct kvmi_event *ev,
		     int timeout_ms)
{
	struct kvmi_lkvm_chan_hdr *h = (struct kvmi_lkvm_chan_hdr *)c->chan;
	int64_t deadline = deadline_of(timeout_ms);
	int64_t start = kvmi_io_now_us();
	int64_t win = kvmi_io_poll_window(&c->poll, timeout_ms);
	bool slept = false;
	int r = 0;

	for (unsigned int i = 0;; i++) {
		struct pollfd p[2] = {
			{ .fd = c->fd, .events = POLLIN },
			{ .fd = c->bell, .events = POLLIN },
		};
		char b[64];
		int n;

		r = chan_scan(c, ev);
		/* The socket (VM events, the end) costs a system call: now
		 * and then. */
		if (!r && !(i % 32))
			r = sock_event(c, ev, 0, false);
		if (r)
			break;
		/* Woken for nothing (a doorbell rung for no event) past the
		 * deadline: the timeout, however often that happens. */
		if (slept && !left_of(deadline)) {
			r = -ETIMEDOUT;
			break;
		}
		if (!slept && kvmi_io_now_us() - start < win) {
			if (!(i % 32))
				sched_yield();
			kvmi_io_relax();
			continue;
		}
		/* A message read already, with a command's reply, does not
		 * show on the socket: no sleep while one waits in c->rb. */
		if (kvmi_io_rbuf_peek(&c->rb, HDR_SIZE + KVMI_MAX_MSG_SIZE)) {
			r = sock_event(c, ev, 0, false);
			if (r)
				break;
		}
		__atomic_store_n(&h->tool_sleeping, 1, __ATOMIC_SEQ_CST);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		r = chan_scan(c, ev);
		n = r ? 1 : poll(p, 2, left_of(deadline));
		__atomic_store_n(&h->tool_sleeping, 0, __ATOMIC_RELAXED);
		if (r)
			break;
		if (n < 0 && errno != EINTR) {
			r = -errno;
			break;
		}
		slept = true;
		/* A doorbell that hung up or failed wakes every poll() at
		 * once: no VMM's that keeps its word. */
		if (n > 0 && (p[1].revents & (POLLHUP | POLLERR | POLLNVAL))) {
			r = fail(c, -EPROTO);
			break;
		}
		/* One ring at a time: more wake the next poll() at once. */
		if (n > 0 && p[1].revents)
			(void)!recv(c->bell, b, sizeof(b), MSG_DONTWAIT);
		if (!n) {
			r = -ETIMEDOUT;
			break;
		}
		if (n > 0 && p[0].revents) {
			r = sock_event(c, ev, 0, false);
			if (r)
				break;
		}
		i = 1;		/* the socket again only in 31 rounds */
	}
	if (r != -ETIMEDOUT)
		kvmi_io_poll_update(&c->poll, kvmi_io_now_us() - start, !slept);
	return r < 0 ? r : 0;
}

int kvmi_wait_event(struct kvmi_conn *c, struct kvmi_event *ev, int timeout_ms)
{
	int r;

	if (c->qlen) {
		*ev = c->queue[c->qhead];
		c->qhead = (c->qhead + 1) % c->qcap;
		c->qlen--;
		return 0;
	}
	if (c->dead)
		return -ENOTCONN;
	/* Events through memory when the VMM offers it: a failure to set
	 * it up leaves them on the socket (the VMM's events go there). */
	if (c->chan_mode == CHAN_AUTO)
		kvmi_set_event_channel(c, true);
	if (c->qlen || c->dead)
		return kvmi_wait_event(c, ev, timeout_ms);
	if (c->chan)
		return chan_wait(c, ev, timeout_ms);
	r = sock_event(c, ev, timeout_ms, true);
	return r < 0 ? r : r ? 0 : -ETIMEDOUT;
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
	/* An event from a slot is answered there. */
	if (c->chan && ev->vcpu < c->nslots && c->ring[ev->vcpu].pending &&
	    c->ring[ev->vcpu].seq == ev->hdr.seq) {
		struct kvmi_lkvm_chan_slot *s = chan_slot(c, ev->vcpu);

		memcpy(s->reply, buf, (size_t)n);
		__atomic_store_n(&s->reply_len, (uint32_t)n, __ATOMIC_RELAXED);
		__atomic_store_n(&s->state, KVMI_LKVM_SLOT_REPLY,
				 __ATOMIC_RELEASE);
		c->ring[ev->vcpu].pending = false;
		/* The vCPU sleeps: wake it (it says so, then looks again). */
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (__atomic_load_n(&s->vcpu_waiting, __ATOMIC_RELAXED))
			(void)!send(c->bell, "", 1,
				    MSG_DONTWAIT | MSG_NOSIGNAL);
		return 0;
	}
	v.iov_len = n;
	err = kvmi_io_send(c->fd, &v, 1, -1);
	return err ? fail(c, err) : 0;
}
