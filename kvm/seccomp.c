// SPDX-License-Identifier: GPL-2.0
/*
 * Confinement (docs/security.md): --user drops root once everything is
 * open, and a seccomp allowlist per thread class (lkvm/seccomp.h) keeps
 * a compromised device model from reaching the rest of the host.
 *
 * A forbidden call traps (SECCOMP_RET_TRAP) rather than killing
 * outright, so that lkvm can say which thread made which call before it
 * ends: one line on stderr, then exit status 128 + SIGSYS, as if killed
 * by that signal (lkvm's "stopped by signal N" status). The handler
 * only formats into a stack buffer and calls write() and exit_group(),
 * both allowed everywhere.
 */
#include "lkvm/seccomp.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/filter.h>
#include <linux/kvm.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "lkvm/device.h"
#include "lkvm/machine.h"
#include "lkvm/registry.h"
#include "lkvm/util.h"

/* ---- options ----------------------------------------------------------- */

struct confine_cfg {
	bool no_seccomp;
	const char *user;
	const char *violation;	/* --debug-seccomp-violation */
};

static const struct option confine_options[] = {
	{ .name = "no-seccomp", .type = OPT_BOOL,
	  .offset = offsetof(struct confine_cfg, no_seccomp),
	  .help = "no system call filter (for debugging; docs/security.md)" },
	{ .name = "user", .type = OPT_STRING,
	  .offset = offsetof(struct confine_cfg, user),
	  .argname = "USER|UID:GID",
	  .help = "drop root for this user once devices and sockets are open" },
	/* Hidden: makes THREAD (vcpu, main or io) make a forbidden CALL
	 * once it is confined, to show what a violation looks like
	 * (tests/confine.bats). */
	{ .name = "debug-seccomp-violation", .type = OPT_STRING,
	  .offset = offsetof(struct confine_cfg, violation),
	  .argname = "THREAD[:CALL]" },
	OPTION_END,
};

/* ---- the core allowlist ------------------------------------------------- */

#define ALL SECCOMP_ALL
#define MAIN SECCOMP_MAIN
#define VCPU SECCOMP_VCPU
#define IO SECCOMP_IO
#define MASKED(name, argno, m, v, cls)                                     \
	{ .nr = __NR_##name, .classes = (cls), .match = SECCOMP_ARG_MASKED, \
	  .arg = (argno), .mask = (m), .value = (v) }

/*
 * What a running guest needs. Set-up (opening files, creating the VM,
 * memory slots, vCPUs, sockets) is over before any filter exists, so
 * none of that is here: no open on vCPU or I/O threads, no socket
 * creation, no exec, no fork (clone only with CLONE_THREAD), no
 * executable mappings, no credential changes, and of the KVM ioctls
 * only the ones a running machine uses.
 */
