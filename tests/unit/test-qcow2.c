// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2 against qemu-img: images qemu-img wrote read back byte for byte
 * (versions 2 and 3, compressed, cluster sizes from 512 bytes to 2 MiB,
 * refcount widths 1 to 64 bits); images lkvm wrote pass `qemu-img check`
 * and `qemu-img compare`, also after discard, write-zeroes, rewriting
 * compressed clusters, ENOSPC and a crash; every malformed or unsupported
 * header is refused at open with one line naming the file.
 */
#include <dlfcn.h>
#include <endian.h>

#include "disk-test.h"

#define MIB_ (1024ull * 1024)
#define SRC_SIZE (12 * MIB_)

static bool have_qemu_img;

/* Fault injection: the next pwritev fails with EIO while this is set. */
static bool fail_pwritev;

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	static ssize_t (*real)(int, const struct iovec *, int, off_t);

	if (!real)
		*(void **)&real = dlsym(RTLD_NEXT, "pwritev");
	if (__atomic_exchange_n(&fail_pwritev, false, __ATOMIC_RELAXED)) {
		errno = EIO;
		return -1;
	}
	return real(fd, iov, cnt, off);
}

static void skip(const char *what)
{
	printf("ok %d # skip %s\n", ++tap_n, what);
}

/* qemu-img check: 0 clean, 3 leaks only, 2 corruption. */
static int check_img(const char *p)
{
	int rc = sh("qemu-img check -q '%s' >/dev/null 2>&1", p);

	if (rc)
		sh("qemu-img check '%s' 2>&1 | head -20 | sed 's/^/# /'", p);
	return rc;
}

static bool same_as(const char *qcow2, const char *raw)
{
	return sh("qemu-img compare -q -f qcow2 -F raw '%s' '%s'", qcow2, raw) == 0;
}

static void save(const char *p, const uint8_t *buf, uint64_t len)
{
	int fd = open(p, O_CREAT | O_TRUNC | O_WRONLY, 0644);

	if (fd < 0 || write(fd, buf, len) != (ssize_t)len) {
		perror(p);
		exit(1);
	}
	close(fd);
}

static void patch(const char *p, uint64_t off, const void *v, size_t n)
{
	int fd = open(p, O_WRONLY);

	if (fd < 0 || pwrite(fd, v, n, (off_t)off) != (ssize_t)n) {
		perror(p);
		exit(1);
	}
	close(fd);
}

static void patch32(const char *p, uint64_t off, uint32_t v)
{
	v = htobe32(v);
	patch(p, off, &v, 4);
}

static void patch64(const char *p, uint64_t off, uint64_t v)
{
	v = htobe64(v);
	patch(p, off, &v, 8);
}

static uint64_t peek64(const char *p, uint64_t off)
{
	uint64_t v = 0;
	int fd = open(p, O_RDONLY);

	if (fd < 0 || pread(fd, &v, 8, (off_t)off) != 8)
		perror(p);
	close(fd);
	return be64toh(v);
}

/* The source disk: a pattern with holes of whole and partial clusters. */
/* Text-like bytes that zlib compresses, unlike the pattern. */
static void fill_text(uint8_t *buf, uint64_t off, uint64_t len)
{
	for (uint64_t i = 0; i < len; i += 32) {
		char line[33];

		snprintf(line, sizeof(line), "lkvm disk byte %016llx\n",
			 (unsigned long long)(off + i));
		memcpy(buf + i, line, MIN(32, len - i));
	}
}

static void make_source(uint8_t *buf)
{
	fill(buf, 0, SRC_SIZE, 11);
	fill_text(buf, 0, 2 * MIB_);
	fill_text(buf + 7 * MIB_, 7 * MIB_, 3 * MIB_);
	memset(buf + 2 * MIB_, 0, 3 * MIB_);
	memset(buf + 6 * MIB_ + 512, 0, 70 * 1024);
	memset(buf + SRC_SIZE - MIB_, 0, MIB_);
	save(tpath("src.raw"), buf, SRC_SIZE);
}

