// SPDX-License-Identifier: GPL-2.0
/*
 * The host terminal, console clients, the console log.
 *
 * Input flows from its sources (stdin, with the escape filter on a
 * terminal; attached `lkvm console` clients, byte for byte) -> pending
 * buffer -> the console device. When the device takes less than it is
 * offered, no source is read until the device calls
 * machine_console_resume(), so input is held back, never dropped, and
 * lkvm's memory stays bounded whatever the guest does.
 *
 * Output (machine_console_write(), any thread) goes to stdout unless
 * detached, to the log, and to every client without blocking: a client
 * that does not read loses output, the guest never waits for it.
 */
#include "lkvm/term.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include "lkvm/machine.h"
#include "lkvm/util.h"

#define CTRL_A 0x01
#define MAX_CLIENTS 64

struct input {
	int fd;
	bool watched;
	bool client;		/* an attached console client */
	struct input *next;
};

static struct termios saved;
static bool raw;
static bool is_tty;
static int pending_escape;
static struct input *inputs;	/* main thread; clients also under out_lock */
static struct input *stdin_src;	/* stdin, or the pipe from the reader */
static int resume_fd = -1;
static bool blocked;		/* the device is full: read nothing */
static char pend[4096];
static size_t pend_len;

/* Output side, shared with vCPU threads. */
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static int log_fd = -1;
static unsigned int nclients;
static unsigned long long dropped;

size_t term_filter(const char *buf, size_t len, char *out, int *pending,
		   int *quit)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		char c = buf[i];

		if (*pending) {
			*pending = 0;
			if (c == 'x' || c == 'X') {
				*quit = 1;
				return n;
			}
			if (c != CTRL_A && c != 'a')
				out[n++] = CTRL_A;
			out[n++] = c == 'a' ? CTRL_A : c;
			continue;
		}
		if (c == CTRL_A)
			*pending = 1;
		else
			out[n++] = c;
	}
	return n;
}

static void on_input(struct machine *m, int fd, void *opaque);

static void watch_one(struct machine *m, struct input *in, bool on)
{
	if (on == in->watched)
		return;
	if (on)
		in->watched = !machine_watch_fd(m, in->fd, on_input, in);
	else
		in->watched = machine_unwatch_fd(m, in->fd) != 0 && in->watched;
}

static void set_watch(struct machine *m, bool on)
{
	blocked = !on;
	for (struct input *in = inputs; in; in = in->next)
		watch_one(m, in, on);
}

static void remove_input(struct machine *m, struct input *in)
{
	watch_one(m, in, false);
	pthread_mutex_lock(&out_lock);
	for (struct input **p = &inputs; *p; p = &(*p)->next) {
		if (*p == in) {
			*p = in->next;
			break;
		}
	}
	if (in->client)
		nclients--;
	pthread_mutex_unlock(&out_lock);
	if (in == stdin_src)
		stdin_src = NULL;
	if (in->fd != STDIN_FILENO)
		close(in->fd);
	free(in);
}

static struct input *add_input(struct machine *m, int fd, bool client)
{
	struct input *in = calloc(1, sizeof(*in));

	if (!in)
		return NULL;
	in->fd = fd;
	in->client = client;
	pthread_mutex_lock(&out_lock);
	in->next = inputs;
	inputs = in;
	if (client)
		nclients++;
	pthread_mutex_unlock(&out_lock);
	if (!blocked)
		watch_one(m, in, true);
	return in;
}

/* Offers the pending bytes to the console; reads more only when empty. */
static void flush_pending(struct machine *m)
{
	size_t n = pend_len;

	if (pend_len && m->console_in)
		n = m->console_in(m, pend, pend_len, m->console_in_opaque);
	if (n > pend_len)
		n = pend_len;
	memmove(pend, pend + n, pend_len - n);
	pend_len -= n;
	set_watch(m, pend_len == 0);
}

static void on_input(struct machine *m, int fd, void *opaque)
{
	struct input *in = opaque;
	char buf[sizeof(pend)];
	ssize_t n = read(fd, buf, sizeof(buf) - pend_len);
	int quit = 0;

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		/* End of input: the guest keeps running without it. */
		remove_input(m, in);
		return;
	}
	if (is_tty && !in->client) {
		pend_len += term_filter(buf, (size_t)n, pend + pend_len,
					&pending_escape, &quit);
	} else {
		memcpy(pend + pend_len, buf, (size_t)n);
		pend_len += (size_t)n;
	}
	flush_pending(m);
	if (quit) {
		term_restore();
		machine_stop(m, LKVM_EXIT_OK);
	}
}

static void on_resume(struct machine *m, int fd, void *opaque)
{
	uint64_t v;

	(void)opaque;
	if (read(fd, &v, sizeof(v)) < 0)
		(void)0;	/* spurious wake-up */
	flush_pending(m);
}

