// SPDX-License-Identifier: GPL-2.0
/* lkvm balloon: grow or shrink a guest's virtio-balloon (docs/balloon-vsock.md). */
#include <stdlib.h>
#include <string.h>

#include "lkvm/balloon.h"
#include "lkvm/builtin.h"
#include "lkvm/control.h"
#include "lkvm/options.h"
#include "lkvm/util.h"

struct balloon_opts {
	uint64_t inflate, deflate;	/* bytes */
};

static const struct option balloon_options[] = {
	{ .name = "inflate", .type = OPT_SIZE,
	  .offset = offsetof(struct balloon_opts, inflate), .argname = "MIB",
	  .help = "take MIB more of the guest's memory back", .min = 1,
	  .max = 64ull << 40 },
	{ .name = "deflate", .type = OPT_SIZE,
	  .offset = offsetof(struct balloon_opts, deflate), .argname = "MIB",
	  .help = "give MIB back to the guest", .min = 1, .max = 64ull << 40 },
	OPTION_END,
};

void help_balloon(FILE *f)
{
	struct option_group g = { "options", balloon_options, NULL };

	fprintf(f, "usage: lkvm balloon NAME [--inflate MIB | --deflate MIB]\n\n"
		   "Changes the target of a guest's balloon (lkvm run --balloon): the\n"
		   "guest's driver gives that much memory to the balloon, and lkvm\n"
		   "returns the pages to the host. Without an option, shows the\n"
		   "balloon. Sizes are MiB, or a number with K, M or G (whole 4 KiB\n"
		   "pages). The guest follows in its own time: 'lkvm stat NAME --memory'\n"
		   "shows how far it got.\n");
	print_options(f, &g, 1);
	fprintf(f, "\nExit status: 0 when the target was set, 1 when the guest does not\n"
		   "exist, has no balloon, or the target would leave 0..guest memory.\n");
}

int cmd_balloon(int argc, char **argv)
{
	struct balloon_opts o = { 0, 0 };
	struct option_group g = { NULL, balloon_options, &o };
	struct ctl_balloon_req req = { BALLOON_QUERY, 0, 0 };
	char *pos[1] = { NULL }, buf[32];
	struct ctl_result r;
	struct ctl_conn c;
	unsigned long long target, actual;

	if (ctl_wants_help(argc, argv)) {
		help_balloon(stdout);
		return 0;
	}
	if (ctl_parse_args("balloon", argc, argv, &g, 1, pos, 1) < 0)
		return 1;
	if (!pos[0] || (o.inflate && o.deflate)) {
		fprintf(stderr, "lkvm balloon: %s\n",
			pos[0] ? "--inflate or --deflate, not both" :
				 "which guest? give a NAME");
		fprintf(stderr, "see 'lkvm help balloon'\n");
		return 1;
	}
	if ((o.inflate | o.deflate) % BALLOON_PAGE) {
		fprintf(stderr, "lkvm balloon: %llu bytes is not a whole number of 4 KiB pages\n",
			(unsigned long long)(o.inflate | o.deflate));
		return 1;
	}
	if (o.inflate) {
		req.cmd = BALLOON_INFLATE;
		req.bytes = o.inflate;
	} else if (o.deflate) {
		req.cmd = BALLOON_DEFLATE;
		req.bytes = o.deflate;
	}
	if (ctl_open(pos[0], &c))
		return 1;
	if (ctl_call(&c, CTL_BALLOON, &req, sizeof(req), &r)) {
		ctl_close(&c);
		return 1;
	}
	ctl_close(&c);
	target = strtoull(ctl_kv(r.body, "balloon.target_bytes", buf,
				 sizeof(buf)) ?: "0", NULL, 10);
	actual = strtoull(ctl_kv(r.body, "balloon.actual_bytes", buf,
				 sizeof(buf)) ?: "0", NULL, 10);
	printf("guest '%s': balloon target %llu MiB, %llu MiB in the balloon\n",
	       pos[0], target >> 20, actual >> 20);
	ctl_result_free(&r);
	return 0;
}