static bool read_all_matches(const char *spec, const uint8_t *want,
			     uint64_t size)
{
	uint8_t *got = malloc(size);
	struct disk *d;
	bool ok = false;

	if (disk_open(spec, &d))
		goto out;
	ok = disk_info(d)->size == size && !strcmp(disk_info(d)->format, "qcow2");
	/* Cold cache in odd sizes, then warm in small ones. */
	memset(got, 0xaa, size);
	ok = ok && !bulk(d, DISK_READ, 0, got, size, 192 * 1024 + 512) &&
	     !memcmp(got, want, size);
	memset(got, 0x55, size);
	ok = ok && !bulk(d, DISK_READ, 0, got, size, 4096) &&
	     !memcmp(got, want, size);
	disk_close(d);
out:
	free(got);
	return ok;
}

static void test_read_qemu_images(const uint8_t *src)
{
	static const char *const opts[] = {
		"",
		"-o compat=0.10",
		"-c",
		"-c -o compat=0.10,cluster_size=4096",
		"-c -o cluster_size=512",
		"-o cluster_size=512",
		"-o cluster_size=2M",
		"-o refcount_bits=1",
		"-o refcount_bits=64,cluster_size=16384",
	};
	char spec[300], what[200];

	for (size_t i = 0; i < ARRAY_SIZE(opts); i++) {
		const char *p = tpath("qemu.qcow2");
		int rc = sh("qemu-img convert -f raw -O qcow2 %s '%s' '%s'",
			    opts[i], tpath("src.raw"), p);

		snprintf(spec, sizeof(spec), "%s,ro", p);
		snprintf(what, sizeof(what),
			 "reads what qemu-img convert %s wrote", opts[i]);
		CHECK(rc == 0 && read_all_matches(spec, src, SRC_SIZE), what);
	}
}

/* lkvm writes a fresh image end to end; qemu-img agrees with it. */
static void test_write_fresh(void)
{
	static const char *const opts[] = {
		"",
		"-o compat=0.10",
		"-o cluster_size=512",
		"-o cluster_size=2M",
		"-o refcount_bits=1",
		"-o refcount_bits=64,cluster_size=4096",
		"-o cluster_size=512,refcount_bits=8",
	};
	const uint64_t size = 16 * MIB_;
	uint8_t *want = malloc(size), *got = malloc(size);
	char what[200];

	for (size_t i = 0; i < ARRAY_SIZE(opts); i++) {
		const char *p = tpath("w.qcow2"), *raw = tpath("w.raw");
		struct disk *d;
		bool ok;

		sh("rm -f '%s'", p);
		if (sh("qemu-img create -q -f qcow2 %s '%s' 16M", opts[i], p) ||
		    disk_open(p, &d)) {
			CHECK(false, "create and open");
			continue;
		}
		fill(want, 0, size, 20 + (unsigned int)i);
		ok = !bulk(d, DISK_WRITE, 0, want, size, 96 * 1024 + 512);
		memset(got, 0, size);
		ok = ok && !bulk(d, DISK_READ, 0, got, size, 256 * 1024) &&
		     !memcmp(got, want, size);
		/* Overwrite allocated clusters: the fast path. */
		fill(want + 3 * MIB_ + 512, 3 * MIB_ + 512, 5 * MIB_, 40);
		ok = ok && !bulk(d, DISK_WRITE, 3 * MIB_ + 512,
				 want + 3 * MIB_ + 512, 5 * MIB_, 64 * 1024);
		ok = ok && !req_sync(d, DISK_FLUSH, 0, NULL, 0);
		ok = ok && !bulk(d, DISK_READ, 0, got, size, 1 * MIB_) &&
		     !memcmp(got, want, size);
		disk_close(d);
		save(raw, want, size);
		snprintf(what, sizeof(what),
			 "lkvm writes a whole qemu-img create %s image, reads it back",
			 opts[i]);
		CHECK(ok, what);
		snprintf(what, sizeof(what),
			 "qemu-img check passes and qemu-img compare agrees (%s)",
			 opts[i]);
		CHECK(check_img(p) == 0 && same_as(p, raw), what);
	}
	free(want);
	free(got);
}

