/* Ring 3: where the kernel's number crunching runs.
 *
 * On hosts whose KVM emulates every CPL-0 instruction (about 2 us each)
 * but runs ring 3 natively, a SHA-256 over a MiB costs minutes at CPL 0
 * and a millisecond in ring 3. So the checks keep device access at CPL 0
 * and hand buffers to the functions here, which run through user_call()
 * (boot.S): no port I/O, no privileged instruction, nothing but memory
 * that the identity map marks user accessible.
 */
#include "kernel.h"

struct tss {
	uint32_t reserved0;
	uint64_t rsp0, rsp1, rsp2;
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3, iomap_base;
} __attribute__((packed));

#define SEL_TSS 0x28

static struct tss tss __attribute__((aligned(16)));
static bool user_ready;

extern uint64_t gdt_tss[2];
extern char user_kstack_top[], user_stack_top[];
extern char user_exit[];
extern uint64_t user_call(uint64_t (*fn)(void *), void *arg, void *stack_top);
extern void user_resume(uint64_t result) __attribute__((noreturn));

void user_init(void)
{
	if (user_ready)
		return;
	uint64_t base = (uint64_t)(uintptr_t)&tss;
	tss.rsp0 = (uint64_t)(uintptr_t)user_kstack_top;
	tss.iomap_base = sizeof(tss); /* no I/O bitmap: no ports for ring 3 */
	gdt_tss[0] = (sizeof(tss) - 1) | (base & 0xffffff) << 16 |
		     0x89ull << 40 /* present, 64-bit TSS, available */ |
		     ((base >> 24) & 0xff) << 56;
	gdt_tss[1] = base >> 32;
	__asm__ volatile("ltr %w0" : : "r"(SEL_TSS));
	user_ready = true;
}

/* From isr_dispatch: the #UD of user_exit in ring 3 is the way back. */
bool user_trap(struct irq_frame *f)
{
	if (f->vector != 6 || (f->cs & 3) != 3 ||
	    f->rip != (uint64_t)(uintptr_t)user_exit)
		return false;
	user_resume(f->rax);
}

uint64_t run_user(uint64_t (*fn)(void *), void *arg)
{
	user_init();
	return user_call(fn, arg, user_stack_top);
}

/* ---- SHA-256 (FIPS 180-4) ---------------------------------------------- */

static const uint32_t K[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
	0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
	0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
	0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
	0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
	0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
	0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
	0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
	0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static inline uint32_t ror(uint32_t x, int n)
{
	return x >> n | x << (32 - n);
}

static void sha256_block(uint32_t h[8], const uint8_t *p)
{
	uint32_t w[64];
	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
		       (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (int i = 16; i < 64; i++) {
		uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
		uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
	uint32_t e = h[4], f = h[5], g = h[6], hh = h[7];
	for (int i = 0; i < 64; i++) {
		uint32_t t1 = hh + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) +
			      ((e & f) ^ (~e & g)) + K[i] + w[i];
		uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) +
			      ((a & b) ^ (a & c) ^ (b & c));
		hh = g;
		g = f;
		f = e;
		e = d + t1;
		d = c;
		c = b;
		b = a;
		a = t1 + t2;
	}
	h[0] += a;
	h[1] += b;
	h[2] += c;
	h[3] += d;
	h[4] += e;
	h[5] += f;
	h[6] += g;
	h[7] += hh;
}

void sha256_init(struct sha256 *c)
{
	static const uint32_t iv[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372,
					0xa54ff53a, 0x510e527f, 0x9b05688c,
					0x1f83d9ab, 0x5be0cd19 };
	memcpy(c->h, iv, sizeof(iv));
	c->len = 0;
	c->nbuf = 0;
}

struct hash_args {
	struct sha256 *c;
	const uint8_t *p;
	uint64_t n;
	uint8_t *out;
};

static uint64_t u_sha256_update(void *arg)
{
	struct hash_args *a = arg;
	struct sha256 *c = a->c;
	const uint8_t *p = a->p;
	uint64_t n = a->n;
	c->len += n;
	if (c->nbuf) {
		while (n && c->nbuf < 64) {
			c->buf[c->nbuf++] = *p++;
			n--;
		}
		if (c->nbuf == 64) {
			sha256_block(c->h, c->buf);
			c->nbuf = 0;
		}
	}
	for (; n >= 64; n -= 64, p += 64)
		sha256_block(c->h, p);
	while (n--)
		c->buf[c->nbuf++] = *p++;
	return 0;
}

static uint64_t u_sha256_final(void *arg)
{
	struct hash_args *a = arg;
	struct sha256 *c = a->c;
	uint64_t bits = c->len * 8;
	c->buf[c->nbuf++] = 0x80;
	if (c->nbuf > 56) {
		while (c->nbuf < 64)
			c->buf[c->nbuf++] = 0;
		sha256_block(c->h, c->buf);
		c->nbuf = 0;
	}
	while (c->nbuf < 56)
		c->buf[c->nbuf++] = 0;
	for (int i = 7; i >= 0; i--)
		c->buf[c->nbuf++] = (uint8_t)(bits >> (8 * i));
	sha256_block(c->h, c->buf);
	for (int i = 0; i < 8; i++)
		for (int j = 0; j < 4; j++)
			a->out[4 * i + j] = (uint8_t)(c->h[i] >> (24 - 8 * j));
	return 0;
}

void sha256_update(struct sha256 *c, const void *p, uint64_t n)
{
	struct hash_args a = { c, p, n, NULL };
	run_user(u_sha256_update, &a);
}

void sha256_final(struct sha256 *c, uint8_t out[32])
{
	struct hash_args a = { c, NULL, 0, out };
	run_user(u_sha256_final, &a);
}

void sha256_hex(const uint8_t d[32], char out[65])
{
	static const char hex[] = "0123456789abcdef";
	for (int i = 0; i < 32; i++) {
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 15];
	}
	out[64] = 0;
}

