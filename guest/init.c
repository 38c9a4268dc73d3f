// SPDX-License-Identifier: GPL-2.0
/*
 * guest/init, PID 1 of `lkvm sandbox`: built static (make builds
 * build/guest/init) and started by the guest kernel from the host's root
 * shared over 9p. See init.h and docs/9p.md.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/wait.h>
#include <unistd.h>

#include "init.h"

#define DEBUG_EXIT_PORT 0xf4

static int do_mount(const char *src, const char *target, const char *type,
		    unsigned long flags, const char *data)
{
	return mount(src, target, type, flags, data) ? -errno : 0;
}

static pid_t do_spawn(char *const argv[])
{
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		setsid();
		execvp(argv[0], argv);
		fprintf(stderr, "init: %s: %s\n", argv[0], strerror(errno));
		_exit(INIT_STATUS_MAX);
	}
	return pid;
}

static pid_t do_wait(int *status)
{
	pid_t p = waitpid(-1, status, 0);

	return p < 0 ? -errno : p;
}

/* lkvm's debug-exit port gets status + 1 (init.h); sandbox exits status. */
static void do_report(int status)
{
	sync();
	if (ioperm(DEBUG_EXIT_PORT, 1, 1) == 0)
		outb((unsigned char)(status + 1), DEBUG_EXIT_PORT);
	fprintf(stderr, "init: no debug-exit port (%s); powering off\n",
		strerror(errno));
	reboot(RB_POWER_OFF);
	for (;;)
		pause();
}

static void do_log(const char *msg)
{
	fprintf(stderr, "%s\n", msg);
}

int main(int argc, char **argv)
{
	static const struct init_ops ops = {
		.mount = do_mount,
		.spawn = do_spawn,
		.wait = do_wait,
		.report = do_report,
		.log = do_log,
	};

	if (getpid() != 1) {
		fprintf(stderr, "init: not PID 1: lkvm sandbox starts this "
				"as the guest's init\n");
		return 1;
	}
	if (!getenv("PATH"))
		setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:"
			       "/usr/bin:/sbin:/bin", 1);
	setenv("HOME", "/", 0);
	return init_run(&ops, argc, argv);
}