/* Partial writes into compressed clusters, zeroing and discarding them. */
static void test_compressed_rewrite(uint8_t *src)
{
	const char *p = tpath("c.qcow2"), *raw = tpath("c.raw");
	uint8_t *want = malloc(SRC_SIZE), *got = malloc(SRC_SIZE), buf[8192];
	struct disk *d;
	bool ok;

	memcpy(want, src, SRC_SIZE);
	if (sh("qemu-img convert -c -f raw -O qcow2 '%s' '%s'", tpath("src.raw"), p) ||
	    disk_open(p, &d)) {
		CHECK(false, "a compressed image opens read-write");
		return;
	}
	fill(buf, 0, sizeof(buf), 50);
	ok = !req_sync(d, DISK_WRITE, 64 * 1024 + 1536, buf, 4096);
	memcpy(want + 64 * 1024 + 1536, buf, 4096);
	/* Across the end of one compressed cluster into the next. */
	ok = ok && !req_sync(d, DISK_WRITE, 4 * 64 * 1024 - 4096, buf, 8192);
	memcpy(want + 4 * 64 * 1024 - 4096, buf, 8192);
	ok = ok && !req_sync(d, DISK_WRITE_ZEROES, 7 * 64 * 1024 + 512, NULL, 1024);
	memset(want + 7 * 64 * 1024 + 512, 0, 1024);
	ok = ok && !req_sync(d, DISK_WRITE_ZEROES, 8 * 64 * 1024, NULL, 128 * 1024);
	memset(want + 8 * 64 * 1024, 0, 128 * 1024);
	ok = ok && !req_sync(d, DISK_DISCARD, 11 * 64 * 1024, NULL, 64 * 1024);
	ok = ok && !req_sync(d, DISK_READ, 11 * 64 * 1024, want + 11 * 64 * 1024,
			     64 * 1024);
	ok = ok && !bulk(d, DISK_READ, 0, got, SRC_SIZE, 128 * 1024) &&
	     !memcmp(got, want, SRC_SIZE);
	disk_close(d);
	save(raw, want, SRC_SIZE);
	CHECK(ok, "writes, write-zeroes and discard on compressed clusters");
	CHECK(check_img(p) == 0 && same_as(p, raw),
	      "qemu-img check and compare after rewriting compressed clusters");
	free(want);
	free(got);
}

static void test_zero_discard(const char *opt, const char *name)
{
	const uint64_t size = 8 * MIB_;
	const char *p = tpath("z.qcow2"), *raw = tpath("z.raw");
	uint8_t *want = malloc(size), *got = malloc(size), buf[4096];
	char what[200];
	struct disk *d;
	bool ok;

	sh("rm -f '%s'", p);
	if (sh("qemu-img create -q -f qcow2 %s '%s' 8M", opt, p) || disk_open(p, &d)) {
		CHECK(false, "create and open");
		return;
	}
	fill(want, 0, size, 60);
	ok = !bulk(d, DISK_WRITE, 0, want, size, 128 * 1024);
	/* Whole clusters, then parts of clusters. */
	ok = ok && !req_sync(d, DISK_WRITE_ZEROES, MIB_, NULL, MIB_);
	memset(want + MIB_, 0, MIB_);
	ok = ok && !req_sync(d, DISK_WRITE_ZEROES, 3 * MIB_ - 1024, NULL, 70 * 1024);
	memset(want + 3 * MIB_ - 1024, 0, 70 * 1024);
	ok = ok && !req_sync(d, DISK_DISCARD, 5 * MIB_, NULL, MIB_ + 4096);
	ok = ok && !req_sync(d, DISK_READ, 5 * MIB_, want + 5 * MIB_, MIB_ + 4096);
	/* Writing into a zeroed cluster fills the rest with zeros. */
	fill(buf, 0, sizeof(buf), 61);
	ok = ok && !req_sync(d, DISK_WRITE, MIB_ + 64 * 1024 + 512, buf, sizeof(buf));
	memcpy(want + MIB_ + 64 * 1024 + 512, buf, sizeof(buf));
	ok = ok && !req_sync(d, DISK_WRITE, 5 * MIB_ + 8192, buf, sizeof(buf));
	memcpy(want + 5 * MIB_ + 8192, buf, sizeof(buf));
	ok = ok && !bulk(d, DISK_READ, 0, got, size, 256 * 1024) &&
	     !memcmp(got, want, size);
	disk_close(d);
	save(raw, want, size);
	snprintf(what, sizeof(what), "write-zeroes and discard read back right (%s)", name);
	CHECK(ok, what);
	snprintf(what, sizeof(what), "qemu-img check and compare after zeroing (%s)", name);
	CHECK(check_img(p) == 0 && same_as(p, raw), what);
	free(want);
	free(got);
}

