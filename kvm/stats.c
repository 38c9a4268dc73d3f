// SPDX-License-Identifier: GPL-2.0
/* `lkvm stat`: statistics from KVM, the exit loop, the buses, devices. */
#include "lkvm/stats.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lkvm/machine.h"
#include "lkvm/term.h"
#include "lkvm/util.h"
#include "lkvm/vcpu.h"

#define STATS_NAME 64

struct counters {
	char name[STATS_NAME];
	struct dev_counters *c;
	struct counters *next;
};

/* Names become key parts: [A-Za-z0-9_-], anything else '_'. */
static void key_part(char *out, size_t len, const char *in)
{
	size_t i;

	for (i = 0; in[i] && i + 1 < len; i++) {
		char c = in[i];

		out[i] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
				 (c >= '0' && c <= '9') || c == '-' || c == '_' ?
			 c : '_';
	}
	out[i] = '\0';
	if (!i && len > 1)
		snprintf(out, len, "_");
}

int machine_add_counters(struct machine *m, const char *name,
			 struct dev_counters *c)
{
	struct counters *n = calloc(1, sizeof(*n)), **p;

	if (!n)
		return -ENOMEM;
	key_part(n->name, sizeof(n->name), name);
	n->c = c;
	/* Kept in the order devices add them. */
	for (p = &m->counters; *p; p = &(*p)->next)
		;
	*p = n;
	return 0;
}

void machine_free_counters(struct machine *m)
{
	while (m->counters) {
		struct counters *n = m->counters;

		m->counters = n->next;
		free(n);
	}
}

/* ---- KVM's binary statistics ----------------------------------------- */

struct kvm_stats {
	struct kvm_stats_header h;
	char *desc;			/* num_desc descriptors */
	size_t desc_size;		/* one descriptor with its name */
	size_t data_size;		/* bytes of the data block */
};

static const struct kvm_stats_desc *desc_at(const struct kvm_stats *s,
					    unsigned int i)
{
	return (const struct kvm_stats_desc *)(s->desc + i * s->desc_size);
}

/* Reads the header and descriptors of a statistics fd. */
static int stats_parse(int sfd, struct kvm_stats *s)
{
	size_t total;

	memset(s, 0, sizeof(*s));
	if (sfd < 0)
		return -EBADF;
	if (pread(sfd, &s->h, sizeof(s->h), 0) != sizeof(s->h) ||
	    s->h.num_desc > 4096 || s->h.name_size > 4096)
		goto bad;
	s->desc_size = sizeof(struct kvm_stats_desc) + s->h.name_size;
	total = s->desc_size * s->h.num_desc;
	s->desc = malloc(total ? total : 1);
	if (!s->desc || pread(sfd, s->desc, total, s->h.desc_offset) !=
				(ssize_t)total)
		goto bad;
	for (unsigned int i = 0; i < s->h.num_desc; i++) {
		const struct kvm_stats_desc *d = desc_at(s, i);
		size_t end = d->offset + (size_t)d->size * sizeof(uint64_t);

		if (end > s->data_size)
			s->data_size = end;
	}
	if (s->data_size > (1u << 20))
		goto bad;
	return 0;
bad:
	free(s->desc);
	s->desc = NULL;
	return -EPROTO;
}

static int stats_read(int sfd, const struct kvm_stats *s, uint64_t *data)
{
	ssize_t n = pread(sfd, data, s->data_size, s->h.data_offset);

	return n == (ssize_t)s->data_size ? 0 : -EIO;
}

/* Single-value statistics only: histograms have no one number. */
static bool scalar(const struct kvm_stats_desc *d)
{
	unsigned int type = d->flags & KVM_STATS_TYPE_MASK;

	return d->size == 1 && (type == KVM_STATS_TYPE_CUMULATIVE ||
				type == KVM_STATS_TYPE_INSTANT ||
				type == KVM_STATS_TYPE_PEAK);
}

