/* SPDX-License-Identifier: GPL-2.0 */
/*
 * guest/init: PID 1 of `lkvm sandbox` (builtin-sandbox.c). The logic is
 * in init-core.c and reaches the system only through struct init_ops, so
 * that tests/unit/test-init.c runs it on the host with the mounts and
 * the exit port stubbed.
 *
 * The command arrives on the kernel command line after "--" as
 *   lkvm-cmd HEX HEX ...
 * one hex-encoded argument per word (so that spaces, quotes and any byte
 * but NUL survive the kernel's parsing); words before the marker are the
 * kernel's leftovers and are ignored.
 */
#ifndef LKVM_GUEST_INIT_H
#define LKVM_GUEST_INIT_H

#include <stddef.h>
#include <sys/types.h>

#define INIT_MARKER "lkvm-cmd"
#define INIT_MAX_ARGS 256
/*
 * The status reported: 0..125 as they are; 126 for 126 and above, a
 * command killed by a signal, or one that could not run. The debug-exit
 * port carries status + 1 (lkvm run then exits ((status + 1) << 1) | 1,
 * which never collides with lkvm's own exit statuses 0 and 1), and it
 * carries 7 bits.
 */
#define INIT_STATUS_MAX 126

struct init_ops {
	int (*mount)(const char *src, const char *target, const char *type,
		     unsigned long flags, const char *data);
	/* Starts argv (execvp in a child); the child's pid or -errno. */
	pid_t (*spawn)(char *const argv[]);
	/* Waits for any child, as waitpid(-1, status, 0). */
	pid_t (*wait)(int *status);
	/* Hands the command's status to the host; does not return there. */
	void (*report)(int status);
	void (*log)(const char *msg);
};

/* Decodes one hex word into out (outlen bytes, NUL-terminated): 0 or -1. */
int init_unhex(const char *hex, char *out, size_t outlen);
/* Mounts, runs the command, reports its status; returns that status. */
int init_run(const struct init_ops *ops, int argc, char **argv);

#endif
