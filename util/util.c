// SPDX-License-Identifier: GPL-2.0
#include "lkvm/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static void vmsg(const char *level, const char *fmt, va_list ap)
{
	char buf[1024];
	int n;

	n = snprintf(buf, sizeof(buf), "lkvm: %s", level);
	vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
	/* One write per message so lines from threads do not interleave. */
	n = (int)strlen(buf);
	if (n && buf[n - 1] != '\n' && n < (int)sizeof(buf) - 1)
		buf[n++] = '\n';
	write_all(STDERR_FILENO, buf, (size_t)n);
}

void pr_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg("", fmt, ap);
	va_end(ap);
}

void pr_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg("warning: ", fmt, ap);
	va_end(ap);
}

void pr_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg("", fmt, ap);
	va_end(ap);
}

void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg("", fmt, ap);
	va_end(ap);
	exit(1);
}

bool parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
		return false;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

bool parse_size(const char *s, uint64_t default_unit, uint64_t *out)
{
	unsigned long long v;
	uint64_t unit = default_unit;
	char *end;

	if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return false;
	switch (*end) {
	case 'k': case 'K': unit = KIB; end++; break;
	case 'm': case 'M': unit = MIB; end++; break;
	case 'g': case 'G': unit = GIB; end++; break;
	case 't': case 'T': unit = GIB * 1024; end++; break;
	case '\0': break;
	default: return false;
	}
	/* Accept "512MiB" and "512MB" as well as "512M". */
	if ((end[0] == 'i' || end[0] == 'I') && (end[1] == 'B' || end[1] == 'b'))
		end += 2;
	else if (end[0] == 'B' || end[0] == 'b')
		end++;
	if (*end)
		return false;
	if (v && unit > UINT64_MAX / v)
		return false;
	*out = v * unit;
	return true;
}

int read_file(const char *path, size_t max_size, void **buf, size_t *size)
{
	struct stat st;
	size_t got = 0;
	char *p;
	int fd, err;

	*buf = NULL;
	*size = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		err = -errno;
		goto out;
	}
	err = -EISDIR;
	if (S_ISDIR(st.st_mode))
		goto out;
	err = -EFBIG;
	if (st.st_size < 0 || (uint64_t)st.st_size > max_size)
		goto out;
	err = -ENOMEM;
	p = malloc((size_t)st.st_size + 1);
	if (!p)
		goto out;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, p + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err = n < 0 ? -errno : -EIO;
			free(p);
			goto out;
		}
		got += (size_t)n;
	}
	p[got] = '\0';
	*buf = p;
	*size = got;
	err = 0;
out:
	close(fd);
	return err;
}

bool passwd_lookup(const char *name, unsigned int *uid, unsigned int *gid,
		   char *home, size_t home_len)
{
	FILE *f = fopen("/etc/passwd", "re");
	char line[1024];
	bool found = false;

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		char *field[7], *p = line, *end;
		unsigned long id;
		unsigned int n = 0;

		while (n < 7 && (field[n] = strsep(&p, ":\n")))
			n++;
		if (n < 6)
			continue;
		id = strtoul(field[2], &end, 10);
		if (*end || !*field[2] ||
		    (name[0] == '#' ? strtoul(name + 1, NULL, 10) != id :
				      strcmp(name, field[0]) != 0))
			continue;
		if (home && (field[5][0] != '/' ||
			     (size_t)snprintf(home, home_len, "%s", field[5]) >=
				     home_len))
			continue;
		if (uid)
			*uid = (unsigned int)id;
		if (gid)
			*gid = (unsigned int)strtoul(field[3], NULL, 10);
		found = true;
	}
	fclose(f);
	return found;
}

int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

void hexdump(FILE *f, uint64_t addr, const void *buf, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = buf;

	/* Each line built whole, one write each: a large read prints at
	 * hundreds of MiB/s rather than a printf() per byte's speed. */
	for (size_t off = 0; off < len; off += 16) {
		size_t n = MIN((size_t)16, len - off);
		uint64_t a = addr + off;
		char line[16 + 1 + 16 * 3 + 1 + 3 + 16 + 2], *o = line;

		for (int i = 60; i >= 0; i -= 4)
			*o++ = hex[(a >> i) & 15];
		*o++ = ' ';
		for (size_t i = 0; i < 16; i++) {
			if (i == 8)
				*o++ = ' ';
			*o++ = ' ';
			*o++ = i < n ? hex[p[off + i] >> 4] : ' ';
			*o++ = i < n ? hex[p[off + i] & 15] : ' ';
		}
		*o++ = ' ';
		*o++ = ' ';
		*o++ = '|';
		for (size_t i = 0; i < n; i++)
			*o++ = p[off + i] >= 0x20 && p[off + i] < 0x7f ?
				       (char)p[off + i] : '.';
		*o++ = '|';
		*o++ = '\n';
		fwrite(line, 1, (size_t)(o - line), f);
	}
}

long send_with_fd(int sock, struct iovec *iov, int iovcnt, int fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cbuf;
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)iovcnt };
	ssize_t n;

	if (fd >= 0) {
		struct cmsghdr *cm;

		memset(&cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf.buf;
		mh.msg_controllen = sizeof(cbuf.buf);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	do
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}
