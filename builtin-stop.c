// SPDX-License-Identifier: GPL-2.0
/* lkvm stop: end a guest, its devices flushed (docs/control.md). */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "lkvm/builtin.h"
#include "lkvm/control.h"
#include "lkvm/options.h"
#include "lkvm/util.h"

#define STOP_MS 60000		/* devices flushing their last writes */

struct stop_opts {
	bool all;
	bool wait;
};

static const struct option stop_options[] = {
	{ .name = "all", .type = OPT_BOOL,
	  .offset = offsetof(struct stop_opts, all),
	  .help = "every running guest" },
	{ .name = "wait", .type = OPT_BOOL,
	  .offset = offsetof(struct stop_opts, wait),
	  .help = "return once the guest's lkvm process is gone" },
	OPTION_END,
};

void help_stop(FILE *f)
{
	struct option_group g = { "options", stop_options, NULL };

	fprintf(f, "usage: lkvm stop NAME | --all [--wait]\n\n"
		   "Stops the guest as a power-off would: the vCPUs stop, every device's\n"
		   "exit hook runs (disks are flushed), the control socket is removed.\n"
		   "Returns then; with --wait, once the lkvm process has exited too.\n"
		   "'lkvm run' of a stopped guest exits with status 0.\n");
	print_options(f, &g, 1);
	fprintf(f, "\nExit status: 0 when every guest stopped, 1 when a guest does not\n"
		   "exist or cannot be reached, or did not stop within %d s.\n",
		STOP_MS / 1000);
}

/* Waits until pid has exited (a zombie counts as gone). */
static int wait_gone(pid_t pid, int timeout_ms)
{
	struct timespec t0, t;
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);

	if (fd >= 0) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r;

		do
			r = poll(&p, 1, timeout_ms);
		while (r < 0 && errno == EINTR);
		close(fd);
		return r > 0 ? 0 : -ETIMEDOUT;
	}
	if (errno == ESRCH)
		return 0;
	/* No pidfd (an old kernel): ask until it is gone. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (kill(pid, 0) == 0 || errno == EPERM) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((t.tv_sec - t0.tv_sec) * 1000 +
			    (t.tv_nsec - t0.tv_nsec) / 1000000 > timeout_ms)
			return -ETIMEDOUT;
		usleep(5000);
	}
	return 0;
}

int cmd_stop(int argc, char **argv)
{
	struct stop_opts o = { 0 };
	struct option_group g = { NULL, stop_options, &o };
	struct ctl_conn *conns;
	char *pos[1] = { NULL }, **names;
	size_t n;
	int failed = 0;

	if (ctl_wants_help(argc, argv)) {
		help_stop(stdout);
		return 0;
	}
	if (ctl_parse_args("stop", argc, argv, &g, 1, pos, 1) < 0)
		return 1;
	names = ctl_targets("stop", pos[0], o.all, &n);
	if (!names)
		return 1;
	conns = calloc(n + 1, sizeof(*conns));
	if (!conns) {
		ctl_free_names(names, n);
		pr_err("out of memory");
		return 1;
	}
	/* Ask them all first: the guests stop in parallel. */
	for (size_t i = 0; i < n; i++) {
		conns[i].fd = -1;
		if (ctl_open(names[i], &conns[i])) {
			failed = 1;
			continue;
		}
		if (ctl_send(&conns[i], CTL_STOP, NULL, 0, -1)) {
			pr_err("guest '%s': the connection was closed", names[i]);
			ctl_close(&conns[i]);
			failed = 1;
		}
	}
	for (size_t i = 0; i < n; i++) {
		struct ctl_result r;
		int err;

		if (conns[i].fd < 0)
			continue;
		err = ctl_recv(&conns[i], &r, STOP_MS);
		/* The answer comes once devices are flushed and the socket
		 * is gone; a closed connection without it means the lkvm
		 * ended meanwhile, which is a stop too. */
		if (err == -ETIMEDOUT) {
			pr_err("guest '%s' did not stop within %d s", names[i],
			       STOP_MS / 1000);
			failed = 1;
		} else if (!err && r.error) {
			pr_err("guest '%s': %s", names[i], r.body);
			failed = 1;
		} else if (err && err != -ECONNRESET) {
			pr_err("guest '%s': %s", names[i], strerror(-err));
			failed = 1;
		}
		if (!err)
			ctl_result_free(&r);
		ctl_close(&conns[i]);
		if (o.wait && conns[i].pid > 0 &&
		    wait_gone(conns[i].pid, STOP_MS)) {
			pr_err("guest '%s': its lkvm (pid %d) is still there after %d s",
			       names[i], (int)conns[i].pid, STOP_MS / 1000);
			failed = 1;
		}
	}
	free(conns);
	ctl_free_names(names, n);
	return failed;
}
