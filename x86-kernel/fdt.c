/* A bounds-checked reader of flattened device trees (version 16/17).
 * Every offset and length in the blob is checked against the blob before
 * use; anything malformed stops the walk with a message. */
#include "kernel.h"

#define FDT_MAGIC 0xd00dfeed
#define FDT_BEGIN_NODE 1
#define FDT_END_NODE 2
#define FDT_PROP 3
#define FDT_NOP 4
#define FDT_END 9
#define MAX_DEPTH 16

enum kind { K_OTHER, K_ROOT, K_MEMORY, K_CPUS, K_CPU, K_CHOSEN };

struct node {
	enum kind kind;
	uint32_t ac, sc; /* #address-cells, #size-cells for the children */
	bool isa;	 /* an ISA bus: children's reg is <space address ...> */
	bool serial, virtio, has_reg, io, disabled;
	uint64_t reg, reg_size;
	int irq;
};

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t cells(const uint8_t *p, uint32_t n)
{
	return n == 2 ? (uint64_t)be32(p) << 32 | be32(p + 4) : n == 1 ? be32(p) : 0;
}

static bool name_is(const char *name, const char *base)
{
	size_t n = strlen(base);
	return !strncmp(name, base, n) && (name[n] == 0 || name[n] == '@');
}

/* A stringlist property holds an exact entry. */
static bool strlist_has(const uint8_t *v, uint32_t len, const char *want)
{
	uint32_t pos = 0;
	while (pos < len) {
		size_t l = strnlen((const char *)v + pos, len - pos);
		if (l == len - pos)
			return false; /* unterminated */
		if (!strcmp((const char *)v + pos, want))
			return true;
		pos += (uint32_t)l + 1;
	}
	return false;
}

#define BAD(...)                                                   \
	do {                                                       \
		ksnprintf(f->error, sizeof(f->error), __VA_ARGS__); \
		return false;                                      \
	} while (0)

static bool prop(struct fdt_info *f, struct node *nd, const struct node *parent,
		 const char *name, const uint8_t *v, uint32_t len)
{
	if (!strcmp(name, "#address-cells") || !strcmp(name, "#size-cells")) {
		if (len != 4)
			BAD("%s has length %u", name, len);
		uint32_t c = be32(v);
		if (c > 4)
			BAD("%s = %u", name, c);
		if (name[1] == 'a')
			nd->ac = c;
		else
			nd->sc = c;
		return true;
	}
	if (!strcmp(name, "status")) {
		nd->disabled = len >= 9 && !strncmp((const char *)v, "disabled", 9);
		return true;
	}
	if (!strcmp(name, "device_type")) {
		if (len == 4 && !memcmp(v, "isa", 4))
			nd->isa = true;
		return true;
	}
	if (!strcmp(name, "interrupts")) {
		if (len >= 4)
			nd->irq = (int)(be32(v) & 0x7fffffff);
		return true;
	}
	if (!strcmp(name, "compatible")) {
		if (strlist_has(v, len, "ns16550a"))
			nd->serial = true;
		if (strlist_has(v, len, "virtio,mmio"))
			nd->virtio = true;
		return true;
	}
	if (nd->kind == K_CHOSEN && !strcmp(name, "bootargs")) {
		if (len == 0 || v[len - 1] != 0 ||
		    strnlen((const char *)v, len) != len - 1)
			BAD("/chosen/bootargs is not one NUL-terminated string");
		f->bootargs = (const char *)v;
		return true;
	}
	if (strcmp(name, "reg") || !parent)
		return true;

	uint32_t ac = parent->ac, sc = parent->sc;
	if (nd->kind == K_MEMORY) {
		if (ac < 1 || ac > 2 || sc < 1 || sc > 2)
			BAD("memory reg with #address-cells %u, #size-cells %u", ac, sc);
		uint32_t tuple = (ac + sc) * 4;
		if (len == 0 || len % tuple)
			BAD("memory reg length %u is not a multiple of %u", len, tuple);
		for (uint32_t off = 0; off < len; off += tuple) {
			uint64_t base = cells(v + off, ac);
			uint64_t size = cells(v + off + ac * 4, sc);
			if (base + size < base)
				BAD("memory range 0x%lx+0x%lx wraps", base, size);
			ranges_add(f->mem, &f->nmem, MAX_RANGES, base, size,
				   &f->mem_overflow);
		}
		return true;
	}
	if (parent->isa) {
		/* Open Firmware ISA binding: <space address size>, space bit 0
		 * set for I/O ports. */
		if (ac != 2 || len < 8)
			BAD("ISA reg of length %u with #address-cells %u", len, ac);
		nd->io = be32(v) & 1;
		nd->reg = be32(v + 4);
		nd->has_reg = true;
		return true;
	}
	if (ac < 1 || ac > 2) {
		if (nd->kind == K_CPU)
			BAD("/cpus has #address-cells %u", ac);
		return true; /* a reg this reader does not need */
	}
	if (len < ac * 4)
		BAD("reg of length %u, shorter than #address-cells %u", len, ac);
	nd->reg = cells(v, ac);
	if (sc >= 1 && sc <= 2 && len >= (ac + sc) * 4)
		nd->reg_size = cells(v + ac * 4, sc);
	nd->has_reg = true;
	return true;
}

