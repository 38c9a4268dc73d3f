// SPDX-License-Identifier: GPL-2.0
/*
 * The 16550A model as a guest driver sees it: first the register model
 * alone, then the four COM ports through the I/O bus.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lkvm/device.h"
#include "lkvm/iobus.h"
#include "lkvm/machine.h"
#include "lkvm/uart.h"
#include "tap.h"

#define RX 0
#define IER 1
#define IIR 2
#define FCR 2
#define LCR 3
#define MCR 4
#define LSR 5
#define MSR 6
#define SCR 7

struct sink {
	uint8_t tx[64];
	unsigned int ntx, edges;
};

static void rec_tx(struct uart *u, uint8_t c)
{
	struct sink *s = u->opaque;

	if (s->ntx < sizeof(s->tx))
		s->tx[s->ntx++] = c;
}

static void rec_irq(struct uart *u, bool level)
{
	struct sink *s = u->opaque;

	if (level)
		s->edges++;
}

static uint16_t pend[64];

static void setup(struct uart *u, struct sink *s, bool host_buffer)
{
	memset(u, 0, sizeof(*u));
	memset(s, 0, sizeof(*s));
	u->tx = rec_tx;
	u->irq = rec_irq;
	u->opaque = s;
	if (host_buffer) {
		u->pend = pend;
		u->pend_cap = 64;
	}
	uart_reset(u);
}

static void test_reset_and_latch(void)
{
	struct uart u;
	struct sink s;

	setup(&u, &s, false);
	CHECK(uart_read(&u, IER) == 0 && uart_read(&u, IIR) == 0x01 &&
		      uart_read(&u, LCR) == 0 && uart_read(&u, MCR) == 0,
	      "reset: IER 0, IIR 0x01 (no interrupt), LCR 0, MCR 0");
	CHECK(uart_read(&u, LSR) == 0x60, "reset: LSR THRE|TEMT");
	CHECK(uart_read(&u, MSR) == 0xb0,
	      "reset: MSR CTS, DSR, DCD asserted (a ready modem)");

	uart_write(&u, LCR, 0x80);
	uart_write(&u, RX, 0x01);
	uart_write(&u, IER, 0x02);
	CHECK(uart_read(&u, RX) == 0x01 && uart_read(&u, IER) == 0x02,
	      "divisor latch: DLL/DLM round trip with DLAB");
	uart_write(&u, LCR, 0x03);
	CHECK(uart_read(&u, LCR) == 0x03 && uart_read(&u, IER) == 0 &&
		      s.ntx == 0,
	      "divisor latch: DLAB off shows IER again, nothing sent");
	uart_write(&u, LCR, 0x83);
	CHECK(uart_read(&u, RX) == 0x01 && uart_read(&u, IER) == 0x02,
	      "divisor latch: kept while DLAB was off");
	uart_write(&u, LCR, 0x03);

	uart_write(&u, SCR, 0xa5);
	CHECK(uart_read(&u, SCR) == 0xa5, "scratch register round trip");
	uart_write(&u, IER, 0xff);
	CHECK(uart_read(&u, IER) == 0x0f, "IER keeps its low four bits only");
	uart_write(&u, MCR, 0xff);
	CHECK(uart_read(&u, MCR) == 0x1f, "MCR keeps bits 0-4 only");
}

static void test_thre(void)
{
	struct uart u;
	struct sink s;

	setup(&u, &s, false);
	uart_write(&u, RX, 'A');
	CHECK(s.ntx == 1 && s.tx[0] == 'A' && uart_read(&u, LSR) == 0x60,
	      "THR: the byte leaves at once, THRE and TEMT stay set");

	uart_write(&u, IER, 0x02);
	CHECK(uart_int_pending(&u) && !u.irq_level,
	      "THRE pending on enable, but no IRQ without MCR.OUT2");
	uart_write(&u, MCR, 0x08);
	CHECK(u.irq_level && s.edges == 1, "MCR.OUT2 lets the IRQ through");
	CHECK(uart_read(&u, IIR) == 0x02, "IIR reports THRE");
	CHECK(uart_read(&u, IIR) == 0x01 && !u.irq_level,
	      "reading IIR acknowledged THRE; the line drops");
	uart_write(&u, RX, 'B');
	CHECK(u.irq_level && s.edges == 2 && uart_read(&u, IIR) == 0x02,
	      "writing THR raises THRE again (a new edge): the byte is out");
	uart_write(&u, IER, 0x00);
	CHECK(uart_read(&u, IIR) == 0x01 && !u.irq_level,
	      "clearing IER.THRI drops the THRE interrupt");
	uart_write(&u, IER, 0x02);
	CHECK(uart_read(&u, IIR) == 0x02,
	      "setting IER.THRI again re-raises THRE (no UART_BUG_THRE)");
	/* Linux's THRE test: IIR read, IER off and on, IIR again. */
	uart_write(&u, IER, 0x00);
	uart_write(&u, IER, 0x02);
	(void)uart_read(&u, IIR);
	uart_write(&u, IER, 0x00);
	uart_write(&u, IER, 0x02);
	CHECK(uart_read(&u, IIR) == 0x02,
	      "Linux's THRE re-assert test sees a working UART");
	uart_write(&u, IER, 0x00);
	uart_write(&u, IER, 0x02);
	uart_write(&u, MCR, 0x18);
	CHECK(!u.irq_level && uart_int_pending(&u),
	      "loopback disconnects the IRQ line, IIR still reports");
}

