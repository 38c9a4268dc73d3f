// SPDX-License-Identifier: GPL-2.0
/*
 * The i8042 keyboard controller at ports 0x60 and 0x64.
 *
 * Its job here is to let Linux's i8042 driver probe cleanly and quickly
 * (self-test, command byte, interface tests, the AUX loopback and IRQ 12
 * delivery tests), to let firmware and atkbd talk to a keyboard, and to
 * reset the machine: the CPU reset line is output-port bit 0, pulsed low
 * by command 0xFE (or any 0xF0-0xFF pulse with bit 0 clear) or written
 * low with 0xD1. A reset ends the run with status 0, as QEMU's
 * -no-reboot does.
 *
 * No mouse is plugged into the AUX port: bytes sent to it (0xD4) come
 * back as 0xFE with the status timeout bit, which is what a controller
 * reports when no device clocks the byte in, so psmouse gives up at once
 * instead of waiting for replies.
 */
#include "lkvm/i8042.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lkvm/device.h"
#include "lkvm/machine.h"
#include "lkvm/util.h"

/* Status register. */
#define STR_OBF 0x01
#define STR_SYS 0x04
#define STR_CMD 0x08
#define STR_UNLOCKED 0x10	/* keylock off */
#define STR_AUXDATA 0x20
#define STR_TIMEOUT 0x40

/* Command byte. */
#define CTR_KBDINT 0x01
#define CTR_AUXINT 0x02
#define CTR_SYS 0x04
#define CTR_KBDDIS 0x10
#define CTR_AUXDIS 0x20
#define CTR_XLATE 0x40

/* Output port. */
#define OUT_RESET 0x01		/* low resets the CPU */
#define OUT_A20 0x02
#define OUT_KBD_OBF 0x10
#define OUT_AUX_OBF 0x20
#define OUT_FIXED 0xcc		/* lines with nothing to say read high */

/* Keyboard replies. */
#define KBD_ACK 0xfa
#define KBD_RESEND 0xfe
#define KBD_BAT_OK 0xaa

static void q_push(struct i8042_queue *q, uint8_t v, enum i8042_src src,
		   uint8_t err)
{
	unsigned int i;

	/* A guest that never reads cannot grow anything: drop the byte. */
	if (q->count == I8042_QUEUE)
		return;
	i = (q->head + q->count++) % I8042_QUEUE;
	q->data[i] = v;
	q->src[i] = (uint8_t)src;
	q->err[i] = err;
}

static bool q_pop(struct i8042_queue *q, uint8_t *v, uint8_t *src,
		  uint8_t *err)
{
	if (!q->count)
		return false;
	*v = q->data[q->head];
	*src = q->src[q->head];
	*err = q->err[q->head];
	q->head = (q->head + 1) % I8042_QUEUE;
	q->count--;
	return true;
}

static uint8_t ctr(const struct i8042 *k)
{
	return k->ram[0];
}

static void update_irq(struct i8042 *k)
{
	bool kbd = k->obf && k->ob_src != I8042_SRC_AUX &&
		   (ctr(k) & CTR_KBDINT);
	bool aux = k->obf && k->ob_src == I8042_SRC_AUX &&
		   (ctr(k) & CTR_AUXINT);

	if (kbd != k->irq_kbd) {
		k->irq_kbd = kbd;
		if (k->irq)
			k->irq(k, I8042_KBD_IRQ, kbd);
	}
	if (aux != k->irq_aux) {
		k->irq_aux = aux;
		if (k->irq)
			k->irq(k, I8042_AUX_IRQ, aux);
	}
}

/*
 * Fills an empty output buffer: the controller's own replies first, then
 * the keyboard and the AUX device, each only while its interface is
 * enabled in the command byte (a disabled interface holds its clock low).
 */
static void refill(struct i8042 *k)
{
	if (k->obf)
		return;
	if (q_pop(&k->ctrl, &k->ob, &k->ob_src, &k->ob_err) ||
	    (!(ctr(k) & CTR_KBDDIS) &&
	     q_pop(&k->kbd, &k->ob, &k->ob_src, &k->ob_err)) ||
	    (!(ctr(k) & CTR_AUXDIS) &&
	     q_pop(&k->aux, &k->ob, &k->ob_src, &k->ob_err)))
		k->obf = true;
	update_irq(k);
}

static void reply(struct i8042 *k, uint8_t v)
{
	q_push(&k->ctrl, v, I8042_SRC_CTRL, 0);
	refill(k);
}

static void kbd_reply(struct i8042 *k, uint8_t v)
{
	q_push(&k->kbd, v, I8042_SRC_KBD, 0);
	refill(k);
}

static void pulse_reset(struct i8042 *k)
{
	if (k->reset)
		k->reset(k);
}