static bool end_node(struct fdt_info *f, const struct node *nd)
{
	if (nd->kind == K_CPU && !nd->disabled) {
		if (!nd->has_reg)
			BAD("a cpu node has no reg (APIC ID)");
		if (f->ncpus < MAX_CPUS)
			f->cpu_ids[f->ncpus] = (uint32_t)nd->reg;
		else
			f->cpus_overflow = true;
		f->ncpus++;
	}
	if (nd->serial && !nd->disabled) {
		if (f->nserial < (int)ARRAY_SIZE(f->serial)) {
			struct fdt_serial *s = &f->serial[f->nserial];
			s->has_reg = nd->has_reg;
			s->io = nd->io;
			s->addr = nd->reg;
			s->irq = nd->irq;
		}
		f->nserial++;
	}
	if (nd->virtio && !nd->disabled) {
		if (!nd->has_reg)
			BAD("a virtio,mmio node has no reg");
		if (f->nvirtio < FDT_MAX_VIRTIO) {
			struct fdt_virtio *v = &f->virtio[f->nvirtio];
			v->addr = nd->reg;
			v->size = nd->reg_size;
			v->irq = nd->irq;
		}
		f->nvirtio++;
	}
	return true;
}

static bool walk(struct fdt_info *f, const uint8_t *st, uint32_t st_len,
		 const char *str, uint32_t str_len)
{
	struct node stack[MAX_DEPTH];
	int depth = 0;
	bool root_done = false;
	uint32_t pos = 0;

	for (;;) {
		if (st_len - pos < 4)
			BAD("structure block ends without FDT_END");
		uint32_t tok = be32(st + pos);
		uint32_t at = pos;
		pos += 4;
		switch (tok) {
		case FDT_BEGIN_NODE: {
			const char *name = (const char *)st + pos;
			size_t l = strnlen(name, st_len - pos);
			if (l == st_len - pos)
				BAD("unterminated node name at 0x%x", at);
			if (((uint64_t)pos + l + 1 + 3) / 4 * 4 > st_len)
				BAD("node name runs past the structure block");
			pos = (uint32_t)((pos + l + 1 + 3) & ~3u);
			if (root_done)
				BAD("a second root node at 0x%x", at);
			if (depth == MAX_DEPTH)
				BAD("nodes nested deeper than %d", MAX_DEPTH);
			struct node *parent = depth ? &stack[depth - 1] : NULL;
			struct node *nd = &stack[depth++];
			memset(nd, 0, sizeof(*nd));
			nd->ac = 2; /* defaults from the devicetree specification */
			nd->sc = 1;
			nd->irq = -1;
			nd->isa = name_is(name, "isa");
			if (depth == 1)
				nd->kind = K_ROOT;
			else if (depth == 2 && name_is(name, "memory"))
				nd->kind = K_MEMORY;
			else if (depth == 2 && name_is(name, "cpus"))
				nd->kind = K_CPUS;
			else if (depth == 2 && name_is(name, "chosen")) {
				nd->kind = K_CHOSEN;
				f->chosen = true;
			} else if (depth == 3 && parent->kind == K_CPUS &&
				   name_is(name, "cpu"))
				nd->kind = K_CPU;
			f->nodes++;
			break;
		}
		case FDT_END_NODE:
			if (depth == 0)
				BAD("FDT_END_NODE without a node at 0x%x", at);
			if (!end_node(f, &stack[depth - 1]))
				return false;
			if (--depth == 0)
				root_done = true;
			break;
		case FDT_PROP: {
			if (st_len - pos < 8)
				BAD("truncated property header at 0x%x", at);
			uint32_t len = be32(st + pos), nameoff = be32(st + pos + 4);
			pos += 8;
			if (len > st_len - pos)
				BAD("property at 0x%x: length %u past the block", at, len);
			const uint8_t *v = st + pos;
			pos += len;
			if (pos & 3) {
				if (st_len - pos < (4 - (pos & 3)))
					BAD("property padding past the block");
				pos = (pos + 3) & ~3u;
			}
			if (depth == 0)
				BAD("property outside any node at 0x%x", at);
			if (nameoff >= str_len)
				BAD("property name offset 0x%x past the strings", nameoff);
			const char *name = str + nameoff;
			if (strnlen(name, str_len - nameoff) == str_len - nameoff)
				BAD("unterminated property name at 0x%x", nameoff);
			if (!prop(f, &stack[depth - 1],
				  depth > 1 ? &stack[depth - 2] : NULL, name, v, len))
				return false;
			break;
		}
		case FDT_NOP:
			break;
		case FDT_END:
			if (depth)
				BAD("FDT_END inside a node");
			if (!root_done)
				BAD("no root node");
			return true;
		default:
			BAD("unknown token 0x%x at 0x%x", tok, at);
		}
	}
}

