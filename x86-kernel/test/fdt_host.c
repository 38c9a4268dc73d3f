/*
 * Host build of the kernel's FDT reader (fdt.c), for `make -C x86-kernel
 * check`: prints what the reader finds in a blob, and feeds it mutated and
 * truncated blobs under AddressSanitizer, where any read outside the blob
 * stops the run. The kernel's lib.c is built alongside with its libc names
 * renamed, so the reader runs against the libc the sanitizer watches.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernel.h"

/* lib.c's console needs a UART; here it is stdout. */
void serial_putc(uint8_t c)
{
	putchar(c);
}

static uint8_t *load(const char *path, size_t *size)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		exit(2);
	}
	uint8_t *buf = NULL;
	size_t n = 0, cap = 0;
	for (;;) {
		if (n == cap) {
			cap = cap ? cap * 2 : 4096;
			buf = realloc(buf, cap);
		}
		size_t r = fread(buf + n, 1, cap - n, f);
		if (!r)
			break;
		n += r;
	}
	fclose(f);
	*size = n;
	return buf;
}

static void show(const struct fdt_info *f)
{
	if (!f->valid) {
		printf("invalid: %s\n", f->error);
		return;
	}
	printf("valid: version %u, %d nodes, %d reserved\n", f->version, f->nodes,
	       f->nrsv);
	for (int i = 0; i < f->nmem; i++)
		printf("memory: 0x%llx+0x%llx\n", (unsigned long long)f->mem[i].base,
		       (unsigned long long)f->mem[i].size);
	printf("cpus: %d:", f->ncpus);
	for (int i = 0; i < f->ncpus && i < MAX_CPUS; i++)
		printf(" %u", f->cpu_ids[i]);
	printf("\nbootargs: %s\n", f->bootargs ? f->bootargs : "(none)");
	printf("chosen: %s\n", f->chosen ? "yes" : "no");
	printf("serial: %d\n", f->nserial);
	for (int i = 0; i < f->nserial && i < 8; i++)
		printf("serial: %s 0x%llx irq %d\n",
		       !f->serial[i].has_reg ? "no reg" : f->serial[i].io ? "io" : "mem",
		       (unsigned long long)f->serial[i].addr, f->serial[i].irq);
	if (f->nvirtio)
		printf("virtio,mmio: %d\n", f->nvirtio);
	for (int i = 0; i < f->nvirtio && i < FDT_MAX_VIRTIO; i++)
		printf("virtio,mmio: 0x%llx+0x%llx irq %d\n",
		       (unsigned long long)f->virtio[i].addr,
		       (unsigned long long)f->virtio[i].size, f->virtio[i].irq);
}

/* Every read the reader makes must stay inside the exact-size copy. */
static void fuzz(const uint8_t *blob, size_t size, unsigned rounds)
{
	srand(12345);
	unsigned valid = 0;
	for (unsigned r = 0; r < rounds; r++) {
		size_t n = size;
		if (r % 4 == 0)
			n = (size_t)rand() % (size + 1);
		uint8_t *b = malloc(n ? n : 1);
		memcpy(b, blob, n);
		int flips = 1 + rand() % 4;
		for (int i = 0; i < flips && n >= 4; i++) {
			size_t at = ((size_t)rand() % n) & ~(size_t)3;
			if (at + 4 > n)
				continue;
			static const uint32_t nasty[] = { 0, 1, 2, 3, 4, 9, 0xffffffff,
							  0x7fffffff, 0x80000000,
							  0xfffffffc, 0x10000 };
			uint32_t v = rand() % 2 ? nasty[rand() % 11] : (uint32_t)rand();
			if (rand() % 3 == 0)
				b[at + rand() % 4] ^= (uint8_t)(1u << (rand() % 8));
			else
				memcpy(b + at, &v, 4); /* byte order does not matter */
		}
		struct fdt_info f;
		fdt_parse(b, n, &f);
		valid += f.valid;
		free(b);
	}
	printf("fuzz: %u rounds, %u still valid\n", rounds, valid);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s BLOB [fuzz ROUNDS]\n", argv[0]);
		return 2;
	}
	size_t size;
	uint8_t *blob = load(argv[1], &size);
	if (argc >= 4 && !strcmp(argv[2], "fuzz")) {
		fuzz(blob, size, (unsigned)strtoul(argv[3], NULL, 0));
		free(blob);
		return 0;
	}
	/* An exact-size copy, so an overread is caught here too. */
	uint8_t *exact = malloc(size ? size : 1);
	memcpy(exact, blob, size);
	struct fdt_info f;
	fdt_parse(exact, size, &f);
	show(&f);
	free(exact);
	free(blob);
	return 0;
}
