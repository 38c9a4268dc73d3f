/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The host terminal: stdin feeds the guest console, in raw mode when it is
 * a terminal (where Ctrl-A x quits and Ctrl-A Ctrl-A sends a Ctrl-A, as in
 * kvmtool); a pipe or file is passed through byte for byte.
 */
#ifndef LKVM_TERM_H
#define LKVM_TERM_H

#include <stddef.h>

struct machine;

void term_start(struct machine *m);
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

#endif
