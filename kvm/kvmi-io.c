// SPDX-License-Identifier: GPL-2.0
/*
 * The KVMI transport both ends share: one message per call over a stream
 * socket (with a passed descriptor when there is one), the cookie file,
 * nonces, and the handshake's exchange of messages. Standalone: part of
 * libkvmi.a as well as of lkvm.
 */
#include "lkvm/kvmi-proto.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HDR_SIZE sizeof(struct kvmi_msg_hdr)

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t kvmi_io_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void kvmi_io_poll_init(struct kvmi_io_poll *p, unsigned int max_us)
{
	p->max_us = max_us > KVMI_IO_POLL_MAX_US ? KVMI_IO_POLL_MAX_US : max_us;
	p->cur_us = p->max_us;
}

void kvmi_io_poll_update(struct kvmi_io_poll *p, int64_t waited_us, bool hit)
{
	if (hit || !p->max_us)
		return;
	if (waited_us <= (int64_t)p->max_us) {
		/* A window this long would have caught it: grow. */
		unsigned int next = p->cur_us ? p->cur_us * 2 :
						KVMI_IO_POLL_START_US;

		p->cur_us = next > p->max_us ? p->max_us : next;
	} else {
		/* The peer is slow: polling only burns the CPU. */
		p->cur_us /= 2;
	}
}

int64_t kvmi_io_poll_window(const struct kvmi_io_poll *p, int timeout_ms)
{
	int64_t win = p ? p->cur_us : 0;

	if (timeout_ms >= 0 && win > (int64_t)timeout_ms * 1000)
		win = (int64_t)timeout_ms * 1000;
	return win;
}

/* Waits for events on fd until deadline (-1: none): 0, -ETIMEDOUT. */
static int wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int r;

	for (;;) {
		int ms = -1;

		if (deadline >= 0) {
			int64_t left = deadline - now_ms();

			if (left <= 0)
				return -ETIMEDOUT;
			ms = left > 1000000 ? 1000000 : (int)left;
		}
		r = poll(&pfd, 1, ms);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}

int kvmi_io_send(int fd, const struct iovec *iov, int iovcnt, int pass_fd)
{
	return kvmi_io_send_fds(fd, iov, iovcnt, &pass_fd, pass_fd >= 0);
}

int kvmi_io_send_fds(int fd, const struct iovec *iov, int iovcnt,
		     const int *fds, unsigned int nfds)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * KVMI_IO_MAX_FDS)];
	} ctl;
	struct iovec v[KVMI_IO_MAX_IOV];
	struct msghdr mh = { .msg_iov = v, .msg_iovlen = iovcnt };
	int64_t deadline = -1;
	bool first = true;

	if (iovcnt < 1 || iovcnt > KVMI_IO_MAX_IOV || nfds > KVMI_IO_MAX_FDS)
		return -EINVAL;
	memcpy(v, iov, sizeof(*iov) * iovcnt);
	for (;;) {
		ssize_t n;

		while (mh.msg_iovlen && !mh.msg_iov->iov_len) {
			mh.msg_iov++;
			mh.msg_iovlen--;
		}
		if (!mh.msg_iovlen)
			return 0;
		if (first && nfds) {
			memset(&ctl, 0, sizeof(ctl));
			mh.msg_control = ctl.buf;
			mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
			CMSG_FIRSTHDR(&mh)->cmsg_level = SOL_SOCKET;
			CMSG_FIRSTHDR(&mh)->cmsg_type = SCM_RIGHTS;
			CMSG_FIRSTHDR(&mh)->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
			memcpy(CMSG_DATA(CMSG_FIRSTHDR(&mh)), fds,
			       sizeof(int) * nfds);
		} else {
			mh.msg_control = NULL;
			mh.msg_controllen = 0;
		}
		n = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			int err = errno;

			if (err == EINTR)
				continue;
			if (err != EAGAIN && err != EWOULDBLOCK)
				return -err;
			/* A peer that stops reading, or reads a little now
			 * and then, cannot hold us: once the send has had to
			 * wait, what is left goes within the timeout. */
			if (deadline < 0)
				deadline = now_ms() + KVMI_IO_MSG_TIMEOUT_MS;
			err = wait_fd(fd, POLLOUT, deadline);
			if (err)
				return err;
			continue;
		}
		first = false;
		while (n > 0) {
			size_t k = (size_t)n < mh.msg_iov->iov_len ?
					   (size_t)n : mh.msg_iov->iov_len;

			mh.msg_iov->iov_base = (char *)mh.msg_iov->iov_base + k;
			mh.msg_iov->iov_len -= k;
			n -= k;
			if (!mh.msg_iov->iov_len) {
				mh.msg_iov++;
				mh.msg_iovlen--;
			}
		}
	}
}

