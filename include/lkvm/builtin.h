/* SPDX-License-Identifier: GPL-2.0 */
/* The subcommands. Each lives in builtin-NAME.c. */
#ifndef LKVM_BUILTIN_H
#define LKVM_BUILTIN_H

#include <stdio.h>

struct command {
	const char *name;
	const char *summary;
	int (*run)(int argc, char **argv);	/* argv[0] is the name */
	void (*help)(FILE *f);
};

int cmd_run(int argc, char **argv);
void help_run(FILE *f);

/* The table in main.c, for `lkvm help`. */
const struct command *find_command(const char *name);
void print_commands(FILE *f);

#endif
