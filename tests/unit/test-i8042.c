// SPDX-License-Identifier: GPL-2.0
/*
 * The i8042 as Linux's i8042/atkbd drivers and firmware drive it, and the
 * guest's ways out of the machine: the i8042 reset and the debug-exit
 * port.
 */
#include <stdlib.h>
#include <string.h>

#include "lkvm/device.h"
#include "lkvm/i8042.h"
#include "lkvm/iobus.h"
#include "lkvm/machine.h"
#include "fake-machine.h"
#include "tap.h"

#define DATA I8042_DATA_PORT
#define CMD I8042_CMD_PORT

struct rec {
	bool line[16];
	unsigned int rises[16], resets;
};

static void rec_irq(struct i8042 *k, unsigned int irq, bool level)
{
	struct rec *r = k->opaque;

	if (level && !r->line[irq])
		r->rises[irq]++;
	r->line[irq] = level;
}

static void rec_reset(struct i8042 *k)
{
	struct rec *r = k->opaque;

	r->resets++;
}

static void setup(struct i8042 *k, struct rec *r)
{
	memset(k, 0, sizeof(*k));
	memset(r, 0, sizeof(*r));
	k->irq = rec_irq;
	k->reset = rec_reset;
	k->opaque = r;
	i8042_reset(k);
}

/* Like Linux's i8042_command(): a command, parameters, results. */
static bool command(struct i8042 *k, uint8_t cmd, const uint8_t *param,
		    unsigned int np, uint8_t *res, unsigned int nres)
{
	i8042_write(k, CMD, cmd);
	for (unsigned int i = 0; i < np; i++)
		i8042_write(k, DATA, param[i]);
	for (unsigned int i = 0; i < nres; i++) {
		if (!(i8042_read(k, CMD) & 0x01))
			return false;	/* would time out */
		res[i] = i8042_read(k, DATA);
	}
	return true;
}

/* A byte to the keyboard and its replies. */
static bool kbd(struct i8042 *k, uint8_t b, uint8_t *res, unsigned int n)
{
	i8042_write(k, DATA, b);
	for (unsigned int i = 0; i < n; i++) {
		if ((i8042_read(k, CMD) & 0x21) != 0x01)
			return false;
		res[i] = i8042_read(k, DATA);
	}
	return !(i8042_read(k, CMD) & 0x01);
}