void i8042_reset(struct i8042 *k)
{
	memset(k->ram, 0, sizeof(k->ram));
	/*
	 * The command byte a PC BIOS leaves after POST: keyboard interrupt
	 * on, scancode translation on, AUX port disabled, self-test passed.
	 */
	k->ram[0] = CTR_XLATE | CTR_AUXDIS | CTR_SYS | CTR_KBDINT;
	k->sys = true;
	k->last_cmd = false;
	k->outport = OUT_FIXED | OUT_A20 | OUT_RESET;
	k->pending = 0;
	k->kbd_cmd = 0;
	k->kbd_set = 2;
	k->kbd_leds = 0;
	k->kbd_scanning = true;
	k->obf = false;
	k->ob = k->ob_src = k->ob_err = 0;
	k->last = 0;
	memset(&k->ctrl, 0, sizeof(k->ctrl));
	memset(&k->kbd, 0, sizeof(k->kbd));
	memset(&k->aux, 0, sizeof(k->aux));
	update_irq(k);
}

/* A scancode-set number as the guest sees it through translation. */
static uint8_t xlate_set(const struct i8042 *k, uint8_t set)
{
	static const uint8_t xlated[4] = { 0, 0x43, 0x41, 0x3f };

	return (ctr(k) & CTR_XLATE) ? xlated[set & 3] : set;
}

static void kbd_write(struct i8042 *k, uint8_t val)
{
	uint8_t cmd = k->kbd_cmd;

	if (cmd) {
		/* The argument of the previous command. */
		k->kbd_cmd = 0;
		switch (cmd) {
		case 0xed:	/* set LEDs */
			k->kbd_leds = val & 7;
			kbd_reply(k, KBD_ACK);
			break;
		case 0xf0:	/* get or set the scancode set */
			if (val == 0) {
				kbd_reply(k, KBD_ACK);
				kbd_reply(k, xlate_set(k, k->kbd_set));
			} else if (val <= 3) {
				k->kbd_set = val;
				kbd_reply(k, KBD_ACK);
			} else {
				kbd_reply(k, KBD_RESEND);
			}
			break;
		default:	/* 0xf3: typematic rate and delay */
			kbd_reply(k, KBD_ACK);
			break;
		}
		return;
	}

	switch (val) {
	case 0xed:
	case 0xf0:
	case 0xf3:
		k->kbd_cmd = val;
		kbd_reply(k, KBD_ACK);
		break;
	case 0xee:	/* echo */
		kbd_reply(k, 0xee);
		break;
	case 0xf2:	/* identify: an MF2 keyboard */
		kbd_reply(k, KBD_ACK);
		kbd_reply(k, 0xab);
		kbd_reply(k, (ctr(k) & CTR_XLATE) ? 0x41 : 0x83);
		break;
	case 0xf4:	/* enable scanning */
		k->kbd_scanning = true;
		kbd_reply(k, KBD_ACK);
		break;
	case 0xf5:	/* disable scanning, set defaults */
		k->kbd_scanning = false;
		k->kbd_set = 2;
		kbd_reply(k, KBD_ACK);
		break;
	case 0xf6:	/* set defaults */
		k->kbd_set = 2;
		kbd_reply(k, KBD_ACK);
		break;
	case 0xff:	/* reset and self-test */
		k->kbd_scanning = true;
		k->kbd_set = 2;
		k->kbd_leds = 0;
		kbd_reply(k, KBD_ACK);
		kbd_reply(k, KBD_BAT_OK);
		break;
	default:
		kbd_reply(k, KBD_RESEND);
		break;
	}
}

static void write_data(struct i8042 *k, uint8_t val)
{
	uint8_t cmd = k->pending;

	k->last_cmd = false;
	k->pending = 0;
	switch (cmd) {
	case 0:
		/*
		 * A byte for the keyboard. Sending to it enables its
		 * interface again, as AMI-style controllers (and QEMU) do.
		 */
		k->ram[0] &= ~CTR_KBDDIS;
		kbd_write(k, val);
		break;
	case 0xd1:	/* write output port */
		k->outport = val;
		if (!(val & OUT_RESET))
			pulse_reset(k);
		break;
	case 0xd2:	/* as if the keyboard had sent it */
		q_push(&k->ctrl, val, I8042_SRC_KBD, 0);
		break;
	case 0xd3:	/* as if the AUX device had sent it */
		q_push(&k->ctrl, val, I8042_SRC_AUX, 0);
		break;
	case 0xd4:	/* to the AUX device: nobody answers */
		q_push(&k->ctrl, KBD_RESEND, I8042_SRC_AUX, STR_TIMEOUT);
		break;
	default:	/* 0x60-0x7f: controller RAM, byte 0 the command byte */
		k->ram[cmd & 0x1f] = val;
		if ((cmd & 0x1f) == 0)
			k->sys = val & CTR_SYS;
		break;
	}
	refill(k);
	update_irq(k);
}

