// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-9p (the transport Linux's 9p virtio client uses), --9p
 * HOSTDIR,TAG[,ro]: one request queue carrying 9P2000.L messages for the
 * server in virtio/9p-server.c, and the mount tag in the config space.
 *
 * Many requests in flight: the I/O thread takes each chain, copies the
 * request out of guest memory and queues it for a small pool of worker
 * threads, which serve it (file system calls may block) and write the
 * reply straight into the chain's device-writable buffers. Finished
 * chains come back to the I/O thread through an eventfd, which returns
 * them to the driver in batches.
 *
 * Tflush never blocks a worker: the I/O thread answers it at once when
 * the request it names is not in flight, and otherwise parks it on that
 * request, whose completion then returns both, the flushed one first
 * (so the client sees the reply before Rflush, as 9P requires).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lkvm/seccomp.h"
#include "lkvm/9p.h"
#include "lkvm/device.h"
#include "lkvm/machine.h"
#include "lkvm/util.h"
#include "lkvm/virtio.h"

#define VIRTIO_9P_MOUNT_TAG 0	/* feature: the tag is in the config */
#define P9_QUEUE_SIZE 128
#define P9_WORKERS 4
#define P9_TAG_MAX 255
#define P9_MAX_SHARES 8
/*
 * Requests above BIG_REQ (writes, mostly) get a buffer of the largest
 * msize from a small cache: malloc() would map and unmap each one.
 */
#define BIG_REQ (64 * 1024)
#define SPARE_BUFS 4

struct job {
	struct job *next;	/* work queue or done list */
	struct job *inflight_next;
	struct job *flushers;	/* Tflush requests parked on this one */
	uint16_t head;
	uint16_t tag;
	bool flush;
	bool big;		/* req is P9_MAX_MSIZE bytes, from the cache */
	uint32_t len;		/* request bytes in req */
	uint32_t reply;		/* reply bytes written to the chain */
	uint8_t *req;
	unsigned int nin;
	uint32_t in_len;
	struct p9_split split;	/* a large Twrite's data, left in place */
	struct iovec in[];	/* the chain's device-writable buffers, then
				 * room for the split's tail */
};

struct p9dev {
	struct virtio_dev *d;
	struct p9_server *srv;
	char tag[P9_TAG_MAX + 1];
	struct iovec iov[VIRTQ_MAX_SEGS];

	pthread_mutex_t lock;
	pthread_cond_t work, idle;
	struct job *queue, **queue_tail;
	struct job *done, **done_tail;	/* finished, for the I/O thread */
	struct job *inflight;	/* popped, reply not written yet */
	unsigned int busy;	/* jobs popped and not yet done */
	bool stop;
	int done_fd;
	pthread_t workers[P9_WORKERS];
	unsigned int nworkers;
	uint8_t *spare[SPARE_BUFS];	/* p->lock */
	unsigned int nspare;
};

static const struct device_ops p9_ops;

/* ---- jobs ------------------------------------------------------------- */

static void req_free(struct p9dev *p, struct job *j)
{
	if (j->big) {
		pthread_mutex_lock(&p->lock);
		if (p->nspare < SPARE_BUFS) {
			p->spare[p->nspare++] = j->req;
			j->req = NULL;
		}
		pthread_mutex_unlock(&p->lock);
	}
	free(j->req);
}

static void job_free(struct p9dev *p, struct job *j)
{
	while (j) {
		struct job *next = j->next, *f = j->flushers;

		while (f) {
			struct job *fn = f->next;

			req_free(p, f);
			free(f);
			f = fn;
		}
		req_free(p, j);
		free(j);
		j = next;
	}
}

/* Writes a reply into the job's chain (cut to what the chain holds). */
static void job_reply(struct job *j, const uint8_t *buf, uint32_t n)
{
	j->reply = (uint32_t)iov_from_buf(j->in, j->nin, 0, buf,
					  MIN(n, j->in_len));
}

static void rflush(struct job *j)
{
	uint8_t b[P9_HDR];
	struct p9_out o = { .buf = b, .cap = sizeof(b) };

	p9_msg_begin(&o, P9_TFLUSH + 1, j->tag);
	job_reply(j, b, p9_msg_end(&o));
}