static void test_readonly(void)
{
	const char *p = tpath("ro.qcow2");
	char spec[300];
	uint8_t buf[512] = { 0 };
	struct disk *d;

	sh("rm -f '%s'", p);
	sh("qemu-img create -q -f qcow2 '%s' 1M", p);
	snprintf(spec, sizeof(spec), "%s,ro", p);
	if (disk_open(spec, &d)) {
		CHECK(false, "a qcow2 image opens read-only");
		return;
	}
	CHECK(disk_info(d)->readonly && disk_info(d)->size == MIB_ &&
	      strlen(disk_info(d)->serial) == 20, "read-only qcow2 information");
	CHECK(req_sync(d, DISK_WRITE, 0, buf, sizeof(buf)) == -EROFS &&
	      req_sync(d, DISK_WRITE_ZEROES, 0, NULL, 512) == -EROFS &&
	      req_sync(d, DISK_DISCARD, 0, NULL, 512) == -EROFS,
	      "writes to a read-only qcow2 image fail with EROFS");
	CHECK(req_sync(d, DISK_READ, 0, buf, sizeof(buf)) == 0,
	      "reads of a read-only qcow2 image work");
	disk_close(d);
}

/* A fresh copy of the base image to break. */
static const char *victim(const char *base)
{
	const char *p = tpath("bad.qcow2");

	sh("cp '%s' '%s'", base, p);
	return p;
}

static void test_malformed(void)
{
	char base[256], spec[300];
	const char *p;
	uint64_t l1, l2;
	struct disk *d;

	snprintf(base, sizeof(base), "%s", tpath("base.qcow2"));
	sh("qemu-img create -q -f qcow2 '%s' 4M", base);
	sh("qemu-io -c 'write -P 0x11 0 64k' '%s' >/dev/null", base);

	p = victim(base);
	sh("truncate -s 50 '%s'", p);
	CHECK(open_fails(p, p, -EINVAL, "truncated header"), "a 50-byte image is refused");
	p = victim(base);
	sh("truncate -s 90 '%s'", p);
	CHECK(open_fails(p, p, -EINVAL, "truncated header"), "a 90-byte v3 image is refused");
	p = victim(base);
	patch32(p, 0, 0x51464900);
	snprintf(spec, sizeof(spec), "%s,format=qcow2", p);
	CHECK(open_fails(spec, p, -EINVAL, "not a qcow2 image"),
	      "bad magic is refused when qcow2 is asked for");
	p = victim(base);
	patch32(p, 4, 1);
	CHECK(open_fails(p, p, -EOPNOTSUPP, "version 1"), "qcow version 1 is refused");
	p = victim(base);
	patch32(p, 4, 4);
	CHECK(open_fails(p, p, -EOPNOTSUPP, "version 4"), "qcow2 version 4 is refused");
	p = victim(base);
	patch32(p, 20, 63);
	CHECK(open_fails(p, p, -EINVAL, "cluster_bits 63"), "cluster_bits 63 is refused");
	p = victim(base);
	patch32(p, 20, 8);
	CHECK(open_fails(p, p, -EINVAL, "cluster_bits 8"), "cluster_bits 8 is refused");
	p = victim(base);
	patch32(p, 100, 3);
	CHECK(open_fails(p, p, -EINVAL, "header length"), "a bad header length is refused");
	p = victim(base);
	patch64(p, 40, 0x7fff0000);
	CHECK(open_fails(p, p, -EINVAL, "L1 table"), "an L1 table outside the file is refused");
	p = victim(base);
	patch64(p, 40, 0x30200);
	CHECK(open_fails(p, p, -EINVAL, "L1 table"), "a misaligned L1 table is refused");
	p = victim(base);
	patch32(p, 36, 0);
	CHECK(open_fails(p, p, -EINVAL, "too small"), "an L1 table too small for the disk is refused");
	p = victim(base);
	patch32(p, 36, 0xffffffff);
	CHECK(open_fails(p, p, -EINVAL, "32 MiB"), "an absurd L1 size is refused");
	p = victim(base);
	patch64(p, 48, 1ull << 40);
	CHECK(open_fails(p, p, -EINVAL, "refcount table"),
	      "a refcount table outside the file is refused");
	p = victim(base);
	patch32(p, 56, 0);
	CHECK(open_fails(p, p, -EINVAL, "refcount table"),
	      "a refcount table of no clusters is refused");
	p = victim(base);
	patch32(p, 96, 7);
	CHECK(open_fails(p, p, -EOPNOTSUPP, "refcount order 7"),
	      "refcount order 7 is refused");
	p = victim(base);
	patch32(p, 32, 1);
	CHECK(open_fails(p, p, -EOPNOTSUPP, "encrypted"), "an AES-encrypted image is refused");
	p = victim(base);
	patch64(p, 72, 1ull << 10);
	CHECK(open_fails(p, p, -EOPNOTSUPP, "bit 10"),
	      "an unknown incompatible feature is refused");
	p = victim(base);
	patch64(p, 72, 1);
	CHECK(open_fails(p, p, -EINVAL, "dirty"), "a dirty image is refused for writing");
	snprintf(spec, sizeof(spec), "%s,ro", p);
	CHECK(disk_open(spec, &d) == 0, "a dirty image opens read-only");
	disk_close(d);
	p = victim(base);
	patch64(p, 72, 2);
	CHECK(open_fails(p, p, -EINVAL, "marked corrupt"),
	      "an image marked corrupt is refused for writing");
	p = victim(base);
	patch64(p, 24, 0);
	CHECK(open_fails(p, p, -EINVAL, "empty"), "a virtual size of 0 is refused");
	p = victim(base);
	patch32(p, 112, 0x12345678);
	patch32(p, 116, 0xfffffff0);
	CHECK(open_fails(p, p, -EINVAL, "header extension"),
	      "a header extension past the cluster is refused");

	l1 = peek64(base, 40);
	l2 = peek64(base, l1) & 0x00fffffffffffe00ull;
	p = victim(base);
	patch64(p, l1, (1ull << 63) | (1ull << 40));
	CHECK(open_fails(p, p, -EINVAL, "L1 entry 0"),
	      "an L1 entry pointing outside the file is refused");
	p = victim(base);
	patch64(p, l1, l2 | 0x100);
	CHECK(open_fails(p, p, -EINVAL, "reserved bits"),
	      "an L1 entry with reserved bits is refused");
	p = victim(base);
	patch64(p, peek64(base, 48), 0x10100);
	CHECK(open_fails(p, p, -EINVAL, "refcount table entry 0"),
	      "a misaligned refcount block is refused");

	/* A bad L2 entry fails the requests that meet it, nothing else. */
	p = victim(base);
	patch64(p, l2, (1ull << 63) | (1ull << 45));
	if (disk_open(p, &d) == 0) {
		uint8_t buf[4096];
		const char *msg;
		int r1, r2, r3;

		capture_begin();
		r1 = req_sync(d, DISK_READ, 0, buf, sizeof(buf));
		r2 = req_sync(d, DISK_WRITE, 0, buf, sizeof(buf));
		msg = capture_end();
		r3 = req_sync(d, DISK_READ, MIB_, buf, sizeof(buf));
		CHECK(r1 == -EIO && r2 == -EIO && one_line_about(msg, p, "corrupt image"),
		      "a data cluster outside the file fails reads and writes with EIO, one message");
		CHECK(r3 == 0, "other clusters still read");
		disk_close(d);
	} else {
		CHECK(false, "open with a bad L2 entry");
		CHECK(false, "");
	}
}

