// SPDX-License-Identifier: GPL-2.0
#include <stdbool.h>
#include <string.h>

#include "lkvm/options.h"
#include "lkvm/util.h"
#include "tap.h"

struct cfg {
	const char *kernel;
	uint64_t mem;
	unsigned int cpus;
	bool rng;
	struct opt_list disks;
};

#define F(x) offsetof(struct cfg, x)
static const struct option opts[] = {
	{ .name = "kernel", .short_name = 'k', .type = OPT_STRING,
	  .offset = F(kernel), .argname = "FILE", .help = "k" },
	{ .name = "mem", .short_name = 'm', .type = OPT_SIZE, .offset = F(mem),
	  .argname = "SIZE", .help = "m", .min = 2 << 20, .max = 1ull << 40 },
	{ .name = "cpus", .short_name = 'c', .type = OPT_UINT,
	  .offset = F(cpus), .argname = "N", .help = "c", .min = 1, .max = 64 },
	{ .name = "rng", .type = OPT_BOOL, .offset = F(rng), .help = "r" },
	{ .name = "disk", .short_name = 'd', .type = OPT_LIST,
	  .offset = F(disks), .argname = "P", .help = "d" },
	OPTION_END,
};

static int parse(struct cfg *c, char *err, int argc, char **argv)
{
	struct option_group g = { "t", opts, c };

	memset(c, 0, sizeof(*c));
	return parse_options(&g, 1, argc, argv, err, 256);
}

#define ARGS(...) (sizeof((char *[]){ __VA_ARGS__ }) / sizeof(char *)), \
		  (char *[]){ __VA_ARGS__ }

int main(void)
{
	struct cfg c;
	char err[256];
	uint64_t v;

	CHECK(parse(&c, err, ARGS("-k", "bz", "--mem=1G", "-c2", "--rng")) ==
			      5 &&
		      !strcmp(c.kernel, "bz") && c.mem == 1ull << 30 &&
		      c.cpus == 2 && c.rng,
	      "short, long, attached and = forms");
	CHECK(parse(&c, err, ARGS("-m", "256")) == 2 && c.mem == 256ull << 20,
	      "a bare -m is in MiB");
	CHECK(parse(&c, err, ARGS("-m", "512K")) < 0 && strstr(err, "out of range"),
	      "-m below the minimum is refused");
	CHECK(parse(&c, err, ARGS("-m", "0")) < 0, "-m 0 is refused");
	CHECK(parse(&c, err, ARGS("-m", "12Q")) < 0 &&
		      strstr(err, "--mem"),
	      "a bad size names the option");
	CHECK(parse(&c, err, ARGS("-c", "0")) < 0 && strstr(err, "from 1 to 64"),
	      "-c 0 is refused with the range");
	CHECK(parse(&c, err, ARGS("-c", "-1")) < 0, "-c -1 is refused");
	CHECK(parse(&c, err, ARGS("-c", "3x")) < 0, "-c 3x is refused");
	CHECK(parse(&c, err, ARGS("--bogus")) < 0 &&
		      !strcmp(err, "unknown option '--bogus'"),
	      "unknown long options are named");
	CHECK(parse(&c, err, ARGS("-z")) < 0 && !strcmp(err, "unknown option '-z'"),
	      "unknown short options are named");
	CHECK(parse(&c, err, ARGS("-k")) < 0 && strstr(err, "needs an argument"),
	      "a missing argument is reported");
	CHECK(parse(&c, err, ARGS("--rng=yes")) < 0 &&
		      strstr(err, "takes no argument"),
	      "a flag with an argument is refused");
	CHECK(parse(&c, err, ARGS("-d", "a", "-d", "b", "rest")) == 4 &&
		      c.disks.n == 2 && !strcmp(c.disks.v[1], "b"),
	      "repeated options accumulate; parsing stops at an argument");
	CHECK(parse(&c, err, ARGS("--", "-k")) == 1 && !c.kernel,
	      "-- ends the options");
	CHECK(parse(&c, err, ARGS("--kernel=")) < 0 && strstr(err, "empty"),
	      "an empty file name is refused");
	CHECK(parse_size("1T", MIB, &v) && v == 1ull << 40, "size: T suffix");
	CHECK(parse_size("64MiB", 1, &v) && v == 64ull << 20, "size: MiB suffix");
	CHECK(!parse_size("99999999999999999999", MIB, &v),
	      "size: overflow is refused");
	CHECK(!parse_size("18014398509481984G", 1, &v),
	      "size: overflow through the unit is refused");
	return tap_done();
}
