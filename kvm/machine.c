// SPDX-License-Identifier: GPL-2.0
/*
 * The machine: guest memory, devices, vCPU threads and the main loop.
 *
 * Threads: one per vCPU, each looping on KVM_RUN and dispatching its own
 * exits to the buses; the main thread runs an epoll loop for host input,
 * signals and device file descriptors. machine_stop() is the only way to
 * end a run: it records the status, kicks every vCPU out of KVM_RUN and
 * wakes the main loop, which then joins the vCPU threads.
 */
#include "lkvm/machine.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "lkvm/arch.h"
#include "lkvm/control.h"
#include "lkvm/seccomp.h"
#include "lkvm/stats.h"
#include "lkvm/term.h"
#include "lkvm/util.h"
#include "lkvm/vcpu.h"

#define SIG_KICK VCPU_KICK_SIGNAL

struct fd_watch {
	struct fd_watch *next;
	int fd;
	fd_handler_fn fn;
	void *opaque;
};

/* ---- device registry ---------------------------------------------- */

extern const struct device_ops *const __start_lkvm_devices[];
extern const struct device_ops *const __stop_lkvm_devices[];

/* Keeps the section present even in a build with no device at all. */
static const struct device_ops *const no_device
	__attribute__((used, section("lkvm_devices"))) = NULL;

static int dev_cmp(const void *a, const void *b)
{
	const struct device_ops *x = *(const struct device_ops *const *)a;
	const struct device_ops *y = *(const struct device_ops *const *)b;

	if (x->stage != y->stage)
		return (int)x->stage - (int)y->stage;
	return strcmp(x->name, y->name);
}

static const struct device_ops **sorted_devs;
static unsigned int ndevs;
static pthread_once_t devs_once = PTHREAD_ONCE_INIT;

static void build_device_list(void)
{
	size_t max = (size_t)(__stop_lkvm_devices - __start_lkvm_devices);

	sorted_devs = calloc(max ? max : 1, sizeof(*sorted_devs));
	if (!sorted_devs)
		abort();
	for (size_t i = 0; i < max; i++)
		if (__start_lkvm_devices[i])
			sorted_devs[ndevs++] = __start_lkvm_devices[i];
	qsort(sorted_devs, ndevs, sizeof(*sorted_devs), dev_cmp);
}

const struct device_ops *const *device_list(unsigned int *n)
{
	pthread_once(&devs_once, build_device_list);
	*n = ndevs;
	return sorted_devs;
}

int machine_setup_config(struct machine *m)
{
	const struct device_ops *const *devs = device_list(&m->ndev);

	/* machine_exit() may follow at once: nothing to close yet. */
	m->epoll_fd = -1;
	m->wake_fd = -1;
	m->dev_cfg = calloc(m->ndev ? m->ndev : 1, sizeof(*m->dev_cfg));
	if (!m->dev_cfg)
		return -ENOMEM;
	for (unsigned int i = 0; i < m->ndev; i++) {
		m->dev_cfg[i] = calloc(1, devs[i]->cfg_size ? devs[i]->cfg_size :
							      1);
		if (!m->dev_cfg[i])
			return -ENOMEM;
	}
	return 0;
}

void *machine_dev_cfg(struct machine *m, const struct device_ops *ops)
{
	unsigned int n;
	const struct device_ops *const *devs = device_list(&n);

	for (unsigned int i = 0; i < n && i < m->ndev && m->dev_cfg; i++)
		if (devs[i] == ops)
			return m->dev_cfg[i];
	return NULL;
}

/* ---- guest memory --------------------------------------------------- */

int machine_add_memory(struct machine *m, uint64_t gpa, uint64_t size,
		       void *host, bool readonly)
{
	struct mem_region *r;
	int err;

	if (m->nmem >= MACHINE_MAX_REGIONS || !size || gpa + size < gpa)
		return -EINVAL;
	for (unsigned int i = 0; i < m->nmem; i++)
		if (gpa < m->mem[i].gpa + m->mem[i].size &&
		    m->mem[i].gpa < gpa + size)
			return -EEXIST;
	r = &m->mem[m->nmem];
	*r = (struct mem_region){ gpa, size, host, m->nmem, readonly };
	if (m->kvm) {
		err = kvm_set_memory_region(m->kvm, r->slot, gpa, size, host,
					    readonly ? KVM_MEM_READONLY : 0);
		if (err)
			return err;
	}
	m->nmem++;
	return 0;
}

