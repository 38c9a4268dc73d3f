// SPDX-License-Identifier: GPL-2.0
/*
 * libkvmi-client against a fake VMM built on the same codec, over real
 * sockets: the handshake both ways round (the VMM connecting to the tool,
 * the tool connecting to the VMM), commands, events interleaved with
 * commands, the guest-memory map passed as a descriptor, and a VMM that
 * misbehaves. Also the transport's edge cases.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "kvmi/client.h"
#include "lkvm/kvmi-proto.h"
#include "tap.h"

#define RAM_SIZE (256 * 4096)
#define HOLE 0x100000	/* the second region's gpa */

static const char cookie[] = "a cookie long enough to be secret";
static char dir[64], cookie_path[128], sock_path[128];

/* ---- the fake VMM -------------------------------------------------------- */

enum script {
	SERVE,		/* answer commands until the tool goes */
	WRONG_SEQ,	/* answer the first command with another seq */
	GARBAGE,	/* answer with a malformed message */
	SILENT,		/* never answer */
	CHANNEL,	/* as SERVE, offering the event channel */
	CHANNEL_BAD,	/* the same, its slots not one per vCPU */
};

struct vmm {
	int fd;
	enum script script;
	const char *key;
	int hs_err;
	int memfd;
	uint8_t *ram;
	struct kvmi_proto p;
	struct kvmi_pending pend[2];
	int event_replies;
	uint64_t msr_value;
	int bad_replies;
	uint8_t *chan;		/* the event channel, once asked for */
	int bell;
	unsigned int reads;	/* KVMI_VM_READ_PHYSICAL served */
	unsigned int pause_at;	/* a PAUSE event before that read's reply */
	unsigned int max_batch;	/* the most commands one recv() brought */
	/* A hostile VMM: memfds it passes unsealed, a map announcing more
	 * than its file holds, a doorbell hung up before it is passed. */
	bool unsealed, map_short, dead_bell;
};

/* The size seals lkvm puts on the memfds it passes. */
static void seal(struct vmm *v, int fd)
{
	if (!v->unsealed &&
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
		abort();
}

static void send_msg(int fd, const void *buf, size_t len, int pass_fd)
{
	struct iovec v = { .iov_base = (void *)buf, .iov_len = len };

	kvmi_io_send(fd, &v, 1, pass_fd);
}

static void reply(struct vmm *v, const struct kvmi_req *r, int err,
		  const void *data, size_t len)
{
	static uint8_t out[HOLE];
	ssize_t n = kvmi_reply_build(out, sizeof(out), r, err, data, len);

	if (n < 0)
		v->bad_replies++;
	else
		send_msg(v->fd, out, n, -1);
}

static void send_event(struct vmm *v, uint16_t vcpu, uint16_t event,
		       const void *data, size_t len)
{
	struct kvmi_vcpu_event_arch a;
	uint8_t out[1024];
	ssize_t n;

	memset(&a, 0, sizeof(a));
	a.mode = 8;
	a.regs.rip = 0x1000 + vcpu;
	n = kvmi_vcpu_event_build(out, sizeof(out), kvmi_next_seq(&v->p), vcpu,
				  event, &a, data, len, &v->pend[vcpu]);
	if (n > 0)
		send_msg(v->fd, out, n, -1);
}

#define CHAN_SIZE 4096
#define SLOT(v, i) ((struct kvmi_lkvm_chan_slot *)((v)->chan + 64 + (i) * 1024))

/* A PF event of vcpu posted in slot i, the vCPU asleep. */
static void post_event(struct vmm *v, unsigned int i, uint16_t vcpu)
{
	struct kvmi_vcpu_event_pf pf = { .gva = ~0ull, .gpa = 0x5000,
					 .access = KVMI_PAGE_ACCESS_W };
	struct kvmi_vcpu_event_arch a;
	struct kvmi_lkvm_chan_slot *s = SLOT(v, i);
	ssize_t n;

	memset(&a, 0, sizeof(a));
	n = kvmi_vcpu_event_build(s->event, sizeof(s->event),
				  kvmi_next_seq(&v->p), vcpu,
				  KVMI_VCPU_EVENT_PF, &a, &pf, sizeof(pf),
				  &v->pend[vcpu]);
	s->event_len = n > 0 ? (uint32_t)n : 0;
	s->vcpu_waiting = 1;
	__atomic_store_n(&s->state, KVMI_LKVM_SLOT_EVENT, __ATOMIC_RELEASE);
}

/* KVMI_LKVM_VM_EVENT_CHANNEL: the memfd and the doorbell, an event
 * already in vCPU 1's slot. */
static void serve_channel(struct vmm *v, const struct kvmi_req *r)
{
	struct kvmi_lkvm_vm_event_channel_reply rep = {
		.file_size = CHAN_SIZE, .slot_offset = 64, .slot_size = 1024,
		.nslots = v->script == CHANNEL_BAD ? 1 : 2,
	};
	struct kvmi_reply_prefix pre;
	struct iovec iov[2] = {
		{ .iov_base = &pre, .iov_len = sizeof(pre) },
		{ .iov_base = &rep, .iov_len = sizeof(rep) },
	};
	int fds[2], bell[2];

	fds[0] = memfd_create("channel", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fds[0] < 0 || ftruncate(fds[0], CHAN_SIZE) ||
	    socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, bell))
		abort();
	seal(v, fds[0]);
	if (v->dead_bell)
		shutdown(bell[1], SHUT_RDWR);
	v->chan = mmap(NULL, CHAN_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
		       fds[0], 0);
	if (v->chan == MAP_FAILED)
		abort();
	v->bell = bell[0];
	fds[1] = bell[1];
	post_event(v, 1, 1);
	kvmi_reply_prefix(&pre, r, 0, sizeof(rep));
	kvmi_io_send_fds(v->fd, iov, 2, fds, 2);
	close(fds[0]);
	close(fds[1]);
}

