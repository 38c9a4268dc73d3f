/* kmain: boot description, the command line, the TAP run and its end. */
#include "kernel.h"
#include "virtio.h"

struct check {
	const char *name;
	int (*fn)(char *msg, size_t n);
	bool in_all;
	int needs; /* a virtio device type: in `all` only when present */
};

static const struct check checks[] = {
	{ "serial", check_serial, true, 0 },
	{ "rtc", check_rtc, true, 0 },
	{ "pit", check_pit, true, 0 },
	{ "mem", check_mem, true, 0 },
	{ "cmdline", check_cmdline, true, 0 },
	{ "dtb", check_dtb, true, 0 },
	{ "smp", check_smp, true, 0 },
	{ "pic", check_pic, true, 0 },
	{ "pit2", check_pit2, true, 0 },
	{ "ioapic", check_ioapic, true, 0 },
	{ "serial-input", check_serial_input, false, 0 },
	{ "virtio-console", check_virtio_console, true, VIRTIO_ID_CONSOLE },
	{ "virtio-rng", check_virtio_rng, true, VIRTIO_ID_RNG },
	{ "virtio-blk", check_virtio_blk, true, VIRTIO_ID_BLK },
	{ "virtio-9p", check_virtio_9p, true, 9 },
	{ "virtio-console-input", check_virtio_console_input, false, 0 },
	{ "virtio-hostile", check_virtio_hostile, false, 0 },
	{ "virtio-net", check_virtio_net, true, VIRTIO_ID_NET },
	{ "virtio-net-dhcp", check_virtio_net_dhcp, false, 0 },
	{ "virtio-net-udp", check_virtio_net_udp, false, 0 },
	{ "virtio-net-serve", check_virtio_net_serve, false, 0 },
	{ "virtio-net-hostile", check_virtio_net_hostile, false, 0 },
	{ "virtio-net-flood", check_virtio_net_flood, false, 0 },
	{ "virtio-net-mq", check_virtio_net_mq, false, 0 },
	{ "virtio-net-csum", check_virtio_net_csum, false, 0 },
	{ "heartbeat", check_heartbeat, false, 0 },
	{ "virtio-balloon", check_virtio_balloon, false, 0 },
	{ "virtio-vsock", check_virtio_vsock, false, 0 },
	{ "blkbench", check_blkbench, false, 0 },
	{ "virtio-soak", check_virtio_soak, false, 0 },
	{ "p9bench", check_p9bench, false, 0 },
	{ "virtio-blk-writes", check_virtio_blk_writes, false, 0 },
	{ "introspect", check_introspect, false, 0 },
	{ "introspect-bench", check_introspect_bench, false, 0 },
};

#define MAX_RUN 32

struct planned {
	const char *name;
	size_t len;
	const struct check *check; /* NULL: unknown name, a failed check */
};

static struct planned plan[MAX_RUN];
static int nplan;
int failures;

static bool plan_overflow;

static void plan_add(const char *name, size_t len)
{
	if (len == 0)
		return;
	if (nplan == MAX_RUN) {
		plan_overflow = true;
		return;
	}
	plan[nplan].name = name;
	plan[nplan].len = len;
	plan[nplan].check = NULL;
	for (size_t i = 0; i < ARRAY_SIZE(checks); i++)
		if (strlen(checks[i].name) == len && !strncmp(checks[i].name, name, len))
			plan[nplan].check = &checks[i];
	nplan++;
}

static void plan_all(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(checks); i++)
		if (checks[i].in_all &&
		    (!checks[i].needs || virtio_present(checks[i].needs)))
			plan_add(checks[i].name, strlen(checks[i].name));
}

static void param_u64(const char *v, size_t len, bool *have, bool *bad, uint64_t *out)
{
	*have = true;
	*bad = !parse_u64(v, len, out);
}

/* Words separated by spaces; tests= (the last one counts), expect_mem=,
 * expect_cpus=, hosttime=. Other words belong to someone else. */
static void parse_params(void)
{
	const char *tests = NULL;
	size_t tests_len = 0;
	const char *s = M.cmdline;
	while (*s) {
		while (*s == ' ')
			s++;
		const char *w = s;
		while (*s && *s != ' ')
			s++;
		size_t wl = (size_t)(s - w);
		if (wl >= 6 && !strncmp(w, "tests=", 6)) {
			tests = w + 6;
			tests_len = wl - 6;
		} else if (wl > 11 && !strncmp(w, "expect_mem=", 11)) {
			param_u64(w + 11, wl - 11, &M.have_expect_mem, &M.bad_expect_mem,
				  &M.expect_mem);
		} else if (wl > 12 && !strncmp(w, "expect_cpus=", 12)) {
			param_u64(w + 12, wl - 12, &M.have_expect_cpus,
				  &M.bad_expect_cpus, &M.expect_cpus);
		} else if (wl > 9 && !strncmp(w, "hosttime=", 9)) {
			param_u64(w + 9, wl - 9, &M.have_hosttime, &M.bad_hosttime,
				  &M.hosttime);
		}
	}
	/* Finding virtio devices costs PCI configuration exits: only when a
	 * check may need them (`all` includes those whose device is there). */
	bool virtio = !tests;
	for (size_t i = 0; tests && i + 3 <= tests_len; i++)
		if (!strncmp(tests + i, "all", 3) ||
		    (i + 6 <= tests_len && !strncmp(tests + i, "virtio", 6)) ||
		    (i + 8 <= tests_len && !strncmp(tests + i, "blkbench", 8)) ||
		    (i + 7 <= tests_len && !strncmp(tests + i, "p9bench", 7)))
			virtio = true;
	if (virtio)
		virtio_discover();
	if (!tests) {
		plan_all();
		return;
	}
	for (size_t i = 0; i < tests_len;) {
		size_t j = i;
		while (j < tests_len && tests[j] != ',')
			j++;
		if (j - i == 3 && !strncmp(tests + i, "all", 3))
			plan_all();
		else
			plan_add(tests + i, j - i);
		i = j + 1;
	}
}

