// SPDX-License-Identifier: GPL-2.0
/* The control protocol's client side, shared by the control commands. */
#include "lkvm/control.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lkvm/options.h"
#include "lkvm/util.h"

#define CALL_MS 30000		/* a request's answer, beyond the holds */
#define BUSY_MS 2000		/* a guest between its lock and its socket */

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int ctl_open(const char *name, struct ctl_conn *c)
{
	long long until = now_ms() + BUSY_MS;
	struct registry_guest g;
	int fd;

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	if (!registry_name_valid(name)) {
		pr_err("'%s' is not a guest name", name);
		return -EINVAL;
	}
	for (;;) {
		fd = registry_connect(name, &g);
		/* Starting (its socket is not there yet) or ending: a
		 * starting guest answers within moments. */
		if (fd != -ENOENT || g.state != REGISTRY_BUSY ||
		    now_ms() >= until)
			break;
		usleep(10000);
	}
	if (fd >= 0) {
		c->fd = fd;
		c->pid = g.pid;
		snprintf(c->name, sizeof(c->name), "%s", name);
		return 0;
	}
	switch (fd) {
	case -EACCES:
		pr_err("guest '%s': permission denied", name);
		break;
	case -ENOENT:
		if (g.state == REGISTRY_BUSY)
			pr_err("guest '%s' does not answer (pid %d): it is starting or stopping",
			       name, (int)g.pid);
		else if (g.state == REGISTRY_EXITED)
			pr_err("guest '%s' has ended (status %d; 'lkvm wait %s' collects it)",
			       name, g.status, name);
		else
			pr_err("no guest named '%s'", name);
		break;
	default:
		pr_err("guest '%s': %s", name, strerror(-fd));
	}
	return fd;
}

