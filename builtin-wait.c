// SPDX-License-Identifier: GPL-2.0
/* lkvm wait: block until a guest ends, exit with its status. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lkvm/builtin.h"
#include "lkvm/control.h"
#include "lkvm/options.h"
#include "lkvm/util.h"

#define WAIT_TIMEOUT 124	/* as timeout(1) */
#define WAIT_NO_STATUS 2	/* the guest's lkvm died without one */

struct wait_opts {
	const char *timeout;
};

static const struct option wait_options[] = {
	{ .name = "timeout", .type = OPT_STRING,
	  .offset = offsetof(struct wait_opts, timeout), .argname = "S",
	  .help = "give up after S seconds (decimals allowed)" },
	OPTION_END,
};

void help_wait(FILE *f)
{
	struct option_group g = { "options", wait_options, NULL };

	fprintf(f, "usage: lkvm wait NAME [--timeout S]\n\n"
		   "Blocks until the guest ends and exits with its status, as 'lkvm run'\n"
		   "would have: 0 for a reset or power-off (or 'lkvm stop'), (V << 1) | 1\n"
		   "for V written to the debug-exit port, 100 for a crash, 128 + N for\n"
		   "signal N. A detached guest that ended before the wait keeps its\n"
		   "status in $LKVM_HOME until a wait collects it, so\n"
		   "  lkvm run --detach --name t ...; lkvm wait t\n"
		   "never misses it.\n");
	print_options(f, &g, 1);
	fprintf(f, "\nExit status: the guest's; %d when --timeout passed first; %d when\n"
		   "the guest's lkvm ended without a status (killed); 1 when there is\n"
		   "no such guest or it cannot be reached.\n",
		WAIT_TIMEOUT, WAIT_NO_STATUS);
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int status_of(const char *body)
{
	char v[32];

	return ctl_kv(body, "status", v, sizeof(v)) ? atoi(v) : WAIT_NO_STATUS;
}

int cmd_wait(int argc, char **argv)
{
	struct wait_opts o = { 0 };
	struct option_group g = { NULL, wait_options, &o };
	char *pos[1] = { NULL }, *end;
	long long until = -1;
	bool connected = false;
	const char *name;
	int status;

	if (ctl_wants_help(argc, argv)) {
		help_wait(stdout);
		return 0;
	}
	if (ctl_parse_args("wait", argc, argv, &g, 1, pos, 1) < 0)
		return 1;
	name = pos[0];
	if (!name) {
		fprintf(stderr, "lkvm wait: which guest? give a NAME\n");
		fprintf(stderr, "see 'lkvm help wait'\n");
		return 1;
	}
	if (!registry_name_valid(name)) {
		pr_err("'%s' is not a guest name", name);
		return 1;
	}
	if (o.timeout) {
		double s = strtod(o.timeout, &end);

		if (*end || end == o.timeout || !(s >= 0) || s > 1e9) {
			fprintf(stderr, "lkvm wait: --timeout '%s' is not a number of seconds\n",
				o.timeout);
			return 1;
		}
		until = now_ms() + (long long)(s * 1000 + 0.5);
	}

	for (;;) {
		struct registry_guest gu;
		struct ctl_result r;
		int fd = registry_connect(name, &gu), err;
		struct ctl_conn c = { .fd = fd };

		if (fd == -EACCES) {
			pr_err("guest '%s': permission denied", name);
			return 1;
		}
		if (fd >= 0) {
			connected = true;
			snprintf(c.name, sizeof(c.name), "%s", name);
			err = ctl_send(&c, CTL_WAIT, NULL, 0, -1);
			if (!err)
				err = ctl_recv(&c, &r,
					       until < 0 ? -1 :
					       (int)MAX(0, until - now_ms()));
			ctl_close(&c);
			if (!err && !r.error) {
				status = status_of(r.body);
				ctl_result_free(&r);
				/* Ours now: no record is left behind. */
				registry_take_exit(name, &(int){ 0 });
				return status;
			}
			if (!err) {
				pr_err("guest '%s': %s", name, r.body);
				ctl_result_free(&r);
				return 1;
			}
			if (err == -ETIMEDOUT)
				goto timeout;
			/* Closed without an answer: ending, or killed. */
		} else if (fd != -ENOENT) {
			pr_err("guest '%s': %s", name, strerror(-fd));
			return 1;
		} else if (gu.state == REGISTRY_NONE) {
			if (connected) {
				pr_err("guest '%s' ended without an exit status (its lkvm was killed?)",
				       name);
				return WAIT_NO_STATUS;
			}
			pr_err("no guest named '%s'", name);
			return 1;
		}
		if (registry_take_exit(name, &status) == 0)
			return status;
		/* Starting (no socket yet) or ending (no socket any more):
		 * either way it changes within moments. */
		if (until >= 0 && now_ms() >= until)
			goto timeout;
		usleep(10000);
	}
timeout:
	pr_err("guest '%s' is still running after %s s", name, o.timeout);
	return WAIT_TIMEOUT;
}