static void write_cmd(struct i8042 *k, uint8_t val)
{
	k->last_cmd = true;
	k->pending = 0;
	if (val >= 0x20 && val <= 0x3f) {
		reply(k, k->ram[val & 0x1f]);
		return;
	}
	if ((val >= 0x60 && val <= 0x7f) ||
	    (val >= 0xd1 && val <= 0xd4)) {
		k->pending = val;
		return;
	}
	if (val >= 0xf0) {
		/* Bits 0-3 low pulse the output port lines; bit 0 is reset. */
		if (!(val & OUT_RESET))
			pulse_reset(k);
		return;
	}
	switch (val) {
	case 0xa7:
		k->ram[0] |= CTR_AUXDIS;
		break;
	case 0xa8:
		k->ram[0] &= ~CTR_AUXDIS;
		break;
	case 0xa9:	/* AUX interface test: no fault */
	case 0xab:	/* keyboard interface test: no fault */
		reply(k, 0x00);
		break;
	case 0xaa:	/* controller self-test */
		k->sys = true;
		reply(k, 0x55);
		break;
	case 0xad:
		k->ram[0] |= CTR_KBDDIS;
		break;
	case 0xae:
		k->ram[0] &= ~CTR_KBDDIS;
		break;
	case 0xd0: {	/* read output port */
		uint8_t v = k->outport & ~(OUT_KBD_OBF | OUT_AUX_OBF);

		if (k->obf)
			v |= k->ob_src == I8042_SRC_AUX ? OUT_AUX_OBF :
							  OUT_KBD_OBF;
		reply(k, v);
		break;
	}
	case 0xdd:	/* A20 off (KVM has no A20 gate: kept for reads) */
		k->outport &= ~OUT_A20;
		break;
	case 0xdf:
		k->outport |= OUT_A20;
		break;
	default:
		break;	/* unknown commands are ignored, as QEMU does */
	}
	refill(k);
	update_irq(k);
}

uint8_t i8042_read(struct i8042 *k, uint16_t port)
{
	uint8_t v;

	if (port == I8042_CMD_PORT) {
		v = STR_UNLOCKED;
		if (k->obf) {
			v |= STR_OBF | k->ob_err;
			if (k->ob_src == I8042_SRC_AUX)
				v |= STR_AUXDATA;
		}
		if (k->sys)
			v |= STR_SYS;
		if (k->last_cmd)
			v |= STR_CMD;
		return v;
	}
	if (!k->obf)
		return k->last;
	v = k->ob;
	k->last = v;
	k->obf = false;
	k->ob_err = 0;
	/* Drop the line before refilling so the next byte is a new edge. */
	update_irq(k);
	refill(k);
	return v;
}

void i8042_write(struct i8042 *k, uint16_t port, uint8_t val)
{
	if (port == I8042_CMD_PORT)
		write_cmd(k, val);
	else
		write_data(k, val);
}

/* ---- Glue -------------------------------------------------------------- */

struct i8042_dev {
	struct i8042 k;
	struct machine *m;
	pthread_mutex_t lock;
};

struct i8042_cfg {
	struct i8042_dev *dev;
};

static const struct device_ops i8042_ops;

static void i8042_irq(struct i8042 *k, unsigned int irq, bool level)
{
	struct i8042_dev *d = k->opaque;

	machine_irq_line(d->m, irq, level);
}

static void i8042_do_reset(struct i8042 *k)
{
	struct i8042_dev *d = k->opaque;

	machine_stop(d->m, LKVM_EXIT_OK);
}

static void i8042_io(struct io_region *r, struct kvm_vcpu *vcpu,
		     uint64_t offset, void *data, unsigned int len,
		     bool is_write)
{
	struct i8042_dev *d = r->opaque;
	uint16_t port = (uint16_t)(r->base + offset);
	uint8_t *b = data;

	(void)vcpu;
	(void)len;	/* one-port regions: the bus hands over one byte */
	pthread_mutex_lock(&d->lock);
	if (is_write)
		i8042_write(&d->k, port, b[0]);
	else
		b[0] = i8042_read(&d->k, port);
	pthread_mutex_unlock(&d->lock);
}

static int i8042_init(struct machine *m)
{
	struct i8042_cfg *cfg = machine_dev_cfg(m, &i8042_ops);
	struct i8042_dev *d;
	int err;

	if (!cfg)
		return -EINVAL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->m = m;
	pthread_mutex_init(&d->lock, NULL);
	d->k.opaque = d;
	d->k.irq = i8042_irq;
	d->k.reset = i8042_do_reset;
	i8042_reset(&d->k);
	cfg->dev = d;
	err = machine_register_pio(m, I8042_DATA_PORT, 1, i8042_io, d,
				   "i8042");
	if (!err)
		err = machine_register_pio(m, I8042_CMD_PORT, 1, i8042_io, d,
					   "i8042");
	if (err)
		pr_err("i8042: cannot register ports 0x60/0x64: %s",
		       strerror(-err));
	return err;
}

static void i8042_exit(struct machine *m)
{
	struct i8042_cfg *cfg = machine_dev_cfg(m, &i8042_ops);

	if (!cfg || !cfg->dev)
		return;
	pthread_mutex_destroy(&cfg->dev->lock);
	free(cfg->dev);
	cfg->dev = NULL;
}

static const struct device_ops i8042_ops = {
	.name = "i8042",
	.stage = DEV_STAGE_LEGACY,
	.cfg_size = sizeof(struct i8042_cfg),
	.init = i8042_init,
	.exit = i8042_exit,
};
DEVICE(i8042_ops);
