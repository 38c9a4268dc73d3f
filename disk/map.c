// SPDX-License-Identifier: GPL-2.0
/*
 * Reads served from the host's page cache through a read-only mapping of
 * the image, copied straight into the guest's buffers by the thread that
 * submits them (docs/blk.md).
 *
 * A buffered read through libaio or preadv is a copy too, made by the
 * kernel with ordinary stores: for a large request every destination
 * cache line is first read from memory, then written back, and the copy
 * evicts everything else from the cache on the way. Here a large request
 * is copied with non-temporal stores, which write whole lines without
 * reading them, and a small one with memcpy; neither needs a system call
 * per request, nor an iocb, an eventfd signal and io_getevents per
 * completion.
 *
 * Only pages already in the page cache are read this way (mincore);
 * anything else goes to libaio, whose readahead and error reporting serve
 * cold data better than page faults would. A page can still go away
 * between mincore and the copy: the kernel then reads it back, and when
 * that fails (EIO) or the file was truncated under lkvm, the access
 * raises SIGBUS. The copy runs armed: the handler jumps back out of it,
 * and the request goes to libaio instead, which reports the error (or
 * reads past the end as zeros) as for any other request.
 *
 * The mapping costs page tables for what has been read (2 MiB per GiB):
 * for images larger than MAP_TRIM they are dropped (MADV_DONTNEED, which
 * keeps the page cache) after every MAP_TRIM bytes copied.
 */
#include "disk-int.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "lkvm/util.h"

#define MAP_TRIM (1ull << 30)
/* Requests from this size on are copied around the cache (see above):
 * larger than what a core's L2 keeps of them anyway. */
#define NT_MIN (256u * 1024)
#define VEC_PAGES 256		/* mincore in steps of 1 MiB */
#define WINDOW (1u << 20)

/* The armed copy of this thread, for the SIGBUS handler. */
static __thread struct {
	sigjmp_buf jb;
	volatile sig_atomic_t armed;
	bool unblocked;			/* SIGBUS reaches this thread */
} guard;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	static const char msg[] = "lkvm: bus error outside a disk image read\n";
	ssize_t n;

	(void)sig, (void)si, (void)uc;
	if (guard.armed) {
		guard.armed = 0;
		siglongjmp(guard.jb, 1);
	}
	/* Not ours: as fatal as it would have been without the handler. */
	n = write(STDERR_FILENO, msg, sizeof(msg) - 1);
	(void)n;
	abort();
}

static pthread_once_t handler_once = PTHREAD_ONCE_INIT;

static void install_handler(void)
{
	/* SA_NODEFER: jumping out leaves the signal mask as it was, so
	 * sigsetjmp need not save it (a system call each time). */
	struct sigaction sa = { .sa_sigaction = on_sigbus,
				.sa_flags = SA_SIGINFO | SA_NODEFER };

	sigaction(SIGBUS, &sa, NULL);
}

void disk_map_open(struct disk *d)
{
	void *p;

	d->map = NULL;
	d->map_len = 0;
	if (!d->file_size || d->file_size > SIZE_MAX)
		return;
	p = mmap(NULL, (size_t)d->file_size, PROT_READ, MAP_SHARED, d->fd, 0);
	if (p == MAP_FAILED)
		return;		/* libaio serves every read */
	/* Before any I/O thread or seccomp filter exists. */
	pthread_once(&handler_once, install_handler);
	d->map = p;
	d->map_len = d->file_size;
}

void disk_map_close(struct disk *d)
{
	if (d->map)
		munmap(d->map, (size_t)d->map_len);
	d->map = NULL;
}

/* Is every page of [off, off + len) in the page cache? */
static bool resident(struct disk *d, uint64_t off, uint64_t len)
{
	long pg = sysconf(_SC_PAGESIZE);
	uint64_t first = off & ~(uint64_t)(pg - 1), end = off + len;
	unsigned char vec[VEC_PAGES];

	while (first < end) {
		uint64_t n = (end - first + (uint64_t)pg - 1) / (uint64_t)pg;

		if (n > VEC_PAGES)
			n = VEC_PAGES;
		if (mincore(d->map + first, (size_t)n * (size_t)pg, vec))
			return false;
		for (uint64_t i = 0; i < n; i++) {
			if (!(vec[i] & 1))
				return false;
		}
		first += n * (uint64_t)pg;
	}
	return true;
}

/*
 * While this thread's plug lasts: where the last read ended, and a window
 * found cached. A read that follows another asks mincore about the whole
 * 1 MiB window around it, so that the next requests of one notification
 * that fall in it need no mincore each (a system call that allocates a
 * page, more than the copy of 4 KiB); a read elsewhere asks about its own
 * pages only. A page evicted in the meantime is only read back by the
 * fault.
 */