/* Queues finished jobs for the I/O thread (p->lock held). */
static void finish_locked(struct p9dev *p, struct job *j)
{
	struct job **pp, *f, *last;
	uint64_t one = 1;

	for (pp = &p->inflight; *pp; pp = &(*pp)->inflight_next)
		if (*pp == j) {
			*pp = j->inflight_next;
			break;
		}
	/* j first, then the Tflushes that waited for it, in order. */
	f = j->flushers;
	j->flushers = NULL;
	j->next = f;
	last = j;
	p->busy--;
	for (; f; f = f->next) {
		rflush(f);
		last = f;
		p->busy--;
	}
	*p->done_tail = j;
	p->done_tail = &last->next;
	if (write(p->done_fd, &one, sizeof(one)) < 0) {
		/* The counter is saturated: the I/O thread is due anyway. */
	}
	if (!p->busy)
		pthread_cond_broadcast(&p->idle);
}

static void *worker(void *arg)
{
	struct p9dev *p = arg;
	uint8_t *rep = malloc(P9_MAX_MSIZE);

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct job *j;
		uint32_t n;

		while (!p->queue && !p->stop)
			pthread_cond_wait(&p->work, &p->lock);
		if (p->stop)
			break;
		j = p->queue;
		p->queue = j->next;
		if (!p->queue)
			p->queue_tail = &p->queue;
		pthread_mutex_unlock(&p->lock);
		seccomp_thread_enter(SECCOMP_IO);

		if (rep) {
			n = p9_handle_split(p->srv, j->req, j->len,
					    j->split.tail_len ? &j->split : NULL,
					    rep, MIN(j->in_len, P9_MAX_MSIZE),
					    j->in, j->nin);
			j->reply = MIN(n, j->in_len);
		}
		pthread_mutex_lock(&p->lock);
		finish_locked(p, j);
	}
	pthread_mutex_unlock(&p->lock);
	free(rep);
	return NULL;
}

/* Returns finished chains to the driver (I/O thread). */
static void on_done(struct virtio_dev *d, int fd, void *opaque)
{
	struct p9dev *p = d->priv;
	struct job *list;
	uint64_t n;

	(void)opaque;
	if (read(fd, &n, sizeof(n)) < 0) {
		/* Nothing counted: the list below is empty or ours anyway. */
	}
	pthread_mutex_lock(&p->lock);
	list = p->done;
	p->done = NULL;
	p->done_tail = &p->done;
	pthread_mutex_unlock(&p->lock);
	if (!list)
		return;
	for (struct job *j = list; j; j = j->next)
		virtq_push(&d->vq[0], j->head, j->reply);
	virtio_queue_done(d, &d->vq[0]);
	job_free(p, list);
}

/* A chain becomes a job; NULL when memory runs out. */
/*
 * A large Twrite: only its header is copied out; its data stays in the
 * guest's buffers and is written from there (what the guest changes
 * meanwhile is its own data). Returns false for anything else.
 */
static bool split_write(struct job *j, struct virtq_chain *c)
{
	uint8_t h[P9_TWRITE_HDR];

	if (c->out_len <= BIG_REQ ||
	    iov_to_buf(c->iov, c->nout, 0, h, sizeof(h)) != sizeof(h) ||
	    h[4] != P9_TWRITE)
		return false;
	j->req = malloc(sizeof(h));
	if (!j->req)
		return false;
	memcpy(j->req, h, sizeof(h));
	j->len = sizeof(h);
	j->split.tail = j->in + c->nin;
	j->split.ntail = iov_slice(c->iov, c->nout, sizeof(h),
				   c->out_len - sizeof(h), j->in + c->nin,
				   c->nout);
	j->split.tail_len = c->out_len - (uint32_t)sizeof(h);
	return true;
}

static struct job *make_job(struct p9dev *p, struct virtq_chain *c)
{
	struct job *j = calloc(1, sizeof(*j) + (c->nin + c->nout) *
					       sizeof(struct iovec));