static void test_controller(void)
{
	struct i8042 k;
	struct rec r;
	uint8_t v[4], p;

	setup(&k, &r);
	CHECK(i8042_read(&k, CMD) == 0x14,
	      "status: empty, self-test passed, keylock off");
	CHECK(command(&k, 0xaa, NULL, 0, v, 1) && v[0] == 0x55,
	      "0xAA self-test answers 0x55");
	CHECK(!(i8042_read(&k, CMD) & 0x01), "reading data empties OBF");
	CHECK(command(&k, 0x20, NULL, 0, v, 1) &&
		      command(&k, 0x20, NULL, 0, v + 1, 1) && v[0] == v[1],
	      "0x20 reads a stable command byte");
	CHECK((v[0] & 0x40) && !(v[0] & 0x10),
	      "command byte: translation on, keyboard enabled");
	p = 0x30;
	CHECK(command(&k, 0x60, &p, 1, NULL, 0) &&
		      command(&k, 0x20, NULL, 0, v, 1) && v[0] == 0x30,
	      "0x60 writes the command byte");
	CHECK(command(&k, 0xab, NULL, 0, v, 1) && v[0] == 0 &&
		      command(&k, 0xa9, NULL, 0, v + 1, 1) && v[1] == 0,
	      "0xAB and 0xA9 interface tests pass (0x00)");
	command(&k, 0xa8, NULL, 0, NULL, 0);
	command(&k, 0x20, NULL, 0, v, 1);
	command(&k, 0xa7, NULL, 0, NULL, 0);
	command(&k, 0x20, NULL, 0, v + 1, 1);
	CHECK(!(v[0] & 0x20) && (v[1] & 0x20),
	      "0xA8/0xA7 enable and disable AUX in the command byte");
	command(&k, 0xae, NULL, 0, NULL, 0);
	command(&k, 0x20, NULL, 0, v, 1);
	command(&k, 0xad, NULL, 0, NULL, 0);
	command(&k, 0x20, NULL, 0, v + 1, 1);
	CHECK(!(v[0] & 0x10) && (v[1] & 0x10),
	      "0xAE/0xAD enable and disable the keyboard");
	CHECK((i8042_read(&k, CMD) & 0x08),
	      "status bit 3: the last write was a command");

	/* Linux's AUX checks: loopback, then its MUX probe. */
	p = 0x5a;
	CHECK(command(&k, 0xd3, &p, 1, v, 1) && v[0] == 0x5a,
	      "0xD3 AUX loopback echoes the byte");
	p = 0xf0;
	command(&k, 0xd3, &p, 1, v, 1);
	p = 0x56;
	command(&k, 0xd3, &p, 1, v + 1, 1);
	p = 0xa4;
	command(&k, 0xd3, &p, 1, v + 2, 1);
	CHECK(v[0] == 0xf0 && v[1] == 0x56 && v[2] == 0xa4,
	      "no active multiplexer (the MUX probe sees plain echoes)");
	p = 0x02;	/* AUX interrupt on */
	command(&k, 0x60, &p, 1, NULL, 0);
	p = 0xa5;
	command(&k, 0xd3, &p, 1, NULL, 0);
	CHECK(r.line[12] && !r.line[1] && (i8042_read(&k, CMD) & 0x21) == 0x21,
	      "AUX data raises IRQ 12 with status AUXDATA");
	CHECK(i8042_read(&k, DATA) == 0xa5 && !r.line[12],
	      "reading it drops IRQ 12");
	p = 0xff;
	command(&k, 0xd4, &p, 1, NULL, 0);
	CHECK((i8042_read(&k, CMD) & 0x61) == 0x61 &&
		      i8042_read(&k, DATA) == 0xfe,
	      "0xD4 to an absent mouse: 0xFE with the timeout bit");
	CHECK(!(i8042_read(&k, CMD) & 0x40), "the timeout bit goes with it");

	CHECK(command(&k, 0xd0, NULL, 0, v, 1) && (v[0] & 0x03) == 0x03,
	      "0xD0: output port with reset high, A20 on");
	p = 0x03;
	command(&k, 0xd1, &p, 1, NULL, 0);
	CHECK(r.resets == 0, "0xD1 keeping bit 0 set does not reset");
	p = 0x02;
	command(&k, 0xd1, &p, 1, NULL, 0);
	CHECK(r.resets == 1, "0xD1 clearing bit 0 resets");
	i8042_write(&k, CMD, 0xff);
	i8042_write(&k, CMD, 0xf1);
	CHECK(r.resets == 1, "pulses 0xFF and 0xF1 leave reset alone");
	i8042_write(&k, CMD, 0xfe);
	i8042_write(&k, CMD, 0xf0);
	CHECK(r.resets == 3, "pulses 0xFE and 0xF0 reset");
	i8042_write(&k, CMD, 0x42);
	CHECK(!(i8042_read(&k, CMD) & 0x01), "unknown commands are ignored");
}