static void emit_kvm(FILE *out, const char *prefix, const struct kvm_stats *s,
		     const uint64_t *sum)
{
	for (unsigned int i = 0; i < s->h.num_desc; i++) {
		const struct kvm_stats_desc *d = desc_at(s, i);
		char name[STATS_NAME];

		if (!scalar(d))
			continue;
		key_part(name, sizeof(name), d->name);
		fprintf(out, "%s.%s %llu\n", prefix, name,
			(unsigned long long)sum[i]);
	}
}

static void kvm_vm_stats(struct machine *m, FILE *out)
{
	struct kvm_stats s;
	uint64_t *data, *vals;
	int sfd;

	if (kvm_check_extension(m->kvm, KVM_CAP_BINARY_STATS_FD) <= 0)
		return;
	sfd = ioctl(kvm_vm_fd(m->kvm), KVM_GET_STATS_FD, NULL);
	if (sfd < 0)
		return;
	if (stats_parse(sfd, &s)) {
		close(sfd);
		return;
	}
	data = calloc(1, s.data_size + 8);
	vals = calloc(s.h.num_desc + 1, sizeof(*vals));
	if (data && vals && !stats_read(sfd, &s, data)) {
		for (unsigned int i = 0; i < s.h.num_desc; i++)
			vals[i] = data[desc_at(&s, i)->offset / 8];
		emit_kvm(out, "kvm.vm", &s, vals);
	}
	free(data);
	free(vals);
	free(s.desc);
	close(sfd);
}

/* Every vCPU's statistics, summed (peaks: the largest). */
static void kvm_vcpu_stats(struct machine *m, FILE *out)
{
	struct kvm_stats s;
	uint64_t *data = NULL, *sum = NULL;
	int sfd;

	if (!m->ncpus || stats_parse(vcpu_stats_fd(&m->vcpus[0]), &s))
		return;
	data = calloc(1, s.data_size + 8);
	sum = calloc(s.h.num_desc + 1, sizeof(*sum));
	for (unsigned int c = 0; data && sum && c < m->ncpus; c++) {
		struct kvm_stats one;

		sfd = vcpu_stats_fd(&m->vcpus[c]);
		if (stats_parse(sfd, &one))
			continue;
		/* Every vCPU has the same layout; trust only the first's. */
		if (one.h.num_desc == s.h.num_desc &&
		    one.data_size == s.data_size && !stats_read(sfd, &s, data)) {
			for (unsigned int i = 0; i < s.h.num_desc; i++) {
				const struct kvm_stats_desc *d = desc_at(&s, i);
				uint64_t v = data[d->offset / 8];

				if ((d->flags & KVM_STATS_TYPE_MASK) ==
				    KVM_STATS_TYPE_PEAK)
					sum[i] = MAX(sum[i], v);
				else
					sum[i] += v;
			}
		}
		free(one.desc);
	}
	if (data && sum)
		emit_kvm(out, "kvm.vcpu", &s, sum);
	free(data);
	free(sum);
	free(s.desc);
}

/* ---- the buses ------------------------------------------------------------ */

struct io_sum {
	char name[STATS_NAME];
	uint64_t reads, writes, bytes;
};

struct io_sums {
	struct io_sum *v;
	unsigned int n, cap;
};

static void add_region(const struct io_region *r, void *arg)
{
	struct io_sums *s = arg;
	char name[STATS_NAME];
	unsigned int i;

	key_part(name, sizeof(name), r->name ? r->name : "unnamed");
	for (i = 0; i < s->n; i++)
		if (!strcmp(s->v[i].name, name))
			break;
	if (i == s->n) {
		if (s->n == s->cap) {
			unsigned int cap = s->cap ? s->cap * 2 : 16;
			struct io_sum *nv = realloc(s->v, cap * sizeof(*nv));

			if (!nv)
				return;
			s->v = nv;
			s->cap = cap;
		}
		memset(&s->v[i], 0, sizeof(s->v[i]));
		memcpy(s->v[i].name, name, sizeof(name));
		s->n++;
	}
	s->v[i].reads += __atomic_load_n(&r->reads, __ATOMIC_RELAXED);
	s->v[i].writes += __atomic_load_n(&r->writes, __ATOMIC_RELAXED);
	s->v[i].bytes += __atomic_load_n(&r->bytes, __ATOMIC_RELAXED);
}