/* Images qemu-img makes with features lkvm does not do. */
static void test_unsupported(void)
{
	const char *p = tpath("u.qcow2"), *q = tpath("u2.qcow2");
	char spec[300];
	struct disk *d;

	sh("rm -f '%s' '%s'", p, q);
	sh("qemu-img create -q -f qcow2 '%s' 1M", q);
	sh("qemu-img create -q -f qcow2 -b '%s' -F qcow2 '%s'", q, p);
	CHECK(open_fails(p, p, -EOPNOTSUPP, q), "a backing file is refused, named");
	sh("rm -f '%s'", p);
	sh("qemu-img create -q -f qcow2 -o extended_l2=on '%s' 1M", p);
	CHECK(open_fails(p, p, -EOPNOTSUPP, "extended L2"), "extended L2 entries are refused");
	sh("rm -f '%s'", p);
	sh("qemu-img create -q -f qcow2 -o compression_type=zstd '%s' 1M", p);
	CHECK(open_fails(p, p, -EOPNOTSUPP, "zstd"), "zstd compression is refused");
	sh("rm -f '%s'", p);
	/* qemu-img times its key derivation, which a busy machine can fail. */
	if (sh("for i in 1 2 3; do qemu-img create -q -f qcow2 "
	       "--object secret,id=s0,data=123456 "
	       "-o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 "
	       "'%s' 1M 2>/dev/null && exit 0; done; exit 1", p))
		skip("a LUKS image (qemu-img could not make one)");
	else
		CHECK(open_fails(p, p, -EOPNOTSUPP, "LUKS"), "a LUKS image is refused");
	sh("rm -f '%s' '%s'", p, q);
	sh("qemu-img create -q -f qcow2 -o data_file='%s' '%s' 1M", q, p);
	CHECK(open_fails(p, p, -EOPNOTSUPP, "external data"), "an external data file is refused");
	sh("rm -f '%s' '%s'", p, q);
	sh("qemu-img create -q -f qcow2 '%s' 1M", p);
	sh("qemu-io -c 'write -P 0x22 0 4k' '%s' >/dev/null", p);
	sh("qemu-img snapshot -c snap1 '%s'", p);
	CHECK(open_fails(p, p, -EOPNOTSUPP, "snapshots"),
	      "an image with internal snapshots is refused for writing");
	snprintf(spec, sizeof(spec), "%s,ro", p);
	if (disk_open(spec, &d) == 0) {
		uint8_t buf[4096], want[4096];

		memset(want, 0x22, sizeof(want));
		CHECK(req_sync(d, DISK_READ, 0, buf, sizeof(buf)) == 0 &&
		      !memcmp(buf, want, sizeof(buf)),
		      "an image with snapshots reads read-only");
		disk_close(d);
	} else {
		CHECK(false, "an image with snapshots opens read-only");
	}
}

