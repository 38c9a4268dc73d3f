/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A minimal TAP producer for the C unit tests. Each CHECK is one TAP
 * line; tests/run counts them. A test program ends with tap_done().
 */
#ifndef LKVM_TAP_H
#define LKVM_TAP_H

#include <stdio.h>
#include <stdlib.h>

static int tap_n, tap_failed;

static inline void tap_result(int ok, const char *file, int line,
			      const char *what)
{
	tap_n++;
	if (!ok)
		tap_failed++;
	printf("%sok %d - %s%s", ok ? "" : "not ", tap_n, what,
	       ok ? "\n" : "");
	if (!ok)
		printf(" (%s:%d)\n", file, line);
	fflush(stdout);
}

#define CHECK(cond, what) tap_result(!!(cond), __FILE__, __LINE__, what)

static inline int tap_done(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

#endif
