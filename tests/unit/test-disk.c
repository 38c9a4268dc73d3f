// SPDX-License-Identifier: GPL-2.0
/*
 * The block layer with raw images: opening and refusing, many requests in
 * flight across the whole disk, flush, discard, write-zeroes, read-only
 * disks, and host errors (ENOSPC from a full tmpfs, EIO injected into
 * the completions) returned as results while everything keeps working;
 * reads from the page cache through the image's mapping, and what
 * happens when its pages are gone.
 */
#include <dlfcn.h>
#include <libaio.h>

#include "disk-test.h"

#define MIB_ (1024 * 1024)

/* Fault injection: completions report EIO while this is set. */
static bool inject_eio;

int io_getevents(io_context_t ctx, long min_nr, long nr, struct io_event *ev,
		 struct timespec *timeout)
{
	static int (*real)(io_context_t, long, long, struct io_event *,
			   struct timespec *);
	int n;

	if (!real)
		*(void **)&real = dlsym(RTLD_NEXT, "io_getevents");
	n = real(ctx, min_nr, nr, ev, timeout);
	for (int i = 0; inject_eio && i < n; i++)
		ev[i].res = (unsigned long)(long)-EIO;
	return n;
}

/*
 * What mincore reports of the image's pages: the truth, none cached (every
 * read goes to libaio), or all cached (reads go to the mapping even where
 * the file has no page, as when a page is lost after mincore).
 */
static enum { CACHE_TRUE, CACHE_NONE, CACHE_ALL } cache_view;

int mincore(void *addr, size_t len, unsigned char *vec)
{
	static int (*real)(void *, size_t, unsigned char *);

	if (!real)
		*(void **)&real = dlsym(RTLD_NEXT, "mincore");
	if (cache_view == CACHE_TRUE)
		return real(addr, len, vec);
	memset(vec, cache_view == CACHE_ALL,
	       (len + (size_t)sysconf(_SC_PAGESIZE) - 1) /
	       (size_t)sysconf(_SC_PAGESIZE));
	return 0;
}

/* iocbs the disk layer handed to the kernel. */
static unsigned long iocbs;

int io_submit(io_context_t ctx, long nr, struct iocb **cbs)
{
	static int (*real)(io_context_t, long, struct iocb **);
	int n;

	if (!real)
		*(void **)&real = dlsym(RTLD_NEXT, "io_submit");
	n = real(ctx, nr, cbs);
	if (n > 0)
		iocbs += (unsigned long)n;
	return n;
}

/* n writes of bs bytes from off on, under one plug; their results. */
static void write_plugged(struct disk *d, uint64_t off, uint8_t *buf, int n,
			  uint64_t bs, int *res)
{
	static struct disk_req r[MAX_FLIGHT];
	static struct iovec iov[MAX_FLIGHT];
	static struct waiter w[MAX_FLIGHT];

	disk_plug(d);
	for (int i = 0; i < n; i++) {
		iov[i] = (struct iovec){ buf + (uint64_t)i * bs, bs };
		w[i] = (struct waiter){ 0, 0 };
		r[i] = (struct disk_req){
			.op = DISK_WRITE, .offset = off + (uint64_t)i * bs,
			.iov = &iov[i], .iovcnt = 1, .done = on_done,
			.opaque = &w[i],
		};
		if (disk_submit(d, &r[i]))
			w[i] = (struct waiter){ 1, -EINVAL };
	}
	disk_unplug_complete(d);
	wait_all(d, w, n);
	for (int i = 0; i < n; i++)
		res[i] = w[i].done == 1 ? w[i].result : -EPROTO;
}