static void test_bad_compressed(void)
{
	const char *p = tpath("bc.qcow2");
	uint8_t buf[65536], junk[2048];
	const char *msg;
	struct disk *d;
	uint64_t l1, l2, e;
	int ret;

	sh("rm -f '%s'", p);
	sh("qemu-img convert -c -f raw -O qcow2 '%s' '%s'", tpath("src.raw"), p);
	l1 = peek64(p, 40);
	l2 = peek64(p, l1) & 0x00fffffffffffe00ull;
	e = peek64(p, l2);
	memset(junk, 0xff, sizeof(junk));
	patch(p, e & ((1ull << 54) - 1), junk, sizeof(junk));
	if (!(e & (1ull << 62)) || disk_open(p, &d)) {
		CHECK(false, "a compressed image with garbage opens");
		return;
	}
	capture_begin();
	ret = req_sync(d, DISK_READ, 0, buf, sizeof(buf));
	msg = capture_end();
	CHECK(ret == -EIO && one_line_about(msg, p, "inflate"),
	      "compressed garbage fails the read with EIO and one message");
	disk_close(d);
}

/* A data write the host fails: -EIO, no mapping, nothing leaked. */
static void test_write_eio(void)
{
	const char *p = tpath("eio.qcow2"), *raw = tpath("eio.raw");
	static uint8_t want[MIB_], got[MIB_];
	struct disk *d;
	int r1, r2;

	sh("rm -f '%s'", p);
	sh("qemu-img create -q -f qcow2 '%s' 1M", p);
	if (disk_open(p, &d)) {
		CHECK(false, "open for EIO");
		return;
	}
	fill(want, 0, 192 * 1024, 95);
	fail_pwritev = true;
	r1 = req_sync(d, DISK_WRITE, 0, want, 192 * 1024);
	fail_pwritev = false;
	r2 = req_sync(d, DISK_READ, 0, got, 192 * 1024);
	CHECK(r1 == -EIO && r2 == 0 && !memcmp(got, (uint8_t[4096]){ 0 }, 4096),
	      "an allocating write the host fails completes with -EIO and maps nothing");
	CHECK(req_sync(d, DISK_WRITE, 0, want, 192 * 1024) == 0 &&
	      req_sync(d, DISK_READ, 0, got, MIB_) == 0 && !memcmp(got, want, MIB_),
	      "the same write then succeeds");
	disk_close(d);
	save(raw, want, MIB_);
	CHECK(check_img(p) == 0 && same_as(p, raw),
	      "and qemu-img check finds no leak after the failure");
}

