/* COM1: the console driver and the serial and serial-input checks. */
#include "kernel.h"

#define RBR 0 /* receive buffer (read, DLAB=0) */
#define THR 0 /* transmit holding (write, DLAB=0) */
#define DLL 0 /* divisor latch low (DLAB=1) */
#define IER 1 /* interrupt enable (DLAB=0) */
#define DLM 1 /* divisor latch high (DLAB=1) */
#define IIR 2 /* interrupt identification (read) */
#define FCR 2 /* FIFO control (write) */
#define LCR 3
#define MCR 4
#define LSR 5
#define MSR 6
#define SCR 7

#define LCR_8N1 0x03
#define LCR_DLAB 0x80
#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MCR_NORMAL (MCR_DTR | MCR_RTS | MCR_OUT2)
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02
#define FCR_CLEAR_TX 0x04

/* With a working FIFO, one LSR read (THRE: FIFO empty) buys 16 writes;
 * every port access is a VM exit, so this halves the cost of output. */
static bool uart_fifo;
static int tx_room;

static inline void uart_out(int reg, uint8_t v)
{
	outb(COM1 + reg, v);
}

static inline uint8_t uart_in(int reg)
{
	return inb(COM1 + reg);
}

void serial_init(void)
{
	uart_out(IER, 0);
	uart_out(LCR, LCR_DLAB);
	uart_out(DLL, 1); /* 115200 baud */
	uart_out(DLM, 0);
	uart_out(LCR, LCR_8N1);
	uart_out(MCR, MCR_NORMAL);
	/* Switching the FIFOs on empties the receiver. Input that is already
	 * waiting (a line piped to the VMM before the guest started, for
	 * serial-input) is kept by staying in 16450 mode: the console is
	 * slower then, not wrong. */
	if (!(uart_in(LSR) & LSR_DR))
		uart_out(FCR, FCR_ENABLE | FCR_CLEAR_RX | FCR_CLEAR_TX);
	uart_fifo = (uart_in(IIR) & 0xc0) == 0xc0;
	tx_room = 0;
}

static bool wait_lsr(uint8_t bits)
{
	/* Bounded: a UART that never drains must not hang the kernel. */
	for (unsigned i = 0; i < 20000; i++) {
		if ((uart_in(LSR) & bits) == bits)
			return true;
		cpu_relax();
	}
	return false;
}

void serial_putc(uint8_t c)
{
	if (tx_room <= 0) {
		wait_lsr(LSR_THRE);
		tx_room = uart_fifo ? 16 : 1;
	}
	uart_out(THR, c);
	tx_room--;
}

static void drain_rx(void)
{
	for (int i = 0; i < 64 && (uart_in(LSR) & LSR_DR); i++)
		(void)uart_in(RBR);
}

#define EXPECT(cond, ...)                          \
	do {                                       \
		if (!(cond)) {                     \
			ksnprintf(msg, n, __VA_ARGS__); \
			goto fail;                 \
		}                                  \
	} while (0)

/* The register-level behaviour that drivers (Linux's 8250 autoconfig among
 * them) rely on. Nothing is printed between the first register write and
 * the restore at the end: console output would disturb what is measured
 * (and in loopback mode would not leave the machine). */
