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
 * This first part serves commands; events (and with them the commands
 * that only make sense with events) are answered -KVM_ENOSYS, and
 * KVMI_VM_CHECK_EVENT reports every event unsupported. KVMI_VM_PAUSE_VCPU
 * takes an introspection hold on the vCPU (no PAUSE event follows yet);
 * the holds a tool takes last until it disconnects, however it goes.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "lkvm/arch.h"
#include "lkvm/device.h"
#include "lkvm/kvmi-proto.h"
#include "lkvm/machine.h"
#include "lkvm/options.h"
#include "lkvm/seccomp.h"
#include "lkvm/util.h"
#include "lkvm/vcpu.h"

/* How long a command waits for a vCPU to stop. */
#define HOLD_MS 2000
/* The handshake's per-message timeout. */
#define HANDSHAKE_MS 5000
/* How often the idle server looks whether the machine stops. */
#define POLL_MS 200
#define MSG_MAX (sizeof(struct kvmi_msg_hdr) + KVMI_MAX_MSG_SIZE)

struct introspect_cfg {
	const char *spec;		/* --introspect listen=|connect=... */
	struct introspect *in;
};

struct introspect {
	struct machine *m;
	bool listen;
	char *path;
	uint8_t cookie[KVMI_COOKIE_MAX];
	size_t cookie_len;
	int listen_fd;
	int conn_fd;
	int stop_pipe[2];
	pthread_t thread;
	bool thread_started;
	struct kvmi_guest info;
	struct kvmi_proto proto;
	/* KVMI_VM_PAUSE_VCPU holds the current tool has, per vCPU. */
	unsigned int *paused;
	uint8_t buf[MSG_MAX];
	uint8_t out[MSG_MAX];
};

static const struct device_ops introspect_ops;

static const struct option introspect_options[] = {
	{ .name = "introspect", .type = OPT_STRING,
	  .offset = offsetof(struct introspect_cfg, spec),
	  .argname = "listen|connect=PATH,cookie=FILE",
	  .help = "serve KVMI to one introspection tool (docs/kvmi.md)" },
	OPTION_END,
};

/* ---- options ---------------------------------------------------------------- */

