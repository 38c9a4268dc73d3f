// SPDX-License-Identifier: GPL-2.0
/*
 * 16550A UARTs at the four PC COM ports. COM1 is the serial console:
 * its output goes to stdout, and console input reaches its receiver.
 * COM2-4 answer like idle ports with nothing attached.
 *
 * Transmission takes no time: a byte written to THR is on stdout before
 * the OUT instruction completes, so THRE and TEMT always read as set and
 * the transmit FIFO is never used. The guest sees a very fast line.
 *
 * The interrupt output reaches the IRQ line only while MCR.OUT2 is set
 * and the UART is not in loopback, as on PCs, where OUT2 enables the
 * board's IRQ driver and loopback forces the OUT pins inactive. QEMU
 * skips this gate. Linux's 8250 driver sets OUT2 whenever it uses the
 * port's interrupt (and probes and polls with OUT2 clear), so both work
 * with Linux; the gate keeps an idle or polled port from holding a line
 * that another port shares (COM1 and COM3 share IRQ 4).
 */
#include "lkvm/uart.h"

#include <errno.h>
#include <libfdt.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lkvm/device.h"
#include "lkvm/isa.h"
#include "lkvm/machine.h"
#include "lkvm/util.h"

#define IER_RDI 0x01
#define IER_THRI 0x02
#define IER_RLSI 0x04
#define IER_MSI 0x08

#define IIR_NO_INT 0x01
#define IIR_MSI 0x00
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_RLSI 0x06
#define IIR_CTI 0x0c
#define IIR_FIFO_ON 0xc0

#define FCR_FE 0x01
#define FCR_RFR 0x02
#define FCR_XFR 0x04
#define FCR_DMA 0x08
#define FCR_TRIG 0xc0

#define LCR_DLAB 0x80

#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MCR_MASK 0x1f

#define LSR_DR 0x01
#define LSR_OE 0x02
#define LSR_BI 0x10
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define LSR_FIFOE 0x80
#define LSR_INT_ANY 0x1e	/* OE, PE, FE, BI: the line-status interrupt */

#define MSR_DCTS 0x01
#define MSR_DDSR 0x02
#define MSR_TERI 0x04
#define MSR_DDCD 0x08
#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI 0x40
#define MSR_DCD 0x80

/* ---- The register model ------------------------------------------------ */

static unsigned int rx_capacity(const struct uart *u)
{
	return (u->fcr & FCR_FE) ? UART_FIFO_SIZE : 1;
}

static unsigned int rx_trigger(const struct uart *u)
{
	static const unsigned int level[4] = { 1, 4, 8, 14 };

	return level[u->fcr >> 6];
}

static bool loopback(const struct uart *u)
{
	return u->mcr & MCR_LOOP;
}

/*
 * The modem-status inputs. With nothing attached the port reports a
 * ready modem with carrier, so software waiting for CTS/DSR/DCD goes on;
 * in loopback they follow the MCR outputs, as the datasheet wires them.
 */
static uint8_t msr_lines(const struct uart *u)
{
	uint8_t v = 0;

	if (!loopback(u))
		return MSR_CTS | MSR_DSR | MSR_DCD;
	if (u->mcr & MCR_DTR)
		v |= MSR_DSR;
	if (u->mcr & MCR_RTS)
		v |= MSR_CTS;
	if (u->mcr & MCR_OUT1)
		v |= MSR_RI;
	if (u->mcr & MCR_OUT2)
		v |= MSR_DCD;
	return v;
}

/* The highest-priority pending interrupt, in IIR bits 0-3. */
static uint8_t int_source(const struct uart *u)
{
	if ((u->ier & IER_RLSI) && (u->lsr_err & LSR_INT_ANY))
		return IIR_RLSI;
	if ((u->ier & IER_RDI) && u->rx_count) {
		if (!(u->fcr & FCR_FE) || u->rx_count >= rx_trigger(u))
			return IIR_RDI;
		/*
		 * Below the trigger level the 16550 interrupts once no
		 * character has arrived for four character times. Host
		 * input lands in the FIFO in bursts with nothing after
		 * them, so that time is taken to have passed already.
		 */
		return IIR_CTI;
	}
	if ((u->ier & IER_THRI) && u->thr_ipending)
		return IIR_THRI;
	if ((u->ier & IER_MSI) && u->msr_delta)
		return IIR_MSI;
	return IIR_NO_INT;
}

