// SPDX-License-Identifier: GPL-2.0
/*
 * The control socket server (docs/control.md), served by the main loop.
 *
 * Clients are checked once, at accept: the peer's uid (SO_PEERCRED) must
 * be lkvm's own or root's. Each client has a buffer for one request;
 * a request is handled when it is whole. A header that is not ours, or a
 * size beyond CTL_MAX_REQUEST, closes that client and nothing else: the
 * stream cannot be trusted past it. A well-framed request with a bad body
 * gets an error reply and the client stays.
 *
 * Requests that read or change vCPU state take a control hold on the
 * vCPUs they need (lkvm/vcpu.h) for as long as they need it, so they see
 * the guest's real state whether or not it is paused. STOP and WAIT are
 * answered by control_finish() once the devices have been flushed.
 */
#include "lkvm/control.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#include "lkvm/arch.h"
#include "lkvm/balloon.h"
#include "lkvm/inspect.h"
#include "lkvm/introspect.h"
#include "lkvm/machine.h"
#include "lkvm/stats.h"
#include "lkvm/term.h"
#include "lkvm/uart.h"
#include "lkvm/util.h"
#include "lkvm/vcpu.h"

#define MAX_CLIENTS 128
#define HOLD_MS 2000		/* how long a vCPU may take to stop */
#define SEND_MS 2000		/* how long a client may take to read */
#define STACK_WORDS 16

struct ctl_client {
	struct control *ctl;
	int fd;
	uid_t uid;
	unsigned char buf[sizeof(struct ctl_hdr) + CTL_MAX_REQUEST];
	size_t len;
	int passed_fd;		/* from SCM_RIGHTS, for the next request */
	bool watched;
	bool wait;		/* answer CTL_WAIT at the end */
	bool stop;		/* answer CTL_STOP at the end */
	uint32_t wait_seq, stop_seq;
	struct ctl_client *next;
};

struct control {
	struct machine *m;
	struct registry_entry *reg;
	int listen_fd;
	int notify_fd;
	unsigned int nclients;
	struct ctl_client *clients;
	bool paused;
	bool stop_requested;	/* by CTL_STOP: no exit record */
	bool closing;		/* the guest has ended: no new console */
	time_t started;
};

/* ---- replies ------------------------------------------------------------ */

static int send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			struct pollfd pfd = { .fd = fd, .events = POLLOUT };

			if (poll(&pfd, 1, SEND_MS) <= 0)
				return -ETIMEDOUT;
			continue;
		}
		if (n <= 0)
			return n < 0 ? -errno : -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static bool send_reply(int fd, uint16_t op, uint32_t seq, int error,
		       const void *body, size_t len)
{
	struct {
		struct ctl_hdr h;
		struct ctl_reply r;
	} head = {
		{ CTL_MAGIC, CTL_VERSION, op, seq,
		  (uint32_t)(sizeof(struct ctl_reply) + len) },
		{ error, 0 },
	};
	char *msg = malloc(sizeof(head) + len);
	bool ok;

	if (!msg)
		return false;
	memcpy(msg, &head, sizeof(head));
	if (len)
		memcpy(msg + sizeof(head), body, len);
	ok = send_all(fd, msg, sizeof(head) + len) == 0;
	free(msg);
	return ok;
}

static bool reply(struct ctl_client *cl, const struct ctl_hdr *h,
		  const void *body, size_t len)
{
	return send_reply(cl->fd, h->op, h->seq, 0, body, len);
}

