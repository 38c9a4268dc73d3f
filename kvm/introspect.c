// SPDX-License-Identifier: GPL-2.0
/*
 * The KVMI server (docs/kvmi.md): `lkvm run --introspect listen=PATH,
 * cookie=FILE` waits for one introspection tool at a time on a Unix
 * socket; `--introspect connect=PATH,cookie=FILE` connects to a tool that
 * listens. Either way lkvm is the VMM side of the handshake
 * (kvmi_io_handshake_vmm()) and then answers the tool's commands.
 *
 * The server has a thread of its own, so that a tool that stalls inside
 * a message or the handshake delays nobody but itself: the main loop and
 * the vCPUs go on. It reaches the vCPUs only through the vCPU-control
 * layer (lkvm/vcpu.h) and guest memory only through guest_ptr().
 *
 * Events come from the vCPU threads: an exit handler (a write to a
 * write-protected page, a filtered WRMSR, the agent's doorbell) or work
 * queued on the vCPU (PAUSE, TRAP) builds the event, and vcpu_event_wait()
 * sends it once the vCPU counts as stopped in its event, so that the
 * tool's commands (registers, memory) are answered by this thread while
 * the vCPU waits. This thread reads the reply and wakes the vCPU with its
 * action. A tool that goes, sends garbage, or leaves an event unanswered
 * past the timeout is dropped: every protection and filter it set is
 * removed, its pending events are answered CONTINUE, the guest runs on.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "lkvm/arch.h"
#include "lkvm/device.h"
#include "lkvm/introspect.h"
#include "lkvm/kvmi-proto.h"
#include "lkvm/machine.h"
#include "lkvm/options.h"
#include "lkvm/seccomp.h"
#include "lkvm/stats.h"
#include "lkvm/registry.h"
#include "lkvm/util.h"
#include "lkvm/vcpu.h"

/* How long a command waits for a vCPU to stop. */
#define HOLD_MS 2000
/* How long a vCPU waits for an event's reply (--introspect timeout=). */
#define EVENT_TIMEOUT_MS 10000
/* Pages a tool may write-protect, MSRs it may intercept. */
#define MAX_PROTECTED 256
#define MAX_MSRS 16
/* Memory slots of RAM split around protected pages start here. */
#define SLOT_BASE 256
#define MAX_PIECES (2 * MAX_PROTECTED + MACHINE_MAX_REGIONS)
/* The handshake's per-message timeout. */
#define HANDSHAKE_MS 5000
/* How long a vCPU polls for its event's reply before it sleeps (poll=). */
#define EVENT_POLL_US 50
/* The largest message a polling vCPU takes for its own: an event reply. */
#define OWN_REPLY_MAX 128
/* How often the idle server looks whether the machine stops. */
#define POLL_MS 200
#define MSG_MAX (sizeof(struct kvmi_msg_hdr) + KVMI_MAX_MSG_SIZE)
/* The event channel's layout: its header, then one slot per vCPU. */
#define CHAN_SLOT_OFF sizeof(struct kvmi_lkvm_chan_hdr)
#define CHAN_SLOT_SIZE sizeof(struct kvmi_lkvm_chan_slot)
#define OUTQ_SIZE (64 * 1024)
/* The pieces of the queued replies (a read's are two: its prefix in
 * outq, its data in guest RAM) and the guest RAM they send at most. */
#define OUT_IOV 256
#define OUT_RAM_MAX (256 * 1024)

struct introspect_cfg {
	const char *spec;		/* --introspect listen=|connect=... */
	struct introspect *in;
};

struct introspect;

/* One vCPU's event in flight (docs/kvmi.md, "Events"). */
struct ipend {
	struct introspect *in;
	struct kvmi_pending p;		/* under in->lock */
	struct vcpu_event ev;
	unsigned int gen;		/* the connection it was built for */
	size_t len;
	uint64_t new_val;		/* an MSR event's reply */
	bool answered;			/* by the tool, new_val with it */
	uint64_t pf_gpa;		/* a PF event's page */
	bool retry_lands;		/* its RETRY found the page released */
	bool exit_fresh;		/* the next event is its exit's first */
	struct kvmi_io_poll poll;	/* this vCPU's reply polling */
	int64_t sent_us;		/* when its event went out */
	bool polling;			/* counted in in->pollers */
	bool poll_hit;			/* the reply came while it polled */
	bool pause_queued;		/* a PAUSE event is on its way */
	bool on_ring;			/* its event is in the event channel */
	bool ring_taken;		/* its reply was copied out of it */
	struct kvmi_vcpu_event_trap trap;	/* a TRAP event's data */
	uint8_t msg[sizeof(struct kvmi_msg_hdr) +
		    sizeof(struct kvmi_event_hdr) +
		    sizeof(struct kvmi_vcpu_event) + 64];
};

/* One memory slot of RAM as KVM has it now. */
struct piece {
	uint64_t gpa, size;
	void *host;
	bool readonly;
};

struct introspect {
	struct machine *m;
	int timeout_ms;
	bool listen;
	char *path;
	char *cookie_path;	/* a cookie lkvm made (listen, no cookie=) */
	uint8_t cookie[KVMI_COOKIE_MAX];
	size_t cookie_len;
	int listen_fd;
	int conn_fd;
	int stop_pipe[2];
	/*
	 * The server sleeps in epfd: the connection, the stop pipe, the
	 * listening socket, and kick_fd, which a vCPU writes when it leaves
	 * messages in rbuf for the server. While any vCPU polls for its
	 * event's reply (pollers, under lock) the connection is disarmed in
	 * epfd, so that the reply wakes nobody but that vCPU.
	 */
	int epfd, kick_fd;
	unsigned int pollers;
	/* vCPU events in the event channel, not over: their replies do not
	 * pass the server (under lock). */
	unsigned int ring_waiting;
	unsigned int poll_us;		/* --introspect poll=US */
	/* `lkvm stat`: dev.kvmi-events (events sent, their bytes, sends
	 * that failed); dev.kvmi-polled (events a vCPU polled for, the
	 * bytes of the replies it read itself, polls the server ended). */
	struct dev_counters ev_sent, ev_polled;
	/* dev.kvmi-channel: replies taken from the event channel, their
	 * bytes, the ones the server took (the vCPU slept). */
	struct dev_counters ev_chan;
	pthread_t thread;
	bool thread_started;
	struct kvmi_guest info;
	struct kvmi_proto proto;
	/*
	 * read_lock: reading conn_fd, and rbuf; conn_fd stays open while
	 * it is held (the server reads, and a vCPU polling for its reply).
	 * send_lock (taken after read_lock, never before): one message at a
	 * time on conn_fd, and conn_fd stays open while it is held. lock
	 * (taken after send_lock, never before): the connection's state, the
	 * pending events, what the tool set.
	 */
	pthread_mutex_t read_lock, send_lock, lock;
	pthread_cond_t cond;		/* a PAUSE event went out */
	bool connected;
	unsigned int gen;		/* counts connections */
	bool unhook;			/* the tool wants UNHOOK */
	uint64_t *vcpu_events;		/* per vCPU: kvmi_event_bit() mask */
	struct ipend *pend;		/* per vCPU */
	/* Write-protected pages (sorted GPAs) and the slots now in KVM. */
	uint64_t prot[MAX_PROTECTED];
	unsigned int nprot;
	struct piece pieces[MAX_PIECES];
	unsigned int npieces;
	bool slots_split;		/* RAM is in our slots, not machine's */
	bool ram_hooked;		/* RAM's MMIO exits come to us */
	/* MSRs whose writes the filter sends to user space. */
	uint32_t msrs[MAX_MSRS];
	unsigned int nmsrs;
	bool user_msr;			/* KVM_CAP_X86_USER_SPACE_MSR is on */
	bool sync_regs;			/* KVM_CAP_SYNC_REGS has regs, sregs */
	/*
	 * The event channel (KVMI_LKVM_VM_EVENT_CHANNEL, docs/kvmi.md):
	 * chan_area (chan_size bytes) is reserved for lkvm's life; while
	 * chan_on (under lock) the connection's memfd is mapped over it,
	 * otherwise anonymous memory, so that a vCPU still looking at a slot
	 * of a channel that has gone reads zeros, never a hole. lkvm only
	 * copies out of it, bounded, and validates what it copied. bell_fd:
	 * lkvm's end of the doorbell (in epfd), or -1.
	 */
	uint8_t *chan_area;
	size_t chan_size;
	bool chan_on;
	int bell_fd;
	/* Guest RAM as a memfd (KVMI_LKVM_VM_MAP_MEMORY), or -1. */
	int ram_fd;
	int ram_ro_fd;		/* the same, opened read-only at set-up */
	uint64_t ram_fd_size;
	struct kvmi_lkvm_mem_region ram_regions[MACHINE_MAX_REGIONS];
	unsigned int nram_regions;
	/*
	 * Replies to commands read back to back wait here and go out in one
	 * send when no command is left to read (one wake-up of the tool for
	 * many replies): outv, the pieces, point into outq (what was built)
	 * and, for reads, straight at guest RAM (out_ram bytes), which the
	 * kernel copies as they go out. Only this thread touches them.
	 */
	uint8_t outq[OUTQ_SIZE];
	size_t outq_len;
	struct iovec outv[OUT_IOV];
	unsigned int outv_n;
	size_t out_ram;
	uint8_t buf[MSG_MAX];
	struct kvmi_io_rbuf rbuf;	/* what the tool sent, not yet read */
	uint8_t out[MSG_MAX];
};

static const struct device_ops introspect_ops;

static const struct option introspect_options[] = {
	{ .name = "introspect", .type = OPT_STRING,
	  .offset = offsetof(struct introspect_cfg, spec),
	  .argname = "listen[=PATH]|connect=PATH[,cookie=FILE][,timeout=MS][,poll=US]",
	  .help = "serve KVMI to one introspection tool (docs/kvmi.md)" },
	OPTION_END,
};

/* ---- options ---------------------------------------------------------------- */

int introspect_paths(const char *name, char *sock, size_t sock_len,
		     char *cookie, size_t cookie_len)
{
	char dir[4096];
	int err = registry_dir(dir, sizeof(dir));

	if (err)
		return err;
	if ((size_t)snprintf(sock, sock_len, "%s/%s.kvmi", dir, name) >=
		    sock_len ||
	    (size_t)snprintf(cookie, cookie_len, "%s/%s.kvmi-cookie", dir,
			     name) >= cookie_len)
		return -ENAMETOOLONG;
	return 0;
}

/* A fresh random cookie in a new file only its owner may read. */
static int make_cookie(const char *path)
{
	uint8_t c[32];
	int fd, err = 0;

	unlink(path);		/* left by a guest of this name that died */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (kvmi_io_random(c, sizeof(c)) ||
	    write(fd, c, sizeof(c)) != (ssize_t)sizeof(c))
		err = -EIO;
	close(fd);
	explicit_bzero(c, sizeof(c));
	if (err)
		unlink(path);
	return err;
}