static void io_stats(struct machine *m, FILE *out)
{
	struct io_sums s = { 0 };

	if (m->pio)
		iobus_for_each(m->pio, add_region, &s);
	if (m->mmio)
		iobus_for_each(m->mmio, add_region, &s);
	for (unsigned int i = 0; i < s.n; i++)
		fprintf(out, "io.%s.reads %llu\nio.%s.writes %llu\n"
			     "io.%s.bytes %llu\n",
			s.v[i].name, (unsigned long long)s.v[i].reads,
			s.v[i].name, (unsigned long long)s.v[i].writes,
			s.v[i].name, (unsigned long long)s.v[i].bytes);
	free(s.v);
	if (m->pio)
		fprintf(out, "bus.pio.unclaimed %llu\n",
			(unsigned long long)iobus_unclaimed(m->pio));
	if (m->mmio)
		fprintf(out, "bus.mmio.unclaimed %llu\n",
			(unsigned long long)iobus_unclaimed(m->mmio));
}

/* ---- memory ---------------------------------------------------------------- */

static uint64_t resident_bytes(struct machine *m)
{
	long page = sysconf(_SC_PAGESIZE);
	uint64_t total = 0;

	for (unsigned int i = 0; i < m->nmem; i++) {
		const struct mem_region *r = &m->mem[i];
		size_t pages = (r->size + (uint64_t)page - 1) / (uint64_t)page;
		unsigned char *vec;
		uintptr_t start = (uintptr_t)r->host & ~(uintptr_t)(page - 1);

		if (r->readonly)
			continue;
		vec = malloc(pages + 1);
		if (!vec)
			continue;
		if (mincore((void *)start, r->size + ((uintptr_t)r->host - start),
			    vec) == 0)
			for (size_t p = 0; p < pages; p++)
				total += vec[p] & 1 ? (uint64_t)page : 0;
		free(vec);
	}
	return total;
}

void stats_write(struct machine *m, FILE *out)
{
	uint64_t exits[VCPU_EXIT_REASONS], total = 0;

	fprintf(out, "mem.ram_bytes %llu\n", (unsigned long long)m->ram_size);
	fprintf(out, "mem.resident_bytes %llu\n",
		(unsigned long long)resident_bytes(m));
	if (m->kvm) {
		kvm_vm_stats(m, out);
		kvm_vcpu_stats(m, out);
	}
	machine_exit_counts(m, exits);
	for (unsigned int r = 0; r < VCPU_EXIT_REASONS; r++) {
		const char *name = vcpu_exit_name(r);
		char other[32];

		if (!exits[r])
			continue;
		if (!name) {
			snprintf(other, sizeof(other), "reason%u", r);
			name = other;
		}
		fprintf(out, "lkvm.exits.%s %llu\n", name,
			(unsigned long long)exits[r]);
		total += exits[r];
	}
	fprintf(out, "lkvm.exits.total %llu\n", (unsigned long long)total);
	io_stats(m, out);
	for (struct counters *c = m->counters; c; c = c->next)
		fprintf(out, "dev.%s.requests %llu\ndev.%s.bytes %llu\n"
			     "dev.%s.errors %llu\n",
			c->name,
			(unsigned long long)__atomic_load_n(&c->c->requests,
							    __ATOMIC_RELAXED),
			c->name,
			(unsigned long long)__atomic_load_n(&c->c->bytes,
							    __ATOMIC_RELAXED),
			c->name,
			(unsigned long long)__atomic_load_n(&c->c->errors,
							    __ATOMIC_RELAXED));
	fprintf(out, "console.dropped_bytes %llu\n", term_dropped());
}