void *guest_ptr(struct machine *m, uint64_t gpa, uint64_t len)
{
	for (unsigned int i = 0; i < m->nmem; i++) {
		const struct mem_region *r = &m->mem[i];

		if (gpa >= r->gpa && gpa - r->gpa <= r->size &&
		    len <= r->size - (gpa - r->gpa))
			return (char *)r->host + (gpa - r->gpa);
	}
	return NULL;
}

int guest_read(struct machine *m, uint64_t gpa, void *buf, uint64_t len)
{
	void *p = guest_ptr(m, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(buf, p, len);
	return 0;
}

int guest_write(struct machine *m, uint64_t gpa, const void *buf,
		uint64_t len)
{
	void *p = guest_ptr(m, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(p, buf, len);
	return 0;
}

/* ---- interrupts and I/O registration -------------------------------- */

int machine_irq_line(struct machine *m, unsigned int gsi, int level)
{
	if (m->irqchip)
		return arch_irq_line(m, gsi, level);
	return m->kvm ? kvm_irq_line(m->kvm, gsi, level) : 0;
}

unsigned int machine_alloc_gsi(struct machine *m)
{
	/* GSIs 16-23 are the I/O APIC inputs no ISA device uses. */
	unsigned int gsi;

	if (m->next_gsi < 16 || m->next_gsi > 23)
		m->next_gsi = 16;
	gsi = m->next_gsi++;
	return gsi;
}

static int reg(struct machine *m, struct iobus *bus, const char *kind,
	       uint64_t base, uint64_t len, io_handler_fn fn, void *opaque,
	       const char *name)
{
	int err = iobus_register(bus, base, len, fn, opaque, name, NULL);

	if (err)
		pr_err("%s: cannot claim %s range 0x%llx-0x%llx: %s", name,
		       kind, (unsigned long long)base,
		       (unsigned long long)(base + len - 1),
		       err == -EEXIST ? "already in use" : strerror(-err));
	(void)m;
	return err;
}

int machine_register_pio(struct machine *m, uint16_t base, uint16_t len,
			 io_handler_fn fn, void *opaque, const char *name)
{
	return reg(m, m->pio, "I/O port", base, len, fn, opaque, name);
}

int machine_register_mmio(struct machine *m, uint64_t base, uint64_t len,
			  io_handler_fn fn, void *opaque, const char *name)
{
	return reg(m, m->mmio, "MMIO", base, len, fn, opaque, name);
}

/* ---- main loop plumbing --------------------------------------------- */

int machine_watch_fd(struct machine *m, int fd, fd_handler_fn fn,
		     void *opaque)
{
	struct fd_watch *w = calloc(1, sizeof(*w));
	struct epoll_event ev = { .events = EPOLLIN };

	if (!w)
		return -ENOMEM;
	*w = (struct fd_watch){ m->watches, fd, fn, opaque };
	ev.data.ptr = w;
	if (epoll_ctl(m->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int err = -errno;

		free(w);
		return err;
	}
	m->watches = w;
	return 0;
}

int machine_unwatch_fd(struct machine *m, int fd)
{
	for (struct fd_watch **p = &m->watches; *p; p = &(*p)->next) {
		if ((*p)->fd == fd) {
			struct fd_watch *w = *p;

			epoll_ctl(m->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
			*p = w->next;
			/* The loop may still hold events for it: defer. */
			w->fn = NULL;
			w->next = NULL;
			free(w);
			return 0;
		}
	}
	return -ENOENT;
}

void machine_set_console_input(struct machine *m, console_input_fn fn,
			       void *opaque)
{
	m->console_in = fn;
	m->console_in_opaque = opaque;
}

bool machine_stopping(const struct machine *m)
{
	return __atomic_load_n(&m->stopping, __ATOMIC_ACQUIRE);
}

void machine_stop(struct machine *m, int status)
{
	uint64_t one = 1;

	if (__atomic_exchange_n(&m->stopping, true, __ATOMIC_ACQ_REL))
		return;
	m->exit_status = status;
	for (unsigned int i = 0; m->vcpus && i < m->ncpus; i++)
		if (m->vcpus[i].kvm)
			kvm_vcpu_kick(m->vcpus[i].kvm, SIG_KICK);
	if (m->wake_fd >= 0 && write(m->wake_fd, &one, sizeof(one)) < 0)
		(void)0;	/* the loop is awake already */
}

void machine_dump_vcpu(struct machine *m, struct vcpu *v, const char *why)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

	pthread_mutex_lock(&lock);
	term_restore();
	fprintf(stderr, "lkvm: vCPU %u: %s\n", v->id, why);
	arch_dump_vcpu(m, v, stderr);
	fflush(stderr);
	pthread_mutex_unlock(&lock);
}

/* ---- exits ----------------------------------------------------------- */

static int on_pio(void *opaque, struct kvm_vcpu *kv, uint16_t port,
		  bool is_write, void *data, unsigned int size,
		  unsigned int count)
{
	struct machine *m = opaque;
	char *p = data;

	for (unsigned int i = 0; i < count; i++, p += size)
		iobus_access(m->pio, kv, port, p, size, is_write);
	return KVM_CONTINUE;
}

static int on_mmio(void *opaque, struct kvm_vcpu *kv, uint64_t gpa,
		   bool is_write, void *data, unsigned int len)
{
	struct machine *m = opaque;

	iobus_access(m->mmio, kv, gpa, data, len, is_write);
	return KVM_CONTINUE;
}

static int on_wrmsr(void *opaque, struct kvm_vcpu *kv, uint32_t index,
		    uint64_t data)
{
	struct machine *m = opaque;

	return m->wrmsr ? m->wrmsr(m, kvm_vcpu_opaque(kv), index, data) :
			  KVM_MSR_FAULT;
}

static int crash(struct machine *m, struct kvm_vcpu *kv, const char *why)
{
	machine_dump_vcpu(m, kvm_vcpu_opaque(kv), why);
	machine_stop(m, LKVM_EXIT_CRASH);
	return 1;
}

static int on_shutdown(void *opaque, struct kvm_vcpu *kv)
{
	return crash(opaque, kv, "triple fault (shutdown)");
}

static int on_system_event(void *opaque, struct kvm_vcpu *kv, uint32_t type)
{
	struct machine *m = opaque;

	switch (type) {
	case KVM_SYSTEM_EVENT_SHUTDOWN:
	case KVM_SYSTEM_EVENT_RESET:
		machine_stop(m, LKVM_EXIT_OK);
		return 1;
	}
	return crash(m, kv, "guest crash event");
}

static int on_unhandled(void *opaque, struct kvm_vcpu *kv, struct kvm_run *run)
{
	char why[128];

	switch (run->exit_reason) {
	case KVM_EXIT_INTERNAL_ERROR:
		snprintf(why, sizeof(why),
			 "KVM internal error (suberror %u)",
			 run->internal.suberror);
		break;
	case KVM_EXIT_FAIL_ENTRY:
		snprintf(why, sizeof(why),
			 "VM entry failed (hardware reason 0x%llx)",
			 (unsigned long long)
				 run->fail_entry.hardware_entry_failure_reason);
		break;
	default:
		snprintf(why, sizeof(why), "unhandled exit reason %u",
			 run->exit_reason);
	}
	return crash(opaque, kv, why);
}

static int on_debug(void *opaque, struct kvm_vcpu *kv,
		    struct kvm_debug_exit_arch *arch)
{
	(void)opaque;
	return vcpu_debug_exit(kvm_vcpu_opaque(kv), arch);
}

static int on_eoi(void *opaque, struct kvm_vcpu *kv, uint8_t vector)
{
	struct machine *m = opaque;

	if (m->irqchip)
		arch_eoi(m, kvm_vcpu_opaque(kv), vector);
	return KVM_CONTINUE;
}

static const struct kvm_callbacks callbacks = {
	.pio = on_pio,
	.mmio = on_mmio,
	.wrmsr = on_wrmsr,
	.debug = on_debug,
	.shutdown = on_shutdown,
	.system_event = on_system_event,
	.eoi = on_eoi,
	.unhandled = on_unhandled,
};

/* ---- set-up ------------------------------------------------------------ */

static const long core_caps[] = {
	KVM_CAP_USER_MEMORY, KVM_CAP_IMMEDIATE_EXIT, KVM_CAP_IOEVENTFD,
	KVM_CAP_IRQFD, KVM_CAP_MP_STATE, 0,
};

/*
 * Creating the VM is the largest part of start-up, and nothing before it
 * needs option parsing's results beyond the device's path, so
 * machine_prepare() creates it first thing, and open_kvm() takes the
 * result and reports its errors in order.
 */
struct kvm_opening {
	struct kvm_ctx *kvm;
	enum kvm_open_error why;
	int err;
};

static const char *kvm_device_path(void)
{
	const char *path = getenv("LKVM_KVM_DEVICE");

	return path && *path ? path : "/dev/kvm";
}

/* The early opening's result, if there is one (false if not); its
 * context becomes m->kvm. */
static bool opening_join(struct machine *m, enum kvm_open_error *why,
			 int *err)
{
	struct kvm_opening *o = m->opening;

	if (!o)
		return false;
	m->kvm = o->kvm;
	*why = o->why;
	*err = o->err;
	free(o);
	m->opening = NULL;
	return true;
}

static int open_kvm(struct machine *m)
{
	const char *path = kvm_device_path();
	enum kvm_open_error why;
	long missing;
	int err;

	/* After a failed KVM_CREATE_VM, m->kvm holds the open device, which
	 * the thread of machine_prepare() may still be asking: machine_exit()
	 * closes it. */
	if (!opening_join(m, &why, &err))
		err = kvm_open(&m->kvm, path, &callbacks, m, &why);
	switch (why) {
	case KVM_OPEN_OK:
		break;
	case KVM_OPEN_NO_DEVICE:
		pr_err("%s: no such device: KVM is not available (is the kvm module loaded?)",
		       path);
		return err;
	case KVM_OPEN_PERMISSION:
		pr_err("%s: permission denied: run as root or as a member of the group that owns it",
		       path);
		return err;
	case KVM_OPEN_FAILED:
		pr_err("%s: cannot open: %s", path, strerror(-err));
		return err;
	case KVM_OPEN_API_VERSION:
		pr_err("%s: not a KVM device with API version %d", path,
		       KVM_API_VERSION);
		return err;
	case KVM_OPEN_CREATE_VM:
		pr_err("%s: cannot create a virtual machine: %s", path,
		       strerror(-err));
		return err;
	}
	missing = kvm_require_caps(m->kvm, core_caps);
	if (!missing)
		missing = kvm_require_caps(m->kvm, arch_required_caps);
	if (missing) {
		pr_err("%s: KVM lacks %s, which lkvm needs", path,
		       kvm_cap_name(missing));
		return -ENOTSUP;
	}
	return 0;
}

static int check_cpus(struct machine *m)
{
	int max = kvm_check_extension(m->kvm, KVM_CAP_MAX_VCPUS);

	if (max <= 0)
		max = kvm_check_extension(m->kvm, KVM_CAP_NR_VCPUS);
	if (max <= 0)
		max = 4;
	/* xAPIC IDs are 8 bits and the I/O APIC takes the ID after the
	 * last CPU in the MP table. */
	if (max > 254)
		max = 254;
	if (m->cfg.ncpus > (unsigned int)max) {
		pr_err("-c %u: at most %d vCPUs are possible here", m->cfg.ncpus,
		       max);
		return -EINVAL;
	}
	return 0;
}

static int setup_memory(struct machine *m)
{
	struct ram_range r[MACHINE_MAX_REGIONS];
	unsigned int n = arch_memory_layout(m->cfg.ram_size, r, ARRAY_SIZE(r));
	struct sysinfo si;
	uint64_t off = 0;
	char *ram;

	/* Refuse at start what the host cannot back, rather than dying
	 * later when the guest touches it. */
	if (!sysinfo(&si)) {
		uint64_t host = ((uint64_t)si.totalram + si.totalswap) *
				si.mem_unit;

		if (m->cfg.ram_size > host) {
			pr_err("-m %llu MiB: more than the host's memory (%llu MiB)",
			       (unsigned long long)(m->cfg.ram_size >> 20),
			       (unsigned long long)(host >> 20));
			return -ENOMEM;
		}
	}
	ram = mmap(NULL, m->cfg.ram_size, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (ram == MAP_FAILED) {
		pr_err("-m %llu MiB: cannot allocate guest memory: %s",
		       (unsigned long long)(m->cfg.ram_size >> 20),
		       strerror(errno));
		return -ENOMEM;
	}
	m->ram_size = m->cfg.ram_size;
	/* Transparent huge pages for guest RAM, as QEMU asks: a host that
	 * copies a 1 MiB request into 4 KiB pages spends a third more CPU
	 * on it (bench/blk.sh). Not the first 2 MiB, where small guests and
	 * boot code live: a huge page there would be zeroed at once, on the
	 * way to the first instruction. Only advice: THP may be off. */
	if (m->ram_size > (4u << 20))
		madvise(ram + (2u << 20), m->ram_size - (2u << 20),
			MADV_HUGEPAGE);
	for (unsigned int i = 0; i < n; i++) {
		int err = machine_add_memory(m, r[i].gpa, r[i].size, ram + off,
					     false);

		if (err) {
			pr_err("cannot map guest memory at 0x%llx: %s",
			       (unsigned long long)r[i].gpa, strerror(-err));
			return err;
		}
		off += r[i].size;
	}
	return 0;
}

static int init_devices(struct machine *m)
{
	unsigned int n;
	const struct device_ops *const *devs = device_list(&n);
	int err;

	for (unsigned int i = 0; i < n; i++) {
		if (devs[i]->check) {
			err = devs[i]->check(m, m->dev_cfg[i]);
			if (err)
				return err;
		}
	}
	for (m->ndev_up = 0; m->ndev_up < n; m->ndev_up++) {
		const struct device_ops *d = devs[m->ndev_up];

		if (d->init && (err = d->init(m)) < 0) {
			pr_err("%s: cannot set up the device: %s", d->name,
			       strerror(-err));
			return err;
		}
	}
	return 0;
}

static void kick_handler(int sig)
{
	(void)sig;	/* only interrupts KVM_RUN */
}

static int start_aps(struct machine *m);

int machine_init(struct machine *m)
{
	/* SA_RESTART: a kick must not fail a device's read or write on a
	 * vCPU thread; KVM_RUN itself returns -EINTR all the same. */
	struct sigaction sa = { .sa_handler = kick_handler,
				.sa_flags = SA_RESTART };
	int err;

	m->epoll_fd = -1;
	m->wake_fd = -1;
	m->next_gsi = 16;
	/* Known from the start: tables and devices size themselves by it. */
	m->ncpus = m->cfg.ncpus;
	m->vcpus = calloc(m->ncpus, sizeof(*m->vcpus));
	if (!m->vcpus || machine_vcpu_ctl_init(m) || machine_debug_init(m))
		return -ENOMEM;
	for (unsigned int i = 0; i < m->ncpus; i++)
		if (vcpu_ctl_init(&m->vcpus[i]))
			return -ENOMEM;
	if (!m->dev_cfg && (err = machine_setup_config(m)))
		return err;
	sigaction(SIG_KICK, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	m->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	m->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	m->pio = iobus_new(IOBUS_PIO);
	m->mmio = iobus_new(IOBUS_MMIO);
	if (m->epoll_fd < 0 || m->wake_fd < 0 || !m->pio || !m->mmio) {
		pr_err("cannot set up the main loop: %s", strerror(errno));
		return -ENOMEM;
	}
	/* Memory slots go in before the irqchip: KVM makes a slot change
	 * wait for its readers, and the in-kernel PIT's thread is one, which
	 * makes the same ioctl 20 times slower (measured by bench/boot.sh). */
	if ((err = open_kvm(m)) || (err = check_cpus(m)) ||
	    (err = setup_memory(m)))
		return err;
	if ((err = arch_init_vm(m)) < 0) {
		pr_err("cannot set up the interrupt controllers: %s",
		       strerror(-err));
		return err;
	}
	if ((err = init_devices(m)) || (err = arch_load(m)))
		return err;

	for (unsigned int i = 0; i < m->ncpus; i++) {
		struct vcpu *v = &m->vcpus[i];

		v->m = m;
		v->id = i;
		err = kvm_create_vcpu(m->kvm, i, &v->kvm);
		if (err) {
			pr_err("cannot create vCPU %u: %s", i, strerror(-err));
			return err;
		}
		kvm_vcpu_set_opaque(v->kvm, v);
		err = arch_setup_vcpu(m, v);
		if (err) {
			pr_err("cannot set up vCPU %u: %s", i, strerror(-err));
			return err;
		}
	}
	return start_aps(m);
}

/* ---- running ------------------------------------------------------------ */

/*
 * The threads of vCPUs 1 and up start at the end of set-up and wait for
 * machine_run()'s word, which they get long before the guest wakes them
 * with INIT/SIPI. vCPU 0 runs on machine_run()'s caller.
 */
static bool flag_set(int *word)
{
	return __atomic_load_n(word, __ATOMIC_ACQUIRE);
}

static void flag_wait(int *word)
{
	while (!flag_set(word))
		syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
}

static void flag_give(int *word)
{
	__atomic_store_n(word, 1, __ATOMIC_RELEASE);
	syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* Runs vCPU v on the calling thread until the machine stops. */
static void vcpu_run_loop(struct vcpu *v)
{
	struct machine *m = v->m;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIG_KICK);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	kvm_vcpu_bind_thread(v->kvm);
	vcpu_ctl_thread_start(v);
	seccomp_thread_enter(SECCOMP_VCPU);	/* before the first KVM_RUN */

	for (;;) {
		int r;

		/* Holds, queued work, the end of the run (lkvm/vcpu.h). */
		if ((vcpu_ctl_pending(v) || machine_stopping(m)) &&
		    !vcpu_ctl_service(v))
			break;
		if (m->irqchip)
			arch_vcpu_pre_run(m, v);
		r = kvm_vcpu_run(v->kvm);
		vcpu_ctl_count_exit(v, r);
		if (r == KVM_CONTINUE || r == -EINTR || r == -EAGAIN)
			continue;
		if (r < 0) {
			char why[64];

			snprintf(why, sizeof(why), "KVM_RUN failed: %s",
				 strerror(-r));
			machine_dump_vcpu(m, v, why);
			machine_stop(m, LKVM_EXIT_CRASH);
		}
		break;
	}
	vcpu_ctl_thread_end(v);
}

static void *ap_thread(void *arg)
{
	struct vcpu *v = arg;
	char name[16];

	snprintf(name, sizeof(name), "vcpu%u", v->id);
	pthread_setname_np(pthread_self(), name);
	flag_wait(&v->m->vcpus_go);
	vcpu_run_loop(v);
	return NULL;
}

/* The signals that stop the machine, which the main loop reads. */
static void stop_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);
}

/* Threads inherit the mask: stop signals come through the main loop's
 * signalfd (a stop signal meanwhile stays pending until it reads it),
 * kicks reach only vCPU threads. */
static void block_signals(void)
{
	sigset_t set;

	stop_signals(&set);
	sigaddset(&set, SIG_KICK);
	sigprocmask(SIG_BLOCK, &set, NULL);
}

static int start_aps(struct machine *m)
{
	block_signals();
	for (unsigned int i = 1; i < m->ncpus; i++) {
		int err = pthread_create(&m->vcpus[i].thread, NULL, ap_thread,
					 &m->vcpus[i]);

		if (err) {
			pr_err("cannot start vCPU %u: %s", i, strerror(err));
			return -err;
		}
		m->vcpus[i].started = true;
	}
	return 0;
}

/* Every vCPU's end; APs that never ran leave at once. */
static void join_vcpus(struct machine *m)
{
	flag_give(&m->vcpus_go);
	/* Parked vCPUs wait on their locks, not in KVM_RUN. */
	vcpu_ctl_wake_all(m);
	for (unsigned int i = 0; i < m->ncpus; i++) {
		if (!m->vcpus[i].started)
			continue;
		if (i == 0)
			flag_wait(&m->vcpu0_done);
		else
			pthread_join(m->vcpus[i].thread, NULL);
		m->vcpus[i].started = false;
	}
}

static void on_wake(struct machine *m, int fd, void *opaque)
{
	uint64_t v;

	(void)m;
	(void)opaque;
	if (read(fd, &v, sizeof(v)) < 0)
		(void)0;	/* nothing pending */
}

static void on_signal(struct machine *m, int fd, void *opaque)
{
	struct signalfd_siginfo si;

	(void)opaque;
	if (read(fd, &si, sizeof(si)) != sizeof(si))
		return;
	term_restore();
	pr_info("stopping the guest on signal %s", strsignal((int)si.ssi_signo));
	machine_stop(m, LKVM_EXIT_SIGNAL + (int)si.ssi_signo);
}

int machine_poll(struct machine *m, int timeout_ms)
{
	struct epoll_event ev[8];
	int n = epoll_wait(m->epoll_fd, ev, 8, timeout_ms);

	for (int i = 0; i < n && !machine_stopping(m); i++) {
		struct fd_watch *w = ev[i].data.ptr;

		/* An earlier handler may have unwatched it. */
		for (struct fd_watch *x = m->watches; x; x = x->next) {
			if (x == w) {
				w->fn(m, w->fd, w->opaque);
				break;
			}
		}
	}
	return n < 0 ? -errno : n;
}

/* The main loop, then the end of the run, on the main loop's thread. */
static void loop(struct machine *m)
{
	sigset_t stop_set;
	int sfd;

	stop_signals(&stop_set);
	sfd = signalfd(-1, &stop_set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0 || machine_watch_fd(m, sfd, on_signal, NULL) ||
	    machine_watch_fd(m, m->wake_fd, on_wake, NULL)) {
		pr_err("cannot watch signals: %s", strerror(errno));
		machine_stop(m, LKVM_EXIT_ERROR);
	}
	term_start(m);

	/* It ran, even if it has ended already: a detached lkvm reports
	 * that, and the status goes to the exit record. */
	if (m->ncpus && m->vcpus[m->ncpus - 1].started)
		control_running(m);
	seccomp_thread_enter(SECCOMP_MAIN);	/* its set-up is over */

	while (!machine_stopping(m))
		machine_poll(m, -1);

	join_vcpus(m);
	term_stop(m);
	if (sfd >= 0) {
		machine_unwatch_fd(m, sfd);
		close(sfd);
	}
	if (m->run_end)
		m->run_end(m, m->exit_status, m->run_end_arg);
}

static void *main_loop(void *arg)
{
	pthread_setname_np(pthread_self(), "main-loop");
	loop(arg);
	return NULL;
}

/* The size of the CPU sets machine_prepare() works with. */
#define PREP_MAX_CPUS 1024

/*
 * Started by machine_prepare(): the set-up work that can go beside the
 * main thread's, then the main loop once machine_run() says so. It has
 * the process-wide seccomp filter by then: confine_start() installs it
 * on every thread.
 */
static void *prepare_then_loop(void *arg)
{
	struct machine *m = arg;

	pthread_setname_np(pthread_self(), "main-loop");
	if (m->prep_kvm)
		arch_prefetch(m->prep_kvm);
	m->prep_err = m->prep ? m->prep(m, m->prep_arg) : 0;
	/* Off set-up's CPU until now (machine_prepare); anywhere after. */
	if (m->prep_cpus)
		sched_setaffinity(0, CPU_ALLOC_SIZE(PREP_MAX_CPUS),
				  m->prep_cpus);
	flag_give(&m->prep_done);
	flag_wait(&m->loop_go);
	if (!m->loop_abort)
		loop(m);
	return NULL;
}

/*
 * The thread that works beside set-up goes to another CPU than set-up's:
 * a new thread often starts on its parent's CPU and preempts it, which
 * left set-up waiting for the thread's work instead of doing its own
 * (bench/boot.sh). Fills attr with the CPUs allowed but the current one,
 * and m->prep_cpus with all those allowed (restored once the work is
 * done); nothing when only one CPU is allowed.
 */
static void away_from_setup(struct machine *m, pthread_attr_t *attr)
{
	int n = PREP_MAX_CPUS, cpu = sched_getcpu();
	cpu_set_t *all = CPU_ALLOC((unsigned int)n), *other;
	size_t size = CPU_ALLOC_SIZE(n);

	if (!all)
		return;
	if (cpu < 0 || cpu >= n || sched_getaffinity(0, size, all) < 0 ||
	    !CPU_ISSET_S(cpu, size, all) || CPU_COUNT_S(size, all) < 2 ||
	    !(other = CPU_ALLOC((unsigned int)n))) {
		CPU_FREE(all);
		return;
	}
	memcpy(other, all, size);
	CPU_CLR_S(cpu, size, other);
	if (pthread_attr_setaffinity_np(attr, size, other))
		CPU_FREE(all);
	else
		m->prep_cpus = all;
	CPU_FREE(other);
}

static int start_prepare(struct machine *m)
{
	pthread_attr_t attr;
	int err;

	/* Stop signals go through the main loop's signalfd, kicks only to
	 * vCPU threads: the thread starts with them blocked. */
	block_signals();
	err = pthread_attr_init(&attr);
	if (!err) {
		away_from_setup(m, &attr);
		err = pthread_create(&m->loop_thread, &attr,
				     prepare_then_loop, m);
		pthread_attr_destroy(&attr);
	}
	if (err) {
		pr_err("cannot start the main loop: %s", strerror(err));
		return -err;
	}
	m->loop_started = true;
	return 0;
}

int machine_prepare(struct machine *m, int (*fn)(struct machine *m, void *arg),
		    void *arg)
{
	struct kvm_opening *o = calloc(1, sizeof(*o));
	int err;

	m->prep = fn;
	m->prep_arg = arg;
	if (!o)		/* open_kvm() opens it itself */
		return start_prepare(m);
	m->opening = o;
	/* The device, the thread (which asks the device the host's CPUID
	 * table), then the VM. */
	o->err = kvm_open_device(&o->kvm, kvm_device_path(), &callbacks, m,
				 &o->why);
	m->prep_kvm = o->kvm;
	err = start_prepare(m);
	if (!o->err)
		o->err = kvm_create_vm(o->kvm, &o->why);
	return err;
}

int machine_prepared(struct machine *m)
{
	if (!m->loop_started)
		return 0;
	flag_wait(&m->prep_done);
	return m->prep_err;
}

/* The word to the thread machine_prepare() started, once: run the loop,
 * or leave (abort). */
static void release_loop(struct machine *m, bool abort)
{
	m->loop_abort = abort;
	m->loop_running = true;
	flag_give(&m->loop_go);
}

int machine_run(struct machine *m,
		void (*end)(struct machine *m, int status, void *arg),
		void *arg)
{
	pthread_t loop;
	int err = 0;

	m->run_end = end;
	m->run_end_arg = arg;
	/* vCPU 0 goes into the guest at once; the APs and the main loop
	 * start beside it (or wait for the word, when it started early). */
	flag_give(&m->vcpus_go);
	if (m->ncpus) {
		m->vcpus[0].thread = pthread_self();
		m->vcpus[0].started = true;
		if (m->loop_started) {
			release_loop(m, false);
			loop = m->loop_thread;
		} else {
			err = pthread_create(&loop, NULL, main_loop, m);
		}
		if (!err) {
			vcpu_run_loop(&m->vcpus[0]);
			flag_give(&m->vcpu0_done);
			pthread_join(loop, NULL);
			return m->exit_status;
		}
		pr_err("cannot start the main loop: %s", strerror(err));
		m->vcpus[0].started = false;
	}
	/* No vCPU, or no thread for the main loop: the run ends here. */
	machine_stop(m, LKVM_EXIT_ERROR);
	if (m->loop_started && !m->loop_running) {
		release_loop(m, false);
		pthread_join(m->loop_thread, NULL);
	} else {
		main_loop(m);
	}
	return m->exit_status;
}

void machine_exit(struct machine *m)
{
	unsigned int n;
	const struct device_ops *const *devs = device_list(&n);

	/* Set-up failed after machine_prepare(): its thread leaves. */
	if (m->loop_started && !m->loop_running) {
		machine_prepared(m);
		release_loop(m, true);
		pthread_join(m->loop_thread, NULL);
	}
	if (m->prep_cpus) {
		CPU_FREE(m->prep_cpus);
		m->prep_cpus = NULL;
	}

	/* Set-up failed after the APs' threads started (vCPU 0 runs only
	 * inside machine_run(), which joins every vCPU). */
	for (unsigned int i = 1; m->vcpus && i < m->ncpus; i++) {
		if (m->vcpus[i].started) {
			machine_stop(m, LKVM_EXIT_ERROR);
			join_vcpus(m);
			break;
		}
	}
	while (m->ndev_up > 0) {
		const struct device_ops *d = devs[--m->ndev_up];

		if (d->exit)
			d->exit(m);
	}
	for (unsigned int i = 0; m->vcpus && i < m->ncpus; i++) {
		if (m->vcpus[i].kvm)
			kvm_destroy_vcpu(m->vcpus[i].kvm);
		vcpu_ctl_free(&m->vcpus[i]);
	}
	machine_vcpu_ctl_free(m);
	machine_debug_free(m);
	machine_free_counters(m);
	free(m->vcpus);
	m->vcpus = NULL;
	while (m->watches)
		machine_unwatch_fd(m, m->watches->fd);
	if (m->nmem && !m->mem[0].readonly)
		munmap(m->mem[0].host, m->ram_size);
	iobus_free(m->pio);
	iobus_free(m->mmio);
	if (m->opening) {	/* opened, never taken */
		enum kvm_open_error why;
		int err;

		opening_join(m, &why, &err);
	}
	kvm_close(m->kvm);
	if (m->epoll_fd >= 0)
		close(m->epoll_fd);
	if (m->wake_fd >= 0)
		close(m->wake_fd);
	free(m->fdt);
	arch_exit(m);
	for (unsigned int i = 0; m->dev_cfg && i < m->ndev; i++)
		free(m->dev_cfg[i]);
	free(m->dev_cfg);
	term_restore();
}