static void test_keyboard(void)
{
	struct i8042 k;
	struct rec r;
	uint8_t v[4], p;

	setup(&k, &r);
	CHECK(kbd(&k, 0xff, v, 2) && v[0] == 0xfa && v[1] == 0xaa,
	      "keyboard 0xFF: ACK, then self-test passed (0xAA)");
	CHECK(kbd(&k, 0xf2, v, 3) && v[0] == 0xfa && v[1] == 0xab &&
		      v[2] == 0x41,
	      "keyboard 0xF2: ACK, 0xAB 0x41 (translated MF2)");
	p = 0x25;	/* translation off */
	command(&k, 0x60, &p, 1, NULL, 0);
	CHECK(kbd(&k, 0xf2, v, 3) && v[2] == 0x83,
	      "keyboard 0xF2 untranslated: 0xAB 0x83");
	CHECK(kbd(&k, 0xf5, v, 1) && v[0] == 0xfa && kbd(&k, 0xf4, v, 1) &&
		      v[0] == 0xfa,
	      "keyboard 0xF5/0xF4: ACK");
	CHECK(kbd(&k, 0xed, v, 1) && v[0] == 0xfa && kbd(&k, 0x07, v, 1) &&
		      v[0] == 0xfa && k.kbd_leds == 7,
	      "keyboard 0xED and its LED argument: ACK, ACK");
	CHECK(kbd(&k, 0xf0, v, 1) && kbd(&k, 0x00, v, 2) && v[0] == 0xfa &&
		      v[1] == 2,
	      "keyboard 0xF0 0x00 reports scancode set 2");
	CHECK(kbd(&k, 0x42, v, 1) && v[0] == 0xfe,
	      "unknown keyboard command: 0xFE");

	/* IRQ 1 follows the output buffer and the command byte. */
	r.rises[1] = 0;
	i8042_write(&k, DATA, 0xff);
	CHECK(r.line[1] && r.rises[1] == 1,
	      "keyboard data raises IRQ 1 (KBDINT set)");
	(void)i8042_read(&k, DATA);
	CHECK(r.line[1] && r.rises[1] == 2,
	      "the next byte raises IRQ 1 again: a fresh edge");
	(void)i8042_read(&k, DATA);
	CHECK(!r.line[1], "empty: IRQ 1 low");

	p = 0x24;	/* KBDINT off */
	command(&k, 0x60, &p, 1, NULL, 0);
	i8042_write(&k, DATA, 0xf4);
	CHECK(!r.line[1] && (i8042_read(&k, CMD) & 0x01),
	      "with KBDINT clear, data waits without IRQ 1");
	(void)i8042_read(&k, DATA);

	command(&k, 0xad, NULL, 0, NULL, 0);
	i8042_write(&k, CMD, 0xd2);
	i8042_write(&k, DATA, 0x99);
	CHECK(i8042_read(&k, DATA) == 0x99, "0xD2 writes the output buffer");
	for (unsigned int i = 0; i < 100; i++)
		i8042_write(&k, DATA, 0xee);
	CHECK(k.kbd.count + k.ctrl.count <= 2 * I8042_QUEUE,
	      "a guest that never reads cannot grow the queues");
}

/* ---- Through the bus: reset and debug exit ----------------------------- */

static const struct device_ops *find_device(const char *name)
{
	unsigned int n;
	const struct device_ops *const *d = device_list(&n);

	for (unsigned int i = 0; i < n; i++)
		if (!strcmp(d[i]->name, name))
			return d[i];
	return NULL;
}

static void test_ports(void)
{
	const struct device_ops *ops = find_device("i8042");
	const struct device_ops *dbg = find_device("debug");
	struct machine *m = fake_machine_new(0);
	uint32_t v = 0x10;

	CHECK(ops && ops->init(m) == 0, "i8042 device: init");
	if (!ops)
		return;
	fm_outb(m, 0x64, 0xaa);
	CHECK((fm_inb(m, 0x64) & 0x01) && fm_inb(m, 0x60) == 0x55,
	      "self-test through ports 0x64/0x60");
	CHECK(!machine_stopping(m), "running before the reset");
	fm_outb(m, 0x64, 0xfe);
	CHECK(machine_stopping(m) && m->exit_status == LKVM_EXIT_OK,
	      "0xFE to port 0x64 ends the run with status 0");
	ops->exit(m);
	fake_machine_free(m);

	m = fake_machine_new(0);
	CHECK(dbg && dbg->init(m) == 0, "debug device: init");
	if (!dbg)
		return;
	CHECK(fm_inb(m, 0xe9) == 0xe9, "port 0xe9 reads 0xe9 (debugcon present)");
	CHECK(fm_inb(m, 0x402) == 0xff,
	      "port 0x402 reads 0xff without --debug-console");
	fm_outb(m, 0x80, 0x12);
	fm_outb(m, 0xe9, 'x');
	CHECK(!machine_stopping(m) && iobus_unclaimed(m->pio) == 0,
	      "ports 0x80 and 0xe9 take writes");
	iobus_access(m->pio, NULL, 0xf4, &v, 4, true);
	CHECK(machine_stopping(m) && m->exit_status == 0x21,
	      "debug exit: writing 0x10 to 0xf4 ends with status 0x21");
	dbg->exit(m);
	fake_machine_free(m);

	m = fake_machine_new(0);
	dbg->init(m);
	fm_outb(m, 0xf4, 0x80);
	CHECK(m->exit_status == 1,
	      "debug exit: the shell's 8 bits of (0x80 << 1) | 1, as QEMU");
	dbg->exit(m);
	fake_machine_free(m);
}

int main(void)
{
	test_controller();
	test_keyboard();
	test_ports();
	return tap_done();
}