static int parse_spec(struct introspect *in, const char *spec)
{
	char *s = strdup(spec), *save = NULL, *tok;
	const char *cookie = NULL;
	int err = 0;

	if (!s)
		return -ENOMEM;
	for (tok = strtok_r(s, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (!strcmp(tok, "listen")) {
			/* In the registry, for `lkvm introspect NAME`. */
			char sock[4096], cpath[4096];

			if (in->path) {
				pr_err("--introspect: one listen= or connect=");
				err = -EINVAL;
				goto out;
			}
			err = introspect_paths(in->m->cfg.name, sock,
					       sizeof(sock), cpath,
					       sizeof(cpath));
			if (err) {
				pr_err("--introspect listen: %s", strerror(-err));
				goto out;
			}
			in->listen = true;
			in->path = strdup(sock);
			in->cookie_path = strdup(cpath);
			if (!in->path || !in->cookie_path) {
				err = -ENOMEM;
				goto out;
			}
		} else if (!strncmp(tok, "listen=", 7) ||
			   !strncmp(tok, "connect=", 8)) {
			if (in->path) {
				pr_err("--introspect: one listen= or connect=");
				err = -EINVAL;
				goto out;
			}
			in->listen = tok[0] == 'l';
			in->path = strdup(strchr(tok, '=') + 1);
			if (!in->path) {
				err = -ENOMEM;
				goto out;
			}
		} else if (!strncmp(tok, "cookie=", 7)) {
			cookie = tok + 7;
		} else if (!strncmp(tok, "timeout=", 8)) {
			uint64_t ms;

			if (!parse_uint(tok + 8, 1, 3600000, &ms)) {
				pr_err("--introspect: timeout=%s: milliseconds, 1 to 3600000",
				       tok + 8);
				err = -EINVAL;
				goto out;
			}
			in->timeout_ms = (int)ms;
		} else if (!strncmp(tok, "poll=", 5)) {
			uint64_t us;

			if (!parse_uint(tok + 5, 0, KVMI_IO_POLL_MAX_US, &us)) {
				pr_err("--introspect: poll=%s: microseconds, 0 to %d",
				       tok + 5, KVMI_IO_POLL_MAX_US);
				err = -EINVAL;
				goto out;
			}
			in->poll_us = (unsigned int)us;
		} else {
			pr_err("--introspect: unknown setting '%s' (listen=PATH or connect=PATH, cookie=FILE, timeout=MS, poll=US)",
			       tok);
			err = -EINVAL;
			goto out;
		}
	}
	if (in->cookie_path && cookie) {
		free(in->cookie_path);	/* the operator's own cookie */
		in->cookie_path = NULL;
	} else if (in->cookie_path) {
		cookie = in->cookie_path;
		err = make_cookie(cookie);
		if (err) {
			pr_err("--introspect: cannot write the cookie %s: %s",
			       cookie, strerror(-err));
			free(in->cookie_path);
			in->cookie_path = NULL;
			goto out;
		}
	}
	if (!in->path || !in->path[0] || !cookie || !cookie[0]) {
		pr_err("--introspect needs listen, listen=PATH or connect=PATH, and cookie=FILE");
		err = -EINVAL;
		goto out;
	}
	if (strlen(in->path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		pr_err("--introspect: socket path too long: %s", in->path);
		err = -ENAMETOOLONG;
		goto out;
	}
	err = kvmi_io_cookie_load(cookie, in->cookie, &in->cookie_len);
	if (err == -EPERM)
		pr_err("--introspect: cookie %s: group or others may read it (chmod 600)",
		       cookie);
	else if (err == -EINVAL)
		pr_err("--introspect: cookie %s: must be %d to %d bytes", cookie,
		       KVMI_COOKIE_MIN, KVMI_COOKIE_MAX);
	else if (err)
		pr_err("--introspect: cookie %s: %s", cookie, strerror(-err));
out:
	free(s);
	return err;
}

/* ---- commands --------------------------------------------------------------- */

/*
 * Under send_lock: whether a reply went. One the tool did not take within
 * the timeout ends the session (it stopped reading, or reads too slowly
 * to be waited for); the log says why, as for the other drops.
 */
static bool reply_sent(struct introspect *in, int err)
{
	if (err == -ETIMEDOUT && in->conn_fd >= 0) {
		pr_warn("introspection: dropping the tool: it does not read its replies");
		shutdown(in->conn_fd, SHUT_RDWR);
	}
	return !err;
}

/* Whole messages, all in one send: nothing goes between them. */
static bool send_iov(struct introspect *in, const struct iovec *iov, int n)
{
	bool ok;

	pthread_mutex_lock(&in->send_lock);
	ok = in->conn_fd >= 0 &&
	     reply_sent(in, kvmi_io_send(in->conn_fd, iov, n, -1));
	pthread_mutex_unlock(&in->send_lock);
	return ok;
}

static bool send_msg(struct introspect *in, const void *buf, size_t len)
{
	struct iovec iov = { (void *)buf, len };

	return send_iov(in, &iov, 1);
}

/*
 * Ends the tool's connection from any thread: this server's thread sees
 * it closed and cleans up.
 */
static void drop_tool(struct introspect *in, const char *why)
{
	pthread_mutex_lock(&in->send_lock);
	if (in->conn_fd >= 0 && __atomic_load_n(&in->connected,
						__ATOMIC_ACQUIRE)) {
		pr_warn("introspection: dropping the tool: %s", why);
		shutdown(in->conn_fd, SHUT_RDWR);
	}
	pthread_mutex_unlock(&in->send_lock);
}

static void out_clear(struct introspect *in)
{
	in->outq_len = 0;
	in->outv_n = 0;
	in->out_ram = 0;
}

/* Sends the queued replies. */
static bool flush_replies(struct introspect *in)
{
	bool ok = !in->outv_n || send_iov(in, in->outv, (int)in->outv_n);

	out_clear(in);
	return ok;
}

/* Room for n more bytes in outq and k more pieces: when there is not,
 * what is queued goes first. */
static bool out_room(struct introspect *in, size_t n, unsigned int k)
{
	return (in->outq_len + n <= sizeof(in->outq) &&
		in->outv_n + k <= OUT_IOV) || flush_replies(in);
}

/* Queues the n bytes at p (outq's end, or guest RAM) as the next piece. */
static void out_add(struct introspect *in, const void *p, size_t n)
{
	struct iovec *last = &in->outv[in->outv_n - (in->outv_n ? 1 : 0)];

	if (in->outv_n && (const uint8_t *)last->iov_base + last->iov_len == p)
		last->iov_len += n;
	else
		in->outv[in->outv_n++] = (struct iovec){ (void *)p, n };
	if (p == in->outq + in->outq_len)
		in->outq_len += n;
}

static bool reply(struct introspect *in, const struct kvmi_req *r, int err,
		  const void *data, size_t len)
{
	size_t room;
	ssize_t n;

	if (!out_room(in, sizeof(struct kvmi_reply_prefix) + (err ? 0 : len),
		      1))
		return false;
	room = sizeof(in->outq) - in->outq_len;
	n = kvmi_reply_build(in->outq + in->outq_len, room, r, err,
			     err ? NULL : data, err ? 0 : len);
	if (n < 0) {
		/* Our own bug: say so to the tool rather than go silent. */
		n = kvmi_reply_build(in->outq + in->outq_len, room, r,
				     -KVM_EINVAL, NULL, 0);
		if (n < 0)
			return false;
	}
	out_add(in, in->outq + in->outq_len, (size_t)n);
	return true;
}

/*
 * A reply that passes descriptors (SCM_RIGHTS): it goes at once, after
 * the queued ones, since the queue's single send carries none.
 */
static bool reply_fds(struct introspect *in, const struct kvmi_req *r,
		      const void *data, size_t len, const int *fds,
		      unsigned int nfds)
{
	ssize_t n = kvmi_reply_build(in->out, sizeof(in->out), r, 0, data, len);
	struct iovec iov;
	bool ok;

	if (n < 0)
		return reply(in, r, -KVM_EINVAL, NULL, 0);
	if (!flush_replies(in))
		return false;
	iov = (struct iovec){ in->out, (size_t)n };
	pthread_mutex_lock(&in->send_lock);
	ok = in->conn_fd >= 0 &&
	     reply_sent(in, kvmi_io_send_fds(in->conn_fd, &iov, 1, fds,
					     nfds));
	pthread_mutex_unlock(&in->send_lock);
	return ok;
}

/*
 * A reply whose data, len bytes of guest RAM at p (checked by
 * guest_ptr()), the kernel copies from guest RAM as the queue goes out:
 * serve() sends the queue before anything that may change that memory.
 */
static bool reply_ram(struct introspect *in, const struct kvmi_req *r,
		      const void *p, size_t len)
{
	struct kvmi_reply_prefix pre;

	if (kvmi_reply_prefix(&pre, r, 0, len))
		return reply(in, r, -KVM_EINVAL, NULL, 0);
	if (in->out_ram + len > OUT_RAM_MAX && !flush_replies(in))
		return false;
	if (!out_room(in, sizeof(pre), 2))
		return false;
	memcpy(in->outq + in->outq_len, &pre, sizeof(pre));
	out_add(in, in->outq + in->outq_len, sizeof(pre));
	out_add(in, p, len);
	in->out_ram += len;
	return true;
}

/* A temporary hold for a command that reads a vCPU: 0 or -KVM_E*. */
static int hold(struct introspect *in, struct vcpu *v)
{
	(void)in;
	if (vcpu_state(v) == VCPU_STATE_CREATED)
		return -KVM_EAGAIN;	/* not started yet */
	if (vcpu_hold(v, VCPU_HOLD_INTROSPECT, HOLD_MS)) {
		vcpu_release(v, VCPU_HOLD_INTROSPECT);
		return -KVM_EBUSY;
	}
	return 0;
}

static uint32_t vcpu_mode(const struct kvm_sregs *s)
{
	if (!(s->cr0 & 1))
		return 2;
	if ((s->efer & (1u << 10)) && s->cs.l)
		return 8;
	return s->cs.db ? 4 : 2;
}

/* ---- events (on the vCPU threads) ------------------------------------------ */

/* The MSRs every vCPU event carries, in struct kvmi_vcpu_event_arch order. */
static const uint32_t event_msrs[] = {
	0x174, 0x175, 0x176,		/* SYSENTER_CS, _ESP, _EIP */
	0xc0000080, 0xc0000081,		/* EFER, STAR */
	0xc0000082, 0xc0000083,		/* LSTAR, CSTAR */
	0x277, 0xc0000102,		/* PAT, KERNEL_GS_BASE */
};

#define SYNC_WANT (KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS)

/*
 * The vCPU's state for an event. fresh: called from the handler of the
 * exit itself, where the registers KVM copied into kvm_run at that exit
 * (KVM_CAP_SYNC_REGS) are the vCPU's: two ioctls fewer per event.
 * Anywhere else (work, a second event of one exit) the ioctls.
 */
static void event_arch(struct introspect *in, struct vcpu *v, bool fresh,
		       struct kvmi_vcpu_event_arch *a)
{
	struct kvm_msr_entry e[ARRAY_SIZE(event_msrs)];
	struct kvm_run *run = kvm_vcpu_run_state(v->kvm);
	struct vcpu_regs s;
	__u64 *out = &a->msrs.sysenter_cs;

	memset(a, 0, sizeof(*a));
	if (fresh && in->sync_regs && (run->kvm_valid_regs & SYNC_WANT) ==
					      SYNC_WANT) {
		a->mode = (uint8_t)vcpu_mode(&run->s.regs.sregs);
		a->regs = run->s.regs.regs;
		a->sregs = run->s.regs.sregs;
	} else if (!vcpu_get_state(v, VCPU_STATE_REGS | VCPU_STATE_SREGS,
				   &s)) {
		/* From now on each exit brings them (this thread's run). */
		if (in->sync_regs)
			run->kvm_valid_regs |= SYNC_WANT;
		a->mode = (uint8_t)vcpu_mode(&s.sregs);
		a->regs = s.regs;
		a->sregs = s.sregs;
	}
	memset(e, 0, sizeof(e));
	for (unsigned int i = 0; i < ARRAY_SIZE(e); i++)
		e[i].index = event_msrs[i];
	/* One ioctl; where one MSR is missing it fails the lot: singly. */
	if (!kvm_get_msrs(v->kvm, e, ARRAY_SIZE(e))) {
		for (unsigned int i = 0; i < ARRAY_SIZE(e); i++)
			out[i] = e[i].data;
		return;
	}
	for (unsigned int i = 0; i < ARRAY_SIZE(e); i++)
		if (!kvm_get_msrs(v->kvm, &e[i], 1))
			out[i] = e[i].data;
}

static bool event_reply(struct introspect *in, const struct kvmi_req *r);

/* Arms (or disarms) the connection in the server's epoll. Under lock,
 * connected. */
static void arm_conn(struct introspect *in, bool on)
{
	struct epoll_event e = { .events = on ? EPOLLIN : 0, .data.u32 = 0 };

	epoll_ctl(in->epfd, EPOLL_CTL_MOD, in->conn_fd, &e);
}

/* The polling vCPU stops polling; the server reads again. */
static void poll_end(struct introspect *in, struct ipend *pd, bool kick)
{
	static const uint64_t one = 1;

	pthread_mutex_lock(&in->lock);
	if (pd->polling && in->connected && in->gen == pd->gen &&
	    !__atomic_sub_fetch(&in->pollers, 1, __ATOMIC_RELAXED))
		arm_conn(in, true);
	pd->polling = false;
	pthread_mutex_unlock(&in->lock);
	dev_count(&in->ev_polled, 0, !pd->poll_hit);
	if (kick)
		(void)!write(in->kick_fd, &one, sizeof(one));
}

/*
 * Under read_lock: takes the vCPU's own event reply when it is the next
 * message from the tool. 1: taken (and answered); 0: not there yet;
 * -1: something else is next, or the connection ended: the server's.
 * *kick: messages are left in rbuf for the server.
 */
static int take_own_reply(struct introspect *in, struct ipend *pd, bool *kick)
{
	union {
		uint64_t align;
		uint8_t b[OWN_REPLY_MAX];
	} msg;
	struct kvmi_io_rbuf *rb = &in->rbuf;
	struct kvmi_req r;
	ssize_t n;
	bool ours;

	if (in->conn_fd < 0 || in->gen != pd->gen)
		return -1;
	n = kvmi_io_rbuf_peek(rb, sizeof(in->buf));
	if (!n) {
		n = kvmi_io_rbuf_fill(in->conn_fd, rb);
		if (n == -EAGAIN)
			return 0;
		if (n <= 0) {		/* closed or failed: the server sees it */
			*kick = rb->end > rb->start;
			return -1;
		}
		n = kvmi_io_rbuf_peek(rb, sizeof(in->buf));
	}
	*kick = true;		/* rbuf holds something */
	if (!n)
		return 0;		/* the rest of it is on its way */
	if (n < 0 || (size_t)n > sizeof(msg.b))
		return -1;
	memcpy(msg.b, rb->data + rb->start, (size_t)n);
	if (kvmi_parse(&in->proto, msg.b, (size_t)n, &r) < 0)
		return -1;
	/* Only a reply that answers this event: anything else, a bad reply
	 * included, is the server's to act on, in order. */
	pthread_mutex_lock(&in->lock);
	ours = !kvmi_event_reply_check(&pd->p, &r);
	pthread_mutex_unlock(&in->lock);
	if (!ours)
		return -1;
	rb->start += (size_t)n;
	*kick = rb->end > rb->start;
	__atomic_fetch_add(&in->ev_polled.bytes, (uint64_t)n, __ATOMIC_RELAXED);
	if (!event_reply(in, &r))
		drop_tool(in, "it sent a bad event reply");
	return 1;
}

/*
 * On the vCPU's thread, its event sent: polls for the reply for up to
 * the vCPU's window, reading it straight from the socket (no wake-up of
 * the server, then of this thread). Commands and other replies that come
 * first stay in order for the server, which gets them at once.
 */
static void await_reply(struct introspect *in, struct ipend *pd)
{
	int64_t until = pd->sent_us + pd->poll.cur_us;
	bool kick = false;

	for (;;) {
		if (__atomic_load_n(&pd->answered, __ATOMIC_ACQUIRE) ||
		    !__atomic_load_n(&in->connected, __ATOMIC_ACQUIRE) ||
		    machine_stopping(in->m))
			break;
		if (!pthread_mutex_trylock(&in->read_lock)) {
			int got = take_own_reply(in, pd, &kick);

			pthread_mutex_unlock(&in->read_lock);
			if (got) {
				pd->poll_hit = got > 0;
				break;
			}
		}
		if (kvmi_io_now_us() >= until)
			break;
		/* The tool may be waiting for this very core. */
		sched_yield();
	}
	poll_end(in, pd, kick);
}

/* ---- the event channel ------------------------------------------------------ */

static struct kvmi_lkvm_chan_slot *chan_slot(struct introspect *in,
					     unsigned int vcpu)
{
	return (struct kvmi_lkvm_chan_slot *)(in->chan_area + CHAN_SLOT_OFF +
					      vcpu * CHAN_SLOT_SIZE);
}

/* Rings the tool's doorbell; a full one already has a wake-up in it. */
static void ring_bell(int fd)
{
	if (fd >= 0)
		(void)!send(fd, "", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
}

/*
 * Takes pd's reply out of the channel, once, whoever comes first (the
 * vCPU or the server): copied out, then checked as a reply from the
 * socket is; a bad one drops the tool. 1: taken; 0: none there.
 */
static int ring_take(struct introspect *in, struct ipend *pd, bool server)
{
	unsigned int id = (unsigned int)(pd - in->pend);
	struct kvmi_lkvm_chan_slot *slot = chan_slot(in, id);
	union {
		uint64_t align;
		uint8_t b[KVMI_LKVM_SLOT_REPLY_MAX];
	} msg;
	struct kvmi_req r;
	uint32_t len;
	bool ok;

	pthread_mutex_lock(&in->lock);
	if (!pd->on_ring || pd->ring_taken || !pd->p.active || !in->chan_on ||
	    pd->gen != in->gen ||
	    __atomic_load_n(&slot->state, __ATOMIC_ACQUIRE) !=
		    KVMI_LKVM_SLOT_REPLY) {
		pthread_mutex_unlock(&in->lock);
		return 0;
	}
	pd->ring_taken = true;
	/* The tool may change it all meanwhile: one read of each. */
	len = __atomic_load_n(&slot->reply_len, __ATOMIC_RELAXED);
	ok = len >= sizeof(struct kvmi_msg_hdr) && len <= sizeof(msg.b);
	if (ok)
		memcpy(msg.b, slot->reply, len);
	pthread_mutex_unlock(&in->lock);
	if (!ok || kvmi_parse(&in->proto, msg.b, len, &r) < 0 ||
	    r.kind != KVMI_REQ_EVENT_REPLY || r.vcpu != id ||
	    !event_reply(in, &r))
		drop_tool(in, "it wrote a bad event reply in the event channel");
	else
		dev_count(&in->ev_chan, len, server);
	return 1;
}

/*
 * On the vCPU's thread, its event posted in the channel: looks for the
 * reply for up to its polling window; then says it sleeps (the tool
 * rings the doorbell after its reply, the server takes it) and looks
 * once more, since the reply may have come just before.
 */
static void await_ring(struct introspect *in, struct ipend *pd)
{
	struct kvmi_lkvm_chan_slot *slot =
		chan_slot(in, (unsigned int)(pd - in->pend));
	int64_t until = pd->sent_us + pd->poll.cur_us;

	for (unsigned int i = 1; pd->poll.cur_us; i++) {
		if (__atomic_load_n(&pd->answered, __ATOMIC_ACQUIRE) ||
		    !__atomic_load_n(&in->connected, __ATOMIC_ACQUIRE) ||
		    machine_stopping(in->m))
			break;
		if (__atomic_load_n(&slot->state, __ATOMIC_ACQUIRE) ==
			    KVMI_LKVM_SLOT_REPLY &&
		    ring_take(in, pd, false)) {
			pd->poll_hit = true;
			break;
		}
		if (!(i % 64) && kvmi_io_now_us() >= until)
			break;
		/* The tool may be waiting for this very core. */
		if (!(i % 256))
			sched_yield();
		kvmi_io_relax();
	}
	if (pd->poll.cur_us)
		dev_count(&in->ev_polled, 0, !pd->poll_hit);
	if (pd->poll_hit || __atomic_load_n(&pd->answered, __ATOMIC_ACQUIRE))
		return;
	__atomic_store_n(&slot->vcpu_waiting, 1, __ATOMIC_SEQ_CST);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	ring_take(in, pd, false);
}

/*
 * Posts pd's event in the channel when it is on (under lock). false: the
 * socket's.
 */
static bool ring_post(struct introspect *in, struct ipend *pd)
{
	struct kvmi_lkvm_chan_slot *slot;

	pd->on_ring = false;
	if (!in->chan_on || pd->len > KVMI_LKVM_SLOT_EVENT_MAX)
		return false;
	slot = chan_slot(in, (unsigned int)(pd - in->pend));
	/* Counted before the tool can see it: a read it sends once it has
	 * is copied at once (run_command()), never sent after this vCPU ran
	 * on with its reply. */
	__atomic_fetch_add(&in->ring_waiting, 1, __ATOMIC_SEQ_CST);
	memcpy(slot->event, pd->msg, pd->len);
	__atomic_store_n(&slot->event_len, (uint32_t)pd->len, __ATOMIC_RELAXED);
	__atomic_store_n(&slot->vcpu_waiting, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&slot->state, KVMI_LKVM_SLOT_EVENT, __ATOMIC_RELEASE);
	pd->on_ring = true;
	pd->ring_taken = false;
	return true;
}

/* On the vCPU's thread once it waits in its event: the event goes out. */
static void event_published(struct vcpu_event *ev)
{
	struct ipend *pd = (struct ipend *)ev->data;
	struct introspect *in = pd->in;
	struct iovec iov = { pd->msg, pd->len };
	bool ok, first;

	pd->poll_hit = false;
	pd->sent_us = kvmi_io_now_us();
	pthread_mutex_lock(&in->lock);
	ok = in->connected && in->gen == pd->gen && pd->p.active;
	if (ok && ring_post(in, pd)) {
		if (ev->kind == KVMI_VCPU_EVENT_PAUSE) {
			pd->pause_queued = false;
			pthread_cond_broadcast(&in->cond);
		}
		/* The tool sleeps: wake it (it says so before it looks at
		 * the slots a last time). */
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (__atomic_load_n(&((struct kvmi_lkvm_chan_hdr *)
					      in->chan_area)->tool_sleeping,
				    __ATOMIC_RELAXED))
			ring_bell(in->bell_fd);
		pthread_mutex_unlock(&in->lock);
		dev_count(&in->ev_sent, pd->len, false);
		await_ring(in, pd);
		return;
	}
	pthread_mutex_unlock(&in->lock);
	pthread_mutex_lock(&in->send_lock);
	pthread_mutex_lock(&in->lock);
	ok = in->connected && in->gen == pd->gen && pd->p.active;
	if (ev->kind == KVMI_VCPU_EVENT_PAUSE) {
		pd->pause_queued = false;
		pthread_cond_broadcast(&in->cond);
	}
	/* Polling for the reply: the reply must not wake the server. */
	pd->polling = ok && pd->poll.cur_us;
	first = pd->polling &&
		__atomic_fetch_add(&in->pollers, 1, __ATOMIC_RELAXED) == 0;
	pthread_mutex_unlock(&in->lock);
	if (ok) {
		ok = kvmi_io_send(in->conn_fd, &iov, 1, -1) == 0;
		dev_count(&in->ev_sent, ok ? pd->len : 0, !ok);
	}
	pthread_mutex_unlock(&in->send_lock);
	/* Disarmed once the event is out, while the tool works on it (a
	 * reply quicker than that wakes the server, which is harmless). */
	if (ok && first) {
		pthread_mutex_lock(&in->lock);
		if (in->connected && in->gen == pd->gen)
			arm_conn(in, false);
		pthread_mutex_unlock(&in->lock);
	}
	if (ok && pd->polling)
		await_reply(in, pd);
	else if (pd->polling)
		poll_end(in, pd, false);
	if (!ok) {
		/* The tool went meanwhile, or cannot be written to: no more
		 * events for it (the server cleans up when it sees it). */
		drop_tool(in, "it does not read its events");
		pthread_mutex_lock(&in->lock);
		if (in->gen == pd->gen)
			__atomic_store_n(&in->connected, false,
					 __ATOMIC_RELEASE);
		pthread_mutex_unlock(&in->lock);
		vcpu_event_reply(ev, KVMI_EVENT_ACTION_CONTINUE);
	}
}

/*
 * Sends event from v's own thread and waits for the tool's reply. Returns
 * its action: CONTINUE when no tool wants the event (no tool, the event
 * is off, the tool went or did not answer in time). forced: sent even
 * though not switched on (PAUSE, TRAP: the tool asked for them). CRASH
 * has already stopped the machine when it returns.
 */
static int vcpu_send_event(struct introspect *in, struct vcpu *v,
			   uint16_t event, const void *data, size_t len,
			   bool forced, int timeout_ms, uint64_t *new_val)
{
	struct ipend *pd = &in->pend[v->id];
	struct kvmi_vcpu_event_arch arch;
	ssize_t n = -1;
	int r;

	if (!__atomic_load_n(&in->connected, __ATOMIC_ACQUIRE))
		return KVMI_EVENT_ACTION_CONTINUE;
	/* An event the tool did not switch on costs no state reads (a
	 * write to a protected page with PF off: lkvm just does it). The
	 * look is repeated under the lock below, where it counts. */
	if (!forced && !(__atomic_load_n(&in->vcpu_events[v->id],
					 __ATOMIC_RELAXED) &
			 kvmi_event_bit(event))) {
		pd->exit_fresh = false;
		return KVMI_EVENT_ACTION_CONTINUE;
	}
	event_arch(in, v, pd->exit_fresh, &arch);
	pd->exit_fresh = false;
	pthread_mutex_lock(&in->lock);
	if (in->connected && !pd->p.active &&
	    (forced || (in->vcpu_events[v->id] & kvmi_event_bit(event))))
		n = kvmi_vcpu_event_build(pd->msg, sizeof(pd->msg),
					  kvmi_next_seq(&in->proto), v->id,
					  event, &arch, data, len, &pd->p);
	if (n < 0) {
		if (event == KVMI_VCPU_EVENT_PAUSE) {
			pd->pause_queued = false;
			pthread_cond_broadcast(&in->cond);
		}
		pthread_mutex_unlock(&in->lock);
		return KVMI_EVENT_ACTION_CONTINUE;
	}
	pd->len = (size_t)n;
	pd->gen = in->gen;
	__atomic_store_n(&pd->answered, false, __ATOMIC_RELAXED);
	pd->ev.kind = event;
	pd->ev.data = pd;
	pd->ev.published = event_published;
	pthread_mutex_unlock(&in->lock);

	r = vcpu_event_wait(v, &pd->ev, timeout_ms);
	/* The polling window follows how fast this tool answers. */
	kvmi_io_poll_update(&pd->poll, kvmi_io_now_us() - pd->sent_us,
			    pd->poll_hit);

	pthread_mutex_lock(&in->lock);
	pd->p.active = false;
	if (pd->on_ring)
		__atomic_fetch_sub(&in->ring_waiting, 1, __ATOMIC_RELEASE);
	pd->on_ring = false;
	if (new_val && pd->answered)
		*new_val = pd->new_val;
	pthread_mutex_unlock(&in->lock);
	if (r == -ETIMEDOUT) {
		drop_tool(in, "it left an event unanswered past the timeout");
		return KVMI_EVENT_ACTION_CONTINUE;
	}
	if (r < 0)
		return KVMI_EVENT_ACTION_CONTINUE;	/* the machine stops */
	if (r == KVMI_EVENT_ACTION_CRASH) {
		pr_warn("introspection: the tool crashed the guest (%s on vCPU %u)",
			kvmi_event_name(event), v->id);
		machine_stop(in->m, LKVM_EXIT_INTROSPECT);
	}
	return r;
}

/* Work on the vCPU: the PAUSE event KVMI_VM_PAUSE_VCPU asked for. */
static void pause_work(struct vcpu *v, void *arg)
{
	struct introspect *in = arg;

	/* A pause lasts as long as the tool wants: no timeout. */
	vcpu_send_event(in, v, KVMI_VCPU_EVENT_PAUSE, NULL, 0, true, -1, NULL);
}

/* Work on the vCPU: the TRAP event after an injected exception. */
static void trap_work(struct vcpu *v, void *arg)
{
	struct introspect *in = arg;
	struct kvmi_vcpu_event_trap t = in->pend[v->id].trap;

	vcpu_send_event(in, v, KVMI_VCPU_EVENT_TRAP, &t, sizeof(t), true,
			in->timeout_ms, NULL);
}

/* ---- write-protected pages ------------------------------------------------- */

static bool is_protected(const struct introspect *in, uint64_t gpa)
{
	uint64_t page = gpa & ~(uint64_t)(KVMI_PAGE_SIZE - 1);
	unsigned int lo = 0, hi = in->nprot;

	while (lo < hi) {
		unsigned int mid = (lo + hi) / 2;

		if (in->prot[mid] == page)
			return true;
		if (in->prot[mid] < page)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/*
 * RAM's MMIO exits: KVM sends here the writes to a page in a read-only
 * slot (a protected page), and any access that falls in a moment when
 * the slots are being replaced. Reads and writes are done on guest RAM,
 * a write to a protected page after the tool's PF event allows it.
 */
static void ram_access(struct io_region *r, struct kvm_vcpu *kv,
		       uint64_t off, void *data, unsigned int len,
		       bool is_write)
{
	struct introspect *in = r->opaque;
	struct vcpu *v = kvm_vcpu_opaque(kv);
	uint64_t gpa = r->base + off;
	void *p = guest_ptr(in->m, gpa, len);
	bool prot;

	if (!p)
		return;
	if (!is_write) {
		memcpy(data, p, len);
		return;
	}
	pthread_mutex_lock(&in->lock);
	prot = is_protected(in, gpa);
	pthread_mutex_unlock(&in->lock);
	if (prot) {
		struct kvmi_vcpu_event_pf pf = {
			.gva = ~0ull, .gpa = gpa, .access = KVMI_PAGE_ACCESS_W,
		};
		struct ipend *pd = &in->pend[v->id];
		int act;

		pd->pf_gpa = gpa;
		pd->exit_fresh = true;
		act = vcpu_send_event(in, v, KVMI_VCPU_EVENT_PF, &pf,
					  sizeof(pf), false, in->timeout_ms,
					  NULL);

		if (act == KVMI_EVENT_ACTION_CRASH)
			return;
		/*
		 * KVM finished the instruction when it exited, so RETRY
		 * cannot execute it again; lkvm does what retrying would
		 * do: the write lands if the tool lifted the protection
		 * meanwhile, and is refused if the page is still protected.
		 */
		if (act == KVMI_EVENT_ACTION_RETRY) {
			pthread_mutex_lock(&in->lock);
			prot = !pd->retry_lands;
			pthread_mutex_unlock(&in->lock);
			if (prot)
				return;
		}
	}
	memcpy(p, data, len);
}

/* The slots RAM needs for the protected pages in in->prot. */
static unsigned int plan_pieces(struct introspect *in, struct piece *out)
{
	struct machine *m = in->m;
	unsigned int n = 0, k = 0;

	for (unsigned int i = 0; i < m->nmem; i++) {
		const struct mem_region *mr = &m->mem[i];
		uint64_t at = mr->gpa, end = mr->gpa + mr->size;

		if (mr->readonly)
			continue;
		while (k < in->nprot && in->prot[k] < at)
			k++;
		while (at < end) {
			uint64_t next = end;
			bool ro = k < in->nprot && in->prot[k] == at;

			if (ro) {
				next = at;
				while (k < in->nprot && in->prot[k] == next &&
				       next < end) {
					next += KVMI_PAGE_SIZE;
					k++;
				}
			} else if (k < in->nprot && in->prot[k] < end) {
				next = in->prot[k];
			}
			out[n++] = (struct piece){
				at, next - at, (char *)mr->host + (at - mr->gpa),
				ro,
			};
			at = next;
		}
	}
	return n;
}

/*
 * Puts RAM in KVM's slots as in->prot says: each run of protected pages
 * a read-only slot. Every vCPU is held meanwhile (a vCPU must not fetch
 * code from a slot that is gone). 0 or -KVM_E*.
 */
static int apply_protection(struct introspect *in)
{
	static struct piece plan[MAX_PIECES];
	struct machine *m = in->m;
	unsigned int n;
	int err = 0, max_slots;

	pthread_mutex_lock(&in->lock);
	n = plan_pieces(in, plan);
	pthread_mutex_unlock(&in->lock);
	max_slots = kvm_check_extension(m->kvm, KVM_CAP_NR_MEMSLOTS);
	if (max_slots > 0 && SLOT_BASE + n > (unsigned int)max_slots)
		return -KVM_ENOMEM;
	if (machine_hold_all(m, VCPU_HOLD_INTROSPECT, HOLD_MS)) {
		machine_release_all(m, VCPU_HOLD_INTROSPECT);
		return -KVM_EBUSY;
	}
	/* Out with the old slots, in with the new. */
	if (in->slots_split) {
		for (unsigned int i = 0; i < in->npieces; i++)
			kvm_set_memory_region(m->kvm, SLOT_BASE + i,
					      in->pieces[i].gpa, 0,
					      in->pieces[i].host, 0);
	} else {
		for (unsigned int i = 0; i < m->nmem; i++)
			if (!m->mem[i].readonly)
				kvm_set_memory_region(m->kvm, m->mem[i].slot,
						      m->mem[i].gpa, 0,
						      m->mem[i].host, 0);
	}
	for (unsigned int i = 0; i < n && !err; i++)
		err = kvm_set_memory_region(m->kvm, SLOT_BASE + i, plan[i].gpa,
					    plan[i].size, plan[i].host,
					    plan[i].readonly ?
						    KVM_MEM_READONLY : 0);
	if (err) {
		/* Back to the machine's own slots, or the guest has no RAM. */
		for (unsigned int i = 0; i < n; i++)
			kvm_set_memory_region(m->kvm, SLOT_BASE + i,
					      plan[i].gpa, 0, plan[i].host, 0);
		for (unsigned int i = 0; i < m->nmem; i++)
			if (!m->mem[i].readonly &&
			    kvm_set_memory_region(m->kvm, m->mem[i].slot,
						  m->mem[i].gpa,
						  m->mem[i].size,
						  m->mem[i].host, 0)) {
				pr_err("introspection: guest RAM lost its memory slots");
				machine_stop(m, LKVM_EXIT_CRASH);
			}
		in->slots_split = false;
		in->npieces = 0;
		pthread_mutex_lock(&in->lock);
		in->nprot = 0;
		pthread_mutex_unlock(&in->lock);
		err = -KVM_ENOMEM;
	} else {
		memcpy(in->pieces, plan, n * sizeof(plan[0]));
		in->npieces = n;
		in->slots_split = true;
	}
	machine_release_all(m, VCPU_HOLD_INTROSPECT);
	return err;
}

/* ---- intercepted MSR writes ------------------------------------------------ */

/* Sends the writes of in->msrs to user space, and no others. */
static int apply_msr_filter(struct introspect *in)
{
	static const uint8_t deny;	/* bit 0 clear: refused by the filter */
	struct kvm_msr_filter f = { .flags = KVM_MSR_FILTER_DEFAULT_ALLOW };

	for (unsigned int i = 0; i < in->nmsrs; i++)
		f.ranges[i] = (struct kvm_msr_filter_range){
			.flags = KVM_MSR_FILTER_WRITE,
			.nmsrs = 1,
			.base = in->msrs[i],
			.bitmap = (uint8_t *)&deny,
		};
	return kvm_set_msr_filter(in->m->kvm, &f) ? -KVM_EINVAL : 0;
}

/* The machine's WRMSR hook: a write the filter refused (an MSR event). */
static int introspect_wrmsr(struct machine *m, struct vcpu *v, uint32_t index,
			    uint64_t data);

static bool do_get_registers(struct introspect *in, const struct kvmi_req *r,
			     struct vcpu *v)
{
	unsigned int n = r->a.get_registers.nmsrs;
	struct kvmi_vcpu_get_registers_reply *rep = (void *)in->out;
	struct kvm_msr_entry *e;
	struct vcpu_regs s;
	size_t len = sizeof(*rep) + n * sizeof(*e);
	uint8_t *data;
	int err;

	if (len > KVMI_MAX_MSG_SIZE - sizeof(struct kvmi_error_code))
		return reply(in, r, -KVM_E2BIG, NULL, 0);
	data = calloc(1, len);
	if (!data)
		return reply(in, r, -KVM_ENOMEM, NULL, 0);
	rep = (void *)data;
	e = (struct kvm_msr_entry *)(data + sizeof(*rep));
	for (unsigned int i = 0; i < n; i++)
		memcpy(&e[i].index, r->args_tail + i * sizeof(__u32),
		       sizeof(__u32));
	err = hold(in, v);
	if (!err) {
		if (vcpu_get_state(v, VCPU_STATE_REGS | VCPU_STATE_SREGS, &s) ||
		    (n && kvm_get_msrs(v->kvm, e, n)))
			err = -KVM_EINVAL;
		vcpu_release(v, VCPU_HOLD_INTROSPECT);
	}
	if (!err) {
		rep->mode = vcpu_mode(&s.sregs);
		rep->regs = s.regs;
		rep->sregs = s.sregs;
		rep->msrs.nmsrs = n;
	}
	bool ok = reply(in, r, err, data, len);

	free(data);
	return ok;
}

static bool do_get_cpuid(struct introspect *in, const struct kvmi_req *r,
			 struct vcpu *v)
{
	enum { NENT = 256 };
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + NENT * sizeof(c->entries[0]));
	struct kvmi_vcpu_get_cpuid_reply rep = { 0 };
	int err;

	if (!c)
		return reply(in, r, -KVM_ENOMEM, NULL, 0);
	c->nent = NENT;
	err = hold(in, v);
	if (!err) {
		if (ioctl(kvm_vcpu_fd(v->kvm), KVM_GET_CPUID2, c) < 0)
			err = -KVM_EINVAL;
		vcpu_release(v, VCPU_HOLD_INTROSPECT);
	}
	if (!err) {
		err = -KVM_ENOENT;
		for (unsigned int i = 0; i < c->nent; i++) {
			const struct kvm_cpuid_entry2 *x = &c->entries[i];

			if (x->function != r->a.get_cpuid.function ||
			    ((x->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) &&
			     x->index != r->a.get_cpuid.index))
				continue;
			rep.eax = x->eax;
			rep.ebx = x->ebx;
			rep.ecx = x->ecx;
			rep.edx = x->edx;
			err = 0;
			break;
		}
	}
	free(c);
	return reply(in, r, err, &rep, sizeof(rep));
}

static bool do_translate(struct introspect *in, const struct kvmi_req *r,
			 struct vcpu *v)
{
	struct kvmi_vcpu_translate_gva_reply rep = { ~0ull };
	uint64_t gpa;
	int err = hold(in, v);

	if (!err) {
		if (!arch_translate(in->m, v, r->a.translate_gva.gva, &gpa))
			rep.gpa = gpa;
		vcpu_release(v, VCPU_HOLD_INTROSPECT);
	}
	return reply(in, r, err, &rep, sizeof(rep));
}

static bool do_vcpu_info(struct introspect *in, const struct kvmi_req *r,
			 struct vcpu *v)
{
	struct kvmi_vcpu_get_info_reply rep = { 0 };
	int khz, err = hold(in, v);

	if (!err) {
		khz = ioctl(kvm_vcpu_fd(v->kvm), KVM_GET_TSC_KHZ);
		if (khz > 0)
			rep.tsc_speed = (uint64_t)khz * 1000;
		vcpu_release(v, VCPU_HOLD_INTROSPECT);
	}
	return reply(in, r, err, &rep, sizeof(rep));
}

static int introspect_wrmsr(struct machine *m, struct vcpu *v, uint32_t index,
			    uint64_t data)
{
	struct introspect_cfg *cfg = machine_dev_cfg(m, &introspect_ops);
	struct introspect *in = cfg ? cfg->in : NULL;
	struct kvmi_vcpu_event_msr ev = { .msr = index, .new_value = data };
	struct kvm_msr_entry e = { .index = index };
	uint64_t val = data;
	int act;

	if (!in)
		return KVM_MSR_FAULT;
	if (!kvm_get_msrs(v->kvm, &e, 1))
		ev.old_value = e.data;
	in->pend[v->id].exit_fresh = true;
	/* val stays the guest's unless the tool answers with its new_val. */
	act = vcpu_send_event(in, v, KVMI_VCPU_EVENT_MSR, &ev, sizeof(ev),
			      false, in->timeout_ms, &val);
	if (act == KVMI_EVENT_ACTION_CRASH)
		return KVM_CONTINUE;
	if (val == ev.old_value)
		return KVM_CONTINUE;	/* refused, or nothing changes */
	e.data = val;
	return kvm_set_msrs(v->kvm, &e, 1) ? KVM_MSR_FAULT : KVM_CONTINUE;
}

/* The agent's doorbell: a 32-bit OUT sends KVMI_LKVM_VCPU_EVENT_AGENT. */
static void agent_doorbell(struct io_region *r, struct kvm_vcpu *kv,
			   uint64_t off, void *data, unsigned int len,
			   bool is_write)
{
	struct introspect *in = r->opaque;
	struct kvmi_lkvm_vcpu_event_agent ev = { 0 };

	if (!is_write) {
		/* Reads say whether a tool listens: 1, else 0. */
		uint32_t on = __atomic_load_n(&in->connected, __ATOMIC_ACQUIRE);

		memcpy(data, &on, len < 4 ? len : 4);
		return;
	}
	if (off || len != 4)
		return;			/* only a 32-bit OUT rings */
	memcpy(&ev.value, data, 4);
	in->pend[((struct vcpu *)kvm_vcpu_opaque(kv))->id].exit_fresh = true;
	vcpu_send_event(in, kvm_vcpu_opaque(kv), KVMI_LKVM_VCPU_EVENT_AGENT,
			&ev, sizeof(ev), false, in->timeout_ms, NULL);
}

static void *writable_ptr(struct machine *m, uint64_t gpa, uint64_t len);
static bool do_map_memory(struct introspect *in, const struct kvmi_req *r);
static bool do_event_channel(struct introspect *in, const struct kvmi_req *r);
static void chan_close(struct introspect *in);

static bool writable_ram(struct machine *m, uint64_t page)
{
	return writable_ptr(m, page, KVMI_PAGE_SIZE) != NULL;
}

/* ---- breakpoints and single steps (the vCPU guest-debug layer) -------------------- */

/*
 * On the vCPU's thread, for a debug exit routed to introspection: a
 * SINGLESTEP event for the tool's step, a BREAKPOINT event for its
 * breakpoint (hardware: insn_len 0) or an int3 (insn_len 1).
 */
static int debug_hit(struct vcpu *v, enum vcpu_debug_owner who,
		     const struct vcpu_debug_hit *hit, void *opaque)
{
	struct introspect *in = opaque;
	int act, ret = VCPU_DEBUG_RESUME;

	(void)who;
	/* The tool has gone (or is going): what it set goes now, from here,
	 * rather than once the server has cleaned up. */
	if (!__atomic_load_n(&in->connected, __ATOMIC_ACQUIRE)) {
		if (hit->step)
			vcpu_debug_set_step(v, VCPU_DEBUG_KVMI, false);
		return VCPU_DEBUG_RESUME;
	}
	if (hit->step) {
		struct kvmi_vcpu_event_singlestep ss = { .failed = 0 };

		vcpu_send_event(in, v, KVMI_VCPU_EVENT_SINGLESTEP, &ss,
				sizeof(ss), true, in->timeout_ms, NULL);
	}
	if (hit->nbp || hit->sw_bp) {
		struct kvmi_vcpu_event_breakpoint bp = {
			.gpa = ~0ull, .insn_len = hit->sw_bp ? 1 : 0,
		};
		uint64_t gpa;

		if (!arch_translate(in->m, v, hit->pc, &gpa))
			bp.gpa = gpa;
		act = vcpu_send_event(in, v, KVMI_VCPU_EVENT_BREAKPOINT, &bp,
				      sizeof(bp), false, in->timeout_ms, NULL);
		/* An int3 is the guest's own unless the tool retries:
		 * CONTINUE gives it its #BP. lkvm's hardware breakpoints
		 * are the tool's: the guest never sees them. */
		if (hit->sw_bp && act == KVMI_EVENT_ACTION_CONTINUE)
			ret = VCPU_DEBUG_REINJECT;
	}
	return ret;
}

static bool do_set_breakpoint(struct introspect *in, const struct kvmi_req *r)
{
	struct vcpu_bp bp = {
		.addr = r->a.set_breakpoint.gva, .type = VCPU_BP_EXEC, .len = 1,
	};
	int err = r->a.set_breakpoint.enable ?
			  machine_debug_add_bp(in->m, VCPU_DEBUG_KVMI, &bp) :
			  machine_debug_del_bp(in->m, VCPU_DEBUG_KVMI, &bp);

	return reply(in, r, err == -ENOSPC ? -KVM_ENOMEM :
			    err == -ENOENT ? -KVM_ENOENT :
			    err ? -KVM_EINVAL : 0, NULL, 0);
}

static bool do_singlestep(struct introspect *in, const struct kvmi_req *r,
			  struct vcpu *v)
{
	int err = vcpu_debug_set_step(v, VCPU_DEBUG_KVMI,
				      r->a.control_singlestep.enable);

	return reply(in, r, err ? -KVM_EOPNOTSUPP : 0, NULL, 0);
}

/* ---- commands that act on events and vCPUs ---------------------------------- */

static bool do_pause(struct introspect *in, const struct kvmi_req *r)
{
	unsigned int id = r->a.pause_vcpu.vcpu;
	struct vcpu *v = &in->m->vcpus[id];
	struct ipend *pd = &in->pend[id];
	struct timespec ts;
	bool queue;
	int err = 0;

	if (vcpu_state(v) == VCPU_STATE_CREATED)
		return reply(in, r, -KVM_EAGAIN, NULL, 0);
	/* One PAUSE event however often the tool asks before it comes. */
	pthread_mutex_lock(&in->lock);
	queue = !pd->pause_queued;
	pd->pause_queued = true;
	pthread_mutex_unlock(&in->lock);
	if (queue && vcpu_run_on(v, pause_work, in, false)) {
		pthread_mutex_lock(&in->lock);
		pd->pause_queued = false;
		pthread_mutex_unlock(&in->lock);
		return reply(in, r, -KVM_ENOMEM, NULL, 0);
	}
	if (r->a.pause_vcpu.wait) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += HOLD_MS / 1000;
		pthread_mutex_lock(&in->lock);
		while (pd->pause_queued &&
		       pthread_cond_timedwait(&in->cond, &in->lock, &ts) !=
			       ETIMEDOUT)
			;
		if (pd->pause_queued)
			err = -KVM_EBUSY;
		pthread_mutex_unlock(&in->lock);
	}
	return reply(in, r, err, NULL, 0);
}

/* Whether the tool may act on v's event: it is waiting in one. */
static bool in_event(struct introspect *in, unsigned int vcpu)
{
	bool active;

	pthread_mutex_lock(&in->lock);
	active = in->pend[vcpu].p.active;
	pthread_mutex_unlock(&in->lock);
	return active;
}

static bool do_set_registers(struct introspect *in, const struct kvmi_req *r,
			     struct vcpu *v)
{
	struct vcpu_regs s;
	int err = -KVM_EOPNOTSUPP;	/* only while the vCPU is in an event */

	if (in_event(in, r->vcpu)) {
		s.regs = r->a.set_registers;
		err = vcpu_set_state(v, VCPU_STATE_REGS, &s) ? -KVM_EINVAL : 0;
	}
	return reply(in, r, err, NULL, 0);
}

/* Exceptions that push an error code. */
static bool has_error_code(unsigned int nr)
{
	return nr == 8 || (nr >= 10 && nr <= 14) || nr == 17 || nr == 21 ||
	       nr == 29 || nr == 30;
}

static bool do_inject(struct introspect *in, const struct kvmi_req *r,
		      struct vcpu *v)
{
	const struct kvmi_vcpu_inject_exception *x = &r->a.inject_exception;
	struct vcpu_regs s;
	int err = hold(in, v);
	bool held = !err;

	if (!err) {
		if (vcpu_get_state(v, VCPU_STATE_EVENTS | VCPU_STATE_SREGS, &s))
			err = -KVM_EINVAL;
		else if (s.events.exception.injected ||
			 s.events.exception.pending)
			err = -KVM_EBUSY;	/* one is on its way already */
	}
	if (!err) {
		s.events.exception.injected = 1;
		s.events.exception.nr = x->nr;
		s.events.exception.has_error_code = has_error_code(x->nr);
		s.events.exception.error_code = x->error_code;
		s.events.flags = 0;
		s.sregs.cr2 = x->nr == 14 ? x->address : s.sregs.cr2;
		if (vcpu_set_state(v, VCPU_STATE_EVENTS | VCPU_STATE_SREGS, &s))
			err = -KVM_EINVAL;
	}
	if (held)
		vcpu_release(v, VCPU_HOLD_INTROSPECT);
	if (!err) {
		/* The TRAP event follows, from the vCPU, as it delivers it. */
		in->pend[r->vcpu].trap = (struct kvmi_vcpu_event_trap){
			.nr = x->nr, .error_code = x->error_code,
			.address = x->address,
		};
		if (vcpu_run_on(v, trap_work, in, false))
			err = -KVM_ENOMEM;
	}
	return reply(in, r, err, NULL, 0);
}

static bool do_get_xcr(struct introspect *in, const struct kvmi_req *r,
		       struct vcpu *v)
{
	struct kvmi_vcpu_get_xcr_reply rep = { 0 };
	struct kvm_xcrs x;
	int err = hold(in, v);

	if (!err) {
		memset(&x, 0, sizeof(x));
		if (ioctl(kvm_vcpu_fd(v->kvm), KVM_GET_XCRS, &x) < 0)
			err = -KVM_EOPNOTSUPP;
		vcpu_release(v, VCPU_HOLD_INTROSPECT);
	}
	if (!err) {
		err = -KVM_EINVAL;
		for (unsigned int i = 0; i < x.nr_xcrs && i < KVM_MAX_XCRS; i++)
			if (x.xcrs[i].xcr == r->a.get_xcr.xcr) {
				rep.value = x.xcrs[i].value;
				err = 0;
			}
	}
	return reply(in, r, err, &rep, sizeof(rep));
}

static bool do_get_xsave(struct introspect *in, const struct kvmi_req *r,
			 struct vcpu *v)
{
	static struct kvm_xsave x;	/* this thread's only */
	int err = hold(in, v);

	if (!err) {
		memset(&x, 0, sizeof(x));
		if (ioctl(kvm_vcpu_fd(v->kvm), KVM_GET_XSAVE, &x) < 0)
			err = -KVM_EOPNOTSUPP;
		vcpu_release(v, VCPU_HOLD_INTROSPECT);
	}
	return reply(in, r, err, &x, sizeof(x));
}

static bool do_control_events(struct introspect *in, const struct kvmi_req *r)
{
	uint16_t id = r->has_vcpu ? r->a.vcpu_control_events.event_id :
				    r->a.vm_control_events.event_id;
	bool on = r->has_vcpu ? r->a.vcpu_control_events.enable :
				r->a.vm_control_events.enable;
	uint64_t bp = kvmi_event_bit(KVMI_VCPU_EVENT_BREAKPOINT), any = 0;

	pthread_mutex_lock(&in->lock);
	if (!r->has_vcpu)
		in->unhook = on;	/* the one VM event */
	else if (on)	/* atomic: vcpu_send_event() looks without the lock */
		__atomic_or_fetch(&in->vcpu_events[r->vcpu],
				  kvmi_event_bit(id), __ATOMIC_RELAXED);
	else
		__atomic_and_fetch(&in->vcpu_events[r->vcpu],
				   ~kvmi_event_bit(id), __ATOMIC_RELAXED);
	for (unsigned int i = 0; i < in->m->ncpus; i++)
		any |= in->vcpu_events[i] & bp;
	pthread_mutex_unlock(&in->lock);
	/* Where the host intercepts int3, the guest's int3s are events. */
	if (id == KVMI_VCPU_EVENT_BREAKPOINT)
		machine_debug_set_sw_bp(in->m, VCPU_DEBUG_KVMI, any != 0);
	return reply(in, r, 0, NULL, 0);
}

static bool do_set_page_access(struct introspect *in, const struct kvmi_req *r)
{
	uint64_t saved[MAX_PROTECTED];
	unsigned int nsaved, count = r->a.set_page_access.count;
	int err = 0;

	pthread_mutex_lock(&in->lock);
	memcpy(saved, in->prot, sizeof(saved));
	nsaved = in->nprot;
	for (unsigned int i = 0; i < count && !err; i++) {
		struct kvmi_page_access_entry e;
		uint64_t page;
		unsigned int k = 0;

		memcpy(&e, r->args_tail + i * sizeof(e), sizeof(e));
		page = e.gpa & ~(uint64_t)(KVMI_PAGE_SIZE - 1);
		if (!writable_ram(in->m, page)) {
			err = -KVM_EINVAL;
			break;
		}
		while (k < in->nprot && in->prot[k] < page)
			k++;
		if (e.access == 7 && k < in->nprot && in->prot[k] == page) {
			memmove(&in->prot[k], &in->prot[k + 1],
				(in->nprot - k - 1) * sizeof(in->prot[0]));
			in->nprot--;
		} else if (e.access != 7 &&
			   !(k < in->nprot && in->prot[k] == page)) {
			if (in->nprot == MAX_PROTECTED) {
				err = -KVM_ENOMEM;
				break;
			}
			memmove(&in->prot[k + 1], &in->prot[k],
				(in->nprot - k) * sizeof(in->prot[0]));
			in->prot[k] = page;
			in->nprot++;
		}
	}
	if (err) {
		memcpy(in->prot, saved, sizeof(saved));
		in->nprot = nsaved;
	}
	pthread_mutex_unlock(&in->lock);
	if (!err)
		err = apply_protection(in);
	return reply(in, r, err, NULL, 0);
}

static bool do_control_msr(struct introspect *in, const struct kvmi_req *r)
{
	uint32_t msr = r->a.control_msr.msr;
	unsigned int k;
	int err = 0;

	if (!in->user_msr)
		return reply(in, r, -KVM_EOPNOTSUPP, NULL, 0);
	for (k = 0; k < in->nmsrs && in->msrs[k] != msr; k++)
		;
	if (r->a.control_msr.enable && k == in->nmsrs) {
		if (in->nmsrs == MAX_MSRS)
			return reply(in, r, -KVM_ENOMEM, NULL, 0);
		in->msrs[in->nmsrs++] = msr;
	} else if (!r->a.control_msr.enable && k < in->nmsrs) {
		in->msrs[k] = in->msrs[--in->nmsrs];
	} else {
		return reply(in, r, 0, NULL, 0);
	}
	err = apply_msr_filter(in);
	if (err && r->a.control_msr.enable)
		in->nmsrs--;
	return reply(in, r, err, NULL, 0);
}

/* Whether [gpa, gpa + len) lies in writable RAM; its host address. */
static void *writable_ptr(struct machine *m, uint64_t gpa, uint64_t len)
{
	for (unsigned int i = 0; i < m->nmem; i++) {
		const struct mem_region *mr = &m->mem[i];

		if (gpa >= mr->gpa && gpa - mr->gpa < mr->size)
			return mr->readonly ? NULL : guest_ptr(m, gpa, len);
	}
	return NULL;
}

/* Runs one valid command; false when the connection must close. */
static bool run_command(struct introspect *in, const struct kvmi_req *r)
{
	struct machine *m = in->m;
	struct vcpu *v = r->has_vcpu ? &m->vcpus[r->vcpu] : NULL;

	switch (r->hdr.id) {
	case KVMI_GET_VERSION: {
		struct kvmi_get_version_reply rep = {
			.version = KVMI_VERSION,
			.max_msg_size = KVMI_MAX_MSG_SIZE,
		};
		return reply(in, r, 0, &rep, sizeof(rep));
	}
	case KVMI_VM_CHECK_COMMAND:
		return reply(in, r,
			     kvmi_proto_check_command(&in->proto,
						      r->a.check_command.id),
			     NULL, 0);
	case KVMI_VM_CHECK_EVENT:
		return reply(in, r,
			     kvmi_proto_check_event(&in->proto,
						    r->a.check_event.id),
			     NULL, 0);
	case KVMI_VM_CONTROL_EVENTS:
	case KVMI_VCPU_CONTROL_EVENTS:
		return do_control_events(in, r);
	case KVMI_VM_SET_PAGE_ACCESS:
		return do_set_page_access(in, r);
	case KVMI_VCPU_SET_REGISTERS:
		return do_set_registers(in, r, v);
	case KVMI_VCPU_INJECT_EXCEPTION:
		return do_inject(in, r, v);
	case KVMI_VCPU_GET_XCR:
		return do_get_xcr(in, r, v);
	case KVMI_VCPU_GET_XSAVE:
		return do_get_xsave(in, r, v);
	case KVMI_VCPU_CONTROL_MSR:
		return do_control_msr(in, r);
	case KVMI_LKVM_VM_MAP_MEMORY:
		return do_map_memory(in, r);
	case KVMI_LKVM_VM_SET_BREAKPOINT:
		return do_set_breakpoint(in, r);
	case KVMI_LKVM_VM_EVENT_CHANNEL:
		return do_event_channel(in, r);
	case KVMI_VCPU_CONTROL_SINGLESTEP:
		return do_singlestep(in, r, v);
	case KVMI_VM_GET_INFO: {
		struct kvmi_vm_get_info_reply rep = { .vcpu_count = m->ncpus };
		return reply(in, r, 0, &rep, sizeof(rep));
	}
	case KVMI_VM_READ_PHYSICAL: {
		const void *p = guest_ptr(m, r->a.read_physical.gpa,
					  r->a.read_physical.size);

		if (!p)
			return reply(in, r, -KVM_EFAULT, NULL, 0);
		/* Read as it goes out (the guest may write it meanwhile),
		 * unless a vCPU waits for its event's reply on its own (it
		 * polls the socket, or the event is in the event channel):
		 * it may take it and run on before then; a copy now. */
		if (__atomic_load_n(&in->pollers, __ATOMIC_ACQUIRE) ||
		    __atomic_load_n(&in->ring_waiting, __ATOMIC_ACQUIRE))
			return reply(in, r, 0, p, r->a.read_physical.size);
		return reply_ram(in, r, p, r->a.read_physical.size);
	}
	case KVMI_VM_WRITE_PHYSICAL: {
		void *p = writable_ptr(m, r->a.write_physical.gpa,
				       r->a.write_physical.size);

		if (p)
			memcpy(p, r->args_tail, r->a.write_physical.size);
		return reply(in, r, p ? 0 : -KVM_EFAULT, NULL, 0);
	}
	case KVMI_VM_PAUSE_VCPU:
		return do_pause(in, r);
	case KVMI_VCPU_GET_INFO:
		return do_vcpu_info(in, r, v);
	case KVMI_VCPU_GET_REGISTERS:
		return do_get_registers(in, r, v);
	case KVMI_VCPU_GET_CPUID:
		return do_get_cpuid(in, r, v);
	case KVMI_VCPU_TRANSLATE_GVA:
		return do_translate(in, r, v);
	default:
		return reply(in, r, -KVM_ENOSYS, NULL, 0);
	}
}

/* ---- the connection ----------------------------------------------------------- */

/*
 * Lets go of everything the tool set, however it went: no event is sent
 * any more, pending ones are answered CONTINUE, pages and MSRs are
 * released. The guest runs on.
 */
static void cleanup(struct introspect *in)
{
	struct machine *m = in->m;
	bool had_prot, had_msrs;

	pthread_mutex_lock(&in->lock);
	__atomic_store_n(&in->connected, false, __ATOMIC_RELEASE);
	in->chan_on = false;	/* no event goes in it any more */
	in->unhook = false;
	for (unsigned int i = 0; i < m->ncpus; i++)
		__atomic_store_n(&in->vcpu_events[i], 0, __ATOMIC_RELAXED);
	had_prot = in->nprot || in->slots_split;
	in->nprot = 0;
	had_msrs = in->nmsrs;
	in->nmsrs = 0;
	pthread_cond_broadcast(&in->cond);
	pthread_mutex_unlock(&in->lock);
	/* A vCPU that has not published its event yet sees !connected. */
	for (unsigned int i = 0; i < m->ncpus; i++)
		if (in->pend[i].ev.v)	/* it has been in an event */
			vcpu_event_reply(&in->pend[i].ev,
					 KVMI_EVENT_ACTION_CONTINUE);
	if (had_prot && apply_protection(in))
		pr_warn("introspection: could not release the protected pages");
	if (had_msrs)
		apply_msr_filter(in);
	machine_debug_clear(m, VCPU_DEBUG_KVMI);
}

/* An event reply: false when it is malformed or answers nothing. */
static bool event_reply(struct introspect *in, const struct kvmi_req *r)
{
	struct ipend *pd = &in->pend[r->vcpu];
	int err;

	pthread_mutex_lock(&in->lock);
	err = kvmi_event_reply_check(&pd->p, r);
	if (!err) {
		if (r->args_len == sizeof(pd->new_val))
			memcpy(&pd->new_val, r->args, sizeof(pd->new_val));
		__atomic_store_n(&pd->answered, true, __ATOMIC_RELEASE);
		pd->p.active = false;
		/* Whether the page is still protected as the tool replies,
		 * not once the tool has gone (and the page with it). */
		pd->retry_lands = !is_protected(in, pd->pf_gpa);
		/* Still under the lock: a vCPU whose event timed out just now
		 * cannot be in its next one (vcpu_send_event() takes the lock
		 * first), which this reply would answer otherwise. */
		vcpu_event_reply(&pd->ev, r->action);
	}
	pthread_mutex_unlock(&in->lock);
	return !err;
}

static bool stop_requested(struct introspect *in, short revents)
{
	return (revents & POLLIN) || machine_stopping(in->m);
}

/* The server's epoll, what each entry is. */
enum { EP_CONN, EP_STOP, EP_LISTEN, EP_KICK, EP_BELL };

/* The replies waiting in the event channel, for vCPUs that sleep. */
static void ring_take_all(struct introspect *in)
{
	for (unsigned int i = 0; i < in->m->ncpus; i++)
		ring_take(in, &in->pend[i], true);
}

/* The tool rang the doorbell. */
static void bell_rung(struct introspect *in)
{
	char b[64];

	/* One ring: any more wake the next epoll_wait() at once. */
	(void)!recv(in->bell_fd, b, sizeof(b), MSG_DONTWAIT);
	ring_take_all(in);
}

/* The next message from the tool, if one comes within timeout_ms. */
static int read_next(struct introspect *in, int timeout_ms, size_t *len)
{
	int err;

	pthread_mutex_lock(&in->read_lock);
	err = kvmi_io_recv_buffered(in->conn_fd, &in->rbuf, in->buf,
				    sizeof(in->buf), timeout_ms, len);
	pthread_mutex_unlock(&in->read_lock);
	return err;
}

static void serve(struct introspect *in)
{
	bool more = false;	/* the last read found a message: try again */

	for (;;) {
		struct epoll_event evs[4];
		bool readable = false, stop = false, newcomer = false;
		struct kvmi_req r;
		uint64_t kicks;
		size_t len;
		int n, err;

		/* A tool that sends several commands at once gets them read
		 * back to back, without a poll() each. */
		if (more && !machine_stopping(in->m)) {
			err = read_next(in, 0, &len);
			more = !err;
			if (!err)
				goto got;
			if (err != -ETIMEDOUT && err != -EINTR)
				return;
		}
		/* Nothing more to read now: the replies go out. */
		if (!flush_replies(in))
			return;
		n = epoll_wait(in->epfd, evs, 4, POLL_MS);
		if (n < 0 && errno != EINTR)
			return;
		for (int i = 0; i < n; i++) {
			readable |= evs[i].data.u32 == EP_CONN;
			stop |= evs[i].data.u32 == EP_STOP;
			newcomer |= evs[i].data.u32 == EP_LISTEN;
			if (evs[i].data.u32 == EP_BELL)
				bell_rung(in);
			/* A polling vCPU left messages in rbuf. */
			if (evs[i].data.u32 == EP_KICK) {
				(void)!read(in->kick_fd, &kicks, sizeof(kicks));
				more = true;
			}
		}
		if (stop_requested(in, stop ? POLLIN : 0))
			return;
		/* One tool at a time: a second one is turned away, once the
		 * first is seen alive (one that is closing is handled first,
		 * so that a tool reconnecting at once is served next; a
		 * hang-up shows even while a polling vCPU has the socket). */
		if (newcomer && !readable) {
			int c = accept4(in->listen_fd, NULL, NULL, SOCK_CLOEXEC);

			if (c >= 0)
				close(c);
		}
		if (more || !readable)
			continue;
		/* Readable, but a polling vCPU may have taken it since: one
		 * look (the rest of a message begun is waited for). */
		err = read_next(in, 0, &len);
		if (err == -ETIMEDOUT || err == -EINTR)
			continue;
		if (err)
			return;		/* gone, cut short, stalled, oversized */
		more = true;
got:
		if (kvmi_parse(&in->proto, in->buf, len, &r) < 0)
			return;
		/* Queued reads take guest RAM as they go out: they go before
		 * anything that may change it (a write, an event reply that
		 * lets a vCPU run on). */
		if (in->out_ram && (r.kind != KVMI_REQ_COMMAND ||
				    r.hdr.id != KVMI_VM_READ_PHYSICAL) &&
		    !flush_replies(in))
			return;
		if (r.kind != KVMI_REQ_COMMAND) {
			if (!event_reply(in, &r))
				return;	/* a bad reply closes */
			continue;
		}
		if (r.error ? !reply(in, &r, r.error, NULL, 0) :
			      !run_command(in, &r))
			return;
	}
}

/* A connected socket: the handshake, then the commands until it ends. */
static void session(struct introspect *in, int fd)
{
	struct epoll_event ep = { .events = EPOLLIN };
	int err;

	err = kvmi_io_handshake_vmm(fd, in->cookie, in->cookie_len, &in->info,
				    HANDSHAKE_MS);
	if (err) {
		pr_warn("introspection: handshake failed: %s",
			err == -EACCES ? "the tool does not know the cookie" :
					 strerror(-err));
		close(fd);
		return;
	}
	ep.data.u32 = EP_CONN;
	if (epoll_ctl(in->epfd, EPOLL_CTL_ADD, fd, &ep) < 0) {
		pr_warn("introspection: %s", strerror(errno));
		close(fd);
		return;
	}
	pthread_mutex_lock(&in->read_lock);
	pthread_mutex_lock(&in->send_lock);
	pthread_mutex_lock(&in->lock);
	in->rbuf.start = in->rbuf.end = 0;
	in->conn_fd = fd;
	in->gen++;
	__atomic_store_n(&in->pollers, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&in->connected, true, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&in->lock);
	pthread_mutex_unlock(&in->send_lock);
	pthread_mutex_unlock(&in->read_lock);
	out_clear(in);
	serve(in);
	flush_replies(in);	/* what was answered before it ended */
	/* Replies the tool wrote in the channel before it went count, as
	 * those it sent on the socket before closing do (the doorbell, or
	 * the vCPU's next look, may not have come first). */
	ring_take_all(in);
	cleanup(in);
	chan_close(in);
	pthread_mutex_lock(&in->read_lock);
	pthread_mutex_lock(&in->send_lock);
	epoll_ctl(in->epfd, EPOLL_CTL_DEL, fd, NULL);
	in->conn_fd = -1;
	close(fd);
	pthread_mutex_unlock(&in->send_lock);
	pthread_mutex_unlock(&in->read_lock);
}

static int connect_tool(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

static void *server_thread(void *arg)
{
	struct introspect *in = arg;
	sigset_t all;

	pthread_setname_np(pthread_self(), "kvmi");
	sigfillset(&all);
	sigdelset(&all, SIGSYS);	/* seccomp reports through it */
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	if (!in->listen) {
		int fd = connect_tool(in->path);

		if (fd < 0)
			pr_warn("introspection: cannot connect to %s: %s",
				in->path, strerror(-fd));
		else
			session(in, fd);
		return NULL;
	}
	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = in->listen_fd, .events = POLLIN },
			{ .fd = in->stop_pipe[0], .events = POLLIN },
		};
		int n = poll(pfd, 2, POLL_MS), c;

		seccomp_thread_enter(SECCOMP_IO);
		if (n < 0 && errno != EINTR)
			return NULL;
		if (stop_requested(in, n > 0 ? pfd[1].revents : 0))
			return NULL;
		if (n <= 0 || !(pfd[0].revents & POLLIN))
			continue;
		c = accept4(in->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (c >= 0)
			session(in, c);
	}
}

static int listen_at(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	mode_t old;
	int err;

	if (fd < 0)
		return -errno;
	strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
	/* A socket file nobody listens on is left from a run that died. */
	{
		int probe = connect_tool(path);

		if (probe == -ECONNREFUSED)
			unlink(path);
		else if (probe >= 0)
			close(probe);
	}
	old = umask(0177);	/* the socket is 0600 */
	err = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (err < 0 || listen(fd, 4) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

/* ---- guest RAM as a memfd ----------------------------------------------------- */

/*
 * Puts guest RAM on a memfd at the same host addresses (before any vCPU
 * runs), so that a tool can map it: the pages the guest has not touched
 * stay unallocated, as with anonymous memory. The file's size is sealed:
 * a tool given a writable descriptor cannot shrink it under lkvm.
 */
static int ram_to_memfd(struct introspect *in)
{
	struct machine *m = in->m;
	uint64_t total = 0, off = 0;
	long page = sysconf(_SC_PAGESIZE);
	int fd, err = 0;

	for (unsigned int i = 0; i < m->nmem; i++)
		if (!m->mem[i].readonly)
			total += m->mem[i].size;
	if (!total || page <= 0)
		return -EINVAL;
	fd = memfd_create("lkvm-guest-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)total) ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)) {
		err = -errno;
		goto fail;
	}
	for (unsigned int i = 0; i < m->nmem && !err; i++) {
		const struct mem_region *mr = &m->mem[i];
		size_t npages = mr->size / (uint64_t)page;
		unsigned char *vec;

		if (mr->readonly)
			continue;
		/* What is already written (resident) goes into the file. */
		vec = malloc(npages ? npages : 1);
		if (!vec) {
			err = -ENOMEM;
			break;
		}
		if (mincore(mr->host, mr->size, vec)) {
			err = -errno;
		} else {
			for (size_t p = 0; p < npages && !err; p++)
				if ((vec[p] & 1) &&
				    pwrite(fd, (char *)mr->host + p * page, page,
					   (off_t)(off + p * page)) != page)
					err = -EIO;
		}
		free(vec);
		if (!err && mmap(mr->host, mr->size, PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_FIXED | MAP_NORESERVE, fd,
				 (off_t)off) == MAP_FAILED)
			err = -errno;
		if (err)
			break;
		in->ram_regions[in->nram_regions++] =
			(struct kvmi_lkvm_mem_region){ mr->gpa, mr->size, off };
		off += mr->size;
	}
	if (err)
		goto fail;
	/* The read-only descriptor tools get: opened now, since the
	 * server thread may not open files once the guest runs. */
	{
		char path[64];

		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		in->ram_ro_fd = open(path, O_RDONLY | O_CLOEXEC);
		if (in->ram_ro_fd < 0) {
			err = -errno;
			goto fail;
		}
	}
	in->ram_fd = fd;
	in->ram_fd_size = total;
	return 0;
fail:
	close(fd);
	in->nram_regions = 0;
	return err;
}

static bool do_map_memory(struct introspect *in, const struct kvmi_req *r)
{
	struct kvmi_lkvm_vm_map_memory_reply rep = {
		.file_size = in->ram_fd_size,
		.count = (uint16_t)in->nram_regions,
		.writable = r->a.map_memory.writable,
	};
	uint8_t data[sizeof(rep) + sizeof(in->ram_regions)];
	size_t len = sizeof(rep) + in->nram_regions * sizeof(in->ram_regions[0]);
	/* Read-only unless the tool asked. */
	int fd = rep.writable ? in->ram_fd : in->ram_ro_fd;

	memcpy(data, &rep, sizeof(rep));
	memcpy(data + sizeof(rep), in->ram_regions,
	       in->nram_regions * sizeof(in->ram_regions[0]));
	return reply_fds(in, r, data, len, &fd, 1);
}

/* ---- the event channel: set up and torn down ------------------------------------ */

/* Anonymous memory over the channel's area: the memfd's pages go (the
 * tool's mapping keeps its own). Under lock, or before any thread. */
static int chan_blank(struct introspect *in)
{
	return mmap(in->chan_area, in->chan_size, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
			       MAP_FAILED ?
		       -errno :
		       0;
}

/*
 * KVMI_LKVM_VM_EVENT_CHANNEL: a fresh memfd for this connection (a tool
 * that went keeps nothing of a later one) mapped over chan_area, and a
 * doorbell socket pair; the tool gets the memfd and its end of the pair.
 */
static bool do_event_channel(struct introspect *in, const struct kvmi_req *r)
{
	struct kvmi_lkvm_vm_event_channel_reply rep = {
		.file_size = (uint32_t)in->chan_size,
		.slot_offset = CHAN_SLOT_OFF,
		.slot_size = CHAN_SLOT_SIZE,
		.nslots = (uint16_t)in->m->ncpus,
	};
	struct epoll_event ep = { .events = EPOLLIN, .data.u32 = EP_BELL };
	int fds[2] = { -1, -1 }, bell[2] = { -1, -1 };
	bool on, ok;
	int err = 0;

	pthread_mutex_lock(&in->lock);
	on = in->chan_on;
	pthread_mutex_unlock(&in->lock);
	if (on || !r->a.event_channel.enable)
		return reply(in, r, on ? -KVM_EBUSY : 0, NULL, 0);
	fds[0] = memfd_create("lkvm-kvmi-events",
			      MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fds[0] < 0 || ftruncate(fds[0], (off_t)in->chan_size) ||
	    fcntl(fds[0], F_ADD_SEALS,
		  F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) ||
	    socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, bell) ||
	    epoll_ctl(in->epfd, EPOLL_CTL_ADD, bell[0], &ep))
		err = -errno;
	if (!err) {
		pthread_mutex_lock(&in->lock);
		if (mmap(in->chan_area, in->chan_size, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_FIXED, fds[0], 0) == MAP_FAILED) {
			err = -errno;
			chan_blank(in);	/* a failed MAP_FIXED may leave a hole */
		} else {
			in->bell_fd = bell[0];
			in->chan_on = true;
		}
		pthread_mutex_unlock(&in->lock);
	}
	if (err) {
		pr_warn("introspection: no event channel: %s", strerror(-err));
		if (bell[0] >= 0) {
			epoll_ctl(in->epfd, EPOLL_CTL_DEL, bell[0], NULL);
			close(bell[0]);
			close(bell[1]);
		}
		if (fds[0] >= 0)
			close(fds[0]);
		return reply(in, r, -KVM_ENOMEM, NULL, 0);
	}
	fds[1] = bell[1];
	ok = reply_fds(in, r, &rep, sizeof(rep), fds, 2);
	/* The mapping and the tool's copies keep what is needed. */
	close(fds[0]);
	close(fds[1]);
	return ok;
}

/* The connection has ended (cleanup() turned chan_on off): the channel
 * goes, and its doorbell. */
static void chan_close(struct introspect *in)
{
	pthread_mutex_lock(&in->lock);
	if (in->bell_fd >= 0) {
		epoll_ctl(in->epfd, EPOLL_CTL_DEL, in->bell_fd, NULL);
		close(in->bell_fd);
		in->bell_fd = -1;
		if (chan_blank(in))
			pr_warn("introspection: the event channel stays mapped: %s",
				strerror(errno));
	}
	pthread_mutex_unlock(&in->lock);
}

/* ---- UNHOOK ------------------------------------------------------------------- */

void introspect_unhook(struct machine *m)
{
	struct introspect_cfg *cfg = machine_dev_cfg(m, &introspect_ops);
	struct introspect *in = cfg ? cfg->in : NULL;
	uint8_t msg[sizeof(struct kvmi_msg_hdr) + sizeof(struct kvmi_event_hdr)];
	struct timespec ts;
	unsigned int gen;
	bool want;
	ssize_t n;

	if (!in)
		return;
	pthread_mutex_lock(&in->lock);
	want = in->connected && in->unhook;
	gen = in->gen;
	pthread_mutex_unlock(&in->lock);
	if (!want)
		return;
	n = kvmi_vm_event_build(msg, sizeof(msg), kvmi_next_seq(&in->proto),
				KVMI_VM_EVENT_UNHOOK);
	if (n < 0 || !send_msg(in, msg, (size_t)n))
		return;
	/* The tool lets go by closing; cleanup() wakes us. */
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += INTROSPECT_UNHOOK_MS / 1000;
	pthread_mutex_lock(&in->lock);
	while (in->connected && in->gen == gen &&
	       pthread_cond_timedwait(&in->cond, &in->lock, &ts) != ETIMEDOUT)
		;
	want = in->connected && in->gen == gen;
	pthread_mutex_unlock(&in->lock);
	if (want)
		pr_warn("introspection: the tool did not let go within %d ms of UNHOOK",
			INTROSPECT_UNHOOK_MS);
}

/* ---- the device --------------------------------------------------------------- */

static void free_in(struct introspect *in)
{
	if (in->listen_fd >= 0) {
		close(in->listen_fd);
		unlink(in->path);
	}
	if (in->stop_pipe[0] >= 0) {
		close(in->stop_pipe[0]);
		close(in->stop_pipe[1]);
	}
	if (in->epfd >= 0)
		close(in->epfd);
	if (in->kick_fd >= 0)
		close(in->kick_fd);
	memset(in->cookie, 0, sizeof(in->cookie));
	free(in->pend);
	free(in->vcpu_events);
	if (in->chan_area)
		munmap(in->chan_area, in->chan_size);
	if (in->ram_fd >= 0)
		close(in->ram_fd);	/* the mappings keep the memory */
	if (in->ram_ro_fd >= 0)
		close(in->ram_ro_fd);
	free(in->path);
	if (in->cookie_path)
		unlink(in->cookie_path);
	free(in->cookie_path);
	free(in);
}

/* The server's epoll and kick_fd; the connection joins per session. */
static int server_epoll(struct introspect *in)
{
	in->epfd = epoll_create1(EPOLL_CLOEXEC);
	in->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (in->epfd < 0 || in->kick_fd < 0)
		return -errno;
	const struct { int fd; unsigned int tag; } w[] = {
		{ in->stop_pipe[0], EP_STOP },
		{ in->listen_fd, EP_LISTEN },
		{ in->kick_fd, EP_KICK },
	};

	for (unsigned int i = 0; i < ARRAY_SIZE(w); i++) {
		struct epoll_event e = { .events = EPOLLIN, .data.u32 = w[i].tag };

		if (w[i].fd >= 0 &&
		    epoll_ctl(in->epfd, EPOLL_CTL_ADD, w[i].fd, &e) < 0)
			return -errno;
	}
	return 0;
}

/* The settings and the cookie, before anything is set up. */
static int introspect_check(struct machine *m, void *opaque)
{
	struct introspect_cfg *cfg = opaque;
	struct introspect *in;
	int err;

	if (!cfg->spec)
		return 0;
	in = calloc(1, sizeof(*in));
	if (!in)
		return -ENOMEM;
	in->m = m;
	in->timeout_ms = EVENT_TIMEOUT_MS;
	in->listen_fd = in->conn_fd = in->ram_fd = in->ram_ro_fd = -1;
	in->stop_pipe[0] = in->stop_pipe[1] = -1;
	in->epfd = in->kick_fd = in->bell_fd = -1;
	in->poll_us = EVENT_POLL_US;
	err = parse_spec(in, cfg->spec);
	if (err) {
		free_in(in);
		return err;
	}
	cfg->in = in;
	return 0;
}

static int introspect_init(struct machine *m)
{
	struct introspect_cfg *cfg = machine_dev_cfg(m, &introspect_ops);
	struct introspect *in = cfg ? cfg->in : NULL;
	int err;

	if (!in)
		return 0;
	cfg->in = NULL;		/* set again once all is up */
	in->pend = calloc(m->ncpus ? m->ncpus : 1, sizeof(*in->pend));
	in->vcpu_events = calloc(m->ncpus ? m->ncpus : 1,
				 sizeof(*in->vcpu_events));
	if (!in->pend || !in->vcpu_events ||
	    pipe2(in->stop_pipe, O_CLOEXEC) < 0) {
		err = in->pend && in->vcpu_events ? -errno : -ENOMEM;
		pr_err("introspection: %s", strerror(-err));
		goto fail;
	}
	for (unsigned int i = 0; i < m->ncpus; i++) {
		in->pend[i].in = in;
		kvmi_io_poll_init(&in->pend[i].poll, in->poll_us);
	}
	/* The event channel's place, for lkvm's life (see chan_area). */
	in->chan_size = CHAN_SLOT_OFF + (m->ncpus ? m->ncpus : 1) * CHAN_SLOT_SIZE;
	in->chan_size = (in->chan_size + 4095) & ~(size_t)4095;
	in->chan_area = mmap(NULL, in->chan_size, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (in->chan_area == MAP_FAILED) {
		in->chan_area = NULL;
		err = -ENOMEM;
		pr_err("introspection: %s", strerror(-err));
		goto fail;
	}
	pthread_mutex_init(&in->read_lock, NULL);
	pthread_mutex_init(&in->send_lock, NULL);
	pthread_mutex_init(&in->lock, NULL);
	pthread_cond_init(&in->cond, NULL);
	kvmi_proto_init(&in->proto, m->ncpus);
	/* What mainline KVM lets lkvm do (docs/kvmi.md). */
	err = ram_to_memfd(in);
	if (err) {
		pr_warn("introspection: guest RAM cannot be shared (%s): no MAP_MEMORY",
			strerror(-err));
		in->proto.cmd_supported &= ~kvmi_cmd_bit(KVMI_LKVM_VM_MAP_MEMORY);
	}
	/* Breakpoints and steps: the guest-debug layer (lkvm/vcpu.h). */
	machine_debug_set_handler(m, VCPU_DEBUG_KVMI, debug_hit, in);
	in->sync_regs = (kvm_check_extension(m->kvm, KVM_CAP_SYNC_REGS) &
			 SYNC_WANT) == SYNC_WANT;
	/* Writes to protected pages: RAM's MMIO exits come here. */
	in->ram_hooked = true;
	for (unsigned int i = 0; i < m->nmem; i++)
		if (!m->mem[i].readonly &&
		    machine_register_mmio(m, m->mem[i].gpa, m->mem[i].size,
					  ram_access, in, "kvmi-ram"))
			in->ram_hooked = false;
	if (!in->ram_hooked) {
		pr_warn("introspection: guest RAM overlaps a device: no page protection");
		in->proto.cmd_supported &= ~kvmi_cmd_bit(KVMI_VM_SET_PAGE_ACCESS);
		in->proto.ev_supported &= ~kvmi_event_bit(KVMI_VCPU_EVENT_PF);
	}
	/* Filtered MSR writes come to user space. */
	in->user_msr = kvm_check_extension(m->kvm, KVM_CAP_X86_MSR_FILTER) > 0 &&
		       !kvm_enable_user_msr(m->kvm, KVM_MSR_EXIT_REASON_FILTER);
	if (in->user_msr) {
		m->wrmsr = introspect_wrmsr;
	} else {
		in->proto.cmd_supported &= ~kvmi_cmd_bit(KVMI_VCPU_CONTROL_MSR);
		in->proto.ev_supported &= ~kvmi_event_bit(KVMI_VCPU_EVENT_MSR);
	}
	err = machine_register_pio(m, KVMI_LKVM_AGENT_PORT, 4, agent_doorbell,
				   in, "kvmi-agent");
	if (err) {
		pr_err("introspection: port 0x%x is taken: %s",
		       KVMI_LKVM_AGENT_PORT, strerror(-err));
		goto fail;
	}
	in->proto.cmd_allowed = in->proto.cmd_supported;
	in->proto.ev_allowed = in->proto.ev_supported;
	kvmi_io_random(in->info.uuid, sizeof(in->info.uuid));
	in->info.features = KVMI_LKVM_F_AGENT | KVMI_LKVM_F_SINGLESTEP |
			    KVMI_LKVM_F_EVENT_CHANNEL |
			    (in->ram_fd >= 0 ? KVMI_LKVM_F_MAP_MEMORY : 0);
	in->info.version = KVMI_VERSION;
	in->info.max_msg_size = KVMI_MAX_MSG_SIZE;
	in->info.vcpu_count = m->ncpus;
	if (in->listen) {
		in->listen_fd = listen_at(in->path);
		if (in->listen_fd < 0) {
			err = in->listen_fd;
			pr_err("--introspect: cannot listen at %s: %s", in->path,
			       strerror(-err));
			goto fail;
		}
	}
	err = server_epoll(in);
	if (!err)
		err = machine_add_counters(m, "kvmi-events", &in->ev_sent);
	if (!err)
		err = machine_add_counters(m, "kvmi-polled", &in->ev_polled);
	if (!err)
		err = machine_add_counters(m, "kvmi-channel", &in->ev_chan);
	if (err) {
		pr_err("introspection: %s", strerror(-err));
		goto fail;
	}
	err = pthread_create(&in->thread, NULL, server_thread, in);
	if (err) {
		err = -err;
		pr_err("introspection: no thread: %s", strerror(-err));
		goto fail;
	}
	in->thread_started = true;
	cfg->in = in;
	return 0;
fail:
	free_in(in);
	return err;
}

static void introspect_exit(struct machine *m)
{
	struct introspect_cfg *cfg = machine_dev_cfg(m, &introspect_ops);
	struct introspect *in = cfg ? cfg->in : NULL;

	if (!in)
		return;
	if (in->thread_started) {
		(void)!write(in->stop_pipe[1], "x", 1);
		pthread_join(in->thread, NULL);
	}
	machine_debug_set_handler(m, VCPU_DEBUG_KVMI, NULL, NULL);
	free_in(in);
	cfg->in = NULL;
}

/* The server thread's sockets (lkvm/seccomp.h): a tool connecting, or
 * the connection to a tool that listens. */
static const struct seccomp_rule introspect_seccomp[] = {
	SECCOMP_SYSCALL(accept4, SECCOMP_IO),
	SECCOMP_SYSCALL_ARG(socket, 0, AF_UNIX, SECCOMP_IO),
	SECCOMP_SYSCALL(connect, SECCOMP_IO),
	/* A vCPU whose tool stalls cuts it off. */
	SECCOMP_SYSCALL(shutdown, SECCOMP_ALL),
	/* The event channel a tool asks for: its memory and doorbell. */
	SECCOMP_SYSCALL(memfd_create, SECCOMP_IO),
	SECCOMP_SYSCALL(ftruncate, SECCOMP_IO),
	SECCOMP_SYSCALL_ARG(socketpair, 0, AF_UNIX, SECCOMP_IO),
	/* Write protection splits memory slots; MSR interception; the
	 * vCPU state a tool reads. */
	SECCOMP_IOCTL(KVM_SET_USER_MEMORY_REGION, SECCOMP_ALL),
	SECCOMP_IOCTL(KVM_X86_SET_MSR_FILTER, SECCOMP_ALL),
	SECCOMP_IOCTL(KVM_GET_XCRS, SECCOMP_ALL),
	SECCOMP_IOCTL(KVM_GET_XSAVE, SECCOMP_ALL),
	SECCOMP_END,
};

/* Only a guest given --introspect may change its memory slots. */
static bool introspect_wanted(struct machine *m)
{
	struct introspect_cfg *cfg = machine_dev_cfg(m, &introspect_ops);

	return cfg && cfg->spec;
}

static const struct device_ops introspect_ops = {
	.name = "introspect",
	.stage = DEV_STAGE_LATE,
	.options = introspect_options,
	.cfg_size = sizeof(struct introspect_cfg),
	.check = introspect_check,
	.init = introspect_init,
	.exit = introspect_exit,
	.seccomp = introspect_seccomp,
	.seccomp_wanted = introspect_wanted,
};
DEVICE(introspect_ops);