	if (!j)
		return NULL;
	j->head = c->head;
	j->nin = c->nin;
	j->in_len = c->in_len;
	memcpy(j->in, c->iov + c->nout, c->nin * sizeof(struct iovec));
	if (split_write(j, c))
		goto parsed;
	/* A request larger than any msize is cut; the server refuses it. */
	j->len = MIN(c->out_len, P9_MAX_MSIZE);
	if (j->len > BIG_REQ) {
		j->big = true;
		pthread_mutex_lock(&p->lock);
		if (p->nspare)
			j->req = p->spare[--p->nspare];
		pthread_mutex_unlock(&p->lock);
		if (!j->req)
			j->req = malloc(P9_MAX_MSIZE);
	} else {
		j->req = malloc(j->len ? j->len : 1);
	}
	if (!j->req) {
		free(j);
		return NULL;
	}
	iov_to_buf(c->iov, c->nout, 0, j->req, j->len);
parsed:
	if (j->len >= P9_HDR) {
		j->tag = get_le16(j->req + 5);
		j->flush = j->req[4] == P9_TFLUSH;
	}
	return j;
}

/* A Tflush: answered now, or parked on the request it names. */
static bool park_flush(struct p9dev *p, struct job *j)
{
	uint16_t old;

	if (!j->flush || j->len != P9_HDR + 2 || get_le32(j->req) != j->len)
		return false;	/* malformed: the server answers it */
	old = get_le16(j->req + P9_HDR);
	for (struct job *t = p->inflight; t; t = t->inflight_next) {
		if (t->tag == old && !t->flush && t->tag != j->tag) {
			j->next = t->flushers;
			t->flushers = j;
			return true;
		}
	}
	return false;
}

static bool is_flush(const struct job *j)
{
	return j->flush && j->len == P9_HDR + 2 && get_le32(j->req) == j->len;
}

static void p9_notify(struct virtio_dev *d, struct virtq *vq)
{
	struct p9dev *p = d->priv;
	struct virtq_chain c = { .iov = p->iov, .cap = VIRTQ_MAX_SEGS };
	bool pushed = false;

again:
	virtq_kicks_off(vq);
	while (virtio_pop(d, vq, &c) > 0) {
		struct job *j = make_job(p, &c);

		if (!j) {
			virtq_push(vq, c.head, 0);
			pushed = true;
			continue;
		}
		pthread_mutex_lock(&p->lock);
		if (is_flush(j)) {
			p->busy++;
			if (park_flush(p, j)) {
				pthread_mutex_unlock(&p->lock);
				continue;
			}
			p->busy--;
			pthread_mutex_unlock(&p->lock);
			/* Nothing in flight by that tag: Rflush at once. */
			rflush(j);
			virtq_push(vq, j->head, j->reply);
			pushed = true;
			job_free(p, j);
			continue;
		}
		p->busy++;
		j->inflight_next = p->inflight;
		p->inflight = j;
		*p->queue_tail = j;
		p->queue_tail = &j->next;
		pthread_cond_signal(&p->work);
		pthread_mutex_unlock(&p->lock);
	}
	if (virtq_kicks_on(vq))
		goto again;
	if (pushed)
		virtio_queue_done(d, vq);
}

/*
 * Reset: the driver may reuse its buffers once it sees the reset, so
 * wait until every worker is done writing, then forget the replies and
 * the session.
 */
static void p9_reset(struct virtio_dev *d)
{
	struct p9dev *p = d->priv;
	struct job *done;

	pthread_mutex_lock(&p->lock);
	while (p->busy)
		pthread_cond_wait(&p->idle, &p->lock);
	done = p->done;
	p->done = NULL;
	p->done_tail = &p->done;
	pthread_mutex_unlock(&p->lock);
	job_free(p, done);
	p9_server_reset(p->srv);
}

static const struct virtio_dev_ops p9_dev_ops = {
	.device_id = VIRTIO_ID_9P,
	.pci_class = 0x018000,		/* mass storage, other */
	.nqueues = 1,
	.queue_size = P9_QUEUE_SIZE,
	.features = VIRTIO_BIT(VIRTIO_9P_MOUNT_TAG),
	.queue_notify = p9_notify,
	.reset = p9_reset,
};

struct p9_cfg {
	unsigned int n;
	struct p9dev *dev[P9_MAX_SHARES];
};