static const struct seccomp_rule core_rules[] = {
	/* The C library and threads. */
	SECCOMP_SYSCALL(read, ALL), SECCOMP_SYSCALL(write, ALL),
	SECCOMP_SYSCALL(readv, ALL), SECCOMP_SYSCALL(writev, ALL),
	SECCOMP_SYSCALL(close, ALL), SECCOMP_SYSCALL(futex, ALL),
	MASKED(mmap, 2, PROT_EXEC, 0, ALL),
	MASKED(mprotect, 2, PROT_EXEC, 0, ALL),
	SECCOMP_SYSCALL(munmap, ALL), SECCOMP_SYSCALL(mremap, ALL),
	SECCOMP_SYSCALL(madvise, ALL), SECCOMP_SYSCALL(brk, ALL),
	SECCOMP_SYSCALL(exit, ALL), SECCOMP_SYSCALL(exit_group, ALL),
	SECCOMP_SYSCALL(rt_sigprocmask, ALL),
	SECCOMP_SYSCALL(rt_sigreturn, ALL),
	SECCOMP_SYSCALL(restart_syscall, ALL),
	SECCOMP_SYSCALL(getpid, ALL), SECCOMP_SYSCALL(gettid, ALL),
	SECCOMP_SYSCALL(tgkill, ALL),	/* vCPU kicks */
	/* The vDSO answers these, except where the host's clock source
	 * makes it fall back to the system call. */
	SECCOMP_SYSCALL(clock_gettime, ALL), SECCOMP_SYSCALL(gettimeofday, ALL),
	SECCOMP_SYSCALL(time, ALL),
	SECCOMP_SYSCALL(clock_nanosleep, ALL),
	SECCOMP_SYSCALL(nanosleep, ALL), SECCOMP_SYSCALL(sched_yield, ALL),
	SECCOMP_SYSCALL(set_robust_list, ALL), SECCOMP_SYSCALL(rseq, ALL),
	MASKED(clone, 0, CLONE_THREAD, CLONE_THREAD, ALL),
	SECCOMP_SYSCALL_ARG(prctl, 0, PR_SET_NAME, ALL),
	SECCOMP_SYSCALL_ARG(prctl, 0, PR_GET_NAME, ALL),
	SECCOMP_SYSCALL(getrandom, ALL),
	/* Each thread narrows itself; a filter can only take away. */
	SECCOMP_SYSCALL_ARG(seccomp, 0, SECCOMP_SET_MODE_FILTER, ALL),
	SECCOMP_SYSCALL(lseek, ALL), SECCOMP_SYSCALL(fstat, ALL),
	SECCOMP_SYSCALL(newfstatat, ALL), SECCOMP_SYSCALL(fcntl, ALL),
	/* Event loops: the main loop, I/O threads, ioeventfds and irqfds
	 * that a vCPU sets up when the guest enables a queue or vector. */
	SECCOMP_SYSCALL(epoll_wait, ALL), SECCOMP_SYSCALL(epoll_pwait, ALL),
	SECCOMP_SYSCALL(epoll_ctl, ALL), SECCOMP_SYSCALL(poll, ALL),
	SECCOMP_SYSCALL(ppoll, ALL), SECCOMP_SYSCALL(eventfd2, ALL),
	SECCOMP_SYSCALL(timerfd_settime, ALL),
	SECCOMP_SYSCALL(timerfd_gettime, ALL),
	/* Disk I/O (the block device's requests start on vCPU threads and
	 * complete on I/O threads; the main loop flushes at the end). */
	SECCOMP_SYSCALL(pread64, ALL), SECCOMP_SYSCALL(pwrite64, ALL),
	SECCOMP_SYSCALL(preadv, ALL), SECCOMP_SYSCALL(pwritev, ALL),
	SECCOMP_SYSCALL(preadv2, ALL),
	SECCOMP_SYSCALL(pwritev2, ALL),	/* qcow2 metadata, RWF_DSYNC */
	SECCOMP_SYSCALL(fsync, ALL), SECCOMP_SYSCALL(fdatasync, ALL),
	SECCOMP_SYSCALL(io_submit, ALL), SECCOMP_SYSCALL(io_getevents, ALL),
	SECCOMP_SYSCALL(io_cancel, ALL), SECCOMP_SYSCALL(io_destroy, MAIN),
	/* Connected sockets: console clients get the guest's output from
	 * the vCPU that printed it; control replies. */
	SECCOMP_SYSCALL(sendmsg, ALL), SECCOMP_SYSCALL(sendto, ALL),
	SECCOMP_SYSCALL(recvmsg, MAIN | IO),
	/* ALL: a vCPU in a KVMI event reads its own reply (kvm/introspect.c). */
	SECCOMP_SYSCALL(recvfrom, ALL),
	/* The control socket (kvm/control.c): new clients, their
	 * credentials, SCM_RIGHTS; at the end the registry entry and the
	 * exit record (kvm/registry.c). */
	SECCOMP_SYSCALL(accept4, MAIN), SECCOMP_SYSCALL(getsockopt, MAIN),
	SECCOMP_SYSCALL(shutdown, MAIN), SECCOMP_SYSCALL(geteuid, MAIN),
	SECCOMP_SYSCALL(getuid, MAIN), SECCOMP_SYSCALL(openat, MAIN),
	SECCOMP_SYSCALL(mincore, MAIN),	/* resident guest memory, for stat */
	SECCOMP_SYSCALL(ftruncate, MAIN),	/* a core file a client passed */
	SECCOMP_SYSCALL(rename, MAIN), SECCOMP_SYSCALL(unlink, MAIN),
	SECCOMP_SYSCALL(dup2, MAIN), SECCOMP_SYSCALL(dup3, MAIN),
	/* The main loop's own set-up, after the vCPUs start. */
	SECCOMP_SYSCALL(signalfd4, MAIN), SECCOMP_SYSCALL(rt_sigaction, MAIN),
	SECCOMP_SYSCALL(pipe2, MAIN),	/* the stdin reader (util/term.c) */

	/* KVM: running vCPUs, and only there. */
	SECCOMP_IOCTL(KVM_RUN, VCPU),
	/* vCPU state: the vCPU itself, control requests on the main loop,
	 * the introspection server. */
	SECCOMP_IOCTL(KVM_GET_REGS, ALL), SECCOMP_IOCTL(KVM_SET_REGS, ALL),
	SECCOMP_IOCTL(KVM_GET_SREGS, ALL), SECCOMP_IOCTL(KVM_SET_SREGS, ALL),
	SECCOMP_IOCTL(KVM_GET_FPU, ALL), SECCOMP_IOCTL(KVM_SET_FPU, ALL),
	SECCOMP_IOCTL(KVM_GET_MSRS, ALL), SECCOMP_IOCTL(KVM_SET_MSRS, ALL),
	SECCOMP_IOCTL(KVM_GET_LAPIC, ALL), SECCOMP_IOCTL(KVM_SET_LAPIC, ALL),
	SECCOMP_IOCTL(KVM_GET_VCPU_EVENTS, ALL),
	SECCOMP_IOCTL(KVM_SET_VCPU_EVENTS, ALL),
	SECCOMP_IOCTL(KVM_GET_DEBUGREGS, ALL),
	SECCOMP_IOCTL(KVM_SET_DEBUGREGS, ALL),
	SECCOMP_IOCTL(KVM_GET_MP_STATE, ALL),
	SECCOMP_IOCTL(KVM_SET_MP_STATE, ALL),
	SECCOMP_IOCTL(KVM_SET_GUEST_DEBUG, ALL),
	SECCOMP_IOCTL(KVM_TRANSLATE, ALL), SECCOMP_IOCTL(KVM_NMI, ALL),
	SECCOMP_IOCTL(KVM_INTERRUPT, ALL),
	SECCOMP_IOCTL(KVM_GET_CPUID2, ALL), SECCOMP_IOCTL(KVM_GET_TSC_KHZ, ALL),
	/* The VM: interrupts, notifications, MSI routes the guest
	 * programs, statistics, dumps. */
	SECCOMP_IOCTL(KVM_IRQ_LINE, ALL), SECCOMP_IOCTL(KVM_SIGNAL_MSI, ALL),
	SECCOMP_IOCTL(KVM_IRQFD, ALL), SECCOMP_IOCTL(KVM_IOEVENTFD, ALL),
	SECCOMP_IOCTL(KVM_SET_GSI_ROUTING, ALL),
	SECCOMP_IOCTL(KVM_GET_IRQCHIP, ALL), SECCOMP_IOCTL(KVM_SET_IRQCHIP, ALL),
	SECCOMP_IOCTL(KVM_GET_DIRTY_LOG, ALL),
	SECCOMP_IOCTL(KVM_CHECK_EXTENSION, ALL),
	SECCOMP_IOCTL(KVM_GET_STATS_FD, MAIN),
	/* The terminal, restored by whichever thread ends the run. */
	SECCOMP_IOCTL(TCGETS, ALL), SECCOMP_IOCTL(TCSETS, ALL),
	SECCOMP_IOCTL(TCSETSW, ALL), SECCOMP_IOCTL(TCSETSF, ALL),
	SECCOMP_IOCTL(TIOCGWINSZ, ALL),
	SECCOMP_END,
};

