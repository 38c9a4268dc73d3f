// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer harness for the control socket server (kvm/control.c): the
 * input is the byte stream one client sends, framed or not, against a
 * machine without KVM (16 MiB of RAM, no vCPUs) serving a real socket in
 * a private $LKVM_HOME. The first byte sets how many bytes each write
 * carries (so a request may arrive in pieces) and whether a descriptor
 * (/dev/null, as CTL_DUMP takes one) rides with the first write. The
 * server must answer or close the client, never crash, and close it
 * once the client stops writing; each input starts a new connection.
 *
 * CTL_STOP would end the machine for every later input, so the harness
 * turns it into CTL_INFO before sending; the framing is the server's
 * own (struct ctl_hdr), so only whole headers are rewritten. After
 * CTL_CONSOLE the connection is the console's, which may keep it open
 * past the end of the client's input: the harness then closes it itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fake-control.h"
#include "lkvm/control.h"
#include "lkvm/registry.h"
#include "lkvm/util.h"
#include "lkvm/vcpu.h"

#define POLLS_MAX 2000		/* main-loop rounds before a client is stuck */

static struct machine *m;
static int devnull = -1;

static char home[] = "/tmp/lkvm-fuzz-control.XXXXXX";

/* libFuzzer ends with exit(): the private $LKVM_HOME goes with it. */
static void cleanup(void)
{
	char path[sizeof(home) + 16];

	snprintf(path, sizeof(path), "%s/fuzz.sock", home);
	unlink(path);
	snprintf(path, sizeof(path), "%s/fuzz.lock", home);
	unlink(path);
	rmdir(home);
}

/* The guest's console input: takes everything, as a reading guest does. */
static size_t console_sink(struct machine *mach, const char *buf, size_t len,
			   void *opaque)
{
	(void)mach;
	(void)buf;
	(void)opaque;
	return len;
}

static void setup(void)
{
	static struct registry_entry reg;
	FILE *null;

	m = fake_control_machine(home, "fuzz");
	atexit(cleanup);
	machine_set_console_input(m, console_sink, NULL);
	if (registry_claim("fuzz", &reg) || control_start(m, &reg, -1))
		abort();
	devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	/* Error replies are logged too; sanitizer reports use fd 2. */
	null = fopen("/dev/null", "w");
	if (null)
		stderr = null;
}

/* CTL_STOP -> CTL_INFO in every whole header, following the framing.
 * True when a CTL_CONSOLE request is among them. */
static bool defuse(uint8_t *p, size_t len)
{
	bool console = false;
	size_t off = 0;

	while (len - off >= sizeof(struct ctl_hdr)) {
		struct ctl_hdr h;

		memcpy(&h, p + off, sizeof(h));
		if (h.magic != CTL_MAGIC || h.size > CTL_MAX_REQUEST)
			break;
		console |= h.op == CTL_CONSOLE;
		if (h.op == CTL_STOP) {
			h.op = CTL_INFO;
			memcpy(p + off, &h, sizeof(h));
		}
		off += sizeof(h) + h.size;
		if (off > len)
			break;
	}
	return console;
}

static void send_piece(int fd, const uint8_t *p, size_t len, bool with_fd)
{
	struct iovec iov = { (void *)p, len };
	long n = send_with_fd(fd, &iov, 1, with_fd ? devnull : -1);

	/* The server may have closed the client already: that is fine. */
	if (n < 0 && n != -EPIPE && n != -ECONNRESET)
		abort();
}

/* Runs the main loop and reads replies until the server closes fd. */
static bool served_until_closed(int fd, int rounds)
{
	char buf[65536];

	for (int i = 0; i < rounds; i++) {
		ssize_t n;

		machine_poll(m, 0);
		do
			n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		while (n > 0);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return true;
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct registry_guest g;
	size_t chunk, off;
	bool console;
	uint8_t *msg;
	int fd;

	if (!m)
		setup();
	if (!size)
		return 0;
	chunk = (data[0] & 0x3f) + 1;
	msg = malloc(size);
	if (!msg)
		abort();
	memcpy(msg, data + 1, size - 1);
	console = defuse(msg, size - 1);

	fd = registry_connect("fuzz", &g);
	if (fd < 0)
		abort();	/* a client left over from an earlier input */
	machine_poll(m, 0);	/* accept */
	for (off = 0; off < size - 1; off += chunk) {
		size_t n = size - 1 - off < chunk ? size - 1 - off : chunk;

		send_piece(fd, msg + off, n, off == 0 && (data[0] & 0x80));
		machine_poll(m, 0);
	}
	shutdown(fd, SHUT_WR);
	if (!served_until_closed(fd, console ? 10 : POLLS_MAX) && !console)
		abort();	/* the server kept a client that went away */
	close(fd);
	machine_poll(m, 0);	/* the console sees it go */
	free(msg);
	return 0;
}
