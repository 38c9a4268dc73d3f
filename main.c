// SPDX-License-Identifier: GPL-2.0
/* lkvm: command dispatch. */
#include <stdio.h>
#include <string.h>

#include "lkvm/builtin.h"

#ifndef LKVM_VERSION
#define LKVM_VERSION "unknown"
#endif

static int cmd_help(int argc, char **argv);
static void help_help(FILE *f);
static int cmd_version(int argc, char **argv);
static void help_version(FILE *f);

static const struct command commands[] = {
	{ "run", "boot a guest", cmd_run, help_run },
	{ "list", "list running guests", cmd_list, help_list },
	{ "pause", "pause a guest's vCPUs", cmd_pause, help_pause },
	{ "resume", "resume a paused guest", cmd_resume, help_resume },
	{ "stop", "stop a guest, flushing its devices", cmd_stop, help_stop },
	{ "stat", "show a guest's statistics", cmd_stat, help_stat },
	{ "debug", "registers, memory, page walks, core dumps", cmd_debug,
	  help_debug },
	{ "console", "attach to a guest's console", cmd_console,
	  help_console },
	{ "wait", "wait for a guest to end, exit with its status", cmd_wait,
	  help_wait },
	{ "introspect", "look at a guest through KVMI", cmd_introspect,
	  help_introspect },
	{ "sandbox", "run one command in a guest on the host's root over 9p",
	  cmd_sandbox, help_sandbox },
	{ "balloon", "inflate or deflate a guest's memory balloon",
	  cmd_balloon, help_balloon },
	{ "help", "show help for lkvm or one command", cmd_help, help_help },
	{ "version", "print lkvm's version", cmd_version, help_version },
};

const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	return NULL;
}

void print_commands(FILE *f)
{
	fprintf(f, "usage: lkvm COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name,
			commands[i].summary);
	fprintf(f, "\n'lkvm help COMMAND' shows a command's options.\n");
}

static void help_help(FILE *f)
{
	fprintf(f, "usage: lkvm help [COMMAND]\n\n"
		   "Shows the commands, or the options of one command.\n");
}

static int cmd_help(int argc, char **argv)
{
	const struct command *c;

	if (argc < 2) {
		print_commands(stdout);
		return 0;
	}
	if (argc > 2) {
		fprintf(stderr, "lkvm help: too many arguments\n");
		help_help(stderr);
		return 1;
	}
	c = find_command(argv[1]);
	if (!c) {
		fprintf(stderr, "lkvm help: unknown command '%s'\n", argv[1]);
		print_commands(stderr);
		return 1;
	}
	c->help(stdout);
	return 0;
}

static void help_version(FILE *f)
{
	fprintf(f, "usage: lkvm version\n\nPrints lkvm's version.\n");
}

static int cmd_version(int argc, char **argv)
{
	(void)argv;
	if (argc > 1) {
		fprintf(stderr, "lkvm version: takes no arguments\n");
		return 1;
	}
	printf("lkvm %s\n", LKVM_VERSION);
	return 0;
}

int main(int argc, char **argv)
{
	const struct command *c;

	if (argc < 2) {
		print_commands(stderr);
		return 1;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
		return cmd_help(argc - 1, argv + 1);
	if (!strcmp(argv[1], "--version"))
		return cmd_version(1, argv + 1);
	c = find_command(argv[1]);
	if (!c) {
		fprintf(stderr, "lkvm: unknown command '%s'\n", argv[1]);
		print_commands(stderr);
		return 1;
	}
	return c->run(argc - 1, argv + 1);
}