const struct seccomp_rule *seccomp_core_rules(void)
{
	return core_rules;
}

/* ---- the filters ----------------------------------------------------------- */

enum { CLASS_MAIN, CLASS_VCPU, CLASS_IO, NCLASS };

static const char *const class_name[NCLASS] = { "main", "vcpu", "io" };

struct bpf {
	struct sock_fprog prog;
	void *buf;
};

/* Built once, by confine_prepare() or confine_start(); read by every
 * thread after. */
static struct bpf all_bpf;
static struct bpf class_bpf[NCLASS];
static bool filters_built;
static bool filters_ready;
static int violation_class = -1;
static enum { V_EXEC, V_IOCTL, V_MMAP_EXEC, V_INT80 } violation_call;

/* Per thread: its class once narrowed. */
static __thread int thread_class = -1;

/* The core calls and those of every device the options ask for: the
 * process-wide program (SECCOMP_ALL), or a class's narrowing of it. */
static int build(struct machine *m, unsigned int classes, struct bpf *out)
{
	unsigned int n, nt = 0;
	const struct device_ops *const *devs = device_list(&n);
	const struct seccomp_rule **tables = calloc(n + 1, sizeof(*tables));
	int err;

	if (!tables)
		return -ENOMEM;
	tables[nt++] = core_rules;
	for (unsigned int i = 0; i < n; i++)
		if (devs[i]->seccomp && (!devs[i]->seccomp_wanted ||
					 devs[i]->seccomp_wanted(m)))
			tables[nt++] = devs[i]->seccomp;
	err = classes == SECCOMP_ALL ?
		      seccomp_bpf_build(tables, nt, classes, &out->prog) :
		      seccomp_bpf_build_narrowing(tables, nt, classes,
						  &out->prog);
	free(tables);
	out->buf = err ? NULL : out->prog.filter;
	return err;
}