static bool reply_err(struct ctl_client *cl, const struct ctl_hdr *h,
		      int error, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static bool reply_err(struct ctl_client *cl, const struct ctl_hdr *h,
		      int error, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	return send_reply(cl->fd, h->op, h->seq, error, msg,
			  MIN((size_t)n, sizeof(msg) - 1));
}

/* A text reply built with stdio. */
struct text {
	char *buf;
	size_t len;
	FILE *f;
};

static FILE *text_open(struct text *t)
{
	t->buf = NULL;
	t->len = 0;
	t->f = open_memstream(&t->buf, &t->len);
	return t->f;
}

static bool text_reply(struct ctl_client *cl, const struct ctl_hdr *h,
		       struct text *t)
{
	bool ok;

	fclose(t->f);
	ok = reply(cl, h, t->buf, t->len);
	free(t->buf);
	return ok;
}

/* ---- requests --------------------------------------------------------------- */

/* Bodies are exact: the right size, reserved fields zero. */
static bool zero(const void *p, size_t len)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < len; i++)
		if (b[i])
			return false;
	return true;
}

static const char *state_name(struct control *ctl)
{
	return ctl->paused ? "paused" : "running";
}

static bool do_info(struct ctl_client *cl, const struct ctl_hdr *h)
{
	struct control *ctl = cl->ctl;
	struct machine *m = ctl->m;
	struct text t;

	if (!text_open(&t))
		return reply_err(cl, h, -ENOMEM, "out of memory");
	fprintf(t.f, "version %u\nname %s\npid %d\nuid %u\nstate %s\n"
		     "vcpus %u\nmemory %llu\nstarted %lld\ndetached %d\n",
		CTL_VERSION, ctl->reg->name, (int)getpid(), (unsigned)geteuid(),
		state_name(ctl), m->ncpus, (unsigned long long)m->ram_size,
		(long long)ctl->started, m->cfg.detach ? 1 : 0);
	if (m->cfg.console_log)
		fprintf(t.f, "console_log %s\n", m->cfg.console_log);
	return text_reply(cl, h, &t);
}

static bool do_pause(struct ctl_client *cl, const struct ctl_hdr *h)
{
	struct control *ctl = cl->ctl;
	int err = 0;

	/* Pausing a paused guest is not an error, nor a second hold. */
	if (!ctl->paused) {
		introspect_unhook(ctl->m);	/* a tool lets go first */
		ctl->paused = true;
		err = machine_hold_all(ctl->m, VCPU_HOLD_PAUSE, HOLD_MS);
	}
	if (err)
		return reply_err(cl, h, err,
				 "a vCPU did not stop within %d ms (it will when it can)",
				 HOLD_MS);
	return reply(cl, h, NULL, 0);
}

static bool do_resume(struct ctl_client *cl, const struct ctl_hdr *h)
{
	struct control *ctl = cl->ctl;

	if (ctl->paused) {
		machine_release_all(ctl->m, VCPU_HOLD_PAUSE);
		ctl->paused = false;
	}
	return reply(cl, h, NULL, 0);
}

static bool do_stat(struct ctl_client *cl, const struct ctl_hdr *h)
{
	struct control *ctl = cl->ctl;
	struct text t;

	if (!text_open(&t))
		return reply_err(cl, h, -ENOMEM, "out of memory");
	fprintf(t.f, "guest.state %s\nguest.vcpus %u\n", state_name(ctl),
		ctl->m->ncpus);
	stats_write(ctl->m, t.f);
	return text_reply(cl, h, &t);
}

/* Checks a vCPU index; replies and returns NULL when it is wrong. */
static struct vcpu *req_vcpu(struct ctl_client *cl, const struct ctl_hdr *h,
			     uint32_t cpu, bool *sent)
{
	struct machine *m = cl->ctl->m;

	*sent = false;
	if (cpu < m->ncpus)
		return &m->vcpus[cpu];
	/* *sent tells the caller whether to keep the client. */
	*sent = reply_err(cl, h, -ENODEV, "no vCPU %u (the guest has %u)", cpu,
			  m->ncpus);
	return NULL;
}

static bool hold_failed(struct ctl_client *cl, const struct ctl_hdr *h,
			unsigned int cpu)
{
	return reply_err(cl, h, -ETIMEDOUT, "vCPU %u did not stop within %d ms",
			 cpu, HOLD_MS);
}

