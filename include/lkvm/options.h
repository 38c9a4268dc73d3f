/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Command-line options. A table of options writes into a structure whose
 * address is given at parse time (each option names a field by offset),
 * so the core and every device can own their options and their values
 * without global variables.
 */
#ifndef LKVM_OPTIONS_H
#define LKVM_OPTIONS_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

enum opt_type {
	OPT_END,
	OPT_BOOL,	/* no argument; sets a bool */
	OPT_STRING,	/* const char * */
	OPT_UINT,	/* unsigned int, in [min, max] */
	OPT_SIZE,	/* uint64_t bytes; a bare number is in MiB */
	OPT_LIST,	/* appends to a struct opt_list */
	OPT_CALLBACK,	/* calls fn */
};

struct option;

/* Returns 0, or -1 after writing a message into err. */
typedef int (*opt_fn)(const struct option *o, const char *arg, void *base,
		      char *err, size_t errlen);

struct option {
	const char *name;	/* long name, without dashes */
	char short_name;	/* 0 for none */
	enum opt_type type;
	size_t offset;		/* field offset in the base structure */
	const char *argname;	/* for help: "FILE", "MIB"... */
	const char *help;
	uint64_t min, max;	/* OPT_UINT and OPT_SIZE bounds */
	opt_fn fn;		/* OPT_CALLBACK */
};

#define OPTION_END { .type = OPT_END }

#define OPT_LIST_MAX 32
struct opt_list {
	unsigned int n;
	const char *v[OPT_LIST_MAX];
};

/* A table and the structure its offsets point into. */
struct option_group {
	const char *title;	/* for help; NULL to hide */
	const struct option *opts;
	void *base;
};

/*
 * Parses argv[0..argc) against the groups. Stops at the first non-option
 * argument or after "--". Returns the index of the first argument not
 * consumed, or -1 with a one-line message in err.
 */
int parse_options(const struct option_group *groups, unsigned int ngroups,
		  int argc, char **argv, char *err, size_t errlen);

/* Prints the option tables as help text. */
void print_options(FILE *f, const struct option_group *groups,
		   unsigned int ngroups);

/*
 * When set, print_options() writes each option to this stream instead,
 * as "--name [ARG]" and "-s [ARG]" lines, and nothing to its own stream:
 * the machine-readable listing of `lkvm help --options COMMAND`.
 */
extern FILE *options_listing;

#endif
