/* The virtio-soak check (not in `all`): I/O until the machine stops, for
 * the host's soak test (tests/soak.sh), which pauses, resumes, inspects
 * and introspects the guest meanwhile.
 *
 * Round R writes one sector of the first virtio-blk disk, sector
 * R % SOAK_SECTORS, holding R and a pattern made from it; reads it back
 * and compares. When the device offers WRITE_ZEROES, it also writes the
 * same to sector SOAK_SECTORS + R % SOAK_SECTORS, zeroes it (unmapping
 * on odd rounds) and reads zeroes back. Then it prints "# soak R" on the
 * console. So the console shows every round, in order, and after the
 * run the disk holds each sector's last round and zeroes after them: the
 * host checks both, and no request or console line may be lost. Each
 * step of a round is one entry of soak_steps.
 *
 * With a virtio-net device, the guest first takes a DHCP lease (unless
 * net_ip= gives an address), and each round also sends the datagram
 * "lkvm-soak R" to net_peer= (the host's UDP echo server) until the same
 * comes back (net.c: a bounded number of sends); the line is then
 * "# soak R net E/S": E echoes (one a round) for S datagrams sent. The
 * host checks that its echo server saw every round's datagram.
 *
 * Never returns on success; FAIL with the round and what went wrong.
 */
#include "virtio.h"
#include "blk.h"

#define SOAK_SECTORS 64u
#define SOAK_WORDS (512 / 8)
#define BLK_F_WRITE_ZEROES_BIT 14
#define BLK_T_WRITE_ZEROES 13

static struct blk soak_blk;
static uint64_t out_buf, in_buf;
static bool soak_net;
static uint64_t net_echoes, net_sent;

/* The contents of round r's sector: r, then words derived from it. */
static void soak_fill(uint64_t *p, uint64_t r)
{
	p[0] = r;
	for (unsigned int i = 1; i < SOAK_WORDS; i++)
		p[i] = r * 0x9e3779b97f4a7c15ull + i;
}

/* A read or write of one sector, or a write-zeroes whose range buf
 * holds: OK, or false with what failed in msg. */
static bool soak_io(uint32_t type, uint64_t r, uint64_t sector, uint64_t buf,
		    char *msg, size_t n)
{
	uint32_t bytes = type == BLK_T_WRITE_ZEROES ? 16 : 512;
	int st = blk_cmd(&soak_blk, type, sector, buf, bytes, msg, n);

	if (st != BLK_S_OK && st >= 0)
		ksnprintf(msg, n, "round %lu: %s of sector %lu: status %d", r,
			  type == BLK_T_IN ? "read" :
			  type == BLK_T_OUT ? "write" : "write-zeroes",
			  sector, st);
	return st == BLK_S_OK;
}

static bool soak_step_blk(uint64_t r, char *msg, size_t n)
{
	uint64_t sector = r % SOAK_SECTORS;
	uint64_t *out = (uint64_t *)(uintptr_t)out_buf;
	uint64_t *in = (uint64_t *)(uintptr_t)in_buf;

	soak_fill(out, r);
	if (!soak_io(BLK_T_OUT, r, sector, out_buf, msg, n))
		return false;
	zero(in, 512);
	if (!soak_io(BLK_T_IN, r, sector, in_buf, msg, n))
		return false;
	for (unsigned int i = 0; i < SOAK_WORDS; i++) {
		if (in[i] != out[i]) {
			ksnprintf(msg, n, "round %lu: sector %lu word %u reads 0x%lx, wrote 0x%lx",
				  r, sector, i, in[i], out[i]);
			return false;
		}
	}
	return true;
}

static bool soak_step_zeroes(uint64_t r, char *msg, size_t n)
{
	uint64_t sector = SOAK_SECTORS + r % SOAK_SECTORS;
	uint64_t *seg = (uint64_t *)(uintptr_t)out_buf;
	uint64_t *in = (uint64_t *)(uintptr_t)in_buf;

	if (!(soak_blk.d->features & (1ull << BLK_F_WRITE_ZEROES_BIT)))
		return true;
	soak_fill(seg, r);
	if (!soak_io(BLK_T_OUT, r, sector, out_buf, msg, n))
		return false;
	/* One range: sector, one sector, flags (bit 0: unmap). */
	seg[0] = sector;
	seg[1] = 1ull | (uint64_t)(r & 1) << 32;
	if (!soak_io(BLK_T_WRITE_ZEROES, r, sector, out_buf, msg, n))
		return false;
	for (unsigned int i = 0; i < SOAK_WORDS; i++)
		in[i] = ~0ull;
	if (!soak_io(BLK_T_IN, r, sector, in_buf, msg, n))
		return false;
	for (unsigned int i = 0; i < SOAK_WORDS; i++) {
		if (in[i]) {
			ksnprintf(msg, n, "round %lu: sector %lu word %u reads 0x%lx after write-zeroes",
				  r, sector, i, in[i]);
			return false;
		}
	}
	return true;
}

static bool soak_step_net(uint64_t r, char *msg, size_t n)
{
	if (!soak_net)
		return true;
	if (net_soak_echo(r, &net_sent, msg, n) != PASS)
		return false;
	net_echoes++;
	return true;
}

static bool (*const soak_steps[])(uint64_t r, char *msg, size_t n) = {
	soak_step_blk,
	soak_step_zeroes,
	soak_step_net,
};

int check_virtio_soak(char *msg, size_t n)
{
	struct vdev *d = vdev_find(VIRTIO_ID_BLK, 0);

	if (!d) {
		ksnprintf(msg, n, "no virtio-blk device");
		return FAIL;
	}
	if (!virtio_timer_ok(msg, n) ||
	    !blk_open(&soak_blk, d, 1ull << BLK_F_WRITE_ZEROES_BIT, 1, msg, n))
		return FAIL;
	if (soak_blk.ro || soak_blk.capacity < 2 * SOAK_SECTORS) {
		ksnprintf(msg, n, "%s: needs a writable disk of %u sectors or more",
			  d->name, 2 * SOAK_SECTORS);
		return FAIL;
	}
	out_buf = blk_scratch();
	in_buf = out_buf + 4096;
	kprintf("# soak: %s, sectors 0-%u, write-zeroes %s\n", d->name,
		2 * SOAK_SECTORS - 1,
		soak_blk.d->features & (1ull << BLK_F_WRITE_ZEROES_BIT) ? "yes" : "no");
	soak_net = vdev_find(VIRTIO_ID_NET, 0) != NULL;
	if (soak_net) {
		char peer[32];
		if (net_soak_open(peer, sizeof(peer), msg, n) != PASS)
			return FAIL;
		kprintf("# soak: UDP echoes from %s\n", peer);
	}
	for (uint64_t r = 1;; r++) {
		for (size_t i = 0; i < ARRAY_SIZE(soak_steps); i++)
			if (!soak_steps[i](r, msg, n))
				return FAIL;
		if (soak_net)
			kprintf("# soak %lu net %lu/%lu\n", r, net_echoes, net_sent);
		else
			kprintf("# soak %lu\n", r);
	}
}