static bool do_regs(struct ctl_client *cl, const struct ctl_hdr *h,
		    const struct ctl_cpu_req *req)
{
	struct machine *m = cl->ctl->m;
	unsigned int first = 0, last = m->ncpus;
	struct text t;
	bool sent;

	if (req->cpu != CTL_ALL_CPUS) {
		if (!req_vcpu(cl, h, req->cpu, &sent))
			return sent;
		first = req->cpu;
		last = first + 1;
	}
	if (!text_open(&t))
		return reply_err(cl, h, -ENOMEM, "out of memory");
	for (unsigned int i = first; i < last; i++) {
		struct vcpu *v = &m->vcpus[i];

		if (vcpu_hold(v, VCPU_HOLD_CONTROL, HOLD_MS)) {
			vcpu_release(v, VCPU_HOLD_CONTROL);
			fclose(t.f);
			free(t.buf);
			return hold_failed(cl, h, i);
		}
		arch_dump_vcpu(m, v, t.f);
		vcpu_release(v, VCPU_HOLD_CONTROL);
	}
	return text_reply(cl, h, &t);
}

static bool do_mem(struct ctl_client *cl, const struct ctl_hdr *h,
		   const struct ctl_mem_req *req)
{
	const void *p;

	if (!req->len || req->len > CTL_MEM_MAX)
		return reply_err(cl, h, -EINVAL,
				 "a read is 1 to %u bytes, not %u", CTL_MEM_MAX,
				 req->len);
	p = guest_ptr(cl->ctl->m, req->gpa, req->len);
	if (!p)
		return reply_err(cl, h, -EFAULT,
				 "0x%llx-0x%llx is not guest memory",
				 (unsigned long long)req->gpa,
				 (unsigned long long)(req->gpa + req->len - 1));
	/* The guest may write it meanwhile: a snapshot, not a lock. */
	return reply(cl, h, p, req->len);
}

typedef int (*view_fn)(struct machine *m, struct vcpu *v, uint64_t arg,
		       FILE *out);

static int view_translate(struct machine *m, struct vcpu *v, uint64_t gva,
			  FILE *out)
{
	return inspect_translate(m, v, gva, out);
}

static int view_stack(struct machine *m, struct vcpu *v, uint64_t words,
		      FILE *out)
{
	return inspect_stack(m, v, (unsigned int)words, out);
}

/* A text view of one held vCPU. */
static bool do_view(struct ctl_client *cl, const struct ctl_hdr *h,
		    uint32_t cpu, view_fn fn, uint64_t arg)
{
	struct machine *m = cl->ctl->m;
	struct vcpu *v;
	struct text t;
	bool sent;
	int err;

	v = req_vcpu(cl, h, cpu, &sent);
	if (!v)
		return sent;
	if (vcpu_hold(v, VCPU_HOLD_CONTROL, HOLD_MS)) {
		vcpu_release(v, VCPU_HOLD_CONTROL);
		return hold_failed(cl, h, cpu);
	}
	if (!text_open(&t)) {
		vcpu_release(v, VCPU_HOLD_CONTROL);
		return reply_err(cl, h, -ENOMEM, "out of memory");
	}
	err = fn(m, v, arg, t.f);
	vcpu_release(v, VCPU_HOLD_CONTROL);
	/* An unmapped address is an answer, not a failure: the text says
	 * where the walk stopped. Other errors are failures. */
	if (err && err != -EFAULT) {
		fclose(t.f);
		free(t.buf);
		return reply_err(cl, h, err, "vCPU %u: %s", cpu,
				 strerror(-err));
	}
	return text_reply(cl, h, &t);
}

