// SPDX-License-Identifier: GPL-2.0
/*
 * guest/init (PID 1 of `lkvm sandbox`) on the host: its logic with the
 * mounts and the exit port stubbed, and then with real fork/exec/wait so
 * that real commands run and their statuses come back as the guest would
 * report them.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../guest/init-core.c"
#include "tap.h"

static char mounted[8][32];
static int nmounts, reported, nreports, nlogs, mount_err;
static char spawned[8][64];
static int nspawned, fake_status;
static pid_t fake_pid = 4242;
static bool real;

static int t_mount(const char *src, const char *target, const char *type,
		   unsigned long flags, const char *data)
{
	(void)src;
	(void)flags;
	(void)data;
	if (nmounts < 8)
		snprintf(mounted[nmounts++], 32, "%s:%s", type, target);
	return mount_err;
}

static pid_t t_spawn(char *const argv[])
{
	pid_t pid;

	nspawned = 0;
	for (int i = 0; argv[i] && i < 8; i++)
		snprintf(spawned[nspawned++], 64, "%s", argv[i]);
	if (!real)
		return fake_pid;
	pid = fork();
	if (pid == 0) {
		execvp(argv[0], argv);
		_exit(INIT_STATUS_MAX);
	}
	return pid < 0 ? -errno : pid;
}

static int orphans;

static pid_t t_wait(int *st)
{
	pid_t p;

	if (!real) {
		/* Two orphans end first: init must keep waiting. */
		if (orphans-- > 0) {
			*st = 0;
			return 9999;
		}
		*st = fake_status;
		return fake_pid;
	}
	p = waitpid(-1, st, 0);
	return p < 0 ? -errno : p;
}

static void t_report(int status)
{
	reported = status;
	nreports++;
}

static void t_log(const char *msg)
{
	printf("# %s\n", msg);
	nlogs++;
}

static const struct init_ops ops = {
	.mount = t_mount, .spawn = t_spawn, .wait = t_wait,
	.report = t_report, .log = t_log,
};

static void reset(void)
{
	nmounts = nreports = nlogs = nspawned = mount_err = 0;
	reported = -1;
	orphans = 0;
}

/* Hex-encodes s into out (as builtin-sandbox.c does). */
static const char *hex(const char *s, char *out)
{
	char *p = out;

	for (; *s; s++)
		p += sprintf(p, "%02x", (unsigned char)*s);
	*p = 0;
	return out;
}

static int run(int argc, char **argv)
{
	return init_run(&ops, argc, argv);
}

int main(void)
{
	char h[4][256], out[64];

	reset();
	{
		char *argv[] = { "/init", "ro", INIT_MARKER, (char *)hex("sh", h[0]),
				 (char *)hex("-c", h[1]),
				 (char *)hex("echo 'a b' \"c\"; exit 3", h[2]) };

		fake_status = 3 << 8;	/* exited with 3 */
		orphans = 2;
		CHECK(run(6, argv) == 3 && reported == 3 && nreports == 1,
		      "init: the command's exit status is reported once");
		CHECK(nspawned == 3 && !strcmp(spawned[0], "sh") &&
		      !strcmp(spawned[2], "echo 'a b' \"c\"; exit 3"),
		      "init: hex words decode to the exact arguments");
		CHECK(nmounts == 4 && !strcmp(mounted[0], "proc:/proc") &&
		      !strcmp(mounted[1], "sysfs:/sys") &&
		      !strcmp(mounted[2], "devtmpfs:/dev") &&
		      !strcmp(mounted[3], "tmpfs:/tmp"),
		      "init: mounts proc, sys, dev and tmp before the command");
		CHECK(orphans < 0, "init: reaps orphans until the command ends");
	}
	reset();
	{
		char *argv[] = { "/init", INIT_MARKER, (char *)hex("x", h[0]) };

		fake_status = SIGKILL;	/* killed by signal 9 */
		CHECK(run(3, argv) == INIT_STATUS_MAX && reported == INIT_STATUS_MAX,
		      "init: a command killed by a signal reports 126 (128+N does not fit)");
	}
	reset();
	{
		char *argv[] = { "/init", INIT_MARKER, (char *)hex("x", h[0]) };

		mount_err = -ENOENT;
		fake_status = 0;
		CHECK(run(3, argv) == 0 && reported == 0 && nlogs == 4,
		      "init: a failed mount is logged, the command still runs");
	}
	reset();
	{
		char *argv[] = { "/init", "quiet" };

		CHECK(run(2, argv) == INIT_STATUS_MAX && reported == INIT_STATUS_MAX && nspawned == 0,
		      "init: no command: 126, nothing run");
	}
	reset();
	{
		char *argv[] = { "/init", INIT_MARKER, "zz" };

		CHECK(run(3, argv) == INIT_STATUS_MAX && nspawned == 0 && nmounts == 0,
		      "init: a word that is not hex is refused");
		CHECK(init_unhex("610", out, sizeof(out)) < 0 &&
		      init_unhex("0061", out, sizeof(out)) < 0 &&
		      init_unhex("41", out, 2) == 0 && !strcmp(out, "A") &&
		      init_unhex("4142", out, 2) < 0,
		      "init: odd lengths, NUL bytes and overlong words are refused");
	}

	/* Real commands, mounts stubbed. */
	real = true;
	reset();
	{
		char *argv[] = { "/init", INIT_MARKER, (char *)hex("sh", h[0]),
				 (char *)hex("-c", h[1]),
				 (char *)hex("(sleep 0 &) ; exit 42", h[2]) };

		CHECK(run(5, argv) == 42 && reported == 42,
		      "init: a real shell's exit status 42 comes back");
	}
	reset();
	{
		char *argv[] = { "/init", INIT_MARKER, (char *)hex("true", h[0]) };

		CHECK(run(3, argv) == 0 && reported == 0, "init: true reports 0");
	}
	reset();
	{
		char *argv[] = { "/init", INIT_MARKER,
				 (char *)hex("/nonexistent/cmd", h[0]) };

		CHECK(run(3, argv) == INIT_STATUS_MAX && reported == INIT_STATUS_MAX,
		      "init: a command that cannot run reports 126");
	}
	reset();
	{
		char *argv[] = { "/init", INIT_MARKER, (char *)hex("sh", h[0]),
				 (char *)hex("-c", h[1]),
				 (char *)hex("kill -TERM $$", h[2]) };

		CHECK(run(5, argv) == INIT_STATUS_MAX && reported == INIT_STATUS_MAX,
		      "init: a real command killed by SIGTERM reports 126");
	}
	return tap_done();
}
