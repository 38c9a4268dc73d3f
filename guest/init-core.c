// SPDX-License-Identifier: GPL-2.0
/* guest/init's logic (see init.h): no system call but through ops. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>

#include "init.h"
#include "lkvm/util.h"

int init_unhex(const char *hex, char *out, size_t outlen)
{
	size_t n = strlen(hex);

	if (n % 2 || n / 2 >= outlen)
		return -1;
	for (size_t i = 0; i < n; i += 2) {
		int hi = hex_digit(hex[i]), lo = hex_digit(hex[i + 1]);

		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
			return -1;
		out[i / 2] = (char)(hi << 4 | lo);
	}
	out[n / 2] = 0;
	return 0;
}

/* What a shell needs; a failure is reported, not fatal. */
static void mount_all(const struct init_ops *ops)
{
	static const struct {
		const char *src, *target, *type;
		unsigned long flags;
		const char *data;
	} m[] = {
		{ "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL },
		{ "sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL },
		{ "devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755" },
		{ "tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777" },
	};
	char msg[160];

	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		int err = ops->mount(m[i].src, m[i].target, m[i].type,
				     m[i].flags, m[i].data);

		if (err && err != -EBUSY) {
			snprintf(msg, sizeof(msg), "init: mount %s on %s: %s",
				 m[i].type, m[i].target, strerror(-err));
			ops->log(msg);
		}
	}
}

static int finish(const struct init_ops *ops, int status)
{
	if (status > INIT_STATUS_MAX)
		status = INIT_STATUS_MAX;
	ops->report(status);
	return status;
}

int init_run(const struct init_ops *ops, int argc, char **argv)
{
	static char buf[INIT_MAX_ARGS][4096];
	char *cmd[INIT_MAX_ARGS + 1];
	char msg[160];
	int first = -1, n = 0, st;
	pid_t pid, got;

	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], INIT_MARKER)) {
			first = i + 1;
			break;
		}
	if (first < 0 || first >= argc) {
		ops->log("init: no command (expected '" INIT_MARKER " HEX...' "
			 "on the kernel command line)");
		return finish(ops, INIT_STATUS_MAX);
	}
	for (int i = first; i < argc; i++) {
		if (n == INIT_MAX_ARGS ||
		    init_unhex(argv[i], buf[n], sizeof(buf[n]))) {
			snprintf(msg, sizeof(msg),
				 "init: argument %d is not a hex-encoded word",
				 i - first + 1);
			ops->log(msg);
			return finish(ops, INIT_STATUS_MAX);
		}
		cmd[n] = buf[n];
		n++;
	}
	cmd[n] = NULL;
	mount_all(ops);
	pid = ops->spawn(cmd);
	if (pid < 0) {
		snprintf(msg, sizeof(msg), "init: %s: %s", cmd[0],
			 strerror((int)-pid));
		ops->log(msg);
		return finish(ops, INIT_STATUS_MAX);
	}
	/* PID 1 reaps every orphan until the command itself ends. */
	for (;;) {
		got = ops->wait(&st);
		if (got == pid)
			break;
		if (got < 0 && got != -EINTR) {
			ops->log("init: lost the command's child");
			return finish(ops, INIT_STATUS_MAX);
		}
	}
	if (WIFEXITED(st))
		return finish(ops, WEXITSTATUS(st));
	return finish(ops, 128 + WTERMSIG(st));
}
