/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The host terminal: stdin feeds the guest console, in raw mode when it is
 * a terminal (where Ctrl-A x quits and Ctrl-A Ctrl-A sends a Ctrl-A, as in
 * kvmtool); a pipe or file is passed through byte for byte.
 *
 * Beside the terminal, the console has attached clients (`lkvm console`,
 * through the control socket) and an optional log file (--console-log):
 * what the guest prints goes to all of them (machine_console_write()),
 * and what any client sends is console input. A detached lkvm (--detach)
 * has no terminal: only clients and the log.
 */
#ifndef LKVM_TERM_H
#define LKVM_TERM_H

#include <stddef.h>

struct machine;

void term_start(struct machine *m);
/* Also closes the attached clients: the console has ended. */
void term_stop(struct machine *m);
/* Puts the terminal back as it was; safe to call more than once. */
void term_restore(void);

/*
 * Escape processing for terminal input: copies buf to out without the
 * escape sequences and returns the output length; *quit is set when
 * Ctrl-A x was seen. *pending carries a Ctrl-A across calls.
 */
size_t term_filter(const char *buf, size_t len, char *out, int *pending,
		   int *quit);

/*
 * --console-log FILE: created or truncated, mode 0644 less the umask.
 * Returns 0, or -errno after printing why.
 */
int term_open_log(const char *path);
/* A new descriptor (close-on-exec) for the console log, or -1. */
int term_dup_log(void);

/*
 * Attaches a console client (main thread): fd is a connected stream that
 * the terminal now owns. initial holds bytes of input already read from
 * it. A client that stops reading loses output rather than stall the
 * guest. Returns 0 or -errno (fd closed).
 */
int term_attach_client(struct machine *m, int fd, const void *initial,
		       size_t len);
/* Output bytes dropped for clients too slow to take them. */
unsigned long long term_dropped(void);

#endif
