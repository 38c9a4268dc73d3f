/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The 16550A UART (hw/serial.c). The register model (struct uart and the
 * uart_* functions) knows nothing of the machine: it is driven by register
 * reads and writes, takes received bytes, and reports transmitted bytes
 * and its interrupt output through callbacks. The device glue puts four of
 * them at the PC COM ports, locks each one, and connects COM1 to the
 * console. The unit tests drive the model directly.
 */
#ifndef LKVM_UART_H
#define LKVM_UART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct machine;

/* Register offsets from the base port. */
enum uart_reg {
	UART_RX = 0,	/* RBR (read), THR (write); DLL with LCR.DLAB */
	UART_IER = 1,	/* DLM with LCR.DLAB */
	UART_IIR = 2,	/* IIR (read), FCR (write) */
	UART_LCR = 3,
	UART_MCR = 4,
	UART_LSR = 5,
	UART_MSR = 6,
	UART_SCR = 7,
};

#define UART_FIFO_SIZE 16

/* What one received character carries beside its value. */
#define UART_RX_BREAK 0x10	/* the LSR.BI bit */

struct uart {
	/* Registers as the guest programmed them. */
	uint8_t ier, lcr, mcr, scr;
	uint8_t fcr;		/* FE, DMA mode and trigger bits */
	uint8_t dll, dlm;
	uint8_t lsr_err;	/* OE and BI latched until LSR is read */
	uint8_t msr_delta;	/* MSR bits 0-3, cleared by reading MSR */
	uint8_t rbr;		/* last character read, for empty reads */
	bool thr_ipending;	/* the THRE interrupt is owed */

	/* Receive FIFO (one slot deep when FIFOs are disabled). */
	uint8_t rx[UART_FIFO_SIZE];
	uint8_t rx_flags[UART_FIFO_SIZE];
	unsigned int rx_head, rx_count;

	/*
	 * Host input the FIFO has no room for yet: a ring of (flags << 8 |
	 * byte) entries, fed into the FIFO as the guest drains it. pend_cap
	 * bounds it; 0 means no host buffer.
	 */
	uint16_t *pend;
	size_t pend_cap, pend_head, pend_count;

	bool irq_level;		/* the interrupt output, last reported */

	/* A byte leaves the transmitter (not called in loopback mode). */
	void (*tx)(struct uart *u, uint8_t c);
	/* The interrupt output changes level. */
	void (*irq)(struct uart *u, bool level);
	void *opaque;
};

/* Sets the power-on state; keeps callbacks and the host buffer. */
void uart_reset(struct uart *u);
uint8_t uart_read(struct uart *u, unsigned int reg);
void uart_write(struct uart *u, unsigned int reg, uint8_t val);
/*
 * Bytes from the line. Returns how many were taken: the FIFO's free
 * room plus the host buffer's; the rest is the caller's to keep.
 */
size_t uart_receive(struct uart *u, const void *buf, size_t len);
/* A break condition on the line (a NUL character with LSR.BI). */
bool uart_receive_break(struct uart *u);
/* Whether an interrupt is pending (IIR bit 0 clear), ignoring OUT2. */
bool uart_int_pending(const struct uart *u);

/* The PC COM ports. */
#define SERIAL_NR_PORTS 4
#define SERIAL_CLOCK 1843200	/* the input clock: 115200 baud x 16 */
#define SERIAL_HOST_BUF 4096	/* console input waiting for the FIFO; the host holds back the rest */

/*
 * Sends a break followed by c to COM1, as a terminal's "break" key does:
 * Linux's 8250 driver takes the character after a break as a magic SysRq
 * command. Returns 0, -ENODEV without a serial device, -ENOSPC when the
 * host buffer is full.
 */
int serial_send_sysrq(struct machine *m, char c);

/*
 * The register model of COM port n (0..3), or NULL. Unlocked: for tests
 * and for reading while the vCPUs are stopped.
 */
struct uart *serial_port(struct machine *m, unsigned int n);

#endif
