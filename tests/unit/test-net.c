// SPDX-License-Identifier: GPL-2.0
/* The -n option of virtio-net (net_parse): what it accepts, what it
 * refuses. Refusals print one line on stderr. */
#include <string.h>

#include "lkvm/net.h"
#include "tap.h"

int main(void)
{
	struct net_opts o;
	static const uint8_t mac[6] = { 0x02, 0, 0, 0, 0, 0x42 };

	CHECK(net_parse("none", 0, &o) == 1, "none: no device");
	CHECK(net_parse("mode=none", 0, &o) == 1, "mode=none: no device");
	CHECK(net_parse("mode=user", 3, &o) == 0 && o.mode == NET_USER &&
		      o.mac[5] == 3 && o.mac[0] == 0x02 && !o.tapif,
	      "user mode; the default MAC ends in the device number");
	CHECK(net_parse("hostfwd=tcp:2222-:22,hostfwd=udp:53-:5353", 0, &o) ==
			      0 && o.mode == NET_USER && o.nhostfwd == 2 &&
		      !strcmp(o.hostfwd[1], "udp:53-:5353"),
	      "no mode: user, with two forwards");
	CHECK(net_parse("mode=tap,tapif=tap0,queues=4,guest_mac=02:00:00:00:00:42",
			0, &o) == 0 && o.mode == NET_TAP &&
		      !strcmp(o.tapif, "tap0") && o.queues == 4 &&
		      !memcmp(o.mac, mac, 6),
	      "tap with a name, queues and a MAC");
	CHECK(net_parse("mode=tap", 0, &o) == 0 && !o.tapif && !o.queues,
	      "tap lkvm creates");
	CHECK(net_parse("", 0, &o) == 0 && o.mode == NET_USER,
	      "an empty -n: user mode");

	static const char *const bad[] = {
		"mode=bogus", "mode", "=tap", "mode=tap,", ",mode=tap", "mode=tap,,tapif=t", "tapif=tap0",
		"mode=tap,tapif=", "mode=tap,tapif=a/b",
		"mode=tap,tapif=a-name-far-too-long-for-ifnamsiz",
		"mode=tap,queues=0", "mode=tap,queues=9", "mode=tap,queues=12",
		"mode=user,queues=2", "guest_mac=01:00:00:00:00:01",
		"guest_mac=02:00:00:00:00", "guest_mac=02:00:00:00:00:0g",
		"guest_mac=02:00:00:00:00:01:02", "hostfwd=tcp:80",
		"hostfwd=tcp:0-:80", "hostfwd=tcp:80-:70000", "hostfwd=icmp:1-:1",
		"hostfwd=tcp:1-:1x", "mode=tap,hostfwd=tcp:1-:1",
		"hostfwd=tcp:1-:1,hostfwd=tcp:2-:2,hostfwd=tcp:3-:3,"
		"hostfwd=tcp:4-:4,hostfwd=tcp:5-:5,hostfwd=tcp:6-:6,"
		"hostfwd=tcp:7-:7,hostfwd=tcp:8-:8,hostfwd=tcp:9-:9",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char what[160];

		snprintf(what, sizeof(what), "refused: '%s'", bad[i]);
		CHECK(net_parse(bad[i], 0, &o) == -1, what);
	}
	return tap_done();
}