static bool parse(const uint8_t *b, uint64_t avail, struct fdt_info *f)
{
	if (avail < 40)
		BAD("blob of %lu bytes is smaller than the header", avail);
	if (be32(b) != FDT_MAGIC)
		BAD("magic 0x%x, not 0xd00dfeed", be32(b));
	uint32_t total = be32(b + 4), off_st = be32(b + 8), off_str = be32(b + 12);
	uint32_t off_rsv = be32(b + 16);
	f->totalsize = total;
	f->version = be32(b + 20);
	f->last_comp = be32(b + 24);
	f->boot_cpuid = be32(b + 28);
	uint32_t str_len = be32(b + 32);
	if (total < 40 || total > avail)
		BAD("totalsize %u outside 40..%lu", total, avail);
	if (f->version < 16 || f->last_comp > 17)
		BAD("version %u, last compatible %u: need 16 or 17", f->version,
		    f->last_comp);
	uint32_t st_len = f->version >= 17 ? be32(b + 36) : total - off_st;
	if (f->version >= 17 && total < 40)
		BAD("version 17 header does not fit");
	if ((off_st & 3) || (off_rsv & 7))
		BAD("misaligned block offsets (struct 0x%x, reserve map 0x%x)",
		    off_st, off_rsv);
	if ((uint64_t)off_st + st_len > total)
		BAD("structure block 0x%x+0x%x past totalsize", off_st, st_len);
	if ((uint64_t)off_str + str_len > total)
		BAD("strings block 0x%x+0x%x past totalsize", off_str, str_len);
	if (off_rsv < 40 || off_rsv >= total)
		BAD("reserve map offset 0x%x outside the blob", off_rsv);
	for (uint32_t p = off_rsv;; p += 16) {
		if ((uint64_t)p + 16 > total)
			BAD("memory reserve map not terminated");
		if (!be32(b + p) && !be32(b + p + 4) && !be32(b + p + 8) &&
		    !be32(b + p + 12))
			break;
		f->nrsv++;
	}
	return walk(f, b + off_st, st_len, (const char *)b + off_str, str_len);
}

void fdt_parse(const uint8_t *blob, uint64_t avail, struct fdt_info *f)
{
	memset(f, 0, sizeof(*f));
	f->valid = parse(blob, avail, f);
}