static bool do_nmi(struct ctl_client *cl, const struct ctl_hdr *h,
		   const struct ctl_cpu_req *req)
{
	struct vcpu *v;
	bool sent;
	int err;

	v = req_vcpu(cl, h, req->cpu, &sent);
	if (!v)
		return sent;
	if (vcpu_hold(v, VCPU_HOLD_CONTROL, HOLD_MS)) {
		vcpu_release(v, VCPU_HOLD_CONTROL);
		return hold_failed(cl, h, req->cpu);
	}
	err = vcpu_inject_nmi(v);
	vcpu_release(v, VCPU_HOLD_CONTROL);
	if (err)
		return reply_err(cl, h, err, "vCPU %u: cannot inject an NMI: %s",
				 req->cpu, strerror(-err));
	return reply(cl, h, NULL, 0);
}

static bool do_sysrq(struct ctl_client *cl, const struct ctl_hdr *h,
		     const struct ctl_sysrq_req *req)
{
	int err = serial_send_sysrq(cl->ctl->m, (char)req->ch);

	if (err == -ENODEV)
		return reply_err(cl, h, err, "the guest has no serial port");
	if (err == -ENOSPC)
		return reply_err(cl, h, err,
				 "the serial port's input buffer is full");
	if (err)
		return reply_err(cl, h, err, "%s", strerror(-err));
	return reply(cl, h, NULL, 0);
}

static bool do_dump(struct ctl_client *cl, const struct ctl_hdr *h)
{
	struct control *ctl = cl->ctl;
	int fd = cl->passed_fd, err;
	int64_t size;
	struct text t;

	cl->passed_fd = -1;
	if (fd < 0)
		return reply_err(cl, h, -EBADF,
				 "the request came without a file descriptor");
	introspect_unhook(ctl->m);
	err = machine_hold_all(ctl->m, VCPU_HOLD_CONTROL, HOLD_MS);
	if (err) {
		machine_release_all(ctl->m, VCPU_HOLD_CONTROL);
		close(fd);
		return reply_err(cl, h, err, "the vCPUs did not stop within %d ms",
				 HOLD_MS);
	}
	size = inspect_write_core(ctl->m, fd, ctl->reg->name);
	machine_release_all(ctl->m, VCPU_HOLD_CONTROL);
	close(fd);
	if (size < 0)
		return reply_err(cl, h, (int)size, "cannot write the core: %s",
				 strerror((int)-size));
	if (!text_open(&t))
		return reply_err(cl, h, -ENOMEM, "out of memory");
	fprintf(t.f, "size %lld\nvcpus %u\n", (long long)size, ctl->m->ncpus);
	return text_reply(cl, h, &t);
}

static bool do_balloon(struct ctl_client *cl, const struct ctl_hdr *h,
		       const struct ctl_balloon_req *req)
{
	char err[160];
	struct text t;
	int e;

	if (!text_open(&t))
		return reply_err(cl, h, -ENOMEM, "out of memory");
	e = balloon_request(cl->ctl->m, req->cmd, req->bytes, t.f, err,
			    sizeof(err));
	if (e) {
		fclose(t.f);
		free(t.buf);
		return reply_err(cl, h, e, "%s", err);
	}
	return text_reply(cl, h, &t);
}

static void drop_client(struct control *ctl, struct ctl_client *cl);
static void unlink_client(struct control *ctl, struct ctl_client *cl);

/* The connection becomes the console's: the terminal owns it now. */
static bool do_console(struct ctl_client *cl, const struct ctl_hdr *h,
		       const void *rest, size_t rest_len, bool *gone)
{
	struct control *ctl = cl->ctl;
	unsigned char early[sizeof(cl->buf)];
	int fd = cl->fd, err;

	if (cl->wait || cl->stop)
		return reply_err(cl, h, -EBUSY,
				 "this connection waits for the guest to end");
	if (ctl->closing)
		return reply_err(cl, h, -ESHUTDOWN, "the guest has ended");
	if (!reply(cl, h, NULL, 0))
		return false;
	/* Input sent with the request lives in cl, which unlink_client()
	 * frees (found by fuzz/fuzz-control.c). */
	memcpy(early, rest, MIN(rest_len, sizeof(early)));
	unlink_client(ctl, cl);
	*gone = true;
	err = term_attach_client(ctl->m, fd, early,
				 MIN(rest_len, sizeof(early)));
	if (err)
		pr_warn("a console client could not attach: %s",
			strerror(-err));
	return true;
}

