// SPDX-License-Identifier: GPL-2.0
/* lkvm run: parse options, assemble the machine, run it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <string.h>
#include <unistd.h>

#include "lkvm/builtin.h"
#include "lkvm/control.h"
#include "lkvm/machine.h"
#include "lkvm/registry.h"
#include "lkvm/seccomp.h"
#include "lkvm/term.h"
#include "lkvm/util.h"

#define DEFAULT_RAM (128 * MIB)

#define CFG(field) offsetof(struct machine_config, field)

#define O(n, s, t, f, a, h, ...)                                         \
	{ .name = n, .short_name = s, .type = t, .offset = CFG(f),        \
	  .argname = a, .help = h, __VA_ARGS__ }

static const struct option run_options[] = {
	O("kernel", 'k', OPT_STRING, kernel, "FILE",
	  "kernel: bzImage, vmlinux/PVH ELF or flat binary (default: the bundled test kernel)"),
	O("initrd", 'i', OPT_STRING, initrd, "FILE", "initial ramdisk"),
	O("params", 'p', OPT_STRING, params, "STRING", "kernel command line"),
	O("firmware", 0, OPT_STRING, firmware, "FILE",
	  "PC firmware (e.g. SeaBIOS) started at the reset vector"),
	O("mem", 'm', OPT_SIZE, ram_size, "SIZE",
	  "guest memory in MiB, or with a K/M/G suffix (default 128M)",
	  .min = 2 * MIB, .max = 64ull << 40),
	O("cpus", 'c', OPT_UINT, ncpus, "N", "number of vCPUs (default 1)",
	  .min = 1, .max = 4096),
	O("name", 0, OPT_STRING, name, "NAME", "guest name (default guest-PID)"),
	O("detach", 0, OPT_BOOL, detach, NULL,
	  "run in the background: print the guest's name once it runs; 'lkvm console' attaches"),
	O("console-log", 0, OPT_STRING, console_log, "FILE",
	  "also write what the guest console prints to FILE"),
	O("console", 0, OPT_STRING, console, "serial|virtio",
	  "guest console device (default serial)"),
	O("irqchip", 0, OPT_STRING, irqchip, "split|kernel",
	  "interrupt controllers: lkvm's PIC, I/O APIC and PIT beside KVM's local APICs (split, the default), or all of them in KVM (kernel)"),
	O("dump-dtb", 0, OPT_STRING, dump_dtb, "FILE",
	  "write the device tree handed to the guest to FILE"),
	O("disk", 'd', OPT_LIST, disks, "PATH[,ro]", "virtio-blk disk"),
	O("network", 'n', OPT_LIST, nets, "OPTIONS", "virtio-net device"),
	O("rng", 0, OPT_BOOL, rng, NULL, "virtio-rng device"),
	O("balloon", 0, OPT_BOOL, balloon, NULL, "virtio-balloon device"),
	O("9p", 0, OPT_LIST, p9, "DIR,TAG[,ro]", "share a host directory (virtio-9p)"),
	OPTION_END,
};

/* Help and parsing see the core options and every device's. */
static unsigned int option_groups(struct machine *m, struct option_group *g,
				  unsigned int max)
{
	unsigned int n = 0, ndev;
	const struct device_ops *const *devs = device_list(&ndev);

	g[n++] = (struct option_group){ "options", run_options, &m->cfg };
	for (unsigned int i = 0; i < ndev && n < max; i++)
		if (devs[i]->options)
			g[n++] = (struct option_group){
				devs[i]->name, devs[i]->options,
				m->dev_cfg ? m->dev_cfg[i] : NULL
			};
	return n;
}

void help_run(FILE *f)
{
	struct machine m = { 0 };
	struct option_group g[64];
	unsigned int n = option_groups(&m, g, 64);

	fprintf(f, "usage: lkvm run [OPTIONS]\n\n"
		   "Boots a guest. With no --kernel or --firmware, boots the bundled\n"
		   "test kernel. Exit status: 0 when the guest resets or powers off,\n"
		   "(V << 1) | 1 when it writes V to the debug-exit port 0xf4, 1 for\n"
		   "a usage or set-up error, %d when the guest crashes, 128 + N when\n"
		   "stopped by signal N. On a terminal, Ctrl-A x quits.\n"
		   "With --detach, 'lkvm run' exits 0 once the guest runs (1 if it\n"
		   "could not start); 'lkvm wait NAME' collects the guest's status.\n",
		LKVM_EXIT_CRASH);
	fprintf(f, "\n  -h, --help                   show this help\n");
	print_options(f, g, n);
}

/* Files named on the command line must be readable regular files: say
 * so before any KVM work, naming the file. */
