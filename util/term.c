// SPDX-License-Identifier: GPL-2.0
/*
 * The host terminal and console input.
 *
 * Input flows stdin -> (escape filter on a terminal) -> pending buffer ->
 * the console device. When the device takes less than it is offered,
 * stdin is no longer watched until the device calls
 * machine_console_resume(), so input is held back, never dropped, and
 * lkvm's memory stays bounded whatever the guest does.
 */
#include "lkvm/term.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <termios.h>
#include <unistd.h>

#include "lkvm/machine.h"
#include "lkvm/util.h"

#define CTRL_A 0x01

static struct termios saved;
static bool raw;
static bool is_tty;
static int pending_escape;
static int in_fd = -1;		/* stdin, or the pipe from the reader */
static int resume_fd = -1;
static bool watching;
static char pend[4096];
static size_t pend_len;

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

static void set_watch(struct machine *m, bool on)
{
	if (on == watching || in_fd < 0)
		return;
	if (on)
		watching = !machine_watch_fd(m, in_fd, on_input, NULL);
	else
		watching = machine_unwatch_fd(m, in_fd) != 0 && watching;
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
	char buf[sizeof(pend)];
	ssize_t n = read(fd, buf, sizeof(buf) - pend_len);
	int quit = 0;

	(void)opaque;
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		/* End of input: the guest keeps running without it. */
		set_watch(m, false);
		close(in_fd == STDIN_FILENO ? -1 : in_fd);
		in_fd = -1;
		return;
	}
	if (is_tty) {
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
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

	(void)m;
	pthread_mutex_lock(&lock);
	/* A closed or broken stdout loses the console output, no more. */
	(void)write_all(STDOUT_FILENO, buf, len);
	pthread_mutex_unlock(&lock);
}

void machine_console_resume(struct machine *m)
{
	uint64_t one = 1;

	(void)m;
	if (resume_fd >= 0 && write(resume_fd, &one, sizeof(one)) < 0)
		(void)0;	/* already signalled */
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

void term_start(struct machine *m)
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
	resume_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (resume_fd >= 0)
		machine_watch_fd(m, resume_fd, on_resume, NULL);
	in_fd = STDIN_FILENO;
	set_watch(m, true);
	if (!watching && fcntl(STDIN_FILENO, F_GETFL) >= 0 &&
	    pipe2(p, O_CLOEXEC) == 0) {
		if (pthread_create(&t, NULL, reader_thread,
				   (void *)(intptr_t)p[1]) == 0) {
			pthread_detach(t);
			in_fd = p[0];
			set_watch(m, true);
		} else {
			close(p[0]);
			close(p[1]);
			in_fd = -1;
		}
	}
}

void term_stop(struct machine *m)
{
	set_watch(m, false);
	if (resume_fd >= 0) {
		machine_unwatch_fd(m, resume_fd);
		close(resume_fd);
		resume_fd = -1;
	}
	term_restore();
}

void term_restore(void)
{
	if (raw) {
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
		raw = false;
	}
}
