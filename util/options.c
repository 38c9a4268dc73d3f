// SPDX-License-Identifier: GPL-2.0
/* The option parser: kvmtool's spelling (-k FILE, --kernel FILE,
 * --kernel=FILE), values written into the caller's structures. */
#include "lkvm/options.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "lkvm/util.h"

static int fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

static const struct option *find(const struct option_group *g, unsigned n,
				 const char *name, size_t len, char s,
				 void **base)
{
	for (unsigned int i = 0; i < n; i++) {
		for (const struct option *o = g[i].opts; o->type != OPT_END;
		     o++) {
			if (s ? o->short_name == s :
				(strlen(o->name) == len &&
				 !strncmp(o->name, name, len))) {
				*base = g[i].base;
				return o;
			}
		}
	}
	return NULL;
}

static int apply(const struct option *o, const char *arg, void *base,
		 char *err, size_t errlen)
{
	void *field = (char *)base + o->offset;
	uint64_t v;

	switch (o->type) {
	case OPT_BOOL:
		*(bool *)field = true;
		return 0;
	case OPT_STRING:
		if (!*arg)
			return fail(err, errlen, "--%s: empty argument",
				    o->name);
		*(const char **)field = arg;
		return 0;
	case OPT_UINT:
		if (!parse_uint(arg, o->min, o->max, &v))
			return fail(err, errlen,
				    "--%s: '%s' is not a number from %llu to %llu",
				    o->name, arg, (unsigned long long)o->min,
				    (unsigned long long)o->max);
		*(unsigned int *)field = (unsigned int)v;
		return 0;
	case OPT_SIZE:
		if (!parse_size(arg, MIB, &v))
			return fail(err, errlen,
				    "--%s: '%s' is not a size (MiB, or a number with K, M, G or T)",
				    o->name, arg);
		if (v < o->min || (o->max && v > o->max))
			return fail(err, errlen,
				    "--%s: %s is out of range (%llu MiB to %llu MiB)",
				    o->name, arg,
				    (unsigned long long)(o->min >> 20),
				    (unsigned long long)(o->max >> 20));
		*(uint64_t *)field = v;
		return 0;
	case OPT_LIST: {
		struct opt_list *l = field;

		if (!*arg)
			return fail(err, errlen, "--%s: empty argument",
				    o->name);
		if (l->n >= OPT_LIST_MAX)
			return fail(err, errlen, "--%s: at most %d allowed",
				    o->name, OPT_LIST_MAX);
		l->v[l->n++] = arg;
		return 0;
	}
	case OPT_CALLBACK:
		return o->fn(o, arg, base, err, errlen);
	case OPT_END:
		break;
	}
	return fail(err, errlen, "--%s: bad option table", o->name);
}

static bool takes_arg(const struct option *o)
{
	return o->type != OPT_BOOL && !(o->type == OPT_CALLBACK && !o->argname);
}

int parse_options(const struct option_group *g, unsigned int ng, int argc,
		  char **argv, char *err, size_t errlen)
{
	int i;

	for (i = 0; i < argc; i++) {
		const char *a = argv[i], *val = NULL;
		const struct option *o;
		void *base;

		if (!strcmp(a, "--"))
			return i + 1;
		if (a[0] != '-' || !a[1])
			return i;
		if (a[1] == '-') {
			const char *eq = strchr(a + 2, '=');
			size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);

			o = find(g, ng, a + 2, len, 0, &base);
			if (!o)
				return fail(err, errlen, "unknown option '%.*s'",
					    (int)len + 2, a);
			if (eq)
				val = eq + 1;
			if (eq && !takes_arg(o))
				return fail(err, errlen,
					    "--%s takes no argument", o->name);
		} else {
			o = find(g, ng, NULL, 0, a[1], &base);
			if (!o)
				return fail(err, errlen, "unknown option '-%c'",
					    a[1]);
			if (a[2]) {
				if (!takes_arg(o))
					return fail(err, errlen,
						    "-%c takes no argument",
						    a[1]);
				val = a + 2;
			}
		}
		if (takes_arg(o) && !val) {
			if (i + 1 >= argc)
				return fail(err, errlen,
					    "--%s needs an argument (%s)",
					    o->name, o->argname ? o->argname :
								  "VALUE");
			val = argv[++i];
		}
		if (apply(o, val ? val : "", base, err, errlen))
			return -1;
	}
	return i;
}

FILE *options_listing;

/* "--name ARG" and "-s ARG", one a line: what completion and the man
 * page test read (lkvm help --options COMMAND). */
static void list_option(const struct option *o)
{
	const char *arg = takes_arg(o) ? (o->argname ? o->argname : "VALUE") :
					 NULL;

	fprintf(options_listing, "--%s%s%s\n", o->name, arg ? " " : "",
		arg ? arg : "");
	if (o->short_name)
		fprintf(options_listing, "-%c%s%s\n", o->short_name,
			arg ? " " : "", arg ? arg : "");
}

void print_options(FILE *f, const struct option_group *g, unsigned int ng)
{
	for (unsigned int i = 0; i < ng; i++) {
		if (!g[i].title)
			continue;
		if (options_listing) {
			for (const struct option *o = g[i].opts;
			     o->type != OPT_END; o++)
				if (o->help)	/* not the hidden ones */
					list_option(o);
			continue;
		}
		fprintf(f, "\n%s:\n", g[i].title);
		for (const struct option *o = g[i].opts; o->type != OPT_END;
		     o++) {
			char left[64];

			if (!o->help)
				continue;	/* hidden: for tests */
			snprintf(left, sizeof(left), "%c%c%s--%s%s%s",
				 o->short_name ? '-' : ' ',
				 o->short_name ? o->short_name : ' ',
				 o->short_name ? ", " : "  ", o->name,
				 takes_arg(o) ? " " : "",
				 takes_arg(o) ? (o->argname ? o->argname :
							      "VALUE") :
						"");
			fprintf(f, "  %-28s %s\n", left, o->help);
		}
	}
}