bool uart_int_pending(const struct uart *u)
{
	return int_source(u) != IIR_NO_INT;
}

static void update_irq(struct uart *u)
{
	bool level = uart_int_pending(u) && (u->mcr & MCR_OUT2) &&
		     !loopback(u);

	if (level == u->irq_level)
		return;
	u->irq_level = level;
	if (u->irq)
		u->irq(u, level);
}

/*
 * The LSR error bits of a character apply once it reaches the head of
 * the FIFO: they are latched then and stay until LSR is read.
 */
static void rx_reach_head(struct uart *u)
{
	if (!u->rx_count)
		return;
	u->lsr_err |= u->rx_flags[u->rx_head];
	u->rx_flags[u->rx_head] = 0;
}

static void rx_push(struct uart *u, uint8_t c, uint8_t flags)
{
	unsigned int tail;

	if (u->rx_count >= rx_capacity(u)) {
		/*
		 * Overrun. With FIFOs the character in the shift register
		 * is lost; without them it overwrites the holding register.
		 */
		u->lsr_err |= LSR_OE;
		if (!(u->fcr & FCR_FE)) {
			u->rx[u->rx_head] = c;
			u->lsr_err |= flags;
		}
		return;
	}
	tail = (u->rx_head + u->rx_count) % UART_FIFO_SIZE;
	u->rx[tail] = c;
	u->rx_flags[tail] = flags;
	if (u->rx_count++ == 0)
		rx_reach_head(u);
}

static uint8_t rx_pop(struct uart *u)
{
	if (!u->rx_count)
		return u->rbr;
	u->rbr = u->rx[u->rx_head];
	u->rx_head = (u->rx_head + 1) % UART_FIFO_SIZE;
	u->rx_count--;
	rx_reach_head(u);
	return u->rbr;
}

static void rx_clear(struct uart *u)
{
	u->rx_head = 0;
	u->rx_count = 0;
	memset(u->rx_flags, 0, sizeof(u->rx_flags));
	u->lsr_err &= ~LSR_BI;
}

/* Moves waiting host input into the FIFO while it has room. */
static void rx_fill(struct uart *u)
{
	/* In loopback the receiver listens to the transmitter only. */
	if (loopback(u))
		return;
	while (u->pend_count && u->rx_count < rx_capacity(u)) {
		uint16_t e = u->pend[u->pend_head];

		u->pend_head = (u->pend_head + 1) % u->pend_cap;
		u->pend_count--;
		rx_push(u, e & 0xff, e >> 8);
	}
}

static bool rx_error_in_fifo(const struct uart *u)
{
	if (u->lsr_err & LSR_BI)
		return true;
	for (unsigned int i = 0; i < u->rx_count; i++)
		if (u->rx_flags[(u->rx_head + i) % UART_FIFO_SIZE])
			return true;
	return false;
}

void uart_reset(struct uart *u)
{
	u->ier = 0;
	u->lcr = 0;
	u->mcr = 0;
	u->scr = 0;
	u->fcr = 0;
	u->dll = 0x0c;		/* 9600 baud, what PC firmware leaves */
	u->dlm = 0;
	u->lsr_err = 0;
	u->msr_delta = 0;
	u->rbr = 0;
	u->thr_ipending = false;
	rx_clear(u);
	u->pend_head = 0;
	u->pend_count = 0;
	update_irq(u);
}

static void write_fcr(struct uart *u, uint8_t val)
{
	bool flush_rx = false;

	/* The datasheet: the other bits only take when FE is written as 1. */
	if (val & FCR_FE)
		flush_rx = val & FCR_RFR;
	/* Switching between 16450 and FIFO mode empties both FIFOs. */
	if ((val ^ u->fcr) & FCR_FE)
		flush_rx = true;
	u->fcr = (val & FCR_FE) ? val & (FCR_FE | FCR_DMA | FCR_TRIG) : 0;
	if (flush_rx)
		rx_clear(u);
	/* The transmit FIFO is always empty: FCR_XFR has nothing to do. */
	rx_fill(u);
}

