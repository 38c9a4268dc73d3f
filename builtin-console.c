// SPDX-License-Identifier: GPL-2.0
/* lkvm console: attach to a guest's console (docs/control.md). */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include "lkvm/builtin.h"
#include "lkvm/control.h"
#include "lkvm/term.h"
#include "lkvm/util.h"

void help_console(FILE *f)
{
	fprintf(f, "usage: lkvm console NAME\n\n"
		   "Attaches to the guest's console: what the guest prints from now on\n"
		   "goes to stdout, stdin goes to the guest. Ctrl-A x detaches and\n"
		   "leaves the guest running (Ctrl-A a sends a Ctrl-A), from a terminal\n"
		   "or a pipe alike. At the end of stdin the output keeps coming until\n"
		   "the guest ends or Ctrl-A x; several clients may attach at once.\n\n"
		   "Exit status: 0 after Ctrl-A x, the end of the guest, or SIGINT/SIGTERM;\n"
		   "1 when the guest does not exist or cannot be reached.\n");
}

static struct termios saved;
static bool raw;

static void restore(void)
{
	if (raw)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
	raw = false;
}

static volatile sig_atomic_t quit_signal;

static void on_signal(int sig)
{
	quit_signal = sig;
}

/* Copies guest output to stdout and input to the guest until the end. */
static int relay(int fd)
{
	struct pollfd p[2] = {
		{ .fd = fd, .events = POLLIN },
		{ .fd = STDIN_FILENO, .events = POLLIN },
	};
	int pending = 0, quit = 0;
	char buf[4096], out[4096];

	while (!quit && !quit_signal) {
		int r = poll(p, 2, -1);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (p[0].revents) {
			ssize_t n = read(fd, buf, sizeof(buf));

			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n <= 0)
				break;	/* the guest has ended */
			if (write_all(STDOUT_FILENO, buf, (size_t)n))
				break;
		}
		if (p[1].revents) {
			ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
			size_t m;

			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n <= 0) {
				/* No more input; the output goes on. */
				p[1].fd = -1;
				continue;
			}
			m = term_filter(buf, (size_t)n, out, &pending, &quit);
			if (m && write_all(fd, out, m))
				break;
		}
	}
	return 0;
}

int cmd_console(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_signal };
	struct ctl_result r;
	struct ctl_conn c;
	char *pos[1] = { NULL };

	if (ctl_wants_help(argc, argv)) {
		help_console(stdout);
		return 0;
	}
	if (ctl_parse_args("console", argc, argv, NULL, 0, pos, 1) < 0)
		return 1;
	if (!pos[0]) {
		fprintf(stderr, "lkvm console: which guest? give a NAME\n");
		fprintf(stderr, "see 'lkvm help console'\n");
		return 1;
	}
	if (ctl_open(pos[0], &c))
		return 1;
	if (ctl_call(&c, CTL_CONSOLE, NULL, 0, &r)) {
		ctl_close(&c);
		return 1;
	}
	ctl_result_free(&r);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0) {
		struct termios t = saved;

		cfmakeraw(&t);
		t.c_oflag |= OPOST | ONLCR;
		raw = tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0;
		fprintf(stderr, "lkvm: attached to '%s'; Ctrl-A x detaches\r\n",
			c.name);
	}
	relay(c.fd);
	restore();
	ctl_close(&c);
	return 0;
}
