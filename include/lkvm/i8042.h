/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The i8042 keyboard controller (hw/i8042.c), as much of it as Linux's
 * i8042 and atkbd drivers and PC firmware use: the controller commands,
 * a keyboard that answers its commands (and never has a key pressed), an
 * AUX port with no mouse on it, and the reset line.
 *
 * The register model is separate from the machine: struct i8042 and the
 * i8042_* functions take port accesses and report interrupt lines and
 * resets through callbacks.
 */
#ifndef LKVM_I8042_H
#define LKVM_I8042_H

#include <stdbool.h>
#include <stdint.h>

#define I8042_DATA_PORT 0x60
#define I8042_CMD_PORT 0x64	/* status register when read */

#define I8042_KBD_IRQ 1
#define I8042_AUX_IRQ 12

#define I8042_QUEUE 16

/* Where a byte in the output buffer comes from. */
enum i8042_src { I8042_SRC_CTRL, I8042_SRC_KBD, I8042_SRC_AUX };

struct i8042_queue {
	uint8_t data[I8042_QUEUE];
	uint8_t src[I8042_QUEUE];	/* enum i8042_src */
	uint8_t err[I8042_QUEUE];	/* status error bits (timeout) */
	unsigned int head, count;
};

struct i8042 {
	uint8_t ram[32];	/* controller RAM; byte 0 is the command byte */
	bool sys;		/* status bit 2: self-test passed */
	bool last_cmd;		/* status bit 3: last write was to 0x64 */
	uint8_t outport;	/* output port: bit 0 reset (active low), A20 */
	uint8_t pending;	/* controller command awaiting its data byte */

	/* The keyboard. */
	uint8_t kbd_cmd;	/* keyboard command awaiting its argument */
	uint8_t kbd_set;	/* scancode set */
	uint8_t kbd_leds;
	bool kbd_scanning;

	/* The output buffer and what waits to enter it. */
	bool obf;
	uint8_t ob, ob_src, ob_err;
	uint8_t last;		/* what port 0x60 reads when empty */
	struct i8042_queue ctrl, kbd, aux;

	bool irq_kbd, irq_aux;	/* the lines, as last reported */
	void (*irq)(struct i8042 *k, unsigned int irq, bool level);
	/* The CPU reset line was pulsed. */
	void (*reset)(struct i8042 *k);
	void *opaque;
};

/* Power-on state, as a BIOS leaves it; keeps the callbacks. */
void i8042_reset(struct i8042 *k);
/* port is I8042_DATA_PORT or I8042_CMD_PORT. */
uint8_t i8042_read(struct i8042 *k, uint16_t port);
void i8042_write(struct i8042 *k, uint16_t port, uint8_t val);

#endif