/*
 * Handles one whole request. Returns false when the client must be
 * closed; *gone when it is no longer ours (the console took it).
 */
static bool handle(struct ctl_client *cl, const struct ctl_hdr *h,
		   const void *body, const void *rest, size_t rest_len,
		   bool *gone)
{
	struct control *ctl = cl->ctl;
	static const uint32_t sizes[CTL_OP_MAX] = {
		[CTL_REGS] = sizeof(struct ctl_cpu_req),
		[CTL_MEM] = sizeof(struct ctl_mem_req),
		[CTL_TRANSLATE] = sizeof(struct ctl_translate_req),
		[CTL_STACK] = sizeof(struct ctl_cpu_req),
		[CTL_NMI] = sizeof(struct ctl_cpu_req),
		[CTL_SYSRQ] = sizeof(struct ctl_sysrq_req),
		[CTL_DUMP] = sizeof(struct ctl_dump_req),
		[CTL_BALLOON] = sizeof(struct ctl_balloon_req),
	};
	union {
		struct ctl_cpu_req cpu;
		struct ctl_mem_req mem;
		struct ctl_translate_req tr;
		struct ctl_sysrq_req sysrq;
		struct ctl_dump_req dump;
		struct ctl_balloon_req balloon;
	} req;

	*gone = false;
	if (!h->op || h->op >= CTL_OP_MAX)
		return reply_err(cl, h, -ENOSYS, "unknown request %u", h->op);
	if (h->size != sizes[h->op])
		return reply_err(cl, h, -EINVAL,
				 "request %u takes %u bytes, not %u", h->op,
				 sizes[h->op], h->size);
	memset(&req, 0, sizeof(req));
	memcpy(&req, body, h->size);
	/* A descriptor is for CTL_DUMP only; another request drops it. */
	if (h->op != CTL_DUMP && cl->passed_fd >= 0) {
		close(cl->passed_fd);
		cl->passed_fd = -1;
	}

	switch (h->op) {
	case CTL_INFO:
		return do_info(cl, h);
	case CTL_PAUSE:
		return do_pause(cl, h);
	case CTL_RESUME:
		return do_resume(cl, h);
	case CTL_STOP:
		cl->stop = true;
		cl->stop_seq = h->seq;
		ctl->stop_requested = true;
		introspect_unhook(ctl->m);
		machine_stop(ctl->m, LKVM_EXIT_OK);
		return true;
	case CTL_STAT:
		return do_stat(cl, h);
	case CTL_REGS:
		if (req.cpu.reserved)
			break;
		return do_regs(cl, h, &req.cpu);
	case CTL_MEM:
		if (req.mem.reserved)
			break;
		return do_mem(cl, h, &req.mem);
	case CTL_TRANSLATE:
		if (req.tr.reserved)
			break;
		return do_view(cl, h, req.tr.cpu, view_translate, req.tr.gva);
	case CTL_STACK:
		if (req.cpu.reserved)
			break;
		return do_view(cl, h, req.cpu.cpu, view_stack, STACK_WORDS);
	case CTL_NMI:
		if (req.cpu.reserved)
			break;
		return do_nmi(cl, h, &req.cpu);
	case CTL_SYSRQ:
		if (!zero(req.sysrq.reserved, sizeof(req.sysrq.reserved)))
			break;
		return do_sysrq(cl, h, &req.sysrq);
	case CTL_DUMP:
		if (req.dump.flags || req.dump.reserved)
			break;
		return do_dump(cl, h);
	case CTL_CONSOLE:
		return do_console(cl, h, rest, rest_len, gone);
	case CTL_WAIT:
		cl->wait = true;
		cl->wait_seq = h->seq;
		return true;
	case CTL_BALLOON:
		if (req.balloon.reserved)
			break;
		return do_balloon(cl, h, &req.balloon);
	}
	return reply_err(cl, h, -EINVAL, "reserved fields must be zero");
}

