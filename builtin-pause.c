// SPDX-License-Identifier: GPL-2.0
/* lkvm pause: park every vCPU of a guest (docs/control.md). */
#include "lkvm/builtin.h"
#include "lkvm/control.h"

void help_pause(FILE *f)
{
	fprintf(f, "usage: lkvm pause NAME | --all\n\n"
		   "Parks every vCPU of the guest (or of every running guest) outside\n"
		   "the guest until 'lkvm resume'. Devices and the console stay up.\n"
		   "Pausing a paused guest is not an error.\n\n"
		   "  --all        every running guest\n\n"
		   "Exit status: 0 when every guest is paused, 1 when a guest does not\n"
		   "exist, cannot be reached, or a vCPU did not stop within 2 s.\n");
}

int cmd_pause(int argc, char **argv)
{
	if (ctl_wants_help(argc, argv)) {
		help_pause(stdout);
		return 0;
	}
	return ctl_each("pause", argc, argv, CTL_PAUSE);
}
