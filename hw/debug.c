// SPDX-License-Identifier: GPL-2.0
/*
 * The ports guests use to talk to whoever debugs them:
 * - 0x80, the POST code port: accepted and dropped. Linux writes it as
 *   an I/O delay; left unclaimed, every write would be counted as a stray.
 * - 0x402 (SeaBIOS's log) and 0xe9 (Bochs' and QEMU's debugcon): a byte
 *   written is a character of the guest's debug log, shown on stderr
 *   with --debug-console and dropped otherwise. Port 0xe9 reads 0xe9, so
 *   guests can see it is there. Port 0x402 reads 0xe9 only with
 *   --debug-console: SeaBIOS checks that before logging, so without the
 *   option it does not spend an exit on every log character (QEMU
 *   without -debugcon behaves the same).
 * - 0xf4-0xf7, QEMU's isa-debug-exit (iobase=0xf4, iosize=4): writing V
 *   ends the run with status (V << 1) | 1, of which the shell sees the
 *   low 8 bits as under QEMU, so test kernels written for QEMU report
 *   results unchanged.
 */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lkvm/device.h"
#include "lkvm/machine.h"
#include "lkvm/options.h"
#include "lkvm/util.h"

#define POST_PORT 0x80
#define SEABIOS_LOG_PORT 0x402
#define DEBUGCON_PORT 0xe9
#define DEBUG_EXIT_PORT 0xf4
#define DEBUG_EXIT_LEN 4
#define DEBUGCON_READBACK 0xe9

#define DEBUG_LINE 256

/* One log stream: a line is written whole, so streams do not mix. */
struct debug_log {
	char buf[DEBUG_LINE];
	unsigned int len;
};

struct debug_dev {
	struct machine *m;
	bool show;
	pthread_mutex_t lock;
	struct debug_log log[2];	/* 0x402, 0xe9 */
};

struct debug_cfg {
	bool console;		/* --debug-console */
	struct debug_dev *dev;
};

static const struct option debug_options[] = {
	{ .name = "debug-console", .type = OPT_BOOL,
	  .offset = offsetof(struct debug_cfg, console),
	  .help = "show the guest's debug console output (ports 0x402 and "
		  "0xe9) on stderr" },
	OPTION_END,
};

static const struct device_ops debug_ops;

static void log_flush(struct debug_log *l)
{
	if (l->len)
		(void)write_all(STDERR_FILENO, l->buf, l->len);
	l->len = 0;
}

static void log_putc(struct debug_log *l, uint8_t c)
{
	l->buf[l->len++] = (char)c;
	if (c == '\n' || l->len == sizeof(l->buf))
		log_flush(l);
}

static void post_io(struct io_region *r, struct kvm_vcpu *vcpu,
		    uint64_t offset, void *data, unsigned int len,
		    bool is_write)
{
	/* Nothing to do: the port exists so that writes are not strays. */
	(void)r, (void)vcpu, (void)offset, (void)data, (void)len;
	(void)is_write;
}

static void debugcon_io(struct io_region *r, struct kvm_vcpu *vcpu,
			uint64_t offset, void *data, unsigned int len,
			bool is_write)
{
	struct debug_dev *d = r->opaque;
	bool seabios = r->base == SEABIOS_LOG_PORT;
	struct debug_log *l = &d->log[seabios ? 0 : 1];
	uint8_t *b = data;

	(void)vcpu;
	(void)offset;
	if (!is_write) {
		if (!seabios || d->show)
			b[0] = DEBUGCON_READBACK;
		return;
	}
	if (!d->show)
		return;
	pthread_mutex_lock(&d->lock);
	/* A wider write is that many characters, as debugcon takes it. */
	for (unsigned int i = 0; i < len; i++)
		log_putc(l, b[i]);
	pthread_mutex_unlock(&d->lock);
}

static void debug_exit_io(struct io_region *r, struct kvm_vcpu *vcpu,
			  uint64_t offset, void *data, unsigned int len,
			  bool is_write)
{
	struct debug_dev *d = r->opaque;
	const uint8_t *b = data;
	uint64_t v = 0;

	(void)vcpu;
	(void)offset;
	if (!is_write)
		return;
	for (unsigned int i = 0; i < len && i < 4; i++)
		v |= (uint64_t)b[i] << (8 * i);
	pthread_mutex_lock(&d->lock);
	log_flush(&d->log[0]);
	log_flush(&d->log[1]);
	pthread_mutex_unlock(&d->lock);
	machine_stop(d->m, (int)(((v << 1) | 1) & 0xff));
}

static int debug_init(struct machine *m)
{
	struct debug_cfg *cfg = machine_dev_cfg(m, &debug_ops);
	static const struct {
		uint16_t port, len;
		io_handler_fn fn;
		const char *name;
	} ports[] = {
		{ POST_PORT, 1, post_io, "post" },
		{ SEABIOS_LOG_PORT, 1, debugcon_io, "debugcon" },
		{ DEBUGCON_PORT, 1, debugcon_io, "debugcon" },
		{ DEBUG_EXIT_PORT, DEBUG_EXIT_LEN, debug_exit_io,
		  "debug-exit" },
	};
	struct debug_dev *d;

	if (!cfg)
		return -EINVAL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->m = m;
	d->show = cfg->console;
	pthread_mutex_init(&d->lock, NULL);
	cfg->dev = d;
	for (unsigned int i = 0; i < ARRAY_SIZE(ports); i++) {
		int err = machine_register_pio(m, ports[i].port, ports[i].len,
					       ports[i].fn, d, ports[i].name);

		if (err) {
			pr_err("%s: cannot register port %#x: %s",
			       ports[i].name, ports[i].port, strerror(-err));
			return err;
		}
	}
	return 0;
}

static void debug_exit(struct machine *m)
{
	struct debug_cfg *cfg = machine_dev_cfg(m, &debug_ops);
	struct debug_dev *d = cfg ? cfg->dev : NULL;

	if (!d)
		return;
	/* A last line without its newline is still worth seeing. */
	log_flush(&d->log[0]);
	log_flush(&d->log[1]);
	pthread_mutex_destroy(&d->lock);
	free(d);
	cfg->dev = NULL;
}

static const struct device_ops debug_ops = {
	.name = "debug",
	.stage = DEV_STAGE_LEGACY,
	.options = debug_options,
	.cfg_size = sizeof(struct debug_cfg),
	.init = debug_init,
	.exit = debug_exit,
};
DEVICE(debug_ops);