/* The known answer of FIPS 180-2 for "abc": proves the ring-3 round trip
 * and the hash before a disk's checksum is believed. */
bool sha256_selftest(void)
{
	static const char want[] =
		"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
	struct sha256 c;
	uint8_t d[32];
	char hex[65];
	sha256_init(&c);
	sha256_update(&c, "abc", 3);
	sha256_final(&c, d);
	sha256_hex(d, hex);
	return !strcmp(hex, want);
}

/* ---- Patterns and compares --------------------------------------------- */

/* Every 8-byte word of every 512-byte sector differs: a word is a mix of
 * the seed, the sector number and its offset, so a misplaced, stale or
 * torn sector never matches. */
static inline uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

struct pattern_args {
	uint64_t *buf;
	uint64_t bytes, sector, seed;
	const uint8_t *a, *b;
};

static uint64_t u_pattern_fill(void *arg)
{
	struct pattern_args *a = arg;
	for (uint64_t i = 0; i < a->bytes / 8; i++)
		a->buf[i] = mix(a->seed ^ ((a->sector + i / 64) << 9 | (i % 64) * 8));
	return 0;
}

static uint64_t u_diff(void *arg)
{
	struct pattern_args *a = arg;
	for (uint64_t i = 0; i < a->bytes; i++)
		if (a->a[i] != a->b[i])
			return i + 1;
	return 0;
}

void pattern_fill(void *buf, uint64_t bytes, uint64_t sector, uint64_t seed)
{
	struct pattern_args a = { buf, bytes, sector, seed, NULL, NULL };
	run_user(u_pattern_fill, &a);
}

/* The offset of the first difference plus one, or 0 when equal. */
uint64_t mem_diff(const void *x, const void *y, uint64_t bytes)
{
	struct pattern_args a = { NULL, bytes, 0, 0, x, y };
	return run_user(u_diff, &a);
}

static uint64_t u_zero(void *arg)
{
	struct pattern_args *a = arg;
	memset(a->buf, 0, a->bytes);
	return 0;
}

/* memset(p, 0, n), in ring 3 when n is large: string instructions at
 * CPL 0 are emulated a chunk at a time on some hosts. */
void zero(void *p, uint64_t n)
{
	if (n <= 256) {
		memset(p, 0, n);
		return;
	}
	struct pattern_args a = { p, n, 0, 0, NULL, NULL };
	run_user(u_zero, &a);
}

static uint64_t u_copy(void *arg)
{
	struct pattern_args *a = arg;
	memcpy(a->buf, a->a, a->bytes);
	return 0;
}

/* memcpy in ring 3 (page 0 included: the identity map is user
 * accessible from address 0). */
void memcpy_user(void *dst, const void *src, uint64_t n)
{
	struct pattern_args a = { dst, n, 0, 0, src, NULL };
	run_user(u_copy, &a);
}
