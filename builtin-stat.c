// SPDX-License-Identifier: GPL-2.0
/* lkvm stat: a guest's statistics (docs/control.md lists the keys). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lkvm/builtin.h"
#include "lkvm/control.h"
#include "lkvm/options.h"
#include "lkvm/util.h"

struct stat_opts {
	bool json;
	bool all;
	bool memory;
};

static const struct option stat_options[] = {
	{ .name = "json", .type = OPT_BOOL,
	  .offset = offsetof(struct stat_opts, json),
	  .help = "every statistic, as one JSON object" },
	{ .name = "all", .type = OPT_BOOL,
	  .offset = offsetof(struct stat_opts, all),
	  .help = "every statistic as 'key value' lines" },
	{ .name = "memory", .type = OPT_BOOL,
	  .offset = offsetof(struct stat_opts, memory),
	  .help = "memory only: RAM, resident, the balloon and the guest's own statistics" },
	OPTION_END,
};

void help_stat(FILE *f)
{
	struct option_group g = { "options", stat_options, NULL };

	fprintf(f, "usage: lkvm stat NAME [--json | --all | --memory]\n\n"
		   "Shows a guest's statistics: exits by reason as KVM counts them\n"
		   "(its binary statistics, where the kernel offers them) and as lkvm's\n"
		   "exit loop counts them, guest memory (size and resident), accesses\n"
		   "per device region, and device counters (requests, bytes, errors).\n");
	print_options(f, &g, 1);
	fprintf(f, "\nExit status: 0, or 1 when the guest does not exist or cannot be\n"
		   "reached.\n");
}

struct kv {
	char *key;
	char *val;
};

static int kv_cmp(const void *a, const void *b)
{
	return strcmp(((const struct kv *)a)->key, ((const struct kv *)b)->key);
}

/* Splits a "key value" body in place. */
static struct kv *parse(char *body, size_t *n)
{
	size_t cap = 64, k = 0;
	struct kv *v = malloc(cap * sizeof(*v));

	for (char *line = strtok(body, "\n"); v && line;
	     line = strtok(NULL, "\n")) {
		char *sp = strchr(line, ' ');

		if (!sp)
			continue;
		*sp = '\0';
		if (k == cap) {
			struct kv *nv = realloc(v, (cap *= 2) * sizeof(*v));

			if (!nv)
				break;
			v = nv;
		}
		v[k++] = (struct kv){ line, sp + 1 };
	}
	*n = k;
	return v;
}

static const char *get(const struct kv *v, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(v[i].key, key))
			return v[i].val;
	return NULL;
}

static unsigned long long num(const struct kv *v, size_t n, const char *key)
{
	const char *s = get(v, n, key);

	return s ? strtoull(s, NULL, 10) : 0;
}