static int parse_spec(struct introspect *in, const char *spec)
{
	char *s = strdup(spec), *save = NULL, *tok;
	const char *cookie = NULL;
	int err = 0;

	if (!s)
		return -ENOMEM;
	for (tok = strtok_r(s, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (!strncmp(tok, "listen=", 7) || !strncmp(tok, "connect=", 8)) {
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
		} else {
			pr_err("--introspect: unknown setting '%s' (listen=PATH or connect=PATH, cookie=FILE)",
			       tok);
			err = -EINVAL;
			goto out;
		}
	}
	if (!in->path || !in->path[0] || !cookie || !cookie[0]) {
		pr_err("--introspect needs listen=PATH or connect=PATH, and cookie=FILE");
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

static bool send_msg(struct introspect *in, const void *buf, size_t len)
{
	struct iovec iov = { (void *)buf, len };

	return kvmi_io_send(in->conn_fd, &iov, 1, -1) == 0;
}

static bool reply(struct introspect *in, const struct kvmi_req *r, int err,
		  const void *data, size_t len)
{
	ssize_t n = kvmi_reply_build(in->out, sizeof(in->out), r, err,
				     err ? NULL : data, err ? 0 : len);

	if (n < 0) {
		/* Our own bug: say so to the tool rather than go silent. */
		n = kvmi_reply_build(in->out, sizeof(in->out), r, -KVM_EINVAL,
				     NULL, 0);
		if (n < 0)
			return false;
	}
	return send_msg(in, in->out, (size_t)n);
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

static bool do_pause(struct introspect *in, const struct kvmi_req *r)
{
	struct vcpu *v = &in->m->vcpus[r->a.pause_vcpu.vcpu];
	int err = 0;

	if (vcpu_state(v) == VCPU_STATE_CREATED)
		return reply(in, r, -KVM_EAGAIN, NULL, 0);
	/* One hold however often the tool asks, until it disconnects. */
	if (!in->paused[r->a.pause_vcpu.vcpu]) {
		vcpu_hold_async(v, VCPU_HOLD_INTROSPECT);
		in->paused[r->a.pause_vcpu.vcpu] = 1;
	}
	if (r->a.pause_vcpu.wait && vcpu_wait_stopped(v, HOLD_MS))
		err = -KVM_EBUSY;
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
		/* No events are sent yet: every one is unsupported. */
		return reply(in, r, -KVM_ENOENT, NULL, 0);
	case KVMI_VM_GET_INFO: {
		struct kvmi_vm_get_info_reply rep = { .vcpu_count = m->ncpus };
		return reply(in, r, 0, &rep, sizeof(rep));
	}
	case KVMI_VM_READ_PHYSICAL: {
		const void *p = guest_ptr(m, r->a.read_physical.gpa,
					  r->a.read_physical.size);

		/* A snapshot: the guest may write it meanwhile. */
		return reply(in, r, p ? 0 : -KVM_EFAULT, p,
			     r->a.read_physical.size);
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

/* Lets go of everything the tool held; the guest runs on. */
static void cleanup(struct introspect *in)
{
	for (unsigned int i = 0; i < in->m->ncpus; i++) {
		if (in->paused[i])
			vcpu_release(&in->m->vcpus[i], VCPU_HOLD_INTROSPECT);
		in->paused[i] = 0;
	}
}

static bool stop_requested(struct introspect *in, short revents)
{
	return (revents & POLLIN) || machine_stopping(in->m);
}

static void serve(struct introspect *in)
{
	struct pollfd pfd[3] = {
		{ .fd = in->conn_fd, .events = POLLIN },
		{ .fd = in->stop_pipe[0], .events = POLLIN },
		{ .fd = in->listen_fd, .events = POLLIN },
	};
	unsigned int npfd = in->listen_fd >= 0 ? 3 : 2;

	for (;;) {
		struct kvmi_req r;
		size_t len;
		int n, err;

		n = poll(pfd, npfd, POLL_MS);
		if (n < 0 && errno != EINTR)
			return;
		if (stop_requested(in, n > 0 ? pfd[1].revents : 0))
			return;
		/* One tool at a time: a second one is turned away, but
		 * only once the first has been read: when it has just
		 * hung up, the next tool is the one to serve. */
		if (npfd == 3 && (pfd[2].revents & POLLIN) && !pfd[0].revents) {
			int c = accept4(in->listen_fd, NULL, NULL, SOCK_CLOEXEC);

			if (c >= 0)
				close(c);
		}
		if (n <= 0 || !pfd[0].revents)
			continue;
		/* Readable: the first byte is there (a timeout of 0 would
		 * expire before the socket is looked at). */
		err = kvmi_io_recv(in->conn_fd, in->buf, sizeof(in->buf),
				   KVMI_IO_MSG_TIMEOUT_MS, &len, NULL);
		if (err == -ETIMEDOUT || err == -EINTR)
			continue;
		if (err)
			return;		/* gone, cut short, stalled, oversized */
		if (kvmi_parse(&in->proto, in->buf, len, &r) < 0)
			return;
		if (r.kind != KVMI_REQ_COMMAND)
			return;		/* no event is pending: a bad reply */
		if (r.error ? !reply(in, &r, r.error, NULL, 0) :
			      !run_command(in, &r))
			return;
	}
}

/* A connected socket: the handshake, then the commands until it ends. */
static void session(struct introspect *in, int fd)
{
	int err;

	in->conn_fd = fd;
	err = kvmi_io_handshake_vmm(fd, in->cookie, in->cookie_len, &in->info,
				    HANDSHAKE_MS);
	if (err)
		pr_warn("introspection: handshake failed: %s",
			err == -EACCES ? "the tool does not know the cookie" :
					 strerror(-err));
	else
		serve(in);
	cleanup(in);
	in->conn_fd = -1;
	close(fd);
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
	memset(in->cookie, 0, sizeof(in->cookie));
	free(in->paused);
	free(in->path);
	free(in);
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
	in->listen_fd = in->conn_fd = -1;
	in->stop_pipe[0] = in->stop_pipe[1] = -1;
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
	in->paused = calloc(m->ncpus ? m->ncpus : 1, sizeof(*in->paused));
	if (!in->paused || pipe2(in->stop_pipe, O_CLOEXEC) < 0) {
		err = in->paused ? -errno : -ENOMEM;
		pr_err("introspection: %s", strerror(-err));
		goto fail;
	}
	kvmi_proto_init(&in->proto, m->ncpus);
	/*
	 * What this server does so far (docs/kvmi.md, "Status"). The PAUSE
	 * event stays in the codec's allowed set only so that it accepts
	 * KVMI_VM_PAUSE_VCPU; KVMI_VM_CHECK_EVENT answers for every event.
	 */
	in->proto.cmd_supported = 0;
	{
		static const uint16_t cmds[] = {
			KVMI_GET_VERSION, KVMI_VM_CHECK_COMMAND,
			KVMI_VM_CHECK_EVENT, KVMI_VM_GET_INFO,
			KVMI_VM_READ_PHYSICAL, KVMI_VM_WRITE_PHYSICAL,
			KVMI_VM_PAUSE_VCPU, KVMI_VCPU_GET_INFO,
			KVMI_VCPU_GET_REGISTERS, KVMI_VCPU_GET_CPUID,
			KVMI_VCPU_TRANSLATE_GVA,
		};
		for (unsigned int i = 0; i < ARRAY_SIZE(cmds); i++)
			in->proto.cmd_supported |= kvmi_cmd_bit(cmds[i]);
	}
	in->proto.cmd_allowed = in->proto.cmd_supported;
	in->proto.ev_supported = in->proto.ev_allowed =
		kvmi_event_bit(KVMI_VCPU_EVENT_PAUSE);
	kvmi_io_random(in->info.uuid, sizeof(in->info.uuid));
	in->info.features = 0;	/* guest RAM is no memfd: no MAP_MEMORY */
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
	free_in(in);
	cfg->in = NULL;
}

/* The server thread's sockets (lkvm/seccomp.h): a tool connecting, or
 * the connection to a tool that listens. */
static const struct seccomp_rule introspect_seccomp[] = {
	SECCOMP_SYSCALL(accept4, SECCOMP_IO),
	SECCOMP_SYSCALL_ARG(socket, 0, AF_UNIX, SECCOMP_IO),
	SECCOMP_SYSCALL(connect, SECCOMP_IO),
	SECCOMP_END,
};

static const struct device_ops introspect_ops = {
	.name = "introspect",
	.stage = DEV_STAGE_LATE,
	.options = introspect_options,
	.cfg_size = sizeof(struct introspect_cfg),
	.check = introspect_check,
	.init = introspect_init,
	.exit = introspect_exit,
	.seccomp = introspect_seccomp,
};
DEVICE(introspect_ops);