/* Descriptors passed with a message: up to max kept, in order. */
struct io_fds {
	int *fd;
	unsigned int max, n;
};

/* Keeps the first descriptors passed (as many as wanted), closes others. */
static void take_fds(struct msghdr *mh, struct io_fds *kept)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		size_t n;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
			if (kept->n < kept->max)
				kept->fd[kept->n++] = fd;
			else
				close(fd);
		}
	}
}

/* One recvmsg() into p without waiting; the descriptors that come are
 * kept as take_fds() says. *ctl: whether any control data came. */
static ssize_t recv_fds(int fd, void *p, size_t len, struct io_fds *kept,
			bool *ctl)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * KVMI_IO_MAX_FDS)];
	} c;
	struct iovec v = { .iov_base = p, .iov_len = len };
	struct msghdr mh = {
		.msg_iov = &v,
		.msg_iovlen = 1,
		.msg_control = c.buf,
		.msg_controllen = sizeof(c.buf),
	};
	ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

	*ctl = n >= 0 && mh.msg_controllen;
	if (n >= 0)
		take_fds(&mh, kept);
	return n;
}

/*
 * Reads exactly len bytes. *got counts what came so far (across calls),
 * to tell a clean end between messages from one inside a message.
 */
static int read_exact(int fd, uint8_t *p, size_t len, int64_t first_deadline,
		      int64_t spin_until_us, bool *slept, size_t *got,
		      struct io_fds *passed)
{
	int64_t deadline = *got ? now_ms() + KVMI_IO_MSG_TIMEOUT_MS
				: first_deadline;
	/* Data is usually there already: try first, wait only when not
	 * (each system call costs, most of all on a paravirtual host). */
	bool wait = false, ctl;

	while (len) {
		ssize_t n;
		int err;

		/* Within the polling window: look again rather than sleep
		 * (first letting run whatever waits for this core). */
		if (wait && spin_until_us > 0 &&
		    kvmi_io_now_us() < spin_until_us) {
			sched_yield();
			wait = false;
		}
		if (wait) {
			*slept = true;
			err = wait_fd(fd, POLLIN, deadline);
			if (err)
				return err == -ETIMEDOUT && *got ? -EPROTO : err;
		}
		n = recv_fds(fd, p, len, passed, &ctl);
		wait = n < 0;
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN ||
			    errno == EWOULDBLOCK) {
				/* A deadline already past: one look, no wait. */
				if (errno != EINTR && deadline >= 0 &&
				    (spin_until_us <= 0 ||
				     kvmi_io_now_us() >= spin_until_us) &&
				    deadline <= now_ms())
					return *got ? -EPROTO : -ETIMEDOUT;
				continue;
			}
			err = -errno;
			/* Cut off inside a message: the stream is lost. */
			return err == -ECONNRESET && *got ? -EPROTO : err;
		}
		if (!n)
			return *got ? -EPROTO : -ECONNRESET;
		if (!*got)
			deadline = now_ms() + KVMI_IO_MSG_TIMEOUT_MS;
		*got += n;
		p += n;
		len -= n;
	}
	return 0;
}

int kvmi_io_recv(int fd, void *buf, size_t cap, int timeout_ms, size_t *len,
		 int *passed_fd)
{
	return kvmi_io_recv_poll(fd, buf, cap, timeout_ms, NULL, len,
				 passed_fd);
}

int kvmi_io_recv_poll(int fd, void *buf, size_t cap, int timeout_ms,
		      struct kvmi_io_poll *poll, size_t *len, int *passed_fd)
{
	unsigned int n;

	return kvmi_io_recv_fds(fd, buf, cap, timeout_ms, poll, len, passed_fd,
				passed_fd ? 1 : 0, &n);
}

int kvmi_io_recv_fds(int fd, void *buf, size_t cap, int timeout_ms,
		     struct kvmi_io_poll *poll, size_t *len, int *fds,
		     unsigned int max_fds, unsigned int *nfds)
{
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	int64_t start = poll ? kvmi_io_now_us() : 0;
	int64_t win = kvmi_io_poll_window(poll, timeout_ms);
	int64_t spin_until = win ? start + win : 0;
	struct kvmi_msg_hdr hdr;
	bool slept = false;
	struct io_fds in = { fds, max_fds, 0 };
	size_t got = 0;
	int err;

	*len = 0;
	*nfds = 0;
	for (unsigned int i = 0; i < max_fds; i++)
		fds[i] = -1;
	if (cap < HDR_SIZE)
		return -EINVAL;
	err = read_exact(fd, buf, HDR_SIZE, deadline, spin_until, &slept, &got,
			 &in);
	if (!err) {
		memcpy(&hdr, buf, sizeof(hdr));
		if (kvmi_check_hdr(&hdr) || HDR_SIZE + hdr.size > cap)
			err = -EMSGSIZE;
	}
	if (!err)
		err = read_exact(fd, (uint8_t *)buf + HDR_SIZE, hdr.size,
				 deadline, spin_until, &slept, &got, &in);
	if (poll && err != -ETIMEDOUT)
		kvmi_io_poll_update(poll, kvmi_io_now_us() - start, !slept);
	if (err) {
		for (unsigned int i = 0; i < in.n; i++) {
			close(fds[i]);
			fds[i] = -1;
		}
		return err;
	}
	*len = HDR_SIZE + hdr.size;
	*nfds = in.n;
	return 0;
}