static void test_merge(void)
{
	const uint64_t size = 4 * MIB_;
	const char *p = tpath("merge.img");
	uint8_t *want = malloc(size), *got = malloc(size), *expect = malloc(size);
	int res[MAX_FLIGHT], bad = 0;
	unsigned long before;
	struct disk *d;

	write_file(p, size, 8);
	CHECK(disk_open(p, &d) == 0, "open for merged writes");
	if (!d)
		goto out;
	fill(want, 0, size, 9);
	before = iocbs;
	write_plugged(d, 0, want, 200, 4096, res);
	for (int i = 0; i < 200; i++)
		bad += res[i] != 0;
	CHECK(!bad && iocbs - before < 10,
	      "200 4 KiB writes in a row under one plug: a few iocbs");
	/* Two runs with a gap, and one out of order. */
	write_plugged(d, MIB_, want + MIB_, 40, 8192, res);
	write_plugged(d, 2 * MIB_ + 8192, want + 2 * MIB_ + 8192, 20, 4096, res);
	write_plugged(d, 2 * MIB_, want + 2 * MIB_, 1, 8192, res);
	cache_view = CACHE_NONE;	/* read what the file holds */
	fill(expect, 0, size, 8);	/* what write_file put there */
	memcpy(expect, want, 200 * 4096);
	memcpy(expect + MIB_, want + MIB_, 40 * 8192);
	memcpy(expect + 2 * MIB_, want + 2 * MIB_, 8192 + 20 * 4096);
	CHECK(bulk(d, DISK_READ, 0, got, size, 64 * 1024) == 0 &&
	      !memcmp(got, expect, size),
	      "each write landed where it belongs, and nothing else changed");
	cache_view = CACHE_TRUE;
	inject_eio = true;
	before = iocbs;
	write_plugged(d, 0, want, 8, 4096, res);
	inject_eio = false;
	bad = 0;
	for (int i = 1; i < 8; i++)
		bad += res[i] != 0;
	CHECK(iocbs - before == 1 && res[0] == -EIO && !bad,
	      "a merged write that fails: the first request gets the error, "
	      "the others are retried on their own");
	disk_close(d);
out:
	free(want);
	free(got);
	free(expect);
}

static void test_refusals(void)
{
	const char *p;
	int fd;

	CHECK(open_fails(tpath("missing.img"), tpath("missing.img"), -ENOENT,
			 "No such file or directory"),
	      "a missing file is refused with one line naming it");
	p = tpath("empty.img");
	fd = open(p, O_CREAT | O_WRONLY, 0644);
	close(fd);
	CHECK(open_fails(p, p, -EINVAL, "empty"), "an empty file is refused");
	p = tpath("tiny.img");
	write_file(p, 100, 1);
	CHECK(open_fails(p, p, -EINVAL, "sector"),
	      "a file smaller than a sector is refused");
	CHECK(open_fails(tdir, tdir, -EISDIR, "Is a directory"),
	      "a directory is refused");
	CHECK(open_fails("/dev/null", "/dev/null", -EINVAL, "regular file"),
	      "a character device is refused");
	CHECK(open_fails("", "", -EINVAL, NULL), "an empty name is refused");
	p = tpath("noperm.img");
	write_file(p, 4096, 1);
	chmod(p, 0);
	if (geteuid()) {
		CHECK(open_fails(p, p, -EACCES, "Permission denied"),
		      "an unreadable file is refused");
	} else {
		printf("ok %d # skip an unreadable file (root reads anything)\n",
		       ++tap_n);
	}
}

static void test_info(void)
{
	const char *p = tpath("info.img"), *q = tpath("other.img");
	char serial[21];
	struct disk *d, *e;

	write_file(p, 4 * MIB_ + 1000, 2);
	write_file(q, 4096, 2);
	CHECK(disk_open(p, &d) == 0, "a raw image opens");
	if (!d)
		return;
	CHECK(disk_info(d)->size == 4 * MIB_ + 512,
	      "size is the file's, rounded down to 512");
	CHECK(!strcmp(disk_info(d)->format, "raw"), "format is raw");
	CHECK(!disk_info(d)->readonly && disk_info(d)->discard,
	      "read-write, with discard");
	CHECK(strlen(disk_info(d)->serial) == 20, "serial has 20 characters");
	strcpy(serial, disk_info(d)->serial);
	CHECK(open_fails(p, p, -EBUSY, "in use"),
	      "a second writer of the same image is refused");
	disk_close(d);
	CHECK(disk_open(p, &d) == 0 && !strcmp(disk_info(d)->serial, serial),
	      "the serial is the same the next time");
	CHECK(disk_open(q, &e) == 0 && strcmp(disk_info(e)->serial, serial),
	      "another path has another serial");
	disk_close(d);
	disk_close(e);
}