static void write_mcr(struct uart *u, uint8_t val)
{
	uint8_t old = msr_lines(u), now;

	u->mcr = val & MCR_MASK;
	now = msr_lines(u);
	if ((old ^ now) & MSR_CTS)
		u->msr_delta |= MSR_DCTS;
	if ((old ^ now) & MSR_DSR)
		u->msr_delta |= MSR_DDSR;
	if ((old ^ now) & MSR_DCD)
		u->msr_delta |= MSR_DDCD;
	if ((old & MSR_RI) && !(now & MSR_RI))
		u->msr_delta |= MSR_TERI;
	rx_fill(u);	/* host input may flow again after loopback */
}

void uart_write(struct uart *u, unsigned int reg, uint8_t val)
{
	switch (reg & 7) {
	case UART_RX:
		if (u->lcr & LCR_DLAB) {
			u->dll = val;
			break;
		}
		if (loopback(u))
			rx_push(u, val, 0);
		else if (u->tx)
			u->tx(u, val);
		/*
		 * Writing THR clears the THRE interrupt; the byte leaves at
		 * once, so the now empty holding register raises it again.
		 */
		u->thr_ipending = u->ier & IER_THRI;
		break;
	case UART_IER:
		if (u->lcr & LCR_DLAB) {
			u->dlm = val;
			break;
		}
		/*
		 * Setting IER.THRI while THR is empty raises THRE again even
		 * if reading IIR had cleared it: Linux's 8250 probe checks
		 * for this (UART_BUG_THRE), as does Windows. Clearing it
		 * drops any owed THRE interrupt.
		 */
		if ((val ^ u->ier) & IER_THRI)
			u->thr_ipending = val & IER_THRI;
		u->ier = val & 0x0f;
		break;
	case UART_IIR:
		write_fcr(u, val);
		break;
	case UART_LCR:
		u->lcr = val;
		break;
	case UART_MCR:
		write_mcr(u, val);
		break;
	case UART_LSR:
	case UART_MSR:
		break;	/* read-only (factory test on some parts) */
	case UART_SCR:
		u->scr = val;
		break;
	}
	update_irq(u);
}

uint8_t uart_read(struct uart *u, unsigned int reg)
{
	uint8_t v = 0;

	switch (reg & 7) {
	case UART_RX:
		if (u->lcr & LCR_DLAB) {
			v = u->dll;
			break;
		}
		v = rx_pop(u);
		rx_fill(u);
		break;
	case UART_IER:
		v = (u->lcr & LCR_DLAB) ? u->dlm : u->ier;
		break;
	case UART_IIR:
		v = int_source(u);
		/* Reading IIR acknowledges THRE when it is what IIR shows. */
		if (v == IIR_THRI)
			u->thr_ipending = false;
		if (u->fcr & FCR_FE)
			v |= IIR_FIFO_ON;
		break;
	case UART_LCR:
		v = u->lcr;
		break;
	case UART_MCR:
		v = u->mcr;
		break;
	case UART_LSR:
		v = LSR_THRE | LSR_TEMT | u->lsr_err;
		if (u->rx_count)
			v |= LSR_DR;
		if ((u->fcr & FCR_FE) && rx_error_in_fifo(u))
			v |= LSR_FIFOE;
		u->lsr_err = 0;
		break;
	case UART_MSR:
		v = msr_lines(u) | u->msr_delta;
		u->msr_delta = 0;
		break;
	case UART_SCR:
		v = u->scr;
		break;
	}
	update_irq(u);
	return v;
}

/* Queues one received character with its LSR flags; false when full. */
static bool receive_one(struct uart *u, uint8_t c, uint8_t flags)
{
	if (!u->pend_count && !loopback(u) && u->rx_count < rx_capacity(u)) {
		rx_push(u, c, flags);
		return true;
	}
	if (u->pend_count >= u->pend_cap)
		return false;
	u->pend[(u->pend_head + u->pend_count) % u->pend_cap] =
		(uint16_t)(flags << 8 | c);
	u->pend_count++;
	return true;
}

size_t uart_receive(struct uart *u, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	size_t n;

	for (n = 0; n < len; n++)
		if (!receive_one(u, p[n], 0))
			break;
	update_irq(u);
	return n;
}

