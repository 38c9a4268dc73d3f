// SPDX-License-Identifier: GPL-2.0
/*
 * The user-mode backend: -n mode=user (the default). libslirp (DHCP,
 * DNS, NAT to the host's sockets, host forwards) runs in lkvm-slirp, a
 * separate, dynamically linked program next to the lkvm binary: Debian
 * ships libslirp and glib only as shared libraries, lkvm is static, and
 * the parser of hostile packets then lives in its own process. The two
 * exchange plain Ethernet frames over a SOCK_SEQPACKET socketpair, one
 * frame per message, with no virtio-net header (slirp needs complete
 * frames, so this backend takes no offloads).
 *
 * The helper exits when its end of the socket closes; lkvm sees the
 * helper's exit as end of file on its end (the backend failed).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lkvm/net.h"
#include "lkvm/term.h"
#include "lkvm/util.h"

#define HELPER "lkvm-slirp"
#define SOCK_BUF (1 << 20)

extern char **environ;

static int helper_path(char *buf, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", buf, len - sizeof(HELPER) - 1);
	char *slash;

	if (n < 0)
		return -errno;
	buf[n] = 0;
	slash = strrchr(buf, '/');
	if (!slash)
		return -ENOENT;
	strcpy(slash + 1, HELPER);
	return access(buf, X_OK) < 0 ? -errno : 0;
}

int net_user_open(const struct net_opts *o, struct net_backend *be)
{
	char path[PATH_MAX], fdarg[16];
	char *argv[NET_MAX_HOSTFWD * 2 + 4];
	posix_spawn_file_actions_t fa;
	int sv[2], err, argc = 0, buf = SOCK_BUF, errfd = -1;

	be->nfds = 0;
	snprintf(be->desc, sizeof(be->desc), "user");
	err = helper_path(path, sizeof(path));
	if (err) {
		pr_err("network: user mode needs %s next to lkvm (%s); build it "
		       "with libslirp-dev installed", HELPER, strerror(-err));
		return err;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		err = -errno;
		pr_err("network: user mode: socketpair: %s", strerror(errno));
		return err;
	}
	for (int i = 0; i < 2; i++) {
		setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
		setsockopt(sv[i], SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
	}
	snprintf(fdarg, sizeof(fdarg), "%d", 3);
	argv[argc++] = (char *)HELPER;
	argv[argc++] = fdarg;
	for (unsigned int i = 0; i < o->nhostfwd; i++)
		argv[argc++] = (char *)o->hostfwd[i];
	argv[argc] = NULL;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
	/* The helper uses only fd 3 and stderr. Detached, lkvm lets the
	 * caller's stdio go once the guest runs (its messages then go to
	 * the console log, or nowhere): the helper must not keep them, or
	 * a caller reading `lkvm run --detach`'s output waits for ever. */
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (o->detached) {
		posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
		errfd = term_dup_log();
		if (errfd >= 0)
			posix_spawn_file_actions_adddup2(&fa, errfd, 2);
		else
			posix_spawn_file_actions_addopen(&fa, 2, "/dev/null",
							 O_WRONLY, 0);
	}
	err = -posix_spawn(&be->helper, path, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (errfd >= 0)
		close(errfd);
	close(sv[1]);
	if (err) {
		pr_err("network: %s: %s", path, strerror(-err));
		close(sv[0]);
		be->helper = 0;
		return err;
	}
	fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
	be->fds[0] = sv[0];
	be->nfds = 1;
	be->vnet_hdr = false;
	return 0;
}

void net_backend_close(struct net_backend *be)
{
	while (be->nfds)
		close(be->fds[--be->nfds]);
	if (be->helper > 0) {
		/* It exits on end of file; SIGTERM if it is stuck. */
		if (waitpid(be->helper, NULL, WNOHANG) == 0) {
			kill(be->helper, SIGTERM);
			waitpid(be->helper, NULL, 0);
		}
		be->helper = 0;
	}
}