static int load(const struct bpf *b, unsigned int flags)
{
	long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags,
			 &b->prog);

	if (r < 0)
		return -errno;
	return r ? -EBUSY : 0;	/* TSYNC: a thread that could not follow */
}

/* ---- the report ------------------------------------------------------------ */

static char *put_str(char *p, char *end, const char *s)
{
	while (*s && p < end)
		*p++ = *s++;
	return p;
}

static char *put_uint(char *p, char *end, unsigned int v)
{
	char d[12];
	int n = 0;

	do
		d[n++] = (char)('0' + v % 10);
	while ((v /= 10) && n < (int)sizeof(d));
	while (n && p < end)
		*p++ = d[--n];
	return p;
}

static const char *const syscall_names[] = {
#include "syscall-names.h"
};

static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
	char line[320], *p = line, *end = line + sizeof(line) - 1;
	char name[17] = "?";
	unsigned int nr = (unsigned int)si->si_syscall;
	const char *call = nr < ARRAY_SIZE(syscall_names) &&
				   syscall_names[nr] ? syscall_names[nr] :
						       "unknown";

	(void)uc;
	prctl(PR_GET_NAME, name);
	p = put_str(p, end, "lkvm: seccomp: thread '");
	p = put_str(p, end, name);
	p = put_str(p, end, "' (");
	p = put_str(p, end, thread_class >= 0 ? class_name[thread_class] :
						"any");
	p = put_str(p, end, " filter) made system call ");
	p = put_str(p, end, call);
	p = put_str(p, end, " (");
	p = put_uint(p, end, nr);
	p = put_str(p, end, "), which lkvm does not allow; stopping "
			     "(--no-seccomp turns the filter off)");
	*p++ = '\n';
	if (write(STDERR_FILENO, line, (size_t)(p - line)) < 0)
		(void)0;	/* nowhere else to say it */
	syscall(SYS_exit_group, 128 + sig);
}