int check_serial(char *msg, size_t n)
{
	uint8_t v, v2, msr1, msr2;

	/* Let the console drain first so THRE/TEMT can be seen set. */
	EXPECT(wait_lsr(LSR_THRE | LSR_TEMT),
	       "LSR never shows THRE|TEMT (LSR=0x%02x)", uart_in(LSR));
	tx_room = 0;

	/* Scratch register. */
	uart_out(SCR, 0x55);
	v = uart_in(SCR);
	uart_out(SCR, 0xaa);
	v2 = uart_in(SCR);
	EXPECT(v == 0x55 && v2 == 0xaa,
	       "scratch register read 0x%02x/0x%02x after writing 0x55/0xaa", v, v2);

	/* LCR round trip. */
	uart_out(LCR, 0x1b); /* 8 bits, even parity */
	v = uart_in(LCR);
	uart_out(LCR, LCR_8N1);
	EXPECT(v == 0x1b, "LCR read 0x%02x after writing 0x1b", v);

	/* IER: the low nibble is writable, the high nibble reads zero. */
	uart_out(IER, 0x05);
	v = uart_in(IER);
	uart_out(IER, 0);
	EXPECT(v == 0x05, "IER read 0x%02x after writing 0x05", v);

	/* Divisor latch behind DLAB, and IER back in place when DLAB clears. */
	uart_out(LCR, LCR_DLAB | LCR_8N1);
	uart_out(DLL, 0x34);
	uart_out(DLM, 0x12);
	v = uart_in(DLL);
	v2 = uart_in(DLM);
	uart_out(LCR, LCR_8N1);
	uint8_t ier = uart_in(IER);
	uart_out(LCR, LCR_DLAB | LCR_8N1);
	uint8_t lcr = uart_in(LCR);
	uint8_t again = uart_in(DLL);
	uart_out(DLL, 1);
	uart_out(DLM, 0);
	uart_out(LCR, LCR_8N1);
	EXPECT(v == 0x34 && v2 == 0x12,
	       "divisor latch read 0x%02x%02x after writing 0x1234", v2, v);
	EXPECT(ier == 0, "offset 1 read 0x%02x with DLAB clear (IER is 0)", ier);
	EXPECT(lcr == (LCR_DLAB | LCR_8N1), "LCR read 0x%02x with DLAB set", lcr);
	EXPECT(again == 0x34, "divisor latch lost its value (0x%02x)", again);

	/* FIFO enable shows in IIR bits 7:6, and no interrupt is pending. */
	uart_out(FCR, 0);
	v = uart_in(IIR);
	uart_out(FCR, FCR_ENABLE | FCR_CLEAR_RX | FCR_CLEAR_TX);
	v2 = uart_in(IIR);
	EXPECT((v & 0xc0) == 0 && (v & 1),
	       "IIR 0x%02x with FIFOs disabled (want bits 7:6 clear, bit 0 set)", v);
	EXPECT((v2 & 0xc0) == 0xc0 && (v2 & 1),
	       "IIR 0x%02x with FIFOs enabled (want 0xc1: a 16550A FIFO)", v2);

	/* Loopback: modem outputs appear on the modem inputs (MSR), and a
	 * transmitted byte comes back in RBR. */
	drain_rx();
	uart_out(MCR, MCR_LOOP | MCR_OUT2 | MCR_RTS);
	msr1 = uart_in(MSR) & 0xf0;
	uart_out(MCR, MCR_LOOP | MCR_OUT2 | MCR_OUT1 | MCR_RTS | MCR_DTR);
	msr2 = uart_in(MSR) & 0xf0;
	uart_out(THR, 0xa5);
	bool got = wait_lsr(LSR_DR);
	v = uart_in(RBR);
	uart_out(MCR, MCR_NORMAL);
	drain_rx();
	EXPECT(msr1 == 0x90, "loopback MSR 0x%02x with MCR=0x1a (want 0x90)", msr1);
	EXPECT(msr2 == 0xf0, "loopback MSR 0x%02x with MCR=0x1f (want 0xf0)", msr2);
	EXPECT(got && v == 0xa5, "loopback byte: %s 0x%02x, sent 0xa5",
	       got ? "received" : "LSR.DR never set, RBR", v);

	/* Output: a line goes out and the transmitter empties again. */
	uart_fifo = (uart_in(IIR) & 0xc0) == 0xc0;
	tx_room = 0;
	kprintf("# serial: transmit after register checks\n");
	EXPECT(wait_lsr(LSR_THRE | LSR_TEMT),
	       "transmitter does not drain (LSR=0x%02x)", uart_in(LSR));

	ksnprintf(msg, n, "16550A at 0x%x, FIFO, divisor latch, loopback", COM1);
	return PASS;
fail:
	serial_init();
	return FAIL;
}

/* Interrupt-driven receive of one line. */
static volatile char rx_line[128];
static volatile int rx_len;
static volatile bool rx_done;
static volatile uint64_t rx_irqs, rx_bytes;

void serial_irq(void)
{
	rx_irqs++;
	/* IRQ 4 is edge-triggered: the line stays up while data waits, so
	 * a handler that leaves data behind never sees another interrupt.
	 * Drain the receiver (bounded, so a UART that always claims data
	 * cannot hang the kernel). */
	for (int i = 0; i < (1 << 20) && (uart_in(LSR) & LSR_DR); i++) {
		char c = (char)uart_in(RBR);
		rx_bytes++;
		if (rx_done)
			continue;
		if (c == '\r' || c == '\n') {
			if (rx_len > 0)
				rx_done = true;
			continue;
		}
		if (rx_len < (int)sizeof(rx_line) - 1)
			rx_line[rx_len++] = (c >= 0x20 && c < 0x7f) ? c : '?';
	}
}

#define INPUT_TIMEOUT_S 60

int check_serial_input(char *msg, size_t n)
{
	rx_len = 0;
	rx_done = false;
	rx_irqs = rx_bytes = 0;

	uart_out(MCR, MCR_NORMAL); /* OUT2 gates the IRQ line on PCs */
	ioapic_route(4, true);
	uart_out(IER, 0x01); /* received data available */
	kprintf("# serial-input: waiting for a line on COM1 (%d s)\n",
		INPUT_TIMEOUT_S);

	/* Without timer interrupts wait_tick() falls back to a TSC delay of
	 * at least one tick, so counting calls bounds the wait as well. */
	uint64_t start = ticks, calls = 0, limit = (uint64_t)INPUT_TIMEOUT_S * PIT_HZ;
	while (!rx_done) {
		uint64_t elapsed = timer_alive() ? ticks - start : calls;
		if (elapsed > limit)
			break;
		wait_tick();
		calls++;
	}
	uart_out(IER, 0);
	ioapic_route(4, false);

	char line[128];
	int len = rx_len;
	for (int i = 0; i < len; i++)
		line[i] = rx_line[i];
	line[len] = 0;
	if (len)
		kprintf("# input: %s\n", line);
	if (!rx_done) {
		ksnprintf(msg, n,
			  "no complete line within %d s (%lu bytes, %lu interrupts)",
			  INPUT_TIMEOUT_S, (uint64_t)rx_bytes, (uint64_t)rx_irqs);
		return FAIL;
	}
	ksnprintf(msg, n, "%d characters, %lu bytes in %lu interrupts", len,
		  (uint64_t)rx_bytes, (uint64_t)rx_irqs);
	return PASS;
}