/* Stops the workers (the I/O thread is stopped or idle). */
static void stop_workers(struct p9dev *p)
{
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	for (unsigned int i = 0; i < p->nworkers; i++)
		pthread_join(p->workers[i], NULL);
	p->nworkers = 0;
}

static void p9dev_free(struct p9dev *p)
{
	stop_workers(p);
	job_free(p, p->queue);
	job_free(p, p->done);
	while (p->nspare)
		free(p->spare[--p->nspare]);
	if (p->done_fd >= 0)
		close(p->done_fd);
	p9_server_free(p->srv);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->idle);
	free(p);
}

struct share {
	char dir[4096];
	char tag[P9_TAG_MAX + 1];
	bool ro;
};

/* HOSTDIR,TAG[,ro]: -1 after printing what is wrong. */
static int parse_share(const char *arg, struct share *sh)
{
	const char *c1 = strchr(arg, ','), *c2;
	size_t dl, tl;
	struct stat st;

	memset(sh, 0, sizeof(*sh));
	if (!c1)
		goto usage;
	c2 = strchr(c1 + 1, ',');
	dl = (size_t)(c1 - arg);
	tl = c2 ? (size_t)(c2 - c1 - 1) : strlen(c1 + 1);
	if (!dl || !tl || dl >= sizeof(sh->dir))
		goto usage;
	if (tl > P9_TAG_MAX) {
		pr_err("--9p '%s': the tag is longer than %d bytes", arg,
		       P9_TAG_MAX);
		return -1;
	}
	if (c2 && strcmp(c2 + 1, "ro") && strcmp(c2 + 1, "rw")) {
		pr_err("--9p '%s': unknown flag '%s' (use ro)", arg, c2 + 1);
		return -1;
	}
	memcpy(sh->dir, arg, dl);
	memcpy(sh->tag, c1 + 1, tl);
	sh->ro = c2 && !strcmp(c2 + 1, "ro");
	if (stat(sh->dir, &st)) {
		pr_err("--9p '%s': %s", sh->dir, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		pr_err("--9p '%s': not a directory", sh->dir);
		return -1;
	}
	return 0;
usage:
	pr_err("--9p '%s': use HOSTDIR,TAG[,ro]", arg);
	return -1;
}

static int p9_check(struct machine *m, void *c)
{
	struct share sh;

	(void)c;
	if (m->cfg.p9.n > P9_MAX_SHARES) {
		pr_err("--9p: at most %d shares", P9_MAX_SHARES);
		return -EINVAL;
	}
	for (unsigned int i = 0; i < m->cfg.p9.n; i++) {
		if (parse_share(m->cfg.p9.v[i], &sh))
			return -EINVAL;
		for (unsigned int k = 0; k < i; k++) {
			struct share other;

			if (!parse_share(m->cfg.p9.v[k], &other) &&
			    !strcmp(other.tag, sh.tag)) {
				pr_err("--9p: tag '%s' is used twice", sh.tag);
				return -EINVAL;
			}
		}
	}
	return 0;
}

/* Each fid may hold two descriptors: lift the soft limit to the hard. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int add_share(struct machine *m, const char *arg, unsigned int i,
		     struct p9dev **out)
{
	struct p9dev *p = calloc(1, sizeof(*p));
	struct virtio_dev_ops *ops;
	char name[32], err[300];
	struct share sh;
	size_t tl;
	int e;

	if (!p)
		return -ENOMEM;
	p->done_fd = -1;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->idle, NULL);
	p->queue_tail = &p->queue;
	p->done_tail = &p->done;
	if (parse_share(arg, &sh)) {
		p9dev_free(p);
		return -EINVAL;
	}
	p->srv = p9_server_new(sh.dir, sh.ro, err, sizeof(err));
	if (!p->srv) {
		pr_err("--9p %s", err);
		p9dev_free(p);
		return -EINVAL;
	}
	snprintf(p->tag, sizeof(p->tag), "%s", sh.tag);
	p->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ops = malloc(sizeof(*ops));
	if (p->done_fd < 0 || !ops) {
		free(ops);
		p9dev_free(p);
		return -ENOMEM;
	}
	for (; p->nworkers < P9_WORKERS; p->nworkers++)
		if (pthread_create(&p->workers[p->nworkers], NULL, worker, p))
			break;
	if (!p->nworkers) {
		pr_err("virtio-9p: cannot start a worker thread");
		free(ops);
		p9dev_free(p);
		return -EAGAIN;
	}
	tl = strlen(p->tag);
	*ops = p9_dev_ops;
	ops->config_size = (unsigned int)(2 + tl);
	snprintf(name, sizeof(name), "virtio-9p%u", i);
	e = virtio_dev_add(m, ops, name, p, &p->d);
	if (e) {
		free(ops);
		p9dev_free(p);
		return e;
	}
	/* struct virtio_9p_config: tag_len[2] (LE), tag[tag_len]. */
	put_le16(p->d->config, (uint16_t)tl);
	memcpy(p->d->config + 2, p->tag, tl);
	e = virtio_dev_watch(p->d, p->done_fd, on_done, NULL);
	if (e) {
		pr_err("%s: cannot watch its completions: %s", name,
		       strerror(-e));
		virtio_dev_remove(p->d);
		free(ops);
		p9dev_free(p);
		return e;
	}
	*out = p;
	return 0;
}