/* ---- per thread -------------------------------------------------------------- */

static int class_index(enum seccomp_class cls)
{
	switch (cls) {
	case SECCOMP_MAIN:
		return CLASS_MAIN;
	case SECCOMP_VCPU:
		return CLASS_VCPU;
	case SECCOMP_IO:
		return CLASS_IO;
	default:
		return -1;
	}
}

/* What a compromised device model might try. */
static void violate(void)
{
	char *const argv[] = { "/bin/true", NULL };

	switch (violation_call) {
	case V_EXEC:
		execve(argv[0], argv, argv + 1);
		break;
	case V_IOCTL:
		/* The filter looks at the request before the kernel looks at
		 * the descriptor. */
		ioctl(-1, KVM_CREATE_VCPU, 0);
		break;
	case V_MMAP_EXEC:
		mmap(NULL, 4096, PROT_READ | PROT_EXEC,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		break;
	case V_INT80: {
		long nr = 20;	/* getpid in the i386 table */

		__asm__ volatile("int $0x80" : "+a"(nr) : : "memory");
		break;
	}
	}
}

/* --debug-seccomp-violation THREAD[:CALL] */
static int parse_violation(const char *spec)
{
	static const char *const calls[] = { "exec", "ioctl", "mmap-exec",
					     "int80" };
	const char *colon = strchr(spec, ':');
	size_t len = colon ? (size_t)(colon - spec) : strlen(spec);

	for (int c = 0; c < NCLASS; c++)
		if (strlen(class_name[c]) == len &&
		    !strncmp(spec, class_name[c], len))
			violation_class = c;
	if (violation_class < 0)
		return -EINVAL;
	if (!colon)
		return 0;
	for (size_t i = 0; i < ARRAY_SIZE(calls); i++) {
		if (!strcmp(colon + 1, calls[i])) {
			violation_call = (int)i;
			return 0;
		}
	}
	return -EINVAL;
}

void seccomp_thread_enter(enum seccomp_class cls)
{
	int c = class_index(cls), err;

	if (thread_class >= 0 || c < 0 ||
	    !__atomic_load_n(&filters_ready, __ATOMIC_ACQUIRE))
		return;
	thread_class = c;
	err = load(&class_bpf[c], 0);
	if (err) {
		/* The process-wide filter still holds this thread. */
		pr_warn("seccomp: cannot narrow a %s thread: %s",
			class_name[c], strerror(-err));
		return;
	}
	if (violation_class == c)
		violate();
}

/* ---- --user ---------------------------------------------------------------- */

static int parse_user(const char *spec, uid_t *uid, gid_t *gid)
{
	const char *colon = strchr(spec, ':');
	uint64_t u, g;

	if (colon) {
		char ubuf[32];
		size_t ulen = (size_t)(colon - spec);

		if (ulen >= sizeof(ubuf))
			return -EINVAL;
		memcpy(ubuf, spec, ulen);
		ubuf[ulen] = '\0';
		if (!parse_uint(ubuf, 0, 0xfffffffeu, &u) ||
		    !parse_uint(colon + 1, 0, 0xfffffffeu, &g))
			return -EINVAL;
		*uid = (uid_t)u;
		*gid = (gid_t)g;
		return 0;
	}
	return passwd_lookup(spec, uid, gid, NULL, 0) ? 0 : -ENOENT;
}

/* The user must be able to keep and finally remove its registry entry,
 * and its clients to reach the socket. */
static bool dir_usable(const char *dir, uid_t uid, gid_t gid)
{
	struct stat st;
	mode_t need;

	if (stat(dir, &st) < 0)
		return false;
	need = st.st_uid == uid ? S_IWUSR | S_IXUSR :
	       st.st_gid == gid ? S_IWGRP | S_IXGRP :
				  S_IWOTH | S_IXOTH;
	return (st.st_mode & need) == need;
}

static int drop_user(struct registry_entry *reg, const char *spec)
{
	const char *dir = reg ? reg->dir : NULL;
	uid_t uid;
	gid_t gid;
	int err = parse_user(spec, &uid, &gid);

	if (err) {
		pr_err("--user %s: %s", spec,
		       err == -ENOENT ? "no such user in /etc/passwd" :
					"use a user name or UID:GID");
		return err;
	}
	if (geteuid() != 0) {
		if (uid == geteuid() && gid == getegid())
			return 0;
		pr_err("--user %s: only root can become another user", spec);
		return -EPERM;
	}
	if (uid == 0) {
		pr_err("--user %s: is root; name an unprivileged user", spec);
		return -EINVAL;
	}
	if (dir && !dir_usable(dir, uid, gid)) {
		pr_err("--user %s: cannot write the registry directory %s; set LKVM_HOME to a directory it owns",
		       spec, dir);
		return -EACCES;
	}
	err = reg ? registry_chown(reg, uid, gid) : 0;
	if (err) {
		pr_err("--user %s: cannot hand over the control socket: %s",
		       spec, strerror(-err));
		return err;
	}
	/* Groups first, while still allowed to change them; glibc applies
	 * each change to every thread. No supplementary groups: /dev/kvm
	 * and the disks are open already. */
	if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 ||
	    setresuid(uid, uid, uid) < 0) {
		err = -errno;
		pr_err("--user %s: cannot drop root: %s", spec, strerror(-err));
		return err;
	}
	/* No way back. */
	if (setuid(0) == 0 || seteuid(0) == 0) {
		pr_err("--user %s: root could be regained; refusing to run", spec);
		return -EPERM;
	}
	return 0;
}

