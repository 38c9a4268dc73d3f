/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by test-disk.c and test-qcow2.c: synchronous requests
 * over the asynchronous API, many requests in flight, data patterns,
 * captured error messages, scratch directories and shell commands.
 */
#ifndef LKVM_DISK_TEST_H
#define LKVM_DISK_TEST_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lkvm/disk.h"
#include "lkvm/util.h"
#include "tap.h"

static char tdir[64];

static inline void tdir_make(const char *tag)
{
	snprintf(tdir, sizeof(tdir), "/tmp/lkvm-%s.XXXXXX", tag);
	if (!mkdtemp(tdir)) {
		perror("mkdtemp");
		exit(1);
	}
}

static inline const char *tpath(const char *name)
{
	static char buf[8][256];
	static int i;

	i = (i + 1) % 8;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", tdir, name);
	return buf[i];
}

/* Runs a shell command; returns its exit status. Output is kept quiet. */
static inline int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	if (st == -1 || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

static inline void tdir_remove(void)
{
	sh("rm -rf '%s'", tdir);
}

/* A byte pattern that differs per offset and per seed. */
static inline uint8_t pat(uint64_t off, unsigned int seed)
{
	uint64_t x = (off >> 3) * 0x9e3779b97f4a7c15ull + seed * 0x632be59bd9b4e019ull;

	x ^= x >> 29;
	return (uint8_t)(x >> ((off & 7) * 8));
}

static inline void fill(uint8_t *buf, uint64_t off, size_t len, unsigned int seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = pat(off + i, seed);
}

/* ---- requests ---- */

struct waiter {
	int done;
	int result;
};

static inline void on_done(struct disk_req *r, int result)
{
	struct waiter *w = r->opaque;

	w->done++;
	w->result = result;
}

static inline void wait_fd(struct disk *d)
{
	struct pollfd p = { .fd = disk_completion_fd(d), .events = POLLIN };

	poll(&p, 1, 5000);
	disk_complete(d);
}

/* One request, waited for; returns the submit error or the result. */
static inline int req_sync(struct disk *d, enum disk_op op, uint64_t off,
		    void *buf, uint64_t len)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct waiter w = { 0, 0 };
	struct disk_req r = {
		.op = op, .offset = off, .len = len,
		.iov = &iov, .iovcnt = (op == DISK_READ || op == DISK_WRITE),
		.ram = true,	/* heap memory, as guest RAM */
		.done = on_done, .opaque = &w,
	};
	int ret = disk_submit(d, &r);

	if (ret)
		return ret;
	while (!w.done)
		wait_fd(d);
	return w.result;
}

#define MAX_FLIGHT	256

/* Waits until each of w[0..n) is done. */
static inline void wait_all(struct disk *d, const struct waiter *w, int n)
{
	for (;;) {
		int finished = 0;

		for (int i = 0; i < n; i++)
			finished += w[i].done;
		if (finished == n)
			return;
		wait_fd(d);
	}
}

/*
 * Moves [0, len) of buf to or from the disk at base, in requests of about
 * chunk bytes, each split over three buffers, all in flight together.
 * Returns 0, or the first failure.
 */
static inline int bulk(struct disk *d, enum disk_op op, uint64_t base, uint8_t *buf,
		uint64_t len, uint64_t chunk)
{
	static struct disk_req r[MAX_FLIGHT];
	static struct iovec iov[MAX_FLIGHT][3];
	static struct waiter w[MAX_FLIGHT];
	uint64_t off = 0;
	int first = 0;

	while (off < len) {
		int n = 0;

		for (; n < MAX_FLIGHT && off < len; n++) {
			uint64_t k = MIN(chunk, len - off), a = k / 3 & ~7ull, b = k / 5;

			iov[n][0] = (struct iovec){ buf + off, a };
			iov[n][1] = (struct iovec){ buf + off + a, b };
			iov[n][2] = (struct iovec){ buf + off + a + b, k - a - b };
			w[n] = (struct waiter){ 0, 0 };
			r[n] = (struct disk_req){
				.op = op, .offset = base + off, .iov = iov[n],
				.iovcnt = 3, .ram = true,
				.done = on_done, .opaque = &w[n],
			};
			if (disk_submit(d, &r[n])) {
				w[n].done = 1;
				w[n].result = -EINVAL;
			}
			off += k;
		}
		wait_all(d, w, n);
		for (int i = 0; i < n; i++) {
			if (w[i].done != 1 && !first)
				first = -EPROTO;
			if (w[i].result && !first)
				first = w[i].result;
		}
	}
	return first;
}

/* ---- messages ---- */

static int saved_stderr = -1;
static char err_file[256];

static inline void capture_begin(void)
{
	int fd;

	snprintf(err_file, sizeof(err_file), "%s/stderr", tdir);
	fd = open(err_file, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	fflush(stderr);
	saved_stderr = dup(2);
	dup2(fd, 2);
	close(fd);
}

/* What was printed since capture_begin (static buffer). */
static inline const char *capture_end(void)
{
	static char buf[4096];
	int fd, n;

	fflush(stderr);
	dup2(saved_stderr, 2);
	close(saved_stderr);
	fd = open(err_file, O_RDONLY);
	n = fd < 0 ? 0 : (int)read(fd, buf, sizeof(buf) - 1);
	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

/* One line, "lkvm: disk 'PATH': ..." naming path, containing what. */
static inline bool one_line_about(const char *msg, const char *path, const char *what)
{
	char prefix[512];
	size_t len = strlen(msg);

	snprintf(prefix, sizeof(prefix), "lkvm: disk '%s': ", path);
	if (strncmp(msg, prefix, strlen(prefix)) || !len || msg[len - 1] != '\n')
		return false;
	if (memchr(msg, '\n', len - 1))
		return false;
	return !what || strstr(msg, what);
}

/* Opens spec expecting failure; checks errno and the message. */
static inline bool open_fails(const char *spec, const char *path, int err,
		       const char *what)
{
	struct disk *d = NULL;
	const char *msg;
	int ret;

	capture_begin();
	ret = disk_open(spec, &d);
	msg = capture_end();
	if (d)
		disk_close(d);
	if (ret != err || !one_line_about(msg, path, what)) {
		printf("# open '%s': %d (want %d), message: %s", spec, ret, err,
		       *msg ? msg : "(none)\n");
		return false;
	}
	return true;
}

/* Writes len bytes of pattern seed to a plain file. */
static inline void write_file(const char *path, uint64_t len, unsigned int seed)
{
	uint8_t *buf = malloc(len);
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);

	fill(buf, 0, len, seed);
	if (fd < 0 || write(fd, buf, len) != (ssize_t)len) {
		perror(path);
		exit(1);
	}
	close(fd);
	free(buf);
}

/*
 * A private mount namespace with a small tmpfs, for ENOSPC. Done before
 * any thread starts; false where mounting is not allowed.
 */
static inline bool small_tmpfs(const char *dir, const char *size)
{
	char opts[64];

	if (unshare(CLONE_NEWNS))
		return false;
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		return false;
	mkdir(dir, 0700);
	snprintf(opts, sizeof(opts), "size=%s", size);
	return !mount("tmpfs", dir, "tmpfs", 0, opts);
}

#endif