static void test_round_trip(void)
{
	const uint64_t size = 24 * MIB_;
	const char *p = tpath("rt.img");
	uint8_t *want = malloc(size), *got = malloc(size), *file = malloc(size);
	struct disk *d;
	int fd;

	write_file(p, size, 3);
	CHECK(disk_open(p, &d) == 0, "open for the round trip");
	fill(want, 0, size, 4);
	CHECK(bulk(d, DISK_WRITE, 0, want, size, 64 * 1024) == 0,
	      "the whole disk written, 256 requests in flight");
	CHECK(req_sync(d, DISK_FLUSH, 0, NULL, 0) == 0, "flush");
	memset(got, 0, size);
	CHECK(bulk(d, DISK_READ, 0, got, size, 1 * MIB_ + 4096) == 0,
	      "the whole disk read back in 1 MiB requests");
	CHECK(!memcmp(want, got, size), "read back what was written");
	fd = open(p, O_RDONLY);
	CHECK(fd >= 0 && pread(fd, file, size, 0) == (ssize_t)size &&
	      !memcmp(file, want, size), "the file holds the same bytes");
	close(fd);

	/* Odd sizes and offsets, single sectors at the ends. */
	CHECK(req_sync(d, DISK_READ, size - 512, got, 512) == 0 &&
	      !memcmp(got, want + size - 512, 512), "the last sector reads");
	CHECK(req_sync(d, DISK_READ, size - 512, got, 1024) == -EINVAL,
	      "a read past the end is refused");
	CHECK(req_sync(d, DISK_READ, UINT64_MAX - 511, got, 1024) == -EINVAL,
	      "an offset that overflows is refused");
	CHECK(req_sync(d, DISK_READ, size, got, 0) == 0,
	      "an empty read at the end completes");
	CHECK(req_sync(d, DISK_DISCARD, size - 4096, NULL, 8192) == -EINVAL,
	      "a discard past the end is refused");

	/* Write-zeroes reads back zeros and keeps the neighbours. */
	CHECK(req_sync(d, DISK_WRITE_ZEROES, 1 * MIB_ + 512, NULL, 3 * MIB_) == 0,
	      "write-zeroes");
	CHECK(req_sync(d, DISK_READ, 1 * MIB_, got, 5 * MIB_) == 0, "read it");
	memset(want + 1 * MIB_ + 512, 0, 3 * MIB_);
	CHECK(!memcmp(got, want + 1 * MIB_, 5 * MIB_),
	      "zeros in the range, data around it");
	CHECK(req_sync(d, DISK_DISCARD, 8 * MIB_, NULL, 2 * MIB_) == 0,
	      "discard");
	CHECK(req_sync(d, DISK_READ, 10 * MIB_, got, MIB_) == 0 &&
	      !memcmp(got, want + 10 * MIB_, MIB_),
	      "discard leaves the next range alone");
	disk_close(d);
	free(want);
	free(got);
	free(file);
}

static void test_readonly(void)
{
	const char *p = tpath("ro.img");
	char spec[300];
	uint8_t buf[4096], want[4096];
	struct disk *d, *e;

	write_file(p, MIB_, 5);
	snprintf(spec, sizeof(spec), "%s,ro", p);
	CHECK(disk_open(spec, &d) == 0 && disk_info(d)->readonly,
	      "',ro' opens read-only");
	if (!d)
		return;
	CHECK(disk_open(spec, &e) == 0, "two readers may share an image");
	disk_close(e);
	CHECK(req_sync(d, DISK_WRITE, 0, buf, sizeof(buf)) == -EROFS,
	      "a write is refused with EROFS");
	CHECK(req_sync(d, DISK_WRITE_ZEROES, 0, NULL, 4096) == -EROFS,
	      "write-zeroes is refused with EROFS");
	CHECK(req_sync(d, DISK_DISCARD, 0, NULL, 4096) == -EROFS,
	      "discard is refused with EROFS");
	CHECK(req_sync(d, DISK_FLUSH, 0, NULL, 0) == 0, "flush succeeds");
	fill(want, 0, sizeof(want), 5);
	CHECK(req_sync(d, DISK_READ, 0, buf, sizeof(buf)) == 0 &&
	      !memcmp(buf, want, sizeof(buf)), "reads work");
	CHECK(!disk_info(d)->discard, "no discard on a read-only disk");
	disk_close(d);
}