ssize_t kvmi_io_rbuf_peek(const struct kvmi_io_rbuf *rb, size_t cap)
{
	size_t have = rb->end - rb->start;
	struct kvmi_msg_hdr hdr;

	if (have < HDR_SIZE)
		return 0;
	memcpy(&hdr, rb->data + rb->start, sizeof(hdr));
	if (kvmi_check_hdr(&hdr) || HDR_SIZE + hdr.size > cap ||
	    HDR_SIZE + hdr.size > sizeof(rb->data))
		return -EMSGSIZE;
	return have >= HDR_SIZE + hdr.size ? (ssize_t)(HDR_SIZE + hdr.size) : 0;
}

ssize_t kvmi_io_rbuf_fill(int fd, struct kvmi_io_rbuf *rb)
{
	return kvmi_io_rbuf_fill_fd(fd, rb, NULL);
}

ssize_t kvmi_io_rbuf_fill_fd(int fd, struct kvmi_io_rbuf *rb,
			     struct kvmi_io_fds *passed)
{
	size_t have = rb->end - rb->start;
	struct kvmi_io_fds got = { .n = 0 };
	struct io_fds kept = { got.fd, KVMI_IO_MAX_FDS, 0 };
	bool ctl = false;
	void *p;
	size_t len;
	ssize_t n;