/* ---- connections ----------------------------------------------------------- */

static void unlink_client(struct control *ctl, struct ctl_client *cl)
{
	for (struct ctl_client **p = &ctl->clients; *p; p = &(*p)->next) {
		if (*p == cl) {
			*p = cl->next;
			break;
		}
	}
	ctl->nclients--;
	if (cl->watched)
		machine_unwatch_fd(ctl->m, cl->fd);
	if (cl->passed_fd >= 0)
		close(cl->passed_fd);
	free(cl);
}

static void drop_client(struct control *ctl, struct ctl_client *cl)
{
	int fd = cl->fd;

	unlink_client(ctl, cl);
	close(fd);
}

static void take_fds(struct ctl_client *cl, struct msghdr *mh)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		size_t n;
		int *fds;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		fds = (int *)CMSG_DATA(c);
		for (size_t i = 0; i < n; i++) {
			if (cl->passed_fd < 0) {
				cl->passed_fd = fds[i];
				fcntl(fds[i], F_SETFD, FD_CLOEXEC);
			} else {
				close(fds[i]);
			}
		}
	}
}

static void on_client(struct machine *m, int fd, void *opaque)
{
	struct ctl_client *cl = opaque;
	struct control *ctl = cl->ctl;
	union {
		char buf[CMSG_SPACE(4 * sizeof(int))];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = { cl->buf + cl->len, sizeof(cl->buf) - cl->len };
	struct msghdr mh = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = cbuf.buf,
		.msg_controllen = sizeof(cbuf.buf),
	};
	ssize_t n;

	(void)m;
	n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n > 0)
		take_fds(cl, &mh);
	if (n <= 0 || (mh.msg_flags & MSG_CTRUNC)) {
		drop_client(ctl, cl);
		return;
	}
	cl->len += (size_t)n;
	while (cl->len >= sizeof(struct ctl_hdr)) {
		struct ctl_hdr h;
		size_t total;
		bool keep, gone;

		memcpy(&h, cl->buf, sizeof(h));
		if (h.magic != CTL_MAGIC || h.size > CTL_MAX_REQUEST) {
			drop_client(ctl, cl);
			return;
		}
		if (h.version != CTL_VERSION) {
			reply_err(cl, &h, -EPROTONOSUPPORT,
				  "protocol version %u is not supported; this lkvm speaks version %u",
				  h.version, CTL_VERSION);
			drop_client(ctl, cl);
			return;
		}
		total = sizeof(h) + h.size;
		if (cl->len < total)
			return;
		keep = handle(cl, &h, cl->buf + sizeof(h), cl->buf + total,
			      cl->len - total, &gone);
		if (gone)
			return;
		if (!keep) {
			drop_client(ctl, cl);
			return;
		}
		memmove(cl->buf, cl->buf + total, cl->len - total);
		cl->len -= total;
	}
}

static void on_accept(struct machine *m, int fd, void *opaque)
{
	struct control *ctl = opaque;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct ctl_client *cl;
	int c;

	c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (c < 0)
		return;
	if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
	    (cred.uid != geteuid() && cred.uid != 0)) {
		char msg[128];
		int n = snprintf(msg, sizeof(msg),
				 "permission denied: the guest belongs to uid %u",
				 (unsigned)geteuid());

		send_reply(c, 0, 0, -EACCES, msg, (size_t)n);
		close(c);
		return;
	}
	cl = calloc(1, sizeof(*cl));
	if (!cl || ctl->nclients >= MAX_CLIENTS) {
		free(cl);
		close(c);
		return;
	}
	cl->ctl = ctl;
	cl->fd = c;
	cl->uid = cred.uid;
	cl->passed_fd = -1;
	if (machine_watch_fd(m, c, on_client, cl)) {
		free(cl);
		close(c);
		return;
	}
	cl->watched = true;
	cl->next = ctl->clients;
	ctl->clients = cl;
	ctl->nclients++;
}

