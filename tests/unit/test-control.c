// SPDX-License-Identifier: GPL-2.0
/*
 * The control socket server against a machine without KVM: well-formed
 * requests, and every kind of malformed one, which must close (or
 * answer) that client and no other. Also the registry's stale-entry
 * handling and the exit record.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "fake-control.h"
#include "lkvm/control.h"
#include "lkvm/registry.h"
#include "lkvm/vcpu.h"
#include "tap.h"

static struct machine *m;
static char home[] = "/tmp/lkvm-unit-control.XXXXXX";

/* Runs the main loop until fd has something to read (or 2 s pass). */
static bool serve_until_readable(int fd)
{
	for (int i = 0; i < 200; i++) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		machine_poll(m, 10);
		if (poll(&p, 1, 0) > 0)
			return true;
	}
	return false;
}

static int client(void)
{
	struct registry_guest g;
	int fd = registry_connect("unit", &g);

	if (fd >= 0)
		machine_poll(m, 10);	/* accept */
	return fd;
}

static void send_raw(int fd, const void *buf, size_t len)
{
	if (send(fd, buf, len, MSG_NOSIGNAL) != (ssize_t)len)
		abort();
}

static void send_req(int fd, uint16_t version, uint16_t op, uint32_t seq,
		     const void *body, uint32_t size)
{
	struct ctl_hdr h = { CTL_MAGIC, version, op, seq, size };
	char buf[sizeof(h) + 256];

	memcpy(buf, &h, sizeof(h));
	if (size)
		memcpy(buf + sizeof(h), body, size);
	send_raw(fd, buf, sizeof(h) + size);
}

/* One reply: its error, its body in body (NUL-terminated), or -1 on EOF. */
static int get_reply(int fd, uint16_t *op, uint32_t *seq, char *body,
		     size_t len)
{
	struct ctl_hdr h;
	struct ctl_reply r;
	size_t n;

	if (!serve_until_readable(fd))
		return -1000;
	if (recv(fd, &h, sizeof(h), MSG_WAITALL) != sizeof(h))
		return -1;
	if (recv(fd, &r, sizeof(r), MSG_WAITALL) != sizeof(r))
		return -1;
	n = h.size - sizeof(r);
	if (n >= len || (n && recv(fd, body, n, MSG_WAITALL) != (ssize_t)n))
		return -1;
	body[n] = '\0';
	if (op)
		*op = h.op;
	if (seq)
		*seq = h.seq;
	return r.error;
}

static bool closed(int fd)
{
	char c;

	return serve_until_readable(fd) && recv(fd, &c, 1, 0) == 0;
}