/* Requests still in flight at close complete first. */
static void test_close_waits(void)
{
	const char *p = tpath("cw.qcow2");
	static uint8_t buf[64][8192];
	static struct iovec iov[64];
	static struct disk_req r[64];
	static struct waiter w[64];
	struct disk *d;
	int done = 0;

	sh("rm -f '%s'", p);
	sh("qemu-img create -q -f qcow2 '%s' 8M", p);
	if (disk_open(p, &d))
		return;
	for (int i = 0; i < 64; i++) {
		fill(buf[i], (uint64_t)i * 100000, sizeof(buf[i]), 70);
		iov[i] = (struct iovec){ buf[i], sizeof(buf[i]) };
		r[i] = (struct disk_req){
			.op = DISK_WRITE, .offset = (uint64_t)i * 100352,
			.iov = &iov[i], .iovcnt = 1, .done = on_done, .opaque = &w[i],
		};
		disk_submit(d, &r[i]);
	}
	disk_close(d);
	for (int i = 0; i < 64; i++)
		done += w[i].done == 1 && w[i].result == 0;
	CHECK(done == 64, "close completes the 64 requests in flight");
	CHECK(check_img(p) == 0, "and leaves a clean image");
}

/* lkvm dies without closing: only leaks, and the data is there. */
static void test_crash(void)
{
	const char *p = tpath("crash.qcow2"), *raw = tpath("crash.raw");
	const uint64_t size = 8 * MIB_;
	uint8_t *want = malloc(size);
	pid_t pid;
	int st = -1, rc;

	sh("rm -f '%s'", p);
	sh("qemu-img create -q -f qcow2 '%s' 8M", p);
	memset(want, 0, size);
	fill(want, 0, 5 * MIB_ + 4096, 80);
	save(raw, want, size);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		struct disk *d;

		if (disk_open(p, &d) ||
		    bulk(d, DISK_WRITE, 0, want, 5 * MIB_ + 4096, 100 * 1024))
			_exit(1);
		_exit(0);	/* no disk_close: the reservation leaks */
	}
	waitpid(pid, &st, 0);
	rc = check_img(p);
	CHECK(WIFEXITED(st) && !WEXITSTATUS(st) && (rc == 0 || rc == 3),
	      "after a crash qemu-img check finds at most leaks");
	CHECK(same_as(p, raw), "and every completed write is in the image");
	free(want);
}

static void test_enospc(bool have_tmpfs)
{
	const char *dir = tpath("full");
	char p[300];
	uint8_t *buf = malloc(4 * MIB_), got[4096];
	int ok = 0, enospc = 0, other = 0, rc;
	struct disk *d;

	if (!have_tmpfs) {
		skip("qcow2 ENOSPC (no private tmpfs)");
		skip("qcow2 ENOSPC check");
		free(buf);
		return;
	}
	snprintf(p, sizeof(p), "%s/disk.qcow2", dir);
	if (sh("qemu-img create -q -f qcow2 '%s' 16M", p) || disk_open(p, &d)) {
		CHECK(false, "a qcow2 image on a 1 MiB tmpfs");
		free(buf);
		return;
	}
	fill(buf, 0, 4 * MIB_, 90);
	for (int i = 0; i < 32; i++) {
		int ret = req_sync(d, DISK_WRITE, (uint64_t)i * 128 * 1024,
				   buf + i * 128 * 1024, 128 * 1024);

		ok += ret == 0;
		enospc += ret == -ENOSPC;
		other += ret && ret != -ENOSPC;
	}
	CHECK(ok && enospc && !other && req_sync(d, DISK_READ, 0, got, sizeof(got)) == 0 &&
	      !memcmp(got, buf, sizeof(got)),
	      "qcow2 writes past the space fail with ENOSPC; reads go on");
	disk_close(d);
	rc = check_img(p);
	CHECK(rc == 0 || rc == 3, "after ENOSPC qemu-img check finds at most leaks");
	umount2(dir, MNT_DETACH);
	free(buf);
}

int main(void)
{
	uint8_t *src = malloc(SRC_SIZE);
	bool have_tmpfs;

	tdir_make("qcow2");
	have_tmpfs = small_tmpfs(tpath("full"), "1m");
	have_qemu_img = sh("qemu-img --version >/dev/null 2>&1") == 0;
	if (!have_qemu_img) {
		skip("qemu-img is not installed (Debian qemu-utils)");
		tdir_remove();
		return tap_done();
	}
	make_source(src);
	test_read_qemu_images(src);
	test_write_fresh();
	test_compressed_rewrite(src);
	test_zero_discard("", "v3");
	test_zero_discard("-o compat=0.10", "v2");
	test_zero_discard("-o cluster_size=512", "512-byte clusters");
	test_readonly();
	test_malformed();
	test_unsupported();
	test_bad_compressed();
	test_write_eio();
	test_close_waits();
	test_crash();
	test_enospc(have_tmpfs);
	tdir_remove();
	free(src);
	return tap_done();
}