static void remove_share(struct p9dev *p)
{
	const struct virtio_dev_ops *ops = p->d->ops;

	/* The I/O thread stops first; then no job can reach it. */
	virtio_dev_remove(p->d);
	free((void *)ops);
	p9dev_free(p);
}

static int p9_init(struct machine *m)
{
	struct p9_cfg *cfg = machine_dev_cfg(m, &p9_ops);
	int err;

	if (!cfg || !m->cfg.p9.n)
		return 0;
	raise_nofile();
	for (unsigned int i = 0; i < m->cfg.p9.n; i++) {
		err = add_share(m, m->cfg.p9.v[i], i, &cfg->dev[cfg->n]);
		if (err)
			return err;
		cfg->n++;
	}
	return 0;
}

static void p9_exit(struct machine *m)
{
	struct p9_cfg *cfg = machine_dev_cfg(m, &p9_ops);

	if (!cfg)
		return;
	while (cfg->n)
		remove_share(cfg->dev[--cfg->n]);
}

/* The file server's calls, all relative to a descriptor beneath the share
 * or to /proc/self/fd (lkvm/seccomp.h). */
static const struct seccomp_rule p9_seccomp[] = {
	SECCOMP_SYSCALL(openat, SECCOMP_IO), SECCOMP_SYSCALL(openat2, SECCOMP_IO),
	SECCOMP_SYSCALL(mkdirat, SECCOMP_IO), SECCOMP_SYSCALL(unlinkat, SECCOMP_IO),
	SECCOMP_SYSCALL(renameat, SECCOMP_IO),
	SECCOMP_SYSCALL(renameat2, SECCOMP_IO),
	SECCOMP_SYSCALL(symlinkat, SECCOMP_IO),
	SECCOMP_SYSCALL(readlinkat, SECCOMP_IO),
	SECCOMP_SYSCALL(linkat, SECCOMP_IO), SECCOMP_SYSCALL(mknodat, SECCOMP_IO),
	SECCOMP_SYSCALL(fchownat, SECCOMP_IO),
	SECCOMP_SYSCALL(utimensat, SECCOMP_IO),
	SECCOMP_SYSCALL(chmod, SECCOMP_IO), SECCOMP_SYSCALL(truncate, SECCOMP_IO),
	SECCOMP_SYSCALL(fstatfs, SECCOMP_IO),
	SECCOMP_SYSCALL(getdents64, SECCOMP_IO),
	SECCOMP_SYSCALL(getxattr, SECCOMP_IO),
	SECCOMP_SYSCALL(listxattr, SECCOMP_IO),
	SECCOMP_SYSCALL(statx, SECCOMP_IO),
	SECCOMP_END,
};

static bool p9_wanted(struct machine *m)
{
	return m->cfg.p9.n > 0;
}

static const struct device_ops p9_ops = {
	.name = "virtio-9p",
	.seccomp = p9_seccomp,
	.seccomp_wanted = p9_wanted,
	.stage = DEV_STAGE_DEVICE,
	.cfg_size = sizeof(struct p9_cfg),
	.check = p9_check,
	.init = p9_init,
	.exit = p9_exit,
};
DEVICE(p9_ops);