static void test_enospc(bool have_tmpfs)
{
	const char *dir = tpath("full");
	char p[300];
	uint8_t *buf = malloc(4 * MIB_), got[4096];
	int fd, enospc = 0, other = 0, ok = 0;
	struct disk *d;

	if (!have_tmpfs) {
		printf("ok %d # skip ENOSPC (no private tmpfs)\n", ++tap_n);
		free(buf);
		return;
	}
	snprintf(p, sizeof(p), "%s/disk.img", dir);
	fd = open(p, O_CREAT | O_WRONLY, 0644);
	/* 8 MiB of holes on a 1 MiB file system. */
	CHECK(fd >= 0 && !ftruncate(fd, 8 * MIB_), "a sparse image on a 1 MiB tmpfs");
	close(fd);
	if (disk_open(p, &d)) {
		free(buf);
		return;
	}
	fill(buf, 0, 4 * MIB_, 6);
	for (int i = 0; i < 32; i++) {
		int ret = req_sync(d, DISK_WRITE, (uint64_t)i * 128 * 1024,
				   buf + i * 128 * 1024, 128 * 1024);

		ok += ret == 0;
		enospc += ret == -ENOSPC;
		other += ret && ret != -ENOSPC;
	}
	CHECK(ok && enospc && !other,
	      "writes past the space fail with ENOSPC, the first ones succeed");
	CHECK(req_sync(d, DISK_READ, 0, got, sizeof(got)) == 0 &&
	      !memcmp(got, buf, sizeof(got)), "reads still work after ENOSPC");
	CHECK(req_sync(d, DISK_WRITE_ZEROES, 0, NULL, 256 * 1024) == 0,
	      "write-zeroes still works on a full file system (punching holes)");
	disk_close(d);

	/* The same, with the writes merged into a few iocbs. */
	unlink(p);
	fd = open(p, O_CREAT | O_WRONLY, 0644);
	CHECK(fd >= 0 && !ftruncate(fd, 8 * MIB_), "a new sparse image");
	close(fd);
	if (!disk_open(p, &d)) {
		int res[32];

		ok = enospc = other = 0;
		write_plugged(d, 0, buf, 32, 64 * 1024, res);
		for (int i = 0; i < 32; i++) {
			ok += res[i] == 0;
			enospc += res[i] == -ENOSPC;
			other += res[i] && res[i] != -ENOSPC;
		}
		CHECK(ok && enospc && !other && !res[0] && res[31] == -ENOSPC,
		      "merged writes past the space: the first succeed, the "
		      "others fail with ENOSPC");
		CHECK(req_sync(d, DISK_READ, 0, got, sizeof(got)) == 0 &&
		      !memcmp(got, buf, sizeof(got)),
		      "what was written reads back");
		disk_close(d);
	}
	umount2(dir, MNT_DETACH);
	free(buf);
}

static void test_eio(void)
{
	const char *p = tpath("eio.img");
	uint8_t buf[8192], want[8192];
	struct disk *d;

	write_file(p, MIB_, 7);
	if (disk_open(p, &d))
		return;
	inject_eio = true;
	cache_view = CACHE_NONE;	/* a cached page never fails */
	CHECK(req_sync(d, DISK_READ, 0, buf, sizeof(buf)) == -EIO,
	      "a read the host fails with EIO completes with -EIO");
	cache_view = CACHE_TRUE;
	CHECK(req_sync(d, DISK_WRITE, 0, buf, sizeof(buf)) == -EIO,
	      "a write the host fails with EIO completes with -EIO");
	CHECK(req_sync(d, DISK_FLUSH, 0, NULL, 0) == -EIO,
	      "a flush the host fails with EIO completes with -EIO");
	inject_eio = false;
	fill(want, 0, sizeof(want), 7);
	CHECK(req_sync(d, DISK_READ, 0, buf, sizeof(buf)) == 0 &&
	      !memcmp(buf, want, sizeof(buf)), "and the next read works");
	disk_close(d);
}