/* ---- start --------------------------------------------------------------------- */

static const struct device_ops confine_ops;

/* The process-wide program in all_bpf, each class's in class_bpf[]. */
static int build_all(struct machine *m)
{
	int err;

	if (filters_built)
		return 0;
	err = build(m, SECCOMP_ALL, &all_bpf);
	for (int c = 0; !err && c < NCLASS; c++)
		err = build(m, 1u << c, &class_bpf[c]);
	filters_built = !err;
	return err;
}

int confine_prepare(struct machine *m)
{
	struct confine_cfg *cfg = machine_dev_cfg(m, &confine_ops);

	return cfg && !cfg->no_seccomp ? build_all(m) : 0;
}

int confine_start(struct machine *m, struct registry_entry *reg)
{
	struct confine_cfg *cfg = machine_dev_cfg(m, &confine_ops);
	struct sigaction sa = { .sa_sigaction = on_sigsys,
				.sa_flags = SA_SIGINFO };
	int err;

	if (!cfg)
		return 0;
	if (cfg->violation && parse_violation(cfg->violation)) {
		pr_err("--debug-seccomp-violation %s: use vcpu, main or io, then :exec, :ioctl or :mmap-exec",
		       cfg->violation);
		err = -EINVAL;
		goto out;
	}
	if (cfg->user && (err = drop_user(reg, cfg->user)))
		goto out;
	if (cfg->no_seccomp)
		return 0;

	err = build_all(m);
	if (err) {
		pr_err("seccomp: cannot build the filters: %s", strerror(-err));
		goto out;
	}
	sigaction(SIGSYS, &sa, NULL);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    (err = load(&all_bpf, SECCOMP_FILTER_FLAG_TSYNC)) < 0) {
		if (!err)
			err = -errno;
		pr_err("seccomp: cannot install the filter: %s (--no-seccomp runs without)",
		       strerror(-err));
		goto out;
	}
	__atomic_store_n(&filters_ready, true, __ATOMIC_RELEASE);
out:
	return err;
}

static const struct device_ops confine_ops = {
	.name = "confinement",
	.stage = DEV_STAGE_LATE,
	.options = confine_options,
	.cfg_size = sizeof(struct confine_cfg),
};
DEVICE(confine_ops);
