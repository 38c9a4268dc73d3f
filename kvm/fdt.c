// SPDX-License-Identifier: GPL-2.0
/*
 * The device tree lkvm hands to the guest. The core describes what it
 * owns (memory, CPUs, the command line); every device that got through
 * init adds its own nodes through device_ops.fdt, so this file never
 * names a device.
 */
#include <errno.h>
#include <fcntl.h>
#include <libfdt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lkvm/device.h"
#include "lkvm/arch.h"
#include "lkvm/fdt.h"
#include "lkvm/machine.h"
#include "lkvm/util.h"

/* Room for the core's nodes and any device's; retried larger on NOSPACE. */
#define FDT_INITIAL_SIZE (8 * 1024)	/* most machines need 1 to 3 KiB */
#define FDT_MAX_SIZE (1024 * 1024)

/* machine_init() sets m->ncpus only after the boot loader has run. */
static unsigned int fdt_ncpus(const struct machine *m)
{
	if (m->ncpus)
		return m->ncpus;
	return m->cfg.ncpus ? m->cfg.ncpus : 1;
}

static int fdt_setprop_u64_pair(void *fdt, int node, const char *name,
				uint64_t a, uint64_t b)
{
	fdt64_t v[2] = { cpu_to_fdt64(a), cpu_to_fdt64(b) };

	return fdt_setprop(fdt, node, name, v, sizeof(v));
}

static int add_root(void *fdt)
{
	/* "linux,dummy-virt": no board to match, read the tree as it is. */
	static const char compat[] = "lkvm,x86-pc\0linux,dummy-virt";
	int err;

	if ((err = fdt_setprop_cell(fdt, 0, "#address-cells", 2)) ||
	    (err = fdt_setprop_cell(fdt, 0, "#size-cells", 2)) ||
	    (err = fdt_setprop(fdt, 0, "compatible", compat, sizeof(compat))) ||
	    (err = fdt_setprop_string(fdt, 0, "model", "lkvm")))
		return err;
	return 0;
}

static int add_memory(struct machine *m, void *fdt)
{
	/* Last to first, for the same reason as in add_cpus(). */
	for (unsigned int i = m->nmem; i-- > 0;) {
		const struct mem_region *r = &m->mem[i];
		char name[32];
		int node, err;

		if (r->readonly)	/* ROM is not RAM */
			continue;
		snprintf(name, sizeof(name), "memory@%llx",
			 (unsigned long long)r->gpa);
		node = fdt_add_subnode(fdt, 0, name);
		if (node < 0)
			return node;
		if ((err = fdt_setprop_string(fdt, node, "device_type",
					      "memory")) ||
		    (err = fdt_setprop_u64_pair(fdt, node, "reg", r->gpa,
						r->size)))
			return err;
	}
	return 0;
}

static int add_cpus(struct machine *m, void *fdt)
{
	unsigned int n = fdt_ncpus(m);
	int cpus, err;

	cpus = fdt_add_subnode(fdt, 0, "cpus");
	if (cpus < 0)
		return cpus;
	if ((err = fdt_setprop_cell(fdt, cpus, "#address-cells", 1)) ||
	    (err = fdt_setprop_cell(fdt, cpus, "#size-cells", 0)))
		return err;
	/* Added last to first: fdt_add_subnode puts a node before its
	 * siblings, so the blob lists cpu@0 first. */
	for (unsigned int i = n; i-- > 0;) {
		char name[24];
		int node;

		snprintf(name, sizeof(name), "cpu@%x", i);
		node = fdt_add_subnode(fdt, cpus, name);
		if (node < 0)
			return node;
		/* The vCPU id is the APIC ID (see arch_setup_vcpu). */
		if ((err = fdt_setprop_string(fdt, node, "device_type",
					      "cpu")) ||
		    (err = fdt_setprop_cell(fdt, node, "reg", i)))
			return err;
	}
	return 0;
}

static int add_chosen(void *fdt, const char *bootargs)
{
	int node = fdt_add_subnode(fdt, 0, "chosen");

	if (node < 0)
		return node;
	if (bootargs)
		return fdt_setprop_string(fdt, node, "bootargs", bootargs);
	return 0;
}

/*
 * One attempt at a given buffer size. Returns 0, a libfdt error
 * (-FDT_ERR_*) for the core's nodes, or 1 with *bad set when a device's
 * hook failed.
 */
static int build(struct machine *m, const char *bootargs, void *fdt,
		 int size, const struct device_ops **bad, int *bad_err)
{
	unsigned int n;
	const struct device_ops *const *devs = device_list(&n);
	int err;

	/* Each node goes in front of its siblings: the blob reads
	 * chosen, cpus, memory, then the devices in reverse. */
	if ((err = fdt_create_empty_tree(fdt, size)) ||
	    (err = add_root(fdt)) || (err = add_memory(m, fdt)) ||
	    (err = add_cpus(m, fdt)) || (err = add_chosen(fdt, bootargs)) ||
	    (err = arch_fdt(m, fdt)))
		return err;
	/* Only devices that are up describe themselves. */
	for (unsigned int i = 0; i < n && i < m->ndev_up; i++) {
		if (!devs[i]->fdt)
			continue;
		err = devs[i]->fdt(m, fdt);
		if (err) {
			*bad = devs[i];
			*bad_err = err;
			return 1;
		}
	}
	return fdt_pack(fdt);
}

int machine_build_fdt_bootargs(struct machine *m, const char *bootargs)
{
	const struct device_ops *bad = NULL;
	int size = FDT_INITIAL_SIZE, bad_err = 0, err;
	void *fdt, *packed;

	for (;;) {
		fdt = malloc(size);
		if (!fdt) {
			pr_err("device tree: out of memory");
			return -ENOMEM;
		}
		err = build(m, bootargs, fdt, size, &bad, &bad_err);
		if (!err)
			break;
		free(fdt);
		/* A full buffer shows up as NOSPACE, from libfdt or passed
		 * on by a device's hook: try again with more room. */
		if ((err == -FDT_ERR_NOSPACE ||
		     (err == 1 && bad_err == -FDT_ERR_NOSPACE)) &&
		    size < FDT_MAX_SIZE) {
			size *= 4;
			continue;
		}
		if (err == 1) {
			pr_err("device tree: %s: cannot add its nodes (%s)",
			       bad->name,
			       bad_err < 0 && -bad_err <= FDT_ERR_MAX ?
				       fdt_strerror(bad_err) :
				       strerror(-bad_err));
			return -EINVAL;
		}
		pr_err("device tree: %s", fdt_strerror(err));
		return -EINVAL;
	}
	packed = realloc(fdt, fdt_totalsize(fdt));
	free(m->fdt);
	m->fdt = packed ? packed : fdt;

	if (m->cfg.dump_dtb)
		return machine_dump_fdt(m, m->cfg.dump_dtb);
	return 0;
}

int machine_build_fdt(struct machine *m)
{
	return machine_build_fdt_bootargs(m, m->cfg.params);
}

int machine_dump_fdt(struct machine *m, const char *path)
{
	int fd, err;

	if (!m->fdt)
		return -EINVAL;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		err = -errno;
		pr_err("--dump-dtb '%s': %s", path, strerror(-err));
		return err;
	}
	err = write_all(fd, m->fdt, fdt_totalsize(m->fdt));
	if (close(fd) && !err)
		err = -errno;
	if (err)
		pr_err("--dump-dtb '%s': %s", path, strerror(-err));
	return err;
}