static void describe_boot(void)
{
	if (!M.pvh_ok) {
		kprintf("# boot: %s\n", M.pvh_error);
		return;
	}
	kprintf("# boot: PVH start info v%u at 0x%x, command line at 0x%lx, "
		"rsdp 0x%lx\n", M.pvh_version, M.start_info, M.cmdline_pa, M.rsdp);
	if (M.memmap) {
		const struct range *a = M.all;
		kprintf("# memmap: %d entries, %d RAM\n", M.memmap_entries, M.nram);
		for (int i = 0; i < M.nall; i++) {
			bool ram = false;
			for (int j = 0; j < M.nram; j++)
				if (M.ram[j].base == a[i].base && M.ram[j].size == a[i].size)
					ram = true;
			kprintf("#   0x%09lx-0x%09lx %s\n", a[i].base,
				a[i].base + a[i].size - 1, ram ? "RAM" : "reserved");
		}
	} else {
		kprintf("# memmap: none\n");
	}
	if (M.dtb_present)
		kprintf("# dtb: module at 0x%lx, %lu bytes%s%s\n", M.dtb_pa, M.dtb_size,
			M.dtb_error[0] ? ": " : "", M.dtb_error);
}

static void describe_platform(void)
{
	if (M.mp.found)
		kprintf("# mp: floating pointer 0x%x, table 0x%x, %d CPUs, BSP %d, "
			"I/O APIC %u at 0x%x\n", M.mp.fp_addr, M.mp.table_addr,
			M.mp.ncpus, M.mp.bsp_id, M.mp.ioapic_id, M.mp.ioapic_addr);
	else
		kprintf("# mp: %s\n", M.mp.error);
	if (M.madt.found)
		kprintf("# madt: at 0x%lx (rsdp 0x%lx), %d CPUs\n", M.madt.madt,
			M.madt.rsdp, M.madt.ncpus);
	else if (!M.mp.found || M.rsdp)
		kprintf("# madt: %s\n", M.madt.error);
	kprintf("# cpus: %d from the %s\n", M.ncpus, M.cpu_source);
	/* SeaBIOS lists only the first logical CPU of each package in its MP
	 * table; say so when the two tables disagree. */
	if (M.mp.found && M.madt.found && M.mp.ncpus != M.madt.ncpus)
		kprintf("# cpus: the MP table lists %d, the MADT %d: the MP table "
			"describes one CPU per package here\n", M.mp.ncpus,
			M.madt.ncpus);
}

static void run_checks(void)
{
	char msg[256];
	for (int i = 0; i < nplan; i++) {
		const struct planned *p = &plan[i];
		int r;
		msg[0] = 0;
		if (p->check) {
			r = p->check->fn(msg, sizeof(msg));
		} else {
			ksnprintf(msg, sizeof(msg), "no such check");
			r = FAIL;
		}
		char name[64];
		size_t nl = p->len < sizeof(name) - 1 ? p->len : sizeof(name) - 1;
		memcpy(name, p->name, nl);
		name[nl] = 0;
		if (r == FAIL)
			failures++;
		if (r == SKIP)
			kprintf("ok %d - %s # SKIP %s\n", i + 1, name, msg);
		else
			kprintf("%s %d - %s%s%s\n", r == PASS ? "ok" : "not ok", i + 1,
				name, msg[0] ? ": " : "", msg);
	}
}

static void halt_forever(void) __attribute__((noreturn));
static void halt_forever(void)
{
	for (;;)
		__asm__ volatile("cli; hlt");
}

void fatal_exit(void)
{
	outb(DEBUG_EXIT_PORT, (uint8_t)(failures + 1 > 127 ? 127 : failures + 1));
	halt_forever();
}

/* All passed: reset through the i8042 (VMMs turn it into exit status 0).
 * Otherwise the failure count goes to the debug-exit port. */
static void finish(void)
{
	if (failures == 0) {
		outb(0x64, 0xfe);
		delay_ticks(10);
		kprintf("# the i8042 reset (0xfe to port 0x64) did not stop the machine; "
			"triple fault\n");
		/* Machines without an i8042 (QEMU's microvm): an exception with
		 * an empty IDT is a triple fault, a reset, which VMMs told not
		 * to reboot (qemu -no-reboot) turn into exit status 0. */
		static const struct {
			uint16_t limit;
			uint64_t base;
		} __attribute__((packed)) no_idt = { 0, 0 };
		__asm__ volatile("cli; lidt %0; ud2" : : "m"(no_idt));
	} else {
		kprintf("# %d check(s) failed\n", failures);
		outb(DEBUG_EXIT_PORT, (uint8_t)(failures > 127 ? 127 : failures));
		delay_ticks(10);
		kprintf("# the debug exit (port 0x%x) did not stop the machine\n",
			DEBUG_EXIT_PORT);
	}
	halt_forever();
}

void kmain(uint32_t start_info)
{
	serial_init();
	console_write(" lkvm test kernel\n", 18);
	idt_init();
	magic_init();
	boot_info_parse(start_info);
	kprintf("# cmdline: %s\n", M.cmdline);
	parse_params();
	kprintf("1..%d\n", nplan);
	if (plan_overflow)
		kprintf("# warning: only the first %d checks named in tests= run\n",
			MAX_RUN);
	describe_boot();
	platform_discover();
	describe_platform();
	irq_init();
	virtio_describe();
	run_checks();
	finish();
}