bool uart_receive_break(struct uart *u)
{
	bool ok = receive_one(u, 0, UART_RX_BREAK);

	update_irq(u);
	return ok;
}

/* ---- The PC COM ports -------------------------------------------------- */

static const struct {
	uint16_t base;
	uint8_t irq;
} com_ports[SERIAL_NR_PORTS] = {
	{ 0x3f8, 4 }, { 0x2f8, 3 }, { 0x3e8, 4 }, { 0x2e8, 3 },
};

struct serial;

struct serial_port {
	struct uart u;
	pthread_mutex_t lock;
	struct serial *s;
	unsigned int index;
	bool level;		/* this port's share of its IRQ line */
	/* Bytes transmitted during one access, written after unlocking. */
	uint8_t out[8];
	unsigned int nout;
};

struct serial {
	struct machine *m;
	struct serial_port port[SERIAL_NR_PORTS];
	/* The IRQ lines are wired-OR of the ports that share them. */
	pthread_mutex_t irq_lock;
	bool line[16];
	/* The host holds input COM1 had no room for (under port 0's lock). */
	bool input_blocked;
};

/* The device's block (machine_dev_cfg): no options, just the state. */
struct serial_cfg {
	struct serial *s;
};

static const struct device_ops serial_ops;

static void port_irq(struct uart *u, bool level)
{
	struct serial_port *p = u->opaque;
	struct serial *s = p->s;
	unsigned int irq = com_ports[p->index].irq;
	bool any = false;

	pthread_mutex_lock(&s->irq_lock);
	p->level = level;
	for (unsigned int i = 0; i < SERIAL_NR_PORTS; i++)
		if (com_ports[i].irq == irq && s->port[i].level)
			any = true;
	if (any != s->line[irq]) {
		s->line[irq] = any;
		machine_irq_line(s->m, irq, any);
	}
	pthread_mutex_unlock(&s->irq_lock);
}

static void flush_out(struct serial *s, const uint8_t *buf, unsigned int n)
{
	machine_console_write(s->m, buf, n);
}

/* Called with the port locked. */
static void console_tx(struct uart *u, uint8_t c)
{
	struct serial_port *p = u->opaque;

	if (p->nout == sizeof(p->out)) {
		flush_out(p->s, p->out, p->nout);
		p->nout = 0;
	}
	p->out[p->nout++] = c;
}

static void serial_io(struct io_region *r, struct kvm_vcpu *vcpu,
		      uint64_t offset, void *data, unsigned int len,
		      bool is_write)
{
	struct serial_port *p = r->opaque;
	uint8_t *b = data, out[sizeof(p->out)];
	unsigned int nout;
	bool resume;

	(void)vcpu;
	pthread_mutex_lock(&p->lock);
	/* A wider access reaches the following registers, byte by byte. */
	for (unsigned int i = 0; i < len && offset + i < 8; i++) {
		if (is_write)
			uart_write(&p->u, (unsigned int)offset + i, b[i]);
		else
			b[i] = uart_read(&p->u, (unsigned int)offset + i);
	}
	nout = p->nout;
	memcpy(out, p->out, nout);
	p->nout = 0;
	/* Ask for more host input once the guest has drained half. */
	resume = p->index == 0 && p->s->input_blocked &&
		 p->u.pend_count <= p->u.pend_cap / 2;
	if (resume)
		p->s->input_blocked = false;
	pthread_mutex_unlock(&p->lock);
	if (nout)
		flush_out(p->s, out, nout);
	if (resume)
		machine_console_resume(p->s->m);
}

static size_t serial_console_in(struct machine *m, const char *buf,
				size_t len, void *opaque)
{
	struct serial *s = opaque;
	struct serial_port *p = &s->port[0];
	size_t n;

	(void)m;
	pthread_mutex_lock(&p->lock);
	n = uart_receive(&p->u, buf, len);
	if (n < len)
		s->input_blocked = true;
	pthread_mutex_unlock(&p->lock);
	return n;
}

static struct serial *serial_state(struct machine *m)
{
	struct serial_cfg *cfg = machine_dev_cfg(m, &serial_ops);