static void test_fifo(void)
{
	struct uart u;
	struct sink s;
	uint8_t in[20], out[20];
	bool order = true;

	setup(&u, &s, true);
	uart_write(&u, FCR, 0x07);
	CHECK((uart_read(&u, IIR) & 0xcf) == 0xc1,
	      "FCR.FE: IIR bits 7-6 show the FIFOs enabled");
	for (unsigned int i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)('a' + i);
	CHECK(uart_receive(&u, in, sizeof(in)) == sizeof(in) &&
		      u.rx_count == 16 && u.pend_count == 4,
	      "20 bytes in: 16 in the FIFO, 4 wait in the host buffer");
	CHECK(uart_read(&u, LSR) == 0x61, "LSR: DR with no error");
	for (unsigned int i = 0; i < sizeof(out); i++)
		out[i] = uart_read(&u, RX);
	for (unsigned int i = 0; i < sizeof(out); i++)
		order &= out[i] == in[i];
	CHECK(order, "all 20 bytes read back in order, none lost");
	CHECK(uart_read(&u, LSR) == 0x60, "drained: DR clear");

	setup(&u, &s, false);
	CHECK(uart_receive(&u, in, sizeof(in)) == 1,
	      "16450 mode without host buffer: one byte taken");
	uart_write(&u, FCR, 0x01);
	CHECK(u.rx_count == 0, "switching to FIFO mode empties the FIFO");
	CHECK(uart_receive(&u, in, sizeof(in)) == 16,
	      "FIFO mode without host buffer: 16 bytes taken");
	uart_write(&u, FCR, 0x03);
	CHECK(u.rx_count == 0 && !(uart_read(&u, LSR) & 0x01),
	      "FCR receive reset empties the FIFO");
	uart_write(&u, FCR, 0x02);
	CHECK((uart_read(&u, IIR) & 0xc0) == 0,
	      "FCR written with FE clear turns the FIFOs off");

	/* Overrun through loopback: the transmitter feeds the receiver. */
	setup(&u, &s, false);
	uart_write(&u, FCR, 0x07);
	uart_write(&u, MCR, 0x10);
	for (unsigned int i = 0; i < 17; i++)
		uart_write(&u, RX, (uint8_t)('A' + i));
	CHECK(s.ntx == 0, "loopback: nothing reaches the line");
	CHECK(uart_read(&u, LSR) == 0x63, "17 bytes into 16: LSR OE|DR");
	CHECK(uart_read(&u, LSR) == 0x61, "reading LSR clears OE");
	order = true;
	for (unsigned int i = 0; i < 16; i++)
		order &= uart_read(&u, RX) == 'A' + i;
	CHECK(order && !(uart_read(&u, LSR) & 1),
	      "FIFO overrun keeps the first 16, drops the 17th");

	setup(&u, &s, false);
	uart_write(&u, MCR, 0x10);
	uart_write(&u, RX, '1');
	uart_write(&u, RX, '2');
	CHECK(uart_read(&u, LSR) == 0x63 && uart_read(&u, RX) == '2',
	      "16450 overrun: OE, the new byte overwrites RBR");

	/* Host input waits while in loopback. */
	setup(&u, &s, true);
	uart_write(&u, MCR, 0x10);
	uart_receive(&u, "x", 1);
	CHECK(!(uart_read(&u, LSR) & 1), "loopback: host input held back");
	uart_write(&u, MCR, 0x00);
	CHECK((uart_read(&u, LSR) & 1) && uart_read(&u, RX) == 'x',
	      "leaving loopback lets host input in");
}