static __thread struct {
	const struct disk *d;
	uint64_t end;			/* of the last read */
	uint64_t lo, hi;		/* the window, or lo == hi */
} seen;

void disk_map_forget(void)
{
	seen.d = NULL;
}

static bool cached(struct disk *d, uint64_t off, uint64_t len)
{
	bool follows;
	uint64_t lo, hi;

	if (!disk_plugged(d))
		return resident(d, off, len);
	if (seen.d != d) {
		seen.d = d;
		seen.end = UINT64_MAX;
		seen.lo = seen.hi = 0;
	}
	follows = off == seen.end;
	seen.end = off + len;
	if (off >= seen.lo && off + len <= seen.hi)
		return true;
	if (!follows)
		return resident(d, off, len);
	lo = off & ~(uint64_t)(WINDOW - 1);
	hi = (off + len + WINDOW - 1) & ~(uint64_t)(WINDOW - 1);
	if (hi > d->map_len)
		hi = d->map_len;
	if (resident(d, lo, hi - lo)) {
		seen.lo = lo;
		seen.hi = hi;
		return true;
	}
	return resident(d, off, len);
}

/* memcpy that writes dst's whole cache lines without reading them. */
static void copy_nt(void *dst, const void *src, size_t n)
{
#ifdef __SSE2__
	char *o = dst;
	const char *s = src;
	size_t head = (size_t)(-(uintptr_t)o & 15);

	if (head > n)
		head = n;
	memcpy(o, s, head);
	o += head, s += head, n -= head;
	for (; n >= 64; o += 64, s += 64, n -= 64) {
		__m128i a = _mm_loadu_si128((const __m128i *)(const void *)s);
		__m128i b = _mm_loadu_si128((const __m128i *)(const void *)(s + 16));
		__m128i c = _mm_loadu_si128((const __m128i *)(const void *)(s + 32));
		__m128i e = _mm_loadu_si128((const __m128i *)(const void *)(s + 48));

		_mm_stream_si128((__m128i *)(void *)o, a);
		_mm_stream_si128((__m128i *)(void *)(o + 16), b);
		_mm_stream_si128((__m128i *)(void *)(o + 32), c);
		_mm_stream_si128((__m128i *)(void *)(o + 48), e);
	}
	memcpy(o, s, n);
#else
	memcpy(dst, src, n);
#endif
}

static void store_fence(void)
{
#ifdef __SSE2__
	/* Streaming stores are weakly ordered: visible before the
	 * completion that the caller publishes next. */
	_mm_sfence();
#endif
}

/* The copy itself, out of line so that nothing of the caller's lives in
 * registers across a jump back from the handler. */
static __attribute__((noinline)) void copy_out(const char *src,
					       const struct iovec *iov,
					       unsigned int cnt, bool nt)
{
	for (unsigned int i = 0; i < cnt; i++) {
		if (nt)
			copy_nt(iov[i].iov_base, src, iov[i].iov_len);
		else
			memcpy(iov[i].iov_base, src, iov[i].iov_len);
		src += iov[i].iov_len;
	}
}

bool disk_map_read(struct disk *d, const struct iovec *iov,
		   unsigned int cnt, uint64_t off)
{
	uint64_t len = 0;
	bool nt;

	for (unsigned int i = 0; i < cnt; i++) {
		if (__builtin_add_overflow(len, iov[i].iov_len, &len))
			return false;
	}
	if (!d->map || !len || off > d->map_len || len > d->map_len - off ||
	    !cached(d, off, len))
		return false;
	if (!guard.unblocked) {
		sigset_t bus;

		/* I/O threads block every signal; a blocked SIGBUS from a
		 * fault would kill the process instead of reaching us. */
		sigemptyset(&bus);
		sigaddset(&bus, SIGBUS);
		pthread_sigmask(SIG_UNBLOCK, &bus, NULL);
		guard.unblocked = true;
	}
	nt = len >= NT_MIN;
	if (sigsetjmp(guard.jb, 0)) {
		/* A page could not be read back, or the file shrank. */
		store_fence();
		return false;
	}
	guard.armed = 1;
	copy_out(d->map + off, iov, cnt, nt);
	guard.armed = 0;
	if (nt)
		store_fence();
	if (d->map_len > MAP_TRIM &&
	    __atomic_add_fetch(&d->map_copied, len, __ATOMIC_RELAXED) >=
	    MAP_TRIM) {
		__atomic_store_n(&d->map_copied, 0, __ATOMIC_RELAXED);
		madvise(d->map, (size_t)d->map_len, MADV_DONTNEED);
	}
	return true;
}
