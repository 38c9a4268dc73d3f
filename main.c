// SPDX-License-Identifier: GPL-2.0
/* lkvm: command dispatch. */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lkvm/builtin.h"
#include "lkvm/options.h"

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

/*
 * A line of hand-written help that describes options ("  -h, --help  show
 * this help", "  --all  every guest"): its names, one a line.
 */
static void list_help_line(const char *l)
{
	while (*l == ' ')
		l++;
	while (*l == '-') {
		size_t n = strcspn(l, " ,");

		printf("%.*s\n", (int)n, l);
		l += n;
		if (strncmp(l, ", ", 2))
			break;
		l += 2;
	}
}

/*
 * lkvm help --options [COMMAND]: the commands, or one command's options
 * ("--name ARG", "-s ARG") and subcommands (bare words), one a line.
 * Completion and the man page test read it; every option in a table
 * and every hand-written option or subcommand line of the help shows.
 */
static int help_options(const struct command *c)
{
	char *text = NULL, *line, *save = NULL;
	size_t len = 0;
	bool in_commands = false;
	FILE *f;

	if (!c) {
		for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]);
		     i++)
			printf("%s\n", commands[i].name);
		return 0;
	}
	f = open_memstream(&text, &len);
	if (!f) {
		perror("lkvm help");
		return 1;
	}
	options_listing = stdout;
	c->help(f);
	options_listing = NULL;
	fclose(f);
	for (line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		size_t ind = strspn(line, " ");

		if (ind == 0)
			in_commands = !strcmp(line, "commands:");
		else if (ind >= 2 && line[ind] == '-')
			list_help_line(line);
		else if (in_commands && ind == 2 && islower(line[ind]))
			printf("%.*s\n", (int)strcspn(line + ind, " "),
			       line + ind);
	}
	free(text);
	return 0;
}

static int cmd_help(int argc, char **argv)
{
	const struct command *c;

	if (argc >= 2 && !strcmp(argv[1], "--options")) {
		c = argc > 2 ? find_command(argv[2]) : NULL;
		if (argc > 3) {
			fprintf(stderr, "lkvm help: too many arguments\n");
			return 1;
		}
		if (argc > 2 && !c) {
			fprintf(stderr, "lkvm help: unknown command '%s'\n",
				argv[2]);
			return 1;
		}
		return help_options(c);
	}
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