/* What the guest's RAM is here: a memfd, two regions of it. */
static uint8_t *ram_ptr(struct vmm *v, uint64_t gpa, uint64_t len)
{
	if (gpa + len <= RAM_SIZE / 2)
		return v->ram + gpa;
	if (gpa >= HOLE && gpa + len <= HOLE + RAM_SIZE / 2)
		return v->ram + RAM_SIZE / 2 + (gpa - HOLE);
	return NULL;
}

static void serve(struct vmm *v, const struct kvmi_req *r)
{
	switch (r->hdr.id) {
	case KVMI_GET_VERSION: {
		struct kvmi_get_version_reply g = { KVMI_VERSION,
						    KVMI_MAX_MSG_SIZE };

		reply(v, r, 0, &g, sizeof(g));
		break;
	}
	case KVMI_VM_CHECK_COMMAND:
		reply(v, r, kvmi_proto_check_command(&v->p,
						     r->a.check_command.id),
		      NULL, 0);
		break;
	case KVMI_VM_GET_INFO: {
		struct kvmi_vm_get_info_reply g = { .vcpu_count = 2 };

		reply(v, r, 0, &g, sizeof(g));
		break;
	}
	case KVMI_VM_READ_PHYSICAL: {
		uint8_t *p = ram_ptr(v, r->a.read_physical.gpa,
				     r->a.read_physical.size);

		if (++v->reads == v->pause_at)
			send_event(v, 0, KVMI_VCPU_EVENT_PAUSE, NULL, 0);

		if (p)
			reply(v, r, 0, p, r->a.read_physical.size);
		else
			reply(v, r, -KVM_ENOENT, NULL, 0);
		break;
	}
	case KVMI_VM_WRITE_PHYSICAL: {
		uint8_t *p = ram_ptr(v, r->a.write_physical.gpa,
				     r->args_tail_len);

		if (p)
			memcpy(p, r->args_tail, r->args_tail_len);
		reply(v, r, p ? 0 : -KVM_ENOENT, NULL, 0);
		break;
	}
	case KVMI_VM_PAUSE_VCPU:
		/* The event goes out before the command's reply: the tool
		 * must queue it. */
		send_event(v, r->a.pause_vcpu.vcpu, KVMI_VCPU_EVENT_PAUSE,
			   NULL, 0);
		reply(v, r, 0, NULL, 0);
		break;
	case KVMI_VCPU_CONTROL_MSR: {
		struct kvmi_vcpu_event_msr e = { .msr = r->a.control_msr.msr,
						 .old_value = 1,
						 .new_value = 2 };

		reply(v, r, 0, NULL, 0);
		send_event(v, r->vcpu, KVMI_VCPU_EVENT_MSR, &e, sizeof(e));
		break;
	}
	case KVMI_VCPU_GET_REGISTERS: {
		size_t n = r->a.get_registers.nmsrs;
		struct {
			struct kvmi_vcpu_get_registers_reply r;
			struct kvm_msr_entry e[4];
		} g;

		memset(&g, 0, sizeof(g));
		g.r.mode = 8;
		g.r.regs.rip = 0xabc;
		g.r.msrs.nmsrs = n;
		for (size_t i = 0; i < n && i < 4; i++) {
			memcpy(&g.e[i].index, r->args_tail + 4 * i, 4);
			g.e[i].data = g.e[i].index + 1;
		}
		reply(v, r, 0, &g, sizeof(g.r) + n * sizeof(g.e[0]));
		break;
	}
	case KVMI_LKVM_VM_MAP_MEMORY: {
		struct {
			struct kvmi_lkvm_vm_map_memory_reply h;
			struct kvmi_lkvm_mem_region reg[2];
		} m = {
			.h = { .file_size = RAM_SIZE, .count = 2 },
			.reg = { { 0, RAM_SIZE / 2, 0 },
				 { HOLE, RAM_SIZE / 2, RAM_SIZE / 2 } },
		};
		struct kvmi_reply_prefix pre;
		struct iovec iov[2] = {
			{ .iov_base = &pre, .iov_len = sizeof(pre) },
			{ .iov_base = &m, .iov_len = sizeof(m) },
		};
		char path[64];
		int fd;

		if (v->map_short) {	/* the second region past the end */
			m.h.file_size = 2 * RAM_SIZE;
			m.reg[1].offset = 2 * RAM_SIZE - RAM_SIZE / 2;
		}
		seal(v, v->memfd);
		/* Read-only unless asked: reopened O_RDONLY. */
		snprintf(path, sizeof(path), "/proc/self/fd/%d", v->memfd);
		fd = open(path, r->a.map_memory.writable ? O_RDWR : O_RDONLY);
		m.h.writable = r->a.map_memory.writable;
		kvmi_reply_prefix(&pre, r, 0, sizeof(m));
		kvmi_io_send(v->fd, iov, 2, fd);
		close(fd);
		break;
	}
	case KVMI_LKVM_VM_EVENT_CHANNEL:
		if (v->script == CHANNEL || v->script == CHANNEL_BAD) {
			serve_channel(v, r);
			break;
		}
		/* fall through */
	default:
		reply(v, r, -KVM_ENOSYS, NULL, 0);
	}
}

