/* Freestanding helpers: memory and string functions, formatting, console. */
#include "kernel.h"

/* One string instruction each: the emulator that runs CPL-0 code on slow
 * hosts charges per instruction, not per byte. */
void *memcpy(void *dst, const void *src, size_t n)
{
	void *d = dst;
	__asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
	return dst;
}

void *memset(void *dst, int c, size_t n)
{
	void *d = dst;
	__asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
	return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const uint8_t *x = a, *y = b;
	for (size_t i = 0; i < n; i++)
		if (x[i] != y[i])
			return x[i] < y[i] ? -1 : 1;
	return 0;
}

size_t strnlen(const char *s, size_t max)
{
	size_t n = 0;
	while (n < max && s[n])
		n++;
	return n;
}

size_t strlen(const char *s)
{
	return strnlen(s, (size_t)-1);
}

int strncmp(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (a[i] != b[i])
			return (uint8_t)a[i] < (uint8_t)b[i] ? -1 : 1;
		if (!a[i])
			return 0;
	}
	return 0;
}

int strcmp(const char *a, const char *b)
{
	return strncmp(a, b, (size_t)-1);
}

bool starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The next space-separated word of *s (advanced past it): its length,
 * 0 at the end. */
size_t next_word(const char **s, const char **word)
{
	const char *p = *s;
	while (*p == ' ')
		p++;
	*word = p;
	while (*p && *p != ' ')
		p++;
	*s = p;
	return (size_t)(p - *word);
}

bool parse_u64(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	if (len == 0 || len > 19)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return true;
}

/* Memory ranges: kept sorted is not needed, only sums and covers. */
void ranges_add(struct range *r, int *n, int max, uint64_t base, uint64_t size,
		bool *overflow)
{
	if (size == 0)
		return;
	if (*n >= max) {
		if (overflow)
			*overflow = true;
		return;
	}
	r[*n].base = base;
	r[*n].size = size;
	(*n)++;
}

uint64_t ranges_total(const struct range *r, int n)
{
	uint64_t t = 0;
	for (int i = 0; i < n; i++)
		t += r[i].size;
	return t;
}

uint64_t ranges_top(const struct range *r, int n)
{
	uint64_t top = 0;
	for (int i = 0; i < n; i++)
		if (r[i].base + r[i].size > top)
			top = r[i].base + r[i].size;
	return top;
}

/* True when [base, base+len) lies inside one range or in ranges that
 * touch; a byte at a time would be too slow, so walk forward by ranges. */
bool ranges_cover(const struct range *r, int n, uint64_t base, uint64_t len)
{
	uint64_t pos = base, end = base + len;
	if (end < base)
		return false;
	for (int guard = 0; pos < end && guard <= n; guard++) {
		bool moved = false;
		for (int i = 0; i < n; i++) {
			if (r[i].base <= pos && pos < r[i].base + r[i].size) {
				pos = r[i].base + r[i].size;
				moved = true;
			}
		}
		if (!moved)
			return false;
	}
	return pos >= end;
}

/* A small printf: %d %i %u %x %X %s %c %p %%, flags '0' and '-', a width,
 * a precision for %s (.N or .*), and the length modifiers l, ll and z. */
struct out {
	char *buf;
	size_t size, len;
};

static void put(struct out *o, char c)
{
	if (o->len + 1 < o->size)
		o->buf[o->len] = c;
	o->len++;
}

static void put_num(struct out *o, uint64_t v, unsigned base, bool neg,
		    int width, bool zero, bool left, bool upper)
{
	char tmp[24];
	int n = 0;
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	do {
		tmp[n++] = digits[v % base];
		v /= base;
	} while (v);
	int len = n + (neg ? 1 : 0);
	if (!left && !zero)
		for (; width > len; width--)
			put(o, ' ');
	if (neg)
		put(o, '-');
	if (!left && zero)
		for (; width > len; width--)
			put(o, '0');
	while (n)
		put(o, tmp[--n]);
	if (left)
		for (; width > len; width--)
			put(o, ' ');
}

int kvsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct out o = { buf, size, 0 };
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			put(&o, *fmt);
			continue;
		}
		fmt++;
		bool zero = false, left = false;
		for (;; fmt++) {
			if (*fmt == '0')
				zero = true;
			else if (*fmt == '-')
				left = true;
			else
				break;
		}
		int width = 0;
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		int prec = -1; /* strings only: at most this many characters */
		if (*fmt == '.') {
			fmt++;
			prec = 0;
			if (*fmt == '*') {
				prec = va_arg(ap, int);
				fmt++;
			}
			while (*fmt >= '0' && *fmt <= '9')
				prec = prec * 10 + (*fmt++ - '0');
		}
		int lng = 0;
		while (*fmt == 'l' || *fmt == 'z') {
			lng++;
			fmt++;
		}
		switch (*fmt) {
		case 'd':
		case 'i': {
			int64_t v = lng ? va_arg(ap, int64_t) : va_arg(ap, int);
			put_num(&o, v < 0 ? -(uint64_t)v : (uint64_t)v, 10, v < 0,
				width, zero, left, false);
			break;
		}
		case 'u':
		case 'x':
		case 'X': {
			uint64_t v = lng ? va_arg(ap, uint64_t)
					 : va_arg(ap, unsigned int);
			put_num(&o, v, *fmt == 'u' ? 10 : 16, false, width, zero,
				left, *fmt == 'X');
			break;
		}
		case 'p':
			put(&o, '0');
			put(&o, 'x');
			put_num(&o, (uintptr_t)va_arg(ap, void *), 16, false, width,
				zero, left, false);
			break;
		case 's': {
			const char *s = va_arg(ap, const char *);
			if (!s)
				s = "(null)";
			size_t len = prec >= 0 ? strnlen(s, (size_t)prec) : strlen(s);
			if (!left)
				for (; width > (int)len; width--)
					put(&o, ' ');
			for (size_t i = 0; i < len; i++)
				put(&o, s[i]);
			if (left)
				for (; width > (int)len; width--)
					put(&o, ' ');
			break;
		}
		case 'c':
			put(&o, (char)va_arg(ap, int));
			break;
		case '%':
			put(&o, '%');
			break;
		case 0:
			fmt--;
			break;
		default:
			put(&o, '%');
			put(&o, *fmt);
		}
	}
	if (o.size)
		o.buf[o.len < o.size ? o.len : o.size - 1] = 0;
	return (int)o.len;
}

int ksnprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = kvsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return r;
}

/* The console is shared with application processors that hit an exception;
 * a bounded spin keeps a crashed holder from silencing everyone else. */
static volatile int console_lock;

void console_write(const char *s, size_t n)
{
	for (unsigned spin = 0; spin < 100000; spin++) {
		if (!__atomic_exchange_n(&console_lock, 1, __ATOMIC_ACQUIRE))
			break;
		cpu_relax();
	}
	for (size_t i = 0; i < n; i++)
		serial_putc((uint8_t)s[i]);
	__atomic_store_n(&console_lock, 0, __ATOMIC_RELEASE);
}

void kprintf(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	int n = kvsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 1)
		n = sizeof(buf) - 1;
	console_write(buf, (size_t)n);
}
