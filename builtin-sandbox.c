// SPDX-License-Identifier: GPL-2.0
/*
 * lkvm sandbox [RUN-OPTIONS] [--rw] [--init PATH] [--dry-run] -- COMMAND
 * [ARGS]: runs one command in a guest whose root file system is the
 * host's root, shared over virtio-9p (read-only unless --rw), with
 * guest/init as PID 1. init mounts /proc, /sys, /dev and /tmp, runs the
 * command and writes its exit status V + 1 to the debug-exit port;
 * `lkvm run` then exits ((V + 1) << 1) | 1, which this command turns
 * back into V.
 *
 * The command travels on the kernel command line after "--", one
 * hex-encoded word per argument (guest/init.h), so that any argument
 * survives the kernel's word splitting.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lkvm/builtin.h"
#include "lkvm/machine.h"
#include "lkvm/util.h"
#include "guest/init.h"

#define ROOT_TAG "lkvm-root"
/* x86 Linux's COMMAND_LINE_SIZE. */
#define CMDLINE_MAX 2048
#define ARGV_MAX 512

void help_sandbox(FILE *f)
{
	fprintf(f,
		"usage: lkvm sandbox -k KERNEL [RUN-OPTIONS] [OPTIONS] -- COMMAND [ARGS...]\n\n"
		"Runs COMMAND in a guest whose root file system is the host's /,\n"
		"shared over virtio-9p read-only, with guest/init as PID 1; exits\n"
		"with COMMAND's exit status (0 to 125; 126 when the command could\n"
		"not run, was killed, or exited with 126 or more). KERNEL is a\n"
		"Linux kernel with virtio-pci, 9p over virtio, devtmpfs and the 8250\n"
		"console built in (see docs/9p.md). Every 'lkvm run' option is\n"
		"accepted; -p adds to the kernel command line.\n\n"
		"options:\n"
		"      --rw                     share the host's / writable\n"
		"      --init PATH              PID 1 (default: build/guest/init next to lkvm)\n"
		"      --dry-run                print the 'lkvm run' command line, do not run it\n");
}

/* guest/init beside this lkvm (the build tree), as an absolute path. */
static int default_init(char *out, size_t len)
{
	char exe[PATH_MAX], *slash;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n < 0)
		return -1;
	exe[n] = 0;
	slash = strrchr(exe, '/');
	if (!slash)
		return -1;
	*slash = 0;
	return snprintf(out, len, "%s/build/guest/init", exe) >= (int)len ?
		       -1 : 0;
}

/* Appends fmt to the command line; -1 when it would not fit. */
static int cat(char *buf, size_t *pos, const char *s)
{
	size_t n = strlen(s);

	if (*pos + n >= CMDLINE_MAX)
		return -1;
	memcpy(buf + *pos, s, n + 1);
	*pos += n;
	return 0;
}

static int cat_hex(char *buf, size_t *pos, const char *s)
{
	char h[3];

	if (!*s)
		return -2;	/* an empty argument has no hex word */
	for (; *s; s++) {
		snprintf(h, sizeof(h), "%02x", (unsigned char)*s);
		if (cat(buf, pos, h))
			return -1;
	}
	return 0;
}

static int usage_error(const char *what, const char *arg)
{
	fprintf(stderr, "lkvm sandbox: %s%s%s%s\n", what, arg ? " '" : "",
		arg ? arg : "", arg ? "'" : "");
	return LKVM_EXIT_ERROR;
}

