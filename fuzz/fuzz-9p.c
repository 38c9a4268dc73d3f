// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer harness for the 9P2000.L server (virtio/9p-server.c) and its
 * codec (virtio/9p-proto.c): every input is a session of hostile
 * messages against a real share in a temporary directory.
 *
 * Each input starts a server, agrees on 9P2000.L and attaches fid 0 to
 * the root; then it is read as records:
 *   flags[1] cap[2] len[2] bytes[len]
 * flags bit 0: the harness writes len into the message's size field (so
 * that most messages get past the size check and into the handlers);
 * bit 1: the reply buffer is cap bytes, else the full msize; bit 2: the
 * reply goes to three split buffers through p9_handle_iov(), as the
 * device does (Tread reads straight into them); bit 3: a Twrite leaves
 * its data in two tail buffers (p9_handle_split(), as the device does
 * with a large one).
 *
 * After each message: the reply fits its buffer, its size field is its
 * length, it is an R-message with the request's tag; and after each
 * input, the directory around the share holds exactly the share and a
 * canary file with its contents: nothing escaped the jail.
 */
#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "lkvm/9p.h"
#include "lkvm/util.h"

static char top[64], share[96], canary[96];
static uint8_t msg[P9_MAX_MSIZE], rep[P9_MAX_MSIZE];

static void check(int cond)
{
	if (!cond)
		abort();
}

static void put_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	check(f != NULL);
	fputs(text, f);
	fclose(f);
}

static void cleanup(void)
{
	char cmd[96];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
	if (system(cmd))
		fprintf(stderr, "fuzz-9p: could not remove %s\n", top);
}

static void setup(void)
{
	char p[160];

	snprintf(top, sizeof(top), "/tmp/lkvm-fuzz-9p-XXXXXX");
	check(mkdtemp(top) != NULL);
	atexit(cleanup);
	snprintf(share, sizeof(share), "%s/share", top);
	snprintf(canary, sizeof(canary), "%s/canary", top);
	check(mkdir(share, 0755) == 0);
	put_file(canary, "canary");
	snprintf(p, sizeof(p), "%s/d", share);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/f", share);
	put_file(p, "file in the share");
	snprintf(p, sizeof(p), "%s/up", share);
	check(symlink("..", p) == 0);
	snprintf(p, sizeof(p), "%s/abs", share);
	check(symlink(top, p) == 0);
}

/* Nothing but the share and an intact canary around it. */
static void check_jail(void)
{
	DIR *d = opendir(top);
	struct dirent *e;
	char buf[16] = { 0 };
	FILE *f;

	check(d != NULL);
	while ((e = readdir(d)))
		check(!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
		      !strcmp(e->d_name, "share") || !strcmp(e->d_name, "canary"));
	closedir(d);
	f = fopen(canary, "r");
	check(f != NULL);
	check(fread(buf, 1, sizeof(buf) - 1, f) == 6 && !strcmp(buf, "canary"));
	fclose(f);
}

static uint8_t scratch[P9_MAX_MSIZE];

static uint32_t send(struct p9_server *s, const uint8_t *m, uint32_t len,
		     uint32_t cap, bool split, bool tail)
{
	uint32_t n, a = cap / 3, b = cap / 3, t = len - P9_TWRITE_HDR;
	struct iovec iov[3] = {
		{ rep, a }, { rep + a, b }, { rep + a + b, cap - a - b },
	};
	struct iovec tv[2] = {
		{ (uint8_t *)m + P9_TWRITE_HDR, t / 2 },
		{ (uint8_t *)m + P9_TWRITE_HDR + t / 2, t - t / 2 },
	};
	struct p9_split sp = { tv, 2, t };

	if (tail && len >= P9_TWRITE_HDR && m[4] == P9_TWRITE)
		n = p9_handle_split(s, m, P9_TWRITE_HDR, &sp, scratch, cap, iov, 3);
	else if (split)
		n = p9_handle_iov(s, m, len, scratch, cap, iov, 3);
	else
		n = p9_handle(s, m, len, rep, cap);

	check(n <= cap);
	if (n) {
		check(n >= P9_HDR + (rep[4] == P9_RLERROR ? 4 : 0));
		check(get_le32(rep) == n);
		check(rep[4] & 1);
		if (len >= P9_HDR)
			check(get_le16(rep + 5) == get_le16(m + 5));
	}
	return n;
}

static void start(struct p9_server *s)
{
	struct p9_out o = { .buf = msg, .cap = sizeof(msg) };

	p9_msg_begin(&o, P9_TVERSION, P9_NOTAG);
	p9_put32(&o, 65536);
	p9_putstr(&o, "9P2000.L");
	check(send(s, msg, p9_msg_end(&o), sizeof(rep), false, false) > 0 &&
	      rep[4] == P9_TVERSION + 1);
	p9_msg_begin(&o, P9_TATTACH, 1);
	p9_put32(&o, 0);
	p9_put32(&o, P9_NOFID);
	p9_putstr(&o, "fuzz");
	p9_putstr(&o, "");
	p9_put32(&o, 0);
	check(send(s, msg, p9_msg_end(&o), sizeof(rep), false, false) > 0 &&
	      rep[4] == P9_TATTACH + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	struct p9_server *s;
	size_t off = 0;

	if (!top[0])
		setup();
	s = p9_server_new(share, false, err, sizeof(err));
	check(s != NULL);
	if (size && (data[0] & 0x80))
		p9_server_no_openat2(s);
	start(s);
	while (off + 5 <= size) {
		uint8_t flags = data[off];
		uint32_t cap = get_le16(data + off + 1);
		uint32_t len = get_le16(data + off + 3);

		off += 5;
		len = (uint32_t)MIN(len, size - off);
		memcpy(msg, data + off, len);
		off += len;
		if ((flags & 1) && len >= 4)
			put_le32(msg, len);
		if (!(flags & 2))
			cap = sizeof(rep);
		send(s, msg, len, cap, flags & 4, flags & 8);
	}
	p9_server_free(s);
	check_jail();
	return 0;
}