static void *vmm_main(void *opaque)
{
	struct vmm *v = opaque;
	struct kvmi_guest g = {
		.uuid = "lkvm-test-guest",
		.features = KVMI_LKVM_F_MAP_MEMORY,
		.version = KVMI_VERSION,
		.max_msg_size = KVMI_MAX_MSG_SIZE,
		.vcpu_count = 2,
	};
	static uint8_t buf[8 + KVMI_MAX_MSG_SIZE];
	static struct kvmi_io_rbuf rb;
	size_t len;

	if (v->script == CHANNEL || v->script == CHANNEL_BAD)
		g.features |= KVMI_LKVM_F_EVENT_CHANNEL;
	v->hs_err = kvmi_io_handshake_vmm(v->fd, v->key, strlen(v->key), &g,
					  5000);
	if (v->hs_err)
		goto out;
	rb.start = rb.end = 0;
	while (!kvmi_io_recv_buffered(v->fd, &rb, buf, sizeof(buf), 10000,
				      &len)) {
		struct kvmi_req r;
		/* This message and the reads (24 bytes each) already there
		 * behind it: how many the tool sent at once, at least. */
		unsigned int batch = 1 + (unsigned int)(rb.end - rb.start) /
					 (8 + sizeof(struct kvmi_vm_read_physical));

		if (batch > v->max_batch)
			v->max_batch = batch;

		if (kvmi_parse(&v->p, buf, len, &r))
			break;
		if (r.kind == KVMI_REQ_EVENT_REPLY) {
			if (kvmi_event_reply_check(&v->pend[r.vcpu], &r))
				break;
			v->pend[r.vcpu].active = false;
			v->event_replies++;
			if (r.hdr.seq && r.args_len == 8)
				v->msr_value = r.a.msr_reply.new_val;
			continue;
		}
		if (v->script == SILENT)
			continue;
		if (v->script == WRONG_SEQ) {
			r.hdr.seq++;
			reply(v, &r, -KVM_ENOSYS, NULL, 0);
			continue;
		}
		if (v->script == GARBAGE) {
			send_msg(v->fd, "\x02\x00\x04\x00\x01\x00\x00\x00junk",
				 12, -1);
			continue;
		}
		if (r.error)
			reply(v, &r, r.error, NULL, 0);
		else
			serve(v, &r);
	}
out:
	close(v->fd);
	return NULL;
}

static void vmm_init(struct vmm *v, int fd, enum script s, const char *key)
{
	memset(v, 0, sizeof(*v));
	v->fd = fd;
	v->script = s;
	v->key = key;
	kvmi_proto_init(&v->p, 2);
	v->memfd = memfd_create("guest-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (v->memfd < 0 || ftruncate(v->memfd, RAM_SIZE) < 0)
		abort();
	v->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
		      v->memfd, 0);
	if (v->ram == MAP_FAILED)
		abort();
	for (unsigned int i = 0; i < RAM_SIZE; i++)
		v->ram[i] = (uint8_t)(i * 7 + i / 4096);
}

static void vmm_fini(struct vmm *v)
{
	munmap(v->ram, RAM_SIZE);
	close(v->memfd);
	if (v->chan) {
		munmap(v->chan, CHAN_SIZE);
		close(v->bell);
	}
}

/* A fake VMM on one end of a socket pair, the client on the other. */
static int pair(struct vmm *v, pthread_t *t, enum script s, const char *key,
		struct kvmi_conn **c)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	vmm_init(v, sv[0], s, key);
	pthread_create(t, NULL, vmm_main, v);
	return kvmi_open_fd(sv[1], cookie_path, 5000, c);
}

static void unpair(struct vmm *v, pthread_t t, struct kvmi_conn *c)
{
	kvmi_close(c);
	pthread_join(t, NULL);
	vmm_fini(v);
}

/* ---- the tests ----------------------------------------------------------- */

