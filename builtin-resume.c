// SPDX-License-Identifier: GPL-2.0
/* lkvm resume: let a paused guest run again (docs/control.md). */
#include "lkvm/builtin.h"
#include "lkvm/control.h"

void help_resume(FILE *f)
{
	fprintf(f, "usage: lkvm resume NAME | --all\n\n"
		   "Releases the vCPUs that 'lkvm pause' parked. Resuming a running\n"
		   "guest is not an error.\n\n"
		   "  --all        every running guest\n\n"
		   "Exit status: 0 when every guest runs, 1 when a guest does not exist\n"
		   "or cannot be reached.\n");
}

int cmd_resume(int argc, char **argv)
{
	if (ctl_wants_help(argc, argv)) {
		help_resume(stdout);
		return 0;
	}
	return ctl_each("resume", argc, argv, CTL_RESUME);
}
