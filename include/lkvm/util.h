/* SPDX-License-Identifier: GPL-2.0 */
#ifndef LKVM_UTIL_H
#define LKVM_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define ALIGN_UP(x, a) (((x) + (a) - 1) & ~((__typeof__(x))(a) - 1))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define KIB (1ull << 10)
#define MIB (1ull << 20)
#define GIB (1ull << 30)

/* One-line messages on stderr, prefixed "lkvm: ". */
void pr_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void pr_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void pr_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* pr_err, then exit(1). */
void die(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

/*
 * Parses a size: a number with an optional K, M, G or T suffix (powers of
 * 1024), no suffix meaning default_unit bytes. Returns false on syntax
 * errors and overflow.
 */
bool parse_size(const char *s, uint64_t default_unit, uint64_t *out);
/* Parses a whole unsigned number in [min, max]; false otherwise. */
bool parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/*
 * Reads a whole file into a malloc'd buffer. Returns 0 or -errno;
 * max_size bounds what is accepted (-EFBIG beyond it).
 */
int read_file(const char *path, size_t max_size, void **buf, size_t *size);

/* The value of a hex digit, or -1 (inline: guest/init uses it too). */
static inline int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* A hex dump, 16 bytes a line, addresses from addr, ASCII on the right. */
void hexdump(FILE *f, uint64_t addr, const void *buf, size_t len);

/*
 * An /etc/passwd entry, read directly: lkvm is linked statically (it
 * starts faster), and a static binary cannot use glibc's NSS modules.
 * name is a user name, or "#UID" to look up by number; any of the
 * outputs may be NULL. False when there is no such entry.
 */
bool passwd_lookup(const char *name, unsigned int *uid, unsigned int *gid,
		   char *home, size_t home_len);

/* write() until done or error; returns 0 or -errno. */
int write_all(int fd, const void *buf, size_t len);

struct iovec;
/* One sendmsg() of iov on a Unix socket (MSG_NOSIGNAL, retried on EINTR),
 * with fd as SCM_RIGHTS when fd >= 0: the bytes sent, or -errno. */
long send_with_fd(int sock, struct iovec *iov, int iovcnt, int fd);


/*
 * Little-endian fields in guest-visible structures (boot tables, PCI and
 * virtio configuration), byte by byte: no alignment or host byte order
 * assumed.
 */
static inline void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void put_le32(uint8_t *p, uint32_t v)
{
	put_le16(p, (uint16_t)v);
	put_le16(p + 2, (uint16_t)(v >> 16));
}

static inline void put_le64(uint8_t *p, uint64_t v)
{
	put_le32(p, (uint32_t)v);
	put_le32(p + 4, (uint32_t)(v >> 32));
}

static inline uint16_t get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)get_le16(p) | (uint32_t)get_le16(p + 2) << 16;
}

static inline uint64_t get_le64(const uint8_t *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

#endif