/* One read under a plug: whether done() ran by the end of
 * disk_unplug_complete, then its result once it did. */
static bool read_plugged(struct disk *d, uint64_t off, void *buf, size_t len,
			 int *result)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct waiter w = { 0, 0 };
	struct disk_req r = {
		.op = DISK_READ, .offset = off, .iov = &iov, .iovcnt = 1,
		.ram = true, .done = on_done, .opaque = &w,
	};
	bool at_once;

	disk_plug(d);
	if (disk_submit(d, &r)) {
		disk_unplug(d);
		*result = -EINVAL;
		return false;
	}
	disk_unplug_complete(d);
	at_once = w.done == 1;
	while (!w.done)
		wait_fd(d);
	*result = w.result;
	return at_once;
}

static void test_page_cache(void)
{
	const uint64_t size = 8 * MIB_;
	const char *p = tpath("cache.img");
	uint8_t *want = malloc(size), *got = malloc(size);
	int result, fd;
	struct disk *d;

	write_file(p, size, 5);
	fill(want, 0, size, 5);
	CHECK(disk_open(p, &d) == 0, "open an image whose pages are cached");
	if (!d)
		goto out;
	memset(got, 0, size);
	CHECK(bulk(d, DISK_READ, 0, got, size, MIB_ + 4096) == 0 &&
	      !memcmp(got, want, size),
	      "1 MiB reads from the page cache, buffers at odd addresses");
	memset(got, 0, size);
	CHECK(bulk(d, DISK_READ, 512, got, size - 4096, 8192 + 512) == 0 &&
	      !memcmp(got, want + 512, size - 4096),
	      "8 KiB reads from the page cache at odd sectors");
	cache_view = CACHE_NONE;
	memset(got, 0, size);
	CHECK(bulk(d, DISK_READ, 0, got, size, MIB_ + 4096) == 0 &&
	      !memcmp(got, want, size), "the same through libaio");
	cache_view = CACHE_TRUE;

	memset(got, 0, MIB_);
	CHECK(read_plugged(d, 3 * MIB_, got, MIB_, &result) && !result &&
	      !memcmp(got, want + 3 * MIB_, MIB_),
	      "a cached read completes within disk_unplug_complete");
	cache_view = CACHE_NONE;
	memset(got, 0, MIB_);
	read_plugged(d, 3 * MIB_, got, MIB_, &result);
	CHECK(!result && !memcmp(got, want + 3 * MIB_, MIB_),
	      "an uncached one completes through libaio");

	/* The file shrinks under lkvm while a page looks cached: the copy
	 * faults (SIGBUS), and the read goes to the kernel, which reads
	 * past the end as zeros. */
	fd = open(p, O_RDWR);
	CHECK(fd >= 0 && !ftruncate(fd, MIB_), "the image shrinks to 1 MiB");
	if (fd >= 0)
		close(fd);
	cache_view = CACHE_ALL;
	memset(got, 0xaa, MIB_);
	CHECK(req_sync(d, DISK_READ, 4 * MIB_, got, MIB_) == 0 &&
	      !memchr(got, 0xaa, MIB_) && !got[0] && !memcmp(got, got + 1, MIB_ - 1),
	      "a read of pages gone from the file gives zeros, not SIGBUS");
	CHECK(req_sync(d, DISK_READ, 0, got, 64 * 1024) == 0 &&
	      !memcmp(got, want, 64 * 1024), "what is left still reads");
	cache_view = CACHE_TRUE;
	disk_close(d);
out:
	free(want);
	free(got);
}

int main(void)
{
	bool have_tmpfs;

	tdir_make("disk");
	/* Before any thread exists: a private mount namespace. */
	have_tmpfs = small_tmpfs(tpath("full"), "1m");
	test_refusals();
	test_info();
	test_round_trip();
	test_readonly();
	test_enospc(have_tmpfs);
	test_eio();
	test_page_cache();
	test_merge();
	tdir_remove();
	return tap_done();
}