void ctl_close(struct ctl_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

int ctl_send(struct ctl_conn *c, uint16_t op, const void *body, size_t len,
	     int fd)
{
	struct ctl_hdr h = { CTL_MAGIC, CTL_VERSION, op, ++c->seq,
			     (uint32_t)len };
	struct iovec iov[2] = {
		{ &h, sizeof(h) },
		{ (void *)body, len },
	};
	size_t total = sizeof(h) + len;
	long n = send_with_fd(c->fd, iov, len ? 2 : 1, fd);

	if (n < 0)
		return (int)n;
	/* Requests are small: a short write means a broken connection. */
	return (size_t)n == total ? 0 : -EPIPE;
}

static int read_full(int fd, void *buf, size_t len, long long until)
{
	char *p = buf;

	while (len) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int left = until < 0 ? -1 : (int)MAX(0, until - now_ms());
		ssize_t n;
		int r = poll(&pfd, 1, left);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ETIMEDOUT;
		n = read(fd, p, len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ECONNRESET;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int ctl_recv(struct ctl_conn *c, struct ctl_result *r, int timeout_ms)
{
	long long until = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	struct ctl_reply rep;
	struct ctl_hdr h;
	int err;

	memset(r, 0, sizeof(*r));
	err = read_full(c->fd, &h, sizeof(h), until);
	if (err)
		return err;
	if (h.magic != CTL_MAGIC || h.version != CTL_VERSION ||
	    h.size < sizeof(rep) || h.size > CTL_MAX_REPLY)
		return -EPROTO;
	err = read_full(c->fd, &rep, sizeof(rep), until);
	if (err)
		return err;
	r->len = h.size - sizeof(rep);
	r->body = malloc(r->len + 1);
	if (!r->body)
		return -ENOMEM;
	err = read_full(c->fd, r->body, r->len, until);
	if (err) {
		ctl_result_free(r);
		return err;
	}
	r->body[r->len] = '\0';
	r->error = rep.error;
	return 0;
}

int ctl_call(struct ctl_conn *c, uint16_t op, const void *body, size_t len,
	     struct ctl_result *r)
{
	int serr = ctl_send(c, op, body, len, -1), err;

	/* A server that refused us at once (another user) has closed the
	 * connection, maybe before our request: its reason is still there
	 * to read. */
	err = ctl_recv(c, r, serr ? 0 : CALL_MS);
	if (err && serr)
		err = serr;
	if (err) {
		if (err == -ECONNRESET || err == -EPIPE)
			pr_err("guest '%s': the connection was closed (the guest has ended?)",
			       c->name);
		else if (err == -ETIMEDOUT)
			pr_err("guest '%s': no answer within %d s", c->name,
			       CALL_MS / 1000);
		else
			pr_err("guest '%s': %s", c->name, strerror(-err));
		return err;
	}
	if (r->error) {
		pr_err("guest '%s': %s", c->name,
		       r->len ? r->body : strerror(-r->error));
		err = r->error;
		ctl_result_free(r);
		return err;
	}
	return 0;
}

void ctl_result_free(struct ctl_result *r)
{
	free(r->body);
	r->body = NULL;
	r->len = 0;
}

const char *ctl_kv(const char *body, const char *key, char *buf, size_t len)
{
	size_t kl = strlen(key);

	for (const char *p = body; p && *p;) {
		const char *eol = strchr(p, '\n');
		size_t ll = eol ? (size_t)(eol - p) : strlen(p);

		if (ll > kl && !strncmp(p, key, kl) && p[kl] == ' ') {
			size_t vl = MIN(ll - kl - 1, len - 1);

			memcpy(buf, p + kl + 1, vl);
			buf[vl] = '\0';
			return buf;
		}
		p = eol ? eol + 1 : NULL;
	}
	return NULL;
}

char **ctl_all_names(size_t *n)
{
	struct registry_guest *g;
	size_t ng, k = 0;
	char **names;
	int err = registry_list(&g, &ng);

	*n = 0;
	if (err) {
		pr_err("guest registry: %s", strerror(-err));
		return NULL;
	}
	names = calloc(ng + 1, sizeof(*names));
	for (size_t i = 0; names && i < ng; i++) {
		if (g[i].state != REGISTRY_RUNNING)
			continue;
		names[k] = strdup(g[i].name);
		if (names[k])
			k++;
	}
	free(g);
	if (!names)
		pr_err("out of memory");
	*n = k;
	return names;
}

int ctl_parse_args(const char *cmd, int argc, char **argv,
		   const struct option_group *g, unsigned int ng, char **pos,
		   int maxpos)
{
	char err[256];
	int np = 0, i = 1;
	bool rest = false;

	while (i < argc) {
		if (!rest) {
			int k = parse_options(g, ng, argc - i, argv + i, err,
					      sizeof(err));

			if (k < 0) {
				fprintf(stderr, "lkvm %s: %s\n", cmd, err);
				fprintf(stderr, "see 'lkvm help %s'\n", cmd);
				return -1;
			}
			rest = k > 0 && !strcmp(argv[i + k - 1], "--");
			i += k;
			if (i >= argc)
				break;
		}
		if (np >= maxpos) {
			fprintf(stderr, "lkvm %s: unexpected argument '%s'\n",
				cmd, argv[i]);
			fprintf(stderr, "see 'lkvm help %s'\n", cmd);
			return -1;
		}
		pos[np++] = argv[i++];
	}
	return np;
}

char **ctl_targets(const char *cmd, const char *name, bool all, size_t *n)
{
	char **names;

	*n = 0;
	if (all == !!name) {
		fprintf(stderr, "lkvm %s: %s\n", cmd,
			all ? "give a NAME or --all, not both" :
			      "which guest? give a NAME or --all");
		fprintf(stderr, "see 'lkvm help %s'\n", cmd);
		return NULL;
	}
	if (all)
		return ctl_all_names(n);
	names = calloc(2, sizeof(*names));
	if (names)
		names[0] = strdup(name);
	if (!names || !names[0]) {
		free(names);
		pr_err("out of memory");
		return NULL;
	}
	*n = 1;
	return names;
}

void ctl_free_names(char **names, size_t n)
{
	for (size_t i = 0; names && i < n; i++)
		free(names[i]);
	free(names);
}

bool ctl_wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			return false;
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
			return true;
	}
	return false;
}

bool ctl_number(const char *cmd, const char *what, const char *s,
		uint64_t *out)
{
	if (parse_uint(s, 0, UINT64_MAX, out))
		return true;
	fprintf(stderr, "lkvm %s: %s '%s' is not a number (decimal, or hex with 0x)\n",
		cmd, what, s);
	return false;
}

void ctl_json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

int ctl_each(const char *cmd, int argc, char **argv, uint16_t op)
{
	struct ctl_opts {
		bool all;
	} o = { false };
	const struct option opts[] = {
		{ .name = "all", .type = OPT_BOOL,
		  .offset = offsetof(struct ctl_opts, all),
		  .help = "every running guest" },
		OPTION_END,
	};
	struct option_group g = { NULL, opts, &o };
	char *pos[1] = { NULL }, **names;
	size_t n;
	int failed = 0;

	if (ctl_parse_args(cmd, argc, argv, &g, 1, pos, 1) < 0)
		return 1;
	names = ctl_targets(cmd, pos[0], o.all, &n);
	if (!names)
		return 1;
	for (size_t i = 0; i < n; i++) {
		struct ctl_conn c;
		struct ctl_result r;

		if (ctl_open(names[i], &c)) {
			failed = 1;
			continue;
		}
		if (ctl_call(&c, op, NULL, 0, &r))
			failed = 1;
		else
			ctl_result_free(&r);
		ctl_close(&c);
	}
	ctl_free_names(names, n);
	return failed;
}
