/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Network backends for virtio-net (net/): where the guest's Ethernet
 * frames go. A backend is one file descriptor that carries one frame per
 * read() and per write(): a tap device (net/tap.c) or a socketpair to
 * the lkvm-slirp helper (net/user.c). virtio/net.c reads and writes it
 * from the device's I/O thread; the backend only opens, tunes and closes
 * it.
 */
#ifndef LKVM_NET_H
#define LKVM_NET_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define NET_MAX_HOSTFWD 8
/* Queue pairs a tap may have (IFF_MULTI_QUEUE): -n ...,queues=N. */
#define NET_MAX_QUEUES 8

enum net_mode { NET_USER, NET_TAP };

/* One -n argument, parsed. */
struct net_opts {
	enum net_mode mode;
	const char *tapif;		/* NULL: lkvm creates one */
	unsigned int queues;		/* tap: queue pairs (0: 1) */
	uint8_t mac[6];
	unsigned int nhostfwd;
	char hostfwd[NET_MAX_HOSTFWD][48];	/* "tcp:HOSTPORT-:GUESTPORT" */
	char tapname[16];		/* storage for tapif */
	bool detached;			/* --detach: the helper gets no caller's stdio */
};

/*
 * The 12-byte header (virtio 1.2, 5.1.6) that frames carry to and from a
 * backend with vnet_hdr: what the tap device reads and writes after
 * TUNSETVNETHDRSZ 12.
 */
#define NET_HDR_LEN 12
#define NET_HDR_F_NEEDS_CSUM 1
#define NET_HDR_F_DATA_VALID 2
#define NET_HDR_GSO_NONE 0
#define NET_HDR_GSO_TCPV4 1
#define NET_HDR_GSO_UDP 3
#define NET_HDR_GSO_TCPV6 4
#define NET_HDR_GSO_ECN 0x80

/* Offloads a backend may be asked to deliver (TUN_F_* values). */
#define NET_OFF_CSUM 0x01
#define NET_OFF_TSO4 0x02
#define NET_OFF_TSO6 0x04

struct net_backend {
	/* Non-blocking; one frame per read/write; one per queue pair. */
	int fds[NET_MAX_QUEUES];
	unsigned int nfds;
	bool vnet_hdr;		/* frames carry NET_HDR_LEN bytes first */
	bool created;		/* tap: lkvm created the interface */
	char desc[48];		/* "tap lkvmtap0", "user" for messages */
	pid_t helper;		/* user: the lkvm-slirp process, or 0 */
};

/*
 * Parses one -n argument ("mode=tap,tapif=tap0,guest_mac=...") into o;
 * instance numbers the default MAC. Returns 0, 1 for "none" (no device),
 * or -1 after printing a one-line error.
 */
int net_parse(const char *arg, unsigned int instance, struct net_opts *o);

/*
 * Opens the backend. -errno after printing what failed (the caller keeps
 * the device, with its link down).
 */
int net_tap_open(const struct net_opts *o, struct net_backend *be);
int net_user_open(const struct net_opts *o, struct net_backend *be);
/* Asks the tap for offloaded frames (NET_OFF_*); 0 or -errno. */
int net_tap_offload(struct net_backend *be, unsigned int flags);
/* Lets the tap steer flows to queue i (on) or not; 0 or -errno. */
int net_tap_attach(struct net_backend *be, unsigned int i, bool on);
void net_backend_close(struct net_backend *be);

#endif