int cmd_sandbox(int argc, char **argv)
{
	static char params[CMDLINE_MAX], share[PATH_MAX + 32];
	char init[PATH_MAX], real_init[PATH_MAX];
	const char *user_params = NULL, *init_arg = NULL;
	char *rargv[ARGV_MAX];
	bool rw = false, dry = false, kernel = false;
	int rargc = 0, dash = -1, status;
	size_t pos = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--")) {
			dash = i;
			break;
		}
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			help_sandbox(stdout);
			return 0;
		}
	}
	if (dash < 0 || dash + 1 >= argc)
		return usage_error("no command: use 'lkvm sandbox -k KERNEL -- COMMAND [ARGS]'",
				   NULL);
	rargv[rargc++] = "run";
	for (int i = 1; i < dash; i++) {
		const char *a = argv[i];

		if (rargc + 8 >= ARGV_MAX)
			return usage_error("too many options", NULL);
		if (!strcmp(a, "--rw")) {
			rw = true;
		} else if (!strcmp(a, "--dry-run")) {
			dry = true;
		} else if (!strcmp(a, "--init") || !strcmp(a, "-p") ||
			   !strcmp(a, "--params")) {
			if (i + 1 >= dash)
				return usage_error("missing value for", a);
			if (!strcmp(a, "--init"))
				init_arg = argv[++i];
			else
				user_params = argv[++i];
		} else if (!strncmp(a, "--params=", 9)) {
			user_params = a + 9;
		} else if (!strncmp(a, "--init=", 7)) {
			init_arg = a + 7;
		} else {
			if (!strcmp(a, "-k") || !strcmp(a, "--kernel") ||
			    !strncmp(a, "--kernel=", 9))
				kernel = true;
			rargv[rargc++] = argv[i];
		}
	}
	if (!kernel)
		return usage_error("--kernel is required: a Linux kernel with virtio-pci "
				   "and 9p (see docs/9p.md)", NULL);
	if (init_arg)
		snprintf(init, sizeof(init), "%s", init_arg);
	else if (default_init(init, sizeof(init)))
		return usage_error("cannot find guest/init; use --init PATH", NULL);
	/* The guest sees the host's /, so the host's absolute path works. */
	if (!realpath(init, real_init) || access(real_init, X_OK))
		return usage_error(strerror(errno), init);
	for (const char *c = real_init; *c; c++)
		if (*c <= ' ' || *c == '"' || *c > '~')
			return usage_error("the init path must be one printable word "
					   "on the kernel command line:", real_init);

	if ((user_params && (cat(params, &pos, user_params) ||
			     cat(params, &pos, " "))) ||
	    cat(params, &pos, "console=ttyS0 panic=-1 root=" ROOT_TAG
			      " rootfstype=9p rootflags=trans=virtio,"
			      "version=9p2000.L,msize=524288,cache=loose ") ||
	    cat(params, &pos, rw ? "rw" : "ro") ||
	    cat(params, &pos, " init=") || cat(params, &pos, real_init) ||
	    cat(params, &pos, " -- " INIT_MARKER))
		return usage_error("the kernel command line is too long", NULL);
	for (int i = dash + 1; i < argc; i++) {
		int e = cat(params, &pos, " ");

		if (!e)
			e = cat_hex(params, &pos, argv[i]);
		if (e == -2)
			return usage_error("empty arguments cannot be passed", NULL);
		if (e)
			return usage_error("the command does not fit the kernel command "
					   "line (2048 bytes)", NULL);
	}
	snprintf(share, sizeof(share), "/," ROOT_TAG "%s", rw ? "" : ",ro");
	rargv[rargc++] = "--9p";
	rargv[rargc++] = share;
	rargv[rargc++] = "-p";
	rargv[rargc++] = params;
	rargv[rargc] = NULL;

	if (dry) {
		printf("lkvm");
		for (int i = 0; i < rargc; i++)
			printf(" '%s'", rargv[i]);
		printf("\n");
		return 0;
	}
	status = cmd_run(rargc, rargv);
	/* init's report V + 1: run exits ((V + 1) << 1) | 1. */
	if (status & 1 && status >= 3)
		return (status >> 1) - 1;
	if (status == LKVM_EXIT_OK) {
		fprintf(stderr, "lkvm sandbox: the guest stopped without reporting "
				"the command's status\n");
		return LKVM_EXIT_ERROR;
	}
	return status;
}
