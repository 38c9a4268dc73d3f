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

/* Controlling running guests (docs/control.md). */
int cmd_list(int argc, char **argv);
void help_list(FILE *f);
int cmd_pause(int argc, char **argv);
void help_pause(FILE *f);
int cmd_resume(int argc, char **argv);
void help_resume(FILE *f);
int cmd_stop(int argc, char **argv);
void help_stop(FILE *f);
int cmd_stat(int argc, char **argv);
void help_stat(FILE *f);
int cmd_debug(int argc, char **argv);
void help_debug(FILE *f);
int cmd_console(int argc, char **argv);
void help_console(FILE *f);
int cmd_wait(int argc, char **argv);
void help_wait(FILE *f);

/* virtio-balloon (docs/balloon-vsock.md). */
int cmd_balloon(int argc, char **argv);
void help_balloon(FILE *f);

/* Introspection (docs/kvmi.md). */
int cmd_introspect(int argc, char **argv);
void help_introspect(FILE *f);

/* One command in a guest on the host's root over 9p (docs/9p.md). */
int cmd_sandbox(int argc, char **argv);
void help_sandbox(FILE *f);

/* The table in main.c, for `lkvm help`. */
const struct command *find_command(const char *name);
void print_commands(FILE *f);

#endif
