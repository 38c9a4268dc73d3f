// SPDX-License-Identifier: GPL-2.0
/*
 * The tap backend: -n mode=tap[,tapif=NAME]. With tapif naming an
 * existing interface lkvm attaches to it and leaves it as it was;
 * otherwise the kernel names a new one (lkvmtapN), lkvm brings it up,
 * and it goes away when lkvm closes the descriptor (it is not
 * persistent), so nothing is left behind even after a crash.
 *
 * Frames carry the 12-byte virtio-net header (IFF_VNET_HDR with
 * TUNSETVNETHDRSZ 12), so checksum and segmentation offloads pass
 * between the guest and the host stack untouched; TUNSETOFFLOAD says
 * which offloaded frames the guest accepts.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lkvm/net.h"
#include "lkvm/util.h"

static int link_up(const char *name)
{
	struct ifreq ifr = { 0 };
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int err = 0;

	if (s < 0)
		return -errno;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		err = -errno;
	ifr.ifr_flags |= IFF_UP;
	if (!err && ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		err = -errno;
	close(s);
	return err;
}

/* One queue of the tap named in ifr (a pattern for the first). */
static int open_queue(struct ifreq *ifr, bool multi)
{
	unsigned int hdr = NET_HDR_LEN;
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	ifr->ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR |
			 (multi ? IFF_MULTI_QUEUE : 0);
	if (ioctl(fd, TUNSETIFF, ifr) < 0 ||
	    ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0 ||
	    ioctl(fd, TUNSETOFFLOAD, 0) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

int net_tap_open(const struct net_opts *o, struct net_backend *be)
{
	unsigned int nq = o->queues ? o->queues : 1;
	struct ifreq ifr = { 0 };
	char path[64];
	int fd, err = 0;

	be->nfds = 0;
	if (o->tapif) {
		snprintf(path, sizeof(path), "/sys/class/net/%s", o->tapif);
		be->created = access(path, F_OK) != 0;
	} else {
		be->created = true;
	}
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s",
		 o->tapif ? o->tapif : "lkvmtap%d");
	/* The later queues open the name the kernel gave the first. */
	while (be->nfds < nq) {
		fd = open_queue(&ifr, nq > 1);
		if (fd < 0) {
			err = fd;
			break;
		}
		be->fds[be->nfds++] = fd;
	}
	snprintf(be->desc, sizeof(be->desc), "tap %s", ifr.ifr_name);
	if (!err && be->created && link_up(ifr.ifr_name) < 0)
		err = -errno;
	if (err) {
		pr_err("network: tap %s: %s%s", o->tapif ? o->tapif : "(new)",
		       strerror(-err), err == -EINVAL && nq > 1 ?
		       " (a tap made without multi_queue takes one queue)" : "");
		net_backend_close(be);
		return err;
	}
	be->vnet_hdr = true;
	return 0;
}

int net_tap_attach(struct net_backend *be, unsigned int i, bool on)
{
	struct ifreq ifr = { 0 };

	if (be->nfds < 2 || i >= be->nfds)
		return 0;	/* a single queue is always attached */
	ifr.ifr_flags = on ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE;
	if (ioctl(be->fds[i], TUNSETQUEUE, &ifr) < 0 && errno != EINVAL)
		return -errno;
	return 0;
}

int net_tap_offload(struct net_backend *be, unsigned int flags)
{
	unsigned long f = 0;

	if (flags & NET_OFF_CSUM)
		f |= TUN_F_CSUM;
	if (flags & NET_OFF_TSO4)
		f |= TUN_F_TSO4;
	if (flags & NET_OFF_TSO6)
		f |= TUN_F_TSO6;
	/* The offloads are the interface's: one queue sets them for all. */
	return ioctl(be->fds[0], TUNSETOFFLOAD, f) < 0 ? -errno : 0;
}