	return cfg ? cfg->s : NULL;
}

int serial_send_sysrq(struct machine *m, char c)
{
	struct serial *s = serial_state(m);
	struct serial_port *p;
	uint8_t ch = (uint8_t)c;
	int err = 0;

	if (!s)
		return -ENODEV;
	p = &s->port[0];
	pthread_mutex_lock(&p->lock);
	/* Both or neither, so a full buffer cannot leave a lone break. */
	if (p->u.pend_cap - p->u.pend_count < 2) {
		err = -ENOSPC;
	} else {
		uart_receive_break(&p->u);
		uart_receive(&p->u, &ch, 1);
	}
	pthread_mutex_unlock(&p->lock);
	return err;
}

struct uart *serial_port(struct machine *m, unsigned int n)
{
	struct serial *s = serial_state(m);

	return s && n < SERIAL_NR_PORTS ? &s->port[n].u : NULL;
}

static void serial_free(struct serial *s)
{
	for (unsigned int i = 0; i < SERIAL_NR_PORTS; i++) {
		free(s->port[i].u.pend);
		pthread_mutex_destroy(&s->port[i].lock);
	}
	pthread_mutex_destroy(&s->irq_lock);
	free(s);
}

static int serial_init(struct machine *m)
{
	struct serial_cfg *cfg = machine_dev_cfg(m, &serial_ops);
	struct serial *s;
	int err;

	if (!cfg)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->m = m;
	pthread_mutex_init(&s->irq_lock, NULL);
	for (unsigned int i = 0; i < SERIAL_NR_PORTS; i++) {
		struct serial_port *p = &s->port[i];

		p->s = s;
		p->index = i;
		pthread_mutex_init(&p->lock, NULL);
		p->u.opaque = p;
		p->u.irq = port_irq;
	}
	/* COM1 is the console; the others have nothing on the line. */
	s->port[0].u.tx = console_tx;
	s->port[0].u.pend = calloc(SERIAL_HOST_BUF, sizeof(uint16_t));
	if (!s->port[0].u.pend) {
		serial_free(s);
		return -ENOMEM;
	}
	s->port[0].u.pend_cap = SERIAL_HOST_BUF;

	for (unsigned int i = 0; i < SERIAL_NR_PORTS; i++) {
		uart_reset(&s->port[i].u);
		err = machine_register_pio(m, com_ports[i].base, 8, serial_io,
					   &s->port[i], "serial");
		if (err) {
			pr_err("serial: cannot register ports %#x-%#x: %s",
			       com_ports[i].base, com_ports[i].base + 7,
			       strerror(-err));
			/* Registered ports keep pointing here: keep it. */
			return err;
		}
	}
	cfg->s = s;
	if (m->cfg.console_kind == CONSOLE_SERIAL)
		machine_set_console_input(m, serial_console_in, s);
	return 0;
}

static void serial_exit(struct machine *m)
{
	struct serial_cfg *cfg = machine_dev_cfg(m, &serial_ops);

	if (!cfg || !cfg->s)
		return;
	if (m->cfg.console_kind == CONSOLE_SERIAL)
		machine_set_console_input(m, NULL, NULL);
	/* The vCPUs have stopped: nothing reaches the ports any more. */
	serial_free(cfg->s);
	cfg->s = NULL;
}

static int serial_fdt(struct machine *m, void *fdt)
{
	(void)m;
	/* Last to first: libfdt puts each new node before its siblings. */
	for (unsigned int i = SERIAL_NR_PORTS; i-- > 0;) {
		int node = isa_fdt_add_device(fdt, "serial", "ns16550a",
					      com_ports[i].base, 8,
					      com_ports[i].irq);
		int err;

		if (node < 0)
			return node;
		err = fdt_setprop_cell(fdt, node, "clock-frequency",
				       SERIAL_CLOCK);
		if (err)
			return err;
	}
	return 0;
}

static const struct device_ops serial_ops = {
	.name = "serial",
	.stage = DEV_STAGE_LEGACY,
	.cfg_size = sizeof(struct serial_cfg),
	.init = serial_init,
	.exit = serial_exit,
	.fdt = serial_fdt,
};
DEVICE(serial_ops);