	if (rb->start) {
		memmove(rb->data, rb->data + rb->start, have);
		rb->start = 0;
		rb->end = have;
	}
	if (rb->end == sizeof(rb->data))
		return -EAGAIN;		/* full: its messages first */
	p = rb->data + rb->end;
	len = sizeof(rb->data) - rb->end;
	/* recv() where no descriptor is wanted (the kernel drops any): the
	 * VMM's vCPU threads may make no other call (kvm/seccomp.c). */
	do
		n = passed ? recv_fds(fd, p, len, &kept, &ctl)
			   : recv(fd, p, len, MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	/* Descriptors stay with the caller until a message claims them;
	 * more replace them (one message at a time carries some). */
	if (passed && ctl) {
		for (unsigned int i = 0; i < passed->n; i++)
			close(passed->fd[i]);
		memcpy(passed->fd, got.fd, kept.n * sizeof(int));
		passed->n = kept.n;
	}
	rb->end += (size_t)n;
	return n;
}

int kvmi_io_recv_msg(int fd, struct kvmi_io_rbuf *rb, size_t cap,
		     int timeout_ms, struct kvmi_io_poll *poll,
		     const uint8_t **msg, size_t *len,
		     struct kvmi_io_fds *passed)
{
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	int64_t start = poll ? kvmi_io_now_us() : 0;
	int64_t win = kvmi_io_poll_window(poll, timeout_ms);
	int64_t spin_until = win ? start + win : 0;
	bool partial = false, slept = false;
	int err;
	*len = 0;
	*msg = NULL;
	for (;;) {
		size_t have = rb->end - rb->start;
		ssize_t n = kvmi_io_rbuf_peek(rb, cap);

		if (n < 0)
			return (int)n;
		if (n > 0) {
			*len = (size_t)n;
			*msg = rb->data + rb->start;
			rb->start += *len;
			err = 0;
			break;
		}
		/* Part of a message: the rest must follow soon. */
		if (have && !partial) {
			partial = true;
			if (deadline < 0 ||
			    deadline < now_ms() + KVMI_IO_MSG_TIMEOUT_MS)
				deadline = now_ms() + KVMI_IO_MSG_TIMEOUT_MS;
		}
		n = kvmi_io_rbuf_fill_fd(fd, rb, passed);
		if (n > 0)
			continue;
		if (!n) {
			err = have ? -EPROTO : -ECONNRESET;
			break;
		}
		if (n != -EAGAIN) {
			err = have && n == -ECONNRESET ? -EPROTO : (int)n;
			break;
		}
		/* Within the polling window: look again rather than sleep
		 * (first letting run whatever waits for this core). */
		if (spin_until > 0 && kvmi_io_now_us() < spin_until) {
			sched_yield();
			continue;
		}
		if (deadline >= 0 && deadline <= now_ms()) {
			err = have ? -EPROTO : -ETIMEDOUT;
			break;
		}
		slept = true;
		err = wait_fd(fd, POLLIN, deadline);
		if (err) {
			if (err == -ETIMEDOUT && have)
				err = -EPROTO;
			break;
		}
	}
	if (poll && err != -ETIMEDOUT)
		kvmi_io_poll_update(poll, kvmi_io_now_us() - start, !slept);
	return err;
}

int kvmi_io_recv_buffered(int fd, struct kvmi_io_rbuf *rb, void *buf,
			  size_t cap, int timeout_ms, size_t *len)
{
	const uint8_t *msg;
	int err = kvmi_io_recv_msg(fd, rb, cap, timeout_ms, NULL, &msg, len,
				   NULL);

	if (!err)
		memcpy(buf, msg, *len);
	return err;
}

int kvmi_io_cookie_load(const char *path, void *buf, size_t *len)
{
	struct stat st;
	size_t got = 0;
	int fd, err = 0;

	*len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		err = -errno;
	} else if (!S_ISREG(st.st_mode)) {
		err = -EINVAL;
	} else if (st.st_mode & 077) {
		/* A secret others can read authenticates nobody. */
		err = -EPERM;
	} else if (st.st_size < KVMI_COOKIE_MIN ||
		   st.st_size > KVMI_COOKIE_MAX) {
		err = -EINVAL;
	}
	while (!err && got < (size_t)st.st_size) {
		ssize_t n = read(fd, (uint8_t *)buf + got, st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			err = n < 0 ? -errno : -EINVAL;
		else
			got += n;
	}
	close(fd);
	if (err) {
		explicit_bzero(buf, got);
		return err;
	}
	*len = got;
	return 0;
}

int kvmi_io_random(void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = getrandom((uint8_t *)buf + got, len - got, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += n;
	}
	return 0;
}

/* Sends what a handshake builder made: n bytes, or its error. */
static int send_built(int fd, const void *buf, ssize_t n)
{
	struct iovec v = { .iov_base = (void *)buf, .iov_len = (size_t)n };

	return n < 0 ? (int)n : kvmi_io_send(fd, &v, 1, -1);
}

/* One handshake message; one larger than any of them breaks protocol. */
static int recv_hs(int fd, uint8_t *buf, int timeout_ms, size_t *len)
{
	int err = kvmi_io_recv(fd, buf, KVMI_HS_MSG_MAX, timeout_ms, len, NULL);

	return err == -EMSGSIZE ? -EPROTO : err;
}

int kvmi_io_handshake_vmm(int fd, const void *cookie, size_t cookie_len,
			  const struct kvmi_guest *info, int timeout_ms)
{
	uint8_t nonce[KVMI_LKVM_NONCE_SIZE];
	uint8_t buf[KVMI_HS_MSG_MAX];
	struct kvmi_hs hs;
	size_t len;
	int err;

	err = kvmi_hs_init(&hs, cookie, cookie_len);
	if (!err)
		err = kvmi_io_random(nonce, sizeof(nonce));
	if (!err)
		err = send_built(fd, buf,
				 kvmi_hs_hello(&hs, nonce, buf, sizeof(buf)));
	if (!err)
		err = recv_hs(fd, buf, timeout_ms, &len);
	if (!err) {
		err = kvmi_hs_check_auth(&hs, buf, len);
		/* Say why before closing; the tool may not listen. */
		if (err == -EACCES)
			send_built(fd, buf, kvmi_hs_reject(buf, sizeof(buf)));
	}
	if (!err)
		err = send_built(fd, buf,
				 kvmi_hs_welcome(&hs, info, buf, sizeof(buf)));
	kvmi_hs_wipe(&hs);
	return err;
}

int kvmi_io_handshake_tool(int fd, const void *cookie, size_t cookie_len,
			   int timeout_ms, struct kvmi_guest *info)
{
	uint8_t nonce[KVMI_LKVM_NONCE_SIZE];
	uint8_t buf[KVMI_HS_MSG_MAX];
	struct kvmi_hs hs;
	size_t len;
	int err;

	err = kvmi_hs_init(&hs, cookie, cookie_len);
	if (!err)
		err = recv_hs(fd, buf, timeout_ms, &len);
	if (!err)
		err = kvmi_hs_check_hello(&hs, buf, len);
	if (!err)
		err = kvmi_io_random(nonce, sizeof(nonce));
	if (!err)
		err = send_built(fd, buf,
				 kvmi_hs_auth(&hs, nonce, buf, sizeof(buf)));
	if (!err)
		err = recv_hs(fd, buf, timeout_ms, &len);
	/* A VMM that rejects us closes right after saying so. */
	if (!err)
		err = kvmi_hs_check_welcome(&hs, buf, len, info);
	kvmi_hs_wipe(&hs);
	return err;
}