static bool numeric(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* Dotted keys as nested objects; the keys come sorted. */
static void print_json(const char *name, struct kv *v, size_t n)
{
	char *pp[16];
	int depth = 0, npp = 0;
	bool first = false;	/* the open object has no member yet */

	printf("{\"name\": ");
	ctl_json_string(stdout, name);
	for (size_t i = 0; i < n; i++) {
		char *p[16], *save = NULL;
		int np = 0, common = 0;

		for (char *t = strtok_r(v[i].key, ".", &save); t && np < 16;
		     t = strtok_r(NULL, ".", &save))
			p[np++] = t;
		if (!np)
			continue;
		while (common < np - 1 && common < npp - 1 && common < depth &&
		       !strcmp(p[common], pp[common]))
			common++;
		for (; depth > common; depth--) {
			printf("}");
			first = false;
		}
		for (; depth < np - 1; depth++) {
			printf("%s", first ? "" : ", ");
			ctl_json_string(stdout, p[depth]);
			printf(": {");
			first = true;
		}
		printf("%s", first ? "" : ", ");
		ctl_json_string(stdout, p[np - 1]);
		printf(": ");
		if (numeric(v[i].val))
			printf("%s", v[i].val);
		else
			ctl_json_string(stdout, v[i].val);
		first = false;
		memcpy(pp, p, sizeof(p[0]) * (size_t)np);
		npp = np;
	}
	for (; depth > 0; depth--)
		printf("}");
	printf("}\n");
}

static bool has_prefix(const char *s, const char *p)
{
	return !strncmp(s, p, strlen(p));
}

static const char *size_str(unsigned long long b, char *buf, size_t len)
{
	if (b >= 10ull << 20 || !(b & ((1 << 20) - 1)))
		snprintf(buf, len, "%llu MiB", b >> 20);
	else
		snprintf(buf, len, "%llu KiB", b >> 10);
	return buf;
}

static void print_human(const char *name, const struct kv *v, size_t n)
{
	char ram[32], res[32];
	bool any;

	printf("guest '%s': %s, %llu vCPU%s, %s of memory (%s resident)\n",
	       name, get(v, n, "guest.state") ? get(v, n, "guest.state") : "?",
	       num(v, n, "guest.vcpus"), num(v, n, "guest.vcpus") == 1 ? "" : "s",
	       size_str(num(v, n, "mem.ram_bytes"), ram, sizeof(ram)),
	       size_str(num(v, n, "mem.resident_bytes"), res, sizeof(res)));

	any = false;
	for (size_t i = 0; i < n; i++) {
		const char *k = v[i].key + strlen("kvm.vcpu.");

		if (!has_prefix(v[i].key, "kvm.vcpu.") || !strstr(k, "exits"))
			continue;
		if (!any)
			printf("\nexits counted by KVM (all vCPUs):\n");
		any = true;
		printf("  %-28s %14s\n", k, v[i].val);
	}
	if (!any)
		printf("\nexits counted by KVM: this kernel offers no statistics\n");

	printf("\nexits that reached lkvm, by reason:\n");
	for (size_t i = 0; i < n; i++)
		if (has_prefix(v[i].key, "lkvm.exits.") &&
		    strcmp(v[i].key, "lkvm.exits.total"))
			printf("  %-28s %14s\n", v[i].key + strlen("lkvm.exits."),
			       v[i].val);
	printf("  %-28s %14llu\n", "total", num(v, n, "lkvm.exits.total"));

	printf("\n%-30s %14s %14s %14s\n", "device I/O", "reads", "writes",
	       "bytes");
	for (size_t i = 0; i < n; i++) {
		char dev[128], key[160];
		size_t len;

		if (!has_prefix(v[i].key, "io.") ||
		    !strstr(v[i].key, ".reads"))
			continue;
		len = strlen(v[i].key) - strlen("io.") - strlen(".reads");
		snprintf(dev, sizeof(dev), "%.*s", (int)len, v[i].key + 3);
		snprintf(key, sizeof(key), "io.%s.writes", dev);
		printf("  %-28s %14s %14llu", dev, v[i].val, num(v, n, key));
		snprintf(key, sizeof(key), "io.%s.bytes", dev);
		printf(" %14llu\n", num(v, n, key));
	}
	printf("  unclaimed: %llu port, %llu MMIO accesses\n",
	       num(v, n, "bus.pio.unclaimed"), num(v, n, "bus.mmio.unclaimed"));

	any = false;
	for (size_t i = 0; i < n; i++) {
		char dev[128], key[160];
		size_t len;

		if (!has_prefix(v[i].key, "dev.") ||
		    !strstr(v[i].key, ".requests"))
			continue;
		if (!any)
			printf("\n%-30s %14s %14s %14s\n", "device", "requests",
			       "bytes", "errors");
		any = true;
		len = strlen(v[i].key) - strlen("dev.") - strlen(".requests");
		snprintf(dev, sizeof(dev), "%.*s", (int)len, v[i].key + 4);
		snprintf(key, sizeof(key), "dev.%s.bytes", dev);
		printf("  %-28s %14s %14llu", dev, v[i].val, num(v, n, key));
		snprintf(key, sizeof(key), "dev.%s.errors", dev);
		printf(" %14llu\n", num(v, n, key));
	}
	if (num(v, n, "console.dropped_bytes"))
		printf("\nconsole: %llu bytes not sent to clients too slow to read\n",
		       num(v, n, "console.dropped_bytes"));
}

/* --memory: what STAT says of memory, then the balloon's keys. */
static int print_memory(struct ctl_conn *c, const char *name,
			const struct kv *v, size_t n)
{
	struct ctl_balloon_req req = { 0, 0, 0 };
	char ram[32], res[32], a[32], b[32];
	struct ctl_result r;
	struct kv *bv;
	size_t bn;
	int err;

	printf("guest '%s': %s of memory, %s resident in lkvm\n", name,
	       size_str(num(v, n, "mem.ram_bytes"), ram, sizeof(ram)),
	       size_str(num(v, n, "mem.resident_bytes"), res, sizeof(res)));
	err = ctl_send(c, CTL_BALLOON, &req, sizeof(req), -1);
	if (!err)
		err = ctl_recv(c, &r, 5000);
	if (err) {
		pr_err("guest '%s': %s", name, strerror(-err));
		return 1;
	}
	if (r.error == -ENODEV) {
		printf("balloon: none (lkvm run --balloon adds one)\n");
		ctl_result_free(&r);
		return 0;
	}
	if (r.error) {
		pr_err("guest '%s': %s", name, r.body);
		ctl_result_free(&r);
		return 1;
	}
	bv = parse(r.body, &bn);
	if (!bv) {
		ctl_result_free(&r);
		pr_err("out of memory");
		return 1;
	}
	printf("balloon: target %s, %s in the balloon (%llu pages given back, "
	       "%llu taken again, %llu refused PFNs)\n",
	       size_str(num(bv, bn, "balloon.target_bytes"), a, sizeof(a)),
	       size_str(num(bv, bn, "balloon.actual_bytes"), b, sizeof(b)),
	       num(bv, bn, "balloon.inflated_pages"),
	       num(bv, bn, "balloon.deflated_pages"),
	       num(bv, bn, "balloon.refused_pfns"));
	if (!num(bv, bn, "balloon.stats_updates"))
		printf("guest statistics: none reported yet\n");
	else
		printf("guest statistics (%llu ms old):\n",
		       num(bv, bn, "balloon.stats_age_ms"));
	for (size_t i = 0; i < bn; i++)
		if (has_prefix(bv[i].key, "balloon.stats."))
			printf("  %-28s %14s\n",
			       bv[i].key + strlen("balloon.stats."), bv[i].val);
	free(bv);
	ctl_result_free(&r);
	return 0;
}

int cmd_stat(int argc, char **argv)
{
	struct stat_opts o = { 0 };
	struct option_group g = { NULL, stat_options, &o };
	struct ctl_result r;
	struct ctl_conn c;
	char *pos[1] = { NULL };
	struct kv *v;
	size_t n;

	if (ctl_wants_help(argc, argv)) {
		help_stat(stdout);
		return 0;
	}
	if (ctl_parse_args("stat", argc, argv, &g, 1, pos, 1) < 0)
		return 1;
	if (!pos[0]) {
		fprintf(stderr, "lkvm stat: which guest? give a NAME\n");
		fprintf(stderr, "see 'lkvm help stat'\n");
		return 1;
	}
	if (ctl_open(pos[0], &c))
		return 1;
	if (ctl_call(&c, CTL_STAT, NULL, 0, &r)) {
		ctl_close(&c);
		return 1;
	}
	if (o.memory) {
		int st;

		v = parse(r.body, &n);
		st = v ? print_memory(&c, pos[0], v, n) : 1;
		free(v);
		ctl_result_free(&r);
		ctl_close(&c);
		return st;
	}
	ctl_close(&c);
	if (o.all && !o.json) {
		fwrite(r.body, 1, r.len, stdout);
		ctl_result_free(&r);
		return 0;
	}
	v = parse(r.body, &n);
	if (!v) {
		ctl_result_free(&r);
		pr_err("out of memory");
		return 1;
	}
	if (o.json) {
		qsort(v, n, sizeof(*v), kv_cmp);
		print_json(pos[0], v, n);
	} else {
		print_human(pos[0], v, n);
	}
	free(v);
	ctl_result_free(&r);
	return 0;
}