static int check_file(const char *what, const char *path)
{
	struct stat st;
	int fd;

	if (!path)
		return 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		pr_err("%s '%s': %s", what, path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		pr_err("%s '%s': is a directory", what, path);
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

static int check_config(struct machine_config *c)
{
	if (!c->ram_size)
		c->ram_size = DEFAULT_RAM;
	if (!c->ncpus)
		c->ncpus = 1;
	if (!c->console || !strcmp(c->console, "serial")) {
		c->console_kind = CONSOLE_SERIAL;
	} else if (!strcmp(c->console, "virtio")) {
		c->console_kind = CONSOLE_VIRTIO;
	} else {
		pr_err("--console '%s': use serial or virtio", c->console);
		return -1;
	}
	if (!c->irqchip || !strcmp(c->irqchip, "split")) {
		c->irqchip_kind = IRQCHIP_SPLIT;
	} else if (!strcmp(c->irqchip, "kernel")) {
		c->irqchip_kind = IRQCHIP_KERNEL;
	} else {
		pr_err("--irqchip '%s': use split or kernel", c->irqchip);
		return -1;
	}
	if (c->ram_size & (MIB - 1)) {
		pr_err("-m: %llu bytes is not a whole number of MiB",
		       (unsigned long long)c->ram_size);
		return -1;
	}
	if (c->firmware && c->kernel) {
		pr_err("--firmware and --kernel cannot be used together");
		return -1;
	}
	if (check_file("kernel", c->kernel) ||
	    check_file("initrd", c->initrd) ||
	    check_file("firmware", c->firmware))
		return -1;
	return 0;
}

/*
 * --detach: forks before any set-up (a record lock is not inherited).
 * The parent waits until the child says the guest runs, by writing its
 * name to a pipe, then prints the name and exits 0; if the child fails
 * first, the parent exits with the child's status. Returns -1 in the
 * child (*notify: the pipe), the parent's exit status otherwise.
 */
static int detach(int *notify)
{
	char line[REGISTRY_NAME_MAX + 2];
	size_t len = 0;
	int p[2], st;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0) {
		pr_err("--detach: %s", strerror(errno));
		return LKVM_EXIT_ERROR;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		pr_err("--detach: cannot fork: %s", strerror(errno));
		return LKVM_EXIT_ERROR;
	}
	if (pid == 0) {
		/* No descriptor of the caller's stays open but stdio, which
		 * the guest's lkvm lets go once it runs: a shell reading our
		 * output sees its end when the parent exits. */
		if (p[1] > 3)
			close_range(3, (unsigned int)p[1] - 1, 0);
		close_range((unsigned int)p[1] + 1, ~0u, 0);
		setsid();
		*notify = p[1];
		return -1;
	}
	close(p[1]);
	for (;;) {
		ssize_t n = read(p[0], line + len, sizeof(line) - 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(p[0]);
	if (len && line[len - 1] == '\n') {
		fwrite(line, 1, len, stdout);
		return 0;
	}
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) && WEXITSTATUS(st) ? WEXITSTATUS(st) :
						  LKVM_EXIT_ERROR;
}

/* The end of the run, on the main loop's thread (machine_run()): the
 * socket goes first, then devices flush (machine_exit), then whoever
 * asked to stop or wait hears the status. */
static void run_end(struct machine *m, int status, void *reg)
{
	control_close(m);
	machine_exit(m);
	control_finish(m, status);
	registry_release(reg);
}

/* What the main loop's thread does beside set-up (machine_prepare): the
 * seccomp programs, then the guest's name and control socket. */
struct prep {
	struct registry_entry *reg;
	const char *name;
};

static int prepare(struct machine *m, void *arg)
{
	struct prep *p = arg;
	int err, fd;

	(void)confine_prepare(m);	/* confine_start() reports it */
	err = registry_claim(p->name, p->reg);
	if (err)
		return err;
	fd = registry_listen(p->reg);
	if (fd < 0)
		return fd;
	p->reg->sock_fd = fd;
	return 0;
}

int cmd_run(int argc, char **argv)
{
	struct machine m = { 0 };
	struct registry_entry reg = { .lock_fd = -1, .sock_fd = -1 };
	struct prep prep = { .reg = &reg };
	struct option_group g[64];
	char err[256], name[32];
	unsigned int ng;
	int i, status, notify = -1;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			help_run(stdout);
			return 0;
		}
		if (!strcmp(argv[i], "--"))
			break;
	}
	if (machine_setup_config(&m)) {
		pr_err("out of memory");
		return LKVM_EXIT_ERROR;
	}
	ng = option_groups(&m, g, 64);
	i = parse_options(g, ng, argc - 1, argv + 1, err, sizeof(err));
	if (i < 0) {
		fprintf(stderr, "lkvm run: %s\n", err);
		fprintf(stderr, "usage: lkvm run [OPTIONS]; see 'lkvm help run'\n");
		return LKVM_EXIT_ERROR;
	}
	if (i + 1 < argc) {
		fprintf(stderr, "lkvm run: unexpected argument '%s'\n",
			argv[i + 1]);
		fprintf(stderr, "usage: lkvm run [OPTIONS]; see 'lkvm help run'\n");
		return LKVM_EXIT_ERROR;
	}
	if (check_config(&m.cfg))
		return LKVM_EXIT_ERROR;
	if (m.cfg.detach && (status = detach(&notify)) >= 0)
		return status;
	if (!m.cfg.name) {
		snprintf(name, sizeof(name), "guest-%d", (int)getpid());
		m.cfg.name = name;
	}
	/* The main loop's thread fetches CPUID, builds the filters and
	 * claims the name while this one creates and sets up the machine. */
	prep.name = m.cfg.name;
	if (machine_prepare(&m, prepare, &prep)) {
		machine_exit(&m);
		return LKVM_EXIT_ERROR;
	}
	if ((m.cfg.console_log && term_open_log(m.cfg.console_log)) ||
	    machine_init(&m) || machine_prepared(&m) ||
	    control_start(&m, &reg, notify) || confine_start(&m, &reg)) {
		machine_exit(&m);
		registry_release(&reg);
		return LKVM_EXIT_ERROR;
	}
	return machine_run(&m, run_end, &reg);
}