static void test_session(void)
{
	static struct vmm v;
	struct kvmi_conn *c;
	struct kvmi_event ev;
	struct kvmi_memmap map;
	struct kvm_regs regs;
	struct kvm_msr_entry msrs[2] = { { .index = 0x174 },
					 { .index = 0xc0000080 } };
	uint8_t buf[3 * 4096], want[3 * 4096];
	uint32_t version = 0, maxsz = 0, ncpu = 0, mode = 0;
	uint64_t new_val = 0x1234;
	pthread_t t;
	int err;

	err = pair(&v, &t, SERVE, cookie, &c);
	CHECK(!err && !memcmp(kvmi_guest(c)->uuid, "lkvm-test-guest", 16) &&
	      kvmi_guest(c)->vcpu_count == 2 &&
	      kvmi_guest(c)->features == KVMI_LKVM_F_MAP_MEMORY,
	      "handshake over a socket: the guest's UUID and features");
	if (err)
		return;
	CHECK(!kvmi_get_version(c, &version, &maxsz) &&
	      version == KVMI_VERSION && maxsz == KVMI_MAX_MSG_SIZE,
	      "KVMI_GET_VERSION");
	CHECK(!kvmi_get_vm_info(c, &ncpu) && ncpu == 2, "KVMI_VM_GET_INFO");
	CHECK(kvmi_check_command(c, KVMI_VCPU_CONTROL_CR) == -KVM_ENOENT &&
	      !kvmi_check_command(c, KVMI_VM_READ_PHYSICAL),
	      "KVMI_VM_CHECK_COMMAND");
	CHECK(kvmi_get_xcr(c, 0, 1, &new_val) == -KVM_EINVAL && kvmi_alive(c),
	      "a refused command leaves the connection up");
	CHECK(kvmi_get_vcpu_info(c, 0, &new_val) == -KVM_ENOSYS,
	      "a command the VMM does not serve: -KVM_ENOSYS");

	memcpy(want, v.ram + 4000, 4096 * 2 - 4000);
	memcpy(want + 4096 * 2 - 4000, v.ram + RAM_SIZE / 2, 4000);
	CHECK(!kvmi_read_physical(c, 4000, buf, 4096 * 2 - 4000) &&
	      !memcmp(buf, want, 4096 * 2 - 4000),
	      "a read across pages is split in page-bounded requests");
	CHECK(kvmi_read_physical(c, RAM_SIZE / 2, buf, 16) == -KVM_ENOENT,
	      "a read outside RAM: the VMM's -KVM_ENOENT");
	memset(buf, 0xa5, sizeof(buf));
	CHECK(!kvmi_write_physical(c, HOLE + 4090, buf, 100) &&
	      !memcmp(v.ram + RAM_SIZE / 2 + 4090, buf, 100),
	      "a write across pages lands whole");

	CHECK(!kvmi_get_registers(c, 1, &regs, NULL, msrs, 2, &mode) &&
	      regs.rip == 0xabc && mode == 8 && msrs[0].data == 0x175 &&
	      msrs[1].data == 0xc0000081,
	      "KVMI_VCPU_GET_REGISTERS with MSRs");

	/* The PAUSE event comes before the command's reply. */
	CHECK(!kvmi_pause_vcpu(c, 1, true), "KVMI_VM_PAUSE_VCPU");
	CHECK(!kvmi_wait_event(c, &ev, 0) && ev.is_vcpu && ev.vcpu == 1 &&
	      ev.event == KVMI_VCPU_EVENT_PAUSE && ev.arch.regs.rip == 0x1001,
	      "the PAUSE event that came first was queued");
	/* Commands while a vCPU waits for its event's reply. */
	CHECK(!kvmi_read_physical(c, 0, buf, 8) && !memcmp(buf, v.ram, 8),
	      "a command while the vCPU waits for the event's reply");
	CHECK(kvmi_reply_event(c, &ev, KVMI_EVENT_ACTION_RETRY, NULL, 0) ==
		      -EINVAL,
	      "an action the event does not accept is not sent");
	CHECK(!kvmi_reply_event(c, &ev, KVMI_EVENT_ACTION_CONTINUE, NULL, 0),
	      "the event's reply");
	CHECK(kvmi_wait_event(c, &ev, 50) == -ETIMEDOUT && kvmi_alive(c),
	      "no more events: a timeout that leaves the connection up");

	CHECK(!kvmi_control_msr(c, 0, 0x174, true) &&
	      !kvmi_wait_event(c, &ev, 2000) &&
	      ev.event == KVMI_VCPU_EVENT_MSR && ev.data.msr.new_value == 2,
	      "an MSR event");
	CHECK(!kvmi_reply_event(c, &ev, KVMI_EVENT_ACTION_CONTINUE, &new_val,
				sizeof(new_val)),
	      "replied with the value to write");

	CHECK(!kvmi_map_memory(c, false, &map) && map.count == 2 &&
	      !map.writable,
	      "guest memory mapped from a passed descriptor");
	{
		uint8_t *p = kvmi_memmap_ptr(&map, HOLE + 10, 100);

		CHECK(p && !memcmp(p, v.ram + RAM_SIZE / 2 + 10, 100) &&
		      v.ram[5] == *(uint8_t *)kvmi_memmap_ptr(&map, 5, 1),
		      "it shows the guest's memory at its addresses");
		v.ram[7] = 0x42;
		CHECK(*(uint8_t *)kvmi_memmap_ptr(&map, 7, 1) == 0x42,
		      "and the guest's writes as they happen");
		CHECK(!kvmi_memmap_ptr(&map, RAM_SIZE / 2 - 8, 16) &&
		      !kvmi_memmap_ptr(&map, HOLE - 1, 2) &&
		      !kvmi_memmap_ptr(&map, ~0ull - 4, 8),
		      "no pointer for ranges outside RAM or across regions");
	}
	kvmi_unmap_memory(&map);
	CHECK(!kvmi_map_memory(c, true, &map) && map.writable, "writable map");
	if (map.base) {
		*(uint8_t *)kvmi_memmap_ptr(&map, 9, 1) = 0x99;
		CHECK(v.ram[9] == 0x99, "a tool's write reaches the guest");
	}
	kvmi_unmap_memory(&map);

	unpair(&v, t, c);
	CHECK(v.event_replies == 2 && v.msr_value == 0x1234 && !v.bad_replies,
	      "the VMM matched both replies to their events");
}

