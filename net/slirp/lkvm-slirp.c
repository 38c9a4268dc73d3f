// SPDX-License-Identifier: GPL-2.0
/*
 * lkvm-slirp: user-mode networking for lkvm (-n mode=user), a separate
 * program so that lkvm stays static and libslirp, which parses what the
 * guest sends, runs in its own process.
 *
 *   lkvm-slirp FD [tcp:HOSTPORT-:GUESTPORT | udp:HOSTPORT-:GUESTPORT]...
 *
 * FD is a SOCK_SEQPACKET socket: each message is one Ethernet frame, to
 * or from the guest. The network is 10.0.2.0/24: the host (and its
 * loopback) is 10.0.2.2, DNS 10.0.2.3, DHCP hands out 10.0.2.15 first;
 * forwards listen on the host's 127.0.0.1 and go to 10.0.2.15. The
 * program exits when lkvm closes its end (or dies).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <slirp/libslirp.h>

#define MAX_POLL 1024
#define MAX_TIMERS 16
#define FRAME_MAX 65536

struct timer {
	bool used, armed;
	int64_t expire_ms;
	SlirpTimerCb cb;
	void *opaque;
};

static int link_fd;
static struct pollfd pfd[MAX_POLL];
static int npfd;
static struct timer timers[MAX_TIMERS];

static ssize_t to_guest(const void *buf, size_t len, void *opaque)
{
	ssize_t r;

	(void)opaque;
	do
		r = send(link_fd, buf, len, MSG_DONTWAIT);
	while (r < 0 && errno == EINTR);
	/* A full socket drops the frame, as a full NIC ring does. */
	return r < 0 && errno != EAGAIN ? -1 : (ssize_t)len;
}

static void guest_error(const char *msg, void *opaque)
{
	(void)opaque;
	fprintf(stderr, "lkvm-slirp: guest error: %s\n", msg);
}