static void test_priorities(void)
{
	struct uart u;
	struct sink s;
	uint8_t four[4] = { 1, 2, 3, 4 };

	setup(&u, &s, true);
	uart_write(&u, MCR, 0x18);	/* loopback, OUT2 */
	uart_write(&u, RX, 'x');
	uart_write(&u, RX, 'y');	/* overrun in 16450 mode */
	uart_write(&u, MCR, 0x1b);	/* DTR, RTS change: MSR deltas */
	uart_write(&u, IER, 0x0f);
	CHECK(uart_read(&u, IIR) == 0x06, "priority 1: line status (OE)");
	(void)uart_read(&u, LSR);
	CHECK(uart_read(&u, IIR) == 0x04, "priority 2: received data");
	(void)uart_read(&u, RX);
	CHECK(uart_read(&u, IIR) == 0x02, "priority 3: THRE");
	CHECK(uart_read(&u, IIR) == 0x00, "priority 4: modem status");
	CHECK((uart_read(&u, MSR) & 0x0f) == 0x03 &&
		      uart_read(&u, IIR) == 0x01,
	      "reading MSR clears DCTS/DDSR and the last interrupt");

	setup(&u, &s, true);
	uart_write(&u, MCR, 0x08);
	uart_write(&u, FCR, 0xc1);	/* trigger at 14 */
	uart_write(&u, IER, 0x01);
	uart_receive(&u, four, 4);
	CHECK(uart_read(&u, IIR) == 0xcc && u.irq_level,
	      "below the trigger level: character timeout (IIR 0xcc)");
	for (unsigned int i = 0; i < 10; i++)
		uart_receive(&u, four, 1);
	CHECK(uart_read(&u, IIR) == 0xc4, "at the trigger level: IIR 0xc4");
	while (uart_read(&u, LSR) & 1)
		(void)uart_read(&u, RX);
	CHECK(uart_read(&u, IIR) == 0xc1 && !u.irq_level,
	      "drained: no interrupt, line low");
}

static void test_modem_and_break(void)
{
	struct uart u;
	struct sink s;

	setup(&u, &s, true);
	uart_write(&u, MCR, 0x1f);
	CHECK(uart_read(&u, MSR) == 0xf0,
	      "loopback MSR: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD");
	uart_write(&u, MCR, 0x10);
	CHECK(uart_read(&u, MSR) == 0x0f,
	      "loopback MSR: lines drop, TERI on RI's trailing edge");
	uart_write(&u, MCR, 0x00);
	CHECK((uart_read(&u, MSR) & 0xf0) == 0xb0,
	      "out of loopback: CTS, DSR, DCD asserted again");

	setup(&u, &s, true);
	uart_write(&u, MCR, 0x08);
	uart_write(&u, IER, 0x05);
	CHECK(uart_receive_break(&u) && uart_receive(&u, "h", 1) == 1,
	      "break then a character queued");
	CHECK(uart_read(&u, IIR) == 0x06 && u.irq_level,
	      "a break raises the line-status interrupt");
	CHECK(uart_read(&u, LSR) == 0x71 && uart_read(&u, RX) == 0,
	      "LSR BI|DR with a NUL character, as Linux's sysrq expects");
	CHECK(uart_read(&u, LSR) == 0x61 && uart_read(&u, RX) == 'h',
	      "then the character after the break, no error");
}

/* ---- Through the bus -------------------------------------------------- */

static uint8_t inb(struct machine *m, uint16_t port)
{
	uint8_t v;

	iobus_access(m->pio, NULL, port, &v, 1, false);
	return v;
}

static void outb(struct machine *m, uint16_t port, uint8_t v)
{
	iobus_access(m->pio, NULL, port, &v, 1, true);
}