static void test_channel(void)
{
	static struct vmm v;
	struct kvmi_lkvm_chan_slot *s;
	struct kvmi_conn *c;
	struct kvmi_event ev, ev2;
	struct kvmi_req r;
	pthread_t t;
	char b[8];

	if (pair(&v, &t, CHANNEL, cookie, &c)) {
		CHECK(0, "a VMM that offers the event channel");
		return;
	}
	CHECK(!kvmi_wait_event(c, &ev, 2000) && kvmi_event_channel(c) &&
	      ev.is_vcpu && ev.vcpu == 1 && ev.event == KVMI_VCPU_EVENT_PF &&
	      ev.data.pf.gpa == 0x5000,
	      "the first wait asks for the event channel; the event is in its vCPU's slot");
	s = SLOT(&v, 1);
	CHECK(s->state == KVMI_LKVM_SLOT_TAKEN &&
	      kvmi_wait_event(c, &ev2, 20) == -ETIMEDOUT && kvmi_alive(c),
	      "the tool marks it taken and reads it once");
	CHECK(!kvmi_reply_event(c, &ev, KVMI_EVENT_ACTION_RETRY, NULL, 0) &&
	      __atomic_load_n(&s->state, __ATOMIC_ACQUIRE) ==
		      KVMI_LKVM_SLOT_REPLY &&
	      !kvmi_parse(&v.p, s->reply, s->reply_len, &r) &&
	      !kvmi_event_reply_check(&v.pend[1], &r) &&
	      r.action == KVMI_EVENT_ACTION_RETRY,
	      "the reply is written in the slot, the bytes the socket would carry");
	CHECK(recv(v.bell, b, sizeof(b), MSG_DONTWAIT) == 1,
	      "the vCPU slept: the tool rang the doorbell");
	CHECK(kvmi_set_event_channel(c, false) == -EBUSY &&
	      !kvmi_set_event_channel(c, true),
	      "once on, the channel stays on");
	post_event(&v, 0, 1);
	CHECK(kvmi_wait_event(c, &ev, 2000) == -EPROTO && !kvmi_alive(c),
	      "an event in another vCPU's slot ends the connection");
	unpair(&v, t, c);

	if (!pair(&v, &t, CHANNEL_BAD, cookie, &c)) {
		CHECK(kvmi_set_event_channel(c, true) == -EPROTO &&
		      !kvmi_alive(c),
		      "a channel without a slot for each vCPU is refused");
		unpair(&v, t, c);
	}
	if (!pair(&v, &t, SERVE, cookie, &c)) {
		CHECK(kvmi_set_event_channel(c, true) == -KVM_ENOSYS &&
		      kvmi_alive(c) && !kvmi_event_channel(c),
		      "a VMM that does not offer it: events stay on the socket");
		unpair(&v, t, c);
	}
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A VMM that abuses the event channel or the descriptors it passes. */
static void test_hostile_vmm(void)
{
	static struct vmm v;
	struct kvmi_memmap map;
	struct kvmi_conn *c;
	struct kvmi_event ev;
	pthread_t t;
	int64_t t0;
	int err;

	if (!pair(&v, &t, CHANNEL, cookie, &c)) {
		v.dead_bell = true;
		CHECK(!kvmi_wait_event(c, &ev, 2000) && kvmi_event_channel(c),
		      "a channel whose doorbell is hung up: its first event");
		t0 = now_ms();
		err = kvmi_wait_event(c, &ev, 5000);
		CHECK(err == -EPROTO && now_ms() - t0 < 1000 && !kvmi_alive(c),
		      "then the wait ends the connection, no spinning to the timeout");
		unpair(&v, t, c);
	}
	if (!pair(&v, &t, CHANNEL, cookie, &c)) {
		v.unsealed = true;
		CHECK(kvmi_set_event_channel(c, true) == -EPROTO &&
		      !kvmi_alive(c) && !kvmi_event_channel(c),
		      "a channel memfd the VMM could shrink (SIGBUS) is refused");
		unpair(&v, t, c);
	}
	if (!pair(&v, &t, SERVE, cookie, &c)) {
		v.unsealed = true;
		CHECK(kvmi_map_memory(c, false, &map) == -EPROTO && !map.base &&
		      !kvmi_alive(c),
		      "a guest-RAM memfd the VMM could shrink is refused");
		unpair(&v, t, c);
	}
	if (!pair(&v, &t, SERVE, cookie, &c)) {
		v.map_short = true;
		CHECK(kvmi_map_memory(c, false, &map) == -EPROTO && !map.base &&
		      !kvmi_alive(c),
		      "a guest-RAM map that says more than its file holds is refused");
		unpair(&v, t, c);
	}
}

/* Pipelined reads (kvmi/client.c): many windows, a refusal inside one,
 * an event among the replies. */
static void test_pipelined(void)
{
	static struct vmm v;
	static uint8_t buf[RAM_SIZE];
	struct kvmi_conn *c;
	struct kvmi_event ev;
	uint32_t version;
	pthread_t t;
	size_t half = RAM_SIZE / 2;

	if (pair(&v, &t, SERVE, cookie, &c))
		return;
	CHECK(!kvmi_read_physical(c, 0, buf, half) &&
	      !memcmp(buf, v.ram, half) && v.reads == half / 4096,
	      "a read of 128 pages: 128 requests, the bytes in place");
	CHECK(v.max_batch >= 32,
	      "the requests went out 32 or more at a time");
	memset(buf, 0, sizeof(buf));
	CHECK(!kvmi_read_physical(c, HOLE + 100, buf, half - 200) &&
	      !memcmp(buf, v.ram + half + 100, half - 200),
	      "an unaligned read: page-bounded requests, the bytes in place");
	v.reads = 0;
	CHECK(kvmi_read_physical(c, half - 100 * 4096, buf, 120 * 4096) ==
		      -KVM_ENOENT && kvmi_alive(c),
	      "a read that runs out of RAM after 100 pages: the refusal");
	CHECK(!kvmi_get_version(c, &version, NULL) &&
	      version == KVMI_VERSION && v.reads == 120,
	      "every reply in flight was collected: the next command's fits");
	v.reads = 0;
	v.pause_at = 70;
	CHECK(!kvmi_read_physical(c, 0, buf, half) &&
	      !memcmp(buf, v.ram, half),
	      "an event among the replies does not disturb the read");
	CHECK(!kvmi_wait_event(c, &ev, 0) &&
	      ev.event == KVMI_VCPU_EVENT_PAUSE &&
	      !kvmi_reply_event(c, &ev, KVMI_EVENT_ACTION_CONTINUE, NULL, 0),
	      "it was queued for kvmi_wait_event()");
	unpair(&v, t, c);
	CHECK(v.event_replies == 1 && !v.bad_replies,
	      "the VMM got the event's reply");
}

static void test_refusals(void)
{
	static struct vmm v;
	struct kvmi_conn *c;
	uint32_t ver;
	pthread_t t;
	int err;

	err = pair(&v, &t, SERVE, "another cookie of enough length", &c);
	pthread_join(t, NULL);
	vmm_fini(&v);
	CHECK(err == -EACCES && v.hs_err == -EACCES && !c,
	      "different cookies: both ends refuse");

	err = pair(&v, &t, WRONG_SEQ, cookie, &c);
	CHECK(!err && kvmi_get_version(c, &ver, NULL) == -EPROTO &&
	      !kvmi_alive(c) && kvmi_get_version(c, &ver, NULL) == -ENOTCONN,
	      "a reply with the wrong seq ends the connection");
	unpair(&v, t, c);

	err = pair(&v, &t, GARBAGE, cookie, &c);
	CHECK(!err && kvmi_get_version(c, &ver, NULL) == -EPROTO &&
	      !kvmi_alive(c),
	      "a malformed reply ends the connection");
	unpair(&v, t, c);

	err = pair(&v, &t, SILENT, cookie, &c);
	kvmi_set_timeout(c, 100);
	CHECK(!err && kvmi_get_version(c, &ver, NULL) == -ETIMEDOUT &&
	      !kvmi_alive(c),
	      "a reply that does not come in time ends the connection");
	unpair(&v, t, c);
}

/* The VMM connects to the tool's socket, as KVMI's design has it. */
static void *vmm_connects(void *opaque)
{
	struct vmm *v = opaque;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	strcpy(sa.sun_path, sock_path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		v->hs_err = -errno;
		return NULL;
	}
	v->fd = fd;
	return vmm_main(v);
}

static void *vmm_accepts(void *opaque)
{
	struct vmm *v = opaque;

	v->fd = accept4(v->fd, NULL, NULL, SOCK_CLOEXEC);
	return v->fd < 0 ? NULL : vmm_main(v);
}

static void test_listen_connect(void)
{
	static struct vmm v;
	struct kvmi_conn *c;
	struct stat st;
	pthread_t t;
	int lfd, err, fd;
	uint32_t ver;

	lfd = kvmi_listen(sock_path);
	CHECK(lfd >= 0 && !stat(sock_path, &st) && (st.st_mode & 0777) == 0600,
	      "the tool listens on a socket only its owner may reach");
	vmm_init(&v, -1, SERVE, cookie);
	pthread_create(&t, NULL, vmm_connects, &v);
	err = kvmi_accept(lfd, cookie_path, 5000, &c);
	CHECK(!err && !kvmi_get_version(c, &ver, NULL),
	      "the VMM connects, the tool accepts and authenticates it");
	if (!err)
		kvmi_close(c);
	pthread_join(t, NULL);
	vmm_fini(&v);
	close(lfd);
	CHECK(kvmi_accept(-1, cookie_path, 10, &c) < 0 && !c,
	      "accept on no socket fails");

	/* The other way round: lkvm listens, the tool connects. */
	lfd = kvmi_listen(sock_path);
	CHECK(kvmi_listen(cookie_path) == -EEXIST,
	      "a file that is not a socket is never replaced");
	vmm_init(&v, -1, SERVE, cookie);
	v.fd = lfd;
	pthread_create(&t, NULL, vmm_accepts, &v);
	err = kvmi_connect(sock_path, cookie_path, 5000, &c);
	CHECK(!err && !kvmi_get_version(c, &ver, NULL),
	      "the tool connects to a listening VMM");
	if (!err)
		kvmi_close(c);
	pthread_join(t, NULL);
	vmm_fini(&v);

	/* A listener that never speaks: the handshake times out. */
	err = kvmi_connect(sock_path, cookie_path, 100, &c);
	CHECK(err == -ETIMEDOUT && !c,
	      "a VMM that says nothing: the handshake times out");
	fd = accept(lfd, NULL, NULL);
	close(fd);
	close(lfd);
	unlink(sock_path);
}

/* A peer that reads a little now and then (40 KB/s), for up to 12 s or
 * until told to stop. */
static volatile bool trickling;

static void *trickle(void *opaque)
{
	int fd = *(int *)opaque;
	int64_t end = now_ms() + 12000;
	const struct timespec pace = { 0, 100 * 1000 * 1000 };
	char b[4096];

	while (trickling && now_ms() < end && read(fd, b, sizeof(b)) > 0)
		nanosleep(&pace, NULL);	/* the pace of a slow reader */
	return NULL;
}

static void test_transport(void)
{
	uint8_t buf[64], key[KVMI_COOKIE_MAX];
	struct kvmi_msg_hdr h = { .id = 2, .size = 8, .seq = 1 };
	size_t len;
	int sv[2], pfd, fd;
	char path[160];

	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	CHECK(kvmi_io_recv(sv[1], buf, sizeof(buf), 20, &len, NULL) ==
		      -ETIMEDOUT,
	      "nothing to read: a timeout");
	if (write(sv[0], &h, 8) != 8 || write(sv[0], "abc", 3) != 3)
		abort();
	close(sv[0]);
	CHECK(kvmi_io_recv(sv[1], buf, sizeof(buf), 20, &len, NULL) == -EPROTO,
	      "a peer that closes inside a message: a protocol error");
	close(sv[1]);

	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	close(sv[0]);
	CHECK(kvmi_io_recv(sv[1], buf, sizeof(buf), 20, &len, NULL) ==
		      -ECONNRESET,
	      "a peer that closes between messages: a reset");
	close(sv[1]);

	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	h.size = 200;
	if (write(sv[0], &h, 8) != 8)
		abort();
	CHECK(kvmi_io_recv(sv[1], buf, sizeof(buf), 20, &len, NULL) ==
		      -EMSGSIZE,
	      "a message larger than the buffer");
	h.size = 8;
	close(sv[0]);
	close(sv[1]);

	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	{
		struct iovec v[2] = { { &h, 8 }, { "12345678", 8 } };

		CHECK(!kvmi_io_send(sv[0], v, 2, sv[0]) &&
		      !kvmi_io_recv(sv[1], buf, sizeof(buf), 20, &len, &pfd) &&
		      len == 16 && pfd >= 0 && !memcmp(buf + 8, "12345678", 8),
		      "a message and a descriptor, sent and read together");
		if (pfd >= 0)
			close(pfd);
	}
	close(sv[0]);
	close(sv[1]);

	/* A peer that keeps the send waiting by reading a little at a
	 * time: the whole message within KVMI_IO_MSG_TIMEOUT_MS, not each
	 * piece of it. */
	{
		static uint8_t big[512 * 1024];
		struct iovec v = { big, sizeof(big) };
		pthread_t t;
		int64_t t0;
		int err;

		socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
		trickling = true;
		pthread_create(&t, NULL, trickle, &sv[1]);
		t0 = now_ms();
		err = kvmi_io_send(sv[0], &v, 1, -1);
		t0 = now_ms() - t0;
		trickling = false;
		pthread_join(t, NULL);
		CHECK(err == -ETIMEDOUT && t0 < KVMI_IO_MSG_TIMEOUT_MS + 2000,
		      "a peer that reads a little at a time: the send ends at the message timeout");
		close(sv[0]);
		close(sv[1]);
	}

	/* Buffered: many messages from one recv(), parts across writes. */
	{
		static struct kvmi_io_rbuf rb;
		uint8_t many[3 * 16];

		socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
		for (int i = 0; i < 3; i++) {
			h.seq = (uint32_t)i;
			memcpy(many + 16 * i, &h, 8);
			memset(many + 16 * i + 8, 'a' + i, 8);
		}
		if (write(sv[0], many, 40) != 40)	/* 2.5 messages */
			abort();
		CHECK(!kvmi_io_recv_buffered(sv[1], &rb, buf, sizeof(buf), 20,
					     &len) && len == 16 && buf[8] == 'a' &&
		      !kvmi_io_recv_buffered(sv[1], &rb, buf, sizeof(buf), 0,
					     &len) && len == 16 && buf[8] == 'b',
		      "buffered: two messages that came in one write");
		if (write(sv[0], many + 40, 8) != 8)
			abort();
		CHECK(!kvmi_io_recv_buffered(sv[1], &rb, buf, sizeof(buf), 0,
					     &len) && len == 16 && buf[8] == 'c' &&
		      !memcmp(buf + 8, "cccccccc", 8),
		      "buffered: a message whose end came later");
		CHECK(kvmi_io_recv_buffered(sv[1], &rb, buf, sizeof(buf), 0,
					    &len) == -ETIMEDOUT,
		      "buffered: nothing more: a timeout");
		h.size = 200;
		if (write(sv[0], &h, 8) != 8)
			abort();
		CHECK(kvmi_io_recv_buffered(sv[1], &rb, buf, sizeof(buf), 20,
					    &len) == -EMSGSIZE,
		      "buffered: a message larger than the buffer");
		h.size = 8;
		close(sv[0]);
		close(sv[1]);
		rb.start = rb.end = 0;
		socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
		if (write(sv[0], many, 12) != 12)
			abort();
		close(sv[0]);
		CHECK(kvmi_io_recv_buffered(sv[1], &rb, buf, sizeof(buf), 20,
					    &len) == -EPROTO,
		      "buffered: a peer that closes inside a message");
		close(sv[1]);
	}

	/* In place, with descriptors: what the client does. */
	{
		static struct kvmi_io_rbuf rb;
		struct iovec v[2] = { { &h, 8 }, { "12345678", 8 } };
		const uint8_t *msg;
		struct stat st1, st2;
		struct kvmi_io_fds kept = { .n = 0 };
		int fd2;

		socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
		fd2 = open("/dev/null", O_RDONLY | O_CLOEXEC);
		CHECK(!kvmi_io_send(sv[0], v, 2, -1) &&
		      !kvmi_io_send(sv[0], v, 2, sv[0]) &&
		      !kvmi_io_recv_msg(sv[1], &rb, 64, 20, NULL, &msg, &len,
					&kept) &&
		      len == 16 && !memcmp(msg + 8, "12345678", 8) &&
		      !kvmi_io_recv_msg(sv[1], &rb, 64, 20, NULL, &msg, &len,
					&kept) &&
		      len == 16 && kept.n == 1,
		      "in place: two messages, the second's descriptor kept");
		fstat(fd2, &st1);
		CHECK(!kvmi_io_send(sv[0], v, 2, fd2) &&
		      !kvmi_io_recv_msg(sv[1], &rb, 64, 20, NULL, &msg, &len,
					&kept) &&
		      kept.n == 1 && !fstat(kept.fd[0], &st2) &&
		      st1.st_ino == st2.st_ino && st1.st_dev == st2.st_dev,
		      "a later descriptor replaces the one not taken");
		for (unsigned int i = 0; i < kept.n; i++)
			close(kept.fd[i]);
		close(fd2);
		close(sv[0]);
		CHECK(kvmi_io_recv_msg(sv[1], &rb, 64, 20, NULL, &msg, &len,
				       NULL) == -ECONNRESET,
		      "in place: a peer that closed between messages");
		close(sv[1]);
	}

	/* Without waiting: what a polling vCPU does (kvm/introspect.c). */
	{
		static struct kvmi_io_rbuf rb;

		socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
		CHECK(kvmi_io_rbuf_fill(sv[1], &rb) == -EAGAIN &&
		      kvmi_io_rbuf_peek(&rb, sizeof(buf)) == 0,
		      "fill: nothing there, nothing waited for");
		if (write(sv[0], &h, 8) != 8 || write(sv[0], "1234", 4) != 4)
			abort();
		CHECK(kvmi_io_rbuf_fill(sv[1], &rb) == 12 &&
		      kvmi_io_rbuf_peek(&rb, sizeof(buf)) == 0,
		      "peek: a message not all there yet is not one");
		if (write(sv[0], "5678", 4) != 4)
			abort();
		CHECK(kvmi_io_rbuf_fill(sv[1], &rb) == 4 &&
		      kvmi_io_rbuf_peek(&rb, sizeof(buf)) == 16 &&
		      kvmi_io_rbuf_peek(&rb, 15) == -EMSGSIZE,
		      "peek: a whole message; one over the cap is refused");
		CHECK(!kvmi_io_recv_buffered(sv[1], &rb, buf, sizeof(buf), 0,
					     &len) && len == 16 &&
		      !memcmp(buf + 8, "12345678", 8),
		      "what peek left is read in order");
		close(sv[0]);
		CHECK(kvmi_io_rbuf_fill(sv[1], &rb) == 0,
		      "fill: a peer that closed");
		close(sv[1]);
	}

	/* Polling before sleeping: the same results, the window adapts. */
	{
		struct kvmi_io_poll poll;

		kvmi_io_poll_init(&poll, 40);
		socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
		CHECK(kvmi_io_recv_poll(sv[1], buf, sizeof(buf), 20, &poll,
					&len, NULL) == -ETIMEDOUT &&
		      poll.cur_us == 40,
		      "poll: nothing comes, a timeout; the window unchanged");
		if (write(sv[0], &h, 8) != 8 || write(sv[0], "abcdefgh", 8) != 8)
			abort();
		CHECK(!kvmi_io_recv_poll(sv[1], buf, sizeof(buf), 20, &poll,
					 &len, NULL) &&
		      len == 16 && !memcmp(buf + 8, "abcdefgh", 8),
		      "poll: a message read as without polling");
		close(sv[0]);
		close(sv[1]);
		kvmi_io_poll_update(&poll, 5000, false);
		CHECK(poll.cur_us == 20, "a wait past the maximum halves the window");
		kvmi_io_poll_update(&poll, 30, false);
		CHECK(poll.cur_us == 40, "a wait the maximum covers doubles it");
		kvmi_io_poll_update(&poll, 30, false);
		CHECK(poll.cur_us == 40, "never past the maximum");
		for (int i = 0; i < 8; i++)
			kvmi_io_poll_update(&poll, 5000, false);
		CHECK(poll.cur_us == 0, "a slow peer: no polling at all");
		kvmi_io_poll_update(&poll, 30, false);
		CHECK(poll.cur_us == KVMI_IO_POLL_START_US,
		      "a fast peer again: polling starts again");
		kvmi_io_poll_update(&poll, 1, true);
		CHECK(poll.cur_us == KVMI_IO_POLL_START_US,
		      "a hit keeps the window");
		kvmi_io_poll_init(&poll, 0);
		kvmi_io_poll_update(&poll, 30, false);
		CHECK(poll.cur_us == 0, "max 0: never polls");
	}

	snprintf(path, sizeof(path), "%s/loose", dir);
	fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
	if (fd < 0 || write(fd, cookie, sizeof(cookie)) < 0)
		abort();
	fchmod(fd, 0644);
	close(fd);
	CHECK(kvmi_io_cookie_load(path, key, &len) == -EPERM,
	      "a cookie file others may read is refused");
	chmod(path, 0600);
	CHECK(!kvmi_io_cookie_load(path, key, &len) && len == sizeof(cookie),
	      "a private cookie file is read");
	fd = open(path, O_WRONLY | O_TRUNC);
	if (fd < 0 || write(fd, "short", 5) != 5)
		abort();
	close(fd);
	CHECK(kvmi_io_cookie_load(path, key, &len) == -EINVAL,
	      "a cookie under 16 bytes is refused");
	unlink(path);
	CHECK(kvmi_io_cookie_load(path, key, &len) == -ENOENT,
	      "a missing cookie file");
}

int main(void)
{
	int fd;

	snprintf(dir, sizeof(dir), "/tmp/kvmi-test.XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	snprintf(cookie_path, sizeof(cookie_path), "%s/cookie", dir);
	snprintf(sock_path, sizeof(sock_path), "%s/kvmi.sock", dir);
	fd = open(cookie_path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
	if (fd < 0 || write(fd, cookie, strlen(cookie)) < 0)
		return 1;
	close(fd);

	test_session();
	test_channel();
	test_hostile_vmm();
	test_pipelined();
	test_refusals();
	test_listen_connect();
	test_transport();

	unlink(cookie_path);
	unlink(sock_path);
	rmdir(dir);
	return tap_done();
}
