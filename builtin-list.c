// SPDX-License-Identifier: GPL-2.0
/* lkvm list: the guests of this user's registry (docs/control.md). */
#include <stdlib.h>
#include <string.h>

#include "lkvm/builtin.h"
#include "lkvm/control.h"
#include "lkvm/options.h"
#include "lkvm/util.h"

#define INFO_MS 2000

struct list_opts {
	bool json;
};

static const struct option list_options[] = {
	{ .name = "json", .type = OPT_BOOL,
	  .offset = offsetof(struct list_opts, json),
	  .help = "one JSON array of objects" },
	OPTION_END,
};

void help_list(FILE *f)
{
	struct option_group g = { "options", list_options, NULL };

	fprintf(f, "usage: lkvm list [--json]\n\n"
		   "Lists the guests in $LKVM_HOME (default ~/.lkvm): name, pid, state\n"
		   "(running, paused; busy while the guest is starting or stopping\n"
		   "and has no socket; exited, with its status, for a detached\n"
		   "guest that ended and was not collected by 'lkvm wait'), vCPUs and\n"
		   "memory. Entries left by a killed lkvm are removed on the way.\n");
	print_options(f, &g, 1);
	fprintf(f, "\nExit status: 0, or 1 when the registry cannot be read.\n");
}

struct row {
	const char *name;
	const char *state;
	long long pid;		/* -1: none */
	long long vcpus;	/* -1: unknown */
	unsigned long long memory;
	int status;		/* exited */
};

/* Asks a running guest about itself; the row keeps what it knows. */
static void ask(const struct registry_guest *g, struct row *r, char *state,
		size_t len)
{
	struct ctl_conn c = { .fd = -1 };
	struct ctl_result res;
	char v[64];
	int fd = registry_connect(g->name, (struct registry_guest[1]){ 0 });

	if (fd < 0)
		return;
	c.fd = fd;
	snprintf(c.name, sizeof(c.name), "%s", g->name);
	if (!ctl_send(&c, CTL_INFO, NULL, 0, -1) &&
	    !ctl_recv(&c, &res, INFO_MS)) {
		if (!res.error) {
			if (ctl_kv(res.body, "state", state, len))
				r->state = state;
			if (ctl_kv(res.body, "pid", v, sizeof(v)))
				r->pid = atoll(v);
			if (ctl_kv(res.body, "vcpus", v, sizeof(v)))
				r->vcpus = atoll(v);
			if (ctl_kv(res.body, "memory", v, sizeof(v)))
				r->memory = strtoull(v, NULL, 10);
		}
		ctl_result_free(&res);
	} else {
		r->state = "unresponsive";
	}
	ctl_close(&c);
}

int cmd_list(int argc, char **argv)
{
	struct list_opts o = { 0 };
	struct option_group g = { NULL, list_options, &o };
	struct registry_guest *gs;
	char *pos[1];
	size_t n;
	int err;

	if (ctl_wants_help(argc, argv)) {
		help_list(stdout);
		return 0;
	}
	if (ctl_parse_args("list", argc, argv, &g, 1, pos, 0) < 0)
		return 1;
	err = registry_list(&gs, &n);
	if (err) {
		pr_err("guest registry: %s", strerror(-err));
		return 1;
	}
	if (o.json)
		printf("[");
	else
		printf("%-24s %8s %-10s %5s %9s\n", "NAME", "PID", "STATE",
		       "VCPUS", "MEMORY");
	for (size_t i = 0; i < n; i++) {
		struct row r = { gs[i].name, "running", gs[i].pid, -1, 0, 0 };
		char state[32], mem[32] = "-", vcpus[24] = "-", pid[24] = "-";

		switch (gs[i].state) {
		case REGISTRY_RUNNING:
			ask(&gs[i], &r, state, sizeof(state));
			break;
		case REGISTRY_BUSY:
			/* Its lock is held but it has no socket: before its
			 * socket is bound, or after it was removed. */
			r.state = "busy";
			break;
		case REGISTRY_EXITED:
			r.state = "exited";
			r.pid = -1;
			r.status = gs[i].status;
			break;
		case REGISTRY_NONE:
			continue;
		}
		if (o.json) {
			printf("%s\n  {\"name\": ", i ? "," : "");
			ctl_json_string(stdout, r.name);
			printf(", \"state\": ");
			ctl_json_string(stdout, r.state);
			if (r.pid > 0)
				printf(", \"pid\": %lld", r.pid);
			if (r.vcpus >= 0)
				printf(", \"vcpus\": %lld, \"memory\": %llu",
				       r.vcpus, r.memory);
			if (gs[i].state == REGISTRY_EXITED)
				printf(", \"status\": %d", r.status);
			printf("}");
			continue;
		}
		if (r.pid > 0)
			snprintf(pid, sizeof(pid), "%lld", r.pid);
		if (r.vcpus >= 0) {
			snprintf(vcpus, sizeof(vcpus), "%lld", r.vcpus);
			snprintf(mem, sizeof(mem), "%lluM", r.memory >> 20);
		}
		if (gs[i].state == REGISTRY_EXITED)
			snprintf(state, sizeof(state), "exited(%d)", r.status);
		printf("%-24s %8s %-10s %5s %9s\n", r.name, pid,
		       gs[i].state == REGISTRY_EXITED ? state : r.state, vcpus,
		       mem);
	}
	if (o.json)
		printf("%s]\n", n ? "\n" : "");
	free(gs);
	return 0;
}