/* Writes s to THR at port with stdout caught in a pipe. */
static bool captured_tx(struct machine *m, uint16_t port, const char *s,
			char *got, size_t size)
{
	int p[2], saved;
	ssize_t n;

	fflush(stdout);
	if (pipe(p) < 0)
		return false;
	saved = dup(STDOUT_FILENO);
	dup2(p[1], STDOUT_FILENO);
	for (; *s; s++)
		outb(m, port, (uint8_t)*s);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	close(p[1]);
	n = read(p[0], got, size - 1);
	close(p[0]);
	got[n > 0 ? n : 0] = '\0';
	return n >= 0;
}

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
	static const uint16_t base[4] = { 0x3f8, 0x2f8, 0x3e8, 0x2e8 };
	const struct device_ops *ops = find_device("serial");
	struct machine *m = calloc(1, sizeof(*m));
	const char *line = "COM1 output\n";
	char got[64];
	char *flood;
	bool ok = true;
	uint8_t w[2] = { 0x03, 0x0b };

	m->epoll_fd = m->wake_fd = -1;
	m->pio = iobus_new(IOBUS_PIO);
	CHECK(ops && machine_setup_config(m) == 0 && ops->init(m) == 0,
	      "serial device: init registers the four ports");
	if (!ops || !serial_port(m, 0))
		return;
	for (unsigned int i = 0; i < 4; i++) {
		outb(m, base[i] + SCR, (uint8_t)(0x11 * (i + 1)));
		ok &= inb(m, base[i] + LSR) == 0x60 &&
		      inb(m, base[i] + SCR) == 0x11 * (i + 1) &&
		      inb(m, base[i] + IIR) == 0x01;
	}
	CHECK(ok, "COM1-4 present and idle at 0x3f8, 0x2f8, 0x3e8, 0x2e8");
	CHECK(captured_tx(m, 0x3f8, line, got, sizeof(got)) &&
		      !strcmp(got, line),
	      "COM1 transmits to stdout, unbuffered");
	CHECK(captured_tx(m, 0x2f8, line, got, sizeof(got)) && !*got,
	      "COM2 transmits to nowhere");

	iobus_access(m->pio, NULL, 0x3fb, w, 2, true);
	CHECK(inb(m, 0x3fb) == 0x03 && inb(m, 0x3fc) == 0x0b,
	      "a 16-bit write at LCR sets LCR and MCR");

	CHECK(m->console_in != NULL, "COM1 takes console input");
	m->console_in(m, "hi", 2, m->console_in_opaque);
	outb(m, 0x3f9, 0x01);
	CHECK(serial_port(m, 0)->irq_level && inb(m, 0x3fa) == 0x04,
	      "console input raises COM1's interrupt (IIR 0x04)");
	CHECK(inb(m, 0x3fd) == 0x61 && inb(m, 0x3f8) == 'h' &&
		      inb(m, 0x3f8) == 'i' && inb(m, 0x3fd) == 0x60,
	      "console input read back in order");
	CHECK(!serial_port(m, 0)->irq_level, "drained: IRQ 4 low");

	CHECK(serial_send_sysrq(m, 'b') == 0 && inb(m, 0x3fd) == 0x71 &&
		      inb(m, 0x3f8) == 0 && inb(m, 0x3f8) == 'b',
	      "sysrq: a break, then the command character");

	flood = malloc(SERIAL_HOST_BUF * 2);
	memset(flood, 'z', SERIAL_HOST_BUF * 2);
	m->console_in(m, flood, SERIAL_HOST_BUF * 2, m->console_in_opaque);
	CHECK(serial_port(m, 0)->pend_count == SERIAL_HOST_BUF &&
		      serial_send_sysrq(m, 'b') == -ENOSPC,
	      "a guest that never reads cannot grow the input buffer");
	free(flood);

	ops->exit(m);
	for (unsigned int i = 0; i < m->ndev; i++)
		free(m->dev_cfg[i]);
	free(m->dev_cfg);
	iobus_free(m->pio);
	free(m);
}

int main(void)
{
	test_reset_and_latch();
	test_thre();
	test_fifo();
	test_priorities();
	test_modem_and_break();
	test_ports();
	return tap_done();
}