static int64_t now_ns(void *opaque)
{
	struct timespec ts;

	(void)opaque;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *timer_new(SlirpTimerCb cb, void *cb_opaque, void *opaque)
{
	(void)opaque;
	for (int i = 0; i < MAX_TIMERS; i++) {
		if (!timers[i].used) {
			timers[i] = (struct timer){ .used = true, .cb = cb,
						    .opaque = cb_opaque };
			return &timers[i];
		}
	}
	fprintf(stderr, "lkvm-slirp: out of timers\n");
	exit(1);
}

static void timer_free(void *t, void *opaque)
{
	(void)opaque;
	((struct timer *)t)->used = false;
}

static void timer_mod(void *t, int64_t expire_ms, void *opaque)
{
	(void)opaque;
	((struct timer *)t)->armed = true;
	((struct timer *)t)->expire_ms = expire_ms;
}

static void no_fd(int fd, void *opaque)
{
	(void)fd;
	(void)opaque;
}

static void notify(void *opaque)
{
	(void)opaque;
}

static int add_poll(int fd, int events, void *opaque)
{
	short ev = 0;

	(void)opaque;
	if (npfd == MAX_POLL)
		return -1;
	if (events & SLIRP_POLL_IN)
		ev |= POLLIN;
	if (events & SLIRP_POLL_OUT)
		ev |= POLLOUT;
	if (events & SLIRP_POLL_PRI)
		ev |= POLLPRI;
	pfd[npfd] = (struct pollfd){ .fd = fd, .events = ev };
	return npfd++;
}

static int get_revents(int idx, void *opaque)
{
	short r;
	int ev = 0;

	(void)opaque;
	if (idx < 0 || idx >= npfd)
		return 0;
	r = pfd[idx].revents;
	if (r & POLLIN)
		ev |= SLIRP_POLL_IN;
	if (r & POLLOUT)
		ev |= SLIRP_POLL_OUT;
	if (r & POLLPRI)
		ev |= SLIRP_POLL_PRI;
	if (r & POLLERR)
		ev |= SLIRP_POLL_ERR;
	if (r & POLLHUP)
		ev |= SLIRP_POLL_HUP;
	return ev;
}

static const SlirpCb callbacks = {
	.send_packet = to_guest,
	.guest_error = guest_error,
	.clock_get_ns = now_ns,
	.timer_new = timer_new,
	.timer_free = timer_free,
	.timer_mod = timer_mod,
	.register_poll_fd = no_fd,
	.unregister_poll_fd = no_fd,
	.notify = notify,
};

/* "tcp:HOSTPORT-:GUESTPORT": lkvm checked it; refuse anything else. */
static int add_forward(Slirp *s, const char *spec)
{
	struct in_addr host = { htonl(INADDR_LOOPBACK) }, guest;
	unsigned int hp, gp;
	char proto[4], end;

	inet_aton("10.0.2.15", &guest);
	if (sscanf(spec, "%3[a-z]:%u-:%u%c", proto, &hp, &gp, &end) != 3 ||
	    (strcmp(proto, "tcp") && strcmp(proto, "udp")) || !hp ||
	    hp > 65535 || !gp || gp > 65535) {
		fprintf(stderr, "lkvm-slirp: bad forward '%s'\n", spec);
		return -1;
	}
	if (slirp_add_hostfwd(s, !strcmp(proto, "udp"), host, (int)hp, guest,
			      (int)gp) < 0) {
		fprintf(stderr, "lkvm-slirp: forward '%s': port %u: %s\n", spec,
			hp, strerror(errno));
		return -1;
	}
	return 0;
}

static int64_t run_timers(void)
{
	int64_t now = now_ns(NULL) / 1000000, next = INT64_MAX;

	for (int i = 0; i < MAX_TIMERS; i++) {
		struct timer *t = &timers[i];

		if (!t->used || !t->armed)
			continue;
		if (t->expire_ms <= now) {
			t->armed = false;
			t->cb(t->opaque);
		} else if (t->expire_ms < next) {
			next = t->expire_ms;
		}
	}
	return next == INT64_MAX ? -1 : next - now;
}

int main(int argc, char **argv)
{
	static uint8_t frame[FRAME_MAX];
	SlirpConfig cfg = { .version = 1, .in_enabled = true };
	Slirp *s;

	if (argc < 2) {
		fprintf(stderr, "usage: lkvm-slirp FD [tcp:HOSTPORT-:GUESTPORT]...\n");
		return 1;
	}
	link_fd = atoi(argv[1]);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() == 1)
		return 0;	/* lkvm already gone */
	inet_aton("10.0.2.0", &cfg.vnetwork);
	inet_aton("255.255.255.0", &cfg.vnetmask);
	inet_aton("10.0.2.2", &cfg.vhost);
	inet_aton("10.0.2.15", &cfg.vdhcp_start);
	inet_aton("10.0.2.3", &cfg.vnameserver);
	cfg.vhostname = "lkvm";
	s = slirp_new(&cfg, &callbacks, NULL);
	if (!s) {
		fprintf(stderr, "lkvm-slirp: libslirp refused its configuration\n");
		return 1;
	}
	for (int i = 2; i < argc; i++)
		if (add_forward(s, argv[i]) < 0)
			return 1;
	for (;;) {
		uint32_t timeout = UINT32_MAX;
		int64_t t = run_timers();
		int r;

		npfd = 0;
		add_poll(link_fd, SLIRP_POLL_IN, NULL);
		slirp_pollfds_fill(s, &timeout, add_poll, NULL);
		if (t >= 0 && (uint64_t)t < timeout)
			timeout = (uint32_t)t;
		r = poll(pfd, (nfds_t)npfd,
			 timeout == UINT32_MAX ? -1 : (int)timeout);
		if (r < 0 && errno != EINTR)
			return 1;
		if (r > 0 && pfd[0].revents) {
			ssize_t n;

			while ((n = recv(link_fd, frame, sizeof(frame),
					 MSG_DONTWAIT)) > 0)
				slirp_input(s, frame, (int)n);
			if (n == 0 || (n < 0 && errno != EAGAIN &&
				       errno != EINTR))
				break;	/* lkvm closed its end */
		}
		slirp_pollfds_poll(s, r < 0, get_revents, NULL);
	}
	slirp_cleanup(s);
	return 0;
}