int main(void)
{
	struct registry_entry reg;
	struct registry_guest g;
	char body[70000], path[256];
	struct stat st;
	uint16_t op;
	uint32_t seq;
	int a, b, err, status;

	m = fake_control_machine(home, "unit");

	CHECK(registry_claim("unit", &reg) == 0, "the name is claimed");
	CHECK(control_start(m, &reg, -1) == 0, "the control socket listens");
	snprintf(path, sizeof(path), "%s/unit.sock", home);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600,
	      "the socket is mode 0600");
	CHECK(stat(home, &st) == 0 && (st.st_mode & 0777) == 0700,
	      "the registry directory is mode 0700");

	a = client();
	b = client();
	CHECK(a >= 0 && b >= 0, "two clients connect");

	send_req(a, CTL_VERSION, CTL_INFO, 7, NULL, 0);
	err = get_reply(a, &op, &seq, body, sizeof(body));
	CHECK(err == 0 && op == CTL_INFO && seq == 7, "INFO is answered, seq echoed");
	CHECK(strstr(body, "name unit\n") && strstr(body, "state running\n"),
	      "INFO names the guest and its state");

	send_req(a, CTL_VERSION, CTL_PAUSE, 8, NULL, 0);
	CHECK(get_reply(a, NULL, NULL, body, sizeof(body)) == 0, "PAUSE");
	send_req(a, CTL_VERSION, CTL_PAUSE, 9, NULL, 0);
	CHECK(get_reply(a, NULL, NULL, body, sizeof(body)) == 0,
	      "PAUSE of a paused guest is not an error");
	send_req(a, CTL_VERSION, CTL_INFO, 10, NULL, 0);
	get_reply(a, NULL, NULL, body, sizeof(body));
	CHECK(strstr(body, "state paused\n") != NULL, "INFO says paused");
	send_req(a, CTL_VERSION, CTL_RESUME, 11, NULL, 0);
	CHECK(get_reply(a, NULL, NULL, body, sizeof(body)) == 0, "RESUME");

	/* Guest memory: a known pattern back, and the edges refused. */
	guest_write(m, 0x5000, "\xde\xad\xbe\xef", 4);
	{
		struct ctl_mem_req r = { .gpa = 0x5000, .len = 4 };

		send_req(a, CTL_VERSION, CTL_MEM, 12, &r, sizeof(r));
		err = get_reply(a, NULL, NULL, body, sizeof(body));
		CHECK(err == 0 && !memcmp(body, "\xde\xad\xbe\xef", 4),
		      "MEM reads guest memory");
		r.gpa = (16 << 20) - 2;
		send_req(a, CTL_VERSION, CTL_MEM, 13, &r, sizeof(r));
		err = get_reply(a, NULL, NULL, body, sizeof(body));
		CHECK(err == -EFAULT && strstr(body, "not guest memory"),
		      "MEM past the end of RAM is refused");
		r.gpa = ~0ull - 1;
		send_req(a, CTL_VERSION, CTL_MEM, 14, &r, sizeof(r));
		CHECK(get_reply(a, NULL, NULL, body, sizeof(body)) == -EFAULT,
		      "MEM with a wrapping range is refused");
		r.gpa = 0;
		r.len = CTL_MEM_MAX + 1;
		send_req(a, CTL_VERSION, CTL_MEM, 15, &r, sizeof(r));
		CHECK(get_reply(a, NULL, NULL, body, sizeof(body)) == -EINVAL,
		      "MEM longer than CTL_MEM_MAX is refused");
		r.len = 4;
		r.reserved = 1;
		send_req(a, CTL_VERSION, CTL_MEM, 16, &r, sizeof(r));
		CHECK(get_reply(a, NULL, NULL, body, sizeof(body)) == -EINVAL,
		      "a non-zero reserved field is refused");
		send_req(a, CTL_VERSION, CTL_MEM, 17, &r, 8);
		CHECK(get_reply(a, NULL, NULL, body, sizeof(body)) == -EINVAL,
		      "a body of the wrong size is refused");
	}
	{
		struct ctl_cpu_req r = { .cpu = 3 };

		send_req(a, CTL_VERSION, CTL_REGS, 18, &r, sizeof(r));
		err = get_reply(a, NULL, NULL, body, sizeof(body));
		CHECK(err == -ENODEV && strstr(body, "no vCPU 3"),
		      "a vCPU that does not exist is named");
	}
	send_req(a, CTL_VERSION, 999, 19, NULL, 0);
	CHECK(get_reply(a, NULL, NULL, body, sizeof(body)) == -ENOSYS,
	      "an unknown request gets ENOSYS");
	send_req(a, CTL_VERSION, CTL_DUMP, 20,
		 &(struct ctl_dump_req){ 0 }, sizeof(struct ctl_dump_req));
	CHECK(get_reply(a, NULL, NULL, body, sizeof(body)) == -EBADF,
	      "DUMP without a file descriptor is refused");

	/* A request split into single bytes is still one request. */
	{
		struct ctl_hdr h = { CTL_MAGIC, CTL_VERSION, CTL_INFO, 21, 0 };
		const char *p = (const char *)&h;

		for (size_t i = 0; i < sizeof(h); i++) {
			send_raw(a, p + i, 1);
			machine_poll(m, 0);
		}
		CHECK(get_reply(a, NULL, &seq, body, sizeof(body)) == 0 &&
		      seq == 21, "a request sent byte by byte is answered");
	}
	CHECK(stat(path, &st) == 0, "the socket is still there");

	/* Framing errors close that client, not the other. */
	send_raw(b, "GET / HTTP/1.0\r\n\r\n", 18);
	CHECK(closed(b), "a header that is not ours closes the client");
	close(b);
	send_req(a, CTL_VERSION, CTL_INFO, 22, NULL, 0);
	CHECK(get_reply(a, NULL, NULL, body, sizeof(body)) == 0,
	      "the other client is still served");

	b = client();
	{
		struct ctl_hdr h = { CTL_MAGIC, CTL_VERSION, CTL_INFO, 23,
				     CTL_MAX_REQUEST + 1 };

		send_raw(b, &h, sizeof(h));
		CHECK(closed(b), "an oversized request closes the client");
		close(b);
	}
	b = client();
	send_req(b, CTL_VERSION + 1, CTL_INFO, 24, NULL, 0);
	err = get_reply(b, NULL, NULL, body, sizeof(body));
	CHECK(err == -EPROTONOSUPPORT && strstr(body, "version"),
	      "another protocol version is refused, with the reason");
	CHECK(closed(b), "... and the client closed");
	close(b);

	/* CONSOLE with input in the same write: the input is handed to the
	 * console, not read from the freed client (ASan in the san build). */
	{
		char req[sizeof(struct ctl_hdr) + 5];
		struct ctl_hdr h = { CTL_MAGIC, CTL_VERSION, CTL_CONSOLE, 30, 0 };

		b = client();
		memcpy(req, &h, sizeof(h));
		memcpy(req + sizeof(h), "typed", 5);
		send_raw(b, req, sizeof(req));
		CHECK(serve_until_readable(b) &&
		      get_reply(b, NULL, &seq, body, sizeof(body)) == 0 &&
		      seq == 30, "CONSOLE with input behind it is accepted");
		close(b);
		machine_poll(m, 10);
	}

	/* Half a request, then the client goes away: nothing is left. */
	b = client();
	send_raw(b, "LVM", 3);
	machine_poll(m, 10);
	close(b);
	machine_poll(m, 10);
	send_req(a, CTL_VERSION, CTL_INFO, 25, NULL, 0);
	CHECK(get_reply(a, NULL, NULL, body, sizeof(body)) == 0,
	      "a client leaving mid-request harms no one");

	send_req(a, CTL_VERSION, CTL_WAIT, 26, NULL, 0);
	machine_poll(m, 10);
	b = client();
	send_req(b, CTL_VERSION, CTL_STAT, 27, NULL, 0);
	err = get_reply(b, NULL, NULL, body, sizeof(body));
	CHECK(err == 0 && strstr(body, "mem.ram_bytes 16777216\n") &&
	      strstr(body, "lkvm.exits.total 0\n"), "STAT reports memory and exits");
	close(b);

	/* The end: the socket goes, WAIT hears the status. */
	m->cfg.detach = true;
	control_close(m);
	CHECK(stat(path, &st) < 0, "control_close removes the socket");
	control_finish(m, 7);
	err = get_reply(a, &op, &seq, body, sizeof(body));
	CHECK(err == 0 && op == CTL_WAIT && seq == 26 &&
	      !strcmp(body, "status 7\n"), "WAIT is answered with the status");
	close(a);
	registry_release(&reg);

	CHECK(registry_take_exit("unit", &status) == 0 && status == 7,
	      "a detached guest's status is kept for lkvm wait");
	CHECK(registry_take_exit("unit", &status) == -ENOENT,
	      "... and collected once");

	/* A stale entry: a socket and a lock file that nobody holds. */
	{
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int s = socket(AF_UNIX, SOCK_STREAM, 0);
		char lock[256];

		memcpy(sa.sun_path, path, strlen(path) + 1);	/* short */
		bind(s, (struct sockaddr *)&sa, sizeof(sa));
		close(s);
		snprintf(lock, sizeof(lock), "%s/unit.lock", home);
		close(open(lock, O_CREAT | O_WRONLY, 0600));
		err = registry_connect("unit", &g);
		CHECK(err == -ENOENT && g.state == REGISTRY_NONE,
		      "a stale socket is no guest");
		CHECK(stat(path, &st) < 0 && stat(lock, &st) < 0,
		      "... and is removed");
	}
	rmdir(home);
	machine_vcpu_ctl_free(m);
	close(m->epoll_fd);
	fake_machine_free(m);
	return tap_done();
}