void machine_console_write(struct machine *m, const void *buf, size_t len)
{
	pthread_mutex_lock(&out_lock);
	/* A closed or broken stdout loses the console output, no more. */
	if (!m->cfg.detach)
		(void)write_all(STDOUT_FILENO, buf, len);
	if (log_fd >= 0)
		(void)write_all(log_fd, buf, len);
	for (struct input *in = nclients ? inputs : NULL; in; in = in->next) {
		ssize_t n;

		if (!in->client)
			continue;
		n = send(in->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < (ssize_t)len)
			dropped += len - (size_t)(n > 0 ? n : 0);
	}
	pthread_mutex_unlock(&out_lock);
}

unsigned long long term_dropped(void)
{
	unsigned long long n;

	pthread_mutex_lock(&out_lock);
	n = dropped;
	pthread_mutex_unlock(&out_lock);
	return n;
}

void machine_console_resume(struct machine *m)
{
	uint64_t one = 1;

	(void)m;
	if (resume_fd >= 0 && write(resume_fd, &one, sizeof(one)) < 0)
		(void)0;	/* already signalled */
}

int term_open_log(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND |
				    O_CLOEXEC, 0644);

	if (fd < 0) {
		int err = -errno;

		pr_err("--console-log '%s': %s", path, strerror(errno));
		return err;
	}
	pthread_mutex_lock(&out_lock);
	if (log_fd >= 0)
		close(log_fd);
	log_fd = fd;
	pthread_mutex_unlock(&out_lock);
	return 0;
}

int term_dup_log(void)
{
	return log_fd >= 0 ? fcntl(log_fd, F_DUPFD_CLOEXEC, 0) : -1;
}

int term_attach_client(struct machine *m, int fd, const void *initial,
		       size_t len)
{
	int fl = fcntl(fd, F_GETFL);

	if (nclients >= MAX_CLIENTS || fl < 0 ||
	    fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
	    !add_input(m, fd, true)) {
		close(fd);
		return nclients >= MAX_CLIENTS ? -EMFILE : -ENOMEM;
	}
	if (len) {
		len = MIN(len, sizeof(pend) - pend_len);
		memcpy(pend + pend_len, initial, len);
		pend_len += len;
		flush_pending(m);
	}
	return 0;
}

/*
 * epoll refuses regular files: a thread copies such a stdin into a pipe,
 * which the main loop watches like any stream. The pipe's size bounds
 * what is read ahead.
 */
static void *reader_thread(void *arg)
{
	int out = (int)(intptr_t)arg;
	char buf[4096];

	for (;;) {
		ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || write_all(out, buf, (size_t)n))
			break;
	}
	close(out);
	return NULL;
}

static void start_stdin(struct machine *m)
{
	int p[2];
	pthread_t t;

	is_tty = isatty(STDIN_FILENO);
	if (is_tty && tcgetattr(STDIN_FILENO, &saved) == 0) {
		struct termios tio = saved;

		cfmakeraw(&tio);
		/* Keep output post-processing so lkvm's own messages stay
		 * readable; guests print "\r\n" anyway. */
		tio.c_oflag |= OPOST | ONLCR;
		if (tcsetattr(STDIN_FILENO, TCSANOW, &tio) == 0)
			raw = true;
	}
	stdin_src = add_input(m, STDIN_FILENO, false);
	if (!stdin_src || stdin_src->watched)
		return;
	remove_input(m, stdin_src);
	if (fcntl(STDIN_FILENO, F_GETFL) >= 0 && pipe2(p, O_CLOEXEC) == 0) {
		if (pthread_create(&t, NULL, reader_thread,
				   (void *)(intptr_t)p[1]) == 0) {
			pthread_detach(t);
			stdin_src = add_input(m, p[0], false);
		} else {
			close(p[0]);
			close(p[1]);
		}
	}
}

void term_start(struct machine *m)
{
	resume_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (resume_fd >= 0)
		machine_watch_fd(m, resume_fd, on_resume, NULL);
	/* Detached: stdin is not ours; input comes from clients. */
	if (!m->cfg.detach)
		start_stdin(m);
}

void term_stop(struct machine *m)
{
	while (inputs)
		remove_input(m, inputs);
	blocked = false;
	pend_len = 0;
	if (resume_fd >= 0) {
		machine_unwatch_fd(m, resume_fd);
		close(resume_fd);
		resume_fd = -1;
	}
	pthread_mutex_lock(&out_lock);
	if (log_fd >= 0)
		close(log_fd);
	log_fd = -1;
	pthread_mutex_unlock(&out_lock);
	term_restore();
}

void term_restore(void)
{
	if (raw) {
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
		raw = false;
	}
}
