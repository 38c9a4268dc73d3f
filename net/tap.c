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

int net_tap_open(const struct net_opts *o, struct net_backend *be)
{
	struct ifreq ifr = { 0 };
	unsigned int hdr = NET_HDR_LEN;
	char path[64];
	int fd;

	be->fd = -1;
	if (o->tapif) {
		snprintf(path, sizeof(path), "/sys/class/net/%s", o->tapif);
		be->created = access(path, F_OK) != 0;
	} else {
		be->created = true;
	}
	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		goto fail;
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s",
		 o->tapif ? o->tapif : "lkvmtap%d");
	if (ioctl(fd, TUNSETIFF, &ifr) < 0 ||
	    ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0 ||
	    ioctl(fd, TUNSETOFFLOAD, 0) < 0)
		goto fail;
	snprintf(be->desc, sizeof(be->desc), "tap %s", ifr.ifr_name);
	if (be->created && link_up(ifr.ifr_name) < 0)
		goto fail;
	be->fd = fd;
	be->vnet_hdr = true;
	return 0;
fail:
	{
		int err = -errno;

		pr_err("network: tap %s: %s", o->tapif ? o->tapif : "(new)",
		       strerror(errno));
		if (fd >= 0)
			close(fd);
		return err;
	}
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
	return ioctl(be->fd, TUNSETOFFLOAD, f) < 0 ? -errno : 0;
}