/* ---- life cycle ------------------------------------------------------------- */

int control_start(struct machine *m, struct registry_entry *reg,
		  int notify_fd)
{
	struct control *ctl = calloc(1, sizeof(*ctl));
	int err;

	if (!ctl)
		return -ENOMEM;
	ctl->m = m;
	ctl->reg = reg;
	ctl->notify_fd = notify_fd;
	ctl->started = time(NULL);
	ctl->listen_fd = reg->sock_fd >= 0 ? reg->sock_fd : registry_listen(reg);
	reg->sock_fd = -1;
	if (ctl->listen_fd < 0) {
		err = ctl->listen_fd;
		free(ctl);
		return err;
	}
	err = machine_watch_fd(m, ctl->listen_fd, on_accept, ctl);
	if (err) {
		pr_err("control socket: %s", strerror(-err));
		close(ctl->listen_fd);
		registry_unlisten(reg);
		free(ctl);
		return err;
	}
	m->control = ctl;
	return 0;
}

void control_running(struct machine *m)
{
	struct control *ctl = m->control;
	char line[REGISTRY_NAME_MAX + 2];
	int null, n;

	if (!ctl || ctl->notify_fd < 0)
		return;
	/* Detached: let go of the parent's terminal and pipes, so that a
	 * caller reading our output sees its end now. lkvm's own messages
	 * go to the console log when there is one. */
	null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0) {
		int err_fd = -1;

		/* The log lkvm opened, not its name: after --user the
		 * file may not be the user's to open. */
		if (m->cfg.console_log)
			err_fd = term_dup_log();
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(err_fd >= 0 ? err_fd : null, STDERR_FILENO);
		if (err_fd >= 0)
			close(err_fd);
		close(null);
	}
	n = snprintf(line, sizeof(line), "%s\n", ctl->reg->name);
	(void)write_all(ctl->notify_fd, line, (size_t)n);
	close(ctl->notify_fd);
	ctl->notify_fd = -1;
}

void control_close(struct machine *m)
{
	struct control *ctl = m->control;
	struct ctl_client *cl, *next;

	if (!ctl)
		return;
	if (ctl->listen_fd >= 0) {
		machine_unwatch_fd(m, ctl->listen_fd);
		close(ctl->listen_fd);
		ctl->listen_fd = -1;
	}
	registry_unlisten(ctl->reg);
	ctl->closing = true;
	/* A request already sent is answered (a WAIT sent as the guest
	 * ended must still get the status); then only the clients waiting
	 * for the end stay, unwatched. */
	for (cl = ctl->clients; cl; cl = next) {
		next = cl->next;
		if (cl->watched)
			on_client(m, cl->fd, cl);
	}
	for (cl = ctl->clients; cl; cl = next) {
		next = cl->next;
		if (cl->wait || cl->stop) {
			if (cl->watched)
				machine_unwatch_fd(m, cl->fd);
			cl->watched = false;
		} else {
			drop_client(ctl, cl);
		}
	}
	if (ctl->notify_fd >= 0) {
		close(ctl->notify_fd);
		ctl->notify_fd = -1;
	}
}

void control_finish(struct machine *m, int status)
{
	struct control *ctl = m->control;
	char body[32];
	int n;

	if (!ctl)
		return;
	control_close(m);
	if (m->cfg.detach && !ctl->stop_requested)
		registry_write_exit(ctl->reg, status);
	n = snprintf(body, sizeof(body), "status %d\n", status);
	while (ctl->clients) {
		struct ctl_client *cl = ctl->clients;

		if (cl->wait)
			send_reply(cl->fd, CTL_WAIT, cl->wait_seq, 0, body,
				   (size_t)n);
		if (cl->stop)
			send_reply(cl->fd, CTL_STOP, cl->stop_seq, 0, body,
				   (size_t)n);
		drop_client(ctl, cl);
	}
	free(ctl);
	m->control = NULL;
}
