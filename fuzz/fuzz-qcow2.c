// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer harness for the qcow2 reader and writer: the input is an
 * image file. It is opened read-write and read-only through the public
 * API (disk_open on a memfd), and each open disk gets reads at both ends
 * and in the middle, writes that allocate clusters, write-zeroes, discard
 * and a flush. Any crash, sanitizer report or hang is a bug; refusing
 * the image or failing a request with -EIO is the expected answer.
 *
 * The image is the whole input: the seeds in fuzz/corpus/fuzz-qcow2 are
 * small images qemu-img made (512-byte clusters, versions 2 and 3,
 * compressed, refcount widths 1 and 64, a snapshot), which mutate into
 * every header field and table entry.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lkvm/disk.h"

#define IO_BYTES	(64 * 1024)

static uint8_t buf[IO_BYTES];

struct waiter {
	int done;
	int result;
};

static void on_done(struct disk_req *r, int result)
{
	struct waiter *w = r->opaque;

	w->done = 1;
	w->result = result;
}

static int run(struct disk *d, enum disk_op op, uint64_t off, uint64_t len)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct waiter w = { 0, 0 };
	struct disk_req r = {
		.op = op, .offset = off, .len = len, .iov = &iov,
		.iovcnt = op == DISK_READ || op == DISK_WRITE,
		.done = on_done, .opaque = &w,
	};

	if (disk_submit(d, &r))
		return -EINVAL;
	while (!w.done) {
		struct pollfd p = { .fd = disk_completion_fd(d), .events = POLLIN };

		poll(&p, 1, 1000);
		disk_complete(d);
	}
	return w.result;
}

static void exercise(struct disk *d)
{
	uint64_t size = disk_info(d)->size;
	uint64_t len = size < IO_BYTES ? size : IO_BYTES;
	uint64_t at[3] = { 0, (size / 2) & ~511ull, size - len };

	for (int i = 0; i < 3; i++)
		run(d, DISK_READ, at[i], len);
	if (disk_info(d)->readonly)
		return;
	for (int i = 0; i < 3; i++) {
		memset(buf, 0x5a + i, len);
		run(d, DISK_WRITE, at[i] + (i ? 0 : 512), len - (i ? 0 : 512));
	}
	run(d, DISK_WRITE_ZEROES, at[1], len);
	run(d, DISK_DISCARD, at[2], len);
	run(d, DISK_FLUSH, 0, 0);
	for (int i = 0; i < 3; i++)
		run(d, DISK_READ, at[i], len);
}

/*
 * lkvm refuses most inputs with a one-line message, thousands a second:
 * they go nowhere. libFuzzer and the sanitizers keep their own copy of
 * stderr with -close_fd_mask=2, so crash reports still reach the log.
 */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static char quiet[] = "-close_fd_mask=2";
	static char *args[64];
	int n = *argc < 62 ? *argc : 62;

	memcpy(args, *argv, sizeof(char *) * (size_t)n);
	args[n++] = quiet;
	args[n] = NULL;
	*argc = n;
	*argv = args;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const mode[] = { "", ",ro" };
	char spec[64];
	int fd;

	fd = memfd_create("qcow2-fuzz", MFD_CLOEXEC);
	if (fd < 0)
		return 0;
	if (write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	for (int m = 0; m < 2; m++) {
		struct disk *d;

		/* Read-write first: what it wrote is then read back ro. */
		snprintf(spec, sizeof(spec), "/proc/self/fd/%d,format=qcow2%s",
			 fd, mode[m]);
		if (disk_open(spec, &d))
			continue;
		exercise(d);
		disk_close(d);
	}
	close(fd);
	return 0;
}
